// `regiondb br verify`: a backup is usable only if every object it needs is present with the
// recorded size and SHA-256 — its own objects and those it refers to in its base chain — every
// base in the chain is complete and verifies, and each region manifest names exactly the SSTs
// the backup lists for that region. Every problem is reported with the backup, the object and
// what was expected versus found; verification does not stop at the first one. A region whose
// manifest a base holds is checked against that manifest too (restore reads it).
import { ErrorCode, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { decodeManifest } from '../engine/manifest.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { type CopySettings, copySettings, forEachBounded, readHashed } from './copy.js';
import { type BackupFile, type BackupManifest, type BackupRegion, backupDataKey, backupJournalKey } from './format.js';
import { loadBackupManifest } from './repository.js';

export interface VerifyReport {
  readonly backupId: string;
  readonly ok: boolean;
  readonly problems: string[];
  /** The backup and its bases, newest first, as far as they could be read. */
  readonly chain: string[];
  readonly checkedFiles: number;
  readonly checkedBytes: number;
}

/** Verification reads and hashes; it copies nothing, so `bytesPerSecond` does not apply. */
export type VerifyOptions = Omit<CopySettings, 'bytesPerSecond'>;

async function loadForVerify(repository: ObjectStore, id: string, neededBy: string | undefined, problems: string[]): Promise<BackupManifest | undefined> {
  try {
    return await loadBackupManifest(repository, id);
  } catch (err) {
    const incomplete = isRegionDbError(err, ErrorCode.NotFound) && (await repository.head(backupJournalKey(id))) !== undefined;
    const why = incomplete
      ? `backup ${id} is incomplete (interrupted or still running): resume it with \`regiondb br backup --id ${id}\` to the same repository`
      : isRegionDbError(err, ErrorCode.NotFound)
        ? `backup ${id} is missing from ${repository.description}`
        : `backup ${id}: ${(err as Error).message}`;
    problems.push(neededBy ? `broken chain: backup ${neededBy} is incremental from ${id}, but ${why}` : why);
    return undefined;
  }
}

export async function verifyBackup(repository: ObjectStore, backupId: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const { progress, concurrency } = copySettings(opts);
  const problems: string[] = [];
  // The chain, newest first.
  const chain: BackupManifest[] = [];
  let next: { id: string; neededBy: string | undefined } | undefined = { id: backupId, neededBy: undefined };
  while (next) {
    if (chain.length >= limits.brChainDepthMax) {
      problems.push(`broken chain: more than ${limits.brChainDepthMax} backups below ${backupId} (a cycle?)`);
      break;
    }
    const m = await loadForVerify(repository, next.id, next.neededBy, problems);
    if (!m) break;
    if (chain.some((c) => c.id === m.id)) {
      problems.push(`broken chain: backup ${m.id} appears twice below ${backupId}`);
      break;
    }
    chain.push(m);
    next = m.baseId === null ? undefined : { id: m.baseId, neededBy: m.id };
  }
  const byId = new Map(chain.map((m) => [m.id, m]));

  // References into the chain must match what the holder recorded.
  for (const m of chain) {
    for (const f of m.files) {
      if (f.backupId === m.id) continue;
      const holder = byId.get(f.backupId);
      if (!holder) {
        // With the chain read to its full backup, the file names a backup outside the chain;
        // otherwise the missing base is already reported above.
        if (chain.at(-1)?.baseId === null) problems.push(`broken chain: backup ${m.id} refers to ${f.key} in backup ${f.backupId}, which is not in its chain`);
        continue;
      }
      const held = holder.files.find((h) => h.key === f.key && h.backupId === holder.id);
      if (!held) problems.push(`broken chain: backup ${m.id} refers to ${f.key} in backup ${holder.id}, which does not hold it`);
      else if (held.sha256 !== f.sha256 || held.sizeBytes !== f.sizeBytes) {
        problems.push(`broken chain: backup ${m.id} expects ${f.key} in ${holder.id} with ${f.sizeBytes} bytes sha256 ${f.sha256}, but ${holder.id} recorded ${held.sizeBytes} bytes sha256 ${held.sha256}`);
      }
    }
  }

  // Every object each backup of the chain holds itself.
  const own: { m: BackupManifest; f: BackupFile; region: BackupRegion | undefined }[] = [];
  /** Per backup of the chain: the region record naming each manifest key. */
  const regionOfManifest = new Map(chain.map((m) => [m.id, new Map(m.tables.flatMap((t) => t.regions.filter((r) => r.manifestKey !== null).map((r) => [r.manifestKey!, r] as const)))]));
  for (const m of chain) {
    for (const f of m.files) if (f.backupId === m.id) own.push({ m, f, region: regionOfManifest.get(m.id)!.get(f.key) });
  }
  let checkedFiles = 0;
  let checkedBytes = 0;
  progress.begin(`verify ${backupId}`, own.length, own.reduce((n, o) => n + o.f.sizeBytes, 0));
  await forEachBounded(own, concurrency, async ({ m, f, region }) => {
    const where = `backup ${m.id}: ${backupDataKey(m.id, f.key)}`;
    const got = await readHashed(repository, backupDataKey(m.id, f.key)).catch((err: unknown) => {
      if (isRegionDbError(err, ErrorCode.NotFound)) return undefined;
      throw err;
    });
    checkedFiles++;
    progress.advance(f.sizeBytes, 0);
    if (!got) return void problems.push(`${where} is missing (expected ${f.sizeBytes} bytes, sha256 ${f.sha256})`);
    checkedBytes += got.sizeBytes;
    if (got.sizeBytes !== f.sizeBytes) return void problems.push(`${where}: size mismatch: expected ${f.sizeBytes} bytes, found ${got.sizeBytes}`);
    if (got.sha256 !== f.sha256) return void problems.push(`${where}: sha256 mismatch: expected ${f.sha256}, found ${got.sha256}`);
    if (region) {
      try {
        const rm = decodeManifest(got.data, where);
        const named = rm.ssts.map((s) => s.key).join(',');
        if (rm.flushedIndex !== region.flushedIndex || named !== region.sstKeys.join(',')) {
          problems.push(`${where}: region manifest (flushed index ${rm.flushedIndex}, ${rm.ssts.length} SSTs) disagrees with backup.json (flushed index ${region.flushedIndex}, ${region.sstKeys.length} SSTs)`);
        }
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
  });
  progress.end();

  // A region whose manifest another backup of the chain holds (incrementals taken before region
  // manifests were always copied): restore reads that manifest, so it must name what the region
  // lists. The holder's own record of that manifest was checked against its bytes above, so the
  // two records are compared (no read); a manifest no region record of its holder names is read.
  for (const m of chain) {
    const fileOf = new Map(m.files.map((f) => [f.key, f]));
    for (const t of m.tables) {
      for (const r of t.regions) {
        const f = r.manifestKey === null ? undefined : fileOf.get(r.manifestKey);
        if (!f || f.backupId === m.id || !byId.has(f.backupId)) continue; // own: checked above; outside the chain: reported above
        const where = `backup ${m.id}: region ${r.regionId} of table ${t.name}: its manifest ${backupDataKey(f.backupId, f.key)}`;
        let held: { flushedIndex: number; sstKeys: readonly string[] } | undefined = regionOfManifest.get(f.backupId)?.get(f.key);
        if (!held) {
          const got = await readHashed(repository, backupDataKey(f.backupId, f.key)).catch((err: unknown) => (isRegionDbError(err, ErrorCode.NotFound) ? undefined : Promise.reject(err)));
          if (!got || got.sha256 !== f.sha256) continue; // missing or damaged: reported with the backup that holds it
          try {
            const rm = decodeManifest(got.data, where);
            held = { flushedIndex: rm.flushedIndex, sstKeys: rm.ssts.map((x) => x.key) };
          } catch (err) {
            problems.push((err as Error).message);
            continue;
          }
        }
        if (held.flushedIndex !== r.flushedIndex || held.sstKeys.join(',') !== r.sstKeys.join(',')) {
          problems.push(`${where} (flushed index ${held.flushedIndex}, ${held.sstKeys.length} SSTs) disagrees with backup.json (flushed index ${r.flushedIndex}, ${r.sstKeys.length} SSTs): restore would read it`);
        }
      }
    }
  }
  problems.sort();
  return { backupId, ok: problems.length === 0, problems, chain: chain.map((m) => m.id), checkedFiles, checkedBytes };
}
