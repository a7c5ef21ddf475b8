// What an idle datanode does per region while every region sleeps, measured without a cluster
// (docs/performance.md, "Eighth pass"): the numbers a loaded shared machine cannot give from a
// running cluster, one piece at a time.
//   heartbeat  one beat's report at N replicas, nothing changed: DatanodeCore.reportStats (the
//              stats, reused for replicas the region server did not mark) + ReportTracker.next and
//              its acknowledgement + the request's encoding — a real RegionServer of N opened
//              replicas (MemoryLogEngine, not started: nothing ticks, nothing changes).
//   gauge      the replicas/leaders gauges' count over the same server (every heartbeat's hook
//              did it before the eighth pass; now a scrape does)
//   flusher    one Flusher.check at N replicas, a third of them leaders, every GC pass clean
//              (quiet regions on the 10-minute interval), the leaders' GC passes spread evenly
//              over the minute: the steady state of an idle node. Its change feed is empty.
// Every number is the median over REPEATS runs of ROUNDS operations each, in CPU time of the
// process (process.cpuUsage, user + system, around the synchronous calls only: the async GC work
// a check starts is not timed beyond its synchronous start), which a loaded machine inflates far
// less than wall time.
// Usage: node --import tsx bench/idle-costs.ts   (IDLE_REGIONS=1000,5000; ROUNDS=200; REPEATS=5)
import { loadavg } from 'node:os';
import { ManualClock, systemClock } from '../src/common/clock.js';
import { ErrorCode, RegionDbError } from '../src/common/errors.js';
import { silentLogger } from '../src/common/logger.js';
import { DatanodeCore } from '../src/datanode/datanode-core.js';
import { Flusher, type FlusherSettings } from '../src/datanode/flusher.js';
import { ReportTracker } from '../src/datanode/report-delta.js';
import type { RegionState } from '../src/engine/region-state.js';
import { makeRegionId } from '../src/metasrv/catalog.js';
import type { ObjectStore } from '../src/object-store/object-store.js';
import type { StateMachine } from '../src/raft/index.js';
import { RegionServer, type RegionServerHooks, defaultRaftTuning } from '../src/replication/region-server.js';
import { encodeHeartbeatRequest } from '../src/rpc/meta-wire.js';
import { LoopbackTransport, MemoryLogEngine } from '../test/fixtures/memory-log-engine.js';

const sizes = (process.env['IDLE_REGIONS'] || '1000,5000').split(',').map(Number);
const rounds = Number(process.env['ROUNDS'] || 200);
const repeats = Number(process.env['REPEATS'] || 5);
const only = process.env['IDLE_ONLY']; // heartbeat | gauge | flusher

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** CPU ms of the process since `from` (process.cpuUsage). */
const cpuMs = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};
const regionIdOf = (i: number) => makeRegionId(1024 + Math.floor(i / 1000), i % 1000);

class Counter implements StateMachine<number> {
  apply(): number {
    return 0;
  }
  serialize(): Uint8Array {
    return new Uint8Array(0);
  }
}

/** A single-node datanode core hosting `regions` replicas of 3-voter regions (peers elsewhere, never started). */
async function idleNode(regions: number): Promise<DatanodeCore<Counter, number>> {
  const engine = new MemoryLogEngine();
  const core = new DatanodeCore<Counter, number>({
    nodeId: 1,
    clusterId: 'bench',
    storeId: 'store-1',
    heartbeatIntervalMs: 1000,
    logEngine: engine,
    clock: systemClock,
    log: silentLogger,
    createRegionServer: (hooks: RegionServerHooks) =>
      new RegionServer<Counter, number>(1, engine, new LoopbackTransport(1, () => {}), { create: () => new Counter() }, { ...defaultRaftTuning }, silentLogger, systemClock, hooks),
    stateMachineStat: () => ({ flushedIndex: 0, memtableBytes: 0, ssts: 0 }),
  });
  for (let i = 0; i < regions; i++) {
    const base = 3 * i + 1;
    const peers = [0, 1, 2].map((k) => ({ peerId: base + k, nodeId: 1 + k }));
    await core.regionServer.open({ regionId: regionIdOf(i), selfPeerId: base, peers, bootstrap: true });
  }
  await new Promise((r) => setTimeout(r, 50)); // the opens' cycles
  return core;
}

async function heartbeat(regions: number): Promise<string> {
  const core = await idleNode(regions);
  const tracker = new ReportTracker(7, 60);
  // Warm up: the first (full) report and its acknowledgement; the stat cache filled.
  const first = tracker.next(core.reportStats());
  tracker.answered(first, { report_seq_applied: String(first.seq) });
  const runs: number[] = [];
  const deltaRuns: number[] = [];
  let bytes = 0;
  for (let rep = 0; rep < repeats; rep++) {
    let elapsed = 0;
    let deltaElapsed = 0;
    let deltas = 0;
    for (let round = 0; round < rounds; round++) {
      const started = process.cpuUsage();
      const report = tracker.next(core.reportStats());
      const encoded = encodeHeartbeatRequest({ cluster_id: 'bench', node_id: '1', addr: 'a:1', store_id: 's', ...report.fields });
      const ms = cpuMs(started);
      elapsed += ms;
      if (!report.full) {
        bytes = encoded.length;
        deltaElapsed += ms;
        deltas++;
      }
      tracker.answered(report, { report_seq_applied: String(report.seq) });
    }
    runs.push(elapsed / rounds);
    deltaRuns.push(deltaElapsed / deltas);
  }
  await core.regionServer.stop();
  return `heartbeat, ${regions} quiet replicas: ${median(runs).toFixed(3)} ms per beat with the full report every 60th, ${median(deltaRuns).toFixed(3)} ms per delta beat (${bytes} bytes)`;
}

async function gauge(regions: number): Promise<string> {
  const core = await idleNode(regions);
  const server = core.regionServer;
  const runs: number[] = [];
  let sink = 0;
  for (let rep = 0; rep < repeats; rep++) {
    const started = process.cpuUsage();
    for (let round = 0; round < rounds; round++) {
      // What the datanode's onHeartbeat hook set before the eighth pass (now counted at scrape).
      const replicas = server.allReplicas();
      sink += replicas.length + replicas.filter((r) => r.isLeader()).length;
    }
    runs.push(cpuMs(started) / rounds);
  }
  await server.stop();
  if (sink < 0) throw new Error('unreachable');
  return `gauges, ${regions} replicas: ${median(runs).toFixed(4)} ms per count`;
}

/** What a flusher visit reads of a replica (as test/unit/flusher-selection.test.ts's fake). */
class IdleReplica {
  readonly selfPeerId = 1;
  closed = false;
  leader = false;
  readonly raft = { term: 2, log: { committed: 5, lastIndex: () => 5, term: () => 2, slice: () => [] }, confState: () => ({ voters: [1, 2, 3], learners: [] }) };
  readonly appliedIndex = 5;
  private readonly snap = { metadata: { index: 0, term: 0, confState: { voters: [1, 2, 3], learners: [] } }, data: new Uint8Array(0) };
  readonly store = { snapshot: () => this.snap };
  readonly stateMachine = { frozen: [], memtable: { count: 0, sizeBytes: 0 }, flushedIndex: 0, ssts: [] } as unknown as RegionState;
  constructor(readonly regionId: string) {}
  isLeader(): boolean {
    return this.leader;
  }
}

async function flusher(regions: number): Promise<string> {
  const CHECK_MS = 250;
  // GC passes every minute (a 4-minute grace), a clean region's every 10 minutes: production's.
  const settings: FlusherSettings = { flushBytes: 1 << 30, flushAgeMs: 30_000, compactAtSsts: 100, gcGraceMs: 240_000, checkIntervalMs: CHECK_MS, manifestsKept: 5, gcQuietIntervalMs: 600_000 };
  const replicas = Array.from({ length: regions }, (_, i) => new IdleReplica(regionIdOf(i)));
  const byId = new Map(replicas.map((r) => [r.regionId, r]));
  let newlyLed: IdleReplica[] = [];
  const server = {
    allReplicas: () => [...replicas], // the region server copies its map's values
    replica: (regionId: string) => byId.get(regionId),
    propose: async () => {
      throw new RegionDbError(ErrorCode.Unavailable, 'the bench proposes nothing');
    },
    changeFeed: () => () => {
      const feed = new Set<IdleReplica>(newlyLed);
      newlyLed = [];
      return feed;
    },
  };
  const store = {
    description: 'bench',
    list: async () => [],
    get: async (key: string) => {
      throw new RegionDbError(ErrorCode.NotFound, key);
    },
    put: async () => {},
    delete: async () => {},
  } as unknown as ObjectStore;
  const clock = new ManualClock(0);
  const f = new Flusher(server as unknown as ConstructorParameters<typeof Flusher>[0], store, settings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
  const step = async () => {
    clock.advance(CHECK_MS);
    const started = process.cpuUsage();
    f.check();
    const ms = cpuMs(started);
    for (let i = 0; i < 3; i++) await new Promise<void>((ok) => setImmediate(ok));
    return ms;
  };
  // Every third replica becomes leader, spread over the first GC interval (a minute: 240 checks),
  // so that their passes come evenly; then ten minutes for every pass to have found its region clean.
  const leaders = replicas.filter((_, i) => i % 3 === 0);
  const perCheck = Math.ceil(leaders.length / 240);
  for (let c = 0; c < 240; c++) {
    const batch = leaders.slice(c * perCheck, (c + 1) * perCheck);
    for (const r of batch) r.leader = true;
    newlyLed = batch;
    await step();
  }
  for (let c = 0; c < 2400 + 240; c++) await step();
  const runs: number[] = [];
  const typical: number[] = [];
  for (let rep = 0; rep < repeats; rep++) {
    let elapsed = 0;
    const each: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const ms = await step();
      elapsed += ms;
      each.push(ms);
    }
    runs.push(elapsed / rounds);
    typical.push(median(each));
  }
  f.stop();
  return `flusher check, ${regions} replicas (${leaders.length} leaders, quiet): ${median(runs).toFixed(4)} ms per check with every 40th visiting every replica, median check ${median(typical).toFixed(4)} ms (4 a second)`;
}

const benches: Record<string, (n: number) => Promise<string>> = { heartbeat, gauge, flusher };
for (const regions of sizes) {
  for (const [name, bench] of Object.entries(benches)) {
    if (only && only !== name) continue;
    process.stdout.write(`${await bench(regions)} (load ${loadavg()[0]!.toFixed(1)})\n`);
  }
}
