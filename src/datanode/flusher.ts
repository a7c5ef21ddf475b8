// The leader-side half of the LSM (docs/architecture.md §5), the engine's flush and compaction
// run for every region this node leads: on a timer, ask the engine's policy what is due
// (src/engine/flush.ts, which also gives the order of a flush's steps and why it is safe;
// src/engine/compaction.ts), do the object-store I/O and propose the edits that every replica
// applies (src/engine/region-state.ts). Also writes the region's manifest to the object store
// after each flush (the recovery point for `regiondb recover`), publishes every local replica's
// raft snapshot for the leaders' GC, and garbage-collects SSTs that nothing may read any more
// (the rule: sst-gc.ts G1–G5).
import { assert } from '../common/assert.js';
import { type Clock, type Scheduler, type TimerHandle, systemClock, systemScheduler } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type SstMeta, encodeCommand } from '../engine/command.js';
import {
  decodeManifest,
  encodeManifest,
  manifestDivergence,
  manifestKey,
  manifestPrefix,
  parseManifestKey,
  type RegionManifest,
  restoreMarkerKey,
  readLatestManifest,
  parseReplicaSnapshotKey,
  replicaSnapshotKey,
  replicaSnapshotPrefix,
  sstPrefix,
} from '../engine/manifest.js';
import { compactionDue, mergeSsts, mergeVersion, planCompaction } from '../engine/compaction.js';
import { type SstKeySource, type SstSink, type WrittenSst, dirtySince, newSstKey, nextFlushStep, sstMetaOf, systemSstKeySource, writeFlushSst } from '../engine/flush.js';
import type { RegionState } from '../engine/region-state.js';
import type { ObjectStore } from '../object-store/object-store.js';
import type { RegionServer, Replica } from '../replication/region-server.js';
import { DueSchedule } from './due-schedule.js';
import { type SstGcDecision, type SstGcInput, SstLeases, type UnreferencedSst, decideSstGc, leaderMayCollect, scanDeadlineMs, sstsNamedByEntries, uploadStillProposable } from './sst-gc.js';

export interface FlusherSettings {
  readonly flushBytes: number;
  readonly flushAgeMs: number;
  readonly compactAtSsts: number;
  readonly gcGraceMs: number;
  readonly checkIntervalMs: number;
  readonly manifestsKept: number;
  /**
   * The GC pass interval of a quiet region (`gcIntervalMs`): one whose last pass found every SST
   * in the store named by its version and which has not changed since. Undefined: the usual
   * interval for every region (the simulator's default and the unit tests'). Only ever lengthens
   * the interval (docs/engine.md, "Garbage collection", "Quiet regions").
   */
  readonly gcQuietIntervalMs?: number;
}

export interface FlusherMetrics {
  flushed(regionId: string, bytes: number, seconds: number): void;
  compacted(regionId: string, inputs: number, seconds: number): void;
  sstsDeleted(count: number): void;
  /** A manifest this node would write is already in the object store with different content (divergence or damage): refused, nothing overwritten. */
  manifestRefused(regionId: string): void;
}

interface RegionWork {
  /**
   * The replica object this state belongs to; undefined until a check first visits the region.
   * A region closed and opened again on this node (recovered, restored, moved away and back) is a
   * new replica: its state starts afresh (Flusher.workOf).
   */
  replica: Replica<RegionState> | undefined;
  /** Memtable first became non-empty (monotonic ms) — the age trigger. */
  dirtySinceMs: number | undefined;
  uploading: boolean;
  compacting: boolean;
  freezing: boolean;
  manifestWritten: number;
  requested: boolean;
  manifestWriting: boolean;
  /** The flushed index whose manifest write was refused (a different object is already at its key); not tried again. */
  manifestRefused: number;
  compactRequested: boolean;
  /** GC asked for a flush, even of an empty memtable, so replicas snapshot past an index (G3). */
  snapshotRequested: boolean;
  /** Monotonic ms of the last GC pass. */
  lastGcMs: number;
  gcRunning: boolean;
  /** GC's memory of unreferenced SSTs, valid for one leader term (G4 restarts with each term). */
  gcTerm: number;
  unreferenced: ReadonlyMap<string, UnreferencedSst>;
  /** What the region looked like at the end of its last GC pass, if that pass found it clean (gcIntervalMs). */
  gcQuiet: GcQuiet | undefined;
  /**
   * This node's flush and compaction uploads of the region that have ended, however: one may have
   * left an orphan in the store that the version does not show (an edit that failed, or committed
   * and changed nothing). A GC pass during which one ended records nothing (gcQuiet).
   */
  uploadsEnded: number;
  /** Index of this replica's raft snapshot last published to the object store. */
  snapshotPublished: number;
  snapshotPublishing: boolean;
  /**
   * SSTs named by the manifests this replica started writing that may still land in the store
   * (in flight, or failed: a failed put may have taken effect, or take effect late), by flushed
   * index. Dropped once a manifest at a higher index is written: it is the latest from then on,
   * whatever older write lands later. GC keeps what they name (G2 in sst-gc.ts).
   */
  manifestsLanding: Map<number, readonly string[]>;
}

/**
 * What the flusher takes from its surroundings besides the monotonic clock: the timer of its
 * periodic check and the source of new SST keys' time and random tag. Production uses the
 * process's (systemFlusherEnv); the whole-datanode simulator injects seeded ones on its
 * virtual time (test/sim/cluster-sim.ts), so that a seed replays to the same trace.
 */
export interface FlusherEnv {
  readonly scheduler: Scheduler;
  readonly sstKeys: SstKeySource;
}

export const systemFlusherEnv: FlusherEnv = { scheduler: systemScheduler, sstKeys: systemSstKeySource };

/** Barrier freezes (consistent backups) of one region waiting for their flush at once. */
const PINNED_FLUSHES_PER_REGION_MAX = 8;
/** Most SSTs one GC pass deletes; the rest wait for the next pass. */
const GC_DELETES_PER_PASS_MAX = 1000;
/** GC passes run every grace/4 (so a grace is measured to within a quarter), at most this far apart. */
const GC_INTERVAL_MS_MAX = 60_000;
/**
 * Every this many checks, one visits every replica whatever the marks say: a bound on what a
 * missed mark could cost (a visit the rule below should have made comes at most this late);
 * by the argument in `check` such a visit does nothing.
 */
const FULL_CHECK_EVERY = 40;

/**
 * A region as its leader's GC sees it between passes: the leader term, the flushed index, the
 * version's SST list (RegionState replaces the array on every edit that changes it, so the same
 * array is the same list) and the membership. A GC pass that ended clean records it; the region
 * stays quiet while all four are the same.
 */
export interface GcQuiet {
  readonly term: number;
  readonly flushedIndex: number;
  readonly ssts: readonly SstMeta[];
  /** Voters, then learners, as confState gives them. */
  readonly members: string;
}

/** Nothing of the region's work is in flight on this node. */
function idle(w: RegionWork): boolean {
  return !w.uploading && !w.compacting && !w.freezing && !w.manifestWriting && !w.gcRunning && !w.snapshotPublishing;
}

export function gcQuietOf(term: number, flushedIndex: number, ssts: readonly SstMeta[], conf: { readonly voters: readonly number[]; readonly learners: readonly number[] }): GcQuiet {
  return { term, flushedIndex, ssts, members: `${conf.voters.join(',')}/${conf.learners.join(',')}` };
}

/**
 * The interval from a region's last GC pass to its next. The usual one is a quarter of the
 * grace, at least a check interval and at most GC_INTERVAL_MS_MAX. A region whose last pass
 * ended clean (`recorded`: every SST listed was in the version, nothing unreferenced, nothing
 * asked of the replicas) and that is still as that pass left it (`now`, the same term, flushed
 * index, SST list and membership) gets `gcQuietIntervalMs` instead, when that is longer: the
 * only garbage it can gain without changing is an upload another node completed late (docs/
 * engine.md, "Quiet regions"). Any change puts it back on the usual interval, counted from the
 * same last pass.
 */
export function gcIntervalMs(settings: Pick<FlusherSettings, 'checkIntervalMs' | 'gcGraceMs' | 'gcQuietIntervalMs'>, recorded: GcQuiet | undefined, now: GcQuiet | undefined): number {
  const usual = Math.min(GC_INTERVAL_MS_MAX, Math.max(settings.checkIntervalMs, settings.gcGraceMs / 4));
  if (settings.gcQuietIntervalMs === undefined || recorded === undefined || now === undefined) return usual;
  const same = recorded.term === now.term && recorded.flushedIndex === now.flushedIndex && recorded.ssts === now.ssts && recorded.members === now.members;
  return same ? Math.max(usual, settings.gcQuietIntervalMs) : usual;
}

export class Flusher {
  private readonly work = new Map<string, RegionWork>();
  private timer: TimerHandle | undefined;
  private stopped = false;
  /** SSTs of this node from before their put until their edit settles (G2). */
  private readonly uploading = new Set<string>();
  /** Work started by check() and not finished yet (settled() waits for it). */
  private readonly running = new Set<Promise<void>>();
  /**
   * Consistent backup (write-barrier.ts): freezes whose flush a barrier waits for, by region and
   * freeze index; the manifest at exactly that index once its flush edit applied (null: missed).
   */
  private readonly pinned = new Map<string, Map<number, Uint8Array | null | undefined>>();
  /**
   * Which replicas a check visits (docs/performance.md, sixth pass): those the region server marks
   * as changed (its change feed; undefined for a server without one, such as the unit tests'
   * fakes: then every check visits every replica), the regions marked here (`markRegion`: a
   * request, the end of work a check started, a flush GC asked for), and those whose due time
   * (`due`: the next GC pass, a memtable's flush age) has come.
   */
  private readonly changes: (() => ReadonlySet<Replica<RegionState>>) | undefined;
  private marked = new Set<string>();
  private readonly due = new DueSchedule();
  /**
   * Each replica's index in allReplicas() as of the last time it was read whole: a check visits
   * what it selected in that order (as a walk over every replica would). The region server's
   * order changes only where it adds a replica (at the end, or in a replaced one's place: a new
   * object either way) or removes one, so the indexes of the replicas still hosted keep their
   * relative order; a selected replica without an index has it read again.
   */
  private order = new Map<Replica<RegionState>, number>();
  private checksUntilFull = 0;

  constructor(
    private readonly regionServer: RegionServer<RegionState>,
    private readonly store: ObjectStore,
    private readonly settings: FlusherSettings,
    private readonly log: Logger,
    private readonly metrics: FlusherMetrics,
    private readonly clock: Clock = systemClock,
    /** SSTs open scans on this node are reading (G2); the Database service takes them. */
    readonly leases: SstLeases = new SstLeases(),
    private readonly env: FlusherEnv = systemFlusherEnv,
  ) {
    const feed = (regionServer as Partial<Pick<RegionServer<RegionState>, 'changeFeed'>>).changeFeed;
    this.changes = typeof feed === 'function' ? feed.call(regionServer) : undefined;
  }

  /** The longest a scan may run on this node (sst-gc.ts G4). */
  get scanDeadlineMs(): number {
    return scanDeadlineMs(this.settings.gcGraceMs);
  }

  /** The deadline of a scan starting now, on this flusher's (monotonic) clock: true once passed. */
  scanDeadline(): () => boolean {
    const endMs = this.clock.nowMs() + this.scanDeadlineMs;
    return () => this.clock.nowMs() > endMs;
  }

  start(): void {
    this.timer = this.env.scheduler.setInterval(() => this.check(), this.settings.checkIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** Resolves once the work started by earlier checks has finished (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** Work a check started for a region; the region is visited again at the first check after it ends. */
  private track(regionId: string, work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => {
      this.running.delete(work);
      this.markRegion(regionId);
    });
  }

  /**
   * The next check visits the region: something of the flusher's own state for it changed (a
   * request, the end of its work). Protected so that the whole-datanode simulator can plant a
   * flusher that forgets these marks and show that the engine mode's trace hashes catch it
   * (test/sim/cluster-sim.ts); nothing in src/ overrides it.
   */
  protected markRegion(regionId: string): void {
    this.marked.add(regionId);
  }

  private state(regionId: string): RegionWork {
    const existing = this.work.get(regionId);
    if (existing) return existing;
    const w: RegionWork = {
        replica: undefined,
        dirtySinceMs: undefined,
        uploading: false,
        compacting: false,
        freezing: false,
        manifestWritten: 0,
        requested: false,
        manifestWriting: false,
        manifestRefused: 0,
        manifestsLanding: new Map(),
        compactRequested: false,
        snapshotRequested: false,
        lastGcMs: Number.NEGATIVE_INFINITY,
        gcRunning: false,
        gcTerm: 0,
        unreferenced: new Map(),
        gcQuiet: undefined,
        uploadsEnded: 0,
        snapshotPublished: 0,
        snapshotPublishing: false,
    };
    this.work.set(regionId, w);
    return w;
  }

  /** Asks for a flush of the region at the next check (explicit `regiondb flush`, backpressure). */
  request(regionId: string): void {
    const w = this.state(regionId);
    w.requested = true;
    this.markRegion(regionId);
    // The manifest of the region's flushed index was refused (a different object is at its key)
    // and is not tried again: an empty memtable would not flush, and the caller (`regiondb flush`
    // waits for a manifest at the flushed index) would wait forever. Freeze anyway: a new flushed
    // index gets a manifest of its own.
    if (w.manifestRefused > w.manifestWritten) w.snapshotRequested = true;
  }

  /** Asks for a flush at the next check even of an empty memtable: a manifest at the applied index (a standby seed needs one). */
  requestManifest(regionId: string): void {
    this.state(regionId).snapshotRequested = true;
    this.markRegion(regionId);
  }

  /** The flushed index whose manifest is in the object store (the region's recovery point). */
  manifestIndex(regionId: string): number {
    return this.work.get(regionId)?.manifestWritten ?? 0;
  }

  /**
   * Keeps the region manifest as of the flush of the freeze at `freezeIndex` (a barrier's freeze,
   * docs/backup.md): later flushes move the region on, and the manifest in the object store is
   * written only for the newest flushed index a check sees. Call before that flush can apply.
   */
  pinFlush(regionId: string, freezeIndex: number): void {
    let forRegion = this.pinned.get(regionId);
    if (!forRegion) this.pinned.set(regionId, (forRegion = new Map()));
    if (forRegion.size >= PINNED_FLUSHES_PER_REGION_MAX) {
      throw new RegionDbError(ErrorCode.ResourceExhausted, `region ${regionId}: ${forRegion.size} barrier freezes already wait for their flush (max ${PINNED_FLUSHES_PER_REGION_MAX})`);
    }
    forRegion.set(freezeIndex, undefined);
  }

  /** The manifest kept for a pinned freeze: bytes once flushed, null if its flush was missed, undefined while waiting. */
  pinnedManifest(regionId: string, freezeIndex: number): Uint8Array | null | undefined {
    return this.pinned.get(regionId)?.get(freezeIndex);
  }

  unpinFlush(regionId: string, freezeIndex: number): void {
    const forRegion = this.pinned.get(regionId);
    forRegion?.delete(freezeIndex);
    if (forRegion?.size === 0) this.pinned.delete(regionId);
  }

  /** Right after the flush edit of `freezeIndex` applied here: the region's version is exactly that flush's. */
  private capturePinned(regionId: string, freezeIndex: number): void {
    const forRegion = this.pinned.get(regionId);
    if (!forRegion?.has(freezeIndex)) return;
    const state = this.regionServer.replica(regionId)?.stateMachine;
    // Uploads are serial per region and flush edits apply in freeze order, so nothing flushed
    // after it yet; a different flushed index means the edit was not ours (a duplicate).
    forRegion.set(freezeIndex, state?.flushedIndex === freezeIndex ? encodeManifest(state.manifest()) : null);
  }

  /** Asks for a compaction of the region's SSTs at the next check (explicit `regiondb compact`). */
  requestCompaction(regionId: string): void {
    this.state(regionId).compactRequested = true;
    this.markRegion(regionId);
  }

  /**
   * Whether an SST whose put started at `startedMs` may still be named by an edit (sst-gc.ts
   * uploadStillProposable, G4). Protected for the same reason as decideSstGc.
   */
  protected uploadProposable(startedMs: number, nowMs: number): boolean {
    return uploadStillProposable(startedMs, nowMs, this.settings.gcGraceMs);
  }

  /**
   * The GC rule (sst-gc.ts). Protected so that the whole-datanode simulator can run an older,
   * weaker rule in a test-only subclass and show that it finds the data loss that rule caused
   * (test/sim/cluster-sim.ts); nothing in src/ overrides it.
   */
  protected decideSstGc(input: SstGcInput): SstGcDecision {
    return decideSstGc(input);
  }

  /**
   * One pass over the regions hosted here: every replica publishes its snapshot; leaders flush,
   * compact and collect. It visits only the replicas that may have something to do (the region
   * server's change feed, the regions marked here, the due times), in the order of
   * allReplicas(), as a visit of every replica would. Why a replica left out has nothing to do,
   * so that the passes do exactly what visiting every replica did: docs/performance.md, sixth
   * pass; the engine simulator's trace hashes with and without the selection are its check.
   */
  check(): void {
    if (this.stopped) return;
    const changed = this.changedReplicas();
    const marked = this.marked;
    this.marked = new Set();
    const everything = changed === undefined || this.checksUntilFull-- <= 0;
    if (everything) {
      this.checksUntilFull = FULL_CHECK_EVERY - 1;
      const order = new Map<Replica<RegionState>, number>();
      for (const replica of this.regionServer.allReplicas()) {
        order.set(replica, order.size);
        if (!replica.closed) this.visit(replica);
      }
      this.order = order;
      // Closed here: a due time that no visit would clear.
      this.due.retain((regionId) => this.regionServer.replica(regionId) !== undefined);
      this.forgetRegionsNotHere();
      return;
    }
    // What may have work: the server's marks, this flusher's own, and the due times that have
    // come — a millisecond early, never late (the due times are sums, the rules below
    // differences: an early visit is one the old every-replica pass made as well, and does what
    // it did). Only hosted replicas (replica(): not closed), as allReplicas() lists them.
    const selected = new Set<Replica<RegionState>>();
    for (const replica of changed) if (this.regionServer.replica(replica.regionId) === replica) selected.add(replica);
    for (const regionId of marked) {
      const replica = this.regionServer.replica(regionId);
      if (replica) selected.add(replica);
    }
    for (const regionId of this.due.takeDue(this.clock.nowMs() + 1)) {
      const replica = this.regionServer.replica(regionId);
      if (replica) selected.add(replica); // else closed here: its due time is gone with it
    }
    if (selected.size === 0) return;
    const visits = [...selected];
    if (visits.some((replica) => !this.order.has(replica))) {
      const order = new Map<Replica<RegionState>, number>();
      for (const replica of this.regionServer.allReplicas()) order.set(replica, order.size);
      this.order = order;
    }
    const order = this.order;
    visits.sort((a, b) => order.get(a)! - order.get(b)!);
    for (const replica of visits) if (!replica.closed) this.visit(replica);
  }

  /**
   * GC's memory of a region this node does not lead (any more): its first sightings and its quiet
   * record. They are valid for one leader term of one replica only: collectGarbage starts afresh
   * in a new term, and within one replica a node that stopped leading leads again only in a
   * higher term (raft terms only grow). A recovery or a restore restarts the region at the
   * manifest's flushedTerm, where a term may come again, but as a new replica, whose work state
   * starts afresh (workOf). So forgetting them here changes no decision; it bounds what a
   * follower keeps. Forgetting can only move a first sighting later — a later G3 index, a later
   * G4 start — never end a grace.
   */
  private forgetGc(w: RegionWork): void {
    if (w.unreferenced.size > 0) w.unreferenced = new Map();
    w.gcQuiet = undefined;
    w.gcTerm = 0;
  }

  /**
   * At a full check: the work state of regions no longer hosted here (closed, removed, moved
   * away) is dropped once nothing of it is in flight; until then its GC memory alone is
   * forgotten. A failed manifest put that may still land (in `manifestsLanding`) does not keep
   * it: such a put at flushed index m names only SSTs that were in the version past m, and GC's
   * late-manifest rule (G3's recovery point) deletes one of those only once a manifest above m is
   * in the store — so the put lands below the highest key, never the latest. The same rule is what
   * covers these puts after a restart of this node, which loses `manifestsLanding` too. A region
   * opened here again starts as a new leader's would: it lists (and adopts) the manifest at its
   * flushed index, and republishes its replica's snapshot (the same bytes under the same key,
   * docs/engine.md).
   */
  private forgetRegionsNotHere(): void {
    for (const [regionId, w] of this.work) {
      if (this.regionServer.replica(regionId)) continue;
      if (idle(w)) this.work.delete(regionId);
      else this.forgetGc(w);
    }
  }

  /**
   * The replicas the region server marked as changed since the last check; undefined: visit every
   * replica. Protected so that the whole-datanode simulator can compare with a flusher that
   * visits every replica (test/sim/cluster-sim.ts, `flusherCheck`); nothing in src/ overrides it.
   */
  protected changedReplicas(): ReadonlySet<Replica<RegionState>> | undefined {
    return this.changes?.();
  }

  /**
   * The work state of this replica, or undefined while the work of the region's previous replica
   * on this node is still in flight (its end marks the region, so a check comes back to it).
   * Everything in RegionWork describes one replica's history: after a recovery or a restore the
   * region restarts here from a manifest at a LOWER flushed index (a restore run again deletes
   * the region's manifests and puts the backup's), so the previous replica's `manifestWritten`
   * would name a manifest the store no longer holds — counted by GC's G3 as if it were there, and
   * holding back the manifest writes (and `regiondb flush`) until the flushed index passed it.
   * The recovery closes and opens the region between two checks, with no full check in between,
   * so the replica object is what tells the two apart. The requests (`regiondb flush`,
   * `compact`, GC's flush) and the SST lists of manifest puts that may still land are carried
   * over: both only ask for more work or keep more.
   */
  private workOf(replica: Replica<RegionState>): RegionWork | undefined {
    const w = this.state(replica.regionId);
    if (w.replica === replica) return w;
    if (w.replica === undefined) {
      w.replica = replica;
      return w;
    }
    if (!idle(w)) return undefined;
    this.work.delete(replica.regionId);
    const fresh = this.state(replica.regionId);
    fresh.replica = replica;
    fresh.requested = w.requested;
    fresh.compactRequested = w.compactRequested;
    fresh.snapshotRequested = w.snapshotRequested;
    for (const [index, keys] of w.manifestsLanding) fresh.manifestsLanding.set(index, keys);
    return fresh;
  }

  private visit(replica: Replica<RegionState>): void {
    const regionId = replica.regionId;
    const w = this.workOf(replica);
    if (!w) return;
    const snapshotIndex = replica.store.snapshot().metadata.index;
    if (snapshotIndex > w.snapshotPublished && !w.snapshotPublishing) this.track(regionId, this.publishSnapshot(replica, w));
    if (!replica.isLeader()) {
      this.due.delete(regionId);
      this.forgetGc(w);
      return;
    }
    const state = replica.stateMachine;
    const now = this.clock.nowMs();
    w.dirtySinceMs = dirtySince(state, w.dirtySinceMs, now);
    switch (nextFlushStep(state, w, now, this.settings)) {
      case 'upload':
        this.track(regionId, this.upload(regionId, state, w));
        break;
      case 'freeze':
        this.track(regionId, this.freeze(regionId, w));
        break;
      case 'forget-request':
        w.requested = false;
        this.markRegion(regionId);
        break;
      case 'none':
        break;
    }
    if (state.flushedIndex > w.manifestWritten) this.track(regionId, this.writeManifest(regionId, state, w));
    if (compactionDue(state.ssts.length, this.settings.compactAtSsts, w.compactRequested) && !w.compacting) {
      const everything = w.compactRequested;
      w.compactRequested = false;
      this.track(regionId, this.compact(regionId, state, w, everything));
    }
    const interval = gcIntervalMs(this.settings, w.gcQuiet, w.gcQuiet && gcQuietOf(replica.raft.term, state.flushedIndex, state.ssts, replica.raft.confState()));
    if (!w.gcRunning && now - w.lastGcMs >= interval) {
      w.lastGcMs = now;
      this.track(regionId, this.collectGarbage(replica, w));
    }
    // The times at which this leader has something to do without any change: its next GC pass
    // (none while one runs: its end marks the region), and the flush age of a memtable waiting
    // for nothing else (nextFlushStep's `aged`).
    let due = w.gcRunning ? Number.POSITIVE_INFINITY : w.lastGcMs + interval;
    if (state.frozen.length === 0 && !w.freezing && w.dirtySinceMs !== undefined) due = Math.min(due, w.dirtySinceMs + this.settings.flushAgeMs);
    if (due === Number.POSITIVE_INFINITY) this.due.delete(regionId);
    else this.due.set(regionId, due);
  }

  private async freeze(regionId: string, w: RegionWork): Promise<void> {
    w.freezing = true;
    const requested = w.requested;
    w.requested = false;
    w.snapshotRequested = false; // GC asks again on its next pass if it still needs it
    try {
      await this.regionServer.propose(regionId, encodeCommand({ kind: 'freeze' }));
    } catch (err) {
      // An explicit request still stands: the next check (here, or on the next leader's
      // `regiondb flush` retry) proposes the freeze again.
      w.requested ||= requested;
      this.log.debug({ regionId, err: (err as Error).message }, 'freeze not committed (leadership moved?)');
    } finally {
      w.freezing = false;
    }
  }

  private async upload(regionId: string, state: RegionState, w: RegionWork): Promise<void> {
    w.uploading = true;
    const startedMs = this.clock.nowMs();
    const frozen = state.frozen[0]!;
    const key = newSstKey(regionId, frozen.index, this.env.sstKeys);
    try {
      const written = await this.uploadSst(key, (sink) => writeFlushSst(frozen, sink));
      const sst: SstMeta | null = written ? sstMetaOf(key, written) : null;
      await this.regionServer.propose(regionId, encodeCommand({ kind: 'flush-edit', freezeIndex: frozen.index, sst }));
      this.capturePinned(regionId, frozen.index);
      const seconds = (this.clock.nowMs() - startedMs) / 1000;
      this.metrics.flushed(regionId, sst?.size ?? 0, seconds);
      this.log.info({ regionId, freezeIndex: frozen.index, sst: sst?.key, bytes: sst?.size ?? 0, entries: sst?.entries ?? 0, ms: Math.round(seconds * 1000) }, 'flushed memtable to SST');
    } catch (err) {
      this.log.warn({ regionId, freezeIndex: frozen.index, err: (err as Error).message }, 'flush did not complete; will retry (an uploaded SST is an orphan until GC)');
    } finally {
      this.uploading.delete(key);
      w.uploading = false;
      this.uploadEnded(w);
    }
  }

  /**
   * Uploads an SST that an edit will name as `write` builds it (streamed: the flusher holds a
   * chunk of it, not all of it); null, and nothing stored, if `write` found no entries. Its key
   * is in `uploading` from before the upload (the caller removes it once the edit settled). It
   * may be proposed only if it became visible less than half the grace ago (sst-gc.ts
   * uploadStillProposable): an upload is invisible to get and list until complete() (the
   * ObjectUpload contract), so the clock starts there, not at the first byte — a long merge
   * does not eat into the grace; otherwise it is left as an orphan for GC.
   */
  private async uploadSst(key: string, write: (sink: SstSink) => Promise<WrittenSst | null>): Promise<WrittenSst | null> {
    this.uploading.add(key);
    const upload = this.store.upload(key);
    let visibleFromMs: number;
    let written: WrittenSst | null;
    try {
      written = await write(upload);
      if (!written) {
        await upload.abort();
        return null;
      }
      visibleFromMs = this.clock.nowMs();
      const stored = await upload.complete();
      assert(stored.size === written.size, `uploaded ${stored.size} bytes of ${key}, built ${written.size}`);
    } catch (err) {
      await upload.abort();
      throw err;
    }
    const tookMs = this.clock.nowMs() - visibleFromMs;
    if (!this.uploadProposable(visibleFromMs, visibleFromMs + tookMs)) {
      throw new RegionDbError(ErrorCode.DeadlineExceeded, `uploading ${key} took ${Math.round(tookMs)} ms, half the SST GC grace or more: not proposed (GC removes it)`);
    }
    return written;
  }

  /**
   * Writes the manifest at the region's flushed index, once: objects are write-once (caches,
   * backups and versioned buckets rely on it). A new leader starts with nothing written by
   * itself, and the manifest at its flushed index is usually there already (the previous leader
   * wrote it; or a put of ours failed but took effect), so the listing — which the pruning below
   * needs anyway, so this costs no extra request — is read before the put: a manifest already at
   * the key is adopted as this node's own if it is the same recovery point
   * (manifestDivergence), and refused loudly, never overwritten, if it is not or does not decode.
   * A listing followed by a put is not atomic; why that is enough: docs/engine.md, "Manifests".
   */
  private async writeManifest(regionId: string, state: RegionState, w: RegionWork): Promise<void> {
    const index = state.flushedIndex;
    if (w.manifestWritten >= index || w.manifestWriting || w.manifestRefused === index) return;
    w.manifestWriting = true;
    const manifest = state.manifest();
    const key = manifestKey(regionId, index);
    // Landing from now on, not only from the put: the manifest names the SST list of this moment,
    // and while the listing below (and a read of a stored one) takes its time a compaction may
    // move an SST out of the version and GC pass its grace; it must still keep what the manifest
    // about to be put names (G2).
    w.manifestsLanding.set(index, manifest.ssts.map((s) => s.key));
    try {
      const listed = (await this.store.list(manifestPrefix(regionId))).map((o) => o.key);
      if (listed.includes(key)) {
        const refusal = await this.checkStoredManifest(key, manifest);
        if (refusal !== undefined) {
          w.manifestRefused = index;
          this.metrics.manifestRefused(regionId);
          this.log.error(
            { regionId, index, key, why: refusal },
            'a different manifest is already in the object store at this flushed index: refusing to overwrite it (objects are write-once); the recovery point stays where it was until a later flush',
          );
          return;
        }
        this.log.debug({ regionId, index, key }, 'adopted the manifest already in the object store at this flushed index');
      } else {
        await this.store.put(key, encodeManifest(manifest));
        listed.push(key);
        listed.sort(); // keys are ASCII: code-unit order is the store's byte order
      }
      w.manifestWritten = index; // only now is `index` the region's recovery point
      for (const landing of w.manifestsLanding.keys()) if (landing < index) w.manifestsLanding.delete(landing);
      for (const old of listed.slice(0, Math.max(0, listed.length - this.settings.manifestsKept))) await this.store.delete(old);
    } catch (err) {
      this.log.warn({ regionId, index, err: (err as Error).message }, 'writing the manifest failed; will retry');
    } finally {
      w.manifestWriting = false;
    }
  }

  /** Why the manifest stored at `key` may not stand for `ours` (damaged, or another recovery point), or undefined if it may. */
  private async checkStoredManifest(key: string, ours: RegionManifest): Promise<string | undefined> {
    const bytes = await this.store.get(key); // a transient failure throws: the caller retries at the next check
    let stored: RegionManifest;
    try {
      stored = decodeManifest(bytes, `${this.store.description}/${key}`);
    } catch (err) {
      return (err as Error).message;
    }
    return manifestDivergence(stored, ours);
  }

  /**
   * Merges the run of the region's SSTs the engine picks (src/engine/compaction.ts) into one,
   * streaming the output into the object store as it is built: memory is a chunk of the output
   * (and one S3 part), neither its entries nor its bytes.
   */
  private async compact(regionId: string, state: RegionState, w: RegionWork, everything: boolean): Promise<void> {
    const all = [...state.ssts];
    const plan = planCompaction(all, this.settings.compactAtSsts, everything);
    if (!plan) return;
    w.compacting = true;
    const startedMs = this.clock.nowMs();
    const { inputs, dropTombstones } = plan;
    let key: string | undefined;
    try {
      key = newSstKey(regionId, mergeVersion(inputs), this.env.sstKeys);
      const merged = await this.uploadSst(key, (sink) => mergeSsts(state, inputs, dropTombstones, sink));
      const output: SstMeta | null = merged ? sstMetaOf(key, merged) : null;
      await this.regionServer.propose(regionId, encodeCommand({ kind: 'compaction-edit', inputs: inputs.map((s) => s.key), output }));
      const seconds = (this.clock.nowMs() - startedMs) / 1000;
      this.metrics.compacted(regionId, inputs.length, seconds);
      this.log.info({ regionId, inputs: inputs.length, of: all.length, output: output?.key, entries: output?.entries ?? 0 }, 'compacted SSTs');
    } catch (err) {
      // An explicit request stands until a compaction of it completes (a threshold-triggered one
      // is due again by itself): dropping it here made "will retry" untrue.
      if (everything) w.compactRequested = true;
      this.log.warn({ regionId, err: (err as Error).message }, 'compaction did not complete; will retry');
    } finally {
      if (key) this.uploading.delete(key);
      w.compacting = false;
      this.uploadEnded(w);
    }
  }

  /**
   * A flush or compaction of this node ended (its upload done or not, its edit committed or not):
   * whatever it left in the store is listed by the next GC pass, which comes at the usual interval
   * — a region that changed nothing visible is not quiet while an orphan of its own may be there
   * (docs/engine.md, "Quiet regions"). The end of the work marks the region, so the next check
   * recomputes its due time.
   */
  private uploadEnded(w: RegionWork): void {
    w.uploadsEnded++;
    w.gcQuiet = undefined;
  }

  /**
   * Publishes this replica's raft snapshot (the manifest it would restart from) so the region
   * leader's GC keeps what it names and what its replay may read (sst-gc.ts G2, G3). Only
   * durable snapshots are published (the WAL's view), so a published index never runs ahead
   * of the snapshot this replica restarts from.
   */
  private async publishSnapshot(replica: Replica<RegionState>, w: RegionWork): Promise<void> {
    const snapshot = replica.store.snapshot();
    const { regionId, selfPeerId } = replica;
    w.snapshotPublishing = true;
    try {
      await this.store.put(replicaSnapshotKey(regionId, selfPeerId, snapshot.metadata.index), snapshot.data);
      w.snapshotPublished = snapshot.metadata.index;
      for (const o of await this.store.list(replicaSnapshotPrefix(regionId))) {
        const published = parseReplicaSnapshotKey(regionId, o.key);
        if (published?.peerId === selfPeerId && published.index < snapshot.metadata.index) await this.store.delete(o.key);
      }
    } catch (err) {
      this.log.warn({ regionId, index: snapshot.metadata.index, err: (err as Error).message }, 'publishing the replica snapshot failed; will retry');
    } finally {
      w.snapshotPublishing = false;
    }
  }

  /**
   * SSTs in use that this node can see synchronously (G2): the version, edits above the
   * applied index, this node's uploads in flight, open scans. Read after the object-store
   * listing, so anything listed and still on its way into the version is caught at one of
   * these steps. Protected for the same reason as decideSstGc (the simulator's planted rule of
   * finding 4a keeps only the version); nothing in src/ overrides it.
   */
  protected inUse(replica: Replica<RegionState>): Set<string> {
    const state = replica.stateMachine;
    const keys = new Set(state.ssts.map((s) => s.key));
    const log = replica.raft.log;
    if (log.lastIndex() > replica.appliedIndex) {
      for (const k of sstsNamedByEntries(log.slice(replica.appliedIndex + 1, log.lastIndex() + 1, Number.POSITIVE_INFINITY))) keys.add(k);
    }
    for (const k of this.uploading) keys.add(k);
    for (const k of this.leases.keys()) keys.add(k);
    return keys;
  }

  private leaderMayCollect(replica: Replica<RegionState>, term: number): boolean {
    return !replica.closed && replica.raft.term === term && leaderMayCollect(replica.isLeader(), term, replica.raft.log.term(replica.appliedIndex));
  }

  /**
   * A GC pass found that the region's latest manifest (its recovery point) does not decode
   * (docs/engine.md, "A damaged latest manifest"). What it names cannot be read, so the pass
   * deletes nothing and forgets its first sightings (no grace runs meanwhile), as for a restore's
   * marker. It asks for a flush — of an empty memtable if need be — when that flush puts a
   * manifest above the damaged one: the damaged key is at or above the flushed index (else this
   * leader's own manifest at its flushed index is on its way and will be the latest) and at or
   * below the applied index (a freeze proposed now lands above it). That bounds the requests:
   * once such a flush applies the flushed index is above the damaged key and nothing is asked
   * again; a freeze that does not commit is asked again by the next pass, as G3's flush is. A
   * damaged key above the applied index (another history's object, a stray one) cannot be
   * superseded by a flush: no request, and the warning says an operator must replace the object.
   */
  private holdForDamagedManifest(replica: Replica<RegionState>, w: RegionWork, key: string, damage: string): void {
    const regionId = replica.regionId;
    w.unreferenced = new Map();
    const index = parseManifestKey(regionId, key);
    const state = replica.stateMachine;
    const supersedable = index !== undefined && state.flushedIndex <= index && index <= replica.appliedIndex;
    const flushing = state.frozen.length > 0 || w.freezing;
    if (supersedable && !flushing) {
      w.snapshotRequested = true;
      this.markRegion(regionId); // the next check freezes it
    }
    this.log.warn(
      { regionId, manifest: key, err: damage, flushedIndex: state.flushedIndex, appliedIndex: replica.appliedIndex, flushRequested: supersedable && !flushing },
      supersedable
        ? "the region's latest manifest is damaged: SST GC deletes nothing until a flush puts a newer manifest"
        : index !== undefined && index < state.flushedIndex
          ? "the region's latest manifest is damaged: SST GC deletes nothing until this leader's manifest at its flushed index is in the store"
          : "the region's latest manifest is damaged and above anything this region has applied (another history, or a stray object): SST GC deletes nothing until an operator replaces or removes it",
    );
  }

  /**
   * A GC pass held by a restore's marker says which restore (backup, table) and since when (the
   * marker's `startedAtMs`, the restore's wall clock: shown, never used to decide anything). Past
   * a grace it warns: the restore may have been killed, and its marker then holds the region's
   * GC until the same restore runs again (docs/engine.md, "A marker left behind").
   */
  private async logRestoreMarker(regionId: string): Promise<void> {
    const key = restoreMarkerKey(regionId);
    let marker: { backupId?: unknown; table?: unknown; startedAtMs?: unknown } = {};
    try {
      marker = JSON.parse(new TextDecoder().decode(await this.store.get(key))) as typeof marker;
    } catch {
      // gone since the listing (the restore finished), or not JSON: logged without its fields
    }
    const startedAtMs = typeof marker.startedAtMs === 'number' ? marker.startedAtMs : undefined;
    const ageMs = startedAtMs === undefined ? undefined : Math.max(0, Date.now() - startedAtMs);
    const fields = { regionId, marker: key, backupId: String(marker.backupId ?? '?'), table: String(marker.table ?? '?'), markerAgeMs: ageMs };
    if (ageMs !== undefined && ageMs < this.settings.gcGraceMs) {
      this.log.info(fields, 'SST GC pass skipped: a restore is copying SSTs into the region');
      return;
    }
    this.log.warn(
      fields,
      `SST GC of the region is held by a restore marker ${ageMs === undefined ? 'of unknown age' : `put ${Math.round(ageMs / 60_000)} min ago`}: if that restore is no longer running, run the same br restore again (it finishes and removes the marker), drop the table, or delete the marker object`,
    );
  }

  /** One GC pass over a region this node leads: the rule is sst-gc.ts (G1–G5); this is its I/O. */
  private async collectGarbage(replica: Replica<RegionState>, w: RegionWork): Promise<void> {
    const regionId = replica.regionId;
    const term = replica.raft.term;
    if (!this.leaderMayCollect(replica, term)) return; // G1
    if (w.gcTerm !== term) {
      w.gcTerm = term; // a new leadership measures every grace afresh
      w.unreferenced = new Map();
    }
    w.gcRunning = true;
    w.gcQuiet = undefined; // recorded again only by a pass that ends clean
    const uploadsEnded = w.uploadsEnded;
    try {
      const inFolder = (await this.store.list(sstPrefix(regionId))).map((o) => o.key);
      if (inFolder.includes(restoreMarkerKey(regionId))) {
        // A restore is copying SSTs in that no manifest names yet: nothing here is an orphan that
        // this pass can tell apart from a copy, so it deletes nothing and starts no grace (the
        // marker was put before the first copy, so a listing holding a copy holds the marker).
        w.unreferenced = new Map();
        await this.logRestoreMarker(regionId);
        return;
      }
      const listed = inFolder.filter((k) => k.endsWith('.sst'));
      const namedBySnapshots = new Set<string>();
      const latestManifest = await readLatestManifest(this.store, regionId);
      if (latestManifest && 'damage' in latestManifest) {
        this.holdForDamagedManifest(replica, w, latestManifest.key, latestManifest.damage.message);
        return;
      }
      for (const s of latestManifest?.manifest.ssts ?? []) namedBySnapshots.add(s.key);
      // G3: the recovery point must be past what is deleted, or a late put of an older manifest
      // (a deposed leader's) could land as the latest naming it. Its key orders the manifests.
      const manifestIndex = latestManifest ? (parseManifestKey(regionId, latestManifest.key) ?? 0) : 0;
      // G3: every member's durable snapshot, the newest each has published; this replica's own
      // is read locally (fresher).
      const conf = replica.raft.confState();
      const members = new Set([...conf.voters, ...conf.learners]);
      const newest = new Map<number, { index: number; key: string }>();
      for (const o of await this.store.list(replicaSnapshotPrefix(regionId))) {
        const published = parseReplicaSnapshotKey(regionId, o.key);
        if (!published || published.peerId === replica.selfPeerId) continue;
        if (!members.has(published.peerId)) {
          await this.store.delete(o.key); // a removed replica: peer ids are never reused
          continue;
        }
        if ((newest.get(published.peerId)?.index ?? -1) < published.index) newest.set(published.peerId, { index: published.index, key: o.key });
      }
      for (const { key } of newest.values()) {
        for (const s of decodeManifest(await this.store.get(key), `${this.store.description}/${key}`).ssts) namedBySnapshots.add(s.key);
      }
      const snapshot = replica.store.snapshot();
      if (snapshot.metadata.index > 0) {
        for (const s of decodeManifest(snapshot.data, `raft snapshot of region ${regionId}`).ssts) namedBySnapshots.add(s.key);
      }
      // G2: a manifest this replica is writing (or failed to write) may land after the listing
      // above and become the latest; what it names is kept as the latest manifest's is.
      for (const keys of w.manifestsLanding.values()) for (const k of keys) namedBySnapshots.add(k);
      let replicasSnapshotIndex = members.size > 0 ? Number.POSITIVE_INFINITY : 0;
      for (const peerId of members) {
        const index = peerId === replica.selfPeerId ? snapshot.metadata.index : (newest.get(peerId)?.index ?? 0);
        replicasSnapshotIndex = Math.min(replicasSnapshotIndex, index);
      }

      if (!this.leaderMayCollect(replica, term)) return;
      const decision = this.decideSstGc({
        listed,
        referenced: this.inUse(replica),
        namedBySnapshots,
        appliedIndex: replica.appliedIndex,
        replicasSnapshotIndex,
        // What this node wrote or adopted is in the store (or a higher one is) even if the listing
        // above was taken before its put landed.
        manifestIndex: Math.max(manifestIndex, w.manifestWritten),
        nowMs: this.clock.nowMs(),
        graceMs: this.settings.gcGraceMs,
        unreferenced: w.unreferenced,
      });
      w.unreferenced = decision.unreferenced;
      const state = replica.stateMachine;
      if (decision.snapshotNeededAt !== undefined && state.flushedIndex < decision.snapshotNeededAt) {
        w.snapshotRequested = true;
        this.markRegion(regionId); // the next check freezes it, while this pass goes on
      }
      // Logged when the store holds SSTs the version does not name (after a compaction, a failed
      // or pending flush): what each is waiting for.
      const versionKeys = new Set(state.ssts.map((s) => s.key));
      const notInVersion = listed.filter((k) => !versionKeys.has(k)).length;
      if (notInVersion === 0) {
        // Clean: every SST listed is in the version, so nothing was unreferenced and nothing asked
        // of the replicas. The region is quiet until its version, term or membership changes.
        // An upload of this node that ended during the pass may have completed after its listing,
        // leaving an orphan the version does not show: not clean. (One still running when the
        // pass ends forgets the record when it ends: uploadEnded.)
        if (decision.unreferenced.size === 0 && decision.snapshotNeededAt === undefined && w.uploadsEnded === uploadsEnded) w.gcQuiet = gcQuietOf(term, state.flushedIndex, state.ssts, conf);
        return;
      }
      const unreferenced = decision.deletable.length + decision.waitingForSnapshots + decision.inGrace;
      this.log.info(
        { regionId, term, notInVersion, inUse: notInVersion - unreferenced, waitingForSnapshots: decision.waitingForSnapshots, inGrace: decision.inGrace, deletable: decision.deletable.length, replicasSnapshotIndex },
        'SST GC pass',
      );
      if (decision.deletable.length === 0) return;

      // G5: confirm with a quorum that no other leader exists, then re-check what this node
      // can see (a flush or a scan may have started since the decision).
      await this.regionServer.readBarrier(regionId);
      if (!this.leaderMayCollect(replica, term)) return;
      const stillInUse = this.inUse(replica);
      const snapshotNow = replica.store.snapshot();
      if (snapshotNow.metadata.index > 0) {
        for (const s of decodeManifest(snapshotNow.data, `raft snapshot of region ${regionId}`).ssts) stillInUse.add(s.key);
      }
      let deleted = 0;
      for (const key of decision.deletable.slice(0, GC_DELETES_PER_PASS_MAX)) {
        if (stillInUse.has(key)) continue;
        await this.store.delete(key);
        deleted++;
      }
      if (deleted > 0) {
        this.metrics.sstsDeleted(deleted);
        this.log.info({ regionId, deleted }, 'deleted unreferenced SSTs');
      }
    } catch (err) {
      this.log.warn({ regionId, err: (err as Error).message }, 'SST garbage collection failed; will retry');
    } finally {
      w.gcRunning = false;
    }
  }
}
