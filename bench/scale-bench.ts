// make bench-scale (issue 19 item 4, docs/quiescence.md): many regions per datanode.
// For each size N of SCALE_REGIONS (default 100,1000,5000), a fresh 3-datanode cluster with N
// regions of 3 replicas (so N replicas on every datanode, in tables of at most
// REGIONS_PER_TABLE regions: limits.regionsPerTableMax is 1,024):
//   - the time CreateTable took and until every region had a leader;
//   - how long the metasrv took to balance the leaders after that (balance-leaders done, every
//     node within ±1: steady state, as make bench waits for; at most SCALE_BALANCE_WAIT_SECONDS,
//     default 900, else the idle numbers are flagged as taken while balancing);
//   - idle CPU (% of one core, from /proc/<pid>/stat) and RSS of every datanode over
//     SCALE_IDLE_SECONDS, after SCALE_SETTLE_SECONDS without writes (regions quiesce);
//   - single-row write latency p50/p99 from SCALE_CLIENTS loops writing to random regions for
//     SCALE_WRITE_SECONDS;
//   - at N = SCALE_KILL_AT (default 1000): the regions left idle again, kill -9 of the datanode
//     leading the most regions, then SCALE_KILL_WRITERS (256) writers take the regions in turn
//     until each acknowledged a write: per-region write gap = that acknowledgement − the kill (p50
//     and max, over every region and over the regions the victim led); and when every region the
//     victim led had a new leader (from the survivors' Admin.Status).
// The kill's record also holds the time of the kill, each of the victim's regions' gap and the
// cluster's directory (its logs stay there: `node --import tsx bench/failover-timeline.ts
// <results.json>` lines the gaps up with the survivors' detection and elections).
// The load average is recorded with every number: on a shared machine the numbers are from a
// loaded machine. Results are printed and written to bench/results/scale-<date>.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeRegionId, regionNumberOf } from '../src/engine/key.js';
import { LocalCluster, sleep, waitUntil } from '../test/support/local-cluster.js';
import type { ClientTraceEvent } from '../src/client/client.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { placeLeaders } from './leaders.js';

const sizes = (process.env['SCALE_REGIONS'] || '100,1000,5000').split(',').map(Number);
const killAt = Number(process.env['SCALE_KILL_AT'] || 1000);
const settleSeconds = Number(process.env['SCALE_SETTLE_SECONDS'] || 5);
const idleSeconds = Number(process.env['SCALE_IDLE_SECONDS'] || 10);
const writeSeconds = Number(process.env['SCALE_WRITE_SECONDS'] || 10);
const clients = Number(process.env['SCALE_CLIENTS'] || 8);
const killWriters = Number(process.env['SCALE_KILL_WRITERS'] || 256);
const balanceWaitSeconds = Number(process.env['SCALE_BALANCE_WAIT_SECONDS'] || 900);
const REGIONS_PER_TABLE = 1000;
const GAP_GOAL_MS = 1500;
const IDLE_CPU_GOAL_PCT = 5;
/** /proc/<pid>/stat counts CPU time in clock ticks of 1/100 s on Linux. */
const CLOCK_TICKS_PER_S = 100;

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Math.round(Number(line?.split(/\s+/)[1] ?? Number.NaN) / 1024);
}

const COLUMNS = [
  { name: 'k', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
] as const;

type Client = ReturnType<LocalCluster['client']>;
type Schema = Awaited<ReturnType<Client['createTable']>>;

interface Target {
  readonly table: string;
  readonly regionId: string;
  /** A tag value that routes to this region. */
  readonly key: string;
}

/** A key for every region of every table (found by hashing k0, k1, … until each region has one). */
function targetsOf(tables: { name: string; schema: Schema; regions: number }[]): Target[] {
  const targets: Target[] = [];
  for (const { name, schema, regions } of tables) {
    const keys = new Map<number, string>();
    for (let i = 0; keys.size < regions && i < regions * 100; i++) {
      const n = regionNumberOf(schema, { k: `k${i}`, ts: 0 });
      if (!keys.has(n)) keys.set(n, `k${i}`);
    }
    if (keys.size < regions) throw new Error(`no key found for every region of ${name} (${keys.size} of ${regions})`);
    for (const [n, key] of keys) targets.push({ table: name, regionId: makeRegionId(schema.tableId, n), key });
  }
  return targets;
}

/**
 * CPU (% of one core) and RSS of every datanode, then of the metasrv (the last entry), over
 * `seconds`. SCALE_PROFILE=1: every process gets a SIGUSR2 as the window opens and another as it
 * closes, which start and stop bench/cpu-profile.cjs's profile when the cluster runs with
 * NODE_OPTIONS="--require $PWD/bench/cpu-profile.cjs" CPU_PROFILE_ON_SIGNAL=1 CPU_PROFILE_DIR=…
 * (the profiler's own cost is then in the CPU numbers: not comparable with unprofiled runs).
 */
async function idleUsage(cluster: LocalCluster, seconds: number) {
  const pids = [...cluster.datanodes, cluster.metasrv].map((d) => d.process!.pid!);
  const profile = process.env['SCALE_PROFILE'] === '1';
  if (profile) for (const pid of pids) process.kill(pid, 'SIGUSR2');
  const before = pids.map(cpuTicks);
  const startedAt = performance.now();
  await sleep(seconds * 1000);
  const elapsedS = (performance.now() - startedAt) / 1000;
  if (profile) for (const pid of pids) process.kill(pid, 'SIGUSR2');
  const usage = pids.map((pid, i) => ({
    cpuPct: Math.round(((cpuTicks(pid) - before[i]!) / CLOCK_TICKS_PER_S / elapsedS) * 1000) / 10,
    rssMiB: rssMiB(pid),
  }));
  return { datanodes: usage.slice(0, -1), metasrv: usage.at(-1)! };
}

/**
 * Waits until the metasrv has placed the leaders (a balance-leaders ended done with every region
 * led: bench/leaders.ts), for at most SCALE_BALANCE_WAIT_SECONDS. Idle is measured after this: a
 * cluster still moving leaders is not idle.
 */
async function waitBalanced(client: Client, regions: number): Promise<{ balanced: boolean; ms: number; counts: number[] }> {
  const started = Date.now();
  const counts = await placeLeaders(client, regions, balanceWaitSeconds * 1000);
  if (counts) return { balanced: true, ms: Date.now() - started, counts };
  const view = await client.listNodes();
  return { balanced: false, ms: Date.now() - started, counts: view.nodes.map((n) => Number(n.leaders)) };
}

async function writeLatency(client: Client, targets: readonly Target[], seconds: number) {
  const latencies: number[] = [];
  let failures = 0;
  let ts = Date.now();
  const stopAt = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let i = c;
      while (Date.now() < stopAt) {
        const t = targets[(i * 7919 + c) % targets.length]!;
        i++;
        const started = performance.now();
        try {
          await client.write(t.table, [{ k: t.key, ts: ts++ }]);
          latencies.push(performance.now() - started);
        } catch {
          failures++;
        }
      }
    }),
  );
  const sorted = latencies.sort((a, b) => a - b);
  const round = (v: number) => Math.round(v * 100) / 100;
  return { writes: sorted.length, failures, p50Ms: round(pct(sorted, 50)), p99Ms: round(pct(sorted, 99)), opsPerS: Math.round(sorted.length / seconds) };
}

type TraceEvent = (ClientTraceEvent | { kind: 'write'; regionId: string; startMs: number; durationMs: number; code?: string }) & { regionId?: string };

/**
 * SCALE_TRACE=1: the prober's events (ClientOptions.trace) and each writer's write() calls from
 * the kill on, and this process's own event-loop delay (the bench's client runs in it: a late
 * loop here is a late acknowledgement there). Saved next to the results, for failover-timeline.ts.
 */
class ClientTrace {
  private readonly events: TraceEvent[] = [];
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private recording = false;

  start(): void {
    this.recording = true;
    this.loop.enable();
  }

  add(event: TraceEvent): void {
    if (this.recording) this.events.push(event);
  }

  save(killedAtMs: number, victimRegions: ReadonlySet<string>, addrs: Record<string, string>): string {
    this.recording = false;
    this.loop.disable();
    const ms = (ns: number) => Math.round(ns / 1e5) / 10;
    const file = join(import.meta.dirname, 'results', `scale-trace-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    const events = this.events.filter((e) => e.regionId === undefined || victimRegions.has(e.regionId)).map((e) => ({ ...e, startMs: e.startMs - killedAtMs }));
    const eventLoopDelayMs = { p50: ms(this.loop.percentile(50)), p99: ms(this.loop.percentile(99)), max: ms(this.loop.max) };
    writeFileSync(file, JSON.stringify({ killedAtMs, addrs, eventLoopDelayMs, events }));
    return file;
  }
}

/** kill -9 the datanode leading the most regions; one writer per region until it is acknowledged. */
async function killLeader(cluster: LocalCluster, client: Client, targets: readonly Target[], trace?: ClientTrace) {
  const statuses = await Promise.all(cluster.datanodes.map((_, i) => cluster.status(i)));
  const led = statuses.map((s) => new Set(s.replicas.filter((r) => r.role === 'leader').map((r) => r.region_id)));
  const victim = led.reduce((best, set, i) => (set.size > led[best]!.size ? i : best), 0);
  const load = loadavg();
  // SCALE_PROFILE=kill: the survivors and the metasrv profiled from just before the kill until the
  // writers are done (same signals as SCALE_PROFILE=1's idle window, see idleUsage).
  const profiled = process.env['SCALE_PROFILE'] === 'kill' ? [...cluster.datanodes.filter((_, i) => i !== victim), cluster.metasrv].map((d) => d.process!.pid!) : [];
  for (const pid of profiled) process.kill(pid, 'SIGUSR2');
  trace?.start();
  await cluster.stopDatanode(victim, 'SIGKILL');
  const killedAt = Date.now();
  const gaps = new Map<string, number>();
  let ts = killedAt;
  // Raft's part: when every region the victim led has a leader on a surviving node.
  const survivors = cluster.datanodes.map((_, i) => i).filter((i) => i !== victim);
  const raftFailover = (async () => {
    while (Date.now() - killedAt < 30_000) {
      const statuses = await Promise.all(survivors.map((i) => cluster.status(i).catch(() => ({ replicas: [] }))));
      const leaders = new Set(statuses.flatMap((st) => st.replicas.filter((r) => r.role === 'leader').map((r) => r.region_id)));
      if ([...led[victim]!].every((id) => leaders.has(id))) return Date.now() - killedAt;
      await sleep(50);
    }
    return Number.POSITIVE_INFINITY;
  })();
  // A bounded pool of writers (a thousand concurrent retry loops would be a load of their own):
  // each takes the next region without an acknowledged write, tries once with a short deadline,
  // and puts it back at the end of the queue when that fails.
  const queue = [...targets];
  await Promise.all(
    Array.from({ length: killWriters }, async () => {
      while (queue.length > 0 && Date.now() - killedAt < 30_000) {
        const t = queue.shift()!;
        const startMs = Date.now();
        try {
          await client.write(t.table, [{ k: t.key, ts: ts++ }]);
          gaps.set(t.regionId, Date.now() - killedAt);
          trace?.add({ kind: 'write', regionId: t.regionId, startMs, durationMs: Date.now() - startMs });
        } catch (err) {
          trace?.add({ kind: 'write', regionId: t.regionId, startMs, durationMs: Date.now() - startMs, code: (err as { code?: string }).code ?? '?' });
          queue.push(t);
          await sleep(10);
        }
      }
    }),
  );
  for (const pid of profiled) process.kill(pid, 'SIGUSR2');
  const traceFile = trace?.save(killedAt, led[victim]!, Object.fromEntries(cluster.datanodes.map((_, i) => [`datanode${i + 1}`, cluster.datanodeAddr(i)])));
  const summarize = (ids: string[]) => {
    const values = ids.map((id) => gaps.get(id) ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
    return { regions: values.length, p50Ms: pct(values, 50), p99Ms: pct(values, 99), maxMs: values.at(-1) ?? Number.NaN };
  };
  return {
    victim: `datanode${victim + 1}`,
    killedAtMs: killedAt,
    // Per-region gaps of the victim's regions (ms; absent: none within 30 s), for
    // bench/failover-timeline.ts, which lines them up with the survivors' logs.
    victimGapsMs: Object.fromEntries([...led[victim]!].map((id) => [id, gaps.get(id) ?? null])),
    victimLed: led[victim]!.size,
    ...(traceFile ? { traceFile } : {}),
    everyRegionLedAgainMs: await raftFailover,
    loadavg: load,
    allRegions: summarize(targets.map((t) => t.regionId)),
    victimRegions: summarize(targets.map((t) => t.regionId).filter((id) => led[victim]!.has(id))),
  };
}

async function runSize(regions: number) {
  // SCALE_NO_QUIESCE=1: the same measurement with quiescence off (the baseline).
  // SCALE_RAFT_TOML: extra lines of the datanodes' [raft] section (e.g. "beat_every_ticks = 2"), for A/B runs.
  const raftToml = `${process.env['SCALE_NO_QUIESCE'] === '1' ? 'quiesce_idle_ticks = 0\n' : ''}${(process.env['SCALE_RAFT_TOML'] ?? '').replace(/;/g, '\n')}`;
  const cluster = new LocalCluster({ datanodes: 3, ...(raftToml.trim() !== '' ? { datanodeToml: `[raft]\n${raftToml}\n` } : {}) });
  try {
    await cluster.start();
    const client = cluster.client({ deadlineMs: 600_000, attemptTimeoutMs: 600_000 });
    const createStarted = Date.now();
    const tables: { name: string; schema: Schema; regions: number }[] = [];
    for (let t = 0; t * REGIONS_PER_TABLE < regions; t++) {
      const count = Math.min(REGIONS_PER_TABLE, regions - t * REGIONS_PER_TABLE);
      const name = `scale${t}`;
      tables.push({ name, schema: await client.createTable(name, [...COLUMNS], count), regions: count });
      process.stdout.write(`  ${regions}: table ${name} (${count} regions) created after ${((Date.now() - createStarted) / 1000).toFixed(1)} s\n`);
    }
    const createMs = Date.now() - createStarted;
    await waitUntil(`a leader for each of ${regions} regions`, 600_000, async () => {
      const statuses = await Promise.all(cluster.datanodes.map((_, i) => cluster.status(i)));
      const leaders = new Set(statuses.flatMap((s) => s.replicas.filter((r) => r.role === 'leader').map((r) => r.region_id)));
      return leaders.size >= regions ? true : undefined;
    });
    const allLeadersMs = Date.now() - createStarted;
    const balance = await waitBalanced(client, regions);
    const targets = targetsOf(tables);
    client.close();
    const writer = cluster.client({ deadlineMs: 20_000, attemptTimeoutMs: 1000 });
    // Every region written once (routes cached), then left alone.
    await writeLatency(writer, targets, 2);
    await sleep(settleSeconds * 1000);
    const quiesced = await Promise.all(cluster.datanodes.map((_, i) => cluster.metric(i, 'regiondb_raft_replicas_quiesced')));
    const idleLoad = loadavg();
    const { datanodes: idle, metasrv: metasrvIdle } = await idleUsage(cluster, idleSeconds);
    const writeLoad = loadavg();
    const writes = await writeLatency(writer, targets, writeSeconds);
    const result: Record<string, unknown> = { regionsPerDatanode: regions, tables: tables.length, createMs, allLeadersMs, balance, quiesced, idle, metasrvIdle, idleLoadavg: idleLoad, writes, writeLoadavg: writeLoad };
    process.stdout.write(
      `  ${regions} regions/datanode: created in ${(createMs / 1000).toFixed(1)} s (all led after ${(allLeadersMs / 1000).toFixed(1)} s; ${balance.balanced ? `leaders balanced ${(balance.ms / 1000).toFixed(1)} s after that, ${balance.counts.join(' / ')}` : `NOT BALANCED after ${(balance.ms / 1000).toFixed(1)} s (${balance.counts.join(' / ')}): the idle numbers below include balancing`}); quiesced replicas ${quiesced.join(' / ')}; idle CPU ${idle.map((d) => `${d.cpuPct}%`).join(' / ')}, RSS ${idle.map((d) => `${d.rssMiB} MiB`).join(' / ')}; metasrv idle CPU ${metasrvIdle.cpuPct}% (load ${idleLoad}); writes p50 ${writes.p50Ms} ms p99 ${writes.p99Ms} ms, ${writes.opsPerS} ops/s, ${writes.failures} failed (load ${writeLoad})\n`,
    );
    if (regions === killAt) {
      await sleep(settleSeconds * 1000);
      // SCALE_TRACE=1: the prober reports every attempt, backoff and route lookup (ClientOptions.trace);
      // killLeader keeps the victim's regions' events (bench/failover-timeline.ts splits the client's part).
      const trace = process.env['SCALE_TRACE'] === '1' ? new ClientTrace() : undefined;
      const prober = cluster.client({ deadlineMs: 10_000, attemptTimeoutMs: 1000, ...(trace ? { trace: (e: ClientTraceEvent) => trace.add(e) } : {}) });
      await writeLatency(prober, targets, 1); // routes cached
      await sleep(settleSeconds * 1000);
      const kill = await killLeader(cluster, prober, targets, trace);
      prober.close();
      result['kill'] = kill;
      result['clusterDir'] = cluster.dir;
      process.stdout.write(
        `  kill -9 ${kill.victim} (led ${kill.victimLed}) → every region led again after ${kill.everyRegionLedAgainMs} ms; per-region write gap over its regions: p50 ${kill.victimRegions.p50Ms} ms, max ${kill.victimRegions.maxMs} ms; over all ${kill.allRegions.regions}: max ${kill.allRegions.maxMs} ms (goal < ${GAP_GOAL_MS} ms; load ${kill.loadavg}); logs in ${cluster.dir}\n`,
      );
    }
    writer.close();
    return result;
  } finally {
    // SCALE_KEEP_LOGS=1 (or a kill measured: bench/failover-timeline.ts reads them): the logs stay.
    await cluster.stop({ keepData: process.env['SCALE_KEEP_LOGS'] === '1' || regions === killAt });
    if (regions === killAt) process.stdout.write(`  (the cluster's directory ${cluster.dir} is kept for its logs: remove it when done)\n`);
  }
}

const results = [];
for (const regions of sizes) results.push(await runSize(regions));
process.stdout.write('\nregions/datanode | idle CPU per datanode (goal ≤ 5%) | RSS MiB | write p50 / p99 ms | load avg\n');
for (const r of results as { regionsPerDatanode: number; idle: { cpuPct: number; rssMiB: number }[]; idleLoadavg: string; writes: { p50Ms: number; p99Ms: number } }[]) {
  const worst = Math.max(...r.idle.map((d) => d.cpuPct));
  process.stdout.write(
    `${r.regionsPerDatanode} | ${r.idle.map((d) => d.cpuPct).join(' / ')} (${worst <= IDLE_CPU_GOAL_PCT ? 'goal met' : 'GOAL MISSED'}) | ${r.idle.map((d) => d.rssMiB).join(' / ')} | ${r.writes.p50Ms} / ${r.writes.p99Ms} | ${r.idleLoadavg}\n`,
  );
}
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const resultFile = join(dir, `scale-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
process.stdout.write(`results in ${resultFile}\n`);
writeFileSync(resultFile, JSON.stringify({ loadedMachine: true, quiescence: process.env['SCALE_NO_QUIESCE'] !== '1', results }, null, 2));
