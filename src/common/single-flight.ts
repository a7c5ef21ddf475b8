// One run of an async lookup per key at a time: callers that ask while one runs share its
// result (and its failure). Used for route lookups, where a failover makes hundreds of requests
// ask for one table's routes at once and each answer holds the whole table.

export class SingleFlight<K, V> {
  private readonly running = new Map<K, Promise<V>>();

  /** The run in flight for `key`, if any (it is forgotten once it settles). */
  inFlight(key: K): Promise<V> | undefined {
    return this.running.get(key);
  }

  /** The lookup running for `key`, or a new one started by `start`; forgotten once it settles. */
  async run(key: K, start: () => Promise<V>): Promise<V> {
    const inFlight = this.running.get(key);
    if (inFlight) return inFlight;
    const lookup = start();
    this.running.set(key, lookup);
    try {
      return await lookup;
    } finally {
      this.running.delete(key);
    }
  }
}
