// A status without regiondb's error code (src/rpc/status.ts, fromTransportStatus; docs/clients.md,
// "A status without regiondb's code"): a forwarded write whose stream the leader's side reset
// (grpc-js: INTERNAL "Received RST_STREAM with code 2") was answered INTERNAL — a server bug, not
// retried by the client — although the write had reached the leader and may have applied. It is
// now UNAVAILABLE, outcome unknown (retried under the same request id). Leftover item 1.
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { type LocalDatabase, type RegionOutcome, Router, type WriteRequest, routerWallClock } from '../../src/datanode/router.js';
import type { TimedClock } from '../../src/common/clock.js';
import { HandClock } from '../fixtures/hand-clock.js';
import { makeRegionId, regionNumberOf } from '../../src/engine/key.js';
import type { TableSchema } from '../../src/engine/schema.js';
import { RegionDbClient } from '../../src/client/client.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { ERROR_CODE_KEY, fromBatchError, fromGrpcError } from '../../src/rpc/status.js';
import { type ProtoValue, toProtoRow } from '../../src/rpc/values.js';
import { type ResetPeer, startResetPeer } from '../support/reset-peer.js';

const schema: TableSchema = {
  name: 't',
  tableId: 9,
  regionCount: 2,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'v', type: 'int64', semantic: 'field' },
  ],
};
const REGION0 = makeRegionId(schema.tableId, 0);
const REGION1 = makeRegionId(schema.tableId, 1);

/** A row of region `n` (the first host name that hashes there), as proto-loader decodes one. */
function rowOf(n: number, ts: number) {
  for (let i = 0; i < 1000; i++) {
    const r = { host: `h${i}`, ts, v: ts };
    if (regionNumberOf(schema, r) !== n) continue;
    const p = toProtoRow(schema, r);
    for (const v of Object.values(p.values)) v.kind = Object.keys(v)[0] as ProtoValue['kind'];
    return p;
  }
  throw new Error(`no host of region ${n} in 1000 names`);
}

/** Waits for what real I/O brings (a message over loopback): polls `cond`, failing after 10 s of wall time (a stuck test, not a slow one). */
async function arrival(cond: () => boolean, what: string): Promise<void> {
  const giveUpAtMs = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > giveUpAtMs) throw new Error(`${what}: not within 10 s`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function rejection(p: Promise<unknown>): Promise<RegionDbError> {
  try {
    await p;
  } catch (err) {
    if (isRegionDbError(err)) return err;
    throw err;
  }
  throw new Error('resolved, expected a rejection');
}

describe('rpc: a status without regiondb error code (fromTransportStatus)', () => {
  const status = (code: grpc.status, metadata?: grpc.Metadata) => ({ code, details: `status ${grpc.status[code]}`, metadata: metadata ?? new grpc.Metadata() });

  it('transport codes that leave the outcome unknown are UNAVAILABLE with outcome unknown; refusals and application codes keep their meaning', () => {
    const expected: [grpc.status, ErrorCode, string | undefined][] = [
      [grpc.status.INTERNAL, ErrorCode.Unavailable, 'unknown'],
      [grpc.status.UNKNOWN, ErrorCode.Unavailable, 'unknown'],
      [grpc.status.RESOURCE_EXHAUSTED, ErrorCode.Unavailable, 'unknown'],
      [grpc.status.UNAVAILABLE, ErrorCode.Unavailable, undefined],
      [grpc.status.CANCELLED, ErrorCode.Unavailable, undefined],
      [grpc.status.DEADLINE_EXCEEDED, ErrorCode.DeadlineExceeded, undefined],
      [grpc.status.UNAUTHENTICATED, ErrorCode.Unauthenticated, undefined],
      [grpc.status.PERMISSION_DENIED, ErrorCode.PermissionDenied, undefined],
      [grpc.status.UNIMPLEMENTED, ErrorCode.Internal, undefined],
      [grpc.status.NOT_FOUND, ErrorCode.NotFound, undefined],
      [grpc.status.INVALID_ARGUMENT, ErrorCode.InvalidArgument, undefined],
      [grpc.status.DATA_LOSS, ErrorCode.Internal, undefined],
    ];
    for (const [code, want, outcome] of expected) {
      const unary = fromGrpcError(status(code));
      const batch = fromBatchError({ grpc_code: code, code: '', message: `status ${grpc.status[code]}`, details: {} });
      for (const [path, e] of [
        ['unary', unary],
        ['batch', batch],
      ] as const) {
        expect(e.code, `${path} ${grpc.status[code]}`).to.equal(want);
        expect(e.details['outcome'], `${path} ${grpc.status[code]}: outcome`).to.equal(outcome);
      }
    }
  });

  it("our own server's INTERNAL and RESOURCE_EXHAUSTED (regiondb's code in the metadata) keep their code", () => {
    for (const [code, ours] of [
      [grpc.status.INTERNAL, ErrorCode.Internal],
      [grpc.status.RESOURCE_EXHAUSTED, ErrorCode.ResourceExhausted],
    ] as const) {
      const md = new grpc.Metadata();
      md.set(ERROR_CODE_KEY, ours);
      const e = fromGrpcError(status(code, md));
      expect(e.code).to.equal(ours);
      expect(e.details['outcome']).to.equal(undefined);
    }
  });
});

describe('router: a forwarded call whose HTTP/2 stream is reset (leftover 1)', function () {
  this.timeout(30_000);
  let peer: ResetPeer | undefined;
  let router: Router | undefined;
  afterEach(async () => {
    router?.close();
    await peer?.stop();
    peer = undefined;
    router = undefined;
  });

  /** A node that leads region 0 and forwards region 1 (and gets) to the reset peer. */
  function routerTo(addr: string, applied: string[], clock: TimedClock = routerWallClock): Router {
    const local: LocalDatabase = {
      nodeId: 1,
      credentials: grpc.credentials.createInsecure(),
      schemaOf: async () => schema,
      leads: (regionId) => regionId === REGION0,
      leaderAddr: async () => addr,
      write: async (req) => {
        applied.push(String(req.region_id));
        return { version: '4', rows_written: req.rows.length };
      },
      delete: async () => ({ version: '1' }),
      get: async () => {
        throw new RegionDbError(ErrorCode.NotLeader, 'not the leader here', { details: { leaderAddr: addr, leaderNodeId: '2' } });
      },
      scanRegion: async () => {},
    };
    return new Router(local, clock);
  }

  it('grpc-js reports the reset as INTERNAL without regiondb code; it reads as UNAVAILABLE, outcome unknown', async () => {
    peer = await startResetPeer();
    const client = makeClient('Database', peer.addr);
    try {
      const raw = await call(client, 'Get', { table: 't', key: rowOf(0, 1) }, 5000).then(
        () => undefined,
        (err: unknown) => err as grpc.ServiceError,
      );
      expect(raw?.code, String(raw)).to.equal(grpc.status.INTERNAL);
      expect(raw?.details).to.match(/Received RST_STREAM with code/);
      expect(raw?.metadata.get(ERROR_CODE_KEY)).to.deep.equal([]);
      const e = fromGrpcError(raw);
      expect(e.code).to.equal(ErrorCode.Unavailable);
      expect(e.details['outcome']).to.equal('unknown');
    } finally {
      client.close();
    }
  });

  for (const [name, rst] of [
    ['INTERNAL_ERROR', http2.constants.NGHTTP2_INTERNAL_ERROR],
    ['PROTOCOL_ERROR', http2.constants.NGHTTP2_PROTOCOL_ERROR],
  ] as const) {
    it(`a one-region write forwarded to a leader whose stream resets (${name}) is answered UNAVAILABLE (outcome unknown), not INTERNAL, and not sent again without a request id`, async () => {
      peer = await startResetPeer(rst);
      router = routerTo(peer.addr, []);
      const request: WriteRequest = { table: 't', rows: [rowOf(1, 1)] };
      const err = await rejection(router.write(request, { forwarded: false, deadlineMs: Date.now() + 10_000 }));
      expect(err.code, err.message).to.equal(ErrorCode.Unavailable);
      expect(err.message).to.match(/outcome is unknown/);
      expect(peer.received.get('/regiondb.v1.Database/Batch'), 'the leader received it once').to.equal(1);
    });
  }

  it('a two-region write: the local part applied, the reset part UNKNOWN, the call UNAVAILABLE', async () => {
    peer = await startResetPeer();
    const applied: string[] = [];
    router = routerTo(peer.addr, applied);
    const request: WriteRequest = { table: 't', rows: [rowOf(0, 1), rowOf(1, 2)] };
    const err = await rejection(router.write(request, { forwarded: false, deadlineMs: Date.now() + 10_000 }));
    expect(err.code, err.message).to.equal(ErrorCode.Unavailable);
    const outcomes = JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[];
    expect(outcomes.map((o) => [o.region_id, o.outcome, o.code])).to.deep.equal([
      [REGION0, 'OUTCOME_APPLIED', ''],
      [REGION1, 'OUTCOME_UNKNOWN', ErrorCode.Unavailable],
    ]);
    expect(applied).to.deep.equal([REGION0]);
  });

  it('with a request id the part is sent again (safe: deduplicated), within the deadline, and still ends with the outcome unknown', async () => {
    peer = await startResetPeer();
    router = routerTo(peer.addr, []);
    const request: WriteRequest = { table: 't', rows: [rowOf(1, 1)], client_id: 'c', request_id: '7' };
    const err = await rejection(router.write(request, { forwarded: false, deadlineMs: Date.now() + 1500 }));
    // The router resends while an attempt still has time to complete (Router.part, "too little
    // left") and then answers the last attempt's error: the transport's UNAVAILABLE, never a
    // DEADLINE_EXCEEDED of an attempt the deadline cut short (which it was, 1 run in 4 in CI,
    // when the last backoff ran to the deadline and the resend got 1 ms), nor INTERNAL.
    expect(err.code, err.message).to.equal(ErrorCode.Unavailable);
    expect(err.message).to.match(/outcome is unknown/);
    expect(peer.received.get('/regiondb.v1.Database/Batch') ?? 0, 'attempts that reached the leader').to.be.above(1);
  });

  it('a slow attempt: no resend is started with less of the deadline left than the last attempt took; the answer is its UNAVAILABLE, before the deadline', async () => {
    // Each attempt takes 300 ms to fail. Deadline 800 ms: attempt 1 ends at 300, attempt 2 at
    // 650 (after a 50 ms backoff); 150 ms are left, less than an attempt takes. Before the rule
    // a third attempt went out at 750 and the deadline cut it short: DEADLINE_EXCEEDED at 800.
    // The Router (its backoffs, deadline and each attempt's wait) runs on a hand clock; the peer
    // holds each attempt until the test has moved that clock 300 ms, then resets it. Real time
    // only carries the messages over loopback, and the test waits for each to arrive.
    const resets: (() => void)[] = [];
    peer = await startResetPeer(http2.constants.NGHTTP2_INTERNAL_ERROR, (reset) => resets.push(reset));
    const clock = new HandClock();
    router = routerTo(peer.addr, [], clock);
    const request: WriteRequest = { table: 't', rows: [rowOf(1, 1)], client_id: 'c', request_id: '8' };
    const t0 = clock.nowMs();
    let answeredAfterMs: number | undefined;
    const answer = rejection(router.write(request, { forwarded: false, deadlineMs: t0 + 800 })).finally(() => {
      answeredAfterMs = clock.nowMs() - t0;
    });
    const attemptsAtMs: number[] = [];
    for (let n = 1; n <= 10 && answeredAfterMs === undefined; n++) {
      await arrival(() => resets.length === n, `attempt ${n} at the peer`);
      attemptsAtMs.push(clock.nowMs() - t0);
      clock.advance(300); // the attempt takes 300 ms (a wait for its answer ending sooner fires on the way)
      const timersBefore = clock.timersSet();
      resets[n - 1]!();
      // The reset reaches the router: it answers, or backs off before a resend (a timer it sets).
      await arrival(() => answeredAfterMs !== undefined || clock.timersSet() > timersBefore, `the router's answer or backoff after attempt ${n}`);
      if (answeredAfterMs === undefined) clock.advance(clock.nextDueMs()! - clock.nowMs());
    }
    const err = await answer;
    expect(attemptsAtMs, 'attempts (ms): the second after a 50 ms backoff, no third').to.deep.equal([0, 350]);
    expect(err.code, err.message).to.equal(ErrorCode.Unavailable);
    expect(err.message).to.match(/outcome is unknown/);
    expect(answeredAfterMs, 'ms to the answer: when the second attempt failed, not at the deadline (800)').to.equal(650);
    expect(peer.received.get('/regiondb.v1.Database/Batch') ?? 0).to.equal(2);
  });

  it('a forwarded Get whose stream resets is UNAVAILABLE (retried by the client), not INTERNAL', async () => {
    peer = await startResetPeer();
    router = routerTo(peer.addr, []);
    const err = await rejection(router.get({ table: 't', key: rowOf(1, 1) } as never, { forwarded: false, deadlineMs: Date.now() + 10_000 }));
    expect(err.code, err.message).to.equal(ErrorCode.Unavailable);
    expect(peer.received.get('/regiondb.v1.Database/Get')).to.equal(1);
  });
});

describe('client: a DropTable whose answer was lost is sent again with its token (leftover item 2)', function () {
  this.timeout(30_000);
  let peer: ResetPeer | undefined;
  let server: grpc.Server | undefined;
  let client: RegionDbClient | undefined;
  afterEach(async () => {
    client?.close();
    await peer?.stop();
    if (server) await new Promise<void>((resolve) => server!.tryShutdown(() => resolve()));
    peer = undefined;
    server = undefined;
    client = undefined;
  });

  it('the first metasrv resets the call after it arrived (outcome unknown): the same request, token included, goes to the next one', async () => {
    peer = await startResetPeer();
    const received: { name: string; request_token: string }[] = [];
    server = new grpc.Server();
    server.addService(loadProtos().services.Meta.service, {
      DropTable: (call: grpc.ServerUnaryCall<{ name: string; request_token: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        received.push(call.request);
        callback(null, { regions_dropped: 2 });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new RegionDbClient({ metasrv: [peer.addr, `127.0.0.1:${port}`], attemptTimeoutMs: 2000, deadlineMs: 5000, clientId: 'drop-test' });
    expect(await client.dropTable('t')).to.equal(2);
    expect(peer.received.get('/regiondb.v1.Meta/DropTable'), 'the first attempt reached the first metasrv').to.equal(1);
    expect(received).to.have.length(1);
    expect(received[0]!.name).to.equal('t');
    expect(received[0]!.request_token, 'a token the metasrv answers a retry from').to.match(/^drop-test/);
  });
});
