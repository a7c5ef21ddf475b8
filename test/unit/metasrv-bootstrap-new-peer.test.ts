// M35's left item (b): a catalog saved by a build before M35 may hold, for a region not yet seen
// reported (`bootstrapped` false), a running repair's new peer among its placements. An open of
// such a region bootstraps it with the placements as its initial voters; before this guard the
// new peer was bootstrapped on its own log as a voter of a configuration the group never had
// (the hazard of engine seed 2635), and the other peers counted it among their initial voters.
import { expect } from 'chai';
import { ManualClock, type TimedClock, systemScheduler } from '../../src/common/clock.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { OpenRegionRequest } from '../../src/rpc/generated/regiondb/v1/OpenRegionRequest.js';
import { MemoryCatalog, ONE_REGION as REGION, catalogNodes, oneRegionCatalog, runningRepair, startMetasrvCore } from '../fixtures/metasrv-core.js';

const CLUSTER = 'bootstrap-new-peer';
const addr = (n: number) => `127.0.0.1:${25_000 + n}`;

function storage(withRepair: boolean): MemoryCatalog {
  const s = new MemoryCatalog(CLUSTER);
  const replicas = [1, 2, 3, ...(withRepair ? [9] : [])].map((p) => ({ peerId: p, nodeId: p === 9 ? 4 : p }));
  s.state = oneRegionCatalog(CLUSTER, { replicas, leaderNodeId: 0, confVersion: 4, confIndex: 0 }, { nextPeerId: 10, nodes: catalogNodes([1, 2, 3, 4], addr, true) });
  s.state.regions[REGION]!.bootstrapped = false;
  if (withRepair) {
    s.state.procedures['repair-replica-1'] = runningRepair(1, { regionId: REGION, oldPeerId: 3, oldNodeId: 3, newPeerId: 9, newNodeId: 4 }, 'add-learner');
    s.state.nextProcedureId = 2;
  }
  return s;
}

/** Each node registers, then beats twice with nothing hosted; every open of REGION told, as `peer: bootstrap voters`. */
async function opensOf(s: MemoryCatalog): Promise<Map<number, string>> {
  const manual = new ManualClock(1_000_000);
  const clock: TimedClock = { nowMs: () => manual.nowMs(), ...systemScheduler };
  const core: MetasrvCore = await startMetasrvCore(CLUSTER, { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, s, undefined, clock);
  const out = new Map<number, string>();
  const note = (o: OpenRegionRequest) => {
    if (o.region_id !== REGION) return;
    out.set(Number(o.self_peer_id), o.bootstrap ? `bootstrap ${(o.peers ?? []).map((p) => p.peer_id).join(',')}` : 'join');
  };
  try {
    for (const n of [1, 2, 3, 4]) {
      const reg = await core.registerNode({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), http_addr: '', store_id: `store-${n}` } as never, () => {});
      for (const o of reg.regions ?? []) note(o);
    }
    for (let round = 0; round < 2; round++) {
      for (const n of [1, 2, 3, 4]) {
        const res = await core.heartbeat({ cluster_id: CLUSTER, node_id: String(n), addr: addr(n), replicas: [], store_id: `store-${n}` } as never, () => {});
        for (const i of res.instructions ?? []) if (i.open_region) note(i.open_region);
      }
    }
  } finally {
    core.halt();
  }
  return out;
}

describe("an unbootstrapped region's open with a running repair's new peer placed (M35's left item (b))", () => {
  it('the new peer joins empty, and the others bootstrap without it (failed before: peer 9 bootstrapped with voters 1,2,3,9)', async () => {
    const opens = await opensOf(storage(true));
    expect(opens.get(9), "the repair's new peer").to.equal('join');
    for (const p of [1, 2, 3]) expect(opens.get(p), `peer ${p}`).to.equal('bootstrap 1,2,3');
  });

  it('without a repair, every placement bootstraps with all of them (as before)', async () => {
    const opens = await opensOf(storage(false));
    expect([...opens.entries()].sort()).to.deep.equal([
      [1, 'bootstrap 1,2,3'],
      [2, 'bootstrap 1,2,3'],
      [3, 'bootstrap 1,2,3'],
    ]);
  });
});
