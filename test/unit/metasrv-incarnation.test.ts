// The metasrv's side of store identity and replica health (issue 14 items 1 and 5), against an
// in-process metasrv driven over gRPC by fake datanodes (no raft: the test plays the reports).
//   - a known node id registering with a new store created on an empty data dir is a new
//     incarnation: its old replicas are never reopened under their old peer ids; each is
//     replaced by repair-replica under a fresh peer id (here on the same node: no other is free);
//   - a store id adopted for a data dir from before store ids is the same incarnation;
//   - a replica reported `health: failed` is repaired although its node is alive.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { metasrvConfigSchema } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { makeRegionId } from '../../src/metasrv/catalog.js';
import { Metasrv } from '../../src/metasrv/metasrv.js';
import { FsObjectStore } from '../../src/object-store/index.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { waitUntil } from '../support/local-cluster.js';

const CLUSTER = 'inc-cluster';
const UNREACHABLE = '127.0.0.1:1';

interface OpenRegion {
  region_id: string;
  self_peer_id: string;
}
interface Instruction {
  open_region?: OpenRegion;
  close_region?: { region_id: string; destroy: boolean };
  change_peer?: { change: string; peer: { peer_id: string } };
}
interface Status {
  procedures: { kind: string; status: string; step: string; description: string }[];
  region_infos: { route: { region_id: string; peers: { peer_id: string; node_id: string }[] }; problems: string[] }[];
}

describe('metasrv: new store incarnations and failed replicas (issue 14.1)', function () {
  this.timeout(60_000);
  let dir: string;
  let metasrv: Metasrv;
  let meta: grpc.Client;
  let regionId: string;
  /** node → its peer of the region, as the fake datanodes report it. */
  const hosted = new Map<number, number>();
  const health = new Map<number, string>();

  const register = (nodeId: number, storeId: string, addr = UNREACHABLE) =>
    call<{ regions: OpenRegion[] }>(meta, 'RegisterNode', { cluster_id: CLUSTER, node_id: String(nodeId), addr, http_addr: addr, store_id: storeId }, 3000);

  /** One heartbeat of a fake datanode: its hosted replica (node 2 leads). */
  const heartbeatRequest = (nodeId: number, storeId: string) => {
    const peerId = hosted.get(nodeId);
    const voters = [...hosted.values()].map(String);
    const replicas =
      peerId === undefined || !regionId
        ? []
        : [
            {
              region_id: regionId,
              peer_id: String(peerId),
              role: nodeId === 2 ? 'leader' : 'follower',
              term: '2',
              leader_node_id: '2',
              applied_index: '10',
              commit_index: '10',
              flushed_index: '0',
              voters,
              learners: [],
              health: health.get(nodeId) ?? 'ok',
              failure: health.get(nodeId) === 'failed' ? 'corrupt WAL record at index 7' : '',
              conf_index: '3',
            },
          ];
    return { cluster_id: CLUSTER, node_id: String(nodeId), addr: UNREACHABLE, replicas, store_id: storeId };
  };
  const heartbeat = (nodeId: number, storeId: string) => call<{ instructions: Instruction[] }>(meta, 'Heartbeat', heartbeatRequest(nodeId, storeId), 3000);

  const status = () => call<Status>(meta, 'ListNodes', {}, 3000);
  /** The fake datanodes beating from this process every 100 ms, until the interval is cleared. */
  const pulseLocally = () =>
    setInterval(() => {
      for (const n of [1, 2, 3]) void heartbeat(n, `store-${n}`).catch(() => {});
    }, 100);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-incarnation-'));
    metasrv = new Metasrv(
      metasrvConfigSchema.parse({ cluster_id: CLUSTER, node: { data_dir: join(dir, 'metasrv') }, grpc: { port: 0 }, http: { port: 0 }, balance_leaders_interval_ms: 0, failure_detector: { heartbeat_interval_ms: 100 } }),
      silentLogger,
      3,
    );
    await metasrv.start();
    meta = makeClient('Meta', `127.0.0.1:${metasrv.grpcPort}`);
    hosted.clear();
    health.clear();
    regionId = '';
    for (const n of [1, 2, 3]) {
      await register(n, `store-${n}`);
      await heartbeat(n, `store-${n}`);
    }
    // The fake datanodes keep beating while the metasrv finishes its startup quiet period.
    const pulse = pulseLocally();
    let created: { routes: { region_id: string; peers: { peer_id: string; node_id: string }[] }[] };
    try {
      created = await call(meta, 'CreateTable', {
        name: 't',
        columns: [
          { name: 'host', type: 'STRING', semantic: 'TAG' },
          { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
        ],
        region_count: 1,
      }, 20_000);
    } finally {
      clearInterval(pulse);
    }
    regionId = created.routes[0]!.region_id;
    for (const p of created.routes[0]!.peers) hosted.set(Number(p.node_id), Number(p.peer_id));
    for (const n of [1, 2, 3]) await heartbeat(n, `store-${n}`);
  });

  afterEach(async () => {
    meta.close();
    await metasrv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a node back on an empty data dir (new store id) is never told to open its old peer; its replica is replaced under a fresh peer id', async () => {
    const oldPeer = hosted.get(1)!;
    hosted.delete(1); // wiped: hosts nothing
    const reg = await register(1, 'fresh-store-after-wipe');
    const opened = reg.regions.map((r) => r.self_peer_id);
    expect(opened, 'registration does not reopen the old peer').to.not.include(String(oldPeer));
    const repair = await waitUntil('a repair of the wiped replica that opens a fresh peer on node 1', 20_000, async () => {
      for (const n of [1, 2, 3]) {
        const res = await heartbeat(n, n === 1 ? 'fresh-store-after-wipe' : `store-${n}`);
        if (n === 1) for (const i of res.instructions) if (i.open_region) opened.push(i.open_region.self_peer_id);
      }
      const s = await status();
      const p = s.procedures.find((x) => x.kind === 'repair-replica');
      return p && opened.length > 0 ? p : undefined;
    });
    expect(opened, 'the old peer id is never reopened').to.not.include(String(oldPeer));
    expect(Number(opened[0])).to.be.greaterThan(3);
    expect(repair.description).to.match(new RegExp(`replace peer ${oldPeer} \\(node 1\\).*new store fresh-store-after-wipe`));
    const info = (await status()).region_infos.find((r) => r.route.region_id === regionId)!;
    expect(info.problems.join('\n')).to.match(/lost: new store/);
  });

  it('a second process with a live node\'s id (another store, another address) is refused; nothing of the live node is marked lost; once the live one is silent, it is accepted', async () => {
    const impostor = '127.0.0.2:1';
    const refused = await register(2, 'impostor-store', impostor).then(
      () => 'registered',
      (err: { details?: string; code?: number }) => String(err.details),
    );
    expect(refused).to.match(/node id 2 belongs to a live datanode at 127\.0\.0\.1:1 \(store store-2\).*refused/);
    for (const n of [1, 2, 3]) await heartbeat(n, `store-${n}`);
    const s = await status();
    expect(s.region_infos.find((r) => r.route.region_id === regionId)!.problems, 'no replica of node 2 marked lost').to.deep.equal([]);
    expect(s.procedures.map((p) => p.kind), 'no repair started').to.deep.equal([]);
    const nodes = (await call<{ nodes: { node_id: string; addr: string }[] }>(meta, 'ListNodes', {}, 3000)).nodes;
    expect(nodes.find((n) => n.node_id === '2')?.addr, 'node 2 still at its own address').to.equal(UNREACHABLE);
    // The real node 2 goes silent (its host is being replaced): the same registration is accepted.
    const others = setInterval(() => {
      for (const n of [1, 3]) void heartbeat(n, `store-${n}`).catch(() => {});
    }, 100);
    try {
      await waitUntil('the new host accepted as node 2 once the old one is silent', 15_000, () => register(2, 'impostor-store', impostor).then(() => true));
    } finally {
      clearInterval(others);
    }
  });

  it('a wall-clock step on the metasrv host does not age a down node: no repair before it was down replica_repair_after_ms', async () => {
    const realNow = Date.now;
    await register(4, 'store-4'); // somewhere a repair could place node 3's replica
    const pulse = setInterval(() => {
      for (const n of [1, 2, 4]) void heartbeat(n, `store-${n}`).catch(() => {});
    }, 100);
    try {
      await waitUntil('node 3 suspected', 10_000, async () => {
        const nodes = (await call<{ nodes: { node_id: string; state: string }[] }>(meta, 'ListNodes', {}, 3000)).nodes;
        return nodes.find((n) => n.node_id === '3')?.state === 'suspect' ? true : undefined;
      });
      await new Promise((r) => setTimeout(r, 500)); // a few ticks: its down time is being counted
      Date.now = () => realNow() + 3_600_000; // NTP steps the host's clock an hour ahead
      await new Promise((r) => setTimeout(r, 1500));
      const kinds = (await status()).procedures.map((p) => `${p.kind}: ${p.description}`);
      expect(kinds.filter((k) => k.startsWith('repair-replica')), 'node 3 has been down ~2 s, not an hour').to.deep.equal([]);
    } finally {
      Date.now = realNow;
      clearInterval(pulse);
    }
  });

  it('a store id adopted for a data dir from before store ids is the same incarnation', async () => {
    const reg = await register(3, 'adopted-0b1c');
    expect(reg.regions.map((r) => r.self_peer_id)).to.deep.equal([String(hosted.get(3))]);
    const res = await heartbeat(3, 'adopted-0b1c');
    expect(res.instructions.filter((i) => i.close_region), 'nothing of it is deleted').to.deep.equal([]);
    const info = (await status()).region_infos.find((r) => r.route.region_id === regionId)!;
    expect(info.problems, 'no replica marked lost').to.deep.equal([]);
  });

  it("a metasrv whose own event loop stalls does not take the live nodes for dead (the timer runs before the queued heartbeats are read)", async () => {
    // The nodes keep beating from another process while this one (the metasrv's) is blocked.
    const requests = [1, 2, 3].map((n) => heartbeatRequest(n, `store-${n}`));
    const pulse = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../support/heartbeat-pulse.ts'), JSON.stringify({ addr: `127.0.0.1:${metasrv.grpcPort}`, intervalMs: 100, requests })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    // Until the other process beats, this one does (starting it takes a while).
    const local = pulseLocally();
    try {
      await new Promise<void>((resolve, reject) => {
        pulse.stdout!.on('data', (d: Buffer) => d.toString().includes('beating') && resolve());
        pulse.on('exit', (code) => reject(new Error(`heartbeat pulse exited (${code})`)));
      }).finally(() => clearInterval(local));
      await new Promise((r) => setTimeout(r, 1000)); // a steady rhythm first
      expect((await status()).procedures.map((p) => p.kind), 'no failover before the stall').to.deep.equal([]);
      // Block this process (a GC pause, a starved CPU) from inside a timer callback, as such a
      // stall would: the metasrv's tick timer is due in the same timers phase, before any I/O.
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          const until = performance.now() + 3000;
          while (performance.now() < until) {
            // busy: nothing else in this process runs
          }
          resolve();
        }, 10),
      );
      await new Promise((r) => setTimeout(r, 1500));
      const s = await status();
      expect(s.procedures.map((p) => `${p.kind}: ${p.description}`), 'no live node taken for failed').to.deep.equal([]);
      const nodes = (await call<{ nodes: { node_id: string; state: string }[] }>(meta, 'ListNodes', {}, 3000)).nodes;
      expect(nodes.map((n) => `${n.node_id}:${n.state}`)).to.deep.equal(['1:alive', '2:alive', '3:alive']);
    } finally {
      pulse.stdin!.end();
      if (pulse.exitCode === null) await new Promise((r) => pulse.once('exit', r));
    }
  });

  it("a procedure step's instruction reaches its datanode only after the save that records the step (an effect never precedes its record)", async () => {
    // The catalog store stops completing writes (a slow disk, or a metasrv group without quorum).
    const store = (metasrv as unknown as { store: { save(state: unknown): Promise<void> } }).store;
    const save = store.save.bind(store);
    const held: (() => void)[] = [];
    store.save = (state) => new Promise<void>((resolve) => held.push(() => void save(state).then(resolve)));
    try {
      // StartProcedure saves its record (held too): start it without waiting for the answer.
      const started = call(meta, 'StartProcedure', { kind: 'transfer-leader', region_id: regionId, node_id: '1' }, 10_000).catch(() => undefined);
      await waitUntil('the procedure record write to be held', 5000, async () => (held.length > 0 ? true : undefined));
      held.shift()!(); // the record is durable: the procedure may now run its step
      await started;
      await waitUntil('the step to run (its save held)', 5000, async () => (held.length > 0 ? true : undefined));
      const during: Instruction[] = [];
      for (let i = 0; i < 3; i++) {
        during.push(...(await heartbeat(2, 'store-2')).instructions);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(during.filter((i) => (i as { transfer_leader?: unknown }).transfer_leader), 'no transfer before its step is saved').to.deep.equal([]);
      for (const release of held.splice(0)) release();
      const after = await waitUntil('the transfer instruction once the step is saved', 5000, async () => {
        const res = await heartbeat(2, 'store-2');
        return res.instructions.find((i) => (i as { transfer_leader?: unknown }).transfer_leader);
      });
      expect(after).to.not.equal(undefined);
    } finally {
      store.save = save;
      for (const release of held.splice(0)) release();
    }
  });

  it('a replica reported failed is repaired although its node is alive', async () => {
    health.set(3, 'failed');
    const repair = await waitUntil('a repair-replica for the failed replica', 10_000, async () => {
      for (const n of [1, 2, 3]) await heartbeat(n, `store-${n}`);
      return (await status()).procedures.find((p) => p.kind === 'repair-replica');
    });
    expect(repair.description).to.match(new RegExp(`replace peer ${hosted.get(3)} \\(node 3\\).*replica failed: corrupt WAL record at index 7`));
  });
  it('an instruction queued for a node before it registered again is not delivered to the new process (finding M11: a stale close deleted the replacement replica)', async () => {
    health.set(3, 'failed');
    for (const n of [1, 2, 3]) await heartbeat(n, `store-${n}`);
    // Node 3 beats no more (it restarts) while the repair of its failed replica reaches
    // clear-old, which queues a close_region (destroy) of the region for node 3.
    await waitUntil('clear-old to queue its close for node 3', 10_000, async () => {
      for (const n of [1, 2]) await heartbeat(n, `store-${n}`);
      const repair = (await status()).procedures.find((p) => p.kind === 'repair-replica') as { notes?: string[] } | undefined;
      return repair?.notes?.some((n) => n.startsWith('deleting the lost peer')) ? true : undefined;
    });
    // The new process registers: it is told to open the replacement peer, and opens it.
    const opens = (await register(3, 'store-3')).regions.filter((r) => r.region_id === regionId);
    expect(opens.map((o) => o.self_peer_id), 'the replacement peer, not the failed one').to.have.length(1).and.not.include(String(hosted.get(3)));
    hosted.set(3, Number(opens[0]!.self_peer_id));
    health.delete(3);
    const instructions = (await heartbeat(3, 'store-3')).instructions;
    expect(instructions.filter((i) => i.close_region?.region_id === regionId), 'no close of the region that now holds the replacement').to.deep.equal([]);
  });
});

describe('metasrv: table ids after a catalog loss (issue 14.2)', function () {
  this.timeout(30_000);
  let dir: string;
  let metasrv: Metasrv | undefined;

  afterEach(async () => {
    await metasrv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an empty catalog allocates table ids above every table with objects in the object store', async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-table-ids-'));
    const objects = new FsObjectStore(join(dir, 'objects'));
    // A lost table 5000 left a manifest (and table 4000 an SST) behind.
    await objects.put(`regions/${makeRegionId(5000, 2)}/manifest/0000000000000010.manifest`, new Uint8Array([1]));
    await objects.put(`regions/${makeRegionId(4000, 0)}/sst/0000000000000001-1-a.sst`, new Uint8Array([1]));
    metasrv = new Metasrv(
      metasrvConfigSchema.parse({
        cluster_id: CLUSTER,
        node: { data_dir: join(dir, 'metasrv') },
        grpc: { port: 0 },
        http: { port: 0 },
        storage: { type: 'fs', root: join(dir, 'objects') },
      }),
      silentLogger,
      1,
    );
    await metasrv.start();
    expect(metasrv.catalog.nextTableId).to.equal(5001);
  });
});
