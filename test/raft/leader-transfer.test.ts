import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { Role } from '../../src/raft/raft.js';
import { MessageType } from '../../src/raft/types.js';
import { Network, bytes } from './harness.js';

describe('leadership transfer (thesis §3.10, docs/raft-rules.md R11)', () => {
  it('transfers to an up-to-date follower with TimeoutNow', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    net.raft(1).transferLeader(2);
    net.settle();
    expect(net.delivered.some((m) => m.type === MessageType.TimeoutNow && m.to === 2)).to.equal(true);
    expect(net.raft(2).role).to.equal(Role.Leader);
    expect(net.raft(1).role).to.equal(Role.Follower);
  });

  // Raft.handOffOnClose: a leader its host is closing names a voter with its whole log; the host
  // sends that TimeoutNow and drops the replica (the region server's close, docs/quiescence.md).
  it('a closing leader hands off: a TimeoutNow to the lowest-id voter holding its whole log, which then leads', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    expect(net.raft(2).handOffOnClose(), 'a follower hands nothing off').to.equal(undefined);
    const m = net.raft(1).handOffOnClose();
    expect(m).to.deep.include({ type: MessageType.TimeoutNow, from: 1, to: 2, term: net.raft(1).term });
    expect(net.raft(1).hasReady(), 'nothing queued in a Ready: the host sends it').to.equal(false);
    // The closed leader takes no further part: nothing reaches it, and it sends nothing but this.
    net.cutLink(2, 1);
    net.cutLink(3, 1);
    net.send([m!]);
    expect(net.raft(2).role).to.equal(Role.Leader);
    expect(net.raft(2).term).to.equal(m!.term + 1);
  });

  it('a closing leader with no voter holding its whole log hands nothing off (an append would be needed first)', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(2);
    net.isolate(3);
    net.propose(1, 'unreplicated');
    expect(net.raft(1).handOffOnClose()).to.equal(undefined);
    net.heal();
    net.isolate(3);
    net.propose(1, 'to 2 only');
    expect(net.raft(1).handOffOnClose()?.to, 'voter 2 caught up, voter 3 not').to.equal(2);
  });

  it('brings a lagging target up to date first, then hands over', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
    net.heal();
    net.raft(1).transferLeader(3);
    net.settle();
    expect(net.raft(3).role).to.equal(Role.Leader);
    expect(net.raft(3).log.lastIndex()).to.be.at.least(7);
  });

  it('refuses proposals while transferring', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    net.raft(1).transferLeader(3);
    net.settle();
    try {
      net.raft(1).propose([bytes('x')]);
      expect.fail('must refuse');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.ProposalDropped)).to.equal(true);
    }
  });

  it('aborts a transfer that does not finish within an election timeout', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    net.raft(1).transferLeader(3);
    net.settle();
    net.tick(1, 11);
    expect(net.raft(1).status().leadTransferee).to.equal(0);
    net.propose(1, 'ok');
    expect(net.raft(1).role).to.equal(Role.Leader);
  });

  it('a transfer request on a follower is forwarded to the leader', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.raft(2).transferLeader(3);
    net.settle();
    expect(net.raft(3).role).to.equal(Role.Leader);
  });

  it('ignores a transfer to a learner', () => {
    const net = new Network([1, 2, 3], {}, 1, [4]);
    net.campaign(1);
    net.raft(1).transferLeader(4);
    net.settle();
    expect(net.raft(1).role).to.equal(Role.Leader);
  });
});
