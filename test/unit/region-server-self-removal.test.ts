import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter, waitFor } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

// docs/raft-rules.md R16's liveness argument needs the removed leader to keep answering
// (pre-)votes until a remaining voter has applied its removal. The host fences the replica as it
// applies its own removal (region-server.ts applyEntry: replica.closed = true) and step() drops
// every raft message to a closed replica. With skipBcastCommit (the default tuning) the leader
// tells the survivor nothing after committing its removal (its last entry), so the survivor of a
// two-voter group still counts {1, 2}, needs the fenced replica's vote, and never gets it.
describe('RegionServer: a two-voter region whose leader removes itself (R16 at the host)', () => {
  const servers = new Map<number, RegionServer<Counter>>();
  /** Appends and heartbeats from this node telling a commit index ≥ `index` are lost. */
  let loseCommit: { from: number; index: number } | undefined;
  const peers = [
    { peerId: 11, nodeId: 1 },
    { peerId: 12, nodeId: 2 },
  ];

  function makeServer(nodeId: number): RegionServer<Counter> {
    const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
      for (const e of envelopes) {
        const m = e.message;
        if (loseCommit && from === loseCommit.from && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= loseCommit.index) continue;
        servers.get(to)?.step(from, e.regionId, m);
      }
    });
    return new RegionServer<Counter>(
      nodeId,
      new MemoryLogEngine(),
      transport,
      { create: () => new Counter() },
      { ...defaultRaftTuning, tickMs: 5, nodeDownAfterTicks: 40, skipBcastCommit: true },
      silentLogger,
      systemClock,
    );
  }

  async function startServers(): Promise<void> {
    servers.clear();
    loseCommit = undefined;
    for (const nodeId of [1, 2]) servers.set(nodeId, makeServer(nodeId));
    for (const [nodeId, server] of servers) {
      await server.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
      server.start();
    }
  }

  afterEach(async () => {
    for (const server of servers.values()) await server.stop();
  });

  async function removeLeaderAndWaitForSurvivor(lose: boolean): Promise<void> {
    await startServers();
    await waitFor(() => [...servers.values()].some((s) => s.replica('r')?.isLeader()), 'a leader');
    const [leaderNode, leader] = [...servers].find(([, s]) => s.replica('r')?.isLeader())!;
    const [, survivor] = [...servers].find(([id]) => id !== leaderNode)!;
    await leader.propose('r', new Uint8Array([1]));
    const self = 10 + leaderNode;
    if (lose) loseCommit = { from: leaderNode, index: leader.replica('r')!.raft.status().lastIndex + 1 };
    // The proposer's own replica is fenced as it applies the change, so its promise fails (outcome unknown).
    await leader.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: self, context: '' }).catch(() => undefined);
    await waitFor(() => leader.replica('r') === undefined, 'the removed leader to apply its removal (fenced)');
    await waitFor(
      () => survivor.replica('r')?.isLeader() === true && !survivor.replica('r')!.raft.confState().voters.includes(self),
      `the survivor to lead without ${self}`,
      3000,
    ).catch((err: Error) => {
      const st = survivor.replica('r')!.raft.status();
      throw new Error(`${err.message}; survivor role ${st.role} term ${st.term} commit ${st.commit} applied ${st.applied} conf ${JSON.stringify(st.confState)}`);
    });
    expect(survivor.replica('r')!.raft.confState().voters).to.deep.equal([10 + (3 - leaderNode)]);
  }

  it('the other voter is elected and applies the removal (healthy network; skipBcastCommit, the default)', async () => {
    await removeLeaderAndWaitForSurvivor(false);
  });

  // The removed replica is fenced (closed) and drops the survivor's (pre-)votes, so the core's R16
  // argument ("the removed node grants it pre-vote and vote like any follower") does not hold here.
  // Pending: a known open gap (docs/raft-rules.md R16, "Known gap at the host"); it fails today.
  it('the other voter is elected when the message telling it the removal committed is lost', async () => {
    await removeLeaderAndWaitForSurvivor(true);
  });
});
