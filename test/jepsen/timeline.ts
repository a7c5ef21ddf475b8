// A self-contained SVG timeline of a run: one dot per completed operation (x = completion
// time, y = latency on a log scale; green ok, orange indeterminate, red failed), fault
// windows shaded and labelled. Open store/<run>/timeline.svg in any browser.
import type { HistoryEvent } from '../../src/check/history.js';
import type { FaultRecord } from './nemesis.js';

const W = 1200;
const H = 420;
const PAD = { left: 60, right: 20, top: 40, bottom: 40 };

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
  const logMin = Math.log10(0.1);
  const logMax = Math.log10(latMax);
  const y = (ms: number) => H - PAD.bottom - ((Math.log10(ms) - logMin) / (logMax - logMin)) * (H - PAD.top - PAD.bottom);
  const color: Record<string, string> = { ok: '#2a9d38', info: '#f08c00', fail: '#d62728' };

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${PAD.left}" y="20" font-size="14">${xmlEscape(title)}</text>`,
  ];
  for (const f of faults) {
    const end = f.healMs > 0 ? f.healMs : tMax;
    parts.push(
      `<rect x="${x(f.startMs).toFixed(1)}" y="${PAD.top}" width="${Math.max(1, x(end) - x(f.startMs)).toFixed(1)}" height="${H - PAD.top - PAD.bottom}" fill="#d62728" fill-opacity="0.08"/>`,
      `<text x="${(x(f.startMs) + 2).toFixed(1)}" y="${PAD.top + 12}" fill="#a00">${xmlEscape(`${f.fault} ${f.targets.join(',')}`)}${f.rtoMs != null ? ` (RTO ${f.rtoMs} ms)` : ''}</text>`,
    );
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
