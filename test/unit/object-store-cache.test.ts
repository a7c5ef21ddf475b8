// CachedObjectStore: hits are served without touching the inner store, the byte bound evicts
// least-recently-used objects, and put/delete invalidate (including a put racing a fetch).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { CachedObjectStore } from '../../src/object-store/cached-store.js';
import { DelegatingObjectStore } from '../../src/object-store/delegating-store.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';

/** Wraps a store, counting calls; get() can be held back to create races. */
class CountingStore extends DelegatingObjectStore {
  gets = 0;
  ranges = 0;
  gate: Promise<void> | undefined;
  onRead: (() => void) | undefined;
  constructor(inner: ObjectStore) {
    super(inner, 'counting');
  }
  override async get(key: string): Promise<Uint8Array> {
    this.gets++;
    const data = await this.inner.get(key);
    this.onRead?.();
    if (this.gate) await this.gate;
    return data;
  }
  override getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    this.ranges++;
    return this.inner.getRange(key, offset, length);
  }
}

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

describe('CachedObjectStore', () => {
  let root: string;
  let inner: CountingStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'regiondb-cache-'));
    inner = new CountingStore(new FsObjectStore(root));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('serves repeated gets and ranges from memory', async () => {
    const cache = new CachedObjectStore(inner, 1000);
    await inner.put('sst/1', bytes(100, 1));
    expect((await cache.get('sst/1')).byteLength).to.equal(100);
    expect((await cache.get('sst/1')).byteLength).to.equal(100);
    expect(Array.from(await cache.getRange('sst/1', 10, 3))).to.deep.equal([1, 1, 1]);
    expect(await cache.head('sst/1')).to.deep.equal({ key: 'sst/1', size: 100 });
    expect(inner.gets).to.equal(1);
    expect(inner.ranges).to.equal(0);
    expect(cache.stats()).to.include({ hits: 2, misses: 1, bytes: 100, entries: 1 });
  });

  it('shares one fetch among concurrent gets', async () => {
    const cache = new CachedObjectStore(inner, 1000);
    await inner.put('k', bytes(10, 2));
    const got = await Promise.all([cache.get('k'), cache.get('k'), cache.get('k')]);
    expect(got.every((g) => g.byteLength === 10)).to.equal(true);
    expect(inner.gets).to.equal(1);
  });

  it('evicts least-recently-used objects to stay within the byte bound', async () => {
    const cache = new CachedObjectStore(inner, 250);
    for (const k of ['a', 'b', 'c']) await inner.put(k, bytes(100, k.charCodeAt(0)));
    await cache.get('a');
    await cache.get('b');
    await cache.get('a'); // a is now more recent than b
    await cache.get('c'); // 300 bytes > 250: evicts b
    expect(cache.stats()).to.include({ bytes: 200, entries: 2, evictions: 1 });
    const before = inner.gets;
    await cache.get('a');
    await cache.get('c');
    expect(inner.gets).to.equal(before);
    await cache.get('b');
    expect(inner.gets).to.equal(before + 1);
    expect(cache.stats().bytes).to.be.at.most(250);
  });

  it('passes objects larger than the bound through uncached', async () => {
    const cache = new CachedObjectStore(inner, 50);
    await inner.put('big', bytes(100, 3));
    await cache.get('big');
    await cache.get('big');
    expect(inner.gets).to.equal(2);
    expect(cache.stats()).to.include({ bytes: 0, entries: 0 });
    expect(Array.from(await cache.getRange('big', 98, 2))).to.deep.equal([3, 3]);
    expect(inner.ranges).to.equal(1);
  });

  it('put and delete invalidate', async () => {
    const cache = new CachedObjectStore(inner, 1000);
    await cache.put('k', bytes(10, 1));
    expect((await cache.get('k'))[0]).to.equal(1);
    await cache.put('k', bytes(20, 2));
    const v2 = await cache.get('k');
    expect(v2.byteLength).to.equal(20);
    expect(v2[0]).to.equal(2);
    expect(inner.gets).to.equal(2);
    await cache.delete('k');
    expect(cache.stats().entries).to.equal(0);
    const err = await cache.get('k').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.NotFound)).to.equal(true);
  });

  it('does not cache a fetch that raced a put', async () => {
    const cache = new CachedObjectStore(inner, 1000);
    await inner.put('k', bytes(10, 1));
    let release!: () => void;
    inner.gate = new Promise((ok) => {
      release = ok;
    });
    const read = new Promise<void>((ok) => {
      inner.onRead = ok;
    });
    const stale = cache.get('k'); // reads version 1, then waits at the gate
    await read;
    await cache.put('k', bytes(10, 2));
    release();
    expect((await stale)[0]).to.equal(1);
    inner.gate = undefined;
    expect((await cache.get('k'))[0]).to.equal(2);
  });

  it('validates keys like any store', async () => {
    const cache = new CachedObjectStore(inner, 1000);
    const err = await cache.get('../x').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.InvalidArgument)).to.equal(true);
  });
});
