// Heartbeat cost at region scale (docs/performance.md, "Regions per node"): per HeartbeatRequest of
// N ReplicaStats (HEARTBEAT_BENCH_SIZES, default 1000,5000), the datanode's encode and the
// metasrv's decode, with proto-loader's serializers (what grpc-js ran before) and with
// src/rpc/meta-wire.ts. Stats are built as runningReplicaStat builds them (decimal strings).
// Then the metasrv's GetRoutes answer for a table of N regions (encode only: the client decodes
// with proto-loader either way). Medians of HEARTBEAT_BENCH_ROUNDS (default 15) rounds; the
// codecs alternate within a round.
import { performance } from 'node:perf_hooks';
import { decodeHeartbeatRequest, encodeGetRoutesResponse, encodeHeartbeatRequest } from '../src/rpc/meta-wire.js';
import { toProtoSchema } from '../src/rpc/values.js';
import { schema } from '../test/fixtures/one-region-table.js';
import type { HeartbeatRequest__Output, ReplicaStat__Output } from '../src/rpc/generated/index.js';
import { loadProtos } from '../src/rpc/proto.js';

const sizes = (process.env['HEARTBEAT_BENCH_SIZES'] || '1000,5000').split(',').map(Number);
const rounds = Number(process.env['HEARTBEAT_BENCH_ROUNDS'] || 15);

function stat(i: number): ReplicaStat__Output {
  const region = 4294967296 * (1 + (i >> 10)) + (i & 1023);
  return {
    region_id: String(region),
    peer_id: String(3 * i + 1),
    role: i % 3 === 0 ? 'leader' : 'follower',
    term: String(2 + (i % 5)),
    leader_node_id: String(1 + (i % 3)),
    applied_index: String(1000 + i * 7),
    commit_index: String(1000 + i * 7),
    flushed_index: String(900 + i),
    memtable_bytes: String(4096 + i),
    voters: [String(3 * i + 1), String(3 * i + 2), String(3 * i + 3)],
    learners: [],
    snapshot_installed_index: '0',
    ssts: i % 4,
    health: 'ok',
    failure: '',
    conf_index: String(1 + (i % 3)),
    members: i % 3 === 0 ? [0, 1, 2].map((k) => ({ peer_id: String(3 * i + 1 + k), node_id: String(1 + k), addr: '' })) : [],
  };
}

const method = loadProtos().services.Meta.service['Heartbeat']!;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function time(fn: () => unknown): number {
  const iterations = 5;
  const start = performance.now();
  for (let i = 0; i < iterations; i++) fn();
  return (performance.now() - start) / iterations;
}

for (const n of sizes) {
  const req: HeartbeatRequest__Output = { cluster_id: 'regiondb-bench', node_id: '2', addr: '127.0.0.1:4002', replicas: Array.from({ length: n }, (_, i) => stat(i)), store_id: 'b5f0c6a2-3d1e-4c3a-9d7e-1f2a3b4c5d6e', report_incarnation: '1', report_seq: '1', report_base_seq: '0', removed_region_ids: [], start_count: '3', start_id: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', held_replicas: [] };
  const reference = method.requestSerialize(req);
  const ours = encodeHeartbeatRequest(req);
  if (!reference.equals(ours)) throw new Error(`N=${n}: the codecs' bytes differ`);
  const t = { plEncode: [] as number[], handEncode: [] as number[], plDecode: [] as number[], handDecode: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    t.plEncode.push(time(() => method.requestSerialize(req)));
    t.handEncode.push(time(() => encodeHeartbeatRequest(req)));
    t.plDecode.push(time(() => method.requestDeserialize(reference)));
    t.handDecode.push(time(() => decodeHeartbeatRequest(reference)));
  }
  const f = (xs: number[]) => `${median(xs).toFixed(2)} ms`;
  console.log(
    `N=${n} (${reference.length} bytes): encode proto-loader ${f(t.plEncode)}, hand ${f(t.handEncode)} (×${(median(t.plEncode) / median(t.handEncode)).toFixed(1)}); ` +
      `decode proto-loader ${f(t.plDecode)}, hand ${f(t.handDecode)} (×${(median(t.plDecode) / median(t.handDecode)).toFixed(1)})`,
  );
}

const getRoutes = loadProtos().services.Meta.service['GetRoutes']!;
for (const n of sizes) {
  const routes = Array.from({ length: n }, (_, i) => ({
    region_id: String(4398046511104 + i),
    table: 't',
    region_number: i,
    peers: [1, 2, 3].map((node) => ({ peer_id: String(3 * i + node), node_id: String(node), addr: `127.0.0.1:400${node}` })),
    leader_node_id: String(1 + (i % 3)),
    conf_version: '1',
  }));
  const res = { table: toProtoSchema(schema), routes };
  const reference = getRoutes.responseSerialize(res);
  if (!reference.equals(encodeGetRoutesResponse(res))) throw new Error(`N=${n}: the GetRoutes encodings differ`);
  const pl: number[] = [];
  const hand: number[] = [];
  for (let r = 0; r < rounds; r++) {
    pl.push(time(() => getRoutes.responseSerialize(res)));
    hand.push(time(() => encodeGetRoutesResponse(res)));
  }
  console.log(`GetRoutes answer, ${n} regions (${reference.length} bytes): encode proto-loader ${median(pl).toFixed(2)} ms, hand ${median(hand).toFixed(2)} ms (×${(median(pl) / median(hand)).toFixed(1)})`);
}
