// The datanode's side of delta heartbeats (docs/quiescence.md, "Heartbeats that carry what
// changed"): which replica stats a heartbeat carries.
//
// Every report gets the next sequence number of this process (`incarnation`, drawn at its start).
// A report is full, or a delta on the last report the metasrv acknowledged having applied
// (HeartbeatResponse.report_seq_applied): the stats that differ from that report's, and the
// regions it had that are gone. The tracker keeps the full stats of that acknowledged report, and
// of the report in flight until its answer comes; an answer that does not acknowledge the report
// in flight leaves the base where it was (the next delta is still against the acknowledged one,
// so a lost request or a lost answer loses nothing). A full report goes out
//   - first (no acknowledged report: a new process, or after a registration),
//   - when the metasrv asks (`full_report_needed`: it holds no view this delta applies to),
//   - every `fullEvery` reports, whatever happened (a bound on how long any disagreement the
//     protocol did not foresee could last).
// Why the metasrv can never apply a delta to the wrong base: its view of the node carries the
// (incarnation, seq) of the report it equals; it applies a delta only onto the view numbered
// `report_base_seq` of the same incarnation, and a sequence number names one content (a retried
// call resends the same request). src/metasrv/report-view.ts is the other half.
import type { ReplicaStat__Output } from '../rpc/generated/index.js';

/** The heartbeat fields of one report (meta.proto HeartbeatRequest 4, 6–9). */
export interface ReportFields {
  readonly replicas: ReplicaStat__Output[];
  readonly report_incarnation: string;
  readonly report_seq: string;
  readonly report_base_seq: string;
  readonly removed_region_ids: string[];
}

/** A report as sent: its number and the full stats it stands for (the next base, once acknowledged). */
export interface SentReport {
  readonly seq: number;
  readonly full: boolean;
  readonly stats: ReadonlyMap<string, ReplicaStat__Output>;
  readonly fields: ReportFields;
}

/** What the metasrv answered about a report (HeartbeatResponse 3, 4). */
export interface ReportAnswer {
  readonly report_seq_applied?: string | number;
  readonly full_report_needed?: boolean;
}

/** Whether two stats of a region say the same (every field of meta.proto ReplicaStat). */
export function sameStat(a: ReplicaStat__Output, b: ReplicaStat__Output): boolean {
  return (
    a.peer_id === b.peer_id &&
    a.role === b.role &&
    a.term === b.term &&
    a.leader_node_id === b.leader_node_id &&
    a.applied_index === b.applied_index &&
    a.commit_index === b.commit_index &&
    a.flushed_index === b.flushed_index &&
    a.memtable_bytes === b.memtable_bytes &&
    sameList(a.voters, b.voters) &&
    sameList(a.learners, b.learners) &&
    a.health === b.health &&
    a.failure === b.failure &&
    a.conf_index === b.conf_index &&
    a.snapshot_installed_index === b.snapshot_installed_index &&
    a.ssts === b.ssts &&
    a.region_id === b.region_id &&
    sameMembers(a.members, b.members)
  );
}

function sameMembers(a: ReplicaStat__Output['members'], b: ReplicaStat__Output['members']): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.peer_id !== b[i]!.peer_id || a[i]!.node_id !== b[i]!.node_id || a[i]!.addr !== b[i]!.addr) return false;
  return true;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class ReportTracker {
  private seq = 0;
  /** The last report the metasrv acknowledged having applied (the base of deltas), if any. */
  private acked: SentReport | undefined;
  private sinceFull = 0;
  private fullRequested = true;
  /** The stats and region map of the last report made (see next: an unchanged node's next report reuses the map). */
  private last: { readonly stats: readonly ReplicaStat__Output[]; readonly byRegion: ReadonlyMap<string, ReplicaStat__Output> } | undefined;

  constructor(
    /** This process's number, different for every process (positive, at most 2^53 - 1). */
    readonly incarnation: number,
    /** A full report at least every this many reports (1: every report is full). */
    private readonly fullEvery: number,
  ) {
    if (!Number.isSafeInteger(incarnation) || incarnation <= 0) throw new RangeError(`report incarnation must be a positive safe integer, got ${incarnation}`);
    if (!Number.isSafeInteger(fullEvery) || fullEvery < 1) throw new RangeError(`fullEvery must be a positive integer, got ${fullEvery}`);
  }

  /** The next report is full (a registration: the metasrv forgot this node's view). */
  forgetBase(): void {
    this.acked = undefined;
    this.fullRequested = true;
  }

  /**
   * The next report from the node's stats now (every hosted replica, as a full report would carry
   * them). A region listed twice keeps its last stat, as the metasrv's view of a full report does.
   */
  next(stats: readonly ReplicaStat__Output[]): SentReport {
    const seq = ++this.seq;
    const byRegion = this.regionMap(stats);
    const base = this.acked;
    const full = base === undefined || this.fullRequested || this.sinceFull + 1 >= this.fullEvery;
    const incarnation = String(this.incarnation);
    if (full) {
      return {
        seq,
        full,
        stats: byRegion,
        fields: { replicas: [...stats], report_incarnation: incarnation, report_seq: String(seq), report_base_seq: '0', removed_region_ids: [] },
      };
    }
    if (base.stats === byRegion) {
      // The acknowledged report's own map: nothing changed since (an idle node's usual beat).
      return {
        seq,
        full,
        stats: byRegion,
        fields: { replicas: [], report_incarnation: incarnation, report_seq: String(seq), report_base_seq: String(base.seq), removed_region_ids: [] },
      };
    }
    const changed: ReplicaStat__Output[] = [];
    for (const [regionId, stat] of byRegion) {
      const before = base.stats.get(regionId);
      // The same object is the same stat (the datanode reuses the stats of replicas that did not change).
      if (before === undefined || (before !== stat && !sameStat(before, stat))) changed.push(stat);
    }
    const removed: string[] = [];
    for (const regionId of base.stats.keys()) if (!byRegion.has(regionId)) removed.push(regionId);
    return {
      seq,
      full,
      stats: byRegion,
      fields: { replicas: changed, report_incarnation: incarnation, report_seq: String(seq), report_base_seq: String(base.seq), removed_region_ids: removed },
    };
  }

  /**
   * Region id → stat of `stats` (a region listed twice keeps its last stat). When `stats` says
   * what the last report's stats said — the same regions in the same order, each stat the same
   * object or equal — that report's map is returned (reports never change a map), so an idle
   * node's beat builds no map and, its base being that report, compares nothing. A frozen array
   * is kept by reference (nobody can change it): the same frozen array again is recognized at
   * once, without a look at its stats (the datanode passes the last report's own array when no
   * replica was marked: DatanodeCore.reportStats); any other array is copied.
   */
  private regionMap(stats: readonly ReplicaStat__Output[]): ReadonlyMap<string, ReplicaStat__Output> {
    const last = this.last;
    if (last !== undefined && last.stats === stats) return last.byRegion;
    const kept = this.keptByReference(stats) ? stats : [...stats];
    if (last !== undefined && last.stats.length === stats.length) {
      let same = true;
      for (let i = 0; i < stats.length && same; i++) {
        const a = stats[i]!;
        const b = last.stats[i]!;
        same = a === b || (a.region_id === b.region_id && sameStat(a, b));
      }
      if (same) {
        // Equal: the same map, now under these stats (so that the next beat's same objects or
        // same array are seen as such).
        this.last = { stats: kept, byRegion: last.byRegion };
        return last.byRegion;
      }
    }
    const byRegion = new Map<string, ReplicaStat__Output>();
    for (const s of stats) byRegion.set(s.region_id, s);
    this.last = { stats: kept, byRegion };
    return byRegion;
  }

  /**
   * Whether `stats` may be kept by reference (see regionMap): only a frozen array, which nobody
   * can change. Protected for the planted tracker of test/unit/heartbeat-delta.test.ts (one that
   * trusts any array it has seen, refilled in place or not); nothing in src/ overrides it.
   */
  protected keptByReference(stats: readonly ReplicaStat__Output[]): boolean {
    return Object.isFrozen(stats);
  }

  /**
   * The answer to `sent` (the report in flight). Returns whether the metasrv asked for a full
   * report (the caller sends one at once).
   */
  answered(sent: SentReport, answer: ReportAnswer): boolean {
    const applied = Number(answer.report_seq_applied ?? 0);
    if (applied === sent.seq) {
      this.acked = sent;
      this.fullRequested = false;
      this.sinceFull = sent.full ? 0 : this.sinceFull + 1;
    } else if (applied === 0) {
      // An answer that holds no report of ours: a metasrv before delta reports (one rolled back,
      // or an older member of a group in a rolling upgrade, which reads a delta's `replicas` as
      // the whole report), or one whose catalog cannot be written. Its view is not our
      // acknowledged base any more: full reports until a report is acknowledged again.
      this.forgetBase();
    }
    if (answer.full_report_needed === true) {
      this.fullRequested = true;
      return true;
    }
    return false;
  }
}
