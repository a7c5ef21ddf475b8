// The conformance suite every RaftLogStore implementation must pass (MemoryStorage here, the
// LevelDB WAL storage in src/wal). Durable implementations also pass the reopen cases: what a
// write method returned from must survive a close and reopen.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { RaftLogStore } from '../../src/raft/storage.js';
import { type Entry, EntryType } from '../../src/raft/types.js';

export interface StorageHarness {
  /** Opens a fresh, empty store. */
  open(): Promise<RaftLogStore>;
  /** Closes and reopens the same store; undefined for volatile implementations. */
  reopen?: (store: RaftLogStore) => Promise<RaftLogStore>;
  close(store: RaftLogStore): Promise<void>;
}

function entry(index: number, term: number, text = `e${index}`): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) };
}

function range(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(entry(i, term));
  return out;
}

function expectCode(fn: () => unknown, code: ErrorCode): void {
  try {
    fn();
  } catch (err) {
    expect(isRegionDbError(err, code), `expected ${code}, got ${String(err)}`).to.equal(true);
    return;
  }
  expect.fail(`expected ${code}, nothing thrown`);
}

export function describeRaftStorageConformance(name: string, harness: StorageHarness): void {
  describe(`raft storage conformance: ${name}`, () => {
    let store: RaftLogStore;
    beforeEach(async () => {
      store = await harness.open();
    });
    afterEach(async () => {
      await harness.close(store);
    });

    it('starts empty: first index 1, last index 0, term(0) = 0', () => {
      expect(store.firstIndex()).to.equal(1);
      expect(store.lastIndex()).to.equal(0);
      expect(store.term(0)).to.equal(0);
      expect(store.initialState().hardState).to.deep.equal({ term: 0, vote: 0, commit: 0 });
    });

    it('appends and reads entries back in order', async () => {
      await store.append(range(1, 5, 1));
      expect(store.lastIndex()).to.equal(5);
      const got = store.entries(2, 5, Number.MAX_SAFE_INTEGER);
      expect(got.map((e) => e.index)).to.deep.equal([2, 3, 4]);
      expect(new TextDecoder().decode(got[0]!.data)).to.equal('e2');
      expect(store.term(5)).to.equal(1);
    });

    it('truncates a conflicting suffix on append (§5.3)', async () => {
      await store.append(range(1, 5, 1));
      await store.append([entry(3, 2, 'x3'), entry(4, 2, 'x4')]);
      expect(store.lastIndex()).to.equal(4);
      expect(store.term(3)).to.equal(2);
      expect(store.term(2)).to.equal(1);
      expect(new TextDecoder().decode(store.entries(4, 5, 1 << 20)[0]!.data)).to.equal('x4');
    });

    it('limits entries by size but always returns at least one', async () => {
      await store.append(range(1, 10, 1));
      expect(store.entries(1, 11, 0).length).to.equal(1);
      const oneEntryBytes = 24 + 2;
      expect(store.entries(1, 11, oneEntryBytes * 3).length).to.equal(3);
    });

    it('reports compacted and unavailable indexes with typed errors', async () => {
      await store.append(range(1, 10, 1));
      await store.compact(4);
      expect(store.firstIndex()).to.equal(5);
      expect(store.term(4)).to.equal(1);
      expectCode(() => store.term(3), ErrorCode.StorageCompacted);
      expectCode(() => store.entries(3, 6, 1 << 20), ErrorCode.StorageCompacted);
      expectCode(() => store.term(11), ErrorCode.StorageUnavailable);
      expectCode(() => store.entries(5, 12, 1 << 20), ErrorCode.StorageUnavailable);
    });

    it('stores the hard state', async () => {
      await store.setHardState({ term: 3, vote: 2, commit: 1 });
      expect(store.initialState().hardState).to.deep.equal({ term: 3, vote: 2, commit: 1 });
    });

    it('creates a snapshot and serves it with its conf state', async () => {
      await store.append(range(1, 6, 2));
      const snap = await store.createSnapshot(4, { voters: [1, 2, 3], learners: [4] }, new Uint8Array([7]));
      expect(snap.metadata).to.deep.equal({ index: 4, term: 2, confState: { voters: [1, 2, 3], learners: [4] } });
      expect(store.snapshot().metadata.index).to.equal(4);
      expect([...store.snapshot().data]).to.deep.equal([7]);
    });

    it('applies a snapshot: replaces the log, first index = snapshot index + 1 (§7)', async () => {
      await store.append(range(1, 3, 1));
      await store.applySnapshot({
        metadata: { index: 10, term: 4, confState: { voters: [1, 2, 3], learners: [] } },
        data: new Uint8Array([1, 2]),
      });
      expect(store.firstIndex()).to.equal(11);
      expect(store.lastIndex()).to.equal(10);
      expect(store.term(10)).to.equal(4);
      expect(store.initialState().confState.voters).to.deep.equal([1, 2, 3]);
      await store.append([entry(11, 4)]);
      expect(store.lastIndex()).to.equal(11);
    });

    it('refuses a snapshot older than the current one', async () => {
      await store.applySnapshot({
        metadata: { index: 10, term: 4, confState: { voters: [1], learners: [] } },
        data: new Uint8Array(0),
      });
      let thrown: unknown;
      try {
        await store.applySnapshot({
          metadata: { index: 5, term: 4, confState: { voters: [1], learners: [] } },
          data: new Uint8Array(0),
        });
      } catch (err) {
        thrown = err;
      }
      expect(isRegionDbError(thrown, ErrorCode.StorageCompacted)).to.equal(true);
    });

    it('ignores appends that lie entirely in the compacted prefix', async () => {
      await store.append(range(1, 10, 1));
      await store.compact(8);
      await store.append(range(3, 5, 1));
      expect(store.firstIndex()).to.equal(9);
      expect(store.lastIndex()).to.equal(10);
    });

    if (harness.reopen) {
      const reopen = harness.reopen;
      it('durability: log, hard state and compaction survive a reopen', async () => {
        await store.append(range(1, 8, 1));
        await store.append([entry(7, 2, 'y7')]);
        await store.setHardState({ term: 2, vote: 1, commit: 6 });
        await store.compact(3);
        store = await reopen(store);
        expect(store.firstIndex()).to.equal(4);
        expect(store.lastIndex()).to.equal(7);
        expect(store.term(7)).to.equal(2);
        expect(store.term(3)).to.equal(1);
        expect(new TextDecoder().decode(store.entries(7, 8, 1 << 20)[0]!.data)).to.equal('y7');
        expect(store.initialState().hardState).to.deep.equal({ term: 2, vote: 1, commit: 6 });
      });

      it('durability: an applied snapshot survives a reopen', async () => {
        await store.append(range(1, 3, 1));
        await store.applySnapshot({
          metadata: { index: 20, term: 5, confState: { voters: [1, 2, 3], learners: [] } },
          data: new Uint8Array([9]),
        });
        store = await reopen(store);
        expect(store.firstIndex()).to.equal(21);
        expect(store.term(20)).to.equal(5);
        expect([...store.snapshot().data]).to.deep.equal([9]);
        expect(store.initialState().confState.voters).to.deep.equal([1, 2, 3]);
      });
    }
  });
}
