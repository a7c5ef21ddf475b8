// `regiondb standby promote [--to-time T]` and the standby part of `regiondb status`
// (docs/replication.md): driven through the standby cluster's metasrv and datanodes.
//
// Promotion, in order:
//   1. every region of the standby (the metasrv's list) must report its stream position (its
//      leader's StandbyStatus); the cut is the minimum of their received-through times, or T;
//   2. every standby datanode is told to promote at that cut: each first marks itself promoted
//      durably (the stream is refused from then on), then cuts the regions it leads;
//   3. the regions are polled until every one reports mode "promoted" (a region whose leader moved
//      mid-way is promoted again through its new leader: the same cut, idempotent);
//   4. the report: the cut, the entries and rows dropped after it per region, the time it took.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { RegionDbClient } from '../client/client.js';
import type { StandbyRegionStatus__Output, StandbyStatusResponse__Output } from '../rpc/generated/index.js';
import { type RegionPosition, promotionCutMs, tablesToDrop } from './cut.js';

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
  // 1. The cut, once every region reports (leaders may still be settling).
  let cutMs: number | undefined;
  let epoch = 1;
  let lastErr: unknown;
  for (;;) {
    const snap = await standbySnapshot(c);
    if (snap.nodes.some((n) => n.status.role === 'primary' || n.status.role === 'fenced' || n.status.role === 'none')) {
      throw new RegionDbError(ErrorCode.ConditionFailed, 'this cluster is not a standby (a datanode reports role primary, fenced or none): give the standby\'s metasrv with --metasrv');
    }
    const already = snap.nodes.find((n) => n.status.role === 'promoted');
    const reported = new Map<string, RegionPosition>();
    for (const n of snap.nodes) {
      epoch = Math.max(epoch, Number(n.status.fence_epoch) + 1);
      for (const r of n.status.regions) reported.set(r.region_id, { regionId: r.region_id, receivedThroughMs: Number(r.received_through_ms), lastStampMs: Number(r.last_stamp_ms), sync: r.sync, releasedMs: Number(r.released_ms), droppedAtMs: Number(r.dropped_at_ms) });
    }
    if (already) {
      // A promotion was interrupted: finish it at the cut it chose (every node keeps it).
      // Any node's: the node found first may lead no region (the cut rule would then wait for a
      // consistent point that the promoted regions' cut, above the safe time in sync mode, blocks).
      const promotedRegion = snap.nodes.flatMap((n) => n.status.regions).find((r) => r.mode === 'promoted');
      if (promotedRegion) {
        cutMs = Number(promotedRegion.cut_ms);
        epoch = Number(already.status.fence_epoch);
        break;
      }
    }
    try {
      cutMs = promotionCutMs(snap.regionIds, reported, opts.toTimeMs);
      break;
    } catch (err) {
      if (!(err instanceof RegionDbError) || err.code !== ErrorCode.Unavailable) throw err;
      lastErr = err;
    }
    if (opts.nowMs() > deadline) throw lastErr;
    await sleep(POLL_MS);
  }
  // 2–3. Promote every node until every region is cut.
  for (;;) {
    const snap = await standbySnapshot(c);
    const byRegion = new Map<string, StandbyRegionStatus__Output>();
    for (const n of snap.nodes) for (const r of n.status.regions) byRegion.set(r.region_id, r);
    const waiting = snap.regionIds.filter((id) => byRegion.get(id)?.mode !== 'promoted');
    if (waiting.length === 0) {
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
    if (opts.nowMs() > deadline) {
      throw new RegionDbError(ErrorCode.DeadlineExceeded, `promotion at cut ${new Date(cutMs).toISOString()} incomplete: regions ${waiting.join(', ')} not cut yet (run the command again: it finishes at the same cut)`);
    }
    await Promise.all(snap.nodes.map((n) => c.standbyPromote(n.addr, cutMs, epoch).catch(() => undefined)));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, ms));
}
