// Findings E14 and E15 (docs/correctness.md): a stall of the datanode process. E14: with lease
// reads (raft.read_only = "lease") it voids every replica's lease — seen by a late tick, or,
// before a read is handed to raft, by a tick that is overdue. The raft core's side (what a voided
// lease does) is tested in test/raft/read-index.test.ts; here the host's rule: when it voids, and
// that "safe" reads never do. E15: within the stale-read bound after a stall, a leader's stale
// read first confirms it still leads (a ReadIndex). The ticks are driven by hand on a clock the
// test moves.
import { expect } from 'chai';
import { type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { ReadOnlyOption } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const TICK_MS = 50;

interface Rig {
  clock: TimedClock & { now: number };
  server: RegionServer<Counter>;
  /** suspendLease calls per region. */
  voided: Map<string, number>;
}

/** Node 1 with two single-voter regions (each its own leader), every replica's suspendLease counted. */
async function rig(readOnly: ReadOnlyOption): Promise<Rig> {
  const clock = { now: 1_000, nowMs: () => clock.now, ...systemScheduler };
  const transport = { send: () => {}, close: async () => {} };
  const server = new RegionServer<Counter>(1, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, readOnly, quiesceIdleTicks: 0 }, silentLogger, clock);
  const voided = new Map<string, number>();
  for (const regionId of ['a', 'b']) {
    await server.open({ regionId, selfPeerId: 1, peers: [{ peerId: 1, nodeId: 1 }], bootstrap: true });
    const raft = server.replica(regionId)!.raft;
    const suspend = raft.suspendLease.bind(raft);
    voided.set(regionId, 0);
    raft.suspendLease = () => {
      voided.set(regionId, voided.get(regionId)! + 1);
      suspend();
    };
  }
  return { clock, server, voided };
}

const turn = () => new Promise<void>((ok) => setImmediate(ok));

/** Ticks on time until region `a` leads (its own single voter) and a read of it is served. */
async function settled(r: Rig): Promise<void> {
  for (let i = 0; i < 100 && !r.server.replica('a')!.isLeader(); i++) {
    await turn();
    r.clock.now += TICK_MS;
    r.server.tick();
  }
  await r.server.readBarrier('a');
}

describe('RegionServer: lease reads after a stall (finding E14)', () => {
  it('ticks on time void nothing; a late tick voids every replica\'s lease', async () => {
    const r = await rig('lease');
    await settled(r);
    expect([...r.voided.values()], 'on time').to.deep.equal([0, 0]);
    r.clock.now += 3 * TICK_MS; // the process was stalled for two ticks
    r.server.tick();
    expect([...r.voided.values()], 'after the late tick').to.deep.equal([1, 1]);
    await r.server.stop();
  });

  it('a read handed to raft while the next tick is overdue voids the leases first', async () => {
    const r = await rig('lease');
    await settled(r);
    const before = [...r.voided.values()];
    r.clock.now += 3 * TICK_MS; // stalled: the ticker has not run yet when the read is handled
    await r.server.readBarrier('a');
    expect([...r.voided.values()].map((n, i) => n - before[i]!)).to.deep.equal([1, 1]);
    // Within a tick of the last one: nothing.
    r.clock.now += TICK_MS;
    r.server.tick();
    const after = [...r.voided.values()];
    await r.server.readBarrier('a');
    expect([...r.voided.values()]).to.deep.equal(after);
    await r.server.stop();
  });

  it('with "safe" reads nothing is voided (every read takes its round anyway)', async () => {
    const r = await rig('safe');
    await settled(r);
    r.clock.now += 3 * TICK_MS;
    await r.server.readBarrier('a');
    r.server.tick();
    expect([...r.voided.values()]).to.deep.equal([0, 0]);
    await r.server.stop();
  });
});

describe('RegionServer: a leader\'s stale reads after a stall (finding E15)', () => {
  /** Counts readBarrier calls (the ReadIndex a leader's stale read takes after a stall); `refuse` makes them fail. */
  function watchBarriers(r: Rig, refuse = false): { calls: number } {
    const seen = { calls: 0 };
    const barrier = r.server.readBarrier.bind(r.server);
    r.server.readBarrier = (regionId: string) => {
      seen.calls++;
      return refuse ? Promise.reject(new Error('not the leader any more')) : barrier(regionId);
    };
    return seen;
  }

  for (const readOnly of ['safe', 'lease'] as const) {
    it(`${readOnly} reads: a leader serves stale reads at once, but within the bound after a stall only once a ReadIndex confirms it leads`, async () => {
      const r = await rig(readOnly);
      await settled(r);
      const barriers = watchBarriers(r);
      expect(await r.server.staleReadGate('a'), 'no stall').to.equal(undefined);
      expect(barriers.calls).to.equal(0);
      r.clock.now += 3 * TICK_MS; // stalled; the ticker has not run yet
      expect(await r.server.staleReadGate('a'), 'confirmed (a single voter leads)').to.equal(undefined);
      expect(barriers.calls, 'overdue tick').to.equal(1);
      r.server.tick(); // late: the stall is seen
      await r.server.staleReadGate('a');
      expect(barriers.calls, 'within the bound after the late tick').to.equal(2);
      for (let waited = 0; waited <= r.server.staleReadBoundMs; waited += TICK_MS) {
        r.clock.now += TICK_MS;
        r.server.tick();
      }
      await r.server.staleReadGate('a');
      expect(barriers.calls, 'past the bound, ticks on time').to.equal(2);
      await r.server.stop();
    });
  }

  it('a leader that cannot confirm it still leads after a stall refuses the stale read', async () => {
    const r = await rig('safe');
    await settled(r);
    watchBarriers(r, true);
    r.clock.now += 3 * TICK_MS;
    r.server.tick();
    const refusal = await r.server.staleReadGate('a');
    expect(refusal).to.match(/led when this process stalled and could not confirm that it still leads: not the leader any more/);
    await r.server.stop();
  });
});
