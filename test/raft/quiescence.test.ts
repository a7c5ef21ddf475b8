import { expect } from 'chai';
import { Role } from '../../src/raft/raft.js';
import { MessageType, makeMessage } from '../../src/raft/types.js';
import { Network, type RaftOptions, bytes } from './harness.js';

// Q1 in src/raft/raft.ts; the design and its safety argument are in docs/quiescence.md.

function quiescedCluster(options: RaftOptions = {}): Network {
  const net = new Network([1, 2, 3], options);
  net.campaign(1);
  net.propose(1, 'a');
  expect(net.raft(1).quiesce()).to.equal(true);
  net.settle();
  return net;
}

function messagesFrom(net: Network, start: number): string[] {
  return net.delivered.slice(start).map((m) => `${m.from}->${m.to}:${m.type}`);
}

describe('quiescence (docs/quiescence.md, Q1)', () => {
  it('a caught-up leader quiesces every follower, and then no tick sends anything', () => {
    const net = quiescedCluster();
    for (const id of [1, 2, 3]) expect(net.raft(id).quiesced, `node ${id}`).to.equal(true);
    const before = net.delivered.length;
    net.tickAll(50); // five election timeouts
    expect(messagesFrom(net, before)).to.deep.equal([]);
    expect(net.leaders()).to.deep.equal([1]);
    expect(net.raft(2).log.committed).to.equal(net.raft(1).log.lastIndex());
  });

  it('a leader does not quiesce while a follower has not acknowledged its last entry', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.cutLink(1, 3);
    net.propose(1, 'a');
    expect(net.raft(1).log.committed).to.equal(net.raft(1).log.lastIndex()); // committed by 1 and 2
    expect(net.raft(1).quiesce()).to.equal(false);
    net.heal();
    net.tickAll(1); // heartbeat → 3 catches up
    expect(net.raft(1).quiesce()).to.equal(true);
  });

  it('a leader does not quiesce while a read is being confirmed, a transfer runs, or with lease reads', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.cutLink(1, 2);
    net.cutLink(1, 3);
    net.raft(1).readIndex(bytes('r'));
    net.settle();
    expect(net.raft(1).quiesce(), 'read pending').to.equal(false);
    net.heal();
    net.tickAll(1);
    expect(net.node(1).readStates).to.have.length(1);
    net.cutLink(1, 2);
    net.raft(1).transferLeader(2);
    net.settle();
    expect(net.raft(1).quiesce(), 'transfer pending').to.equal(false);

    const lease = new Network([1, 2, 3], { readOnly: 'lease' });
    lease.campaign(1);
    lease.propose(1, 'a');
    expect(lease.raft(1).quiesce(), 'lease reads').to.equal(false);
  });

  it('a proposal wakes the leader and its append wakes the followers', () => {
    const net = quiescedCluster();
    net.propose(1, 'b');
    for (const id of [1, 2, 3]) expect(net.raft(id).quiesced, `node ${id}`).to.equal(false);
    expect(net.values(3)).to.deep.equal(['a', 'b']);
    const before = net.delivered.length;
    net.tickAll(1);
    expect(messagesFrom(net, before).some((m) => m.startsWith('1->2:'))).to.equal(true); // heartbeats again
  });

  it('a ReadIndex on a quiesced leader wakes it and is confirmed by a heartbeat round', () => {
    const net = quiescedCluster();
    net.raft(1).readIndex(bytes('r'));
    net.settle();
    expect(net.node(1).readStates.map((r) => r.index)).to.deep.equal([net.raft(1).log.committed]);
    expect(net.raft(2).quiesced).to.equal(false);
  });

  it('requestLeaderContact: a quiesced follower wakes its leader, whose heartbeat round wakes every follower it counts (the stale-read gate)', () => {
    const net = quiescedCluster();
    const before = net.delivered.length;
    net.raft(2).requestLeaderContact();
    net.settle();
    expect(messagesFrom(net, before)).to.deep.equal([`2->1:${MessageType.HeartbeatResponse}`]);
    expect(net.raft(1).quiesced, 'the leader woke').to.equal(false);
    expect(net.raft(2).quiesced, 'the asking follower waits for the heartbeat').to.equal(true);
    net.tickAll(2); // heartbeatTicks
    const sent = messagesFrom(net, before);
    expect(sent, 'heartbeats to both followers').to.include.members([`1->2:${MessageType.Heartbeat}`, `1->3:${MessageType.Heartbeat}`]);
    for (const id of [2, 3]) expect(net.raft(id).quiesced, `follower ${id} woken`).to.equal(false);
    expect(net.leaders()).to.deep.equal([1]);
  });

  it('requestLeaderContact sends nothing from a leader or from a follower that knows no leader', () => {
    const net = quiescedCluster();
    const before = net.delivered.length;
    net.raft(1).requestLeaderContact();
    net.settle();
    expect(messagesFrom(net, before), 'the leader').to.deep.equal([]);
    const fresh = new Network([1, 2, 3]);
    fresh.raft(2).requestLeaderContact();
    fresh.settle();
    expect(fresh.delivered, 'a follower with no leader').to.deep.equal([]);
  });

  it('a woken follower waits a full election timeout before it campaigns', () => {
    const net = quiescedCluster({ electionTicks: 10 });
    net.isolate(1);
    // A stale message wakes follower 2 (any message does); the leader is silent from now on.
    net.raft(2).step(makeMessage({ type: MessageType.HeartbeatResponse, from: 3, to: 2, term: 1 }));
    net.settle();
    expect(net.raft(2).quiesced).to.equal(false);
    net.tick(2, 9);
    expect(net.raft(2).role).to.equal(Role.Follower);
  });

  it('quiesced followers never campaign by themselves when the leader dies (hence leaderUnreachable)', () => {
    const net = quiescedCluster({ electionTicks: 10 });
    net.isolate(1);
    net.tick(2, 100);
    net.tick(3, 100);
    expect(net.raft(2).role).to.equal(Role.Follower);
    expect(net.raft(3).role).to.equal(Role.Follower);
    expect(net.raft(2).leader).to.equal(1);
  });

  it('leaderUnreachable wakes the followers, drops the lease, and the lowest-id follower alone wins within two ticks', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const net = new Network([1, 2, 3], { electionTicks: 10 }, seed);
      net.campaign(3);
      net.propose(3, 'a');
      expect(net.raft(3).quiesce()).to.equal(true);
      net.settle();
      net.isolate(3);
      net.raft(1).leaderUnreachable();
      net.raft(2).leaderUnreachable();
      net.settle();
      let ticks = 0;
      while (net.leaders().filter((id) => id !== 3).length === 0 && ticks < 5) {
        net.tick(1);
        net.tick(2);
        ticks++;
      }
      expect(net.leaders().filter((id) => id !== 3), `seed ${seed}, after ${ticks} ticks`).to.deep.equal([1]);
      expect(ticks, `seed ${seed}`).to.be.at.most(2);
      expect(net.raft(1).term, `seed ${seed}: one election, no split vote`).to.equal(2);
    }
  });

  it('if the preferred follower is gone too, another follower campaigns after a normal election timeout', () => {
    const net = new Network([1, 2, 3, 4, 5], { electionTicks: 10 });
    net.campaign(5);
    net.propose(5, 'a');
    expect(net.raft(5).quiesce()).to.equal(true);
    net.settle();
    net.isolate(5);
    net.isolate(1);
    for (const id of [2, 3, 4]) net.raft(id).leaderUnreachable();
    let ticks = 0;
    while (net.leaders().filter((id) => id !== 5).length === 0 && ticks < 40) {
      for (const id of [2, 3, 4]) net.tick(id);
      ticks++;
    }
    expect(net.leaders().filter((id) => id !== 5)).to.have.length(1);
    expect(ticks).to.be.within(10, 30);
  });

  it('one follower alone that believes the leader down cannot depose it (the other is in lease)', () => {
    const net = quiescedCluster({ electionTicks: 10 });
    net.raft(2).leaderUnreachable();
    net.tick(2, 10); // campaigns: its pre-vote wakes 1 and 3, both refuse
    net.tickAll(3);
    expect(net.leaders()).to.deep.equal([1]);
    expect(net.raft(1).term).to.equal(1);
  });

  it('a follower whose log does not end at the leader\'s last entry refuses to quiesce and wakes the leader', () => {
    const net = quiescedCluster();
    const last = net.raft(1).log.lastIndex();
    const before = net.delivered.length;
    net.send([makeMessage({ type: MessageType.Quiesce, from: 1, to: 2, term: 1, index: last + 1, logTerm: 1, commit: last + 1 })]);
    expect(net.raft(2).quiesced).to.equal(false);
    expect(net.raft(2).log.committed).to.equal(last);
    expect(messagesFrom(net, before)).to.include(`2->1:${MessageType.HeartbeatResponse}`);
    expect(net.raft(1).quiesced).to.equal(false);
  });

  it('planted quiesceLaggingFollower: a follower behind the leader quiesces (the check above is what prevents it)', () => {
    const net = new Network([1, 2, 3], { plantedBugs: { quiesceLaggingFollower: true } });
    net.campaign(1);
    net.cutLink(1, 3);
    net.propose(1, 'a');
    net.heal();
    net.dropType(MessageType.Append);
    expect(net.raft(1).quiesce()).to.equal(true);
    net.settle();
    expect(net.raft(3).quiesced).to.equal(true);
    expect(net.raft(3).log.lastIndex()).to.be.lessThan(net.raft(1).log.lastIndex());
  });

  it('a higher-term Quiesce makes a candidate a follower of its sender', () => {
    const net = new Network([1, 2, 3]);
    net.isolate(2);
    net.campaign(2); // pre-candidate, cannot win
    net.heal();
    net.send([makeMessage({ type: MessageType.Quiesce, from: 1, to: 2, term: 5, index: 99, logTerm: 5, commit: 99 })]);
    expect(net.raft(2).role).to.equal(Role.Follower);
    expect(net.raft(2).leader).to.equal(1);
    expect(net.raft(2).term).to.equal(5);
    expect(net.raft(2).quiesced).to.equal(false);
  });
});
