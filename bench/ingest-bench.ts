// make bench-ingest: sustained ingest into a 3-datanode cluster for INGEST_SECONDS (default 150):
// rows/s, flush throughput, WAL size on disk, datanode RSS and CPU sampled every 10 s. The engine
// must keep memory and WAL bounded while data keeps arriving (it lands in SSTs in the object
// store); issue 19's target is 100,000 rows/s sustained with WAL and RSS flat. CPU per row (the
// datanodes' utime + stime from /proc) is printed because it depends far less on the machine's
// load than rows/s does (docs/performance.md).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, dirBytes, sleep } from '../test/support/local-cluster.js';
import { placeLeaders } from './leaders.js';

const seconds = Number(process.env['INGEST_SECONDS'] ?? 150);
const TARGET_ROWS_PER_SEC = 100_000;
const REGIONS = 4;
const writers = Number(process.env['INGEST_WRITERS'] ?? 8);
const batch = Number(process.env['INGEST_BATCH'] ?? 500);

function rssBytes(pid: number | undefined): number {
  if (!pid) return 0;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** utime + stime of a process in seconds (/proc/<pid>/stat fields 14 and 15, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const mb = (b: number) => (b / 1048576).toFixed(1);

async function main(): Promise<void> {
  // The engine bounds what it holds (memtables, SST cache, WAL cache); V8 bounds its heap only
  // when told, otherwise it grows lazily toward a quarter of the machine's memory. Production
  // datanodes should set it the same way (docs/engine.md).
  const heapMb = Number(process.env['INGEST_HEAP_MB'] ?? 0);
  // INGEST_PLACEMENT=spread: the metasrv's leader_placement (default "table": every leader of the
  // table on one node, whose main thread then does every region's flushes and compactions).
  const placement = process.env['INGEST_PLACEMENT'] ?? 'table';
  if (placement !== 'table' && placement !== 'spread') throw new Error(`INGEST_PLACEMENT must be "table" or "spread", not ${JSON.stringify(placement)}`);
  const cluster = new LocalCluster({
    datanodeToml: '[engine]\nflush_bytes = 4194304',
    metasrvToml: `leader_placement = "${placement}"`,
    nodeArgs: heapMb > 0 ? [`--max-old-space-size=${heapMb}`] : [],
  });
  let loadAtStart = 0;
  let totalCpu = 0;
  let totalClientCpu = 0;
  const samples: { t: number; rows: number; rowsPerSec: number; cpuUsPerRow: number; flushes: number; flushMB: number; walMB: number[]; rssMB: number[]; memtableMB: number[]; heapMB: number[] }[] = [];
  try {
    await cluster.start();
    const client = cluster.client({ deadlineMs: 60_000 });
    await client.createTable('ingest', [
      { name: 'host', type: 'string', semantic: 'tag' },
      { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
      { name: 'usage', type: 'float64', semantic: 'field' },
      { name: 'note', type: 'string', semantic: 'field' },
    ], REGIONS);
    // Steady state first, as make bench does (bench/leaders.ts): every region has elected its
    // leader, and the leaders are where the metasrv's leader placement puts them now rather than
    // moved by its periodic check in the middle of the run.
    await client.write('ingest', [{ host: 'warm-up', ts: 1_600_000_000_000, usage: 0, note: '' }]);
    if (!(await placeLeaders(client, REGIONS, 30_000))) throw new Error('the leaders were not placed within 30 s (balance-leaders)');
    let rows = 0;
    let seq = 0;
    const endAt = Date.now() + seconds * 1000;
    const load = Array.from({ length: writers }, async () => {
      while (Date.now() < endAt) {
        const base = seq;
        seq += batch;
        await client.write('ingest', Array.from({ length: batch }, (_, j) => ({ host: `host-${(base + j) % 5000}`, ts: 1_700_000_000_000 + base + j, usage: Math.random(), note: 'x'.repeat(32) })));
        rows += batch;
      }
    });
    const started = Date.now();
    let lastRows = 0;
    let lastT = started;
    const datanodeCpu = () => cluster.datanodes.reduce((sum, d) => sum + cpuSeconds(d.process?.pid), 0);
    const cpuAtStart = datanodeCpu();
    let lastCpu = cpuAtStart;
    // The bench's own process: its writers build the rows and the client library routes, encodes
    // and sends them — on the same two cores as the datanodes.
    const clientCpu = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    const clientCpuAtStart = clientCpu();
    loadAtStart = loadavg()[0]!;
    process.stdout.write(`sustained ingest for ${seconds} s, ${writers} writers × ${batch}-row batches, leader placement ${placement}, datanode heap cap ${heapMb || 'none'} MB, load average ${loadAtStart.toFixed(1)}\n   t(s)   rows/s  CPU µs/row  flushes  flushed MB  WAL MB (per node)      RSS MB (per node)     memtable MB       JS heap used MB\n`);
    while (Date.now() < endAt) {
      await sleep(10_000);
      const now = Date.now();
      const flushes = (await Promise.all([0, 1, 2].map((n) => cluster.metric(n, 'regiondb_engine_flushes_total')))).reduce((a, b) => a + b, 0);
      const flushBytes = (await Promise.all([0, 1, 2].map((n) => cluster.metric(n, 'regiondb_engine_flush_bytes_total')))).reduce((a, b) => a + b, 0);
      const cpu = datanodeCpu();
      const s = {
        t: Math.round((now - started) / 1000),
        rows,
        rowsPerSec: Math.round(((rows - lastRows) * 1000) / (now - lastT)),
        cpuUsPerRow: rows > lastRows ? Math.round(((cpu - lastCpu) * 1e6) / (rows - lastRows)) : 0,
        flushes,
        flushMB: Number(mb(flushBytes)),
        walMB: cluster.datanodes.map((d) => Number(mb(dirBytes(join(d.dataDir, 'wal'))))),
        rssMB: cluster.datanodes.map((d) => Number(mb(rssBytes(d.process?.pid)))),
        memtableMB: await Promise.all([0, 1, 2].map(async (n) => Number(mb(await cluster.metric(n, 'regiondb_engine_memtable_bytes'))))),
        heapMB: await Promise.all([0, 1, 2].map(async (n) => Number(mb(await cluster.metric(n, 'nodejs_heap_size_used_bytes'))))),
      };
      samples.push(s);
      lastRows = rows;
      lastT = now;
      lastCpu = cpu;
      totalCpu = cpu - cpuAtStart;
      totalClientCpu = clientCpu() - clientCpuAtStart;
      process.stdout.write(`${String(s.t).padStart(7)}  ${String(s.rowsPerSec).padStart(7)}  ${String(s.cpuUsPerRow).padStart(10)}  ${String(s.flushes).padStart(7)}  ${String(s.flushMB).padStart(10)}  ${s.walMB.join('/').padEnd(21)}  ${s.rssMB.join('/').padEnd(20)}  ${s.memtableMB.join('/').padEnd(16)}  ${s.heapMB.join('/')}\n`);
    }
    await Promise.all(load);
  } finally {
    await cluster.stop();
  }
  // Flat = bounded: after a warm-up (heaps and caches grow to their working size in the first
  // 30 s), the second half's peak is no higher than the first half's by more than a quarter.
  const steady = samples.filter((x) => x.t > 30);
  const half = steady.slice(Math.floor(steady.length / 2));
  const firstHalf = steady.slice(0, Math.floor(steady.length / 2));
  const maxRss = (xs: typeof samples) => Math.max(...xs.flatMap((x) => x.rssMB));
  const maxWal = (xs: typeof samples) => Math.max(...xs.flatMap((x) => x.walMB));
  const total = samples.at(-1)?.rows ?? 0;
  const sustained = Math.round(total / seconds);
  const loadAtEnd = loadavg()[0]!;
  const flat = (f: (xs: typeof samples) => number) => (firstHalf.length > 0 ? (f(half) <= 1.25 * f(firstHalf) ? 'flat' : 'GROWING') : 'too short to tell');
  process.stdout.write(
    `\n${total} rows in ${seconds} s (${sustained} rows/s sustained, slowest 10 s ${Math.min(...samples.map((x) => x.rowsPerSec))} rows/s); datanode CPU ${total > 0 ? Math.round((totalCpu * 1e6) / total) : 0} µs per row (3 replicas), bench client CPU ${total > 0 ? Math.round((totalClientCpu * 1e6) / total) : 0} µs per row; load average ${loadAtStart.toFixed(1)} → ${loadAtEnd.toFixed(1)} on ${cpus().length} cores\n` +
      `RSS max ${maxRss(samples)} MB (after 30 s: first half ${maxRss(firstHalf)}, second half ${maxRss(half)}: ${flat(maxRss)}); WAL max ${maxWal(samples)} MB (after 30 s: first half ${maxWal(firstHalf)}, second half ${maxWal(half)}: ${flat(maxWal)})\n` +
      `target: ingest >= ${TARGET_ROWS_PER_SEC} rows/s sustained for 150 s: ${sustained} rows/s over ${seconds} s (${sustained >= TARGET_ROWS_PER_SEC && seconds >= 150 ? 'met' : 'MISSED'})\n`,
  );
  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `ingest-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
    JSON.stringify({ seconds, writers, batch, sustainedRowsPerSec: sustained, cpuUsPerRow: total > 0 ? (totalCpu * 1e6) / total : 0, clientCpuUsPerRow: total > 0 ? (totalClientCpu * 1e6) / total : 0, loadAverage: [loadAtStart, loadAtEnd], samples }, null, 2),
  );
}

await main();
