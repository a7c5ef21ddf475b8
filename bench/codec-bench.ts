// make bench-codec: encode + decode per message, in ns, for representative raft and Batch stream
// messages, with three codecs of the same protos:
//   hand     our hand-written codecs (src/rpc/raft-wire.ts, src/rpc/batch-wire.ts), on the shapes
//            the product uses (raft: src/raft/types.ts objects; Batch: proto-loader's objects);
//   runtime  proto-loader / protobufjs reflection, i.e. the serializers grpc-js would use
//            without our codecs (fromObject + encode, decode + toObject with src/rpc/proto.ts's
//            loader options);
//   ts-proto a generated static codec, ts-proto 2.18.0 (static encode/decode functions over
//            @bufbuild/protobuf's BinaryWriter/BinaryReader), on its own generated interfaces.
//            For raft also "ts-proto+conv": plus the conversion to and from src/raft/types.ts
//            objects that switching the raft transport to it would need.
// The ts-proto code lives in bench/generated/ts-proto (benchmark only, not product code), made by
//   node_modules/.bin/buf generate --template bench/codec/buf.gen.yaml      (make bench-codec-gen)
// (options in bench/codec/buf.gen.yaml: snake_case field names, 64-bit integers as strings).
//
// Before timing, every case checks that the codecs do the same work: each codec's bytes decoded by
// every codec give the same message (agree(); also test/unit/codec-bench.test.ts), and reports
// which outputs are byte-identical. Timing: codecs alternate within each round (the order rotates
// each round), each sample runs a calibrated number of iterations (~SAMPLE_MS), medians over
// CODEC_BENCH_ROUNDS rounds (default 25). Runs in about 5 s; results: docs/performance.md.
import { performance } from 'node:perf_hooks';
import { SeededRand } from '../src/common/rand.js';
import { EntryType, type Message, MessageType, makeMessage } from '../src/raft/types.js';
import { decodeBatchRequest, decodeBatchResponse, encodeBatchRequest, encodeBatchResponse } from '../src/rpc/batch-wire.js';
import type { BatchRequest as PlBatchRequest, BatchResponse as PlBatchResponse } from '../src/rpc/generated/index.js';
import { loadProtos } from '../src/rpc/proto.js';
import { type RaftBatch, decodeRaftBatch, encodeRaftBatch } from '../src/rpc/raft-wire.js';
import * as tsDatabase from './generated/ts-proto/regiondb/v1/database.js';
import * as tsRaft from './generated/ts-proto/regiondb/v1/raft.js';

/** One codec of one message: encode the codec's object, decode bytes back to the codec's shape. */
export interface Codec {
  readonly name: string;
  readonly object: unknown;
  encode(object: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
  /** The decoded object in one form shared by every codec of the case (for agree()). */
  canonical(decoded: unknown): unknown;
}

export interface Case {
  readonly name: string;
  readonly codecs: readonly Codec[];
}

// ─── Messages ─────────────────────────────────────────────────────────────────────────────────

const REGION_ID = '4398046511104';
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** A raft AppendEntries (MsgApp) with `entries` entries of 128 seeded bytes, in one envelope. */
export function appendEntries(entries: number, seed = 1): RaftBatch {
  const rand = new SeededRand(seed);
  const message = makeMessage({
    type: MessageType.Append,
    from: 1,
    to: 2,
    term: 7,
    logTerm: 7,
    index: 100_000,
    commit: 99_990,
    entries: Array.from({ length: entries }, (_, i) => ({
      term: 7,
      index: 100_001 + i,
      type: EntryType.Normal,
      data: Uint8Array.from({ length: 128 }, () => rand.int(256)),
    })),
  });
  return { clusterId: 'bench-cluster', fromNodeId: 1, envelopes: [{ regionId: REGION_ID, message }] };
}

interface RaftCanonical {
  cluster: string;
  from: string;
  envelopes: { region: string; type: number; from: string; to: string; term: string; logTerm: string; index: string; commit: string; reject: boolean; hint: string; context: string; entries: string[] }[];
}

function canonicalFromDomain(b: RaftBatch): RaftCanonical {
  return {
    cluster: b.clusterId,
    from: String(b.fromNodeId),
    envelopes: b.envelopes.map(({ regionId, message: m }) => ({
      region: regionId,
      type: m.type,
      from: String(m.from),
      to: String(m.to),
      term: String(m.term),
      logTerm: String(m.logTerm),
      index: String(m.index),
      commit: String(m.commit),
      reject: m.reject,
      hint: String(m.rejectHint),
      context: hex(m.context),
      entries: m.entries.map((e) => `${e.term}/${e.index}/${e.type}/${hex(e.data)}`),
    })),
  };
}

/** proto-loader's and ts-proto's shapes agree on field names (snake_case) and 64-bit strings. */
interface PlainRaft {
  cluster_id: string;
  from_node_id: string;
  envelopes: {
    region_id: string;
    message: { type: number; from: string; to: string; term: string; log_term: string; index: string; commit: string; reject: boolean; reject_hint: string; context: Uint8Array; entries: { term: string; index: string; type: number; data: Uint8Array }[] } | null | undefined;
  }[];
}

function canonicalFromPlain(b: PlainRaft): RaftCanonical {
  return {
    cluster: b.cluster_id,
    from: String(b.from_node_id),
    envelopes: b.envelopes.map(({ region_id, message: m }) => {
      if (!m) throw new Error('envelope without a message');
      return {
        region: region_id,
        type: m.type,
        from: String(m.from),
        to: String(m.to),
        term: String(m.term),
        logTerm: String(m.log_term),
        index: String(m.index),
        commit: String(m.commit),
        reject: m.reject,
        hint: String(m.reject_hint),
        context: hex(m.context),
        entries: m.entries.map((e) => `${e.term}/${e.index}/${e.type}/${hex(e.data)}`),
      };
    }),
  };
}

/** The domain batch as ts-proto's generated interface (and as proto-loader's fromObject takes it). */
export function toTsProtoRaft(b: RaftBatch): tsRaft.RaftTransportStreamRequest {
  return {
    cluster_id: b.clusterId,
    from_node_id: String(b.fromNodeId),
    envelopes: b.envelopes.map(({ regionId, message: m }) => ({
      region_id: regionId,
      message: {
        type: m.type,
        from: String(m.from),
        to: String(m.to),
        term: String(m.term),
        log_term: String(m.logTerm),
        index: String(m.index),
        entries: m.entries.map((e) => ({ term: String(e.term), index: String(e.index), type: e.type, data: e.data })),
        commit: String(m.commit),
        reject: m.reject,
        reject_hint: String(m.rejectHint),
        snapshot: undefined,
        context: m.context,
      },
    })),
  };
}

/** ts-proto's decoded batch as src/raft/types.ts objects (snapshots not needed for MsgApp). */
export function fromTsProtoRaft(b: tsRaft.RaftTransportStreamRequest): RaftBatch {
  return {
    clusterId: b.cluster_id,
    fromNodeId: Number(b.from_node_id),
    envelopes: b.envelopes.map(({ region_id, message: m }) => {
      if (!m) throw new Error('envelope without a message');
      const message: Message = makeMessage({
        type: m.type as MessageType,
        from: Number(m.from),
        to: Number(m.to),
        term: Number(m.term),
        logTerm: Number(m.log_term),
        index: Number(m.index),
        entries: m.entries.map((e) => ({ term: Number(e.term), index: Number(e.index), type: e.type as EntryType, data: e.data })),
        commit: Number(m.commit),
        reject: m.reject,
        rejectHint: Number(m.reject_hint),
        context: m.context,
      });
      return { regionId: region_id, message };
    }),
  };
}

/** A Batch stream write of `rows` rows (host tag, ts timestamp, usage float), proto-loader's shape. */
export function batchWrite(rows: number): PlBatchRequest {
  return {
    id: '4242',
    write: {
      table: 'cpu',
      region_id: REGION_ID,
      rows: Array.from({ length: rows }, (_, i) => ({
        values: {
          host: { string_value: `host-${i % 37}`, kind: 'string_value' },
          ts: { timestamp_ms_value: String(1_700_000_000_000 + i * 1000), kind: 'timestamp_ms_value' },
          usage: { float64_value: (i % 100) / 100 + 0.005, kind: 'float64_value' },
        },
      })),
      client_id: 'bench-client-3b1f0c2e-7d0a-4c52-9a55-6a1e2f1d9b0c',
      request_id: '1234567',
      expect_absent: false,
    },
    request: 'write',
  };
}

/** A Batch stream answer: a write acknowledgement, or a get with one row. */
export function batchResponse(kind: 'write' | 'get'): PlBatchResponse {
  if (kind === 'write') return { id: '4242', write: { version: '1000042', rows_written: 100, regions: [] }, response: 'write' };
  return {
    id: '4243',
    get: { found: true, row: batchWrite(1).write!.rows![0]!, version: '1000042' },
    response: 'get',
  };
}

/**
 * One form for the decoded Batch messages of all three codecs: keys sorted, the virtual oneof
 * names dropped (ts-proto has none), and absent or default-valued fields dropped (proto-loader
 * fills defaults in, ts-proto leaves oneof members undefined).
 */
function canonicalPlain(decoded: unknown): unknown {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value === null || typeof value !== 'object') return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (k === 'kind' || k === 'request' || k === 'response' || k.startsWith('_')) continue;
      if (v === undefined || v === null || v === '' || v === '0' || v === 0 || v === false) continue;
      if (Array.isArray(v) && v.length === 0) continue;
      const s = strip(v);
      if (s !== null && typeof s === 'object' && !Array.isArray(s) && Object.keys(s).length === 0 && k !== 'values') continue;
      out[k] = s;
    }
    return out;
  };
  return strip(decoded);
}

// ─── Cases ────────────────────────────────────────────────────────────────────────────────────

interface LoaderMethod {
  requestSerialize(value: unknown): Buffer;
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

function loaderMethod(service: string, method: string): LoaderMethod {
  const definition = loadProtos().definition[`regiondb.v1.${service}`] as unknown as Record<string, LoaderMethod>;
  const m = definition[method];
  if (!m) throw new Error(`no method ${service}.${method} in proto-loader's definition`);
  return m;
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

export function raftCase(entries: number): Case {
  const domain = appendEntries(entries);
  const plain = toTsProtoRaft(domain);
  const stream = loaderMethod('RaftTransport', 'Stream');
  return {
    name: `raft AppendEntries, ${entries} entr${entries === 1 ? 'y' : 'ies'}`,
    codecs: [
      { name: 'hand', object: domain, encode: (o) => encodeRaftBatch(o as RaftBatch), decode: decodeRaftBatch, canonical: (d) => canonicalFromDomain(d as RaftBatch) },
      {
        name: 'runtime',
        object: { ...plain, envelopes: plain.envelopes.map((e) => ({ ...e, message: { ...e.message!, snapshot: null } })) },
        encode: (o) => stream.requestSerialize(o),
        decode: (b) => stream.requestDeserialize(asBuffer(b)),
        canonical: (d) => canonicalFromPlain(d as PlainRaft),
      },
      {
        name: 'ts-proto',
        object: plain,
        encode: (o) => tsRaft.RaftTransportStreamRequest.encode(o as tsRaft.RaftTransportStreamRequest).finish(),
        decode: (b) => tsRaft.RaftTransportStreamRequest.decode(b),
        canonical: (d) => canonicalFromPlain(d as PlainRaft),
      },
      {
        name: 'ts-proto+conv',
        object: domain,
        encode: (o) => tsRaft.RaftTransportStreamRequest.encode(toTsProtoRaft(o as RaftBatch)).finish(),
        decode: (b) => fromTsProtoRaft(tsRaft.RaftTransportStreamRequest.decode(b)),
        canonical: (d) => canonicalFromDomain(d as RaftBatch),
      },
    ],
  };
}

function batchCase(name: string, object: PlBatchRequest | PlBatchResponse, request: boolean): Case {
  const batch = loaderMethod('Database', 'Batch');
  // ts-proto's object of the message: its own decoding of the message (every field present, as
  // its encoder expects); agree() then checks it encodes to the same message.
  const tsObject = request ? tsDatabase.BatchRequest.decode(encodeBatchRequest(object as never)) : tsDatabase.BatchResponse.decode(encodeBatchResponse(object as never));
  return {
    name,
    codecs: [
      {
        name: 'hand',
        object,
        encode: request ? (o) => encodeBatchRequest(o as PlBatchRequest as never) : (o) => encodeBatchResponse(o as never),
        decode: request ? decodeBatchRequest : decodeBatchResponse,
        canonical: canonicalPlain,
      },
      {
        name: 'runtime',
        object,
        encode: request ? (o) => batch.requestSerialize(o) : (o) => batch.responseSerialize(o),
        decode: request ? (b) => batch.requestDeserialize(asBuffer(b)) : (b) => batch.responseDeserialize(asBuffer(b)),
        canonical: canonicalPlain,
      },
      {
        name: 'ts-proto',
        object: tsObject,
        encode: request ? (o) => tsDatabase.BatchRequest.encode(o as tsDatabase.BatchRequest).finish() : (o) => tsDatabase.BatchResponse.encode(o as tsDatabase.BatchResponse).finish(),
        decode: request ? (b) => tsDatabase.BatchRequest.decode(b) : (b) => tsDatabase.BatchResponse.decode(b),
        canonical: canonicalPlain,
      },
    ],
  };
}

export function cases(): Case[] {
  return [
    raftCase(1),
    raftCase(64),
    batchCase('Batch WriteRequest, 1 row', batchWrite(1), true),
    batchCase('Batch WriteRequest, 100 rows', batchWrite(100), true),
    batchCase('BatchResponse, write ack', batchResponse('write'), false),
    batchCase('BatchResponse, get with a row', batchResponse('get'), false),
  ];
}

// ─── Agreement ────────────────────────────────────────────────────────────────────────────────

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Throws unless, for every pair of codecs (E, D) of the case, D decodes E's bytes to the message
 * the case describes (its first codec's object, in the canonical form). Returns the groups of
 * codecs whose bytes are identical.
 */
export function agree(c: Case): string[][] {
  const expected = c.codecs[0]!.canonical(c.codecs[0]!.decode(c.codecs[0]!.encode(c.codecs[0]!.object)));
  const encoded = c.codecs.map((e) => e.encode(e.object));
  c.codecs.forEach((e, i) => {
    for (const d of c.codecs) {
      const got = d.canonical(d.decode(encoded[i]!));
      if (!sameJson(got, expected)) {
        throw new Error(`${c.name}: ${d.name} decodes ${e.name}'s bytes to a different message:\n  got      ${JSON.stringify(got).slice(0, 300)}\n  expected ${JSON.stringify(expected).slice(0, 300)}`);
      }
    }
  });
  const groups: string[][] = [];
  const keys: string[] = [];
  encoded.forEach((bytes, i) => {
    const key = hex(bytes);
    const at = keys.indexOf(key);
    if (at >= 0) groups[at]!.push(c.codecs[i]!.name);
    else {
      keys.push(key);
      groups.push([c.codecs[i]!.name]);
    }
  });
  return groups;
}

// ─── Timing ───────────────────────────────────────────────────────────────────────────────────

const SAMPLE_MS = 10;

/** Iterations of encode+decode taking about SAMPLE_MS (at most 2^20). */
function calibrate(codec: Codec): number {
  let n = 1;
  for (let i = 0; i < 21; i++) {
    const start = performance.now();
    for (let k = 0; k < n; k++) codec.decode(codec.encode(codec.object));
    if (performance.now() - start >= SAMPLE_MS / 4) return Math.max(1, Math.round((n * SAMPLE_MS) / Math.max(performance.now() - start, 0.001)));
    n *= 2;
  }
  return n;
}

let sink = 0;

function sample(codec: Codec, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let k = 0; k < iterations; k++) {
    const bytes = codec.encode(codec.object);
    if (codec.decode(bytes) === null) sink++;
    sink += bytes.byteLength;
  }
  return Number(process.hrtime.bigint() - start) / iterations;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Result {
  readonly case: string;
  readonly bytes: number;
  readonly identical: string[][];
  readonly medians: Record<string, number>;
}

export function run(rounds: number): Result[] {
  const results: Result[] = [];
  for (const c of cases()) {
    const identical = agree(c);
    for (let w = 0; w < 3; w++) for (const codec of c.codecs) sample(codec, calibrate(codec)); // warm up (JIT)
    const iterations = c.codecs.map(calibrate);
    const samples: number[][] = c.codecs.map(() => []);
    for (let r = 0; r < rounds; r++) {
      for (let j = 0; j < c.codecs.length; j++) {
        const i = (j + r) % c.codecs.length; // rotate the order each round
        samples[i]!.push(sample(c.codecs[i]!, iterations[i]!));
      }
    }
    const medians: Record<string, number> = {};
    c.codecs.forEach((codec, i) => {
      medians[codec.name] = median(samples[i]!);
    });
    results.push({ case: c.name, bytes: c.codecs[0]!.encode(c.codecs[0]!.object).byteLength, identical, medians });
  }
  return results;
}

function format(results: Result[]): string {
  const lines = ['| message | bytes | hand ns | runtime ns (×hand) | ts-proto ns (×hand) | ts-proto+conv ns (×hand) | byte-identical |', '|---|---:|---:|---:|---:|---:|---|'];
  for (const r of results) {
    const hand = r.medians['hand']!;
    const cell = (name: string) => (r.medians[name] === undefined ? '–' : `${Math.round(r.medians[name]!)} (${(r.medians[name]! / hand).toFixed(2)})`);
    const groups = r.identical.filter((g) => g.length > 1).map((g) => g.join(' = '));
    lines.push(`| ${r.case} | ${r.bytes} | ${Math.round(hand)} | ${cell('runtime')} | ${cell('ts-proto')} | ${cell('ts-proto+conv')} | ${groups.join('; ') || 'none'} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rounds = Number(process.env['CODEC_BENCH_ROUNDS'] ?? 25);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 1000) throw new Error(`CODEC_BENCH_ROUNDS must be an integer in 1..1000, got ${process.env['CODEC_BENCH_ROUNDS']}`);
  const started = performance.now();
  const results = run(rounds);
  console.log(format(results));
  console.log(`\nmedians of ${rounds} rounds; node ${process.version}; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}; ${((performance.now() - started) / 1000).toFixed(1)} s (sink ${sink % 10})`);
  if (process.env['JSON']) console.log(JSON.stringify(results));
}
