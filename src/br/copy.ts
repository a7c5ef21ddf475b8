// Moving objects between stores with their SHA-256, a byte-rate limit, and a bounded pool —
// the I/O shared by backup and restore.
import { createHash } from 'node:crypto';
import { assert } from '../common/assert.js';
import { limits } from '../common/limits.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { type ProgressReporter, silentProgress } from './progress.js';

/** Copy settings every br command takes (backup, restore, verify). */
export interface CopySettings {
  /** Objects copied or checked at once (default 4). */
  readonly concurrency?: number | undefined;
  /** A cap on the bytes copied per second (default none). */
  readonly bytesPerSecond?: number | undefined;
  readonly progress?: ProgressReporter | undefined;
}

/** What a run over a backup in a repository takes: backup and restore alike. */
export interface BackupRunOptions extends CopySettings {
  readonly repository: ObjectStore;
  readonly backupId: string;
  /** Tables to include (default: every table; backup ignores it when resuming). */
  readonly tables?: readonly string[] | undefined;
}

const DEFAULT_CONCURRENCY = 4;

/** The settings with their defaults filled in: one reporter, one limiter, one pool size per run. */
export function copySettings(opts: CopySettings): { progress: ProgressReporter; limiter: ByteRateLimiter | undefined; concurrency: number } {
  return {
    progress: opts.progress ?? silentProgress,
    limiter: opts.bytesPerSecond ? new ByteRateLimiter(opts.bytesPerSecond) : undefined,
    concurrency: opts.concurrency ?? DEFAULT_CONCURRENCY,
  };
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A token bucket over bytes: `take(n)` resolves once n bytes fit under the rate. A backup that
 * must not saturate the production network or the object store's request budget sets one.
 */
export class ByteRateLimiter {
  private availableBytes: number;
  private lastRefillMs = performance.now(); // monotonic: a clock step must not stall or burst the copy

  constructor(private readonly bytesPerSecond: number) {
    assert(Number.isFinite(bytesPerSecond) && bytesPerSecond > 0, `byte rate must be positive, got ${bytesPerSecond}`);
    // One second of burst: a single object larger than that still passes, after waiting its share.
    this.availableBytes = bytesPerSecond;
  }

  async take(bytes: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.availableBytes = Math.min(this.bytesPerSecond, this.availableBytes + ((now - this.lastRefillMs) * this.bytesPerSecond) / 1000);
      this.lastRefillMs = now;
      if (this.availableBytes > 0) {
        // Debt is allowed (an object bigger than the bucket): the next caller waits it off.
        this.availableBytes -= bytes;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.ceil((-this.availableBytes * 1000) / this.bytesPerSecond) + 1));
    }
  }
}

/** Runs `work` over `items` with at most `concurrency` in flight; the first error stops new work and is thrown. */
export async function forEachBounded<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  assert(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= limits.brCopyConcurrencyMax, `concurrency must be 1..${limits.brCopyConcurrencyMax}, got ${concurrency}`);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

/** Reads an object and returns it with its size and SHA-256. */
export async function readHashed(store: ObjectStore, key: string): Promise<{ data: Uint8Array; sizeBytes: number; sha256: string }> {
  const data = await store.get(key);
  return { data, sizeBytes: data.byteLength, sha256: sha256Hex(data) };
}
