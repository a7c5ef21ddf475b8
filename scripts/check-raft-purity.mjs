// Enforces that src/raft is a pure core: no node:* imports, no Date, no Math.random, no timers,
// no process/global I/O. Run by `make lint` and by test/raft/purity.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const forbidden = [
  [/from\s+['"]node:/, 'imports a node:* module'],
  [/from\s+['"](fs|path|os|net|http|http2|crypto|child_process|timers|worker_threads)['"]/, 'imports a node builtin'],
  [/\bimport\s*\(/, 'uses a dynamic import'],
  [/\brequire\s*\(/, 'uses require'],
  [/\bDate\b/, 'reads Date'],
  [/\bMath\.random\b/, 'uses Math.random'],
  [/\b(setTimeout|setInterval|setImmediate|queueMicrotask)\b/, 'uses a timer'],
  [/\bperformance\.now\b/, 'reads performance.now'],
  [/\bprocess\./, 'touches process'],
  [/\bconsole\./, 'logs to console'],
];

export function findPurityViolations(dir) {
  const violations = [];
  for (const name of readdirSync(dir, { recursive: true })) {
    const file = join(dir, String(name));
    if (!file.endsWith('.ts')) continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      for (const [pattern, why] of forbidden) {
        if (pattern.test(code)) violations.push(`${file}:${i + 1}: ${why}: ${line.trim()}`);
      }
    });
  }
  return violations;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const violations = findPurityViolations(process.argv[2] ?? 'src/raft');
  for (const v of violations) console.error(v);
  if (violations.length > 0) process.exit(1);
  console.log('src/raft is pure');
}
