// make failover-bench: the RTO distribution over repeated leader kills, and the time to full
// replica repair. A 4-datanode cluster (replica_repair_after_ms = 3000) with a 6-region table
// under a steady single-row write load:
//   KILLS times: kill -9 the datanode leading the most regions, measure per-region write
//   unavailability (kill → first acknowledged write issued after it), restart it, wait for
//   convergence;
//   once: keep a node down and time detection → every region back to 3 healthy replicas.
// Environment: KILLS (default 20). Results are printed and written to bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeRegionId, regionNumberOf } from '../src/engine/key.js';
import { LocalCluster, sleep } from '../test/support/local-cluster.js';

const kills = Number(process.env['KILLS'] ?? 20);
const TABLE = 'fo';

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

async function main(): Promise<void> {
  const cluster = new LocalCluster({ datanodes: 4, metasrvToml: 'replica_repair_after_ms = 3000\nbalance_leaders_interval_ms = 0' });
  const rtos: number[] = [];
  let repairMs = Number.NaN;
  try {
    await cluster.start();
    const client = cluster.client({ deadlineMs: 20_000, attemptTimeoutMs: 1000 });
    const schema = await client.createTable(
      TABLE,
      [
        { name: 'k', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
      ],
      6,
    );
    const regions = Array.from({ length: 6 }, (_, n) => makeRegionId(schema.tableId, n));
    let seq = 0;
    const acks: { region: string; startedAt: number; ackedAt: number }[] = [];
    let stop = false;
    const load = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const r = { k: `k${seq % 97}`, ts: seq++ };
        const startedAt = Date.now();
        try {
          await client.write(TABLE, [r]);
          acks.push({ region: makeRegionId(schema.tableId, regionNumberOf(schema, r)), startedAt, ackedAt: Date.now() });
          if (acks.length > 200_000) acks.splice(0, 100_000);
        } catch {
          // counted as unavailability by the gap measurement
        }
      }
    });
    const leaderCounts = async () =>
      Promise.all(cluster.datanodes.map(async (_, i) => (cluster.isRunning(i) ? (await cluster.status(i).catch(() => ({ replicas: [] }))).replicas.filter((r) => r.role === 'leader').length : -1)));

    for (let k = 0; k < kills; k++) {
      await sleep(1500);
      const counts = await leaderCounts();
      const victim = counts.indexOf(Math.max(...counts));
      await cluster.stopDatanode(victim, 'SIGKILL');
      const killedAt = Date.now();
      await sleep(4000);
      const worst = Math.max(
        ...regions.map((region) => acks.filter((a) => a.region === region && a.startedAt >= killedAt).reduce((m, a) => Math.min(m, a.ackedAt), Number.POSITIVE_INFINITY) - killedAt),
      );
      rtos.push(worst);
      process.stdout.write(`  kill ${k + 1}/${kills}: datanode${victim + 1} (led ${counts[victim]}), worst region unavailable ${worst} ms\n`);
      await cluster.startDatanode(victim);
    }

    // Full replica repair: a node stays down.
    await sleep(2000);
    const downAt = Date.now();
    await cluster.stopDatanode(3, 'SIGKILL');
    for (;;) {
      const s = (await client.listNodes()) as { region_infos: { health: string; route: { peers: { node_id: string }[] } }[] };
      if (s.region_infos.every((r) => r.health === 'healthy' && !r.route.peers.some((p) => p.node_id === '4'))) break;
      if (Date.now() - downAt > 120_000) throw new Error('replica repair did not finish within 120 s');
      await sleep(200);
    }
    repairMs = Date.now() - downAt;
    stop = true;
    await Promise.all(load);
  } finally {
    await cluster.stop();
  }
  const sorted = [...rtos].sort((a, b) => a - b);
  const summary = {
    kills: rtos.length,
    rtoMs: { p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted.at(-1) },
    replicaRepairMs: repairMs,
    replicaRepairAfterMs: 3000,
  };
  process.stdout.write(
    `\nRTO over ${summary.kills} leader kills: p50 ${summary.rtoMs.p50} ms, p99 ${summary.rtoMs.p99} ms, max ${summary.rtoMs.max} ms\n` +
      `full replica repair (node down → all regions 3 healthy replicas, repair_after 3000 ms): ${repairMs} ms\n`,
  );
  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `failover-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ summary, rtos }, null, 2));
}

await main();
