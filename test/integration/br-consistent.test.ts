// Issue 17, last item, with real processes: `regiondb br backup --consistent` takes every region at
// one cluster-consistent point (docs/backup.md). Writers run causal pairs across two tables (A_i in
// `a_cause`, then, once A_i is acknowledged, B_i in `b_effect`); a consistent backup and a plain
// (per-region) one are taken mid-load, each is restored into a fresh cluster and checked with
// test/support/causal-cut.ts (C1 prefix per region, C2 causality across writers and tables).
// The plain backup flushes a_cause before b_effect, so under load its b_effect point is later and
// the same checker finds B's whose A's are missing; it is asserted to, and the count is printed.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'chai';
import type { BackupResult, RestoreResult } from '../../src/br/index.js';
import type { RegionDbClient } from '../../src/client/client.js';
import { type Outcome, type Restored, type WriterHistory, checkCausalCut } from '../support/causal-cut.js';
import { CLI, LocalCluster, sleep } from '../support/local-cluster.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const COLUMNS = [
  { name: 'writer', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'seq', type: 'float64', semantic: 'field' },
];
const TABLES = ['a_cause', 'b_effect'] as const;
const WRITERS = 6;
/** Each writer stops after this many pairs or when told. */
const PAIRS_MAX = 100_000;
const storageOf = (c: LocalCluster) => join(c.dir, 'object-store');

const children = new Set<ChildProcess>();

async function cliJson<T>(args: string[]): Promise<T> {
  const child = spawn(process.execPath, [CLI, ...args, '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((ok) => child.once('exit', ok));
  children.delete(child);
  if (code !== 0) throw new Error(`regiondb ${args.join(' ')} exited ${code}:\n${stderr}\n${stdout}`);
  return JSON.parse(stdout) as T;
}

/** One causal-pairs writer: A_i in a_cause, then (only once A_i is acknowledged) B_i in b_effect. */
async function runWriter(client: RegionDbClient, writer: string, stop: () => boolean): Promise<WriterHistory> {
  const a: (Outcome | undefined)[] = [];
  const b: (Outcome | undefined)[] = [];
  const send = async (table: string, seq: number, into: (Outcome | undefined)[]): Promise<boolean> => {
    const sentMs = performance.now();
    into[seq] = { sentMs, ackedMs: undefined };
    try {
      await client.write(table, [{ writer, ts: 1_000_000 + seq, seq }]);
      into[seq] = { sentMs, ackedMs: performance.now() };
      return true;
    } catch {
      return false; // unknown outcome (it may have applied): recorded as sent, not acknowledged
    }
  };
  for (let i = 0; i < PAIRS_MAX && !stop(); i++) {
    if (await send('a_cause', i, a)) await send('b_effect', i, b);
  }
  return { writer, tables: { a_cause: a, b_effect: b } };
}

/** Every table's rows by writer, as sequence numbers; retried while the restored regions come up. */
async function readRestored(client: RegionDbClient): Promise<Restored> {
  const out: Record<string, Map<string, Set<number>>> = {};
  for (const table of TABLES) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const rows = await client.scan(table, { consistency: 'linearizable' });
        const byWriter = new Map<string, Set<number>>();
        for (const r of rows) {
          const w = String(r.row['writer']);
          if (!byWriter.has(w)) byWriter.set(w, new Set());
          byWriter.get(w)!.add(Number(r.row['seq']));
        }
        out[table] = byWriter;
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(250);
      }
    }
  }
  return out;
}

after(() => {
  for (const c of children) c.kill('SIGKILL');
});

describe('integration: a consistent backup is one cluster-consistent cut (issue 17)', function () {
  this.timeout(180_000);
  const repo = mkdtempSync(join(tmpdir(), 'regiondb-brcut-'));
  const source = new LocalCluster();
  let target: LocalCluster | undefined;
  let histories: WriterHistory[] = [];
  let consistent: BackupResult;
  let plain: BackupResult;

  before(async function () {
    if (process.env['STANDBY_LIFECYCLE'] !== '1') this.skip(); // slow: make test-standby-lifecycle
    await source.start();
    const client = source.client({ deadlineMs: 20_000, attemptTimeoutMs: 3000 });
    for (const t of TABLES) await client.createTable(t, COLUMNS, 2);
    let stopping = false;
    const t0 = Date.now();
    const writers = Array.from({ length: WRITERS }, (_, w) => runWriter(client, `w${w}`, () => stopping));
    try {
      await sleep(2000);
      consistent = await cliJson<BackupResult>(['br', 'backup', '--consistent', '--metasrv', source.metasrvAddr, '--to', repo, '--id', 'cut', '--storage-root', storageOf(source)]);
      await sleep(500);
      plain = await cliJson<BackupResult>(['br', 'backup', '--metasrv', source.metasrvAddr, '--to', repo, '--id', 'plain', '--storage-root', storageOf(source)]);
      await sleep(500);
    } finally {
      stopping = true;
      histories = await Promise.all(writers);
      client.close();
    }
    const pairs = histories.reduce((n, h) => n + (h.tables['b_effect'] as unknown[]).length, 0);
    process.stdout.write(`      ${WRITERS} writers sent ${pairs} causal pairs in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    await source.stop();
    target = new LocalCluster();
    await target.start();
  });

  after(async () => {
    await source.stop();
    await target?.stop();
    rmSync(repo, { recursive: true, force: true });
  });

  it('the consistent backup records its point and the write pause', () => {
    const p = consistent.manifest.point;
    expect(p, 'backup.json has the point').to.not.equal(null);
    const regions = consistent.manifest.tables.flatMap((t) => t.regions.map((r) => `${t.name}/${r.regionNumber}@${r.flushedIndex}`));
    process.stdout.write(`      consistent point: ${regions.join(' ')}; writes paused at most ${p!.pauseMsMax} ms (${p!.writesHeld} waited, attempt ${p!.attempts})\n`);
    for (const t of consistent.manifest.tables) for (const r of t.regions) expect(r.flushedIndex, `${t.name}/${r.regionNumber}: a point mid-load`).to.be.greaterThan(0);
    expect(plain.manifest.point ?? null).to.equal(null);
  });

  it('restored, the consistent backup passes the causal-cut check (B present ⇒ A present; each region a prefix)', async () => {
    const res = await cliJson<RestoreResult>(['br', 'restore', join(repo, 'cut'), '--to', target!.metasrvAddr, '--storage-root', storageOf(target!)]);
    for (const t of res.tables) for (const r of t.regions) expect(r.restoredFlushedIndex).to.equal(r.flushedIndex);
    const client = target!.client({ deadlineMs: 20_000, attemptTimeoutMs: 3000 });
    try {
      const report = checkCausalCut(histories, await readRestored(client));
      process.stdout.write(`      consistent restore: ${report.restoredWrites} writes, highest seq per writer ${JSON.stringify(report.highest)}\n`);
      expect(report.violations).to.deep.equal([]);
      expect(report.restoredWrites, 'the cut is mid-load: something was backed up').to.be.greaterThan(WRITERS);
      for (const t of TABLES) await client.dropTable(t);
    } finally {
      client.close();
    }
  });

  it('restored the same way, the plain per-region backup fails the same check', async () => {
    await cliJson<RestoreResult>(['br', 'restore', join(repo, 'plain'), '--to', target!.metasrvAddr, '--storage-root', storageOf(target!)]);
    const client = target!.client({ deadlineMs: 20_000, attemptTimeoutMs: 3000 });
    try {
      const report = checkCausalCut(histories, await readRestored(client));
      process.stdout.write(`      plain restore: ${report.violationCount} violations, first: ${report.violations[0] ?? 'none'}\n`);
      expect(report.violations.length, 'a_cause is flushed before b_effect, so b_effect holds B whose A is missing').to.be.greaterThan(0);
    } finally {
      client.close();
    }
  });

  it('B1, B3 on real processes: a write sent during a hold lands after the freeze; an expired hold cannot be frozen under', async () => {
    const client = target!.client({ deadlineMs: 20_000, attemptTimeoutMs: 5000 });
    try {
      const row = (seq: number) => ({ writer: 'probe', ts: 2_000_000 + seq, seq });
      const regionId = (await client.write('b_effect', [row(0)]))[0]!.regionId;
      // B1: held, the write waits; the freeze is queued before it.
      const term = await client.barrierHold('b_effect', regionId, 'probe-b1', 5000);
      let settled = false;
      const held = client.write('b_effect', [row(1)]).finally(() => (settled = true));
      await sleep(300);
      expect(settled, 'a write to a held region waits').to.equal(false);
      const f = await client.barrierFreeze('b_effect', regionId, 'probe-b1', term, 60_000);
      const version = (await held)[0]!.version;
      process.stdout.write(`      held write applied at ${version}, the freeze at ${f.freeze_index}; held ${f.held_ms} ms, ${f.writes_held} write waited\n`);
      expect(version, 'the held write is after the freeze').to.be.greaterThan(Number(f.freeze_index));
      expect(f.writes_held).to.equal(1);
      expect(f.held_ms).to.be.at.least(300);
      // B3: a hold ends by itself; freezing under it afterwards is refused.
      const term3 = await client.barrierHold('b_effect', regionId, 'probe-b3', 400);
      const t0 = Date.now();
      await client.write('b_effect', [row(2)]);
      const waitedMs = Date.now() - t0;
      expect(waitedMs, 'the write waited out the hold').to.be.at.least(300);
      const refused = await client.barrierFreeze('b_effect', regionId, 'probe-b3', term3, 60_000).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(refused?.message).to.match(/not held by barrier probe-b3/);
      // Released without a freeze: writes go at once.
      await client.barrierHold('b_effect', regionId, 'probe-rel', 5000);
      expect(await client.barrierRelease('b_effect', regionId, 'probe-rel')).to.equal(true);
      expect(await client.barrierRelease('b_effect', regionId, 'probe-rel'), 'released once').to.equal(false);
      const t1 = Date.now();
      await client.write('b_effect', [row(3)]);
      expect(Date.now() - t1).to.be.lessThan(2000);
    } finally {
      client.close();
    }
  });
});
