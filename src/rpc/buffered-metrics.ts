// Counters and histograms for the hot path (docs/performance.md, round 4): the same prom-client
// metrics a scrape sees (names, help, labels, buckets, values), but an observation only adds to
// plain numbers here; they are folded into the prom-client metric when it is collected (every
// scrape and every `get()` runs the metric's collect hook first). prom-client's own inc() and
// observe() hash the label object, validate it and search the buckets on every call: on a
// datanode that was ~1% of its CPU at a few thousand writes a second, for values nobody reads
// until the next scrape.
import { Counter, Histogram, type Registry } from 'prom-client';

/** An unlabelled counter: inc() adds to a number, the scrape folds it in. */
export class BufferedCounter {
  private pending = 0;

  constructor(registry: Registry, name: string, help: string) {
    const self = this;
    new Counter({
      name,
      help,
      registers: [registry],
      collect(this: Counter) {
        if (self.pending > 0) {
          this.inc(self.pending);
          self.pending = 0;
        }
      },
    });
  }

  inc(by = 1): void {
    this.pending += by;
  }
}

/**
 * A counter with one label whose values are known and few (an outcome, a kind): one pending
 * number per value. A value not given to the constructor is still counted (its own slot).
 */
export class BufferedLabelledCounter<V extends string> {
  private readonly pending = new Map<string, number>();

  constructor(registry: Registry, name: string, help: string, label: string) {
    const self = this;
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect(this: Counter) {
        for (const [value, n] of self.pending) {
          if (n > 0) this.inc({ [label]: value }, n);
        }
        self.pending.clear();
      },
    });
  }

  inc(value: V, by = 1): void {
    this.pending.set(value, (this.pending.get(value) ?? 0) + by);
  }
}

/** The part of prom-client's Histogram state this file writes into (prom-client 15's layout, checked at construction). */
interface HistogramEntry {
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * Observations of one label set not yet folded into prom-client: bucket counts (same rule as
 * prom-client: the first upper bound ≥ the value), the running sum and the count.
 */
class PendingHistogram {
  private readonly counts: number[];
  /**
   * The sum as prom-client would hold it: its running total, added to one value at a time in the
   * same order, so the exposed sum is the same float (adding a separate partial sum would round
   * differently in the last digit). `folded` is what the last fold wrote.
   */
  private sum = 0;
  private folded = 0;
  /** The values since the last fold, summed from 0 (what the sum restarts from after a reset). */
  private pendingSum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`); // as prom-client
    this.sum += value;
    this.pendingSum += value;
    this.count++;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++;
        return;
      }
    }
    // Above the last bound: only +Inf (the count) has it, as in prom-client.
  }

  fold(entry: HistogramEntry): void {
    for (let i = 0; i < this.bounds.length; i++) {
      const n = this.counts[i]!;
      if (n > 0) {
        entry.bucketValues[this.bounds[i]!]! += n;
        this.counts[i] = 0;
      }
    }
    // A reset (registry.resetMetrics) since the last fold zeroed the entry: restart from what
    // arrived since then (observations made before the reset but not yet folded count after it).
    if (entry.sum !== this.folded) this.sum = this.pendingSum;
    entry.sum = this.sum;
    this.folded = this.sum;
    this.pendingSum = 0;
    entry.count += this.count;
    this.count = 0;
  }
}

/** prom-client's entries of `histogram`, by label set (prom-client 15: `hashMap`), each checked to have the layout written into. */
function histogramEntries(histogram: Histogram, name: string, bounds: readonly number[]): (HistogramEntry & { labels: Record<string, string | number> })[] {
  const internal = histogram as unknown as { hashMap?: Record<string, HistogramEntry & { labels: Record<string, string | number> }> };
  const entries = internal.hashMap ? Object.values(internal.hashMap) : undefined;
  for (const entry of entries ?? [undefined]) {
    if (!entry || typeof entry.sum !== 'number' || typeof entry.count !== 'number' || typeof entry.bucketValues !== 'object' || typeof entry.labels !== 'object') {
      throw new Error(`prom-client Histogram ${name}: unexpected internal layout`);
    }
    for (const b of bounds) if (typeof entry.bucketValues[b] !== 'number') throw new Error(`prom-client Histogram ${name}: unexpected internal layout (bucket ${b})`);
  }
  return entries!;
}

/**
 * An unlabelled histogram: observe() adds to plain numbers; collect folds the counts, sum and
 * count into the prom-client histogram's own entry, so the exposition is what prom-client would
 * have produced for the same observations (test/unit/buffered-metrics.test.ts compares them byte
 * for byte).
 */
export class BufferedHistogram {
  private readonly bounds: readonly number[];
  private readonly pending: PendingHistogram;

  constructor(registry: Registry, name: string, help: string, buckets: readonly number[]) {
    const bounds = [...buckets].sort((a, b) => a - b);
    this.bounds = bounds;
    this.pending = new PendingHistogram(bounds);
    const self = this;
    const histogram = new Histogram({
      name,
      help,
      buckets: [...buckets],
      registers: [registry],
      collect(this: Histogram) {
        if (self.pending.count > 0) self.pending.fold(BufferedHistogram.entryOf(this, name, bounds));
      },
    });
    // Fail at start-up, not at the first scrape, if prom-client's layout is not the one assumed.
    BufferedHistogram.entryOf(histogram, name, this.bounds);
  }

  observe(value: number): void {
    this.pending.observe(value);
  }

  private static entryOf(histogram: Histogram, name: string, bounds: readonly number[]): HistogramEntry {
    const internal = histogram as unknown as { hashMap?: Record<string, HistogramEntry> };
    // After a reset() (registry.resetMetrics) the entry is gone until the next observation: zero() makes it.
    if (internal.hashMap && Object.keys(internal.hashMap).length === 0) histogram.zero({});
    const entries = histogramEntries(histogram, name, bounds);
    if (entries.length !== 1) throw new Error(`prom-client Histogram ${name}: unexpected internal layout`);
    return entries[0]!;
  }
}

/**
 * A histogram labelled by a few label sets known only as they come (a gRPC service and method):
 * one pending state per label set, each folded into prom-client's entry of its label set at every
 * scrape — the exposition prom-client would have produced. Label sets appear in the order they
 * were first observed, as prom-client lists them; after a registry.resetMetrics they come back in
 * that same first order (prom-client: in the order they are observed again) — nothing in a
 * regiondb process resets its registry.
 */
export class BufferedLabelledHistogram<L extends string> {
  private readonly bounds: readonly number[];
  private readonly states = new Map<string, { readonly labels: Readonly<Record<L, string>>; readonly pending: PendingHistogram }>();

  constructor(registry: Registry, name: string, help: string, labelNames: readonly L[], buckets: readonly number[]) {
    const bounds = [...buckets].sort((a, b) => a - b);
    this.bounds = bounds;
    const self = this;
    const histogram = new Histogram({
      name,
      help,
      labelNames: [...labelNames],
      buckets: [...buckets],
      registers: [registry],
      collect(this: Histogram) {
        for (const { labels, pending } of self.states.values()) {
          if (pending.count === 0) continue;
          let entry = histogramEntries(this, name, bounds).find((e) => labelNames.every((l) => e.labels[l] === labels[l]));
          if (!entry) {
            this.zero(labels);
            entry = histogramEntries(this, name, bounds).find((e) => labelNames.every((l) => e.labels[l] === labels[l]));
            if (!entry) throw new Error(`prom-client Histogram ${name}: unexpected internal layout (zero() made no entry)`);
          }
          pending.fold(entry);
        }
      },
    });
    histogramEntries(histogram, name, bounds); // the layout, at start-up
  }

  /** `key` names the label set (one string per distinct `labels`, the caller's choice). */
  observe(key: string, labels: Readonly<Record<L, string>>, value: number): void {
    let state = this.states.get(key);
    if (!state) this.states.set(key, (state = { labels: { ...labels }, pending: new PendingHistogram(this.bounds) }));
    state.pending.observe(value);
  }
}

/** A counter with several labels whose label sets are few: one pending number per label set, `key` naming it. */
export class BufferedMultiLabelCounter<L extends string> {
  private readonly pending = new Map<string, { readonly labels: Readonly<Record<L, string>>; n: number }>();

  constructor(registry: Registry, name: string, help: string, labelNames: readonly L[]) {
    const self = this;
    new Counter({
      name,
      help,
      labelNames: [...labelNames],
      registers: [registry],
      collect(this: Counter) {
        for (const { labels, n } of self.pending.values()) if (n > 0) this.inc(labels, n);
        self.pending.clear();
      },
    });
  }

  inc(key: string, labels: Readonly<Record<L, string>>): void {
    const entry = this.pending.get(key);
    if (entry) entry.n++;
    else this.pending.set(key, { labels: { ...labels }, n: 1 });
  }
}
