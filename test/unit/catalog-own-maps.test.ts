// The catalog's keyed maps (tables, regions, nodes, procedures, droppedRegions, createTokens,
// unreadableProcedures) are keyed by names and ids from outside: table names from clients, region
// and node ids from heartbeats. Decoded from JSON or created as `{}`, they inherited
// Object.prototype, so any lookup written as `catalog.regions[id]` found a "region" for
// `constructor` or `toString` (finding I2 fixed the lookups it found, one by one). Now every such
// map has no prototype, at decode and at creation (leftover 3), and the stored bytes are exactly
// what they were: encode(decode(x)) is x.
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { type CatalogState, addTable, dropTable, emptyCatalog } from '../../src/metasrv/catalog.js';
import { decodeCatalog, encodeCatalog, upgradeCatalog } from '../../src/metasrv/catalog-store.js';
import { MemoryCatalog, createOneRegionTable, startMetasrvCore } from '../fixtures/metasrv-core.js';

const MAP_FIELDS = ['tables', 'regions', 'nodes', 'procedures', 'droppedRegions', 'createTokens', 'unreadableProcedures'] as const;
const INHERITED = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__proto__'];

/** Every keyed map `catalog` has (at least `expected` of them) has no prototype, and no inherited name is found in it. */
function expectOwnMaps(where: string, catalog: CatalogState, expected: readonly (typeof MAP_FIELDS)[number][]): void {
  for (const field of expected) expect(catalog[field], `${where}: ${field} present`).to.not.equal(undefined);
  for (const field of MAP_FIELDS) {
    const map = catalog[field] as Record<string, unknown> | undefined;
    if (map === undefined) continue;
    for (const name of INHERITED) {
      expect(map[name], `${where}: ${field}[${JSON.stringify(name)}]`).to.equal(undefined);
      expect(name in map, `${where}: ${JSON.stringify(name)} in ${field}`).to.equal(false);
    }
    expect(Object.getPrototypeOf(map), `${where}: the prototype of ${field}`).to.equal(null);
  }
}

/** test/fixtures/procedure-records-v1.json's catalog (tables, regions, nodes, procedures), as plain JSON. */
function fixtureCatalog(): CatalogState {
  return (JSON.parse(readFileSync('test/fixtures/procedure-records-v1.json', 'utf8')) as { catalog: CatalogState }).catalog;
}

/** The fixture with every optional map too: a dropped table's regions, a create token, a procedure this version cannot run. */
function fullCatalog(): CatalogState {
  const c = fixtureCatalog() as CatalogState & Record<string, unknown>;
  c.procedures['mystery-6'] = { id: 'mystery-6', kind: 'no-such-kind', step: 'x', data: {} } as never;
  c.droppedRegions = { '4402341478400': 1_700_000_000_000, '4402341478401': 1_700_000_000_001 };
  c.createTokens = { t: 'token-of-t' };
  c.unreadableProcedures = { 'old-1': { record: { kind: 'gone' }, error: 'unknown kind gone' } } as never;
  return c;
}

describe('metasrv catalog: keyed maps without a prototype (leftover 3)', () => {
  it('a decoded catalog (and its upgrade) finds no inherited member in any of its maps', () => {
    const decoded = decodeCatalog(encodeCatalog(fullCatalog()), 'in the test');
    expectOwnMaps('decoded', decoded, MAP_FIELDS);
    const upgraded = upgradeCatalog(decodeCatalog(encodeCatalog(fullCatalog()), 'in the test'));
    expect(Object.keys(upgraded.unreadableProcedures ?? {}), 'set aside by the upgrade').to.include('mystery-6');
    expectOwnMaps('upgraded', upgraded, MAP_FIELDS);
  });

  it('maps the metasrv creates (an empty catalog, a drop, a create token) find no inherited member', async () => {
    const catalog = emptyCatalog('c');
    expectOwnMaps('empty', catalog, ['tables', 'regions', 'nodes', 'procedures']);
    for (const n of [1, 2, 3]) catalog.nodes[n] = { nodeId: n, addr: `a${n}`, httpAddr: `h${n}`, lastHeartbeatMs: 0, state: 'alive' };
    addTable(catalog, { name: 'gone', regionCount: 2, columns: [] }, 3);
    dropTable(catalog, 'gone', 1);
    expectOwnMaps('after a drop', catalog, ['droppedRegions']);

    // CreateTable with a request token, through the metasrv core (the map it keeps the token in).
    const CLUSTER = 'own-maps';
    const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, new MemoryCatalog(CLUSTER));
    try {
      for (const n of [1, 2, 3]) {
        const addr = `127.0.0.1:${21_100 + n}`;
        await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr, http_addr: addr, store_id: `store-${n}` } as never, () => {});
        await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr, replicas: [], store_id: `store-${n}` } as never, () => {});
      }
      await createOneRegionTable(core, 'token-of-t');
      expect(core.catalog.createTokens?.['t']).to.equal('token-of-t');
      expectOwnMaps('the core after CreateTable', core.catalog, ['tables', 'regions', 'nodes', 'procedures', 'createTokens']);
    } finally {
      core.halt();
    }
  });

  it('encode(decode(x)) is x, byte for byte, for the fixture catalogs and one the metasrv wrote', () => {
    const written = emptyCatalog('c');
    for (const n of [10, 2, 1]) written.nodes[n] = { nodeId: n, addr: `a${n}`, httpAddr: `h${n}`, lastHeartbeatMs: n, state: 'alive' };
    addTable(written, { name: 'b', regionCount: 3, columns: [] }, 3);
    addTable(written, { name: 'a', regionCount: 1, columns: [] }, 3);
    dropTable(written, 'b', 5);
    written.createTokens = { a: 'x' };
    for (const [name, catalog] of [
      ['procedure-records-v1.json', fixtureCatalog()],
      ['the fixture with every optional map', fullCatalog()],
      ['a catalog built by addTable/dropTable', written],
    ] as const) {
      const x = encodeCatalog(catalog);
      const decoded = decodeCatalog(x, 'in the test');
      expect(Buffer.from(encodeCatalog(decoded)).equals(Buffer.from(x)), `${name}: re-encoded bytes differ`).to.equal(true);
      // And as JSON, the same text a plain object with those entries gives.
      expect(JSON.stringify(decoded)).to.equal(JSON.stringify(JSON.parse(new TextDecoder().decode(x.subarray(9)))));
    }
  });
});
