import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { ConditionalCounter, Counter } from '../fixtures/counter-machine.js';
import { HandClock, handWaits, settle, tickBy } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

// Every server runs on a hand-moved clock (test/fixtures/hand-clock.ts): its ticker fires as the
// test advances the clock, and each wait is a bounded number of ticks, never of wall milliseconds.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on: a stuck test fails naming what it waited for. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('RegionServer (multi-raft host, in-memory WAL and loopback transport)', () => {
  const clock = new HandClock();
  const { until: waitFor, settled } = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const servers = new Map<number, RegionServer<Counter>>();
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
  function makeServer(nodeId: number): RegionServer<Counter> {
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
      const server = new RegionServer<Counter>(
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
        // A peer is taken as down after 40 silent ticks, not 8.
        { ...defaultRaftTuning, tickMs: TICK_MS, snapshotEveryEntries: 50, nodeDownAfterTicks: 40 },
        silentLogger,
        clock,
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

  function leaderOf(regionId: string): RegionServer<Counter> | undefined {
    return [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  }

  it('elects one leader per region and commits proposals on a quorum', async () => {
    await waitFor(() => leaderOf('r1') !== undefined && leaderOf('r2') !== undefined, 'leaders');
    const leader = leaderOf('r1')!;
    const results = await settled(Promise.all([1, 2, 3].map((v) => leader.propose('r1', new Uint8Array([v])))), 'three writes');
    expect(results.sort((a, b) => a - b)).to.deep.equal([1, 3, 6]);
  });

  it('shares one durable batch among many concurrent proposals (group commit)', async () => {
    const leader = leaderOf('r2')!;
    const engine = engines.get(leader.nodeId)!;
    const before = engine.syncs;
    await settled(Promise.all(Array.from({ length: 200 }, () => leader.propose('r2', new Uint8Array([1])))), '200 writes');
    expect(engine.syncs - before).to.be.lessThan(100);
  });

  it('proposals made while a cycle persists reach raft as one entry batch: one append per follower, not one per command', async () => {
    const leader = leaderOf('r2')!;
    const follower = [...servers.values()].find((s) => s !== leader)!;
    const key = `${leader.nodeId}>${follower.nodeId}/r2`;
    const before = appendSizes.get(key)?.length ?? 0;
    await settled(Promise.all(Array.from({ length: 100 }, () => leader.propose('r2', new Uint8Array([1])))), '100 writes');
    const appends = (appendSizes.get(key) ?? []).slice(before);
    expect(appends.reduce((a, b) => a + b, 0)).to.be.at.least(100);
    expect(appends.length).to.be.at.most(3);
  });

  it('a non-leader refuses proposals with NOT_LEADER naming the leader node', async () => {
    const leader = leaderOf('r1')!;
    const follower = [...servers.values()].find((s) => s !== leader)!;
    try {
      await settled(follower.propose('r1', new Uint8Array([1])), 'the refusal');
      expect.fail('must refuse');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.NotLeader)).to.equal(true);
      expect((err as { details: Record<string, string> }).details['leaderNodeId']).to.equal(String(leader.nodeId));
    }
  });

  it('a read barrier resolves on leader and followers after the write is applied locally', async () => {
    const leader = leaderOf('r1')!;
    const total = await settled(leader.propose('r1', new Uint8Array([10])), 'a write');
    for (const server of servers.values()) {
      await settled(server.readBarrier('r1'), `a read barrier on node ${server.nodeId}`);
      expect((server.replica('r1')!.stateMachine).total).to.equal(total);
    }
  });

  it('concurrent linearizable reads share one ReadIndex round (§6.4 thesis: a later read index is valid for earlier reads)', async () => {
    const leader = leaderOf('r1')!;
    const total = await settled(leader.propose('r1', new Uint8Array([1])), 'a write');
    const before = readIndexRounds.get(leader.nodeId) ?? 0;
    await settled(Promise.all(Array.from({ length: 50 }, () => leader.readBarrier('r1'))), '50 reads');
    expect((leader.replica('r1')!.stateMachine).total).to.equal(total);
    // One heartbeat per follower per round: 50 reads in one or two rounds, not fifty.
    expect((readIndexRounds.get(leader.nodeId) ?? 0) - before).to.be.at.most(4);
  });

  it('snapshots the state machine and compacts the log after many entries', async () => {
    const leader = leaderOf('r2')!;
    for (let i = 0; i < 3; i++) await settled(Promise.all(Array.from({ length: 50 }, () => leader.propose('r2', new Uint8Array([1])))), '50 writes');
    await waitFor(() => engines.get(leader.nodeId)!.region('r2').firstIndex() > 1, 'log compaction');
  });

  it('unknown regions give NOT_FOUND', async () => {
    try {
      await settled(servers.get(1)!.propose('nope', new Uint8Array([1])), 'the refusal');
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
      // Given up after READ_TIMEOUT_ELECTIONS (2) election timeouts of ticks (region-server.ts expireReads).
      const readTimeoutTicks = 2 * defaultRaftTuning.electionTicks;
      let ticks = 0;
      const read = follower.readBarrier('r1').then(
        () => 'confirmed',
        (err: unknown) => err,
      );
      let outcome: unknown;
      void read.then((o) => (outcome = o));
      await settle();
      for (; outcome === undefined && ticks <= readTimeoutTicks + 1; ticks++) await tickBy(clock, TICK_MS, 1);
      expect(outcome, `the read's outcome within ${readTimeoutTicks + 1} ticks`).to.not.equal(undefined);
      expect(outcome, 'the read cannot have been confirmed').to.not.equal('confirmed');
      expect(isRegionDbError(outcome, ErrorCode.ProposalDropped), String(outcome)).to.equal(true);
      expect(ticks, 'ticks until the read failed').to.equal(readTimeoutTicks);
    } finally {
      mute.delete(follower.nodeId);
    }
    await settled(follower.readBarrier('r1'), 'the read once the follower is heard again');
  });

  it('a proposal in flight when its region is closed fails as outcome unknown (UNAVAILABLE), never as a definite NOT_FOUND', async () => {
    for (const [nodeId, server] of servers) await server.open({ regionId: 'r3', selfPeerId: 10 + nodeId, peers, bootstrap: true });
    await waitFor(() => leaderOf('r3') !== undefined, 'a leader of r3');
    const leader = leaderOf('r3')!;
    await settled(leader.propose('r3', new Uint8Array([1])), 'a write');
    const followers = [...servers.values()].filter((s) => s !== leader);
    for (const f of followers) mute.add(f.nodeId); // no acks: the next proposal stays uncommitted
    try {
      const inFlight = leader.propose('r3', new Uint8Array([2]));
      await waitFor(() => leader.replica('r3')!.proposals.size > 0, 'the proposal to reach raft');
      await leader.close('r3', false);
      const err = await settled(
        inFlight.then(
          () => expect.fail('an uncommitted proposal cannot have been applied here'),
          (e: unknown) => e,
        ),
        'the in-flight proposal',
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
    await settled(follower.readBarrier('r1'), 'a read on the follower');
    const earlier = new Set(readIndexContexts.get(nodeId));
    expect(earlier.size, 'ReadIndex requests forwarded by the follower').to.be.greaterThan(0);
    await follower.stop();
    const restarted = makeServer(nodeId);
    servers.set(nodeId, restarted);
    for (const regionId of ['r1', 'r2']) await restarted.open({ regionId, selfPeerId: 10 + nodeId, peers, bootstrap: true });
    restarted.start();
    await waitFor(() => restarted.replica('r1')?.leaderNodeId() === leader.nodeId, 'the restarted follower to learn the leader');
    await settled(restarted.readBarrier('r1'), 'a read on the restarted follower');
    const sent = readIndexContexts.get(nodeId)!.slice(earlier.size);
    expect(sent.length, 'ReadIndex requests of the restarted process').to.be.greaterThan(0);
    for (const ctx of sent) expect(earlier.has(ctx), `context ${ctx} reused from before the restart`).to.equal(false);
  });

  it('a membership change is applied only after a batch that makes its commit index durable (never on a deferred one)', async () => {
    const leader = leaderOf('r2')!;
    const before = new Map([...engines].map(([id, e]) => [id, e.durableCommitBatches]));
    await settled(leader.proposeConfChange('r2', { type: ConfChangeType.AddLearner, nodeId: 99, context: JSON.stringify({ nodeId: 9 }) }), 'adding a learner');
    await waitFor(() => [...servers.values()].every((s) => s.replica('r2')!.raft.status().confState.learners.includes(99)), 'every replica to apply the change');
    for (const [id, engine] of engines) expect(engine.durableCommitBatches - before.get(id)!, `node ${id}`).to.be.greaterThan(0);
    await settled(leader.proposeConfChange('r2', { type: ConfChangeType.RemoveNode, nodeId: 99, context: '' }), 'removing the learner');
  });
});

/**
 * Object-store faults for the replicas of one node: `missing` is an SST that GC deleted (the read
 * can never succeed), `outage` a store that does not answer for a while.
 */
type StoreFault = 'missing' | 'outage';

class FaultyStore {
  readonly faults = new Map<string, StoreFault>();
  set(nodeId: number, regionId: string, fault: StoreFault | undefined): void {
    if (fault) this.faults.set(`${nodeId}/${regionId}`, fault);
    else this.faults.delete(`${nodeId}/${regionId}`);
  }
  /** What reading an SST would throw on this node for this region, like RegionState's conditional write. */
  error(nodeId: number, regionId: string, index: number): RegionDbError | undefined {
    const fault = this.faults.get(`${nodeId}/${regionId}`);
    if (!fault) return undefined;
    const cause =
      fault === 'missing'
        ? new RegionDbError(ErrorCode.NotFound, `SST object regions/${regionId}/sst/1.sst not found`)
        : new RegionDbError(ErrorCode.StorageUnavailable, 'object store: connect ECONNREFUSED');
    return new RegionDbError(ErrorCode.StorageUnavailable, `region ${regionId}: cannot read SSTs to check the conditional write at index ${index}: ${cause.message}`, { cause });
  }
}

describe('RegionServer: a replica that cannot apply fails alone (issue 14 item 5)', () => {
  const servers = new Map<number, RegionServer<ConditionalCounter>>();
  const store = new FaultyStore();
  /** Raft messages sent, per `${fromNode}/${region}`. */
  const sent = new Map<string, number>();
  /** Raft messages from these `${fromNode}/${region}` are lost. */
  const muted = new Set<string>();
  const peers = [
    { peerId: 21, nodeId: 1 },
    { peerId: 22, nodeId: 2 },
    { peerId: 23, nodeId: 3 },
  ];
  const regions = ['f1', 'f2', 'f3'];
  const retry = { backoffMsMin: 10, backoffMsMax: 40, windowMs: 1500 };
  const clock = new HandClock();
  const { until: waitFor, settled } = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);

  before(async () => {
    for (const nodeId of [1, 2, 3]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) {
          sent.set(`${from}/${e.regionId}`, (sent.get(`${from}/${e.regionId}`) ?? 0) + 1);
          if (!muted.has(`${from}/${e.regionId}`)) servers.get(to)?.step(from, e.regionId, e.message);
        }
      });
      const server = new RegionServer<ConditionalCounter>(
        nodeId,
        new MemoryLogEngine(),
        transport,
        {
          create: (regionId) =>
            new ConditionalCounter((index) =>
              Promise.resolve().then(() => {
                const err = store.error(nodeId, regionId, index);
                if (err) throw err;
              }),
            ),
        },
        { ...defaultRaftTuning, tickMs: TICK_MS, snapshotEveryEntries: 1000, applyRetry: retry },
        silentLogger,
        clock,
      );
      servers.set(nodeId, server);
    }
    for (const [nodeId, server] of servers) {
      for (const regionId of regions) await server.open({ regionId, selfPeerId: 20 + nodeId, peers, bootstrap: true });
      server.start();
    }
    await waitFor(() => regions.every((r) => leaderOf(r) !== undefined), 'leaders');
  });

  after(async () => {
    for (const server of servers.values()) await server.stop();
  });

  function leaderOf(regionId: string): RegionServer<ConditionalCounter> | undefined {
    return [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  }
  function followerOf(regionId: string): RegionServer<ConditionalCounter> {
    return [...servers.values()].find((s) => s.replica(regionId) && !s.replica(regionId)!.isLeader())!;
  }
  const counterOf = (server: RegionServer<ConditionalCounter>, regionId: string) => server.replica(regionId)?.stateMachine;

  it('an apply that can never succeed (its SST was garbage-collected) fails only that replica, naming region and index; the node keeps serving its other regions', async () => {
    const follower = followerOf('f1');
    store.set(follower.nodeId, 'f1', 'missing');
    const index = await settled(leaderOf('f1')!.propose('f1', new Uint8Array([0])), 'the conditional write');
    await waitFor(() => follower.failure(`f1`) !== undefined || follower.fatalError() !== undefined, 'the replica to fail');
    expect(follower.fatalError(), 'the datanode itself must not stop').to.equal(undefined);
    const failure = follower.failure('f1')!;
    expect(failure.index).to.equal(index);
    expect(failure.reason).to.include('region f1').and.include(`index ${index}`).and.include('not found');
    expect(follower.replica('f1'), 'a failed replica is fenced').to.equal(undefined);
    expect(follower.failedReplicas().map((f) => f.regionId)).to.deep.equal(['f1']);
    // The same node still applies and serves its other regions.
    const other = await settled(leaderOf('f2')!.propose('f2', new Uint8Array([7])), 'a write of f2');
    await waitFor(() => (follower.replica('f2')?.appliedIndex ?? 0) >= other, 'the node to apply region f2');
    await settled(follower.readBarrier('f2'), 'a read of f2');
  });

  it('a failed replica answers requests for its region with UNAVAILABLE and its reason', async () => {
    const failedOn = [...servers.values()].find((s) => s.failure('f1'))!;
    for (const attempt of [() => failedOn.readBarrier('f1'), () => failedOn.propose('f1', new Uint8Array([1]))]) {
      try {
        await settled<unknown>(attempt(), 'the refusal');
        expect.fail('must refuse');
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
        expect((err as Error).message).to.include('region f1').and.include('not found');
      }
    }
  });

  it('a failed replica takes no part in its raft group any more: it sends nothing while the others commit', async () => {
    const failedOn = [...servers.values()].find((s) => s.failure('f1'))!;
    const before = sent.get(`${failedOn.nodeId}/f1`) ?? 0;
    const leader = leaderOf('f1')!;
    const heartbeatsBefore = sent.get(`${leader.nodeId}/f1`) ?? 0;
    await settled(leader.propose('f1', new Uint8Array([3])), 'a write of f1');
    await waitFor(() => (sent.get(`${leader.nodeId}/f1`) ?? 0) >= heartbeatsBefore + 20, 'the leader to send 20 more messages');
    expect(sent.get(`${failedOn.nodeId}/f1`) ?? 0).to.equal(before);
  });

  it('a transient object-store outage is retried with backoff: the replica refuses reads while it lags, then catches up and stays healthy', async () => {
    const follower = followerOf('f2');
    store.set(follower.nodeId, 'f2', 'outage');
    const index = await settled(leaderOf('f2')!.propose('f2', new Uint8Array([0])), 'the conditional write');
    await waitFor(() => (follower.applyStall('f2')?.attempts ?? 0) >= 2 || follower.fatalError() !== undefined, 'two failed attempts');
    expect(follower.fatalError(), 'the datanode itself must not stop').to.equal(undefined);
    expect(follower.failure('f2')).to.equal(undefined);
    const read = await settled(
      Promise.resolve()
        .then(() => follower.readBarrier('f2'))
        .then(
          () => 'served',
          (err: unknown) => err,
        ),
      'the read on the stalled replica',
    );
    expect(read, 'a replica that cannot apply must not serve a linearizable read').to.not.equal('served');
    expect(isRegionDbError(read, ErrorCode.Unavailable), String(read)).to.equal(true);
    // Its log is sound, so it keeps acknowledging appends: with the third replica silent, the
    // leader commits through it. Entries committed meanwhile apply after the stalled one, in order.
    const leader = leaderOf('f2')!;
    const third = [...servers.values()].find((s) => s !== leader && s !== follower)!;
    muted.add(`${third.nodeId}/f2`);
    let later: number;
    try {
      later = await settled(leader.propose('f2', new Uint8Array([5])), 'a write committed through the stalled replica');
    } finally {
      muted.delete(`${third.nodeId}/f2`);
    }
    expect(follower.applyStall('f2'), 'still stalled while it acknowledged').to.not.equal(undefined);
    store.set(follower.nodeId, 'f2', undefined);
    await waitFor(() => (follower.replica('f2')?.appliedIndex ?? 0) >= later, 'the replica to catch up');
    expect(follower.applyStall('f2')).to.equal(undefined);
    expect(follower.failure('f2')).to.equal(undefined);
    expect(counterOf(follower, 'f2')!.total).to.equal(counterOf(leaderOf('f2')!, 'f2')!.total);
    expect(index).to.be.below(later);
    await settled(follower.readBarrier('f2'), 'a read on the caught-up replica');
  });

  it('an outage longer than the retry window fails the replica (it cannot make progress): the metasrv repairs it', async () => {
    const follower = followerOf('f3');
    store.set(follower.nodeId, 'f3', 'outage');
    const index = await settled(leaderOf('f3')!.propose('f3', new Uint8Array([0])), 'the conditional write');
    // The window (1500 ms: 300 ticks) and one longest backoff, with slack.
    await waitFor(() => follower.failure('f3') !== undefined || follower.fatalError() !== undefined, 'the replica to fail', 2 * (retry.windowMs + retry.backoffMsMax) / TICK_MS);
    expect(follower.fatalError()).to.equal(undefined);
    expect(follower.failure('f3')!.index).to.equal(index);
    expect(follower.failure('f3')!.reason, follower.failure('f3')!.reason).to.match(/retried for \d+ ms/);
    store.set(follower.nodeId, 'f3', undefined);
  });
});

describe('RegionServer: a replica whose log is damaged does not start (issue 14 item 3)', () => {
  const clock = new HandClock();
  const { until: waitFor, settled } = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);

  it('opens the other replicas; the damaged one is reported failed with its region and index, and stays failed when opened again under the same peer id', async () => {
    const engine = new MemoryLogEngine();
    engine.damaged.set('d1', { regionId: 'd1', index: 17, reason: 'WAL corruption in region d1 at index 17: crc32c mismatch' });
    const server = new RegionServer<ConditionalCounter>(
      1,
      engine,
      new LoopbackTransport(1, () => {}),
      { create: () => new ConditionalCounter(() => Promise.resolve()) }, // its reads never fail
      { ...defaultRaftTuning, tickMs: TICK_MS },
      silentLogger,
      clock,
    );
    const solo = [{ peerId: 31, nodeId: 1 }];
    expect(await server.open({ regionId: 'd1', selfPeerId: 31, peers: solo, bootstrap: false })).to.equal(undefined);
    await server.open({ regionId: 'd2', selfPeerId: 31, peers: solo, bootstrap: true });
    server.start();
    try {
      expect(server.failure('d1')).to.include({ regionId: 'd1', selfPeerId: 31, index: 17 });
      expect(server.failure('d1')!.reason).to.include('region d1 at index 17');
      expect(server.replica('d1')).to.equal(undefined);
      expect(engine.stores.has('d1'), 'nothing was read or written for the damaged region').to.equal(false);
      await waitFor(() => server.replica('d2')?.isLeader() === true, 'd2 leader');
      expect(await settled(server.propose('d2', new Uint8Array([1])), 'a write of d2')).to.be.above(0);
      expect(await server.open({ regionId: 'd1', selfPeerId: 31, peers: solo, bootstrap: false })).to.equal(undefined);
      expect(server.failure('d1')!.index).to.equal(17);
    } finally {
      await server.stop();
    }
  });
});
