// The client library's deadline bounds the whole call (docs/clients.md, "Deadlines of the client
// library"): each attempt's timeout is the attempt timeout or what is left of the operation's
// deadline, whichever is less, on the wire too (BatchRequest.timeout_ms), so a retry started just
// before the deadline does not run a full attempt timeout past it. A write so cut short was sent:
// its outcome is unknown, never "not applied".
//
// Real gRPC on loopback: one fake server is the metasrv (routes naming itself as the region's
// only replica and leader) and the datanode, which answers nothing, or refuses for a while and
// then answers nothing. The client's deadline is 1,200 ms and its attempt timeout 1,000 ms; the
// attempts against a server that never answers therefore go: the first waits its full 1,000 ms,
// the client backs off 20 ms, and the second has at most 1,200 − 1,000 − 20 = 180 ms left.
// Before the fix that second attempt waited 1,000 ms too: the call took ≈ 2,020 ms.
//
// The margin on the elapsed time, 300 ms: the call ends when the last attempt's timer fires at the
// deadline, and a Node timer fires late by however long the event loop is busy — a few ms idle,
// tens of ms on a loaded 2-core machine. No backoff sleep crosses the deadline (withBackoff checks
// before it sleeps), so nothing else adds to it. The overrun the test catches is 800 ms.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { type ClientTraceEvent, RegionDbClient } from '../../src/client/client.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { loadProtos } from '../../src/rpc/proto.js';

type BatchRequest = { id: string; request: string; timeout_ms?: number };
type BatchCall = grpc.ServerDuplexStream<BatchRequest, unknown>;

const TABLE = 't';
const REGION = String(1n << 32n);
const DEADLINE_MS = 1200;
const ATTEMPT_TIMEOUT_MS = 1000;
const MARGIN_MS = 300;

interface Seen {
  kind: string;
  /** performance.now() when the server read the request. */
  atMs: number;
  /** BatchRequest.timeout_ms (Batch stream only). */
  timeoutMs?: number;
}

interface Fake {
  addr: string;
  seen: Seen[];
}

/**
 * `refuseForMs`: Batch requests read within this long of the first are refused at once with
 * NOT_LEADER and no hint (nothing proposed: "not applied"); later ones are never answered.
 */
async function startFake(servers: grpc.Server[], refuseForMs = 0): Promise<Fake> {
  const { services } = loadProtos();
  const server = new grpc.Server();
  const fake: Fake = { addr: '', seen: [] };
  const refuse = (atMs: number) => atMs - (fake.seen[0]?.atMs ?? atMs) < refuseForMs;
  const notLeader = { grpc_code: grpc.status.UNAVAILABLE, code: 'NOT_LEADER', message: 'no leader yet', details: {} };
  server.addService(services.Meta.service, {
    GetRoutes: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, {
        table: {
          name: TABLE,
          table_id: 1,
          region_count: 1,
          columns: [
            { name: 'host', type: 'STRING', semantic: 'TAG' },
            { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
          ],
        },
        routes: [{ region_id: REGION, peers: [{ node_id: '1', addr: fake.addr }], leader_node_id: '1' }],
      }),
  });
  // Unary calls are never answered (the refusing script is for the Batch stream).
  const unary = (kind: string) => () => {
    fake.seen.push({ kind, atMs: performance.now() });
  };
  server.addService(services.Database.service, {
    Write: unary('write'),
    Get: unary('get'),
    Batch: (call: BatchCall) => {
      call.on('data', (req: BatchRequest) => {
        const atMs = performance.now();
        const refused = refuse(atMs);
        fake.seen.push({ kind: req.request, atMs, timeoutMs: req.timeout_ms });
        if (refused) call.write({ id: req.id, error: notLeader }); // else: never answered
      });
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  fake.addr = `127.0.0.1:${port}`;
  servers.push(server);
  return fake;
}

/** Runs `op`, which must fail; returns its error and how long it took (monotonic ms). */
async function timedFailure(op: () => Promise<unknown>): Promise<{ err: unknown; elapsedMs: number }> {
  const started = performance.now();
  const err = await op().then(
    () => undefined,
    (e: unknown) => e,
  );
  const elapsedMs = performance.now() - started;
  expect(err, 'the call failed').to.not.equal(undefined);
  return { err, elapsedMs };
}

function expectUnknownOutcome(err: unknown): void {
  expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.DeadlineExceeded);
  expect(String((err as Error).message)).to.match(/outcome is unknown/);
  expect(isRegionDbError(err) && err.details['notApplied'], 'never "not applied": the write was sent').to.equal(undefined);
}

describe("client: the deadline bounds the whole call, every attempt's timeout included", function () {
  this.timeout(20_000);
  const servers: grpc.Server[] = [];
  const clients: RegionDbClient[] = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) s.forceShutdown();
  });

  async function client(fake: Fake, batchStream = true, trace?: (e: ClientTraceEvent) => void): Promise<RegionDbClient> {
    const c = new RegionDbClient({ metasrv: fake.addr, deadlineMs: DEADLINE_MS, attemptTimeoutMs: ATTEMPT_TIMEOUT_MS, batchStream, ...(trace ? { trace } : {}) });
    clients.push(c);
    await c.describe(TABLE); // routes cached: the call's time is its attempts' and backoffs'
    return c;
  }

  it('a write to a node that never answers fails at its deadline, outcome unknown; the last attempt sent what was left as timeout_ms (Batch stream)', async () => {
    const fake = await startFake(servers);
    const c = await client(fake);
    const { err, elapsedMs } = await timedFailure(() => c.write(TABLE, [{ host: 'a', ts: 1 }]));
    expectUnknownOutcome(err);
    expect(elapsedMs, 'failed at the deadline, not a full attempt timeout past it').to.be.within(DEADLINE_MS - 2, DEADLINE_MS + MARGIN_MS);
    expect(fake.seen.map((s) => s.kind)).to.deep.equal(['write', 'write']);
    expect(fake.seen[0]!.timeoutMs, 'the first attempt: the whole attempt timeout').to.equal(ATTEMPT_TIMEOUT_MS);
    // The second started after the first's 1,000 ms timeout and the 20 ms backoff: at most 180 ms
    // were left (+1 for the round-up to whole ms, +1 for Node's whole-ms timers, which may fire
    // up to 1 ms early on performance.now()'s clock).
    const last = fake.seen[1]!.timeoutMs!;
    expect(last, 'the retry carried what was left of the deadline').to.be.within(1, DEADLINE_MS - ATTEMPT_TIMEOUT_MS - 20 + 2);
  });

  it('a write refused (not applied) until its last attempt, which the deadline cuts short, fails at the deadline as outcome unknown', async () => {
    // Refused for 700 ms, then unanswered: the attempt that is never answered starts with at most
    // 500 ms of the deadline left, below the attempt timeout, and it is the only one that may
    // have been applied.
    const fake = await startFake(servers, 700);
    const c = await client(fake);
    const { err, elapsedMs } = await timedFailure(() => c.write(TABLE, [{ host: 'a', ts: 1 }]));
    expectUnknownOutcome(err);
    expect(elapsedMs, 'failed at the deadline').to.be.within(DEADLINE_MS - 2, DEADLINE_MS + MARGIN_MS);
    const unanswered = fake.seen.filter((s) => s.atMs - fake.seen[0]!.atMs >= 700);
    expect(unanswered.length, 'one attempt was left unanswered').to.equal(1);
    expect(fake.seen.length, 'the ones before it were refused').to.be.above(1);
    expect(unanswered[0]!.timeoutMs, 'cut below the attempt timeout').to.be.below(ATTEMPT_TIMEOUT_MS);
  });

  it('a get from a node that never answers fails at its deadline (Batch stream)', async () => {
    const fake = await startFake(servers);
    const c = await client(fake);
    const { err, elapsedMs } = await timedFailure(() => c.get(TABLE, { host: 'a', ts: 1 }));
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.DeadlineExceeded);
    expect(elapsedMs, 'failed at the deadline').to.be.within(DEADLINE_MS - 2, DEADLINE_MS + MARGIN_MS);
    expect(fake.seen.map((s) => s.kind)).to.deep.equal(['get', 'get']);
    expect(fake.seen[1]!.timeoutMs).to.be.within(1, DEADLINE_MS - ATTEMPT_TIMEOUT_MS - 20 + 2);
  });

  it('unary calls (batchStream: false): a write and a get to a node that never answers fail at their deadline, the write as outcome unknown', async () => {
    const fake = await startFake(servers);
    const c = await client(fake, false);
    const write = await timedFailure(() => c.write(TABLE, [{ host: 'a', ts: 1 }]));
    expectUnknownOutcome(write.err);
    expect(write.elapsedMs, 'the write failed at the deadline').to.be.within(DEADLINE_MS - 2, DEADLINE_MS + MARGIN_MS);
    const get = await timedFailure(() => c.get(TABLE, { host: 'a', ts: 1 }));
    expect(isRegionDbError(get.err) && get.err.code, String(get.err)).to.equal(ErrorCode.DeadlineExceeded);
    expect(get.elapsedMs, 'the get failed at the deadline').to.be.within(DEADLINE_MS - 2, DEADLINE_MS + MARGIN_MS);
    expect(fake.seen.map((s) => s.kind)).to.deep.equal(['write', 'write', 'get', 'get']);
  });

  it('a backoff that ends past the deadline (its timer fired late) starts no further attempt: a write only ever refused stays "not applied"', async () => {
    // The client's monotonic clock is moved past the deadline while it sleeps its first backoff,
    // as a timer that fires late (a busy event loop) would find it; grpc-js and mocha do not read
    // performance.now. The next attempt would be sent with no time left to wait for its answer.
    const realNow = performance.now;
    let skewMs = 0;
    performance.now = () => realNow.call(performance) + skewMs;
    try {
      const fake = await startFake(servers, Number.POSITIVE_INFINITY); // refuses everything
      const c = await client(fake, true, (e) => {
        if (e.kind === 'backoff') skewMs += DEADLINE_MS;
      });
      const { err } = await timedFailure(() => c.write(TABLE, [{ host: 'a', ts: 1 }]));
      expect(fake.seen.length, 'no attempt after the deadline').to.equal(1);
      expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.Unavailable);
      expect(isRegionDbError(err) && err.details['notApplied'], String(err)).to.equal('true');
    } finally {
      performance.now = realNow;
    }
  });
});
