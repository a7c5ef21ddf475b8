// A binary min-heap of request ids: the dedup table evicts a client's lowest id first (D1 in
// region-state.ts) once the client holds dedupRequestsPerClientMax of them. Scanning the record
// for its lowest id cost O(max) = 1,024 steps on every write of a busy client, on every replica;
// the heap makes it O(log max). The ids in it are exactly the keys of the client's results.
import { MinHeap } from '../common/min-heap.js';

const identity = (id: number): number => id;

export class IdHeap {
  private readonly heap = new MinHeap<number>(identity);

  static of(ids: Iterable<number>): IdHeap {
    const heap = new IdHeap();
    for (const id of ids) heap.push(id);
    return heap;
  }

  get size(): number {
    return this.heap.size;
  }

  push(id: number): void {
    this.heap.push(id);
  }

  /** The lowest id, or undefined when empty. */
  peekMin(): number | undefined {
    return this.heap.peek();
  }

  /** Removes and returns the lowest id. */
  popMin(): number {
    return this.heap.pop();
  }
}
