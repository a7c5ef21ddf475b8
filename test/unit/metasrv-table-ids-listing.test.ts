// Table ids after a catalog restored from an older copy (finding 2c's rule: the allocator is
// raised above every table with objects in the object store, which the metasrv lists at start or
// takeover). Review finding Y1: when that listing failed (the object store unreachable for a
// moment at the start) nothing listed it again — CreateTable went on allocating from the restored
// catalog's allocator, and a new table got the id of a table created after the copy and dropped
// since, whose manifests and SSTs are still in the store (a drop leaves them: docs/ddl.md). The
// new table's regions then have the dropped table's manifests as their "latest" (recovery, backup,
// the standby seed and SST GC read it). In a metasrv group the listing ran after the new leader
// began acting, so a CreateTable right after a takeover — after `meta seed` from a copy — could
// allocate before the listing ended, with the same result.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { type NodeDef, makeRegionId } from '../../src/metasrv/catalog.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { DelegatingObjectStore, FsObjectStore, type ObjectMeta } from '../../src/object-store/index.js';
import { MemoryCatalog, catalogNodes, createOneRegionTable, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'table-ids-listing';
const addr = (n: number) => `127.0.0.1:${23_300 + n}`;

/**
 * An object store whose listings fail while `down` (an outage), counting the listings asked:
 * `objectListings` the prefixes of `list` (every object), `folderListings` those of `listPrefixes`.
 */
class FlakyListing extends DelegatingObjectStore {
  down = true;
  readonly objectListings: string[] = [];
  readonly folderListings: string[] = [];
  get listings(): number {
    return this.objectListings.length + this.folderListings.length;
  }
  override list(prefix: string): Promise<ObjectMeta[]> {
    this.objectListings.push(prefix);
    if (this.down) return Promise.reject(new Error('connect ECONNREFUSED (object store down)'));
    return super.list(prefix);
  }
  override listPrefixes(prefix: string): Promise<string[]> {
    this.folderListings.push(prefix);
    if (this.down) return Promise.reject(new Error('connect ECONNREFUSED (object store down)'));
    return super.listPrefixes(prefix);
  }
}

/** A catalog whose saves fail while `failing` (a disk refusing writes), loading what was saved last. */
class FailingSaves extends MemoryCatalog {
  failing = false;
  override async save(state: Parameters<MemoryCatalog['save']>[0]): Promise<void> {
    if (this.failing) throw new Error('EIO: simulated catalog write failure');
    return super.save(state);
  }
}

describe('metasrv: table ids above the object store even when its listing failed (review Y1)', function () {
  this.timeout(20_000);
  let dir: string;
  let core: MetasrvCore | undefined;

  afterEach(() => {
    core?.halt();
    core = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function setup(): Promise<{ store: FlakyListing; catalog: MemoryCatalog }> {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-table-ids-listing-'));
    const store = new FlakyListing(new FsObjectStore(join(dir, 'objects')));
    // Table 1024 was created after the catalog copy below was taken, flushed, and dropped: its
    // manifest and SST stay in the store.
    await store.inner.put(`regions/${makeRegionId(1024, 0)}/manifest/0000000000000040.manifest`, new Uint8Array([1]));
    await store.inner.put(`regions/${makeRegionId(1024, 0)}/sst/0000000000000040-1-a.sst`, new Uint8Array([1]));
    // The restored copy: three nodes registered, no table, the table id allocator at 1024.
    const catalog = new MemoryCatalog(CLUSTER);
    const nodes: NodeDef[] = catalogNodes([1, 2, 3], addr, true);
    for (const n of nodes) catalog.state.nodes[n.nodeId] = n;
    expect(catalog.state.nextTableId).to.equal(1024);
    return { store, catalog };
  }

  async function start(store: FlakyListing, catalog: MemoryCatalog): Promise<MetasrvCore> {
    const c = await startMetasrvCore(
      CLUSTER,
      { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never },
      catalog,
      undefined,
      undefined,
      { storage: { type: 'fs', root: '/unused' } },
      store,
    );
    for (const n of [1, 2, 3]) await c.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, () => {});
    return c;
  }

  it('a listing that failed at the start is made again before a table id is allocated; CreateTable is refused, retryable, while it cannot be', async () => {
    const { store, catalog } = await setup();
    core = await start(store, catalog);
    // The store is still down: no id may be handed out (it could be 1024's).
    let refused: unknown;
    try {
      await createOneRegionTable(core, 'token-1');
    } catch (err) {
      refused = err;
    }
    expect(refused, `CreateTable while the object store cannot be listed allocated table id ${core.catalog.tables.t?.tableId}`).to.not.equal(undefined);
    expect(isRegionDbError(refused, ErrorCode.Unavailable), String(refused)).to.equal(true);
    expect(core.catalog.tables.t, 'nothing created').to.equal(undefined);
    // The store is back: the listing is made again, the id is above the dropped table's.
    store.down = false;
    const created = await createOneRegionTable(core, 'token-1');
    const regionId = created.routes?.[0]?.region_id;
    expect(core.catalog.tables.t?.tableId, `new table's region ${regionId}`).to.be.above(1024);
    expect(regionId).to.not.equal(makeRegionId(1024, 0));
  });

  // Finding M12 (found by the simulator at engine seed 170, replayed at seed 85 until K1 moved the
  // metasrv traces and no seed of 1–600 met it again): the start's save of the raised allocator
  // failed (a catalog write failure) and the start failed with it — the metasrv never acted
  // again. A failed write stops it acting until one succeeds (M5), the start included.
  it('a start whose save of the raised allocator fails still starts, acts once a write succeeds, and saves the raised allocator (M12)', async () => {
    const { store, catalog } = await setup();
    store.down = false;
    const failing = new FailingSaves(CLUSTER);
    failing.state = catalog.state;
    failing.failing = true;
    core = await start(store, failing);
    let refused: unknown;
    try {
      await createOneRegionTable(core, 'token-m12');
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `CreateTable while the catalog cannot be written: ${String(refused)}`).to.equal(true);
    failing.failing = false;
    const deadline = Date.now() + 10_000;
    let created: Awaited<ReturnType<typeof createOneRegionTable>> | undefined;
    let last: unknown;
    while (!created && Date.now() < deadline) {
      core.onTickTimer(); // the tick retries the write (tryResume)
      await new Promise((r) => setTimeout(r, 50));
      for (const n of [1, 2, 3]) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, () => {});
      created = await createOneRegionTable(core, 'token-m12').catch((err: unknown) => {
        last = err;
        return undefined;
      });
    }
    expect(created, `CreateTable once the catalog can be written (last refusal: ${String(last)})`).to.not.equal(undefined);
    expect(core.catalog.tables.t?.tableId).to.be.above(1024);
    expect(failing.state.nextTableId, 'the raised allocator saved').to.be.above(1025);
  });

  // Y1's cost: the listing read every object under regions/ (1,000 a page on S3), minutes of
  // refused DDL on a large store after each start or takeover. The region folders are enough.
  it('the start lists the region folders under regions/, not the objects in them', async () => {
    const { store, catalog } = await setup();
    store.down = false;
    // Many objects in a few regions; table 1030 the highest, a folder that is no region ignored.
    for (let i = 0; i < 40; i++) await store.inner.put(`regions/${makeRegionId(1030, 2)}/sst/${String(i).padStart(4, '0')}.sst`, new Uint8Array([1]));
    await store.inner.put(`regions/${makeRegionId(1026, 0)}/replica-snapshot/2-9.manifest`, new Uint8Array([1]));
    await store.inner.put(`regions/${makeRegionId(1030, 2)}0-not-a-region/x`, new Uint8Array([1]));
    await store.inner.put(`regions/${makeRegionId(2000, 0)}`, new Uint8Array([1])); // an object, not a folder: no region
    await store.inner.put(`promotion/${makeRegionId(3000, 0)}/x`, new Uint8Array([1]));
    core = await start(store, catalog);
    expect(core.catalog.nextTableId, 'above table 1030').to.equal(1031);
    expect(store.folderListings, 'folder listings').to.deep.equal(['regions/']);
    expect(store.objectListings.filter((p) => p.startsWith('regions')), 'object listings of regions/').to.deep.equal([]);
  });

  it('a folder listing that fails refuses CreateTable until one succeeds, then allocates above every folder', async () => {
    const { store, catalog } = await setup();
    await store.inner.put(`regions/${makeRegionId(1100, 5)}/manifest/0000000000000001.manifest`, new Uint8Array([1]));
    core = await start(store, catalog);
    for (let attempt = 0; attempt < 3; attempt++) {
      const refused = await createOneRegionTable(core, 'token-f').then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isRegionDbError(refused, ErrorCode.Unavailable), `attempt ${attempt}: CreateTable allocated table id ${core.catalog.tables.t?.tableId}`).to.equal(true);
      expect(core.catalog.tables.t, 'nothing created').to.equal(undefined);
    }
    expect(store.folderListings.length, 'the start and each CreateTable listed again').to.equal(4);
    store.down = false;
    await createOneRegionTable(core, 'token-f');
    expect(core.catalog.tables.t?.tableId).to.equal(1101);
  });

  it('a listing that succeeded at the start is not made again for every CreateTable', async () => {
    const { store, catalog } = await setup();
    store.down = false;
    core = await start(store, catalog);
    expect(core.catalog.nextTableId).to.equal(1025);
    const listings = store.listings;
    await createOneRegionTable(core);
    expect(core.catalog.tables.t?.tableId).to.equal(1025);
    expect(store.listings, 'listings made by CreateTable').to.equal(listings);
  });
});
