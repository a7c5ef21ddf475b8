// Finding M29 (docs/correctness.md; docs/procedures.md, "A learner nobody promotes"): a learner
// whose repair record was lost with a catalog restored from an older copy stays in its group for
// good — only the repair that added it would promote or remove it. The metasrv's pass starts a
// repair-replica marked `learner` for a learner the catalog places while no repair holds its
// region, and that repair's allocate asks the leader to remove it (the group has its voters).
//
// The setup: nodes 1–4; the catalog places peers 1, 2, 3 on nodes 1, 2, 3 and peer 4 on node 4;
// the leader (node 2) counts 1, 2, 3 as voters and 4 as a learner. Controls: no learner (nothing
// started), and a repair-replica already running for the region (its learner is its own).
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, runningRepair as repairRecord, startMetasrvCore, tickAndSave } from '../fixtures/metasrv-core.js';

const CLUSTER = 'learner-removal';
const TICK_MS = 100;
const addr = (n: number) => `127.0.0.1:${23_400 + n}`;
const LEADER_NODE = 2;

function storage(withLearner: boolean, runningRepair = false): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const replicas = [1, 2, 3, ...(withLearner ? [4] : [])].map((n) => ({ peerId: n, nodeId: n }));
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: LEADER_NODE, confVersion: 3, confIndex: 10 }, { nextPeerId: 10, nodes: catalogNodes([1, 2, 3, 4], addr, true) });
  if (runningRepair) {
    s.state.procedures['repair-replica-1'] = repairRecord(1, { regionId: REGION, oldPeerId: 3, oldNodeId: 3, newPeerId: 4, newNodeId: 4 }, 'catch-up');
    s.state.nextProcedureId = 2;
  }
  return s;
}

/** Every node beating with what the catalog places on it (peer 4 a learner), ticked for `durationMs`; the repair-replica records seen. */
async function run(s: MemoryCatalog, durationMs: number): Promise<{ core: MetasrvCore; repairs: { data: Record<string, unknown>; notes: string[] }[] }> {
  const manual = new ManualClock(1_000_000);
  const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
  const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
  const placed = s.state.regions[REGION]!.replicas.map((p) => ({ ...p }));
  const learners = placed.some((p) => p.peerId === 4) ? ['4'] : [];
  for (let t = 0; t <= durationMs; t += TICK_MS) {
    for (const n of [1, 2, 3, 4]) {
      const mine = placed.find((p) => p.nodeId === n);
      const replicas = mine
        ? [{ ...replicaReport({ regionId: REGION, peerId: mine.peerId, leader: n === LEADER_NODE, leaderNodeId: LEADER_NODE, voters: [1, 2, 3], appliedIndex: 25, confIndex: 10, term: 3 }), learners }]
        : [];
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, () => {});
    }
    await tickAndSave(core);
    manual.advance(TICK_MS);
  }
  const repairs = Object.values(core.catalog.procedures)
    .filter((p) => p.kind === 'repair-replica')
    .map((p) => ({ data: p.data as unknown as Record<string, unknown>, notes: p.notes }));
  return { core, repairs };
}

describe('M29: a learner no repair will promote (its record lost) is removed from its group', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('a placed learner with no repair holding its region: a repair-replica marked learner starts and asks the leader to remove it', async () => {
    const r = await run(storage(true), 1_500);
    core = r.core;
    const removal = r.repairs.find((p) => p.data['learner'] === true);
    expect(removal, `repairs started: ${JSON.stringify(r.repairs)}`).to.not.equal(undefined);
    expect(removal!.data).to.include({ regionId: REGION, oldPeerId: 4, oldNodeId: 4 });
    expect(removal!.notes.join(' | ')).to.include('peer 4 is a learner of a group with 3 voters: removing it, not replacing it');
    expect(removal!.data['newPeerId'], 'no replacement allocated').to.equal(undefined);
  });

  it('controls: no learner, nothing started; a repair already holding the region, no second one', async () => {
    const none = await run(storage(false), 1_000);
    none.core.halt();
    expect(none.repairs).to.deep.equal([]);
    const held = await run(storage(true, true), 1_000);
    core = held.core;
    expect(held.repairs.filter((p) => p.data['learner'] === true)).to.deep.equal([]);
  });
});
