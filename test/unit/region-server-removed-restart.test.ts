import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { SstMeta } from '../../src/engine/command.js';
import { type ApplyResult, RegionState, type TableSchema, encodeCommand } from '../../src/engine/index.js';
import type { SstOpener } from '../../src/engine/region-state.js';
import type { SstReader } from '../../src/engine/sst/format.js';
import { ConfChangeType, EntryType, MessageType, makeMessage } from '../../src/raft/index.js';
import { type RaftTuning, RegionServer, type RegionServerHooks, defaultRaftTuning } from '../../src/replication/region-server.js';
import { HandClock, settle, tickBy, ticksUntil, whileTicking } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';
import { cpuSchema } from '../fixtures/schemas.js';

// Finding E3 of docs/simulation.md (E9 in docs/correctness.md; docs/raft-rules.md R16, "A removed
// replica's restart"). A replica that applied its own removal takes no snapshot after it, so a
// restart reopened it from its old snapshot and re-applied its log up to the removal; a
// conditional write in that stretch whose key is not in the memtable reads the SSTs the old
// snapshot names, and GC — counting the leader's membership, which no longer names this peer
// (G3) — may have collected one: the replica FAILED (leaving raft) instead of reaching its
// removal. Now a replica whose durable log commits its own removal applies the membership
// changes up to it and no command. The first test failed on the code before the fix (the
// restarted replica failed: "cannot apply index 3 … not found"); the other pins down what must
// not change: a removal past the durable commit index, or of another peer, is no reason to skip.

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 4096 });
/** The SST the replicas' state starts with (as if a snapshot named it); its reader holds no row. */
const sst: SstMeta = { key: 'regions/r/sst/1.sst', size: 100, entries: 1, maxVersion: 1, minTimestampMs: 0, maxTimestampMs: 0 };
const conditionalWrite = (requestId: number) => encodeCommand({ kind: 'write', clientId: 'c', requestId, rows: [['h1', 1000, 0.5]], expectAbsent: true });

/** One node's view of the object store: counts SST reads, and refuses an SST GC has collected as the store does. */
class GcOpener implements SstOpener {
  static readonly collected = new Set<string>();
  reads = 0;
  async open(meta: SstMeta): Promise<SstReader> {
    this.reads++;
    if (GcOpener.collected.has(meta.key)) throw new RegionDbError(ErrorCode.NotFound, `object ${meta.key} not found (collected by GC)`);
    return { get: async () => undefined } as unknown as SstReader;
  }
}

type Server = RegionServer<RegionState, ApplyResult>;

// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): their tickers fire as the
// test advances it, and every wait below is a bounded number of ticks, not of wall milliseconds.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on (a leader, an apply): a stuck test fails naming what it waited for. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('RegionServer: a removed replica restarted before it is deleted (finding E3)', () => {
  const servers = new Map<number, Server>();
  const engines = new Map<number, MemoryLogEngine>();
  const openers = new Map<number, GcOpener>();
  /** Appends and heartbeats from node 1 telling a commit index ≥ this are lost on their way to node 2. */
  let loseCommitFrom: number | undefined;
  let clock = new HandClock();
  const waitFor = (cond: () => boolean, what: string) => ticksUntil(clock, TICK_MS, cond, what, WAIT_TICKS_MAX);
  const settled = <T>(promise: Promise<T>, what: string) => whileTicking(clock, TICK_MS, promise, what, WAIT_TICKS_MAX);
  const peers = [
    { peerId: 11, nodeId: 1 },
    { peerId: 12, nodeId: 2 },
  ];

  function startServer(nodeId: number, hooks: RegionServerHooks = {}, applyRetry?: RaftTuning['applyRetry']): Server {
    const engine = engines.get(nodeId) ?? new MemoryLogEngine();
    engines.set(nodeId, engine);
    const opener = new GcOpener();
    openers.set(nodeId, opener);
    const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
      for (const e of envelopes) {
        const m = e.message;
        if (loseCommitFrom !== undefined && from === 1 && to === 2 && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= loseCommitFrom) continue;
        servers.get(to)?.step(from, e.regionId, m);
      }
    });
    const create = (regionId: string) => {
      const state = new RegionState(schema, regionId, opener);
      state.ssts = [sst];
      return state;
    };
    // skipBcastCommit false: the leader tells its follower a new commit index at once.
    const tuning = { ...defaultRaftTuning, tickMs: TICK_MS, nodeDownAfterTicks: 40, skipBcastCommit: false, ...(applyRetry ? { applyRetry } : {}) };
    const server: Server = new RegionServer<RegionState, ApplyResult>(nodeId, engine, transport, { create }, tuning, silentLogger, clock, hooks);
    servers.set(nodeId, server);
    server.start();
    return server;
  }

  /** Nodes 1 and 2 host the region; node 1 leads; one conditional write (it reads the SST) applied on both. */
  async function regionWithConditionalWrite(): Promise<Server> {
    for (const nodeId of [1, 2]) await startServer(nodeId).open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
    const leader = servers.get(1)!;
    await waitFor(() => [1, 2].some((n) => servers.get(n)!.replica('r')?.isLeader()), 'a leader');
    if (!leader.replica('r')!.isLeader()) servers.get(2)!.transferLeader('r', 11);
    await waitFor(() => leader.replica('r')?.isLeader() === true, 'node 1 leads');
    expect(await settled(leader.propose('r', conditionalWrite(1)), 'the conditional write')).to.include({ status: 'ok' });
    await waitFor(() => servers.get(2)!.replica('r')!.stateMachine.memtable.count === 1, 'node 2 applied the conditional write');
    expect(openers.get(2)!.reads, 'the conditional write read the SST on node 2').to.be.greaterThan(0);
    return leader;
  }

  /** Stops node 2 and starts it again on the same log (a restart); its replica reopened from the log. */
  async function restartNode2(hooks: RegionServerHooks = {}, applyRetry?: RaftTuning['applyRetry']): Promise<Server> {
    await servers.get(2)!.stop();
    const again = startServer(2, hooks, applyRetry);
    await again.open({ regionId: 'r', selfPeerId: 12, peers, bootstrap: false });
    return again;
  }

  /** One membership change, proposed once the leader applied the one before (one at a time, R14). */
  async function changeMembership(leader: Server, type: ConfChangeType, nodeId: number): Promise<void> {
    const applied = () => leader.replica('r')!.raft.status();
    await waitFor(() => applied().applied === applied().commit, 'the leader applied what it committed');
    await settled(leader.proposeConfChange('r', { type, nodeId, context: '' }), 'the membership change');
  }

  afterEach(async () => {
    for (const s of servers.values()) await s.stop();
    servers.clear();
    engines.clear();
    openers.clear();
    GcOpener.collected.clear();
    loseCommitFrom = undefined;
    clock = new HandClock();
  });

  it('reaches its removal again — membership, applied index, fenced, answering raft — and reads no SST, although GC collected one its log replay would read', async () => {
    const leader = await regionWithConditionalWrite();
    await changeMembership(leader, ConfChangeType.RemoveNode, 12);
    await waitFor(() => servers.get(2)!.hostedReplica('r')?.removed === true, 'node 2 applied its own removal');
    const before = servers.get(2)!.hostedReplica('r')!;
    const removalAt = before.appliedIndex;
    const reached = { voters: before.raft.confState().voters, confIndex: before.confIndex, commit: before.raft.log.committed };
    // GC counts the leader's membership ({11}): node 1's state is past the SST, so it may go.
    GcOpener.collected.add(sst.key);

    const again = await restartNode2();
    const replica = again.hostedReplica('r')!;
    // Its replay reaches the removal, or fails: were it to re-apply the conditional write, it would fail there.
    await waitFor(() => replica.appliedIndex >= removalAt || again.failure('r') !== undefined, 'the restarted replica to replay its log up to its removal');
    expect(again.failure('r')?.reason, 'the restarted removed replica failed').to.equal(undefined);
    expect(replica.removed).to.equal(true);
    expect(again.replica('r'), 'fenced to clients').to.equal(undefined);
    expect(again.raftReplica('r'), 'it still answers raft (R16)').to.equal(replica);
    expect(replica.appliedIndex).to.equal(removalAt);
    expect({ voters: replica.raft.confState().voters, confIndex: replica.confIndex, commit: replica.raft.log.committed }).to.deep.equal(reached);
    expect(openers.get(2)!.reads, 'no SST read by the restart').to.equal(0);
    expect(replica.stateMachine.memtable.count, 'no command re-applied').to.equal(0);
  });

  it('with removedReplay "everything" (the metasrv group\'s choice) it re-applies its log and fails on the collected SST, as every replica did before', async () => {
    const leader = await regionWithConditionalWrite();
    await changeMembership(leader, ConfChangeType.RemoveNode, 12);
    await waitFor(() => servers.get(2)!.hostedReplica('r')?.removed === true, 'node 2 applied its own removal');
    GcOpener.collected.add(sst.key);
    const again = await restartNode2({ removedReplay: 'everything' });
    await waitFor(() => again.failure('r') !== undefined, 'the re-applying replica fails');
    expect(again.failure('r')!.reason).to.match(/cannot apply index \d+: .*not found \(collected by GC\)/);
  });

  it('a removal past its durable commit index, or of another peer, is no reason to skip: the restart re-applies every command as before', async () => {
    const leader = await regionWithConditionalWrite();
    // Another peer joins as a learner and is removed: a committed removal, not of peer 12.
    await changeMembership(leader, ConfChangeType.AddLearner, 13);
    await changeMembership(leader, ConfChangeType.RemoveNode, 13);
    expect(await settled(leader.propose('r', encodeCommand({ kind: 'write', clientId: 'c', requestId: 2, rows: [['h2', 1000, 0.7]] })), 'the second write')).to.include({ status: 'ok' });
    // Peer 12's removal: node 2 appends and acknowledges it but never learns that it committed.
    const removalAt = leader.replica('r')!.raft.status().lastIndex + 1;
    loseCommitFrom = removalAt;
    await changeMembership(leader, ConfChangeType.RemoveNode, 12);
    const follower = servers.get(2)!.hostedReplica('r')!;
    await waitFor(() => follower.raft.log.lastIndex() >= removalAt, 'the removal in node 2\'s log');
    expect(follower.raft.log.committed, 'node 2 does not know its removal committed').to.equal(removalAt - 1);
    expect(engines.get(2)!.region('r').initialState().hardState.commit).to.equal(removalAt - 1);

    const again = await restartNode2();
    await waitFor(() => again.replica('r')?.appliedIndex === removalAt - 1, 'node 2 re-applied its log up to its commit index');
    const replica = again.replica('r')!;
    expect(replica.removed).to.equal(false);
    expect(replica.stateMachine.memtable.count, 'both writes re-applied').to.equal(2);
    expect(openers.get(2)!.reads, 'the conditional write read the SST again').to.be.greaterThan(0);
    expect(replica.raft.confState().voters).to.deep.equal([11, 12]);
  });

  // E10 (docs/correctness.md): what E9 left open. The same restart as above, but GC has
  // collected the SST the replayed conditional write reads: the replica used to FAIL ("cannot
  // apply index …: not found"), leaving raft with its vote. Now it stalls, still answering raft,
  // until it learns whether its removal committed; told so, it reaches its removal without the
  // commands, as a reopened replica whose log commits its removal does.
  async function stalledOnItsRemoval(then: 'committed' | 'cut off' | 'append while due' | 'snapshot while due'): Promise<void> {
    const leader = await regionWithConditionalWrite();
    const removalAt = leader.replica('r')!.raft.status().lastIndex + 1;
    loseCommitFrom = removalAt;
    await changeMembership(leader, ConfChangeType.RemoveNode, 12);
    await waitFor(() => servers.get(2)!.hostedReplica('r')!.raft.log.lastIndex() >= removalAt, 'the removal in node 2\'s log');
    await waitFor(() => leader.replica('r')!.raft.status().applied >= removalAt, 'the leader applied the removal');
    GcOpener.collected.add(sst.key); // the leader's membership is {11}: GC no longer waits for peer 12
    // A short retry window: a stall that waits on its removal must outlive it.
    const again = await restartNode2({}, { backoffMsMin: 5, backoffMsMax: 20, windowMs: 60 });
    await waitFor(() => again.applyStall('r') !== undefined || again.failure('r') !== undefined, 'the replay met the collected SST');
    expect(again.failure('r')?.reason, 'the replica failed').to.equal(undefined);
    expect(again.applyStall('r')?.awaitingRemoval).to.equal(removalAt);
    const replica = again.hostedReplica('r')!;
    await tickBy(clock, TICK_MS, 30); // 150 ms: past the 60 ms retry window, several retries
    expect(again.failure('r')?.reason, 'failed while waiting on its removal').to.equal(undefined);
    expect(again.raftReplica('r'), 'it still answers raft (R16)').to.equal(replica);
    expect(replica.removed).to.equal(false);
    expect(replica.raft.campaignsHeld, 'a stalled replica starts no campaign').to.equal(true);

    if (then === 'snapshot while due') {
      // Its retry falls due, and before the cycle that runs it a leader's snapshot past its log is
      // stepped (not installed yet): the retry must leave the log alone (reading below the pending
      // snapshot threw, stopping the whole node), and the ready installs it, ending the stall.
      clock.advance(25);
      const term = replica.raft.term;
      const snapshot = { metadata: { index: removalAt + 2, term, confState: { voters: [11, 12], learners: [] } }, data: new Uint8Array(0) };
      again.step(1, 'r', makeMessage({ type: MessageType.Snapshot, from: 11, to: 12, term, snapshot }));
      await settle();
      expect(again.fatalError()?.message, 'the datanode stopped').to.equal(undefined);
      expect(again.failure('r')).to.equal(undefined);
      expect(again.applyStall('r'), 'the snapshot ended the stall').to.equal(undefined);
      expect(replica.appliedIndex).to.equal(removalAt + 2);
      return;
    }
    if (then === 'append while due') {
      // Its retry falls due, and before the cycle that runs it, an append from its leader adds an
      // entry the log engine has not written yet: looking for the removal must read the core's
      // log (stable and unstable), not the engine's alone (which threw, stopping the whole node).
      clock.advance(25);
      const prevIndex = removalAt;
      const prevTerm = replica.raft.log.term(prevIndex)!;
      const term = replica.raft.term;
      const entries = [{ index: removalAt + 1, term, type: EntryType.Normal, data: new Uint8Array(0) }];
      again.step(1, 'r', makeMessage({ type: MessageType.Append, from: 11, to: 12, term, logTerm: prevTerm, index: prevIndex, entries, commit: removalAt - 1 }));
      await settle();
      expect(again.fatalError()?.message, 'the datanode stopped').to.equal(undefined);
      expect(again.failure('r')).to.equal(undefined);
      expect(again.applyStall('r')?.awaitingRemoval, 'still waiting on its removal').to.equal(removalAt);
      expect(replica.raft.log.lastIndex()).to.equal(removalAt + 1);
      return;
    }
    if (then === 'cut off') {
      // A leader of a later term whose log lacks the removal overwrites it: the stall's reason is
      // gone, the retry applies again, and the collected SST fails the replica for good.
      const prevIndex = removalAt - 1;
      const prevTerm = replica.store.entries(prevIndex, prevIndex + 1, Number.MAX_SAFE_INTEGER)[0]!.term;
      const term = replica.raft.term + 1;
      const entries = [{ index: removalAt, term, type: EntryType.Normal, data: new Uint8Array(0) }];
      again.step(1, 'r', makeMessage({ type: MessageType.Append, from: 11, to: 12, term, logTerm: prevTerm, index: prevIndex, entries, commit: prevIndex }));
      await waitFor(() => again.failure('r') !== undefined, 'the replica fails once its removal is cut off');
      expect(again.failure('r')!.reason).to.match(/cannot apply index \d+: .*not found \(collected by GC\)/);
      return;
    }
    // The leader's commit index reaches it (as a message from its leader would tell it).
    const term = replica.raft.term;
    again.step(1, 'r', makeMessage({ type: MessageType.Heartbeat, from: 11, to: 12, term, commit: removalAt }));
    await waitFor(() => replica.removed, 'node 2 reached its removal');
    expect(again.applyStall('r'), 'the stall ended').to.equal(undefined);
    expect(again.failure('r')).to.equal(undefined);
    expect(replica.appliedIndex).to.equal(removalAt);
    expect(again.raftReplica('r'), 'still answering raft after its removal (R16)').to.equal(replica);
    expect(replica.stateMachine.memtable.count, 'no command applied').to.equal(0);
  }

  it('a removal past its durable commit index and a collected SST: the replay stalls (still in raft) instead of failing, and reaches the removal once told it committed', async () => {
    await stalledOnItsRemoval('committed');
  });

  it('…and fails for good, as before, once a later leader cuts the removal off its log', async () => {
    await stalledOnItsRemoval('cut off');
  });

  it('…and an append arriving while its retry is due leaves it waiting (the node does not stop)', async () => {
    await stalledOnItsRemoval('append while due');
  });

  it('…and a snapshot stepped while its retry is due is installed, ending the stall (the node does not stop)', async () => {
    await stalledOnItsRemoval('snapshot while due');
  });
});
