// Checks LevelDB's own log files before LevelDB replays them (review X4, docs/correctness.md).
//
// LevelDB keeps its newest writes in `<dir>/NNNNNN.log` until they move into a table. At open it
// replays those files with paranoid checks off (classic-level does not expose the option): a
// physical record that fails LevelDB's checksum is dropped, with the rest of its 32 KiB block,
// "(ignoring error)" in `<dir>/LOG`, and the log file is deleted once replayed. A flipped byte
// in a synced batch thus made the WAL open without that batch — entries and hard states this
// node had acknowledged — and nothing of ours could notice: every region's records stay
// consistent, just older (finding 1's hazard, the one 3a closed for our own records).
//
// The format (LevelDB doc/log_format.md): the file is a sequence of 32 KiB blocks; a block
// holds physical records `[masked crc32c u32 LE][length u16 LE][type u8][data]`, and fewer than
// 7 bytes left at a block's end are a zero trailer. The checksum covers the type byte and the
// data, masked as ((crc >>> 15) | (crc << 17)) + 0xa282ead8.
//
// What is refused and what is not. LevelDB's records are FULL, or FIRST, MIDDLE*, LAST (a batch
// longer than what is left of its block is split), and its replay drops, after reporting it to
// no one, a record failing its checksum (with the rest of its block), a MIDDLE or LAST with no
// FIRST before it, and a FIRST left unfinished by a FULL or FIRST. Each of these is refused as
// damage — naming the file and the offset — with one exception, a write torn by a crash: the
// batch being written when the process died or the power failed. It never finished its sync, so
// it was never acknowledged (docs/raft-rules.md R4), and LevelDB drops it — so do we, with a
// warning. Only the logs LevelDB's open replays are read: those the MANIFEST names (its log
// number and up, and its prev log number; src/wal/leveldb-manifest.ts); an obsolete log left
// beside them by a crash is never replayed, and what cannot be told (CURRENT or the MANIFEST
// unreadable) is refused. A tear is recognised only by what a crash can leave, and only at the end
// of what was written — the newest of those logs, every later one empty (an empty later log is
// left by a crash during an open's recovery, which creates the next log before its MANIFEST write
// makes the replayed one obsolete, and by a crash just after LevelDB's log switch, which creates
// the next log when the memtable fills, before the write that filled it lands there):
//   - the file cut inside its last record (a kill -9 between two write() calls, or a power loss
//     before all of a write's pages reached the disk and the size was kept short), or a FIRST
//     whose LAST never arrived, every fragment present checking clean;
//   - the last record failing its check with every byte from a 512-byte (sector) boundary inside
//     it to the end of the file zero: space the file was extended into whose data never landed
//     (an unwritten extent, or the zeros past an earlier end of a partly written page);
//   - and in either shape, no single-bit change of the record's header (length, type, stored
//     checksum) makes a record that checks clean over the bytes present: one flipped bit in a
//     header can make a complete, synced record run past the end of the file or fail its check
//     over data that happen to end in zeros, and that is damage (oneBitFromRecord).
// Anything else is damage, a failing record at the very end of the newest file included: a
// flipped bit leaves the rest of its record's bytes in place, not zeros to the end.
//
// Limits. Refused though it may be a tear (when in doubt, refuse; the node does not start until
// the operator moves its data directory aside, as for damage — a datanode then rebuilds its
// replicas, a single metasrv starts from its catalog copy — though the torn batch was never
// acknowledged): a tear that left stale bytes from before in place of zeros (a file system that
// can expose them: ext4 data=writeback); pages of the last write that landed out of order (zeros
// inside the last record, then data after them); a torn log followed by a log holding records
// (an open's MANIFEST write makes the log it replayed obsolete before anything is written to the
// next, so this needs a synced write lost). Accepted though it is damage: a synced record whose
// last sectors the disk lost — a write cache that acknowledged a flush it did not keep — reads
// zero from a sector boundary to the end of the file, byte for byte a tear: nothing in the log
// tells them apart, and the rule trusts that a completed fsync is on the platter (if it is not,
// LevelDB drops an acknowledged write, with our warning); damage leaving the last record zero
// from a 512-byte boundary to the end (its own data ending in zeros there, and a flip in its data
// before them); two or more flipped bits in a last record's header (only one-bit changes are
// tried). test/unit/leveldb-log.test.ts, test/unit/leveldb-manifest.test.ts.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assert } from '../common/assert.js';
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type ReplayedLogs, replayedLogs } from './leveldb-manifest.js';

const BLOCK_BYTES = 32 * 1024;
const HEADER_BYTES = 7;
const SECTOR_BYTES = 512; // the smallest unit a disk writes whole: where a power loss can cut a page
const MASK_DELTA = 0xa282ead8;
const FULL = 1;
const FIRST = 2; // MIDDLE is 3
const LAST = 4; // 0 is LevelDB's zero (preallocated) type
const TYPE_NAMES = ['zero', 'FULL', 'FIRST', 'MIDDLE', 'LAST'];

/** The first problem in one log file, and whether it has a shape only a crash leaves. */
export interface LevelDbLogProblem {
  /** Where what LevelDB would drop begins: the bad record, or the FIRST of the record it belongs to. */
  readonly offset: number;
  readonly reason: string;
  /** A cut, a FIRST without its LAST, or zeros from a sector boundary to the end: a tear if it ends the newest log. */
  readonly tearShaped: boolean;
}

export interface LevelDbLogFinding {
  readonly file: string;
  readonly offset: number;
  readonly reason: string;
  /** In CURRENT or the MANIFEST, not a log: which logs LevelDB replays cannot be told. */
  readonly inManifest?: true;
}

export interface LevelDbLogTear extends LevelDbLogFinding {
  /** From `offset` to the end of the file: what LevelDB's replay drops. */
  readonly droppedBytes: number;
}

function unmask(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}

/** The offset from which every byte to the end is zero (the length when the last byte is not). */
function zeroTailStart(bytes: Uint8Array): number {
  let at = bytes.byteLength;
  while (at > 0 && bytes[at - 1] === 0) at--;
  return at;
}

/**
 * The first problem in one log file's bytes, or undefined when LevelDB would replay all of it.
 * `onRecord` is given each complete logical record before the problem (its fragments joined),
 * with the offset of its FULL or FIRST.
 */
export function checkLevelDbLog(bytes: Uint8Array, onRecord?: (offset: number, data: Uint8Array) => void): LevelDbLogProblem | undefined {
  const found = walkLog(bytes, onRecord);
  if (!found?.tearShaped || found.headerAt === undefined) return found && { offset: found.offset, reason: found.reason, tearShaped: found.tearShaped };
  const hidden = oneBitFromRecord(bytes, found.headerAt, found.offset);
  if (hidden !== undefined) {
    return { offset: found.headerAt, reason: `${found.reason} — but ${hidden}: a complete record with one bit flipped, not a tear`, tearShaped: false };
  }
  return { offset: found.offset, reason: found.reason, tearShaped: true };
}

/**
 * A tear-shaped record whose header one flipped bit has changed (review S1 of branch walx): a
 * length grown past the end of the file reads as a cut, and a length, type or checksum that no
 * longer matches a record whose own data ends in zeros from a 512-byte boundary reads as pages
 * that never landed — and LevelDB drops that synced record and all after it. A tear is one bit
 * from a record that checks clean over the bytes present only by chance (about 2^-26 over the 56
 * tries), so if it is, that is damage: each single-bit change of the header's length (16 bits),
 * type (8) and stored checksum (32) is tried, and one that makes a record fitting its block and
 * the file check clean, and lets more of the log be kept, is named (undefined when none does).
 */
function oneBitFromRecord(bytes: Uint8Array, pos: number, tornFrom: number): string | undefined {
  assert(pos + HEADER_BYTES <= bytes.byteLength, `the header at ${pos} is whole (${bytes.byteLength} bytes)`);
  assert(tornFrom <= pos, `the tear at ${tornFrom} begins at or before the record at ${pos}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const masked = view.getUint32(pos, true);
  const length = view.getUint16(pos + 4, true);
  const type = bytes[pos + 6]!;
  const fitsBy = Math.min(bytes.byteLength, (Math.floor(pos / BLOCK_BYTES) + 1) * BLOCK_BYTES);
  const tries: { what: string; masked: number; length: number; type: number }[] = [];
  for (let bit = 0; bit < 16; bit++) tries.push({ what: `bit ${bit} of its length`, masked, length: length ^ (1 << bit), type });
  for (let bit = 0; bit < 8; bit++) tries.push({ what: `bit ${bit} of its type`, masked, length, type: type ^ (1 << bit) });
  for (let bit = 0; bit < 32; bit++) tries.push({ what: `bit ${bit} of its checksum`, masked: (masked ^ (1 << bit)) >>> 0, length, type });
  for (const t of tries) {
    const end = pos + HEADER_BYTES + t.length;
    if (t.type < FULL || t.type > LAST || end > fitsBy) continue;
    if (crc32c(bytes.subarray(pos + HEADER_BYTES, end), crc32c(Uint8Array.of(t.type))) !== unmask(t.masked)) continue;
    // A record that checks clean: a tear only if the log is still cut at the same place with it
    // (a FIRST or MIDDLE whose LAST never came), for a tear leaves an unfinished record.
    const repaired = Uint8Array.from(bytes);
    const repairedView = new DataView(repaired.buffer);
    repairedView.setUint32(pos, t.masked, true);
    repairedView.setUint16(pos + 4, t.length, true);
    repaired[pos + 6] = t.type;
    const then = walkLog(repaired);
    if (then === undefined || !then.tearShaped || then.offset > tornFrom) return `${t.what} flipped back, the ${t.length}-byte ${TYPE_NAMES[t.type]} record at offset ${pos} checks clean`;
  }
  return undefined;
}

/** checkLevelDbLog without the one-bit test; `headerAt` is the whole header of a tear-shaped record. */
function walkLog(bytes: Uint8Array, onRecord?: (offset: number, data: Uint8Array) => void): (LevelDbLogProblem & { headerAt?: number }) | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const zerosFrom = zeroTailStart(bytes);
  const sectorZerosFrom = Math.ceil(zerosFrom / SECTOR_BYTES) * SECTOR_BYTES;
  let firstAt: number | undefined; // the FIRST of a record still waiting for its LAST
  let fragments: Uint8Array[] = []; // its data so far, when onRecord wants the records
  // A record's bytes are zeros to the end of the file from its start or from a sector boundary
  // inside it: space the file was extended into whose pages never landed. A flipped bit leaves
  // the rest of the record in place.
  const zeroedFrom = (at: number, end: number) => zerosFrom <= at || sectorZerosFrom < end;
  const torn = (at: number, reason: string, headerAt?: number) => ({ offset: firstAt ?? at, reason, tearShaped: true, headerAt });
  const damaged = (at: number, reason: string): LevelDbLogProblem => ({ offset: at, reason, tearShaped: false });
  let pos = 0;
  while (pos < bytes.byteLength) {
    const blockEnd = (Math.floor(pos / BLOCK_BYTES) + 1) * BLOCK_BYTES;
    if (blockEnd - pos < HEADER_BYTES) {
      pos = blockEnd; // the block's trailer
      continue;
    }
    if (bytes.byteLength - pos < HEADER_BYTES) return torn(pos, 'a record header cut by the end of the file');
    const masked = view.getUint32(pos, true);
    const length = view.getUint16(pos + 4, true);
    const type = bytes[pos + 6]!;
    const end = pos + HEADER_BYTES + length;
    // Past its block first: LevelDB never writes a record across a block, and zeros only shrink a
    // length, so this is damage even where it also runs past the end of the file (a flipped
    // length bit read as a torn write let LevelDB drop the record, and the rest of its block).
    if (end > blockEnd) return damaged(pos, `a record of ${length} bytes runs past its 32 KiB block`);
    if (end > bytes.byteLength) return torn(pos, `a record of ${length} bytes cut by the end of the file`, pos);
    if (type === 0 && length === 0) {
      // LevelDB skips the rest of the block after a zero record, and drops a later block's
      // fragments as missing their start. The LevelDB we run writes plain files (no preallocated
      // space), so zeros where a record starts are the end of what reached the disk.
      if (zeroedFrom(pos, end)) return torn(pos, 'zeros to the end of the file where a record starts', pos);
      return damaged(pos, 'non-zero bytes after a zero record, which LevelDB would skip');
    }
    let bad: string | undefined;
    if (type > LAST || type === 0) bad = `unknown record type ${type}`;
    else {
      const actual = crc32c(bytes.subarray(pos + HEADER_BYTES, end), crc32c(Uint8Array.of(type)));
      if (actual !== unmask(masked)) {
        bad = `checksum mismatch (stored 0x${unmask(masked).toString(16).padStart(8, '0')}, computed 0x${actual.toString(16).padStart(8, '0')})`;
      }
    }
    if (bad !== undefined) {
      return zeroedFrom(pos, end) ? torn(pos, `${bad}, its bytes zero from a 512-byte boundary to the end of the file`, pos) : damaged(pos, bad);
    }
    // Fragment order: FULL, or FIRST MIDDLE* LAST. LevelDB reports a break in it to no one and
    // drops the fragments around it; every fragment here checked clean, so it is never a tear.
    if (type === FULL || type === FIRST) {
      if (firstAt !== undefined) return damaged(pos, `a ${TYPE_NAMES[type]} record where the record begun at offset ${firstAt} needs its MIDDLE or LAST`);
      if (type === FIRST) firstAt = pos;
    } else {
      if (firstAt === undefined) return damaged(pos, `a ${TYPE_NAMES[type]} record with no FIRST before it`);
    }
    if (onRecord) {
      fragments.push(bytes.subarray(pos + HEADER_BYTES, end));
      if (type === FULL || type === LAST) {
        onRecord(firstAt ?? pos, fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments));
        fragments = [];
      }
    }
    if (type === LAST) firstAt = undefined;
    pos = end;
  }
  if (firstAt !== undefined) return torn(firstAt, 'a record whose LAST fragment never reached the file');
  return undefined;
}

/**
 * The logs LevelDB's open replays, from `CURRENT` and the MANIFEST it names (src/wal/leveldb-manifest.ts);
 * undefined without a CURRENT (a new store: LevelDB writes a MANIFEST with log number 0 and replays
 * every log); a finding when they cannot be told, which refuses the open rather than check nothing.
 */
function readReplayedLogs(dir: string): ReplayedLogs | LevelDbLogFinding | undefined {
  const currentFile = join(dir, 'CURRENT');
  let current: string;
  try {
    current = readFileSync(currentFile, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const cannotTell = 'which of LevelDB\'s logs its open replays cannot be told';
  const name = /^(MANIFEST-\d+)\n$/.exec(current)?.[1];
  if (name === undefined) return { file: currentFile, offset: 0, reason: `it does not hold a MANIFEST's name and a newline (${JSON.stringify(current.slice(0, 40))}): ${cannotTell}`, inManifest: true };
  const manifestFile = join(dir, name);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(manifestFile));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { file: currentFile, offset: 0, reason: `it names ${name}, which is missing: ${cannotTell}`, inManifest: true };
    throw err;
  }
  const edits: { offset: number; bytes: Uint8Array }[] = [];
  const problem = checkLevelDbLog(bytes, (offset, data) => edits.push({ offset, bytes: data }));
  // A tear at its end is the edit being written when the process died: LevelDB's replay of the
  // MANIFEST stops before it, and so do we (an older log number only checks more logs).
  if (problem && !problem.tearShaped) return { file: manifestFile, offset: problem.offset, reason: `${problem.reason}: ${cannotTell}`, inManifest: true };
  const replayed = replayedLogs(edits);
  if ('reason' in replayed) return { file: manifestFile, offset: replayed.recordOffset, reason: `${replayed.reason}: ${cannotTell}`, inManifest: true };
  return replayed;
}

/**
 * Every LevelDB log file in `dir` that LevelDB's open replays checked (the directory may not
 * exist yet): the damage found, or the write torn by a crash that LevelDB's replay will drop.
 * An obsolete log (numbered below the MANIFEST's log number, left by a crash before LevelDB
 * deleted it) is not read: LevelDB never replays it.
 */
export function checkLevelDbLogs(dir: string): { damage?: LevelDbLogFinding; tear?: LevelDbLogTear } {
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => /^\d+\.log$/.test(f));
  } catch {
    return {}; // no directory: a new store
  }
  const replayed = readReplayedLogs(dir);
  if (replayed !== undefined && 'file' in replayed) return { damage: replayed };
  if (replayed !== undefined) {
    names = names.filter((name) => {
      const number = Number.parseInt(name, 10);
      return number >= replayed.logNumber || number === replayed.prevLogNumber;
    });
  }
  names.sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  const sizes = names.map((name) => statSync(join(dir, name)).size);
  for (const [i, name] of names.entries()) {
    const file = join(dir, name);
    const bytes = new Uint8Array(readFileSync(file));
    const found = checkLevelDbLog(bytes);
    if (!found) continue;
    // The newest log: every later one empty (an open's recovery and LevelDB's log switch both
    // create the next log before anything is written to it; a crash can come between).
    const later = sizes.findIndex((size, j) => j > i && size > 0);
    if (found.tearShaped && later === -1) return { tear: { file, offset: found.offset, reason: found.reason, droppedBytes: bytes.byteLength - found.offset } };
    const reason = found.tearShaped ? `${found.reason}: a crash leaves that only at the end of the newest log, and ${names[later]} (${sizes[later]} bytes) follows` : found.reason;
    return { damage: { file, offset: found.offset, reason } };
  }
  return {};
}

/** What a refusal says: what LevelDB would have dropped, and what the operator does. */
export interface LevelDbLogRefusal {
  /** Names the store in the message: `WAL`, `metasrv catalog`. */
  readonly what: string;
  /** What a dropped record of its log is, and what dropping it would do. */
  readonly dropped: string;
  /** What the operator does to start again. */
  readonly action: string;
}

/**
 * Run before a LevelDB store opens: throws (Corruption, naming the file and the offset) when
 * LevelDB would drop a record of a log it replays without a word, or when which logs it replays
 * cannot be told (CURRENT or the MANIFEST unreadable); warns of a torn write, which LevelDB drops
 * and which was never acknowledged (its sync never finished).
 */
export function refuseDamagedLevelDbLogs(dir: string, refusal: LevelDbLogRefusal, log: Logger): void {
  const { what } = refusal;
  const { damage, tear } = checkLevelDbLogs(dir);
  if (damage?.inManifest) {
    throw new RegionDbError(
      ErrorCode.Corruption,
      `${what} corruption in LevelDB's ${damage.file} at offset ${damage.offset}: ${damage.reason}, so none is checked and the store is not opened. ${refusal.action}`,
    );
  }
  if (damage) {
    throw new RegionDbError(ErrorCode.Corruption, `${what} corruption in LevelDB's log ${damage.file} at offset ${damage.offset}: ${damage.reason}. ${refusal.dropped}. ${refusal.action}`);
  }
  if (tear) {
    log.warn(
      { file: tear.file, offset: tear.offset, droppedBytes: tear.droppedBytes, reason: tear.reason },
      `${what}: LevelDB's newest log ends in a write torn by a crash (never synced, so never acknowledged); LevelDB drops its ${tear.droppedBytes} bytes from offset ${tear.offset} of ${tear.file}`,
    );
  }
}
