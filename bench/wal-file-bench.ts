// Feasibility study (docs/performance.md, round 4): the CPU of one WAL ready cycle written as a
// classic-level batch with sync (what src/wal/wal.ts does) against an append-only segment file
// (one writev + fdatasync per cycle, or one writev on an O_DSYNC file). Not a WAL: no recovery,
// no index; it only writes what a cycle would write, the way each design would write it.
//
// A cycle = ENTRIES entry records of RECORD bytes of command data (encodeEntry's record, as the
// WAL stores it) for one region, plus that region's hard state record. Cycles run one after the
// other (the region server's ready loop has one WAL write in flight). In the steady state a
// region's entries are also truncated after a flush: `level` deletes them (one tombstone per
// entry, TRUNCATE_EVERY cycles' worth at a time, as compact() does), `file` unlinks a whole
// segment once it is full (SEGMENT_BYTES) — the cost of truncation in each design.
//
// Numbers per cycle, medians over WAL_BENCH_ROUNDS rounds (variants alternate, order flipped each
// round):
//   cpu µs    user+system CPU of this process, all threads (the LevelDB / libuv worker that
//             writes and syncs, LevelDB's compaction thread, GC): what "server CPU" counts
//   wall ms   cycle latency (mostly the disk's sync)
//
//   node --import tsx bench/wal-file-bench.ts
//   WAL_BENCH_ENTRIES=1,4,16,64 WAL_BENCH_RECORD=100 WAL_BENCH_CYCLES=150 WAL_BENCH_ROUNDS=5
//   WAL_BENCH_DIR=<dir on the disk to measure> (default: a new directory under the OS temp dir)
import { closeSync, constants, fdatasync, mkdtempSync, openSync, rmSync, unlinkSync, writev } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { EntryType } from '../src/raft/types.js';
import { encodeEntry, encodeHardState } from '../src/wal/record.js';

const ENTRIES = (process.env['WAL_BENCH_ENTRIES'] ?? '1,4,16,64').split(',').map(Number);
const RECORD = Number(process.env['WAL_BENCH_RECORD'] ?? 100);
const CYCLES = Number(process.env['WAL_BENCH_CYCLES'] ?? 150);
const ROUNDS = Number(process.env['WAL_BENCH_ROUNDS'] ?? 5);
const TRUNCATE_EVERY = 50;
const SEGMENT_BYTES = 4 * 1024 * 1024;
const REGION = '4398046511104';
const prefix = `r/${REGION.padStart(20, '0')}/`;
const entryKey = (index: number) => `${prefix}e/${index.toString(16).padStart(16, '0')}`;

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

interface Sample {
  cpuUs: number;
  wallMs: number;
}

interface Variant {
  readonly name: string;
  open(dir: string): Promise<void>;
  /** Writes one cycle; resolves when durable. */
  cycle(firstIndex: number, entries: number): Promise<void>;
  close(): Promise<void>;
}

const data = new Uint8Array(RECORD).map((_, i) => (i * 31 + 7) & 0xff);
const entry = (index: number) => encodeEntry({ term: 3, index, type: EntryType.Normal, data });
const hardState = (commit: number) => encodeHardState({ term: 3, vote: 1, commit });

type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

function levelVariant(): Variant {
  let db: Level<string, Uint8Array>;
  let truncatedTo = 0;
  return {
    name: 'level',
    async open(dir) {
      db = new Level<string, Uint8Array>(join(dir, 'level'), { valueEncoding: 'view' });
      await db.open();
    },
    async cycle(first, n) {
      const ops: Op[] = [];
      for (let i = 0; i < n; i++) ops.push({ type: 'put', key: entryKey(first + i), value: entry(first + i) });
      ops.push({ type: 'put', key: `${prefix}hs`, value: hardState(first + n - 1) });
      // Truncation after a flush: every TRUNCATE_EVERY cycles, delete what is behind (as compact() does).
      if ((first / n) % TRUNCATE_EVERY === TRUNCATE_EVERY - 1) {
        for (let i = truncatedTo; i < first; i++) ops.push({ type: 'del', key: entryKey(i) });
        truncatedTo = first;
      }
      // The WAL's own path to the native batch (src/wal/wal.ts batchWrite).
      await (db as unknown as { _batch(ops: Op[], o: { sync: boolean }): Promise<void> })._batch(ops, { sync: true });
    },
    async close() {
      await db.close();
    },
  };
}

/** Frame of a record in a segment: [region id u64 BE][kind u8] + the record (it carries its own length and CRC). */
function framed(kind: number, record: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(9 + record.byteLength);
  out.writeBigUInt64BE(BigInt(REGION), 0);
  out[8] = kind;
  out.set(record, 9);
  return out;
}

function fileVariant(dsync: boolean): Variant {
  let dir = '';
  let fd = -1;
  let segment = 0;
  let written = 0;
  const path = (n: number) => join(dir, `seg-${dsync ? 'd' : 'f'}-${n.toString().padStart(8, '0')}`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | (dsync ? constants.O_DSYNC : 0);
  return {
    name: dsync ? 'file-dsync' : 'file',
    async open(d) {
      dir = d;
      fd = openSync(path(segment), flags, 0o644);
    },
    async cycle(first, n) {
      const buffers: Buffer[] = [];
      for (let i = 0; i < n; i++) buffers.push(framed(1, entry(first + i)));
      buffers.push(framed(2, hardState(first + n - 1)));
      let bytes = 0;
      for (const b of buffers) bytes += b.byteLength;
      await new Promise<void>((resolve, reject) => {
        writev(fd, buffers, (err) => {
          if (err) return reject(err);
          if (dsync) return resolve();
          fdatasync(fd, (err2) => (err2 ? reject(err2) : resolve()));
        });
      });
      written += bytes;
      if (written >= SEGMENT_BYTES) {
        // Roll: a new segment; the old one is truncated whole (unlinked) — in a real WAL once
        // every region's entries in it are flushed.
        closeSync(fd);
        unlinkSync(path(segment));
        segment++;
        written = 0;
        fd = openSync(path(segment), flags, 0o644);
      }
    },
    async close() {
      closeSync(fd);
    },
  };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function sample(v: Variant, n: number, startIndex: number): Promise<Sample> {
  const c0 = cpuUs();
  const w0 = process.hrtime.bigint();
  for (let c = 0; c < CYCLES; c++) await v.cycle(startIndex + c * n, n);
  return { cpuUs: (cpuUs() - c0) / CYCLES, wallMs: Number(process.hrtime.bigint() - w0) / 1e6 / CYCLES };
}

async function main(): Promise<void> {
  const dir = process.env['WAL_BENCH_DIR'] ? mkdtempSync(join(process.env['WAL_BENCH_DIR'], 'wal-bench-')) : mkdtempSync(join(tmpdir(), 'wal-bench-'));
  const variants = [levelVariant(), fileVariant(false), fileVariant(true)];
  for (const v of variants) await v.open(dir);
  process.stdout.write(`record ${RECORD} B of data (${entry(1).byteLength} B encoded), ${CYCLES} cycles per sample, ${ROUNDS} rounds; load ${loadavg()[0]!.toFixed(1)}\n`);
  const next = new Map<string, number>(variants.map((v) => [v.name, 1]));
  try {
    for (const n of ENTRIES) {
      const results = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? variants : [...variants].reverse();
        for (const v of order) {
          const start = next.get(v.name)!;
          // Align to n so the truncation rule in levelVariant sees whole cycles.
          const aligned = Math.ceil(start / n) * n;
          results.get(v.name)!.push(await sample(v, n, aligned));
          next.set(v.name, aligned + CYCLES * n);
        }
      }
      const row = variants.map((v) => {
        const s = results.get(v.name)!;
        return `${v.name} cpu ${median(s.map((x) => x.cpuUs)).toFixed(0)} µs, wall ${median(s.map((x) => x.wallMs)).toFixed(2)} ms`;
      });
      process.stdout.write(`${String(n).padStart(3)} entries/cycle: ${row.join(' | ')}\n`);
    }
  } finally {
    for (const v of variants) await v.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`load at end ${loadavg()[0]!.toFixed(1)}\n`);
}

void main();
