// The receiving side of the gRPC raft transport (grpc-transport.ts is the sending side), shared
// by every process that hosts raft groups: datanodes (their regions) and metasrvs (their own
// group, docs/metasrv-ha.md). A stream carries batches of envelopes from one peer process; each
// batch is checked (it decodes, it comes from this cluster, the sender is the node its
// certificate names) and each envelope is admitted or dropped by the host, then stepped into
// its group. Dropping is always safe in raft: the network may lose any message.
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../common/clock.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import type { Message } from '../raft/index.js';
import type { RaftBatch } from '../rpc/raft-wire.js';
import { MALFORMED, failStream } from '../rpc/status.js';
import { transportLimits } from './grpc-transport.js';

export interface RaftStreamHost {
  readonly clusterId: string;
  readonly log: Logger;
  /** Monotonic: the ack interval. */
  readonly clock: Clock;
  /** The peer node id the stream's TLS certificate names, if any (undefined without TLS). */
  certNodeId(stream: grpc.ServerDuplexStream<unknown, unknown>): number | undefined;
  /** Why an envelope must not reach its group (a reason counted by `reject`), or undefined. */
  admit(fromNodeId: number, groupId: string, message: Message): string | undefined;
  step(fromNodeId: number, groupId: string, message: Message): void;
  /** Counts (and logs, rate-limited) refused traffic. */
  reject(reason: string, context: Record<string, unknown>): void;
  /** Bytes of entries and snapshots received in an admitted message (metrics). */
  onPayload?(bytes: number): void;
}

export function serveRaftStream(stream: grpc.ServerDuplexStream<unknown, unknown>, host: RaftStreamHost): void {
  const certNodeId = host.certNodeId(stream);
  let refused = false;
  let acceptedSinceAck = 0;
  let lastAckMs = Number.NEGATIVE_INFINITY; // the first batch is acknowledged at once
  const refuse = (reason: string, error: Partial<grpc.ServiceError>, context: Record<string, unknown>) => {
    refused = true;
    host.reject(reason, context);
    failStream(stream, error);
  };
  stream.on('data', (raw: unknown) => {
    if (refused) return;
    if (raw && typeof raw === 'object' && MALFORMED in raw) {
      // A batch that does not decode (src/rpc/raft-wire.ts) is refused whole.
      refuse('malformed', { code: grpc.status.INVALID_ARGUMENT, details: 'malformed raft message batch' }, { peer: stream.getPeer(), err: raw[MALFORMED] });
      return;
    }
    const batch = raw as RaftBatch;
    if (batch.clusterId !== host.clusterId) {
      const details = `cluster id mismatch: this node belongs to ${host.clusterId}`;
      refuse('other-cluster', { code: grpc.status.FAILED_PRECONDITION, details }, { clusterId: batch.clusterId, peer: stream.getPeer() });
      return;
    }
    const fromNodeId = batch.fromNodeId;
    if (certNodeId !== undefined && certNodeId !== fromNodeId) {
      const details = `from_node_id ${fromNodeId} does not match the certificate of node ${certNodeId}`;
      refuse('node-id-mismatch', { code: grpc.status.PERMISSION_DENIED, details }, { fromNodeId, certNodeId });
      return;
    }
    let accepted = 0;
    for (const { regionId, message } of batch.envelopes) {
      const reason = host.admit(fromNodeId, regionId, message);
      if (reason) {
        host.reject(reason, { fromNodeId, regionId, fromPeerId: message.from });
        continue;
      }
      if (host.onPayload) {
        let payload = message.snapshot?.data.byteLength ?? 0;
        for (const e of message.entries) payload += e.data.byteLength;
        if (payload > 0) host.onPayload(payload);
      }
      host.step(fromNodeId, regionId, message);
      accepted++;
    }
    acceptedSinceAck += accepted;
    const nowMs = host.clock.nowMs();
    if (nowMs - lastAckMs >= transportLimits.ackIntervalMs) {
      stream.write({ accepted: acceptedSinceAck });
      acceptedSinceAck = 0;
      lastAckMs = nowMs;
    }
  });
  // A live peer sends heartbeats every few ticks; a stream silent this long is a dead or
  // stuck peer holding a server stream open: close it (a live peer reconnects). A real timer:
  // it belongs to the gRPC stream, an I/O edge a simulation replaces whole.
  let idle: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      host.log.warn({ certNodeId }, `raft stream idle for ${limits.raftStreamIdleMsMax} ms; closed`);
      failStream(stream, { code: grpc.status.DEADLINE_EXCEEDED, details: 'raft stream idle; closed' });
    }, limits.raftStreamIdleMsMax);
    idle.unref();
  };
  armIdle();
  stream.on('data', armIdle);
  stream.on('error', () => clearTimeout(idle)); // the peer went away; it reconnects
  stream.on('end', () => {
    clearTimeout(idle);
    stream.end();
  });
  stream.on('close', () => clearTimeout(idle));
}

/**
 * The membership rule of admission, for any group: a peer id claimed from another node than the
 * one it lives on, and senders that are not (or no longer) members, are refused. A replica that
 * has not learned its configuration yet (a new learner before its snapshot) trusts its peer list.
 */
export function membershipAdmission(
  known: { readonly nodeId: number } | undefined,
  fromNodeId: number,
  fromPeerId: number,
  conf: { isMember(peerId: number): boolean; hasMembers(): boolean },
): string | undefined {
  if (known && known.nodeId !== fromNodeId) return 'peer-on-another-node';
  if (!conf.hasMembers()) return known ? undefined : 'not-a-member';
  return conf.isMember(fromPeerId) ? undefined : 'not-a-member';
}
