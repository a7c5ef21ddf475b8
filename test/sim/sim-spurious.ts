// Issue 15, "healthy node treated as failed" (docs/simulation.md, "Actions against a healthy
// node"): the metasrv must not act against a datanode that is up and heard from. This file holds
// what the whole-datanode simulator adds for it, apart from the few hooks in cluster-sim.ts and
// sim-metasrv.ts:
//
//   - `ProcessStall`: the `stall` fault's model of a paused process (a CPU-starved host, a long
//     GC pause, SIGSTOP): while stalled nothing of the process runs; its timers that come due and
//     the calls that arrive are held; when it resumes, the due timers run first (each once, an
//     interval re-armed from the resume), then the held calls — the order Node's event loop
//     keeps after a stall (timers phase, then poll), which is finding M3's trigger;
//   - `HealthyNodeChecker`: the `healthy node` and `heartbeat cadence` checkers, on facts the
//     harness knows in virtual (monotonic) time, with their bounds derived from the config.
//
// Why the bounds hold for a correct metasrv (and so why a violation is a bug, not bad luck):
//
//   H1 (region-failover) The phi-accrual detector (src/metasrv/failure-detector.ts) suspects a
//      node only when phi ≥ threshold, i.e. the time since the last heartbeat it *processed*
//      exceeds mean + acceptable_pause_ms + k·stddev with mean > 0, so more than
//      acceptable_pause_ms. A heartbeat is processed when it reaches the core (the detector is
//      fed synchronously at the start of `heartbeat`), except while the process is stalled,
//      where it is held; M3's fix makes the tick that fires late after a stall judge nobody,
//      and the next tick comes after the held calls were processed. So at a correct failover
//      of node N no heartbeat of N *arrived at the metasrv process* within acceptable_pause_ms.
//      Every legitimate reason for silence — N down, its call or its answer lost (a lost answer
//      makes N wait out its call budget before the next beat), the metasrv down or restarting —
//      shows as no arrival, so it is accounted for exactly, with no margin. A stall is not a
//      reason: the heartbeats did arrive.
//   H2 (replica moved off a node, repair-replica not in place) A move starts once the node was
//      down replica_repair_after_ms on the metasrv's monotonic clock, counted from the first
//      tick that found it not alive (by H1 more than acceptable_pause_ms after its last
//      processed heartbeat), or from the metasrv's start for a node it never heard from (then
//      nothing of N was processed since that start either). So no heartbeat of N arrived
//      within replica_repair_after_ms before the move (the detector's lag only adds to that).
//   H3 (replica replaced in place, as lost) Only a replica that is lost: its log was damaged
//      (`corrupt`, found at its open), it failed on its node, or its node's store changed in the
//      metasrv's catalog (a wiped disk, or a second process accepted as a replaced host: H5)
//      after the peer was allocated (its peer id is below the catalog's next one when the
//      change was seen, after every call the core took in and every tick).
//   H5 (a second process with a node's id; finding M6) A registration from another address with
//      another store is a second process, not a restart: it is accepted only if the registered
//      node is not alive — the metasrv took none of its heartbeats in the last
//      acceptable_pause_ms (within that, phi is below log10 2, far under the threshold).
//      Judged on what this metasrv process took in (a heartbeat held by a stall counts when
//      it is processed).
//   H4 (heartbeat cadence; finding M2) A datanode core's heartbeat timer fires every
//      heartbeat_interval_ms and starts a call unless one is in flight (O1 in
//      src/datanode/datanode-core.ts); a call ends within its budget (max(500 ms, the interval):
//      the caller's timeout), and its answer's instructions are queued, not awaited (O2). So once
//      a call has ended (answered, refused or timed out), the next one starts within one
//      interval — except after a registration's answer, whose opens run before the next call.
//      An exact bound: no margin is needed, as nothing else runs between the answer and the
//      end of the beat.
import type { TimedClock, TimerHandle } from '../../src/common/clock.js';
import type { CatalogState } from '../../src/metasrv/catalog.js';
import type { Incarnation, SimScheduler } from './sim-world.js';

/** The faults of this file's slice (off by default; `FAULTS=stall`, with `METASRV=1`). */
export const SPURIOUS_FAULTS = ['stall', 'twin', 'spare'] as const;
export type SpuriousFault = (typeof SPURIOUS_FAULTS)[number];

/**
 * With `spare` (not a fault: an opt-in fourth datanode with no replica at first), the metasrv
 * moves the replicas of a node down this long (virtual ms) to another node (finding M7's
 * setting; the default, 60 s, is longer than a run). Node crashes last 20–420 ms here.
 */
export const SPARE_REPAIR_AFTER_MS = 2_000;

/** A `stall` lasts this long (virtual ms): the detector's acceptable pause is 200 ms here, a late tick is one late by more. */
export const STALL_MS_MIN = 1_000;
export const STALL_MS_MAX = 3_000;

/**
 * A simulated process that can be paused. `wrap` gives the process a clock whose timers are held
 * while stalled; `io` runs an arriving call at once, or holds it. `stall` pauses the process
 * until a resume event owned by its incarnation (a crash drops everything held, as the process
 * is gone). Without a stall nothing is held and no event is added, so a process run through it
 * behaves as one run on the scheduler's clock directly.
 */
export class ProcessStall {
  private stalledUntil: number | undefined;
  private heldTimers: (() => void)[] = [];
  private heldIo: (() => void)[] = [];
  stalls = 0;

  constructor(
    private readonly sched: SimScheduler,
    private readonly owner: Incarnation,
  ) {}

  get stalled(): boolean {
    return this.stalledUntil !== undefined;
  }

  /** Pauses the process for `durationMs`. */
  stall(durationMs: number): void {
    if (this.stalledUntil !== undefined || this.owner.dead) return;
    this.stalls++;
    this.stalledUntil = this.sched.now + durationMs;
    this.sched.at(this.stalledUntil, () => this.resume(), this.owner);
  }

  /** The due timers first (each once), then, in an event after them, the calls that arrived meanwhile. */
  private resume(): void {
    this.stalledUntil = undefined;
    const timers = this.heldTimers;
    this.heldTimers = [];
    for (const fn of timers) fn();
    const io = this.heldIo;
    this.heldIo = [];
    if (io.length === 0) return;
    this.sched.at(
      this.sched.now,
      () => {
        for (const fn of io) this.io(fn);
      },
      this.owner,
    );
  }

  private timer(fn: () => void): void {
    if (this.stalledUntil !== undefined) this.heldTimers.push(fn);
    else fn();
  }

  /** A call (or any input) reaching the process: handled now, or when it resumes. */
  io(fn: () => void): void {
    if (this.stalledUntil !== undefined) this.heldIo.push(fn);
    else fn();
  }

  /** The process's clock: the same time line; timers held while stalled; an interval re-armed when its callback runs (as Node's). */
  wrap(clock: TimedClock): TimedClock {
    return {
      nowMs: () => clock.nowMs(),
      setTimeout: (fn, delayMs) => clock.setTimeout(() => this.timer(fn), delayMs),
      setInterval: (fn, periodMs) => {
        const state: { cancelled: boolean; handle: TimerHandle | undefined } = { cancelled: false, handle: undefined };
        const arm = () => {
          state.handle = clock.setTimeout(
            () =>
              this.timer(() => {
                if (state.cancelled) return;
                arm();
                fn();
              }),
            periodMs,
          );
        };
        arm();
        return {
          cancel: () => {
            state.cancelled = true;
            state.handle?.cancel();
          },
        };
      },
      setImmediate: (fn) => clock.setImmediate(() => this.timer(fn)),
    };
  }
}

/** The config values the bounds derive from (H1–H5 above). */
export interface HealthyNodeBounds {
  readonly acceptablePauseMs: number;
  readonly replicaRepairAfterMs: number;
  readonly heartbeatIntervalMs: number;
}

/** What the harness knows about a replica the metasrv replaces in place (H3). */
export type LostPeerFact = (nodeId: number, regionId: string, peerId: number) => string | undefined;

/** Whether a running replica of the region counts `peerId` as a learner (a repair-replica with `learner`: removed, not moved). */
export type LearnerFact = (regionId: string, peerId: number) => boolean;

interface CallCadence {
  readonly inc: Incarnation;
  /** When the last call ended, if none is in flight. */
  endedMs: number | undefined;
  /** Between a registration's answer and the next call: the opens it named run (H4's exception). */
  opening: boolean;
}

/** The `healthy node` (H1–H3, H5) and `heartbeat cadence` (H4) checkers. */
export class HealthyNodeChecker {
  /** Per node id: when a Heartbeat call of it last arrived at a live metasrv process (stalled or not). */
  private readonly lastArrivalMs = new Map<number, number>();
  /** Per node id: the metasrv's peer-id allocation bound at each wipe of its disk. */
  private readonly wipeBounds = new Map<number, number>();
  private readonly checked = new Set<string>();
  private readonly cadence = new Map<string, CallCadence>();
  /** Per node id: when this metasrv incarnation last took a heartbeat of it in (H5), and which incarnation. */
  private readonly lastTakenMs = new Map<number, { atMs: number; metasrv: number }>();
  /** Procedures checked, by kind, and second processes' registrations judged (coverage). */
  readonly counts = { failovers: 0, moves: 0, inPlace: 0, twinRegistrations: 0 };
  /** With `drain`: the node the operator drained, if any (its replicas move while it is up: not H2's case). */
  drained: (() => number | undefined) | undefined;
  /** Moves off that node (not checked against H2). */
  drainMoves = 0;

  constructor(
    private readonly bounds: HealthyNodeBounds,
    private readonly sched: SimScheduler,
    private readonly flag: (invariant: string, detail: string) => void,
  ) {}

  /** A Heartbeat call of `nodeId` reached the metasrv process (it may be held there by a stall). */
  heartbeatArrived(nodeId: number): void {
    this.lastArrivalMs.set(nodeId, this.sched.now);
  }

  /** The metasrv incarnation `metasrv` took a heartbeat of `nodeId` in (fed its detector). */
  heartbeatTaken(nodeId: number, metasrv: number): void {
    this.lastTakenMs.set(nodeId, { atMs: this.sched.now, metasrv });
  }

  /**
   * The metasrv incarnation `metasrv` took in a registration of a second process with `nodeId`'s
   * id, another store and another address (H5); `accepted` if the catalog now names it.
   */
  secondProcessRegistered(nodeId: number, metasrv: number, accepted: boolean, addr: string): void {
    this.counts.twinRegistrations++;
    const taken = this.lastTakenMs.get(nodeId);
    if (!accepted || !taken || taken.metasrv !== metasrv) return;
    const sinceMs = this.sched.now - taken.atMs;
    if (sinceMs < this.bounds.acceptablePauseMs) {
      this.flag(
        'healthy node',
        `a second process with n${nodeId}'s id at ${addr} (another store) was registered ${sinceMs} ms after the metasrv took a heartbeat of n${nodeId} in (it is alive: within ${this.bounds.acceptablePauseMs} ms, the acceptable pause: H5)`,
      );
    }
  }

  /** `nodeId`'s disk was wiped while the metasrv had allocated peer ids below `peerIdBound`. */
  diskWiped(nodeId: number, peerIdBound: number): void {
    this.wipeBounds.set(nodeId, Math.max(this.wipeBounds.get(nodeId) ?? 0, peerIdBound));
  }

  /** Whether `peerId` on `nodeId` was created before a wipe of that node's disk. */
  wipedBefore(nodeId: number, peerId: number): boolean {
    return peerId < (this.wipeBounds.get(nodeId) ?? 0);
  }

  /** Checks every procedure of `catalog` not checked before (called right after each tick of the metasrv, where they start). */
  checkProcedures(catalog: CatalogState, lostFact: LostPeerFact, learnerFact: LearnerFact = () => false): void {
    const now = this.sched.now;
    for (const record of Object.values(catalog.procedures)) {
      // A record loaded again by a restarted metasrv was checked when it started (right after
      // the tick that created it); a procedure may also be done within the tick it started in.
      const key = `${record.id}/${record.kind}/${record.createdMs}`;
      if (this.checked.has(key)) continue;
      this.checked.add(key);
      if (record.kind === 'region-failover') {
        this.counts.failovers++;
        const nodeId = record.data.nodeId;
        const heardMs = this.sinceArrival(nodeId, now);
        if (heardMs !== undefined && heardMs < this.bounds.acceptablePauseMs) {
          this.flag(
            'healthy node',
            `region-failover ${record.id} of n${nodeId} started ${heardMs} ms after a heartbeat of n${nodeId} reached the metasrv (a node is suspected only after ${this.bounds.acceptablePauseMs} ms, the acceptable pause, without one: H1)`,
          );
        }
      } else if (record.kind === 'repair-replica') {
        const { oldNodeId, oldPeerId, regionId } = record.data;
        if (record.data.inPlace) {
          this.counts.inPlace++;
          if (lostFact(oldNodeId, regionId, oldPeerId) === undefined) {
            this.flag(
              'healthy node',
              `repair-replica ${record.id} replaces peer ${oldPeerId} of ${regionId} on n${oldNodeId} as lost (${record.data.reason ?? 'no reason'}), but that replica is neither damaged, failed, nor on a disk wiped after it was created (H3)`,
            );
          }
        } else if (record.data.learner === true) {
          // A learner no repair adds (metasrv-core.ts startLearnerRemovals): removed from its group
          // while its node is up, never moved (allocate removes it; seed 2248 of the wide mix).
          if (!learnerFact(regionId, oldPeerId)) {
            this.flag('healthy node', `repair-replica ${record.id} removes peer ${oldPeerId} of ${regionId} on n${oldNodeId} as a learner, but no running replica of the region counts it as one`);
          }
        } else if (catalog.nodes[oldNodeId]?.state === 'draining' && this.drained?.() === oldNodeId) {
          this.drainMoves++; // the operator drains it (the `drain` fault, sim-drain.ts): moved while up, as asked
        } else {
          this.counts.moves++;
          const heardMs = this.sinceArrival(oldNodeId, now);
          if (heardMs !== undefined && heardMs < this.bounds.replicaRepairAfterMs) {
            this.flag(
              'healthy node',
              `repair-replica ${record.id} moves peer ${oldPeerId} of ${regionId} off n${oldNodeId} ${heardMs} ms after a heartbeat of n${oldNodeId} reached the metasrv (replica_repair_after_ms is ${this.bounds.replicaRepairAfterMs}: H2)`,
            );
          }
        }
      }
    }
  }

  private sinceArrival(nodeId: number, now: number): number | undefined {
    const last = this.lastArrivalMs.get(nodeId);
    return last === undefined ? undefined : now - last;
  }

  /** A datanode incarnation started a RegisterNode or Heartbeat call (H4). */
  callStarted(inc: Incarnation): void {
    this.checkCadence();
    const key = `${inc.nodeId}#${inc.number}`;
    const state = this.cadence.get(key);
    if (state) {
      state.endedMs = undefined;
      state.opening = false;
    } else {
      this.cadence.set(key, { inc, endedMs: undefined, opening: false });
    }
  }

  /** That call ended (answered, refused or timed out); `registered`: a registration was answered, its opens run next. */
  callEnded(inc: Incarnation, registered: boolean): void {
    const state = this.cadence.get(`${inc.nodeId}#${inc.number}`);
    if (!state) return;
    state.endedMs = this.sched.now;
    state.opening = registered;
  }

  /** Every live datanode incarnation whose last call ended started its next within one interval (H4). */
  checkCadence(): void {
    const boundMs = this.bounds.heartbeatIntervalMs;
    for (const [key, state] of this.cadence) {
      if (state.inc.dead) {
        this.cadence.delete(key);
        continue;
      }
      if (state.endedMs === undefined || state.opening) continue;
      // A paused process (the `pause` fault) starts nothing until it runs again: its timer's
      // beat is due at the pause's end, so the gap counts from there.
      if (state.inc.pausedUntil > this.sched.now) continue;
      const gapMs = this.sched.now - Math.max(state.endedMs, state.inc.pausedUntil);
      if (gapMs > boundMs) {
        this.flag(
          'heartbeat cadence',
          `n${state.inc.nodeId} (incarnation ${state.inc.number}) is up, its last metasrv call ended ${gapMs} ms ago and it started no other (its heartbeat timer fires every ${boundMs} ms: H4)`,
        );
      }
    }
  }
}
