// Where backups and cluster objects live, as the operator writes it: a directory, or
// s3://bucket/prefix (endpoint and credentials come from flags or the environment). Both open
// as an ObjectStore, so backup, verify and restore never know which one they talk to.
import { resolve } from 'node:path';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { FsObjectStore } from '../object-store/fs-store.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { S3ObjectStore } from '../object-store/s3-store.js';
import { validateBackupId } from './format.js';

export interface S3Settings {
  /** e.g. http://127.0.0.1:9000; default: AWS S3 in `region`. */
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly accessKeyId?: string | undefined;
  readonly secretAccessKey?: string | undefined;
}

const S3_URL = /^s3:\/\/([^/]+)\/?(.*)$/;

export function isS3Location(location: string): boolean {
  return location.startsWith('s3://');
}

/**
 * Opens a directory or s3://bucket/prefix as an ObjectStore. `what` names the location in
 * errors (e.g. "backup repository", "cluster object store").
 */
export function openLocation(location: string, s3: S3Settings, what: string): ObjectStore {
  if (location === '') throw new RegionDbError(ErrorCode.InvalidArgument, `${what}: no location given`);
  if (!isS3Location(location)) return new FsObjectStore(resolve(location));
  const m = S3_URL.exec(location);
  if (!m || m[1] === undefined) throw new RegionDbError(ErrorCode.InvalidArgument, `${what}: ${location} is not s3://bucket[/prefix]`);
  if (!s3.accessKeyId || !s3.secretAccessKey) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${what}: ${location} needs S3 credentials (access key id and secret access key: flags or environment)`);
  }
  const region = s3.region ?? 'us-east-1';
  return new S3ObjectStore({
    endpoint: s3.endpoint ?? `https://s3.${region}.amazonaws.com`,
    bucket: m[1],
    prefix: (m[2] ?? '').replace(/\/+$/, ''),
    region,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
}

/** `<repository>/<backupId>` → its two parts (the id is the last path segment). */
export function splitBackupLocation(location: string): { repository: string; backupId: string } {
  const trimmed = location.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  const repository = slash < 0 ? '.' : trimmed.slice(0, slash);
  const backupId = trimmed.slice(slash + 1);
  if (repository === 's3:/' || repository === 's3:' || (isS3Location(location) && !S3_URL.test(repository))) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${location}: a backup is <repository>/<backup id>, e.g. /backups/2024-05-01 or s3://bucket/prefix/2024-05-01`);
  }
  validateBackupId(backupId);
  return { repository: repository === '' ? '/' : repository, backupId };
}
