// The region server's timing rules for many regions (docs/quiescence.md, "Calm first elections"):
// a burst of opens spreads its first campaigns over a window that grows with the burst, and a
// tick that runs late (this process's event loop stalled) judges no peer down before the loop has
// read what queued meanwhile. Ticks are driven by hand on a clock the test sets, so every count is
// exact (the election timeouts are seeded from the node id and the clock's start).
import { expect } from 'chai';
import { type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { MessageType, NO_NODE, roleName } from '../../src/raft/index.js';
import { NODE_BEAT_REGION_ID, RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const TICK_MS = 50;

/** A clock the test moves; timers are the real loop's (the ready cycles). */
function handClock(): TimedClock & { now: number } {
  const clock = { now: 1_000, nowMs: () => clock.now, ...systemScheduler };
  return clock;
}

/** Node 1's region server, its raft traffic going nowhere (peers on nodes 2 and 3), or to `sent`. */
function server(clock: TimedClock, tuning: Partial<typeof defaultRaftTuning>, sent?: { to: number; regionId: string }[]): RegionServer<Counter> {
  const transport = { send: (to: number, envelopes: { regionId: string }[]) => sent?.push(...envelopes.map((e) => ({ to, regionId: e.regionId }))), close: async () => {} };
  return new RegionServer<Counter>(1, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, ...tuning }, silentLogger, clock);
}

const peersOf = (i: number) => [1, 2, 3].map((nodeId) => ({ peerId: 3 * i + nodeId, nodeId }));

/** Opens `n` regions at once, then ticks on time until every replica has campaigned; the tick of each first campaign. */
async function firstCampaignTicks(n: number, firstCampaignsPerTick: number): Promise<number[]> {
  const clock = handClock();
  const s = server(clock, { firstCampaignsPerTick, quiesceIdleTicks: 0 });
  const regions = Array.from({ length: n }, (_, i) => `r${i}`);
  for (const [i, regionId] of regions.entries()) await s.open({ regionId, selfPeerId: 3 * i + 1, peers: peersOf(i), bootstrap: true });
  const campaignedAt = new Map<string, number>();
  for (let tick = 1; tick <= 2_000 && campaignedAt.size < n; tick++) {
    await new Promise<void>((ok) => setImmediate(ok)); // the ready cycles run (the bootstrap membership is applied)
    clock.now += TICK_MS;
    s.tick();
    for (const regionId of regions) if (!campaignedAt.has(regionId) && roleName[s.replica(regionId)!.raft.role] !== 'follower') campaignedAt.set(regionId, tick);
  }
  await s.stop();
  expect(campaignedAt.size, 'every replica campaigned within 2,000 ticks').to.equal(n);
  return [...campaignedAt.values()];
}

function perTick(ticks: number[]): number {
  const counts = new Map<number, number>();
  for (const t of ticks) counts.set(t, (counts.get(t) ?? 0) + 1);
  return Math.max(...counts.values());
}

describe('RegionServer timing at many regions (docs/quiescence.md, "Calm first elections")', () => {
  it('a burst of 400 opens campaigns within one election timeout without spreading, over ~100 ticks at 4 a tick with it', async () => {
    // Without spreading (0): every replica times out within [electionTicks, 2 × electionTicks).
    const unspread = await firstCampaignTicks(400, 0);
    expect(Math.max(...unspread)).to.be.below(2 * defaultRaftTuning.electionTicks + 1);
    expect(perTick(unspread)).to.be.at.least(30);
    // With 4 a tick: the first 40 (one election timeout's worth) at once, the k-th after them
    // counts ticks after ceil(k / 4): the 360 others over 90 ticks, each within its own timeout.
    const spread = await firstCampaignTicks(400, 4);
    expect(Math.max(...spread), 'the last first campaign').to.be.above(90).and.below(90 + 2 * defaultRaftTuning.electionTicks + 1);
    expect(perTick(spread), 'first campaigns in the busiest tick (4 a tick on average)').to.be.at.most(12);
  });

  it('a small burst is not spread (within the allowance: no delay)', async () => {
    const ticks = await firstCampaignTicks(30, 4);
    expect(Math.max(...ticks)).to.be.below(2 * defaultRaftTuning.electionTicks + 1);
  });

  it('a held replica that hears from a leader counts ticks again', async () => {
    const clock = handClock();
    const s = server(clock, { firstCampaignsPerTick: 1, quiesceIdleTicks: 0 });
    for (let i = 0; i < 200; i++) await s.open({ regionId: `r${i}`, selfPeerId: 3 * i + 1, peers: peersOf(i), bootstrap: true });
    expect(s.timing.campaignsHeld).to.be.greaterThan(150);
    // r199's leader (peer 3 × 199 + 2 on node 2) appends at term 2: a held follower learns it.
    const held = s.replica('r199')!;
    const leaderPeer = 3 * 199 + 2;
    s.step(2, 'r199', { type: MessageType.Heartbeat, from: leaderPeer, to: held.selfPeerId, term: 2, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: new Uint8Array(0) });
    expect(held.raft.leader).to.equal(leaderPeer);
    expect(held.tickHoldUntil).to.equal(0);
    expect(NO_NODE).to.not.equal(leaderPeer);
    await s.stop();
  });

  describe('the node failure detector and late ticks', () => {
    const beat = { type: MessageType.Heartbeat, from: NO_NODE, to: NO_NODE, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: new Uint8Array(0) };

    /** Node 1 hosting one region with peers on 2 and 3; node 3 beats every tick, node 2 as the test says. */
    async function detector() {
      const clock = handClock();
      const s = server(clock, { quiesceIdleTicks: 20, nodeDownAfterTicks: 8 });
      await s.open({ regionId: 'r0', selfPeerId: 1, peers: peersOf(0), bootstrap: true });
      const tick = (afterMs: number, node2Beats: boolean) => {
        clock.now += afterMs;
        s.tick();
        s.step(3, NODE_BEAT_REGION_ID, beat);
        if (node2Beats) s.step(2, NODE_BEAT_REGION_ID, beat);
      };
      tick(TICK_MS, true); // both nodes looked at and heard
      return { s, tick };
    }

    it('a peer silent for 8 on-time ticks is taken as down', async () => {
      const { s, tick } = await detector();
      for (let i = 0; i < 7; i++) tick(TICK_MS, false);
      expect(s.quiescence.nodesDown).to.equal(0);
      tick(TICK_MS, false);
      expect(s.quiescence.nodesDown).to.equal(1);
      await s.stop();
    });

    it('an overloaded node whose every tick is late still takes a dead peer as down (every other late tick judges)', async () => {
      const { s, tick } = await detector();
      for (let i = 0; i < 7; i++) tick(500, false); // 7 silent ticks, each 10 periods late
      expect(s.quiescence.nodesDown).to.equal(0);
      tick(500, false);
      tick(500, false); // 9 silent ticks: one of the last two judged
      expect(s.timing.lateTicks).to.equal(9);
      expect(s.quiescence.nodesDown).to.equal(1);
      await s.stop();
    });

    it('with beatEveryTicks 2 (the default is 1), beats go to every peer node every 2 ticks and at once on a late tick', async () => {
      const clock = handClock();
      const sent: { to: number; regionId: string }[] = [];
      const s = server(clock, { quiesceIdleTicks: 20, nodeDownAfterTicks: 8, beatEveryTicks: 2 }, sent);
      await s.open({ regionId: 'r0', selfPeerId: 1, peers: peersOf(0), bootstrap: true });
      const beatsAt: number[] = [];
      const tickAndCount = (afterMs: number, tick: number) => {
        clock.now += afterMs;
        sent.length = 0;
        s.tick();
        const beats = sent.filter((e) => e.regionId === NODE_BEAT_REGION_ID);
        if (beats.length > 0) {
          expect(beats.map((e) => e.to).sort()).to.deep.equal([2, 3]);
          beatsAt.push(tick);
        }
      };
      for (let t = 1; t <= 9; t++) tickAndCount(TICK_MS, t);
      expect(beatsAt).to.deep.equal([1, 3, 5, 7, 9]);
      tickAndCount(TICK_MS, 10); // one tick after the last beat: none
      tickAndCount(400, 11); // late (the loop stalled): a beat at once, although only one tick passed
      tickAndCount(TICK_MS, 12);
      tickAndCount(TICK_MS, 13);
      expect(beatsAt).to.deep.equal([1, 3, 5, 7, 9, 11, 13]);
      await s.stop();
    });

    it('a peer beating every 2 ticks is never taken as down; when it dies it is taken as down 6 to 8 ticks later', async () => {
      for (const diesAfterBeat of [false, true]) {
        const { s, tick } = await detector();
        const node2Beats = (t: number) => t % 2 === 0; // node 2's beats, every other tick
        let t = 0;
        for (; t < 40; t++) tick(TICK_MS, node2Beats(t));
        expect(s.quiescence.nodesDown, 'a live peer beating every 2 ticks').to.equal(0);
        // Node 2 dies: right after a beat (tick 40 carries its last), or right before one (its last was tick 38).
        const lastBeat = diesAfterBeat ? 40 : 38;
        if (diesAfterBeat) tick(TICK_MS, true);
        else tick(TICK_MS, false);
        t = 41;
        let downAt: number | undefined;
        for (; t < 60 && downAt === undefined; t++) {
          tick(TICK_MS, false);
          if (s.quiescence.nodesDown > 0) downAt = t;
        }
        expect(downAt! - lastBeat, 'taken as down 8 ticks after its last beat').to.equal(8);
        expect(downAt! - 40, 'the death (tick 40) to down: 6 to 8 ticks').to.be.within(6, 8);
        await s.stop();
      }
    });

    it('with beatEveryTicks 2, a loaded sender ticking every 1.9 periods (never late) that loses every other beat is never taken as down', async () => {
      // Counting ticks alone, the sender beat every 3.8 periods and one lost beat left the
      // receiver 7.6 periods of silence: taken as down at its default 8 ticks. The gap is now
      // bounded in wall time (1.5 periods at 2): it beats on every one of its slow ticks.
      const tuning = { quiesceIdleTicks: 20, nodeDownAfterTicks: 8, beatEveryTicks: 2 };
      const senderClock = handClock();
      const sent: { to: number; regionId: string }[] = [];
      const sender = server(senderClock, tuning, sent);
      await sender.open({ regionId: 'r0', selfPeerId: 1, peers: peersOf(0), bootstrap: true });
      const receiverClock = handClock();
      const receiver = server(receiverClock, tuning);
      await receiver.open({ regionId: 'r0', selfPeerId: 1, peers: peersOf(0), bootstrap: true });
      const senderPeriod = 1.9 * TICK_MS;
      let nextSender = senderPeriod;
      let nextReceiver = TICK_MS;
      let senderTicks = 0;
      let beats = 0;
      while (Math.min(nextSender, nextReceiver) < 20_000) {
        if (nextReceiver <= nextSender) {
          receiverClock.now = nextReceiver;
          receiver.tick();
          receiver.step(3, NODE_BEAT_REGION_ID, beat); // node 3 beats on time
          nextReceiver += TICK_MS;
        } else {
          senderClock.now = nextSender;
          sent.length = 0;
          sender.tick();
          senderTicks++;
          if (sent.some((e) => e.to === 2 && e.regionId === NODE_BEAT_REGION_ID)) {
            beats++;
            if (beats % 2 === 0) receiver.step(2, NODE_BEAT_REGION_ID, beat); // every other beat to node 2 is lost
          }
          nextSender += senderPeriod;
        }
        expect(receiver.quiescence.nodesDown, `taken as down at ${receiverClock.now} ms`).to.equal(0);
      }
      expect(sender.timing.lateTicks, 'the sender is never late').to.equal(0);
      expect(beats, 'a beat on every slow tick').to.equal(senderTicks);
      await sender.stop();
      await receiver.stop();
    });

    it('the tick right after a stall does not judge: the beat waiting in the socket is read first', async () => {
      const { s, tick } = await detector();
      for (let i = 0; i < 7; i++) tick(TICK_MS, false); // 7 silent ticks: one short of down
      tick(800, true); // the loop stalled 800 ms; its tick runs, then the beat queued meanwhile is read
      for (let i = 0; i < 4; i++) tick(TICK_MS, true);
      expect(s.quiescence.nodesDown, 'node 2 was never silent for 8 ticks that ran').to.equal(0);
      await s.stop();
    });
  });
});
