// The memtable: the latest version of each key (a delete is a tombstone so it can shadow older
// data in SSTs), ordered only when someone asks for order. Keys are held as strings of one char
// per byte (keyStringOfBytes): `<` on such strings is byte order (every char is below 256) and
// runs as native code.
//
// put is a hash-map insert: O(1) expected, no ordered search, no allocation beyond the map's own
// growth and one slot in the pending list. The skip list it replaces spent 14–20% of a
// datanode's busy time in put under make bench-ingest — every level step a chain of dependent
// cache misses in a large heap — and allocated a node and a level array per insert on every
// replica (docs/performance.md, "Round 3 ingest, third pass: the memtable"). Order is made by
// scan, the only reader that needs it: keys new since the last scan are sorted (natively) and
// merged with the sorted keys into a new array. Apply never scans; a flush scans its frozen
// memtable once; a read scans the active one (one merge per scan after new keys).
//
// Invariants: `sorted` and `pending` are disjoint and together hold exactly the map's keys;
// `sorted` is never changed in place (a scan in flight walks the array it started on); entries
// of a key only move forward in version.
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
 * An entry whose key is held as its byte string `k` (keyStringOfBytes): `key` makes the bytes on
 * first use and keeps them; the memtable orders and a flush writes (SstBuilder.addKeyString) `k`
 * itself. KeyedEntry and RowEntry are the two kinds.
 */
export abstract class StringKeyedEntry {
  private bytes: Uint8Array | undefined = undefined;

  constructor(readonly k: string) {}

  get key(): Uint8Array {
    if (this.bytes === undefined) this.bytes = keyBytesOfString(this.k);
    return this.bytes;
  }
}

/** A memtable entry keyed by its byte string (StringKeyedEntry). (RegionState's apply inserts RowEntry, below.) */
export class KeyedEntry extends StringKeyedEntry implements MemEntry {
  constructor(
    k: string,
    readonly timestampMs: number,
    readonly version: number,
    readonly op: 'put' | 'delete',
    readonly tags: readonly Value[],
    readonly fields: readonly Value[],
  ) {
    super(k);
  }
}

/** Where a row's tags and fields are among its values (schema order): what RowEntry picks them by. */
export interface RowLayout {
  readonly tagIndex: readonly number[];
  readonly fieldIndex: readonly number[];
}

/**
 * A put applied from a write command's row, keyed like a KeyedEntry: it keeps the row's values
 * as the command decoded them (schema order) and picks its tags and fields out when they are
 * read (a flush, a read), where apply used to copy them into two new arrays per row on every
 * replica. The same entry to every reader as
 * `new KeyedEntry(k, timestampMs, version, 'put', tags, fields)` with those arrays; its size
 * (entrySizeBytes) is theirs, counted without making them. Nothing may change `values` after.
 */
export class RowEntry extends StringKeyedEntry implements MemEntry {
  readonly op = 'put';

  constructor(
    k: string,
    readonly timestampMs: number,
    readonly version: number,
    /** The row's values, schema order (read them; never change them). */
    readonly values: readonly Value[],
    readonly layout: RowLayout,
  ) {
    super(k);
  }

  get tags(): readonly Value[] {
    return pick(this.values, this.layout.tagIndex);
  }

  get fields(): readonly Value[] {
    return pick(this.values, this.layout.fieldIndex);
  }

  /** What sizeWithKeyBytes adds for the tags and fields. */
  cellBytes(): number {
    return cellBytesAt(this.values, this.layout.tagIndex) + cellBytesAt(this.values, this.layout.fieldIndex);
  }
}

function pick(values: readonly Value[], at: readonly number[]): Value[] {
  const out: Value[] = new Array(at.length);
  for (let i = 0; i < at.length; i++) out[i] = values[at[i]!] ?? null;
  return out;
}

function cellBytesAt(values: readonly Value[], at: readonly number[]): number {
  let size = 0;
  for (let i = 0; i < at.length; i++) {
    const v = values[at[i]!];
    size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  }
  return size;
}

/** entry.key as a string of one char per byte (keyStringOfBytes), however the entry holds it. */
function keyStringOf(entry: MemEntry): string {
  return entry instanceof StringKeyedEntry ? entry.k : keyStringOfBytes(entry.key);
}

export function entrySizeBytes(e: MemEntry): number {
  return sizeWithKeyBytes(e, e.key.byteLength);
}

/** entrySizeBytes with the key's length given (a KeyedEntry's bytes are not made for it). */
function sizeWithKeyBytes(e: MemEntry, keyBytes: number): number {
  if (e instanceof RowEntry) return keyBytes + 64 + e.cellBytes();
  let size = keyBytes + 64;
  for (const v of e.fields) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  for (const v of e.tags) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  return size;
}

/** The first index of `keys` (sorted) whose key is ≥ k. */
function lowerBound(keys: readonly string[], k: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `a` and `b`, each sorted and disjoint, as one new sorted array (neither is changed). */
function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i]! < b[j]!) out.push(a[i++]!);
    else out.push(b[j++]!);
  }
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

export class Memtable {
  /** The latest entry of every key, by key string: what put and get touch. */
  private readonly entries = new Map<string, MemEntry>();
  /**
   * The keys ordered so far, sorted. Replaced by a new array when pending keys are merged in,
   * never changed in place: a scan in flight keeps walking the array it started on.
   */
  private sorted: readonly string[] = [];
  /** Keys first put since the last ordering, unsorted; disjoint from `sorted`. */
  private pending: string[] = [];
  sizeBytes = 0;

  get count(): number {
    return this.entries.size;
  }

  /** Inserts or replaces the entry for entry.key. */
  put(entry: MemEntry): void {
    const k = keyStringOf(entry);
    const previous = this.entries.get(k);
    if (previous !== undefined) {
      assert(entry.version >= previous.version, 'memtable versions only move forward');
      this.entries.set(k, entry);
      this.sizeBytes += sizeWithKeyBytes(entry, k.length) - sizeWithKeyBytes(previous, k.length);
      return;
    }
    this.entries.set(k, entry);
    this.pending.push(k);
    this.sizeBytes += sizeWithKeyBytes(entry, k.length);
  }

  get(key: Uint8Array): MemEntry | undefined {
    return this.entries.get(keyStringOfBytes(key));
  }

  /**
   * Entries with startKey ≤ key < endKey, in key order, tombstones included.
   *
   * Under puts between its steps (RegionState.mergedCells reads the active memtable across
   * awaits while applies continue), a scan yields exactly the keys the memtable held when its
   * first entry was asked for, each once and in order; keys first put after that are not
   * yielded. Each key's entry is read when it is yielded, so a key replaced meanwhile yields its
   * newer version.
   */
  *scan(startKey?: Uint8Array, endKey?: Uint8Array): Generator<MemEntry> {
    const keys = this.ordered();
    const end = endKey ? keyStringOfBytes(endKey) : undefined;
    for (let i = startKey ? lowerBound(keys, keyStringOfBytes(startKey)) : 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (end !== undefined && k >= end) return;
      yield this.entries.get(k)!;
    }
  }

  /** Every key, sorted: the pending keys sorted and merged into a new array. */
  private ordered(): readonly string[] {
    if (this.pending.length === 0) return this.sorted;
    // No comparator: the default sort compares strings by UTF-16 code unit, which for these
    // strings (every char below 256) is byte order, and runs natively.
    const fresh = this.pending.sort();
    this.pending = [];
    this.sorted = this.sorted.length === 0 ? fresh : mergeSorted(this.sorted, fresh);
    assert(this.sorted.length === this.entries.size, 'memtable: every key is ordered once');
    return this.sorted;
  }
}
