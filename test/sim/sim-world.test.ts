// The whole-datanode simulator's world (sim-world.ts) does what docs/simulation.md says: a synced
// write lands only when its fsync completes and a crash before that loses it; a commit-only
// write lands at once and a crash rolls it back to the last sync; a crashed incarnation's
// timers never fire; cut links drop messages, one direction at a time.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import type { RaftEnvelope } from '../../src/replication/transport.js';
import { EntryType, type Message, MessageType } from '../../src/raft/types.js';
import { Incarnation, SimDisk, SimNetwork, SimScheduler } from './sim-world.js';

const entry = (index: number, term: number) => ({ index, term, type: EntryType.Normal, data: new Uint8Array() });

describe('whole-datanode simulator world', () => {
  it('a synced batch lands when its fsync completes; a crash before that loses it', async () => {
    const sched = new SimScheduler();
    const disk = new SimDisk(sched, new SeededRand(1), { fsyncMsMin: 5, fsyncMsMax: 5 });
    const life = new Incarnation(1, 1);
    disk.owner = life;

    const first = disk.batch();
    first.append('r', [entry(1, 1)]);
    first.setHardState('r', { term: 1, vote: 1, commit: 0 });
    let landed = false;
    void first.commit().then(() => (landed = true));
    await sched.runUntil(4);
    expect(disk.region('r').lastIndex(), 'not on disk before the fsync completes').to.equal(0);
    await sched.runUntil(5);
    expect(landed).to.equal(true);
    expect(disk.region('r').lastIndex()).to.equal(1);

    const second = disk.batch();
    second.append('r', [entry(2, 1)]);
    let secondLanded = false;
    void second.commit().then(() => (secondLanded = true));
    await sched.runUntil(7);
    life.dead = true; // the process dies mid-fsync
    disk.crash();
    await sched.runUntil(100);
    expect(secondLanded).to.equal(false);
    expect(disk.region('r').lastIndex(), 'the unsynced entry is lost').to.equal(1);
    expect(disk.region('r').initialState().hardState).to.deep.equal({ term: 1, vote: 1, commit: 0 });
  });

  it('a commit-only batch is not synced: it lands at once and a crash rolls it back to the last sync', async () => {
    const sched = new SimScheduler();
    const disk = new SimDisk(sched, new SeededRand(2), { fsyncMsMin: 1, fsyncMsMax: 1 });
    const life = new Incarnation(1, 1);
    disk.owner = life;
    const synced = disk.batch();
    synced.append('r', [entry(1, 1), entry(2, 1)]);
    synced.setHardState('r', { term: 1, vote: 1, commit: 1 });
    void synced.commit();
    await sched.runUntil(1);

    const commitOnly = disk.batch();
    commitOnly.setHardState('r', { term: 1, vote: 1, commit: 2 });
    void commitOnly.commit();
    await sched.runUntil(1);
    expect(disk.region('r').initialState().hardState.commit).to.equal(2);
    expect(disk.unsyncedBatches).to.equal(1);
    life.dead = true;
    disk.crash();
    expect(disk.region('r').initialState().hardState.commit, 'back to the synced commit index').to.equal(1);
    expect(disk.region('r').lastIndex(), 'synced entries stay').to.equal(2);

    // requireDurableCommit makes the same write a synced one.
    const life2 = new Incarnation(1, 2);
    disk.owner = life2;
    const durable = disk.batch();
    durable.setHardState('r', { term: 1, vote: 1, commit: 2 });
    durable.requireDurableCommit();
    void durable.commit();
    await sched.runUntil(10);
    life2.dead = true;
    disk.crash();
    expect(disk.region('r').initialState().hardState.commit).to.equal(2);
  });

  it('a batch committed before a drop of its region does not bring the region back when its fsync lands after the drop (as the real WAL orders writes and drops)', async () => {
    const sched = new SimScheduler();
    const disk = new SimDisk(sched, new SeededRand(3), { fsyncMsMin: 5, fsyncMsMax: 5 });
    disk.owner = new Incarnation(1, 1);
    const first = disk.batch();
    first.setRegionMeta('r', new Uint8Array([1]));
    first.append('r', [entry(1, 1)]);
    void first.commit();
    await sched.runUntil(5);
    // A membership change's meta write in flight (datanode-core persistPeers) when the region is destroyed.
    const late = disk.batch();
    late.setRegionMeta('r', new Uint8Array([2]));
    late.append('r', [entry(2, 1)]);
    const other = disk.batch();
    other.setRegionMeta('s', new Uint8Array([3]));
    void late.commit();
    void other.commit();
    await disk.dropRegion('r');
    await sched.runUntil(20);
    expect(disk.getRegionMeta('r'), 'what the batch before the drop wrote is gone with the region').to.equal(undefined);
    expect(disk.regionIds()).to.not.include('r');
    expect(disk.getRegionMeta('s'), 'another region of the same moment lands').to.deep.equal(new Uint8Array([3]));
    // A replica opened again after the drop writes the region afresh.
    const again = disk.batch();
    again.setRegionMeta('r', new Uint8Array([4]));
    void again.commit();
    await sched.runUntil(30);
    expect(disk.getRegionMeta('r')).to.deep.equal(new Uint8Array([4]));
  });

  it("a crashed incarnation's timers never fire; ties fire in the order they were set", async () => {
    const sched = new SimScheduler();
    const a = new Incarnation(1, 1);
    const b = new Incarnation(2, 2);
    const fired: string[] = [];
    const clockA = sched.clockFor(a);
    const clockB = sched.clockFor(b);
    const tickA = clockA.setInterval(() => fired.push(`a${sched.now}`), 10);
    clockB.setTimeout(() => fired.push('b1'), 10);
    clockB.setImmediate(() => fired.push('b0'));
    clockB.setTimeout(() => fired.push('b2'), 10);
    await sched.runUntil(25);
    a.dead = true;
    await sched.runUntil(100);
    expect(fired).to.deep.equal(['b0', 'a10', 'b1', 'b2', 'a20']);
    tickA.cancel();
    expect(clockA.nowMs()).to.equal(100);
  });

  it('cut links drop messages one direction at a time; the same seed delivers the same way', async () => {
    const run = async (seed: number) => {
      const sched = new SimScheduler();
      const got: string[] = [];
      const net = new SimNetwork(sched, new SeededRand(seed), { delayMsMin: 1, delayMsMax: 20, dropChance: 0.1, dupChance: 0.1 }, (from, to, e) =>
        got.push(`${sched.now}:${from}->${to}:${e.message.index}`),
      );
      net.cut.add('1->2');
      const t1 = net.transportFor(new Incarnation(1, 1));
      const t2 = net.transportFor(new Incarnation(2, 2));
      const envelope = (index: number): RaftEnvelope => ({ regionId: 'r', message: { type: MessageType.Heartbeat, index } as unknown as Message });
      for (let i = 0; i < 50; i++) {
        t1.send(2, [envelope(i)]);
        t2.send(1, [envelope(i)]);
      }
      await sched.runUntil(100);
      return got;
    };
    const a = await run(3);
    expect(a.some((g) => g.includes('1->2')), 'the cut direction').to.equal(false);
    const back = a.filter((g) => g.includes('2->1'));
    expect(back.length, 'the other direction gets through, with loss and duplicates').to.be.within(30, 70);
    expect(new Set(back.map((g) => g.split(':')[2])).size).to.be.below(50);
    expect(await run(3)).to.deep.equal(a);
    expect(await run(4)).to.not.deep.equal(a);
  });
});
