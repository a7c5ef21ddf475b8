// The any-language client contract (proto/regiondb/v1/database.proto's comments) checked where a
// raw request lands: requests as a generated client in another language sends them, decoded as
// the server decodes them, handed to the Router and the Database service without the TypeScript
// client library in between (review branch rev-cli, rows Z* of docs/correctness.md).
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import { type LocalDatabase, Router, type ScanChunk, type ScanRequest, type WriteRequest } from '../../src/datanode/router.js';
import { makeRegionId, regionNumberOf } from '../../src/engine/key.js';
import { type Row, type TableSchema, validateRow } from '../../src/engine/schema.js';
import { toServiceError } from '../../src/rpc/status.js';
import { HandClock, whileTicking } from '../fixtures/hand-clock.js';
import type { WriteResponse } from '../../src/rpc/generated/index.js';
import { type ProtoRow, type ProtoValue, toProtoRow } from '../../src/rpc/values.js';

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
/** `r` as a request carries it, kinds set as the decoders give them. */
const protoOf = (of: TableSchema, r: Row): ProtoRow => {
  const p = toProtoRow(of, r);
  for (const v of Object.values(p.values)) v.kind = Object.keys(v)[0] as ProtoValue['kind']; // as the decoders give it
  return p;
};
const proto = (r: Row): ProtoRow => protoOf(schema, r);

/** A node leading every region of `of`, whose local writes `write` answers. */
function leadingLocal(of: TableSchema, write: LocalDatabase['write']): LocalDatabase {
  return {
    nodeId: 1,
    credentials: grpc.credentials.createInsecure(),
    schemaOf: async () => of,
    leads: () => true,
    leaderAddr: async () => undefined,
    write,
    delete: async () => ({ version: '1' }),
    get: async () => ({ found: false }),
    scanRegion: async () => {},
  };
}
const FAR = () => ({ forwarded: false, deadlineMs: Date.now() + 30_000 });

async function failure(p: Promise<unknown>): Promise<RegionDbError> {
  try {
    await p;
  } catch (err) {
    if (isRegionDbError(err)) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

/** Two rows of the table that hash to different regions (and two that hash to the same one). */
function rowsOfTwoRegions(): { apart: [Row, Row]; together: [Row, Row] } {
  const first: Row = { host: 'h0', ts: 1000, v: 0 };
  const region = regionNumberOf(schema, first);
  let apart: Row | undefined;
  let together: Row | undefined;
  for (let i = 1; i < 200 && !(apart && together); i++) {
    const r: Row = { host: `h${i}`, ts: 1000, v: i };
    if (regionNumberOf(schema, r) === region) together ??= r;
    else apart ??= r;
  }
  if (!apart || !together) throw new Error('no rows found for both cases');
  return { apart: [first, apart], together: [first, together] };
}

describe('raw client contract: a conditional write is single-row whatever regions its rows hash to (Z1)', () => {
  /** A node leading every region, recording which writes reached a region. */
  function leadingEverything(): { local: LocalDatabase; reached: WriteRequest[] } {
    const reached: WriteRequest[] = [];
    const local = leadingLocal(schema, async (req): Promise<WriteResponse> => {
      reached.push(req);
      // As DatabaseService.write: the single-row rule, checked on the part it was given.
      if ((req._expect_version === 'expect_version' || req.expect_absent) && req.rows.length !== 1) {
        throw new RegionDbError(ErrorCode.InvalidArgument, 'expect_version / expect_absent apply to single-row writes only');
      }
      return { version: '5', rows_written: req.rows.length };
    });
    return { local, reached };
  }

  for (const condition of [{ expect_absent: true }, { expect_version: '3', _expect_version: 'expect_version' as const }]) {
    const name = 'expect_absent' in condition ? 'expect_absent' : 'expect_version';
    it(`${name} with two rows is INVALID_ARGUMENT and reaches no region, whether the rows share a region or not`, async () => {
      const { apart, together } = rowsOfTwoRegions();
      for (const [label, rows] of [['one region', together], ['two regions', apart]] as const) {
        const { local, reached } = leadingEverything();
        const req: WriteRequest = { table: 't', rows: rows.map(proto), client_id: 'c', request_id: '11', ...condition };
        let outcome: unknown;
        try {
          outcome = await new Router(local).write(req, FAR());
        } catch (err) {
          outcome = err;
        }
        // Before the fix, rows of two regions were split into two one-row parts, each applied
        // (or refused) on its own: the call answered OK, or half applied.
        expect(isRegionDbError(outcome, ErrorCode.InvalidArgument), `${label}: ${JSON.stringify(outcome)}`).to.equal(true);
        expect(String((outcome as Error).message)).to.contain('single-row');
        expect(reached.filter((r) => r.rows.length === 1), `${label}: one-row parts applied`).to.deep.equal([]);
      }
    });
  }

  it('a one-row conditional write is still applied', async () => {
    const { local, reached } = leadingEverything();
    const res = await new Router(local).write({ table: 't', rows: [proto({ host: 'h0', ts: 1, v: 1 })], client_id: 'c', request_id: '12', expect_absent: true }, FAR());
    expect(res.version).to.equal('5');
    expect(reached).to.have.length(1);
  });
});

describe('raw client contract: Scan.tag_equals values are checked against the tag column type (Z2)', () => {
  const region = makeRegionId(schema.tableId, 0);
  const oneRegion: TableSchema = { ...schema, regionCount: 1 };
  const svc = (): { scan: (r: ScanRequest) => Promise<ScanChunk[]>; close(): void } => {
    const replica = {
      isLeader: () => true,
      stateMachine: {
        ssts: [],
        async *scan(options: { tagEquals?: Record<string, unknown> }): AsyncGenerator<{ row: Row; version: number }> {
          // As RegionState.scan: a row is yielded only if each filter value is === its tag.
          const row: Row = { host: '5', ts: 1, v: 1 };
          if (Object.entries(options.tagEquals ?? {}).every(([k, v]) => row[k] === v)) yield { row, version: 3 };
        },
      },
    };
    const host = {
      nodeId: 1,
      metas: new Map([[region, { schema: oneRegion }]]),
      regionServer: { replica: (id: string) => (id === region ? replica : undefined), failure: () => undefined, readBarrier: async () => {}, staleReadGate: async () => undefined },
      flusher: { scanDeadline: () => () => false, scanDeadlineMs: 60_000, leases: { acquire: () => () => {} } },
      metaCall: async () => {
        throw Object.assign(new Error('no metasrv in this test'), { code: 14 });
      },
    } as unknown as DatabaseHost;
    const service = new DatabaseService(host);
    const inner = service as unknown as { scan(r: ScanRequest, w: (c: ScanChunk) => Promise<void>): Promise<void> };
    return {
      scan: async (r) => {
        const sent: ScanChunk[] = [];
        await inner.scan(r, async (c) => void sent.push(c));
        return sent;
      },
      close: () => service.close(),
    };
  };

  it('an int64 value for a STRING tag is INVALID_ARGUMENT, not an empty answer', async () => {
    const s = svc();
    // A generated client's easy mistake: Value{int64_value: 5} for the tag host = "5".
    const err = await failure(s.scan({ table: 't', tag_equals: { host: { kind: 'int64_value', int64_value: '5' } }, consistency: 'LINEARIZABLE' }));
    expect(err.code).to.equal(ErrorCode.InvalidArgument);
    expect(err.message).to.contain('host');
    // The right type finds the row.
    const rows = (await s.scan({ table: 't', tag_equals: { host: { kind: 'string_value', string_value: '5' } }, consistency: 'LINEARIZABLE' })).flatMap((c) => c.rows);
    expect(rows).to.have.length(1);
    s.close();
  });

  it('a bool for a STRING tag, and a float for it, are INVALID_ARGUMENT; an explicit NULL still filters NULL tags', async () => {
    const s = svc();
    for (const value of [{ kind: 'bool_value' as const, bool_value: true }, { kind: 'float64_value' as const, float64_value: 5 }]) {
      const err = await failure(s.scan({ table: 't', tag_equals: { host: value }, consistency: 'LINEARIZABLE' }));
      expect(err.code, JSON.stringify(value)).to.equal(ErrorCode.InvalidArgument);
    }
    const rows = (await s.scan({ table: 't', tag_equals: { host: { kind: 'null_value', null_value: true } }, consistency: 'LINEARIZABLE' })).flatMap((c) => c.rows);
    expect(rows).to.deep.equal([]);
    s.close();
  });
});

describe('raw client contract: the partition function docs/clients.md spells out is the one the server uses', () => {
  // Written from docs/clients.md ("Which region a row belongs to"), not from src/engine/key.ts: a
  // client in another language routing rows itself (region_id set) computes exactly this.
  function documentedRegionNumber(columns: TableSchema['columns'], regionCount: number, row: Row): number {
    const bytes: number[] = [];
    for (const c of columns) {
      if (c.semantic !== 'tag') continue;
      const v = row[c.name] ?? null;
      if (v === null) {
        bytes.push(0x00);
        continue;
      }
      bytes.push(0x01);
      if (c.type === 'string') {
        for (const b of Buffer.from(v as string, 'utf8')) {
          bytes.push(b);
          if (b === 0x00) bytes.push(0xff);
        }
        bytes.push(0x00, 0x01);
      } else if (c.type === 'bool') {
        bytes.push(v ? 0x01 : 0x00);
      } else {
        let u = BigInt(v as number) + (1n << 63n); // two's complement with the top bit flipped
        const be: number[] = [];
        for (let i = 0; i < 8; i++, u >>= 8n) be.unshift(Number(u & 0xffn));
        bytes.push(...be);
      }
    }
    let h = 0x811c9dc5;
    for (const b of bytes) h = Number((BigInt((h ^ b) >>> 0) * 0x01000193n) & 0xffffffffn);
    return h % regionCount;
  }

  it('agrees on 2,000 seeded rows over every tag type, NULLs, NUL bytes, non-ASCII and extreme integers', () => {
    const columns: TableSchema['columns'] = [
      { name: 's', type: 'string', semantic: 'tag' },
      { name: 'f', type: 'float64', semantic: 'field' },
      { name: 'i', type: 'int64', semantic: 'tag' },
      { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
      { name: 'b', type: 'bool', semantic: 'tag' },
      { name: 'at', type: 'timestamp_ms', semantic: 'tag' },
    ];
    let seed = 20261206;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const strings = ['', 'a', 'host-7', '\u0000', 'a\u0000b', 'é', '日本', '\u{1F600}', 'x'.repeat(40)];
    const ints = [0, 1, -1, 255, 256, -256, 2 ** 31, -(2 ** 31), 2 ** 32 + 5, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
    for (let n = 0; n < 2000; n++) {
      const regionCount = pick([1, 2, 3, 4, 7, 64, 1024]);
      const table: TableSchema = { name: 'p', tableId: 9, regionCount, columns };
      const row: Row = {
        s: rand() < 0.15 ? null : pick(strings) + String(Math.floor(rand() * 1000)),
        f: rand(),
        i: rand() < 0.15 ? null : rand() < 0.5 ? pick(ints) : Math.floor((rand() - 0.5) * 2 ** 40),
        ts: Math.floor(rand() * 2 ** 41),
        b: rand() < 0.15 ? null : rand() < 0.5,
        at: rand() < 0.15 ? null : pick(ints),
      };
      expect(documentedRegionNumber(columns, regionCount, row), `seed 20261206, row ${n}: ${JSON.stringify(row)}`).to.equal(regionNumberOf(table, row));
    }
  });
});

describe('raw client contract: a Scan whose replica here may not serve it goes to the leader, as a Get does (Z3)', () => {
  const region = makeRegionId(schema.tableId, 0);
  const oneRegion: TableSchema = { ...schema, regionCount: 1 };
  type Scan = (r: ScanRequest, w: (c: ScanChunk) => Promise<void>, info?: { forwarded: boolean; deadlineMs: number }) => Promise<void>;
  /** A node with a follower replica of the table's one region whose stale-read gate refuses; routes name node 2 as leader. */
  function node(): { scan: Scan; forwards: { regionId: string; limit: number }[]; close(): void } {
    const replica = {
      isLeader: () => false,
      stateMachine: {
        ssts: [],
        async *scan(): AsyncGenerator<{ row: Row; version: number }> {
          yield { row: { host: 'h', ts: 1, v: 1 }, version: 3 };
        },
      },
    };
    const host = {
      nodeId: 1,
      metas: new Map([[region, { schema: oneRegion }]]),
      regionServer: {
        replica: (id: string) => (id === region ? replica : undefined),
        failure: () => undefined,
        readBarrier: async () => {},
        staleReadGate: async () => 'the replica of the region on node 1 has heard from no leader since it was opened',
      },
      flusher: { scanDeadline: () => () => false, scanDeadlineMs: 60_000, leases: { acquire: () => () => {} } },
      metaCall: async () => ({
        table: { name: 't', table_id: 7, region_count: 1, columns: schema.columns.map((c) => ({ name: c.name, type: c.type.toUpperCase(), semantic: c.semantic.toUpperCase() })) },
        routes: [{ region_id: region, table: 't', region_number: 0, leader_node_id: '2', conf_version: '1', peers: [1, 2, 3].map((n) => ({ peer_id: String(n), node_id: String(n), addr: `127.0.0.1:${4100 + n}` })) }],
      }),
    } as unknown as DatabaseHost;
    const service = new DatabaseService(host);
    const forwards: { regionId: string; limit: number }[] = [];
    const inner = service as unknown as { scan: Scan; forwardScan: (...a: unknown[]) => Promise<number> };
    inner.forwardScan = async (_table, regionId, _req, limit) => {
      forwards.push({ regionId: regionId as string, limit: limit as number });
      return 0;
    };
    return { scan: inner.scan.bind(service), forwards, close: () => service.close() };
  }

  it("a LINEARIZABLE scan whose ReadIndex a follower refused NOT_LEADER goes to the refusal's leader even when no route names one (metasrv away): never a lookup's NOT_FOUND (review of Z3)", async () => {
    const replica = { isLeader: () => false, stateMachine: { ssts: [] } };
    const host = {
      nodeId: 1,
      metas: new Map([[region, { schema: oneRegion }]]),
      regionServer: {
        replica: (id: string) => (id === region ? replica : undefined),
        failure: () => undefined,
        readBarrier: async () => {
          throw new RegionDbError(ErrorCode.NotLeader, 'not the leader', { details: { leaderNodeId: '2', leaderAddr: '127.0.0.1:4102' } });
        },
        staleReadGate: async () => undefined,
      },
      flusher: { scanDeadline: () => () => false, scanDeadlineMs: 60_000, leases: { acquire: () => () => {} } },
      metaCall: async () => {
        throw new RegionDbError(ErrorCode.Unavailable, 'the metasrv cannot be reached');
      },
    } as unknown as DatabaseHost;
    const service = new DatabaseService(host);
    const asked: string[] = [];
    const inner = service as unknown as { scan: Scan; scanFrom: (addr: string, ...a: unknown[]) => Promise<number> };
    inner.scanFrom = async (addr) => {
      asked.push(addr);
      return 0;
    };
    try {
      await inner.scan.call(service, { table: 't', consistency: 'LINEARIZABLE', region_id: region }, async () => {}, { forwarded: false, deadlineMs: Date.now() + 5000 });
      expect(asked).to.deep.equal(['127.0.0.1:4102']);
    } finally {
      service.close();
    }
  });

  it('a STALE scan refused by the gate here is forwarded to the leader (not failed NOT_LEADER); a forwarded one is refused (one hop)', async () => {
    const n = node();
    const sent: ScanChunk[] = [];
    await n.scan({ table: 't', consistency: 'STALE', region_id: region }, async (c) => void sent.push(c), { forwarded: false, deadlineMs: Date.now() + 5000 });
    expect(n.forwards).to.deep.equal([{ regionId: region, limit: 0 }]);
    expect(sent, 'nothing of the refused replica sent').to.deep.equal([]);
    let error: unknown;
    try {
      await n.scan({ table: 't', consistency: 'STALE', region_id: region }, async () => {}, { forwarded: true, deadlineMs: Date.now() + 5000 });
    } catch (err) {
      error = err;
    }
    expect(isRegionDbError(error, ErrorCode.NotLeader), String(error)).to.equal(true);
    expect(n.forwards).to.have.length(1);
    n.close();
  });
});

describe('raw client contract: the outcomes of a partly failed write across many regions fit a trailer every gRPC stack reads (Z4)', () => {
  // gRPC core (Python's grpcio 1.51 here) turns a response whose metadata passes 8 KiB into
  // RESOURCE_EXHAUSTED "received initial metadata size exceeds limit": the status, the code and
  // the outcomes are lost (measured against a grpc-js server sending a 9,000-byte trailer).
  const wide: TableSchema = { ...schema, regionCount: 1024 };
  const many = Array.from({ length: 10_000 }, (_, i): Row => ({ host: `w${i}`, ts: 1000 + i, v: i }));
  const regionsOf = new Set(many.map((r) => makeRegionId(wide.tableId, regionNumberOf(wide, r))));
  /** A node leading every region; `refuse(regionId)` says which parts fail, and how. */
  function routerWith(refuse: (regionId: string) => RegionDbError | undefined): Router {
    return new Router(
      leadingLocal(wide, async (req): Promise<WriteResponse> => {
        const refusal = refuse(req.region_id!);
        if (refusal) throw refusal;
        return { version: '12345', rows_written: req.rows.length };
      }),
    );
  }
  const wideProto = (r: Row): ProtoRow => protoOf(wide, r);
  const trailerBytes = (err: RegionDbError) =>
    Object.values(err.details).reduce((n, v) => n + v.replace(/[^\x20-\x7e]/g, '\\uXXXX').length, 0);

  it('one part refused among ~1,000 applied: the trailer stays under 8 KiB and lists the refused part, counting the applied ones left out', async () => {
    const [victim] = [...regionsOf].sort();
    const err = await failure(
      routerWith((id) => (id === victim ? new RegionDbError(ErrorCode.PermissionDenied, 'read-only user — writes are refused') : undefined)).write(
        { table: 't', rows: many.map(wideProto), client_id: 'c', request_id: '21' },
        FAR(),
      ),
    );
    expect(err.code).to.equal(ErrorCode.PermissionDenied);
    // Before the fix: every part's outcome, ~110 KB of trailer.
    expect(trailerBytes(err), 'trailer bytes').to.be.below(8192);
    const listed = JSON.parse(err.details['regionOutcomes']!) as { region_id: string; outcome: string }[];
    expect(listed.map((o) => [o.region_id, o.outcome])).to.deep.equal([[victim, 'OUTCOME_NOT_APPLIED']]);
    expect(JSON.parse(err.details['regionOutcomesOmitted']!)).to.deep.equal({ applied: regionsOf.size - 1, not_applied: 0, unknown: 0 });
  });

  it('every part failing: what fits is listed, unknown parts first, and the rest is counted', async () => {
    const err = await failure(
      routerWith((id) =>
        Number(BigInt(id) & 1n) === 0
          ? new RegionDbError(ErrorCode.DeadlineExceeded, 'timed out after proposing — the outcome is unknown')
          : new RegionDbError(ErrorCode.PermissionDenied, 'read-only user'),
      ).write({ table: 't', rows: many.map(wideProto) }, FAR()), // no request id: a part of unknown outcome is not retried
    );
    expect(trailerBytes(err), 'trailer bytes').to.be.below(8192);
    const listed = JSON.parse(err.details['regionOutcomes']!) as { outcome: string }[];
    const omitted = JSON.parse(err.details['regionOutcomesOmitted']!) as { applied: number; not_applied: number; unknown: number };
    expect(omitted.applied).to.equal(0);
    expect(listed.length + omitted.not_applied + omitted.unknown).to.equal(regionsOf.size);
    expect(listed.every((o) => o.outcome === 'OUTCOME_UNKNOWN'), 'unknown parts are listed first').to.equal(true);
    expect(listed.length).to.be.above(10);
  });

  it('a write across a few regions keeps the whole list, as before', async () => {
    const rows = Array.from({ length: 8 }, (_, i): Row => ({ host: `h${i}`, ts: i, v: i }));
    const ids = [...new Set(rows.map((r) => makeRegionId(wide.tableId, regionNumberOf(wide, r))))].sort();
    const err = await failure(
      routerWith((id) => (id === ids[0] ? new RegionDbError(ErrorCode.PermissionDenied, 'read-only user') : undefined)).write({ table: 't', rows: rows.map(wideProto), client_id: 'c', request_id: '23' }, FAR()),
    );
    const listed = JSON.parse(err.details['regionOutcomes']!) as { region_id: string }[];
    expect(listed.map((o) => o.region_id).sort()).to.deep.equal(ids);
    expect(err.details['regionOutcomesOmitted']).to.equal(undefined);
  });
});

describe('raw client contract: a status message quoting the request stays within what every gRPC stack reads (Z5)', () => {
  const sent = (details: string | undefined) => encodeURI(details ?? '').length; // as grpc-js puts it in grpc-message

  it('an unknown column with a 10,000-character name: INVALID_ARGUMENT whose message fits 2 KiB (it was 10 KB: RESOURCE_EXHAUSTED in Python)', () => {
    const name = `c${'x'.repeat(10_000)}`;
    let err: unknown;
    try {
      validateRow(schema, { host: 'h', ts: 1, [name]: 1 });
    } catch (e) {
      err = e;
    }
    const status = toServiceError(err);
    expect(status.code).to.equal(grpc.status.INVALID_ARGUMENT);
    expect(sent(status.details), 'grpc-message bytes').to.be.at.most(2048);
    expect(status.details).to.match(/^table t: unknown column cxxx/);
    expect(status.details!.endsWith(' …')).to.equal(true);
  });

  it('multi-byte and astral characters are cut whole; a short message is unchanged', () => {
    for (const message of ['é'.repeat(5000), '日本'.repeat(3000), '\u{1F600}'.repeat(3000), `${'a'.repeat(2047)}\u{1F600}${'b'.repeat(100)}`]) {
      const details = toServiceError(new RegionDbError(ErrorCode.InvalidArgument, message)).details!;
      expect(sent(details), message.slice(0, 10)).to.be.at.most(2048);
      expect(sent(details), message.slice(0, 10)).to.be.above(1000);
      expect(message.startsWith(details.slice(0, -2)), 'a prefix of the message').to.equal(true);
    }
    const short = 'region 30064771072: node 1 is not the leader — retry';
    expect(toServiceError(new RegionDbError(ErrorCode.NotLeader, short)).details).to.equal(short);
  });
});

describe('raw client contract: a part that could be sent nowhere is NOT_APPLIED, and retried (Z6)', () => {
  /** A node leading nothing, with no address for any region's leader for the first `blindAttempts` lookups. */
  function blind(blindAttempts: number): { local: LocalDatabase; lookups: () => number; forwarded: WriteRequest[] } {
    let lookups = 0;
    const forwarded: WriteRequest[] = [];
    const local: LocalDatabase = {
      nodeId: 1,
      credentials: grpc.credentials.createInsecure(),
      schemaOf: async () => ({ ...schema, regionCount: 1 }),
      leads: () => false,
      leaderAddr: async () => (++lookups <= blindAttempts ? undefined : '127.0.0.1:1'),
      write: async (req) => {
        forwarded.push(req);
        return { version: '9', rows_written: 1 };
      },
      delete: async () => ({ version: '1' }),
      get: async () => ({ found: false }),
      scanRegion: async () => {},
    };
    return { local, lookups: () => lookups, forwarded };
  }

  it('no leader address known for the region all its deadline: NOT_LEADER (nothing was sent), not UNAVAILABLE, and looked up again also without a request id', async () => {
    for (const identity of [{}, { client_id: 'c', request_id: '31' }]) {
      const { local, lookups } = blind(Number.POSITIVE_INFINITY);
      const clock = new HandClock();
      const err = await failure(
        whileTicking(clock, 50, new Router(local, clock).write({ table: 't', rows: [proto({ host: 'h', ts: 1, v: 1 })], ...identity } as WriteRequest, { forwarded: false, deadlineMs: clock.nowMs() + 30_000 }), 'the write', 200),
      );
      // One region: its part's own error. Before: UNAVAILABLE ("may have applied") — and, without
      // a request id, after a single lookup (a part that may have applied is not resent without one).
      expect(err.code, `${JSON.stringify(identity)}: ${err.message}`).to.equal(ErrorCode.NotLeader);
      expect(lookups(), `${JSON.stringify(identity)}: lookups`).to.be.above(1);
    }
  });
});
