// The checker of a cluster-consistent restore (test/support/causal-cut.ts) can fail: each rule is
// shown catching a hand-built inconsistent restore, and passing a consistent one.
import { expect } from 'chai';
import { type Outcome, type Restored, type WriterHistory, checkCausalCut } from '../support/causal-cut.js';

/** Writer `w` wrote A_i at 10·i ms (acked 2 ms later) and B_i right after (sent 10·i+3, acked 10·i+5), i < n. */
function history(writer: string, n: number, offsetMs = 0): WriterHistory {
  const a: Outcome[] = [];
  const b: Outcome[] = [];
  for (let i = 0; i < n; i++) {
    a.push({ sentMs: offsetMs + 10 * i, ackedMs: offsetMs + 10 * i + 2 });
    b.push({ sentMs: offsetMs + 10 * i + 3, ackedMs: offsetMs + 10 * i + 5 });
  }
  return { writer, tables: { a: a, b: b } };
}

const range = (n: number) => new Set(Array.from({ length: n }, (_, i) => i));
const restore = (a: Record<string, Set<number>>, b: Record<string, Set<number>>): Restored => ({ a: new Map(Object.entries(a)), b: new Map(Object.entries(b)) });

describe('causal cut checker (test/support/causal-cut.ts)', () => {
  const h = [history('w0', 10), history('w1', 10, 1)];

  it('passes a consistent cut: A up to 6 and B up to 5 of each writer', () => {
    const r = checkCausalCut(h, restore({ w0: range(7), w1: range(7) }, { w0: range(6), w1: range(6) }));
    expect(r.violations).to.deep.equal([]);
    expect(r.violationCount).to.equal(0);
    expect(r.highest['a']).to.deep.equal({ w0: 6, w1: 6 });
    expect(r.restoredWrites).to.equal(26);
  });

  it('C2 catches B_i restored without its A_i (a per-region cut taken at different moments)', () => {
    const r = checkCausalCut(h, restore({ w0: range(4), w1: range(4) }, { w0: range(6), w1: range(3) }));
    expect(r.violations.length).to.be.greaterThan(0);
    expect(r.violations[0]).to.match(/^b\/w0 seq 4 .* is restored, but a\/w0 seq 4, acknowledged before it was sent/);
  });

  it('C2 catches a cross-writer violation that no same-writer pair shows', () => {
    // w1's B_5 was sent at 54 ms, after w0's A_5 was acknowledged at 52 ms; w0 has only A up to 4.
    const r = checkCausalCut(h, restore({ w0: range(5), w1: range(6) }, { w0: range(5), w1: range(6) }));
    expect(r.violations.some((v) => v.startsWith('b/w1 seq 5') && v.includes('a/w0 seq 5'))).to.equal(true);
    expect(r.violations.some((v) => v.startsWith('b/w0')), 'w0 is consistent with itself').to.equal(false);
  });

  it('C1 catches a hole (an acknowledged write missing below a restored one) and a row never sent', () => {
    const holed = range(5);
    holed.delete(2);
    const r = checkCausalCut(h, restore({ w0: holed, w1: range(5) }, { w0: new Set([0, 1]), w1: range(1) }));
    expect(r.violations).to.include('a/w0: acknowledged seq 2 missing below restored seq 4 (not a prefix)');
    const ghost = checkCausalCut(h, restore({ w0: new Set([0, 42]), w1: range(1) }, { w0: range(0), w1: range(0) }));
    expect(ghost.violations).to.include('a/w0: seq 42 restored but never sent');
  });

  it('an unknown outcome may be missing or present without a violation', () => {
    const unknown = history('w0', 6);
    (unknown.tables['a'] as Outcome[])[5] = { sentMs: 50, ackedMs: undefined };
    (unknown.tables['b'] as Outcome[]).length = 5; // B_5 never sent: A_5 was not acknowledged
    for (const a of [range(5), range(6)]) expect(checkCausalCut([unknown], restore({ w0: a }, { w0: range(5) })).violations).to.deep.equal([]);
  });
});
