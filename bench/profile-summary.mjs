// Summarizes a V8 .cpuprofile (bench/cpu-profile.cjs writes them): where the samples' time went,
// as self time by function and by file, and inclusive time by function (every function on the
// stack of a sample counts it once). Usage:
//   node bench/profile-summary.mjs <file.cpuprofile> [top=25] [--inclusive]
// Times come from the profile's timeDeltas (µs). "(idle)" is the event loop waiting: busy time is
// everything else. Files are shown relative to the repository (dist/src/… and src/… alike).
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
const top = Number(args.find((a) => /^\d+$/.test(a)) ?? 25);
const inclusive = args.includes('--inclusive');
if (!file) {
  process.stderr.write('usage: node bench/profile-summary.mjs <file.cpuprofile> [top] [--inclusive]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const shortUrl = (url) => {
  if (!url) return '(native)';
  const s = url.replace(/^file:\/\//, '');
  const m = s.match(/(node_modules\/(?:@[^/]+\/)?[^/]+)|((?:dist\/)?(?:src|bench|test)\/.*)$/);
  if (m) return m[1] ?? m[2];
  return s.startsWith('node:') ? s : s.split('/').slice(-2).join('/');
};
const label = (n) => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

const selfByFn = new Map();
const selfByFile = new Map();
const inclByFn = new Map();
let total = 0;
let idle = 0;
const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  const node = byId.get(profile.samples[i]);
  total += dt;
  if (node.callFrame.functionName === '(idle)') {
    idle += dt;
    continue;
  }
  add(selfByFn, label(node), dt);
  const fileKey = node.callFrame.url ? shortUrl(node.callFrame.url) : node.callFrame.functionName;
  add(selfByFile, fileKey, dt);
  if (inclusive) {
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id));
      if (seen.has(l)) continue;
      seen.add(l);
      add(inclByFn, l, dt);
    }
  }
}
const busy = total - idle;
const ms = (us) => (us / 1000).toFixed(0).padStart(7);
const pct = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
process.stdout.write(`${file}\nwindow ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(2)} s (${((100 * busy) / total).toFixed(1)}% of the window)\n`);
const show = (title, m) => {
  process.stdout.write(`\n${title} (ms, % of busy)\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${ms(v)} ${pct(v)}  ${k}\n`);
};
show('self time by file', selfByFile);
show('self time by function', selfByFn);
if (inclusive) show('inclusive time by function', inclByFn);
