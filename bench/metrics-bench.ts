// The CPU cost of a datanode's per-write metrics, prom-client called directly (as before round 4)
// against the buffered metrics (src/rpc/buffered-metrics.ts), in ns per write. One "write" here is
// what the leader's node-metrics hooks see for one acknowledged single-row write at group-commit
// sizes like the bench's: the proposal (labelled counter + commit-time histogram), the rows
// counter, the Database.Write outcome counter, and a share of one WAL batch (two counters and two
// histograms per batch; BATCH writes per batch). A scrape every SCRAPE_EVERY writes folds the
// buffered values in (its cost is counted). CPU time, the two variants alternating each round
// (order flipped each round), medians over METRICS_BENCH_ROUNDS (default 15).
//   node --import tsx bench/metrics-bench.ts
import { Counter, Histogram, Registry } from 'prom-client';
import { BufferedCounter, BufferedHistogram, BufferedLabelledCounter } from '../src/rpc/buffered-metrics.js';
import { RPC_SECONDS_BUCKETS } from '../src/rpc/rpc-metrics.js';

const ROUNDS = Number(process.env['METRICS_BENCH_ROUNDS'] ?? 15);
const WRITES = 200_000;
const BATCH = 8;
const SCRAPE_EVERY = 50_000;
const WAL_SYNC = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const WAL_OPS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

interface Hooks {
  write(seconds: number): void;
  batch(ops: number, bytes: number, seconds: number): void;
  scrape(): Promise<string>;
}

function plain(): Hooks {
  const r = new Registry();
  const proposals = new Counter({ name: 'p_total', help: 'h', labelNames: ['outcome'], registers: [r] });
  const commit = new Histogram({ name: 'c_seconds', help: 'h', buckets: RPC_SECONDS_BUCKETS, registers: [r] });
  const rows = new Counter({ name: 'r_total', help: 'h', registers: [r] });
  const writes = new Counter({ name: 'w_total', help: 'h', labelNames: ['outcome'], registers: [r] });
  const syncs = new Counter({ name: 's_total', help: 'h', registers: [r] });
  const bytes = new Counter({ name: 'b_total', help: 'h', registers: [r] });
  const syncSeconds = new Histogram({ name: 'ss_seconds', help: 'h', buckets: WAL_SYNC, registers: [r] });
  const ops = new Histogram({ name: 'o', help: 'h', buckets: WAL_OPS, registers: [r] });
  return {
    write(seconds) {
      proposals.inc({ outcome: 'committed' });
      commit.observe(seconds);
      rows.inc(1);
      writes.inc({ outcome: 'OK' });
    },
    batch(n, b, seconds) {
      ops.observe(n);
      bytes.inc(b);
      syncs.inc();
      syncSeconds.observe(seconds);
    },
    scrape: () => r.metrics(),
  };
}

function buffered(): Hooks {
  const r = new Registry();
  const proposals = new BufferedLabelledCounter<string>(r, 'p_total', 'h', 'outcome');
  const commit = new BufferedHistogram(r, 'c_seconds', 'h', RPC_SECONDS_BUCKETS);
  const rows = new BufferedCounter(r, 'r_total', 'h');
  const writes = new BufferedLabelledCounter<string>(r, 'w_total', 'h', 'outcome');
  const syncs = new BufferedCounter(r, 's_total', 'h');
  const bytes = new BufferedCounter(r, 'b_total', 'h');
  const syncSeconds = new BufferedHistogram(r, 'ss_seconds', 'h', WAL_SYNC);
  const ops = new BufferedHistogram(r, 'o', 'h', WAL_OPS);
  return {
    write(seconds) {
      proposals.inc('committed');
      commit.observe(seconds);
      rows.inc(1);
      writes.inc('OK');
    },
    batch(n, b, seconds) {
      ops.observe(n);
      bytes.inc(b);
      syncs.inc();
      syncSeconds.observe(seconds);
    },
    scrape: () => r.metrics(),
  };
}

async function sample(hooks: Hooks): Promise<number> {
  const start = cpuNs();
  for (let i = 0; i < WRITES; i++) {
    hooks.write(0.002 + (i % 97) * 0.0001);
    if (i % BATCH === BATCH - 1) hooks.batch(BATCH * 3, 900, 0.003 + (i % 13) * 0.0002);
    if (i % SCRAPE_EVERY === SCRAPE_EVERY - 1) await hooks.scrape();
  }
  return (cpuNs() - start) / WRITES;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const variants = { 'prom-client': plain, buffered } as const;
  const results: Record<string, number[]> = { 'prom-client': [], buffered: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['prom-client', 'buffered'] as const) : (['buffered', 'prom-client'] as const);
    for (const name of order) results[name]!.push(await sample(variants[name]()));
  }
  const a = median(results['prom-client']!);
  const b = median(results['buffered']!);
  process.stdout.write(`metrics per write (${ROUNDS} rounds, medians, ns): prom-client ${a.toFixed(0)}, buffered ${b.toFixed(0)} (${(b / a).toFixed(2)}x)\n`);
}

void main();
