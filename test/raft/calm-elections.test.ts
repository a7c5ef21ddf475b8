import { expect } from 'chai';
import { type Message, MessageType, makeMessage } from '../../src/raft/types.js';
import { Role } from '../../src/raft/raft.js';
import { Network, type RaftOptions, processReady } from './harness.js';

// The two opt-in election rules of docs/quiescence.md, "Elections under a stalled loop":
// RaftConfig.preVotePriority and RaftConfig.countLateVotes. Each case runs with the rule off too,
// where it shows the waste the rule removes (the case would fail without the rule).

/** Takes node `id`'s ready as a host would (persist, apply) and returns its messages, undelivered. */
function drain(net: Network, id: number): Message[] {
  const node = net.node(id);
  if (!node.raft.hasReady()) return [];
  const rd = node.raft.ready();
  const out = processReady(node, rd);
  node.raft.advance(rd);
  return out;
}

/** Delivers `messages` addressed to `to` (others dropped) and returns what `to` sends in answer. */
function deliver(net: Network, to: number, messages: readonly Message[]): Message[] {
  for (const m of messages) if (m.to === to) net.raft(to).step(m);
  return drain(net, to);
}

/**
 * Leader 1 with an entry replicated to 2 and 3 (equal logs), then node 1 is gone and both
 * followers are told so (the host's failure detector): neither is in its lease any more.
 */
function leaderGone(options: RaftOptions): Network {
  const net = new Network([1, 2, 3], options);
  net.campaign(1);
  net.propose(1, 'a');
  net.isolate(1);
  net.raft(2).leaderUnreachable();
  net.raft(3).leaderUnreachable();
  return net;
}

/** Leaders among 2 and 3 (the isolated 1 still believes it leads). */
function survivingLeaders(net: Network): number[] {
  return net.leaders().filter((id) => id !== 1);
}

function countSent(net: Network, from: number, type: MessageType, start: number): number {
  return net.delivered.slice(start).filter((m) => m.from === from && m.type === type).length;
}

describe('calm elections (docs/quiescence.md, "Elections under a stalled loop")', () => {
  describe('preVotePriority', () => {
    it('off: two followers campaigning together both win their pre-votes and split the vote', () => {
      const net = leaderGone({});
      const start = net.delivered.length;
      net.raft(2).campaign();
      net.raft(3).campaign();
      net.settle();
      expect(net.raft(2).role).to.equal(Role.Candidate);
      expect(net.raft(3).role).to.equal(Role.Candidate);
      expect(survivingLeaders(net)).to.deep.equal([]);
      expect(countSent(net, 3, MessageType.Vote, start)).to.be.greaterThan(0);
    });

    it('on: of two overlapping campaigns with equal logs the lower id goes on alone and wins', () => {
      const net = leaderGone({ preVotePriority: true });
      const start = net.delivered.length;
      const term = net.raft(2).term;
      net.raft(2).campaign();
      net.raft(3).campaign();
      net.settle();
      expect(survivingLeaders(net)).to.deep.equal([2]);
      expect(net.raft(2).term).to.equal(term + 1); // one vote round
      expect(net.raft(3).role).to.equal(Role.Follower);
      expect(countSent(net, 3, MessageType.Vote, start), 'node 3 never asked for real votes').to.equal(0);
      // 2 refused 3's pre-vote (it was campaigning itself); 3 granted 2's.
      const refusals = net.delivered.slice(start).filter((m) => m.from === 2 && m.to === 3 && m.type === MessageType.PreVoteResponse);
      expect(refusals.map((m) => m.reject)).to.deep.equal([true]);
    });

    it('on: the higher id still wins when its log is more up to date (no one waits for a candidate that cannot win)', () => {
      const net = new Network([1, 2, 3], { preVotePriority: true });
      net.campaign(1);
      net.propose(1, 'a');
      net.cutLink(1, 2);
      net.propose(1, 'b'); // on 1 and 3 only
      net.isolate(1);
      net.raft(2).leaderUnreachable();
      net.raft(3).leaderUnreachable();
      net.raft(2).campaign();
      net.raft(3).campaign();
      net.settle();
      expect(survivingLeaders(net)).to.deep.equal([3]);
      expect(net.values(3)).to.deep.equal(['a', 'b']);
    });

    it('on: a follower (not campaigning) grants a higher id its pre-vote as before', () => {
      const net = leaderGone({ preVotePriority: true });
      net.raft(3).campaign();
      net.settle();
      expect(survivingLeaders(net)).to.deep.equal([3]);
    });
  });

  describe('countLateVotes', () => {
    /**
     * Node 2 campaigns; its vote request reaches 3, which grants it, but the grant is held back
     * until 2's election timer has fired again (2 is a pre-candidate of the same term by then).
     * Returns the network, the held grant and the term of 2's candidacy.
     */
    function grantArrivesLate(options: RaftOptions) {
      const net = leaderGone(options);
      net.raft(2).campaign();
      const preVotes = drain(net, 2);
      const preVoteAnswers = deliver(net, 3, preVotes);
      const votes = deliver(net, 2, preVoteAnswers);
      expect(net.raft(2).role).to.equal(Role.Candidate);
      const term = net.raft(2).term;
      const grant = deliver(net, 3, votes);
      expect(grant.map((m) => [m.type, m.reject, m.term])).to.deep.equal([[MessageType.VoteResponse, false, term]]);
      for (let i = 0; i < 40 && net.raft(2).role === Role.Candidate; i++) {
        net.raft(2).tick();
        drain(net, 2); // its new pre-votes are lost
      }
      expect(net.raft(2).role).to.equal(Role.PreCandidate);
      expect(net.raft(2).term).to.equal(term);
      return { net, grant, term };
    }

    it('off: the grant that arrives after the timer fired is ignored; the round is lost', () => {
      const { net, grant } = grantArrivesLate({});
      deliver(net, 2, grant);
      expect(net.raft(2).role).to.equal(Role.PreCandidate);
      expect(survivingLeaders(net)).to.deep.equal([]);
    });

    it('on: the late grant still counts and makes the pre-candidate leader of that same term', () => {
      const { net, grant, term } = grantArrivesLate({ countLateVotes: true });
      const out = deliver(net, 2, grant);
      expect(net.raft(2).role).to.equal(Role.Leader);
      expect(net.raft(2).term).to.equal(term);
      expect(out.some((m) => m.type === MessageType.Append && m.to === 3), 'the new leader appends').to.equal(true);
      // The new leader commits its no-op and a proposal with 3, as any leader of that term would.
      net.send(out);
      net.propose(2, 'b');
      expect(net.values(3)).to.deep.equal(['a', 'b']);
    });

    it('on: a late refusal, or a grant of an earlier term, does not make it leader', () => {
      const { net, grant, term } = grantArrivesLate({ countLateVotes: true });
      deliver(net, 2, [{ ...grant[0]!, reject: true }]);
      expect(net.raft(2).role).to.equal(Role.PreCandidate);
      deliver(net, 2, [{ ...grant[0]!, term: term - 1 }]);
      expect(net.raft(2).role).to.equal(Role.PreCandidate);
    });

    it('on: a pre-candidate that was never candidate in its term counts no vote response', () => {
      const net = leaderGone({ countLateVotes: true });
      drain(net, 2);
      net.raft(2).campaign();
      drain(net, 2);
      expect(net.raft(2).role).to.equal(Role.PreCandidate);
      const term = net.raft(2).term;
      // Grants from both others: a quorum without 2's own vote (2 voted for 1 in this term, and 1
      // leads it), so only the missing candidacy keeps them from counting. One grant alone could
      // never make a quorum here, with or without the rule's guards.
      deliver(net, 2, [1, 3].map((from) => makeMessage({ type: MessageType.VoteResponse, from, to: 2, term })));
      expect(net.raft(2).role).to.equal(Role.PreCandidate);
    });
  });
});
