// CreateTable's request token (docs/ddl.md): a retry of a CreateTable whose answer was lost is
// answered with the table that call created. Two ways that answer went wrong, both found from the
// simulator's engine seed 3454 of the wide mix (session 25):
// - the retry reached the metasrv while the first attempt was still in it (its caller had timed
//   out), both waiting out the start's quiet period: the first created the table meanwhile, and
//   the retry, whose token check came before the wait, was refused ALREADY_EXISTS;
// - the retry's answer did not wait for the save that wrote the table: a table not yet durable
//   (its save could still fail, the catalog then without it) was answered as created.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, createOneRegionTable, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'create-token';

async function start(catalog = new MemoryCatalog(CLUSTER)): Promise<MetasrvCore> {
  const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, catalog);
  for (const n of [1, 2, 3]) {
    const addr = `127.0.0.1:${21_400 + n}`;
    await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr, http_addr: addr, store_id: `store-${n}` } as never, () => {});
    await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr, replicas: [], store_id: `store-${n}` } as never, () => {});
  }
  return core;
}

const settled = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value, error: undefined }),
    (error: unknown) => ({ value: undefined, error }),
  );

/** Lets the event loop turn a few times (saves, awaits), without any clock. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((ok) => setImmediate(ok));
}

describe('metasrv: CreateTable retried with its request token (seed 3454)', function () {
  this.timeout(20_000);
  let core: MetasrvCore | undefined;

  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('a retry that arrives while the first attempt still waits out the quiet period gets the table the first attempt creates, not ALREADY_EXISTS', async () => {
    core = await start();
    // Both calls reach the start's quiet period before either creates anything.
    const first = settled(createOneRegionTable(core, 'token-a'));
    const retry = settled(createOneRegionTable(core, 'token-a'));
    const [a, b] = await Promise.all([first, retry]);
    expect(a.error, String(a.error)).to.equal(undefined);
    expect(b.error, `the retry: ${String(b.error)}`).to.equal(undefined);
    expect(b.value?.table?.table_id, 'the same table').to.equal(a.value?.table?.table_id);
    // Another token for the same name is still refused.
    const other = await settled(createOneRegionTable(core, 'token-b'));
    expect(isRegionDbError(other.error, ErrorCode.AlreadyExists), String(other.error)).to.equal(true);
  });

  it("a retry's answer waits for the save of the table its first attempt created, and is not given if that save fails", async () => {
    const catalog = new MemoryCatalog(CLUSTER);
    core = await start(catalog);
    catalog.holdFrom = (state) => state.tables['t'] !== undefined;
    const first = settled(createOneRegionTable(core, 'token-c'));
    for (let i = 0; i < 200 && !catalog.held?.length; i++) await new Promise((ok) => setTimeout(ok, 10)); // the quiet period, then the save
    expect(catalog.held?.length, "the first attempt's save is held").to.equal(1);
    let retryDone = false;
    const retry = settled(createOneRegionTable(core, 'token-c')).finally(() => {
      retryDone = true;
    });
    await turns(20);
    expect(retryDone, 'the retry answered while the table was not saved').to.equal(false);
    catalog.release(new Error('EIO: simulated catalog write failure'));
    const [a, b] = await Promise.all([first, retry]);
    expect(a.error, 'the first attempt fails with its save').to.not.equal(undefined);
    expect(b.value, 'no table answered to the retry').to.equal(undefined);
    expect(isRegionDbError(b.error, ErrorCode.Unavailable), `the retry's outcome is unknown, not a table: ${String(b.error)}`).to.equal(true);
    expect(catalog.state.tables['t'], 'the catalog on disk has no table t').to.equal(undefined);
  });

  it("a retry during the first attempt's save is answered once the save lands, with that table", async () => {
    const catalog = new MemoryCatalog(CLUSTER);
    core = await start(catalog);
    catalog.holdFrom = (state) => state.tables['t'] !== undefined;
    const first = settled(createOneRegionTable(core, 'token-d'));
    for (let i = 0; i < 200 && !catalog.held?.length; i++) await new Promise((ok) => setTimeout(ok, 10));
    const retry = settled(createOneRegionTable(core, 'token-d'));
    await turns(20);
    catalog.release();
    const [a, b] = await Promise.all([first, retry]);
    expect(a.error, String(a.error)).to.equal(undefined);
    expect(b.error, String(b.error)).to.equal(undefined);
    expect(b.value?.table?.table_id).to.equal(a.value?.table?.table_id);
    expect(catalog.state.tables['t']?.tableId).to.equal(a.value?.table?.table_id);
  });
});
