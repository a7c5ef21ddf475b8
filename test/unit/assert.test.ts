// assert() (src/common/assert.ts): a message given as a function is built only when the assertion
// fails, and then the error is the one a string message gives. Round 7 made the messages of the
// assertions on the raft, WAL and apply paths lazy; the last cases check that what such an
// assertion says when it fails is the text it said before.
import { expect } from 'chai';
import { AssertionError, assert } from '../../src/common/assert.js';
import { RaftLog } from '../../src/raft/log.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { EntryType } from '../../src/raft/types.js';

function failureOf(fn: () => void): AssertionError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AssertionError);
    return err as AssertionError;
  }
  throw new Error('no assertion failed');
}

describe('assert', () => {
  it('does not build a lazy message when the condition holds', () => {
    let built = 0;
    for (let i = 0; i < 100; i++) assert(i >= 0, () => `built ${++built}`);
    expect(built).to.equal(0);
  });

  it('fails with the lazy message built once, as a string message fails', () => {
    let built = 0;
    const lazy = failureOf(() => assert(false, () => `index ${7} after ${++built}`));
    const eager = failureOf(() => assert(0, 'index 7 after 1'));
    expect(built).to.equal(1);
    expect(lazy.message).to.equal('index 7 after 1');
    expect(lazy.name).to.equal('AssertionError');
    expect(lazy.message).to.equal(eager.message);
  });

  it('the raft log and storage say what they said before (messages made lazy in round 7)', () => {
    const entry = (index: number) => ({ term: 1, index, type: EntryType.Normal, data: new Uint8Array() });
    const storage = new MemoryStorage();
    storage.append([entry(1), entry(2), entry(3)]);
    expect(failureOf(() => storage.append([entry(6)])).message).to.equal('append: gap: last 3, appending 6');
    expect(failureOf(() => storage.entries(3, 2, 1024)).message).to.equal('entries: lo 3 > hi 2');
    const log = new RaftLog(storage, 1024);
    expect(failureOf(() => log.commitTo(5)).message).to.equal('commitTo(5) beyond last index 3');
    log.commitTo(2);
    expect(failureOf(() => log.appliedTo(3)).message).to.equal('appliedTo(3) outside [0, 2]');
  });
});
