// Whole procedures through the runner against the fake metasrv and a tiny model of the raft
// group's reactions, with the metasrv crashing at seeded random points: before its save, after
// the datanodes acted on an instruction it then forgot, or not at all. Whatever the crashes,
// each procedure ends as a crash-free run would, and nothing it allocates is allocated twice.
import { expect } from 'chai';
import { SeededRand } from '../../../src/common/rand.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

const SEEDS = 40;
const MAX_PASSES = 400;

/** The group's leader now: the live node reporting itself leader with the highest term. */
function leaderNode(f: FakeCluster): number {
  let best: [number, number] | undefined;
  for (const [nodeId, regions] of f.reports) {
    const seen = regions.get(REGION);
    if (f.alive.has(nodeId) && seen?.role === 'leader' && (!best || seen.term > best[1])) best = [nodeId, seen.term];
  }
  return best![0];
}

/** The datanodes apply what they are told, as the raft group would then report it (only its leader changes membership). */
function deliver(f: FakeCluster): void {
  for (const { nodeId, instruction } of f.sent) {
    if (!f.alive.has(nodeId)) continue;
    const lead = leaderNode(f);
    const leader = f.reports.get(lead)!.get(REGION)!;
    if ('open_region' in instruction) {
      const peerId = Number((instruction.open_region as { self_peer_id: string }).self_peer_id);
      f.report(nodeId, replica(peerId, { appliedIndex: leader.commitIndex }));
    } else if ('change_peer' in instruction && nodeId === lead) {
      const { change, peer } = instruction.change_peer;
      const id = Number(peer.peer_id);
      let voters = [...leader.voters];
      let learners = [...leader.learners];
      if (change === 'add-learner' && !voters.includes(id) && !learners.includes(id)) learners.push(id);
      if (change === 'promote' && learners.includes(id)) [learners, voters] = [learners.filter((p) => p !== id), [...voters, id]];
      if (change === 'remove') [voters, learners] = [voters.filter((p) => p !== id), learners.filter((p) => p !== id)];
      f.report(lead, { ...leader, voters, learners, confIndex: leader.confIndex + 1 });
    } else if ('close_region' in instruction) {
      // As a datanode does: a close naming a peer id closes only the replica of that peer.
      const hosted = f.reports.get(nodeId)?.get(REGION);
      const asked = Number(instruction.close_region.peer_id);
      if (hosted && (asked === 0 || asked === hosted.peerId)) f.unreport(nodeId);
    } else if ('transfer_leader' in instruction && nodeId === lead) {
      const to = Number(instruction.transfer_leader.to_peer_id);
      const host = f.region().replicas.find((p) => p.peerId === to)?.nodeId;
      const target = host === undefined ? undefined : f.reports.get(host)?.get(REGION);
      if (host === undefined || target?.peerId !== to) continue;
      f.report(host, { ...leader, peerId: to, term: leader.term + 1 });
      f.report(lead, { ...leader, role: 'follower', term: leader.term + 1 });
    }
  }
  f.sent = [];
}

/** Passes until `id` finishes; after each: save and deliver, deliver then crash, or crash. */
function runWithCrashes(f: FakeCluster, id: string, seed: number): { crashes: number; passes: number } {
  const rand = new SeededRand(seed);
  let crashes = 0;
  for (let passes = 1; passes <= MAX_PASSES; passes++) {
    f.clock.advance(200);
    f.passUnsaved();
    const fate = rand.next();
    if (fate < 0.15) {
      deliver(f); // the datanodes acted; the metasrv dies before saving the pass
      f.crash();
      crashes++;
    } else if (fate < 0.3) {
      f.crash(); // dies with the pass unsaved and its instructions undelivered
      crashes++;
    } else {
      f.save();
      deliver(f);
    }
    const p = f.catalog.procedures[id];
    if (p && p.status !== 'running') return { crashes, passes };
  }
  throw new Error(`seed ${seed}: ${id} still running after ${MAX_PASSES} passes`);
}

describe('procedures across metasrv crashes at random points (seeded)', () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`repair-replica, seed ${seed}: peer 3 (node 3, down) replaced by peer 4 on node 4, once`, () => {
      const f = new FakeCluster();
      f.kill(3);
      const { id } = f.start('repair-replica', { regionId: REGION, oldPeerId: 3, oldNodeId: 3 });
      runWithCrashes(f, id, seed);
      expect(f.catalog.procedures[id]).to.include({ status: 'done' });
      expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`)).to.deep.equal(['1@1', '2@2', '4@4']);
      expect(f.catalog.nextPeerId, 'one peer id allocated').to.equal(5);
      const leader = f.reports.get(leaderNode(f))!.get(REGION)!;
      expect({ voters: leader.voters, learners: leader.learners }).to.deep.equal({ voters: [1, 2, 4], learners: [] });
    });
  }

  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`drain-node, seed ${seed}: node 2 ends leading nothing and hosting nothing; one repair ran`, () => {
      const f = new FakeCluster();
      const { id } = f.start('drain-node', { nodeId: 2 });
      runWithCrashes(f, id, seed);
      expect(f.catalog.procedures[id]).to.include({ status: 'done' });
      expect(f.catalog.nodes[2]!.state).to.equal('draining');
      expect(f.region().replicas.map((p) => p.nodeId)).to.not.include(2);
      expect(f.region().replicas).to.have.length(3);
      const repairs = Object.values(f.catalog.procedures).filter((p) => p.kind === 'repair-replica');
      expect(repairs.map((p) => p.status)).to.deep.equal(['done']);
      expect(f.catalog.nextPeerId, 'one peer id allocated').to.equal(5);
    });
  }
});
