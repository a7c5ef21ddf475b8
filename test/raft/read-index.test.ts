import { expect } from 'chai';
import { Role, leaseDriftTicks } from '../../src/raft/raft.js';
import { MessageType } from '../../src/raft/types.js';
import { Network, type RaftOptions, bytes } from './harness.js';

const ctx = (s: string) => bytes(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

describe('ReadIndex (thesis §6.4, docs/raft-rules.md R12)', () => {
  it('the leader answers with its commit index after a quorum heartbeat round', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    const before = net.delivered.length;
    net.raft(1).readIndex(ctx('r1'));
    net.settle();
    const heartbeats = net.delivered.slice(before).filter((m) => m.type === MessageType.Heartbeat);
    expect(heartbeats.length).to.be.greaterThan(0);
    const rs = net.node(1).readStates;
    expect(rs).to.have.length(1);
    expect(decode(rs[0]!.context)).to.equal('r1');
    expect(rs[0]!.index).to.equal(net.raft(1).log.committed);
  });

  it('an isolated leader cannot confirm a read (no stale read from an old leader)', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(1);
    net.raft(1).readIndex(ctx('r2'));
    net.settle();
    net.tick(1, 5);
    expect(net.node(1).readStates.filter((r) => r.index > 0)).to.have.length(0);
  });

  it('a pending read is dropped (index 0) when leadership is lost', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(1);
    net.raft(1).readIndex(ctx('r3'));
    net.settle();
    net.tick(1, 25); // CheckQuorum steps down
    expect(net.raft(1).role).to.equal(Role.Follower);
    expect(net.node(1).readStates.map((r) => [decode(r.context), r.index])).to.deep.equal([['r3', 0]]);
  });

  it('a new leader serves no read before it commits an entry of its term', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    net.dropType(MessageType.AppendResponse); // the no-op of the next term cannot commit
    net.isolate(1);
    for (let i = 0; i < 60 && net.leaders().filter((id) => id !== 1).length === 0; i++) {
      net.tick(2);
      net.tick(3);
    }
    const leader = net.leaders().find((id) => id !== 1)!;
    net.raft(leader).readIndex(ctx('r4'));
    net.settle();
    expect(net.node(leader).readStates).to.have.length(0);
    net.heal();
    net.isolate(1);
    net.tick(leader, 2);
    expect(net.node(leader).readStates.map((r) => decode(r.context))).to.deep.equal(['r4']);
    expect(net.node(leader).readStates[0]!.index).to.equal(net.raft(leader).log.committed);
  });

  // Issue 14 item 6. The datanode WAL defers a hard state that moved only the commit index
  // (src/wal/wal.ts), so a single voter can restart with a commit index below writes it had
  // already applied and acknowledged. Until its no-op commits, its commit index is not an upper
  // bound of what clients saw: a read must wait for it like on any other leader (P6).
  function singleVoterReadAfterRestart(options: RaftOptions): { readIndex: number; ackedIndex: number } {
    const net = new Network([1], options);
    net.campaign(1);
    const acked = net.propose(1, 'a');
    expect(net.raft(1).log.committed).to.be.at.least(acked.index); // applied and acknowledged
    const storage = net.node(1).storage;
    const durable = storage.initialState().hardState;
    storage.setHardState({ ...durable, commit: acked.index - 1 }); // the deferred commit index was lost
    net.restart(1);
    net.raft(1).campaign(); // a single voter wins at once; its no-op is not yet persisted
    expect(net.raft(1).role).to.equal(Role.Leader);
    net.raft(1).readIndex(ctx('s1')); // queued before the no-op commits
    net.settle();
    const rs = net.node(1).readStates;
    expect(rs.map((r) => decode(r.context))).to.deep.equal(['s1']);
    return { readIndex: rs[0]!.index, ackedIndex: acked.index };
  }

  it('a restarted single voter serves no read before it commits an entry of its term', () => {
    const { readIndex, ackedIndex } = singleVoterReadAfterRestart({});
    expect(readIndex, 'read index below an acknowledged write').to.be.at.least(ackedIndex);
  });

  it('the check above can fail: with the old order planted, the read index misses the acknowledged write', () => {
    const { readIndex, ackedIndex } = singleVoterReadAfterRestart({ plantedBugs: { singleVoterReadBeforeTermCheck: true } });
    expect(readIndex).to.be.below(ackedIndex);
  });

  it('a follower forwards the request and gets the leader commit index back', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    net.raft(2).readIndex(ctx('f1'));
    net.settle();
    const rs = net.node(2).readStates;
    expect(rs.map((r) => decode(r.context))).to.deep.equal(['f1']);
    expect(rs[0]!.index).to.equal(net.raft(1).log.committed);
  });

  it('a request forwarded by a follower that is no longer the leader is answered to the node that asked', () => {
    // Node 2 still takes node 3 for the leader when node 1 has taken over (it has not heard from
    // 1 yet): its request goes to 3, which forwards it to 1. The answer must reach 2: answered
    // to the forwarding node, it lands in 3's read states under 2's context (3 has no read of
    // that context and drops it), and 2's read waits for its timeout.
    const net = new Network([1, 2, 3]);
    net.campaign(3);
    net.propose(3, 'a');
    net.cutLink(1, 2);
    net.raft(3).transferLeader(1); // node 3 votes for 1; node 2 hears nothing from 1
    net.settle();
    expect(net.raft(1).role).to.equal(Role.Leader);
    net.propose(1, 'b');
    expect(net.raft(2).leader, 'node 2 has not heard from the new leader').to.equal(3);
    net.heal();
    net.raft(2).readIndex(ctx('f2'));
    net.settle();
    expect(net.node(3).readStates.map((r) => decode(r.context)), "node 3 got node 2's answer").to.deep.equal([]);
    const rs = net.node(2).readStates;
    expect(rs.map((r) => decode(r.context))).to.deep.equal(['f2']);
    expect(rs[0]!.index).to.equal(net.raft(1).log.committed);
  });

  it('lease reads answer without a heartbeat round (opt-in) once a quorum acknowledged a heartbeat', () => {
    const net = new Network([1, 2, 3], { readOnly: 'lease' });
    net.campaign(1);
    net.propose(1, 'a');
    net.tick(1); // a heartbeat the followers acknowledge: the lease holds
    const before = net.delivered.length;
    net.raft(1).readIndex(ctx('l1'));
    net.settle();
    expect(net.delivered.slice(before).filter((m) => m.type === MessageType.Heartbeat)).to.have.length(0);
    expect(net.node(1).readStates).to.have.length(1);
  });

  // R10: the leader's lease ends before the followers' can (nested, with a drift margin): it
  // counts from a heartbeat a quorum acknowledged, for an election timeout less leaseDriftTicks —
  // a follower ignores (pre-)votes for an election timeout after it got that heartbeat. Before,
  // the leader trusted its role, which CheckQuorum takes away only once per election timeout: up
  // to two timeouts after its last contact, while the followers could vote after one.
  it('the lease ends leaseDriftTicks before an election timeout after the last acknowledged heartbeat', () => {
    const electionTicks = 10;
    const net = new Network([1, 2, 3], { readOnly: 'lease', electionTicks });
    net.campaign(1);
    net.propose(1, 'a');
    net.tick(1); // acknowledged at leader tick 1
    net.cutLink(2, 1);
    net.cutLink(3, 1);
    const lastAcked = 1;
    const leaseEnd = lastAcked + electionTicks - leaseDriftTicks(electionTicks);
    for (let tick = lastAcked + 1; tick <= electionTicks + 5; tick++) {
      net.tick(1);
      const context = `t${tick}`;
      net.raft(1).readIndex(ctx(context));
      net.settle();
      const answered = net.node(1).readStates.some((r) => decode(r.context) === context && r.index > 0);
      expect(answered, `read at leader tick ${tick} (lease until ${leaseEnd})`).to.equal(tick < leaseEnd);
    }
  });

  it('a restarted voter honours a lease it may have granted: no (pre-)vote for its first election timeout', () => {
    const net = new Network([1, 2, 3], { readOnly: 'lease' });
    net.campaign(1);
    net.propose(1, 'a');
    net.tick(1); // 2 and 3 acknowledged: 1's lease holds
    net.isolate(1);
    net.restart(2); // 2 forgot it heard from 1
    net.raft(3).campaign(); // 3 asks 2 (1 is cut off)
    net.settle();
    expect(net.leaders(), 'no second leader while 1 holds its lease').to.deep.equal([1]);
    net.tick(2, 10); // 2's first election timeout passes
    net.raft(3).campaign();
    net.settle();
    expect(net.leaders()).to.include(3);
  });

  // Finding E14 (docs/correctness.md): the lease is counted in ticks. A leader whose process
  // stalled (no ticks) while the others elected a leader and committed a write still answers from
  // its lease when it runs again, cut off from them: a stale read (the simulator's `pause` fault,
  // register seed 70 with lease reads). Its host voids the lease (suspendLease) after a stall.
  describe('a voided lease (suspendLease, finding E14)', () => {
    /** Leader 1 with lease reads, its lease held: 2 and 3 acknowledged a heartbeat of its tick 1. */
    function leaseLeader(): Network {
      const net = new Network([1, 2, 3], { readOnly: 'lease' });
      net.campaign(1);
      net.propose(1, 'a');
      net.tick(1);
      return net;
    }

    /** Heartbeats sent while `read` is asked and everything it causes settles. */
    function heartbeatsFor(net: Network, read: string): number {
      const before = net.delivered.length;
      net.raft(1).readIndex(ctx(read));
      net.settle();
      return net.delivered.slice(before).filter((m) => m.type === MessageType.Heartbeat).length;
    }

    /** Leader 1 with lease reads, then stalled (not ticked) and cut off while 2 and 3 elect a leader that commits 'b'. */
    function stalledLeader(): { net: Network; other: number } {
      const net = leaseLeader();
      net.isolate(1);
      for (let i = 0; i < 60 && net.leaders().filter((id) => id !== 1).length === 0; i++) {
        net.tick(2);
        net.tick(3);
      }
      const other = net.leaders().find((id) => id !== 1)!;
      expect(other, 'a new leader among 2 and 3').to.not.equal(undefined);
      net.propose(other, 'b');
      expect(net.raft(other).log.committed).to.be.above(net.raft(1).log.committed);
      return { net, other };
    }

    it('the hazard: a stalled leader answers from its lease a read that misses the new leader\'s write', () => {
      const { net } = stalledLeader();
      expect(net.raft(1).role).to.equal(Role.Leader);
      net.raft(1).readIndex(ctx('stale'));
      net.settle();
      expect(net.node(1).readStates.map((r) => decode(r.context))).to.deep.equal(['stale']);
    });

    it('voided, the stalled leader answers no read: it needs a quorum round it cannot get', () => {
      const { net } = stalledLeader();
      net.raft(1).suspendLease();
      net.raft(1).readIndex(ctx('v1'));
      net.settle();
      expect(net.node(1).readStates).to.have.length(0);
      net.tick(1, 25); // CheckQuorum: it steps down and drops the read (index 0), never answers it
      expect(net.raft(1).role).to.equal(Role.Follower);
      expect(net.node(1).readStates.map((r) => [decode(r.context), r.index])).to.deep.equal([['v1', 0]]);
    });

    it('a quorum round registered after the voiding brings the lease back', () => {
      const net = leaseLeader();
      net.raft(1).suspendLease();
      expect(heartbeatsFor(net, 'r1'), 'r1 takes a heartbeat round').to.be.greaterThan(0);
      expect(net.node(1).readStates.map((r) => decode(r.context))).to.deep.equal(['r1']);
      expect(heartbeatsFor(net, 'r2'), 'r2 from the lease again').to.equal(0);
      expect(net.node(1).readStates.map((r) => decode(r.context))).to.deep.equal(['r1', 'r2']);
    });

    it('a round registered before a later voiding does not bring the lease back', () => {
      const net = leaseLeader();
      net.raft(1).suspendLease();
      net.cutLink(2, 1);
      net.cutLink(3, 1);
      net.raft(1).readIndex(ctx('r1')); // registered; its acks are lost
      net.settle();
      net.raft(1).suspendLease(); // a second stall before r1 is confirmed
      net.heal();
      net.tick(1); // the tick's heartbeat carries r1's context: a quorum confirms r1
      expect(net.node(1).readStates.map((r) => decode(r.context))).to.deep.equal(['r1']);
      expect(heartbeatsFor(net, 'r2'), 'r2 still takes a round').to.be.greaterThan(0);
      expect(net.node(1).readStates.map((r) => decode(r.context))).to.deep.equal(['r1', 'r2']);
    });

    it('a leader that sent TimeoutNow answers no read from its lease: the target may lead before it hears so', () => {
      const net = leaseLeader();
      // The new leader's messages never reach 1 (its election and its write).
      net.cutLink(2, 1);
      net.cutLink(3, 1);
      net.raft(1).transferLeader(2);
      net.settle();
      expect(net.raft(2).role).to.equal(Role.Leader);
      net.propose(2, 'b');
      expect(net.raft(1).role, 'the old leader has not heard').to.equal(Role.Leader);
      net.raft(1).readIndex(ctx('t1'));
      net.settle();
      expect(net.node(1).readStates).to.have.length(0);
    });
  });
});
