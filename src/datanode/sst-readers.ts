// Opens SSTs from the object store for reads, keeping recently used readers (their block index
// and properties) in memory; the SST bytes themselves are cached by the CachedObjectStore.
// Transient object-store failures are retried a few times before they surface.
import { type Scheduler, systemScheduler } from '../common/clock.js';
import { ErrorCode, isRegionDbError } from '../common/errors.js';
import type { SstMeta } from '../engine/command.js';
import type { SstOpener } from '../engine/region-state.js';
import { SstReader, sstSourceFromObjectStore } from '../engine/sst/format.js';
import type { ObjectStore } from '../object-store/object-store.js';

const READERS_KEPT = 512;
const ATTEMPTS = 3;

export class SstReaders implements SstOpener {
  private readonly readers = new Map<string, Promise<SstReader>>();

  constructor(
    private readonly store: ObjectStore,
    /** Timers for the pause between attempts (systemScheduler; a simulation injects its own). */
    private readonly scheduler: Scheduler = systemScheduler,
  ) {}

  open(meta: SstMeta): Promise<SstReader> {
    const cached = this.readers.get(meta.key);
    if (cached) {
      this.readers.delete(meta.key); // refresh recency
      this.readers.set(meta.key, cached);
      return cached;
    }
    const opening = this.openWithRetry(meta);
    this.readers.set(meta.key, opening);
    opening.catch(() => this.readers.delete(meta.key)); // a failed open is not cached
    while (this.readers.size > READERS_KEPT) this.readers.delete(this.readers.keys().next().value as string);
    return opening;
  }

  private async openWithRetry(meta: SstMeta): Promise<SstReader> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await SstReader.open(await sstSourceFromObjectStore(this.store, meta.key, meta.size));
      } catch (err) {
        if (!isRegionDbError(err, ErrorCode.StorageUnavailable) || attempt >= ATTEMPTS) throw err;
        await new Promise<void>((r) => this.scheduler.setTimeout(r, 100 * attempt));
      }
    }
  }
}
