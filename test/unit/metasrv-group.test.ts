// Metasrv high availability (issue 16, docs/metasrv-ha.md): three in-process metasrvs form a
// raft group over real gRPC on loopback, driven by fake datanodes (the test plays their
// registrations and heartbeats). Checked here:
//   - one member acts; the others answer NOT_LEADER naming the leader's address;
//   - the catalog (tables, placements, id allocators) is the group's: after the leader stops,
//     the next leader serves the same routes, and new ids continue above the old ones;
//   - a stopped member restarted on its data dir catches up from the group;
//   - the leader's epoch (its term) is carried by every answer to a datanode and grows with
//     each takeover (fencing, checked on the datanode side in datanode-replica-health.test.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { metasrvConfigSchema } from '../../src/common/config.js';
import { ErrorCode } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { newestCatalogBackup } from '../../src/metasrv/catalog-backup.js';
import { decodeCatalog } from '../../src/metasrv/catalog-store.js';
import { seedGroup } from '../../src/metasrv/meta-group.js';
import { Metasrv } from '../../src/metasrv/metasrv.js';
import { FsObjectStore } from '../../src/object-store/index.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { freePort, waitUntil } from '../support/local-cluster.js';

const CLUSTER = 'ha-cluster';
const UNREACHABLE = '127.0.0.1:1';

interface Route {
  region_id: string;
  peers: { peer_id: string; node_id: string }[];
}
interface GroupInfo {
  answered_by: string;
  term: string;
  leader_id: string;
  applied_index: string;
  members: { id: string; addr: string; role: string; match_index: string }[];
}

describe('metasrv group: three metasrvs on our own raft (issue 16)', function () {
  this.timeout(90_000);
  let dir: string;
  let addrs: string[];
  const members = new Map<number, Metasrv>();
  const clients = new Map<string, grpc.Client>();
  let pulse: NodeJS.Timeout | undefined;

  const config = (id: number, options: { join?: boolean; single?: boolean } = {}) =>
    metasrvConfigSchema.parse({
      cluster_id: CLUSTER,
      node: { data_dir: join(dir, `metasrv${id}`) },
      grpc: { port: Number(addrs[id - 1]!.split(':')[1]) },
      http: { port: 0 },
      balance_leaders_interval_ms: 0,
      failure_detector: { heartbeat_interval_ms: 100 },
      storage: { type: 'fs', root: join(dir, 'objects') },
      catalog_backup_interval_ms: 200,
      meta_group: {
        id,
        members: options.single ? { [String(id)]: addrs[id - 1]! } : Object.fromEntries(addrs.slice(0, Math.max(3, id)).map((a, i) => [String(i + 1), a])),
        tick_ms: 20,
        join: options.join ?? false,
      },
    });
  const startMember = async (id: number, options: { join?: boolean; single?: boolean } = {}) => {
    const m = new Metasrv(config(id, options), silentLogger, 3);
    await m.start();
    members.set(id, m);
  };
  const client = (addr: string) => {
    let c = clients.get(addr);
    if (!c) clients.set(addr, (c = makeClient('Meta', addr)));
    return c;
  };
  const listNodes = (addr: string) => call<{ meta_group: GroupInfo }>(client(addr), 'ListNodes', {}, 2000);

  /** The member that answers ListNodes (the acting leader), as seen from every running member. */
  const actingLeader = () =>
    waitUntil('one acting metasrv, the others pointing at it', 20_000, async () => {
      const running = [...members.keys()].map((id) => addrs[id - 1]!);
      let leader: { addr: string; info: GroupInfo } | undefined;
      const hints: (string | undefined)[] = [];
      for (const addr of running) {
        try {
          const res = await listNodes(addr);
          if (leader) return undefined; // two answered: not settled (or a bug; the test would time out)
          leader = { addr, info: res.meta_group };
        } catch (err) {
          const e = fromGrpcError(err);
          if (e.code !== ErrorCode.NotLeader) return undefined;
          hints.push(e.details['leaderAddr']);
        }
      }
      if (!leader || hints.some((h) => h !== leader!.addr)) return undefined;
      return leader;
    });

  const nodes = [1, 2, 3];
  const heartbeat = (addr: string, nodeId: number) =>
    call<{ instructions: unknown[]; metasrv_epoch: string }>(client(addr), 'Heartbeat', { cluster_id: CLUSTER, node_id: String(nodeId), addr: UNREACHABLE, replicas: [], store_id: `store-${nodeId}` }, 2000);
  /**
   * Every member is lost with its disk; member 5 (a fresh data dir) is seeded from the newest
   * catalog copy as a one-member group and started: returns it once it acts.
   */
  const loseAllAndSeed = async (store: FsObjectStore) => {
    for (const id of [...members.keys()]) {
      await members.get(id)!.stop();
      members.delete(id);
    }
    clearInterval(pulse);
    const copy = (await newestCatalogBackup(store, CLUSTER))!;
    await seedGroup(join(dir, 'metasrv5'), 5, addrs[4]!, copy.bytes, silentLogger);
    await startMember(5, { single: true });
    return actingLeader();
  };
  /** Registers the fake datanodes with the leader and sends one heartbeat each (so they count as alive); returns the registrations' epochs. */
  const registerAll = async (leaderAddr: string): Promise<number[]> => {
    const epochs: number[] = [];
    for (const n of nodes) {
      const reg = await call<{ metasrv_epoch: string }>(client(leaderAddr), 'RegisterNode', { cluster_id: CLUSTER, node_id: String(n), addr: UNREACHABLE, http_addr: UNREACHABLE, store_id: `store-${n}` }, 3000);
      epochs.push(Number(reg.metasrv_epoch));
      await heartbeat(leaderAddr, n);
    }
    return epochs;
  };
  /** Fake datanodes beating every 100 ms to whichever member `target()` names. */
  const beatTo = (target: () => string) => {
    clearInterval(pulse);
    pulse = setInterval(() => {
      for (const n of nodes) void heartbeat(target(), n).catch(() => {});
    }, 100);
  };
  const createTable = (addr: string, name: string) =>
    call<{ routes: Route[] }>(
      client(addr),
      'CreateTable',
      {
        name,
        columns: [
          { name: 'host', type: 'STRING', semantic: 'TAG' },
          { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
        ],
        region_count: 2,
      },
      20_000,
    );

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-metagroup-'));
    // The members must know each other's addresses up front; the launcher's freePort never hands a port out twice.
    addrs = [];
    for (let i = 0; i < 5; i++) addrs.push(`127.0.0.1:${await freePort()}`);
    for (const id of [1, 2, 3]) await startMember(id);
  });

  afterEach(async () => {
    clearInterval(pulse);
    for (const c of clients.values()) c.close();
    clients.clear();
    for (const m of members.values()) await m.stop();
    members.clear();
    rmSync(dir, { recursive: true, force: true });
  });

  it('one member acts, the others redirect to it; after the leader stops the next one serves the same catalog and continues its ids; a restarted member catches up', async () => {
    const first = await actingLeader();
    expect(first.info.members.map((m) => m.id).sort()).to.deep.equal(['1', '2', '3']);
    let leaderAddr = first.addr;
    for (const epoch of await registerAll(leaderAddr)) expect(epoch, 'registration carries the leader epoch').to.equal(Number(first.info.term));
    beatTo(() => leaderAddr);
    const t1 = await createTable(leaderAddr, 't1');
    const t1Routes = await call<{ routes: Route[] }>(client(leaderAddr), 'GetRoutes', { table: 't1' }, 2000);
    expect(t1Routes.routes).to.deep.equal(t1.routes);

    // The leader goes away; another takes over from the replicated catalog.
    const oldId = Number(first.info.answered_by);
    await members.get(oldId)!.stop();
    members.delete(oldId);
    const second = await actingLeader();
    expect(second.addr).to.not.equal(first.addr);
    expect(Number(second.info.term), 'a takeover raises the epoch').to.be.greaterThan(Number(first.info.term));
    leaderAddr = second.addr;
    beatTo(() => leaderAddr);
    const again = await call<{ routes: Route[] }>(client(leaderAddr), 'GetRoutes', { table: 't1' }, 2000);
    expect(again.routes.map((r) => ({ region_id: r.region_id, peers: r.peers })), 'the same placements under the new leader').to.deep.equal(
      t1.routes.map((r) => ({ region_id: r.region_id, peers: r.peers })),
    );
    // Every node heard by the new leader before it places a table: it judges liveness only from
    // heartbeats since its takeover, and the 100 ms pulse may not have reached it for every node
    // yet on a loaded machine (seen in CI: "need 3 healthy datanodes for placement, only 1").
    const beats = await waitUntil('a heartbeat of every node answered by the new leader', 5000, async () => Promise.all(nodes.map((n) => heartbeat(leaderAddr, n))).catch(() => undefined));
    for (const beat of beats) expect(Number(beat.metasrv_epoch)).to.equal(Number(second.info.term));

    const t2 = await createTable(leaderAddr, 't2');
    const tableOf = (regionId: string) => Number(BigInt(regionId) >> 32n);
    expect(tableOf(t2.routes[0]!.region_id), 'table ids continue above the old leader').to.be.greaterThan(tableOf(t1.routes[0]!.region_id));
    const oldPeers = t1.routes.flatMap((r) => r.peers.map((p) => Number(p.peer_id)));
    const newPeers = t2.routes.flatMap((r) => r.peers.map((p) => Number(p.peer_id)));
    expect(Math.min(...newPeers), 'peer ids are never reused').to.be.greaterThan(Math.max(...oldPeers));

    // The old leader comes back on its data dir: a follower that catches up with the group.
    await startMember(oldId);
    const caughtUp = await waitUntil(`member ${oldId} replicating the latest catalog`, 15_000, async () => {
      const info = (await listNodes(leaderAddr)).meta_group;
      const m = info.members.find((x) => Number(x.id) === oldId);
      return m && Number(m.match_index) >= Number(info.applied_index) ? info : undefined;
    });
    expect(caughtUp.leader_id).to.equal(second.info.leader_id);
    // (Its channel from this test may still be backing off from when it was down: retried.)
    const redirected = await waitUntil('an answer from the restarted member', 10_000, async () => {
      try {
        await listNodes(addrs[oldId - 1]!);
        return 'answered as leader';
      } catch (err) {
        const e = fromGrpcError(err);
        return e.code === ErrorCode.NotLeader ? (e.details['leaderAddr'] ?? 'no hint') : undefined;
      }
    });
    expect(redirected, 'the restarted member redirects to the leader').to.equal(leaderAddr);
  });

  it('membership: a fourth metasrv joins (learner, caught up, voter), a member is removed, and the group goes on without its first leader', async () => {
    const first = await actingLeader();
    let leaderAddr = first.addr;
    await registerAll(leaderAddr);
    beatTo(() => leaderAddr);
    await createTable(leaderAddr, 't1');
    // More catalog writes than a snapshot interval (64 entries): the log is compacted, so the new
    // member gets the catalog as a raft snapshot, not by replaying the log.
    for (let i = 0; i < 70; i++) {
      await call(client(leaderAddr), 'RegisterNode', { cluster_id: CLUSTER, node_id: '1', addr: UNREACHABLE, http_addr: UNREACHABLE, store_id: 'store-1' }, 3000);
    }
    await startMember(4, { join: true });
    const added = await call<{ group: GroupInfo }>(client(leaderAddr), 'AddMetaMember', { id: '4', addr: addrs[3] }, 40_000);
    expect(added.group.members.map((m) => [m.id, m.role === 'learner' ? 'learner' : 'voter']).sort()).to.deep.equal([
      ['1', 'voter'],
      ['2', 'voter'],
      ['3', 'voter'],
      ['4', 'voter'],
    ]);
    const fourth = (members.get(4) as unknown as { group: { appliedCatalog(): Uint8Array | null } }).group;
    const itsCatalog = await waitUntil('member 4 holding the catalog', 10_000, async () => fourth.appliedCatalog() ?? undefined);
    expect(Object.keys(decodeCatalog(itsCatalog, 'member 4').tables), 'the new member has the catalog (from a snapshot)').to.deep.equal(['t1']);
    // Remove one member that is not the leader, then stop the leader: 4 and the other one
    // (two of the three voters left) elect and serve the catalog, member 4 included.
    const leaderId = Number(first.info.answered_by);
    const removed = [1, 2, 3].find((id) => id !== leaderId)!;
    const after = await call<{ group: GroupInfo }>(client(leaderAddr), 'RemoveMetaMember', { id: String(removed) }, 10_000);
    expect(after.group.members.map((m) => Number(m.id)).sort()).to.deep.equal([1, 2, 3, 4].filter((id) => id !== removed));
    await members.get(removed)!.stop();
    members.delete(removed);
    await members.get(leaderId)!.stop();
    members.delete(leaderId);
    const next = await actingLeader();
    leaderAddr = next.addr;
    beatTo(() => leaderAddr);
    const routes = await call<{ routes: Route[] }>(client(leaderAddr), 'GetRoutes', { table: 't1' }, 2000);
    expect(routes.routes.length).to.equal(2);
  });

  it('losing a majority: a new one-member group seeded from the newest catalog copy in the object store serves the catalog', async () => {
    const first = await actingLeader();
    const leaderAddr = first.addr;
    await registerAll(leaderAddr);
    beatTo(() => leaderAddr);
    const t1 = await createTable(leaderAddr, 't1');
    const store = new FsObjectStore(join(dir, 'objects'));
    await waitUntil('a catalog copy naming t1', 10_000, async () => {
      const copy = await newestCatalogBackup(store, CLUSTER);
      return copy?.catalog.tables['t1'] ? copy : undefined;
    });
    const seeded = await loseAllAndSeed(store);
    expect(seeded.addr).to.equal(addrs[4]);
    const routes = await call<{ routes: Route[] }>(client(seeded.addr), 'GetRoutes', { table: 't1' }, 2000);
    expect(routes.routes.map((r) => r.region_id)).to.deep.equal(t1.routes.map((r) => r.region_id));
  });

  it('CreateTable with a request token is safe to send again: the retry is answered with the table it created; another token gets ALREADY_EXISTS', async () => {
    const { addr } = await actingLeader();
    await registerAll(addr);
    beatTo(() => addr);
    const request = (token: string) => ({
      name: 'tok',
      columns: [
        { name: 'host', type: 'STRING', semantic: 'TAG' },
        { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
      ],
      region_count: 2,
      request_token: token,
    });
    const first = await call<{ routes: Route[] }>(client(addr), 'CreateTable', request('token-1'), 20_000);
    const again = await call<{ routes: Route[] }>(client(addr), 'CreateTable', request('token-1'), 20_000);
    expect(again.routes.map((r) => r.region_id)).to.deep.equal(first.routes.map((r) => r.region_id));
    const other = await call(client(addr), 'CreateTable', request('token-2'), 20_000).then(
      () => undefined,
      (e: unknown) => fromGrpcError(e).code,
    );
    expect(other).to.equal(ErrorCode.AlreadyExists);
    const untokened = await call(client(addr), 'CreateTable', request(''), 20_000).then(
      () => undefined,
      (e: unknown) => fromGrpcError(e).code,
    );
    expect(untokened).to.equal(ErrorCode.AlreadyExists);
  });

  it('losing a majority after a takeover: the seeded group acts at an epoch above every epoch the lost group used, so running datanodes obey it', async () => {
    // Datanodes keep the highest epoch they saw and ignore instructions below it (fencing); a
    // seeded group must not start below an epoch the lost group handed out.
    const first = await actingLeader();
    let leaderAddr = first.addr;
    await registerAll(leaderAddr);
    beatTo(() => leaderAddr);
    await createTable(leaderAddr, 't1');
    const oldId = Number(first.info.answered_by);
    await members.get(oldId)!.stop();
    members.delete(oldId);
    const second = await actingLeader();
    leaderAddr = second.addr;
    beatTo(() => leaderAddr);
    // Every node heard by the second leader before its DDL: placement counts only nodes it heard
    // from (it waits for them at most its quiet period, 3 beats; the fake datanodes' 100 ms pulse
    // can lag that on a loaded machine, and the DDL was then refused UNAVAILABLE, "only 1 available").
    const seen = await waitUntil('a heartbeat of every node answered by the second leader', 5000, async () =>
      Promise.all(nodes.map((n) => heartbeat(leaderAddr, n))).then((answers) => answers[0], () => undefined),
    );
    await createTable(leaderAddr, 't2');
    const store = new FsObjectStore(join(dir, 'objects'));
    await waitUntil('a catalog copy naming t2', 10_000, async () => ((await newestCatalogBackup(store, CLUSTER))?.catalog.tables['t2'] ? true : undefined));
    const seeded = await loseAllAndSeed(store);
    const beat = await waitUntil('a heartbeat answered by the seeded group', 5000, async () => heartbeat(seeded.addr, 1).catch(() => undefined));
    expect(Number(beat.metasrv_epoch), `seeded epoch vs the epoch the datanodes saw (${seen.metasrv_epoch})`).to.be.greaterThan(Number(seen.metasrv_epoch));
  });

  it('with a majority down the remaining member does not act: DDL and heartbeats are refused, never answered from a stale catalog', async () => {
    const first = await actingLeader();
    const others = [1, 2, 3].filter((id) => String(id) !== first.info.answered_by);
    const survivor = Number(first.info.answered_by);
    for (const id of others) {
      await members.get(id)!.stop();
      members.delete(id);
    }
    // The lone leader steps down (check-quorum) and stops acting.
    const code = await waitUntil('the lone member to stop acting', 10_000, async () => {
      try {
        await listNodes(addrs[survivor - 1]!);
        return undefined;
      } catch (err) {
        return fromGrpcError(err).code;
      }
    });
    expect(code).to.equal(ErrorCode.NotLeader);
    const err = await createTable(addrs[survivor - 1]!, 'nope').then(
      () => undefined,
      (e: unknown) => fromGrpcError(e),
    );
    expect(err?.code).to.equal(ErrorCode.NotLeader);
  });
});
