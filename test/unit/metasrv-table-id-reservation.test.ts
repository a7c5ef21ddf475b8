// Finding M34 (docs/correctness.md): table ids after a lost or restored catalog. The allocator is
// raised at a start above every table id the object store names (2c: region folders; DT2: drop
// records), but a table created and lost with its catalog before any flush leaves nothing there;
// with the node holding its replica down (not reporting) when the next CreateTable runs, that table
// gets the same id — the same region ids and, from the same allocator, the same peer ids as a
// replica still on the down node's disk (the simulator's `balance` campaign, engine seed 390). Now
// CreateTable reserves its table id in the object store (table-id-object.ts) before it saves or
// opens anything, and a start's listing reads the reservations.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { NodeDef } from '../../src/metasrv/catalog.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { TABLE_ID_OBJECT_PREFIX, tableIdObjectKey } from '../../src/metasrv/table-id-object.js';
import { DelegatingObjectStore, FsObjectStore } from '../../src/object-store/index.js';
import { MemoryCatalog, catalogNodes, createOneRegionTable, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'table-id-reservation';
const addr = (n: number) => `127.0.0.1:${23_400 + n}`;

/** An object store whose puts under the reservations' prefix fail while `refusing`. */
class RefusingReservations extends DelegatingObjectStore {
  refusing = false;
  override put(key: string, bytes: Uint8Array): Promise<void> {
    if (this.refusing && key.startsWith(TABLE_ID_OBJECT_PREFIX)) return Promise.reject(new Error('EIO (object store refusing writes)'));
    return super.put(key, bytes);
  }
}

describe('metasrv: a table id is reserved in the object store before it is handed out (finding M34)', function () {
  this.timeout(20_000);
  let dir: string;
  const cores: MetasrvCore[] = [];

  afterEach(() => {
    for (const c of cores.splice(0)) c.halt();
    opened.length = 0;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A catalog with nodes 1–3 registered and no table (the allocator at 1024): an empty data dir's, or a copy from before any table. */
  function freshCatalog(): MemoryCatalog {
    const catalog = new MemoryCatalog(CLUSTER);
    const nodes: NodeDef[] = catalogNodes([1, 2, 3], addr, true);
    for (const n of nodes) catalog.state.nodes[n.nodeId] = n;
    return catalog;
  }

  /** Regions the metasrvs asked a datanode to open (CreateTable's opens). */
  const opened: string[] = [];

  async function start(store: DelegatingObjectStore, catalog: MemoryCatalog): Promise<MetasrvCore> {
    const c = await startMetasrvCore(
      CLUSTER,
      {
        openRegion: async (_addr: string, ins: { region_id: string }) => {
          opened.push(ins.region_id);
          return {} as never;
        },
        fenceRegion: async () => ({}) as never,
      } as never,
      catalog,
      undefined,
      undefined,
      { storage: { type: 'fs', root: '/unused' } },
      store,
    );
    cores.push(c);
    for (const n of [1, 2, 3]) await c.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, () => {});
    return c;
  }

  it('a table created and lost with its catalog before any flush: the next metasrv, on an older catalog, gives the next table another id', async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-table-id-reservation-'));
    const store = new RefusingReservations(new FsObjectStore(join(dir, 'objects')));
    const first = await start(store, freshCatalog());
    await createOneRegionTable(first, 'token-a');
    expect(first.catalog.tables.t?.tableId).to.equal(1024);
    expect(await store.listPrefixes('regions/'), 'nothing flushed: no region folder').to.deep.equal([]);
    first.halt();
    // The catalog is lost (or a copy from before the table is put back); the node holding the
    // table's replica is down, so no report names table 1024 either.
    const second = await start(store, freshCatalog());
    await createOneRegionTable(second, 'token-b');
    expect(second.catalog.tables.t?.tableId, 'not the lost table\'s id').to.equal(1025);
    expect((await store.list(TABLE_ID_OBJECT_PREFIX)).map((o) => o.key)).to.deep.equal([tableIdObjectKey(1024), tableIdObjectKey(1025)]);
  });

  it('a reservation that cannot be written fails the CreateTable (retryable) with nothing saved or opened; the id is skipped', async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-table-id-reservation-'));
    const store = new RefusingReservations(new FsObjectStore(join(dir, 'objects')));
    const catalog = freshCatalog();
    const core = await start(store, catalog);
    store.refusing = true;
    let refused: unknown;
    try {
      await createOneRegionTable(core, 'token-c');
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), String(refused)).to.equal(true);
    expect(String(refused)).to.match(/cannot reserve table id 1024/);
    expect(core.catalog.tables.t, 'nothing created').to.equal(undefined);
    expect(catalog.state.tables.t, 'nothing saved').to.equal(undefined);
    expect(opened, 'nothing opened').to.deep.equal([]);
    store.refusing = false;
    await createOneRegionTable(core, 'token-c');
    expect(core.catalog.tables.t?.tableId, 'the refused id is not handed out later').to.equal(1025);
    expect((await store.list(TABLE_ID_OBJECT_PREFIX)).map((o) => o.key)).to.deep.equal([tableIdObjectKey(1025)]);
  });
});
