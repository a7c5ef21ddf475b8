// region-failover: after a datanode is suspected dead, make sure every region that had a
// replica there is led by a live node. Raft normally elects within an election timeout on its
// own; the metasrv only checks it happened (and that routes follow), and if a region is still
// leaderless after a grace period it asks the most up-to-date live replica to campaign. It never
// appoints a leader by itself: raft's vote rules still decide (docs/raft-rules.md R22).
import { regionList } from '../catalog.js';
import type { ProcedureDefinition } from './procedure.js';

/** Raft's own election gets this long before the metasrv nudges a live replica to campaign. */
export const CAMPAIGN_GRACE_MS = 2000;
/** After this the procedure reports failure (the region has no quorum of live replicas). */
export const GIVE_UP_MS = 120_000;

export const regionFailover: ProcedureDefinition<'region-failover'> = {
  kind: 'region-failover',
  firstStep: 'ensure-leaders',
  describe: (d) => `regions of node ${d.nodeId}: ${d.leaderless?.length ?? '?'} without a live leader`,
  steps: {
    'ensure-leaders'(ctx, d, run) {
      const failed = d.nodeId;
      const leaderless: string[] = [];
      for (const region of regionList(ctx.catalog)) {
        if (!region.replicas.some((p) => p.nodeId === failed)) continue;
        // Any live leader will do, on the failed node too once it is back: leaderOf trusts only
        // the reports of nodes alive now, so a restarted node's fresh report counts (finding M8
        // in docs/correctness.md: waiting for a leader elsewhere failed the procedure after
        // GIVE_UP_MS while the region was served).
        const leader = ctx.leaderOf(region);
        if (leader && ctx.isAlive(leader.nodeId)) {
          region.leaderNodeId = leader.nodeId; // routes follow at once
          continue;
        }
        leaderless.push(region.regionId);
      }
      d.leaderless = leaderless;
      if (leaderless.length === 0) return { done: true, note: `every region of node ${failed} has a live leader` };
      const elapsed = ctx.clock.nowMs() - run.stepSinceMs; // its only step: the procedure's age
      if (elapsed > GIVE_UP_MS) return { failed: `regions ${leaderless.join(', ')} still have no live leader after ${GIVE_UP_MS} ms (no live quorum?)` };
      if (elapsed > CAMPAIGN_GRACE_MS && run.resend()) {
        for (const regionId of leaderless) {
          const region = ctx.catalog.regions[regionId]!;
          // The live replica with the longest applied log is the likeliest to win the vote.
          const candidates = region.replicas
            .filter((p) => p.nodeId !== failed && ctx.isAlive(p.nodeId))
            .map((p) => ({ p, seen: ctx.observed(p.nodeId, regionId) }))
            .filter((c) => c.seen !== undefined)
            .sort((a, b) => b.seen!.appliedIndex - a.seen!.appliedIndex);
          if (candidates[0]) ctx.send(candidates[0].p.nodeId, { campaign: { region_id: regionId } });
        }
        return { wait: true, note: `asked live replicas of ${leaderless.length} region(s) to campaign` };
      }
      return { wait: true };
    },
  },
};
