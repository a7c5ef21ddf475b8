// The cluster-consistent point of a standby (docs/replication.md): pure functions over what the
// standby's regions report.
//
// Each region has received every primary entry stamped at or before its receivedThroughMs (S2 in
// src/engine/standby-state.ts). The minimum over ALL regions of the standby is therefore a time
// at which every region holds everything: releasing (or cutting) every region at that time gives
// one consistent state — no write stamped after it anywhere, none stamped before it missing.
// A region that reports nothing blocks the cut: a minimum without it would not be one.
// A seeded region (S5 in standby-state.ts) has applied entries stamped up to its seed's time
// (its releasedMs) before any stream has claimed that time: until the minimum reaches the
// highest releasedMs there is no consistent point — a cut below a seed's time would leave that
// region holding rows written after the cut. (Releases never pass the safe time, so without
// seeds the highest releasedMs is never above the minimum.)
// A region whose table was dropped on the primary (S7 in standby-state.ts) has received its whole
// stream, ending with the drop marker stamped T: it has everything up to any time, so it does not
// bound the minimum. If every region has ended, any time at or past the last marker is a
// consistent point; the safe time is the highest of them (never +∞: a cut is a time).
import { ErrorCode, RegionDbError } from '../common/errors.js';

export interface RegionPosition {
  readonly regionId: string;
  readonly receivedThroughMs: number;
  /** Stamp of the last entry received. */
  readonly lastStampMs?: number;
  /** Its stream comes from a primary in sync mode. */
  readonly sync?: boolean;
  /** It has applied everything stamped up to this (the last release): no cut may be earlier. */
  readonly releasedMs?: number;
  /** S7: its stream ended with a table-dropped marker stamped at this time (0 or absent: not dropped). */
  readonly droppedAtMs?: number;
}

/** What a region has received everything up to: +∞ once its stream ended with a drop marker (S7). */
function streamThroughMs(p: RegionPosition): number {
  return (p.droppedAtMs ?? 0) > 0 ? Number.POSITIVE_INFINITY : p.receivedThroughMs;
}

/** The safe time over `regionIds` (every region the standby has), or undefined if one is not reported. */
export function safeTimeMs(regionIds: readonly string[], reported: ReadonlyMap<string, RegionPosition>): number | undefined {
  if (regionIds.length === 0) return undefined;
  let min = Number.POSITIVE_INFINITY;
  for (const id of regionIds) {
    const p = reported.get(id);
    if (!p) return undefined;
    min = Math.min(min, streamThroughMs(p));
  }
  if (min === Number.POSITIVE_INFINITY) min = Math.max(...regionIds.map((id) => Math.max(reported.get(id)!.droppedAtMs ?? 0, reported.get(id)!.receivedThroughMs)));
  return min >= appliedThroughMs(regionIds, reported) ? min : undefined;
}

/** The highest time some region has applied up to (its releasedMs: a release, a cut or a seed's time, S5). */
function appliedThroughMs(regionIds: readonly string[], reported: ReadonlyMap<string, RegionPosition>): number {
  return Math.max(0, ...regionIds.map((id) => reported.get(id)?.releasedMs ?? 0));
}

/**
 * The promotion cut: the safe time, or `toTimeMs` if given and not later. Throws when there is
 * no safe time (a region unreported) or `toTimeMs` is later than it (its data is not all here).
 *
 * When every region's stream is sync, the cut is the last stamp received anywhere instead:
 * everything received is kept. That is consistent too: a sync primary acknowledges a write only
 * once the standby has it, so every acknowledged write is received (RPO 0), and what a region
 * received beyond another's watermark was in flight, never acknowledged.
 */
export function promotionCutMs(regionIds: readonly string[], reported: ReadonlyMap<string, RegionPosition>, toTimeMs?: number): number {
  let safe = safeTimeMs(regionIds, reported);
  if (safe !== undefined && regionIds.every((id) => reported.get(id)?.sync === true)) {
    safe = Math.max(safe, ...regionIds.map((id) => reported.get(id)?.lastStampMs ?? 0));
  }
  if (safe === undefined) {
    const missing = regionIds.filter((id) => !reported.has(id));
    const appliedMs = appliedThroughMs(regionIds, reported);
    const behind = regionIds.filter((id) => {
      const p = reported.get(id);
      return (p ? streamThroughMs(p) : appliedMs) < appliedMs;
    });
    const why = [
      ...(missing.length ? [`regions ${missing.join(', ')} report no stream position`] : []),
      ...(missing.length === 0 && behind.length ? [`a region has applied rows up to ${appliedMs} (a seed's time, or a cut) and regions ${behind.join(', ')} have not yet received everything up to that time`] : []),
    ];
    throw new RegionDbError(ErrorCode.Unavailable, `no consistent point yet: ${why.length ? why.join('; ') : 'the standby has no regions'}`);
  }
  if (toTimeMs === undefined) return safe;
  // The safe time is not below what is applied, so only --to-time can fall below it.
  const applied = appliedThroughMs(regionIds, reported);
  if (toTimeMs < applied) {
    throw new RegionDbError(
      ErrorCode.InvalidArgument,
      `--to-time ${new Date(toTimeMs).toISOString()} is before ${new Date(applied).toISOString()}: a region has already applied up to that (stale reads showed it, and nothing is undone); the earliest possible cut is ${applied}`,
    );
  }
  if (toTimeMs > safe) {
    throw new RegionDbError(
      ErrorCode.InvalidArgument,
      `--to-time ${new Date(toTimeMs).toISOString()} is after the latest consistent point ${new Date(safe).toISOString()}: not every region has received everything up to it`,
    );
  }
  return toTimeMs;
}

/** What S7 needs of a region's report to say its table may go on the standby. */
export interface RegionDropReport {
  readonly table: string;
  /** The marker's stamp (0: its stream did not end with one, or a cut before it dropped it). */
  readonly droppedAtMs: number;
  readonly appliedPrimaryIndex: number;
  readonly receivedIndex: number;
}

/**
 * S7: the tables every region of which has applied its table-dropped marker (the marker is the
 * last entry received, so applied = received). Regions are grouped by table through the id's
 * upper 32 bits (the table id); one region not reported or not done keeps the table.
 */
export function tablesToDrop(regionIds: readonly string[], reported: ReadonlyMap<string, RegionDropReport>): string[] {
  const byTable = new Map<string, string[]>();
  for (const id of regionIds) {
    // An id that is not a region id of ours (never from the metasrv) stands alone.
    const tableId = /^\d{1,20}$/.test(id) ? String(BigInt(id) >> 32n) : `?${id}`;
    byTable.set(tableId, [...(byTable.get(tableId) ?? []), id]);
  }
  const out: string[] = [];
  for (const ids of byTable.values()) {
    const reports = ids.map((id) => reported.get(id));
    const done = reports.every((r) => r !== undefined && r.droppedAtMs > 0 && r.appliedPrimaryIndex >= r.receivedIndex);
    const name = reports[0]?.table;
    if (done && name) out.push(name);
  }
  return out;
}

/** What one standby datanode reports about promotions (the StandbyStatus fields read here). */
export interface NodePromotionReport {
  readonly role: string;
  readonly fence_epoch: string;
  readonly fence_at_ms: string;
  readonly regions: readonly { readonly mode: string; readonly promoted_epoch: string; readonly primary_epoch: string; readonly cut_ms: string }[];
}

/** The latest primary epoch any of these regions follows (0: none yet); a promotion at or below it is history. */
export function followedPrimaryEpoch(regions: readonly { readonly primary_epoch: string }[]): number {
  return Math.max(0, ...regions.map((r) => Number(r.primary_epoch)));
}

/**
 * A promotion of this standby cluster that is under way or done, from what its nodes report: a
 * node promoted (or a region cut) at an epoch above every primary epoch the regions follow. A
 * lower one is history (this cluster has followed a later primary since, docs/replication.md "One
 * writable site"). While there is one, no region releases (S11: a promotion that has begun to
 * take effect is finished, at its cut, never aborted) and `standby promote --abort` refuses.
 */
export function promotionUnderWay(nodes: readonly NodePromotionReport[]): { cutMs: number; epoch: number } | undefined {
  const regions = nodes.flatMap((n) => n.regions);
  const followed = followedPrimaryEpoch(regions);
  let best: { cutMs: number; epoch: number } | undefined;
  const consider = (epoch: number, cutMs: number) => {
    if (epoch > followed && (!best || epoch > best.epoch)) best = { epoch, cutMs };
  };
  for (const n of nodes) if (n.role === 'promoted') consider(Number(n.fence_epoch), Number(n.fence_at_ms));
  for (const r of regions) if (r.mode === 'promoted') consider(Number(r.promoted_epoch), Number(r.cut_ms));
  return best;
}
