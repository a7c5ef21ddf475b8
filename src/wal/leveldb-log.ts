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
// What is refused and what is not. A record cut by the end of a log file is a write torn by a
// crash (a kill -9 can cut a write() between pages, a power loss can lose its tail; a crash
// during an open's recovery can leave an older log so cut): its batch never finished its sync,
// so it was never acknowledged, and LevelDB ignores it silently — so do we. Zero bytes to the
// end of a block (space extended before its data landed) are what LevelDB skips too. Anything
// else — a checksum mismatch, a length running past its block, an unknown record type,
// anywhere, the newest complete record included — is damage to data that was synced: the open
// is refused, naming the file and the offset, before LevelDB can drop it. Left: a flip in the
// length field of a file's last record that makes it run past the end reads as a torn write.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '../common/crc32c.js';

const BLOCK_BYTES = 32 * 1024;
const HEADER_BYTES = 7;
const MASK_DELTA = 0xa282ead8;
const MAX_RECORD_TYPE = 4; // FULL 1, FIRST 2, MIDDLE 3, LAST 4; 0 is LevelDB's zero (preallocated) type

export interface LevelDbLogDamage {
  readonly file: string;
  readonly offset: number;
  readonly reason: string;
}

function unmask(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}

/** The first damage in one log file's bytes, or undefined (a record cut by the end of the file is a torn write, not damage). */
export function checkLevelDbLog(bytes: Uint8Array): { offset: number; reason: string } | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos < bytes.byteLength) {
    const blockEnd = (Math.floor(pos / BLOCK_BYTES) + 1) * BLOCK_BYTES;
    if (blockEnd - pos < HEADER_BYTES) {
      pos = blockEnd; // the block's trailer
      continue;
    }
    if (bytes.byteLength - pos < HEADER_BYTES) return undefined; // a header cut by the end of the file: a torn write
    const masked = view.getUint32(pos, true);
    const length = view.getUint16(pos + 4, true);
    const type = bytes[pos + 6]!;
    const end = pos + HEADER_BYTES + length;
    // Past its block first: LevelDB never writes a record across a block, so a length running past
    // the block is damage even where it also runs past the end of the file (a flipped length bit
    // read as a torn write let LevelDB drop the record, and the rest of its block, silently).
    if (end > blockEnd) return { offset: pos, reason: `a record of ${length} bytes runs past its 32 KiB block` };
    if (end > bytes.byteLength) return undefined; // cut by the end of the file: a write torn by a crash, which LevelDB ignores
    if (type === 0 && length === 0) {
      // LevelDB skips the rest of the block after a zero record. The LevelDB we run writes plain
      // files (no preallocated space), so zeros where a record should start are the end of what
      // reached the disk: fine while every byte to the end of the file is zero; data after them
      // (in this block or a later one, whose fragments LevelDB would drop as missing their start)
      // is refused.
      const rest = bytes.subarray(pos);
      if (rest.some((b) => b !== 0)) return { offset: pos, reason: 'non-zero bytes after a zero record, which LevelDB would skip' };
      return undefined;
    }
    if (type > MAX_RECORD_TYPE || type === 0) return { offset: pos, reason: `unknown record type ${type}` };
    const data = bytes.subarray(pos + HEADER_BYTES, end);
    const actual = crc32c(data, crc32c(Uint8Array.of(type)));
    if (actual !== unmask(masked)) {
      return { offset: pos, reason: `checksum mismatch (stored 0x${unmask(masked).toString(16).padStart(8, '0')}, computed 0x${actual.toString(16).padStart(8, '0')})` };
    }
    pos = end;
  }
  return undefined;
}

/** Every LevelDB log file in `dir` checked; the damage found, if any (the directory may not exist yet). */
export function checkLevelDbLogs(dir: string): LevelDbLogDamage | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => /^\d+\.log$/.test(f));
  } catch {
    return undefined; // no directory: a new WAL
  }
  names.sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  for (const name of names) {
    const found = checkLevelDbLog(new Uint8Array(readFileSync(join(dir, name))));
    if (found) return { file: join(dir, name), ...found };
  }
  return undefined;
}
