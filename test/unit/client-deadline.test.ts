// The client library's deadline bounds the whole call (docs/clients.md, "Deadlines of the client
// library"): each attempt's timeout is the attempt timeout or what is left of the operation's
// deadline, whichever is less, on the wire too (BatchRequest.timeout_ms), so a retry started just
// before the deadline does not run a full attempt timeout past it. A write so cut short was sent:
// its outcome is unknown, never "not applied".
//
// Real gRPC on loopback: one fake server is the metasrv (routes naming itself as the region's
// only replica and leader) and the datanode, which answers nothing, or refuses for a while and
// then answers nothing. The client's deadline is 1,500 ms and its attempt timeout 1,000 ms; the
// attempts against a server that never answers therefore go: the first waits its full 1,000 ms,
// the client backs off 20 ms, and the second has at most 1,500 − 1,000 − 20 = 480 ms left.
// Before the fix that second attempt waited 1,000 ms too: the call took ≈ 2,020 ms.
//
// Time (docs/testing.md, "Time in unit tests"): the client runs on a hand-moved clock
// (ClientOptions.now and .scheduler, test/fixtures/hand-clock.ts): its Batch-stream attempts time
// out, and its backoffs end, only when the test moves that clock, so every time below is exact
// and nothing depends on how busy the machine is. Real time only carries the messages over
// loopback, which the test waits for as events (a 10 s give-up for a stuck test, never a bound
// on what is measured). Before, the attempts ran on real timers and the call's wall time had to
// stay below the deadline + 450 ms: under load a late timer took that away (1,967 ms seen), or
// left the second attempt too little time to be sent at all.
//
// An attempt looks the table's routes up before it sends (docs/clients.md, "Deadlines of the
// client library"): the fake metasrv's lookups can be scripted (a region missing from the routes,
// an answer held), and its DropTable drops the client's cached routes.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { type ClientTraceEvent, RegionDbClient } from '../../src/client/client.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { HandClock, settle } from '../fixtures/hand-clock.js';

type BatchRequest = { id: string; request: string; timeout_ms?: number };
type BatchCall = grpc.ServerDuplexStream<BatchRequest, unknown>;

const TABLE = 't';
const REGION = String(1n << 32n);
const DEADLINE_MS = 1500;
const ATTEMPT_TIMEOUT_MS = 1000;
interface Seen {
  kind: string;
  /** When the server read the request, on the fake's clock (the client's hand clock, or performance.now()). */
  atMs: number;
  /** BatchRequest.timeout_ms (Batch stream only). */
  timeoutMs?: number;
  /** A unary call's gRPC deadline less Date.now() as the server read it: at most what the client granted the attempt. */
  deadlineLeftMs?: number;
  /** Whether the fake answered it (a refusal); unanswered ones wait for the client's timeout. */
  answered: boolean;
}

interface Fake {
  addr: string;
  seen: Seen[];
}

/**
 * `refuseForMs`: Batch requests read within this long of the first (on `clockMs`, the client's
 * clock) are refused at once with NOT_LEADER and no hint (nothing proposed: "not applied"); later
 * ones are never answered.
 * `onLookup(n, answer)`: called for the n-th GetRoutes (from 1), which it answers by calling
 * `answer` — with the region, or (`false`) with a route set that lacks it; at once by default.
 */
async function startFake(
  servers: grpc.Server[],
  refuseForMs = 0,
  onLookup: (n: number, answer: (withRegion: boolean) => void) => void = (_n, answer) => answer(true),
  clockMs: () => number = () => performance.now(),
): Promise<Fake> {
  const { services } = loadProtos();
  const server = new grpc.Server();
  const fake: Fake = { addr: '', seen: [] };
  const refuse = (atMs: number) => atMs - (fake.seen[0]?.atMs ?? atMs) < refuseForMs;
  const notLeader = { grpc_code: grpc.status.UNAVAILABLE, code: 'NOT_LEADER', message: 'no leader yet', details: {} };
  let lookups = 0;
  server.addService(services.Meta.service, {
    GetRoutes: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
      onLookup(++lookups, (withRegion) =>
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
          routes: withRegion ? [{ region_id: REGION, peers: [{ node_id: '1', addr: fake.addr }], leader_node_id: '1' }] : [],
        }),
      ),
    DropTable: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { regions_dropped: 1 }),
  });
  // Unary calls are never answered (the refusing script is for the Batch stream).
  const unary = (kind: string) => (call: grpc.ServerUnaryCall<unknown, unknown>) => {
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    fake.seen.push({ kind, atMs: clockMs(), deadlineLeftMs: deadlineMs - Date.now(), answered: false });
  };
  server.addService(services.Database.service, {
    Write: unary('write'),
    Get: unary('get'),
    Batch: (call: BatchCall) => {
      call.on('data', (req: BatchRequest) => {
        const atMs = clockMs();
        const refused = refuse(atMs);
        fake.seen.push({ kind: req.request, atMs, timeoutMs: req.timeout_ms, answered: refused });
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

/** An operation under way: whether it has settled, and its error once it has failed. */
interface Running {
  settled(): boolean;
  /** Waits for the operation to fail (it must), and returns its error. */
  failure(): Promise<unknown>;
}

function running(op: Promise<unknown>): Running {
  let done = false;
  const outcome = op.then(
    () => undefined,
    (e: unknown) => e,
  );
  void outcome.then(() => {
    done = true;
  });
  return {
    settled: () => done,
    failure: async () => {
      const err = await outcome;
      expect(err, 'the call failed').to.not.equal(undefined);
      return err;
    },
  };
}

/** Waits (polling, real time) for an event over loopback; a stuck test gives up after `timeoutMs`, which bounds nothing measured. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const giveUpMs = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > giveUpMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Runs `op` to its end on `hand`: each time the client waits on the hand clock — a backoff began
 * (`backoffs()` grew) or the fake read an attempt it does not answer — moves the clock to the
 * client's next timer. At most `maxSteps` moves. Returns the clock's time when `op` settled.
 */
async function drive(hand: HandClock, op: Running, fake: Fake, backoffs: () => number, maxSteps = 30): Promise<number> {
  const waits = () => backoffs() + fake.seen.filter((s) => !s.answered).length;
  let handled = 0;
  for (let step = 0; ; step++) {
    await waitFor('the client to wait on its clock, or the call to end', () => op.settled() || waits() > handled);
    if (op.settled()) return hand.nowMs();
    expect(step, 'moves of the hand clock').to.be.below(maxSteps);
    handled = waits();
    const due = hand.nextDueMs();
    expect(due, 'the client waits on a timer of its clock').to.not.equal(undefined);
    hand.advance(due! - hand.nowMs());
  }
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

  /**
   * A client of `fake` with routes cached (the call's time is its attempts' and backoffs'): on
   * `hand`'s clock and timers when given (ClientOptions.now, .scheduler), on real ones otherwise.
   */
  async function client(fake: Fake, opts: { batchStream?: boolean; trace?: (e: ClientTraceEvent) => void; hand?: HandClock; realTimers?: boolean } = {}): Promise<RegionDbClient> {
    const { batchStream = true, trace, hand, realTimers = false } = opts;
    const c = new RegionDbClient({
      metasrv: fake.addr,
      deadlineMs: DEADLINE_MS,
      attemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
      batchStream,
      ...(trace ? { trace } : {}),
      ...(hand ? { now: () => hand.nowMs(), ...(realTimers ? {} : { scheduler: hand }) } : {}),
    });
    clients.push(c);
    await c.describe(TABLE);
    return c;
  }

  /** A hand clock, a fake on it, and a client on it that counts its backoffs. */
  async function onHand(refuseForMs = 0, onLookup?: (n: number, answer: (withRegion: boolean) => void) => void) {
    const hand = new HandClock(0);
    const fake = await startFake(servers, refuseForMs, onLookup, () => hand.nowMs());
    const backoffsMs: number[] = [];
    const c = await client(fake, { hand, trace: (e) => e.kind === 'backoff' && backoffsMs.push(e.ms) });
    return { hand, fake, c, backoffsMs, backoffs: () => backoffsMs.length };
  }

  it('a write to a node that never answers fails at its deadline, outcome unknown; the last attempt sent what was left as timeout_ms (Batch stream)', async () => {
    const { hand, fake, c, backoffs } = await onHand();
    const write = running(c.write(TABLE, [{ host: 'a', ts: 1 }]));
    const endedMs = await drive(hand, write, fake, backoffs);
    expectUnknownOutcome(await write.failure());
    // The first attempt waits its whole 1,000 ms, the client backs off 20 ms, and the second has
    // exactly 1,500 − 1,000 − 20 = 480 ms left: it is sent with that, and the call fails when it
    // runs out — at the deadline, not a full attempt timeout (1,000 ms) past it.
    expect(fake.seen.map((s) => [s.kind, s.atMs, s.timeoutMs])).to.deep.equal([
      ['write', 0, ATTEMPT_TIMEOUT_MS],
      ['write', 1020, 480],
    ]);
    expect(endedMs, 'failed at the deadline').to.equal(DEADLINE_MS);
  });

  it('a write refused (not applied) until its last attempt, which the deadline cuts short, fails at the deadline as outcome unknown', async () => {
    // Refused for 1,000 ms, then unanswered: the attempt that is never answered starts with less
    // than the attempt timeout left, and it is the only one that may have been applied. (Uncut,
    // it would wait the full 1,000 ms.)
    const { hand, fake, c, backoffs, backoffsMs } = await onHand(1000);
    const write = running(c.write(TABLE, [{ host: 'a', ts: 1 }]));
    const endedMs = await drive(hand, write, fake, backoffs);
    expectUnknownOutcome(await write.failure());
    // Backoffs of 20, 40, 80, 160, then 200 ms (the cap): refused at 0, 20, 60, 140, 300, 500,
    // 700, 900; sent at 1,100 with the 400 ms left, unanswered; failed at 1,500.
    expect(backoffsMs).to.deep.equal([20, 40, 80, 160, 200, 200, 200, 200]);
    expect(fake.seen.map((s) => [s.atMs, s.answered])).to.deep.equal([
      [0, true],
      [20, true],
      [60, true],
      [140, true],
      [300, true],
      [500, true],
      [700, true],
      [900, true],
      [1100, false],
    ]);
    expect(fake.seen.at(-1)!.timeoutMs, 'cut below the attempt timeout: what was left').to.equal(400);
    expect(endedMs, 'failed at the deadline').to.equal(DEADLINE_MS);
  });

  it('a get from a node that never answers fails at its deadline (Batch stream)', async () => {
    const { hand, fake, c, backoffs } = await onHand();
    const get = running(c.get(TABLE, { host: 'a', ts: 1 }));
    const endedMs = await drive(hand, get, fake, backoffs);
    const err = await get.failure();
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.DeadlineExceeded);
    expect(fake.seen.map((s) => [s.kind, s.atMs, s.timeoutMs])).to.deep.equal([
      ['get', 0, ATTEMPT_TIMEOUT_MS],
      ['get', 1020, 480],
    ]);
    expect(endedMs, 'failed at the deadline').to.equal(DEADLINE_MS);
  });

  it('unary calls (batchStream: false): a write and a get to a node that never answers fail at their deadline, the write as outcome unknown', async () => {
    // A unary attempt times out on gRPC's deadline, in real time. The client's clock stands for
    // it: when an attempt times out the test moves that clock by what the client granted it
    // (1,000 ms, then the 480 ms left), and the backoffs run on the hand clock. What the client
    // granted is checked where it shows, at the server: the call's gRPC deadline, which only
    // shrinks on its way there (uncut, the second would arrive with ≈ 1,000 ms left).
    const hand = new HandClock(0);
    const fake = await startFake(servers, 0, undefined, () => hand.nowMs());
    const grantedMs = [ATTEMPT_TIMEOUT_MS, 480, ATTEMPT_TIMEOUT_MS, 480];
    let backoffs = 0;
    const c = await client(fake, {
      batchStream: false,
      hand,
      trace: (e) => {
        if (e.kind === 'backoff') backoffs++;
        if (e.kind === 'attempt' && e.code === ErrorCode.DeadlineExceeded) hand.advance(grantedMs.shift()!);
      },
    });
    const write = running(c.write(TABLE, [{ host: 'a', ts: 1 }]));
    await drive(hand, write, { ...fake, seen: [] }, () => backoffs);
    expectUnknownOutcome(await write.failure());
    const writeBackoffs = backoffs;
    const get = running(c.get(TABLE, { host: 'a', ts: 1 }));
    await drive(hand, get, { ...fake, seen: [] }, () => backoffs - writeBackoffs);
    const err = await get.failure();
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.DeadlineExceeded);
    expect(fake.seen.map((s) => s.kind)).to.deep.equal(['write', 'write', 'get', 'get']);
    expect(fake.seen.map((s) => s.atMs - fake.seen[0]!.atMs), 'sent after a 1,000 ms attempt and a 20 ms backoff').to.deep.equal([0, 1020, 1500, 2520]);
    for (const i of [1, 3]) expect(fake.seen[i]!.deadlineLeftMs, `${fake.seen[i]!.kind} retry: sent with what was left`).to.be.at.most(481);
  });

  it('a backoff that ends past the deadline (its timer fired late) starts no further attempt: a write only ever refused stays "not applied"', async () => {
    // The client's clock is moved past the deadline while it sleeps its first backoff (on a real
    // timer), as a timer that fires late (a busy event loop) would find it. The next attempt would
    // be sent with no time left to wait for its answer.
    const hand = new HandClock(0);
    const fake = await startFake(servers, Number.POSITIVE_INFINITY); // refuses everything
    const c = await client(fake, {
      hand,
      realTimers: true,
      trace: (e) => {
        if (e.kind === 'backoff') hand.advance(DEADLINE_MS);
      },
    });
    const err = await running(c.write(TABLE, [{ host: 'a', ts: 1 }])).failure();
    expect(fake.seen.length, 'no attempt after the deadline').to.equal(1);
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.Unavailable);
    expect(isRegionDbError(err) && err.details['notApplied'], String(err)).to.equal('true');
  });

  it('a write whose first attempt was sent unanswered, and whose next attempt fails before it is sent (the region gone from the routes), fails as outcome unknown, not NOT_FOUND', async () => {
    // The first lookup (client()) names the region; every later one answers routes without it.
    const { hand, fake, c, backoffs } = await onHand(0, (n, answer) => answer(n === 1));
    const write = running(c.write(TABLE, [{ host: 'a', ts: 1 }]));
    await waitFor('the first attempt to be sent', () => fake.seen.length === 1);
    // Another caller of this client looks the routes up while the first attempt waits for its
    // answer: the next attempt finds no route for the region, and so sends nothing.
    await c.describe(TABLE, true);
    await drive(hand, write, fake, backoffs);
    const err = await write.failure();
    expect(fake.seen.map((s) => s.kind), 'only the first attempt was sent').to.deep.equal(['write']);
    expect(isRegionDbError(err) && err.details['outcome'], String(err)).to.equal('unknown');
    expect(String((err as Error).message)).to.match(/outcome is unknown.*not found/);
    expect(isRegionDbError(err) && err.details['notApplied'], 'never "not applied": the first attempt was sent').to.equal(undefined);
  });

  it('an attempt whose route lookup outlasts the deadline sends nothing, and a write an earlier attempt sent fails as outcome unknown', async () => {
    // The table is dropped (its cached routes with it) while the first attempt waits; the next
    // attempt looks the routes up afresh, and the metasrv holds that lookup until the write's
    // deadline has passed. The lookup's own deadline lets it finish; what is left of the write's
    // is nothing, so the attempt must not be sent (before the fix it was, with the 480 ms left as
    // the attempt started, and the call ended 480 ms after the lookup).
    const held: (() => void)[] = [];
    const { hand, fake, c, backoffs } = await onHand(0, (n, answer) => (n === 1 ? answer(true) : held.push(() => answer(true))));
    const write = running(c.write(TABLE, [{ host: 'a', ts: 1 }]));
    await waitFor('the first attempt to be sent', () => fake.seen.length === 1);
    await c.dropTable(TABLE);
    hand.advance(ATTEMPT_TIMEOUT_MS); // the first attempt times out
    await waitFor('the backoff', () => backoffs() === 1);
    hand.advance(hand.nextDueMs()! - hand.nowMs()); // the backoff ends at 1,020: the next attempt starts, and looks the routes up
    await settle();
    // Released as soon as it is held (the lookup's own timeout, on the metasrv channel, is real).
    await waitFor('the lookup to be held', () => held.length > 0);
    hand.advance(DEADLINE_MS + 50 - hand.nowMs()); // held until 50 ms past the deadline
    for (const answer of held) answer();
    await waitFor('the call to end, or another attempt', () => write.settled() || fake.seen.length > 1);
    expect(fake.seen.map((s) => s.kind), 'the attempt after the held lookup sent nothing').to.deep.equal(['write']);
    const err = await write.failure();
    expect(isRegionDbError(err) && err.details['outcome'], String(err)).to.equal('unknown');
    expect(String((err as Error).message)).to.match(/deadline passed while the routes/);
    expect(hand.nowMs(), 'ended as the held lookup did').to.equal(DEADLINE_MS + 50);
  });
});
