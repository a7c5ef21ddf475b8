// Which SSTs of a region may be deleted (docs/engine.md "Garbage collection"): a pure decision
// over what the region leader knows, so the rule is tested without clocks, processes or an
// object store. The flusher (flusher.ts) gathers the inputs and does the I/O.
//
// An SST in the object store is deleted only when ALL of these hold:
//   G1. this node leads the region and has applied an entry of its own term — so every entry
//       of an earlier term that can still commit is in its log (§5.4 leader completeness), and
//       the pending ones are visible to it;
//   G2. nothing names it that may still be read: the leader's version, its raft snapshot, any
//       edit in its log above the applied index, any upload of this node not yet settled,
//       any open scan on this node (reader leases), the latest manifest in the object store
//       (what `regiondb recover` and backups load) and any manifest this node is writing or
//       failed to write since its last successful one (it may land after the listing and be the
//       latest), any replica's published snapshot;
//   G3. every replica of the region (voters and learners, the leader included) has a snapshot
//       at or above the leader's applied index when the leader first saw it unreferenced: a
//       replica restarting from an older snapshot replays entries whose versions may name it;
//       and the newest manifest in the object store is at or above that index too, so that no
//       manifest put still on its way (a deposed leader's, landing late) can become the latest
//       manifest while naming it (docs/engine.md, "A late manifest");
//   G4. G1–G3 have held, pass after pass, for the grace period, measured on this leader's
//       monotonic clock from the first pass that saw them hold. The grace is larger than the
//       longest scan (scanDeadlineMs), so a scan that started on any replica before that
//       replica moved past the SST has ended;
//   G5. a ReadIndex round after the decision confirms that no other leader exists (the flusher
//       does it; a deposed leader that has not noticed yet deletes nothing).
// Wall-clock time (the one in SST keys) plays no part.
import { limits } from '../common/limits.js';
import { CommandKind, decodeCommand } from '../engine/command.js';
import { type Entry, EntryType } from '../raft/index.js';

/** What the leader remembers about an SST it saw unreferenced (forgotten when it is named again). */
export interface UnreferencedSst {
  /** The leader's applied index when it first saw the SST unreferenced (G3). */
  readonly sinceAppliedIndex: number;
  /** Monotonic ms of the first pass on which G2 and G3 held; undefined while they do not (G4). */
  readonly deletableSinceMs: number | undefined;
}

export interface SstGcInput {
  /** SST keys of the region in the object store. */
  readonly listed: readonly string[];
  /** Keys named by the version, a pending edit, an upload in flight or an open scan (G2). */
  readonly referenced: ReadonlySet<string>;
  /**
   * Keys named only by snapshots (the leader's raft snapshot, the latest manifest, replicas'
   * published snapshots), G2 too. They name an SST until every replica has snapshotted past the
   * point it left the version, so such an SST counts as waiting for snapshots (G3).
   */
  readonly namedBySnapshots: ReadonlySet<string>;
  readonly appliedIndex: number;
  /** Lowest snapshot index over the region's replicas; 0 if one of them has published none (G3). */
  readonly replicasSnapshotIndex: number;
  /**
   * The flushed index of the newest manifest in the object store (the highest key under
   * `regions/<id>/manifest/`, what recovery loads); 0 if there is none (G3).
   */
  readonly manifestIndex: number;
  /** Monotonic. */
  readonly nowMs: number;
  readonly graceMs: number;
  /** The previous decision's `unreferenced`, from a pass of the same leader term. */
  readonly unreferenced: ReadonlyMap<string, UnreferencedSst>;
}

export interface SstGcDecision {
  readonly deletable: readonly string[];
  /** To pass to the next decision. */
  readonly unreferenced: ReadonlyMap<string, UnreferencedSst>;
  /**
   * Some SST waits for every replica to snapshot at or above this index (G3), or for the
   * snapshots naming it to be superseded; undefined if none does. A region that no longer
   * flushes gets there only if the leader flushes.
   */
  readonly snapshotNeededAt: number | undefined;
  /** Unreferenced SSTs not deletable yet: waiting for replicas' snapshots (G3), for the grace (G4). */
  readonly waitingForSnapshots: number;
  readonly inGrace: number;
}

/** G1: a leader that has applied an entry of its own term. */
export function leaderMayCollect(isLeader: boolean, term: number, termOfAppliedEntry: number | undefined): boolean {
  return isLeader && term > 0 && termOfAppliedEntry === term;
}

export function decideSstGc(input: SstGcInput): SstGcDecision {
  const unreferenced = new Map<string, UnreferencedSst>();
  const deletable: string[] = [];
  let snapshotNeededAt: number | undefined;
  let waitingForSnapshots = 0;
  let inGrace = 0;
  for (const key of input.listed) {
    if (input.referenced.has(key)) continue; // in use: forgotten, its grace starts over
    const before = input.unreferenced.get(key);
    const sinceAppliedIndex = before?.sinceAppliedIndex ?? input.appliedIndex;
    if (input.replicasSnapshotIndex < sinceAppliedIndex || input.manifestIndex < sinceAppliedIndex || input.namedBySnapshots.has(key)) {
      unreferenced.set(key, { sinceAppliedIndex, deletableSinceMs: undefined });
      snapshotNeededAt = Math.max(snapshotNeededAt ?? 0, sinceAppliedIndex);
      waitingForSnapshots++;
      continue;
    }
    const deletableSinceMs = before?.deletableSinceMs ?? input.nowMs;
    if (input.nowMs - deletableSinceMs >= input.graceMs) {
      deletable.push(key);
    } else {
      unreferenced.set(key, { sinceAppliedIndex, deletableSinceMs });
      inGrace++;
    }
  }
  return { deletable, unreferenced, snapshotNeededAt, waitingForSnapshots, inGrace };
}

/** SST keys named by flush- and compaction-edits and standby seeds among these raft entries (the pending ones, G2). */
export function sstsNamedByEntries(entries: readonly Entry[]): Set<string> {
  const keys = new Set<string>();
  for (const e of entries) {
    if (e.type !== EntryType.Normal || e.data.byteLength < 2) continue;
    const kind = e.data[1];
    if (kind !== CommandKind.FlushEdit && kind !== CommandKind.CompactionEdit && kind !== CommandKind.StandbySeed && kind !== CommandKind.StandbySeedEpoch) continue; // skip decoding writes
    const cmd = decodeCommand(e.data);
    if (cmd.kind === 'standby-seed' || cmd.kind === 'standby-seed-epoch') for (const s of cmd.ssts) keys.add(s.key);
    if (cmd.kind === 'flush-edit' && cmd.sst) keys.add(cmd.sst.key);
    if (cmd.kind === 'compaction-edit') {
      for (const k of cmd.inputs) keys.add(k);
      if (cmd.output) keys.add(cmd.output.key);
    }
  }
  return keys;
}

/**
 * The longest a scan may run on a server: half the grace (G4), at most limits.scanMsMax. A
 * scan past it fails DEADLINE_EXCEEDED (the client pages with `limit` and `start_ms`).
 */
export function scanDeadlineMs(graceMs: number): number {
  return Math.min(limits.scanMsMax, Math.floor(graceMs / 2));
}

/**
 * An uploaded SST is proposed only if its upload started less than half the grace ago: a
 * leader that saw it in the object store deletes it no sooner than a grace after that (G4),
 * so an edit naming it is in some leader's log (G2) long before.
 */
export function uploadStillProposable(uploadStartedMs: number, nowMs: number, graceMs: number): boolean {
  return nowMs - uploadStartedMs < graceMs / 2;
}

/**
 * Reader leases: the SSTs open scans on this node are reading (G2). A scan takes a lease on
 * the SSTs of the version it started on and returns it when it ends, however it ends.
 */
export class SstLeases {
  private readonly counts = new Map<string, number>();

  /** Returns the release; calling it more than once releases once. */
  acquire(keys: readonly string[]): () => void {
    for (const k of keys) this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of keys) {
        const n = (this.counts.get(k) ?? 0) - 1;
        if (n <= 0) this.counts.delete(k);
        else this.counts.set(k, n);
      }
    };
  }

  has(key: string): boolean {
    return this.counts.has(key);
  }

  keys(): IterableIterator<string> {
    return this.counts.keys();
  }
}
