// Reconciliation's R5 through the metasrv's heartbeat (review of N1): a catalog copy taken while a
// repair had placed peer 4 on node 4 (at add-learner), restored after the group added, promoted and
// removed peer 4 (peer 9 replaced it), with a conf index (over-stated by a snapshot) above the
// group's, so that R2 leaves the region alone. Before, node 4 was told to open peer 4 — empty,
// under an id that voted — on every heartbeat, from the first one in the startup quiet period.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'open-passed';

function storage(): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const nodes = catalogNodes([1, 2, 3, 4], (nodeId) => `127.0.0.1:${24_000 + nodeId}`, true);
  const replicas = [1, 2, 3, 4].map((n) => ({ peerId: n, nodeId: n }));
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: 2, confVersion: 4, confIndex: 101 }, { nextPeerId: 5, nodes });
  return s;
}

/** Node n's heartbeat reporting `replicas`; the open_region instructions of REGION in its answer, as peer@node. */
async function beat(core: MetasrvCore, n: number, replicas: unknown[]): Promise<string[]> {
  const answer = await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: `127.0.0.1:${24_000 + n}`, replicas, store_id: `store-${n}` } as never, () => {});
  return (answer.instructions ?? []).filter((i) => i.open_region?.region_id === REGION).map((i) => `${i.open_region!.self_peer_id}@${n}`);
}

const leaderWith = (voters: number[]) => replicaReport({ regionId: REGION, peerId: 2, leader: true, leaderNodeId: 2, voters, confIndex: 60, term: 5 });

describe('R5: a placement the group went past is not opened by a heartbeat (review of N1)', () => {
  let core: MetasrvCore;
  beforeEach(async () => {
    const manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, storage(), undefined, clock);
  });
  afterEach(() => core.halt());

  it('in the startup quiet period, the leader counting peer 9 and not 4: node 4 is not told to open peer 4, on any heartbeat (failed before: 4@4)', async () => {
    expect(await beat(core, 2, [leaderWith([1, 2, 9])])).to.deep.equal([]);
    expect(await beat(core, 4, []), 'peer 4 opened empty under an id that voted').to.deep.equal([]);
    expect(await beat(core, 4, [])).to.deep.equal([]);
  });

  it("a repair's new peer the leader does not count yet (peers 1, 2, 3 counted) is opened as before", async () => {
    expect(await beat(core, 2, [leaderWith([1, 2, 3])])).to.deep.equal([]);
    expect(await beat(core, 4, [])).to.deep.equal(['4@4']);
  });

  it('at registration too: node 4 registering after the leader reported peer 9 and not 4 is not told to open peer 4 (failed before: 4@4); with the leader counting 1, 2, 3 it is', async () => {
    const register = async (n: number): Promise<string[]> => {
      const answer = await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: `127.0.0.1:${24_000 + n}`, http_addr: '', store_id: `store-${n}` } as never, () => {});
      return (answer.regions ?? []).filter((o) => o.region_id === REGION).map((o) => `${o.self_peer_id}@${n}`);
    };
    expect(await beat(core, 2, [leaderWith([1, 2, 9])])).to.deep.equal([]);
    expect(await register(4), 'peer 4 opened empty under an id that voted').to.deep.equal([]);
    expect(await register(1), 'a peer the leader counts is opened as before').to.deep.equal(['1@1']);
    expect(await beat(core, 2, [leaderWith([1, 2, 3])])).to.deep.equal([]);
    expect(await register(4), "a repair's new peer the leader does not count yet (no higher id counted)").to.deep.equal(['4@4']);
  });
});

// R7 and R5b (engine seed 4112 of the wide simulator mix): a catalog restored from an older copy
// places peers 1, 2, 3 on nodes 1, 2, 3; the group has since replaced peer 2 (drained) by peer 8 on
// node 4, which leads it. Node 2's replica of peer 2 was closed, not deleted; GC has deleted the SSTs
// its log still needs. The metasrv starts; node 2 registers first, before node 4 has beaten.
// Before: node 2 was told at once to open peer 2 (no leader report to judge it by) and its replica
// failed replaying its log.
describe('R7: an open no report can judge yet waits for the other nodes; R5b: a follower is a witness too (engine seed 4112)', () => {
  const CLUSTER2 = 'open-unjudged';
  let core: MetasrvCore;
  let manual: ManualClock;
  beforeEach(async () => {
    manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    const s = new MemoryCatalog(CLUSTER2);
    const nodes = catalogNodes([1, 2, 3, 4], (nodeId) => `127.0.0.1:${24_000 + nodeId}`, true);
    s.state = oneRegionCatalog(CLUSTER2, { replicas: [1, 2, 3].map((n) => ({ peerId: n, nodeId: n })), leaderNodeId: 1, confVersion: 3, confIndex: 3 }, { nextPeerId: 4, nodes });
    core = await startMetasrvCore(CLUSTER2, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
  });
  afterEach(() => core.halt());

  const register = async (n: number): Promise<string[]> => {
    const answer = await core.registerNode({ cluster_id: CLUSTER2, node_id: String(n), addr: `127.0.0.1:${24_000 + n}`, http_addr: '', store_id: `store-${n}` } as never, () => {});
    return (answer.regions ?? []).filter((o) => o.region_id === REGION).map((o) => `${o.self_peer_id}@${n}`);
  };
  const beat2 = async (n: number, replicas: unknown[]): Promise<string[]> => {
    const answer = await core.heartbeat({ cluster_id: CLUSTER2, node_id: String(n), addr: `127.0.0.1:${24_000 + n}`, replicas, store_id: `store-${n}` } as never, () => {});
    return (answer.instructions ?? []).filter((i) => i.open_region?.region_id === REGION).map((i) => `${i.open_region!.self_peer_id}@${n}`);
  };
  const member = (peerId: number, leader: boolean) => replicaReport({ regionId: REGION, peerId, leader, leaderNodeId: 4, voters: [1, 3, 8], confIndex: 400, term: 18, appliedIndex: 410 });

  it('node 2 registering before the leader has beaten is not told to open peer 2; once node 4 reports the leader counting 8 and not 2, it never is (failed before: 2@2)', async () => {
    expect(await register(2), 'peer 2 opened before the group could say it went past it').to.deep.equal([]);
    expect(await beat2(2, [])).to.deep.equal([]);
    expect(await beat2(4, [member(8, true)])).to.deep.equal([]);
    expect(await beat2(2, [])).to.deep.equal([]);
    expect(await register(2)).to.deep.equal([]);
    // Peers the leader counts are opened at once, whatever other node has not reported yet.
    expect(await register(1)).to.deep.equal(['1@1']);
  });

  it('R5b: with only followers reporting (the leader\'s node not beaten, or down), a follower counting 8 and not 2 is a witness', async () => {
    expect(await beat2(1, [member(1, false)])).to.deep.equal([]);
    manual.advance(10_000); // the startup pause is over: node 4, never heard from, is judged down, node 3 too
    expect(await beat2(1, [member(1, false)])).to.deep.equal([]);
    expect(await beat2(2, []), 'peer 2 opened on a follower\'s word that the group went past it').to.deep.equal([]);
  });

  it('a leaderless region whose replicas none reports past the peer: opened once every other node has reported (a cold start of the whole cluster), not before', async () => {
    expect(await register(2)).to.deep.equal([]);
    expect(await register(1)).to.deep.equal([]);
    expect(await beat2(1, [])).to.deep.equal([]);
    expect(await beat2(2, [])).to.deep.equal([]);
    expect(await beat2(3, []), 'still waiting for node 4').to.deep.equal([]);
    expect(await beat2(4, [])).to.deep.equal([]);
    expect(await beat2(2, [])).to.deep.equal(['2@2']);
    expect(await beat2(3, [])).to.deep.equal(['3@3']);
    expect(await beat2(1, [])).to.deep.equal(['1@1']);
  });
});
