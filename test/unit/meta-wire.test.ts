// The Meta codecs of src/rpc/meta-wire.ts (Heartbeat's request, GetRoutes' response) against the library they replaced:
// protobufjs through @grpc/proto-loader with the options of src/rpc/proto.ts. Encoding: the same
// bytes, byte for byte. Decoding: the same object, key order included, or INVALID_ARGUMENT; a fuzz
// over random and mutated bytes holds the decoder to that.
// Seeded: HEARTBEAT_WIRE_SEED=n replays a run; the seed is in the titles and in every failure.
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { AssertionError } from '../../src/common/assert.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { type GetRoutesResponseInput, type HeartbeatRequestInput, type ReplicaStatInput, decodeHeartbeatRequest, encodeGetRoutesResponse, encodeHeartbeatRequest, metaService } from '../../src/rpc/meta-wire.js';
import { toProtoSchema } from '../../src/rpc/values.js';
import { schema } from '../fixtures/one-region-table.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { expectInvalid, expectSameObject, key, len, mutate, num, str, varint } from '../support/protobuf-bytes.js';

const SEED = process.env['HEARTBEAT_WIRE_SEED'] ? Number(process.env['HEARTBEAT_WIRE_SEED']) : 20_261_204;

type Method = grpc.MethodDefinition<unknown, unknown>;

/** Meta.Heartbeat as proto-loader serializes it (the reference). */
function loaderHeartbeat(): Method {
  return loadProtos().services.Meta.service['Heartbeat'] as Method;
}

// ─── Random messages ──────────────────────────────────────────────────────────────────────────

/** Well-formed strings only: a lone surrogate is the one documented difference (U+FFFD). */
const UNITS = ['a', 'z', '0', '9', ' ', '-', '.', ':', '\u0000', 'é', 'ß', '✓', '中', '\u{1F600}'];

function randomString(rand: SeededRand): string {
  switch (rand.int(5)) {
    case 0:
      return '';
    case 1:
      return rand.pick(['leader', 'follower', 'ok', 'failed', '4294967296', '127.0.0.1:4001']);
    case 2:
      return 'x'.repeat(rand.range(40, 120)); // past the short-ASCII path
    default:
      return Array.from({ length: rand.int(60) }, () => rand.pick(UNITS)).join('');
  }
}

const U64_EDGES = ['0', '1', '127', '128', '16383', '16384', '4294967295', '4294967296', '9007199254740991', '9007199254740992', '9223372036854775808', '18446744073709551615'];

/** A uint64 as a caller may give it: a decimal string or (when safe) a number. */
function randomLong(rand: SeededRand): string | number {
  const text = rand.chance(0.3) ? rand.pick(U64_EDGES) : String(Math.floor(rand.next() * 2 ** rand.range(0, 53)));
  const n = Number(text);
  return rand.chance(0.3) && Number.isSafeInteger(n) ? n : text;
}

/** Each field present or absent (protobufjs writes a present field even when it is the default). */
function randomStat(rand: SeededRand): ReplicaStatInput {
  const s: Record<string, unknown> = {};
  const maybe = (name: string, value: () => unknown) => {
    if (rand.chance(0.85)) s[name] = value();
  };
  maybe('region_id', () => randomString(rand));
  for (const name of ['peer_id', 'term', 'leader_node_id', 'applied_index', 'commit_index', 'flushed_index', 'memtable_bytes', 'conf_index', 'snapshot_installed_index']) maybe(name, () => randomLong(rand));
  maybe('role', () => randomString(rand));
  maybe('voters', () => Array.from({ length: rand.int(6) }, () => randomLong(rand)));
  maybe('learners', () => Array.from({ length: rand.int(3) }, () => randomLong(rand)));
  maybe('health', () => randomString(rand));
  maybe('failure', () => randomString(rand));
  maybe('ssts', () => (rand.chance(0.2) ? rand.pick([0, 127, 128, 2 ** 31, 2 ** 32 - 1]) : rand.int(100)));
  maybe('members', () => Array.from({ length: rand.int(4) }, () => randomPeer(rand)));
  return s as ReplicaStatInput;
}

/** A Peer (ReplicaStat.members), each field present or absent. */
function randomPeer(rand: SeededRand): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  if (rand.chance(0.85)) p['peer_id'] = randomLong(rand);
  if (rand.chance(0.85)) p['node_id'] = randomLong(rand);
  if (rand.chance(0.3)) p['addr'] = randomString(rand);
  return p;
}

/** A HeldReplica (HeartbeatRequest.held_replicas), each field present or absent. */
function randomHeld(rand: SeededRand): Record<string, unknown> {
  const h: Record<string, unknown> = {};
  if (rand.chance(0.85)) h['region_id'] = randomString(rand);
  if (rand.chance(0.85)) h['peer_id'] = randomLong(rand);
  return h;
}

function randomRequest(rand: SeededRand, statsMax = 20): HeartbeatRequestInput {
  const req: Record<string, unknown> = {};
  if (rand.chance(0.9)) req['cluster_id'] = randomString(rand);
  if (rand.chance(0.9)) req['node_id'] = randomLong(rand);
  if (rand.chance(0.9)) req['addr'] = randomString(rand);
  if (rand.chance(0.9)) req['replicas'] = Array.from({ length: rand.int(statsMax + 1) }, () => randomStat(rand));
  if (rand.chance(0.9)) req['store_id'] = randomString(rand);
  for (const name of ['report_incarnation', 'report_seq', 'report_base_seq']) if (rand.chance(0.6)) req[name] = randomLong(rand);
  if (rand.chance(0.5)) req['removed_region_ids'] = Array.from({ length: rand.int(4) }, () => randomString(rand));
  if (rand.chance(0.6)) req['start_count'] = randomLong(rand);
  if (rand.chance(0.6)) req['start_id'] = randomString(rand);
  if (rand.chance(0.4)) req['held_replicas'] = Array.from({ length: rand.int(4) }, () => randomHeld(rand));
  return req as HeartbeatRequestInput;
}

/** A stat as the datanode builds it (src/replication/replica-stats.ts runningReplicaStat). */
const DATANODE_STAT: ReplicaStatInput = {
  region_id: '4294967296',
  peer_id: '7',
  role: 'leader',
  term: '3',
  leader_node_id: '2',
  applied_index: '1204',
  commit_index: '1204',
  flushed_index: '1100',
  memtable_bytes: '65536',
  voters: ['7', '8', '9'],
  learners: [],
  snapshot_installed_index: '0',
  ssts: 2,
  health: 'ok',
  failure: '',
  conf_index: '1',
  members: [
    { peer_id: '7', node_id: '2' },
    { peer_id: '8', node_id: '3' },
    { peer_id: '9', node_id: '1' },
  ],
};


function expectBothDecode(bytes: number[], what: string): void {
  const input = Buffer.from(bytes);
  expectSameObject(decodeHeartbeatRequest(input), loaderHeartbeat().requestDeserialize(input), what);
}

// ─── The specification ────────────────────────────────────────────────────────────────────────

describe(`Meta wire codecs: Heartbeat request, GetRoutes response (src/rpc/meta-wire.ts, seed ${SEED})`, () => {
  describe('the same bytes and objects as proto-loader', () => {
    it('random requests: byte-identical encodings; each decodes the other to its own round trip', () => {
      const pl = loaderHeartbeat();
      const rand = new SeededRand(SEED);
      for (let i = 0; i < 1500; i++) {
        const req = randomRequest(rand);
        const what = `seed ${SEED}, request ${i}`;
        const reference = pl.requestSerialize(req);
        const ours = encodeHeartbeatRequest(req);
        expect(ours.equals(reference), `${what}: bytes ${ours.toString('hex')} vs ${reference.toString('hex')}`).to.equal(true);
        const object = pl.requestDeserialize(reference);
        expectSameObject(decodeHeartbeatRequest(reference), object, `${what}: our decode`);
      }
    });

    it('the request the datanode sends (every field set, defaults included), at 1,000 stats', () => {
      const pl = loaderHeartbeat();
      const req = {
        cluster_id: 'c',
        node_id: '2',
        addr: '127.0.0.1:4002',
        replicas: Array.from({ length: 1000 }, (_, i) => ({ ...DATANODE_STAT, region_id: String(4294967296 + i) })),
        store_id: 's',
        report_incarnation: '140737488355327',
        report_seq: '12',
        report_base_seq: '0',
        removed_region_ids: [],
        start_count: '12',
        start_id: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
        held_replicas: [{ region_id: '8589934593', peer_id: '41' }],
      };
      const ours = encodeHeartbeatRequest(req);
      expect(ours.equals(pl.requestSerialize(req))).to.equal(true);
      expectSameObject(decodeHeartbeatRequest(ours), pl.requestDeserialize(ours), 'datanode request');
      expect(decodeHeartbeatRequest(ours)).to.deep.include({ start_count: '12', start_id: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0' });
      // A member's addr, not sent, decodes as its default.
      const members = (DATANODE_STAT.members ?? []).map((p) => ({ ...p, addr: '' }));
      expect(decodeHeartbeatRequest(ours).replicas[999]).to.deep.equal({ ...DATANODE_STAT, region_id: '4294968295', members });
      expect(decodeHeartbeatRequest(ours)).to.deep.include({ report_incarnation: '140737488355327', report_seq: '12', report_base_seq: '0', removed_region_ids: [] });
      expect(decodeHeartbeatRequest(ours).held_replicas).to.deep.equal([{ region_id: '8589934593', peer_id: '41' }]);
    });

    it('a delta report (a few changed stats, removed regions)', () => {
      const pl = loaderHeartbeat();
      const req = {
        cluster_id: 'c',
        node_id: '2',
        addr: '127.0.0.1:4002',
        replicas: [{ ...DATANODE_STAT, region_id: '4294967297' }],
        store_id: 's',
        report_incarnation: '7',
        report_seq: '13',
        report_base_seq: '12',
        removed_region_ids: ['4294967296', '8589934592'],
      };
      const ours = encodeHeartbeatRequest(req);
      expect(ours.equals(pl.requestSerialize(req))).to.equal(true);
      expectSameObject(decodeHeartbeatRequest(ours), pl.requestDeserialize(ours), 'delta request');
      expect(decodeHeartbeatRequest(ours)).to.deep.include({ report_seq: '13', report_base_seq: '12', removed_region_ids: ['4294967296', '8589934592'] });
    });

    it('the shape the metasrv reads: repeated fields first, defaults for absent fields', () => {
      const empty = decodeHeartbeatRequest(Buffer.alloc(0));
      expect(empty).to.deep.equal({
        replicas: [],
        removed_region_ids: [],
        held_replicas: [],
        cluster_id: '',
        node_id: '0',
        addr: '',
        store_id: '',
        report_incarnation: '0',
        report_seq: '0',
        report_base_seq: '0',
        start_count: '0',
        start_id: '',
      });
      expect(Object.keys(empty).slice(0, 3)).to.deep.equal(['replicas', 'removed_region_ids', 'held_replicas']);
      const held = decodeHeartbeatRequest(encodeHeartbeatRequest({ held_replicas: [{}] })).held_replicas[0]!;
      expect(Object.keys(held)).to.deep.equal(['region_id', 'peer_id']);
      expect(held).to.deep.equal({ region_id: '', peer_id: '0' });
      const stat = decodeHeartbeatRequest(encodeHeartbeatRequest({ replicas: [{}] })).replicas[0]!;
      expect(Object.keys(stat).slice(0, 4)).to.deep.equal(['voters', 'learners', 'members', 'region_id']);
      expect(stat).to.deep.include({ peer_id: '0', ssts: 0, health: '', voters: [], members: [] });
      const member = decodeHeartbeatRequest(encodeHeartbeatRequest({ replicas: [{ members: [{}] }] })).replicas[0]!.members[0]!;
      expect(Object.keys(member)).to.deep.equal(['peer_id', 'node_id', 'addr']);
      expect(member).to.deep.equal({ peer_id: '0', node_id: '0', addr: '' });
    });

    it('unpacked voters and learners, fields in any order, the last scalar wins, unknown fields skipped', () => {
      const stat = [...num(10, 5), ...len(10, [...varint(6n), ...varint(2n ** 64n - 1n)]), ...num(11, 9), ...num(4, 1), ...num(4, 2), ...str(1, 'r'), ...num(100, 1), ...len(101, [1, 2]), ...key(102, 1), 1, 2, 3, 4, 5, 6, 7, 8, ...key(103, 5), 1, 2, 3, 4];
      expectBothDecode([...num(2, 3), ...len(4, stat), ...str(1, 'c'), ...len(4, []), ...key(70, 3), ...num(1, 1), ...key(70, 4), ...num(2, 4)], 'loose encoding');
    });
  });

  describe('refused: INVALID_ARGUMENT', () => {
    it('a wire type the .proto does not declare for a known field', () => {
      expectInvalid([...str(2, 'x')], /HeartbeatRequest\.node_id \(field 2\): wire type 2/, decodeHeartbeatRequest);
      expectInvalid([...len(4, [...str(4, 'x')])], /ReplicaStat\.term \(field 4\): wire type 2/, decodeHeartbeatRequest);
      expectInvalid([...len(4, [...num(17, 1)])], /ReplicaStat\.members \(field 17\): wire type 0/, decodeHeartbeatRequest);
      expectInvalid([...len(4, [...len(17, [...str(1, 'x')])])], /Peer\.peer_id \(field 1\): wire type 2/, decodeHeartbeatRequest);
    });

    it('a truncated field, a length past its message, a packed varint crossing its run', () => {
      expectInvalid([...num(2, 300)].slice(0, 2), /truncated varint/, decodeHeartbeatRequest);
      expectInvalid([...key(4, 2), 5, ...num(2, 1)], /runs past the end/, decodeHeartbeatRequest);
      expectInvalid([...len(4, [...key(10, 2), 1, 0x80, 0x01])], /ReplicaStat\.voters: truncated varint/, decodeHeartbeatRequest);
    });
  });

  it('encoding a value that cannot be a uint64, or a stat that is not an object, is a bug of the caller (AssertionError)', () => {
    for (const bad of [{ node_id: '-1' }, { node_id: 'x' }, { node_id: 1.5 }, { node_id: '18446744073709551616' }, { replicas: [{ term: -1 }] }, { replicas: [null] }, { replicas: [{ voters: ['1', 'a'] }] }]) {
      expect(() => encodeHeartbeatRequest(bad as HeartbeatRequestInput), JSON.stringify(bad)).to.throw(AssertionError);
    }
  });

  it('metaService(): Heartbeat and GetRoutes use these codecs, every other Meta message keeps proto-loader serializers', () => {
    const service = metaService();
    const loader = loadProtos().services.Meta.service;
    expect(service['Heartbeat']!.requestSerialize).to.equal(encodeHeartbeatRequest);
    expect(service['Heartbeat']!.requestDeserialize).to.equal(decodeHeartbeatRequest);
    expect(service['Heartbeat']!.responseSerialize).to.equal(loader['Heartbeat']!.responseSerialize);
    expect(service['Heartbeat']!.path).to.equal('/regiondb.v1.Meta/Heartbeat');
    expect(service['GetRoutes']!.responseSerialize).to.equal(encodeGetRoutesResponse);
    expect(service['GetRoutes']!.requestSerialize).to.equal(loader['GetRoutes']!.requestSerialize);
    expect(service['GetRoutes']!.responseDeserialize).to.equal(loader['GetRoutes']!.responseDeserialize);
    for (const name of Object.keys(loader).filter((n) => n !== 'Heartbeat' && n !== 'GetRoutes')) expect(service[name], name).to.equal(loader[name]);
  });

  describe('GetRoutes response: the same bytes as proto-loader', () => {
    const loaderGetRoutes = () => loadProtos().services.Meta.service['GetRoutes'] as Method;

    function randomResponse(rand: SeededRand): GetRoutesResponseInput {
      const res: Record<string, unknown> = {};
      if (rand.chance(0.9)) res['table'] = toProtoSchema(schema);
      if (rand.chance(0.9)) {
        res['routes'] = Array.from({ length: rand.int(30) }, () => {
          const r: Record<string, unknown> = {};
          if (rand.chance(0.9)) r['region_id'] = randomString(rand);
          if (rand.chance(0.9)) r['table'] = randomString(rand);
          if (rand.chance(0.9)) r['region_number'] = rand.chance(0.2) ? rand.pick([0, 127, 128, 1023, 2 ** 32 - 1]) : rand.int(1024);
          if (rand.chance(0.9)) r['peers'] = Array.from({ length: rand.int(5) }, () => ({ peer_id: randomLong(rand), node_id: randomLong(rand), addr: randomString(rand) }));
          if (rand.chance(0.9)) r['leader_node_id'] = randomLong(rand);
          if (rand.chance(0.9)) r['conf_version'] = randomLong(rand);
          return r;
        });
      }
      return res as GetRoutesResponseInput;
    }

    it('random responses: byte-identical encodings', () => {
      const pl = loaderGetRoutes();
      const rand = new SeededRand(SEED + 2);
      for (let i = 0; i < 1000; i++) {
        const res = randomResponse(rand);
        const ours = encodeGetRoutesResponse(res);
        const reference = pl.responseSerialize(res);
        expect(ours.equals(reference), `seed ${SEED + 2}, response ${i}: ${ours.toString('hex')} vs ${reference.toString('hex')}`).to.equal(true);
      }
    });

    it("the metasrv's answer for a table of 1,000 regions, decoded by the client's proto-loader", () => {
      const pl = loaderGetRoutes();
      const routes = Array.from({ length: 1000 }, (_, i) => ({
        region_id: String(4398046511104 + i),
        table: 't',
        region_number: i,
        peers: [1, 2, 3].map((n) => ({ peer_id: String(3 * i + n), node_id: String(n), addr: `127.0.0.1:400${n}` })),
        leader_node_id: String(1 + (i % 3)),
        conf_version: '1',
      }));
      const res = { table: toProtoSchema(schema), routes };
      const ours = encodeGetRoutesResponse(res);
      expect(ours.equals(pl.responseSerialize(res))).to.equal(true);
      expect((pl.responseDeserialize(ours) as { routes: unknown[] }).routes[999]).to.deep.equal(routes[999]);
    });

    it('a route or peer that is not an object, or a bad uint64, is a bug of the caller (AssertionError)', () => {
      for (const bad of [{ routes: [null] }, { routes: [{ peers: [7] }] }, { routes: [{ leader_node_id: '-3' }] }, { routes: 'x' }]) {
        expect(() => encodeGetRoutesResponse(bad as unknown as GetRoutesResponseInput), JSON.stringify(bad)).to.throw(AssertionError);
      }
    });
  });

  describe('fuzz: random bytes and mutated encodings', () => {
    const CASES = Number(process.env['HEARTBEAT_WIRE_CASES'] ?? 20_000);
    /** Tags and lengths of HeartbeatRequest/ReplicaStat fields, for mutate(). */
    const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x2a, 0x50, 0x52, 0x5a, 0x58, 0x80, 0x01, 0x0b, 0x0c];

    it(`${CASES} inputs: decode to what proto-loader decodes, or throw INVALID_ARGUMENT`, () => {
      const pl = loaderHeartbeat();
      const rand = new SeededRand(SEED + 1);
      const valid = Array.from({ length: 40 }, () => encodeHeartbeatRequest(randomRequest(rand, 3)));
      const outcomes = { both: 0, refused: 0, neither: 0 };
      for (let i = 0; i < CASES; i++) {
        const random = rand.chance(0.2);
        const input = random ? Buffer.from(Array.from({ length: rand.int(64) }, () => rand.int(256))) : mutate(rand, rand.pick(valid), INTERESTING);
        const what = `seed ${SEED}, case ${i} (${random ? 'random' : 'mutated'}) ${input.toString('hex')}`;
        let reference: unknown;
        let referenceOk = true;
        try {
          reference = pl.requestDeserialize(input);
        } catch {
          referenceOk = false;
        }
        let ours: unknown;
        try {
          ours = decodeHeartbeatRequest(input);
        } catch (err) {
          expect(isRegionDbError(err, ErrorCode.InvalidArgument), `${what}: ${(err as Error).name}: ${(err as Error).message}`).to.equal(true);
          outcomes[referenceOk ? 'refused' : 'neither']++;
          continue;
        }
        expect(referenceOk, `${what}: decoded bytes proto-loader refuses`).to.equal(true);
        expectSameObject(ours, reference, what);
        outcomes.both++;
      }
      expect(outcomes.both, `seed ${SEED}: some mutations should still decode (${JSON.stringify(outcomes)})`).to.be.greaterThan(CASES / 20);
    });
  });
});
