// `regiondb drill`: the disaster-recovery solutions of docs/backup.md (after the DR overview's
// comparison), each run on a scratch local cluster under a live writer, with RTO and RPO measured:
//   standalone            one server (metasrv + one datanode, single-replica regions): kill -9, restart
//   multi-replica         3 replicas per region: kill -9 the datanode leading the most regions
//   replica repair        the same, but the datanode and its disk are gone for good: the metasrv
//                         re-creates its replicas elsewhere
//   object-storage        every datanode loses its local disk: regions recover from their latest
//                         manifests in the object store
//   backup & restore      the whole cluster is lost: a new one is restored from the latest
//                         (incremental) backup
//   metasrv leader        a metasrv group of 3 (docs/metasrv-ha.md): kill -9 the acting metasrv
//   metasrv majority      the same group loses 2 of its 3 members with their disks: a new
//                         one-member group is seeded from the newest catalog copy in the object
//                         store (seedGroup) and started
//   dual active-standby   (async) and (sync): a primary cluster streams to a standby cluster
//                         (docs/replication.md); every primary process is killed -9 and the
//                         standby is promoted at once (RTO counts no operator reaction time)
// See drill-workload.ts for what RTO and RPO mean here; the metasrv rows' RTO also waits for DDL
// (a CreateTable acknowledged), since DDL is what a metasrv outage takes away.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { latestBackup, runBackup, runRestore } from '../br/index.js';
import type { RegionDbClient } from '../client/client.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { newestCatalogBackup } from '../metasrv/catalog-backup.js';
import { seedGroup } from '../metasrv/meta-group.js';
import { FsObjectStore } from '../object-store/fs-store.js';
import { promoteStandby } from '../standby/promote.js';
import { AckedWriter, DRILL_COLUMNS, DRILL_TABLE, type Loss, drillRow, measureLoss, measureRecoveryMs } from './drill-workload.js';
import { renderTable } from './render.js';
import { ProcessCluster } from './process-cluster.js';
import { primaryRoleToml, standbyRoleToml } from '../standby/role-toml.js';

export interface DrillResult {
  readonly solution: string;
  readonly fault: string;
  readonly rtoMs: number;
  /** Acknowledged rows lost. */
  readonly rpoRows: number;
  readonly ackedRows: number;
  /** How long before the fault the earliest lost row was acknowledged. */
  readonly rpoWindowMs: number;
  readonly notes: string;
  readonly details: Record<string, number | string>;
}

interface DrillSettings {
  readonly root: string;
  readonly writeMs: number;
  /** Keep each scratch cluster's data and logs (--keep). */
  readonly keep: boolean;
  readonly log: (line: string) => void;
  readonly clusters: Set<ProcessCluster>;
}

const PROBE_TIMEOUT_MS = 120_000;
const ENGINE_TOML = '[engine]\nflush_bytes = 262144';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Clients that give up quickly, so a probe in a dead window returns and the next one starts. */
const probeClient = (c: ProcessCluster) => c.client({ deadlineMs: 2000, attemptTimeoutMs: 1000 });
const writerClient = (c: ProcessCluster) => c.client({ deadlineMs: 5000, attemptTimeoutMs: 1500 });

async function retryUntil<T>(what: string, timeoutMs: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline) throw new RegionDbError(ErrorCode.DeadlineExceeded, `drill: ${what} did not succeed within ${timeoutMs} ms: ${(err as Error).message}`);
      await sleep(200);
    }
  }
}

async function newCluster(
  s: DrillSettings,
  name: string,
  options: { datanodes: number; replicationFactor: number; metasrvToml?: string; metasrvs?: number; datanodeToml?: string; clusterId?: string },
): Promise<ProcessCluster> {
  const cluster = new ProcessCluster({
    dir: join(s.root, name),
    cliScript: process.argv[1]!,
    nodeArgs: process.execArgv,
    clusterId: `drill-${process.pid}`,
    datanodeToml: ENGINE_TOML,
    ...options,
  });
  s.clusters.add(cluster);
  await cluster.start();
  return cluster;
}

async function dispose(s: DrillSettings, cluster: ProcessCluster): Promise<void> {
  await (s.keep ? cluster.stop() : cluster.destroy());
  s.clusters.delete(cluster);
}

/**
 * The writer ran through the fault: it writes half a period more, stops, and the rows it had
 * acknowledged are counted (RPO: every acknowledged row, before and after the fault); then the
 * cluster is disposed of.
 */
async function finishWriting(s: DrillSettings, cluster: ProcessCluster, writer: AckedWriter, faultAtMs: number): ReturnType<typeof measureLoss> {
  await sleep(s.writeMs / 2);
  writer.stop();
  await writer.settled();
  const loss = await measureLoss(writerClient(cluster), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, cluster);
  return loss;
}

/** Creates the drill table, and writes for `writeMs` with the writer left running. */
async function startWorkload(s: DrillSettings, cluster: ProcessCluster, regions: number): Promise<AckedWriter> {
  const client = writerClient(cluster);
  await client.createTable(DRILL_TABLE, DRILL_COLUMNS, regions);
  const writer = new AckedWriter(client, DRILL_TABLE);
  writer.start();
  await sleep(s.writeMs);
  return writer;
}

function result(solution: string, fault: string, rtoMs: number, loss: Loss, notes: string, details: Record<string, number | string> = {}): DrillResult {
  return { solution, fault, rtoMs, rpoRows: loss.lostRows, ackedRows: loss.ackedRows, rpoWindowMs: loss.lostWindowMs, notes, details };
}

async function standalone(s: DrillSettings): Promise<DrillResult> {
  const regions = 2;
  const cluster = await newCluster(s, 'standalone', { datanodes: 1, replicationFactor: 1 });
  const writer = await startWorkload(s, cluster, regions);
  const samples = writer.samplesPerRegion(regions, Date.now());
  writer.stop();
  const faultAtMs = Date.now();
  await Promise.all([cluster.killDatanode(0), cluster.killMetasrv()]);
  const probing = measureRecoveryMs({ faultAtMs, client: probeClient(cluster), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  await cluster.startMetasrv();
  await cluster.startDatanode(0);
  const rtoMs = await probing;
  await writer.settled();
  const loss = await measureLoss(writerClient(cluster), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, cluster);
  return result('standalone', 'kill -9 the server (metasrv + its one datanode), restart it', rtoMs, loss, 'WAL replay on restart; the disk survives');
}

/** The datanode (0-based index) that leads the most regions. */
async function busiestLeader(client: RegionDbClient): Promise<number> {
  const res = (await client.listNodes()) as { nodes: { node_id: string; leaders: number }[] };
  const top = [...res.nodes].sort((a, b) => b.leaders - a.leaders)[0];
  if (!top) throw new RegionDbError(ErrorCode.Internal, 'drill: the metasrv lists no datanodes');
  return Number(top.node_id) - 1;
}

async function multiReplica(s: DrillSettings): Promise<DrillResult> {
  const regions = 3;
  const cluster = await newCluster(s, 'multi-replica', { datanodes: 3, replicationFactor: 3 });
  const writer = await startWorkload(s, cluster, regions);
  const victim = await busiestLeader(writerClient(cluster));
  const samples = writer.samplesPerRegion(regions, Date.now());
  writer.stop();
  const faultAtMs = Date.now();
  await cluster.killDatanode(victim);
  const rtoMs = await measureRecoveryMs({ faultAtMs, client: probeClient(cluster), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  await writer.settled();
  const loss = await measureLoss(writerClient(cluster), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, cluster);
  return result('multi-replica', `kill -9 datanode ${victim + 1} (leads the most regions) of 3`, rtoMs, loss, 'raft elects new leaders; quorum has every acknowledged write');
}

async function replicaRepair(s: DrillSettings): Promise<DrillResult> {
  const regions = 3;
  const repairAfterMs = 3000;
  const cluster = await newCluster(s, 'replica-repair', { datanodes: 4, replicationFactor: 3, metasrvToml: `replica_repair_after_ms = ${repairAfterMs}` });
  const writer = await startWorkload(s, cluster, regions);
  const victim = await busiestLeader(writerClient(cluster));
  const samples = writer.samplesPerRegion(regions, Date.now());
  writer.stop();
  const faultAtMs = Date.now();
  await cluster.killDatanode(victim);
  cluster.wipeDatanode(victim);
  const rtoMs = await measureRecoveryMs({ faultAtMs, client: probeClient(cluster), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  const meta = writerClient(cluster);
  const deadNode = String(victim + 1);
  const repairedMs = await retryUntil('replica repair', PROBE_TIMEOUT_MS, async () => {
    const res = (await meta.listNodes()) as { region_infos: { route: { table: string; peers: { node_id: string }[] }; health: string }[] };
    const mine = res.region_infos.filter((r) => r.route.table === DRILL_TABLE);
    const repaired = mine.length === regions && mine.every((r) => r.health === 'healthy' && r.route.peers.length === 3 && !r.route.peers.some((p) => p.node_id === deadNode));
    if (!repaired) throw new RegionDbError(ErrorCode.Unavailable, `regions of ${DRILL_TABLE} not yet back to 3 healthy replicas without node ${deadNode}`);
    return Date.now() - faultAtMs;
  });
  await writer.settled();
  const loss = await measureLoss(writerClient(cluster), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, cluster);
  return result(
    'multi-replica + repair',
    `datanode ${victim + 1} of 4 and its disk lost for good`,
    rtoMs,
    loss,
    `3 healthy replicas again after ${(repairedMs / 1000).toFixed(1)} s (replica_repair_after_ms = ${repairAfterMs})`,
    { repairedMs, replicaRepairAfterMs: repairAfterMs },
  );
}

async function objectStorage(s: DrillSettings): Promise<DrillResult> {
  const regions = 3;
  const cluster = await newCluster(s, 'object-storage', { datanodes: 3, replicationFactor: 3 });
  const writer = await startWorkload(s, cluster, regions);
  // Flushes also happen on their own (flush_bytes); this one makes sure every region has a recovery point.
  const checkpointMs = Date.now();
  await writerClient(cluster).flush(DRILL_TABLE);
  const samples = writer.samplesPerRegion(regions, checkpointMs);
  await sleep(s.writeMs / 2);
  writer.stop();
  const faultAtMs = Date.now();
  await Promise.all([0, 1, 2].map((i) => cluster.killDatanode(i)));
  for (let i = 0; i < 3; i++) cluster.wipeDatanode(i);
  const probing = measureRecoveryMs({ faultAtMs, client: probeClient(cluster), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  await Promise.all([0, 1, 2].map((i) => cluster.startDatanode(i)));
  const datanodesUpMs = Date.now() - faultAtMs;
  const points = await retryUntil('recover (the metasrv must see the new datanodes)', PROBE_TIMEOUT_MS, () => writerClient(cluster).recoverTable(DRILL_TABLE));
  const recoveredMs = Date.now() - faultAtMs;
  const rtoMs = await probing;
  await writer.settled();
  const loss = await measureLoss(writerClient(cluster), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, cluster);
  return result('object-storage recovery', 'every datanode loses its local disk (WAL + raft state)', rtoMs, loss, 'loses writes after each region\'s last flush (flush_bytes = 256 KiB here)', {
    recoveredFlushedIndexes: points.map((p) => p.flushed_index).join(','),
    datanodesUpMs,
    recoveredMs,
  });
}

async function backupRestore(s: DrillSettings): Promise<DrillResult> {
  const regions = 3;
  const repository = new FsObjectStore(join(s.root, 'backups'));
  const cluster = await newCluster(s, 'br-source', { datanodes: 3, replicationFactor: 3 });
  const writer = await startWorkload(s, cluster, regions);
  const source = { client: writerClient(cluster), clusterStore: new FsObjectStore(cluster.objectStoreDir), metasrv: cluster.metasrvAddr };
  const full = await runBackup({ ...source, repository, backupId: 'drill-full' });
  await sleep(s.writeMs / 2);
  const samples = writer.samplesPerRegion(regions, Date.now());
  // The incremental is consistent (docs/backup.md): every region at one cut, for a write pause of a few ms.
  const incremental = await runBackup({ ...source, repository, backupId: 'drill-incremental', baseId: full.manifest.id, consistent: true });
  const point = incremental.manifest.point;
  await sleep(s.writeMs / 2);
  writer.stop();
  const faultAtMs = Date.now();
  const backupAgeMs = faultAtMs - incremental.manifest.completedAtMs;
  await cluster.killAll();
  await dispose(s, cluster);
  const target = await newCluster(s, 'br-target', { datanodes: 3, replicationFactor: 3 });
  const clusterUpMs = Date.now() - faultAtMs;
  const latest = await latestBackup(repository);
  const restoreStartMs = Date.now();
  const restored = await runRestore({ repository, backupId: latest!.id, client: writerClient(target), targetStore: new FsObjectStore(target.objectStoreDir) });
  const restoreMs = Date.now() - restoreStartMs;
  const rtoMs = await measureRecoveryMs({ faultAtMs, client: probeClient(target), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  await writer.settled();
  const loss = await measureLoss(writerClient(target), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, target);
  return result(
    'backup & restore',
    'the whole cluster is lost; a new one is restored from the latest backup',
    rtoMs,
    loss,
    `consistent incremental (writes paused ${point?.pauseMsMax ?? '?'} ms) finished ${(backupAgeMs / 1000).toFixed(1)} s before the fault; restore took ${(restoreMs / 1000).toFixed(1)} s`,
    {
      backup: latest!.id,
      restoredSsts: restored.copiedFiles,
      clusterUpMs,
      restoreMs,
      backupAgeMs,
      consistentPoint: incremental.manifest.tables.flatMap((t) => t.regions.map((r) => `${r.regionNumber}@${r.flushedIndex}`)).join(','),
      writePauseMs: point?.pauseMsMax ?? -1,
    },
  );
}

/**
 * Creates a new table until a CreateTable is acknowledged; the ms from `faultAtMs`. A CreateTable
 * of unknown outcome is sent again under the same name: ALREADY_EXISTS then means it was served.
 */
async function measureDdlMs(client: RegionDbClient, name: string, faultAtMs: number): Promise<number> {
  return retryUntil(`CreateTable ${name}`, PROBE_TIMEOUT_MS, async () => {
    try {
      await client.createTable(name, DRILL_COLUMNS, 1);
    } catch (err) {
      if ((err as RegionDbError).code !== ErrorCode.AlreadyExists) throw err;
    }
    return Date.now() - faultAtMs;
  });
}

async function metasrvLeader(s: DrillSettings): Promise<DrillResult> {
  const regions = 3;
  const cluster = await newCluster(s, 'metasrv-leader', { datanodes: 3, replicationFactor: 3, metasrvs: 3 });
  const writer = await startWorkload(s, cluster, regions);
  const victim = await cluster.waitForActingMetasrv(PROBE_TIMEOUT_MS);
  const samples = writer.samplesPerRegion(regions, Date.now());
  const faultAtMs = Date.now();
  await cluster.killMetasrvMember(victim);
  const [regionsMs, ddlMs] = await Promise.all([
    measureRecoveryMs({ faultAtMs, client: probeClient(cluster), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS }),
    measureDdlMs(probeClient(cluster), `${DRILL_TABLE}_ddl`, faultAtMs),
  ]);
  const next = await cluster.waitForActingMetasrv(PROBE_TIMEOUT_MS);
  const loss = await finishWriting(s, cluster, writer, faultAtMs);
  return result(
    'metasrv group (3)',
    `kill -9 the acting metasrv (metasrv${victim + 1}) under writes`,
    Math.max(regionsMs, ddlMs),
    loss,
    `metasrv${next + 1} acts; DDL served after ${(ddlMs / 1000).toFixed(2)} s, every region written and read after ${(regionsMs / 1000).toFixed(2)} s`,
    { ddlMs, regionsMs, newActing: `metasrv${next + 1}` },
  );
}

const CATALOG_BACKUP_INTERVAL_MS = 1000;

async function metasrvMajority(s: DrillSettings): Promise<DrillResult> {
  const regions = 3;
  const cluster = await newCluster(s, 'metasrv-majority', {
    datanodes: 3,
    replicationFactor: 3,
    metasrvs: 3,
    metasrvToml: `catalog_backup_interval_ms = ${CATALOG_BACKUP_INTERVAL_MS}`,
  });
  const writer = await startWorkload(s, cluster, regions);
  const store = new FsObjectStore(cluster.objectStoreDir);
  const clusterId = `drill-${process.pid}`;
  await retryUntil('a catalog copy naming the drill table', PROBE_TIMEOUT_MS, async () => {
    if (!(await newestCatalogBackup(store, clusterId))?.catalog.tables[DRILL_TABLE]) throw new RegionDbError(ErrorCode.NotFound, 'no catalog copy with the drill table yet');
  });
  const acting = await cluster.waitForActingMetasrv(PROBE_TIMEOUT_MS);
  const lost = [acting, (acting + 1) % 3];
  const survivor = (acting + 2) % 3;
  const samples = writer.samplesPerRegion(regions, Date.now());
  const faultAtMs = Date.now();
  // Two members and their disks are gone: the survivor alone is no majority and cannot act.
  await Promise.all(lost.map((i) => cluster.killMetasrvMember(i)));
  for (const i of lost) rmSync(cluster.metasrvMember(i).dataDir, { recursive: true, force: true });
  const probing = measureRecoveryMs({ faultAtMs, client: probeClient(cluster), table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  // The recovery (docs/metasrv-ha.md, "Losing a majority"): stop the survivor (its log is the
  // old group's), seed a lost member's empty disk with the newest copy as a one-member group,
  // start it. The others would be added back with the AddMetaMember call (not timed here).
  await cluster.stopMetasrvMember(survivor, 'SIGKILL');
  const copy = await newestCatalogBackup(store, clusterId);
  if (!copy) throw new RegionDbError(ErrorCode.NotFound, 'drill: no catalog copy in the object store');
  const copyAgeMs = faultAtMs - Number(copy.key.slice(copy.key.lastIndexOf('-') + 1));
  const seeded = lost[0]!;
  const member = cluster.metasrvMember(seeded);
  await seedGroup(member.dataDir, seeded + 1, `127.0.0.1:${member.grpcPort}`, copy.bytes, createLogger({ name: 'drill', level: 'warn' }));
  await cluster.startMetasrvMember(seeded);
  const seededUpMs = Date.now() - faultAtMs;
  const [regionsMs, ddlMs] = await Promise.all([probing, measureDdlMs(probeClient(cluster), `${DRILL_TABLE}_ddl`, faultAtMs)]);
  const loss = await finishWriting(s, cluster, writer, faultAtMs);
  return result(
    'metasrv group (3)',
    `2 of 3 metasrvs and their disks lost; a one-member group seeded from the newest catalog copy`,
    Math.max(regionsMs, ddlMs),
    loss,
    `copy ${(copyAgeMs / 1000).toFixed(1)} s old (catalog_backup_interval_ms = ${CATALOG_BACKUP_INTERVAL_MS}); seeded member up after ${(seededUpMs / 1000).toFixed(2)} s, DDL after ${(ddlMs / 1000).toFixed(2)} s, regions after ${(regionsMs / 1000).toFixed(2)} s`,
    { ddlMs, regionsMs, seededUpMs, copyAgeMs, copy: copy.key },
  );
}

/** Median latency of the acknowledged ones of `count` one-row writes, one after another (ms), and how many were not acknowledged. */
async function writeP50Ms(client: RegionDbClient, count: number, firstId: number): Promise<{ p50Ms: number; failed: number }> {
  const took: number[] = [];
  let failed = 0;
  for (let i = 0; i < count; i++) {
    const started = Date.now();
    try {
      await client.write(DRILL_TABLE, [drillRow(firstId + i)]);
      took.push(Date.now() - started);
    } catch {
      failed++; // not acknowledged (an outcome unknown under load): not a latency
    }
  }
  took.sort((a, b) => a - b);
  return { p50Ms: took[Math.floor(took.length / 2)] ?? 0, failed };
}

async function dualActiveStandby(s: DrillSettings, mode: 'async' | 'sync'): Promise<DrillResult> {
  const regions = 3;
  const standby = await newCluster(s, `standby-${mode}`, {
    datanodes: 3,
    replicationFactor: 3,
    clusterId: `drill-standby-${process.pid}`,
    datanodeToml: `${ENGINE_TOML}\n${standbyRoleToml()}`,
  });
  const addrs = standby.datanodes.map((_, i) => standby.datanodeAddr(i));
  const primary = await newCluster(s, `primary-${mode}`, {
    datanodes: 3,
    replicationFactor: 3,
    datanodeToml: `${ENGINE_TOML}\n${primaryRoleToml(addrs, mode)}`,
  });
  const writer = await startWorkload(s, primary, regions);
  // Latency with the stream on, one write at a time beside the writer (sync: the price of RPO 0).
  const { p50Ms, failed: latencyWritesFailed } = await writeP50Ms(primary.client({ deadlineMs: 10_000, attemptTimeoutMs: 5000 }), 50, 2_000_000_000);
  const samples = writer.samplesPerRegion(regions, Date.now());
  writer.stop();
  const faultAtMs = Date.now();
  await primary.killAll();
  const sc = probeClient(standby);
  const report = await promoteStandby(sc, { timeoutMs: PROBE_TIMEOUT_MS, nowMs: () => Date.now() });
  const rtoMs = await measureRecoveryMs({ faultAtMs, client: sc, table: DRILL_TABLE, regionCount: regions, samples, timeoutMs: PROBE_TIMEOUT_MS });
  await writer.settled();
  const loss = await measureLoss(writerClient(standby), DRILL_TABLE, writer, faultAtMs);
  await dispose(s, primary);
  await dispose(s, standby);
  return result(
    `dual active-standby (${mode})`,
    'kill -9 every primary process (the whole site), promote the standby',
    rtoMs,
    loss,
    `cut ${faultAtMs - report.cutMs} ms before the fault, promote ${report.elapsedMs} ms, ${report.droppedRows} rows dropped after the cut; write p50 ${p50Ms} ms${latencyWritesFailed ? ` (${latencyWritesFailed} of 50 not acknowledged)` : ''}`,
    { cutBeforeFaultMs: faultAtMs - report.cutMs, promoteMs: report.elapsedMs, droppedEntries: report.droppedEntries, droppedRows: report.droppedRows, writeP50Ms: p50Ms, latencyWritesFailed },
  );
}

const SCENARIOS: Record<string, (s: DrillSettings) => Promise<DrillResult>> = {
  standalone,
  'multi-replica': multiReplica,
  'replica-repair': replicaRepair,
  'object-storage': objectStorage,
  br: backupRestore,
  'metasrv-leader': metasrvLeader,
  'metasrv-majority': metasrvMajority,
  'standby-async': (s) => dualActiveStandby(s, 'async'),
  'standby-sync': (s) => dualActiveStandby(s, 'sync'),
};

export interface DrillOptions {
  readonly scenarios?: readonly string[];
  readonly writeMs?: number;
  readonly keep?: boolean;
  readonly log?: (line: string) => void;
}

/** Runs the scenarios one after another on scratch clusters under a temporary directory. */
export async function runDrill(opts: DrillOptions = {}): Promise<DrillResult[]> {
  const names = opts.scenarios && opts.scenarios.length > 0 ? [...opts.scenarios] : Object.keys(SCENARIOS);
  const unknown = names.filter((n) => !(n in SCENARIOS));
  if (unknown.length > 0) throw new RegionDbError(ErrorCode.InvalidArgument, `unknown scenario ${unknown.join(', ')} (choose from ${Object.keys(SCENARIOS).join(', ')})`);
  const root = mkdtempSync(join(tmpdir(), 'regiondb-drill-'));
  const settings: DrillSettings = { root, writeMs: opts.writeMs ?? 3000, keep: opts.keep === true, log: opts.log ?? (() => undefined), clusters: new Set() };
  const emergencyStop = () => {
    for (const c of settings.clusters) for (const pid of c.pids()) process.kill(pid, 'SIGKILL');
    process.exit(130);
  };
  process.once('SIGINT', emergencyStop);
  const results: DrillResult[] = [];
  try {
    for (const name of names) {
      const started = Date.now();
      settings.log(`drill: ${name} ...`);
      const r = await SCENARIOS[name]!(settings);
      settings.log(`drill: ${name}: RTO ${(r.rtoMs / 1000).toFixed(2)} s, RPO ${r.rpoRows} of ${r.ackedRows} acknowledged rows (${((Date.now() - started) / 1000).toFixed(0)} s)`);
      results.push(r);
    }
  } finally {
    process.off('SIGINT', emergencyStop);
    for (const c of settings.clusters) await c.stop();
    if (opts.keep) settings.log(`drill: scratch data kept in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
  return results;
}

export function renderDrill(results: readonly DrillResult[]): string {
  return renderTable(
    ['SOLUTION', 'FAULT', 'RTO', 'RPO (acked rows lost)', 'RPO WINDOW', 'NOTES'],
    results.map((r) => [
      r.solution,
      r.fault,
      `${(r.rtoMs / 1000).toFixed(2)} s`,
      `${r.rpoRows} of ${r.ackedRows}`,
      r.rpoRows === 0 ? '0 s' : `${(r.rpoWindowMs / 1000).toFixed(1)} s`,
      r.notes,
    ]),
  );
}

export function registerDrillCommand(program: Command): void {
  program
    .command('drill')
    .description(
      'measure RTO and RPO of each disaster-recovery solution on scratch local clusters (standalone, multi-replica, replica repair, object-storage recovery, backup & restore, metasrv group leader and majority loss, dual active-standby async and sync)',
    )
    .option('--scenarios <names>', `comma-separated subset of ${Object.keys(SCENARIOS).join(', ')}`)
    .option('--write-seconds <s>', 'seconds of writes before each fault', (v) => Number(v), 3)
    .option('--keep', 'keep the scratch clusters\' data and logs')
    .option('--json', 'print the results as JSON')
    .action(async (o: { scenarios?: string; writeSeconds: number; keep?: boolean; json?: boolean }) => {
      try {
        const results = await runDrill({
          scenarios: o.scenarios?.split(',').filter((n) => n !== ''),
          writeMs: Math.round(o.writeSeconds * 1000),
          keep: o.keep === true,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        process.stdout.write(o.json ? `${JSON.stringify(results, null, 2)}\n` : `${renderDrill(results)}\n`);
      } catch (err) {
        process.stderr.write(`drill failed: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
