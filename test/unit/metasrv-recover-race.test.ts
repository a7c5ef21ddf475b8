// `regiondb recover` (MetasrvCore.recoverTable) against heartbeat reconciliation: recovery gives
// every replica of a region a fresh peer id and restarts the region's conf index at 0 (a new
// group), then sends each node its recover-open one after the other. Heartbeats keep arriving
// meanwhile from the old group's replicas, which still run with a higher conf index; before the
// fix, reconciliation adopted that old membership into the catalog between two sends (R2: "the
// group is newer than the catalog"), and the next node's recover-open then named a peer that
// the open's own peer list placed elsewhere — refused by the datanode ("peer 26 is not on node
// 2"; a fresh-clone CI run on a loaded machine failed `br restore` and the damaged-manifest
// recovery test that way).
import { expect } from 'chai';
import type { DatanodeAdmin } from '../../src/metasrv/metasrv-core.js';
import { createOneRegionTable, replicaReport, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'recover-race';
const NODES = [1, 2, 3];


interface SentOpen {
  addr: string;
  selfPeerId: number;
  peers: { peerId: number; nodeId: number }[];
  recover: boolean;
}

describe('metasrv: recover while the old group still beats (finding M1, second part)', function () {
  this.timeout(20_000);

  it("a heartbeat of the old group between two recover-opens does not change the recovered region's placement", async () => {
    const sent: SentOpen[] = [];
    /** Set during recovery: run between the first recover-open and its answer. */
    let duringFirstRecoverOpen: (() => Promise<void>) | undefined;
    const admin: DatanodeAdmin = {
      async openRegion(addr, request) {
        sent.push({
          addr,
          selfPeerId: Number(request.self_peer_id),
          peers: (request.peers ?? []).map((p) => ({ peerId: Number(p.peer_id), nodeId: Number(p.node_id) })),
          recover: request.recover_from_object_store === true,
        });
        if (request.recover_from_object_store && duringFirstRecoverOpen) {
          const hook = duringFirstRecoverOpen;
          duringFirstRecoverOpen = undefined;
          await hook();
        }
        return { flushed_index: '7', manifest_written_ms: '1', ssts: 1 } as never;
      },
      fenceRegion: async () => ({}) as never, // no table is dropped here
    };
    const core = await startMetasrvCore(CLUSTER, admin);
    const anyone = () => {};
    const addr = (n: number) => `127.0.0.1:${20_000 + n}`;
    for (const n of NODES) await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: addr(n), store_id: `store-${n}` } as never, anyone);
    /** Every node beats; with `old`, reporting the table's first region as the old group (conf index 9). */
    const beatAll = async (old?: { regionId: string; peers: { peerId: number; nodeId: number }[] }) => {
      for (const n of NODES) {
        const mine = old?.peers.find((p) => p.nodeId === n);
        const replicas = old && mine
          ? [
              replicaReport({
                regionId: old.regionId,
                peerId: mine.peerId,
                leader: n === 1,
                leaderNodeId: 1,
                voters: old.peers.map((p) => p.peerId),
                term: 3,
                appliedIndex: 20,
                flushedIndex: 7,
                confIndex: 9,
                ssts: 1,
              }),
            ]
          : [];
        await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas, store_id: `store-${n}` } as never, anyone);
      }
    };
    await beatAll();
    await createOneRegionTable(core);
    const region = Object.values(core.catalog.regions)[0]!;
    const oldPeers = region.replicas.map((p) => ({ peerId: p.peerId, nodeId: p.nodeId }));
    // The old group (its replicas still running, leader on node 1) beats while the first
    // recover-open is in flight.
    duringFirstRecoverOpen = () => beatAll({ regionId: region.regionId, peers: oldPeers });
    sent.length = 0;
    await core.recoverTable('t', true);
    const recoverOpens = sent.filter((s) => s.recover);
    expect(recoverOpens.length, 'one recover-open per replica').to.equal(3);
    // What every datanode checks first (DatanodeCore.regionMetaOf): its own peer is on it.
    for (const open of recoverOpens) {
      const nodeId = NODES.find((n) => addr(n) === open.addr)!;
      expect(open.peers.some((p) => p.peerId === open.selfPeerId && p.nodeId === nodeId), `recover-open to node ${nodeId}: peer ${open.selfPeerId} in ${JSON.stringify(open.peers)}`).to.equal(true);
    }
    // One placement for the whole recovery, of fresh peers only.
    const placements = new Set(recoverOpens.map((o) => JSON.stringify(o.peers)));
    expect([...placements], 'every recover-open names the same new group').to.have.length(1);
    const fresh = recoverOpens[0]!.peers.map((p) => p.peerId);
    for (const old of oldPeers) expect(fresh, `old peer ${old.peerId} is not in the recovered group`).to.not.include(old.peerId);
    expect(core.catalog.regions[region.regionId]!.replicas.map((p) => p.peerId).sort()).to.deep.equal([...fresh].sort());
  });
});
