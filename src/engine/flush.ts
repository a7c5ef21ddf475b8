// Flush policy of a region (docs/architecture.md §5, docs/engine.md): when a memtable is due,
// the order of the steps, and the SST a frozen memtable becomes. Pure decisions plus building
// the SST; the leader's timers, object-store I/O and proposals are the host's
// (src/datanode/flusher.ts), which follows this order.
//
// Order of a flush, and why it is safe:
//   1. propose `freeze` (index i)      — every replica sets aside the same memtable;
//   2. build + upload the SST          — immutable object, unique key; from before the put
//                                        until the edit settles it is in `uploading` (G2), and
//                                        it is proposed only if the put took < grace/2;
//   3. propose `flush-edit{i, sst}`    — in the leader's log (G2), then replicas reference the
//                                        SST, flushedIndex = i;
//   4. (each replica) raft snapshot at i = the manifest; the WAL below i is truncated;
//   5. write the manifest to the object store (leader; retried until it is there).
//   6. (every replica) publish its raft snapshot to the object store (GC's G3).
// A leader change anywhere before 3 leaves the frozen memtable on every replica: the next
// leader starts again at 2. WAL entries are never truncated before 3 is applied.
// (G1–G5 are the SST garbage-collection rules, src/datanode/sst-gc.ts.)
import { randomBytes } from 'node:crypto';
import { wallClock } from '../common/clock.js';
import type { SstMeta } from './command.js';
import { sstPrefix } from './manifest.js';
import { type FrozenMemtable, memEntryToSstInput } from './region-state.js';
import { type SstEntry, type SstKeyStringEntry, type SstProperties, sstBuilder } from './sst/format.js';
import { turnOfEventLoop, yieldEvery } from './yield.js';

/** When a region's active memtable is due for a flush. */
export interface FlushPolicy {
  /** Flush once the active memtable holds this many bytes. */
  readonly flushBytes: number;
  /** Flush once the active memtable has held rows this long (monotonic ms). */
  readonly flushAgeMs: number;
}

/** What the host knows about a region's flush in progress and the flushes asked for. */
export interface FlushProgress {
  /** The active memtable first became non-empty (monotonic ms); undefined while it is empty. */
  readonly dirtySinceMs: number | undefined;
  /** A freeze proposal is in flight (step 1). */
  readonly freezing: boolean;
  /** An upload of the oldest frozen memtable is in flight (steps 2–3). */
  readonly uploading: boolean;
  /** An explicit flush was asked for (`regiondb flush`, backpressure). */
  readonly requested: boolean;
  /** GC asked for a flush, even of an empty memtable, so replicas snapshot past an index (G3). */
  readonly snapshotRequested: boolean;
}

/**
 * The next flush step for a region this node leads:
 * - `upload`: a frozen memtable is waiting: build and upload its SST, propose the flush-edit
 *   (steps 2–3; frozen memtables go out oldest first, one at a time);
 * - `freeze`: the active memtable is due: propose a freeze (step 1);
 * - `forget-request`: an explicit request found nothing to flush; drop it;
 * - `none`: nothing to do now.
 */
export type FlushStep = 'upload' | 'freeze' | 'forget-request' | 'none';

/** What the flush policy reads of a region (a RegionState is one). */
export interface FlushView {
  readonly memtable: { readonly count: number; readonly sizeBytes: number };
  readonly frozen: readonly unknown[];
}

/** When the active memtable became dirty, after a check at `nowMs` (the age trigger's start). */
export function dirtySince(state: FlushView, previousMs: number | undefined, nowMs: number): number | undefined {
  return state.memtable.count === 0 ? undefined : (previousMs ?? nowMs);
}

export function nextFlushStep(state: FlushView, progress: FlushProgress, nowMs: number, policy: FlushPolicy): FlushStep {
  if (state.frozen.length > 0) return progress.uploading ? 'none' : 'upload';
  if (!progress.freezing && (state.memtable.count > 0 || progress.snapshotRequested)) {
    const aged = progress.dirtySinceMs !== undefined && nowMs - progress.dirtySinceMs >= policy.flushAgeMs;
    const due = state.memtable.sizeBytes >= policy.flushBytes || aged || progress.requested || progress.snapshotRequested;
    return due ? 'freeze' : 'none';
  }
  if (progress.requested && state.memtable.count === 0) return 'forget-request';
  return 'none';
}

/** An SST written by a flush or a compaction: what its edit says about it besides the key. */
export interface WrittenSst {
  readonly size: number;
  readonly properties: SstProperties;
}

/** Where an SST's bytes go as they are built: an object-store upload (ObjectUpload is one). */
export interface SstSink {
  write(chunk: Uint8Array): Promise<void>;
}

/**
 * Finished blocks are handed to the sink once this many bytes have gathered: a flush or a merge
 * holds about this much of its SST, not the whole SST (an S3 upload gathers its parts itself).
 */
export const SST_WRITE_CHUNK_BYTES = 1 << 20;

/**
 * Writes `entries` (ascending keys) as one SST into `sink`, in chunks, yielding to the event loop
 * as it goes; null if there were no entries, and then nothing was written. `entries` is either
 * synchronous (a frozen memtable's scan: no await per entry, a turn of the event loop every
 * ROWS_PER_YIELD entries) or batches in key order (a merge's: a turn after each batch, which holds
 * at most ROWS_PER_YIELD entries).
 */
export async function writeSst(entries: Iterable<SstEntry | SstKeyStringEntry> | AsyncIterable<readonly (SstEntry | SstKeyStringEntry)[]>, sink: SstSink): Promise<WrittenSst | null> {
  const builder = sstBuilder();
  const add = (entry: SstEntry | SstKeyStringEntry): Promise<void> | undefined => {
    if (entry.key === undefined) builder.addKeyString(entry.keyString, entry.version, entry.value);
    else builder.add(entry);
    return builder.bufferedBytes >= SST_WRITE_CHUNK_BYTES ? sink.write(builder.drain()) : undefined;
  };
  if (Symbol.iterator in entries) {
    for (const entry of entries) {
      const written = add(entry);
      if (written !== undefined) await written;
      const turn = yieldEvery(builder.count);
      if (turn !== undefined) await turn;
    }
  } else {
    for await (const batch of entries) {
      for (const entry of batch) {
        const written = add(entry);
        if (written !== undefined) await written;
      }
      await turnOfEventLoop();
    }
  }
  if (builder.count === 0) return null;
  const { tail, size, properties } = builder.finishTail();
  await sink.write(tail);
  return { size, properties };
}

/** The SST of a frozen memtable (step 2), written into `sink`; null if the memtable holds nothing. */
export function writeFlushSst(frozen: FrozenMemtable, sink: SstSink): Promise<WrittenSst | null> {
  return writeSst(
    (function* () {
      for (const entry of frozen.memtable.scan()) yield memEntryToSstInput(entry);
    })(),
    sink,
  );
}

/** What a flush-edit or compaction-edit says about an uploaded SST. */
export function sstMetaOf(key: string, sst: WrittenSst): SstMeta {
  const { size, properties } = sst;
  return {
    key,
    size,
    entries: properties.entryCount,
    maxVersion: properties.maxVersion,
    minTimestampMs: properties.minTimestamp,
    maxTimestampMs: properties.maxTimestamp,
  };
}

/**
 * Where a new SST key's wall-clock time and random tag come from: the process's clock and
 * crypto randomness in production (systemSstKeySource); a simulation injects a seeded source so
 * that a seed replays to the same keys (test/sim/cluster-sim.ts).
 */
export interface SstKeySource {
  /** Wall-clock milliseconds since the epoch (only for people reading a listing). */
  wallMs(): number;
  /** 8 lowercase hex digits that keep two uploads of one index apart. */
  randomTag(): string;
}

export const systemSstKeySource: SstKeySource = {
  wallMs: () => wallClock.nowMs(),
  randomTag: () => randomBytes(4).toString('hex'),
};

/**
 * `regions/<id>/sst/<index hex>-<created ms>-<random>.sst` for a new SST (`index`: the freeze
 * index of a flush, the highest version among a merge's inputs). The wall-clock time is for people reading
 * a listing; GC never reads it (clocks skew and jump).
 */
export function newSstKey(regionId: string, index: number, source: SstKeySource = systemSstKeySource): string {
  return `${sstPrefix(regionId)}${index.toString(16).padStart(16, '0')}-${Math.floor(source.wallMs())}-${source.randomTag()}.sst`;
}
