// The client library's Database.Batch stream against a scripted gRPC server on loopback: the
// failure semantics the retry loop relies on (answers matched by id in any order, a per-attempt
// timeout, a broken stream failing what was in flight with its status, a refused stream falling
// back to unary calls).
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegionDbClient } from '../../src/client/client.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { wireTimeoutMs } from '../../src/rpc/batch-stream.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { waitUntil } from '../support/local-cluster.js';

type BatchRequest = { id: string; request: string; write?: { region_id: string; rows: { values: { v: { float64_value: number } } }[] } };
type BatchCall = grpc.ServerDuplexStream<BatchRequest, unknown>;

interface Script {
  /** Decides what the server does with each Batch request. */
  onBatch?: (call: BatchCall, req: BatchRequest) => void;
  /** Regions of the table (default 1), all served by the test server. */
  regions?: number;
  /** Refuse Batch streams with this status. */
  refuseBatch?: grpc.status;
  unaryWrites: number;
  batchStreams: number;
  /** GetRoutes answers that name no leader before the first that does (default 0). */
  leaderlessRoutes?: number;
  /** GetRoutes calls served. */
  routeLookups?: number;
}

const TABLE = 't';

async function startServer(script: Script): Promise<{ addr: string; server: grpc.Server }> {
  const { services } = loadProtos();
  const server = new grpc.Server();
  let addr = '';
  server.addService(services.Meta.service, {
    GetRoutes: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      script.routeLookups = (script.routeLookups ?? 0) + 1;
      const leaderKnown = script.routeLookups > (script.leaderlessRoutes ?? 0);
      cb(null, {
        table: {
          name: TABLE,
          table_id: 1,
          region_count: script.regions ?? 1,
          columns: [
            { name: 'host', type: 'STRING', semantic: 'TAG' },
            { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
            { name: 'v', type: 'FLOAT64', semantic: 'FIELD' },
          ],
        },
        routes: Array.from({ length: script.regions ?? 1 }, (_, n) => ({ region_id: String((1n << 32n) + BigInt(n)), peers: [{ node_id: '1', addr }], leader_node_id: leaderKnown ? '1' : '0' })),
      });
    },
  });
  server.addService(services.Database.service, {
    Write: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      script.unaryWrites++;
      cb(null, { version: '7', rows_written: 1 });
    },
    Batch: (call: BatchCall) => {
      script.batchStreams++;
      if (script.refuseBatch !== undefined) {
        call.emit('error', Object.assign(new Error('refused'), { code: script.refuseBatch, details: 'refused by the test server' }));
        return;
      }
      call.on('data', (req) => script.onBatch?.(call, req));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  addr = `127.0.0.1:${port}`;
  return { addr, server };
}

const row = (v: number) => ({ host: 'a', ts: 1, v });

describe('client: the Database.Batch stream', () => {
  const servers: grpc.Server[] = [];
  const clients: RegionDbClient[] = [];
  after(() => {
    for (const c of clients) c.close();
    for (const s of servers) s.forceShutdown();
  });

  async function setup(script: Script, options: { attemptTimeoutMs?: number; deadlineMs?: number; clientId?: string; addr?: string | readonly string[]; now?: () => number } = {}): Promise<RegionDbClient> {
    let addr = options.addr;
    if (!addr) {
      const started = await startServer(script);
      servers.push(started.server);
      addr = started.addr;
    }
    const client = new RegionDbClient({
      metasrv: addr,
      attemptTimeoutMs: options.attemptTimeoutMs ?? 2000,
      deadlineMs: options.deadlineMs ?? 5000,
      ...(options.clientId !== undefined ? { clientId: options.clientId } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    clients.push(client);
    return client;
  }

  it('every write carries the lowest request id still unfinished as completed_below (R19 D3)', async () => {
    type Marked = BatchRequest & { write: { request_id: string; completed_below: string } };
    const seen: Marked[] = [];
    const held = new Map<string, () => void>();
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        const r = req as Marked;
        seen.push(r);
        held.set(r.write.request_id, () => call.write({ id: req.id, write: { version: '1', rows_written: 1 } }));
      },
    };
    const client = await setup(script);
    const first = client.write(TABLE, [row(1)]);
    await waitUntil('the first write arrives', 2000, async () => (seen.length === 1 ? true : undefined));
    const second = client.write(TABLE, [row(2)]);
    await waitUntil('the second write arrives', 2000, async () => (seen.length === 2 ? true : undefined));
    const third = client.write(TABLE, [row(3)]);
    await waitUntil('the third write arrives', 2000, async () => (seen.length === 3 ? true : undefined));
    const [a, b, c] = seen.map((r) => ({ id: BigInt(r.write.request_id), mark: BigInt(r.write.completed_below) }));
    expect(a!.mark, 'alone in flight: its own id').to.equal(a!.id);
    expect(b!.id > a!.id && c!.id > b!.id, 'ids grow').to.equal(true);
    expect([b!.mark, c!.mark], 'the first is unfinished: the later ones carry its id').to.deep.equal([a!.id, a!.id]);
    held.get(String(a!.id))!();
    await first;
    const fourth = client.write(TABLE, [row(4)]);
    await waitUntil('the fourth write arrives', 2000, async () => (seen.length === 4 ? true : undefined));
    expect(BigInt(seen[3]!.write.completed_below), 'the first finished: the second is now the lowest unfinished').to.equal(b!.id);
    for (const release of held.values()) release();
    await Promise.all([second, third, fourth]);
    const fifth = client.write(TABLE, [row(5)]);
    await waitUntil('the fifth write arrives', 2000, async () => (seen.length === 5 ? true : undefined));
    expect(seen[4]!.write.completed_below, 'nothing else unfinished: its own id').to.equal(seen[4]!.write.request_id);
    held.get(seen[4]!.write.request_id)!();
    await fifth;
  });

  it('routes in use are looked up again in the background every 5 s, so a moved leader is learned though forwarding hides it', async () => {
    // The client measures the routes' age on its monotonic clock, performance.now(), which the
    // test holds still and moves by hand: the refresh is checked at 4,999 ms and at 5,000 ms of
    // age exactly, with no real wait (grpc-js and mocha do not read performance.now; timers run).
    // The held clock starts at a whole number of ms: every time below is then an integer, and
    // the client's age, (start + 5000) - start, is exactly 5000. From a fractional start, as
    // performance.now() gives, the sum is rounded to the nearest double and the age can come out
    // one ulp short — 4999.999999999998 from a start of 12667.09052 — where the client rightly
    // waits for the next write (about one start in eight between 2 and 20 s: a flaky test).
    const realNow = performance.now;
    let nowMs = Math.ceil(realNow.call(performance));
    performance.now = () => nowMs;
    try {
      const script: Script = { unaryWrites: 0, batchStreams: 0, onBatch: (call, req) => call.write({ id: req.id, write: { version: '1', rows_written: 1 } }) };
      const client = await setup(script);
      await client.write(TABLE, [row(1)]);
      expect(script.routeLookups).to.equal(1);
      const fetchedMs = (client as unknown as { tables: Map<string, { fetchedMs: number }> }).tables.get(TABLE)!.fetchedMs;
      expect(fetchedMs, 'the routes were fetched on the held clock').to.equal(nowMs);
      nowMs = fetchedMs + 4999;
      await client.write(TABLE, [row(2)]);
      await new Promise((resolve) => setTimeout(resolve, 100)); // a lookup started in the background would be in by now
      expect(script.routeLookups, 'not looked up again before 5 s').to.equal(1);
      nowMs = fetchedMs + 5000;
      await client.write(TABLE, [row(3)]);
      await waitUntil('the background lookup', 5000, async () => (script.routeLookups === 2 ? true : undefined));
      await client.write(TABLE, [row(4)]);
      expect(script.routeLookups, 'looked up again, once').to.equal(2);
    } finally {
      performance.now = realNow;
    }
  });

  it('routes that name no leader (fetched before the first election) are looked up again, at most once a second, until they do', async () => {
    const script: Script = { unaryWrites: 0, batchStreams: 0, leaderlessRoutes: 1, onBatch: (call, req) => call.write({ id: req.id, write: { version: '1', rows_written: 1 } }) };
    const client = await setup(script);
    const leaderOf = () => (client as unknown as { tables: Map<string, { routes: Map<string, { leaderAddr?: string }> }> }).tables.get(TABLE)?.routes.values().next().value?.leaderAddr;
    await client.write(TABLE, [row(1)]);
    const deadline = performance.now() + 5000;
    let writes = 1;
    while (leaderOf() === undefined && performance.now() < deadline) {
      await client.write(TABLE, [row(writes)]);
      writes++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(leaderOf(), 'the client learned the leader').to.be.a('string');
    const lookups = script.routeLookups!;
    for (let i = 0; i < 20; i++) await client.write(TABLE, [row(i)]);
    expect(script.routeLookups, 'no more lookups once the leader is known').to.equal(lookups);
    expect(lookups, `${writes} writes while no leader was known`).to.be.at.most(2 + Math.ceil(writes / 40));
  });

  it('answers are matched by id, whatever their order', async () => {
    const held: { call: BatchCall; id: string; v: number }[] = [];
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        held.push({ call, id: req.id, v: req.write!.rows[0]!.values.v.float64_value });
        if (held.length < 3) return;
        // Answer in reverse order; the version tells each write which answer it got.
        for (const h of held.reverse()) h.call.write({ id: h.id, write: { version: String(h.v * 10), rows_written: 1 } });
      },
    };
    const client = await setup(script);
    const results = await Promise.all([1, 2, 3].map((v) => client.write(TABLE, [row(v)])));
    expect(results.map((r) => r[0]!.version)).to.deep.equal([10, 20, 30]);
    expect(script.batchStreams, 'one stream for all three').to.equal(1);
    expect(script.unaryWrites).to.equal(0);
  });

  it('every operation carries its attempt timeout as BatchRequest.timeout_ms (the server gives up when the attempt does), retries included', async () => {
    const seen: { kind: string; timeoutMs: number }[] = [];
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        seen.push({ kind: req.request, timeoutMs: (req as unknown as { timeout_ms: number }).timeout_ms });
        // The first write attempt is refused (no leader yet): the retry must carry it too.
        if (req.request === 'write' && seen.length === 1) {
          call.write({ id: req.id, error: { grpc_code: grpc.status.UNAVAILABLE, code: 'NOT_LEADER', message: 'no leader yet', details: {} } });
          return;
        }
        if (req.request === 'write') call.write({ id: req.id, write: { version: '3', rows_written: 1 } });
        else if (req.request === 'delete') call.write({ id: req.id, delete: { version: '4' } });
        else call.write({ id: req.id, get: { found: false, version: '0' } });
      },
    };
    const client = await setup(script, { attemptTimeoutMs: 1234 });
    await client.write(TABLE, [row(1)]);
    await client.delete(TABLE, [{ host: 'a', ts: 1 }]);
    await client.get(TABLE, { host: 'a', ts: 1 });
    expect(seen).to.deep.equal([
      { kind: 'write', timeoutMs: 1234 },
      { kind: 'write', timeoutMs: 1234 },
      { kind: 'delete', timeoutMs: 1234 },
      { kind: 'get', timeoutMs: 1234 },
    ]);
  });

  it('BatchStream: the wait sent as timeout_ms is whole ms rounded up, never 0 (which means the server\'s limit), at most uint32', () => {
    expect([wireTimeoutMs(1234), wireTimeoutMs(0.2), wireTimeoutMs(0), wireTimeoutMs(-5), wireTimeoutMs(99.01), wireTimeoutMs(2 ** 40), wireTimeoutMs(Number.POSITIVE_INFINITY)]).to.deep.equal([
      1234, 1, 1, 1, 100, 0xffff_ffff, 0,
    ]);
  });

  it("a wall-clock step back during the retries does not stretch the operation's deadline (the budget is monotonic)", async () => {
    const realNow = Date.now;
    let stepped = false;
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        if (!stepped) {
          stepped = true;
          Date.now = () => realNow() - 3_600_000; // NTP steps the client host's clock back an hour
        }
        call.write({ id: req.id, error: { grpc_code: grpc.status.UNAVAILABLE, code: 'UNAVAILABLE', message: 'no leader yet', details: {} } });
      },
    };
    const client = await setup(script, { deadlineMs: 1500, attemptTimeoutMs: 500 });
    const started = performance.now();
    try {
      const err = await client.write(TABLE, [row(1)]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRegionDbError(err), String(err)).to.equal(true);
      expect(performance.now() - started, 'the write gave up around its 1.5 s deadline').to.be.below(5000);
    } finally {
      Date.now = realNow;
    }
  });

  it('a write refused by every attempt until its deadline (backpressure) is reported as not applied, with the refusal\'s code; one that may have applied stays unknown', async () => {
    const refuse: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) =>
        call.write({ id: req.id, error: { grpc_code: grpc.status.RESOURCE_EXHAUSTED, code: 'RESOURCE_EXHAUSTED', message: 'region holds 2000000 bytes in memtables (limit 1048576)', details: {} } }),
    };
    const refused = await (await setup(refuse, { deadlineMs: 800, attemptTimeoutMs: 300 })).write(TABLE, [row(1)]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(refused) && refused.code, String(refused)).to.equal(ErrorCode.ResourceExhausted);
    expect(isRegionDbError(refused) && refused.details['notApplied']).to.equal('true');
    expect(String((refused as Error).message)).to.match(/was not applied.*memtables/);
    // The first attempt unanswered (it may have been applied), the rest refused: unknown.
    let first = true;
    const timeoutThenRefuse: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        if (first) {
          first = false;
          return; // no answer: the attempt times out
        }
        call.write({ id: req.id, error: { grpc_code: grpc.status.RESOURCE_EXHAUSTED, code: 'RESOURCE_EXHAUSTED', message: 'memtables full', details: {} } });
      },
    };
    const unknown = await (await setup(timeoutThenRefuse, { deadlineMs: 1200, attemptTimeoutMs: 300 })).write(TABLE, [row(1)]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(unknown) && unknown.code, String(unknown)).to.equal(ErrorCode.DeadlineExceeded);
    expect(String((unknown as Error).message)).to.match(/outcome is unknown/);
  });

  it('an error item becomes the RegionDbError a unary call would have given', async () => {
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) =>
        call.write({ id: req.id, error: { grpc_code: grpc.status.FAILED_PRECONDITION, code: 'CONDITION_FAILED', message: 'condition failed: version 4', details: { currentVersion: '4' } } }),
    };
    const client = await setup(script);
    const err = await client.write(TABLE, [row(1)], { expectVersion: 3 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err) && err.code).to.equal(ErrorCode.ConditionFailed);
    expect(isRegionDbError(err) && err.details['currentVersion']).to.equal('4');
  });

  it('an attempt with no answer times out and is retried under the same request id; the late answer is ignored', async () => {
    const seen: { id: string; requestId: string }[] = [];
    let lateAnswerSent = false;
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        seen.push({ id: req.id, requestId: (req.write as unknown as { request_id: string }).request_id });
        if (seen.length === 1) {
          // The first attempt is answered only after the client gave up on it.
          setTimeout(() => {
            call.write({ id: req.id, write: { version: '1', rows_written: 1 } });
            lateAnswerSent = true;
          }, 400);
          return;
        }
        call.write({ id: req.id, write: { version: '2', rows_written: 1 } });
      },
    };
    const client = await setup(script, { attemptTimeoutMs: 150 });
    const [result] = await client.write(TABLE, [row(1)]);
    expect(result!.version).to.equal(2);
    expect(seen).to.have.length(2);
    expect(seen[0]!.id).to.not.equal(seen[1]!.id);
    expect(seen[0]!.requestId, 'a retry keeps its request id (applied at most once)').to.equal(seen[1]!.requestId);
    // The late answer must arrive and be dropped without a throw. Once it is sent, one more
    // operation on the same stream (ordered) is answered after it, so it has been handled.
    await waitUntil('the late answer to be sent', 5000, async () => (lateAnswerSent ? true : undefined));
    const [after] = await client.write(TABLE, [row(2)]);
    expect(after!.version).to.equal(2);
  });

  it('a stream that breaks fails what is in flight with its status; the next attempt opens a new stream', async () => {
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        if (script.batchStreams === 1) {
          call.emit('error', Object.assign(new Error('gone'), { code: grpc.status.UNAVAILABLE, details: 'going away' }));
          return;
        }
        call.write({ id: req.id, write: { version: '5', rows_written: 1 } });
      },
    };
    const client = await setup(script);
    const [result] = await client.write(TABLE, [row(1)]);
    expect(result!.version).to.equal(5);
    expect(script.batchStreams).to.equal(2);
  });

  for (const refusal of [grpc.status.UNIMPLEMENTED, grpc.status.PERMISSION_DENIED]) {
    it(`a stream refused with ${grpc.status[refusal]} makes the client use unary calls`, async () => {
      const script: Script = { unaryWrites: 0, batchStreams: 0, refuseBatch: refusal };
      const client = await setup(script);
      const [first] = await client.write(TABLE, [row(1)]);
      const [second] = await client.write(TABLE, [row(2)]);
      expect(first!.version).to.equal(7);
      expect(second!.version).to.equal(7);
      expect(script.unaryWrites).to.equal(2);
      expect(script.batchStreams, 'not asked again').to.equal(1);
    });
  }

  it('two instances given one clientId never send the same (client_id, request_id): writes and deletes', async () => {
    const seen: string[] = [];
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        const op = (req as unknown as Record<string, { client_id: string; request_id: string }>)[req.request]!;
        seen.push(`${op.client_id}/${op.request_id}`);
        call.write({ id: req.id, [req.request]: req.request === 'write' ? { version: '3', rows_written: 1 } : { version: '3' } });
      },
    };
    const first = await setup(script, { clientId: 'shared' });
    const second = await setup(script, { clientId: 'shared', addr: first.options.metasrv });
    for (const client of [first, second, first, second]) {
      await client.write(TABLE, [row(1)]);
      await client.delete(TABLE, [{ host: 'a', ts: 1 }]);
    }
    expect(seen).to.have.length(8);
    expect(new Set(seen).size, `identities sent: ${seen.join(', ')}`).to.equal(8);
    expect(seen.every((s) => s.startsWith('shared')), 'the given clientId still names the client').to.equal(true);
  });

  it('a request id refused as too old on its only attempt is sent again under a new id above the region\'s floor', async () => {
    const floor = Date.now() * 1000 + 5_000_000_000; // the region forgot ids up to ~1.4 h ahead of this clock
    const seen: number[] = [];
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        const requestId = Number((req.write as unknown as { request_id: string }).request_id);
        seen.push(requestId);
        if (requestId < floor) {
          call.write({ id: req.id, error: { grpc_code: grpc.status.ABORTED, code: 'REQUEST_TOO_OLD', message: 'too old', details: { oldestKnownRequestId: String(floor) } } });
          return;
        }
        call.write({ id: req.id, write: { version: '9', rows_written: 1 } });
      },
    };
    const client = await setup(script);
    const [first] = await client.write(TABLE, [row(1)]);
    expect(first!.version).to.equal(9);
    await client.write(TABLE, [row(2)]);
    expect(seen, 'refused once, then every id at or above the floor').to.have.length(3);
    expect(seen[0]!).to.be.below(floor);
    expect(seen[1]!).to.be.at.least(floor);
    expect(seen[2]!).to.be.greaterThan(seen[1]!);
  });

  it('a write refused near its deadline is not sent again with a sliver of time: it stays "not applied" instead of becoming unknown', async () => {
    for (const withHint of [true, false]) {
      let writes = 0;
      let hint = '';
      // The client's deadline clock is moved by hand (its timers stay real, and far off): the
      // refusal arrives with exactly 40 ms of the deadline left, whatever the machine's load.
      let nowMs = 0;
      const script: Script = {
        unaryWrites: 0,
        batchStreams: 0,
        onBatch: (call, req) => {
          if (req.request !== 'write') return;
          writes++;
          if (writes === 1) call.write({ id: req.id, write: { version: '3', rows_written: 1 } }); // warms the routes and the stream
          if (writes !== 2) return; // a resend is never answered: it would time out, outcome unknown
          const refusal = { grpc_code: grpc.status.UNAVAILABLE, code: 'NOT_LEADER', message: 'not the leader', details: withHint ? { leaderAddr: hint } : {} };
          const timeoutMs = Number((req as unknown as { timeout_ms: number }).timeout_ms);
          expect(timeoutMs, 'the attempt was sent with the whole deadline').to.equal(1000);
          nowMs += timeoutMs - 40; // refused 40 ms before the attempt's own timeout
          call.write({ id: req.id, error: refusal });
        },
      };
      const client = await setup(script, { attemptTimeoutMs: 2000, deadlineMs: 1000, now: () => nowMs });
      const other = await startServer(script); // the hinted leader: a retry there would be followed at once
      servers.push(other.server);
      hint = other.addr;
      await client.write(TABLE, [row(1)]);
      const err = await client.write(TABLE, [row(2)]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRegionDbError(err) && err.details['notApplied'], `${withHint ? 'hint' : 'no hint'}: ${String(err)}`).to.equal('true');
      expect(writes, withHint ? 'hint' : 'no hint').to.equal(2);
    }
  });

  it('the new id after REQUEST_TOO_OLD runs within the first id\'s deadline, not a fresh one', async () => {
    const floor = Date.now() * 1000 + 5_000_000_000;
    const timeouts: number[] = [];
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        timeouts.push(Number((req as unknown as { timeout_ms: number }).timeout_ms));
        if (timeouts.length === 1) {
          // Refused as too old, 600 ms into the client's 2,000 ms deadline: the client's clock is
          // moved by hand (its timers stay real, and far off), so the refusal arrives with
          // exactly 1,400 ms left, whatever the machine's load.
          const tooOld = { grpc_code: grpc.status.ABORTED, code: 'REQUEST_TOO_OLD', message: 'too old', details: { oldestKnownRequestId: String(floor) } };
          nowMs += 600;
          call.write({ id: req.id, error: tooOld });
          return;
        }
        call.write({ id: req.id, write: { version: '9', rows_written: 1 } });
      },
    };
    let nowMs = 0;
    const client = await setup(script, { attemptTimeoutMs: 2000, deadlineMs: 2000, now: () => nowMs });
    await client.write(TABLE, [row(1)]);
    expect(timeouts, 'refused once, sent once more').to.have.length(2);
    // The second id gets what was left of the call's deadline, 1,400 ms, where a fresh deadline
    // would give it the full 2,000 ms again.
    expect(timeouts, 'timeouts sent').to.deep.equal([2000, 1400]);
  });

  it('a write refused as too old with a sliver of its deadline left is not sent again under a new id: "not applied"', async () => {
    const floor = Date.now() * 1000 + 5_000_000_000;
    let writes = 0;
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        if (req.request !== 'write') return;
        writes++;
        if (writes === 1) call.write({ id: req.id, write: { version: '3', rows_written: 1 } }); // warms the routes and the stream
        if (writes !== 2) return; // a new id is never answered: it would time out, outcome unknown
        // Refused as too old with exactly 40 ms of the deadline left: the client's deadline clock
        // is moved by hand (its timers stay real, and far off). On a real timer 40 ms before the
        // attempt's own, a loaded machine fired the attempt's timer first (T14).
        const tooOld = { grpc_code: grpc.status.ABORTED, code: 'REQUEST_TOO_OLD', message: 'too old', details: { oldestKnownRequestId: String(floor) } };
        const timeoutMs = Number((req as unknown as { timeout_ms: number }).timeout_ms);
        expect(timeoutMs, 'the attempt was sent with the whole deadline').to.equal(1000);
        nowMs += timeoutMs - 40;
        call.write({ id: req.id, error: tooOld });
      },
    };
    let nowMs = 0;
    const client = await setup(script, { attemptTimeoutMs: 2000, deadlineMs: 1000, now: () => nowMs });
    await client.write(TABLE, [row(1)]);
    const err = await client.write(TABLE, [row(2)]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err) && err.details['notApplied'], String(err)).to.equal('true');
    expect(writes, 'no new id sent').to.equal(2);
  });

  it('REQUEST_TOO_OLD after an earlier attempt of the same id reaches the caller: that outcome is unknown, nothing is re-sent', async () => {
    const seen: string[] = [];
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        seen.push((req.write as unknown as { request_id: string }).request_id);
        if (seen.length === 1) return; // the first attempt times out: it may have been applied
        call.write({ id: req.id, error: { grpc_code: grpc.status.ABORTED, code: 'REQUEST_TOO_OLD', message: 'too old', details: { oldestKnownRequestId: '5' } } });
      },
    };
    const client = await setup(script, { attemptTimeoutMs: 150 });
    const err = await client.write(TABLE, [row(1)]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err) && err.code, String(err)).to.equal(ErrorCode.RequestTooOld);
    expect(seen).to.have.length(2);
    expect(seen[1], 'the retry kept its id').to.equal(seen[0]);
  });

  it('batchStream: false makes one unary call per operation', async () => {
    const script: Script = { unaryWrites: 0, batchStreams: 0 };
    const { addr, server } = await startServer(script);
    servers.push(server);
    const client = new RegionDbClient({ metasrv: addr, batchStream: false });
    clients.push(client);
    await client.write(TABLE, [row(1)]);
    expect(script.unaryWrites).to.equal(1);
    expect(script.batchStreams).to.equal(0);
  });

  it('a write whose first attempt may have applied is reported as outcome unknown, even when a later attempt is refused outright', async () => {
    let attempts = 0;
    const script: Script = {
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        attempts++;
        const error =
          attempts === 1
            ? { grpc_code: grpc.status.UNAVAILABLE, code: 'UNAVAILABLE', message: 'leadership lost; the write may or may not have been applied', details: {} }
            : { grpc_code: grpc.status.NOT_FOUND, code: 'NOT_FOUND', message: 'region is no longer hosted here', details: {} };
        call.write({ id: req.id, error });
      },
    };
    const client = await setup(script);
    const err = await client.write(TABLE, [row(1)]).then(
      () => expect.fail('no attempt succeeded'),
      (e: unknown) => e,
    );
    expect(attempts, 'the client retried after the unknown outcome').to.equal(2);
    expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/outcome is unknown/);
    expect((err as { details: Record<string, string> }).details['outcome']).to.equal('unknown');
  });

  it('a write across regions that fails in some says, region by region, where it applied', async () => {
    const failing = String((1n << 32n) + 1n);
    const script: Script = {
      regions: 2,
      unaryWrites: 0,
      batchStreams: 0,
      onBatch: (call, req) => {
        if (req.write?.region_id === failing) call.write({ id: req.id, error: { grpc_code: grpc.status.INVALID_ARGUMENT, code: 'INVALID_ARGUMENT', message: 'refused by the test server', details: {} } });
        else call.write({ id: req.id, write: { version: '3', rows_written: 1 } });
      },
    };
    const client = await setup(script);
    const rows = Array.from({ length: 20 }, (_, i) => ({ host: `h${i}`, ts: 1, v: i }));
    const err = await client.write(TABLE, rows).then(
      () => expect.fail('one region refused'),
      (e: unknown) => e,
    );
    expect(isRegionDbError(err), String(err)).to.equal(true);
    const details = (err as { details: Record<string, string> }).details;
    expect(details['partial']).to.equal('true');
    expect(details['failedRegions']).to.equal(failing);
    expect(details['appliedRegions']).to.equal(String(1n << 32n));
    expect((err as Error).message).to.match(/partly failed: applied in 4294967296; region 4294967297: INVALID_ARGUMENT/);
  });
});
