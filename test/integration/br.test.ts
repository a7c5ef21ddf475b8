// Issue 8 acceptance with real processes: full + incremental backups through the CLI
// (`node dist/src/cmd/main.js br ...`), an interrupted backup resumed, verify catching damage,
// restore into a fresh cluster, and an S3 (s3rver) repository next to a directory one.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'chai';
import type { BackupResult, RestoreResult, VerifyReport } from '../../src/br/index.js';
import { decodeBackupJournal, decodeBackupManifest } from '../../src/br/format.js';
import type { RegionDbClient } from '../../src/client/client.js';
import type { Row } from '../../src/engine/schema.js';
import { CLI, LocalCluster, sleep } from '../support/local-cluster.js';
import { BUCKET, type S3Server, startS3rver, stopS3rver } from '../support/s3rver.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
// Small memtables so 200k rows make many SSTs; no compaction, so an incremental backup's new SSTs
// are exactly the flushes since the full one (compaction would rewrite old data into new SSTs).
const ENGINE_TOML = '[engine]\nflush_bytes = 262144\ncompact_at_ssts = 1000';
const S3_ENV = { REGIONDB_BR_S3_ACCESS_KEY_ID: 'S3RVER', REGIONDB_BR_S3_SECRET_ACCESS_KEY: 'S3RVER' };

const row = (i: number, generation = 0): Row => ({ host: `h${i % 500}`, ts: 1_000_000 + i, v: i + generation / 4 });

async function writeRows(client: RegionDbClient, table: string, from: number, to: number, generation = 0): Promise<void> {
  const batch = 2000;
  let next = from;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < to) {
        const start = next;
        next = Math.min(to, next + batch);
        await client.write(table, Array.from({ length: next - start }, (_, j) => row(start + j, generation)));
      }
    }),
  );
}

/** Row count and a SHA-256 over every row's content, in key order. */
async function fingerprint(client: RegionDbClient, table: string): Promise<{ rows: number; sha256: string }> {
  const rows = await client.scan(table, { consistency: 'linearizable' });
  const lines = rows.map((r) => `${r.row['host']}|${r.row['ts']}|${r.row['v']}`).sort();
  const h = createHash('sha256');
  for (const l of lines) h.update(`${l}\n`);
  return { rows: rows.length, sha256: h.digest('hex') };
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

function startCli(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<CliRun> } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<CliRun>((ok) =>
    child.once('exit', (code) => {
      children.delete(child);
      ok({ code, stdout, stderr });
    }),
  );
  return { child, done };
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return startCli(args, env).done;
}

async function cliJson<T>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const res = await cli([...args, '--json'], env);
  if (res.code !== 0) throw new Error(`regiondb ${args.join(' ')} exited ${res.code}:\n${res.stderr}\n${res.stdout}`);
  return JSON.parse(res.stdout) as T;
}

function filesUnder(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      if (e.isDirectory()) walk(path, rel ? `${rel}/${e.name}` : e.name);
      else out.set(rel ? `${rel}/${e.name}` : e.name, statSync(path).size);
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

const sstsOf = (files: Map<string, number>) => [...files].filter(([k]) => k.endsWith('.sst'));
const secs = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

after(() => {
  for (const c of children) c.kill('SIGKILL');
});

describe('integration: backup and restore, full + incremental, directory repository (issue 8)', function () {
  this.timeout(600_000);
  const repo = mkdtempSync(join(tmpdir(), 'regiondb-br-'));
  const source = new LocalCluster({ datanodeToml: ENGINE_TOML });
  let target: LocalCluster | undefined;
  let client: RegionDbClient;
  const atIncremental = new Map<string, { rows: number; sha256: string }>();
  let full: BackupResult;
  let incremental: BackupResult;
  const storageOf = (c: LocalCluster) => join(c.dir, 'object-store');

  before(async () => {
    await source.start();
    client = source.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 });
    await client.createTable('metrics', COLUMNS, 4);
    await client.createTable('events', COLUMNS, 2);
    const t0 = Date.now();
    await Promise.all([writeRows(client, 'metrics', 0, 120_000), writeRows(client, 'events', 0, 90_000)]);
    process.stdout.write(`      wrote 210,000 rows in 2 tables in ${secs(t0)}\n`);
  });

  after(async () => {
    await source.stop();
    await target?.stop();
    if (process.env['KEEP_DATA']) process.stderr.write(`backups kept in ${repo}\n`);
    else rmSync(repo, { recursive: true, force: true });
  });

  it('a full backup killed (kill -9) halfway resumes on rerun, copies only what is missing, and verifies', async () => {
    const sstBytes = sstsOf(filesUnder(storageOf(source))).reduce((n, [, s]) => n + s, 0);
    const args = ['br', 'backup', '--metasrv', source.metasrvAddr, '--to', repo, '--id', 'full-1', '--storage-root', storageOf(source)];
    // Throttled to ~8 s so there is a "halfway" to kill it at.
    const first = startCli([...args, '--max-bytes-per-second', String(Math.ceil(sstBytes / 8))]);
    const journalFile = join(repo, 'full-1', 'progress.json');
    let doneAtKill = 0;
    let planned = 0;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && first.child.exitCode === null) {
      if (existsSync(journalFile)) {
        const journal = decodeBackupJournal(readFileSync(journalFile), journalFile);
        planned = journal.tables.reduce((n, t) => n + t.regions.reduce((m, r) => m + r.sstKeys.length + (r.manifestKey ? 1 : 0), 0), 0);
        doneAtKill = Object.keys(journal.done).length;
        if (doneAtKill >= planned * 0.3) break;
      }
      await sleep(50);
    }
    first.child.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.code, `the first run was still running when killed; its output:\n${killed.stderr}\n${killed.stdout}`).to.equal(null);
    expect(existsSync(join(repo, 'full-1', 'backup.json')), 'no backup.json after the kill').to.equal(false);
    const copiedBeforeKill = sstsOf(filesUnder(join(repo, 'full-1', 'data'))).length;
    process.stdout.write(`      killed the first run after ${doneAtKill}/${planned} objects journaled (${copiedBeforeKill} SSTs on disk)\n`);
    expect(copiedBeforeKill).to.be.greaterThan(0).and.lessThan(planned);

    const listed = await cliJson<{ id: string; status: string }[]>(['br', 'list', repo]);
    expect(listed.map((b) => [b.id, b.status])).to.deep.equal([['full-1', 'incomplete']]);

    const t0 = Date.now();
    full = await cliJson<BackupResult>(args);
    process.stdout.write(
      `      resumed: copied ${full.copiedFiles} objects (${(full.copiedBytes / 1e6).toFixed(1)} MB), ${full.presentFiles} already there, of ${full.manifest.storedFiles} (${(full.manifest.storedBytes / 1e6).toFixed(1)} MB) in ${secs(t0)}\n`,
    );
    expect(full.resumed).to.equal(true);
    expect(full.presentFiles, 'objects found already copied').to.be.at.least(doneAtKill);
    expect(full.copiedFiles + full.presentFiles, 'every object is copied or found').to.equal(full.manifest.storedFiles);
    expect(full.copiedFiles, 'only the missing objects are copied').to.be.lessThan(full.manifest.storedFiles - doneAtKill + 1);
    expect(full.manifest.tables.map((t) => t.name).sort()).to.deep.equal(['events', 'metrics']);
    for (const t of full.manifest.tables) for (const r of t.regions) expect(r.flushedIndex, `region ${r.regionId} flushed index`).to.be.greaterThan(0);
    const verify = await cliJson<VerifyReport>(['br', 'verify', join(repo, 'full-1')]);
    expect(verify.problems).to.deep.equal([]);
    expect(verify.checkedFiles).to.equal(full.manifest.storedFiles);
  });

  it('an incremental backup after more writes stores only the SSTs flushed since the full one', async () => {
    await Promise.all([
      writeRows(client, 'metrics', 120_000, 150_000),
      writeRows(client, 'metrics', 0, 10_000, 1), // updates of rows in the full backup
      writeRows(client, 'events', 90_000, 110_000),
    ]);
    await client.delete('metrics', Array.from({ length: 500 }, (_, i) => ({ host: row(i * 13)['host']!, ts: row(i * 13)['ts']! })));
    for (const t of ['metrics', 'events']) atIncremental.set(t, await fingerprint(client, t));
    incremental = await cliJson<BackupResult>(['br', 'backup', '--metasrv', source.metasrvAddr, '--to', repo, '--id', 'incr-1', '--incremental-from', 'full-1', '--storage-root', storageOf(source)]);
    const m = incremental.manifest;
    expect(m.kind).to.equal('incremental');
    expect(m.baseId).to.equal('full-1');
    const fullSsts = new Set(full.manifest.files.filter((f) => f.key.endsWith('.sst')).map((f) => f.key));
    const needed = new Set(m.tables.flatMap((t) => t.regions.flatMap((r) => r.sstKeys)));
    const expectedNew = [...needed].filter((k) => !fullSsts.has(k));
    const stored = sstsOf(filesUnder(join(repo, 'incr-1', 'data')));
    const storedBytes = stored.reduce((n, [, s]) => n + s, 0);
    process.stdout.write(
      `      incremental: ${stored.length} new SSTs, ${(storedBytes / 1e6).toFixed(2)} MB stored; ${incremental.baseFiles} objects (${(incremental.baseBytes / 1e6).toFixed(1)} MB) referenced in full-1\n`,
    );
    expect(stored.map(([k]) => k).sort(), 'exactly the SSTs not in the full backup').to.deep.equal(expectedNew.sort());
    expect(incremental.copiedSstBytes, 'SST bytes copied = bytes of the new SSTs').to.equal(storedBytes);
    expect(incremental.copiedSstBytes).to.be.greaterThan(0);
    expect(incremental.copiedSstBytes, 'far less than the full backup').to.be.lessThan(full.manifest.storedBytes / 2);
    expect(incremental.baseFiles).to.be.greaterThan(0);
    const verify = await cliJson<VerifyReport>(['br', 'verify', join(repo, 'incr-1')]);
    expect(verify.problems).to.deep.equal([]);
    expect(verify.chain).to.deep.equal(['incr-1', 'full-1']);
  });

  it('the cluster is destroyed; full + incremental restore into a fresh cluster with equal row counts and checksums', async () => {
    await source.stop();
    target = new LocalCluster({ datanodeToml: ENGINE_TOML });
    await target.start();
    const t0 = Date.now();
    const res = await cliJson<RestoreResult>(['br', 'restore', join(repo, 'incr-1'), '--to', target.metasrvAddr, '--storage-root', storageOf(target)]);
    process.stdout.write(`      restored ${res.copiedFiles} SSTs (${(res.copiedBytes / 1e6).toFixed(1)} MB) in ${secs(t0)}: ${res.tables.map((t) => `${t.name} ${t.regions.map((r) => `${r.regionId}@${r.restoredFlushedIndex}`).join(' ')}`).join('; ')}\n`);
    for (const t of res.tables) {
      const backed = incremental.manifest.tables.find((b) => b.name === t.name)!;
      expect(t.regions.map((r) => r.restoredFlushedIndex), `${t.name}: restored flushed indexes`).to.deep.equal(backed.regions.map((r) => r.flushedIndex));
    }
    const restored = target.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 });
    for (const table of ['metrics', 'events']) {
      const got = await fingerprintWhenServing(restored, table);
      expect(got, `${table}: rows and checksum`).to.deep.equal(atIncremental.get(table));
    }
    expect(atIncremental.get('metrics')!.rows).to.equal(150_000 - 500);
    expect(atIncremental.get('events')!.rows).to.equal(110_000);
    await restored.write('metrics', [row(999_999)]);
    expect((await restored.get('metrics', { host: row(999_999)['host']!, ts: row(999_999)['ts']! }))?.row).to.deep.equal(row(999_999));
  });

  it('restore refuses clearly when the target already has the tables', async () => {
    const res = await cli(['br', 'restore', join(repo, 'full-1'), '--to', target!.metasrvAddr, '--storage-root', storageOf(target!)]);
    expect(res.code).to.equal(1);
    expect(res.stderr).to.match(/ALREADY_EXISTS/);
    expect(res.stderr).to.match(/already has tables (events, metrics|metrics, events)/);
  });

  it('verify names a flipped byte, a missing file and a broken chain; restore refuses a backup that does not verify', async () => {
    const damaged = mkdtempSync(join(tmpdir(), 'regiondb-br-damaged-'));
    try {
      cpSync(repo, damaged, { recursive: true });
      const fullManifest = decodeBackupManifest(readFileSync(join(damaged, 'full-1', 'backup.json')), 'full-1');
      const incrManifest = decodeBackupManifest(readFileSync(join(damaged, 'incr-1', 'backup.json')), 'incr-1');
      // A flipped byte in an SST of the incremental.
      const flipped = incrManifest.files.find((f) => f.backupId === 'incr-1' && f.key.endsWith('.sst'))!;
      const flippedPath = join(damaged, 'incr-1', 'data', flipped.key);
      const bytes = readFileSync(flippedPath);
      bytes[Math.floor(bytes.byteLength / 2)]! ^= 0x01;
      writeFileSync(flippedPath, bytes);
      let report = await cliVerify(join(damaged, 'incr-1'));
      expect(report.problems).to.have.length(1);
      expect(report.problems[0]).to.equal(`backup incr-1: incr-1/data/${flipped.key}: sha256 mismatch: expected ${flipped.sha256}, found ${createHash('sha256').update(bytes).digest('hex')}`);

      // A missing file in the base: the incremental (which needs it) reports it by name.
      const missing = fullManifest.files.find((f) => f.key.endsWith('.sst') && incrManifest.files.some((i) => i.key === f.key && i.backupId === 'full-1'))!;
      unlinkSync(join(damaged, 'full-1', 'data', missing.key));
      report = await cliVerify(join(damaged, 'incr-1'));
      expect(report.problems).to.include(`backup full-1: full-1/data/${missing.key} is missing (expected ${missing.sizeBytes} bytes, sha256 ${missing.sha256})`);

      // A broken chain: the base backup is gone.
      rmSync(join(damaged, 'full-1'), { recursive: true });
      report = await cliVerify(join(damaged, 'incr-1'));
      expect(report.problems).to.include(`broken chain: backup incr-1 is incremental from full-1, but backup full-1 is missing from fs:${damaged}`);

      // Restore refuses, and touches nothing in the target.
      const fresh = new LocalCluster({ datanodeToml: ENGINE_TOML });
      try {
        await fresh.start();
        const res = await cli(['br', 'restore', join(damaged, 'incr-1'), '--to', fresh.metasrvAddr, '--storage-root', storageOf(fresh)]);
        expect(res.code).to.equal(1);
        expect(res.stderr).to.match(/backup incr-1 does not verify; nothing was restored/);
        expect(res.stderr).to.include('broken chain');
        const tables = ((await fresh.client().listNodes()) as { regions: unknown[] }).regions;
        expect(tables, 'no table was created').to.deep.equal([]);
      } finally {
        await fresh.stop();
      }
    } finally {
      rmSync(damaged, { recursive: true, force: true });
    }
  });

  it('list shows the chain; prune --keep 1 keeps the base the newest incremental needs', async () => {
    const listed = await cliJson<{ id: string; status: string; manifest?: { kind: string; baseId: string | null } }[]>(['br', 'list', repo]);
    expect(listed.map((b) => [b.id, b.status, b.manifest?.kind, b.manifest?.baseId])).to.deep.equal([
      ['full-1', 'complete', 'full', null],
      ['incr-1', 'complete', 'incremental', 'full-1'],
    ]);
    const plan = await cliJson<{ kept: string[]; keptAsBase: string[]; deleted: string[] }>(['br', 'prune', repo, '--keep', '1']);
    expect({ kept: plan.kept, keptAsBase: plan.keptAsBase, deleted: plan.deleted }).to.deep.equal({ kept: ['incr-1'], keptAsBase: ['full-1'], deleted: [] });
    expect((await cliJson<VerifyReport>(['br', 'verify', join(repo, 'incr-1')])).ok).to.equal(true);
  });

  async function cliVerify(location: string): Promise<VerifyReport> {
    const res = await cli(['br', 'verify', location, '--json']);
    expect(res.code, `verify of a damaged backup exits 1: ${res.stderr}`).to.equal(1);
    return JSON.parse(res.stdout) as VerifyReport;
  }
});

/** Restored regions elect leaders shortly after recovery: retry the first scan until it is served. */
async function fingerprintWhenServing(client: RegionDbClient, table: string): Promise<{ rows: number; sha256: string }> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await fingerprint(client, table);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

describe('integration: backup to S3 (s3rver) and restore (issue 8)', function () {
  this.timeout(300_000);
  let s3: S3Server | undefined;
  const source = new LocalCluster({ datanodeToml: ENGINE_TOML });
  const target = new LocalCluster({ datanodeToml: ENGINE_TOML });

  before(async () => {
    s3 = await startS3rver();
    await Promise.all([source.start(), target.start()]);
  });

  after(async () => {
    await Promise.all([source.stop(), target.stop()]);
    if (s3) await stopS3rver(s3);
  });

  it('full + incremental to s3://bucket/prefix round-trip into another cluster', async () => {
    const client = source.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 });
    await client.createTable('s3t', COLUMNS, 2);
    await writeRows(client, 's3t', 0, 30_000);
    const repo = `s3://${BUCKET}/backups`;
    const common = ['--s3-endpoint', s3!.endpoint];
    const storage = ['--storage-root', join(source.dir, 'object-store')];
    await cliJson<BackupResult>(['br', 'backup', '--metasrv', source.metasrvAddr, '--to', repo, '--id', 's3-full', ...storage, ...common], S3_ENV);
    await writeRows(client, 's3t', 30_000, 40_000);
    const expected = await fingerprint(client, 's3t');
    const incr = await cliJson<BackupResult>(['br', 'backup', '--metasrv', source.metasrvAddr, '--to', repo, '--id', 's3-incr', '--incremental-from', 's3-full', ...storage, ...common], S3_ENV);
    expect(incr.baseFiles).to.be.greaterThan(0);
    const verify = await cliJson<VerifyReport>(['br', 'verify', `${repo}/s3-incr`, ...common], S3_ENV);
    expect(verify.problems).to.deep.equal([]);
    const res = await cliJson<RestoreResult>(['br', 'restore', `${repo}/s3-incr`, '--to', target.metasrvAddr, '--storage-root', join(target.dir, 'object-store'), ...common], S3_ENV);
    expect(res.tables[0]!.regions.map((r) => r.restoredFlushedIndex)).to.deep.equal(incr.manifest.tables[0]!.regions.map((r) => r.flushedIndex));
    const got = await fingerprintWhenServing(target.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 }), 's3t');
    expect(got).to.deep.equal(expected);
    expect(got.rows).to.equal(40_000);
  });
});
