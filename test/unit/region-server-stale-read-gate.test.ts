// The stale-read gate (docs/correctness.md 8g, finding E1's open part; docs/architecture.md §2):
// a replica serves a STALE read (its applied state, no ReadIndex) only while it leads, or has
// heard within the bound (the longest election timeout) from a leader that counts it — an append,
// heartbeat, snapshot or quiesce, which a leader sends only to the peers of its configuration.
// Past the bound a follower asks its leader for contact first (RegionServer.staleReadGate, 8h): a
// quiesced follower of a quiet region gets it and serves; a follower removed without learning it
// (finding E1), even a quiesced one that lost every message of its removal, never does and so
// refuses.
//
// Three region servers on one hand-moved clock, ticked by hand: every count is exact. The gate is
// asked through the datanode's DatabaseService (`readable`), as a Get or Scan asks it.
import { expect } from 'chai';
import { type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const TICK_MS = 50;
const REGION = 's';
/** The gate's bound: the longest randomized election timeout, 2 × electionTicks ticks. */
const BOUND_TICKS = 2 * defaultRaftTuning.electionTicks;

interface Cluster {
  readonly servers: Map<number, RegionServer<Counter>>;
  /** Nodes no message reaches (a leader that no longer sends to them, or a lost link). */
  readonly unreachable: Set<number>;
  /** Nodes whose every outgoing message is lost. */
  readonly mute: Set<number>;
  /** Nodes that lose every message of the region (their datanode's liveness beats still arrive). */
  readonly regionLost: Set<number>;
  /**
   * HeartbeatResponses without a context of the region sent, by node: a follower's answer to a
   * heartbeat or quiesce, or its request for leader contact (Raft.requestLeaderContact).
   */
  readonly asks: Map<number, number>;
  tick(n: number): Promise<void>;
  leader(): RegionServer<Counter> | undefined;
  stop(): Promise<void>;
}

/** Lets ready cycles and deliveries run (each is a setImmediate away). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((ok) => setImmediate(ok));
}

async function cluster(quiesceIdleTicks: number): Promise<Cluster> {
  // Timers on the hand-moved clock (the gate's wait for its leader's answer): fired by tick().
  const timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  const clock: TimedClock & { now: number } = {
    now: 1_000,
    nowMs: () => clock.now,
    ...systemScheduler,
    setTimeout: (fn, delayMs) => {
      const timer = { at: clock.now + delayMs, fn, cancelled: false };
      timers.push(timer);
      return { cancel: () => (timer.cancelled = true) };
    },
  };
  const servers = new Map<number, RegionServer<Counter>>();
  const unreachable = new Set<number>();
  const mute = new Set<number>();
  const regionLost = new Set<number>();
  const asks = new Map<number, number>();
  const peers = [1, 2, 3].map((nodeId) => ({ peerId: 10 + nodeId, nodeId }));
  for (const nodeId of [1, 2, 3]) {
    const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
      if (unreachable.has(to) || mute.has(from)) return;
      for (const e of envelopes) {
        if (e.regionId === REGION && regionLost.has(to)) continue; // the node's beats still arrive
        if (e.regionId === REGION && e.message.type === MessageType.HeartbeatResponse && e.message.context.length === 0) asks.set(from, (asks.get(from) ?? 0) + 1);
        servers.get(to)?.step(from, e.regionId, e.message);
      }
    });
    const tuning = { ...defaultRaftTuning, tickMs: TICK_MS, quiesceIdleTicks, firstCampaignsPerTick: 0 };
    const server = new RegionServer<Counter>(nodeId, new MemoryLogEngine(), transport, { create: () => new Counter() }, tuning, silentLogger, clock);
    servers.set(nodeId, server);
    await server.open({ regionId: REGION, selfPeerId: 10 + nodeId, peers, bootstrap: true });
  }
  await settle();
  return {
    servers,
    unreachable,
    mute,
    regionLost,
    asks,
    async tick(n) {
      for (let i = 0; i < n; i++) {
        clock.now += TICK_MS;
        for (const s of servers.values()) s.tick();
        for (const t of timers.splice(0)) {
          if (t.cancelled) continue;
          if (t.at <= clock.now) t.fn();
          else timers.push(t);
        }
        await settle();
      }
    },
    leader: () => [...servers.values()].find((s) => s.replica(REGION)?.isLeader()),
    async stop() {
      for (const s of servers.values()) await s.stop();
    },
  };
}

/**
 * A stale read of the region on `server`, through the datanode's gate: 'served', or the refusal.
 * A read the gate holds (a follower asking its leader for contact) is ticked through, at most
 * three election timeouts.
 */
async function staleRead(server: RegionServer<Counter>): Promise<'served' | Error> {
  const read = staleReadOnce(server);
  let result: 'served' | Error | undefined;
  read.then((r) => (result = r));
  await settle();
  for (let i = 0; i < 3 * defaultRaftTuning.electionTicks && result === undefined; i++) await c!.tick(1);
  if (result === undefined) throw new Error(`node ${server.nodeId}: the stale read was neither served nor refused within three election timeouts`);
  return result;
}

async function staleReadOnce(server: RegionServer<Counter>): Promise<'served' | Error> {
  const host = {
    nodeId: server.nodeId,
    regionServer: server,
    addressOf: () => undefined,
    metaCall: async () => {
      throw Object.assign(new Error('no metasrv in this test'), { code: 14 });
    },
  } as unknown as DatabaseHost;
  const service = new DatabaseService(host);
  const readable = (service as unknown as { readable(table: string, regionId: string, consistency: string): Promise<unknown> }).readable;
  return readable.call(service, 't', REGION, 'STALE').then(
    () => 'served' as const,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
}

/** Ticks until a leader is elected (at most 20 election timeouts). */
async function electLeader(c: Cluster): Promise<RegionServer<Counter>> {
  for (let i = 0; i < 20 * defaultRaftTuning.electionTicks && !c.leader(); i++) await c.tick(1);
  const leader = c.leader();
  expect(leader, 'a leader within 20 election timeouts').to.not.equal(undefined);
  return leader!;
}

/** Elects the region's leader, writes once, and lets 20 ticks pass without a message (enough to quiesce at 4 idle ticks); the leader. */
async function quietRegion(c: Cluster): Promise<RegionServer<Counter>> {
  const leader = await electLeader(c);
  await whileTicking(c, leader.propose(REGION, new Uint8Array([3])), 'a write');
  await c.tick(20);
  return leader;
}

/** Ticks until `cond` holds (at most `ticks` ticks). */
async function tickUntil(c: Cluster, cond: () => boolean, what: string, ticks = 100): Promise<void> {
  for (let i = 0; i < ticks && !cond(); i++) await c.tick(1);
  if (!cond()) throw new Error(`${what}: not within ${ticks} ticks`);
}

/** Resolves `promise` while the cluster keeps ticking (at most `ticks` ticks). */
async function whileTicking<T>(c: Cluster, promise: Promise<T>, what: string, ticks = 100): Promise<T> {
  let done: { value: T } | undefined;
  let failed: unknown;
  promise.then(
    (value) => {
      done = { value };
    },
    (err: unknown) => {
      failed = err ?? new Error('rejected');
    },
  );
  for (let i = 0; i < ticks && !done && failed === undefined; i++) await c.tick(1);
  if (failed !== undefined) throw failed;
  if (!done) throw new Error(`${what}: not done within ${ticks} ticks`);
  return done.value;
}

let c: Cluster | undefined;

describe('RegionServer: stale reads only from a replica a leader still counts (finding E1, 8g)', () => {
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('a replica that has heard from no leader since it opened refuses; the leader and its followers serve', async () => {
    c = await cluster(0);
    for (const s of c.servers.values()) {
      const refused = await staleRead(s);
      expect(refused, `node ${s.nodeId} before any leader`).to.be.instanceOf(Error);
    }
    const leader = await electLeader(c);
    await whileTicking(c, leader.propose(REGION, new Uint8Array([5])), 'a write');
    await c.tick(BOUND_TICKS * 3); // heartbeats keep coming: well past the bound, still served
    for (const s of c.servers.values()) expect(await staleRead(s), `node ${s.nodeId} (${s === leader ? 'leader' : 'follower'})`).to.equal('served');
  });

  it('a follower removed without learning it (its link cut through the removal) refuses once the bound passes, NOT_LEADER naming the region and the silence', async () => {
    c = await cluster(0);
    const leader = await electLeader(c);
    await whileTicking(c, leader.propose(REGION, new Uint8Array([5])), 'a write');
    await c.tick(defaultRaftTuning.heartbeatTicks * 2); // the followers learn the commit and apply
    const cut = [...c.servers.values()].find((s) => s !== leader)!;
    const cutPeer = cut.replica(REGION)!.selfPeerId;
    expect(await staleRead(cut), 'the follower before the cut').to.equal('served');
    // Nothing reaches the follower while the leader removes it; once the remaining voters applied
    // the removal the link is back, but no leader counts it any more: nothing is sent to it.
    c.unreachable.add(cut.nodeId);
    await whileTicking(c, leader.proposeConfChange(REGION, { type: ConfChangeType.RemoveNode, nodeId: cutPeer, context: '' }), 'the removal');
    const applied = (s: RegionServer<Counter>) => !s.replica(REGION)!.raft.confState().voters.includes(cutPeer);
    for (const s of c.servers.values()) if (s !== cut) await tickUntil(c, () => applied(s), `node ${s.nodeId} applies the removal`);
    c.unreachable.delete(cut.nodeId);
    await c.tick(BOUND_TICKS + 2);
    const replica = cut.replica(REGION)!;
    expect(replica.raft.confState().voters, 'the follower does not know it was removed').to.include(cutPeer);
    expect(replica.stateMachine.total, 'its state is frozen before the removal').to.equal(5);
    const refused = await staleRead(cut);
    expect(refused, 'a stale read on the cut-off follower').to.be.instanceOf(Error);
    expect(isRegionDbError(refused, ErrorCode.NotLeader), String(refused)).to.equal(true);
    expect(String((refused as Error).message)).to.match(new RegExp(`region ${REGION} .*heard from a leader .* ms ago`));
    // And it stays refused: it never hears from a leader again.
    await c.tick(BOUND_TICKS * 3);
    expect(await staleRead(cut), 'much later').to.be.instanceOf(Error);
    for (const s of c.servers.values()) if (s !== cut) expect(await staleRead(s), `remaining node ${s.nodeId}`).to.equal('served');
  });

  it('a follower whose leader went silent refuses once the bound passes (no election: the other follower cut too)', async () => {
    c = await cluster(0);
    const leader = await electLeader(c);
    const [f1, f2] = [...c.servers.values()].filter((s) => s !== leader) as [RegionServer<Counter>, RegionServer<Counter>];
    c.mute.add(leader.nodeId);
    c.mute.add(f2.nodeId); // f1 can win no election, and hears from no one
    await c.tick(BOUND_TICKS - 2);
    expect(await staleRead(f1), 'within the bound').to.equal('served');
    await c.tick(4);
    expect(await staleRead(f1), 'past the bound').to.be.instanceOf(Error);
    expect(await staleRead(leader), 'the leader (it counts itself) until it steps down').to.satisfy((r: unknown) => r === 'served' || !leader.replica(REGION)!.isLeader());
  });

  it('a quiesced quiet region: long past the bound its followers serve stale reads once their leader answered them (a request, then the region quiet again)', async () => {
    c = await cluster(4);
    const leader = await quietRegion(c);
    for (const s of c.servers.values()) expect(s.isQuiesced(REGION), `node ${s.nodeId} quiesced`).to.equal(true);
    await c.tick(BOUND_TICKS * 10); // ten bounds without a message of the region
    for (const s of c.servers.values()) expect(s.isQuiesced(REGION), `node ${s.nodeId} still quiesced`).to.equal(true);
    expect(await staleRead(leader), 'the leader').to.equal('served');
    let first = true;
    for (const s of c.servers.values()) {
      if (s === leader) continue;
      const asked = c.asks.get(s.nodeId) ?? 0;
      expect(await staleRead(s), `follower ${s.nodeId}, its contact ten bounds old`).to.equal('served');
      // The first follower asks; the heartbeats its request brought reach the other one too.
      if (first) expect((c.asks.get(s.nodeId) ?? 0) - asked, `follower ${s.nodeId} asked its leader`).to.equal(1);
      first = false;
      const again = c.asks.get(s.nodeId) ?? 0;
      expect(await staleRead(s), `follower ${s.nodeId} right after`).to.equal('served');
      expect(c.asks.get(s.nodeId) ?? 0, `follower ${s.nodeId}: no second request while its contact is fresh`).to.equal(again);
    }
    await c.tick(20);
    for (const s of c.servers.values()) expect(s.isQuiesced(REGION), `node ${s.nodeId} quiesced again`).to.equal(true);
  });

  it('a quiesced follower that lost every message of its own removal, its node still beating, refuses once the bound passes; an unanswered request is not repeated within a bound', async () => {
    c = await cluster(4);
    const leader = await quietRegion(c);
    const cut = [...c.servers.values()].find((s) => s !== leader)!;
    const cutPeer = cut.replica(REGION)!.selfPeerId;
    expect(cut.isQuiesced(REGION), 'quiesced').to.equal(true);
    // Every message of the region to the follower is lost while the leader removes it; its node's
    // liveness beats still arrive, so nothing tells it that its leader is gone.
    c.regionLost.add(cut.nodeId);
    await whileTicking(c, leader.proposeConfChange(REGION, { type: ConfChangeType.RemoveNode, nodeId: cutPeer, context: '' }), 'the removal');
    for (const s of c.servers.values()) {
      if (s !== cut) await tickUntil(c, () => !s.replica(REGION)!.raft.confState().voters.includes(cutPeer), `node ${s.nodeId} applies the removal`);
    }
    c.regionLost.delete(cut.nodeId);
    await c.tick(BOUND_TICKS + 2);
    const replica = cut.replica(REGION)!;
    expect(replica.raft.quiesced, 'the follower is still quiesced').to.equal(true);
    expect(replica.raft.confState().voters, 'the follower does not know it was removed').to.include(cutPeer);
    const asked = c.asks.get(cut.nodeId) ?? 0;
    const refused = await staleRead(cut);
    expect(refused, 'a stale read on the removed, quiesced follower').to.be.instanceOf(Error);
    expect(isRegionDbError(refused, ErrorCode.NotLeader), String(refused)).to.equal(true);
    expect((c.asks.get(cut.nodeId) ?? 0) - asked, 'it asked its leader').to.equal(1);
    // Within a bound of the unanswered request: refused at once, without asking again.
    expect(await staleRead(cut), 'right after').to.be.instanceOf(Error);
    expect((c.asks.get(cut.nodeId) ?? 0) - asked, 'no second request within the bound').to.equal(1);
    await c.tick(BOUND_TICKS * 3);
    expect(await staleRead(cut), 'much later').to.be.instanceOf(Error);
    for (const s of c.servers.values()) if (s !== cut) expect(await staleRead(s), `remaining node ${s.nodeId}`).to.equal('served');
  });

  it('a quiesced follower whose leader\'s node falls silent refuses once the bound passes', async () => {
    c = await cluster(4);
    const leader = await quietRegion(c);
    const [f1, f2] = [...c.servers.values()].filter((s) => s !== leader) as [RegionServer<Counter>, RegionServer<Counter>];
    expect(f1.isQuiesced(REGION), 'quiesced').to.equal(true);
    c.mute.add(leader.nodeId);
    c.mute.add(f2.nodeId); // no new leader for f1 to hear from
    await c.tick(BOUND_TICKS + defaultRaftTuning.nodeDownAfterTicks + 2);
    expect(await staleRead(f1), 'the leader\'s node silent past the bound').to.be.instanceOf(Error);
  });
});
