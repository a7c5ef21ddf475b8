// `regiondb br restore`: a backup (full, or an incremental with its chain) into a cluster that
// does not have its tables.
//
// 1. The backup must verify (every object, every base); otherwise nothing is touched.
// 2. The target must not have any of the tables (a restore never merges into live data).
// 3. Each table is created anew (same name, columns, region count); it gets a new table id, so
//    each region's SSTs are written under the new region id, with fresh object names (creation
//    time now: the SST garbage collector's grace period counts from it), and the region
//    manifest is rewritten to name them — same flushed index and term.
// 4. The metasrv then recovers every region from that manifest (the disaster-recovery path of
//    `regiondb recover`), and each region reports the flushed index it restarted from, which
//    must be the backup's.
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import type { RegionDbClient } from '../client/client.js';
import { makeRegionId } from '../engine/key.js';
import { newSstKey } from '../engine/flush.js';
import { decodeManifest, encodeManifest, loadLatestManifest, manifestKey, manifestPrefix } from '../engine/manifest.js';
import type { TableSchema } from '../engine/schema.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { type BackupRunOptions, copySettings, forEachBounded, readHashed } from './copy.js';
import { type BackupFile, type BackupManifest, type BackupRegion, type BackupTable, backupDataKey } from './format.js';
import { loadBackupManifest } from './repository.js';
import { verifyBackup } from './verify.js';

export type RestoreClusterClient = Pick<RegionDbClient, 'describe' | 'createTable' | 'dropTable' | 'recoverTable'>;

/** `tables`: default every table in the backup. */
export interface RestoreOptions extends BackupRunOptions {
  readonly client: RestoreClusterClient;
  /** The target cluster's object store, written directly. */
  readonly targetStore: ObjectStore;
}

export interface RestoredRegion {
  readonly regionNumber: number;
  readonly sourceRegionId: string;
  readonly regionId: string;
  /** The backup's consistent point for the region. */
  readonly flushedIndex: number;
  /** What the region restarted from in the target, as the datanodes report it (equal to flushedIndex). */
  readonly restoredFlushedIndex: number;
  readonly ssts: number;
}

export interface RestoreResult {
  readonly backupId: string;
  readonly chain: string[];
  readonly tables: { name: string; sourceTableId: number; tableId: number; regions: RestoredRegion[] }[];
  readonly copiedFiles: number;
  readonly copiedBytes: number;
  readonly durationMs: number;
}

const SST_NAME = /^([0-9a-f]{16})-\d+-[0-9a-f]+\.sst$/;

/** A fresh object name in the region's SST folder, keeping the flushed index the original encodes. */
function restoredSstKey(regionId: string, originalKey: string, maxVersion: number): string {
  const indexHex = SST_NAME.exec(originalKey.split('/').at(-1) ?? '')?.[1];
  return newSstKey(regionId, indexHex === undefined ? maxVersion : Number.parseInt(indexHex, 16));
}

export async function runRestore(opts: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const { progress, limiter, concurrency } = copySettings(opts);
  const repo = opts.repository;

  const report = await verifyBackup(repo, opts.backupId, { concurrency, progress });
  if (!report.ok) {
    throw new RegionDbError(
      ErrorCode.ConditionFailed,
      `backup ${opts.backupId} does not verify; nothing was restored:\n${report.problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  }
  const backup: BackupManifest = await loadBackupManifest(repo, opts.backupId);
  const wanted = opts.tables && opts.tables.length > 0 ? opts.tables : backup.tables.map((t) => t.name);
  const unknown = wanted.filter((name) => !backup.tables.some((t) => t.name === name));
  if (unknown.length > 0) {
    throw new RegionDbError(ErrorCode.NotFound, `backup ${opts.backupId} has no table ${unknown.join(', ')} (it has ${backup.tables.map((t) => t.name).join(', ')})`);
  }
  const tables = backup.tables.filter((t) => wanted.includes(t.name));

  const present: string[] = [];
  for (const t of tables) {
    const exists = await opts.client.describe(t.name, true).then(
      () => true,
      (err: unknown) => (isRegionDbError(err, ErrorCode.NotFound) ? false : Promise.reject(err)),
    );
    if (exists) present.push(t.name);
  }
  if (present.length > 0) {
    throw new RegionDbError(
      ErrorCode.AlreadyExists,
      `the target cluster already has table${present.length > 1 ? 's' : ''} ${present.join(', ')}; restore never overwrites live data: drop ${present.length > 1 ? 'them' : 'it'}, restore into another cluster, or choose other tables with --tables`,
    );
  }

  const files = new Map<string, BackupFile>(backup.files.map((f) => [f.key, f]));
  let copiedFiles = 0;
  let copiedBytes = 0;
  /** Reads an object of the backup (from whichever backup of the chain holds it), checking it again. */
  const readBackupObject = async (key: string): Promise<Uint8Array> => {
    const f = files.get(key);
    if (!f) throw new RegionDbError(ErrorCode.Corruption, `backup ${backup.id} names ${key} but does not list it`);
    const got = await readHashed(repo, backupDataKey(f.backupId, key));
    if (got.sha256 !== f.sha256) {
      throw new RegionDbError(ErrorCode.Corruption, `backup ${f.backupId}: ${backupDataKey(f.backupId, key)} changed since it was verified (sha256 ${got.sha256}, expected ${f.sha256})`);
    }
    return got.data;
  };

  const out: RestoreResult['tables'] = [];
  for (const t of tables) {
    const schema: TableSchema = await opts.client.createTable(t.name, t.columns.map((c) => ({ ...c })), t.regionCount);
    progress.note(`created table ${t.name} (id ${schema.tableId}, was ${t.tableId}) with ${schema.regionCount} regions`);
    try {
      out.push(await restoreTable(t, schema));
    } catch (err) {
      // The table was created by this restore and holds nothing else: drop it so a retry starts clean.
      await opts.client.dropTable(t.name).catch((dropErr: unknown) => progress.note(`could not drop the partly restored table ${t.name}: ${(dropErr as Error).message}`));
      throw err;
    }
  }
  return { backupId: backup.id, chain: report.chain, tables: out, copiedFiles, copiedBytes, durationMs: Date.now() - started };

  async function restoreTable(t: BackupTable, schema: TableSchema): Promise<RestoreResult['tables'][number]> {
    const sstCount = t.regions.reduce((n, r) => n + r.sstKeys.length, 0);
    progress.begin(`restore ${t.name}`, sstCount, t.regions.reduce((n, r) => n + r.sstBytes, 0));
    const written = new Map<string, number>();
    await forEachBounded(t.regions, concurrency, async (r: BackupRegion) => {
      if (r.manifestKey === null) return; // never flushed: the region restarts empty
      const regionId = makeRegionId(schema.tableId, r.regionNumber);
      const m = decodeManifest(await readBackupObject(r.manifestKey), `backup ${backup.id}: ${r.manifestKey}`);
      const ssts = [];
      for (const s of m.ssts) {
        const data = await readBackupObject(s.key);
        await limiter?.take(data.byteLength);
        const key = restoredSstKey(regionId, s.key, s.maxVersion);
        await opts.targetStore.put(key, data);
        copiedFiles++;
        copiedBytes += data.byteLength;
        progress.advance(data.byteLength, data.byteLength);
        ssts.push({ ...s, key });
      }
      // A new table's regions have nothing flushed yet; drop any manifest so ours is the newest.
      for (const o of await opts.targetStore.list(manifestPrefix(regionId))) await opts.targetStore.delete(o.key);
      const restoredKey = manifestKey(regionId, m.flushedIndex);
      await opts.targetStore.put(restoredKey, encodeManifest({ ...m, regionId, schema, ssts }));
      const latest = await loadLatestManifest(opts.targetStore, regionId);
      if (latest?.key !== restoredKey) {
        throw new RegionDbError(ErrorCode.Internal, `region ${regionId}: a manifest newer than the restored one appeared (${latest?.key}); was the new table written to during the restore?`);
      }
      written.set(regionId, ssts.length);
    });
    progress.end();
    const points = await opts.client.recoverTable(t.name, true);
    const pointOf = new Map(points.map((p) => [p.region_id, Number(p.flushed_index)]));
    const regions: RestoredRegion[] = t.regions.map((r) => {
      const regionId = makeRegionId(schema.tableId, r.regionNumber);
      return { regionNumber: r.regionNumber, sourceRegionId: r.regionId, regionId, flushedIndex: r.flushedIndex, restoredFlushedIndex: pointOf.get(regionId) ?? -1, ssts: written.get(regionId) ?? 0 };
    });
    const wrong = regions.filter((r) => r.restoredFlushedIndex !== r.flushedIndex);
    if (wrong.length > 0) {
      throw new RegionDbError(
        ErrorCode.Internal,
        `table ${t.name}: regions restarted from other points than the backup's: ${wrong.map((r) => `${r.regionId} at ${r.restoredFlushedIndex} (backup: ${r.flushedIndex})`).join(', ')}`,
      );
    }
    return { name: t.name, sourceTableId: t.tableId, tableId: schema.tableId, regions };
  }
}
