// The `report view` checker of the whole-datanode simulator (docs/simulation.md; delta heartbeats,
// docs/quiescence.md): whatever the metasrv core holds as a datanode's view after it took a
// heartbeat in (MetasrvCore.reportOf) must be exactly the full report the datanode made under the
// (incarnation, seq) the view carries — every replica stat as the datanode's core built it when it
// sent that report (DatanodeCore.replicaStats at the call, recorded here) — and, within one
// metasrv process and one datanode process, the view never goes back to an older report.
// Deltas, lost requests and answers, retries, metasrv crashes and datanode restarts all lie
// between the two; a view built wrong (a delta on the wrong base) or a late report taken over a
// newer one is flagged. It draws no randomness and records nothing unless it fails, so traces are
// unchanged.
import type { NodeReport } from '../../src/metasrv/report-view.js';
import { observedOf } from '../../src/metasrv/report-view.js';
import type { ReplicaStat__Output } from '../../src/rpc/generated/index.js';

interface ReportFieldsSeen {
  readonly report_incarnation?: unknown;
  readonly report_seq?: unknown;
  readonly report_base_seq?: unknown;
}

/** A view's replicas as one comparable string per region. */
function canonical(stats: Iterable<[string, unknown]>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [regionId, replica] of stats) out.set(regionId, JSON.stringify(replica));
  return out;
}

export class ReportViewChecker {
  /** `${incarnation}/${seq}` → the datanode's full report then (region → observed replica, canonical). */
  private readonly made = new Map<string, Map<string, string>>();
  /** `${metasrv}/${nodeId}/${incarnation}` → the highest seq of the views seen. */
  private readonly highest = new Map<string, number>();
  readonly counts = { fullReports: 0, deltaReports: 0, viewsChecked: 0, statsCompared: 0 };

  constructor(private readonly flag: (invariant: string, detail: string) => void) {}

  /**
   * A datanode core calls Heartbeat with `request`; `stats` is its replicaStats() at that moment.
   * `reported`: the stats the core built the report from (DatanodeCore.reportedStats: stats
   * rebuilt only for the replicas the region server marked as changed). They must be `stats`,
   * every field, in the same order (the `report stats` checker): a change the region server did
   * not mark would leave an old stat in the report.
   */
  sent(request: unknown, stats: readonly ReplicaStat__Output[], reported?: readonly ReplicaStat__Output[]): void {
    const r = request as ReportFieldsSeen;
    const incarnation = String(r.report_incarnation ?? '0');
    if (reported !== undefined) {
      this.counts.statsCompared++;
      const differs: string[] = [];
      if (reported.length !== stats.length) differs.push(`${reported.length} stats reported, ${stats.length} replicas hosted`);
      for (let i = 0; i < Math.min(reported.length, stats.length) && differs.length < 3; i++) {
        const a = JSON.stringify(reported[i]);
        const b = JSON.stringify(stats[i]);
        if (a !== b) differs.push(`reported ${a} but the replica is now ${b}`);
      }
      if (differs.length > 0) this.flag('report stats', `a heartbeat's report ${String(r.report_seq ?? '?')} of incarnation ${incarnation} was built from stats that are not the replicas' now: ${differs.join('; ')}`);
    }
    if (incarnation === '0') return;
    if (String(r.report_base_seq ?? '0') === '0') this.counts.fullReports++;
    else this.counts.deltaReports++;
    this.made.set(`${incarnation}/${String(r.report_seq ?? '0')}`, canonical(stats.map((s) => [s.region_id, observedOf(s)])));
  }

  /** After the metasrv process `metasrv` took a heartbeat of `nodeId` in: its view of the node now. */
  check(nodeId: number, metasrv: number, view: NodeReport | undefined): void {
    if (view === undefined || view.incarnation === '0') return;
    this.counts.viewsChecked++;
    const label = `${view.incarnation}/${view.seq}`;
    const made = this.made.get(label);
    if (made === undefined) {
      this.flag('report view', `the metasrv holds a view of n${nodeId} labelled report ${label}, which no datanode process made`);
      return;
    }
    const held = canonical(view.replicas);
    const differs: string[] = [];
    for (const [regionId, replica] of made) if (held.get(regionId) !== replica) differs.push(`${regionId}: ${held.get(regionId) ?? 'missing'} but reported ${replica}`);
    for (const regionId of held.keys()) if (!made.has(regionId)) differs.push(`${regionId}: in the view, not in the report`);
    if (differs.length > 0) {
      this.flag('report view', `the metasrv's view of n${nodeId} (report ${label}) is not the full report the datanode made: ${differs.slice(0, 3).join('; ')}`);
      return;
    }
    const key = `${metasrv}/${nodeId}/${view.incarnation}`;
    const before = this.highest.get(key) ?? 0;
    if (view.seq < before) this.flag('report view', `the metasrv's view of n${nodeId} went back from report ${view.incarnation}/${before} to ${label}`);
    else this.highest.set(key, view.seq);
  }
}
