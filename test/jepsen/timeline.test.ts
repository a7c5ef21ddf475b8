// The Jepsen timeline's fault labels stay readable with many faults (issue 21): no two labels
// overprint, and every fault is listed in full under the plot.
import { expect } from 'chai';
import type { HistoryEvent } from '../../src/check/history.js';
import type { FaultRecord } from './nemesis.js';
import { assignLanes, renderTimeline } from './timeline.js';

const CHAR_W = 6.2; // as timeline.ts assumes for font-size 11

/** The fault labels of an SVG: red text above the plot, with their approximate boxes. */
function labelBoxes(svg: string): { x: number; y: number; width: number; text: string }[] {
  return [...svg.matchAll(/<text x="([\d.]+)" y="([\d.]+)" fill="#a00">([^<]*)<\/text>/g)].map((m) => ({
    x: Number(m[1]),
    y: Number(m[2]),
    width: m[3]!.length * CHAR_W,
    text: m[3]!,
  }));
}

function history(seconds: number): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (let t = 0; t < seconds * 1000; t += 50) {
    events.push({ type: 'invoke', process: 0, f: 'write', key: 'k', value: t, time: t, index: events.length } as HistoryEvent);
    events.push({ type: 'ok', process: 0, f: 'write', key: 'k', value: t, time: t + 3, index: events.length } as HistoryEvent);
  }
  return events;
}

describe('jepsen timeline: fault labels', () => {
  it('assignLanes: overlapping labels go to separate rows, a row is reused once free, and none beyond the limit', () => {
    expect(assignLanes([{ x: 0, width: 100 }, { x: 50, width: 100 }, { x: 120, width: 10 }, { x: 300, width: 10 }], 3)).to.deep.equal([0, 1, 0, 0]);
    expect(assignLanes([{ x: 0, width: 100 }, { x: 1, width: 100 }, { x: 2, width: 100 }], 2)).to.deep.equal([0, 1, -1]);
  });

  it('forty faults in a 60 s run: no two labels overprint, and every fault is listed with its targets and RTO', () => {
    const faults: FaultRecord[] = Array.from({ length: 40 }, (_, i) => ({
      fault: i % 3 === 0 ? 'partition-one-way' : i % 3 === 1 ? 'kill-leader' : 'pause',
      targets: [`datanode${(i % 3) + 1}`],
      startMs: 1000 + i * 1400,
      healMs: 1000 + i * 1400 + 1200,
      rtoMs: 500 + i,
    }));
    const svg = renderTimeline(history(60), faults, 'forty faults');
    const boxes = labelBoxes(svg);
    expect(boxes.length, 'one label per fault').to.equal(40);
    const overlaps: string[] = [];
    for (const [i, a] of boxes.entries()) {
      for (const b of boxes.slice(i + 1)) {
        if (a.y === b.y && a.x < b.x + b.width && b.x < a.x + a.width) overlaps.push(`"${a.text}" and "${b.text}"`);
      }
    }
    expect(overlaps, 'labels printed over each other').to.deep.equal([]);
    for (const [i, f] of faults.entries()) expect(svg).to.include(`${i + 1}. ${(f.startMs / 1000).toFixed(1)}–${(f.healMs / 1000).toFixed(1)} s  ${f.fault} ${f.targets[0]}  (RTO ${f.rtoMs} ms)`);
  });
});
