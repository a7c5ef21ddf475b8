// WAL record framing and payload codecs (docs/style.md S6: versioned and checksummed).
//
//   record  = [format version: u8 = 1][crc32c(payload): u32 BE][payload length: u32 BE][payload]
//   entry   = [term: u64][index: u64][type: u8][data...]
//   hard    = [term: u64][vote: u64][commit: u64]
//   trunc   = [index: u64][term: u64]                      (compaction point)
//   snap    = [index: u64][term: u64][nVoters: u32][voters: u64…][nLearners: u32][learners: u64…][data...]
//   meta    = opaque bytes owned by the datanode
// Decoding validates version, length and CRC before reading any field; failures are
// RecordError values naming the check, which the WAL turns into precise CORRUPTION errors.
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Entry, HardState, Snapshot } from '../raft/types.js';

export const RECORD_VERSION = 1;
const HEADER_BYTES = 9;

/** A record that fails a check: CORRUPTION (the WAL adds the region and key it was read from). */
export class RecordError extends RegionDbError {
  override name = 'RecordError';
  constructor(message: string) {
    super(ErrorCode.Corruption, message);
  }
}

export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  out[0] = RECORD_VERSION;
  view.setUint32(1, crc32c(payload));
  view.setUint32(5, payload.byteLength);
  out.set(payload, HEADER_BYTES);
  return out;
}

export function unframe(record: Uint8Array): Uint8Array {
  if (record.byteLength < HEADER_BYTES) throw new RecordError(`truncated record (${record.byteLength} bytes, header needs ${HEADER_BYTES})`);
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  if (record[0] !== RECORD_VERSION) throw new RecordError(`unknown record format version ${record[0]}`);
  const length = view.getUint32(5);
  if (length !== record.byteLength - HEADER_BYTES) {
    throw new RecordError(`truncated record (length field ${length}, ${record.byteLength - HEADER_BYTES} payload bytes present)`);
  }
  const payload = record.subarray(HEADER_BYTES);
  const stored = view.getUint32(1);
  const computed = crc32c(payload);
  if (stored !== computed) {
    throw new RecordError(`crc32c mismatch (stored 0x${stored.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')})`);
  }
  return payload;
}

class Writer {
  private readonly parts: Uint8Array[] = [];
  private size = 0;
  u64(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v));
    return this.push(b);
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    return this.push(b);
  }
  u8(v: number): this {
    return this.push(new Uint8Array([v]));
  }
  push(b: Uint8Array): this {
    this.parts.push(b);
    this.size += b.byteLength;
    return this;
  }
  done(): Uint8Array {
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const p of this.parts) {
      out.set(p, off);
      off += p.byteLength;
    }
    return out;
  }
}

class Reader {
  private off = 0;
  private readonly view: DataView;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number): void {
    if (this.off + n > this.bytes.byteLength) throw new RecordError(`payload too short: need ${n} bytes at offset ${this.off}`);
  }
  u64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.off);
    this.off += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RecordError(`integer ${v} exceeds 2^53`);
    return Number(v);
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.off);
    this.off += 4;
    return v;
  }
  u8(): number {
    this.need(1);
    return this.bytes[this.off++]!;
  }
  rest(): Uint8Array {
    const out = this.bytes.slice(this.off);
    this.off = this.bytes.byteLength;
    return out;
  }
  /** Fixed-size payloads end with their last field: anything after it is not a record we wrote. */
  end(): void {
    if (this.off !== this.bytes.byteLength) throw new RecordError(`${this.bytes.byteLength - this.off} trailing bytes after offset ${this.off}`);
  }
}

/** Bytes of an entry payload before its data: term, index, type. */
const ENTRY_HEAD_BYTES = 17;

/**
 * The record of one entry, written straight into its final buffer: every replica writes one per
 * entry, and the general Writer's parts, BigInts and two copies were a measurable share of the
 * ready loop (docs/performance.md, round 3). Same bytes as frame(term, index, type, data).
 */
export function encodeEntry(e: Entry): Uint8Array {
  const payloadBytes = ENTRY_HEAD_BYTES + e.data.byteLength;
  const out = new Uint8Array(HEADER_BYTES + payloadBytes);
  const view = new DataView(out.buffer);
  putU64(view, HEADER_BYTES, e.term);
  putU64(view, HEADER_BYTES + 8, e.index);
  out[HEADER_BYTES + 16] = e.type;
  out.set(e.data, HEADER_BYTES + ENTRY_HEAD_BYTES);
  out[0] = RECORD_VERSION;
  view.setUint32(1, crc32c(out.subarray(HEADER_BYTES)));
  view.setUint32(5, payloadBytes);
  return out;
}

/** A u64 big-endian from a JS safe integer, without a BigInt. */
function putU64(view: DataView, offset: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`WAL field ${v} is not a non-negative safe integer`);
  view.setUint32(offset, Math.floor(v / 0x1_0000_0000));
  view.setUint32(offset + 4, v >>> 0);
}

export function decodeEntry(record: Uint8Array): Entry {
  const r = new Reader(unframe(record));
  const term = r.u64();
  const index = r.u64();
  const type = r.u8();
  if (type !== 0 && type !== 1) throw new RecordError(`unknown entry type ${type}`);
  return { term, index, type, data: r.rest() };
}

export function encodeHardState(hs: HardState): Uint8Array {
  return frame(new Writer().u64(hs.term).u64(hs.vote).u64(hs.commit).done());
}

export function decodeHardState(record: Uint8Array): HardState {
  const r = new Reader(unframe(record));
  const hs = { term: r.u64(), vote: r.u64(), commit: r.u64() };
  r.end();
  return hs;
}

export function encodeTruncated(t: { index: number; term: number }): Uint8Array {
  return frame(new Writer().u64(t.index).u64(t.term).done());
}

export function decodeTruncated(record: Uint8Array): { index: number; term: number } {
  const r = new Reader(unframe(record));
  const t = { index: r.u64(), term: r.u64() };
  r.end();
  return t;
}

export function encodeSnapshot(s: Snapshot): Uint8Array {
  const w = new Writer().u64(s.metadata.index).u64(s.metadata.term);
  w.u32(s.metadata.confState.voters.length);
  for (const v of s.metadata.confState.voters) w.u64(v);
  w.u32(s.metadata.confState.learners.length);
  for (const l of s.metadata.confState.learners) w.u64(l);
  return frame(w.push(s.data).done());
}

export function decodeSnapshot(record: Uint8Array): Snapshot {
  const r = new Reader(unframe(record));
  const index = r.u64();
  const term = r.u64();
  const voters: number[] = [];
  const nVoters = r.u32();
  if (nVoters > 1024) throw new RecordError(`implausible voter count ${nVoters}`);
  for (let i = 0; i < nVoters; i++) voters.push(r.u64());
  const learners: number[] = [];
  const nLearners = r.u32();
  if (nLearners > 1024) throw new RecordError(`implausible learner count ${nLearners}`);
  for (let i = 0; i < nLearners; i++) learners.push(r.u64());
  return { metadata: { index, term, confState: { voters, learners } }, data: r.rest() };
}

export function encodeMeta(meta: Uint8Array): Uint8Array {
  return frame(meta);
}

export function decodeMeta(record: Uint8Array): Uint8Array {
  return unframe(record).slice();
}
