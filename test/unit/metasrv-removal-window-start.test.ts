// R16, "The 4 → 3 window", across a metasrv start or takeover (review of r16w, S1): the view of
// what each datanode hosts is empty when a metasrv begins acting and fills one heartbeat at a
// time. A voter whose node had not beaten yet was not counted, like a down one, so the removed
// replica was deleted while that voter — alive, still counting the old four — might need its vote.
// Now such a voter holds the deletion until its node reports or the startup pause ends (after it
// a node never heard from is down, and is not waited for).
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'removal-window-start';
/** The fixture's heartbeat interval (100 ms) times the metasrv's STARTUP_QUIET_HEARTBEATS (3). */
const STARTUP_PAUSE_MS = 300;

/** A catalog saved after remove-old: peers 2, 3, 4 on nodes 2, 3, 4; peer 1 (node 1) removed at index 20. */
function storage(): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const nodes = catalogNodes([1, 2, 3, 4], (nodeId) => `127.0.0.1:${23_000 + nodeId}`, true);
  s.state = oneRegionCatalog(CLUSTER, { replicas: [2, 3, 4].map((n) => ({ peerId: n, nodeId: n })), leaderNodeId: 2, confVersion: 3, confIndex: 20 }, { nextPeerId: 10, nodes });
  return s;
}

/** What node n reports: peer 1 applied its removal; voter 3 was not told yet that it committed. */
function reportOf(n: number) {
  const base = { regionId: REGION, peerId: n, leader: n === 2, leaderNodeId: 2, voters: [2, 3, 4], appliedIndex: 25, confIndex: 20, term: 3 };
  if (n === 1) return replicaReport({ ...base, appliedIndex: 20 });
  if (n === 3) return replicaReport({ ...base, voters: [1, 2, 3, 4], appliedIndex: 19, confIndex: 12 });
  return replicaReport(base);
}

/** Node n's heartbeat; the close_region instructions naming peer 1 in its answer. */
async function beat(core: MetasrvCore, n: number): Promise<unknown[]> {
  const answer = await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: `127.0.0.1:${23_000 + n}`, replicas: [reportOf(n)], store_id: `store-${n}` } as never, () => {});
  return (answer.instructions ?? []).filter((i) => i.close_region?.region_id === REGION && i.close_region.peer_id === '1');
}

describe('R16: the 4 → 3 window across a metasrv start (a voter not heard from yet holds the deletion)', () => {
  let manual: ManualClock;
  let core: MetasrvCore;
  beforeEach(async () => {
    manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, storage(), undefined, clock);
  });
  afterEach(() => core.halt());

  it('heartbeats from nodes 2 then 1 right after the start: node 1 is not told to delete peer 1 (failed before: it was, voter 3 not heard from yet)', async () => {
    expect(await beat(core, 2)).to.deep.equal([]);
    expect(await beat(core, 1), 'peer 1 deleted while voter 3 (alive, still counting it) was not heard from yet').to.deep.equal([]);
    const info = (await core.listNodes()).region_infos?.find((r) => r.route?.region_id === REGION);
    expect(info?.problems?.join('\n')).to.match(/kept while voter 3 on node 3 has not reported since this metasrv began acting/);
  });

  it('once node 3 reports, its own membership decides: kept while it counts peer 1', async () => {
    await beat(core, 2);
    await beat(core, 3);
    await beat(core, 4);
    expect(await beat(core, 1)).to.deep.equal([]);
  });

  it('a node never heard from by the end of the startup pause counts as down: peer 1 is deleted (the rule stays live)', async () => {
    for (let t = 0; t <= STARTUP_PAUSE_MS; t += 100) {
      await beat(core, 2);
      await beat(core, 4);
      if (t < STARTUP_PAUSE_MS) expect(await beat(core, 1), `at ${t} ms, inside the pause`).to.deep.equal([]);
      manual.advance(100);
    }
    expect(await beat(core, 1), 'after the pause, node 3 never heard from').to.have.length(1);
  });
});
