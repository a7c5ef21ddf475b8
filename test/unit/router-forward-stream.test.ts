// The router's forwarding Database.Batch stream against a scripted leader on loopback: a stream
// is shared by every request forwarded to one leader for one caller identity, so the status it
// dies with describes the stream (here: another request's message over the leader's size limit),
// not the operations in flight on it, which the leader may be applying (finding R1).
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode } from '../../src/common/errors.js';
import { type LocalDatabase, Router } from '../../src/datanode/router.js';
import { forwardRow as row, forwardSchema as schema, startBatchPeer } from '../support/grpc-fakes.js';
import { waitUntil } from '../support/local-cluster.js';

/** The leader's receive limit in this test (a real one's is limits.grpcMessageBytesMax). */
const LEADER_MESSAGE_BYTES_MAX = 4096;

describe('router: a forwarding Batch stream that fails (finding R1)', () => {
  let server: grpc.Server | undefined;
  let router: Router | undefined;
  afterEach(async () => {
    router?.close();
    if (server) await new Promise<void>((resolve) => server!.tryShutdown(() => resolve()));
    server = undefined;
    router = undefined;
  });

  it("another request's message killing the shared stream leaves a write in flight on it UNKNOWN, never NOT_APPLIED, and it is not sent again", async () => {
    // The leader takes the conditional write (no request id) and applies it, but its answer is
    // slow; a later copy of the same write would fail its condition (the version moved on).
    const received: string[] = [];
    const peer = await startBatchPeer<{ id: string; write?: { rows: ReturnType<typeof row>[] } }>(
      (req, call) => {
        const v = req.write?.rows[0]?.values.v.string_value ?? '';
        received.push(v.slice(0, 8));
        if (received.filter((r) => r === v.slice(0, 8)).length > 1) {
          call.write({ id: req.id, error: { grpc_code: grpc.status.FAILED_PRECONDITION, code: 'CONDITION_FAILED', message: 'condition failed: the row\'s current version is 2', details: { currentVersion: '2' } } });
        }
        // First copy: applied, answer pending.
      },
      { 'grpc.max_receive_message_length': LEADER_MESSAGE_BYTES_MAX },
    );
    server = peer.server;
    const local: LocalDatabase = {
      nodeId: 1,
      credentials: grpc.credentials.createInsecure(),
      schemaOf: async () => schema,
      leads: () => false,
      leaderAddr: async () => peer.addr,
      write: async () => {
        throw new Error('not led here');
      },
      delete: async () => {
        throw new Error('not led here');
      },
      get: async () => {
        throw new Error('not led here');
      },
      scanRegion: async () => {},
    };
    router = new Router(local);
    const conditional = router
      .write({ table: 't', rows: [row('small')], _expect_version: 'expect_version', expect_version: '1' }, { forwarded: false, deadlineMs: Date.now() + 20_000 })
      .then(
        () => undefined,
        (err: unknown) => err as { code: string; details: Record<string, string> },
      );
    await waitUntil('the leader received the conditional write', 5000, async () => (received.includes('small') ? true : undefined));
    // Another request of the same caller, forwarded on the same stream, over the leader's limit.
    const oversized = router.write({ table: 't', rows: [row('x'.repeat(LEADER_MESSAGE_BYTES_MAX * 2))] }, { forwarded: false, deadlineMs: Date.now() + 1000 }).catch(() => undefined);
    const err = await conditional;
    await oversized;
    expect(err, 'the write was never answered: it cannot have succeeded').to.not.equal(undefined);
    // One region: the part's own error, whose code must say "unknown" (UNAVAILABLE), not a refusal.
    expect(err!.code, `error ${JSON.stringify(err)}`).to.equal(ErrorCode.Unavailable);
    expect(received.filter((v) => v === 'small'), 'a write without a request id that may have applied is not sent again').to.have.length(1);
  });
});
