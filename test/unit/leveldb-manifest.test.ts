// W4: the log check reads only the logs LevelDB's open replays — those the MANIFEST's log number
// (and prev log number) name, src/wal/leveldb-manifest.ts — on real `level` directories. An
// obsolete log left beside them by a crash before LevelDB deleted it is never replayed: damage in
// it must not refuse a healthy store. What cannot be told (CURRENT or the MANIFEST unreadable) is
// refused, never taken as "nothing to check".
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { checkLevelDbLogs, refuseDamagedLevelDbLogs } from '../../src/wal/leveldb-log.js';
import { replayedLogs } from '../../src/wal/leveldb-manifest.js';
import { damageFile, logRecords, newestLog } from '../fixtures/leveldb-log-damage.js';

const KEYS = 20;
const value = (i: number) => `v${i}-${'x'.repeat(900)}`;
const refusal = { what: 'test store', dropped: 'dropped', action: 'move it aside' };

/** A varint as LevelDB writes it (7 bits a byte, low first). */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

describe("LevelDB's log check reads only the logs LevelDB replays (W4)", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Keys 0–9 synced, closed; the log that held them copied; reopened (LevelDB moves that log into
   * a table and deletes it), keys 10–19 synced into a new log, closed; the old log written back:
   * obsolete, as a crash between the MANIFEST write and its deletion leaves it.
   */
  const withObsoleteLog = async (): Promise<{ dir: string; obsolete: string; live: string }> => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-leveldb-manifest-'));
    dirs.push(dir);
    const write = async (from: number) => {
      const db = new Level<string, string>(dir);
      await db.open();
      for (let i = from; i < from + KEYS / 2; i++) await db.put(`k${i}`, value(i), { sync: true });
      await db.close();
    };
    await write(0);
    const obsolete = newestLog(dir);
    const oldBytes = readFileSync(obsolete);
    expect(logRecords(oldBytes)).to.have.length(KEYS / 2);
    await write(KEYS / 2);
    expect(existsSync(obsolete), 'LevelDB deleted the replayed log').to.equal(false);
    const live = newestLog(dir);
    expect(logRecords(readFileSync(live))).to.have.length(KEYS / 2);
    writeFileSync(obsolete, oldBytes);
    return { dir, obsolete, live };
  };
  const expectEveryKey = async (dir: string) => {
    refuseDamagedLevelDbLogs(dir, refusal, silentLogger);
    const db = new Level<string, string>(dir);
    await db.open();
    try {
      for (let i = 0; i < KEYS; i++) expect(await db.get(`k${i}`), `k${i}`).to.equal(value(i));
    } finally {
      await db.close();
    }
  };
  const expectRefused = (dir: string, mentions: string) => {
    try {
      refuseDamagedLevelDbLogs(dir, refusal, silentLogger);
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
      expect((err as Error).message).to.include(mentions);
      return;
    }
    expect.fail('the check passed');
  };

  it('an obsolete log left beside, cut inside a record, is not read: the store opens with every key, and LevelDB deletes it (failed before: refused, "cut by the end of the file … follows")', async () => {
    const { dir, obsolete } = await withObsoleteLog();
    damageFile(obsolete, (bytes) => bytes.subarray(0, logRecords(bytes)[4]!.offset + 100));
    expect(checkLevelDbLogs(dir)).to.deep.equal({});
    await expectEveryKey(dir);
    expect(existsSync(obsolete), 'LevelDB deleted the obsolete log').to.equal(false);
  });

  it('an obsolete log left beside, a byte flipped, is not read: the store opens with every key (failed before: refused, "checksum mismatch")', async () => {
    const { dir, obsolete } = await withObsoleteLog();
    damageFile(obsolete, (bytes) => {
      const at = logRecords(bytes)[3]!.offset + 50;
      bytes[at] = bytes[at]! ^ 0x10;
    });
    expect(checkLevelDbLogs(dir)).to.deep.equal({});
    await expectEveryKey(dir);
  });

  it('a flipped byte in the live log is still refused, with an obsolete log beside it', async () => {
    const { dir, live } = await withObsoleteLog();
    damageFile(live, (bytes) => {
      const at = logRecords(bytes)[3]!.offset + 50;
      bytes[at] = bytes[at]! ^ 0x10;
    });
    expectRefused(dir, `${live} at offset`);
    expectRefused(dir, 'checksum mismatch');
  });

  it('without CURRENT (a new store: LevelDB replays every log) every log is checked', async () => {
    const { dir, obsolete } = await withObsoleteLog();
    damageFile(obsolete, (bytes) => bytes.subarray(0, logRecords(bytes)[4]!.offset + 100));
    unlinkSync(join(dir, 'CURRENT'));
    expect(checkLevelDbLogs(dir).damage?.file).to.equal(obsolete);
  });

  it('a CURRENT naming a missing MANIFEST, or not ending in a newline, is refused: which logs LevelDB replays cannot be told', async () => {
    const { dir } = await withObsoleteLog();
    const current = readFileSync(join(dir, 'CURRENT'), 'latin1');
    unlinkSync(join(dir, current.trim()));
    expectRefused(dir, `names ${current.trim()}, which is missing`);
    writeFileSync(join(dir, 'CURRENT'), current.trim());
    expectRefused(dir, "does not hold a MANIFEST's name and a newline");
  });

  it('a flipped byte in the MANIFEST is refused (its log number cannot be trusted)', async () => {
    const { dir } = await withObsoleteLog();
    const manifest = join(dir, readFileSync(join(dir, 'CURRENT'), 'latin1').trim());
    damageFile(manifest, (bytes) => {
      bytes[10] = bytes[10]! ^ 0x01;
    });
    expectRefused(dir, `${manifest} at offset 0: checksum mismatch`);
  });

  it('a MANIFEST torn at its end (the edit being written when the process died) is read up to the tear, as LevelDB does', async () => {
    const { dir } = await withObsoleteLog();
    const manifest = join(dir, readFileSync(join(dir, 'CURRENT'), 'latin1').trim());
    const whole = readFileSync(manifest);
    writeFileSync(manifest, Buffer.concat([whole, Buffer.from([1, 2, 3, 4, 200, 0, 1, 9])])); // a header whose 200 bytes never arrived
    expect(checkLevelDbLogs(dir)).to.deep.equal({});
    await expectEveryKey(dir);
  });

  describe('VersionEdit decoding', () => {
    const edit = (...fields: number[][]) => ({ offset: 0, bytes: Uint8Array.from(fields.flat()) });
    const key = [3, 0x61, 0x62, 0x63];
    it('reads every documented field, the last log number and prev log number winning', () => {
      const first = edit([1, 26, ...Buffer.from('leveldb.BytewiseComparator')], [2, ...varint(7)], [3, ...varint(9)], [4, ...varint(2 ** 40)], [9, ...varint(3)]);
      const second = edit([5, 1, ...key], [6, 2, ...varint(5)], [7, 0, ...varint(8), ...varint(123_456), ...key, ...key], [2, ...varint(300)]);
      expect(replayedLogs([first, second])).to.deep.equal({ logNumber: 300, prevLogNumber: 3 });
    });
    it('an unknown tag is refused, never skipped', () => {
      expect(replayedLogs([edit([2, 7], [8, 1, 1])])).to.deep.include({ reason: 'an unknown VersionEdit tag 8' });
    });
    it('a field cut by the end of its record, a level past 6, and no log number at all are refused', () => {
      expect(replayedLogs([edit([7, 0, 5, 10, 3, 0x61])])).to.have.property('reason').that.includes('runs past the end of the record');
      expect(replayedLogs([edit([6, 7, 5])])).to.have.property('reason').that.includes('level 7');
      expect(replayedLogs([edit([3, 5], [4, 9])])).to.have.property('reason', 'no VersionEdit records a log number');
    });
  });
});
