// RaftTransportStreamRequest / RaftTransportStreamResponse (proto/regiondb/v1/raft.proto; the TS types keep the names RaftBatch / RaftBatchAck) ↔ protobuf wire bytes, by hand: the
// raft stream carries every replication message, and proto-loader's path (plain objects with
// uint64s as strings, protobufjs reflection, Long) cost more CPU per message than the rest of
// the transport. The bytes are the ones any protobuf library reads and writes for raft.proto.
//
// Encoding (proto3): fields in number order, defaults omitted, repeated uint64s packed. Sizes
// are computed first, then every byte is written once into one Buffer of exactly that size.
//
// Decoding accepts what a conforming encoder may send: fields in any order, last one wins for
// scalars and embedded messages, repeated fields appended, voters/learners packed or not,
// unknown fields of every wire type skipped. Everything else is INVALID_ARGUMENT naming the
// field and byte offset: a truncated field, a length past its message, a wire type raft.proto
// does not declare for a known field, a varint longer than 10 bytes or (for our fields) ≥ 2^53,
// plus the rules of the raft types: message type 1..14, entry type 0/1, a Snapshot message has
// a snapshot, an envelope has a message. Every loop consumes at least one byte per iteration,
// and nothing is allocated from a length before it is checked against the bytes present.
//
// Aliasing: decoded entry data, snapshot data and contexts are views into the input, not
// copies. Safe because (1) grpc-js hands each received message over in a Buffer of its own
// (its stream decoder concatenates every frame into a new Buffer) that nothing writes to
// afterwards, and (2) no consumer writes into entry data: the WAL copies entries into its
// records, and the raft log and the WAL's MemoryStorage cache keep the Entry objects as they
// are until compaction. The views keep the whole received message alive while any entry of it
// is cached, as protobufjs' decoder (which also returns views) did before this codec.
import { AssertionError } from '../common/assert.js';
import type { Entry, Message, MessageType, Snapshot } from '../raft/types.js';
import type { RaftEntry__Output, RaftEnvelope__Output, RaftMessage__Output, RaftSnapshot__Output, RaftTransportStreamRequest__Output, RaftTransportStreamResponse__Output } from './generated/index.js';
import { type FieldTable, type FieldsOf, VARINT_BYTES_MAX, WIRE_END_GROUP, WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_START_GROUP, WIRE_VARINT, WireReader, invalid, lengthDelimitedSize, tag, varintSize, writeVarint } from './wire.js';

export interface RaftWireEnvelope {
  readonly regionId: string;
  readonly message: Message;
}

export interface RaftBatch {
  readonly clusterId: string;
  readonly fromNodeId: number;
  readonly envelopes: readonly RaftWireEnvelope[];
}

export interface RaftBatchAck {
  readonly accepted: number;
}

/** Unknown groups nested deeper than this are refused (protobuf's own parsers stop at 100). */
const GROUP_DEPTH_MAX = 100;
const UINT32_MAX = 0xffff_ffff;
const MESSAGE_TYPE_MAX = 14;
const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/** Field names and wire types as raft.proto declares them, index = field number (error messages); names checked against the generated types. */
const BATCH_FIELDS: FieldTable = [['', -1], ['cluster_id', WIRE_LEN], ['from_node_id', WIRE_VARINT], ['envelopes', WIRE_LEN]] satisfies FieldsOf<RaftTransportStreamRequest__Output>;
const ENVELOPE_FIELDS: FieldTable = [['', -1], ['region_id', WIRE_LEN], ['message', WIRE_LEN]] satisfies FieldsOf<RaftEnvelope__Output>;
const MESSAGE_FIELDS: FieldTable = [
  ['', -1],
  ['type', WIRE_VARINT],
  ['from', WIRE_VARINT],
  ['to', WIRE_VARINT],
  ['term', WIRE_VARINT],
  ['log_term', WIRE_VARINT],
  ['index', WIRE_VARINT],
  ['entries', WIRE_LEN],
  ['commit', WIRE_VARINT],
  ['reject', WIRE_VARINT],
  ['reject_hint', WIRE_VARINT],
  ['snapshot', WIRE_LEN],
  ['context', WIRE_LEN],
] satisfies FieldsOf<RaftMessage__Output>;
const ENTRY_FIELDS: FieldTable = [['', -1], ['term', WIRE_VARINT], ['index', WIRE_VARINT], ['type', WIRE_VARINT], ['data', WIRE_LEN]] satisfies FieldsOf<RaftEntry__Output>;
const SNAPSHOT_FIELDS: FieldTable = [['', -1], ['index', WIRE_VARINT], ['term', WIRE_VARINT], ['voters', WIRE_VARINT], ['learners', WIRE_VARINT], ['data', WIRE_LEN]] satisfies FieldsOf<RaftSnapshot__Output>;
const ACK_FIELDS: FieldTable = [['', -1], ['accepted', WIRE_VARINT]] satisfies FieldsOf<RaftTransportStreamResponse__Output>;

/** A field's tag byte (every field number here is below 16, so every tag is one byte). */

// ─── Encoding ─────────────────────────────────────────────────────────────────────────────────

/**
 * Sizes of the length-delimited parts of the batch being encoded, in the order the writer needs
 * them (a part's own size before those of its children): computed by the size pass, consumed by
 * the write pass. Reused across calls (encoding is synchronous and never re-entered).
 */
const sizes: number[] = [];
let sizesCount = 0;
let sizesRead = 0;

function reserveSize(): number {
  return sizesCount++;
}

function nextSize(): number {
  return sizes[sizesRead++]!;
}

/** Size of a uint64 value; our values are safe integers, anything else is a bug of the caller. */
function u64Size(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new AssertionError(`raft wire encode: ${field} is not an unsigned safe integer: ${value}`);
  return varintSize(value);
}

/** A uint64 field, omitted when 0. */
function u64FieldSize(value: number, field: string): number {
  return value === 0 ? 0 : 1 + u64Size(value, field);
}

function bytesFieldSize(bytes: Uint8Array): number {
  return bytes.byteLength === 0 ? 0 : lengthDelimitedSize(bytes.byteLength);
}

function writeU64Field(buf: Buffer, pos: number, fieldTag: number, value: number): number {
  if (value === 0) return pos;
  buf[pos] = fieldTag;
  return writeVarint(buf, pos + 1, value);
}

function writeBytesField(buf: Buffer, pos: number, fieldTag: number, bytes: Uint8Array): number {
  if (bytes.byteLength === 0) return pos;
  buf[pos] = fieldTag;
  pos = writeVarint(buf, pos + 1, bytes.byteLength);
  buf.set(bytes, pos);
  return pos + bytes.byteLength;
}

function entrySize(e: Entry): number {
  return u64FieldSize(e.term, 'entry.term') + u64FieldSize(e.index, 'entry.index') + u64FieldSize(e.type, 'entry.type') + bytesFieldSize(e.data);
}

function writeEntry(buf: Buffer, pos: number, e: Entry): number {
  pos = writeU64Field(buf, pos, tag(1, WIRE_VARINT), e.term);
  pos = writeU64Field(buf, pos, tag(2, WIRE_VARINT), e.index);
  pos = writeU64Field(buf, pos, tag(3, WIRE_VARINT), e.type);
  return writeBytesField(buf, pos, tag(4, WIRE_LEN), e.data);
}

function packedSize(values: readonly number[], field: string): number {
  let size = 0;
  for (const v of values) size += u64Size(v, field);
  return size;
}

function writePacked(buf: Buffer, pos: number, fieldTag: number, values: readonly number[]): number {
  if (values.length === 0) return pos;
  buf[pos] = fieldTag;
  pos = writeVarint(buf, pos + 1, nextSize());
  for (const v of values) pos = writeVarint(buf, pos, v);
  return pos;
}

/** Records: the snapshot's size, then the packed sizes of non-empty voters and learners. */
function snapshotSize(s: Snapshot): number {
  const slot = reserveSize();
  const { voters, learners } = s.metadata.confState;
  let size = u64FieldSize(s.metadata.index, 'snapshot.index') + u64FieldSize(s.metadata.term, 'snapshot.term') + bytesFieldSize(s.data);
  if (voters.length > 0) {
    const packed = packedSize(voters, 'snapshot.voters');
    sizes[reserveSize()] = packed;
    size += lengthDelimitedSize(packed);
  }
  if (learners.length > 0) {
    const packed = packedSize(learners, 'snapshot.learners');
    sizes[reserveSize()] = packed;
    size += lengthDelimitedSize(packed);
  }
  sizes[slot] = size;
  return size;
}

function writeSnapshot(buf: Buffer, pos: number, s: Snapshot): number {
  pos = writeU64Field(buf, pos, tag(1, WIRE_VARINT), s.metadata.index);
  pos = writeU64Field(buf, pos, tag(2, WIRE_VARINT), s.metadata.term);
  pos = writePacked(buf, pos, tag(3, WIRE_LEN), s.metadata.confState.voters);
  pos = writePacked(buf, pos, tag(4, WIRE_LEN), s.metadata.confState.learners);
  return writeBytesField(buf, pos, tag(5, WIRE_LEN), s.data);
}

/** Records: the message's size, each entry's size, then the snapshot's sizes. */
function messageSize(m: Message): number {
  const slot = reserveSize();
  let size =
    u64FieldSize(m.type, 'type') +
    u64FieldSize(m.from, 'from') +
    u64FieldSize(m.to, 'to') +
    u64FieldSize(m.term, 'term') +
    u64FieldSize(m.logTerm, 'log_term') +
    u64FieldSize(m.index, 'index') +
    u64FieldSize(m.commit, 'commit') +
    (m.reject ? 2 : 0) +
    u64FieldSize(m.rejectHint, 'reject_hint') +
    bytesFieldSize(m.context);
  for (const e of m.entries) {
    const es = entrySize(e);
    sizes[reserveSize()] = es;
    size += lengthDelimitedSize(es);
  }
  if (m.snapshot) size += lengthDelimitedSize(snapshotSize(m.snapshot));
  sizes[slot] = size;
  return size;
}

function writeMessage(buf: Buffer, pos: number, m: Message): number {
  pos = writeU64Field(buf, pos, tag(1, WIRE_VARINT), m.type);
  pos = writeU64Field(buf, pos, tag(2, WIRE_VARINT), m.from);
  pos = writeU64Field(buf, pos, tag(3, WIRE_VARINT), m.to);
  pos = writeU64Field(buf, pos, tag(4, WIRE_VARINT), m.term);
  pos = writeU64Field(buf, pos, tag(5, WIRE_VARINT), m.logTerm);
  pos = writeU64Field(buf, pos, tag(6, WIRE_VARINT), m.index);
  for (const e of m.entries) {
    buf[pos] = tag(7, WIRE_LEN);
    pos = writeEntry(buf, writeVarint(buf, pos + 1, nextSize()), e);
  }
  pos = writeU64Field(buf, pos, tag(8, WIRE_VARINT), m.commit);
  if (m.reject) {
    buf[pos++] = tag(9, WIRE_VARINT);
    buf[pos++] = 1;
  }
  pos = writeU64Field(buf, pos, tag(10, WIRE_VARINT), m.rejectHint);
  if (m.snapshot) {
    buf[pos] = tag(11, WIRE_LEN);
    pos = writeSnapshot(buf, writeVarint(buf, pos + 1, nextSize()), m.snapshot);
  }
  return writeBytesField(buf, pos, tag(12, WIRE_LEN), m.context);
}

export function encodeRaftBatch(batch: RaftBatch): Buffer {
  sizesCount = 0;
  const clusterIdBytes = Buffer.byteLength(batch.clusterId);
  let size = (clusterIdBytes === 0 ? 0 : lengthDelimitedSize(clusterIdBytes)) + u64FieldSize(batch.fromNodeId, 'from_node_id');
  for (const env of batch.envelopes) {
    // Records: the envelope's size, its region id's byte length, then the message's sizes.
    const slot = reserveSize();
    const regionIdBytes = Buffer.byteLength(env.regionId);
    sizes[reserveSize()] = regionIdBytes;
    const envelope = (regionIdBytes === 0 ? 0 : lengthDelimitedSize(regionIdBytes)) + lengthDelimitedSize(messageSize(env.message));
    sizes[slot] = envelope;
    size += lengthDelimitedSize(envelope);
  }

  const buf = Buffer.allocUnsafe(size);
  sizesRead = 0;
  let pos = 0;
  if (clusterIdBytes > 0) {
    buf[pos] = tag(1, WIRE_LEN);
    pos = writeVarint(buf, pos + 1, clusterIdBytes);
    pos += buf.write(batch.clusterId, pos, 'utf8');
  }
  pos = writeU64Field(buf, pos, tag(2, WIRE_VARINT), batch.fromNodeId);
  for (const env of batch.envelopes) {
    buf[pos] = tag(3, WIRE_LEN);
    pos = writeVarint(buf, pos + 1, nextSize());
    const regionIdBytes = nextSize();
    if (regionIdBytes > 0) {
      buf[pos] = tag(1, WIRE_LEN);
      pos = writeVarint(buf, pos + 1, regionIdBytes);
      pos += buf.write(env.regionId, pos, 'utf8');
    }
    buf[pos] = tag(2, WIRE_LEN);
    pos = writeMessage(buf, writeVarint(buf, pos + 1, nextSize()), env.message);
  }
  // allocUnsafe: a byte left unwritten would send stale memory to the peer.
  if (pos !== size || sizesRead !== sizesCount) throw new AssertionError(`raft wire encode: wrote ${pos} of ${size} bytes, used ${sizesRead} of ${sizesCount} sizes`);
  return buf;
}

export function encodeRaftBatchAck(ack: RaftBatchAck): Buffer {
  const accepted = ack.accepted;
  if (!Number.isInteger(accepted) || accepted < 0 || accepted > UINT32_MAX) throw new AssertionError(`raft wire encode: accepted is not a uint32: ${accepted}`);
  const buf = Buffer.allocUnsafe(accepted === 0 ? 0 : 1 + varintSize(accepted));
  writeU64Field(buf, 0, tag(1, WIRE_VARINT), accepted);
  return buf;
}

// ─── Decoding ─────────────────────────────────────────────────────────────────────────────────

/** The shared reader (wire.ts) with this codec's varint rules and group depth accounting. */
class RaftWireReader extends WireReader {
  /** A varint as a safe integer; `what` names the field in errors. */
  u64(end: number, what: string): number {
    const pos = this.pos;
    if (pos < end && this.buf[pos]! < 0x80) {
      this.pos = pos + 1;
      return this.buf[pos]!;
    }
    return this.u64Multibyte(end, what);
  }

  private u64Multibyte(end: number, what: string): number {
    const buf = this.buf;
    const start = this.pos;
    let pos = start;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (pos >= end) throw invalid(`${what}: truncated varint at byte ${start}`);
      const b = buf[pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        // Exact below 2^53; a larger value rounds to ≥ 2^53, so the check cannot miss it.
        if (value > Number.MAX_SAFE_INTEGER) throw invalid(`${what}: varint at byte ${start} is 2^53 or more`);
        this.pos = pos;
        return value;
      }
      scale *= 0x80;
    }
    throw invalid(`${what}: varint at byte ${start} is longer than ${VARINT_BYTES_MAX} bytes`);
  }

  /** A bool: any varint, true unless every payload bit is 0. */
  bool(end: number, what: string): boolean {
    const start = this.pos;
    let set = false;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (this.pos >= end) throw invalid(`${what}: truncated varint at byte ${start}`);
      const b = this.buf[this.pos++]!;
      if ((b & 0x7f) !== 0) set = true;
      if (b < 0x80) return set;
    }
    throw invalid(`${what}: varint at byte ${start} is longer than ${VARINT_BYTES_MAX} bytes`);
  }

  tag(end: number, message: string): number {
    const at = this.pos;
    this.tagAt = at;
    if (at < end && this.buf[at]! < 0x80 && this.buf[at]! >= 0x08) {
      this.pos = at + 1; // every field of raft.proto has a one-byte tag
      return this.buf[at]!;
    }
    const value = this.u64Multibyte(end, `${message} tag`);
    if (value > UINT32_MAX || value >>> 3 === 0) throw invalid(`${message}: invalid tag ${value} at byte ${at}`);
    return value;
  }

  /** A length prefix, checked against the bytes left in the message; returns the part's end. */
  lengthDelimited(end: number, what: string): number {
    const at = this.pos;
    const length = this.u64(end, what);
    if (length > end - this.pos) throw invalid(`${what}: length ${length} at byte ${at} runs past the end of its message (${end - this.pos} bytes left)`);
    return this.pos + length;
  }

  bytes(end: number, what: string): Uint8Array {
    const partEnd = this.lengthDelimited(end, what);
    const start = this.pos;
    this.pos = partEnd;
    return partEnd === start ? EMPTY_BYTES : this.buf.subarray(start, partEnd);
  }

  string(end: number, what: string): string {
    const partEnd = this.lengthDelimited(end, what);
    const start = this.pos;
    this.pos = partEnd;
    return this.buf.toString('utf8', start, partEnd);
  }

  /** A field this decoder does not read: an unknown one is skipped, a known one has the wrong wire type. */
  skipField(fieldTag: number, end: number, message: string, fields: FieldTable): void {
    const field = fieldTag >>> 3;
    const wireType = fieldTag & 7;
    const known = fields[field];
    if (known) throw invalid(`${message}.${known[0]} (field ${field}): wire type ${wireType} at byte ${this.tagAt}, raft.proto declares ${known[1]}`);
    this.skipValue(field, wireType, end, `${message} unknown field ${field}`, 0);
  }

  private skipValue(field: number, wireType: number, end: number, what: string, depth: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.skipVarint(end, what);
        return;
      case WIRE_I64:
        this.skipBytes(8, end, what);
        return;
      case WIRE_I32:
        this.skipBytes(4, end, what);
        return;
      case WIRE_LEN:
        this.pos = this.lengthDelimited(end, what);
        return;
      case WIRE_START_GROUP:
        this.skipGroup(field, end, what, depth + 1);
        return;
      case WIRE_END_GROUP:
        throw invalid(`${what}: end-group tag at byte ${this.tagAt} without a group`);
      default:
        throw invalid(`${what}: invalid wire type ${wireType} at byte ${this.tagAt}`);
    }
  }

  private skipGroup(field: number, end: number, what: string, depth: number): void {
    if (depth > GROUP_DEPTH_MAX) throw invalid(`${what}: groups nested deeper than ${GROUP_DEPTH_MAX}`);
    for (;;) {
      if (this.pos >= end) throw invalid(`${what}: group ${field} is not closed`);
      const fieldTag = this.tag(end, what);
      if ((fieldTag & 7) === WIRE_END_GROUP) {
        if (fieldTag >>> 3 !== field) throw invalid(`${what}: group ${field} closed by end-group ${fieldTag >>> 3} at byte ${this.tagAt}`);
        return;
      }
      this.skipValue(fieldTag >>> 3, fieldTag & 7, end, what, depth);
    }
  }
}

function decodeEntry(r: RaftWireReader, end: number, at: number): Entry {
  let term = 0;
  let index = 0;
  let type = 0;
  let data = EMPTY_BYTES;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'RaftEntry');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        term = r.u64(end, 'RaftEntry.term');
        break;
      case tag(2, WIRE_VARINT):
        index = r.u64(end, 'RaftEntry.index');
        break;
      case tag(3, WIRE_VARINT):
        type = r.u64(end, 'RaftEntry.type');
        break;
      case tag(4, WIRE_LEN):
        data = r.bytes(end, 'RaftEntry.data');
        break;
      default:
        r.skipField(fieldTag, end, 'RaftEntry', ENTRY_FIELDS);
    }
  }
  if (type !== 0 && type !== 1) throw invalid(`RaftEntry at byte ${at}: type ${type} is unknown`);
  return { term, index, type, data };
}

/** A repeated uint64 field element: one varint, or (packed) a length-delimited run of them. */
function decodeIds(r: RaftWireReader, fieldTag: number, end: number, into: number[], what: string): void {
  if ((fieldTag & 7) === WIRE_VARINT) {
    into.push(r.u64(end, what));
    return;
  }
  const packedEnd = r.lengthDelimited(end, what);
  while (r.pos < packedEnd) into.push(r.u64(packedEnd, what));
}

function decodeSnapshot(r: RaftWireReader, end: number): Snapshot {
  let index = 0;
  let term = 0;
  const voters: number[] = [];
  const learners: number[] = [];
  let data = EMPTY_BYTES;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'RaftSnapshot');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        index = r.u64(end, 'RaftSnapshot.index');
        break;
      case tag(2, WIRE_VARINT):
        term = r.u64(end, 'RaftSnapshot.term');
        break;
      case tag(3, WIRE_VARINT):
      case tag(3, WIRE_LEN):
        decodeIds(r, fieldTag, end, voters, 'RaftSnapshot.voters');
        break;
      case tag(4, WIRE_VARINT):
      case tag(4, WIRE_LEN):
        decodeIds(r, fieldTag, end, learners, 'RaftSnapshot.learners');
        break;
      case tag(5, WIRE_LEN):
        data = r.bytes(end, 'RaftSnapshot.data');
        break;
      default:
        r.skipField(fieldTag, end, 'RaftSnapshot', SNAPSHOT_FIELDS);
    }
  }
  return { metadata: { index, term, confState: { voters, learners } }, data };
}

function decodeMessage(r: RaftWireReader, end: number): Message {
  const at = r.pos;
  let type = 0;
  let from = 0;
  let to = 0;
  let term = 0;
  let logTerm = 0;
  let index = 0;
  const entries: Entry[] = [];
  let commit = 0;
  let reject = false;
  let rejectHint = 0;
  let snapshot: Snapshot | null = null;
  let context = EMPTY_BYTES;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'RaftMessage');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        type = r.u64(end, 'RaftMessage.type');
        break;
      case tag(2, WIRE_VARINT):
        from = r.u64(end, 'RaftMessage.from');
        break;
      case tag(3, WIRE_VARINT):
        to = r.u64(end, 'RaftMessage.to');
        break;
      case tag(4, WIRE_VARINT):
        term = r.u64(end, 'RaftMessage.term');
        break;
      case tag(5, WIRE_VARINT):
        logTerm = r.u64(end, 'RaftMessage.log_term');
        break;
      case tag(6, WIRE_VARINT):
        index = r.u64(end, 'RaftMessage.index');
        break;
      case tag(7, WIRE_LEN): {
        const entryEnd = r.lengthDelimited(end, 'RaftMessage.entries');
        entries.push(decodeEntry(r, entryEnd, r.pos));
        break;
      }
      case tag(8, WIRE_VARINT):
        commit = r.u64(end, 'RaftMessage.commit');
        break;
      case tag(9, WIRE_VARINT):
        reject = r.bool(end, 'RaftMessage.reject');
        break;
      case tag(10, WIRE_VARINT):
        rejectHint = r.u64(end, 'RaftMessage.reject_hint');
        break;
      case tag(11, WIRE_LEN):
        snapshot = decodeSnapshot(r, r.lengthDelimited(end, 'RaftMessage.snapshot'));
        break;
      case tag(12, WIRE_LEN):
        context = r.bytes(end, 'RaftMessage.context');
        break;
      default:
        r.skipField(fieldTag, end, 'RaftMessage', MESSAGE_FIELDS);
    }
  }
  if (type < 1 || type > MESSAGE_TYPE_MAX) throw invalid(`RaftMessage at byte ${at}: raft message type ${type} is unknown`);
  if (type === 9 && !snapshot) throw invalid(`RaftMessage at byte ${at}: snapshot message without a snapshot`);
  return { type: type as MessageType, from, to, term, logTerm, index, entries, commit, reject, rejectHint, snapshot, context };
}

function decodeEnvelope(r: RaftWireReader, end: number, i: number): RaftWireEnvelope {
  let regionId = '';
  let message: Message | null = null;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'RaftEnvelope');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        regionId = r.string(end, 'RaftEnvelope.region_id');
        break;
      case tag(2, WIRE_LEN):
        message = decodeMessage(r, r.lengthDelimited(end, 'RaftEnvelope.message'));
        break;
      default:
        r.skipField(fieldTag, end, 'RaftEnvelope', ENVELOPE_FIELDS);
    }
  }
  if (!message) throw invalid(`envelopes[${i}]: raft envelope without a message`);
  return { regionId, message };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Entry data, snapshot data and contexts of the result are views into `bytes` (see the top of this file). */
export function decodeRaftBatch(bytes: Uint8Array): RaftBatch {
  const r = new RaftWireReader(asBuffer(bytes));
  const end = r.buf.length;
  let clusterId = '';
  let fromNodeId = 0;
  const envelopes: RaftWireEnvelope[] = [];
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'RaftTransportStreamRequest');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        clusterId = r.string(end, 'RaftTransportStreamRequest.cluster_id');
        break;
      case tag(2, WIRE_VARINT):
        fromNodeId = r.u64(end, 'RaftTransportStreamRequest.from_node_id');
        break;
      case tag(3, WIRE_LEN):
        envelopes.push(decodeEnvelope(r, r.lengthDelimited(end, 'RaftTransportStreamRequest.envelopes'), envelopes.length));
        break;
      default:
        r.skipField(fieldTag, end, 'RaftTransportStreamRequest', BATCH_FIELDS);
    }
  }
  return { clusterId, fromNodeId, envelopes };
}

export function decodeRaftBatchAck(bytes: Uint8Array): RaftBatchAck {
  const r = new RaftWireReader(asBuffer(bytes));
  const end = r.buf.length;
  let accepted = 0;
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'RaftTransportStreamResponse');
    if (fieldTag === tag(1, WIRE_VARINT)) {
      const at = r.pos;
      accepted = r.u64(end, 'RaftTransportStreamResponse.accepted');
      if (accepted > UINT32_MAX) throw invalid(`RaftTransportStreamResponse.accepted: ${accepted} at byte ${at} is not a uint32`);
    } else {
      r.skipField(fieldTag, end, 'RaftTransportStreamResponse', ACK_FIELDS);
    }
  }
  return { accepted };
}
