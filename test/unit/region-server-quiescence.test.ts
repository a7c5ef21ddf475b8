// The region server's side of quiescence (docs/quiescence.md): idle leaders quiesce their
// regions, a sleeping node sends one liveness beat per peer node per tick and nothing else, a
// proposal wakes its region, and a silent node is taken as down so the followers of its leaders
// elect a new one.
//
// The servers run on one hand-moved clock (test/fixtures/hand-clock.ts): their tickers fire when
// the test advances it, so every count below is in ticks and exact, whatever the machine's load.
import { expect } from 'chai';
import { silentLogger } from '../../src/common/logger.js';
import { NODE_BEAT_REGION_ID, RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { HandClock, settle, tickBy, ticksUntil, whileTicking } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';
import { META_GROUP_ID } from '../../src/metasrv/meta-group.js';

const REGIONS = ['q1', 'q2', 'q3'];
const TICK_MS = 5;
/** Generous bounds for what takes a few ticks: a stuck cluster fails, naming what it waited for. */
const ELECTION_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;
const SETTLE_TICKS_MAX = 100;
/** A peer silent for 30 ticks (150 ms) is taken as down. */
const NODE_DOWN_AFTER_TICKS = 30;

describe('RegionServer quiescence (docs/quiescence.md)', () => {
  const servers = new Map<number, RegionServer<Counter>>();
  /** Nodes whose every outgoing message is lost (a node gone silent). */
  const mute = new Set<number>();
  /** Envelopes delivered, by region id (NODE_BEAT_REGION_ID for beats). */
  const delivered = new Map<string, number>();
  const peers = [1, 2, 3].map((nodeId) => ({ peerId: 20 + nodeId, nodeId }));
  const clock = new HandClock();
  const tick = (n: number) => tickBy(clock, TICK_MS, n);

  before(async () => {
    for (const nodeId of [1, 2, 3]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        if (mute.has(from)) return;
        for (const e of envelopes) {
          delivered.set(e.regionId, (delivered.get(e.regionId) ?? 0) + 1);
          servers.get(to)?.step(from, e.regionId, e.message);
        }
      });
      const server = new RegionServer<Counter>(
        nodeId,
        new MemoryLogEngine(),
        transport,
        { create: () => new Counter() },
        // 5 ms ticks: quiesce after 4 idle ticks; a peer silent for 30 ticks (150 ms) is down.
        { ...defaultRaftTuning, tickMs: TICK_MS, quiesceIdleTicks: 4, nodeDownAfterTicks: NODE_DOWN_AFTER_TICKS },
        silentLogger,
        clock,
      );
      servers.set(nodeId, server);
      for (const regionId of REGIONS) await server.open({ regionId, selfPeerId: 20 + nodeId, peers, bootstrap: true });
      server.start();
    }
    await settle();
  });

  after(async () => {
    for (const server of servers.values()) await server.stop();
  });

  const leaderOf = (regionId: string) => [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  const allAsleep = () => [...servers.values()].every((s) => REGIONS.every((r) => s.isQuiesced(r)));

  it('idle regions quiesce on every replica; then the nodes exchange liveness beats and nothing else', async () => {
    await ticksUntil(clock, TICK_MS, () => REGIONS.every((r) => leaderOf(r) !== undefined), 'a leader per region', ELECTION_TICKS_MAX);
    await ticksUntil(clock, TICK_MS, allAsleep, 'every replica quiesced', SETTLE_TICKS_MAX);
    const before = new Map(delivered);
    await tick(40);
    const regionMessages = REGIONS.map((r) => (delivered.get(r) ?? 0) - (before.get(r) ?? 0));
    expect(regionMessages).to.deep.equal([0, 0, 0]);
    // One beat per tick from each node to each of its two peers: 6 node pairs (ordered) a tick.
    expect((delivered.get(NODE_BEAT_REGION_ID) ?? 0) - (before.get(NODE_BEAT_REGION_ID) ?? 0)).to.equal(6 * 40);
    expect(allAsleep()).to.equal(true);
  });

  it('a proposal wakes its region, is applied on every replica, and the region sleeps again', async () => {
    const leader = leaderOf('q1')!;
    expect(await whileTicking(clock, TICK_MS, leader.propose('q1', new Uint8Array([7])), 'the write', SETTLE_TICKS_MAX)).to.equal(7);
    await ticksUntil(clock, TICK_MS, () => [...servers.values()].every((s) => s.replica('q1')!.stateMachine.total === 7), 'the write applied everywhere', SETTLE_TICKS_MAX);
    await ticksUntil(clock, TICK_MS, allAsleep, 'every replica quiesced again', SETTLE_TICKS_MAX);
  });

  it('a node gone silent is taken as down: the followers of its sleeping regions elect new leaders', async () => {
    await ticksUntil(clock, TICK_MS, allAsleep, 'every replica quiesced', SETTLE_TICKS_MAX);
    const victim = leaderOf('q2')!;
    const led = REGIONS.filter((r) => victim.replica(r)!.isLeader());
    const others = [...servers.values()].filter((s) => s !== victim);
    mute.add(victim.nodeId);
    try {
      // Its sleeping followers count no election timeout: nothing happens until its silence is judged...
      await tick(NODE_DOWN_AFTER_TICKS - 1);
      expect(others.map((s) => s.quiescence.nodesDown), 'taken as down before 30 silent ticks').to.deep.equal([0, 0]);
      expect(led.filter((r) => others.some((s) => s.replica(r)!.isLeader())), 'new leaders before the silence was judged').to.deep.equal([]);
      // ...then it is taken as down (after 30 ticks, 150 ms of silence) and a campaign follows
      // within two ticks: well under the second (200 ticks) this test allowed on the wall clock.
      const took = await ticksUntil(clock, TICK_MS, () => led.every((r) => others.some((s) => s.replica(r)!.isLeader())), "new leaders for the silent node's regions", 200);
      expect(NODE_DOWN_AFTER_TICKS - 1 + took, 'silent ticks until every region it led has a new leader').to.be.at.most(NODE_DOWN_AFTER_TICKS + 2);
      expect(others.every((s) => s.quiescence.nodesDown > 0)).to.equal(true);
    } finally {
      mute.delete(victim.nodeId);
    }
  });

  // Register seeds 3488 and 4608 of the whole-datanode simulator: a leader replica closed on a
  // running node (destroy off) while its followers slept; the node's beats went on, so nothing told
  // them, and the region had no leader until the metasrv reopened the replica. Before
  // Raft.handOffOnClose this test waited out its bound with no new leader.
  it('a leader replica closed on a running node hands off: a follower of its sleeping region leads within a few ticks', async () => {
    await ticksUntil(clock, TICK_MS, () => REGIONS.every((r) => leaderOf(r) !== undefined), 'a leader per region', ELECTION_TICKS_MAX);
    await ticksUntil(clock, TICK_MS, allAsleep, 'every replica quiesced', SETTLE_TICKS_MAX);
    const region = 'q3';
    const closing = leaderOf(region)!;
    const others = [...servers.values()].filter((s) => s !== closing);
    await closing.close(region, false);
    const took = await ticksUntil(clock, TICK_MS, () => others.some((s) => s.replica(region)?.isLeader()), 'a new leader of the closed leader\'s region', 20);
    expect(took, 'ticks from the close to a new leader (an election timeout is 10–20)').to.be.at.most(3);
    // The closed replica opens again from its log and follows.
    await closing.open({ regionId: region, selfPeerId: 20 + closing.nodeId, peers, bootstrap: false });
    await ticksUntil(clock, TICK_MS, () => closing.replica(region)?.raft.leader !== undefined && closing.replica(region)!.raft.leader !== 0 && !closing.replica(region)!.isLeader(), 'the reopened replica follows', SETTLE_TICKS_MAX);
  });
});

// The beat's region id was '0' once — the metasrv group's id — and every region server dropped
// the metasrv group's raft traffic as beats: no metasrv group ever elected a leader.
describe('RegionServer: the liveness beat id is no group id', () => {
  it("a group with the metasrv group's id ('0') elects a leader and applies, beats on or off", async () => {
    expect(() => BigInt(NODE_BEAT_REGION_ID), 'a beat id that parses as a region id').to.throw();
    for (const quiesceIdleTicks of [0, 4]) {
      const clock = new HandClock();
      const servers = new Map<number, RegionServer<Counter>>();
      const peers = [1, 2, 3].map((nodeId) => ({ peerId: 20 + nodeId, nodeId }));
      try {
        for (const nodeId of [1, 2, 3]) {
          const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
            for (const e of envelopes) servers.get(to)?.step(from, e.regionId, e.message);
          });
          const server = new RegionServer<Counter>(nodeId, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, quiesceIdleTicks }, silentLogger, clock);
          servers.set(nodeId, server);
          await server.open({ regionId: META_GROUP_ID, selfPeerId: 20 + nodeId, peers, bootstrap: true });
          server.start();
        }
        await ticksUntil(clock, TICK_MS, () => [...servers.values()].some((s) => s.replica(META_GROUP_ID)?.isLeader()), `a leader of group '${META_GROUP_ID}' (quiesceIdleTicks ${quiesceIdleTicks})`, ELECTION_TICKS_MAX);
        const leader = [...servers.values()].find((s) => s.replica(META_GROUP_ID)?.isLeader())!;
        expect(await whileTicking(clock, TICK_MS, leader.propose(META_GROUP_ID, new Uint8Array([3])), 'the write', SETTLE_TICKS_MAX)).to.equal(3);
      } finally {
        for (const server of servers.values()) await server.stop();
      }
    }
  });

  it('a region server refuses to open a group under the beat id', async () => {
    const server = new RegionServer<Counter>(1, new MemoryLogEngine(), new LoopbackTransport(1, () => {}), { create: () => new Counter() }, defaultRaftTuning, silentLogger, new HandClock());
    const err = await server.open({ regionId: NODE_BEAT_REGION_ID, selfPeerId: 1, peers: [{ peerId: 1, nodeId: 1 }], bootstrap: true }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.contain('reserved for node liveness beats');
  });
});
