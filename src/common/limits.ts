// Every bound in one place, units last (TIGER_STYLE). Config may lower these, never exceed them.

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

  /** Clients remembered per region for retry deduplication (RAFT-NOTES 19). */
  dedupClientsMax: 100_000,
  /** Request results remembered per client; bounds a client's requests in flight. */
  dedupRequestsPerClientMax: 1024,

  // gRPC.
  grpcMessageBytesMax: 16 << 20,
} as const;

