// The standby side of a region in a dual active-standby pair (docs/replication.md): the primary's
// committed entries this region has received, and which of them it has applied.
//
// Invariants (replicated state: every replica computes the same from the same log):
//   S1. `pending` holds primary entries receivedIndex-pending.length+1 … receivedIndex, in index
//       order, none applied; every entry at or below appliedPrimaryIndex was applied, in order.
//       No entry is ever applied out of index order or twice.
//   S2. receivedThroughMs only grows: every primary entry stamped at or before it is received.
//   S3. An entry is applied only by a release or the promotion, and only if it is stamped at or
//       before their time: a region never applies past the cluster-wide safe time or the cut.
//   S4. After promotion nothing from the stream is taken again (mode 'promoted' ignores appends
//       and seeds).
//   S5. A seed at primary index I (docs/replication.md, "Seeding") makes the region the
//       primary's state as of I: receivedIndex = appliedPrimaryIndex = I, nothing pending. Its
//       entries were stamped (if at all) at or before the seed's time T, and they are applied, so
//       releasedMs ≥ T: no cut may be earlier than T (src/standby/cut.ts has no consistent point
//       while the minimum receivedThroughMs of all regions is below the highest releasedMs). The
//       seed claims no receivedThroughMs: that comes only from the stream after I.
//   S6. Every primary entry applies at version index + primaryVersionOffset (the primary's own
//       offset: non-zero when the primary is itself a promoted standby).
//   S7. A table dropped on the primary ends each of its regions' streams with a marker entry
//       stamped T, after every other entry of the region (so every entry is stamped at or before
//       T). Once the marker is received (contiguously: everything before it is received too) the
//       region's stream is complete for every time: streamThroughMs() is +∞ and the region no
//       longer bounds the safe time. Nothing after the marker is ever taken. The standby table
//       may go once the marker is applied (a release or cut at or past T: dropDue()); a cut
//       before T drops the marker with the tail, and the table stays with its rows up to the cut.
//   S8. After a `standby-freeze` (the first phase of a promotion) the region applies no release and
//       takes no seed: its releasedMs is final, and every release before the freeze in its log is
//       counted in it. Appends are still taken (they only add pending entries). A cut chosen after
//       every region froze is at or above every release (src/standby/cut.ts never cuts below the
//       highest releasedMs), so no region is ever cut below what it applied.
//   S9. Epochs (docs/replication.md, "One writable site"). promotedEpoch is the epoch of this
//       region's promotion (0: not promoted, or promoted by a build without epochs); primaryEpoch
//       is the highest promotion epoch of a primary this region took anything from (0: the
//       original primary). Both only grow, and only through replicated commands
//       (standby-promote-epoch, standby-epoch, standby-seed-epoch).
//   S10. A promoted region is re-opened as a standby only by a seed from a primary whose epoch is
//       above the region's own promotion epoch (≥ 1): that primary was promoted after this region
//       was, so this promotion is history. The seed replaces everything the region held, and the
//       region's stream position starts again from the seed (nothing of the earlier stream is
//       claimed). A seed of a lower or equal epoch (one in flight across this promotion) and a
//       region promoted without an epoch are left as they are (S4).
//   S11. A `standby-unfreeze` (the abort of a promotion's first phase, `standby promote --abort`)
//       clears `frozen` in a region in mode standby and changes nothing else: releases and seeds
//       resume from the next one. A promoted (cut) region ignores it. A `standby-promote-epoch`
//       cuts only a region that has applied nothing past the cut (cuttable()); otherwise it
//       changes nothing. Without unfreezes S8 made that always so (a node proposes a cut only for
//       a frozen region at or above what it applied); with them a release may land between an
//       unfreeze and a cut in the log, and the region is then never cut at that time: no cut
//       ever keeps an entry stamped after it.
// The whole record is carried in the manifest (as of the flush point, like the dedup table), so
// the log may be truncated at a flush while received entries wait unapplied.
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { type ShippedEntry, isTableDroppedMarker } from './command.js';

export type StandbyMode = 'standby' | 'promoted';

export interface StandbySnapshot {
  readonly mode: StandbyMode;
  readonly receivedIndex: number;
  readonly receivedThroughMs: number;
  /** Stamp of the last received entry (0 before any): what lag in ms is measured from. */
  readonly lastStampMs: number;
  readonly appliedPrimaryIndex: number;
  /** The highest release (or the cut) applied so far. */
  readonly releasedMs: number;
  /** Promotion: the cut, entries and rows dropped after it, and the version offset of new writes. */
  readonly cutMs: number;
  readonly droppedEntries: number;
  readonly droppedRows: number;
  readonly versionOffset: number;
  /** The last batch came from a primary in sync mode (every write it acknowledged is received). */
  readonly sync: boolean;
  /** S6: the primary's version offset. */
  readonly primaryVersionOffset: number;
  /** The region's own raft index of its promotion (0 before): entries up to it carry no rows a stream could ship. */
  readonly promotedAtIndex: number;
  /** The primary index of the last seed (0: never seeded). */
  readonly seededIndex: number;
  /** S7: the primary index and stamp of the table-dropped marker received (0: none). */
  readonly droppedAtIndex: number;
  readonly droppedAtMs: number;
  /** S8: a promotion has begun; nothing more is released or seeded. */
  readonly frozen: boolean;
  /** S9. */
  readonly promotedEpoch: number;
  readonly primaryEpoch: number;
}

/** Version 2 is written only when a field a version-1 reader would drop is set (S8–S10): such a reader refuses it. */
const FORMAT_VERSION = 1;
const FORMAT_VERSION_EPOCHS = 2;

export class StandbyState {
  mode: StandbyMode = 'standby';
  receivedIndex = 0;
  receivedThroughMs = 0;
  lastStampMs = 0;
  appliedPrimaryIndex = 0;
  releasedMs = 0;
  cutMs = 0;
  droppedEntries = 0;
  droppedRows = 0;
  versionOffset = 0;
  sync = false;
  primaryVersionOffset = 0;
  promotedAtIndex = 0;
  seededIndex = 0;
  droppedAtIndex = 0;
  droppedAtMs = 0;
  frozen = false;
  promotedEpoch = 0;
  primaryEpoch = 0;
  /** S1: received, not yet applied; oldest first. */
  readonly pending: ShippedEntry[] = [];

  /**
   * Takes the part of a batch that continues the received prefix (S1); a batch that leaves a gap
   * is ignored whole (the shipper resends from receivedIndex + 1). Returns how many were taken.
   */
  receive(fromIndex: number, entries: readonly ShippedEntry[], watermarkMs: number, sync = false, versionOffset = 0): number {
    if (this.mode !== 'standby') return 0; // S4
    this.sync = sync;
    if (fromIndex > this.receivedIndex + 1) return 0;
    // S6: one offset for what is pending (a primary's offset changes only at its own promotion,
    // after which its new entries follow a seed here).
    if (versionOffset !== this.primaryVersionOffset) {
      if (this.pending.length > 0) return 0;
      this.primaryVersionOffset = versionOffset;
    }
    let taken = 0;
    for (const e of entries) {
      if (this.pending.length >= limits.standbyPendingEntriesMax) break; // the shipper resends the rest
      if (e.index <= this.receivedIndex) continue; // a duplicate (two primary leaders ship the same committed entries)
      if (this.droppedAtIndex > 0) break; // S7: nothing follows a table-dropped marker
      assert(e.index === this.receivedIndex + 1, () => `standby entries not contiguous: ${e.index} after ${this.receivedIndex}`);
      this.pending.push(e);
      this.receivedIndex = e.index;
      this.lastStampMs = Math.max(this.lastStampMs, e.stampMs);
      if (isTableDroppedMarker(e.data)) {
        // lastStampMs already counts the marker: T is never below an earlier entry's stamp, even if
        // a new primary leader's clock is behind the old one's.
        this.droppedAtIndex = e.index;
        this.droppedAtMs = this.lastStampMs;
      }
      taken++;
    }
    // The watermark speaks for the batch's entries only if the batch reaches where it ends.
    const reaches = fromIndex + entries.length - 1 >= this.receivedIndex;
    if (reaches) this.receivedThroughMs = Math.max(this.receivedThroughMs, watermarkMs); // S2
    return taken;
  }

  /**
   * S5: the region is now the primary's state as of `primaryIndex` (the caller replaced its SSTs,
   * memtables and dedup table); returns false, changing nothing, if it is promoted (unless S10
   * re-opens it), frozen (S8), following a later primary, or already has that index (a duplicate
   * or stale seed).
   */
  seed(primaryIndex: number, seededThroughMs: number, versionOffset: number, primaryEpoch = 0): boolean {
    assert(Number.isSafeInteger(primaryIndex) && primaryIndex > 0 && Number.isSafeInteger(seededThroughMs) && versionOffset >= 0 && Number.isSafeInteger(primaryEpoch) && primaryEpoch >= 0, `bad seed at ${primaryIndex}`);
    if (this.mode === 'promoted') {
      // S4, S10; and S9 checked before anything is re-opened (a refused seed changes nothing).
      if (this.promotedEpoch < 1 || primaryEpoch <= this.promotedEpoch || primaryEpoch < this.primaryEpoch) return false;
      this.reopen();
    }
    if (this.frozen || primaryEpoch < this.primaryEpoch || primaryIndex <= this.receivedIndex) return false; // S8, S9
    this.primaryEpoch = primaryEpoch;
    this.pending.length = 0;
    this.receivedIndex = primaryIndex;
    this.appliedPrimaryIndex = primaryIndex;
    this.seededIndex = primaryIndex;
    this.primaryVersionOffset = versionOffset;
    this.releasedMs = Math.max(this.releasedMs, seededThroughMs);
    this.lastStampMs = Math.max(this.lastStampMs, seededThroughMs);
    assert(this.pending.length === 0 && this.appliedPrimaryIndex === this.receivedIndex, 'S5: a seeded region has applied all it received');
    return true;
  }

  /** S10: a standby again, of a later primary; nothing of the earlier stream or promotion is kept (promotedEpoch stays, as history). */
  private reopen(): void {
    this.mode = 'standby';
    this.receivedIndex = 0;
    this.receivedThroughMs = 0;
    this.lastStampMs = 0;
    this.appliedPrimaryIndex = 0;
    this.releasedMs = 0;
    this.cutMs = 0;
    this.droppedEntries = 0;
    this.droppedRows = 0;
    this.versionOffset = 0;
    this.sync = false;
    this.primaryVersionOffset = 0;
    this.promotedAtIndex = 0;
    this.seededIndex = 0;
    this.droppedAtIndex = 0;
    this.droppedAtMs = 0;
    this.frozen = false;
  }

  /** S9: the region follows a primary at `epoch` from now on (never goes down). */
  follow(epoch: number): void {
    this.primaryEpoch = Math.max(this.primaryEpoch, epoch);
  }

  /** S8. */
  freeze(): void {
    if (this.mode === 'standby') this.frozen = true;
  }

  /** S11: the abort of a promotion's first phase; a cut region ignores it. */
  unfreeze(): void {
    if (this.mode === 'standby') this.frozen = false;
  }

  /** S11: a `standby-promote-epoch` at `cutMs` cuts this region (nothing applied past the cut). */
  cuttable(cutMs: number): boolean {
    return this.mode === 'standby' && this.releasedMs <= cutMs;
  }

  /** S2/S7: every primary entry stamped at or before this is received (+∞ once the stream ended with a drop marker). */
  streamThroughMs(): number {
    return this.droppedAtIndex > 0 ? Number.POSITIVE_INFINITY : this.receivedThroughMs;
  }

  /** S7: the marker is applied (released or kept by the cut): the standby's table may be dropped. */
  dropDue(): boolean {
    return this.droppedAtIndex > 0 && this.appliedPrimaryIndex >= this.droppedAtIndex;
  }

  /** The entries a release to `upToMs` applies (S3), oldest first; the caller applies them and calls applied(). */
  releasable(upToMs: number): ShippedEntry[] {
    const out: ShippedEntry[] = [];
    for (const e of this.pending) {
      if (e.stampMs > upToMs) break; // in index order: never past the first entry after the time
      out.push(e);
    }
    return out;
  }

  /** One released entry applied (S1: the oldest pending one). */
  applied(e: ShippedEntry): void {
    const first = this.pending[0];
    assert(first !== undefined && first.index === e.index, () => `released entry ${e.index} is not the oldest pending (${first?.index})`);
    this.pending.shift();
    this.appliedPrimaryIndex = e.index;
  }

  snapshot(): StandbySnapshot {
    return {
      mode: this.mode,
      receivedIndex: this.receivedIndex,
      receivedThroughMs: this.receivedThroughMs,
      lastStampMs: this.lastStampMs,
      appliedPrimaryIndex: this.appliedPrimaryIndex,
      releasedMs: this.releasedMs,
      cutMs: this.cutMs,
      droppedEntries: this.droppedEntries,
      droppedRows: this.droppedRows,
      versionOffset: this.versionOffset,
      sync: this.sync,
      primaryVersionOffset: this.primaryVersionOffset,
      promotedAtIndex: this.promotedAtIndex,
      seededIndex: this.seededIndex,
      droppedAtIndex: this.droppedAtIndex,
      droppedAtMs: this.droppedAtMs,
      frozen: this.frozen,
      promotedEpoch: this.promotedEpoch,
      primaryEpoch: this.primaryEpoch,
    };
  }

  /** The manifest's encoding: JSON with the pending entries in base64. */
  encode(): string {
    const epochs = this.frozen || this.promotedEpoch > 0 || this.primaryEpoch > 0;
    return JSON.stringify({
      version: epochs ? FORMAT_VERSION_EPOCHS : FORMAT_VERSION,
      ...this.snapshot(),
      pending: this.pending.map((e) => [e.index, e.stampMs, Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('base64')]),
    });
  }

  static decode(text: string, where: string): StandbyState {
    const bad = (why: string) => new RegionDbError(ErrorCode.Corruption, `${where}: standby state is malformed (${why})`);
    let p: Record<string, unknown>;
    try {
      p = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw bad((err as Error).message);
    }
    if (typeof p !== 'object' || p === null || (p['version'] !== FORMAT_VERSION && p['version'] !== FORMAT_VERSION_EPOCHS)) throw bad(`unknown format ${String(p?.['version'])}`);
    const s = new StandbyState();
    if (p['mode'] !== 'standby' && p['mode'] !== 'promoted') throw bad('mode');
    s.mode = p['mode'];
    const ints = ['receivedIndex', 'receivedThroughMs', 'lastStampMs', 'appliedPrimaryIndex', 'releasedMs', 'cutMs', 'droppedEntries', 'droppedRows', 'versionOffset'] as const;
    for (const k of ints) {
      const v = p[k];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(k);
      s[k] = v;
    }
    // Added after the first release of this format: absent in older manifests (0).
    for (const k of ['primaryVersionOffset', 'promotedAtIndex', 'seededIndex', 'droppedAtIndex', 'droppedAtMs', 'promotedEpoch', 'primaryEpoch'] as const) {
      const v = p[k] ?? 0;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(k);
      s[k] = v;
    }
    s.sync = p['sync'] === true;
    s.frozen = p['frozen'] === true;
    const pending = p['pending'];
    if (!Array.isArray(pending)) throw bad('pending');
    for (const e of pending) {
      if (!Array.isArray(e) || e.length !== 3 || !Number.isSafeInteger(e[0]) || !Number.isSafeInteger(e[1]) || typeof e[2] !== 'string') throw bad('pending entry');
      const buf = Buffer.from(e[2], 'base64');
      s.pending.push({ index: e[0], stampMs: e[1], data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) });
    }
    const first = s.pending[0];
    if (first && (first.index !== s.appliedPrimaryIndex + 1 || s.pending.at(-1)!.index !== s.receivedIndex)) throw bad('pending entries do not continue the applied prefix');
    return s;
  }
}
