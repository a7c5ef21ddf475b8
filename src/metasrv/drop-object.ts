// The drop record of a table as an object in the cluster's object store (`[storage]`; docs/ddl.md,
// "A catalog older than the drop"; DT2 in docs/correctness.md). The catalog's tombstones alone are
// lost with the catalog: a metasrv restored from a copy older than a DropTable knew the table again
// and had its replicas opened — empty, and with a copy saved before the region's first report, as a
// new raft group (bootstrap) that acknowledged writes into the dropped table.
//
// One object per dropped table: `meta/dropped-table-<table id, 15 digits>`, written by DropTable
// after every region's drop fence is committed and before the drop is answered, never rewritten
// with other bytes, never deleted by the metasrv. Its existence is a fact that no later event
// undoes (a fence is never taken back, table ids are never reused), so any metasrv — a deposed
// group leader included — may write it, and a retry puts the same bytes under the same key. Each
// object is versioned, CRC32C-checked and names its cluster id and the table (name and id), as the
// promotion records do (promotion-object.ts): an object of another cluster is refused, never taken
// up or passed over.
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { ObjectStore } from '../object-store/index.js';
import { TABLE_ID_MAX, frameJson, tableIdKey, tableIdOfKey, unframeJson } from './record-object.js';

export const DROP_OBJECT_PREFIX = 'meta/dropped-table-';

/** What a drop record says: table `name` of id `tableId` was dropped (every region's fence committed). */
export interface DropRecord {
  readonly tableId: number;
  readonly name: string;
}

export function dropObjectKey(tableId: number): string {
  return tableIdKey(DROP_OBJECT_PREFIX, tableId);
}

export function encodeDropObject(clusterId: string, record: DropRecord): Uint8Array {
  assert(record.name.length > 0, 'a dropped table has a name');
  dropObjectKey(record.tableId); // asserts the id
  return frameJson({ clusterId, tableId: record.tableId, name: record.name });
}

export function decodeDropObject(bytes: Uint8Array, key: string): { clusterId: string; record: DropRecord } {
  const corrupt = (why: string) => new RegionDbError(ErrorCode.Corruption, `drop record object ${key}: ${why}`);
  const parsed = unframeJson(bytes, corrupt); // the WAL's record framing: version, crc32c, length (docs/style.md S6)
  const p = parsed as { clusterId?: unknown; tableId?: unknown; name?: unknown };
  if (typeof p.clusterId !== 'string' || !Number.isSafeInteger(p.tableId) || (p.tableId as number) < 0 || (p.tableId as number) > TABLE_ID_MAX || typeof p.name !== 'string' || p.name === '') {
    throw corrupt('not a drop record (clusterId, tableId, name)');
  }
  const record = { tableId: p.tableId as number, name: p.name };
  if (dropObjectKey(record.tableId) !== key) throw corrupt(`holds table id ${record.tableId}, which its key does not name`);
  return { clusterId: p.clusterId, record };
}

/** Puts the table's drop record (durable when the store's put resolves: fsync + rename, or S3's answer). */
export async function writeDropObject(store: ObjectStore, clusterId: string, record: DropRecord): Promise<string> {
  const key = dropObjectKey(record.tableId);
  await store.put(key, encodeDropObject(clusterId, record));
  return key;
}

/**
 * The table ids with a drop record in the store, read off the keys (one listing), and the keys
 * under the prefix that are not a drop record's (`strays`: nothing this code writes; they name no
 * table, so the caller logs them and goes on — a stray object must not hold every CreateTable).
 */
export async function droppedTableIds(store: ObjectStore): Promise<{ ids: Map<number, string>; strays: string[] }> {
  const ids = new Map<number, string>();
  const strays: string[] = [];
  for (const { key } of await store.list(DROP_OBJECT_PREFIX)) {
    const tableId = tableIdOfKey(DROP_OBJECT_PREFIX, key);
    if (tableId !== undefined) ids.set(tableId, key);
    else strays.push(key);
  }
  return { ids, strays };
}

/**
 * Reads one drop record; one that is damaged throws CORRUPTION, one of another cluster CONFIG
 * (never taken up or passed over: the caller holds the table, or fails the listing).
 */
export async function readDropObject(store: ObjectStore, key: string, clusterId: string): Promise<DropRecord> {
  const { clusterId: owner, record } = decodeDropObject(await store.get(key), key);
  if (owner !== clusterId) {
    throw new RegionDbError(ErrorCode.Config, `the drop record object ${key} belongs to cluster "${owner}", not "${clusterId}": wrong [storage]?`);
  }
  return record;
}
