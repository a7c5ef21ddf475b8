// Single-client latency probe (docs/performance.md, Round 5): on the bench's regiondb cluster
// (bench/targets.ts), one client writes one row at a time for PROBE_SECONDS (15) and records each
// write's start (epoch ms: the machine clock every process shares, so stamps taken in the servers
// compare) and latency, one "start_ms latency_ms" line per write, in PROBE_OUT (default: a file
// in the OS temp dir); prints writes/s, mean, p50/p90/p99/max and the servers' CPU per write.
// PROBE_WARMUP_WRITES (500) writes go first, unrecorded, then PROBE_PAUSE_MS (0) of idleness
// (Round 5 told JIT warm-up, which follows work, from start-up effects, which follow time).
// KEEP_DATA=1 keeps the cluster's directory with every process's log.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegionDbTarget } from './targets.js';

const seconds = Number(process.env['PROBE_SECONDS'] ?? 15);
const outPath = process.env['PROBE_OUT'] ?? join(tmpdir(), `regiondb-latency-${process.pid}.txt`);
const warmupWrites = Number(process.env['PROBE_WARMUP_WRITES'] ?? 500);
const pauseMs = Number(process.env['PROBE_PAUSE_MS'] ?? 0);

async function main(): Promise<void> {
  const target = new RegionDbTarget();
  await target.start();
  process.stdout.write(`${target.describe()}\n`);
  const client = target.newClient();
  for (let i = 0; i < warmupWrites; i++) await client.write(i);
  if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  const lines: string[] = [];
  const latencies: number[] = [];
  const cpuBefore = target.serverCpuSeconds();
  const endMs = performance.now() + seconds * 1000;
  for (let key = 0; performance.now() < endMs; key++) {
    const startMs = performance.now();
    await client.write(key);
    const latencyMs = performance.now() - startMs;
    latencies.push(latencyMs);
    lines.push(`${(performance.timeOrigin + startMs).toFixed(3)} ${latencyMs.toFixed(3)}`);
  }
  const serverCpuUsPerWrite = ((target.serverCpuSeconds() - cpuBefore) * 1e6) / latencies.length;
  writeFileSync(outPath, `${lines.join('\n')}\n`);
  client.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number): string => (latencies[Math.floor(p * (latencies.length - 1))] ?? 0).toFixed(2);
  const mean = latencies.reduce((a, b) => a + b, 0) / latencies.length;
  process.stdout.write(
    `n=${latencies.length} writes/s=${(latencies.length / seconds).toFixed(0)} mean=${mean.toFixed(2)} p50=${q(0.5)} p90=${q(0.9)} p99=${q(0.99)} max=${q(1)} server-cpu=${serverCpuUsPerWrite.toFixed(0)}us/write -> ${outPath}\n`,
  );
  await target.stop();
}

main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`);
  process.exit(1);
});
