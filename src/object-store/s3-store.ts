// ObjectStore on S3 or an S3-compatible server, so SSTs can live off the datanode's disk. Every
// key is stored as <prefix><key> in one bucket; list() and listPrefixes() strip the prefix again. Checksum
// calculation is "when required" because several S3-compatible servers (s3rver among them)
// store chunk-signed streaming bodies verbatim, which would corrupt objects. Failures map to
// RegionDbError codes: a missing object is NOT_FOUND, a bad range INVALID_ARGUMENT, and anything
// else (network, auth, missing bucket, 5xx) STORAGE_UNAVAILABLE naming the endpoint.
// The AWS SDK is loaded on first use, not at import: it costs about a second of CPU to load,
// and a datanode on the local-directory store never needs it.
import type * as S3 from '@aws-sdk/client-s3';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { checkRange, MAX_KEY_BYTES, notFound, type ObjectMeta, type ObjectStore, type ObjectUpload, sortByKey, sortPrefixes, validateKey, validatePrefix } from './object-store.js';

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
  /**
   * Part size of a streaming upload (default 8 MiB; S3 takes 5 MiB to 5 GiB). An upload smaller
   * than one part is a single PutObject; a larger one a multipart upload, one part in memory.
   */
  partBytes?: number;
}

/** S3's bounds on a multipart upload's parts (all but the last part at least the minimum). */
export const S3_PART_BYTES_MIN = 5 << 20;
export const S3_PART_BYTES_MAX = 5 * 1024 ** 3;
export const S3_PARTS_MAX = 10_000;
const S3_PART_BYTES_DEFAULT = 8 << 20;
/** Pages of one listing at most (a billion keys at S3's 1,000 a page). */
const LIST_PAGES_MAX = 1_000_000;

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
  readonly partBytes: number;
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
    this.partBytes = options.partBytes ?? S3_PART_BYTES_DEFAULT;
    if (!Number.isSafeInteger(this.partBytes) || this.partBytes < S3_PART_BYTES_MIN || this.partBytes > S3_PART_BYTES_MAX) {
      throw new RegionDbError(ErrorCode.Config, `s3 object store: partBytes must be an integer in [${S3_PART_BYTES_MIN}, ${S3_PART_BYTES_MAX}], got ${options.partBytes}`);
    }
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

  /** The SDK client, for tests that watch the requests it sends (its middleware stack). */
  async sdkClient(): Promise<S3.S3Client> {
    return (await this.s3()).client;
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

  /** A multipart upload once the object outgrows one part (S3Upload). */
  upload(key: string): ObjectUpload {
    return new S3Upload(key, this.fullKey(key), this.partBytes, this.bucket, () => this.s3(), (op, err) => this.mapError(op, key, err));
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
    for await (const page of this.listPages('list', prefix, undefined)) {
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined || !obj.Key.startsWith(this.prefix)) continue;
        out.push({ key: obj.Key.slice(this.prefix.length), size: obj.Size ?? 0 });
      }
    }
    return sortByKey(out);
  }

  /** ListObjectsV2 with Delimiter '/': the pages hold CommonPrefixes, up to 1,000 (prefixes and objects) a page. */
  async listPrefixes(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    // A set: a page boundary must not name a prefix twice (S3 does not; some compatible servers do).
    const out = new Set<string>();
    for await (const page of this.listPages('listPrefixes', prefix, '/')) {
      for (const common of page.CommonPrefixes ?? []) {
        if (common.Prefix === undefined || !common.Prefix.startsWith(this.prefix)) continue;
        out.add(common.Prefix.slice(this.prefix.length));
      }
    }
    return sortPrefixes(out);
  }

  /** The pages of one ListObjectsV2 listing, each asked for after the previous one is taken; a failed page fails the listing. */
  private async *listPages(op: string, prefix: string, delimiter: '/' | undefined): AsyncGenerator<S3.ListObjectsV2CommandOutput> {
    let token: string | undefined;
    // Bounded: a server that keeps returning the same token must not loop forever.
    for (let page = 0; page < LIST_PAGES_MAX; page++) {
      let res: S3.ListObjectsV2CommandOutput;
      try {
        const { sdk, client } = await this.s3();
        res = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, Delimiter: delimiter, ContinuationToken: token }),
        );
      } catch (err) {
        throw this.mapError(op, prefix, err);
      }
      yield res;
      if (!res.IsTruncated) return;
      if (!res.NextContinuationToken || res.NextContinuationToken === token) {
        throw new RegionDbError(ErrorCode.StorageUnavailable, `${op} ${prefix} on s3 endpoint ${this.endpoint}: truncated page without a new continuation token`);
      }
      token = res.NextContinuationToken;
    }
    throw new RegionDbError(ErrorCode.StorageUnavailable, `${op} ${prefix} on s3 endpoint ${this.endpoint}: too many pages`);
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

/**
 * One streaming put on S3. Chunks gather into a part of `partBytes`; the first full part starts a
 * multipart upload and each part is sent before write() returns (so memory is one part, and a
 * slow store slows the writer). complete() sends the rest as the last part and completes the
 * upload, or, when nothing was sent yet, puts the object whole. S3 publishes an object only at
 * CompleteMultipartUpload, atomically; abort() (also after any failure) aborts the multipart
 * upload so its parts are deleted. An abort that fails (or a process that dies mid-upload) leaves
 * an incomplete upload: invisible to get and list, but stored and billed until a bucket lifecycle
 * rule (AbortIncompleteMultipartUpload) removes it (docs/engine.md).
 */
class S3Upload implements ObjectUpload {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private size = 0;
  private uploadId: string | undefined;
  private readonly parts: { PartNumber: number; ETag: string }[] = [];
  private state: 'open' | 'completing' | 'done' | 'aborted' = 'open';

  constructor(
    readonly key: string,
    private readonly fullKey: string,
    private readonly partBytes: number,
    private readonly bucket: string,
    private readonly s3: () => Promise<{ sdk: typeof S3; client: S3.S3Client }>,
    private readonly mapError: (op: string, err: unknown) => RegionDbError,
  ) {}

  private ended(what: string): RegionDbError {
    return new RegionDbError(ErrorCode.InvalidArgument, `upload of ${this.key}: ${what} after the upload ${this.state === 'done' ? 'completed' : 'ended'}`);
  }

  /** The gathered bytes, at most `partBytes` of them, as one array; the rest stays pending. */
  private takePart(): Uint8Array {
    const whole = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const part = whole.subarray(0, Math.min(this.partBytes, whole.byteLength));
    const rest = whole.subarray(part.byteLength);
    this.pending = rest.byteLength > 0 ? [rest] : [];
    this.pendingBytes = rest.byteLength;
    return part;
  }

  private async sendPart(body: Uint8Array): Promise<void> {
    const { sdk, client } = await this.s3();
    if (this.uploadId === undefined) {
      const created = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.fullKey }));
      if (!created.UploadId) throw new RegionDbError(ErrorCode.StorageUnavailable, `upload of ${this.key}: CreateMultipartUpload returned no upload id`);
      this.uploadId = created.UploadId;
    }
    const PartNumber = this.parts.length + 1;
    if (PartNumber > S3_PARTS_MAX) throw new RegionDbError(ErrorCode.InvalidArgument, `upload of ${this.key}: more than ${S3_PARTS_MAX} parts of ${this.partBytes} bytes`);
    const res = await client.send(
      new sdk.UploadPartCommand({ Bucket: this.bucket, Key: this.fullKey, UploadId: this.uploadId, PartNumber, Body: body, ContentLength: body.byteLength }),
    );
    if (!res.ETag) throw new RegionDbError(ErrorCode.StorageUnavailable, `upload of ${this.key}: part ${PartNumber} returned no ETag`);
    this.parts.push({ PartNumber, ETag: res.ETag });
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw this.ended('write');
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    this.size += chunk.byteLength;
    try {
      while (this.pendingBytes >= this.partBytes) await this.sendPart(this.takePart());
    } catch (err) {
      await this.abort();
      throw this.mapError('put', err);
    }
  }

  async complete(): Promise<ObjectMeta> {
    if (this.state !== 'open') throw this.ended('complete');
    this.state = 'completing';
    try {
      const { sdk, client } = await this.s3();
      if (this.uploadId === undefined) {
        const body = this.takePart();
        await client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key: this.fullKey, Body: body, ContentLength: body.byteLength }));
      } else {
        if (this.pendingBytes > 0) await this.sendPart(this.takePart());
        await client.send(
          new sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.fullKey, UploadId: this.uploadId, MultipartUpload: { Parts: this.parts } }),
        );
      }
      this.state = 'done';
      return { key: this.key, size: this.size };
    } catch (err) {
      await this.abort();
      throw this.mapError('put', err);
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    this.state = 'aborted';
    this.pending = [];
    this.pendingBytes = 0;
    const UploadId = this.uploadId;
    if (UploadId === undefined) return;
    try {
      const { sdk, client } = await this.s3();
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.fullKey, UploadId }));
    } catch {
      // Safe to ignore: the incomplete upload is invisible to get and list, and a lifecycle rule
      // removes it (see the class comment). s3rver does not implement this call at all.
    }
  }
}
