import { expect } from 'chai';
import { limits } from '../../src/common/limits.js';
import { batchLength, transportLimits } from '../../src/datanode/grpc-transport.js';
import type { RaftEnvelope } from '../../src/datanode/types.js';
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
