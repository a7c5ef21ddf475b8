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
import { type LogRecord, RECORD_TYPE, logRecords, newestLog, retypeRecord } from '../fixtures/leveldb-log-damage.js';

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

  it("one flipped bit anywhere is damage — but in a block's trailer (LevelDB ignores it) and the documented limit", () => {
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
      // The limit: a flip in the data of a last record that ends in zeros from a 512-byte boundary reads as a tear.
      let zerosFrom = bytes.length;
      while (zerosFrom > 0 && bytes[zerosFrom - 1] === 0) zerosFrom--;
      if (at >= record.offset + 7 && Math.ceil(zerosFrom / 512) * 512 < records.at(-1)!.end) {
        limits++;
        continue;
      }
      expect(found, where).to.not.equal(undefined);
      expect(found!.tearShaped, `${where}: ${found!.reason}`).to.equal(false);
      expect(found!.offset, where).to.equal(record.offset);
    }
    expect(limits, `seed ${SEED}: flips that fell in a documented limit`).to.be.below(TRIALS / 20);
  });

  // S1 (review of branch walx): a flipped bit in a header of the file's last block — a length
  // grown past the end of the file, or a length, type or checksum of a record whose data ends in
  // zeros — read as a tear, and LevelDB dropped that synced record and every one after it.
  const lastBlocksFrom = () => Math.max(0, (Math.floor((original.length - 1) / BLOCK) - 1) * BLOCK);

  it('S1: every single-bit flip of a header (length, type, checksum) of the records in the last two blocks is damage at that record (failed before: flips of lengths grown past the end accepted as a tear)', () => {
    const accepted: string[] = [];
    const lastRecords = records.filter((r) => r.offset >= lastBlocksFrom());
    expect(lastRecords.length, 'records in the last two blocks').to.be.at.least(2);
    for (const record of lastRecords) {
      for (let at = record.offset; at < record.offset + 7; at++) {
        for (let bit = 0; bit < 8; bit++) {
          const bytes = Buffer.from(original);
          bytes[at] = bytes[at]! ^ (1 << bit);
          const found = checkLevelDbLog(bytes);
          if (found === undefined || found.tearShaped || found.offset !== record.offset) {
            accepted.push(`byte ${at - record.offset} bit ${bit} of the record at ${record.offset}: ${found === undefined ? 'clean' : `${found.tearShaped ? 'tear' : 'damage'} at ${found.offset}, ${found.reason}`}`);
          }
        }
      }
    }
    expect(accepted, `seed ${SEED}: ${accepted.length} of ${lastRecords.length * 56} header flips not refused at their record (${original.length} bytes)`).to.deep.equal([]);
  });

  it('S1: a header flip of a last record whose data ends in zeros across a 512-byte boundary is damage (failed before: a tear)', () => {
    // The last record's data made to end in zeros from a sector boundary, its checksum made to match: a synced record.
    const bytes = Buffer.from(original);
    const last = records.at(-1)!;
    const boundary = Math.ceil((last.offset + 8) / 512) * 512;
    expect(boundary, 'the last record crosses a 512-byte boundary').to.be.below(last.end);
    bytes.fill(0, boundary, last.end);
    retypeRecord(bytes, last, last.type);
    expect(checkLevelDbLog(bytes), 'the record with zeros, checksum matching').to.equal(undefined);
    const accepted: string[] = [];
    for (let at = last.offset; at < last.offset + 7; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[at] = flipped[at]! ^ (1 << bit);
        const found = checkLevelDbLog(flipped);
        if (found === undefined || found.tearShaped) accepted.push(`byte ${at - last.offset} bit ${bit}: ${found?.reason ?? 'clean'}`);
      }
    }
    expect(accepted, `seed ${SEED}`).to.deep.equal([]);
  });

  it('S1: every cut and every zero tail from a 512-byte boundary in the last two blocks is still a tear', () => {
    const from = lastBlocksFrom();
    for (let cut = from + 1; cut < original.length; cut += 61) {
      const found = checkLevelDbLog(original.subarray(0, cut));
      const cutRecord = recordAt(cut);
      if (found === undefined) {
        expect(cutRecord === undefined || cutRecord.offset === cut, `seed ${SEED}: cut at ${cut}`).to.equal(true);
        continue;
      }
      expect(found.tearShaped, `seed ${SEED}: cut at ${cut}: ${found.reason}`).to.equal(true);
    }
    for (let zeros = Math.ceil(from / 512) * 512; zeros < original.length; zeros += 512) {
      const bytes = Buffer.from(original);
      bytes.fill(0, zeros);
      const found = checkLevelDbLog(bytes);
      expect(found?.tearShaped, `seed ${SEED}: zeros from ${zeros}: ${found?.reason}`).to.equal(true);
    }
  });
});
