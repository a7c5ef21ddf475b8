// The encoding of the metasrv's small record objects in the object store (the standby promotion
// record, promotion-object.ts; the drop record, drop-object.ts): a JSON object framed as the WAL's
// records are — version, CRC32C, length (docs/style.md S6) — so a damaged object is told from a
// valid one, never read as another record.
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
