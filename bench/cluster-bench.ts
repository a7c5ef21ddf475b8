// make bench: write throughput and latency of a real 3-datanode cluster on loopback (metasrv +
// three datanode processes started from dist/), through the client library. Scenarios: 1 and
// 64 concurrent clients, single-row writes and 100-row batches. Every acknowledged write is
// durable on a quorum (LevelDB sync batches); group commit is what lets 64 clients go faster.
//
// Environment: BENCH_SECONDS (per scenario, default 10), BENCH_CLIENTS (default "1,64"),
// BENCH_BATCHES (default "1,100"). Results are printed and written to bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as hdr from 'hdr-histogram-js';
import type { RegionDbClient } from '../src/client/client.js';
import { LocalCluster } from '../test/support/local-cluster.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 10);
const clientCounts = (process.env['BENCH_CLIENTS'] ?? '1,64').split(',').map(Number);
const batchSizes = (process.env['BENCH_BATCHES'] ?? '1,100').split(',').map(Number);

interface Result {
  clients: number;
  batch: number;
  seconds: number;
  writes: number;
  rows: number;
  writesPerSec: number;
  rowsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

async function scenario(cluster: LocalCluster, table: string, clients: number, batch: number): Promise<Result> {
  const pool: RegionDbClient[] = Array.from({ length: clients }, () => cluster.client({ deadlineMs: 30_000 }));
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let writes = 0;
  let errors = 0;
  let seq = 0;
  // Warm up each client (routes, connections) before the clock starts.
  await Promise.all(pool.map((c, i) => c.write(table, [{ host: `warm${i}`, ts: Date.now(), v: 0 }])));
  const start = process.hrtime.bigint();
  const endAt = Date.now() + seconds * 1000;
  await Promise.all(
    pool.map(async (c, i) => {
      while (Date.now() < endAt) {
        const base = seq;
        seq += batch;
        const rows = Array.from({ length: batch }, (_, j) => ({ host: `c${i}-h${(base + j) % 1000}`, ts: 1_700_000_000_000 + base + j, v: j }));
        const t0 = process.hrtime.bigint();
        try {
          await c.write(table, rows);
          histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n)); // µs
          writes++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const result: Result = {
    clients,
    batch,
    seconds: Number(elapsed.toFixed(2)),
    writes,
    rows: writes * batch,
    writesPerSec: Math.round(writes / elapsed),
    rowsPerSec: Math.round((writes * batch) / elapsed),
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    errors,
  };
  histogram.destroy();
  for (const c of pool) c.close();
  return result;
}

async function main(): Promise<void> {
  const cluster = new LocalCluster({ datanodeToml: '' });
  const results: Result[] = [];
  try {
    process.stdout.write(`starting a 3-datanode cluster in ${cluster.dir} ...\n`);
    await cluster.start();
    const admin = cluster.client();
    let t = 0;
    for (const batch of batchSizes) {
      for (const clients of clientCounts) {
        const table = `bench${t++}`;
        await admin.createTable(
          table,
          [
            { name: 'host', type: 'string', semantic: 'tag' },
            { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
            { name: 'v', type: 'float64', semantic: 'field' },
          ],
          4,
        );
        process.stdout.write(`  ${clients} client(s), ${batch}-row writes, ${seconds} s ... `);
        const r = await scenario(cluster, table, clients, batch);
        results.push(r);
        process.stdout.write(`${r.writesPerSec} writes/s (${r.rowsPerSec} rows/s), p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ${r.errors} errors\n`);
      }
    }
  } finally {
    await cluster.stop();
  }
  const lines = [
    '',
    'clients  batch  writes/s   rows/s     p50 ms   p99 ms   errors',
    ...results.map(
      (r) =>
        `${String(r.clients).padEnd(8)} ${String(r.batch).padEnd(6)} ${String(r.writesPerSec).padEnd(10)} ${String(r.rowsPerSec).padEnd(10)} ${r.p50Ms.toFixed(2).padEnd(8)} ${r.p99Ms.toFixed(2).padEnd(8)} ${r.errors}`,
    ),
  ];
  for (const batch of batchSizes) {
    const one = results.find((r) => r.batch === batch && r.clients === 1);
    const many = results.find((r) => r.batch === batch && r.clients === Math.max(...clientCounts));
    if (one && many && one.writesPerSec > 0) {
      lines.push(`group commit: ${many.clients} clients / 1 client, ${batch}-row writes = ${(many.writesPerSec / one.writesPerSec).toFixed(1)}x`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `cluster-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ seconds, results }, null, 2));
  process.stdout.write(`results written to ${file}\n`);
}

await main();
