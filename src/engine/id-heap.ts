// A binary min-heap of request ids: the dedup table evicts a client's lowest id first (D1 in
// region-state.ts) once the client holds dedupRequestsPerClientMax of them. Scanning the record
// for its lowest id cost O(max) = 1,024 steps on every write of a busy client, on every replica;
// the heap makes it O(log max). The ids in it are exactly the keys of the client's results.
import { assert } from '../common/assert.js';

export class IdHeap {
  private readonly ids: number[] = [];

  static of(ids: Iterable<number>): IdHeap {
    const heap = new IdHeap();
    for (const id of ids) heap.push(id);
    return heap;
  }

  get size(): number {
    return this.ids.length;
  }

  push(id: number): void {
    const ids = this.ids;
    let i = ids.length;
    ids.push(id);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (ids[parent]! <= id) break;
      ids[i] = ids[parent]!;
      i = parent;
    }
    ids[i] = id;
  }

  /** Removes and returns the lowest id. */
  popMin(): number {
    const ids = this.ids;
    assert(ids.length > 0, 'popMin of an empty id heap');
    const min = ids[0]!;
    const last = ids.pop()!;
    const n = ids.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && ids[right]! < ids[left]! ? right : left;
        if (ids[child]! >= last) break;
        ids[i] = ids[child]!;
        i = child;
      }
      ids[i] = last;
    }
    return min;
  }
}
