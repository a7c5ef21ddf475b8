// An apply out to the object store (finding E12 in docs/correctness.md) against what can happen
// meanwhile. Both cases were found by the independent review of the first version of the fix and
// fail on it:
//  - a close of the replica landing while a cycle awaits its WAL write with committed entries for
//    it: the close dropped the apply out, and the cycle applied those entries past the gap it
//    left (an assertion, the cycle rejected: the whole datanode stopped as fatal);
//  - a leader whose own removal committed behind its apply out: its core counted the removal
//    applied (advance()), so it took a proposal and appended past its removal — the hole R16
//    closes (docs/raft-rules.md); in a two-voter group whose survivor never heard that the removal
//    committed, the survivor then found no voter to elect it: leaderless for good.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { ConfChangeType } from '../../src/raft/index.js';
import { type RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import type { ConditionalCounter } from '../fixtures/counter-machine.js';
import { type HeldReadsCluster, heldReadsCluster } from '../fixtures/held-reads-cluster.js';

/** A cluster of `nodeIds` with one region opened and started, and its leader. */
async function started(nodeIds: number[], regionId: string, peerBase: number): Promise<{ c: HeldReadsCluster; leader: RegionServer<ConditionalCounter> }> {
  const c = heldReadsCluster(nodeIds);
  await c.openEverywhere(regionId, peerBase);
  for (const s of c.servers.values()) s.start();
  await c.until(() => c.leaderOf(regionId) !== undefined, 'a leader');
  return { c, leader: c.leaderOf(regionId)! };
}

describe('RegionServer: an apply out to the object store, and what happens meanwhile', () => {
  it('a close landing while a cycle awaits its WAL write with committed entries for the replica does not stop the node', async () => {
    const { c, leader } = await started([1, 2, 3], 'r', 40);
    const slow = [...c.servers.values()].find((s) => s !== leader)!;
    c.reads.holding.add(`${slow.nodeId}/r`);
    await c.settled(leader.propose('r', new Uint8Array([0])), 'the conditional write');
    await c.until(() => c.reads.inFlight.has(`${slow.nodeId}/r`), `node ${slow.nodeId}'s read to go out`);
    const replica = slow.replica('r')!;
    let closed = false;
    c.engines.get(slow.nodeId)!.beforeCommit = () => {
      // The ready being written hands out a newly committed entry (the core's applied index lags
      // its commit): close now, as the metasrv's CloseRegion may arrive during any fsync.
      if (closed || !replica.applying || replica.raft.log.committed <= replica.raft.log.applied) return;
      closed = true;
      void slow.close('r', false);
    };
    void leader.propose('r', new Uint8Array([5])).catch(() => undefined);
    await c.until(() => closed, 'the close to land during a write');
    await c.tick(5);
    c.reads.release();
    await c.tick(5);
    expect(slow.fatalError()?.message, 'the datanode stopped as fatal').to.equal(undefined);
    for (const s of c.servers.values()) await s.stop();
  });

  /**
   * Two voters {A leader, B}. A's conditional write and A's own removal commit together (B's
   * acknowledgements let through once both are appended); the write's apply goes out on A (held
   * when `hold`) with the removal waiting behind it. Then every message of A telling B that the
   * removal committed, or carrying a later entry, is lost, and A is asked for a new write.
   */
  async function removalBehindTheApply(hold: boolean): Promise<{ refused: unknown; appendedPastRemoval: boolean; survivorElected: boolean }> {
    const { c, leader: a } = await started([1, 2], 'q', 50);
    const b = [...c.servers.values()].find((s) => s !== a)!;
    const ra = a.replica('q')!;
    c.cut.add(`${b.nodeId}>${a.nodeId}`);
    if (hold) c.reads.holding.add(`${a.nodeId}/q`);
    const write = a.propose('q', new Uint8Array([0])).catch((e: unknown) => e);
    await c.tick(1);
    const removal = a.proposeConfChange('q', { type: ConfChangeType.RemoveNode, nodeId: ra.selfPeerId, context: '' }).catch((e: unknown) => e);
    await c.tick(1);
    const removalIndex = ra.raft.log.lastIndex();
    c.lose.message = (from, m) => from === a.nodeId && (m.commit >= removalIndex || m.entries.some((e) => e.index > removalIndex));
    c.cut.delete(`${b.nodeId}>${a.nodeId}`);
    await c.until(() => ra.raft.log.committed >= removalIndex && (!hold || ra.applying !== undefined), 'the write and the removal committed on A, the write\'s apply out');
    if (hold) expect(ra.applying?.membershipBehind, 'the removal waits behind the apply').to.equal(true);
    let refused: unknown;
    const late = (async () => a.propose('q', new Uint8Array([7])))().catch((e: unknown) => {
      refused = e;
    });
    await c.tick(2);
    const appendedPastRemoval = ra.raft.log.lastIndex() > removalIndex;
    c.reads.release();
    await c.until(() => ra.removed, 'A to apply its removal');
    c.lose.message = undefined;
    let survivorElected = true;
    try {
      await c.until(() => b.replica('q')?.isLeader() === true, 'B elected', 60 * defaultRaftTuning.electionTicks);
    } catch {
      survivorElected = false;
    }
    await Promise.all([write, removal, late]);
    for (const s of c.servers.values()) await s.stop();
    return { refused, appendedPastRemoval, survivorElected };
  }

  it('a leader whose own removal committed behind its apply out takes no proposal (R16): the survivor of a two-voter group is elected', async () => {
    const { refused, appendedPastRemoval, survivorElected } = await removalBehindTheApply(true);
    expect(appendedPastRemoval, 'A appended past its committed removal').to.equal(false);
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `the proposal refused: ${String(refused)}`).to.equal(true);
    expect(survivorElected, 'B elected once the network healed').to.equal(true);
  });

  it('the same without an apply out (control: the core refuses the proposal itself)', async () => {
    const { appendedPastRemoval, survivorElected } = await removalBehindTheApply(false);
    expect(appendedPastRemoval).to.equal(false);
    expect(survivorElected).to.equal(true);
  });

  it('a leader whose apply is out takes proposals until its log runs 8,192 entries past what it applied, then refuses them UNAVAILABLE until the apply is back', async () => {
    const { c, leader } = await started([1, 2, 3], 'p', 60);
    const replica = leader.replica('p')!;
    c.reads.holding.add(`${leader.nodeId}/p`);
    const first = leader.propose('p', new Uint8Array([0]));
    await c.until(() => c.reads.inFlight.has(`${leader.nodeId}/p`), 'the leader\'s own read to go out');
    const accepted: Promise<unknown>[] = [];
    let refused: unknown;
    for (let round = 0; round < 40 && refused === undefined; round++) {
      for (let i = 0; i < 512 && refused === undefined; i++) {
        try {
          accepted.push(leader.propose('p', new Uint8Array([1])));
        } catch (err) {
          refused = err;
        }
      }
      await c.tick(1);
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `refused once far behind: ${String(refused)}`).to.equal(true);
    const behind = replica.raft.log.lastIndex() - replica.appliedIndex;
    expect(behind, 'entries past what the leader applied when it refused').to.be.within(8192, 8192 + 512);
    c.reads.release();
    await c.settled(first, 'the conditional write');
    await c.settled(Promise.all(accepted), 'every accepted write');
    expect(replica.stateMachine.total, 'the conditional write and every accepted write, once each').to.equal(100 + accepted.length);
    await c.settled(leader.propose('p', new Uint8Array([1])), 'a write taken again once the apply is back');
    for (const s of c.servers.values()) await s.stop();
  });

  it('a membership change past the slice of the log being applied still holds campaigns behind the next apply out (R16)', async () => {
    const { c, leader } = await started([1, 2, 3], 'm', 70);
    const slow = [...c.servers.values()].find((s) => s !== leader)!;
    const replica = slow.replica('m')!;
    const key = `${slow.nodeId}/m`;
    c.reads.holding.add(key);
    await c.settled(leader.propose('m', new Uint8Array([0])), 'the first conditional write (A)');
    await c.until(() => c.reads.inFlight.has(key), 'A\'s read to go out');
    const written: Promise<unknown>[] = [];
    for (let i = 0; i < 10; i++) written.push(leader.propose('m', new Uint8Array([1])));
    written.push(leader.propose('m', new Uint8Array([0]))); // B: a second conditional write
    // More than a slice of the log (about 1 MiB, applyFromLog) between B and the membership change.
    const big = new Uint8Array(2048).fill(1);
    for (let i = 0; i < 700; i++) written.push(leader.propose('m', big));
    await c.settled(Promise.all(written), 'the writes behind A (committed by the leader and the third node)');
    const change = leader.proposeConfChange('m', { type: ConfChangeType.AddLearner, nodeId: 99, context: JSON.stringify({ nodeId: 9 }) });
    await c.settled(change, 'the membership change');
    await c.until(() => replica.applying?.membershipBehind === true, 'the slow replica to note the change behind A');
    // A comes back; B's read is held: B goes out from the first slice, the change beyond it.
    c.reads.release();
    c.reads.holding.add(key);
    await c.until(() => replica.applying !== undefined && replica.applying.index > replica.appliedIndex && c.reads.inFlight.has(key) && replica.appliedIndex > 1, 'B\'s read to go out');
    expect(replica.applying!.upTo, 'the change waits beyond the slice B was applied from').to.be.above(replica.appliedIndex + 500);
    expect(replica.applying!.membershipBehind, 'a membership change waits behind B').to.equal(true);
    expect(replica.raft.campaignsHeld, 'campaigns held').to.equal(true);
    c.reads.release();
    await c.until(() => replica.raft.confState().learners.includes(99), 'the change applied once B is back');
    expect(replica.raft.campaignsHeld).to.equal(false);
    for (const s of c.servers.values()) await s.stop();
  });
});
