// The drop record of a table in the object store (docs/ddl.md, "A catalog older than the drop";
// DT2 in docs/correctness.md): DropTable, with `[storage]`, puts `meta/dropped-table-<id>` once
// every region is fenced and before it answers; a metasrv whose catalog still holds the table (a
// copy restored from before the drop) drops it again from the record before it bootstraps any
// region, and no region is bootstrapped while the records cannot be read. Before, such a copy
// had the dropped region bootstrapped again (a new, empty raft group under its ids, acknowledging
// writes into the dropped table: the simulator's engine seed 2015 of the wide mix) or opened
// empty (the table back in name only, refusing every write NOT_LEADER).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { CatalogState } from '../../src/metasrv/catalog.js';
import { decodeCatalog, encodeCatalog } from '../../src/metasrv/catalog-store.js';
import { DROP_OBJECT_PREFIX, dropObjectKey, encodeDropObject } from '../../src/metasrv/drop-object.js';
import type { MetaGroup } from '../../src/metasrv/meta-group.js';
import { type DatanodeAdmin, MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { DelegatingObjectStore, FsObjectStore, type ObjectMeta } from '../../src/object-store/index.js';
import type { OpenRegionRequest } from '../../src/rpc/generated/index.js';
import { HandClock } from '../fixtures/hand-clock.js';
import { MemoryCatalog, createOneRegionTable, replicaReport, startMetasrvCore, testMetasrvConfig } from '../fixtures/metasrv-core.js';

const CLUSTER = 'drop-record';
const NODES = [1, 2, 3];
const addr = (n: number) => `127.0.0.1:${24_000 + n}`;
const anyone = () => {};
const outcomeOf = (call: Promise<unknown>) => call.then(() => 'answered', (err: unknown) => err as RegionDbError);

/** The object store; while `failing` is set, the listing of the drop records and the put of one fail (other requests pass). */
class DropRecordStore extends DelegatingObjectStore {
  failing = false;
  /** Listings of the region folders (listPrefixes). */
  folderListings = 0;
  override listPrefixes(prefix: string): Promise<string[]> {
    this.folderListings++;
    return super.listPrefixes(prefix);
  }
  /** Listings of the drop records. */
  recordListings = 0;
  override list(prefix: string): Promise<ObjectMeta[]> {
    if (prefix.startsWith(DROP_OBJECT_PREFIX)) this.recordListings++;
    if (this.failing && prefix.startsWith(DROP_OBJECT_PREFIX)) return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'the object store cannot be reached (test)'));
    return super.list(prefix);
  }
  override put(key: string, data: Uint8Array): Promise<void> {
    if (this.failing && key.startsWith(DROP_OBJECT_PREFIX)) return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'the object store cannot be reached (test)'));
    return super.put(key, data);
  }
}

/** The metasrv group as a leader's core sees it: always the leader at `term`, every put committed at once. */
class OneMemberGroup {
  readonly term = 3;
  applied: Uint8Array | null = null;
  isLeader(): boolean {
    return true;
  }
  async barrier(): Promise<void> {}
  appliedCatalog(): Uint8Array | null {
    return this.applied;
  }
  async put(bytes: Uint8Array): Promise<void> {
    this.applied = bytes;
  }
  leaderAddr(): string | undefined {
    return undefined;
  }
  fatalError(): Error | undefined {
    return undefined;
  }
  status() {
    return { memberId: 1, role: 'leader', term: this.term, leaderId: 1, commitIndex: 0, appliedIndex: 0, members: [] };
  }
}

/** Every open_region the metasrv gives the nodes (registration answers, heartbeat instructions), as "region@node bootstrap|join". */
function opensOf(regions: readonly OpenRegionRequest[], nodeId: number): string[] {
  return regions.map((o) => `${o.region_id}@${nodeId} ${o.bootstrap ? 'bootstrap' : 'join'}`);
}

/** The three nodes register and beat once with nothing hosted (the drop destroyed their replicas); the opens they were given. */
async function nodesComeBack(core: MetasrvCore): Promise<string[]> {
  const opens: string[] = [];
  for (const n of NODES) {
    const reg = await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    opens.push(...opensOf(reg.regions ?? [], n));
  }
  for (const n of NODES) {
    const res = await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    opens.push(...opensOf((res.instructions ?? []).flatMap((i) => (i.open_region ? [i.open_region] : [])), n));
  }
  return opens;
}

describe('the drop record in the object store: a catalog restored from a copy older than a DropTable (DT2)', function () {
  this.timeout(30_000);
  let dir: string;
  let store: DropRecordStore;
  const started: MetasrvCore[] = [];
  const fenceable: DatanodeAdmin = { openRegion: async () => ({}) as never, fenceRegion: async () => ({ fence_index: '12' }) as never };
  /** A metasrv over `catalog` with `[storage]` in `dir` (by default the nodes fence at once, and the store is `store`). */
  const start = async (catalog: MemoryCatalog, clock = systemClock, admin: DatanodeAdmin = fenceable, over: DelegatingObjectStore = store) => {
    const core = await startMetasrvCore(CLUSTER, admin, catalog, undefined, clock, { storage: { type: 'fs', root: dir } }, over);
    started.push(core);
    return core;
  };
  /** A catalog restored from `copy`. */
  const restoredFrom = (copy: CatalogState): MemoryCatalog => {
    const restored = new MemoryCatalog(CLUSTER);
    restored.state = copy;
    return restored;
  };
  /** Nodes that fence at once and note every open that starts a region over from the object store (a recovery). */
  const recordingRecoveries = () => {
    const recovers: string[] = [];
    const admin: DatanodeAdmin = {
      openRegion: async (to: string, req: OpenRegionRequest & { recover_from_object_store?: boolean }) => {
        if (req.recover_from_object_store) recovers.push(`${req.region_id}@${to}`);
        return { flushed_index: '0', manifest_written_ms: '0', ssts: 0 } as never;
      },
      fenceRegion: async () => ({ fence_index: '12' }) as never,
    };
    return { admin, recovers };
  };
  /**
   * The store readable again: ticks every 200 ms (the listing is made again a second after the
   * last one began), then waits for table `t` to leave `restored` (its drop record read).
   */
  const recordsReadAgain = async (core: MetasrvCore, clock: HandClock, restored: MemoryCatalog) => {
    store.failing = false;
    for (let i = 0; i < 6; i++) {
      clock.advance(200);
      core.onTickTimer();
    }
    for (let i = 0; i < 100 && restored.state.tables['t'] !== undefined; i++) await new Promise((ok) => setTimeout(ok, 10));
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-drop-record-'));
    store = new DropRecordStore(new FsObjectStore(dir));
  });
  afterEach(() => {
    for (const core of started.splice(0)) core.halt();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Table `t` created on a first metasrv; `copyAt` says when a copy of its catalog is taken — right
   * after CreateTable (no replica reported yet: `bootstrapped` false) or once the replicas reported
   * (`bootstrapped` true); then `t` is dropped (answered OK) and the metasrv stops.
   */
  async function dropAfterCopy(copyAt: 'created' | 'reported'): Promise<{ copy: CatalogState; regionId: string }> {
    const catalog = new MemoryCatalog(CLUSTER);
    const core = await start(catalog);
    for (const n of NODES) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    for (const n of NODES) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const route = (await createOneRegionTable(core)).routes![0]!;
    const regionId = route.region_id!;
    let copy = structuredClone(catalog.state);
    const peers = new Map((route.peers ?? []).map((p) => [Number(p.node_id), Number(p.peer_id)]));
    for (const n of NODES) {
      const replicas = [replicaReport({ regionId, peerId: peers.get(n)!, leader: n === 1, leaderNodeId: 1, voters: [...peers.values()] })];
      await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
    }
    if (copyAt === 'reported') copy = structuredClone(catalog.state);
    expect(copy.regions[regionId]?.bootstrapped, 'the copy').to.equal(copyAt === 'reported');
    expect(await core.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 1 });
    core.halt();
    return { copy, regionId };
  }

  it("a copy saved before the region's first report, restored after the drop: the table is dropped again, its region never bootstrapped", async () => {
    const { copy, regionId } = await dropAfterCopy('created');
    expect((await store.list(DROP_OBJECT_PREFIX)).map((o) => o.key), 'the record, written before the answer').to.deep.equal([dropObjectKey(1024)]);
    const restored = restoredFrom(copy);
    const core = await start(restored);
    expect(await nodesComeBack(core), 'no open of the dropped region (before: a bootstrap on each node)').to.deep.equal([]);
    const routes = await outcomeOf(core.getRoutes({ table: 't' } as never));
    expect(isRegionDbError(routes, ErrorCode.NotFound), `GetRoutes: ${String(routes)}`).to.equal(true);
    expect(restored.state.tables['t'], 'dropped in the saved catalog').to.equal(undefined);
    expect(restored.state.droppedRegions?.[regionId], 'with its tombstone (reconciliation destroys what is left)').to.be.a('number');
    const again = await createOneRegionTable(core);
    expect(Number(again.table?.table_id), 'a CreateTable of the name gets a new id').to.equal(1025);
  });

  it('a copy saved after the first report, restored after the drop: the table is dropped again, not back in name only', async () => {
    const { copy, regionId } = await dropAfterCopy('reported');
    const restored = restoredFrom(copy);
    const core = await start(restored);
    expect(await nodesComeBack(core), 'no open of the dropped region (before: each node told to open it empty)').to.deep.equal([]);
    const routes = await outcomeOf(core.getRoutes({ table: 't' } as never));
    expect(isRegionDbError(routes, ErrorCode.NotFound), `GetRoutes: ${String(routes)}`).to.equal(true);
    expect(restored.state.droppedRegions?.[regionId]).to.be.a('number');
  });

  it('a metasrv on an empty data dir allocates table ids above every dropped table, flushed or not (no region folder)', async () => {
    await dropAfterCopy('created');
    const core = await start(new MemoryCatalog(CLUSTER));
    await nodesComeBack(core);
    const created = await createOneRegionTable(core);
    expect(Number(created.table?.table_id), "not the dropped table's id 1024").to.equal(1025);
  });

  it('the drop records cannot be read at start: no region is bootstrapped and no table created until they are; then the drop is finished', async () => {
    const { copy, regionId } = await dropAfterCopy('created');
    const restored = restoredFrom(copy);
    store.failing = true;
    const clock = new HandClock();
    const core = await start(restored, clock);
    expect(await nodesComeBack(core), 'no bootstrap while the records are unread').to.deep.equal([]);
    const creating = outcomeOf(createOneRegionTable(core));
    clock.advance(300); // the start's quiet period (its timer)
    const create = await creating;
    expect((create as RegionDbError).code, 'CreateTable').to.equal(ErrorCode.Unavailable);
    await recordsReadAgain(core, clock, restored);
    expect(restored.state.tables['t'], 'dropped once the records are read').to.equal(undefined);
    expect(restored.state.droppedRegions?.[regionId]).to.be.a('number');
  });

  it('a copy saved after the first report, the drop records unreadable at start: no node is told to join the dropped region before they are read (an empty voter could elect a replica that missed the fence; DT4)', async () => {
    const { copy, regionId } = await dropAfterCopy('reported');
    const restored = restoredFrom(copy);
    store.failing = true;
    const clock = new HandClock();
    const core = await start(restored, clock);
    expect(await nodesComeBack(core), 'no open while the records are unread (before: each node told to join it)').to.deep.equal([]);
    await recordsReadAgain(core, clock, restored);
    expect(restored.state.tables['t'], 'dropped once the records are read').to.equal(undefined);
    expect(await nodesComeBack(core), 'and never opened after').to.deep.equal([]);
    expect(restored.state.droppedRegions?.[regionId]).to.be.a('number');
  });

  it('a live table whose region a node should join: the join waits for the listing, then goes out (DT4)', async () => {
    const catalog = new MemoryCatalog(CLUSTER);
    const first = await start(catalog);
    for (const n of NODES) await first.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    for (const n of NODES) await first.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const route = (await createOneRegionTable(first)).routes![0]!;
    const regionId = route.region_id!;
    const peers = new Map((route.peers ?? []).map((p) => [Number(p.node_id), Number(p.peer_id)]));
    for (const n of NODES) {
      const replicas = [replicaReport({ regionId, peerId: peers.get(n)!, leader: n === 1, leaderNodeId: 1, voters: [...peers.values()] })];
      await first.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
    }
    first.halt();
    store.failing = true;
    const clock = new HandClock();
    const core = await start(catalog, clock);
    // Node 3 lost its replica's files (no report of it); nodes 1 and 2 still host theirs.
    const beat = async (n: number) => {
      const replicas = n === 3 ? [] : [replicaReport({ regionId, peerId: peers.get(n)!, leader: n === 1, leaderNodeId: 1, voters: [...peers.values()] })];
      const res = await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
      return opensOf((res.instructions ?? []).flatMap((i) => (i.open_region ? [i.open_region] : [])), n);
    };
    for (const n of NODES) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    const held: string[] = [];
    for (const n of NODES) held.push(...(await beat(n)));
    expect(held, 'no join while the records are unread').to.deep.equal([]);
    store.failing = false;
    for (let i = 0; i < 6; i++) {
      clock.advance(200);
      core.onTickTimer();
    }
    let opens: string[] = [];
    for (let i = 0; i < 100 && opens.length === 0; i++) {
      await new Promise((ok) => setTimeout(ok, 10));
      opens = await beat(3);
    }
    expect(opens, 'the join, once the listing succeeded').to.deep.equal([`${regionId}@3 join`]);
  });

  it('a repair procedure\'s open waits for the listing as reconciliation\'s does: none staged while the drop records are unread, then sent (DT4, review)', async () => {
    const nodes = [1, 2, 3, 4];
    const catalog = new MemoryCatalog(CLUSTER);
    const first = await start(catalog);
    for (const n of nodes) await first.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    for (const n of nodes) await first.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const route = (await createOneRegionTable(first)).routes![0]!;
    const regionId = route.region_id!;
    const peers = new Map((route.peers ?? []).map((p) => [Number(p.node_id), Number(p.peer_id)]));
    first.halt();
    // A metasrv started while the drop records cannot be read; the region's replica on one node failed.
    store.failing = true;
    const core = await start(catalog);
    const [failedNode, leaderNode] = [...peers.keys()].filter((n) => n !== 1).concat([1]);
    const free = nodes.find((n) => !peers.has(n))!;
    const beat = async (n: number) => {
      const peer = peers.get(n);
      const replicas = peer === undefined ? [] : [replicaReport({ regionId, peerId: peer, leader: n === leaderNode, leaderNodeId: leaderNode!, voters: [...peers.values()], ...(n === failedNode ? { failure: 'corrupt WAL record (test)' } : {}) })];
      const res = await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
      return opensOf((res.instructions ?? []).flatMap((i) => (i.open_region ? [i.open_region] : [])), n);
    };
    for (const n of nodes) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    const repair = () => Object.values(catalog.state.procedures).find((p) => p.kind === 'repair-replica');
    const opens: string[] = [];
    /** Beats of every node and a tick, every 20 ms, at most `rounds` times or until `done`. */
    const rounds = async (count: number, done: () => boolean = () => false) => {
      for (let i = 0; i < count && !done(); i++) {
        for (const n of nodes) opens.push(...(await beat(n)));
        core.onTickTimer();
        await new Promise((ok) => setTimeout(ok, 20));
      }
    };
    await rounds(60, () => (repair()?.notes ?? []).some((note) => note.startsWith('new peer')));
    expect(repair(), 'a repair-replica placed a new peer').to.not.equal(undefined);
    await rounds(10);
    expect(opens, 'no open while the drop records are unread (before: the repair\'s open of the new peer)').to.deep.equal([]);
    store.failing = false;
    await rounds(100, () => opens.some((o) => o.startsWith(`${regionId}@${free} `)));
    expect(opens.filter((o) => o.startsWith(`${regionId}@`)), 'the new peer opened once the records are read').to.include(`${regionId}@${free} join`);
  });

  it('recover of a table a restored copy still holds waits for the drop records: UNAVAILABLE while unread (no region started over), then NOT_FOUND once the table is dropped again (review of DT2)', async () => {
    const { copy } = await dropAfterCopy('reported');
    const restored = restoredFrom(copy);
    store.failing = true;
    const { admin, recovers } = recordingRecoveries();
    const core = await start(restored, systemClock, admin);
    await nodesComeBack(core);
    const refused = await outcomeOf(core.recoverTable('t', true));
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `recover while the records are unread: ${String(refused)}`).to.equal(true);
    expect((refused as RegionDbError).message).to.contain('the object store cannot be reached (test)');
    expect(recovers, 'regions started over from the object store').to.deep.equal([]);
    store.failing = false;
    const after = await outcomeOf(core.recoverTable('t', true));
    expect(isRegionDbError(after, ErrorCode.NotFound), `recover once the records are read: ${String(after)}`).to.equal(true);
    expect(recovers).to.deep.equal([]);
  });

  it('many drop records (150,000): the listing still succeeds and the table id allocator goes above them (review of DT2)', async () => {
    class ManyRecords extends DelegatingObjectStore {
      override async list(prefix: string): Promise<ObjectMeta[]> {
        if (!prefix.startsWith(DROP_OBJECT_PREFIX)) return super.list(prefix);
        const out: ObjectMeta[] = [];
        for (let i = 0; i < 150_000; i++) out.push({ key: dropObjectKey(1024 + i), size: 10, lastModifiedMs: 0 } as ObjectMeta);
        return out;
      }
    }
    const many = new ManyRecords(new FsObjectStore(dir));
    const core = await start(new MemoryCatalog(CLUSTER), systemClock, fenceable, many);
    await nodesComeBack(core);
    const created = await createOneRegionTable(core);
    expect(Number(created.table?.table_id), 'the new table\'s id').to.equal(1024 + 150_000);
  });

  it('a copy saved with the drop\'s mark, restored after the drop: CreateTable of the name is never refused "being dropped" — UNAVAILABLE while the records are unread, then created under a new id', async () => {
    const catalog = new MemoryCatalog(CLUSTER);
    let copy: CatalogState | undefined;
    const admin: DatanodeAdmin = {
      openRegion: async () => ({}) as never,
      fenceRegion: async () => {
        copy ??= structuredClone(catalog.state); // the mark is saved before any fence
        return { fence_index: '12' } as never;
      },
    };
    const first = await start(catalog, systemClock, admin);
    await nodesComeBack(first);
    await createOneRegionTable(first);
    expect(await first.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 1 });
    first.halt();
    expect(copy?.droppingTables?.['t'], 'the copy holds the mark').to.be.a('number');
    const restored = restoredFrom(copy!);
    store.failing = true;
    const core = await start(restored);
    await nodesComeBack(core);
    const refused = await outcomeOf(createOneRegionTable(core));
    expect((refused as RegionDbError).code, `while the records are unread: ${String(refused)}`).to.equal(ErrorCode.Unavailable);
    store.failing = false;
    const created = await createOneRegionTable(core);
    expect(Number(created.table?.table_id), 'created under a new id (before: ALREADY_EXISTS "being dropped")').to.equal(1025);
  });

  it('a metasrv group whose committed catalog is a copy older than the drop: the leader drops the table again at its takeover (committed), bootstrapping nothing', async () => {
    const { copy, regionId } = await dropAfterCopy('created');
    for (const readable of [false, true]) {
      const group = new OneMemberGroup();
      group.applied = encodeCatalog(copy); // `meta seed` from the copy, say
      store.failing = !readable;
      const core = new MetasrvCore(testMetasrvConfig(CLUSTER, { storage: { type: 'fs', root: dir } }), silentLogger, 3, { admin: fenceable, procedureClock: { nowMs: () => Date.now() }, clock: systemClock });
      started.push(core);
      core.joinGroup(group as unknown as MetaGroup, store);
      await core.takeover(group.term);
      expect(await nodesComeBack(core), `no bootstrap (records ${readable ? 'read' : 'unreadable'})`).to.deep.equal([]);
      const committed = decodeCatalog(group.applied!, 'the group');
      if (readable) {
        expect(committed.tables['t'], 'dropped in the committed catalog').to.equal(undefined);
        expect(committed.droppedRegions?.[regionId]).to.be.a('number');
      } else {
        expect(committed.tables['t'], 'kept while the records are unread').to.not.equal(undefined);
      }
      core.halt();
    }
  });

  it('a record that cannot be written fails the drop UNAVAILABLE (the table stays, marked); the next attempt writes it and answers OK', async () => {
    const catalog = new MemoryCatalog(CLUSTER);
    const core = await start(catalog);
    await nodesComeBack(core);
    await createOneRegionTable(core);
    store.failing = true;
    const refused = await outcomeOf(core.dropTable({ name: 't' } as never));
    expect((refused as RegionDbError).code, String(refused)).to.equal(ErrorCode.Unavailable);
    expect((refused as RegionDbError).message).to.include('drop record could not be written');
    expect(catalog.state.tables['t'], 'the table stays').to.not.equal(undefined);
    expect(catalog.state.droppingTables?.['t'], 'marked').to.be.a('number');
    store.failing = false;
    expect(await core.dropTable({ name: 't' } as never)).to.deep.equal({ regions_dropped: 1 });
    expect((await store.list(DROP_OBJECT_PREFIX)).map((o) => o.key)).to.deep.equal([dropObjectKey(1024)]);
  });

  it('a drop whose record landed but whose attempt failed: the marked table is not recovered (its regions would start over unfenced; review of DT2)', async () => {
    /** The record's put lands, then its answer is lost (an outcome the metasrv cannot know). */
    class LandsThenFails extends DelegatingObjectStore {
      override async put(key: string, data: Uint8Array): Promise<void> {
        await super.put(key, data);
        if (key.startsWith(DROP_OBJECT_PREFIX)) throw new RegionDbError(ErrorCode.StorageUnavailable, 'the answer was lost (test)');
      }
    }
    const { admin, recovers } = recordingRecoveries();
    const catalog = new MemoryCatalog(CLUSTER);
    const core = await start(catalog, systemClock, admin, new LandsThenFails(new FsObjectStore(dir)));
    await nodesComeBack(core);
    await createOneRegionTable(core);
    const failed = await outcomeOf(core.dropTable({ name: 't' } as never));
    expect((failed as RegionDbError).code, String(failed)).to.equal(ErrorCode.Unavailable);
    expect(catalog.state.droppingTables?.['t'], 'marked').to.be.a('number');
    const refused = await outcomeOf(core.recoverTable('t', true));
    expect(isRegionDbError(refused, ErrorCode.ConditionFailed), `recover of the marked table: ${String(refused)}`).to.equal(true);
    expect((refused as RegionDbError).message).to.contain('its drop is recorded in the object store');
    expect(recovers, 'regions started over from the object store').to.deep.equal([]);
  });

  /** A second one-region table, `u`, through the core. */
  const createU = (core: MetasrvCore) =>
    core.createTable({
      name: 'u',
      columns: [
        { name: 'host', type: 'STRING', semantic: 'TAG' },
        { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
      ],
      region_count: 1,
      request_token: '',
    } as never);

  for (const damage of ['a flipped byte', 'another table named'] as const) {
    for (const copyAt of ['created', 'reported'] as const) {
      it(`a damaged drop record (${damage}; copy ${copyAt === 'created' ? "before the region's first report" : 'after it'}) holds only its table: none of its replicas opened, no recovery, its status names the record; another table is created and opened; the record repaired, the drop is finished (review of DT2)`, async () => {
        const { copy, regionId } = await dropAfterCopy(copyAt);
        const key = dropObjectKey(1024);
        const good = await store.get(key);
        if (damage === 'a flipped byte') {
          const bad = Uint8Array.from(good);
          bad[bad.length - 3]! ^= 0x10;
          await store.put(key, bad);
        } else {
          await store.put(key, encodeDropObject(CLUSTER, { tableId: 1024, name: 'v' }));
        }
        const restored = restoredFrom(copy);
        const clock = new HandClock();
        const { admin, recovers } = recordingRecoveries();
        const core = await start(restored, clock, admin);
        const opens = await nodesComeBack(core);
        expect(opens, `no replica of t opened (before: ${copyAt === 'created' ? 'none, but nothing else either' : 'each node told to join it'})`).to.deep.equal([]);
        // Before: the listing failed, and with it every CreateTable (UNAVAILABLE) for as long as the record stayed damaged.
        const creating = outcomeOf(createU(core));
        clock.advance(300); // the start's quiet period (its timer)
        expect(await creating, 'CreateTable of another table').to.equal('answered');
        const uRegion = (await core.getRoutes({ table: 'u' } as never)).routes![0]!.region_id!;
        const later = await nodesComeBack(core);
        expect(later.filter((o) => o.startsWith(`${regionId}@`)), "t's replicas").to.deep.equal([]);
        expect(later, "u's region bootstrapped on every node").to.include.members(NODES.map((n) => `${uRegion}@${n} bootstrap`));
        expect(restored.state.tables['t'], 'the table kept (the record may be bogus)').to.not.equal(undefined);
        const recovered = await outcomeOf(core.recoverTable('t', true));
        expect(isRegionDbError(recovered, ErrorCode.ConditionFailed), `RecoverTable of t: ${String(recovered)}`).to.equal(true);
        expect((recovered as RegionDbError).message).to.contain(key);
        expect(recovers, 'regions started over from the object store').to.deep.equal([]);
        const info = (await core.listNodes()).region_infos!.find((r) => r.route?.region_id === regionId)!;
        expect(info.problems!.join('\n')).to.contain(`the drop record ${key} of table t cannot be read`);
        // Listed again (every 10 s while a record is unreadable), still damaged: still held.
        const folderListings = store.folderListings;
        const recordListings = store.recordListings;
        for (let i = 0; i < 55; i++) {
          clock.advance(200);
          core.onTickTimer();
          await new Promise((ok) => setTimeout(ok, 5));
        }
        expect(restored.state.tables['t'], 'still held after a relist').to.not.equal(undefined);
        expect(store.recordListings, 'the drop records listed again').to.be.greaterThan(recordListings);
        expect(store.folderListings, 'the region folders not listed again (the allocator is above them)').to.equal(folderListings);
        expect((await nodesComeBack(core)).filter((o) => o.startsWith(`${regionId}@`)), "t's replicas after a relist").to.deep.equal([]);
        // Repaired: the tick's next listing finishes the drop.
        await store.put(key, good);
        for (let i = 0; i < 55 && restored.state.tables['t'] !== undefined; i++) {
          clock.advance(200);
          core.onTickTimer();
          await new Promise((ok) => setTimeout(ok, 5));
        }
        expect(restored.state.tables['t'], 'dropped once the record reads').to.equal(undefined);
        expect(restored.state.droppedRegions?.[regionId]).to.be.a('number');
        expect(restored.state.tables['u'], 'u untouched').to.not.equal(undefined);
      });
    }
  }

  /** Nodes on which the region has no replica any more (a real drop destroyed them): FenceRegion answers NOT_FOUND, as a datanode does. */
  const hostingNothing: DatanodeAdmin = {
    openRegion: async () => ({}) as never,
    fenceRegion: async (to: string) => {
      throw new RegionDbError(ErrorCode.NotFound, `the region has no replica on ${to} (test)`);
    },
  };

  it('DropTable of a table held by a damaged drop record whose replicas are gone finishes: nothing left to fence, the record rewritten whole, the name free again — but not while a node placing it is down (review of DT3)', async () => {
    const { copy, regionId } = await dropAfterCopy('created');
    const key = dropObjectKey(1024);
    const bad = Uint8Array.from(await store.get(key));
    bad[bad.length - 3]! ^= 0x10;
    await store.put(key, bad);
    const restored = restoredFrom(copy);
    const clock = new HandClock();
    const core = await start(restored, clock, hostingNothing);
    // Nodes 1 and 2 come back; node 3, which the copy places a replica on, does not (yet).
    for (const n of [1, 2]) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    for (const n of [1, 2]) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const drive = async (call: Promise<unknown>) => {
      const outcome = outcomeOf(call);
      let settled = false;
      void outcome.then(() => (settled = true));
      for (let i = 0; i < 400 && !settled; i++) {
        clock.advance(50);
        await new Promise((ok) => setTimeout(ok, 1));
      }
      return outcome;
    };
    const early = await drive(core.dropTable({ name: 't', request_token: 'd1' } as never));
    expect(isRegionDbError(early, ErrorCode.Unavailable), `with node 3 unheard of: ${String(early)}`).to.equal(true);
    expect(restored.state.tables['t'], 'kept while a node placing it may still host a replica').to.not.equal(undefined);
    const n3 = 3;
    await core.registerNode({ cluster_id: CLUSTER, node_id: String(n3), addr: addr(n3), http_addr: addr(n3), store_id: `store-${n3}` } as never, anyone);
    await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n3), addr: addr(n3), replicas: [], store_id: `store-${n3}` } as never, anyone);
    for (const n of [1, 2]) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const dropped = await drive(core.dropTable({ name: 't', request_token: 'd2' } as never));
    expect(dropped, 'DropTable once no live node hosts it (before: UNAVAILABLE forever, NOT_FOUND fences)').to.equal('answered');
    expect(restored.state.tables['t']).to.equal(undefined);
    expect(restored.state.droppedRegions?.[regionId]).to.be.a('number');
    expect(encodeDropObject(CLUSTER, { tableId: 1024, name: 't' }), 'the record, whole again').to.deep.equal(await store.get(key));
    // The nodes heard from again: `drive` moved the hand clock by as many steps as the drop took
    // real event-loop turns (more on a loaded machine), enough to take silent nodes for suspect,
    // and placement needs three live ones (a load-dependent failure before: "need 3 healthy
    // datanodes for placement, only 2 available").
    for (const n of [1, 2, 3]) await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, anyone);
    const again = await createOneRegionTable(core);
    expect(Number(again.table?.table_id), 'the name free again, under a new id').to.equal(1025);
  });

  it('an object under the drop records\' prefix whose key names no table id is logged and left alone: CreateTable goes on (review of DT2)', async () => {
    await store.put(`${DROP_OBJECT_PREFIX}notes.txt`, new TextEncoder().encode('not a record'));
    const core = await start(new MemoryCatalog(CLUSTER));
    await nodesComeBack(core);
    const created = await outcomeOf(createOneRegionTable(core));
    expect(created, 'before: UNAVAILABLE, "not a drop record object\'s key"').to.equal('answered');
  });

  it('a record of another cluster is refused: no bootstrap, the table kept, until it is removed', async () => {
    const { copy } = await dropAfterCopy('created');
    await store.put(dropObjectKey(1024), encodeDropObject('other-cluster', { tableId: 1024, name: 't' }));
    const restored = restoredFrom(copy);
    const core = await start(restored);
    expect(await nodesComeBack(core), 'no bootstrap').to.deep.equal([]);
    expect(restored.state.tables['t'], 'neither taken up nor passed over').to.not.equal(undefined);
    const create = await outcomeOf(createOneRegionTable(core));
    expect((create as RegionDbError).code).to.equal(ErrorCode.Unavailable);
  });
});
