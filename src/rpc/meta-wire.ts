// Two Meta messages by hand (proto/regiondb/v1/meta.proto), the ones whose size grows with the
// regions of the cluster:
//   - HeartbeatRequest (with its ReplicaStats), both ways: every datanode sends one per heartbeat
//     interval carrying one ReplicaStat per hosted replica, and at 1,000 replicas per node
//     proto-loader's path was most of an idle datanode's CPU (protobufjs' fromObject parsing every
//     uint64 decimal string through Long.fromString, then encode) and a growing share of the
//     metasrv's (decode + toObject of 3 × N stats per interval);
//   - GetRoutesResponse, encoding only (the metasrv's side): it holds a route per region of the
//     table, and when a node leading hundreds of regions dies every client and datanode asks for
//     them at once; serializing them through protobufjs took the metasrv's whole CPU in
//     bench-scale's storm at 1,000 regions, delaying the heartbeats it judges liveness by.
// docs/performance.md, "Regions per node".
//
// Encoding writes exactly protobufjs' bytes for what its fromObject accepts from our callers:
// every field that is present (not null/undefined) goes out, proto3 defaults included, in field
// number order; repeated uint64s packed; an empty repeated field omitted; uint64s given as decimal
// strings or safe integers; uint32s as value >>> 0. GetRoutesResponse's `table` (a TableSchema,
// one per response) is encoded by protobufjs itself and the routes appended (a message's fields
// may be written one after the other). The one exception, as in batch-wire.ts: a lone UTF-16
// surrogate in a string is written as U+FFFD (Buffer's UTF-8), where protobufjs writes a short
// string's surrogate as three bytes of its own. A uint64 that is not an integer in range is a bug
// of the caller: AssertionError (protobufjs would have sent some other number).
//
// Decoding (HeartbeatRequest) returns the plain objects proto-loader returns with the options of src/rpc/proto.ts
// (keepCase, longs as String, defaults, arrays), key order included (repeated fields first, then
// the others in field order, as protobufjs' toObject builds them). It reads with batch-wire.ts's
// reader, so it refuses what that one refuses (a wire type the .proto does not declare for a known
// field, lengths past their message, over-long or truncated varints, bad groups), plus a packed
// run whose last varint crosses the run's end (protobufjs reads past it): whatever it accepts,
// proto-loader decodes to an equal object (test/unit/meta-wire.test.ts fuzzes that).
// Repeated uint64s are read packed or unpacked, as a conforming decoder must.
import type * as grpc from '@grpc/grpc-js';
import { AssertionError } from '../common/assert.js';
import { BatchWireReader, type LongInput, type WireInput, asString, parseLong, utf8Length, writeVarint64 } from './batch-wire.js';
import type { GetRoutesResponse, HeartbeatRequest, HeartbeatRequest__Output, HeldReplica__Output, Peer__Output, ReplicaStat__Output } from './generated/index.js';
import { loadProtos } from './proto.js';
import { type FieldTable, type FieldsOf, WIRE_LEN, WIRE_VARINT, lengthDelimitedSize, tag, varintSize, writeVarint } from './wire.js';

export type HeartbeatRequestInput = WireInput<HeartbeatRequest>;
export type ReplicaStatInput = NonNullable<HeartbeatRequestInput['replicas']>[number];
type HeldReplicaInput = NonNullable<HeartbeatRequestInput['held_replicas']>[number];
export type GetRoutesResponseInput = WireInput<GetRoutesResponse>;
type RegionRouteInput = NonNullable<GetRoutesResponseInput['routes']>[number];
type PeerInput = NonNullable<RegionRouteInput['peers']>[number];

/** Message depths as protobufjs counts them for its recursion limit (unknown groups). */
const DEPTH_HEARTBEAT = 0;
const DEPTH_REPLICA_STAT = 1;
const DEPTH_HELD_REPLICA = 1;
const DEPTH_PEER = 2;

const HEARTBEAT_FIELDS: FieldTable = [
  ['', -1],
  ['cluster_id', WIRE_LEN],
  ['node_id', WIRE_VARINT],
  ['addr', WIRE_LEN],
  ['replicas', WIRE_LEN],
  ['store_id', WIRE_LEN],
  ['report_incarnation', WIRE_VARINT],
  ['report_seq', WIRE_VARINT],
  ['report_base_seq', WIRE_VARINT],
  ['removed_region_ids', WIRE_LEN],
  ['start_count', WIRE_VARINT],
  ['start_id', WIRE_LEN],
  ['held_replicas', WIRE_LEN],
] satisfies FieldsOf<HeartbeatRequest__Output>;
const HELD_REPLICA_FIELDS: FieldTable = [
  ['', -1],
  ['region_id', WIRE_LEN],
  ['peer_id', WIRE_VARINT],
] satisfies FieldsOf<HeldReplica__Output>;
const REPLICA_STAT_FIELDS: FieldTable = [
  ['', -1],
  ['region_id', WIRE_LEN],
  ['peer_id', WIRE_VARINT],
  ['role', WIRE_LEN],
  ['term', WIRE_VARINT],
  ['leader_node_id', WIRE_VARINT],
  ['applied_index', WIRE_VARINT],
  ['commit_index', WIRE_VARINT],
  ['flushed_index', WIRE_VARINT],
  ['memtable_bytes', WIRE_VARINT],
  ['voters', WIRE_LEN],
  ['learners', WIRE_LEN],
  ['health', WIRE_LEN],
  ['failure', WIRE_LEN],
  ['conf_index', WIRE_VARINT],
  ['snapshot_installed_index', WIRE_VARINT],
  ['ssts', WIRE_VARINT],
  ['members', WIRE_LEN],
] satisfies FieldsOf<ReplicaStat__Output>;
const PEER_FIELDS: FieldTable = [
  ['', -1],
  ['peer_id', WIRE_VARINT],
  ['node_id', WIRE_VARINT],
  ['addr', WIRE_LEN],
] satisfies FieldsOf<Peer__Output>;

// ─── Encoding ─────────────────────────────────────────────────────────────────────────────────
// Two passes over the message: the first parses every value once and records, in order, each
// string's UTF-8 length, each uint64 (a number, or NaN with the value in `bigs`), each packed
// run's and each stat's payload size; the second writes every byte once into a Buffer of exactly
// the total size, reading the records back in the same order.

/** One encoding's records (module scratch: encoding is synchronous, so one at a time). */
let records: number[] = [];
let recordsCount = 0;
let recordsRead = 0;
/** uint64s beyond the safe integers (as unsigned 64-bit bigints), in order. */
let bigs: bigint[] = [];
let bigsRead = 0;
/** ASCII strings up to this many units are written in JS (region ids, roles, health). */
const SHORT_ASCII_UNITS_MAX = 48;
/** Scratch kept between encodings up to this many records (a larger heartbeat's is dropped). */
const RETAINED_RECORDS_MAX = 1 << 20;

function encodeBug(message: string): AssertionError {
  return new AssertionError(`heartbeat wire encode: ${message}`);
}

function expectObject(value: unknown, field: string): asserts value is object {
  if (typeof value !== 'object' || value === null) throw encodeBug(`${field}: expected an object, got ${String(value)}`);
}

/** Records a uint64; returns its varint's size. */
function recordLong(value: unknown, field: string): number {
  const n = parseLong(value, field, false);
  if (typeof n === 'number') {
    records[recordsCount++] = n;
    return varintSize(n);
  }
  records[recordsCount++] = Number.NaN;
  bigs.push(n);
  let size = 1;
  for (let rest = n >> 7n; rest > 0n; rest >>= 7n) size++;
  return size;
}

function writeRecordedLong(buf: Buffer, pos: number): number {
  const n = records[recordsRead++]!;
  if (n >= 0) return writeVarint(buf, pos, n);
  const big = bigs[bigsRead++]!;
  return writeVarint64(buf, pos, Number(big & 0xffff_ffffn), Number(big >> 32n));
}

/** Size of a present string field (tag included); records its UTF-8 length. */
function recordString(value: unknown): number {
  const bytes = utf8Length(asString(value));
  records[recordsCount++] = bytes;
  return lengthDelimitedSize(bytes);
}

function writeRecordedString(buf: Buffer, pos: number, fieldTag: number, value: unknown): number {
  const s = asString(value);
  const bytes = records[recordsRead++]!;
  buf[pos] = fieldTag;
  pos = writeVarint(buf, pos + 1, bytes);
  if (bytes === s.length && bytes <= SHORT_ASCII_UNITS_MAX) {
    // ASCII (one byte per unit): written in JS, cheaper than a call into Buffer's encoder.
    for (let i = 0; i < bytes; i++) buf[pos + i] = s.charCodeAt(i);
    return pos + bytes;
  }
  const written = buf.write(s, pos, bytes, 'utf8');
  if (written !== bytes) throw encodeBug(`a string of ${bytes} UTF-8 bytes took ${written}`);
  return pos + bytes;
}

/** Size of a present packed uint64 field (tag included, 0 when empty); records its payload size. */
function recordPacked(list: unknown, field: string): number {
  if (!Array.isArray(list)) throw encodeBug(`${field}: array expected`);
  if (list.length === 0) return 0;
  const at = recordsCount++;
  let payload = 0;
  for (const v of list as readonly LongInput[]) payload += recordLong(v, field);
  records[at] = payload;
  return lengthDelimitedSize(payload);
}

function writeRecordedPacked(buf: Buffer, pos: number, fieldTag: number, list: readonly unknown[]): number {
  if (list.length === 0) return pos;
  buf[pos] = fieldTag;
  pos = writeVarint(buf, pos + 1, records[recordsRead++]!);
  for (let i = 0; i < list.length; i++) pos = writeRecordedLong(buf, pos);
  return pos;
}

/** Size of a present uint64 field (tag included); records the value. */
function longFieldSize(value: unknown, field: string): number {
  return value == null ? 0 : 1 + recordLong(value, field);
}

function writeLongField(buf: Buffer, pos: number, fieldTag: number, value: unknown): number {
  if (value == null) return pos;
  buf[pos] = fieldTag;
  return writeRecordedLong(buf, pos + 1);
}

function stringFieldSize(value: unknown): number {
  return value == null ? 0 : recordString(value);
}

function writeStringField(buf: Buffer, pos: number, fieldTag: number, value: unknown): number {
  return value == null ? pos : writeRecordedString(buf, pos, fieldTag, value);
}

function statSize(stat: unknown, index: number): number {
  expectObject(stat, `HeartbeatRequest.replicas[${index}]`);
  const s = stat as ReplicaStatInput;
  const at = recordsCount++;
  let size = stringFieldSize(s.region_id);
  size += longFieldSize(s.peer_id, 'ReplicaStat.peer_id');
  size += stringFieldSize(s.role);
  size += longFieldSize(s.term, 'ReplicaStat.term');
  size += longFieldSize(s.leader_node_id, 'ReplicaStat.leader_node_id');
  size += longFieldSize(s.applied_index, 'ReplicaStat.applied_index');
  size += longFieldSize(s.commit_index, 'ReplicaStat.commit_index');
  size += longFieldSize(s.flushed_index, 'ReplicaStat.flushed_index');
  size += longFieldSize(s.memtable_bytes, 'ReplicaStat.memtable_bytes');
  if (s.voters != null) size += recordPacked(s.voters, 'ReplicaStat.voters');
  if (s.learners != null) size += recordPacked(s.learners, 'ReplicaStat.learners');
  size += stringFieldSize(s.health);
  size += stringFieldSize(s.failure);
  size += longFieldSize(s.conf_index, 'ReplicaStat.conf_index');
  size += longFieldSize(s.snapshot_installed_index, 'ReplicaStat.snapshot_installed_index');
  if (s.ssts != null) size += 2 + varintSize((s.ssts as number) >>> 0); // field 16: a two-byte tag
  const members = s.members;
  if (members != null) {
    if (!Array.isArray(members)) throw encodeBug('ReplicaStat.members: array expected');
    for (let i = 0; i < members.length; i++) size += 1 + peerSize(members[i], `ReplicaStat.members[${i}]`); // field 17: a two-byte tag
  }
  records[at] = size;
  return lengthDelimitedSize(size);
}

function writeStat(buf: Buffer, pos: number, s: ReplicaStatInput): number {
  buf[pos] = tag(4, WIRE_LEN);
  pos = writeVarint(buf, pos + 1, records[recordsRead++]!);
  pos = writeStringField(buf, pos, tag(1, WIRE_LEN), s.region_id);
  pos = writeLongField(buf, pos, tag(2, WIRE_VARINT), s.peer_id);
  pos = writeStringField(buf, pos, tag(3, WIRE_LEN), s.role);
  pos = writeLongField(buf, pos, tag(4, WIRE_VARINT), s.term);
  pos = writeLongField(buf, pos, tag(5, WIRE_VARINT), s.leader_node_id);
  pos = writeLongField(buf, pos, tag(6, WIRE_VARINT), s.applied_index);
  pos = writeLongField(buf, pos, tag(7, WIRE_VARINT), s.commit_index);
  pos = writeLongField(buf, pos, tag(8, WIRE_VARINT), s.flushed_index);
  pos = writeLongField(buf, pos, tag(9, WIRE_VARINT), s.memtable_bytes);
  if (s.voters != null) pos = writeRecordedPacked(buf, pos, tag(10, WIRE_LEN), s.voters);
  if (s.learners != null) pos = writeRecordedPacked(buf, pos, tag(11, WIRE_LEN), s.learners);
  pos = writeStringField(buf, pos, tag(12, WIRE_LEN), s.health);
  pos = writeStringField(buf, pos, tag(13, WIRE_LEN), s.failure);
  pos = writeLongField(buf, pos, tag(14, WIRE_VARINT), s.conf_index);
  pos = writeLongField(buf, pos, tag(15, WIRE_VARINT), s.snapshot_installed_index);
  if (s.ssts != null) {
    buf[pos] = 0x80; // tag(16, WIRE_VARINT) = 128, as a varint
    buf[pos + 1] = 0x01;
    pos = writeVarint(buf, pos + 2, (s.ssts as number) >>> 0);
  }
  if (s.members != null) {
    for (const peer of s.members) {
      buf[pos] = 0x8a; // tag(17, WIRE_LEN) = 138, as a varint
      buf[pos + 1] = 0x01;
      pos = writePeerBody(buf, pos + 2, peer as PeerInput);
    }
  }
  return pos;
}

function heldSize(held: unknown, index: number): number {
  expectObject(held, `HeartbeatRequest.held_replicas[${index}]`);
  const h = held as HeldReplicaInput;
  const at = recordsCount++;
  const size = stringFieldSize(h.region_id) + longFieldSize(h.peer_id, 'HeldReplica.peer_id');
  records[at] = size;
  return lengthDelimitedSize(size);
}

function writeHeld(buf: Buffer, pos: number, h: HeldReplicaInput): number {
  buf[pos] = tag(12, WIRE_LEN);
  pos = writeVarint(buf, pos + 1, records[recordsRead++]!);
  pos = writeStringField(buf, pos, tag(1, WIRE_LEN), h.region_id);
  return writeLongField(buf, pos, tag(2, WIRE_VARINT), h.peer_id);
}

export function encodeHeartbeatRequest(req: HeartbeatRequestInput): Buffer {
  expectObject(req, 'HeartbeatRequest');
  recordsCount = 0;
  bigs = [];
  let size = 0;
  if (req.cluster_id != null) size += recordString(req.cluster_id);
  if (req.node_id != null) size += 1 + recordLong(req.node_id, 'HeartbeatRequest.node_id');
  if (req.addr != null) size += recordString(req.addr);
  const replicas = req.replicas;
  if (replicas != null) {
    if (!Array.isArray(replicas)) throw encodeBug('HeartbeatRequest.replicas: array expected');
    for (let i = 0; i < replicas.length; i++) size += statSize(replicas[i], i);
  }
  if (req.store_id != null) size += recordString(req.store_id);
  size += longFieldSize(req.report_incarnation, 'HeartbeatRequest.report_incarnation');
  size += longFieldSize(req.report_seq, 'HeartbeatRequest.report_seq');
  size += longFieldSize(req.report_base_seq, 'HeartbeatRequest.report_base_seq');
  const removed = req.removed_region_ids;
  if (removed != null) {
    if (!Array.isArray(removed)) throw encodeBug('HeartbeatRequest.removed_region_ids: array expected');
    for (const id of removed) size += recordString(id);
  }
  size += longFieldSize(req.start_count, 'HeartbeatRequest.start_count');
  if (req.start_id != null) size += recordString(req.start_id);
  const held = req.held_replicas;
  if (held != null) {
    if (!Array.isArray(held)) throw encodeBug('HeartbeatRequest.held_replicas: array expected');
    for (let i = 0; i < held.length; i++) size += heldSize(held[i], i);
  }

  recordsRead = 0;
  bigsRead = 0;
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  if (req.cluster_id != null) pos = writeRecordedString(buf, pos, tag(1, WIRE_LEN), req.cluster_id);
  if (req.node_id != null) {
    buf[pos] = tag(2, WIRE_VARINT);
    pos = writeRecordedLong(buf, pos + 1);
  }
  if (req.addr != null) pos = writeRecordedString(buf, pos, tag(3, WIRE_LEN), req.addr);
  if (replicas != null) for (const stat of replicas) pos = writeStat(buf, pos, stat as ReplicaStatInput);
  if (req.store_id != null) pos = writeRecordedString(buf, pos, tag(5, WIRE_LEN), req.store_id);
  pos = writeLongField(buf, pos, tag(6, WIRE_VARINT), req.report_incarnation);
  pos = writeLongField(buf, pos, tag(7, WIRE_VARINT), req.report_seq);
  pos = writeLongField(buf, pos, tag(8, WIRE_VARINT), req.report_base_seq);
  if (removed != null) for (const id of removed as readonly unknown[]) pos = writeRecordedString(buf, pos, tag(9, WIRE_LEN), id);
  pos = writeLongField(buf, pos, tag(10, WIRE_VARINT), req.start_count);
  if (req.start_id != null) pos = writeRecordedString(buf, pos, tag(11, WIRE_LEN), req.start_id);
  if (held != null) for (const h of held) pos = writeHeld(buf, pos, h as HeldReplicaInput);
  return finishEncoding(buf, pos, size);
}

/** After the write pass (allocUnsafe: a byte left unwritten would send stale memory to the peer). */
function finishEncoding(buf: Buffer, pos: number, size: number): Buffer {
  if (pos !== size || recordsRead !== recordsCount || bigsRead !== bigs.length) {
    throw encodeBug(`wrote ${pos} of ${size} bytes, used ${recordsRead} of ${recordsCount} records, ${bigsRead} of ${bigs.length} longs`);
  }
  if (records.length > RETAINED_RECORDS_MAX) records = [];
  return buf;
}

/** Size of a present uint32 field (one-byte tag); protobufjs' fromObject takes value >>> 0. */
function u32FieldSize(value: unknown): number {
  return value == null ? 0 : 1 + varintSize((value as number) >>> 0);
}

function writeU32Field(buf: Buffer, pos: number, fieldTag: number, value: unknown): number {
  if (value == null) return pos;
  buf[pos] = fieldTag;
  return writeVarint(buf, pos + 1, (value as number) >>> 0);
}

function peerSize(peer: unknown, field: string): number {
  expectObject(peer, field);
  const p = peer as PeerInput;
  const at = recordsCount++;
  const size = longFieldSize(p.peer_id, 'Peer.peer_id') + longFieldSize(p.node_id, 'Peer.node_id') + stringFieldSize(p.addr);
  records[at] = size;
  return lengthDelimitedSize(size);
}

/** A Peer's length and fields (its tag written by the caller: field 4 of a RegionRoute, 17 of a ReplicaStat). */
function writePeerBody(buf: Buffer, pos: number, p: PeerInput): number {
  pos = writeVarint(buf, pos, records[recordsRead++]!);
  pos = writeLongField(buf, pos, tag(1, WIRE_VARINT), p.peer_id);
  pos = writeLongField(buf, pos, tag(2, WIRE_VARINT), p.node_id);
  return writeStringField(buf, pos, tag(3, WIRE_LEN), p.addr);
}

function routeSize(route: unknown, index: number): number {
  expectObject(route, `GetRoutesResponse.routes[${index}]`);
  const r = route as RegionRouteInput;
  const at = recordsCount++;
  let size = stringFieldSize(r.region_id) + stringFieldSize(r.table) + u32FieldSize(r.region_number);
  if (r.peers != null) {
    if (!Array.isArray(r.peers)) throw encodeBug(`GetRoutesResponse.routes[${index}].peers: array expected`);
    for (let i = 0; i < r.peers.length; i++) size += peerSize(r.peers[i], `GetRoutesResponse.routes[${index}].peers[${i}]`);
  }
  size += longFieldSize(r.leader_node_id, 'RegionRoute.leader_node_id') + longFieldSize(r.conf_version, 'RegionRoute.conf_version');
  records[at] = size;
  return lengthDelimitedSize(size);
}

function writeRoute(buf: Buffer, pos: number, r: RegionRouteInput): number {
  buf[pos] = tag(2, WIRE_LEN);
  pos = writeVarint(buf, pos + 1, records[recordsRead++]!);
  pos = writeStringField(buf, pos, tag(1, WIRE_LEN), r.region_id);
  pos = writeStringField(buf, pos, tag(2, WIRE_LEN), r.table);
  pos = writeU32Field(buf, pos, tag(3, WIRE_VARINT), r.region_number);
  if (r.peers != null) {
    for (const peer of r.peers) {
      buf[pos] = tag(4, WIRE_LEN);
      pos = writePeerBody(buf, pos + 1, peer as PeerInput);
    }
  }
  pos = writeLongField(buf, pos, tag(5, WIRE_VARINT), r.leader_node_id);
  return writeLongField(buf, pos, tag(6, WIRE_VARINT), r.conf_version);
}

/** GetRoutesResponse: `table` by protobufjs (field 1, first in field order), the routes (field 2) by hand after it. */
export function encodeGetRoutesResponse(res: GetRoutesResponseInput): Buffer {
  expectObject(res, 'GetRoutesResponse');
  const head = res.table != null ? (loaderGetRoutes().responseSerialize({ table: res.table }) as Buffer) : Buffer.alloc(0);
  recordsCount = 0;
  bigs = [];
  let size = head.length;
  const routes = res.routes;
  if (routes != null) {
    if (!Array.isArray(routes)) throw encodeBug('GetRoutesResponse.routes: array expected');
    for (let i = 0; i < routes.length; i++) size += routeSize(routes[i], i);
  }
  recordsRead = 0;
  bigsRead = 0;
  const buf = Buffer.allocUnsafe(size);
  let pos = head.copy(buf, 0);
  if (routes != null) for (const route of routes) pos = writeRoute(buf, pos, route as RegionRouteInput);
  return finishEncoding(buf, pos, size);
}

function loaderGetRoutes(): grpc.MethodDefinition<unknown, unknown> {
  return loadProtos().services.Meta.service['GetRoutes'] as grpc.MethodDefinition<unknown, unknown>;
}

// ─── Decoding ─────────────────────────────────────────────────────────────────────────────────

/** Repeated uint64s, packed (wire type 2) or one unpacked (wire type 0), appended to `into`. */
function readLongs(r: BatchWireReader, fieldTag: number, end: number, into: string[], what: string): void {
  if ((fieldTag & 7) === WIRE_VARINT) {
    into.push(r.long(end, what, false));
    return;
  }
  const runEnd = r.lengthDelimited(end, what);
  while (r.pos < runEnd) into.push(r.long(runEnd, what, false));
}

function decodePeer(r: BatchWireReader, end: number): Peer__Output {
  const p: Peer__Output = { peer_id: '0', node_id: '0', addr: '' };
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'Peer');
    switch (fieldTag) {
      case tag(1, WIRE_VARINT):
        p.peer_id = r.long(end, 'Peer.peer_id', false);
        break;
      case tag(2, WIRE_VARINT):
        p.node_id = r.long(end, 'Peer.node_id', false);
        break;
      case tag(3, WIRE_LEN):
        p.addr = r.string(end, 'Peer.addr');
        break;
      default:
        r.skipField(fieldTag, end, 'Peer', PEER_FIELDS, DEPTH_PEER);
    }
  }
  return p;
}

function decodeReplicaStat(r: BatchWireReader, end: number): ReplicaStat__Output {
  const s: ReplicaStat__Output = {
    voters: [],
    learners: [],
    members: [],
    region_id: '',
    peer_id: '0',
    role: '',
    term: '0',
    leader_node_id: '0',
    applied_index: '0',
    commit_index: '0',
    flushed_index: '0',
    memtable_bytes: '0',
    health: '',
    failure: '',
    conf_index: '0',
    snapshot_installed_index: '0',
    ssts: 0,
  };
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'ReplicaStat');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        s.region_id = r.string(end, 'ReplicaStat.region_id');
        break;
      case tag(2, WIRE_VARINT):
        s.peer_id = r.long(end, 'ReplicaStat.peer_id', false);
        break;
      case tag(3, WIRE_LEN):
        s.role = r.name(end, 'ReplicaStat.role');
        break;
      case tag(4, WIRE_VARINT):
        s.term = r.long(end, 'ReplicaStat.term', false);
        break;
      case tag(5, WIRE_VARINT):
        s.leader_node_id = r.long(end, 'ReplicaStat.leader_node_id', false);
        break;
      case tag(6, WIRE_VARINT):
        s.applied_index = r.long(end, 'ReplicaStat.applied_index', false);
        break;
      case tag(7, WIRE_VARINT):
        s.commit_index = r.long(end, 'ReplicaStat.commit_index', false);
        break;
      case tag(8, WIRE_VARINT):
        s.flushed_index = r.long(end, 'ReplicaStat.flushed_index', false);
        break;
      case tag(9, WIRE_VARINT):
        s.memtable_bytes = r.long(end, 'ReplicaStat.memtable_bytes', false);
        break;
      case tag(10, WIRE_LEN):
      case tag(10, WIRE_VARINT):
        readLongs(r, fieldTag, end, s.voters, 'ReplicaStat.voters');
        break;
      case tag(11, WIRE_LEN):
      case tag(11, WIRE_VARINT):
        readLongs(r, fieldTag, end, s.learners, 'ReplicaStat.learners');
        break;
      case tag(12, WIRE_LEN):
        s.health = r.name(end, 'ReplicaStat.health');
        break;
      case tag(13, WIRE_LEN):
        s.failure = r.string(end, 'ReplicaStat.failure');
        break;
      case tag(14, WIRE_VARINT):
        s.conf_index = r.long(end, 'ReplicaStat.conf_index', false);
        break;
      case tag(15, WIRE_VARINT):
        s.snapshot_installed_index = r.long(end, 'ReplicaStat.snapshot_installed_index', false);
        break;
      case tag(16, WIRE_VARINT):
        s.ssts = r.u32(end, 'ReplicaStat.ssts');
        break;
      case tag(17, WIRE_LEN):
        s.members.push(decodePeer(r, r.lengthDelimited(end, 'ReplicaStat.members')));
        break;
      default:
        r.skipField(fieldTag, end, 'ReplicaStat', REPLICA_STAT_FIELDS, DEPTH_REPLICA_STAT);
    }
  }
  return s;
}

function decodeHeldReplica(r: BatchWireReader, end: number): HeldReplica__Output {
  const h: HeldReplica__Output = { region_id: '', peer_id: '0' };
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'HeldReplica');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        h.region_id = r.string(end, 'HeldReplica.region_id');
        break;
      case tag(2, WIRE_VARINT):
        h.peer_id = r.long(end, 'HeldReplica.peer_id', false);
        break;
      default:
        r.skipField(fieldTag, end, 'HeldReplica', HELD_REPLICA_FIELDS, DEPTH_HELD_REPLICA);
    }
  }
  return h;
}

export function decodeHeartbeatRequest(bytes: Uint8Array): HeartbeatRequest__Output {
  const r = new BatchWireReader(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const end = r.buf.length;
  const req: HeartbeatRequest__Output = {
    replicas: [],
    removed_region_ids: [],
    held_replicas: [],
    cluster_id: '',
    node_id: '0',
    addr: '',
    store_id: '',
    report_incarnation: '0',
    report_seq: '0',
    report_base_seq: '0',
    start_count: '0',
    start_id: '',
  };
  while (r.pos < end) {
    const fieldTag = r.tag(end, 'HeartbeatRequest');
    switch (fieldTag) {
      case tag(1, WIRE_LEN):
        req.cluster_id = r.name(end, 'HeartbeatRequest.cluster_id');
        break;
      case tag(2, WIRE_VARINT):
        req.node_id = r.long(end, 'HeartbeatRequest.node_id', false);
        break;
      case tag(3, WIRE_LEN):
        req.addr = r.name(end, 'HeartbeatRequest.addr');
        break;
      case tag(4, WIRE_LEN):
        req.replicas.push(decodeReplicaStat(r, r.lengthDelimited(end, 'HeartbeatRequest.replicas')));
        break;
      case tag(5, WIRE_LEN):
        req.store_id = r.name(end, 'HeartbeatRequest.store_id');
        break;
      case tag(6, WIRE_VARINT):
        req.report_incarnation = r.long(end, 'HeartbeatRequest.report_incarnation', false);
        break;
      case tag(7, WIRE_VARINT):
        req.report_seq = r.long(end, 'HeartbeatRequest.report_seq', false);
        break;
      case tag(8, WIRE_VARINT):
        req.report_base_seq = r.long(end, 'HeartbeatRequest.report_base_seq', false);
        break;
      case tag(9, WIRE_LEN):
        req.removed_region_ids.push(r.string(end, 'HeartbeatRequest.removed_region_ids'));
        break;
      case tag(10, WIRE_VARINT):
        req.start_count = r.long(end, 'HeartbeatRequest.start_count', false);
        break;
      case tag(11, WIRE_LEN):
        req.start_id = r.string(end, 'HeartbeatRequest.start_id');
        break;
      case tag(12, WIRE_LEN):
        req.held_replicas.push(decodeHeldReplica(r, r.lengthDelimited(end, 'HeartbeatRequest.held_replicas')));
        break;
      default:
        r.skipField(fieldTag, end, 'HeartbeatRequest', HEARTBEAT_FIELDS, DEPTH_HEARTBEAT);
    }
  }
  return req;
}

// ─── The service ──────────────────────────────────────────────────────────────────────────────

let metaDefinition: grpc.ServiceDefinition | undefined;

/**
 * Meta as meta.proto declares it, with Heartbeat's request and GetRoutes' response serialized by
 * this codec instead of proto-loader's reflection (the same bytes on the wire); every other message
 * keeps proto-loader's serializers. Both ends use it: the datanode's metasrv channel (makeClient) and the
 * metasrv's server (startGrpcServer, so the security guard and tolerantService wrap it as they wrap
 * every method).
 */
export function metaService(): grpc.ServiceDefinition {
  if (!metaDefinition) {
    const service = loadProtos().services.Meta.service;
    const heartbeat: grpc.MethodDefinition<HeartbeatRequestInput, unknown> = {
      ...(service['Heartbeat'] as grpc.MethodDefinition<HeartbeatRequestInput, unknown>),
      requestSerialize: encodeHeartbeatRequest,
      requestDeserialize: decodeHeartbeatRequest,
    };
    const getRoutes: grpc.MethodDefinition<unknown, GetRoutesResponseInput> = {
      ...(service['GetRoutes'] as grpc.MethodDefinition<unknown, GetRoutesResponseInput>),
      responseSerialize: encodeGetRoutesResponse,
    };
    metaDefinition = { ...service, Heartbeat: heartbeat, GetRoutes: getRoutes };
  }
  return metaDefinition;
}
