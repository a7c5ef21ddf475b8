// Protobuf wire-format primitives shared by the hand-written codecs of the two hot streams
// (raft-wire.ts for RaftTransport.Stream, batch-wire.ts for Database.Batch). What differs between
// them stays in each: how a varint becomes a number (raft-wire: safe integers, strict; batch-wire:
// exactly as protobufjs reads it, quirks included) and how deep unknown groups may nest.
import { ErrorCode, RegionDbError } from '../common/errors.js';

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_START_GROUP = 3;
export const WIRE_END_GROUP = 4;
export const WIRE_I32 = 5;

export const VARINT_BYTES_MAX = 10;

/** Field names and wire types as the .proto declares them, index = field number (error messages). */
export type FieldTable = readonly (readonly [name: string, wireType: number])[];

/**
 * A FieldTable spelled with the field names of a generated message type (src/rpc/generated):
 * `table satisfies FieldsOf<X__Output>` fails to compile when the protos rename or drop a field
 * the codec still names.
 */
export type FieldsOf<T> = readonly (readonly [name: '' | Exclude<keyof T & string, `_${string}`>, wireType: number])[];

export const tag = (field: number, wireType: number): number => (field << 3) | wireType;

/** Bytes of a varint holding a non-negative safe integer. */
export function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x20_0000) return 3;
  if (value < 0x1000_0000) return 4;
  if (value < 2 ** 35) return 5;
  if (value < 2 ** 42) return 6;
  if (value < 2 ** 49) return 7;
  return 8; // value < 2^53 < 2^56
}

/** A length-delimited field with a one-byte tag: tag, length prefix, payload. */
export function lengthDelimitedSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/** Writes a non-negative safe integer as a varint at `pos`; returns the position after it. */
export function writeVarint(buf: Buffer, pos: number, value: number): number {
  while (value > 0x7fff_ffff) {
    buf[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  while (value > 0x7f) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos++] = value;
  return pos;
}

/** Malformed input from the network. */
export function invalid(message: string): RegionDbError {
  return new RegionDbError(ErrorCode.InvalidArgument, message);
}

/** Reads one buffer; every read is bounded by the end of the message being decoded. */
export class WireReader {
  pos = 0;
  /** Where the last tag started (error messages). */
  tagAt = 0;
  constructor(readonly buf: Buffer) {}

  /** A varint of any value (an unknown field's), skipped. */
  protected skipVarint(end: number, what: string): void {
    const start = this.pos;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (this.pos >= end) throw invalid(`${what}: truncated varint at byte ${start}`);
      if (this.buf[this.pos++]! < 0x80) return;
    }
    throw invalid(`${what}: varint at byte ${start} is longer than ${VARINT_BYTES_MAX} bytes`);
  }

  protected skipBytes(n: number, end: number, what: string): void {
    if (n > end - this.pos) throw invalid(`${what}: truncated ${n}-byte value at byte ${this.pos}`);
    this.pos += n;
  }
}
