// `regiondb standby promote [--to-time T]` and the standby part of `regiondb status`
// (docs/replication.md): driven through the standby cluster's metasrv and datanodes.
//
// Promotion, in order (docs/replication.md, "One writable site"):
//   1. freeze: every standby datanode is told to freeze the regions it leads (S8 in
//      standby-state.ts: a replicated entry after every release already in the region's log; no
//      release and no seed applies after it), until every region the metasrv lists reports frozen;
//   2. the cut, from the frozen positions: every region must report its stream position and follow
//      the same primary (the same primary epoch); the cut is the safe time (or T), which is at or
//      above every release because no release can land any more; the epoch is one above every
//      epoch any node or region reports (and the metasrv's record);
//   2b. the record: (epoch, cut) written to this site's metasrv (RecordStandbyPromotion, replicated,
//      monotonic) before any node is told; a standby node that missed the promotion reads it before
//      it answers a fence check (receiver.ts). A failure to write it stops here, no node told;
//   3. every standby datanode is told to promote at that cut and epoch: each first marks itself
//      promoted durably (the stream is refused from then on), then cuts the regions it leads;
//   4. the regions are polled until every one is cut (a region whose leader moved mid-way is
//      promoted again through its new leader: the same cut and epoch, idempotent);
//   5. every node reporting the promotion is told it once more (a node that missed step 3 adopted it
//      from a region and takes no client write until told: fence.ts), then the report: the cut,
//      the entries and rows dropped after it per region, the time it took.
// A promotion interrupted after step 3 began (some node promoted) is finished by running the
// command again: it finds that promotion (its epoch is above every primary epoch the regions
// follow) and completes it at its cut and epoch.
// A promotion abandoned before step 3 (nothing promoted, nothing cut) is undone by
// `standby promote --abort` (abortPromotion): every frozen region is unfrozen (S11 in
// standby-state.ts). Past its first phase this command re-freezes a region it has seen frozen
// only once the promotion is under way (a node promoted, a region cut); before that a region an
// abort unfroze stays so, the nodes refuse to cut it (S11), and this command stops, naming it.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { RegionDbClient } from '../client/client.js';
import type { StandbyRegionStatus__Output, StandbyStatusResponse__Output } from '../rpc/generated/index.js';
import { type RegionPosition, followedPrimaryEpoch, promotionCutMs, promotionUnderWay, tablesToDrop } from './cut.js';

export interface PromotionReport {
  readonly cutMs: number;
  readonly epoch: number;
  readonly regions: readonly StandbyRegionStatus__Output[];
  readonly droppedEntries: number;
  readonly droppedRows: number;
  /** Tables dropped on the primary at or before the cut, dropped here at promotion (S7). */
  readonly droppedTables: readonly string[];
  readonly elapsedMs: number;
}

const POLL_MS = 100;

/** Everything the standby's alive datanodes report, and every region id the metasrv knows. */
export async function standbySnapshot(c: RegionDbClient): Promise<{ regionIds: string[]; nodes: { addr: string; status: StandbyStatusResponse__Output }[] }> {
  const list = await c.listNodes();
  const regionIds = list.region_infos.map((r) => r.route?.region_id ?? '').filter((id) => id !== '');
  const nodes: { addr: string; status: StandbyStatusResponse__Output }[] = [];
  await Promise.all(
    list.nodes
      .filter((n) => n.state === 'alive')
      .map(async (n) => {
        const status = await c.standbyStatus(n.addr).catch(() => undefined);
        if (status) nodes.push({ addr: n.addr, status });
      }),
  );
  return { regionIds, nodes };
}

export async function promoteStandby(c: RegionDbClient, opts: { toTimeMs?: number; timeoutMs: number; nowMs: () => number }): Promise<PromotionReport> {
  const started = opts.nowMs();
  const deadline = started + opts.timeoutMs;
  const refusals = new Map<string, string>();
  const refusedText = () => [...refusals].map(([addr, why]) => `; ${addr} refused: ${why}`).join('');
  // The regions seen frozen in the first phase: frozen again by this run only once its promotion is under way (an abort may have unfrozen them).
  let seenFrozen = new Set<string>();
  // 1. Freeze every region (S8): after this no region applies anything more before the cut.
  for (;;) {
    const snap = await standbySnapshot(c);
    notAStandby(snap);
    const current = currentPromotion(snap, await c.getStandbyPromotion());
    const byRegion = regionsOf(snap);
    const waiting = snap.regionIds.filter((id) => {
      const r = byRegion.get(id);
      if (r?.mode === 'promoted') return !(current && Number(r.promoted_epoch) === current.epoch);
      return !r?.frozen;
    });
    if (waiting.length === 0) {
      seenFrozen = new Set(snap.regionIds);
      break;
    }
    // Freeze only once a consistent point exists (every region has a position in the same era):
    // a frozen region takes no seed, so freezing a standby still being seeded would leave it with
    // no position and no way to get one until the promotion is aborted (`--abort`).
    const notYet = current ? undefined : noConsistentPoint(snap, opts.toTimeMs);
    if (notYet) {
      if (opts.nowMs() > deadline) throw notYet;
      await sleep(POLL_MS);
      continue;
    }
    if (opts.nowMs() > deadline) {
      const stale = waiting.filter((id) => byRegion.get(id)?.mode === 'promoted');
      const why = stale.length ? `; regions ${stale.join(', ')} are still promoted from an earlier failover: the current primary must re-seed them first` : '';
      throw new RegionDbError(ErrorCode.DeadlineExceeded, `promotion: regions ${waiting.join(', ')} not frozen yet${why}${refusedText()} (run the command again)`);
    }
    await Promise.all(snap.nodes.map((n) => c.standbyFreeze(n.addr).then(() => void refusals.delete(n.addr), (err: unknown) => void refusals.set(n.addr, err instanceof Error ? err.message : String(err)))));
    await sleep(POLL_MS);
  }
  // 2. The cut and the epoch, from positions that no release moves any more.
  let cutMs: number;
  let epoch: number;
  for (;;) {
    const snap = await standbySnapshot(c);
    notAStandby(snap);
    const recorded = await c.getStandbyPromotion();
    const current = currentPromotion(snap, recorded);
    if (current) {
      // An interrupted promotion: finish it at its own cut and epoch (every node, and the metasrv's record, keeps them).
      ({ cutMs, epoch } = current);
      break;
    }
    const regions = [...regionsOf(snap).values()];
    try {
      cutMs = cutOf(snap, opts.toTimeMs);
      epoch = 1 + Math.max(recorded.epoch, ...snap.nodes.map((n) => Number(n.status.fence_epoch)), ...regions.map((r) => Math.max(Number(r.promoted_epoch), Number(r.primary_epoch))));
      break;
    } catch (err) {
      if (!(err instanceof RegionDbError) || err.code !== ErrorCode.Unavailable || opts.nowMs() > deadline) throw err;
    }
    await sleep(POLL_MS);
  }
  // The record (docs/replication.md, "The promotion record"): durable in this site's metasrv
  // before any node is told, so that a node that misses its StandbyPromote call never answers a
  // returning old primary "standby". No record, no promotion: nothing below is sent.
  await recordPromotion(c, epoch, cutMs);
  // 3–4. Promote every node until every region is cut.
  for (;;) {
    const snap = await standbySnapshot(c);
    const byRegion = regionsOf(snap);
    const waiting = snap.regionIds.filter((id) => byRegion.get(id)?.mode !== 'promoted' || Number(byRegion.get(id)?.promoted_epoch) !== epoch);
    if (waiting.length === 0) {
      // A node that missed its StandbyPromote call adopted the promotion from a region it hosts:
      // it answers as promoted but takes no client write until told (fence.ts). Every node
      // reporting this promotion is told again (idempotent on a node told before).
      const told = snap.nodes.filter((n) => n.status.role === 'promoted' && Number(n.status.fence_epoch) === epoch);
      // Only these answers count here: an earlier refusal of a node not reporting it is moot.
      const untold = new Map<string, string>();
      await Promise.all(told.map((n) => c.standbyPromote(n.addr, cutMs, epoch).catch((err: unknown) => void untold.set(n.addr, err instanceof Error ? err.message : String(err)))));
      if (untold.size > 0) throw new RegionDbError(ErrorCode.Unavailable, `promotion at cut ${new Date(cutMs).toISOString()} (epoch ${epoch}): every region is cut, but a node that may have learned it only from its regions was not told to take writes${[...untold].map(([addr, why]) => `; ${addr} refused: ${why}`).join('')} (run the command again)`);
      const regions = snap.regionIds.map((id) => byRegion.get(id)!);
      // S7: a table whose drop marker every region kept (the cut is at or past its drop) goes.
      const drops = new Map(regions.map((r) => [r.region_id, { table: r.table, droppedAtMs: Number(r.dropped_at_ms), appliedPrimaryIndex: Number(r.applied_primary_index), receivedIndex: Number(r.received_index) }]));
      const droppedTables = tablesToDrop(snap.regionIds, drops);
      for (const name of droppedTables) await c.dropTable(name);
      return {
        droppedTables,
        cutMs,
        epoch,
        regions,
        droppedEntries: regions.reduce((n, r) => n + Number(r.dropped_entries), 0),
        droppedRows: regions.reduce((n, r) => n + Number(r.dropped_rows), 0),
        elapsedMs: opts.nowMs() - started,
      };
    }
    // S11: a region seen frozen and now unfrozen was reached by `standby promote --abort` first.
    const unfrozen = waiting.filter((id) => seenFrozen.has(id) && byRegion.get(id)?.mode === 'standby' && !byRegion.get(id)?.frozen);
    if (unfrozen.length > 0 && !currentPromotion(snap)) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `promotion aborted (\`standby promote --abort\`): regions ${unfrozen.join(', ')} were unfrozen before any node was promoted; nothing is cut. The promotion (epoch ${epoch}, cut ${cutMs}) is recorded in this site's metasrv (the abort looked before it was written): a node asked a fence check answers the old primary "promoted". Run \`regiondb standby promote\` again: it finishes at that cut if no region released past it`);
    }
    if (opts.nowMs() > deadline) {
      const why = unfrozen.length > 0 ? `; regions ${unfrozen.join(', ')} were unfrozen by an abort that raced this promotion: run the command again (it freezes them again and finishes at the same cut)` : '';
      throw new RegionDbError(ErrorCode.DeadlineExceeded, `promotion at cut ${new Date(cutMs).toISOString()} (epoch ${epoch}) incomplete: regions ${waiting.join(', ')} not cut yet (run the command again: it finishes at the same cut)${why}${refusedText()}`);
    }
    // A region released past the cut can never be cut at it: tell no node anything more, so that
    // no other region is cut while it cannot be (a site half cut; D10 in docs/correctness.md: only
    // an abort racing this run gets here).
    const pastCut = waiting.filter((id) => byRegion.get(id)?.mode === 'standby' && Number(byRegion.get(id)?.released_ms) > cutMs);
    if (pastCut.length > 0) {
      throw new RegionDbError(
        ErrorCode.ConditionFailed,
        `promotion at cut ${new Date(cutMs).toISOString()} (epoch ${epoch}) cannot complete: regions ${pastCut.join(', ')} released past the cut (an abort raced this promotion); no node is told anything more. See docs/replication.md, "Aborting a promotion"`,
      );
    }
    // A region that appeared after the first phase (a table first seen since) is frozen first: a
    // node cuts only frozen regions, and only at or above what they applied. A region seen frozen
    // that an abort unfroze is frozen again only once the promotion is under way (a node promoted
    // or a region cut): from the first freeze until then that node's regions stayed frozen, and
    // from then on it reports the promotion, so no release round anywhere has seen a standby with
    // nothing frozen and nothing promoted, and nothing was released past the cut (S11).
    const refreeze = currentPromotion(snap) ? waiting : waiting.filter((id) => !seenFrozen.has(id));
    if (refreeze.length > 0) await Promise.all(snap.nodes.map((n) => c.standbyFreeze(n.addr, refreeze).catch(() => undefined)));
    await Promise.all(snap.nodes.map((n) => c.standbyPromote(n.addr, cutMs, epoch).then(() => void refusals.delete(n.addr), (err: unknown) => void refusals.set(n.addr, err instanceof Error ? err.message : String(err)))));
  }
}

export interface AbortReport {
  /** The regions that were frozen when the abort began (none: there was nothing to abort). */
  readonly unfrozen: readonly string[];
  readonly regions: readonly StandbyRegionStatus__Output[];
  readonly elapsedMs: number;
}

/**
 * `regiondb standby promote --abort`: undoes a promotion abandoned after its first phase (S11 in
 * standby-state.ts). Refuses — naming what it saw — while any node reports a promotion of this
 * cluster or any region is cut at such an epoch (it has begun to take effect: the old primary may
 * be fenced by it; it is finished with `standby promote`, never aborted); otherwise tells every
 * node to unfreeze the regions it leads, until every region the metasrv lists reports unfrozen.
 * Each node refuses too once it knows of a promotion, so a promotion that raced this command is
 * seen by the next look and reported.
 */
export async function abortPromotion(c: RegionDbClient, opts: { timeoutMs: number; nowMs: () => number }): Promise<AbortReport> {
  const started = opts.nowMs();
  const deadline = started + opts.timeoutMs;
  const refusals = new Map<string, string>();
  let frozenAtStart: string[] | undefined;
  for (;;) {
    const snap = await standbySnapshot(c);
    notAStandby(snap);
    // Without the metasrv's answer the abort cannot tell whether the promotion is recorded: it refuses (the error says why).
    refuseIfPromoted(snap, await c.getStandbyPromotion(), frozenAtStart !== undefined);
    const byRegion = regionsOf(snap);
    const frozen = snap.regionIds.filter((id) => byRegion.get(id)?.mode === 'standby' && byRegion.get(id)?.frozen);
    const unreported = snap.regionIds.filter((id) => !byRegion.has(id));
    frozenAtStart ??= frozen;
    if (frozen.length === 0 && unreported.length === 0) {
      return { unfrozen: frozenAtStart, regions: snap.regionIds.map((id) => byRegion.get(id)!), elapsedMs: opts.nowMs() - started };
    }
    if (opts.nowMs() > deadline) {
      const what = [frozen.length > 0 ? `regions ${frozen.join(', ')} still frozen` : '', unreported.length > 0 ? `regions ${unreported.join(', ')} not reported by any node (no leader?)` : ''].filter((s) => s !== '').join('; ');
      throw new RegionDbError(ErrorCode.DeadlineExceeded, `abort of the promotion incomplete: ${what}${[...refusals].map(([addr, why]) => `; ${addr} refused: ${why}`).join('')} (run the command again)`);
    }
    if (frozen.length > 0) {
      await Promise.all(snap.nodes.map((n) => c.standbyUnfreeze(n.addr).then(() => void refusals.delete(n.addr), (err: unknown) => void refusals.set(n.addr, err instanceof Error ? err.message : String(err)))));
    }
    await sleep(POLL_MS);
  }
}

/**
 * Writes the promotion to this site's metasrv (RecordStandbyPromotion: replicated, monotonic in
 * epoch) before any node is told; a failure stops the promotion here, with nothing promoted by
 * this run. The same (epoch, cut) again is accepted: a run finishing an interrupted promotion
 * writes it again.
 */
export async function recordPromotion(c: Pick<RegionDbClient, 'recordStandbyPromotion'>, epoch: number, cutMs: number): Promise<void> {
  try {
    await c.recordStandbyPromotion(epoch, cutMs);
  } catch (err) {
    const e = err instanceof RegionDbError ? err : new RegionDbError(ErrorCode.Unavailable, String(err));
    // Refused outright (an older epoch, a metasrv without the call, no permission): not recorded.
    // Anything else (a timeout, a lost connection) may have been recorded after all: then the
    // abort would look, find no record yet, and race it — only running the promotion again is safe.
    const refused = e.code === ErrorCode.ConditionFailed || e.code === ErrorCode.InvalidArgument || e.code === ErrorCode.PermissionDenied || e.code === ErrorCode.Unauthenticated || e.code === ErrorCode.Internal;
    const at = `promotion at cut ${new Date(cutMs).toISOString()} (epoch ${epoch})`;
    throw new RegionDbError(
      e.code,
      refused
        ? `${at} not recorded in this site's metasrv (${e.message}): this run told no node to promote (the regions stay frozen). Run the command again once the metasrv accepts it (a metasrv without RecordStandbyPromotion must be upgraded first), or undo the first phase with \`standby promote --abort\``
        : `${at}: the metasrv did not confirm the record (${e.message}), and it may have been recorded all the same. This run told no node to promote (the regions stay frozen). Run \`regiondb standby promote\` again: it finishes a recorded promotion at its cut, or records it; do not use \`--abort\` now (it could race a record that is landing)`,
    );
  }
}

/** The abort's refusal (S11): a promotion of this cluster has begun to take effect somewhere, or is recorded in the metasrv. */
function refuseIfPromoted(snap: Snapshot, recorded: Recorded, raced: boolean): void {
  const current = currentPromotion(snap, recorded);
  if (!current) return;
  const seen = [
    ...(recorded.epoch === current.epoch ? [`this site's metasrv records the promotion at epoch ${current.epoch} (written before any node is told)`] : []),
    ...snap.nodes.filter((n) => n.status.role === 'promoted' && Number(n.status.fence_epoch) === current.epoch).map((n) => `node ${n.addr} reports promoted at epoch ${current.epoch}`),
    ...snap.nodes.flatMap((n) => n.status.regions.filter((r) => r.mode === 'promoted' && Number(r.promoted_epoch) === current.epoch).map((r) => `region ${r.region_id} is cut at epoch ${current.epoch}`)),
  ];
  const when = raced ? 'a promotion raced this abort and has begun to take effect' : 'the promotion has begun to take effect';
  throw new RegionDbError(
    ErrorCode.ConditionFailed,
    `cannot abort: ${when} (${seen.join('; ')}; cut ${new Date(current.cutMs).toISOString()}); the old primary may already be fenced by it. Finish it with \`regiondb standby promote\` (it completes at that cut and epoch)`,
  );
}

type Snapshot = Awaited<ReturnType<typeof standbySnapshot>>;

/**
 * The cut the regions' reports allow, with no promotion of this cluster under way: every region
 * follows the same primary epoch, and promotionCutMs. A region still promoted (from an earlier
 * failover, not re-seeded by the current primary yet) has no position: its received time is
 * another era's and it can never be cut. Throws UNAVAILABLE while there is no cut.
 */
function cutOf(snap: Snapshot, toTimeMs: number | undefined): number {
  const regions = [...regionsOf(snap).values()];
  const stale = regions.filter((r) => r.mode === 'promoted').map((r) => r.region_id);
  if (stale.length > 0) throw new RegionDbError(ErrorCode.Unavailable, `no consistent point yet: regions ${stale.join(', ')} are still promoted from an earlier failover (the current primary must re-seed them first)`);
  const era = followedPrimaryEpoch(regions);
  const behind = regions.filter((r) => Number(r.primary_epoch) < era).map((r) => r.region_id);
  if (behind.length > 0) throw new RegionDbError(ErrorCode.Unavailable, `no consistent point yet: regions ${behind.join(', ')} follow an earlier primary than epoch ${era} (not re-seeded by the current primary yet)`);
  const reported = new Map<string, RegionPosition>();
  for (const r of regions) reported.set(r.region_id, { regionId: r.region_id, receivedThroughMs: Number(r.received_through_ms), lastStampMs: Number(r.last_stamp_ms), sync: r.sync, releasedMs: Number(r.released_ms), droppedAtMs: Number(r.dropped_at_ms) });
  return promotionCutMs(snap.regionIds, reported, toTimeMs);
}

/** Why there is no consistent point yet (UNAVAILABLE), or undefined if there is one; other errors (a bad --to-time) are thrown. */
function noConsistentPoint(snap: Snapshot, toTimeMs: number | undefined): RegionDbError | undefined {
  try {
    cutOf(snap, toTimeMs);
    return undefined;
  } catch (err) {
    if (err instanceof RegionDbError && err.code === ErrorCode.Unavailable) return err;
    throw err;
  }
}

function notAStandby(snap: Snapshot): void {
  if (snap.nodes.some((n) => n.status.role === 'primary' || n.status.role === 'fenced' || n.status.role === 'none')) {
    throw new RegionDbError(ErrorCode.ConditionFailed, 'this cluster is not a standby (a datanode reports role primary, fenced or none): give the standby\'s metasrv with --metasrv');
  }
}

function regionsOf(snap: Snapshot): Map<string, StandbyRegionStatus__Output> {
  const byRegion = new Map<string, StandbyRegionStatus__Output>();
  for (const n of snap.nodes) for (const r of n.status.regions) byRegion.set(r.region_id, r);
  return byRegion;
}

/** A promotion recorded in the metasrv (epoch 0: none). */
type Recorded = { readonly epoch: number; readonly cutMs: number };

/**
 * A promotion of this cluster that is under way or done (promotionUnderWay in cut.ts): what the
 * nodes report, and — when given — the metasrv's record if its epoch is above every primary
 * epoch the regions follow (a lower one is history: this site followed a later primary since).
 */
export function currentPromotion(snap: Snapshot, recorded?: Recorded): { cutMs: number; epoch: number } | undefined {
  const fromNodes = promotionUnderWay(snap.nodes.map((n) => n.status));
  if (!recorded || recorded.epoch === 0 || (fromNodes && fromNodes.epoch >= recorded.epoch)) return fromNodes;
  const followed = followedPrimaryEpoch(snap.nodes.flatMap((n) => n.status.regions));
  return recorded.epoch > followed ? { epoch: recorded.epoch, cutMs: recorded.cutMs } : fromNodes;
}

function sleep(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, ms));
}
