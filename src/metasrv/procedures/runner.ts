// Runs the metasrv's procedures: one pass over every running procedure per tick, each step
// either moving on, waiting or finishing. Any pass that changed a record or the catalog is
// saved before the next one (steps and their catalog changes are durable together).
import type { Logger } from '../../common/logger.js';
import { balanceLeaders } from './balance-leaders.js';
import { drainNode } from './drain-node.js';
import type { ProcedureContext, ProcedureDefinition, ProcedureKind, ProcedureRecord, StepResult } from './procedure.js';
import { regionFailover } from './region-failover.js';
import { repairReplica } from './repair-replica.js';
import { transferLeader } from './transfer-leader.js';

export const definitions: Readonly<Record<ProcedureKind, ProcedureDefinition>> = {
  'region-failover': regionFailover,
  'repair-replica': repairReplica,
  'balance-leaders': balanceLeaders,
  'drain-node': drainNode,
  'transfer-leader': transferLeader,
};

const NOTES_KEPT = 12;
/** Finished procedures kept for `regiondb status`. */
const FINISHED_KEPT = 30;

export function newProcedure(ctx: { catalog: ProcedureContext['catalog']; nowMs(): number }, kind: ProcedureKind, data: Record<string, unknown>): ProcedureRecord {
  const id = `${kind}-${ctx.catalog.nextProcedureId++}`;
  const now = ctx.nowMs();
  const record: ProcedureRecord = {
    id,
    kind,
    step: definitions[kind].firstStep,
    data,
    status: 'running',
    createdMs: now,
    updatedMs: now,
    stepSinceMs: now,
    notes: [],
  };
  ctx.catalog.procedures[id] = record;
  return record;
}

function note(record: ProcedureRecord, text: string | undefined): void {
  if (!text) return;
  if (record.notes.at(-1) === text) return;
  record.notes.push(text);
  if (record.notes.length > NOTES_KEPT) record.notes.splice(0, record.notes.length - NOTES_KEPT);
}

/** One pass; returns true if anything durable changed (the caller saves). */
export function runProcedures(ctx: ProcedureContext, log: Logger): boolean {
  let changed = false;
  // Steps may start procedures; take a snapshot of the running set first.
  for (const record of Object.values(ctx.catalog.procedures)) {
    if (record.status !== 'running') continue;
    const def = definitions[record.kind];
    const step = def.steps[record.step];
    if (!step) {
      record.status = 'failed';
      record.error = `unknown step ${record.step}`;
      changed = true;
      continue;
    }
    let result: StepResult;
    try {
      result = step(ctx, record);
    } catch (err) {
      result = { failed: `step ${record.step} threw: ${(err as Error).message}` };
    }
    const now = ctx.nowMs();
    if ('wait' in result) {
      if (result.note && record.notes.at(-1) !== result.note) {
        note(record, result.note);
        changed = true;
      }
      continue;
    }
    changed = true;
    record.updatedMs = now;
    if ('next' in result) {
      log.info({ procedure: record.id, from: record.step, to: result.next, note: result.note }, 'procedure step');
      note(record, result.note ?? `→ ${result.next}`);
      record.step = result.next;
      record.stepSinceMs = now;
      record.data['lastSentMs'] = 0;
    } else if ('done' in result) {
      log.info({ procedure: record.id, note: result.note }, 'procedure done');
      note(record, result.note ?? 'done');
      record.status = 'done';
    } else {
      log.warn({ procedure: record.id, error: result.failed }, 'procedure failed');
      record.status = 'failed';
      record.error = result.failed;
    }
  }
  const finished = Object.values(ctx.catalog.procedures)
    .filter((p) => p.status !== 'running')
    .sort((a, b) => a.updatedMs - b.updatedMs);
  for (const p of finished.slice(0, Math.max(0, finished.length - FINISHED_KEPT))) {
    delete ctx.catalog.procedures[p.id];
    changed = true;
  }
  return changed;
}
