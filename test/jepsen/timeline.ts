// A self-contained SVG timeline of a run: one dot per completed operation (x = completion
// time, y = latency on a log scale; green ok, orange indeterminate, red failed), fault
// windows shaded and labelled. Open store/<run>/timeline.svg in any browser.
// Labels never overprint: each goes to the first row above the plot where it fits (up to
// MAX_LANES rows; a label that fits nowhere shrinks to its number), and every fault is listed
// in full under the plot, numbered like its label.
import type { HistoryEvent } from '../../src/check/history.js';
import type { FaultRecord } from './nemesis.js';

const W = 1200;
const PLOT_H = 380;
const PAD = { left: 60, right: 20, top: 30, bottom: 40 };
const LANE_H = 13;
const MAX_LANES = 6;
/** Approximate advance of one character at font-size 11 (sans-serif), for placing labels. */
const CHAR_W = 6.2;
const LIST_LINE_H = 14;
const LIST_COLUMNS = 2;

/**
 * Places labels (left edge x, width) in rows, first fit: a label goes to the lowest row whose
 * labels all end (plus a gap) before it starts. Returns each label's row, or -1 if none of the
 * `maxLanes` rows has room.
 */
export function assignLanes(labels: readonly { x: number; width: number }[], maxLanes: number, gap = 4): number[] {
  const laneEnds: number[] = [];
  return labels.map(({ x, width }) => {
    for (let lane = 0; lane < maxLanes; lane++) {
      if (lane >= laneEnds.length || laneEnds[lane]! + gap <= x) {
        laneEnds[lane] = x + width;
        return lane;
      }
    }
    return -1;
  });
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderTimeline(events: readonly HistoryEvent[], faults: readonly FaultRecord[], title: string): string {
  const invokes = new Map<number, HistoryEvent>();
  const points: { t: number; latency: number; type: string }[] = [];
  for (const e of events) {
    if (e.type === 'invoke') invokes.set(e.process, e);
    else {
      const inv = invokes.get(e.process);
      if (inv) points.push({ t: e.time, latency: Math.max(0.1, e.time - inv.time), type: e.type });
    }
  }
  const tMax = Math.max(1, ...points.map((p) => p.t), ...faults.map((f) => f.healMs));
  const latMax = Math.max(10, ...points.map((p) => p.latency));
  const x = (t: number) => PAD.left + (t / tMax) * (W - PAD.left - PAD.right);

  // Fault labels: "n fault", in rows above the plot; if no row has room, "n" alone.
  const order = faults.map((f, i) => ({ f, i })).sort((a, b) => a.f.startMs - b.f.startMs);
  const full = order.map(({ f, i }) => `${i + 1} ${f.fault}`);
  let lanes = assignLanes(order.map(({ f }, k) => ({ x: x(f.startMs), width: full[k]!.length * CHAR_W })), MAX_LANES);
  const text = full.map((t, k) => (lanes[k]! >= 0 ? t : `${order[k]!.i + 1}`));
  lanes = assignLanes(order.map(({ f }, k) => ({ x: x(f.startMs), width: text[k]!.length * CHAR_W })), MAX_LANES);
  const laneCount = Math.max(1, ...lanes.map((l) => l + 1));
  const top = PAD.top + laneCount * LANE_H + 6;
  const H = top + PLOT_H - PAD.top;
  const listTop = H + 10;
  const listRows = Math.ceil(faults.length / LIST_COLUMNS);
  const totalH = faults.length > 0 ? listTop + 16 + listRows * LIST_LINE_H + 10 : H;
  const logMin = Math.log10(0.1);
  const logMax = Math.log10(latMax);
  const y = (ms: number) => H - PAD.bottom - ((Math.log10(ms) - logMin) / (logMax - logMin)) * (H - top - PAD.bottom);
  const color: Record<string, string> = { ok: '#2a9d38', info: '#f08c00', fail: '#d62728' };

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${totalH}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${totalH}" fill="white"/>`,
    `<text x="${PAD.left}" y="20" font-size="14">${xmlEscape(title)}</text>`,
  ];
  order.forEach(({ f }, k) => {
    const end = f.healMs > 0 ? f.healMs : tMax;
    const lane = Math.max(0, lanes[k]!); // -1 only at absurd densities: the list below still has it
    const labelY = PAD.top + (lane + 1) * LANE_H;
    parts.push(
      `<rect x="${x(f.startMs).toFixed(1)}" y="${top}" width="${Math.max(1, x(end) - x(f.startMs)).toFixed(1)}" height="${H - top - PAD.bottom}" fill="#d62728" fill-opacity="0.08"/>`,
      `<line x1="${x(f.startMs).toFixed(1)}" x2="${x(f.startMs).toFixed(1)}" y1="${labelY + 2}" y2="${top}" stroke="#d62728" stroke-opacity="0.35"/>`,
      `<text x="${(x(f.startMs) + 2).toFixed(1)}" y="${labelY}" fill="#a00">${xmlEscape(text[k]!)}</text>`,
    );
  });
  if (faults.length > 0) {
    parts.push(`<text x="${PAD.left}" y="${listTop + 4}" font-weight="bold">faults</text>`);
    const colW = (W - PAD.left - PAD.right) / LIST_COLUMNS;
    faults.forEach((f, i) => {
      const col = Math.floor(i / listRows);
      const rowY = listTop + 18 + (i % listRows) * LIST_LINE_H;
      const when = `${(f.startMs / 1000).toFixed(1)}–${f.healMs > 0 ? (f.healMs / 1000).toFixed(1) : '?'} s`;
      const rto = f.rtoMs != null ? `RTO ${f.rtoMs} ms` : 'RTO none';
      parts.push(`<text x="${(PAD.left + col * colW).toFixed(1)}" y="${rowY}">${xmlEscape(`${i + 1}. ${when}  ${f.fault} ${f.targets.join(',')}  (${rto})`)}</text>`);
    });
  }
  for (const ms of [1, 10, 100, 1000, 10000]) {
    if (ms > latMax * 1.5) break;
    parts.push(
      `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(ms).toFixed(1)}" y2="${y(ms).toFixed(1)}" stroke="#ddd"/>`,
      `<text x="${PAD.left - 6}" y="${(y(ms) + 4).toFixed(1)}" text-anchor="end">${ms} ms</text>`,
    );
  }
  for (let s = 0; s <= tMax / 1000; s += Math.max(1, Math.round(tMax / 1000 / 12))) {
    parts.push(`<text x="${x(s * 1000).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle">${s}s</text>`);
  }
  for (const p of points) {
    parts.push(`<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.latency).toFixed(1)}" r="1.6" fill="${color[p.type] ?? '#888'}"/>`);
  }
  parts.push(
    `<text x="${W - PAD.right}" y="20" text-anchor="end"><tspan fill="${color['ok']}">● ok</tspan>  <tspan fill="${color['info']}">● indeterminate</tspan>  <tspan fill="${color['fail']}">● failed</tspan>  (y: latency, log scale)</text>`,
    '</svg>',
  );
  return parts.join('\n');
}
