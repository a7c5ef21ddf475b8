// Long engine loops (a flush of a large memtable, a merge of many SSTs) share the datanode's
// event loop with raft: they must let it turn.

/** Rows between two yields to the event loop during a flush or a merge. */
export const ROWS_PER_YIELD = 1024;

/**
 * Lets timers and I/O run every ROWS_PER_YIELD rows. Awaiting cached SST blocks or memtable rows
 * only queues microtasks, which never let the event loop turn: without this a merge of a few
 * hundred thousand rows stalls the datanode for a second, longer than a raft election timeout.
 */
export function yieldEvery(rows: number): Promise<void> | undefined {
  return rows % ROWS_PER_YIELD === 0 ? turnOfEventLoop() : undefined;
}

/** One turn of the event loop (what yieldEvery gives every ROWS_PER_YIELD rows). */
export function turnOfEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
