// Procedures: multi-step cluster operations of the metasrv (failover, replica repair, leader
// balancing, draining, admin transfers). A procedure is a small state machine whose record
// lives in the catalog and is saved — atomically with any catalog change the step made — after
// every step, so a metasrv that crashes mid-procedure resumes from the last saved step.
//
// Rules every step follows (docs/failover.md):
//   - idempotent: a step may run again after a crash; it re-derives what to do from the catalog
//     and from what datanodes report (heartbeats), never from memory;
//   - it never decides raft outcomes: it asks a region's leader to change membership or
//     transfer leadership, then waits until the datanodes report the result;
//   - it re-sends its instruction if the result is not observed in time (instructions travel in
//     heartbeat replies and can be lost with a datanode or a metasrv restart).
import type { CatalogState, NodeDef, RegionDef } from '../catalog.js';

export const PROCEDURE_KINDS = ['region-failover', 'repair-replica', 'balance-leaders', 'drain-node', 'transfer-leader'] as const;
export type ProcedureKind = (typeof PROCEDURE_KINDS)[number];

export interface ProcedureRecord {
  readonly id: string;
  readonly kind: ProcedureKind;
  /** Current step name (kind-specific). */
  step: string;
  /** Kind-specific state, JSON-serializable. */
  data: Record<string, unknown>;
  status: 'running' | 'done' | 'failed';
  readonly createdMs: number;
  updatedMs: number;
  /** When the current step started (wall clock ms); used for re-sends and timeouts. */
  stepSinceMs: number;
  /** Last notes, newest last (bounded). */
  notes: string[];
  error?: string;
}

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
}

export type Instruction =
  | { open_region: unknown }
  | { close_region: { region_id: string; destroy: boolean } }
  | { campaign: { region_id: string } }
  | { transfer_leader: { region_id: string; to_peer_id: string } }
  | { change_peer: { region_id: string; change: 'add-learner' | 'promote' | 'remove'; peer: { peer_id: string; node_id: string; addr: string } } };

/** What steps may read and do. Implemented by the metasrv. */
export interface ProcedureContext {
  readonly catalog: CatalogState;
  nowMs(): number;
  isAlive(nodeId: number): boolean;
  /** The replica a live datanode last reported, if any. */
  observed(nodeId: number, regionId: string): ObservedReplica | undefined;
  /** The node currently reporting itself leader of the region (highest term), if any. */
  leaderOf(region: RegionDef): { nodeId: number; replica: ObservedReplica } | undefined;
  /** Queues an instruction for a datanode's next heartbeat reply. */
  send(nodeId: number, instruction: Instruction): void;
  openInstruction(region: RegionDef, peerId: number, bootstrap: boolean): unknown;
  /** Places a new replica: a healthy node not in `exclude` with the fewest replicas. */
  pickNode(exclude: ReadonlySet<number>): NodeDef | undefined;
  /** Starts another procedure (e.g. drain-node runs repairs); returns its id. */
  start(kind: ProcedureKind, data: Record<string, unknown>): ProcedureRecord;
  running(kind?: ProcedureKind): ProcedureRecord[];
}

export type StepResult =
  | { readonly next: string; readonly note?: string }
  | { readonly wait: true; readonly note?: string }
  | { readonly done: true; readonly note?: string }
  | { readonly failed: string };

export type StepFn = (ctx: ProcedureContext, record: ProcedureRecord) => StepResult;

export interface ProcedureDefinition {
  readonly kind: ProcedureKind;
  readonly firstStep: string;
  readonly steps: Readonly<Record<string, StepFn>>;
  /** A short description for `regiondb status`. */
  describe(record: ProcedureRecord): string;
}

/** How long a step waits for its effect before re-sending its instruction. */
export const RESEND_AFTER_MS = 3000;

/** Resend helper: true once per RESEND_AFTER_MS while a step waits. */
export function shouldResend(ctx: ProcedureContext, record: ProcedureRecord): boolean {
  const last = (record.data['lastSentMs'] as number | undefined) ?? 0;
  if (ctx.nowMs() - last < RESEND_AFTER_MS) return false;
  record.data['lastSentMs'] = ctx.nowMs();
  return true;
}

export function peerAddr(ctx: ProcedureContext, nodeId: number): string {
  return ctx.catalog.nodes[nodeId]?.addr ?? '';
}
