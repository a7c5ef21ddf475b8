// The cost of an assertion that holds, by how its message is given (docs/performance.md, round 7):
// a template literal built on every call (`assert(c, \`…${x}…\`)`, as the apply and raft paths had
// them), the same template behind a function (`assert(c, () => \`…${x}…\`)`, built only when the
// assertion fails), and a constant string (the floor). Two messages: one with two integers (the
// dedup record's `remember`, raft log bounds) and one with a region id string and two integers
// (region-server's apply). ns per call, process CPU time, the variants alternating each round in
// an order flipped every round, medians and ranges over ASSERT_BENCH_ROUNDS (default 15).
//   node --import tsx bench/assert-bench.ts
import { assert } from '../src/common/assert.js';

const ROUNDS = Number(process.env['ASSERT_BENCH_ROUNDS'] ?? 15);
const CALLS = 2_000_000;
const REGION_ID = 'r-000000000042-000017';

function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

// Each variant does the same work around the assertion (a running sum the engine cannot drop).
const variants: Record<string, (n: number) => number> = {
  'two ints, template': (n) => {
    let s = 0;
    for (let i = 1; i <= n; i++) {
      const below = i >> 1;
      assert(i >= below, `request id ${i} below the known window ${below}`);
      s += below;
    }
    return s;
  },
  'two ints, lazy': (n) => {
    let s = 0;
    for (let i = 1; i <= n; i++) {
      const below = i >> 1;
      assert(i >= below, () => `request id ${i} below the known window ${below}`);
      s += below;
    }
    return s;
  },
  'region + two ints, template': (n) => {
    let s = 0;
    for (let i = 1; i <= n; i++) {
      const applied = i - 1;
      assert(i === applied + 1, `region ${REGION_ID}: apply ${i} after ${applied}`);
      s += applied;
    }
    return s;
  },
  'region + two ints, lazy': (n) => {
    let s = 0;
    for (let i = 1; i <= n; i++) {
      const applied = i - 1;
      assert(i === applied + 1, () => `region ${REGION_ID}: apply ${i} after ${applied}`);
      s += applied;
    }
    return s;
  },
  'constant string': (n) => {
    let s = 0;
    for (let i = 1; i <= n; i++) {
      const below = i >> 1;
      assert(i >= below, 'request id below the known window');
      s += below;
    }
    return s;
  },
};

const names = Object.keys(variants);
const samples = new Map<string, number[]>(names.map((n) => [n, []]));
let sink = 0;
for (const name of names) sink += variants[name]!(CALLS / 10); // warm every variant first
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? names : [...names].reverse();
  for (const name of order) {
    const t0 = cpuNs();
    sink += variants[name]!(CALLS);
    samples.get(name)!.push((cpuNs() - t0) / CALLS);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`ns per call (median, min–max over ${ROUNDS} rounds of ${CALLS.toLocaleString()}); sink ${sink % 7}`);
for (const name of names) {
  const xs = samples.get(name)!;
  console.log(`  ${name.padEnd(28)} ${median(xs).toFixed(1).padStart(6)}   ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`);
}
