// transfer-leader (admin): move a region's leadership to the replica on a given datanode, by
// asking the current leader to transfer (raft TimeoutNow); done when the target reports it leads.
import type { ProcedureDefinition } from './procedure.js';

export const TRANSFER_TIMEOUT_MS = 15_000;

export const transferLeader: ProcedureDefinition<'transfer-leader'> = {
  kind: 'transfer-leader',
  firstStep: 'transfer',
  describe: (d) => `region ${d.regionId} → node ${d.nodeId}`,
  steps: {
    transfer(ctx, { regionId, nodeId }, run) {
      const region = ctx.catalog.regions[regionId];
      if (!region) return { failed: `region ${regionId} does not exist` };
      const target = region.replicas.find((p) => p.nodeId === nodeId);
      if (!target) return { failed: `node ${nodeId} has no replica of region ${regionId}` };
      const leader = ctx.leaderOf(region);
      if (leader?.nodeId === nodeId) {
        region.leaderNodeId = nodeId;
        return { done: true, note: `node ${nodeId} leads region ${regionId}` };
      }
      if (ctx.clock.nowMs() - run.stepSinceMs > TRANSFER_TIMEOUT_MS) return { failed: `leadership did not move within ${TRANSFER_TIMEOUT_MS} ms` };
      if (leader && run.resend()) ctx.send(leader.nodeId, { transfer_leader: { region_id: regionId, to_peer_id: String(target.peerId) } });
      return { wait: true };
    },
  },
};
