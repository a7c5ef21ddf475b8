import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

// docs/raft-rules.md R16, "Nothing after the removal reaches its state machine": a removed replica
// keeps persisting and acknowledging the entries a leader that still counts it sends (here the
// survivor S of a two-voter group elected with the removed node's vote: its no-op and a client
// write), and learns that they committed, but applies none of them (region-server.ts
// applyCommitted), nor does a replica whose apply stalled apply the entries after its removal
// when its retry catches up (retryStalledApply). Its state machine stays as it was at its removal.
//
// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): each wait is a bounded
// number of ticks, and "applies nothing more" is watched over 20 ticks, whatever the load.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

/** A counter whose apply of the command [99] fails on the "object store" on one node while `stalling`. */
class StallableCounter {
  static stallNode = 0;
  static stalling = false;
  total = 0;
  constructor(private readonly nodeId: number) {}
  apply(_index: number, command: Uint8Array): number | Promise<number> {
    if (this.nodeId === StallableCounter.stallNode && StallableCounter.stalling && command[0] === 99) {
      return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'object store down (planted in this test)'));
    }
    this.total += command[0]!;
    return this.total;
  }
  serialize(): Uint8Array {
    return new TextEncoder().encode(String(this.total));
  }
}
describe('RegionServer: a removed replica applies no entry committed after its removal (R16)', () => {
  const servers = new Map<number, RegionServer<Counter>>();
  let clock = new HandClock();
  let waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const waitFor = (cond: () => boolean, what: string) => waits.until(cond, what);
  const settled = <T>(promise: Promise<T>, what: string) => waits.settled(promise, what);
  afterEach(async () => {
    for (const s of servers.values()) await s.stop();
    servers.clear();
    clock = new HandClock();
    waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  });

  it('the survivor\'s no-op and client write reach the removed node committed, and it applies neither', async () => {
    /** Appends and heartbeats from the removed leader telling a commit at or past its removal are lost. */
    let loseCommit: { from: number; index: number } | undefined;
    /** The removed node's acknowledgements are held back (so that S commits its entries all at once). */
    let holdAcksFrom: number | undefined;
    const peers = [1, 2].map((n) => ({ peerId: 10 + n, nodeId: n }));
    for (const nodeId of [1, 2]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) {
          const m = e.message;
          if (loseCommit && from === loseCommit.from && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= loseCommit.index) continue;
          if (from === holdAcksFrom && m.type === MessageType.AppendResponse) continue;
          servers.get(to)?.step(from, e.regionId, m);
        }
      });
      // skipBcastCommit false: a leader tells its followers a new commit index at once, before it
      // applies it (S stops sending to the removed node once it applied the removal).
      const s = new RegionServer<Counter>(nodeId, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, nodeDownAfterTicks: 40, skipBcastCommit: false }, silentLogger, clock);
      servers.set(nodeId, s);
    }
    for (const [nodeId, s] of servers) {
      await s.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
      s.start();
    }
    await waitFor(() => [...servers.values()].some((s) => s.replica('r')?.isLeader()), 'a leader');
    const [r, leader] = [...servers].find(([, s]) => s.replica('r')?.isLeader())!;
    const survivor = servers.get(3 - r)!;
    await settled(leader.propose('r', new Uint8Array([1])), 'a write');
    const removalAt = leader.replica('r')!.raft.status().lastIndex + 1;
    loseCommit = { from: r, index: removalAt };
    holdAcksFrom = r;
    await settled(leader.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: 10 + r, context: '' }).catch(() => undefined), 'the removal');
    await waitFor(() => leader.hostedReplica('r')?.removed === true, 'the leader applied its own removal');
    const removed = leader.hostedReplica('r')!;
    const totalAtRemoval = removed.stateMachine.total;
    expect(totalAtRemoval).to.equal(1);
    await waitFor(() => survivor.replica('r')?.isLeader() === true, 'the survivor elected with the removed node\'s vote');
    expect(survivor.replica('r')!.raft.confState().voters, 'S has not applied the removal yet').to.include(10 + r);
    const write = survivor.propose('r', new Uint8Array([5]));
    await waitFor(() => survivor.hostedReplica('r')!.raft.status().lastIndex >= removalAt + 2, 'the no-op and the write in S\'s log');
    expect(survivor.hostedReplica('r')!.raft.status().commit, 'S committed nothing past the removal yet').to.be.below(removalAt);
    holdAcksFrom = undefined;
    expect(await settled(write, 'the survivor\'s write')).to.equal(6);
    await waitFor(() => removed.raft.status().commit >= removalAt + 2, 'the removed node learned that the write committed');
    // Its ready loop goes on (it still steps and ticks); give it 20 ticks of cycles to apply, were it to.
    await waits.tick(20);
    expect(removed.removed).to.equal(true);
    expect(removed.stateMachine.total, 'the removed replica applied an entry after its removal').to.equal(totalAtRemoval);
    expect(removed.appliedIndex).to.equal(removalAt);
  });

  it('a follower whose apply stalled before its removal applies, on its retry, what precedes its removal and nothing after it', async () => {
    const stallServers = new Map<number, RegionServer<StallableCounter, number>>();
    /** The follower's acknowledgements are held back (so that the leader commits the entries all at once). */
    let holdAcksFrom: number | undefined;
    const peers = [1, 2].map((n) => ({ peerId: 10 + n, nodeId: n }));
    StallableCounter.stallNode = 0;
    StallableCounter.stalling = false;
    try {
      for (const nodeId of [1, 2]) {
        const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
          for (const e of envelopes) {
            if (from === holdAcksFrom && e.message.type === MessageType.AppendResponse) continue;
            stallServers.get(to)?.step(from, e.regionId, e.message);
          }
        });
        const tuning = { ...defaultRaftTuning, tickMs: TICK_MS, nodeDownAfterTicks: 40, skipBcastCommit: false, applyRetry: { backoffMsMin: 10, backoffMsMax: 20, windowMs: 600_000 } };
        stallServers.set(nodeId, new RegionServer<StallableCounter, number>(nodeId, new MemoryLogEngine(), transport, { create: () => new StallableCounter(nodeId) }, tuning, silentLogger, clock));
      }
      for (const [nodeId, s] of stallServers) {
        await s.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
        s.start();
      }
      await waitFor(() => [...stallServers.values()].some((s) => s.replica('r')?.isLeader()), 'a leader');
      const [l, leader] = [...stallServers].find(([, s]) => s.replica('r')?.isLeader())!;
      const f = 3 - l;
      const follower = stallServers.get(f)!;
      await settled(leader.propose('r', new Uint8Array([1])), 'a write');
      StallableCounter.stallNode = f;
      StallableCounter.stalling = true;
      holdAcksFrom = f;
      const stallAt = leader.replica('r')!.raft.status().lastIndex + 1;
      // One at a time, in this order (a conf change goes to raft at once, a write with the next cycle).
      const lastIndex = () => leader.replica('r')!.raft.status().lastIndex;
      const x = leader.propose('r', new Uint8Array([99]));
      await waitFor(() => lastIndex() === stallAt, 'the stalling write in the leader\'s log');
      const removal = leader.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: 10 + f, context: '' });
      await waitFor(() => lastIndex() === stallAt + 1, 'the removal in the leader\'s log');
      const after = leader.propose('r', new Uint8Array([7]));
      await waitFor(() => follower.hostedReplica('r')!.raft.status().lastIndex >= stallAt + 2, 'the write, the removal and the next write in the follower\'s log');
      expect(leader.replica('r')!.raft.status().commit, 'nothing committed at or past the stalling write yet').to.be.below(stallAt);
      holdAcksFrom = undefined;
      expect(await settled(x, 'the stalling write')).to.equal(100);
      await settled(removal, 'the removal');
      expect(await settled(after, 'the write after the removal')).to.equal(107);
      const replica = follower.hostedReplica('r')!;
      await waitFor(() => replica.raft.status().commit >= stallAt + 2, 'the follower learned that the write after its removal committed');
      await waitFor(() => follower.applyStall('r') !== undefined, 'the follower stalled on the write before its removal');
      expect(follower.applyStall('r')!.upTo, 'its stall covers the write after its removal').to.be.at.least(stallAt + 2);
      expect(replica.appliedIndex).to.be.below(stallAt);
      StallableCounter.stalling = false;
      await waitFor(() => replica.removed, 'the follower applied its removal on its retry');
      await waits.tick(20); // 20 more ticks of cycles, were it to apply more
      expect(replica.stateMachine.total, 'the stalled write applied, the one after the removal not').to.equal(100);
      expect(replica.appliedIndex).to.equal(stallAt + 1);
    } finally {
      for (const s of stallServers.values()) await s.stop();
      StallableCounter.stalling = false;
    }
  });
});
