// Loads proto/regiondb/v1/*.proto with @grpc/proto-loader.
// Options (decided once, here): keepCase (field names as in the .proto), longs as String (uint64
// region and peer ids never lose precision; numeric ones are converted with u64() / i64() below,
// which take canonical decimal only and refuse values ≥ 2^53), enums as String, defaults on, oneofs on.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ErrorCode, RegionDbError } from '../common/errors.js';

/** Walks up from this file to the repository root (works from src/ via tsx and from dist/src/). */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'proto', 'regiondb', 'v1', 'common.proto'))) return join(dir, 'proto');
    dir = dirname(dir);
  }
  throw new RegionDbError(ErrorCode.Config, 'cannot find proto/regiondb/v1 above the regiondb sources');
}

export const PROTO_FILES = ['common', 'database', 'raft', 'meta', 'admin'].map((n) => `regiondb/v1/${n}.proto`);

export const loaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: { definition: protoLoader.PackageDefinition; services: Services } | undefined;

export interface Services {
  Database: grpc.ServiceClientConstructor;
  RaftTransport: grpc.ServiceClientConstructor;
  Meta: grpc.ServiceClientConstructor;
  Admin: grpc.ServiceClientConstructor;
}

export function loadProtos(): { definition: protoLoader.PackageDefinition; services: Services } {
  if (cached) return cached;
  const definition = protoLoader.loadSync(PROTO_FILES, { ...loaderOptions, includeDirs: [protoRoot()] });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { regiondb: { v1: Services } };
  cached = { definition, services: pkg.regiondb.v1 };
  return cached;
}

/**
 * The definition server reflection serves: proto-loader's, with every type's file descriptors
 * replaced by the real per-file ones of proto/regiondb-v1.binpb (`buf build` output, kept current
 * by `make proto-check`). proto-loader's own are one synthetic file per package
 * (`regiondb_v1.proto`) from which tools such as `buf curl` cannot resolve a service.
 */
export function reflectionDefinition(definition: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const file = join(protoRoot(), DESCRIPTOR_SET_FILE);
  if (!existsSync(file)) return definition;
  const files = fileDescriptorProtos(readFileSync(file));
  const out: protoLoader.PackageDefinition = {};
  for (const [name, entry] of Object.entries(definition)) {
    out[name] = 'fileDescriptorProtos' in entry ? ({ ...entry, fileDescriptorProtos: files } as protoLoader.AnyDefinition) : entry;
  }
  return out;
}

export const DESCRIPTOR_SET_FILE = 'regiondb-v1.binpb';

/** The FileDescriptorProto messages of a FileDescriptorSet (field 1, repeated), as bytes. */
export function fileDescriptorProtos(set: Buffer): Buffer[] {
  const files: Buffer[] = [];
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= set.length) break;
      const b = set[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw new RegionDbError(ErrorCode.Config, `${DESCRIPTOR_SET_FILE}: malformed varint at byte ${pos}`);
  };
  while (pos < set.length) {
    const tag = varint();
    if (tag !== 0x0a) throw new RegionDbError(ErrorCode.Config, `${DESCRIPTOR_SET_FILE}: unexpected field tag ${tag} (not a FileDescriptorSet)`);
    const length = varint();
    if (pos + length > set.length) throw new RegionDbError(ErrorCode.Config, `${DESCRIPTOR_SET_FILE}: truncated`);
    files.push(set.subarray(pos, pos + length));
    pos += length;
  }
  return files;
}

/**
 * uint64 and int64 fields arrive as strings (longs: String) in canonical decimal — what
 * proto-loader and the Batch codec write for any value on the wire — or as numbers from
 * in-process callers. Only those are numbers here: a string is read only when it is exactly the
 * decimal a decoder writes (no sign on a uint64, "-" only before a non-zero int64, no leading
 * zero, no spaces, exponent, "0x", fraction or "+"; not empty), so "1e3", " 7", "0x10", "" or
 * "007" are refused rather than read as 1000, 7, 16, 0 and 7 (Number() reads them all). A number
 * must be an integer whose magnitude is below 2^53 (a safe integer); -0 reads as 0. Values past
 * 2^53 are refused too: JS numbers cannot hold them exactly.
 */
/**
 * A canonical decimal integer string — `0`, or (`-` if `signed`) a digit 1–9 and at most 15 more
 * digits: /^(?:0|-?[1-9][0-9]{0,15})$/ — as a number, else undefined. One pass without a regular
 * expression: every int64 of every written row (timestamps) comes through here. Up to 2^53 the
 * digits add up exactly; past it the result stays past it (2^53 is a double, rounding is
 * monotonic), so the callers' range checks refuse what Number() of the string would.
 */
function canonicalInteger(s: string, signed: boolean): number | undefined {
  const len = s.length;
  let i = 0;
  if (signed && len > 1 && s.charCodeAt(0) === 0x2d) i = 1; // '-'
  if (len === i || len - i > 16) return undefined;
  const first = s.charCodeAt(i);
  if (first === 0x30) return len === 1 ? 0 : undefined; // '0' alone; never '-0' or a leading zero
  let n = 0;
  for (; i < len; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return s.charCodeAt(0) === 0x2d ? -n : n;
}

/** The value as a safe JS integer when it is a canonical uint64 (see above) below 2^53, else undefined. */
export function safeU64(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value + 0 : undefined;
  if (typeof value !== 'string') return undefined;
  const n = canonicalInteger(value, false);
  return n !== undefined && n <= Number.MAX_SAFE_INTEGER ? n : undefined;
}

/** The value as a safe JS integer when it is a canonical int64 (see above) within ±(2^53 − 1), else undefined. */
export function safeI64(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value + 0 : undefined;
  if (typeof value !== 'string') return undefined;
  const n = canonicalInteger(value, true);
  return n !== undefined && Number.isSafeInteger(n) ? n : undefined;
}

/** A refused value in an error message (JSON.stringify throws on a bigint and gives undefined for undefined). */
function shown(value: unknown): string {
  return typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
}

/** A uint64 field as a safe JS integer (safeU64), or INVALID_ARGUMENT naming the field. */
export function u64(value: unknown, field: string): number {
  const n = safeU64(value);
  if (n === undefined) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected an unsigned integer below 2^53 in decimal, got ${shown(value)}`);
  }
  return n;
}

/** An int64 field as a safe JS integer (safeI64), or INVALID_ARGUMENT naming the field. */
export function i64(value: unknown, field: string): number {
  const n = safeI64(value);
  if (n === undefined) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected an integer within ±2^53 in decimal, got ${shown(value)}`);
  }
  return n;
}

/** The most UTF-8 bytes one UTF-16 code unit encodes to (a lone surrogate becomes U+FFFD: 3). */
const UTF8_BYTES_PER_UNIT_MAX = 3;

export function str(value: unknown, field: string, maxBytes = 4096): string {
  if (typeof value !== 'string') throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected a string`);
  // A UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair, two units, is 4): a string
  // of at most maxBytes / 3 units fits without counting (every write's table, region and client
  // ids pass here, several times on a leader).
  if (value.length * UTF8_BYTES_PER_UNIT_MAX > maxBytes && Buffer.byteLength(value) > maxBytes) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: longer than ${maxBytes} bytes`);
  }
  return value;
}

