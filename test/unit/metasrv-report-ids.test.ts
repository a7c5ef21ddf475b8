// A datanode's heartbeat names its replicas by region id, a decimal uint64 (table id << 32 |
// region number). The metasrv read table ids out of reported ids with BigInt: a malformed id
// ("abc", "1.5") threw out of the heartbeat after the node's view had been replaced by the
// report, so every later heartbeat — of any node — and every tick threw again; others ("",
// " 12", "0x10") were read as other numbers. A report naming a malformed id is now refused
// whole, before anything of it is used, with an error naming the node and the id (leftover 4);
// likewise a report whose numbers (peer ids, terms, indexes, voters, learners, sequence numbers)
// are not unsigned integers below 2^53 (leftover L9).
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { isRegionId, makeRegionId } from '../../src/metasrv/catalog.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { failedReplicaStat, runningReplicaStat } from '../../src/replication/replica-stats.js';
import { randomReportIncarnation } from '../../src/datanode/datanode-core.js';
import { decodeHeartbeatRequest, encodeHeartbeatRequest } from '../../src/rpc/meta-wire.js';
import { MemoryCatalog, createOneRegionTable, replicaReport, startMetasrvCore, threw } from '../fixtures/metasrv-core.js';

const CLUSTER = 'report-ids';
const NODES = [1, 2, 3];
const addr = (n: number) => `127.0.0.1:${21_200 + n}`;
const MALFORMED = ['abc', '1.5', '', ' 12', '0x10', '-1', '012', '1e3', '18446744073709551616', 'toString'];

describe('metasrv: a heartbeat naming a malformed region id is refused whole (leftover 4)', function () {
  this.timeout(30_000);
  let core: MetasrvCore;
  let regionId: string;
  const voters: number[] = [];
  const beat = (n: number, replicas: unknown[], extra: Record<string, unknown> = {}) =>
    core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}`, ...extra } as never, () => {});
  /** Node n's report of its replica of the table's region, applied up to index 10. */
  const valid = (n: number) => replicaReport({ regionId, peerId: voters[n - 1]!, leader: n === 1, leaderNodeId: 1, voters });

  beforeEach(async () => {
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, new MemoryCatalog(CLUSTER));
    for (const n of NODES) {
      await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, () => {});
      await beat(n, []);
    }
    const route = (await createOneRegionTable(core)).routes![0]!;
    regionId = route.region_id!;
    voters.length = 0;
    for (const p of route.peers ?? []) voters[Number(p.node_id) - 1] = Number(p.peer_id);
  });
  afterEach(() => core.halt());

  for (const bad of MALFORMED) {
    it(`region id ${JSON.stringify(bad)}: INVALID_ARGUMENT naming node and id; nothing of the report used, and the next heartbeats and ticks work`, async () => {
      const err = await threw(beat(1, [valid(1), { ...valid(1), region_id: bad }]));
      expect(isRegionDbError(err, ErrorCode.InvalidArgument), String(err)).to.equal(true);
      expect((err as Error).message).to.include('node 1').and.include(JSON.stringify(bad));
      // Nothing of it applied: the valid replica's applied state (index 10) would have marked the region bootstrapped.
      expect(core.catalog.regions[regionId]?.bootstrapped, 'region marked bootstrapped from the refused report').to.equal(false);
      // The other nodes' heartbeats, the node's own next (valid) one, and the tick are unaffected.
      for (const n of [2, 3]) await beat(n, [valid(n)]);
      core.onTickTimer();
      await beat(1, [valid(1)]);
      expect(core.catalog.regions[regionId]?.bootstrapped, 'bootstrapped from the valid reports').to.equal(true);
    });
  }

  it('isRegionId: what makeRegionId writes, from 0 to 2^64 - 1, and nothing else of the malformed list', () => {
    for (const id of ['0', makeRegionId(1024, 0), makeRegionId(1024, 7), makeRegionId(2 ** 32 - 1, 2 ** 32 - 1), '18446744073709551615']) {
      expect(isRegionId(id), id).to.equal(true);
    }
    for (const id of MALFORMED) expect(isRegionId(id), JSON.stringify(id)).to.equal(false);
  });

  it('a delta that removes a malformed region id is refused the same way', async () => {
    await beat(1, [valid(1)], { report_incarnation: 'inc-1', report_seq: '1', report_base_seq: '0' });
    const err = await threw(beat(1, [], { report_incarnation: 'inc-1', report_seq: '2', report_base_seq: '1', removed_region_ids: ['1.5'] }));
    expect(isRegionDbError(err, ErrorCode.InvalidArgument), String(err)).to.equal(true);
    expect((err as Error).message).to.include('node 1').and.include('"1.5"');
  });

  // Leftover L9: the report's numbers. Each value below is refused for each field; before, the
  // report was used: Number() made NaN or a rounded number of it, and idFloors raised the peer-id
  // allocator to it, so the next table's peer ids were NaN or past 2^53 (seen by the last check).
  const BAD_NUMBERS = ['abc', '1.5', '-1', '', ' 12', '0x10', '9007199254740993', '18446744073709551615'];
  const FIELDS: { field: string; edit: (stat: Record<string, unknown>, v: string) => Record<string, unknown> }[] = [
    ...['peer_id', 'term', 'leader_node_id', 'applied_index', 'commit_index', 'flushed_index', 'conf_index'].map((field) => ({ field, edit: (st: Record<string, unknown>, v: string) => ({ ...st, [field]: v }) })),
    { field: 'voters entry', edit: (st, v) => ({ ...st, voters: [...(st['voters'] as string[]), v] }) },
    { field: 'learners entry', edit: (st, v) => ({ ...st, learners: [v] }) },
    // A leader's members (finding M25): R2 places a peer on the node named here.
    { field: 'members entry peer_id', edit: (st, v) => ({ ...st, members: [{ peer_id: v, node_id: '1', addr: '' }] }) },
    { field: 'members entry node_id', edit: (st, v) => ({ ...st, members: [{ peer_id: '1', node_id: v, addr: '' }] }) },
  ];
  for (const { field, edit } of FIELDS) {
    it(`${field} not an unsigned integer below 2^53 (leftover L9): INVALID_ARGUMENT naming node, region and field; nothing used; later peer ids stay small`, async () => {
      for (const bad of BAD_NUMBERS) {
        const err = await threw(beat(1, [edit(valid(1), bad)]));
        expect(isRegionDbError(err, ErrorCode.InvalidArgument), `${field} ${JSON.stringify(bad)}: ${String(err)}`).to.equal(true);
        expect((err as Error).message).to.include('node 1').and.include(`region ${regionId}`).and.include(`${field} ${JSON.stringify(bad)}`);
      }
      expect(core.catalog.regions[regionId]?.bootstrapped, 'region marked bootstrapped from a refused report').to.equal(false);
      for (const n of [1, 2, 3]) await beat(n, [valid(n)]);
      core.onTickTimer();
      expect(core.catalog.regions[regionId]?.bootstrapped).to.equal(true);
      const next = await core.createTable({ name: 'u', columns: [{ name: 'host', type: 'STRING', semantic: 'TAG' }, { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' }], region_count: 1, request_token: '' } as never);
      const peers = (next.routes![0]!.peers ?? []).map((p) => Number(p.peer_id));
      expect(peers.every((p) => Number.isSafeInteger(p) && p < 1000), `the next table's peer ids: ${peers.join(', ')}`).to.equal(true);
    });
  }

  it('what a datanode sends passes the L9 check: stats built as the datanode builds them, at 0 and at 2^53 - 1, through the wire decoder', async () => {
    // A guard on the check, not on a fix: a real datanode refused here is taken for dead (the
    // refusal comes before liveness), so refusing a legitimate value would fail its regions over.
    const MAX = Number.MAX_SAFE_INTEGER;
    const voterIds = voters.slice();
    const running = (n: number, big: boolean) =>
      runningReplicaStat(
        {
          regionId,
          selfPeerId: voterIds[n - 1]!,
          // At the large values a leader, whose stat names each member's node (M25).
          raft: { role: big ? 3 : 0, term: big ? MAX : 0, log: { committed: big ? MAX : 0 }, confState: () => ({ voters: voterIds, learners: [] }) },
          peers: new Map(voterIds.map((p) => [p, { peerId: p, nodeId: big ? MAX : 1, addr: '' }])),
          leaderNodeId: () => (big ? 1 : undefined),
          appliedIndex: big ? MAX : 0,
          snapshotInstalledIndex: big ? MAX : 0,
          confIndex: big ? MAX : 0,
        } as never,
        { flushedIndex: big ? MAX : 0, memtableBytes: big ? MAX : 0, ssts: big ? 2 ** 32 - 1 : 0 },
      );
    const failed = failedReplicaStat({ regionId: makeRegionId(2 ** 32 - 1, 2 ** 32 - 1), selfPeerId: 0, index: 0, reason: '', sinceMs: 0, term: 0, commitIndex: 0, appliedIndex: 0, confIndex: 0, voters: [], learners: [] });
    const incarnation = String(randomReportIncarnation());
    for (const [seq, big] of [
      [1, false],
      [MAX, true],
    ] as const) {
      const wire = decodeHeartbeatRequest(
        encodeHeartbeatRequest({
          cluster_id: CLUSTER,
          node_id: '1',
          addr: addr(1),
          store_id: 'store-1',
          replicas: [running(1, big), failed],
          report_incarnation: incarnation,
          report_seq: String(seq),
          report_base_seq: '0',
          removed_region_ids: [],
        }),
      );
      await core.heartbeat(wire, () => {});
    }
    // A datanode before delta reports: no incarnation or sequence numbers (decoded as '0').
    await core.heartbeat(decodeHeartbeatRequest(encodeHeartbeatRequest({ cluster_id: CLUSTER, node_id: '2', addr: addr(2), store_id: 'store-2', replicas: [running(2, false)] })), () => {});
  });

  it('report_seq / report_base_seq not an unsigned integer below 2^53 (leftover L9): INVALID_ARGUMENT', async () => {
    for (const field of ['report_seq', 'report_base_seq']) {
      for (const bad of BAD_NUMBERS) {
        const err = await threw(beat(1, [valid(1)], { report_incarnation: '5', report_seq: '1', report_base_seq: '0', [field]: bad }));
        expect(isRegionDbError(err, ErrorCode.InvalidArgument), `${field} ${JSON.stringify(bad)}: ${String(err)}`).to.equal(true);
        expect((err as Error).message).to.include(`${field} ${JSON.stringify(bad)}`);
      }
    }
    await beat(1, [valid(1)], { report_incarnation: '5', report_seq: '1', report_base_seq: '0' });
  });
});

describe('metasrv: a node whose reports are refused as malformed still counts as alive (leftover item 4)', function () {
  this.timeout(30_000);
  let core: MetasrvCore | undefined;
  afterEach(() => core?.halt());

  it('2.5 s of malformed reports only (heartbeats every 100 ms, on a manual clock): alive, each refused INVALID_ARGUMENT and counted, nothing of them in the catalog', async () => {
    const reports: string[] = [];
    // Liveness is judged on a clock the test advances (the failure detector reads no other time).
    const manual = new ManualClock(1_000_000);
    const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
    const admin = { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never };
    core = await startMetasrvCore(CLUSTER, admin, new MemoryCatalog(CLUSTER), { report: (how) => reports.push(how) }, clock);
    const c = core;
    const beat = (n: number, replicas: unknown[]) => c.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, () => {});
    for (const n of NODES) await c.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, () => {});
    for (let i = 0; i < 30; i++) {
      for (const n of NODES) await beat(n, []);
      manual.advance(100); // past the start's quiet period, with a steady heartbeat history
    }
    const route = (await createOneRegionTable(c)).routes![0]!;
    const regionId = route.region_id!;
    const voters = (route.peers ?? []).map((p) => Number(p.peer_id));
    const peerOf = (n: number) => Number(route.peers!.find((p) => Number(p.node_id) === n)!.peer_id);
    const catalogBefore = JSON.stringify(c.catalog.regions);
    reports.length = 0;
    // A buggy build of node 1: every report carries a peer id past 2^53 (a bad number), and an
    // applied index that would mark the region bootstrapped if any of it were used.
    const malformed = { ...replicaReport({ regionId, peerId: peerOf(1), leader: true, leaderNodeId: 1, voters, appliedIndex: 10 }), peer_id: '18446744073709551615' };
    for (let i = 0; i < 25; i++) {
      manual.advance(100);
      const err = await threw(beat(1, [malformed]));
      expect(isRegionDbError(err, ErrorCode.InvalidArgument), String(err)).to.equal(true);
      for (const n of [2, 3]) await beat(n, []);
    }
    expect(c.isAlive(1), 'node 1 is alive').to.equal(true);
    expect(c.nodeState(c.catalog.nodes[1]!), 'node 1 state').to.equal('alive');
    expect(reports.filter((h) => h === 'malformed'), 'counted (regiondb_metasrv_heartbeat_reports_total{how="malformed"})').to.have.length(25);
    expect(JSON.stringify(c.catalog.regions), 'nothing of the refused reports reached the catalog').to.equal(catalogBefore);
    expect(c.catalog.regions[regionId]?.bootstrapped).to.equal(false);
    // The check is live: 1.5 s more without any heartbeat of node 1 and it is suspected.
    manual.advance(1500);
    expect(c.isAlive(1), 'node 1 silent for 1.5 s').to.equal(false);
  });
});
