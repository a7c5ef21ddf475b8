// Which of LevelDB's log files its next open replays, from the VersionEdits of its MANIFEST
// (review S2 of branch walx; row W4 of docs/correctness.md).
//
// LevelDB's open reads `CURRENT` (the name of the MANIFEST, and a newline), replays the MANIFEST's
// records — each a VersionEdit — and then replays every log file whose number is at least the
// last `log number` recorded, or equal to the last `prev log number` (a field older LevelDBs
// wrote). A lower-numbered log is obsolete: its writes are in tables already, LevelDB never reads
// it and deletes it after the open. One can be left beside the live ones by a crash between the
// MANIFEST write that made it obsolete and its deletion; checking it would refuse a healthy store.
//
// A VersionEdit (LevelDB db/version_edit.cc, the format as documented there) is a sequence of
// fields, each a varint32 tag and its value: 1 comparator (a length-prefixed string), 2 log number
// (varint64), 3 next file number (varint64), 4 last sequence (varint64), 5 compact pointer
// (varint32 level, length-prefixed internal key), 6 deleted file (varint32 level, varint64
// number), 7 new file (varint32 level, varint64 number, varint64 size, length-prefixed smallest
// and largest keys), 9 prev log number (varint64). An unknown tag is refused, never skipped: its
// length is not known, and guessing could read a wrong log number, then skip a live log.

import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';

/** LevelDB's levels (config::kNumLevels): a field naming a higher one is damage. */
const LEVELS = 7;
const TAG = { comparator: 1, logNumber: 2, nextFile: 3, lastSequence: 4, compactPointer: 5, deletedFile: 6, newFile: 7, prevLogNumber: 9 } as const;

export interface ReplayedLogs {
  /** The last `log number` of the MANIFEST: logs numbered from it up are replayed. */
  readonly logNumber: number;
  /** The last `prev log number` (0 when none): that log is replayed too. */
  readonly prevLogNumber: number;
}

/** A MANIFEST's VersionEdits could not be read: why, and in which record. */
export interface ManifestProblem {
  readonly recordOffset: number;
  readonly reason: string;
}

/** Reads one VersionEdit's fields; throws (Corruption) at the first it cannot read. */
class EditReader {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  done(): boolean {
    return this.at >= this.bytes.byteLength;
  }

  /** A varint of at most `bytesMax` bytes, as a number (exact up to 2^53, which is all a file number needs). */
  varint(bytesMax: number, field: string): number {
    let value = 0;
    for (let i = 0; i < bytesMax; i++) {
      if (this.at >= this.bytes.byteLength) throw new RegionDbError(ErrorCode.Corruption, `${field}: a varint cut by the end of the record`);
      const byte = this.bytes[this.at++]!;
      value += (byte & 0x7f) * 2 ** (7 * i);
      if ((byte & 0x80) === 0) return value;
    }
    throw new RegionDbError(ErrorCode.Corruption, `${field}: a varint longer than ${bytesMax} bytes`);
  }

  level(field: string): number {
    const level = this.varint(5, field);
    if (level >= LEVELS) throw new RegionDbError(ErrorCode.Corruption, `${field}: level ${level}, LevelDB has ${LEVELS}`);
    return level;
  }

  skipSlice(field: string): void {
    const length = this.varint(5, field);
    if (this.at + length > this.bytes.byteLength) throw new RegionDbError(ErrorCode.Corruption, `${field}: a string of ${length} bytes runs past the end of the record`);
    this.at += length;
  }
}

/**
 * The logs LevelDB replays, from the MANIFEST's VersionEdits in order (each a complete logical
 * record of the MANIFEST file), or the first problem reading them.
 */
export function replayedLogs(edits: readonly { offset: number; bytes: Uint8Array }[]): ReplayedLogs | ManifestProblem {
  let logNumber: number | undefined;
  let prevLogNumber = 0;
  for (const edit of edits) {
    const reader = new EditReader(edit.bytes);
    try {
      while (!reader.done()) {
        const tag = reader.varint(5, 'a tag');
        switch (tag) {
          case TAG.comparator:
            reader.skipSlice('comparator');
            break;
          case TAG.logNumber:
            logNumber = reader.varint(10, 'log number');
            break;
          case TAG.prevLogNumber:
            prevLogNumber = reader.varint(10, 'prev log number');
            break;
          case TAG.nextFile:
          case TAG.lastSequence:
            reader.varint(10, tag === TAG.nextFile ? 'next file number' : 'last sequence');
            break;
          case TAG.compactPointer:
            reader.level('compact pointer');
            reader.skipSlice('compact pointer');
            break;
          case TAG.deletedFile:
            reader.level('deleted file');
            reader.varint(10, 'deleted file');
            break;
          case TAG.newFile:
            reader.level('new file');
            reader.varint(10, 'new file number');
            reader.varint(10, 'new file size');
            reader.skipSlice('new file smallest key');
            reader.skipSlice('new file largest key');
            break;
          default:
            throw new RegionDbError(ErrorCode.Corruption, `an unknown VersionEdit tag ${tag}`);
        }
      }
    } catch (err) {
      if (!isRegionDbError(err, ErrorCode.Corruption)) throw err;
      return { recordOffset: edit.offset, reason: err.message };
    }
  }
  if (logNumber === undefined) return { recordOffset: 0, reason: 'no VersionEdit records a log number' };
  for (const [name, value] of [['log number', logNumber], ['prev log number', prevLogNumber]] as const) {
    if (!Number.isSafeInteger(value)) return { recordOffset: 0, reason: `a ${name} past 2^53 (${value})` };
  }
  return { logNumber, prevLogNumber };
}
