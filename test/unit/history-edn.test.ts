// Our JSONL history as Jepsen EDN (src/check/edn.ts), for checkers that are not ours: the exact
// text for each kind of op, and that a real run's history converts whole.
import { expect } from 'chai';
import { toJepsenEdn } from '../../src/check/edn.js';
import { type HistoryEvent, parseHistory } from '../../src/check/history.js';

const history: HistoryEvent[] = parseHistory(
  [
    { type: 'invoke', process: 0, f: 'write', key: 'k1', value: 3, time: 1.5 },
    { type: 'invoke', process: 1, f: 'read', key: 'k1', time: 2 },
    { type: 'invoke', process: 2, f: 'add', value: 7, time: 2.25 },
    { type: 'ok', process: 0, f: 'write', key: 'k1', value: 3, time: 3 },
    { type: 'ok', process: 1, f: 'read', key: 'k1', value: 3, time: 4 },
    { type: 'info', process: 2, f: 'add', value: 7, time: 5, error: 'DEADLINE_EXCEEDED: "outcome unknown"' },
    { type: 'invoke', process: 3, f: 'cas', key: 'k2', value: [null, 4], time: 6 },
    { type: 'fail', process: 3, f: 'cas', key: 'k2', value: [null, 4], time: 7, error: 'precondition' },
    { type: 'invoke', process: 4, f: 'read', key: 'k2', time: 8 },
    { type: 'ok', process: 4, f: 'read', key: 'k2', value: null, time: 9 },
    { type: 'invoke', process: 5, f: 'final-read', time: 10 },
    { type: 'ok', process: 5, f: 'final-read', value: [7, 1, 7], time: 11 },
    { type: 'invoke', process: 6, f: 'final-read', time: 12 },
    { type: 'fail', process: 6, f: 'final-read', time: 13, error: 'unavailable' },
  ]
    .map((e) => JSON.stringify(e))
    .join('\n'),
);

describe('history export as Jepsen EDN (independent checkers)', () => {
  it('register ops: independent [key value] tuples, reads invoked with nil, integer nanoseconds, re-indexed', () => {
    expect(toJepsenEdn(history, 'register').split('\n')).to.deep.equal([
      '{:index 0, :type :invoke, :process 0, :f :write, :value ["k1" 3], :time 1500000}',
      '{:index 1, :type :invoke, :process 1, :f :read, :value ["k1" nil], :time 2000000}',
      '{:index 2, :type :ok, :process 0, :f :write, :value ["k1" 3], :time 3000000}',
      '{:index 3, :type :ok, :process 1, :f :read, :value ["k1" 3], :time 4000000}',
      '{:index 4, :type :invoke, :process 3, :f :cas, :value ["k2" [nil 4]], :time 6000000}',
      '{:index 5, :type :fail, :process 3, :f :cas, :value ["k2" [nil 4]], :time 7000000, :error "precondition"}',
      '{:index 6, :type :invoke, :process 4, :f :read, :value ["k2" nil], :time 8000000}',
      '{:index 7, :type :ok, :process 4, :f :read, :value ["k2" nil], :time 9000000}',
      '',
    ]);
  });

  it('set ops: adds, and the final read as a :read of an EDN set (a failed one reads nil)', () => {
    expect(toJepsenEdn(history, 'set').split('\n')).to.deep.equal([
      '{:index 0, :type :invoke, :process 2, :f :add, :value 7, :time 2250000}',
      '{:index 1, :type :info, :process 2, :f :add, :value 7, :time 5000000, :error "DEADLINE_EXCEEDED: \\"outcome unknown\\""}',
      '{:index 2, :type :invoke, :process 5, :f :read, :value nil, :time 10000000}',
      '{:index 3, :type :ok, :process 5, :f :read, :value #{7 1}, :time 11000000}',
      '{:index 4, :type :invoke, :process 6, :f :read, :value nil, :time 12000000}',
      '{:index 5, :type :fail, :process 6, :f :read, :value nil, :time 13000000, :error "unavailable"}',
      '',
    ]);
  });

  it('refuses a history Jepsen would misread: a process invoking again after its op ended info', () => {
    // Jepsen's rule: a process whose op ended :info has crashed and never invokes again (its
    // checkers pair invocations and completions by process); our harness gives the client a new id.
    const events = [
      { type: 'invoke', process: 2, f: 'write', key: 'k1', value: 1, time: 1 },
      { type: 'info', process: 2, f: 'write', key: 'k1', value: 1, time: 2, error: 'DEADLINE_EXCEEDED' },
      { type: 'invoke', process: 2, f: 'write', key: 'k1', value: 2, time: 3 },
      { type: 'ok', process: 2, f: 'write', key: 'k1', value: 2, time: 4 },
    ];
    const reused = parseHistory(events.map((e) => JSON.stringify(e)).join('\n'));
    expect(() => toJepsenEdn(reused, 'register')).to.throw(/process 2 invoked write after its op ended info/);
    const renumbered = parseHistory(events.map((e, i) => JSON.stringify(i >= 2 ? { ...e, process: 10 } : e)).join('\n'));
    expect(toJepsenEdn(renumbered, 'register').split('\n')[2]).to.equal('{:index 2, :type :invoke, :process 10, :f :write, :value ["k1" 2], :time 3000000}');
  });

  it('refuses what it cannot write rather than writing something else', () => {
    const bad = parseHistory(JSON.stringify({ type: 'invoke', process: 0, f: 'write', value: 1, time: 0 }));
    expect(() => toJepsenEdn(bad, 'register')).to.throw(/without a key/);
  });
});
