// A datanode restarted on a restored copy of its data dir (a volume snapshot, a backup of the
// dir, a stale disk put back) keeps its store id, so store ids alone took it for the same
// incarnation: its replicas reopened with their term, vote and log rolled back to the copy — a
// vote given twice in a term, entries it acknowledged gone (docs/raft-rules.md). Every start now
// counts itself in the data dir (common/store-id.ts `recordStart`) and vouches for the starts it
// knows (its last confirmed one and those since); the metasrv records the newest start it
// registered per node, and refuses CORRUPTION a registration of that store from a dir that does
// not know it (unless the dir's confirmed start is newer: then the catalog is the one behind). A
// heartbeat from another start than the one registered is sent to register again
// (docs/failover.md, "A data dir restored from a copy").
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, catalogNodes, oneRegionCatalog } from '../fixtures/metasrv-core.js';
import { startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'restored-data-dir';
const addr = (n: number) => `127.0.0.1:${23_500 + n}`;

describe('metasrv: a datanode on a restored copy of its data dir', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  const start = async (): Promise<MetasrvCore> => {
    const s = new MemoryCatalog(CLUSTER);
    s.state = oneRegionCatalog(CLUSTER, { replicas: [1, 2, 3].map((n) => ({ peerId: n, nodeId: n })), leaderNodeId: 2, confVersion: 3, confIndex: 10 }, { nextPeerId: 10, nodes: catalogNodes([1, 2, 3], addr, true) });
    const manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
    return core;
  };
  /** A registration of node `n`'s store at start `count`/`id`, vouching for `known` (its confirmed start first) and confirmed at `confirmed`. */
  const register = (c: MetasrvCore, n: number, store: string, count: number, id: string, known: string[] = [id], confirmed = 0) =>
    c.registerNode(
      { cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: '', store_id: store, start_count: String(count), start_id: id, known_start_ids: known, confirmed_start_count: String(confirmed) } as never,
      () => {},
    );
  const beat = (c: MetasrvCore, n: number, store: string, count: number, id: string) =>
    c.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: store, start_count: String(count), start_id: id } as never, () => {});
  const refusal = async (p: Promise<unknown>): Promise<unknown> => {
    try {
      await p;
    } catch (err) {
      return err;
    }
    return undefined;
  };
  const lostOn3 = (c: MetasrvCore) => Object.values(c.catalog.regions).flatMap((r) => r.replicas.filter((p) => p.nodeId === 3 && p.lost !== undefined));

  it('a dir that does not know the registered start is refused CORRUPTION, however often it starts again; nothing of it is used', async () => {
    const c = await start();
    // The real dir: start 4 registered (confirmed), start 5 registered.
    await register(c, 3, 'store-3', 4, 's4', ['s3', 's4'], 3);
    await register(c, 3, 'store-3', 5, 's5', ['s4', 's5'], 4);
    const before = JSON.stringify(c.catalog.nodes[3]);
    // The dir as it was at start 4 (confirmed), put back: its starts count 5, 6, 7, ... and
    // never include s5 — nor does a copy taken earlier, or one whose starts never registered.
    for (const [count, known, confirmed] of [
      [5, ['s4', 'c5'], 4],
      [6, ['s4', 'c5', 'c6'], 4],
      [9, ['s4', 'c5', 'c6', 'c7', 'c8', 'c9'], 4],
      [3, ['s2', 'c3'], 2],
    ] as const) {
      const err = await refusal(register(c, 3, 'store-3', count, known.at(-1)!, [...known], confirmed));
      expect(isRegionDbError(err, ErrorCode.Corruption), `start ${count} (${known.join(',')}): ${String(err)}`).to.equal(true);
      expect((err as Error).message).to.match(/restored copy/);
      expect(JSON.stringify(c.catalog.nodes[3]), 'the node record untouched by the refused registration').to.equal(before);
      expect(lostOn3(c), 'no replica marked lost').to.deep.equal([]);
    }
  });

  it('a datanode refusing its own start as a copy (K2: the object store\'s record of its starts) is refused CORRUPTION and named by status; nothing of the request is used; its next good registration clears it', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 5, 's5', ['s4', 's5'], 4);
    const before = JSON.stringify(c.catalog.nodes[3]);
    const err = await refusal(
      c.registerNode(
        { cluster_id: CLUSTER, node_id: '3', addr: addr(3), http_addr: '', store_id: 'store-3', start_count: '6', start_id: 'c6', known_start_ids: ['s4', 'c6'], confirmed_start_count: '4', refused_as_copy: 'the object store records start 7 (s7) of store store-3 as registered, which this data dir does not know' } as never,
        () => {},
      ),
    );
    expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/refuses its own start as a restored copy/);
    expect(JSON.stringify(c.catalog.nodes[3]), 'the node record untouched').to.equal(before);
    const refused = (await c.listNodes()).nodes!.find((n) => n.node_id === '3')!.refused;
    expect(refused, '`regiondb status` names it, with the store and address that sent it').to.match(/restored copy of its data dir \(store store-3 at 127\.0\.0\.1:\d+ refuses itself: the object store records start 7/);
    await register(c, 3, 'store-3', 6, 's6', ['s5', 's6'], 5);
    expect((await c.listNodes()).nodes!.find((n) => n.node_id === '3')!.refused).to.equal('');
  });

  it('the real dir passes: the registered start again, a later start that knows it, a start after one whose answer was lost', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 5, 's5', ['s4', 's5'], 4);
    // The registered start asking again (a re-registration after a NOT_FOUND heartbeat).
    await register(c, 3, 'store-3', 5, 's5', ['s5'], 5);
    // The metasrv recorded s5 but the datanode died before confirming it: its next start still vouches for s5.
    await register(c, 3, 'store-3', 6, 's6', ['s4', 's5', 's6'], 4);
    await register(c, 3, 'store-3', 7, 's7', ['s6', 's7'], 6);
    expect(c.catalog.nodes[3]).to.include({ startCount: 7, startId: 's7' });
  });

  it('a catalog older than the dir (restored from an older copy) lets the dir in; a new store counts from 1; a datanode or a record without counts is not judged', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 4, 's4');
    // The catalog missed starts 5–8 (restored from an older copy): the dir's confirmed start 8 is newer.
    await register(c, 3, 'store-3', 9, 's9', ['s8', 's9'], 8);
    expect(c.catalog.nodes[3]).to.include({ startCount: 9, startId: 's9' });
    // A new store (an empty data dir): its first start is not judged against the old store's.
    await register(c, 3, 'store-3-wiped', 1, 'fresh-1', ['fresh-1'], 0);
    expect(c.catalog.nodes[3]).to.include({ storeId: 'store-3-wiped', startCount: 1 });
    // A datanode from before start counts (0) registers and beats as before, the record kept.
    await register(c, 3, 'store-3-wiped', 0, '', [], 0);
    expect(c.catalog.nodes[3]).to.include({ startCount: 1 });
    // A record from before start counts (node 2's) takes the first start it is given.
    await register(c, 2, 'store-2', 3, 's3');
    expect(c.catalog.nodes[2]).to.include({ startCount: 3 });
  });

  it('a store changed by a heartbeat (a catalog older than a wipe) drops the old store\'s start: the new store\'s registration passes (found by the simulator)', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 3, 's3');
    // The node was wiped and the catalog restored from a copy that never saw the new store's
    // registration: the new store's heartbeat is the first the catalog hears of it.
    await beat(c, 3, 'store-3-new', 2, 'n2');
    expect(c.catalog.nodes[3]!.storeId).to.equal('store-3-new');
    expect(c.catalog.nodes[3]!.startCount, "the old store's start is not the new store's").to.equal(undefined);
    await register(c, 3, 'store-3-new', 2, 'n2', ['n1', 'n2'], 1);
    expect(c.catalog.nodes[3]).to.include({ storeId: 'store-3-new', startCount: 2, startId: 'n2' });
  });

  it('a heartbeat from another start than the registered one is refused NOT_FOUND (register again), before it counts for liveness', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 5, 's5');
    await beat(c, 3, 'store-3', 5, 's5');
    for (const [count, id] of [
      [5, 'c5'],
      [4, 's4'],
      [6, 's6'],
    ] as const) {
      const err = await refusal(beat(c, 3, 'store-3', count, id));
      expect(isRegionDbError(err, ErrorCode.NotFound), `start ${count} (${id}): ${String(err)}`).to.equal(true);
    }
    await beat(c, 3, 'store-3', 0, '');
  });
});
