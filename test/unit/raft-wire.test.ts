// The raft stream codec (src/rpc/raft-wire.ts): identity round trips, byte compatibility with
// raft.proto in both directions (protobufjs through @grpc/proto-loader, the library the codec
// replaced), INVALID_ARGUMENT for each malformed input, and a fuzz of random and mutated bytes.
// Seeded: RAFT_WIRE_SEED=n replays a run; the seed is in the titles and in every failure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as protoLoader from '@grpc/proto-loader';
import { expect } from 'chai';
import { AssertionError } from '../../src/common/assert.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import type { Entry, Message, MessageType, Snapshot } from '../../src/raft/types.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { type RaftBatch, decodeRaftBatch, decodeRaftBatchAck, encodeRaftBatch, encodeRaftBatchAck } from '../../src/rpc/raft-wire.js';
import { FUTURE_SCALAR_FIELDS, FUTURE_SCALAR_VALUES, expectInvalid as expectInvalidBy, key, len, loadProtoVariant, mutate, num, varint } from '../support/protobuf-bytes.js';

const SEED = process.env['RAFT_WIRE_SEED'] ? Number(process.env['RAFT_WIRE_SEED']) : 20_260_301;

// ─── Random batches ───────────────────────────────────────────────────────────────────────────

/** Values around every varint length boundary, and the largest safe integer. */
const EDGES = [0, 1, 127, 128, 16_383, 16_384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35, 2 ** 42, 2 ** 49, 2 ** 52, Number.MAX_SAFE_INTEGER];

function u64(rand: SeededRand): number {
  if (rand.chance(0.3)) return rand.pick(EDGES);
  return Math.floor(rand.next() * 2 ** rand.range(0, 53));
}

function bytes(rand: SeededRand, maxLength: number): Uint8Array {
  const out = new Uint8Array(rand.int(maxLength + 1));
  for (let i = 0; i < out.length; i++) out[i] = rand.int(256);
  return out;
}

function randomEntry(rand: SeededRand): Entry {
  const large = rand.chance(0.05);
  return { term: u64(rand), index: u64(rand), type: rand.chance(0.2) ? 1 : 0, data: large ? bytes(rand, 200_000) : rand.chance(0.3) ? new Uint8Array(0) : bytes(rand, 64) };
}

function randomSnapshot(rand: SeededRand): Snapshot {
  const ids = (n: number) => Array.from({ length: rand.int(n + 1) }, () => u64(rand));
  return { metadata: { index: u64(rand), term: u64(rand), confState: { voters: ids(5), learners: ids(3) } }, data: bytes(rand, 128) };
}

function randomMessage(rand: SeededRand, type: MessageType): Message {
  return {
    type,
    from: u64(rand),
    to: u64(rand),
    term: u64(rand),
    logTerm: u64(rand),
    index: u64(rand),
    entries: Array.from({ length: rand.chance(0.5) ? 0 : rand.int(8) }, () => randomEntry(rand)),
    commit: u64(rand),
    reject: rand.chance(0.5),
    rejectHint: u64(rand),
    snapshot: type === 9 || rand.chance(0.1) ? randomSnapshot(rand) : null,
    context: rand.chance(0.5) ? new Uint8Array(0) : bytes(rand, 32),
  };
}

const REGION_IDS = ['30064771072', '1', '', 'région-ü', '18446744073709551615'];

/** A batch holding every message type at least once (in a random order), plus random ones. */
function randomBatch(rand: SeededRand): RaftBatch {
  const types = rand.shuffle(Array.from({ length: 14 }, (_, i) => (i + 1) as MessageType));
  for (let i = rand.int(4); i > 0; i--) types.push(rand.range(1, 14) as MessageType);
  return {
    clusterId: rand.pick(['c', '', 'cluster-ü-✓', 'x'.repeat(300)]),
    fromNodeId: u64(rand),
    envelopes: types.map((type) => ({ regionId: rand.pick(REGION_IDS), message: randomMessage(rand, type) })),
  };
}

/** Bytes as hex, so Buffers and Uint8Arrays compare equal by content. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return `hex:${Buffer.from(value).toString('hex')}`;
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

// ─── raft.proto's shape (proto-loader plain objects: keepCase, uint64s as decimal strings) ───

interface ProtoBatch {
  cluster_id: string;
  from_node_id: string;
  envelopes: { region_id: string; message: Record<string, unknown> }[];
}

function protoOf(batch: RaftBatch): ProtoBatch {
  return {
    cluster_id: batch.clusterId,
    from_node_id: String(batch.fromNodeId),
    envelopes: batch.envelopes.map(({ regionId, message: m }) => ({
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
        snapshot: m.snapshot
          ? {
              index: String(m.snapshot.metadata.index),
              term: String(m.snapshot.metadata.term),
              voters: m.snapshot.metadata.confState.voters.map(String),
              learners: m.snapshot.metadata.confState.learners.map(String),
              data: m.snapshot.data,
            }
          : null,
        context: m.context,
      },
    })),
  };
}

/** Every message of `batch` carries the future fields too. */
function withFutureFields(batch: ProtoBatch): ProtoBatch {
  return {
    ...batch,
    ...FUTURE_SCALAR_VALUES,
    envelopes: batch.envelopes.map((env) => {
      const m = env.message as { entries: object[]; snapshot: object | null };
      const message = { ...m, ...FUTURE_SCALAR_VALUES, entries: m.entries.map((e) => ({ ...e, ...FUTURE_SCALAR_VALUES })), snapshot: m.snapshot && { ...m.snapshot, ...FUTURE_SCALAR_VALUES } };
      return { ...env, ...FUTURE_SCALAR_VALUES, message };
    }),
  };
}

type StreamMethod = protoLoader.MethodDefinition<object, object, object, object>;

/** RaftTransport.Stream of raft.proto as it is (repeated uint64s packed). */
function realStream(): StreamMethod {
  return loadProtos().services.RaftTransport.service['Stream'] as unknown as StreamMethod;
}

/** RaftTransport.Stream of a raft.proto variant: voters/learners unpacked, future fields in every message. */
function variantStream(dir: string): StreamMethod {
  const definition = loadProtoVariant(dir, 'regiondb/v1/raft.proto', {
    'raft.proto': (original) => {
      const text = original.replace(/(repeated uint64 (voters|learners) = \d+)/g, '$1 [packed = false]').replace(/^(message \w+ \{)$/gm, `$1${FUTURE_SCALAR_FIELDS}`);
      expect(text).to.contain('[packed = false]');
      return text;
    },
  });
  return (definition['regiondb.v1.RaftTransport'] as protoLoader.ServiceDefinition)['Stream'] as StreamMethod;
}

// ─── Malformed input ──────────────────────────────────────────────────────────────────────────

/** A batch of one envelope around `message` (raw RaftMessage bytes). */
const batchOf = (message: number[]) => Buffer.from(len(3, [...len(1, [0x31]), ...len(2, message)]));

function expectInvalid(input: number[] | Buffer, pattern: RegExp, decode: (b: Uint8Array) => unknown = decodeRaftBatch): void {
  expectInvalidBy(input, pattern, decode);
}

// ─── The specification ────────────────────────────────────────────────────────────────────────

describe(`raft wire codec (src/rpc/raft-wire.ts, seed ${SEED})`, () => {
  describe('round trip', () => {
    it('decode(encode(batch)) is the batch: every message type, empty and large entries, snapshots, contexts, 2^53 - 1', () => {
      const rand = new SeededRand(SEED);
      for (let i = 0; i < 200; i++) {
        const batch = randomBatch(rand);
        expect(plain(decodeRaftBatch(encodeRaftBatch(batch))), `seed ${SEED}, batch ${i}`).to.deep.equal(plain(batch));
      }
    });

    it('an empty batch and a batch of defaults encode to the bytes protobuf would (nothing but presence)', () => {
      expect(encodeRaftBatch({ clusterId: '', fromNodeId: 0, envelopes: [] }).byteLength).to.equal(0);
      const message: Message = { type: 1, from: 0, to: 0, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: new Uint8Array(0) };
      const batch = { clusterId: '', fromNodeId: 0, envelopes: [{ regionId: '', message }] };
      expect([...encodeRaftBatch(batch)]).to.deep.equal(len(3, len(2, num(1, 1))));
      expect(plain(decodeRaftBatch(encodeRaftBatch(batch)))).to.deep.equal(plain(batch));
    });

    it('acks: decode(encode(ack)) is the ack, 0 encodes to no bytes', () => {
      for (const accepted of [0, 1, 127, 128, 4096, 0xffff_ffff]) expect(decodeRaftBatchAck(encodeRaftBatchAck({ accepted }))).to.deep.equal({ accepted });
      expect(encodeRaftBatchAck({ accepted: 0 }).byteLength).to.equal(0);
    });

    it('decoded entry data and contexts are views into the received bytes, not copies (documented aliasing)', () => {
      const data = new Uint8Array([1, 2, 3]);
      const message: Message = { type: 1, from: 1, to: 2, term: 3, logTerm: 0, index: 0, entries: [{ term: 3, index: 1, type: 0, data }], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: data };
      const wire = encodeRaftBatch({ clusterId: 'c', fromNodeId: 1, envelopes: [{ regionId: '1', message }] });
      const decoded = decodeRaftBatch(wire).envelopes[0]!.message;
      expect(decoded.entries[0]!.data.buffer).to.equal(wire.buffer);
      expect(decoded.context.buffer).to.equal(wire.buffer);
    });

    it('encoding a value that is not an unsigned safe integer is a bug (AssertionError), never wrong bytes', () => {
      const message: Message = { type: 1, from: -1, to: 2, term: 3, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: new Uint8Array(0) };
      expect(() => encodeRaftBatch({ clusterId: 'c', fromNodeId: 1, envelopes: [{ regionId: '1', message }] })).to.throw(AssertionError, /from/);
      expect(() => encodeRaftBatch({ clusterId: 'c', fromNodeId: 2 ** 53, envelopes: [] })).to.throw(AssertionError, /from_node_id/);
      expect(() => encodeRaftBatchAck({ accepted: 2 ** 32 })).to.throw(AssertionError, /accepted/);
    });
  });

  describe('wire compatibility with raft.proto', () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-raft-wire-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('our encoding, decoded by protobufjs, has the same values', () => {
      const stream = realStream();
      const rand = new SeededRand(SEED + 1);
      for (let i = 0; i < 100; i++) {
        const batch = randomBatch(rand);
        expect(plain(stream.requestDeserialize(encodeRaftBatch(batch))), `seed ${SEED + 1}, batch ${i}`).to.deep.equal(plain(protoOf(batch)));
      }
      expect(stream.responseDeserialize(encodeRaftBatchAck({ accepted: 4242 }))).to.deep.equal({ accepted: 4242 });
    });

    it('protobufjs encodings (packed), decoded by us, have the same values', () => {
      const stream = realStream();
      const rand = new SeededRand(SEED + 2);
      for (let i = 0; i < 100; i++) {
        const batch = randomBatch(rand);
        expect(plain(decodeRaftBatch(stream.requestSerialize(protoOf(batch)))), `seed ${SEED + 2}, batch ${i}`).to.deep.equal(plain(batch));
      }
      expect(decodeRaftBatchAck(stream.responseSerialize({ accepted: 4242 }))).to.deep.equal({ accepted: 4242 });
    });

    it('protobufjs encodings with unpacked voters/learners and unknown fields in every message, decoded by us, have the same values', () => {
      const stream = variantStream(dir);
      const rand = new SeededRand(SEED + 3);
      let unpacked = 0;
      for (let i = 0; i < 100; i++) {
        const batch = randomBatch(rand);
        const wire = stream.requestSerialize(withFutureFields(protoOf(batch)));
        expect(wire.byteLength).to.be.greaterThan(encodeRaftBatch(batch).byteLength);
        unpacked += batch.envelopes.filter((e) => (e.message.snapshot?.metadata.confState.voters.length ?? 0) > 1).length;
        expect(plain(decodeRaftBatch(wire)), `seed ${SEED + 3}, batch ${i}`).to.deep.equal(plain(batch));
      }
      expect(unpacked, 'snapshots with several voters were encoded unpacked').to.be.greaterThan(10);
      expect(decodeRaftBatchAck(stream.responseSerialize({ accepted: 9, ...FUTURE_SCALAR_VALUES }))).to.deep.equal({ accepted: 9 });
    });

    it('fields in any order, packed and unpacked runs of one field appended, last scalar and last message win', () => {
      const snapshot = [...len(3, [1, 2]), ...num(3, 3), ...len(5, [0xaa]), ...num(1, 7), ...num(4, 9), ...num(1, 8)];
      const message = [...len(12, [0xcc]), ...num(2, 5), ...len(11, num(1, 99)), ...num(1, 9), ...len(11, snapshot), ...num(2, 6), ...num(1, 4), ...num(1, 9)];
      const wire = Buffer.from([...num(2, 3), ...len(3, [...len(2, message), ...len(1, [0x37])]), ...len(1, [0x63]), ...num(2, 4)]);
      const decoded = decodeRaftBatch(wire);
      expect(decoded.clusterId).to.equal('c');
      expect(decoded.fromNodeId).to.equal(4);
      const m = decoded.envelopes[0]!.message;
      expect(decoded.envelopes[0]!.regionId).to.equal('7');
      expect([m.type, m.from]).to.deep.equal([9, 6]);
      expect(plain(m.snapshot)).to.deep.equal(plain({ metadata: { index: 8, term: 0, confState: { voters: [1, 2, 3], learners: [9] } }, data: new Uint8Array([0xaa]) }));
      expect(plain(m.context)).to.equal('hex:cc');
    });

    it('unknown groups (wire types 3 and 4), nested, are skipped', () => {
      const group = [...key(20, 3), ...num(1, 5), ...key(21, 3), ...len(2, [1, 2]), ...key(21, 4), ...key(20, 4)];
      const wire = batchOf([...group, ...num(1, 3), ...group]);
      expect(decodeRaftBatch(Buffer.concat([Buffer.from(group), wire])).envelopes[0]!.message.type).to.equal(3);
    });
  });

  describe('malformed input is INVALID_ARGUMENT with the field and the reason', () => {
    it('a varint of 2^53 or more', () => {
      expectInvalid(num(2, 2n ** 53n), /RaftTransportStreamRequest\.from_node_id: varint at byte 1 is 2\^53 or more/);
      expectInvalid(batchOf([...num(1, 1), ...num(4, 2n ** 64n - 1n)]), /RaftMessage\.term: .* 2\^53 or more/);
      expectInvalid(batchOf([...num(1, 9), ...len(11, num(3, 2n ** 60n))]), /RaftSnapshot\.voters: .* 2\^53 or more/);
    });

    it('a varint longer than 10 bytes', () => {
      expectInvalid([...key(2, 0), ...Array(10).fill(0x80), 0x00], /RaftTransportStreamRequest\.from_node_id: varint at byte 1 is longer than 10 bytes/);
      expectInvalid([...key(50, 0), ...Array(10).fill(0xff), 0x01], /unknown field 50: varint .* longer than 10 bytes/);
      expectInvalid(batchOf([...num(1, 1), ...key(9, 0), ...Array(11).fill(0x80)]), /RaftMessage\.reject: .* longer than 10 bytes/);
    });

    it('a truncated field', () => {
      expectInvalid([...key(2, 0), 0x80], /RaftTransportStreamRequest\.from_node_id: truncated varint at byte 1/);
      expectInvalid([0x80], /RaftTransportStreamRequest tag: truncated varint at byte 0/);
      expectInvalid([...key(1, 2), 5, 0x61, 0x62], /RaftTransportStreamRequest\.cluster_id: length 5 at byte 1 runs past the end of its message \(2 bytes left\)/);
      expectInvalid([...key(50, 1), 1, 2, 3], /unknown field 50: truncated 8-byte value/);
      expectInvalid([...key(50, 5), 1, 2, 3], /unknown field 50: truncated 4-byte value/);
      expectInvalid(batchOf([...num(1, 9), ...len(11, [...key(3, 2), 2, 0x80, 0x80])]), /RaftSnapshot\.voters: truncated varint/);
    });

    it('a length beyond the buffer, or beyond the enclosing message', () => {
      expectInvalid([...key(3, 2), 0xff, 0xff, 0xff, 0xff, 0x0f], /RaftTransportStreamRequest\.envelopes: length 4294967295 at byte 1 runs past the end/);
      expectInvalid([...key(3, 2), ...varint(2n ** 52n)], /RaftTransportStreamRequest\.envelopes: length 4503599627370496/);
      // The envelope says 4 bytes; the message inside it claims 10.
      expectInvalid([...key(3, 2), 4, ...key(2, 2), 10, ...num(1, 1), 0, 0, 0, 0, 0, 0, 0, 0], /RaftEnvelope\.message: length 10 at byte 3 runs past the end of its message \(2 bytes left\)/);
    });

    it('a bad wire type', () => {
      expectInvalid(len(2, []), /RaftTransportStreamRequest\.from_node_id \(field 2\): wire type 2 at byte 0, raft\.proto declares 0/);
      expectInvalid(batchOf([...num(1, 1), ...num(7, 1)]), /RaftMessage\.entries \(field 7\): wire type 0/);
      expectInvalid(batchOf([...num(1, 1), ...len(7, num(4, 1))]), /RaftEntry\.data \(field 4\): wire type 0/);
      expectInvalid([...key(50, 6)], /unknown field 50: invalid wire type 6/);
      expectInvalid([...key(50, 7)], /invalid wire type 7/);
      expectInvalid([...key(50, 4)], /end-group tag at byte 0 without a group/);
      expectInvalid([0x00], /RaftTransportStreamRequest: invalid tag 0 at byte 0/);
      expectInvalid([...key(50, 3), ...num(1, 1)], /group 50 is not closed/);
      expectInvalid([...key(50, 3), ...key(51, 4)], /group 50 closed by end-group 51/);
      expectInvalid([...Array.from({ length: 150 }, () => key(50, 3)).flat()], /groups nested deeper than 100/);
      expectInvalid(varint(2n ** 32n), /invalid tag 4294967296/);
    });

    it('an unknown message type, an absent one, or an entry type other than 0/1', () => {
      expectInvalid(batchOf(num(1, 15)), /raft message type 15 is unknown/);
      expectInvalid(batchOf(num(1, 2 ** 40)), /raft message type 1099511627776 is unknown/);
      expectInvalid(batchOf(num(2, 1)), /raft message type 0 is unknown/);
      expectInvalid(batchOf([...num(1, 1), ...len(7, num(3, 2))]), /RaftEntry at byte \d+: type 2 is unknown/);
    });

    it('a snapshot message without a snapshot, an envelope without a message', () => {
      expectInvalid(batchOf(num(1, 9)), /snapshot message without a snapshot/);
      expectInvalid(len(3, len(1, [0x31])), /envelopes\[0\]: raft envelope without a message/);
      expectInvalid([...batchOf(num(1, 1)), ...len(3, [])], /envelopes\[1\]: raft envelope without a message/);
    });

    it('an ack that is not a uint32', () => {
      expectInvalid(num(1, 2 ** 32), /RaftTransportStreamResponse\.accepted: 4294967296 at byte 1 is not a uint32/, decodeRaftBatchAck);
      expectInvalid(len(1, []), /RaftTransportStreamResponse\.accepted \(field 1\): wire type 2/, decodeRaftBatchAck);
    });
  });

  describe('fuzz: random bytes and mutated encodings', () => {
    const CASES = Number(process.env['RAFT_WIRE_CASES'] ?? 20_000);

    /** Decodes; any error but a RegionDbError INVALID_ARGUMENT fails with the seed and the input. */
    function mustDecodeOrRefuse(input: Uint8Array, what: string): boolean {
      try {
        decodeRaftBatch(input);
        return true;
      } catch (err) {
        if (isRegionDbError(err, ErrorCode.InvalidArgument)) return false;
        throw new Error(`seed ${SEED}, ${what}: ${(err as Error)?.name}: ${(err as Error)?.message} for ${Buffer.from(input).toString('hex')}`, { cause: err });
      }
    }

    /** Tags and lengths of RaftBatch/RaftMessage fields, for mutate(). */
    const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x3a, 0x5a, 0x0b, 0x0c];

    it(`${CASES} cases decode or throw INVALID_ARGUMENT, nothing else`, () => {
      const rand = new SeededRand(SEED + 4);
      const valid = Array.from({ length: 20 }, () => {
        const small = randomBatch(rand);
        // Small batches, so mutations land in every field rather than in entry payloads.
        return encodeRaftBatch({ ...small, envelopes: small.envelopes.slice(0, 3).map((e) => ({ ...e, message: { ...e.message, entries: e.message.entries.slice(0, 2).map((x) => ({ ...x, data: x.data.subarray(0, 8) })) } })) });
      });
      let decoded = 0;
      for (let i = 0; i < CASES; i++) {
        if (rand.chance(0.2)) {
          if (mustDecodeOrRefuse(bytes(rand, 256), `case ${i} (random)`)) decoded++;
        } else if (mustDecodeOrRefuse(mutate(rand, rand.pick(valid), INTERESTING), `case ${i} (mutated)`)) {
          decoded++;
        }
      }
      expect(decoded, `seed ${SEED}: some mutations should still decode`).to.be.greaterThan(CASES / 50);
    });
  });
});
