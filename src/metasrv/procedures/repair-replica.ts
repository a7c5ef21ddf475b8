// repair-replica: replace one replica of a region (on a dead or draining node, or lost: its node
// came back on an empty data dir, or it reported itself failed) by a new one on a healthy node,
// keeping the region at full strength and never below quorum:
//   allocate    → pick the node and a never-used peer id; record both in the catalog. A lost
//                 replica may be replaced on its own node when no other node can take it: the
//                 new replica has a fresh peer id, so it is a new raft member, never the old one
//   clear-old   → (only when replacing on the same node) the old replica's local state, if its
//                 node still hosts it (a failed replica), is deleted first: a node hosts one
//                 replica per region. The old peer stays a voter until remove-old; it is
//                 stopped and untrusted, so deleting it loses nothing the group needs
//   add-learner → the leader adds the new peer as a learner (it cannot vote, so it cannot
//                 weaken quorums while it catches up); failed, nothing sent and the new peer's
//                 placement dropped, if the group went on past this step without this metasrv
//                 (a catalog restored from an older copy)
//   catch-up    → wait until the new replica has applied what the leader had committed
//   promote     → the leader makes it a voter
//   remove-old  → the leader removes the old peer; the catalog drops it (routes change here)
//   cleanup     → if the old node is reachable, it closes and deletes its replica — unless a
//                 remaining voter may still need its vote (docs/raft-rules.md R16, "The 4 → 3
//                 window"): then the procedure ends all the same and heartbeat reconciliation
//                 deletes it once none may (reconcile.ts removalHold). Nothing waits on it.
// The new replica never goes to a node that reports any replica of the region (a removed one
// awaiting deletion, say): the open would be refused there (a node hosts one replica per region).
import { REPLICATION_FACTOR, type RegionDef } from '../catalog.js';
import { type GroupView, removedReplicaKept, samePeers } from '../reconcile.js';
import { type ObservedReplica, type ProcedureContext, type ProcedureDefinition, RESEND_AFTER_MS, type StepResult, type StepRun, groupLeaderOf, namesPeer, peerAddr, removedByGroup } from './procedure.js';
import type { RepairReplicaData, StepOf } from './record.js';

/** The new replica may lag the leader's commit by this many entries and count as caught up. */
export const CATCH_UP_SLACK = 16;

/**
 * How long catch-up waits for the new replica to open on a live node (its open re-sent every
 * RESEND_AFTER_MS, and by reconciliation at every heartbeat) before the new peer is given up there
 * and placed on another node (finding M37). A live node opens a replica within a heartbeat or two;
 * one that does not in this long holds another replica of the region on its disk — closed without
 * destroy, which no report shows and which it refuses to open over (M24) — or cannot open it.
 */
export const NEW_REPLICA_OPEN_WAIT_MS = 4 * RESEND_AFTER_MS;

type Leader = NonNullable<ReturnType<ProcedureContext['leaderOf']>>;
type Result = StepResult<StepOf<'repair-replica'>>;
/** The data once `allocate` has chosen the new peer (every later step runs on this). */
type Allocated = RepairReplicaData & { newPeerId: number; newNodeId: number };

function allocated(d: RepairReplicaData): d is Allocated {
  return d.newPeerId !== undefined && d.newNodeId !== undefined;
}

/** Every step past allocation needs the new peer, the region (else it was dropped) and its live leader. */
function withLeader(ctx: ProcedureContext, d: RepairReplicaData, step: (d: Allocated, region: RegionDef, leader: Leader) => Result): Result {
  if (!allocated(d)) return { failed: 'no new peer allocated (the record skipped allocate)' };
  const region = ctx.catalog.regions[d.regionId];
  if (!region) return { done: true, note: 'region dropped' };
  const leader = groupLeaderOf(ctx, region);
  if (!leader) return { retry: 'waiting for a leader' };
  return step(d, region, leader);
}

function peerMessage(ctx: ProcedureContext, peerId: number, nodeId: number) {
  return { peer_id: String(peerId), node_id: String(nodeId), addr: peerAddr(ctx, nodeId) };
}

/** The region's replicas live datanodes report, as (node id, replica). */
function hostedReplicas(ctx: ProcedureContext, regionId: string): [number, ObservedReplica][] {
  const out: [number, ObservedReplica][] = [];
  for (const node of Object.values(ctx.catalog.nodes)) {
    const r = ctx.observed(node.nodeId, regionId);
    if (r) out.push([node.nodeId, r]);
  }
  return out;
}

/**
 * Nodes a new replica of the region may not go to: those the catalog places it on, and every live
 * node reporting a replica of it under any peer id (a removed replica awaiting deletion, R16), where
 * the open would be refused. Also what metasrv-core checks before it starts a repair.
 */
export function repairExclusions(ctx: ProcedureContext, region: RegionDef): Set<number> {
  const out = new Set(region.replicas.map((p) => p.nodeId));
  for (const [nodeId] of hostedReplicas(ctx, region.regionId)) out.add(nodeId);
  return out;
}

/**
 * Why the old replica must not be deleted now (R16, "The 4 → 3 window"; the rule of reconcile.ts
 * destroyReason, `removedReplicaKept`, judged against the group's leader, `groupLeaderOf`), or undefined.
 * Only a replica its node reports running under the old peer id answers raft; a failed one or one
 * not reported needs no wait.
 */
function cleanupHold(ctx: ProcedureContext, d: RepairReplicaData): string | undefined {
  const hosted = ctx.observed(d.oldNodeId, d.regionId);
  if (hosted?.peerId !== d.oldPeerId || hosted.health === 'failed') return undefined;
  const region = ctx.catalog.regions[d.regionId];
  if (!region) return undefined; // dropped: the whole region goes
  const leader = groupLeaderOf(ctx, region);
  const group: GroupView | undefined = leader && {
    leaderNodeId: leader.nodeId,
    leaderPeerId: leader.replica.peerId,
    term: leader.replica.term,
    voters: leader.replica.voters,
    learners: leader.replica.learners,
    confIndex: leader.replica.confIndex,
  };
  return removedReplicaKept(region, hosted, group, hostedReplicas(ctx, d.regionId), (nodeId) => ctx.removalAwaits(nodeId));
}

/**
 * catch-up and promote act only on a new peer the leader counts (add-learner moved on once it
 * did). Without it: the group has removed the peer since (failed: it is neither opened again —
 * empty, under a peer id that voted — nor promoted: an AddVoter of a peer that no longer exists
 * takes a voter out of every quorum for good), or the leader has not applied the addition yet
 * (a new leader: waited for). Removed when the leader reports a configuration newer than the
 * one at which add-learner saw the peer counted (`learnerAtConfIndex`; for a record without it,
 * newer than the catalog's, removedByGroup's test). A catalog restored from a copy taken
 * mid-repair resumes here after the group moved on (finding Y5).
 */
function uncounted(ctx: ProcedureContext, d: Allocated, region: RegionDef, leader: Leader): Result | undefined {
  if (namesPeer(leader.replica, d.newPeerId)) return undefined;
  if (removedSinceCounted(ctx, d, region, leader)) {
    // Its placement goes with it (N1's left item (f)), as add-learner's failure drops it: left in
    // the catalog, reconciliation would tell its node to open it — empty, under an id that voted —
    // whenever R5 cannot judge it (no report that counts a peer id above it).
    dropNewPeer(region, d);
    return {
      failed: `the group removed the new peer ${d.newPeerId} since it was added (the leader on node ${leader.nodeId} has ${[...leader.replica.voters, ...leader.replica.learners].join(',')} at conf index ${leader.replica.confIndex}): not opened or promoted again, its placement dropped (a catalog older than the group?); the catalog is left to reconciliation`,
    };
  }
  return { wait: true, note: `the leader on node ${leader.nodeId} does not count the new peer ${d.newPeerId} yet (conf index ${leader.replica.confIndex})` };
}

/**
 * Whether the leader, not naming the new peer, has removed it (rather than not having applied its
 * addition yet): its configuration is newer than the one at which add-learner saw the peer counted
 * (`learnerAtConfIndex`), or, for a record without it, newer than the catalog's (removedByGroup).
 */
function removedSinceCounted(ctx: ProcedureContext, d: Allocated, region: RegionDef, leader: Leader): boolean {
  const since = d.learnerAtConfIndex;
  return since !== undefined ? leader.replica.confIndex > since : removedByGroup(ctx, region, d.newPeerId);
}

/**
 * catch-up and promote wait for the new replica; one whose node has been down for
 * `replica_repair_after_ms` (the tick's rule for re-creating a down node's replicas elsewhere) is
 * given up (finding Y6): the leader is asked to remove the learner, and once it no longer counts
 * it the placement goes and `allocate` places another peer on another node. Before, the repair
 * waited for that node for good, re-sending an open every 3 s into its queue, while the region
 * held its repair slot — one replica short (the old peer's, whose node may be down too) with a
 * learner on a dead node.
 */
function newNodeGivenUp(ctx: ProcedureContext, d: Allocated, region: RegionDef, leader: Leader, run: StepRun, unopened?: string): Result | undefined {
  // Also a new peer whose placement was marked lost after add-learner (M26 one step later: its node
  // registered a new store while the peer was a learner, noteStore marking every placement there):
  // opened again it would run under a peer id that the lost mark's own in-place repair later
  // deletes while it may lead (its followers quiesced, nothing wakes them: wide mix engine seed
  // 2389), and catch-up would re-open it empty. Given up as a down node's learner is. And (M37,
  // `unopened`) a new peer its live node never opened: the repair waited for it for good.
  const lost = newPeerLost(region, d);
  if (lost === undefined && !ctx.downTooLong(d.newNodeId) && unopened === undefined) return undefined;
  const why = lost !== undefined ? `marked lost (${lost})` : unopened ?? `its node ${d.newNodeId} down too long`;
  if (namesPeer(leader.replica, d.newPeerId)) {
    if (run.resend()) ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'remove', peer: peerMessage(ctx, d.newPeerId, d.newNodeId) } });
    return { wait: true, note: `the new peer ${d.newPeerId} on node ${d.newNodeId} is ${why}: removing it, then placing the new replica anew` };
  }
  // Not named: dropped only once the leader's configuration is newer than the one that counted
  // the peer (uncounted's test). A leader just elected that has not applied the addition yet would
  // apply it later, and the group would keep a learner on a dead node the catalog no longer has.
  if (!removedSinceCounted(ctx, d, region, leader)) return { wait: true, note: `the new peer ${d.newPeerId} on node ${d.newNodeId} is ${why}; the leader on node ${leader.nodeId} does not count it yet (conf index ${leader.replica.confIndex}): waiting before giving it up` };
  if (unopened !== undefined) {
    // Whatever its live node holds of the given-up peer goes, by name: its data, if the peer was
    // opened once and then closed without destroy (the node restarted, an I/O error) — which no
    // report shows — would make that node refuse every later new peer of the region (M24), as it
    // did this one's. The group no longer counts the peer, which never voted (a learner).
    ctx.send(d.newNodeId, { close_region: { region_id: region.regionId, destroy: true, peer_id: String(d.newPeerId) } });
    // No other new peer of this repair goes there while another node can take it (allocate).
    d.unopenedOn = [...new Set([...(d.unopenedOn ?? []), d.newNodeId])];
  }
  return placeAnew(region, d, `new peer ${d.newPeerId} on node ${d.newNodeId} given up (${why}; the group does not count it); placing another`);
}

/**
 * Why the new peer is given up at catch-up because its live node never opened it (M37), if so:
 * not reported under its peer id for NEW_REPLICA_OPEN_WAIT_MS of the step while the node is alive.
 */
function neverOpened(ctx: ProcedureContext, d: Allocated, regionId: string, run: StepRun): string | undefined {
  if (!ctx.isAlive(d.newNodeId) || ctx.observed(d.newNodeId, regionId)?.peerId === d.newPeerId) return undefined;
  const waitedMs = ctx.clock.nowMs() - run.stepSinceMs;
  if (!(waitedMs >= NEW_REPLICA_OPEN_WAIT_MS)) return undefined;
  return `never opened by its live node ${d.newNodeId} in ${Math.round(waitedMs / 1000)} s (the node may hold another replica of the region closed on its disk, which it will not open over)`;
}

/** Why the new peer's placement is marked lost (its node registered a new store since allocate), if it is. */
function newPeerLost(region: RegionDef, d: Allocated): string | undefined {
  return region.replicas.find((p) => p.peerId === d.newPeerId)?.lost;
}

/**
 * The new peer, which the group does not count and never will, is given up: its placement
 * dropped (`dropNewPeer`) and the record back at `allocate` with no new peer.
 */
function placeAnew(region: RegionDef, d: Allocated, note: string): Result {
  dropNewPeer(region, d);
  const data: RepairReplicaData = d;
  delete data.newPeerId;
  delete data.newNodeId;
  delete data.learnerAtConfIndex;
  return { next: 'allocate', note };
}

/**
 * The new peer's placement leaves the catalog, once the leader does not count the peer and will
 * not (Y6's give-up; add-learner's `wentOnWithout`): heartbeat reconciliation no longer tells its
 * node to open it (reconcile.ts `nodeActions`), and deletes a replica of it the node hosts once
 * the leader's membership allows (R1).
 */
function dropNewPeer(region: RegionDef, d: Allocated): void {
  region.replicas = region.replicas.filter((p) => p.peerId !== d.newPeerId);
  region.confVersion++;
}

/**
 * add-learner, before it opens the new replica and asks for the learner (the leader does not count
 * the new peer): whether the group went on past this step in a catalog this metasrv no longer has
 * — a catalog restored from a copy taken at add-learner (a single metasrv from an older disk,
 * `meta seed`) resumes here after the group added the peer, promoted it, removed the old one and
 * maybe replaced the new one again (Y5's hazard one step earlier: the open would bring the peer
 * back, maybe empty, under a peer id that has voted). Then the repair fails, sending nothing, and
 * the step drops the new peer's placement (`dropNewPeer`). Left in the catalog, heartbeat
 * reconciliation would tell its node to open it while R2 leaves the region alone (the catalog's
 * conf index at or above the group's, which a snapshot over-states) and R5 cannot judge it (no
 * leader reports, reconcile.ts `passedByGroup`). The
 * evidence, each independent of conf indexes (a reported conf index is over-stated by a snapshot
 * the replica was opened from or installed, docs/raft-rules.md R16, so a newer one does not mean a
 * membership change: sim seed 148 with `drain`, docs/procedures.md):
 *   - the leader counts a peer id above the new peer's: allocated after it (allocate raised the
 *     allocator above every id the group was seen to use), and nothing but this repair adds peers
 *     to the region while it holds it;
 *   - the leader no longer counts the old peer (removedByGroup): its replacement is done.
 * Not detected: the new peer added as a learner, given up and removed (Y6) with the old peer still
 * in and its successor not yet added — it never voted (Y6 removes learners only).
 */
function wentOnWithout(ctx: ProcedureContext, d: Allocated, region: RegionDef, leader: Leader): Result | undefined {
  const members = [...leader.replica.voters, ...leader.replica.learners];
  const later = members.filter((p) => p > d.newPeerId);
  const removedOld = removedByGroup(ctx, region, d.oldPeerId);
  if (later.length === 0 && !removedOld) return undefined;
  const why = later.length > 0 ? `it counts peer ${later.join(',')}, allocated after the new peer ${d.newPeerId}` : `it no longer counts the old peer ${d.oldPeerId}`;
  return {
    failed: `the group went on past add-learner without this metasrv (the leader on node ${leader.nodeId} has ${members.join(',')} at conf index ${leader.replica.confIndex}: ${why}): the new peer ${d.newPeerId} is not opened or added again (a catalog older than the group?); its placement on node ${d.newNodeId} dropped, the rest of the catalog left to reconciliation`,
  };
}

/**
 * Raises the peer-id allocator above every peer id the region's group is known to use: its
 * leader's configuration, and each replica of it a live node reports (its own id and its
 * membership). The metasrv's heartbeat reconciliation already raises it above every id a live node
 * reports (`idFloors`) in the turn its report becomes visible here; allocate does not depend on
 * that: an id the group uses (a catalog restored from an older copy is behind), given to the new
 * replica, would be taken for it at add-learner and opened on a second node.
 */
function raisePeerIds(ctx: ProcedureContext, region: RegionDef): void {
  let top = ctx.catalog.nextPeerId - 1;
  for (const p of region.replicas) top = Math.max(top, p.peerId);
  const seen = hostedReplicas(ctx, region.regionId).map(([, r]) => r);
  const leader = groupLeaderOf(ctx, region);
  if (leader) seen.push(leader.replica);
  for (const r of seen) top = Math.max(top, r.peerId, ...r.voters, ...r.learners);
  ctx.catalog.nextPeerId = top + 1;
}

function openNew(ctx: ProcedureContext, d: Allocated, region: RegionDef): void {
  // In place, whatever the node still holds of the lost peer goes first, by name: its data on
  // disk without a report showing it (a replica closed without destroy) makes the node refuse
  // the new peer's open (finding M24: one replica per region on a node), and clear-old, seeing
  // nothing reported, deleted nothing. The node runs the two in order (O2); once the new peer is
  // there the close is refused, harmlessly (M16).
  if (d.newNodeId === d.oldNodeId) ctx.send(d.oldNodeId, { close_region: { region_id: d.regionId, destroy: true, peer_id: String(d.oldPeerId) } });
  ctx.send(d.newNodeId, { open_region: ctx.openInstruction(region, d.newPeerId, false) });
}

export const repairReplica: ProcedureDefinition<'repair-replica'> = {
  kind: 'repair-replica',
  firstStep: 'allocate',
  describe: (d) =>
    `region ${d.regionId}: replace peer ${d.oldPeerId} (node ${d.oldNodeId})${d.newPeerId ? ` with peer ${d.newPeerId} on node ${d.newNodeId}` : ''}${d.reason ? `; ${d.reason}` : ''}`,
  steps: {
    allocate(ctx, d, run) {
      const region = ctx.catalog.regions[d.regionId];
      if (!region) return { done: true, note: 'region no longer exists' };
      if (!region.replicas.some((p) => p.peerId === d.oldPeerId)) return { done: true, note: 'replica already replaced' };
      let againNote = '';
      if (d.newPeerId === undefined || d.newNodeId === undefined) {
        // Nothing to replace: the group dropped the peer and the catalog is behind. Waiting here
        // (for a free node, say) would keep R2 from correcting the catalog for as long.
        if (removedByGroup(ctx, region, d.oldPeerId)) return { done: true, note: `peer ${d.oldPeerId} is no longer a member of the group; the catalog is left to reconciliation` };
        // A learner of a group that has its voters: a new peer of a repair whose record a catalog
        // restored from an older copy lost (placed by R2, lost if its node does not host it: M25).
        // It never votes, so the group's strength does not depend on it; replaced, it would be
        // one voter too many — and with every node holding a replica of the region (the learner's
        // node holding another peer of it) no node is free, so the repair waited here for good,
        // holding the region's repair slot (engine seed 2248 of the wide mix with marks). The
        // leader is asked to remove it; once it no longer counts it, removedByGroup above ends
        // the procedure and R2 drops the placement (R1 then deletes a replica of it).
        const leader = groupLeaderOf(ctx, region);
        if (leader?.replica.learners.includes(d.oldPeerId) && leader.replica.voters.length >= REPLICATION_FACTOR) {
          if (run.resend()) ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'remove', peer: peerMessage(ctx, d.oldPeerId, d.oldNodeId) } });
          return { wait: true, note: `peer ${d.oldPeerId} is a learner of a group with ${leader.replica.voters.length} voters: removing it, not replacing it` };
        }
        // Not before the region's first report (`bootstrapped`): until then a heartbeat's or a
        // registration's open of a placement tells its node to *bootstrap* the region with the
        // catalog's placements as the initial voters (metasrv-core `openOf`), so a new peer placed
        // now would be bootstrapped — on its own log — as a voter of an initial configuration the
        // group never had: AddVoter entries the others do not hold, committed at their indexes
        // (sim engine seed 2635 with the metasrv: n4's peer 9 with AddVoter 9 committed at index 4 where
        // the group committed its leader's entry; promoted, the leader could never repair it and the
        // region lost its quorum). The others' first report ends the wait; without one the group
        // has no leader, which add-learner needs anyway.
        if (!region.bootstrapped) return { retry: 'waiting for the region to be bootstrapped (its first report), before placing a new peer' };
        // In place: the old node, if nothing else of the region is there (what it reports, if
        // anything, is the lost peer itself, which clear-old deletes first).
        const there = ctx.observed(d.oldNodeId, region.regionId);
        const oldNodeFree = !region.replicas.some((p) => p.nodeId === d.oldNodeId && p.peerId !== d.oldPeerId) && (there === undefined || there.peerId === d.oldPeerId);
        const choose = (avoid: readonly number[]) => {
          const excluded = repairExclusions(ctx, region);
          for (const nodeId of avoid) excluded.add(nodeId);
          const elsewhere = ctx.pickNode(excluded);
          if (!avoid.includes(d.oldNodeId)) excluded.delete(d.oldNodeId);
          return elsewhere ?? (d.inPlace && oldNodeFree ? ctx.pickNode(excluded) : undefined);
        };
        // Not where a new peer of this repair never opened (M37) while another node can take it;
        // with none, there again: what kept it from opening may have passed (a node restarting,
        // a metasrv that kept restarting), and a repair that waits for a free node waits for good.
        const unopenedOn = d.unopenedOn ?? [];
        let node = choose(unopenedOn);
        const again = node === undefined && unopenedOn.length > 0 ? choose([]) : undefined;
        if (again) {
          node = again;
          delete d.unopenedOn;
          againNote = ` (again where a new peer never opened: no other node can take it; a closed replica of the region on that disk would keep it from opening — move it aside)`;
        }
        if (!node) return { retry: 'no healthy datanode without a replica of this region' };
        // Not while a node the catalog knows has not reported since this metasrv began acting (and
        // is not judged down): a catalog restored from an older copy is behind the peer ids its
        // groups use, and the node holding the newest peer may not have beaten yet — the id given
        // here would be that peer's (register seed 7037 with the metasrv, engine part: a copy
        // placing 1@1,2@2,3@3, the group at 2,3,4 led by peer 4 on n4, n1 wiped; 0.27 s after the
        // start, before n2, n3 and n4 had reported, the repair gave n1 peer 4 — the leader's own id
        // — and add-learner never took). A node that never beats is judged down after the startup
        // pause, so the wait is bounded; raisePeerIds then sees every live report.
        const awaited = Object.values(ctx.catalog.nodes).filter((n) => ctx.firstReportAwaited(n.nodeId)).map((n) => n.nodeId);
        if (awaited.length > 0) return { retry: `waiting for the first report of node(s) ${awaited.join(',')} since this metasrv began acting, before allocating a peer id (a restored catalog may be behind the ids the group uses)` };
        // Nor before a leader of the region has reported its membership, whose ids raisePeerIds
        // takes: after the startup pause a node never heard from counts as down and is not waited
        // for above, and in seed 7037 none of n2, n3, n4 had beaten by then (their heartbeats timed
        // out). add-learner needs that leader anyway, so waiting for it here costs the repair
        // nothing.
        if (!groupLeaderOf(ctx, region)) return { retry: 'waiting for a leader of the region to report its membership before allocating a peer id (a restored catalog may be behind the ids the group uses)' };
        raisePeerIds(ctx, region);
        d.newPeerId = ctx.catalog.nextPeerId++;
        d.newNodeId = node.nodeId;
        // In the catalog from now on: heartbeat reconciliation opens it on the new node.
        region.replicas = [...region.replicas, { peerId: d.newPeerId, nodeId: d.newNodeId }];
        region.confVersion++;
      }
      return { next: d.newNodeId === d.oldNodeId ? 'clear-old' : 'add-learner', note: `new peer ${d.newPeerId} on node ${d.newNodeId}${againNote}` };
    },

    'clear-old'(ctx, d, run) {
      if (!ctx.isAlive(d.oldNodeId)) return { retry: `waiting for node ${d.oldNodeId}` };
      const hosted = ctx.observed(d.oldNodeId, d.regionId);
      if (hosted?.peerId !== d.oldPeerId) return { next: 'add-learner', note: `node ${d.oldNodeId} no longer hosts peer ${d.oldPeerId}` };
      // A lost peer that runs and leads (its node came back with its data and reopened it, M25):
      // deleted as leader, its followers — quiesced under it, its node up, so never told it is
      // down (docs/quiescence.md) — would wait for it for good. Leadership goes to another live
      // voter first, as remove-old hands it off the old peer.
      const region = ctx.catalog.regions[d.regionId];
      const leader = region && groupLeaderOf(ctx, region);
      if (hosted.health !== 'failed' && leader?.nodeId === d.oldNodeId && leader.replica.peerId === d.oldPeerId) {
        const live = hostedReplicas(ctx, d.regionId).filter(([nodeId, r]) => nodeId !== d.oldNodeId && ctx.isAlive(nodeId) && r.health !== 'failed');
        const to = leader.replica.voters.find((p) => p !== d.oldPeerId && live.some(([, r]) => r.peerId === p));
        if (to !== undefined && run.resend()) ctx.send(leader.nodeId, { transfer_leader: { region_id: d.regionId, to_peer_id: String(to) } });
        return { wait: true, note: `moving leadership off the lost peer ${d.oldPeerId} before deleting it${to === undefined ? ' (no other live voter yet)' : ` (to peer ${to})`}` };
      }
      if (run.resend()) ctx.send(d.oldNodeId, { close_region: { region_id: d.regionId, destroy: true, peer_id: String(d.oldPeerId) } });
      return { wait: true, note: `deleting the lost peer ${d.oldPeerId} on node ${d.oldNodeId}` };
    },

    'add-learner': (ctx, data, run) =>
      withLeader(ctx, data, (d, region, leader) => {
        if (namesPeer(leader.replica, d.newPeerId)) {
          d.learnerAtConfIndex = leader.replica.confIndex;
          return { next: 'catch-up' };
        }
        const wentOn = wentOnWithout(ctx, d, region, leader);
        if (wentOn) {
          dropNewPeer(region, d);
          return wentOn;
        }
        // The new peer's placement marked lost before the group counts it: its node registered a
        // new store after allocate chose it (noteStore marks every replica placed there). Opened
        // now, it would run under a peer id reconciliation never reopens (R4) and that a repair of
        // the lost mark later deletes in place while it may lead. Another peer is allocated instead.
        const lost = newPeerLost(region, d);
        if (lost !== undefined) return placeAnew(region, d, `new peer ${d.newPeerId} on node ${d.newNodeId} marked lost before it was added (${lost}): allocating another`);
        if (run.resend()) {
          openNew(ctx, d, region);
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'add-learner', peer: peerMessage(ctx, d.newPeerId, d.newNodeId) } });
        }
        return { wait: true };
      }),

    'catch-up': (ctx, data, run) =>
      withLeader(ctx, data, (d, region, leader) => {
        const givenUp = newNodeGivenUp(ctx, d, region, leader, run, neverOpened(ctx, d, region.regionId, run));
        if (givenUp) return givenUp;
        const gone = uncounted(ctx, d, region, leader);
        if (gone) return gone;
        // The new peer's replica, not another of the region's on that node (say a removed one
        // still awaiting deletion): it must not pass as caught up.
        const hosted = ctx.observed(d.newNodeId, region.regionId);
        const mine = hosted?.peerId === d.newPeerId ? hosted : undefined;
        if (!mine) {
          if (run.resend()) openNew(ctx, d, region);
          return { wait: true, note: 'waiting for the new replica to open' };
        }
        if (mine.appliedIndex + CATCH_UP_SLACK >= leader.replica.commitIndex) return { next: 'promote', note: `caught up at ${mine.appliedIndex}` };
        // A leader that learnt the membership from a raft snapshot knows the learner's peer id
        // but not its node (that travels only in the add's ConfChange context): it drops every
        // message to it, and a learner never sends first. Past an interval in this step with the
        // learner not hearing this leader, the add is proposed again — a no-op to raft whose
        // apply gives the leader the learner's node (finding P1 in docs/correctness.md).
        const waitedMs = ctx.clock.nowMs() - run.stepSinceMs;
        if (mine.leaderNodeId !== leader.nodeId && (waitedMs < 0 || waitedMs >= RESEND_AFTER_MS) && run.resend()) {
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'add-learner', peer: peerMessage(ctx, d.newPeerId, d.newNodeId) } });
          return { wait: true, note: `new peer ${d.newPeerId} does not hear the leader on node ${leader.nodeId}: added again` };
        }
        return { wait: true };
      }),

    promote: (ctx, data, run) =>
      withLeader(ctx, data, (d, region, leader) => {
        if (leader.replica.voters.includes(d.newPeerId)) return { next: 'remove-old' };
        const givenUp = newNodeGivenUp(ctx, d, region, leader, run);
        if (givenUp) return givenUp;
        const gone = uncounted(ctx, d, region, leader);
        if (gone) return gone;
        if (run.resend()) {
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'promote', peer: peerMessage(ctx, d.newPeerId, d.newNodeId) } });
        }
        return { wait: true };
      }),

    'remove-old': (ctx, data, run) =>
      withLeader(ctx, data, (d, region, leader) => {
        const { voters, learners } = leader.replica;
        if (!namesPeer(leader.replica, d.oldPeerId)) {
          region.replicas = region.replicas.filter((p) => p.peerId !== d.oldPeerId);
          // If the placement now is the leader's applied membership, it is so at the leader's conf
          // index, which is the removal's index or later (a replica applies a membership change,
          // and reports it, only once committed). Recorded, so that R2 cannot take an older report
          // — a removed peer elected before it learned of its removal — for a newer one and
          // re-adopt the peer. A placement that differs in another peer (the catalog was behind)
          // is not recorded as matching at that index — R2 must still adopt the group's membership
          // at it (M23) — but as newer than every membership before it (M21 again, found in
          // review): any membership naming the removed peer is older than the leader's, so an
          // elected removed peer's report cannot put it back while R2 waits for the group's.
          const known = samePeers(region.replicas, voters, learners) ? leader.replica.confIndex : leader.replica.confIndex - 1;
          region.confIndex = Math.max(region.confIndex ?? 0, known);
          region.confVersion++;
          return { next: 'cleanup', note: `peer ${d.oldPeerId} removed; region has ${region.replicas.length} replicas` };
        }
        if (leader.replica.peerId === d.oldPeerId) {
          // Draining its own leader: hand leadership to the new voter first.
          if (run.resend()) ctx.send(leader.nodeId, { transfer_leader: { region_id: region.regionId, to_peer_id: String(d.newPeerId) } });
          return { wait: true, note: 'moving leadership off the old replica' };
        }
        if (run.resend()) {
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'remove', peer: peerMessage(ctx, d.oldPeerId, d.oldNodeId) } });
        }
        return { wait: true };
      }),

    cleanup(ctx, d) {
      // A node that is down now is told on its return: heartbeat reconciliation closes any
      // replica the catalog no longer places on it.
      // Replaced on the same node: the region there is the new replica now; nothing to delete.
      if (ctx.isAlive(d.oldNodeId) && d.newNodeId !== d.oldNodeId) {
        // A remaining voter may still need the old replica's vote: it stays, and reconciliation
        // deletes it once none may. The procedure ends now all the same (it holds the region's
        // repair slot, and the repair of a voter that holds this up may be the next one).
        const hold = cleanupHold(ctx, d);
        if (hold) return { done: true, note: `replica replaced; peer ${d.oldPeerId} on node ${d.oldNodeId} is kept while ${hold}, then deleted by heartbeat reconciliation` };
        ctx.send(d.oldNodeId, { close_region: { region_id: d.regionId, destroy: true, peer_id: String(d.oldPeerId) } });
      }
      return { done: true, note: 'replica replaced' };
    },
  },
};
