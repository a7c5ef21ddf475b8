// The region server's side of quiescence (docs/quiescence.md): idle leaders quiesce their
// regions, a sleeping node sends one liveness beat per peer node per tick and nothing else, a
// proposal wakes its region, and a silent node is taken as down so the followers of its leaders
// elect a new one.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { NODE_BEAT_REGION_ID, RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter, waitFor } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';
import { META_GROUP_ID } from '../../src/metasrv/meta-group.js';

const REGIONS = ['q1', 'q2', 'q3'];

describe('RegionServer quiescence (docs/quiescence.md)', () => {
  const servers = new Map<number, RegionServer<Counter>>();
  /** Nodes whose every outgoing message is lost (a node gone silent). */
  const mute = new Set<number>();
  /** Envelopes delivered, by region id (NODE_BEAT_REGION_ID for beats). */
  const delivered = new Map<string, number>();
  const peers = [1, 2, 3].map((nodeId) => ({ peerId: 20 + nodeId, nodeId }));

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
        { ...defaultRaftTuning, tickMs: 5, quiesceIdleTicks: 4, nodeDownAfterTicks: 30 },
        silentLogger,
        systemClock,
      );
      servers.set(nodeId, server);
      for (const regionId of REGIONS) await server.open({ regionId, selfPeerId: 20 + nodeId, peers, bootstrap: true });
      server.start();
    }
  });

  after(async () => {
    for (const server of servers.values()) await server.stop();
  });

  const leaderOf = (regionId: string) => [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  const allAsleep = () => [...servers.values()].every((s) => REGIONS.every((r) => s.isQuiesced(r)));

  it('idle regions quiesce on every replica; then the nodes exchange liveness beats and nothing else', async () => {
    await waitFor(() => REGIONS.every((r) => leaderOf(r) !== undefined), 'a leader per region');
    await waitFor(allAsleep, 'every replica quiesced');
    const before = new Map(delivered);
    await new Promise((r) => setTimeout(r, 200)); // 40 ticks
    const regionMessages = REGIONS.map((r) => (delivered.get(r) ?? 0) - (before.get(r) ?? 0));
    expect(regionMessages).to.deep.equal([0, 0, 0]);
    expect((delivered.get(NODE_BEAT_REGION_ID) ?? 0) - (before.get(NODE_BEAT_REGION_ID) ?? 0)).to.be.greaterThan(6 * 10); // 6 node pairs
    expect(allAsleep()).to.equal(true);
  });

  it('a proposal wakes its region, is applied on every replica, and the region sleeps again', async () => {
    const leader = leaderOf('q1')!;
    expect(await leader.propose('q1', new Uint8Array([7]))).to.equal(7);
    await waitFor(() => [...servers.values()].every((s) => s.replica('q1')!.stateMachine.total === 7), 'the write applied everywhere');
    await waitFor(allAsleep, 'every replica quiesced again');
  });

  it('a node gone silent is taken as down: the followers of its sleeping regions elect new leaders', async () => {
    await waitFor(allAsleep, 'every replica quiesced');
    const victim = leaderOf('q2')!;
    const led = REGIONS.filter((r) => victim.replica(r)!.isLeader());
    const others = [...servers.values()].filter((s) => s !== victim);
    mute.add(victim.nodeId);
    try {
      const started = Date.now();
      await waitFor(() => led.every((r) => others.some((s) => s.replica(r)!.isLeader())), 'new leaders for the silent node\'s regions', 3000);
      const elapsedMs = Date.now() - started;
      // Down after 150 ms of silence, a campaign within two ticks: well under a second.
      expect(elapsedMs).to.be.lessThan(1000);
      expect(others.every((s) => s.quiescence.nodesDown > 0)).to.equal(true);
    } finally {
      mute.delete(victim.nodeId);
    }
  });
});

// The beat's region id was '0' once — the metasrv group's id — and every region server dropped
// the metasrv group's raft traffic as beats: no metasrv group ever elected a leader.
describe('RegionServer: the liveness beat id is no group id', () => {
  it("a group with the metasrv group's id ('0') elects a leader and applies, beats on or off", async () => {
    expect(() => BigInt(NODE_BEAT_REGION_ID), 'a beat id that parses as a region id').to.throw();
    for (const quiesceIdleTicks of [0, 4]) {
      const servers = new Map<number, RegionServer<Counter>>();
      const peers = [1, 2, 3].map((nodeId) => ({ peerId: 20 + nodeId, nodeId }));
      try {
        for (const nodeId of [1, 2, 3]) {
          const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
            for (const e of envelopes) servers.get(to)?.step(from, e.regionId, e.message);
          });
          const server = new RegionServer<Counter>(nodeId, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: 5, quiesceIdleTicks }, silentLogger, systemClock);
          servers.set(nodeId, server);
          await server.open({ regionId: META_GROUP_ID, selfPeerId: 20 + nodeId, peers, bootstrap: true });
          server.start();
        }
        await waitFor(() => [...servers.values()].some((s) => s.replica(META_GROUP_ID)?.isLeader()), `a leader of group '${META_GROUP_ID}' (quiesceIdleTicks ${quiesceIdleTicks})`);
        const leader = [...servers.values()].find((s) => s.replica(META_GROUP_ID)?.isLeader())!;
        expect(await leader.propose(META_GROUP_ID, new Uint8Array([3]))).to.equal(3);
      } finally {
        for (const server of servers.values()) await server.stop();
      }
    }
  });

  it('a region server refuses to open a group under the beat id', async () => {
    const server = new RegionServer<Counter>(1, new MemoryLogEngine(), new LoopbackTransport(1, () => {}), { create: () => new Counter() }, defaultRaftTuning, silentLogger, systemClock);
    const err = await server.open({ regionId: NODE_BEAT_REGION_ID, selfPeerId: 1, peers: [{ peerId: 1, nodeId: 1 }], bootstrap: true }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.contain('reserved for node liveness beats');
  });
});
