// Injected time. The raft core never reads time; hosts pass a Clock so simulations can run
// on virtual time and tests never sleep for synchronization.

export interface Clock {
  /** Monotonic milliseconds; never goes backwards. Used for timeouts, leases and RTO. */
  nowMs(): number;
}

/** A timer set through a Scheduler; cancel() is idempotent. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * Injected timers: what a host uses instead of setTimeout/setInterval/setImmediate, so that a
 * simulation can run it on one seeded scheduler (test/sim/cluster-sim.ts). The default is the
 * real event loop (systemScheduler).
 */
export interface Scheduler {
  /** Runs `fn` once after `delayMs` milliseconds of this scheduler's clock. */
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  /** Runs `fn` every `periodMs` milliseconds until cancelled. */
  setInterval(fn: () => void, periodMs: number): TimerHandle;
  /** Runs `fn` soon, after the events already due (setImmediate). */
  setImmediate(fn: () => void): void;
}

/** A clock with timers on the same time line: what the region server runs on. */
export type TimedClock = Clock & Scheduler;

export const systemScheduler: Scheduler = {
  setTimeout: (fn, delayMs) => {
    const t = setTimeout(fn, delayMs);
    return { cancel: () => clearTimeout(t) };
  },
  setInterval: (fn, periodMs) => {
    const t = setInterval(fn, periodMs);
    return { cancel: () => clearInterval(t) };
  },
  setImmediate: (fn) => {
    setImmediate(fn);
  },
};

/** The process's monotonic clock with the real event loop's timers. */
export const systemClock: TimedClock = {
  nowMs: () => performance.now(),
  ...systemScheduler,
};

/** A clock tests advance by hand. */
export class ManualClock implements Clock {
  private currentMs: number;
  constructor(startMs = 0) {
    this.currentMs = startMs;
  }
  nowMs(): number {
    return this.currentMs;
  }
  advance(deltaMs: number): void {
    if (deltaMs < 0) throw new RangeError('ManualClock cannot go backwards');
    this.currentMs += deltaMs;
  }
}

/**
 * Wall-clock milliseconds since the epoch, for times that are saved and compared after a
 * restart (procedure records). Unlike systemClock it can jump when the host's clock is set.
 */
export const wallClock: Clock = {
  nowMs: () => Date.now(),
};
