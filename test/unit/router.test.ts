// src/datanode/router.ts without a network: a LocalDatabase whose regions are all led "here"
// and whose per-region answers the test scripts. What a multi-region write reports when a part
// fails, which failures are retried, and the whole-table scan's merge order and limit.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { compareBytes, encodePrimaryKey, makeRegionId, regionNumberOf } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { type CheckedRows, type LocalDatabase, type RegionOutcome, Router, type ScanChunk, type WriteRequest } from '../../src/datanode/router.js';
import { validateRow } from '../../src/engine/schema.js';
import { type ProtoRow, type ProtoValue, fromProtoRow, toProtoRow } from '../../src/rpc/values.js';
import type { WriteResponse } from '../../src/rpc/generated/index.js';
import { tableDroppedError, validatedOnce } from '../../src/datanode/database-service.js';
import { HandClock, settle, tickBy, ticksUntil, whileTicking } from '../fixtures/hand-clock.js';

const schema: TableSchema = {
  name: 't',
  tableId: 7,
  regionCount: 4,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'v', type: 'int64', semantic: 'field' },
  ],
};
const rowAt = (i: number): Row => ({ host: `h${i % 23}`, ts: 1000 + i, v: i });
const proto = (r: Row): ProtoRow => {
  const p = toProtoRow(schema, r);
  for (const v of Object.values(p.values)) v.kind = Object.keys(v)[0] as ProtoValue['kind']; // as proto-loader decodes
  return p;
};
const regionOf = (i: number) => makeRegionId(schema.tableId, regionNumberOf(schema, rowAt(i)));
const FAR = () => ({ forwarded: false, deadlineMs: Date.now() + 30_000 });
/** Hand-clock ms per tick: every backoff (50, 100, 200, 400, 500 ms) and delay in these tests is whole ticks. */
const TICK_MS = 50;
/** The caller's deadline 30 s ahead on `clock` (a Router on a hand clock). */
const farOn = (clock: HandClock) => ({ forwarded: false, deadlineMs: clock.nowMs() + 30_000 });

/** A local database where `answer(regionId, attempt)` decides each write attempt. */
function fakeLocal(answer: (regionId: string, attempt: number) => Promise<WriteResponse>, rowsByRegion = new Map<string, Row[]>()) {
  const attempts = new Map<string, number>();
  const local: LocalDatabase = {
    nodeId: 1,
    credentials: grpc.credentials.createInsecure(),
    schemaOf: async () => schema,
    leads: () => true,
    leaderAddr: async () => undefined,
    write: async (req) => {
      const n = (attempts.get(req.region_id!) ?? 0) + 1;
      attempts.set(req.region_id!, n);
      for (const r of req.rows) expect(regionOf(fromProtoRow(r, 'r')['v'] as number), 'a part holds only its region').to.equal(req.region_id);
      return answer(req.region_id!, n);
    },
    delete: async () => ({ version: '1' }),
    get: async () => ({ found: false }),
    scanRegion: async (req, write) => {
      for (const r of (rowsByRegion.get(req.region_id!) ?? []).slice(0, Number(req.limit ?? 0) || undefined)) {
        await write({ rows: [toProtoRow(schema, r)], versions: ['1'] }); // as this node's scans build them (no `kind`)
      }
    },
  };
  return { local, attempts };
}

function spanning(requestId: string): WriteRequest {
  return { table: 't', rows: Array.from({ length: 40 }, (_, i) => proto(rowAt(i))), client_id: 'c', request_id: requestId };
}

async function failure(p: Promise<unknown>): Promise<RegionDbError> {
  try {
    await p;
  } catch (err) {
    if (isRegionDbError(err)) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe('router: any node accepts any rows (issue 18)', () => {
  const regions = Array.from({ length: 4 }, (_, n) => makeRegionId(schema.tableId, n));

  it('splits a write spanning every region into one part per region and reports each', async () => {
    const { local, attempts } = fakeLocal(async (regionId) => ({ version: String(10 + regions.indexOf(regionId)), rows_written: 0 }));
    const res = (await new Router(local).write(spanning('5'), FAR())) as { version: string; rows_written: number; regions: RegionOutcome[] };
    expect(res.rows_written).to.equal(40);
    expect(res.version).to.equal('13');
    expect(res.regions.map((r) => [r.region_id, r.outcome, r.version])).to.deep.equal(regions.map((id, n) => [id, 'OUTCOME_APPLIED', String(10 + n)]));
    expect(res.regions.reduce((n, r) => n + r.rows, 0)).to.equal(40);
    expect([...attempts.values()]).to.deep.equal([1, 1, 1, 1]);
  });

  it('a part whose attempt may have applied is UNKNOWN (retried under its request id), never NOT_APPLIED, and the status says unavailable', async () => {
    const unknownRegion = regions[2]!;
    const { local, attempts } = fakeLocal(async (regionId, attempt) => {
      if (regionId !== unknownRegion) return { version: '3', rows_written: 0 };
      if (attempt === 1) throw new RegionDbError(ErrorCode.Unavailable, 'leadership lost; the write may or may not have been applied');
      throw new RegionDbError(ErrorCode.NotLeader, 'not the leader'); // later attempts refused: still unknown overall
    });
    // Its ten attempts span 3.25 s of backoffs: on a hand clock, so a slow machine cannot run the
    // 30 s deadline out first (and the test takes no wall time).
    const clock = new HandClock();
    const err = await failure(whileTicking(clock, TICK_MS, new Router(local, clock).write(spanning('6'), farOn(clock)), 'the write', 100));
    expect(err.code).to.equal(ErrorCode.Unavailable);
    const outcomes = JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[];
    expect(outcomes.map((o) => o.outcome)).to.deep.equal(regions.map((id) => (id === unknownRegion ? 'OUTCOME_UNKNOWN' : 'OUTCOME_APPLIED')));
    expect(attempts.get(unknownRegion)).to.equal(10);
    expect(err.message).to.match(/3 applied, 1 unknown, 0 not applied/);
  });

  it('REQUEST_TOO_OLD ends a part (UNKNOWN, not resent): after an attempt that may have applied its error is UNAVAILABLE (never REQUEST_TOO_OLD, which a client sends again under a new id); on the first attempt it stays REQUEST_TOO_OLD', async () => {
    const tooOld = () => new RegionDbError(ErrorCode.RequestTooOld, 'request id older than the region remembers', { details: { oldestKnownRequestId: '99' } });
    for (const earlier of [true, false]) {
      const target = regions[1]!;
      const { local, attempts } = fakeLocal(async (regionId, attempt) => {
        if (regionId !== target) return { version: '3', rows_written: 0 };
        if (earlier && attempt === 1) throw new RegionDbError(ErrorCode.Unavailable, 'leadership lost; the write may or may not have been applied');
        throw tooOld(); // its id was evicted from the region's dedup table meanwhile
      });
      const clock = new HandClock();
      const err = await failure(whileTicking(clock, TICK_MS, new Router(local, clock).write(spanning('9'), farOn(clock)), 'the write', 100));
      const outcome = (JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[])[1]!.outcome;
      expect([err.code, outcome, attempts.get(target)], earlier ? 'after an attempt that may have applied' : 'on the first attempt').to.deep.equal(
        earlier ? [ErrorCode.Unavailable, 'OUTCOME_UNKNOWN', 2] : [ErrorCode.RequestTooOld, 'OUTCOME_UNKNOWN', 1],
      );
    }
  });

  it('CORRUPTION (DATA_LOSS) after an attempt that may have applied: the part is UNKNOWN and the error UNAVAILABLE, not a code that says "not applied"; on the first attempt it stays CORRUPTION, NOT_APPLIED; never resent (one region or several)', async () => {
    const corrupt = () => new RegionDbError(ErrorCode.Corruption, 'row has 2 values, schema has 3 columns');
    const target = regions[1]!;
    const oneRegion = (requestId: string): WriteRequest => ({ table: 't', rows: [1, 5, 9, 13, 17, 21, 25, 29, 33, 37].map(rowAt).filter((_, i) => regionOf([1, 5, 9, 13, 17, 21, 25, 29, 33, 37][i]!) === target).map(proto), client_id: 'c', request_id: requestId });
    expect(oneRegion('1').rows.length, 'the one-region request has rows').to.be.greaterThan(0);
    for (const single of [false, true]) {
      for (const earlier of [true, false]) {
        const { local, attempts } = fakeLocal(async (regionId, attempt) => {
          if (regionId !== target) return { version: '3', rows_written: 0 };
          // One region led here goes by the fast path first: its refusal routes it (retried).
          const n = single ? attempt - 1 : attempt;
          if (n === 0) throw new RegionDbError(ErrorCode.NotLeader, 'leadership moving');
          if (earlier && n === 1) throw new RegionDbError(ErrorCode.Unavailable, 'leadership lost; the write may or may not have been applied');
          throw corrupt();
        });
        const clock = new HandClock();
        const req = single ? oneRegion('11') : spanning('11');
        const err = await failure(whileTicking(clock, TICK_MS, new Router(local, clock).write(req, farOn(clock)), 'the write', 100));
        const what = `${single ? 'one region' : 'several regions'}, ${earlier ? 'after an attempt that may have applied' : 'on the first attempt'}`;
        expect(err.code, what).to.equal(earlier ? ErrorCode.Unavailable : ErrorCode.Corruption);
        if (!single) expect((JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[])[1]!.outcome, what).to.equal(earlier ? 'OUTCOME_UNKNOWN' : 'OUTCOME_NOT_APPLIED');
        expect(attempts.get(target), `${what}: a CORRUPTION answer is not sent again`).to.equal((earlier ? 2 : 1) + (single ? 1 : 0));
      }
    }
  });

  it('without a request id a part that may have applied is not retried', async () => {
    const { local, attempts } = fakeLocal(async (regionId) => {
      if (regionId === regions[0]) throw new RegionDbError(ErrorCode.DeadlineExceeded, 'timed out');
      return { version: '3', rows_written: 0 };
    });
    const err = await failure(new Router(local).write(spanning('0'), FAR()));
    expect(err.code).to.equal(ErrorCode.DeadlineExceeded);
    expect(attempts.get(regions[0]!)).to.equal(1);
    expect((JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[])[0]!.outcome).to.equal('OUTCOME_UNKNOWN');
  });

  it('a part refused before it was proposed is NOT_APPLIED with its own code; refusals that cannot change are not retried', async () => {
    const { local, attempts } = fakeLocal(async (regionId) => {
      if (regionId === regions[1]) throw new RegionDbError(ErrorCode.PermissionDenied, 'read-only user');
      return { version: '3', rows_written: 0 };
    });
    const err = await failure(new Router(local).write(spanning('7'), FAR()));
    expect(err.code).to.equal(ErrorCode.PermissionDenied);
    expect(attempts.get(regions[1]!)).to.equal(1);
    const outcomes = JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[];
    expect(outcomes[1]).to.include({ outcome: 'OUTCOME_NOT_APPLIED', code: 'PERMISSION_DENIED', grpc_code: grpc.status.PERMISSION_DENIED });
  });

  it('a part whose attempt throws something not a RegionDbError (a bug) is reported INTERNAL and handed to internalError with its region (it was logged nowhere)', async () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'status')");
    const { local } = fakeLocal(async (regionId) => {
      if (regionId === regions[3]) throw bug;
      return { version: '3', rows_written: 0 };
    });
    const reported: [unknown, string][] = [];
    local.internalError = (err, regionId) => reported.push([err, regionId]);
    const err = await failure(new Router(local).write(spanning('0'), FAR()));
    expect(err.code).to.equal(ErrorCode.Internal);
    expect(reported).to.deep.equal([[bug, regions[3]]]);
    // A RegionDbError, a refusal or an unknown outcome alike, is the part's answer, not a bug: not reported.
    const { local: refusing } = fakeLocal(async (regionId) => {
      if (regionId === regions[0]) throw new RegionDbError(ErrorCode.DeadlineExceeded, 'timed out');
      if (regionId === regions[1]) throw new RegionDbError(ErrorCode.PermissionDenied, 'read-only user');
      return { version: '3', rows_written: 0 };
    });
    refusing.internalError = (e, regionId) => reported.push([e, regionId]);
    await failure(new Router(refusing).write(spanning('0'), FAR()));
    expect(reported).to.have.length(1);
  });

  it('a single-region request keeps its own error (CONDITION_FAILED with the current version)', async () => {
    const { local } = fakeLocal(async () => {
      throw new RegionDbError(ErrorCode.ConditionFailed, 'condition failed', { details: { currentVersion: '9' } });
    });
    const err = await failure(new Router(local).write({ table: 't', rows: [proto(rowAt(1))], expect_absent: true }, FAR()));
    expect(err.code).to.equal(ErrorCode.ConditionFailed);
    expect(err.details['currentVersion']).to.equal('9');
  });

  it('one region led here: applied directly (no outcomes list); refused before proposing, it is routed and retried', async () => {
    const { local, attempts } = fakeLocal(async (_regionId, attempt) => {
      if (attempt === 1) throw new RegionDbError(ErrorCode.NotLeader, 'leadership moved');
      return { version: '4', rows_written: 1 };
    });
    const res = (await new Router(local).write({ table: 't', rows: [proto(rowAt(1))], client_id: 'c', request_id: '9' }, FAR())) as { version: string; regions: RegionOutcome[] };
    expect(res.version).to.equal('4');
    expect(res.regions.map((r) => r.outcome)).to.deep.equal(['OUTCOME_APPLIED']);
    expect(attempts.get(regionOf(1))).to.equal(2);
    const direct = fakeLocal(async () => ({ version: '5', rows_written: 1 }));
    expect(await new Router(direct.local).write({ table: 't', rows: [proto(rowAt(1))] }, FAR())).to.deep.equal({ version: '5', rows_written: 1 });
  });

  it('one region led here: the rows it validated go along (validated once on the fast path); a part of a split or a forwarded write carries none', async () => {
    const seen: { region: string; checked: CheckedRows | undefined }[] = [];
    const base = fakeLocal(async () => ({ version: '1', rows_written: 1 }));
    const local: LocalDatabase = {
      ...base.local,
      write: async (req, checked) => {
        seen.push({ region: req.region_id!, checked });
        return { version: '1', rows_written: req.rows.length };
      },
    };
    // Rows of one region, one of them with -0 (validation turns it into 0: the checked rows are validateRow's output).
    const one = [1, 24, 47].filter((i) => regionOf(i) === regionOf(1));
    expect(one.length, 'rows of one region').to.be.greaterThan(1);
    const rows = one.map((i) => (i === 1 ? { ...rowAt(i), v: -0 } : rowAt(i)));
    await new Router(local).write({ table: 't', rows: rows.map((r) => proto(r)) }, FAR());
    expect(seen).to.have.length(1);
    expect(seen[0]!.checked?.schema).to.equal(schema);
    expect(seen[0]!.checked?.rows).to.deep.equal(rows.map((r) => validateRow(schema, r)));
    expect(Object.is(seen[0]!.checked?.rows[0]?.['v'], 0), '-0 validated to 0').to.equal(true);
    seen.length = 0;
    await new Router(local).write(spanning('3'), FAR());
    expect(seen.length).to.equal(4);
    expect(seen.every((s) => s.checked === undefined), 'parts of a split are validated where they apply').to.equal(true);
    seen.length = 0;
    await new Router(local).write({ table: 't', rows: [proto(rowAt(1))] }, { ...FAR(), forwarded: true });
    expect(seen.map((s) => s.checked)).to.deep.equal([undefined]);
  });

  it('validatedOnce: the router\'s rows only against the very schema the call resolved, and only all of them', () => {
    const rows = [validateRow(schema, rowAt(1))];
    expect(validatedOnce(schema, [{}], { schema, rows })).to.equal(rows);
    expect(validatedOnce({ ...schema }, [{}], { schema, rows }), 'another schema object (a re-created table)').to.equal(undefined);
    expect(validatedOnce(schema, [{}, {}], { schema, rows }), 'not every row').to.equal(undefined);
    expect(validatedOnce(schema, [{}], undefined)).to.equal(undefined);
  });

  it('refuses rows outside a given region id before anything is sent', async () => {
    const { local, attempts } = fakeLocal(async () => ({ version: '1' }));
    const err = await failure(new Router(local).write({ ...spanning('8'), region_id: regions[0]! }, FAR()));
    expect(err.code).to.equal(ErrorCode.InvalidArgument);
    expect(attempts.size).to.equal(0);
  });

  it('a whole-table scan merges every region in primary-key order, and a limit takes the first rows of that order', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => rowAt(i));
    const byRegion = new Map<string, Row[]>();
    for (const r of rows) {
      const id = makeRegionId(schema.tableId, regionNumberOf(schema, r));
      byRegion.set(id, [...(byRegion.get(id) ?? []), r]);
    }
    const order = (a: Row, b: Row) => compareBytes(encodePrimaryKey(schema, a), encodePrimaryKey(schema, b));
    for (const list of byRegion.values()) list.sort(order);
    const { local } = fakeLocal(async () => ({}), byRegion);
    const scan = async (limit: number) => {
      const out: number[] = [];
      await new Router(local).scan({ table: 't', limit: String(limit), consistency: 'LINEARIZABLE' }, async (chunk) => {
        for (const r of (chunk as ScanChunk).rows) out.push(Number(r.values['v']!.int64_value));
      });
      return out;
    };
    const expected = [...rows].sort(order);
    const all = await scan(0);
    expect(all).to.deep.equal(expected.map((r) => r['v']));
    expect(await scan(57)).to.deep.equal(expected.slice(0, 57).map((r) => r['v']));
  });
});

// After a leader's node dies, the parts forwarded for its regions wait out backoffs (50 ms,
// doubling to 500 ms) between attempts; the election here ends sooner than that. A part waiting
// is woken when this node's replica of the region sees its leader change, and tries again at once.
// These tests run the Router on a hand-moved clock (docs/testing.md, "Time in unit tests"): its
// backoffs end, and its deadlines pass, only when the test ticks the clock, so each assertion is
// an exact time on that clock, whatever the machine's load.
/** A row key of the table's region 0. */
const key = (() => {
  const region = makeRegionId(schema.tableId, 0);
  for (let i = 0; ; i++) if (regionOf(i) === region) return i;
})();

const wait = (clock: HandClock, ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));

/** `promise`, and when it resolved: ms on `clock` since it was made (undefined while pending). */
function timed<T>(clock: HandClock, promise: Promise<T>): { readonly promise: Promise<T>; afterMs(): number | undefined } {
  const startMs = clock.nowMs();
  let atMs: number | undefined;
  const watched = promise.then((v) => {
    atMs = clock.nowMs();
    return v;
  });
  return { promise: watched, afterMs: () => (atMs === undefined ? undefined : atMs - startMs) };
}

/**
 * A node that does not lead region 0 until `elect()`; `leaderChange` as the Database service
 * gives it (unless `watch` is false). Every leader lookup finds no leader (UNAVAILABLE, retried
 * under the request id), after `onLookup(n, elect)` for the n-th lookup (from 1) if given;
 * `lookupsAtMs`: when each began on `clock`.
 */
function electing(clock: HandClock, watch: boolean, onLookup?: (n: number, elect: () => void) => Promise<void>) {
  let leads = false;
  const lookupsAtMs: number[] = [];
  const waiters = new Set<() => void>();
  const elect = () => {
    leads = true;
    for (const w of [...waiters]) w();
    waiters.clear();
  };
  const local: LocalDatabase = {
    nodeId: 1,
    credentials: grpc.credentials.createInsecure(),
    schemaOf: async () => schema,
    leads: () => leads,
    leaderAddr: async () => {
      lookupsAtMs.push(clock.nowMs());
      await onLookup?.(lookupsAtMs.length, elect);
      return undefined; // no leader known: UNAVAILABLE, retried under the request id
    },
    write: async () => ({ version: '9', rows_written: 1 }),
    delete: async () => ({ version: '1' }),
    get: async () => ({ found: false }),
    scanRegion: async () => {},
    ...(watch
      ? {
          leaderChange: () => {
            let wake!: () => void;
            const changed = new Promise<void>((r) => (wake = r));
            waiters.add(wake);
            return { changed, cancel: () => waiters.delete(wake) };
          },
        }
      : {}),
  };
  return { local, elect, lookupsAtMs, attempts: () => lookupsAtMs.length, waiting: () => waiters.size };
}

describe('router: a leader change here cuts a part\'s backoff short', () => {
  for (const watch of [true, false]) {
    it(watch ? 'woken by the leader change: applied at the tick of it' : 'without the watch (the check can fail): the backoff runs its course, to the tick', async () => {
      const clock = new HandClock();
      const t0 = clock.nowMs();
      const { local, elect, lookupsAtMs, attempts, waiting } = electing(clock, watch);
      const write = timed(clock, new Router(local, clock).write({ table: 't', rows: [proto(rowAt(key))], client_id: 'c', request_id: '3' }, farOn(clock)));
      await settle(); // the first attempt, at 0 ms
      // Attempts at 0, 50, 150 and 350 ms; the next not before 750 ms. Elect during the 400 ms pause.
      await ticksUntil(clock, TICK_MS, () => attempts() === 4, 'the fourth attempt', 20);
      expect(lookupsAtMs.map((at) => at - t0), 'attempts (ms): backoffs of 50, 100, 200').to.deep.equal([0, 50, 150, 350]);
      await tickBy(clock, TICK_MS, 1);
      expect(waiting(), 'parts waiting on the leader change').to.equal(watch ? 1 : 0);
      const electedAfterMs = clock.nowMs() - t0;
      expect(electedAfterMs).to.equal(400);
      elect();
      await settle();
      if (watch) expect(write.afterMs(), 'ms to the write applied: the leader change\'s').to.equal(electedAfterMs);
      else {
        expect(write.afterMs(), 'not applied at the leader change').to.equal(undefined);
        await ticksUntil(clock, TICK_MS, () => write.afterMs() !== undefined, 'the write applied', 20);
        expect(write.afterMs(), 'ms to the write applied: the 400 ms backoff\'s end').to.equal(750);
      }
      expect(((await write.promise) as { version: string }).version).to.equal('9');
      expect(attempts(), 'leader lookups (the last attempt applied here)').to.equal(4);
    });
  }
});

describe('router: elected here while a part\'s attempt was out, the part does not pause (issue 19 item 4)', () => {
  it('the leader change lands during a slow leader lookup (no one watching yet): the write is applied at once, not a backoff later', async () => {
    const clock = new HandClock();
    const t0 = clock.nowMs();
    let electedAfterMs: number | undefined;
    const { local, lookupsAtMs } = electing(clock, true, async (n, elect) => {
      // The fourth lookup (after pauses of 50, 100 and 200 ms; the next would be 400 ms) is
      // slow, as a route lookup on a metasrv busy with the failover is, and this node is
      // elected while it is out: the wake finds no waiter.
      if (n === 4) {
        await wait(clock, 50);
        electedAfterMs = clock.nowMs() - t0;
        elect();
        await wait(clock, 50);
      }
    });
    const write = timed(clock, new Router(local, clock).write({ table: 't', rows: [proto(rowAt(key))], client_id: 'c', request_id: '3' }, farOn(clock)));
    const res = (await whileTicking(clock, TICK_MS, write.promise, 'the write', 40)) as { version: string };
    expect(res.version).to.equal('9');
    expect(lookupsAtMs.map((at) => at - t0), 'leader lookups (ms) before the write was applied here').to.deep.equal([0, 50, 150, 350]);
    expect(electedAfterMs).to.equal(400);
    // Applied when the lookup (50 ms more) returns; the pause it would have waited is 400 ms.
    expect(write.afterMs(), 'ms to the write applied: the end of the lookup').to.equal(450);
  });

  it('a refusal by this node as the leader (a transfer under way) still backs off: no retries in a burst', async () => {
    const clock = new HandClock();
    const t0 = clock.nowMs();
    const writesAtMs: number[] = [];
    const local: LocalDatabase = {
      nodeId: 1,
      credentials: grpc.credentials.createInsecure(),
      schemaOf: async () => schema,
      leads: () => true,
      leaderAddr: async () => undefined,
      write: async () => {
        writesAtMs.push(clock.nowMs() - t0);
        // The fast path's attempt and the part's first two are refused; the third applies.
        if (writesAtMs.length <= 3) throw new RegionDbError(ErrorCode.ProposalDropped, 'leadership transfer in progress');
        return { version: '9', rows_written: 1 };
      },
      delete: async () => ({ version: '1' }),
      get: async () => ({ found: false }),
      scanRegion: async () => {},
    };
    const write = new Router(local, clock).write({ table: 't', rows: [proto(rowAt(key))], client_id: 'c', request_id: '4' }, farOn(clock));
    const res = (await whileTicking(clock, TICK_MS, write, 'the write', 20)) as { version: string };
    expect(res.version).to.equal('9');
    expect(writesAtMs, 'ms of the writes: the fast path, then the part\'s attempts after pauses of 50 and 100 ms').to.deep.equal([0, 0, 50, 150]);
  });
});

/** Table `t` re-created (id 8, two regions) after table 7 was dropped. */
const recreated: TableSchema = { ...schema, tableId: 8, regionCount: 2 };
const recreatedRegionOf = (i: number) => makeRegionId(recreated.tableId, regionNumberOf(recreated, rowAt(i)));

/**
 * A node that leads every region, whose first resolution of `t` is table 7 and, once told that
 * table was dropped, the re-created table 8. `write(req, current, record)` decides each attempt:
 * `current` is the table the node resolves now, `record(regionId)` notes the request's rows as
 * written to that region (in `written`, as `region:v`).
 */
function droppedTableNode(write: (req: WriteRequest, current: TableSchema, record: (regionId: string) => void) => Promise<WriteResponse>) {
  const dropped: number[] = [];
  const written: string[] = [];
  const current = () => (dropped.includes(7) ? recreated : schema);
  const local: LocalDatabase = {
    nodeId: 1,
    credentials: grpc.credentials.createInsecure(),
    schemaOf: async () => current(),
    tableDropped: (tableId) => dropped.push(tableId),
    leads: () => true,
    leaderAddr: async () => undefined,
    write: (req) => write(req, current(), (regionId) => written.push(...req.rows.map((r) => `${regionId}:${fromProtoRow(r, 'r')['v']}`))),
    delete: async () => ({ version: '1' }),
    get: async () => ({ found: false }),
    scanRegion: async () => {},
  };
  return { local, dropped, written };
}

describe('router: a request refused by a dropped table is sent again to the table resolved afresh (finding DT1)', () => {
  /**
   * `refusal`: how the dropped table's region words its refusal — `as-this-build` as
   * DatabaseService does (a write with expect_version is refused as a conditional write, without
   * `resendAllowed`), `unaware` as a region that did not see the expect_version would.
   */
  function droppedThenRecreated(refusal: 'as-this-build' | 'unaware' = 'as-this-build') {
    return droppedTableNode(async (req, current, record) => {
      // A forwarded request names no region: this node resolves it itself (as DatabaseService.write does).
      const regionId = req.region_id || makeRegionId(current.tableId, regionNumberOf(current, fromProtoRow(req.rows[0]!, 'r')));
      const conditional = refusal === 'as-this-build' && req._expect_version === 'expect_version';
      if (BigInt(regionId) >> 32n === 7n) throw tableDroppedError('t', 7, regionId, conditional ? 'conditional-write' : 'write');
      record(regionId);
      return { version: '3', rows_written: req.rows.length };
    });
  }

  it('a write spanning every region of the dropped table lands whole in the re-created one, after one refusal', async () => {
    const { local, dropped, written } = droppedThenRecreated();
    await new Router(local).write(spanning('9'), FAR());
    expect(dropped).to.deep.equal([7]);
    expect(written.sort()).to.deep.equal(Array.from({ length: 40 }, (_, i) => `${recreatedRegionOf(i)}:${i}`).sort());
  });

  it('a one-region write (the fast path) too; a request naming its region, or forwarded, is answered NOT_FOUND and not sent again', async () => {
    const fast = droppedThenRecreated();
    await new Router(fast.local).write({ table: 't', rows: [proto(rowAt(3))] }, FAR());
    expect(fast.written).to.deep.equal([`${recreatedRegionOf(3)}:3`]);
    const named = droppedThenRecreated();
    const refused = await failure(new Router(named.local).write({ table: 't', rows: [proto(rowAt(3))], region_id: regionOf(3) }, FAR()));
    expect(refused.code).to.equal(ErrorCode.NotFound);
    expect(refused.details['droppedTableId']).to.equal('7');
    expect(refused.details['resendAllowed'], 'the caller may send it again, the table described afresh').to.equal('true');
    expect(named.written).to.deep.equal([]);
    const forwarded = droppedThenRecreated();
    const again = await failure(new Router(forwarded.local).write({ table: 't', rows: [proto(rowAt(3))] }, { forwarded: true, deadlineMs: Date.now() + 30_000 }));
    expect(again.code).to.equal(ErrorCode.NotFound);
    expect(forwarded.written).to.deep.equal([]);
  });
  it('a write with expect_version refused by the fence is answered NOT_FOUND and not sent to the re-created table (review note F8); expect_absent is sent again', async () => {
    // The version named (3) is one the re-created table's row could carry by coincidence.
    const cas = droppedThenRecreated();
    const refused = await failure(
      new Router(cas.local).write({ table: 't', rows: [proto(rowAt(3))], expect_version: '3', _expect_version: 'expect_version', client_id: 'c', request_id: '9' }, FAR()),
    );
    expect(refused.code).to.equal(ErrorCode.NotFound);
    expect(refused.details['droppedTableId']).to.equal('7');
    expect(refused.message).to.contain('is not sent to a table re-created under the name');
    expect(refused.message).to.not.contain('send it again');
    expect(refused.message.match(/this write was not applied/g), refused.message).to.have.length(1);
    expect(refused.details['resendAllowed'], 'not to be sent again as it is').to.equal(undefined);
    expect(cas.written, 'nothing written to the re-created table').to.deep.equal([]);
    expect(cas.dropped, 'the dropped table is still forgotten (the next request resolves it afresh)').to.deep.equal([7]);
    // A refusal from a region that did not see the expect_version says "resend allowed": this
    // node knows better — not sent again, the detail dropped, the message says why (leftover item 5).
    const unaware = droppedThenRecreated('unaware');
    const overruled = await failure(
      new Router(unaware.local).write({ table: 't', rows: [proto(rowAt(3))], expect_version: '3', _expect_version: 'expect_version', client_id: 'c', request_id: '9' }, FAR()),
    );
    expect(overruled.code).to.equal(ErrorCode.NotFound);
    expect(overruled.details['droppedTableId']).to.equal('7');
    expect(overruled.details['resendAllowed']).to.equal(undefined);
    expect(overruled.message).to.contain('but not this one: it carries expect_version');
    expect(unaware.written).to.deep.equal([]);
    const absent = droppedThenRecreated();
    await new Router(absent.local).write({ table: 't', rows: [proto(rowAt(3))], expect_absent: true, client_id: 'c', request_id: '10' }, FAR());
    expect(absent.written).to.deep.equal([`${recreatedRegionOf(3)}:3`]);
  });
});

describe('router: a dropped table\'s refusal mixed with other outcomes (review F6)', () => {
  /**
   * `old(regionId, n)` answers the n-th attempt at a region of table 7: 'ok', 'unknown'
   * (UNAVAILABLE: may have been proposed), 'not-leader' or 'fenced' (the drop fence's refusal);
   * the re-created table 8 takes every write.
   */
  function scripted(old: (regionId: string, n: number) => 'ok' | 'unknown' | 'not-leader' | 'fenced') {
    const attempts = new Map<string, number>();
    return droppedTableNode(async (req, _current, record) => {
      const regionId = req.region_id!;
      if (BigInt(regionId) >> 32n === 8n) {
        record(regionId);
        return { version: '3', rows_written: req.rows.length };
      }
      const n = (attempts.get(regionId) ?? 0) + 1;
      attempts.set(regionId, n);
      const answer = old(regionId, n);
      if (answer === 'unknown') throw new RegionDbError(ErrorCode.Unavailable, `region ${regionId}: the proposal's outcome is unknown (leader lost)`);
      if (answer === 'not-leader') throw new RegionDbError(ErrorCode.NotLeader, `region ${regionId}: not the leader`);
      if (answer === 'fenced') throw tableDroppedError('t', 7, regionId, 'write');
      record(regionId);
      return { version: '2', rows_written: req.rows.length };
    });
  }

  it('one region, an attempt whose outcome is unknown and then the fence\'s refusal: UNAVAILABLE without the dropped-table detail, not sent to the re-created table', async () => {
    // 1: the fast path is refused before proposing; 2: proposed, outcome unknown; 3: the fence refuses the retry.
    const { local, dropped, written } = scripted((_, n) => (n === 1 ? 'not-leader' : n === 2 ? 'unknown' : 'fenced'));
    const err = await failure(new Router(local).write({ table: 't', rows: [proto(rowAt(3))], client_id: 'c', request_id: '9' }, FAR()));
    expect(err.code).to.equal(ErrorCode.Unavailable);
    expect(err.details, 'an unknown outcome never carries "not applied"').to.not.have.property('droppedTableId');
    expect(dropped).to.deep.equal([]);
    expect(written).to.deep.equal([]);
  });

  it('several regions, some applied and the others refused by the fence: sent again whole to the re-created table (the applied parts were concurrent with the drop)', async () => {
    const applied = regionOf(0);
    const { local, dropped, written } = scripted((regionId) => (regionId === applied ? 'ok' : 'fenced'));
    const res = await new Router(local).write(spanning('9'), FAR());
    expect(res.rows_written).to.equal(40);
    expect(dropped).to.deep.equal([7]);
    const oldRows = Array.from({ length: 40 }, (_, i) => i).filter((i) => regionOf(i) === applied);
    expect(written.sort()).to.deep.equal([...oldRows.map((i) => `${applied}:${i}`), ...Array.from({ length: 40 }, (_, i) => `${recreatedRegionOf(i)}:${i}`)].sort());
  });

  it('several regions, one unknown and the others refused by the fence: UNAVAILABLE with per-region outcomes, no dropped-table detail, not sent again', async () => {
    const unknown = regionOf(0);
    const { local, dropped, written } = scripted((regionId, n) => (regionId === unknown && n === 1 ? 'unknown' : 'fenced'));
    const err = await failure(new Router(local).write(spanning('9'), FAR()));
    expect(err.code).to.equal(ErrorCode.Unavailable);
    expect(err.details).to.not.have.property('droppedTableId');
    const outcomes = JSON.parse(err.details['regionOutcomes']!) as RegionOutcome[];
    expect(outcomes.find((o) => o.region_id === unknown)?.outcome).to.equal('OUTCOME_UNKNOWN');
    expect(outcomes.filter((o) => o.region_id !== unknown).every((o) => o.outcome === 'OUTCOME_NOT_APPLIED')).to.equal(true);
    expect(dropped).to.deep.equal([]);
    expect(written).to.deep.equal([]);
  });
});
