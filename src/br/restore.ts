// `regiondb br restore`: a backup (full, or an incremental with its chain) into a cluster that
// does not have its tables.
//
// 1. The backup must verify (every object, every base); otherwise nothing is touched.
// 2. The target must not have any of the tables (a restore never merges into live data).
// 3. Each table is created anew (same name, columns, region count); it gets a new table id, so
//    each region's SSTs are written under the new region id, with fresh object names, and the
//    region manifest is rewritten to name them — same flushed index and term. Until that
//    manifest is put nothing names the copies, so a marker in the region's SST folder keeps the
//    live region's GC from deleting them: docs/engine.md, "Restore copies and a live leader's GC".
// 4. A record (`br-restore/<token>.json` in the target store, naming the table id) is written
//    saying "recovering"; then the metasrv recovers every region from that manifest (the
//    disaster-recovery path of `regiondb recover`), and each region reports the flushed index it
//    restarted from, which must be the backup's. From the recovery on, the table is live.
// 5. The record is rewritten saying "restored". A restore stopped before it (killed, or failed)
//    leaves the table created by its token (restoreToken): the same restore run again recognises
//    that table by the token and, if the record does not say "recovering" for it (it never served),
//    finishes it (steps 3-5 again). A table whose record says "recovering" may have served writes
//    since: it is refused unless --force-rerestore (forceRerestore). With "restored", the table is
//    done and left alone. A failed run drops only a table it created itself. docs/backup.md, "A
//    restore that stops part way", has each stop point.
import { createHash } from 'node:crypto';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import type { RegionDbClient } from '../client/client.js';
import { makeRegionId } from '../engine/key.js';
import { newSstKey } from '../engine/flush.js';
import { type RegionManifest, decodeManifest, encodeManifest, loadLatestManifest, manifestKey, manifestPrefix, restoreMarkerKey } from '../engine/manifest.js';
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
  /**
   * Restore again a table an earlier run of this restore began recovering and did not record
   * restored (its record says "recovering"), discarding any writes it took since. Without it such
   * a table is refused (CONDITION_FAILED) before anything is changed.
   */
  readonly forceRerestore?: boolean | undefined;
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
  /** Tables an earlier run of this same restore finished (its restored record names them): left as they are. */
  readonly alreadyRestored: { name: string; tableId: number }[];
  /** Tables an earlier run of this restore created but did not finish, finished by this run. */
  readonly resumed: string[];
  /** Of `resumed`, those an earlier run had begun recovering, restored again (forceRerestore). */
  readonly rerestored: string[];
  readonly copiedFiles: number;
  readonly copiedBytes: number;
  readonly durationMs: number;
}

const SST_NAME = /^([0-9a-f]{16})-\d+-[0-9a-f]+\.sst$/;

/**
 * The CreateTable request token a restore of `backupId` creates table `table` with. The metasrv
 * keeps the token of the call that created a table for as long as the table lives and answers
 * a CreateTable with that token with the table (ALREADY_EXISTS under any other token): that is
 * how a later run of the same restore knows the table is its own, not live data.
 */
export function restoreToken(backupId: string, table: string): string {
  return `br-restore-${createHash('sha256').update(`${backupId}\n${table}`).digest('hex').slice(0, 40)}`;
}

/** Where the target store records that the restore of `backupId`'s `table` began its recovery (step 4) and finished (step 5). */
export function restoredRecordKey(backupId: string, table: string): string {
  return `br-restore/${restoreToken(backupId, table)}.json`;
}

interface RestoreRecord {
  backupId: string;
  table: string;
  tableId: number;
  /** "recovering": written before the recovery (step 4), the table may have served since; "restored": finished (step 5). */
  state: 'recovering' | 'restored';
  atMs: number;
}

/**
 * What deleting an unreadable restored record does (the table exists: readRestoredRecord is asked
 * only then): the next run takes a table of its own token for unfinished and restores it again.
 */
const AFTER_DELETE = (table: string) =>
  `nothing was changed. If table ${table} was created by this restore, deleting the record makes the next run restore it again from the backup over the table as it is, discarding every write made to it since; to keep them, leave the record and restore with --tables without ${table}`;

async function readRestoreRecord(store: ObjectStore, backupId: string, table: string): Promise<RestoreRecord | undefined> {
  const key = restoredRecordKey(backupId, table);
  if ((await store.head(key)) === undefined) return undefined;
  const bytes = await store.get(key);
  let rec: Partial<RestoreRecord>;
  try {
    rec = JSON.parse(new TextDecoder().decode(bytes)) as Partial<RestoreRecord>;
  } catch {
    throw new RegionDbError(ErrorCode.Corruption, `${store.description}: ${key} (the record of a finished restore of table ${table}) is not JSON; ${AFTER_DELETE(table)}`);
  }
  if (rec.backupId !== backupId || rec.table !== table || !Number.isSafeInteger(rec.tableId) || (rec.state !== 'recovering' && rec.state !== 'restored')) {
    throw new RegionDbError(ErrorCode.Corruption, `${store.description}: ${key} does not record a restore of table ${table} from backup ${backupId}; ${AFTER_DELETE(table)}`);
  }
  return rec as RestoreRecord;
}

function writeRestoreRecord(store: ObjectStore, rec: Omit<RestoreRecord, 'atMs'>): Promise<void> {
  const body: RestoreRecord = { ...rec, atMs: Date.now() };
  return store.put(restoredRecordKey(rec.backupId, rec.table), new TextEncoder().encode(`${JSON.stringify(body)}\n`));
}

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

  // Each table the target has already is either this restore's — finished (its record says
  // "restored" for the table's id: left alone), begun recovering (the record says "recovering":
  // it may have served writes, refused without forceRerestore) or not (created under this
  // restore's token, no record for its id: it never served, finished by this run) — or someone
  // else's. Everything refused is refused before anything is done.
  const present: string[] = [];
  const dropping: string[] = [];
  const recovering: { name: string; tableId: number }[] = [];
  const done: RestoreResult['alreadyRestored'] = [];
  const unfinished = new Map<string, TableSchema>();
  for (const t of tables) {
    const tableId = await opts.client.describe(t.name, true).then(
      (info) => info.schema.tableId,
      (err: unknown) => (isRegionDbError(err, ErrorCode.NotFound) ? undefined : Promise.reject(err)),
    );
    if (tableId === undefined) continue;
    const record = await readRestoreRecord(opts.targetStore, backup.id, t.name);
    if (record?.tableId === tableId && record.state === 'restored') {
      done.push({ name: t.name, tableId });
      continue;
    }
    // Answered with the table only if this restore's token created it (no table is created: it exists).
    // A table being dropped (an earlier run's cleanup drop not finished) is refused too: the
    // metasrv finishes that drop on its own.
    const own = await opts.client.createTable(t.name, t.columns.map((c) => ({ ...c })), t.regionCount, restoreToken(backup.id, t.name)).then(
      (schema) => schema,
      (err: unknown) => (isRegionDbError(err, ErrorCode.AlreadyExists) ? (err as RegionDbError) : Promise.reject(err)),
    );
    if (!(own instanceof RegionDbError)) {
      unfinished.set(t.name, own);
      if (record?.tableId === own.tableId && record.state === 'recovering') recovering.push({ name: t.name, tableId: own.tableId });
    } else if (/is being dropped/.test(own.message)) dropping.push(t.name);
    else present.push(t.name);
  }
  if (dropping.length > 0) {
    throw new RegionDbError(
      ErrorCode.AlreadyExists,
      `the target cluster is still dropping table${dropping.length > 1 ? 's' : ''} ${dropping.join(', ')} (regiondb status lists the drop; the metasrv finishes it on its own); run the restore again once ${dropping.length > 1 ? 'they are' : 'it is'} gone`,
    );
  }
  if (present.length > 0) {
    throw new RegionDbError(
      ErrorCode.AlreadyExists,
      `the target cluster already has table${present.length > 1 ? 's' : ''} ${present.join(', ')}, not created by a restore of backup ${backup.id}; restore never overwrites live data: drop ${present.length > 1 ? 'them' : 'it'}, restore into another cluster, or choose other tables with --tables`,
    );
  }
  if (recovering.length > 0 && opts.forceRerestore !== true) {
    const names = recovering.map((r) => r.name);
    const one = recovering.length === 1;
    throw new RegionDbError(
      ErrorCode.ConditionFailed,
      `an earlier run of this restore began recovering table${one ? '' : 's'} ${recovering.map((r) => `${r.name} (id ${r.tableId})`).join(', ')} and did not record ${one ? 'it' : 'them'} restored (it stopped, or the record could not be written): ${one ? 'it' : 'each'} may be recovered and may have served writes since, and restoring it again would discard every write made to it since; nothing was changed. If nothing has written to ${one ? 'it' : 'them'} (or those writes may go), run again with --force-rerestore; to keep ${one ? 'it' : 'them'} as ${one ? 'it is' : 'they are'}, restore the other tables with --tables without ${names.join(', ')}`,
    );
  }
  for (const d of done) progress.note(`table ${d.name} (id ${d.tableId}) was restored from backup ${backup.id} by an earlier run: left as it is`);

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
  const resumed: string[] = [];
  const rerestored: string[] = [];
  for (const t of tables) {
    if (done.some((d) => d.name === t.name)) continue;
    let schema = unfinished.get(t.name);
    const createdNow = schema === undefined;
    // An earlier run began recovering it (forceRerestore, or the refusal above): restored again.
    const again = recovering.some((r) => r.name === t.name);
    if (schema) {
      resumed.push(t.name);
      if (again) rerestored.push(t.name);
      progress.note(
        again
          ? `table ${t.name} (id ${schema.tableId}): an earlier run of this restore began recovering it and did not finish; --force-rerestore: restoring it again from the backup, discarding any writes made to it since`
          : `table ${t.name} (id ${schema.tableId}) was created by an earlier run of this restore that did not finish: finishing it`,
      );
    } else {
      schema = await opts.client.createTable(t.name, t.columns.map((c) => ({ ...c })), t.regionCount, restoreToken(backup.id, t.name));
      progress.note(`created table ${t.name} (id ${schema.tableId}, was ${t.tableId}) with ${schema.regionCount} regions`);
    }
    const stage = { recovering: false };
    try {
      out.push(await restoreTable(t, schema, stage));
    } catch (err) {
      if (!createdNow) {
        // An earlier run created it and may have recovered it: it may have served writes since.
        // A run drops only a table it created itself.
        progress.note(
          `table ${t.name} (id ${schema.tableId}) is left as it is: an earlier run of this restore created it, so this run does not drop it (it may hold writes made since). ${
            stage.recovering || again
              ? `${stage.recovering ? 'This run' : 'An earlier run'} had begun recovering it: it may be recovered in part or whole, and serving; the next run of this restore refuses it unless --force-rerestore, which restores it again, discarding any writes made to it since`
              : 'This run stopped before recovering it; run the same restore again to finish it'
          }`,
        );
        throw err;
      }
      // Created by this run, never reported restored: drop it so a retry starts clean. If the
      // drop fails too, running the same restore again finishes the table (or, if this run had
      // begun recovering it, refuses it without --force-rerestore: the note says so).
      await opts.client.dropTable(t.name).catch((dropErr: unknown) =>
        progress.note(
          isRegionDbError(dropErr, ErrorCode.Unavailable) && /is being dropped/.test((dropErr as Error).message)
            ? `the partly restored table ${t.name} is not dropped yet (${(dropErr as Error).message}): the metasrv finishes the drop on its own; run the same restore again once it is gone`
            : stage.recovering
              ? `could not drop table ${t.name} (${(dropErr as Error).message}), which this run created and had begun recovering: the next run of this restore refuses it unless --force-rerestore (which restores it again, discarding any writes made to it since this run), or drop it with regiondb drop-table and run the restore again`
              : `could not drop the partly restored table ${t.name} (${(dropErr as Error).message}): run the same restore again to finish it`,
        ),
      );
      throw err;
    }
    // Recovered and checked: the table is live, so it is not dropped if its record cannot be written.
    try {
      await writeRestoreRecord(opts.targetStore, { backupId: backup.id, table: t.name, tableId: schema.tableId, state: 'restored' });
    } catch (err) {
      const left = tables.filter((x) => !done.some((d) => d.name === x.name) && !out.some((o) => o.name === x.name)).map((x) => x.name);
      throw new RegionDbError(
        isRegionDbError(err) ? err.code : ErrorCode.StorageUnavailable,
        `table ${t.name} (id ${schema.tableId}) is restored (every region restarted from the backup's flushed index) and live, and is left as it is; but its record ${restoredRecordKey(backup.id, t.name)} could not be written to ${opts.targetStore.description} (${(err as Error).message}), so it may still say "recovering": the next run of this restore then refuses ${t.name} unless --force-rerestore, which would restore it again, discarding any writes made to it since. ${left.length > 0 ? `To keep it, restore the tables not restored yet with --tables ${left.join(',')}` : 'No other table of this restore is left to restore'}`,
        { cause: err },
      );
    }
  }
  return { backupId: backup.id, chain: report.chain, tables: out, alreadyRestored: done, resumed, rerestored, copiedFiles, copiedBytes, durationMs: Date.now() - started };

  /** `stage.recovering` is set once the recovery step (4) begins. */
  async function restoreTable(t: BackupTable, schema: TableSchema, stage: { recovering: boolean }): Promise<RestoreResult['tables'][number]> {
    const sstCount = t.regions.reduce((n, r) => n + r.sstKeys.length, 0);
    progress.begin(`restore ${t.name}`, sstCount, t.regions.reduce((n, r) => n + r.sstBytes, 0));
    const written = new Map<string, number>();
    await forEachBounded(t.regions, concurrency, async (r: BackupRegion) => {
      if (r.manifestKey === null) return; // never flushed: the region restarts empty
      const regionId = makeRegionId(schema.tableId, r.regionNumber);
      const m = decodeManifest(await readBackupObject(r.manifestKey), `backup ${backup.id}: ${r.manifestKey}`);
      // The region is live (its leader runs SST GC) and nothing names the copies until the manifest
      // below is put: the marker keeps its GC from deleting them meanwhile (docs/engine.md,
      // "Restore copies and a live leader's GC"). Put before the first copy, deleted after the
      // manifest; a run that fails deletes it too (what it copied is garbage then), a killed one
      // leaves it for the next run, which puts and deletes it again.
      const marker = restoreMarkerKey(regionId);
      // What it holds is shown by the GC passes it holds (who put it, and when: a killed run's is old).
      await opts.targetStore.put(marker, new TextEncoder().encode(`${JSON.stringify({ backupId: backup.id, table: t.name, startedAtMs: Date.now() })}\n`));
      try {
        await restoreRegion(regionId, m);
      } catch (err) {
        await opts.targetStore.delete(marker).catch(() => {});
        throw err;
      }
      await opts.targetStore.delete(marker);
    });
    async function restoreRegion(regionId: string, m: RegionManifest): Promise<void> {
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
    }
    progress.end();
    // From here the table may serve writes: record that first, so a later run does not restore it
    // again unasked (a record put that fails or is not confirmed counts as begun).
    stage.recovering = true;
    await writeRestoreRecord(opts.targetStore, { backupId: backup.id, table: t.name, tableId: schema.tableId, state: 'recovering' });
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
