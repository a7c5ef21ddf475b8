// Hostile-input fuzzing (issue 10; deepened by issue 22 item 7)
//   (a) every decoder of untrusted or on-disk bytes (WAL records, raft wire, batch wire, engine
//       commands, manifests / region state, the metasrv catalog, SSTs) is fed mutated valid
//       encodings, random bytes and — past every checksum — structural mutations with the
//       CRC32C recomputed (./mutations.ts, ./sst-layout.ts). Each input fails with a
//       RegionDbError, or decodes to a value that round-trips: decode → encode → decode gives it
//       back (WAL records, a canonical format: the same bytes back). Every encoder is also
//       checked value → encode → decode. SSTs that open and scan must answer get() for every
//       key as scan did, and rebuild into an SST with the same entries. The share of inputs
//       that got past the checksums into the parsers is counted and asserted.
//   (b) every gRPC method of a real in-process metasrv + datanode gets mutated, structurally
//       mutated (valid protobuf, hostile field values) and random requests, sent raw (identity
//       serializers). Every answer must come before a generous deadline with a clean status:
//       never INTERNAL/UNKNOWN, and — the servers are local and healthy, every region named is
//       hosted and led — never DEADLINE_EXCEEDED, CANCELLED or UNAVAILABLE (a hung or crashed
//       handler; see CLEAN). Per method, the inputs that reached the handler (a clean answer
//       other than a decode error) are counted, printed and asserted > 0. Afterwards the
//       servers still serve DDL, a write and a read.
//   (c) the properties can fail: each runs once against a planted bug (an encoder that drops a
//       field, a decoder that accepts a wrong length, a handler that never answers, a method
//       whose decoder refuses everything) and must report it.
// Cases: FUZZ_RUNS per property (default 300; `make test-fuzz` runs 10,000). Seed: FUZZ_SEED
// (default fixed; printed in the titles). A failure prints fast-check's seed and path and the
// replay command: FUZZ_SEED=<seed> FUZZ_RUNS=<runs> node_modules/.bin/mocha test/fuzz/fuzz.test.ts
// (the same FUZZ_SEED regenerates every input; the live servers' answers may still vary with timing).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import fc from 'fast-check';
import { RegionDbClient } from '../../src/client/client.js';
import { datanodeConfigSchema, metasrvConfigSchema } from '../../src/common/config.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { createLogger, silentLogger } from '../../src/common/logger.js';
import { Datanode } from '../../src/datanode/datanode.js';
import { type Command, RegionState, type TableSchema, decodeCommand, encodeCommand, encodeCommandV1 } from '../../src/engine/index.js';
import { type RegionManifest, decodeManifest, encodeManifest } from '../../src/engine/manifest.js';
import { type SstEntry, SstReader, buildSst, sstSourceFromBytes } from '../../src/engine/sst/format.js';
import { type CatalogState, emptyCatalog } from '../../src/metasrv/catalog.js';
import { decodeCatalog, encodeCatalog } from '../../src/metasrv/catalog-store.js';
import { Metasrv } from '../../src/metasrv/metasrv.js';
import type { Entry, HardState, Message, MessageType, Snapshot } from '../../src/raft/index.js';
import { UserStore, authorizationHeader, hashPassword } from '../../src/rpc/auth.js';
import { type BatchRequestObject, type BatchResponseObject, decodeBatchRequest, decodeBatchResponse, encodeBatchRequest, encodeBatchResponse } from '../../src/rpc/batch-wire.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { type RaftBatch, type RaftBatchAck, decodeRaftBatch, decodeRaftBatchAck, encodeRaftBatch, encodeRaftBatchAck } from '../../src/rpc/raft-wire.js';
import { startGrpcServer } from '../../src/rpc/server.js';
import { unary } from '../../src/rpc/status.js';
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
import { type Codec, canon, expectBytesRoundTrip, expectSame, expectValueRoundTrip, untyped } from './codecs.js';
import { type Json, hostile, mutatedJson, reframe, utf8 } from './mutations.js';
import { assembleSst, encodeBlock, splitSst, structurallyMutatedSst } from './sst-layout.js';
import { cpuSchema } from '../fixtures/schemas.js';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 300);
const SEED = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : 20_251_125;
/** FUZZ_VERBOSE=1 prints what the servers log at error level (the cause of an INTERNAL answer). */
const serverLog = process.env['FUZZ_VERBOSE'] ? createLogger({ name: 'fuzz', level: 'error' }) : silentLogger;
const params = (offset: number, numRuns = RUNS): fc.Parameters<unknown> => ({ numRuns, seed: SEED + offset, endOnFailure: true });
const REPLAY = `replay: FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS} node_modules/.bin/mocha test/fuzz/fuzz.test.ts`;

/** fc.assert, with the replay command added to a failure's message. */
async function check(property: fc.IAsyncProperty<unknown> | fc.IProperty<unknown>, p: fc.Parameters<unknown>): Promise<void> {
  try {
    await fc.assert(property as fc.IAsyncProperty<unknown>, p);
  } catch (err) {
    (err as Error).message += `\n${REPLAY}`;
    throw err;
  }
}

const safeNat = fc.nat({ max: 2 ** 40 });
const bigNat = fc.oneof(safeNat, fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER));
const bytesArb = fc.uint8Array({ maxLength: 64 });
/** Counts printed under a test's title. */
const report = (line: string) => console.log(`      ${line}`);

// ─── (a) decoders ─────────────────────────────────────────────────────────────────────────────

// WAL records ([version][crc32c(payload)][length][payload], src/wal/record.ts).

const entryArb: fc.Arbitrary<Entry> = fc.record({ term: bigNat, index: bigNat, type: fc.constantFrom(0 as const, 1 as const), data: bytesArb });
const hardStateArb: fc.Arbitrary<HardState> = fc.record({ term: bigNat, vote: bigNat, commit: bigNat });
const truncatedArb = fc.record({ index: bigNat, term: bigNat });
const snapshotArb: fc.Arbitrary<Snapshot> = fc
  .record({ index: bigNat, term: bigNat, voters: fc.array(bigNat, { maxLength: 5 }), learners: fc.array(bigNat, { maxLength: 3 }), data: bytesArb })
  .map((s) => ({ metadata: { index: s.index, term: s.term, confState: { voters: s.voters, learners: s.learners } }, data: s.data }));

const walCodecs = {
  entry: { encode: encodeEntry, decode: decodeEntry } as Codec<Entry>,
  hardState: { encode: encodeHardState, decode: decodeHardState } as Codec<HardState>,
  truncated: { encode: encodeTruncated, decode: decodeTruncated } as Codec<{ index: number; term: number }>,
  snapshot: { encode: encodeSnapshot, decode: decodeSnapshot } as Codec<Snapshot>,
  meta: { encode: encodeMeta, decode: decodeMeta } as Codec<Uint8Array>,
};
type WalKind = keyof typeof walCodecs;

const walRecordArbs: Record<WalKind, fc.Arbitrary<Uint8Array>> = {
  entry: entryArb.map(encodeEntry),
  hardState: hardStateArb.map(encodeHardState),
  truncated: truncatedArb.map(encodeTruncated),
  snapshot: snapshotArb.map(encodeSnapshot),
  meta: bytesArb.map(encodeMeta),
};

/** A field of a record rewritten with the CRC still valid: header fields, or an integer at a field offset of the payload layouts. */
const walFieldMutationArb = fc.oneof(
  fc.record({ where: fc.constant('version' as const), value: fc.constantFrom(0, 2, 0xff) }),
  fc.record({ where: fc.constant('length' as const), value: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(-100_000, 0xffff_ffff)) }),
  fc.record({
    where: fc.constant('payload' as const),
    // u64 fields at 0/8/16, the snapshot's u32 voter count at 16 and the entry's type byte at 16; then anywhere
    at: fc.oneof(fc.constantFrom(0, 8, 16, 20, 24, 28, 36), fc.nat()),
    width: fc.constantFrom(1, 4, 8),
    value: fc.constantFrom(0n, 1n, 2n, 1024n, 1025n, 0xffff_ffffn, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n),
  }),
);

type WalFieldMutation = typeof walFieldMutationArb extends fc.Arbitrary<infer M> ? M : never;

function mutateWalField(record: Uint8Array, m: WalFieldMutation): Uint8Array {
  const out = Buffer.from(record);
  if (m.where === 'version') {
    out[0] = m.value;
    return out;
  }
  if (m.where === 'length') {
    out.writeUInt32BE((out.readUInt32BE(5) + m.value + 2 ** 32) % 2 ** 32, 5);
    return out;
  }
  const payload = Buffer.from(out.subarray(9));
  if (payload.byteLength < m.width) return frame(payload);
  const at = m.at % (payload.byteLength - m.width + 1);
  if (m.width === 8) payload.writeBigUInt64BE(BigInt.asUintN(64, m.value), at);
  else if (m.width === 4) payload.writeUInt32BE(Number(BigInt.asUintN(32, m.value)), at);
  else payload[at] = Number(BigInt.asUintN(8, m.value));
  return frame(payload); // CRC recomputed
}

/** Mutated records (mostly stopped by the CRC), mutated payloads and fields reframed with a valid CRC (reach the field parsers). */
const walInputArb = (records: fc.Arbitrary<Uint8Array>) =>
  fc.oneof(
    hostile(records),
    hostile(records.map((r) => r.subarray(9))).map(frame),
    fc.tuple(records, walFieldMutationArb).map(([r, m]) => mutateWalField(r, m)),
  );

// Raft wire (RaftBatch, RaftBatchAck; src/rpc/raft-wire.ts).

const messageArb: fc.Arbitrary<Message> = fc.record({
  type: fc.integer({ min: 1, max: 13 }).map((t) => t as MessageType),
  from: bigNat,
  to: bigNat,
  term: bigNat,
  logTerm: bigNat,
  index: bigNat,
  entries: fc.array(entryArb, { maxLength: 3 }),
  commit: bigNat,
  reject: fc.boolean(),
  rejectHint: bigNat,
  snapshot: fc.option(snapshotArb, { nil: null }),
  context: bytesArb,
});
const raftBatchArb: fc.Arbitrary<RaftBatch> = fc
  .record({
    clusterId: fc.string({ maxLength: 12 }),
    fromNodeId: bigNat,
    envelopes: fc.array(fc.record({ regionId: fc.stringMatching(/^\d{0,20}$/), message: messageArb }), { maxLength: 3 }),
  })
  // A Snapshot message carries a snapshot (the decoder enforces raft's rule).
  .map((b) => ({ ...b, envelopes: b.envelopes.map((e) => (e.message.type === 9 && !e.message.snapshot ? { ...e, message: { ...e.message, type: 3 as MessageType } } : e)) }));

/** proto-loader's encoding of a batch: a second, independent encoder, so a field our encoder drops is still on the wire. */
function protoLoaderRaftBatch(b: RaftBatch): Uint8Array {
  const s = (v: number) => String(v);
  const snap = (x: Snapshot) => ({ index: s(x.metadata.index), term: s(x.metadata.term), voters: x.metadata.confState.voters.map(s), learners: x.metadata.confState.learners.map(s), data: Buffer.from(x.data) });
  const message = (m: Message) => ({
    type: m.type,
    from: s(m.from),
    to: s(m.to),
    term: s(m.term),
    log_term: s(m.logTerm),
    index: s(m.index),
    entries: m.entries.map((e) => ({ term: s(e.term), index: s(e.index), type: e.type, data: Buffer.from(e.data) })),
    commit: s(m.commit),
    reject: m.reject,
    reject_hint: s(m.rejectHint),
    snapshot: m.snapshot ? snap(m.snapshot) : null,
    context: Buffer.from(m.context),
  });
  const body = { cluster_id: b.clusterId, from_node_id: s(b.fromNodeId), envelopes: b.envelopes.map((e) => ({ region_id: e.regionId, message: message(e.message) })) };
  return new Uint8Array(loadProtos().services.RaftTransport.service['Stream']!.requestSerialize(body) as Buffer);
}

// Batch wire (Database.Batch; src/rpc/batch-wire.ts).

/** uint64 as decimal strings, beyond the safe integers too. */
const longArb = fc.oneof(fc.constantFrom('0', '1', '18446744073709551615', '9007199254740993'), safeNat.map(String));
/** int64 as decimal strings. */
const signedLongArb = fc.oneof(fc.constantFrom('0', '-1', '9223372036854775807', '-9223372036854775808', '9007199254740993'), fc.integer().map(String));
const valueObjArb = fc.oneof(
  fc.string({ maxLength: 6 }).map((v) => ({ string_value: v })),
  signedLongArb.map((v) => ({ int64_value: v })),
  fc.double().map((v) => ({ float64_value: v })),
  fc.boolean().map((v) => ({ bool_value: v })),
  signedLongArb.map((v) => ({ timestamp_ms_value: v })),
  fc.constant({ null_value: true }),
);
const rowObjArb = fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), valueObjArb, { maxKeys: 3 }).map((values) => ({ values }));
const batchRequestInputArb = fc.record({
  id: longArb,
  op: fc.oneof(
    fc.record({
      write: fc.record({
        table: fc.string({ maxLength: 6 }),
        region_id: longArb,
        rows: fc.array(rowObjArb, { maxLength: 2 }),
        client_id: fc.string({ maxLength: 6 }),
        request_id: longArb,
        expect_version: fc.option(longArb, { nil: undefined }),
        expect_absent: fc.boolean(),
      }),
    }),
    fc.record({ delete: fc.record({ table: fc.string({ maxLength: 6 }), region_id: longArb, keys: fc.array(rowObjArb, { maxLength: 2 }), client_id: fc.string({ maxLength: 6 }), request_id: longArb }) }),
    fc.record({ get: fc.record({ table: fc.string({ maxLength: 6 }), key: fc.option(rowObjArb, { nil: null }), consistency: fc.constantFrom('LINEARIZABLE', 'STALE') }) }),
  ),
  timeout: fc.option(fc.nat({ max: 2 ** 32 - 1 }), { nil: undefined }),
}).map(({ id, op, timeout }) => ({ id, ...op, ...(timeout === undefined ? {} : { timeout_ms: timeout }) }));
const batchResponseInputArb = fc.record({
  id: longArb,
  op: fc.oneof(
    fc.record({ write: fc.record({ version: longArb, rows_written: fc.nat({ max: 2 ** 32 - 1 }) }) }),
    fc.record({ delete: fc.record({ version: longArb }) }),
    fc.record({ get: fc.record({ found: fc.boolean(), row: fc.option(rowObjArb, { nil: null }), version: longArb }) }),
    fc.record({ error: fc.record({ grpc_code: fc.nat({ max: 16 }), code: fc.string({ maxLength: 8 }), message: fc.string({ maxLength: 12 }), details: fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }) }) }),
  ),
}).map(({ id, op }) => ({ id, ...op }));
const protoLoaderBatch = loadProtos().services.Database.service['Batch']!;

// Engine commands, manifests, catalogs (JSON bodies; src/engine/command.ts, manifest.ts, src/metasrv/catalog-store.ts).

const schema: TableSchema = cpuSchema({ name: 'fz', tableId: 7 });
const valueArb = fc.oneof(
  fc.constant(null),
  fc.string({ maxLength: 8 }),
  fc.integer({ min: -1000, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53, -(2 ** 63)),
);
const sstMetaArb = fc.record({ key: fc.string({ maxLength: 16 }), size: safeNat, entries: safeNat, maxVersion: safeNat, minTimestampMs: fc.integer(), maxTimestampMs: fc.integer() });
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc
    .record({
      clientId: fc.string({ maxLength: 12 }),
      requestId: bigNat,
      rows: fc.array(fc.array(valueArb, { maxLength: 3 }), { maxLength: 3 }),
      expectVersion: fc.option(safeNat, { nil: undefined }),
      expectAbsent: fc.option(fc.constant(true), { nil: undefined }),
    })
    .map(({ expectVersion, expectAbsent, ...w }) => ({
      kind: 'write' as const,
      ...w,
      ...(expectVersion === undefined ? {} : { expectVersion }),
      ...(expectAbsent === undefined ? {} : { expectAbsent }),
    })),
  fc.record({ kind: fc.constant('delete' as const), clientId: fc.string({ maxLength: 12 }), requestId: bigNat, keys: fc.array(fc.array(valueArb, { maxLength: 2 }), { maxLength: 3 }) }),
  fc.constant({ kind: 'freeze' as const }),
  fc.record({ kind: fc.constant('flush-edit' as const), freezeIndex: bigNat, sst: fc.option(sstMetaArb, { nil: null }) }),
  fc.record({ kind: fc.constant('compaction-edit' as const), inputs: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), output: fc.option(sstMetaArb, { nil: null }) }),
);
/** Hostile commands in the current encoding (version 2, binary, for writes and deletes; version 1 for the rest). */
const commandInputArb = fc.oneof(
  { weight: 1, arbitrary: hostile(commandArb.map(encodeCommand)) },
  { weight: 1, arbitrary: hostile(commandArb.filter((c) => c.kind === 'write' || c.kind === 'delete').map(encodeCommand)) },
);
/** A version-1 command's JSON body mutated at the structure level, its version and kind bytes kept (or the kind changed). */
const commandV1InputArb = fc.oneof(
  { weight: 1, arbitrary: hostile(commandArb.map(encodeCommandV1)) },
  {
    weight: 2,
    arbitrary: fc.tuple(commandArb.map(encodeCommandV1), fc.integer({ min: 0, max: 6 }), fc.boolean()).chain(([bytes, kind, keepKind]) =>
    mutatedJson(fc.constant(JSON.parse(Buffer.from(bytes.subarray(2)).toString('utf8')) as Json)).map((body) => {
      const json = utf8(JSON.stringify(body));
      return Uint8Array.from([bytes[0]!, keepKind ? bytes[1]! : kind, ...json]);
    }),
    ),
  },
);

const dedupText = JSON.stringify({ version: 2, horizon: 3, clients: [['c1', 4, [[5, 'abc', { status: 'ok', version: 9, rows: 1 }], [6, null, { status: 'condition-failed', currentVersion: 2 }]]]] });
const manifestArb: fc.Arbitrary<RegionManifest> = fc.record({
  formatVersion: fc.constant(1),
  regionId: fc.stringMatching(/^\d{1,12}$/),
  schema: fc.constant(schema),
  flushedIndex: safeNat,
  flushedTerm: safeNat,
  voters: fc.array(safeNat, { maxLength: 3 }),
  learners: fc.array(safeNat, { maxLength: 2 }),
  ssts: fc.array(sstMetaArb, { maxLength: 3 }),
  dedup: fc.constantFrom(dedupText, JSON.stringify({ version: 2, horizon: 0, clients: [] })),
  writtenAtMs: safeNat,
});
/** Mutated manifests; JSON-structure and byte mutations of the body, reframed with a valid CRC. */
function manifestInputArb(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    hostile(valid),
    hostile(valid.map((b) => b.subarray(5))).map((b) => reframe(1, b, false)),
    mutatedJson(valid.map((b) => JSON.parse(Buffer.from(b.subarray(5)).toString('utf8')) as Json)).map((d) => reframe(1, utf8(JSON.stringify(d)), false)),
  );
}

const catalogArb: fc.Arbitrary<CatalogState> = fc
  .record({
    version: safeNat,
    clusterId: fc.string({ maxLength: 10 }),
    nextTableId: safeNat,
    nextPeerId: safeNat,
    nodes: fc.array(fc.record({ nodeId: fc.integer({ min: 1, max: 9 }), addr: fc.string({ maxLength: 8 }), httpAddr: fc.string({ maxLength: 8 }), lastHeartbeatMs: safeNat, state: fc.constantFrom('alive' as const, 'suspect' as const, 'dead' as const, 'draining' as const) }), { maxLength: 3 }),
    regions: fc.array(fc.record({ regionNumber: fc.nat({ max: 4 }), leaderNodeId: fc.nat({ max: 9 }), confVersion: safeNat, bootstrapped: fc.boolean(), replicas: fc.array(fc.record({ peerId: safeNat, nodeId: fc.nat({ max: 9 }) }), { maxLength: 3 }) }), { maxLength: 3 }),
    // A drop in progress (docs/ddl.md): the mark, and the regions fenced so far (absent in catalogs of builds before the record).
    dropping: fc.option(fc.record({ sinceMs: safeNat, fenced: fc.option(fc.array(fc.record({ regionNumber: fc.nat({ max: 4 }), index: safeNat }), { maxLength: 3 })) })),
  })
  .map((c) => ({
    ...emptyCatalog(c.clusterId),
    version: c.version,
    nextTableId: c.nextTableId,
    nextPeerId: c.nextPeerId,
    tables: { fz: schema },
    nodes: Object.fromEntries(c.nodes.map((n) => [String(n.nodeId), n])),
    regions: Object.fromEntries(c.regions.map((r) => [`${7 * 2 ** 32 + r.regionNumber}`, { ...r, regionId: `${7 * 2 ** 32 + r.regionNumber}`, tableName: 'fz' }])),
    ...(c.dropping ? { droppingTables: { fz: c.dropping.sinceMs } } : {}),
    ...(c.dropping?.fenced ? { fencedRegions: Object.fromEntries(c.dropping.fenced.map((f) => [`${7 * 2 ** 32 + f.regionNumber}`, f.index])) } : {}),
  }));
function catalogInputArb(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    hostile(valid),
    hostile(valid.map((b) => b.subarray(9))).map((b) => reframe(1, b, true)),
    mutatedJson(valid.map((b) => JSON.parse(Buffer.from(b.subarray(9)).toString('utf8')) as Json)).map((d) => reframe(1, utf8(JSON.stringify(d)), true)),
  );
}

// SSTs (src/engine/sst/format.ts): entries ↔ bytes through buildSst and SstReader.

const sstEntriesArb: fc.Arbitrary<SstEntry[]> = fc
  .uniqueArray(fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 6 }), fc.integer({ min: -1000, max: 1000 })), { minLength: 1, maxLength: 40, selector: ([tag, ts]) => `${Buffer.from(tag).toString('hex')}/${ts}` })
  .chain((keys) =>
    fc.tuple(
      fc.constant(keys),
      fc.array(fc.tuple(safeNat, fc.option(fc.uint8Array({ maxLength: 24 }), { nil: null })), { minLength: keys.length, maxLength: keys.length }),
    ),
  )
  .map(([keys, vals]) => {
    const encoded = keys.map(([tag, ts]) => {
      const key = new Uint8Array(tag.byteLength + 8); // a tag, then the timestamp with its sign bit flipped (src/engine/key.ts)
      key.set(tag);
      new DataView(key.buffer).setBigInt64(tag.byteLength, BigInt(ts));
      key[tag.byteLength]! ^= 0x80;
      return key;
    });
    encoded.sort((a, b) => Buffer.compare(a, b));
    return encoded.map((key, i) => ({ key, version: vals[i]![0], value: vals[i]![1] }));
  });

async function readSst(bytes: Uint8Array): Promise<{ reader: SstReader; entries: SstEntry[] }> {
  const reader = await SstReader.open(sstSourceFromBytes('fuzz.sst', bytes));
  const entries: SstEntry[] = [];
  for await (const e of reader.scan()) entries.push(e);
  return { reader, entries };
}

/**
 * An SST that opens and scans must agree with itself and with the writer: get() answers every
 * scanned key with the scanned entry, and the entries rebuild into an SST that reads back equal.
 */
async function expectSstConsistent(read: { reader: SstReader; entries: SstEntry[] }, blockTargetBytes: number): Promise<SstEntry[]> {
  const { reader, entries } = read;
  for (const e of entries) {
    const key = Buffer.from(e.key).toString('hex');
    let got: SstEntry | undefined;
    try {
      got = await reader.get(e.key);
    } catch (err) {
      throw new Error(`get(${key}) failed after scan returned it: ${(err as Error).message}`, { cause: err });
    }
    expectSame(got, e, `get(${key}) after scan`);
  }
  let rebuilt: Uint8Array;
  try {
    rebuilt = buildSst(entries, { blockTargetBytes }).bytes;
  } catch (err) {
    throw new Error(`the reader accepted entries the writer refuses: ${(err as Error).message}`, { cause: err });
  }
  expectSame((await readSst(rebuilt)).entries, entries, 'entries of the rebuilt SST');
  return entries;
}

/** Where a rejected SST stopped: a checksum, or a parser past it. */
function sstOutcome(err: unknown): string {
  const message = (err as Error).message;
  if (/CRC32C mismatch/.test(message)) return 'checksum';
  if (/block \d+.*(malformed|does not match)/.test(message)) return 'block parser';
  if (/index malformed|properties (malformed|say|min)/.test(message)) return 'index/properties parser';
  return 'footer/bounds';
}

describe(`fuzz: decoders (runs ${RUNS}, seed ${SEED})`, function () {
  this.timeout(0);

  it('WAL records: typed errors; whatever decodes re-encodes to the same bytes (canonical); encoders round-trip', async () => {
    await check(fc.property(entryArb, (v) => expectValueRoundTrip(walCodecs.entry, v)), params(10));
    await check(fc.property(hardStateArb, (v) => expectValueRoundTrip(walCodecs.hardState, v)), params(11));
    await check(fc.property(truncatedArb, (v) => expectValueRoundTrip(walCodecs.truncated, v)), params(12));
    await check(fc.property(snapshotArb, (v) => expectValueRoundTrip(walCodecs.snapshot, v)), params(13));
    await check(fc.property(bytesArb, (v) => expectValueRoundTrip(walCodecs.meta, v)), params(14));
    // Mutants of each kind, through every decoder (the WAL reads each kind with its own, but a
    // record of one kind must not crash another's).
    const kinds = Object.keys(walCodecs) as WalKind[];
    const decoded: string[] = [];
    for (const [i, kind] of kinds.entries()) {
      const byDecoder = new Map<WalKind, number>();
      await check(
        fc.property(walInputArb(walRecordArbs[kind]), (record) => {
          for (const k of kinds) if (expectBytesRoundTrip(walCodecs[k] as Codec<unknown>, record, true)) byDecoder.set(k, (byDecoder.get(k) ?? 0) + 1);
        }),
        params(1 + i * 1000),
      );
      decoded.push(`${kind} ${byDecoder.get(kind) ?? 0}`);
      // Reframed payloads keep their CRC valid: the field parsers must see many of them.
      expect(byDecoder.get(kind) ?? 0, `mutated ${kind} records that decoded`).to.be.greaterThan(RUNS / 20);
    }
    report(`decoded (of ${RUNS} hostile records of each kind): ${decoded.join(', ')}`);
  });

  it('raft wire: typed errors; whatever decodes round-trips; encoders round-trip', async () => {
    await check(fc.property(raftBatchArb, (v) => expectValueRoundTrip({ encode: encodeRaftBatch, decode: decodeRaftBatch }, v)), params(20));
    await check(fc.property(fc.nat({ max: 2 ** 32 - 1 }), (accepted) => expectValueRoundTrip({ encode: encodeRaftBatchAck, decode: decodeRaftBatchAck }, { accepted })), params(21));
    let decodedBatches = 0;
    const seeds = fc.oneof(raftBatchArb.map(encodeRaftBatch), raftBatchArb.map(protoLoaderRaftBatch));
    await check(
      fc.property(hostile(seeds), (bytes) => {
        if (expectBytesRoundTrip<RaftBatch>({ encode: encodeRaftBatch, decode: decodeRaftBatch }, bytes)) decodedBatches++;
      }),
      params(2),
    );
    let decodedAcks = 0;
    await check(
      fc.property(hostile(fc.nat({ max: 2 ** 32 - 1 }).map((accepted) => new Uint8Array(encodeRaftBatchAck({ accepted })))), (bytes) => {
        if (expectBytesRoundTrip<RaftBatchAck>({ encode: encodeRaftBatchAck, decode: decodeRaftBatchAck }, bytes)) decodedAcks++;
      }),
      params(22),
    );
    report(`decoded: ${decodedBatches} batches, ${decodedAcks} acks of ${RUNS} each`);
    // Decoding validates the raft rules too (types, snapshots), so fewer mutants pass than plain protobuf parsing.
    expect(decodedBatches, 'mutated batches that decoded').to.be.greaterThan(RUNS / 20);
    expect(decodedAcks, 'mutated acks that decoded').to.be.greaterThan(RUNS / 20);
  });

  it('batch wire (Database.Batch): typed errors; whatever decodes round-trips', async () => {
    const requests: Codec<BatchRequestObject> = { encode: encodeBatchRequest, decode: decodeBatchRequest };
    const responses: Codec<BatchResponseObject> = { encode: encodeBatchResponse, decode: decodeBatchResponse };
    // Seeds from proto-loader (an independent encoder) and from ours.
    const requestSeeds = batchRequestInputArb.chain((r) => fc.constantFrom(protoLoaderBatch.requestSerialize(r) as Uint8Array, encodeBatchRequest(r)));
    const responseSeeds = batchResponseInputArb.chain((r) => fc.constantFrom(protoLoaderBatch.responseSerialize(r) as Uint8Array, encodeBatchResponse(r)));
    const decoded = { requests: 0, responses: 0 };
    await check(
      fc.property(fc.oneof(requestSeeds, hostile(requestSeeds)), (bytes) => {
        if (expectBytesRoundTrip(requests, bytes)) decoded.requests++;
      }),
      params(30),
    );
    await check(
      fc.property(fc.oneof(responseSeeds, hostile(responseSeeds)), (bytes) => {
        if (expectBytesRoundTrip(responses, bytes)) decoded.responses++;
      }),
      params(31),
    );
    report(`decoded: ${decoded.requests} requests, ${decoded.responses} responses of ${RUNS} each`);
    expect(decoded.requests).to.be.greaterThan(RUNS / 4);
    expect(decoded.responses).to.be.greaterThan(RUNS / 4);
  });

  it('engine commands: typed errors; whatever decodes round-trips; the encoder round-trips', async () => {
    const codec: Codec<Command> = { encode: encodeCommand, decode: decodeCommand };
    await check(fc.property(commandArb, (v) => expectValueRoundTrip(codec, v)), params(40));
    let decoded = 0;
    await check(
      fc.property(commandInputArb, (bytes) => {
        if (expectBytesRoundTrip(codec, bytes)) decoded++;
      }),
      params(3),
    );
    report(`decoded: ${decoded} of ${RUNS} hostile commands`);
    // The binary body checks every tag, flag, count and length, so fewer mutants survive than of JSON.
    expect(decoded).to.be.greaterThan(RUNS / 50);
  });

  it('engine commands in format version 1 (JSON, still decoded): typed errors; whatever decodes round-trips through version 1', async () => {
    // Within version 1: JSON can carry what UTF-8 cannot (a lone surrogate escaped as \ud800),
    // which version 2 refuses to encode rather than change.
    const codec: Codec<Command> = { encode: encodeCommandV1, decode: decodeCommand };
    await check(fc.property(commandArb, (v) => expectValueRoundTrip(codec, v)), params(41));
    let decoded = 0;
    await check(
      fc.property(commandV1InputArb, (bytes) => {
        if (expectBytesRoundTrip(codec, bytes)) decoded++;
      }),
      params(4),
    );
    report(`decoded: ${decoded} of ${RUNS} hostile version-1 commands`);
    expect(decoded).to.be.greaterThan(RUNS / 20);
  });

  it('manifests and region state (raft snapshot data): typed errors; whatever decodes round-trips; the encoder round-trips', async () => {
    const codec: Codec<RegionManifest> = { encode: encodeManifest, decode: (b) => decodeManifest(b, 'fuzz') };
    await check(fc.property(manifestArb, (v) => expectValueRoundTrip(codec, v)), params(50));
    let decoded = 0;
    let states = 0;
    const stateFields = (m: RegionManifest) => canon({ flushedIndex: m.flushedIndex, flushedTerm: m.flushedTerm, voters: m.voters, learners: m.learners, ssts: m.ssts, dedup: m.dedup });
    await check(
      fc.property(manifestInputArb(manifestArb.map(encodeManifest)), (bytes) => {
        if (!expectBytesRoundTrip(codec, bytes)) return;
        decoded++;
        // The region state built from it writes the same manifest back (its own schema and id aside).
        let state: RegionState;
        try {
          state = RegionState.deserialize(schema, bytes, '30064771072');
        } catch (err) {
          if (!isRegionDbError(err)) throw untyped(err);
          return;
        }
        states++;
        expectSame(stateFields(decodeManifest(state.serialize(), 'again')), stateFields(decodeManifest(bytes, 'fuzz')), 'manifest of the deserialized region state');
      }),
      params(4),
    );
    report(`decoded: ${decoded} manifests of ${RUNS}, ${states} of them region states`);
    expect(decoded).to.be.greaterThan(RUNS / 10);
    expect(states).to.be.greaterThan(0);
  });

  it('metasrv catalog: typed errors; whatever decodes round-trips; the encoder round-trips', async () => {
    const codec: Codec<CatalogState> = { encode: encodeCatalog, decode: (b) => decodeCatalog(b, 'fuzz') };
    await check(fc.property(catalogArb, (v) => expectValueRoundTrip(codec, v)), params(60));
    let decoded = 0;
    await check(
      fc.property(catalogInputArb(catalogArb.map(encodeCatalog)), (bytes) => {
        if (expectBytesRoundTrip(codec, bytes)) decoded++;
      }),
      params(5),
    );
    report(`decoded: ${decoded} of ${RUNS} hostile catalogs`);
    expect(decoded).to.be.greaterThan(RUNS / 10);
  });

  it('SSTs: entries round-trip through buildSst; mutated SSTs, checksums fixed, fail typed or read back consistently', async () => {
    await check(
      fc.asyncProperty(sstEntriesArb, fc.constantFrom(1, 64, 16 * 1024), async (entries, blockTargetBytes) => {
        const read = await readSst(buildSst(entries, { blockTargetBytes }).bytes);
        expectSame(await expectSstConsistent(read, blockTargetBytes), entries, 'entries read back');
      }),
      params(70, Math.ceil(RUNS / 3)),
    );
    const valid = buildSst(
      Array.from({ length: 40 }, (_, i) => {
        const key = new Uint8Array(12); // a 4-byte tag, then the timestamp with its sign bit flipped (key.ts)
        new DataView(key.buffer).setUint32(0, i);
        key[4] = 0x80;
        return { key, version: i + 1, value: i % 7 === 0 ? null : new TextEncoder().encode(`value-${i}`) };
      }),
      { blockTargetBytes: 128 },
    ).bytes;
    const outcomes = { byteMutations: new Map<string, number>(), structural: new Map<string, number>() };
    // Open and scan may refuse (typed); once they accept, get and the writer must agree.
    const probe = (arm: keyof typeof outcomes) => async (bytes: Uint8Array) => {
      let outcome = 'accepted';
      let read: Awaited<ReturnType<typeof readSst>> | undefined;
      try {
        read = await readSst(bytes);
      } catch (err) {
        if (!isRegionDbError(err)) throw untyped(err);
        outcome = sstOutcome(err);
      }
      if (read) await expectSstConsistent(read, 128);
      outcomes[arm].set(outcome, (outcomes[arm].get(outcome) ?? 0) + 1);
    };
    await check(fc.asyncProperty(hostile(fc.constant(valid)), probe('byteMutations')), params(6));
    await check(fc.asyncProperty(structurallyMutatedSst(valid), probe('structural')), params(7));
    for (const [arm, counts] of Object.entries(outcomes)) report(`${arm}: ${[...counts].map(([k, n]) => `${k}×${n}`).join(' ')}`);
    // Structural mutations keep the checksums valid: most get past them, and many reach the block parser.
    const structural = (k: string) => outcomes.structural.get(k) ?? 0;
    // (Some do stop there legitimately: an index handle moved off its block reads bytes whose CRC cannot match.)
    expect(structural('checksum'), 'structural mutations stopped by a checksum').to.be.lessThan(RUNS / 8);
    expect(structural('block parser') + structural('accepted'), 'structural mutations that reached the block parser').to.be.greaterThan(RUNS / 5);
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
    await check(
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
      params(8, Math.min(RUNS, 300)), // each miss costs one scrypt (~50 ms / 4 threads)
    );
    rmSync(join(usersFile, '..'), { recursive: true, force: true });
  });
});

describe('fuzz findings (regression tests)', () => {
  it('an SST entry whose key the writer refuses (shorter than its timestamp, or a timestamp beyond ±2^53) is CORRUPTION', async () => {
    // Found by the SST round trip: with every checksum valid, the reader accepted such keys in
    // the middle of a block, and compaction could never rewrite them (buildSst refuses them).
    const key = (tag: number, tsBytes: number[]) => Uint8Array.from([0, 0, 0, tag, ...tsBytes]);
    const ts0 = [0x80, 0, 0, 0, 0, 0, 0, 0];
    const first = { key: key(1, ts0), version: 1, value: null };
    const last = { key: key(3, ts0), version: 3, value: null };
    const valid = buildSst([first, { key: key(2, ts0), version: 2, value: null }, last]).bytes;
    for (const bad of [Uint8Array.from([0, 0, 0, 2]), key(2, [0x90, 0, 0, 0, 0, 0, 0, 0]), key(2, [0x7f, 0xe0, 0, 0, 0, 0, 0, 0])]) {
      const layout = splitSst(valid);
      layout.blocks[0]!.payload = encodeBlock([first, { key: bad, version: 2, value: null }, last]);
      const bytes = assembleSst(layout, true);
      let error: unknown;
      try {
        await readSst(bytes);
      } catch (err) {
        error = err;
      }
      expect(isRegionDbError(error, ErrorCode.Corruption), `key ${Buffer.from(bad).toString('hex')}: ${(error as Error)?.message}`).to.equal(true);
    }
    // The edges the writer accepts still read: timestamps ±(2^53 - 1).
    const edges = [key(2, [0x7f, 0xe0, 0, 0, 0, 0, 0, 1]), key(2, [0x80, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])];
    for (const edge of edges) {
      const layout = splitSst(valid);
      layout.blocks[0]!.payload = encodeBlock([first, { key: edge, version: 2, value: null }, last]);
      expect((await readSst(assembleSst(layout, true))).entries).to.have.length(3);
      buildSst([first, { key: edge, version: 2, value: null }, last]); // and the writer takes them
    }
  });

  it('a WAL hard state or truncation record with bytes after its fields is CORRUPTION, not a silent prefix', () => {
    // Found by the canonical round trip: the fixed-size records ignored trailing bytes, so a
    // record no encoder writes (checksum valid) decoded as if it were one.
    for (const [decode, payload] of [
      [decodeHardState, encodeHardState({ term: 1, vote: 2, commit: 3 }).subarray(9)],
      [decodeTruncated, encodeTruncated({ index: 4, term: 5 }).subarray(9)],
    ] as const) {
      const record = frame(Uint8Array.from([...payload, 0]));
      expect(() => decode(record)).to.throw(RegionDbError, /trailing/);
    }
  });
});

// ─── (b) every gRPC method of a live metasrv + datanode ──────────────────────────────────────

/**
 * A valid request per method: mutations of these reach the handlers; random bytes test the
 * decoder. A method added later without a sample is fuzzed from an empty request.
 */
const SAMPLE_REQUESTS: Record<string, Record<string, Record<string, unknown>>> = {
  Database: {
    // Invalid on purpose (two tags, no timestamp): mutations rarely make tables.
    CreateTable: { name: 'fz_new', columns: [{ name: 'a', type: 'STRING', semantic: 'TAG' }, { name: 'b', type: 'STRING', semantic: 'TAG' }], region_count: 1 },
    DropTable: { name: 'fz_absent' },
    DescribeTable: { name: 'fz' },
    Write: { table: 'fz', rows: [{ values: { host: { string_value: 'a' }, ts: { timestamp_ms_value: '1700000000000' }, usage: { float64_value: 1.5 } } }], client_id: 'fz', request_id: '1' },
    Delete: { table: 'fz', keys: [{ values: { host: { string_value: 'a' }, ts: { timestamp_ms_value: '1700000000000' } } }] },
    Batch: { id: '1', get: { table: 'fz', key: { values: { host: { string_value: 'a' }, ts: { timestamp_ms_value: '1700000000000' } } }, consistency: 'LINEARIZABLE' } },
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
    RecoverTable: { table: 'fz_absent' },
  },
  RaftTransport: {
    // A region this node does not host: the batch is decoded and checked, and dropped (sending
    // hostile raft traffic into the live region would make its availability part of the result).
    Stream: { cluster_id: 'fz-cluster', from_node_id: '2', envelopes: [{ region_id: '30064771072', message: { type: 3, from: '2', to: '1', term: '1' } }] },
  },
};

/**
 * Statuses a local, healthy server may answer hostile input with. Not UNAVAILABLE: here it would
 * mean a hung or crashed dependency — the metasrv and the datanode are local and up, every
 * region the requests name is hosted and led by the one datanode (the test waits for its leader
 * before each method), and a raft batch for a region not hosted is dropped, not refused.
 * Not DEADLINE_EXCEEDED or CANCELLED either: a handler that does not answer within
 * CALL_DEADLINE_MS is hung.
 */
const CLEAN = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.DATA_LOSS,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
]);


/** Generous: a handler that has not answered by then is hung (the slowest, Admin.Flush, writes one SST to a local directory). */
const CALL_DEADLINE_MS = 20_000;

interface Target {
  service: string;
  method: string;
  addr: string;
  definition: grpc.MethodDefinition<unknown, unknown>;
}

interface Answer {
  code: grpc.status;
  details: string;
}

const identity = (b: Buffer) => b;

/** One raw call; the final status, and each stream response decoded by `decodeResponse` into answers of their own (Batch items). */
function send(client: grpc.Client, t: Target, bytes: Buffer, deadlineMs: number): Promise<{ status: Answer; items: Answer[] }> {
  const deadline = Date.now() + deadlineMs;
  const { requestStream, responseStream, path } = t.definition;
  const items: Answer[] = [];
  const onResponse = (response: Buffer) => {
    if (t.method !== 'Batch') return;
    try {
      const item = decodeBatchResponse(response);
      items.push(item.error ? { code: item.error.grpc_code, details: item.error.message } : { code: grpc.status.OK, details: '' });
    } catch (err) {
      items.push({ code: grpc.status.UNKNOWN, details: `undecodable Batch response: ${(err as Error).message}` });
    }
  };
  return new Promise((resolve) => {
    if (!requestStream && !responseStream) {
      client.makeUnaryRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline }, (err) =>
        resolve({ status: err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }, items }),
      );
      return;
    }
    const call = requestStream
      ? client.makeBidiStreamRequest(path, identity, identity, new grpc.Metadata(), { deadline })
      : client.makeServerStreamRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline });
    call.on('data', onResponse);
    call.on('error', () => {}); // the status event carries the same code
    call.on('status', (s: grpc.StatusObject) => resolve({ status: { code: s.code, details: s.details }, items }));
    if (requestStream) {
      const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
      duplex.write(bytes);
      duplex.write(bytes);
      duplex.end();
    }
  });
}

/** The request could not be decoded: the handler never saw it. */
function isDecodeError(a: Answer): boolean {
  return a.code === grpc.status.INVALID_ARGUMENT && (a.details.startsWith('malformed request:') || a.details === 'malformed raft message batch');
}

/** Why an answer is not clean, or undefined. */
function uncleanReason(a: Answer): string | undefined {
  if (CLEAN.has(a.code)) return undefined;
  return `${grpc.status[a.code]} (${a.details})`;
}

interface MethodStats {
  cases: number;
  /** One per call; a Batch call answers once per operation. */
  answers: number;
  /** Answers other than a decode error: the handler acted on the input (Batch: per operation). */
  reached: number;
  ok: number;
  codes: Map<string, number>;
  /** Unclean answers, with the request. */
  unclean: string[];
}

/** Structural mutations of a request: decoded (proto-loader), a field replaced, deleted or nudged, encoded again (valid protobuf, hostile values). */
function structuralRequests(t: Target, sample: Buffer): fc.Arbitrary<Uint8Array> {
  const doc = JSON.parse(JSON.stringify(t.definition.requestDeserialize(sample))) as Json;
  return mutatedJson(fc.constant(doc)).map((d) => {
    try {
      return new Uint8Array(t.definition.requestSerialize(d) as Buffer);
    } catch {
      return new Uint8Array(sample); // proto-loader refused the object: the sample as is
    }
  });
}

/** Fuzzes one method; never throws for an answer (the caller asserts on the stats). */
async function fuzzMethod(client: grpc.Client, t: Target, sampleRequest: Record<string, unknown>, runs: number, seedOffset: number, deadlineMs: number): Promise<MethodStats> {
  const stats: MethodStats = { cases: 0, answers: 0, reached: 0, ok: 0, codes: new Map(), unclean: [] };
  const sample = t.definition.requestSerialize(sampleRequest) as Buffer;
  const caseArb = fc.oneof(
    { weight: 1, arbitrary: fc.constant(new Uint8Array(sample)) },
    { weight: 4, arbitrary: hostile(fc.constant(new Uint8Array(sample))) },
    { weight: 4, arbitrary: structuralRequests(t, sample) },
  );
  const count = (a: Answer) => {
    const key = grpc.status[a.code] ?? String(a.code);
    stats.codes.set(key, (stats.codes.get(key) ?? 0) + 1);
    stats.answers++;
    if (!isDecodeError(a) && !uncleanReason(a)) stats.reached++;
    if (a.code === grpc.status.OK) stats.ok++;
  };
  // The first unclean answer ends the method's run (a hung handler costs a deadline per case),
  // reported with fast-check's seed and path: FUZZ_SEED replays it.
  const details = await fc.check(
    fc.asyncProperty(caseArb, async (bytes) => {
      stats.cases++;
      const { status, items } = await send(client, t, Buffer.from(bytes), deadlineMs);
      // A Batch stream answers per operation; its status says only whether the stream itself failed.
      const answers = t.method === 'Batch' && status.code === grpc.status.OK ? items : [status];
      for (const a of answers) count(a);
      for (const a of t.method === 'Batch' ? [status, ...items] : answers) {
        const why = uncleanReason(a);
        if (why) throw new Error(`${why} to ${Buffer.from(bytes).toString('hex')}`);
      }
    }),
    params(seedOffset, runs),
  );
  if (details.failed) stats.unclean.push(`${(details.errorInstance as Error)?.message} (seed ${details.seed}, path ${details.counterexamplePath})`);
  return stats;
}

function targetsOf(service: 'Database' | 'Admin' | 'RaftTransport' | 'Meta', addr: string): Target[] {
  const { services } = loadProtos();
  return Object.entries(services[service].service).map(([method, definition]) => ({ service, method, addr, definition }));
}

/** Cases per method: every method gets enough to show its handler is reached. */
const LIVE_RUNS_PER_METHOD = Math.max(20, Math.ceil(RUNS / 10));

describe(`fuzz: every gRPC method of a live metasrv + datanode (runs ${LIVE_RUNS_PER_METHOD} per method, seed ${SEED})`, function () {
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

  /** Creates the table; undefined if it exists already. */
  async function createTable(name: string): Promise<TableSchema | undefined> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        return await client.createTable(
          name,
          [
            { name: 'host', type: 'string', semantic: 'tag' },
            { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
            { name: 'usage', type: 'float64', semantic: 'field' },
          ],
          1,
        );
      } catch (err) {
        if (isRegionDbError(err, ErrorCode.AlreadyExists)) return undefined;
        if (Date.now() > deadline) throw err; // the datanode has not registered yet: retry
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /**
   * A mutated DropTable may have dropped 'fz' (or a Delete its row): bring them back, so every
   * method meets a live table with a leader (the client's write waits for one).
   */
  async function restoreFz(): Promise<void> {
    const created = await createTable('fz');
    if (created) {
      // A new table of the same name. A client may have cached the old one's routes (so a new
      // client), and until the datanode has closed the old replicas it resolves 'fz' to the old
      // schema: writes fail "some rows do not belong to region" (noticed, not changed: see the
      // fuzz notes in docs/security.md).
      client.close();
      client = new RegionDbClient({ metasrv: `127.0.0.1:${metasrv.grpcPort}`, deadlineMs: 15_000 });
      const deadline = Date.now() + 15_000;
      const stale = () => [...datanode.metas.values()].some((m) => m.schema.name === 'fz' && m.schema.tableId !== created.tableId);
      while (stale()) {
        if (Date.now() > deadline) throw new Error("the datanode still hosts the dropped table 'fz' after 15 s");
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await client.write('fz', [{ host: 'a', ts: 1_700_000_000_000, usage: 1 }]);
  }

  it('answers every method promptly and cleanly, reaches every handler, and stays healthy', async () => {
    const dn = `127.0.0.1:${datanode.grpcPort}`;
    const all = [...targetsOf('Database', dn), ...targetsOf('Admin', dn), ...targetsOf('Meta', `127.0.0.1:${metasrv.grpcPort}`), ...targetsOf('RaftTransport', dn)];
    const problems: string[] = [];
    for (const [i, t] of all.entries()) {
      const name = `${t.service}.${t.method}`;
      await restoreFz();
      let c = raw.get(t.addr);
      if (!c) raw.set(t.addr, (c = new grpc.Client(t.addr, grpc.credentials.createInsecure())));
      const stats = await fuzzMethod(c, t, SAMPLE_REQUESTS[t.service]?.[t.method] ?? {}, LIVE_RUNS_PER_METHOD, 100 + i, CALL_DEADLINE_MS);
      report(`${name.padEnd(24)} reached ${String(stats.reached).padStart(3)}/${stats.answers} (ok ${stats.ok}) ${[...stats.codes].map(([c, n]) => `${c}×${n}`).join(' ')}`);
      for (const u of stats.unclean) problems.push(`${name} answered ${u}`);
      if (stats.reached === 0) problems.push(`${name}: no input reached the handler (no clean answer but decode errors)`);
    }
    expect(problems, REPLAY).to.deep.equal([]);
    expect(crashes).to.deep.equal([]);
    expect(datanode.health()['status']).to.equal('ok');
    // Still serving DDL, writes and reads (a fresh table: mutated DropTables may have hit 'fz').
    await createTable('fz_after');
    await client.write('fz_after', [{ host: 'after', ts: 1_700_000_000_001, usage: 2 }]);
    const row = await client.get('fz_after', { host: 'after', ts: 1_700_000_000_001 });
    expect(row?.row['usage']).to.equal(2);
  });
});

// ─── (c) the properties can fail ─────────────────────────────────────────────────────────────

describe('fuzz: the properties can fail (planted bugs, test-only)', function () {
  this.timeout(60_000);
  /** The message of the error a property failed with ('' if it held). */
  const failure = (property: fc.IProperty<unknown>, offset: number): string => {
    const details = fc.check(property, params(offset, 200));
    return details.failed ? String((details.errorInstance as Error)?.message) : '';
  };

  it('value round trip: an encoder that drops a field (snapshot learners) is caught', () => {
    const dropsLearners: Codec<Snapshot> = {
      encode: (s) => encodeSnapshot({ ...s, metadata: { ...s.metadata, confState: { voters: s.metadata.confState.voters, learners: [] } } }),
      decode: decodeSnapshot,
    };
    expect(failure(fc.property(snapshotArb, (v) => expectValueRoundTrip(dropsLearners, v)), 200)).to.match(/^decode\(encode\(value\)\)/);
  });

  it('bytes round trip: a decoder that accepts a wrong length field (checksum valid) is caught', () => {
    // The planted decoder fixes the length field up before decoding, i.e. never checks it.
    const ignoresLength: Codec<Entry> = {
      encode: encodeEntry,
      decode: (b) => {
        const fixed = Buffer.from(b);
        if (fixed.byteLength >= 9) fixed.writeUInt32BE(fixed.byteLength - 9, 5);
        return decodeEntry(fixed);
      },
    };
    expect(failure(fc.property(walInputArb(walRecordArbs.entry), (r) => void expectBytesRoundTrip(ignoresLength, r, true)), 201)).to.match(/^encode\(decode\(bytes\)\) \(a canonical format\)/);
  });

  it('bytes round trip: a decoder that reads a field differently from how it is written is caught (a client id cut short)', () => {
    const cutsClientId = (encode: Codec<Command>['encode']): Codec<Command> => ({
      encode,
      decode: (b) => {
        const cmd = decodeCommand(b);
        return cmd.kind === 'write' || cmd.kind === 'delete' ? { ...cmd, clientId: cmd.clientId.slice(0, -1) } : cmd;
      },
    });
    // Version-1 inputs round-trip within version 1, as the property above checks them (JSON holds
    // values version 2 refuses to encode, and that refusal would be found first).
    expect(failure(fc.property(commandV1InputArb, (b) => void expectBytesRoundTrip(cutsClientId(encodeCommandV1), b)), 202)).to.match(/^decode\(encode\(decode\(bytes\)\)\)/);
    expect(failure(fc.property(commandInputArb, (b) => void expectBytesRoundTrip(cutsClientId(encodeCommand), b)), 203), 'version 2').to.match(/^decode\(encode\(decode\(bytes\)\)\)/);
  });

  it('live: a handler that never answers, and a method whose decoder refuses everything, are reported', async () => {
    const admin = loadProtos().services.Admin.service;
    const refusing: grpc.ServiceDefinition = {
      ...admin,
      Compact: {
        ...admin['Compact']!,
        requestDeserialize: () => {
          throw new RegionDbError(ErrorCode.InvalidArgument, 'planted: refuses every request');
        },
      },
    };
    const server = await startGrpcServer('127.0.0.1', 0, [
      {
        name: 'Admin',
        definition: refusing,
        impl: {
          Status: () => {}, // planted: never answers
          Compact: unary(async () => ({}) as Record<string, unknown>, silentLogger),
        },
      },
    ], silentLogger);
    const c = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const target = (method: string): Target => ({ service: 'Admin', method, addr: '', definition: admin[method]! as grpc.MethodDefinition<unknown, unknown> });
      const hung = await fuzzMethod(c, target('Status'), {}, 2, 203, 300);
      expect(hung.unclean.join('\n')).to.match(/DEADLINE_EXCEEDED/);
      const refused = await fuzzMethod(c, target('Compact'), { region_id: '' }, 20, 204, 5000);
      expect(refused.unclean).to.deep.equal([]);
      expect(refused.reached, 'inputs that reached the planted handler').to.equal(0);
    } finally {
      c.close();
      await server.stop();
    }
  });
});
