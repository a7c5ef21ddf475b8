// Raft wire and storage types. Plain data only: the host encodes them (protobuf on the wire,
// CRC-framed records in the WAL). Indexes and terms are safe integers (< 2^53).

export type NodeId = number;
/** NodeId 0 means "nobody": no vote cast, no known leader. */
export const NO_NODE: NodeId = 0;

export const EntryType = {
  Normal: 0,
  /** data = encoded ConfChange (confchange.ts). */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** Persisted before any message that depends on it is sent (see raft.ts invariants). */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NO_NODE, commit: 0 };

export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

/** data is opaque to raft; in regiondb it is a manifest reference, never bulk rows. */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

export const EMPTY_SNAPSHOT: Snapshot = {
  metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } },
  data: new Uint8Array(0),
};

export const MessageType = {
  Append: 1,
  AppendResponse: 2,
  Vote: 3,
  VoteResponse: 4,
  PreVote: 5,
  PreVoteResponse: 6,
  Heartbeat: 7,
  HeartbeatResponse: 8,
  Snapshot: 9,
  TimeoutNow: 10,
  ReadIndex: 11,
  ReadIndexResponse: 12,
  TransferLeader: 13,
  /**
   * Leader → follower: stop ticking (docs/quiescence.md). index/logTerm: the leader's last entry;
   * commit: its commit index (equal to index). A follower that holds exactly that log stops
   * ticking and does not answer; one that does not answers with a HeartbeatResponse.
   */
  Quiesce: 14,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const messageTypeName: Record<MessageType, string> = {
  1: 'Append',
  2: 'AppendResponse',
  3: 'Vote',
  4: 'VoteResponse',
  5: 'PreVote',
  6: 'PreVoteResponse',
  7: 'Heartbeat',
  8: 'HeartbeatResponse',
  9: 'Snapshot',
  10: 'TimeoutNow',
  11: 'ReadIndex',
  12: 'ReadIndexResponse',
  13: 'TransferLeader',
  14: 'Quiesce',
};

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** Append: term of the entry at `index`. Reject responses: term hint for fast backoff. */
  readonly logTerm: number;
  /** Append: index preceding `entries`. Responses: last index acknowledged or rejected. */
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  /** Reject responses: the follower's hint for the next probe (§5.3 fast backoff). */
  readonly rejectHint: number;
  readonly snapshot: Snapshot | null;
  /** ReadIndex request context; heartbeat context; "transfer" marker for forced campaigns. */
  readonly context: Uint8Array;
}

const EMPTY_BYTES = new Uint8Array(0);

export function makeMessage(fields: Partial<Message> & Pick<Message, 'type' | 'to'>): Message {
  return {
    from: NO_NODE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    snapshot: null,
    context: EMPTY_BYTES,
    ...fields,
  };
}

/** Approximate in-memory and on-wire size, used by flow control (maxSizePerMsg etc.). */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + 24;
}

export function entriesSizeBytes(entries: readonly Entry[]): number {
  let total = 0;
  for (const entry of entries) total += entrySizeBytes(entry);
  return total;
}

export function isHardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

export function isResponseMessage(type: MessageType): boolean {
  return (
    type === MessageType.AppendResponse ||
    type === MessageType.VoteResponse ||
    type === MessageType.PreVoteResponse ||
    type === MessageType.HeartbeatResponse ||
    type === MessageType.ReadIndexResponse
  );
}
