// The memtable: a skip list ordered by encoded primary key, holding the latest version of each
// key (a delete is a tombstone so it can shadow older data in SSTs). Level choice uses a
// deterministic xorshift so replicas build identical structures (not required for
// correctness, but it keeps behaviour reproducible). Each node keeps its key also as a string of
// one char per byte: `<` on such strings is byte order (every char is below 256) and runs as
// native code, where compareBytes is a JS loop; puts cost 1.3 instead of 2.0 µs (make
// bench-ingest's rows in a 25,000-entry memtable, docs/performance.md).
//
// Entries built by apply (KeyedEntry) carry their key only as that string and make the bytes
// when someone asks (a flush, a read): a Uint8Array per row on every replica, and the copy into
// a string per insert, were the largest share of apply's garbage (docs/performance.md, round 3
// ingest, second pass).
import { assert } from '../common/assert.js';
import { keyBytesOfString, keyStringOfBytes } from './key.js';
import type { Value } from './schema.js';

export interface MemEntry {
  readonly key: Uint8Array;
  readonly timestampMs: number;
  /** Raft index of the write that produced this version. */
  readonly version: number;
  readonly op: 'put' | 'delete';
  readonly tags: readonly Value[];
  readonly fields: readonly Value[];
}

/**
 * A memtable entry whose key is held as its byte string `k` (keyStringOfBytes); `key` makes the
 * bytes on first use and keeps them. What RegionState's apply inserts.
 */
export class KeyedEntry implements MemEntry {
  private bytes: Uint8Array | undefined = undefined;

  constructor(
    readonly k: string,
    readonly timestampMs: number,
    readonly version: number,
    readonly op: 'put' | 'delete',
    readonly tags: readonly Value[],
    readonly fields: readonly Value[],
  ) {}

  get key(): Uint8Array {
    if (this.bytes === undefined) this.bytes = keyBytesOfString(this.k);
    return this.bytes;
  }
}

const MAX_LEVEL = 24;

interface SkipNode {
  entry: MemEntry | null;
  /** entry.key as a string of one char per byte: JS string order is then byte order, compared natively. */
  k: string;
  next: (SkipNode | null)[];
}

/** One char per byte (0–255), so that `<` on two of these orders them as compareBytes orders the bytes. */
const byteString = keyStringOfBytes;

export function entrySizeBytes(e: MemEntry): number {
  return sizeWithKeyBytes(e, e.key.byteLength);
}

/** entrySizeBytes with the key's length given (a KeyedEntry's bytes are not made for it). */
function sizeWithKeyBytes(e: MemEntry, keyBytes: number): number {
  let size = keyBytes + 64;
  for (const v of e.fields) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  for (const v of e.tags) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  return size;
}

export class Memtable {
  private readonly head: SkipNode = { entry: null, k: '', next: new Array(MAX_LEVEL).fill(null) };
  private level = 1;
  private seed = 0x9e3779b9;
  /** Scratch for put(); reused to avoid an allocation per insert. */
  private readonly update: SkipNode[] = new Array(MAX_LEVEL);
  count = 0;
  sizeBytes = 0;

  private randomLevel(): number {
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    let level = 1;
    let bits = this.seed;
    while (level < MAX_LEVEL && (bits & 3) === 0) {
      level++;
      bits >>>= 2;
    }
    return level;
  }

  /** Inserts or replaces the entry for entry.key. */
  put(entry: MemEntry): void {
    const update = this.update;
    const k = entry instanceof KeyedEntry ? entry.k : byteString(entry.key);
    let node = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      let next = node.next[i];
      while (next && next.k < k) {
        node = next;
        next = node.next[i];
      }
      update[i] = node;
    }
    const candidate = node.next[0];
    if (candidate && candidate.k === k) {
      assert(entry.version >= candidate.entry!.version, 'memtable versions only move forward');
      this.sizeBytes += sizeWithKeyBytes(entry, k.length) - sizeWithKeyBytes(candidate.entry!, k.length);
      candidate.entry = entry;
      return;
    }
    const level = this.randomLevel();
    if (level > this.level) {
      for (let i = this.level; i < level; i++) update[i] = this.head;
      this.level = level;
    }
    const fresh: SkipNode = { entry, k, next: new Array(level).fill(null) };
    for (let i = 0; i < level; i++) {
      fresh.next[i] = update[i]!.next[i]!;
      update[i]!.next[i] = fresh;
    }
    this.count++;
    this.sizeBytes += sizeWithKeyBytes(entry, k.length);
  }

  get(key: Uint8Array): MemEntry | undefined {
    const k = byteString(key);
    let node = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      let next = node.next[i];
      while (next && next.k < k) {
        node = next;
        next = node.next[i];
      }
    }
    const candidate = node.next[0];
    return candidate && candidate.k === k ? candidate.entry! : undefined;
  }

  /** Entries with startKey ≤ key < endKey, in key order. */
  *scan(startKey?: Uint8Array, endKey?: Uint8Array): Generator<MemEntry> {
    let node = this.head;
    if (startKey) {
      const start = byteString(startKey);
      for (let i = this.level - 1; i >= 0; i--) {
        let next = node.next[i];
        while (next && next.k < start) {
          node = next;
          next = node.next[i];
        }
      }
    }
    const end = endKey ? byteString(endKey) : undefined;
    let cur = node.next[0];
    while (cur) {
      if (end !== undefined && cur.k >= end) return;
      yield cur.entry!;
      cur = cur.next[0];
    }
  }
}
