// Finding Q1 (docs/correctness.md): a catalog restored from a copy taken after a drain finished
// marks the node draining, with the drain-node procedure done — but the node may host replicas
// again (it took some under an older catalog restored in between; reconciliation follows the
// groups onto it). Nothing moved them off: drain-node was done, no repair touches a live node,
// and no new replica goes to a draining node, so the node stayed half drained for good.
// metasrv-core.ts `resumeDrains` now starts drain-node again for a draining node the catalog
// places a replica on while no drain runs for it.
//
// The setup: the catalog (as restored) marks node 1 draining, its drain-node done, and places
// peers 1, 2, 3 on nodes 1, 2, 3 (leader on node 2); node 4 is alive and hosts nothing. Every
// node reports what the catalog places. The control: the same catalog, but the region placed on
// nodes 2, 3, 4 — a finished drain, which stays as it is.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore, tickAndSave } from '../fixtures/metasrv-core.js';

const CLUSTER = 'restored-drain';
const TICK_MS = 100;
const addr = (n: number) => `127.0.0.1:${23_200 + n}`;

/** Nodes 1–4, node 1 draining with its drain done; the region's peers 1, 2, 3 on `placedOn`. */
function storage(placedOn: readonly number[]): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const nodes = catalogNodes([1, 2, 3, 4], addr, true).map((n) => (n.nodeId === 1 ? { ...n, state: 'draining' as const } : n));
  const replicas = placedOn.map((nodeId, i) => ({ peerId: i + 1, nodeId }));
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: placedOn[1]!, confVersion: 3, confIndex: 10 }, { nextPeerId: 10, nodes });
  s.state.procedures['drain-node-1'] = {
    id: 'drain-node-1',
    kind: 'drain-node',
    data: { nodeId: 1 },
    step: 'move-replicas',
    status: 'done',
    createdMs: 0,
    updatedMs: 0,
    stepSinceMs: 0,
    lastSentMs: 0,
    notes: ['node 1 hosts no replica'],
  };
  s.state.nextProcedureId = 2;
  return s;
}

/** A core on `s`, every node beating with what the catalog places on it, ticked for `durationMs`; the drain-node and repair-replica procedures it started. */
async function run(s: MemoryCatalog, durationMs: number): Promise<{ core: MetasrvCore; started: string[] }> {
  const manual = new ManualClock(1_000_000);
  const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
  const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
  const region = s.state.regions[REGION]!;
  const placed = region.replicas.map((p) => ({ ...p }));
  const voters = placed.map((p) => p.peerId);
  const leaderNodeId = region.leaderNodeId!;
  const seen = new Set<string>();
  for (let t = 0; t <= durationMs; t += TICK_MS) {
    for (const n of [1, 2, 3, 4]) {
      const mine = placed.find((p) => p.nodeId === n);
      const replicas = mine ? [replicaReport({ regionId: REGION, peerId: mine.peerId, leader: n === leaderNodeId, leaderNodeId, voters, appliedIndex: 25, confIndex: 10, term: 3 })] : [];
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, () => {});
    }
    await tickAndSave(core);
    for (const p of Object.values(core.catalog.procedures)) {
      if (p.id === 'drain-node-1') continue;
      if (p.kind === 'drain-node' || p.kind === 'repair-replica') seen.add(`${p.kind} ${JSON.stringify(p.data)}`);
    }
    manual.advance(TICK_MS);
  }
  return { core, started: [...seen].sort() };
}

describe('Q1: a draining node the catalog still places replicas on (a catalog restored from after its drain) is drained again', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('a draining node hosting a placed replica, no drain running: drain-node starts again and moves the replica off it', async () => {
    const r = await run(storage([1, 2, 3]), 2_000);
    core = r.core;
    expect(r.started.filter((p) => p.startsWith('drain-node')), 'a new drain of node 1').to.deep.equal(['drain-node {"nodeId":1}']);
    expect(r.started.some((p) => p.startsWith('repair-replica') && p.includes('"oldPeerId":1') && p.includes('"oldNodeId":1')), `the move of peer 1 (${r.started.join('; ')})`).to.equal(true);
    expect(core.catalog.nodes[1]!.state).to.equal('draining');
  });

  it('control: a finished drain (the catalog places nothing on the draining node) starts nothing and stays draining', async () => {
    const r = await run(storage([2, 3, 4]), 2_000);
    core = r.core;
    expect(r.started).to.deep.equal([]);
    expect(core.catalog.nodes[1]!.state).to.equal('draining');
  });
});
