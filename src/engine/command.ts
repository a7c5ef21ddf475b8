// Commands replicated through a region's raft log, encoded as [format version u8][kind u8][body].
//   version 1: a JSON body, every kind. Still written for the system commands (freeze, flush and
//              compaction edits: a few per flush, readable in a log dump), and still decoded for
//              every kind: logs, WALs and snapshots written before version 2 replay as they did.
//   version 2: a binary body (command-binary.ts) for writes and deletes, the commands every
//              replica decodes once per client request. No JSON on the write path.
// A node that only knows version 1 cannot apply a version-2 entry: mixed-version clusters are
// not supported across this change (README, upgrade notes).
//   version 3: a stamped write or delete (dual active-standby, docs/replication.md): [3][kind]
//              [proposal wall time, ms, u64 big-endian][the version-2 command]. Written only by a
//              primary that feeds a standby; the stamp orders the cluster-consistent cut.
// The standby-* kinds (JSON, version 1) exist only in a standby cluster's regions. Kinds 20–23
// (standby-freeze, standby-promote-epoch, standby-seed-epoch, standby-epoch) carry the promotion
// epochs of docs/replication.md ("One writable site"); a build that predates them refuses them as
// an unknown kind (CORRUPTION on apply: the replica fails loudly, on every replica alike) instead
// of applying a seed or a cut without the rule they carry. Kind 24 (standby-unfreeze, the abort of
// a promotion's first phase) is refused by every build before it the same way.
// Decoding validates and throws CORRUPTION (never a TypeError). Rows travel as values in schema
// order, so every replica derives identical keys when applying. The kind byte is at offset 1 in
// both versions (sst-gc reads it without decoding).
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { BinaryReader, BinaryWriter, COMMAND_FLAG_COMPLETED_BELOW, WRITE_FLAG_EXPECT_ABSENT, WRITE_FLAG_EXPECT_VERSION } from './command-binary.js';
import type { Value } from './schema.js';

const FORMAT_JSON = 1;
const FORMAT_BINARY = 2;
const FORMAT_STAMPED = 3;
const STAMP_HEADER_BYTES = 10;

export const CommandKind = { Write: 1, Delete: 2, Freeze: 3, FlushEdit: 4, CompactionEdit: 5, StandbyAppend: 6, StandbyRelease: 7, StandbyPromote: 8, StandbySeed: 9, TableDropped: 10, DropFence: 11,
  StandbyFreeze: 20, StandbyPromoteEpoch: 21, StandbySeedEpoch: 22, StandbyEpoch: 23, StandbyUnfreeze: 24 } as const;

export interface WriteCommand {
  readonly kind: 'write';
  readonly clientId: string;
  readonly requestId: number;
  /** Each row: values of all columns in schema order. */
  readonly rows: readonly (readonly Value[])[];
  readonly expectVersion?: number;
  readonly expectAbsent?: boolean;
  /**
   * The client's session mark (WriteRequest.completed_below; docs/raft-rules.md R19): it will
   * never send a request id below this again, so applying forgets its answers below it. Absent
   * (or 0): nothing is forgotten but by the table's bounds. Not part of what the request asks
   * (dedupIdentity).
   */
  readonly completedBelow?: number;
}

export interface DeleteCommand {
  readonly kind: 'delete';
  readonly clientId: string;
  readonly requestId: number;
  /** Each key: values of the tag columns then the timestamp, in schema order. */
  readonly keys: readonly (readonly Value[])[];
  /** As WriteCommand.completedBelow. */
  readonly completedBelow?: number;
}

/** An SST as recorded in the region's version (manifest): immutable, in the object store. */
export interface SstMeta {
  /** Object key. */
  readonly key: string;
  readonly size: number;
  readonly entries: number;
  /** Highest version (raft index) inside. */
  readonly maxVersion: number;
  readonly minTimestampMs: number;
  readonly maxTimestampMs: number;
}

/** Leader-proposed: every replica moves its active memtable aside at this index (flush point). */
export interface FreezeCommand {
  readonly kind: 'freeze';
}

/** Leader-proposed after uploading the frozen memtable of `freezeIndex` as `sst`. */
export interface FlushEditCommand {
  readonly kind: 'flush-edit';
  readonly freezeIndex: number;
  readonly sst: SstMeta | null; // null: the frozen memtable was empty
}

/** Leader-proposed after merging `inputs` (the oldest SSTs) into `output`. */
export interface CompactionEditCommand {
  readonly kind: 'compaction-edit';
  readonly inputs: readonly string[];
  readonly output: SstMeta | null; // null: everything merged away (all deleted)
}

/**
 * Proposed by a region's leader when the metasrv's drop-table procedure asks (docs/ddl.md, the
 * drop fence): from this index on, every replica refuses every client write and delete of the
 * region that it has not already answered (status 'table-dropped', nothing applied), and the
 * datanode refuses reads of it. `tableId` names the table dropped (ids are never reused). A
 * new kind (11): a build that predates it refuses the entry (unknown command kind, CORRUPTION)
 * rather than applying later writes its fenced peers refuse.
 */
export interface DropFenceCommand {
  readonly kind: 'drop-fence';
  readonly tableId: number;
}

/** One committed primary entry as a standby region keeps it until it is released or cut. */
export interface ShippedEntry {
  /** The entry's raft index in the primary's region: the row version it applies at. */
  readonly index: number;
  /** The primary's proposal wall time (ms) of the entry. */
  readonly stampMs: number;
  /** The primary's command bytes (a write or delete, version 2 or 3). */
  readonly data: Uint8Array;
}

/**
 * The last entry of a dropped table's region on a primary feeding a standby (S7 in
 * standby-state.ts): [1][10][JSON {droppedAtMs}]. Not a Command: it changes no rows and is only
 * recognised in a standby's received entries (decodeCommand refuses it).
 */
export function encodeTableDroppedMarker(droppedAtMs: number): Uint8Array {
  const json = encoder.encode(JSON.stringify({ droppedAtMs }));
  const out = new Uint8Array(2 + json.byteLength);
  out[0] = FORMAT_JSON;
  out[1] = CommandKind.TableDropped;
  out.set(json, 2);
  return out;
}

/** The stamp of a table-dropped marker (0 if its body is damaged: the receiver then keeps the earlier stamps). */
export function tableDroppedMarkerMs(data: Uint8Array): number {
  try {
    const v = (JSON.parse(decoder.decode(data.subarray(2))) as { droppedAtMs?: unknown }).droppedAtMs;
    return isMs(v) ? v : 0;
  } catch {
    return 0; // damaged: the caller falls back to the stamps before it (never above the truth)
  }
}

/** True if `data` is a table-dropped marker (encodeTableDroppedMarker). */
export function isTableDroppedMarker(data: Uint8Array): boolean {
  return data.byteLength > 2 && data[0] === FORMAT_JSON && data[1] === CommandKind.TableDropped;
}

/**
 * Standby: primary entries `fromIndex…` received from the primary (in order), and the primary's
 * watermark: every primary entry stamped at or before `watermarkMs` is at or below the last of them.
 */
export interface StandbyAppendCommand {
  readonly kind: 'standby-append';
  readonly fromIndex: number;
  readonly entries: readonly ShippedEntry[];
  readonly watermarkMs: number;
  /** The primary acknowledges writes only once the standby has them (sync mode). */
  readonly sync?: boolean;
  /**
   * What the primary adds to an entry's index to get the row version it wrote at (non-zero only
   * for a primary that was itself a promoted standby: its writes version above what it applied).
   */
  readonly versionOffset?: number;
}

/** Standby: apply the received entries stamped at or before `upToMs` (the cluster-wide safe time). */
export interface StandbyReleaseCommand {
  readonly kind: 'standby-release';
  readonly upToMs: number;
}

/** Standby → primary: release up to `cutMs`, drop every received entry after it, take writes from now on. */
export interface StandbyPromoteCommand {
  readonly kind: 'standby-promote';
  readonly cutMs: number;
}

/**
 * Standby: the region becomes the primary's state as of the primary's flushed index
 * `primaryIndex` (a manifest's SSTs, already copied into this cluster's object store, and its
 * dedup table); the stream continues from primaryIndex + 1 (docs/replication.md, "Seeding").
 */
export interface StandbySeedCommand {
  readonly kind: 'standby-seed';
  readonly primaryIndex: number;
  /** The primary's wall time when the seed was taken: every entry in it was stamped at or before it. */
  readonly seededThroughMs: number;
  /** As in StandbyAppendCommand: the primary's version offset (its SSTs' versions are index + it). */
  readonly versionOffset: number;
  readonly ssts: readonly SstMeta[];
  /** The primary region's dedup table as of primaryIndex (manifest encoding). */
  readonly dedup: string;
}

/**
 * Standby, the first phase of a promotion (docs/replication.md): from this entry on the region
 * applies no release and takes no seed, so what it has applied (releasedMs) is final and every
 * release before it in the log counts.
 */
export interface StandbyFreezeCommand {
  readonly kind: 'standby-freeze';
}

/**
 * Standby, the abort of a promotion's first phase (`regiondb standby promote --abort`,
 * docs/replication.md): a region in mode standby clears `frozen` and nothing else (releases and
 * seeds resume); a region already cut ignores it (S11 in standby-state.ts). A new kind (24): a
 * build that predates it refuses it loudly.
 */
export interface StandbyUnfreezeCommand {
  readonly kind: 'standby-unfreeze';
}

/** As StandbyPromoteCommand, and the region records the promotion's epoch (E1 in standby-state.ts). */
export interface StandbyPromoteEpochCommand {
  readonly kind: 'standby-promote-epoch';
  readonly cutMs: number;
  readonly epoch: number;
}

/**
 * As StandbySeedCommand, from a primary at promotion epoch `primaryEpoch` (≥ 1): it also re-opens
 * a region promoted at a lower epoch (E3 in standby-state.ts).
 */
export interface StandbySeedEpochCommand extends Omit<StandbySeedCommand, 'kind'> {
  readonly kind: 'standby-seed-epoch';
  readonly primaryEpoch: number;
}

/** Standby: the region follows a primary at promotion epoch `primaryEpoch` from now on (E2 in standby-state.ts). */
export interface StandbyEpochCommand {
  readonly kind: 'standby-epoch';
  readonly primaryEpoch: number;
}

export type StandbyCommand =
  | StandbyAppendCommand
  | StandbyReleaseCommand
  | StandbyPromoteCommand
  | StandbySeedCommand
  | StandbyFreezeCommand
  | StandbyUnfreezeCommand
  | StandbyPromoteEpochCommand
  | StandbySeedEpochCommand
  | StandbyEpochCommand;
export type SystemCommand = FreezeCommand | FlushEditCommand | CompactionEditCommand | DropFenceCommand;
export type Command = WriteCommand | DeleteCommand | SystemCommand | StandbyCommand;

const KIND_CODE: Record<Command['kind'], number> = {
  write: CommandKind.Write,
  delete: CommandKind.Delete,
  freeze: CommandKind.Freeze,
  'flush-edit': CommandKind.FlushEdit,
  'compaction-edit': CommandKind.CompactionEdit,
  'standby-append': CommandKind.StandbyAppend,
  'standby-release': CommandKind.StandbyRelease,
  'standby-promote': CommandKind.StandbyPromote,
  'standby-seed': CommandKind.StandbySeed,
  'standby-freeze': CommandKind.StandbyFreeze,
  'standby-unfreeze': CommandKind.StandbyUnfreeze,
  'standby-promote-epoch': CommandKind.StandbyPromoteEpoch,
  'standby-seed-epoch': CommandKind.StandbySeedEpoch,
  'standby-epoch': CommandKind.StandbyEpoch,
  'drop-fence': CommandKind.DropFence,
};

/**
 * A write or delete (version 2) with its proposal wall time, as a primary feeding a standby
 * proposes it. The kind stays at offset 1; the inner bytes are what dedup hashes (a retry is
 * stamped again, later, and must still be recognised as the same command).
 */
export function stampCommand(inner: Uint8Array, stampMs: number): Uint8Array {
  if (inner[0] !== FORMAT_BINARY) throw new RegionDbError(ErrorCode.InvalidArgument, 'only version-2 commands (writes, deletes) are stamped');
  if (!Number.isSafeInteger(stampMs) || stampMs < 0) throw new RegionDbError(ErrorCode.InvalidArgument, `bad stamp ${stampMs}`);
  const out = new Uint8Array(STAMP_HEADER_BYTES + inner.byteLength);
  out[0] = FORMAT_STAMPED;
  out[1] = inner[1]!;
  new DataView(out.buffer).setBigUint64(2, BigInt(stampMs));
  out.set(inner, STAMP_HEADER_BYTES);
  return out;
}

/**
 * The bytes a client request's dedup hash is taken over (region-state.ts commandHash): a
 * version-2 write or delete without its completed-below mark (flag bit 2 cleared, the mark's
 * varint left out) — exactly the bytes the same request encodes to without a mark — so that two
 * attempts of one request carrying different marks are still the same request. Any other
 * command: its bytes as they are (no copy). Call it on an unstamped command.
 */
export function dedupIdentity(bytes: Uint8Array): Uint8Array {
  if (bytes[0] !== FORMAT_BINARY || bytes.byteLength < 3) return bytes;
  const flags = bytes[2]!;
  if (!(flags & COMMAND_FLAG_COMPLETED_BELOW)) return bytes;
  const r = new BinaryReader(bytes, 3);
  r.string('client id');
  r.uint('request id');
  const markStart = r.offset;
  r.uint('completed-below mark');
  const markEnd = r.offset;
  const out = new Uint8Array(bytes.byteLength - (markEnd - markStart));
  out.set(bytes.subarray(0, markStart), 0);
  out[2] = flags & ~COMMAND_FLAG_COMPLETED_BELOW;
  out.set(bytes.subarray(markEnd), markStart);
  return out;
}

/** The stamp and inner command of a version-3 command; for any other version, no stamp and the bytes as they are. */
export function unstampCommand(bytes: Uint8Array): { readonly stampMs: number | undefined; readonly inner: Uint8Array } {
  if (bytes[0] !== FORMAT_STAMPED) return { stampMs: undefined, inner: bytes };
  if (bytes.byteLength < STAMP_HEADER_BYTES + 2) throw corrupt(`stamped command of ${bytes.byteLength} bytes`);
  const stamp = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(2);
  if (stamp > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`stamp ${stamp} out of range`);
  const inner = bytes.subarray(STAMP_HEADER_BYTES);
  if (inner[0] !== FORMAT_BINARY || inner[1] !== bytes[1]) throw corrupt('a stamped command must wrap a version-2 command of the same kind');
  return { stampMs: Number(stamp), inner };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The rows of writes encoded with `keepRows`, by the bytes encodeCommand returned, and where in
 * them the rows begin. A leader applies its own proposals: decoding their rows again (every
 * value, a new string for each string value) cost the busiest node CPU and garbage for nothing.
 * Exact — the encoding carries every value exactly (command-binary.ts: a string that could not
 * be carried is refused), so these rows are what decoding the bytes gives, and leader and
 * followers apply the same values. Taken once (decodeCommandForApply) and held no longer than
 * the bytes are (a WeakMap): a replica that applies bytes it did not encode decodes them.
 */
const keptRows = new WeakMap<Uint8Array, { readonly rows: readonly (readonly Value[])[]; readonly at: number }>();

/** encodeCommand's options: `keepRows` — the caller will never change `cmd.rows` (or any of its arrays) again. */
export interface EncodeOptions {
  readonly keepRows?: boolean;
}

/** The current encoding: version 2 for writes and deletes, version 1 for system commands. */
export function encodeCommand(cmd: Command, options: EncodeOptions = {}): Uint8Array {
  if (cmd.kind !== 'write' && cmd.kind !== 'delete') return encodeCommandV1(cmd);
  const w = new BinaryWriter();
  w.byte(FORMAT_BINARY);
  w.byte(KIND_CODE[cmd.kind]);
  const completedBelow = cmd.completedBelow ?? 0;
  const session = completedBelow > 0 ? COMMAND_FLAG_COMPLETED_BELOW : 0;
  if (cmd.kind === 'write') {
    const flags = (cmd.expectVersion !== undefined ? WRITE_FLAG_EXPECT_VERSION : 0) | (cmd.expectAbsent ? WRITE_FLAG_EXPECT_ABSENT : 0) | session;
    w.byte(flags);
    w.string(cmd.clientId);
    w.uint(cmd.requestId);
    if (session) w.uint(completedBelow);
    if (cmd.expectVersion !== undefined) w.uint(cmd.expectVersion);
    const at = w.length;
    w.values(cmd.rows);
    if (options.keepRows) {
      const bytes = w.finish();
      keptRows.set(bytes, { rows: cmd.rows, at });
      return bytes;
    }
  } else {
    w.byte(session);
    w.string(cmd.clientId);
    w.uint(cmd.requestId);
    if (session) w.uint(completedBelow);
    w.values(cmd.keys);
  }
  return w.finish();
}

/**
 * Version 1, byte for byte as the version-1 service wrote it (its field order: clientId,
 * requestId, rows or keys, expectVersion, expectAbsent). Used for system commands, and to
 * recognise a retry of a write recorded before the upgrade (region-state.ts, commandHash).
 */
export function encodeCommandV1(cmd: Command): Uint8Array {
  let body: object;
  switch (cmd.kind) {
    case 'write':
      body = {
        clientId: cmd.clientId,
        requestId: cmd.requestId,
        rows: cmd.rows,
        ...(cmd.expectVersion !== undefined ? { expectVersion: cmd.expectVersion } : {}),
        ...(cmd.expectAbsent ? { expectAbsent: true } : {}),
      };
      break;
    case 'delete':
      body = { clientId: cmd.clientId, requestId: cmd.requestId, keys: cmd.keys };
      break;
    case 'standby-append':
      body = {
        fromIndex: cmd.fromIndex,
        watermarkMs: cmd.watermarkMs,
        ...(cmd.sync ? { sync: true } : {}),
        ...(cmd.versionOffset ? { versionOffset: cmd.versionOffset } : {}),
        entries: cmd.entries.map((e) => [e.index, e.stampMs, Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('base64')]),
      };
      break;
    default: {
      const { kind: _kind, ...rest } = cmd;
      body = rest;
    }
  }
  const json = encoder.encode(JSON.stringify(body));
  const out = new Uint8Array(2 + json.byteLength);
  out[0] = FORMAT_JSON;
  out[1] = KIND_CODE[cmd.kind];
  out.set(json, 2);
  return out;
}

/** The format version of an encoded command (its first byte). */
export function commandFormatVersion(bytes: Uint8Array): number | undefined {
  return bytes[0];
}

function corrupt(why: string): RegionDbError {
  return new RegionDbError(ErrorCode.Corruption, `region command is malformed: ${why}`);
}

function checkSstMeta(v: unknown): SstMeta {
  const m = v as Record<string, unknown>;
  const ints = ['size', 'entries', 'maxVersion', 'minTimestampMs', 'maxTimestampMs'];
  if (!m || typeof m !== 'object' || typeof m['key'] !== 'string' || !ints.every((k) => typeof m[k] === 'number')) {
    throw corrupt('malformed SST metadata');
  }
  return m as unknown as SstMeta;
}

function isValueArray(v: unknown): v is Value[] {
  return Array.isArray(v) && v.every((x) => x === null || ['string', 'number', 'boolean'].includes(typeof x));
}

export function decodeCommand(bytes: Uint8Array): Command {
  if (bytes.byteLength < 2) throw corrupt(`${bytes.byteLength} bytes`);
  if (bytes[0] === FORMAT_BINARY) return decodeBinary(bytes);
  if (bytes[0] === FORMAT_STAMPED) return decodeBinary(unstampCommand(bytes).inner);
  if (bytes[0] !== FORMAT_JSON) throw corrupt(`unknown format version ${bytes[0]}`);
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(decoder.decode(bytes.subarray(2))) as Record<string, unknown>;
  } catch (err) {
    throw corrupt(`invalid JSON (${(err as Error).message})`);
  }
  if (typeof body !== 'object' || body === null) throw corrupt('body is not an object');
  switch (bytes[1]) {
    case CommandKind.Freeze:
      return { kind: 'freeze' };
    case CommandKind.FlushEdit: {
      const { freezeIndex, sst } = body;
      if (typeof freezeIndex !== 'number' || !Number.isSafeInteger(freezeIndex)) throw corrupt('flush edit without freezeIndex');
      return { kind: 'flush-edit', freezeIndex, sst: sst === null ? null : checkSstMeta(sst) };
    }
    case CommandKind.CompactionEdit: {
      const { inputs, output } = body;
      if (!Array.isArray(inputs) || !inputs.every((k) => typeof k === 'string')) throw corrupt('compaction edit inputs');
      return { kind: 'compaction-edit', inputs: inputs as string[], output: output === null ? null : checkSstMeta(output) };
    }
    case CommandKind.StandbyAppend:
      return decodeStandbyAppend(body);
    case CommandKind.DropFence: {
      const { tableId } = body;
      if (!isMs(tableId)) throw corrupt('drop fence without tableId');
      return { kind: 'drop-fence', tableId };
    }
    case CommandKind.StandbyRelease: {
      const { upToMs } = body;
      if (!isMs(upToMs)) throw corrupt('standby release without upToMs');
      return { kind: 'standby-release', upToMs };
    }
    case CommandKind.StandbyPromote: {
      const { cutMs } = body;
      if (!isMs(cutMs)) throw corrupt('standby promote without cutMs');
      return { kind: 'standby-promote', cutMs };
    }
    case CommandKind.StandbySeed:
    case CommandKind.StandbySeedEpoch: {
      const { primaryIndex, seededThroughMs, versionOffset, ssts, dedup, primaryEpoch } = body;
      if (!isMs(primaryIndex) || primaryIndex < 1 || !isMs(seededThroughMs) || !isMs(versionOffset) || !Array.isArray(ssts) || typeof dedup !== 'string') throw corrupt('standby seed header');
      const seed = { primaryIndex, seededThroughMs, versionOffset, ssts: ssts.map(checkSstMeta), dedup };
      if (bytes[1] === CommandKind.StandbySeed) return { kind: 'standby-seed', ...seed };
      if (!isMs(primaryEpoch) || primaryEpoch < 1) throw corrupt('standby seed without primaryEpoch');
      return { kind: 'standby-seed-epoch', ...seed, primaryEpoch };
    }
    case CommandKind.StandbyFreeze:
      return { kind: 'standby-freeze' };
    case CommandKind.StandbyUnfreeze:
      return { kind: 'standby-unfreeze' };
    case CommandKind.StandbyPromoteEpoch: {
      const { cutMs, epoch } = body;
      if (!isMs(cutMs) || !isMs(epoch) || epoch < 1) throw corrupt('standby promote without cutMs or epoch');
      return { kind: 'standby-promote-epoch', cutMs, epoch };
    }
    case CommandKind.StandbyEpoch: {
      const { primaryEpoch } = body;
      if (!isMs(primaryEpoch) || primaryEpoch < 1) throw corrupt('standby epoch without primaryEpoch');
      return { kind: 'standby-epoch', primaryEpoch };
    }
  }
  const { clientId, requestId } = body;
  if (typeof clientId !== 'string' || typeof requestId !== 'number' || !Number.isSafeInteger(requestId)) {
    throw corrupt('missing client id or request id');
  }
  switch (bytes[1]) {
    case CommandKind.Write: {
      const rows = body['rows'];
      if (!Array.isArray(rows) || !rows.every(isValueArray)) throw corrupt('rows are not arrays of values');
      const cmd: WriteCommand = { kind: 'write', clientId, requestId, rows };
      const ev = body['expectVersion'];
      const ea = body['expectAbsent'];
      return {
        ...cmd,
        ...(typeof ev === 'number' ? { expectVersion: ev } : {}),
        ...(ea === true ? { expectAbsent: true } : {}),
      };
    }
    case CommandKind.Delete: {
      const keys = body['keys'];
      if (!Array.isArray(keys) || !keys.every(isValueArray)) throw corrupt('keys are not arrays of values');
      return { kind: 'delete', clientId, requestId, keys };
    }
    default:
      throw corrupt(`unknown command kind ${bytes[1]}`);
  }
}

function isMs(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function decodeStandbyAppend(body: Record<string, unknown>): StandbyAppendCommand {
  const { fromIndex, watermarkMs, entries } = body;
  if (!isMs(fromIndex) || fromIndex < 1 || !isMs(watermarkMs) || !Array.isArray(entries)) throw corrupt('standby append header');
  const decoded = entries.map((e: unknown, k): ShippedEntry => {
    if (!Array.isArray(e) || e.length !== 3 || !isMs(e[0]) || !isMs(e[1]) || typeof e[2] !== 'string') throw corrupt('standby append entry');
    if (e[0] !== fromIndex + k) throw corrupt(`standby append entries not contiguous at ${e[0]}`);
    const buf = Buffer.from(e[2], 'base64');
    return { index: e[0], stampMs: e[1], data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
  });
  const versionOffset = body['versionOffset'];
  if (versionOffset !== undefined && !isMs(versionOffset)) throw corrupt('standby append version offset');
  return { kind: 'standby-append', fromIndex, watermarkMs, entries: decoded, ...(body['sync'] === true ? { sync: true } : {}), ...(versionOffset ? { versionOffset } : {}) };
}

/**
 * decodeCommand for applying `bytes`: a write this process encoded with `keepRows` comes back
 * with the very rows it was encoded from, once (keptRows); anything else is decoded.
 */
export function decodeCommandForApply(bytes: Uint8Array): Command {
  return bytes[0] === FORMAT_BINARY && keptRows.has(bytes) ? decodeBinary(bytes, true) : decodeCommand(bytes);
}

function decodeBinary(bytes: Uint8Array, takeKept = false): Command {
  const r = new BinaryReader(bytes, 2);
  const kind = bytes[1];
  if (kind !== CommandKind.Write && kind !== CommandKind.Delete) throw corrupt(`command kind ${kind} has no version-2 encoding`);
  const flags = r.byte('flags');
  const allowed = (kind === CommandKind.Write ? WRITE_FLAG_EXPECT_VERSION | WRITE_FLAG_EXPECT_ABSENT : 0) | COMMAND_FLAG_COMPLETED_BELOW;
  if ((flags & ~allowed) !== 0) throw corrupt(`unknown flags ${flags}`);
  const clientId = r.string('client id');
  const requestId = r.uint('request id');
  const completedBelow = flags & COMMAND_FLAG_COMPLETED_BELOW ? r.uint('completed-below mark') : 0;
  // The encoder writes the flag only for a mark above 0: anything else is not its bytes.
  if (flags & COMMAND_FLAG_COMPLETED_BELOW && completedBelow === 0) throw corrupt('a completed-below mark of 0');
  if (kind === CommandKind.Delete) {
    const keys = r.values('keys');
    r.end();
    return completedBelow > 0 ? { kind: 'delete', clientId, requestId, keys, completedBelow } : { kind: 'delete', clientId, requestId, keys };
  }
  const expectVersion = flags & WRITE_FLAG_EXPECT_VERSION ? r.uint('expected version') : undefined;
  const kept = takeKept ? keptRows.get(bytes) : undefined;
  let rows: readonly (readonly Value[])[];
  if (kept !== undefined && kept.at === r.offset) {
    keptRows.delete(bytes);
    rows = kept.rows; // the encoder's: the same values, and nothing changes them (keepRows)
  } else {
    rows = r.values('rows');
    r.end();
  }
  const cmd: WriteCommand = { kind: 'write', clientId, requestId, rows };
  if (expectVersion === undefined && !(flags & WRITE_FLAG_EXPECT_ABSENT) && completedBelow === 0) return cmd;
  return {
    ...cmd,
    ...(expectVersion !== undefined ? { expectVersion } : {}),
    ...(flags & WRITE_FLAG_EXPECT_ABSENT ? { expectAbsent: true } : {}),
    ...(completedBelow > 0 ? { completedBelow } : {}),
  };
}
