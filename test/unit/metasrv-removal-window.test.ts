// R16, "The 4 → 3 window" (docs/raft-rules.md): the metasrv deletes a replica removed from its
// group only once no live, healthy voter of the leader's membership may still need its vote —
// each such voter reports a membership without it and has applied up to the leader's conf index
// (reconcile.ts removalHold). Before the rule, reconciliation and repair-replica's cleanup deleted
// it as soon as the leader reported the membership without it; a voter not yet told that the
// removal committed still counted the old four and, should the leader fail, needed three of them.
// The rule must not bring back the three liveness holes of the version reverted in bac953c
// (voters compared with the leader's exact conf index, cleanup waiting in the procedure, pickNode
// blind to replicas the catalog does not place): each has a case here.
import { expect } from 'chai';
import { ManualClock } from '../../src/common/clock.js';
import type { CatalogState } from '../../src/metasrv/catalog.js';
import type { Instruction, ObservedReplica, ProcedureContext, StepRun } from '../../src/metasrv/procedures/procedure.js';
import type { RepairReplicaData } from '../../src/metasrv/procedures/record.js';
import { repairReplica } from '../../src/metasrv/procedures/repair-replica.js';
import { type AwaitingReport, type Reports, destroyReason, nodeActions, removedReplicaProblems } from '../../src/metasrv/reconcile.js';
import { ONE_REGION as REGION, catalogNodes, observedReplicas, oneRegionCatalog, reportsByNode as reports } from '../fixtures/metasrv-core.js';

/** No node's first report awaited (a metasrv past its startup pause). */
const NONE: AwaitingReport = () => false;

const replica = observedReplicas({ leaderNodeId: 2, appliedIndex: 25, commitIndex: 25, voters: [2, 3, 4], confIndex: 20 });

// The shrink every repair passes through: {1, 2, 3, 4} → {2, 3, 4}, peer 1 (node 1) removed at
// index 20; the catalog already dropped it (remove-old). Peer n lives on node n.
/** Peer 1 after it applied its own removal: its membership lacks it, at the removal's index. */
const REMOVED = replica(1, { appliedIndex: 20, commitIndex: 25 });
const LEADER = replica(2, { role: 'leader' });
/** A voter not told yet that the removal committed: it still counts {1, 2, 3, 4}. */
const BEHIND = replica(3, { voters: [1, 2, 3, 4], confIndex: 12, appliedIndex: 19, commitIndex: 19 });

function catalog(): CatalogState {
  const nodes = catalogNodes([1, 2, 3, 4, 5], (nodeId) => `n${nodeId}`);
  return oneRegionCatalog('c', { replicas: [2, 3, 4].map((n) => ({ peerId: n, nodeId: n })), leaderNodeId: 2, confVersion: 3, confIndex: 20 }, { nextPeerId: 10, nodes });
}

const destroysRemoved = (seen: Reports) => nodeActions(catalog(), 1, seen, NONE).some((a) => 'destroy' in a && a.destroy.peerId === 1);

function problems(seen: Reports, awaitingReport: AwaitingReport = NONE): string[] {
  const into = new Map<string, string[]>();
  removedReplicaProblems(catalog(), seen, awaitingReport, into);
  return into.get(REGION) ?? [];
}

describe('R16: the 4 → 3 window (a removed replica is deleted once no live voter may need its vote)', () => {
  describe('reconciliation (reconcile.ts destroyReason, removalHold)', () => {
    it('a voter still counting the old membership keeps the removed replica; once it reports the new one, it is deleted', () => {
      const before = reports({ 1: REMOVED, 2: LEADER, 3: BEHIND, 4: replica(4) });
      // Failed before the rule: the leader reported {2, 3, 4}, so peer 1 was destroyed at once.
      expect(destroysRemoved(before), 'deleted while voter 3 still counts it').to.equal(false);
      expect(problems(before)).to.deep.equal([
        'peer 1 on node 1 reports a membership without itself (conf index 20): removed from its group; kept while voter 3 on node 3 still counts peer 1 (conf index 12) (it may still need this replica\'s vote)',
      ]);
      const after = reports({ 1: REMOVED, 2: LEADER, 3: replica(3, { appliedIndex: 21 }), 4: replica(4) });
      expect(destroysRemoved(after), 'voter 3 applied the removal').to.equal(true);
      expect(problems(after)).to.deep.equal(['peer 1 on node 1 reports a membership without itself (conf index 20): removed from its group; being deleted']);
    });

    it('a voter that has not reached the removed peer\'s addition does not name it either: kept until it applied up to the leader\'s conf index', () => {
      // {2, 3, 4} → add 1 (index 10), promote (11) → remove 1 (20). Voter 3 is still at {2, 3, 4}
      // of index 5: it will apply the addition, and then count peer 1 until it applies index 20.
      const lagging = replica(3, { confIndex: 5, appliedIndex: 9, commitIndex: 9 });
      expect(destroysRemoved(reports({ 1: REMOVED, 2: LEADER, 3: lagging, 4: replica(4) }))).to.equal(false);
      expect(destroysRemoved(reports({ 1: REMOVED, 2: LEADER, 3: replica(3, { appliedIndex: 20 }), 4: replica(4) }))).to.equal(true);
    });

    it('the removed replica of a node that was down through the shrink (it never applied its removal) waits the same way, never for its own node', () => {
      // It reports the old membership, itself included, at an older conf index.
      const back = replica(1, { voters: [1, 2, 3, 4], confIndex: 12, appliedIndex: 15, commitIndex: 15 });
      expect(destroysRemoved(reports({ 1: back, 2: LEADER, 3: BEHIND, 4: replica(4) }))).to.equal(false);
      expect(destroysRemoved(reports({ 1: back, 2: LEADER, 3: replica(3), 4: replica(4) }))).to.equal(true);
    });

    it('hole 1: a leader reopened from a snapshot over-states its conf index; voters that caught up with it let the deletion go', () => {
      // The leader's last membership entry is at 20, but it reopened from a snapshot at 57 and
      // reports 57. The voters applied the entry at 20 and report 20 — forever, with no later
      // membership change (the reverted rule waited for them to report 57).
      const reopened = replica(2, { role: 'leader', confIndex: 57, appliedIndex: 60, commitIndex: 60 });
      const caughtUp = (peerId: number) => replica(peerId, { confIndex: 20, appliedIndex: 60, commitIndex: 60 });
      expect(destroysRemoved(reports({ 1: REMOVED, 2: reopened, 3: caughtUp(3), 4: caughtUp(4) }))).to.equal(true);
      // One still catching up to the leader's applied index is waited for, until it has.
      const catchingUp = replica(3, { confIndex: 20, appliedIndex: 50, commitIndex: 50 });
      expect(destroysRemoved(reports({ 1: REMOVED, 2: reopened, 3: catchingUp, 4: caughtUp(4) }))).to.equal(false);
    });

    it('hole 2: a voter whose node is down, whose replica failed, or that reports no membership is not counted', () => {
      const down = reports({ 1: REMOVED, 2: LEADER, 4: replica(4) });
      expect(destroysRemoved(down), 'voter 3\'s node is down').to.equal(true);
      const failed = reports({ 1: REMOVED, 2: LEADER, 3: { ...BEHIND, health: 'failed', failure: 'corrupt WAL record' }, 4: replica(4) });
      expect(destroysRemoved(failed), 'voter 3 failed').to.equal(true);
      const unknown = reports({ 1: REMOVED, 2: LEADER, 3: replica(3, { voters: [], learners: [], confIndex: 0, appliedIndex: 0 }), 4: replica(4) });
      expect(destroysRemoved(unknown), 'voter 3 reports no membership').to.equal(true);
      // Another replica of the region on voter 3's node, under another peer id, is not voter 3.
      const otherPeer = reports({ 1: REMOVED, 2: LEADER, 3: replica(7, { voters: [1, 2, 3, 4], confIndex: 12 }), 4: replica(4) });
      expect(destroysRemoved(otherPeer)).to.equal(true);
    });

    it('a voter on a node whose first report the metasrv still awaits (after its start or takeover) holds the deletion; once judged down it does not (review S1)', () => {
      const seen = reports({ 1: REMOVED, 2: LEADER, 4: replica(4) });
      const awaiting3: AwaitingReport = (nodeId) => nodeId === 3;
      expect(destroyReason(catalog(), 1, REMOVED, seen, awaiting3), 'voter 3 not heard from yet').to.equal(undefined);
      expect(problems(seen, awaiting3).join('\n')).to.match(/kept while voter 3 on node 3 has not reported since this metasrv began acting/);
      expect(destroyReason(catalog(), 1, REMOVED, seen, NONE), 'node 3 judged down').to.be.a('string');
      // Only a voter of the leader's membership the catalog places on such a node holds it.
      expect(destroyReason(catalog(), 1, REMOVED, seen, (nodeId) => nodeId === 5), 'node 5 hosts no voter').to.be.a('string');
      expect(destroyReason(catalog(), 1, REMOVED, seen, (nodeId) => nodeId === 2 || nodeId === 4), 'nodes 2 and 4 report').to.be.a('string');
      // A failed removed replica never votes again: nothing holds its deletion.
      const failedRemoved = { ...REMOVED, health: 'failed', failure: 'apply failed' };
      expect(destroyReason(catalog(), 1, failedRemoved, reports({ 1: failedRemoved, 2: LEADER, 4: replica(4) }), awaiting3)).to.be.a('string');
    });

    it('learners are not counted, and a removed replica that failed is deleted without waiting', () => {
      const leader = replica(2, { role: 'leader', learners: [5] });
      const learnerBehind = replica(5, { voters: [1, 2, 3, 4], learners: [5], confIndex: 12, appliedIndex: 19 });
      expect(destroysRemoved(reports({ 1: REMOVED, 2: leader, 3: replica(3), 4: replica(4), 5: learnerBehind }))).to.equal(true);
      const failedRemoved = { ...REMOVED, health: 'failed', failure: 'apply failed' };
      expect(destroyReason(catalog(), 1, failedRemoved, reports({ 1: failedRemoved, 2: LEADER, 3: BEHIND, 4: replica(4) }), NONE)).to.be.a('string');
    });
  });

  describe('repair-replica (cleanup never waits; the new replica never goes where the region is hosted)', () => {
    interface Fake {
      ctx: ProcedureContext;
      sent: { nodeId: number; instruction: Instruction }[];
      observed: Map<number, ObservedReplica>;
      alive: Set<number>;
      /** Nodes whose first report the metasrv still awaits (ProcedureContext.firstReportAwaited). */
      awaiting: Set<number>;
      /** Nodes down for replica_repair_after_ms or longer (ProcedureContext.downTooLong). */
      downLong: Set<number>;
      catalog: CatalogState;
    }
    function fake(observedByNode: Record<number, ObservedReplica>): Fake {
      const cat = catalog();
      const sent: Fake['sent'] = [];
      const observed = new Map(Object.entries(observedByNode).map(([n, r]) => [Number(n), r]));
      const alive = new Set(Object.keys(cat.nodes).map(Number));
      const awaiting = new Set<number>();
      const downLong = new Set<number>();
      const ctx: ProcedureContext = {
        catalog: cat,
        clock: new ManualClock(1_000_000),
        isAlive: (nodeId) => alive.has(nodeId),
        observed: (nodeId) => (alive.has(nodeId) ? observed.get(nodeId) : undefined),
        firstReportAwaited: (nodeId) => awaiting.has(nodeId),
        // As metasrv-core's removalAwaits (M39): awaited, or down for less than replica_repair_after_ms.
        removalAwaits: (nodeId) => awaiting.has(nodeId) || (cat.nodes[nodeId] !== undefined && !alive.has(nodeId) && !downLong.has(nodeId)),
        downTooLong: (nodeId) => downLong.has(nodeId),
        leaderOf: (region) => {
          for (const p of region.replicas) {
            const r = alive.has(p.nodeId) ? observed.get(p.nodeId) : undefined;
            if (r?.role === 'leader' && r.peerId === p.peerId) return { nodeId: p.nodeId, replica: r };
          }
          return undefined;
        },
        send: (nodeId, instruction) => sent.push({ nodeId, instruction }),
        openInstruction: (_region, peerId) => ({ self_peer_id: String(peerId) }),
        // As the metasrv's: a live node not excluded, fewest replicas first (here: lowest id).
        pickNode: (exclude) => Object.values(cat.nodes).find((n) => alive.has(n.nodeId) && !exclude.has(n.nodeId)),
        start: () => {
          throw new Error('not used');
        },
        running: () => [],
      };
      return { ctx, sent, observed, alive, awaiting, downLong, catalog: cat };
    }
    const run: StepRun = { stepSinceMs: 0, resend: () => true };
    const cleanupData = (): RepairReplicaData => ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1, newPeerId: 4, newNodeId: 4 });
    const close = { nodeId: 1, instruction: { close_region: { region_id: REGION, destroy: true, peer_id: '1' } } };

    it('cleanup deletes the old replica once every live voter applied its removal', () => {
      const f = fake({ 1: REMOVED, 2: LEADER, 3: replica(3), 4: replica(4) });
      expect(repairReplica.steps['cleanup'](f.ctx, cleanupData(), run)).to.deep.equal({ done: true, note: 'replica replaced' });
      expect(f.sent).to.deep.equal([close]);
    });

    it('cleanup sends no close while a live voter counts the old membership (failed before the rule), and the procedure ends all the same (hole 2)', () => {
      const f = fake({ 1: REMOVED, 2: LEADER, 3: BEHIND, 4: replica(4) });
      const result = repairReplica.steps['cleanup'](f.ctx, cleanupData(), run);
      // The reverted version returned `retry` here, holding the region's repair slot.
      expect(result).to.have.property('done', true);
      expect(result).to.have.property('note').that.matches(/kept while voter 3 on node 3 still counts peer 1.*heartbeat reconciliation/);
      expect(f.sent, 'no close while voter 3 may need its vote').to.deep.equal([]);
      // Reconciliation, at a later heartbeat of node 1, once voter 3 applied the removal.
      expect(destroysRemoved(reports({ 1: REMOVED, 2: LEADER, 3: replica(3), 4: replica(4) }))).to.equal(true);
    });

    it('cleanup does not wait for a voter whose node is down (hole 2); it sends the close once that node has been down replica_repair_after_ms (M39)', () => {
      const f = fake({ 1: REMOVED, 2: LEADER, 3: BEHIND, 4: replica(4) });
      f.alive.delete(3);
      const result = repairReplica.steps['cleanup'](f.ctx, cleanupData(), run);
      expect(result).to.have.property('done', true);
      expect(f.sent, 'no close while node 3 is down for less than replica_repair_after_ms').to.deep.equal([]);
      f.downLong.add(3);
      expect(repairReplica.steps['cleanup'](f.ctx, cleanupData(), run)).to.deep.equal({ done: true, note: 'replica replaced' });
      expect(f.sent).to.deep.equal([close]);
    });

    it('cleanup sends no close while a voter\'s node has not reported since the metasrv began acting, and ends all the same (review S1)', () => {
      const f = fake({ 1: REMOVED, 2: LEADER, 4: replica(4) });
      f.alive.delete(3);
      f.awaiting.add(3);
      const result = repairReplica.steps['cleanup'](f.ctx, cleanupData(), run);
      expect(result).to.have.property('done', true);
      expect(result).to.have.property('note').that.matches(/kept while voter 3 on node 3 has not reported since this metasrv began acting/);
      expect(f.sent).to.deep.equal([]);
    });

    it('hole 3: a node reporting a removed replica of the region awaiting deletion is never picked for the new one (failed before: node 1 was)', () => {
      // Region on 2, 3, 4; peer 4's node is down and being repaired; node 1 still hosts peer 1.
      const f = fake({ 1: REMOVED, 2: LEADER, 3: BEHIND });
      f.alive.delete(4);
      f.alive.delete(5);
      const d: RepairReplicaData = { regionId: REGION, oldPeerId: 4, oldNodeId: 4 };
      expect(repairReplica.steps['allocate'](f.ctx, d, run)).to.deep.equal({ retry: 'no healthy datanode without a replica of this region' });
      expect(f.catalog.regions[REGION]!.replicas.map((p) => p.nodeId)).to.deep.equal([2, 3, 4]);
      f.alive.add(5);
      expect(repairReplica.steps['allocate'](f.ctx, d, run)).to.deep.include({ next: 'add-learner' });
      expect(d).to.include({ newNodeId: 5 });
    });

    it('hole 3, in place: a lost replica goes back on its own node only if what that node reports is the lost peer itself', () => {
      const lostOn = (there: ObservedReplica | undefined) => {
        const f = fake(there ? { 1: there, 2: LEADER, 3: replica(3) } : { 2: LEADER, 3: replica(3) });
        f.catalog.regions[REGION]!.replicas = [
          { peerId: 1, nodeId: 1, lost: 'failed' },
          { peerId: 2, nodeId: 2 },
          { peerId: 3, nodeId: 3 },
        ];
        f.alive.delete(4);
        f.alive.delete(5);
        const d: RepairReplicaData = { regionId: REGION, oldPeerId: 1, oldNodeId: 1, inPlace: true };
        return { result: repairReplica.steps['allocate'](f.ctx, d, run), d };
      };
      const failedItself = lostOn(replica(1, { health: 'failed', voters: [1, 2, 3] }));
      expect(failedItself.result).to.deep.include({ next: 'clear-old' });
      expect(failedItself.d).to.include({ newNodeId: 1 });
      expect(lostOn(undefined).result).to.deep.include({ next: 'clear-old' });
      // Node 1 hosts another peer of the region (removed, awaiting deletion): the open would be refused.
      expect(lostOn(replica(9)).result).to.have.property('retry');
    });
  });
});
