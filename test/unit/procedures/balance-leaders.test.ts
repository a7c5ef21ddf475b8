// balance-leaders' steps against the fake metasrv: success, retryable failure, fatal failure,
// and resume after a crash mid-step. (A step that throws fails its procedure: steps.test.ts.)
import { expect } from 'chai';
import { makeRegionId } from '../../../src/metasrv/catalog.js';
import { ELECTION_WAIT_MS, MAX_MOVES, MOVE_TIMEOUT_MS } from '../../../src/metasrv/procedures/balance-leaders.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

const R2 = makeRegionId(1024, 1);

/** Nodes 1..3 (4 is down); node 2 leads both regions, so one leadership should move (to node 3). */
function unbalanced() {
  const f = new FakeCluster();
  f.kill(4);
  f.catalog.regions[R2] = { ...f.region(), regionId: R2, regionNumber: 1, replicas: [{ peerId: 11, nodeId: 1 }, { peerId: 12, nodeId: 2 }, { peerId: 13, nodeId: 3 }] };
  f.report(1, replica(11, { regionId: R2, voters: [11, 12, 13] }));
  f.report(2, replica(12, { regionId: R2, role: 'leader', voters: [11, 12, 13] }));
  f.report(3, replica(13, { regionId: R2, voters: [11, 12, 13] }));
  const { id } = f.start('balance-leaders', {});
  return { f, id, record: () => f.procedure(id, 'balance-leaders') };
}

describe('balance-leaders / plan', () => {
  it('success: plans one transfer from the most to the least loaded node; next move', () => {
    const { f, id, record } = unbalanced();
    f.step(id);
    expect(record().step).to.equal('move');
    expect(record().data).to.deep.equal({ regionId: REGION, target: 3, targetPeer: 3, moves: 1 });
    expect(f.sent).to.deep.equal([]);
  });

  it('retryable: none; balanced (or too few live nodes) it is done', () => {
    const { f, id, record } = unbalanced();
    f.report(3, replica(13, { regionId: R2, role: 'leader', term: 3, voters: [11, 12, 13] }));
    f.step(id);
    expect(record().status).to.equal('done');
    expect(record().notes.at(-1)).to.match(/^balanced: /);
  });

  it('retryable: a region still electing (no leader reported) is waited for, not counted as led by nobody', () => {
    const { f, id, record } = unbalanced();
    // Right after a table is created nobody leads yet: 0/0/0 must not read as "balanced".
    f.report(2, replica(2));
    f.report(2, replica(12, { regionId: R2, voters: [11, 12, 13] }));
    f.step(id);
    expect(record()).to.include({ status: 'running', step: 'plan' });
    f.clock.advance(ELECTION_WAIT_MS / 2);
    f.report(2, replica(2, { role: 'leader', term: 3 }));
    f.report(2, replica(12, { regionId: R2, role: 'leader', term: 3, voters: [11, 12, 13] }));
    f.step(id);
    expect(record().step, 'both led by node 2 now: a move is planned').to.equal('move');
  });

  it('retryable: a region that finds no leader within the election wait is named, and the rest are balanced', () => {
    const { f, id, record } = unbalanced();
    f.report(2, replica(12, { regionId: R2, voters: [11, 12, 13] }));
    f.step(id);
    expect(record().status).to.equal('running');
    f.clock.advance(ELECTION_WAIT_MS + 1);
    f.step(id);
    expect(record().status).to.equal('done');
    expect(record().notes.at(-1)).to.match(new RegExp(`^balanced: .*1 region\\(s\\) without a known leader.*${R2}`));
  });

  it('fatal: still unbalanced after the move bound', () => {
    const { f, id, record } = unbalanced();
    record().data.moves = MAX_MOVES;
    f.step(id);
    expect(record()).to.include({ status: 'failed', error: `still unbalanced after ${MAX_MOVES} moves` });
  });

  it('resume: a crash before the save plans the same move again, counted once', () => {
    const { f, id, record } = unbalanced();
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'plan' });
    expect(record().data).to.deep.equal({});
    f.step(id);
    expect(record().data).to.deep.equal({ regionId: REGION, target: 3, targetPeer: 3, moves: 1 });
  });
});

describe('balance-leaders / move', () => {
  function moving() {
    const u = unbalanced();
    u.f.step(u.id);
    return u;
  }

  it('success: asks the leader to transfer; back to plan once the target leads', () => {
    const { f, id, record } = moving();
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 2, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '3' } } }]);
    f.report(3, replica(3, { role: 'leader', term: 3 }));
    f.report(2, replica(2, { term: 3 }));
    f.step(id);
    expect(record().step).to.equal('plan');
    expect(f.region().leaderNodeId).to.equal(3);
    f.step(id);
    expect(record().status, 'one leader each now').to.equal('done');
  });

  it('retryable: with no leader it sends nothing; after the move timeout it plans again', () => {
    const { f, id, record } = moving();
    f.kill(2);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().step).to.equal('move');
    f.clock.advance(MOVE_TIMEOUT_MS + 1);
    f.step(id);
    expect(record().step).to.equal('plan');
    expect(record().notes.at(-1)).to.match(/timed out/);
  });

  it('resume: a crash before the save re-sends the transfer', () => {
    const { f, id, record } = moving();
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'move', lastSentMs: 0 });
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@2']);
  });
});
