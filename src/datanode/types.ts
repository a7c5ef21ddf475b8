// The seams of the datanode: what the region server needs from the WAL, the state machine and
// the raft transport. The production implementations are src/wal (LevelDB), src/engine
// (RegionState) and src/datanode/grpc-transport.ts; tests plug in-memory ones.
import type { Entry, HardState, Message, RaftLogStore, Snapshot } from '../raft/index.js';

/** One durable write covering every replica with work in a ready cycle (group commit). */
export interface LogBatch {
  append(regionId: string, entries: readonly Entry[]): void;
  setHardState(regionId: string, hardState: HardState): void;
  applySnapshot(regionId: string, snapshot: Snapshot): void;
  setRegionMeta(regionId: string, meta: Uint8Array): void;
  /**
   * This batch must make every commit index it (or an earlier deferred batch) carries durable:
   * written and synced, never deferred. The host asks for it before applying a membership
   * change: a node that applied a removal and then lost the commit index covering it restarts
   * with the old configuration, and if the removed replica is gone meanwhile (the metasrv
   * destroys it once the removal applied), a group shrunk to one voter can never elect again.
   */
  requireDurableCommit(): void;
  /**
   * Durable (fsync) when it resolves; throws a fatal error otherwise (the process must stop).
   * A batch that only moves commit indexes may skip the fsync (the commit index is volatile
   * state, Raft Figure 2; see src/wal/wal.ts).
   */
  commit(): Promise<void>;
}

/** A region whose stored log failed its checks when the log engine opened. */
export interface RegionDamage {
  readonly regionId: string;
  /** The log index of the first bad record (0 when the bad record is not an entry). */
  readonly index: number;
  /** Human-readable, naming the region and the index. */
  readonly reason: string;
}

export interface LogEngine {
  /** The raft storage of a region (created empty if missing). Never called for a damaged region. */
  region(regionId: string): RaftLogStore;
  /** Damage found in a region's log at open: its replica must not start (docs/replica-health.md). */
  damage?(regionId: string): RegionDamage | undefined;
  regionIds(): string[];
  getRegionMeta(regionId: string): Uint8Array | undefined;
  dropRegion(regionId: string): Promise<void>;
  batch(): LogBatch;
  close(): Promise<void>;
}

/** Deterministic replicated state machine of one region. */
export interface StateMachine<Result> {
  /**
   * Applies a committed command (entry `index`, raft `term`). Must be deterministic. May return
   * a promise (the engine reads SSTs for conditional writes); the region server applies entries
   * strictly in order either way.
   */
  apply(index: number, command: Uint8Array, term: number): Result | Promise<Result>;
  /** Whole state, for raft snapshots (state machines without snapshotPoint). */
  serialize(): Uint8Array;
  /**
   * Optional: the state machine chooses where raft snapshots are taken (the engine: its flushed
   * index, whose data is a small manifest). The log up to `index` is then compacted.
   */
  snapshotPoint?(): { index: number; data: Uint8Array; voters: readonly number[]; learners: readonly number[] } | undefined;
  /** Optional: told the region's membership at open and after every applied change. */
  onMembership?(voters: readonly number[], learners: readonly number[]): void;
}

/** A batch of raft messages for regions hosted on one destination datanode. */
export interface RaftEnvelope {
  readonly regionId: string;
  readonly message: Message;
}

export interface RaftTransport {
  /** Queues messages for a datanode; never blocks; drops (and counts) when the queue is full. */
  send(nodeId: number, envelopes: RaftEnvelope[]): void;
  close(): Promise<void>;
}

/** Where each raft peer of a region lives. Peer ids are unique and never reused. */
export interface PeerInfo {
  readonly peerId: number;
  readonly nodeId: number;
}
