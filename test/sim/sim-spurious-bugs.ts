// Planted bugs of the "healthy node treated as failed" findings of docs/correctness.md (M3, M7, M6, M2; see
// sim-spurious.ts): test-only subclasses that bring back the behaviour before a fix. Nothing
// under src/ names them (test/raft/purity.test.ts keeps planted bugs out of src/).
import type { Clock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { DatanodeCore } from '../../src/datanode/datanode-core.js';
import { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { StateMachine } from '../../src/raft/index.js';
import type { MetasrvCoreFactory } from './sim-metasrv.js';

export const SPURIOUS_METASRV_BUGS = ['late-tick-judges', 'twin-accepted', 'down-time-on-wall-clock'] as const;
export type SpuriousMetasrvBug = (typeof SPURIOUS_METASRV_BUGS)[number];

/**
 * Finding M3: every tick judged failures, also one that fired late because the metasrv's own
 * process had stalled — Node runs the due timers before it reads the sockets, so the tick saw
 * every node silent for the length of the stall (the heartbeats were queued, unread). The fix
 * remembers when the last tick fired (`lastTickTimerMs`, private) and skips a late one; this
 * subclass forgets it before every tick, so no tick is ever late.
 */
class LateTickJudges extends MetasrvCore {
  override onTickTimer(): void {
    (this as unknown as { lastTickTimerMs: number | undefined }).lastTickTimerMs = undefined;
    super.onTickTimer();
  }
}

/**
 * Finding M6: a registration with another store was taken for the node's new incarnation
 * whatever its address and whether the registered node was alive — a second process with a
 * copied config had every replica of the live node marked lost and took its address. The fix
 * refuses it (ALREADY_EXISTS) while the registered node is alive, and UNAVAILABLE until it has
 * been silent long enough (`checkTakeover`); this subclass overrides that seam with nothing.
 */
class TwinAccepted extends MetasrvCore {
  protected override checkTakeover(): void {}
}

/**
 * Finding M7: the tick measured how long a node had been down (against
 * replica_repair_after_ms) on the wall clock (`Date.now()`), so a step of the metasrv host's
 * clock forward made a node down for a second look down for the step and started moving its
 * replicas at once. Through the seam `durationNowMs`: wall-clock time, in the monotonic clock's
 * frame (equal to it until the wall clock steps).
 */
class DownTimeOnWallClock extends MetasrvCore {
  private readonly wall: Clock;
  private readonly wallAheadMs: number;
  constructor(...args: ConstructorParameters<typeof MetasrvCore>) {
    super(...args);
    const env = args[3];
    this.wall = env.procedureClock;
    this.wallAheadMs = env.procedureClock.nowMs() - env.clock.nowMs();
  }
  protected override durationNowMs(): number {
    return this.wall.nowMs() - this.wallAheadMs;
  }
}

export function isSpuriousMetasrvBug(bug: string): bug is SpuriousMetasrvBug {
  return (SPURIOUS_METASRV_BUGS as readonly string[]).includes(bug);
}

export function spuriousMetasrvCore(bug: SpuriousMetasrvBug): MetasrvCoreFactory {
  const Core = { 'late-tick-judges': LateTickJudges, 'twin-accepted': TwinAccepted, 'down-time-on-wall-clock': DownTimeOnWallClock }[bug];
  return (config, env) => new Core(config, silentLogger, 3, env);
}

export const SPURIOUS_DATANODE_BUGS = ['heartbeat-awaits-instructions'] as const;
export type SpuriousDatanodeBug = (typeof SPURIOUS_DATANODE_BUGS)[number];

/**
 * Finding M2: with one heartbeat in flight (8e), a heartbeat awaited the instructions of its
 * answer, and a conf change instruction awaited its commit — a conf change that could not commit
 * (its leader cut off from the followers) stopped the node's heartbeats, and the metasrv took a
 * live node for dead. The fix (acce941) runs instructions on a queue off the heartbeat and only
 * proposes a conf change. This subclass holds each beat, as one in flight, until the queue has
 * run its instructions and every conf change it proposed has settled.
 */
export class HeartbeatAwaitsInstructions<S extends StateMachine<R>, R> extends DatanodeCore<S, R> {
  private held: Promise<void> | undefined;
  private readonly confChanges = new Set<Promise<unknown>>();

  constructor(deps: ConstructorParameters<typeof DatanodeCore<S, R>>[0]) {
    super(deps);
    const server = this.regionServer;
    const propose = server.proposeConfChange.bind(server);
    server.proposeConfChange = (regionId, cc) => {
      const committed = propose(regionId, cc);
      this.confChanges.add(committed);
      const forget = () => this.confChanges.delete(committed);
      committed.then(forget, forget);
      return committed;
    };
  }

  override heartbeatOnce(): Promise<void> {
    if (this.held) return this.held;
    const queue = () => (this as unknown as { instructionQueue: Promise<void> }).instructionQueue;
    this.held = super
      .heartbeatOnce()
      .then(async () => {
        await queue();
        await Promise.allSettled([...this.confChanges]);
      })
      .finally(() => {
        this.held = undefined;
      });
    return this.held;
  }
}
