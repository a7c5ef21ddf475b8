// The Admin RPCs of a consistent backup's write barrier (docs/backup.md, "Consistency point"):
// BarrierHold, BarrierFreeze, BarrierRelease. The hold itself is write-barrier.ts (B1–B3).
//
// BarrierFreeze, in order:
//   1. the region is led here in the hold's term and the hold is still in place (B2, B3);
//   2. a freeze is queued and, in the same synchronous step, the hold is released: writes that
//      waited are queued after it (B1);
//   3. the freeze applies; it must be in the hold's term (a node leads at most once per term);
//   4. its flush is pinned (flusher.pinFlush) before the flush can apply, and the answer waits
//      for the manifest at exactly the freeze's index;
//   5. the SSTs that manifest names are leased from this node's GC for sst_lease_ms, so the
//      backup can copy them even if they are compacted away meanwhile.
import { assert } from '../common/assert.js';
import type { TimedClock } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { limits } from '../common/limits.js';
import { encodeCommand } from '../engine/command.js';
import { decodeManifest } from '../engine/manifest.js';
import type { RegionState } from '../engine/region-state.js';
import type { AdminHandlers } from '../rpc/generated/index.js';
import { str, u64 } from '../rpc/proto.js';
import { unary } from '../rpc/status.js';
import type { RegionServer } from '../replication/region-server.js';
import type { Flusher } from './flusher.js';
import type { HoldOutcome, WriteBarrier } from './write-barrier.js';

/** The longest BarrierFreeze waits for the freeze's flush. */
const FLUSH_WAIT_MS_MAX = 60_000;
const FLUSH_POLL_MS = 20;

export interface BarrierHost {
  readonly regionServer: RegionServer<RegionState>;
  readonly flusher: Pick<Flusher, 'pinFlush' | 'pinnedManifest' | 'unpinFlush' | 'check' | 'leases'>;
  readonly writeBarrier: WriteBarrier;
  readonly clock: TimedClock;
  readonly log: Logger;
}

type BarrierHandlers = Pick<AdminHandlers, 'BarrierHold' | 'BarrierFreeze' | 'BarrierRelease'>;

function boundedMs(value: unknown, field: string, max: number): number {
  const ms = u64(value, field);
  if (ms === 0 || ms > max) throw new RegionDbError(ErrorCode.InvalidArgument, `${field} must be 1…${max}, got ${ms}`);
  return ms;
}

export function barrierAdmin(host: BarrierHost): BarrierHandlers {
  const { regionServer, flusher, writeBarrier, clock, log } = host;

  const sleep = (ms: number) => new Promise<void>((ok) => clock.setTimeout(ok, ms));

  async function freeze(barrierId: string, regionId: string, term: number, leaseMs: number) {
    const replica = regionServer.leaderReplica(regionId); // NOT_LEADER / NOT_FOUND
    const hold = writeBarrier.active(regionId, barrierId);
    if (!hold) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `region ${regionId} is not held by barrier ${barrierId} (the hold expired or was released): the barrier is abandoned`);
    }
    if (hold.term !== term || replica.raft.term !== term) {
      writeBarrier.release(regionId, barrierId);
      throw new RegionDbError(ErrorCode.ConditionFailed, `region ${regionId}: leadership changed since the hold (term ${term}, now ${replica.raft.term}): the barrier is abandoned`);
    }
    // 2: queue the freeze, then let the held writes go (they queue after it).
    let proposed: Promise<unknown>;
    let outcome: HoldOutcome | undefined;
    try {
      proposed = regionServer.propose(regionId, encodeCommand({ kind: 'freeze' }));
    } finally {
      outcome = writeBarrier.release(regionId, barrierId);
    }
    assert(outcome !== undefined, 'the hold found active above is still in place (no await since)');
    const released = outcome;
    const result = (await proposed) as { status: string; version?: number };
    if (result.status !== 'ok' || result.version === undefined) throw new RegionDbError(ErrorCode.Internal, `region ${regionId}: the barrier's freeze answered ${result.status}`);
    const freezeIndex = result.version;
    // 3: the freeze must be the hold's leader's (same term); nothing of it flushed yet.
    const state = regionServer.replica(regionId)?.stateMachine;
    const frozen = state?.frozen.find((f) => f.index === freezeIndex);
    if (!frozen || frozen.term !== term) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `region ${regionId}: the barrier's freeze at ${freezeIndex} is not of term ${term}: the barrier is abandoned`);
    }
    // 4: pinned before its flush can apply (a flush needs an upload and a raft round).
    flusher.pinFlush(regionId, freezeIndex);
    let manifest: Uint8Array | null | undefined;
    try {
      flusher.check();
      const deadlineMs = clock.nowMs() + FLUSH_WAIT_MS_MAX;
      for (;;) {
        manifest = flusher.pinnedManifest(regionId, freezeIndex);
        if (manifest !== undefined) break;
        if (!regionServer.replica(regionId)?.isLeader()) regionServer.leaderReplica(regionId); // NOT_LEADER: the barrier is abandoned
        if (clock.nowMs() > deadlineMs) throw new RegionDbError(ErrorCode.DeadlineExceeded, `region ${regionId}: the barrier's freeze at ${freezeIndex} was not flushed within ${FLUSH_WAIT_MS_MAX} ms`);
        await sleep(FLUSH_POLL_MS);
      }
    } finally {
      flusher.unpinFlush(regionId, freezeIndex);
    }
    if (manifest === null) throw new RegionDbError(ErrorCode.ConditionFailed, `region ${regionId}: the flush of the barrier's freeze at ${freezeIndex} was not this node's: the barrier is abandoned`);
    // 5: protect what the manifest names from this node's GC while the backup copies it.
    const m = decodeManifest(manifest, `region ${regionId} at ${freezeIndex}`);
    const releaseLease = flusher.leases.acquire(m.ssts.map((s) => s.key));
    writeBarrier.keepLease(releaseLease, leaseMs);
    log.info({ regionId, barrierId, freezeIndex, term, heldMs: released.heldMs, writesHeld: released.writesHeld, ssts: m.ssts.length }, 'barrier freeze flushed');
    return { freeze_index: String(freezeIndex), freeze_term: String(term), held_ms: Math.round(released.heldMs), writes_held: released.writesHeld, manifest: Buffer.from(manifest) };
  }

  return {
    BarrierHold: unary(async (req) => {
      const barrierId = str(req.barrier_id, 'barrier_id', 256);
      const regionId = str(req.region_id, 'region_id', 32);
      const holdMs = boundedMs(req.hold_ms, 'hold_ms', limits.brBarrierHoldMsMax);
      const replica = regionServer.leaderReplica(regionId);
      const hold = writeBarrier.hold(regionId, barrierId, replica.raft.term, holdMs);
      return { term: String(hold.term) };
    }, log),
    BarrierFreeze: unary(async (req) => {
      const barrierId = str(req.barrier_id, 'barrier_id', 256);
      const regionId = str(req.region_id, 'region_id', 32);
      const term = u64(req.term, 'term');
      const leaseMs = boundedMs(req.sst_lease_ms, 'sst_lease_ms', limits.brBarrierSstLeaseMsMax);
      return freeze(barrierId, regionId, term, leaseMs);
    }, log),
    BarrierRelease: unary(async (req) => {
      const barrierId = str(req.barrier_id, 'barrier_id', 256);
      const regionId = str(req.region_id, 'region_id', 32);
      return { released: writeBarrier.release(regionId, barrierId) !== undefined };
    }, log),
  };
}
