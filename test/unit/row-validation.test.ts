// The request path's per-row work (src/rpc/values.ts fromProtoRow, src/engine/schema.ts
// validateRow, src/engine/key.ts regionNumberOf, src/rpc/proto.ts safeI64/safeU64) takes shortcuts that skip work the answer does
// not need: string byte counts only near a limit, common value kinds without an error message
// made per value, a region hashed where its key was encoded. Each is checked here against the
// plain definition it replaces, over seeded rows that sit on and around every limit.
import { expect } from 'chai';
import { limits } from '../../src/common/limits.js';
import { SeededRand } from '../../src/common/rand.js';
import { encodePrimaryKey, regionNumberOf } from '../../src/engine/key.js';
import { type Row, type TableSchema, validateRow } from '../../src/engine/schema.js';
import { i64, safeI64, safeU64 } from '../../src/rpc/proto.js';
import { type ProtoRow, type ProtoValue, fromProtoRow, fromProtoValue } from '../../src/rpc/values.js';

const schema: TableSchema = {
  name: 'rows',
  tableId: 9,
  regionCount: 7,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'dc', type: 'string', semantic: 'tag' },
    { name: 'note', type: 'string', semantic: 'field' },
    { name: 'n', type: 'int64', semantic: 'field' },
  ],
};

/** Code units of 1, 2, 3 and 4 UTF-8 bytes (a surrogate pair), and a lone surrogate (3 bytes, as U+FFFD). */
const UNITS = ['a', 'é', '€', '🙂', '\ud800'];

function stringOfAbout(rand: SeededRand, bytes: number): string {
  const unit = UNITS[rand.int(UNITS.length)]!;
  const perUnit = Buffer.byteLength(unit);
  let s = unit.repeat(Math.max(0, Math.floor(bytes / perUnit) + rand.range(-2, 2)));
  while (rand.chance(0.5)) s += UNITS[rand.int(UNITS.length)]!;
  return s;
}

/** validateRow as defined before the shortcuts: exact byte counts, every check made. */
function accepts(row: Row): boolean {
  for (const name of Object.keys(row)) if (!schema.columns.some((c) => c.name === name)) return false;
  for (const c of schema.columns) {
    const v = row[c.name];
    if (v === null || v === undefined) {
      if (c.semantic === 'timestamp') return false;
      continue;
    }
    if (c.type === 'string' && (typeof v !== 'string' || Buffer.byteLength(v) > limits.stringValueBytesMax)) return false;
    if ((c.type === 'int64' || c.type === 'timestamp_ms') && (typeof v !== 'number' || !Number.isSafeInteger(v))) return false;
  }
  let key = 8;
  for (const c of schema.columns) {
    if (c.semantic !== 'tag') continue;
    const v = row[c.name];
    key += v === null || v === undefined ? 1 : Buffer.byteLength(v as string) + 3;
  }
  return key <= limits.keyBytesMax;
}

describe('row validation and routing: the shortcuts against their plain definitions (seeded)', () => {
  const seed = Number(process.env['ROW_SEED'] ?? 20261207);

  it('validateRow accepts exactly the rows whose strings and keys fit their limits, counted in UTF-8 bytes', () => {
    const rand = new SeededRand(seed);
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 600; i++) {
      const nearKey = rand.chance(0.5);
      const row: Row = {
        host: nearKey ? stringOfAbout(rand, limits.keyBytesMax / 2 - 6) : `h${i}`,
        dc: rand.chance(0.2) ? null : nearKey ? stringOfAbout(rand, limits.keyBytesMax / 2 - 6) : 'dc',
        ts: rand.chance(0.05) ? 2 ** 53 : i,
        note: rand.chance(0.5) ? stringOfAbout(rand, limits.stringValueBytesMax) : stringOfAbout(rand, limits.stringValueBytesMax / 3),
        n: rand.chance(0.1) ? 1.5 : i,
      };
      if (rand.chance(0.05)) row['bogus'] = 1;
      const want = accepts(row);
      let got = true;
      try {
        validateRow(schema, row);
      } catch (err) {
        expect((err as Error).message, `seed ${seed} row ${i}`).to.match(/^table rows/);
        got = false;
      }
      expect(got, `seed ${seed} row ${i} (replay: ROW_SEED=${seed}): host ${Buffer.byteLength(row['host'] as string)} B, dc ${row['dc'] === null ? 'null' : Buffer.byteLength(row['dc'] as string)} B, note ${Buffer.byteLength(row['note'] as string)} B`).to.equal(want);
      if (want) accepted++;
      else refused++;
    }
    expect(accepted, 'both sides of the limits are reached').to.be.greaterThan(100);
    expect(refused).to.be.greaterThan(100);
  });

  it('regionNumberOf is the FNV-1a hash of the encoded key without its timestamp, modulo the region count', () => {
    const rand = new SeededRand(seed);
    for (let i = 0; i < 500; i++) {
      const row: Row = { host: stringOfAbout(rand, rand.int(300)), dc: rand.chance(0.3) ? null : stringOfAbout(rand, rand.int(20)), ts: rand.range(-1e12, 1e12) };
      const key = encodePrimaryKey(schema, row);
      let h = 0x811c9dc5;
      for (let j = 0; j < key.byteLength - 8; j++) h = Math.imul(h ^ key[j]!, 0x01000193) >>> 0;
      expect(regionNumberOf(schema, row), `seed ${seed} row ${i}`).to.equal(h % schema.regionCount);
    }
  });

  it('safeI64 and safeU64 read exactly the canonical decimals their regular expressions describe, as Number() reads them', () => {
    const rand = new SeededRand(seed);
    const I64 = /^(?:0|-?[1-9][0-9]{0,15})$/;
    const U64 = /^(?:0|[1-9][0-9]{0,15})$/;
    const chars = '0123456789-+ e.x';
    const cases = ['0', '-0', '00', '01', '-', '', '9007199254740991', '-9007199254740991', '9007199254740992', '-9007199254740992', '9999999999999999', '1000000000000000', '99999999999999999', '1e3', ' 1', '+1', '0x10'];
    for (let i = 0; i < 20000; i++) {
      const len = rand.int(19);
      let s = rand.chance(0.3) ? '-' : '';
      for (let j = 0; j < len; j++) s += rand.chance(0.9) ? String(rand.int(10)) : chars[rand.int(chars.length)]!;
      cases.push(s);
    }
    for (const s of cases) {
      const n = Number(s);
      const wantI = I64.test(s) && Number.isSafeInteger(n) ? n : undefined;
      const wantU = U64.test(s) && n <= Number.MAX_SAFE_INTEGER ? n : undefined;
      expect(safeI64(s), `safeI64(${JSON.stringify(s)}) (ROW_SEED=${seed})`).to.equal(wantI);
      expect(safeU64(s), `safeU64(${JSON.stringify(s)}) (ROW_SEED=${seed})`).to.equal(wantU);
    }
  });

  it('fromProtoRow gives each value fromProtoValue gives it, and the same refusal with the same message', () => {
    const rand = new SeededRand(seed);
    const ints = ['0', '-0', '12', '-9007199254740991', '9007199254740991', '9007199254740992', '1e3', ' 1', '01', '', 'x', '-'];
    const value = (): ProtoValue | undefined => {
      switch (rand.int(9)) {
        case 0:
          return { kind: 'string_value', string_value: stringOfAbout(rand, rand.int(8)) };
        case 1:
          return { kind: 'float64_value', float64_value: rand.chance(0.5) ? rand.range(-100, 100) / 7 : 0 };
        case 2:
          return { kind: 'timestamp_ms_value', timestamp_ms_value: ints[rand.int(ints.length)]! };
        case 3:
          return { kind: 'int64_value', int64_value: ints[rand.int(ints.length)]! };
        case 4:
          return { kind: 'bool_value', bool_value: rand.chance(0.5) };
        case 5:
          return { kind: 'null_value', null_value: true } as ProtoValue;
        case 6:
          return { kind: 'string_value' } as ProtoValue; // proto3 default: the field absent
        case 7:
          return { kind: 'bogus_value' } as unknown as ProtoValue;
        default:
          return undefined;
      }
    };
    let refusals = 0;
    for (let i = 0; i < 2000; i++) {
      const values: Record<string, ProtoValue> = {};
      for (const name of ['host', 'ts', 'n', 'note']) if (rand.chance(0.9)) values[name] = value() as ProtoValue;
      const row = { values } as ProtoRow;
      let want: Row | string = {};
      try {
        for (const [name, v] of Object.entries(values)) (want as Row)[name] = fromProtoValue(v, `rows[${i}].${name}`);
      } catch (err) {
        want = (err as Error).message;
      }
      let got: Row | string;
      try {
        got = fromProtoRow(row, `rows[${i}]`);
      } catch (err) {
        got = (err as Error).message;
      }
      if (typeof want === 'string') refusals++;
      expect(got, `seed ${seed} row ${i}: ${JSON.stringify(values)}`).to.deep.equal(want);
      if (typeof got !== 'string') expect(Object.keys(got)).to.deep.equal(Object.keys(values));
    }
    expect(refusals, 'refusals are reached').to.be.greaterThan(100);
    expect(() => i64('1e3', 'f')).to.throw(/f: expected an integer/);
  });
});
