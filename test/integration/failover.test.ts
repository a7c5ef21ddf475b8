// Issue 6 acceptance with real processes on loopback: leader failover, leader balance, metasrv
// outage, paused leaders (no split brain), replica repair after a lasting failure (with a
// metasrv crash in the middle of it), fencing of a returning node, and draining.
//
// Test settings (documented defaults in docs/failover.md): datanode heartbeat 500 ms, raft tick
// 50 ms × 10 election ticks, metasrv replica_repair_after_ms 3000 (default 60000).
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { isRegionDbError } from '../../src/common/errors.js';
import { FORWARDED_BY_KEY } from '../../src/rpc/auth.js';
import { makeRegionId, regionNumberOf } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { COLUMNS, type StatusView, TABLE, keyOf, row } from '../support/metrics-table.js';
import { LocalCluster, sleep, waitUntil } from '../support/local-cluster.js';


/** Leaders per datanode index, from the datanodes themselves (running ones). */
async function leaderCounts(cluster: LocalCluster): Promise<number[]> {
  return Promise.all(
    cluster.datanodes.map(async (_, i) =>
      cluster.isRunning(i) ? (await cluster.status(i).catch(() => ({ replicas: [] }))).replicas.filter((r) => r.role === 'leader').length : 0,
    ),
  );
}

/** Bounded write load: `writers` loops of single-row writes until stop(); records acks per region. */
function startLoad(client: RegionDbClient, schema: TableSchema, acked: Map<string, Row>, first: number, writers = 6) {
  let stopped = false;
  let next = first;
  const acks: { region: string; startedAt: number; ackedAt: number }[] = [];
  const failures: string[] = [];
  const deadline = Date.now() + 60_000; // hard bound, whatever happens
  const loops = Array.from({ length: writers }, async () => {
    while (!stopped && Date.now() < deadline) {
      const r = row(next++);
      const region = makeRegionId(schema.tableId, regionNumberOf(schema, r));
      const startedAt = Date.now();
      try {
        await client.write(TABLE, [r]);
        acked.set(keyOf(r), r);
        acks.push({ region, startedAt, ackedAt: Date.now() });
      } catch (err) {
        failures.push(isRegionDbError(err) ? `${err.code}: ${err.message}` : String(err));
      }
    }
  });
  return {
    acks,
    failures,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

async function expectAllRows(client: RegionDbClient, cluster: LocalCluster, nodes: number[], acked: Map<string, Row>): Promise<void> {
  for (const n of nodes) {
    const rows = await client.scan(TABLE, {}, cluster.datanodeAddr(n));
    const found = new Map(rows.map((r) => [keyOf(r.row), r.row]));
    const missing = [...acked.keys()].filter((k) => !found.has(k));
    expect(missing, `datanode${n + 1}: ${missing.length} acknowledged rows missing`).to.deep.equal([]);
  }
}

describe('integration: metasrv failover, 3 datanodes (issue 6)', function () {
  this.timeout(180_000);
  // Leader placement "spread" (leaders evened per node): what the balance-leaders steps below
  // check; the default, "table", would put every leader of the one table on one node.
  const cluster = new LocalCluster({ metasrvToml: 'balance_leaders_interval_ms = 0\nleader_placement = "spread"' });
  let client: RegionDbClient;
  let schema: TableSchema;
  const acked = new Map<string, Row>();

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 15_000, attemptTimeoutMs: 1000 });
    schema = await client.createTable(TABLE, COLUMNS, 6);
    const rows = Array.from({ length: 600 }, (_, i) => row(i));
    await client.write(TABLE, rows);
    for (const r of rows) acked.set(keyOf(r), r);
  });

  after(async () => cluster.stop());

  // How fast: `make failover-bench` (a benchmark over many kills). Here: that every region serves
  // writes again, and nothing acknowledged is lost.
  it('kill -9 of a datanode under load: every region serves writes again, nothing acknowledged is lost', async () => {
    const counts = await leaderCounts(cluster);
    const victim = counts.indexOf(Math.max(...counts));
    const load = startLoad(client, schema, acked, 10_000);
    await sleep(1500);
    await cluster.stopDatanode(victim, 'SIGKILL');
    try {
      await expectFailoverServed(victim, load);
    } finally {
      await load.stop(); // bounded: no loop outlives the test
      await cluster.startDatanode(victim); // whatever happened, the later tests need it back
    }
  });

  async function expectFailoverServed(victim: number, load: ReturnType<typeof startLoad>): Promise<void> {
    const killedAt = Date.now();
    const regions = Array.from({ length: 6 }, (_, n) => makeRegionId(schema.tableId, n));
    const servedAgain = (region: string) => load.acks.some((a) => a.region === region && a.startedAt >= killedAt);
    await waitUntil('every region to acknowledge a write issued after the kill', 30_000, async () => (regions.every(servedAgain) ? true : undefined)).catch(() => undefined); // reported below, per region
    await load.stop();
    const gaps = regions.map((region) => {
      const first = load.acks.filter((a) => a.region === region && a.startedAt >= killedAt).reduce((m, a) => Math.min(m, a.ackedAt), Number.POSITIVE_INFINITY);
      return { region, ms: first - killedAt };
    });
    const worst = Math.max(...gaps.map((g) => g.ms));
    process.stdout.write(`      per-region unavailability after kill -9 of datanode${victim + 1}: ${gaps.map((g) => `${g.region}=${g.ms}ms`).join(' ')}; max ${worst} ms\n`);
    expect(load.failures, 'writes fail only transiently (retried inside the client)').to.deep.equal([]);
    expect(worst, 'every region served writes again within the 30 s the load ran after the kill').to.be.lessThan(Number.POSITIVE_INFINITY);
    // The metasrv notices the death (phi accrual) some seconds after the regions have already
    // re-elected: wait for its procedure rather than for a fixed time.
    await waitUntil('the metasrv to run region-failover for the dead node', 30_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      return s.procedures.some((p) => p.kind === 'region-failover') ? true : undefined;
    });
    // Every region already served writes again (above); the metasrv learns each new leader from
    // that node's next heartbeat (500 ms here), so its view converges a beat or two later — on a
    // loaded machine after the procedure shows. Wait for that event, then name any region still
    // leaderless in its view.
    const status = await waitUntil('the metasrv to see a live leader for every region', 10_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      return s.region_infos.every((r) => r.health !== 'leaderless') ? s : undefined;
    }).catch(async () => (await client.listNodes()) as StatusView);
    const leaderless = status.region_infos.filter((r) => r.health === 'leaderless').map((r) => r.route.region_id);
    expect(leaderless, 'regions the metasrv sees without a live leader').to.deep.equal([]);
    await expectAllRows(client, cluster, [0, 1, 2].filter((n) => n !== victim), acked);
  }

  it('balance-leaders after the node restart brings leaders per node within ±1', async () => {
    // balance-leaders balances the nodes the metasrv sees alive when it plans: started before the
    // restarted node's heartbeats arrive, it balances the other two and is done (a race this
    // test lost on a loaded machine). So wait, as an operator would, until every node is alive
    // and the metasrv has a report of every replica (an applied index from each peer).
    await waitUntil('every datanode alive, every replica reported to the metasrv', 30_000, async () => {
      const status = (await client.listNodes()) as StatusView;
      const reported = status.region_infos.every((r) => r.applied_index.length === r.route.peers.length && r.applied_index.every((a) => Number(a) > 0));
      return status.nodes.length === 3 && status.nodes.every((n) => n.state === 'alive') && reported ? true : undefined;
    });
    await client.startProcedure('balance-leaders');
    const counts = await waitUntil('balanced leaders', 30_000, async () => {
      const status = (await client.listNodes()) as StatusView;
      const running = status.procedures.filter((p) => p.kind === 'balance-leaders' && p.status === 'running');
      if (running.length > 0) return undefined;
      const c = await leaderCounts(cluster);
      return c.reduce((a, b) => a + b, 0) === 6 && Math.max(...c) - Math.min(...c) <= 1 ? c : undefined;
    });
    process.stdout.write(`      leaders per datanode after balance-leaders: ${counts.join(', ')}\n`);
    expect(Math.max(...counts) - Math.min(...counts)).to.be.at.most(1);
  });

  it('metasrv down: reads and writes keep working, DDL fails with a clear UNAVAILABLE', async () => {
    await cluster.stopMetasrv('SIGKILL');
    try {
      const rows = Array.from({ length: 50 }, (_, i) => row(50_000 + i));
      await client.write(TABLE, rows);
      for (const r of rows) acked.set(keyOf(r), r);
      const got = await client.get(TABLE, { host: rows[0]!['host']!, ts: rows[0]!['ts']! });
      expect(got?.row).to.deep.equal(rows[0]);
      const db = makeClient('Database', cluster.datanodeAddr(0));
      try {
        await call(db, 'CreateTable', { name: 'during_outage', columns: [], region_count: 1 }, 5000);
        expect.fail('DDL must fail while the metasrv is down');
      } catch (err) {
        const e = fromGrpcError(err);
        expect(e.code).to.equal('UNAVAILABLE');
        expect(e.message).to.match(/metasrv/);
      } finally {
        db.close();
      }
    } finally {
      await cluster.startMetasrv();
    }
  });

  it('SIGSTOP a leader for 5 s: after SIGCONT it does not accept writes as leader, and a linearizable read through it sees the latest write', async () => {
    const probe = row(77_777);
    const region = makeRegionId(schema.tableId, regionNumberOf(schema, probe));
    const statuses = await Promise.all([0, 1, 2].map((n) => cluster.status(n)));
    const paused = statuses.findIndex((s) => s.replicas.some((r) => r.region_id === region && r.role === 'leader'));
    expect(paused, 'found the region leader').to.be.at.least(0);
    cluster.pauseDatanode(paused, true);
    let latest = 0;
    try {
      for (let v = 1; v <= 5; v++) {
        await client.write(TABLE, [{ ...probe, v }]); // served by the newly elected leader
        latest = v;
      }
      await sleep(5000 - 0);
    } finally {
      cluster.pauseDatanode(paused, false);
    }
    // Straight to the resumed node, as a confused client would: it must not commit as leader.
    // Marked as a forwarded call, so the node answers for its own replica: an unmarked call is
    // forwarded to the region's real leader (issue 18) and served there, correctly.
    const ownReplicaOnly = new grpc.Metadata();
    ownReplicaOnly.set(FORWARDED_BY_KEY, 'test');
    const db = makeClient('Database', cluster.datanodeAddr(paused));
    try {
      const stale = { table: TABLE, rows: [{ values: { host: { string_value: probe['host'] }, ts: { timestamp_ms_value: String(probe['ts']) }, v: { float64_value: -1 } } }] };
      const outcome = await call(db, 'Write', stale, 3000, ownReplicaOnly).then(
        () => 'ok',
        (err: unknown) => fromGrpcError(err).code,
      );
      expect(outcome, 'the resumed ex-leader refuses (or cannot commit) the write').to.not.equal('ok');
      // A linearizable read through the resumed node (retried while it learns the new term).
      const value = await waitUntil('a linearizable read via the resumed node', 15_000, async () => {
        const res = await call<{ found: boolean; row: { values: Record<string, { float64_value?: number }> } }>(
          db,
          'Get',
          { table: TABLE, key: { values: { host: { string_value: probe['host'] }, ts: { timestamp_ms_value: String(probe['ts']) } } }, consistency: 'LINEARIZABLE' },
          3000,
          ownReplicaOnly,
        );
        return res.found ? res.row.values['v']?.float64_value : undefined;
      });
      expect(value, 'the read sees the write made while the old leader was paused').to.equal(latest);
      acked.set(keyOf(probe), { ...probe, v: latest });
    } finally {
      db.close();
    }
  });
});

describe('integration: replica repair and draining, 4 datanodes (issue 6)', function () {
  this.timeout(240_000);
  const cluster = new LocalCluster({ datanodes: 4, metasrvToml: 'replica_repair_after_ms = 3000\nbalance_leaders_interval_ms = 0' });
  let client: RegionDbClient;
  let schema: TableSchema;
  const acked = new Map<string, Row>();
  let dead = -1;

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 15_000, attemptTimeoutMs: 1000 });
    schema = await client.createTable(TABLE, COLUMNS, 6);
    for (let i = 0; i < 2000; i += 250) {
      const rows = Array.from({ length: 250 }, (_, j) => row(i + j));
      await client.write(TABLE, rows);
      for (const r of rows) acked.set(keyOf(r), r);
    }
  });

  after(async () => cluster.stop());

  it('a node down for longer than replica_repair_after: every affected region is back to 3 voters on live nodes, even across a metasrv crash mid-repair', async () => {
    const before = (await client.listNodes()) as StatusView;
    dead = 0;
    const deadNode = String(dead + 1);
    const affected = before.region_infos.filter((r) => r.route.peers.some((p) => p.node_id === deadNode)).map((r) => r.route.region_id);
    expect(affected.length).to.be.greaterThan(0);
    await cluster.stopDatanode(dead, 'SIGKILL');

    // Crash the metasrv while a repair is in flight, then start it again.
    const inFlight = await waitUntil('a repair-replica procedure in flight', 30_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      return s.procedures.find((p) => p.kind === 'repair-replica' && p.status === 'running' && p.step !== 'allocate');
    });
    await cluster.stopMetasrv('SIGKILL');
    process.stdout.write(`      killed the metasrv during ${inFlight.id} at step ${inFlight.step}\n`);
    await sleep(500);
    await cluster.startMetasrv();

    const repaired = await waitUntil('every region on 3 healthy live replicas', 60_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      const ok = s.region_infos.every((r) => r.health === 'healthy' && r.route.peers.length === 3 && !r.route.peers.some((p) => p.node_id === deadNode));
      const busy = s.procedures.some((p) => p.kind === 'repair-replica' && p.status === 'running');
      return ok && !busy ? s : undefined;
    });
    const resumed = repaired.procedures.find((p) => p.id === inFlight.id);
    expect(resumed?.status, `${inFlight.id} resumed after the metasrv restart and finished`).to.equal('done');
    expect(repaired.procedures.filter((p) => p.status === 'failed'), 'no procedure failed').to.deep.equal([]);
    // The datanodes agree: each affected region's leader reports exactly 3 voters, none dead.
    const statuses = await Promise.all([1, 2, 3].map((n) => cluster.status(n)));
    for (const regionId of affected) {
      const leader = statuses.flatMap((s) => s.replicas).find((r) => r.region_id === regionId && r.role === 'leader') as unknown as { voters: string[]; learners: string[] };
      expect(leader, `region ${regionId} has a leader`).to.not.equal(undefined);
      expect(leader.voters.length, `region ${regionId} voters`).to.equal(3);
      expect(leader.learners, `region ${regionId} learners`).to.deep.equal([]);
    }
    await expectAllRows(client, cluster, [1, 2, 3], acked);
  });

  it('the dead node comes back: its replaced replicas are removed and it serves nothing stale, from its start until their removal', async () => {
    await cluster.startDatanode(dead);
    // Probe the whole window from the restart (its old replicas reopened from its WAL) to their
    // removal, not only the end state: every stale read on it must be sent elsewhere. The probe
    // is marked as a forwarded call so that the node answers for its own replica: an unmarked
    // read is forwarded to the region's leader (issue 18) and served there, correctly.
    const db = makeClient('Database', cluster.datanodeAddr(dead));
    const ownReplicaOnly = new grpc.Metadata();
    ownReplicaOnly.set(FORWARDED_BY_KEY, 'test');
    const outcomes = new Map<string, number>();
    try {
      const r = row(5);
      const deadline = Date.now() + 20_000;
      for (let removed = false; !removed && Date.now() < deadline; ) {
        const outcome = await call<{ found: boolean }>(
          db,
          'Get',
          { table: TABLE, key: { values: { host: { string_value: r['host'] }, ts: { timestamp_ms_value: String(r['ts']) } } }, consistency: 'STALE' },
          3000,
          ownReplicaOnly,
        ).then(
          () => 'served',
          (err: unknown) => fromGrpcError(err).code,
        );
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        removed = (await cluster.status(dead)).replicas.length === 0;
      }
      process.stdout.write(`      stale reads on the returned node until its replicas were removed: ${[...outcomes].map(([o, n]) => `${o} ×${n}`).join(', ')}\n`);
      expect((await cluster.status(dead)).replicas, 'the returning node dropped its replaced replicas').to.deep.equal([]);
      expect(outcomes.get('served') ?? 0, 'stale reads served by a replica its group had removed').to.equal(0);
      expect([...outcomes.keys()].every((o) => o === 'NOT_LEADER' || o === 'NOT_FOUND'), `outcomes ${[...outcomes.keys()].join(', ')}`).to.equal(true);
    } finally {
      db.close();
    }
  });

  it('drain-node leaves the node with 0 leaders and 0 replicas, with no write failures during it', async () => {
    const drained = 1; // datanode2
    const load = startLoad(client, schema, acked, 100_000, 4);
    try {
      await client.startProcedure('drain-node', { nodeId: drained + 1 });
      await waitUntil('drain-node to finish', 90_000, async () => {
        const s = (await client.listNodes()) as StatusView;
        const p = s.procedures.find((x) => x.kind === 'drain-node');
        if (p?.status === 'failed') throw new Error(`drain-node failed: ${p.error}`);
        return p?.status === 'done' ? true : undefined;
      });
    } finally {
      await load.stop();
    }
    expect(load.failures, 'no write failed beyond retries').to.deep.equal([]);
    expect(load.acks.length, 'writes continued during the drain').to.be.greaterThan(20);
    const s = (await client.listNodes()) as StatusView;
    const node = s.nodes.find((n) => n.node_id === String(drained + 1))!;
    expect(node.regions, 'catalog places no replica on the drained node').to.equal(0);
    await waitUntil('the drained node to host nothing', 20_000, async () => ((await cluster.status(drained)).replicas.length === 0 ? true : undefined));
    const counts = await leaderCounts(cluster);
    expect(counts[drained]).to.equal(0);
    await expectAllRows(client, cluster, [0, 2, 3], acked);
  });
});
