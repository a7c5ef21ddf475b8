import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, defaultRaftTuning } from '../../src/datanode/region-server.js';
import type { StateMachine } from '../../src/datanode/types.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

/** A counter state machine: each command adds its byte value; result = new total. */
class Counter implements StateMachine<number> {
  total = 0;
  apply(_index: number, command: Uint8Array): number {
    this.total += command[0]!;
    return this.total;
  }
  serialize(): Uint8Array {
    return new TextEncoder().encode(String(this.total));
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('RegionServer (multi-raft host, in-memory WAL and loopback transport)', () => {
  const servers = new Map<number, RegionServer<number>>();
  /** Messages from these nodes are lost (a one-way link failure). */
  const mute = new Set<number>();
  /** Entries sent in appends, per (from node → to node, region): `${from}>${to}/${region}` → [entries per append]. */
  const appendSizes = new Map<string, number[]>();
  /** Heartbeats carrying a ReadIndex context (one per read-index round), per sending node. */
  const readIndexRounds = new Map<number, number>();
  const engines = new Map<number, MemoryLogEngine>();
  /** Contexts of the ReadIndex requests each node sent (a follower forwards its reads to the leader). */
  const readIndexContexts = new Map<number, string[]>();
  const peers = [
    { peerId: 11, nodeId: 1 },
    { peerId: 12, nodeId: 2 },
    { peerId: 13, nodeId: 3 },
  ];

  /** A region server for `nodeId` over its (surviving) in-memory engine: a fresh process. */
  function makeServer(nodeId: number): RegionServer<number> {
    let engine = engines.get(nodeId);
    if (!engine) engines.set(nodeId, (engine = new MemoryLogEngine()));
    {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        if (mute.has(from)) return;
        for (const e of envelopes) {
          if (e.message.type === MessageType.Append && e.message.entries.length > 0) {
            const key = `${from}>${to}/${e.regionId}`;
            appendSizes.set(key, [...(appendSizes.get(key) ?? []), e.message.entries.length]);
          }
          if (e.message.type === MessageType.Heartbeat && e.message.context.byteLength > 0) readIndexRounds.set(from, (readIndexRounds.get(from) ?? 0) + 1);
          if (e.message.type === MessageType.ReadIndex) readIndexContexts.set(from, [...(readIndexContexts.get(from) ?? []), new TextDecoder().decode(e.message.context)]);
          servers.get(to)?.step(from, e.regionId, e.message);
        }
      });
      const server = new RegionServer<number>(
        nodeId,
        engine,
        transport,
        {
          create: (_id, data) => {
            const c = new Counter();
            if (data) c.total = Number(new TextDecoder().decode(data));
            return c;
          },
        },
        { ...defaultRaftTuning, tickMs: 5, snapshotEveryEntries: 50 },
        silentLogger,
        systemClock,
      );
      return server;
    }
  }

  before(async () => {
    for (const nodeId of [1, 2, 3]) servers.set(nodeId, makeServer(nodeId));
    for (const [nodeId, server] of servers) {
      for (const regionId of ['r1', 'r2']) {
        await server.open({ regionId, selfPeerId: 10 + nodeId, peers, bootstrap: true });
      }
      server.start();
    }
  });

  after(async () => {
    for (const server of servers.values()) await server.stop();
  });

  function leaderOf(regionId: string): RegionServer<number> | undefined {
    return [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  }

  it('elects one leader per region and commits proposals on a quorum', async () => {
    await waitFor(() => leaderOf('r1') !== undefined && leaderOf('r2') !== undefined, 'leaders');
    const leader = leaderOf('r1')!;
    const results = await Promise.all([1, 2, 3].map((v) => leader.propose('r1', new Uint8Array([v]))));
    expect(results.sort((a, b) => a - b)).to.deep.equal([1, 3, 6]);
  });

  it('shares one durable batch among many concurrent proposals (group commit)', async () => {
    const leader = leaderOf('r2')!;
    const engine = engines.get(leader.nodeId)!;
    const before = engine.syncs;
    await Promise.all(Array.from({ length: 200 }, () => leader.propose('r2', new Uint8Array([1]))));
    expect(engine.syncs - before).to.be.lessThan(100);
  });

  it('proposals made while a cycle persists reach raft as one entry batch: one append per follower, not one per command', async () => {
    const leader = leaderOf('r2')!;
    const follower = [...servers.values()].find((s) => s !== leader)!;
    const key = `${leader.nodeId}>${follower.nodeId}/r2`;
    const before = appendSizes.get(key)?.length ?? 0;
    await Promise.all(Array.from({ length: 100 }, () => leader.propose('r2', new Uint8Array([1]))));
    const appends = (appendSizes.get(key) ?? []).slice(before);
    expect(appends.reduce((a, b) => a + b, 0)).to.be.at.least(100);
    expect(appends.length).to.be.at.most(3);
  });

  it('a non-leader refuses proposals with NOT_LEADER naming the leader node', async () => {
    const leader = leaderOf('r1')!;
    const follower = [...servers.values()].find((s) => s !== leader)!;
    try {
      await follower.propose('r1', new Uint8Array([1]));
      expect.fail('must refuse');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.NotLeader)).to.equal(true);
      expect((err as { details: Record<string, string> }).details['leaderNodeId']).to.equal(String(leader.nodeId));
    }
  });

  it('a read barrier resolves on leader and followers after the write is applied locally', async () => {
    const leader = leaderOf('r1')!;
    const total = await leader.propose('r1', new Uint8Array([10]));
    for (const server of servers.values()) {
      await server.readBarrier('r1');
      expect((server.replica('r1')!.stateMachine as Counter).total).to.equal(total);
    }
  });

  it('concurrent linearizable reads share one ReadIndex round (§6.4 thesis: a later read index is valid for earlier reads)', async () => {
    const leader = leaderOf('r1')!;
    const total = await leader.propose('r1', new Uint8Array([1]));
    const before = readIndexRounds.get(leader.nodeId) ?? 0;
    await Promise.all(Array.from({ length: 50 }, () => leader.readBarrier('r1')));
    expect((leader.replica('r1')!.stateMachine as Counter).total).to.equal(total);
    // One heartbeat per follower per round: 50 reads in one or two rounds, not fifty.
    expect((readIndexRounds.get(leader.nodeId) ?? 0) - before).to.be.at.most(4);
  });

  it('snapshots the state machine and compacts the log after many entries', async () => {
    const leader = leaderOf('r2')!;
    for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 50 }, () => leader.propose('r2', new Uint8Array([1]))));
    await waitFor(() => engines.get(leader.nodeId)!.region('r2').firstIndex() > 1, 'log compaction');
  });

  it('unknown regions give NOT_FOUND', async () => {
    try {
      await servers.get(1)!.propose('nope', new Uint8Array([1]));
      expect.fail('must refuse');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.NotFound)).to.equal(true);
    }
  });

  it('a read whose ReadIndex request is lost fails as PROPOSAL_DROPPED (retriable) instead of hanging', async () => {
    const leader = leaderOf('r1')!;
    const follower = [...servers.values()].find((s) => s !== leader)!;
    mute.add(follower.nodeId);
    try {
      const started = Date.now();
      await follower.readBarrier('r1').then(
        () => expect.fail('the read cannot have been confirmed'),
        (err: unknown) => expect(isRegionDbError(err, ErrorCode.ProposalDropped), String(err)).to.equal(true),
      );
      expect(Date.now() - started).to.be.lessThan(5000);
    } finally {
      mute.delete(follower.nodeId);
    }
    await follower.readBarrier('r1');
  });

  it('a proposal in flight when its region is closed fails as outcome unknown (UNAVAILABLE), never as a definite NOT_FOUND', async () => {
    for (const [nodeId, server] of servers) await server.open({ regionId: 'r3', selfPeerId: 10 + nodeId, peers, bootstrap: true });
    await waitFor(() => leaderOf('r3') !== undefined, 'a leader of r3');
    const leader = leaderOf('r3')!;
    await leader.propose('r3', new Uint8Array([1]));
    const followers = [...servers.values()].filter((s) => s !== leader);
    for (const f of followers) mute.add(f.nodeId); // no acks: the next proposal stays uncommitted
    try {
      const inFlight = leader.propose('r3', new Uint8Array([2]));
      await waitFor(() => leader.replica('r3')!.proposals.size > 0, 'the proposal to reach raft');
      await leader.close('r3', false);
      const err = await inFlight.then(
        () => expect.fail('an uncommitted proposal cannot have been applied here'),
        (e: unknown) => e,
      );
      expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
      expect((err as Error).message).to.match(/may or may not have been applied/);
    } finally {
      for (const f of followers) mute.delete(f.nodeId);
      for (const server of servers.values()) await server.close('r3', true);
    }
  });

  it("a restarted node's ReadIndex requests carry contexts its earlier run never used (a late answer to the old process cannot serve a new read)", async () => {
    const leader = leaderOf('r1')!;
    const follower = [...servers.values()].find((s) => s !== leader)!;
    const nodeId = follower.nodeId;
    await follower.readBarrier('r1');
    const earlier = new Set(readIndexContexts.get(nodeId));
    expect(earlier.size, 'ReadIndex requests forwarded by the follower').to.be.greaterThan(0);
    await follower.stop();
    const restarted = makeServer(nodeId);
    servers.set(nodeId, restarted);
    for (const regionId of ['r1', 'r2']) await restarted.open({ regionId, selfPeerId: 10 + nodeId, peers, bootstrap: true });
    restarted.start();
    await waitFor(() => restarted.replica('r1')?.leaderNodeId() === leader.nodeId, 'the restarted follower to learn the leader');
    await restarted.readBarrier('r1');
    const sent = readIndexContexts.get(nodeId)!.slice(earlier.size);
    expect(sent.length, 'ReadIndex requests of the restarted process').to.be.greaterThan(0);
    for (const ctx of sent) expect(earlier.has(ctx), `context ${ctx} reused from before the restart`).to.equal(false);
  });

  it('a membership change is applied only after a batch that makes its commit index durable (never on a deferred one)', async () => {
    const leader = leaderOf('r2')!;
    const before = new Map([...engines].map(([id, e]) => [id, e.durableCommitBatches]));
    await leader.proposeConfChange('r2', { type: ConfChangeType.AddLearner, nodeId: 99, context: JSON.stringify({ nodeId: 9 }) });
    await waitFor(() => [...servers.values()].every((s) => s.replica('r2')!.raft.status().confState.learners.includes(99)), 'every replica to apply the change');
    for (const [id, engine] of engines) expect(engine.durableCommitBatches - before.get(id)!, `node ${id}`).to.be.greaterThan(0);
    await leader.proposeConfChange('r2', { type: ConfChangeType.RemoveNode, nodeId: 99, context: '' });
  });
});
