// Issue 14 item 5 with real processes: a follower whose own snapshot predates a compaction
// restarts and replays a conditional write that reads an SST that is gone from the store. GC no
// longer deletes such an SST while a replica may replay past it (docs/engine.md, G3), so the test
// removes it itself, as a lost object would (a lifecycle rule, an operator, a GC bug). Before, the
// apply's STORAGE_UNAVAILABLE was fatal to the ready loop: the whole datanode stopped serving, on
// every restart (a crash loop), while its heartbeats kept the metasrv from repairing it. Now only
// that replica fails (region + index in status and /health); the node serves its other regions.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { makeRegionId } from '../../src/engine/key.js';
import { sstPrefix } from '../../src/engine/manifest.js';
import type { Row } from '../../src/engine/schema.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { CLI, LocalCluster, waitUntil } from '../support/local-cluster.js';

const execFileAsync = promisify(execFile);

const COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
// Only explicit flushes and compactions (the follower's snapshot must stay before the conditional
// write), and a short GC grace so the compacted inputs go quickly.
const ENGINE_TOML = '[engine]\nflush_bytes = 67108864\nflush_age_ms = 3600000\ncompact_at_ssts = 100\nsst_gc_grace_ms = 1000';
const row = (i: number, v = i): Row => ({ host: `h${i}`, ts: 1_000_000 + i, v });

type Stat = { region_id: string; role: string; applied_index: string; health: string; failure: string; peer_id: string };

describe('integration: a replica that cannot apply fails alone, never its datanode (issue 14 item 5)', function () {
  this.timeout(240_000);
  const cluster = new LocalCluster({ datanodeToml: ENGINE_TOML });
  let client: RegionDbClient;
  const objects = () => new FsObjectStore(join(cluster.dir, 'object-store'));

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 30_000, attemptTimeoutMs: 5000 });
  });

  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });
  after(async () => cluster.stop({ keepData: failed }));

  const statsOf = async (n: number) => (await cluster.status(n)).replicas as unknown as Stat[];

  it('a follower restarting after a compaction, with the SST its replay reads gone: its replica fails naming region and index, the node stays up and serves its other regions', async () => {
    const kv = await client.createTable('kv', COLUMNS, 1);
    const other = await client.createTable('other', COLUMNS, 1);
    const region = makeRegionId(kv.tableId, 0);
    const otherRegion = makeRegionId(other.tableId, 0);
    await client.write('other', [row(1)]);

    // 1. Key h1 goes into SST1 (flush 1): every replica's snapshot is now the manifest naming SST1.
    await client.write('kv', [row(1), row(2)]);
    await client.flush('kv');
    const sst1 = new Set((await objects().list(sstPrefix(region))).map((o) => o.key));
    expect(sst1.size).to.equal(1);
    // 2. A conditional write on h1 after the flush: applying it reads SST1.
    const current = await client.get('kv', { host: 'h1', ts: row(1)['ts']! });
    const [written] = await client.write('kv', [row(1, 100)], { expectVersion: current!.version });
    const index = written!.version;
    const [leader, follower] = await waitUntil('a leader and a follower that applied the write', 20_000, async () => {
      const all = await Promise.all([0, 1, 2].map(statsOf));
      const l = all.findIndex((s) => s.some((r) => r.region_id === region && r.role === 'leader'));
      const f = all.findIndex((s, i) => i !== l && s.some((r) => r.region_id === region && Number(r.applied_index) >= index));
      return l >= 0 && f >= 0 ? [l, f] : undefined;
    });

    // 3. The follower stops. The leader flushes (SST2), compacts SST1+SST2 away and flushes again
    // (its snapshot no longer names them). SST1 is then lost from the store.
    await cluster.stopDatanode(follower, 'SIGTERM');
    await client.write('kv', [row(3)]);
    await client.flush('kv');
    const admin = makeClient('Admin', cluster.datanodeAddr(leader));
    try {
      await call(admin, 'Compact', { region_id: region }, 10_000);
    } finally {
      admin.close();
    }
    await waitUntil('the compaction', 60_000, async () => ((await cluster.metric(leader, 'regiondb_engine_compactions_total')) > 0 ? true : undefined));
    await client.write('kv', [row(4)]);
    await client.flush('kv');
    for (const key of sst1) await objects().delete(key);
    expect((await objects().list(sstPrefix(region))).filter((o) => sst1.has(o.key)), 'SST1 is gone').to.deep.equal([]);

    // 4. The follower restarts: replaying the conditional write from its own log reads SST1.
    await cluster.startDatanode(follower);
    type Health = { status: string; error?: string; failedReplicas?: { regionId: string; index: number }[] };
    const healthOf = async () => (await (await fetch(`http://127.0.0.1:${cluster.datanodes[follower]!.httpPort}/health`)).json()) as Health;
    // Before: the apply's STORAGE_UNAVAILABLE stopped the node's ready loop (/health `failed`).
    const health = await waitUntil('the replica (or the node) to fail', 20_000, async () => {
      const h = await healthOf();
      return h.status !== 'ok' || (h.failedReplicas?.length ?? 0) > 0 ? h : undefined;
    });
    expect(health.status, JSON.stringify(health)).to.equal('ok');
    expect(health.failedReplicas?.map((f) => [f.regionId, f.index])).to.deep.equal([[region, index]]);
    // From here the metasrv replaces the failed replica (a fresh peer on this node), so what the
    // datanode and `regiondb status` show moves on; each is checked for what it must say.
    const failed = (await statsOf(follower)).find((r) => r.region_id === region);
    if (failed?.health === 'failed') expect(failed.failure).to.include(`region ${region}`).and.include(`index ${index}`).and.include('not found');
    // `regiondb status` names the region and the index: as a failed replica, or as the reason of
    // the repair that replaces it.
    const { stdout } = await execFileAsync(process.execPath, [CLI, '--metasrv', cluster.metasrvAddr, 'status', '--all-procedures'], { timeout: 30_000 });
    const line = stdout.split('\n').find((l) => l.includes(region) && l.includes(`index ${index}`) && /failed|repair-replica/.test(l));
    expect(line, stdout).to.be.a('string');
    process.stdout.write(`      regiondb status: ${line!.replace(/\s+/g, ' ').slice(0, 240)}\n`);

    // 5. The node serves its other region (a linearizable read through it), and refuses the failed
    // one with UNAVAILABLE and the reason; the region itself keeps its quorum elsewhere.
    expect((await statsOf(follower)).find((r) => r.region_id === otherRegion)?.health).to.equal('ok');
    const db = makeClient('Database', cluster.datanodeAddr(follower));
    const getVia = (table: string) =>
      call<{ found: boolean }>(db, 'Get', { table, key: { values: { host: { string_value: 'h1' }, ts: { timestamp_ms_value: String(row(1)['ts']) } } }, consistency: 'LINEARIZABLE' }, 5000);
    try {
      expect(await waitUntil('a read of the other region through the node', 20_000, async () => (await getVia('other')).found || undefined)).to.equal(true);
      // The failed replica serves nothing: UNAVAILABLE with the reason while it is failed; once
      // its replacement runs, a linearizable read through the node gives the acknowledged value.
      const through = await getVia('kv').then(
        (res) => res,
        (err: unknown) => fromGrpcError(err),
      );
      if (through instanceof Error) {
        expect(['UNAVAILABLE', 'NOT_LEADER'], String(through)).to.include((through as { code: string }).code);
        if ((through as { code: string }).code === 'UNAVAILABLE') expect(through.message).to.include(`index ${index}`);
      }
    } finally {
      db.close();
    }
    expect((await client.get('kv', { host: 'h1', ts: row(1)['ts']! }))?.row['v']).to.equal(100);
    // The metasrv repairs it: three live voters again, the node hosting a fresh replica.
    await waitUntil('the region repaired to three healthy replicas', 60_000, async () => {
      const s = (await client.listNodes()) as { region_infos: { route: { region_id: string }; health: string }[] };
      return s.region_infos.find((r) => r.route.region_id === region)?.health === 'healthy' ? true : undefined;
    });
    const replaced = (await statsOf(follower)).find((r) => r.region_id === region);
    expect(replaced?.health, 'the node hosts a healthy replacement').to.equal('ok');
    if (failed?.health === 'failed') expect(replaced?.peer_id, 'under a fresh peer id').to.not.equal(failed.peer_id);
  });
});
