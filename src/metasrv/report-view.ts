// The metasrv's side of delta heartbeats (docs/quiescence.md, "Heartbeats that carry what
// changed"; src/datanode/report-delta.ts is the datanode's): the view of a datanode's replicas
// that reconciliation and the procedures read, built from full reports and deltas.
//
// A view carries the (incarnation, seq) of the datanode report it equals. A report is used only
// when the result is again exactly a report the datanode made:
//   - a full report, unless the view already holds a later report of the same incarnation (then
//     it is an old request arriving late);
//   - a delta, only onto the view numbered its base, of the same incarnation;
//   - the report the view already holds (a retried call: same number, same content) keeps it.
// Anything else — a delta after a metasrv restart or leader change (no view), after a lost answer
// (the datanode's base is older than the view), after a registration, or a report older than
// the view — is unusable: the caller counts the heartbeat for liveness only, decides nothing and
// answers `full_report_needed`. A report without an incarnation (a datanode before delta
// reports) is full, as always.
import type { HeartbeatRequest__Output, ReplicaStat__Output } from '../rpc/generated/index.js';
import type { ObservedReplica } from './procedures/procedure.js';

/** What the metasrv holds of one datanode: its replicas as of the report (incarnation, seq). */
export interface NodeReport {
  /** The datanode process's report incarnation ('0': a datanode before delta reports). */
  readonly incarnation: string;
  readonly seq: number;
  /** Region id → the replica reported. Never changed once made (a new report makes a new map). */
  readonly replicas: ReadonlyMap<string, ObservedReplica>;
  /**
   * Region id → peer id of the replicas the node holds closed (HeartbeatRequest.held_replicas):
   * every report carries the whole list, so it is taken as it comes, delta or full.
   */
  readonly held: ReadonlyMap<string, number>;
}

const NOTHING_HELD: ReadonlyMap<string, number> = new Map();

/** HeartbeatRequest.held_replicas as a map (the shared empty one when there are none, the usual case). */
function heldOf(req: HeartbeatRequest__Output): ReadonlyMap<string, number> {
  const list = req.held_replicas ?? [];
  if (list.length === 0) return NOTHING_HELD;
  const held = new Map<string, number>();
  for (const h of list) held.set(h.region_id, Number(h.peer_id));
  return held;
}

export type ReportUse =
  /**
   * `report` is the node's view now (`how`: from a full report, a delta, or the same report
   * again); `applied` is acknowledged to the datanode (0: nothing, a datanode before delta reports).
   */
  | { readonly kind: 'view'; readonly how: 'full' | 'delta' | 'same'; readonly report: NodeReport; readonly applied: number }
  /** Nothing of this report may be used; the datanode is asked for a full one. */
  | { readonly kind: 'unusable'; readonly why: string };

/** A reported stat as the metasrv keeps it. */
export function observedOf(stat: ReplicaStat__Output): ObservedReplica {
  return {
    regionId: stat.region_id,
    peerId: Number(stat.peer_id),
    role: stat.role,
    term: Number(stat.term),
    leaderNodeId: Number(stat.leader_node_id),
    appliedIndex: Number(stat.applied_index),
    commitIndex: Number(stat.commit_index),
    flushedIndex: Number(stat.flushed_index ?? 0),
    voters: (stat.voters ?? []).map(Number),
    learners: (stat.learners ?? []).map(Number),
    health: stat.health || 'ok',
    failure: stat.failure ?? '',
    confIndex: Number(stat.conf_index ?? 0),
    ...(stat.members?.length ? { members: stat.members.map((m) => ({ peerId: Number(m.peer_id), nodeId: Number(m.node_id) })) } : {}),
  };
}

function fullView(stats: readonly ReplicaStat__Output[]): Map<string, ObservedReplica> {
  const replicas = new Map<string, ObservedReplica>();
  for (const stat of stats) replicas.set(stat.region_id, observedOf(stat));
  return replicas;
}

/** What a heartbeat's report makes of the node's view `current` (pure: `current` is not changed). */
export function useReport(current: NodeReport | undefined, req: HeartbeatRequest__Output): ReportUse {
  const incarnation = req.report_incarnation ?? '0';
  const stats = req.replicas ?? [];
  const held = heldOf(req);
  if (incarnation === '0') return { kind: 'view', how: 'full', report: { incarnation, seq: 0, replicas: fullView(stats), held }, applied: 0 };
  const seq = Number(req.report_seq ?? 0);
  const base = Number(req.report_base_seq ?? 0);
  const same = current !== undefined && current.incarnation === incarnation;
  if (same && seq === current.seq) return { kind: 'view', how: 'same', report: current, applied: seq };
  if (same && seq < current.seq) return { kind: 'unusable', why: `report ${seq} is older than report ${current.seq} held` };
  if (base === 0) return { kind: 'view', how: 'full', report: { incarnation, seq, replicas: fullView(stats), held }, applied: seq };
  if (!same || current.seq !== base || seq <= base) {
    return { kind: 'unusable', why: `delta on report ${base} of incarnation ${incarnation}, but the view held is ${current ? `report ${current.seq} of incarnation ${current.incarnation}` : 'none'}` };
  }
  const removed = req.removed_region_ids ?? [];
  // Nothing changed (an idle node's usual beat): the held view's map, which is never changed
  // once made, stands for this report too — no copy of every replica, and the per-report caches
  // keyed by the map (idFloors') stay valid.
  if (stats.length === 0 && removed.length === 0) return { kind: 'view', how: 'delta', report: { incarnation, seq, replicas: current.replicas, held }, applied: seq };
  const replicas = new Map(current.replicas);
  for (const regionId of removed) replicas.delete(regionId);
  for (const stat of stats) replicas.set(stat.region_id, observedOf(stat));
  return { kind: 'view', how: 'delta', report: { incarnation, seq, replicas, held }, applied: seq };
}
