// A slow object-store read in one replica's apply must not silence the other replicas of its
// datanode (found by the whole-datanode simulator: engine seed 2026 of the wide mix with the
// metasrv, `removal availability`; finding E12 in docs/correctness.md). The region server drives
// every replica of the node in one ready loop; a cycle used to await each apply that needs I/O (a
// conditional write whose key is not in the memtable reads SSTs: src/engine/region-state.ts
// getFromSsts) before it advanced, applied or sent anything for any other replica, and before the
// next cycle started. So while that read was out no replica of the node sent a raft message. In
// the simulator one read of the `slow` fault's tail (1,155 ms) kept a region whose other live voter
// was on that node leaderless past the checker's 1 s; against S3 a read may take up to the store's
// request timeout (60 s by default, src/object-store/s3-store.ts), retried by SstReaders.
//
// Now such an apply goes out off the ready loop (region-server.ts `applyOffLoop`): the entries
// committed behind it wait in the log and are applied in order once it is back, and meanwhile the
// replica answers raft, may campaign (unless a membership change waits behind the apply) and
// takes proposals.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { ConfChangeType } from '../../src/raft/index.js';
import { type RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import type { ConditionalCounter } from '../fixtures/counter-machine.js';
import { heldReadsCluster } from '../fixtures/held-reads-cluster.js';

describe('RegionServer: a slow read in one replica\'s apply', () => {
  const c = heldReadsCluster([1, 2, 3]);
  const { servers, reads, sent, leaderOf, until: waitFor, settled } = c;
  const regions = ['s1', 's2', 's3', 's4', 's5'];

  before(async () => {
    for (const regionId of regions) await c.openEverywhere(regionId, 30);
    for (const server of servers.values()) server.start();
    await waitFor(() => regions.every((r) => leaderOf(r) !== undefined), 'leaders');
  });

  afterEach(() => reads.release()); // a failed test leaves no read held for the next

  after(async () => {
    reads.release(); // stop() waits for the cycle in flight
    for (const server of servers.values()) await server.stop();
  });

  it('does not stop the node\'s other replicas: while it is out they keep sending, acknowledging and applying (engine seed 2026 of the wide mix)', async () => {
    const leader = leaderOf('s1')!;
    const slow = [...servers.values()].find((s) => s !== leader)!;
    reads.holding.add(`${slow.nodeId}/s1`);
    await settled(leader.propose('s1', new Uint8Array([0])), 'the conditional write of s1 (committed by the leader and the third node)');
    await waitFor(() => reads.inFlight.has(`${slow.nodeId}/s1`), `node ${slow.nodeId}'s read for s1 to start`);
    // The read is out on `slow`. Its replica of s2 is a different raft group: it must go on.
    const sentBefore = sent.get(`${slow.nodeId}/s2`) ?? 0;
    const index = await settled(leaderOf('s2')!.propose('s2', new Uint8Array([7])), 'a write of s2');
    await waitFor(
      () => (slow.replica('s2')?.appliedIndex ?? 0) >= index,
      `node ${slow.nodeId} to apply s2's write while its s1 read is out (its raft messages for s2 meanwhile: ${(sent.get(`${slow.nodeId}/s2`) ?? 0) - sentBefore})`,
      4 * defaultRaftTuning.electionTicks,
    );
    expect((sent.get(`${slow.nodeId}/s2`) ?? 0) - sentBefore, 'raft messages of s2 from the node whose s1 read is out').to.be.above(0);
    expect(reads.inFlight.has(`${slow.nodeId}/s1`), 'the s1 read is still out').to.equal(true);
    reads.release();
    await waitFor(() => slow.replica('s1')!.stateMachine.total === 100, 'the s1 write applied once the read is back');
  });

  /** A follower of `regionId` whose conditional write's read is held out; resolves once the read is out. */
  async function holdFollowerRead(regionId: string): Promise<{ leader: RegionServer<ConditionalCounter>; slow: RegionServer<ConditionalCounter>; index: number }> {
    const leader = leaderOf(regionId)!;
    const slow = [...servers.values()].find((s) => s !== leader)!;
    reads.holding.add(`${slow.nodeId}/${regionId}`);
    const index = await settled(leader.propose(regionId, new Uint8Array([0])), `the conditional write of ${regionId}`);
    await waitFor(() => reads.inFlight.has(`${slow.nodeId}/${regionId}`), `node ${slow.nodeId}'s read for ${regionId} to start`);
    return { leader, slow, index };
  }

  it('its own later entries wait behind it (its applied index says so) and are applied in order once it is back', async () => {
    const { leader, slow, index } = await holdFollowerRead('s3');
    const replica = slow.replica('s3')!;
    const later = await settled(leader.propose('s3', new Uint8Array([5])), 'a later write of s3');
    await waitFor(() => replica.raft.log.committed >= later, `node ${slow.nodeId} to learn that s3's later write committed`);
    expect(replica.appliedIndex, 'applied index while the read is out: below the entry whose apply is out').to.equal(index - 1);
    expect(replica.stateMachine.total, 'nothing applied past the entry whose read is out').to.equal(0);
    reads.release();
    await waitFor(() => replica.appliedIndex >= later, 'the later write applied once the read is back');
    expect(replica.stateMachine.total, 'both writes applied, in order').to.equal(105);
  });

  it('the replica with the read out can still be elected, and takes writes (applied after it); a membership change through it is refused until the read is back', async () => {
    const { leader, slow, index } = await holdFollowerRead('s4');
    const replica = slow.replica('s4')!;
    expect(replica.raft.campaignsHeld, 'no membership change waits behind the apply: campaigns are not held').to.equal(false);
    leader.transferLeader('s4', replica.selfPeerId);
    await waitFor(() => replica.isLeader(), `node ${slow.nodeId} (its s4 read out) to be elected after a transfer`);
    const write = slow.propose('s4', new Uint8Array([3]));
    await waitFor(() => replica.raft.log.committed > index + 1, 'the new leader to commit its no-op and the write');
    let refused: unknown;
    try {
      await slow.proposeConfChange('s4', { type: ConfChangeType.RemoveNode, nodeId: 99, context: '' });
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `a membership change while the read is out: ${String(refused)}`).to.equal(true);
    expect(replica.stateMachine.total, 'nothing applied while the read is out').to.equal(0);
    reads.release();
    const at = await settled(write, 'the write taken while the read was out');
    expect(at).to.be.above(index);
    expect(replica.stateMachine.total, 'the conditional write, then the new leader\'s write').to.equal(103);
  });

  it('with a membership change waiting behind it, the replica starts no campaign until it is applied (R16)', async () => {
    const { leader, slow } = await holdFollowerRead('s5');
    const replica = slow.replica('s5')!;
    const removal = leader.proposeConfChange('s5', { type: ConfChangeType.AddLearner, nodeId: 99, context: JSON.stringify({ nodeId: 9 }) });
    await waitFor(() => replica.raft.campaignsHeld, `node ${slow.nodeId} to hold campaigns once the membership change committed behind its read`);
    let refused: unknown;
    try {
      slow.campaign('s5');
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `a campaign asked for while the change waits: ${String(refused)}`).to.equal(true);
    expect(replica.raft.confState().learners, 'the change not applied to its core yet').to.not.include(99);
    reads.release();
    await settled(removal, 'the membership change');
    await waitFor(() => replica.raft.confState().learners.includes(99), 'the change applied on the slow replica once the read is back');
    expect(replica.raft.campaignsHeld, 'campaigns no longer held').to.equal(false);
    expect(replica.stateMachine.total).to.equal(100);
  });
});
