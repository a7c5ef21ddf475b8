// A standby datanode that was down (or unreachable) while `regiondb standby promote` ran never
// got its StandbyPromote call, so it has no fence file of its own; the regions it hosts were cut
// through their leaders on the other nodes and it replays that cut from their logs. Such a node
// must still know its cluster was promoted (docs/replication.md, "Fencing the old primary"): it is
// what the old primary's fence check and stream may ask, and what clients write to once it leads.
// Findings D1–D4 (docs/correctness.md); the model they are checked against is docs/replication.md,
// "One writable site" (promotion epochs, the two-phase promotion). First written on the branch
// `hunt` against the first fixes; adapted here to the epoch model (cuts carry their epoch).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { systemClock, wallClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { Datanode } from '../../src/datanode/datanode.js';
import { RegionState, type ShippedEntry, type TableSchema, encodeCommand, stampCommand } from '../../src/engine/index.js';
import { StandbyState } from '../../src/engine/standby-state.js';
import { encodeManifest } from '../../src/engine/manifest.js';
import { readFence, writeFence } from '../../src/standby/fence.js';
import { Receiver } from '../../src/standby/receiver.js';
import { promoteStandby } from '../../src/standby/promote.js';
import { Shipper } from '../../src/standby/shipper.js';
import type { SiteCredentials } from '../../src/standby/site-credentials.js';
import { cpuSchema } from '../fixtures/schemas.js';
import { twoNodeStandby } from '../fixtures/two-node-standby.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });
const regionId = ((7n << 32n) | 0n).toString();
const put = (requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId: 'primary-client', requestId, rows: [[key, 1, v]] });
const shipped = (index: number, stampMs: number, key: string, v: number): ShippedEntry => ({ index, stampMs, data: stampCommand(put(index, key, v), stampMs) });

/** A region replica as the receiver sees it: its replicated state, and whether this node leads it. */
function replicaOf(state: RegionState, leader: boolean) {
  return { regionId, isLeader: () => leader, stateMachine: state };
}

/** The part of a datanode the receiver reads for status, the write gate and promotion. */
function fakeDatanode(replicas: ReturnType<typeof replicaOf>[]): Datanode {
  return {
    nodeId: 3,
    metas: new Map([[regionId, { schema }]]),
    regionServer: {
      allReplicas: () => replicas,
      replica: (id: string) => replicas.find((r) => r.regionId === id),
    },
  } as unknown as Datanode;
}

describe('a standby datanode that missed its promotion (down while it ran)', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'regiondb-missed-promotion-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('learns it from the cut it replayed: reports promoted, keeps its fence across a restart, and takes client writes only once told to promote', async () => {
    // The region's log as every replica applies it: entries received, then the promotion's cut
    // (proposed by the leader on another node, which had been told to promote).
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2)], watermarkMs: 200 }));
    await state.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 200, epoch: 1 }));
    expect(state.standby?.mode, 'the region itself is promoted').to.equal('promoted');

    // This node restarts after the promotion, catches up and comes to lead the region.
    const dn = fakeDatanode([replicaOf(state, true)]);
    const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());

    // The old primary's fence check (StandbyStatus) must not hear "standby": it would take writes.
    expect(receiver.statusResponse().role, 'what the old primary asks at its start').to.equal('promoted');
    // Adopted from a region, the promotion may be one a later epoch has superseded that this node
    // cannot see yet: it answers as promoted, but takes no client write until StandbyPromote.
    const write = put(9, 'c', 3);
    expect(() => receiver.writeGate.admit(regionId, write), 'a client write before StandbyPromote').to.throw(/read-only standby/);
    // Durable: the same node restarted is promoted from its start (and still adopted only).
    expect(readFence(dataDir)?.state, 'the fence file').to.equal('promoted');
    expect(readFence(dataDir)?.adopted, 'adopted from a region').to.equal(true);
    expect(readFence(dataDir)?.atMs, 'at the cut the region replayed').to.equal(200);
    expect(readFence(dataDir)?.epoch, 'at the epoch the region replayed').to.equal(1);
    // Older builds decode the record by its state and refuse an unknown one (CORRUPTION): the
    // adopted record must not read as a plain `promoted` there (it would admit writes).
    expect(JSON.parse(readFileSync(join(dataDir, 'standby-fence.json'), 'utf8')).state, 'on disk').to.not.equal('promoted');
    const restarted = new Receiver(fakeDatanode([replicaOf(state, true)]), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect(restarted.role()).to.equal('promoted');
    expect(() => restarted.writeGate.admit(regionId, write), 'restarted, still adopted').to.throw(/read-only standby/);
    // `standby promote` run again sends StandbyPromote at the promotion's own cut and epoch.
    await restarted.promote({ cut_ms: '200', epoch: '1' } as Parameters<Receiver['promote']>[0]);
    expect(readFence(dataDir)?.adopted, 'the record StandbyPromote wrote').to.equal(undefined);
    expect(() => restarted.writeGate.admit(regionId, write), 'a client write to a promoted region it leads').to.not.throw();
  });

  it('a region cut by an earlier promotion this node was fenced from since (failed back, a standby again) does not promote it', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 100, epoch: 1 }));
    // Promoted at epoch 1, then a primary, fenced by its own standby's promotion at epoch 2, now a
    // standby (the record's time is deliberately before the cut: epochs are compared, not clocks).
    writeFence(dataDir, { state: 'fenced', epoch: 2, atMs: 50 });
    const receiver = new Receiver(fakeDatanode([replicaOf(state, true)]), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect(receiver.statusResponse().role).to.equal('standby');
    expect(readFence(dataDir)?.state, 'the fenced record stays').to.equal('fenced');
  });

  it('a stale promotion (a region cut in an earlier failover, the site failed back since) replayed by a node with no fence file never fences the current primary', async () => {
    // Site B was promoted at epoch 1 (this region's cut), ran as a primary, and site A was promoted
    // back at epoch 2. This node of B missed all of it (no fence file) and is B's standby now.
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 100, epoch: 1 }));
    const receiver = new Receiver(seedingDatanode(state), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    const asked = receiver.statusResponse(); // site A's fence check at its start
    // Before A's stream reaches it, this node must not take client writes (they would be
    // acknowledged, then replaced by A's seed).
    expect(() => receiver.writeGate.admit(regionId, put(9, 'c', 3)), 'a client write before A\'s stream arrives').to.throw(/read-only standby/);
    // Site A's primary (promoted at epoch 2) with that answer:
    const aDir = mkdtempSync(join(tmpdir(), 'regiondb-site-a-'));
    try {
      writeFence(aDir, { state: 'promoted', epoch: 2, atMs: 9000 });
      const a = new Shipper(fakeDatanode([]), { addrs: [], addrOverrides: {}, mode: 'async', shipIntervalMs: 100, dataDir: aDir, clusterId: 'site-a', site: { close: () => undefined } as unknown as SiteCredentials }, silentLogger, systemClock, wallClock, new Registry());
      a.start();
      await a.stop();
      if (asked.role === 'promoted') {
        expect(Number(asked.fence_epoch), 'the stale promotion says its own epoch').to.equal(1);
        expect(() => (a as unknown as { promotedAnswer(epoch: number): void }).promotedAnswer(Number(asked.fence_epoch)), 'not a fence').to.throw(/below this primary/);
      }
      // The same answer to its fence check at start (StandbyStatus).
      (a as unknown as { fenceAnswer(role: string, epoch: number, addr: string): void }).fenceAnswer(asked.role, Number(asked.fence_epoch), 'b:1');
      expect(a.role(), 'site A, the current primary').to.equal('primary');
      expect(readFence(aDir)?.state, "site A's record").to.equal('promoted');
    } finally {
      rmSync(aDir, { recursive: true, force: true });
    }
    // Site A's stream (epoch 2) is taken: this node follows it, its region is re-opened by the seed.
    expect((await receiver.ship(probe(2))).promoted, 'the probe').to.equal(false);
    expect(receiver.role(), 'a standby of site A').to.equal('standby');
    expect((await receiver.seed(seedRequest(80, 6000, 2))).promoted).to.equal(false);
    expect(state.standby!.mode).to.equal('standby');
  });

  it('a promotion of its own made history by one region is replaced at once by a later one another region replayed', async () => {
    // This node was promoted at 1; a region here follows a primary at 2 since (that primary was
    // promoted after), and another region was cut at 3 by this cluster's promotion after that,
    // which this node missed.
    const following = new RegionState(schema);
    await following.apply(1, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 2 }));
    const cut = new RegionState(schema);
    await cut.apply(1, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 2 }));
    await cut.apply(2, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await cut.apply(3, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 100, epoch: 3 }));
    writeFence(dataDir, { state: 'promoted', epoch: 1, atMs: 50 });
    const replicas = [
      { regionId: 'following', isLeader: () => true, stateMachine: following },
      { regionId: 'cut', isLeader: () => true, stateMachine: cut },
    ];
    const dn = { nodeId: 3, metas: new Map(), regionServer: { allReplicas: () => replicas, replica: (id: string) => replicas.find((r) => r.regionId === id) } } as unknown as Datanode;
    const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect([receiver.role(), receiver.fenceEpoch()], 'the first look').to.deep.equal(['promoted', 3]);
    expect(readFence(dataDir), 'adopted at 3').to.deep.equal({ state: 'promoted', epoch: 3, atMs: 100, adopted: true });
  });

  it('a standby whose regions are not cut stays a standby: refuses client writes and reports standby', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    const receiver = new Receiver(fakeDatanode([replicaOf(state, true)]), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect(receiver.statusResponse().role).to.equal('standby');
    expect(() => receiver.writeGate.admit(regionId, put(9, 'c', 3))).to.throw(/read-only standby/);
    expect(readFence(dataDir), 'no fence file').to.equal(undefined);
  });
});

/** A datanode whose proposals are applied in log order once `applyAll()` runs (a raft round held open). */
function loggingDatanode(state: RegionState) {
  const replica = replicaOf(state, true);
  const log: { command: Uint8Array; resolve: (r: unknown) => void }[] = [];
  let listNodes: (() => void) | undefined;
  let index = 10;
  const dn = {
    nodeId: 3,
    metas: new Map([[regionId, { schema }]]),
    regionServer: {
      allReplicas: () => [replica],
      replica: (id: string) => (id === regionId ? replica : undefined),
      propose: (_id: string, command: Uint8Array) => new Promise((resolve) => log.push({ command, resolve })),
      readBarrier: () => Promise.resolve(), // everything committed is in `log`, applied by applyAll()
    },
    // The release round's ListNodes: answered when the test says so.
    metaCall: (method: string) => {
      if (method === 'GetStandbyPromotion') return Promise.resolve({}); // no promotion recorded
      if (method !== 'ListNodes') return Promise.reject(new Error(`unexpected ${method}`));
      return new Promise((resolve) => {
        listNodes = () => resolve({ nodes: [{ node_id: '3', addr: 'self', state: 'alive' }], region_infos: [{ route: { region_id: regionId } }] });
      });
    },
  } as unknown as Datanode;
  return {
    dn,
    answerListNodes: () => listNodes?.(),
    proposed: () => log.length,
    applyAll: async () => {
      for (const e of log.splice(0)) e.resolve(await state.apply(++index, e.command));
    },
  };
}

describe('a promotion racing a release on one standby datanode (finding D2)', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'regiondb-promote-race-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('a release proposed before the freeze is counted: the cut is never below it, and nothing is released after the freeze', async () => {
    // Received: entries stamped 100 and 300, everything up to 300. Nothing released yet.
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1), shipped(2, 300, 'b', 2)], watermarkMs: 300 }));
    const node = loggingDatanode(state);
    const receiver = new Receiver(node.dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    // The release loop's round: safe time 300 (this node's view, later than the promoter's).
    const round = (receiver as unknown as { releaseRound(): Promise<void> }).releaseRound();
    node.answerListNodes();
    for (let i = 0; i < 50 && node.proposed() === 0; i++) await new Promise((ok) => setImmediate(ok));
    expect(node.proposed(), 'the release to 300 is in the log, not applied yet').to.equal(1);
    // The promotion's first phase arrives while that release is in flight.
    const frozen = receiver.freeze();
    for (let i = 0; i < 20; i++) {
      await node.applyAll();
      await new Promise((ok) => setImmediate(ok));
    }
    await round;
    const positions = await frozen;
    expect(positions[0]?.frozen, 'frozen').to.equal(true);
    expect(Number(positions[0]?.released_ms), 'the freeze answers with the release before it').to.equal(300);
    // A cut the promoter took before that release (200) is refused; the promoter's cut comes from these positions.
    const refused = await receiver.promote({ cut_ms: '200', epoch: '1' } as Parameters<Receiver['promote']>[0]).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    await node.applyAll();
    expect(refused, 'a cut below what the region applied').to.match(/applied up to 300/);
    expect(state.standby!.mode).to.equal('standby');
    expect(readFence(dataDir), 'not fenced by a refused promotion').to.equal(undefined);
    // A release proposed after the freeze (a node whose round computed an even later time) changes nothing.
    const later = [
      node.dn.regionServer.propose(regionId, encodeCommand({ kind: 'standby-append', fromIndex: 3, entries: [shipped(3, 400, 'c', 3)], watermarkMs: 400 })),
      node.dn.regionServer.propose(regionId, encodeCommand({ kind: 'standby-release', upToMs: 400 })),
    ];
    await node.applyAll();
    await Promise.all(later);
    expect([state.standby!.releasedMs, state.standby!.appliedPrimaryIndex], 'S8: no release after the freeze').to.deep.equal([300, 2]);
    const done = receiver.promote({ cut_ms: '300', epoch: '1' } as Parameters<Receiver['promote']>[0]);
    for (let i = 0; i < 5; i++) {
      await node.applyAll();
      await new Promise((ok) => setImmediate(ok));
    }
    await done;
    const s = state.standby!;
    expect([s.mode, s.cutMs, s.promotedEpoch, s.appliedPrimaryIndex, s.droppedEntries]).to.deep.equal(['promoted', 300, 1, 2, 1]);
  });

  it('a node promoted at a cut never cuts there a region that applied past it (a region led here since, released by another node)', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1), shipped(2, 300, 'b', 2)], watermarkMs: 300 }));
    await state.apply(2, encodeCommand({ kind: 'standby-release', upToMs: 300 })); // its previous leader's release
    await state.apply(3, encodeCommand({ kind: 'standby-freeze' }));
    writeFence(dataDir, { state: 'promoted', epoch: 1, atMs: 200 }); // this node was promoted at 200
    const node = loggingDatanode(state);
    const receiver = new Receiver(node.dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    const promoted = receiver.promote({ cut_ms: '200', epoch: '1' } as Parameters<Receiver['promote']>[0]).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    for (let i = 0; i < 20; i++) {
      await node.applyAll();
      await new Promise((ok) => setImmediate(ok));
    }
    const outcome = await promoted;
    expect(state.standby!.mode, `the region was cut at 200 holding the entry stamped 300 (${outcome})`).to.equal('standby');
    expect(outcome, 'the refusal names the region and how far it applied').to.include(regionId).and.to.include('300');
  });
});


describe('a promotion racing a release across standby datanodes (finding D2: the promotion completes)', () => {
  let dirs: string[];
  beforeEach(() => {
    dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'regiondb-promote-two-')));
  });
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a release of a later safe time landing after the promoter first read the positions is below the cut, and the promotion completes', async () => {
    const { states, afterStatus, client } = twoNodeStandby(dirs);
    // Region 0 has everything up to 200; region 1 up to 300 (an entry stamped 300 in each later).
    await states[0]!.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 200 }));
    await states[1]!.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 150, 'b', 1), shipped(2, 300, 'b2', 2)], watermarkMs: 300 }));
    // Right after the promoter's first look (safe time 200), the stream moves region 0 to 300 and
    // node 2's release round — its own later safe time, 300 — releases region 1 up to 300.
    afterStatus.set(2, async () => {
      await states[0]!.apply(2, encodeCommand({ kind: 'standby-append', fromIndex: 2, entries: [shipped(2, 250, 'a2', 2)], watermarkMs: 300 }));
      await states[1]!.apply(3, encodeCommand({ kind: 'standby-release', upToMs: 300 }));
    });
    const report = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    // C2 of the cut: no region holds an entry stamped after the cut, and none lost one before it.
    for (const [k, st] of states.entries()) {
      const s = st.standby!;
      expect(s.mode, `region ${k}`).to.equal('promoted');
      expect(s.cutMs, `region ${k}'s cut`).to.equal(report.cutMs);
      expect(s.releasedMs, `region ${k} applied up to ${s.releasedMs}, past the cut ${report.cutMs}`).to.be.at.most(report.cutMs);
    }
    expect(report.cutMs, 'the cut counts the release').to.equal(300);
    expect(report.epoch).to.equal(1);
    expect((await states[0]!.get({ k: 'a2', ts: 1 }))?.row['v'], 'region 0 keeps its entry stamped 250 (before the cut)').to.equal(2);
  });
});

describe('`standby promote` run again after nodes missed their StandbyPromote call', () => {
  let dirs: string[];
  beforeEach(() => {
    dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'regiondb-promote-adopted-')));
  });
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('tells the nodes that adopted the promotion from their regions: they take client writes from then on', async () => {
    const { states, ids, receivers, client } = twoNodeStandby(dirs);
    // Both regions were cut at 200, epoch 1 (through leaders elsewhere); neither node was told.
    for (const st of states) {
      await st.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 200 }));
      await st.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 200, epoch: 1 }));
    }
    expect(receivers.map((r) => r.role()), 'adopted').to.deep.equal(['promoted', 'promoted']);
    expect(() => receivers[0]!.writeGate.admit(ids[0]!, put(9, 'c', 3)), 'adopted only').to.throw(/read-only standby/);
    const report = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect([report.cutMs, report.epoch]).to.deep.equal([200, 1]);
    for (const [k, r] of receivers.entries()) {
      expect(readFence(dirs[k]!)?.adopted, `node ${k + 1}'s record`).to.equal(undefined);
      expect(() => r.writeGate.admit(ids[k]!, put(9, 'c', 3)), `node ${k + 1}`).to.not.throw();
    }
  });
});

describe('a promotion started too early (finding D2: the first phase must not trap the standby)', () => {
  let dirs: string[];
  beforeEach(() => {
    dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'regiondb-promote-early-')));
  });
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('while a region has no position yet (still to be seeded), nothing is frozen: the seed can still land, and a later promotion completes', async () => {
    const { states, client } = twoNodeStandby(dirs);
    await states[0]!.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 200 }));
    // Region 1 has received nothing: no consistent point, the promotion gives up.
    const early = await promoteStandby(client, { timeoutMs: 300, nowMs: () => Date.now() }).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    expect(early).to.match(/no consistent point yet/);
    expect(states.map((st) => st.standby?.frozen ?? false), 'no region frozen').to.deep.equal([false, false]);
    // The seed arrives (it would be ignored by a frozen region), then the promotion completes.
    await states[1]!.apply(2, encodeCommand({ kind: 'standby-seed', primaryIndex: 5, seededThroughMs: 150, versionOffset: 0, ssts: [], dedup: '[]' }));
    await states[1]!.apply(3, encodeCommand({ kind: 'standby-append', fromIndex: 6, entries: [], watermarkMs: 200 }));
    const report = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect([report.cutMs, states[1]!.standby!.seededIndex, states[1]!.standby!.mode]).to.deep.equal([200, 5, 'promoted']);
  });
});

/** A datanode that takes a seed for the region: applies what it proposes at once. */
function seedingDatanode(state: RegionState) {
  const replica = replicaOf(state, true);
  let index = 10;
  return {
    nodeId: 3,
    metas: new Map([[regionId, { schema }]]),
    config: { engine: { sst_gc_grace_ms: 60_000 } },
    metaCall: async (method: string) => {
      if (method !== 'GetRoutes') throw new Error(`unexpected ${method}`);
      return { table: { table_id: 7, region_count: 1 } };
    },
    regionServer: {
      allReplicas: () => [replica],
      replica: (id: string) => (id === regionId ? replica : undefined),
      leaderReplica: () => replica,
      propose: (_id: string, command: Uint8Array) => state.apply(++index, command),
    },
  } as unknown as Datanode;
}

/** The new primary's seed of the region at its index `at` (a manifest naming no SST: the region was emptied). */
function seedRequest(at: number, seededThroughMs: number, primaryEpoch: number) {
  const manifest = encodeManifest({ formatVersion: 1, regionId: '99', schema, flushedIndex: at, flushedTerm: 3, voters: [1], learners: [], ssts: [], dedup: '[]', writtenAtMs: 0 });
  return { primary_cluster_id: 'site-a', table: { name: 'kv', region_count: 1 }, region_number: 0, version_offset: '0', primary_epoch: String(primaryEpoch), manifest: Buffer.from(manifest), objects: [], seeded_through_ms: String(seededThroughMs) } as unknown as Parameters<Receiver['seed']>[0];
}

/** A probe of the stream (from_index 0) from a primary at `primaryEpoch`. */
function probe(primaryEpoch: number) {
  return { primary_cluster_id: 'site-a', table: { name: 'kv', region_count: 1 }, region_number: 0, from_index: '0', entries: [], watermark_ms: '0', version_offset: '0', primary_epoch: String(primaryEpoch) } as unknown as Parameters<Receiver['ship']>[0];
}

describe('the way back a second time: an old primary that had itself been a promoted standby (finding D3)', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'regiondb-reseed-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  /** The region as such a cluster holds it: a standby of site A, promoted at epoch 1 and cut 200 (site A lost), a primary since. */
  async function promotedEarlier(kind: 'standby-promote' | 'standby-promote-epoch' = 'standby-promote-epoch'): Promise<RegionState> {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand(kind === 'standby-promote' ? { kind, cutMs: 200 } : { kind, cutMs: 200, epoch: 1 }));
    await state.apply(3, put(50, 'mine', 5)); // its own writes as the primary
    return state;
  }

  it('a region promoted in an earlier failover takes the seed of a primary promoted later (a higher epoch) and follows its stream', async () => {
    const state = await promotedEarlier();
    // Site A failed back (promoted at epoch 2) and this cluster restarts as its standby. Its
    // node learned nothing of it (no fence file): the epoch in the requests is what counts.
    const receiver = new Receiver(seedingDatanode(state), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    const probed = await receiver.ship(probe(2));
    expect(probed.promoted, 'the probe of the later primary is not refused').to.equal(false);
    expect(probed.region?.received_index, 'its position in the new stream: nothing yet (so the primary seeds it)').to.equal('0');
    const res = await receiver.seed(seedRequest(80, 6000, 2));
    expect(res.promoted, 'the standby is not promoted').to.equal(false);
    const s = state.standby!;
    expect(s.mode, 'the seed re-opened the region as a standby').to.equal('standby');
    expect([s.receivedIndex, s.appliedPrimaryIndex, s.primaryEpoch, s.receivedThroughMs]).to.deep.equal([80, 80, 2, 0]);
    expect((await state.get({ k: 'mine', ts: 1 }))?.row['v'], "its own primary's rows are replaced by the seed").to.equal(undefined);
    await state.apply(20, encodeCommand({ kind: 'standby-append', fromIndex: 81, entries: [shipped(81, 6100, 'b', 2)], watermarkMs: 6100 }));
    expect(s.receivedIndex, 'the stream continues after the seed').to.equal(81);
  });

  it('S4 still holds: a seed of an older build, of the promotion\'s own epoch or lower, or to a region promoted without an epoch, leaves a promoted region as it is', async () => {
    const base = { primaryIndex: 80, seededThroughMs: 6000, versionOffset: 0, ssts: [], dedup: '[]' };
    const cases: [string, 'standby-promote' | 'standby-promote-epoch', Uint8Array][] = [
      ['a seed without an epoch', 'standby-promote-epoch', encodeCommand({ kind: 'standby-seed', ...base })],
      ['a seed of the same epoch (in flight across this promotion)', 'standby-promote-epoch', encodeCommand({ kind: 'standby-seed-epoch', ...base, primaryEpoch: 1 })],
      ['a region promoted by a build without epochs', 'standby-promote', encodeCommand({ kind: 'standby-seed-epoch', ...base, primaryEpoch: 5 })],
    ];
    for (const [what, kind, seed] of cases) {
      const state = await promotedEarlier(kind);
      await state.apply(31, seed);
      expect(state.standby!.mode, what).to.equal('promoted');
      expect((await state.get({ k: 'mine', ts: 1 }))?.row['v'], what).to.equal(5);
    }
  });

  it('a seed of an epoch above the promotion but below the epoch the region already follows leaves it promoted, unchanged', async () => {
    const state = await promotedEarlier('standby-promote-epoch');
    await state.apply(31, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 3 })); // a probe of a primary at epoch 3
    const before = { ...state.standby! };
    await state.apply(32, encodeCommand({ kind: 'standby-seed-epoch', primaryIndex: 80, seededThroughMs: 6000, versionOffset: 0, ssts: [], dedup: '[]', primaryEpoch: 2 }));
    expect({ ...state.standby! }, 'refused (S9) before anything was re-opened').to.deep.equal(before);
    expect((await state.get({ k: 'mine', ts: 1 }))?.row['v']).to.equal(5);
  });

  it('an older build refuses the re-opening seed (a new command kind) loudly instead of ignoring what it does not know', async () => {
    // The decoder of the last build before the epoch kinds (git history), fed the new commands.
    const old = await loadPreviousDecoder();
    if (!old) {
      console.log('      (no git history here: the previous build\'s decoder cannot be loaded; this case is not checked)');
      return;
    }
    const base = { primaryIndex: 80, seededThroughMs: 6000, versionOffset: 0, ssts: [], dedup: '[]' };
    const fresh: Uint8Array[] = [
      encodeCommand({ kind: 'standby-seed-epoch', ...base, primaryEpoch: 2 }),
      encodeCommand({ kind: 'standby-promote-epoch', cutMs: 200, epoch: 2 }),
      encodeCommand({ kind: 'standby-freeze' }),
      encodeCommand({ kind: 'standby-epoch', primaryEpoch: 2 }),
    ];
    for (const bytes of fresh) {
      let refused: unknown;
      try {
        old(bytes);
      } catch (err) {
        refused = err;
      }
      expect((refused as { code?: string } | undefined)?.code, `the previous build on kind ${bytes[1]}`).to.equal('CORRUPTION');
    }
    // The first fix's way (an optional field on the old kind) is what an older build silently took.
    const withField = encodeCommand({ kind: 'standby-seed', ...base });
    const json = JSON.parse(Buffer.from(withField.subarray(2)).toString()) as Record<string, unknown>;
    const hunt = Buffer.concat([Buffer.from(withField.subarray(0, 2)), Buffer.from(JSON.stringify({ ...json, reopensPromotedAt: 2 }))]);
    expect((old(new Uint8Array(hunt)) as { kind: string }).kind, 'an optional field is dropped without a word').to.equal('standby-seed');
  });
});

/**
 * decodeCommand of the build before the epoch kinds (commit 1213176, main when they were added),
 * from git, with its imports pointed at this tree (they did not change); undefined without history.
 */
async function loadPreviousDecoder(): Promise<((bytes: Uint8Array) => unknown) | undefined> {
  const { spawnSync } = await import('node:child_process');
  const { writeFileSync } = await import('node:fs');
  const root = join(import.meta.dirname, '..', '..');
  const shown = spawnSync('git', ['show', '1213176:src/engine/command.ts'], { cwd: root, encoding: 'utf8' });
  if (shown.status !== 0 || !shown.stdout) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-old-decoder-'));
  try {
    const src = shown.stdout
      .replace("'../common/errors.js'", JSON.stringify(join(root, 'src/common/errors.ts')))
      .replace("'./command-binary.js'", JSON.stringify(join(root, 'src/engine/command-binary.ts')))
      .replace("'./schema.js'", JSON.stringify(join(root, 'src/engine/schema.ts')));
    const file = join(dir, 'command.ts');
    writeFileSync(file, src);
    const mod = (await import(file)) as { decodeCommand(bytes: Uint8Array): unknown };
    return mod.decodeCommand;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('a promoted standby that ran as a primary, made a standby again before it learned it was fenced (finding D4)', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'regiondb-promoted-history-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  const shipperCfg = (dir: string) => ({ addrs: [], addrOverrides: {}, mode: 'async' as const, shipIntervalMs: 100, dataDir: dir, clusterId: 'site-b', site: { close: () => undefined } as unknown as SiteCredentials });

  it('its old promotion fences nobody: the cluster promoted back (a higher epoch) is not fenced by it, and its first request makes the promotion history', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 200, epoch: 1 }));
    // Promoted at epoch 1 (its own fence file), then restarted as a primary (the way back).
    writeFence(dataDir, { state: 'promoted', epoch: 1, atMs: 200 });
    const shipper = new Shipper(fakeDatanode([replicaOf(state, false)]), shipperCfg(dataDir), silentLogger, systemClock, wallClock, new Registry());
    expect(shipper.role(), 'a primary, not fenced').to.equal('primary');
    expect(readFence(dataDir)?.state, 'starting as a primary rewrites nothing').to.equal('promoted');
    // The other site was promoted back at epoch 2; this node leads no region, so nothing told it
    // it was fenced before the operator restarted it as the standby (the fail-back's role swap).
    const receiver = new Receiver(seedingDatanode(state), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    const asked = receiver.statusResponse();
    // What the promoted-back cluster's shipper (own epoch 2) does with that answer: not a fence.
    const backDir = mkdtempSync(join(tmpdir(), 'regiondb-back-'));
    writeFence(backDir, { state: 'promoted', epoch: 2, atMs: 9000 });
    const promotedBack = new Shipper(fakeDatanode([]), shipperCfg(backDir), silentLogger, systemClock, wallClock, new Registry());
    promotedBack.start();
    await promotedBack.stop();
    expect(asked.role === 'standby' || Number(asked.fence_epoch) === 1, `asked: ${asked.role} at ${asked.fence_epoch}`).to.equal(true);
    if (asked.role === 'promoted') {
      const answer = () => (promotedBack as unknown as { promotedAnswer(epoch: number): void }).promotedAnswer(Number(asked.fence_epoch));
      expect(answer, 'a promotion below its own epoch is not a fence').to.throw(/below this primary/);
    }
    (promotedBack as unknown as { fenceAnswer(role: string, epoch: number, addr: string): void }).fenceAnswer(asked.role, Number(asked.fence_epoch), 'b:1');
    expect(promotedBack.role(), 'the cluster promoted back').to.equal('primary');
    expect(readFence(backDir)?.state, 'its record').to.equal('promoted');
    rmSync(backDir, { recursive: true, force: true });
    // Its first request (epoch 2) makes this node's promotion history, and it takes the re-seed.
    const res = await receiver.seed(seedRequest(80, 6000, 2));
    expect(res.promoted).to.equal(false);
    expect(state.standby!.mode, 're-seeded as a standby').to.equal('standby');
    expect(receiver.role()).to.equal('standby');
    expect(readFence(dataDir), 'its record: superseded at epoch 2').to.deep.include({ state: 'fenced', epoch: 2 });
  });

  it('once the other site answers as its standby, a node running as a primary keeps its promotion only as history: made a standby again it is not promoted, and fences no node of the cluster it follows', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 200, epoch: 1 }));
    writeFence(dataDir, { state: 'promoted', epoch: 1, atMs: 200 });
    const shipper = new Shipper(fakeDatanode([replicaOf(state, true)]), shipperCfg(dataDir), silentLogger, systemClock, wallClock, new Registry());
    shipper.start();
    await shipper.stop();
    const answer = (role: string, epoch: number) => (shipper as unknown as { fenceAnswer(role: string, epoch: number, addr: string): void }).fenceAnswer(role, epoch, 'old-primary:1');
    answer('standby', 1); // the old primary, restarted as this cluster's standby (the way back)
    expect(shipper.role(), 'a primary taking writes').to.equal('primary');
    expect(readFence(dataDir), 'its promotion, now history').to.deep.include({ state: 'primary', epoch: 1 });
    // Made a standby again (a fail-back) before anything told it; its replicas not open yet.
    const receiver = new Receiver(fakeDatanode([]), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect(receiver.role(), 'not promoted by its old promotion').to.equal('standby');
    expect(() => receiver.writeGate.admit(regionId, put(9, 'c', 3)), 'refuses client writes').to.throw(/read-only standby/);
    expect(receiver.statusResponse().fence_epoch, 'it still says the epoch it knows').to.equal('1');
    // A node of the cluster it now follows that does not know its cluster's epoch (added after the
    // fail-back, hosting only regions created since) asks it: not a fence — a standby that is not
    // promoted follows that cluster — and the node learns 1 as a lower bound of its own epoch.
    const newDir = mkdtempSync(join(tmpdir(), 'regiondb-new-node-'));
    try {
      const newNode = new Shipper(fakeDatanode([]), shipperCfg(newDir), silentLogger, systemClock, wallClock, new Registry());
      (newNode as unknown as { fenceAnswer(role: string, epoch: number, addr: string): void }).fenceAnswer('standby', 1, 'b:1');
      expect(newNode.role(), 'not fenced by a standby').to.equal('primary');
      expect(newNode.ownEpoch(), 'learned').to.equal(1);
      expect(readFence(newDir), 'nothing written').to.equal(undefined);
    } finally {
      rmSync(newDir, { recursive: true, force: true });
    }
  });

  it('a mistaken start as a primary keeps a live promotion: restarted as the standby role it is still promoted, and still fences the old primary', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand({ kind: 'standby-promote-epoch', cutMs: 200, epoch: 1 }));
    writeFence(dataDir, { state: 'promoted', epoch: 1, atMs: 200 });
    // The operator starts this node of the live promoted cluster with role = "primary" by mistake…
    const shipper = new Shipper(fakeDatanode([replicaOf(state, true)]), shipperCfg(dataDir), silentLogger, systemClock, wallClock, new Registry());
    shipper.start();
    await shipper.stop();
    // …and back with its right role, before its replicas are open (so only its own record can
    // say it is promoted). The promotion is live: nothing later is known anywhere.
    const receiver = new Receiver(fakeDatanode([]), { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect(receiver.role(), 'still promoted').to.equal('promoted');
    expect(() => receiver.writeGate.admit(regionId, put(9, 'c', 3)), 'takes client writes').to.not.throw();
    const fromOldPrimary = await receiver.ship(probe(0));
    expect([fromOldPrimary.promoted, fromOldPrimary.fence_epoch], 'the returning old primary (epoch 0) is fenced').to.deep.equal([true, '1']);
    expect(readFence(dataDir)).to.deep.include({ state: 'promoted', epoch: 1 });
  });
});

describe('S8–S10 in the region state carried by the manifest', () => {
  it('a frozen, epoch-carrying state round-trips as format 2; a state without them stays format 1 (what older builds read)', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 3 }));
    await state.apply(2, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(3, encodeCommand({ kind: 'standby-freeze' }));
    const text = state.standby!.encode();
    expect((JSON.parse(text) as { version: number }).version).to.equal(2);
    const back = StandbyState.decode(text, 'test');
    expect([back.frozen, back.primaryEpoch, back.promotedEpoch, back.receivedIndex]).to.deep.equal([true, 3, 0, 1]);
    const plain = new RegionState(schema);
    await plain.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    expect((JSON.parse(plain.standby!.encode()) as { version: number }).version).to.equal(1);
  });

  it('a frozen region takes no seed and no release, but keeps taking the stream; a standby-epoch never lowers the epoch', async () => {
    const state = new RegionState(schema);
    await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1)], watermarkMs: 100 }));
    await state.apply(2, encodeCommand({ kind: 'standby-freeze' }));
    await state.apply(3, encodeCommand({ kind: 'standby-seed', primaryIndex: 50, seededThroughMs: 500, versionOffset: 0, ssts: [], dedup: '[]' }));
    await state.apply(4, encodeCommand({ kind: 'standby-release', upToMs: 100 }));
    await state.apply(5, encodeCommand({ kind: 'standby-append', fromIndex: 2, entries: [shipped(2, 150, 'b', 2)], watermarkMs: 150 }));
    await state.apply(6, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 2 }));
    await state.apply(7, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 1 }));
    const s = state.standby!;
    expect([s.seededIndex, s.appliedPrimaryIndex, s.releasedMs, s.receivedIndex, s.primaryEpoch]).to.deep.equal([0, 0, 0, 2, 2]);
  });
});
