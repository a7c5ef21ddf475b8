// The leader's view of each follower (etcd's Progress/Inflights), and quorum arithmetic.
//   Probe:     next is a guess; send one append per heartbeat interval until one is accepted.
//   Replicate: next is optimistic; stream appends, bounded by Inflights (maxInflightMsgs).
//   Snapshot:  the follower needs a snapshot; send nothing else until it reports back.
import { assert } from '../common/assert.js';
import type { ConfState, NodeId } from './types.js';

export const ProgressState = { Probe: 0, Replicate: 1, Snapshot: 2 } as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

/** Bounded ring of the last indexes of in-flight append messages. */
export class Inflights {
  private readonly buffer: number[];
  private start = 0;
  count = 0;

  constructor(readonly capacity: number) {
    assert(capacity > 0, 'Inflights capacity must be positive');
    this.buffer = new Array<number>(capacity).fill(0);
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  add(lastIndex: number): void {
    assert(!this.full(), 'Inflights.add on a full window');
    this.buffer[(this.start + this.count) % this.capacity] = lastIndex;
    this.count++;
  }

  /** Frees every in-flight message whose last index ≤ index. */
  freeLE(index: number): void {
    while (this.count > 0 && this.buffer[this.start]! <= index) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
  }

  /** Frees the oldest slot (a response was probably lost; see handleHeartbeatResponse). */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** Probe state: an append was sent and we wait for the response or the next heartbeat. */
  probeSent = false;
  /** Snapshot state: index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Set on any message from this peer; CheckQuorum clears it every election timeout. */
  recentActive = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, maxInflight: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
    this.isLearner = isLearner;
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  /** Records that entries ≤ index were sent optimistically. */
  sentEntries(lastIndex: number, entryCount: number): void {
    if (this.state === ProgressState.Replicate) {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true;
    }
  }

  /** An acknowledgement of index n. Returns false if it is stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the append after `rejected`; `matchHint` is the follower's suggestion.
   * Returns false if the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Whether the leader should hold off sending appends to this peer. */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      default:
        return true;
    }
  }
}

export interface TrackerConfig {
  voters: Set<NodeId>;
  learners: Set<NodeId>;
}

export function configFromConfState(cs: ConfState): TrackerConfig {
  return { voters: new Set(cs.voters), learners: new Set(cs.learners) };
}

export function confStateFromConfig(cfg: TrackerConfig): ConfState {
  return {
    voters: [...cfg.voters].sort((a, b) => a - b),
    learners: [...cfg.learners].sort((a, b) => a - b),
  };
}

/** The largest index acknowledged by a majority of voters (the quorum's commit index). */
export function quorumMatchIndex(voters: ReadonlySet<NodeId>, matchOf: (id: NodeId) => number): number {
  if (voters.size === 0) return Number.MAX_SAFE_INTEGER; // an empty config commits nothing meaningful
  const matches: number[] = [];
  for (const id of voters) matches.push(matchOf(id));
  matches.sort((a, b) => b - a);
  return matches[Math.floor(voters.size / 2)]!;
}

export const VoteResult = { Pending: 0, Won: 1, Lost: 2 } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

export function tallyVotes(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const majority = Math.floor(voters.size / 2) + 1;
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  if (granted >= majority) return VoteResult.Won;
  if (voters.size - rejected < majority) return VoteResult.Lost;
  return VoteResult.Pending;
}

export function isQuorum(voters: ReadonlySet<NodeId>, acks: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const id of voters) if (acks(id)) count++;
  return count >= Math.floor(voters.size / 2) + 1;
}
