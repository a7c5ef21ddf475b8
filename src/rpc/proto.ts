// Loads proto/regiondb/v1/*.proto with @grpc/proto-loader.
// Options (decided once, here): keepCase (field names as in the .proto), longs as String (uint64
// region and peer ids never lose precision; numeric ones are converted with u64() below, which
// refuses values ≥ 2^53), enums as String, defaults on, oneofs on.
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

/** A uint64/int64 field (string under longs: String) as a safe JS integer, or INVALID_ARGUMENT. */
export function u64(value: unknown, field: string): number {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'number' ? value : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected an unsigned integer below 2^53, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function i64(value: unknown, field: string): number {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'number' ? value : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected an integer within ±2^53, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function str(value: unknown, field: string, maxBytes = 4096): string {
  if (typeof value !== 'string') throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected a string`);
  if (Buffer.byteLength(value) > maxBytes) throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: longer than ${maxBytes} bytes`);
  return value;
}
