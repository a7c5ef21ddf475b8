// Every bound in one place, units last (docs/style.md S5). Config may lower these, never exceed them.

export const limits = {
  // Raft core defaults (ticks are driven by the host; see datanode ticker).
  raftElectionTicks: 10,
  raftHeartbeatTicks: 2,
  raftMaxInflightMsgs: 256,
  raftMaxSizePerMsgBytes: 1 << 20,
  raftMaxUncommittedEntriesBytes: 64 << 20,
  raftMaxReadIndexPending: 4096,
  raftMaxMsgsPerReady: 65_536,

  // Client-facing input.
  rowsPerWriteMax: 10_000,
  writeRequestBytesMax: 8 << 20,
  keyBytesMax: 4096,
  stringValueBytesMax: 64 << 10,
  columnsPerTableMax: 256,
  regionsPerTableMax: 1024,
  tableNameBytesMax: 128,
  scanRowsPerMessageMax: 1024,

  /** Clients remembered per region for retry deduplication (docs/raft-rules.md R19). */
  dedupClientsMax: 100_000,
  /** Request results remembered per client; bounds a client's requests in flight. */
  dedupRequestsPerClientMax: 1024,

  /** A scan message is sent once it holds this many bytes of values (well below grpcMessageBytesMax). */
  scanMessageBytesMax: 4 << 20,
  /** Rows one Scan call returns at most; more fails the scan (narrow the time range or the tag filters). */
  scanRowsPerRequestMax: 1_000_000,
  /**
   * A Scan runs at most this long on a server, and at most half of engine.sst_gc_grace_ms: the
   * grace must outlast any scan reading an SST that GC is about to delete (docs/engine.md).
   */
  scanMsMax: 300_000,

  /** Metasrv instructions a datanode holds waiting to run (they run in order, off the heartbeat). */
  datanodeInstructionsQueuedMax: 1024,

  // gRPC.
  grpcMessageBytesMax: 16 << 20,
  /**
   * Longest wait between reconnect attempts of a gRPC channel (grpc-js defaults to 120 s, growing
   * 1.6× from 1 s: a server down for 15 s was then unreachable for ~10 s more after it came back).
   * Our peers are a handful of servers on a LAN; a refused connect a second is cheap.
   */
  grpcReconnectBackoffMsMax: 1000,
  /**
   * Addresses a metasrv channel knows (src/rpc/meta-channel.ts): the configured list plus leaders
   * learned from NOT_LEADER hints. A metasrv group has 3 or 5 members; a hint naming a new address
   * when the list is full is treated as no hint (the next address is tried).
   */
  metasrvAddrsMax: 16,
  /**
   * After a full cycle through the metasrv addresses without an answer (an election, every member
   * down) a channel waits this long before the next cycle, doubling from min to max.
   */
  metaChannelBackoffMsMin: 20,
  metaChannelBackoffMsMax: 200,
  /** Concurrent calls on one HTTP/2 connection (clients and bench share one connection per node). */
  grpcConcurrentStreamsPerConnectionMax: 10_000,
  /**
   * No unary call runs longer than this on a server, whatever deadline the client sent (or did
   * not send): the caller gets DEADLINE_EXCEEDED and the handler's result is dropped. Longest
   * legitimate calls: Admin.Flush (waits ≤ 60 s) and recovery.
   */
  serverCallMsMax: 120_000,
  /**
   * Operations in flight on one Database.Batch stream; more are answered RESOURCE_EXHAUSTED
   * (clients retry). Bounds what one stream can make a server hold.
   */
  batchStreamInFlightMax: 4096,
  /**
   * A replica whose apply fails on the object store (STORAGE_UNAVAILABLE, e.g. the store is
   * briefly down) retries, backing off from min to max, for at most the window; then it fails
   * and is repaired by the metasrv (docs/replica-health.md).
   */
  applyRetryBackoffMsMin: 200,
  applyRetryBackoffMsMax: 10_000,
  applyRetryWindowMs: 120_000,
  /** A raft stream from a peer that sends nothing (not even heartbeats) for this long is closed. */
  raftStreamIdleMsMax: 60_000,
  /** A server stream whose reader takes no message for this long is cancelled (a stalled client holds a region iterator). */
  streamStallMsMax: 30_000,

  // Object stores (src/object-store).
  /**
   * Directories the fs store's listPrefixes looks into at once, each until its first object (a
   * directory left empty by a crash between a delete and its pruning is not a prefix).
   */
  fsPrefixProbesInFlightMax: 16,

  // Backup and restore (src/br). Objects are copied whole, so memory ≤ concurrency × largest SST.
  /** Objects copied at once by backup and restore. */
  brCopyConcurrencyMax: 16,
  /** Incremental backups on top of one full backup; a longer chain is refused (take a full one). */
  brChainDepthMax: 64,
  /** Times a backup re-reads a region's latest manifest when SSTs it named were compacted away meanwhile. */
  brReplanAttemptsMax: 5,
  /** The resume journal is rewritten at most this often while copying (and after the last file). */
  brJournalIntervalMs: 250,
  /**
   * Consistent backup (docs/backup.md): the longest a region holds new client writes for a
   * barrier. The hold ends by itself after it, released or not (writes are never wedged); a
   * barrier whose freeze did not make it in time is abandoned and retried.
   */
  brBarrierHoldMsMax: 10_000,
  /** ...its default: a barrier is two RPC rounds, so a hold normally lasts a few ms. */
  brBarrierHoldMsDefault: 2000,
  /** Barrier attempts of one consistent backup (a leader moved, a hold expired) before it gives up. */
  brBarrierAttemptsMax: 5,
  /** Regions held by one barrier at once on one datanode: a bound on the hold table. */
  brBarrierRegionsMax: 100_000,
  /** The longest a datanode protects a barrier manifest's SSTs from its GC (the backup copies them meanwhile). */
  brBarrierSstLeaseMsMax: 24 * 3600_000,
  /** ...its default: the time a backup has to copy them (the SST GC grace adds to it once they are compacted away). */
  brBarrierSstLeaseMsDefault: 3600_000,

  // Dual active-standby (src/standby, docs/replication.md).
  /** Entries one StandbyShip request carries at most (a standby far behind catches up in rounds of this). */
  standbyShipEntriesMax: 2000,
  /** ...and bytes of entries (well under grpcMessageBytesMax). */
  standbyShipBytesMax: 1 << 20,
  /** One StandbyShip call (it waits for the standby's raft commit). */
  standbyShipTimeoutMs: 5000,
  /** Sync mode: a committed write not confirmed by the standby within this is answered "outcome unknown". */
  standbySyncAckTimeoutMs: 5000,
  /** S7: how long a dropped region's leader waits for the standby to receive its drop marker before it is destroyed anyway. */
  standbyDropSealMs: 5000,
  /** S7: the polls of that wait (50 ms apart), a bound on the loop beside the time. */
  standbyDropSealPollsMax: 200,
  /**
   * A primary keeps at most this many log entries of a region beyond its flushed index for a
   * standby that lags (or is unreachable); past it the log is truncated as usual and the standby
   * region can only be re-seeded (docs/replication.md).
   */
  standbyLogRetainEntriesMax: 1_000_000,
  /** How often a primary replica that does not lead its region asks the standby for its position (log retention after a leader change). */
  standbyPositionProbeMs: 2000,
  /** Entries a standby region holds received but unapplied; a stream further ahead of the safe time waits. */
  standbyPendingEntriesMax: 200_000,
  /** Seeding (docs/replication.md): bytes of one StandbySeedObject piece (well under grpcMessageBytesMax). */
  standbySeedChunkBytesMax: 4 << 20,
  /** Seeding: SST uploads a standby datanode keeps open at once (one per region being seeded, normally). */
  standbySeedUploadsMax: 16,
  /** Seeding: an open upload with no piece for this long is aborted (its primary gave up or moved). */
  standbySeedUploadIdleMs: 60_000,
  /** Seeding: copied SSTs remembered for the StandbySeed that names them (older ones are copied again). */
  standbySeededObjectsMax: 10_000,
} as const;

/**
 * The bounds of a region's client dedup table (docs/raft-rules.md R19). RegionState takes them
 * as an argument (production: `limits`) so the whole-datanode simulator can run with tables
 * small enough to evict (docs/simulation.md); a configuration may only lower them.
 */
export interface DedupLimits {
  readonly dedupClientsMax: number;
  readonly dedupRequestsPerClientMax: number;
}

