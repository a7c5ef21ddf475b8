import { type HistoryEvent, type OpF } from './history.js';
import { checkRegister } from './checker/linearizability.js';
class HistoryBuilder {
  readonly events: HistoryEvent[] = [];
  private time = 0;
  invoke(process: number, f: OpF, key?: string, value?: unknown): this { return this.push({ type: 'invoke', process, f, key, value }); }
  ok(process: number, f: OpF, key?: string, value?: unknown): this { return this.push({ type: 'ok', process, f, key, value }); }
  fail(process: number, f: OpF, key?: string, value?: unknown, error = 'failed'): this { return this.push({ type: 'fail', process, f, key, value, error }); }
  info(process: number, f: OpF, key?: string, value?: unknown, error = 'timeout'): this { return this.push({ type: 'info', process, f, key, value, error }); }
  private push(e: Omit<HistoryEvent, 'time'>): this { this.events.push({ ...e, time: ++this.time }); return this; }
}
const h = (): HistoryBuilder => new HistoryBuilder();
/** Deterministic PRNG (mulberry32) so generated histories are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Pending {
  readonly f: 'read' | 'write' | 'cas';
  readonly key: string;
  readonly value: unknown;
  applied: boolean;
  result: 'ok' | 'fail';
  read?: unknown;
}

/**
 * Simulates clients against a truly atomic register: every op takes effect at a
 * random instant between its invoke and completion, so the history is
 * linearizable by construction. Some completions are reported as info.
 */
function simulate(seed: number, opts: { processes: number; ops: number; keys: number; infoRate: number }): HistoryEvent[] {
  const rand = prng(seed);
  const pick = (n: number): number => Math.floor(rand() * n);
  const state = new Map<string, unknown>();
  const pending = new Map<number, Pending>();
  const b = h();
  let remaining = opts.ops;
  let nextValue = 1;
  while (remaining > 0 || pending.size > 0) {
    const p = pick(opts.processes);
    const op = pending.get(p);
    if (!op) {
      if (remaining === 0) continue;
      remaining--;
      const key = `k${pick(opts.keys)}`;
      const roll = rand();
      const next: Pending =
        roll < 0.4
          ? { f: 'read', key, value: undefined, applied: false, result: 'ok' }
          : roll < 0.75
            ? { f: 'write', key, value: nextValue++, applied: false, result: 'ok' }
            : { f: 'cas', key, value: [state.get(key) ?? null, nextValue++], applied: false, result: 'ok' };
      pending.set(p, next);
      b.invoke(p, next.f, key, next.value);
    } else if (!op.applied && rand() < 0.6) {
      applyAtomically(state, op);
    } else {
      pending.delete(p);
      if (rand() < opts.infoRate) {
        b.info(p, op.f, op.key, op.value);
      } else {
        if (!op.applied) applyAtomically(state, op);
        complete(b, p, op);
      }
    }
  }
  return b.events;
}

function applyAtomically(state: Map<string, unknown>, op: Pending): void {
  op.applied = true;
  const current = state.get(op.key) ?? null;
  if (op.f === 'read') op.read = current;
  else if (op.f === 'write') state.set(op.key, op.value);
  else if (JSON.stringify(current) === JSON.stringify((op.value as unknown[])[0])) state.set(op.key, (op.value as unknown[])[1]);
  else op.result = 'fail';
}

function complete(b: HistoryBuilder, p: number, op: Pending): void {
  if (op.result === 'fail') b.fail(p, op.f, op.key, op.value, 'condition-failed');
  else b.ok(p, op.f, op.key, op.f === 'read' ? op.read : op.value);
}
const [procs, ops, info, seeds] = process.argv.slice(2).map(Number);
for (let seed = 1; seed <= seeds!; seed++) {
  const ev = simulate(seed, { processes: procs!, ops: ops!, keys: 1, infoRate: info! });
  const t = Date.now();
  const r = checkRegister(ev);
  console.log(seed, r.valid, Date.now() - t, 'ms', r.keys[0]?.message ?? '');
}
