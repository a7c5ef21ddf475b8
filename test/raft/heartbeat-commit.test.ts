// A heartbeat's commit index is the leader's word that this follower holds the entries up to it:
// the leader sends min(match, committed), match being what the follower acknowledged. A follower
// whose log ends before that commit lost entries it acknowledged (a disk that dropped synced
// writes, a log put back from an older copy): what it holds at the indexes it still has may be
// entries that never committed — a later leader committed others there. Committing what it holds,
// as this core did (it clamped the commit to its last index), applies those entries: silent
// divergence. It now refuses, as etcd-io/raft does (a core exception: its host fails the replica,
// which is rebuilt from its peers).
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { Raft } from '../../src/raft/raft.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { EntryType, MessageType, makeMessage } from '../../src/raft/types.js';

const enc = new TextEncoder();

/** Follower 2 of {1,2,3,4,5}, its log [a@1 (term 1), old1@2, old2@3 (term 1, never committed)], commit 1. */
function olderCopy(): Raft {
  const storage = new MemoryStorage({ voters: [1, 2, 3, 4, 5], learners: [] });
  storage.append(['a', 'old1', 'old2'].map((d, i) => ({ term: 1, index: i + 1, type: EntryType.Normal, data: enc.encode(d) })));
  storage.setHardState({ term: 2, vote: 3, commit: 1 });
  return new Raft({ id: 2, storage, electionTicks: 10, heartbeatTicks: 1, rand: new SeededRand(7) });
}

describe('a heartbeat committing past the follower\'s log (its log lost acknowledged entries)', () => {
  it('is refused (the core throws), not clamped to the follower\'s last index (failed before: old1 and old2 committed)', () => {
    const follower = olderCopy();
    // Leader 3 of term 2 committed new1..new4 at 2..5 with this follower's acknowledgement up to 5.
    const beat = makeMessage({ type: MessageType.Heartbeat, from: 3, to: 2, term: 2, commit: 5 });
    expect(() => follower.step(beat)).to.throw(/beyond our last index 3: this log lost entries it acknowledged/);
    expect(follower.status().commit, 'nothing committed from it').to.equal(1);
  });

  it('a heartbeat within the log commits as before', () => {
    const follower = olderCopy();
    follower.step(makeMessage({ type: MessageType.Heartbeat, from: 3, to: 2, term: 2, commit: 3 }));
    expect(follower.status().commit).to.equal(3);
  });
});
