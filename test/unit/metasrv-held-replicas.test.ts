// Replicas held closed (reconcile.ts R8; HeartbeatRequest.held_replicas) through the metasrv's
// heartbeat path: a datanode lists the replicas whose data it closed without deleting, every
// report whole. The real MetasrvCore over an in-memory catalog: a held peer the group went past is
// deleted by name in the heartbeat's answer, a held member the catalog does not place is reopened
// instead of being judged lost, and a malformed list is refused whole like any malformed report.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { MemoryCatalog, createOneRegionTable, replicaReport, startMetasrvCore, threw } from '../fixtures/metasrv-core.js';

const CLUSTER = 'held-replicas';
const addr = (n: number) => `127.0.0.1:${21_300 + n}`;

describe('metasrv: replicas a datanode holds closed (R8, HeartbeatRequest.held_replicas)', function () {
  this.timeout(30_000);
  let core: MetasrvCore;
  let regionId: string;
  /** The table's peer on node n (1–3). */
  const peerOn: number[] = [];
  const beat = (n: number, replicas: unknown[], held: { region_id: string; peer_id: string }[] = []) =>
    core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}`, held_replicas: held } as never, () => {});

  beforeEach(async () => {
    core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, new MemoryCatalog(CLUSTER));
    for (const n of [1, 2, 3, 4]) {
      await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, () => {});
      await beat(n, []);
    }
    const route = (await createOneRegionTable(core)).routes![0]!;
    regionId = route.region_id!;
    peerOn.length = 0;
    for (const p of route.peers ?? []) peerOn[Number(p.node_id)] = Number(p.peer_id);
  });
  afterEach(() => core.halt());

  /** The table's placement as created: which nodes it uses (three of the four). */
  const placedNodes = () => [1, 2, 3, 4].filter((n) => peerOn[n] !== undefined);

  it("a held peer the group went past (a newer peer replaced it, every voter applied that) is deleted by name in that node's answer; before that, kept", async () => {
    const [a, b, c] = placedNodes() as [number, number, number];
    const spare = [1, 2, 3, 4].find((n) => !placedNodes().includes(n))!;
    const newer = Math.max(...peerOn.filter((p) => p !== undefined)) + 10;
    const voters = [peerOn[a]!, peerOn[c]!, newer];
    const group = (peerId: number, leader: boolean) => replicaReport({ regionId, peerId, leader, leaderNodeId: a, voters, confIndex: 20, appliedIndex: 20 });
    // Node b closed its replica (destroy off) and the group replaced it by `newer` on the spare node.
    await beat(a, [group(peerOn[a]!, true)]);
    await beat(c, [group(peerOn[c]!, false)]);
    await beat(spare, [group(newer, false)]);
    const answer = await beat(b, [], [{ region_id: regionId, peer_id: String(peerOn[b]) }]);
    const closes = (answer.instructions ?? []).filter((i) => i.close_region);
    expect(closes, JSON.stringify(answer.instructions)).to.deep.equal([{ close_region: { region_id: regionId, destroy: true, peer_id: String(peerOn[b]) } }]);
    // With a voter still counting the old peer (the 4 → 3 window), nothing is deleted.
    await beat(c, [replicaReport({ regionId, peerId: peerOn[c]!, leader: false, leaderNodeId: a, voters: [peerOn[a]!, peerOn[b]!, peerOn[c]!], confIndex: 12, appliedIndex: 12 })]);
    const held = await beat(b, [], [{ region_id: regionId, peer_id: String(peerOn[b]) }]);
    expect((held.instructions ?? []).filter((i) => i.close_region), 'kept while voter on node c may need its vote').to.deep.equal([]);
    // `regiondb status` says so: the held data, and why it stays.
    const info = (await core.listNodes()).region_infos!.find((r) => r.route?.region_id === regionId)!;
    const heldLine = (info.problems ?? []).find((p) => p.startsWith(`peer ${peerOn[b]} on node ${b} is held closed (its data on disk, not running)`));
    expect(heldLine, JSON.stringify(info.problems)).to.match(new RegExp(`: kept; voter ${peerOn[c]} on node ${c} still counts peer ${peerOn[b]} .*\\(R16\\)$`));
  });

  it("a held member the catalog does not place (a catalog older than the group) is reopened there, not placed lost", async () => {
    const [a, , c] = placedNodes() as [number, number, number];
    const spare = [1, 2, 3, 4].find((n) => !placedNodes().includes(n))!;
    const newer = Math.max(...peerOn.filter((p) => p !== undefined)) + 10;
    // The group replaced b's peer by `newer` on the spare node; the catalog never learned it (restored), and the spare node holds `newer` closed.
    const voters = [peerOn[a]!, peerOn[c]!, newer];
    const members = [
      { peer_id: String(peerOn[a]), node_id: String(a), addr: '' },
      { peer_id: String(peerOn[c]), node_id: String(c), addr: '' },
      { peer_id: String(newer), node_id: String(spare), addr: '' },
    ];
    await beat(c, [replicaReport({ regionId, peerId: peerOn[c]!, leader: false, leaderNodeId: a, voters, confIndex: 20, appliedIndex: 20 })]);
    await beat(spare, [], [{ region_id: regionId, peer_id: String(newer) }]);
    await beat(a, [{ ...replicaReport({ regionId, peerId: peerOn[a]!, leader: true, leaderNodeId: a, voters, confIndex: 20, appliedIndex: 20 }), members }]);
    const placed = core.catalog.regions[regionId]!.replicas.find((p) => p.peerId === newer);
    expect(placed, JSON.stringify(core.catalog.regions[regionId]!.replicas)).to.deep.equal({ peerId: newer, nodeId: spare });
    const answer = await beat(spare, [], [{ region_id: regionId, peer_id: String(newer) }]);
    const opens = (answer.instructions ?? []).filter((i) => i.open_region).map((i) => [i.open_region!.region_id, i.open_region!.self_peer_id]);
    expect(opens).to.deep.equal([[regionId, String(newer)]]);
  });

  it("a held peer id, and its region's table id, raise the id allocators (M38's review: a restored catalog must not hand a held id out again)", async () => {
    const held = { region_id: '21474836480000', peer_id: '900' }; // table 5000, region 0
    expect(core.catalog.nextPeerId, 'below before').to.be.at.most(900);
    expect(core.catalog.nextTableId, 'below before').to.be.at.most(5000);
    await beat(1, [], [held]);
    expect(core.catalog.nextPeerId).to.equal(901);
    expect(core.catalog.nextTableId).to.equal(5001);
  });

  it('a held entry with a malformed region id or peer id is refused whole (INVALID_ARGUMENT naming the node)', async () => {
    for (const [held, says] of [
      [{ region_id: '1.5', peer_id: '3' }, '"1.5"'],
      [{ region_id: regionId, peer_id: '0' }, 'peer id 0'],
      [{ region_id: regionId, peer_id: '-1' }, 'peer_id "-1"'],
    ] as const) {
      const err = await threw(beat(1, [], [held]));
      expect(isRegionDbError(err, ErrorCode.InvalidArgument), String(err)).to.equal(true);
      expect((err as Error).message).to.include('node 1').and.include(says);
    }
  });
});
