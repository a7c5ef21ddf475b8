// A table id's reservation as an object in the cluster's object store (`[storage]`; docs/ddl.md,
// "Table ids across a lost catalog"; finding M34 in docs/correctness.md). The metasrv raises its
// table id allocator after a start above every table id the object store names: region folders
// (tables that flushed), drop records (tables dropped) — and these, written by CreateTable before
// it saves or opens anything, so that a table created and lost with its catalog before any flush
// (its replicas on nodes that are down while a restored catalog creates the next table) never has
// its id, and so its region ids and the peer ids of its groups, handed out again.
//
// One object per table id: `meta/table-id-<table id, 15 digits>`, never rewritten with other
// bytes and never deleted by the metasrv (one small object per table ever created). Framed and
// checked like the drop records (drop-object.ts): versioned, CRC32C, naming its cluster and table;
// only the key is read at a start (one listing), the body is for an operator.
import type { ObjectStore } from '../object-store/index.js';
import { frameJson, tableIdKey, tableIdOfKey } from './record-object.js';

export const TABLE_ID_OBJECT_PREFIX = 'meta/table-id-';

export function tableIdObjectKey(tableId: number): string {
  return tableIdKey(TABLE_ID_OBJECT_PREFIX, tableId);
}

/** Puts the reservation of `tableId` for table `name` (durable when the store's put resolves). */
export async function writeTableIdObject(store: ObjectStore, clusterId: string, tableId: number, name: string): Promise<void> {
  await store.put(tableIdObjectKey(tableId), frameJson({ clusterId, tableId, name }));
}

/**
 * The highest table id reserved in the store (-1: none), read off the keys of one listing, and
 * the keys under the prefix that name no table id (`strays`: logged by the caller, never fatal).
 */
export async function highestReservedTableId(store: ObjectStore): Promise<{ highest: number; strays: string[] }> {
  let highest = -1;
  const strays: string[] = [];
  for (const { key } of await store.list(TABLE_ID_OBJECT_PREFIX)) {
    const tableId = tableIdOfKey(TABLE_ID_OBJECT_PREFIX, key);
    if (tableId !== undefined) highest = Math.max(highest, tableId);
    else strays.push(key);
  }
  return { highest, strays };
}
