// What a host of many raft replicas needs from its durable log: one raft storage per region and
// one durable write per ready cycle covering every region with work (group commit). Implemented
// by src/wal/wal.ts (LevelDB); tests plug an in-memory engine (test/fixtures/memory-log-engine.ts).
import type { Entry, HardState, RaftLogStore, Snapshot } from '../raft/index.js';

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
