// The seams of a raft host towards the network: messages grouped per destination node, the
// transport that carries them, and where each peer of a group lives. The other contracts of the
// region server live with their lower half: the multi-group raft log (src/wal/log-engine.ts) and
// the replicated state machine (src/raft/state-machine.ts).
import type { Message } from '../raft/index.js';

/** A batch of raft messages for groups hosted on one destination node. */
export interface RaftEnvelope {
  readonly regionId: string;
  readonly message: Message;
}

export interface RaftTransport {
  /** Queues messages for a node; never blocks; drops (and counts) when the queue is full. */
  send(nodeId: number, envelopes: RaftEnvelope[]): void;
  close(): Promise<void>;
  /**
   * Who to tell when a connection to a node is refused: nothing listens at its address, so its
   * process is gone (killed, crashed, restarting). Optional: a transport that cannot tell leaves
   * the region server's silence count as the only failure detector (docs/quiescence.md, "A
   * refused connection").
   */
  onRefused?(listener: (nodeId: number) => void): void;
}

/** Where each raft peer of a group lives. Peer ids are unique and never reused. */
export interface PeerInfo {
  readonly peerId: number;
  readonly nodeId: number;
}
