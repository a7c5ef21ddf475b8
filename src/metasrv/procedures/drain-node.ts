// drain-node: empty a datanode before maintenance. It is marked draining (no new placements),
// its leaderships move to other voters, then every replica on it is replaced by a
// repair-replica procedure; done when the catalog places nothing on it.
import { type ProcedureDefinition, type StepResult, shouldResend } from './procedure.js';

const MAX_PARALLEL_REPAIRS = 2;

export const drainNode: ProcedureDefinition = {
  kind: 'drain-node',
  firstStep: 'mark',
  describe: (r) => `node ${r.data['nodeId']}`,
  steps: {
    mark(ctx, r): StepResult {
      const nodeId = r.data['nodeId'] as number;
      const node = ctx.catalog.nodes[nodeId];
      if (!node) return { failed: `node ${nodeId} is not registered` };
      node.state = 'draining';
      return { next: 'move-leaders', note: `node ${nodeId} takes no new replicas` };
    },
    'move-leaders'(ctx, r): StepResult {
      const nodeId = r.data['nodeId'] as number;
      const led = Object.values(ctx.catalog.regions).filter((g) => ctx.leaderOf(g)?.nodeId === nodeId);
      if (led.length === 0) return { next: 'move-replicas', note: 'node leads no region' };
      if (shouldResend(ctx, r)) {
        for (const region of led) {
          const target = region.replicas.find((p) => p.nodeId !== nodeId && ctx.isAlive(p.nodeId) && ctx.observed(p.nodeId, region.regionId));
          if (target) ctx.send(nodeId, { transfer_leader: { region_id: region.regionId, to_peer_id: String(target.peerId) } });
        }
      }
      if (ctx.nowMs() - r.stepSinceMs > 15_000) return { next: 'move-replicas', note: `${led.length} leadership(s) did not move; the repairs will move them` };
      return { wait: true };
    },
    'move-replicas'(ctx, r): StepResult {
      const nodeId = r.data['nodeId'] as number;
      const remaining = Object.values(ctx.catalog.regions).filter((g) => g.replicas.some((p) => p.nodeId === nodeId));
      const repairs = ctx.running('repair-replica').filter((p) => p.data['oldNodeId'] === nodeId);
      if (remaining.length === 0 && repairs.length === 0) return { done: true, note: `node ${nodeId} hosts no replica` };
      const busy = new Set(ctx.running('repair-replica').map((p) => p.data['regionId']));
      let started = 0;
      for (const region of remaining) {
        if (repairs.length + started >= MAX_PARALLEL_REPAIRS) break;
        if (busy.has(region.regionId)) continue;
        const old = region.replicas.find((p) => p.nodeId === nodeId)!;
        ctx.start('repair-replica', { regionId: region.regionId, oldPeerId: old.peerId, oldNodeId: nodeId });
        started++;
      }
      return started > 0 ? { wait: true, note: `started ${started} replica move(s); ${remaining.length} region(s) left` } : { wait: true };
    },
  },
};
