// Raft transport over gRPC (ARCHITECTURE §6): one long-lived bidi stream per peer datanode
// carrying batches of messages for every region the two nodes share. Sends never block the
// ready loop: messages go into a bounded per-peer queue; a full queue drops the oldest
// messages (raft retransmits: appends are re-sent on the next heartbeat/probe). A broken
// stream is reconnected with capped exponential backoff.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { loadProtos } from '../rpc/proto.js';
import { encodeRaftMessage } from '../rpc/raft-codec.js';
import type { RaftEnvelope, RaftTransport } from './types.js';

export const transportLimits = {
  queueEnvelopesMax: 20_000,
  batchEnvelopesMax: 4096,
  reconnectBackoffMinMs: 50,
  reconnectBackoffMaxMs: 2000,
  /**
   * The receiving side acknowledges the first batch of a stream at once, then at most one ack
   * per interval (counting every envelope accepted since the previous one). Acks only tell the
   * sender its peer is alive; an ack per batch would double the messages on every stream.
   */
  ackIntervalMs: 100,
} as const;

export type AddressBook = (nodeId: number) => string | undefined;

interface Peer {
  nodeId: number;
  queue: RaftEnvelope[];
  stream: grpc.ClientDuplexStream<unknown, unknown> | null;
  client: grpc.Client | null;
  addr: string | null;
  backoffMs: number;
  reconnectAt: number;
  flushScheduled: boolean;
  dropped: number;
}

export class GrpcRaftTransport implements RaftTransport {
  private readonly peers = new Map<number, Peer>();
  private closed = false;
  sentEnvelopes = 0;
  droppedEnvelopes = 0;

  constructor(
    private readonly clusterId: string,
    private readonly selfNodeId: number,
    private readonly addressOf: AddressBook,
    private readonly log: Logger,
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {}

  send(nodeId: number, envelopes: RaftEnvelope[]): void {
    if (this.closed) return;
    let peer = this.peers.get(nodeId);
    if (!peer) {
      peer = { nodeId, queue: [], stream: null, client: null, addr: null, backoffMs: 0, reconnectAt: 0, flushScheduled: false, dropped: 0 };
      this.peers.set(nodeId, peer);
    }
    for (const e of envelopes) peer.queue.push(e);
    const overflow = peer.queue.length - transportLimits.queueEnvelopesMax;
    if (overflow > 0) {
      peer.queue.splice(0, overflow);
      peer.dropped += overflow;
      this.droppedEnvelopes += overflow;
    }
    this.scheduleFlush(peer);
  }

  private scheduleFlush(peer: Peer): void {
    if (peer.flushScheduled) return;
    peer.flushScheduled = true;
    setImmediate(() => {
      peer.flushScheduled = false;
      this.flush(peer);
    });
  }

  private connect(peer: Peer): boolean {
    const addr = this.addressOf(peer.nodeId);
    if (!addr) return false;
    if (peer.stream && peer.addr === addr) return true;
    if (Date.now() < peer.reconnectAt) return false;
    this.disconnect(peer);
    const { services } = loadProtos();
    const client = new services.RaftTransport(addr, this.credentials, {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.max_send_message_length': 64 << 20,
    });
    const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<unknown, unknown> }).Stream();
    peer.client = client;
    peer.stream = stream;
    peer.addr = addr;
    stream.on('data', () => {
      peer.backoffMs = 0; // the peer is answering
    });
    const onBroken = (err?: Error) => {
      if (peer.stream !== stream) return;
      this.log.debug({ nodeId: peer.nodeId, addr, err: err?.message }, 'raft stream to peer broke; will reconnect');
      this.disconnect(peer);
      peer.backoffMs = Math.min(transportLimits.reconnectBackoffMaxMs, Math.max(transportLimits.reconnectBackoffMinMs, peer.backoffMs * 2));
      peer.reconnectAt = Date.now() + peer.backoffMs;
      setTimeout(() => this.scheduleFlush(peer), peer.backoffMs).unref();
    };
    stream.on('error', onBroken);
    stream.on('end', () => onBroken());
    return true;
  }

  private disconnect(peer: Peer): void {
    const stream = peer.stream;
    peer.stream = null;
    if (stream) {
      stream.removeAllListeners('data');
      stream.on('error', () => {}); // late errors of a stream we abandoned are expected
      stream.cancel();
    }
    peer.client?.close();
    peer.client = null;
  }

  private flush(peer: Peer): void {
    if (this.closed || peer.queue.length === 0) return;
    if (!this.connect(peer)) return;
    const stream = peer.stream!;
    while (peer.queue.length > 0) {
      const chunk = peer.queue.splice(0, transportLimits.batchEnvelopesMax);
      const ok = stream.write({
        cluster_id: this.clusterId,
        from_node_id: String(this.selfNodeId),
        envelopes: chunk.map((e) => ({ region_id: e.regionId, message: encodeRaftMessage(e.message) })),
      });
      this.sentEnvelopes += chunk.length;
      if (!ok) {
        stream.once('drain', () => this.scheduleFlush(peer));
        return;
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const peer of this.peers.values()) this.disconnect(peer);
  }
}
