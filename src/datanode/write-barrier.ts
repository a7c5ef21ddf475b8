// The datanode half of a consistent backup's write barrier (docs/backup.md, "Consistency point"):
// per region led here, a short hold on new client writes and deletes.
//
// The backup holds every region (BarrierHold), and only once every hold is in place proposes a
// freeze in each (BarrierFreeze), releasing that region's hold as soon as its freeze is queued.
// Why that is a cluster-consistent cut (the proof is in docs/backup.md):
//   B1. A write this node queues for raft while a hold is in place is queued after the freeze:
//       the Database service asks wait() right before it proposes, with no await in between, and
//       the freeze is queued before release() lets the waiting writes go (one FIFO queue).
//   B2. The hold is tied to the leader's term: BarrierFreeze requires the term the hold began in
//       and the freeze to be proposed in it. A node is leader at most once per term, so the hold
//       covered every write this leader took between the hold and the freeze.
//   B3. Every hold ends by itself after its hold_ms (at most limits.brBarrierHoldMsMax): a lost
//       backup never wedges writes. A hold that ended before its freeze makes the barrier fail
//       (active() no longer finds it), never succeed with a leaky cut.
// Reads are never held.
import { assert } from '../common/assert.js';
import type { TimedClock, TimerHandle } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';

/** A hold in place on one region. */
export interface RegionHold {
  readonly barrierId: string;
  /** The leader's raft term when the hold began. */
  readonly term: number;
  /** Monotonic ms when the hold began. */
  readonly sinceMs: number;
  /** Client writes that waited for this hold so far. */
  readonly writesHeld: number;
}

/** What a hold amounted to once released. */
export interface HoldOutcome {
  readonly heldMs: number;
  readonly writesHeld: number;
}

interface HoldRecord {
  readonly barrierId: string;
  readonly term: number;
  readonly sinceMs: number;
  writesHeld: number;
  readonly waiters: (() => void)[];
  readonly timer: TimerHandle;
}

export class WriteBarrier {
  private readonly holds = new Map<string, HoldRecord>();
  /** SST leases a barrier took for its backup's copy, each with the timer that ends it. */
  private readonly leases = new Map<() => void, TimerHandle>();

  constructor(private readonly clock: TimedClock) {}

  /**
   * Holds new client writes of `regionId` for at most `holdMs`. Holding again under the same
   * barrier is a no-op (a retried RPC); a hold of another barrier is refused (one backup at a
   * time holds a region).
   */
  hold(regionId: string, barrierId: string, term: number, holdMs: number): RegionHold {
    if (!Number.isInteger(holdMs) || holdMs <= 0 || holdMs > limits.brBarrierHoldMsMax) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `hold_ms must be 1…${limits.brBarrierHoldMsMax}, got ${holdMs}`);
    }
    if (barrierId.length === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'barrier_id is empty');
    const existing = this.holds.get(regionId);
    if (existing) {
      if (existing.barrierId === barrierId && existing.term === term) return this.view(existing);
      throw new RegionDbError(ErrorCode.ConditionFailed, `region ${regionId} is already held by barrier ${existing.barrierId}; one consistent backup at a time`);
    }
    if (this.holds.size >= limits.brBarrierRegionsMax) {
      throw new RegionDbError(ErrorCode.ResourceExhausted, `${this.holds.size} regions are held on this node (max ${limits.brBarrierRegionsMax})`);
    }
    const record: HoldRecord = {
      barrierId,
      term,
      sinceMs: this.clock.nowMs(),
      writesHeld: 0,
      waiters: [],
      timer: this.clock.setTimeout(() => this.end(regionId, record), holdMs),
    };
    this.holds.set(regionId, record);
    return this.view(record);
  }

  /** The hold of `barrierId` on the region, if still in place (B3: an expired one is gone). */
  active(regionId: string, barrierId: string): RegionHold | undefined {
    const record = this.holds.get(regionId);
    return record?.barrierId === barrierId ? this.view(record) : undefined;
  }

  /**
   * Undefined when a client write of the region may be proposed now; otherwise a promise that
   * resolves when the hold ends (released or expired). The caller proposes right after, with no
   * await between this call and the proposal when it returns undefined (B1).
   */
  wait(regionId: string): Promise<void> | undefined {
    const record = this.holds.get(regionId);
    if (!record) return undefined;
    record.writesHeld++;
    return new Promise<void>((resolve) => record.waiters.push(resolve));
  }

  /** Ends the hold of `barrierId` on the region; undefined if it was not in place (expired, or another barrier's). */
  release(regionId: string, barrierId: string): HoldOutcome | undefined {
    const record = this.holds.get(regionId);
    if (record?.barrierId !== barrierId) return undefined;
    return this.end(regionId, record);
  }

  /** Regions held now (status, tests). */
  heldRegions(): string[] {
    return [...this.holds.keys()];
  }

  /** Keeps an SST lease (barrier-admin.ts) for `leaseMs`, then releases it. */
  keepLease(release: () => void, leaseMs: number): void {
    const timer = this.clock.setTimeout(() => {
      this.leases.delete(release);
      release();
    }, leaseMs);
    this.leases.set(release, timer);
  }

  /** Leases kept now. */
  leaseCount(): number {
    return this.leases.size;
  }

  /**
   * Ends every hold and lease (the node stops): the waiting writes go on and fail or succeed on
   * their own; the leases' protection ends with the node's GC anyway.
   */
  releaseAll(): void {
    for (const [regionId, record] of [...this.holds]) this.end(regionId, record);
    for (const [release, timer] of [...this.leases]) {
      timer.cancel();
      release();
    }
    this.leases.clear();
  }

  private end(regionId: string, record: HoldRecord): HoldOutcome {
    assert(this.holds.get(regionId) === record, 'only the hold in place ends');
    this.holds.delete(regionId);
    record.timer.cancel();
    // Resolved in arrival order: the promises' continuations queue their proposals in that order.
    for (const resolve of record.waiters.splice(0)) resolve();
    const outcome = { heldMs: Math.max(0, this.clock.nowMs() - record.sinceMs), writesHeld: record.writesHeld };
    assert(record.waiters.length === 0, 'a released hold keeps no waiter');
    return outcome;
  }

  private view(record: HoldRecord): RegionHold {
    return { barrierId: record.barrierId, term: record.term, sinceMs: record.sinceMs, writesHeld: record.writesHeld };
  }
}
