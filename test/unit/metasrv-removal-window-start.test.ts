// R16, "The 4 → 3 window", across a metasrv start or takeover (review of r16w, S1): the view of
// what each datanode hosts is empty when a metasrv begins acting and fills one heartbeat at a
// time. A voter whose node had not beaten yet was not counted, like a down one, so the removed
// replica was deleted while that voter — alive, still counting the old four — might need its vote.
// Now such a voter holds the deletion until its node reports, or until it has been judged down for
// replica_repair_after_ms (a node never heard from is down from the metasrv's start; a node judged
// down is not taken for one whose voters will never vote again before then: session 33).
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore, tickAndSave } from '../fixtures/metasrv-core.js';

const CLUSTER = 'removal-window-start';
/** The fixture's heartbeat interval (100 ms) times the metasrv's STARTUP_QUIET_HEARTBEATS (3). */
const STARTUP_PAUSE_MS = 300;
/** replica_repair_after_ms of these tests' metasrv. */
const REPAIR_AFTER_MS = 2_000;

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
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, storage(), undefined, clock, { replica_repair_after_ms: REPAIR_AFTER_MS });
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

  it('a node never heard from by the end of the startup pause is down (counted from the start), and holds the deletion until down replica_repair_after_ms: then peer 1 is deleted (the rule stays live)', async () => {
    let t = 0;
    for (; t < REPAIR_AFTER_MS; t += 100) {
      await beat(core, 2);
      await beat(core, 4);
      await tickAndSave(core);
      expect(await beat(core, 1), `at ${t} ms`).to.deep.equal([]);
      manual.advance(100);
    }
    await tickAndSave(core);
    expect(core.isAlive(3)).to.equal(false);
    expect(await beat(core, 1), `at ${t} ms, node 3 never heard from`).to.have.length(1);
  });

  // Register seed 6987 of the mix with drain and metarestore (session 33): n4's heartbeat was lost,
  // the detector judged it down 530 ms after its last beat, and peer 1 was deleted at once — while
  // n4, alive, held the removal in its log uncommitted and counted the old four. Its leader then
  // crashed, and n4 needed peer 1's vote: no leader until the crashed leader came back.
  it('a voter judged down after it reported (a heartbeat lost) holds the deletion until down replica_repair_after_ms (failed before: deleted once judged down)', async () => {
    let t = 0;
    for (; t <= STARTUP_PAUSE_MS + 200; t += 100) {
      for (const n of [2, 3, 4]) await beat(core, n);
      await tickAndSave(core);
      expect(await beat(core, 1), `at ${t} ms, voter 3 counts peer 1`).to.deep.equal([]);
      manual.advance(100);
    }
    // Node 3 falls silent; the others beat on.
    const silentFrom = t;
    let judgedDownAt: number | undefined;
    for (; t <= silentFrom + REPAIR_AFTER_MS + 3_000; t += 100) {
      await beat(core, 2);
      await beat(core, 4);
      await tickAndSave(core);
      if (judgedDownAt === undefined && !core.isAlive(3)) judgedDownAt = t;
      const closes = await beat(core, 1);
      if (judgedDownAt === undefined || t - judgedDownAt < REPAIR_AFTER_MS) {
        expect(closes, `at ${t} ms (node 3 silent since ${silentFrom}, judged down at ${judgedDownAt ?? 'not yet'})`).to.deep.equal([]);
      } else {
        expect(closes, `at ${t} ms, node 3 down since ${judgedDownAt}`).to.have.length(1);
        return;
      }
      manual.advance(100);
    }
    expect.fail(`node 3 was never judged down (judged at ${judgedDownAt})`);
  });
});
