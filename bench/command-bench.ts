// make bench-command: the CPU cost of one write command on the write path, command format
// version 1 (JSON) against version 2 (binary; src/engine/command.ts), per command in ns:
//   encode        what the leader's service does once per request (encodeCommand)
//   decode        what every replica does once per entry (decodeCommand)
//   enc+dec+apply encode once, then apply on three replicas (RegionState.apply: decode, dedup
//                 hash, key encoding, memtable insert) — the work of one write on a 3-replica region
// for a 1-row write (the bench's `write 1 key`) and a 100-row write (`batch 100 keys`).
// Timing (CPU time, cpuNs): the two formats alternate within each round (the order flips each round), each sample
// runs a calibrated number of iterations (~SAMPLE_MS), medians over COMMAND_BENCH_ROUNDS rounds
// (default 15). Apply runs on replicas in a steady state (warmUp). Results: docs/performance.md,
// round 3.
import { type Command, RegionState, type TableSchema, decodeCommand, encodeCommand, encodeCommandV1 } from '../src/engine/index.js';

const SAMPLE_MS = 40;

/**
 * CPU time of this process (user + system, all threads: GC helpers included), not wall time:
 * the machine is shared, and wall time counts the time other processes had the cores.
 */
function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}
const ROUNDS = Number(process.env['COMMAND_BENCH_ROUNDS'] ?? 15);
const REPLICAS = 3;

/** The bench's table (bench/targets.ts): host tag, timestamp, one float field. */
const schema: TableSchema = {
  name: 'bench',
  tableId: 1024,
  regionCount: 1,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'v', type: 'float64', semantic: 'field' },
  ],
};

const CLIENT_ID = 'bench-3f2a9c1e-6d0b-4c43-9a51-0d5e0c7b8e11';

function write(rows: number, requestId: number): Command {
  return {
    kind: 'write',
    clientId: CLIENT_ID,
    requestId,
    rows: Array.from({ length: rows }, (_, i) => [`h${(requestId * 7 + i) % 10_000}`, 1_733_280_000_000 + i, (requestId % 1000) / 7]),
  };
}

interface Variant {
  readonly name: string;
  readonly encode: (cmd: Command) => Uint8Array;
}
const VARIANTS: readonly Variant[] = [
  { name: 'v1 (JSON)', encode: encodeCommandV1 },
  { name: 'v2 (binary)', encode: encodeCommand },
];

type Op = 'encode' | 'decode' | 'enc+dec+apply';
const OPS: readonly Op[] = ['encode', 'decode', 'enc+dec+apply'];

/** Runs `iterations` of one op; returns ns per op. Request ids grow so every apply is a new write. */
function sample(variant: Variant, op: Op, rows: number, iterations: number): number {
  const cmds = Array.from({ length: iterations }, (_, i) => write(rows, i + 1));
  if (op === 'encode') {
    const t0 = cpuNs();
    for (const c of cmds) variant.encode(c);
    return (cpuNs() - t0) / iterations;
  }
  if (op === 'decode') {
    const encoded = cmds.map(variant.encode);
    const t0 = cpuNs();
    for (const b of encoded) decodeCommand(b);
    return (cpuNs() - t0) / iterations;
  }
  const state = steady.get(variant)!;
  const applyCmds = Array.from({ length: iterations }, () => write(rows, ++state.requestId));
  const t0 = cpuNs();
  for (const c of applyCmds) {
    const bytes = variant.encode(c);
    state.index++;
    for (const r of state.replicas) r.apply(state.index, bytes);
  }
  return (cpuNs() - t0) / iterations;
}

/**
 * Replicas in a steady state, kept across samples (one set per format): the client's dedup
 * record full (dedupRequestsPerClientMax ids, so each write evicts one) and the memtable at the
 * bounded key space (10,000 hosts), as in the cluster bench after its warm-up.
 */
interface Steady {
  readonly replicas: RegionState[];
  index: number;
  requestId: number;
}
const steady = new Map<Variant, Steady>();
function warmUp(variant: Variant, rows: number): void {
  const state: Steady = { replicas: Array.from({ length: REPLICAS }, () => new RegionState(schema, 'bench')), index: 0, requestId: 0 };
  steady.set(variant, state);
  for (let i = 0; i < Math.max(2_000, 12_000 / rows); i++) {
    const bytes = variant.encode(write(rows, ++state.requestId));
    state.index++;
    for (const r of state.replicas) r.apply(state.index, bytes);
  }
}

/** Iterations for a sample of about SAMPLE_MS. */
function calibrate(variant: Variant, op: Op, rows: number): number {
  for (let n = 16; ; n *= 4) {
    const elapsedMs = (sample(variant, op, rows, n) * n) / 1e6;
    if (elapsedMs >= SAMPLE_MS / 4 || n >= 1 << 20) return Math.max(16, Math.round((n * SAMPLE_MS) / Math.max(elapsedMs, 1e-3)));
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function main(): void {
  // The two formats decode to the same command (a precondition of comparing their costs).
  for (const rows of [1, 100]) {
    const cmd = write(rows, 5);
    const [a, b] = VARIANTS.map((v) => JSON.stringify(decodeCommand(v.encode(cmd))));
    if (a !== b) throw new Error(`formats disagree for ${rows} rows`);
  }
  console.log(`command formats, ns per command (median of ${ROUNDS} rounds); apply = ${REPLICAS} replicas; node ${process.version}`);
  console.log(['rows', 'op', ...VARIANTS.map((v) => v.name), 'v2/v1', 'bytes v1 → v2'].join('\t'));
  for (const rows of [1, 100]) {
    const bytes = VARIANTS.map((v) => v.encode(write(rows, 1_733_280_000_123)).byteLength);
    for (const v of VARIANTS) warmUp(v, rows);
    for (const op of OPS) {
      const iterations = VARIANTS.map((v) => calibrate(v, op, rows));
      const samples: number[][] = VARIANTS.map(() => []);
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? [0, 1] : [1, 0];
        for (const i of order) samples[i]!.push(sample(VARIANTS[i]!, op, rows, iterations[i]!));
      }
      const m = samples.map(median);
      console.log([rows, op, ...m.map((x) => x.toFixed(0)), `${(m[1]! / m[0]!).toFixed(2)}x`, `${bytes[0]} → ${bytes[1]}`].join('\t'));
    }
  }
}

main();
