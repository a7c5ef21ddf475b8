// Commands replicated through a region's raft log. Encoded as [format version u8][kind u8][JSON];
// decoding validates and throws CORRUPTION (never a TypeError). Rows travel as values in schema
// order, so every replica derives identical keys when applying.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Value } from './schema.js';

const FORMAT_VERSION = 1;

export const CommandKind = { Write: 1, Delete: 2, Freeze: 3, FlushEdit: 4, CompactionEdit: 5 } as const;

export interface WriteCommand {
  readonly kind: 'write';
  readonly clientId: string;
  readonly requestId: number;
  /** Each row: values of all columns in schema order. */
  readonly rows: readonly (readonly Value[])[];
  readonly expectVersion?: number;
  readonly expectAbsent?: boolean;
}

export interface DeleteCommand {
  readonly kind: 'delete';
  readonly clientId: string;
  readonly requestId: number;
  /** Each key: values of the tag columns then the timestamp, in schema order. */
  readonly keys: readonly (readonly Value[])[];
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

export type SystemCommand = FreezeCommand | FlushEditCommand | CompactionEditCommand;
export type Command = WriteCommand | DeleteCommand | SystemCommand;

const KIND_CODE: Record<Command['kind'], number> = {
  write: CommandKind.Write,
  delete: CommandKind.Delete,
  freeze: CommandKind.Freeze,
  'flush-edit': CommandKind.FlushEdit,
  'compaction-edit': CommandKind.CompactionEdit,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(cmd: Command): Uint8Array {
  const { kind, ...body } = cmd;
  const json = encoder.encode(JSON.stringify(body));
  const out = new Uint8Array(2 + json.byteLength);
  out[0] = FORMAT_VERSION;
  out[1] = KIND_CODE[kind];
  out.set(json, 2);
  return out;
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
  if (bytes[0] !== FORMAT_VERSION) throw corrupt(`unknown format version ${bytes[0]}`);
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
