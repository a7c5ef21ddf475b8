// The round-trip properties of the fuzz suite, as functions of a codec, so the same property
// runs against the real codecs (fuzz.test.ts) and against planted broken ones (the "can fail"
// tests), which proves it can fail.
import { expect } from 'chai';
import { isRegionDbError } from '../../src/common/errors.js';

export interface Codec<T> {
  readonly encode: (value: T) => Uint8Array;
  readonly decode: (bytes: Uint8Array) => T;
}

/**
 * A comparable form: byte arrays (Uint8Array, Buffer, views) as hex, -0 as 0 (JSON has no -0:
 * `JSON.stringify(-0)` is "0"), plain objects and arrays recursively.
 */
export function canon(value: unknown): unknown {
  if (value instanceof Uint8Array) return `bytes:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  if (Object.is(value, -0)) return 0;
  if (Array.isArray(value)) return value.map(canon);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, canon(v)]));
  return value;
}

/** The first place where two canonical values differ, e.g. `.envelopes[0].message.rejectHint: 1 ≠ 0`; undefined if equal. */
export function firstDifference(actual: unknown, expected: unknown, path = ''): string | undefined {
  if (actual === expected || (Number.isNaN(actual) && Number.isNaN(expected))) return undefined;
  const bothObjects = actual !== null && expected !== null && typeof actual === 'object' && typeof expected === 'object';
  if (!bothObjects || Array.isArray(actual) !== Array.isArray(expected)) return `${path || '(root)'}: ${JSON.stringify(actual)} ≠ ${JSON.stringify(expected)}`;
  const a = actual as Record<string, unknown>;
  const e = expected as Record<string, unknown>;
  for (const key of new Set([...Object.keys(e), ...Object.keys(a)])) {
    if (!(key in a) || !(key in e)) return `${path}.${key}: ${key in a ? 'present' : 'missing'} in the result, ${key in e ? 'present' : 'missing'} in the original`;
    const d = firstDifference(a[key], e[key], Array.isArray(actual) ? `${path}[${key}]` : `${path}.${key}`);
    if (d) return d;
  }
  return undefined;
}

/** Asserts canonical equality; the message names the first difference (fast-check shows only the message of its cause). */
export function expectSame(actual: unknown, expected: unknown, what: string): void {
  const d = firstDifference(canon(actual), canon(expected));
  expect(d, `${what} differs at ${d}`).to.equal(undefined);
}

/** Rethrows anything but a RegionDbError, naming it: decoders must fail with typed errors. */
export function untyped(err: unknown): Error {
  return new Error(`untyped error ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
}

/** value → encode → decode gives the value back (an encoder that drops or bends a field fails). */
export function expectValueRoundTrip<T>(codec: Codec<T>, value: T): void {
  expectSame(codec.decode(codec.encode(value)), value, 'decode(encode(value))');
}

/**
 * Hostile bytes either fail with a RegionDbError, or decode to a value that survives
 * encode → decode unchanged (a decoder that accepts what the encoder cannot write, or reads a
 * field differently from how it is written, fails). Returns whether the bytes decoded.
 * `canonical`: the format has exactly one encoding per value, so the bytes themselves must come
 * back (a decoder that accepts a wrong length, trailing bytes or a bad header fails).
 */
export function expectBytesRoundTrip<T>(codec: Codec<T>, bytes: Uint8Array, canonical = false): boolean {
  let first: T;
  try {
    first = codec.decode(bytes);
  } catch (err) {
    if (!isRegionDbError(err)) throw untyped(err);
    return false;
  }
  const encoded = codec.encode(first);
  if (canonical) expectSame(encoded, bytes, 'encode(decode(bytes)) (a canonical format)');
  expectSame(codec.decode(encoded), first, 'decode(encode(decode(bytes)))');
  return true;
}
