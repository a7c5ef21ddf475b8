// make bench: the same workloads, from one harness, against a real regiondb cluster (metasrv +
// three datanode processes from dist/; the bench table in 4 regions, and again in one region —
// one raft group, as etcd's keyspace is) and a real 3-member etcd 3.4 cluster, all on loopback
// and one after the other (never at once: they share this machine's cores). Workloads:
// single-key writes at 1, 16 and 64 clients; linearizable reads at 1, 16 and 64 clients;
// 100-row atomic batch writes (regiondb) vs etcd txns of 100 puts at 1 and 16 clients. Each
// runs BENCH_WARMUP_SECONDS unrecorded, then BENCH_SECONDS measured (closed loop, HDR
// histograms) and CPU per operation of the servers and of the client. Prints the side-by-side
// table with regiondb/etcd ratios, the physical floor of
// this machine and the issue's targets; writes bench/results/<date>.json. Every acknowledged
// write is durable on a quorum on both systems (fsync'd WALs).
//
// Before its first workload each system serves BENCH_PREWARM_WRITES (default 10,000) writes
// from 16 clients, not recorded: regiondb's processes (and the clients, etcd's too) are
// JIT-compiled while they run, and a single client's writes were ~30% slower for the first
// ~4,000 writes (docs/performance.md, "Round 5"), which the first workload's 2 s warm-up did not
// cover. A count, not a time: V8 optimizes code after it has run enough, however long that
// takes on a loaded machine.
//
// Environment: BENCH_SECONDS (default 10), BENCH_WARMUP_SECONDS (default 2), BENCH_SYSTEMS
// (default "regiondb,regiondb-1r,etcd"; also "regiondb-spread": the 4-region table with its
// leaders evened over the datanodes, `leader_placement = "spread"`; "regiondb-lease": the
// 4-region table with `raft.read_only = "lease"`, docs/raft.md), BENCH_WORKLOADS (e.g. "write:1,write:64,batch100:16";
// default all), BENCH_REGIONDB_UNARY=1 (regiondb clients make one unary call per operation, as
// etcd's do), BENCH_REGIONDB_REGIONS (the `regiondb` system's regions, default 4),
// BENCH_REGIONDB_NODE_ARGS (flags for `node` in every regiondb process, space-separated).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { type Measurement, runClosedLoop } from './driver.js';
import { ETCD_BIN, etcdVersion } from './etcd-cluster.js';
import { type Floor, measureFloor } from './floor.js';
import { type BenchClient, type BenchTarget, EtcdTarget, KEYS_MAX, RegionDbTarget, type SystemName } from './targets.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 10);
const warmupSeconds = Number(process.env['BENCH_WARMUP_SECONDS'] ?? 2);
const prewarmWrites = Number(process.env['BENCH_PREWARM_WRITES'] ?? 10_000);
const PREWARM_CLIENTS = 16;
const SYSTEMS: readonly SystemName[] = ['regiondb', 'regiondb-1r', 'etcd'];
/** Systems run only when BENCH_SYSTEMS names them. */
const OPT_IN_SYSTEMS: readonly SystemName[] = ['regiondb-spread', 'regiondb-lease'];
const systems = (process.env['BENCH_SYSTEMS'] ?? SYSTEMS.join(',')).split(',') as SystemName[];
for (const s of systems) if (!SYSTEMS.includes(s) && !OPT_IN_SYSTEMS.includes(s)) throw new Error(`BENCH_SYSTEMS: unknown system ${s} (known: ${[...SYSTEMS, ...OPT_IN_SYSTEMS].join(', ')})`);
/** The regiondb systems, each compared with etcd. */
const REGIONDB_SYSTEMS: readonly SystemName[] = ['regiondb', 'regiondb-1r', 'regiondb-spread', 'regiondb-lease'];

type WorkloadKind = 'write' | 'read' | 'batch100';
interface Workload {
  readonly kind: WorkloadKind;
  readonly clients: number;
}

const WORKLOAD_TITLES: Record<WorkloadKind, string> = {
  write: 'write 1 key',
  read: 'linearizable read',
  batch100: 'batch 100 keys',
};
const ALL_WORKLOADS: Workload[] = [
  { kind: 'write', clients: 1 },
  { kind: 'write', clients: 16 },
  { kind: 'write', clients: 64 },
  { kind: 'read', clients: 1 },
  { kind: 'read', clients: 16 },
  { kind: 'read', clients: 64 },
  { kind: 'batch100', clients: 1 },
  { kind: 'batch100', clients: 16 },
];
const workloads: Workload[] = process.env['BENCH_WORKLOADS']
  ? process.env['BENCH_WORKLOADS'].split(',').map((spec) => {
      const [kind, clients] = spec.split(':');
      if (!kind || !(kind in WORKLOAD_TITLES) || !Number.isInteger(Number(clients))) throw new Error(`BENCH_WORKLOADS: bad entry ${spec} (kind:clients)`);
      return { kind: kind as WorkloadKind, clients: Number(clients) };
    })
  : ALL_WORKLOADS;
const READ_KEYS = 1000;
const BATCH_ROWS = 100;

interface Result extends Measurement {
  readonly system: SystemName;
  readonly workload: WorkloadKind;
  readonly clients: number;
}

function operation(w: Workload, pool: readonly BenchClient[]): (clientIndex: number, seq: number) => Promise<void> {
  // Clients interleave over the key space so concurrent clients rarely write the same key.
  const keyOf = (clientIndex: number, seq: number) => seq * w.clients + clientIndex;
  switch (w.kind) {
    case 'write':
      return (i, seq) => pool[i]!.write(keyOf(i, seq) % KEYS_MAX);
    case 'read':
      return (i, seq) => pool[i]!.read(keyOf(i, seq) % READ_KEYS);
    case 'batch100':
      return (i, seq) => pool[i]!.writeBatch(i, seq * BATCH_ROWS, BATCH_ROWS);
  }
}

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

/** BENCH_PREWARM_WRITES writes from PREWARM_CLIENTS clients, not recorded (see the top of this file). */
async function prewarm(target: BenchTarget): Promise<void> {
  process.stdout.write(`  ${target.system.padEnd(8)} warm-up: ${prewarmWrites} writes from ${PREWARM_CLIENTS} clients, not recorded ... `);
  const w: Workload = { kind: 'write', clients: PREWARM_CLIENTS };
  const pool = Array.from({ length: w.clients }, () => target.newClient());
  const write = operation(w, pool);
  const startedMs = performance.now();
  let issued = 0;
  let errors = 0;
  try {
    await Promise.all(
      pool.map(async (_, clientIndex) => {
        for (let seq = 0; issued < prewarmWrites; seq++) {
          issued++;
          await write(clientIndex, seq).catch(() => errors++);
        }
      }),
    );
  } finally {
    for (const c of pool) c.close();
  }
  process.stdout.write(`${((performance.now() - startedMs) / 1000).toFixed(1)} s${errors > 0 ? `, ${errors} errors` : ''}\n`);
}

/** Starts one system, runs every workload against it, stops it (always). */
async function runOn(target: BenchTarget): Promise<Result[]> {
  const results: Result[] = [];
  try {
    process.stdout.write(`${target.system}: starting (${target.describe()}) ...\n`);
    await target.start();
    if (workloads.some((w) => w.kind === 'read')) await target.prepareReads(READ_KEYS);
    if (prewarmWrites > 0) await prewarm(target);
    for (const w of workloads) {
      process.stdout.write(`  ${target.system.padEnd(8)} ${WORKLOAD_TITLES[w.kind].padEnd(18)} ${String(w.clients).padStart(2)} client(s) ... `);
      const pool = Array.from({ length: w.clients }, () => target.newClient());
      try {
        const m = await runClosedLoop(w.clients, operation(w, pool), { seconds, warmupSeconds, serverCpuSeconds: () => target.serverCpuSeconds() });
        results.push({ system: target.system, workload: w.kind, clients: w.clients, ...m });
        process.stdout.write(
          `${m.opsPerSec} ops/s, p50 ${fmt(m.p50Ms)} ms, p99 ${fmt(m.p99Ms)} ms, p99.9 ${fmt(m.p999Ms)} ms, server CPU ${m.serverCpuUsPerOp} µs/op` +
            (m.errors > 0 ? `, ${m.errors} errors (${m.firstError})` : '') +
            '\n',
        );
      } finally {
        for (const c of pool) c.close();
      }
    }
  } finally {
    await target.stop();
  }
  return results;
}

interface Ratio {
  /** Which regiondb system is compared with etcd. */
  readonly system: SystemName;
  readonly workload: WorkloadKind;
  readonly clients: number;
  /** regiondb / etcd: above 1 is better for throughput, below 1 is better for latency. */
  readonly opsPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  /** Server CPU per operation. */
  readonly serverCpu: number;
}

function ratiosOf(results: readonly Result[]): Ratio[] {
  const out: Ratio[] = [];
  for (const w of workloads) {
    const e = results.find((x) => x.system === 'etcd' && x.workload === w.kind && x.clients === w.clients);
    for (const system of REGIONDB_SYSTEMS) {
      const r = results.find((x) => x.system === system && x.workload === w.kind && x.clients === w.clients);
      if (!r || !e || e.opsPerSec === 0) continue;
      const div = (a: number, b: number) => (b > 0 ? Number((a / b).toFixed(2)) : Number.NaN);
      out.push({ system, workload: w.kind, clients: w.clients, opsPerSec: div(r.opsPerSec, e.opsPerSec), p50: div(r.p50Ms, e.p50Ms), p99: div(r.p99Ms, e.p99Ms), p999: div(r.p999Ms, e.p999Ms), serverCpu: div(r.serverCpuUsPerOp ?? 0, e.serverCpuUsPerOp ?? 0) });
    }
  }
  return out;
}

function table(results: readonly Result[], ratios: readonly Ratio[]): string {
  const header = ['workload', 'clients', 'system', 'ops/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'srv CPU µs/op', 'cli CPU µs/op', 'errors'];
  const rows: string[][] = [];
  for (const w of workloads) {
    for (const r of results.filter((x) => x.workload === w.kind && x.clients === w.clients)) {
      rows.push([
        WORKLOAD_TITLES[w.kind],
        String(w.clients),
        r.system,
        String(r.opsPerSec),
        fmt(r.p50Ms),
        fmt(r.p99Ms),
        fmt(r.p999Ms),
        String(r.serverCpuUsPerOp ?? '-'),
        String(r.clientCpuUsPerOp),
        String(r.errors),
      ]);
    }
    for (const ratio of ratios.filter((x) => x.workload === w.kind && x.clients === w.clients)) {
      rows.push(['', '', `${ratio.system}/etcd`, `${ratio.opsPerSec}x`, `${ratio.p50}x`, `${ratio.p99}x`, `${ratio.p999}x`, `${ratio.serverCpu}x`, '', '']);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i <= 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

/** The issue's acceptance targets, each as met / missed with the numbers. */
function targets(results: readonly Result[], ratios: readonly Ratio[], floor: Floor): string[] {
  const lines: string[] = [];
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  for (const system of REGIONDB_SYSTEMS) {
    const w64 = ratios.find((r) => r.system === system && r.workload === 'write' && r.clients === 64);
    if (w64) {
      lines.push(`target: ${system} write throughput at 64 clients >= 1.0x etcd's: ${w64.opsPerSec}x (${verdict(w64.opsPerSec >= 1)})`);
      lines.push(`target: ${system} write p99 at 64 clients <= 1.0x etcd's: ${w64.p99}x (${verdict(w64.p99 <= 1)})`);
    }
    for (const clients of [16, 64]) {
      const cpu = ratios.find((r) => r.system === system && r.workload === 'write' && r.clients === clients);
      if (cpu) lines.push(`target: ${system} server CPU per write at ${clients} clients <= 1.0x etcd's: ${cpu.serverCpu}x (${verdict(cpu.serverCpu <= 1)})`);
    }
    const one = results.find((r) => r.system === system && r.workload === 'write' && r.clients === 1);
    if (one) {
      lines.push(
        `target: ${system} single-client write p50 <= 2 x (WAL sync ${fmt(floor.walSyncP50Ms)} ms + 2 x gRPC round trip ${fmt(floor.grpcRoundTripP50Ms)} ms) = ` +
          `${fmt(floor.singleClientWriteTargetMs)} ms: ${fmt(one.p50Ms)} ms (${verdict(one.p50Ms <= floor.singleClientWriteTargetMs)})`,
      );
    }
  }
  return lines;
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadAverageStart = loadavg();
  /** Systems skipped or failed, with the reason: printed under the table and saved. */
  const notes: string[] = [];
  let etcd: string | undefined;
  if (systems.includes('etcd')) {
    etcd = etcdVersion();
    if (!etcd) {
      notes.push(`etcd SKIPPED: ${ETCD_BIN} is missing or does not run (make bench tries \`apt-get install -y etcd-server\`); the table shows regiondb alone`);
      process.stdout.write(`${notes.at(-1)}\n`);
    }
  }
  process.stdout.write(`measuring the physical floor (WAL sync, loopback gRPC round trip) ...\n`);
  const floor = await measureFloor();
  process.stdout.write(`  WAL sync p50 ${fmt(floor.walSyncP50Ms)} ms, gRPC round trip p50 ${fmt(floor.grpcRoundTripP50Ms)} ms\n`);

  const results: Result[] = [];
  const chosen: BenchTarget[] = [];
  if (systems.includes('regiondb')) chosen.push(new RegionDbTarget());
  if (systems.includes('regiondb-1r')) chosen.push(new RegionDbTarget('', 1, 'regiondb-1r'));
  if (systems.includes('regiondb-spread')) chosen.push(new RegionDbTarget('', undefined, 'regiondb-spread', 'spread'));
  if (systems.includes('regiondb-lease')) chosen.push(new RegionDbTarget('[raft]\nread_only = "lease"', undefined, 'regiondb-lease'));
  if (systems.includes('etcd') && etcd) chosen.push(new EtcdTarget());
  for (const target of chosen) {
    try {
      results.push(...(await runOn(target)));
    } catch (err) {
      // One system failing must not lose the other's numbers; the reason is printed and saved.
      process.stdout.write(`\n${target.system}: FAILED: ${(err as Error).message}\n`);
      notes.push(`${target.system} FAILED: ${(err as Error).message}`);
    }
  }
  const ratios = ratiosOf(results);
  process.stdout.write(`\n${table(results, ratios)}\n\n`);
  process.stdout.write(`load average (1 min) at start ${loadAverageStart[0]!.toFixed(1)}, at end ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores\n`);
  process.stdout.write(
    'ratios are regiondb/etcd: above 1x is better for ops/s, below 1x is better for latency and CPU.\n' +
      'srv CPU = user+system CPU of the server processes per operation; cli CPU = this harness (the client library); ' +
      'both stay meaningful when other work shares the machine, unlike ops/s.\n',
  );
  for (const line of targets(results, ratios, floor)) process.stdout.write(`${line}\n`);
  for (const note of notes) process.stdout.write(`${note}\n`);

  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const report = {
    date: startedAt.toISOString(),
    // Load averages at start and end: on a shared machine, how much else ran meanwhile.
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, loadAverageStart, loadAverageEnd: loadavg() },
    etcdVersion: etcd ?? null,
    seconds,
    warmupSeconds,
    prewarmWrites,
    floor,
    results,
    ratios,
    notes,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results written to ${file}\n`);
  if (results.length === 0 || notes.some((n) => n.includes('FAILED'))) process.exitCode = 1;
}

await main();
