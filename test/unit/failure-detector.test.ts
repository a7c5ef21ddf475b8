import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { PhiAccrualDetector, defaultPhiOptions } from '../../src/metasrv/failure-detector.js';

describe('phi-accrual failure detector', () => {
  function regular(intervalMs: number, count: number, jitterMs: number, seed: number): { d: PhiAccrualDetector; last: number } {
    const rand = new SeededRand(seed);
    const d = new PhiAccrualDetector({ ...defaultPhiOptions, acceptablePauseMs: 0, minStdDevMs: 20 });
    let t = 0;
    for (let i = 0; i < count; i++) {
      d.heartbeat(t);
      t += intervalMs + rand.range(-jitterMs, jitterMs);
    }
    return { d, last: t - intervalMs };
  }

  it('stays low while heartbeats arrive on schedule', () => {
    const { d, last } = regular(1000, 50, 50, 1);
    expect(d.phi(last + 1000)).to.be.lessThan(1);
    expect(d.isAvailable(last + 1000)).to.equal(true);
  });

  it('grows monotonically with silence and crosses the threshold', () => {
    const { d, last } = regular(1000, 50, 50, 2);
    let previous = -1;
    for (let silence = 500; silence <= 3000; silence += 250) {
      const phi = d.phi(last + silence);
      expect(phi).to.be.at.least(previous);
      previous = phi;
    }
    expect(d.isAvailable(last + 3000)).to.equal(false);
  });

  it('tolerates more silence when the heartbeat history is irregular', () => {
    const steady = regular(1000, 100, 10, 3);
    const jittery = regular(1000, 100, 400, 3);
    expect(jittery.d.phi(jittery.last + 1800)).to.be.lessThan(steady.d.phi(steady.last + 1800));
  });

  it('acceptable pause shifts suspicion later', () => {
    const strict = new PhiAccrualDetector({ ...defaultPhiOptions, acceptablePauseMs: 0 });
    const lenient = new PhiAccrualDetector({ ...defaultPhiOptions, acceptablePauseMs: 2000 });
    for (let t = 0; t <= 20_000; t += 1000) {
      strict.heartbeat(t);
      lenient.heartbeat(t);
    }
    expect(strict.isAvailable(20_000 + 3000)).to.equal(false);
    expect(lenient.isAvailable(20_000 + 3000)).to.equal(true);
  });

  it('with test settings (200 ms heartbeats) a dead node is suspected within about a second', () => {
    const d = new PhiAccrualDetector({ threshold: 8, windowSize: 50, minStdDevMs: 50, acceptablePauseMs: 200, firstIntervalMs: 200 });
    for (let t = 0; t <= 10_000; t += 200) d.heartbeat(t);
    let detectAfter = 0;
    while (d.isAvailable(10_000 + detectAfter)) detectAfter += 10;
    expect(detectAfter).to.be.within(300, 1200);
  });

  it('reports phi 0 before the first heartbeat', () => {
    expect(new PhiAccrualDetector().phi(123)).to.equal(0);
  });
});
