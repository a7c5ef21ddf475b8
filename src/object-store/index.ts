// Public surface of the object-store layer, plus the factory that turns the `storage` section
// of a datanode config (src/common/config.ts) into a concrete ObjectStore.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { FsObjectStore } from './fs-store.js';
import type { ObjectStore } from './object-store.js';
import { S3ObjectStore } from './s3-store.js';

export { CachedObjectStore, type CacheStats } from './cached-store.js';
export { DelegatingObjectStore } from './delegating-store.js';
export { FsObjectStore } from './fs-store.js';
export { MAX_KEY_BYTES, type ObjectMeta, type ObjectStore, validateKey, validatePrefix } from './object-store.js';
export { S3ObjectStore, type S3ObjectStoreOptions } from './s3-store.js';

/** Mirrors `storageSchema` in src/common/config.ts (snake_case, as written in TOML). */
export type StorageConfig =
  | { type: 'fs'; root: string }
  | {
      type: 's3';
      endpoint: string;
      bucket: string;
      prefix?: string;
      region?: string;
      access_key_id: string;
      secret_access_key: string;
    };

export function createObjectStore(config: StorageConfig): ObjectStore {
  switch (config.type) {
    case 'fs':
      return new FsObjectStore(config.root);
    case 's3':
      return new S3ObjectStore({
        endpoint: config.endpoint,
        bucket: config.bucket,
        prefix: config.prefix ?? '',
        region: config.region ?? 'us-east-1',
        accessKeyId: config.access_key_id,
        secretAccessKey: config.secret_access_key,
      });
    default: {
      const unknown: { type?: unknown } = config;
      throw new RegionDbError(ErrorCode.Config, `unknown storage type ${JSON.stringify(unknown.type)}`);
    }
  }
}
