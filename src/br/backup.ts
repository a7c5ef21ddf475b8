// `regiondb br backup`: a full or incremental backup of tables into a repository.
//
// Consistency point: each region is flushed (client.flush returns once its data is in SSTs and a
// manifest naming them is in the object store), then its newest manifest is the region's point —
// everything at or below the manifest's flushedIndex. The backup copies that manifest and the
// SSTs it names. SSTs are immutable and their keys unique, so an incremental backup stores only
// SSTs whose key is not already in its base and refers to the base for the rest; region manifests
// are always copied (their keys are not unique across clusters).
//
// Resume: the plan (the manifest chosen per region) and every object copied, with its SHA-256,
// go to <id>/progress.json as the backup runs. A rerun with the same id keeps the plan, checks
// what is already in the repository by size and SHA-256, and copies only what is missing. If the
// cluster compacted away and garbage-collected SSTs of the plan meanwhile, that region is planned
// again from its newest manifest (a later, still consistent point).
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { RegionDbClient } from '../client/client.js';
import { makeRegionId } from '../engine/key.js';
import { decodeManifest, loadLatestManifest, manifestKey } from '../engine/manifest.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { type BarrierClient, type BarrierRegion, runBarrier } from './barrier.js';
import { type BackupRunOptions, copySettings, forEachBounded, readHashed, sha256Hex } from './copy.js';
import {
  type BackupFile,
  type BackupJournal,
  type BackupManifest,
  type BackupRegion,
  type BackupSource,
  type BackupTable,
  backupDataKey,
  backupJournalKey,
  backupManifestKey,
  decodeBackupJournal,
  encodeBackupJournal,
  encodeBackupManifest,
  validateBackupId,
} from './format.js';
import type { ProgressReporter } from './progress.js';
import { loadBackupManifest } from './repository.js';

/** What backup needs from the cluster: flush, the catalog, and (consistent) the write barrier. */
export type BackupClusterClient = Pick<RegionDbClient, 'flush' | 'describe' | 'listNodes'> & Partial<BarrierClient>;

/** `tables`: default every table of the cluster; ignored when resuming. */
export interface BackupOptions extends BackupRunOptions {
  /** Incremental: the backup (in the same repository) this one builds on. */
  readonly baseId?: string | undefined;
  readonly client: BackupClusterClient;
  /** The cluster's object store, read directly. */
  readonly clusterStore: ObjectStore;
  readonly metasrv: string;
  readonly clusterId?: string | undefined;
  /**
   * Every region at one cluster-consistent point (a write barrier, docs/backup.md) instead of
   * each at its own flushed index.
   */
  readonly consistent?: boolean | undefined;
  /** Consistent: the longest the barrier may hold a region's client writes (ms). */
  readonly barrierHoldMs?: number | undefined;
  /** Consistent: how long leaders keep the point's SSTs from their GC (ms). */
  readonly sstLeaseMs?: number | undefined;
}

export interface BackupResult {
  readonly manifest: BackupManifest;
  readonly resumed: boolean;
  /** Objects written to the repository by this run. */
  readonly copiedFiles: number;
  readonly copiedBytes: number;
  /** Of those, SST bytes (the rest are region manifests). */
  readonly copiedSstBytes: number;
  /** Objects found already copied (resume) after checking size and SHA-256. */
  readonly presentFiles: number;
  /** Objects referenced in the base chain instead of copied. */
  readonly baseFiles: number;
  readonly baseBytes: number;
  readonly durationMs: number;
}

/** Every table of the cluster, from the metasrv's region routes. */
export async function listClusterTables(client: Pick<RegionDbClient, 'listNodes'>): Promise<string[]> {
  const res = (await client.listNodes()) as { regions: { table: string }[] };
  return [...new Set(res.regions.map((r) => r.table))].sort();
}

async function planRegion(store: ObjectStore, regionId: string, regionNumber: number): Promise<BackupRegion> {
  const latest = await loadLatestManifest(store, regionId);
  if (!latest) {
    return { regionNumber, regionId, flushedIndex: 0, flushedTerm: 0, manifestKey: null, manifestBytes: 0, sstKeys: [], sstBytes: 0, sstEntries: 0 };
  }
  const m = latest.manifest;
  if (m.regionId !== regionId) {
    throw new RegionDbError(ErrorCode.Corruption, `${store.description}/${latest.key} belongs to region ${m.regionId}, not ${regionId}`);
  }
  return {
    regionNumber,
    regionId,
    flushedIndex: m.flushedIndex,
    flushedTerm: m.flushedTerm,
    manifestKey: latest.key,
    manifestBytes: (await store.head(latest.key))?.size ?? 0,
    sstKeys: m.ssts.map((s) => s.key),
    sstBytes: m.ssts.reduce((n, s) => n + s.size, 0),
    sstEntries: m.ssts.reduce((n, s) => n + s.entries, 0),
  };
}

async function planTables(opts: BackupOptions, progress: ProgressReporter): Promise<BackupTable[]> {
  const names = opts.tables && opts.tables.length > 0 ? [...opts.tables] : await listClusterTables(opts.client);
  if (names.length === 0) throw new RegionDbError(ErrorCode.NotFound, 'the cluster has no tables to back up');
  const tables: BackupTable[] = [];
  for (const name of names) {
    const { schema } = await opts.client.describe(name, true);
    progress.note(`flushing ${name} (${schema.regionCount} regions)`);
    await opts.client.flush(name);
    const regions: BackupRegion[] = [];
    for (let n = 0; n < schema.regionCount; n++) regions.push(await planRegion(opts.clusterStore, makeRegionId(schema.tableId, n), n));
    tables.push({ name, tableId: schema.tableId, columns: schema.columns.map((c) => ({ ...c })), regionCount: schema.regionCount, regions });
  }
  return tables;
}

/**
 * A consistent plan: one barrier over every region of every table (src/br/barrier.ts). The region
 * manifests come back from the leaders (a region's manifest at its freeze is not necessarily in
 * the object store: only the newest flushed index's is written there), so they are stored into
 * the backup here and recorded as copied.
 */
async function planConsistent(opts: BackupOptions, progress: ProgressReporter, id: string): Promise<Pick<BackupJournal, 'tables' | 'done' | 'point'>> {
  const client = opts.client;
  if (!client.barrierHold || !client.barrierFreeze || !client.barrierRelease) throw new RegionDbError(ErrorCode.Internal, 'a consistent backup needs a client with the barrier calls');
  const barrierClient: BarrierClient = { barrierHold: client.barrierHold.bind(client), barrierFreeze: client.barrierFreeze.bind(client), barrierRelease: client.barrierRelease.bind(client) };
  const names = opts.tables && opts.tables.length > 0 ? [...opts.tables] : await listClusterTables(client);
  if (names.length === 0) throw new RegionDbError(ErrorCode.NotFound, 'the cluster has no tables to back up');
  const tables: BackupTable[] = [];
  const regions: BarrierRegion[] = [];
  for (const name of names) {
    const { schema } = await client.describe(name, true);
    tables.push({ name, tableId: schema.tableId, columns: schema.columns.map((c) => ({ ...c })), regionCount: schema.regionCount, regions: [] });
    for (let n = 0; n < schema.regionCount; n++) regions.push({ table: name, regionId: makeRegionId(schema.tableId, n), regionNumber: n });
  }
  progress.note(`write barrier over ${regions.length} regions of ${names.length} tables`);
  const cut = await runBarrier(barrierClient, regions, {
    holdMs: opts.barrierHoldMs ?? limits.brBarrierHoldMsDefault,
    sstLeaseMs: opts.sstLeaseMs ?? limits.brBarrierSstLeaseMsDefault,
    note: (line) => progress.note(line),
  });
  progress.note(`consistent point taken (barrier ${cut.barrierId}, attempt ${cut.attempts}): client writes paused at most ${cut.pauseMsMax} ms, ${cut.writesHeld} writes waited`);
  const done: BackupJournal['done'] = {};
  for (const p of cut.points) {
    const m = decodeManifest(p.manifest, `the barrier manifest of region ${p.region.regionId}`);
    if (m.regionId !== p.region.regionId || m.flushedIndex !== p.freezeIndex || m.flushedTerm !== p.freezeTerm) {
      throw new RegionDbError(ErrorCode.Corruption, `region ${p.region.regionId}: the barrier answered a manifest of region ${m.regionId} at ${m.flushedIndex} (term ${m.flushedTerm}) for the freeze at ${p.freezeIndex} (term ${p.freezeTerm})`);
    }
    const key = manifestKey(p.region.regionId, p.freezeIndex);
    await opts.repository.put(backupDataKey(id, key), p.manifest);
    done[key] = { sizeBytes: p.manifest.byteLength, sha256: sha256Hex(p.manifest) };
    const table = tables.find((t) => t.name === p.region.table);
    assert(table !== undefined, 'every barrier region belongs to a planned table');
    table.regions.push({
      regionNumber: p.region.regionNumber,
      regionId: p.region.regionId,
      flushedIndex: m.flushedIndex,
      flushedTerm: m.flushedTerm,
      manifestKey: key,
      manifestBytes: p.manifest.byteLength,
      sstKeys: m.ssts.map((s) => s.key),
      sstBytes: m.ssts.reduce((n, s) => n + s.size, 0),
      sstEntries: m.ssts.reduce((n, s) => n + s.entries, 0),
    });
  }
  for (const t of tables) t.regions.sort((a, b) => a.regionNumber - b.regionNumber);
  return { tables, done, point: { barrierId: cut.barrierId, heldAtMs: cut.heldAtMs, pauseMsMax: cut.pauseMsMax, writesHeld: cut.writesHeld, attempts: cut.attempts } };
}

/** The files of the base chain by key (a base lists what it refers to in its own bases too). */
async function baseIndex(repository: ObjectStore, baseId: string): Promise<{ base: BackupManifest; files: Map<string, BackupFile> }> {
  const base = await loadBackupManifest(repository, baseId).catch((err: unknown) => {
    if (isRegionDbError(err, ErrorCode.NotFound)) {
      throw new RegionDbError(ErrorCode.NotFound, `base backup ${baseId} is not complete in ${repository.description} (no ${backupManifestKey(baseId)})`);
    }
    throw err;
  });
  let depth = 1;
  for (let id = base.baseId; id !== null; depth++) {
    if (depth >= limits.brChainDepthMax) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `base ${baseId} already has ${depth} backups in its chain (max ${limits.brChainDepthMax}); take a full backup`);
    }
    id = (await loadBackupManifest(repository, id)).baseId;
  }
  return { base, files: new Map(base.files.map((f) => [f.key, f])) };
}

export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  const { progress, limiter, concurrency } = copySettings(opts);
  const repo = opts.repository;
  const id = opts.backupId;
  validateBackupId(id);
  if (opts.baseId !== undefined) validateBackupId(opts.baseId);
  if (await repo.head(backupManifestKey(id))) {
    throw new RegionDbError(ErrorCode.AlreadyExists, `backup ${id} already exists and is complete in ${repo.description}; choose another id`);
  }

  // Resume or plan.
  let journal: BackupJournal;
  let resumed = false;
  const existing = await repo.head(backupJournalKey(id));
  if (existing) {
    journal = decodeBackupJournal(await repo.get(backupJournalKey(id)), `${repo.description}/${backupJournalKey(id)}`);
    if (opts.baseId !== undefined && journal.baseId !== opts.baseId) {
      throw new RegionDbError(
        ErrorCode.InvalidArgument,
        `backup ${id} was started ${journal.baseId ? `as incremental from ${journal.baseId}` : 'as a full backup'}; resume it the same way or choose another id`,
      );
    }
    resumed = true;
    progress.note(`resuming backup ${id} (started ${new Date(journal.createdAtMs).toISOString()}, ${Object.keys(journal.done).length} objects already copied)`);
  } else {
    const source: BackupSource = { metasrv: opts.metasrv, objectStore: opts.clusterStore.description, clusterId: opts.clusterId ?? null };
    journal = { id, baseId: opts.baseId ?? null, source, createdAtMs: Date.now(), tables: [], done: {} };
    if (opts.baseId !== undefined) await baseIndex(repo, opts.baseId); // fail before flushing if the base is unusable
    if (opts.consistent) Object.assign(journal, await planConsistent(opts, progress, id));
    else journal.tables = await planTables(opts, progress);
    await repo.put(backupJournalKey(id), encodeBackupJournal(journal));
  }
  const base = journal.baseId === null ? undefined : await baseIndex(repo, journal.baseId);

  let copiedFiles = 0;
  let copiedBytes = 0;
  let copiedSstBytes = 0;
  let presentFiles = 0;

  // Journal writes are serialized and throttled; the last one always runs. A failed write is
  // kept and thrown at the next forced save: copying on without a journal only costs a resume.
  let journalWrite: Promise<void> = Promise.resolve();
  let journalError: unknown;
  let lastJournalMs = Date.now();
  const saveJournal = async (force: boolean): Promise<void> => {
    if (force || Date.now() - lastJournalMs >= limits.brJournalIntervalMs) {
      lastJournalMs = Date.now();
      const bytes = encodeBackupJournal(journal);
      journalWrite = journalWrite.then(() => repo.put(backupJournalKey(id), bytes)).catch((err: unknown) => void (journalError ??= err));
    }
    if (force) {
      await journalWrite;
      if (journalError !== undefined) throw journalError;
    }
  };

  // Only SSTs are taken from the base: their keys are unique (a timestamp and a random tag in the
  // name). A region manifest's key is only its region id and flushed index, which another
  // cluster can share — one restored from the base reuses both — so manifests are always copied.
  const fromBase = (key: string, r: BackupRegion): BackupFile | undefined => (key === r.manifestKey ? undefined : base?.files.get(key));
  const regionObjects = (r: BackupRegion) => [...(r.manifestKey ? [r.manifestKey] : []), ...r.sstKeys];

  /** Copies one object unless already there; false if it vanished from the cluster's store. */
  const copyOne = async (key: string): Promise<boolean> => {
    const target = backupDataKey(id, key);
    const recorded = journal.done[key];
    if (!resumed && recorded) return true; // a consistent plan's region manifest, stored while planning
    if (resumed) {
      const there = await repo.head(target);
      if (there) {
        const have = await readHashed(repo, target);
        let expected = recorded;
        if (!expected) {
          // Written before the journal caught up with it: compare with the source itself.
          const src = await readHashed(opts.clusterStore, key).catch((err: unknown) => (isRegionDbError(err, ErrorCode.NotFound) ? undefined : Promise.reject(err)));
          if (!src) return false;
          expected = { sizeBytes: src.sizeBytes, sha256: src.sha256 };
        }
        if (have.sizeBytes === expected.sizeBytes && have.sha256 === expected.sha256) {
          journal.done[key] = expected;
          presentFiles++;
          progress.advance(have.sizeBytes, 0);
          void saveJournal(false);
          return true;
        }
        progress.note(`${target}: the copy in the repository differs from the source (size ${have.sizeBytes} vs ${expected.sizeBytes}); copying it again`);
      }
    }
    let src: { data: Uint8Array; sizeBytes: number; sha256: string };
    try {
      src = await readHashed(opts.clusterStore, key);
    } catch (err) {
      if (isRegionDbError(err, ErrorCode.NotFound)) return false;
      throw err;
    }
    await limiter?.take(src.sizeBytes);
    await repo.put(target, src.data);
    journal.done[key] = { sizeBytes: src.sizeBytes, sha256: src.sha256 };
    copiedFiles++;
    copiedBytes += src.sizeBytes;
    if (key.endsWith('.sst')) copiedSstBytes += src.sizeBytes;
    progress.advance(src.sizeBytes, src.sizeBytes);
    void saveJournal(false);
    return true;
  };

  // Copy; regions whose objects vanished are planned again from their newest manifest.
  let pending = journal.tables.flatMap((t) => t.regions.map((r) => ({ table: t, region: r })));
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt > limits.brReplanAttemptsMax) {
      throw new RegionDbError(
        ErrorCode.Unavailable,
        `regions ${pending.map((p) => p.region.regionId).join(', ')}: their SSTs kept being compacted away during the backup (${limits.brReplanAttemptsMax} attempts); retry when compaction is quieter`,
      );
    }
    const work = pending.flatMap((p) => regionObjects(p.region).filter((k) => !fromBase(k, p.region)).map((key) => ({ ...p, key })));
    const totalBytes = pending.reduce((n, p) => n + p.region.manifestBytes + p.region.sstBytes - p.region.sstKeys.reduce((b, k) => b + (fromBase(k, p.region)?.sizeBytes ?? 0), 0), 0);
    progress.begin(attempt === 0 ? `backup ${id}` : `backup ${id} (re-planned regions)`, work.length, totalBytes);
    const vanished = new Set<BackupRegion>();
    await forEachBounded(work, concurrency, async (w) => {
      if (vanished.has(w.region)) return;
      if (!(await copyOne(w.key))) vanished.add(w.region);
    });
    progress.end();
    pending = pending.filter((p) => vanished.has(p.region));
    if (pending.length > 0 && journal.point) {
      // Re-planning one region at a later point would break the cut: the whole backup is taken again.
      throw new RegionDbError(
        ErrorCode.Unavailable,
        `consistent backup ${id}: SSTs of regions ${pending.map((p) => p.region.regionId).join(', ')} at the barrier's point were garbage-collected before they were copied; take the backup again (with a new --id)`,
      );
    }
    for (const p of pending) {
      const replanned = await planRegion(opts.clusterStore, p.region.regionId, p.region.regionNumber);
      progress.note(`region ${p.region.regionId}: objects of manifest ${p.region.manifestKey} were compacted away; backing up ${replanned.manifestKey} (flushed index ${replanned.flushedIndex}) instead`);
      const i = p.table.regions.indexOf(p.region);
      assert(i >= 0, 'a pending region belongs to its table');
      p.table.regions[i] = replanned;
      p.region = replanned;
    }
    await saveJournal(true);
  }

  // The manifest: every object each region needs, own or in the base chain.
  const files: BackupFile[] = [];
  const listed = new Set<string>();
  let baseFiles = 0;
  let baseBytes = 0;
  for (const t of journal.tables) {
    for (const r of t.regions) {
      for (const key of regionObjects(r)) {
        if (listed.has(key)) continue;
        listed.add(key);
        const inBase = fromBase(key, r);
        if (inBase) {
          files.push(inBase);
          baseFiles++;
          baseBytes += inBase.sizeBytes;
          continue;
        }
        const done = journal.done[key];
        assert(done !== undefined, `object ${key} was copied before the manifest is written`);
        files.push({ key, sizeBytes: done.sizeBytes, sha256: done.sha256, backupId: id });
      }
    }
  }
  const own = files.filter((f) => f.backupId === id);
  const manifest: BackupManifest = {
    id,
    kind: journal.baseId === null ? 'full' : 'incremental',
    baseId: journal.baseId,
    source: journal.source,
    createdAtMs: journal.createdAtMs,
    completedAtMs: Date.now(),
    tables: journal.tables,
    files,
    storedFiles: own.length,
    storedBytes: own.reduce((n, f) => n + f.sizeBytes, 0),
    point: journal.point ?? null,
  };
  await repo.put(backupManifestKey(id), encodeBackupManifest(manifest));
  await repo.delete(backupJournalKey(id));
  // Objects copied for a plan that was replaced (compacted away mid-backup) are not referenced: drop them.
  for (const key of Object.keys(journal.done)) if (!listed.has(key)) await repo.delete(backupDataKey(id, key));
  return { manifest, resumed, copiedFiles, copiedBytes, copiedSstBytes, presentFiles, baseFiles, baseBytes, durationMs: Date.now() - started };
}
