import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { limits } from '../../src/common/limits.js';
import { silentLogger } from '../../src/common/logger.js';
import { GrpcRaftTransport, batchLength, isConnectionRefused, raftTransportService, transportLimits } from '../../src/replication/grpc-transport.js';
import { waitUntil } from '../support/local-cluster.js';
import type { RaftEnvelope } from '../../src/replication/transport.js';
import { MessageType, makeMessage } from '../../src/raft/types.js';

const append = (bytes: number): RaftEnvelope => ({
  regionId: '1',
  message: makeMessage({ type: MessageType.Append, to: 2, from: 1, entries: [{ index: 1, term: 1, type: 0, data: new Uint8Array(bytes) }] }),
});

describe('raft transport batching', () => {
  it('cuts a batch by payload bytes so it always fits in one message a datanode accepts', () => {
    const queue = Array.from({ length: 40 }, () => append(limits.raftMaxSizePerMsgBytes));
    const n = batchLength(queue);
    expect(n).to.be.greaterThan(0);
    expect(n * limits.raftMaxSizePerMsgBytes).to.be.at.most(transportLimits.batchPayloadBytesMax);
    expect(n * limits.raftMaxSizePerMsgBytes + limits.raftMaxSizePerMsgBytes).to.be.greaterThan(transportLimits.batchPayloadBytesMax);
    expect(transportLimits.batchPayloadBytesMax + limits.raftMaxSizePerMsgBytes).to.be.below(limits.grpcMessageBytesMax);
  });

  it('cuts by count for small messages, and never returns an empty batch', () => {
    expect(batchLength(Array.from({ length: transportLimits.batchEnvelopesMax + 10 }, () => append(10)))).to.equal(transportLimits.batchEnvelopesMax);
    expect(batchLength([append(transportLimits.batchPayloadBytesMax * 2)])).to.equal(1);
    expect(batchLength([])).to.equal(0);
  });
});

describe('raft transport reconnects', () => {
  /** A peer's raft endpoint on loopback that counts the batches it receives. */
  async function peer(port = 0): Promise<{ server: grpc.Server; port: number; batches: () => number }> {
    let batches = 0;
    const server = new grpc.Server();
    server.addService(raftTransportService(), {
      Stream: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        call.on('data', () => batches++);
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
    });
    const bound = await new Promise<number>((ok, fail) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))));
    return { server, port: bound, batches: () => batches };
  }

  it('after the wall clock steps back an hour, a broken link still reconnects within its backoff (the backoff is on the monotonic clock)', async () => {
    const realNow = Date.now;
    const first = await peer();
    const transport = new GrpcRaftTransport('c', 1, () => `127.0.0.1:${first.port}`, silentLogger);
    let second: Awaited<ReturnType<typeof peer>> | undefined;
    try {
      transport.send(2, [append(10)]);
      await waitUntil('the first batch at the peer', 5000, async () => (first.batches() > 0 ? true : undefined));
      first.server.forceShutdown(); // the peer restarts: the stream breaks, a reconnect is scheduled
      await new Promise((r) => setTimeout(r, 200));
      Date.now = () => realNow() - 3_600_000; // NTP steps this host's clock back an hour
      second = await peer(first.port);
      await waitUntil('a batch at the restarted peer, within a few backoffs', 5000, async () => {
        transport.send(2, [append(10)]);
        return second!.batches() > 0 ? true : undefined;
      });
    } finally {
      Date.now = realNow;
      transport.close();
      first.server.forceShutdown();
      second?.server.forceShutdown();
    }
  });
});

describe('raft transport: a refused connection is reported (docs/quiescence.md, "A refused connection")', () => {
  it('tells its listener the node whose address refuses a connection, and only that', async () => {
    // A port nothing listens on: bound, then closed again.
    const probe = new grpc.Server();
    const port = await new Promise<number>((ok, fail) => probe.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))));
    probe.forceShutdown();
    const transport = new GrpcRaftTransport('c', 1, (id) => (id === 3 ? `127.0.0.1:${port}` : undefined), silentLogger);
    const refused: number[] = [];
    transport.onRefused((nodeId) => refused.push(nodeId));
    try {
      transport.send(2, [append(10)]); // no address known: nothing tried, nothing reported
      transport.send(3, [append(10)]);
      await waitUntil('the refusal reported', 5000, async () => (refused.length > 0 ? true : undefined));
      expect(refused[0]).to.equal(3);
      expect(refused.every((id) => id === 3), String(refused)).to.equal(true);
      expect(transport.refusedConnections).to.equal(refused.length);
    } finally {
      await transport.close();
    }
  });

  it('a dropped connection is not a refusal; a refused one is (grpc-js errors as they come)', () => {
    const err = (details: string, code: number = grpc.status.UNAVAILABLE) => Object.assign(new Error(`${code} UNAVAILABLE: ${details}`), { code, details });
    expect(isConnectionRefused(err('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:45123. Resolution note: '))).to.equal(true);
    expect(isConnectionRefused(err('Connection dropped'))).to.equal(false);
    expect(isConnectionRefused(err('No connection established. Last error: Error: connect ETIMEDOUT 10.0.0.2:4000'))).to.equal(false);
    expect(isConnectionRefused(err('connect ECONNREFUSED 127.0.0.1:1', grpc.status.CANCELLED))).to.equal(false);
    expect(isConnectionRefused(undefined)).to.equal(false);
  });
});
