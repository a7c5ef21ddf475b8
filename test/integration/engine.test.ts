// Issue 5 acceptance with real processes on loopback: the LSM over shared object storage.
// Small flush thresholds make the rows written exceed the memtable limit many times.
// Two sizes. `make test` writes 100,000 rows with a 64 KiB flush threshold and a 30 s SST GC
// grace: every region still flushes, compacts (compact_at_ssts), rejoins a follower through a
// manifest snapshot and garbage-collects compacted inputs, on a fifth of the data and half the
// grace. `make test-heavy` (ENGINE_HEAVY=1) runs the full size: 500,000 rows, a 256 KiB
// threshold and a 60 s grace, and adds the check that needs that volume: the WAL stays bounded
// while the data written grows far past LevelDB's own buffers (below a few MB written, the WAL's
// size is LevelDB's write buffer, whatever raft truncates).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { makeRegionId } from '../../src/engine/key.js';
import { compactionDue, planCompaction } from '../../src/engine/compaction.js';
import { loadLatestManifest, sstPrefix } from '../../src/engine/manifest.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { S3ObjectStore } from '../../src/object-store/s3-store.js';
import { FORWARDED_BY_KEY } from '../../src/rpc/auth.js';
import { makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { LocalCluster, compactUntil, dirBytes, waitUntil } from '../support/local-cluster.js';
import { BUCKET, type S3Server, startS3rver, stopS3rver } from '../support/s3rver.js';

const COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
const HEAVY = process.env['ENGINE_HEAVY'] === '1';
/** Rows the first test writes, in five steps. */
const ROWS = HEAVY ? 500_000 : 100_000;
const STEP = ROWS / 5;
// The GC grace bounds scans to half of it (docs/engine.md): 30 s covers a cold 125k-row region
// scan on a loaded machine (the full size), 15 s the default size's regions of 25k-35k rows
// (twice the time per row the full size allows: at a 20 s grace, 10 s, a whole-table scan
// failed with the scan bound at a load average of about 15).
const COMPACT_AT_SSTS = 4;
const ENGINE_TOML = `[engine]\nflush_bytes = 262144\ncompact_at_ssts = ${COMPACT_AT_SSTS}\nsst_gc_grace_ms = 60000`;
// The first describe's cluster (the one whose test waits for GC). The disaster-recovery and S3
// describes keep ENGINE_TOML at both sizes: they write 20k-40k rows and never wait for GC, and a
// GC pass every quarter grace (7.5 s at 30 s) caches the latest manifest on the leader, which the
// damaged-manifest test needs the recovery to read afresh from the object store.
const BIG_TOML = HEAVY ? ENGINE_TOML : `[engine]\nflush_bytes = 65536\ncompact_at_ssts = ${COMPACT_AT_SSTS}\nsst_gc_grace_ms = 30000`;
const row = (i: number): Row => ({ host: `h${i % 200}`, ts: 1_000_000 + i, v: i });

async function writeRows(client: RegionDbClient, table: string, from: number, to: number, batch = 2000, writers = 4): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < to) {
        const start = next;
        next = Math.min(to, next + batch);
        await client.write(table, Array.from({ length: next - start }, (_, j) => row(start + j)));
      }
    }),
  );
}

/**
 * Every row of `table` via datanode `node`, counted page by page over `ts` (the rows' `ts` is
 * 1,000,000 + i, `written` rows): a whole-table scan of a 25k-row region can pass the scan bound (half the GC
 * grace, docs/engine.md) on a loaded machine, and the product's answer to that is to page. The
 * first page is open below and the last open above, so a row at any `ts` is counted.
 */
async function countRows(client: RegionDbClient, cluster: LocalCluster, table: string, node: number, written: number, consistency: 'linearizable' | 'stale' = 'linearizable'): Promise<number> {
  const PAGE = 20_000;
  const highestTs = row(written).ts as number;
  let count = 0;
  for (let start: number | undefined = undefined; ; ) {
    const end: number = start === undefined ? 1_000_000 + PAGE : start + PAGE;
    const last = end > highestTs;
    const range = { ...(start === undefined ? {} : { startMs: start }), ...(last ? {} : { endMs: end }) };
    count += (await client.scan(table, { consistency, ...range }, cluster.datanodeAddr(node))).length;
    if (last) return count;
    start = end;
  }
}

describe('integration: LSM engine over object storage, 3 datanodes (issue 5)', function () {
  this.timeout(600_000);
  const cluster = new LocalCluster({ datanodeToml: BIG_TOML });
  let client: RegionDbClient;
  let schema: TableSchema;
  let total = 0;
  const objects = () => new FsObjectStore(join(cluster.dir, 'object-store'));

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 });
    schema = await client.createTable('big', COLUMNS, 4);
  });

  // A failed test keeps the cluster's logs and object store for the post-mortem (path printed).
  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });
  after(async () => cluster.stop({ keepData: failed }));

  const walTitle = HEAVY ? 'every WAL stays bounded' : 'the WAL bound is make test-heavy\'s';
  it(`${ROWS.toLocaleString('en-US')} rows: SSTs land in the object store, ${walTitle}, all rows read back`, async () => {
    const walSizes: number[][] = [];
    for (let step = 0; step < 5; step++) {
      await writeRows(client, 'big', step * STEP, (step + 1) * STEP);
      walSizes.push(cluster.datanodes.map((d) => dirBytes(join(d.dataDir, 'wal'))));
      process.stdout.write(`      after ${(step + 1) * STEP} rows: WAL bytes per node ${walSizes.at(-1)!.join(', ')}; object store ${dirBytes(join(cluster.dir, 'object-store'))} bytes\n`);
    }
    total = ROWS;
    const ssts = await objects().list('regions/');
    const sstCount = ssts.filter((o) => o.key.endsWith('.sst')).length;
    const sstBytes = ssts.filter((o) => o.key.endsWith('.sst')).reduce((n, o) => n + o.size, 0);
    expect(sstCount, 'SSTs in the object store').to.be.greaterThan(4);
    if (HEAVY) {
      // Bounded: the WAL after 500k rows is no bigger than a small multiple of the flush threshold
      // per region, not of the data written (which is in the SSTs). At the default size the data
      // written is within LevelDB's write buffer and these bounds could not fail (the title says so).
      const last = Math.max(...walSizes.at(-1)!);
      expect(last, `WAL bytes ${last} vs SST bytes ${sstBytes}`).to.be.lessThan(sstBytes / 2);
      expect(last, 'WAL does not grow with the data written').to.be.lessThan(Math.max(...walSizes[0]!) * 2 + (8 << 20));
    }
    for (let n = 0; n < 3; n++) expect(await countRows(client, cluster, 'big', n, total), `rows via datanode${n + 1}`).to.equal(total);
    const sampled = row(HEAVY ? 123_457 : 23_457);
    const sample = await client.get('big', { host: sampled['host']!, ts: sampled['ts']! });
    expect(sample?.row).to.deep.equal(sampled);
  });

  it('restart all datanodes: every acknowledged row is readable (replay from the flushed index)', async () => {
    await Promise.all([0, 1, 2].map((n) => cluster.stopDatanode(n, 'SIGTERM')));
    await Promise.all([0, 1, 2].map((n) => cluster.startDatanode(n)));
    for (let n = 0; n < 3; n++) expect(await countRows(client, cluster, 'big', n, total), `rows via datanode${n + 1} after restart`).to.equal(total);
  });

  it('a follower stopped across ≥ 5 flushes rejoins through a manifest snapshot, receiving far less than was written', async () => {
    const follower = 2;
    const appliedAtStop = new Map((await cluster.status(follower)).replicas.map((r) => [r.region_id, Number(r.applied_index)]));
    await cluster.stopDatanode(follower, 'SIGTERM');
    const flushes = async () => (await cluster.metric(0, 'regiondb_engine_flushes_total')) + (await cluster.metric(1, 'regiondb_engine_flushes_total'));
    const flushesBefore = await flushes();
    // Write until the leaders have flushed 5 times (how many rows that takes depends on how the
    // flusher keeps up with the writers on this machine); bounded.
    let rowsWritten = 0;
    let flushesAfter = flushesBefore;
    // What the follower must reach: each region's applied index on its leader once the writes
    // are done. (A probe of "within N entries of the leader" is already true at restart when
    // few, large entries were written, and then asserts before the snapshot arrives.)
    let target = new Map<string, number>();
    try {
      while (flushesAfter - flushesBefore < 5 && rowsWritten < 400_000) {
        await writeRows(client, 'big', total, total + 40_000);
        total += 40_000;
        rowsWritten += 40_000;
        flushesAfter = await flushes();
      }
      target = await waitUntil('a leader for every region', 30_000, async () => {
        const leaders = (await Promise.all([0, 1].map((n) => cluster.status(n)))).flatMap((s) => s.replicas).filter((r) => r.role === 'leader');
        return leaders.length === appliedAtStop.size ? new Map(leaders.map((r) => [r.region_id, Number(r.applied_index)])) : undefined;
      });
    } finally {
      await cluster.startDatanode(follower); // whatever happened, the later tests need it back
    }
    expect(flushesAfter - flushesBefore, `flushes while the follower was down (${rowsWritten} rows written)`).to.be.at.least(5);
    const writtenBytes = rowsWritten * 60; // ≥ 60 bytes of command per row
    const mine = await waitUntil('the follower to apply every region up to its leader\'s applied index at restart', 60_000, async () => {
      const replicas = (await cluster.status(follower)).replicas;
      const caughtUp = replicas.length === target.size && replicas.every((r) => Number(r.applied_index) >= target.get(r.region_id)!);
      return caughtUp ? replicas : undefined;
    });
    // Evidence from this process (a fresh one: its counters and status start at zero), not from
    // a log file that earlier processes appended to.
    const received = await cluster.metric(follower, 'regiondb_raft_received_payload_bytes_total');
    const installed = await cluster.metric(follower, 'regiondb_raft_snapshots_installed_total');
    const installedAt = mine.map((r) => `${r.region_id}@${r.snapshot_installed_index}`).join(' ');
    process.stdout.write(
      `      follower received ${received} bytes over raft and installed ${installed} snapshots (${installedAt}) after ${flushesAfter - flushesBefore} flushes; ≥ ${writtenBytes} bytes were written meanwhile\n`,
    );
    expect(installed, 'raft snapshots installed by the restarted follower').to.be.at.least(1);
    for (const r of mine) {
      const at = Number(r.snapshot_installed_index);
      if (at > 0) expect(at, `region ${r.region_id}: snapshot index vs the follower's applied index when it stopped`).to.be.greaterThan(appliedAtStop.get(r.region_id)!);
    }
    expect(received, 'bytes over the raft transport vs data written').to.be.lessThan(writtenBytes / 4);
    expect(await countRows(client, cluster, 'big', follower, total, 'stale')).to.equal(total);
  });

  it('compaction lowers the SST count, keeps every row, and deleted rows stay deleted, also after GC', async () => {
    const deleted = Array.from({ length: 400 }, (_, i) => row(i * 7));
    await client.delete('big', deleted.map((r) => ({ host: r['host']!, ts: r['ts']! })));
    await client.flush('big');
    total -= deleted.length;
    /** SSTs referenced by each region's leader, once every region has one. */
    const leaderSsts = () =>
      waitUntil('a leader for every region', 30_000, async () => {
        const leaders = (await Promise.all([0, 1, 2].map((n) => cluster.status(n)))).flatMap((s) => s.replicas).filter((r) => r.role === 'leader');
        return leaders.length === 4 ? new Map(leaders.map((r) => [r.region_id, r.ssts])) : undefined;
      });
    const before = await leaderSsts();
    // The flusher may itself have compacted a region down to one SST just now (compact_at_ssts);
    // the rest must have something to merge, or this test proves nothing.
    expect([...before.values()].some((n) => n >= 2), `a region with SSTs to merge: ${[...before].join(' ')}`).to.equal(true);
    const deletedBefore = async () => (await Promise.all([0, 1, 2].map((n) => cluster.metric(n, 'regiondb_engine_ssts_deleted_total')))).reduce((a, b) => a + b, 0);
    const gcBefore = await deletedBefore();
    // Explicit compaction of every region's SSTs (leaders do it): an explicit request merges all
    // of a region's SSTs, and nothing is written meanwhile, so each region ends with exactly one.
    // A node compacts the regions it leads when asked; a leadership that moves between the three
    // calls would leave a region unasked, so a region not yet down to one SST is asked again
    // (every 2 s; asking twice is harmless).
    const after = await compactUntil(cluster, 'compaction to one SST per region (on its leader)', 60_000, async () => {
      const now = await leaderSsts();
      return [...now.values()].every((n) => n === 1) ? now : undefined;
    });
    process.stdout.write(`      SSTs per region before → after compaction: ${[...before].map(([r, n]) => `${r}: ${n} → ${after.get(r)}`).join(', ')}\n`);
    for (const [region, n] of before) if (n >= 2) expect(after.get(region), `region ${region}`).to.be.lessThan(n);
    const expectRows = async (when: string) => {
      for (let n = 0; n < 3; n++) expect(await countRows(client, cluster, 'big', n, total), `rows via datanode${n + 1} ${when}`).to.equal(total);
      for (const r of deleted.slice(0, 20)) expect(await client.get('big', { host: r['host']!, ts: r['ts']! }), `a deleted row, ${when}`).to.equal(null);
    };
    await expectRows('after compaction');
    // Unreferenced inputs are garbage-collected after the grace period; every row is still there
    // (a GC that deleted a referenced SST would fail these reads).
    await waitUntil('GC of compacted inputs', 180_000, async () => ((await deletedBefore()) > gcBefore ? true : undefined));
    await expectRows('after GC deleted the compacted inputs');
  });

  it('a corrupt SST block fails the reads that touch it with an error naming the object and the check; the node stays up', async () => {
    const region1 = makeRegionId(schema.tableId, 1);
    const store = objects();
    // Damage every SST object of the region (whichever its version references right now).
    const damaged = (await store.list(sstPrefix(region1))).map((o) => o.key);
    expect(damaged.length).to.be.greaterThan(0);
    for (const key of damaged) {
      const file = join(cluster.dir, 'object-store', key);
      const bytes = readFileSync(file);
      bytes[100]! ^= 0xff; // inside the first data block
      writeFileSync(file, bytes);
    }
    // The node under test must read the object afresh (its cache may hold the good copy).
    await cluster.stopDatanode(0, 'SIGTERM');
    await cluster.startDatanode(0);
    // Healthy is not yet hosting: its replicas open once the metasrv answered its registration
    // (the direct Scan of region 3 below asks this node for its own replica).
    await waitUntil('datanode1 registered, its replicas open', 30_000, async () => {
      const health = (await (await fetch(`http://127.0.0.1:${cluster.datanodes[0]!.httpPort}/health`)).json()) as { registered?: boolean };
      return health.registered === true ? true : undefined;
    });
    const err = await client.scan('big', { consistency: 'stale' }, cluster.datanodeAddr(0)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.Corruption);
    expect((err as Error).message).to.include(sstPrefix(region1));
    expect((err as Error).message).to.match(/CRC32C|crc32c/);
    const health = await (await fetch(`http://127.0.0.1:${cluster.datanodes[0]!.httpPort}/health`)).json();
    expect((health as { status: string }).status).to.equal('ok');
    // Other regions are not affected: this node serves region 3 from its own replica. A replica
    // serves a stale read only once it has heard from a leader since its node started (until then
    // it may have been removed from its group while the node was down: database-service.ts
    // `readable`); right after the restart its leader may be quiesced on another node and not
    // heard yet, so the node answers NOT_LEADER for a while — the direct Scan does not follow
    // that, it asks again (bounded). Any other error fails the test at once. The call is marked
    // forwarded, so that the node answers from its own replica or refuses, and never sends the
    // scan to the region's leader (which it does for a client's call: finding Z3).
    const other = makeRegionId(schema.tableId, 3);
    const db = makeClient('Database', cluster.datanodeAddr(0));
    let fatal: unknown;
    try {
      const rows = await waitUntil('datanode1 serves a stale scan of region 3 from its own replica', 30_000, async () => {
        let n = 0;
        try {
          const ownReplicaOnly = new grpc.Metadata();
          ownReplicaOnly.set(FORWARDED_BY_KEY, 'engine-test');
          const stream = (db as unknown as { Scan(r: unknown, m: grpc.Metadata, o: unknown): AsyncIterable<{ rows: unknown[] }> }).Scan(
            { table: 'big', region_id: other, consistency: 'STALE', tag_equals: {}, limit: '0' },
            ownReplicaOnly,
            { deadline: Date.now() + 30_000 },
          );
          for await (const chunk of stream) n += chunk.rows.length;
        } catch (e) {
          if (fromGrpcError(e).code === ErrorCode.NotLeader) return undefined;
          fatal = e;
          return -1;
        }
        return n;
      });
      if (fatal !== undefined) throw fatal;
      expect(rows).to.be.greaterThan(0);
    } finally {
      db.close();
    }
  });
});

describe('integration: disaster recovery from the object store (issue 5)', function () {
  this.timeout(300_000);
  const cluster = new LocalCluster({ datanodeToml: ENGINE_TOML });
  let client: RegionDbClient;

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 });
    await client.createTable('dr', COLUMNS, 4);
  });

  after(async () => cluster.stop());

  it('refuses to recover a table whose regions still have live leaders', async () => {
    await writeRows(client, 'dr', 0, 20_000);
    const err = await client.recoverTable('dr').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.ConditionFailed);
    expect((err as Error).message).to.match(/live leader/);
  });

  it('every datanode loses its disk: `recover` rebuilds the table from the object store up to the flush point', async () => {
    await client.flush('dr');
    const manifests = await new FsObjectStore(join(cluster.dir, 'object-store')).list('regions/');
    expect(manifests.some((m) => m.key.endsWith('.manifest')), 'manifests were written').to.equal(true);
    await writeRows(client, 'dr', 20_000, 20_100, 100, 1); // after the flush: may be lost (RPO of this path)
    await Promise.all([0, 1, 2].map((n) => cluster.stopDatanode(n, 'SIGKILL')));
    for (const d of cluster.datanodes) rmSync(d.dataDir, { recursive: true, force: true });
    await Promise.all([0, 1, 2].map((n) => cluster.startDatanode(n)));
    // Fresh, empty datanodes must not start the regions afresh (that would serve them empty).
    // Once each has registered, the metasrv has told it what to host: whatever it would do
    // wrongly it has been told to do by then.
    await waitUntil('every fresh datanode to register with the metasrv', 30_000, async () => {
      const health = await Promise.all(cluster.datanodes.map(async (d) => (await (await fetch(`http://127.0.0.1:${d.httpPort}/health`)).json()) as { registered?: boolean }));
      return health.every((h) => h.registered === true) ? true : undefined;
    });
    // The node refuses the scan (its regions are not opened), rather than answering with no rows
    // (regions started afresh). The client retries a refusal until its deadline, so this probe has
    // a client of its own with a short one: the 60 s of the test's client only made the same
    // refusal come a minute later.
    const prober = cluster.client({ deadlineMs: 5000, attemptTimeoutMs: 1000 });
    const beforeRecovery = await prober.scan('dr', { consistency: 'stale' }, cluster.datanodeAddr(0)).then(
      (rows) => `${rows.length} rows`,
      (e: unknown) => e,
    );
    process.stdout.write(`      a scan before recovery: ${String(beforeRecovery).slice(0, 200)}\n`);
    expect(beforeRecovery, 'nothing is served before recovery: the scan is refused').to.be.instanceOf(Error);
    const points = await waitUntil('the metasrv to see the fresh datanodes', 30_000, async () => client.recoverTable('dr'));
    process.stdout.write(`      recovery points: ${points.map((p) => `${p.region_id}@${p.flushed_index}`).join(' ')}\n`);
    expect(points.length).to.equal(4);
    for (const p of points) expect(Number(p.flushed_index), `region ${p.region_id} recovery point`).to.be.greaterThan(0);
    const rows = await waitUntil('the recovered regions to serve', 60_000, async () => {
      const r = await client.scan('dr', {}, cluster.datanodeAddr(1));
      return r.length >= 20_000 ? r : undefined;
    });
    const keys = new Set(rows.map((r) => r.row['ts']));
    const missing = Array.from({ length: 20_000 }, (_, i) => row(i)['ts']).filter((ts) => !keys.has(ts));
    expect(missing, 'every row flushed before the disaster is back').to.deep.equal([]);
    process.stdout.write(`      rows after recovery: ${rows.length} (20000 flushed + ${rows.length - 20_000} of 100 written after the flush)\n`);
    // And the recovered table takes writes again.
    await client.write('dr', [row(99_999)]);
    expect((await client.get('dr', { host: row(99_999)['host']!, ts: row(99_999)['ts']! }))?.row).to.deep.equal(row(99_999));
  });

  it('a damaged manifest makes recovery fail with the object and the check named; the nodes stay up', async () => {
    const store = new FsObjectStore(join(cluster.dir, 'object-store'));
    const region = (await client.describe('dr', true)).routes.keys().next().value as string;
    await client.flush('dr');
    // The flush may have brought the region to compact_at_ssts: its compaction then writes a
    // newer (intact) manifest in the background, which recovery would read instead of the one
    // damaged here (seen once on a loaded machine). With nothing written, a manifest whose SSTs
    // the engine's own policy would not compact is the last one until something is.
    const latest = await waitUntil('no compaction left to write a newer manifest', 60_000, async () => {
      const m = await loadLatestManifest(store, region);
      const pending = m && compactionDue(m.manifest.ssts.length, COMPACT_AT_SSTS, false) && planCompaction(m.manifest.ssts, COMPACT_AT_SSTS, false);
      return m && !pending ? m : undefined;
    });
    // recover refuses while a node holding the table is not counted alive (and says so). Right
    // after the previous recovery the metasrv was seen to suspect a live node for a few seconds
    // (finding M3 in docs/correctness.md: one cause, a stalled metasrv process judging before reading the
    // queued heartbeats, is fixed): wait, as an operator would, until all three are alive, so
    // this test is about the damaged manifest only.
    const allAlive = () =>
      waitUntil('every datanode alive in the metasrv', 30_000, async () => {
        const s = (await client.listNodes()) as { nodes: { state: string }[] };
        return s.nodes.length === 3 && s.nodes.every((n) => n.state === 'alive') ? true : undefined;
      });
    await allAlive();
    // The cluster keeps running while the manifest is damaged: the region's leader may write a
    // newer manifest before the recovery reads the latest (SST GC asks for a flush, even of an
    // empty memtable, until every replica's snapshot has passed the SSTs it waits to delete; a
    // fresh-clone CI run saw the recovery succeed). The recovery's answer says which index it
    // recovered the region to: past the damaged manifest, an intact newer one came first, and the
    // attempt is made again on the new latest; at it, the damaged manifest was read and
    // accepted, and the test fails.
    let damaged: { key: string; index: number } | undefined;
    let err: ReturnType<typeof fromGrpcError> | undefined;
    for (let attempt = 1; attempt <= 3 && !err; attempt++) {
      const now = attempt === 1 ? latest : (await loadLatestManifest(store, region))!;
      damaged = { key: now.key, index: now.manifest.flushedIndex };
      const file = join(cluster.dir, 'object-store', now.key);
      const bytes = readFileSync(file);
      bytes[bytes.byteLength - 3]! ^= 0xff;
      writeFileSync(file, bytes);
      const recovered = await client.recoverTable('dr', true).then(
        (regions) => regions,
        (e: unknown) => {
          err = fromGrpcError(e);
          return undefined;
        },
      );
      if (!recovered) break;
      const index = Number(recovered.find((r) => r.region_id === region)?.flushed_index ?? 0);
      expect(index, `recovery read the damaged ${now.key} (index ${damaged.index}) and succeeded`).to.be.greaterThan(damaged.index);
      console.log(`      attempt ${attempt}: a newer manifest (index ${index}) was written before the recovery read ${now.key}; damaging the latest again`);
      await allAlive();
    }
    expect(err, 'recovery must fail').to.not.equal(undefined);
    expect(err!.message).to.include(damaged!.key);
    expect(err!.message).to.match(/crc32c/);
    for (let n = 0; n < 3; n++) expect(cluster.isRunning(n)).to.equal(true);
  });
});

describe('integration: the S3 backend with real processes (issue 5)', function () {
  this.timeout(300_000);
  let s3: S3Server | undefined;
  let cluster: LocalCluster | undefined;

  before(async () => {
    s3 = await startS3rver();
    const storage = `[storage]\ntype = "s3"\nendpoint = "${s3.endpoint}"\nbucket = "${BUCKET}"\nprefix = "cluster"\naccess_key_id = "S3RVER"\nsecret_access_key = "S3RVER"`;
    cluster = new LocalCluster({ datanodeToml: ENGINE_TOML, storageToml: storage });
    await cluster.start();
  });

  after(async () => {
    await cluster?.stop();
    if (s3) await stopS3rver(s3);
  });

  it('flushes SSTs to S3, and after a restart of every datanode all rows read back', async () => {
    const client = cluster!.client({ deadlineMs: 60_000, attemptTimeoutMs: 5000 });
    await client.createTable('s3t', COLUMNS, 2);
    await writeRows(client, 's3t', 0, 40_000);
    await client.flush('s3t');
    const store = new S3ObjectStore({ endpoint: s3!.endpoint, bucket: BUCKET, prefix: 'cluster', region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
    const objectsInS3 = await store.list('regions/');
    expect(objectsInS3.filter((o) => o.key.endsWith('.sst')).length, 'SSTs in S3').to.be.greaterThan(1);
    expect(objectsInS3.filter((o) => o.key.endsWith('.manifest')).length, 'manifests in S3').to.be.greaterThan(0);
    await Promise.all([0, 1, 2].map((n) => cluster!.stopDatanode(n, 'SIGTERM')));
    await Promise.all([0, 1, 2].map((n) => cluster!.startDatanode(n)));
    for (let n = 0; n < 3; n++) expect(await countRows(client, cluster!, 's3t', n, 40_000), `rows via datanode${n + 1}`).to.equal(40_000);
  });
});
