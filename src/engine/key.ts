// Memcmp-ordered primary keys: tags in schema order, then the timestamp. Byte order of encoded
// keys equals the logical order (NULL < values; ints by value; strings by bytes), so memtables
// and SSTs sort by plain byte comparison.
//   NULL      → 0x00
//   string    → 0x01, bytes with 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x01
//   int64     → 0x01, 8 bytes big-endian with the sign bit flipped
//   bool      → 0x01, 0x00 | 0x01
//   timestamp → 8 bytes big-endian with the sign bit flipped
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { type Row, type TableSchema, type Value, tagColumns, timestampColumn } from './schema.js';

const encoder = new TextEncoder();

/** What key encoding needs of a schema, computed once per schema object. */
interface KeyLayout {
  /** The tag columns in schema order, each with its position among all columns (a row's values). */
  readonly tags: readonly { readonly name: string; readonly type: string; readonly index: number }[];
  readonly timestamp: string;
  /** The timestamp column's position among all columns. */
  readonly timestampIndex: number;
}
const layouts = new WeakMap<TableSchema, KeyLayout>();

function layoutOf(schema: TableSchema): KeyLayout {
  let layout = layouts.get(schema);
  if (!layout) {
    const ts = timestampColumn(schema);
    layout = {
      tags: tagColumns(schema).map((c) => ({ name: c.name, type: c.type, index: schema.columns.indexOf(c) })),
      timestamp: ts.name,
      timestampIndex: schema.columns.indexOf(ts),
    };
    layouts.set(schema, layout);
  }
  return layout;
}

/**
 * Scratch space for one key being encoded (keys are small; it grows if one is not). Encoding is
 * synchronous, so one buffer serves every call; the result is a copy of the used part.
 */
let scratch = new Uint8Array(256);
let scratchView = new DataView(scratch.buffer);
/** The same bytes as a Buffer, for toString('latin1'): one char per byte, made natively. */
let scratchBuffer = Buffer.from(scratch.buffer);

function ensure(pos: number, more: number): void {
  if (pos + more <= scratch.byteLength) return;
  const grown = new Uint8Array(Math.max(scratch.byteLength * 2, pos + more));
  grown.set(scratch.subarray(0, pos));
  scratch = grown;
  scratchView = new DataView(scratch.buffer);
  scratchBuffer = Buffer.from(scratch.buffer);
}

/** An integer as 8 bytes big-endian, two's complement, sign bit flipped (memcmp = numeric order). */
function putInt(pos: number, v: number): number {
  ensure(pos, 8);
  if (Number.isSafeInteger(v)) {
    const hi = Math.floor(v / 0x1_0000_0000);
    scratchView.setUint32(pos, ((hi | 0) ^ 0x8000_0000) >>> 0);
    scratchView.setUint32(pos + 4, v - hi * 0x1_0000_0000);
  } else {
    scratchView.setBigInt64(pos, BigInt(v)); // throws for a non-integer, as it always did
    scratch[pos]! ^= 0x80;
  }
  return pos + 8;
}

/** A string's UTF-8 bytes with 0x00 escaped as 0x00 0xFF, then the terminator 0x00 0x01. */
function putString(pos: number, v: string): number {
  ensure(pos, v.length * 2 + 2);
  let ascii = true;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0 || c >= 0x80) {
      ascii = false;
      break;
    }
    scratch[pos + i] = c;
  }
  if (ascii) {
    pos += v.length;
  } else {
    const bytes = encoder.encode(v);
    ensure(pos, bytes.byteLength * 2 + 2);
    for (const b of bytes) {
      scratch[pos++] = b;
      if (b === 0) scratch[pos++] = 0xff;
    }
  }
  scratch[pos] = 0;
  scratch[pos + 1] = 1;
  return pos + 2;
}

/** One tag value of column type `type`, NULL included. */
function putTag(pos: number, type: string, v: Value): number {
  ensure(pos, 2);
  if (v === null) {
    scratch[pos++] = 0;
    return pos;
  }
  scratch[pos++] = 1;
  if (type === 'string') return putString(pos, v as string);
  if (type === 'bool') {
    scratch[pos++] = v ? 1 : 0;
    return pos;
  }
  return putInt(pos, v as number);
}

/** Encodes a row's key into the scratch buffer; returns its length. */
function encodeRowKey(schema: TableSchema, row: Row): number {
  const { tags, timestamp } = layoutOf(schema);
  let pos = 0;
  for (const c of tags) pos = putTag(pos, c.type, row[c.name] ?? null);
  return putInt(pos, row[timestamp] as number);
}

export function encodePrimaryKey(schema: TableSchema, row: Row): Uint8Array {
  const n = encodeRowKey(schema, row); // first: it may replace `scratch` with a larger buffer
  return scratch.slice(0, n);
}

/**
 * The primary key of a row given as its values in schema order (a write command's row), as a
 * byte string: one char per byte (0–255), the form the memtable orders and stores keys in
 * (memtable.ts). Equal to keyStringOfBytes(encodePrimaryKey(schema, row)) for the same row, with
 * neither the Row object nor a Uint8Array per key: the apply path runs this for every row on
 * every replica.
 */
export function primaryKeyStringOfValues(schema: TableSchema, values: readonly Value[]): string {
  const { tags, timestampIndex } = layoutOf(schema);
  let pos = 0;
  for (const c of tags) pos = putTag(pos, c.type, values[c.index] ?? null);
  pos = putInt(pos, values[timestampIndex] as number);
  return scratchBuffer.toString('latin1', 0, pos);
}

/** A key's byte string (one char per byte): `<` on two of them orders them as compareBytes orders the bytes. */
export function keyStringOfBytes(key: Uint8Array): string {
  // Keys are at most a few KiB (limits.keyBytesMax and the encoding's overhead): one call's arguments.
  return String.fromCharCode.apply(null, key as unknown as number[]);
}

/** The bytes of a key's byte string (keyStringOfBytes' inverse). */
export function keyBytesOfString(k: string): Uint8Array {
  const out = new Uint8Array(k.length);
  for (let i = 0; i < k.length; i++) out[i] = k.charCodeAt(i);
  return out;
}

export function timestampOfKey(key: Uint8Array): number {
  const buf = key.slice(key.byteLength - 8);
  buf[0]! ^= 0x80;
  return Number(new DataView(buf.buffer).getBigInt64(0));
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.byteLength - b.byteLength;
}

/** FNV-1a over the encoded tag values: which region a row belongs to. */
export function regionNumberOf(schema: TableSchema, row: Row): number {
  const n = encodeRowKey(schema, row); // hashed where it was encoded: no copy per row
  const key = scratch;
  let h = 0x811c9dc5;
  for (let i = 0; i < n - 8; i++) {
    h ^= key[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % schema.regionCount;
}

export function makeRegionId(tableId: number, regionNumber: number): string {
  return ((BigInt(tableId) << 32n) | BigInt(regionNumber)).toString();
}

export function parseRegionId(regionId: string): { tableId: number; regionNumber: number } {
  if (!/^\d{1,20}$/.test(regionId)) throw new RegionDbError(ErrorCode.InvalidArgument, `invalid region id ${JSON.stringify(regionId)}`);
  const v = BigInt(regionId);
  if (v >= 1n << 64n) throw new RegionDbError(ErrorCode.InvalidArgument, `region id ${regionId} exceeds uint64`);
  return { tableId: Number(v >> 32n), regionNumber: Number(v & 0xffffffffn) };
}

export function valueEquals(a: Value | undefined, b: Value | undefined): boolean {
  return (a ?? null) === (b ?? null);
}
