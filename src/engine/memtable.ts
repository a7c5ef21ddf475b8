// The memtable: a skip list ordered by encoded primary key, holding the latest version of each
// key (a delete is a tombstone so it can shadow older data in SSTs). Level choice uses a
// deterministic xorshift so replicas build identical structures (not required for
// correctness, but it keeps behaviour reproducible).
import { assert } from '../common/assert.js';
import { compareBytes } from './key.js';
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

const MAX_LEVEL = 24;

interface SkipNode {
  entry: MemEntry | null;
  next: (SkipNode | null)[];
}

export function entrySizeBytes(e: MemEntry): number {
  let size = e.key.byteLength + 64;
  for (const v of e.fields) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  for (const v of e.tags) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  return size;
}

export class Memtable {
  private readonly head: SkipNode = { entry: null, next: new Array(MAX_LEVEL).fill(null) };
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
    let node = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      let next = node.next[i];
      while (next && compareBytes(next.entry!.key, entry.key) < 0) {
        node = next;
        next = node.next[i];
      }
      update[i] = node;
    }
    const candidate = node.next[0];
    if (candidate && compareBytes(candidate.entry!.key, entry.key) === 0) {
      assert(entry.version >= candidate.entry!.version, 'memtable versions only move forward');
      this.sizeBytes += entrySizeBytes(entry) - entrySizeBytes(candidate.entry!);
      candidate.entry = entry;
      return;
    }
    const level = this.randomLevel();
    if (level > this.level) {
      for (let i = this.level; i < level; i++) update[i] = this.head;
      this.level = level;
    }
    const fresh: SkipNode = { entry, next: new Array(level).fill(null) };
    for (let i = 0; i < level; i++) {
      fresh.next[i] = update[i]!.next[i]!;
      update[i]!.next[i] = fresh;
    }
    this.count++;
    this.sizeBytes += entrySizeBytes(entry);
  }

  get(key: Uint8Array): MemEntry | undefined {
    let node = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      let next = node.next[i];
      while (next && compareBytes(next.entry!.key, key) < 0) {
        node = next;
        next = node.next[i];
      }
    }
    const candidate = node.next[0];
    return candidate && compareBytes(candidate.entry!.key, key) === 0 ? candidate.entry! : undefined;
  }

  /** Entries with startKey ≤ key < endKey, in key order. */
  *scan(startKey?: Uint8Array, endKey?: Uint8Array): Generator<MemEntry> {
    let node = this.head;
    if (startKey) {
      for (let i = this.level - 1; i >= 0; i--) {
        let next = node.next[i];
        while (next && compareBytes(next.entry!.key, startKey) < 0) {
          node = next;
          next = node.next[i];
        }
      }
    }
    let cur = node.next[0];
    while (cur) {
      if (endKey && compareBytes(cur.entry!.key, endKey) >= 0) return;
      yield cur.entry!;
      cur = cur.next[0];
    }
  }
}
