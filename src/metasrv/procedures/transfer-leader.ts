// transfer-leader (admin): move a region's leadership to the replica on a given datanode, by
// asking the current leader to transfer (raft TimeoutNow); done when the target reports it leads.
import { type ProcedureDefinition, type StepResult, shouldResend } from './procedure.js';

const TIMEOUT_MS = 15_000;

export const transferLeader: ProcedureDefinition = {
  kind: 'transfer-leader',
  firstStep: 'transfer',
  describe: (r) => `region ${r.data['regionId']} → node ${r.data['nodeId']}`,
  steps: {
    transfer(ctx, r): StepResult {
      const regionId = r.data['regionId'] as string;
      const nodeId = r.data['nodeId'] as number;
      const region = ctx.catalog.regions[regionId];
      if (!region) return { failed: `region ${regionId} does not exist` };
      const target = region.replicas.find((p) => p.nodeId === nodeId);
      if (!target) return { failed: `node ${nodeId} has no replica of region ${regionId}` };
      const leader = ctx.leaderOf(region);
      if (leader?.nodeId === nodeId) {
        region.leaderNodeId = nodeId;
        return { done: true, note: `node ${nodeId} leads region ${regionId}` };
      }
      if (ctx.nowMs() - r.createdMs > TIMEOUT_MS) return { failed: `leadership did not move within ${TIMEOUT_MS} ms` };
      if (leader && shouldResend(ctx, r)) ctx.send(leader.nodeId, { transfer_leader: { region_id: regionId, to_peer_id: String(target.peerId) } });
      return { wait: true };
    },
  },
};
