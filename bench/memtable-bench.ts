// Memtable put and flush-scan cost where a datanode pays it: make bench-ingest's keys (host tag of
// 5,000 values + increasing timestamp, bench/ingest-bench.ts) put into 4 memtables (4 regions)
// of MEMTABLE_BENCH_PREFILL entries each (default 25,000, about the bench's 4 MiB flush
// threshold), with MEMTABLE_BENCH_BALLAST_MB (default 300) of unrelated live objects on the heap
// allocated between the prefill's puts, so the memtables' objects sit scattered in a large heap
// and a pointer chase misses the cache as it does in a datanode (bench/apply-bench.ts runs in a
// small heap and underestimates put). Per round and variant: fresh memtables are prefilled,
// then MEMTABLE_BENCH_PUTS more puts (default 40,000, round-robin in 500-row batches over the 4
// memtables, new keys as ingest makes them) are timed, then each memtable is scanned once in
// full as a flush does (the first scan after the puts: for the map memtable, the sort; `first
// entry ms` is the CPU before the first entry, a synchronous stall of the flush).
// Reported: CPU ns (process.cpuUsage, GC helper threads included) per put and per scanned
// entry, and ms per flush-scan of one memtable; medians over MEMTABLE_BENCH_ROUNDS (default 7).
// Comparing two builds in one process: MEMTABLE_BENCH_BASE=<dir> names another checkout's root
// (e.g. `git -C /work/main archive main | tar -x -C /tmp/base`); its src/engine/memtable.ts is
// loaded beside this one's and the two alternate within every round (order flipped each round).
// Usage: node --max-old-space-size=4096 --import tsx bench/memtable-bench.ts
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { primaryKeyStringOfValues } from '../src/engine/key.js';
import type * as MemtableModule from '../src/engine/memtable.js';
import { INGEST_SCHEMA } from './ingest-schema.js';

type MemtableOf = typeof MemtableModule;

const ROUNDS = Number(process.env['MEMTABLE_BENCH_ROUNDS'] ?? 7);
const PREFILL = Number(process.env['MEMTABLE_BENCH_PREFILL'] ?? 25_000);
const PUTS = Number(process.env['MEMTABLE_BENCH_PUTS'] ?? 40_000);
const BALLAST_MB = Number(process.env['MEMTABLE_BENCH_BALLAST_MB'] ?? 300);
const MEMTABLES = 4;
const BATCH = 500;
const HOSTS = 5000;

interface Variant {
  readonly name: string;
  readonly module: MemtableOf;
}

async function load(name: string, root: string): Promise<Variant> {
  return { name, module: (await import(pathToFileURL(join(root, 'src/engine/memtable.ts')).href)) as MemtableOf };
}

const schema = INGEST_SCHEMA;

const NOTE = 'x'.repeat(32);

/** Row n of the ingest bench: its memtable (a region) and its key string. */
function row(n: number): { memtable: number; k: string; values: readonly [string, number, number, string] } {
  const host = n % HOSTS;
  const values = [`host-${host}`, 1_700_000_000_000 + n, (n % 1000) / 1000, NOTE] as const;
  return { memtable: host % MEMTABLES, k: primaryKeyStringOfValues(schema, values), values };
}

/** An entry of the variant's own KeyedEntry class (the memtable recognises its own). */
function entryOf(v: Variant, n: number): { memtable: number; entry: MemtableModule.MemEntry } {
  const r = row(n);
  return { memtable: r.memtable, entry: new v.module.KeyedEntry(r.k, r.values[1], n + 1, 'put', [r.values[0]], [r.values[2], r.values[3]]) };
}

/** Unrelated live objects: a linked structure of small objects and strings, like a datanode's other state. */
interface Ballast {
  id: number;
  label: string;
  next: Ballast | undefined;
}
const ballast: Ballast[] = [];
let ballastHead: Ballast | undefined;
/** About 100 bytes per object (header, fields, a short string). */
const BALLAST_OBJECTS = Math.floor((BALLAST_MB * 1024 * 1024) / 100);
function allocateBallast(count: number): void {
  for (let i = 0; i < count && ballast.length < BALLAST_OBJECTS; i++) {
    ballastHead = { id: ballast.length, label: `b${ballast.length}:${ballast.length * 31}`, next: ballastHead };
    ballast.push(ballastHead);
  }
}

function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface RoundResult {
  readonly putNs: number;
  readonly scanNsPerEntry: number;
  readonly scanMsPerMemtable: number;
  /** CPU before a scan's first entry (the map memtable's sort and merge): a synchronous stall of the flush. */
  readonly firstEntryMs: number;
  readonly keysHash: number;
}

function round(v: Variant): RoundResult {
  const memtables = Array.from({ length: MEMTABLES }, () => new v.module.Memtable());
  // Prefill: ballast objects allocated between the puts (until the ballast is complete, on the first round).
  const ballastPerPut = Math.ceil(BALLAST_OBJECTS / (PREFILL * MEMTABLES));
  for (let n = 0; n < PREFILL * MEMTABLES; n++) {
    const { memtable, entry } = entryOf(v, n);
    memtables[memtable]!.put(entry);
    allocateBallast(ballastPerPut);
  }
  // The timed puts, their entries made beforehand (what apply builds is not the memtable's cost).
  const batches: { memtable: number; entry: MemtableModule.MemEntry }[][] = [];
  for (let b = 0; b < PUTS / BATCH; b++) batches.push(Array.from({ length: BATCH }, (_, j) => entryOf(v, PREFILL * MEMTABLES + b * BATCH + j)));
  const t0 = cpuNs();
  for (const batch of batches) for (const { memtable, entry } of batch) memtables[memtable]!.put(entry);
  const putNs = (cpuNs() - t0) / PUTS;
  let entries = 0;
  let keysHash = 0;
  let firstNs = 0;
  const t1 = cpuNs();
  for (const m of memtables) {
    const it = m.scan();
    const t = cpuNs();
    let r = it.next();
    firstNs += cpuNs() - t;
    for (; !r.done; r = it.next()) {
      entries++;
      keysHash = (keysHash * 31 + r.value.version) | 0;
    }
  }
  const scanNs = cpuNs() - t1;
  return { putNs, scanNsPerEntry: scanNs / entries, scanMsPerMemtable: scanNs / MEMTABLES / 1e6, firstEntryMs: firstNs / MEMTABLES / 1e6, keysHash };
}

async function main(): Promise<void> {
  const variants: Variant[] = [];
  const base = process.env['MEMTABLE_BENCH_BASE'];
  if (base) variants.push(await load('base', base));
  variants.push(await load('this', join(import.meta.dirname, '..')));
  // Round 0: the ballast is built, the code warms up, and the variants must scan the same entries in the same order.
  const warm = variants.map((v) => round(v));
  for (const w of warm) if (w.keysHash !== warm[0]!.keysHash) throw new Error('the variants scan different entries');
  const samples = variants.map(() => ({ put: [] as number[], scan: [] as number[], scanMs: [] as number[], firstMs: [] as number[] }));
  for (let r = 0; r < ROUNDS; r++) {
    const order = variants.map((_, i) => i);
    if (r % 2 === 1) order.reverse();
    for (const i of order) {
      const res = round(variants[i]!);
      samples[i]!.put.push(res.putNs);
      samples[i]!.scan.push(res.scanNsPerEntry);
      samples[i]!.scanMs.push(res.scanMsPerMemtable);
      samples[i]!.firstMs.push(res.firstEntryMs);
    }
  }
  const heapMb = process.memoryUsage().heapUsed / 1024 / 1024;
  process.stdout.write(
    `memtable: ${MEMTABLES} memtables × ${PREFILL} prefilled entries, ${PUTS} timed puts, ${ballast.length} ballast objects (heap in use ${heapMb.toFixed(0)} MB, garbage included), medians of ${ROUNDS} rounds; node ${process.version}\n`,
  );
  process.stdout.write(['variant', 'put ns', 'flush-scan ns/entry', 'flush-scan ms/memtable', 'first entry ms'].join('\t') + '\n');
  variants.forEach((v, i) => {
    const s = samples[i]!;
    process.stdout.write([v.name, median(s.put).toFixed(0), median(s.scan).toFixed(0), median(s.scanMs).toFixed(2), median(s.firstMs).toFixed(2)].join('\t') + '\n');
  });
  if (variants.length === 2) {
    const ratio = (f: (s: (typeof samples)[number]) => number[]) => (median(f(samples[1]!)) / median(f(samples[0]!))).toFixed(2);
    process.stdout.write(`this/base CPU: put ${ratio((s) => s.put)}x, flush-scan ${ratio((s) => s.scan)}x\n`);
  }
}

await main();
