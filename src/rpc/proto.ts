// Loads proto/regiondb/v1/*.proto with @grpc/proto-loader.
// Options (decided once, here): keepCase (field names as in the .proto), longs as String (uint64
// region and peer ids never lose precision; numeric ones are converted with u64() below, which
// refuses values ≥ 2^53), enums as String, defaults on, oneofs on.
import { existsSync } from 'node:fs';
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
