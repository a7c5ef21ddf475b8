// Heartbeat reconciliation between the catalog and the raft groups, as pure functions of the
// catalog and of what the live datanodes last reported (docs/failover.md, "Reconciliation").
//
// The raft group is the authority on its own membership (docs/raft-rules.md R22); the catalog is a copy
// that can be older (restored from a backup), empty (metasrv data dir lost) or ahead (a
// procedure placed a replica the group has not added yet). Rules:
//   R1 A replica is destroyed only when the region's current membership, as reported by its
//      leader at a configuration at least as new as the replica's own, no longer contains it,
//      and no live voter may still need its vote (`removalHold`: docs/raft-rules.md R16, "The
//      4 → 3 window") — or when its region was dropped from this catalog. Never because the
//      catalog does not know it.
//   R2 A catalog region whose placement differs from the group's membership at a newer
//      configuration (conf index above the one the catalog last matched), with no procedure
//      changing it, is rewritten FROM the group. A member no live datanode reports is placed on
//      the node its leader names for it (`placeUnreported`, finding M25).
//   R3 Whatever cannot be reconciled (unknown region, leaderless group, a member on a node that
//      does not report it, a catalog ahead of its group with nothing running) is left alone and
//      reported as a problem for `regiondb status`.
//   R4 A replica marked lost (its store was replaced, or it reported itself failed) is never
//      opened again under its peer id: a repair-replica procedure replaces it.
//   R5 A placed replica is not opened when its group has gone past its peer: the region's leader,
//      or any live replica, reports a configuration that does not count it and counts a higher
//      peer id (`passedByGroup`). Skipped and logged, nothing deleted.
//   (R6 and R7, holds on an open, are the metasrv's: metasrv-core.ts placementOpenHeld.)
//   R8 A replica a live datanode holds closed (HeartbeatRequest.held_replicas: its data on disk,
//      not running) is its peer's data, not a loss: a member the group counts is placed there
//      and reopened, never marked lost (`placeUnreported`); one the group went past (its leader
//      counts a peer id allocated after it, and no voter may still need its vote) is deleted by
//      name, as is one of a dropped table (`heldDestroyReason`).
import { type CatalogState, type RegionDef, type ReplicaPlacement, droppedAt, regionList, regionWithId } from './catalog.js';
import { type MemberNode, type ObservedReplica, namesPeer } from './procedures/procedure.js';

/** What each live datanode reported in its last heartbeat: node id → region id → replica. */
export type Reports = ReadonlyMap<number, ReadonlyMap<string, ObservedReplica>>;

/** What each live datanode holds closed (R8; HeartbeatRequest.held_replicas): node id → region id → peer id. */
export type HeldReports = ReadonlyMap<number, ReadonlyMap<string, number>>;

const NOTHING_HELD: HeldReports = new Map();

/** A region's membership as its leader reports it. */
export interface GroupView {
  readonly leaderNodeId: number;
  readonly leaderPeerId: number;
  readonly term: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  readonly confIndex: number;
  /** The node of each member as the leader knows it (ReplicaStat.members), when it says. */
  readonly members?: readonly MemberNode[];
}

/** The highest-term leader report of a region among live datanodes, if any. */
export function groupOf(regionId: string, reports: Reports): GroupView | undefined {
  let best: GroupView | undefined;
  for (const [nodeId, replicas] of reports) {
    const r = replicas.get(regionId);
    if (r?.role !== 'leader' || r.health === 'failed') continue;
    if (best && r.term <= best.term) continue;
    best = { leaderNodeId: nodeId, leaderPeerId: r.peerId, term: r.term, voters: r.voters, learners: r.learners, confIndex: r.confIndex, ...(r.members ? { members: r.members } : {}) };
  }
  return best;
}

function members(g: GroupView): Set<number> {
  return new Set([...g.voters, ...g.learners]);
}

/** Where each peer of a region lives, from the datanodes' reports of their own replicas. */
function peerNodes(regionId: string, reports: Reports): Map<number, number> {
  const out = new Map<number, number>();
  for (const [nodeId, replicas] of reports) {
    const r = replicas.get(regionId);
    if (r) out.set(r.peerId, nodeId);
  }
  return out;
}

export interface RegionAdoption {
  readonly regionId: string;
  readonly replicas: ReplicaPlacement[];
  readonly confIndex: number;
  readonly note: string;
}

export interface CatalogReconciliation {
  /** R2: regions whose placement is rewritten from the group. */
  readonly adopt: RegionAdoption[];
  /** The group's conf index at which a region's placement was seen to match (recorded). */
  readonly matched: { regionId: string; confIndex: number }[];
  /** R3: region id → what could not be reconciled. */
  readonly problems: Map<string, string[]>;
}

function addProblem(problems: Map<string, string[]>, regionId: string, text: string): void {
  const list = problems.get(regionId) ?? [];
  list.push(text);
  problems.set(regionId, list);
}

/**
 * R2/R3 for every region: compares the catalog with the groups' reported membership.
 * `busy`: regions a running procedure is changing (the catalog is ahead of the group on purpose).
 * `downTooLong`: nodes down for `replica_repair_after_ms` or longer (`placeUnreported`); by default none.
 *
 * Runs on every heartbeat over every region (O(regions × nodes)), so the usual case — a leader
 * reports the membership the catalog places — is checked without building anything: the
 * leader's report is found by a scan of the nodes, and the two memberships compared as sets by
 * mutual inclusion (a handful of peers each). Only a region that differs takes the full path.
 * Same results as the straightforward version (test/unit/metasrv-reconcile-diff.test.ts).
 */
export function reconcileCatalog(
  catalog: CatalogState,
  reports: Reports,
  busy: ReadonlySet<string>,
  downTooLong: (nodeId: number) => boolean = () => false,
  held: HeldReports = NOTHING_HELD,
): CatalogReconciliation {
  const adopt: RegionAdoption[] = [];
  const matched: { regionId: string; confIndex: number }[] = [];
  const problems = new Map<string, string[]>();
  const nodes = [...reports];
  for (const region of regionList(catalog)) {
    const regionId = region.regionId;
    // groupOf, inline: the highest-term leader report that is not failed (the first on a tie).
    let leader: ObservedReplica | undefined;
    let leaderNodeId = 0;
    for (const [nodeId, replicas] of nodes) {
      const r = replicas.get(regionId);
      if (r === undefined || r.role !== 'leader' || r.health === 'failed') continue;
      if (leader !== undefined && r.term <= leader.term) continue;
      leader = r;
      leaderNodeId = nodeId;
    }
    if (leader === undefined) {
      // Leaderless: nothing authoritative to compare with. Replicas the catalog does not place
      // stay (R1) and are shown.
      for (const [nodeId, replicas] of nodes) {
        const r = replicas.get(regionId);
        if (r && !region.replicas.some((p) => p.peerId === r.peerId && p.nodeId === nodeId)) {
          addProblem(problems, regionId, `peer ${r.peerId} on node ${nodeId} is not placed by the catalog and no leader reports the membership; left alone`);
        }
      }
      continue;
    }
    const known = region.confIndex ?? 0;
    if (samePeers(region.replicas, leader.voters, leader.learners)) {
      if (leader.confIndex > known) matched.push({ regionId, confIndex: leader.confIndex });
      continue;
    }
    if (busy.has(regionId)) continue;
    const group: GroupView = { leaderNodeId, leaderPeerId: leader.peerId, term: leader.term, voters: leader.voters, learners: leader.learners, confIndex: leader.confIndex, ...(leader.members ? { members: leader.members } : {}) };
    reconcileDiffering(catalog, region, group, known, reports, downTooLong, held, adopt, problems);
  }
  // Regions the datanodes host that this catalog does not know (R1: left alone).
  for (const [nodeId, replicas] of nodes) {
    for (const r of replicas.values()) {
      if (regionWithId(catalog, r.regionId) || droppedAt(catalog, r.regionId) !== undefined) continue;
      addProblem(problems, r.regionId, `peer ${r.peerId} on node ${nodeId} is not in the catalog (catalog lost or restored from an older copy?); left alone`);
    }
  }
  return { adopt, matched, problems };
}

/**
 * Replicas removed from their group and not deleted yet (R16: they answer raft until the metasrv
 * destroys them), as problems for `regiondb status`, with what their deletion waits for: added to
 * reconcileCatalog's (`into`), per region.
 */
export function removedReplicaProblems(catalog: CatalogState, reports: Reports, awaitingReport: AwaitingReport, into: Map<string, string[]>): void {
  for (const [nodeId, replicas] of reports) {
    for (const r of replicas.values()) {
      const why = awaitingDeletion(catalog, nodeId, r, reports, awaitingReport);
      if (why) addProblem(into, r.regionId, why);
    }
  }
}

/**
 * Replicas the live datanodes hold closed (R8), as problems for `regiondb status`: each with
 * what becomes of it (reopened, deleted, or kept and why). Added to `into`, per region.
 */
export function heldReplicaProblems(catalog: CatalogState, reports: Reports, held: HeldReports, awaitingReport: AwaitingReport, into: Map<string, string[]>): void {
  for (const [nodeId, regions] of held) {
    for (const [regionId, peerId] of regions) {
      const head = `peer ${peerId} on node ${nodeId} is held closed (its data on disk, not running)`;
      const verdict = heldVerdict(catalog, nodeId, regionId, peerId, reports, awaitingReport);
      addProblem(into, regionId, 'destroy' in verdict ? `${head}: being deleted (${verdict.destroy})` : `${head}: kept; ${verdict.keep}`);
    }
  }
}

/**
 * A reported replica whose own membership (voters, learners, as it applied them) does not name it:
 * one removed from its group and not deleted yet (R16), or a new replica still replaying the
 * configurations from before its own addition. Says which, and what a deletion waits for.
 */
function awaitingDeletion(catalog: CatalogState, nodeId: number, r: ObservedReplica, reports: Reports, awaitingReport: AwaitingReport): string | undefined {
  if (r.health === 'failed' || r.voters.length + r.learners.length === 0) return undefined;
  if (namesPeer(r, r.peerId)) return undefined;
  const head = `peer ${r.peerId} on node ${nodeId} reports a membership without itself (conf index ${r.confIndex})`;
  const region = regionWithId(catalog, r.regionId);
  if (!region) {
    if (droppedAt(catalog, r.regionId) !== undefined) return undefined; // its table was dropped: destroyed as such
    return `${head}: removed from its group, it answers raft until deleted; this catalog does not know the region, so nothing deletes it`;
  }
  const group = groupOf(r.regionId, reports);
  if (!group) return `${head}: removed from its group, it answers raft until deleted; no leader reports the membership`;
  if (members(group).has(r.peerId)) return `${head}, but the leader on node ${group.leaderNodeId} counts it: still catching up to its own addition?`;
  if (group.confIndex < r.confIndex) return `${head}: the leader on node ${group.leaderNodeId} reports an older configuration (conf index ${group.confIndex}); kept`;
  const hold = removalHold(r.peerId, group, regionReplicas(r.regionId, reports), region, awaitingReport);
  if (hold) return `${head}: removed from its group; kept while ${hold} (it may still need this replica's vote)`;
  return `${head}: removed from its group; being deleted`;
}

/** Whether the catalog's peers and the group's members (voters ∪ learners) are the same set. */
export function samePeers(placed: readonly ReplicaPlacement[], voters: readonly number[], learners: readonly number[]): boolean {
  for (const p of placed) if (!voters.includes(p.peerId) && !learners.includes(p.peerId)) return false;
  for (const v of voters) if (!placed.some((p) => p.peerId === v)) return false;
  for (const l of learners) if (!placed.some((p) => p.peerId === l)) return false;
  return true;
}

/** R2/R3 for a region whose catalog placement differs from its group's membership (no procedure changing it). */
function reconcileDiffering(
  catalog: CatalogState,
  region: RegionDef,
  group: GroupView,
  known: number,
  reports: Reports,
  downTooLong: (nodeId: number) => boolean,
  held: HeldReports,
  adopt: RegionAdoption[],
  problems: Map<string, string[]>,
): void {
  const catalogPeers = new Set(region.replicas.map((p) => p.peerId));
  const groupPeers = members(group);
  if (group.confIndex <= known) {
    addProblem(
      problems,
      region.regionId,
      `catalog places peers ${[...catalogPeers].join(',')} but the group (conf index ${group.confIndex}) has ${[...groupPeers].join(',')} and no procedure is changing it; left alone`,
    );
    return;
  }
  // The group moved on since the catalog last matched it: the catalog is older. Adopt.
  const where = peerNodes(region.regionId, reports);
  const replicas: ReplicaPlacement[] = [];
  const unplaced: number[] = [];
  for (const peerId of groupPeers) {
    const inCatalog = region.replicas.find((p) => p.peerId === peerId);
    const reported = where.get(peerId);
    const placement = inCatalog ?? (reported !== undefined ? { peerId, nodeId: reported } : placeUnreported(catalog, group, peerId, reports, downTooLong, held, region.regionId));
    if (placement === undefined) unplaced.push(peerId);
    else replicas.push(placement);
  }
  if (unplaced.length > 0) {
    // Nor could placeUnreported place them (yet).
    addProblem(problems, region.regionId, `the group (conf index ${group.confIndex}) has peers ${unplaced.join(',')} that neither the catalog nor any live datanode places; catalog left as is`);
    return;
  }
  replicas.sort((a, b) => a.peerId - b.peerId);
  const placedLost = replicas.filter((p) => p.lost !== undefined && !catalogPeers.has(p.peerId));
  adopt.push({
    regionId: region.regionId,
    replicas,
    confIndex: group.confIndex,
    note: `catalog (conf index ${known}, peers ${[...catalogPeers].join(',')}) older than the group (conf index ${group.confIndex}, peers ${[...groupPeers].join(',')}): adopted the group's membership${placedLost.length > 0 ? `; ${placedLost.map((p) => `peer ${p.peerId} on node ${p.nodeId}`).join(', ')} placed lost (its node does not report it: replaced by a repair)` : ''}`,
  });
}

/**
 * R2 for a member of the group that the catalog does not place and no live datanode reports
 * (finding M25): a catalog restored from a copy older than the member's addition, the member's
 * node down, or holding it closed. Without this the region kept running on its other members
 * with nothing able to repair it: the catalog placed no replica on the member's node, so neither
 * a down node's repair nor a lost replica's covered it. The leader names the member's node
 * (`GroupView.members`); the member is placed there marked lost (R4), so a repair-replica
 * replaces it under a fresh peer id and nothing opens it under its own. Opened by the metasrv
 * under its old id it could be an empty voter: the node may have come back on a new store (a
 * wiped disk) before this placement existed, which `noteStore` could not mark, or have lost the
 * replica's data to an in-place repair's deletion. A node that comes back with the data reopens
 * the replica itself, from its log; the repair replaces it all the same (one copy more).
 * Placed only when the node's own report says it does not host the member, or the node has
 * been down for `replica_repair_after_ms` (`downTooLong`: the patience a down node's repair has;
 * a node not heard from since this metasrv began acting is down from the end of its startup
 * pause, and a slow first report must not cost a replica). Undefined otherwise — the region
 * stays a status problem, judged again at the next heartbeat — and when the leader names no node
 * for the member, or one this catalog does not know.
 * R8: a live node that says it holds the member's data closed (`held`, for region `regionId`)
 * is not asked what became of it: the member is placed there, not lost, and reopened from that
 * data (nodeActions opens a placement its node does not run) — the `close` fault's replica that a
 * restored catalog did not place (register seed 4582), which a repair used to replace as lost.
 */
export function placeUnreported(
  catalog: CatalogState,
  group: GroupView,
  peerId: number,
  reports: Reports,
  downTooLong: (nodeId: number) => boolean,
  held: HeldReports = NOTHING_HELD,
  regionId?: string,
): ReplicaPlacement | undefined {
  const nodeId = group.members?.find((m) => m.peerId === peerId)?.nodeId;
  if (nodeId === undefined || catalog.nodes[nodeId] === undefined) return undefined;
  if (regionId !== undefined && reports.has(nodeId) && held.get(nodeId)?.get(regionId) === peerId) return { peerId, nodeId };
  if (!reports.has(nodeId) && !downTooLong(nodeId)) return undefined;
  return {
    peerId,
    nodeId,
    lost: `the group (leader on node ${group.leaderNodeId}, conf index ${group.confIndex}) counts peer ${peerId} on node ${nodeId}, which does not report it${reports.has(nodeId) ? '' : ' (down too long)'}, and the catalog did not place it (a catalog older than the group): what became of its data is unknown`,
  };
}

export type NodeAction =
  | { readonly open: { readonly regionId: string; readonly peerId: number } }
  /** R5: a placement not opened (the caller logs it); nothing is deleted for it. */
  | { readonly skip: { readonly regionId: string; readonly peerId: number; readonly why: string } }
  | { readonly destroy: { readonly regionId: string; readonly peerId: number; readonly why: string } };

/**
 * R1/R4/R5/R8 for one datanode: the replicas to open there (placed by the catalog, not hosted, not
 * lost, not passed by their group: `passedByGroup`), those placed but passed by (skipped) and
 * those to destroy (R1; R8: data it holds closed that belongs to no member any more).
 */
export function nodeActions(catalog: CatalogState, nodeId: number, reports: Reports, awaitingReport: AwaitingReport, held: HeldReports = NOTHING_HELD): NodeAction[] {
  const actions: NodeAction[] = [];
  const mine = reports.get(nodeId) ?? new Map<string, ObservedReplica>();
  for (const region of regionList(catalog)) {
    const placed = region.replicas.find((p) => p.nodeId === nodeId && !p.lost);
    if (!placed || mine.has(region.regionId)) continue;
    const passed = passedByGroup(region.regionId, placed.peerId, reports);
    actions.push(passed === undefined ? { open: { regionId: region.regionId, peerId: placed.peerId } } : { skip: { regionId: region.regionId, peerId: placed.peerId, why: passed } });
  }
  for (const seen of mine.values()) {
    const why = destroyReason(catalog, nodeId, seen, reports, awaitingReport);
    if (why) actions.push({ destroy: { regionId: seen.regionId, peerId: seen.peerId, why } });
  }
  for (const [regionId, peerId] of held.get(nodeId) ?? NOTHING_HELD_HERE) {
    if (mine.has(regionId)) continue; // running again since (the list and the report are one beat's)
    const why = heldDestroyReason(catalog, nodeId, regionId, peerId, reports, awaitingReport);
    if (why) actions.push({ destroy: { regionId, peerId, why } });
  }
  return actions;
}

const NOTHING_HELD_HERE: ReadonlyMap<string, number> = new Map();

/**
 * R8: why the data of `peerId` that node `nodeId` holds closed for `regionId` may be deleted, or
 * undefined to keep it (`heldVerdict`). Pure.
 */
export function heldDestroyReason(catalog: CatalogState, nodeId: number, regionId: string, peerId: number, reports: Reports, awaitingReport: AwaitingReport): string | undefined {
  const verdict = heldVerdict(catalog, nodeId, regionId, peerId, reports, awaitingReport);
  return 'destroy' in verdict ? verdict.destroy : undefined;
}

/**
 * R8's one decision on held data, with its reason: deleted when its table was dropped, or when the
 * group went past the peer — the region's leader does not count it and counts a peer id allocated
 * after it (peer ids only grow, and no peer comes back into a group that went past it: R5's
 * argument), and no voter may still need its vote (`removalHold`, R16: a restart would reopen the
 * data and let it vote). Kept otherwise: the catalog does not know the region (R1), no leader
 * reports the membership, the leader counts it (R8 reopens it, or a repair replaces it if placed
 * lost), or the leader counts nothing newer (a peer not added yet, or the newest one removed, whose
 * 4 → 3 window a catalog restored meanwhile could not judge). Data nothing deletes stays on its
 * node's disk, where its node refuses any other peer of the region (finding M24) — what M37 had to
 * route repairs around. nodeActions acts on a `destroy`; `regiondb status` shows either. Pure.
 */
function heldVerdict(catalog: CatalogState, nodeId: number, regionId: string, peerId: number, reports: Reports, awaitingReport: AwaitingReport): { readonly destroy: string } | { readonly keep: string } {
  const region = regionWithId(catalog, regionId);
  if (!region) return droppedAt(catalog, regionId) !== undefined ? { destroy: 'its table was dropped (a replica held closed)' } : { keep: 'this catalog does not know the region' };
  const group = groupOf(regionId, reports);
  if (!group) return { keep: 'no leader reports the membership' };
  if (namesPeer(group, peerId)) {
    const placed = region.replicas.find((p) => p.peerId === peerId && p.nodeId === nodeId);
    return { keep: placed?.lost === undefined ? 'its group counts it: reopened there' : 'its group counts it, placed lost: a repair replaces it' };
  }
  const above = idsAbove(peerId, group);
  if (above.length === 0) return { keep: 'its group counts no peer allocated after it (one not added yet, or the newest removed)' };
  const hold = removalHold(peerId, group, regionReplicas(regionId, reports), region, awaitingReport);
  if (hold !== undefined) return { keep: `${hold} (R16)` };
  return { destroy: `peer ${peerId}, held closed on this node, is no member of the group: the leader on node ${group.leaderNodeId} counts ${above.join(',')}, allocated after it (conf index ${group.confIndex})` };
}

/**
 * R5: why a placed peer its node does not host must not be opened there — a configuration of its
 * group does not count it and counts a peer id above it — or undefined to open it. Peer ids are
 * allocated in increasing order (repair-replica's `allocate` raises the allocator above every id
 * its region's group is seen to use, and every heartbeat above every id reported), so a counted id
 * above it was allocated after it: the group went on past this peer — added it, removed it and
 * replaced it, or never added it — in a membership the catalog does not follow (a catalog restored
 * from an older copy, left alone by R2 when its conf index is at or above the group's, which a
 * snapshot over-states). Opened, the peer would come back empty (bootstrap=false) under an id that
 * may have voted, taking raft messages from any peer of its open list.
 * Judged first on the region's leader (`groupOf`): a peer it counts is opened. Then on every other
 * live replica's report (R5b): a replica reports the configuration it applied, a committed one, and
 * no peer comes back into a group that went past it, so a follower's or a lower-term leader's
 * membership is as good a witness — a region whose leader has not reported (the startup quiet
 * period, a leaderless region) is judged on its followers. Not passed by: a repair's new peer not
 * added yet (the highest id: none above it counted), a bootstrap region's peers (counted by every
 * configuration), any peer of a region no live node reports. Pure.
 */
export function passedByGroup(regionId: string, peerId: number, reports: Reports): string | undefined {
  const group = groupOf(regionId, reports);
  if (group) {
    if (namesPeer(group, peerId)) return undefined;
    const above = idsAbove(peerId, group);
    if (above.length > 0) return `the leader on node ${group.leaderNodeId} does not count peer ${peerId} and counts ${above.join(',')}, allocated after it (conf index ${group.confIndex}): the group went on past it; not opened`;
  }
  for (const [nodeId, replicas] of reports) {
    const r = replicas.get(regionId);
    if (r === undefined || namesPeer(r, peerId)) continue;
    const above = idsAbove(peerId, r);
    if (above.length > 0) return `peer ${r.peerId} on node ${nodeId} (${r.role}) applied a configuration without peer ${peerId} that counts ${above.join(',')}, allocated after it (conf index ${r.confIndex}): the group went on past it; not opened`;
  }
  return undefined;
}

function idsAbove(peerId: number, membership: { readonly voters: readonly number[]; readonly learners: readonly number[] }): number[] {
  return [...membership.voters, ...membership.learners].filter((p) => p > peerId);
}

/** Why a hosted replica may be destroyed (R1), or undefined to keep it. */
export function destroyReason(catalog: CatalogState, nodeId: number, seen: ObservedReplica, reports: Reports, awaitingReport: AwaitingReport): string | undefined {
  const region: RegionDef | undefined = regionWithId(catalog, seen.regionId);
  if (!region) return droppedAt(catalog, seen.regionId) !== undefined ? 'its table was dropped' : undefined;
  if (region.replicas.some((p) => p.peerId === seen.peerId && p.nodeId === nodeId)) return undefined;
  const group = groupOf(seen.regionId, reports);
  if (removedReplicaKept(region, seen, group, regionReplicas(seen.regionId, reports), awaitingReport) !== undefined) return undefined;
  return `peer ${seen.peerId} is not a member of the group (leader on node ${group!.leaderNodeId}, conf index ${group!.confIndex})`;
}

/**
 * Why a replica of `region` that its node reports as `seen` (and the catalog no longer places
 * there) must be kept, judged against `group` (its leader's membership) — or undefined when it may
 * be deleted. The one rule behind reconciliation's `destroyReason` and repair-replica's cleanup:
 * kept while no leader reports the membership, while the leader still counts it or reports an
 * older configuration than the replica's own, and (unless it failed: it never votes again, R4)
 * while a voter may still need its vote (`removalHold`). Pure.
 */
export function removedReplicaKept(
  region: RegionDef,
  seen: ObservedReplica,
  group: GroupView | undefined,
  hosted: Iterable<readonly [number, ObservedReplica]>,
  awaitingReport: AwaitingReport,
): string | undefined {
  if (!group) return 'no leader reports the membership';
  if (members(group).has(seen.peerId)) return `the leader on node ${group.leaderNodeId} counts it`;
  if (group.confIndex < seen.confIndex) return `the leader on node ${group.leaderNodeId} reports an older configuration`; // the replica knows a newer one
  if (seen.health === 'failed') return undefined;
  // R16, "The 4 → 3 window": a remaining voter may still need its vote.
  return removalHold(seen.peerId, group, hosted, region, awaitingReport);
}

/** The replicas of a region the live datanodes report, as (node id, replica). */
export function regionReplicas(regionId: string, reports: Reports): [number, ObservedReplica][] {
  const out: [number, ObservedReplica][] = [];
  for (const [nodeId, replicas] of reports) {
    const r = replicas.get(regionId);
    if (r) out.push([nodeId, r]);
  }
  return out;
}

/**
 * Whether this metasrv still waits for a node's first report: a node it has not heard from since it
 * began acting (a start, or a takeover as the metasrv group's leader) or since the node registered,
 * and has not judged down yet (its failure detector's startup pause has not ended, or its detector
 * still takes it for alive). Such a node is neither live (its replicas are unknown) nor down.
 */
export type AwaitingReport = (nodeId: number) => boolean;

/**
 * R16, "The 4 → 3 window" (docs/raft-rules.md): why the replica of `removedPeerId`, which the
 * group's leader no longer counts, must not be deleted yet — a voter of the leader's membership
 * that may still count the old configuration and need its vote — or undefined once none may.
 *
 * `hosted`: the region's replicas as live datanodes report them (node id, replica). A voter other
 * than the leader is counted unless it reports itself failed or no membership (a voter whose
 * apply is stalled reports itself `ok`: counted). It has shown it applied the removal when its
 * membership does not name the removed peer and its applied index reached the leader's conf index
 * (at or past the removal even when a snapshot over-states it, and reached by any voter that
 * catches up). A voter no live node reports under its peer id holds the deletion when `region`
 * (the catalog) places it on a node whose first report this metasrv still awaits
 * (`awaitingReport`: after a metasrv start or takeover every node is such until it beats or is
 * judged down); it is not counted when its node is judged down, or when its node reports no such
 * replica. Not counted either: a failed voter (it never votes again, R4), one reporting no
 * membership (unknown). Learners never vote. Pure.
 */
export function removalHold(
  removedPeerId: number,
  group: GroupView,
  hosted: Iterable<readonly [number, ObservedReplica]>,
  region: RegionDef,
  awaitingReport: AwaitingReport,
): string | undefined {
  const reported = new Set<number>();
  for (const [nodeId, r] of hosted) {
    reported.add(r.peerId);
    if (r.peerId === group.leaderPeerId || !group.voters.includes(r.peerId)) continue;
    if (r.health === 'failed' || r.voters.length + r.learners.length === 0) continue;
    if (namesPeer(r, removedPeerId)) {
      return `voter ${r.peerId} on node ${nodeId} still counts peer ${removedPeerId} (conf index ${r.confIndex})`;
    }
    if (r.appliedIndex < group.confIndex) {
      return `voter ${r.peerId} on node ${nodeId} has applied up to ${r.appliedIndex}, below the leader's conf index ${group.confIndex}`;
    }
  }
  for (const voter of group.voters) {
    if (voter === group.leaderPeerId || reported.has(voter)) continue;
    const nodeId = region.replicas.find((p) => p.peerId === voter)?.nodeId;
    if (nodeId !== undefined && awaitingReport(nodeId)) {
      return `voter ${voter} on node ${nodeId} has not reported since this metasrv began acting (not judged down yet)`;
    }
  }
  return undefined;
}

/** The id floors one datanode's report implies (idFloors). */
export interface ReportFloors {
  readonly peer: number;
  readonly table: number;
}

/**
 * Lowest ids the allocators may still hand out, given what the datanodes report: above every
 * peer id in use or named in a membership, and above every table id of a hosted region
 * (region id = table id << 32 | region number).
 *
 * `cache`: the floors of each report already seen, for a caller whose reports are never changed
 * once made (the metasrv builds a new one per heartbeat): a heartbeat then costs the reporting
 * node's replicas, not every node's.
 */
export function idFloors(reports: Reports, cache?: WeakMap<ReadonlyMap<string, ObservedReplica>, ReportFloors>): { nextPeerId: number; nextTableId: number } {
  let peer = 0;
  let table = -1;
  for (const replicas of reports.values()) {
    let floors = cache?.get(replicas);
    if (floors === undefined) {
      floors = reportFloors(replicas);
      cache?.set(replicas, floors);
    }
    peer = Math.max(peer, floors.peer);
    table = Math.max(table, floors.table);
  }
  return { nextPeerId: peer + 1, nextTableId: table + 1 };
}

/**
 * idFloors for the replicas the live datanodes hold closed (R8): a held peer's id, and its
 * region's table id, are in use too. Without it a catalog restored from before the newest peer of
 * a region was allocated could hand that id out again while its data waits, held, on a node that
 * would reopen it on a restart — two replicas under one peer id (the review of M38).
 */
export function heldIdFloors(held: HeldReports): { nextPeerId: number; nextTableId: number } {
  let peer = 0;
  let table = -1;
  for (const regions of held.values()) {
    for (const [regionId, peerId] of regions) {
      peer = Math.max(peer, peerId);
      table = Math.max(table, tableIdOfRegion(regionId));
    }
  }
  return { nextPeerId: peer + 1, nextTableId: table + 1 };
}

function reportFloors(replicas: ReadonlyMap<string, ObservedReplica>): ReportFloors {
  let peer = 0;
  let table = -1;
  for (const r of replicas.values()) {
    peer = Math.max(peer, r.peerId);
    for (const v of r.voters) peer = Math.max(peer, v);
    for (const l of r.learners) peer = Math.max(peer, l);
    table = Math.max(table, tableIdOfRegion(r.regionId));
  }
  return { peer, table };
}

/** Region ids of at most 15 decimal digits are below 2^53: exact as Numbers, their table id by a division. */
const SHORT_DECIMAL = /^[0-9]{1,15}$/;
const REGION_NUMBER_SPAN = 2 ** 32;

export function tableIdOfRegion(regionId: string): number {
  // The same value as the BigInt shift (the metasrv computes it for every replica of a report):
  // an integer below 2^53 divided by 2^32 is exact in a double, and floor drops the region number.
  if (SHORT_DECIMAL.test(regionId)) return Math.floor(Number(regionId) / REGION_NUMBER_SPAN);
  return Number(BigInt(regionId) >> 32n);
}
