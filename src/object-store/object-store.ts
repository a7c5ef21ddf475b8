// The object-store abstraction that SSTs, manifests and backups are written to. Objects are
// immutable blobs addressed by '/'-separated keys; every backend (local fs, S3) implements the
// same small contract so the engine never knows where its files live. Key validation is shared
// here so that a key accepted by one backend is accepted by all of them.
import { ErrorCode, RegionDbError } from '../common/errors.js';

export interface ObjectMeta {
  key: string;
  size: number;
}

export interface ObjectStore {
  /** Where the objects live, e.g. "fs:/var/lib/regiondb/objects" or "s3://bucket/prefix/"; for error messages. */
  readonly description: string;
  /** Atomic: readers observe either the whole new object or the previous state, never a partial write. */
  put(key: string, data: Uint8Array): Promise<void>;
  /** The whole object; NOT_FOUND naming the key if absent. */
  get(key: string): Promise<Uint8Array>;
  /** Bytes [offset, offset+length); INVALID_ARGUMENT if the range is outside the object, NOT_FOUND if absent. */
  getRange(key: string, offset: number, length: number): Promise<Uint8Array>;
  head(key: string): Promise<ObjectMeta | undefined>;
  /** Every object whose key starts with prefix, sorted by key (UTF-8 byte order). */
  list(prefix: string): Promise<ObjectMeta[]>;
  /**
   * The prefixes one '/'-segment deeper than `prefix` that some object's key starts with: for
   * every object whose key starts with `prefix` and has a '/' after it, the key up to and
   * including that first '/' (S3's CommonPrefixes with Delimiter '/'). Each once, sorted by key
   * (UTF-8 byte order); an object with no '/' after `prefix` is not named (list() gives it). A
   * prefix is named only while an object is under it. The cost follows the prefixes, not the
   * objects under them: one S3 request per 1,000 prefixes; on fs one directory read, and a look
   * into each folder until its first object.
   */
  listPrefixes(prefix: string): Promise<string[]>;
  /** Idempotent: deleting an absent key succeeds. */
  delete(key: string): Promise<void>;
  /**
   * A put whose bytes arrive in pieces, so that a writer (a merge building an SST) never holds
   * the whole object: the same atomicity as put() — until complete() resolves the key shows its
   * previous state, and an upload that is aborted or fails leaves nothing behind under the key
   * (fs: a temporary file that is removed; S3: a multipart upload that is aborted). Invalid keys
   * are refused here, before any byte is taken.
   */
  upload(key: string): ObjectUpload;
}

/** One streaming put (ObjectStore.upload). Calls are sequential: await each before the next. */
export interface ObjectUpload {
  readonly key: string;
  /** Appends bytes; the store may hold on to `chunk` until the upload ends, so the caller must not modify it. */
  write(chunk: Uint8Array): Promise<void>;
  /** Publishes the whole object and returns its size. If it fails, the upload is aborted first. */
  complete(): Promise<ObjectMeta>;
  /**
   * Gives up: nothing is published and what was staged is removed. Idempotent, a no-op after
   * complete() succeeded, and never throws (a leftover it cannot remove is invisible to get and
   * list: an fs temporary file or an S3 incomplete multipart upload; docs/engine.md).
   */
  abort(): Promise<void>;
}

/**
 * An upload that gathers the chunks in memory and puts them in one call: for stores with no
 * streaming of their own (the simulator's), and for objects known to be small.
 */
export function bufferedUpload(store: Pick<ObjectStore, 'put'>, key: string): ObjectUpload {
  validateKey(key);
  let chunks: Uint8Array[] | undefined = [];
  let size = 0;
  let completed = false;
  const ended = (what: string) => new RegionDbError(ErrorCode.InvalidArgument, `upload of ${key}: ${what} after the upload ended`);
  return {
    key,
    async write(chunk) {
      if (!chunks) throw ended('write');
      chunks.push(chunk);
      size += chunk.byteLength;
    },
    async complete() {
      if (!chunks) throw ended('complete');
      const whole = Buffer.concat(chunks, size);
      chunks = undefined;
      await store.put(key, whole);
      completed = true;
      return { key, size };
    },
    async abort() {
      if (!completed) chunks = undefined;
    },
  };
}

/**
 * Writes `chunks` to `store` under `key` as one upload; aborted (nothing left behind) if the
 * chunks' source throws or the store fails.
 */
export async function putChunks(store: ObjectStore, key: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<ObjectMeta> {
  const upload = store.upload(key);
  try {
    for await (const chunk of chunks) await upload.write(chunk);
    return await upload.complete();
  } catch (err) {
    await upload.abort();
    throw err;
  }
}

export const MAX_KEY_BYTES = 1024;
/** Per '/'-separated segment: the common file-name limit, so every key also works on the fs backend. */
export const MAX_SEGMENT_BYTES = 255;

function invalidKey(key: string, why: string): RegionDbError {
  return new RegionDbError(ErrorCode.InvalidArgument, `invalid object key ${JSON.stringify(key)}: ${why}`);
}

/**
 * Rejects keys that could escape a backend's root or mean different things on different backends:
 * empty, leading '/', empty / '.' / '..' segments, backslashes, control characters, > 1024 bytes,
 * or a segment > 255 bytes (a file-name limit on common filesystems).
 */
export function validateKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw invalidKey(String(key), 'must be non-empty');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw invalidKey(key.slice(0, 64) + '…', `longer than ${MAX_KEY_BYTES} bytes`);
  if (key.startsWith('/')) throw invalidKey(key, "must not start with '/'");
  if (key.includes('\\')) throw invalidKey(key, 'must not contain a backslash');
  if (/[\u0000-\u001f\u007f]/.test(key)) throw invalidKey(key, 'must not contain control characters');
  if (Buffer.from(key, 'utf8').toString('utf8') !== key) throw invalidKey(key, 'must be well-formed Unicode');
  for (const segment of key.split('/')) {
    if (segment === '') throw invalidKey(key, "must not have empty segments (leading, trailing or doubled '/')");
    if (segment === '..' || segment === '.') throw invalidKey(key, `must not contain '${segment}' segments`);
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) throw invalidKey(key, `segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
}

/** A list prefix: empty, or a key prefix that may end in '/' (or mid-segment). Same character rules as keys. */
export function validatePrefix(prefix: string): void {
  if (prefix === '') return;
  if (typeof prefix !== 'string') throw invalidKey(String(prefix), 'prefix must be a string');
  if (Buffer.byteLength(prefix, 'utf8') > MAX_KEY_BYTES) throw invalidKey(prefix.slice(0, 64) + '…', `prefix longer than ${MAX_KEY_BYTES} bytes`);
  if (prefix.startsWith('/')) throw invalidKey(prefix, "prefix must not start with '/'");
  if (prefix.includes('\\')) throw invalidKey(prefix, 'prefix must not contain a backslash');
  const segments = prefix.split('/');
  // The last segment may be partial (or empty when the prefix ends in '/').
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '..' || (s === '.' && i < segments.length - 1)) throw invalidKey(prefix, `prefix must not contain '${s}' segments`);
    if (s === '' && i < segments.length - 1) throw invalidKey(prefix, "prefix must not have empty segments");
  }
}

/** Checks a getRange request against the object size; shared so backends agree on edge cases. */
export function checkRange(store: ObjectStore, key: string, offset: number, length: number, size?: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${store.description}: invalid range offset=${offset} length=${length} for ${key}`);
  }
  if (size !== undefined && offset + length > size) {
    throw new RegionDbError(
      ErrorCode.InvalidArgument,
      `${store.description}: range [${offset}, ${offset + length}) is outside object ${key} of ${size} bytes`,
    );
  }
}

export function notFound(store: ObjectStore, key: string, cause?: unknown): RegionDbError {
  return new RegionDbError(ErrorCode.NotFound, `${store.description}: object ${key} not found`, cause === undefined ? undefined : { cause });
}

/** Sorts by UTF-8 byte order (S3's order), which differs from JS string order outside the BMP. */
export function sortByKey(objects: ObjectMeta[]): ObjectMeta[] {
  const encoded = objects.map((o) => ({ o, k: Buffer.from(o.key, 'utf8') }));
  encoded.sort((a, b) => Buffer.compare(a.k, b.k));
  return encoded.map((e) => e.o);
}

/** Key prefixes sorted as sortByKey sorts keys. */
export function sortPrefixes(prefixes: Iterable<string>): string[] {
  return sortByKey([...prefixes].map((key) => ({ key, size: 0 }))).map((o) => o.key);
}

/** listPrefixes over a set of keys (in-memory stores): the prefix of each key one '/'-segment below `prefix`. */
export function prefixesOfKeys(keys: Iterable<string>, prefix: string): string[] {
  const found = new Set<string>();
  for (const key of keys) {
    if (!key.startsWith(prefix)) continue;
    const slash = key.indexOf('/', prefix.length);
    if (slash >= 0) found.add(key.slice(0, slash + 1));
  }
  return sortPrefixes(found);
}
