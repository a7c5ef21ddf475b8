// Procedures: multi-step cluster operations of the metasrv (failover, replica repair, leader
// balancing, draining, admin transfers), described in docs/procedures.md. A procedure is a
// small state machine whose record (record.ts) lives in the catalog and is saved, atomically
// with any catalog change the step made, after every step, so a metasrv that crashes
// mid-procedure resumes from the last saved step.
//
// Rules every step follows (docs/procedures.md, docs/failover.md):
//   - idempotent: a step may run again after a crash; it re-derives what to do from the catalog
//     and from what datanodes report (heartbeats), never from memory;
//   - it never decides raft outcomes: it asks a region's leader to change membership or
//     transfer leadership, then waits until the datanodes report the result;
//   - it re-sends its instruction if the result is not observed in time (instructions travel in
//     heartbeat replies and can be lost with a datanode or a metasrv restart).
import type { Clock } from '../../common/clock.js';
import type { OpenRegionRequest } from '../../rpc/generated/index.js';
import type { CatalogState, NodeDef, RegionDef } from '../catalog.js';
import type { DataOf, ProcedureKind, ProcedureRecord, ProcedureRecordOf, StepOf } from './record.js';

/** What a datanode last reported about one of its replicas. */
export interface ObservedReplica {
  readonly regionId: string;
  readonly peerId: number;
  readonly role: string;
  readonly term: number;
  readonly leaderNodeId: number;
  readonly appliedIndex: number;
  readonly commitIndex: number;
  /** Index whose data is in SSTs (the engine's flushed index). */
  readonly flushedIndex: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  /** ok | failed (a failed replica is stopped on its node; it must be replaced). */
  readonly health: string;
  readonly failure: string;
  /** Log index of the membership configuration the replica applied (the group's membership version). */
  readonly confIndex: number;
  /** A leader's members with their nodes (ReplicaStat.members); absent from a follower. */
  readonly members?: readonly MemberNode[];
}

/** A member of a raft group and the node it lives on, as the group's leader knows it. */
export interface MemberNode {
  readonly peerId: number;
  readonly nodeId: number;
}

export type Instruction =
  | { open_region: OpenRegionRequest }
  | { close_region: { region_id: string; destroy: boolean; peer_id: string } }
  | { campaign: { region_id: string } }
  | { transfer_leader: { region_id: string; to_peer_id: string } }
  | { change_peer: { region_id: string; change: 'add-learner' | 'promote' | 'remove'; peer: { peer_id: string; node_id: string; addr: string } } };

/** What steps may read and do. Implemented by the metasrv; by a fake in the unit tests. */
export interface ProcedureContext {
  readonly catalog: CatalogState;
  /** Wall-clock ms: record times are saved and compared across metasrv restarts. */
  readonly clock: Clock;
  isAlive(nodeId: number): boolean;
  /**
   * Whether the node has been judged down for `replica_repair_after_ms` or longer — the tick's
   * rule for re-creating its replicas elsewhere (metasrv-core.ts `startRepairs`); false while alive.
   */
  downTooLong(nodeId: number): boolean;
  /** The replica a live datanode last reported, if any. */
  observed(nodeId: number, regionId: string): ObservedReplica | undefined;
  /**
   * Whether this metasrv still waits for the node's first report since it began acting (or since
   * the node registered) and has not judged it down.
   */
  firstReportAwaited(nodeId: number): boolean;
  /**
   * reconcile.ts `AwaitingReport` as R16's removal hold reads it (metasrv-core `removalAwaits`):
   * `firstReportAwaited`, or judged down for less than `replica_repair_after_ms` (finding M39).
   */
  removalAwaits(nodeId: number): boolean;
  /**
   * The live node reporting itself leader of the region (highest term) under a peer id the
   * catalog places there, if any. A leader the catalog does not place (the catalog behind its
   * group) is not one: `groupLeaderOf` is what also sees it.
   */
  leaderOf(region: RegionDef): { nodeId: number; replica: ObservedReplica } | undefined;
  /** Queues an instruction for a datanode's next heartbeat reply. */
  send(nodeId: number, instruction: Instruction): void;
  openInstruction(region: RegionDef, peerId: number, bootstrap: boolean): OpenRegionRequest;
  /** Places a new replica: a healthy node not in `exclude` with the fewest replicas. */
  pickNode(exclude: ReadonlySet<number>): NodeDef | undefined;
  /** Starts another procedure (e.g. drain-node runs repairs). */
  start<K extends ProcedureKind>(kind: K, data: DataOf<K>): ProcedureRecordOf<K>;
  running<K extends ProcedureKind>(kind: K): ProcedureRecordOf<K>[];
  running(): ProcedureRecord[];
}

/**
 * What a step returns:
 *   next   → its work is done; the runner moves to `next` (a step of the same kind);
 *   wait   → it asked for an effect (an instruction) and waits to observe it; run again next pass;
 *   retry  → a retryable failure: something it needs is not there yet (no leader, a node down,
 *            no free node); the reason is noted and the step runs again next pass;
 *   done   → the procedure finished;
 *   failed → a fatal failure: the procedure stops with this error and never runs again.
 * A step that throws is failed too (a bug, not a condition a retry can fix).
 */
export type StepResult<S extends string> =
  | { readonly next: S; readonly note?: string }
  | { readonly wait: true; readonly note?: string }
  | { readonly retry: string }
  | { readonly done: true; readonly note?: string }
  | { readonly failed: string };

/** The runner's view of the current step, given to it (the runner owns and saves these). */
export interface StepRun {
  /**
   * When the current step started (wall clock ms; the runner moves it to now if a backward step
   * of the clock left it in the future: finding M33). Steps time their waits and time-outs by it.
   */
  readonly stepSinceMs: number;
  /** True at most once per RESEND_AFTER_MS while a step waits; the runner keeps the time outside the kind's data. */
  resend(): boolean;
}

export type StepFn<K extends ProcedureKind> = (ctx: ProcedureContext, data: DataOf<K>, run: StepRun) => StepResult<StepOf<K>>;

export interface ProcedureDefinition<K extends ProcedureKind> {
  readonly kind: K;
  readonly firstStep: StepOf<K>;
  /** One function per step name of the kind: a missing or extra step is a compile error. */
  readonly steps: { readonly [S in StepOf<K>]: StepFn<K> };
  /** A short description for `regiondb status`. */
  describe(data: DataOf<K>): string;
}

/** How long a step waits for its effect before re-sending its instruction. */
export const RESEND_AFTER_MS = 3000;

/**
 * Whether the region's group has already removed `peerId` while the catalog still places it: the
 * leader reports, at a configuration newer than the one the catalog last matched, a membership
 * without it. Reconciliation's R2 brings such a catalog up to date, but only while no procedure
 * is changing the region, so a replacement for that peer must not start (or must end) instead of
 * holding R2 off (docs/procedures.md, "A peer the group has already removed").
 */
export function removedByGroup(ctx: ProcedureContext, region: RegionDef, peerId: number): boolean {
  const leader = groupLeaderOf(ctx, region);
  if (!leader) return false;
  return leader.replica.confIndex > (region.confIndex ?? 0) && !namesPeer(leader.replica, peerId);
}

/**
 * The region's leader as its group reports it: the leader the catalog places (`leaderOf`), else
 * the highest-term live report of a leader that is not failed under any peer id — the leader
 * reconciliation's R2 takes for the group (reconcile.ts `groupOf`). With a catalog behind its
 * group (restored from an older copy) the group's leader may be a peer the catalog does not
 * place: a repair's new peer whose record the copy lost. Judged by placed leaders only, a repair
 * of that region waited "for a leader" for good while it held the region, so R2, which waits for
 * no procedure to hold it, never adopted the group's membership, the one thing that would have
 * placed that leader (finding M31: wide mix engine seed 2920; docs/procedures.md, "A leader the
 * catalog does not place"). Placed leaders first: where the catalog places one, nothing changes.
 */
export function groupLeaderOf(ctx: ProcedureContext, region: RegionDef): { nodeId: number; replica: ObservedReplica } | undefined {
  const placed = ctx.leaderOf(region);
  if (placed) return placed;
  let best: { nodeId: number; replica: ObservedReplica } | undefined;
  for (const node of Object.values(ctx.catalog.nodes)) {
    const seen = ctx.observed(node.nodeId, region.regionId);
    if (seen?.role !== 'leader' || seen.health === 'failed') continue;
    if (!best || seen.term > best.replica.term) best = { nodeId: node.nodeId, replica: seen };
  }
  return best;
}

/** Whether a membership (as a replica reports it: voters and learners) names `peerId`. */
export function namesPeer(membership: { readonly voters: readonly number[]; readonly learners: readonly number[] }, peerId: number): boolean {
  return membership.voters.includes(peerId) || membership.learners.includes(peerId);
}

export function peerAddr(ctx: ProcedureContext, nodeId: number): string {
  return ctx.catalog.nodes[nodeId]?.addr ?? '';
}
