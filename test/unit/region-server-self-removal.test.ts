import { expect } from 'chai';
import { silentLogger } from '../../src/common/logger.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

// docs/raft-rules.md R16's liveness argument needs the removed leader to keep answering
// (pre-)votes until a remaining voter has applied its removal. The host fences the replica to
// clients as it applies its own removal (region-server.ts applyEntry: closed and `removed`), and
// it keeps stepping raft messages until it is deleted ("The removed replica"). Before that rule
// step() dropped every raft message to it: when the one message telling the survivor of a
// two-voter group that the removal committed was lost, the survivor still counted {1, 2}, needed
// the fenced replica's vote, and never got it (the second case failed then).
//
// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): each wait is a bounded
// number of ticks, and "never campaigns" is watched over a given number of ticks, whatever the load.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('RegionServer: a two-voter region whose leader removes itself (R16 at the host)', () => {
  let clock = new HandClock();
  let waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const waitFor = (cond: () => boolean, what: string, maxTicks?: number) => waits.until(cond, what, maxTicks);
  const settled = <T>(promise: Promise<T>, what: string) => waits.settled(promise, what);
  const servers = new Map<number, RegionServer<Counter>>();
  /** Appends and heartbeats from this node telling a commit index ≥ `index` are lost. */
  let loseCommit: { from: number; index: number } | undefined;
  const peers = [
    { peerId: 11, nodeId: 1 },
    { peerId: 12, nodeId: 2 },
  ];

  const engines = new Map<number, MemoryLogEngine>();
  /** Roles each node's replica took (onRoleChange), in order. */
  const roles = new Map<number, string[]>();

  function makeServer(nodeId: number): RegionServer<Counter> {
    let engine = engines.get(nodeId);
    if (!engine) engines.set(nodeId, (engine = new MemoryLogEngine()));
    const seen = roles.get(nodeId) ?? [];
    roles.set(nodeId, seen);
    const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
      for (const e of envelopes) {
        const m = e.message;
        if (loseCommit && from === loseCommit.from && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= loseCommit.index) continue;
        servers.get(to)?.step(from, e.regionId, m);
      }
    });
    return new RegionServer<Counter>(
      nodeId,
      engine,
      transport,
      { create: () => new Counter() },
      { ...defaultRaftTuning, tickMs: TICK_MS, nodeDownAfterTicks: 40, skipBcastCommit: true },
      silentLogger,
      clock,
      { onRoleChange: (_regionId, role) => seen.push(role) },
    );
  }

  async function startServers(): Promise<void> {
    servers.clear();
    engines.clear();
    roles.clear();
    loseCommit = undefined;
    clock = new HandClock();
    waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
    for (const nodeId of [1, 2]) servers.set(nodeId, makeServer(nodeId));
    for (const [nodeId, server] of servers) {
      await server.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
      server.start();
    }
  }

  afterEach(async () => {
    for (const server of servers.values()) await server.stop();
  });

  interface Options {
    /** Lose the messages telling the survivor that the removal committed. */
    readonly lose: boolean;
    /** Restart the removed node (a new server on its log) once it applied its removal. */
    readonly restartRemoved?: boolean;
    /** Runs once the removed leader applied its removal, before the survivor is waited for. */
    readonly whileRemoved?: (removed: RegionServer<Counter>, removedNode: number) => Promise<void>;
  }

  async function removeLeaderAndWaitForSurvivor({ lose, restartRemoved, whileRemoved }: Options): Promise<number> {
    await startServers();
    await waitFor(() => [...servers.values()].some((s) => s.replica('r')?.isLeader()), 'a leader');
    const [leaderNode, leader] = [...servers].find(([, s]) => s.replica('r')?.isLeader())!;
    const [, survivor] = [...servers].find(([id]) => id !== leaderNode)!;
    await settled(leader.propose('r', new Uint8Array([1])), 'a write');
    const self = 10 + leaderNode;
    if (lose) loseCommit = { from: leaderNode, index: leader.replica('r')!.raft.status().lastIndex + 1 };
    // The proposer's own replica is fenced as it applies the change, so its promise fails (outcome unknown).
    await settled(leader.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: self, context: '' }).catch(() => undefined), 'the removal');
    await waitFor(() => leader.replica('r') === undefined, 'the removed leader to apply its removal (fenced)');
    expect(leader.hostedReplica('r')?.removed, 'removed, not deleted').to.equal(true);
    if (restartRemoved) {
      await leader.stop();
      const again = makeServer(leaderNode);
      servers.set(leaderNode, again);
      // Reopened from its log (no bootstrap: the log is not empty); it applies its removal again.
      await again.open({ regionId: 'r', selfPeerId: self, peers, bootstrap: true });
      again.start();
      await waitFor(() => again.replica('r') === undefined && again.hostedReplica('r')?.removed === true, 'the restarted removed node to apply its removal again');
    }
    await whileRemoved?.(servers.get(leaderNode)!, leaderNode);
    await waitFor(
      () => survivor.replica('r')?.isLeader() === true && !survivor.replica('r')!.raft.confState().voters.includes(self),
      `the survivor to lead without ${self}`,
      600, // the 3000 ms this waited on the wall clock, in ticks
    ).catch((err: Error) => {
      const st = survivor.replica('r')!.raft.status();
      throw new Error(`${err.message}; survivor role ${st.role} term ${st.term} commit ${st.commit} applied ${st.applied} conf ${JSON.stringify(st.confState)}`);
    });
    expect(survivor.replica('r')!.raft.confState().voters).to.deep.equal([10 + (3 - leaderNode)]);
    return leaderNode;
  }

  it('the other voter is elected and applies the removal (healthy network; skipBcastCommit, the default)', async () => {
    await removeLeaderAndWaitForSurvivor({ lose: false });
  });

  // Failed before the removed replica answered raft (docs/raft-rules.md R16, "The removed
  // replica"): the survivor's (pre-)votes were dropped and it stayed a pre-candidate forever.
  it('the other voter is elected when the message telling it the removal committed is lost', async () => {
    await removeLeaderAndWaitForSurvivor({ lose: true });
  });

  it('... also when the removed node restarts in between: reopened from its log, it applies its removal again and still answers', async () => {
    await removeLeaderAndWaitForSurvivor({ lose: true, restartRemoved: true });
  });

  it('the removed replica serves no client write or read and never campaigns, asked to or not', async () => {
    const removedNode = await removeLeaderAndWaitForSurvivor({
      lose: true,
      whileRemoved: async (removed, node) => {
        for (const attempt of [() => removed.propose('r', new Uint8Array([2])), () => removed.readBarrier('r')]) {
          let refused: unknown;
          try {
            await settled<unknown>(attempt(), 'the refusal');
          } catch (err) {
            refused = err;
          }
          expect(isRegionDbError(refused, ErrorCode.NotFound), String(refused)).to.equal(true);
        }
        const before = roles.get(node)!.length;
        removed.campaign('r'); // the core refuses: not a voter of its own configuration
        await waits.tick(30); // beyond two election timeouts
        expect(roles.get(node)!.slice(before).filter((role) => role !== 'follower'), 'roles taken after campaign()').to.deep.equal([]);
        expect(removed.hostedReplica('r')!.raft.status().role).to.equal(0); // follower
      },
    });
    // Once the survivor leads alone the removed replica still serves nothing.
    const removed = servers.get(removedNode)!;
    expect(removed.replica('r')).to.equal(undefined);
    expect(() => removed.leaderReplica('r')).to.throw(/no longer hosted|not hosted|removed/);
    const after = roles.get(removedNode)!;
    expect(after.lastIndexOf('leader'), 'it led before its removal').to.be.at.least(0);
    expect(after.slice(after.lastIndexOf('leader') + 1).filter((role) => role !== 'follower'), 'roles taken after its removal').to.deep.equal([]);
  });
});
