// The leader-side half of the LSM (ARCHITECTURE §5): for every region this node leads, decide
// when to flush and compact, do the object-store I/O, and propose the edits that every replica
// applies (src/engine/region-state.ts). Also writes the region's manifest to the object store
// after each flush (the recovery point for `regiondb recover`) and garbage-collects SSTs that
// no version references any more.
//
// Order of a flush, and why it is safe:
//   1. propose `freeze` (index i)      — every replica sets aside the same memtable;
//   2. build + upload the SST          — immutable object, unique key; until 3 commits it is
//                                        an orphan that GC may delete after the grace period;
//   3. propose `flush-edit{i, sst}`    — replicas reference the SST, flushedIndex = i;
//   4. (each replica) raft snapshot at i = the manifest; the WAL below i is truncated;
//   5. write the manifest to the object store (leader; retried until it is there).
// A leader change anywhere before 3 leaves the frozen memtable on every replica: the next
// leader starts again at 2. WAL entries are never truncated before 3 is applied.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { type SstMeta, encodeCommand } from '../engine/command.js';
import { decodeManifest, encodeManifest, manifestKey, manifestPrefix, sstPrefix } from '../engine/manifest.js';
import { type RegionState, memEntryFromCell, memEntryToSst } from '../engine/region-state.js';
import { type SstBuilder, sstBuilder } from '../engine/sst/format.js';
import type { ObjectStore } from '../object-store/object-store.js';
import type { ApplyResult } from '../engine/index.js';
import type { RegionServer } from './region-server.js';

export interface FlusherSettings {
  readonly flushBytes: number;
  readonly flushAgeMs: number;
  readonly compactAtSsts: number;
  readonly gcGraceMs: number;
  readonly checkIntervalMs: number;
  readonly manifestsKept: number;
}

export interface FlusherMetrics {
  flushed(regionId: string, bytes: number, seconds: number): void;
  compacted(regionId: string, inputs: number, seconds: number): void;
  sstsDeleted(count: number): void;
}

interface RegionWork {
  /** Memtable first became non-empty (ms) — the age trigger. */
  dirtySinceMs: number;
  uploading: boolean;
  compacting: boolean;
  freezing: boolean;
  manifestWritten: number;
  requested: boolean;
  manifestWriting: boolean;
  compactRequested: boolean;
  lastGcMs: number;
}

/**
 * A compaction merges a contiguous run of the region's SSTs (newest first: [start, end)) into
 * one SST at the run's place. Replicas accept any contiguous run (region-state.ts).
 */
export interface CompactionRun {
  readonly start: number;
  readonly end: number;
}

/** SSTs are in one size tier while the largest is at most this many times the smallest. */
export const COMPACTION_TIER_RATIO = 4;
/** Smaller SSTs (flushes by age) count as this size, so they join the smallest tier. */
export const COMPACTION_SIZE_FLOOR_BYTES = 1 << 20;

/**
 * Which SSTs to merge: size-tiered. Merging every SST each time (as before) rewrote the whole
 * region at every compaction, so work and memory grew with the region (make bench-ingest:
 * throughput fell and RSS climbed). Here the newest run of at least `width` adjacent SSTs of
 * one size tier (largest ≤ COMPACTION_TIER_RATIO × smallest) is merged; the result is a tier
 * up, so each byte is rewritten about log₄(region size / flush size) times. If no tier is full
 * but the region holds 2 × `width` SSTs, the adjacent pair with the smallest total is merged,
 * so the count stays bounded. `everything` (an explicit request) merges all SSTs.
 */
export function pickCompactionRun(sizes: readonly number[], width: number, everything: boolean, floorBytes = COMPACTION_SIZE_FLOOR_BYTES): CompactionRun | null {
  const n = sizes.length;
  if (n < 2) return null;
  if (everything) return { start: 0, end: n };
  const size = sizes.map((s) => Math.max(s, floorBytes));
  for (let start = 0; start + width <= n; start++) {
    let lo = size[start]!;
    let hi = lo;
    let end = start + 1;
    while (end < n) {
      const nextLo = Math.min(lo, size[end]!);
      const nextHi = Math.max(hi, size[end]!);
      if (nextHi > COMPACTION_TIER_RATIO * nextLo) break;
      lo = nextLo;
      hi = nextHi;
      end++;
    }
    if (end - start >= width) return { start, end };
  }
  if (n < 2 * width) return null;
  let best = 0;
  for (let i = 1; i + 1 < n; i++) if (sizes[i]! + sizes[i + 1]! < sizes[best]! + sizes[best + 1]!) best = i;
  return { start: best, end: best + 2 };
}

/**
 * The SST replacing `inputs` (newest version of each key; tombstones kept unless
 * `dropTombstones`), built as the merge streams by; null if nothing is left.
 */
export async function mergeSsts(state: RegionState, inputs: readonly SstMeta[], dropTombstones: boolean): Promise<ReturnType<SstBuilder['finish']> | null> {
  const builder = sstBuilder();
  let seen = 0;
  for await (const cell of state.mergedCells(inputs)) {
    await yieldEvery(++seen);
    if (cell.fields === null && dropTombstones) continue;
    builder.add(memEntryToSst(memEntryFromCell(cell)));
  }
  return builder.count > 0 ? builder.finish() : null;
}

/** Rows between two yields to the event loop during a flush or a merge. */
export const ROWS_PER_YIELD = 1024;

/**
 * Lets timers and I/O run every ROWS_PER_YIELD rows. Awaiting cached SST blocks or memtable rows
 * only queues microtasks, which never let the event loop turn: without this a merge of a few
 * hundred thousand rows stalls the datanode for a second, longer than a raft election timeout.
 */
function yieldEvery(rows: number): Promise<void> | undefined {
  return rows % ROWS_PER_YIELD === 0 ? new Promise((resolve) => setImmediate(resolve)) : undefined;
}

/** `regions/<id>/sst/<freeze index hex>-<created ms>-<random>.sst`: GC reads the age from the name. */
function sstKey(regionId: string, index: number): string {
  return `${sstPrefix(regionId)}${index.toString(16).padStart(16, '0')}-${Date.now()}-${randomBytes(4).toString('hex')}.sst`;
}

function createdMsOf(key: string): number | undefined {
  const m = /-(\d{13,})-[0-9a-f]+\.sst$/.exec(key);
  return m ? Number(m[1]) : undefined;
}

export class Flusher {
  private readonly work = new Map<string, RegionWork>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly regionServer: RegionServer<ApplyResult>,
    private readonly store: ObjectStore,
    private readonly settings: FlusherSettings,
    private readonly log: Logger,
    private readonly metrics: FlusherMetrics,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.check(), this.settings.checkIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  private state(regionId: string): RegionWork {
    let w = this.work.get(regionId);
    if (!w) this.work.set(regionId, (w = { dirtySinceMs: 0, uploading: false, compacting: false, freezing: false, manifestWritten: 0, requested: false, manifestWriting: false, compactRequested: false, lastGcMs: Date.now() }));
    return w;
  }

  /** Asks for a flush of the region at the next check (explicit `regiondb flush`, backpressure). */
  request(regionId: string): void {
    this.state(regionId).requested = true;
  }

  /** The flushed index whose manifest is in the object store (the region's recovery point). */
  manifestIndex(regionId: string): number {
    return this.work.get(regionId)?.manifestWritten ?? 0;
  }

  /** Asks for a compaction of the region's SSTs at the next check (explicit `regiondb compact`). */
  requestCompaction(regionId: string): void {
    this.state(regionId).compactRequested = true;
  }

  /** One pass over the regions this node leads. */
  check(): void {
    if (this.stopped) return;
    for (const replica of this.regionServer.allReplicas()) {
      if (!replica.isLeader()) continue;
      const state = replica.stateMachine as RegionState;
      const w = this.state(replica.regionId);
      const now = Date.now();
      if (state.memtable.count === 0) w.dirtySinceMs = 0;
      else if (w.dirtySinceMs === 0) w.dirtySinceMs = now;
      if (state.frozen.length > 0) {
        if (!w.uploading) void this.upload(replica.regionId, state, w);
      } else if (!w.freezing && state.memtable.count > 0) {
        const due = state.memtable.sizeBytes >= this.settings.flushBytes || now - w.dirtySinceMs >= this.settings.flushAgeMs || w.requested;
        if (due) void this.freeze(replica.regionId, w);
      } else if (w.requested && state.memtable.count === 0) {
        w.requested = false;
      }
      if (state.flushedIndex > w.manifestWritten) void this.writeManifest(replica.regionId, state, w);
      const compactDue = state.ssts.length >= this.settings.compactAtSsts || (w.compactRequested && state.ssts.length >= 2);
      if (compactDue && !w.compacting) {
        const everything = w.compactRequested;
        w.compactRequested = false;
        void this.compact(replica.regionId, state, w, everything);
      }
      if (now - w.lastGcMs >= Math.min(60_000, this.settings.gcGraceMs)) {
        w.lastGcMs = now;
        void this.collectGarbage(replica.regionId, state);
      }
    }
  }

  private async freeze(regionId: string, w: RegionWork): Promise<void> {
    w.freezing = true;
    const requested = w.requested;
    w.requested = false;
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
    const started = process.hrtime.bigint();
    const frozen = state.frozen[0]!;
    try {
      let sst: SstMeta | null = null;
      const builder = sstBuilder();
      for (const entry of frozen.memtable.scan()) {
        builder.add(memEntryToSst(entry));
        await yieldEvery(builder.count);
      }
      if (builder.count > 0) {
        const { bytes, properties } = builder.finish();
        const key = sstKey(regionId, frozen.index);
        await this.store.put(key, bytes);
        sst = {
          key,
          size: bytes.byteLength,
          entries: properties.entryCount,
          maxVersion: properties.maxVersion,
          minTimestampMs: properties.minTimestamp,
          maxTimestampMs: properties.maxTimestamp,
        };
      }
      await this.regionServer.propose(regionId, encodeCommand({ kind: 'flush-edit', freezeIndex: frozen.index, sst }));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.metrics.flushed(regionId, sst?.size ?? 0, seconds);
      this.log.info({ regionId, freezeIndex: frozen.index, sst: sst?.key, bytes: sst?.size ?? 0, entries: builder.count, ms: Math.round(seconds * 1000) }, 'flushed memtable to SST');
    } catch (err) {
      this.log.warn({ regionId, freezeIndex: frozen.index, err: (err as Error).message }, 'flush did not complete; will retry (an uploaded SST is an orphan until GC)');
    } finally {
      w.uploading = false;
    }
  }

  private async writeManifest(regionId: string, state: RegionState, w: RegionWork): Promise<void> {
    const index = state.flushedIndex;
    if (w.manifestWritten >= index || w.manifestWriting) return;
    w.manifestWriting = true;
    try {
      await this.store.put(manifestKey(regionId, index), encodeManifest(state.manifest()));
      w.manifestWritten = index; // only now is `index` the region's recovery point
      const manifests = (await this.store.list(manifestPrefix(regionId))).map((o) => o.key);
      for (const old of manifests.slice(0, Math.max(0, manifests.length - this.settings.manifestsKept))) await this.store.delete(old);
    } catch (err) {
      this.log.warn({ regionId, index, err: (err as Error).message }, 'writing the manifest failed; will retry');
    } finally {
      w.manifestWriting = false;
    }
  }

  /**
   * Merges a run of the region's SSTs (pickCompactionRun) into one, streaming: memory is the
   * output SST's bytes, not its entries. Tombstones are dropped only when the run includes the
   * oldest SST (nothing older lies beneath it); otherwise they must keep shadowing older data.
   */
  private async compact(regionId: string, state: RegionState, w: RegionWork, everything: boolean): Promise<void> {
    const all = [...state.ssts];
    const run = pickCompactionRun(
      all.map((s) => s.size),
      this.settings.compactAtSsts,
      everything,
    );
    if (!run) return;
    w.compacting = true;
    const started = process.hrtime.bigint();
    const inputs = all.slice(run.start, run.end);
    const dropTombstones = run.end === all.length;
    try {
      const merged = await mergeSsts(state, inputs, dropTombstones);
      let output: SstMeta | null = null;
      if (merged) {
        const { bytes, properties } = merged;
        const key = sstKey(regionId, properties.maxVersion);
        await this.store.put(key, bytes);
        output = { key, size: bytes.byteLength, entries: properties.entryCount, maxVersion: properties.maxVersion, minTimestampMs: properties.minTimestamp, maxTimestampMs: properties.maxTimestamp };
      }
      // Flushes since the pick stay in front of the run; every replica replaces the same run.
      await this.regionServer.propose(regionId, encodeCommand({ kind: 'compaction-edit', inputs: inputs.map((s) => s.key), output }));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.metrics.compacted(regionId, inputs.length, seconds);
      this.log.info({ regionId, inputs: inputs.length, of: all.length, output: output?.key, entries: output?.entries ?? 0 }, 'compacted SSTs');
    } catch (err) {
      this.log.warn({ regionId, err: (err as Error).message }, 'compaction did not complete; will retry');
    } finally {
      w.compacting = false;
    }
  }

  /** Deletes SSTs of the region that the current version does not reference, after the grace period. */
  private async collectGarbage(regionId: string, state: RegionState): Promise<void> {
    try {
      const live = new Set(state.ssts.map((s) => s.key));
      // Also keep what the region's raft snapshot references: a follower installing it reads
      // those SSTs until it replays the compaction that replaced them.
      const snapshot = this.regionServer.replica(regionId)?.store.snapshot();
      if (snapshot && snapshot.metadata.index > 0) {
        for (const s of decodeManifest(snapshot.data, `raft snapshot of region ${regionId}`).ssts) live.add(s.key);
      }
      const now = Date.now();
      let deleted = 0;
      for (const o of await this.store.list(sstPrefix(regionId))) {
        const created = createdMsOf(o.key);
        if (live.has(o.key) || created === undefined || now - created < this.settings.gcGraceMs) continue;
        // Re-check against the version at delete time: a flush may have referenced it since.
        if ((this.regionServer.replica(regionId)?.stateMachine as RegionState | undefined)?.ssts.some((s) => s.key === o.key)) continue;
        await this.store.delete(o.key);
        deleted++;
      }
      if (deleted > 0) {
        this.metrics.sstsDeleted(deleted);
        this.log.info({ regionId, deleted }, 'deleted unreferenced SSTs');
      }
    } catch (err) {
      this.log.warn({ regionId, err: (err as Error).message }, 'SST garbage collection failed; will retry');
    }
  }
}
