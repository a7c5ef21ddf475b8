// Single-step membership changes (Raft thesis §4.1; paper §6 via one change at a time).
// A region grows by: AddLearner → (learner catches up) → AddVoter (promote); shrinks by
// RemoveNode. Only one change may be pending (proposed but not applied) at a time, and an AddVoter
// is taken only for a learner (raft.ts validateConfChange).
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { NodeId } from './types.js';

export const ConfChangeType = { AddVoter: 0, AddLearner: 1, RemoveNode: 2 } as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
  /** Opaque host data (e.g. the new peer's address); carried through the log unchanged. */
  readonly context: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify({ t: cc.type, n: cc.nodeId, c: cc.context }));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new RegionDbError(ErrorCode.Corruption, 'conf change entry is not valid JSON', { cause: err });
  }
  const obj = parsed as { t?: unknown; n?: unknown; c?: unknown };
  if (
    (obj.t !== 0 && obj.t !== 1 && obj.t !== 2) ||
    typeof obj.n !== 'number' ||
    !Number.isSafeInteger(obj.n) ||
    obj.n <= 0 ||
    typeof obj.c !== 'string'
  ) {
    throw new RegionDbError(ErrorCode.Corruption, `conf change entry has invalid fields: ${decoder.decode(data)}`);
  }
  return { type: obj.t, nodeId: obj.n, context: obj.c };
}
