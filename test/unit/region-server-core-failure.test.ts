// Two leftovers of R16's reviews at the region server's edge (docs/raft-rules.md R16, "Never a
// leader, never serving"):
//   - `campaign()` on a replica whose apply is stalled did nothing and said nothing (the core's
//     `campaignsHeld` makes hup() return): it is refused as UNAVAILABLE, retriable;
//   - an assertion of the raft core thrown while stepping a message (`becomeLeader`: "leader must
//     be in its own configuration", should R16's argument that a removed replica is never a
//     candidate ever fail) went through `RegionServer.step` into the raft stream's 'data' handler
//     and ended the process. It fails that one replica now; the core still asserts. The same for a
//     tick (from the tick timer, where a throw ends the process), a campaign and a leadership
//     transfer asked for (the caller gets UNAVAILABLE), and for a removed replica (R16: it answers
//     raft until deleted), which, once failed, gets no more ticks or messages (`answersRaft`);
//   - (review of r16w, S2) a failed leader makes no more readies, so no soft state says it stopped
//     leading: the host is told by the failure itself (a datanode's leader gauge; the metasrv
//     group's server is built with `coreFailure: 'fatal'` and stops whole instead, tested in
//     metasrv-group-core-failure.test.ts).
import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfChangeType, type Message, MessageType, Role, makeMessage } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import type { LogBatch } from '../../src/wal/log-engine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const peers = [
  { peerId: 11, nodeId: 1 },
  { peerId: 12, nodeId: 2 },
];

// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): a started server's ticker
// fires as the test advances it, and every wait is a bounded number of ticks.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('region server: the raft core at its edge (R16 leftovers)', () => {
  const servers: RegionServer<never, never>[] = [];
  let clock = new HandClock();
  let waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const waitFor = (cond: () => boolean, what: string) => waits.until(cond, what);
  const settled = <T>(promise: Promise<T>, what: string) => waits.settled(promise, what);
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
    clock = new HandClock();
    waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  });

  it('a failed core assertion while stepping a message fails the replica, not the process', async () => {
    // Node 1 alone; what it sends goes nowhere, and the test delivers node 2's answers by hand.
    const s = new RegionServer<Counter, number>(1, new MemoryLogEngine(), new LoopbackTransport(1, () => {}), { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS }, silentLogger, clock);
    servers.push(s as unknown as RegionServer<never, never>);
    await s.open({ regionId: 'r', selfPeerId: 11, peers, bootstrap: true });
    const replica = s.hostedReplica('r')!;
    await waitFor(() => replica.appliedIndex >= replica.raft.log.committed, 'bootstrap applied');
    s.campaign('r');
    expect(replica.raft.role, 'a pre-candidate (pre-vote is on)').to.equal(Role.PreCandidate);
    const term = replica.raft.term + 1;
    const answer = (type: Message['type']): Message => makeMessage({ type, from: 12, to: 11, term, reject: false });
    s.step(2, 'r', answer(MessageType.PreVoteResponse));
    expect(replica.raft.role).to.equal(Role.Candidate);
    // Planted here, in the test: the candidate's configuration loses it, as if a removal were
    // applied while it campaigned — what R16 argues never happens. Node 2's vote then wins it the
    // election in a configuration without itself, and `becomeLeader` asserts.
    replica.raft.applyConfChange({ type: ConfChangeType.RemoveNode, nodeId: 11, context: '' });
    // Before: AssertionError "leader must be in its own configuration" out of step().
    expect(() => s.step(2, 'r', answer(MessageType.VoteResponse))).not.to.throw();
    expect(s.failure('r')?.reason).to.match(/raft core failed during a VoteResponse message from peer 12: leader must be in its own configuration/);
    expect(s.replica('r'), 'fenced').to.equal(undefined);
    expect(s.failedReplicas().map((f) => f.selfPeerId)).to.deep.equal([11]);
    expect(replica.answersRaft, 'out of raft: no more messages or ticks').to.equal(false);
    // Later messages to it are dropped as for any region not hosted; nothing throws.
    expect(() => s.step(2, 'r', makeMessage({ type: MessageType.Heartbeat, from: 12, to: 11, term: term + 1 }))).not.to.throw();
  });

  /** A single-voter region `r` led by node 1's peer 11 (no tick timer: the test ticks by hand), and the roles its host was told. */
  async function soleLeader(): Promise<{ s: RegionServer<Counter, number>; roles: string[] }> {
    const roles: string[] = [];
    const s = new RegionServer<Counter, number>(1, new MemoryLogEngine(), new LoopbackTransport(1, () => {}), { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS }, silentLogger, clock, {
      onRoleChange: (_regionId, role) => roles.push(role),
    });
    servers.push(s as unknown as RegionServer<never, never>);
    await s.open({ regionId: 'r', selfPeerId: 11, peers: [peers[0]!], bootstrap: true });
    const replica = s.hostedReplica('r')!;
    await waitFor(() => replica.appliedIndex >= replica.raft.log.committed, 'bootstrap applied');
    s.campaign('r');
    await waitFor(() => s.replica('r')?.isLeader() === true && roles.at(-1) === 'leader', 'leader, and its host told');
    return { s, roles };
  }

  it('a core exception during a tick fails the replica, which is ticked no more; its host hears it no longer leads (review S2, S3)', async () => {
    const { s, roles } = await soleLeader();
    const replica = s.hostedReplica('r')!;
    expect(roles.at(-1)).to.equal('leader');
    let ticks = 0;
    // Planted: the core throws on its next tick (any assertion).
    replica.raft.tick = () => {
      ticks++;
      throw new Error('planted core assertion');
    };
    // Before: the exception went out of tick() (the tick timer's callback: the process ended).
    expect(() => s.tick()).not.to.throw();
    expect(s.failure('r')?.reason).to.match(/raft core failed during a tick: planted core assertion/);
    expect(s.replica('r'), 'fenced').to.equal(undefined);
    s.tick();
    s.tick();
    expect(ticks, 'ticked once, then no more').to.equal(1);
    // Before (S2): the host was last told 'leader', though the replica leads no more.
    expect(roles.at(-1), `the host was told: ${roles.join(' → ')}`).to.equal('follower');
  });

  it('a core exception during a campaign or a leadership transfer asked for fails the replica and answers UNAVAILABLE (S3)', async () => {
    for (const call of ['campaign', 'transferLeader'] as const) {
      const { s } = await soleLeader();
      const replica = s.hostedReplica('r')!;
      // Planted: the core throws a non-Error (a string), as a broken dependency might.
      replica.raft[call] = () => {
        throw `planted ${call} failure`;
      };
      let refused: unknown;
      try {
        if (call === 'campaign') s.campaign('r');
        else s.transferLeader('r', 12);
      } catch (err) {
        refused = err;
      }
      // Before: the planted string itself came out of the call, and the replica went on.
      expect(isRegionDbError(refused, ErrorCode.Unavailable), `${call}: refused UNAVAILABLE, got ${String(refused)}`).to.equal(true);
      expect(s.failure('r')?.reason, call).to.match(new RegExp(`raft core failed during a (campaign|leadership transfer): planted ${call} failure`));
      expect(s.replica('r'), `${call}: fenced`).to.equal(undefined);
    }
  });

  it('a removed replica (R16: it answers raft until deleted) that fails while stepping gets no further tick or message (S3)', async () => {
    // Node 1's peer 11 leads {11, 12}; it removes peer 12 (node 2), which applies its removal.
    const byNode = new Map<number, RegionServer<Counter, number>>();
    for (const nodeId of [1, 2]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) byNode.get(to)?.step(from, e.regionId, e.message);
      });
      const s = new RegionServer<Counter, number>(nodeId, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, skipBcastCommit: false }, silentLogger, clock);
      byNode.set(nodeId, s);
      servers.push(s as unknown as RegionServer<never, never>);
      await s.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
    }
    const [s1, s2] = [byNode.get(1)!, byNode.get(2)!];
    s1.start(); // node 2 is never ticked by its timer: the test ticks it by hand
    const leader = s1.hostedReplica('r')!;
    await waitFor(() => leader.appliedIndex >= leader.raft.log.committed, 'bootstrap applied');
    s1.campaign('r');
    // Its first entry is the no-op of its term: until that is applied a membership change is
    // refused (raft.ts becomeLeader), although everything committed so far (the bootstrap) is.
    await waitFor(() => leader.isLeader() && leader.raft.log.term(leader.raft.log.applied) === leader.raft.term, 'node 1 leads, its first entry applied');
    await settled(s1.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: 12, context: '' }), 'the removal of peer 12');
    await waitFor(() => s2.hostedReplica('r')?.removed === true, 'peer 12 applied its removal');
    const removed = s2.hostedReplica('r')!;
    expect(removed.answersRaft, 'removed, still answering raft').to.equal(true);
    let stepped = 0;
    let ticked = 0;
    removed.raft.step = () => {
      stepped++;
      throw new Error('planted core assertion');
    };
    removed.raft.tick = () => {
      ticked++;
    };
    s2.tick();
    expect(ticked, 'a removed replica is ticked').to.equal(1);
    expect(() => s2.step(1, 'r', makeMessage({ type: MessageType.Heartbeat, from: 11, to: 12, term: removed.raft.term }))).not.to.throw();
    expect(s2.failure('r')?.reason).to.match(/raft core failed during a Heartbeat message from peer 11: planted core assertion/);
    expect(removed.answersRaft, 'failed: out of raft').to.equal(false);
    s2.tick();
    s2.tick();
    s2.step(1, 'r', makeMessage({ type: MessageType.Heartbeat, from: 11, to: 12, term: removed.raft.term }));
    // Before (answersRaft true for a removed replica whatever its failure): it was still ticked.
    expect({ ticked, stepped }, 'nothing reaches it after its failure').to.deep.equal({ ticked: 1, stepped: 1 });
  });

  it('a replica failed while its cycle writes the batch is driven no further by that cycle: nothing sent, nothing applied (review N1)', async () => {
    // Node 2's log engine can hold a batch's write until the test releases it.
    class HeldLogEngine extends MemoryLogEngine {
      hold: Promise<void> | undefined;
      waiting = false;
      override batch(): LogBatch {
        const inner = super.batch();
        return {
          ...inner,
          commit: async () => {
            if (this.hold) {
              this.waiting = true;
              await this.hold;
            }
            await inner.commit();
            this.waiting = false;
          },
        };
      }
    }
    const engine2 = new HeldLogEngine();
    const byNode = new Map<number, RegionServer<Counter, number>>();
    let sentByNode2 = 0;
    for (const nodeId of [1, 2]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        if (from === 2) sentByNode2 += envelopes.filter((e) => e.regionId === 'r').length;
        for (const e of envelopes) byNode.get(to)?.step(from, e.regionId, e.message);
      });
      const s = new RegionServer<Counter, number>(nodeId, nodeId === 2 ? engine2 : new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, skipBcastCommit: false }, silentLogger, clock);
      byNode.set(nodeId, s);
      servers.push(s as unknown as RegionServer<never, never>);
      await s.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
    }
    const [s1, s2] = [byNode.get(1)!, byNode.get(2)!];
    s1.start(); // node 2 is not ticked: it only answers
    const leader = s1.hostedReplica('r')!;
    await waitFor(() => leader.appliedIndex >= leader.raft.log.committed, 'bootstrap applied');
    s1.campaign('r');
    await waitFor(() => leader.isLeader() && leader.appliedIndex >= leader.raft.log.committed, 'node 1 leads');
    await settled(s1.propose('r', new Uint8Array([1])), 'the first write');
    const follower = s2.hostedReplica('r')!;
    await waitFor(() => follower.stateMachine.total === 1, 'node 2 applied the first write');
    const stateMachine = follower.stateMachine;
    let release!: () => void;
    engine2.hold = new Promise<void>((ok) => {
      release = ok;
    });
    void s1.propose('r', new Uint8Array([2])).catch(() => undefined);
    await waitFor(() => engine2.waiting, "node 2's cycle writing the second write's batch");
    follower.raft.step = () => {
      throw new Error('planted core assertion');
    };
    s2.step(1, 'r', makeMessage({ type: MessageType.Heartbeat, from: 11, to: 12, term: follower.raft.term }));
    expect(s2.failure('r')?.reason).to.match(/planted core assertion/);
    const sentAtFailure = sentByNode2;
    engine2.hold = undefined;
    release();
    await waitFor(() => !engine2.waiting, 'the held batch written');
    await waits.tick(10); // ten more ticks of node 1 (node 2 is not ticked): its cycle had every chance to go on
    // Before: the cycle went on after its write and sent the append's answer of the failed replica.
    expect(sentByNode2 - sentAtFailure, 'messages of the failed replica sent after its failure').to.equal(0);
    expect(stateMachine.total, 'nothing applied to the released state machine').to.equal(1);
  });

  it('campaign() on a replica whose apply is stalled is refused as UNAVAILABLE, not ignored', async () => {
    let stalling = false;
    class Stallable {
      total = 0;
      apply(_index: number, command: Uint8Array): number | Promise<number> {
        if (stalling) return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'object store down (planted)'));
        this.total += command[0]!;
        return this.total;
      }
      serialize(): Uint8Array {
        return new TextEncoder().encode(String(this.total));
      }
    }
    const s = new RegionServer<Stallable, number>(
      1,
      new MemoryLogEngine(),
      new LoopbackTransport(1, () => {}),
      { create: () => new Stallable() },
      { ...defaultRaftTuning, tickMs: TICK_MS, applyRetry: { backoffMsMin: 60_000, backoffMsMax: 60_000, windowMs: 600_000 } },
      silentLogger,
      clock,
    );
    servers.push(s as unknown as RegionServer<never, never>);
    // A single voter: it elects itself, then stalls applying a write.
    await s.open({ regionId: 'r', selfPeerId: 11, peers: [peers[0]!], bootstrap: true });
    s.start();
    await waitFor(() => s.replica('r')?.isLeader() === true, 'leader');
    stalling = true;
    void s.propose('r', new Uint8Array([1])).catch(() => undefined);
    await waitFor(() => s.applyStall('r') !== undefined, 'apply stalled');
    const replica = s.hostedReplica('r')!;
    expect(replica.raft.campaignsHeld).to.equal(true);
    // Before: returned, having done nothing (hup() returns for a held replica).
    let refused: unknown;
    try {
      s.campaign('r');
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `refused UNAVAILABLE, got ${String(refused)}`).to.equal(true);
    expect((refused as Error).message).to.match(/cannot apply index \d+ yet .*retrying/);
    stalling = false;
  });
});
