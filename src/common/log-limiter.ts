// Rate limits log lines that a remote party can trigger at will (rejected calls, dropped raft
// messages): one line per key per interval, carrying how many were suppressed since the last.
// The decision takes the time as an argument, so it is deterministic under test.

export class LogLimiter {
  private readonly last = new Map<string, { atMs: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    /** Distinct keys remembered; beyond it the oldest key is forgotten (bounded memory). */
    private readonly keysMax = 1024,
  ) {}

  /** Returns the number of suppressed lines to report if this one should be logged, else undefined. */
  admit(key: string, nowMs: number): number | undefined {
    const seen = this.last.get(key);
    if (seen && nowMs - seen.atMs < this.intervalMs) {
      seen.suppressed++;
      return undefined;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.last.delete(key);
    this.last.set(key, { atMs: nowMs, suppressed: 0 });
    if (this.last.size > this.keysMax) this.last.delete(this.last.keys().next().value!);
    return suppressed;
  }
}
