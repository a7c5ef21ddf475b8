// Issue 14 items 1 and 2 with real processes on loopback: the metasrv must never destroy a live
// voter because its catalog is empty or older than the raft group, must not reuse a lost table's
// id, and must never reopen a wiped datanode's replicas under their old peer ids — nor those of a
// restored copy of its data dir.
//
// Settings as in failover.test.ts: datanode heartbeat 500 ms, raft tick 50 ms × 10.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row } from '../../src/engine/schema.js';
import { COLUMNS, type StatusView, TABLE, keyOf, row } from '../support/metrics-table.js';
import { LocalCluster, waitUntil } from '../support/local-cluster.js';


interface ReplicaView {
  region_id: string;
  peer_id: string;
  role: string;
  term: string;
  applied_index: string;
  voters: string[];
  learners: string[];
}

async function replicasOf(cluster: LocalCluster, i: number): Promise<ReplicaView[]> {
  return ((await cluster.status(i)) as unknown as { replicas: ReplicaView[] }).replicas;
}

/** "region@peer" of every replica a datanode hosts. */
async function hosted(cluster: LocalCluster, i: number): Promise<string[]> {
  return (await replicasOf(cluster, i)).map((r) => `${r.region_id}@${r.peer_id}`).sort();
}

/** Heartbeats the metasrv received since its start (its own counter). */
async function metasrvHeartbeats(cluster: LocalCluster): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${cluster.metasrv.httpPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('regiondb_metasrv_heartbeats_total '));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function writeRows(client: RegionDbClient, acked: Map<string, Row>, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i += 100) {
    const rows = Array.from({ length: Math.min(100, from + count - i) }, (_, j) => row(i + j));
    await client.write(TABLE, rows);
    for (const r of rows) acked.set(keyOf(r), r);
  }
}

async function expectAllRows(client: RegionDbClient, acked: Map<string, Row>, addr?: string): Promise<void> {
  const rows = await client.scan(TABLE, {}, addr);
  const found = new Map(rows.map((r) => [keyOf(r.row), r.row]));
  const missing = [...acked.keys()].filter((k) => !found.has(k));
  expect(missing, `${addr ?? 'via routes'}: ${missing.length} of ${acked.size} acknowledged rows missing`).to.deep.equal([]);
}

/**
 * A follower's data dir copied (a volume snapshot), the follower restarted on the live dir and
 * registered, rows written that only the leader and it hold (the other follower down), the two
 * killed, the copy put back and started with the lagging follower. With `catalogCopyToo` the
 * metasrv's data dir is copied first and put back too (older than the follower's copy: K1 cannot
 * tell). Waits for the outcome: a leader elected without those rows (the copy's replicas answering
 * raft with rolled-back logs and votes) fails the test; the copy must be refused, say why on
 * /health, and reopen nothing. Leaves the leader down and the copy refused.
 */
async function followerCopyPutBack(
  cluster: LocalCluster,
  client: RegionDbClient,
  acked: Map<string, Row>,
  options: { readonly catalogCopyToo: boolean; readonly rowsFrom: number },
): Promise<{ restored: number; leader: number; dataDir: string; health: () => Promise<{ status: string; error?: string; registered: boolean }> }> {
  const regionId = (await replicasOf(cluster, 0))[0]!.region_id;
  const roles = await Promise.all([0, 1, 2].map(async (i) => (await replicasOf(cluster, i)).find((r) => r.region_id === regionId)!));
  const leader = roles.findIndex((r) => r.role === 'leader');
  const [restored, lagging] = [0, 1, 2].filter((i) => i !== leader) as [number, number];
  const dataDir = cluster.datanodes[restored]!.dataDir;
  const copy = `${dataDir}.copy`;
  const oldCatalog = join(cluster.dir, 'metasrv-catalog-copy');
  if (options.catalogCopyToo) {
    await cluster.stopMetasrv();
    cpSync(cluster.metasrv.dataDir, oldCatalog, { recursive: true });
    await cluster.startMetasrv();
  }
  // A copy of the follower's data dir, then a start on the live dir that the metasrv registers:
  // what the copy holds is now behind.
  await cluster.stopDatanode(restored, 'SIGTERM');
  cpSync(dataDir, copy, { recursive: true });
  await cluster.startDatanode(restored);
  await waitUntil('the follower to register and host its replicas again', 30_000, async () => ((await hosted(cluster, restored)).length > 0 ? true : undefined));
  // Rows only the leader and this follower hold: the other follower is down.
  await cluster.stopDatanode(lagging, 'SIGKILL');
  await writeRows(client, acked, options.rowsFrom, 300);
  await cluster.stopDatanode(leader, 'SIGKILL');
  await cluster.stopDatanode(restored, 'SIGKILL');
  if (options.catalogCopyToo) {
    // The metasrv's catalog goes back too: it never saw the follower's later start.
    await cluster.stopMetasrv();
    rmSync(cluster.metasrv.dataDir, { recursive: true, force: true });
    cpSync(oldCatalog, cluster.metasrv.dataDir, { recursive: true });
    await cluster.startMetasrv();
  }
  // The follower's disk is put back from the copy, and it starts with the lagging one.
  rmSync(dataDir, { recursive: true, force: true });
  cpSync(copy, dataDir, { recursive: true });
  rmSync(copy, { recursive: true, force: true });
  await cluster.startDatanode(restored);
  await cluster.startDatanode(lagging);
  const health = async () => (await (await fetch(`http://127.0.0.1:${cluster.datanodes[restored]!.httpPort}/health`)).json()) as { status: string; error?: string; registered: boolean };
  const outcome = await waitUntil('a leader without the old one, or the copy refused', 30_000, async () => {
    for (const i of [restored, lagging]) {
      if ((await replicasOf(cluster, i)).some((r) => r.role === 'leader')) return `datanode${i + 1} elected a leader`;
    }
    return (await health()).status === 'refused' ? 'copy refused' : undefined;
  });
  expect(outcome).to.equal('copy refused');
  const h = await health();
  expect(h.error, '/health says why').to.match(/restored copy/);
  expect(h.registered).to.equal(false);
  expect(await hosted(cluster, restored), 'no replica of the copy reopened').to.deep.equal([]);
  return { restored, leader, dataDir, health };
}

/**
 * Every describe's cluster: started before its tests with TABLE in `regions` regions and `rows`
 * rows written (what was acknowledged in `acked`), the client handed to `use`; stopped after.
 */
function startLoaded(cluster: LocalCluster, acked: Map<string, Row>, load: { deadlineMs: number; regions: number; rows: number }, use: (client: RegionDbClient) => void): void {
  before(async () => {
    await cluster.start();
    const client = cluster.client({ deadlineMs: load.deadlineMs, attemptTimeoutMs: 1000 });
    use(client);
    await client.createTable(TABLE, COLUMNS, load.regions);
    await writeRows(client, acked, 0, load.rows);
  });
  after(async () => cluster.stop());
}

describe('integration: the metasrv on an empty catalog destroys nothing and reuses no table id (issue 14.2)', function () {
  this.timeout(180_000);
  const cluster = new LocalCluster({ metasrvToml: 'balance_leaders_interval_ms = 0' });
  let client: RegionDbClient;
  const acked = new Map<string, Row>();

  startLoaded(cluster, acked, { deadlineMs: 15_000, regions: 3, rows: 600 }, (c) => {
    client = c;
  });

  it('metasrv restarted on an empty data dir, every datanode restarted: no replica destroyed, unknown regions shown, no row lost', async () => {
    const { schema: lost } = await client.describe(TABLE);
    const before = await Promise.all([0, 1, 2].map((i) => hosted(cluster, i)));
    expect(before.every((h) => h.length === 3)).to.equal(true);
    const saved = join(cluster.dir, 'metasrv-catalog-copy');
    await cluster.stopMetasrv();
    cpSync(cluster.metasrv.dataDir, saved, { recursive: true });
    rmSync(cluster.metasrv.dataDir, { recursive: true, force: true });
    await cluster.startMetasrv();
    // Running datanodes are unknown to the new catalog: their heartbeats are refused NOT_FOUND
    // and they register again.
    await waitUntil('the running datanodes to register again', 30_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      return s.nodes.filter((n) => n.state === 'alive').length === 3 ? true : undefined;
    });
    for (const i of [0, 1, 2]) {
      await cluster.stopDatanode(i);
      await cluster.startDatanode(i);
    }
    // Each datanode re-registers and heartbeats a few times (reconciliation runs on each beat).
    await waitUntil('3 datanodes alive and ≥ 4 heartbeats each on the new metasrv', 30_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      return s.nodes.filter((n) => n.state === 'alive').length === 3 && (await metasrvHeartbeats(cluster)) >= 12 ? true : undefined;
    });
    const after = await Promise.all([0, 1, 2].map((i) => hosted(cluster, i)));
    expect(after, 'every datanode still hosts every replica it had').to.deep.equal(before);
    const status = (await client.listNodes()) as StatusView;
    const unknown = status.region_infos.filter((r) => (r.problems ?? []).some((p) => /not in the catalog/.test(p)));
    expect(unknown.map((r) => r.route.region_id).sort(), 'status names the regions the catalog does not know').to.deep.equal(
      [0, 1, 2].map((n) => makeRegionId(lost.tableId, n)).sort(),
    );

    // A table created now must not take the lost table's id (its regions exist on the datanodes
    // and in the object store).
    const fresh = await client.createTable(TABLE, COLUMNS, 3);
    expect(fresh.tableId, 'the re-created table gets a new id').to.be.greaterThan(lost.tableId);

    // The lost catalog comes back (from a copy): every acknowledged row is still there.
    await cluster.stopMetasrv();
    rmSync(cluster.metasrv.dataDir, { recursive: true, force: true });
    cpSync(saved, cluster.metasrv.dataDir, { recursive: true });
    await cluster.startMetasrv();
    const reader = cluster.client({ deadlineMs: 15_000, attemptTimeoutMs: 1000 });
    await waitUntil('reads through the restored catalog', 30_000, async () => ((await reader.scan(TABLE)).length > 0 ? true : undefined));
    await expectAllRows(reader, acked);
  });
});

describe('integration: a metasrv restarted on an older catalog adopts the raft groups instead of destroying them (issue 14.2)', function () {
  this.timeout(240_000);
  const cluster = new LocalCluster({ datanodes: 4, metasrvToml: 'replica_repair_after_ms = 3000\nbalance_leaders_interval_ms = 0' });
  let client: RegionDbClient;
  const acked = new Map<string, Row>();

  startLoaded(cluster, acked, { deadlineMs: 15_000, regions: 4, rows: 800 }, (c) => {
    client = c;
  });

  it('catalog copy from before a repair: the repaired replicas survive, the catalog follows the groups, no row lost', async () => {
    const old = join(cluster.dir, 'metasrv-old-catalog');
    await cluster.stopMetasrv();
    cpSync(cluster.metasrv.dataDir, old, { recursive: true });
    await cluster.startMetasrv();

    // Datanode1 dies; its replicas are repaired onto the other nodes with fresh peer ids.
    await cluster.stopDatanode(0, 'SIGKILL');
    await waitUntil('every region on 3 healthy replicas without datanode1', 90_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      const ok = s.region_infos.every((r) => r.health === 'healthy' && r.route.peers.length === 3 && !r.route.peers.some((p) => p.node_id === '1'));
      return ok && !s.procedures.some((p) => p.status === 'running') ? true : undefined;
    });
    await writeRows(client, acked, 10_000, 400);
    const before = await Promise.all([1, 2, 3].map((i) => hosted(cluster, i)));

    // The metasrv comes back on the catalog from before the repair.
    await cluster.stopMetasrv();
    rmSync(cluster.metasrv.dataDir, { recursive: true, force: true });
    cpSync(old, cluster.metasrv.dataDir, { recursive: true });
    await cluster.startMetasrv();
    await waitUntil('≥ 5 heartbeats from each live datanode on the restarted metasrv', 30_000, async () => ((await metasrvHeartbeats(cluster)) >= 15 ? true : undefined));
    const after = await Promise.all([1, 2, 3].map((i) => hosted(cluster, i)));
    expect(after, 'no live replica was destroyed').to.deep.equal(before);

    // The catalog now follows the groups: routes name exactly the voters the leaders report.
    await waitUntil('catalog routes equal to the raft membership of every region', 30_000, async () => {
      const s = (await client.listNodes()) as StatusView;
      const replicas = (await Promise.all([1, 2, 3].map((i) => replicasOf(cluster, i)))).flat();
      const ok = s.region_infos.every((r) => {
        const leader = replicas.find((x) => x.region_id === r.route.region_id && x.role === 'leader');
        const routed = r.route.peers.map((p) => p.peer_id).sort();
        return leader !== undefined && JSON.stringify(routed) === JSON.stringify([...leader.voters].sort());
      });
      return ok ? true : undefined;
    });
    // A new table takes peer ids above every one in use (the old catalog's allocator was behind).
    const peersInUse = new Set((await Promise.all([1, 2, 3].map((i) => replicasOf(cluster, i)))).flat().map((r) => r.peer_id));
    await client.createTable('after_restore', COLUMNS, 1);
    const s = (await client.listNodes()) as StatusView;
    const fresh = s.region_infos.find((r) => r.route.table === 'after_restore')!;
    for (const p of fresh.route.peers) expect(peersInUse.has(p.peer_id), `peer id ${p.peer_id} reused`).to.equal(false);
    await expectAllRows(client, acked);
    for (const i of [1, 2, 3]) await expectAllRows(client, acked, cluster.datanodeAddr(i));
  });
});

describe('integration: a datanode back on a wiped data dir is a new incarnation (issue 14.1)', function () {
  this.timeout(240_000);
  const cluster = new LocalCluster({ metasrvToml: 'balance_leaders_interval_ms = 0' });
  let client: RegionDbClient;
  const acked = new Map<string, Row>();

  startLoaded(cluster, acked, { deadlineMs: 20_000, regions: 1, rows: 300 }, (c) => {
    client = c;
  });

  it('follower wiped and restarted with the same node id, leader killed: no acknowledged write lost, status shows the replacement', async () => {
    const regionId = (await replicasOf(cluster, 0))[0]!.region_id;
    const roles = await Promise.all([0, 1, 2].map(async (i) => (await replicasOf(cluster, i))[0]!));
    const leader = roles.findIndex((r) => r.role === 'leader');
    const [wiped, lagging] = [0, 1, 2].filter((i) => i !== leader) as [number, number];
    const oldPeer = roles[wiped]!.peer_id;

    // The lagging follower misses what follows (it is down, so nothing can reach it later from
    // a socket buffer): those writes commit on the leader + the follower about to be wiped, so
    // after the wipe the leader holds the only copy.
    await cluster.stopDatanode(lagging, 'SIGKILL');
    await writeRows(client, acked, 1_000, 300);
    // The leader dies under a write load (single rows; each acknowledged one is recorded).
    const loader = cluster.client({ deadlineMs: 3000, attemptTimeoutMs: 1000 });
    let loading = true;
    let loaded = 0;
    const load = (async () => {
      for (let i = 5_000; loading; i++) {
        const r = row(i);
        try {
          await loader.write(TABLE, [r]);
          acked.set(keyOf(r), r);
          loaded++;
        } catch {
          // outcome unknown: not counted as acknowledged
        }
      }
    })();
    await waitUntil('the write load to get acknowledgements', 10_000, async () => (loaded >= 20 ? true : undefined));
    await cluster.stopDatanode(leader, 'SIGKILL');
    await cluster.stopDatanode(wiped, 'SIGKILL');
    loading = false;
    await load;
    rmSync(cluster.datanodes[wiped]!.dataDir, { recursive: true, force: true });
    expect(existsSync(cluster.datanodes[wiped]!.dataDir)).to.equal(false);
    await cluster.startDatanode(wiped);
    await cluster.startDatanode(lagging);
    // The wiped node and the lagging one must not elect a leader without the acknowledged rows.
    // Wait until either they did (the bug: the wiped node votes as its old peer with an empty
    // log) or the metasrv decided to replace the wiped replica (then it is not opened as a
    // voter, and the lagging node alone cannot win). Then bring the old leader back.
    const outcome = await waitUntil('a leader without the old one, or the wiped replica being replaced', 30_000, async () => {
      for (const i of [wiped, lagging]) {
        if ((await replicasOf(cluster, i)).some((r) => r.region_id === regionId && r.role === 'leader')) return `datanode${i + 1} elected leader`;
      }
      const s = (await client.listNodes()) as StatusView;
      return s.procedures.some((p) => p.kind === 'repair-replica' && p.description.includes(`peer ${oldPeer} `)) ? 'repair started' : undefined;
    });
    process.stdout.write(`      after the wipe: ${outcome}\n`);
    await cluster.startDatanode(leader);
    const reader = cluster.client({ deadlineMs: 30_000, attemptTimeoutMs: 1000 });
    await expectAllRows(reader, acked);

    // The wiped node's replica is replaced under a fresh peer id, and status says why.
    const s = await waitUntil('the repair of the wiped replica to finish', 90_000, async () => {
      const st = (await client.listNodes()) as StatusView;
      const repair = st.procedures.find((p) => p.kind === 'repair-replica' && p.description.includes(`peer ${oldPeer}`));
      return repair?.status === 'done' ? st : undefined;
    });
    const repair = s.procedures.find((p) => p.kind === 'repair-replica' && p.description.includes(`peer ${oldPeer}`))!;
    expect(repair.description, 'the procedure names the new incarnation').to.match(/new store/);
    const now = (await replicasOf(cluster, wiped)).find((r) => r.region_id === regionId);
    expect(now?.peer_id, 'the wiped node hosts the region under a new peer id').to.not.equal(undefined);
    expect(now!.peer_id).to.not.equal(oldPeer);
    await expectAllRows(reader, acked, cluster.datanodeAddr(wiped));
  });

  it('follower restarted on a restored copy of its data dir, leader killed: the copy is refused, nothing of it reopened, no acknowledged write lost', async () => {
    const { restored, leader, dataDir, health } = await followerCopyPutBack(cluster, client, acked, { catalogCopyToo: false, rowsFrom: 20_000 });
    const refusedNode = ((await client.listNodes()) as unknown as { nodes: { node_id: string; refused: string }[] }).nodes.find((n) => n.node_id === String(restored + 1));
    expect(refusedNode?.refused, '`regiondb status` names the refused node').to.match(/restored copy/);
    await cluster.startDatanode(leader);
    const reader = cluster.client({ deadlineMs: 30_000, attemptTimeoutMs: 1000 });
    await expectAllRows(reader, acked);
    expect(await hosted(cluster, restored), 'still nothing reopened from the copy').to.deep.equal([]);

    // The way out the refusal names: the dir moved aside, the node starts as a new store.
    await cluster.stopDatanode(restored, 'SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
    await cluster.startDatanode(restored);
    await waitUntil('the node on an empty dir to register', 30_000, async () => {
      const now = await health();
      return now.status === 'ok' && now.registered ? true : undefined;
    });
  });
});

// K2 (docs/failover.md, "A data dir restored from a copy"): the metasrv's catalog put back from a
// copy older than the datanode's copy cannot tell the copy (K1's limit; wide-mix engine seed 2405
// of the simulator lost state machine safety that way). The shared object store's record of the
// node's answered starts does: the copy refuses itself.
describe('integration: a data dir and the metasrv catalog both put back from copies (K2)', function () {
  this.timeout(240_000);
  const cluster = new LocalCluster({ metasrvToml: 'balance_leaders_interval_ms = 0' });
  let client: RegionDbClient;
  const acked = new Map<string, Row>();

  startLoaded(cluster, acked, { deadlineMs: 20_000, regions: 1, rows: 200 }, (c) => {
    client = c;
  });

  it('follower restarted on a copy of its data dir while the metasrv runs on an older catalog copy: the copy refuses itself, nothing of it reopened, no acknowledged write lost', async () => {
    const { restored, leader, health } = await followerCopyPutBack(cluster, client, acked, { catalogCopyToo: true, rowsFrom: 30_000 });
    expect((await health()).error, 'the witness refused it').to.match(/object store records start/);
    const refusedNode = ((await client.listNodes()) as unknown as { nodes: { node_id: string; refused: string }[] }).nodes.find((n) => n.node_id === String(restored + 1));
    expect(refusedNode?.refused, '`regiondb status` names the refusal').to.match(/refuses itself/);
    await cluster.startDatanode(leader);
    const reader = cluster.client({ deadlineMs: 30_000, attemptTimeoutMs: 1000 });
    await expectAllRows(reader, acked);
    expect(await hosted(cluster, restored), 'still nothing reopened from the copy').to.deep.equal([]);
  });
});
