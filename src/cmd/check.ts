// `regiondb check --model register|set <history.jsonl>`: checks any history in the documented
// format (docs/architecture.md, "Jepsen history format") — ours or another system's — and exits
// non-zero on a violation (1) or an undecided result (3).
import { readFileSync } from 'node:fs';
import { parseHistory } from '../check/history.js';
import { checkRegister } from '../check/linearizability.js';
import { checkSet } from '../check/set.js';

export function runCheck(model: string, file: string, maxSteps: number | undefined): number {
  const events = parseHistory(readFileSync(file, 'utf8'));
  if (model === 'set') {
    const r = checkSet(events.filter((e) => e.f === 'add' || e.f === 'final-read'));
    process.stdout.write(`${r.valid ? 'VALID' : 'INVALID'}: ${r.message}\n`);
    if (r.lost.length) process.stdout.write(`  lost (acknowledged, missing from a final read): ${JSON.stringify(r.lost.slice(0, 50))}${r.lost.length > 50 ? ' …' : ''}\n`);
    if (r.unexpected.length) process.stdout.write(`  unexpected (never attempted): ${JSON.stringify(r.unexpected.slice(0, 50))}\n`);
    if (r.failedPresent.length) process.stdout.write(`  failed but present (an add reported failed took effect): ${JSON.stringify(r.failedPresent.slice(0, 50))}\n`);
    return r.valid ? 0 : 1;
  }
  if (model !== 'register') throw new Error(`--model must be register or set, got ${JSON.stringify(model)}`);
  const r = checkRegister(
    events.filter((e) => e.f === 'read' || e.f === 'write' || e.f === 'cas'),
    maxSteps === undefined ? {} : { maxSteps },
  );
  const verdict = r.valid === true ? 'VALID' : r.valid === false ? 'INVALID' : 'UNKNOWN';
  process.stdout.write(`${verdict}: ${r.keys.length} key(s), ${r.invalidKeys.length} not linearizable, ${r.unknownKeys.length} undecided\n`);
  for (const k of r.keys.filter((x) => x.valid !== true)) {
    process.stdout.write(`  ${k.message}\n`);
    for (const op of k.failingOps ?? []) {
      process.stdout.write(`    process ${op.process} ${op.f} ${JSON.stringify(op.value)} [${op.invokeTime} .. ${op.completeTime}] ${op.status}\n`);
    }
  }
  return r.valid === true ? 0 : r.valid === false ? 1 : 3;
}
