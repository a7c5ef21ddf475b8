// ObjectStore on S3 or an S3-compatible server, so SSTs can live off the datanode's disk. Every
// key is stored as <prefix><key> in one bucket; list() strips the prefix again. Checksum
// calculation is "when required" because several S3-compatible servers (s3rver among them)
// store chunk-signed streaming bodies verbatim, which would corrupt objects. Failures map to
// RegionDbError codes: a missing object is NOT_FOUND, a bad range INVALID_ARGUMENT, and anything
// else (network, auth, missing bucket, 5xx) STORAGE_UNAVAILABLE naming the endpoint.
// The AWS SDK is loaded on first use, not at import: it costs about a second of CPU to load,
// and a datanode on the local-directory store never needs it.
import type * as S3 from '@aws-sdk/client-s3';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { checkRange, MAX_KEY_BYTES, notFound, type ObjectMeta, type ObjectStore, sortByKey, validateKey, validatePrefix } from './object-store.js';

export interface S3ObjectStoreOptions {
  /** e.g. "http://127.0.0.1:9000" or "https://s3.eu-west-1.amazonaws.com". */
  endpoint: string;
  bucket: string;
  /** Prepended to every key; a non-empty prefix without a trailing '/' gets one. */
  prefix?: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** SDK attempts per request (default 3). */
  maxAttempts?: number;
  /** TCP connect timeout (default 5 s). */
  connectionTimeoutMs?: number;
  /** Per-request timeout (default 60 s). */
  requestTimeoutMs?: number;
}

interface ErrorShape {
  name?: string;
  code?: string;
  message?: string;
  status?: number;
}

function shapeOf(err: unknown): ErrorShape {
  if (typeof err !== 'object' || err === null) return { message: String(err) };
  const shape: ErrorShape = {};
  if ('name' in err && typeof err.name === 'string') shape.name = err.name;
  if ('code' in err && typeof err.code === 'string') shape.code = err.code;
  if ('message' in err && typeof err.message === 'string') shape.message = err.message;
  if ('Code' in err && typeof err.Code === 'string') shape.code ??= err.Code;
  if ('$metadata' in err && typeof err.$metadata === 'object' && err.$metadata !== null) {
    const meta = err.$metadata;
    if ('httpStatusCode' in meta && typeof meta.httpStatusCode === 'number') shape.status = meta.httpStatusCode;
  }
  return shape;
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly endpoint: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly clientConfig: S3.S3ClientConfig;
  private sdk: Promise<{ sdk: typeof S3; client: S3.S3Client }> | undefined;
  private loaded: S3.S3Client | undefined;

  constructor(options: S3ObjectStoreOptions) {
    if (!options.bucket) throw new RegionDbError(ErrorCode.Config, 's3 object store: bucket is required');
    this.endpoint = options.endpoint;
    this.bucket = options.bucket;
    const prefix = options.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    if (this.prefix !== '') validatePrefix(this.prefix);
    this.description = `s3://${this.bucket}/${this.prefix} (${this.endpoint})`;
    this.clientConfig = {
      endpoint: options.endpoint,
      region: options.region ?? 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: options.maxAttempts ?? 3,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 5_000,
        requestTimeout: options.requestTimeoutMs ?? 60_000,
      },
    };
  }

  /** The SDK module and a client, created on first use. */
  private s3(): Promise<{ sdk: typeof S3; client: S3.S3Client }> {
    this.sdk ??= import('@aws-sdk/client-s3').then((sdk) => {
      this.loaded = new sdk.S3Client(this.clientConfig);
      return { sdk, client: this.loaded };
    });
    return this.sdk;
  }

  /** Releases the HTTP agent's sockets. The store must not be used afterwards. */
  close(): void {
    this.loaded?.destroy();
  }

  private fullKey(key: string): string {
    validateKey(key);
    const full = this.prefix + key;
    if (Buffer.byteLength(full, 'utf8') > MAX_KEY_BYTES) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `invalid object key ${JSON.stringify(key)}: with prefix ${JSON.stringify(this.prefix)} it exceeds S3's ${MAX_KEY_BYTES}-byte limit`);
    }
    return full;
  }

  /** Maps an SDK error; NOT_FOUND only for a missing object, never for a missing bucket. */
  private mapError(op: string, key: string, err: unknown): RegionDbError {
    if (err instanceof RegionDbError) return err;
    const e = shapeOf(err);
    const kind = e.name ?? e.code;
    if (kind === 'NoSuchKey' || (kind !== 'NoSuchBucket' && e.status === 404)) return notFound(this, key, err);
    if (kind === 'InvalidRange' || e.status === 416) {
      return new RegionDbError(ErrorCode.InvalidArgument, `${this.description}: ${op} ${key}: range not satisfiable`, { cause: err });
    }
    const what = [kind, e.status === undefined ? undefined : `HTTP ${e.status}`, e.message].filter((s) => s !== undefined && s !== '').join(': ');
    return new RegionDbError(
      ErrorCode.StorageUnavailable,
      `${op} ${key} on s3 endpoint ${this.endpoint} bucket ${this.bucket} failed: ${what || 'unknown error'}`,
      { cause: err },
    );
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const Key = this.fullKey(key);
    try {
      const { sdk, client } = await this.s3();
      await client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.byteLength }));
    } catch (err) {
      throw this.mapError('put', key, err);
    }
  }

  async get(key: string): Promise<Uint8Array> {
    const Key = this.fullKey(key);
    try {
      const { sdk, client } = await this.s3();
      const res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key }));
      const body = res.Body ? await res.Body.transformToByteArray() : new Uint8Array(0);
      if (res.ContentLength !== undefined && body.byteLength !== res.ContentLength) {
        throw new RegionDbError(
          ErrorCode.StorageUnavailable,
          `get ${key} on s3 endpoint ${this.endpoint}: short body (${body.byteLength} of ${res.ContentLength} bytes)`,
        );
      }
      return body;
    } catch (err) {
      throw this.mapError('get', key, err);
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    const Key = this.fullKey(key);
    checkRange(this, key, offset, length);
    if (length === 0) {
      // HTTP ranges cannot express zero bytes; check existence and bounds instead.
      const meta = await this.head(key);
      if (!meta) throw notFound(this, key);
      checkRange(this, key, offset, length, meta.size);
      return new Uint8Array(0);
    }
    try {
      const { sdk, client } = await this.s3();
      const res = await client.send(
        new sdk.GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${offset}-${offset + length - 1}` }),
      );
      let body = res.Body ? await res.Body.transformToByteArray() : new Uint8Array(0);
      if (res.ContentRange === undefined && body.byteLength >= offset + length) {
        // A server that ignored the Range header sent the whole object.
        body = body.subarray(offset, offset + length);
      }
      if (body.byteLength !== length) {
        // S3 truncates a range that runs past the end instead of failing.
        const total = /\/(\d+)$/.exec(res.ContentRange ?? '')?.[1];
        checkRange(this, key, offset, length, total === undefined ? offset + body.byteLength : Number(total));
        throw new RegionDbError(ErrorCode.StorageUnavailable, `getRange ${key} on s3 endpoint ${this.endpoint}: got ${body.byteLength} of ${length} bytes`);
      }
      return body;
    } catch (err) {
      throw this.mapError('getRange', key, err);
    }
  }

  async head(key: string): Promise<ObjectMeta | undefined> {
    const Key = this.fullKey(key);
    try {
      const { sdk, client } = await this.s3();
      const res = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { key, size: res.ContentLength ?? 0 };
    } catch (err) {
      const mapped = this.mapError('head', key, err);
      if (mapped.code === ErrorCode.NotFound) return undefined;
      throw mapped;
    }
  }

  async list(prefix: string): Promise<ObjectMeta[]> {
    validatePrefix(prefix);
    const out: ObjectMeta[] = [];
    let token: string | undefined;
    // Bounded: a server that keeps returning the same token must not loop forever.
    for (let page = 0; page < 1_000_000; page++) {
      let res: S3.ListObjectsV2CommandOutput;
      try {
        const { sdk, client } = await this.s3();
        res = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
        );
      } catch (err) {
        throw this.mapError('list', prefix, err);
      }
      for (const obj of res.Contents ?? []) {
        if (obj.Key === undefined || !obj.Key.startsWith(this.prefix)) continue;
        out.push({ key: obj.Key.slice(this.prefix.length), size: obj.Size ?? 0 });
      }
      if (!res.IsTruncated) return sortByKey(out);
      if (!res.NextContinuationToken || res.NextContinuationToken === token) {
        throw new RegionDbError(ErrorCode.StorageUnavailable, `list ${prefix} on s3 endpoint ${this.endpoint}: truncated page without a new continuation token`);
      }
      token = res.NextContinuationToken;
    }
    throw new RegionDbError(ErrorCode.StorageUnavailable, `list ${prefix} on s3 endpoint ${this.endpoint}: too many pages`);
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    try {
      const { sdk, client } = await this.s3();
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      const mapped = this.mapError('delete', key, err);
      if (mapped.code === ErrorCode.NotFound) return;
      throw mapped;
    }
  }
}
