// Set workload checker: clients `add` elements, then one or more `final-read`s
// return everything present. Every acknowledged add must appear in every final
// read, nothing may appear that was never attempted, and nothing may appear whose add was
// reported failed: a failure is a promise that the add did not happen (an outcome the client
// does not know is `info`, never `fail`). Elements compare by JSON.

import { type HistoryEvent, type Op, pairOps } from './history.js';

export interface SetResult {
  valid: boolean;
  attempted: number;
  acknowledged: number;
  lost: unknown[];
  unexpected: unknown[];
  /** Elements whose only adds were reported failed (none ok or info), yet a final read has them. */
  failedPresent: unknown[];
  /** The failed adds of the first few of them, as `fail p<process> add <element> at <time>: <error>`. */
  failedPresentAdds: string[];
  recovered: unknown[];
  finalReads: number;
  message: string;
}

/** Elements keyed by their JSON encoding, keeping the first value seen. */
type ElementSet = Map<string, unknown>;

export function checkSet(events: readonly HistoryEvent[]): SetResult {
  const ops = pairOps(events);
  const adds = ops.filter((op) => op.f === 'add');
  const attempted = elementsOf(adds);
  const acknowledged = elementsOf(adds.filter((op) => op.status === 'ok'));
  const indeterminate = elementsOf(adds.filter((op) => op.status === 'info'));
  const failed = elementsOf(adds.filter((op) => op.status === 'fail'));
  const reads = ops.filter((op) => op.f === 'final-read' && op.status === 'ok').map(readElements);

  const lost = [...acknowledged].filter(([k]) => reads.some((r) => !r.has(k))).map(([, v]) => v);
  const seen = union(reads);
  const unexpected = [...seen].filter(([k]) => !attempted.has(k)).map(([, v]) => v);
  const recovered = [...indeterminate].filter(([k]) => seen.has(k) && !acknowledged.has(k)).map(([, v]) => v);
  const failedPresentKeys = [...failed].filter(([k]) => seen.has(k) && !acknowledged.has(k) && !indeterminate.has(k));
  const failedPresent = failedPresentKeys.map(([, v]) => v);
  // What the client was told, for the first few: the failure that was not one.
  const failedPresentAdds = failedPresentKeys.slice(0, 3).flatMap(([k]) =>
    adds
      .filter((op) => op.status === 'fail' && JSON.stringify(op.value) === k)
      .map((op) => `fail p${op.process} add ${k} at ${op.completeTime}${op.error === undefined ? '' : `: ${op.error}`}`),
  );

  const base = { attempted: adds.length, acknowledged: adds.filter((op) => op.status === 'ok').length, lost, unexpected, failedPresent, failedPresentAdds, recovered, finalReads: reads.length };
  if (reads.length === 0) {
    return { ...base, valid: false, message: `no ok final-read in the history (${adds.length} adds attempted); cannot tell what survived` };
  }
  const valid = lost.length === 0 && unexpected.length === 0 && failedPresent.length === 0;
  return { ...base, valid, message: summarize(base, valid) };
}

function elementsOf(adds: readonly Op[]): ElementSet {
  const set: ElementSet = new Map();
  for (const op of adds) {
    const k = JSON.stringify(op.value);
    if (!set.has(k)) set.set(k, op.value);
  }
  return set;
}

function readElements(op: Op): ElementSet {
  if (!Array.isArray(op.value)) {
    throw new Error(`set checker: final-read by process ${op.process} at t=${op.invokeTime} returned ${JSON.stringify(op.value)}, not an array`);
  }
  const set: ElementSet = new Map();
  for (const v of op.value) set.set(JSON.stringify(v), v);
  return set;
}

function union(sets: readonly ElementSet[]): ElementSet {
  const all: ElementSet = new Map();
  for (const s of sets) for (const [k, v] of s) if (!all.has(k)) all.set(k, v);
  return all;
}

function summarize(r: Omit<SetResult, 'valid' | 'message'>, valid: boolean): string {
  const counts = `${r.attempted} adds attempted, ${r.acknowledged} acknowledged, ${r.finalReads} final read(s)`;
  const parts: string[] = [];
  if (r.lost.length > 0) parts.push(`${r.lost.length} acknowledged element(s) lost: ${preview(r.lost)}`);
  if (r.unexpected.length > 0) parts.push(`${r.unexpected.length} element(s) read but never attempted: ${preview(r.unexpected)}`);
  if (r.recovered.length > 0) parts.push(`${r.recovered.length} indeterminate add(s) recovered`);
  if (r.failedPresent.length > 0) {
    parts.push(`${r.failedPresent.length} element(s) whose add was reported failed are present: ${preview(r.failedPresent)} (${r.failedPresentAdds.join('; ')})`);
  }
  return `${valid ? 'valid' : 'INVALID'}: ${counts}${parts.length > 0 ? '; ' + parts.join('; ') : ''}`;
}

function preview(values: readonly unknown[]): string {
  const shown = values.slice(0, 10).map((v) => JSON.stringify(v)).join(', ');
  return values.length > 10 ? `${shown}, …` : shown;
}
