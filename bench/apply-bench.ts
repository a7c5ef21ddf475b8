// The datanode's apply path per ingested row, in one process, for make bench-ingest's rows
// (bench/ingest-bench.ts: host tag of 5,000 values, timestamp, float field, 32-char string
// field), 500-row writes (APPLY_BENCH_BATCH rows; 1 for single-row writes), a memtable frozen every APPLY_BENCH_ROWS rows (default 20,000, about
// the bench's 4 MiB flush threshold). Phases, each reported as CPU µs and allocated bytes per row:
//   apply   RegionState.apply of every write on three replicas (decode, dedup hash, key
//           encoding, memtable insert): the part every replica runs; per row of the region, so
//           it is three replicas' work
//   flush   the leader turns the frozen memtable into an SST (writeFlushSst into a sink that
//           only counts bytes)
//   merge   the leader merges that SST into a new one (mergeSsts: read, pick, write; values
//           are copied as stored since session 29),
//           what a compaction does to each row it rewrites
// Comparing two builds in one process: APPLY_BENCH_BASE=<dir> names another checkout's root
// (e.g. a `git archive` of main); its src/engine is loaded beside this one's and the two
// alternate within every round (order flipped each round), medians over APPLY_BENCH_ROUNDS
// (default 11); APPLY_BENCH_THIS=<dir> replaces this checkout the same way. The machine is shared: CPU time (process.cpuUsage, GC helper threads included)
// rather than wall time, and the comparison rather than the absolute numbers.
// Allocation: v8.GCProfiler over each phase — heap in use at the end minus at the start, plus
// what every collection in between freed — so it counts objects that died young too. Typed
// arrays above V8's on-heap limit (64 bytes) live outside the heap and are not counted.
// Usage: node --import tsx bench/apply-bench.ts   (APPLY_BENCH_SEED seeds the field values)
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import v8 from 'node:v8';
import type * as EngineModule from '../src/engine/index.js';
import type { SstReader } from '../src/engine/sst/format.js';
import type * as SstModule from '../src/engine/sst/format.js';
import { INGEST_SCHEMA } from './ingest-schema.js';

type Engine = typeof EngineModule;
type Sst = typeof SstModule;

const ROUNDS = Number(process.env['APPLY_BENCH_ROUNDS'] ?? 11);
const ROWS = Number(process.env['APPLY_BENCH_ROWS'] ?? 20_000);
const BATCH = Number(process.env['APPLY_BENCH_BATCH'] ?? 500);
const REPLICAS = 3;
const SEED = Number(process.env['APPLY_BENCH_SEED'] ?? 1);

interface Variant {
  readonly name: string;
  readonly engine: Engine;
  readonly sst: Sst;
}

async function load(name: string, root: string): Promise<Variant> {
  const engine = (await import(pathToFileURL(join(root, 'src/engine/index.ts')).href)) as Engine;
  const sst = (await import(pathToFileURL(join(root, 'src/engine/sst/format.ts')).href)) as Sst;
  return { name, engine, sst };
}

const schema = INGEST_SCHEMA;

/** xorshift32: the field values of a seed, the same for every variant and round. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

const CLIENT_ID = 'ingest-bench-7d1f0a52-3c9e-4b8a-a0e4-5f16c2d9b370';

/** The bench's writes, in schema order: rows of `ROWS / BATCH` commands. */
function commands(): EngineModule.WriteCommand[] {
  const rand = random(SEED);
  const out: EngineModule.WriteCommand[] = [];
  for (let c = 0; c < ROWS / BATCH; c++) {
    const base = c * BATCH;
    out.push({
      kind: 'write',
      clientId: CLIENT_ID,
      requestId: 1_700_000_000_000_000 + c + 1,
      rows: Array.from({ length: BATCH }, (_, j) => [`host-${(base + j) % 5000}`, 1_700_000_000_000 + base + j, rand(), 'x'.repeat(32)]),
    });
  }
  return out;
}

/** CPU time of this process, all threads (GC helpers included), in ns. */
function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

interface Measured {
  readonly ns: number;
  readonly allocated: number;
}

async function measure(f: () => void | Promise<void>): Promise<Measured> {
  const profiler = new v8.GCProfiler();
  const before = v8.getHeapStatistics().used_heap_size;
  profiler.start();
  const t0 = cpuNs();
  await f();
  const ns = cpuNs() - t0;
  const after = v8.getHeapStatistics().used_heap_size;
  const stats = profiler.stop();
  let freed = 0;
  for (const s of stats.statistics) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  return { ns, allocated: after - before + freed };
}

/** A sink that keeps the SST's bytes (to merge them next) and counts them. */
class MemorySink {
  readonly chunks: Uint8Array[] = [];
  size = 0;
  async write(chunk: Uint8Array): Promise<void> {
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }
}

type Phase = 'apply' | 'flush' | 'merge';
const PHASES: readonly Phase[] = ['apply', 'flush', 'merge'];

interface RoundResult {
  readonly phases: Record<Phase, Measured>;
  readonly sstBytes: number;
  /** Every live row of the merged SST, as a region scan returns it: the variants must agree. */
  readonly rows: string;
}

async function round(v: Variant, encoded: readonly Uint8Array[], keepRows: boolean): Promise<RoundResult> {
  const { RegionState, encodeCommand, writeFlushSst, mergeSsts, sstMetaOf } = v.engine;
  const replicas = Array.from({ length: REPLICAS }, () => new RegionState(schema, 'bench'));
  let index = 0;
  const apply = await measure(() => {
    for (const bytes of encoded) {
      index++;
      for (const r of replicas) r.apply(index, bytes, 1);
    }
  });
  index++;
  const freeze = encodeCommand({ kind: 'freeze' });
  for (const r of replicas) r.apply(index, freeze, 1);
  const leader = replicas[0]!;
  const flushSink = new MemorySink();
  let written: Awaited<ReturnType<typeof writeFlushSst>> = null;
  const flush = await measure(async () => {
    written = await writeFlushSst(leader.frozen[0]!, flushSink);
  });
  if (!written) throw new Error(`${v.name}: the flush wrote nothing`);
  const flushed = flushSink.bytes();
  const meta = sstMetaOf('regions/bench/sst/flushed.sst', written);
  const readers = new Map<string, Uint8Array>([[meta.key, flushed]]);
  const opener = { open: (m: EngineModule.SstMeta): Promise<SstReader> => v.sst.SstReader.open(v.sst.sstSourceFromBytes(m.key, readers.get(m.key)!)) };
  const state = new RegionState(schema, 'bench', opener);
  state.ssts = [meta];
  const mergeSink = new MemorySink();
  let merged: Awaited<ReturnType<typeof mergeSsts>> = null;
  const merge = await measure(async () => {
    merged = await mergeSsts(state, [meta], true, mergeSink);
  });
  if (!merged) throw new Error(`${v.name}: the merge wrote nothing`);
  let rows = '';
  if (keepRows) {
    const mergedMeta = sstMetaOf('regions/bench/sst/merged.sst', merged);
    readers.set(mergedMeta.key, mergeSink.bytes());
    const check = new RegionState(schema, 'bench', opener);
    check.ssts = [mergedMeta];
    const out: string[] = [];
    for await (const r of check.scan()) out.push(JSON.stringify(r));
    // And the leader's memtable, read the same way, must be what the SST holds.
    const fromMemory: string[] = [];
    for await (const r of leader.scan()) fromMemory.push(JSON.stringify(r));
    if (fromMemory.join('\n') !== out.join('\n')) throw new Error(`${v.name}: the merged SST does not hold the memtable's rows`);
    rows = out.join('\n');
  }
  return { phases: { apply, flush, merge }, sstBytes: flushed.byteLength, rows };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const variants: Variant[] = [];
  const base = process.env['APPLY_BENCH_BASE'];
  if (base) variants.push(await load('base', base));
  variants.push(await load('this', process.env['APPLY_BENCH_THIS'] ?? join(import.meta.dirname, '..')));
  const cmds = commands();
  const encoded = variants.map((v) => cmds.map((c) => v.engine.encodeCommand(c)));
  for (let i = 1; i < variants.length; i++) {
    if (encoded[i]!.some((b, k) => Buffer.compare(b, encoded[0]![k]!) !== 0)) throw new Error('the variants encode the writes differently: not the same log');
  }
  // Round 0 is a warm-up and the check that every variant stores and returns the same rows.
  const checks: RoundResult[] = [];
  for (let i = 0; i < variants.length; i++) checks.push(await round(variants[i]!, encoded[i]!, true));
  for (let i = 1; i < variants.length; i++) {
    if (checks[i]!.rows !== checks[0]!.rows) throw new Error(`${variants[i]!.name} and ${variants[0]!.name} return different rows`);
  }
  const samples = variants.map(() => PHASES.map(() => ({ ns: [] as number[], allocated: [] as number[] })));
  for (let r = 0; r < ROUNDS; r++) {
    const order = variants.map((_, i) => i);
    if (r % 2 === 1) order.reverse();
    for (const i of order) {
      const res = await round(variants[i]!, encoded[i]!, false);
      PHASES.forEach((p, k) => {
        samples[i]![k]!.ns.push(res.phases[p].ns / ROWS);
        samples[i]![k]!.allocated.push(res.phases[p].allocated / ROWS);
      });
    }
  }
  process.stdout.write(
    `apply path, ${ROWS} rows (${BATCH}-row writes) per round, ${REPLICAS} replicas, medians of ${ROUNDS} rounds, seed ${SEED}; node ${process.version}\n` +
      `per row of the region: CPU µs (all threads) / bytes allocated on the JS heap; apply counts all ${REPLICAS} replicas, flush and merge the leader\n`,
  );
  process.stdout.write(['variant', ...PHASES.map((p) => `${p} µs`), ...PHASES.map((p) => `${p} B`), 'SST bytes/row'].join('\t') + '\n');
  variants.forEach((v, i) => {
    const m = samples[i]!;
    process.stdout.write(
      [v.name, ...m.map((s) => (median(s.ns) / 1000).toFixed(2)), ...m.map((s) => median(s.allocated).toFixed(0)), (checks[i]!.sstBytes / ROWS).toFixed(1)].join('\t') + '\n',
    );
  });
  if (variants.length === 2) {
    const ratio = PHASES.map((_, k) => (median(samples[1]![k]!.ns) / median(samples[0]![k]!.ns)).toFixed(2));
    process.stdout.write(`this/base CPU: ${PHASES.map((p, k) => `${p} ${ratio[k]}x`).join(', ')}\n`);
  }
}

await main();
