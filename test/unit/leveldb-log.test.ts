// src/wal/leveldb-log.ts on a real LevelDB log written by the WAL, damaged at seeded places: the
// tear rule (W1) and its documented limits (docs/architecture.md §4), case by case. A failure
// prints the seed and the damage; LEVELDB_LOG_SEED=<n> runs another seed.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import { SeededRand } from '../../src/common/rand.js';
import { EntryType } from '../../src/raft/types.js';
import { Wal } from '../../src/wal/index.js';
import { checkLevelDbLog } from '../../src/wal/leveldb-log.js';
import { type LogRecord, RECORD_TYPE, logRecords, newestLog } from '../fixtures/leveldb-log-damage.js';

const SEED = Number(process.env['LEVELDB_LOG_SEED'] ?? 1);
const TRIALS = 300;
const BLOCK = 32 * 1024;

/** Twelve synced batches of seeded sizes (a few bytes to several blocks), the WAL closed: the bytes of its newest LevelDB log. */
async function realLog(rand: SeededRand): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-leveldb-log-'));
  try {
    const wal = await Wal.open(dir, silentLogger);
    let index = 1;
    for (let batch = 0; batch < 12; batch++) {
      const b = wal.batch();
      const entries = Array.from({ length: 1 + rand.int(3) }, () => ({
        term: 1,
        index: index++,
        type: EntryType.Normal,
        data: Uint8Array.from({ length: rand.chance(0.3) ? 20_000 + rand.int(40_000) : 1 + rand.int(2_000) }, () => 1 + rand.int(255)),
      }));
      b.append('1', entries);
      b.setHardState('1', { term: 1, vote: 1, commit: index - 1 });
      await b.commit();
    }
    await wal.close();
    return readFileSync(newestLog(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The offset of the FULL or FIRST record that begins the logical record holding `record`. */
function logicalStart(records: readonly LogRecord[], record: LogRecord): number {
  let i = records.indexOf(record);
  while (records[i]!.type !== RECORD_TYPE.FULL && records[i]!.type !== RECORD_TYPE.FIRST) i--;
  return records[i]!.offset;
}

describe(`LevelDB's log check on a real log, seeded damage (W1; seed ${SEED})`, () => {
  let original: Buffer;
  let records: LogRecord[];
  let rand: SeededRand;
  before(async () => {
    rand = new SeededRand(SEED);
    original = await realLog(rand);
    records = logRecords(original);
    expect(checkLevelDbLog(original), 'the undamaged log').to.equal(undefined);
    expect(records.at(-1)!.end, 'the records reach the end of the file').to.equal(original.length);
    expect(original[original.length - 1], 'the log ends in a non-zero byte (the hard state commit index)').to.not.equal(0);
    expect(original.length, 'the log spans several blocks').to.be.greaterThan(3 * BLOCK);
  });
  const recordAt = (offset: number) => records.find((r) => offset >= r.offset && offset < r.end);

  it('a cut anywhere is a tear (or clean at a record boundary), dropped from the start of the record it cuts', () => {
    for (let trial = 0; trial < TRIALS; trial++) {
      const cut = 1 + rand.int(original.length - 1);
      const found = checkLevelDbLog(original.subarray(0, cut));
      const where = `seed ${SEED}: cut at ${cut} of ${original.length}`;
      const cutRecord = recordAt(cut);
      if (found === undefined) {
        // clean only where no record is cut: at the start of a FULL or FIRST, or in a trailer after a LAST or FULL
        expect(cutRecord === undefined || cutRecord.offset === cut, where).to.equal(true);
        continue;
      }
      expect(found.tearShaped, `${where}: ${found.reason}`).to.equal(true);
      if (cutRecord !== undefined && cutRecord.offset < cut) expect(found.offset, where).to.equal(logicalStart(records, cutRecord));
      expect(found.offset, where).to.be.at.most(cut);
    }
  });

  it('zeros from any 512-byte boundary to the end (pages that never landed) are a tear, dropped from the start of the record they reach into (failed before: refused)', () => {
    for (let trial = 0; trial < TRIALS; trial++) {
      const from = 512 * rand.int(Math.ceil(original.length / 512));
      const bytes = Buffer.from(original);
      bytes.fill(0, from);
      const found = checkLevelDbLog(bytes);
      const where = `seed ${SEED}: zeros from ${from} of ${original.length}`;
      expect(found, where).to.not.equal(undefined);
      expect(found!.tearShaped, `${where}: ${found!.reason}`).to.equal(true);
      const hit = recordAt(from) ?? records.find((r) => r.offset >= from)!; // a boundary in a trailer reaches the next block's record
      expect(found!.offset, where).to.equal(logicalStart(records, hit));
    }
  });

  it("one flipped bit anywhere is damage — but in a block's trailer (LevelDB ignores it) and the documented limits", () => {
    let limits = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const at = rand.int(original.length);
      const bit = rand.int(8);
      const bytes = Buffer.from(original);
      bytes[at] = bytes[at]! ^ (1 << bit);
      const found = checkLevelDbLog(bytes);
      const where = `seed ${SEED}: bit ${bit} of byte ${at} flipped (${original.length} bytes)`;
      const record = recordAt(at);
      if (record === undefined) {
        expect(found, `${where}: in a trailer`).to.equal(undefined);
        continue;
      }
      // Limit 1: a length field grown inside the file's last block, past the end, reads as a cut.
      const grownEnd = at === record.offset + 4 || at === record.offset + 5 ? record.offset + 7 + bytes.readUInt16LE(record.offset + 4) : 0;
      const blockEnd = (Math.floor(record.offset / BLOCK) + 1) * BLOCK;
      // Limit 2: a flip that leaves the last record zero from a 512-byte boundary to the end reads as a tear.
      let zerosFrom = bytes.length;
      while (zerosFrom > 0 && bytes[zerosFrom - 1] === 0) zerosFrom--;
      if ((grownEnd > bytes.length && grownEnd <= blockEnd) || Math.ceil(zerosFrom / 512) * 512 < records.at(-1)!.end) {
        limits++;
        continue;
      }
      expect(found, where).to.not.equal(undefined);
      expect(found!.tearShaped, `${where}: ${found!.reason}`).to.equal(false);
      expect(found!.offset, where).to.equal(record.offset);
    }
    expect(limits, `seed ${SEED}: flips that fell in a documented limit`).to.be.below(TRIALS / 20);
  });
});
