// The datanode's write barrier for consistent backups (src/datanode/write-barrier.ts, B1–B3) and
// the backup's barrier coordinator (src/br/barrier.ts), each against fakes on virtual time.
import { expect } from 'chai';
import { type BarrierClient, type BarrierRegion, runBarrier } from '../../src/br/barrier.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import { WriteBarrier } from '../../src/datanode/write-barrier.js';
import { Incarnation, SimScheduler } from '../sim/sim-world.js';

function world() {
  const sched = new SimScheduler();
  const clock = sched.clockFor(new Incarnation(1, 1));
  return { sched, clock, barrier: new WriteBarrier(clock) };
}

describe('write barrier (consistent backup, datanode half)', () => {
  it('B1: writes wait while a region is held and go, in arrival order, when it is released', async () => {
    const { barrier } = world();
    expect(barrier.wait('r1'), 'no hold: a write goes at once').to.equal(undefined);
    barrier.hold('r1', 'b1', 7, 1000);
    const order: number[] = [];
    const waits = [1, 2, 3].map((n) => barrier.wait('r1')!.then(() => order.push(n)));
    expect(barrier.wait('r2'), 'another region is not held').to.equal(undefined);
    await Promise.resolve();
    expect(order).to.deep.equal([]);
    const outcome = barrier.release('r1', 'b1');
    await Promise.all(waits);
    expect(order).to.deep.equal([1, 2, 3]);
    expect(outcome?.writesHeld).to.equal(3);
    expect(barrier.wait('r1'), 'released: writes go at once').to.equal(undefined);
  });

  it('B3: a hold ends by itself after hold_ms, released or not, and is then no longer active', async () => {
    const { sched, barrier } = world();
    barrier.hold('r1', 'b1', 7, 500);
    let went = false;
    void barrier.wait('r1')!.then(() => (went = true));
    await sched.runUntil(499);
    expect(went).to.equal(false);
    expect(barrier.active('r1', 'b1')?.term).to.equal(7);
    await sched.runUntil(500);
    expect(went).to.equal(true);
    expect(barrier.active('r1', 'b1'), 'an expired hold cannot be frozen under').to.equal(undefined);
    expect(barrier.release('r1', 'b1'), 'nothing to release').to.equal(undefined);
  });

  it('one barrier at a time holds a region; the same barrier holding again is a no-op', () => {
    const { barrier } = world();
    barrier.hold('r1', 'b1', 7, 1000);
    expect(barrier.hold('r1', 'b1', 7, 1000).barrierId).to.equal('b1');
    expect(() => barrier.hold('r1', 'b2', 7, 1000)).to.throw(RegionDbError).with.property('code', ErrorCode.ConditionFailed);
    expect(barrier.release('r1', 'b2'), 'another barrier cannot release it').to.equal(undefined);
    expect(barrier.active('r1', 'b1')).to.not.equal(undefined);
  });

  it('refuses a hold longer than the bound, or of no time', () => {
    const { barrier } = world();
    expect(() => barrier.hold('r1', 'b1', 1, limits.brBarrierHoldMsMax + 1)).to.throw(/hold_ms/);
    expect(() => barrier.hold('r1', 'b1', 1, 0)).to.throw(/hold_ms/);
    expect(barrier.heldRegions()).to.deep.equal([]);
  });

  it('releaseAll lets every waiting write go and ends every lease (the node stops)', async () => {
    const { barrier } = world();
    barrier.hold('r1', 'b1', 1, 1000);
    barrier.hold('r2', 'b1', 1, 1000);
    let released = 0;
    barrier.keepLease(() => released++, 3_600_000);
    const waits = [barrier.wait('r1')!, barrier.wait('r2')!];
    barrier.releaseAll();
    await Promise.all(waits);
    expect(barrier.heldRegions()).to.deep.equal([]);
    expect(released).to.equal(1);
    expect(barrier.leaseCount()).to.equal(0);
  });

  it('a kept SST lease ends by itself after its time', async () => {
    const { sched, barrier } = world();
    let released = 0;
    barrier.keepLease(() => released++, 5000);
    await sched.runUntil(4999);
    expect(released).to.equal(0);
    await sched.runUntil(5000);
    expect(released).to.equal(1);
    expect(barrier.leaseCount()).to.equal(0);
  });
});

/** A cluster of regions behind the barrier calls: holds, terms and freezes, with failures to plant. */
class FakeCluster implements BarrierClient {
  readonly held = new Map<string, string>();
  readonly calls: string[] = [];
  nextIndex = 100;
  /** Region ids whose next hold (or freeze) fails once. */
  failHold = new Set<string>();
  failFreeze = new Set<string>();

  async barrierHold(_table: string, regionId: string, barrierId: string): Promise<number> {
    this.calls.push(`hold ${regionId}`);
    if (this.failHold.delete(regionId)) throw new RegionDbError(ErrorCode.NotLeader, `not the leader of ${regionId}`);
    this.held.set(regionId, barrierId);
    return 3;
  }

  async barrierFreeze(_table: string, regionId: string, barrierId: string, term: number) {
    this.calls.push(`freeze ${regionId}`);
    // Every hold must be in place before any freeze (the cut's order).
    expect(this.calls.filter((c) => c.startsWith('hold')).length, 'all holds before the first freeze').to.be.at.least(this.held.size);
    if (this.held.get(regionId) !== barrierId) throw new RegionDbError(ErrorCode.ConditionFailed, 'not held');
    this.held.delete(regionId);
    if (this.failFreeze.delete(regionId)) throw new RegionDbError(ErrorCode.ConditionFailed, 'hold expired');
    return { freeze_index: String(this.nextIndex++), freeze_term: String(term), held_ms: 4, writes_held: 1, manifest: new Uint8Array([1]) };
  }

  async barrierRelease(_table: string, regionId: string, barrierId: string): Promise<boolean> {
    this.calls.push(`release ${regionId}`);
    if (this.held.get(regionId) !== barrierId) return false;
    this.held.delete(regionId);
    return true;
  }
}

const REGIONS: BarrierRegion[] = [
  { table: 'a', regionId: '4294967296', regionNumber: 0 },
  { table: 'a', regionId: '4294967297', regionNumber: 1 },
  { table: 'b', regionId: '8589934592', regionNumber: 0 },
];
const fast = { holdMs: 1000, sstLeaseMs: 1000, sleep: async () => {}, wallMs: () => 1_700_000_000_000 };

describe('barrier coordinator (consistent backup, src/br/barrier.ts)', () => {
  it('holds every region before freezing any, and reports each point and the longest pause', async () => {
    const cluster = new FakeCluster();
    const cut = await runBarrier(cluster, REGIONS, fast);
    expect(cluster.calls.slice(0, 3).every((c) => c.startsWith('hold'))).to.equal(true);
    expect(cluster.calls.slice(3).every((c) => c.startsWith('freeze'))).to.equal(true);
    expect(cut.points.map((p) => p.freezeIndex)).to.deep.equal([100, 101, 102]);
    expect(cut.attempts).to.equal(1);
    expect(cut.pauseMsMax).to.equal(4);
    expect(cut.writesHeld).to.equal(3);
    expect(cut.heldAtMs).to.equal(fast.wallMs());
    expect(cluster.held.size, 'no hold left behind').to.equal(0);
  });

  it('a refused hold abandons the attempt: the other holds are released before anything is frozen, and it retries', async () => {
    const cluster = new FakeCluster();
    cluster.failHold.add(REGIONS[1]!.regionId);
    const cut = await runBarrier(cluster, REGIONS, fast);
    expect(cut.attempts).to.equal(2);
    const firstFreeze = cluster.calls.findIndex((c) => c.startsWith('freeze'));
    expect(cluster.calls.slice(0, firstFreeze).filter((c) => c.startsWith('release')).length, 'released after the refused attempt').to.equal(3);
    expect(cluster.held.size).to.equal(0);
  });

  it('a freeze that fails (a hold expired, a leader moved) abandons the whole attempt, never a partial cut', async () => {
    const cluster = new FakeCluster();
    cluster.failFreeze.add(REGIONS[2]!.regionId);
    const cut = await runBarrier(cluster, REGIONS, fast);
    expect(cut.attempts).to.equal(2);
    expect(cut.points.map((p) => p.freezeIndex), 'points of the second attempt only').to.deep.equal([102, 103, 104]);
  });

  it('gives up after the attempts bound, naming each failure; writes were never held past holdMs', async () => {
    const cluster = new FakeCluster();
    const alwaysRefuse: BarrierClient = { ...cluster, barrierHold: async () => Promise.reject(new RegionDbError(ErrorCode.Unavailable, 'down')), barrierFreeze: cluster.barrierFreeze.bind(cluster), barrierRelease: cluster.barrierRelease.bind(cluster) };
    const err = await runBarrier(alwaysRefuse, REGIONS, { ...fast, attemptsMax: 3 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RegionDbError).with.property('code', ErrorCode.Unavailable);
    expect((err as Error).message).to.match(/attempt 3: hold of region .*down/);
  });
});
