// transfer-leader's step against the fake metasrv: success, retryable failure, fatal failure,
// and resume after a crash mid-step.
import { expect } from 'chai';
import { RESEND_AFTER_MS } from '../../../src/metasrv/procedures/procedure.js';
import { TRANSFER_TIMEOUT_MS } from '../../../src/metasrv/procedures/transfer-leader.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

function transferTo(nodeId: number, regionId = REGION) {
  const f = new FakeCluster();
  const { id } = f.start('transfer-leader', { regionId, nodeId });
  return { f, id, record: () => f.procedure(id, 'transfer-leader') };
}

describe('transfer-leader / transfer', () => {
  it('success: asks the leader to transfer to the target peer; done when the target reports it leads', () => {
    const { f, id, record } = transferTo(1);
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 2, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '1' } } }]);
    expect(record().status).to.equal('running');
    f.report(1, replica(1, { role: 'leader', term: 3 }));
    f.report(2, replica(2, { term: 3 }));
    f.step(id);
    expect(record().status).to.equal('done');
    expect(f.region().leaderNodeId).to.equal(1);
  });

  it('retryable: with no leader it sends nothing and waits; the next leader is asked, re-sent only after the interval', () => {
    const { f, id, record } = transferTo(1);
    f.kill(2);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().status).to.equal('running');
    f.report(3, replica(3, { role: 'leader', term: 3 }));
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@3']);
    f.step(id);
    expect(f.sent).to.have.length(1);
    f.clock.advance(RESEND_AFTER_MS);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@3', 'transfer_leader@3']);
    expect(record().data, 'the re-send time is the runner\'s, not the kind\'s data').to.deep.equal({ regionId: REGION, nodeId: 1 });
  });

  it('retryable: a metasrv wall clock stepped back does not hold the re-send until it catches up (finding M10)', () => {
    const { f, id } = transferTo(1);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@2']);
    // The instruction was lost; then the metasrv's wall clock steps back 10 minutes (NTP).
    const steppedMs = f.clock.nowMs() - 600_000;
    f.clock.nowMs = () => steppedMs;
    f.step(id);
    expect(f.sentKinds(), 're-sent at once, not 10 minutes later').to.deep.equal(['transfer_leader@2', 'transfer_leader@2']);
    f.step(id);
    expect(f.sent, 'then re-sent only after the interval again').to.have.length(2);
  });

  it('fatal: a transfer waiting when the metasrv wall clock steps back 10 minutes still fails after the timeout, not once the clock caught up (finding M33)', () => {
    const { f, id, record } = transferTo(1);
    f.stepAcrossClockStepBack(id, TRANSFER_TIMEOUT_MS + 1);
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(/did not move within 15000 ms/);
  });

  it('fatal: an unknown region, a node without a replica, or no move within the timeout fails it', () => {
    const a = transferTo(1, '999');
    a.f.step(a.id);
    expect(a.record()).to.include({ status: 'failed', error: 'region 999 does not exist' });
    const b = transferTo(4);
    b.f.step(b.id);
    expect(b.record()).to.include({ status: 'failed', error: `node 4 has no replica of region ${REGION}` });
    const c = transferTo(1);
    c.f.clock.advance(TRANSFER_TIMEOUT_MS + 1);
    c.f.step(c.id);
    expect(c.record().status).to.equal('failed');
    expect(c.record().error).to.match(/did not move within 15000 ms/);
  });

  it('resume: a crash before the save re-sends the lost instruction; a transfer that happened meanwhile is just confirmed', () => {
    const { f, id, record } = transferTo(1);
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'transfer', status: 'running', lastSentMs: 0 });
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@2']);
    f.crash();
    f.report(1, replica(1, { role: 'leader', term: 3 }));
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().status).to.equal('done');
  });
});
