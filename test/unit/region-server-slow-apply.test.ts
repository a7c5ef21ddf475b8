// A slow object-store read in one replica's apply must not silence the other replicas of its
// datanode (found by the whole-datanode simulator: engine seed 2026 of the wide mix with the
// metasrv, `removal availability`; docs/correctness.md "Still open"). The region server drives
// every replica of the node in one ready loop, and a cycle awaits each apply that needs I/O (a
// conditional write whose key is not in the memtable reads SSTs: src/engine/region-state.ts
// getFromSsts) before it advances, applies or sends anything for any other replica, and before
// the next cycle starts. So while that read is out, no replica of the node sends a raft message:
// no heartbeat, vote, append or its acknowledgement; no proposal is appended, nothing applied.
// In the simulator one read of the `slow` fault's tail (1,155 ms) kept a region whose other live
// voter was on that node leaderless past the checker's 1 s; against S3 a read may take up to the
// store's request timeout (60 s by default, src/object-store/s3-store.ts), retried by SstReaders.
//
// Skipped: the fix is an apply that does not hold the node's loop (the replica's later entries
// applied from its log once the read is back, as a stalled apply already does), which changes
// when every engine-mode cycle continues, and so the simulator's engine trace hashes.
import { expect } from 'chai';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { ConditionalCounter } from '../fixtures/counter-machine.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const TICK_MS = 5;
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

/** Reads of the object store that the test holds (a slow GET): released by `release`. */
class HeldReads {
  readonly holding = new Set<string>();
  private readonly waiting: (() => void)[] = [];
  /** The read of (node, region) in flight now: undefined when not held. */
  readonly inFlight = new Set<string>();
  read(nodeId: number, regionId: string): Promise<void> {
    const key = `${nodeId}/${regionId}`;
    if (!this.holding.has(key)) return Promise.resolve();
    this.inFlight.add(key);
    return new Promise<void>((resolve) =>
      this.waiting.push(() => {
        this.inFlight.delete(key);
        resolve();
      }),
    );
  }
  release(): void {
    this.holding.clear();
    for (const w of this.waiting.splice(0)) w();
  }
}

describe('RegionServer: a slow read in one replica\'s apply', () => {
  const servers = new Map<number, RegionServer<ConditionalCounter>>();
  const reads = new HeldReads();
  /** Raft messages sent, per `${fromNode}/${region}`. */
  const sent = new Map<string, number>();
  const peers = [
    { peerId: 31, nodeId: 1 },
    { peerId: 32, nodeId: 2 },
    { peerId: 33, nodeId: 3 },
  ];
  const regions = ['s1', 's2'];
  const clock = new HandClock();
  const { until: waitFor, settled } = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);

  before(async () => {
    for (const nodeId of [1, 2, 3]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) {
          sent.set(`${from}/${e.regionId}`, (sent.get(`${from}/${e.regionId}`) ?? 0) + 1);
          servers.get(to)?.step(from, e.regionId, e.message);
        }
      });
      servers.set(
        nodeId,
        new RegionServer<ConditionalCounter>(
          nodeId,
          new MemoryLogEngine(),
          transport,
          { create: (regionId) => new ConditionalCounter(() => reads.read(nodeId, regionId)) },
          { ...defaultRaftTuning, tickMs: TICK_MS, snapshotEveryEntries: 1000 },
          silentLogger,
          clock,
        ),
      );
    }
    for (const [nodeId, server] of servers) {
      for (const regionId of regions) await server.open({ regionId, selfPeerId: 30 + nodeId, peers, bootstrap: true });
      server.start();
    }
    await waitFor(() => regions.every((r) => leaderOf(r) !== undefined), 'leaders');
  });

  after(async () => {
    reads.release(); // stop() waits for the cycle in flight
    for (const server of servers.values()) await server.stop();
  });

  function leaderOf(regionId: string): RegionServer<ConditionalCounter> | undefined {
    return [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  }

  it.skip('does not stop the node\'s other replicas: while it is out they keep sending, acknowledging and applying (engine seed 2026 of the wide mix; fix changes engine traces)', async () => {
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
});
