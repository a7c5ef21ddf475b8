// The ObjectStore contract as mocha cases, run against every backend (fs, S3 via s3rver) and the
// read cache in front of them (CachedObjectStore), so they behave identically: round trips,
// NOT_FOUND, ranges, head, sorted paginated list, folder listing (listPrefixes), overwrite, reads
// after writes, idempotent delete, key validation.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { type ObjectStore, putChunks } from '../../src/object-store/object-store.js';

export interface StoreFixture {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<Error> {
  try {
    await p;
  } catch (err) {
    if (!isRegionDbError(err, code)) throw new Error(`expected ${code}, got ${String(err)}`, { cause: err });
    return err;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** Deterministic bytes (no RNG needed). */
function pattern(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

export interface ConformanceOptions {
  /** Cases a test server cannot honour (say why at the call site): 'concurrent-puts'. */
  skip?: readonly 'concurrent-puts'[];
}

/**
 * Names `n` things (`name(j)`, j = 0..n-1, already in list order) and runs `put(name, j)`'s writes,
 * 100 names at a time; returns the names in order.
 */
async function putNumbered(n: number, name: (j: number) => string, put: (name: string, j: number) => Promise<void>[]): Promise<string[]> {
  const names = Array.from({ length: n }, (_, j) => name(j));
  for (let i = 0; i < n; i += 100) await Promise.all(names.slice(i, i + 100).flatMap((k, d) => put(k, i + d)));
  return names;
}

export function objectStoreConformance(name: string, make: () => Promise<StoreFixture>, options: ConformanceOptions = {}): void {
  const skip = new Set(options.skip ?? []);
  describe(`ObjectStore conformance: ${name}`, function () {
    this.timeout(30_000);
    let fixture: StoreFixture;
    let store: ObjectStore;

    before(async () => {
      fixture = await make();
      store = fixture.store;
    });
    after(async () => {
      await fixture?.cleanup();
    });

    it('has a description', () => {
      expect(store.description).to.be.a('string').and.not.equal('');
    });

    it('round-trips small, empty and 1 MiB objects', async () => {
      const small = text('hello object store');
      const big = pattern(1024 * 1024);
      await store.put('rt/small', small);
      await store.put('rt/empty', new Uint8Array(0));
      await store.put('rt/nested/deeper/big.sst', big);
      expect(Buffer.from(await store.get('rt/small')).equals(Buffer.from(small))).to.equal(true);
      expect((await store.get('rt/empty')).byteLength).to.equal(0);
      const got = await store.get('rt/nested/deeper/big.sst');
      expect(got.byteLength).to.equal(big.byteLength);
      expect(Buffer.from(got).equals(Buffer.from(big))).to.equal(true);
    });

    it('puts from a subarray view store only the view', async () => {
      const backing = pattern(100);
      await store.put('rt/view', backing.subarray(10, 30));
      expect(Buffer.from(await store.get('rt/view')).equals(Buffer.from(backing.subarray(10, 30)))).to.equal(true);
    });

    it('get of a missing key is NOT_FOUND naming the key', async () => {
      const err = await expectCode(store.get('missing/nothing-here'), ErrorCode.NotFound);
      expect(err.message).to.contain('missing/nothing-here');
      await expectCode(store.get('rt/small/child'), ErrorCode.NotFound);
    });

    it('getRange reads the middle, the end, empty ranges; rejects out-of-range', async () => {
      const data = pattern(10_000, 3);
      await store.put('range/obj', data);
      const mid = await store.getRange('range/obj', 1234, 4321);
      expect(Buffer.from(mid).equals(Buffer.from(data.subarray(1234, 1234 + 4321)))).to.equal(true);
      const tail = await store.getRange('range/obj', 9_990, 10);
      expect(Buffer.from(tail).equals(Buffer.from(data.subarray(9_990)))).to.equal(true);
      const whole = await store.getRange('range/obj', 0, 10_000);
      expect(Buffer.from(whole).equals(Buffer.from(data))).to.equal(true);
      expect((await store.getRange('range/obj', 500, 0)).byteLength).to.equal(0);
      await expectCode(store.getRange('range/obj', 9_995, 10), ErrorCode.InvalidArgument);
      await expectCode(store.getRange('range/obj', 10_000, 1), ErrorCode.InvalidArgument);
      await expectCode(store.getRange('range/obj', 20_000, 5), ErrorCode.InvalidArgument);
      await expectCode(store.getRange('range/obj', -1, 5), ErrorCode.InvalidArgument);
      await expectCode(store.getRange('range/missing', 0, 1), ErrorCode.NotFound);
    });

    it('head reports size, or undefined when absent', async () => {
      await store.put('head/a', pattern(777));
      expect(await store.head('head/a')).to.deep.equal({ key: 'head/a', size: 777 });
      await store.put('head/empty', new Uint8Array(0));
      expect(await store.head('head/empty')).to.deep.equal({ key: 'head/empty', size: 0 });
      expect(await store.head('head/b')).to.equal(undefined);
    });

    it('list returns only the prefix, sorted, with sizes', async () => {
      const keys = ['ls/b/2', 'ls/a', 'ls/b/1', 'ls/c.sst', 'lsx/other', 'ls-other', 'ls/b/10'];
      for (const [i, k] of keys.entries()) await store.put(k, pattern(i + 1, i + 11));
      const all = await store.list('ls/');
      expect(all.map((o) => o.key)).to.deep.equal(['ls/a', 'ls/b/1', 'ls/b/10', 'ls/b/2', 'ls/c.sst']);
      expect(all.find((o) => o.key === 'ls/c.sst')?.size).to.equal(4);
      expect((await store.list('ls/b/')).map((o) => o.key)).to.deep.equal(['ls/b/1', 'ls/b/10', 'ls/b/2']);
      // A prefix that ends mid-segment.
      expect((await store.list('ls/b/1')).map((o) => o.key)).to.deep.equal(['ls/b/1', 'ls/b/10']);
      expect((await store.list('ls')).map((o) => o.key)).to.deep.equal([
        'ls-other',
        'ls/a',
        'ls/b/1',
        'ls/b/10',
        'ls/b/2',
        'ls/c.sst',
        'lsx/other',
      ]);
      expect(await store.list('nothing-under-here/')).to.deep.equal([]);
    });

    it('list pages through more than 1000 objects', async () => {
      const n = 1100;
      const expected = await putNumbered(n, (j) => `many/obj-${String(j).padStart(5, '0')}`, (key, j) => [store.put(key, Uint8Array.of(j & 0xff))]);
      await store.put('manyx/not-included', Uint8Array.of(1));
      const listed = await store.list('many/');
      expect(listed.length).to.equal(n);
      expect(listed.map((o) => o.key)).to.deep.equal(expected);
      expect(listed.every((o) => o.size === 1)).to.equal(true);
    });

    it('listPrefixes names each folder one segment down once, sorted; not the objects at that level', async () => {
      const keys = ['lp/b/1', 'lp/a/2/deep/x', 'lp/a/1', 'lp/c', 'lp/d/e/f/g', 'lp/b/2', 'lpx/1', 'lp-other'];
      for (const k of keys) await store.put(k, text(k));
      expect(await store.listPrefixes('lp/')).to.deep.equal(['lp/a/', 'lp/b/', 'lp/d/']);
      // Keys nested deeper name only their first folder below the prefix.
      expect(await store.listPrefixes('lp/a/')).to.deep.equal(['lp/a/2/']);
      expect(await store.listPrefixes('lp/d/')).to.deep.equal(['lp/d/e/']);
      // A prefix that ends mid-segment: the folder it completes, and its siblings that share it.
      expect(await store.listPrefixes('lp')).to.deep.equal(['lp/', 'lpx/']);
      expect(await store.listPrefixes('lp/a')).to.deep.equal(['lp/a/']);
      // Nothing under it, an object's key as a folder, a folder with only objects in it.
      expect(await store.listPrefixes('nothing-under-here/')).to.deep.equal([]);
      expect(await store.listPrefixes('lp/c/')).to.deep.equal([]);
      expect(await store.listPrefixes('lp/b/')).to.deep.equal([]);
    });

    it('listPrefixes with the empty prefix names the top-level folders only', async () => {
      await store.put('lp-top/x/1', text('v'));
      await store.put('lp-top-object', text('v'));
      const top = await store.listPrefixes('');
      expect(top).to.include('lp-top/');
      expect(top).to.not.include('lp-top-object');
      expect(top.every((p) => p.endsWith('/') && p.indexOf('/') === p.length - 1), top.join(' ')).to.equal(true);
      expect(top, 'sorted, each once').to.deep.equal([...new Set(top)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    });

    it('listPrefixes no longer names a folder once its last object is deleted', async () => {
      await store.put('lpdel/x/1', text('v'));
      await store.put('lpdel/x/deeper/2', text('v'));
      await store.put('lpdel/y/1', text('v'));
      expect(await store.listPrefixes('lpdel/')).to.deep.equal(['lpdel/x/', 'lpdel/y/']);
      await store.delete('lpdel/x/1');
      expect(await store.listPrefixes('lpdel/')).to.deep.equal(['lpdel/x/', 'lpdel/y/']);
      await store.delete('lpdel/x/deeper/2');
      expect(await store.listPrefixes('lpdel/')).to.deep.equal(['lpdel/y/']);
    });

    it('listPrefixes sorts by UTF-8 bytes, as list does', async () => {
      // U+FFFD sorts before U+1F600 in UTF-8, after it in JS (UTF-16) string order.
      await store.put('lpu/\u{1F600}/x', text('v'));
      await store.put('lpu/\uFFFD/x', text('v'));
      await store.put('lpu/zoë/x', text('v'));
      expect(await store.listPrefixes('lpu/')).to.deep.equal(['lpu/zoë/', 'lpu/\uFFFD/', 'lpu/\u{1F600}/']);
    });

    it('listPrefixes names more than 1000 folders (S3 pages them)', async () => {
      // Two objects a folder, one of them deeper: each folder is still named once.
      const expected = await putNumbered(1100, (j) => `lpmany/r-${String(j).padStart(5, '0')}/`, (folder) => [store.put(`${folder}m`, Uint8Array.of(1)), store.put(`${folder}sst/s`, Uint8Array.of(1))]);
      expect(await store.listPrefixes('lpmany/')).to.deep.equal(expected);
    });

    it('overwrite replaces the whole object', async () => {
      await store.put('ow/x', pattern(5000, 1));
      await store.put('ow/x', text('short'));
      expect(new TextDecoder().decode(await store.get('ow/x'))).to.equal('short');
      expect((await store.head('ow/x'))?.size).to.equal(5);
    });

    it('reads after an overwrite or a delete see it, even when the old version was read just before', async () => {
      await store.put('fresh/k', text('first version'));
      expect(new TextDecoder().decode(await store.get('fresh/k'))).to.equal('first version');
      expect(new TextDecoder().decode(await store.getRange('fresh/k', 6, 7))).to.equal('version');
      await store.put('fresh/k', text('second'));
      expect(new TextDecoder().decode(await store.get('fresh/k'))).to.equal('second');
      expect(await store.head('fresh/k')).to.deep.equal({ key: 'fresh/k', size: 6 });
      expect(new TextDecoder().decode(await store.getRange('fresh/k', 0, 3))).to.equal('sec');
      await expectCode(store.getRange('fresh/k', 6, 7), ErrorCode.InvalidArgument);
      await store.delete('fresh/k');
      await expectCode(store.get('fresh/k'), ErrorCode.NotFound);
      await expectCode(store.getRange('fresh/k', 0, 1), ErrorCode.NotFound);
      expect(await store.head('fresh/k')).to.equal(undefined);
    });

    it('delete removes and is idempotent', async () => {
      await store.put('del/x', text('x'));
      await store.put('del/sub/y', text('y'));
      await store.delete('del/x');
      await store.delete('del/x');
      await store.delete('del/never-existed');
      await expectCode(store.get('del/x'), ErrorCode.NotFound);
      expect(await store.head('del/x')).to.equal(undefined);
      expect((await store.list('del/')).map((o) => o.key)).to.deep.equal(['del/sub/y']);
      await store.delete('del/sub/y');
      expect(await store.list('del/')).to.deep.equal([]);
      // A key can be written again after its "directory" emptied.
      await store.put('del/sub/y', text('again'));
      expect(new TextDecoder().decode(await store.get('del/sub/y'))).to.equal('again');
    });

    // Streaming puts (ObjectStore.upload): a merge writes its SST as it builds it. 9 MiB is more
    // than one S3 part (8 MiB by default), so the S3 store runs a real multipart upload here.
    const MiB = 1024 * 1024;
    const chunked = (sizes: number[], seed: number) => sizes.map((n, i) => pattern(n, seed + i));
    const joined = (chunks: Uint8Array[]) => Buffer.concat(chunks);

    it('an upload in chunks round-trips, and nothing is visible under the key before complete()', async () => {
      const chunks = chunked([3 * MiB, 3 * MiB, 3 * MiB, 1000], 40);
      const upload = store.upload('up/big.sst');
      for (const c of chunks) await upload.write(c);
      expect(await store.head('up/big.sst'), 'head before complete').to.equal(undefined);
      expect(await store.list('up/'), 'list before complete').to.deep.equal([]);
      await expectCode(store.get('up/big.sst'), ErrorCode.NotFound);
      const size = 9 * MiB + 1000;
      expect(await upload.complete()).to.deep.equal({ key: 'up/big.sst', size });
      expect(await store.head('up/big.sst')).to.deep.equal({ key: 'up/big.sst', size });
      expect(Buffer.from(await store.get('up/big.sst')).equals(joined(chunks))).to.equal(true);
      const mid = await store.getRange('up/big.sst', 3 * MiB - 10, 20);
      expect(Buffer.from(mid).equals(joined(chunks).subarray(3 * MiB - 10, 3 * MiB + 10))).to.equal(true);
      await store.delete('up/big.sst');
    });

    it('an upload over an existing object leaves the old one readable until complete(), then the new one', async () => {
      await store.put('up/over', text('old version'));
      expect(new TextDecoder().decode(await store.get('up/over'))).to.equal('old version');
      const upload = store.upload('up/over');
      await upload.write(text('new '));
      await upload.write(text('version, longer'));
      expect(new TextDecoder().decode(await store.get('up/over'))).to.equal('old version');
      await upload.complete();
      expect(new TextDecoder().decode(await store.get('up/over'))).to.equal('new version, longer');
      expect((await store.head('up/over'))?.size).to.equal(19);
    });

    it('an empty upload stores an empty object', async () => {
      const upload = store.upload('up/empty');
      expect(await upload.complete()).to.deep.equal({ key: 'up/empty', size: 0 });
      expect((await store.get('up/empty')).byteLength).to.equal(0);
    });

    it('an aborted upload leaves nothing (an older object stays as it was) and takes no more calls', async () => {
      const fresh = store.upload('up/aborted/new');
      for (const c of chunked([3 * MiB, 3 * MiB, 3 * MiB], 50)) await fresh.write(c);
      await fresh.abort();
      await fresh.abort(); // idempotent
      expect(await store.head('up/aborted/new')).to.equal(undefined);
      expect(await store.list('up/aborted/')).to.deep.equal([]);
      await expectCode(fresh.write(text('more')), ErrorCode.InvalidArgument);
      await expectCode(fresh.complete(), ErrorCode.InvalidArgument);

      await store.put('up/aborted/old', text('kept'));
      const over = store.upload('up/aborted/old');
      await over.write(pattern(1000, 60));
      await over.abort();
      expect(new TextDecoder().decode(await store.get('up/aborted/old'))).to.equal('kept');
      expect((await store.list('up/aborted/')).map((o) => o.key)).to.deep.equal(['up/aborted/old']);
    });

    it('a writer that fails mid-upload leaves nothing under the key (putChunks aborts)', async () => {
      const boom = new Error('the merge failed');
      async function* failing() {
        yield pattern(3 * MiB, 70);
        yield pattern(6 * MiB, 71);
        throw boom;
      }
      let caught: unknown;
      await putChunks(store, 'up/failed', failing()).catch((err: unknown) => {
        caught = err;
      });
      expect(caught).to.equal(boom);
      expect(await store.head('up/failed')).to.equal(undefined);
      expect(await store.list('up/failed')).to.deep.equal([]);
      const meta = await putChunks(store, 'up/failed', [text('a'), text('bc')]);
      expect(meta).to.deep.equal({ key: 'up/failed', size: 3 });
      expect(new TextDecoder().decode(await store.get('up/failed'))).to.equal('abc');
    });

    it('rejects invalid keys with INVALID_ARGUMENT', async () => {
      const longKey = Array.from({ length: 5 }, () => 'x'.repeat(205)).join('/');
      const bad = ['', '/abs', 'a/../b', '..', 'a/./b', 'back\\slash', 'a//b', 'trailing/', 'nul\u0000byte', longKey, 'y'.repeat(256)];
      for (const key of bad) {
        await expectCode(store.put(key, text('v')), ErrorCode.InvalidArgument);
        await expectCode(store.get(key), ErrorCode.InvalidArgument);
        await expectCode(store.head(key), ErrorCode.InvalidArgument);
        await expectCode(store.delete(key), ErrorCode.InvalidArgument);
        await expectCode(store.getRange(key, 0, 1), ErrorCode.InvalidArgument);
        await expectCode(Promise.resolve().then(() => store.upload(key)), ErrorCode.InvalidArgument);
      }
      await expectCode(store.list('../'), ErrorCode.InvalidArgument);
      // Long keys are fine (kept below 1024 bytes so a backend prefix still fits, and segments
      // short enough for s3rver's on-disk suffix); multi-byte characters count in bytes.
      const ok = Array.from({ length: 5 }, () => 'k'.repeat(180)).join('/');
      await store.put(ok, text('v'));
      expect((await store.head(ok))?.size).to.equal(1);
      await expectCode(store.put(`e/${'é'.repeat(128)}`, text('v')), ErrorCode.InvalidArgument);
      await store.put(`e/${'é'.repeat(100)}`, text('v'));
    });

    it('handles non-ASCII keys', async () => {
      await store.put('utf8/zoë/数据', text('v'));
      expect((await store.list('utf8/')).map((o) => o.key)).to.deep.equal(['utf8/zoë/数据']);
      expect(new TextDecoder().decode(await store.get('utf8/zoë/数据'))).to.equal('v');
    });

    // Skipped where the backend under test is a stand-in that cannot honour it; the title says
    // so in the skip listing (s3rver writes a PUT body straight into the destination file).
    const concurrentPuts = skip.has('concurrent-puts') ? it.skip : it;
    const skipNote = skip.has('concurrent-puts') ? ' [skipped: the test server is not atomic per PUT; real S3 is]' : '';
    concurrentPuts(`concurrent puts of one key leave one complete version${skipNote}`, async () => {
      const versions = [pattern(200_000, 21), pattern(150_000, 22), pattern(100_000, 23)];
      await Promise.all(versions.map((v) => store.put('race/k', v)));
      const got = Buffer.from(await store.get('race/k'));
      expect(versions.some((v) => got.equals(Buffer.from(v)))).to.equal(true);
    });
  });
}
