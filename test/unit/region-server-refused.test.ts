// A refused connection takes a node as down at once (docs/quiescence.md, "A refused connection"):
// when a datanode's process dies, its address refuses connections, and the region server hears
// so from its transport (RaftTransport.onRefused) instead of waiting nodeDownAfterTicks of
// silence; the followers of the dead node's leaders campaign at once. Anything heard from the
// node takes it as up again.
//
// Three region servers on one hand-moved clock, ticked by hand: every count is exact.
import { expect } from 'chai';
import { type TimedClock, systemScheduler } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import { Counter } from '../fixtures/counter-machine.js';
import { MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const TICK_MS = 50;
const REGIONS = ['r1', 'r2', 'r3'];

/** Loopback delivery; a node in `dead` receives nothing and sends nothing, and a send to it is refused when `refuses`. */
class Net {
  readonly servers = new Map<number, RegionServer<Counter>>();
  readonly dead = new Set<number>();
  refuses = true;
  readonly clock: TimedClock & { now: number };

  constructor() {
    const clock: TimedClock & { now: number } = { now: 1_000, nowMs: () => clock.now, ...systemScheduler };
    this.clock = clock;
  }

  transport(from: number): RaftTransport {
    let refused: ((nodeId: number) => void) | undefined;
    return {
      send: (to: number, envelopes: RaftEnvelope[]) => {
        if (this.dead.has(from)) return;
        if (this.dead.has(to)) {
          if (this.refuses) setImmediate(() => refused?.(to));
          return;
        }
        setImmediate(() => {
          if (this.dead.has(to) || this.dead.has(from)) return;
          for (const e of envelopes) this.servers.get(to)?.step(from, e.regionId, e.message);
        });
      },
      close: async () => {},
      onRefused: (listener) => {
        refused = listener;
      },
    };
  }

  async tick(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      this.clock.now += TICK_MS;
      for (const [id, s] of this.servers) if (!this.dead.has(id)) s.tick();
      await settle();
    }
  }

  leaderOf(regionId: string): RegionServer<Counter> | undefined {
    return [...this.servers].find(([id, s]) => !this.dead.has(id) && s.replica(regionId)?.isLeader())?.[1];
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((ok) => setImmediate(ok));
}

async function cluster(): Promise<Net> {
  const net = new Net();
  const peers = [1, 2, 3].map((nodeId) => ({ peerId: 30 + nodeId, nodeId }));
  for (const nodeId of [1, 2, 3]) {
    const tuning = { ...defaultRaftTuning, tickMs: TICK_MS, firstCampaignsPerTick: 0 };
    const server = new RegionServer<Counter>(nodeId, new MemoryLogEngine(), net.transport(nodeId), { create: () => new Counter() }, tuning, silentLogger, net.clock);
    net.servers.set(nodeId, server);
    for (const regionId of REGIONS) await server.open({ regionId, selfPeerId: 30 + nodeId, peers, bootstrap: true });
  }
  await settle();
  for (let i = 0; i < 40 * defaultRaftTuning.electionTicks && !REGIONS.every((r) => net.leaderOf(r)); i++) await net.tick(1);
  expect(REGIONS.every((r) => net.leaderOf(r)), 'a leader per region').to.equal(true);
  await net.tick(defaultRaftTuning.quiesceIdleTicks + 5);
  for (const s of net.servers.values()) for (const r of REGIONS) expect(s.isQuiesced(r), `node ${s.nodeId} ${r} quiesced`).to.equal(true);
  return net;
}

/** Ticks until every region the victim led has a leader elsewhere; the ticks it took. */
async function ticksToNewLeaders(net: Net, victim: number, led: string[], max: number): Promise<number | undefined> {
  for (let t = 1; t <= max; t++) {
    await net.tick(1);
    if (led.every((r) => net.leaderOf(r) !== undefined)) return t;
  }
  for (const r of led) expect(net.servers.get(victim)!.replica(r)!.isLeader()).to.equal(true); // (still the dead node's)
  return undefined;
}

describe('RegionServer: a refused connection takes the node as down at once', () => {
  let net: Net | undefined;
  afterEach(async () => {
    for (const s of net?.servers.values() ?? []) await s.stop();
    net = undefined;
  });

  it('the followers of a dead node\'s sleeping regions elect new leaders before its silence would have been judged', async () => {
    net = await cluster();
    const victim = net.leaderOf('r1')!;
    const led = REGIONS.filter((r) => victim.replica(r)!.isLeader());
    net.dead.add(victim.nodeId);
    // The survivors' next beats are refused; silence alone would take the node as down only
    // after nodeDownAfterTicks, and its followers would campaign after that.
    const took = await ticksToNewLeaders(net, victim.nodeId, led, defaultRaftTuning.nodeDownAfterTicks);
    expect(took, `new leaders within ${defaultRaftTuning.nodeDownAfterTicks} ticks of the death`).to.not.equal(undefined);
    expect(took!).to.be.at.most(4);
    for (const [id, s] of net.servers) if (id !== victim.nodeId) expect(s.quiescence.nodesDown, `node ${id} took it as down`).to.equal(1);
  });

  it('without the refusal (a partition: packets lost, not answered) the silence count decides, as before', async () => {
    net = await cluster();
    net.refuses = false;
    const victim = net.leaderOf('r1')!;
    const led = REGIONS.filter((r) => victim.replica(r)!.isLeader());
    net.dead.add(victim.nodeId);
    expect(await ticksToNewLeaders(net, victim.nodeId, led, defaultRaftTuning.nodeDownAfterTicks - 1), 'nothing before the silence is judged').to.equal(undefined);
    const took = await ticksToNewLeaders(net, victim.nodeId, led, 4 * defaultRaftTuning.electionTicks);
    expect(took, 'new leaders once the silence is judged').to.not.equal(undefined);
  });

  it('a node taken as down by a refusal is up again once heard from (it restarted)', async () => {
    net = await cluster();
    const victim = net.leaderOf('r1')!;
    const survivor = [...net.servers.values()].find((s) => s !== victim)!;
    net.dead.add(victim.nodeId);
    await net.tick(2);
    expect(survivor.quiescence.nodesDown, 'taken as down').to.equal(1);
    const downs = survivor.quiescence.nodesDown;
    net.dead.delete(victim.nodeId);
    await net.tick(3);
    // Heard again: a later refusal counts as a new death (nodesDown counts each verdict once).
    net.dead.add(victim.nodeId);
    await net.tick(2);
    expect(survivor.quiescence.nodesDown, 'a second verdict after it was heard again').to.equal(downs + 1);
  });
});
