// Review finding Y4: the catalog's copies in the object store (docs/metasrv-ha.md, "Losing a
// majority") were named by the writer's wall clock, and both `meta seed` (the newest copy) and the
// pruning (the newest 10 kept) went by that name. A copy written while a metasrv's clock ran
// ahead — a step forward later corrected, or a group member whose clock is ahead of the others' —
// stayed "the newest" until the clocks caught up with it: `meta seed` restored it instead of the
// copies written after it (the tables created since missing from the catalog: their routes
// NOT_FOUND, a CreateTable of the name making an empty table), and with ten such copies every
// later copy was deleted right after it was written. A copy's name now never sorts below one
// already in the store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { type CatalogState, addTable, emptyCatalog } from '../../src/metasrv/catalog.js';
import { CATALOG_BACKUP_PREFIX, backupCatalog, newestCatalogBackup } from '../../src/metasrv/catalog-backup.js';
import { FsObjectStore } from '../../src/object-store/index.js';

const CLUSTER = 'backup-order';
const T = 1_800_000_000_000;
const DAY = 86_400_000;
const columns = [
  { name: 'host', type: 'string' as const, semantic: 'tag' as const },
  { name: 'ts', type: 'timestamp_ms' as const, semantic: 'timestamp' as const },
];

function withNode(c: CatalogState): CatalogState {
  c.nodes[1] = { nodeId: 1, addr: '127.0.0.1:1', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
  return c;
}

describe('catalog copies: the newest written is the newest read, whatever the writers\' clocks (review Y4)', () => {
  let dir: string;
  let store: FsObjectStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-backup-order-'));
    store = new FsObjectStore(join(dir, 'objects'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a copy written after one from a clock a day ahead is the one `meta seed` reads', async () => {
    const catalog = withNode(emptyCatalog(CLUSTER));
    const last = {};
    addTable(catalog, { name: 'a', columns, regionCount: 1 }, 1);
    await backupCatalog(store, catalog, T + DAY, last); // the clock a day ahead (stepped back later)
    addTable(catalog, { name: 'b', columns, regionCount: 1 }, 1);
    await backupCatalog(store, catalog, T + 60_000, last); // the clock right again
    const newest = await newestCatalogBackup(store, CLUSTER);
    expect(Object.keys(newest!.catalog.tables).sort(), `tables of the copy read (${newest!.key})`).to.deep.equal(['a', 'b']);
  });

  it('ten copies from a clock ahead do not make every later copy pruned as soon as it is written', async () => {
    const catalog = withNode(emptyCatalog(CLUSTER));
    const last = {};
    for (let i = 0; i < 10; i++) {
      addTable(catalog, { name: `ahead${i}`, columns, regionCount: 1 }, 1);
      await backupCatalog(store, catalog, T + DAY + i * 60_000, last);
    }
    addTable(catalog, { name: 'later', columns, regionCount: 1 }, 1);
    const key = await backupCatalog(store, catalog, T + 60_000, last);
    const keys = (await store.list(CATALOG_BACKUP_PREFIX)).map((o) => o.key);
    expect(keys, `the copy just written (${key})`).to.include(key);
    expect((await newestCatalogBackup(store, CLUSTER))!.catalog.tables.later, 'the latest copy read back').to.not.equal(undefined);
  });
});
