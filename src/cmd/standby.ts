// `regiondb standby status|promote` (docs/replication.md), run against the standby cluster's
// metasrv (--metasrv); and the STANDBY section `regiondb status` prints.
import type { Command } from 'commander';
import type { RegionDbClient } from '../client/client.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { isUnimplemented } from '../rpc/status.js';
import { followedPrimaryEpoch, safeTimeMs } from '../standby/cut.js';
import { abortPromotion, promoteStandby, standbySnapshot } from '../standby/promote.js';
import { renderTable } from './render.js';

/** The STANDBY section of `regiondb status`: per region and cluster-wide lag; undefined if no node takes part. */
export async function standbyStatusText(c: RegionDbClient, nowMs: number): Promise<string | undefined> {
  const snap = await standbySnapshot(c);
  const roles = [...new Set(snap.nodes.map((n) => n.status.role).filter((r) => r !== 'none'))];
  if (roles.length === 0) return undefined;
  const lines = [`DUAL ACTIVE-STANDBY: role ${roles.join('/')}`];
  const shipping = snap.nodes.flatMap((n) => n.status.shipping);
  if (shipping.length > 0) {
    const maxEntries = Math.max(...shipping.map((s) => Number(s.lag_entries)));
    const maxMs = Math.max(...shipping.map((s) => Number(s.lag_ms)));
    lines.push(`shipping (mode ${snap.nodes[0]?.status.mode || 'async'}): cluster-wide lag ${maxEntries} entries, ${maxMs} ms`);
    lines.push(renderTable(['REGION', 'TABLE', 'APPLIED', 'STANDBY HAS', 'LAG ENTRIES', 'LAG MS', 'ERROR'], shipping.map((s) => [s.region_id, s.table, s.applied_index, s.shipped_index, s.lag_entries, s.lag_ms, s.error])));
  }
  const regions = snap.nodes.flatMap((n) => n.status.regions);
  if (regions.length > 0) {
    const lagOf = (ms: string) => (Number(ms) > 0 ? Math.max(0, Math.round(nowMs - Number(ms))) : -1);
    const positions = new Map(regions.map((r) => [r.region_id, { regionId: r.region_id, receivedThroughMs: Number(r.received_through_ms), releasedMs: Number(r.released_ms), droppedAtMs: Number(r.dropped_at_ms) }]));
    const safe = safeTimeMs(snap.regionIds, positions) ?? 0;
    if (regions.some((r) => r.mode === 'standby' && r.frozen) && !snap.nodes.some((n) => n.status.role === 'promoted')) {
      lines.push('standby: a promotion has begun (regions frozen: nothing is released) and no node is promoted yet: finish it with `standby promote`, or undo it with `standby promote --abort`');
    }
    // S12 (docs/replication.md, "Aborting a promotion"): a recorded promotion no node has taken up
    // holds every release round; say so, or a standby whose stale reads stop advancing says nothing.
    if (regions.some((r) => r.mode === 'standby')) {
      // A metasrv without the record (UNIMPLEMENTED): nothing to say. Any other failure is shown:
      // while the metasrv cannot read the record (D11, D12) every release round is held too.
      const recorded = await c.getStandbyPromotion().catch((err: unknown) => {
        if (!isUnimplemented(err)) {
          lines.push(`standby: the metasrv cannot answer this site's promotion record (${(err as Error).message}): release rounds are held and a returning old primary's fence check is answered UNAVAILABLE until it can`);
          // Which promotion each node holds (its fence record): what tells two recorded cuts apart (D12).
          for (const n of snap.nodes.filter((n) => n.status.role === 'promoted')) {
            lines.push(`standby: node ${n.status.node_id} holds the promotion at epoch ${n.status.fence_epoch}, cut ${n.status.fence_at_ms} (${new Date(Number(n.status.fence_at_ms)).toISOString()})`);
          }
        }
        return undefined;
      });
      const followed = followedPrimaryEpoch(regions);
      const takenUp = snap.nodes.some((n) => n.status.role === 'promoted' && Number(n.status.fence_epoch) === recorded?.epoch);
      if (recorded && recorded.epoch > followed && !takenUp) {
        lines.push(
          `standby: this site's metasrv records a promotion at epoch ${recorded.epoch} (cut ${new Date(recorded.cutMs).toISOString()}) that no node reports promoted: releases are held until it is finished with \`standby promote\` (docs/replication.md, "The promotion record")`,
        );
      }
    }
    lines.push(`standby: consistent point (safe time) ${safe > 0 ? `${new Date(safe).toISOString()}, ${Math.round(nowMs - safe)} ms behind` : 'none yet (a region has not reported, or the streams have not passed a seed\'s time)'}`);
    lines.push(
      renderTable(
        ['REGION', 'TABLE', 'MODE', 'SEEDED AT', 'RECEIVED', 'APPLIED', 'PENDING', 'RECEIVED-THROUGH LAG MS', 'CUT', 'DROPPED ROWS'],
        regions.map((r) => [
          r.region_id,
          r.table,
          r.mode === 'standby' && r.frozen ? 'standby, frozen' : r.mode,
          r.seeded_index === '0' ? '-' : r.seeded_index,
          r.received_index,
          r.applied_primary_index,
          String(r.pending_entries),
          String(lagOf(r.received_through_ms)),
          r.cut_ms === '0' ? '-' : new Date(Number(r.cut_ms)).toISOString(),
          r.dropped_rows,
        ]),
      ),
    );
  }
  return lines.join('\n');
}

export function registerStandbyCommand(program: Command, withClient: (fn: (c: RegionDbClient) => Promise<unknown>) => Promise<void>): void {
  const standby = program
    .command('standby')
    .description(
      'dual active-standby (docs/replication.md): the stream\'s state, and promotion of the standby. A region whose primary log is truncated is seeded automatically. ' +
        'The way back after a promotion needs a restart with a config change: the promoted cluster\'s datanodes with [standby] role = "primary" (addrs = the old primary\'s datanodes), ' +
        'the old primary\'s with role = "standby" (data dirs kept: every region is re-seeded from the new primary); docs/replication.md, "The way back"',
    );
  standby
    .command('status')
    .description('the stream: per region and cluster-wide lag in entries and ms (run against either cluster)')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      await withClient(async (c) => (o.json ? standbySnapshot(c) : ((await standbyStatusText(c, Date.now())) ?? 'no datanode of this cluster has a [standby] section')));
    });
  standby
    .command('promote')
    .description(
      'promote the standby (give its metasrv with --metasrv): freeze every region, cut every region at one consistent point (the latest every region has fully received, or --to-time), drop what follows, fence the old primary, open for writes. ' +
        'Run it again to finish a promotion that was interrupted. With --abort: undo a promotion abandoned after its first phase (regions frozen, no node promoted yet): the regions release and take seeds again',
    )
    .option('--to-time <time>', 'cut at this time instead (ISO 8601 or ms since the epoch); must not be later than the latest consistent point')
    .option(
      '--abort',
      'unfreeze every region frozen by a promotion that was begun and abandoned (stale reads advance again, pending entries drain); refused, naming what it saw, once any node reports the promotion, any region is cut at its epoch, or the metasrv records it (written before any node is told): that one must be finished with `standby promote`. Do not run it while a `standby promote` is still running',
    )
    .option('--timeout-seconds <s>', 'give up after this long', (v) => Number(v), 60)
    .option('--json', 'print JSON')
    .action(async (o: { toTime?: string; abort?: boolean; timeoutSeconds: number; json?: boolean }) => {
      await withClient(async (c) => {
        if (o.abort) {
          if (o.toTime !== undefined) throw new RegionDbError(ErrorCode.InvalidArgument, '--abort takes no --to-time');
          const report = await abortPromotion(c, { timeoutMs: o.timeoutSeconds * 1000, nowMs: () => Date.now() });
          if (o.json) return report;
          if (report.unfrozen.length === 0) return 'nothing to abort: no region is frozen and no node reports a promotion';
          return [
            `promotion aborted in ${report.elapsedMs} ms: ${report.unfrozen.length} frozen regions unfrozen; releases resume at the next release round (stale reads advance, pending entries drain)`,
            renderTable(['REGION', 'TABLE', 'MODE', 'FROZEN', 'APPLIED PRIMARY INDEX', 'PENDING'], report.regions.map((r) => [r.region_id, r.table, r.mode, String(r.frozen), r.applied_primary_index, String(r.pending_entries)])),
          ].join('\n');
        }
        let toTimeMs: number | undefined;
        if (o.toTime !== undefined) {
          toTimeMs = /^\d+$/.test(o.toTime) ? Number(o.toTime) : Date.parse(o.toTime);
          if (!Number.isFinite(toTimeMs)) throw new RegionDbError(ErrorCode.InvalidArgument, `--to-time ${o.toTime}: not an ISO 8601 time or ms since the epoch`);
        }
        const report = await promoteStandby(c, { ...(toTimeMs !== undefined ? { toTimeMs } : {}), timeoutMs: o.timeoutSeconds * 1000, nowMs: () => Date.now() });
        if (o.json) return report;
        return [
          `promoted at epoch ${report.epoch} in ${report.elapsedMs} ms; cut at ${new Date(report.cutMs).toISOString()} (${report.cutMs})`,
          `lost tail received by the standby but after the cut: ${report.droppedEntries} entries, ${report.droppedRows} rows (writes the standby never received are not counted here)`,
          'this cluster keeps its [standby] role "standby" until its datanodes restart: to ship to the old primary (the way back), restart them with role = "primary" and the old primary\'s with role = "standby" (docs/replication.md)',
          renderTable(['REGION', 'TABLE', 'APPLIED PRIMARY INDEX', 'DROPPED ENTRIES', 'DROPPED ROWS'], report.regions.map((r) => [r.region_id, r.table, r.applied_primary_index, r.dropped_entries, r.dropped_rows])),
        ].join('\n');
      });
    });
}
