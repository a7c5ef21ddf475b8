import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { Raft, Role } from '../../src/raft/raft.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { MessageType } from '../../src/raft/types.js';
import { AddLearner, AddVoter, Network, RemoveNode } from './harness.js';

describe('§6 membership changes (single-step, learners first)', () => {
  it('adds a learner, which receives the log but does not vote or count toward commit', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    net.addNode(4, [1, 2, 3], []);
    net.raft(1).proposeConfChange({ type: AddLearner, nodeId: 4, context: '' });
    net.settle();
    net.tick(1, 3);
    expect(net.raft(1).confState()).to.deep.equal({ voters: [1, 2, 3], learners: [4] });
    expect(net.values(4)).to.deep.equal(['a']);
    // With 2 and 3 down, the learner's acknowledgement cannot commit anything.
    net.isolate(2);
    net.isolate(3);
    net.propose(1, 'b');
    net.tick(1);
    expect(net.values(1)).to.deep.equal(['a']);
    expect(net.raft(4).role).to.equal(Role.Follower);
    net.tick(4, 50);
    expect(net.raft(4).role, 'a learner never campaigns').to.equal(Role.Follower);
  });

  it('promotes a caught-up learner to voter, then it counts toward quorum', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.addNode(4, [1, 2, 3], []);
    net.raft(1).proposeConfChange({ type: AddLearner, nodeId: 4, context: '' });
    net.settle();
    net.raft(1).proposeConfChange({ type: AddVoter, nodeId: 4, context: '' });
    net.settle();
    net.tick(1, 2);
    expect(net.raft(1).confState()).to.deep.equal({ voters: [1, 2, 3, 4], learners: [] });
    expect(net.raft(4).confState().voters).to.include(4);
    net.isolate(2);
    net.isolate(3);
    net.propose(1, 'c');
    net.tick(1);
    expect(net.values(1), '2 of 4 voters are not a quorum').to.deep.equal([]);
    net.heal();
    net.isolate(3);
    net.tick(1, 2);
    expect(net.values(1)).to.deep.equal(['c']);
  });

  it('allows only one membership change in flight (P7)', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(2);
    net.isolate(3);
    net.raft(1).proposeConfChange({ type: AddLearner, nodeId: 4, context: '' });
    net.settle();
    try {
      net.raft(1).proposeConfChange({ type: AddLearner, nodeId: 5, context: '' });
      expect.fail('second change must be refused');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.ProposalDropped)).to.equal(true);
    }
  });

  it('removes a follower: the region keeps committing with the remaining voters', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.raft(1).proposeConfChange({ type: RemoveNode, nodeId: 3, context: '' });
    net.settle();
    net.tick(1, 2);
    expect(net.raft(1).confState().voters).to.deep.equal([1, 2]);
    net.isolate(3);
    net.propose(1, 'd');
    net.tick(1);
    expect(net.values(2)).to.deep.equal(['d']);
    // The removed node cannot campaign.
    net.tick(3, 100);
    expect(net.raft(3).role).to.not.equal(Role.Leader);
  });

  it('a leader that removes itself commits the change and then steps down (docs/raft-rules.md R16)', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.raft(1).proposeConfChange({ type: RemoveNode, nodeId: 1, context: '' });
    net.settle();
    net.tick(1, 2);
    expect(net.raft(1).role).to.equal(Role.Follower);
    net.isolate(1);
    for (let i = 0; i < 60 && net.leaders().length === 0; i++) net.tickAll();
    const leader = net.leaders()[0]!;
    expect(leader).to.be.oneOf([2, 3]);
    expect(net.raft(leader).confState().voters).to.deep.equal([2, 3]);
  });

  it('rejects invalid changes with INVALID_ARGUMENT', () => {
    const net = new Network([1]);
    net.campaign(1);
    for (const cc of [
      { type: RemoveNode, nodeId: 9, context: '' },
      { type: RemoveNode, nodeId: 1, context: '' },
      { type: AddVoter, nodeId: 1, context: '' },
    ] as const) {
      try {
        net.raft(1).proposeConfChange(cc);
        expect.fail(`${JSON.stringify(cc)} must be refused`);
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.InvalidArgument)).to.equal(true);
      }
    }
  });

  it('a node removed from the region stops receiving appends from the leader', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.raft(1).proposeConfChange({ type: RemoveNode, nodeId: 3, context: '' });
    net.settle();
    net.tick(1, 2);
    const before = net.delivered.length;
    net.propose(1, 'e');
    net.tick(1, 2);
    const toRemoved = net.delivered.slice(before).filter((m) => m.to === 3 && m.type === MessageType.Append);
    expect(toRemoved).to.have.length(0);
  });
});

describe('isMember / hasMembers (the per-message admission check) agree with confState()', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: after every conf change of a seeded sequence, from an empty configuration`, () => {
      const rand = new SeededRand(seed);
      const raft = new Raft({ id: 1, electionTicks: 10, heartbeatTicks: 1, storage: new MemoryStorage({ voters: [], learners: [] }), rand: new SeededRand(seed) });
      const types = [AddVoter, AddLearner, RemoveNode];
      for (let step = 0; step < 200; step++) {
        const cs = raft.confState();
        expect(raft.hasMembers(), `seed ${seed} step ${step}`).to.equal(cs.voters.length + cs.learners.length > 0);
        for (let id = 0; id <= 8; id++) {
          expect(raft.isMember(id), `seed ${seed} step ${step} id ${id}`).to.equal(cs.voters.includes(id) || cs.learners.includes(id));
        }
        raft.applyConfChange({ type: rand.pick(types), nodeId: rand.range(1, 8), context: '' });
      }
    });
  }
});
