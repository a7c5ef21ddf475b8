// Summarises scripts/mocha-timing-reporter.cjs's output: the slowest files (wall time of their
// top-level suites), and within each, its slowest tests and hooks.
//   node scripts/mocha-timing-summary.mjs <timing.jsonl> [files=20] [per-file=4]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

const [file, nFiles = '20', perFile = '4'] = process.argv.slice(2);
if (!file) throw new Error('usage: node scripts/mocha-timing-summary.mjs <timing.jsonl> [files] [per-file]');
const rows = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const files = new Map();
for (const r of rows) {
  const f = relative(process.cwd(), r.file);
  const e = files.get(f) ?? { ms: 0, items: [], tests: 0 };
  if (r.kind === 'suite') e.ms += r.ms;
  else e.items.push(r);
  if (r.kind === 'test') e.tests++;
  files.set(f, e);
}
const total = [...files.values()].reduce((a, e) => a + e.ms, 0);
console.log(`${files.size} files, ${(total / 1000).toFixed(1)} s in top-level suites`);
for (const [f, e] of [...files].sort((a, b) => b[1].ms - a[1].ms).slice(0, Number(nFiles))) {
  console.log(`${(e.ms / 1000).toFixed(1).padStart(7)} s  ${f} (${e.tests} tests)`);
  for (const r of e.items.sort((a, b) => b.ms - a.ms).slice(0, Number(perFile))) {
    console.log(`${''.padStart(12)}${(r.ms / 1000).toFixed(1).padStart(6)} s ${r.kind} ${r.title.slice(0, 110)}`);
  }
}
