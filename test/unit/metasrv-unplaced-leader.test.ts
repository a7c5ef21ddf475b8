// Finding M31 (docs/correctness.md; docs/procedures.md, "A leader the catalog does not place"),
// engine seed 2920 of the simulator's wide mix, through the metasrv's heartbeats and ticks: a
// catalog restored from an older copy places peers 1, 2, 3 (conf index 42) while the group, after
// a repair the copy lost, is 2, 3, 10 (conf index 268) and peer 10 on node 4 leads. A repair of
// peer 1 (lost: its node's new store) that the restored catalog started while the group was
// electing waits at add-learner with new peer 12 placed on node 1. It held the region, so R2 did
// not adopt the group's membership, and it took only a peer the catalog places for a leader, so it
// waited "for a leader" for good. Now it sees node 4's leader, finds the old peer gone, fails
// sending nothing and drops peer 12's placement; R2 then adopts 2, 3, 10.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, runningRepair, startMetasrvCore, tickAndSave } from '../fixtures/metasrv-core.js';

const CLUSTER = 'unplaced-leader';
const TICK_MS = 100;
const addr = (n: number) => `127.0.0.1:${23_500 + n}`;
const LOST = 'new store store-1-2 (was store-1-1): node 1 came back without its data';

/** The restored catalog: 1@1 (lost), 2@2, 3@3 at conf index 42, and the repair of peer 1 at add-learner with peer 12 placed on node 1. */
function storage(): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const replicas = [{ peerId: 1, nodeId: 1, lost: LOST }, { peerId: 2, nodeId: 2 }, { peerId: 3, nodeId: 3 }, { peerId: 12, nodeId: 1 }];
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: 2, confVersion: 3, confIndex: 42 }, { nextPeerId: 13, nodes: catalogNodes([1, 2, 3, 4], addr, true) });
  s.state.procedures['repair-replica-1'] = runningRepair(1, { regionId: REGION, oldPeerId: 1, oldNodeId: 1, reason: LOST, inPlace: true, newPeerId: 12, newNodeId: 1 }, 'add-learner');
  s.state.nextProcedureId = 2;
  return s;
}

/** Nodes 2, 3 follow and node 4's peer 10 leads the group 2, 3, 10 at conf index 268; node 1 reports nothing. Ticked for `durationMs`. */
async function run(s: MemoryCatalog, durationMs: number): Promise<MetasrvCore> {
  const manual = new ManualClock(1_000_000);
  const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
  const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
  const peerOf: Record<number, number> = { 2: 2, 3: 3, 4: 10 };
  for (let t = 0; t <= durationMs; t += TICK_MS) {
    for (const n of [1, 2, 3, 4]) {
      const peerId = peerOf[n];
      const replicas =
        peerId === undefined ? [] : [replicaReport({ regionId: REGION, peerId, leader: n === 4, leaderNodeId: 4, voters: [2, 3, 10], appliedIndex: 363, confIndex: 268, term: 14 })];
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, () => {});
    }
    await tickAndSave(core);
    manual.advance(TICK_MS);
  }
  return core;
}

describe('M31: a repair whose region is led by a peer the (restored) catalog does not place', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('sees that leader: the group went on without the old peer, so the repair fails at add-learner sending nothing, and R2 adopts the group (sim seed 2920)', async () => {
    core = await run(storage(), 1_500);
    const repair = core.catalog.procedures['repair-replica-1']!;
    expect(repair.notes, 'waited for a leader while node 4 led').to.not.include('waiting for a leader');
    expect(repair.status, `notes: ${repair.notes.join(' | ')}`).to.equal('failed');
    expect(repair.error).to.match(/the leader on node 4 has 2,3,10 at conf index 268: it no longer counts the old peer 1/);
    const region = core.catalog.regions[REGION]!;
    expect(region.replicas.map((p) => `${p.peerId}@${p.nodeId}`), 'R2 adopted the group').to.deep.equal(['2@2', '3@3', '10@4']);
    expect(region.confIndex).to.equal(268);
    expect(Object.values(core.catalog.procedures).filter((p) => p.status === 'running')).to.deep.equal([]);
  });
});
