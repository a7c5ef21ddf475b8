// One heartbeat's report at N replicas on a node (docs/quiescence.md, "Heartbeats that carry what
// changed"), full against delta, as the two ends handle it:
//   - datanode: ReportTracker.next over the node's stats (the delta's diff against the
//     acknowledged report) + encodeHeartbeatRequest;
//   - metasrv: decodeHeartbeatRequest + useReport (the view: a new map of every replica for a
//     full report, a copy of the held view with the changes for a delta).
// `full` is what every heartbeat did before delta reports (fullEvery 1: a full report each time);
// `delta` an idle node's steady state, CHANGED stats differing per beat (default 0 and 10).
// Building the stats (DatanodeCore.replicaStats) and reconciliation are the same either way and
// not timed here (reconciliation: bench/reconcile-bench.ts).
// Usage: node --import tsx bench/heartbeat-delta-bench.ts   (HB_REGIONS=1000,5000; HB_CHANGED=0,10; ROUNDS=200)
import { loadavg } from 'node:os';
import { ReportTracker } from '../src/datanode/report-delta.js';
import { makeRegionId } from '../src/metasrv/catalog.js';
import { type NodeReport, useReport } from '../src/metasrv/report-view.js';
import type { ReplicaStat__Output } from '../src/rpc/generated/index.js';
import { decodeHeartbeatRequest, encodeHeartbeatRequest } from '../src/rpc/meta-wire.js';

const sizes = (process.env['HB_REGIONS'] || '1000,5000').split(',').map(Number);
const changedCounts = (process.env['HB_CHANGED'] || '0,10').split(',').map(Number);
const rounds = Number(process.env['ROUNDS'] || 200);

function stat(i: number, applied: number): ReplicaStat__Output {
  const base = 3 * i + 1;
  return {
    region_id: makeRegionId(1024 + Math.floor(i / 1000), i % 1000),
    peer_id: String(base),
    role: i % 3 === 0 ? 'leader' : 'follower',
    term: '2',
    leader_node_id: String(1 + (i % 3)),
    applied_index: String(applied),
    commit_index: String(applied),
    flushed_index: '0',
    memtable_bytes: '0',
    voters: [String(base), String(base + 1), String(base + 2)],
    learners: [],
    snapshot_installed_index: '0',
    ssts: 0,
    health: 'ok',
    failure: '',
    conf_index: '1',
    members: i % 3 === 0 ? [0, 1, 2].map((k) => ({ peer_id: String(base + k), node_id: String(1 + k), addr: '' })) : [],
  };
}

interface Timing {
  datanodeMs: number;
  metasrvMs: number;
  bytes: number;
}

function run(regions: number, changed: number, fullEvery: number): Timing {
  const stats = Array.from({ length: regions }, (_, i) => stat(i, 5));
  const tracker = new ReportTracker(7, fullEvery);
  let view: NodeReport | undefined;
  let datanodeMs = 0;
  let metasrvMs = 0;
  let bytes = 0;
  for (let round = 0; round <= rounds; round++) {
    // `changed` replicas move each beat (writes to a few regions); the rest are idle.
    for (let k = 0; k < changed; k++) {
      const i = (round * changed + k) % regions;
      stats[i] = stat(i, 5 + round);
    }
    const t0 = performance.now();
    const sent = tracker.next(stats);
    const wire = encodeHeartbeatRequest({ cluster_id: 'bench', node_id: '1', addr: '127.0.0.1:4001', store_id: 's', ...sent.fields });
    const t1 = performance.now();
    const use = useReport(view, decodeHeartbeatRequest(wire));
    const t2 = performance.now();
    if (use.kind !== 'view') throw new Error(`report ${sent.seq} refused: ${use.why}`);
    view = use.report;
    tracker.answered(sent, { report_seq_applied: String(use.applied) });
    if (round === 0) continue; // the first report is full either way
    datanodeMs += t1 - t0;
    metasrvMs += t2 - t1;
    bytes += wire.length;
  }
  return { datanodeMs: datanodeMs / rounds, metasrvMs: metasrvMs / rounds, bytes: bytes / rounds };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const regions of sizes) {
  for (const changed of changedCounts) {
    const out: Record<'full' | 'delta', Timing[]> = { full: [], delta: [] };
    for (let rep = 0; rep < 5; rep++) {
      out.full.push(run(regions, changed, 1));
      out.delta.push(run(regions, changed, 60));
    }
    const line = (kind: 'full' | 'delta') =>
      `${kind} ${median(out[kind].map((t) => t.datanodeMs)).toFixed(3)} ms datanode / ${median(out[kind].map((t) => t.metasrvMs)).toFixed(3)} ms metasrv / ${Math.round(median(out[kind].map((t) => t.bytes)))} B`;
    process.stdout.write(`${regions} replicas, ${changed} changed per beat (median of 5 × ${rounds}; a full report every 60 in delta): ${line('full')}; ${line('delta')} (load ${loadavg()[0]!.toFixed(1)})\n`);
  }
}
