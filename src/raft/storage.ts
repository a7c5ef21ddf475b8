// The storage the raft core reads from. Reads are synchronous: implementations keep the
// unflushed log in memory (regiondb truncates the WAL at every flush, so that log is bounded
// by the memtable size; see docs/architecture.md §4) and persist writes durably.
//
// Index conventions (as etcd-io/raft): storage holds a "dummy" position at firstIndex-1 whose
// term is known (the snapshot's index/term), then entries [firstIndex, lastIndex].
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { ConfChangeType, encodeConfChange } from './confchange.js';
import {
  type ConfState,
  EMPTY_HARD_STATE,
  EMPTY_SNAPSHOT,
  type Entry,
  EntryType,
  type HardState,
  type Snapshot,
  entrySizeBytes,
} from './types.js';

export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

/** Read side used by the core. */
export interface RaftStorage {
  initialState(): InitialState;
  /** Entries in [lo, hi), at least one if any exist, bounded by maxSizeBytes. */
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[];
  /** Term of entry i, for i in [firstIndex-1, lastIndex]. */
  term(index: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

/** Write side used by hosts (datanode ready loop, simulator). Every method is durable on return. */
export interface RaftLogStore extends RaftStorage {
  /** Appends entries, truncating any conflicting suffix first. Entries must be contiguous. */
  append(entries: readonly Entry[]): void | Promise<void>;
  setHardState(hardState: HardState): void | Promise<void>;
  /** Replaces the whole log with the snapshot (§7): firstIndex becomes snapshot.index + 1. */
  applySnapshot(snapshot: Snapshot): void | Promise<void>;
  /** Records a snapshot at `index` (≤ applied) that future followers can be sent. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot | Promise<Snapshot>;
  /** Discards entries ≤ compactIndex. The caller guarantees they are durable elsewhere. */
  compact(compactIndex: number): void | Promise<void>;
}

export function compactedError(index: number, firstIndex: number): RegionDbError {
  return new RegionDbError(
    ErrorCode.StorageCompacted,
    `raft log index ${index} is compacted (first index ${firstIndex})`,
  );
}

export function unavailableError(index: number, lastIndex: number): RegionDbError {
  return new RegionDbError(
    ErrorCode.StorageUnavailable,
    `raft log index ${index} is beyond the last index ${lastIndex}`,
  );
}

/** Takes a prefix of entries whose total size fits maxSizeBytes, always at least one entry. */
export function limitSize(entries: Entry[], maxSizeBytes: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entrySizeBytes(entries[0]!);
  let count = 1;
  while (count < entries.length) {
    size += entrySizeBytes(entries[count]!);
    if (size > maxSizeBytes) break;
    count++;
  }
  return count === entries.length ? entries : entries.slice(0, count);
}

/**
 * The first log entries of a new region (etcd-style bootstrap): one AddVoter conf change per
 * initial voter at term 1, committed. The configuration thus lives in the log, so a replica
 * added later that replays the log from index 1 reconstructs exactly the same membership.
 */
export function bootstrapEntries(voters: readonly number[]): { entries: Entry[]; hardState: HardState } {
  assert(voters.length > 0, 'bootstrap needs at least one voter');
  const entries = voters.map((nodeId, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: ConfChangeType.AddVoter, nodeId, context: '' }),
  }));
  return { entries, hardState: { term: 1, vote: 0, commit: voters.length } };
}

function dummyEntry(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: new Uint8Array(0) };
}

/**
 * In-memory storage: the reference implementation for tests, the simulator and the
 * conformance suite. `entries[0]` is the dummy position (index = snapshot index).
 */
export class MemoryStorage implements RaftLogStore {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot = EMPTY_SNAPSHOT;
  /** entries[0] is a dummy carrying the snapshot index/term. */
  private log: Entry[] = [dummyEntry(0, 0)];

  constructor(confState?: ConfState) {
    if (confState) {
      this.snap = { metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) };
    }
  }

  /**
   * Rebuilds storage from persisted parts (used by durable implementations as their read
   * cache): the snapshot, the compaction point (index/term of the entry before firstIndex),
   * the entries after it, and the hard state.
   */
  static restore(parts: {
    snapshot: Snapshot;
    truncated: { index: number; term: number };
    entries: readonly Entry[];
    hardState: HardState;
  }): MemoryStorage {
    const storage = new MemoryStorage();
    assert(parts.truncated.index >= parts.snapshot.metadata.index, 'compaction point before the snapshot');
    storage.snap = parts.snapshot;
    storage.log = [dummyEntry(parts.truncated.index, parts.truncated.term), ...parts.entries];
    for (let i = 1; i < storage.log.length; i++) {
      assert(storage.log[i]!.index === parts.truncated.index + i, 'restored entries are not contiguous');
    }
    storage.hardState = parts.hardState;
    return storage;
  }

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  /** An independent copy (entries are never changed in place, so they are shared): a disk copy in the simulator. */
  clone(): MemoryStorage {
    const copy = new MemoryStorage();
    copy.hardState = this.hardState;
    copy.snap = this.snap;
    copy.log = [...this.log];
    return copy;
  }

  private get offset(): number {
    return this.log[0]!.index;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.log.length - 1;
  }

  term(index: number): number {
    const offset = this.offset;
    if (index < offset) throw compactedError(index, offset + 1);
    if (index - offset >= this.log.length) throw unavailableError(index, this.lastIndex());
    return this.log[index - offset]!.term;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const offset = this.offset;
    if (lo <= offset) throw compactedError(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw unavailableError(hi - 1, this.lastIndex());
    assert(lo <= hi, () => `entries: lo ${lo} > hi ${hi}`);
    return limitSize(this.log.slice(lo - offset, hi - offset), maxSizeBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // everything is already compacted
    for (let i = 1; i < entries.length; i++) {
      assert(entries[i]!.index === entries[i - 1]!.index + 1, 'append: entries not contiguous');
    }
    // Drop the part that is already compacted.
    const toAppend = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const start = toAppend[0]!.index - this.offset;
    assert(start <= this.log.length, () => `append: gap: last ${this.lastIndex()}, appending ${toAppend[0]!.index}`);
    // In place: appends are the hot path and the log can hold many entries.
    this.log.length = start;
    for (const entry of toAppend) this.log.push(entry);
  }

  applySnapshot(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    if (index <= this.snap.metadata.index) {
      throw new RegionDbError(ErrorCode.StorageCompacted, `snapshot ${index} is older than ${this.snap.metadata.index}`);
    }
    this.snap = snapshot;
    this.log = [dummyEntry(index, snapshot.metadata.term)];
  }

  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) {
      throw new RegionDbError(ErrorCode.StorageCompacted, `snapshot ${index} is older than ${this.snap.metadata.index}`);
    }
    assert(index <= this.lastIndex(), `createSnapshot: ${index} > last index ${this.lastIndex()}`);
    this.snap = { metadata: { index, term: this.term(index), confState }, data };
    return this.snap;
  }

  compact(compactIndex: number): void {
    const offset = this.offset;
    if (compactIndex <= offset) return;
    assert(compactIndex <= this.lastIndex(), `compact: ${compactIndex} > last index ${this.lastIndex()}`);
    const dummy = this.log[compactIndex - offset]!;
    this.log = [dummyEntry(dummy.index, dummy.term), ...this.log.slice(compactIndex - offset + 1)];
  }
}
