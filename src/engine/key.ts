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

function pushInt(out: number[], v: number): void {
  const buf = new Uint8Array(8);
  new DataView(buf.buffer).setBigInt64(0, BigInt(v));
  buf[0]! ^= 0x80;
  for (const b of buf) out.push(b);
}

export function encodePrimaryKey(schema: TableSchema, row: Row): Uint8Array {
  const out: number[] = [];
  for (const c of tagColumns(schema)) {
    const v = row[c.name] ?? null;
    if (v === null) {
      out.push(0);
      continue;
    }
    out.push(1);
    if (c.type === 'string') {
      for (const b of encoder.encode(v as string)) {
        out.push(b);
        if (b === 0) out.push(0xff);
      }
      out.push(0, 1);
    } else if (c.type === 'bool') {
      out.push(v ? 1 : 0);
    } else {
      pushInt(out, v as number);
    }
  }
  pushInt(out, row[timestampColumn(schema).name] as number);
  return Uint8Array.from(out);
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
  const key = encodePrimaryKey(schema, row);
  let h = 0x811c9dc5;
  for (let i = 0; i < key.byteLength - 8; i++) {
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
