// The flusher's due times (src/datanode/flusher.ts): for each region it leads, the time at which
// it has something to do without any change (its next GC pass, a memtable's flush age). A check
// asks which regions are due; this answers in O(due · log n) instead of a walk over every region
// (docs/performance.md, "Eighth pass").
//
// A min-heap of (due, region) entries beside the map of each region's current due time. Setting a
// region's due time pushes an entry unless the map already holds that same time; moving or
// removing it leaves the old entry in the heap, stale: an entry counts only while the map still
// holds its time for its region, and stale ones are dropped as they reach the top (or all at once
// by `retain`). Invariant: every (region, time) of the map has an entry in the heap, so a due time
// is never missed; `takeDue` removes what it returns from the map, so a region is returned once
// per time set.

import { MinHeap } from '../common/min-heap.js';

interface Entry {
  readonly dueMs: number;
  readonly regionId: string;
}

const dueOf = (entry: Entry): number => entry.dueMs;

export class DueSchedule {
  private readonly at = new Map<string, number>();
  private readonly heap = new MinHeap<Entry>(dueOf);

  /** The region's due time, if it has one. */
  get(regionId: string): number | undefined {
    return this.at.get(regionId);
  }

  get size(): number {
    return this.at.size;
  }

  /** Heap entries, stale ones included (tests: bounded by `retain`). */
  get entries(): number {
    return this.heap.size;
  }

  set(regionId: string, dueMs: number): void {
    if (this.at.get(regionId) === dueMs) return; // its entry is in the heap already
    this.at.set(regionId, dueMs);
    this.heap.push({ dueMs, regionId });
  }

  delete(regionId: string): void {
    this.at.delete(regionId);
  }

  /**
   * The regions whose due time is at most `untilMs`, earliest first, each removed from the
   * schedule (the caller visits it, which sets its next due time).
   */
  takeDue(untilMs: number): string[] {
    const due: string[] = [];
    for (let top = this.heap.peek(); top !== undefined && top.dueMs <= untilMs; top = this.heap.peek()) {
      const { dueMs, regionId } = this.heap.pop();
      if (this.at.get(regionId) !== dueMs) continue; // stale: moved or removed since
      this.at.delete(regionId);
      due.push(regionId);
    }
    return due;
  }

  /** Keeps the regions `keep` accepts, drops the others, and rebuilds the heap without stale entries. */
  retain(keep: (regionId: string) => boolean): void {
    for (const regionId of [...this.at.keys()]) if (!keep(regionId)) this.at.delete(regionId);
    this.heap.clear();
    for (const [regionId, dueMs] of this.at) this.heap.push({ dueMs, regionId });
  }
}
