// The handler wrappers every service goes through (src/rpc/status.ts): a handler that never
// answers still gets the caller a status (the server-side deadline), and errors map once.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import { silentLogger } from '../../src/common/logger.js';
import { fromBatchError, fromGrpcError, toBatchError, toServiceError, unary } from '../../src/rpc/status.js';

function invoke(handler: grpc.handleUnaryCall<unknown, unknown>): Promise<{ err: grpc.ServiceError | null; res: unknown }> {
  return new Promise((ok) => {
    const call = { request: {}, getPath: () => '/regiondb.v1.Database/Get' } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
    handler(call, (err, res) => ok({ err: err as grpc.ServiceError | null, res }));
  });
}

describe('rpc: unary handler wrapper', () => {
  const mutable = limits as { serverCallMsMax: number };
  const saved = limits.serverCallMsMax;
  after(() => {
    mutable.serverCallMsMax = saved;
  });

  it('answers DEADLINE_EXCEEDED when a handler never completes (server-side deadline)', async () => {
    mutable.serverCallMsMax = 50;
    const { err } = await invoke(unary(() => new Promise(() => {}), silentLogger));
    expect(err?.code).to.equal(grpc.status.DEADLINE_EXCEEDED);
    expect(err?.details).to.match(/gave up after 50 ms/);
  });

  it('maps a RegionDbError to its status once, and a late result after the deadline is dropped', async () => {
    mutable.serverCallMsMax = 1000;
    const { err } = await invoke(unary(async () => Promise.reject(new RegionDbError(ErrorCode.NotFound, 'no such table')), silentLogger));
    expect(err?.code).to.equal(grpc.status.NOT_FOUND);
    mutable.serverCallMsMax = 20;
    let calls = 0;
    await new Promise<void>((done) => {
      // The handler answers 60 ms in, after the 20 ms deadline; once its result is out, one
      // macrotask turn lets the wrapper's continuation run (it is a microtask of that result).
      const handler = unary(() => new Promise((r) => setTimeout(() => {
        r({ ok: true });
        setImmediate(done);
      }, 60)), silentLogger);
      const call = { request: {}, getPath: () => '/regiondb.v1.Database/Get' } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
      handler(call, () => {
        calls++;
      });
    });
    expect(calls, 'the callback runs exactly once').to.equal(1);
  });
});

describe('rpc: error mapping (status.ts)', () => {
  it('REQUEST_TOO_OLD is ABORTED and keeps its code and the lowest known request id, unary and Batch alike', () => {
    const err = new RegionDbError(ErrorCode.RequestTooOld, 'request id 5 of client c is older than the region remembers', {
      details: { oldestKnownRequestId: '1000' },
    });
    const status = toServiceError(err);
    expect(status.code).to.equal(grpc.status.ABORTED);
    for (const back of [fromGrpcError(status), fromBatchError(toBatchError(err))]) {
      expect(back.code).to.equal(ErrorCode.RequestTooOld);
      expect(back.details['oldestKnownRequestId']).to.equal('1000');
      expect(back.message).to.equal(err.message);
    }
  });
});
