import { expect } from 'chai';
import pino from 'pino';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { SeededRand } from '../../src/common/rand.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { type Entry, EntryType } from '../../src/raft/types.js';
import { crc32c } from '../../src/common/crc32c.js';
import { Wal } from '../../src/wal/index.js';
import { DROP_CHUNK_RECORDS } from '../../src/wal/wal.js';
import { decodeEntry, encodeEntry } from '../../src/wal/record.js';
import { RECORD_TYPE, damageFile, logRecords, newestLog, retypeRecord, sectorInside } from '../fixtures/leveldb-log-damage.js';
import { appendTornRecord, deleteEntry, dropMarkerIn, entryIndexes, flipByte, interruptedDrop, tearLastRecord } from '../fixtures/wal-corrupt.js';

const entry = (index: number, term: number, text = `v${index}`): Entry => ({ index, term, type: 0, data: new TextEncoder().encode(text) });
const range = (lo: number, hi: number, term: number) => Array.from({ length: hi - lo + 1 }, (_, i) => entry(lo + i, term));

describe('WAL (LevelDB)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'regiondb-wal-'));
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('group commit: one sync for a batch spanning many regions', async () => {
    const wal = await Wal.open(tempDir(), silentLogger);
    const before = wal.stats().syncs;
    const batch = wal.batch();
    for (const region of ['1', '2', '3', '4']) {
      batch.append(region, range(1, 10, 1));
      batch.setHardState(region, { term: 1, vote: 0, commit: 5 });
    }
    await batch.commit();
    expect(wal.stats().syncs - before).to.equal(1);
    expect(wal.region('3').lastIndex()).to.equal(10);
    await wal.close();
  });

  it('a batch that only moves commit indexes is deferred to the next write; a term, vote or entry is written at once (Figure 2: commitIndex is volatile)', async () => {
    const dir = tempDir();
    const writes: number[] = [];
    let deferred = 0;
    const observer = { written: (w: { ops: number }) => writes.push(w.ops), deferred: () => deferred++ };
    const wal = await Wal.open(dir, silentLogger, observer);
    const first = wal.batch();
    first.append('1', range(1, 5, 1));
    first.setHardState('1', { term: 1, vote: 2, commit: 1 });
    await first.commit();
    const commitOnly = wal.batch();
    commitOnly.setHardState('1', { term: 1, vote: 2, commit: 4 });
    expect(commitOnly.deferrable).to.equal(true);
    await commitOnly.commit();
    expect(writes, 'the commit-only batch wrote nothing').to.deep.equal([6]);
    expect(deferred).to.equal(1);
    // Readers see it at once (the cache is what raft reads).
    expect(wal.region('1').initialState().hardState.commit).to.equal(4);

    // A crash now (no close) loses only the deferred commit index.
    const crashCopy = `${dir}-crash`;
    dirs.push(crashCopy);
    cpSync(dir, crashCopy, { recursive: true });
    rmSync(join(crashCopy, 'LOCK'), { force: true });
    const afterCrash = await Wal.open(crashCopy, silentLogger);
    expect(afterCrash.region('1').initialState().hardState).to.deep.equal({ term: 1, vote: 2, commit: 1 });
    expect(afterCrash.region('1').lastIndex()).to.equal(5);
    await afterCrash.close();

    // Another region's write carries it; its own ops follow it in the same batch.
    const other = wal.batch();
    other.append('2', range(1, 2, 1));
    await other.commit();
    expect(writes, "2 entries of region 2 plus the deferred hard state of region 1").to.deep.equal([6, 3]);
    const newTerm = wal.batch();
    newTerm.setHardState('1', { term: 2, vote: 0, commit: 4 });
    expect(newTerm.deferrable).to.equal(false);
    await newTerm.commit();
    const commitAgain = wal.batch();
    commitAgain.setHardState('1', { term: 2, vote: 0, commit: 5 });
    await commitAgain.commit();
    expect(wal.stats().syncs).to.equal(3);
    await wal.close(); // writes what is still deferred
    expect(wal.stats().syncs).to.equal(4);
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.region('1').initialState().hardState).to.deep.equal({ term: 2, vote: 0, commit: 5 });
    await reopened.close();
  });

  it('a batch asked for a durable commit index (before a membership change is applied) is written with every deferred one, and survives a crash', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    const first = wal.batch();
    first.append('1', range(1, 5, 1));
    first.setHardState('1', { term: 1, vote: 1, commit: 1 });
    await first.commit();
    const deferred = wal.batch();
    deferred.setHardState('1', { term: 1, vote: 1, commit: 4 });
    await deferred.commit(); // deferred: commit 4 is in memory only
    const syncs = wal.stats().syncs;
    const durable = wal.batch();
    durable.requireDurableCommit(); // nothing else in it: the commit index moved in an earlier ready
    expect(durable.deferrable).to.equal(false);
    await durable.commit();
    expect(wal.stats().syncs, 'written and synced').to.equal(syncs + 1);
    const crashCopy = `${dir}-crash`;
    dirs.push(crashCopy);
    cpSync(dir, crashCopy, { recursive: true });
    rmSync(join(crashCopy, 'LOCK'), { force: true });
    const afterCrash = await Wal.open(crashCopy, silentLogger);
    expect(afterCrash.region('1').initialState().hardState.commit, 'commit index after a crash').to.equal(4);
    await afterCrash.close();
    await wal.close();
  });

  it('a dropped region does not come back with a deferred commit index', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    const b = wal.batch();
    b.append('9', range(1, 3, 1));
    b.setHardState('9', { term: 1, vote: 1, commit: 1 });
    await b.commit();
    const commitOnly = wal.batch();
    commitOnly.setHardState('9', { term: 1, vote: 1, commit: 3 });
    await commitOnly.commit();
    await wal.dropRegion('9');
    await wal.region('4').append(range(1, 1, 1));
    await wal.close();
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.regionIds()).to.deep.equal(['4']);
    await reopened.close();
  });

  it('reads never see a batch before it is durable', async () => {
    const wal = await Wal.open(tempDir(), silentLogger);
    const batch = wal.batch();
    batch.append('7', range(1, 3, 1));
    expect(wal.region('7').lastIndex()).to.equal(0);
    await batch.commit();
    expect(wal.region('7').lastIndex()).to.equal(3);
    await wal.close();
  });

  it('dropping a long log deletes it in bounded writes: another region\'s write made once the drop began lands before the drop ends (X5)', async () => {
    const dir = tempDir();
    const writes: number[] = [];
    let onWrite: (() => void) | undefined;
    const wal = await Wal.open(dir, silentLogger, {
      written: (w) => {
        writes.push(w.ops);
        onWrite?.();
      },
    });
    const long = 5 * DROP_CHUNK_RECORDS;
    for (let lo = 1; lo <= long; lo += 4_000) {
      const b = wal.batch();
      b.append('1', range(lo, Math.min(long, lo + 3_999), 2));
      await b.commit();
    }
    const b = wal.batch();
    b.setHardState('1', { term: 2, vote: 1, commit: long });
    b.setRegionMeta('1', new TextEncoder().encode('{"peer":1}'));
    await b.commit();
    await wal.region('2').append(range(1, 3, 1));
    writes.length = 0;
    const order: string[] = [];
    let other: Promise<void> | undefined;
    // At the drop's first write, region 2 writes: a replica of another region going on meanwhile.
    onWrite = () => {
      onWrite = undefined;
      other = wal.region('2').append(range(4, 4, 1)).then(() => void order.push('region 2 written'));
    };
    await wal.dropRegion('1');
    order.push('drop done');
    await other;
    expect(order, 'before: the whole drop was one write, and region 2 waited for it').to.deep.equal(['region 2 written', 'drop done']);
    expect(Math.max(...writes), `ops per write: ${writes.join(', ')}`).to.be.at.most(DROP_CHUNK_RECORDS + 1);
    expect(wal.regionIds()).to.deep.equal(['2']);
    await wal.close();
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.regionIds()).to.deep.equal(['2']);
    expect(reopened.region('2').lastIndex()).to.equal(4);
    await reopened.close();
    expect(await entryIndexes(dir, '1'), 'no record of region 1 left').to.deep.equal([]);
  });

  it('a drop a stop interrupted after its first write is finished by the next open: the region gone, not damaged, nothing of it left (X5)', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    const b = wal.batch();
    b.append('1', range(1, 50, 2));
    b.setHardState('1', { term: 2, vote: 1, commit: 50 });
    b.setRegionMeta('1', new TextEncoder().encode('{"peer":1}'));
    b.append('2', range(1, 5, 1));
    await b.commit();
    await wal.close();
    // Its state deleted and entries 1–19 gone: loaded as a region, that is a log starting after a gap.
    await interruptedDrop(dir, '1', 20);
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.damage('1'), 'not damaged').to.equal(undefined);
    expect(reopened.regionIds()).to.deep.equal(['2']);
    expect(reopened.region('2').lastIndex()).to.equal(5);
    // A new replica of the region starts from an empty log.
    await reopened.region('1').append(range(1, 2, 7));
    await reopened.close();
    const again = await Wal.open(dir, silentLogger);
    expect(again.region('1').firstIndex()).to.equal(1);
    expect(again.region('1').lastIndex()).to.equal(2);
    expect(again.region('1').term(2)).to.equal(7);
    await again.close();
    expect(await entryIndexes(dir, '1')).to.deep.equal([1, 2]);
  });

  it('a drop that fails after its marker stops the WAL: no replica of the region is written again before the next open finishes the drop (review of X5)', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    const b = wal.batch();
    b.append('1', range(1, 50, 2));
    b.setHardState('1', { term: 2, vote: 1, commit: 50 });
    b.append('2', range(1, 5, 1));
    await b.commit();
    // Listing the region's keys fails once (a read error in one of LevelDB's table files).
    const db = (wal as unknown as { db: { keys: (...a: unknown[]) => unknown } }).db;
    const keys = db.keys.bind(db);
    db.keys = () => {
      db.keys = keys;
      throw new Error('EIO (test)');
    };
    const failed = await wal.dropRegion('1').then(
      () => 'dropped',
      (err: Error) => err.message,
    );
    expect(failed).to.contain('the WAL can no longer be trusted');
    // Before: the WAL went on, a new replica of the region (term 5, vote 9) was written under its
    // prefix — and the next open, finishing the marked drop, deleted it: a voter that forgot.
    const rewrite = wal.batch();
    rewrite.append('1', range(1, 3, 5));
    rewrite.setHardState('1', { term: 5, vote: 9, commit: 3 });
    const outcome = await rewrite.commit().then(
      () => 'written',
      (err: Error) => err.message,
    );
    expect(outcome, 'a write after the failed drop').to.contain('an earlier WAL write failed');
    await wal.close().catch(() => {});
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.regionIds(), 'the drop finished at the open').to.deep.equal(['2']);
    await reopened.close();
  });

  it('regions are isolated: compacting or dropping one leaves the others intact', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    await wal.region('1').append(range(1, 20, 1));
    await wal.region('2').append(range(1, 20, 1));
    await wal.region('1').compact(10);
    await wal.dropRegion('3');
    await wal.close();
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.region('1').firstIndex()).to.equal(11);
    expect(reopened.region('2').firstIndex()).to.equal(1);
    expect(reopened.region('2').lastIndex()).to.equal(20);
    await reopened.dropRegion('1');
    expect(reopened.regionIds()).to.deep.equal(['2']);
    await reopened.close();
  });

  // LevelDB writes a batch atomically: a record that fails its check was damaged after it was
  // written (it is no half-written write). Cutting it could drop a committed entry that this
  // node acknowledged (and then let it vote for a candidate missing it): the region is reported
  // damaged, nothing is cut, and the other regions of the node open normally.
  it('a bad last record is corruption, not a torn write: the region is damaged (naming region and index), nothing is cut, other regions open', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    await wal.region('4294967297').append(range(1, 8, 1));
    await wal.region('4294967297').setHardState({ term: 1, vote: 0, commit: 8 });
    await wal.region('4294967298').append(range(1, 3, 1));
    await wal.close();
    const torn = await tearLastRecord(dir, '4294967297');
    expect(torn).to.equal(8);
    const reopened = await Wal.open(dir, silentLogger);
    const damage = reopened.damage('4294967297');
    expect(damage?.index).to.equal(8);
    expect(damage?.reason).to.match(/region 4294967297 at index 8: /);
    expect(reopened.damage('4294967298')).to.equal(undefined);
    expect(reopened.region('4294967298').lastIndex()).to.equal(3);
    expect(reopened.regionIds()).to.include('4294967297');
    await reopened.close();
    expect(await entryIndexes(dir, '4294967297'), 'nothing was cut').to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('a record appended after the last entry with a bad check is corruption too (LevelDB never persists half a batch)', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    await wal.region('12884901889').append(range(1, 4, 1));
    await wal.close();
    const index = await appendTornRecord(dir, '12884901889');
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.damage('12884901889')?.index).to.equal(index);
    await reopened.close();
    expect(await entryIndexes(dir, '12884901889')).to.deep.equal([1, 2, 3, 4, 5]);
  });

  it('a flipped byte mid-log damages only its region, naming region and index; the WAL still opens', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    await wal.region('8589934593').append(range(1, 10, 2));
    await wal.region('8589934594').append(range(1, 10, 2));
    await wal.close();
    await flipByte(dir, '8589934593', 4);
    const reopened = await Wal.open(dir, silentLogger);
    const damage = reopened.damage('8589934593');
    expect(damage?.index).to.equal(4);
    expect(damage?.reason).to.match(/region 8589934593 at index 4: crc32c mismatch/);
    expect(reopened.damagedRegions().map((d) => d.regionId)).to.deep.equal(['8589934593']);
    expect(reopened.region('8589934594').lastIndex()).to.equal(10);
    await reopened.close();
  });

  it('a commit index beyond the last entry means committed entries are missing: the region is damaged, the commit index is not lowered', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    await wal.region('3').append(range(1, 5, 1));
    await wal.region('3').setHardState({ term: 1, vote: 1, commit: 5 });
    await wal.close();
    await deleteEntry(dir, '3', 5);
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.damage('3')?.index).to.equal(5);
    expect(reopened.damage('3')?.reason).to.match(/region 3 at index 5: .*commit index 5/);
    await reopened.close();
  });

  it('dropping a damaged region clears its damage (its replacement starts empty)', async () => {
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    await wal.region('6').append(range(1, 3, 1));
    await wal.close();
    await flipByte(dir, '6', 2);
    const reopened = await Wal.open(dir, silentLogger);
    expect(reopened.damage('6')?.index).to.equal(2);
    await reopened.dropRegion('6');
    expect(reopened.damage('6')).to.equal(undefined);
    await reopened.region('6').append(range(1, 1, 1));
    await reopened.close();
    const again = await Wal.open(dir, silentLogger);
    expect(again.damage('6')).to.equal(undefined);
    expect(again.region('6').lastIndex()).to.equal(1);
    await again.close();
  });

  it('matches a MemoryStorage model under a seeded random workload, across reopens', async function () {
    this.timeout(30_000);
    const seed = 20261125;
    const rand = new SeededRand(seed);
    const dir = tempDir();
    let wal = await Wal.open(dir, silentLogger);
    const model = new MemoryStorage();
    let term = 1;
    for (let step = 0; step < 300; step++) {
      const op = rand.int(10);
      const store = wal.region('5');
      if (op < 6) {
        // Append, sometimes overwriting a suffix with a higher term.
        const first = Math.max(model.firstIndex(), model.lastIndex() + 1 - (rand.chance(0.3) ? rand.int(5) : 0));
        if (rand.chance(0.3)) term++;
        const batch = range(first, first + rand.int(8), term);
        model.append(batch);
        await store.append(batch);
      } else if (op < 8 && model.lastIndex() > model.firstIndex() + 5) {
        const idx = model.firstIndex() + rand.int(model.lastIndex() - model.firstIndex() - 2);
        model.compact(idx);
        await store.compact(idx);
      } else if (op < 9) {
        const hs = { term, vote: rand.int(3), commit: Math.max(0, model.lastIndex() - rand.int(3)) };
        model.setHardState(hs);
        await store.setHardState(hs);
      } else {
        await wal.close();
        wal = await Wal.open(dir, silentLogger);
      }
      const got = wal.region('5');
      const where = `seed ${seed} step ${step}`;
      expect(got.firstIndex(), where).to.equal(model.firstIndex());
      expect(got.lastIndex(), where).to.equal(model.lastIndex());
      if (model.lastIndex() >= model.firstIndex()) {
        const a = got.entries(model.firstIndex(), model.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
        const b = model.entries(model.firstIndex(), model.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
        expect(a.map((e) => `${e.index}/${e.term}`), where).to.deep.equal(b.map((e) => `${e.index}/${e.term}`));
      }
    }
    await wal.close();
  });

  it('entry records at or below the compaction point found at open are deleted, never kept for ever (review X1: a snapshot kept apart from its compaction, a retained tail)', async () => {
    // Two ways such records reach the disk, each a WAL write of its own: a crash between the
    // snapshot's write and the compaction's (RegionServer.maybeSnapshot), and a compaction that
    // keeps a tail below the snapshot for a standby (logRetainFrom). At the next open the
    // snapshot is the compaction point, and later compactions delete from the entry after it:
    // the records below were never deleted again while the region lived.
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    const b = wal.batch();
    b.append('1', range(1, 10, 1));
    b.setHardState('1', { term: 1, vote: 0, commit: 10 });
    b.append('2', range(1, 10, 1));
    b.setHardState('2', { term: 1, vote: 0, commit: 10 });
    await b.commit();
    await wal.region('1').createSnapshot(8, { voters: [1], learners: [] }, new Uint8Array([1])); // crash before its compact
    await wal.region('2').createSnapshot(8, { voters: [1], learners: [] }, new Uint8Array([1]));
    await wal.region('2').compact(3); // a standby still needs 4..
    await wal.close();
    const again = await Wal.open(dir, silentLogger);
    for (const region of ['1', '2']) {
      expect(again.region(region).firstIndex(), `region ${region}`).to.equal(9);
      expect(again.region(region).entries(9, 11, Number.MAX_SAFE_INTEGER).map((e) => e.index)).to.deep.equal([9, 10]);
    }
    await again.region('1').compact(9);
    await again.region('2').compact(9);
    await again.close();
    expect(await entryIndexes(dir, '1'), 'region 1: records left on disk').to.deep.equal([10]);
    expect(await entryIndexes(dir, '2'), 'region 2: records left on disk').to.deep.equal([10]);
    const third = await Wal.open(dir, silentLogger);
    expect(third.region('1').lastIndex()).to.equal(10);
    expect(third.region('1').snapshot().metadata.index).to.equal(8);
    await third.close();
  });

  it('a kill -9 while a region is dropped leaves the region whole or gone, never part of it (review X2; X5: also between its writes)', async function () {
    // Destroying a replica deletes its records. A partial deletion is either a gap (the replica
    // reported damaged at the next start) or — when the cut falls after its last entry, or after
    // its hard state — a replica that reopens as healthy under its old peer id with acknowledged
    // entries, and maybe its term and vote, gone: finding 1's hazard. The child is killed right
    // when it starts dropping and at a few delays after; every outcome must be all or nothing.
    this.timeout(120_000);
    const template = tempDir();
    const wal = await Wal.open(template, silentLogger);
    const big = 40_000;
    for (let lo = 1; lo <= big; lo += 5_000) {
      const b = wal.batch();
      b.append('1', range(lo, lo + 4_999, 3));
      await b.commit();
    }
    const b = wal.batch();
    b.setHardState('1', { term: 3, vote: 2, commit: big });
    b.setRegionMeta('1', new TextEncoder().encode('{"peer":7}'));
    b.append('2', range(1, 5, 1));
    b.setHardState('2', { term: 1, vote: 0, commit: 5 });
    await b.commit();
    await wal.region('1').createSnapshot(100, { voters: [7], learners: [] }, new Uint8Array([1]));
    await wal.region('1').compact(100);
    await wal.close();
    const child = join(import.meta.dirname, '../support/wal-drop-child.ts');
    const outcomes: string[] = [];
    // Kills at delays after the drop starts, and (X5: the drop is several writes) at known points:
    // as its n-th LevelDB write returns — 1 is its marker, 2 and 6 are after entries were deleted.
    const killPoints: ({ delayMs: number } | { writes: number })[] = [0, 0, 2, 10, 40, 600].map((delayMs) => ({ delayMs }));
    killPoints.push({ writes: 1 }, { writes: 2 }, { writes: 6 });
    for (const at of killPoints) {
      const delayMs = 'delayMs' in at ? at.delayMs : 0;
      const dir = tempDir();
      cpSync(template, dir, { recursive: true });
      const args = ['--import', 'tsx', child, dir, '1', ...('writes' in at ? [String(at.writes)] : [])];
      const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
      const started = await new Promise<boolean>((resolve) => {
        let out = '';
        proc.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('dropping')) resolve(true);
        });
        proc.on('exit', () => resolve(false));
      });
      expect(started, `the child reached dropRegion (kill ${JSON.stringify(at)})`).to.equal(true);
      if ('writes' in at) {
        await exited; // it kills itself
        // The kill landed where it was meant to: the marker written, and after write 2 part of the entries gone.
        const left = (await entryIndexes(dir, '1')).length;
        expect(await dropMarkerIn(dir, '1'), `the drop marker after write ${at.writes}`).to.equal(true);
        if (at.writes >= 2) expect(left, `entries left after write ${at.writes}`).to.be.within(1, big - 100 - 1);
      } else {
        await new Promise((r) => setTimeout(r, delayMs));
        proc.kill('SIGKILL');
        await exited;
      }
      const after = await Wal.open(dir, silentLogger);
      const damage = after.damage('1');
      const hosted = after.regionIds().includes('1');
      const whole = !damage && hosted && after.getRegionMeta('1') !== undefined && after.region('1').lastIndex() === big && after.region('1').initialState().hardState.vote === 2;
      const gone = !damage && !hosted;
      outcomes.push(whole ? 'whole' : gone ? 'gone' : damage ? `damaged (${damage.reason})` : `partial (meta ${after.getRegionMeta('1') !== undefined}, last ${after.region('1').lastIndex()}, hard state ${JSON.stringify(after.region('1').initialState().hardState)})`);
      expect(after.region('2').lastIndex(), 'the other region is untouched').to.equal(5);
      await after.close();
    }
    console.log(`      kill outcomes (delays 0, 0, 2, 10, 40, 600 ms; after writes 1, 2, 6): ${outcomes.join(', ')}`);
    expect(outcomes.filter((o) => o !== 'whole' && o !== 'gone'), `outcomes by kill delay: ${outcomes.join('; ')}`).to.deep.equal([]);
  });

  it('writes reach LevelDB in the order they were made: a deferred commit index carried by a write still in flight never lands over a newer term and vote (review X3)', async () => {
    // Every LevelDB batch is its own job on libuv's thread pool, so two batches in flight at once
    // are applied in whichever order their threads take LevelDB's lock. Writes overlap: the
    // datanode writes a region's meta (an open, persistPeers on a membership change) while the
    // ready loop writes its batch, and the first write after a deferred commit index carries it
    // (see the top of wal.ts). Here the thread of the first batch is held before LevelDB, as a
    // descheduled thread would be; the second batch — a new term and vote — resolves (the vote
    // could be sent), then the first lands with the region's older term and vote.
    const dir = tempDir();
    const wal = await Wal.open(dir, silentLogger);
    const b = wal.batch();
    b.append('1', range(1, 4, 5));
    b.setHardState('1', { term: 5, vote: 2, commit: 3 });
    await b.commit();
    const commitOnly = wal.batch();
    commitOnly.setHardState('1', { term: 5, vote: 2, commit: 4 });
    expect(commitOnly.deferrable).to.equal(true);
    await commitOnly.commit(); // deferred: carried by the next write
    const db = (wal as unknown as { db: { _batch: (ops: unknown[], options: unknown) => Promise<void> } }).db;
    const real = db._batch.bind(db);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let held = false;
    db._batch = async (ops, options) => {
      if (!held) {
        held = true;
        await gate;
      }
      return real(ops, options);
    };
    const metaWrite = wal.setRegionMeta('2', new TextEncoder().encode('{"peer":9}')); // carries region 1's deferred commit index
    const vote = wal.batch();
    vote.setHardState('1', { term: 6, vote: 3, commit: 4 });
    let voted = false;
    const voteWrite = vote.commit().then(() => {
      voted = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(held, 'the first batch was held before LevelDB (else the test shows nothing)').to.equal(true);
    release();
    await Promise.all([metaWrite, voteWrite]);
    expect(voted).to.equal(true);
    await wal.close();
    const again = await Wal.open(dir, silentLogger);
    expect(again.region('1').initialState().hardState, 'the hard state after a restart').to.deep.equal({ term: 6, vote: 3, commit: 4 });
    expect(again.getRegionMeta('2')).to.not.equal(undefined);
    await again.close();
  });

  describe("LevelDB's own log: damage is refused before LevelDB can drop it (review X4)", () => {
    // LevelDB keeps the newest writes in <dir>/NNNNNN.log until they move into a table and
    // replays that file at open with paranoid checks off: a record failing LevelDB's checksum is
    // dropped (with the rest of its 32 KiB block), "(ignoring error)" in <dir>/LOG, and the file
    // deleted. Before the check, one flipped byte in the newest synced batch (entries 7–9 and the
    // hard state committing them) made region 1 reopen healthy at index 6: three synced entries,
    // acknowledged by this node, gone without a trace.
    const threeBatches = async (dataBytes = 0, then?: (wal: Wal) => Promise<void>): Promise<string> => {
      const dir = tempDir();
      const wal = await Wal.open(dir, silentLogger);
      for (const lo of [1, 4, 7]) {
        const b = wal.batch();
        b.append('1', dataBytes > 0 ? [lo, lo + 1, lo + 2].map((i) => entry(i, 1, `${i}`.padEnd(dataBytes, 'x'))) : range(lo, lo + 2, 1));
        b.setHardState('1', { term: 1, vote: 1, commit: lo + 2 });
        await b.commit();
      }
      await then?.(wal); // in the same log: a reopen moves the log into a table
      await wal.close();
      return dir;
    };
    const expectRefused = async (dir: string, mentions: string) => {
      try {
        const opened = await Wal.open(dir, silentLogger);
        const last = opened.region('1').lastIndex();
        await opened.close();
        expect.fail(`the WAL opened (region 1 at ${last})`);
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
        expect((err as Error).message).to.include(mentions);
      }
    };

    it('a flipped byte in the newest synced batch: the open is refused, naming the log file and the offset (failed before: region 1 opened at index 6)', async () => {
      const dir = await threeBatches();
      const file = newestLog(dir);
      const bytes = readFileSync(file);
      bytes.writeUInt8(bytes.readUInt8(bytes.length - 20) ^ 0x01, bytes.length - 20); // inside the last record: entry 9's value
      writeFileSync(file, bytes);
      await expectRefused(dir, `${file} at offset`);
      await expectRefused(dir, 'checksum mismatch'); // refused again: nothing was dropped or deleted
    });

    it('a flipped byte in an earlier batch: refused as well', async () => {
      const dir = await threeBatches();
      const file = newestLog(dir);
      const bytes = readFileSync(file);
      bytes.writeUInt8(bytes.readUInt8(30) ^ 0x40, 30); // inside the first record
      writeFileSync(file, bytes);
      await expectRefused(dir, 'checksum mismatch');
    });

    it("a flipped bit in the first record's length field (running past its block and the file) is refused, not taken for a torn write (review of X4)", async () => {
      const dir = await threeBatches();
      const file = newestLog(dir);
      const bytes = readFileSync(file);
      expect(bytes.length).to.be.lessThan(32 * 1024);
      bytes.writeUInt8(bytes.readUInt8(5) ^ 0x80, 5); // the length's high byte: +32 KiB
      writeFileSync(file, bytes);
      await expectRefused(dir, 'runs past its 32 KiB block');
    });

    it('zeros where a record starts, with data after them, are refused: LevelDB would skip the zeros and drop what follows (review of X4)', async () => {
      const dir = await threeBatches();
      const file = newestLog(dir);
      const bytes = readFileSync(file);
      bytes.fill(0, 0, 7); // the first record's header zeroed: the later batches follow
      writeFileSync(file, bytes);
      await expectRefused(dir, 'non-zero bytes after a zero record');
    });

    it('a write torn by a crash (the file cut inside its last record) is not damage: the WAL opens without that batch, as LevelDB replays it', async () => {
      const dir = await threeBatches();
      const file = newestLog(dir);
      const bytes = readFileSync(file);
      writeFileSync(file, bytes.subarray(0, bytes.length - 20));
      const opened = await Wal.open(dir, silentLogger);
      expect(opened.damage('1')).to.equal(undefined);
      expect(opened.region('1').lastIndex()).to.equal(6);
      expect(opened.region('1').initialState().hardState.commit).to.equal(6);
      await opened.close();
    });

    it('records split across 32 KiB blocks (first, middle, last) check clean, and a flip in a middle fragment is refused', async () => {
      const dir = await threeBatches(40_000); // each batch spans several blocks
      const reopened = await Wal.open(dir, silentLogger);
      expect(reopened.region('1').lastIndex()).to.equal(9);
      await reopened.close();
      const again = await threeBatches(40_000);
      const file = newestLog(again);
      const bytes = readFileSync(file);
      expect(bytes.length).to.be.greaterThan(3 * 32 * 1024);
      bytes.writeUInt8(bytes.readUInt8(32 * 1024 + 1000) ^ 0x01, 32 * 1024 + 1000); // in the second block: a fragment of the first batch
      writeFileSync(file, bytes);
      await expectRefused(again, 'checksum mismatch');
    });

    // W1 (Still open (a) of X4's review): a power loss can tear the newest batch — its header on
    // disk, a page of its data not — and that batch, never synced, is the one thing LevelDB may
    // rightly drop. Refusing it kept the node down until its data directory was moved aside.
    const warnings = () => {
      const lines: Record<string, unknown>[] = [];
      const log = pino({ level: 'warn', base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
      return { log, lines };
    };
    const expectOpensAtSix = async (dir: string, log = silentLogger) => {
      const opened = await Wal.open(dir, log);
      try {
        expect(opened.damage('1')).to.equal(undefined);
        expect(opened.region('1').lastIndex()).to.equal(6);
        expect(opened.region('1').initialState().hardState.commit).to.equal(6);
        const kept = opened.region('1').entries(1, 7, Number.MAX_SAFE_INTEGER);
        expect(kept.map((e) => new TextDecoder().decode(e.data).replace(/x+$/, ''))).to.deep.equal(['1', '2', '3', '4', '5', '6']);
      } finally {
        await opened.close();
      }
    };

    it('W1: a power loss tore the newest batch (its data zero from a 512-byte boundary to the end): the WAL opens without it, every earlier synced batch whole, warning with file, offset and bytes dropped (failed before: refused, "checksum mismatch")', async () => {
      const dir = await threeBatches(300);
      const file = newestLog(dir);
      let dropped = { offset: 0, bytes: 0 };
      damageFile(file, (bytes) => {
        const last = logRecords(bytes).at(-1)!;
        expect(last.end).to.equal(bytes.length);
        bytes.fill(0, sectorInside(last));
        dropped = { offset: last.offset, bytes: bytes.length - last.offset };
      });
      const { log, lines } = warnings();
      await expectOpensAtSix(dir, log);
      expect(lines).to.have.length(1);
      expect(lines[0]).to.include({ file, offset: dropped.offset, droppedBytes: dropped.bytes });
    });

    it("W1: a tear across blocks (the newest batch's FIRST on disk, its MIDDLE's data zero from a 512-byte boundary to the end) opens without that batch (failed before: refused, 'checksum mismatch')", async () => {
      const dir = await threeBatches(40_000);
      const file = newestLog(dir);
      damageFile(file, (bytes) => {
        const records = logRecords(bytes);
        const lastFirst = records.map((r) => r.type).lastIndexOf(RECORD_TYPE.FIRST);
        const middle = records[lastFirst + 1]!;
        expect(middle.type).to.equal(RECORD_TYPE.MIDDLE);
        bytes.fill(0, sectorInside(middle));
      });
      await expectOpensAtSix(dir);
    });

    it('W1: zeros shaped like a tear but with a valid record after them are damage: a tear leaves nothing after it', async () => {
      const dir = await threeBatches(300);
      damageFile(newestLog(dir), (bytes) => {
        const second = logRecords(bytes)[1]!;
        bytes.fill(0, sectorInside(second), second.end); // batch 3 follows, whole
      });
      await expectRefused(dir, 'checksum mismatch');
      const spanning = await threeBatches(40_000);
      damageFile(newestLog(spanning), (bytes) => {
        const records = logRecords(bytes);
        const middle = records.find((r) => r.type === RECORD_TYPE.MIDDLE)!;
        bytes.fill(0, sectorInside(middle), middle.end); // zeros to the end of its block; the later blocks hold valid records
      });
      await expectRefused(spanning, 'checksum mismatch');
    });

    it('W1: a torn newest log followed by an empty log (a crash during the open that replayed it) is a tear; followed by a log holding records, damage (failed before: the tear refused, "checksum mismatch"; the cut log with records after it opened, region 1 at 9)', async () => {
      const dir = await threeBatches(300);
      const file = newestLog(dir);
      const whole = readFileSync(file);
      damageFile(file, (bytes) => {
        bytes.fill(0, sectorInside(logRecords(bytes).at(-1)!));
      });
      const next = join(dir, `${String(Number.parseInt(file.split('/').at(-1)!, 10) + 1).padStart(6, '0')}.log`);
      writeFileSync(next, new Uint8Array(0));
      await expectOpensAtSix(dir);
      const again = await threeBatches(300);
      const torn = newestLog(again);
      damageFile(torn, (bytes) => bytes.subarray(0, bytes.length - 20)); // cut: a tear only at the end of what was written
      writeFileSync(join(again, `${String(Number.parseInt(torn.split('/').at(-1)!, 10) + 1).padStart(6, '0')}.log`), whole);
      await expectRefused(again, `${torn} at offset`);
    });

    it('W2: a MIDDLE with no FIRST before it (every checksum valid) is refused (failed before: the WAL opened, region 1 at 6)', async () => {
      const dir = await threeBatches(40_000);
      damageFile(newestLog(dir), (bytes) => {
        const lastFirst = logRecords(bytes).filter((r) => r.type === RECORD_TYPE.FIRST).at(-1)!;
        retypeRecord(bytes, lastFirst, RECORD_TYPE.MIDDLE); // LevelDB drops batch 3, each fragment "missing start"
      });
      await expectRefused(dir, 'a MIDDLE record with no FIRST before it');
    });

    it("W2: a FIRST followed by a FIRST (the newest batch's LAST retyped, checksum valid, another batch after it) is refused (failed before: the WAL opened, region 1 at 6)", async () => {
      const dir = await threeBatches(40_000, async (wal) => {
        const b = wal.batch();
        b.append('2', [entry(1, 1, '1'.padEnd(40_000, 'x'))]);
        await b.commit();
      });
      damageFile(newestLog(dir), (bytes) => {
        const thirdLast = logRecords(bytes).filter((r) => r.type === RECORD_TYPE.LAST)[2]!;
        retypeRecord(bytes, thirdLast, RECORD_TYPE.MIDDLE); // LevelDB drops batch 3 as unfinished when region 2's FIRST comes
      });
      await expectRefused(dir, 'needs its MIDDLE or LAST');
    });

    it('W4: an obsolete log left beside by a crash (a cut copy of the log a reopen moved into a table) is not read: the WAL opens with every entry (failed before: refused, "cut by the end of the file … follows")', async () => {
      const dir = await threeBatches(300);
      const file = newestLog(dir);
      const replayed = readFileSync(file);
      const reopened = await Wal.open(dir, silentLogger); // LevelDB replays the log into a table and deletes it
      const b = reopened.batch();
      b.append('1', [entry(10, 1, '10')]);
      b.setHardState('1', { term: 1, vote: 1, commit: 10 });
      await b.commit();
      await reopened.close();
      expect(newestLog(dir)).to.not.equal(file);
      writeFileSync(file, replayed.subarray(0, replayed.length - 20));
      const opened = await Wal.open(dir, silentLogger);
      try {
        expect(opened.damage('1')).to.equal(undefined);
        expect(opened.region('1').lastIndex()).to.equal(10);
        expect(opened.region('1').entries(1, 11, Number.MAX_SAFE_INTEGER)).to.have.length(10);
      } finally {
        await opened.close();
      }
    });
  });

  it('refuses further writes after a failed sync (the process must stop)', async () => {
    const wal = await Wal.open(tempDir(), silentLogger);
    await wal.close(); // writes to a closed database fail like a dead disk
    try {
      await wal.region('1').append(range(1, 1, 1));
      expect.fail('must fail');
    } catch (err) {
      expect((err as Error).message).to.match(/must stop/);
    }
    try {
      await wal.region('1').append(range(1, 1, 1));
      expect.fail('must keep failing');
    } catch (err) {
      expect((err as Error).message).to.match(/earlier WAL write failed/);
    }
  });
});

describe('WAL records: entry encoding (src/wal/record.ts)', () => {
  /** The record format written out from its definition (record.ts header), with BigInt u64s. */
  function referenceEntryRecord(term: number, index: number, type: number, data: Uint8Array): Uint8Array {
    const payload = new Uint8Array(17 + data.byteLength);
    const pv = new DataView(payload.buffer);
    pv.setBigUint64(0, BigInt(term));
    pv.setBigUint64(8, BigInt(index));
    payload[16] = type;
    payload.set(data, 17);
    const out = new Uint8Array(9 + payload.byteLength);
    const ov = new DataView(out.buffer);
    out[0] = 1;
    ov.setUint32(1, crc32c(payload));
    ov.setUint32(5, payload.byteLength);
    out.set(payload, 9);
    return out;
  }

  it('seeded: an entry record is the format byte for byte (u64 edges included) and decodes back', () => {
    const rand = new SeededRand(23);
    const edges = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1];
    for (let i = 0; i < 2000; i++) {
      const term = i < 36 ? edges[i % 6]! : rand.int(2 ** 31) * 4099 + rand.int(4099);
      const index = i < 36 ? edges[Math.floor(i / 6)]! : rand.int(2 ** 31) * 2 ** 21 + rand.int(2 ** 21);
      const type = i % 2 === 0 ? EntryType.Normal : EntryType.ConfChange;
      const data = Uint8Array.from({ length: rand.int(300) }, () => rand.int(256));
      const record = encodeEntry({ term, index, type, data });
      expect(Buffer.from(record).equals(Buffer.from(referenceEntryRecord(term, index, type, data))), `entry ${i} (term ${term}, index ${index})`).to.equal(true);
      expect(decodeEntry(record)).to.deep.equal({ term, index, type, data });
    }
  });

  it('refuses a term or index that is not a non-negative safe integer', () => {
    for (const bad of [-1, 2 ** 53, 1.5]) expect(() => encodeEntry({ term: bad, index: 1, type: 0, data: new Uint8Array() }), String(bad)).to.throw(RangeError);
  });
});
