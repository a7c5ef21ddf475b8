// Tests for the Jepsen history parser, the per-key CAS-register linearizability
// checker (verdicts, explanations, shrinking, effort bound) and the set checker.
// Histories are built with a small fluent helper that advances time per event.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { runCheck } from '../../src/cmd/check.js';
import { type HistoryEvent, type OpF, pairOps, parseHistory } from '../../src/check/history.js';
import { checkRegister } from '../../src/check/linearizability.js';
import { checkSet } from '../../src/check/set.js';

class HistoryBuilder {
  readonly events: HistoryEvent[] = [];
  private time = 0;

  invoke(process: number, f: OpF, key?: string, value?: unknown): this {
    return this.push({ type: 'invoke', process, f, key, value });
  }
  ok(process: number, f: OpF, key?: string, value?: unknown): this {
    return this.push({ type: 'ok', process, f, key, value });
  }
  fail(process: number, f: OpF, key?: string, value?: unknown, error = 'failed'): this {
    return this.push({ type: 'fail', process, f, key, value, error });
  }
  info(process: number, f: OpF, key?: string, value?: unknown, error = 'timeout'): this {
    return this.push({ type: 'info', process, f, key, value, error });
  }
  /** A complete, non-overlapping write. */
  write(process: number, key: string, value: unknown): this {
    return this.invoke(process, 'write', key, value).ok(process, 'write', key, value);
  }
  /** A complete, non-overlapping read that observed value. */
  read(process: number, key: string, value: unknown): this {
    return this.invoke(process, 'read', key).ok(process, 'read', key, value);
  }
  /** A complete, non-overlapping successful cas. */
  cas(process: number, key: string, expected: unknown, next: unknown): this {
    return this.invoke(process, 'cas', key, [expected, next]).ok(process, 'cas', key, [expected, next]);
  }
  add(process: number, element: unknown, outcome: 'ok' | 'fail' | 'info' = 'ok'): this {
    this.invoke(process, 'add', undefined, element);
    return this.push({ type: outcome, process, f: 'add', value: element });
  }
  finalRead(process: number, elements: unknown[]): this {
    return this.invoke(process, 'final-read').ok(process, 'final-read', undefined, elements);
  }

  private push(e: Omit<HistoryEvent, 'time'>): this {
    const event: HistoryEvent = { type: e.type, process: e.process, f: e.f, time: ++this.time };
    if (e.key !== undefined) event.key = e.key;
    if (e.value !== undefined) event.value = e.value;
    if (e.error !== undefined) event.error = e.error;
    this.events.push(event);
    return this;
  }
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
  // A slot's process id; after an info the slot continues as a new process (Jepsen's rule).
  const slotProcess = Array.from({ length: opts.processes }, (_, i) => i);
  while (remaining > 0 || pending.size > 0) {
    const slot = pick(opts.processes);
    const p = slotProcess[slot]!;
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
        slotProcess[slot] = p + opts.processes;
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

/** Random small register history, not necessarily linearizable, over a tiny value domain. */
function randomSmallHistory(rand: () => number, processes: number, ops: number): HistoryEvent[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const values = [null, 1, 2, 3];
  const b = h();
  const pending = new Map<number, { f: 'read' | 'write' | 'cas'; value: unknown }>();
  let remaining = ops;
  const slotProcess = Array.from({ length: processes }, (_, i) => i); // renumbered after an info, as in simulate()
  while (remaining > 0 || pending.size > 0) {
    const slot = Math.floor(rand() * processes);
    const p = slotProcess[slot]!;
    const op = pending.get(p);
    if (!op && remaining > 0) {
      remaining--;
      const f = pick(['read', 'write', 'cas'] as const);
      const value = f === 'read' ? undefined : f === 'write' ? pick(values.slice(1)) : [pick(values), pick(values.slice(1))];
      pending.set(p, { f, value });
      b.invoke(p, f, 'x', value);
    } else if (op) {
      pending.delete(p);
      const status = pick(['ok', 'ok', 'ok', 'ok', 'info', 'fail'] as const);
      const value = op.f === 'read' ? pick(values) : op.value;
      if (status === 'ok') b.ok(p, op.f, 'x', value);
      else if (status === 'info') {
        b.info(p, op.f, 'x', op.value);
        slotProcess[slot] = p + processes;
      } else b.fail(p, op.f, 'x', op.value);
    }
  }
  return b.events;
}

/** Reference checker: tries every order that respects real time, with no memoization or pruning. */
function bruteForceLinearizable(events: readonly HistoryEvent[]): boolean {
  const ops = pairOps(events).filter((op) => op.status === 'ok' || (op.status === 'info' && op.f !== 'read'));
  const used = ops.map(() => false);
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  const apply = (state: unknown, op: (typeof ops)[number]): { ok: boolean; state: unknown } => {
    if (op.f === 'read') return { ok: same(state, op.value), state };
    if (op.f === 'write') return { ok: true, state: op.value };
    const [expected, next] = op.value as unknown[];
    return same(state, expected) ? { ok: true, state: next } : { ok: false, state };
  };
  const search = (state: unknown): boolean => {
    if (ops.every((op, i) => used[i] || op.status !== 'ok')) return true;
    for (let i = 0; i < ops.length; i++) {
      if (used[i]) continue;
      const blocked = ops.some((o, j) => !used[j] && o.status === 'ok' && o.completeTime < ops[i]!.invokeTime);
      if (blocked) continue;
      const r = apply(state, ops[i]!);
      if (!r.ok) continue;
      used[i] = true;
      if (search(r.state)) return true;
      used[i] = false;
    }
    return false;
  };
  return search(null);
}

describe('jepsen history', () => {
  it('parses JSONL and fills index', () => {
    const events = parseHistory('{"type":"invoke","process":0,"f":"write","key":"x","value":1,"time":1}\n\n{"type":"ok","process":0,"f":"write","key":"x","value":1,"time":2}\n');
    expect(events).to.have.length(2);
    expect(events.map((e) => e.index)).to.deep.equal([0, 1]);
    expect(pairOps(events)[0]).to.include({ process: 0, f: 'write', key: 'x', value: 1, invokeTime: 1, completeTime: 2, status: 'ok' });
  });

  it('rejects a malformed line, naming its line number', () => {
    const good = '{"type":"invoke","process":0,"f":"read","key":"x","time":1}';
    expect(() => parseHistory(`${good}\n{"type":"ok", "process":`)).to.throw(/line 2/);
    expect(() => parseHistory(`${good}\n${good}\n{"type":"bogus","process":0,"f":"read","time":3}`)).to.throw(/line 3.*type/);
    expect(() => parseHistory(`{"type":"ok","process":"a","f":"read","time":3}`)).to.throw(/line 1.*process/);
  });

  it('rejects time going backwards', () => {
    const text = '{"type":"invoke","process":0,"f":"read","time":5}\n{"type":"ok","process":0,"f":"read","value":null,"time":4}';
    expect(() => parseHistory(text)).to.throw(/line 2.*time 4/);
  });

  it('pairOps rejects a completion without an invoke', () => {
    expect(() => pairOps(h().ok(1, 'read', 'x', 1).events)).to.throw(/no matching invoke/);
  });

  it('pairOps rejects two invokes in a row for one process', () => {
    expect(() => pairOps(h().invoke(1, 'read', 'x').invoke(1, 'write', 'x', 2).events)).to.throw(/still outstanding/);
  });

  it('pairOps rejects an invoke by a process after one of its ops ended info (Jepsen: that process crashed)', () => {
    const reused = h().invoke(1, 'write', 'x', 1).info(1, 'write', 'x', 1).invoke(1, 'read', 'x').ok(1, 'read', 'x', 1).events;
    expect(() => pairOps(reused)).to.throw(/process 1 invoked read after its op ended info \(event 1\)/);
    // The same client continuing under a new process id is well formed.
    const renumbered = h().invoke(1, 'write', 'x', 1).info(1, 'write', 'x', 1).invoke(9, 'read', 'x').ok(9, 'read', 'x', 1).events;
    expect(pairOps(renumbered).map((op) => [op.process, op.status])).to.deep.equal([
      [1, 'info'],
      [9, 'ok'],
    ]);
  });

  it('pairOps turns an unfinished invoke into info with completeTime Infinity', () => {
    const [op] = pairOps(h().invoke(3, 'write', 'x', 9).events);
    expect(op).to.include({ status: 'info', completeTime: Infinity, value: 9 });
  });
});

describe('linearizability checker: valid histories', () => {
  it('accepts sequential writes and reads', () => {
    const r = checkRegister(h().read(0, 'x', null).write(0, 'x', 1).read(1, 'x', 1).write(1, 'x', 2).read(0, 'x', 2).events);
    expect(r.valid).to.equal(true);
    expect(r.keys[0]).to.include({ key: 'x', valid: true, ops: 5 });
  });

  for (const seen of [1, 2]) {
    it(`accepts a read concurrent with a write that sees the ${seen === 1 ? 'old' : 'new'} value`, () => {
      const b = h().write(0, 'x', 1).invoke(1, 'write', 'x', 2).invoke(2, 'read', 'x').ok(2, 'read', 'x', seen).ok(1, 'write', 'x', 2);
      expect(checkRegister(b.events).valid).to.equal(true);
    });
  }

  it('accepts a chain of successful cas ops', () => {
    const b = h().write(0, 'x', 0).cas(1, 'x', 0, 1).cas(2, 'x', 1, 2).cas(0, 'x', 2, 3).read(1, 'x', 3);
    expect(checkRegister(b.events).valid).to.equal(true);
  });

  it('accepts an info write that took effect', () => {
    const b = h().invoke(0, 'write', 'x', 1).info(0, 'write', 'x', 1).read(1, 'x', 1);
    expect(checkRegister(b.events).valid).to.equal(true);
  });

  it('accepts an info write that never took effect', () => {
    const b = h().invoke(0, 'write', 'x', 1).info(0, 'write', 'x', 1).read(1, 'x', null);
    expect(checkRegister(b.events).valid).to.equal(true);
  });

  it('accepts an info write that took effect long after its invoke', () => {
    const b = h().invoke(0, 'write', 'x', 1).info(0, 'write', 'x', 1).read(1, 'x', null).read(1, 'x', 1).read(2, 'x', 1);
    expect(checkRegister(b.events).valid).to.equal(true);
  });

  it('rejects an info write that would have to take effect twice', () => {
    const b = h().invoke(0, 'write', 'x', 1).info(0, 'write', 'x', 1).read(1, 'x', 1).read(1, 'x', null);
    expect(checkRegister(b.events).valid).to.equal(false);
  });

  it('accepts an info cas that took effect, but not one that took effect and was undone', () => {
    const took = h().write(0, 'x', 1).invoke(1, 'cas', 'x', [1, 2]).info(1, 'cas', 'x', [1, 2]).read(2, 'x', 2);
    expect(checkRegister(took.events).valid).to.equal(true);
    const undone = h().write(0, 'x', 1).invoke(1, 'cas', 'x', [1, 2]).info(1, 'cas', 'x', [1, 2]).read(2, 'x', 2).read(2, 'x', 1);
    const r = checkRegister(undone.events);
    expect(r.valid).to.equal(false);
    expect(r.keys[0]!.message).to.contain('read of 1 by process 2');
  });

  it('ignores failed ops, including condition-failed cas', () => {
    const b = h()
      .invoke(0, 'write', 'x', 5)
      .fail(0, 'write', 'x', 5)
      .invoke(1, 'cas', 'x', [null, 7])
      .fail(1, 'cas', 'x', [null, 7], 'condition-failed')
      .invoke(2, 'read', 'x')
      .fail(2, 'read', 'x')
      .read(2, 'x', null);
    const r = checkRegister(b.events);
    expect(r.valid).to.equal(true);
    expect(r.keys[0]!.ops).to.equal(1);
  });

  it('ignores info reads', () => {
    const b = h().write(0, 'x', 1).invoke(1, 'read', 'x').info(1, 'read', 'x').read(2, 'x', 1);
    expect(checkRegister(b.events).valid).to.equal(true);
  });

  it('checks many keys independently', () => {
    const b = h();
    for (let k = 0; k < 20; k++) b.write(k % 3, `k${k}`, k).read((k + 1) % 3, `k${k}`, k);
    const r = checkRegister(b.events);
    expect(r.valid).to.equal(true);
    expect(r.keys).to.have.length(20);
    expect(r.invalidKeys).to.deep.equal([]);
  });

  it('accepts generated linearizable histories with info and failed ops', function () {
    this.timeout(60_000);
    for (let seed = 1; seed <= 20; seed++) {
      const events = simulate(seed, { processes: 5, ops: 400, keys: 3, infoRate: 0.05 });
      const r = checkRegister(events);
      expect(r.valid, `seed ${seed}: ${r.keys.map((k) => k.message).join(' / ')}`).to.equal(true);
    }
  });

  it('handles a long history on one key quickly', function () {
    this.timeout(60_000);
    const events = simulate(99, { processes: 8, ops: 5000, keys: 1, infoRate: 0.01 });
    const started = Date.now();
    expect(checkRegister(events).valid).to.equal(true);
    expect(Date.now() - started).to.be.below(30_000);
  });
});

describe('linearizability checker: violations', () => {
  it('flags a stale read after a newer write completed', () => {
    const r = checkRegister(h().write(0, 'x', 1).write(1, 'x', 2).read(2, 'x', 1).events);
    expect(r.valid).to.equal(false);
    expect(r.invalidKeys).to.deep.equal(['x']);
    const msg = r.keys[0]!.message!;
    expect(msg).to.match(/read of 1 by process 2 at t=5\.\.6 cannot be linearized/);
    expect(msg).to.contain('the register held 2');
    expect(msg).to.contain('written by process 1');
    expect(msg).to.contain('completed before the read began');
  });

  it('flags a lost write: a later read sees the value from before it', () => {
    const r = checkRegister(h().write(0, 'y', 1).write(0, 'x', 3).read(1, 'x', null).events);
    expect(r.valid).to.equal(false);
    expect(r.invalidKeys).to.deep.equal(['x']);
    expect(r.keys.find((k) => k.key === 'y')!.valid).to.equal(true);
    const msg = r.keys.find((k) => k.key === 'x')!.message!;
    expect(msg).to.contain('read of null by process 1');
    expect(msg).to.contain('the register held 3');
  });

  it('flags a cas that succeeded against a stale value', () => {
    const r = checkRegister(h().write(0, 'x', 1).write(1, 'x', 2).cas(2, 'x', 1, 3).events);
    expect(r.valid).to.equal(false);
    expect(r.invalidKeys).to.deep.equal(['x']);
    const msg = r.keys[0]!.message!;
    expect(msg).to.contain('cas from 1 to 3 by process 2');
    expect(msg).to.contain('the register held 2');
  });

  it('flags a read-your-write violation within one process', () => {
    const r = checkRegister(h().write(0, 'x', 1).write(0, 'x', 2).read(0, 'x', 1).events);
    expect(r.valid).to.equal(false);
    const msg = r.keys[0]!.message!;
    expect(msg).to.contain('read of 1 by process 0');
    expect(msg).to.contain('the register held 2 (written by process 0');
  });

  it('mentions every state the register could have held when writes were concurrent', () => {
    const b = h().invoke(0, 'write', 'x', 1).invoke(1, 'write', 'x', 2).ok(0, 'write', 'x', 1).ok(1, 'write', 'x', 2).read(2, 'x', 3);
    const r = checkRegister(b.events);
    expect(r.valid).to.equal(false);
    expect(r.keys[0]!.message).to.match(/could only have held one of: .*1 .*2 /);
    expect(r.keys[0]!.message).to.contain('no op ever wrote 3');
  });

  it('shrinks a stale read buried among 50 unrelated ops to a tiny sub-history', () => {
    const b = h();
    for (let i = 0; i < 12; i++) b.write(3, 'x', 100 + i).read(4, 'x', 100 + i);
    b.write(0, 'x', 1).write(1, 'x', 2).read(2, 'x', 1);
    for (let i = 12; i < 25; i++) b.write(3, 'x', 100 + i).read(4, 'x', 100 + i);
    const r = checkRegister(b.events);
    expect(r.valid).to.equal(false);
    const key = r.keys[0]!;
    expect(key.ops).to.equal(53);
    expect(key.failingOps!.length).to.be.at.most(4);
    expect(key.failingOps!.some((op) => op.f === 'read' && op.value === 1 && op.process === 2)).to.equal(true);
    expect(checkRegister(toEvents(key.failingOps!)).valid).to.equal(false);
  });

  it('detects a corrupted read in a generated history', () => {
    const events = simulate(7, { processes: 4, ops: 300, keys: 1, infoRate: 0 });
    const okReads = events.filter((e) => e.type === 'ok' && e.f === 'read');
    okReads[Math.floor(okReads.length / 2)]!.value = 'never-written';
    const r = checkRegister(events);
    expect(r.valid).to.equal(false);
    expect(r.keys[0]!.message).to.contain('read of "never-written"');
    expect(r.keys[0]!.failingOps).to.have.length(1);
  });
});

describe('linearizability checker: agreement with a brute-force reference', () => {
  it('gives the same verdict on 5000 random small histories, and failingOps still fail', () => {
    const rand = prng(2024);
    let invalid = 0;
    for (let n = 0; n < 5000; n++) {
      const events = randomSmallHistory(rand, 4, 3 + Math.floor(rand() * 6));
      const expected = bruteForceLinearizable(events);
      const r = checkRegister(events);
      expect(r.valid, `history #${n}: ${JSON.stringify(events)}`).to.equal(expected);
      if (!expected) {
        invalid++;
        expect(bruteForceLinearizable(toEvents(r.keys[0]!.failingOps!)), `failingOps of #${n} must still fail`).to.equal(false);
      }
    }
    expect(invalid).to.be.above(100);
  });
});

describe('linearizability checker: effort bound', () => {
  it("returns 'unknown' when maxSteps is exceeded", () => {
    const events = simulate(3, { processes: 20, ops: 400, keys: 1, infoRate: 0.1 });
    const r = checkRegister(events, { maxSteps: 10 });
    expect(r.valid).to.equal('unknown');
    expect(r.unknownKeys).to.deep.equal(['k0']);
    expect(r.keys[0]!.message).to.match(/gave up after 10 search steps/);
  });

  it('reports invalid over unknown when keys disagree', () => {
    const b = h().write(0, 'bad', 1).write(1, 'bad', 2).read(2, 'bad', 1);
    for (let p = 0; p < 12; p++) b.invoke(p, 'write', 'busy', p);
    for (let p = 0; p < 12; p++) b.ok(p, 'write', 'busy', p);
    const r = checkRegister(b.events, { maxSteps: 5 });
    expect(r.valid).to.equal(false);
    expect(r.unknownKeys).to.deep.equal(['busy']);
  });
});

describe('set checker', () => {
  it('accepts a history where every acknowledged add is read', () => {
    const r = checkSet(h().add(0, 1).add(1, 2).add(0, 3, 'fail').finalRead(2, [1, 2]).finalRead(3, [2, 1]).events);
    expect(r).to.include({ valid: true, attempted: 3, acknowledged: 2, finalReads: 2 });
  });

  it('reports a lost acknowledged insert', () => {
    const r = checkSet(h().add(0, 1).add(1, 2).finalRead(2, [1, 2]).finalRead(3, [1]).events);
    expect(r.valid).to.equal(false);
    expect(r.lost).to.deep.equal([2]);
    expect(r.message).to.contain('lost');
  });

  it('counts an info insert that is present as recovered', () => {
    const r = checkSet(h().add(0, 1).add(1, { id: 2 }, 'info').add(2, 3, 'info').finalRead(3, [1, { id: 2 }]).events);
    expect(r.valid).to.equal(true);
    expect(r.recovered).to.deep.equal([{ id: 2 }]);
    expect(r.lost).to.deep.equal([]);
  });

  it('reports an element that was never attempted', () => {
    const r = checkSet(h().add(0, 1).finalRead(1, [1, 42]).events);
    expect(r.valid).to.equal(false);
    expect(r.unexpected).to.deep.equal([42]);
  });

  it('reports an element whose add was reported failed but is present', () => {
    const r = checkSet(h().add(0, 1).add(1, 2, 'fail').finalRead(2, [1, 2]).events);
    expect(r.valid).to.equal(false);
    expect(r.failedPresent).to.deep.equal([2]);
    expect(r.message).to.contain('reported failed are present');
  });

  it('names what the client was told for an element whose add failed but is present (the failure that was not one)', () => {
    const events = h().add(0, 1).add(1, 2, 'fail').finalRead(2, [1, 2]).events;
    const failedAdd = events.find((e) => e.type === 'fail')!;
    failedAdd.error = 'region 7 is no longer hosted on n2';
    const r = checkSet(events);
    expect(r.failedPresentAdds).to.deep.equal([`fail p1 add 2 at ${failedAdd.time}: region 7 is no longer hosted on n2`]);
    expect(r.message).to.contain('(fail p1 add 2 at');
  });

  it('does not count a failed add of an element that another add acknowledged or left unknown', () => {
    const r = checkSet(h().add(0, 1).add(1, 1, 'fail').add(2, 3, 'info').add(3, 3, 'fail').finalRead(4, [1, 3]).events);
    expect(r.valid).to.equal(true);
    expect(r.failedPresent).to.deep.equal([]);
  });

  it('is invalid without an ok final read', () => {
    const r = checkSet(h().add(0, 1).invoke(1, 'final-read').fail(1, 'final-read').events);
    expect(r.valid).to.equal(false);
    expect(r.finalReads).to.equal(0);
    expect(r.message).to.match(/no ok final-read/);
  });
});

/** Turns ops back into an event history (invokes and completions ordered by time). */
function toEvents(ops: readonly { process: number; f: OpF; key?: string; value: unknown; invokeTime: number; completeTime: number; status: 'ok' | 'fail' | 'info' }[]): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const op of ops) {
    events.push({ type: 'invoke', process: op.process, f: op.f, key: op.key, value: op.f === 'read' ? undefined : op.value, time: op.invokeTime });
    // An info op's completion time is not kept (it counts as Infinity), so emit it right after the invoke.
    const end = Number.isFinite(op.completeTime) ? op.completeTime : op.invokeTime + 0.5;
    events.push({ type: op.status, process: op.process, f: op.f, key: op.key, value: op.value, time: end });
  }
  return events.sort((a, b) => a.time - b.time);
}

describe('regiondb check (the CLI over a history file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-check-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, events: HistoryEvent[]) => {
    const path = join(dir, name);
    writeFileSync(path, events.map((e) => JSON.stringify(e)).join('\n'));
    return path;
  };
  const quietly = <T>(fn: () => T): T => {
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      return fn();
    } finally {
      process.stdout.write = write;
    }
  };

  it('exits 0 on a linearizable register history and 1 on a stale read', () => {
    const good = h().invoke(0, 'write', 'x', 1).ok(0, 'write', 'x', 1).invoke(1, 'read', 'x').ok(1, 'read', 'x', 1).events;
    const stale = h().invoke(0, 'write', 'x', 1).ok(0, 'write', 'x', 1).invoke(0, 'write', 'x', 2).ok(0, 'write', 'x', 2).invoke(1, 'read', 'x').ok(1, 'read', 'x', 1).events;
    expect(quietly(() => runCheck('register', file('good.jsonl', good), undefined))).to.equal(0);
    expect(quietly(() => runCheck('register', file('stale.jsonl', stale), undefined))).to.equal(1);
  });

  it('exits 1 on a set history with a lost acknowledged insert', () => {
    expect(quietly(() => runCheck('set', file('lost.jsonl', h().add(0, 1).add(0, 2).finalRead(1, [1]).events), undefined))).to.equal(1);
  });
});
