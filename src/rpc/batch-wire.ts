// BatchRequest / BatchResponse (proto/regiondb/v1/database.proto, Row/Value of common.proto) ↔
// protobuf wire bytes, by hand: every write, delete and get of the client library crosses the
// Database.Batch stream, and proto-loader's path (protobufjs reflection: fromObject + encode,
// decode + toObject) cost a visible share of datanode and client CPU per operation. The bytes are
// the ones any protobuf library reads and writes for database.proto.
//
// Shapes: decoding returns exactly the plain objects proto-loader returns with the options of
// src/rpc/proto.ts (keepCase, longs as String, enums as String, defaults, oneofs), key order
// included, so the service and the client read them unchanged: absent scalars are '' / '0' /
// false / 0, absent messages null, maps {}, repeated []; a oneof member is present only when set,
// with the oneof's name (`request`, `response`, `kind`, `_expect_version` for the proto3
// `optional`) naming it; uint64/int64 are decimal strings over the full 64-bit range; an enum
// value without a name stays a number, as protobufjs leaves it. Where protobufjs differs from the
// protobuf spec this follows protobufjs: several members of one oneof on the wire are all kept
// (the oneof names the last in field order), a message field seen twice is replaced, not merged,
// and a bool or 32-bit field is the low 32 bits of its varint.
//
// Encoding accepts what proto-loader's fromObject accepts from our callers: the objects above,
// uint64/int64 as decimal strings or safe integers, virtual oneof names ignored, null/undefined
// for absent. Fields go out in number order, proto3 defaults omitted except where presence
// matters (oneof members, `optional`); sizes are computed first, then every byte is written once
// into one Buffer of exactly that size. A value that cannot be encoded exactly (a uint64 that is
// not an integer in its range, for which protobufjs wrote some other number; a row that is not an
// object) is a bug of the caller: AssertionError, which grpc-js turns into a failed call
// (INTERNAL), as it did protobufjs' TypeErrors.
//
// Decoding accepts what a conforming encoder may send (fields in any order, unknown fields of
// every wire type skipped) and refuses, with an INVALID_ARGUMENT naming the field and byte
// offset, everything protobufjs refuses plus, deliberately, some bytes protobufjs reads anyway:
// a wire type database.proto does not declare for a known field (protobufjs reads it as the
// declared type), a string whose length runs past its message (protobufjs cuts it short), a
// varint truncated at the end of the input or longer than 10 bytes, a 32-bit varint of 6 to 9
// bytes (protobufjs skips 5 bytes unread), field number 0, and an unknown group closed by another
// field's end tag. So whatever this decoder accepts, proto-loader decodes to an equal object
// (test/unit/batch-wire.test.ts checks it by fuzzing). Every loop consumes at least one byte per
// iteration, and nothing is allocated from a length before it is checked against the bytes left.
// Strings are decoded as Buffer decodes UTF-8 (invalid sequences become U+FFFD), as protobufjs
// does on Node; encoding writes lone surrogates as U+FFFD, as Buffer does.
import type * as grpc from '@grpc/grpc-js';
import { AssertionError } from '../common/assert.js';
import type { Long } from '@grpc/proto-loader';
import type {
  BatchError__Output,
  BatchRequest,
  BatchRequest__Output,
  BatchResponse,
  BatchResponse__Output,
  Consistency__Output,
  DeleteRequest,
  DeleteRequest__Output,
  DeleteResponse__Output,
  GetRequest,
  GetRequest__Output,
  GetResponse__Output,
  Outcome__Output,
  RegionOutcome,
  RegionOutcome__Output,
  Row,
  Row__Output,
  Value,
  Value__Output,
  WriteRequest,
  WriteRequest__Output,
  WriteResponse__Output,
} from './generated/index.js';
import type { ColumnType, Row as EngineRow, Value as EngineValue, TableSchema } from '../engine/schema.js';
import { loadProtos } from './proto.js';
import { type FieldTable, type FieldsOf, VARINT_BYTES_MAX, WIRE_END_GROUP, WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_START_GROUP, WIRE_VARINT, WireReader, invalid, lengthDelimitedSize, tag, varintSize, writeVarint } from './wire.js';

// ─── Shapes ───────────────────────────────────────────────────────────────────────────────────
// The generated types of src/rpc/generated (proto-loader-gen-types, the runtime loader's options),
// so the compiler checks this codec against database.proto: decoders return the generated
// `__Output` shapes, encoders accept the generated input shapes.

export type ValueKind = NonNullable<ValueObject['kind']>;

/** An enum field as decoded: its name, or the number when the enum has no such value (protobufjs keeps it; the generated output type leaves it out). */
export type EnumOutput<Name> = Name | number;

export type ValueObject = Value__Output;
export type RowObject = Row__Output;
export type WriteRequestObject = WriteRequest__Output;
export type DeleteRequestObject = DeleteRequest__Output;
export type GetRequestObject = Omit<GetRequest__Output, 'consistency'> & { consistency: EnumOutput<GetRequest__Output['consistency']> };
export type BatchRequestObject = Omit<BatchRequest__Output, 'get'> & { get?: GetRequestObject | null };
/** database.proto's RegionOutcome (a routed write's part). */
export type RegionOutcomeObject = Omit<RegionOutcome__Output, 'outcome'> & { outcome: EnumOutput<RegionOutcome__Output['outcome']> };
export type WriteResponseObject = Omit<WriteResponse__Output, 'regions'> & { regions: RegionOutcomeObject[] };
export type DeleteResponseObject = Omit<DeleteResponse__Output, 'regions'> & { regions: RegionOutcomeObject[] };
export type GetResponseObject = GetResponse__Output;
export type BatchErrorObject = BatchError__Output;
export type BatchResponseObject = Omit<BatchResponse__Output, 'write' | 'delete'> & { write?: WriteResponseObject | null; delete?: DeleteResponseObject | null };

/** A uint64/int64 as callers give it: a decimal string (proto-loader's form) or a safe integer. */
export type LongInput = string | number;
type Maybe<T> = T | null | undefined;

/**
 * What the encoders accept: a generated input type with protobufjs' Long taken out (64-bit
 * integers as a decimal string or a safe integer), an enum as its name or any number (protobufjs'
 * fromObject sends an unknown number as is), readonly, null or undefined for an absent field; map
 * values present.
 */
export type WireInput<T> = T extends Long
  ? never
  : T extends number
    ? number
  : T extends readonly (infer U)[]
    ? readonly WireInput<U>[]
    : T extends object
      ? string extends keyof T
        ? { readonly [key: string]: WireInput<T[string & keyof T]> }
        : { readonly [K in keyof T]?: Maybe<WireInput<Exclude<T[K], undefined>>> }
      : T;

export type ValueInput = WireInput<Value>;
export type RowInput = WireInput<Row>;
export type WriteRequestInput = Omit<WireInput<WriteRequest>, 'rows'> & { readonly rows?: Maybe<readonly RowInput[] | EncodedWriteRows> };
export type DeleteRequestInput = WireInput<DeleteRequest>;
export type GetRequestInput = WireInput<GetRequest>;
export type BatchRequestInput = Omit<WireInput<BatchRequest>, 'write'> & { readonly write?: Maybe<WriteRequestInput> };
export type RegionOutcomeInput = WireInput<RegionOutcome>;
export type BatchResponseInput = WireInput<BatchResponse>;

// ─── Wire constants ───────────────────────────────────────────────────────────────────────────

/** protobufjs' util.recursionLimit: it refuses unknown groups nested past it (counting message depth). */
const RECURSION_LIMIT = 100;
/** Strings up to this many UTF-16 units are measured and written in JS (cheaper than a call into C++). */
const SHORT_STRING_UNITS_MAX = 48;

/** How deep each message sits, as protobufjs counts it for the recursion limit. */
const DEPTH_BATCH = 0;
const DEPTH_OPERATION = 1;
const DEPTH_ROW = 2;

/** Field names and wire types as the .proto declares them, index = field number (error messages). */
const BATCH_REQUEST_FIELDS: FieldTable = [['', -1], ['id', WIRE_VARINT], ['write', WIRE_LEN], ['delete', WIRE_LEN], ['get', WIRE_LEN], ['timeout_ms', WIRE_VARINT]] satisfies FieldsOf<BatchRequest__Output>;
const WRITE_REQUEST_FIELDS: FieldTable = [
  ['', -1],
  ['table', WIRE_LEN],
  ['region_id', WIRE_LEN],
  ['rows', WIRE_LEN],
  ['client_id', WIRE_LEN],
  ['request_id', WIRE_VARINT],
  ['expect_version', WIRE_VARINT],
  ['expect_absent', WIRE_VARINT],
  ['completed_below', WIRE_VARINT],
] satisfies FieldsOf<WriteRequest__Output>;
const DELETE_REQUEST_FIELDS: FieldTable = [
  ['', -1],
  ['table', WIRE_LEN],
  ['region_id', WIRE_LEN],
  ['keys', WIRE_LEN],
  ['client_id', WIRE_LEN],
  ['request_id', WIRE_VARINT],
  ['completed_below', WIRE_VARINT],
] satisfies FieldsOf<DeleteRequest__Output>;
const GET_REQUEST_FIELDS: FieldTable = [['', -1], ['table', WIRE_LEN], ['key', WIRE_LEN], ['consistency', WIRE_VARINT]] satisfies FieldsOf<GetRequest__Output>;
const ROW_FIELDS: FieldTable = [['', -1], ['values', WIRE_LEN]] satisfies FieldsOf<Row__Output>;
const MAP_ENTRY_FIELDS: FieldTable = [['', -1], ['key', WIRE_LEN], ['value', WIRE_LEN]];
const VALUE_FIELDS: FieldTable = [
  ['', -1],
  ['string_value', WIRE_LEN],
  ['int64_value', WIRE_VARINT],
  ['float64_value', WIRE_I64],
  ['bool_value', WIRE_VARINT],
  ['timestamp_ms_value', WIRE_VARINT],
  ['null_value', WIRE_VARINT],
] satisfies FieldsOf<Value__Output>;
const BATCH_RESPONSE_FIELDS: FieldTable = [['', -1], ['id', WIRE_VARINT], ['write', WIRE_LEN], ['delete', WIRE_LEN], ['get', WIRE_LEN], ['error', WIRE_LEN]] satisfies FieldsOf<BatchResponse__Output>;
const WRITE_RESPONSE_FIELDS: FieldTable = [['', -1], ['version', WIRE_VARINT], ['rows_written', WIRE_VARINT], ['regions', WIRE_LEN]] satisfies FieldsOf<WriteResponse__Output>;
const DELETE_RESPONSE_FIELDS: FieldTable = [['', -1], ['version', WIRE_VARINT], ['regions', WIRE_LEN]] satisfies FieldsOf<DeleteResponse__Output>;
const REGION_OUTCOME_FIELDS: FieldTable = [
  ['', -1],
  ['region_id', WIRE_LEN],
  ['outcome', WIRE_VARINT],
  ['version', WIRE_VARINT],
  ['rows', WIRE_VARINT],
  ['grpc_code', WIRE_VARINT],
  ['code', WIRE_LEN],
  ['message', WIRE_LEN],
] satisfies FieldsOf<RegionOutcome__Output>;
const GET_RESPONSE_FIELDS: FieldTable = [['', -1], ['found', WIRE_VARINT], ['row', WIRE_LEN], ['version', WIRE_VARINT]] satisfies FieldsOf<GetResponse__Output>;
const BATCH_ERROR_FIELDS: FieldTable = [['', -1], ['grpc_code', WIRE_VARINT], ['code', WIRE_LEN], ['message', WIRE_LEN], ['details', WIRE_LEN]] satisfies FieldsOf<BatchError__Output>;

/** database.proto's Consistency, by number. */
const CONSISTENCY_NAMES: readonly Consistency__Output[] = ['LINEARIZABLE', 'STALE'];
/** database.proto's Outcome, by number. */
const OUTCOME_NAMES: readonly Outcome__Output[] = ['OUTCOME_UNSPECIFIED', 'OUTCOME_APPLIED', 'OUTCOME_NOT_APPLIED', 'OUTCOME_UNKNOWN'];

/** A field's tag byte (every field number here is below 16, so every tag is one byte). */

// ─── Encoding ─────────────────────────────────────────────────────────────────────────────────

/**
 * Numbers the size pass works out, in the order the write pass needs them: the size of each
 * length-delimited part (before its children's), the UTF-8 length of each string, the value of
 * each 64-bit field (NaN: the next of `bigLongs`). Reused across calls (encoding is synchronous
 * and never re-entered).
 */
const sizes: number[] = [];
/** Longer arrays are given back after the message that needed them (a write of many rows). */
const RETAINED_SIZES_MAX = 1 << 16;
let sizesCount = 0;
let sizesRead = 0;
/** The keys of each map, as the size pass listed them (the write pass writes them in that order). */
const keyLists: string[][] = [];
let keyListsCount = 0;
let keyListsRead = 0;
/** 64-bit values beyond the safe integers, as unsigned 64-bit two's complement (rare). */
const bigLongs: bigint[] = [];
let bigLongsCount = 0;
let bigLongsRead = 0;

function reserveSize(): number {
  return sizesCount++;
}

function nextSize(): number {
  return sizes[sizesRead++]!;
}

function encodeBug(message: string): AssertionError {
  return new AssertionError(`batch wire encode: ${message}`);
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/** protobufjs' fromObject check: a message field holds an object. */
function expectObject(value: unknown, field: string): void {
  if (!isObject(value)) throw notAnObject(value, field);
}

function notAnObject(value: unknown, field: string): AssertionError {
  return encodeBug(`${field}: expected an object, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
}

/** A 64-bit varint from its two 32-bit halves (protobufjs' writeVarint64). */
export function writeVarint64(buf: Buffer, pos: number, lo: number, hi: number): number {
  while (hi !== 0) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  while (lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}

/** The UTF-8 length Buffer would write (a lone surrogate as U+FFFD: 3 bytes). */
export function utf8Length(s: string): number {
  const units = s.length;
  if (units > SHORT_STRING_UNITS_MAX) return Buffer.byteLength(s, 'utf8');
  let bytes = units;
  for (let i = 0; i < units; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if ((c & 0xfc00) === 0xd800 && i + 1 < units && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a pair: 4 bytes for 2 units
      i++;
    } else bytes += 2;
  }
  return bytes;
}

/** protobufjs' fromObject for string fields: String(value). */
export function asString(value: unknown): string {
  return typeof value === 'string' ? value : String(value);
}

/** Records a string's UTF-8 length; returns it. */
function stringSize(s: string): number {
  const bytes = utf8Length(s);
  sizes[sizesCount++] = bytes;
  return bytes;
}

/** A string field whose length the size pass recorded; omitted when empty unless `keepEmpty`. */
function writeStringField(buf: Buffer, pos: number, fieldTag: number, s: string, keepEmpty: boolean): number {
  const bytes = nextSize();
  if (bytes === 0 && !keepEmpty) return pos;
  buf[pos] = fieldTag;
  return writeStringBytes(buf, writeVarint(buf, pos + 1, bytes), s, bytes);
}

/** `s` as its `bytes` (utf8Length) UTF-8 bytes at `pos`; returns the end. */
function writeStringBytes(buf: Buffer, pos: number, s: string, bytes: number): number {
  if (bytes === s.length) {
    if (bytes <= SHORT_STRING_UNITS_MAX) {
      for (let i = 0; i < bytes; i++) buf[pos + i] = s.charCodeAt(i);
    } else buf.write(s, pos, bytes, 'latin1');
    return pos + bytes;
  }
  const written = buf.write(s, pos, bytes, 'utf8');
  if (written !== bytes) throw encodeBug(`a string of ${bytes} UTF-8 bytes took ${written}`);
  return pos + bytes;
}

/** Size of a string field (tag included); 0 when omitted. Records its length. */
function stringFieldSize(value: unknown, keepEmpty: boolean): number {
  const bytes = stringSize(asString(value));
  return bytes === 0 && !keepEmpty ? 0 : lengthDelimitedSize(bytes);
}

const DECIMAL = /^-?[0-9]+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** A uint64/int64 value as a safe integer, or (beyond them) as unsigned 64-bit two's complement. */
export function parseLong(value: unknown, field: string, signed: boolean): number | bigint {
  if (typeof value === 'string') {
    const units = value.length;
    // Fast path: up to 15 digits is always a safe integer.
    if (units > 0 && units <= 15) {
      const negative = value.charCodeAt(0) === 0x2d;
      let i = negative ? 1 : 0;
      let n = 0;
      for (; i < units; i++) {
        const digit = value.charCodeAt(i) - 0x30;
        if (digit < 0 || digit > 9) break;
        n = n * 10 + digit;
      }
      if (i === units && (i > 1 || !negative)) {
        if (negative && n !== 0 && !signed) throw encodeBug(`${field}: a uint64 cannot be negative: ${value}`);
        return negative ? -n : n;
      }
    }
    if (!DECIMAL.test(value)) throw encodeBug(`${field}: expected a decimal integer, got ${JSON.stringify(value)}`);
    return fromBigInt(BigInt(value), field, signed);
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || (value < 0 && !signed)) throw encodeBug(`${field}: expected ${signed ? 'a' : 'an unsigned'} safe integer, got ${value}`);
    return value;
  }
  if (typeof value === 'bigint') return fromBigInt(value, field, signed);
  throw encodeBug(`${field}: expected a decimal string or an integer, got ${typeof value}`);
}

function fromBigInt(value: bigint, field: string, signed: boolean): number | bigint {
  if (signed ? value < INT64_MIN || value > INT64_MAX : value < 0n || value > UINT64_MAX) {
    throw encodeBug(`${field}: ${value} is out of the range of ${signed ? 'int64' : 'uint64'}`);
  }
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : BigInt.asUintN(64, value);
}

/** The varint size of a safe integer as int64 (a negative one is 64-bit two's complement: always 10 bytes). */
function int64VarintSize(n: number): number {
  return n < 0 ? VARINT_BYTES_MAX : varintSize(n);
}

/** A safe integer as an int64 varint at `pos` (int64VarintSize bytes); returns the end. */
function writeInt64Varint(buf: Buffer, pos: number, n: number): number {
  if (n >= 0) return writeVarint(buf, pos, n);
  const hi = Math.floor(n / 2 ** 32);
  return writeVarint64(buf, pos, n - hi * 2 ** 32, hi >>> 0);
}

/** Size of a 64-bit varint field (tag included); 0 when zero unless `keepZero`. Records the value. */
function longFieldSize(value: unknown, field: string, signed: boolean, keepZero: boolean): number {
  const n = parseLong(value, field, signed);
  if (typeof n === 'number') {
    sizes[sizesCount++] = n;
    if (n === 0 && !keepZero) return 0;
    return 1 + int64VarintSize(n);
  }
  sizes[sizesCount++] = Number.NaN;
  bigLongs[bigLongsCount++] = n;
  let size = 2;
  for (let rest = n >> 7n; rest > 0n; rest >>= 7n) size++;
  return size;
}

/** A 64-bit varint field whose value the size pass recorded. */
function writeLongField(buf: Buffer, pos: number, fieldTag: number, keepZero: boolean): number {
  const n = nextSize();
  if (n === 0 && !keepZero) return pos;
  buf[pos++] = fieldTag;
  if (!Number.isNaN(n)) return writeInt64Varint(buf, pos, n);
  const big = bigLongs[bigLongsRead++]!;
  return writeVarint64(buf, pos, Number(big & 0xffff_ffffn), Number(big >> 32n));
}

/** A uint32 field (protobufjs' fromObject: value >>> 0); omitted when 0. */
function u32FieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

function writeU32Field(buf: Buffer, pos: number, fieldTag: number, value: number): number {
  if (value === 0) return pos;
  buf[pos] = fieldTag;
  return writeVarint(buf, pos + 1, value);
}

function writeBoolField(buf: Buffer, pos: number, fieldTag: number, value: boolean): number {
  buf[pos] = fieldTag;
  buf[pos + 1] = value ? 1 : 0;
  return pos + 2;
}

/** Consistency as protobufjs' fromObject sets it: a name or number of the enum, any other number as is, else 0. */
function consistencyNumber(value: unknown): number {
  if (value === 'STALE' || value === 1) return 1;
  return typeof value === 'number' ? value | 0 : 0;
}

function consistencyFieldSize(n: number): number {
  return n === 0 ? 0 : 1 + int64VarintSize(n);
}

function writeConsistencyField(buf: Buffer, pos: number, fieldTag: number, n: number): number {
  if (n === 0) return pos;
  buf[pos++] = fieldTag;
  return n > 0 ? writeVarint(buf, pos, n) : writeVarint64(buf, pos, n >>> 0, 0xffff_ffff);
}

/** Records: the value's size, then its fields' (a string's length, a 64-bit value). */
function valueSize(v: ValueInput): number {
  const slot = reserveSize();
  let size = 0;
  if (v.string_value != null) size += stringFieldSize(v.string_value, true);
  if (v.int64_value != null) size += longFieldSize(v.int64_value, 'Value.int64_value', true, true);
  if (v.float64_value != null) size += 9;
  if (v.bool_value != null) size += 2;
  if (v.timestamp_ms_value != null) size += longFieldSize(v.timestamp_ms_value, 'Value.timestamp_ms_value', true, true);
  if (v.null_value != null) size += 2;
  sizes[slot] = size;
  return size;
}

function writeValue(buf: Buffer, pos: number, v: ValueInput): number {
  if (v.string_value != null) pos = writeStringField(buf, pos, tag(1, WIRE_LEN), asString(v.string_value), true);
  if (v.int64_value != null) pos = writeLongField(buf, pos, tag(2, WIRE_VARINT), true);
  if (v.float64_value != null) {
    buf[pos] = tag(3, WIRE_I64);
    pos = buf.writeDoubleLE(Number(v.float64_value), pos + 1);
  }
  if (v.bool_value != null) pos = writeBoolField(buf, pos, tag(4, WIRE_VARINT), Boolean(v.bool_value));
  if (v.timestamp_ms_value != null) pos = writeLongField(buf, pos, tag(5, WIRE_VARINT), true);
  if (v.null_value != null) pos = writeBoolField(buf, pos, tag(6, WIRE_VARINT), Boolean(v.null_value));
  return pos;
}

/** The field holding a row, for error messages (built only on failure). */
const rowField = (field: string, index: number): string => (index < 0 ? field : `${field}[${index}]`);

/** Records: the row's size and its keys, then per map entry its size, its key's length and the value's sizes. */
function rowSize(row: RowInput, field: string, index: number): number {
  if (!isObject(row)) throw notAnObject(row, rowField(field, index));
  const slot = reserveSize();
  let size = 0;
  const values = row.values;
  if (values) {
    if (!isObject(values)) throw notAnObject(values, `${rowField(field, index)}.values`);
    const keys = Object.keys(values);
    keyLists[keyListsCount++] = keys;
    for (const key of keys) {
      const value = values[key];
      if (!isObject(value)) throw notAnObject(value, `${rowField(field, index)}.values[${JSON.stringify(key)}]`);
      const entrySlot = reserveSize();
      // Key and value always written, as protobufjs writes map entries.
      const entry = lengthDelimitedSize(stringSize(key)) + lengthDelimitedSize(valueSize(value));
      sizes[entrySlot] = entry;
      size += lengthDelimitedSize(entry);
    }
  }
  sizes[slot] = size;
  return size;
}

function writeRow(buf: Buffer, pos: number, row: RowInput): number {
  const values = row.values;
  if (!values) return pos;
  for (const key of keyLists[keyListsRead++]!) {
    buf[pos] = tag(1, WIRE_LEN);
    pos = writeVarint(buf, pos + 1, nextSize());
    pos = writeStringField(buf, pos, tag(1, WIRE_LEN), key, true);
    buf[pos] = tag(2, WIRE_LEN);
    pos = writeValue(buf, writeVarint(buf, pos + 1, nextSize()), values[key]!);
  }
  return pos;
}

/** A repeated Row field: the array protobufjs' fromObject requires, its rows' sizes recorded. */
function rowsSize(rows: Maybe<readonly RowInput[]>, field: string): number {
  if (!rows) return 0;
  if (!Array.isArray(rows)) throw encodeBug(`${field}: expected an array`);
  let size = 0;
  for (let i = 0; i < rows.length; i++) size += lengthDelimitedSize(rowSize(rows[i], field, i));
  return size;
}

function writeRows(buf: Buffer, pos: number, fieldTag: number, rows: Maybe<readonly RowInput[]>): number {
  if (!rows) return pos;
  for (const row of rows) {
    buf[pos] = fieldTag;
    pos = writeRow(buf, writeVarint(buf, pos + 1, nextSize()), row);
  }
  return pos;
}

function writeRequestSize(w: WriteRequestInput): number {
  expectObject(w, 'BatchRequest.write');
  const slot = reserveSize();
  let size = 0;
  if (w.table != null) size += stringFieldSize(w.table, false);
  if (w.region_id != null) size += stringFieldSize(w.region_id, false);
  size += w.rows instanceof EncodedWriteRows ? w.rows.bytes.length : rowsSize(w.rows, 'WriteRequest.rows');
  if (w.client_id != null) size += stringFieldSize(w.client_id, false);
  if (w.request_id != null) size += longFieldSize(w.request_id, 'WriteRequest.request_id', false, false);
  if (w.expect_version != null) size += longFieldSize(w.expect_version, 'WriteRequest.expect_version', false, true);
  if (w.expect_absent) size += 2;
  if (w.completed_below != null) size += longFieldSize(w.completed_below, 'WriteRequest.completed_below', false, false);
  sizes[slot] = size;
  return size;
}

function writeWriteRequest(buf: Buffer, pos: number, w: WriteRequestInput): number {
  if (w.table != null) pos = writeStringField(buf, pos, tag(1, WIRE_LEN), asString(w.table), false);
  if (w.region_id != null) pos = writeStringField(buf, pos, tag(2, WIRE_LEN), asString(w.region_id), false);
  pos = w.rows instanceof EncodedWriteRows ? pos + w.rows.bytes.copy(buf, pos) : writeRows(buf, pos, tag(3, WIRE_LEN), w.rows);
  if (w.client_id != null) pos = writeStringField(buf, pos, tag(4, WIRE_LEN), asString(w.client_id), false);
  if (w.request_id != null) pos = writeLongField(buf, pos, tag(5, WIRE_VARINT), false);
  if (w.expect_version != null) pos = writeLongField(buf, pos, tag(6, WIRE_VARINT), true);
  if (w.expect_absent) pos = writeBoolField(buf, pos, tag(7, WIRE_VARINT), true);
  if (w.completed_below != null) pos = writeLongField(buf, pos, tag(8, WIRE_VARINT), false);
  return pos;
}

function deleteRequestSize(d: DeleteRequestInput): number {
  expectObject(d, 'BatchRequest.delete');
  const slot = reserveSize();
  let size = 0;
  if (d.table != null) size += stringFieldSize(d.table, false);
  if (d.region_id != null) size += stringFieldSize(d.region_id, false);
  size += rowsSize(d.keys, 'DeleteRequest.keys');
  if (d.client_id != null) size += stringFieldSize(d.client_id, false);
  if (d.request_id != null) size += longFieldSize(d.request_id, 'DeleteRequest.request_id', false, false);
  if (d.completed_below != null) size += longFieldSize(d.completed_below, 'DeleteRequest.completed_below', false, false);
  sizes[slot] = size;
  return size;
}

function writeDeleteRequest(buf: Buffer, pos: number, d: DeleteRequestInput): number {
  if (d.table != null) pos = writeStringField(buf, pos, tag(1, WIRE_LEN), asString(d.table), false);
  if (d.region_id != null) pos = writeStringField(buf, pos, tag(2, WIRE_LEN), asString(d.region_id), false);
  pos = writeRows(buf, pos, tag(3, WIRE_LEN), d.keys);
  if (d.client_id != null) pos = writeStringField(buf, pos, tag(4, WIRE_LEN), asString(d.client_id), false);
  if (d.request_id != null) pos = writeLongField(buf, pos, tag(5, WIRE_VARINT), false);
  if (d.completed_below != null) pos = writeLongField(buf, pos, tag(6, WIRE_VARINT), false);
  return pos;
}

function getRequestSize(g: GetRequestInput): number {
  expectObject(g, 'BatchRequest.get');
  const slot = reserveSize();
  let size = 0;
  if (g.table != null) size += stringFieldSize(g.table, false);
  if (g.key != null) size += lengthDelimitedSize(rowSize(g.key, 'GetRequest.key', -1));
  size += consistencyFieldSize(consistencyNumber(g.consistency));
  sizes[slot] = size;
  return size;
}

function writeGetRequest(buf: Buffer, pos: number, g: GetRequestInput): number {
  if (g.table != null) pos = writeStringField(buf, pos, tag(1, WIRE_LEN), asString(g.table), false);
  if (g.key != null) {
    buf[pos] = tag(2, WIRE_LEN);
    pos = writeRow(buf, writeVarint(buf, pos + 1, nextSize()), g.key);
  }
  return writeConsistencyField(buf, pos, tag(3, WIRE_VARINT), consistencyNumber(g.consistency));
}

function startEncoding(): void {
  sizesCount = 0;
  keyListsCount = 0;
  bigLongsCount = 0;
}

/** After the write pass (allocUnsafe: a byte left unwritten would send stale memory to the peer). */
function finishEncoding(buf: Buffer, pos: number): Buffer {
  if (pos !== buf.length || sizesRead !== sizesCount || keyListsRead !== keyListsCount || bigLongsRead !== bigLongsCount) {
    throw encodeBug(`wrote ${pos} of ${buf.length} bytes, used ${sizesRead} of ${sizesCount} sizes, ${keyListsRead} of ${keyListsCount} maps, ${bigLongsRead} of ${bigLongsCount} longs`);
  }
  // The key lists are dropped after every message, so that no caller's keys stay reachable from here.
  if (sizes.length > RETAINED_SIZES_MAX) sizes.length = 0;
  if (bigLongs.length > RETAINED_SIZES_MAX) bigLongs.length = 0;
  keyLists.length = 0;
  return buf;
}

function startWriting(size: number): Buffer {
  sizesRead = 0;
  keyListsRead = 0;
  bigLongsRead = 0;
  return Buffer.allocUnsafe(size);
}

/**
 * WriteRequest.rows encoded ahead of the request (encodeWriteRows): the repeated field's bytes as
 * they go on the wire. The encoders copy them where the rows go; a request that carries them is
 * the same bytes as one carrying the rows as objects.
 */
export class EncodedWriteRows {
  constructor(
    /** Each row as field 3 of WriteRequest (tag, length, Row). */
    readonly bytes: Buffer,
    readonly count: number,
  ) {}
}

/** A column's map-entry key (field 1 of the entry: tag, length, the name's bytes), by schema. */
const entryKeysBySchema = new WeakMap<TableSchema, readonly Buffer[]>();

function entryKeys(schema: TableSchema): readonly Buffer[] {
  let keys = entryKeysBySchema.get(schema);
  if (!keys) {
    keys = schema.columns.map((c) => {
      const name = Buffer.from(c.name, 'utf8');
      const out = Buffer.alloc(lengthDelimitedSize(name.length));
      out[0] = tag(1, WIRE_LEN);
      name.copy(out, writeVarint(out, 1, name.length));
      return out;
    });
    entryKeysBySchema.set(schema, keys);
  }
  return keys;
}

/** Per row: its size, then each string value's UTF-8 length (encodeWriteRows' size pass for its write pass). */
const rowSizes: number[] = [];

/**
 * Rows (as validateRow returns them) as WriteRequest.rows: byte for byte what the encoders write
 * for `rows.map((r) => toProtoRow(schema, r))` (values.ts) — a map entry per column the row has,
 * in schema order, each value in its column type's field — without making those objects, and
 * without looking up and measuring each column name per row: a writing client's largest costs
 * (docs/performance.md, session 31). A value that does not fit its column type (a row that did
 * not pass validateRow) is a bug of the caller: AssertionError.
 */
export function encodeWriteRows(schema: TableSchema, rows: readonly EngineRow[]): EncodedWriteRows {
  const keys = entryKeys(schema);
  const columns = schema.columns;
  let n = 0;
  let total = 0;
  for (const row of rows) {
    const slot = n++;
    let size = 0;
    for (let c = 0; c < columns.length; c++) {
      const column = columns[c]!;
      if (!(column.name in row)) continue;
      const v = row[column.name] ?? null;
      let bytes = 0;
      if (column.type === 'string' && v !== null) {
        if (typeof v !== 'string') throw badRowValue(column.name, column.type, v);
        bytes = utf8Length(v);
        rowSizes[n++] = bytes;
      }
      size += lengthDelimitedSize(keys[c]!.length + lengthDelimitedSize(valueMessageSize(column.name, column.type, v, bytes)));
    }
    rowSizes[slot] = size;
    total += lengthDelimitedSize(size);
  }
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  let read = 0;
  for (const row of rows) {
    buf[pos] = tag(3, WIRE_LEN);
    pos = writeVarint(buf, pos + 1, rowSizes[read++]!);
    for (let c = 0; c < columns.length; c++) {
      const column = columns[c]!;
      if (!(column.name in row)) continue;
      const v = row[column.name] ?? null;
      const key = keys[c]!;
      const bytes = column.type === 'string' && v !== null ? rowSizes[read++]! : 0;
      const valueSize = valueMessageSize(column.name, column.type, v, bytes);
      buf[pos] = tag(1, WIRE_LEN);
      pos = writeVarint(buf, pos + 1, key.length + lengthDelimitedSize(valueSize));
      pos += key.copy(buf, pos);
      buf[pos] = tag(2, WIRE_LEN);
      pos = writeVarint(buf, pos + 1, valueSize);
      if (v === null) pos = writeBoolField(buf, pos, tag(6, WIRE_VARINT), true);
      else if (column.type === 'string') {
        buf[pos] = tag(1, WIRE_LEN);
        pos = writeStringBytes(buf, writeVarint(buf, pos + 1, bytes), v as string, bytes);
      } else pos = writeScalarValue(buf, pos, column.type, v);
    }
  }
  if (pos !== total || read !== n) throw encodeBug(`encodeWriteRows wrote ${pos} of ${total} bytes, read ${read} of ${n} sizes`);
  if (rowSizes.length > RETAINED_SIZES_MAX) rowSizes.length = 0;
  return new EncodedWriteRows(buf, rows.length);
}

function badRowValue(column: string, type: ColumnType, v: unknown): AssertionError {
  return encodeBug(`encodeWriteRows: column ${column} (${type}) holds ${typeof v === 'string' ? JSON.stringify(v) : String(v)}: not a validated row`);
}

/**
 * The Value message's size for value `v` of a column of `type` (a string's UTF-8 length given as
 * `stringBytes`); a value that does not fit the type is refused (badRowValue).
 */
function valueMessageSize(column: string, type: ColumnType, v: EngineValue, stringBytes: number): number {
  if (v === null) return 2;
  switch (type) {
    case 'string':
      return lengthDelimitedSize(stringBytes);
    case 'int64':
    case 'timestamp_ms':
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badRowValue(column, type, v);
      return 1 + int64VarintSize(v);
    case 'float64':
      if (typeof v !== 'number') throw badRowValue(column, type, v);
      return 9;
    case 'bool':
      if (typeof v !== 'boolean') throw badRowValue(column, type, v);
      return 2;
    default:
      throw badRowValue(column, type, v);
  }
}

/** The Value message of a non-null, non-string value (valueMessageSize checked it), as writeValue writes toProtoValue's. */
function writeScalarValue(buf: Buffer, pos: number, type: ColumnType, v: number | boolean | string): number {
  switch (type) {
    case 'int64':
    case 'timestamp_ms': {
      buf[pos] = tag(type === 'int64' ? 2 : 5, WIRE_VARINT);
      return writeInt64Varint(buf, pos + 1, v as number);
    }
    case 'float64':
      buf[pos] = tag(3, WIRE_I64);
      return buf.writeDoubleLE(v as number, pos + 1);
    default:
      return writeBoolField(buf, pos, tag(4, WIRE_VARINT), v as boolean);
  }
}

export function encodeBatchRequest(req: BatchRequestInput): Buffer {
  expectObject(req, 'BatchRequest');
  startEncoding();
  let size = 0;
  if (req.id != null) size += longFieldSize(req.id, 'BatchRequest.id', false, false);
  if (req.write != null) size += lengthDelimitedSize(writeRequestSize(req.write));
  if (req.delete != null) size += lengthDelimitedSize(deleteRequestSize(req.delete));
  if (req.get != null) size += lengthDelimitedSize(getRequestSize(req.get));
  const timeoutMs = req.timeout_ms == null ? 0 : req.timeout_ms >>> 0;
  size += u32FieldSize(timeoutMs);

  const buf = startWriting(size);
  let pos = 0;
  if (req.id != null) pos = writeLongField(buf, pos, tag(1, WIRE_VARINT), false);
  if (req.write != null) {
    buf[pos] = tag(2, WIRE_LEN);
    pos = writeWriteRequest(buf, writeVarint(buf, pos + 1, nextSize()), req.write);
  }
  if (req.delete != null) {
    buf[pos] = tag(3, WIRE_LEN);
    pos = writeDeleteRequest(buf, writeVarint(buf, pos + 1, nextSize()), req.delete);
  }
  if (req.get != null) {
    buf[pos] = tag(4, WIRE_LEN);
    pos = writeGetRequest(buf, writeVarint(buf, pos + 1, nextSize()), req.get);
  }
  pos = writeU32Field(buf, pos, tag(5, WIRE_VARINT), timeoutMs);
  return finishEncoding(buf, pos);
}

/** Outcome as protobufjs' fromObject sets it: a name or number of the enum, any other number as is, else 0. */
function outcomeNumber(value: unknown): number {
  const byName = typeof value === 'string' ? (OUTCOME_NAMES as readonly string[]).indexOf(value) : -1;
  if (byName >= 0) return byName;
  return typeof value === 'number' ? value | 0 : 0;
}

/** Records, per outcome: its size, then its fields' (string lengths, the version). */
function regionOutcomesSize(list: Maybe<readonly RegionOutcomeInput[]>, field: string): number {
  if (list == null) return 0;
  if (!Array.isArray(list)) throw notAnObject(list, field);
  let size = 0;
  for (const o of list) {
    expectObject(o, field);
    const slot = reserveSize();
    let inner = o.region_id != null ? stringFieldSize(o.region_id, false) : 0;
    if (o.outcome != null) inner += consistencyFieldSize(outcomeNumber(o.outcome));
    if (o.version != null) inner += longFieldSize(o.version, `${field}.version`, false, false);
    if (o.rows != null) inner += u32FieldSize(o.rows >>> 0);
    if (o.grpc_code != null) inner += u32FieldSize(o.grpc_code >>> 0);
    if (o.code != null) inner += stringFieldSize(o.code, false);
    if (o.message != null) inner += stringFieldSize(o.message, false);
    sizes[slot] = inner;
    size += lengthDelimitedSize(inner);
  }
  return size;
}

function writeRegionOutcomes(buf: Buffer, pos: number, fieldTag: number, list: Maybe<readonly RegionOutcomeInput[]>): number {
  if (list == null) return pos;
  for (const o of list) {
    buf[pos] = fieldTag;
    pos = writeVarint(buf, pos + 1, nextSize());
    if (o.region_id != null) pos = writeStringField(buf, pos, tag(1, WIRE_LEN), asString(o.region_id), false);
    if (o.outcome != null) pos = writeConsistencyField(buf, pos, tag(2, WIRE_VARINT), outcomeNumber(o.outcome));
    if (o.version != null) pos = writeLongField(buf, pos, tag(3, WIRE_VARINT), false);
    if (o.rows != null) pos = writeU32Field(buf, pos, tag(4, WIRE_VARINT), o.rows >>> 0);
    if (o.grpc_code != null) pos = writeU32Field(buf, pos, tag(5, WIRE_VARINT), o.grpc_code >>> 0);
    if (o.code != null) pos = writeStringField(buf, pos, tag(6, WIRE_LEN), asString(o.code), false);
    if (o.message != null) pos = writeStringField(buf, pos, tag(7, WIRE_LEN), asString(o.message), false);
  }
  return pos;
}

/** Records: the error's size, its strings' lengths, per detail its entry's size and strings' lengths. */
function batchErrorSize(e: NonNullable<BatchResponseInput['error']>): number {
  expectObject(e, 'BatchResponse.error');
  const slot = reserveSize();
  let size = e.grpc_code != null ? u32FieldSize(e.grpc_code >>> 0) : 0;
  if (e.code != null) size += stringFieldSize(e.code, false);
  if (e.message != null) size += stringFieldSize(e.message, false);
  const details = e.details;
  if (details) {
    expectObject(details, 'BatchError.details');
    const keys = Object.keys(details);
    keyLists[keyListsCount++] = keys;
    for (const key of keys) {
      const entrySlot = reserveSize();
      const entry = lengthDelimitedSize(stringSize(key)) + lengthDelimitedSize(stringSize(asString(details[key])));
      sizes[entrySlot] = entry;
      size += lengthDelimitedSize(entry);
    }
  }
  sizes[slot] = size;
  return size;
}

function writeBatchError(buf: Buffer, pos: number, e: NonNullable<BatchResponseInput['error']>): number {
  if (e.grpc_code != null) pos = writeU32Field(buf, pos, tag(1, WIRE_VARINT), e.grpc_code >>> 0);
  if (e.code != null) pos = writeStringField(buf, pos, tag(2, WIRE_LEN), asString(e.code), false);
  if (e.message != null) pos = writeStringField(buf, pos, tag(3, WIRE_LEN), asString(e.message), false);
  const details = e.details;
  if (details) {
    for (const key of keyLists[keyListsRead++]!) {
      buf[pos] = tag(4, WIRE_LEN);
      pos = writeVarint(buf, pos + 1, nextSize());
      pos = writeStringField(buf, pos, tag(1, WIRE_LEN), key, true);
      pos = writeStringField(buf, pos, tag(2, WIRE_LEN), asString(details[key]), true);
    }
  }
  return pos;
}

function writeResponseSize(write: NonNullable<BatchResponseInput['write']>): number {
  expectObject(write, 'BatchResponse.write');
  const slot = reserveSize();
  let inner = write.version != null ? longFieldSize(write.version, 'WriteResponse.version', false, false) : 0;
  if (write.rows_written != null) inner += u32FieldSize(write.rows_written >>> 0);
  inner += regionOutcomesSize(write.regions, 'WriteResponse.regions');
  sizes[slot] = inner;
  return inner;
}

function writeWriteResponse(buf: Buffer, pos: number, write: NonNullable<BatchResponseInput['write']>): number {
  if (write.version != null) pos = writeLongField(buf, pos, tag(1, WIRE_VARINT), false);
  if (write.rows_written != null) pos = writeU32Field(buf, pos, tag(2, WIRE_VARINT), write.rows_written >>> 0);
  return writeRegionOutcomes(buf, pos, tag(3, WIRE_LEN), write.regions);
}

function deleteResponseSize(del: NonNullable<BatchResponseInput['delete']>): number {
  expectObject(del, 'BatchResponse.delete');
  const slot = reserveSize();
  let inner = del.version != null ? longFieldSize(del.version, 'DeleteResponse.version', false, false) : 0;
  inner += regionOutcomesSize(del.regions, 'DeleteResponse.regions');
  sizes[slot] = inner;
  return inner;
}

function writeDeleteResponse(buf: Buffer, pos: number, del: NonNullable<BatchResponseInput['delete']>): number {
  if (del.version != null) pos = writeLongField(buf, pos, tag(1, WIRE_VARINT), false);
  return writeRegionOutcomes(buf, pos, tag(2, WIRE_LEN), del.regions);
}

function getResponseSize(get: NonNullable<BatchResponseInput['get']>): number {
  expectObject(get, 'BatchResponse.get');
  const slot = reserveSize();
  let inner = get.found ? 2 : 0;
  if (get.row != null) inner += lengthDelimitedSize(rowSize(get.row, 'GetResponse.row', -1));
  if (get.version != null) inner += longFieldSize(get.version, 'GetResponse.version', false, false);
  sizes[slot] = inner;
  return inner;
}

function writeGetResponse(buf: Buffer, pos: number, get: NonNullable<BatchResponseInput['get']>): number {
  if (get.found) pos = writeBoolField(buf, pos, tag(1, WIRE_VARINT), true);
  if (get.row != null) {
    buf[pos] = tag(2, WIRE_LEN);
    pos = writeRow(buf, writeVarint(buf, pos + 1, nextSize()), get.row);
  }
  if (get.version != null) pos = writeLongField(buf, pos, tag(3, WIRE_VARINT), false);
  return pos;
}

export function encodeBatchResponse(res: BatchResponseInput): Buffer {
  expectObject(res, 'BatchResponse');
  startEncoding();
  let size = 0;
  if (res.id != null) size += longFieldSize(res.id, 'BatchResponse.id', false, false);
  const { write, delete: del, get, error } = res;
  if (write != null) size += lengthDelimitedSize(writeResponseSize(write));
  if (del != null) size += lengthDelimitedSize(deleteResponseSize(del));
  if (get != null) size += lengthDelimitedSize(getResponseSize(get));
  if (error != null) size += lengthDelimitedSize(batchErrorSize(error));

  const buf = startWriting(size);
  let pos = 0;
  if (res.id != null) pos = writeLongField(buf, pos, tag(1, WIRE_VARINT), false);
  if (write != null) {
    buf[pos] = tag(2, WIRE_LEN);
    pos = writeWriteResponse(buf, writeVarint(buf, pos + 1, nextSize()), write);
  }
  if (del != null) {
    buf[pos] = tag(3, WIRE_LEN);
    pos = writeDeleteResponse(buf, writeVarint(buf, pos + 1, nextSize()), del);
  }
  if (get != null) {
    buf[pos] = tag(4, WIRE_LEN);
    pos = writeGetResponse(buf, writeVarint(buf, pos + 1, nextSize()), get);
  }
  if (error != null) {
    buf[pos] = tag(5, WIRE_LEN);
    pos = writeBatchError(buf, writeVarint(buf, pos + 1, nextSize()), error);
  }
  return finishEncoding(buf, pos);
}

// ─── Decoding ─────────────────────────────────────────────────────────────────────────────────

/** Decimal strings of 0..127, the one-byte varints (most ids, versions and small values). */
const SMALL_DECIMALS: readonly string[] = Array.from({ length: 0x80 }, (_, i) => String(i));
const TWO_32 = 2 ** 32;

/** The shared reader (wire.ts) with this codec's varint rules and group depth accounting. */
export class BatchWireReader extends WireReader {
  /**
   * Added to every depth a decoder passes to skipField. The decoders count depth as inside a
   * Batch item (BatchRequest/BatchResponse at 0, the operation at 1, rows at 2); a unary Write,
   * Delete or Get message is the operation alone, one level shallower (UNARY_DEPTH_OFFSET).
   */
  constructor(
    buf: Buffer,
    private readonly depthOffset = 0,
  ) {
    super(buf);
  }

  /**
   * A varint read as 32 bits, as protobufjs reads tags, lengths, bools, enums and uint32s: the low
   * 32 bits. protobufjs reads 5 bytes and skips 5 more unread when the 5th continues, so only
   * the 1..5-byte forms and the 10-byte one (a negative int32) mean the same to both.
   */
  u32(end: number, what: string): number {
    const pos = this.pos;
    if (pos < end && this.buf[pos]! < 0x80) {
      this.pos = pos + 1;
      return this.buf[pos]!;
    }
    return this.u32Multibyte(end, what);
  }

  private u32Multibyte(end: number, what: string): number {
    const buf = this.buf;
    const start = this.pos;
    let pos = start;
    let value = 0;
    for (let i = 0; i < 5; i++) {
      if (pos >= end) throw invalid(`${what}: truncated varint at byte ${start}`);
      const b = buf[pos++]!;
      value |= (b & 0x7f) << (7 * i); // the 5th byte's bits past 32 fall off, as in protobufjs
      if (b < 0x80) {
        this.pos = pos;
        return value >>> 0;
      }
    }
    for (let i = 5; i < VARINT_BYTES_MAX; i++) {
      if (pos >= end) throw invalid(`${what}: truncated varint at byte ${start}`);
      const b = buf[pos++]!;
      if (b < 0x80) {
        if (i < VARINT_BYTES_MAX - 1) throw invalid(`${what}: varint at byte ${start} is ${i + 1} bytes long; a 32-bit field takes 1 to 5 bytes, or 10`);
        this.pos = pos;
        return value >>> 0;
      }
    }
    throw invalid(`${what}: varint at byte ${start} is longer than ${VARINT_BYTES_MAX} bytes`);
  }

  bool(end: number, what: string): boolean {
    return this.u32(end, what) !== 0;
  }

  /** An int32 (an enum): the low 32 bits, signed. */
  i32(end: number, what: string): number {
    return this.u32(end, what) | 0;
  }

  /** A uint64 or int64 as protobufjs' Long prints it: bits past 64 dropped, decimal. */
  long(end: number, what: string, signed: boolean): string {
    const pos = this.pos;
    if (pos < end && this.buf[pos]! < 0x80) {
      this.pos = pos + 1;
      return SMALL_DECIMALS[this.buf[pos]!]!;
    }
    return this.longMultibyte(end, what, signed);
  }

  private longMultibyte(end: number, what: string, signed: boolean): string {
    const buf = this.buf;
    const start = this.pos;
    let pos = start;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (pos >= end) throw invalid(`${what}: truncated varint at byte ${start}`);
      const b = buf[pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x7f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) {
        this.pos = pos;
        return longDecimal(lo >>> 0, hi >>> 0, signed);
      }
    }
    throw invalid(`${what}: varint at byte ${start} is longer than ${VARINT_BYTES_MAX} bytes`);
  }

  double(end: number, what: string): number {
    const pos = this.pos;
    if (end - pos < 8) throw invalid(`${what}: truncated 8-byte value at byte ${pos}`);
    this.pos = pos + 8;
    return this.buf.readDoubleLE(pos);
  }

  tag(end: number, message: string): number {
    const at = this.pos;
    this.tagAt = at;
    if (at < end && this.buf[at]! < 0x80 && this.buf[at]! >= 0x08) {
      this.pos = at + 1; // every field of these messages has a one-byte tag
      return this.buf[at]!;
    }
    const value = this.u32(end, `${message} tag`);
    if (value >>> 3 === 0) throw invalid(`${message}: invalid tag ${value} at byte ${at} (field number 0)`);
    return value;
  }

  /** A length prefix, checked against the bytes left in the message; returns the part's end. */
  lengthDelimited(end: number, what: string): number {
    const at = this.pos;
    const length = this.u32(end, what);
    if (length > end - this.pos) throw invalid(`${what}: length ${length} at byte ${at} runs past the end of its message (${end - this.pos} bytes left)`);
    return this.pos + length;
  }

  string(end: number, what: string): string {
    const partEnd = this.lengthDelimited(end, what);
    const start = this.pos;
    this.pos = partEnd;
    return utf8String(this.buf, start, partEnd);
  }

  /**
   * A string that recurs from message to message (a column name, table, region or client id,
   * an error code): the same string object as last time when the bytes match, so it is neither
   * decoded again nor, as an object key, hashed again.
   */
  name(end: number, what: string): string {
    const partEnd = this.lengthDelimited(end, what);
    const start = this.pos;
    this.pos = partEnd;
    const length = partEnd - start;
    if (length === 0 || length > NAME_CACHE_BYTES_MAX) return utf8String(this.buf, start, partEnd);
    const buf = this.buf;
    const slot = (length * 31 + buf[start]! * 7 + buf[start + (length >> 1)]! * 3 + buf[partEnd - 1]!) & (NAME_CACHE_SLOTS - 1);
    const cached = nameCache[slot];
    // A match of every unit with every byte means every byte is ASCII: `cached` is their decoding.
    if (cached !== undefined && cached.length === length) {
      let i = 0;
      while (i < length && cached.charCodeAt(i) === buf[start + i]) i++;
      if (i === length) return cached;
    }
    const decoded = utf8String(buf, start, partEnd);
    nameCache[slot] = decoded;
    return decoded;
  }

  /** A field this decoder does not read: an unknown one is skipped, a known one has the wrong wire type. */
  skipField(fieldTag: number, end: number, message: string, fields: FieldTable, depth: number): void {
    const field = fieldTag >>> 3;
    const wireType = fieldTag & 7;
    const known = fields[field];
    if (known) throw invalid(`${message}.${known[0]} (field ${field}): wire type ${wireType} at byte ${this.tagAt}, the .proto declares ${known[1]}`);
    this.skipValue(field, wireType, end, `${message} unknown field ${field}`, depth + this.depthOffset);
  }

  /** `depth` counts as protobufjs' skipType does: the message's depth, plus one per enclosing group. */
  private skipValue(field: number, wireType: number, end: number, what: string, depth: number): void {
    if (depth > RECURSION_LIMIT) throw invalid(`${what}: groups nested deeper than protobuf's recursion limit (${RECURSION_LIMIT})`);
    switch (wireType) {
      case WIRE_VARINT:
        this.skipVarint(end, what);
        return;
      case WIRE_I64:
        this.skipBytes(8, end, what);
        return;
      case WIRE_I32:
        this.skipBytes(4, end, what);
        return;
      case WIRE_LEN:
        this.pos = this.lengthDelimited(end, what);
        return;
      case WIRE_START_GROUP:
        this.skipGroup(field, end, what, depth);
        return;
      case WIRE_END_GROUP:
        throw invalid(`${what}: end-group tag at byte ${this.tagAt} without a group`);
      default:
        throw invalid(`${what}: invalid wire type ${wireType} at byte ${this.tagAt}`);
    }
  }

  private skipGroup(field: number, end: number, what: string, depth: number): void {
    for (;;) {
      if (this.pos >= end) throw invalid(`${what}: group ${field} is not closed`);
      const fieldTag = this.tag(end, what);
      if ((fieldTag & 7) === WIRE_END_GROUP) {
        if (fieldTag >>> 3 !== field) throw invalid(`${what}: group ${field} closed by end-group ${fieldTag >>> 3} at byte ${this.tagAt}`);
        return;
      }
      this.skipValue(fieldTag >>> 3, fieldTag & 7, end, what, depth + 1);
    }
  }
}

/** Names of up to this many bytes are kept, one per slot of a small table (see BatchWireReader.name). */
const NAME_CACHE_BYTES_MAX = 64;
const NAME_CACHE_SLOTS = 256;
const nameCache: (string | undefined)[] = new Array(NAME_CACHE_SLOTS).fill(undefined);

const fromCharCode = String.fromCharCode;

/**
 * UTF-8 as Buffer decodes it (invalid sequences become U+FFFD), which is what protobufjs does on
 * Node. Short ASCII strings (most tag values) are built in JS: a call into Buffer's decoder costs
 * more than the string.
 */
function utf8String(buf: Buffer, start: number, end: number): string {
  const length = end - start;
  if (length <= 8) {
    let ascii = true;
    for (let i = start; i < end; i++) if (buf[i]! >= 0x80) ascii = false;
    if (ascii) return shortAscii(buf, start, length);
  }
  return buf.toString('utf8', start, end);
}

function shortAscii(b: Buffer, i: number, length: number): string {
  switch (length) {
    case 0:
      return '';
    case 1:
      return fromCharCode(b[i]!);
    case 2:
      return fromCharCode(b[i]!, b[i + 1]!);
    case 3:
      return fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!);
    case 4:
      return fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!);
    case 5:
      return fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!);
    case 6:
      return fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!);
    case 7:
      return fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!);
    default:
      return fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!);
  }
}

/** A safe integer in decimal: as two conversions of small integers below 10^9, cheaper than one of a large one. */
function safeDecimal(n: number): string {
  if (n < 1e9) return String(n);
  let high = Math.floor(n / 1e9);
  let low = n - high * 1e9;
  if (low < 0) {
    // n / 1e9 rounded up to the next integer.
    high--;
    low += 1e9;
  }
  const digits = String(low);
  return String(high) + ZEROS[9 - digits.length] + digits;
}

const ZEROS: readonly string[] = Array.from({ length: 10 }, (_, i) => '0'.repeat(i));

/** 64 bits (two unsigned halves) in decimal; BigInt only beyond ±2^53. */
function longDecimal(lo: number, hi: number, signed: boolean): string {
  if (hi < 0x20_0000) return safeDecimal(hi * TWO_32 + lo);
  if (signed && hi >= 0x8000_0000) {
    // Negative: its magnitude is the two's complement.
    const magnitudeLo = (~lo + 1) >>> 0;
    const magnitudeHi = (~hi + (magnitudeLo === 0 ? 1 : 0)) >>> 0;
    if (magnitudeHi < 0x20_0000) return `-${safeDecimal(magnitudeHi * TWO_32 + magnitudeLo)}`;
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
  }
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString();
}

const VALUE_DEPTH = DEPTH_ROW + 1;

function decodeValue(r: BatchWireReader, end: number): ValueObject {
  // Which fields were seen, one bit per field number (a oneof keeps them all, as protobufjs does).
  let seen = 0;
  let stringValue = '';
  let int64Value = '';
  let float64Value = 0;
  let boolValue = false;
  let timestampMsValue = '';
  let nullValue = false;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'Value');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        stringValue = r.string(end, 'Value.string_value');
        seen |= 1 << 1;
        break;
      case tag(2, WIRE_VARINT):
        int64Value = r.long(end, 'Value.int64_value', true);
        seen |= 1 << 2;
        break;
      case tag(3, WIRE_I64):
        float64Value = r.double(end, 'Value.float64_value');
        seen |= 1 << 3;
        break;
      case tag(4, WIRE_VARINT):
        boolValue = r.bool(end, 'Value.bool_value');
        seen |= 1 << 4;
        break;
      case tag(5, WIRE_VARINT):
        timestampMsValue = r.long(end, 'Value.timestamp_ms_value', true);
        seen |= 1 << 5;
        break;
      case tag(6, WIRE_VARINT):
        nullValue = r.bool(end, 'Value.null_value');
        seen |= 1 << 6;
        break;
      default:
        r.skipField(fieldTag, end, 'Value', VALUE_FIELDS, VALUE_DEPTH);
    }
  }
  switch (seen) {
    case 0:
      return {};
    case 1 << 1:
      return { string_value: stringValue, kind: 'string_value' };
    case 1 << 2:
      return { int64_value: int64Value, kind: 'int64_value' };
    case 1 << 3:
      return { float64_value: float64Value, kind: 'float64_value' };
    case 1 << 4:
      return { bool_value: boolValue, kind: 'bool_value' };
    case 1 << 5:
      return { timestamp_ms_value: timestampMsValue, kind: 'timestamp_ms_value' };
    case 1 << 6:
      return { null_value: nullValue, kind: 'null_value' };
  }
  // Several members of the oneof: all kept in field order, `kind` naming the last (protobufjs).
  const v: ValueObject = {};
  if (seen & (1 << 1)) {
    v.string_value = stringValue;
    v.kind = 'string_value';
  }
  if (seen & (1 << 2)) {
    v.int64_value = int64Value;
    v.kind = 'int64_value';
  }
  if (seen & (1 << 3)) {
    v.float64_value = float64Value;
    v.kind = 'float64_value';
  }
  if (seen & (1 << 4)) {
    v.bool_value = boolValue;
    v.kind = 'bool_value';
  }
  if (seen & (1 << 5)) {
    v.timestamp_ms_value = timestampMsValue;
    v.kind = 'timestamp_ms_value';
  }
  if (seen & (1 << 6)) {
    v.null_value = nullValue;
    v.kind = 'null_value';
  }
  return v;
}

/** A map entry into `into`; a key of "__proto__" becomes an own property, as protobufjs makes it. */
function setEntry<T>(into: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, configurable: true, writable: true });
  else into[key] = value;
}

/** `what` names the field holding the row (error messages). */
function decodeRow(r: BatchWireReader, end: number, what: string): RowObject {
  const at = r.pos;
  const values: Record<string, ValueObject | null> = {};
  let valueless = false;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'Row');
    if (fieldTag !== tag(1, WIRE_LEN)) {
      r.skipField(fieldTag, end, 'Row', ROW_FIELDS, DEPTH_ROW);
      continue;
    }
    const entryEnd = r.lengthDelimited(end, 'Row.values');
    let key = '';
    let value: ValueObject | null = null;
    while (r.pos < entryEnd) {
      const entryTag = r.tag(entryEnd, 'Row.values entry');
      if (entryTag === tag(1, WIRE_LEN)) key = r.name(entryEnd, 'Row.values key');
      else if (entryTag === tag(2, WIRE_LEN)) value = decodeValue(r, r.lengthDelimited(entryEnd, 'Row.values value'));
      else r.skipField(entryTag, entryEnd, 'Row.values entry', MAP_ENTRY_FIELDS, DEPTH_ROW);
    }
    setEntry(values, key, value);
    if (!value) valueless = true;
  }
  // protobufjs stores null for an entry without a value (in the key's place, until a later entry
  // of the key replaces it), and fails converting a null that is left.
  if (valueless) {
    for (const key of Object.keys(values)) {
      if (values[key] === null) throw invalid(`${what} (Row at byte ${at}): values[${JSON.stringify(key)}] is a map entry without a value`);
    }
  }
  return { values: values as Record<string, ValueObject> };
}

function decodeWriteRequest(r: BatchWireReader, end: number): WriteRequestObject {
  const rows: RowObject[] = [];
  let table = '';
  let regionId = '';
  let clientId = '';
  let requestId = '0';
  let expectVersion: string | undefined;
  let expectAbsent = false;
  let completedBelow = '0';
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'WriteRequest');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        table = r.name(end, 'WriteRequest.table');
        break;
      case tag(2, WIRE_LEN):
        regionId = r.name(end, 'WriteRequest.region_id');
        break;
      case tag(3, WIRE_LEN):
        rows.push(decodeRow(r, r.lengthDelimited(end, 'WriteRequest.rows'), 'WriteRequest.rows'));
        break;
      case tag(4, WIRE_LEN):
        clientId = r.name(end, 'WriteRequest.client_id');
        break;
      case tag(5, WIRE_VARINT):
        requestId = r.long(end, 'WriteRequest.request_id', false);
        break;
      case tag(6, WIRE_VARINT):
        expectVersion = r.long(end, 'WriteRequest.expect_version', false);
        break;
      case tag(7, WIRE_VARINT):
        expectAbsent = r.bool(end, 'WriteRequest.expect_absent');
        break;
      case tag(8, WIRE_VARINT):
        completedBelow = r.long(end, 'WriteRequest.completed_below', false);
        break;
      default:
        r.skipField(fieldTag, end, 'WriteRequest', WRITE_REQUEST_FIELDS, DEPTH_OPERATION);
    }
  }
  const write: WriteRequestObject = { rows, table, region_id: regionId, client_id: clientId, request_id: requestId, expect_absent: expectAbsent, completed_below: completedBelow };
  if (expectVersion !== undefined) {
    write.expect_version = expectVersion;
    write._expect_version = 'expect_version';
  }
  return write;
}

function decodeDeleteRequest(r: BatchWireReader, end: number): DeleteRequestObject {
  const keys: RowObject[] = [];
  let table = '';
  let regionId = '';
  let clientId = '';
  let requestId = '0';
  let completedBelow = '0';
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'DeleteRequest');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        table = r.name(end, 'DeleteRequest.table');
        break;
      case tag(2, WIRE_LEN):
        regionId = r.name(end, 'DeleteRequest.region_id');
        break;
      case tag(3, WIRE_LEN):
        keys.push(decodeRow(r, r.lengthDelimited(end, 'DeleteRequest.keys'), 'DeleteRequest.keys'));
        break;
      case tag(4, WIRE_LEN):
        clientId = r.name(end, 'DeleteRequest.client_id');
        break;
      case tag(5, WIRE_VARINT):
        requestId = r.long(end, 'DeleteRequest.request_id', false);
        break;
      case tag(6, WIRE_VARINT):
        completedBelow = r.long(end, 'DeleteRequest.completed_below', false);
        break;
      default:
        r.skipField(fieldTag, end, 'DeleteRequest', DELETE_REQUEST_FIELDS, DEPTH_OPERATION);
    }
  }
  return { keys, table, region_id: regionId, client_id: clientId, request_id: requestId, completed_below: completedBelow };
}

function decodeGetRequest(r: BatchWireReader, end: number): GetRequestObject {
  let table = '';
  let key: RowObject | null = null;
  let consistency = 0;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'GetRequest');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        table = r.name(end, 'GetRequest.table');
        break;
      case tag(2, WIRE_LEN):
        key = decodeRow(r, r.lengthDelimited(end, 'GetRequest.key'), 'GetRequest.key');
        break;
      case tag(3, WIRE_VARINT):
        consistency = r.i32(end, 'GetRequest.consistency');
        break;
      default:
        r.skipField(fieldTag, end, 'GetRequest', GET_REQUEST_FIELDS, DEPTH_OPERATION);
    }
  }
  return { table, key, consistency: CONSISTENCY_NAMES[consistency] ?? consistency };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeBatchRequest(bytes: Uint8Array): BatchRequestObject {
  const r = new BatchWireReader(asBuffer(bytes));
  const end = r.buf.length;
  let id = '0';
  let write: WriteRequestObject | undefined;
  let del: DeleteRequestObject | undefined;
  let get: GetRequestObject | undefined;
  let timeoutMs = 0;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'BatchRequest');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        id = r.long(end, 'BatchRequest.id', false);
        break;
      case tag(2, WIRE_LEN):
        write = decodeWriteRequest(r, r.lengthDelimited(end, 'BatchRequest.write'));
        break;
      case tag(3, WIRE_LEN):
        del = decodeDeleteRequest(r, r.lengthDelimited(end, 'BatchRequest.delete'));
        break;
      case tag(4, WIRE_LEN):
        get = decodeGetRequest(r, r.lengthDelimited(end, 'BatchRequest.get'));
        break;
      case tag(5, WIRE_VARINT):
        timeoutMs = r.u32(end, 'BatchRequest.timeout_ms');
        break;
      default:
        r.skipField(fieldTag, end, 'BatchRequest', BATCH_REQUEST_FIELDS, DEPTH_BATCH);
    }
  }
  const req: BatchRequestObject = { id, timeout_ms: timeoutMs };
  // Every member seen is kept; the oneof names the last in field order (protobufjs).
  if (write) {
    req.write = write;
    req.request = 'write';
  }
  if (del) {
    req.delete = del;
    req.request = 'delete';
  }
  if (get) {
    req.get = get;
    req.request = 'get';
  }
  return req;
}

/** One RegionOutcome of a WriteResponse or DeleteResponse (message depth 2, as a row). */
function decodeRegionOutcome(r: BatchWireReader, end: number, what: string): RegionOutcomeObject {
  const o: RegionOutcomeObject = { region_id: '', outcome: OUTCOME_NAMES[0]!, version: '0', rows: 0, grpc_code: 0, code: '', message: '' };
  while (r.pos < end) {
    const fieldTag = r.tag(end, what);
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        o.region_id = r.name(end, `${what}.region_id`);
        break;
      case tag(2, WIRE_VARINT): {
        const n = r.i32(end, `${what}.outcome`);
        o.outcome = OUTCOME_NAMES[n] ?? n;
        break;
      }
      case tag(3, WIRE_VARINT):
        o.version = r.long(end, `${what}.version`, false);
        break;
      case tag(4, WIRE_VARINT):
        o.rows = r.u32(end, `${what}.rows`);
        break;
      case tag(5, WIRE_VARINT):
        o.grpc_code = r.u32(end, `${what}.grpc_code`);
        break;
      case tag(6, WIRE_LEN):
        o.code = r.name(end, `${what}.code`);
        break;
      case tag(7, WIRE_LEN):
        o.message = r.string(end, `${what}.message`);
        break;
      default:
        r.skipField(fieldTag, end, what, REGION_OUTCOME_FIELDS, DEPTH_ROW);
    }
  }
  return o;
}

function decodeWriteResponse(r: BatchWireReader, end: number): WriteResponseObject {
  let version = '0';
  let rowsWritten = 0;
  const regions: RegionOutcomeObject[] = [];
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'WriteResponse');
    if (fieldTag === tag(1, WIRE_VARINT)) version = r.long(end, 'WriteResponse.version', false);
    else if (fieldTag === tag(2, WIRE_VARINT)) rowsWritten = r.u32(end, 'WriteResponse.rows_written');
    else if (fieldTag === tag(3, WIRE_LEN)) regions.push(decodeRegionOutcome(r, r.lengthDelimited(end, 'WriteResponse.regions'), 'RegionOutcome'));
    else r.skipField(fieldTag, end, 'WriteResponse', WRITE_RESPONSE_FIELDS, DEPTH_OPERATION);
  }
  return { regions, version, rows_written: rowsWritten }; // protobufjs' key order: repeated fields first
}

function decodeDeleteResponse(r: BatchWireReader, end: number): DeleteResponseObject {
  let version = '0';
  const regions: RegionOutcomeObject[] = [];
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'DeleteResponse');
    if (fieldTag === tag(1, WIRE_VARINT)) version = r.long(end, 'DeleteResponse.version', false);
    else if (fieldTag === tag(2, WIRE_LEN)) regions.push(decodeRegionOutcome(r, r.lengthDelimited(end, 'DeleteResponse.regions'), 'RegionOutcome'));
    else r.skipField(fieldTag, end, 'DeleteResponse', DELETE_RESPONSE_FIELDS, DEPTH_OPERATION);
  }
  return { regions, version };
}

function decodeGetResponse(r: BatchWireReader, end: number): GetResponseObject {
  let found = false;
  let row: RowObject | null = null;
  let version = '0';
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'GetResponse');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        found = r.bool(end, 'GetResponse.found');
        break;
      case tag(2, WIRE_LEN):
        row = decodeRow(r, r.lengthDelimited(end, 'GetResponse.row'), 'GetResponse.row');
        break;
      case tag(3, WIRE_VARINT):
        version = r.long(end, 'GetResponse.version', false);
        break;
      default:
        r.skipField(fieldTag, end, 'GetResponse', GET_RESPONSE_FIELDS, DEPTH_OPERATION);
    }
  }
  return { found, row, version };
}

function decodeBatchError(r: BatchWireReader, end: number): BatchErrorObject {
  const details: Record<string, string> = {};
  let grpcCode = 0;
  let code = '';
  let message = '';
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'BatchError');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        grpcCode = r.u32(end, 'BatchError.grpc_code');
        break;
      case tag(2, WIRE_LEN):
        code = r.name(end, 'BatchError.code');
        break;
      case tag(3, WIRE_LEN):
        message = r.string(end, 'BatchError.message');
        break;
      case tag(4, WIRE_LEN): {
        const entryEnd = r.lengthDelimited(end, 'BatchError.details');
        let key = '';
        let value = '';
        while (r.pos < entryEnd) {
          const entryTag = r.tag(entryEnd, 'BatchError.details entry');
          if (entryTag === tag(1, WIRE_LEN)) key = r.name(entryEnd, 'BatchError.details key');
          else if (entryTag === tag(2, WIRE_LEN)) value = r.string(entryEnd, 'BatchError.details value');
          else r.skipField(entryTag, entryEnd, 'BatchError.details entry', MAP_ENTRY_FIELDS, DEPTH_OPERATION);
        }
        setEntry(details, key, value);
        break;
      }
      default:
        r.skipField(fieldTag, end, 'BatchError', BATCH_ERROR_FIELDS, DEPTH_OPERATION);
    }
  }
  return { details, grpc_code: grpcCode, code, message };
}

export function decodeBatchResponse(bytes: Uint8Array): BatchResponseObject {
  const r = new BatchWireReader(asBuffer(bytes));
  const end = r.buf.length;
  let id = '0';
  let write: WriteResponseObject | undefined;
  let del: DeleteResponseObject | undefined;
  let get: GetResponseObject | undefined;
  let error: BatchErrorObject | undefined;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'BatchResponse');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        id = r.long(end, 'BatchResponse.id', false);
        break;
      case tag(2, WIRE_LEN):
        write = decodeWriteResponse(r, r.lengthDelimited(end, 'BatchResponse.write'));
        break;
      case tag(3, WIRE_LEN):
        del = decodeDeleteResponse(r, r.lengthDelimited(end, 'BatchResponse.delete'));
        break;
      case tag(4, WIRE_LEN):
        get = decodeGetResponse(r, r.lengthDelimited(end, 'BatchResponse.get'));
        break;
      case tag(5, WIRE_LEN):
        error = decodeBatchError(r, r.lengthDelimited(end, 'BatchResponse.error'));
        break;
      default:
        r.skipField(fieldTag, end, 'BatchResponse', BATCH_RESPONSE_FIELDS, DEPTH_BATCH);
    }
  }
  const res: BatchResponseObject = { id };
  // Every member seen is kept; the oneof names the last in field order (protobufjs).
  if (write) {
    res.write = write;
    res.response = 'write';
  }
  if (del) {
    res.delete = del;
    res.response = 'delete';
  }
  if (get) {
    res.get = get;
    res.response = 'get';
  }
  if (error) {
    res.error = error;
    res.response = 'error';
  }
  return res;
}

// ─── Unary Write, Delete and Get ──────────────────────────────────────────────────────────────
// The same messages as a Batch item's operation and answer, sent alone as a unary call's request
// and response: the same encoders and decoders, so the same objects and bytes as proto-loader
// (test/unit/batch-wire.test.ts holds both to it, as for Batch). A top-level message is one level
// shallower than inside a Batch item, which protobufjs' recursion limit counts.

const UNARY_DEPTH_OFFSET = -1;

function unaryReader(bytes: Uint8Array): BatchWireReader {
  return new BatchWireReader(asBuffer(bytes), UNARY_DEPTH_OFFSET);
}

/** A message whose size function reserved its own slot first (its length, which a top-level message does not carry). */
function encodeMessage<T>(value: T, sizeOf: (v: T) => number, write: (buf: Buffer, pos: number, v: T) => number): Buffer {
  startEncoding();
  const buf = startWriting(sizeOf(value));
  nextSize();
  return finishEncoding(buf, write(buf, 0, value));
}

export function encodeUnaryWriteRequest(w: WriteRequestInput): Buffer {
  return encodeMessage(w, writeRequestSize, writeWriteRequest);
}

export function decodeUnaryWriteRequest(bytes: Uint8Array): WriteRequestObject {
  const r = unaryReader(bytes);
  return decodeWriteRequest(r, r.buf.length);
}

export function encodeUnaryDeleteRequest(d: DeleteRequestInput): Buffer {
  return encodeMessage(d, deleteRequestSize, writeDeleteRequest);
}

export function decodeUnaryDeleteRequest(bytes: Uint8Array): DeleteRequestObject {
  const r = unaryReader(bytes);
  return decodeDeleteRequest(r, r.buf.length);
}

export function encodeUnaryGetRequest(g: GetRequestInput): Buffer {
  return encodeMessage(g, getRequestSize, writeGetRequest);
}

export function decodeUnaryGetRequest(bytes: Uint8Array): GetRequestObject {
  const r = unaryReader(bytes);
  return decodeGetRequest(r, r.buf.length);
}

export function encodeUnaryWriteResponse(w: NonNullable<BatchResponseInput['write']>): Buffer {
  return encodeMessage(w, writeResponseSize, writeWriteResponse);
}

export function decodeUnaryWriteResponse(bytes: Uint8Array): WriteResponseObject {
  const r = unaryReader(bytes);
  return decodeWriteResponse(r, r.buf.length);
}

export function encodeUnaryDeleteResponse(d: NonNullable<BatchResponseInput['delete']>): Buffer {
  return encodeMessage(d, deleteResponseSize, writeDeleteResponse);
}

export function decodeUnaryDeleteResponse(bytes: Uint8Array): DeleteResponseObject {
  const r = unaryReader(bytes);
  return decodeDeleteResponse(r, r.buf.length);
}

export function encodeUnaryGetResponse(g: NonNullable<BatchResponseInput['get']>): Buffer {
  return encodeMessage(g, getResponseSize, writeGetResponse);
}

export function decodeUnaryGetResponse(bytes: Uint8Array): GetResponseObject {
  const r = unaryReader(bytes);
  return decodeGetResponse(r, r.buf.length);
}

// ─── The service ──────────────────────────────────────────────────────────────────────────────

let databaseDefinition: grpc.ServiceDefinition | undefined;

/**
 * Database as database.proto declares it, with Batch and the unary Write, Delete and Get
 * serialized by this codec instead of proto-loader's reflection (the same bytes on the wire; the
 * unary path's writes, docs/performance.md round 6); the other methods (DDL, Scan, routes) keep
 * proto-loader's serializers. Both ends use it: the client library's datanode connections (makeClient), and the
 * datanode's server (registered through startGrpcServer, so the security guard and
 * tolerantService wrap Batch as they wrap every method).
 */
export function databaseService(): grpc.ServiceDefinition {
  if (!databaseDefinition) {
    const service = loadProtos().services.Database.service;
    const batch: grpc.MethodDefinition<BatchRequestObject, BatchResponseObject> = {
      ...service['Batch']!,
      requestSerialize: encodeBatchRequest,
      requestDeserialize: decodeBatchRequest,
      responseSerialize: encodeBatchResponse,
      responseDeserialize: decodeBatchResponse,
    };
    const own = <Req, Res>(
      name: 'Write' | 'Delete' | 'Get',
      requestSerialize: (r: Req) => Buffer,
      requestDeserialize: (b: Buffer) => unknown,
      responseSerialize: (r: Res) => Buffer,
      responseDeserialize: (b: Buffer) => unknown,
    ) => ({ ...service[name]!, requestSerialize, requestDeserialize, responseSerialize, responseDeserialize }) as grpc.MethodDefinition<unknown, unknown>;
    databaseDefinition = {
      ...service,
      Batch: batch,
      Write: own('Write', encodeUnaryWriteRequest, decodeUnaryWriteRequest, encodeUnaryWriteResponse, decodeUnaryWriteResponse),
      Delete: own('Delete', encodeUnaryDeleteRequest, decodeUnaryDeleteRequest, encodeUnaryDeleteResponse, decodeUnaryDeleteResponse),
      Get: own('Get', encodeUnaryGetRequest, decodeUnaryGetRequest, encodeUnaryGetResponse, decodeUnaryGetResponse),
    };
  }
  return databaseDefinition;
}
