// The other half of the replication contract: what a host applies committed entries to. The
// raft core never calls it (it only orders entries); the host (src/replication/region-server.ts)
// does, and src/engine/region-state.ts implements it. Type-only, so the core stays pure.

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

/** The result type of a state machine's `apply` (what a proposal resolves to). */
export type ResultOf<S> = S extends StateMachine<infer R> ? R : never;
