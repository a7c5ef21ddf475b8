// StateMachineFactory.release: the region server hands back every state machine create()
// returned once it is no longer a live replica's — the replica closed, failed, or replaced by a
// snapshot's state machine. The datanode's node-wide memtable total (MemtableAccount) relies on
// it: a state machine never released keeps its bytes counted, and backpressure would refuse
// writes for memory nobody holds. Invariant checked after every step: the state machines
// created and not released are exactly those of the replicas the server hosts.
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import type { StateMachine } from '../../src/raft/state-machine.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

/** Command byte 0: an apply that reads an object that is gone (the replica fails); else adds. */
class Tracked implements StateMachine<number> {
  total = 0;
  apply(index: number, command: Uint8Array): number | Promise<number> {
    if (command[0] === 0) {
      return Promise.reject(
        new RegionDbError(ErrorCode.StorageUnavailable, `cannot read an SST at index ${index}`, { cause: new RegionDbError(ErrorCode.NotFound, 'SST not found') }),
      );
    }
    this.total += command[0]!;
    return this.total;
  }
  serialize(): Uint8Array {
    return new TextEncoder().encode(String(this.total));
  }
}

// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): their tickers fire as the
// test advances it, and every wait is a bounded number of ticks, not of wall milliseconds.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('RegionServer: every state machine it created is released once it stops being a live replica’s', () => {
  const servers = new Map<number, RegionServer<Tracked>>();
  /** Per node: created and not yet released. */
  const live = new Map<number, Set<Tracked>>();
  const releasedTwice: string[] = [];
  const muted = new Set<string>();
  const peers = [
    { peerId: 31, nodeId: 1 },
    { peerId: 32, nodeId: 2 },
    { peerId: 33, nodeId: 3 },
  ];
  const regions = ['a', 'b', 'c'];
  const clock = new HandClock();
  const waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const waitFor = (cond: () => boolean, what: string, maxTicks?: number) => waits.until(cond, what, maxTicks);

  function expectBalanced(when: string): void {
    for (const [nodeId, server] of servers) {
      const hosted = new Set(server.allReplicas().map((r) => r.stateMachine));
      const mine = live.get(nodeId)!;
      expect([...mine].every((sm) => hosted.has(sm)), `${when}: node ${nodeId} has a state machine created and never released`).to.equal(true);
      expect([...hosted].every((sm) => mine.has(sm)), `${when}: node ${nodeId} hosts a released state machine`).to.equal(true);
    }
    expect(releasedTwice, when).to.deep.equal([]);
  }

  before(async () => {
    for (const nodeId of [1, 2, 3]) {
      const mine = new Set<Tracked>();
      live.set(nodeId, mine);
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) if (!muted.has(`${from}>${to}`)) servers.get(to)?.step(from, e.regionId, e.message);
      });
      const server = new RegionServer<Tracked>(
        nodeId,
        new MemoryLogEngine(),
        transport,
        {
          create: (_regionId, data) => {
            const sm = new Tracked();
            if (data) sm.total = Number(new TextDecoder().decode(data));
            mine.add(sm);
            return sm;
          },
          release: (regionId, sm) => {
            if (!mine.delete(sm)) releasedTwice.push(`node ${nodeId} region ${regionId}`);
          },
        },
        { ...defaultRaftTuning, tickMs: TICK_MS, snapshotEveryEntries: 20, nodeDownAfterTicks: 40 },
        silentLogger,
        clock,
      );
      servers.set(nodeId, server);
    }
    for (const [nodeId, server] of servers) {
      for (const regionId of regions) await server.open({ regionId, selfPeerId: 30 + nodeId, peers, bootstrap: true });
      server.start();
    }
    await waitFor(() => regions.every((r) => leaderOf(r) !== undefined), 'leaders');
  });

  after(async () => {
    for (const server of servers.values()) await server.stop();
  });

  function leaderOf(regionId: string): RegionServer<Tracked> | undefined {
    return [...servers.values()].find((s) => s.replica(regionId)?.isLeader());
  }

  it('after opening', () => {
    expectBalanced('opened');
    expect([...live.values()].map((s) => s.size)).to.deep.equal([3, 3, 3]);
  });

  it('a follower brought up to date by a raft snapshot: the replaced state machine is released, the snapshot’s is live', async () => {
    const leader = leaderOf('a')!;
    const lagging = [...servers.values()].find((s) => s !== leader)!;
    const before = lagging.replica('a')!.stateMachine;
    muted.add(`${leader.nodeId}>${lagging.nodeId}`);
    for (let i = 0; i < 3; i++) await waits.settled(Promise.all(Array.from({ length: 30 }, () => leader.propose('a', new Uint8Array([1])))), '30 writes');
    await waitFor(() => (servers.get(leader.nodeId)!.replica('a')?.stateMachine.total ?? 0) >= 90, 'the leader to apply');
    muted.delete(`${leader.nodeId}>${lagging.nodeId}`);
    await waitFor(() => (lagging.replica('a')?.snapshotInstalledIndex ?? 0) > 0, 'the snapshot install');
    expect(lagging.replica('a')!.stateMachine, 'replaced').to.not.equal(before);
    expect(live.get(lagging.nodeId)!.has(before), 'the replaced state machine was released').to.equal(false);
    expectBalanced('snapshot installed');
  });

  it('a replica that fails (an apply that can never succeed): its state machine is released', async () => {
    const leader = leaderOf('b')!;
    await waits.settled(leader.propose('b', new Uint8Array([0])).catch(() => undefined), 'the write that fails a replica');
    await waitFor(() => [...servers.values()].some((s) => s.failure('b') !== undefined), 'a replica of b to fail');
    expectBalanced('replica failed');
  });

  it('two open() calls of one region at once: the replica the second one displaces has its state machine released', async () => {
    const mine = new Set<Tracked>();
    const server = new RegionServer<Tracked>(
      9,
      new MemoryLogEngine(),
      new LoopbackTransport(9, () => {}),
      {
        create: () => {
          const sm = new Tracked();
          mine.add(sm);
          return sm;
        },
        release: (_regionId, sm) => {
          expect(mine.delete(sm), 'released once').to.equal(true);
        },
      },
      { ...defaultRaftTuning, tickMs: TICK_MS },
      silentLogger,
      clock,
    );
    const spec = { regionId: 'd', selfPeerId: 91, peers: [{ peerId: 91, nodeId: 9 }], bootstrap: true };
    await Promise.all([server.open(spec), server.open(spec)]);
    expect([...mine]).to.deep.equal(server.allReplicas().map((r) => r.stateMachine));
    await server.stop();
  });

  it('a closed replica (and a destroyed one): released once, also when a failed replica is closed afterwards', async () => {
    await servers.get(1)!.close('c', false);
    await servers.get(2)!.close('c', true);
    const failedOn = [...servers.values()].find((s) => s.failure('b') !== undefined)!;
    await failedOn.close('b', true);
    expectBalanced('closed');
    expect(live.get(1)!.size + live.get(2)!.size + live.get(3)!.size).to.equal([...servers.values()].reduce((n, s) => n + s.allReplicas().length, 0));
  });
});
