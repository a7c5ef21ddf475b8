// The conformance suite of a LogEngine, the log store a datanode keeps all its regions' raft
// logs in, written in batches. The in-memory engine the region-server tests
// use (test/fixtures/memory-log-engine.ts) and the LevelDB WAL (src/wal) both pass it, so what
// the unit tests learn on the first holds for the second. Durable engines also pass the restart
// cases: what commit() returned from survives a clean reopen and a crash (the process dying
// without closing anything).
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { LogEngine } from '../../src/wal/log-engine.js';
import { type Entry, EntryType, type Snapshot } from '../../src/raft/types.js';

export interface LogEngineHarness {
  /** A fresh, empty engine. */
  open(): Promise<LogEngine>;
  /**
   * The engine as a restart would find it: after `close()` ('clean'), or after the process died
   * with `engine` still open ('crash'; `engine` stays usable and is closed by close()).
   * Undefined for volatile engines.
   */
  restart?: (engine: LogEngine, how: 'clean' | 'crash') => Promise<LogEngine>;
  /** Closes the engine (if still open) and removes what it stored. */
  close(engine: LogEngine): Promise<void>;
}

const A = '4294967297';
const B = '4294967298';

function entry(index: number, term: number, text = `e${index}@${term}`): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) };
}

function range(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(entry(i, term));
  return out;
}

function snapshotAt(index: number, term: number): Snapshot {
  return { metadata: { index, term, confState: { voters: [1, 2, 3], learners: [] } }, data: new TextEncoder().encode(`snap${index}`) };
}

const bytes = (text: string) => new TextEncoder().encode(text);
const texts = (entries: Entry[]) => entries.map((e) => new TextDecoder().decode(e.data));

export function describeLogEngineConformance(name: string, harness: LogEngineHarness): void {
  describe(`log engine conformance: ${name}`, () => {
    const engines: LogEngine[] = [];
    let engine: LogEngine;
    const open = async () => {
      engine = await harness.open();
      engines.push(engine);
      return engine;
    };
    /**
     * Checks every way the engine is seen again: as it is, and (durable engines) after a crash and
     * after a clean restart, which then is the engine the test goes on with.
     */
    const views = async (check: (e: LogEngine, how: string) => void): Promise<void> => {
      check(engine, 'live');
      if (!harness.restart) return;
      const crashed = await harness.restart(engine, 'crash');
      engines.push(crashed);
      check(crashed, 'after a crash');
      engine = await harness.restart(engine, 'clean');
      engines.push(engine);
      check(engine, 'after a clean restart');
    };
    beforeEach(open);
    afterEach(async () => {
      for (const e of engines.splice(0)) await harness.close(e);
    });

    it('a region never written reads as empty; an empty batch commits', async () => {
      await engine.batch().commit();
      const log = engine.region(A);
      expect([log.firstIndex(), log.lastIndex(), log.term(0)]).to.deep.equal([1, 0, 0]);
      expect(log.initialState().hardState).to.deep.equal({ term: 0, vote: 0, commit: 0 });
      expect(engine.getRegionMeta(A)).to.equal(undefined);
    });

    it('one batch writes entries, hard states and metas of several regions; none of it is read before commit() resolves', async () => {
      const batch = engine.batch();
      batch.append(A, range(1, 5, 1));
      batch.setHardState(A, { term: 1, vote: 2, commit: 3 });
      batch.append(B, range(1, 2, 1));
      batch.setHardState(B, { term: 1, vote: 1, commit: 0 });
      batch.setRegionMeta(A, bytes('meta-a'));
      expect(engine.region(A).lastIndex(), 'before commit').to.equal(0);
      expect(engine.getRegionMeta(A), 'before commit').to.equal(undefined);
      await batch.commit();
      await views((e, how) => {
        expect(e.region(A).lastIndex(), how).to.equal(5);
        expect(texts(e.region(A).entries(2, 6, Number.MAX_SAFE_INTEGER)), how).to.deep.equal(['e2@1', 'e3@1', 'e4@1', 'e5@1']);
        expect(e.region(A).initialState().hardState, how).to.deep.equal({ term: 1, vote: 2, commit: 3 });
        expect(e.region(B).lastIndex(), how).to.equal(2);
        expect(new TextDecoder().decode(e.getRegionMeta(A)), how).to.equal('meta-a');
        expect(e.getRegionMeta(B), how).to.equal(undefined);
        expect([...e.regionIds()].sort(), how).to.include.members([A, B]);
      });
    });

    it('an append that overlaps the log replaces the conflicting suffix (§5.3), in the same batch or a later one', async () => {
      const first = engine.batch();
      first.append(A, range(1, 6, 1));
      await first.commit();
      const second = engine.batch();
      second.append(A, range(3, 4, 2));
      second.append(B, range(1, 3, 1));
      second.append(B, range(2, 2, 2));
      await second.commit();
      await views((e, how) => {
        expect(e.region(A).lastIndex(), how).to.equal(4);
        expect(texts(e.region(A).entries(1, 5, Number.MAX_SAFE_INTEGER)), how).to.deep.equal(['e1@1', 'e2@1', 'e3@2', 'e4@2']);
        expect(e.region(B).lastIndex(), how).to.equal(2);
        expect(e.region(B).term(2), how).to.equal(2);
      });
    });

    it('applySnapshot replaces the whole log; appends continue after it', async () => {
      const first = engine.batch();
      first.append(A, range(1, 5, 1));
      await first.commit();
      const second = engine.batch();
      second.applySnapshot(A, snapshotAt(10, 3));
      second.setHardState(A, { term: 3, vote: 0, commit: 10 });
      await second.commit();
      const third = engine.batch();
      third.append(A, range(11, 12, 3));
      await third.commit();
      await views((e, how) => {
        const log = e.region(A);
        expect([log.firstIndex(), log.lastIndex(), log.term(10)], how).to.deep.equal([11, 12, 3]);
        expect(log.snapshot().metadata.index, how).to.equal(10);
        expect(new TextDecoder().decode(log.snapshot().data), how).to.equal('snap10');
        expect(log.initialState().hardState.commit, how).to.equal(10);
        expect(log.initialState().confState, how).to.deep.equal({ voters: [1, 2, 3], learners: [] });
      });
    });

    it('a batch with a snapshot older than the one the region has is refused (STORAGE_COMPACTED), and changes nothing', async () => {
      const first = engine.batch();
      first.applySnapshot(A, snapshotAt(10, 3));
      first.append(A, range(11, 12, 3));
      await first.commit();
      let refused: unknown;
      try {
        const stale = engine.batch();
        stale.append(B, range(1, 1, 1));
        stale.applySnapshot(A, snapshotAt(5, 2));
        await stale.commit();
      } catch (err) {
        refused = err;
      }
      expect(isRegionDbError(refused, ErrorCode.StorageCompacted), `expected STORAGE_COMPACTED, got ${String(refused)}`).to.equal(true);
      await views((e, how) => {
        const log = e.region(A);
        expect([log.firstIndex(), log.lastIndex(), log.snapshot().metadata.index], how).to.deep.equal([11, 12, 10]);
        expect(e.region(B).lastIndex(), `${how}: the rest of the refused batch`).to.equal(0);
      });
    });

    it('dropRegion removes its entries, hard state and meta; other regions stay; the region can start again empty', async () => {
      const batch = engine.batch();
      batch.append(A, range(1, 3, 1));
      batch.setHardState(A, { term: 1, vote: 1, commit: 2 });
      batch.setRegionMeta(A, bytes('meta-a'));
      batch.append(B, range(1, 1, 1));
      await batch.commit();
      const commitOnly = engine.batch();
      commitOnly.setHardState(A, { term: 1, vote: 1, commit: 3 });
      await commitOnly.commit();
      await engine.dropRegion(A);
      const other = engine.batch();
      other.append(B, range(2, 2, 1));
      await other.commit();
      await views((e, how) => {
        expect(e.regionIds(), how).to.not.include(A);
        expect(e.getRegionMeta(A), how).to.equal(undefined);
        expect(e.region(B).lastIndex(), how).to.equal(2);
      });
      const log = engine.region(A);
      expect([log.firstIndex(), log.lastIndex()]).to.deep.equal([1, 0]);
      expect(log.initialState().hardState).to.deep.equal({ term: 0, vote: 0, commit: 0 });
      const again = engine.batch();
      again.append(A, range(1, 1, 5));
      await again.commit();
      expect(engine.region(A).term(1)).to.equal(5);
    });

    it('a batch that asks for a durable commit index makes every commit index before it durable', async () => {
      const first = engine.batch();
      first.append(A, range(1, 5, 1));
      first.setHardState(A, { term: 1, vote: 1, commit: 1 });
      await first.commit();
      const commitOnly = engine.batch(); // a commit index alone may be kept in memory for now
      commitOnly.setHardState(A, { term: 1, vote: 1, commit: 4 });
      await commitOnly.commit();
      expect(engine.region(A).initialState().hardState.commit, 'read at once').to.equal(4);
      const durable = engine.batch();
      durable.requireDurableCommit();
      await durable.commit();
      await views((e, how) => expect(e.region(A).initialState().hardState, how).to.deep.equal({ term: 1, vote: 1, commit: 4 }));
    });

    it('a term or vote is durable once its batch commits, even with no entry in it', async () => {
      const batch = engine.batch();
      batch.setHardState(A, { term: 7, vote: 3, commit: 0 });
      await batch.commit();
      await views((e, how) => expect(e.region(A).initialState().hardState, how).to.deep.equal({ term: 7, vote: 3, commit: 0 }));
    });
  });
}
