// The seams of the datanode: the raft transport between datanodes, where peers live, and what it
// remembers about each region. The other contracts of the region server live with their lower
// half: the multi-region raft log (src/wal/log-engine.ts, implemented by src/wal/wal.ts and an
// in-memory engine in tests) and the replicated state machine (src/raft/state-machine.ts,
// implemented by src/engine/region-state.ts).
import type { TableSchema } from '../engine/index.js';
import type { Message } from '../raft/index.js';

/** What a datanode remembers about each hosted region (persisted in the WAL as region meta). */
export interface RegionMeta {
  readonly regionId: string;
  readonly schema: TableSchema;
  readonly selfPeerId: number;
  readonly peers: { peerId: number; nodeId: number; addr: string }[];
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
