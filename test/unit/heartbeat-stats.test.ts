// Heartbeat stats rebuilt only for the replicas that changed (DatanodeCore.reportStats over
// RegionServer.takeChangedReplicas; docs/quiescence.md, "Heartbeats that carry what changed").
// The oracle is DatanodeCore.replicaStats(), which builds every replica's stat afresh: at every
// probe the stats a heartbeat would be built from must equal it, field by field and in order —
// also while an apply waits on I/O off the ready loop (its state machine changes when it lands,
// outside any cycle), in the middle of a ready cycle (the one taking the apply's outcome up has
// moved the applied index before its WAL write), right after one, and across opens and closes. And the point of it: once the regions
// are idle, a heartbeat builds no stat at all.
// Two planted region servers fail the deterministic cases: one that forgets the replicas of the
// cycle running now, one that does not mark what a cycle changed at its end.
// The random case is seeded: HEARTBEAT_STATS_SEED=<seed> replays it.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { SeededRand } from '../../src/common/rand.js';
import { DatanodeCore } from '../../src/datanode/datanode-core.js';
import type { StateMachine } from '../../src/raft/index.js';
import { type Replica, RegionServer, type RegionServerHooks, defaultRaftTuning } from '../../src/replication/region-server.js';
import { waitFor } from '../fixtures/counter-machine.js';
import { HookedLogEngine, LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const SEED = Number(process.env['HEARTBEAT_STATS_SEED'] ?? 7);

/** A counter whose applies can be held (an apply that waits on the object store, as the engine's can). */
class GatedCounter implements StateMachine<number> {
  total = 0;
  gate: Promise<void> | undefined;
  applying = 0;
  apply(_index: number, command: Uint8Array): number | Promise<number> {
    const add = () => {
      this.total += command[0]!;
      return this.total;
    };
    if (!this.gate) return add();
    this.applying++;
    return this.gate.then(() => {
      this.applying--;
      return add();
    });
  }
  serialize(): Uint8Array {
    return new TextEncoder().encode(String(this.total));
  }
}

type ServerClass = typeof RegionServer<GatedCounter, number>;

/** A log engine whose batch writes can be held (a cycle waiting in its fsync). */
class GatedLogEngine extends HookedLogEngine {
  private open: (() => void) | undefined;
  /** Writes waiting on the gate now. */
  waiting = 0;
  hold(): void {
    const gate = new Promise<void>((ok) => (this.open = ok));
    this.beforeCommit = async () => {
      this.waiting++;
      await gate;
      this.waiting--;
    };
  }
  release(): void {
    this.beforeCommit = undefined;
    this.open?.();
  }
}

/** Forgets the replicas of the cycle running now (their stats go stale while it runs). */
class ForgetsCycle extends RegionServer<GatedCounter, number> {
  protected override replicasInCycle(): Iterable<Replica<GatedCounter, number>> {
    return [];
  }
}

/** Does not mark what a cycle changed once it ends. */
class ForgetsCycleEnd extends RegionServer<GatedCounter, number> {
  protected override markCycleChanged(): void {}
}

interface Node {
  readonly core: DatanodeCore<GatedCounter, number>;
  readonly server: RegionServer<GatedCounter, number>;
  /** stateMachineStat calls: one per stat built. */
  builds: number;
}

function node(nodeId: number, deliver: (from: number, to: number, envelopes: Parameters<LoopbackTransport['send']>[1]) => void, Server: ServerClass, tickMs: number, engine: MemoryLogEngine = new MemoryLogEngine()): Node {
  const n = { builds: 0 } as { builds: number; core: DatanodeCore<GatedCounter, number>; server: RegionServer<GatedCounter, number> };
  n.core = new DatanodeCore<GatedCounter, number>({
    nodeId,
    clusterId: 'stats',
    storeId: `store-${nodeId}`,
    heartbeatIntervalMs: 1000,
    // The stats cache also starts over every `fullReportEvery` reports; far away here, so that an
    // idle probe is not the one that happens to start it over.
    fullReportEvery: 10_000,
    logEngine: engine,
    clock: systemClock,
    log: silentLogger,
    createRegionServer: (hooks: RegionServerHooks) =>
      new Server(nodeId, engine, new LoopbackTransport(nodeId, deliver), { create: () => new GatedCounter() }, { ...defaultRaftTuning, tickMs, quiesceIdleTicks: 4, nodeDownAfterTicks: 40 }, silentLogger, systemClock, hooks),
    stateMachineStat: (s) => {
      n.builds++;
      return { flushedIndex: 0, memtableBytes: s.total, ssts: s.applying };
    },
  });
  n.server = n.core.regionServer;
  return n;
}

/** The stats a heartbeat would carry now, and what building every stat afresh gives. */
function probe(n: Node): { reported: string; fresh: string } {
  const reported = JSON.stringify(n.core.reportStats());
  const fresh = JSON.stringify(n.core.replicaStats());
  return { reported, fresh };
}

const settle = () => new Promise((r) => setTimeout(r, 2));

describe('heartbeat stats rebuilt for changed replicas only (DatanodeCore.reportStats)', () => {
  /**
   * One single-voter region on one node, no ticks to speak of: a proposal's apply held on I/O (it
   * goes out off the ready loop), then the cycle that takes its outcome up held in its WAL write.
   * Probes: before, at every loop turn until the apply is out, while it is out, once it landed
   * (before any cycle took it up), while that cycle waits in its write, after it. Returns the
   * first probe that differed from the fresh stats.
   */
  async function gatedCycle(Server: ServerClass): Promise<string | undefined> {
    const engine = new GatedLogEngine();
    const n = node(1, () => {}, Server, 60_000, engine);
    try {
      const peers = [{ peerId: 11, nodeId: 1 }];
      await n.server.open({ regionId: 'r1', selfPeerId: 11, peers, bootstrap: true });
      await n.server.open({ regionId: 'r2', selfPeerId: 12, peers: [{ peerId: 12, nodeId: 1 }], bootstrap: true });
      n.server.start();
      // Campaign once the bootstrap membership is applied (a replica does not campaign before).
      await waitFor(() => {
        for (const r of ['r1', 'r2']) if (!n.server.replica(r)!.isLeader()) n.server.campaign(r);
        return n.server.replica('r1')!.isLeader() && n.server.replica('r2')!.isLeader();
      }, 'both leaders');
      // Both regions applied (a cycle's WAL write takes a loop turn, so r2's election can still be in
      // flight once r1 is applied; a probe must not meet it later, unmarked, under a planted server).
      const applied = (r: string) => n.server.replica(r)!.appliedIndex === n.server.replica(r)!.raft.log.committed;
      await waitFor(() => applied('r1') && applied('r2'), 'r1 and r2 applied');
      await settle();
      const mismatch = (p: { reported: string; fresh: string }, when: string) => (p.reported === p.fresh ? undefined : `${when}: ${p.reported} != ${p.fresh}`);
      let found = mismatch(probe(n), 'before');
      const sm = n.server.replica('r1')!.stateMachine;
      let release!: () => void;
      sm.gate = new Promise<void>((ok) => (release = ok));
      const done = n.server.propose('r1', new Uint8Array([5]));
      found ??= mismatch(probe(n), 'proposed, before the cycle'); // takes the proposal's mark
      // A probe at every turn of the loop until the apply waits: the leader's cycles (append and
      // write, then commit, write and apply) each end with a mark, which a probe takes.
      for (let turn = 0; turn < 1000 && sm.applying === 0; turn++) {
        await new Promise((r) => setImmediate(r));
        found ??= mismatch(probe(n), 'in a cycle, before the apply');
      }
      expect(sm.applying, 'the apply waiting on its gate').to.equal(1);
      found ??= mismatch(probe(n), 'the apply out');
      // The next write of the node waits: the cycle taking the apply's outcome up (it has a
      // proposal to write too) moves the applied index, then waits in that write.
      engine.hold();
      sm.gate = undefined;
      release();
      expect(await done).to.equal(5); // answered as the apply lands: before any cycle took its outcome up
      found ??= mismatch(probe(n), 'the apply out, landed, before a cycle took it up');
      const next = n.server.propose('r1', new Uint8Array([2]));
      await waitFor(() => engine.waiting > 0, 'the cycle taking the outcome up to wait in its write');
      found ??= mismatch(probe(n), 'in a cycle, its write held');
      engine.release();
      expect(await next).to.equal(7);
      await settle();
      found ??= mismatch(probe(n), 'after the cycle');
      found ??= mismatch(probe(n), 'again, nothing changed');
      return found;
    } finally {
      engine.release();
      await n.server.stop();
    }
  }

  it('a cycle with an apply held on I/O: the stats equal fresh ones before, during and after it', async () => {
    expect(await gatedCycle(RegionServer)).to.equal(undefined);
  });

  it('the check can fail: a region server forgetting the running cycle, or not marking its end, gives stale stats', async () => {
    const forgetsCycle = await gatedCycle(ForgetsCycle);
    expect(forgetsCycle, 'ForgetsCycle').to.be.a('string').and.match(/^(the apply out|in a cycle)/);
    const forgetsEnd = await gatedCycle(ForgetsCycleEnd);
    // Caught at the first probe after a cycle that changed a stat ended unmarked: usually the one
    // after the held write; on a loaded machine the election's last cycles can still be running
    // when the timer-polled waits above return, and a probe in the loop turns already sees one of
    // them unmarked (a stale commit or applied index). Either is the planted bug caught.
    expect(forgetsEnd, 'ForgetsCycleEnd').to.be.a('string').and.match(/^(in a cycle, before the apply|after the cycle):/);
  });

  it(`three nodes, seeded random proposals, held applies, leader transfers, opens and closes: every probe equals fresh stats; idle, a beat builds none (seed ${SEED})`, async () => {
    const rand = new SeededRand(SEED);
    const nodes = new Map<number, Node>();
    const deliver = (from: number, to: number, envelopes: Parameters<LoopbackTransport['send']>[1]) => {
      const s = nodes.get(to)?.server;
      if (s) for (const e of envelopes) s.step(from, e.regionId, e.message);
    };
    for (const id of [1, 2, 3]) nodes.set(id, node(id, deliver, RegionServer, 5));
    const regions = ['a', 'b', 'c', 'd', 'e', 'f'];
    const peersOf = (i: number) => [1, 2, 3].map((nodeId) => ({ peerId: 100 * (i + 1) + nodeId, nodeId }));
    const failures: string[] = [];
    const check = (when: string) => {
      for (const [id, n] of nodes) {
        const p = probe(n);
        if (p.reported !== p.fresh && failures.length < 3) failures.push(`seed ${SEED}, node ${id}, ${when}: reported ${p.reported} but fresh ${p.fresh}`);
      }
    };
    try {
      for (const n of nodes.values()) {
        for (const [i, regionId] of regions.entries()) await n.server.open({ regionId, selfPeerId: 100 * (i + 1) + n.server.nodeId, peers: peersOf(i), bootstrap: true });
        n.server.start();
      }
      const leaderOf = (regionId: string) => [...nodes.values()].find((n) => n.server.replica(regionId)?.isLeader());
      await waitFor(() => regions.every((r) => leaderOf(r) !== undefined), 'a leader per region');
      const pending: Promise<unknown>[] = [];
      let closed: { regionId: string; index: number } | undefined;
      for (let step = 0; step < 200; step++) {
        const action = rand.int(100);
        const regionId = rand.pick(regions);
        if (action < 35) {
          const leader = leaderOf(regionId);
          if (leader) pending.push(leader.server.propose(regionId, new Uint8Array([1 + rand.int(9)])).catch(() => undefined));
        } else if (action < 45) {
          // Hold the applies of one node for a few ms: its cycles wait mid-way.
          const n = nodes.get(1 + rand.int(3))!;
          let release!: () => void;
          const gate = new Promise<void>((ok) => (release = ok));
          for (const r of n.server.allReplicas()) r.stateMachine.gate = gate;
          setTimeout(() => {
            for (const r of n.server.allReplicas()) if (r.stateMachine.gate === gate) r.stateMachine.gate = undefined;
            release();
          }, 1 + rand.int(8));
        } else if (action < 52) {
          const leader = leaderOf(regionId);
          const to = peersOf(regions.indexOf(regionId))[rand.int(3)]!;
          if (leader && leader.server.replica(regionId)!.selfPeerId !== to.peerId) leader.server.transferLeader(regionId, to.peerId);
        } else if (action < 56 && closed === undefined) {
          // One node closes its replica of a region for a while (a membership change of the node).
          const n = nodes.get(1 + rand.int(3))!;
          closed = { regionId, index: n.server.nodeId };
          await n.server.close(regionId, false);
        } else if (action < 60 && closed !== undefined) {
          const n = nodes.get(closed.index)!;
          const i = regions.indexOf(closed.regionId);
          await n.server.open({ regionId: closed.regionId, selfPeerId: 100 * (i + 1) + n.server.nodeId, peers: peersOf(i), bootstrap: true });
          closed = undefined;
        } else if (action < 80) {
          await new Promise((r) => setTimeout(r, rand.int(12)));
        } else {
          check(`step ${step}`);
        }
        if (rand.int(4) === 0) await new Promise((r) => setImmediate(r));
      }
      if (closed !== undefined) {
        // Reopened, so that every region can quiesce (a leader waits for every follower).
        const n = nodes.get(closed.index)!;
        const i = regions.indexOf(closed.regionId);
        await n.server.open({ regionId: closed.regionId, selfPeerId: 100 * (i + 1) + n.server.nodeId, peers: peersOf(i), bootstrap: true });
      }
      await Promise.all(pending);
      check('after the last step');
      // Idle: every replica quiesces; a heartbeat then builds no stat, and still reports them all.
      await waitFor(() => [...nodes.values()].every((n) => n.server.allReplicas().every((r) => r.raft.quiesced)), 'every replica quiesced');
      await new Promise((r) => setTimeout(r, 30));
      check('idle');
      for (const n of nodes.values()) {
        const before = n.builds;
        const stats = n.core.reportStats();
        expect(n.builds - before, `stats built by an idle heartbeat on node ${n.server.nodeId}`).to.equal(0);
        expect(stats.length).to.equal(n.server.allReplicas().length);
        // Nothing marked: the last report's own array, frozen (the tracker then reads none of it).
        const again = n.core.reportStats();
        expect(again, `an idle heartbeat's stats on node ${n.server.nodeId}: the last report's array`).to.equal(stats);
        expect(Object.isFrozen(again)).to.equal(true);
      }
      expect(failures, failures.join('\n')).to.deep.equal([]);
    } finally {
      for (const n of nodes.values()) await n.server.stop();
    }
  });
});
