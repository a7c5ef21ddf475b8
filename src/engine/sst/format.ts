// The SST file format: an immutable, sorted table of (key, version, value | tombstone) entries
// that a memtable is flushed to and that lives in the object store. It is designed so a reader
// fetches only what it needs over ranged reads: open() reads the tail (footer, block index,
// properties), get() reads at most one data block, scan() reads only blocks overlapping its range.
// Every section carries a CRC32C and every failed check throws CORRUPTION naming the SST and the
// part that failed, so an operator knows which object is bad.
//
// Layout (all integers big-endian; varints are unsigned LEB128 up to 2^53):
//   data block*   entries, then u32 CRC32C of the entries. Entry: varint shared-prefix length
//                 (with the previous key in the block; 0 for the first), varint suffix length,
//                 suffix bytes, varint version, varint value tag (0 = tombstone, n + 1 = n bytes
//                 of value follow), value bytes.
//   block index   varint block count, then per block: varint offset, varint length (without
//                 CRC), varint first-key length, first key, varint last-key length, last key;
//                 then u32 CRC32C.
//   properties    UTF-8 JSON (keys as hex), then u32 CRC32C.
//   footer        48 bytes: u64 index offset, u64 index length, u64 properties offset,
//                 u64 properties length (lengths exclude the CRC), u32 format version,
//                 u32 CRC32C of the preceding 36 footer bytes, 8-byte magic "RGNSST01".
import { crc32c } from '../../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../../common/errors.js';
import type { ObjectStore } from '../../object-store/object-store.js';
import { compareBytes, timestampOfKey } from '../key.js';

export const SST_MAGIC = 'RGNSST01';
export const SST_FORMAT_VERSION = 1;
export const SST_FOOTER_BYTES = 48;
export const SST_BLOCK_TARGET_BYTES = 16 * 1024;
const CRC_BYTES = 4;
const MAGIC_BYTES = new TextEncoder().encode(SST_MAGIC);
/** open() reads this much of the file's tail at once, hoping index and properties fit. */
const OPEN_TAIL_BYTES = 64 * 1024;
/** Keys end with an 8-byte timestamp (src/engine/key.ts). */
const MIN_KEY_BYTES = 8;

export interface SstEntry {
  key: Uint8Array;
  /** Raft index of the write that produced this version. */
  version: number;
  /** null = tombstone (a delete that shadows older data). */
  value: Uint8Array | null;
}

/**
 * An entry whose key is given as its byte string (one char per byte, key.ts keyStringOfBytes),
 * as a memtable holds it: SstBuilder.addKeyString writes it without making the key's bytes.
 */
export interface SstKeyStringEntry {
  readonly key?: undefined;
  readonly keyString: string;
  readonly version: number;
  readonly value: Uint8Array | null;
}

export interface SstProperties {
  formatVersion: number;
  entryCount: number;
  tombstoneCount: number;
  blockCount: number;
  /** Bytes of the data-block section, CRCs included. */
  dataBytes: number;
  minKey: Uint8Array;
  maxKey: Uint8Array;
  minTimestamp: number;
  maxTimestamp: number;
  minVersion: number;
  maxVersion: number;
}

export interface SstBlockHandle {
  firstKey: Uint8Array;
  lastKey: Uint8Array;
  offset: number;
  /** Payload length; the 4-byte CRC32C follows. */
  length: number;
}

/** Random-access bytes of one SST: a file, an object-store object, or an in-memory array. */
export interface SstSource {
  /** Names the SST in error messages (e.g. object key). */
  name: string;
  size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface BuildSstOptions {
  /** A block is closed once its payload reaches this many bytes (default 16 KiB). */
  blockTargetBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers

class ByteWriter {
  private buf: Uint8Array;
  length = 0;

  constructor(initial = 64 * 1024) {
    this.buf = new Uint8Array(initial);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.byteLength) return;
    let cap = this.buf.byteLength * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.byteLength);
    this.buf.set(b, this.length);
    this.length += b.byteLength;
  }

  /** src[from, to): short runs copied by a loop (cheaper than a subarray and a native set). */
  bytesOf(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    this.reserve(n);
    if (n > 64) {
      this.buf.set(src.subarray(from, to), this.length);
    } else {
      const buf = this.buf;
      let at = this.length;
      for (let i = from; i < to; i++) buf[at++] = src[i]!;
    }
    this.length += n;
  }

  varint(v: number): void {
    this.reserve(8);
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.reserve(4);
    new DataView(this.buf.buffer, this.buf.byteOffset).setUint32(this.length, v >>> 0);
    this.length += 4;
  }

  u64(v: number): void {
    this.reserve(8);
    new DataView(this.buf.buffer, this.buf.byteOffset).setBigUint64(this.length, BigInt(v));
    this.length += 8;
  }

  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  reset(): void {
    this.length = 0;
  }

  /** A compact copy of the written bytes. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Thrown by ByteReader; callers rethrow as CORRUPTION with the SST name and section. */
class Malformed extends Error {}

class ByteReader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  get remaining(): number {
    return this.buf.byteLength - this.pos;
  }

  /** `what` must be a constant string: it is only used to build an error message. */
  varint(what: string): number {
    const buf = this.buf;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= buf.byteLength) throw new Malformed(`${what}: varint runs past the end at offset ${this.pos}`);
      const b = buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw new Malformed(`${what}: varint ${result} exceeds 2^53`);
        return result;
      }
      scale *= 0x80;
    }
    throw new Malformed(`${what}: varint longer than 8 bytes at offset ${this.pos}`);
  }

  /** Advances past n bytes, returning where they start. */
  skip(n: number, what: string): number {
    if (n > this.buf.byteLength - this.pos) throw new Malformed(`${what}: needs ${n} bytes at offset ${this.pos} but only ${this.remaining} remain`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  bytes(n: number, what: string): Uint8Array {
    const at = this.skip(n, what);
    return this.buf.subarray(at, at + n);
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function crcHex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

function u32At(b: Uint8Array, offset: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(offset);
}

function invalid(message: string): RegionDbError {
  return new RegionDbError(ErrorCode.InvalidArgument, `buildSst: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Writer

/**
 * Encodes entries (strictly ascending by key, each key ≥ 8 bytes ending in a timestamp) into
 * one SST. Throws INVALID_ARGUMENT for unsorted or duplicate keys, bad versions, or no entries.
 */
export function buildSst(entries: Iterable<SstEntry>, options: BuildSstOptions = {}): { bytes: Uint8Array; properties: SstProperties } {
  const builder = sstBuilder(options);
  for (const e of entries) builder.add(e);
  return builder.finish();
}

/**
 * Builds an SST one entry at a time: memory is the SST's bytes, not the entries. A writer that
 * streams the SST out (a flush or a merge uploading as it goes) takes the finished data blocks
 * with drain() whenever bufferedBytes grows large, and the rest with finishTail(); memory is
 * then one chunk, not the SST.
 */
export interface SstBuilder {
  /** Appends the next entry (same rules as buildSst); throws INVALID_ARGUMENT. */
  add(e: SstEntry): void;
  /**
   * add() for a key given as its byte string (one char per byte, key.ts keyStringOfBytes), as a
   * memtable holds it: the chars are written as they are, with no Uint8Array made per entry (a
   * flush's largest cost when its keys were made one by one). A char above 255 is
   * INVALID_ARGUMENT.
   */
  addKeyString(keyString: string, version: number, value: Uint8Array | null): void;
  /** Entries added so far. */
  readonly count: number;
  /** Bytes of finished blocks not yet drained. */
  readonly bufferedBytes: number;
  /** The finished blocks' bytes not drained yet (the SST's next bytes, in order); the builder forgets them. */
  drain(): Uint8Array;
  /** The whole SST; only when nothing was drained. */
  finish(): { bytes: Uint8Array; properties: SstProperties };
  /** The SST's last bytes (after everything drained) and its total size. */
  finishTail(): { tail: Uint8Array; size: number; properties: SstProperties };
}

export function sstBuilder(options: BuildSstOptions = {}): SstBuilder {
  const target = options.blockTargetBytes ?? SST_BLOCK_TARGET_BYTES;
  if (!Number.isSafeInteger(target) || target < 1) throw invalid(`blockTargetBytes must be a positive integer, got ${target}`);
  const out = new ByteWriter();
  const block = new ByteWriter(target + 1024);
  const index: SstBlockHandle[] = [];
  let blockFirst: Uint8Array | undefined;
  // The previous key, copied into a buffer reused for every entry (a caller may reuse its own):
  // add() compares and prefix-shares against it without an allocation per entry; copies of it
  // are made only for what outlives the entry (a block's last key, the SST's max key).
  let prevBuf = new Uint8Array(256);
  let prevLen = -1; // -1: no entry yet
  let n = 0;
  let tombstones = 0;
  // Timestamps are the keys' last 8 bytes, encoded so byte order is numeric order: keep the
  // smallest and largest such suffix and decode just those two at the end.
  const minTs = new Uint8Array(8);
  const maxTs = new Uint8Array(8);
  let minVersion = Number.POSITIVE_INFINITY;
  let maxVersion = Number.NEGATIVE_INFINITY;
  let minKey: Uint8Array | undefined;
  /** Bytes handed out by drain(): `out` holds the SST from this offset on. */
  let drained = 0;
  let finished = false;

  const prevKey = (): Uint8Array => prevBuf.slice(0, prevLen);

  const flush = (): void => {
    if (blockFirst === undefined || prevLen < 0) return;
    const payload = block.view();
    index.push({ firstKey: blockFirst, lastKey: prevKey(), offset: drained + out.length, length: payload.byteLength });
    out.bytes(payload);
    out.u32(crc32c(payload));
    block.reset();
    blockFirst = undefined;
  };

  /** Negative, 0 or positive as the last 8 of a key's `keyLen` bytes compare with `suffix`. */
  const compareTs = (key: Uint8Array, keyLen: number, suffix: Uint8Array): number => {
    const at = keyLen - 8;
    for (let i = 0; i < 8; i++) {
      const d = key[at + i]! - suffix[i]!;
      if (d !== 0) return d;
    }
    return 0;
  };

  /** prevBuf holds at least `n` bytes, its first `keep` kept. */
  const ensurePrev = (n: number, keep: number): void => {
    if (n <= prevBuf.byteLength) return;
    const grown = new Uint8Array(Math.max(n, prevBuf.byteLength * 2));
    grown.set(prevBuf.subarray(0, keep));
    prevBuf = grown;
  };

  const notAscending = (key: Uint8Array): RegionDbError =>
    invalid(`keys must be strictly ascending: entry ${n} key ${hex(key)} is not greater than entry ${n - 1} key ${hex(prevKey())}`);

  /**
   * Makes prevBuf[0, keyLen) the entry's key, which add/addKeyString have checked to be after the
   * previous one, and writes the entry; `common` bytes of it were the previous key's already.
   */
  const put = (keyLen: number, common: number, version: number, value: Uint8Array | null): void => {
    let shared = common;
    if (blockFirst === undefined) {
      blockFirst = prevKey();
      shared = 0; // a block's first key is stored whole
    }
    block.varint(shared);
    block.varint(keyLen - shared);
    block.bytesOf(prevBuf, shared, keyLen);
    block.varint(version);
    if (value === null) {
      block.varint(0);
      tombstones++;
    } else {
      block.varint(value.byteLength + 1);
      block.bytesOf(value, 0, value.byteLength);
    }
    minKey ??= prevKey();
    if (n === 0 || compareTs(prevBuf, keyLen, minTs) < 0) for (let i = 0; i < 8; i++) minTs[i] = prevBuf[keyLen - 8 + i]!;
    if (n === 0 || compareTs(prevBuf, keyLen, maxTs) > 0) for (let i = 0; i < 8; i++) maxTs[i] = prevBuf[keyLen - 8 + i]!;
    n++;
    if (version < minVersion) minVersion = version;
    if (version > maxVersion) maxVersion = version;
    if (block.length >= target) flush();
  };

  const checkEntry = (keyLen: number, version: number, value: Uint8Array | null, what: string): void => {
    if (finished) throw invalid('add after finish');
    if (keyLen < MIN_KEY_BYTES) throw invalid(`entry ${n}: key must be ${what} of at least ${MIN_KEY_BYTES} bytes (it ends with the timestamp)`);
    if (!Number.isSafeInteger(version) || version < 0) throw invalid(`entry ${n}: version must be a non-negative safe integer, got ${version}`);
    if (value !== null && !(value instanceof Uint8Array)) throw invalid(`entry ${n}: value must be a Uint8Array or null`);
  };

  const add = (e: SstEntry): void => {
    const key = e.key;
    checkEntry(key instanceof Uint8Array ? key.byteLength : -1, e.version, e.value, 'a Uint8Array');
    const keyLen = key.byteLength;
    // One pass over the common prefix gives both the order check and the shared length.
    let common = 0;
    if (prevLen >= 0) {
      const max = Math.min(prevLen, keyLen);
      while (common < max && prevBuf[common] === key[common]) common++;
      const ascending = common < max ? key[common]! > prevBuf[common]! : keyLen > prevLen;
      if (!ascending) throw notAscending(key);
    }
    ensurePrev(keyLen, common);
    for (let i = common; i < keyLen; i++) prevBuf[i] = key[i]!;
    prevLen = keyLen;
    put(keyLen, common, e.version, e.value);
  };

  const addKeyString = (keyString: string, version: number, value: Uint8Array | null): void => {
    const keyLen = typeof keyString === 'string' ? keyString.length : -1;
    checkEntry(keyLen, version, value, 'a byte string');
    let common = 0;
    if (prevLen >= 0) {
      const max = Math.min(prevLen, keyLen);
      while (common < max && prevBuf[common] === keyString.charCodeAt(common)) common++;
      const ascending = common < max ? keyString.charCodeAt(common) > prevBuf[common]! : keyLen > prevLen;
      if (!ascending) throw notAscending(Uint8Array.from(keyString, (c) => c.charCodeAt(0) & 0xff));
    }
    for (let i = common; i < keyLen; i++) {
      const c = keyString.charCodeAt(i);
      if (c > 0xff) throw invalid(`entry ${n}: a key's byte string holds char code ${c} at ${i} (one char per byte: at most 255)`);
    }
    ensurePrev(keyLen, common);
    for (let i = common; i < keyLen; i++) prevBuf[i] = keyString.charCodeAt(i);
    prevLen = keyLen;
    put(keyLen, common, version, value);
  };

  const drain = (): Uint8Array => {
    if (finished) throw invalid('drain after finish');
    const bytes = out.finish();
    drained += bytes.byteLength;
    out.reset();
    return bytes;
  };

  const finishTail = (): { tail: Uint8Array; size: number; properties: SstProperties } => {
    if (finished) throw invalid('finish called twice');
    flush();
    if (n === 0 || minKey === undefined || prevLen < 0) {
      throw invalid('an SST needs at least one entry');
    }
    const minTimestamp = timestampOfKey(minTs);
    const maxTimestamp = timestampOfKey(maxTs);
    for (const [suffix, ts] of [
      [minTs, minTimestamp],
      [maxTs, maxTimestamp],
    ] as const) {
      if (!Number.isSafeInteger(ts)) throw invalid(`a key ending in ${hex(suffix)} has timestamp ${ts} outside ±2^53`);
    }
    finished = true;
    const maxKey = prevKey();
    const dataBytes = drained + out.length;

    const indexOffset = drained + out.length;
    const idx = new ByteWriter();
    idx.varint(index.length);
    for (const h of index) {
      idx.varint(h.offset);
      idx.varint(h.length);
      idx.varint(h.firstKey.byteLength);
      idx.bytes(h.firstKey);
      idx.varint(h.lastKey.byteLength);
      idx.bytes(h.lastKey);
    }
    out.bytes(idx.view());
    out.u32(crc32c(idx.view()));

    const properties: SstProperties = {
      formatVersion: SST_FORMAT_VERSION,
      entryCount: n,
      tombstoneCount: tombstones,
      blockCount: index.length,
      dataBytes,
      minKey,
      maxKey,
      minTimestamp,
      maxTimestamp,
      minVersion,
      maxVersion,
    };
    const propsOffset = drained + out.length;
    const props = new TextEncoder().encode(JSON.stringify({ ...properties, minKey: hex(minKey), maxKey: hex(maxKey) }));
    out.bytes(props);
    out.u32(crc32c(props));

    const footerStart = out.length;
    out.u64(indexOffset);
    out.u64(idx.length);
    out.u64(propsOffset);
    out.u64(props.byteLength);
    out.u32(SST_FORMAT_VERSION);
    out.u32(crc32c(out.view().subarray(footerStart, footerStart + 36)));
    out.bytes(MAGIC_BYTES);
    const tail = out.finish();
    return { tail, size: drained + tail.byteLength, properties };
  };

  const finish = (): { bytes: Uint8Array; properties: SstProperties } => {
    if (drained > 0) throw invalid('finish() after drain(): use finishTail()');
    const { tail, properties } = finishTail();
    return { bytes: tail, properties };
  };

  return {
    add,
    addKeyString,
    get count() {
      return n;
    },
    get bufferedBytes() {
      return out.length;
    },
    drain,
    finish,
    finishTail,
  };
}

// ---------------------------------------------------------------------------------------------
// Reader

function parseProperties(json: unknown): SstProperties {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Malformed('not a JSON object');
  const obj = json as Record<string, unknown>;
  const int = (name: string, min: number): number => {
    const v = obj[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new Malformed(`field ${name} is ${JSON.stringify(v)}, expected an integer ≥ ${min}`);
    return v;
  };
  const key = (name: string): Uint8Array => {
    const v = obj[name];
    if (typeof v !== 'string' || !/^(?:[0-9a-f]{2})+$/.test(v)) throw new Malformed(`field ${name} is not a hex key`);
    return new Uint8Array(Buffer.from(v, 'hex'));
  };
  return {
    formatVersion: int('formatVersion', 1),
    entryCount: int('entryCount', 1),
    tombstoneCount: int('tombstoneCount', 0),
    blockCount: int('blockCount', 1),
    dataBytes: int('dataBytes', 0),
    minKey: key('minKey'),
    maxKey: key('maxKey'),
    minTimestamp: int('minTimestamp', Number.MIN_SAFE_INTEGER),
    maxTimestamp: int('maxTimestamp', Number.MIN_SAFE_INTEGER),
    minVersion: int('minVersion', 0),
    maxVersion: int('maxVersion', 0),
  };
}

export class SstReader {
  readonly name: string;
  readonly size: number;
  readonly properties: SstProperties;
  readonly blocks: readonly SstBlockHandle[];
  private readonly source: SstSource;

  private constructor(source: SstSource, properties: SstProperties, blocks: SstBlockHandle[]) {
    this.source = source;
    this.name = source.name;
    this.size = source.size;
    this.properties = properties;
    this.blocks = blocks;
  }

  private static corrupt(name: string, what: string, cause?: unknown): RegionDbError {
    return new RegionDbError(ErrorCode.Corruption, `SST ${name}: ${what}`, cause === undefined ? undefined : { cause });
  }

  /** Reads and verifies footer, block index and properties (usually one read of the tail). */
  static async open(source: SstSource): Promise<SstReader> {
    const { name, size } = source;
    const corrupt = (what: string, cause?: unknown) => SstReader.corrupt(name, what, cause);
    if (!Number.isSafeInteger(size) || size < SST_FOOTER_BYTES) {
      throw corrupt(`file truncated: ${size} bytes is smaller than the ${SST_FOOTER_BYTES}-byte footer`);
    }
    const tailLen = Math.min(size, OPEN_TAIL_BYTES);
    const tailStart = size - tailLen;
    const tail = await source.read(tailStart, tailLen);
    if (tail.byteLength !== tailLen) throw corrupt(`short read of the tail: got ${tail.byteLength} of ${tailLen} bytes (file truncated?)`);
    const footer = tail.subarray(tailLen - SST_FOOTER_BYTES);
    const magic = footer.subarray(40);
    if (compareBytes(magic, MAGIC_BYTES) !== 0) {
      throw corrupt(`bad magic: expected "${SST_MAGIC}", got 0x${hex(magic)} (not an SST, or truncated)`);
    }
    const dv = new DataView(footer.buffer, footer.byteOffset, SST_FOOTER_BYTES);
    const version = dv.getUint32(32);
    if (version !== SST_FORMAT_VERSION) throw corrupt(`unsupported format version ${version} (this build reads ${SST_FORMAT_VERSION})`);
    const storedFooterCrc = dv.getUint32(36);
    const footerCrc = crc32c(footer.subarray(0, 36));
    if (storedFooterCrc !== footerCrc) throw corrupt(`footer CRC32C mismatch (expected ${crcHex(storedFooterCrc)}, got ${crcHex(footerCrc)})`);
    const big = (at: number): number => {
      const v = dv.getBigUint64(at);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    };
    const indexOffset = big(0);
    const indexLength = big(8);
    const propsOffset = big(16);
    const propsLength = big(24);
    const footerStart = size - SST_FOOTER_BYTES;
    const indexEnd = indexOffset + indexLength + CRC_BYTES;
    const propsEnd = propsOffset + propsLength + CRC_BYTES;
    if (indexEnd > footerStart) throw corrupt(`index truncated: it spans [${indexOffset}, ${indexEnd}) but the footer starts at ${footerStart}`);
    if (propsEnd > footerStart) throw corrupt(`properties truncated: they span [${propsOffset}, ${propsEnd}) but the footer starts at ${footerStart}`);
    if (propsOffset < indexEnd) throw corrupt(`properties at ${propsOffset} overlap the index ending at ${indexEnd}`);

    // Index and properties: from the tail if it covers them, else one more read.
    let meta: Uint8Array;
    if (indexOffset >= tailStart) {
      meta = tail.subarray(indexOffset - tailStart, propsEnd - tailStart);
    } else {
      meta = await source.read(indexOffset, propsEnd - indexOffset);
      if (meta.byteLength !== propsEnd - indexOffset) throw corrupt(`short read of index and properties: got ${meta.byteLength} of ${propsEnd - indexOffset} bytes`);
    }
    const indexBytes = meta.subarray(0, indexLength);
    const storedIndexCrc = u32At(meta, indexLength);
    const indexCrc = crc32c(indexBytes);
    if (storedIndexCrc !== indexCrc) throw corrupt(`index CRC32C mismatch (expected ${crcHex(storedIndexCrc)}, got ${crcHex(indexCrc)})`);
    const propsBytes = meta.subarray(propsOffset - indexOffset, propsOffset - indexOffset + propsLength);
    const storedPropsCrc = u32At(meta, propsOffset - indexOffset + propsLength);
    const propsCrc = crc32c(propsBytes);
    if (storedPropsCrc !== propsCrc) throw corrupt(`properties CRC32C mismatch (expected ${crcHex(storedPropsCrc)}, got ${crcHex(propsCrc)})`);

    let blocks: SstBlockHandle[];
    try {
      blocks = decodeIndex(indexBytes, indexOffset);
    } catch (err) {
      if (err instanceof Malformed) throw corrupt(`index malformed: ${err.message}`, err);
      throw err;
    }
    let properties: SstProperties;
    try {
      properties = parseProperties(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(propsBytes)));
    } catch (err) {
      throw corrupt(`properties malformed: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (properties.formatVersion !== version) throw corrupt(`properties say format version ${properties.formatVersion} but the footer says ${version}`);
    if (properties.blockCount !== blocks.length) throw corrupt(`properties say ${properties.blockCount} blocks but the index has ${blocks.length}`);
    if (compareBytes(properties.minKey, blocks[0]!.firstKey) !== 0 || compareBytes(properties.maxKey, blocks[blocks.length - 1]!.lastKey) !== 0) {
      throw corrupt('properties min/max key disagree with the index');
    }
    return new SstReader(source, properties, blocks);
  }

  /** Reads data block i and verifies its CRC; returns the payload. */
  private async readVerified(i: number): Promise<Uint8Array> {
    const h = this.blocks[i]!;
    const raw = await this.source.read(h.offset, h.length + CRC_BYTES);
    if (raw.byteLength !== h.length + CRC_BYTES) {
      throw SstReader.corrupt(this.name, `block ${i} (offset ${h.offset}): short read, got ${raw.byteLength} of ${h.length + CRC_BYTES} bytes`);
    }
    const payload = raw.subarray(0, h.length);
    const stored = u32At(raw, h.length);
    const actual = crc32c(payload);
    if (stored !== actual) {
      throw SstReader.corrupt(this.name, `block ${i} CRC32C mismatch (expected ${crcHex(stored)}, got ${crcHex(actual)}) at offset ${h.offset}, ${h.length} bytes`);
    }
    return payload;
  }

  private blockMalformed(i: number, err: unknown): unknown {
    if (!(err instanceof Malformed)) return err;
    const h = this.blocks[i]!;
    return SstReader.corrupt(this.name, `block ${i} (offset ${h.offset}, ${h.length} bytes) malformed: ${err.message}`, err);
  }

  /** Reads, verifies and decodes data block i. */
  private async readBlock(i: number): Promise<SstEntry[]> {
    const payload = await this.readVerified(i);
    let entries: SstEntry[];
    try {
      entries = decodeBlock(payload);
    } catch (err) {
      throw this.blockMalformed(i, err);
    }
    const h = this.blocks[i]!;
    if (
      entries.length === 0 ||
      compareBytes(entries[0]!.key, h.firstKey) !== 0 ||
      compareBytes(entries[entries.length - 1]!.key, h.lastKey) !== 0
    ) {
      throw SstReader.corrupt(this.name, `block ${i} (offset ${h.offset}) does not match its index entry (first/last key differ)`);
    }
    return entries;
  }

  /** Index of the first block whose last key ≥ key (blocks.length if none). */
  private seekBlock(key: Uint8Array): number {
    let lo = 0;
    let hi = this.blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareBytes(this.blocks[mid]!.lastKey, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The entry for key (possibly a tombstone), reading at most one data block. */
  async get(key: Uint8Array): Promise<SstEntry | undefined> {
    const i = this.seekBlock(key);
    if (i >= this.blocks.length || compareBytes(this.blocks[i]!.firstKey, key) > 0) return undefined;
    const payload = await this.readVerified(i);
    try {
      return searchBlock(payload, key);
    } catch (err) {
      throw this.blockMalformed(i, err);
    }
  }

  /**
   * Every entry, a decoded block at a time, in key order (one block read ahead): what a merge
   * reads, which walks a block's entries without an await per entry (scan's are per entry).
   */
  async *blocksInOrder(): AsyncGenerator<readonly SstEntry[]> {
    let current = this.readBlock(0);
    for (let i = 0; ; i++) {
      let next: Promise<SstEntry[]> | undefined;
      if (i + 1 < this.blocks.length) {
        next = this.readBlock(i + 1);
        // If the consumer stops early the read-ahead is abandoned; never let it reject unhandled.
        next.catch(() => undefined);
      }
      yield await current;
      if (next === undefined) return;
      current = next;
    }
  }

  /** Entries with start ≤ key < end in key order, reading only blocks that overlap the range (one block ahead). */
  async *scan(range: { start?: Uint8Array; end?: Uint8Array } = {}): AsyncGenerator<SstEntry> {
    const { start, end } = range;
    if (start !== undefined && end !== undefined && compareBytes(start, end) >= 0) return;
    const overlaps = (i: number): boolean => i < this.blocks.length && (end === undefined || compareBytes(this.blocks[i]!.firstKey, end) < 0);
    let i = start === undefined ? 0 : this.seekBlock(start);
    if (!overlaps(i)) return;
    let current = this.readBlock(i);
    while (true) {
      let next: Promise<SstEntry[]> | undefined;
      if (overlaps(i + 1)) {
        next = this.readBlock(i + 1);
        // If the consumer stops early the read-ahead is abandoned; never let it reject unhandled.
        next.catch(() => undefined);
      }
      const entries = await current;
      for (const e of entries) {
        if (start !== undefined && compareBytes(e.key, start) < 0) continue;
        if (end !== undefined && compareBytes(e.key, end) >= 0) return;
        yield e;
      }
      if (next === undefined) return;
      current = next;
      i++;
    }
  }
}

function decodeIndex(bytes: Uint8Array, dataEnd: number): SstBlockHandle[] {
  const r = new ByteReader(bytes);
  const count = r.varint('block count');
  if (count === 0) throw new Malformed('zero blocks');
  if (count > bytes.byteLength) throw new Malformed(`block count ${count} cannot fit in ${bytes.byteLength} bytes`);
  const blocks: SstBlockHandle[] = [];
  let expectedOffset = 0;
  for (let i = 0; i < count; i++) {
    let offset: number;
    let length: number;
    let firstKey: Uint8Array;
    let lastKey: Uint8Array;
    try {
      offset = r.varint('offset');
      length = r.varint('length');
      firstKey = r.bytes(r.varint('first key length'), 'first key').slice();
      lastKey = r.bytes(r.varint('last key length'), 'last key').slice();
    } catch (err) {
      if (err instanceof Malformed) throw new Malformed(`block ${i} ${err.message}`);
      throw err;
    }
    if (offset !== expectedOffset) throw new Malformed(`block ${i} starts at ${offset}, expected ${expectedOffset}`);
    expectedOffset = offset + length + CRC_BYTES;
    if (compareBytes(firstKey, lastKey) > 0) throw new Malformed(`block ${i} first key is after its last key`);
    if (i > 0 && compareBytes(blocks[i - 1]!.lastKey, firstKey) >= 0) throw new Malformed(`block ${i} overlaps block ${i - 1}`);
    blocks.push({ firstKey, lastKey, offset, length });
  }
  if (r.remaining !== 0) throw new Malformed(`${r.remaining} trailing bytes`);
  if (expectedOffset !== dataEnd) throw new Malformed(`data blocks end at ${expectedOffset} but the index starts at ${dataEnd}`);
  return blocks;
}

/**
 * A key buildSst accepts: at least 8 bytes, ending in a timestamp (sign bit flipped, key.ts)
 * that is a safe integer. On the bytes, without decoding: it runs for every entry read.
 */
function isWritableKey(key: Uint8Array): boolean {
  const n = key.byteLength;
  if (n < MIN_KEY_BYTES) return false;
  const top = key[n - 8]!;
  const next = key[n - 7]!;
  if (top === 0x80) return next < 0x20; // 0 ≤ ts < 2^53
  if (top !== 0x7f || next < 0xe0) return false; // |ts| ≥ 2^53
  if (next > 0xe0) return true;
  for (let i = n - 6; i < n; i++) if (key[i] !== 0) return true;
  return false; // exactly -2^53
}

function decodeBlock(payload: Uint8Array): SstEntry[] {
  const r = new ByteReader(payload);
  const entries: SstEntry[] = [];
  let prev: Uint8Array | undefined;
  try {
    while (r.remaining > 0) {
      const shared = r.varint('shared length');
      const prevLen = prev === undefined ? 0 : prev.byteLength;
      if (shared > prevLen) throw new Malformed(`shares ${shared} bytes with a ${prevLen}-byte previous key`);
      const suffixLen = r.varint('key length');
      const at = r.skip(suffixLen, 'key');
      const key = new Uint8Array(shared + suffixLen);
      for (let j = 0; j < shared; j++) key[j] = prev![j]!;
      for (let j = 0; j < suffixLen; j++) key[shared + j] = payload[at + j]!;
      if (prev !== undefined && compareBytes(prev, key) >= 0) throw new Malformed('key is not after the previous key');
      if (!isWritableKey(key)) throw new Malformed(`key ${hex(key)} is not one the writer accepts (at least ${MIN_KEY_BYTES} bytes, ending in a timestamp within ±(2^53 - 1))`);
      const version = r.varint('version');
      const tag = r.varint('value length');
      const value = tag === 0 ? null : r.bytes(tag - 1, 'value').slice();
      entries.push({ key, version, value });
      prev = key;
    }
  } catch (err) {
    if (err instanceof Malformed) throw new Malformed(`entry ${entries.length}: ${err.message}`);
    throw err;
  }
  return entries;
}

/**
 * Point lookup inside a verified block without materializing every entry: keys are rebuilt in
 * one scratch buffer and compared in place; only the match is copied out.
 */
function searchBlock(payload: Uint8Array, target: Uint8Array): SstEntry | undefined {
  const r = new ByteReader(payload);
  let key = new Uint8Array(Math.max(64, target.byteLength));
  let keyLen = 0;
  let n = 0;
  try {
    while (r.remaining > 0) {
      const shared = r.varint('shared length');
      if (shared > keyLen) throw new Malformed(`shares ${shared} bytes with a ${keyLen}-byte previous key`);
      const suffixLen = r.varint('key length');
      const at = r.skip(suffixLen, 'key');
      const len = shared + suffixLen;
      if (len > key.byteLength) {
        const grown = new Uint8Array(Math.max(len, key.byteLength * 2));
        grown.set(key.subarray(0, shared));
        key = grown;
      }
      for (let j = 0; j < suffixLen; j++) key[shared + j] = payload[at + j]!;
      keyLen = len;
      const version = r.varint('version');
      const tag = r.varint('value length');
      const valueAt = tag === 0 ? 0 : r.skip(tag - 1, 'value');
      // Compare key[0, keyLen) with target.
      const m = Math.min(keyLen, target.byteLength);
      let cmp = 0;
      for (let j = 0; j < m && cmp === 0; j++) cmp = key[j]! - target[j]!;
      if (cmp === 0) cmp = keyLen - target.byteLength;
      if (cmp === 0) return { key: key.slice(0, keyLen), version, value: tag === 0 ? null : payload.slice(valueAt, valueAt + tag - 1) };
      if (cmp > 0) return undefined;
      n++;
    }
  } catch (err) {
    if (err instanceof Malformed) throw new Malformed(`entry ${n}: ${err.message}`);
    throw err;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Sources

/** An SstSource over bytes in memory (tests, freshly built SSTs). */
export function sstSourceFromBytes(name: string, bytes: Uint8Array): SstSource {
  return {
    name,
    size: bytes.byteLength,
    read: async (offset, length) => {
      if (offset < 0 || length < 0 || offset + length > bytes.byteLength) {
        throw new RegionDbError(ErrorCode.InvalidArgument, `SST ${name}: read [${offset}, ${offset + length}) outside ${bytes.byteLength} bytes`);
      }
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** An SstSource over an object-store object (ranged reads); size is looked up if not given. */
export async function sstSourceFromObjectStore(store: ObjectStore, key: string, size?: number): Promise<SstSource> {
  let objectSize = size;
  if (objectSize === undefined) {
    const meta = await store.head(key);
    if (!meta) throw new RegionDbError(ErrorCode.NotFound, `${store.description}: SST object ${key} not found`);
    objectSize = meta.size;
  }
  return { name: `${key} (${store.description})`, size: objectSize, read: (offset, length) => store.getRange(key, offset, length) };
}
