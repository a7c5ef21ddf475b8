// Hostile-input fuzzing (issue 10): random and mutated bytes
//   (a) at every gRPC method of a real in-process metasrv + datanode, sent raw (identity
//       serializers, so nothing on the client side filters them): every answer is a clean
//       status (never INTERNAL/UNKNOWN), nothing throws out of the process, and afterwards the
//       servers still serve a normal write and read;
//   (b) at every decoder of untrusted or on-disk bytes (WAL records, raft messages, engine
//       commands, region state / manifests, the metasrv catalog, SSTs): each returns a value or
//       throws a RegionDbError, never a TypeError/RangeError, never hangs.
// Cases: FUZZ_RUNS per property (default 300; `make test-fuzz` runs 10,000). Seed: FUZZ_SEED
// (default fixed; printed in the titles); a failure names the property's seed and path.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import fc from 'fast-check';
import { RegionDbClient } from '../../src/client/client.js';
import { datanodeConfigSchema, metasrvConfigSchema } from '../../src/common/config.js';
import { crc32c } from '../../src/common/crc32c.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { createLogger, silentLogger } from '../../src/common/logger.js';
import { Datanode } from '../../src/datanode/datanode.js';
import { type Command, RegionState, type TableSchema, decodeCommand, encodeCommand } from '../../src/engine/index.js';
import { SstReader, buildSst, sstSourceFromBytes } from '../../src/engine/sst/format.js';
import { emptyCatalog } from '../../src/metasrv/catalog.js';
import { decodeCatalog, encodeCatalog } from '../../src/metasrv/catalog-store.js';
import { Metasrv } from '../../src/metasrv/metasrv.js';
import { UserStore, authorizationHeader, hashPassword } from '../../src/rpc/auth.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { decodeRaftBatch, encodeRaftBatch } from '../../src/rpc/raft-wire.js';
import type { MessageType } from '../../src/raft/index.js';
import {
  decodeEntry,
  decodeHardState,
  decodeMeta,
  decodeSnapshot,
  decodeTruncated,
  encodeEntry,
  encodeHardState,
  encodeMeta,
  encodeSnapshot,
  encodeTruncated,
  frame,
} from '../../src/wal/record.js';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 300);
const SEED = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : 20_251_125;
/** FUZZ_VERBOSE=1 prints what the servers log at error level (the cause of an INTERNAL answer). */
const serverLog = process.env['FUZZ_VERBOSE'] ? createLogger({ name: 'fuzz', level: 'error' }) : silentLogger;
const params = (offset: number): fc.Parameters<unknown> => ({ numRuns: RUNS, seed: SEED + offset, endOnFailure: true });

// ─── Mutations ────────────────────────────────────────────────────────────────────────────────

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; length: number }
  | { op: 'duplicate'; at: number; length: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x22, 0x7b) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
);

function applyMutation(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.byteLength;
  const at = n === 0 ? 0 : m.at % n;
  const b = Buffer.from(bytes);
  switch (m.op) {
    case 'flip':
      if (n > 0) b[at]! ^= 1 << m.bit;
      return b;
    case 'set':
      if (n > 0) b[at] = m.value;
      return b;
    case 'truncate':
      return b.subarray(0, at);
    case 'insert':
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
    case 'duplicate':
      return Buffer.concat([b.subarray(0, at + m.length), b.subarray(at)]);
  }
}

/** Valid bytes, mutated 1–4 times; or (one case in five) random bytes. */
function hostile(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const mutated = fc
    .tuple(valid, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
    .map(([bytes, ms]) => ms.reduce((acc, m) => applyMutation(acc, m), bytes));
  return fc.oneof({ weight: 4, arbitrary: mutated }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) });
}

/** The decoder returns or throws a RegionDbError; anything else fails the property with the error. */
function expectTyped(decode: () => unknown): void {
  try {
    decode();
  } catch (err) {
    if (!isRegionDbError(err)) throw new Error(`untyped error ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
  }
}

async function expectTypedAsync(decode: () => Promise<unknown>): Promise<void> {
  try {
    await decode();
  } catch (err) {
    if (!isRegionDbError(err)) throw new Error(`untyped error ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
  }
}

const safeNat = fc.nat({ max: 2 ** 40 });
const bytesArb = fc.uint8Array({ maxLength: 64 });

// ─── (b) decoders ─────────────────────────────────────────────────────────────────────────────

const schema: TableSchema = {
  name: 'fz',
  tableId: 7,
  regionCount: 1,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'usage', type: 'float64', semantic: 'field' },
  ],
};

const valueArb = fc.oneof(fc.constant(null), fc.string({ maxLength: 8 }), fc.integer({ min: -1000, max: 1000 }), fc.boolean());
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant('write' as const),
    clientId: fc.string({ maxLength: 12 }),
    requestId: safeNat,
    rows: fc.array(fc.array(valueArb, { maxLength: 3 }), { maxLength: 3 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), clientId: fc.string({ maxLength: 12 }), requestId: safeNat, keys: fc.array(fc.array(valueArb, { maxLength: 2 }), { maxLength: 3 }) }),
);

/** [version][crc32c][body]: the framing of manifests and catalogs, recomputed so mutations reach the body parser. */
function reframe(version: number, body: Uint8Array, lengthField: boolean): Uint8Array {
  const header = lengthField ? 9 : 5;
  const out = new Uint8Array(header + body.byteLength);
  const view = new DataView(out.buffer);
  out[0] = version;
  view.setUint32(1, crc32c(body));
  if (lengthField) view.setUint32(5, body.byteLength);
  out.set(body, header);
  return out;
}

describe(`fuzz: decoders reject corrupted input with a typed error (runs ${RUNS}, seed ${SEED})`, function () {
  this.timeout(0);

  it('WAL records: entries, hard states, truncation points, snapshots, region meta', () => {
    const entryArb = fc.record({ term: safeNat, index: safeNat, type: fc.constantFrom(0, 1), data: bytesArb }).map(encodeEntry);
    const hardArb = fc.record({ term: safeNat, vote: safeNat, commit: safeNat }).map(encodeHardState);
    const truncArb = fc.record({ index: safeNat, term: safeNat }).map(encodeTruncated);
    const snapArb = fc
      .record({ index: safeNat, term: safeNat, voters: fc.array(safeNat, { maxLength: 5 }), learners: fc.array(safeNat, { maxLength: 3 }), data: bytesArb })
      .map((s) => encodeSnapshot({ metadata: { index: s.index, term: s.term, confState: { voters: s.voters, learners: s.learners } }, data: s.data }));
    const decoders = [decodeEntry, decodeHardState, decodeTruncated, decodeSnapshot, decodeMeta];
    const anyRecord = fc.oneof(entryArb, hardArb, truncArb, snapArb, bytesArb.map(encodeMeta));
    // Mutated records (mostly stopped by the CRC), and mutated payloads in a valid frame (reach the field parsers).
    const reframed = hostile(anyRecord.map((r) => r.subarray(9))).map(frame);
    fc.assert(
      fc.property(fc.oneof(hostile(anyRecord), reframed), (record) => {
        for (const decode of decoders) expectTyped(() => decode(record));
      }),
      params(1),
    );
  });

  it('raft messages: protobuf bytes of a RaftBatch, through the raft stream codec', () => {
    const messageArb = fc
      .record({
        type: fc.integer({ min: 1, max: 13 }),
        from: safeNat,
        to: safeNat,
        term: safeNat,
        logTerm: safeNat,
        index: safeNat,
        commit: safeNat,
        entries: fc.array(fc.record({ term: safeNat, index: safeNat, type: fc.constantFrom(0 as const, 1 as const), data: bytesArb }), { maxLength: 3 }),
        snapshot: fc.option(fc.record({ index: safeNat, term: safeNat, voters: fc.array(safeNat, { maxLength: 3 }), data: bytesArb }), { nil: null }),
      })
      .map((m) => ({
        ...m,
        type: m.type as MessageType,
        reject: false,
        rejectHint: 0,
        context: new Uint8Array(0),
        snapshot: m.snapshot ? { metadata: { index: m.snapshot.index, term: m.snapshot.term, confState: { voters: m.snapshot.voters, learners: [] } }, data: m.snapshot.data } : null,
      }));
    const batchArb = fc
      .array(fc.tuple(fc.stringMatching(/^\d{1,20}$/), messageArb), { minLength: 1, maxLength: 3 })
      .map((envs) => new Uint8Array(encodeRaftBatch({ clusterId: 'c', fromNodeId: 2, envelopes: envs.map(([regionId, message]) => ({ regionId, message })) })));
    let decodedBatches = 0;
    fc.assert(
      fc.property(hostile(batchArb), (bytes) => {
        expectTyped(() => {
          decodeRaftBatch(bytes);
          decodedBatches++;
        });
      }),
      params(2),
    );
    // Decoding validates the raft rules too (types, snapshots), so fewer mutants pass than plain protobuf parsing.
    expect(decodedBatches, 'mutations should often still decode').to.be.greaterThan(RUNS / 20);
  });

  it('engine commands', () => {
    fc.assert(
      fc.property(hostile(commandArb.map(encodeCommand)), (bytes) => expectTyped(() => decodeCommand(bytes))),
      params(3),
    );
  });

  it('region state (raft snapshot data = manifest)', () => {
    const state = new RegionState(schema, '30064771072');
    const valid = state.serialize();
    const body = fc.constant(valid.subarray(5));
    fc.assert(
      fc.property(fc.oneof(hostile(fc.constant(valid)), hostile(body).map((b) => reframe(valid[0]!, b, false))), (bytes) =>
        expectTyped(() => RegionState.deserialize(schema, bytes, '30064771072')),
      ),
      params(4),
    );
  });

  it('metasrv catalog', () => {
    const catalog = emptyCatalog('fz-cluster');
    const valid = encodeCatalog(catalog);
    fc.assert(
      fc.property(fc.oneof(hostile(fc.constant(valid)), hostile(fc.constant(valid.subarray(9))).map((b) => reframe(valid[0]!, b, true))), (bytes) =>
        expectTyped(() => decodeCatalog(bytes, 'fuzz')),
      ),
      params(5),
    );
  });

  it('authorization headers: anything but valid credentials is UNAUTHENTICATED', async () => {
    const usersFile = join(mkdtempSync(join(tmpdir(), 'regiondb-fuzz-users-')), 'users.toml');
    writeFileSync(usersFile, `[[users]]\nname = "u"\nrole = "read-only"\npassword_hash = "${await hashPassword('p')}"\n`);
    const users = new UserStore(usersFile);
    const valid = fc.constantFrom(authorizationHeader({ user: 'u', password: 'p' }), authorizationHeader({ token: 'rdb_x' }));
    const headerArb = fc.oneof(
      hostile(valid.map((h) => new TextEncoder().encode(h))).map((b) => Buffer.from(b).toString('latin1')),
      fc.string({ maxLength: 64 }),
      fc.tuple(fc.constantFrom('Basic ', 'Bearer ', 'basic ', 'Digest '), fc.string({ maxLength: 40 })).map(([a, b]) => a + b),
    );
    await fc.assert(
      fc.asyncProperty(headerArb, async (header) => {
        try {
          // Success only for u:p (base64 decoding skips stray characters, so not only the exact header).
          const who = await users.authenticate(header);
          expect(who.name).to.equal('u');
          expect(header.slice(0, 6).toLowerCase()).to.equal('basic ');
        } catch (err) {
          if (!isRegionDbError(err, ErrorCode.Unauthenticated)) throw err;
        }
      }),
      { ...params(8), numRuns: Math.min(RUNS, 300) }, // each miss costs one scrypt (~50 ms / 4 threads)
    );
    rmSync(join(usersFile, '..'), { recursive: true, force: true });
  });

  it('SSTs: open, then get and scan everything', async () => {
    const entries = Array.from({ length: 40 }, (_, i) => {
      const key = new Uint8Array(12); // a 4-byte tag, then the timestamp with its sign bit flipped (key.ts)
      new DataView(key.buffer).setUint32(0, i);
      key[4] = 0x80;
      return { key, version: i + 1, value: i % 7 === 0 ? null : new TextEncoder().encode(`value-${i}`) };
    });
    const { bytes: valid } = buildSst(entries, { blockTargetBytes: 128 });
    await fc.assert(
      fc.asyncProperty(hostile(fc.constant(valid)), async (bytes) => {
        await expectTypedAsync(async () => {
          const reader = await SstReader.open(sstSourceFromBytes('fuzz.sst', bytes));
          for await (const _ of reader.scan()) void _;
          await reader.get(entries[5]!.key);
        });
      }),
      params(6),
    );
  });
});

// ─── (a) every gRPC method of a live metasrv + datanode ──────────────────────────────────────

/**
 * A valid request per method: mutations of these reach the handlers; random bytes test the
 * decoder. A method added later without a sample is fuzzed from an empty request.
 */
const SAMPLE_REQUESTS: Record<string, Record<string, unknown>> = {
  Database: {
    // Invalid on purpose (two tags, no timestamp): mutations rarely make tables.
    CreateTable: { name: 'fz_new', columns: [{ name: 'a', type: 'STRING', semantic: 'TAG' }, { name: 'b', type: 'STRING', semantic: 'TAG' }], region_count: 1 },
    DropTable: { name: 'fz_absent' },
    DescribeTable: { name: 'fz' },
    Write: { table: 'fz', rows: [{ values: { host: { string_value: 'a' }, ts: { timestamp_ms_value: '1700000000000' }, usage: { float64_value: 1.5 } } }], client_id: 'fz', request_id: '1' },
    Delete: { table: 'fz', keys: [{ values: { host: { string_value: 'a' }, ts: { timestamp_ms_value: '1700000000000' } } }] },
    Get: { table: 'fz', key: { values: { host: { string_value: 'a' }, ts: { timestamp_ms_value: '1700000000000' } } }, consistency: 'LINEARIZABLE' },
    Scan: { table: 'fz', start_ms: '0', end_ms: '1800000000000', limit: '10', consistency: 'STALE' },
  },
  Admin: {
    Status: {},
    TransferLeader: { region_id: '30064771072', to_node_id: '1' },
    OpenRegion: { region_id: '99999', table: { name: 'x', table_id: 1, columns: [], region_count: 1 }, peers: [{ peer_id: '1', node_id: '9', addr: '127.0.0.1:1' }], self_peer_id: '1', bootstrap: true },
    Flush: { region_id: '' },
    Compact: { region_id: '' },
  },
  Meta: {
    RegisterNode: { cluster_id: 'other', node_id: '77', addr: '127.0.0.1:1', http_addr: '127.0.0.1:1' },
    Heartbeat: { cluster_id: 'fz-cluster', node_id: '77', addr: '127.0.0.1:1', replicas: [] },
    GetRoutes: { table: 'fz' },
    CreateTable: { name: 'fz_new', columns: [{ name: 'a', type: 'STRING', semantic: 'TAG' }], region_count: 1 },
    DropTable: { name: 'fz_absent' },
    ListNodes: {},
    StartProcedure: { kind: 'transfer-leader', region_id: '1', node_id: '1' },
  },
  RaftTransport: {
    Stream: { cluster_id: 'fz-cluster', from_node_id: '2', envelopes: [{ region_id: '30064771072', message: { type: 3, from: '2', to: '1', term: '1' } }] },
  },
};

/** Statuses a server may answer hostile input with; INTERNAL and UNKNOWN mean a handler crashed. */
const CLEAN = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.UNAVAILABLE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.DATA_LOSS,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.CANCELLED,
]);

interface Target {
  service: string;
  method: string;
  addr: string;
  definition: grpc.MethodDefinition<unknown, unknown>;
}

const identity = (b: Buffer) => b;

function send(client: grpc.Client, t: Target, bytes: Buffer): Promise<grpc.status> {
  const deadline = Date.now() + 3000;
  const { requestStream, responseStream, path } = t.definition;
  return new Promise((resolve) => {
    if (!requestStream && !responseStream) {
      client.makeUnaryRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline }, (err) => resolve(err ? err.code : grpc.status.OK));
      return;
    }
    const call = requestStream
      ? client.makeBidiStreamRequest(path, identity, identity, new grpc.Metadata(), { deadline })
      : client.makeServerStreamRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline });
    call.on('data', () => {});
    call.on('error', (err: grpc.ServiceError) => resolve(err.code));
    call.on('status', (s: grpc.StatusObject) => resolve(s.code));
    if (requestStream) {
      const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
      duplex.write(bytes);
      duplex.write(bytes);
      duplex.end();
    }
  });
}

describe(`fuzz: every gRPC method of a live metasrv + datanode (runs ${RUNS}, seed ${SEED})`, function () {
  this.timeout(0);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-fuzz-'));
  let metasrv: Metasrv;
  let datanode: Datanode;
  let client: RegionDbClient;
  const raw = new Map<string, grpc.Client>();
  const crashes: unknown[] = [];
  const onCrash = (err: unknown) => crashes.push(err);

  before(async () => {
    process.on('uncaughtException', onCrash);
    process.on('unhandledRejection', onCrash);
    metasrv = new Metasrv(
      metasrvConfigSchema.parse({ cluster_id: 'fz-cluster', node: { data_dir: join(dir, 'metasrv') }, grpc: { port: 0 }, http: { port: 0 }, balance_leaders_interval_ms: 0 }),
      serverLog,
      1,
    );
    await metasrv.start();
    datanode = new Datanode(
      datanodeConfigSchema.parse({
        cluster_id: 'fz-cluster',
        node: { id: 1, data_dir: join(dir, 'datanode1') },
        grpc: { port: 0 },
        http: { port: 0 },
        metasrv: { addr: `127.0.0.1:${metasrv.grpcPort}` },
        heartbeat: { interval_ms: 200 },
        storage: { type: 'fs', root: join(dir, 'objects') },
      }),
      serverLog,
    );
    await datanode.start();
    client = new RegionDbClient({ metasrv: `127.0.0.1:${metasrv.grpcPort}`, deadlineMs: 15_000 });
    await createTable('fz');
    await client.write('fz', [{ host: 'a', ts: 1_700_000_000_000, usage: 1 }]);
  });

  after(async () => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    client?.close();
    for (const c of raw.values()) c.close();
    await datanode?.stop();
    await metasrv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function createTable(name: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await client.createTable(
          name,
          [
            { name: 'host', type: 'string', semantic: 'tag' },
            { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
            { name: 'usage', type: 'float64', semantic: 'field' },
          ],
          1,
        );
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err; // the datanode has not registered yet: retry
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  function targets(): Target[] {
    const { services } = loadProtos();
    const out: Target[] = [];
    const at = (service: 'Database' | 'Admin' | 'RaftTransport' | 'Meta', addr: string) => {
      for (const [method, definition] of Object.entries(services[service].service)) out.push({ service, method, addr, definition });
    };
    const dn = `127.0.0.1:${datanode.grpcPort}`;
    at('Database', dn);
    at('Admin', dn);
    at('RaftTransport', dn);
    at('Meta', `127.0.0.1:${metasrv.grpcPort}`);
    return out;
  }

  it('answers random and mutated requests to every method with a clean status, and stays healthy', async () => {
    const all = targets();
    const caseArb = fc.integer({ min: 0, max: all.length - 1 }).chain((i) => {
      const t = all[i]!;
      const sample = t.definition.requestSerialize(SAMPLE_REQUESTS[t.service]?.[t.method] ?? {}) as Buffer;
      return fc.tuple(fc.constant(`${t.service}.${t.method}`), hostile(fc.constant(new Uint8Array(sample))));
    });
    const byName = new Map(all.map((t) => [`${t.service}.${t.method}`, t]));
    const seen = new Map<string, Map<grpc.status, number>>();
    /** First unclean answer per method: all of them are reported, not just the first found. */
    const unclean = new Map<string, string>();
    await fc.assert(
      fc.asyncProperty(caseArb, async ([name, bytes]) => {
        const t = byName.get(name)!;
        let c = raw.get(`${t.service}@${t.addr}`);
        if (!c) raw.set(`${t.service}@${t.addr}`, (c = new grpc.Client(t.addr, grpc.credentials.createInsecure())));
        const code = await send(c, t, Buffer.from(bytes));
        const counts = seen.get(name) ?? new Map<grpc.status, number>();
        counts.set(code, (counts.get(code) ?? 0) + 1);
        seen.set(name, counts);
        if (!CLEAN.has(code) && !unclean.has(name)) unclean.set(name, `${grpc.status[code]} to ${Buffer.from(bytes).toString('hex')}`);
      }),
      params(7),
    );
    expect([...unclean].map(([name, what]) => `${name} answered ${what}`)).to.deep.equal([]);
    if (process.env['FUZZ_VERBOSE']) {
      for (const [k, counts] of seen) console.log(`      ${k}: ${[...counts].map(([c, n]) => `${grpc.status[c]}×${n}`).join(' ')}`);
    }
    expect(crashes).to.deep.equal([]);
    expect(datanode.health()['status']).to.equal('ok');
    // Still serving DDL, writes and reads (a fresh table: mutated DropTables may have hit 'fz').
    await createTable('fz_after');
    await client.write('fz_after', [{ host: 'after', ts: 1_700_000_000_001, usage: 2 }]);
    const row = await client.get('fz_after', { host: 'after', ts: 1_700_000_000_001 });
    expect(row?.row['usage']).to.equal(2);
  });
});
