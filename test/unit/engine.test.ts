import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { ManualClock } from '../../src/common/clock.js';
import { SeededRand } from '../../src/common/rand.js';
import {
  Memtable,
  RegionState,
  type TableSchema,
  compareBytes,
  encodeCommand,
  encodePrimaryKey,
  decodeCommand,
  keyBytesOfString,
  keyStringOfBytes,
  primaryKeyStringOfValues,
  makeRegionId,
  parseRegionId,
  regionNumberOf,
  validateRow,
  validateSchema,
} from '../../src/engine/index.js';
import type { SstMeta } from '../../src/engine/command.js';
import { decodeManifest } from '../../src/engine/manifest.js';
import { type SstOpener, memEntryToSst } from '../../src/engine/region-state.js';
import { KeyedEntry } from '../../src/engine/memtable.js';
import type { Row } from '../../src/engine/schema.js';
import { SST_BLOCK_TARGET_BYTES, type SstProperties, SstReader, buildSst, sstSourceFromBytes } from '../../src/engine/sst/format.js';
import { ROWS_PER_YIELD, SST_WRITE_CHUNK_BYTES, compactionDue, dirtySince, mergeSsts, nextFlushStep, pickCompactionRun, planCompaction } from '../../src/engine/index.js';
import { writeFlushSst } from '../../src/engine/flush.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ regionCount: 4, extraTags: [{ name: 'core', type: 'int64', semantic: 'tag' }] });

function expectInvalid(fn: () => unknown, mentions: string): void {
  try {
    fn();
    expect.fail('must throw');
  } catch (err) {
    expect(isRegionDbError(err, ErrorCode.InvalidArgument), String(err)).to.equal(true);
    expect((err as Error).message).to.include(mentions);
  }
}

const write = (requestId: number, rows: (string | number | null)[][], extra: object = {}) =>
  encodeCommand({ kind: 'write', clientId: 'c1', requestId, rows, ...extra });

describe('engine: schema and rows', () => {
  it('rejects bad schemas naming the column', () => {
    expectInvalid(() => validateSchema({ ...schema, columns: schema.columns.filter((c) => c.semantic !== 'timestamp') }), 'exactly one TIMESTAMP');
    expectInvalid(() => validateSchema({ ...schema, columns: [...schema.columns, { name: 'host', type: 'string', semantic: 'field' }] }), 'duplicate column host');
    expectInvalid(() => validateSchema({ ...schema, regionCount: 0 }), 'region count');
  });

  it('refuses table and column names every JavaScript object inherits: rows are plain objects, so such a table could never be written (finding I1)', () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      expectInvalid(() => validateSchema({ ...schema, name }), `table name ${JSON.stringify(name)}`);
      expectInvalid(() => validateSchema({ ...schema, columns: [...schema.columns, { name, type: 'string', semantic: 'field' }] }), `column name ${JSON.stringify(name)}`);
    }
    // Names that merely look alike stay valid.
    validateSchema({ ...schema, name: 'constructor_log', columns: [...schema.columns, { name: 'proto', type: 'string', semantic: 'field' }, { name: 'to_string', type: 'string', semantic: 'field' }] });
  });

  it('rejects bad rows naming table and column', () => {
    expectInvalid(() => validateRow(schema, { host: 'a', core: 1, usage: 0.5 }), 'column ts');
    expectInvalid(() => validateRow(schema, { host: 'a', core: '1', ts: 1 }), 'column core (int64)');
    expectInvalid(() => validateRow(schema, { host: 'a', core: 1.5, ts: 1 }), 'column core (int64)');
    expectInvalid(() => validateRow(schema, { host: 'a', ts: 1, usage: Number.NaN }), 'column usage (float64)');
    expectInvalid(() => validateRow(schema, { host: 'a', ts: 1, bogus: 1 }), 'unknown column bogus');
  });

  it('encodes keys so byte order equals logical order (seeded property)', () => {
    const seed = 7;
    const rand = new SeededRand(seed);
    const rows = Array.from({ length: 500 }, () => ({
      host: rand.chance(0.1) ? null : ['', 'a', 'a\u0000b', 'ab', 'b'][rand.int(5)]!,
      core: rand.chance(0.1) ? null : rand.range(-5, 5) * 1e12,
      ts: rand.range(-1000, 1000) * 1e9,
    }));
    const logical = (a: (typeof rows)[0], b: (typeof rows)[0]) => {
      const cmp = (x: string | number | null, y: string | number | null) => {
        if (x === y) return 0;
        if (x === null) return -1;
        if (y === null) return 1;
        if (typeof x === 'string') return compareBytes(new TextEncoder().encode(x), new TextEncoder().encode(y as string));
        return (x as number) - (y as number);
      };
      return cmp(a.host, b.host) || cmp(a.core, b.core) || a.ts - b.ts;
    };
    for (let i = 0; i + 1 < rows.length; i++) {
      const a = rows[i]!;
      const b = rows[i + 1]!;
      const bytes = Math.sign(compareBytes(encodePrimaryKey(schema, a), encodePrimaryKey(schema, b)));
      expect(bytes, `seed ${seed}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`).to.equal(Math.sign(logical(a, b)));
    }
  });

  it('key bytes follow the documented format exactly (golden vector, and a reference encoder over seeded random rows)', () => {
    // The format is on disk (SSTs) and decides routing: it must never change.
    const ref = (sch: TableSchema, row: Row): number[] => {
      const out: number[] = [];
      const int = (v: number) => {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setBigInt64(0, BigInt(v));
        b[0]! ^= 0x80;
        out.push(...b);
      };
      for (const c of sch.columns.filter((col) => col.semantic === 'tag')) {
        const v = row[c.name] ?? null;
        if (v === null) {
          out.push(0);
          continue;
        }
        out.push(1);
        if (c.type === 'string') {
          for (const b of new TextEncoder().encode(v as string)) out.push(...(b === 0 ? [0, 0xff] : [b]));
          out.push(0, 1);
        } else if (c.type === 'bool') out.push(v ? 1 : 0);
        else int(v as number);
      }
      int(row[sch.columns.find((col) => col.semantic === 'timestamp')!.name] as number);
      return out;
    };
    const mixed: TableSchema = {
      name: 'm',
      tableId: 7,
      regionCount: 3,
      columns: [
        { name: 's', type: 'string', semantic: 'tag' },
        { name: 'i', type: 'int64', semantic: 'tag' },
        { name: 'b', type: 'bool', semantic: 'tag' },
        { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
        { name: 'f', type: 'float64', semantic: 'field' },
      ],
    };
    expect([...encodePrimaryKey(mixed, { s: 'a\u0000é', i: -2, b: true, ts: 1_700_000_000_000 })]).to.deep.equal([
      1, 0x61, 0, 0xff, 0xc3, 0xa9, 0, 1, 1, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1, 1, 0x80, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0,
    ]);
    const seed = 20261125;
    const rand = new SeededRand(seed);
    const alphabet = ['a', 'z', '\u0000', 'é', '日', '🙂', ' ', '\u007f'];
    const pick = <T>(xs: readonly T[]) => xs[rand.int(xs.length)]!;
    const ints = [0, 1, -1, 2 ** 31, -(2 ** 31), 2 ** 32, -(2 ** 32) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
    for (let n = 0; n < 2000; n++) {
      const row: Row = {
        s: rand.chance(0.1) ? null : Array.from({ length: rand.int(300) }, () => pick(alphabet)).join(''),
        i: rand.chance(0.1) ? null : rand.chance(0.5) ? pick(ints) : rand.int(2 ** 30) * (rand.chance(0.5) ? -1 : 1) * 4099,
        b: rand.chance(0.1) ? null : rand.chance(0.5),
        ts: rand.chance(0.5) ? pick(ints) : rand.int(2 ** 30) * 1000,
        f: 1,
      };
      expect([...encodePrimaryKey(mixed, row)], `seed ${seed} row ${n}: ${JSON.stringify(row)}`).to.deep.equal(ref(mixed, row));
    }
    // Apply's path (a write's values in schema order, the key as a byte string, no Row object)
    // gives the same bytes, in a schema whose columns are not in key order (fields first, the
    // timestamp between tags), for keys longer than the encoder's first scratch buffer too.
    const shuffled: TableSchema = {
      name: 'shuffled',
      tableId: 2,
      regionCount: 1,
      columns: [
        { name: 'f', type: 'float64', semantic: 'field' },
        { name: 'i', type: 'int64', semantic: 'tag' },
        { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
        { name: 'n', type: 'string', semantic: 'field' },
        { name: 's', type: 'string', semantic: 'tag' },
        { name: 'b', type: 'bool', semantic: 'tag' },
      ],
    };
    let long = 0;
    for (let n = 0; n < 2000; n++) {
      const row: Row = {
        f: rand.chance(0.1) ? null : rand.int(1000) / 7,
        i: rand.chance(0.1) ? null : rand.chance(0.5) ? pick(ints) : rand.int(2 ** 30) * (rand.chance(0.5) ? -1 : 1) * 4099,
        ts: rand.chance(0.5) ? pick(ints) : rand.int(2 ** 30) * 1000,
        n: rand.chance(0.1) ? null : 'x'.repeat(rand.int(40)),
        s: rand.chance(0.1) ? null : Array.from({ length: rand.int(300) }, () => pick(alphabet)).join(''),
        b: rand.chance(0.1) ? null : rand.chance(0.5),
      };
      const values = shuffled.columns.map((c) => row[c.name]!);
      const expected = ref(shuffled, row);
      if (expected.length > 256) long++;
      const k = primaryKeyStringOfValues(shuffled, values);
      expect(Array.from(k, (c) => c.charCodeAt(0)), `seed ${seed} row ${n}: ${JSON.stringify(row)}`).to.deep.equal(expected);
      expect(k, `seed ${seed} row ${n}`).to.equal(keyStringOfBytes(encodePrimaryKey(shuffled, row)));
      expect([...keyBytesOfString(k)], `seed ${seed} row ${n}`).to.deep.equal(expected);
    }
    expect(long, 'keys longer than the first scratch buffer were tried').to.be.greaterThan(100);
    // Each longer than any key before it in this process: the encoder grows its buffer mid-key.
    for (const chars of [3_000, 12_000, 48_000]) {
      const row: Row = { f: 1, i: -5, ts: 7, n: 'n', s: `a\u0000${'日🙂'.repeat(chars / 3)}`, b: false };
      const k = primaryKeyStringOfValues(shuffled, shuffled.columns.map((c) => row[c.name]!));
      expect(Array.from(k, (c) => c.charCodeAt(0)), `a key of ${chars} chars`).to.deep.equal(ref(shuffled, row));
    }
  });

  it('routes rows by tags only, stably, across all regions', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 400; i++) {
      const r = regionNumberOf(schema, { host: `h${i}`, core: 1, ts: i });
      expect(regionNumberOf(schema, { host: `h${i}`, core: 1, ts: i + 99 })).to.equal(r);
      counts[r]!++;
    }
    for (const c of counts) expect(c).to.be.within(50, 150);
  });

  it('region ids are table_id << 32 | region_number', () => {
    expect(makeRegionId(1024, 3)).to.equal('4398046511107');
    expect(parseRegionId('4398046511107')).to.deep.equal({ tableId: 1024, regionNumber: 3 });
    expectInvalid(() => parseRegionId('12a'), 'invalid region id');
  });
});

describe('engine: memtable', () => {
  it('matches a sorted-map model under seeded random puts, overwrites and range scans', () => {
    const seed = 11;
    const rand = new SeededRand(seed);
    const mem = new Memtable();
    const model = new Map<string, number>();
    for (let i = 1; i <= 3000; i++) {
      const k = rand.int(800);
      const key = new Uint8Array([k >> 8, k & 0xff]);
      mem.put({ key, timestampMs: 0, version: i, op: rand.chance(0.1) ? 'delete' : 'put', tags: [], fields: [] });
      model.set(String(k).padStart(4, '0'), i);
    }
    const keys = [...model.keys()].sort();
    const got = [...mem.scan()].map((e) => ((e.key[0]! << 8) | e.key[1]!).toString().padStart(4, '0'));
    expect(got, `seed ${seed}`).to.deep.equal(keys);
    const lo = new Uint8Array([0, 100]);
    const hi = new Uint8Array([1, 44]);
    const inRange = [...mem.scan(lo, hi)].map((e) => (e.key[0]! << 8) | e.key[1]!);
    expect(inRange, `seed ${seed}`).to.deep.equal(keys.map(Number).filter((k) => k >= 100 && k < 300));
    expect(mem.count).to.equal(model.size);
  });

  it('orders, finds and ranges keys as compareBytes does, whatever the bytes (0x00, 0x80–0xff, prefixes of each other)', () => {
    const seed = 23;
    const rand = new SeededRand(seed);
    const alphabet = [0x00, 0x01, 0x7f, 0x80, 0x9f, 0xa0, 0xfe, 0xff];
    const randomKey = () => Uint8Array.from({ length: 1 + rand.int(5) }, () => (rand.chance(0.7) ? alphabet[rand.int(alphabet.length)]! : rand.int(256)));
    const mem = new Memtable();
    const model = new Map<string, { key: Uint8Array; version: number }>();
    for (let version = 1; version <= 4000; version++) {
      const key = randomKey();
      mem.put({ key, timestampMs: 0, version, op: 'put', tags: [], fields: [] });
      model.set(Buffer.from(key).toString('hex'), { key, version });
    }
    const sorted = [...model.values()].sort((a, b) => compareBytes(a.key, b.key));
    const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');
    expect([...mem.scan()].map((e) => hex(e.key)), `seed ${seed}`).to.deep.equal(sorted.map((e) => hex(e.key)));
    for (const { key, version } of sorted) expect(mem.get(key)?.version, `get ${hex(key)}, seed ${seed}`).to.equal(version);
    for (let i = 0; i < 200; i++) {
      const absent = randomKey();
      if (!model.has(hex(absent))) expect(mem.get(absent), `get ${hex(absent)}, seed ${seed}`).to.equal(undefined);
      const [lo, hi] = [randomKey(), randomKey()].sort(compareBytes);
      const want = sorted.filter((e) => compareBytes(e.key, lo!) >= 0 && compareBytes(e.key, hi!) < 0).map((e) => hex(e.key));
      expect([...mem.scan(lo, hi)].map((e) => hex(e.key)), `scan [${hex(lo!)}, ${hex(hi!)}), seed ${seed}`).to.deep.equal(want);
    }
  });

  it('holds entries keyed by byte string (KeyedEntry; RowEntry, what apply inserts, in test/unit/memtable.test.ts) exactly as entries keyed by bytes', () => {
    const seed = 31;
    const rand = new SeededRand(seed);
    const alphabet = [0x00, 0x01, 0x7f, 0x80, 0x9f, 0xa0, 0xfe, 0xff];
    const randomKey = () => Uint8Array.from({ length: 1 + rand.int(6) }, () => (rand.chance(0.7) ? alphabet[rand.int(alphabet.length)]! : rand.int(256)));
    const mixed = new Memtable();
    const plain = new Memtable();
    const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');
    let keyed = 0;
    for (let version = 1; version <= 4000; version++) {
      const key = randomKey();
      const op = rand.chance(0.1) ? 'delete' : 'put';
      const tags = [rand.chance(0.5) ? 'tag'.repeat(rand.int(4)) : null];
      const fields = op === 'delete' ? [] : [rand.int(100), 'f'.repeat(rand.int(10))];
      plain.put({ key, timestampMs: version, version, op, tags, fields });
      // The same put, half of the time as a KeyedEntry: overwrites cross the two kinds.
      if (rand.chance(0.5)) {
        keyed++;
        mixed.put(new KeyedEntry(keyStringOfBytes(key), version, version, op, tags, fields));
      } else mixed.put({ key, timestampMs: version, version, op, tags, fields });
    }
    expect(keyed).to.be.greaterThan(1500);
    const view = (m: Memtable) => [...m.scan()].map((e) => [hex(e.key), e.version, e.op, e.timestampMs, e.tags, e.fields]);
    expect(view(mixed), `seed ${seed}`).to.deep.equal(view(plain));
    expect(mixed.count).to.equal(plain.count);
    expect(mixed.sizeBytes, 'size accounting does not depend on how the key is held').to.equal(plain.sizeBytes);
    for (const e of plain.scan()) expect(hex(mixed.get(e.key)!.key), `get ${hex(e.key)}, seed ${seed}`).to.equal(hex(e.key));
    for (let i = 0; i < 200; i++) {
      const [lo, hi] = [randomKey(), randomKey()].sort(compareBytes);
      expect([...mixed.scan(lo, hi)].map((e) => hex(e.key)), `scan [${hex(lo!)}, ${hex(hi!)}), seed ${seed}`).to.deep.equal([...plain.scan(lo, hi)].map((e) => hex(e.key)));
    }
  });

  it('holds 100k keys in order with growing size accounting', () => {
    const mem = new Memtable();
    for (let i = 0; i < 100_000; i++) {
      const k = (i * 7919) % 100_000;
      mem.put({ key: new Uint8Array([k >>> 16, (k >>> 8) & 0xff, k & 0xff]), timestampMs: 0, version: i + 1, op: 'put', tags: [], fields: [k] });
    }
    expect(mem.count).to.equal(100_000);
    let prev = -1;
    let ordered = true;
    for (const e of mem.scan()) {
      const k = (e.key[0]! << 16) | (e.key[1]! << 8) | e.key[2]!;
      ordered &&= k > prev;
      prev = k;
    }
    expect(ordered).to.equal(true);
    expect(mem.sizeBytes).to.be.greaterThan(100_000 * 64);
  });
});

/** SSTs kept in memory, opened like the datanode opens them from the object store. */
class MemorySsts implements SstOpener {
  readonly objects = new Map<string, Uint8Array>();
  async open(meta: SstMeta): Promise<SstReader> {
    const bytes = this.objects.get(meta.key);
    if (!bytes) throw new Error(`no SST ${meta.key}`);
    return SstReader.open(sstSourceFromBytes(meta.key, bytes));
  }
  /** What the leader's flusher does: the frozen memtable becomes an SST. */
  flush(state: RegionState, name: string): SstMeta | null {
    const frozen = state.frozen[0]!;
    const entries = [...frozen.memtable.scan()].map(memEntryToSst);
    if (entries.length === 0) return null;
    const { bytes, properties } = buildSst(entries);
    this.objects.set(name, bytes);
    return { key: name, size: bytes.byteLength, entries: properties.entryCount, maxVersion: properties.maxVersion, minTimestampMs: properties.minTimestamp, maxTimestampMs: properties.maxTimestamp };
  }
}

/** A merge written into memory, as the flusher streams it into the object store. */
async function mergeToBytes(s: RegionState, inputs: readonly SstMeta[], dropTombstones: boolean): Promise<{ bytes: Uint8Array; properties: SstProperties } | null> {
  const chunks: Uint8Array[] = [];
  const written = await mergeSsts(s, inputs, dropTombstones, { write: async (chunk) => void chunks.push(chunk) });
  if (!written) return null;
  const bytes = new Uint8Array(Buffer.concat(chunks));
  expect(bytes.byteLength, 'the size a merge reports is what it wrote').to.equal(written.size);
  return { bytes, properties: written.properties };
}

/** Runs `work`, counting the turns of the event loop it lets happen (a setImmediate chain). */
async function countingTurns<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let ticking = true;
  const tick = () => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    return { result: await work(), turns };
  } finally {
    ticking = false;
  }
}

const freeze = () => encodeCommand({ kind: 'freeze' });
const flushEdit = (freezeIndex: number, sst: SstMeta | null) => encodeCommand({ kind: 'flush-edit', freezeIndex, sst });

async function rowsOf(s: RegionState, options = {}): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const r of s.scan(options)) out.push(r);
  return out;
}

describe('engine: region state (deterministic apply)', () => {
  it('upserts by primary key with version = raft index, and reads back', async () => {
    const s = new RegionState(schema);
    s.apply(5, write(1, [['a', 1, 10, 0.5]]));
    s.apply(6, write(2, [['a', 1, 10, 0.7]]));
    expect(await s.get({ host: 'a', core: 1, ts: 10 })).to.deep.equal({ row: { host: 'a', core: 1, ts: 10, usage: 0.7 }, version: 6 });
  });

  it('a retried request id is applied once and returns the first result', async () => {
    const s = new RegionState(schema);
    const first = s.apply(1, write(7, [['a', 1, 10, 1]]));
    s.apply(2, write(8, [['a', 1, 10, 2]]));
    const retry = s.apply(3, write(7, [['a', 1, 10, 1]]));
    expect(retry).to.deep.equal(first);
    expect((await s.get({ host: 'a', core: 1, ts: 10 }))!.row['usage']).to.equal(2);
  });

  it('conditional writes: expectAbsent and expectVersion', () => {
    const s = new RegionState(schema);
    expect(s.apply(1, write(1, [['a', 1, 10, 1]], { expectAbsent: true }))).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, write(2, [['a', 1, 10, 2]], { expectAbsent: true }))).to.deep.equal({ status: 'condition-failed', currentVersion: 1 });
    expect(s.apply(3, write(3, [['a', 1, 10, 3]], { expectVersion: 2 }))).to.deep.equal({ status: 'condition-failed', currentVersion: 1 });
    expect(s.apply(4, write(4, [['a', 1, 10, 4]], { expectVersion: 1 }))).to.deep.equal({ status: 'ok', version: 4, rows: 1 });
  });

  it('deletes leave tombstones; scans filter by time range and tags', async () => {
    const s = new RegionState(schema);
    s.apply(1, write(1, [['a', 1, 10, 1], ['a', 1, 20, 2], ['b', 1, 15, 3]]));
    s.apply(2, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: 2, keys: [['a', 1, 20]] }));
    expect(await s.get({ host: 'a', core: 1, ts: 20 })).to.equal(null);
    expect((await rowsOf(s, { startMs: 10, endMs: 16 })).map((r) => (r as { row: Row }).row['ts'])).to.deep.equal([10, 15]);
    expect((await rowsOf(s, { tagEquals: { host: 'b' } })).map((r) => (r as { row: Row }).row['usage'])).to.deep.equal([3]);
  });

  it('flush: freeze + flush-edit move rows into an SST; reads merge memtable and SSTs, newest version wins, tombstones hide', async () => {
    const ssts = new MemorySsts();
    const s = new RegionState(schema, 'r1', ssts);
    s.onMembership([1, 2, 3], []);
    s.apply(1, write(1, [['a', 1, 10, 1], ['a', 1, 20, 2], ['b', 1, 15, 3]]));
    s.apply(2, freeze(), 7);
    expect(s.frozen.map((f) => f.index)).to.deep.equal([2]);
    s.apply(3, write(2, [['a', 1, 10, 9]])); // newer version of a flushed key, in the new memtable
    s.apply(4, flushEdit(2, ssts.flush(s, 'sst-2')));
    expect(s.flushedIndex).to.equal(2);
    expect(s.flushedTerm).to.equal(7);
    expect(s.frozen).to.deep.equal([]);
    expect(s.ssts.map((x) => x.key)).to.deep.equal(['sst-2']);
    s.apply(5, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: 3, keys: [['b', 1, 15]] }));
    expect((await s.get({ host: 'a', core: 1, ts: 10 }))?.row['usage']).to.equal(9);
    expect((await s.get({ host: 'a', core: 1, ts: 20 }))?.version).to.equal(1);
    expect(await s.get({ host: 'b', core: 1, ts: 15 })).to.equal(null);
    expect((await rowsOf(s)).map((r) => (r as { row: Row }).row['ts'])).to.deep.equal([10, 20]);
    // A conditional write must see the SST's version of a key not in any memtable.
    expect(await s.apply(6, write(4, [['a', 1, 20, 5]], { expectVersion: 1 }))).to.deep.equal({ status: 'ok', version: 6, rows: 1 });
    // A duplicate flush-edit (e.g. re-proposed by a new leader) changes nothing.
    s.apply(7, flushEdit(2, ssts.flush({ frozen: [{ memtable: new Memtable() }] } as unknown as RegionState, 'sst-dup')));
    expect(s.ssts.map((x) => x.key)).to.deep.equal(['sst-2']);
  });

  it('the manifest is the snapshot: two replicas agree, and a replica rebuilt from it reads the same rows', async () => {
    const ssts = new MemorySsts();
    const a = new RegionState(schema, 'r1', ssts);
    const b = new RegionState(schema, 'r1', ssts);
    let index = 0;
    const both = async (cmd: Uint8Array) => {
      index++;
      await a.apply(index, cmd, 3);
      await b.apply(index, cmd, 3);
    };
    for (let i = 1; i <= 50; i++) await both(write(i, [[`h${i % 7}`, i % 3, i, i / 2]]));
    await both(freeze());
    const sst = ssts.flush(a, 'sst-a');
    await both(flushEdit(51, sst));
    for (let i = 51; i <= 60; i++) await both(write(i, [[`h${i % 7}`, i % 3, i, i / 2]]));
    expect(await rowsOf(a)).to.deep.equal(await rowsOf(b));
    const point = a.snapshotPoint()!;
    expect(point.index).to.equal(51);
    const c = RegionState.deserialize(schema, point.data, 'r1', ssts);
    expect(c.appliedIndex).to.equal(51);
    // The log after the flushed index replays onto the manifest state: same rows as a.
    c.apply(52, flushEdit(51, sst)); // the edit itself is above the flushed index: replayed, a no-op
    for (let i = 51; i <= 60; i++) c.apply(i + 2, write(i, [[`h${i % 7}`, i % 3, i, i / 2]]));
    expect(await rowsOf(c)).to.deep.equal(await rowsOf(a));
    // Dedup survives the manifest: a retry of request 60 is known, not applied again...
    expect(c.apply(63, write(60, [['h4', 0, 60, 30]]))).to.deep.equal({ status: 'ok', version: 62, rows: 1 });
    // ...and so does an id applied before the flush, with the command it answered.
    expect(c.apply(64, write(5, [['h5', 2, 5, 2.5]]))).to.deep.equal({ status: 'ok', version: 5, rows: 1 });
    expect(c.apply(65, write(5, [['zz', 0, 1, 1]]))).to.deep.equal({ status: 'request-id-reused' });
    const damaged = point.data.slice();
    damaged[damaged.byteLength - 2]! ^= 1;
    try {
      RegionState.deserialize(schema, damaged, 'r1', ssts);
      expect.fail('must detect damage');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.Corruption)).to.equal(true);
      expect((err as Error).message).to.match(/manifest.*crc32c/);
    }
  });

  it('the snapshot point encodes its manifest when its data is read, not when the point is asked for (every ready cycle)', async () => {
    const ssts = new MemorySsts();
    const wall = new ManualClock(1_000);
    const s = new RegionState(schema, 'r1', ssts, wall);
    s.apply(1, write(1, [['h1', 1, 1, 1]]));
    s.apply(2, freeze());
    s.apply(3, flushEdit(2, ssts.flush(s, 'sst-a')));
    const point = s.snapshotPoint()!;
    wall.advance(5_000);
    expect(point.index).to.equal(2);
    expect(decodeManifest(point.data, 'snapshot point').writtenAtMs, 'encoded at the read').to.equal(6_000);
    expect(decodeManifest(point.data, 'snapshot point').ssts.map((x) => x.key)).to.deep.equal(['sst-a']);
  });

  it('malformed command bytes are CORRUPTION, not a crash', () => {
    for (const bytes of [new Uint8Array([]), new Uint8Array([9, 1]), new Uint8Array([1, 1, 123]), new Uint8Array([1, 9, 123, 125])]) {
      try {
        decodeCommand(bytes);
        expect.fail('must throw');
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.Corruption)).to.equal(true);
      }
    }
  });
});

describe('engine: size-tiered compaction', () => {
  it('picks the newest run of one size tier, nothing below the width; a full region merges its lightest pair; an explicit request merges all', () => {
    const pick = (sizes: number[], everything = false) => pickCompactionRun(sizes, 6, everything, 1);
    expect(pick([1, 1, 1, 1, 1])).to.equal(null);
    expect(pick([1, 1, 1, 1, 1, 1])).to.deep.equal({ start: 0, end: 6 });
    expect(pick([1, 1, 1, 1, 1, 20]), 'a tier of 5 is not full yet').to.equal(null);
    expect(pick([1, 1, 1, 1, 1, 1, 20, 40]), 'the big old SSTs are left alone').to.deep.equal({ start: 0, end: 6 });
    expect(pick([20, 1, 1, 1, 1, 1, 1, 80]), 'a full tier behind a bigger newest SST').to.deep.equal({ start: 1, end: 7 });
    const doubling = Array.from({ length: 12 }, (_, i) => 2 ** i);
    expect(pick(doubling.slice(0, 11)), 'no tier full, 11 SSTs').to.equal(null);
    expect(pick(doubling), 'no tier full, 12 SSTs: the lightest pair').to.deep.equal({ start: 0, end: 2 });
    expect(pick([1, 20], true)).to.deep.equal({ start: 0, end: 2 });
    expect(pick([1], true)).to.equal(null);
    expect(pickCompactionRun([100, 5_000_000, 200, 300, 400, 500], 6, false, 1 << 20), 'below the floor, small SSTs share a tier').to.equal(null);
    expect(pickCompactionRun([100, 200, 300, 400, 500, 600_000], 6, false, 1 << 20)).to.deep.equal({ start: 0, end: 6 });
  });

  it('rewrites each byte O(log n) times where merging everything rewrote the region every time', () => {
    const rewrittenBy = (everything: boolean) => {
      let sizes: number[] = [];
      let rewritten = 0;
      let maxCount = 0;
      for (let flush = 0; flush < 400; flush++) {
        sizes = [1, ...sizes];
        const run = everything ? (sizes.length >= 6 ? { start: 0, end: sizes.length } : null) : pickCompactionRun(sizes, 6, false, 1);
        if (run) {
          const merged = everything ? sizes : sizes.slice(run.start, run.end);
          const total = merged.reduce((a, b) => a + b, 0);
          rewritten += total;
          sizes = everything ? [total] : [...sizes.slice(0, run.start), total, ...sizes.slice(run.end)];
        }
        maxCount = Math.max(maxCount, sizes.length);
      }
      return { rewritten, maxCount };
    };
    const tiered = rewrittenBy(false);
    const full = rewrittenBy(true);
    expect(full.rewritten).to.be.greaterThan(10_000); // ~ n²/10
    expect(tiered.rewritten, JSON.stringify({ tiered, full })).to.be.below(400 * 12); // ~ n log n
    expect(tiered.maxCount).to.be.at.most(2 * 6);
  });

  const meta = (key: string, size = 100): SstMeta => ({ key, size, entries: 1, maxVersion: 1, minTimestampMs: 0, maxTimestampMs: 0 });
  const compactionEdit = (inputs: string[], output: SstMeta | null) => encodeCommand({ kind: 'compaction-edit', inputs, output });

  it('a compaction-edit replaces a contiguous run in place; anything else is ignored, on every replica alike', () => {
    const s = new RegionState(schema);
    let index = 0;
    for (const key of ['A', 'B', 'C', 'D']) {
      const at = ++index;
      s.apply(at, freeze());
      s.apply(++index, flushEdit(at, meta(key)));
    }
    const keys = () => s.ssts.map((x) => x.key);
    expect(keys()).to.deep.equal(['D', 'C', 'B', 'A']);
    s.apply(++index, compactionEdit(['C', 'B'], meta('X')));
    expect(keys()).to.deep.equal(['D', 'X', 'A']);
    s.apply(++index, compactionEdit(['C', 'B'], meta('Y')));
    expect(keys(), 'a duplicate').to.deep.equal(['D', 'X', 'A']);
    s.apply(++index, compactionEdit(['D', 'A'], meta('Z')));
    expect(keys(), 'not contiguous').to.deep.equal(['D', 'X', 'A']);
    s.apply(++index, compactionEdit(['A', 'X'], meta('Z')));
    expect(keys(), 'out of order').to.deep.equal(['D', 'X', 'A']);
    s.apply(++index, compactionEdit(['X', 'A'], null));
    expect(keys(), 'a suffix merged away').to.deep.equal(['D']);
  });

  it('a large merge lets the event loop turn (timers, I/O, raft) every ROWS_PER_YIELD rows', async () => {
    const ssts = new MemorySsts();
    const s = new RegionState(schema, '1', ssts);
    const rows = 20 * ROWS_PER_YIELD;
    s.apply(1, write(1, Array.from({ length: rows }, (_, i) => [`h${i}`, 1, 10, i])));
    s.apply(2, freeze());
    s.apply(3, flushEdit(2, ssts.flush(s, 'A')));
    const { result: merged, turns } = await countingTurns(() => mergeToBytes(s, s.ssts, true));
    expect(merged!.properties.entryCount).to.equal(rows);
    expect(turns, 'event-loop turns during the merge').to.be.at.least(rows / ROWS_PER_YIELD / 2);
  });

  it('a merge hands its output to the object store in chunks as it builds it, never the whole SST at once', async () => {
    const ssts = new MemorySsts();
    const s = new RegionState(schema, '1', ssts);
    const rows = 60_000;
    s.apply(1, write(1, Array.from({ length: rows }, (_, i) => [`host-${i}`, i % 8, 1_700_000_000_000 + i, i / 7])));
    s.apply(2, freeze());
    s.apply(3, flushEdit(2, ssts.flush(s, 'A')));
    const chunks: Uint8Array[] = [];
    const written = await mergeSsts(s, s.ssts, true, { write: async (chunk) => void chunks.push(chunk) });
    expect(written!.size, 'an SST of several chunks').to.be.greaterThan(2 * SST_WRITE_CHUNK_BYTES);
    expect(chunks.length).to.be.greaterThan(2);
    const largest = Math.max(...chunks.map((c) => c.byteLength));
    expect(largest, 'a chunk is about SST_WRITE_CHUNK_BYTES (plus at most one block)').to.be.at.most(SST_WRITE_CHUNK_BYTES + 2 * SST_BLOCK_TARGET_BYTES);
    const bytes = new Uint8Array(Buffer.concat(chunks));
    expect(bytes.byteLength).to.equal(written!.size);
    const reader = await SstReader.open(sstSourceFromBytes('merged', bytes));
    let n = 0;
    for await (const _ of reader.scan()) n++;
    expect(n, 'the chunks make one valid SST with every row').to.equal(rows);
  });

  it('merging SSTs above the oldest keeps their tombstones, so deleted rows stay deleted', async () => {
    const ssts = new MemorySsts();
    const s = new RegionState(schema, '1', ssts);
    let index = 0;
    const flushAs = (name: string) => {
      const at = ++index;
      s.apply(at, freeze());
      s.apply(++index, flushEdit(at, ssts.flush(s, name)));
    };
    s.apply(++index, write(1, [['k1', 1, 10, 1], ['k2', 1, 10, 2]]));
    flushAs('A');
    s.apply(++index, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: 2, keys: [['k1', 1, 10]] }));
    flushAs('B');
    s.apply(++index, write(3, [['k3', 1, 10, 3]]));
    flushAs('C');
    const [c, b] = s.ssts;
    const kept = await mergeToBytes(s, [c!, b!], false);
    const dropped = await mergeToBytes(s, [c!, b!], true);
    expect(kept!.properties.tombstoneCount).to.equal(1);
    expect(dropped!.properties.tombstoneCount, 'what a wrong merge would do').to.equal(0);
    ssts.objects.set('X', kept!.bytes);
    s.apply(++index, compactionEdit([c!.key, b!.key], { ...meta('X', kept!.bytes.byteLength), entries: kept!.properties.entryCount }));
    expect(s.ssts.map((x) => x.key)).to.deep.equal(['X', 'A']);
    expect(await s.get({ host: 'k1', core: 1, ts: 10 }), 'k1 stays deleted').to.equal(null);
    expect((await s.get({ host: 'k2', core: 1, ts: 10 }))?.row['usage']).to.equal(2);
    expect((await s.get({ host: 'k3', core: 1, ts: 10 }))?.row['usage']).to.equal(3);
    // With the oldest SST in the run, tombstones can go.
    const all = await mergeToBytes(s, s.ssts, true);
    expect(all!.properties.entryCount).to.equal(2);
    expect(all!.properties.tombstoneCount).to.equal(0);
  });

  // The merge walks each input a decoded block at a time and steps within a block without an
  // await (RegionState.mergedSstBatches): block edges, keys in several inputs at once and
  // tombstones are where such a walk goes wrong. A reference built from the inputs' own entries
  // (highest version of each key) is what every output must equal.
  it('a merge of overlapping SSTs of many blocks writes exactly each key\'s newest entry, tombstones kept or dropped (seeded, against the inputs read one by one)', async () => {
    const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');
    for (let seed = 1; seed <= 8; seed++) {
      const rand = new SeededRand(seed);
      const ssts = new MemorySsts();
      const s = new RegionState(schema, '1', ssts);
      let index = 0;
      let requestId = 0;
      const flushes = 2 + rand.int(4);
      for (let f = 0; f < flushes; f++) {
        const keys = new Set<string>();
        const rows: (string | number)[][] = [];
        for (let n = 800 + rand.int(3000); rows.length < n; ) {
          const row = [`h${rand.int(4000)}`, rand.int(3), 10 + rand.int(2)];
          if (keys.has(row.join())) continue;
          keys.add(row.join());
          rows.push([...row, rand.int(1_000_000)]);
        }
        s.apply(++index, write(++requestId, rows));
        const deleted = rows.filter(() => rand.chance(0.1)).map((r) => r.slice(0, 3));
        if (deleted.length > 0) s.apply(++index, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: ++requestId, keys: deleted }));
        const at = ++index;
        s.apply(at, freeze());
        s.apply(++index, flushEdit(at, ssts.flush(s, `sst-${f}`)));
      }
      const start = rand.int(s.ssts.length - 1);
      const inputs = s.ssts.slice(start, start + 2 + rand.int(s.ssts.length - start - 1));
      const newest = new Map<string, { key: Uint8Array; version: number; value: Uint8Array | null }>();
      let blocks = 0;
      for (const meta of inputs) {
        const reader = await ssts.open(meta);
        blocks += reader.properties.blockCount;
        for await (const e of reader.scan()) {
          const seen = newest.get(hex(e.key));
          if (!seen || e.version > seen.version) newest.set(hex(e.key), e);
        }
      }
      expect(blocks, `seed ${seed}: inputs of many blocks`).to.be.greaterThan(inputs.length * 2);
      for (const dropTombstones of [false, true]) {
        const expected = [...newest.values()]
          .filter((e) => !dropTombstones || e.value !== null)
          .sort((a, b) => compareBytes(a.key, b.key))
          .map((e) => [hex(e.key), e.version, e.value === null ? null : hex(e.value)]);
        const merged = await mergeToBytes(s, inputs, dropTombstones);
        const out: unknown[] = [];
        for await (const e of (await SstReader.open(sstSourceFromBytes('merged', merged!.bytes))).scan()) out.push([hex(e.key), e.version, e.value === null ? null : hex(e.value)]);
        expect(out, `seed ${seed}, ${inputs.length} inputs, dropTombstones ${dropTombstones}`).to.deep.equal(expected);
      }
    }
  });

  it('a merge that drops nothing but tombstones still lets the event loop turn every ROWS_PER_YIELD entries', async () => {
    const ssts = new MemorySsts();
    const s = new RegionState(schema, '1', ssts);
    const rows = 20 * ROWS_PER_YIELD;
    const keys = Array.from({ length: rows }, (_, i) => [`h${i}`, 1, 10]);
    s.apply(1, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: 1, keys }));
    s.apply(2, freeze());
    s.apply(3, flushEdit(2, ssts.flush(s, 'A')));
    const { result: merged, turns } = await countingTurns(() => mergeToBytes(s, s.ssts, true));
    expect(merged, 'every entry dropped: no SST').to.equal(null);
    expect(turns, 'event-loop turns during the merge').to.be.at.least(rows / ROWS_PER_YIELD / 2);
  });

  it('a large flush lets the event loop turn every ROWS_PER_YIELD rows and writes every row', async () => {
    const s = new RegionState(schema, '1', new MemorySsts());
    const rows = 20 * ROWS_PER_YIELD;
    s.apply(1, write(1, Array.from({ length: rows }, (_, i) => [`h${i}`, 1, 10, i])));
    s.apply(2, freeze());
    const chunks: Uint8Array[] = [];
    const { result: written, turns } = await countingTurns(() => writeFlushSst(s.frozen[0]!, { write: async (c) => void chunks.push(c) }));
    expect(written!.properties.entryCount).to.equal(rows);
    expect(turns, 'event-loop turns during the flush').to.be.at.least(rows / ROWS_PER_YIELD / 2);
  });
});

describe('engine: flush and compaction policy (src/engine/flush.ts, compaction.ts)', () => {
  const policy = { flushBytes: 1000, flushAgeMs: 5000 };
  const idle = { dirtySinceMs: undefined, freezing: false, uploading: false, requested: false, snapshotRequested: false };
  const region = (count: number, sizeBytes: number, frozen = 0) => ({ memtable: { count, sizeBytes }, frozen: new Array(frozen).fill({}) });

  it('a frozen memtable is uploaded before anything else, one upload at a time', () => {
    expect(nextFlushStep(region(5, 5000, 1), idle, 0, policy)).to.equal('upload');
    expect(nextFlushStep(region(5, 5000, 1), { ...idle, uploading: true }, 0, policy)).to.equal('none');
  });

  it('the active memtable is frozen when big enough, old enough, asked for, or wanted by GC — and never twice at once', () => {
    expect(nextFlushStep(region(5, 999, 0), idle, 0, policy)).to.equal('none');
    expect(nextFlushStep(region(5, 1000, 0), idle, 0, policy)).to.equal('freeze');
    expect(nextFlushStep(region(5, 10, 0), { ...idle, dirtySinceMs: 100 }, 5099, policy)).to.equal('none');
    expect(nextFlushStep(region(5, 10, 0), { ...idle, dirtySinceMs: 100 }, 5100, policy)).to.equal('freeze');
    expect(nextFlushStep(region(5, 10, 0), { ...idle, requested: true }, 0, policy)).to.equal('freeze');
    expect(nextFlushStep(region(0, 0, 0), { ...idle, snapshotRequested: true }, 0, policy), 'GC: even an empty memtable').to.equal('freeze');
    expect(nextFlushStep(region(5, 5000, 0), { ...idle, freezing: true }, 0, policy)).to.equal('none');
  });

  it('an explicit request with nothing to flush is forgotten', () => {
    expect(nextFlushStep(region(0, 0, 0), { ...idle, requested: true }, 0, policy)).to.equal('forget-request');
  });

  it('the age trigger starts when the memtable first holds rows and resets when it is empty', () => {
    expect(dirtySince(region(0, 0), 50, 100)).to.equal(undefined);
    expect(dirtySince(region(1, 10), undefined, 100)).to.equal(100);
    expect(dirtySince(region(3, 30), 100, 900)).to.equal(100);
  });

  it('a compaction is due at the SST threshold, or on request with two SSTs; tombstones drop only with the oldest SST', () => {
    expect(compactionDue(5, 6, false)).to.equal(false);
    expect(compactionDue(6, 6, false)).to.equal(true);
    expect(compactionDue(2, 6, true)).to.equal(true);
    expect(compactionDue(1, 6, true)).to.equal(false);
    const sst = (key: string, size: number): SstMeta => ({ key, size, entries: 1, maxVersion: 1, minTimestampMs: 0, maxTimestampMs: 0 });
    // Newest first: two small new ones on top of a big old one.
    const ssts = [sst('a', 10), sst('b', 10), sst('c', 1 << 30)];
    expect(planCompaction(ssts, 2, false)).to.deep.equal({ inputs: [ssts[0], ssts[1]], dropTombstones: false });
    expect(planCompaction(ssts, 2, true)).to.deep.equal({ inputs: ssts, dropTombstones: true });
    expect(planCompaction(ssts.slice(0, 1), 2, true)).to.equal(null);
  });
});
