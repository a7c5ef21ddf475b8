// Copies of the catalog in the object store (docs/metasrv-ha.md, "Losing a majority"): the acting
// metasrv writes `meta/catalog-<wall ms, 15 digits>` when the catalog changed and the interval
// has passed, and keeps the newest few. A metasrv group that lost a majority (or a single metasrv
// that lost its disk) is started again from the newest copy (`regiondb meta seed`). A copy is in
// the catalog store's format (versioned, CRC32C) and names its cluster id.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { ObjectStore } from '../object-store/index.js';
import type { CatalogState } from './catalog.js';
import { decodeCatalog, encodeCatalog, upgradeCatalog } from './catalog-store.js';

export const CATALOG_BACKUP_PREFIX = 'meta/catalog-';
/** Copies kept; older ones are deleted after each new copy. */
export const CATALOG_BACKUPS_KEPT = 10;

export function catalogBackupKey(wallMs: number): string {
  return `${CATALOG_BACKUP_PREFIX}${String(Math.floor(wallMs)).padStart(15, '0')}`;
}

/**
 * Writes a copy unless the catalog is byte-identical to the last copy written; prunes old copies.
 * Returns the key written, if any. The key is the wall time, raised above every copy already in
 * the store (finding Y4): the newest copy by name is the last one written — what `meta seed`
 * reads and the pruning keeps — even after a copy from a clock that ran ahead (a step later
 * corrected, a group member's clock ahead of the others').
 */
export async function backupCatalog(store: ObjectStore, catalog: CatalogState, wallMs: number, lastWritten: { crc?: number }): Promise<string | undefined> {
  const bytes = encodeCatalog(catalog);
  const crc = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
  if (crc === lastWritten.crc) return undefined;
  const before = (await store.list(CATALOG_BACKUP_PREFIX)).map((o) => o.key).sort();
  const highest = Math.max(Number.NEGATIVE_INFINITY, ...before.map(copyMs).filter((ms) => !Number.isNaN(ms)));
  const key = catalogBackupKey(highest >= wallMs ? highest + 1 : wallMs);
  await store.put(key, bytes);
  lastWritten.crc = crc;
  const copies = [...new Set([...before, key])].sort();
  for (const old of copies.slice(0, Math.max(0, copies.length - CATALOG_BACKUPS_KEPT))) await store.delete(old);
  return key;
}

/** The number a copy's key carries (its writer's wall ms, or above: backupCatalog); NaN for a key not of that form. */
function copyMs(key: string): number {
  const digits = key.slice(CATALOG_BACKUP_PREFIX.length);
  return /^[0-9]{1,15}$/.test(digits) ? Number(digits) : Number.NaN;
}

/** The newest readable copy of this cluster's catalog, or undefined when there is none. Damaged copies are skipped (and named). */
export async function newestCatalogBackup(store: ObjectStore, clusterId: string): Promise<{ key: string; catalog: CatalogState; bytes: Uint8Array; skipped: string[] } | undefined> {
  const keys = (await store.list(CATALOG_BACKUP_PREFIX)).map((o) => o.key).sort().reverse();
  const skipped: string[] = [];
  for (const key of keys) {
    const bytes = await store.get(key);
    let catalog: CatalogState;
    try {
      catalog = upgradeCatalog(decodeCatalog(bytes, `copy ${key}`));
    } catch (err) {
      skipped.push(`${key}: ${(err as Error).message}`);
      continue;
    }
    if (catalog.clusterId !== clusterId) {
      throw new RegionDbError(ErrorCode.Config, `the catalog copy ${key} belongs to cluster "${catalog.clusterId}", not "${clusterId}": wrong [storage]?`);
    }
    return { key, catalog, bytes, skipped };
  }
  return undefined;
}
