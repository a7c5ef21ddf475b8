// The buffered metrics (src/rpc/buffered-metrics.ts) against prom-client's own: fed the same
// seeded observations, with scrapes in between, the exposition text is the same byte for byte.
// Replay a failure with the seed printed in its message (the seeds are fixed below).
import { expect } from 'chai';
import { Counter, Histogram, Registry } from 'prom-client';
import { SeededRand } from '../../src/common/rand.js';
import { BufferedCounter, BufferedHistogram, BufferedLabelledCounter } from '../../src/rpc/buffered-metrics.js';

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A value that lands on a bound, between bounds, below the first or above the last. */
function value(rand: SeededRand): number {
  switch (rand.int(4)) {
    case 0:
      return rand.pick(BUCKETS);
    case 1:
      return rand.next() * 12;
    case 2:
      return rand.next() * 0.0002;
    default:
      return 10 + rand.next() * 100;
  }
}

describe('buffered metrics', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: the same exposition as prom-client's counters and histogram, scrape after scrape`, async () => {
      const rand = new SeededRand(seed);
      const plain = new Registry();
      const buffered = new Registry();
      const c = new Counter({ name: 't_total', help: 'h', registers: [plain] });
      const l = new Counter({ name: 't_labelled_total', help: 'h', labelNames: ['outcome'], registers: [plain] });
      const h = new Histogram({ name: 't_seconds', help: 'h', buckets: BUCKETS, registers: [plain] });
      const bc = new BufferedCounter(buffered, 't_total', 'h');
      const bl = new BufferedLabelledCounter<string>(buffered, 't_labelled_total', 'h', 'outcome');
      const bh = new BufferedHistogram(buffered, 't_seconds', 'h', BUCKETS);
      for (let round = 0; round < 20; round++) {
        const n = rand.int(50);
        for (let i = 0; i < n; i++) {
          const v = value(rand);
          h.observe(v);
          bh.observe(v);
          const by = rand.int(3) + 1;
          c.inc(by);
          bc.inc(by);
          const outcome = rand.pick(['OK', 'UNAVAILABLE', 'INVALID_ARGUMENT']);
          l.inc({ outcome });
          bl.inc(outcome);
        }
        expect(await buffered.metrics(), `seed ${seed} round ${round}`).to.equal(await plain.metrics());
      }
      // After a reset (registry.resetMetrics), both start again from zero.
      plain.resetMetrics();
      buffered.resetMetrics();
      for (let i = 0; i < 5; i++) {
        const v = value(rand);
        h.observe(v);
        bh.observe(v);
      }
      expect(await buffered.metrics(), `seed ${seed} after reset`).to.equal(await plain.metrics());
    });
  }

  it('refuses a value prom-client refuses', () => {
    const bh = new BufferedHistogram(new Registry(), 't_seconds', 'h', BUCKETS);
    expect(() => bh.observe(Number.NaN)).to.throw(TypeError);
  });
});
