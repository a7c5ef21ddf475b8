// Raft messages ↔ their protobuf shape (proto/regiondb/v1/raft.proto), validated on decode:
// a malformed message from the network is an INVALID_ARGUMENT, never a crash.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Entry, Message, MessageType, Snapshot } from '../raft/types.js';
import { u64 } from './proto.js';

export interface ProtoRaftEntry {
  term: string;
  index: string;
  type: number;
  data: Uint8Array;
}

export interface ProtoRaftSnapshot {
  index: string;
  term: string;
  voters: string[];
  learners: string[];
  data: Uint8Array;
}

export interface ProtoRaftMessage {
  type: number;
  from: string;
  to: string;
  term: string;
  log_term: string;
  index: string;
  entries: ProtoRaftEntry[];
  commit: string;
  reject: boolean;
  reject_hint: string;
  snapshot: ProtoRaftSnapshot | null;
  context: Uint8Array;
}

export function encodeRaftMessage(m: Message): ProtoRaftMessage {
  return {
    type: m.type,
    from: String(m.from),
    to: String(m.to),
    term: String(m.term),
    log_term: String(m.logTerm),
    index: String(m.index),
    entries: m.entries.map((e) => ({ term: String(e.term), index: String(e.index), type: e.type, data: e.data })),
    commit: String(m.commit),
    reject: m.reject,
    reject_hint: String(m.rejectHint),
    snapshot: m.snapshot
      ? {
          index: String(m.snapshot.metadata.index),
          term: String(m.snapshot.metadata.term),
          voters: m.snapshot.metadata.confState.voters.map(String),
          learners: m.snapshot.metadata.confState.learners.map(String),
          data: m.snapshot.data,
        }
      : null,
    context: m.context,
  };
}

const bytes = (v: unknown, field: string): Uint8Array => {
  if (v instanceof Uint8Array) return v;
  throw new RegionDbError(ErrorCode.InvalidArgument, `${field}: expected bytes`);
};

export function decodeRaftMessage(p: ProtoRaftMessage | null | undefined): Message {
  if (!p) throw new RegionDbError(ErrorCode.InvalidArgument, 'raft envelope without a message');
  const type = p.type;
  if (!Number.isInteger(type) || type < 1 || type > 13) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `raft message type ${type} is unknown`);
  }
  const entries: Entry[] = (p.entries ?? []).map((e, i) => {
    if (e.type !== 0 && e.type !== 1) throw new RegionDbError(ErrorCode.InvalidArgument, `entries[${i}].type ${e.type} is unknown`);
    return { term: u64(e.term, `entries[${i}].term`), index: u64(e.index, `entries[${i}].index`), type: e.type, data: bytes(e.data, `entries[${i}].data`) };
  });
  let snapshot: Snapshot | null = null;
  if (p.snapshot) {
    const s = p.snapshot;
    snapshot = {
      metadata: {
        index: u64(s.index, 'snapshot.index'),
        term: u64(s.term, 'snapshot.term'),
        confState: { voters: s.voters.map((v) => u64(v, 'snapshot.voters')), learners: s.learners.map((v) => u64(v, 'snapshot.learners')) },
      },
      data: bytes(s.data, 'snapshot.data'),
    };
  }
  if (type === 9 && !snapshot) throw new RegionDbError(ErrorCode.InvalidArgument, 'snapshot message without a snapshot');
  return {
    type: type as MessageType,
    from: u64(p.from, 'from'),
    to: u64(p.to, 'to'),
    term: u64(p.term, 'term'),
    logTerm: u64(p.log_term, 'log_term'),
    index: u64(p.index, 'index'),
    entries,
    commit: u64(p.commit, 'commit'),
    reject: p.reject === true,
    rejectHint: u64(p.reject_hint, 'reject_hint'),
    snapshot,
    context: bytes(p.context ?? new Uint8Array(0), 'context'),
  };
}
