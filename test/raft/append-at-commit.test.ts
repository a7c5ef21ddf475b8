// A leader's append whose previous entry is at the follower's commit index and has another term
// there: committed entries never change, so the follower's committed log is not its group's (a
// replica bootstrapped into a configuration the group never had, finding M35's hazard; a damaged
// or substituted disk). The follower used to reject it; the leader then probed below the
// follower's commit index, where the follower answers "have it", and the two repeated that for
// ever — the replica neither caught up nor failed, and a promoted one could never be repaired.
// The core now throws (its host fails the replica, which is rebuilt from its peers), as for a
// heartbeat committing past its log (heartbeat-commit.test.ts). M35's left item (a).
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { Raft } from '../../src/raft/raft.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { EntryType, MessageType, makeMessage } from '../../src/raft/types.js';

const enc = new TextEncoder();

/** Follower 2 of {1,2,3}: entries a@1, b@2, c@3 of term 1, committed up to `commit`. */
function follower(commit = 3): Raft {
  const storage = new MemoryStorage({ voters: [1, 2, 3], learners: [] });
  storage.append(['a', 'b', 'c'].map((d, i) => ({ term: 1, index: i + 1, type: EntryType.Normal, data: enc.encode(d) })));
  storage.setHardState({ term: 1, vote: 0, commit });
  return new Raft({ id: 2, storage, electionTicks: 10, heartbeatTicks: 1, rand: new SeededRand(3) });
}

const append = (index: number, logTerm: number) =>
  makeMessage({ type: MessageType.Append, from: 1, to: 2, term: 4, index, logTerm, commit: 3, entries: [{ term: 4, index: index + 1, type: EntryType.Normal, data: enc.encode('x') }] });

/** The append responses the follower sent, as `index` or `reject index`. */
function answers(f: Raft): string[] {
  if (!f.hasReady()) return [];
  return f
    .ready()
    .messages.filter((m) => m.type === MessageType.AppendResponse)
    .map((m) => `${m.reject ? 'reject ' : ''}${m.index}`);
}

describe("an append whose previous entry at the follower's commit index has another term", () => {
  it('is refused by an exception, not answered with a reject the leader probes below the commit index for ever (failed before: a reject)', () => {
    const f = follower();
    expect(() => f.step(append(3, 2))).to.throw(/our commit index, where we hold term 1: our committed log is not the group's/);
  });

  it('the same term there appends as before; a mismatch above the commit index, or past the log, is a reject as before', () => {
    const f = follower();
    f.step(append(3, 1));
    expect(answers(f)).to.deep.equal(['4']);
    const g = follower(2);
    g.step(append(3, 2)); // index 3 is not committed here: it may be another leader's, not the group's
    expect(answers(g)).to.deep.equal(['reject 3']);
    const h = follower();
    h.step(append(5, 3)); // past its log
    expect(answers(h)).to.deep.equal(['reject 5']);
  });
});
