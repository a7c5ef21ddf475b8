// Heartbeat reconciliation (src/metasrv/reconcile.ts) as specifications: the raft group decides
// its membership, the catalog follows; nothing is destroyed because the catalog does not know it.
import { expect } from 'chai';
import { type CatalogState, dropTable, emptyCatalog, makeRegionId } from '../../src/metasrv/catalog.js';
import { type AwaitingReport, type HeldReports, type Reports, destroyReason, groupOf, heldDestroyReason, idFloors, nodeActions, reconcileCatalog, removedReplicaProblems } from '../../src/metasrv/reconcile.js';
import type { ObservedReplica } from '../../src/metasrv/procedures/procedure.js';
import { ONE_REGION as REGION, observedReplicas, oneRegionCatalog, reportsByNode as reports } from '../fixtures/metasrv-core.js';

/** No node's first report awaited (a metasrv past its startup pause). */
const NONE: AwaitingReport = () => false;

const replica = observedReplicas();

function catalogWith(replicas: { peerId: number; nodeId: number; lost?: string }[], confIndex?: number): CatalogState {
  return oneRegionCatalog('c', { replicas, leaderNodeId: 0, confVersion: 1, ...(confIndex !== undefined ? { confIndex } : {}) }, { nextPeerId: 4 });
}

describe('metasrv reconciliation (issue 14.2)', () => {
  describe('R1 nothing is destroyed because the catalog does not know it', () => {
    it('an empty catalog (lost metasrv data dir) destroys nothing and opens nothing', () => {
      const seen = reports({
        1: replica(1, { role: 'leader', voters: [1, 2, 3] }),
        2: replica(2, { voters: [1, 2, 3] }),
        3: replica(3, { voters: [1, 2, 3] }),
      });
      const catalog = emptyCatalog('c');
      for (const node of [1, 2, 3]) expect(nodeActions(catalog, node, seen, NONE), `node ${node}`).to.deep.equal([]);
      const { problems } = reconcileCatalog(catalog, seen, new Set());
      expect(problems.get(REGION)?.length, 'each unknown replica is reported').to.equal(3);
      expect(problems.get(REGION)![0]).to.match(/not in the catalog/);
    });

    it('a replica the catalog does not place but the group still counts as a voter is kept', () => {
      const catalog = catalogWith([
        { peerId: 1, nodeId: 1 },
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
      ]);
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1, 2, 5] }), 4: replica(5, { voters: [1, 2, 5] }) });
      expect(destroyReason(catalog, 4, seen.get(4)!.get(REGION)!, seen, NONE)).to.equal(undefined);
      expect(nodeActions(catalog, 4, seen, NONE)).to.deep.equal([]);
    });

    it('a replica the group removed is destroyed (a node back after its replica was replaced)', () => {
      const catalog = catalogWith([
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
        { peerId: 4, nodeId: 4 },
      ]);
      const seen = reports({ 2: replica(2, { role: 'leader', voters: [2, 3, 4], confIndex: 9 }), 1: replica(1, { voters: [1, 2, 3], confIndex: 3 }) });
      const actions = nodeActions(catalog, 1, seen, NONE);
      expect(actions).to.have.length(1);
      expect(actions[0]).to.have.property('destroy').that.includes({ regionId: REGION, peerId: 1 });
    });

    it('no leader reported: nothing is destroyed (nobody can say who the members are)', () => {
      const catalog = catalogWith([{ peerId: 2, nodeId: 2 }]);
      const seen = reports({ 1: replica(1, { voters: [1, 2, 3] }), 2: replica(2, { voters: [1, 2, 3] }) });
      expect(nodeActions(catalog, 1, seen, NONE)).to.deep.equal([]);
    });

    it('a leader whose configuration is older than the replica\'s own does not get it destroyed', () => {
      const catalog = catalogWith([{ peerId: 2, nodeId: 2 }]);
      const seen = reports({ 2: replica(2, { role: 'leader', term: 9, voters: [2, 3, 4], confIndex: 5 }), 1: replica(1, { voters: [1, 2, 3], confIndex: 7 }) });
      expect(nodeActions(catalog, 1, seen, NONE)).to.deep.equal([]);
    });

    it('dropping a table remembers its regions, so their replicas are destroyed wherever reported', () => {
      const catalog = catalogWith([{ peerId: 1, nodeId: 1 }]);
      dropTable(catalog, 't', 5);
      expect(catalog.droppedRegions).to.deep.equal({ [REGION]: 5 });
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1] }) });
      expect(nodeActions(catalog, 1, seen, NONE)).to.deep.equal([{ destroy: { regionId: REGION, peerId: 1, why: 'its table was dropped' } }]);
    });

    it('replicas of a table dropped in this catalog are destroyed', () => {
      const catalog = emptyCatalog('c');
      catalog.droppedRegions = { [REGION]: 1 };
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1, 2, 3] }) });
      expect(nodeActions(catalog, 1, seen, NONE)).to.deep.equal([{ destroy: { regionId: REGION, peerId: 1, why: 'its table was dropped' } }]);
    });
  });

  describe('removed replicas awaiting deletion are shown (R16; `regiondb status` problems)', () => {
    const conf = { voters: [2, 3, 4], confIndex: 9 };
    const removed = replica(1, { voters: [2, 3, 4], confIndex: 9 }); // applied its removal: its membership lacks it
    function problemsOf(catalog: CatalogState, seen: Reports): string[] {
      const into = new Map<string, string[]>();
      removedReplicaProblems(catalog, seen, NONE, into);
      return into.get(REGION) ?? [];
    }

    it('a known region whose leader reports the configuration without it: being deleted', () => {
      const catalog = catalogWith([
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
        { peerId: 4, nodeId: 4 },
      ]);
      const applied = reports({ 2: replica(2, { role: 'leader', ...conf }), 3: replica(3, conf), 4: replica(4, conf), 1: removed });
      expect(problemsOf(catalog, applied)).to.deep.equal(['peer 1 on node 1 reports a membership without itself (conf index 9): removed from its group; being deleted']);
    });

    it('a region this catalog does not know (a metasrv on an empty data dir): kept, and said so', () => {
      const seen = reports({ 2: replica(2, { role: 'leader', ...conf }), 1: removed });
      expect(problemsOf(emptyCatalog('c'), seen)).to.deep.equal([
        'peer 1 on node 1 reports a membership without itself (conf index 9): removed from its group, it answers raft until deleted; this catalog does not know the region, so nothing deletes it',
      ]);
    });

    it('members, new replicas with no membership yet and failed replicas are not listed', () => {
      const catalog = catalogWith([{ peerId: 2, nodeId: 2 }]);
      const seen = reports({ 2: replica(2, { role: 'leader', ...conf }), 3: replica(3, { voters: [], learners: [] }), 1: replica(1, { voters: [2, 3, 4], health: 'failed' }) });
      expect(problemsOf(catalog, seen)).to.deep.equal([]);
    });
  });

  describe('R2 a catalog older than the group follows the group', () => {
    it('catalog from before a repair (peer 1 on node 1 replaced by peer 5 on node 4): adopted, and nothing destroyed', () => {
      const catalog = catalogWith(
        [
          { peerId: 1, nodeId: 1 },
          { peerId: 2, nodeId: 2 },
          { peerId: 3, nodeId: 3 },
        ],
        3,
      );
      const group = { voters: [2, 3, 5], confIndex: 12 };
      const seen = reports({ 2: replica(2, { role: 'leader', ...group }), 3: replica(3, group), 4: replica(5, group) });
      expect(nodeActions(catalog, 4, seen, NONE), 'the new replica is not destroyed').to.deep.equal([]);
      const { adopt, problems } = reconcileCatalog(catalog, seen, new Set());
      expect(problems.size).to.equal(0);
      expect(adopt).to.have.length(1);
      expect(adopt[0]!.replicas).to.deep.equal([
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
        { peerId: 5, nodeId: 4 },
      ]);
      expect(adopt[0]!.confIndex).to.equal(12);
    });

    it('a catalog ahead of the group while a procedure changes the region is left as is', () => {
      const catalog = catalogWith(
        [
          { peerId: 1, nodeId: 1 },
          { peerId: 2, nodeId: 2 },
          { peerId: 3, nodeId: 3 },
          { peerId: 4, nodeId: 4 },
        ],
        3,
      );
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1, 2, 3] }) });
      const { adopt, problems } = reconcileCatalog(catalog, seen, new Set([REGION]));
      expect(adopt).to.deep.equal([]);
      expect(problems.size).to.equal(0);
    });

    it('a catalog ahead of the group with nothing running is reported, not changed', () => {
      const catalog = catalogWith([{ peerId: 1, nodeId: 1 }, { peerId: 2, nodeId: 2 }, { peerId: 3, nodeId: 3 }, { peerId: 4, nodeId: 4 }], 3);
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1, 2, 3] }) });
      const { adopt, problems } = reconcileCatalog(catalog, seen, new Set());
      expect(adopt).to.deep.equal([]);
      expect(problems.get(REGION)?.[0]).to.match(/no procedure is changing it; left alone/);
    });

    it('a group member no live node reports cannot be placed: reported, catalog unchanged', () => {
      const catalog = catalogWith([{ peerId: 1, nodeId: 1 }, { peerId: 2, nodeId: 2 }, { peerId: 3, nodeId: 3 }], 3);
      const seen = reports({ 2: replica(2, { role: 'leader', voters: [2, 3, 7], confIndex: 20 }) });
      const { adopt, problems } = reconcileCatalog(catalog, seen, new Set());
      expect(adopt).to.deep.equal([]);
      expect(problems.get(REGION)?.[0]).to.match(/peers 7 that neither the catalog nor any live datanode places/);
    });

    describe('M25: a member no live node reports is placed on the node its leader names', () => {
      // The catalog is a copy from before peer 11 was added on node 4 (peer 2 removed); the leader
      // on node 1 names every member's node.
      const nodes = [1, 2, 3, 4].map((nodeId) => ({ nodeId, addr: `n${nodeId}`, httpAddr: '', lastHeartbeatMs: 0, state: 'alive' as const }));
      const restored = () =>
        oneRegionCatalog(
          'c',
          { replicas: [{ peerId: 1, nodeId: 1 }, { peerId: 2, nodeId: 2 }, { peerId: 3, nodeId: 3 }], leaderNodeId: 0, confVersion: 1, confIndex: 3 },
          { nextPeerId: 4, nodes },
        );
      const group = { voters: [1, 3, 11], confIndex: 119 };
      const members = [
        { peerId: 1, nodeId: 1 },
        { peerId: 3, nodeId: 3 },
        { peerId: 11, nodeId: 4 },
      ];
      const leaderOn1 = replica(1, { role: 'leader', ...group, members });

      // Placed lost whether its node has been down for replica_repair_after_ms or reports without it
      // (closed, or a new store): a repair replaces it, and nothing opens it under its id — its
      // node may have come back on a new store before the placement existed (noteStore could not
      // mark it), and an open under peer 11 there would be an empty voter.
      const downLong = (n: number) => n === 4;
      for (const [what, seen, down] of [
        ['its node down for replica_repair_after_ms', reports({ 1: leaderOn1, 3: replica(3, group) }), downLong],
        ['its node reporting without it', new Map<number, ReadonlyMap<string, ObservedReplica>>([...reports({ 1: leaderOn1, 3: replica(3, group) }), [4, new Map()]]), NONE],
      ] as const) {
        it(`${what}: placed there marked lost, never opened under its id, and the adoption says so`, () => {
          const { adopt, problems } = reconcileCatalog(restored(), seen, new Set(), down);
          expect(problems.size, JSON.stringify([...problems])).to.equal(0);
          expect(adopt.map((a) => a.replicas.map((p) => `${p.peerId}@${p.nodeId}${p.lost ? ' lost' : ''}`))).to.deep.equal([['1@1', '3@3', '11@4 lost']]);
          expect(adopt[0]!.replicas[2]!.lost).to.match(/counts peer 11 on node 4, which does not report it/);
          expect(adopt[0]!.confIndex).to.equal(119);
          expect(adopt[0]!.note).to.match(/peer 11 on node 4 placed lost/);
          const catalog = restored();
          catalog.regions[REGION]!.replicas = adopt[0]!.replicas;
          catalog.regions[REGION]!.confIndex = 119;
          // Down, then back (same store or a new one), reporting nothing of the region: no open.
          const back: Reports = new Map<number, ReadonlyMap<string, ObservedReplica>>([...reports({ 1: leaderOn1, 3: replica(3, group) }), [4, new Map()]]);
          expect(nodeActions(catalog, 4, back, NONE), 'R4: a lost placement is never opened').to.deep.equal([]);
        });
      }

      it('its node not reporting but not down for replica_repair_after_ms (a slow first report after a metasrv start), the leader naming no node, or a node the catalog does not know: left as a problem', () => {
        const seen = reports({ 1: leaderOn1, 3: replica(3, group) });
        for (const [what, catalog, report, down] of [
          ['node 4 not down long enough', restored(), seen, NONE],
          ['no members reported', restored(), reports({ 1: replica(1, { role: 'leader', ...group }), 3: replica(3, group) }), downLong],
          ['node 4 unknown', oneRegionCatalog('c', { ...restored().regions[REGION]!, leaderNodeId: 0 }, { nextPeerId: 4, nodes: nodes.slice(0, 3) }), seen, downLong],
        ] as const) {
          const { adopt, problems } = reconcileCatalog(catalog, report, new Set(), down);
          expect(adopt, what).to.deep.equal([]);
          expect(problems.get(REGION)?.[0], what).to.match(/peers 11 that neither the catalog nor any live datanode places/);
        }
      });

      describe('R8: a member its live node holds closed is placed there and reopened, not lost (register seed 4582)', () => {
        const seen: Reports = new Map<number, ReadonlyMap<string, ObservedReplica>>([...reports({ 1: leaderOn1, 3: replica(3, group) }), [4, new Map()]]);

        it("node 4 says it holds peer 11's data closed: placed there unlost, and node 4 is told to open it", () => {
          const held: HeldReports = new Map([[4, new Map([[REGION, 11]])]]);
          const { adopt } = reconcileCatalog(restored(), seen, new Set(), NONE, held);
          expect(adopt.map((a) => a.replicas.map((p) => `${p.peerId}@${p.nodeId}${p.lost ? ' lost' : ''}`))).to.deep.equal([['1@1', '3@3', '11@4']]);
          const catalog = restored();
          catalog.regions[REGION]!.replicas = adopt[0]!.replicas;
          catalog.regions[REGION]!.confIndex = 119;
          expect(nodeActions(catalog, 4, seen, NONE, held)).to.deep.equal([{ open: { regionId: REGION, peerId: 11 } }]);
        });

        it('held data of another peer, another region, or on a node not reporting does not count: lost as before', () => {
          for (const [what, held] of [
            ['another peer', new Map([[4, new Map([[REGION, 7]])]])],
            ['another region', new Map([[4, new Map([[makeRegionId(9, 0), 11]])]])],
            ['another node', new Map([[2, new Map([[REGION, 11]])]])],
          ] as const) {
            const { adopt } = reconcileCatalog(restored(), seen, new Set(), NONE, held);
            expect(adopt[0]!.replicas.find((p) => p.peerId === 11)?.lost, what).to.match(/which does not report it/);
          }
          const notReporting = reports({ 1: leaderOn1, 3: replica(3, group) });
          const { adopt, problems } = reconcileCatalog(restored(), notReporting, new Set(), NONE, new Map([[4, new Map([[REGION, 11]])]]));
          expect(adopt, 'a node not reporting: what it held is not known now').to.deep.equal([]);
          expect(problems.get(REGION)?.[0]).to.match(/peers 11 that neither the catalog nor any live datanode places/);
        });
      });
    });

    it('a matching group records its conf index (the version the catalog is known to match)', () => {
      const catalog = catalogWith([{ peerId: 1, nodeId: 1 }, { peerId: 2, nodeId: 2 }, { peerId: 3, nodeId: 3 }]);
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1, 2, 3], confIndex: 3 }) });
      expect(reconcileCatalog(catalog, seen, new Set()).matched).to.deep.equal([{ regionId: REGION, confIndex: 3 }]);
    });
  });

  // R8 (M37's leftover, register seed 3890): data a node holds closed whose peer the group went
  // past is deleted by name; anything else held is kept.
  describe('R8 data held closed is deleted once the group went past its peer', () => {
    const catalog = () =>
      catalogWith([
        { peerId: 1, nodeId: 1 },
        { peerId: 3, nodeId: 3 },
        { peerId: 5, nodeId: 2 },
      ]);
    const heldOn4 = (peerId: number): HeldReports => new Map([[4, new Map([[REGION, peerId]])]]);
    const group = (voters: number[], applied = 20) =>
      reports({ 1: replica(1, { role: 'leader', voters, confIndex: 20, appliedIndex: 20 }), 3: replica(3, { voters, confIndex: 20, appliedIndex: applied }), 2: replica(5, { voters, confIndex: 20, appliedIndex: 20 }) });
    const destroysOn4 = (seen: Reports, held: HeldReports, c = catalog()) => nodeActions(c, 4, new Map<number, ReadonlyMap<string, ObservedReplica>>([...seen, [4, new Map()]]), NONE, held).filter((a) => 'destroy' in a);

    it('removed peer 2, the leader counting 5 (allocated after it), every voter past the removal: deleted by name on node 4', () => {
      const actions = destroysOn4(group([1, 3, 5]), heldOn4(2));
      expect(actions).to.have.length(1);
      expect(actions[0]).to.have.property('destroy').that.includes({ regionId: REGION, peerId: 2 });
      expect((actions[0] as { destroy: { why: string } }).destroy.why).to.match(/held closed on this node, is no member of the group: the leader on node 1 counts 3,5, allocated after it/);
    });

    it('kept: the leader counts it, counts nothing newer, no leader reports, a voter still needs its vote (R16), or the region is unknown', () => {
      expect(destroysOn4(group([1, 2, 3]), heldOn4(2)), 'counted: R8 reopens it instead').to.deep.equal([]);
      expect(destroysOn4(group([1, 3, 5]), heldOn4(7)), 'nothing counted above peer 7 (not added yet, or the newest removed)').to.deep.equal([]);
      expect(destroysOn4(reports({ 3: replica(3, { voters: [1, 3, 5], confIndex: 20 }) }), heldOn4(2)), 'no leader').to.deep.equal([]);
      const stillCounting = reports({ 1: replica(1, { role: 'leader', voters: [1, 3, 5], confIndex: 20 }), 3: replica(3, { voters: [1, 2, 3, 5], confIndex: 12, appliedIndex: 12 }) });
      expect(destroysOn4(stillCounting, heldOn4(2)), 'voter 3 still counts peer 2 (the 4 → 3 window)').to.deep.equal([]);
      expect(destroysOn4(group([1, 3, 5], 15), heldOn4(2)), 'voter 3 has not applied the leader\'s configuration').to.deep.equal([]);
      expect(destroysOn4(group([1, 3, 5]), new Map([[4, new Map([[makeRegionId(9, 0), 2]])]])), 'a region this catalog does not know (R1)').to.deep.equal([]);
    });

    it("a dropped table's held data is deleted; a held region running again is not judged as held", () => {
      const c = catalog();
      dropTable(c, 't', 5);
      expect(destroysOn4(new Map(), heldOn4(2), c)).to.deep.equal([{ destroy: { regionId: REGION, peerId: 2, why: 'its table was dropped (a replica held closed)' } }]);
      const running: Reports = new Map<number, ReadonlyMap<string, ObservedReplica>>([...group([1, 3, 5]), [4, new Map([[REGION, replica(2, { voters: [1, 3, 5], confIndex: 20 })]])]]);
      const actions = nodeActions(catalog(), 4, running, NONE, heldOn4(2)).filter((a) => 'destroy' in a);
      expect(actions.length, 'only R1 speaks for a running replica').to.be.at.most(1);
      expect(heldDestroyReason(catalog(), 4, REGION, 2, group([1, 3, 5]), NONE)).to.match(/no member of the group/);
    });
  });

  describe('R4 lost replicas are never reopened under their peer id', () => {
    it('a node back on an empty store is not told to open its old peer; its new replica is', () => {
      const catalog = catalogWith([
        { peerId: 1, nodeId: 1, lost: 'new store' },
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
      ]);
      expect(nodeActions(catalog, 1, new Map([[1, new Map()]]), NONE)).to.deep.equal([]);
      catalog.regions[REGION]!.replicas.push({ peerId: 9, nodeId: 1 });
      expect(nodeActions(catalog, 1, new Map([[1, new Map()]]), NONE)).to.deep.equal([{ open: { regionId: REGION, peerId: 9 } }]);
    });
  });

  // R5 (review of N1): a catalog copy taken while a repair placed peer 4 on node 4 (at add-learner),
  // restored after the group added, promoted and removed peer 4 (peer 9 replaced it); its conf
  // index, over-stated by a snapshot, is at or above the group's, so R2 leaves the region alone.
  describe('R5 a placement the group went past is not opened', () => {
    const placed = () =>
      catalogWith(
        [
          { peerId: 1, nodeId: 1 },
          { peerId: 2, nodeId: 2 },
          { peerId: 3, nodeId: 3 },
          { peerId: 4, nodeId: 4 },
        ],
        101,
      );
    const opens = (catalog: CatalogState, nodeId: number, seen: Reports) => nodeActions(catalog, nodeId, seen, NONE).filter((a) => 'open' in a);

    it('the leader counts a peer id above the placed one and not it: no open, a skip saying why; R2 leaves the region alone (failed before: open of peer 4)', () => {
      const catalog = placed();
      const group = { voters: [1, 2, 9], confIndex: 60 };
      const seen = reports({ 1: replica(1, group), 2: replica(2, { role: 'leader', ...group }), 4: replica(99, { regionId: makeRegionId(2000, 0) }) });
      expect(reconcileCatalog(catalog, seen, new Set()).problems.get(REGION)?.[0]).to.match(/left alone/);
      const actions = nodeActions(catalog, 4, seen, NONE);
      expect(actions, 'peer 4 opened empty under an id that voted').to.have.length(1);
      expect(actions[0]).to.have.property('skip').that.deep.includes({ regionId: REGION, peerId: 4 });
      expect((actions[0] as { skip: { why: string } }).skip.why).to.match(/does not count peer 4 and counts 9, allocated after it/);
      // The same for a placement of an older peer the group replaced (peer 3 by 9): not opened on node 3.
      expect(opens(catalog, 3, seen)).to.deep.equal([]);
    });

    it('the same for a successor added as a learner (peer 4 given up, Y6; peer 5 added)', () => {
      const seen = reports({ 2: replica(2, { role: 'leader', voters: [1, 2, 3], learners: [5], confIndex: 60 }) });
      expect(opens(placed(), 4, seen)).to.deep.equal([]);
    });

    it("a repair's new peer, not added yet (the highest id) or added as a learner, is opened", () => {
      const catalog = placed();
      expect(opens(catalog, 4, reports({ 2: replica(2, { role: 'leader', voters: [1, 2, 3] }) }))).to.deep.equal([{ open: { regionId: REGION, peerId: 4 } }]);
      expect(opens(catalog, 4, reports({ 2: replica(2, { role: 'leader', voters: [1, 2, 3], learners: [4] }) }))).to.deep.equal([{ open: { regionId: REGION, peerId: 4 } }]);
      // A counted peer is opened whatever ids above it are counted.
      expect(opens(catalog, 4, reports({ 2: replica(2, { role: 'leader', voters: [1, 2, 4], learners: [7] }) }))).to.deep.equal([{ open: { regionId: REGION, peerId: 4 } }]);
    });

    it('a bootstrap region (peers 1, 2, 3): each is opened, before any report and with a leader counting them', () => {
      const catalog = catalogWith([
        { peerId: 1, nodeId: 1 },
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
      ]);
      for (const node of [1, 2, 3]) expect(opens(catalog, node, new Map()), `node ${node}`).to.deep.equal([{ open: { regionId: REGION, peerId: node } }]);
      const seen = reports({ 1: replica(1, { role: 'leader', voters: [1, 2, 3] }) });
      expect(opens(catalog, 3, seen)).to.deep.equal([{ open: { regionId: REGION, peerId: 3 } }]);
    });

    // R5b (engine seed 4112): every replica reports the configuration it applied, a committed one;
    // a follower's, a failed replica's or a lower-term leader's that went past the peer is a
    // witness as good as the leader's (until then: opened as before).
    it('no leader report (followers only, or a failed leader), or a lower-term leader past it while the highest-term one is not: a skip naming the witness (before: opened)', () => {
      const catalog = placed();
      const skipped = (seen: Reports) => nodeActions(catalog, 4, seen, NONE).map((a) => ('skip' in a ? a.skip.why : a));
      expect(skipped(reports({ 1: replica(1, { voters: [1, 2, 9] }), 2: replica(2, { voters: [1, 2, 9] }) }))).to.deep.equal([
        'peer 1 on node 1 (follower) applied a configuration without peer 4 that counts 9, allocated after it (conf index 3): the group went on past it; not opened',
      ]);
      expect(opens(catalog, 4, reports({ 2: replica(2, { role: 'leader', voters: [1, 2, 9], health: 'failed' }) }))).to.deep.equal([]);
      const seen = reports({ 1: replica(1, { role: 'leader', term: 2, voters: [1, 2, 9] }), 2: replica(2, { role: 'leader', term: 4, voters: [1, 2, 3] }) });
      expect(opens(catalog, 4, seen)).to.deep.equal([]);
    });

    it('followers not past it (counting it, or no id above it), or no report of the region at all: opened as before', () => {
      const catalog = placed();
      const open4 = [{ open: { regionId: REGION, peerId: 4 } }];
      expect(opens(catalog, 4, reports({ 1: replica(1, { voters: [1, 2, 3] }), 2: replica(2, { voters: [1, 2, 3], learners: [4] }) }))).to.deep.equal(open4);
      expect(opens(catalog, 4, reports({ 1: replica(1, { voters: [1, 2, 4, 9] }) })), 'a peer a configuration counts').to.deep.equal(open4);
      expect(opens(catalog, 4, new Map()), 'no report').to.deep.equal(open4);
    });
  });

  describe('id allocators after a catalog loss', () => {
    it('are raised above every peer id and table id the datanodes report', () => {
      const other = makeRegionId(2000, 3);
      const seen: Reports = new Map([
        [1, new Map([[REGION, replica(1, { voters: [1, 2, 3], learners: [17] })]])],
        [2, new Map([[other, replica(11, { regionId: other, voters: [11, 12, 13] })]])],
      ]);
      expect(idFloors(seen)).to.deep.equal({ nextPeerId: 18, nextTableId: 2001 });
    });

    it('the group view is the highest-term leader that is not failed', () => {
      const seen = reports({ 1: replica(1, { role: 'leader', term: 4, voters: [1, 2, 3] }), 2: replica(2, { role: 'leader', term: 6, voters: [2, 3, 4], health: 'failed' }) });
      expect(groupOf(REGION, seen)?.leaderPeerId).to.equal(1);
    });
  });
});
