// A read-through LRU cache of whole objects in front of another ObjectStore. SSTs are immutable
// once written, so caching what get() returned is safe; put() and delete() through this store
// invalidate the entry (writes that bypass this wrapper are not seen — use it only for
// write-once objects). Total cached bytes stay ≤ maxBytes; objects larger than that pass through
// uncached. Concurrent gets of one key share a single fetch. Returned arrays are shared with the
// cache: callers must treat them as read-only.
import { DelegatingObjectStore } from './delegating-store.js';
import type { ObjectMeta, ObjectStore, ObjectUpload } from './object-store.js';
import { checkRange, validateKey } from './object-store.js';

export interface CacheStats {
  hits: number;
  misses: number;
  evictions: number;
  bytes: number;
  entries: number;
}

export class CachedObjectStore extends DelegatingObjectStore {
  /** Insertion order is recency order: the first key is the least recently used. */
  private readonly entries = new Map<string, Uint8Array>();
  /** In-flight fetches; put/delete remove the key's entry so a fetch that raced a write caches nothing. */
  private readonly inflight = new Map<string, Promise<Uint8Array>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(
    inner: ObjectStore,
    readonly maxBytes: number,
  ) {
    super(inner, `cached(${inner.description})`);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`cache maxBytes must be a non-negative integer, got ${maxBytes}`);
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, bytes: this.bytes, entries: this.entries.size };
  }

  private invalidate(key: string): void {
    this.inflight.delete(key);
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.byteLength;
    }
  }

  private insert(key: string, data: Uint8Array): void {
    if (data.byteLength > this.maxBytes) return;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.byteLength;
    }
    this.entries.set(key, data);
    this.bytes += data.byteLength;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.byteLength;
      this.evictions++;
    }
  }

  private touch(key: string): Uint8Array | undefined {
    const data = this.entries.get(key);
    if (data) {
      this.entries.delete(key);
      this.entries.set(key, data);
    }
    return data;
  }

  override async put(key: string, data: Uint8Array): Promise<void> {
    validateKey(key);
    this.invalidate(key);
    try {
      await this.inner.put(key, data);
    } finally {
      // A get racing with this put may have fetched either version; drop whatever it cached.
      this.invalidate(key);
    }
  }

  override async get(key: string): Promise<Uint8Array> {
    validateKey(key);
    const cached = this.touch(key);
    if (cached) {
      this.hits++;
      return cached;
    }
    const pending = this.inflight.get(key);
    if (pending) {
      this.hits++;
      return pending;
    }
    this.misses++;
    const fetch: Promise<Uint8Array> = this.inner.get(key).then(
      (data) => {
        if (this.inflight.get(key) === fetch) {
          this.inflight.delete(key);
          this.insert(key, data);
        }
        return data;
      },
      (err: unknown) => {
        if (this.inflight.get(key) === fetch) this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, fetch);
    return fetch;
  }

  override async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    validateKey(key);
    const cached = this.touch(key);
    if (cached) {
      checkRange(this, key, offset, length, cached.byteLength);
      this.hits++;
      return cached.subarray(offset, offset + length);
    }
    // Ranges are for objects too big or too cold to cache whole: pass through.
    return this.inner.getRange(key, offset, length);
  }

  override async head(key: string): Promise<ObjectMeta | undefined> {
    validateKey(key);
    const cached = this.entries.get(key);
    if (cached) return { key, size: cached.byteLength };
    return this.inner.head(key);
  }

  override upload(key: string): ObjectUpload {
    validateKey(key);
    const inner = this.inner.upload(key);
    return {
      key,
      write: (chunk) => inner.write(chunk),
      complete: async () => {
        this.invalidate(key);
        try {
          return await inner.complete();
        } finally {
          this.invalidate(key); // as put(): a get racing the upload's end may have fetched either version
        }
      },
      abort: () => inner.abort(),
    };
  }

  // list() and listPrefixes() pass through (DelegatingObjectStore): listings are not cached.

  override async delete(key: string): Promise<void> {
    validateKey(key);
    this.invalidate(key);
    try {
      await this.inner.delete(key);
    } finally {
      this.invalidate(key);
    }
  }

  /** For callers that learn an object vanished out of band. */
  evict(key: string): void {
    this.invalidate(key);
  }
}
