// Two leftovers of R16's reviews at the region server's edge (docs/raft-rules.md R16, "Never a
// leader, never serving"):
//   - `campaign()` on a replica whose apply is stalled did nothing and said nothing (the core's
//     `campaignsHeld` makes hup() return): it is refused as UNAVAILABLE, retriable;
//   - an assertion of the raft core thrown while stepping a message (`becomeLeader`: "leader must
//     be in its own configuration", should R16's argument that a removed replica is never a
//     candidate ever fail) went through `RegionServer.step` into the raft stream's 'data' handler
//     and ended the process. It fails that one replica now; the core still asserts.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfChangeType, type Message, MessageType, Role, makeMessage } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter, waitFor } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const peers = [
  { peerId: 11, nodeId: 1 },
  { peerId: 12, nodeId: 2 },
];

describe('region server: the raft core at its edge (R16 leftovers)', () => {
  const servers: RegionServer<never, never>[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
  });

  it('a failed core assertion while stepping a message fails the replica, not the process', async () => {
    // Node 1 alone; what it sends goes nowhere, and the test delivers node 2's answers by hand.
    const s = new RegionServer<Counter, number>(1, new MemoryLogEngine(), new LoopbackTransport(1, () => {}), { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: 5 }, silentLogger, systemClock);
    servers.push(s as unknown as RegionServer<never, never>);
    await s.open({ regionId: 'r', selfPeerId: 11, peers, bootstrap: true });
    const replica = s.hostedReplica('r')!;
    await waitFor(() => replica.appliedIndex >= replica.raft.log.committed, 'bootstrap applied');
    s.campaign('r');
    expect(replica.raft.role, 'a pre-candidate (pre-vote is on)').to.equal(Role.PreCandidate);
    const term = replica.raft.term + 1;
    const answer = (type: Message['type']): Message => makeMessage({ type, from: 12, to: 11, term, reject: false });
    s.step(2, 'r', answer(MessageType.PreVoteResponse));
    expect(replica.raft.role).to.equal(Role.Candidate);
    // Planted here, in the test: the candidate's configuration loses it, as if a removal were
    // applied while it campaigned — what R16 argues never happens. Node 2's vote then wins it the
    // election in a configuration without itself, and `becomeLeader` asserts.
    replica.raft.applyConfChange({ type: ConfChangeType.RemoveNode, nodeId: 11, context: '' });
    // Before: AssertionError "leader must be in its own configuration" out of step().
    expect(() => s.step(2, 'r', answer(MessageType.VoteResponse))).not.to.throw();
    expect(s.failure('r')?.reason).to.match(/raft core failed during a VoteResponse message from peer 12: leader must be in its own configuration/);
    expect(s.replica('r'), 'fenced').to.equal(undefined);
    expect(s.failedReplicas().map((f) => f.selfPeerId)).to.deep.equal([11]);
    expect(replica.answersRaft, 'out of raft: no more messages or ticks').to.equal(false);
    // Later messages to it are dropped as for any region not hosted; nothing throws.
    expect(() => s.step(2, 'r', makeMessage({ type: MessageType.Heartbeat, from: 12, to: 11, term: term + 1 }))).not.to.throw();
  });

  it('campaign() on a replica whose apply is stalled is refused as UNAVAILABLE, not ignored', async () => {
    let stalling = false;
    class Stallable {
      total = 0;
      apply(_index: number, command: Uint8Array): number | Promise<number> {
        if (stalling) return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'object store down (planted)'));
        this.total += command[0]!;
        return this.total;
      }
      serialize(): Uint8Array {
        return new TextEncoder().encode(String(this.total));
      }
    }
    const s = new RegionServer<Stallable, number>(
      1,
      new MemoryLogEngine(),
      new LoopbackTransport(1, () => {}),
      { create: () => new Stallable() },
      { ...defaultRaftTuning, tickMs: 5, applyRetry: { backoffMsMin: 60_000, backoffMsMax: 60_000, windowMs: 600_000 } },
      silentLogger,
      systemClock,
    );
    servers.push(s as unknown as RegionServer<never, never>);
    // A single voter: it elects itself, then stalls applying a write.
    await s.open({ regionId: 'r', selfPeerId: 11, peers: [peers[0]!], bootstrap: true });
    s.start();
    await waitFor(() => s.replica('r')?.isLeader() === true, 'leader');
    stalling = true;
    void s.propose('r', new Uint8Array([1])).catch(() => undefined);
    await waitFor(() => s.applyStall('r') !== undefined, 'apply stalled');
    const replica = s.hostedReplica('r')!;
    expect(replica.raft.campaignsHeld).to.equal(true);
    // Before: returned, having done nothing (hup() returns for a held replica).
    let refused: unknown;
    try {
      s.campaign('r');
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `refused UNAVAILABLE, got ${String(refused)}`).to.equal(true);
    expect((refused as Error).message).to.match(/cannot apply index \d+ yet .*retrying/);
    stalling = false;
  });
});
