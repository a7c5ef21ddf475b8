import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { ProgressState } from '../../src/raft/progress.js';
import { Raft, Role } from '../../src/raft/raft.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { type Entry, MessageType, makeMessage } from '../../src/raft/types.js';
import { Network, bytes, processReady } from './harness.js';

function entry(index: number, term: number): Entry {
  return { index, term, type: 0, data: bytes(`${index}@${term}`) };
}

describe('§5.3 log replication', () => {
  it('replicates a proposal to every follower, commits it and applies it everywhere', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'x');
    net.tick(1); // heartbeat carries the new commit index
    for (const id of [1, 2, 3]) expect(net.values(id)).to.deep.equal(['x']);
  });

  it('by default a commit is broadcast at once: followers apply without waiting for a heartbeat', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'x');
    for (const id of [1, 2, 3]) expect(net.values(id)).to.deep.equal(['x']);
  });

  it('skipBcastCommit: no empty append for a commit alone; followers learn it from the next append or heartbeat', () => {
    const net = new Network([1, 2, 3], { skipBcastCommit: true });
    net.campaign(1);
    const before = net.delivered.length;
    net.propose(1, 'x');
    const appends = net.delivered.slice(before).filter((m) => m.type === MessageType.Append);
    expect(appends, 'one append per follower, carrying the entry').to.have.length(2);
    expect(appends.every((m) => m.entries.length === 1)).to.equal(true);
    // The leader committed and applied; the followers have the entry but not yet the commit.
    expect(net.values(1)).to.deep.equal(['x']);
    expect(net.values(2)).to.deep.equal([]);
    expect(net.values(3)).to.deep.equal([]);
    // The next proposal's append carries the earlier commit.
    net.propose(1, 'y');
    for (const id of [2, 3]) expect(net.values(id)).to.deep.equal(['x']);
    // A heartbeat carries the rest.
    net.tick(1);
    for (const id of [1, 2, 3]) expect(net.values(id)).to.deep.equal(['x', 'y']);
  });

  it('a follower rejects an append whose previous entry does not match and the leader backs off', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    for (let i = 0; i < 20; i++) net.propose(1, `v${i}`);
    net.heal();
    net.tick(1, 3);
    expect(net.values(3)).to.have.length(20);
    expect(net.raft(3).log.lastIndex()).to.equal(net.raft(1).log.lastIndex());
  });

  it('a follower truncates a conflicting uncommitted tail (docs/raft-rules.md F4)', () => {
    const net = new Network([1, 2, 3], { checkQuorum: false, preVote: false });
    net.campaign(1);
    net.propose(1, 'committed');
    net.isolate(1);
    // The old leader appends entries no one else receives.
    for (let i = 0; i < 5; i++) net.raft(1).propose([bytes(`lost${i}`)]);
    net.settle();
    net.campaign(2);
    net.propose(2, 'new');
    net.heal();
    net.tick(2, 3);
    expect(net.raft(1).role).to.equal(Role.Follower);
    expect(net.values(1)).to.deep.equal(['committed', 'new']);
    expect(net.raft(1).log.lastIndex()).to.equal(net.raft(2).log.lastIndex());
  });

  it('fast backoff skips a whole conflicting term per round trip', () => {
    // Follower has 50 entries of term 2 the leader (term 3) does not have.
    const leaderStore = new MemoryStorage({ voters: [1, 2], learners: [] });
    leaderStore.append([entry(1, 1), ...Array.from({ length: 10 }, (_, i) => entry(i + 2, 3))]);
    leaderStore.setHardState({ term: 3, vote: 1, commit: 1 });
    const followerStore = new MemoryStorage({ voters: [1, 2], learners: [] });
    followerStore.append([entry(1, 1), ...Array.from({ length: 50 }, (_, i) => entry(i + 2, 2))]);
    followerStore.setHardState({ term: 2, vote: 0, commit: 1 });
    const net = new Network([1, 2], { preVote: false, checkQuorum: false });
    net.nodes.set(1, { id: 1, raft: new Raft({ id: 1, storage: leaderStore, rand: new SeededRand(1), preVote: false }), storage: leaderStore, applied: [], readStates: [], appliedIndex: 0 });
    net.nodes.set(2, { id: 2, raft: new Raft({ id: 2, storage: followerStore, rand: new SeededRand(2), preVote: false }), storage: followerStore, applied: [], readStates: [], appliedIndex: 0 });
    net.campaign(1);
    const rejections = net.delivered.filter((m) => m.type === MessageType.AppendResponse && m.reject);
    expect(rejections.length).to.be.at.most(2);
    expect(net.raft(2).log.lastIndex()).to.equal(net.raft(1).log.lastIndex());
    expect(net.raft(2).log.term(2)).to.equal(3);
  });

  it('only the leader accepts proposals; others fail with NOT_LEADER and a leader hint', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    try {
      net.raft(2).propose([bytes('x')]);
      expect.fail('propose on a follower must throw');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.NotLeader)).to.equal(true);
      expect((err as { details: Record<string, string> }).details['leader']).to.equal('1');
    }
  });

  it('a follower persists entries before acknowledging them (P2)', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.raft(1).propose([bytes('x')]);
    const leaderRd = net.raft(1).ready();
    const append = leaderRd.messages.find((m) => m.type === MessageType.Append && m.to === 2)!;
    processReady(net.node(1), leaderRd);
    net.raft(1).advance(leaderRd);
    net.raft(2).step(append);
    const rd = net.raft(2).ready();
    const ack = rd.messages.find((m) => m.type === MessageType.AppendResponse)!;
    expect(rd.entries.map((e) => e.index)).to.include(ack.index);
    net.raft(2).advance(rd);
  });
});

describe('§5.4.2 committing entries from previous terms', () => {
  it('a leader does not commit an old-term entry by counting replicas; its no-op commits both (Figure 8)', () => {
    const store = new MemoryStorage({ voters: [1, 2, 3], learners: [] });
    store.append([entry(1, 1), entry(2, 1)]);
    store.setHardState({ term: 1, vote: 0, commit: 0 });
    const raft = new Raft({ id: 1, storage: store, rand: new SeededRand(3), preVote: false });
    raft.campaign();
    raft.step(makeMessage({ type: MessageType.VoteResponse, from: 2, to: 1, term: 2 }));
    expect(raft.role).to.equal(Role.Leader);
    let rd = raft.ready();
    store.append(rd.entries);
    raft.advance(rd);
    // Follower 2 acknowledges only the old-term entries.
    raft.step(makeMessage({ type: MessageType.AppendResponse, from: 2, to: 1, term: 2, index: 2 }));
    expect(raft.log.committed).to.equal(0);
    raft.step(makeMessage({ type: MessageType.AppendResponse, from: 2, to: 1, term: 2, index: 3 }));
    expect(raft.log.committed).to.equal(3);
    rd = raft.ready();
    raft.advance(rd);
  });
});

describe('P3 leader self-acknowledgement', () => {
  it('a single-node leader commits only after its own entries are persisted', () => {
    const store = new MemoryStorage({ voters: [1], learners: [] });
    const raft = new Raft({ id: 1, storage: store, rand: new SeededRand(1) });
    raft.campaign();
    expect(raft.role).to.equal(Role.Leader);
    raft.propose([bytes('x')]);
    expect(raft.log.committed).to.equal(0);
    let rd = raft.ready();
    expect(rd.committedEntries).to.have.length(0);
    store.append(rd.entries);
    raft.advance(rd);
    expect(raft.log.committed).to.equal(2);
    rd = raft.ready();
    expect(rd.committedEntries.map((e) => e.index)).to.deep.equal([1, 2]);
    raft.advance(rd);
  });
});

describe('flow control', () => {
  it('maxInflightMsgs bounds optimistic appends to an unresponsive follower', () => {
    const net = new Network([1, 2], { maxInflightMsgs: 4, checkQuorum: false });
    net.campaign(1);
    net.dropType(MessageType.AppendResponse);
    for (let i = 0; i < 20; i++) net.propose(1, `v${i}`);
    const appends = net.delivered.filter((m) => m.type === MessageType.Append && m.entries.length > 0 && m.to === 2);
    expect(appends.length).to.be.at.most(5);
  });

  it('maxSizePerMsg splits large catch-up into several messages', () => {
    const net = new Network([1, 2], { maxSizePerMsgBytes: 200, checkQuorum: false });
    net.campaign(1);
    net.isolate(2);
    for (let i = 0; i < 30; i++) net.propose(1, 'x'.repeat(50));
    net.heal();
    net.tick(1, 3);
    const appends = net.delivered.filter((m) => m.type === MessageType.Append && m.to === 2 && m.entries.length > 0);
    for (const m of appends) expect(m.entries.length).to.be.at.most(3);
    expect(net.values(2)).to.have.length(30);
  });

  it('maxUncommittedEntriesSize drops proposals with PROPOSAL_DROPPED instead of growing without bound', () => {
    const net = new Network([1, 2, 3], { maxUncommittedEntriesBytes: 1000 });
    net.campaign(1);
    net.isolate(2);
    net.isolate(3);
    let dropped = 0;
    for (let i = 0; i < 50; i++) {
      try {
        net.raft(1).propose([bytes('y'.repeat(100))]);
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.ProposalDropped)).to.equal(true);
        dropped++;
      }
      net.settle();
    }
    expect(dropped).to.be.greaterThan(30);
  });
});

describe('Progress states', () => {
  it('a follower that acknowledges moves from probe to replicate', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    expect(net.raft(1).status().progress.get(2)!.state).to.equal(ProgressState.Replicate);
  });
});
