// The metasrv's periodic leader-placement check (balance_leaders_interval_ms) with each
// `leader_placement` (docs/leader-placement.md): one table of 4 regions on nodes 1–3, leaders
// reported on nodes 1, 2, 3, 1. With "table" (the default) the check starts a balance-leaders
// whose record carries the placement and the chunk size; with "spread" the same leaders are
// within ±1 per node, and none starts. Through the core's real heartbeats and ticks.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { makeRegionId } from '../../src/metasrv/catalog.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, catalogNodes, oneRegionCatalog, replicaReport, startMetasrvCore, tickAndSave } from '../fixtures/metasrv-core.js';

const CLUSTER = 'leader-placement';
const TICK_MS = 100;
const addr = (n: number) => `127.0.0.1:${23_600 + n}`;
const LEADERS = [1, 2, 3, 1];
const regionId = (i: number) => makeRegionId(1024, i);

function storage(): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  s.state = oneRegionCatalog(CLUSTER, { replicas: [1, 2, 3].map((n) => ({ peerId: n, nodeId: n })), leaderNodeId: 1, confVersion: 1, confIndex: 3 }, { nextPeerId: 100, nodes: catalogNodes([1, 2, 3], addr, true) });
  const template = s.state.regions[regionId(0)]!;
  for (const [i] of LEADERS.entries()) {
    s.state.regions[regionId(i)] = { ...template, regionId: regionId(i), regionNumber: i, replicas: [1, 2, 3].map((n) => ({ peerId: 10 * i + n, nodeId: n })), leaderNodeId: LEADERS[i]! };
  }
  s.state.tables['t'] = { ...s.state.tables['t']!, regionCount: LEADERS.length };
  return s;
}

async function run(config: Record<string, unknown>, durationMs: number): Promise<{ core: MetasrvCore; balances: Record<string, unknown>[] }> {
  const manual = new ManualClock(1_000_000);
  const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
  const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, storage(), undefined, clock, { balance_leaders_interval_ms: 500, ...config });
  for (let t = 0; t <= durationMs; t += TICK_MS) {
    for (const n of [1, 2, 3]) {
      const replicas = LEADERS.map((leader, i) => replicaReport({ regionId: regionId(i), peerId: 10 * i + n, leader: leader === n, leaderNodeId: leader, voters: [1, 2, 3].map((m) => 10 * i + m), confIndex: 3 }));
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, () => {});
    }
    await tickAndSave(core);
    manual.advance(TICK_MS);
  }
  const balances = Object.values(core.catalog.procedures)
    .filter((p) => p.kind === 'balance-leaders')
    .map((p) => p.data as unknown as Record<string, unknown>);
  return { core, balances };
}

describe('the periodic leader-placement check follows leader_placement', () => {
  let core: MetasrvCore | undefined;
  afterEach(() => {
    core?.halt();
    core = undefined;
  });

  it('"table" (the default): a table led from three nodes starts a balance-leaders placing by table, 16 regions a node', async () => {
    const r = await run({}, 1_500);
    core = r.core;
    expect(r.balances.length, JSON.stringify(r.balances)).to.be.greaterThan(0);
    expect(r.balances[0]).to.include({ placement: 'table', packRegions: 16 });
  });

  it('"spread": the same leaders are within ±1 per node, so no balance-leaders starts', async () => {
    const r = await run({ leader_placement: 'spread' }, 1_500);
    core = r.core;
    expect(r.balances).to.deep.equal([]);
  });
});
