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
//                 weaken quorums while it catches up)
//   catch-up    → wait until the new replica has applied what the leader had committed
//   promote     → the leader makes it a voter
//   remove-old  → the leader removes the old peer; the catalog drops it (routes change here)
//   cleanup     → if the old node is reachable, it closes and deletes its replica
import type { RegionDef } from '../catalog.js';
import { type ProcedureContext, type ProcedureDefinition, type ProcedureRecord, type StepResult, peerAddr, shouldResend } from './procedure.js';

interface RepairData {
  regionId: string;
  oldPeerId: number;
  oldNodeId: number;
  newPeerId?: number;
  newNodeId?: number;
  /** Why the old replica is replaced, if not its node's absence (for status). */
  reason?: string;
  /** The old replica is lost: its own node may take the new one. */
  inPlace?: boolean;
}

const data = (r: ProcedureRecord) => r.data as unknown as RepairData & Record<string, unknown>;

/** The new replica may lag the leader's commit by this many entries and count as caught up. */
const CATCH_UP_SLACK = 16;

function regionOf(ctx: ProcedureContext, r: ProcedureRecord): RegionDef | undefined {
  return ctx.catalog.regions[data(r).regionId];
}

type Leader = NonNullable<ReturnType<ProcedureContext['leaderOf']>>;

/** Every step past allocation needs the region (else it was dropped) and its live leader. */
function withLeader(
  ctx: ProcedureContext,
  r: ProcedureRecord,
  step: (d: RepairData & Record<string, unknown>, region: RegionDef, leader: Leader) => StepResult,
): StepResult {
  const region = regionOf(ctx, r);
  if (!region) return { done: true, note: 'region dropped' };
  const leader = ctx.leaderOf(region);
  if (!leader) return { wait: true, note: 'waiting for a leader' };
  return step(data(r), region, leader);
}

function peerMessage(ctx: ProcedureContext, peerId: number, nodeId: number) {
  return { peer_id: String(peerId), node_id: String(nodeId), addr: peerAddr(ctx, nodeId) };
}

export const repairReplica: ProcedureDefinition = {
  kind: 'repair-replica',
  firstStep: 'allocate',
  describe: (r) => {
    const d = data(r);
    return `region ${d.regionId}: replace peer ${d.oldPeerId} (node ${d.oldNodeId})${d.newPeerId ? ` with peer ${d.newPeerId} on node ${d.newNodeId}` : ''}${d.reason ? `; ${d.reason}` : ''}`;
  },
  steps: {
    allocate(ctx, r): StepResult {
      const d = data(r);
      const region = regionOf(ctx, r);
      if (!region) return { done: true, note: 'region no longer exists' };
      if (!region.replicas.some((p) => p.peerId === d.oldPeerId)) return { done: true, note: 'replica already replaced' };
      if (d.newPeerId === undefined) {
        const others = new Set(region.replicas.map((p) => p.nodeId));
        const elsewhere = ctx.pickNode(others);
        others.delete(d.oldNodeId);
        const node = elsewhere ?? (d.inPlace && !region.replicas.some((p) => p.nodeId === d.oldNodeId && p.peerId !== d.oldPeerId) ? ctx.pickNode(others) : undefined);
        if (!node) return { wait: true, note: 'no healthy datanode without a replica of this region' };
        d.newPeerId = ctx.catalog.nextPeerId++;
        d.newNodeId = node.nodeId;
        // In the catalog from now on: heartbeat reconciliation opens it on the new node.
        region.replicas = [...region.replicas, { peerId: d.newPeerId, nodeId: d.newNodeId }];
        region.confVersion++;
      }
      return { next: d.newNodeId === d.oldNodeId ? 'clear-old' : 'add-learner', note: `new peer ${d.newPeerId} on node ${d.newNodeId}` };
    },

    'clear-old'(ctx, r): StepResult {
      const d = data(r);
      if (!ctx.isAlive(d.oldNodeId)) return { wait: true, note: `waiting for node ${d.oldNodeId}` };
      const hosted = ctx.observed(d.oldNodeId, d.regionId);
      if (hosted?.peerId !== d.oldPeerId) return { next: 'add-learner', note: `node ${d.oldNodeId} no longer hosts peer ${d.oldPeerId}` };
      if (shouldResend(ctx, r)) ctx.send(d.oldNodeId, { close_region: { region_id: d.regionId, destroy: true } });
      return { wait: true, note: `deleting the lost peer ${d.oldPeerId} on node ${d.oldNodeId}` };
    },

    'add-learner': (ctx, r) =>
      withLeader(ctx, r, (d, region, leader) => {
        const { voters, learners } = leader.replica;
        if (voters.includes(d.newPeerId!) || learners.includes(d.newPeerId!)) return { next: 'catch-up' };
        if (shouldResend(ctx, r)) {
          ctx.send(d.newNodeId!, { open_region: ctx.openInstruction(region, d.newPeerId!, false) });
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'add-learner', peer: peerMessage(ctx, d.newPeerId!, d.newNodeId!) } });
        }
        return { wait: true };
      }),

    'catch-up': (ctx, r) =>
      withLeader(ctx, r, (d, region, leader) => {
        const mine = ctx.observed(d.newNodeId!, region.regionId);
        if (!mine) {
          if (shouldResend(ctx, r)) ctx.send(d.newNodeId!, { open_region: ctx.openInstruction(region, d.newPeerId!, false) });
          return { wait: true, note: 'waiting for the new replica to open' };
        }
        if (mine.appliedIndex + CATCH_UP_SLACK >= leader.replica.commitIndex) return { next: 'promote', note: `caught up at ${mine.appliedIndex}` };
        return { wait: true };
      }),

    promote: (ctx, r) =>
      withLeader(ctx, r, (d, region, leader) => {
        if (leader.replica.voters.includes(d.newPeerId!)) return { next: 'remove-old' };
        if (shouldResend(ctx, r)) {
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'promote', peer: peerMessage(ctx, d.newPeerId!, d.newNodeId!) } });
        }
        return { wait: true };
      }),

    'remove-old': (ctx, r) =>
      withLeader(ctx, r, (d, region, leader) => {
        const { voters, learners } = leader.replica;
        if (!voters.includes(d.oldPeerId) && !learners.includes(d.oldPeerId)) {
          region.replicas = region.replicas.filter((p) => p.peerId !== d.oldPeerId);
          region.confVersion++;
          return { next: 'cleanup', note: `peer ${d.oldPeerId} removed; region has ${region.replicas.length} replicas` };
        }
        if (leader.replica.peerId === d.oldPeerId) {
          // Draining its own leader: hand leadership to the new voter first.
          if (shouldResend(ctx, r)) ctx.send(leader.nodeId, { transfer_leader: { region_id: region.regionId, to_peer_id: String(d.newPeerId) } });
          return { wait: true, note: 'moving leadership off the old replica' };
        }
        if (shouldResend(ctx, r)) {
          ctx.send(leader.nodeId, { change_peer: { region_id: region.regionId, change: 'remove', peer: peerMessage(ctx, d.oldPeerId, d.oldNodeId) } });
        }
        return { wait: true };
      }),

    cleanup(ctx, r): StepResult {
      const d = data(r);
      // A node that is down now is told on its return: heartbeat reconciliation closes any
      // replica the catalog no longer places on it.
      // Replaced on the same node: the region there is the new replica now; nothing to delete.
      if (ctx.isAlive(d.oldNodeId) && d.newNodeId !== d.oldNodeId) ctx.send(d.oldNodeId, { close_region: { region_id: d.regionId, destroy: true } });
      return { done: true, note: 'replica replaced' };
    },
  },
};
