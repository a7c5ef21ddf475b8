// The per-operation deadline of a Database.Batch stream (BatchRequest.timeout_ms): the Database
// service runs each operation as a unary call with that deadline runs. A part forwarded for a
// region without a leader stops retrying at the operation's deadline, not at the server's limit
// (docs/performance.md, session 13, "Parts that outlive their caller"); an operation still running
// at it is answered DEADLINE_EXCEEDED, never left unanswered; an operation without timeout_ms (an
// older client) keeps the server's limit. The Batch handler is driven directly through a fake call;
// the region's "leader" is a scripted peer on loopback that answers NOT_LEADER without a hint, as
// a replica does during an election. The service (its Batch deadlines and its Router's backoffs
// and waits) runs on a hand-moved clock, so each time asserted is exact on that clock; real time
// only carries the messages to and from the peer over loopback, and the test waits for them.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import type { CallInfo, LocalDatabase } from '../../src/datanode/router.js';
import { forwardSchema as schema, forwardRow, startBatchPeer } from '../support/grpc-fakes.js';
import { HandClock, settle } from '../fixtures/hand-clock.js';

const row = forwardRow('x');
const write = { table: 't', region_id: '', rows: [row], client_id: 'c', request_id: '5', expect_absent: false };

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, trace: () => {}, fatal: () => {} };

/** The Database service of a node that leads nothing, on `clock`; its router's view of the node replaced by `local`'s fields. */
function service(clock: HandClock, local: Partial<LocalDatabase>) {
  const host = { nodeId: 1, peerCredentials: grpc.credentials.createInsecure(), log: quiet } as unknown as DatabaseHost;
  const svc = new DatabaseService(host, clock);
  const internals = svc as unknown as { router: { local: LocalDatabase; write(req: unknown, info: CallInfo): Promise<unknown> } };
  Object.assign(internals.router.local, { schemaOf: async () => schema, leads: () => false, ...local });
  return { svc, router: internals.router };
}

/** A Batch call as grpc-js hands it to the handler: requests in with `send`, answers out in `answers`. */
function batchCall() {
  const call = Object.assign(new EventEmitter(), {
    metadata: new grpc.Metadata(),
    cancelled: false,
    answers: [] as { id: string; error?: { grpc_code: number; code: string; message: string }; write?: unknown }[],
    write(message: unknown) {
      call.answers.push(message as (typeof call.answers)[number]);
      return true;
    },
    end() {},
  });
  return call;
}

/** Waits for what real I/O brings (a message over loopback): polls `cond`, failing after 10 s of wall time (a stuck test, not a slow one). */
async function arrival(cond: () => boolean, what: string): Promise<void> {
  const giveUpAtMs = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > giveUpAtMs) throw new Error(`${what}: not within 10 s`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('Database.Batch: an operation runs under its own timeout_ms (the per-operation deadline)', () => {
  let peer: grpc.Server | undefined;
  let closeService: (() => void) | undefined;
  afterEach(async () => {
    closeService?.();
    if (peer) await new Promise<void>((resolve) => peer!.tryShutdown(() => resolve()));
    peer = undefined;
    closeService = undefined;
  });

  /** The region's peer: every forwarded attempt refused NOT_LEADER without a leader hint (an election); `atMs` on `clock`. */
  async function leaderlessPeer(clock: HandClock): Promise<{ addr: string; attempts: { atMs: number; timeoutMs: number }[] }> {
    const attempts: { atMs: number; timeoutMs: number }[] = [];
    const started = await startBatchPeer<{ id: string; timeout_ms: number }>((req, call) => {
      attempts.push({ atMs: clock.nowMs(), timeoutMs: req.timeout_ms });
      call.write({ id: req.id, error: { grpc_code: grpc.status.UNAVAILABLE, code: ErrorCode.NotLeader, message: 'no leader yet', details: {} } });
    });
    peer = started.server;
    return { addr: started.addr, attempts };
  }

  it('a part forwarded for a leaderless region stops at the timeout (400 ms), not after its ten attempts (~3 s), and forwards only what is left of it', async () => {
    const clock = new HandClock();
    const { addr, attempts } = await leaderlessPeer(clock);
    const { svc } = service(clock, { leaderAddr: async () => addr });
    closeService = () => svc.close();
    const call = batchCall();
    const t0 = clock.nowMs();
    svc.implementation().Batch(call as unknown as grpc.ServerDuplexStream<unknown, unknown>);
    call.emit('data', { id: '1', timeout_ms: 400, write, request: 'write' });
    const answered = () => call.answers.some((a) => a.id === '1');
    // Each attempt: it reaches the peer and is refused (real I/O, waited for); while it is out the
    // earliest timer is its own wait, due at its timeout; once the refusal is in, the backoff is
    // (or the router answers). The clock then moves to that timer, and the next attempt goes out.
    for (let n = 1; n <= 10 && !answered(); n++) {
      await arrival(() => answered() || (attempts.length === n && clock.nextDueMs() !== attempts[n - 1]!.atMs + attempts[n - 1]!.timeoutMs), `attempt ${n} refused, or the answer`);
      if (!answered()) clock.advance(clock.nextDueMs()! - clock.nowMs());
    }
    const answer = call.answers.find((a) => a.id === '1')!;
    // Answered when too little was left for another attempt (the router ends the part) with the
    // refusal — what a unary call with a 400 ms deadline gets.
    expect(clock.nowMs() - t0, 'ms to the answer').to.equal(350);
    expect(answer.error?.code, JSON.stringify(answer)).to.equal(ErrorCode.NotLeader);
    // Attempts after backoffs of 50, 100 and 200 ms (the last with 50 ms left, the resend budget),
    // each carrying what was left of the deadline: never more than the caller gave.
    expect(attempts.map((a) => a.atMs - t0), 'attempts (ms)').to.deep.equal([0, 50, 150, 350]);
    expect(attempts.map((a) => a.timeoutMs), 'timeout_ms forwarded').to.deep.equal([400, 350, 250, 50]);
    // Nothing keeps trying after the answer (before: attempts up to ~3.2 s, each client retry
    // starting another): no timer is left that could start one, and 1200 ms later none was made.
    expect(clock.nextDueMs(), 'timers pending after the answer').to.equal(undefined);
    clock.advance(1200);
    await settle();
    expect(attempts.length, 'attempts after the answer').to.equal(4);
  });

  it('an operation still running at its timeout is answered DEADLINE_EXCEEDED then (outcome unknown), not left unanswered until the server\'s limit', async () => {
    const clock = new HandClock();
    let proposed = 0;
    // This node leads the region, and the write's proposal never commits (its quorum is gone).
    const { svc } = service(clock, {
      leads: () => true,
      write: () => {
        proposed++;
        return new Promise<never>(() => {});
      },
    });
    closeService = () => svc.close();
    const call = batchCall();
    svc.implementation().Batch(call as unknown as grpc.ServerDuplexStream<unknown, unknown>);
    call.emit('data', { id: '2', timeout_ms: 300, write, request: 'write' });
    await settle();
    expect(proposed).to.equal(1);
    clock.advance(299);
    await settle();
    expect(call.answers, 'answers 1 ms before the timeout').to.deep.equal([]);
    clock.advance(1);
    await settle();
    expect(call.answers.map((a) => a.id), 'answers at the timeout').to.deep.equal(['2']);
    const answer = call.answers[0]!;
    expect(answer.error?.grpc_code).to.equal(grpc.status.DEADLINE_EXCEEDED);
    expect(answer.error?.code).to.equal(ErrorCode.DeadlineExceeded);
    expect(answer.error?.message).to.match(/timeout_ms 300.*outcome is unknown/);
  });

  it('the router sees the deadline as a unary call\'s: read time + timeout_ms, capped by the server\'s limit; without timeout_ms (an older client) the server\'s limit', async () => {
    const clock = new HandClock();
    const { svc, router } = service(clock, {});
    closeService = () => svc.close();
    const seen: number[] = [];
    router.write = async (_req, info) => {
      seen.push(info.deadlineMs - clock.nowMs());
      return { version: '1', rows_written: 1, regions: [] };
    };
    const call = batchCall();
    svc.implementation().Batch(call as unknown as grpc.ServerDuplexStream<unknown, unknown>);
    call.emit('data', { id: '3', timeout_ms: 1500, write, request: 'write' });
    call.emit('data', { id: '4', timeout_ms: 0, write, request: 'write' });
    call.emit('data', { id: '5', timeout_ms: 0xffff_ffff, write, request: 'write' });
    await settle();
    expect(seen).to.deep.equal([1500, limits.serverCallMsMax, limits.serverCallMsMax]);
    expect(call.answers.map((a) => a.id).sort()).to.deep.equal(['3', '4', '5']);
  });
});
