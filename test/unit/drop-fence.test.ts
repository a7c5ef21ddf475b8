// The drop fence (docs/ddl.md, "The drop fence"; finding DT1 in docs/correctness.md): DropTable
// commits a fence through every region's raft group before it answers, and from the fence on
// every replica refuses the region's writes alike. Here: the state machine's side (apply, dedup,
// manifests) and the metasrv's (no OK before every region is fenced; a table being dropped stays
// in place and is resumed).
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { RegionState, type TableSchema, decodeCommand, encodeCommand } from '../../src/engine/index.js';
import { decodeManifest, encodeManifest } from '../../src/engine/manifest.js';
import { type DatanodeAdmin, MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { MetaGroup } from '../../src/metasrv/meta-group.js';
import { RegionDbError } from '../../src/common/errors.js';
import { cpuSchema } from '../fixtures/schemas.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatanodeCore } from '../../src/datanode/datanode-core.js';
import { ManualClock, type TimedClock, systemClock, systemScheduler } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { MemoryLogEngine } from '../fixtures/memory-log-engine.js';
import type { StateMachine } from '../../src/raft/index.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import { type ProtoValue, toProtoRow, toProtoSchema } from '../../src/rpc/values.js';
import { MemoryCatalog, createOneRegionTable, replicaReport, startMetasrvCore, testMetasrvConfig } from '../fixtures/metasrv-core.js';
import { decodeCatalog, encodeCatalog } from '../../src/metasrv/catalog-store.js';
import { type CatalogState, DROP_TOKENS_MAX, dropTokenOf, emptyCatalog, ownMap, rememberDropToken } from '../../src/metasrv/catalog.js';
import { type DroppingTableView, renderDroppingTables } from '../../src/cmd/render.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });
const put = (requestId: number, key: string, v: number, clientId = 'c1') => encodeCommand({ kind: 'write', clientId, requestId, rows: [[key, 1, v]] });
const fence = (tableId = 7) => encodeCommand({ kind: 'drop-fence', tableId });

async function readV(s: RegionState, key: string): Promise<unknown> {
  const found = await s.get({ k: key, ts: 1 });
  return found ? found.row['v'] : null;
}

describe('drop fence: the region state', () => {
  it('encodes as its own command kind (11) and decodes back', () => {
    const bytes = fence(42);
    expect(bytes[1]).to.equal(11);
    expect(decodeCommand(bytes)).to.deep.equal({ kind: 'drop-fence', tableId: 42 });
    const damaged = new TextEncoder().encode('{"tableId":"x"}');
    const bad = new Uint8Array(2 + damaged.byteLength);
    bad.set([1, 11]);
    bad.set(damaged, 2);
    expect(() => decodeCommand(bad)).to.throw(/drop fence without tableId/);
  });

  it('refuses every write and delete after the fence (not applied), keeps what came before', async () => {
    const s = new RegionState(schema);
    expect(await s.apply(1, put(1, 'a', 1))).to.include({ status: 'ok' });
    expect(await s.apply(2, fence())).to.include({ status: 'ok' });
    expect(s.dropFence).to.deep.equal({ index: 2, tableId: 7 });
    expect(await s.apply(3, put(2, 'b', 2))).to.deep.equal({ status: 'table-dropped', tableId: 7, fenceIndex: 2 });
    expect(await s.apply(4, encodeCommand({ kind: 'write', clientId: '', requestId: 0, rows: [['c', 1, 3]] })), 'not deduplicated: refused too').to.deep.equal({
      status: 'table-dropped',
      tableId: 7,
      fenceIndex: 2,
    });
    expect(await s.apply(5, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: 3, keys: [['a', 1]] }))).to.include({ status: 'table-dropped' });
    expect(await readV(s, 'a'), 'the write before the fence stays, the delete after it did not apply').to.equal(1);
    expect(await readV(s, 'b')).to.equal(null);
    expect(await readV(s, 'c')).to.equal(null);
    // A refusal is not remembered: the same id after the fence is refused again, never "applied".
    expect(await s.apply(6, put(2, 'b', 2))).to.include({ status: 'table-dropped' });
  });

  it('answers a retry of a write applied before the fence with its first result (it did apply)', async () => {
    const s = new RegionState(schema);
    const first = await s.apply(1, put(1, 'a', 1));
    await s.apply(2, fence());
    expect(await s.apply(3, put(1, 'a', 1))).to.deep.equal(first);
  });

  it('a retry whose dedup record was evicted is answered request-too-old after the fence, not "not applied" (its outcome is unknown)', async () => {
    const bounds = { dedupClientsMax: 2, dedupRequestsPerClientMax: 2 };
    for (const kind of ['client window', 'evicted client'] as const) {
      const s = new RegionState(schema, 'r1', undefined, undefined, bounds);
      expect(await s.apply(1, put(1001, 'a', 1))).to.include({ status: 'ok' });
      if (kind === 'client window') {
        await s.apply(2, put(1002, 'a', 2));
        await s.apply(3, put(1003, 'a', 3)); // 1001 leaves c1's window
      } else {
        await s.apply(2, put(2001, 'x', 1, 'c2'));
        await s.apply(3, put(3001, 'y', 1, 'c3')); // third client: c1 is evicted
      }
      await s.apply(4, fence());
      // 1001 did apply (at index 1); the region no longer knows that, so "not applied" would be false.
      expect(await s.apply(5, put(1001, 'a', 1)), kind).to.have.property('status', 'request-too-old');
      expect(await s.apply(6, put(4001, 'b', 1)), `${kind}: a new request is refused by the fence`).to.include({ status: 'table-dropped' });
    }
  });

  it('a second fence (another leader resending) changes nothing', async () => {
    const s = new RegionState(schema);
    await s.apply(1, fence());
    await s.apply(2, fence());
    expect(s.dropFence).to.deep.equal({ index: 1, tableId: 7 });
  });

  it('is in the manifest once flushed past, as a format-2 manifest, and a state built from it refuses writes', async () => {
    const s = new RegionState(schema);
    await s.apply(1, put(1, 'a', 1));
    await s.apply(2, fence());
    expect(s.manifest().dropFence, 'not flushed past yet: the log above the flushed index re-applies it').to.equal(undefined);
    await s.apply(3, encodeCommand({ kind: 'freeze' }));
    await s.apply(4, encodeCommand({ kind: 'flush-edit', freezeIndex: 3, sst: null }));
    const m = s.manifest();
    expect(m.dropFence).to.deep.equal({ index: 2, tableId: 7 });
    const bytes = encodeManifest(m);
    expect(bytes[0], 'a build that predates the fence refuses a format-2 manifest').to.equal(2);
    const back = RegionState.fromManifest(schema, 'r', undefined, decodeManifest(bytes, 'test'));
    expect(back.dropFence).to.deep.equal({ index: 2, tableId: 7 });
    expect(await back.apply(5, put(9, 'z', 9))).to.include({ status: 'table-dropped' });
    const unfenced = encodeManifest(new RegionState(schema).manifest());
    expect(unfenced[0], 'a region never fenced writes format 1, as before').to.equal(1);
  });

  it('refuses a format-1 manifest that carries a fence and a format-2 one without', () => {
    const s = new RegionState(schema);
    const withFence = encodeManifest({ ...s.manifest(), dropFence: { index: 1, tableId: 7 } });
    const relabelled = new Uint8Array(withFence);
    relabelled[0] = 1;
    expect(() => decodeManifest(relabelled, 'test')).to.throw(/drop fence in a version-1 manifest/);
    const plain = new Uint8Array(encodeManifest(s.manifest()));
    plain[0] = 2;
    expect(() => decodeManifest(plain, 'test')).to.throw(/version-2 manifest without a valid drop fence/);
  });
});

const CLUSTER = 'drop-fence';
const NODES = [1, 2, 3];
const addr = (n: number) => `127.0.0.1:${23_000 + n}`;

/** A metasrv core with three registered, reporting nodes and table `t` (one region, replicas reported, node 1 leading). */
async function withTable(admin: DatanodeAdmin, storage?: MemoryCatalog, clock?: TimedClock) {
  return populate(await startMetasrvCore(CLUSTER, admin, storage, undefined, clock));
}

/** Registers the three nodes on an acting `core` and creates table `t` (see withTable). */
async function populate(core: MetasrvCore) {
  const anyone = () => {};
  for (const n of NODES) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
  for (const n of NODES) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
  const route = (await createOneRegionTable(core)).routes![0]!;
  const regionId = route.region_id!;
  const peers = new Map((route.peers ?? []).map((p) => [Number(p.node_id), Number(p.peer_id)]));
  for (const n of NODES) {
    const replicas = [replicaReport({ regionId, peerId: peers.get(n)!, leader: n === 1, leaderNodeId: 1, voters: [...peers.values()] })];
    await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
  }
  /** Every node's heartbeat again, with the same report (keeps them alive on a manual clock). */
  const beat = async () => {
    for (const n of NODES) {
      const replicas = [replicaReport({ regionId, peerId: peers.get(n)!, leader: n === 1, leaderNodeId: 1, voters: [...peers.values()] })];
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
    }
  };
  return { core, regionId, beat };
}

describe('drop fence: the metasrv', function () {
  this.timeout(30_000);

  it('answers DropTable only after the region leader committed the fence, following a NOT_LEADER hint', async () => {
    const events: string[] = [];
    const admin: DatanodeAdmin = {
      openRegion: async () => ({}) as never,
      fenceRegion: async (to, request) => {
        events.push(`fence ${request.region_id} at ${to}`);
        // The catalog's leader (node 1) has handed leadership to node 3.
        if (to === addr(1)) throw new RegionDbError(ErrorCode.NotLeader, 'not the leader', { details: { leaderNodeId: '3' } });
        return { fence_index: '12' };
      },
    };
    const { core, regionId } = await withTable(admin);
    await core.dropTable({ name: 't' } as never).then(() => events.push('answered'));
    expect(events).to.deep.equal([`fence ${regionId} at ${addr(1)}`, `fence ${regionId} at ${addr(3)}`, 'answered']);
    const gone = await core.getRoutes({ table: 't' } as never).catch((err: unknown) => err);
    expect(isRegionDbError(gone, ErrorCode.NotFound)).to.equal(true);
  });

  it('never answers OK while a region is not fenced: the table stays, marked, refuses a re-create, and a later DropTable completes it', async () => {
    let fenceable = false;
    const admin: DatanodeAdmin = {
      openRegion: async () => ({}) as never,
      fenceRegion: async () => {
        if (!fenceable) throw new RegionDbError(ErrorCode.Unavailable, 'connection refused');
        return { fence_index: '5' };
      },
    };
    const { core } = await withTable(admin);
    const refused = await core.dropTable({ name: 't' } as never).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isRegionDbError(refused, ErrorCode.Unavailable), String(refused)).to.equal(true);
    expect((refused as Error).message).to.match(/being dropped but 1 of its 1 regions could not be fenced yet, so it is not dropped/);
    expect((await core.getRoutes({ table: 't' } as never)).routes, 'the table is still there').to.have.length(1);
    expect(core.catalog.droppingTables?.['t'], 'marked being dropped (saved with the catalog)').to.be.a('number');
    const recreate = await createOneRegionTable(core).catch((err: unknown) => err);
    expect(isRegionDbError(recreate, ErrorCode.AlreadyExists)).to.equal(true);
    expect((recreate as Error).message).to.match(/is being dropped/);
    fenceable = true;
    expect(await core.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 1 });
    expect(core.catalog.droppingTables?.['t']).to.equal(undefined);
    const gone = await core.getRoutes({ table: 't' } as never).catch((err: unknown) => err);
    expect(isRegionDbError(gone, ErrorCode.NotFound)).to.equal(true);
  });

  it('a marked drop is resumed by the tick (a failed attempt, or a metasrv that restarted mid-drop)', async () => {
    let fenceable = false;
    let fences = 0;
    const admin: DatanodeAdmin = {
      openRegion: async () => ({}) as never,
      fenceRegion: async () => {
        fences++;
        if (!fenceable) throw new RegionDbError(ErrorCode.Unavailable, 'connection refused');
        return { fence_index: '5' };
      },
    };
    const { core } = await withTable(admin);
    await core.dropTable({ name: 't' } as never).catch(() => {});
    fenceable = true;
    const before = fences;
    // Ticks until the drop is done (bounded: the resume runs at most every 3 s; the start's quiet period first).
    for (let i = 0; i < 200 && core.catalog.tables['t'] !== undefined; i++) {
      core.onTickTimer();
      await new Promise((ok) => setTimeout(ok, 50));
    }
    expect(fences, 'the tick fenced again').to.be.greaterThan(before);
    expect(core.catalog.tables['t'], 'the tick finished the drop').to.equal(undefined);
    expect(core.catalog.droppingTables?.['t']).to.equal(undefined);
  });
});

describe('drop fence: FenceRegion on a datanode (review F2)', () => {
  type State = StateMachine<unknown> & { fence?: { index: number; tableId: number } };
  /** A datanode core whose replica of `region` is a follower (its leader unknown) with state `state`. */
  function follower(region: string, fence?: { index: number; tableId: number }): { core: DatanodeCore<State, unknown>; proposed: number[] } {
    const proposed: number[] = [];
    const core = new DatanodeCore<State, unknown>({
      nodeId: 2,
      clusterId: 'f2',
      storeId: 'store-2',
      heartbeatIntervalMs: 1000,
      logEngine: new MemoryLogEngine(),
      clock: systemClock,
      log: silentLogger,
      createRegionServer: () =>
        ({
          replica: (id: string) => (id === region ? { stateMachine: { fence } } : undefined),
          leaderReplica: (id: string) => {
            throw new RegionDbError(ErrorCode.NotLeader, `region ${id}: not the leader here, no leader known`);
          },
          propose: async (_id: string, data: Uint8Array) => {
            proposed.push(data.byteLength);
            throw new Error('a follower cannot propose');
          },
        }) as never,
      stateMachineStat: () => ({ flushedIndex: 0, memtableBytes: 0, ssts: 0 }),
      dropFence: { encode: (tableId) => encodeCommand({ kind: 'drop-fence', tableId }), of: (s) => s.fence },
    });
    core.metas.set(region, { regionId: region, schema: cpuSchema({ tableId: 1024 }) } as never);
    return { core, proposed };
  }

  it('a replica that applied the fence answers its index without being the leader (an applied fence is committed)', async () => {
    const { core, proposed } = follower('4398046511104', { index: 17, tableId: 1024 });
    expect(await core.fenceRegion('4398046511104', 1024)).to.equal(17);
    expect(proposed).to.deep.equal([]);
  });

  it('a follower without the fence still answers NOT_LEADER (only a leader proposes it)', async () => {
    const { core } = follower('4398046511104');
    const err = await core.fenceRegion('4398046511104', 1024).catch((e: unknown) => e);
    expect(isRegionDbError(err, ErrorCode.NotLeader), String(err)).to.equal(true);
  });
});

describe('drop fence: the metasrv remembers the regions it fenced (review F2)', function () {
  this.timeout(30_000);

  /** A metasrv core with three registered nodes and table `t` of two regions. */
  async function twoRegions(admin: DatanodeAdmin, storage = new MemoryCatalog(CLUSTER)) {
    const core = await startMetasrvCore(CLUSTER, admin, storage);
    const anyone = () => {};
    for (const n of NODES) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    for (const n of NODES) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const created = await core.createTable({
      name: 't',
      columns: [
        { name: 'host', type: 'STRING', semantic: 'TAG' },
        { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
      ],
      region_count: 2,
      request_token: '',
    } as never);
    const [r1, r2] = created.routes!.map((r) => r.region_id!) as [string, string];
    /** Heartbeats of every node (an attempt waits out 5 s: the nodes must still look alive to a recovery). */
    const beat = async () => {
      for (const n of NODES) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    };
    return { core, r1, r2, beat };
  }

  const failed = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (err: unknown) => err as Error,
    );

  it('a region fenced by an earlier attempt is not fenced again: the drop completes although that region has since lost its quorum', async () => {
    const fenceable = new Set<string>();
    const calls: string[] = [];
    const admin: DatanodeAdmin = {
      openRegion: async () => ({ flushed_index: '0', manifest_written_ms: '0', ssts: 0 }) as never,
      fenceRegion: async (_to, request) => {
        calls.push(request.region_id ?? '');
        if (!fenceable.has(request.region_id ?? '')) throw new RegionDbError(ErrorCode.Unavailable, 'no quorum');
        return { fence_index: '9' };
      },
    };
    const { core, r1, r2 } = await twoRegions(admin);
    fenceable.add(r1); // attempt 1: r1 fenced, r2 not
    const first = await failed(core.dropTable({ name: 't' } as never));
    expect(isRegionDbError(first, ErrorCode.Unavailable), String(first)).to.equal(true);
    expect(first!.message).to.match(/1 of its 2 regions could not be fenced/);
    fenceable.delete(r1); // r1 loses two of its three replicas; r2 comes back
    fenceable.add(r2);
    calls.length = 0;
    expect(await core.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 2 });
    expect(calls.filter((id) => id === r1), 'r1 was not asked again').to.deep.equal([]);
    expect(core.catalog.tables['t']).to.equal(undefined);
    expect(core.catalog.fencedRegions ?? {}, 'the records go with the table').to.deep.equal({});
  });

  it('the record is saved: a metasrv started on the saved catalog skips the region too; a catalog of the previous build (a mark, no record) decodes and fences every region', async () => {
    const fenceable = new Set<string>();
    const calls: string[] = [];
    const admin: DatanodeAdmin = {
      openRegion: async () => ({ flushed_index: '0', manifest_written_ms: '0', ssts: 0 }) as never,
      fenceRegion: async (_to, request) => {
        calls.push(request.region_id ?? '');
        if (!fenceable.has(request.region_id ?? '')) throw new RegionDbError(ErrorCode.Unavailable, 'no quorum');
        return { fence_index: '9' };
      },
    };
    const storage = new MemoryCatalog(CLUSTER);
    const { core, r1, r2 } = await twoRegions(admin, storage);
    fenceable.add(r1);
    await failed(core.dropTable({ name: 't' } as never));
    const saved = decodeCatalog(encodeCatalog(storage.state), 'test');
    expect(saved.fencedRegions).to.deep.equal({ [r1]: 9 });
    expect(saved.droppingTables?.['t']).to.be.a('number');

    // The previous build's catalog: the same mark, no record of fenced regions.
    const { fencedRegions: _, ...previous } = saved;
    const older = new MemoryCatalog(CLUSTER);
    older.state = decodeCatalog(encodeCatalog(previous as CatalogState), 'test');
    fenceable.clear();
    fenceable.add(r2);
    calls.length = 0;
    const onOlder = await startMetasrvCore(CLUSTER, admin, older);
    const refused = await failed(onOlder.dropTable({ name: 't' } as never));
    expect(refused?.message, 'r1 is asked again (nothing says it was fenced)').to.match(/1 of its 2 regions could not be fenced/);
    expect(calls).to.include(r1);

    const restarted = await startMetasrvCore(CLUSTER, admin, storage);
    calls.length = 0;
    expect(await restarted.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 2 });
    expect(calls.filter((id) => id === r1)).to.deep.equal([]);
  });

  it('status (ListNodes) shows a table being dropped with its regions fenced and not; regiondb status renders it (review F3)', async () => {
    const fenceable = new Set<string>();
    const admin: DatanodeAdmin = {
      openRegion: async () => ({ flushed_index: '0', manifest_written_ms: '0', ssts: 0 }) as never,
      fenceRegion: async (_to, request) => {
        if (!fenceable.has(request.region_id ?? '')) throw new RegionDbError(ErrorCode.Unavailable, 'no quorum');
        return { fence_index: '9' };
      },
    };
    const { core, r1, r2 } = await twoRegions(admin);
    expect((await core.listNodes()).dropping_tables, 'nothing being dropped').to.deep.equal([]);
    fenceable.add(r1);
    await failed(core.dropTable({ name: 't' } as never));
    const [shown, ...more] = (await core.listNodes()).dropping_tables ?? [];
    expect(more).to.deep.equal([]);
    expect(shown).to.deep.include({ name: 't', table_id: '1024', fenced_region_ids: [r1], unfenced_region_ids: [r2], recovering_region_ids: [] });
    const text = renderDroppingTables([shown as DroppingTableView], Number(shown!.since_ms) + 7_000);
    expect(text).to.match(/^TABLES BEING DROPPED/);
    expect(text.split('\n')[2]).to.match(new RegExp(`^t\\s+1024\\s+7 s ago\\s+${r1}\\s+${r2}\\s+-$`));
    expect(renderDroppingTables([], 0)).to.equal('');
  });

  it('a recovery forgets the regions fenced so far: the next attempt fences them again', async () => {
    const fenceable = new Set<string>();
    const calls: string[] = [];
    const admin: DatanodeAdmin = {
      openRegion: async () => ({ flushed_index: '0', manifest_written_ms: '0', ssts: 0 }) as never,
      fenceRegion: async (_to, request) => {
        calls.push(request.region_id ?? '');
        if (!fenceable.has(request.region_id ?? '')) throw new RegionDbError(ErrorCode.Unavailable, 'no quorum');
        return { fence_index: '9' };
      },
    };
    const { core, r1, r2, beat } = await twoRegions(admin);
    fenceable.add(r1);
    await failed(core.dropTable({ name: 't' } as never));
    await beat();
    expect(core.catalog.fencedRegions?.[r1], 'recorded, and saved with the catalog').to.equal(9);
    await core.recoverTable('t', true); // r1 may now be a new group without the fence
    expect(core.catalog.fencedRegions?.[r1]).to.equal(undefined);
    fenceable.add(r2);
    calls.length = 0;
    expect(await core.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 2 });
    expect(calls, 'both fenced after the recovery').to.include.members([r1, r2]);
  });
});

describe('drop fence: recovery from the object store during a drop (review F1)', function () {
  this.timeout(30_000);

  /** A promise and its resolver. */
  function gate(): { promise: Promise<void>; open: () => void } {
    let open!: () => void;
    const promise = new Promise<void>((ok) => (open = ok));
    return { promise, open };
  }

  /**
   * Whether DropTable answered OK after a recovery open with no fence since (the data-loss
   * order). A fence counts only if it was called after the recovery: one called before fenced
   * the old group.
   */
  const okOverUnfenced = (events: string[]) => {
    let unfenced = false;
    let fenceCalledSince = false;
    for (const e of events) {
      if (e.startsWith('recover-open')) [unfenced, fenceCalledSince] = [true, false];
      if (e === 'fence called') fenceCalledSince = true;
      if (e === 'fenced' && fenceCalledSince) unfenced = false;
      if (e === 'drop OK' && unfenced) return true;
    }
    return false;
  };

  it('a recovery asked for while a drop attempt is in flight waits for it: DropTable never answers OK over a region recovered unfenced', async () => {
    const events: string[] = [];
    const fenceHeld = gate();
    const admin: DatanodeAdmin = {
      openRegion: async (to, req) => {
        if ((req as { recover_from_object_store?: boolean }).recover_from_object_store) events.push(`recover-open at ${to}`);
        return { flushed_index: '3', manifest_written_ms: '0', ssts: 0 } as never;
      },
      fenceRegion: async () => {
        events.push('fence called');
        await fenceHeld.promise;
        events.push('fenced');
        return { fence_index: '5' };
      },
    };
    const { core } = await withTable(admin);
    const drop = core.dropTable({ name: 't' } as never).then(
      () => events.push('drop OK'),
      (err: unknown) => events.push(`drop failed: ${(err as Error).message}`),
    );
    while (!events.includes('fence called')) await new Promise((ok) => setTimeout(ok, 5));
    const recover = core.recoverTable('t', true).then(
      () => events.push('recovered'),
      (err: unknown) => events.push(`recover refused: ${(err as Error).message}`),
    );
    await new Promise((ok) => setTimeout(ok, 50));
    fenceHeld.open();
    await Promise.all([drop, recover]);
    expect(okOverUnfenced(events), events.join(' | ')).to.equal(false);
    expect(events.filter((e) => e.startsWith('recover-open')), 'nothing recovered: the table was dropped first').to.deep.equal([]);
    expect(events.at(-1)).to.match(/^recover refused: table t does not exist/);
  });

  it('a drop attempt that starts while the table\'s regions are being recovered fails (UNAVAILABLE, saying so); once recovered, DropTable fences again before OK', async () => {
    const events: string[] = [];
    const openHeld = gate();
    const admin: DatanodeAdmin = {
      openRegion: async (to, req) => {
        if ((req as { recover_from_object_store?: boolean }).recover_from_object_store) {
          events.push(`recover-open at ${to}`);
          await openHeld.promise;
        }
        return { flushed_index: '3', manifest_written_ms: '0', ssts: 0 } as never;
      },
      fenceRegion: async () => {
        events.push('fence called', 'fenced');
        return { fence_index: '5' };
      },
    };
    const { core } = await withTable(admin);
    const recover = core.recoverTable('t', true);
    while (!events.some((e) => e.startsWith('recover-open'))) await new Promise((ok) => setTimeout(ok, 5));
    const during = await core.dropTable({ name: 't' } as never).then(
      () => events.push('drop OK'),
      (err: unknown) => err,
    );
    expect(isRegionDbError(during, ErrorCode.Unavailable), String(during)).to.equal(true);
    expect((during as Error).message).to.match(/being recovered/);
    expect(core.catalog.tables['t'], 'the table stays, marked').to.not.equal(undefined);
    openHeld.open();
    await recover;
    await core.dropTable({ name: 't' } as never).then(() => events.push('drop OK'));
    expect(okOverUnfenced(events), events.join(' | ')).to.equal(false);
    expect(events.at(-1)).to.equal('drop OK');
  });
});

describe('drop fence: a request naming a region of the dropped table (review F5)', () => {
  const recreated: TableSchema = cpuSchema({ name: 't', tableId: 1025, field: 'v' });
  const oldRegion = '4398046511104'; // table 1024's region 0
  const row = () => {
    const p = toProtoRow(recreated, { host: 'h', ts: 1, v: 1.5 });
    for (const v of Object.values(p.values)) v.kind = Object.keys(v)[0] as ProtoValue['kind']; // as proto-loader decodes
    return p;
  };

  /** A datanode whose metasrv resolves `t` to the re-created table 1025; `fenced`: it holds table 1024's region, fenced. */
  function service(fenced: boolean): DatabaseService {
    const replica = { stateMachine: { dropFence: { index: 5, tableId: 1024 } } };
    const host = {
      nodeId: 1,
      metas: new Map(),
      regionServer: { replica: (regionId: string) => (fenced && regionId === oldRegion ? replica : undefined), failure: () => undefined },
      metaCall: async () => ({ table: toProtoSchema(recreated), routes: [] }),
    } as unknown as DatabaseHost;
    return new DatabaseService(host);
  }

  type Internals = {
    router: { write(req: unknown, info: unknown): Promise<unknown>; delete(req: unknown, info: unknown): Promise<unknown> };
    write(req: unknown): Promise<unknown>;
    delete(req: unknown): Promise<unknown>;
    scan(req: unknown, write: (chunk: unknown) => Promise<void>): Promise<void>;
  };

  async function refusal(p: Promise<unknown>): Promise<RegionDbError> {
    try {
      await p;
    } catch (err) {
      if (isRegionDbError(err)) return err as RegionDbError;
      throw err;
    }
    throw new Error('expected a refusal');
  }

  for (const known of ['noted dropped', 'its local replica fenced'] as const) {
    it(`is refused NOT_FOUND with the dropped table's id (not INVALID_ARGUMENT) when the table is ${known}: routed or served here, write or delete`, async () => {
      const s = service(known === 'its local replica fenced');
      if (known === 'noted dropped') s.tableDropped(1024);
      const internals = s as unknown as Internals;
      const info = { forwarded: false, deadlineMs: Date.now() + 30_000 };
      const write = { table: 't', rows: [row()], region_id: oldRegion };
      const del = { table: 't', keys: [{ values: { host: row().values['host'], ts: row().values['ts'] } }], region_id: oldRegion };
      const scan = { table: 't', region_id: oldRegion, consistency: 'STRONG' };
      for (const [what, call] of [
        ['routed write', () => internals.router.write(write, info)],
        ['write served here', () => internals.write(write)],
        ['routed delete', () => internals.router.delete(del, info)],
        ['delete served here', () => internals.delete(del)],
        ['scan of the region', () => internals.scan(scan, async () => {})],
      ] as const) {
        const err = await refusal(call());
        expect(err.code, `${what}: ${err.message}`).to.equal(ErrorCode.NotFound);
        expect(err.details['droppedTableId'], what).to.equal('1024');
      }
      s.close();
    });
  }

  it('a request naming a region of the re-created table is split by that region\'s own schema while this node still resolves the name to the old table (not INVALID_ARGUMENT): served here, routed, write and delete', async () => {
    // This node hosts table 1024's region (not yet known fenced here, so the name resolves to it
    // first) and, since the re-create, table 1025's region 0, which it leads. The old table named
    // its field `w`, the new one `v`: a row of the new table is not even valid for the old schema.
    const old = cpuSchema({ name: 't', tableId: 1024, field: 'w' });
    const newRegion = String(1025 * 2 ** 32); // table 1025's region 0
    const leading = { isLeader: () => true, leaderNodeId: () => 1, stateMachine: { dropFence: undefined } };
    const host = {
      nodeId: 1,
      metas: new Map([
        [oldRegion, { regionId: oldRegion, schema: old, selfPeerId: 1, peers: [] }],
        [newRegion, { regionId: newRegion, schema: recreated, selfPeerId: 2, peers: [] }],
      ]),
      regionServer: { replica: (regionId: string) => (regionId === newRegion ? leading : undefined), failure: () => undefined },
      metaCall: async () => ({ table: toProtoSchema(recreated), routes: [] }),
    } as unknown as DatabaseHost;
    const s = new DatabaseService(host);
    const proposed: { regionId: string; rows?: unknown[][] }[] = [];
    const stub = s as unknown as { propose(table: string, regionId: string, command: Uint8Array): Promise<unknown>; checkMemory(regionId: string): void };
    stub.checkMemory = () => {};
    stub.propose = async (_table, regionId, command) => {
      const c = decodeCommand(command) as { rows?: unknown[][] };
      proposed.push({ regionId, ...(c.rows ? { rows: c.rows } : {}) });
      throw new RegionDbError(ErrorCode.ConditionFailed, 'reached propose (test stub)');
    };
    const internals = s as unknown as Internals;
    const info = { forwarded: false, deadlineMs: Date.now() + 30_000 };
    const write = { table: 't', rows: [row()], region_id: newRegion };
    const del = { table: 't', keys: [{ values: { host: row().values['host'], ts: row().values['ts'] } }], region_id: newRegion };
    for (const [what, call] of [
      ['write served here', () => internals.write(write)],
      ['routed write', () => internals.router.write(write, info)],
      ['delete served here', () => internals.delete(del)],
      ['routed delete', () => internals.router.delete(del, info)],
    ] as const) {
      const before = proposed.length;
      const err = await refusal(call());
      expect(err.message, what).to.equal('reached propose (test stub)');
      expect(proposed.length, what).to.equal(before + 1);
      expect(proposed.at(-1)!.regionId, what).to.equal(newRegion);
    }
    // Encoded by the new table's columns (host, ts, v): the field's value is where v is.
    expect(proposed[0]!.rows).to.deep.equal([['h', 1, 1.5]]);
    s.close();
  });

  it('a region of a table not known dropped is still INVALID_ARGUMENT', async () => {
    const s = service(false);
    const err = await refusal((s as unknown as Internals).write({ table: 't', rows: [row()], region_id: oldRegion }));
    expect(err.code).to.equal(ErrorCode.InvalidArgument);
    s.close();
  });
});

describe('drop fence: a DropTable sent again with its request token (leftover item 2)', function () {
  this.timeout(30_000);
  const fencing = (fences: string[], fenceable = () => true): DatanodeAdmin => ({
    openRegion: async () => ({}) as never,
    fenceRegion: async (_to, request) => {
      fences.push(request.region_id ?? '');
      if (!fenceable()) throw new RegionDbError(ErrorCode.Unavailable, 'connection refused');
      return { fence_index: '5' };
    },
  });

  it('a retry after the drop completed and the name was re-created answers the first drop and never touches the new table', async () => {
    const fences: string[] = [];
    const { core, regionId } = await withTable(fencing(fences));
    expect(await core.dropTable({ name: 't', request_token: 'tok-1' } as never)).to.deep.equal({ regions_dropped: 1 });
    const recreated = await createOneRegionTable(core);
    const newId = recreated.table!.table_id;
    expect(Number(newId), 'a new table id').to.be.greaterThan(0);
    expect(recreated.routes![0]!.region_id).to.not.equal(regionId);
    // The first answer was lost; the client sends the same request again.
    expect(await core.dropTable({ name: 't', request_token: 'tok-1' } as never)).to.deep.equal({ regions_dropped: 1 });
    const routes = await core.getRoutes({ table: 't' } as never);
    expect(routes.table?.table_id, 'the re-created table is still there').to.equal(newId);
    expect(fences, 'only the dropped table was fenced').to.deep.equal([regionId]);
    // A new DropTable (a fresh token) drops the new table.
    expect(await core.dropTable({ name: 't', request_token: 'tok-2' } as never)).to.deep.equal({ regions_dropped: 1 });
    expect(fences).to.deep.equal([regionId, recreated.routes![0]!.region_id]);
  });

  it('a retry while the drop is still under way joins it; the token is saved with the mark and survives a metasrv restart', async () => {
    const fences: string[] = [];
    let fenceable = false;
    const storage = new MemoryCatalog(CLUSTER);
    const { core } = await withTable(fencing(fences, () => fenceable), storage);
    const first = await core.dropTable({ name: 't', request_token: 'tok-1' } as never).catch((err: unknown) => err);
    expect(isRegionDbError(first, ErrorCode.Unavailable), String(first)).to.equal(true);
    expect(storage.state.dropTokens?.['tok-1'], 'saved with the mark').to.include({ name: 't', regions: 1 });
    fenceable = true;
    const restarted = await startMetasrvCore(CLUSTER, fencing(fences), storage);
    for (const n of NODES) await restarted.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, () => {});
    expect(await restarted.dropTable({ name: 't', request_token: 'tok-1' } as never), 'joined: the drop completes').to.deep.equal({ regions_dropped: 1 });
    await createOneRegionTable(restarted);
    expect(await restarted.dropTable({ name: 't', request_token: 'tok-1' } as never)).to.deep.equal({ regions_dropped: 1 });
    expect((await restarted.getRoutes({ table: 't' } as never)).routes, 'the re-created table stays').to.have.length(1);
  });

  it('a token used for another table is refused INVALID_ARGUMENT; a damaged record refuses, dropping nothing', async () => {
    const fences: string[] = [];
    const { core } = await withTable(fencing(fences));
    await core.dropTable({ name: 't', request_token: 'tok-1' } as never);
    const other = await core.dropTable({ name: 'u', request_token: 'tok-1' } as never).catch((err: unknown) => err);
    expect(isRegionDbError(other, ErrorCode.InvalidArgument), String(other)).to.equal(true);
    await createOneRegionTable(core);
    core.catalog.dropTokens = ownMap({ 'tok-9': { name: 't', tableId: 'x' } as never });
    const damaged = await core.dropTable({ name: 't', request_token: 'tok-9' } as never).catch((err: unknown) => err);
    expect(isRegionDbError(damaged, ErrorCode.Internal), String(damaged)).to.equal(true);
    expect((await core.getRoutes({ table: 't' } as never)).routes, 'nothing dropped').to.have.length(1);
  });

  // Leftover item 4 (row M20): the save that removes the table from the catalog is held; the
  // first DropTable's answer is lost and the client sends it again meanwhile.
  for (const save of ['fails', 'succeeds'] as const) {
    it(`a retry arriving while the save removing the table is in flight waits for it; that save ${save}: ${save === 'fails' ? 'UNAVAILABLE, outcome unknown, never OK' : 'OK'}`, async () => {
      const settle = async () => {
        for (let i = 0; i < 20; i++) await new Promise((ok) => setImmediate(ok));
      };
      const storage = new MemoryCatalog(CLUSTER);
      const fences: string[] = [];
      const { core } = await withTable(fencing(fences), storage);
      storage.holdFrom = (state) => state.tables['t'] === undefined;
      const outcome = (p: Promise<unknown>) => p.then((r) => r, (err: unknown) => err);
      const first = outcome(core.dropTable({ name: 't', request_token: 'tok-1' } as never));
      for (let i = 0; i < 50 && storage.held === undefined; i++) await settle();
      expect(storage.held, "the removal's save is in flight").to.have.length(1);
      expect(core.catalog.tables['t'], 'gone from the catalog in memory').to.equal(undefined);
      let answered: unknown;
      const retry = outcome(core.dropTable({ name: 't', request_token: 'tok-1' } as never)).then((r) => (answered = r));
      await settle();
      // Before the fix: answered { regions_dropped: 1 } here, with the removal not durable.
      expect(answered, "no answer while the removal's save is in flight").to.equal(undefined);
      if (save === 'fails') {
        storage.release(new Error('no space left on device'));
        const firstErr = await first;
        expect(isRegionDbError(firstErr, ErrorCode.Unavailable), String(firstErr)).to.equal(true);
        const retryErr = await retry;
        expect(isRegionDbError(retryErr, ErrorCode.Unavailable), String(retryErr)).to.equal(true);
        expect((retryErr as RegionDbError).details['outcome']).to.equal('unknown');
      } else {
        storage.release();
        expect(await first).to.deep.equal({ regions_dropped: 1 });
        expect(await retry).to.deep.equal({ regions_dropped: 1 });
        expect(storage.state.tables['t'], 'removed durably').to.equal(undefined);
      }
    });
  }

  it(`remembers the newest ${DROP_TOKENS_MAX} tokens, the oldest forgotten first`, () => {
    const catalog = emptyCatalog('c');
    for (let i = 0; i <= DROP_TOKENS_MAX; i++) rememberDropToken(catalog, `tok-${i}`, { name: `t${i}`, tableId: 1024 + i, regions: 1, atMs: i });
    expect(Object.keys(catalog.dropTokens!)).to.have.length(DROP_TOKENS_MAX);
    expect(dropTokenOf(catalog, 'tok-0'), 'the oldest').to.equal(undefined);
    expect(dropTokenOf(catalog, 'tok-1')).to.include({ name: 't1', tableId: 1025 });
    expect(dropTokenOf(catalog, `tok-${DROP_TOKENS_MAX}`)).to.include({ tableId: 1024 + DROP_TOKENS_MAX });
  });
});

describe('drop fence: nothing is fenced before the mark is saved (the join-before-the-mark-is-saved window)', function () {
  this.timeout(30_000);
  /** Lets the core's promise chains run (real event-loop turns; the core's time is the manual clock). */
  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((ok) => setImmediate(ok));
  };

  // The first DropTable's save of the mark is held, then fails (a full disk). Whoever joins the
  // drop meanwhile must not fence: every FenceRegion call is checked against what the storage
  // holds at that moment.
  for (const joiner of ['a second DropTable without a token', 'the first DropTable sent again with its token', "the tick's resume of marked drops"] as const) {
    it(`${joiner} waits for the save of the mark; that save fails: nothing fenced until a later save makes the mark durable`, async () => {
      const manual = new ManualClock(1_000);
      const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
      const storage = new MemoryCatalog(CLUSTER);
      const fences: { durable: boolean }[] = [];
      const admin: DatanodeAdmin = {
        openRegion: async () => ({}) as never,
        fenceRegion: async () => {
          fences.push({ durable: storage.state.droppingTables?.['t'] !== undefined });
          return { fence_index: '5' };
        },
      };
      const { core, beat } = await withTable(admin, storage, clock);
      const tick = async () => {
        manual.advance(200);
        await beat();
        core.onTickTimer();
        await settle();
      };
      for (let i = 0; i < 5; i++) await tick(); // past the start's quiet period: the tick runs
      storage.holdFrom = (state) => state.droppingTables?.['t'] !== undefined;
      const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (err: unknown) => err);
      const first = outcome(core.dropTable({ name: 't', request_token: 'tok-1' } as never));
      await settle();
      expect(storage.held, 'the save of the mark is in flight').to.have.length(1);
      expect(core.catalog.droppingTables?.['t'], 'marked in memory').to.be.a('number');
      let joined: Promise<unknown> | undefined;
      if (joiner === 'a second DropTable without a token') joined = outcome(core.dropTable({ name: 't' } as never));
      else if (joiner === 'the first DropTable sent again with its token') joined = outcome(core.dropTable({ name: 't', request_token: 'tok-1' } as never));
      else await tick();
      await settle();
      expect(fences, `${joiner}: no FenceRegion while the mark's save is in flight`).to.deep.equal([]);
      storage.release(new Error('no space left on device'));
      for (const p of [first, joined]) {
        if (p === undefined) continue;
        const err = await p;
        expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
      }
      await settle();
      expect(fences, `${joiner}: the save of the mark failed, so nothing was fenced`).to.deep.equal([]);
      expect(storage.state.droppingTables?.['t'], 'no durable mark').to.equal(undefined);
      // The metasrv writes its catalog again once it can (the tick's retry), the mark with it; the
      // tick's resume then finishes the drop, fencing only under the durable mark (bounded: 20 s of manual time).
      for (let i = 0; i < 100 && core.catalog.tables['t'] !== undefined; i++) await tick();
      expect(core.catalog.tables['t'], `${joiner}: the drop finished once the mark was saved`).to.equal(undefined);
      expect(fences.length, 'the region was fenced').to.be.greaterThan(0);
      expect(fences.filter((f) => !f.durable), `${joiner}: every FenceRegion came after the mark was durable`).to.deep.equal([]);
    });
  }
});

/**
 * The metasrv group as a catalog core sees it, in memory: one log of catalog puts, a leader flag
 * the test flips, and puts that can be held; a put made after leadership was lost fails.
 */
class FakeGroup {
  leader = true;
  term = 3;
  applied: Uint8Array | null = null;
  held: (() => void)[] | undefined;
  isLeader(): boolean {
    return this.leader;
  }
  async barrier(): Promise<void> {}
  appliedCatalog(): Uint8Array | null {
    return this.applied;
  }
  async put(bytes: Uint8Array): Promise<void> {
    if (this.held) await new Promise<void>((ok) => this.held!.push(ok));
    if (!this.leader) throw new Error('not the leader any more: the put was not committed');
    this.applied = bytes;
  }
  release(): void {
    const waiting = this.held ?? [];
    this.held = undefined;
    for (const ok of waiting) ok();
  }
  leaderAddr(): string | undefined {
    return undefined;
  }
  fatalError(): Error | undefined {
    return undefined;
  }
  status() {
    return { memberId: 1, role: this.leader ? 'leader' : 'follower', term: this.term, leaderId: 0, commitIndex: 0, appliedIndex: 0, members: [] };
  }
}

describe('drop fence: a deposed metasrv group leader fences nothing (the join-before-the-mark-is-saved window, in a group)', function () {
  this.timeout(30_000);
  const config = testMetasrvConfig(CLUSTER);
  const member = async (group: FakeGroup, admin: DatanodeAdmin) => {
    const core = new MetasrvCore(config, silentLogger, 3, { admin, procedureClock: { nowMs: () => Date.now() }, clock: systemClock });
    core.joinGroup(group as unknown as MetaGroup, undefined);
    await core.takeover(group.term);
    return core;
  };

  it('the put of the mark is not committed (leadership lost): a DropTable that joined meanwhile fenced nothing, and the next leader sees no drop', async () => {
    const group = new FakeGroup();
    const fences: string[] = [];
    const admin: DatanodeAdmin = {
      openRegion: async () => ({}) as never,
      fenceRegion: async (_to, r) => {
        fences.push(r.region_id ?? '');
        return { fence_index: '5' };
      },
    };
    const a = await member(group, admin);
    await populate(a);
    group.held = [];
    const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (err: unknown) => err);
    const first = outcome(a.dropTable({ name: 't' } as never));
    const second = outcome(a.dropTable({ name: 't' } as never)); // joins the drop marked in memory
    await new Promise((ok) => setTimeout(ok, 50));
    expect(fences, 'nothing fenced while the put of the mark is in flight').to.deep.equal([]);
    // Another member is elected: this one is deposed before its put commits.
    group.leader = false;
    a.demote(group.term);
    group.release();
    for (const p of [first, second]) {
      const err = await p;
      expect(err, 'neither DropTable answered OK').to.not.equal('ok');
    }
    await new Promise((ok) => setTimeout(ok, 50));
    expect(fences, 'the deposed leader fenced nothing').to.deep.equal([]);
    group.leader = true;
    group.term = 4;
    const b = await member(group, admin);
    expect(b.catalog.droppingTables?.['t'], 'the next leader sees no mark').to.equal(undefined);
    expect(b.catalog.tables['t'], 'and the table, alive').to.not.equal(undefined);
  });

  it('a leader deposed while it fences (its mark committed) makes no further FenceRegion call; the next leader resumes from the mark', async () => {
    const group = new FakeGroup();
    const fences: string[] = [];
    let fenceable = false;
    const admin: DatanodeAdmin = {
      openRegion: async () => ({}) as never,
      fenceRegion: async (_to, r) => {
        fences.push(`${r.region_id} at epoch ${r.metasrv_epoch}`);
        if (!fenceable) throw new RegionDbError(ErrorCode.Unavailable, 'election under way');
        return { fence_index: '5' };
      },
    };
    const a = await member(group, admin);
    const { regionId } = await populate(a);
    const first = a.dropTable({ name: 't' } as never).then(() => 'ok', (err: unknown) => err);
    for (let i = 0; i < 100 && fences.length === 0; i++) await new Promise((ok) => setTimeout(ok, 10));
    expect(fences, 'the first FenceRegion went out (the mark is committed)').to.deep.equal([`${regionId} at epoch 3`]);
    group.leader = false;
    a.demote(group.term);
    expect(await first, 'no OK from a deposed leader').to.not.equal('ok');
    expect(fences, 'no FenceRegion after the leader was deposed (it retried every 100 ms before)').to.have.length(1);
    fenceable = true;
    group.leader = true;
    group.term = 4;
    const b = await member(group, admin);
    expect(b.catalog.droppingTables?.['t'], 'the mark is committed: the next leader resumes the drop').to.be.a('number');
    expect(await b.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 1 });
    expect(fences.at(-1)).to.equal(`${regionId} at epoch 4`);
  });
});
