// drain-node: empty a datanode before maintenance. It is marked draining (no new placements),
// its leaderships move to other voters, then every replica on it is replaced by a
// repair-replica procedure; done when the catalog places nothing on it.
import { regionList } from '../catalog.js';
import { type ProcedureDefinition, removedByGroup } from './procedure.js';

export const MAX_PARALLEL_REPAIRS = 2;
/** Leaderships still on the node after this are left to the repairs (remove-old moves them). */
export const MOVE_LEADERS_TIMEOUT_MS = 15_000;

export const drainNode: ProcedureDefinition<'drain-node'> = {
  kind: 'drain-node',
  firstStep: 'mark',
  describe: (d) => `node ${d.nodeId}`,
  steps: {
    mark(ctx, { nodeId }) {
      const node = ctx.catalog.nodes[nodeId];
      if (!node) return { failed: `node ${nodeId} is not registered` };
      node.state = 'draining';
      return { next: 'move-leaders', note: `node ${nodeId} takes no new replicas` };
    },
    'move-leaders'(ctx, { nodeId }, run) {
      const led = regionList(ctx.catalog).filter((g) => ctx.leaderOf(g)?.nodeId === nodeId);
      if (led.length === 0) return { next: 'move-replicas', note: 'node leads no region' };
      if (run.resend()) {
        for (const region of led) {
          const target = region.replicas.find((p) => p.nodeId !== nodeId && ctx.isAlive(p.nodeId) && ctx.observed(p.nodeId, region.regionId));
          if (target) ctx.send(nodeId, { transfer_leader: { region_id: region.regionId, to_peer_id: String(target.peerId) } });
        }
      }
      if (ctx.clock.nowMs() - run.stepSinceMs > MOVE_LEADERS_TIMEOUT_MS) {
        return { next: 'move-replicas', note: `${led.length} leadership(s) did not move; the repairs will move them` };
      }
      return { wait: true };
    },
    'move-replicas'(ctx, { nodeId }) {
      const remaining = regionList(ctx.catalog).filter((g) => g.replicas.some((p) => p.nodeId === nodeId));
      const running = ctx.running('repair-replica');
      const repairs = running.filter((p) => p.data.oldNodeId === nodeId);
      if (remaining.length === 0 && repairs.length === 0) return { done: true, note: `node ${nodeId} hosts no replica` };
      const busy = new Set(running.map((p) => p.data.regionId));
      let started = 0;
      for (const region of remaining) {
        if (repairs.length + started >= MAX_PARALLEL_REPAIRS) break;
        if (busy.has(region.regionId)) continue;
        const old = region.replicas.find((p) => p.nodeId === nodeId)!;
        // Already removed by the group (the catalog is behind): reconciliation drops it, once no
        // procedure holds the region; a repair started now would hold it.
        if (removedByGroup(ctx, region, old.peerId)) continue;
        ctx.start('repair-replica', { regionId: region.regionId, oldPeerId: old.peerId, oldNodeId: nodeId });
        started++;
      }
      return started > 0 ? { wait: true, note: `started ${started} replica move(s); ${remaining.length} region(s) left` } : { wait: true };
    },
  },
};
