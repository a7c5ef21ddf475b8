// A datanode whose disk fills up (ENOSPC on its WAL): the node stops serving and says why, without
// crashing or crash-looping; the other two keep acknowledging writes; after space is freed and
// the node restarted, it catches up and every acknowledged row is on it. The data dir of one
// datanode is a small tmpfs the test mounts (root only; skipped, saying why, otherwise) and
// unmounts by path afterwards.
import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import type { Row } from '../../src/engine/schema.js';
import { LocalCluster, waitUntil } from '../support/local-cluster.js';
import { COLUMNS, TABLE, keyOf } from '../support/metrics-table.js';

const FULL = 2; // datanode3

/** Mounts a tmpfs of `mb` MiB at `dir`, keeping what was there (moved aside and copied back). */
function moveOntoTmpfs(dir: string, mb: number): void {
  mkdirSync(dir, { recursive: true }); // (an object store nothing was written to yet)
  renameSync(dir, `${dir}.disk`);
  mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir]);
  cpSync(`${dir}.disk`, dir, { recursive: true });
}

/** Fills the file system of `dir` with one file until ENOSPC (bounded); returns the file. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 7);
  try {
    for (let i = 0; i < 100_000; i++) writeSync(fd, chunk);
    throw new Error(`${dir} did not fill up`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return file;
}
const TMPFS_MB = 3;
const BATCH = 100;
const BATCHES_MAX = 400; // 40,000 rows of ~1 KiB: far more than the tmpfs holds
const SEED = Number(process.env['DISK_FULL_SEED'] ?? 1);
const rand = new SeededRand(SEED);
/** ~1 KiB that does not compress (the WAL's tables are compressed). */
const pad = () => Array.from({ length: 125 }, () => Math.floor(rand.next() * 36 ** 8).toString(36).padStart(8, '0')).join('');

function tmpfsUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs (run as root to include it)';
  try {
    execFileSync('mount', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'mount(8) is not available';
  }
  return undefined;
}

interface Health {
  status: string;
  error?: string;
}

/**
 * A cluster for one describe, with one process's data dir to be put on a tmpfs by the describe:
 * skipped (saying why) unless root; afterwards that process is stopped and the tmpfs unmounted
 * before the cluster and its data dir go (a mount point cannot be removed). The stop is a kill -9,
 * as the cluster's own teardown (LocalCluster.stop), unless a test failed and the data is kept.
 */
function clusterWithTmpfs(stopOwner: (c: LocalCluster, signal: NodeJS.Signals) => Promise<void>, deadlineMs: number, datanodeToml?: string) {
  const t = { cluster: undefined as LocalCluster | undefined, mounted: undefined as string | undefined, client: undefined as unknown as RegionDbClient, failed: false };
  afterEach(function () {
    if (this.currentTest?.state === 'failed') t.failed = true;
  });
  after(async () => {
    if (t.cluster) await stopOwner(t.cluster, t.failed || process.env['KEEP_DATA'] ? 'SIGTERM' : 'SIGKILL');
    if (t.mounted) execFileSync('umount', [t.mounted]);
    await t.cluster?.stop({ keepData: t.failed });
  });
  before(async function () {
    const why = tmpfsUnavailableReason();
    if (why) {
      process.stdout.write(`      skipped: ${why}\n`);
      this.skip();
    }
    t.cluster = new LocalCluster(datanodeToml ? { datanodeToml } : {});
    await t.cluster.start();
    t.client = t.cluster.client({ deadlineMs, attemptTimeoutMs: 2000 });
  });
  return t;
}

describe('integration: a datanode whose disk fills up (ENOSPC on the WAL)', function () {
  this.timeout(300_000);
  const t = clusterWithTmpfs(async (c, signal) => {
    if (c.datanodes[FULL]) await c.stopDatanode(FULL, signal);
  }, 15_000);

  before(async () => {
    const cluster = t.cluster!;
    // A string field makes rows large enough to fill the disk in seconds.
    await t.client.createTable(TABLE, [...COLUMNS, { name: 'pad', type: 'string', semantic: 'field' }], 3);
    // Move datanode3's data dir onto a small tmpfs.
    await cluster.stopDatanode(FULL);
    const dir = cluster.datanodeDataDir(FULL);
    moveOntoTmpfs(dir, TMPFS_MB);
    t.mounted = dir;
    await cluster.startDatanode(FULL);
  });

  const health = async (i: number): Promise<Health> => (await (await fetch(`http://127.0.0.1:${t.cluster!.datanodes[i]!.httpPort}/health`)).json()) as Health;

  it('the full node stops serving and says why, stays up, and the others keep acknowledging writes; freed and restarted, it catches up', async () => {
    const c = t.cluster!;
    const client = t.client;
    const acked = new Map<string, Row>();
    const unknown: string[] = [];
    const outcomes: ('acked' | 'unknown')[] = [];
    let failedAt: number | undefined;
    let batch = 0;
    // Write until the node reports its WAL failure, then 20 batches more (the others must carry them).
    for (; batch < BATCHES_MAX && (failedAt === undefined || batch < failedAt + 20); batch++) {
      const rows: Row[] = Array.from({ length: BATCH }, (_, j) => ({ host: `h${j % 10}`, ts: 1_000_000 + batch * BATCH + j, v: batch, pad: pad() }));
      try {
        await client.write(TABLE, rows);
        for (const r of rows) acked.set(keyOf(r), r);
        outcomes.push('acked');
      } catch (err) {
        // An outcome the client does not know is not a failure of the test; a refusal after the
        // quorum is gone would be (two nodes remain).
        // A write refused by every attempt (no leader yet) was not applied: not acknowledged either.
        if (isRegionDbError(err) && (/DEADLINE_EXCEEDED|unknown/i.test(`${err.code} ${err.message}`) || err.details['notApplied'] === 'true')) {
          unknown.push(`batch ${batch}: ${err.code}: ${err.message}`);
          outcomes.push('unknown');
        } else throw err;
      }
      if (failedAt === undefined && (await health(FULL)).status === 'failed') failedAt = batch;
    }
    const h = await health(FULL);
    process.stdout.write(`      seed ${SEED} (replay: DISK_FULL_SEED=${SEED})\n      datanode3 failed after batch ${failedAt} of ${batch}: ${h.error}\n      acknowledged ${acked.size} rows; outcome unknown: ${unknown.length} batch(es)\n`);
    expect(failedAt, `datanode3 never reported a failed WAL write in ${batch} batches of ~${BATCH} KiB on a ${TMPFS_MB} MiB tmpfs`).to.not.equal(undefined);
    expect(h.error ?? '', 'the health says which write failed and why').to.match(/WAL.*(ENOSPC|no space)/i);
    expect(c.isRunning(FULL), 'the full node is still running (no crash, no crash loop)').to.equal(true);
    expect(outcomes.slice(-10), `the last 10 batches, well after the failure (unknown: ${unknown.join('; ')})`).to.deep.equal(Array(10).fill('acked'));
    for (const i of [0, 1]) expect((await health(i)).status, `datanode${i + 1}`).to.equal('ok');
    // It beats no more (finding V1): the metasrv takes it as down, as it would a crashed node,
    // instead of counting it alive with its replicas' frozen state. (Before, it stayed "alive".)
    const state = await waitUntil('the metasrv taking datanode3 as down', 30_000, async () => {
      const status = (await client.listNodes()) as { nodes: { node_id: string; state: string }[] };
      const node = status.nodes.find((n) => n.node_id === String(FULL + 1));
      return node && node.state !== 'alive' ? node.state : undefined;
    });
    process.stdout.write(`      the metasrv's view of datanode3 after its WAL failed: ${state}\n`);

    // Free space (a bigger tmpfs) and restart the node: it replays what it had and catches up.
    execFileSync('mount', ['-o', `remount,size=${TMPFS_MB * 40}m`, t.mounted!]);
    await c.stopDatanode(FULL);
    await c.startDatanode(FULL);
    await waitUntil('datanode3 healthy again', 30_000, async () => ((await health(FULL)).status === 'ok' ? true : undefined));
    const seen = await waitUntil('every acknowledged row on datanode3 (its own replicas, stale reads)', 90_000, async () => {
      const rows = await client.scan(TABLE, { consistency: 'stale' }, c.datanodeAddr(FULL));
      const keys = new Set(rows.map((r) => keyOf(r.row)));
      return [...acked.keys()].every((k) => keys.has(k)) ? keys.size : undefined;
    });
    process.stdout.write(`      after the restart datanode3 holds ${seen} rows (${acked.size} acknowledged)\n`);
  });
});

describe('integration: a metasrv whose disk fills up (its catalog cannot be written)', function () {
  this.timeout(180_000);
  const t = clusterWithTmpfs(async (c, signal) => {
    if (c.metasrv) await c.stopMetasrv(signal);
  }, 10_000);

  before(async () => {
    const cluster = t.cluster!;
    await t.client.createTable('before', COLUMNS, 2);
    await cluster.stopMetasrv();
    moveOntoTmpfs(cluster.metasrv.dataDir, 2);
    t.mounted = cluster.metasrv.dataDir;
    await cluster.startMetasrv();
    await waitUntil('the restarted metasrv hearing from all 3 datanodes', 30_000, async () => {
      const status = (await t.client.listNodes()) as { nodes: { state: string }[] };
      return status.nodes.filter((n) => n.state === 'alive').length === 3 ? true : undefined;
    });
  });

  const metasrvHealth = async (): Promise<Health> => (await (await fetch(`http://127.0.0.1:${t.cluster!.metasrv.httpPort}/health`)).json()) as Health;

  it('refuses DDL as UNAVAILABLE (outcome unknown) and says why, keeps serving routes and the data path; acts again by itself once space is freed; nothing is lost across a restart', async () => {
    const c = t.cluster!;
    const client = t.client;
    const filler = fill(t.mounted!);
    // The catalog's last file page may still have room for a small record or two: create tables
    // until one is refused (each one acknowledged must survive, see the end).
    const created: string[] = [];
    let refused: string | undefined;
    for (let i = 0; i < 20 && refused === undefined; i++) {
      await client.createTable(`during${i}`, COLUMNS, 1).then(
        () => created.push(`during${i}`),
        (err: unknown) => {
          refused = isRegionDbError(err) ? `${err.code}: ${err.message}` : String(err);
        },
      );
    }
    process.stdout.write(`      create-table on a full disk: ${created.length} acknowledged before one was refused: ${refused?.slice(0, 200)}\n`);
    expect(refused).to.match(/^UNAVAILABLE: .*(no space|ENOSPC)/i);
    const h = await metasrvHealth();
    expect(h.status, 'the metasrv health').to.equal('failed');
    expect(h.error ?? '').to.match(/catalog write failed.*(no space|ENOSPC)/i);
    // A second request is refused the same way (the metasrv is not acting), and the data path works.
    expect(await client.createTable('during2', COLUMNS, 2).then(() => 'created', (err: unknown) => (isRegionDbError(err) ? err.code : String(err)))).to.equal('UNAVAILABLE');
    const rows = Array.from({ length: 50 }, (_, i) => ({ host: `h${i}`, ts: 1000 + i, v: i }));
    await client.write('before', rows);
    expect((await client.scan('before')).length).to.equal(50);

    // Space freed: the metasrv writes its catalog again by itself, no restart needed.
    rmSync(filler);
    await waitUntil('the metasrv healthy again', 20_000, async () => ((await metasrvHealth()).status === 'ok' ? true : undefined));
    const after = await waitUntil('create-table accepted again', 20_000, async () => client.createTable('after', COLUMNS, 2));
    expect(after.name).to.equal('after');

    // Restarted, it has every table it acknowledged, and nothing was destroyed.
    await c.stopMetasrv();
    await c.startMetasrv();
    const fresh = c.client({ deadlineMs: 10_000 });
    for (const t of ['before', ...created, 'after']) expect((await fresh.describe(t)).schema.name, `table ${t} after the restart`).to.equal(t);
    expect((await fresh.scan('before')).length, "rows of the table created before the disk filled").to.equal(50);
  });
});

describe('integration: the object store runs out of space (a local directory store on a full disk)', function () {
  this.timeout(240_000);
  const t = clusterWithTmpfs(
    async (c, signal) => {
      for (let i = 0; i < 3; i++) if (c.isRunning(i)) await c.stopDatanode(i, signal);
    },
    5_000,
    `[engine]\nflush_bytes = 131072\nregion_memtable_limit_bytes = 1048576`,
  );

  before(async () => {
    const cluster = t.cluster!;
    await t.client.createTable(TABLE, [...COLUMNS, { name: 'pad', type: 'string', semantic: 'field' }], 2);
    for (let i = 0; i < 3; i++) await cluster.stopDatanode(i);
    moveOntoTmpfs(cluster.objectStoreDir, 2);
    t.mounted = cluster.objectStoreDir;
    for (let i = 0; i < 3; i++) await cluster.startDatanode(i);
  });

  it('flushes fail and are retried, writes are held back once memtables are full (RESOURCE_EXHAUSTED, retried to the deadline; no node fails), and with space again everything flushes and every acknowledged row reads back', async () => {
    const c = t.cluster!;
    const client = t.client;
    const acked = new Map<string, Row>();
    let refused: string | undefined;
    let batch = 0;
    for (; batch < 200 && refused === undefined; batch++) {
      const rows: Row[] = Array.from({ length: 50 }, (_, j) => ({ host: `h${j % 10}`, ts: 2_000_000 + batch * 50 + j, v: batch, pad: pad() }));
      try {
        await client.write(TABLE, rows);
        for (const r of rows) acked.set(keyOf(r), r);
      } catch (err) {
        refused = isRegionDbError(err) ? `${err.code}: ${err.message}` : String(err);
      }
    }
    process.stdout.write(`      ${acked.size} rows acknowledged in ${batch} batches; then: ${refused?.slice(-200)}\n`);
    expect(refused, 'writes are refused once the memtables cannot be flushed').to.match(/RESOURCE_EXHAUSTED|memtable/i);
    for (let i = 0; i < 3; i++) {
      expect(c.isRunning(i), `datanode${i + 1} still running`).to.equal(true);
      const h = (await (await fetch(`http://127.0.0.1:${c.datanodes[i]!.httpPort}/health`)).json()) as Health;
      expect(h.status, `datanode${i + 1} health`).to.equal('ok');
    }
    // Space again: the flushes go through by themselves and writes are accepted again.
    execFileSync('mount', ['-o', 'remount,size=256m', t.mounted!]);
    const extra: Row = { host: 'after', ts: 1, v: 1, pad: 'x' };
    await waitUntil('a write accepted again', 60_000, async () => client.write(TABLE, [extra]).then(() => true));
    acked.set(keyOf(extra), extra);
    const rows = await client.scan(TABLE);
    const keys = new Set(rows.map((r) => keyOf(r.row)));
    const missing = [...acked.keys()].filter((k) => !keys.has(k));
    expect(missing, 'acknowledged rows missing').to.deep.equal([]);
  });
});
