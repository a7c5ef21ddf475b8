// Every close_region the metasrv sends names the peer it means (CloseRegion.peer_id, finding M16
// in docs/correctness.md): the datanode then refuses a close that meets another replica of the
// region. Heartbeat reconciliation's destroy (R1) here; repair-replica's clear-old and cleanup in
// procedures/repair-replica.test.ts and repair-replica.test.ts.
import { expect } from 'chai';
import { createOneRegionTable, replicaReport, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'close-peer';
const NODES = [1, 2, 3];

describe('metasrv: a close_region names the peer it closes', function () {
  this.timeout(20_000);

  it("reconciliation's destroy of a dropped table's replica carries that replica's peer id", async () => {
    const core = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never });
    const anyone = () => {};
    const addr = (n: number) => `127.0.0.1:${22_000 + n}`;
    const hosted = new Map<number, number>();
    let regionId = '';
    const beat = (n: number) => {
      const peer = hosted.get(n);
      const replicas = peer === undefined ? [] : [replicaReport({ regionId, peerId: peer, leader: n === 1, leaderNodeId: 1, voters: [...hosted.values()] })];
      return core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
    };
    for (const n of NODES) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    for (const n of NODES) await beat(n);
    const route = (await createOneRegionTable(core)).routes![0]!;
    regionId = route.region_id!;
    for (const p of route.peers ?? []) hosted.set(Number(p.node_id), Number(p.peer_id));
    for (const n of NODES) await beat(n);
    await core.dropTable({ name: 't' } as never);
    const answer = await beat(2);
    const closes = (answer.instructions ?? []).filter((i) => i.close_region?.region_id === regionId).map((i) => i.close_region);
    expect(closes, 'node 2 is told to delete its replica of the dropped table, naming it').to.deep.equal([{ region_id: regionId, destroy: true, peer_id: String(hosted.get(2)) }]);
  });
});
