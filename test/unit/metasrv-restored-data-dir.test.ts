// A datanode restarted on a restored copy of its data dir (a volume snapshot, a backup of the
// dir, a stale disk put back) keeps its store id, so store ids alone took it for the same
// incarnation: its replicas reopened with their term, vote and log rolled back to the copy — a
// vote given twice in a term, entries it acknowledged gone (docs/raft-rules.md). Every start now
// counts itself in the data dir (common/store-id.ts `recordStart`) and the metasrv records the
// newest start of each node's store: a registration of that store at a start seen passed (a lower
// count, or the same count under another id) is refused CORRUPTION, and a heartbeat from another
// start than the one registered is sent to register again (docs/failover.md, "A data dir restored
// from a copy").
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
  const register = (c: MetasrvCore, n: number, store: string, count: number, id: string) =>
    c.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: '', store_id: store, start_count: String(count), start_id: id } as never, () => {});
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

  it('a registration at an older start of the same store is refused CORRUPTION, nothing of it used; the current start registers again', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 4, 'start-4');
    await register(c, 3, 'store-3', 5, 'start-5');
    const before = JSON.stringify(c.catalog.nodes[3]);
    // The dir as it was at start 4, put back: its next start counts 5 again — under another id —
    // or, copied earlier, less.
    for (const [count, id] of [
      [5, 'copy-start-5'],
      [3, 'copy-start-3'],
    ] as const) {
      const err = await refusal(register(c, 3, 'store-3', count, id));
      expect(isRegionDbError(err, ErrorCode.Corruption), `start ${count} (${id}): ${String(err)}`).to.equal(true);
      expect((err as Error).message).to.match(/restored copy/);
      expect(JSON.stringify(c.catalog.nodes[3]), 'the node record untouched by the refused registration').to.equal(before);
      expect(c.catalog.regions[Object.keys(c.catalog.regions)[0]!]!.replicas.find((p) => p.nodeId === 3)?.lost, 'no replica marked lost').to.equal(undefined);
    }
    // The registered start asking again (a re-registration after a NOT_FOUND heartbeat) passes,
    // and so does a later start of the real dir.
    await register(c, 3, 'store-3', 5, 'start-5');
    await register(c, 3, 'store-3', 6, 'start-6');
    expect(c.catalog.nodes[3]).to.include({ startCount: 6, startId: 'start-6' });
  });

  it('a new store (an empty data dir) counts from 1 again and is not taken for a copy; a datanode or a record without counts is not judged', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 9, 'start-9');
    await register(c, 3, 'store-3-wiped', 1, 'fresh-1');
    expect(c.catalog.nodes[3]).to.include({ storeId: 'store-3-wiped', startCount: 1 });
    // A datanode from before start counts (0) registers and beats as before, its record kept.
    await register(c, 3, 'store-3-wiped', 0, '');
    expect(c.catalog.nodes[3]).to.include({ startCount: 1 });
    // A record from before start counts (node 2's) takes the first count it is given.
    await register(c, 2, 'store-2', 3, 'start-3');
    expect(c.catalog.nodes[2]).to.include({ startCount: 3 });
  });

  it('a heartbeat from another start than the registered one is refused NOT_FOUND (register again), before it counts for liveness', async () => {
    const c = await start();
    await register(c, 3, 'store-3', 5, 'start-5');
    await beat(c, 3, 'store-3', 5, 'start-5');
    for (const [count, id] of [
      [5, 'copy-start-5'],
      [4, 'start-4'],
      [6, 'start-6'],
    ] as const) {
      const err = await refusal(beat(c, 3, 'store-3', count, id));
      expect(isRegionDbError(err, ErrorCode.NotFound), `start ${count} (${id}): ${String(err)}`).to.equal(true);
    }
    await beat(c, 3, 'store-3', 0, '');
  });
});
