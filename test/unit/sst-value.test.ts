// SST values (src/engine/sst-value.ts): version 2 (binary) round-trips every value exactly;
// version-1 (JSON) values written by the engine before it — a real SST file in
// test/fixtures — still read, and merge into version 2 with the same rows; damaged values are
// CORRUPTION naming the SST and the entry's version, never a crash or a shorter row.
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import fc from 'fast-check';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { RegionState, type SstMeta, type Value, encodeCommand, mergeSsts, sstMetaOf } from '../../src/engine/index.js';
import { type SstOpener, encodeSstValue as encodeEntryValue } from '../../src/engine/region-state.js';
import { SST_VALUE_BINARY, SST_VALUE_JSON_FIRST_BYTE, decodeSstValue, encodeSstValue, encodeSstValueV1 } from '../../src/engine/sst-value.js';
import { SstReader, buildSst, sstSourceFromBytes } from '../../src/engine/sst/format.js';
import { FIXTURE_SCHEMA, fixtureDeletes, fixtureRows } from '../fixtures/sst-values-v1-rows.js';

const valueArb: fc.Arbitrary<Value> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.constantFrom('', '\u0000', 'é', '🙂', 'x'.repeat(32), 'x'.repeat(65), 'ß'.repeat(5000)),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(),
  fc.constantFrom(0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 2 ** 53, 0.1, 127, 128),
);
const listArb = fc.array(valueArb, { maxLength: 8 });
const tsArb = fc.oneof(fc.maxSafeInteger(), fc.constantFrom(0, -1, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 1_700_000_000_000));

const same = (a: readonly Value[], b: readonly Value[] | undefined) => b !== undefined && a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

function expectCorruption(f: () => unknown, mentions: readonly string[]): void {
  try {
    f();
  } catch (err) {
    expect(isRegionDbError(err, ErrorCode.Corruption), `${String(err)}`).to.equal(true);
    for (const m of mentions) expect((err as Error).message).to.include(m);
    return;
  }
  expect.fail('must throw CORRUPTION');
}

/** SSTs kept in memory, opened as the datanode opens them from the object store. */
class MemorySsts implements SstOpener {
  readonly objects = new Map<string, Uint8Array>();
  async open(meta: SstMeta): Promise<SstReader> {
    return SstReader.open(sstSourceFromBytes(meta.key, this.objects.get(meta.key)!));
  }
}

async function rowsOf(s: RegionState): Promise<string[]> {
  const out: string[] = [];
  for await (const r of s.scan()) out.push(JSON.stringify(r));
  return out;
}

describe('engine: SST values (sst-value.ts)', () => {
  it('version 2 round-trips tags, timestamp and fields exactly (every value type, -0, NaN, unicode, long strings)', () => {
    fc.assert(
      fc.property(listArb, tsArb, listArb, (tags, ts, fields) => {
        const bytes = encodeSstValue(tags, ts, fields);
        expect(bytes[0]).to.equal(SST_VALUE_BINARY);
        const v = decodeSstValue(bytes, 'sst-x', 9);
        expect(same(tags, v.tags) && v.timestampMs === ts && same(fields, v.fields), JSON.stringify(v)).to.equal(true);
      }),
      { numRuns: 2000, seed: 20261205 },
    );
  });

  it('version 1 (JSON) values decode as before; the two versions agree on every value JSON carries', () => {
    fc.assert(
      fc.property(listArb, tsArb, listArb, (tags, ts, fields) => {
        const v1 = encodeSstValueV1(tags, ts, fields);
        expect(v1[0]).to.equal(SST_VALUE_JSON_FIRST_BYTE);
        const a = decodeSstValue(v1, 'sst-x', 1);
        expect(a).to.deep.equal(JSON.parse(JSON.stringify({ tags, timestampMs: ts, fields })));
      }),
      { numRuns: 500, seed: 20261205 },
    );
  });

  it('a flush writes version 2; an SST flushed by the JSON engine (test/fixtures/sst-values-v1.sst) reads, and merges into version 2 with the same rows', async () => {
    // What the fixture holds: the same commands applied here, read from the memtable.
    const expected = new RegionState(FIXTURE_SCHEMA, 'fixture');
    expected.apply(1, encodeCommand({ kind: 'write', clientId: 'fixture', requestId: 1, rows: fixtureRows() }));
    expected.apply(2, encodeCommand({ kind: 'delete', clientId: 'fixture', requestId: 2, keys: fixtureDeletes() }));
    const want = await rowsOf(expected);
    expect(want.length).to.equal(59); // 60 rows, one deleted
    for (const e of expected.memtable.scan()) {
      const value = encodeEntryValue(e);
      expect(value === null ? e.op : value[0], 'a flush writes version 2').to.equal(e.op === 'delete' ? 'delete' : SST_VALUE_BINARY);
      // A row's entry (RowEntry) encodes from its values where they lie: the same bytes as from its cells.
      if (value !== null) expect(Buffer.from(value).equals(Buffer.from(encodeSstValue(e.tags, e.timestampMs, e.fields)))).to.equal(true);
    }

    const store = new MemorySsts();
    const bytes = new Uint8Array(readFileSync(new URL('../fixtures/sst-values-v1.sst', import.meta.url)));
    const old: SstMeta = { key: 'regions/fixture/sst/v1.sst', size: bytes.byteLength, entries: 61, maxVersion: 2, minTimestampMs: 0, maxTimestampMs: 0 };
    store.objects.set(old.key, bytes);
    const reader = await store.open(old);
    let values = 0;
    for await (const e of reader.scan()) {
      if (e.value === null) continue;
      values++;
      expect(e.value[0], 'the fixture holds version-1 values').to.equal(SST_VALUE_JSON_FIRST_BYTE);
    }
    expect(values).to.equal(59);
    const state = new RegionState(FIXTURE_SCHEMA, 'fixture', store);
    state.ssts = [old];
    expect(await rowsOf(state), 'a version-1 SST reads the rows it was written from').to.deep.equal(want);

    const chunks: Uint8Array[] = [];
    const written = await mergeSsts(state, [old], false, { write: async (c) => void chunks.push(c) });
    const merged = sstMetaOf('regions/fixture/sst/v2.sst', written!);
    store.objects.set(merged.key, new Uint8Array(Buffer.concat(chunks)));
    for await (const e of (await store.open(merged)).scan()) if (e.value !== null) expect(e.value[0], 'a merge writes version 2').to.equal(SST_VALUE_BINARY);
    state.ssts = [merged];
    expect(await rowsOf(state), 'merged into version 2: the same rows').to.deep.equal(want);
    expect(await state.get({ host: 'host-1', core: -(2 ** 40), ts: 1_700_000_001_000 }), 'the tombstone still hides its row').to.equal(null);
  });

  it('a merge writes each key\'s newest value as its SST stored it, without decoding it: a damaged one is copied and stays CORRUPTION for a reader of the output', async () => {
    const source = new RegionState(FIXTURE_SCHEMA, 'fixture');
    source.apply(1, encodeCommand({ kind: 'write', clientId: 'fixture', requestId: 1, rows: fixtureRows() }));
    const base = [...source.memtable.scan()];
    expect(base.length).to.equal(60);
    const older = base.map((e) => ({ key: e.key, version: 1, value: encodeEntryValue(e) }));
    // Every third key again at version 5: a new value, a tombstone, or (once) a damaged value
    // whose block CRC is right (an unknown value tag: decoding it is CORRUPTION).
    const damaged = Uint8Array.of(SST_VALUE_BINARY, 1, 9, 3, 1, 0);
    const newer = base
      .filter((_, i) => i % 3 === 0)
      .map((e, i) => ({ key: e.key, version: 5, value: i === 4 ? damaged : i % 2 === 1 ? null : encodeSstValue(e.tags, e.timestampMs, ['v5', i]) }));
    const store = new MemorySsts();
    const metas: SstMeta[] = [];
    for (const [name, entries] of [['newer', newer], ['older', older]] as const) {
      const { bytes, properties } = buildSst(entries);
      const meta = sstMetaOf(`regions/fixture/sst/${name}.sst`, { size: bytes.byteLength, properties });
      store.objects.set(meta.key, bytes);
      metas.push(meta);
    }
    const state = new RegionState(FIXTURE_SCHEMA, 'fixture', store);
    state.ssts = metas;
    const chunks: Uint8Array[] = [];
    const written = await mergeSsts(state, metas, false, { write: async (c) => void chunks.push(c) });
    const merged = sstMetaOf('regions/fixture/sst/merged.sst', written!);
    store.objects.set(merged.key, new Uint8Array(Buffer.concat(chunks)));
    const want = new Map<string, { version: number; value: Uint8Array | null }>();
    for (const e of [...older, ...newer]) want.set(Buffer.from(e.key).toString('hex'), e);
    const got: string[] = [];
    for await (const e of (await store.open(merged)).scan()) {
      const key = Buffer.from(e.key).toString('hex');
      got.push(key);
      const w = want.get(key)!;
      expect(e.version, key).to.equal(w.version);
      expect(e.value === null ? null : Buffer.from(e.value).toString('hex'), key).to.equal(w.value === null ? null : Buffer.from(w.value).toString('hex'));
    }
    expect(got).to.deep.equal([...want.keys()].sort());
    const hit = base[12]!; // newer's entry 4: the damaged value
    state.ssts = [merged];
    try {
      await state.get({ host: hit.tags[0]!, core: hit.tags[1]!, ts: hit.timestampMs });
      expect.fail('reading the damaged value must throw');
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
      expect((err as Error).message).to.include(merged.key).and.to.include('version 5');
    }
  });

  it('every truncation and every extra byte of a version-2 value is CORRUPTION naming the SST and the version', () => {
    const bytes = encodeSstValue(['host-1', null, 7], 1_700_000_000_000, [0.25, 'x'.repeat(32), true, -3, 'é🙂']);
    for (let n = 0; n < bytes.byteLength; n++) {
      expectCorruption(() => decodeSstValue(bytes.subarray(0, n), 'regions/r/sst/a.sst', 41), ['regions/r/sst/a.sst', 'version 41']);
    }
    const longer = new Uint8Array(bytes.byteLength + 1);
    longer.set(bytes);
    expectCorruption(() => decodeSstValue(longer, 'a.sst', 41), ['a.sst', '1 trailing bytes']);
  });

  it('damaged fields are CORRUPTION naming the damage', () => {
    const cases: [string, Uint8Array, string][] = [
      ['an unknown first byte', Uint8Array.of(7, 0, 0, 0), 'unknown encoding (first byte 0x07'],
      ['an empty value', new Uint8Array(0), 'unknown encoding (empty'],
      ['an unknown value tag', Uint8Array.of(SST_VALUE_BINARY, 1, 9, 3, 1, 0), 'unknown value tag 9'],
      ['a count beyond the bytes', Uint8Array.of(SST_VALUE_BINARY, 100, 0), '100 tags in 1 bytes'],
      ['a string timestamp', Uint8Array.of(SST_VALUE_BINARY, 0, 6, 1, 0x41, 0), 'timestamp A is not a safe integer'],
      ['a float timestamp', Uint8Array.of(SST_VALUE_BINARY, 0, 5, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, 0), 'timestamp 0.5 is not a safe integer'],
      ['invalid UTF-8', Uint8Array.of(SST_VALUE_BINARY, 1, 6, 2, 0xc3, 0x28, 3, 1, 0), 'not valid UTF-8'],
      ['a version-1 value cut short', new TextEncoder().encode('[1'), 'not valid JSON'],
    ];
    for (const [what, bytes, mentions] of cases) {
      try {
        decodeSstValue(bytes, 'b.sst', 3);
        expect.fail(`${what}: must throw`);
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.Corruption), `${what}: ${String(err)}`).to.equal(true);
        expect((err as Error).message, what).to.include(mentions);
        expect((err as Error).message, what).to.include('SST b.sst');
      }
    }
  });

  it('random damage to version-2 values is CORRUPTION or a value that encodes back to the same bytes', () => {
    const seed = 20261205;
    const rand = new SeededRand(seed);
    let corrupt = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = encodeSstValue([`h-${i}`, i % 3 === 0 ? null : i], 1_700_000_000_000 + i, [i / 7, 'x'.repeat(i % 40), i % 2 === 0]);
      const damaged = bytes.slice();
      for (let k = 1 + rand.int(3); k > 0; k--) damaged[1 + rand.int(damaged.byteLength - 1)] = rand.int(256);
      try {
        const v = decodeSstValue(damaged, 'c.sst', i);
        const again = encodeSstValue(v.tags, v.timestampMs, v.fields!);
        expect(Buffer.from(again).equals(Buffer.from(damaged)), `seed ${seed} case ${i}: a damaged value decoded to something else`).to.equal(true);
      } catch (err) {
        if (!(err instanceof RegionDbError)) throw new Error(`seed ${seed} case ${i}: ${String(err)}`);
        expect(err.code, `seed ${seed} case ${i}`).to.equal(ErrorCode.Corruption);
        corrupt++;
      }
    }
    expect(corrupt).to.be.greaterThan(1000);
  });
});
