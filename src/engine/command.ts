// Commands replicated through a region's raft log. Encoded as [format version u8][kind u8][JSON];
// decoding validates and throws CORRUPTION (never a TypeError). Rows travel as values in schema
// order, so every replica derives identical keys when applying.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Value } from './schema.js';

const FORMAT_VERSION = 1;

export const CommandKind = { Write: 1, Delete: 2 } as const;

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

export type Command = WriteCommand | DeleteCommand;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(cmd: Command): Uint8Array {
  const { kind, ...body } = cmd;
  const json = encoder.encode(JSON.stringify(body));
  const out = new Uint8Array(2 + json.byteLength);
  out[0] = FORMAT_VERSION;
  out[1] = kind === 'write' ? CommandKind.Write : CommandKind.Delete;
  out.set(json, 2);
  return out;
}

function corrupt(why: string): RegionDbError {
  return new RegionDbError(ErrorCode.Corruption, `region command is malformed: ${why}`);
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
