// Injected time. The raft core never reads time; hosts pass a Clock so simulations can run
// on virtual time and tests never sleep for synchronization.

export interface Clock {
  /** Monotonic milliseconds; never goes backwards. Used for timeouts, leases and RTO. */
  nowMs(): number;
}

export const systemClock: Clock = {
  nowMs: () => performance.now(),
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
