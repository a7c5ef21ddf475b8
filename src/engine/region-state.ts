// The replicated state of one region (an LSM, docs/architecture.md §5): the active memtable, frozen
// memtables waiting to be flushed, the SSTs in the object store, and the client dedup table.
// apply() is deterministic: every replica applying the same commands at the same indexes ends
// in the same state — including the flush and compaction edits, which only switch which
// (identical) data lives where.
//
// Flush protocol (replicated, §5): the leader proposes `freeze` at index i → every replica moves
// its memtable aside (with the dedup table as of i); the leader uploads that memtable as an SST
// and proposes `flush-edit{i, sst}` → every replica adds the SST and drops the frozen memtable;
// flushedIndex = i. The raft log up to i may then be truncated: the raft snapshot at i is the
// manifest (SST list + dedup + raft position), not the data. A leader change mid-flush leaves
// the frozen memtable in place on every replica; the next leader flushes it again.
//
// Dedup (Raft thesis §6.3, docs/raft-rules.md R19): per client, the results of its recent request ids,
// each with a hash of the command it answered. A retry (same client, id and command) returns the
// recorded result without applying again; the same id with another command is refused
// (`request-id-reused`: two writes must never share one answer); request id 0 is not
// deduplicated at all. Requests may apply out of order (a client has several in flight). The
// table is part of the manifest and bounded, and what it forgets it refuses, never re-applies:
//   D1. per client, the lowest ids are evicted first; ids below `evictedBelow` are too old;
//   D2. the client applied least recently is dropped first, and the region's `horizon` rises to
//       the highest id that client used; a client with no record may only use ids above it
//       (its record, created again, starts at horizon + 1 — so a retry of a forgotten id is too
//       old however the client came back). The horizon is global, not per client, because a
//       forgotten client leaves nothing else behind; it works because the client library's ids
//       grow with time (client.ts), so a new client's ids are above it.
//   D3. a request may carry its client's session mark, `completedBelow` (the thesis's "lowest
//       sequence number without a response"): the client will never send an id below it again,
//       so applying it forgets that client's results below it and raises `evictedBelow` to it
//       (capped at the request's own id). With marks the table holds about what each client has
//       in flight instead of its last dedupRequestsPerClientMax answers. The mark is not part of
//       the request's identity: the hash is over the command without it (dedupIdentity).
// Both bounds, the horizon and the Map order are computed from the applied commands alone and
// carried in the manifest, so every replica — including one rebuilt from a snapshot — decides
// every retry identically.
import { hash as oneShotHash } from 'node:crypto';
import { assert } from '../common/assert.js';
import { type Clock, wallClock } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { type DedupLimits, limits } from '../common/limits.js';
import type { StateMachine } from '../raft/state-machine.js';
import { type Command, type ShippedEntry, type SstMeta, commandFormatVersion, decodeCommand, decodeCommandForApply, dedupIdentity, encodeCommandV1, isTableDroppedMarker, unstampCommand } from './command.js';
import { IdHeap } from './id-heap.js';
import { compareBytes, encodePrimaryKey, primaryKeyStringOfValues, valueEquals } from './key.js';
import { type RegionManifest, decodeManifest, encodeManifest } from './manifest.js';
import { type MemEntry, Memtable, RowEntry, type RowLayout, StringKeyedEntry } from './memtable.js';
import { type Row, type TableSchema, type Value, fieldColumns, tagColumns, timestampColumn } from './schema.js';
import { SST_VALUE_BINARY, decodeSstValue, encodeSstValue as encodeSstValueBinary, encodeSstValueOfRow } from './sst-value.js';
import type { SstEntry, SstKeyStringEntry, SstReader } from './sst/format.js';
import { StandbyState } from './standby-state.js';

export type ApplyResult =
  | { readonly status: 'ok'; readonly version: number; readonly rows: number }
  | { readonly status: 'condition-failed'; readonly currentVersion: number }
  /** The outcome of this request id is no longer known (D1, D2): it may or may not have applied. */
  | { readonly status: 'request-too-old'; readonly oldestKnown: number }
  /** This (client, request id) already answered a different command. */
  | { readonly status: 'request-id-reused' }
  /** The region's table was dropped (a drop fence applied at `fenceIndex`): not applied, and never will be here. */
  | { readonly status: 'table-dropped'; readonly tableId: number; readonly fenceIndex: number };

/** What a dedup entry remembers: the answer, and which command it answered. */
interface DedupEntry {
  readonly result: ApplyResult;
  /** commandHash of the command; undefined for entries from a v1 table (before hashes): trusted as before. */
  readonly commandHash: string | undefined;
}

interface DedupRecord {
  /** Recent request ids of this client and their results (at most dedupRequestsPerClientMax). */
  results: Map<number, DedupEntry>;
  /** The keys of `results`, lowest first out: which id D1 evicts next. */
  readonly ids: IdHeap;
  /** Request ids below this were evicted (D1), or precede the record (D2): their outcome is no longer known. */
  evictedBelow: number;
}

/** The dedup table's encoding in manifests: v1 = [[client, evictedBelow, [[id, result]]]]; v2 adds hashes and the horizon. */
const DEDUP_FORMAT_VERSION = 2;

/**
 * What a request id stands for: the command's bytes as proposed. encodeCommand is deterministic
 * and the service encodes a retry again from the same request, so a retry hashes the same on
 * every node; any other kind, row, key or condition does not. 64 bits of SHA-256: a different
 * command never passes for a retry by chance. (Hashing the bytes rather than re-serializing the
 * decoded command costs ~1 ms instead of ~17 ms for a 10,000-row write.)
 */
function commandHash(data: Uint8Array): string {
  return oneShotHash('sha256', data, 'hex').slice(0, 16); // one-shot: no Hash object per apply
}

/**
 * Whether `previousHash`, recorded for a version-1 entry (the JSON encoding, before the upgrade
 * to version 2), stands for this version-2 command: a client retrying across the upgrade sends
 * the same request, which the new leader encodes as version 2. Re-encoding it as version 1 gives
 * the old bytes exactly when it is the same command (encodeCommandV1 writes the old service's
 * field order); otherwise the answer stays request-id-reused. A function of the log alone, so
 * every replica decides alike; computed only on a hash mismatch.
 */
function isRetryAcrossFormats(previousHash: string, data: Uint8Array, cmd: Command): boolean {
  return commandFormatVersion(data) === 2 && commandHash(encodeCommandV1(cmd)) === previousHash;
}

export interface ScanOptions {
  /** Inclusive lower bound. */
  readonly startMs?: number;
  /** Exclusive upper bound. */
  readonly endMs?: number;
  readonly tagEquals?: Readonly<Record<string, Value>>;
  readonly limit?: number;
}

export interface VersionedRow {
  readonly row: Row;
  readonly version: number;
}

export interface FrozenMemtable {
  /** Raft index (and term) of the freeze command: the flush point. */
  readonly index: number;
  readonly term: number;
  readonly memtable: Memtable;
  /** Dedup table as of `index`. */
  readonly dedup: string;
  /** Membership as of `index` (the raft snapshot at the flush point carries it). */
  readonly membership: Membership;
  /** The standby record as of `index` (standby-state.ts), if the region is or was a standby. */
  readonly standby: string | undefined;
}

/** Opens SST readers (the datanode caches them and their blocks). */
export interface SstOpener {
  open(meta: SstMeta): Promise<SstReader>;
}

/** Raft position captured with the freeze (the region server supplies membership). */
export interface Membership {
  readonly voters: readonly number[];
  readonly learners: readonly number[];
}

/** A version as stored in memtables and SSTs: the row cells, or a tombstone. */
interface Cell {
  readonly key: Uint8Array;
  readonly version: number;
  readonly tags: readonly Value[];
  readonly timestampMs: number;
  readonly fields: readonly Value[] | null; // null = deleted
}

/** SST value of a put (sst-value.ts, version 2); a delete has none (a tombstone). */
export function encodeSstValue(e: MemEntry): Uint8Array | null {
  if (e instanceof RowEntry) return encodeSstValueOfRow(e.values, e.layout.tagIndex, e.timestampMs, e.layout.fieldIndex);
  return e.op === 'delete' ? null : encodeSstValueBinary(e.tags, e.timestampMs, e.fields);
}

export function memEntryToSst(e: MemEntry): SstEntry {
  return { key: e.key, version: e.version, value: encodeSstValue(e) };
}

/** memEntryToSst for a flush: an entry that holds its key as a byte string is written from it (SstBuilder.addKeyString). */
export function memEntryToSstInput(e: MemEntry): SstEntry | SstKeyStringEntry {
  return e instanceof StringKeyedEntry ? { keyString: e.k, version: e.version, value: encodeSstValue(e) } : memEntryToSst(e);
}

function cellFromMem(e: MemEntry): Cell {
  return { key: e.key, version: e.version, tags: e.tags, timestampMs: e.timestampMs, fields: e.op === 'delete' ? null : e.fields };
}

function cellFromSst(e: SstEntry, sst: string): Cell {
  if (e.value === null) return { key: e.key, version: e.version, tags: [], timestampMs: 0, fields: null };
  const { tags, timestampMs, fields } = decodeSstValue(e.value, sst, e.version);
  return { key: e.key, version: e.version, tags, timestampMs, fields: fields ?? null };
}

function memEntryFromCell(c: Cell): MemEntry {
  return { key: c.key, version: c.version, timestampMs: c.timestampMs, tags: c.tags, fields: c.fields ?? [], op: c.fields === null ? 'delete' : 'put' };
}

/**
 * An SST entry as a compaction writes it out: a tombstone or a version-2 value as stored (its
 * bytes are what encodeSstValue would write again for them); a version-1 (JSON) value decoded
 * and written as version 2, so a merge still upgrades old SSTs (and a version-1 value without
 * fields still becomes the tombstone it reads as).
 */
function sstEntryForMerge(e: SstEntry, sst: string): SstEntry {
  if (e.value === null || e.value[0] === SST_VALUE_BINARY) return e;
  return memEntryToSst(memEntryFromCell(cellFromSst(e, sst)));
}

/**
 * The memtable bytes of every region state attached to it: a datanode's node-wide backpressure
 * input, kept current as memtables change (RegionState.attachAccount) instead of summed over
 * every replica for each client write.
 */
export class MemtableAccount {
  bytes = 0;
}

export class RegionState implements StateMachine<ApplyResult> {
  memtable = new Memtable();
  /** Where this state's memtable bytes are counted (attachAccount), and how many it counted. */
  private account: MemtableAccount | undefined;
  private accounted = 0;
  /** Oldest first. */
  readonly frozen: FrozenMemtable[] = [];
  /** Newest first. */
  ssts: SstMeta[] = [];
  flushedIndex = 0;
  flushedTerm = 0;
  flushedMembership: Membership = { voters: [], learners: [] };
  private flushedDedup = EMPTY_DEDUP;
  private flushedStandby: string | undefined;
  /** Set once the region has received a standby stream (dual active-standby, docs/replication.md). */
  standby: StandbyState | undefined;
  /** Map order = least recently applied client first (D2). */
  private readonly dedup = new Map<string, DedupRecord>();
  /** D2: the highest request id of any client record evicted so far. */
  private dedupHorizon = 0;
  appliedIndex = 0;
  /** S7 on a primary: the index of the table-dropped marker applied here (0: none); not persisted (only read just before the replica is destroyed). */
  dropMarkerIndex = 0;
  /**
   * The drop fence (command.ts DropFenceCommand) applied here: its index and the table id it
   * names; undefined while the region is not fenced. Persisted in manifests (version 2) once
   * flushed past, and re-applied from the log otherwise: every replica refuses alike.
   */
  dropFence: { readonly index: number; readonly tableId: number } | undefined;
  /** Membership as of the current apply point; the region server keeps it current (onMembership). */
  private membership: Membership = { voters: [], learners: [] };
  private readonly tags;
  private readonly fields;
  private readonly ts;
  /** Positions of the tag columns, the field columns and the timestamp among all columns (a row's values). */
  private readonly tagIndex: readonly number[];
  private readonly fieldIndex: readonly number[];
  private readonly tsIndex: number;
  /** tagIndex and fieldIndex, as the memtable's RowEntry picks a row's cells by them. */
  private readonly rowLayout: RowLayout;

  constructor(
    readonly schema: TableSchema,
    readonly regionId: string = '',
    private readonly ssTables: SstOpener | undefined = undefined,
    /** The wall clock a manifest's writtenAtMs is read from (wallClock; a simulation injects its own). */
    private readonly wall: Clock = wallClock,
    /** The dedup table's bounds (`limits`; a simulation lowers them to make eviction happen). */
    private readonly dedupLimits: DedupLimits = limits,
  ) {
    assert(dedupLimits.dedupClientsMax >= 1 && dedupLimits.dedupRequestsPerClientMax >= 1, 'the dedup table must hold at least one client and one request');
    this.tags = tagColumns(schema);
    this.fields = fieldColumns(schema);
    this.ts = timestampColumn(schema);
    this.tagIndex = this.tags.map((c) => schema.columns.indexOf(c));
    this.fieldIndex = this.fields.map((c) => schema.columns.indexOf(c));
    this.tsIndex = schema.columns.indexOf(this.ts);
    this.rowLayout = { tagIndex: this.tagIndex, fieldIndex: this.fieldIndex };
  }

  /** Bytes held in memtables (active + frozen): what backpressure limits. */
  memtableBytes(): number {
    return this.memtable.sizeBytes + this.frozen.reduce((s, f) => s + f.memtable.sizeBytes, 0);
  }

  /**
   * Counts this state's memtable bytes in `account` from now on (what it holds already included),
   * until detachAccount(): the owner detaches a state that is no longer a live replica's (closed,
   * failed or replaced by a snapshot's), or the account would keep its bytes for ever.
   */
  attachAccount(account: MemtableAccount): void {
    assert(this.account === undefined, `region ${this.regionId}: state attached to a memtable account twice`);
    this.account = account;
    this.accounted = this.memtableBytes();
    account.bytes += this.accounted;
  }

  /** Takes this state's bytes out of its account (idempotent). */
  detachAccount(): void {
    if (!this.account) return;
    this.account.bytes -= this.accounted;
    this.account = undefined;
    this.accounted = 0;
  }

  /** After the memtables changed: the account follows (O(frozen memtables), not O(regions)). */
  private syncAccount(): void {
    if (!this.account) return;
    const now = this.memtableBytes();
    this.account.bytes += now - this.accounted;
    this.accounted = now;
  }

  apply(index: number, data: Uint8Array, term = 0): ApplyResult | Promise<ApplyResult> {
    assert(index > this.appliedIndex, () => `apply ${index} after ${this.appliedIndex}`);
    const appliedBefore = this.appliedIndex;
    this.appliedIndex = index;
    // S7 (standby-state.ts), on a primary: the last entry of a dropped table's region, for its standby; no rows.
    if (isTableDroppedMarker(data)) {
      this.dropMarkerIndex = index;
      return { status: 'ok', version: index, rows: 0 };
    }
    const cmd = decodeCommandForApply(data);
    if (cmd.kind === 'drop-fence') {
      this.dropFence ??= { index, tableId: cmd.tableId }; // a second fence (another leader's resend) changes nothing
      return { status: 'ok', version: index, rows: 0 };
    }
    if (cmd.kind === 'freeze' || cmd.kind === 'flush-edit' || cmd.kind === 'compaction-edit') return this.applySystem(index, term, cmd);
    if (cmd.kind.startsWith('standby-')) {
      // Entries applied before a failure stay applied (S1 moved past them); the region server
      // applies this index again and the release continues where it stopped.
      const undo = (err: unknown): never => {
        this.appliedIndex = appliedBefore;
        throw err;
      };
      let out: ApplyResult | Promise<ApplyResult>;
      try {
        out = this.applyStandby(index, cmd);
      } catch (err) {
        return undo(err);
      }
      return out instanceof Promise ? out.catch(undo) : out;
    }
    const result = this.applyClient(index + (this.standby?.versionOffset ?? 0), data, cmd);
    if (!(result instanceof Promise)) return result;
    return result.catch((err: unknown) => {
      // Nothing was applied (STORAGE_UNAVAILABLE): the region server applies this index again.
      this.appliedIndex = appliedBefore;
      throw err;
    });
  }

  /**
   * A client write or delete at `version` (the raft index, or a standby's primary index),
   * deduplicated; then its session mark, whatever the answer. The mark is capped at the request's
   * own id, so it cannot change how this request is decided; applied after the decision it reaches
   * the record a client's first request here creates too. Not applied when the apply fails
   * (nothing applied, STORAGE_UNAVAILABLE): the retried apply applies it.
   */
  private applyClient(version: number, data: Uint8Array, cmd: Command): ApplyResult | Promise<ApplyResult> {
    const result = this.decideClient(version, data, cmd);
    if ((cmd.kind !== 'write' && cmd.kind !== 'delete') || cmd.completedBelow === undefined || cmd.requestId === 0) return result;
    const { clientId, requestId, completedBelow } = cmd;
    if (!(result instanceof Promise)) {
      this.applySessionMark(clientId, requestId, completedBelow);
      return result;
    }
    return result.then((r) => {
      this.applySessionMark(clientId, requestId, completedBelow);
      return r;
    });
  }

  private decideClient(version: number, data: Uint8Array, cmd: Command): ApplyResult | Promise<ApplyResult> {
    if (cmd.kind !== 'write' && cmd.kind !== 'delete') throw new RegionDbError(ErrorCode.Corruption, `command ${cmd.kind} is not a client command`);
    const fence = this.dropFence;
    const refused: ApplyResult | undefined = fence ? { status: 'table-dropped', tableId: fence.tableId, fenceIndex: fence.index } : undefined;
    if (cmd.requestId === 0) return refused ?? this.execute(version, cmd); // not deduplicated: every copy applies
    // A retry is stamped again, and may carry a later session mark: neither is part of what it asks.
    const hashed = dedupIdentity(unstampCommand(data).inner);
    const hash = commandHash(hashed);
    const record = this.dedup.get(cmd.clientId);
    const previous = record?.results.get(cmd.requestId);
    if (previous) {
      // Same id, another command: a client bug (ids reused, or shared between instances);
      // answering with the first result would acknowledge a write that never applied.
      if (previous.commandHash !== undefined && previous.commandHash !== hash && !isRetryAcrossFormats(previous.commandHash, hashed, cmd)) {
        return { status: 'request-id-reused' };
      }
      return previous.result; // a retry: applied once already (docs/raft-rules.md R19)
    }
    const oldestKnown = record ? record.evictedBelow : this.dedupHorizon + 1;
    if (cmd.requestId < oldestKnown) {
      // Too old to know whether it was applied; applying again could undo a later write. Checked
      // before the fence: a fence refusal says "not applied", which for an id the region has
      // forgotten may be false (it may have applied before the fence), and the router would
      // send it again to a re-created table.
      return { status: 'request-too-old', oldestKnown };
    }
    // After the drop fence: a retry of a write applied before it was answered above (it did
    // apply); anything else is refused, not remembered (a refusal is not an outcome to dedup).
    if (refused) return refused;
    const done = (result: ApplyResult) => {
      this.remember(cmd.clientId, cmd.requestId, { result, commandHash: hash });
      return result;
    };
    const result = this.execute(version, cmd);
    if (!(result instanceof Promise)) return done(result);
    return result.then(done);
  }

  // ─── Standby (dual active-standby, docs/replication.md; invariants in standby-state.ts) ───

  /**
   * A standby command. Only a release or a promotion may wait (a shipped conditional write reading
   * SSTs): the others return at once, so that the region server applies them in its cycle instead
   * of sending them out as applies that wait for the object store.
   */
  private applyStandby(index: number, cmd: Command): ApplyResult | Promise<ApplyResult> {
    if (cmd.kind === 'standby-append') {
      this.standby ??= new StandbyState();
      const taken = this.standby.receive(cmd.fromIndex, cmd.entries, cmd.watermarkMs, cmd.sync === true, cmd.versionOffset ?? 0);
      return { status: 'ok', version: this.standby.receivedIndex, rows: taken };
    }
    if (cmd.kind === 'standby-epoch') {
      this.standby ??= new StandbyState();
      this.standby.follow(cmd.primaryEpoch); // S9
      return { status: 'ok', version: index, rows: 0 };
    }
    if (cmd.kind === 'standby-seed' || cmd.kind === 'standby-seed-epoch') {
      // S5: the primary's state as of its flushed index replaces whatever the region held (an
      // empty new region, a standby too far behind, or an old primary being re-seeded): its
      // SSTs, its dedup table (a later retry of a request applied before the seed must still be
      // recognised), nothing in memory. A frozen memtable's flush edit, if one comes, is ignored.
      this.standby ??= new StandbyState();
      if (!this.standby.seed(cmd.primaryIndex, cmd.seededThroughMs, cmd.versionOffset, cmd.kind === 'standby-seed-epoch' ? cmd.primaryEpoch : 0)) return { status: 'ok', version: index, rows: 0 };
      this.ssts = [...cmd.ssts];
      this.memtable = new Memtable();
      this.frozen.length = 0;
      this.syncAccount();
      this.loadDedup(cmd.dedup);
      return { status: 'ok', version: cmd.primaryIndex, rows: 0 };
    }
    if (cmd.kind === 'standby-freeze') {
      this.standby ??= new StandbyState(); // a region that has received nothing yet freezes too
      this.standby.freeze(); // S8
      return { status: 'ok', version: index, rows: 0 };
    }
    if (cmd.kind === 'standby-unfreeze') {
      this.standby?.unfreeze(); // S11: a region that never froze has nothing to clear
      return { status: 'ok', version: index, rows: 0 };
    }
    const standby = this.standby;
    if (standby?.mode !== 'standby') return { status: 'ok', version: index, rows: 0 }; // nothing received, or promoted already
    // S11: released past the cut since an unfreeze (an abort that reached it first): never cut there.
    if (cmd.kind === 'standby-promote-epoch' && !standby.cuttable(cmd.cutMs)) return { status: 'ok', version: index, rows: 0 };
    if (cmd.kind === 'standby-release') {
      if (standby.frozen) return { status: 'ok', version: standby.appliedPrimaryIndex, rows: 0 }; // S8: released no further
      return this.applyRelease(standby, cmd.upToMs);
    }
    assert(cmd.kind === 'standby-promote' || cmd.kind === 'standby-promote-epoch', `unexpected command ${cmd.kind}`);
    return this.applyPromote(index, standby, cmd);
  }

  private async applyRelease(standby: StandbyState, upToMs: number): Promise<ApplyResult> {
    const rows = await this.releaseUpTo(standby, upToMs);
    return { status: 'ok', version: standby.appliedPrimaryIndex, rows };
  }

  private async applyPromote(index: number, standby: StandbyState, cmd: Extract<Command, { kind: 'standby-promote' | 'standby-promote-epoch' }>): Promise<ApplyResult> {
    const rows = await this.releaseUpTo(standby, cmd.cutMs);
    standby.cutMs = cmd.cutMs;
    standby.droppedEntries = standby.pending.length;
    standby.droppedRows = standby.pending.reduce((n, e) => n + (e.data.byteLength === 0 || isTableDroppedMarker(e.data) ? 0 : rowsOf(decodeCommand(e.data))), 0);
    standby.pending.length = 0;
    if (!standby.dropDue()) {
      // S7: a cut before the drop keeps the table with its rows up to the cut.
      standby.droppedAtIndex = 0;
      standby.droppedAtMs = 0;
    }
    standby.mode = 'promoted';
    // Writes from now on must version above every primary version applied (last write wins by version).
    standby.versionOffset = Math.max(0, standby.appliedPrimaryIndex + standby.primaryVersionOffset - index);
    standby.promotedAtIndex = index;
    if (cmd.kind === 'standby-promote-epoch') standby.promotedEpoch = Math.max(standby.promotedEpoch, cmd.epoch); // S9
    return { status: 'ok', version: index, rows };
  }

  /** S3: applies the pending entries stamped at or before `upToMs`, in primary index order, at their primary versions. */
  private async releaseUpTo(standby: StandbyState, upToMs: number): Promise<number> {
    let rows = 0;
    for (const e of standby.releasable(upToMs)) rows += await this.applyShipped(e).then((r) => {
      standby.applied(e);
      return r;
    });
    standby.releasedMs = Math.max(standby.releasedMs, upToMs);
    return rows;
  }

  private async applyShipped(e: ShippedEntry): Promise<number> {
    if (e.data.byteLength === 0) return 0; // a primary entry that changes no rows (no-op, membership, flush), shipped to keep indexes contiguous
    if (isTableDroppedMarker(e.data)) return 0; // S7: the table goes as a whole (dropDue), not row by row
    const cmd = decodeCommand(e.data);
    const result = await this.applyClient(e.index + (this.standby?.primaryVersionOffset ?? 0), e.data, cmd); // S6
    return result.status === 'ok' ? result.rows : 0;
  }

  private applySystem(index: number, term: number, cmd: Command): ApplyResult {
    const ok: ApplyResult = { status: 'ok', version: index, rows: 0 };
    if (cmd.kind === 'freeze') {
      this.frozen.push({ index, term, memtable: this.memtable, dedup: this.encodeDedup(), membership: this.membership, standby: this.standby?.encode() });
      this.memtable = new Memtable();
    } else if (cmd.kind === 'flush-edit') {
      const oldest = this.frozen[0];
      // Flushes complete in freeze order; anything else is a duplicate of a finished flush.
      if (!oldest || oldest.index !== cmd.freezeIndex) return ok;
      this.frozen.shift();
      this.syncAccount();
      if (cmd.sst) this.ssts = [cmd.sst, ...this.ssts];
      this.flushedIndex = oldest.index;
      this.flushedTerm = oldest.term;
      this.flushedDedup = oldest.dedup;
      this.flushedMembership = oldest.membership;
      this.flushedStandby = oldest.standby;
    } else if (cmd.kind === 'compaction-edit') {
      // Valid only if the inputs are a contiguous run of the current SSTs, in order (newest
      // first); the output takes the run's place, so newer SSTs stay in front of it. Anything
      // else (a duplicate, or a run another edit already changed) is ignored, identically on
      // every replica.
      const n = cmd.inputs.length;
      const start = n === 0 ? -1 : this.ssts.findIndex((s) => s.key === cmd.inputs[0]);
      if (start < 0 || start + n > this.ssts.length || cmd.inputs.some((k, i) => this.ssts[start + i]!.key !== k)) return ok;
      this.ssts = [...this.ssts.slice(0, start), ...(cmd.output ? [cmd.output] : []), ...this.ssts.slice(start + n)];
    }
    return ok;
  }

  private execute(index: number, cmd: Command): ApplyResult | Promise<ApplyResult> {
    if (cmd.kind === 'write') {
      // Every row is checked before any is inserted: a damaged one leaves nothing applied.
      for (const values of cmd.rows) this.checkWidth(values);
      if (cmd.expectAbsent || cmd.expectVersion !== undefined) {
        assert(cmd.rows.length === 1, 'conditional writes carry exactly one row (checked by the service)');
        const key = encodePrimaryKey(this.schema, this.rowFromValues(cmd.rows[0]!));
        const check = (current: Cell | undefined): ApplyResult => {
          const currentVersion = current && current.fields !== null ? current.version : 0;
          if (cmd.expectAbsent && currentVersion !== 0) return { status: 'condition-failed', currentVersion };
          if (cmd.expectVersion !== undefined && cmd.expectVersion !== currentVersion) return { status: 'condition-failed', currentVersion };
          this.memtable.put(this.putEntryOf(cmd.rows[0]!, index));
          this.syncAccount();
          return { status: 'ok', version: index, rows: 1 };
        };
        const inMemory = this.getInMemory(key);
        if (inMemory || this.ssts.length === 0) return check(inMemory);
        return this.getFromSsts(key).then(check, (err: unknown) => {
          // Not a property of the command (another replica may read the SST fine): the replica
          // must stop applying rather than decide differently from the others.
          throw new RegionDbError(
            ErrorCode.StorageUnavailable,
            `region ${this.regionId}: cannot read SSTs to check the conditional write at index ${index}: ${(err as Error).message}`,
            { cause: err },
          );
        });
      }
      // A row whose key does not encode (a non-integer timestamp) throws half-way: the rows before
      // it stay, as they always did on every replica, and the account must follow them too.
      try {
        for (const values of cmd.rows) this.memtable.put(this.putEntryOf(values, index));
      } finally {
        this.syncAccount();
      }
      return { status: 'ok', version: index, rows: cmd.rows.length };
    }
    assert(cmd.kind === 'delete', () => `unexpected command ${cmd.kind}`);
    try {
      for (const values of cmd.keys) {
        const row: Row = {};
        this.tags.forEach((c, i) => {
          row[c.name] = values[i] ?? null;
        });
        row[this.ts.name] = values[this.tags.length] ?? null;
        this.memtable.put(this.entryOf(row, index, 'delete'));
      }
    } finally {
      this.syncAccount(); // as for a write: the tombstones before a key that does not encode stay
    }
    return { status: 'ok', version: index, rows: cmd.keys.length };
  }

  private checkWidth(values: readonly Value[]): void {
    if (values.length !== this.schema.columns.length) {
      throw new RegionDbError(ErrorCode.Corruption, `row has ${values.length} values, schema has ${this.schema.columns.length} columns`);
    }
  }

  private rowFromValues(values: readonly Value[]): Row {
    this.checkWidth(values);
    const row: Row = {};
    this.schema.columns.forEach((c, i) => {
      row[c.name] = values[i]!;
    });
    return row;
  }

  /**
   * The memtable entry of a written row given as its values in schema order (checkWidth passed):
   * the same entry as entryOf(rowFromValues(values), version, 'put'), without the Row object,
   * with the key kept as its byte string and the row's values kept as they are (RowEntry: its
   * tags and fields are picked out when read) — apply runs this for every row on every replica.
   */
  private putEntryOf(values: readonly Value[], version: number): MemEntry {
    return new RowEntry(primaryKeyStringOfValues(this.schema, values), values[this.tsIndex] as number, version, values, this.rowLayout);
  }

  private entryOf(row: Row, version: number, op: 'put' | 'delete'): MemEntry {
    return {
      key: encodePrimaryKey(this.schema, row),
      timestampMs: row[this.ts.name] as number,
      version,
      op,
      tags: this.tags.map((c) => row[c.name] ?? null),
      fields: op === 'put' ? this.fields.map((c) => row[c.name] ?? null) : [],
    };
  }

  // ─── Dedup ────────────────────────────────────────────────────────────────────────────────

  /**
   * D3: the client will never send an id below `completedBelow` again, so its results below it
   * are forgotten and such an id is from now on too old (refused, never applied). Capped at the
   * request's own id, which is never forgotten by its own mark. Applied once the request is
   * decided (applyClient), so that it reaches the record a first request creates; idempotent.
   * Nothing for a client without a record: a refused request does not create one (its ids below
   * the horizon are refused already).
   */
  private applySessionMark(clientId: string, requestId: number, completedBelow: number): void {
    const mark = Math.min(completedBelow, requestId);
    const record = this.dedup.get(clientId);
    if (!record || mark <= record.evictedBelow) return;
    while (record.ids.size > 0 && record.ids.peekMin()! < mark) record.results.delete(record.ids.popMin());
    record.evictedBelow = mark;
    assert(record.ids.size === record.results.size, 'the id heap holds exactly the recorded ids');
  }

  private remember(clientId: string, requestId: number, entry: DedupEntry): void {
    assert(requestId > 0, 'request id 0 is not deduplicated');
    let record = this.dedup.get(clientId);
    if (record) this.dedup.delete(clientId); // re-insert: Map order = least recently applied first
    else record = { results: new Map(), ids: new IdHeap(), evictedBelow: this.dedupHorizon + 1 }; // D2: forgotten ids stay refused
    assert(requestId >= record.evictedBelow, () => `request id ${requestId} below the known window ${record.evictedBelow}`);
    this.dedup.set(clientId, record);
    if (!record.results.has(requestId)) record.ids.push(requestId);
    record.results.set(requestId, entry);
    if (record.results.size > this.dedupLimits.dedupRequestsPerClientMax) {
      const lowest = record.ids.popMin();
      record.results.delete(lowest);
      record.evictedBelow = Math.max(record.evictedBelow, lowest + 1);
    }
    while (this.dedup.size > this.dedupLimits.dedupClientsMax) {
      const [oldest, evicted] = this.dedup.entries().next().value as [string, DedupRecord];
      this.dedup.delete(oldest);
      let highest = evicted.evictedBelow - 1;
      for (const id of evicted.results.keys()) highest = Math.max(highest, id);
      this.dedupHorizon = Math.max(this.dedupHorizon, highest);
    }
    assert(this.dedup.size <= this.dedupLimits.dedupClientsMax && record.results.size <= this.dedupLimits.dedupRequestsPerClientMax, 'dedup table over its bounds');
    assert(record.ids.size === record.results.size, 'the id heap holds exactly the recorded ids');
  }

  private encodeDedup(): string {
    return encodeDedupTable(this.dedupHorizon, this.dedup);
  }

  /** From a manifest (raft snapshot, object store): validated, a damaged table is CORRUPTION. */
  private loadDedup(text: string): void {
    const table = decodeDedupTable(text, `region ${this.regionId}`);
    this.dedup.clear();
    for (const [client, record] of table.clients) this.dedup.set(client, record);
    this.dedupHorizon = table.horizon;
  }

  // ─── Reads ────────────────────────────────────────────────────────────────────────────────

  private toRow(c: Cell): Row {
    const row: Row = {};
    this.tags.forEach((col, i) => {
      row[col.name] = c.tags[i] ?? null;
    });
    row[this.ts.name] = c.timestampMs;
    this.fields.forEach((col, i) => {
      row[col.name] = c.fields?.[i] ?? null;
    });
    return row;
  }

  private getInMemory(key: Uint8Array): Cell | undefined {
    const active = this.memtable.get(key);
    if (active) return cellFromMem(active);
    for (let i = this.frozen.length - 1; i >= 0; i--) {
      const e = this.frozen[i]!.memtable.get(key);
      if (e) return cellFromMem(e);
    }
    return undefined;
  }

  private async getFromSsts(key: Uint8Array): Promise<Cell | undefined> {
    for (const meta of this.ssts) {
      const reader = await this.opener().open(meta);
      const hit = await reader.get(key);
      if (hit) return cellFromSst(hit, meta.key);
    }
    return undefined;
  }

  private opener(): SstOpener {
    if (!this.ssTables) throw new RegionDbError(ErrorCode.Internal, `region ${this.regionId} has SSTs but no object store`);
    return this.ssTables;
  }

  async get(key: Row): Promise<VersionedRow | null> {
    const k = encodePrimaryKey(this.schema, key);
    const cell = this.getInMemory(k) ?? (this.ssts.length > 0 ? await this.getFromSsts(k) : undefined);
    if (!cell || cell.fields === null) return null;
    return { row: this.toRow(cell), version: cell.version };
  }

  /**
   * Every live row in key order, merging the memtables and the SSTs: for a key present in
   * several sources the highest version wins; tombstones hide older versions.
   */
  async *scan(options: ScanOptions = {}): AsyncGenerator<VersionedRow> {
    let emitted = 0;
    const filters = Object.entries(options.tagEquals ?? {}).map(([name, value]) => ({
      index: this.tags.findIndex((c) => c.name === name),
      value,
    }));
    for await (const cell of this.mergedCells()) {
      if (cell.fields === null) continue;
      if (options.startMs !== undefined && cell.timestampMs < options.startMs) continue;
      if (options.endMs !== undefined && cell.timestampMs >= options.endMs) continue;
      if (!filters.every((f) => valueEquals(cell.tags[f.index], f.value))) continue;
      yield { row: this.toRow(cell), version: cell.version };
      if (options.limit && ++emitted >= options.limit) return;
    }
  }

  /** All cells (tombstones included), one per key, newest version, in key order. */
  async *mergedCells(): AsyncGenerator<Cell> {
    const sources: AsyncIterator<Cell>[] = [toAsync(this.memtable.scan(), cellFromMem)];
    for (let i = this.frozen.length - 1; i >= 0; i--) sources.push(toAsync(this.frozen[i]!.memtable.scan(), cellFromMem));
    for (const meta of this.ssts) {
      const reader = await this.opener().open(meta);
      sources.push(mapAsync(reader.scan({}), (e) => cellFromSst(e, meta.key)));
    }
    yield* mergeNewest(sources);
  }

  /**
   * The newest entry of every key among `inputs` (SSTs, newest first; tombstones included), in
   * key order, as stored: what a compaction writes out. Values are passed on without being
   * decoded (sstEntryForMerge): the merge needs keys and versions only, and decoding every value
   * to cells and encoding it again was most of a compaction's CPU (docs/performance.md, session
   * 29). A damaged value (its block's CRC matched) is copied as it is and stays CORRUPTION for
   * every reader of the output, as it was for the input's. Each input is walked a decoded block
   * at a time (SstReader.blocksInOrder) and the merge steps through a block without an await,
   * handing on batches of at most `batchSize` entries: four async generators per entry (the
   * reader's scan, a map, the merge, the compaction's filter) were about half of a merge's CPU
   * (docs/performance.md, session 34). writeSst turns the event loop after each batch.
   */
  async *mergedSstBatches(inputs: readonly SstMeta[], batchSize: number): AsyncGenerator<SstEntry[]> {
    const cursors: BlockCursor[] = [];
    for (const meta of inputs) {
      const reader = await this.opener().open(meta);
      cursors.push(new BlockCursor(reader.blocksInOrder(), meta.key));
    }
    yield* mergeNewestInBatches(cursors, batchSize);
  }

  // ─── Snapshots and manifests ─────────────────────────────────────────────────────────────

  /** The manifest as of the flushed index (what a raft snapshot at flushedIndex carries). */
  manifest(): RegionManifest {
    return {
      formatVersion: 1,
      regionId: this.regionId,
      schema: this.schema,
      flushedIndex: this.flushedIndex,
      flushedTerm: this.flushedTerm,
      voters: this.flushedMembership.voters,
      learners: this.flushedMembership.learners,
      ssts: this.ssts,
      dedup: this.flushedDedup,
      writtenAtMs: Math.floor(this.wall.nowMs()),
      ...(this.flushedStandby !== undefined ? { standby: this.flushedStandby } : {}),
      // Only once flushed past: the log above flushedIndex (kept) re-applies a later fence.
      ...(this.dropFence !== undefined && this.dropFence.index <= this.flushedIndex ? { dropFence: this.dropFence } : {}),
    };
  }

  onMembership(voters: readonly number[], learners: readonly number[]): void {
    this.membership = { voters: [...voters], learners: [...learners] };
  }

  /** The state machine picks its own snapshot point: the flushed index (the log above it is kept). */
  snapshotPoint(): { index: number; data: Uint8Array; voters: readonly number[]; learners: readonly number[] } | undefined {
    if (this.flushedIndex === 0) return undefined;
    const state = this;
    return {
      index: this.flushedIndex,
      // Encoded when read: the region server asks for the point on every ready cycle of a busy
      // replica and reads `data` only when the point is newer than its snapshot (once per flush).
      // Encoding it eagerly cost ~2% of a datanode's CPU under ingest (the dedup table is in it).
      get data() {
        return encodeManifest(state.manifest());
      },
      ...this.flushedMembership,
    };
  }

  serialize(): Uint8Array {
    return encodeManifest(this.manifest());
  }

  /** The state at a manifest's flushed index: SSTs + dedup; memtables empty. */
  static fromManifest(schema: TableSchema, regionId: string, ssTables: SstOpener | undefined, manifest: RegionManifest, wall: Clock = wallClock, dedupLimits: DedupLimits = limits): RegionState {
    const state = new RegionState(schema, regionId, ssTables, wall, dedupLimits);
    state.ssts = [...manifest.ssts];
    state.flushedIndex = manifest.flushedIndex;
    state.flushedTerm = manifest.flushedTerm;
    state.flushedMembership = { voters: manifest.voters, learners: manifest.learners };
    state.membership = state.flushedMembership;
    state.flushedDedup = manifest.dedup;
    state.appliedIndex = manifest.flushedIndex;
    state.loadDedup(manifest.dedup);
    if (manifest.dropFence !== undefined) state.dropFence = manifest.dropFence;
    if (manifest.standby !== undefined) {
      state.flushedStandby = manifest.standby;
      state.standby = StandbyState.decode(manifest.standby, `region ${regionId}`);
    }
    return state;
  }

  static deserialize(schema: TableSchema, bytes: Uint8Array, regionId = '', ssTables?: SstOpener, wall: Clock = wallClock, dedupLimits: DedupLimits = limits): RegionState {
    return RegionState.fromManifest(schema, regionId, ssTables, decodeManifest(bytes, `raft snapshot of region ${regionId}`), wall, dedupLimits);
  }
}

/** v2: {version, horizon, clients: [[client, evictedBelow, [[id, hash, result]]]]}, clients least recently applied first. */
function encodeDedupTable(horizon: number, clients: ReadonlyMap<string, DedupRecord>): string {
  return JSON.stringify({
    version: DEDUP_FORMAT_VERSION,
    horizon,
    clients: [...clients].map(([client, r]) => [client, r.evictedBelow, [...r.results].map(([id, e]) => [id, e.commandHash ?? null, e.result])]),
  });
}

const EMPTY_DEDUP = encodeDedupTable(0, new Map());

/** Reads both encodings (v1 manifests written before command hashes stay readable). */
/** Throws CORRUPTION if `text` is not a dedup table as manifests carry it (a seed's, checked before it is proposed). */
export function validateDedupTable(text: string, where: string): void {
  decodeDedupTable(text, where);
}

function decodeDedupTable(text: string, where: string): { horizon: number; clients: Map<string, DedupRecord> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RegionDbError(ErrorCode.Corruption, `${where}: dedup table is not valid JSON (${(err as Error).message})`);
  }
  const malformed = (why: string) => new RegionDbError(ErrorCode.Corruption, `${where}: dedup table is malformed (${why})`);
  const isId = (id: unknown): id is number => Number.isSafeInteger(id) && (id as number) >= 0;
  // Only answers of applied commands are recorded: ok and condition-failed.
  const isResult = (r: unknown): r is ApplyResult => {
    const result = r as Record<string, unknown> | null;
    if (typeof result !== 'object' || result === null) return false;
    if (result['status'] === 'ok') return isId(result['version']) && isId(result['rows']);
    return result['status'] === 'condition-failed' && isId(result['currentVersion']);
  };
  const clients = new Map<string, DedupRecord>();
  const add = (client: unknown, evictedBelow: unknown, entries: [number, DedupEntry][]) => {
    if (typeof client !== 'string' || !isId(evictedBelow)) throw malformed('client id or window');
    const results = new Map(entries);
    clients.set(client, { evictedBelow, results, ids: IdHeap.of(results.keys()) });
  };
  if (Array.isArray(parsed)) {
    // v1: no hashes (every recorded id is trusted as a retry, as it was) and no horizon.
    for (const r of parsed) {
      if (!Array.isArray(r) || !Array.isArray(r[2])) throw malformed('v1 client record');
      const entries = (r[2] as unknown[]).map((x): [number, DedupEntry] => {
        if (!Array.isArray(x) || x.length !== 2 || !isId(x[0]) || !isResult(x[1])) throw malformed('v1 entry');
        return [x[0], { result: x[1], commandHash: undefined }];
      });
      add(r[0], r[1], entries);
    }
    return { horizon: 0, clients };
  }
  const v2 = parsed as { version?: unknown; horizon?: unknown; clients?: unknown };
  if (typeof v2 !== 'object' || v2 === null || v2.version !== DEDUP_FORMAT_VERSION) throw malformed(`unknown format ${String(v2?.version)}`);
  if (!isId(v2.horizon) || !Array.isArray(v2.clients)) throw malformed('horizon or clients');
  for (const r of v2.clients) {
    if (!Array.isArray(r) || !Array.isArray(r[2])) throw malformed('client record');
    const entries = (r[2] as unknown[]).map((x): [number, DedupEntry] => {
      // A null hash: an entry carried over from a v1 table.
      if (!Array.isArray(x) || x.length !== 3 || !isId(x[0]) || (typeof x[1] !== 'string' && x[1] !== null) || !isResult(x[2])) throw malformed('entry');
      return [x[0], { result: x[2], commandHash: x[1] ?? undefined }];
    });
    add(r[0], r[1], entries);
  }
  return { horizon: v2.horizon, clients };
}

function rowsOf(cmd: Command): number {
  return cmd.kind === 'write' ? cmd.rows.length : cmd.kind === 'delete' ? cmd.keys.length : 0;
}

async function* toAsyncGen<T, U>(it: Iterator<T>, f: (t: T) => U): AsyncGenerator<U> {
  for (let r = it.next(); !r.done; r = it.next()) yield f(r.value);
}

function toAsync<T, U>(it: Iterator<T>, f: (t: T) => U): AsyncIterator<U> {
  return toAsyncGen(it, f);
}

async function* mapAsync<T, U>(it: AsyncIterable<T>, f: (t: T) => U): AsyncGenerator<U> {
  for await (const v of it) yield f(v);
}

/**
 * One SST's entries as a merge reads them: the current decoded block and a position in it, so
 * that stepping to the next entry is synchronous within a block (sstEntryForMerge applied as
 * each block arrives).
 */
class BlockCursor {
  block: readonly SstEntry[] = [];
  at = 0;
  done = false;

  constructor(
    private readonly blocks: AsyncIterator<readonly SstEntry[]>,
    private readonly sst: string,
  ) {}

  /** Moves to the next non-empty block, or sets done. */
  async fill(): Promise<void> {
    for (;;) {
      const next = await this.blocks.next();
      if (next.done) {
        this.done = true;
        return;
      }
      if (next.value.length === 0) continue;
      let block = next.value;
      for (let j = 0; j < block.length; j++) {
        const mapped = sstEntryForMerge(block[j]!, this.sst);
        if (mapped === block[j]) continue;
        if (block === next.value) block = block.slice();
        (block as SstEntry[])[j] = mapped;
      }
      this.block = block;
      this.at = 0;
      return;
    }
  }
}

/**
 * mergeNewest over BlockCursors, in batches of at most `batchSize` entries: an await only when a
 * cursor's block runs out, not per entry.
 */
async function* mergeNewestInBatches(cursors: BlockCursor[], batchSize: number): AsyncGenerator<SstEntry[]> {
  await Promise.all(cursors.map((c) => c.fill()));
  let out: SstEntry[] = [];
  for (;;) {
    let min: Uint8Array | undefined;
    for (const c of cursors) {
      if (c.done) continue;
      const k = c.block[c.at]!.key;
      if (!min || compareBytes(k, min) < 0) min = k;
    }
    if (!min) break;
    let best: SstEntry | undefined;
    for (const c of cursors) {
      if (c.done) continue;
      const h = c.block[c.at]!;
      if (compareBytes(h.key, min) !== 0) continue;
      if (!best || h.version > best.version) best = h;
      if (++c.at >= c.block.length) await c.fill();
    }
    out.push(best!);
    if (out.length >= batchSize) {
      yield out;
      out = [];
    }
  }
  if (out.length > 0) yield out;
}

/**
 * k-way merge of key-ordered sources; for equal keys the highest version wins (newer sources
 * always hold higher versions, so this is "newest source wins").
 */
async function* mergeNewest<T extends { readonly key: Uint8Array; readonly version: number }>(sources: AsyncIterator<T>[]): AsyncGenerator<T> {
  const heads: (T | undefined)[] = await Promise.all(sources.map(async (s) => (await s.next()).value as T | undefined));
  for (;;) {
    let min: Uint8Array | undefined;
    for (const h of heads) if (h && (!min || compareBytes(h.key, min) < 0)) min = h.key;
    if (!min) return;
    let best: T | undefined;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i];
      if (!h || compareBytes(h.key, min) !== 0) continue;
      if (!best || h.version > best.version) best = h;
      const next = await sources[i]!.next();
      heads[i] = next.done ? undefined : next.value;
    }
    yield best!;
  }
}
