// Compaction policy of a region (docs/architecture.md §5, docs/engine.md): which SSTs to merge
// and how to merge them. Pure decisions plus the streaming merge; the leader's I/O and the
// proposal of the `compaction-edit` are the host's (src/datanode/flusher.ts). Every replica
// accepts any contiguous run (region-state.ts), so the picker may change without a format change.
import type { SstMeta } from './command.js';
import type { RegionState } from './region-state.js';
import { type SstSink, type WrittenSst, writeSst } from './flush.js';
import { ROWS_PER_YIELD } from './yield.js';

/**
 * A compaction merges a contiguous run of the region's SSTs (newest first: [start, end)) into
 * one SST at the run's place. Replicas accept any contiguous run (region-state.ts).
 */
export interface CompactionRun {
  readonly start: number;
  readonly end: number;
}

/** SSTs are in one size tier while the largest is at most this many times the smallest. */
export const COMPACTION_TIER_RATIO = 4;
/** Smaller SSTs (flushes by age) count as this size, so they join the smallest tier. */
export const COMPACTION_SIZE_FLOOR_BYTES = 1 << 20;

/**
 * Whether a compaction is due: the region holds `compactAtSsts` SSTs or more, or one was asked
 * for explicitly (`regiondb compact`) and there are at least two SSTs to merge.
 */
export function compactionDue(sstCount: number, compactAtSsts: number, requested: boolean): boolean {
  return sstCount >= compactAtSsts || (requested && sstCount >= 2);
}

/**
 * Which SSTs to merge: size-tiered. Merging every SST each time (as before) rewrote the whole
 * region at every compaction, so work and memory grew with the region (make bench-ingest:
 * throughput fell and RSS climbed). Here the newest run of at least `width` adjacent SSTs of
 * one size tier (largest ≤ COMPACTION_TIER_RATIO × smallest) is merged; the result is a tier
 * up, so each byte is rewritten about log₄(region size / flush size) times. If no tier is full
 * but the region holds 2 × `width` SSTs, the adjacent pair with the smallest total is merged,
 * so the count stays bounded. `everything` (an explicit request) merges all SSTs.
 */
export function pickCompactionRun(sizes: readonly number[], width: number, everything: boolean, floorBytes = COMPACTION_SIZE_FLOOR_BYTES): CompactionRun | null {
  const n = sizes.length;
  if (n < 2) return null;
  if (everything) return { start: 0, end: n };
  const size = sizes.map((s) => Math.max(s, floorBytes));
  for (let start = 0; start + width <= n; start++) {
    let lo = size[start]!;
    let hi = lo;
    let end = start + 1;
    while (end < n) {
      const nextLo = Math.min(lo, size[end]!);
      const nextHi = Math.max(hi, size[end]!);
      if (nextHi > COMPACTION_TIER_RATIO * nextLo) break;
      lo = nextLo;
      hi = nextHi;
      end++;
    }
    if (end - start >= width) return { start, end };
  }
  if (n < 2 * width) return null;
  let best = 0;
  for (let i = 1; i + 1 < n; i++) if (sizes[i]! + sizes[i + 1]! < sizes[best]! + sizes[best + 1]!) best = i;
  return { start: best, end: best + 2 };
}

/** A compaction to run: its input SSTs (newest first) and whether tombstones may be dropped. */
export interface CompactionPlan {
  readonly inputs: readonly SstMeta[];
  /**
   * Tombstones are dropped only when the run includes the oldest SST (nothing older lies
   * beneath it); otherwise they must keep shadowing older data.
   */
  readonly dropTombstones: boolean;
}

/** The compaction of `ssts` (the region's SSTs, newest first) to run now, if any (pickCompactionRun). */
export function planCompaction(ssts: readonly SstMeta[], width: number, everything: boolean): CompactionPlan | null {
  const run = pickCompactionRun(
    ssts.map((s) => s.size),
    width,
    everything,
  );
  if (!run) return null;
  return { inputs: ssts.slice(run.start, run.end), dropTombstones: run.end === ssts.length };
}

/**
 * Writes the SST replacing `inputs` (newest version of each key; tombstones kept unless
 * `dropTombstones`) into `sink` as the merge streams by; null if nothing is left, and then
 * nothing was written. Memory is a chunk of the output (SST_WRITE_CHUNK_BYTES), not the output.
 */
export function mergeSsts(state: RegionState, inputs: readonly SstMeta[], dropTombstones: boolean, sink: SstSink): Promise<WrittenSst | null> {
  const batches = state.mergedSstBatches(inputs, ROWS_PER_YIELD);
  return writeSst(
    dropTombstones
      ? (async function* () {
          for await (const batch of batches) yield batch.filter((e) => e.value !== null);
        })()
      : batches,
    sink,
  );
}

/** The highest version among a merge's inputs: names its output (newSstKey) before the merge has run. */
export function mergeVersion(inputs: readonly SstMeta[]): number {
  return inputs.reduce((max, s) => Math.max(max, s.maxVersion), 0);
}
