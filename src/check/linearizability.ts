// Linearizability checker for a CAS register, checked independently per key
// (P-compositionality). Uses a Wing & Gong / Lowe (WGL) depth-first search with
// memoization of (linearized set, register value), explains the deepest point
// the search reached on failure, and shrinks the failing history greedily.

import { type Op, type HistoryEvent, pairOps } from './history.js';

export interface KeyResult {
  key: string;
  valid: boolean | 'unknown';
  ops: number;
  message?: string;
  failingOps?: Op[];
}

export interface LinearizabilityResult {
  valid: boolean | 'unknown';
  keys: KeyResult[];
  invalidKeys: string[];
  unknownKeys: string[];
}

export interface CheckRegisterOptions {
  /** Search steps (candidate linearization attempts) allowed per key. */
  maxSteps?: number;
}

export const DEFAULT_MAX_STEPS = 2_000_000;
const SHRINK_ATTEMPTS = 300;
const SHRINK_MIN_STEPS = 20_000;
/** Canonical encoding of the register's initial (absent) value. */
const NULL_STATE = 'null';

export function checkRegister(events: readonly HistoryEvent[], options: CheckRegisterOptions = {}): LinearizabilityResult {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  const keys = [...groupRegisterOps(pairOps(events))].map(([key, ops]) => checkKey(key, ops, maxSteps));
  const invalidKeys = keys.filter((k) => k.valid === false).map((k) => k.key);
  const unknownKeys = keys.filter((k) => k.valid === 'unknown').map((k) => k.key);
  const valid = invalidKeys.length > 0 ? false : unknownKeys.length > 0 ? 'unknown' : true;
  return { valid, keys, invalidKeys, unknownKeys };
}

/**
 * Drops ops that carry no information (failed ops never happened; an
 * indeterminate read observed nothing) and groups the rest by key.
 */
function groupRegisterOps(ops: readonly Op[]): Map<string, Op[]> {
  const byKey = new Map<string, Op[]>();
  for (const op of ops) {
    if (op.f !== 'read' && op.f !== 'write' && op.f !== 'cas') {
      throw new Error(`register checker: unsupported op "${op.f}" by process ${op.process} at t=${op.invokeTime}`);
    }
    if (op.status === 'fail') continue;
    if (op.status === 'info' && op.f === 'read') continue;
    const key = op.key ?? '';
    let list = byKey.get(key);
    if (!list) byKey.set(key, (list = []));
    list.push(op);
  }
  return byKey;
}

function checkKey(key: string, ops: readonly Op[], maxSteps: number): KeyResult {
  const prepared = prepareOps(ops).filter(observable(ops));
  const outcome = new WglSearch(prepared, maxSteps).run();
  if (outcome.kind === 'linearizable') return { key, valid: true, ops: ops.length };
  if (outcome.kind === 'unknown') {
    const message = `key ${JSON.stringify(key)}: gave up after ${maxSteps} search steps over ${ops.length} ops (history too concurrent for the effort bound); linearizability unknown`;
    return { key, valid: 'unknown', ops: ops.length, message };
  }
  const message = `key ${JSON.stringify(key)}: ${explainViolation(prepared, outcome.deepest)}`;
  const shrinkSteps = Math.min(maxSteps, Math.max(SHRINK_MIN_STEPS, 4 * outcome.steps));
  const failingOps = shrinkFailingOps(prepared.map((p) => p.op), shrinkSteps);
  return { key, valid: false, ops: ops.length, message, failingOps };
}

// ---------------------------------------------------------------------------
// Model

type RegisterKind = 'read' | 'write' | 'cas';

/** An op with its values pre-encoded as canonical JSON strings for cheap comparison. */
interface PreparedOp {
  readonly op: Op;
  readonly kind: RegisterKind;
  readonly isOk: boolean;
  /** read: value read; write: value written; cas: expected value. */
  readonly arg: string;
  /** cas: new value (unused otherwise). */
  readonly next: string;
}

function encode(value: unknown): string {
  return JSON.stringify(value ?? null);
}

function prepareOps(ops: readonly Op[]): PreparedOp[] {
  const sorted = [...ops].sort((a, b) => a.invokeTime - b.invokeTime || a.invokeIndex - b.invokeIndex);
  return sorted.map(prepareOp);
}

function prepareOp(op: Op): PreparedOp {
  const kind = op.f as RegisterKind;
  const isOk = op.status === 'ok';
  if (kind !== 'cas') return { op, kind, isOk, arg: encode(op.value), next: '' };
  if (!Array.isArray(op.value) || op.value.length !== 2) {
    throw new Error(`register checker: cas by process ${op.process} at t=${op.invokeTime} must have value [expected, new], got ${JSON.stringify(op.value)}`);
  }
  return { op, kind, isOk, arg: encode(op.value[0]), next: encode(op.value[1]) };
}

/**
 * Returns a filter that drops indeterminate mutations whose result no ok read or cas could
 * ever observe (directly, or through a chain of indeterminate cas ops). Linearizing such an
 * op can never help, so dropping it preserves the verdict and shrinks the search.
 */
function observable(ops: readonly Op[]): (p: PreparedOp) => boolean {
  const prepared = prepareOps(ops);
  const seen = new Set(prepared.filter((p) => p.isOk && p.kind !== 'write').map((p) => p.arg));
  const infoCas = prepared.filter((p) => !p.isOk && p.kind === 'cas');
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of infoCas) {
      if (seen.has(p.next) && !seen.has(p.arg)) {
        seen.add(p.arg);
        grew = true;
      }
    }
  }
  return (p) => p.isOk || seen.has(writes(p)!);
}

/** Applies op to the register; returns the new state, or undefined if the op is illegal here. */
function step(state: string, p: PreparedOp): string | undefined {
  switch (p.kind) {
    case 'read':
      return p.arg === state ? state : undefined;
    case 'write':
      return p.arg;
    case 'cas':
      return p.arg === state ? p.next : undefined;
  }
}

// ---------------------------------------------------------------------------
// WGL search

interface Deepest {
  /** Number of ok ops linearized at the deepest point. */
  readonly okLinearized: number;
  /** The pending ok op with the earliest completion: it must come next, and could not. */
  readonly blocking: number;
  /** Register states seen at that point, each with the op that wrote it (-1 = initial). */
  readonly states: Map<string, number>;
}

type Outcome =
  | { kind: 'linearizable'; steps: number }
  | { kind: 'unknown'; steps: number }
  | { kind: 'violation'; steps: number; deepest: Deepest };

interface Frame {
  readonly state: string;
  readonly writer: number;
  /** First not-linearized ok op in invoke order; every ok op before it is linearized. */
  readonly okPtr: number;
  /** First not-linearized op in okByComplete. */
  readonly completePtr: number;
  readonly candidates: readonly number[];
  next: number;
  /** The op linearized to reach this frame (-1 for the root). */
  readonly chosen: number;
}

const DONE = 'done';

class WglSearch {
  private readonly linearized: Uint8Array;
  private readonly okByComplete: number[];
  private readonly infoOps: number[];
  private readonly memo = new Set<string>();
  private okLinearized = 0;
  private steps = 0;
  private deepest: Deepest | undefined;

  constructor(
    private readonly ops: readonly PreparedOp[],
    private readonly maxSteps: number,
  ) {
    this.linearized = new Uint8Array(ops.length);
    const indices = ops.map((_, i) => i);
    this.okByComplete = indices.filter((i) => ops[i]!.isOk).sort((a, b) => ops[a]!.op.completeTime - ops[b]!.op.completeTime || a - b);
    this.infoOps = indices.filter((i) => !ops[i]!.isOk);
  }

  run(): Outcome {
    const root = this.enter(NULL_STATE, -1, 0, 0, -1);
    if (root === DONE) return { kind: 'linearizable', steps: this.steps };
    const stack: Frame[] = root ? [root] : [];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next >= top.candidates.length) {
        stack.pop();
        this.setLinearized(top.chosen, false);
        continue;
      }
      const j = top.candidates[top.next++]!;
      if (++this.steps > this.maxSteps) return { kind: 'unknown', steps: this.steps };
      const child = this.tryLinearize(top, j);
      if (child === DONE) return { kind: 'linearizable', steps: this.steps };
      if (child) stack.push(child);
    }
    return { kind: 'violation', steps: this.steps, deepest: this.deepest! };
  }

  private tryLinearize(parent: Frame, j: number): Frame | typeof DONE | undefined {
    const p = this.ops[j]!;
    const state = step(parent.state, p);
    if (state === undefined) return undefined;
    this.setLinearized(j, true);
    const writer = p.kind === 'read' ? parent.writer : j;
    const child = this.enter(state, writer, parent.okPtr, parent.completePtr, j);
    if (child === undefined) this.setLinearized(j, false);
    return child;
  }

  private setLinearized(j: number, on: boolean): void {
    if (j < 0) return;
    this.linearized[j] = on ? 1 : 0;
    if (this.ops[j]!.isOk) this.okLinearized += on ? 1 : -1;
  }

  /** Builds the frame for the current linearized set, or DONE, or undefined if already explored. */
  private enter(state: string, writer: number, okPtr: number, completePtr: number, chosen: number): Frame | typeof DONE | undefined {
    const { ops, linearized, okByComplete } = this;
    while (okPtr < ops.length && (linearized[okPtr] || !ops[okPtr]!.isOk)) okPtr++;
    while (completePtr < okByComplete.length && linearized[okByComplete[completePtr]!]) completePtr++;
    if (completePtr === okByComplete.length) return DONE;
    const blocking = okByComplete[completePtr]!;
    const horizon = ops[blocking]!.op.completeTime;
    const done: number[] = [];
    const candidates: number[] = [];
    for (const i of this.infoOps) {
      if (i >= okPtr) break;
      (linearized[i] ? done : candidates).push(i);
    }
    // Ops invoked after the earliest pending completion must wait for it (real-time order).
    for (let i = okPtr; i < ops.length && ops[i]!.op.invokeTime <= horizon; i++) {
      (linearized[i] ? done : candidates).push(i);
    }
    // Candidates depend on whether we arrived via an info op, so that is part of the memo key.
    const afterInfo = chosen >= 0 && !ops[chosen]!.isOk;
    const memoKey = `${afterInfo ? 'i' : 'o'}${okPtr}|${done.join(',')}|${state}`;
    if (this.memo.has(memoKey)) return undefined;
    this.memo.add(memoKey);
    this.recordDepth(state, writer, blocking);
    return { state, writer, okPtr, completePtr, candidates: this.choose(candidates, state, afterInfo, blocking), next: 0, chosen };
  }

  /**
   * Orders and prunes the candidates, relying on two normal forms of a valid linearization:
   * - A legal ok read changes nothing and only relaxes real-time constraints, so it can go first.
   * - Indeterminate (info) mutations only matter in short runs right before an ok read or cas
   *   that observes their result (any other info op can be dropped without changing what ok ops
   *   see). So an info op is tried only if its result is wanted by a pending ok read/cas, possibly
   *   through a chain of info cas ops; and right after an info op, the next op must consume its
   *   result (an ok write would make it pointless).
   */
  private choose(candidates: readonly number[], state: string, afterInfo: boolean, blocking: number): number[] {
    const ops = this.ops;
    const read = candidates.find((i) => ops[i]!.isOk && ops[i]!.kind === 'read' && ops[i]!.arg === state);
    if (read !== undefined) return [read];
    const wanted = this.wantedStates(candidates);
    const consumes = (p: PreparedOp): boolean => p.kind !== 'write' && p.arg === state;
    const ok = candidates.filter((i) => ops[i]!.isOk && (!afterInfo || consumes(ops[i]!)));
    const info = candidates.filter((i) => {
      const p = ops[i]!;
      return !p.isOk && wanted.has(writes(p)!) && (!afterInfo || consumes(p));
    });
    return this.prioritize([...ok, ...info], wanted, blocking);
  }

  /**
   * Search order heuristic (any order is sound): first ops that produce what the blocking op
   * (earliest-completing pending ok op) needs, then ok ops producing any wanted value, then
   * the remaining ok ops, then the remaining info ops.
   */
  private prioritize(candidates: number[], wanted: ReadonlySet<string>, blocking: number): number[] {
    const ops = this.ops;
    const need = ops[blocking]!.kind === 'write' ? undefined : ops[blocking]!.arg;
    const rank = (i: number): number => {
      const p = ops[i]!;
      const result = writes(p);
      if (i === blocking || (result !== undefined && result === need)) return 0;
      if (!p.isOk) return 3;
      return result !== undefined && wanted.has(result) ? 1 : 2;
    };
    const ranks = new Map(candidates.map((i) => [i, rank(i)]));
    return candidates.sort((a, b) => ranks.get(a)! - ranks.get(b)!);
  }

  /** Values some pending ok read/cas needs to observe, closed backwards over pending info cas ops. */
  private wantedStates(candidates: readonly number[]): Set<string> {
    const ops = this.ops;
    const wanted = new Set<string>();
    for (const i of candidates) if (ops[i]!.isOk && ops[i]!.kind !== 'write') wanted.add(ops[i]!.arg);
    const infoCas = candidates.filter((i) => !ops[i]!.isOk && ops[i]!.kind === 'cas');
    for (let grew = true; grew; ) {
      grew = false;
      for (const i of infoCas) {
        const p = ops[i]!;
        if (wanted.has(p.next) && !wanted.has(p.arg)) {
          wanted.add(p.arg);
          grew = true;
        }
      }
    }
    return wanted;
  }

  private recordDepth(state: string, writer: number, blocking: number): void {
    const d = this.deepest;
    if (!d || this.okLinearized > d.okLinearized) {
      this.deepest = { okLinearized: this.okLinearized, blocking, states: new Map([[state, writer]]) };
    } else if (this.okLinearized === d.okLinearized && blocking === d.blocking && !d.states.has(state)) {
      d.states.set(state, writer);
    }
  }
}

function isLinearizable(ops: readonly Op[], maxSteps: number): boolean | 'unknown' {
  const outcome = new WglSearch(prepareOps(ops).filter(observable(ops)), maxSteps).run();
  return outcome.kind === 'unknown' ? 'unknown' : outcome.kind === 'linearizable';
}

// ---------------------------------------------------------------------------
// Explanation

function explainViolation(ops: readonly PreparedOp[], deepest: Deepest): string {
  const blocked = ops[deepest.blocking]!;
  const okTotal = ops.filter((p) => p.isOk).length;
  const states = [...deepest.states].map(([state, writer]) => `${state} (${describeOrigin(ops, writer, blocked.op)})`);
  const held = states.length === 1 ? `the register held ${states[0]}` : `the register could only have held one of: ${states.join('; ')}`;
  const neverWritten = blocked.arg !== NULL_STATE && !ops.some((p) => writes(p) === blocked.arg) ? `; no op ever wrote ${blocked.arg}` : '';
  return `${describeOp(blocked.op)} cannot be linearized: ${held}${neverWritten}; the search got stuck after linearizing ${deepest.okLinearized} of ${okTotal} ok ops`;
}

/** The value a mutation leaves in the register, if it succeeds. */
function writes(p: PreparedOp): string | undefined {
  return p.kind === 'write' ? p.arg : p.kind === 'cas' ? p.next : undefined;
}

export function describeOp(op: Op): string {
  const when = `at t=${op.invokeTime}..${Number.isFinite(op.completeTime) ? op.completeTime : '?'}`;
  const who = `by process ${op.process}`;
  const status = op.status === 'ok' ? '' : ` (${op.status})`;
  if (op.f === 'cas' && Array.isArray(op.value)) {
    return `cas from ${encode(op.value[0])} to ${encode(op.value[1])} ${who} ${when}${status}`;
  }
  return `${op.f} of ${encode(op.value)} ${who} ${when}${status}`;
}

function describeOrigin(ops: readonly PreparedOp[], writer: number, blocked: Op): string {
  if (writer < 0) return 'the initial value; nothing had been written';
  const w = ops[writer]!.op;
  const verb = w.f === 'cas' ? 'set by the cas' : 'written';
  const indeterminate = w.status === 'info' ? ' indeterminate' : '';
  const relation = w.completeTime < blocked.invokeTime ? `completed before the ${blocked.f} began` : `concurrent with the ${blocked.f}`;
  const end = Number.isFinite(w.completeTime) ? w.completeTime : '?';
  return `${verb} by process ${w.process}'s${indeterminate} ${w.f} at t=${w.invokeTime}..${end}, ${relation}`;
}

// ---------------------------------------------------------------------------
// Shrinking

/**
 * Greedy delta-debugging: removes chunks of ops (halving the chunk size down to
 * single ops) while the remainder stays non-linearizable. A read or cas is never
 * left depending on a value whose every writer was removed (unless no op in the
 * original history wrote it), so the result still tells the story.
 */
function shrinkFailingOps(ops: readonly Op[], maxSteps: number): Op[] {
  const written = new Set(prepareOps(ops).map(writes).filter((v): v is string => v !== undefined));
  let attempts = 0;
  const stillFails = (subset: readonly Op[]): boolean => {
    attempts++;
    return subset.length > 0 && keepsSources(subset, written) && isLinearizable(subset, maxSteps) === false;
  };
  let current = [...ops];
  /** One left-to-right pass removing chunks of the given size; reports whether anything was removed. */
  const pass = (chunk: number): boolean => {
    let removed = false;
    for (let i = 0; i < current.length && attempts < SHRINK_ATTEMPTS; ) {
      const candidate = [...current.slice(0, i), ...current.slice(i + chunk)];
      if (stillFails(candidate)) {
        current = candidate;
        removed = true;
      } else {
        i += chunk;
      }
    }
    return removed;
  };
  let chunk = Math.max(1, Math.ceil(current.length / 2));
  while (attempts < SHRINK_ATTEMPTS) {
    const removed = pass(chunk);
    if (chunk === 1 && !removed) break;
    chunk = Math.max(1, Math.ceil(chunk / 2));
  }
  return current.sort((a, b) => a.invokeTime - b.invokeTime || a.invokeIndex - b.invokeIndex);
}

function keepsSources(subset: readonly Op[], writtenInFull: ReadonlySet<string>): boolean {
  const prepared = prepareOps(subset);
  const available = new Set(prepared.map(writes));
  return prepared.every((p) => p.kind === 'write' || p.arg === NULL_STATE || !writtenInFull.has(p.arg) || available.has(p.arg));
}
