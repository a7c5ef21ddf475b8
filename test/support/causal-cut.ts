// The checker of a cluster-consistent cut (docs/backup.md, "Consistency point"), for a restore of
// a backup taken under a causal-pairs workload: each writer writes A_i into one table and, once
// A_i is acknowledged, B_i into another, for i = 0, 1, 2, … Every write's send time and outcome
// are recorded (monotonic ms of the test process).
//
// A restore is consistent when:
//   C1. per writer and table, the restored sequence numbers were all sent, and no acknowledged
//       write is missing below the highest one restored (each region's rows are a prefix of
//       that writer's acknowledged-or-unknown sequence);
//   C2. for every restored write w2 (A or B, any writer), every write acknowledged before w2 was
//       sent (any writer, any table) is restored too. Same-writer pairs (B_i ⇒ A_i) are the
//       special case that needs no clock.
export type Outcome = { readonly sentMs: number; readonly ackedMs: number | undefined };

/** What one writer did: per table, the writes by sequence number (undefined: never sent). */
export interface WriterHistory {
  readonly writer: string;
  readonly tables: Readonly<Record<string, readonly (Outcome | undefined)[]>>;
}

/** What a restore holds: per table, per writer, the sequence numbers present. */
export type Restored = Readonly<Record<string, ReadonlyMap<string, ReadonlySet<number>>>>;

export interface CutReport {
  /** The first violations found (at most VIOLATIONS_LISTED_MAX, then a marker). */
  readonly violations: string[];
  /** Every violation found. */
  readonly violationCount: number;
  /** Per table and writer: the highest sequence number restored (-1: none). */
  readonly highest: Record<string, Record<string, number>>;
  readonly restoredWrites: number;
}

const VIOLATIONS_LISTED_MAX = 20;

export function checkCausalCut(histories: readonly WriterHistory[], restored: Restored): CutReport {
  const violations: string[] = [];
  let violationCount = 0;
  const add = (v: string) => {
    violationCount++;
    if (violations.length < VIOLATIONS_LISTED_MAX) violations.push(v);
    else if (violations.length === VIOLATIONS_LISTED_MAX) violations.push('… (more violations not listed)');
  };
  const highest: Record<string, Record<string, number>> = {};
  let restoredWrites = 0;
  const tables = [...new Set(histories.flatMap((h) => Object.keys(h.tables)))].sort();
  const present = (table: string, writer: string, seq: number) => restored[table]?.get(writer)?.has(seq) === true;

  // C1
  for (const table of tables) {
    highest[table] = {};
    const byWriter = restored[table] ?? new Map<string, ReadonlySet<number>>();
    for (const writer of byWriter.keys()) {
      if (!histories.some((h) => h.writer === writer)) add(`${table}: rows of an unknown writer ${writer}`);
    }
    for (const h of histories) {
      const writes = h.tables[table] ?? [];
      const seqs = [...(byWriter.get(h.writer) ?? [])].sort((a, b) => a - b);
      restoredWrites += seqs.length;
      const top = seqs.at(-1) ?? -1;
      highest[table]![h.writer] = top;
      for (const s of seqs) if (writes[s] === undefined) add(`${table}/${h.writer}: seq ${s} restored but never sent`);
      for (let s = 0; s < top; s++) {
        if (writes[s]?.ackedMs !== undefined && !present(table, h.writer, s)) add(`${table}/${h.writer}: acknowledged seq ${s} missing below restored seq ${top} (not a prefix)`);
      }
    }
  }

  // C2: per (table, writer) the acknowledged writes in ack order are in seq order (each writer
  // is sequential), so "acked before t" is a prefix: its last seq is found by binary search.
  const acked = new Map<string, { seq: number; ackedMs: number }[]>();
  for (const h of histories) {
    for (const table of tables) {
      const list: { seq: number; ackedMs: number }[] = [];
      (h.tables[table] ?? []).forEach((o, seq) => {
        if (o?.ackedMs !== undefined) list.push({ seq, ackedMs: o.ackedMs });
      });
      acked.set(`${table}/${h.writer}`, list);
    }
  }
  const ackedBefore = (list: readonly { seq: number; ackedMs: number }[], t: number): number => {
    let lo = 0;
    let hi = list.length; // first index with ackedMs >= t
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.ackedMs < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  // Per list, the first acknowledged write that is not restored: a restored write sent after it
  // was acknowledged is a violation.
  const firstMissing = new Map<string, number>();
  for (const [key, list] of acked) {
    const [otherTable, otherWriter] = key.split('/') as [string, string];
    const k = list.findIndex((a) => !present(otherTable, otherWriter, a.seq));
    firstMissing.set(key, k < 0 ? list.length : k);
  }
  for (const table of tables) {
    for (const h of histories) {
      for (const seq of restored[table]?.get(h.writer) ?? []) {
        const sentMs = h.tables[table]?.[seq]?.sentMs;
        if (sentMs === undefined) continue; // reported by C1
        for (const [key, list] of acked) {
          const missing = firstMissing.get(key)!;
          if (ackedBefore(list, sentMs) > missing) {
            const need = list[missing]!;
            add(`${table}/${h.writer} seq ${seq} (sent at ${sentMs.toFixed(1)} ms) is restored, but ${key} seq ${need.seq}, acknowledged before it was sent (at ${need.ackedMs.toFixed(1)} ms), is not`);
          }
        }
      }
    }
  }
  return { violations, violationCount, highest, restoredWrites };
}
