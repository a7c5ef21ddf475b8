import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import {
  Memtable,
  RegionState,
  type TableSchema,
  compareBytes,
  encodeCommand,
  encodePrimaryKey,
  decodeCommand,
  makeRegionId,
  parseRegionId,
  regionNumberOf,
  validateRow,
  validateSchema,
} from '../../src/engine/index.js';

const schema: TableSchema = {
  name: 'cpu',
  tableId: 1024,
  regionCount: 4,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'core', type: 'int64', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'usage', type: 'float64', semantic: 'field' },
  ],
};

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

describe('engine: region state (deterministic apply)', () => {
  it('upserts by primary key with version = raft index, and reads back', () => {
    const s = new RegionState(schema);
    s.apply(5, write(1, [['a', 1, 10, 0.5]]));
    s.apply(6, write(2, [['a', 1, 10, 0.7]]));
    expect(s.get({ host: 'a', core: 1, ts: 10 })).to.deep.equal({ row: { host: 'a', core: 1, ts: 10, usage: 0.7 }, version: 6 });
  });

  it('a retried request id is applied once and returns the first result', () => {
    const s = new RegionState(schema);
    const first = s.apply(1, write(7, [['a', 1, 10, 1]]));
    s.apply(2, write(8, [['a', 1, 10, 2]]));
    const retry = s.apply(3, write(7, [['a', 1, 10, 1]]));
    expect(retry).to.deep.equal(first);
    expect(s.get({ host: 'a', core: 1, ts: 10 })!.row['usage']).to.equal(2);
  });

  it('conditional writes: expectAbsent and expectVersion', () => {
    const s = new RegionState(schema);
    expect(s.apply(1, write(1, [['a', 1, 10, 1]], { expectAbsent: true }))).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, write(2, [['a', 1, 10, 2]], { expectAbsent: true }))).to.deep.equal({ status: 'condition-failed', currentVersion: 1 });
    expect(s.apply(3, write(3, [['a', 1, 10, 3]], { expectVersion: 2 }))).to.deep.equal({ status: 'condition-failed', currentVersion: 1 });
    expect(s.apply(4, write(4, [['a', 1, 10, 4]], { expectVersion: 1 }))).to.deep.equal({ status: 'ok', version: 4, rows: 1 });
  });

  it('deletes leave tombstones; scans filter by time range and tags', () => {
    const s = new RegionState(schema);
    s.apply(1, write(1, [['a', 1, 10, 1], ['a', 1, 20, 2], ['b', 1, 15, 3]]));
    s.apply(2, encodeCommand({ kind: 'delete', clientId: 'c1', requestId: 2, keys: [['a', 1, 20]] }));
    expect(s.get({ host: 'a', core: 1, ts: 20 })).to.equal(null);
    expect([...s.scan({ startMs: 10, endMs: 16 })].map((r) => r.row['ts'])).to.deep.equal([10, 15]);
    expect([...s.scan({ tagEquals: { host: 'b' } })].map((r) => r.row['usage'])).to.deep.equal([3]);
  });

  it('two replicas fed the same commands serialize identically; the snapshot round-trips', () => {
    const a = new RegionState(schema);
    const b = new RegionState(schema);
    for (let i = 1; i <= 50; i++) {
      const cmd = write(i, [[`h${i % 7}`, i % 3, i, i / 2]]);
      a.apply(i, cmd);
      b.apply(i, cmd);
    }
    expect(Buffer.from(a.serialize()).equals(Buffer.from(b.serialize()))).to.equal(true);
    const c = RegionState.deserialize(schema, a.serialize());
    expect(Buffer.from(c.serialize()).equals(Buffer.from(a.serialize()))).to.equal(true);
    const damaged = a.serialize();
    damaged[damaged.byteLength - 2]! ^= 1;
    try {
      RegionState.deserialize(schema, damaged);
      expect.fail('must detect damage');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.Corruption)).to.equal(true);
    }
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
