// balance-leaders: move region leaderships to where the leader placement puts them — with
// placement "table" (the record's `placement`, from the metasrv's `leader_placement`), each chunk
// of a table's regions to its one home node (`leaderHomes`); without it, until every live
// datanode leads within ±1 of every other (among nodes that can lead, i.e. hold voters). Moves
// go in batches: `plan` chooses up to BATCH_MOVES transfers at once (fewer while transfers time
// out: FIRST_BATCH_MOVES) from the reported leaders, `move` asks every source leader to transfer
// and waits until the datanodes' reports confirm each move or the step times out, then `plan`
// again. One saved step per batch, not per move: at thousands of regions per node the
// one-move-per-step procedure spent many minutes (and a whole-catalog save per step) placing
// leaders (docs/performance.md "balance-leaders in batches"). Bounded in moves.
//
// Invariants of a batch (planBatch):
//   B1 at most the batch size (1..BATCH_MOVES, halved after a batch that timed out), and no more
//      than the procedure's move bound leaves;
//   B2 never two moves of one region, and none of a region another running procedure changes;
//   B3 each move goes from the region's reported leader, a live non-draining node, to a live
//      non-draining node whose replica is a voter both by its own report and by the leader's;
//   B4 each move lowers the spread: the source leads at least two more than the target, counting
//      the moves planned before it in the batch (so the sum of squared counts falls every move).
import { assert } from '../../common/assert.js';
import { type RegionDef, type ReplicaPlacement, regionList, regionWithId } from '../catalog.js';
import type { ProcedureContext, ProcedureDefinition } from './procedure.js';
import type { BalanceLeadersData, LeaderMove } from './record.js';

/**
 * Leader transfers planned and in flight at once. A transfer is one region's TimeoutNow election;
 * hundreds at once is the storm docs/performance.md "Failover at 1,000 regions" measured (loops
 * seconds behind on a 2-core machine). 64 spreads to about 21 campaigns per datanode per batch on
 * 3 nodes, each a single uncontested round, while 1,700 moves (5,000 regions over 3 nodes) take
 * ~27 batches rather than 1,700 steps.
 */
export const BATCH_MOVES = 64;
/**
 * The first batch's size. Each batch whose moves are all confirmed doubles the next (up to
 * BATCH_MOVES); one that times out halves it (down to one move). A cluster whose datanodes are
 * slow to carry transfers out (a datanode runs instructions in turn, and right after a table is
 * created thousands of opens queue ahead of them) so gets about one transfer per step, as before
 * batches, instead of 64 every few seconds that all run, late, at once: an election storm.
 */
export const FIRST_BATCH_MOVES = 8;
/** The move bound of a small cluster (and the whole bound before batches). */
export const MIN_MOVE_BOUND = 200;
export const MOVE_TIMEOUT_MS = 5000;
/**
 * How long the plan waits for regions that have no known leader yet (a table created a moment
 * ago is still electing): counting them as led by nobody would call 0/0/0 "balanced".
 */
export const ELECTION_WAIT_MS = 10_000;

/**
 * Moves one procedure may plan before it gives up: every region moved twice (balancing needs at
 * most one move per region; the rest is for moves that time out and are planned again), at least
 * MIN_MOVE_BOUND. A procedure that cannot converge (leaders moved back by elections as fast as it
 * moves them) ends, failed, and the periodic check starts a fresh one later.
 */
export function moveBound(regionCount: number): number {
  return Math.max(MIN_MOVE_BOUND, 2 * regionCount);
}

/** Regions with a replica on a live node but no leader reported by any live node. */
function leaderless(ctx: ProcedureContext, regions: readonly RegionDef[]): string[] {
  return regions.filter((g) => g.replicas.some((p) => ctx.isAlive(p.nodeId)) && !ctx.leaderOf(g)).map((g) => g.regionId);
}

/** Leaders per live, non-draining datanode, from what the datanodes report. */
export function leaderCounts(ctx: ProcedureContext, regions: readonly RegionDef[] = regionList(ctx.catalog)): Map<number, number> {
  const counts = new Map<number, number>();
  for (const node of Object.values(ctx.catalog.nodes)) {
    if (node.state !== 'draining' && ctx.isAlive(node.nodeId)) counts.set(node.nodeId, 0);
  }
  for (const region of regions) {
    const leader = ctx.leaderOf(region);
    if (leader && counts.has(leader.nodeId)) counts.set(leader.nodeId, counts.get(leader.nodeId)! + 1);
  }
  return counts;
}

const describeCounts = (counts: ReadonlyMap<number, number>) =>
  [...counts]
    .sort((a, b) => a[0] - b[0])
    .map(([n, c]) => `node ${n}=${c}`)
    .join(', ');

/**
 * The replicas of `region` that may take its leadership from `from`, by node id: on a node in
 * `counts` (live, not draining), not lost, a voter by its own report and by the leader's (raft
 * transfers only to a voter).
 */
function voterTargets(ctx: ProcedureContext, region: RegionDef, from: number, leaderVoters: readonly number[], counts: ReadonlyMap<number, number>): ReplicaPlacement[] {
  const targets: ReplicaPlacement[] = [];
  for (const p of region.replicas) {
    if (p.nodeId === from || !counts.has(p.nodeId) || p.lost !== undefined || !leaderVoters.includes(p.peerId)) continue;
    const seen = ctx.observed(p.nodeId, region.regionId);
    if (!seen || seen.peerId !== p.peerId || seen.health === 'failed' || !seen.voters.includes(p.peerId)) continue;
    targets.push(p);
  }
  return targets.sort((a, b) => a.nodeId - b.nodeId);
}

/** A leading node's movable regions whose voters (possible targets) are on the same nodes. */
interface Movable {
  readonly nodes: readonly number[];
  readonly regions: { readonly regionId: string; readonly targets: readonly ReplicaPlacement[] }[];
  /** Regions before this one are in the batch. */
  next: number;
}

/**
 * Up to `limit` moves, greedily: from the most-leading node that still has a movable region, one
 * of its regions to the least-leading node holding a voter of it (the highest node id on a tie,
 * as the single-move plan chose), counting each planned move before choosing the next, until no
 * move lowers the spread (B1–B4 above). Empty only if no move at all would lower it. Regions are
 * grouped by the nodes of their voters, so choosing a move looks at groups, not regions.
 */
export function planBatch(ctx: ProcedureContext, regions: readonly RegionDef[], counts: ReadonlyMap<number, number>, limit: number): LeaderMove[] {
  const busy = new Set<string>();
  for (const p of ctx.running('repair-replica')) busy.add(p.data.regionId);
  for (const p of ctx.running('transfer-leader')) busy.add(p.data.regionId);
  const movable = new Map<number, Map<string, Movable>>();
  for (const region of regions) {
    if (busy.has(region.regionId)) continue;
    const leader = ctx.leaderOf(region);
    if (!leader || !counts.has(leader.nodeId)) continue;
    const targets = voterTargets(ctx, region, leader.nodeId, leader.replica.voters, counts);
    if (targets.length === 0) continue;
    const nodes = targets.map((p) => p.nodeId);
    let groups = movable.get(leader.nodeId);
    if (!groups) movable.set(leader.nodeId, (groups = new Map()));
    let group = groups.get(nodes.join(','));
    if (!group) groups.set(nodes.join(','), (group = { nodes, regions: [], next: 0 }));
    group.regions.push({ regionId: region.regionId, targets });
  }
  const load = new Map(counts);
  const exhausted = new Set<number>();
  const batch: LeaderMove[] = [];
  while (batch.length < limit) {
    let from: number | undefined;
    for (const [n, c] of load) if (!exhausted.has(n) && (from === undefined || c > load.get(from)! || (c === load.get(from)! && n < from))) from = n;
    if (from === undefined) break;
    const fromLoad = load.get(from)!;
    // Every node with movable regions left leads no more than `from`: no move can lower the spread.
    if (fromLoad - Math.min(...load.values()) <= 1) break;
    let best: { group: Movable; nodeId: number; targetLoad: number } | undefined;
    for (const group of movable.get(from)?.values() ?? []) {
      if (group.next >= group.regions.length) continue;
      for (const nodeId of group.nodes) {
        const targetLoad = load.get(nodeId)!;
        if (fromLoad - targetLoad > 1 && (!best || targetLoad < best.targetLoad || (targetLoad === best.targetLoad && nodeId > best.nodeId))) best = { group, nodeId, targetLoad };
      }
    }
    if (!best) {
      exhausted.add(from);
      continue;
    }
    const { regionId, targets } = best.group.regions[best.group.next++]!; // B2: each region once
    const targetNodeId = best.nodeId;
    const target = targets.find((p) => p.nodeId === targetNodeId)!;
    load.set(from, fromLoad - 1);
    load.set(target.nodeId, best.targetLoad + 1);
    batch.push({ regionId, target: target.nodeId, targetPeer: target.peerId });
  }
  assert(batch.length <= limit, () => `balance batch of ${batch.length} moves over its limit ${limit}`);
  assert(new Set(batch.map((m) => m.regionId)).size === batch.length, 'balance batch moves a region twice');
  return batch;
}

/**
 * Leader placement "table" (docs/leader-placement.md): the node that should lead each region. A
 * table's regions, sorted by region number, go in chunks of `packRegions`; each chunk gets one
 * home among the live, non-draining nodes (`counts`) holding an unlost replica of every region of
 * it, so that a follower hears from one leader for the whole chunk and its ready cycles carry all
 * of the chunk's appends at once (docs/performance.md, "Round 9"). Chunks are placed largest
 * first; each stays on the node leading most of it now (no move) unless that node's share would
 * pass the even share (⌈regions / nodes⌉, or the chunk's size if larger), else goes to the least
 * loaded candidate. A placed chunk's current leader is its home, so a second plan over the
 * result places the same homes. Pure; a chunk with no candidate has no home (its regions stay).
 */
export function leaderHomes(ctx: ProcedureContext, regions: readonly RegionDef[], counts: ReadonlyMap<number, number>, packRegions: number): Map<string, number> {
  const byTable = new Map<string, RegionDef[]>();
  for (const region of regions) {
    let list = byTable.get(region.tableName);
    if (!list) byTable.set(region.tableName, (list = []));
    list.push(region);
  }
  const chunks: { regions: RegionDef[]; candidates: number[] }[] = [];
  for (const [, list] of [...byTable].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    list.sort((a, b) => a.regionNumber - b.regionNumber);
    for (let i = 0; i < list.length; i += packRegions) {
      const chunk = list.slice(i, i + packRegions);
      const candidates = [...counts.keys()].filter((n) => chunk.every((r) => r.replicas.some((p) => p.nodeId === n && p.lost === undefined))).sort((a, b) => a - b);
      if (candidates.length > 0) chunks.push({ regions: chunk, candidates });
    }
  }
  const total = chunks.reduce((sum, c) => sum + c.regions.length, 0);
  const even = Math.ceil(total / Math.max(1, counts.size));
  const assigned = new Map<number, number>([...counts.keys()].map((n) => [n, 0]));
  const homes = new Map<string, number>();
  // Largest first (stable: equal sizes keep table and region order).
  for (const chunk of chunks.map((c, i) => ({ ...c, i })).sort((a, b) => b.regions.length - a.regions.length || a.i - b.i)) {
    const led = new Map<number, number>();
    for (const region of chunk.regions) {
      const leader = ctx.leaderOf(region)?.nodeId;
      if (leader !== undefined) led.set(leader, (led.get(leader) ?? 0) + 1);
    }
    const share = Math.max(even, chunk.regions.length);
    const fits = chunk.candidates.filter((n) => assigned.get(n)! + chunk.regions.length <= share);
    const pool = fits.length > 0 ? fits : chunk.candidates;
    const home = pool.reduce((best, n) => {
      const byLed = (led.get(n) ?? 0) - (led.get(best) ?? 0);
      const byLoad = assigned.get(best)! - assigned.get(n)!;
      // Within the share: most led now first, then least loaded; past it: least loaded first.
      const better = fits.length > 0 ? byLed > 0 || (byLed === 0 && byLoad > 0) : byLoad > 0 || (byLoad === 0 && byLed > 0);
      return better ? n : best;
    });
    assigned.set(home, assigned.get(home)! + chunk.regions.length);
    for (const region of chunk.regions) homes.set(region.regionId, home);
  }
  return homes;
}

/**
 * Up to `limit` moves of regions whose reported leader is not their home (`leaderHomes`) to the
 * home's replica, when it is a voter by its own report and the leader's (B2, B3 as planBatch).
 */
export function planHomeBatch(ctx: ProcedureContext, regions: readonly RegionDef[], homes: ReadonlyMap<string, number>, counts: ReadonlyMap<number, number>, limit: number): LeaderMove[] {
  const busy = new Set<string>();
  for (const p of ctx.running('repair-replica')) busy.add(p.data.regionId);
  for (const p of ctx.running('transfer-leader')) busy.add(p.data.regionId);
  const batch: LeaderMove[] = [];
  for (const region of regions) {
    if (batch.length >= limit) break;
    const home = homes.get(region.regionId);
    const leader = ctx.leaderOf(region);
    if (home === undefined || busy.has(region.regionId) || !leader || leader.nodeId === home || !counts.has(leader.nodeId)) continue;
    const target = voterTargets(ctx, region, leader.nodeId, leader.replica.voters, counts).find((p) => p.nodeId === home);
    if (target) batch.push({ regionId: region.regionId, target: home, targetPeer: target.peerId });
  }
  return batch;
}

/**
 * Regions a balance-leaders with placement "table" would move now (`planHomeBatch`, unbounded):
 * the periodic check starts one only then, so that a region it cannot move (its home holds no
 * voter of it yet, another procedure changes it) does not start a procedure that ends with no move
 * at every check.
 */
export function regionsOffHome(ctx: ProcedureContext, packRegions: number, regions: readonly RegionDef[] = regionList(ctx.catalog)): number {
  const counts = leaderCounts(ctx, regions);
  if (counts.size < 2) return 0;
  return planHomeBatch(ctx, regions, leaderHomes(ctx, regions, counts, packRegions), counts, Number.POSITIVE_INFINITY).length;
}

/** Placement "spread" is met: every counted node leads within ±1 of every other. */
function spreadEvenly(counts: ReadonlyMap<number, number>): boolean {
  const values = [...counts.values()];
  return values.length < 2 || Math.max(...values) - Math.min(...values) <= 1;
}

/**
 * The metasrv's periodic check: whether a balance-leaders started with `d` (its placement) would
 * have leaders to move — a region off its table's home ("table", `regionsOffHome`), or leader
 * counts more than one apart ("spread", the plan's own test).
 */
export function leadersOffPlacement(ctx: ProcedureContext, d: BalanceLeadersData): boolean {
  if (d.placement === 'table') return regionsOffHome(ctx, d.packRegions ?? 1) > 0;
  return !spreadEvenly(leaderCounts(ctx));
}

/** The size of the next batch (FIRST_BATCH_MOVES): between one move and BATCH_MOVES. */
function batchLimit(d: BalanceLeadersData): number {
  const window = d.window ?? FIRST_BATCH_MOVES;
  return Math.min(BATCH_MOVES, Math.max(1, Math.floor(window)));
}

/** The moves in flight: the batch, or the single move of a record written before batches. */
function inFlight(d: BalanceLeadersData): LeaderMove[] {
  if (d.batch) return d.batch;
  if (d.regionId === undefined || d.target === undefined || d.targetPeer === undefined) return [];
  return [{ regionId: d.regionId, target: d.target, targetPeer: d.targetPeer }];
}

function describeBatch(ctx: ProcedureContext, batch: readonly LeaderMove[]): string {
  if (batch.length === 1) {
    const [m] = batch as [LeaderMove];
    const region = regionWithId(ctx.catalog, m.regionId);
    return `region ${m.regionId}: node ${(region && ctx.leaderOf(region)?.nodeId) ?? '?'} → node ${m.target}`;
  }
  const to = new Map<number, number>();
  for (const m of batch) to.set(m.target, (to.get(m.target) ?? 0) + 1);
  return `${batch.length} moves: ${[...to].map(([n, c]) => `${c} to node ${n}`).join(', ')}`;
}

export const balanceLeaders: ProcedureDefinition<'balance-leaders'> = {
  kind: 'balance-leaders',
  firstStep: 'plan',
  describe: (d) => {
    const flying = inFlight(d).length;
    return `${d.moves ?? 0} leader move(s) planned, ${d.confirmed ?? 0} confirmed${flying > 0 ? `, ${flying} in flight` : ''}`;
  },
  steps: {
    plan(ctx, d, run) {
      const moves = d.moves ?? 0;
      const regions = regionList(ctx.catalog);
      const counts = leaderCounts(ctx, regions);
      if (counts.size < 2) return { done: true, note: 'fewer than two live datanodes' };
      const electing = leaderless(ctx, regions);
      const waited = ctx.clock.nowMs() - run.stepSinceMs;
      if (electing.length > 0 && waited <= ELECTION_WAIT_MS) return { wait: true };
      const unknown = electing.length > 0 ? ` (${electing.length} region(s) without a known leader after ${waited} ms: ${electing.slice(0, 5).join(', ')})` : '';
      const bound = moveBound(regions.length);
      let batch: LeaderMove[];
      if (d.placement === 'table') {
        const homes = leaderHomes(ctx, regions, counts, d.packRegions ?? 1);
        batch = planHomeBatch(ctx, regions, homes, counts, moves >= bound ? 1 : Math.min(batchLimit(d), bound - moves));
        if (batch.length === 0) return { done: true, note: `placed by table (${d.packRegions ?? 1} regions a node): ${describeCounts(counts)}${unknown}` };
        if (moves >= bound) return { failed: `leaders still off their table's node after ${moves} moves (the bound for ${regions.length} regions): ${describeCounts(counts)}` };
      } else {
        if (d.placement !== undefined) return { failed: `unknown leader placement ${JSON.stringify(d.placement)} (this version knows "table")` };
        if (spreadEvenly(counts)) return { done: true, note: `balanced: ${describeCounts(counts)}${unknown}` };
        if (moves >= bound) return { failed: `still unbalanced after ${moves} moves (the bound for ${regions.length} regions): ${describeCounts(counts)}` };
        batch = planBatch(ctx, regions, counts, Math.min(batchLimit(d), bound - moves));
        if (batch.length === 0) return { done: true, note: `no leadership can move to a less-leading voter: ${describeCounts(counts)}` };
      }
      d.batch = batch;
      delete d.regionId;
      delete d.target;
      delete d.targetPeer;
      d.moves = moves + batch.length;
      return { next: 'move', note: describeBatch(ctx, batch) };
    },
    move(ctx, d, run) {
      const batch = inFlight(d);
      const confirmed: { region: RegionDef; nodeId: number }[] = [];
      const pending: { move: LeaderMove; leaderNodeId: number | undefined }[] = [];
      for (const move of batch) {
        const region = regionWithId(ctx.catalog, move.regionId);
        if (!region) continue; // dropped meanwhile: nothing to move
        const leader = ctx.leaderOf(region);
        if (leader?.nodeId === move.target) confirmed.push({ region, nodeId: leader.nodeId });
        else pending.push({ move, leaderNodeId: leader?.nodeId });
      }
      const timedOut = pending.length > 0 && ctx.clock.nowMs() - run.stepSinceMs > MOVE_TIMEOUT_MS;
      if (pending.length === 0 || timedOut) {
        for (const { region, nodeId } of confirmed) region.leaderNodeId = nodeId;
        d.confirmed = (d.confirmed ?? 0) + confirmed.length;
        d.window = timedOut ? Math.max(1, Math.floor(batchLimit(d) / 2)) : Math.min(BATCH_MOVES, 2 * batchLimit(d));
        delete d.batch;
        delete d.regionId;
        delete d.target;
        delete d.targetPeer;
        if (!timedOut) return { next: 'plan', note: `${confirmed.length} of ${batch.length} move(s) confirmed` };
        const named = pending.slice(0, 5).map((p) => p.move.regionId);
        return {
          next: 'plan',
          note: `${confirmed.length} of ${batch.length} move(s) confirmed; ${pending.length} timed out (region ${named.join(', ')}${pending.length > named.length ? ', …' : ''})`,
        };
      }
      // One re-send time for the batch: every unconfirmed transfer goes out together.
      const senders = pending.filter((p) => p.leaderNodeId !== undefined);
      if (senders.length > 0 && run.resend()) {
        for (const { move, leaderNodeId } of senders) {
          ctx.send(leaderNodeId!, { transfer_leader: { region_id: move.regionId, to_peer_id: String(move.targetPeer) } });
        }
      }
      return { wait: true };
    },
  },
};
