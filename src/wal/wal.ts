// One LevelDB per datanode holding every local replica's raft log and hard state
// (docs/architecture.md §4). Key layout (utf8 keys; regionId zero-padded so regions never interleave):
//   r/<regionId:20>/e/<index:16 hex>  → entry record
//   r/<regionId:20>/hs                → hard state record
//   r/<regionId:20>/snap              → snapshot record
//   r/<regionId:20>/trunc             → compaction point {index, term}
//   r/<regionId:20>/meta              → region meta (opaque, owned by the datanode)
//   d/<regionId:20>                   → drop in progress: the region's records are being deleted (dropRegion)
//   n/meta                            → node meta (opaque)
//
// Reads are served from an in-memory copy of each region's log (MemoryStorage) that is updated
// only after a batch is durable, so the raft core never sees a write that could be lost.
// Group commit: a WalBatch collects operations for many regions and writes them in ONE LevelDB
// batch with sync: true. A failed sync poisons the WAL (docs/raft-rules.md R3): the datanode
// must stop serving.
// One exception (etcd's MustSync, taken one step further): a batch whose only content is hard
// states that moved nothing but the commit index is not written at all when it commits. Those
// hard states are kept in memory and written in the node's next batch (any region's), or at
// close. The commit index is volatile state in Raft (Figure 2): losing it in a crash only makes
// the node re-learn it from the leader (the core never lowers its commit index, and a stored
// commit index below the snapshot is fine). This takes a LevelDB write, with its thread-pool
// round trip, off the path between a commit and its apply. Entries, terms, votes, snapshots,
// compaction points and metas are always written and synced before the batch resolves.
// The exception to the exception: before a membership change is applied, the host asks for a
// durable commit index (LogBatch.requireDurableCommit). A node that applied a removal and lost
// the commit index covering it in a crash would restart with the old configuration; with the
// removed peer gone, a group shrunk to one voter never elects again (found by the simulator).
// See docs/performance.md.
import { Level } from 'level';
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { refuseDamagedLevelDbLogs } from './leveldb-log.js';
import type { LogBatch, LogEngine, RegionDamage } from './log-engine.js';

export type { RegionDamage };
import { MemoryStorage } from '../raft/storage.js';
import { type ConfState, EMPTY_HARD_STATE, EMPTY_SNAPSHOT, type Entry, type HardState, type Snapshot } from '../raft/types.js';
import {
  RecordError,
  decodeEntry,
  decodeHardState,
  decodeMeta,
  decodeSnapshot,
  decodeTruncated,
  encodeEntry,
  encodeHardState,
  encodeMeta,
  encodeSnapshot,
  encodeTruncated,
} from './record.js';

type Db = Level<string, Uint8Array>;
type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

const regionPrefix = (regionId: string) => `r/${regionId.padStart(20, '0')}/`;
const entryKey = (regionId: string, index: number) => `${regionPrefix(regionId)}e/${index.toString(16).padStart(16, '0')}`;
const dropMarkerKey = (regionId: string) => `d/${regionId.padStart(20, '0')}`;
/** Records deleted per LevelDB write when a region is dropped (dropRegion): the node's other writes go between two. */
export const DROP_CHUNK_RECORDS = 4096;

/** The compaction point: the later of the recorded one and the snapshot (a snapshot covers everything up to its index even if the log was not compacted yet). */
function compactionPoint(recorded: { index: number; term: number } | undefined, snapshot: Snapshot): { index: number; term: number } {
  const fromSnapshot = { index: snapshot.metadata.index, term: snapshot.metadata.term };
  return recorded && recorded.index >= fromSnapshot.index ? recorded : fromSnapshot;
}

export class WalFatalError extends RegionDbError {
  constructor(message: string, cause: unknown) {
    super(ErrorCode.Internal, `${message}; the WAL can no longer be trusted and the datanode must stop`, { cause });
  }
}

export interface WalStats {
  syncs: number;
  bytesWritten: number;
  lastBatchOps: number;
}

/** One LevelDB batch written by the WAL (for metrics; the WAL does not depend on prom-client). */
export interface WalWrite {
  readonly ops: number;
  readonly bytes: number;
  readonly seconds: number;
}

export interface WalObserver {
  written(write: WalWrite): void;
  /** A batch of commit-index-only hard states was deferred to the next write (see top). */
  deferred?(hardStates: number): void;
}

/** The durable raft storage of one region; reads from the cache, writes through the WAL. */
export class RegionLog {
  constructor(
    readonly regionId: string,
    private readonly wal: Wal,
    public cache: MemoryStorage,
  ) {}

  initialState() {
    return this.cache.initialState();
  }
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    return this.cache.entries(lo, hi, maxSizeBytes);
  }
  term(index: number): number {
    return this.cache.term(index);
  }
  firstIndex(): number {
    return this.cache.firstIndex();
  }
  lastIndex(): number {
    return this.cache.lastIndex();
  }
  snapshot(): Snapshot {
    return this.cache.snapshot();
  }
  async append(entries: readonly Entry[]): Promise<void> {
    const b = this.wal.batch();
    b.append(this.regionId, entries);
    await b.commit();
  }
  async setHardState(hardState: HardState): Promise<void> {
    const b = this.wal.batch();
    b.setHardState(this.regionId, hardState);
    await b.commit();
  }
  async applySnapshot(snapshot: Snapshot): Promise<void> {
    const b = this.wal.batch();
    b.applySnapshot(this.regionId, snapshot);
    await b.commit();
  }
  async createSnapshot(index: number, confState: ConfState, data: Uint8Array): Promise<Snapshot> {
    const current = this.cache.snapshot().metadata.index;
    if (index <= current) {
      throw new RegionDbError(ErrorCode.StorageCompacted, `snapshot ${index} is older than ${current}`);
    }
    assert(index <= this.cache.lastIndex(), `createSnapshot: ${index} > last index ${this.cache.lastIndex()}`);
    const snapshot: Snapshot = { metadata: { index, term: this.cache.term(index), confState }, data };
    const b = this.wal.batch();
    b.setSnapshot(this.regionId, snapshot);
    await b.commit();
    return snapshot;
  }
  async compact(compactIndex: number): Promise<void> {
    const b = this.wal.batch();
    b.compact(this.regionId, compactIndex);
    await b.commit();
  }
}

/** Deleted WAL records (truncation, conflicts) between background LevelDB compactions. */
const WAL_RECLAIM_AFTER_DELETES = 20_000;

export class WalBatch implements LogBatch {
  private readonly ops: Op[] = [];
  /** Cache updates, applied in order once the batch is durable. */
  private readonly apply: (() => void)[] = [];
  /** Per region: last index as it will be after this batch (for conflict truncation). */
  private readonly projectedLast = new Map<string, number>();
  /** Operations that are commit-index-only hard states; a batch of nothing else is deferred (see top). */
  private commitOnlyOps = 0;

  constructor(private readonly wal: Wal) {}

  private lastOf(regionId: string): number {
    return this.projectedLast.get(regionId) ?? this.wal.cacheOf(regionId).lastIndex();
  }

  append(regionId: string, entries: readonly Entry[]): void {
    const firstKept = this.wal.cacheOf(regionId).firstIndex();
    if (entries.length > 0 && entries[0]!.index < firstKept) entries = entries.filter((e) => e.index >= firstKept);
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    const last = entries[entries.length - 1]!.index;
    const previousLast = this.lastOf(regionId);
    for (const e of entries) this.ops.push({ type: 'put', key: entryKey(regionId, e.index), value: encodeEntry(e) });
    // Entries beyond the new tail conflict with it (§5.3): delete them.
    for (let i = last + 1; i <= previousLast; i++) this.ops.push({ type: 'del', key: entryKey(regionId, i) });
    assert(first <= previousLast + 1, () => `WAL append for region ${regionId} leaves a gap: last ${previousLast}, appending ${first}`);
    this.projectedLast.set(regionId, last);
    this.apply.push(() => this.wal.cacheOf(regionId).append(entries));
  }

  setHardState(regionId: string, hardState: HardState): void {
    // The cache holds what is on disk (it is updated after a write), so the same term and vote
    // means only the commit index moved.
    const persisted = this.wal.cacheOf(regionId).initialState().hardState;
    if (hardState.term === persisted.term && hardState.vote === persisted.vote) this.commitOnlyOps++;
    this.ops.push({ type: 'put', key: `${regionPrefix(regionId)}hs`, value: encodeHardState(hardState) });
    this.apply.push(() => this.wal.cacheOf(regionId).setHardState(hardState));
  }

  /** Records a snapshot taken locally (the log is kept; compact separately). */
  setSnapshot(regionId: string, snapshot: Snapshot): void {
    this.ops.push({ type: 'put', key: `${regionPrefix(regionId)}snap`, value: encodeSnapshot(snapshot) });
    this.apply.push(() => {
      const cache = this.wal.cacheOf(regionId);
      cache.createSnapshot(snapshot.metadata.index, snapshot.metadata.confState, snapshot.data);
    });
  }

  /** Installs a snapshot received from the leader: the whole log is replaced (§7). */
  applySnapshot(regionId: string, snapshot: Snapshot): void {
    const cache = this.wal.cacheOf(regionId);
    // Refused here, not when the cache applies it after the write: by then the stale snapshot
    // would be on disk, and a restart would find the log rewound to it.
    const current = cache.snapshot().metadata.index;
    if (snapshot.metadata.index <= current) {
      throw new RegionDbError(ErrorCode.StorageCompacted, `region ${regionId}: snapshot ${snapshot.metadata.index} is older than ${current}`);
    }
    const lo = cache.firstIndex();
    const hi = this.lastOf(regionId);
    for (let i = lo; i <= hi; i++) this.ops.push({ type: 'del', key: entryKey(regionId, i) });
    const { index, term } = snapshot.metadata;
    this.ops.push({ type: 'put', key: `${regionPrefix(regionId)}snap`, value: encodeSnapshot(snapshot) });
    this.ops.push({ type: 'put', key: `${regionPrefix(regionId)}trunc`, value: encodeTruncated({ index, term }) });
    this.projectedLast.set(regionId, index);
    this.apply.push(() => this.wal.cacheOf(regionId).applySnapshot(snapshot));
  }

  compact(regionId: string, compactIndex: number): void {
    const cache = this.wal.cacheOf(regionId);
    const first = cache.firstIndex();
    if (compactIndex < first) return;
    assert(compactIndex <= this.lastOf(regionId), `compact ${compactIndex} beyond the last index of region ${regionId}`);
    const term = cache.term(compactIndex);
    this.ops.push({ type: 'put', key: `${regionPrefix(regionId)}trunc`, value: encodeTruncated({ index: compactIndex, term }) });
    for (let i = first; i <= compactIndex; i++) this.ops.push({ type: 'del', key: entryKey(regionId, i) });
    this.apply.push(() => this.wal.cacheOf(regionId).compact(compactIndex));
  }

  setRegionMeta(regionId: string, meta: Uint8Array): void {
    this.ops.push({ type: 'put', key: `${regionPrefix(regionId)}meta`, value: encodeMeta(meta) });
    this.apply.push(() => this.wal.metas.set(regionId, meta));
  }

  get size(): number {
    return this.ops.length;
  }

  private durableCommitRequired = false;

  /** See LogBatch.requireDurableCommit: written at commit(), with every deferred hard state. */
  requireDurableCommit(): void {
    this.durableCommitRequired = true;
  }

  /** True when committing needs no write: every operation only moves a commit index. */
  get deferrable(): boolean {
    return !this.durableCommitRequired && this.ops.length > 0 && this.commitOnlyOps === this.ops.length;
  }

  async commit(): Promise<void> {
    if (this.ops.length === 0 && !this.durableCommitRequired) return;
    if (this.deferrable) this.wal.defer(this.ops);
    else await this.wal.write(this.ops);
    for (const fn of this.apply) fn();
  }
}

export class Wal implements LogEngine {
  private readonly caches = new Map<string, MemoryStorage>();
  private readonly logs = new Map<string, RegionLog>();
  /** Regions whose records failed their checks at open: never loaded, never written (see recover). */
  private readonly damaged = new Map<string, RegionDamage>();
  readonly metas = new Map<string, Uint8Array>();
  private nodeMeta: Uint8Array | undefined;
  private poisoned: Error | undefined;
  private readonly statsValue: WalStats = { syncs: 0, bytesWritten: 0, lastBatchOps: 0 };

  private constructor(
    private readonly db: Db,
    readonly dir: string,
    private readonly log: Logger,
    private readonly observer: WalObserver | undefined,
  ) {}

  static async open(dir: string, log: Logger, observer?: WalObserver): Promise<Wal> {
    // Before LevelDB replays its own log: it would drop a damaged record silently (review X4).
    refuseDamagedLevelDbLogs(
      dir,
      {
        what: 'WAL',
        dropped: 'LevelDB would drop that record (a synced, possibly acknowledged write) without a word, so the WAL is not opened; the region each lost record belonged to cannot be told',
        action: 'Move the data directory aside: the datanode then starts as a new store and its replicas are rebuilt from their peers',
      },
      log,
    );
    const db: Db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      throw new RegionDbError(ErrorCode.StorageUnavailable, `cannot open the WAL in ${dir}: ${String((err as Error).message)}`, { cause: err });
    }
    const wal = new Wal(db, dir, log, observer);
    try {
      await wal.recover();
    } catch (err) {
      await db.close();
      throw err;
    }
    return wal;
  }

  /**
   * Loads every region, checking every record. LevelDB writes a batch atomically, so a record
   * that fails its check was damaged after it was written — never a half-written write — and
   * the end of a region's key range is not necessarily its newest write (docs/raft-rules.md R4;
   * an earlier rule assumed torn tails, LevelDB has none). Cutting such a record could drop a
   * committed entry this node acknowledged and let it vote for a candidate missing it. So any damage to a region's records
   * leaves the region unloaded and reported (`damage`): its replica does not start, nothing is
   * cut or rewritten, and the other regions open normally. The replica is rebuilt from its
   * peers under a fresh peer id (docs/replica-health.md). Damage outside any region's key range
   * (node meta, unknown keys) still refuses the whole WAL.
   */
  private async recover(): Promise<void> {
    interface Loading {
      entries: { index: number; entry?: Entry; error?: string }[];
      hardState?: HardState;
      snapshot?: Snapshot;
      truncated?: { index: number; term: number };
      /** The first damaged record found (index 0 when it is not an entry). */
      damage?: RegionDamage;
    }
    const regions = new Map<string, Loading>();
    /** Regions a drop was deleting when the node stopped (dropRegion's marker): finished below, never loaded. */
    const dropping = new Set<string>();
    const get = (id: string): Loading => {
      let l = regions.get(id);
      if (!l) regions.set(id, (l = { entries: [] }));
      return l;
    };
    const damaged = (regionId: string, index: number, what: string, why: string): RegionDamage => ({
      regionId,
      index,
      reason: `WAL corruption in region ${regionId} at ${what}: ${why} (WAL directory ${this.dir})`,
    });

    for await (const [key, value] of this.db.iterator()) {
      if (key === 'n/meta') {
        try {
          this.nodeMeta = decodeMeta(value);
        } catch (err) {
          throw new RegionDbError(ErrorCode.Corruption, `WAL corruption at key n/meta: ${(err as Error).message} (WAL directory ${this.dir})`);
        }
        continue;
      }
      const drop = /^d\/(\d{20})$/.exec(key);
      if (drop) {
        dropping.add(BigInt(drop[1]!).toString());
        continue;
      }
      const m = /^r\/(\d{20})\/(e\/([0-9a-f]{16})|hs|snap|trunc|meta)$/.exec(key);
      if (!m) throw new RegionDbError(ErrorCode.Corruption, `WAL contains an unknown key ${JSON.stringify(key)} (WAL directory ${this.dir})`);
      const regionId = BigInt(m[1]!).toString();
      const l = get(regionId);
      const kind = m[2]!;
      try {
        if (m[3]) {
          const index = Number.parseInt(m[3], 16);
          try {
            const entry = decodeEntry(value);
            if (entry.index !== index) throw new RecordError(`record says index ${entry.index}, key says ${index}`);
            l.entries.push({ index, entry });
          } catch (err) {
            if (!(err instanceof RecordError)) throw err;
            l.entries.push({ index, error: err.message });
          }
        } else if (kind === 'hs') l.hardState = decodeHardState(value);
        else if (kind === 'snap') l.snapshot = decodeSnapshot(value);
        else if (kind === 'trunc') l.truncated = decodeTruncated(value);
        else this.metas.set(regionId, decodeMeta(value));
      } catch (err) {
        if (!(err instanceof RecordError)) throw err;
        l.damage ??= damaged(regionId, 0, `key ${kind}`, err.message);
      }
    }

    for (const regionId of dropping) {
      regions.delete(regionId);
      this.metas.delete(regionId);
      await this.deleteDroppedRecords(regionId);
      this.log.info({ dir: this.dir, regionId }, 'WAL: finished deleting a region whose drop a stop interrupted');
    }
    /** Records at or below a healthy region's compaction point: not part of its log, deleted below. */
    const stale: Op[] = [];
    for (const [regionId, l] of regions) {
      const damage = l.damage ?? this.checkRegion(regionId, l, damaged);
      if (damage) {
        this.damaged.set(regionId, damage);
        this.log.error({ regionId, index: damage.index, reason: damage.reason }, 'WAL: region damaged; its replica will not start (it is to be rebuilt from its peers)');
        continue;
      }
      const snapshot = l.snapshot ?? EMPTY_SNAPSHOT;
      const truncated = compactionPoint(l.truncated, snapshot);
      const entries = l.entries.filter((e) => e.index > truncated.index).map((e) => e.entry!);
      for (const e of l.entries) if (e.index <= truncated.index) stale.push({ type: 'del', key: entryKey(regionId, e.index) });
      this.caches.set(regionId, MemoryStorage.restore({ snapshot, truncated, entries, hardState: l.hardState ?? EMPTY_HARD_STATE }));
    }
    // Compactions delete from the cache's first index on (WalBatch.compact), which after this open
    // is the entry after the compaction point: records below it would stay on disk, and be read at
    // every open, for as long as the region lives (review X1). They get there when a snapshot and
    // its compaction are two writes with a crash between them (RegionServer.maybeSnapshot), and
    // when a compaction keeps a tail below the snapshot (a standby's logRetainFrom), which is not
    // kept across a restart. Nothing reads them (the cache starts after the compaction point), so
    // deleting them changes no region's log; a crash before this write only leaves them for the
    // next open.
    if (stale.length > 0) {
      await this.write(stale);
      this.log.info({ dir: this.dir, records: stale.length }, 'WAL: deleted entry records at or below their region\'s compaction point');
    }
    this.log.info({ dir: this.dir, regions: regions.size, damaged: this.damaged.size }, 'WAL opened');
  }

  /** The first inconsistency of a region's records, or undefined when its log can be trusted. */
  private checkRegion(
    regionId: string,
    l: { entries: { index: number; entry?: Entry; error?: string }[]; hardState?: HardState; snapshot?: Snapshot; truncated?: { index: number; term: number } },
    damaged: (regionId: string, index: number, what: string, why: string) => RegionDamage,
  ): RegionDamage | undefined {
    const truncated = compactionPoint(l.truncated, l.snapshot ?? EMPTY_SNAPSHOT);
    // Records at or below the compaction point are not part of the log any more (a snapshot
    // written apart from its compaction, a tail kept below it: recover deletes them), so their
    // state does not matter.
    const live = l.entries.filter((e) => e.index > truncated.index);
    for (const [i, e] of live.entries()) {
      if (e.error !== undefined) return damaged(regionId, e.index, `index ${e.index}`, e.error);
      const expected = i === 0 ? truncated.index + 1 : live[i - 1]!.index + 1;
      if (e.index !== expected) {
        const why = i === 0 ? `log starts after a gap (compacted up to ${truncated.index})` : `gap after index ${live[i - 1]!.index}`;
        return damaged(regionId, e.index, `index ${e.index}`, why);
      }
    }
    const lastIndex = live.length > 0 ? live[live.length - 1]!.index : truncated.index;
    const commit = l.hardState?.commit ?? 0;
    if (commit > lastIndex) {
      // The commit index is only ever written after the entries it covers: committed entries
      // are missing. Lowering it (as a "repair") would hide the loss.
      return damaged(regionId, lastIndex + 1, `index ${lastIndex + 1}`, `the log ends at ${lastIndex} but the stored commit index ${commit} covers more`);
    }
    return undefined;
  }

  /** The damage found in a region's records at open (its replica must not start), if any. */
  damage(regionId: string): RegionDamage | undefined {
    return this.damaged.get(regionId);
  }

  damagedRegions(): RegionDamage[] {
    return [...this.damaged.values()];
  }

  cacheOf(regionId: string): MemoryStorage {
    assert(!this.damaged.has(regionId), () => `region ${regionId} is damaged in the WAL; it must not be read or written`);
    let cache = this.caches.get(regionId);
    if (!cache) this.caches.set(regionId, (cache = new MemoryStorage()));
    return cache;
  }

  region(regionId: string): RegionLog {
    let log = this.logs.get(regionId);
    if (!log) {
      log = new RegionLog(regionId, this, this.cacheOf(regionId));
      this.logs.set(regionId, log);
    }
    return log;
  }

  regionIds(): string[] {
    return [...new Set([...this.caches.keys(), ...this.metas.keys(), ...this.damaged.keys()])];
  }

  getRegionMeta(regionId: string): Uint8Array | undefined {
    return this.metas.get(regionId);
  }

  async setRegionMeta(regionId: string, meta: Uint8Array): Promise<void> {
    const b = this.batch();
    b.setRegionMeta(regionId, meta);
    await b.commit();
  }

  getNodeMeta(): Uint8Array | undefined {
    return this.nodeMeta;
  }

  async setNodeMeta(meta: Uint8Array): Promise<void> {
    await this.write([{ type: 'put', key: 'n/meta', value: encodeMeta(meta) }]);
    this.nodeMeta = meta;
  }

  /**
   * Deletes a region's records (its replica was destroyed). In bounded writes, not one: a LevelDB
   * write is synced and writes go one at a time (write), so one batch deleting a long log held
   * every other write of the node — the ready loop's for every region — behind it (about 200 ms
   * per 200,000 records; a standby's tail can be longer; review finding X2 in docs/correctness.md).
   * First, in one small write, a drop marker `d/<region>` and the region's state (meta, hard
   * state, snapshot, compaction point): from then on the region is gone, and an open finishes
   * the drop (recover) instead of loading what is left; then its entries, DROP_CHUNK_RECORDS per
   * write; then the marker. Opens and closes of replicas run one at a time (the datanode's O3), so
   * no new replica of the region writes under its prefix before this returns. A crash leaves the
   * region whole (before the marker) or gone (after it), never part of it: LevelDB's clear() was
   * not that (many unsynced batches in key order: a log with a gap, or a replica that reopened
   * under its old peer id without the entries it had acknowledged — review X2). A failure after
   * the marker poisons the WAL: a replica of the region opened again on this node before the drop
   * finished would be deleted by the next open's finishing of it (review of X5).
   */
  async dropRegion(regionId: string): Promise<void> {
    const prefix = regionPrefix(regionId);
    this.deferred.delete(`${prefix}hs`); // a later batch must not bring the region's hard state back
    await this.writeTail; // what writes in flight put for the region is listed, and deleted, below
    const state: Op[] = ['meta', 'hs', 'snap', 'trunc'].map((k) => ({ type: 'del', key: `${prefix}${k}` }));
    await this.write([{ type: 'put', key: dropMarkerKey(regionId), value: new Uint8Array(0) }, ...state]);
    this.caches.delete(regionId);
    this.logs.delete(regionId);
    this.metas.delete(regionId);
    this.damaged.delete(regionId);
    try {
      await this.deleteDroppedRecords(regionId);
    } catch (err) {
      if (err instanceof WalFatalError) throw err;
      this.poisoned ??= err as Error;
      throw new WalFatalError(`deleting the records of region ${regionId} failed after its drop marker was written: ${(err as Error).message}`, err);
    }
  }

  /** Drops running now (dropRegion, or an open finishing one): the WAL's space reclamation waits for them (maybeReclaim). */
  private dropsRunning = 0;

  /**
   * What is left of a dropped region (dropRegion), then its drop marker: listed and deleted
   * DROP_CHUNK_RECORDS at a time (a long log is never held in memory whole), each page listed
   * after the last key of the one before (not from the prefix again, over the tombstones).
   */
  private async deleteDroppedRecords(regionId: string): Promise<void> {
    const prefix = regionPrefix(regionId);
    this.dropsRunning++;
    try {
      let after: string | undefined;
      for (;;) {
        const keys: string[] = [];
        for await (const key of this.db.keys({ ...(after === undefined ? { gte: prefix } : { gt: after }), lt: `${prefix}\xff`, limit: DROP_CHUNK_RECORDS })) keys.push(key);
        if (keys.length === 0) break;
        await this.write(keys.map((key) => ({ type: 'del', key })));
        after = keys[keys.length - 1];
      }
      await this.write([{ type: 'del', key: dropMarkerKey(regionId) }]);
    } finally {
      this.dropsRunning--;
    }
    this.maybeReclaim(); // once, now: not every WAL_RECLAIM_AFTER_DELETES of a long drop
  }

  batch(): WalBatch {
    return new WalBatch(this);
  }

  /** Commit-index-only hard states not yet written, by key (see top): the latest per region. */
  private readonly deferred = new Map<string, Uint8Array>();

  defer(ops: readonly Op[]): void {
    for (const op of ops) if (op.type === 'put') this.deferred.set(op.key, op.value);
    this.observer?.deferred?.(ops.length);
  }

  /** The last write handed to LevelDB (or waiting to be): the next one starts after it (see write). */
  private writeTail: Promise<void> = Promise.resolve();

  /**
   * One LevelDB batch, synced; deferred commit indexes go first, so the batch's own ops win.
   * Writes reach LevelDB one at a time, in the order write() was called (review X3): each batch
   * is its own job on libuv's thread pool, and two in flight at once are applied in whichever
   * order their threads take LevelDB's lock. Writes do overlap — the datanode writes region metas
   * (opens, membership changes) while the ready loop writes its batches — and a write carries
   * the deferred commit indexes of every region: without the order, a write issued first could
   * land last and put back a region's older hard state over a newer term and vote the ready loop
   * had written and acted on (a vote sent), which a crash then makes the node forget.
   */
  write(batchOps: Op[]): Promise<void> {
    // The tail never rejects (a failed write poisoned the WAL: the next writeNow refuses).
    const mine = this.writeTail.then(() => this.writeNow(batchOps));
    this.writeTail = mine.catch(() => undefined);
    return mine;
  }

  private async writeNow(batchOps: Op[]): Promise<void> {
    if (this.poisoned) throw new WalFatalError('an earlier WAL write failed', this.poisoned);
    let ops = batchOps;
    if (this.deferred.size > 0) {
      ops = [];
      for (const [key, value] of this.deferred) ops.push({ type: 'put', key, value });
      for (const op of batchOps) ops.push(op);
      this.deferred.clear();
    }
    let bytes = 0;
    for (const op of ops) if (op.type === 'put') bytes += op.key.length + op.value.byteLength;
    const startedNs = process.hrtime.bigint();
    try {
      await this.batchWrite(ops);
    } catch (err) {
      this.poisoned = err as Error;
      throw new WalFatalError(`WAL sync write to ${this.dir} failed: ${(err as Error).message}`, err);
    }
    this.observer?.written({ ops: ops.length, bytes, seconds: Number(process.hrtime.bigint() - startedNs) / 1e9 });
    this.statsValue.syncs++;
    this.statsValue.bytesWritten += bytes;
    this.statsValue.lastBatchOps = ops.length;
    this.deletesSinceCompaction += ops.length - ops.filter((o) => o.type === 'put').length;
    this.maybeReclaim();
  }

  /**
   * One synced LevelDB batch. abstract-level's public batch() clones every operation, looks up
   * encodings and runs hooks and events we never use: ~60–80 µs of main-thread time per WAL
   * write on this machine, more than everything else a follower does per append. Our
   * operations are already what classic-level's native layer takes (string keys, Uint8Array
   * values), so an open database gets them through `_batch`, abstract-level's documented
   * implementor interface, directly. Anything else (closing, closed) takes the public path,
   * which refuses with a clear error.
   */
  private batchWrite(ops: Op[]): Promise<void> {
    const db = this.db as unknown as { status: string; _batch?: (ops: Op[], options: { sync: boolean }) => Promise<void> };
    if (db.status === 'open' && typeof db._batch === 'function') return db._batch(ops, { sync: true });
    return this.db.batch(ops, { sync: true });
  }

  private deletesSinceCompaction = 0;
  private reclaiming: Promise<void> | undefined;

  /**
   * Truncated entries are LevelDB tombstones until a compaction drops them; without this, the
   * WAL's disk use would follow the total data written rather than what is unflushed. After
   * enough deletes, compact the whole (small) key range in the background.
   */
  private maybeReclaim(): void {
    if (this.reclaiming || this.dropsRunning > 0 || this.deletesSinceCompaction < WAL_RECLAIM_AFTER_DELETES) return;
    this.deletesSinceCompaction = 0;
    // `level` on Node is classic-level, which has compactRange (the browser typings do not).
    const db = this.db as unknown as { compactRange(start: string, end: string): Promise<void> };
    this.reclaiming = db
      .compactRange('', '\uffff')
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'WAL space reclamation (LevelDB compaction) failed; will retry later'))
      .finally(() => {
        this.reclaiming = undefined;
      });
  }

  stats(): WalStats {
    return { ...this.statsValue };
  }

  async close(): Promise<void> {
    await this.reclaiming;
    if (this.deferred.size > 0 && !this.poisoned) await this.write([]);
    await this.writeTail; // writes made before close() reach the disk before it closes
    await this.db.close();
  }
}
