// A backup repository as a whole: reading a backup's manifest, listing backups, and retention
// (`br prune --keep N`), which never deletes a base that a kept incremental backup needs.
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { BACKUP_ID, type BackupManifest, backupJournalKey, backupManifestKey, decodeBackupJournal, decodeBackupManifest, validateBackupId } from './format.js';

/** The manifest of a complete backup; NOT_FOUND if the backup is absent or incomplete, CORRUPTION if damaged. */
export async function loadBackupManifest(repository: ObjectStore, backupId: string): Promise<BackupManifest> {
  validateBackupId(backupId);
  const key = backupManifestKey(backupId);
  let bytes: Uint8Array;
  try {
    bytes = await repository.get(key);
  } catch (err) {
    if (isRegionDbError(err, ErrorCode.NotFound)) {
      throw new RegionDbError(ErrorCode.NotFound, `backup ${backupId} not found in ${repository.description} (no ${key}; an incomplete backup has only progress.json)`, { cause: err });
    }
    throw err;
  }
  const m = decodeBackupManifest(bytes, `${repository.description}/${key}`);
  if (m.id !== backupId) throw new RegionDbError(ErrorCode.Corruption, `${repository.description}/${key} describes backup ${m.id}, not ${backupId}`);
  return m;
}

export interface BackupListing {
  readonly id: string;
  /** complete: has backup.json; incomplete: only progress.json (running, or interrupted: resumable); orphaned: neither (an interrupted prune); damaged: backup.json does not decode. */
  readonly status: 'complete' | 'incomplete' | 'orphaned' | 'damaged';
  readonly manifest?: BackupManifest;
  readonly error?: string;
  /** An incomplete backup's base (from its journal): a prune must keep it too. */
  readonly pendingBaseId?: string | null;
  /** Bytes under <id>/ in the repository. */
  readonly storedBytes: number;
}

const RECORD = /^([^/]+)\/(backup|progress)\.json$/;

/** Every backup in the repository, oldest first (complete ones by creation time, then the rest by id). */
export async function listBackups(repository: ObjectStore): Promise<BackupListing[]> {
  const byId = new Map<string, { hasManifest: boolean; hasJournal: boolean; hasData: boolean; bytes: number }>();
  for (const o of await repository.list('')) {
    const [id, second] = o.key.split('/');
    if (id === undefined || !BACKUP_ID.test(id)) continue;
    const entry = byId.get(id) ?? { hasManifest: false, hasJournal: false, hasData: false, bytes: 0 };
    entry.bytes += o.size;
    if (second === 'data') entry.hasData = true;
    const m = RECORD.exec(o.key);
    if (m?.[2] === 'backup') entry.hasManifest = true;
    if (m?.[2] === 'progress') entry.hasJournal = true;
    byId.set(id, entry);
  }
  const out: BackupListing[] = [];
  for (const [id, e] of byId) {
    if (!e.hasManifest && !e.hasJournal) {
      // Not ours (a repository should hold only backups, but never delete what we did not write).
      if (!e.hasData) continue;
      out.push({ id, status: 'orphaned', storedBytes: e.bytes });
      continue;
    }
    if (!e.hasManifest) {
      const key = backupJournalKey(id);
      try {
        const journal = decodeBackupJournal(await repository.get(key), `${repository.description}/${key}`);
        out.push({ id, status: 'incomplete', pendingBaseId: journal.baseId, storedBytes: e.bytes });
      } catch (err) {
        out.push({ id, status: 'incomplete', error: (err as Error).message, storedBytes: e.bytes });
      }
      continue;
    }
    try {
      out.push({ id, status: 'complete', manifest: await loadBackupManifest(repository, id), storedBytes: e.bytes });
    } catch (err) {
      out.push({ id, status: 'damaged', error: (err as Error).message, storedBytes: e.bytes });
    }
  }
  return out.sort((a, b) => (a.manifest?.createdAtMs ?? Number.MAX_SAFE_INTEGER) - (b.manifest?.createdAtMs ?? Number.MAX_SAFE_INTEGER) || a.id.localeCompare(b.id));
}

/** The newest complete backup, or undefined. */
export async function latestBackup(repository: ObjectStore): Promise<BackupManifest | undefined> {
  return (await listBackups(repository)).filter((b) => b.manifest).at(-1)?.manifest;
}

export interface PrunePlan {
  /** The newest `keep` complete backups. */
  readonly kept: string[];
  /** Older backups kept because a kept incremental builds on them. */
  readonly keptAsBase: string[];
  /** Complete and orphaned backups to delete. */
  readonly deleted: string[];
  /** Incomplete (maybe running) and damaged backups are never pruned automatically. */
  readonly untouched: string[];
}

export function planPrune(backups: readonly BackupListing[], keep: number): PrunePlan {
  if (!Number.isInteger(keep) || keep < 1) throw new RegionDbError(ErrorCode.InvalidArgument, `--keep must be a positive integer, got ${keep}`);
  const complete = backups.filter((b) => b.status === 'complete');
  const byId = new Map(complete.map((b) => [b.id, b.manifest!]));
  const kept = complete.slice(-keep).map((b) => b.id);
  const needed = new Set(kept);
  const keptAsBase: string[] = [];
  const chainStarts = [...kept.map((id) => byId.get(id)?.baseId ?? null), ...backups.map((b) => b.pendingBaseId ?? null)];
  for (const start of chainStarts) {
    for (let base = start; base !== null && !needed.has(base); base = byId.get(base)?.baseId ?? null) {
      needed.add(base);
      keptAsBase.push(base);
    }
  }
  return {
    kept,
    keptAsBase,
    deleted: backups.filter((b) => (b.status === 'complete' && !needed.has(b.id)) || b.status === 'orphaned').map((b) => b.id),
    untouched: backups.filter((b) => b.status === 'incomplete' || b.status === 'damaged').map((b) => b.id),
  };
}

/** Deletes a backup: backup.json first, so a prune interrupted midway leaves an "orphaned" backup, never a complete-looking broken one. */
export async function deleteBackup(repository: ObjectStore, backupId: string): Promise<number> {
  validateBackupId(backupId);
  await repository.delete(backupManifestKey(backupId));
  const objects = await repository.list(`${backupId}/`);
  for (const o of objects) await repository.delete(o.key);
  return objects.length;
}
