// What a promoted standby must hold, checked against a client's own record of its writes
// (test/integration/standby.test.ts, `regiondb drill`; docs/replication.md, "What is checked").
// Every time here is wall-clock ms on the clock the primary stamped with (one host in the tests).
//
// A region keeps exactly the primary entries stamped at or before the cut; a stamp is taken after
// the client sent the write and before it was acknowledged. Hence, for the writes a client made:
//   C1. a write acknowledged at or before the cut is wholly present;
//   C2. no row of a write sent after the cut is present;
//   C3. each region's part of a write (one raft entry) is present whole or not at all.
// A write in flight at the cut (sent before, acknowledged after or never) may be present in some
// regions and not others: regiondb has no atomicity across regions, on the primary either (each
// region's part has its own outcome); it is counted, not refused.

export interface ClientWrite {
  /** Row ids of the write, and the region number each lands in. */
  readonly rowIds: readonly number[];
  readonly regionOf: readonly number[];
  readonly sentMs: number;
  /** Undefined: not acknowledged (failed, or its outcome unknown). */
  readonly ackedMs: number | undefined;
}

export interface CutVerdict {
  readonly violations: string[];
  readonly ackedWrites: number;
  readonly ackedRows: number;
  /** Acknowledged writes (rows) not wholly present: the lost tail. */
  readonly lostWrites: number;
  readonly lostRows: number;
  /** How long before `faultMs` the earliest lost write was acknowledged (0 if none lost). */
  readonly lostWindowMs: number;
  /** Writes in flight at the cut present in some regions only (allowed, see above). */
  readonly partialInFlight: number;
}

export function checkCut(writes: readonly ClientWrite[], present: ReadonlySet<number>, cutMs: number, faultMs: number): CutVerdict {
  const violations: string[] = [];
  let ackedWrites = 0;
  let ackedRows = 0;
  let lostWrites = 0;
  let lostRows = 0;
  let earliestLost = Number.POSITIVE_INFINITY;
  let partialInFlight = 0;
  for (const w of writes) {
    const here = w.rowIds.map((id) => present.has(id));
    const count = here.filter(Boolean).length;
    // C3: per region part, all or nothing.
    const parts = new Map<number, boolean[]>();
    w.regionOf.forEach((region, k) => {
      const list = parts.get(region) ?? [];
      list.push(here[k]!);
      parts.set(region, list);
    });
    for (const [region, flags] of parts) {
      if (flags.some(Boolean) && !flags.every(Boolean)) violations.push(`C3: write sent at ${w.sentMs}: region ${region} holds ${flags.filter(Boolean).length} of its ${flags.length} rows`);
    }
    if (w.ackedMs !== undefined) {
      ackedWrites++;
      ackedRows += w.rowIds.length;
      if (count < w.rowIds.length) {
        lostWrites++;
        lostRows += w.rowIds.length - count;
        earliestLost = Math.min(earliestLost, w.ackedMs);
        if (w.ackedMs <= cutMs) violations.push(`C1: write acknowledged at ${w.ackedMs} (cut ${cutMs}) has ${count} of ${w.rowIds.length} rows`);
      }
    }
    if (w.sentMs > cutMs && count > 0) violations.push(`C2: write sent at ${w.sentMs}, after the cut ${cutMs}, has ${count} rows present`);
    if (w.sentMs <= cutMs && (w.ackedMs === undefined || w.ackedMs > cutMs) && count > 0 && count < w.rowIds.length) partialInFlight++;
  }
  return { violations, ackedWrites, ackedRows, lostWrites, lostRows, lostWindowMs: lostWrites === 0 ? 0 : Math.max(0, faultMs - earliestLost), partialInFlight };
}
