// Hand-built protobuf bytes for the wire-codec tests (batch-wire, raft-wire, meta-wire): fields written one
// by one, so a test can say exactly which malformed or unusual encoding it feeds a decoder, and
// the byte mutations their fuzz cases share.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { SeededRand } from '../../src/common/rand.js';
import { loaderOptions, protoRoot } from '../../src/rpc/proto.js';

/** A base-128 varint (the value must be in [0, 2^64)). */
export function varint(value: bigint): number[] {
  const out: number[] = [];
  while (value >= 0x80n) {
    out.push(Number(value & 0x7fn) | 0x80);
    value >>= 7n;
  }
  out.push(Number(value));
  return out;
}

/** A field's tag: field number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
export const key = (field: number, wireType: number): number[] => varint(BigInt((field << 3) | wireType));
/** A length-delimited field. */
export const len = (field: number, body: number[]): number[] => [...key(field, 2), ...varint(BigInt(body.length)), ...body];
/** A varint field; a negative value is written as protobuf writes an int64: 10 bytes, two's complement. */
export const num = (field: number, value: number | bigint): number[] => [...key(field, 0), ...varint(BigInt.asUintN(64, BigInt(value)))];
/** A string field (UTF-8). */
export const str = (field: number, s: string): number[] => len(field, [...Buffer.from(s)]);

/** `decode` must refuse `input` with a RegionDbError INVALID_ARGUMENT whose message matches `pattern`. */
export function expectInvalid(input: number[] | Buffer, pattern: RegExp, decode: (b: Uint8Array) => unknown): void {
  try {
    decode(Buffer.from(input));
  } catch (err) {
    expect(isRegionDbError(err, ErrorCode.InvalidArgument), `${(err as Error).name}: ${(err as Error).message}`).to.equal(true);
    expect((err as Error).message).to.match(pattern);
    return;
  }
  expect.fail(`decoded ${Buffer.from(input).toString('hex')} without an error; expected ${pattern}`);
}

/**
 * One to three random edits of a valid encoding: a flipped bit, a byte replaced by one of
 * `interestingBytes` (the tags and lengths of the message under test), a cut, random bytes
 * inserted, bytes removed, or a stretch repeated.
 */
export function mutate(rand: SeededRand, valid: Buffer, interestingBytes: readonly number[]): Buffer {
  let b = Buffer.from(valid);
  for (let n = rand.range(1, 4); n > 0; n--) {
    const at = b.length === 0 ? 0 : rand.int(b.length);
    switch (rand.int(6)) {
      case 0:
        if (b.length > 0) b[at]! ^= 1 << rand.int(8);
        break;
      case 1:
        if (b.length > 0) b[at] = rand.pick(interestingBytes);
        break;
      case 2:
        b = b.subarray(0, at);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: rand.range(1, 12) }, () => rand.int(256))), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + rand.range(1, 16))]);
        break;
      default:
        b = Buffer.concat([b.subarray(0, at + rand.range(1, 64)), b.subarray(at)]);
    }
  }
  return b;
}

/** Fields no regiondb .proto has, one of each scalar wire type: what a newer sender may add to any message. */
export const FUTURE_SCALAR_FIELDS = `
  uint64 future_varint = 100;
  int64 future_negative = 101;
  fixed64 future_fixed64 = 102;
  bytes future_bytes = 103;
  fixed32 future_fixed32 = 104;
`;
/** Values for FUTURE_SCALAR_FIELDS, as proto-loader takes them (64-bit ints as decimal strings). */
export const FUTURE_SCALAR_VALUES = { future_varint: '18446744073709551615', future_negative: '-1', future_fixed64: '12345', future_bytes: Buffer.from('future'), future_fixed32: 7 };

/**
 * Loads `entry` (e.g. 'regiondb/v1/raft.proto') from a variant of our .proto files written under
 * `dir`: each file named in `edits` is our own, passed through its edit (the others are not copied,
 * so every file the entry imports must be named).
 */
export function loadProtoVariant(dir: string, entry: string, edits: Record<string, (text: string) => string>): protoLoader.PackageDefinition {
  mkdirSync(join(dir, 'regiondb', 'v1'), { recursive: true });
  for (const [file, edit] of Object.entries(edits)) {
    writeFileSync(join(dir, 'regiondb', 'v1', file), edit(readFileSync(join(protoRoot(), 'regiondb', 'v1', file), 'utf8')));
  }
  return protoLoader.loadSync(entry, { ...loaderOptions, includeDirs: [dir] });
}

/** Keys in order, all the way down: the decoded objects are to be built exactly as proto-loader builds them. */
export function keyOrder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(keyOrder);
  if (value && typeof value === 'object') return Object.entries(value).map(([k, v]) => [k, keyOrder(v)]);
  return typeof value;
}

/** Equal objects, with their keys in the same order (a codec against proto-loader's reference). */
export function expectSameObject(ours: unknown, reference: unknown, what: string): void {
  expect(ours, what).to.deep.equal(reference);
  expect(keyOrder(ours), `${what}: key order`).to.deep.equal(keyOrder(reference));
}
