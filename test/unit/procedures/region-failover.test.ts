// region-failover's step against the fake metasrv (test/support/fake-procedure-context.ts):
// success, retryable failure, fatal failure, and resume after a crash mid-step.
import { expect } from 'chai';
import { CAMPAIGN_GRACE_MS, GIVE_UP_MS } from '../../../src/metasrv/procedures/region-failover.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

/** Node 2, the leader of REGION, stops heartbeating; a failover for it starts. */
function leaderDown() {
  const f = new FakeCluster();
  f.kill(2);
  const { id } = f.start('region-failover', { nodeId: 2 });
  return { f, id, record: () => f.procedure(id, 'region-failover') };
}

describe('region-failover / ensure-leaders', () => {
  it('success: done once a live replica reports itself leader; the route follows', () => {
    const { f, id, record } = leaderDown();
    f.report(1, replica(1, { role: 'leader', term: 3 }));
    f.step(id);
    expect(record().status).to.equal('done');
    expect(f.region().leaderNodeId).to.equal(1);
    expect(f.sent).to.deep.equal([]);
  });

  it('success: the failed node came back and its replica leads again (its fresh reports count): done, not failed after the give-up time', () => {
    const { f, id, record } = leaderDown();
    f.step(id);
    expect(record().status, 'leaderless while node 2 is down').to.equal('running');
    f.alive.add(2); // restarted: heartbeating again
    f.report(2, replica(2, { role: 'leader', term: 4 }));
    f.step(id);
    expect(record().status).to.equal('done');
    expect(f.region().leaderNodeId).to.equal(2);
  });

  it('retryable: while leaderless it waits, then asks the most up-to-date live replica to campaign, at most once per re-send interval', () => {
    const { f, id, record } = leaderDown();
    f.report(3, replica(3, { appliedIndex: 60 }));
    f.step(id);
    expect(record()).to.include({ status: 'running', step: 'ensure-leaders' });
    expect(record().data.leaderless).to.deep.equal([REGION]);
    expect(f.sent, 'raft gets its grace period first').to.deep.equal([]);
    f.clock.advance(CAMPAIGN_GRACE_MS + 1);
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 3, instruction: { campaign: { region_id: REGION } } }]);
    expect(record().notes.at(-1)).to.match(/asked live replicas of 1 region/);
    f.step(id);
    expect(f.sent, 'not re-sent within the interval').to.have.length(1);
    f.report(3, replica(3, { role: 'leader', term: 3 }));
    f.step(id);
    expect(record().status).to.equal('done');
    expect(f.region().leaderNodeId).to.equal(3);
  });

  it('retryable: when the metasrv wall clock steps back 10 minutes, the campaign nudge still goes out after the grace period, not once the clock caught up (finding M33)', () => {
    const { f, id } = leaderDown();
    f.stepAcrossClockStepBack(id, CAMPAIGN_GRACE_MS + 1);
    expect(f.sentKinds()).to.deep.equal(['campaign@1']);
  });

  it('fatal: still leaderless after the give-up time, it fails naming the regions', () => {
    const { f, id, record } = leaderDown();
    f.clock.advance(GIVE_UP_MS + 1);
    f.step(id);
    expect(record().status).to.equal('failed');
    expect(record().error).to.match(new RegExp(`regions ${REGION} still have no live leader`));
    expect(f.step(id), 'a failed procedure is not run again').to.equal(false);
  });

  it('resume: a crash after the campaign was queued but before the save re-sends it from the saved record', () => {
    const { f, id, record } = leaderDown();
    f.clock.advance(CAMPAIGN_GRACE_MS + 1);
    f.stepThenCrash(id);
    expect(f.sent).to.deep.equal([]);
    expect(record()).to.include({ step: 'ensure-leaders', status: 'running', lastSentMs: 0 });
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['campaign@1']);
    // The election happened while the metasrv was down: the re-run just confirms it.
    f.crash();
    f.report(1, replica(1, { role: 'leader', term: 3 }));
    f.step(id);
    expect(record().status).to.equal('done');
  });
});
