// The per-operation deadline of a Database.Batch stream (BatchRequest.timeout_ms): the Database
// service runs each operation as a unary call with that deadline runs. A part forwarded for a
// region without a leader stops retrying at the operation's deadline, not at the server's limit
// (docs/performance.md, session 13, "Parts that outlive their caller"); an operation still running
// at it is answered DEADLINE_EXCEEDED, never left unanswered; an operation without timeout_ms (an
// older client) keeps the server's limit. The Batch handler is driven directly through a fake call;
// the region's "leader" is a scripted peer on loopback that answers NOT_LEADER without a hint, as
// a replica does during an election.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import type { CallInfo, LocalDatabase } from '../../src/datanode/router.js';
import { forwardSchema as schema, forwardRow, startBatchPeer } from '../support/grpc-fakes.js';

const row = forwardRow('x');
const write = { table: 't', region_id: '', rows: [row], client_id: 'c', request_id: '5', expect_absent: false };

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, trace: () => {}, fatal: () => {} };

/** The Database service of a node that leads nothing; its router's view of the node replaced by `local`'s fields. */
function service(local: Partial<LocalDatabase>) {
  const host = { nodeId: 1, peerCredentials: grpc.credentials.createInsecure(), log: quiet } as unknown as DatabaseHost;
  const svc = new DatabaseService(host);
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

async function answerOf(call: ReturnType<typeof batchCall>, id: string, withinMs: number): Promise<{ answer: (typeof call.answers)[number]; afterMs: number }> {
  const started = Date.now();
  for (;;) {
    const answer = call.answers.find((a) => a.id === id);
    if (answer) return { answer, afterMs: Date.now() - started };
    if (Date.now() - started > withinMs) throw new Error(`no answer to ${id} within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Database.Batch: an operation runs under its own timeout_ms (the per-operation deadline)', () => {
  let peer: grpc.Server | undefined;
  let closeService: (() => void) | undefined;
  afterEach(async () => {
    closeService?.();
    if (peer) await new Promise<void>((resolve) => peer!.tryShutdown(() => resolve()));
    peer = undefined;
    closeService = undefined;
  });

  /** The region's peer: every forwarded attempt refused NOT_LEADER without a leader hint (an election). */
  async function leaderlessPeer(): Promise<{ addr: string; attempts: { atMs: number; timeoutMs: number }[] }> {
    const attempts: { atMs: number; timeoutMs: number }[] = [];
    const started = await startBatchPeer<{ id: string; timeout_ms: number }>((req, call) => {
      attempts.push({ atMs: Date.now(), timeoutMs: req.timeout_ms });
      call.write({ id: req.id, error: { grpc_code: grpc.status.UNAVAILABLE, code: ErrorCode.NotLeader, message: 'no leader yet', details: {} } });
    });
    peer = started.server;
    return { addr: started.addr, attempts };
  }

  it('a part forwarded for a leaderless region stops at the timeout (400 ms), not after its ten attempts (~3 s), and forwards only what is left of it', async () => {
    const { addr, attempts } = await leaderlessPeer();
    const { svc } = service({ leaderAddr: async () => addr });
    closeService = () => svc.close();
    const call = batchCall();
    const sentMs = Date.now();
    svc.implementation().Batch(call as unknown as grpc.ServerDuplexStream<unknown, unknown>);
    call.emit('data', { id: '1', timeout_ms: 400, write, request: 'write' });
    const { answer, afterMs } = await answerOf(call, '1', 5000);
    // Answered by the deadline with the refusal (the router ends the part when too little is left
    // for another attempt) — what a unary call with a 400 ms deadline gets.
    expect(afterMs, 'ms to the answer (slack for a loaded machine)').to.be.at.most(400 + 300);
    expect(answer.error?.code, JSON.stringify(answer)).to.be.oneOf([ErrorCode.NotLeader, ErrorCode.DeadlineExceeded]);
    const made = attempts.length;
    expect(made, 'attempts within the 400 ms (0, 50, 150 ms: the 4th would start at 350)').to.be.within(1, 4);
    // Every forward carries what was left of the deadline: never more than the caller gave.
    for (const a of attempts) expect(a.timeoutMs, JSON.stringify(attempts)).to.be.within(1, 400);
    for (let i = 1; i < attempts.length; i++) expect(attempts[i]!.timeoutMs, 'shrinking').to.be.at.most(attempts[i - 1]!.timeoutMs);
    expect(attempts[0]!.atMs - sentMs).to.be.below(400);
    // Nothing keeps trying after the answer (before: attempts up to ~3.2 s, each client retry starting another).
    await sleep(1200);
    expect(attempts.length, 'attempts after the answer').to.equal(made);
  });

  it('an operation still running at its timeout is answered DEADLINE_EXCEEDED then (outcome unknown), not left unanswered until the server\'s limit', async () => {
    let proposed = 0;
    // This node leads the region, and the write's proposal never commits (its quorum is gone).
    const { svc } = service({
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
    const { answer, afterMs } = await answerOf(call, '2', 5000);
    expect(proposed).to.equal(1);
    expect(afterMs, 'ms to the answer (slack for a loaded machine)').to.be.within(250, 300 + 400);
    expect(answer.error?.grpc_code).to.equal(grpc.status.DEADLINE_EXCEEDED);
    expect(answer.error?.code).to.equal(ErrorCode.DeadlineExceeded);
    expect(answer.error?.message).to.match(/timeout_ms 300.*outcome is unknown/);
  });

  it('the router sees the deadline as a unary call\'s: read time + timeout_ms, capped by the server\'s limit; without timeout_ms (an older client) the server\'s limit', async () => {
    const { svc, router } = service({});
    closeService = () => svc.close();
    const seen: number[] = [];
    router.write = async (_req, info) => {
      seen.push(info.deadlineMs - Date.now());
      return { version: '1', rows_written: 1, regions: [] };
    };
    const call = batchCall();
    svc.implementation().Batch(call as unknown as grpc.ServerDuplexStream<unknown, unknown>);
    call.emit('data', { id: '3', timeout_ms: 1500, write, request: 'write' });
    call.emit('data', { id: '4', timeout_ms: 0, write, request: 'write' });
    call.emit('data', { id: '5', timeout_ms: 0xffff_ffff, write, request: 'write' });
    await answerOf(call, '5', 2000);
    expect(seen).to.have.length(3);
    expect(seen[0]).to.be.within(1000, 1500);
    expect(seen[1]).to.be.within(limits.serverCallMsMax - 500, limits.serverCallMsMax);
    expect(seen[2]).to.be.within(limits.serverCallMsMax - 500, limits.serverCallMsMax);
    expect(call.answers.map((a) => a.id).sort()).to.deep.equal(['3', '4', '5']);
  });
});
