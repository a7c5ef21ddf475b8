// The Database.Batch codec (src/rpc/batch-wire.ts) against the library it replaced: protobufjs
// through @grpc/proto-loader with the options of src/rpc/proto.ts. Both directions, every kind of
// message, unknown fields and protobuf's looser encodings, INVALID_ARGUMENT for malformed bytes,
// and a fuzz holding the decoder to "what proto-loader decodes, or an error".
// Seeded: BATCH_WIRE_SEED=n replays a run; the seed is in the titles and in every failure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { expect } from 'chai';
import { AssertionError } from '../../src/common/assert.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import {
  type BatchRequestInput,
  type BatchResponseInput,
  type RegionOutcomeInput,
  type RowInput,
  type ValueInput,
  databaseService,
  decodeBatchRequest,
  decodeBatchResponse,
  decodeUnaryDeleteRequest,
  decodeUnaryDeleteResponse,
  decodeUnaryGetRequest,
  decodeUnaryGetResponse,
  decodeUnaryWriteRequest,
  decodeUnaryWriteResponse,
  encodeBatchRequest,
  encodeBatchResponse,
  encodeUnaryDeleteRequest,
  encodeUnaryDeleteResponse,
  encodeUnaryGetRequest,
  encodeUnaryGetResponse,
  encodeUnaryWriteRequest,
  encodeUnaryWriteResponse,
} from '../../src/rpc/batch-wire.js';
import { loadProtos, loaderOptions, protoRoot } from '../../src/rpc/proto.js';
import { FUTURE_SCALAR_FIELDS, FUTURE_SCALAR_VALUES, expectInvalid as expectInvalidBy, expectSameObject, key, len, loadProtoVariant, mutate, num, str } from '../support/protobuf-bytes.js';

const SEED = process.env['BATCH_WIRE_SEED'] ? Number(process.env['BATCH_WIRE_SEED']) : 20_260_415;

type Method = grpc.MethodDefinition<unknown, unknown>;

/** Database.Batch as proto-loader serializes it (the reference). */
function loaderBatch(): Method {
  return loadProtos().services.Database.service['Batch'] as Method;
}

// ─── Random messages ──────────────────────────────────────────────────────────────────────────

const UNITS = ['a', 'z', 'Q', '0', '9', ' ', '_', '-', '.', ':', '\u0000', '\n', 'é', 'ü', 'ß', '✓', '中', '\u{1F600}', '\u{10FFFF}', '\uFFFD'];

function randomString(rand: SeededRand): string {
  switch (rand.int(6)) {
    case 0:
      return '';
    case 1:
      return rand.pick(['host-1', 'cpu', 'région', '__proto__x', 'constructor', '127.0.0.1:4001', '30064771072']);
    case 2:
      return 'x'.repeat(rand.range(40, 300)); // past the short-string path
    case 3:
      return Array.from({ length: rand.range(40, 120) }, () => rand.pick(UNITS)).join('');
    default:
      return Array.from({ length: rand.int(12) }, () => rand.pick(UNITS)).join('');
  }
}

const U64_EDGES = ['0', '1', '127', '128', '16383', '16384', '4294967295', '4294967296', '9007199254740991', '9007199254740992', '9223372036854775807', '9223372036854775808', '18446744073709551615'];
const I64_EDGES = ['0', '-1', '1', '-128', '-9007199254740991', '9007199254740991', '-9007199254740992', '-9007199254740993', '-4294967296', '-9223372036854775808', '9223372036854775807'];

/** A uint64/int64 as a caller may give it: a decimal string or (when safe) a number. */
function randomLong(rand: SeededRand, signed: boolean): string | number {
  let text: string;
  if (rand.chance(0.3)) text = rand.pick(signed ? I64_EDGES : U64_EDGES);
  else {
    const magnitude = BigInt(Math.floor(rand.next() * 2 ** rand.range(0, 53))) << BigInt(rand.chance(0.1) ? rand.int(11) : 0);
    text = String(signed && rand.chance(0.4) ? -magnitude : magnitude);
  }
  const n = Number(text);
  return rand.chance(0.3) && Number.isSafeInteger(n) ? n : text;
}

const DOUBLE_EDGES = [0, -0, 1, -1, 0.1, 5e-324, -5e-324, 2.225073858507201e-308, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

function randomDouble(rand: SeededRand): number {
  if (rand.chance(0.3)) return rand.pick(DOUBLE_EDGES);
  if (rand.chance(0.3)) {
    // Any bit pattern: subnormals, NaN payloads, huge and tiny exponents.
    const bytes = Buffer.alloc(8);
    for (let i = 0; i < 8; i++) bytes[i] = rand.int(256);
    return bytes.readDoubleLE(0);
  }
  return (rand.next() - 0.5) * 10 ** rand.range(-10, 15);
}

function randomValue(rand: SeededRand): ValueInput {
  switch (rand.int(7)) {
    case 0:
      return { string_value: randomString(rand) };
    case 1:
      return { int64_value: randomLong(rand, true) };
    case 2:
      return { float64_value: randomDouble(rand) };
    case 3:
      return { bool_value: rand.chance(0.5) };
    case 4:
      return { timestamp_ms_value: randomLong(rand, true) };
    case 5:
      return { null_value: rand.chance(0.9) };
    default:
      return rand.chance(0.5) ? {} : { string_value: '', int64_value: randomLong(rand, true) }; // none, or two members of the oneof
  }
}

const COLUMNS = ['host', 'ts', 'cpu', 'usage', 'région', '', '0', '17', 'a_very_long_column_name_that_goes_on_and_on_and_on_for_a_while'];

function randomRow(rand: SeededRand): RowInput {
  const values: Record<string, ValueInput> = {};
  for (let n = rand.range(0, 6); n > 0; n--) values[rand.pick(COLUMNS)] = randomValue(rand);
  return { values };
}

function randomRows(rand: SeededRand): RowInput[] {
  const count = rand.chance(0.1) ? rand.range(100, 200) : rand.range(1, 8);
  return Array.from({ length: count }, () => randomRow(rand));
}

/** A per-operation timeout as callers give it: absent, 0, an attempt's budget, the uint32 edges, or a fraction (fromObject truncates). */
function randomTimeout(rand: SeededRand): { timeout_ms?: number } {
  if (rand.chance(0.4)) return {};
  return { timeout_ms: rand.pick([0, 1, 127, 128, 999.5, 1000, 30_000, 120_000, 0x7fff_ffff, 0xffff_ffff]) };
}

function randomRequest(rand: SeededRand): BatchRequestInput {
  const req = randomOperation(rand);
  return req.id === undefined ? req : { ...req, ...randomTimeout(rand) };
}

function randomOperation(rand: SeededRand): BatchRequestInput {
  const id = randomLong(rand, false);
  switch (rand.int(7)) {
    case 0:
    case 1:
    case 2:
      return {
        id,
        write: {
          table: randomString(rand),
          ...(rand.chance(0.8) ? { region_id: rand.pick(['30064771072', '', '4294967296']) } : {}),
          rows: randomRows(rand),
          ...(rand.chance(0.8) ? { client_id: randomString(rand), request_id: randomLong(rand, false) } : {}),
          ...(rand.chance(0.5) ? { completed_below: randomLong(rand, false) } : {}),
          ...(rand.chance(0.3) ? { expect_version: randomLong(rand, false) } : {}),
          ...(rand.chance(0.5) ? { expect_absent: rand.chance(0.5) } : {}),
        },
      };
    case 3:
      return {
        id,
        delete: {
          table: randomString(rand),
          region_id: '30064771072',
          keys: randomRows(rand),
          client_id: randomString(rand),
          request_id: randomLong(rand, false),
          ...(rand.chance(0.5) ? { completed_below: randomLong(rand, false) } : {}),
        },
      };
    case 4:
    case 5: {
      const consistency = rand.pick<'LINEARIZABLE' | 'STALE' | number | undefined>(['LINEARIZABLE', 'STALE', 0, 1, undefined]);
      return { id, get: { table: randomString(rand), ...(rand.chance(0.9) ? { key: randomRow(rand) } : {}), ...(consistency === undefined ? {} : { consistency }) } };
    }
    default:
      return rand.chance(0.5) ? { id } : {};
  }
}

/** Per-region outcomes of a routed write (issue 18): none, or a few, enum by name or number. */
function randomOutcomes(rand: SeededRand): RegionOutcomeInput[] | undefined {
  if (rand.chance(0.5)) return undefined;
  return Array.from({ length: rand.int(4) }, () => ({
    region_id: String(randomLong(rand, false)),
    outcome: rand.pick(['OUTCOME_APPLIED', 'OUTCOME_NOT_APPLIED', 'OUTCOME_UNKNOWN', 'OUTCOME_UNSPECIFIED', 2, 7]),
    version: randomLong(rand, false),
    rows: rand.pick([0, 1, 100, 0xffff_ffff]),
    grpc_code: rand.pick([0, 4, 14]),
    code: rand.pick(['', 'NOT_LEADER', 'UNAVAILABLE']),
    message: randomString(rand),
  }));
}

function randomResponse(rand: SeededRand): BatchResponseInput {
  const id = randomLong(rand, false);
  const regions = randomOutcomes(rand);
  switch (rand.int(5)) {
    case 0:
      return { id, write: { version: randomLong(rand, false), rows_written: rand.pick([0, 1, 200, 10_000, 0xffff_ffff]), ...(regions ? { regions } : {}) } };
    case 1:
      return { id, delete: { version: randomLong(rand, false), ...(regions ? { regions } : {}) } };
    case 2:
      return rand.chance(0.7) ? { id, get: { found: true, row: randomRow(rand), version: randomLong(rand, false) } } : { id, get: { found: false, version: '0' } };
    case 3: {
      const details: Record<string, string> = {};
      if (rand.chance(0.5)) details['leaderAddr'] = `127.0.0.1:${rand.range(1, 65535)}`;
      if (rand.chance(0.5)) details['leaderNodeId'] = String(randomLong(rand, false));
      if (rand.chance(0.3)) details['currentVersion'] = String(randomLong(rand, false));
      if (rand.chance(0.2)) details[randomString(rand)] = randomString(rand);
      return {
        id,
        error: { grpc_code: rand.pick([0, 3, 5, 9, 13, 14, 16, 0xffff_ffff]), code: rand.pick(['NOT_LEADER', 'CONDITION_FAILED', '']), message: randomString(rand), details },
      };
    }
    default:
      return { id };
  }
}


// ─── Raw protobuf bytes ───────────────────────────────────────────────────────────────────────

/** A BatchRequest carrying a write of one row with these raw Row.values entries. */
const writeOfEntries = (...entries: number[][]) => [...num(1, 7), ...len(2, [...str(1, 't'), ...len(3, entries.flatMap((e) => len(1, e)))])];

/** Decodes with both; both must succeed with the same object. */
function expectBothDecode(bytes: number[] | Buffer, what: string, kind: 'request' | 'response' = 'request'): unknown {
  const input = Buffer.from(bytes);
  const reference = kind === 'request' ? loaderBatch().requestDeserialize(input) : loaderBatch().responseDeserialize(input);
  const ours = kind === 'request' ? decodeBatchRequest(input) : decodeBatchResponse(input);
  expectSameObject(ours, reference, what);
  return ours;
}

function expectInvalid(input: number[] | Buffer, pattern: RegExp, decode: (b: Uint8Array) => unknown = decodeBatchRequest): void {
  expectInvalidBy(input, pattern, decode);
}

// ─── Unary Write, Delete and Get ──────────────────────────────────────────────────────────────

type UnaryMethod = 'Write' | 'Delete' | 'Get';
interface UnaryCodec {
  readonly encodeRequest: (r: never) => Buffer;
  readonly decodeRequest: (b: Uint8Array) => unknown;
  readonly encodeResponse: (r: never) => Buffer;
  readonly decodeResponse: (b: Uint8Array) => unknown;
  /** The BatchRequest / BatchResponse member that carries this method's message. */
  readonly member: 'write' | 'delete' | 'get';
}
const UNARY: Record<UnaryMethod, UnaryCodec> = {
  Write: { encodeRequest: encodeUnaryWriteRequest, decodeRequest: decodeUnaryWriteRequest, encodeResponse: encodeUnaryWriteResponse, decodeResponse: decodeUnaryWriteResponse, member: 'write' },
  Delete: { encodeRequest: encodeUnaryDeleteRequest, decodeRequest: decodeUnaryDeleteRequest, encodeResponse: encodeUnaryDeleteResponse, decodeResponse: decodeUnaryDeleteResponse, member: 'delete' },
  Get: { encodeRequest: encodeUnaryGetRequest, decodeRequest: decodeUnaryGetRequest, encodeResponse: encodeUnaryGetResponse, decodeResponse: decodeUnaryGetResponse, member: 'get' },
};

/** A unary method as proto-loader serializes it (the reference). */
function loaderUnary(name: UnaryMethod): Method {
  return loadProtos().services.Database.service[name] as Method;
}

/** A random request or response message of `name`, from the Batch generators (their member for this method). */
function randomUnary(rand: SeededRand, name: UnaryMethod, kind: 'request' | 'response'): Record<string, unknown> {
  const member = UNARY[name].member;
  for (;;) {
    const item = (kind === 'request' ? randomOperation(rand) : randomResponse(rand)) as Record<string, unknown>;
    if (item[member]) return item[member] as Record<string, unknown>;
  }
}

// ─── The specification ────────────────────────────────────────────────────────────────────────

/**
 * Ours throws INVALID_ARGUMENT, or returns exactly what proto-loader returns; nothing else.
 * Returns 'both' / 'refused' (ours refused what proto-loader read: deliberate strictness) / 'neither'.
 */
function check(input: Buffer, decode: (b: Uint8Array) => unknown, reference: (b: Buffer) => unknown, what: string): 'both' | 'refused' | 'neither' {
  const failure = (message: string, cause?: unknown) => new Error(`seed ${SEED}, ${what}: ${message} for ${input.toString('hex')}`, { cause });
  let referenceResult: unknown;
  let referenceOk = true;
  try {
    referenceResult = reference(input);
  } catch {
    referenceOk = false;
  }
  let ours: unknown;
  try {
    ours = decode(input);
  } catch (err) {
    if (!isRegionDbError(err, ErrorCode.InvalidArgument)) throw failure(`${(err as Error)?.name}: ${(err as Error)?.message}`, err);
    return referenceOk ? 'refused' : 'neither';
  }
  if (!referenceOk) throw failure('decoded bytes proto-loader refuses');
  try {
    expectSameObject(ours, referenceResult, 'decoded');
  } catch (err) {
    throw failure(`decoded differently from proto-loader: ${(err as Error).message}`, err);
  }
  return 'both';
}

describe(`Database.Batch wire codec (src/rpc/batch-wire.ts, seed ${SEED})`, () => {
  describe('the same objects and bytes as proto-loader', () => {
    it('requests of every kind: our decode of its encoding, and its decode of ours, equal its own round trip', () => {
      const pl = loaderBatch();
      const rand = new SeededRand(SEED);
      for (let i = 0; i < 1500; i++) {
        const req = randomRequest(rand);
        const reference = pl.requestDeserialize(pl.requestSerialize(req));
        expectSameObject(decodeBatchRequest(pl.requestSerialize(req)), reference, `seed ${SEED}, request ${i}: our decode of proto-loader's bytes`);
        const ours = encodeBatchRequest(req);
        expectSameObject(pl.requestDeserialize(ours), reference, `seed ${SEED}, request ${i}: proto-loader's decode of our bytes`);
        expectSameObject(decodeBatchRequest(ours), reference, `seed ${SEED}, request ${i}: our round trip`);
      }
    });

    it('responses of every kind, error items with details: the same both ways', () => {
      const pl = loaderBatch();
      const rand = new SeededRand(SEED + 1);
      for (let i = 0; i < 1500; i++) {
        const res = randomResponse(rand);
        const reference = pl.responseDeserialize(pl.responseSerialize(res));
        expectSameObject(decodeBatchResponse(pl.responseSerialize(res)), reference, `seed ${SEED + 1}, response ${i}: our decode of proto-loader's bytes`);
        const ours = encodeBatchResponse(res);
        expectSameObject(pl.responseDeserialize(ours), reference, `seed ${SEED + 1}, response ${i}: proto-loader's decode of our bytes`);
        expectSameObject(decodeBatchResponse(ours), reference, `seed ${SEED + 1}, response ${i}: our round trip`);
      }
    });

    it('the shapes the service and the client read: oneof names, optional presence, defaults, enum names', () => {
      expect(decodeBatchRequest(encodeBatchRequest({ id: '12', write: { table: 't', rows: [{ values: { host: { string_value: 'a' } } }], client_id: 'c', request_id: '5' } }))).to.deep.equal({
        id: '12',
        timeout_ms: 0,
        write: { rows: [{ values: { host: { string_value: 'a', kind: 'string_value' } } }], table: 't', region_id: '', client_id: 'c', request_id: '5', expect_absent: false, completed_below: '0' },
        request: 'write',
      });
      const conditional = decodeBatchRequest(encodeBatchRequest({ id: 1, write: { rows: [], expect_version: '0' } })).write!;
      expect([conditional.expect_version, conditional._expect_version]).to.deep.equal(['0', 'expect_version']);
      expect(decodeBatchRequest(encodeBatchRequest({ id: '2', get: { table: 't' } }))).to.deep.equal({ id: '2', timeout_ms: 0, get: { table: 't', key: null, consistency: 'LINEARIZABLE' }, request: 'get' });
      expect(decodeBatchRequest(Buffer.alloc(0))).to.deep.equal({ id: '0', timeout_ms: 0 });
      expect(decodeBatchRequest(encodeBatchRequest({ id: '2', get: { table: 't' }, timeout_ms: 250 }))).to.deep.equal({
        id: '2',
        timeout_ms: 250,
        get: { table: 't', key: null, consistency: 'LINEARIZABLE' },
        request: 'get',
      });
      expect(decodeBatchResponse(encodeBatchResponse({ id: '3', error: { grpc_code: 9, code: 'CONDITION_FAILED', message: 'm', details: { currentVersion: '4' } } }))).to.deep.equal({
        id: '3',
        error: { details: { currentVersion: '4' }, grpc_code: 9, code: 'CONDITION_FAILED', message: 'm' },
        response: 'error',
      });
      expect(decodeBatchResponse(encodeBatchResponse({ id: '4', get: { found: false, version: '0' } }))).to.deep.equal({ id: '4', get: { found: false, row: null, version: '0' }, response: 'get' });
    });

    it('the objects our callers pass, exactly as they build them, encode to what proto-loader decodes the same', () => {
      const pl = loaderBatch();
      const row = { values: { host: { string_value: 'h' }, ts: { timestamp_ms_value: '1700000000000' }, v: { float64_value: 0.5 }, b: { null_value: true } } };
      const requests: BatchRequestInput[] = [
        { id: '1', write: { table: 't', region_id: '4294967296', rows: [row], client_id: 'client-1', request_id: '9', expect_version: '3', expect_absent: false } },
        { id: '2', write: { table: 't', region_id: '4294967296', rows: [row], client_id: 'client-1', request_id: '10', expect_absent: true } },
        { id: '3', delete: { table: 't', region_id: '4294967296', keys: [row], client_id: 'client-1', request_id: '11' } },
        { id: '4', get: { table: 't', key: row, consistency: 'STALE' } },
        { id: '9' }, // the cluster test's request without an operation
      ];
      for (const req of requests) expectSameObject(pl.requestDeserialize(encodeBatchRequest(req)), pl.requestDeserialize(pl.requestSerialize(req)), JSON.stringify(req));
      const responses: BatchResponseInput[] = [
        { id: '1', write: { version: '17', rows_written: 1 } },
        { id: '3', delete: { version: '18' } },
        { id: '7', write: { version: '20', rows_written: 3, regions: [{ region_id: '4294967296', outcome: 'OUTCOME_APPLIED', version: '20', rows: 3 }] } },
        { id: '8', delete: { version: '0', regions: [{ region_id: '4294967297', outcome: 'OUTCOME_UNKNOWN', rows: 1, grpc_code: 14, code: 'UNAVAILABLE', message: 'leadership lost' }] } },
        { id: '4', get: { found: true, row, version: '17' } },
        { id: '5', error: { grpc_code: 14, code: 'NOT_LEADER', message: 'region 1 is not served by node 2', details: { leaderAddr: '127.0.0.1:4001', leaderNodeId: '3' } } },
        { id: '6', error: { grpc_code: 13, code: 'INTERNAL', message: 'internal error (logged on the server)', details: {} } },
      ];
      for (const res of responses) expectSameObject(pl.responseDeserialize(encodeBatchResponse(res)), pl.responseDeserialize(pl.responseSerialize(res)), JSON.stringify(res));
    });

    it('timeout_ms (the per-operation deadline): field 5, omitted when absent or 0, decoded as 0 when absent; old and new peers read each other', () => {
      const get = { table: 't' };
      const without = encodeBatchRequest({ id: '2', get });
      const withTimeout = encodeBatchRequest({ id: '2', get, timeout_ms: 1500 });
      // 1500 = 0x5dc: tag 5 varint (0x28), then dc 0b; nothing else changes.
      expect(withTimeout.toString('hex')).to.equal(`${without.toString('hex')}28dc0b`);
      expect(encodeBatchRequest({ id: '2', get, timeout_ms: 0 }).toString('hex')).to.equal(without.toString('hex'));
      expect(encodeBatchRequest({ id: '2', get, timeout_ms: null }).toString('hex')).to.equal(without.toString('hex'));
      expect(decodeBatchRequest(withTimeout).timeout_ms).to.equal(1500);
      expect(decodeBatchRequest(without).timeout_ms).to.equal(0);
      expect(decodeBatchRequest(encodeBatchRequest({ id: '2', timeout_ms: 0xffff_ffff })).timeout_ms).to.equal(0xffff_ffff);
      // A client built on the released database.proto (no field 5) sends what decodes as absent;
      // a server built on it skips the field a new client sends.
      const released = protoLoader.loadSync('regiondb/v1/database.proto', { ...loaderOptions, includeDirs: [join(protoRoot(), '..', 'proto-released')] });
      const old = (released['regiondb.v1.Database'] as protoLoader.ServiceDefinition)['Batch'] as unknown as Method;
      const oldBytes = old.requestSerialize({ id: '2', get });
      expect(Buffer.from(oldBytes).toString('hex')).to.equal(without.toString('hex'));
      expect(decodeBatchRequest(oldBytes)).to.deep.equal({ id: '2', timeout_ms: 0, get: { table: 't', key: null, consistency: 'LINEARIZABLE' }, request: 'get' });
      expect(old.requestDeserialize(withTimeout)).to.deep.equal(old.requestDeserialize(without));
      expectSameObject(decodeBatchRequest(withTimeout), loaderBatch().requestDeserialize(withTimeout), 'timeout_ms: ours and proto-loader');
    });

    it('a map key "__proto__" is an own property, as proto-loader makes it', () => {
      const values: Record<string, ValueInput> = {};
      Object.defineProperty(values, '__proto__', { value: { bool_value: true }, enumerable: true, configurable: true, writable: true });
      const req = { id: '1', write: { rows: [{ values }] } };
      const decoded = decodeBatchRequest(encodeBatchRequest(req));
      expect(Object.keys(decoded.write!.rows[0]!.values)).to.deep.equal(['__proto__']);
      expect(Object.getPrototypeOf(decoded.write!.rows[0]!.values)).to.equal(Object.prototype);
      expectSameObject(decoded, loaderBatch().requestDeserialize(loaderBatch().requestSerialize(req)), '__proto__');
    });

    it('lone surrogates encode as U+FFFD (as Buffer writes them); proto-loader decodes our bytes to that', () => {
      const decoded = loaderBatch().requestDeserialize(encodeBatchRequest({ id: '1', get: { table: 'a\ud800b\udc00' } })) as { get: { table: string } };
      expect(decoded.get.table).to.equal('a\ufffdb\ufffd');
      expect(decodeBatchRequest(encodeBatchRequest({ id: '1', get: { table: `${'x'.repeat(100)}\ud800` } })).get!.table).to.equal(`${'x'.repeat(100)}\ufffd`);
    });

    it('encoding a value that cannot be a uint64/int64, or a row that is not an object, is a bug of the caller (AssertionError)', () => {
      const bad: [BatchRequestInput, RegExp][] = [
        [{ id: 'abc' }, /BatchRequest\.id: expected a decimal integer, got "abc"/],
        [{ id: '' }, /BatchRequest\.id: expected a decimal integer/],
        [{ id: -1 }, /BatchRequest\.id: expected an unsigned safe integer, got -1/],
        [{ id: '-5' }, /BatchRequest\.id: a uint64 cannot be negative/],
        [{ id: 1.5 }, /expected an unsigned safe integer, got 1\.5/],
        [{ id: 2 ** 53 }, /expected an unsigned safe integer/],
        [{ id: '18446744073709551616' }, /out of the range of uint64/],
        [{ write: { rows: [{ values: { a: { int64_value: '9223372036854775808' } } }] } }, /Value\.int64_value: .* out of the range of int64/],
        [{ write: { rows: 'x' as unknown as RowInput[] } }, /WriteRequest\.rows: expected an array/],
        [{ write: { rows: [null as unknown as RowInput] } }, /WriteRequest\.rows\[0\]: expected an object/],
        [{ write: { rows: [{ values: { a: null as unknown as ValueInput } }] } }, /WriteRequest\.rows\[0\]\.values\["a"\]: expected an object/],
        [{ get: 5 as unknown as BatchRequestInput['get'] }, /BatchRequest\.get: expected an object/],
      ];
      for (const [req, pattern] of bad) expect(() => encodeBatchRequest(req), JSON.stringify(req)).to.throw(AssertionError, pattern);
      expect(() => encodeBatchResponse({ id: '1', write: { version: 'x' } })).to.throw(AssertionError, /WriteResponse\.version/);
    });

    it('databaseService(): Batch, Write, Delete and Get use this codec, every other Database method keeps proto-loader serializers', () => {
      const service = databaseService();
      const reference = loadProtos().services.Database.service;
      expect(Object.keys(service).sort()).to.deep.equal(Object.keys(reference).sort());
      for (const [name, method] of Object.entries(service)) {
        if (name === 'Batch') {
          expect(method.requestSerialize).to.equal(encodeBatchRequest);
          expect(method.requestDeserialize).to.equal(decodeBatchRequest);
          expect(method.responseSerialize).to.equal(encodeBatchResponse);
          expect(method.responseDeserialize).to.equal(decodeBatchResponse);
          expect([method.path, method.requestStream, method.responseStream]).to.deep.equal(['/regiondb.v1.Database/Batch', true, true]);
        } else if (name in UNARY) {
          const codec = UNARY[name as UnaryMethod];
          expect([method.requestSerialize, method.requestDeserialize, method.responseSerialize, method.responseDeserialize]).to.deep.equal([
            codec.encodeRequest,
            codec.decodeRequest,
            codec.encodeResponse,
            codec.decodeResponse,
          ]);
          expect([method.path, method.requestStream, method.responseStream]).to.deep.equal([`/regiondb.v1.Database/${name}`, false, false]);
        } else {
          expect(method).to.equal(reference[name]);
        }
      }
    });
  });

  describe('what other encoders may send decodes as proto-loader decodes it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-batch-wire-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    /** Fields the .proto does not have, of every wire type, packed and unpacked: a future sender's. */
    const FUTURE_FIELDS = `${FUTURE_SCALAR_FIELDS}
      repeated uint64 future_packed = 105;
      repeated uint64 future_unpacked = 106 [packed = false];
      FutureMessage future_message = 107;
    `;
    const FUTURE_VALUES = {
      ...FUTURE_SCALAR_VALUES,
      future_packed: ['1', '300', '18446744073709551615'],
      future_unpacked: ['2', '70000'],
      future_message: { a: 'nested' },
    };

    /** Database.Batch of a database.proto/common.proto variant: the future fields in every message. */
    function variantBatch(): Method {
      const withFields = (text: string) => text.replace(/^(message \w+ \{)$/gm, `$1${FUTURE_FIELDS}`);
      const definition = loadProtoVariant(dir, 'regiondb/v1/database.proto', {
        'database.proto': withFields,
        'common.proto': (text) => `${withFields(text)}\nmessage FutureMessage { string a = 1; }\n`,
      });
      return (definition['regiondb.v1.Database'] as protoLoader.ServiceDefinition)['Batch'] as unknown as Method;
    }

    /** Every message of `value` (plain objects) carries the future fields too, except the maps' entries. */
    function withFutureFields(value: unknown, isMap = false): unknown {
      if (Array.isArray(value)) return value.map((v) => withFutureFields(v));
      if (!value || typeof value !== 'object') return value;
      const out: Record<string, unknown> = isMap ? {} : { ...FUTURE_VALUES };
      for (const [k, v] of Object.entries(value)) out[k] = withFutureFields(v, !isMap && (k === 'values' || k === 'details'));
      return out;
    }

    it('unknown fields of every wire type, packed and unpacked, in every message, are skipped as proto-loader skips them', () => {
      const variant = variantBatch();
      const pl = loaderBatch();
      const rand = new SeededRand(SEED + 2);
      for (let i = 0; i < 300; i++) {
        const req = randomRequest(rand);
        const wire = variant.requestSerialize(withFutureFields(req));
        expect(wire.byteLength).to.be.greaterThan(pl.requestSerialize(req).byteLength);
        expectSameObject(decodeBatchRequest(wire), pl.requestDeserialize(wire), `seed ${SEED + 2}, request ${i}`);
        const res = randomResponse(rand);
        const resWire = variant.responseSerialize(withFutureFields(res));
        expectSameObject(decodeBatchResponse(resWire), pl.responseDeserialize(resWire), `seed ${SEED + 2}, response ${i}`);
      }
    });

    it('unknown fields inside map entries, and nested unknown groups, are skipped', () => {
      const group = [...key(20, 3), ...num(1, 5), ...key(21, 3), ...len(2, [1, 2]), ...key(21, 4), ...key(20, 4)];
      expectBothDecode(writeOfEntries([...group, ...str(1, 'host'), ...num(9, 1), ...len(2, [...group, ...str(1, 'h'), ...group])]), 'map entry and value');
      expectBothDecode([...group, ...num(1, 3), ...len(5, [...group, ...len(4, [...str(1, 'k'), ...key(7, 5), 1, 2, 3, 4, ...str(2, 'v')])])], 'error details', 'response');
    });

    it('fields in any order; the last scalar wins; a message field seen twice is replaced, not merged; rows append', () => {
      const ours = expectBothDecode(
        [...len(2, [...num(5, 1), ...len(3, len(1, [...str(1, 'a'), ...len(2, str(1, 'x'))])), ...str(1, 't1'), ...num(5, 2), ...len(3, []), ...str(1, 't2')]), ...num(1, 4), ...len(2, str(2, 'r')), ...num(1, 5)],
        'order',
      ) as { id: string; write: { table: string; request_id: string; region_id: string } };
      expect([ours.id, ours.write.table, ours.write.request_id, ours.write.region_id]).to.deep.equal(['5', '', '0', 'r']);
      const get = expectBothDecode(len(4, [...len(2, len(1, [...str(1, 'a'), ...len(2, num(2, 1))])), ...len(2, len(1, [...str(1, 'b'), ...len(2, num(2, 2))]))]), 'key twice') as {
        get: { key: { values: Record<string, unknown> } };
      };
      expect(Object.keys(get.get.key.values)).to.deep.equal(['b']);
    });

    it('several members of a oneof: all kept, the oneof names the last in field order (protobufjs, not the protobuf spec)', () => {
      expectBothDecode([...len(4, []), ...len(2, []), ...len(3, [])], 'request oneof');
      expectBothDecode([...len(5, []), ...len(2, [])], 'response oneof', 'response');
      expectBothDecode(writeOfEntries([...str(1, 'v'), ...len(2, [...num(6, 1), ...str(1, 's'), ...num(5, -3)])]), 'value oneof');
    });

    it('duplicate map keys: the last value at the first position; an entry without a key is ""', () => {
      expectBothDecode(writeOfEntries([...str(1, 'a'), ...len(2, num(2, 1))], [...str(1, 'b'), ...len(2, [])], [...str(1, 'a'), ...len(2, num(2, 2))], len(2, [])), 'duplicates');
      expectBothDecode([...len(5, [...len(4, str(1, 'k')), ...len(4, str(2, 'only value')), ...len(4, [...str(1, 'k'), ...str(2, 'v')])])], 'details', 'response');
    });

    it('64-bit values over the full range, 10-byte negatives, bits past 64 dropped, non-minimal varints', () => {
      for (const v of [0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, -1n, -(2n ** 53n), -(2n ** 53n) - 1n, -(2n ** 63n)]) {
        expectBothDecode([...num(1, v), ...len(2, len(3, len(1, [...str(1, 'i'), ...len(2, num(2, v))])))], `value ${v}`);
      }
      // The 10th byte's bits past the 64th, and a zero padded to 10 bytes.
      expectBothDecode([...key(1, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], '10th byte 0x7f');
      expectBothDecode([...key(1, 0), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 'padded zero');
      // 32-bit fields: the low 32 bits (a bool of 2^32 is false, as in protobufjs).
      expectBothDecode(len(2, [...num(7, 2n ** 32n), ...num(5, 3)]), 'bool of 2^32');
      expectBothDecode(len(2, [...num(7, 2n ** 32n + 1n)]), 'bool of 2^32 + 1');
      expectBothDecode(len(5, num(1, 2n ** 33n + 7n)), 'uint32 of 2^33 + 7 (5 bytes)', 'response');
      expectBothDecode(len(5, num(1, -2)), 'uint32 as a 10-byte negative', 'response');
    });

    it('an enum value without a name stays a number; a negative one too', () => {
      for (const v of [0, 1, 2, 7, 2 ** 31 - 1, -1, -(2 ** 31)]) expectBothDecode(len(4, num(3, v)), `consistency ${v}`);
    });

    it('invalid UTF-8 decodes as Buffer (and so protobufjs) decodes it', () => {
      for (const bytes of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x61, 0x80, 0x62]]) {
        expectBothDecode(len(4, len(1, bytes)), `table ${Buffer.from(bytes).toString('hex')}`);
      }
    });
  });

  describe('malformed input is INVALID_ARGUMENT with the field and the reason', () => {
    it('a truncated field', () => {
      expectInvalid([0x08, 0xff], /BatchRequest\.id: truncated varint at byte 1/); // the cluster test's malformed message
      expectInvalid([0x80], /BatchRequest tag: truncated varint at byte 0/);
      expectInvalid(len(2, [...key(1, 2), 5, 0x61, 0x62]), /WriteRequest\.table: length 5 at byte 3 runs past the end of its message \(2 bytes left\)/);
      expectInvalid(writeOfEntries([...str(1, 'f'), ...len(2, [...key(3, 1), 1, 2, 3])]), /Value\.float64_value: truncated 8-byte value/);
      expectInvalid([...key(50, 1), 1, 2, 3], /unknown field 50: truncated 8-byte value/);
      expectInvalid([...key(50, 5), 1, 2, 3], /unknown field 50: truncated 4-byte value/);
      expectInvalid([...num(1, 1), ...len(5, [...key(1, 0), 0x80])], /BatchError\.grpc_code: truncated varint at byte 5/, decodeBatchResponse);
    });

    it('a length beyond the buffer, or beyond the enclosing message (never allocated)', () => {
      expectInvalid([...key(2, 2), 0xff, 0xff, 0xff, 0xff, 0x0f], /BatchRequest\.write: length 4294967295 at byte 1 runs past the end/);
      // The write says 3 bytes; the table inside it claims 10.
      expectInvalid([...key(2, 2), 3, ...key(1, 2), 10, 0x61, 0x62, 0x63], /WriteRequest\.table: length 10 at byte 3 runs past the end of its message \(1 bytes left\)/);
      expectInvalid(len(4, [...key(2, 2), 0x80, 0x80, 0x80, 0x80, 0x08]), /GetRequest\.key: length 2147483648/);
    });

    it('a varint longer than 10 bytes, or a 32-bit one of 6 to 9 bytes', () => {
      expectInvalid([...key(1, 0), ...Array(10).fill(0x80), 0x00], /BatchRequest\.id: varint at byte 1 is longer than 10 bytes/);
      expectInvalid([...key(50, 0), ...Array(10).fill(0xff), 0x01], /unknown field 50: varint .* longer than 10 bytes/);
      expectInvalid(len(2, [...key(7, 0), 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]), /WriteRequest\.expect_absent: varint at byte 3 is 6 bytes long; a 32-bit field takes 1 to 5 bytes, or 10/);
      expectInvalid(len(4, [...key(3, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /GetRequest\.consistency: varint .* is 9 bytes long/);
    });

    it('a wire type the .proto does not declare for a known field', () => {
      expectInvalid(len(1, []), /BatchRequest\.id \(field 1\): wire type 2 at byte 0, the \.proto declares 0/);
      expectInvalid(num(2, 1), /BatchRequest\.write \(field 2\): wire type 0/);
      expectInvalid(writeOfEntries([...str(1, 'f'), ...len(2, num(3, 1))]), /Value\.float64_value \(field 3\): wire type 0 .* declares 1/);
      expectInvalid(writeOfEntries(num(1, 1)), /Row\.values entry\.key \(field 1\): wire type 0/);
      expectInvalid(len(5, len(4, num(2, 1))), /BatchError\.details entry\.value \(field 2\): wire type 0/, decodeBatchResponse);
    });

    it('invalid tags and groups: wire types 6 and 7, a lone end-group, field 0, unclosed or mismatched groups, too deep', () => {
      expectInvalid([...key(50, 6)], /unknown field 50: invalid wire type 6/);
      expectInvalid([...key(50, 7)], /invalid wire type 7/);
      expectInvalid([...key(50, 4)], /end-group tag at byte 0 without a group/);
      expectInvalid([0x00], /BatchRequest: invalid tag 0 at byte 0 \(field number 0\)/);
      expectInvalid([...key(50, 3), ...num(1, 1)], /group 50 is not closed/);
      expectInvalid([...key(50, 3), ...key(51, 4)], /group 50 closed by end-group 51/);
      expectInvalid([...Array.from({ length: 102 }, () => key(50, 3)).flat()], /groups nested deeper than protobuf's recursion limit \(100\)/);
    });

    it('a map entry without a value (proto-loader fails on it too), unless a later entry of its key has one', () => {
      expectInvalid(writeOfEntries(str(1, 'a')), /WriteRequest\.rows \(Row at byte \d+\): values\["a"\] is a map entry without a value/);
      expect(() => loaderBatch().requestDeserialize(Buffer.from(writeOfEntries(str(1, 'a'))))).to.throw(TypeError);
      expectBothDecode(writeOfEntries(str(1, 'a'), [...str(1, 'a'), ...len(2, [])]), 'replaced by a later entry');
    });

    it('bytes proto-loader reads anyway are refused on purpose: a string cut short, a truncated varint at the very end', () => {
      const cut = len(2, [...key(1, 2), 5, 0x61]);
      expect(() => loaderBatch().requestDeserialize(Buffer.from(cut))).to.not.throw();
      expectInvalid(cut, /WriteRequest\.table: length 5 at byte 3 runs past the end/);
      const truncated = [...key(1, 0), 0x80, 0x80, 0x80];
      expect(() => loaderBatch().requestDeserialize(Buffer.from(truncated))).to.not.throw();
      expectInvalid(truncated, /BatchRequest\.id: truncated varint at byte 1/);
    });
  });

  describe('fuzz: random bytes and mutated encodings', () => {
    const CASES = Number(process.env['BATCH_WIRE_CASES'] ?? 20_000);

    /** Tags and lengths of BatchRequest/BatchResponse fields, for mutate(). */
    const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x1a, 0x22, 0x28, 0x19, 0x0b, 0x0c, 0x0e, 0x0f];


    for (const kind of ['request', 'response'] as const) {
      it(`${CASES} ${kind}s: decode to what proto-loader decodes, or throw INVALID_ARGUMENT`, () => {
        const pl = loaderBatch();
        const rand = new SeededRand(SEED + (kind === 'request' ? 3 : 4));
        const decode = kind === 'request' ? decodeBatchRequest : decodeBatchResponse;
        const reference = (b: Buffer) => (kind === 'request' ? pl.requestDeserialize(b) : pl.responseDeserialize(b));
        // Small messages, so that mutations land in every field.
        const valid = Array.from({ length: 40 }, () => {
          if (kind === 'response') return encodeBatchResponse(randomResponse(rand));
          const req = randomRequest(rand);
          return encodeBatchRequest(req.write ? { ...req, write: { ...req.write, rows: (req.write.rows as readonly RowInput[] | null | undefined)?.slice(0, 2) } } : req);
        });
        const outcomes = { both: 0, refused: 0, neither: 0 };
        for (let i = 0; i < CASES; i++) {
          const random = rand.chance(0.2);
          const input = random ? Buffer.from(Array.from({ length: rand.int(64) }, () => rand.int(256))) : mutate(rand, rand.pick(valid), INTERESTING);
          outcomes[check(input, decode, reference, `${kind} case ${i} (${random ? 'random' : 'mutated'})`)]++;
        }
        expect(outcomes.both, `seed ${SEED}: some mutations should still decode (${JSON.stringify(outcomes)})`).to.be.greaterThan(CASES / 20);
      });
    }
  });
  describe('unary Write, Delete and Get: the same codec on their own messages', () => {
    const METHODS: UnaryMethod[] = ['Write', 'Delete', 'Get'];

    it('requests and responses of every method: our decode of its encoding, and its decode of ours, equal its own round trip', () => {
      const rand = new SeededRand(SEED + 5);
      for (const name of METHODS) {
        const pl = loaderUnary(name);
        const codec = UNARY[name];
        for (let i = 0; i < 500; i++) {
          for (const kind of ['request', 'response'] as const) {
            const message = randomUnary(rand, name, kind);
            const [serialize, deserialize] = kind === 'request' ? [pl.requestSerialize, pl.requestDeserialize] : [pl.responseSerialize, pl.responseDeserialize];
            const [encode, decode] = kind === 'request' ? [codec.encodeRequest, codec.decodeRequest] : [codec.encodeResponse, codec.decodeResponse];
            const what = `seed ${SEED + 5}, ${name} ${kind} ${i}`;
            const reference = deserialize(serialize(message));
            expectSameObject(decode(serialize(message)), reference, `${what}: our decode of proto-loader's bytes`);
            const ours = (encode as (m: unknown) => Buffer)(message);
            expectSameObject(deserialize(ours), reference, `${what}: proto-loader's decode of our bytes`);
            expectSameObject(decode(ours), reference, `${what}: our round trip`);
          }
        }
      }
    });

    it("unknown groups nested up to protobuf's recursion limit: refused exactly where proto-loader refuses them, at the top and in a row", () => {
      // A top-level message is one level shallower than a Batch item's operation, and protobufjs
      // counts message depth: a decoder counting it as inside a Batch refuses one level too early.
      const groups = (n: number) => [...Array.from({ length: n }, () => key(50, 3)).flat(), ...Array.from({ length: n }, () => key(50, 4)).flat()];
      const inRow = (n: number) => [...str(1, 't'), ...len(3, groups(n))];
      for (const [what, bytesOf] of [['WriteRequest', groups], ['a row of a WriteRequest', inRow]] as const) {
        const verdicts: string[] = [];
        for (let n = 95; n <= 104; n++) {
          const input = Buffer.from(bytesOf(n));
          let reference = true;
          try {
            loaderUnary('Write').requestDeserialize(input);
          } catch {
            reference = false;
          }
          let ours = true;
          try {
            decodeUnaryWriteRequest(input);
          } catch (err) {
            if (!isRegionDbError(err, ErrorCode.InvalidArgument)) throw err;
            ours = false;
          }
          verdicts.push(`${n}: ${reference ? 'read' : 'refused'}`);
          expect(ours, `${what} with ${n} nested groups: proto-loader ${reference ? 'reads' : 'refuses'} it`).to.equal(reference);
        }
        expect(verdicts, `${what}: the limit is inside the range tried`).to.include.members(['95: read', '104: refused']);
      }
    });

    it('fuzz: mutated encodings of every method decode to what proto-loader decodes, or throw INVALID_ARGUMENT', () => {
      const CASES = Number(process.env['BATCH_WIRE_CASES'] ?? 20_000) / 4;
      const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x1a, 0x22, 0x28, 0x30, 0x38, 0x19, 0x0b, 0x0c, 0x0e, 0x0f];
      const rand = new SeededRand(SEED + 6);
      for (const name of METHODS) {
        const pl = loaderUnary(name);
        const codec = UNARY[name];
        for (const kind of ['request', 'response'] as const) {
          const [encode, decode, reference] = kind === 'request' ? [codec.encodeRequest, codec.decodeRequest, pl.requestDeserialize] : [codec.encodeResponse, codec.decodeResponse, pl.responseDeserialize];
          const valid = Array.from({ length: 20 }, () => {
            const m = randomUnary(rand, name, kind);
            return (encode as (m: unknown) => Buffer)(Array.isArray(m['rows']) ? { ...m, rows: (m['rows'] as unknown[]).slice(0, 2) } : m);
          });
          let both = 0;
          for (let i = 0; i < CASES; i++) {
            const input = mutate(rand, rand.pick(valid), INTERESTING);
            if (check(input, decode as (b: Uint8Array) => unknown, reference as (b: Buffer) => unknown, `${name} ${kind} case ${i}`) === 'both') both++;
          }
          expect(both, `seed ${SEED + 6}, ${name} ${kind}: some mutations should still decode`).to.be.greaterThan(CASES / 20);
        }
      }
    });
  });
});
