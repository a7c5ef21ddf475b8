// Phi-accrual failure detector (Hayashibara et al. 2004, as used by Akka and Cassandra).
// Instead of a fixed timeout it outputs phi = -log10(P(a heartbeat arrives later than now)),
// from the observed distribution of heartbeat intervals (normal approximation). phi grows
// continuously with silence; "suspect" when phi ≥ threshold. Pure: the caller passes times.
import { assert } from '../common/assert.js';

export interface PhiOptions {
  /** phi at or above which a node is suspected dead (8 ≈ 1 false positive in 10^8). */
  readonly threshold: number;
  /** Heartbeat intervals kept for the estimate. */
  readonly windowSize: number;
  /** Floor for the standard deviation, so a perfectly regular sender is not over-trusted. */
  readonly minStdDevMs: number;
  /** Extra silence tolerated on top of the mean (GC pauses, brief hiccups). */
  readonly acceptablePauseMs: number;
  /** Interval assumed before any heartbeat history exists. */
  readonly firstIntervalMs: number;
}

export const defaultPhiOptions: PhiOptions = {
  threshold: 8,
  windowSize: 100,
  minStdDevMs: 100,
  acceptablePauseMs: 500,
  firstIntervalMs: 1000,
};

export class PhiAccrualDetector {
  private readonly intervals: number[] = [];
  private lastHeartbeatMs: number | undefined;
  /**
   * Mean and standard deviation of `intervals`, computed once per heartbeat rather than on every
   * query: the metasrv asks isAvailable per replica (procedures' leaderOf, the tick), thousands
   * of times per heartbeat at a thousand regions per node. Same arithmetic, same numbers.
   */
  private estimate: { readonly meanMs: number; readonly stdDevMs: number } | undefined;

  constructor(private readonly options: PhiOptions = defaultPhiOptions) {
    assert(options.windowSize > 1 && options.threshold > 0 && options.minStdDevMs > 0, 'invalid phi options');
  }

  heartbeat(nowMs: number): void {
    if (this.lastHeartbeatMs !== undefined) {
      const interval = nowMs - this.lastHeartbeatMs;
      if (interval < 0) return; // out of order; the clock is monotonic, so this is a stale report
      this.intervals.push(interval);
      if (this.intervals.length > this.options.windowSize) this.intervals.shift();
    } else {
      // Seed the window so early estimates are not wild (Akka does the same).
      const first = this.options.firstIntervalMs;
      this.intervals.push(first - first / 4, first + first / 4);
    }
    this.estimate = undefined;
    this.lastHeartbeatMs = nowMs;
  }

  phi(nowMs: number): number {
    if (this.lastHeartbeatMs === undefined) return 0;
    const elapsed = nowMs - this.lastHeartbeatMs;
    const { meanMs, stdDevMs } = (this.estimate ??= this.estimateIntervals());
    return phiOf(elapsed, meanMs + this.options.acceptablePauseMs, stdDevMs);
  }

  private estimateIntervals(): { meanMs: number; stdDevMs: number } {
    const n = this.intervals.length;
    let mean = 0;
    for (const x of this.intervals) mean += x;
    mean /= n;
    let variance = 0;
    for (const x of this.intervals) variance += (x - mean) ** 2;
    variance /= n;
    return { meanMs: mean, stdDevMs: Math.max(Math.sqrt(variance), this.options.minStdDevMs) };
  }

  isAvailable(nowMs: number): boolean {
    return this.phi(nowMs) < this.options.threshold;
  }

  lastHeartbeat(): number | undefined {
    return this.lastHeartbeatMs;
  }
}

/** -log10 of the normal tail probability P(X > elapsed), via a logistic approximation of the CDF. */
export function phiOf(elapsedMs: number, meanMs: number, stdDevMs: number): number {
  const y = (elapsedMs - meanMs) / stdDevMs;
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
  const tail = elapsedMs > meanMs ? e / (1 + e) : 1 - 1 / (1 + e);
  return -Math.log10(Math.max(tail, Number.MIN_VALUE));
}
