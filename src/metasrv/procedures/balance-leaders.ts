// balance-leaders: move region leaderships until every live datanode leads within ±1 of every
// other (among nodes that can lead, i.e. hold voters). One transfer at a time; each is
// confirmed by the datanodes' reports before the next is planned; bounded in moves.
import { regionList } from '../catalog.js';
import type { ProcedureContext, ProcedureDefinition } from './procedure.js';

export const MAX_MOVES = 200;
export const MOVE_TIMEOUT_MS = 5000;
/**
 * How long the plan waits for regions that have no known leader yet (a table created a moment
 * ago is still electing): counting them as led by nobody would call 0/0/0 "balanced".
 */
export const ELECTION_WAIT_MS = 10_000;

/** Regions with a replica on a live node but no leader reported by any live node. */
function leaderless(ctx: ProcedureContext): string[] {
  return regionList(ctx.catalog)
    .filter((g) => g.replicas.some((p) => ctx.isAlive(p.nodeId)) && !ctx.leaderOf(g))
    .map((g) => g.regionId);
}

/** Leaders per live, non-draining datanode, from what the datanodes report. */
export function leaderCounts(ctx: ProcedureContext): Map<number, number> {
  const counts = new Map<number, number>();
  for (const node of Object.values(ctx.catalog.nodes)) {
    if (node.state !== 'draining' && ctx.isAlive(node.nodeId)) counts.set(node.nodeId, 0);
  }
  for (const region of regionList(ctx.catalog)) {
    const leader = ctx.leaderOf(region);
    if (leader && counts.has(leader.nodeId)) counts.set(leader.nodeId, counts.get(leader.nodeId)! + 1);
  }
  return counts;
}

export const balanceLeaders: ProcedureDefinition<'balance-leaders'> = {
  kind: 'balance-leaders',
  firstStep: 'plan',
  describe: (d) => `${d.moves ?? 0} leader move(s) so far`,
  steps: {
    plan(ctx, d, run) {
      const moves = d.moves ?? 0;
      const counts = leaderCounts(ctx);
      if (counts.size < 2) return { done: true, note: 'fewer than two live datanodes' };
      const electing = leaderless(ctx);
      const waited = ctx.clock.nowMs() - run.stepSinceMs;
      if (electing.length > 0 && waited <= ELECTION_WAIT_MS) return { wait: true };
      const unknown = electing.length > 0 ? ` (${electing.length} region(s) without a known leader after ${waited} ms: ${electing.slice(0, 5).join(', ')})` : '';
      const sorted = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      const [maxNode, max] = sorted[0]!;
      const [minNode, min] = sorted.at(-1)!;
      if (max - min <= 1) return { done: true, note: `balanced: ${sorted.map(([n, c]) => `node ${n}=${c}`).join(', ')}${unknown}` };
      if (moves >= MAX_MOVES) return { failed: `still unbalanced after ${MAX_MOVES} moves` };
      const region = regionList(ctx.catalog).find(
        (g) => ctx.leaderOf(g)?.nodeId === maxNode && g.replicas.some((p) => p.nodeId === minNode) && ctx.observed(minNode, g.regionId)?.voters.length,
      );
      if (!region) return { done: true, note: `no region led by node ${maxNode} has a replica on node ${minNode}` };
      const target = region.replicas.find((p) => p.nodeId === minNode)!;
      d.regionId = region.regionId;
      d.target = minNode;
      d.targetPeer = target.peerId;
      d.moves = moves + 1;
      return { next: 'move', note: `region ${region.regionId}: node ${maxNode} → node ${minNode}` };
    },
    move(ctx, d, run) {
      const region = d.regionId === undefined ? undefined : ctx.catalog.regions[d.regionId];
      if (!region) return { next: 'plan' };
      const leader = ctx.leaderOf(region);
      if (leader && leader.nodeId === d.target) {
        region.leaderNodeId = leader.nodeId;
        return { next: 'plan' };
      }
      if (ctx.clock.nowMs() - run.stepSinceMs > MOVE_TIMEOUT_MS) return { next: 'plan', note: `move of region ${region.regionId} timed out` };
      if (leader && run.resend()) ctx.send(leader.nodeId, { transfer_leader: { region_id: region.regionId, to_peer_id: String(d.targetPeer) } });
      return { wait: true };
    },
  },
};
