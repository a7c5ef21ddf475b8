// The value of a put in an SST (a tombstone has none): the row's tag values, its timestamp and
// its field values. The SST format (sst/format.ts) stores values as opaque bytes; this is their
// encoding, and the first byte says which one (docs/engine.md, "SST values"):
//
//   version 1 (JSON)    UTF-8 JSON `[tags, timestampMs, fields]`. Its first byte is always `[`
//                       (0x5B): the encoder never wrote whitespace. Written by builds before
//                       version 2; still read, so every SST in a store stays readable.
//   version 2 (binary)  0x02, then tags (list), timestamp (value), fields (list), in the value
//                       encoding of write commands (command-binary.ts: uint count, then per value
//                       a type tag and its payload; exact for every JS value). Written now.
//
// Why: every flushed and every merged row was JSON.stringify'd and UTF-8 encoded on the leader,
// and every merged or read row JSON.parse'd (docs/performance.md, round 3 ingest, second pass).
// Decoding checks every length, tag and the end: damaged bytes are CORRUPTION naming the SST and
// the value's version, never a TypeError or a silently shorter row. (SST blocks carry CRC32Cs,
// so damage reaching this decoder means a bug or a damaged block with a matching CRC.)
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { BinaryReader, BinaryWriter } from './command-binary.js';
import type { Value } from './schema.js';

/** The first byte of a version-1 (JSON) value. */
export const SST_VALUE_JSON_FIRST_BYTE = 0x5b;
/** The first byte of a version-2 (binary) value. */
export const SST_VALUE_BINARY = 2;

/** A put's cells as an SST value holds them. */
export interface SstValue {
  readonly tags: readonly Value[];
  readonly timestampMs: number;
  /** undefined only in a version-1 value written without fields (read as a tombstone, as before). */
  readonly fields: readonly Value[] | undefined;
}

const encoder = new TextEncoder();
/** One writer for every value: encoding is synchronous, and finish() returns a copy. */
const valueWriter = new BinaryWriter();
const decoder = new TextDecoder();

/** Version 2: what flushes and merges write. */
export function encodeSstValue(tags: readonly Value[], timestampMs: number, fields: readonly Value[]): Uint8Array {
  const w = valueWriter;
  w.reset();
  w.byte(SST_VALUE_BINARY);
  w.valueList(tags);
  w.value(timestampMs);
  w.valueList(fields);
  return w.finish();
}

/** encodeSstValue of a row given as its values, its tags and fields at the positions `tagIndex` and `fieldIndex` (memtable.ts RowEntry). */
export function encodeSstValueOfRow(values: readonly Value[], tagIndex: readonly number[], timestampMs: number, fieldIndex: readonly number[]): Uint8Array {
  const w = valueWriter;
  w.reset();
  w.byte(SST_VALUE_BINARY);
  w.valueListAt(values, tagIndex);
  w.value(timestampMs);
  w.valueListAt(values, fieldIndex);
  return w.finish();
}

/** Version 1, as builds before version 2 wrote it (tests and the format's fixtures). */
export function encodeSstValueV1(tags: readonly Value[], timestampMs: number, fields: readonly Value[]): Uint8Array {
  return encoder.encode(JSON.stringify([tags, timestampMs, fields]));
}

/** Either version; `sst` and `version` (the entry's) name the value in errors. */
export function decodeSstValue(bytes: Uint8Array, sst: string, version: number): SstValue {
  if (bytes[0] === SST_VALUE_BINARY) {
    const where = `SST ${sst}: the value at version ${version}`;
    try {
      const r = new BinaryReader(bytes, 1, where);
      const tags = r.valueList('tags');
      const timestampMs = r.value();
      if (typeof timestampMs !== 'number' || !Number.isSafeInteger(timestampMs)) {
        throw new RegionDbError(ErrorCode.Corruption, `${where} is malformed: timestamp ${String(timestampMs)} is not a safe integer`);
      }
      const fields = r.valueList('fields');
      r.end();
      return { tags, timestampMs, fields };
    } catch (err) {
      if (err instanceof RegionDbError) throw err;
      throw new RegionDbError(ErrorCode.Corruption, `${where} is malformed: ${(err as Error).message}`, { cause: err });
    }
  }
  if (bytes[0] !== SST_VALUE_JSON_FIRST_BYTE) {
    const first = bytes.byteLength === 0 ? 'empty' : `first byte 0x${bytes[0]!.toString(16).padStart(2, '0')}`;
    throw new RegionDbError(ErrorCode.Corruption, `SST ${sst}: the value at version ${version} has an unknown encoding (${first}; this build reads 1 (JSON) and 2 (binary))`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new RegionDbError(ErrorCode.Corruption, `SST ${sst}: a value at version ${version} is not valid JSON`);
  }
  if (!Array.isArray(parsed)) throw new RegionDbError(ErrorCode.Corruption, `SST ${sst}: the value at version ${version} is not a JSON array [tags, timestamp, fields]`);
  const [tags, timestampMs, fields] = parsed as [Value[], number, Value[] | undefined];
  return { tags, timestampMs, fields };
}
