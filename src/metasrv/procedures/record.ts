// The persisted form of a procedure (docs/procedures.md): its kind, the closed set of step names
// of each kind, the typed data each kind keeps, and the reader that turns a record loaded from
// the catalog back into a typed one. This module imports nothing from the catalog, so the
// catalog can hold procedure records without an import circle.
//
// Compatibility: records written before the data was typed kept the runner's re-send time in
// the kind's data (`data.lastSentMs`). The reader moves it to the record (`lastSentMs`); every
// other field is unchanged, so an older metasrv still reads what this one writes (it finds no
// `data.lastSentMs` and re-sends at once).
//
// balance-leaders records written before batches hold their one move in flight as
// `data.regionId/target/targetPeer`; this version reads them as a batch of one and writes
// `data.batch` (and `data.confirmed`, `data.window`) instead. An older metasrv reading a newer
// record ignores the fields it does not know: in step `move` it finds no move, plans again, and
// goes on one move at a time.

/** Every kind and its steps, in order of a normal run. A step name outside these is a compile error. */
export const PROCEDURE_STEPS = {
  'region-failover': ['ensure-leaders'],
  'repair-replica': ['allocate', 'clear-old', 'add-learner', 'catch-up', 'promote', 'remove-old', 'cleanup'],
  'balance-leaders': ['plan', 'move'],
  'drain-node': ['mark', 'move-leaders', 'move-replicas'],
  'transfer-leader': ['transfer'],
} as const;

export type ProcedureKind = keyof typeof PROCEDURE_STEPS;
export const PROCEDURE_KINDS = Object.keys(PROCEDURE_STEPS) as readonly ProcedureKind[];
export type StepOf<K extends ProcedureKind> = (typeof PROCEDURE_STEPS)[K][number];

export function isProcedureKind(kind: unknown): kind is ProcedureKind {
  return typeof kind === 'string' && Object.hasOwn(PROCEDURE_STEPS, kind);
}

export interface RegionFailoverData {
  /** The datanode suspected failed. */
  readonly nodeId: number;
  /** Regions of that node still without a live leader at the last check (for status). */
  leaderless?: string[];
}

export interface RepairReplicaData {
  readonly regionId: string;
  readonly oldPeerId: number;
  readonly oldNodeId: number;
  /** Chosen by `allocate`, together with the catalog placement. */
  newPeerId?: number;
  newNodeId?: number;
  /** Why the old replica is replaced, if not its node's absence (for status). */
  reason?: string;
  /** The old replica is lost: its own node may take the new one. */
  inPlace?: boolean;
  /**
   * The old peer is a learner no repair adds (metasrv-core.ts `startLearnerRemovals`): removed
   * from its group, not replaced, when the group has its voters.
   */
  learner?: boolean;
  /**
   * The leader's conf index when add-learner first saw it count the new peer: a leader reporting
   * a newer configuration without it has removed it since (finding Y5), and it is neither opened
   * nor promoted again.
   */
  learnerAtConfIndex?: number;
  /**
   * Nodes where a new peer of this repair was given up because it never opened there while the
   * node was live (NEW_REPLICA_OPEN_WAIT_MS): `allocate` places no other new peer on them. Such a
   * node holds another replica of the region on its disk, closed (no report shows it), or cannot
   * open it (finding M37, docs/correctness.md).
   */
  unopenedOn?: number[];
}

/** One planned leader transfer of balance-leaders: the region's leadership to `targetPeer` on node `target`. */
export interface LeaderMove {
  readonly regionId: string;
  readonly target: number;
  readonly targetPeer: number;
}

export interface BalanceLeadersData {
  /** Transfers planned so far (bounded). */
  moves?: number;
  /** Transfers the datanodes' reports confirmed (for status). */
  confirmed?: number;
  /** The next batch's size (doubled after a batch fully confirmed, halved after one that timed out). */
  window?: number;
  /** The transfers in flight (set by `plan`, read by `move`). */
  batch?: LeaderMove[];
  /**
   * The single transfer in flight of a record written before batches (one move per step): read
   * by `move` as a batch of one; this version writes `batch` instead.
   */
  regionId?: string;
  target?: number;
  targetPeer?: number;
  /**
   * Absent: leaders evened per node (±1). 'table': each chunk of `packRegions` regions of a table
   * led by one node (`leaderHomes`). A record written before placements reads as absent.
   */
  placement?: 'table';
  packRegions?: number;
}

export interface DrainNodeData {
  readonly nodeId: number;
}

export interface TransferLeaderData {
  readonly regionId: string;
  readonly nodeId: number;
}

/** The data of each kind, JSON-serializable; saved with the record. */
export interface ProcedureDataByKind {
  'region-failover': RegionFailoverData;
  'repair-replica': RepairReplicaData;
  'balance-leaders': BalanceLeadersData;
  'drain-node': DrainNodeData;
  'transfer-leader': TransferLeaderData;
}
export type DataOf<K extends ProcedureKind> = ProcedureDataByKind[K];

export type ProcedureStatus = 'running' | 'done' | 'failed';

/** What the runner keeps for every kind alike; steps do not write it. */
interface RecordBase {
  readonly id: string;
  status: ProcedureStatus;
  /** Wall-clock ms (records outlive the process that wrote them). */
  readonly createdMs: number;
  updatedMs: number;
  /** When the current step started; used for re-sends and timeouts. */
  stepSinceMs: number;
  /** When the current step last sent its instruction (0: not yet in this step). */
  lastSentMs: number;
  /** Last notes, newest last (bounded). */
  notes: string[];
  error?: string;
}

export type ProcedureRecordOf<K extends ProcedureKind> = RecordBase & {
  readonly kind: K;
  step: StepOf<K>;
  data: DataOf<K>;
};

/** A procedure record of any kind; `kind` discriminates `step` and `data`. */
export type ProcedureRecord = { [K in ProcedureKind]: ProcedureRecordOf<K> }[ProcedureKind];

/** A stored record this version cannot run (unknown kind or step, malformed data): kept as loaded, shown, never run. */
export interface UnreadableProcedure {
  readonly record: unknown;
  readonly error: string;
}

// ─── Reading stored records ───────────────────────────────────────────────────────────────

type FieldSpec = 'number' | 'number?' | 'string' | 'string?' | 'boolean?' | 'string[]?' | 'number[]?' | 'leader-moves?';

/** Every field of every kind's data (a field missing here is a compile error). */
const DATA_FIELDS: { readonly [K in ProcedureKind]: { readonly [F in keyof DataOf<K>]-?: FieldSpec } } = {
  'region-failover': { nodeId: 'number', leaderless: 'string[]?' },
  'repair-replica': {
    regionId: 'string',
    oldPeerId: 'number',
    oldNodeId: 'number',
    newPeerId: 'number?',
    newNodeId: 'number?',
    reason: 'string?',
    inPlace: 'boolean?',
    learner: 'boolean?',
    learnerAtConfIndex: 'number?',
    unopenedOn: 'number[]?',
  },
  'balance-leaders': { moves: 'number?', confirmed: 'number?', window: 'number?', batch: 'leader-moves?', regionId: 'string?', target: 'number?', targetPeer: 'number?', placement: 'string?', packRegions: 'number?' },
  'drain-node': { nodeId: 'number' },
  'transfer-leader': { regionId: 'string', nodeId: 'number' },
};

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isLeaderMove = (v: unknown): v is LeaderMove => isMap(v) && typeof v['regionId'] === 'string' && isNumber(v['target']) && isNumber(v['targetPeer']);

function fieldOk(value: unknown, spec: FieldSpec): boolean {
  if (value === undefined) return spec.endsWith('?');
  switch (spec.replace('?', '')) {
    case 'number':
      return isNumber(value);
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'leader-moves':
      return Array.isArray(value) && value.every(isLeaderMove);
    case 'number[]':
      return Array.isArray(value) && value.every(isNumber);
    default:
      return Array.isArray(value) && value.every((v) => typeof v === 'string');
  }
}

/** Checks `data` against its kind's fields; returns the problem, or undefined if it fits. */
export function checkData(kind: ProcedureKind, data: unknown): string | undefined {
  if (!isMap(data)) return 'data is not an object';
  for (const [field, spec] of Object.entries(DATA_FIELDS[kind]) as [string, FieldSpec][]) {
    if (!fieldOk(data[field], spec)) return `data.${field} is ${JSON.stringify(data[field]) ?? 'missing'}, expected ${spec.replace('?', ' (optional)')}`;
  }
  return undefined;
}

/**
 * Turns one stored record into a typed one, upgrading the old layout (`data.lastSentMs`), or
 * says precisely why it cannot: an unknown kind (written by a newer version?), a step its kind
 * does not have, or malformed fields.
 */
export function readProcedureRecord(id: string, raw: unknown): { record: ProcedureRecord } | { error: string } {
  const where = `procedure record ${JSON.stringify(id)}`;
  if (!isMap(raw)) return { error: `${where} is not an object` };
  const { kind, step, status } = raw;
  if (!isProcedureKind(kind)) return { error: `${where} has unknown kind ${JSON.stringify(kind)} (this version knows ${PROCEDURE_KINDS.join(', ')})` };
  const steps: readonly string[] = PROCEDURE_STEPS[kind];
  if (typeof step !== 'string' || !steps.includes(step)) {
    return { error: `${where} (${kind}) is at unknown step ${JSON.stringify(step)} (${kind} has ${steps.join(', ')})` };
  }
  if (status !== 'running' && status !== 'done' && status !== 'failed') return { error: `${where} has unknown status ${JSON.stringify(status)}` };
  if (raw['id'] !== id) return { error: `${where} carries id ${JSON.stringify(raw['id'])}` };
  for (const field of ['createdMs', 'updatedMs', 'stepSinceMs'] as const) {
    if (typeof raw[field] !== 'number') return { error: `${where} has ${field} ${JSON.stringify(raw[field])}, expected a number` };
  }
  if (!isMap(raw['data'])) return { error: `${where}: data is not an object` };
  const data: Record<string, unknown> = { ...raw['data'] };
  // Layout before typed data: the runner's re-send time lived in the kind's data.
  const oldLastSent = data['lastSentMs'];
  delete data['lastSentMs'];
  const problem = checkData(kind, data);
  if (problem) return { error: `${where} (${kind}): ${problem}` };
  const lastSentMs = typeof raw['lastSentMs'] === 'number' ? raw['lastSentMs'] : typeof oldLastSent === 'number' ? oldLastSent : 0;
  const notes = Array.isArray(raw['notes']) ? raw['notes'].filter((n): n is string => typeof n === 'string') : [];
  const record = {
    id,
    kind,
    step,
    data,
    status,
    createdMs: raw['createdMs'],
    updatedMs: raw['updatedMs'],
    stepSinceMs: raw['stepSinceMs'],
    lastSentMs,
    notes,
    ...(typeof raw['error'] === 'string' ? { error: raw['error'] } : {}),
  } as ProcedureRecord; // kind, step and every data field checked above
  return { record };
}

/** Reads every stored record; the ones this version cannot run are set aside with the reason. */
export function readProcedureRecords(raw: unknown): { procedures: Record<string, ProcedureRecord>; unreadable: Record<string, UnreadableProcedure> } {
  const procedures: Record<string, ProcedureRecord> = {};
  const unreadable: Record<string, UnreadableProcedure> = {};
  if (raw === undefined) return { procedures, unreadable };
  if (!isMap(raw)) {
    unreadable['procedures'] = { record: raw, error: 'the catalog procedures field is not an object' };
    return { procedures, unreadable };
  }
  for (const [id, value] of Object.entries(raw)) {
    const read = readProcedureRecord(id, value);
    if ('record' in read) procedures[id] = read.record;
    else unreadable[id] = { record: value, error: read.error };
  }
  return { procedures, unreadable };
}
