// drain-node's steps against the fake metasrv: success, retryable failure, fatal failure, and
// resume after a crash mid-step. (A step that throws fails its procedure: steps.test.ts.)
import { expect } from 'chai';
import { MOVE_LEADERS_TIMEOUT_MS } from '../../../src/metasrv/procedures/drain-node.js';
import { RESEND_AFTER_MS } from '../../../src/metasrv/procedures/procedure.js';
import { runningProcedures } from '../../../src/metasrv/procedures/runner.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

/** Drains node 2 (the leader of REGION), starting at `step`. */
function drain(step: 'mark' | 'move-leaders' | 'move-replicas', nodeId = 2) {
  const f = new FakeCluster();
  const { id } = f.start('drain-node', { nodeId });
  if (step !== 'mark') {
    f.catalog.nodes[nodeId]!.state = 'draining';
    f.procedure(id, 'drain-node').step = step;
    f.save();
  }
  return { f, id, record: () => f.procedure(id, 'drain-node') };
}

describe('drain-node / mark', () => {
  it('success: the node takes no new replicas; next move-leaders', () => {
    const { f, id, record } = drain('mark');
    f.step(id);
    expect(f.catalog.nodes[2]!.state).to.equal('draining');
    expect(record().step).to.equal('move-leaders');
  });

  it('retryable: none; a node that is down is marked all the same', () => {
    const { f, id, record } = drain('mark');
    f.kill(2);
    f.step(id);
    expect(f.catalog.nodes[2]!.state).to.equal('draining');
    expect(record().step).to.equal('move-leaders');
  });

  it('fatal: a node that is not registered', () => {
    const { f, id, record } = drain('mark', 9);
    f.step(id);
    expect(record()).to.include({ status: 'failed', error: 'node 9 is not registered' });
  });

  it('resume: the mark and the step change are saved together; after a crash before the save it marks again', () => {
    const { f, id, record } = drain('mark');
    f.stepThenCrash(id);
    expect(f.catalog.nodes[2]!.state).to.equal('alive');
    expect(record().step).to.equal('mark');
    f.step(id);
    f.crash();
    expect(f.catalog.nodes[2]!.state).to.equal('draining');
    expect(record().step).to.equal('move-leaders');
  });
});

describe('drain-node / move-leaders', () => {
  it('success: asks the node to hand each leadership to a live replica; moves on when it leads nothing', () => {
    const { f, id, record } = drain('move-leaders');
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 2, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '1' } } }]);
    f.report(1, replica(1, { role: 'leader', term: 3 }));
    f.report(2, replica(2, { term: 3 }));
    f.step(id);
    expect(record().step).to.equal('move-replicas');
  });

  it('retryable: with no live replica to take over it sends nothing; once one is back it is asked after the interval; gives up to the repairs after the timeout', () => {
    const { f, id, record } = drain('move-leaders');
    f.kill(1);
    f.kill(3);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().step).to.equal('move-leaders');
    f.alive.add(3);
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 2, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '3' } } }]);
    f.clock.advance(MOVE_LEADERS_TIMEOUT_MS);
    f.step(id);
    expect(record().step).to.equal('move-replicas');
    expect(record().notes.at(-1)).to.match(/did not move; the repairs will move them/);
  });

  it('retryable: leaderships that do not move when the metasrv wall clock steps back 10 minutes are left to the repairs after the timeout, not once the clock caught up (finding M33)', () => {
    const { f, id, record } = drain('move-leaders');
    f.stepAcrossClockStepBack(id, MOVE_LEADERS_TIMEOUT_MS + 1);
    expect(record().step).to.equal('move-replicas');
  });

  it('resume: a crash before the save re-sends the transfers', () => {
    const { f, id, record } = drain('move-leaders');
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'move-leaders', lastSentMs: 0 });
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@2']);
  });
});

describe('drain-node / move-replicas', () => {
  it('success: starts a repair for each replica on the node; done when the catalog places nothing there', () => {
    const { f, id, record } = drain('move-replicas');
    f.step(id);
    const repairs = runningProcedures(f.catalog, 'repair-replica');
    expect(repairs.map((p) => p.data)).to.deep.equal([{ regionId: REGION, oldPeerId: 2, oldNodeId: 2 }]);
    expect(record().status).to.equal('running');
    // The repair finishes: the old peer is out of the catalog.
    f.region().replicas = f.region().replicas.filter((p) => p.nodeId !== 2);
    repairs[0]!.status = 'done';
    f.step(id);
    expect(record()).to.include({ status: 'done' });
  });

  it('retryable: a region another repair is changing is left until that repair ends', () => {
    const { f, id } = drain('move-replicas');
    const other = f.start('repair-replica', { regionId: REGION, oldPeerId: 3, oldNodeId: 3 });
    f.step(id);
    expect(runningProcedures(f.catalog, 'repair-replica').map((p) => p.id)).to.deep.equal([other.id]);
    other.status = 'done';
    f.step(id);
    expect(runningProcedures(f.catalog, 'repair-replica').map((p) => p.data.oldNodeId)).to.deep.equal([2]);
  });

  it('a replica the group already removed (at a configuration newer than the catalog\'s) gets no repair: reconciliation drops it, and the drain ends', () => {
    const { f, id, record } = drain('move-replicas');
    f.region().confIndex = 134;
    f.report(1, replica(1, { role: 'leader', term: 3, leaderNodeId: 1, voters: [1, 3, 4], confIndex: 143 }));
    f.step(id);
    expect(runningProcedures(f.catalog, 'repair-replica')).to.deep.equal([]);
    expect(record().status).to.equal('running');
    f.region().replicas = f.region().replicas.filter((p) => p.nodeId !== 2); // R2's adoption, say
    f.step(id);
    expect(record()).to.include({ status: 'done' });
  });

  it('resume: a crash before the save loses the started repair and it is started again, once; after a save it is not duplicated', () => {
    const { f, id } = drain('move-replicas');
    f.stepThenCrash(id);
    expect(runningProcedures(f.catalog, 'repair-replica')).to.deep.equal([]);
    f.step(id);
    f.crash();
    f.step(id);
    expect(runningProcedures(f.catalog, 'repair-replica')).to.have.length(1);
  });
});
