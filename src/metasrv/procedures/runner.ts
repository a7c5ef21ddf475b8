// Runs the metasrv's procedures: one pass over every running procedure per tick, each step
// either moving on, waiting, retrying or finishing. Any pass that changed a record or the
// catalog is saved before the next one (steps and their catalog changes are durable together).
// The runner owns the bookkeeping every kind shares (status, step times, the re-send time,
// notes); a step sees only its kind's data and a StepRun.
import type { Logger } from '../../common/logger.js';
import type { CatalogState } from '../catalog.js';
import { balanceLeaders } from './balance-leaders.js';
import { drainNode } from './drain-node.js';
import { type ProcedureContext, type ProcedureDefinition, RESEND_AFTER_MS, type StepFn, type StepResult, type StepRun } from './procedure.js';
import type { DataOf, ProcedureKind, ProcedureRecord, ProcedureRecordOf, StepOf } from './record.js';
import { regionFailover } from './region-failover.js';
import { repairReplica } from './repair-replica.js';
import { transferLeader } from './transfer-leader.js';

export const definitions: { readonly [K in ProcedureKind]: ProcedureDefinition<K> } = {
  'region-failover': regionFailover,
  'repair-replica': repairReplica,
  'balance-leaders': balanceLeaders,
  'drain-node': drainNode,
  'transfer-leader': transferLeader,
};

const NOTES_KEPT = 12;
/** Finished procedures kept for `regiondb status`. */
const FINISHED_KEPT = 30;

type Log = Pick<Logger, 'info' | 'warn'>;

export function newProcedure<K extends ProcedureKind>(
  ctx: { readonly catalog: CatalogState; readonly clock: ProcedureContext['clock'] },
  kind: K,
  data: DataOf<K>,
): ProcedureRecordOf<K> {
  const id = `${kind}-${ctx.catalog.nextProcedureId++}`;
  const now = ctx.clock.nowMs();
  const def: ProcedureDefinition<K> = definitions[kind];
  const record: ProcedureRecordOf<K> = {
    id,
    kind,
    step: def.firstStep,
    data,
    status: 'running',
    createdMs: now,
    updatedMs: now,
    stepSinceMs: now,
    lastSentMs: 0,
    notes: [],
  };
  ctx.catalog.procedures[id] = record as ProcedureRecord;
  return record;
}

/** The running procedures (of one kind, typed), as steps and the metasrv see them. */
export function runningProcedures<K extends ProcedureKind>(catalog: CatalogState, kind: K): ProcedureRecordOf<K>[];
export function runningProcedures(catalog: CatalogState, kind?: ProcedureKind): ProcedureRecord[];
export function runningProcedures(catalog: CatalogState, kind?: ProcedureKind): ProcedureRecord[] {
  return Object.values(catalog.procedures).filter((p) => p.status === 'running' && (kind === undefined || p.kind === kind));
}

export function describeProcedure(record: ProcedureRecord): string {
  return describeOf(record);
}

function describeOf<K extends ProcedureKind>(record: ProcedureRecordOf<K>): string {
  const def: ProcedureDefinition<K> = definitions[record.kind];
  return def.describe(record.data);
}

function note(record: { notes: string[] }, text: string | undefined): boolean {
  if (!text || record.notes.at(-1) === text) return false;
  record.notes.push(text);
  if (record.notes.length > NOTES_KEPT) record.notes.splice(0, record.notes.length - NOTES_KEPT);
  return true;
}

function stepOf<K extends ProcedureKind>(record: ProcedureRecordOf<K>): StepFn<K> | undefined {
  const def: ProcedureDefinition<K> = definitions[record.kind];
  // Records are checked when loaded (record.ts); this guards a record changed since.
  return Object.hasOwn(def.steps, record.step) ? def.steps[record.step] : undefined;
}

/**
 * Runs the current step of one running procedure once and applies its result. Returns true if
 * anything durable changed (the caller saves). A step that throws fails its procedure.
 */
export function advance<K extends ProcedureKind>(ctx: ProcedureContext, record: ProcedureRecordOf<K>, log: Log): boolean {
  if (record.status !== 'running') return false;
  const step = stepOf(record);
  const now = () => ctx.clock.nowMs();
  if (!step) {
    record.status = 'failed';
    record.error = `unknown step ${JSON.stringify(record.step)} for ${record.kind}`;
    record.updatedMs = now();
    return true;
  }
  // A step that began "in the future" began before a backward step of the wall clock (NTP): its
  // waits and time-outs count from now, not from once the clock has caught up with the saved
  // time — a balance move, a drain's leader moves, a transfer or a failover's nudge would
  // otherwise wait out the whole step (finding M33; M10 is the same for re-sends). Steps time
  // themselves by `stepSinceMs` only, never by the record's creation time, which stays as saved.
  rebaseStepStart(record, now());
  const run: StepRun = {
    stepSinceMs: record.stepSinceMs,
    resend: () => {
      // A send "in the future" is one before a backward step of the wall clock (NTP): due now,
      // not once the clock has caught up with it (finding M10 in docs/correctness.md).
      const sinceMs = now() - record.lastSentMs;
      if (sinceMs >= 0 && sinceMs < RESEND_AFTER_MS) return false;
      record.lastSentMs = now();
      return true;
    },
  };
  let result: StepResult<StepOf<K>>;
  try {
    result = step(ctx, record.data, run);
  } catch (err) {
    result = { failed: `step ${record.step} threw: ${(err as Error).message}` };
  }
  if ('wait' in result) return note(record, result.note);
  if ('retry' in result) return note(record, result.retry);
  record.updatedMs = now();
  if ('next' in result) {
    log.info({ procedure: record.id, from: record.step, to: result.next, note: result.note }, 'procedure step');
    note(record, result.note ?? `→ ${result.next}`);
    record.step = result.next;
    record.stepSinceMs = now();
    record.lastSentMs = 0;
  } else if ('done' in result) {
    log.info({ procedure: record.id, note: result.note }, 'procedure done');
    note(record, result.note ?? 'done');
    record.status = 'done';
  } else {
    log.warn({ procedure: record.id, step: record.step, error: result.failed }, 'procedure failed');
    record.status = 'failed';
    record.error = result.failed;
  }
  return true;
}

/**
 * Moves a running record's step start back to `nowMs` if it lies after it. In memory only: the
 * record is saved with its next change, and a start before then rebases the saved time again.
 */
function rebaseStepStart(record: { stepSinceMs: number }, nowMs: number): void {
  if (record.stepSinceMs > nowMs) record.stepSinceMs = nowMs;
}

/** One pass; returns true if anything durable changed (the caller saves). */
export function runProcedures(ctx: ProcedureContext, log: Log): boolean {
  let changed = false;
  // Steps may start procedures; those run from the next pass.
  for (const record of Object.values(ctx.catalog.procedures)) changed = advance(ctx, record, log) || changed;
  const finished = Object.values(ctx.catalog.procedures)
    .filter((p) => p.status !== 'running')
    .sort((a, b) => a.updatedMs - b.updatedMs);
  for (const p of finished.slice(0, Math.max(0, finished.length - FINISHED_KEPT))) {
    delete ctx.catalog.procedures[p.id];
    changed = true;
  }
  return changed;
}
