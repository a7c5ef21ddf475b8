// Format version 2 of write and delete commands (command.ts): a compact binary body instead of
// JSON, because these are the commands every replica decodes once per write (docs/performance.md,
// round 3). The layout after the two header bytes [version 2][kind]:
//
//   write   flags u8 (bit 0: expectVersion follows, bit 1: expectAbsent, bit 2: completedBelow
//           follows; other bits zero)
//           clientId (string), requestId (uint), [completedBelow (uint)], [expectVersion (uint)],
//           rows (list of value lists)
//   delete  flags u8 (bit 2 as for a write; other bits zero), clientId, requestId,
//           [completedBelow (uint)], keys (list of value lists)
//
// completedBelow (bit 2) is the client's session mark (docs/raft-rules.md R19): not part of what
// the request asks, so the dedup hash is taken over the bytes without it (command.ts
// dedupIdentity). A build from before bit 2 refuses a command carrying it (unknown flags,
// CORRUPTION): clusters of mixed versions across this change are not supported.
//
//   uint    unsigned LEB128 varint, at most 8 bytes, value ≤ 2^53 − 1 (a JS safe integer)
//   string  uint byte length, then UTF-8 (well-formed; checked on decode)
//   list    uint count, then the items
//   value   a tag byte, then its payload — the value's own type, not the column's, so decoding
//           needs no schema and every JS value of a row comes back exactly (-0, NaN and ±Infinity
//           included, which JSON could not carry; validation keeps them out of real rows):
//             0 NULL   1 false   2 true
//             3 a non-negative safe integer (uint)      4 a negative safe integer (uint of −v)
//             5 any other number: float64, 8 bytes little-endian
//             6 string
//
// Decoding checks every length against the bytes left, and every tag, flag and bound: damaged
// bytes throw CORRUPTION, never a TypeError, an out-of-range read or a wrong value.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Value } from './schema.js';

const TAG_NULL = 0;
const TAG_FALSE = 1;
const TAG_TRUE = 2;
const TAG_UINT = 3;
const TAG_NEG_INT = 4;
const TAG_FLOAT64 = 5;
const TAG_STRING = 6;

export const WRITE_FLAG_EXPECT_VERSION = 1;
export const WRITE_FLAG_EXPECT_ABSENT = 2;
/** Writes and deletes: the client's completedBelow follows the request id. */
export const COMMAND_FLAG_COMPLETED_BELOW = 4;

/** A safe integer needs at most 8 LEB128 bytes (53 bits / 7). */
const VARINT_BYTES_MAX = 8;
/** Strings this short are copied byte by byte when ASCII (cheaper than a native call). */
const SHORT_STRING_CHARS = 64;

const utf8Strict = new TextDecoder('utf-8', { fatal: true });
/** String.prototype.isWellFormed (ES2024; Node ≥ 20), not yet in the ES2022 lib typings. */
type WellFormedCheck = string & { isWellFormed(): boolean };

function corrupt(why: string, subject = 'region command'): RegionDbError {
  return new RegionDbError(ErrorCode.Corruption, `${subject} is malformed: ${why}`);
}

/**
 * Appends to one growing buffer. Encoding is synchronous, so one scratch buffer serves every
 * command; finish() returns a copy of the used part (the raft log keeps it).
 */
export class BinaryWriter {
  private static scratch = Buffer.allocUnsafe(4096);
  private buf: Buffer;
  private pos = 0;
  private view: DataView;

  constructor() {
    this.buf = BinaryWriter.scratch;
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  private ensure(more: number): void {
    if (this.pos + more <= this.buf.byteLength) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.byteLength * 2, this.pos + more));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
    this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
    BinaryWriter.scratch = grown; // keep the larger buffer for the next command
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  uint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RegionDbError(ErrorCode.InvalidArgument, `command field ${v} is not a non-negative safe integer`);
    this.ensure(VARINT_BYTES_MAX);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }

  string(s: string): void {
    if (s.length <= SHORT_STRING_CHARS) {
      this.ensure(1 + s.length);
      const start = this.pos;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        this.buf[start + 1 + i] = c;
      }
      if (i === s.length) {
        this.buf[start] = s.length; // < 0x80: a one-byte varint
        this.pos = start + 1 + s.length;
        return;
      }
    }
    // UTF-8 cannot carry a lone surrogate (it would be written as U+FFFD: a silently different
    // value). Strings from protobuf are always well formed; anything else is a caller's bug.
    if (!(s as WellFormedCheck).isWellFormed()) throw new RegionDbError(ErrorCode.InvalidArgument, 'a string with a lone UTF-16 surrogate has no UTF-8 encoding');
    const bytes = Buffer.byteLength(s);
    this.uint(bytes);
    this.ensure(bytes);
    this.pos += this.buf.write(s, this.pos, bytes, 'utf8');
  }

  value(v: Value): void {
    if (v === null) {
      this.byte(TAG_NULL);
    } else if (typeof v === 'boolean') {
      this.byte(v ? TAG_TRUE : TAG_FALSE);
    } else if (typeof v === 'string') {
      this.byte(TAG_STRING);
      this.string(v);
    } else if (typeof v === 'number') {
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
        this.byte(v >= 0 ? TAG_UINT : TAG_NEG_INT);
        this.uint(v >= 0 ? v : -v);
      } else {
        this.ensure(9);
        this.buf[this.pos++] = TAG_FLOAT64;
        this.view.setFloat64(this.pos, v, true);
        this.pos += 8;
      }
    } else {
      throw new RegionDbError(ErrorCode.InvalidArgument, `a ${typeof v} is not a column value`);
    }
  }

  values(list: readonly (readonly Value[])[]): void {
    this.uint(list.length);
    for (const values of list) this.valueList(values);
  }

  /** A list of values: uint count, then the values. */
  valueList(values: readonly Value[]): void {
    this.uint(values.length);
    for (const v of values) this.value(v);
  }

  /** valueList of `values[at[0]], values[at[1]], …` (a missing one as NULL), without making that list. */
  valueListAt(values: readonly Value[], at: readonly number[]): void {
    this.uint(at.length);
    for (let i = 0; i < at.length; i++) this.value(values[at[i]!] ?? null);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.pos;
  }

  /** Forgets what was written: the next bytes start a new encoding in the same buffer. */
  reset(): void {
    this.pos = 0;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    return out;
  }
}

/** Reads what BinaryWriter wrote, validating as it goes. */
function label(what: string, tail: string, index: number): string {
  return index >= 0 ? `${what}[${index}]${tail}` : `${what}${tail}`;
}

export class BinaryReader {
  private pos: number;
  /** Made on first use: an SST value (sst-value.ts) is a reader of its own, and may need neither. */
  private view: DataView | undefined = undefined;
  /** The same bytes as a Buffer, made on first use: toString('latin1') makes an ASCII string natively, in one allocation. */
  private latin1: Buffer | undefined = undefined;

  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    /** What the bytes are, for CORRUPTION messages ("<subject> is malformed: …"). */
    private readonly subject = 'region command',
  ) {
    this.pos = start;
  }

  /** Where the next read starts. */
  get offset(): number {
    return this.pos;
  }

  // What a read is of, for a CORRUPTION message: `what`, then `[index]` if index ≥ 0, then
  // `tail` (" length", " count"). Composed only when the message is made: a decode reads several
  // of these per row, and a label string made for each was garbage on every replica.

  private need(n: number, what: string, tail = '', index = -1): void {
    if (this.pos + n > this.bytes.byteLength) throw this.corrupt(`truncated ${label(what, tail, index)} at byte ${this.pos} of ${this.bytes.byteLength}`);
  }

  byte(what: string, tail = '', index = -1): number {
    this.need(1, what, tail, index);
    return this.bytes[this.pos++]!;
  }

  uint(what: string, tail = '', index = -1): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      const b = this.byte(what, tail, index);
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(v)) throw this.corrupt(`${label(what, tail, index)} ${v} exceeds 2^53 − 1`);
        return v;
      }
      scale *= 0x80;
    }
    throw this.corrupt(`${label(what, tail, index)} is a varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  string(what: string): string {
    const n = this.uint(what, ' length');
    this.need(n, what);
    const start = this.pos;
    this.pos += n;
    if (n <= SHORT_STRING_CHARS) {
      // ASCII (every byte below 0x80) is its own UTF-8 and Latin-1: one char per byte. Building
      // the string a char at a time made a new string per char (over 500 bytes of garbage for a
      // 32-char value); the native Latin-1 decoder makes just the result.
      let i = start;
      while (i < this.pos && this.bytes[i]! < 0x80) i++;
      if (i === this.pos) {
        this.latin1 ??= Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
        return this.latin1.toString('latin1', start, this.pos);
      }
    }
    try {
      return utf8Strict.decode(this.bytes.subarray(start, this.pos));
    } catch {
      throw this.corrupt(`${what} is not valid UTF-8`);
    }
  }

  value(): Value {
    const tag = this.byte('value tag');
    switch (tag) {
      case TAG_NULL:
        return null;
      case TAG_FALSE:
        return false;
      case TAG_TRUE:
        return true;
      case TAG_UINT:
        return this.uint('integer value');
      case TAG_NEG_INT: {
        const v = this.uint('integer value');
        if (v === 0) throw this.corrupt('negative integer zero'); // -0 is written as a float64
        return -v;
      }
      case TAG_FLOAT64: {
        this.need(8, 'float64 value');
        this.view ??= new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
        const v = this.view.getFloat64(this.pos, true);
        this.pos += 8;
        return v;
      }
      case TAG_STRING:
        return this.string('string value');
      default:
        throw this.corrupt(`unknown value tag ${tag} at byte ${this.pos - 1}`);
    }
  }

  values(what: string): Value[][] {
    // Every list and every value takes at least one byte: a count beyond the bytes left is
    // damage, and refusing it bounds what decoding allocates by the entry's own size.
    const count = this.uint(what, ' count');
    if (count > this.remaining()) throw this.corrupt(`${count} ${what} in ${this.remaining()} bytes`);
    const out: Value[][] = new Array(count);
    for (let r = 0; r < count; r++) {
      const n = this.uint(what, ' length', r);
      if (n > this.remaining()) throw this.corrupt(`${n} values in ${this.remaining()} bytes`);
      const values: Value[] = new Array(n);
      for (let i = 0; i < n; i++) values[i] = this.value();
      out[r] = values;
    }
    return out;
  }

  /** What BinaryWriter.valueList wrote. */
  valueList(what: string): Value[] {
    const n = this.uint(what, ' count');
    if (n > this.remaining()) throw this.corrupt(`${n} ${what} in ${this.remaining()} bytes`);
    const values: Value[] = new Array(n);
    for (let i = 0; i < n; i++) values[i] = this.value();
    return values;
  }

  private corrupt(why: string): RegionDbError {
    return corrupt(why, this.subject);
  }

  remaining(): number {
    return this.bytes.byteLength - this.pos;
  }

  end(): void {
    if (this.pos !== this.bytes.byteLength) throw this.corrupt(`${this.bytes.byteLength - this.pos} trailing bytes`);
  }
}
