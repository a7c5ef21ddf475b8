// A binary min-heap ordered by a number each item carries (`keyOf`). Shared by the dedup table's
// request ids (src/engine/id-heap.ts) and the flusher's due times (src/datanode/due-schedule.ts).
import { assert } from './assert.js';

export class MinHeap<T> {
  private items: T[] = [];

  constructor(private readonly keyOf: (item: T) => number) {}

  get size(): number {
    return this.items.length;
  }

  /** The item with the lowest key, without removing it. */
  peek(): T | undefined {
    return this.items[0];
  }

  clear(): void {
    this.items = [];
  }

  push(item: T): void {
    const items = this.items;
    const key = this.keyOf(item);
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.keyOf(items[parent]!) <= key) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = item;
  }

  /** Removes and returns the item with the lowest key. */
  pop(): T {
    const items = this.items;
    assert(items.length > 0, 'pop of an empty heap');
    const top = items[0]!;
    const last = items.pop()!;
    const n = items.length;
    if (n > 0) {
      const lastKey = this.keyOf(last);
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && this.keyOf(items[right]!) < this.keyOf(items[left]!) ? right : left;
        if (this.keyOf(items[child]!) >= lastKey) break;
        items[i] = items[child]!;
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}
