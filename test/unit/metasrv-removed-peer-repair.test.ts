// The repairs the metasrv starts on its own — for a node down too long (metasrv-core.ts
// `startRepairs`) and for a replica marked lost (`startLostRepairs`) — follow M21's rule, as
// drain-node does: no repair for a peer the group has already removed at a configuration newer
// than the catalog's (`removedByGroup`, docs/procedures.md "A peer the group has already
// removed"). Before, each pass started such a repair; it ended at once in `allocate` and the next
// pass started it again, for as long as R2 had not brought the catalog up to date.
//
// The setup: the catalog places peers 1, 2, 3 on nodes 1, 2, 3 and last matched the group at conf
// index 10. The group (leader on node 2) has since replaced peer 1 by peer 4: voters 2, 3, 4 at
// conf index 20. Peer 4's node has not reported since this metasrv began acting, so R2 cannot
// place it and leaves the catalog as it is (reconcile.ts reconcileDiffering: "peers … that neither
// the catalog nor any live datanode places"). The control cases report the same membership at
// conf index 10, which is no removal (the catalog may be the newer): there the repair does start,
// so the setup reaches the code it tests.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore, tickAndSave } from '../fixtures/metasrv-core.js';

const CLUSTER = 'removed-peer-repair';
/** Short, so that a node down since the start is down too long within a few hundred ticks. */
const REPAIR_AFTER_MS = 1000;
const TICK_MS = 100;
const addr = (n: number) => `127.0.0.1:${23_100 + n}`;

/** Nodes `nodeIds` registered; peers 1, 2, 3 on nodes 1, 2, 3 at conf index 10; peer 1 lost if `lost`. */
function storage(nodeIds: readonly number[], lost: boolean): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const replicas = [1, 2, 3].map((n) => ({ peerId: n, nodeId: n, ...(lost && n === 1 ? { lost: 'new store store-1b: node 1 came back without its data' } : {}) }));
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: 2, confVersion: 3, confIndex: 10 }, { nextPeerId: 10, nodes: catalogNodes(nodeIds, addr, true) });
  return s;
}

/** What node n reports: peers 2 and 3 (2 leads) count voters 2, 3, 4 at `confIndex`; other nodes host nothing. */
function replicasOf(n: number, confIndex: number) {
  if (n !== 2 && n !== 3) return [];
  return [replicaReport({ regionId: REGION, peerId: n, leader: n === 2, leaderNodeId: 2, voters: [2, 3, 4], appliedIndex: 25, confIndex, term: 3 })];
}

/**
 * A core on `storage`, beaten by `beating` and ticked every 100 ms of a manual clock for
 * `durationMs`; returns the repair-replica procedures it started (finished ones included).
 */
async function repairsStarted(s: MemoryCatalog, beating: readonly number[], confIndex: number, durationMs: number): Promise<{ core: MetasrvCore; repairs: string[] }> {
  const manual = new ManualClock(1_000_000);
  const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
  const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock, {
    replica_repair_after_ms: REPAIR_AFTER_MS,
  });
  const seen = new Set<string>();
  for (let t = 0; t <= durationMs; t += TICK_MS) {
    for (const n of beating) {
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: replicasOf(n, confIndex), store_id: `store-${n}` } as never, () => {});
    }
    await tickAndSave(core);
    for (const p of Object.values(core.catalog.procedures)) if (p.kind === 'repair-replica') seen.add(`${p.id}: ${p.status}, ${p.notes.join('; ')}`);
    manual.advance(TICK_MS);
  }
  return { core, repairs: [...seen] };
}

describe('M21 twins: no repair started by the metasrv itself for a peer the group already removed', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('a node down too long whose replica the group removed (newer conf index): startRepairs starts no repair for it', async () => {
    // Node 5 is alive and hosts nothing: a repair would have somewhere to go.
    const run = await repairsStarted(storage([1, 2, 3, 5], false), [2, 3, 5], 20, 3 * REPAIR_AFTER_MS);
    core = run.core;
    expect(run.repairs, 'repairs started for peer 1, which the group removed at conf index 20').to.deep.equal([]);
    expect(core.catalog.regions[REGION]!.replicas.map((p) => p.peerId), 'the catalog is left to R2').to.deep.equal([1, 2, 3]);
  });

  it('control: the same membership at the catalog conf index (no removal) — the down node gets its repair', async () => {
    const run = await repairsStarted(storage([1, 2, 3, 5], false), [2, 3, 5], 10, 3 * REPAIR_AFTER_MS);
    core = run.core;
    expect(run.repairs.length, 'a repair of peer 1 started').to.be.greaterThan(0);
  });

  it('a replica marked lost that the group removed (newer conf index): startLostRepairs starts no repair for it', async () => {
    const run = await repairsStarted(storage([1, 2, 3], true), [1, 2, 3], 20, REPAIR_AFTER_MS);
    core = run.core;
    expect(run.repairs, 'repairs started for the lost peer 1, which the group removed at conf index 20').to.deep.equal([]);
    expect(core.catalog.regions[REGION]!.replicas.map((p) => p.peerId), 'the catalog is left to R2').to.deep.equal([1, 2, 3]);
  });

  it('control: the same membership at the catalog conf index (no removal) — the lost replica gets its repair', async () => {
    const run = await repairsStarted(storage([1, 2, 3], true), [1, 2, 3], 10, REPAIR_AFTER_MS);
    core = run.core;
    expect(run.repairs.length, 'a repair of the lost peer 1 started').to.be.greaterThan(0);
  });
});
