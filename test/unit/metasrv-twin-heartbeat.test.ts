// Review finding Y2: M6/M14's guard against two processes with one node id sits in RegisterNode
// only (`checkTakeover`). Once another store at another address has taken the id over — legitimately,
// after the registered process was silent for the takeover silence: a GC pause, an event-loop
// stall, a network blip of a few seconds — the first process, still running and still registered
// as far as it knows, goes on beating. Its Heartbeat was taken as "the store changed without a
// registration" (meant for a catalog restored from an older copy): the node's store flipped back to
// it, and every replica placed on the node since the takeover — the new host's replacements — was
// marked lost; the next beat of the new host flipped it again. Each flip starts repairs of the
// replicas just placed, and the repairs' close(destroy) instructions for "node 3" go to whichever
// of the two beats next. A heartbeat from another store at another address than the registered
// one is now refused NOT_FOUND before anything of it is used (not even liveness): the datanode
// registers again, and RegisterNode's guard decides (refused while the new host is alive).
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'twin-heartbeat';
const addr = (n: number) => `127.0.0.1:${23_400 + n}`;
const TWIN_ADDR = '127.0.0.1:23499';

describe('metasrv: a node id taken over by another store — the old process beating again (review Y2)', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('the old process is refused NOT_FOUND: the node stays the new host\'s, nothing placed on it since is marked lost', async () => {
    const s = new MemoryCatalog(CLUSTER);
    s.state = oneRegionCatalog(CLUSTER, { replicas: [1, 2, 3].map((n) => ({ peerId: n, nodeId: n })), leaderNodeId: 2, confVersion: 3, confIndex: 10 }, { nextPeerId: 10, nodes: catalogNodes([1, 2, 3], addr, true) });
    const manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
    const c = core;
    const beat = (n: number, store: string, from: string, hosts: boolean) =>
      c.heartbeat(
        {
          cluster_id: CLUSTER,
          node_id: String(n),
          addr: from,
          replicas: hosts ? [replicaReport({ regionId: REGION, peerId: n, leader: n === 2, leaderNodeId: 2, voters: [1, 2, 3], confIndex: 10, term: 3 })] : [],
          store_id: store,
        } as never,
        () => {},
      );
    for (let t = 0; t < 10; t++) {
      for (const n of [1, 2, 3]) await beat(n, `store-${n}`, addr(n), true);
      manual.advance(100);
    }
    // Node 3's process stalls for 3 s (nodes 1 and 2 keep beating); meanwhile a second process
    // with node id 3 (another store, another address) registers: node 3 was silent long enough.
    for (let t = 0; t < 30; t++) {
      for (const n of [1, 2]) await beat(n, `store-${n}`, addr(n), true);
      manual.advance(100);
    }
    await c.registerNode({ cluster_id: CLUSTER, node_id: '3', addr: TWIN_ADDR, http_addr: '', store_id: 'store-3-new-host' } as never, () => {});
    expect(c.catalog.nodes[3]!.storeId).to.equal('store-3-new-host');
    expect(c.catalog.regions[REGION]!.replicas.find((p) => p.peerId === 3)?.lost, 'peer 3 lost with the takeover').to.be.a('string');
    await beat(3, 'store-3-new-host', TWIN_ADDR, false);
    // A repair in place has placed peer 4 on node 3 (its allocate step: the region has no other node).
    c.catalog.regions[REGION]!.replicas.push({ peerId: 4, nodeId: 3 });

    // The stalled process wakes up and beats as node 3, with its own store and address.
    let refused: unknown;
    try {
      await beat(3, 'store-3', addr(3), true);
    } catch (err) {
      refused = err;
    }
    const node = c.catalog.nodes[3]!;
    const peer4 = c.catalog.regions[REGION]!.replicas.find((p) => p.peerId === 4)!;
    expect(peer4.lost, 'the new host\'s replacement replica (peer 4) marked lost by the old process\'s beat').to.equal(undefined);
    expect(node.storeId, 'node 3\'s store').to.equal('store-3-new-host');
    expect(isRegionDbError(refused, ErrorCode.NotFound), `the old process's heartbeat: ${String(refused)}`).to.equal(true);
    // And it cannot register back while the new host is alive (M6's guard).
    let registration: unknown;
    try {
      await c.registerNode({ cluster_id: CLUSTER, node_id: '3', addr: addr(3), http_addr: '', store_id: 'store-3' } as never, () => {});
    } catch (err) {
      registration = err;
    }
    expect(isRegionDbError(registration, ErrorCode.AlreadyExists), `the old process's registration: ${String(registration)}`).to.equal(true);
    expect(c.catalog.nodes[3]!.addr).to.equal(TWIN_ADDR);
  });
});
