// The encoding of the metasrv's small record objects in the object store (the standby promotion
// record, promotion-object.ts; the drop record, drop-object.ts; the table id reservation,
// table-id-object.ts): a JSON object framed as the WAL's records are — version, CRC32C, length
// (docs/style.md S6) — so a damaged object is told from a valid one, never read as another record.
// Records of one table are keyed `<prefix><table id, 15 digits>` (tableIdKey).
import { assert } from '../common/assert.js';
import type { RegionDbError } from '../common/errors.js';
import { frame, unframe } from '../wal/record.js';

/** `value` as JSON, framed. */
export function frameJson(value: unknown): Uint8Array {
  return frame(new TextEncoder().encode(JSON.stringify(value)));
}

/** The JSON value a framed object holds; a bad frame or invalid JSON throws `corrupt(why)`. */
export function unframeJson(bytes: Uint8Array, corrupt: (why: string) => RegionDbError): unknown {
  let payload: Uint8Array;
  try {
    payload = unframe(bytes);
  } catch (err) {
    throw corrupt((err as Error).message);
  }
  try {
    return JSON.parse(new TextDecoder().decode(payload));
  } catch (err) {
    throw corrupt(`invalid JSON (${(err as Error).message})`);
  }
}

/** The largest table id a record's key can name (15 digits; table ids stay far below it: region ids are table id << 32). */
export const TABLE_ID_MAX = 999_999_999_999_999;

/** The key of a table's record under `prefix`: the table id in 15 digits, so keys list in id order. */
export function tableIdKey(prefix: string, tableId: number): string {
  assert(Number.isSafeInteger(tableId) && tableId >= 0 && tableId <= TABLE_ID_MAX, () => `table id ${tableId} fits a record key`);
  return `${prefix}${String(tableId).padStart(15, '0')}`;
}

/** The table id a key under `prefix` names (tableIdKey), or undefined for a key that names none. */
export function tableIdOfKey(prefix: string, key: string): number | undefined {
  const digits = key.slice(prefix.length);
  return key.startsWith(prefix) && /^[0-9]{15}$/.test(digits) ? Number(digits) : undefined;
}
