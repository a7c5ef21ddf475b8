// Replica identity in the datanode's open and close paths (docs/correctness.md, findings M16,
// M17, M19). A datanode hosts at most one replica of a region, named by its raft peer id; a
// region may come back to the same node under a fresh peer id (repair in place, re-placement).
// An instruction or a late event meant for one replica must not act on another of the region:
//   - a close_region(destroy) naming peer P is refused when the node hosts the region under Q
//     (running, failed, or only as data on disk); peer id 0 keeps the old "whatever is there";
//   - an open_region under P for a region hosted under Q is refused, loudly, never ignored;
//   - a membership change applied by a replica already closed does not get the region deleted.
// Real DatanodeCore and RegionServer over the in-memory log engine; the instructions go through
// the protobuf codec as a heartbeat answer does.
import { expect } from 'chai';
import pino from 'pino';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, type RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { DatanodeCore, type DatanodeCoreDeps } from '../../src/datanode/datanode-core.js';
import type { RegionMeta } from '../../src/datanode/types.js';
import { makeRegionId } from '../../src/metasrv/catalog.js';
import { ConfChangeType, EntryType, bootstrapEntries, encodeConfChange } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import type { Instruction__Output } from '../../src/rpc/generated/index.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { toProtoSchema } from '../../src/rpc/values.js';
import { Counter, waitFor } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';
import type { LogBatch } from '../../src/wal/log-engine.js';
import { cpuSchema } from '../fixtures/schemas.js';

const NODE = 1;
const REGION = makeRegionId(2048, 0);
const enc = new TextEncoder();

/** Every log line at warn or above, parsed. */
function capturingLogger(lines: Record<string, unknown>[]) {
  return pino({ level: 'warn', base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
}

/** An instruction as the datanode receives it: inside a heartbeat answer, encoded and decoded by the loader. */
function overTheWire(instruction: object): Instruction__Output {
  const heartbeat = (loadProtos().definition['regiondb.v1.Meta'] as unknown as Record<string, { responseSerialize(v: unknown): Buffer; responseDeserialize(b: Buffer): unknown }>).Heartbeat!;
  const answer = heartbeat.responseDeserialize(heartbeat.responseSerialize({ instructions: [instruction] })) as { instructions: Instruction__Output[] };
  return answer.instructions[0]!;
}

/**
 * The in-memory log engine, but the next write that makes a membership change's commit durable
 * (LogBatch.requireDurableCommit: the cycle is about to apply that change) waits for the test.
 */
class HeldEngine extends MemoryLogEngine {
  holdNextConfCommit = false;
  /** Holds the next write of any kind (a cycle's batch), until `held` is called. */
  holdNextWrite = false;
  held: (() => void) | undefined;

  override batch(): LogBatch {
    const inner = super.batch();
    let confCommit = false;
    return {
      ...inner,
      requireDurableCommit: () => {
        confCommit = true;
        inner.requireDurableCommit();
      },
      commit: async () => {
        if (this.holdNextWrite) {
          this.holdNextWrite = false;
          await new Promise<void>((ok) => (this.held = ok));
        } else if (confCommit && this.holdNextConfCommit) {
          this.holdNextConfCommit = false;
          await new Promise<void>((ok) => (this.held = ok));
        }
        await inner.commit();
      },
    };
  }
}

/** The core with its instruction executor reachable (protected in src/: the heartbeat's queue calls it). */
class InstructedCore extends DatanodeCore<Counter, number> {
  run(instruction: object): Promise<void> {
    return this.execute(overTheWire(instruction));
  }
}

function openRequest(peerId: number, bootstrap = true) {
  return {
    region_id: REGION,
    table: toProtoSchema(cpuSchema()),
    peers: [{ peer_id: String(peerId), node_id: String(NODE), addr: '' }],
    self_peer_id: String(peerId),
    bootstrap,
    recover_from_object_store: false,
    metasrv_epoch: '0',
  };
}

describe('replica identity: close_region and open_region name the replica they mean', function () {
  this.timeout(20_000);
  let engine: HeldEngine;
  let core: InstructedCore;
  let warnings: Record<string, unknown>[];
  let refused: string[];

  function start(): void {
    warnings = [];
    refused = [];
    const deps: DatanodeCoreDeps<Counter, number> = {
      nodeId: NODE,
      clusterId: 'identity',
      storeId: 'store-1',
      heartbeatIntervalMs: 1000,
      logEngine: engine,
      clock: systemClock,
      log: capturingLogger(warnings),
      createRegionServer: (hooks) =>
        new RegionServer<Counter, number>(NODE, engine, new LoopbackTransport(NODE, () => {}), { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: 5 }, silentLogger, systemClock, hooks),
      stateMachineStat: () => ({ flushedIndex: 0, memtableBytes: 0, ssts: 0 }),
      hooks: { onInstructionRefused: (kind) => void refused.push(kind) },
    };
    core = new InstructedCore(deps);
  }

  beforeEach(() => {
    engine = new HeldEngine();
    start();
  });

  afterEach(async () => {
    await core.regionServer.stop();
  });

  /** Region data on disk as a replica under `peerId` leaves it (a meta and a log). */
  async function dataOnDisk(peerId: number): Promise<void> {
    const meta: RegionMeta = { regionId: REGION, schema: cpuSchema(), selfPeerId: peerId, peers: [{ peerId, nodeId: NODE, addr: '' }] };
    const batch = engine.batch();
    batch.setRegionMeta(REGION, enc.encode(JSON.stringify(meta)));
    batch.append(REGION, [{ term: 1, index: 1, type: 0, data: new Uint8Array() }]);
    batch.setHardState(REGION, { term: 1, vote: 0, commit: 1 });
    await batch.commit();
  }

  const hostsData = () => engine.metas.has(REGION) && engine.stores.has(REGION);

  function expectRefusal(asked: number, hosted: number): void {
    const line = warnings.find((l) => l.regionId === REGION && l.askedPeerId === asked && l.hostedPeerId === hosted);
    expect(line, `a warning naming region ${REGION}, asked peer ${asked} and hosted peer ${hosted}; got ${JSON.stringify(warnings)}`).to.not.equal(undefined);
  }

  it('a close_region(destroy) naming another peer id than the running replica is refused; naming its own, it deletes it', async () => {
    await core.openRegion(openRequest(12));
    expect(core.regionServer.replica(REGION)?.selfPeerId).to.equal(12);
    // Meant for the replica the node hosted before under peer 11 (a stale or duplicated close).
    await core.run({ close_region: { region_id: REGION, destroy: true, peer_id: '11' } });
    expect(core.regionServer.replica(REGION)?.selfPeerId, 'the stale close of peer 11 destroyed the replica of peer 12').to.equal(12);
    expect(hostsData(), 'its meta and log are kept').to.equal(true);
    expectRefusal(11, 12);
    expect(refused).to.deep.equal(['close_region']);
    await core.run({ close_region: { region_id: REGION, destroy: true, peer_id: '12' } });
    expect(core.regionServer.replica(REGION), 'the close of its own peer id').to.equal(undefined);
    expect(hostsData()).to.equal(false);
  });

  it('a replica closed with destroy off is listed held closed (HeartbeatRequest.held_replicas) until it is opened again or deleted by name (R8)', async () => {
    await core.openRegion(openRequest(12));
    expect(core.heldReplicas()).to.deep.equal([]);
    await core.run({ close_region: { region_id: REGION, destroy: false, peer_id: '12' } });
    expect(hostsData(), 'its data kept').to.equal(true);
    expect(core.heldReplicas()).to.deep.equal([{ region_id: REGION, peer_id: '12' }]);
    await core.openRegion(openRequest(12, false));
    expect(core.regionServer.replica(REGION)?.selfPeerId).to.equal(12);
    expect(core.heldReplicas(), 'running again').to.deep.equal([]);
    await core.run({ close_region: { region_id: REGION, destroy: false, peer_id: '12' } });
    await core.run({ close_region: { region_id: REGION, destroy: true, peer_id: '11' } });
    expect(core.heldReplicas(), 'a close naming another peer is refused: still held').to.deep.equal([{ region_id: REGION, peer_id: '12' }]);
    await core.run({ close_region: { region_id: REGION, destroy: true, peer_id: '12' } });
    expect(hostsData()).to.equal(false);
    expect(core.heldReplicas(), 'deleted by name').to.deep.equal([]);
  });

  it("a close waiting for the running cycle: a heartbeat built meanwhile lists the replica held, never nowhere (M38's review)", async () => {
    await core.openRegion(openRequest(12));
    core.regionServer.start();
    await waitFor(() => core.regionServer.replica(REGION)?.isLeader() === true, 'the one-peer replica leads');
    engine.holdNextWrite = true;
    void core.regionServer.propose(REGION, new Uint8Array([1])).catch(() => undefined);
    await waitFor(() => engine.held !== undefined, 'a cycle waiting on its write');
    const closing = core.closeRegion(REGION, false);
    await new Promise((ok) => setTimeout(ok, 20));
    const inStats = core.replicaStats().some((st) => st.region_id === REGION);
    expect({ inStats, held: core.heldReplicas() }, 'what a heartbeat built now would say').to.deep.equal({ inStats: false, held: [{ region_id: REGION, peer_id: '12' }] });
    engine.held!();
    await closing;
    expect(core.heldReplicas()).to.deep.equal([{ region_id: REGION, peer_id: '12' }]);
  });

  it("a failed replica closed with destroy off is not listed held (R4: it is replaced, never reopened under its peer id; M38's review)", async () => {
    await dataOnDisk(21);
    engine.damaged.set(REGION, { regionId: REGION, index: 1, reason: `region ${REGION}: damaged record at index 1` });
    await core.reopenRegions();
    expect(core.regionServer.failure(REGION)?.selfPeerId).to.equal(21);
    await core.closeRegion(REGION, false);
    expect(hostsData(), 'its data kept').to.equal(true);
    expect(core.heldReplicas()).to.deep.equal([]);
  });

  it('a close_region without a peer id (0: a metasrv that does not set it) closes whatever replica is there, as before', async () => {
    await core.openRegion(openRequest(12));
    await core.run({ close_region: { region_id: REGION, destroy: true } });
    expect(core.regionServer.replica(REGION)).to.equal(undefined);
    expect(hostsData()).to.equal(false);
    expect(refused).to.deep.equal([]);
  });

  it('a failed replica: a destroy naming its peer id deletes it, another peer id is refused', async () => {
    await dataOnDisk(21);
    engine.damaged.set(REGION, { regionId: REGION, index: 1, reason: `region ${REGION}: damaged record at index 1` });
    await core.reopenRegions();
    expect(core.regionServer.failure(REGION)?.selfPeerId).to.equal(21);
    await core.run({ close_region: { region_id: REGION, destroy: true, peer_id: '22' } });
    expect(core.regionServer.failure(REGION)?.selfPeerId, 'the failed replica of peer 21 is still reported').to.equal(21);
    expect(hostsData(), 'its data is kept').to.equal(true);
    expectRefusal(22, 21);
    await core.run({ close_region: { region_id: REGION, destroy: true, peer_id: '21' } });
    expect(core.regionServer.failure(REGION)).to.equal(undefined);
    expect(hostsData()).to.equal(false);
  });

  it('data on disk of a replica that is not open: a destroy matching its recorded peer id deletes it, a mismatch is refused', async () => {
    await dataOnDisk(31);
    await core.closeRegion(REGION, true, 32);
    expect(hostsData(), 'the close of peer 32 deleted the data of peer 31').to.equal(true);
    expectRefusal(32, 31);
    await core.closeRegion(REGION, true, 31);
    expect(hostsData()).to.equal(false);
  });

  it('data on disk of a replica that is not open (closed without destroy): an open under another peer id is refused and the data kept; its own peer id reopens it (M24)', async () => {
    await dataOnDisk(31);
    const metaOnDisk = () => (JSON.parse(new TextDecoder().decode(engine.metas.get(REGION)!)) as RegionMeta).selfPeerId;
    const err = await core.openRegion(openRequest(32, false)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.ConditionFailed), `open of peer 32 over the data of peer 31: expected a CONDITION_FAILED refusal, got ${String(err)}`).to.equal(true);
    expect((err as RegionDbError).message).to.include('32').and.to.include('31');
    expectRefusal(32, 31);
    await core.run({ open_region: openRequest(32, false) });
    expect(refused).to.deep.equal(['open_region', 'open_region']);
    expect(core.regionServer.replica(REGION), 'nothing opened').to.equal(undefined);
    expect(metaOnDisk(), 'the meta on disk still names peer 31').to.equal(31);
    expect(engine.stores.get(REGION)?.lastIndex(), "peer 31's log kept").to.equal(1);
    // A destroy of the refused peer finds nothing of its own to delete.
    await core.closeRegion(REGION, true, 32);
    expect(hostsData(), "a close of peer 32 deleted peer 31's data").to.equal(true);
    await core.openRegion(openRequest(31, false));
    expect(core.regionServer.replica(REGION)?.selfPeerId, 'its own peer id reopens it').to.equal(31);
    expect(core.regionServer.replica(REGION)?.raft.log.lastIndex()).to.equal(1);
  });

  it("a reopen of its own data keeps the node its meta records for a member the open does not name, not for a peer the log removed (M27)", async () => {
    // Peer 3 here; voters 2, 3, 8, 9 from the log (no node in these entries, as after a snapshot),
    // then 9 removed. The meta knows every node; the open (an older catalog's) names 1, 2 and 3.
    const peers = [
      { peerId: 2, nodeId: 2, addr: 'n2' },
      { peerId: 3, nodeId: NODE, addr: '' },
      { peerId: 8, nodeId: 4, addr: 'n4' },
      { peerId: 9, nodeId: 5, addr: 'n5' },
    ];
    const meta: RegionMeta = { regionId: REGION, schema: cpuSchema(), selfPeerId: 3, peers };
    const boot = bootstrapEntries([2, 3, 8, 9]);
    const removal = { term: 1, index: 5, type: EntryType.ConfChange, data: encodeConfChange({ type: ConfChangeType.RemoveNode, nodeId: 9, context: '' }) };
    const batch = engine.batch();
    batch.setRegionMeta(REGION, enc.encode(JSON.stringify(meta)));
    batch.append(REGION, [...boot.entries, removal]);
    batch.setHardState(REGION, { term: 1, vote: 0, commit: 5 });
    await batch.commit();
    const open = { ...openRequest(3, false), peers: [{ peer_id: '1', node_id: '6', addr: 'n6' }, { peer_id: '2', node_id: '2', addr: 'n2' }, { peer_id: '3', node_id: String(NODE), addr: '' }] };
    await core.openRegion(open);
    const replica = core.regionServer.replica(REGION)!;
    expect(replica.peers.get(8)?.nodeId, "peer 8's node, known only to the meta").to.equal(4);
    expect(replica.peers.has(9), 'peer 9, removed by the log, is not taken from the meta').to.equal(false);
    expect(replica.peers.get(1)?.nodeId, "the open's peers as before").to.equal(6);
    const written = JSON.parse(new TextDecoder().decode(engine.metas.get(REGION)!)) as RegionMeta;
    expect(written.peers.map((p) => `${p.peerId}@${p.nodeId}`).sort(), 'the meta written for the reopen').to.deep.equal(['1@6', '2@2', '3@1', '8@4']);
  });

  it('data on disk whose meta does not read: an open is refused (no peer to name), and a close of any peer id deletes it (M24)', async () => {
    await dataOnDisk(31);
    engine.metas.set(REGION, enc.encode('{not json'));
    const err = await core.openRegion(openRequest(32, false)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.ConditionFailed), `expected a CONDITION_FAILED refusal, got ${String(err)}`).to.equal(true);
    expect((err as RegionDbError).message).to.include('meta does not read');
    expect(engine.stores.get(REGION)?.lastIndex(), 'the log kept').to.equal(1);
    await core.closeRegion(REGION, true, 31);
    expect(hostsData()).to.equal(false);
    await core.openRegion(openRequest(32, false));
    expect(core.regionServer.replica(REGION)?.selfPeerId).to.equal(32);
  });

  it('an open_region under another peer id than the replica hosted is refused with both peer ids (not ignored); the hosted replica is untouched', async () => {
    await core.openRegion(openRequest(12));
    // Admin.OpenRegion's path: the caller gets the refusal.
    const err = await core.openRegion(openRequest(13, false)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.ConditionFailed), `open of peer 13 while peer 12 is hosted: expected a CONDITION_FAILED refusal, got ${String(err)}`).to.equal(true);
    expect((err as RegionDbError).message).to.include('13').and.to.include('12');
    expectRefusal(13, 12);
    // The heartbeat's path: refused the same way (logged, counted), the replica unchanged.
    await core.run({ open_region: openRequest(13, false) });
    expect(refused).to.deep.equal(['open_region', 'open_region']);
    expect(core.regionServer.replica(REGION)?.selfPeerId).to.equal(12);
    expect(core.metas.get(REGION)?.selfPeerId, 'the meta still names peer 12').to.equal(12);
    // The same peer id again is the idempotent open it always was.
    await core.openRegion(openRequest(12));
    expect(refused).to.have.length(2);
  });
  it('a membership change applied by a replica closed meanwhile (without destroy) leaves its data: nothing deletes the region', async () => {
    await core.openRegion(openRequest(12));
    core.regionServer.start();
    const leads = () => {
      const r = core.regionServer.replica(REGION);
      return r?.isLeader() === true && r.appliedIndex >= 2 && r.appliedIndex === r.raft.log.committed;
    };
    await waitFor(leads, 'the one-peer replica leads and has applied its first entry as leader');
    engine.holdNextConfCommit = true;
    // A learner on another node (not reachable here: only the entry matters).
    void core.regionServer.proposeConfChange(REGION, { type: ConfChangeType.AddLearner, nodeId: 13, context: JSON.stringify({ nodeId: 2 }) }).catch(() => undefined);
    await waitFor(() => engine.held !== undefined, 'the cycle applying the membership change waiting on its write');
    // The replica is closed, its data kept (a close_region with destroy off), while that cycle is in flight.
    const closing = core.closeRegion(REGION, false);
    await waitFor(() => core.regionServer.hostedReplica(REGION) === undefined, 'the close under way');
    engine.held!();
    await closing;
    // Whatever the change's application scheduled has had its turn: one event-loop turn for the
    // deferred call, then every open and close queued before this barrier.
    await new Promise((ok) => setImmediate(ok));
    await core.serialized(async () => undefined);
    expect(hostsData(), 'the closed replica applying the change got the region deleted').to.equal(true);
  });
});

// docs/raft-rules.md R16, "The removed replica": a replica that applies its own removal is kept,
// fenced to clients and answering raft, until the metasrv's close_region(destroy) names it (after
// the region's leader reported a configuration without it). The datanode used to delete it as it
// applied its removal, before a remaining voter that had not learned the commit could get its vote.
describe('a replica removed from its region is kept (answering raft) until the metasrv destroys it (R16)', function () {
  this.timeout(20_000);
  const engines = new Map<number, MemoryLogEngine>();
  const cores = new Map<number, InstructedCore>();

  beforeEach(() => {
    for (const nodeId of [1, 2]) {
      const engine = new MemoryLogEngine();
      engines.set(nodeId, engine);
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) cores.get(to)?.regionServer.step(from, e.regionId, e.message);
      });
      cores.set(
        nodeId,
        new InstructedCore({
          nodeId,
          clusterId: 'removal',
          storeId: `store-${nodeId}`,
          heartbeatIntervalMs: 1000,
          logEngine: engine,
          clock: systemClock,
          log: silentLogger,
          createRegionServer: (hooks) =>
            // skipBcastCommit off: the leader tells the follower at once that its removal
            // committed (with it on, the leader applies the removal and sends it nothing more).
            new RegionServer<Counter, number>(nodeId, engine, transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: 5, skipBcastCommit: false }, silentLogger, systemClock, hooks),
          stateMachineStat: () => ({ flushedIndex: 0, memtableBytes: 0, ssts: 0 }),
        }),
      );
    }
  });

  afterEach(async () => {
    for (const core of cores.values()) await core.regionServer.stop();
    cores.clear();
    engines.clear();
  });

  it('the removed follower keeps its data and answers raft; close_region(destroy) naming its peer deletes it', async () => {
    const peers = [1, 2].map((n) => ({ peer_id: String(10 + n), node_id: String(n), addr: '' }));
    for (const [nodeId, core] of cores) {
      await core.openRegion({ ...openRequest(10 + nodeId), peers, self_peer_id: String(10 + nodeId) });
      core.regionServer.start();
    }
    const leading = () =>
      [...cores].find(([, c]) => {
        const r = c.regionServer.replica(REGION);
        return r?.isLeader() === true && r.appliedIndex === r.raft.status().lastIndex; // its no-op applied
      });
    await waitFor(() => leading() !== undefined, 'a leader that applied its first entry');
    const [leaderNode, leader] = leading()!;
    const removedNode = 3 - leaderNode;
    const removed = cores.get(removedNode)!;
    await leader.regionServer.proposeConfChange(REGION, { type: ConfChangeType.RemoveNode, nodeId: 10 + removedNode, context: '' });
    await waitFor(() => removed.regionServer.replica(REGION) === undefined, 'the removed follower to apply its removal');
    // Whatever the removal's application scheduled on the datanode has had its turn.
    await new Promise((ok) => setImmediate(ok));
    await removed.serialized(async () => undefined);
    const kept = removed.regionServer.hostedReplica(REGION);
    expect(kept?.removed, 'the datanode deleted the removed replica itself').to.equal(true);
    expect(engines.get(removedNode)!.stores.has(REGION) && engines.get(removedNode)!.metas.has(REGION), 'its log and meta are kept').to.equal(true);
    expect(removed.regionServer.raftReplica(REGION), 'it still takes raft messages').to.equal(kept);
    expect(() => removed.regionServer.leaderReplica(REGION)).to.throw(/no longer hosted|not hosted/);
    // The metasrv's cleanup (repair-replica) or reconciliation names the removed peer.
    await removed.run({ close_region: { region_id: REGION, destroy: true, peer_id: String(10 + removedNode) } });
    expect(removed.regionServer.hostedReplica(REGION)).to.equal(undefined);
    expect(engines.get(removedNode)!.stores.has(REGION) || engines.get(removedNode)!.metas.has(REGION), 'deleted').to.equal(false);
  });
});
