// ReadIndex bookkeeping (Raft thesis §6.4). A read request records the leader's commit index,
// then waits until a heartbeat round carrying its context is acknowledged by a quorum; only
// then may the read be served, after the state machine has applied up to that index.
import { assert } from '../common/assert.js';
import type { NodeId } from './types.js';

export interface ReadState {
  /** Serve the read once applied ≥ index. */
  readonly index: number;
  readonly context: Uint8Array;
}

export interface PendingRead {
  readonly index: number;
  readonly context: Uint8Array;
  /** Who asked: the leader itself, or a follower that forwarded the request. */
  readonly from: NodeId;
  readonly acks: Set<NodeId>;
  /** The leader's lease voidings when it was registered (raft.ts `suspendLease`): its round confirms the leader after those. */
  readonly epoch: number;
  /** The leader's tick when it was registered: its heartbeats went out then or later (raft.ts `leaseExtend`). */
  readonly tick: number;
}

export function contextKey(context: Uint8Array): string {
  let key = '';
  for (const byte of context) key += String.fromCharCode(byte);
  return key;
}

export class ReadOnlyQueue {
  private readonly pending = new Map<string, PendingRead>();
  private queue: string[] = [];

  constructor(private readonly maxPending: number) {}

  get size(): number {
    return this.queue.length;
  }

  /** Returns false when full or when this context is already pending. */
  add(index: number, context: Uint8Array, from: NodeId, epoch = 0, tick = 0): boolean {
    const key = contextKey(context);
    if (this.pending.has(key) || this.queue.length >= this.maxPending) return false;
    this.pending.set(key, { index, context, from, acks: new Set(), epoch, tick });
    this.queue.push(key);
    return true;
  }

  /** Records a heartbeat ack; returns the acks so far for that request. */
  recvAck(from: NodeId, context: Uint8Array): Set<NodeId> | undefined {
    const read = this.pending.get(contextKey(context));
    if (!read) return undefined;
    read.acks.add(from);
    return read.acks;
  }

  /**
   * A quorum acknowledged `context`: that request and every request queued before it are
   * confirmed (they were registered before the acknowledged heartbeat round was sent).
   */
  advance(context: Uint8Array): PendingRead[] {
    const key = contextKey(context);
    const position = this.queue.indexOf(key);
    if (position < 0) return [];
    const released = this.queue.slice(0, position + 1).map((k) => {
      const read = this.pending.get(k);
      assert(read !== undefined, 'read-only queue and map out of sync');
      this.pending.delete(k);
      return read;
    });
    this.queue = this.queue.slice(position + 1);
    return released;
  }

  lastPendingContext(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)!.context;
  }

  /** Removes and returns every pending request (leadership lost). */
  drain(): PendingRead[] {
    const all = this.queue.map((k) => this.pending.get(k)!);
    this.pending.clear();
    this.queue = [];
    return all;
  }
}
