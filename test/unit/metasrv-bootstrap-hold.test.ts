// Finding M32 (docs/correctness.md; docs/failover.md, "Reconciliation", R6): a catalog copy
// saved before a region's first report (`bootstrapped` false), restored after the region's group
// moved to other peers and nodes. A node that lost its replica (peer 1 on node 1: removed from its
// group and deleted) asked the metasrv on its first heartbeat, and was told to bootstrap the
// region — the initial membership 1, 2, 3 in an empty log. Two such nodes make a new, empty group
// under the region's ids that can elect and acknowledge writes beside the real one. The open now
// waits until every other live node the catalog knows has reported: the real group's reports flip
// `bootstrapped` and name the group R5 judges the open by.
//
// The setup: nodes 1–5; the catalog (the old copy) places peers 1, 2, 3 on nodes 1, 2, 3, not
// bootstrapped; the group lives on as peers 3, 10, 11 on nodes 3, 4, 5 (node 4 leads). Nodes 1
// and 2 beat first, hosting nothing. Control: a region that was never opened anywhere (every node
// reports nothing) is bootstrapped once all have reported.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'bootstrap-hold';
const addr = (n: number) => `127.0.0.1:${23_500 + n}`;

function storage(): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const replicas = [1, 2, 3].map((n) => ({ peerId: n, nodeId: n }));
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: 1, confVersion: 1, confIndex: 0 }, { nextPeerId: 4, nodes: catalogNodes([1, 2, 3, 4, 5], addr, true) });
  s.state.regions[REGION]!.bootstrapped = false;
  return s;
}

/** The real group: peers 3, 10, 11 on nodes 3, 4, 5; node 4 leads. */
const GROUP: Record<number, number> = { 3: 3, 4: 10, 5: 11 };

interface Open {
  readonly region_id: string;
  readonly self_peer_id: string;
  readonly bootstrap: boolean;
}

describe('R6: a region the catalog has not seen bootstrapped is not started afresh before the other nodes report', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  async function start(): Promise<{ beat: (n: number, hostsGroup: boolean) => Promise<Open[]> }> {
    const manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, storage(), undefined, clock);
    const c = core;
    return {
      beat: async (n, hostsGroup) => {
        const peer = GROUP[n];
        const replicas = hostsGroup && peer !== undefined ? [replicaReport({ regionId: REGION, peerId: peer, leader: n === 4, leaderNodeId: 4, voters: [3, 10, 11], appliedIndex: 40, confIndex: 30, term: 5 })] : [];
        const res = await c.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, () => {});
        return (res.instructions ?? []).flatMap((i) => (i.open_region ? [i.open_region as unknown as Open] : []));
      },
    };
  }

  it('nodes 1 and 2 beat before the group’s nodes: no bootstrap open; once they report, the placement is skipped (R5), never bootstrapped', async () => {
    const { beat } = await start();
    const early = [...(await beat(1, true)), ...(await beat(2, true))];
    expect(early, 'opens answered before nodes 3–5 reported').to.deep.equal([]);
    for (const n of [3, 4, 5]) await beat(n, true);
    expect(core!.catalog.regions[REGION]!.bootstrapped, 'the group’s reports flip bootstrapped').to.equal(true);
    const late = [...(await beat(1, true)), ...(await beat(2, true))];
    expect(late.filter((o) => o.bootstrap), 'bootstrap opens after the reports').to.deep.equal([]);
  });

  it('control: a region no node hosts is bootstrapped once every node has reported', async () => {
    const { beat } = await start();
    expect(await beat(1, false)).to.deep.equal([]);
    for (const n of [2, 3, 4, 5]) await beat(n, false);
    const opens = await beat(1, false);
    expect(opens.map((o) => ({ peer: o.self_peer_id, bootstrap: o.bootstrap }))).to.deep.equal([{ peer: '1', bootstrap: true }]);
  });
});
