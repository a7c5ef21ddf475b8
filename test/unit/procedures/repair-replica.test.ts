// repair-replica's steps against the fake metasrv: success, retryable failure, fatal failure,
// and resume after a crash mid-step. Peer 3 on node 3 (down) is replaced by peer 4 on node 4.
// (A step that throws fails its procedure: steps.test.ts. Lost replicas: ../repair-replica.test.ts.)
import { expect } from 'chai';
import { RESEND_AFTER_MS } from '../../../src/metasrv/procedures/procedure.js';
import { type RepairReplicaData, type StepOf, checkData } from '../../../src/metasrv/procedures/record.js';
import { NEW_REPLICA_OPEN_WAIT_MS } from '../../../src/metasrv/procedures/repair-replica.js';
import { type Reports, nodeActions, reconcileCatalog } from '../../../src/metasrv/reconcile.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

type Step = StepOf<'repair-replica'>;

/** Node 3 is down; a repair of its peer starts at `step` (past allocate: peer 4 placed on node 4). */
function repair(step: Step, over: Partial<RepairReplicaData> = {}) {
  const f = new FakeCluster();
  f.kill(3);
  const allocated = step !== 'allocate';
  const data: RepairReplicaData = { regionId: REGION, oldPeerId: 3, oldNodeId: 3, ...(allocated ? { newPeerId: 4, newNodeId: 4 } : {}), ...over };
  if (allocated && data.newPeerId !== undefined) {
    f.region().replicas.push({ peerId: data.newPeerId, nodeId: data.newNodeId! });
    f.catalog.nextPeerId = data.newPeerId + 1;
  }
  const { id } = f.start('repair-replica', data);
  f.procedure(id, 'repair-replica').step = step;
  f.save();
  return { f, id, record: () => f.procedure(id, 'repair-replica') };
}

/** The live nodes' reports (what the metasrv's reconciliation reads). */
function liveReports(f: FakeCluster): Reports {
  return new Map([...f.reports].filter(([nodeId]) => f.alive.has(nodeId)));
}

/** The replicas heartbeat reconciliation tells `nodeId` to open (reconcile.ts nodeActions, as the metasrv calls it). */
function reconciliationOpens(f: FakeCluster, nodeId: number): string[] {
  return nodeActions(f.catalog, nodeId, liveReports(f), () => false).flatMap((a) => ('open' in a ? [`open ${a.open.peerId}@${nodeId}`] : []));
}

/** The leader (node 2) reports this membership. */
function leaderReports(f: FakeCluster, voters: number[], learners: number[] = []) {
  f.report(2, replica(2, { role: 'leader', voters, learners }));
}

/**
 * A catalog behind its group (restored from an older copy, M31, sim seed 2920): the catalog places
 * 1@1, 2@2, 3@3 at conf index 42; the group replaced peer 3 by peer 10 on node 5 in a repair the
 * copy lost (voters 1, 2, 10 at conf index 268), and peer 10 leads. Node 5 is alive and reports
 * it; no peer the catalog places leads.
 */
function groupBeyondCatalog(f: FakeCluster, voters = [1, 2, 10]) {
  f.catalog.nodes[5] = { nodeId: 5, addr: '127.0.0.1:7005', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
  f.alive.add(5);
  f.reports.set(5, new Map());
  f.region().confIndex = 42;
  const group = { voters, confIndex: 268, term: 3, leaderNodeId: 5 };
  f.report(1, replica(1, group));
  f.report(2, replica(2, group));
  f.report(5, replica(10, { ...group, role: 'leader' }));
}

describe('repair-replica / allocate', () => {
  it('success: a never-used peer id on a healthy node without a replica, placed in the catalog with the step change', () => {
    const { f, id, record } = repair('allocate');
    f.step(id);
    expect(record().step).to.equal('add-learner');
    expect(record().data).to.include({ newPeerId: 4, newNodeId: 4 });
    expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`)).to.deep.equal(['1@1', '2@2', '3@3', '4@4']);
    expect(f.region().confVersion).to.equal(2);
  });

  it('retryable: with no free healthy node it waits, noting why; allocates when one is back', () => {
    const { f, id, record } = repair('allocate');
    f.kill(4);
    f.step(id);
    expect(record()).to.include({ step: 'allocate', status: 'running' });
    expect(record().notes.at(-1)).to.equal('no healthy datanode without a replica of this region');
    expect(f.region().replicas).to.have.length(3);
    f.alive.add(4);
    f.step(id);
    expect(record().step).to.equal('add-learner');
  });

  it('not a failure: a dropped region or an already replaced replica ends it as done', () => {
    const { f, id, record } = repair('allocate');
    delete f.catalog.regions[REGION];
    f.step(id);
    expect(record()).to.include({ status: 'done' });
    expect(record().notes.at(-1)).to.equal('region no longer exists');
  });

  it('not a failure: a peer the group removed at a configuration newer than the catalog\'s ends it as done, placing nothing (R2 corrects the catalog once the region is free)', () => {
    // Sim seed 84 with `drain`, before the remove-old fix: the catalog re-adopted a removed peer
    // and this step waited for a free node for as long as the run lasted, holding R2 off.
    const { f, id, record } = repair('allocate');
    f.kill(4); // no free node: without the check it would wait here
    f.region().confIndex = 134;
    f.report(1, replica(1, { voters: [1, 2], confIndex: 143 }));
    f.report(2, replica(2, { role: 'leader', voters: [1, 2], confIndex: 143 }));
    f.step(id);
    expect(record()).to.include({ status: 'done' });
    expect(record().notes.at(-1)).to.equal('peer 3 is no longer a member of the group; the catalog is left to reconciliation');
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 3]);
    expect(f.catalog.nextPeerId).to.equal(4);
  });

  it('a learner of a group that has its voters (left by a repair whose record a restored catalog lost) is removed by the leader, not replaced; done once the group no longer counts it (M29, sim seed 2248)', () => {
    // Peer 3 on node 3 is a learner; voters 1, 2 and 5 (node 4). Every node holds a replica, so
    // a replacement could go nowhere: before, allocate waited for a free node for good.
    const { f, id, record } = repair('allocate');
    f.alive.add(3);
    f.region().replicas.push({ peerId: 5, nodeId: 4 });
    f.catalog.nextPeerId = 6;
    f.region().confIndex = 10;
    leaderReports(f, [1, 2, 5], [3]);
    f.step(id);
    expect(record()).to.include({ step: 'allocate', status: 'running' });
    expect(record().notes.at(-1)).to.equal('peer 3 is a learner of a group with 3 voters: removing it, not replacing it');
    expect(f.sent.map((s) => s.instruction)).to.deep.equal([{ change_peer: { region_id: REGION, change: 'remove', peer: { peer_id: '3', node_id: '3', addr: '127.0.0.1:7003' } } }]);
    expect(f.catalog.nextPeerId, 'no new peer allocated').to.equal(6);
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 5], confIndex: 11 }));
    f.step(id);
    expect(record()).to.include({ status: 'done' });
  });

  it('a learner of a group short of voters is still replaced as any lost replica (the removal is only for a group that has its voters)', () => {
    const { f, id, record } = repair('allocate');
    leaderReports(f, [1, 2], [3]);
    f.step(id);
    expect(record().step).to.equal('add-learner');
    expect(record().data).to.include({ newPeerId: 4, newNodeId: 4 });
  });

  it('a peer the group removed, its leader a peer the catalog does not place (a catalog behind its group), ends it as done, placing nothing (M31)', () => {
    const { f, id, record } = repair('allocate');
    groupBeyondCatalog(f);
    f.step(id);
    expect(record()).to.include({ status: 'done' });
    expect(record().notes.at(-1)).to.equal('peer 3 is no longer a member of the group; the catalog is left to reconciliation');
    expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`)).to.deep.equal(['1@1', '2@2', '3@3']);
  });

  it('a leader reporting, without the peer, a configuration no newer than the catalog\'s is not taken as its removal', () => {
    const { f, id, record } = repair('allocate');
    f.region().confIndex = 143;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2], confIndex: 143 }));
    f.step(id);
    expect(record().step).to.equal('add-learner');
  });

  it('never allocates a peer id the group names: the allocator, behind (a restored catalog), is raised above the leader\'s configuration and the region\'s replicas by the step itself (review N)', () => {
    // The group has a learner 4 on node 4 that the catalog copy does not know (added after the
    // copy); the copy's allocator is at 4. (The metasrv's heartbeat reconciliation raises it too,
    // idFloors; the step no longer depends on that.)
    const { f, id, record } = repair('allocate');
    f.catalog.nodes[5] = { nodeId: 5, addr: '127.0.0.1:7005', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
    f.alive.add(5);
    f.reports.set(5, new Map());
    f.report(4, replica(4, { voters: [1, 2, 3], learners: [4], confIndex: 21 }));
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], learners: [4], confIndex: 21 }));
    f.step(id);
    expect(record().data).to.include({ newPeerId: 5, newNodeId: 5 });
    expect(f.catalog.nextPeerId).to.equal(6);
  });

  it('resume: a crash before the save loses the placement and the id with it; the re-run places one replica, not two', () => {
    const { f, id, record } = repair('allocate');
    f.stepThenCrash(id);
    expect(f.region().replicas).to.have.length(3);
    expect(f.catalog.nextPeerId).to.equal(4);
    expect(record().data.newPeerId).to.equal(undefined);
    f.step(id);
    f.step(id); // add-learner now; allocate is not run again
    f.crash();
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 3, 4]);
    expect(f.catalog.nextPeerId).to.equal(5);
  });
});

describe('repair-replica / clear-old (replaced on the same node)', () => {
  const inPlace = { newPeerId: 4, newNodeId: 3, inPlace: true };

  it('success: deletes the failed old replica the node still hosts; moves on once it is gone', () => {
    const { f, id, record } = repair('clear-old', inPlace);
    f.alive.add(3);
    f.report(3, replica(3, { health: 'failed' }));
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 3, instruction: { close_region: { region_id: REGION, destroy: true, peer_id: '3' } } }]);
    f.unreport(3);
    f.step(id);
    expect(record().step).to.equal('add-learner');
  });

  it('a lost old peer that runs and leads (its node came back and reopened it) hands leadership to another live voter before it is deleted (M30)', () => {
    const { f, id, record } = repair('clear-old', inPlace);
    f.alive.add(3);
    f.report(3, replica(3, { role: 'leader', voters: [1, 2, 3] }));
    f.report(2, replica(2, { voters: [1, 2, 3] }));
    f.step(id);
    expect(f.sent, 'leadership moved first, nothing deleted').to.deep.equal([{ nodeId: 3, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '1' } } }]);
    expect(record().step).to.equal('clear-old');
    f.report(3, replica(3, { voters: [1, 2, 3] }));
    f.report(1, replica(1, { role: 'leader', voters: [1, 2, 3] }));
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sent.at(-1)).to.deep.equal({ nodeId: 3, instruction: { close_region: { region_id: REGION, destroy: true, peer_id: '3' } } });
  });

  it('retryable: waits, noting why, while the node is down', () => {
    const { f, id, record } = repair('clear-old', inPlace);
    f.step(id);
    expect(record().notes.at(-1)).to.equal('waiting for node 3');
    expect(f.sent).to.deep.equal([]);
    expect(record().step).to.equal('clear-old');
  });

  it('resume: a crash before the save re-sends the delete', () => {
    const { f, id, record } = repair('clear-old', inPlace);
    f.alive.add(3);
    f.report(3, replica(3, { health: 'failed' }));
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'clear-old', lastSentMs: 0 });
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['close_region@3']);
  });
});

describe('repair-replica / add-learner in place (finding M24)', () => {
  it('the old peer\'s data, which no report shows (closed without destroy), is deleted by name before the new peer\'s open, at every resend', () => {
    // The node reports nothing of the region, so clear-old deletes nothing; the node would
    // refuse peer 4's open over peer 3's data on its disk, resend after resend.
    const { f, id, record } = repair('clear-old', { newPeerId: 4, newNodeId: 3, inPlace: true });
    f.alive.add(3);
    f.reports.set(3, new Map());
    f.step(id);
    expect(record().step).to.equal('add-learner');
    leaderReports(f, [1, 2, 3]);
    f.step(id);
    const close = { nodeId: 3, instruction: { close_region: { region_id: REGION, destroy: true, peer_id: '3' } } };
    expect(f.sentKinds()).to.deep.equal(['close_region@3', 'open_region@3', 'change_peer@2']);
    expect(f.sent[0]).to.deep.equal(close);
    f.sent.length = 0;
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sentKinds(), 'the resend').to.deep.equal(['close_region@3', 'open_region@3', 'change_peer@2']);
    expect(f.sent[0]).to.deep.equal(close);
  });

  it('not in place: no close is sent with the open', () => {
    const { f, id } = repair('add-learner');
    leaderReports(f, [1, 2, 3]);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4', 'change_peer@2']);
  });
});

describe('repair-replica / add-learner', () => {
  it('success: opens the new replica and asks the leader to add it as a learner; next catch-up once the leader counts it', () => {
    const { f, id, record } = repair('add-learner');
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4', 'change_peer@2']);
    expect(f.sent[1]!.instruction).to.deep.equal({
      change_peer: { region_id: REGION, change: 'add-learner', peer: { peer_id: '4', node_id: '4', addr: '127.0.0.1:7004' } },
    });
    f.step(id);
    expect(f.sent, 'not re-sent within the interval').to.have.length(2);
    leaderReports(f, [1, 2, 3], [4]);
    f.step(id);
    expect(record().step).to.equal('catch-up');
    expect(record().lastSentMs, 'the re-send time is per step').to.equal(0);
    f.step(id);
    expect(f.sentKinds(), 'catch-up re-opens the silent new replica at once').to.deep.equal(['open_region@4', 'change_peer@2', 'open_region@4']);
  });

  it('retryable: without a leader it waits, noting why, and sends nothing', () => {
    const { f, id, record } = repair('add-learner');
    f.kill(2);
    f.step(id);
    expect(record().notes.at(-1)).to.equal('waiting for a leader');
    expect(f.sent).to.deep.equal([]);
  });

  it('fatal: a record at this step with no new peer allocated', () => {
    const { f, id, record } = repair('add-learner', { newPeerId: undefined, newNodeId: undefined });
    f.step(id);
    expect(record()).to.include({ status: 'failed', error: 'no new peer allocated (the record skipped allocate)' });
  });

  // A catalog copy taken at this step (peer 4 placed), restored (`meta seed`, a single metasrv
  // from an older disk) after the group added peer 4, promoted it, removed peer 3 and replaced
  // peer 4 by peer 9 in another repair: the group is 1, 2, 9 at 60.
  it('a new peer the group has added, promoted and replaced since (a catalog copy taken at add-learner) is not opened or added again: failed, nothing sent (review N, Y5\'s neighbour)', () => {
    const { f, id, record } = repair('add-learner');
    f.region().confIndex = 20;
    f.report(1, replica(1, { voters: [1, 2, 9], confIndex: 60 }));
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 9], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds(), 'open_region of a peer id that voted, and its AddLearner').to.deep.equal([]);
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(/it counts peer 9, allocated after the new peer 4/);
  });

  // Review of N1: the failed step left peer 4's placement, and heartbeat reconciliation told node 4
  // to open it (empty, bootstrap=false, under an id that voted) on every heartbeat: R2 leaves the
  // region alone when the catalog's conf index (over-stated by a snapshot) is at or above the group's.
  it('the same with the catalog\'s conf index over-stated: the new peer\'s placement is dropped, so reconciliation does not open it, with the leader reporting or not (failed before: open 4@4)', () => {
    const { f, id, record } = repair('add-learner');
    f.region().confIndex = 101;
    f.report(1, replica(1, { voters: [1, 2, 9], confIndex: 60 }));
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 9], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(record().status).to.equal('failed');
    const r2 = reconcileCatalog(f.catalog, liveReports(f), new Set());
    expect(r2.adopt, 'R2 leaves the region alone').to.deep.equal([]);
    expect(reconciliationOpens(f, 4)).to.deep.equal([]);
    f.kill(2); // no leader reports: reconciliation has nothing to judge the placement by
    expect(reconciliationOpens(f, 4), 'peer 4 opened with no leader reporting').to.deep.equal([]);
    expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`)).to.deep.equal(['1@1', '2@2', '3@3']);
    expect(record().error).to.match(/its placement on node 4 dropped/);
  });

  // M31 (sim seed 2920): a catalog restored from an older copy placed 1@1, 2@2, 3@3; a lost
  // replica's repair allocated peer 12 and reached this step while the group (voters 1, 2, 10)
  // was led by peer 10, which the copy does not place. The step took only a placed peer's report
  // for a leader and waited "for a leader" for good; R2, which would have placed peer 10, waits for
  // no procedure to hold the region. Now the group's leader is seen, the group is seen to have
  // gone on (it no longer counts the old peer) and the repair yields to R2.
  it('a group led by a peer the catalog does not place (a catalog behind its group) is seen: the group went on without the old peer, so the repair fails, sending nothing, and R2 adopts the group (M31, sim seed 2920)', () => {
    const { f, id, record } = repair('add-learner', { newPeerId: 12, newNodeId: 4 });
    groupBeyondCatalog(f);
    expect(reconcileCatalog(f.catalog, liveReports(f), new Set([REGION])).adopt, 'R2 leaves a region a procedure holds alone').to.deep.equal([]);
    f.step(id);
    expect(record().notes, 'no leader the catalog places').to.not.include('waiting for a leader');
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(/the leader on node 5 has 1,2,10 at conf index 268: it no longer counts the old peer 3/);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`), "the new peer's placement dropped").to.deep.equal(['1@1', '2@2', '3@3']);
    const r2 = reconcileCatalog(f.catalog, liveReports(f), new Set());
    expect(r2.adopt.map((a) => ({ regionId: a.regionId, replicas: a.replicas.map((p) => `${p.peerId}@${p.nodeId}`), confIndex: a.confIndex }))).to.deep.equal([
      { regionId: REGION, replicas: ['1@1', '2@2', '10@5'], confIndex: 268 },
    ]);
  });

  it('a leader the catalog does not place, of a group that still counts the old peer, is the one asked to add the learner; with a leader the catalog places, that one as before (M31)', () => {
    const { f, id } = repair('add-learner', { newPeerId: 12, newNodeId: 4 });
    groupBeyondCatalog(f, [1, 2, 3, 10]);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4', 'change_peer@5']);
    const placed = repair('add-learner', { newPeerId: 12, newNodeId: 4 });
    groupBeyondCatalog(placed.f, [1, 2, 3, 10]);
    placed.f.report(5, replica(10, { voters: [1, 2, 3, 10], confIndex: 268, term: 3 }));
    placed.f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3, 10], confIndex: 268, term: 3 }));
    placed.f.step(placed.id);
    expect(placed.f.sentKinds()).to.deep.equal(['open_region@4', 'change_peer@2']);
  });

  it("a normal repair's new peer is opened by reconciliation as by the step, before and after the leader adds it (R5 does not hold it)", () => {
    const { f, id } = repair('add-learner');
    expect(reconciliationOpens(f, 4)).to.deep.equal(['open 4@4']);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4', 'change_peer@2']);
    leaderReports(f, [1, 2, 3], [4]);
    expect(reconciliationOpens(f, 4)).to.deep.equal(['open 4@4']);
  });

  it('the same when the group still counts the new peer\'s successor only (peer 4 promoted, peer 3 removed, peer 4 removed; its successor not added yet): the old peer is gone', () => {
    const { f, id, record } = repair('add-learner');
    f.region().confIndex = 20;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(/it no longer counts the old peer 3/);
  });

  it('a new peer given up after it was added (Y6) and its successor added as a learner, the old peer still in: failed, nothing sent', () => {
    const { f, id, record } = repair('add-learner');
    f.region().confIndex = 20;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], learners: [5], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(/it counts peer 5, allocated after the new peer 4/);
  });

  it('a leader reporting a newer conf index with the same membership (reopened from, or installed, a snapshot: the index over-states) is not taken for a change: sent as before', () => {
    // Sim seed 148 with `drain` and the metasrv: the leader reported 8, then 66, the catalog 101,
    // with voters 1, 2, 3 throughout; a rule on conf indexes failed two repairs and held a third.
    const { f, id, record } = repair('add-learner');
    f.region().confIndex = 101;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 166 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4', 'change_peer@2']);
    f.clock.advance(RESEND_AFTER_MS);
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 66 }));
    f.step(id);
    expect(f.sentKinds(), 'nor an older one for a reason to wait').to.deep.equal(['open_region@4', 'change_peer@2', 'open_region@4', 'change_peer@2']);
    expect(record()).to.include({ status: 'running', step: 'add-learner' });
  });

  it('resume: the leader added the learner but the metasrv crashed before seeing it: the re-run moves on without re-sending', () => {
    const { f, id, record } = repair('add-learner');
    f.stepThenCrash(id);
    leaderReports(f, [1, 2, 3], [4]);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().step).to.equal('catch-up');
  });
});

describe('repair-replica / catch-up', () => {
  it('success: waits until the new replica has applied close to the leader\'s commit; next promote', () => {
    const { f, id, record } = repair('catch-up');
    leaderReports(f, [1, 2, 3], [4]);
    f.report(4, replica(4, { appliedIndex: 10 }));
    f.step(id);
    expect(record().step).to.equal('catch-up');
    f.report(4, replica(4, { appliedIndex: 40 }));
    f.step(id);
    expect(record().step).to.equal('promote');
    expect(record().notes.at(-1)).to.equal('caught up at 40');
  });

  it('retryable: a new replica that does not report is opened again, once per interval; no leader is noted', () => {
    const { f, id, record } = repair('catch-up');
    leaderReports(f, [1, 2, 3], [4]);
    f.step(id);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4']);
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['open_region@4', 'open_region@4']);
    f.kill(2);
    f.step(id);
    expect(record().notes.at(-1)).to.equal('waiting for a leader');
  });

  it('a learner that does not hear the leader counting it (a leader that learnt the membership from a raft snapshot has no address for it) is added again, once per interval, after an interval in the step (P1)', () => {
    // Sim engine seed 15 with drain,metarestore,corrupt,wipe at 068aa02: the drained node's
    // replica installed a snapshot naming learner 6, was elected, and dropped every message to
    // it ("no address for raft peer"); the learner stayed at its old term and this step waited for good.
    const { f, id, record } = repair('catch-up');
    leaderReports(f, [1, 2, 3], [4]);
    f.report(4, replica(4, { term: 1, leaderNodeId: 0, appliedIndex: 10 }));
    f.step(id);
    expect(f.sentKinds(), 'not within the first interval: a new learner may not have heard the leader yet').to.deep.equal([]);
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['change_peer@2']);
    expect(f.sent.at(-1)?.instruction).to.deep.equal({
      change_peer: { region_id: REGION, change: 'add-learner', peer: { peer_id: '4', node_id: '4', addr: '127.0.0.1:7004' } },
    });
    expect(record().notes.at(-1)).to.equal('new peer 4 does not hear the leader on node 2: added again');
    expect(record().step).to.equal('catch-up');
    // Once it hears the leader it catches up as before, and nothing more is sent.
    f.report(4, replica(4, { appliedIndex: 20 }));
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['change_peer@2']);
    f.report(4, replica(4, { appliedIndex: 50 }));
    f.step(id);
    expect(record().step).to.equal('promote');
  });

  it('fatal: a record at this step with no new peer allocated', () => {
    const { f, id, record } = repair('catch-up', { newPeerId: undefined, newNodeId: undefined });
    f.step(id);
    expect(record().status).to.equal('failed');
  });

  it('a new replica whose node is down for replica_repair_after_ms is given up: the learner removed, its placement dropped, another node chosen (review Y6)', () => {
    const { f, id, record } = repair('catch-up', { learnerAtConfIndex: 3 });
    f.catalog.nodes[5] = { nodeId: 5, addr: '127.0.0.1:7005', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
    f.alive.add(5);
    leaderReports(f, [1, 2, 3], [4]);
    f.kill(4);
    f.step(id);
    expect(record().step, 'not yet: down for less than replica_repair_after_ms').to.equal('catch-up');
    f.clock.advance(f.repairAfterMs);
    f.sent = [];
    f.step(id);
    expect(f.sent.map((s) => s.instruction), 'the learner on the dead node removed').to.deep.equal([
      { change_peer: { region_id: REGION, change: 'remove', peer: { peer_id: '4', node_id: '4', addr: '127.0.0.1:7004' } } },
    ]);
    expect(record().step).to.equal('catch-up');
    leaderReports(f, [1, 2, 3]);
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 5 }));
    f.step(id);
    expect(record().step).to.equal('allocate');
    expect(record().data.newPeerId).to.equal(undefined);
    expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`)).to.deep.equal(['1@1', '2@2', '3@3']);
    f.step(id);
    expect(record().step).to.equal('add-learner');
    expect(record().data).to.include({ newPeerId: 5, newNodeId: 5 });
  });

  it('a new peer its live node never opens (the node holds another replica of the region closed on its disk and refuses the open, M24) is given up after NEW_REPLICA_OPEN_WAIT_MS: removed, placed anew, never on that node again (M37, sim register seed 2505)', () => {
    const { f, id, record } = repair('catch-up', { learnerAtConfIndex: 3 });
    f.catalog.nodes[5] = { nodeId: 5, addr: '127.0.0.1:7005', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
    f.alive.add(5);
    f.reports.set(5, new Map());
    leaderReports(f, [1, 2, 3], [4]);
    // Node 4 is alive and beats, but never reports peer 4: every open of it is refused there.
    f.step(id);
    f.clock.advance(NEW_REPLICA_OPEN_WAIT_MS - 1);
    f.step(id);
    expect(record().step, 'not yet: a live node is given the whole wait').to.equal('catch-up');
    expect(f.sentKinds().every((k) => k === 'open_region@4'), 'only the open, re-sent').to.equal(true);
    f.clock.advance(1);
    f.step(id);
    expect(record().notes.at(-1)).to.match(/new peer 4 on node 4 is never opened by its live node 4 in 12 s/);
    f.clock.advance(RESEND_AFTER_MS); // (the open went out a millisecond ago: instructions go once per interval)
    f.sent = [];
    f.step(id);
    expect(f.sent.map((s) => s.instruction), 'the learner its node never opened removed').to.deep.equal([
      { change_peer: { region_id: REGION, change: 'remove', peer: { peer_id: '4', node_id: '4', addr: '127.0.0.1:7004' } } },
    ]);
    expect(record().notes.at(-1)).to.match(/never opened by its live node 4 in 15 s/);
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 5 }));
    f.sent = [];
    f.step(id);
    expect(record().step).to.equal('allocate');
    expect(f.sent.map((s) => s.instruction), 'whatever node 4 holds of the given-up peer deleted by name (2548: opened once, then closed, it refused the next new peer)').to.deep.equal([
      { close_region: { region_id: REGION, destroy: true, peer_id: '4' } },
    ]);
    expect(record().data.unopenedOn).to.deep.equal([4]);
    expect(f.region().replicas.map((p) => `${p.peerId}@${p.nodeId}`)).to.deep.equal(['1@1', '2@2', '3@3']);
    f.step(id);
    expect(record().step).to.equal('add-learner');
    expect(record().data, 'another node: not the one that never opened its peer').to.include({ newPeerId: 5, newNodeId: 5 });
  });

  it('with no node left but one where a new peer never opened, allocate places the next one there again, saying why (M37; waiting would wait for good: register seed 2548)', () => {
    const { f, id, record } = repair('allocate', { unopenedOn: [4] });
    f.step(id);
    expect(record().step).to.equal('add-learner');
    expect(record().data).to.include({ newPeerId: 4, newNodeId: 4 });
    expect(record().data.unopenedOn, 'forgotten: the next give-up starts the list again').to.equal(undefined);
    expect(record().notes.at(-1)).to.equal(
      'new peer 4 on node 4 (again where a new peer never opened: no other node can take it; a closed replica of the region on that disk would keep it from opening — move it aside)',
    );
  });

  it('a record written with unopenedOn reads back; one whose unopenedOn is not a list of node ids is unreadable (M37)', () => {
    expect(checkData('repair-replica', { regionId: REGION, oldPeerId: 3, oldNodeId: 3, unopenedOn: [4, 5] })).to.equal(undefined);
    expect(checkData('repair-replica', { regionId: REGION, oldPeerId: 3, oldNodeId: 3, unopenedOn: ['4'] })).to.be.a('string');
  });

  it('a new peer whose placement is marked lost after add-learner (its node registered a new store) is given up at catch-up: removed, placement dropped, placed anew — never caught up, promoted and later deleted in place while it leads (M30, sim seed 2389)', () => {
    const { f, id, record } = repair('catch-up', { learnerAtConfIndex: 3 });
    f.catalog.nodes[5] = { nodeId: 5, addr: '127.0.0.1:7005', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
    f.alive.add(5);
    leaderReports(f, [1, 2, 3], [4]);
    f.region().replicas.find((p) => p.peerId === 4)!.lost = 'new store store-4-2 registered';
    f.sent = [];
    f.step(id);
    expect(f.sent.map((s) => s.instruction), 'the learner removed, not opened').to.deep.equal([
      { change_peer: { region_id: REGION, change: 'remove', peer: { peer_id: '4', node_id: '4', addr: '127.0.0.1:7004' } } },
    ]);
    expect(record().notes.at(-1)).to.include('is marked lost (new store store-4-2 registered)');
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 5 }));
    f.step(id);
    expect(record().step).to.equal('allocate');
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 3]);
  });

  it('a dead new node given up waits for a just-elected leader that does not count the learner yet (its conf index older than the addition): the placement stays (review of Y6)', () => {
    const { f, id, record } = repair('catch-up', { learnerAtConfIndex: 20 });
    f.region().confIndex = 20;
    f.kill(4);
    f.clock.advance(f.repairAfterMs);
    // A new leader that has not applied the addition yet (conf index 12 < 20): it will count the peer later.
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 12 }));
    f.step(id);
    expect(record().step).to.equal('catch-up');
    expect(record().data.newPeerId, 'the placement is kept').to.equal(4);
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 3, 4]);
    // Once it counts the learner, it is asked to remove it; once removed (a newer conf index), the placement goes.
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], learners: [4], confIndex: 20 }));
    f.sent = [];
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['change_peer@2']);
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 21 }));
    f.step(id);
    expect(record().step).to.equal('allocate');
  });

  it('resume: the learner removed, the metasrv crashed before its save: the re-run drops the placement once and allocates', () => {
    const { f, id, record } = repair('catch-up', { learnerAtConfIndex: 3 });
    leaderReports(f, [1, 2, 3], [4]);
    f.kill(4);
    f.clock.advance(f.repairAfterMs);
    f.step(id); // the remove sent
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 5 })); // the group removed it
    f.stepThenCrash(id);
    expect(record().step).to.equal('catch-up');
    expect(f.region().replicas).to.have.length(4);
    f.step(id);
    expect(record().step).to.equal('allocate');
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 3]);
  });

  it('a new peer the group has removed since it was added is not opened again (empty, under a peer id that voted): failed, nothing sent (review Y5)', () => {
    const { f, id, record } = repair('catch-up', { learnerAtConfIndex: 20 });
    f.region().confIndex = 20;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 9], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(record().status).to.equal('failed');
  });

  it('resume: re-run from the saved record it re-derives progress from the reports', () => {
    const { f, id, record } = repair('catch-up');
    leaderReports(f, [1, 2, 3], [4]);
    f.report(4, replica(4, { appliedIndex: 45 }));
    f.stepThenCrash(id);
    expect(record().step).to.equal('catch-up');
    f.step(id);
    expect(record().step).to.equal('promote');
  });
});

describe('repair-replica / promote', () => {
  it('success: asks the leader to promote the learner; next remove-old once it is a voter', () => {
    const { f, id, record } = repair('promote');
    leaderReports(f, [1, 2, 3], [4]);
    f.step(id);
    expect(f.sent[0]!.instruction).to.have.property('change_peer').that.deep.includes({ change: 'promote' });
    leaderReports(f, [1, 2, 3, 4]);
    f.step(id);
    expect(record().step).to.equal('remove-old');
  });

  it('retryable: without a leader it waits and sends nothing', () => {
    const { f, id, record } = repair('promote');
    f.kill(2);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().notes.at(-1)).to.equal('waiting for a leader');
  });

  it('fatal: a record at this step with no new peer allocated', () => {
    const { f, id, record } = repair('promote', { newPeerId: undefined, newNodeId: undefined });
    f.step(id);
    expect(record().status).to.equal('failed');
  });

  it('a new peer the group has removed since it was added (a catalog copy older than the group) is not promoted again: failed, nothing sent (review Y5)', () => {
    // The copy was taken at this step (the catalog matched the group with the learner at conf
    // index 20); since then peer 4 was promoted, peer 3 removed, and another repair replaced
    // peer 4 by peer 9: the group is 1, 2, 9 at conf index 60.
    const { f, id, record } = repair('promote', { learnerAtConfIndex: 20 });
    f.region().confIndex = 20;
    f.report(1, replica(1, { voters: [1, 2, 9], confIndex: 60 }));
    leaderReports(f, [1, 2, 9]);
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 9], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds(), 'AddVoter of a removed peer id: a voter that does not exist').to.deep.equal([]);
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(/the group removed the new peer 4/);
    // N1's left item (f): its placement goes too (failed before: [1, 2, 3, 4] — reconciliation
    // would open peer 4, empty, whenever no report counts an id above it).
    expect(f.region().replicas.map((p) => p.peerId), "the removed new peer's placement").to.deep.equal([1, 2, 3]);
  });

  it('the same from a record without the learner\'s conf index (written before it was kept): judged against the catalog\'s', () => {
    const { f, id, record } = repair('promote');
    f.region().confIndex = 20;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 9], confIndex: 60 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(record().status).to.equal('failed');
  });

  it('a leader that does not count the learner yet (elected, the add not applied yet: an older conf index) is waited for, not failed', () => {
    const { f, id, record } = repair('promote', { learnerAtConfIndex: 20 });
    f.region().confIndex = 20;
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], confIndex: 12 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal([]);
    expect(record()).to.include({ status: 'running', step: 'promote' });
    f.report(2, replica(2, { role: 'leader', voters: [1, 2, 3], learners: [4], confIndex: 20 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['change_peer@2']);
  });

  it('resume: promoted while the metasrv was down: the re-run moves on without re-sending', () => {
    const { f, id, record } = repair('promote');
    f.stepThenCrash(id);
    leaderReports(f, [1, 2, 3, 4]);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().step).to.equal('remove-old');
  });
});

describe('repair-replica / remove-old', () => {
  it('success: asks the leader to remove the old peer; the catalog drops it once the group has', () => {
    const { f, id, record } = repair('remove-old');
    leaderReports(f, [1, 2, 3, 4]);
    f.step(id);
    expect(f.sent[0]!.instruction).to.deep.equal({
      change_peer: { region_id: REGION, change: 'remove', peer: { peer_id: '3', node_id: '3', addr: '127.0.0.1:7003' } },
    });
    leaderReports(f, [1, 2, 4]);
    f.step(id);
    expect(record().step).to.equal('cleanup');
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 4]);
  });

  it('retryable: without a leader it waits; an old peer that leads is first asked to hand leadership to the new one', () => {
    const { f, id, record } = repair('remove-old');
    f.kill(2);
    f.step(id);
    expect(record().notes.at(-1)).to.equal('waiting for a leader');
    f.alive.add(3);
    f.report(3, replica(3, { role: 'leader', term: 3, voters: [1, 2, 3, 4] }));
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 3, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '4' } } }]);
    expect(f.region().replicas).to.have.length(4);
  });

  it('records the conf index of the membership it placed: an older report (a removed peer elected before it heard of its removal) does not put the peer back', () => {
    // Sim seed 84 with `drain` (docs/simulation.md): the catalog last matched the group at 120;
    // the leader commits the removal of peer 3 at 143 and reports it; remove-old drops peer 3.
    const { f, id, record } = repair('remove-old');
    f.region().confIndex = 120;
    leaderReports(f, [1, 2, 4]);
    f.reports.get(2)!.set(REGION, replica(2, { role: 'leader', voters: [1, 2, 4], confIndex: 143 }));
    f.step(id);
    f.step(id); // cleanup: node 3 is down, nothing to delete
    expect(record().status).to.equal('done');
    f.crash(); // what the metasrv saved
    // Peer 3 is back, never heard of the commit, and is elected: it reports {1, 2, 3, 4} at 134.
    f.alive.add(3);
    f.report(3, replica(3, { role: 'leader', term: 3, leaderNodeId: 3, voters: [1, 2, 3, 4], confIndex: 134 }));
    f.report(2, replica(2, { term: 3, leaderNodeId: 3, voters: [1, 2, 4], confIndex: 143 }));
    const result = reconcileCatalog(f.catalog, f.reports, new Set());
    expect(result.adopt, 'the older membership is not adopted').to.deep.equal([]);
    expect(f.region().confIndex).to.equal(143);
    // The group's own later report of the removal matches the catalog as it is.
    f.report(3, replica(3, { role: 'leader', term: 3, leaderNodeId: 3, voters: [1, 2, 4], confIndex: 143 }));
    expect(reconcileCatalog(f.catalog, f.reports, new Set()).adopt).to.deep.equal([]);
  });

  /**
   * The catalog still places peer 1, which the group replaced by peer 5 (on node 1) before the
   * catalog heard of it; the repair of peer 3 runs meanwhile, and the group removes peer 3 at 150:
   * remove-old leaves peers 1, 2, 4 placed.
   */
  function removeOldWithCatalogBehind() {
    const { f, id, record } = repair('remove-old');
    f.region().confIndex = 120;
    f.report(1, replica(5, { voters: [2, 4, 5], confIndex: 150 }));
    f.report(2, replica(2, { role: 'leader', voters: [2, 4, 5], confIndex: 150 }));
    f.step(id);
    expect(record().step).to.equal('cleanup');
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 4]);
    return f;
  }

  it("records the leader's conf index only with a placement that is the leader's membership: a catalog behind in another peer is still adopted by R2", () => {
    const f = removeOldWithCatalogBehind();
    // Had remove-old recorded 150 with peers 1, 2, 4, R2 would take the catalog for as new as the
    // group and leave it so ("left alone") until the group's next membership change.
    const result = reconcileCatalog(f.catalog, f.reports, new Set());
    expect(result.adopt.map((a) => [a.replicas.map((p) => `${p.peerId}@${p.nodeId}`), a.confIndex]), JSON.stringify([...result.problems])).to.deep.equal([[['2@2', '4@4', '5@1'], 150]]);
  });

  it('with a catalog behind in another peer, an older report of the removed peer elected before it heard of its removal still does not put it back (M21 with M23)', () => {
    // As above, but the leader that committed the removal at 150 crashes before the others learn
    // of the commit, and peer 3 (still holding the removal uncommitted) is elected and reports
    // the membership before it, {2, 3, 4, 5} at 145.
    const f = removeOldWithCatalogBehind();
    f.alive.add(3);
    f.report(2, replica(2, { term: 3, leaderNodeId: 3, voters: [2, 3, 4, 5], confIndex: 145 }));
    f.report(1, replica(5, { term: 3, leaderNodeId: 3, voters: [2, 3, 4, 5], confIndex: 145 }));
    f.report(3, replica(3, { role: 'leader', term: 3, leaderNodeId: 3, voters: [2, 3, 4, 5], confIndex: 145 }));
    const result = reconcileCatalog(f.catalog, f.reports, new Set());
    expect(result.adopt, 'the membership before the removal is not adopted').to.deep.equal([]);
    // Once the group applies the removal (150), R2 adopts its membership.
    f.report(3, replica(3, { role: 'leader', term: 3, leaderNodeId: 3, voters: [2, 4, 5], confIndex: 150 }));
    const later = reconcileCatalog(f.catalog, f.reports, new Set());
    expect(later.adopt.map((a) => [a.replicas.map((p) => `${p.peerId}@${p.nodeId}`), a.confIndex]), JSON.stringify([...later.problems])).to.deep.equal([[['2@2', '4@4', '5@1'], 150]]);
  });

  it('fatal: a record at this step with no new peer allocated', () => {
    const { f, id, record } = repair('remove-old', { newPeerId: undefined, newNodeId: undefined });
    f.step(id);
    expect(record().status).to.equal('failed');
  });

  it('resume: a crash after the catalog dropped the peer but before the save: the re-run drops it again, once', () => {
    const { f, id, record } = repair('remove-old');
    leaderReports(f, [1, 2, 4]);
    f.stepThenCrash(id);
    expect(f.region().replicas).to.have.length(4);
    expect(f.region().confVersion).to.equal(1);
    f.step(id);
    f.crash();
    expect(record().step).to.equal('cleanup');
    expect(f.region().replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 4]);
    expect(f.region().confVersion).to.equal(2);
  });
});

/** As remove-old leaves it: the leader and voter 1 applied the removal of peer 3 (R16's 4 → 3 window checks that before a delete). */
function removalApplied(f: FakeCluster) {
  leaderReports(f, [1, 2, 4]);
  f.report(1, replica(1, { voters: [1, 2, 4] }));
}

describe('repair-replica / cleanup', () => {
  it('success: a reachable old node is told to delete its replica; done', () => {
    const { f, id, record } = repair('cleanup');
    removalApplied(f);
    f.alive.add(3);
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 3, instruction: { close_region: { region_id: REGION, destroy: true, peer_id: '3' } } }]);
    expect(record().status).to.equal('done');
  });

  it('retryable: none; a down old node is not waited for (reconciliation deletes the replica when it returns)', () => {
    const { f, id, record } = repair('cleanup');
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().status).to.equal('done');
  });

  it('resume: a crash before the save sends the delete again (deleting twice is harmless)', () => {
    const { f, id, record } = repair('cleanup');
    removalApplied(f);
    f.alive.add(3);
    f.stepThenCrash(id);
    expect(record().status).to.equal('running');
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['close_region@3']);
    expect(record().status).to.equal('done');
  });
});
