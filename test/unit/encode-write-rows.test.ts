// encodeWriteRows (src/rpc/batch-wire.ts): a writing client's rows encoded straight from the
// validated rows must be the very bytes the encoders write for the same rows as proto objects
// (toProtoRow), in a Batch request and in a unary Write, and must decode (by proto-loader, the
// reference any protobuf library agrees with) to the rows given. Seeded: a failure names its case;
// replay with the same SEED.
import { expect } from 'chai';
import { AssertionError } from '../../src/common/assert.js';
import { SeededRand } from '../../src/common/rand.js';
import { type ColumnSchema, type ColumnType, type Row, type TableSchema, type Value, validateRow } from '../../src/engine/schema.js';
import { EncodedWriteRows, encodeBatchRequest, encodeUnaryWriteRequest, encodeWriteRows } from '../../src/rpc/batch-wire.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { fromProtoRow, toProtoRow } from '../../src/rpc/values.js';

const SEED = Number(process.env['SEED'] ?? 31_007);
const CASES = 400;

const UNITS = ['a', 'Z', '0', ' ', '_', '\u0000', '\n', '\u007f', 'é', 'ß', '✓', '中', '\u{1F600}', '\uFFFD', '\ud800', '\udfff'];
const TYPES: readonly ColumnType[] = ['string', 'int64', 'float64', 'bool', 'timestamp_ms'];

function randomString(rand: SeededRand): string {
  const length = rand.chance(0.1) ? 40 + rand.int(400) : rand.int(12);
  let s = '';
  const asciiOnly = rand.chance(0.5);
  for (let i = 0; i < length; i++) s += asciiOnly ? String.fromCharCode(32 + rand.int(95)) : rand.pick(UNITS);
  return s;
}

function randomInteger(rand: SeededRand): number {
  switch (rand.int(6)) {
    case 0:
      return 0;
    case 1:
      return rand.int(200) - 100;
    case 2:
      return Number.MAX_SAFE_INTEGER - rand.int(3);
    case 3:
      return -Number.MAX_SAFE_INTEGER + rand.int(3);
    case 4:
      return (rand.chance(0.5) ? -1 : 1) * Math.floor(rand.next() * 2 ** (1 + rand.int(52)));
    default:
      return 1_700_000_000_000 + rand.int(1_000_000);
  }
}

function randomValue(rand: SeededRand, c: ColumnSchema): Value {
  if (c.semantic !== 'timestamp' && rand.chance(0.15)) return null;
  switch (c.type) {
    case 'string':
      return randomString(rand);
    case 'int64':
    case 'timestamp_ms':
      return randomInteger(rand);
    case 'float64':
      return rand.pick([0, -0, 1.5, -2.25, Number.MIN_VALUE, Number.MAX_VALUE, -Number.MAX_VALUE, rand.next() * 1e6 - 5e5, 2 ** 53 + 2]);
    case 'bool':
      return rand.chance(0.5);
  }
}

function randomSchema(rand: SeededRand, id: number): TableSchema {
  const columns: ColumnSchema[] = [];
  const count = 1 + rand.int(7);
  const tsAt = rand.int(count);
  for (let i = 0; i < count; i++) {
    if (i === tsAt) columns.push({ name: `ts_${i}`, type: 'timestamp_ms', semantic: 'timestamp' });
    else {
      const type = rand.pick(TYPES.filter((t) => t !== 'timestamp_ms' || rand.chance(0.3)));
      const semantic = type !== 'float64' && rand.chance(0.4) ? 'tag' : 'field';
      // Names of every length class: one byte, short, and long enough for a 2-byte length varint.
      const name = rand.chance(0.1) ? `c${i}_${'x'.repeat(126)}`.slice(0, 128) : rand.chance(0.2) ? `_${i}` : `col_${i}_${rand.int(1000)}`;
      columns.push({ name, type, semantic });
    }
  }
  return { name: `t${id}`, tableId: 1024 + id, columns, regionCount: 1 + rand.int(4) };
}

function randomRows(rand: SeededRand, schema: TableSchema): Row[] {
  const count = rand.chance(0.05) ? 0 : 1 + rand.int(rand.chance(0.1) ? 300 : 6);
  return Array.from({ length: count }, () => {
    const row: Row = {};
    for (const c of schema.columns) if (c.semantic === 'timestamp' || !rand.chance(0.1)) row[c.name] = randomValue(rand, c);
    return validateRow(schema, row);
  });
}

describe('encodeWriteRows: a client encodes validated rows straight to WriteRequest.rows', () => {
  it(`${CASES} seeded schemas and rows: the same bytes as the rows as proto objects (Batch and unary Write), decoding to the same rows (SEED=${SEED})`, () => {
    const rand = new SeededRand(SEED);
    const batch = loadProtos().services.Database.service['Batch']!;
    let rowsSeen = 0;
    let nonAscii = 0;
    for (let i = 0; i < CASES; i++) {
      const schema = randomSchema(rand, i);
      const rows = randomRows(rand, schema);
      const where = `case ${i} (replay: SEED=${SEED} mocha test/unit/encode-write-rows.test.ts)`;
      const encoded = encodeWriteRows(schema, rows);
      expect(encoded).to.be.instanceOf(EncodedWriteRows);
      expect(encoded.count, where).to.equal(rows.length);
      const common = { table: schema.name, region_id: rand.chance(0.5) ? '' : `${schema.tableId}-0`, client_id: 'c1', request_id: String(1 + rand.int(1e9)), completed_below: '1' };
      const asObjects = rows.map((r) => toProtoRow(schema, r));
      const id = String(rand.int(1e6));
      const ours = encodeBatchRequest({ id, write: { ...common, rows: encoded }, timeout_ms: 5000 });
      const reference = encodeBatchRequest({ id, write: { ...common, rows: asObjects }, timeout_ms: 5000 });
      expect(ours.equals(reference), `${where}: Batch bytes differ`).to.equal(true);
      expect(encodeUnaryWriteRequest({ ...common, rows: encoded }).equals(encodeUnaryWriteRequest({ ...common, rows: asObjects })), `${where}: Write bytes differ`).to.equal(true);
      // And what they say: proto-loader reads the rows back as given.
      const decoded = batch.requestDeserialize(ours) as { write: { rows: Parameters<typeof fromProtoRow>[0][] } };
      // (A lone surrogate has no UTF-8: it goes as U+FFFD, as Buffer and every encoder write it.)
      const asSent = rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'string' ? Buffer.from(v, 'utf8').toString('utf8') : v])));
      expect(decoded.write.rows.map((r, j) => validateRow(schema, fromProtoRow(r, `rows[${j}]`))), where).to.deep.equal(asSent);
      rowsSeen += rows.length;
      for (const r of rows) for (const v of Object.values(r)) if (typeof v === 'string' && Buffer.byteLength(v) !== v.length) nonAscii++;
    }
    // The generator reached what it is for.
    expect(rowsSeen).to.be.greaterThan(1000);
    expect(nonAscii).to.be.greaterThan(100);
  });

  it('a row whose value does not fit its column (not validated) is a bug of the caller, not a wrong byte', () => {
    const schema: TableSchema = {
      name: 't',
      tableId: 1024,
      regionCount: 1,
      columns: [
        { name: 'h', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
        { name: 'n', type: 'int64', semantic: 'field' },
      ],
    };
    expect(() => encodeWriteRows(schema, [{ h: 1, ts: 5, n: 1 }])).to.throw(AssertionError, /column h \(string\)/);
    expect(() => encodeWriteRows(schema, [{ h: 'a', ts: 1.5, n: 1 }])).to.throw(AssertionError, /column ts \(timestamp_ms\)/);
    expect(() => encodeWriteRows(schema, [{ h: 'a', ts: 5, n: '7' }])).to.throw(AssertionError, /column n \(int64\)/);
    expect(() => encodeWriteRows(schema, [{ h: 'a', ts: 5, n: 2 ** 60 }])).to.throw(AssertionError, /column n \(int64\)/);
  });
});
