// Raft transport over gRPC (docs/architecture.md §6): one long-lived bidi stream per peer datanode
// carrying batches of messages for every region the two nodes share. Sends never block the
// ready loop: messages go into a bounded per-peer queue; a full queue drops the oldest
// messages (raft retransmits: appends are re-sent on the next heartbeat/probe). A broken
// stream is reconnected with capped exponential backoff; a reconnect the peer's address refuses
// is reported (onRefused): the region server takes that node as down at once.
import * as grpc from '@grpc/grpc-js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import { loadProtos } from '../rpc/proto.js';
import { reconnectOptions } from '../rpc/server.js';
import { type RaftBatch, type RaftBatchAck, decodeRaftBatch, decodeRaftBatchAck, encodeRaftBatch, encodeRaftBatchAck } from '../rpc/raft-wire.js';
import type { RaftEnvelope, RaftTransport } from './transport.js';

export const transportLimits = {
  queueEnvelopesMax: 20_000,
  batchEnvelopesMax: 4096,
  /**
   * A batch is cut once its entries and snapshots hold this many bytes, well below what a
   * datanode accepts in one message (limits.grpcMessageBytesMax): one raft message carries at
   * most raftMaxSizePerMsgBytes of entries, so a cut batch always fits.
   */
  batchPayloadBytesMax: 8 << 20,
  reconnectBackoffMinMs: 50,
  reconnectBackoffMaxMs: 2000,
  /**
   * The receiving side acknowledges the first batch of a stream at once, then at most one ack
   * per interval (counting every envelope accepted since the previous one). Acks only tell the
   * sender its peer is answering (its reconnect backoff starts over); an ack per batch would
   * double the messages on every stream. Liveness is the beats' (region-server.ts), never the
   * acks': at 100 ms an idle stream carried an ack for every beat, as many messages again.
   */
  ackIntervalMs: 1000,
} as const;

let raftTransportDefinition: grpc.ServiceDefinition | undefined;

/**
 * RaftTransport as raft.proto declares it (path, streaming), serialized by the hand-written
 * codec of src/rpc/raft-wire.ts instead of proto-loader's reflection: the same bytes on the
 * wire, without the plain-object conversions. Both ends use it: this client, and the datanode's
 * server (registered through startGrpcServer, so the security guard and tolerantService wrap it
 * as they wrap every service).
 */
export function raftTransportService(): grpc.ServiceDefinition {
  if (!raftTransportDefinition) {
    const stream = loadProtos().services.RaftTransport.service['Stream']!;
    const definition: grpc.MethodDefinition<RaftBatch, RaftBatchAck> = {
      ...stream,
      requestSerialize: encodeRaftBatch,
      requestDeserialize: decodeRaftBatch,
      responseSerialize: encodeRaftBatchAck,
      responseDeserialize: decodeRaftBatchAck,
    };
    raftTransportDefinition = { Stream: definition };
  }
  return raftTransportDefinition;
}

let RaftTransportClient: grpc.ServiceClientConstructor | undefined;

/** How many envelopes from the head of `queue` make the next batch (by count and payload bytes). */
export function batchLength(queue: readonly RaftEnvelope[]): number {
  const max = Math.min(queue.length, transportLimits.batchEnvelopesMax);
  let bytes = 0;
  for (let i = 0; i < max; i++) {
    const m = queue[i]!.message;
    let payload = m.snapshot?.data.byteLength ?? 0;
    for (const e of m.entries) payload += e.data.byteLength;
    bytes += payload;
    if (bytes > transportLimits.batchPayloadBytesMax && i > 0) return i;
  }
  return max;
}

export type AddressBook = (nodeId: number) => string | undefined;

interface Peer {
  nodeId: number;
  queue: RaftEnvelope[];
  stream: grpc.ClientDuplexStream<unknown, unknown> | null;
  client: grpc.Client | null;
  addr: string | null;
  backoffMs: number;
  /** Monotonic ms (performance.now) before which no reconnect is tried. */
  reconnectAt: number;
  flushScheduled: boolean;
  /** The stream's buffer is full: nothing more is written until it drains. */
  awaitingDrain: boolean;
  dropped: number;
}

/**
 * Whether a stream's error says the connection was refused (nothing listens at the address:
 * grpc-js reports UNAVAILABLE "No connection established. Last error: ... connect ECONNREFUSED"),
 * as opposed to an established connection that dropped, which a network can do to a live peer.
 */
export function isConnectionRefused(err: Error | undefined): boolean {
  if (!err) return false;
  const e = err as Error & { code?: number; details?: string };
  return e.code === grpc.status.UNAVAILABLE && /\bECONNREFUSED\b/.test(`${e.details ?? ''} ${e.message}`);
}

export class GrpcRaftTransport implements RaftTransport {
  private readonly peers = new Map<number, Peer>();
  private closed = false;
  private refusedListener: ((nodeId: number) => void) | undefined;
  /** Connections refused (isConnectionRefused), for tests and logs. */
  refusedConnections = 0;
  sentEnvelopes = 0;
  droppedEnvelopes = 0;

  constructor(
    private readonly clusterId: string,
    private readonly selfNodeId: number,
    private readonly addressOf: AddressBook,
    private readonly log: Logger,
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {}

  onRefused(listener: (nodeId: number) => void): void {
    this.refusedListener = listener;
  }

  send(nodeId: number, envelopes: RaftEnvelope[]): void {
    if (this.closed) return;
    let peer = this.peers.get(nodeId);
    if (!peer) {
      peer = { nodeId, queue: [], stream: null, client: null, addr: null, backoffMs: 0, reconnectAt: 0, flushScheduled: false, awaitingDrain: false, dropped: 0 };
      this.peers.set(nodeId, peer);
    }
    for (const e of envelopes) peer.queue.push(e);
    const overflow = peer.queue.length - transportLimits.queueEnvelopesMax;
    if (overflow > 0) {
      peer.queue.splice(0, overflow);
      peer.dropped += overflow;
      this.droppedEnvelopes += overflow;
    }
    // At once, not on the next turn of the event loop: the region server sends once per ready
    // cycle with every message for this peer already grouped, so there is nothing to wait for,
    // and each hop of a write (leader → follower → leader) would otherwise pay a loop turn.
    this.flush(peer);
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
    if (performance.now() < peer.reconnectAt) return false;
    this.disconnect(peer);
    RaftTransportClient ??= grpc.makeGenericClientConstructor(raftTransportService(), 'RaftTransport');
    const client = new RaftTransportClient(addr, this.credentials, {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.max_send_message_length': limits.grpcMessageBytesMax,
      ...reconnectOptions,
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
      if (isConnectionRefused(err)) {
        this.refusedConnections++;
        this.refusedListener?.(peer.nodeId);
      }
      peer.backoffMs = Math.min(transportLimits.reconnectBackoffMaxMs, Math.max(transportLimits.reconnectBackoffMinMs, peer.backoffMs * 2));
      peer.reconnectAt = performance.now() + peer.backoffMs; // monotonic: a wall-clock step back must not hold the link down
      setTimeout(() => this.scheduleFlush(peer), peer.backoffMs).unref();
    };
    stream.on('error', onBroken);
    stream.on('end', () => onBroken());
    return true;
  }

  private disconnect(peer: Peer): void {
    const stream = peer.stream;
    peer.stream = null;
    peer.awaitingDrain = false; // a new stream starts with an empty buffer
    if (stream) {
      stream.removeAllListeners('data');
      stream.on('error', () => {}); // late errors of a stream we abandoned are expected
      stream.cancel();
    }
    peer.client?.close();
    peer.client = null;
  }

  private flush(peer: Peer): void {
    if (this.closed || peer.queue.length === 0 || peer.awaitingDrain) return;
    if (!this.connect(peer)) return;
    const stream = peer.stream!;
    while (peer.queue.length > 0) {
      const chunk = peer.queue.splice(0, batchLength(peer.queue));
      const batch: RaftBatch = { clusterId: this.clusterId, fromNodeId: this.selfNodeId, envelopes: chunk };
      const ok = stream.write(batch);
      this.sentEnvelopes += chunk.length;
      if (!ok) {
        peer.awaitingDrain = true;
        stream.once('drain', () => {
          if (peer.stream !== stream) return;
          peer.awaitingDrain = false;
          this.scheduleFlush(peer);
        });
        return;
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const peer of this.peers.values()) this.disconnect(peer);
  }
}
