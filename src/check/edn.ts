// Our JSONL history (docs/architecture.md, "Jepsen history format") in the EDN that Jepsen's own
// checkers read, so a run can be checked by tools that are not ours: Knossos (linearizable
// cas-register, one register per key as `jepsen.independent` tuples `[key value]`) and the set
// checker (adds, then a final `:read` whose value is the set read). One map per line, in history
// order, as Jepsen writes `history.edn`:
//
//   {:index 2, :type :invoke, :process 2, :f :write, :value ["k6" 2000001], :time 10018783229}
//
// `:time` is integer nanoseconds (ours is fractional milliseconds). A register read's invoke
// carries `[key nil]`, its `ok` the value read; a cas carries `[key [expected new]]`. Each model
// is exported alone: a Knossos register model would reject the set's ops and the reverse.
import { type HistoryEvent, pairOps } from './history.js';

export type EdnModel = 'register' | 'set';

/** An EDN literal for a JSON value: nil, booleans, integers/floats, strings, vectors. */
function ednValue(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`cannot write ${v} as EDN`);
    return String(v);
  }
  if (typeof v === 'string') return JSON.stringify(v); // EDN strings use the same escapes for what JSON emits
  if (Array.isArray(v)) return `[${v.map(ednValue).join(' ')}]`;
  throw new Error(`cannot write ${JSON.stringify(v)} as EDN`);
}

function opMap(e: HistoryEvent, f: string, value: string): string {
  const parts = [`:index ${e.index ?? 0}`, `:type :${e.type}`, `:process ${e.process}`, `:f :${f}`, `:value ${value}`, `:time ${Math.round(e.time * 1e6)}`];
  if (e.error !== undefined) parts.push(`:error ${ednValue(e.error)}`);
  return `{${parts.join(', ')}}`;
}

/**
 * The events of one model as Jepsen EDN, one op per line (re-indexed from 0 in order). Refuses a
 * history that is not well formed for Jepsen (see pairOps): Knossos would misread it.
 */
export function toJepsenEdn(events: readonly HistoryEvent[], model: EdnModel): string {
  pairOps(events); // the same well-formedness Jepsen's tools assume (one op at a time per process, none after an info), or throws
  const lines: string[] = [];
  for (const e of events) {
    if (model === 'register') {
      if (e.f !== 'read' && e.f !== 'write' && e.f !== 'cas') continue;
      if (e.key === undefined) throw new Error(`history event ${e.index}: a register ${e.f} without a key`);
      const value = e.f === 'read' && e.type !== 'ok' ? null : e.value;
      lines.push(opMap({ ...e, index: lines.length }, e.f, `[${ednValue(e.key)} ${ednValue(value)}]`));
    } else {
      if (e.f === 'add') lines.push(opMap({ ...e, index: lines.length }, 'add', ednValue(e.value)));
      else if (e.f === 'final-read') {
        const elements = e.type === 'ok' ? (e.value as unknown[]) : undefined;
        if (elements !== undefined && !Array.isArray(elements)) throw new Error(`history event ${e.index}: a final-read whose value is not an array`);
        lines.push(opMap({ ...e, index: lines.length }, 'read', elements === undefined ? 'nil' : `#{${[...new Set(elements)].map(ednValue).join(' ')}}`));
      }
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
