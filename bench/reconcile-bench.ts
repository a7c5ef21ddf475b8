// The metasrv's per-heartbeat reconciliation (src/metasrv/reconcile.ts) at N regions of 3
// replicas on 3 datanodes, all settled (every leader reports the membership the catalog places:
// the idle cluster of bench/scale-bench.ts): reconcileCatalog + idFloors + nodeActions as
// MetasrvCore.reconcile calls them, each heartbeat bringing a new report of the beating node.
// The version before the rewrite (test/fixtures/reconcile-reference.ts) against the current one.
// Usage: node --import tsx bench/reconcile-bench.ts   (RECONCILE_REGIONS=1000,5000; ROUNDS=300)
import { type CatalogState, emptyCatalog, makeRegionId } from '../src/metasrv/catalog.js';
import type { ObservedReplica } from '../src/metasrv/procedures/procedure.js';
import { type ReportFloors, type Reports, idFloors, nodeActions, reconcileCatalog } from '../src/metasrv/reconcile.js';
import * as reference from '../test/fixtures/reconcile-reference.js';

const sizes = (process.env['RECONCILE_REGIONS'] || '1000,5000').split(',').map(Number);
const rounds = Number(process.env['ROUNDS'] || 300);
const NODES = [1, 2, 3];

function cluster(regions: number): { catalog: CatalogState; reports: Map<number, Map<string, ObservedReplica>> } {
  const catalog = emptyCatalog('bench');
  const reports = new Map(NODES.map((n) => [n, new Map<string, ObservedReplica>()]));
  for (let i = 0; i < regions; i++) {
    const regionId = makeRegionId(1024 + Math.floor(i / 1000), i % 1000);
    const base = 3 * i + 1;
    const replicas = NODES.map((nodeId, k) => ({ peerId: base + k, nodeId }));
    catalog.regions[regionId] = { regionId, tableName: `t${Math.floor(i / 1000)}`, regionNumber: i % 1000, replicas, leaderNodeId: 1 + (i % 3), confVersion: 1, confIndex: 1, bootstrapped: true };
    for (const [k, nodeId] of NODES.entries()) {
      reports.get(nodeId)!.set(regionId, {
        regionId,
        peerId: base + k,
        role: k === i % 3 ? 'leader' : 'follower',
        term: 2,
        leaderNodeId: 1 + (i % 3),
        appliedIndex: 5,
        commitIndex: 5,
        flushedIndex: 0,
        voters: replicas.map((p) => p.peerId),
        learners: [],
        health: 'ok',
        failure: '',
        confIndex: 1,
      });
    }
  }
  return { catalog, reports };
}

type Impl = 'reference' | 'current';

function run(impl: Impl, catalog: CatalogState, base: Map<number, Map<string, ObservedReplica>>): number {
  const live = new Map(base);
  const cache = new WeakMap<ReadonlyMap<string, ObservedReplica>, ReportFloors>();
  const busy = new Set<string>();
  let sink = 0;
  let elapsed = 0;
  for (let round = 0; round < rounds; round++) {
    const nodeId = NODES[round % NODES.length]!;
    live.set(nodeId, new Map(base.get(nodeId)!)); // the heartbeat's new report (not timed)
    const reports: Reports = live;
    const started = performance.now();
    if (impl === 'reference') {
      sink += reference.idFloors(reports).nextPeerId;
      sink += reference.reconcileCatalog(catalog, reports, busy).matched.length;
      sink += reference.nodeActions(catalog, nodeId, reports).length;
    } else {
      sink += idFloors(reports, cache).nextPeerId;
      sink += reconcileCatalog(catalog, reports, busy).matched.length;
      sink += nodeActions(catalog, nodeId, reports, () => false).length;
    }
    elapsed += performance.now() - started;
  }
  if (sink < 0) throw new Error('unreachable');
  return elapsed / rounds;
}

for (const regions of sizes) {
  const { catalog, reports } = cluster(regions);
  const results: Record<Impl, number[]> = { reference: [], current: [] };
  for (let rep = 0; rep < 5; rep++) for (const impl of ['reference', 'current'] as const) results[impl].push(run(impl, catalog, reports));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  process.stdout.write(
    `${regions} regions × 3 nodes: per heartbeat (reconcileCatalog + idFloors + nodeActions, median of 5 × ${rounds}) reference ${median(results.reference).toFixed(3)} ms, current ${median(results.current).toFixed(3)} ms (load ${(await import('node:os')).loadavg()[0]!.toFixed(1)})\n`,
  );
}
