// SST format: round trips (get + scan), I/O economy (open reads the tail, get one block, scan only
// overlapping blocks), and corruption detection that names the SST and the failing part.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { crc32c } from '../../src/common/crc32c.js';
import { ErrorCode, isRegionDbError, type RegionDbError } from '../../src/common/errors.js';
import { compareBytes, encodePrimaryKey, keyStringOfBytes, timestampOfKey } from '../../src/engine/key.js';
import type { TableSchema } from '../../src/engine/schema.js';
import {
  buildSst,
  SST_FOOTER_BYTES,
  type SstEntry,
  SstReader,
  type SstReader as SstReaderType,
  type SstSource,
  sstBuilder,
  sstSourceFromBytes,
  sstSourceFromObjectStore,
} from '../../src/engine/sst/format.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ tableId: 1 });

const keyOf = (host: number, ts: number): Uint8Array => encodePrimaryKey(schema, { host: `host-${String(host).padStart(4, '0')}`, ts });

/** Seeded xorshift so every run sees the same data. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const HOSTS = 100;
const POINTS = 100;
const T0 = 1_700_000_000_000;

/** 10,000 entries: 100 series × 100 points 10 s apart; every 7th is a tombstone. */
function dataset(): SstEntry[] {
  const rand = rng(42);
  const out: SstEntry[] = [];
  for (let h = 0; h < HOSTS; h++) {
    for (let p = 0; p < POINTS; p++) {
      const i = out.length;
      const value = i % 7 === 3 ? null : Uint8Array.from({ length: Math.floor(rand() * 60) }, () => Math.floor(rand() * 256));
      out.push({ key: keyOf(h, T0 + p * 10_000), version: 1 + ((i * 7919) % 20_000), value });
    }
  }
  return out;
}

class CountingSource implements SstSource {
  reads: { offset: number; length: number }[] = [];
  readonly size: number;
  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
  ) {
    this.size = bytes.byteLength;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.reads.push({ offset, length });
    if (offset < 0 || offset + length > this.bytes.byteLength) throw new Error(`read [${offset}, ${offset + length}) out of range`);
    return this.bytes.subarray(offset, offset + length);
  }
}

function sameEntry(a: SstEntry | undefined, b: SstEntry): void {
  expect(a, 'entry present').to.not.equal(undefined);
  expect(compareBytes(a!.key, b.key)).to.equal(0);
  expect(a!.version).to.equal(b.version);
  if (b.value === null) expect(a!.value).to.equal(null);
  else expect(Buffer.from(a!.value!).equals(Buffer.from(b.value))).to.equal(true);
}

async function collect(it: AsyncIterable<SstEntry>): Promise<SstEntry[]> {
  const out: SstEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

async function rejection(p: Promise<unknown>): Promise<RegionDbError> {
  try {
    await p;
  } catch (err) {
    if (isRegionDbError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

async function expectCorruption(p: Promise<unknown>, ...fragments: string[]): Promise<void> {
  const err = await rejection(p);
  expect(err.code).to.equal(ErrorCode.Corruption);
  for (const f of fragments) expect(err.message).to.contain(f);
}

function lowerBound(entries: SstEntry[], key: Uint8Array): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareBytes(entries[mid]!.key, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

describe('SST format', () => {
  const entries = dataset();
  const built = buildSst(entries);
  const bytes = built.bytes;

  it('records properties', () => {
    const p = built.properties;
    expect(p.entryCount).to.equal(10_000);
    expect(p.tombstoneCount).to.equal(entries.filter((e) => e.value === null).length);
    expect(p.minTimestamp).to.equal(T0);
    expect(p.maxTimestamp).to.equal(T0 + (POINTS - 1) * 10_000);
    expect(p.minVersion).to.equal(Math.min(...entries.map((e) => e.version)));
    expect(p.maxVersion).to.equal(Math.max(...entries.map((e) => e.version)));
    expect(compareBytes(p.minKey, entries[0]!.key)).to.equal(0);
    expect(compareBytes(p.maxKey, entries[entries.length - 1]!.key)).to.equal(0);
    expect(p.formatVersion).to.equal(1);
    expect(p.blockCount).to.be.greaterThan(5);
  });

  it('opens with at most two reads and exposes the same properties', async () => {
    const src = new CountingSource('sst/test-1.sst', bytes);
    const reader = await SstReader.open(src);
    expect(src.reads.length).to.be.at.most(2);
    expect(reader.properties).to.deep.equal(built.properties);
    expect(reader.blocks.length).to.equal(built.properties.blockCount);
  });

  describe('reading', () => {
    let src: CountingSource;
    let reader: SstReaderType;
    beforeEach(async () => {
      src = new CountingSource('sst/test-1.sst', bytes);
      reader = await SstReader.open(src);
      src.reads = [];
    });

    it('gets entries (values and tombstones) reading one block each', async () => {
      for (let i = 0; i < entries.length; i += 7) {
        const before = src.reads.length;
        sameEntry(await reader.get(entries[i]!.key), entries[i]!);
        expect(src.reads.length - before).to.equal(1);
      }
      sameEntry(await reader.get(entries[entries.length - 1]!.key), entries[entries.length - 1]!);
      expect((await reader.get(entries[3]!.key))?.value).to.equal(null);
    });

    it('returns undefined for missing keys, without I/O outside the key range or between blocks', async () => {
      expect(await reader.get(keyOf(0, T0 - 1))).to.equal(undefined); // before the first key
      expect(await reader.get(keyOf(HOSTS, T0))).to.equal(undefined); // after the last key
      expect(await reader.get(new Uint8Array(0))).to.equal(undefined);
      expect(src.reads.length).to.equal(0);
      // Between two blocks: the key sorts after block i's last key and before block i+1's first.
      const b0 = reader.blocks[0]!;
      const gap = new Uint8Array([...b0.lastKey, 0]);
      expect(await reader.get(gap)).to.equal(undefined);
      expect(src.reads.length).to.equal(0);
      // Inside a block's key range but absent.
      expect(await reader.get(keyOf(5, T0 + 5))).to.equal(undefined);
      expect(src.reads.length).to.equal(1);
    });

    it('scans everything in order', async () => {
      const all = await collect(reader.scan({}));
      expect(all.length).to.equal(entries.length);
      for (let i = 0; i < all.length; i += 97) sameEntry(all[i], entries[i]!);
      sameEntry(all[all.length - 1], entries[entries.length - 1]!);
      expect(src.reads.length).to.equal(reader.blocks.length);
    });

    it('scans [start, end) ranges with present and absent bounds', async () => {
      const rand = rng(7);
      const bound = (): Uint8Array => {
        const h = Math.floor(rand() * (HOSTS + 2)) - 1;
        const ts = T0 + Math.floor(rand() * POINTS) * 10_000 + (rand() < 0.5 ? 0 : 1); // +1: absent key
        return keyOf(Math.max(0, h), ts);
      };
      for (let n = 0; n < 40; n++) {
        let start: Uint8Array | undefined = bound();
        let end: Uint8Array | undefined = bound();
        if (compareBytes(start, end) > 0) [start, end] = [end, start];
        if (n % 10 === 0) start = undefined;
        if (n % 10 === 1) end = undefined;
        const lo = start === undefined ? 0 : lowerBound(entries, start);
        const hi = end === undefined ? entries.length : lowerBound(entries, end);
        const got = await collect(reader.scan({ start, end }));
        expect(got.length, `range ${n}`).to.equal(Math.max(0, hi - lo));
        for (let i = 0; i < got.length; i += 13) sameEntry(got[i], entries[lo + i]!);
      }
      expect(await collect(reader.scan({ start: entries[10]!.key, end: entries[10]!.key }))).to.deep.equal([]);
      expect(await collect(reader.scan({ start: entries[11]!.key, end: entries[10]!.key }))).to.deep.equal([]);
    });

    it('scan reads only the blocks overlapping the range', async () => {
      const blocks = reader.blocks;
      // From the middle of block 2 to the middle of block 4.
      const start = blocks[2]!.lastKey;
      const end = blocks[4]!.lastKey;
      const got = await collect(reader.scan({ start, end }));
      expect(got.length).to.be.greaterThan(0);
      expect(src.reads.map((r) => r.offset)).to.deep.equal([blocks[2]!.offset, blocks[3]!.offset, blocks[4]!.offset]);
      // A range ending exactly at a block's first key does not read that block.
      src.reads = [];
      await collect(reader.scan({ start: blocks[1]!.firstKey, end: blocks[2]!.firstKey }));
      expect(src.reads.map((r) => r.offset)).to.deep.equal([blocks[1]!.offset]);
      // A range inside one block reads one block.
      src.reads = [];
      await collect(reader.scan({ start: blocks[3]!.firstKey, end: blocks[3]!.lastKey }));
      expect(src.reads.length).to.equal(1);
      // Entirely before the file: nothing.
      src.reads = [];
      await collect(reader.scan({ end: blocks[0]!.firstKey }));
      expect(src.reads.length).to.equal(0);
    });

    it('stopping a scan early reads at most one block ahead', async () => {
      let n = 0;
      for await (const _ of reader.scan({})) {
        if (++n === 3) break;
      }
      expect(src.reads.length).to.be.at.most(2);
    });
  });

  describe('corruption', () => {
    const name = 's3://bucket/regions/7/sst/000042.sst';
    const open = (b: Uint8Array) => SstReader.open(sstSourceFromBytes(name, b));

    it('a flipped byte in a data block fails reads of that block only', async () => {
      const reader = await open(bytes);
      const block = reader.blocks[3]!;
      const bad = bytes.slice();
      bad[block.offset + Math.floor(block.length / 2)]! ^= 0x10;
      const damaged = await open(bad);
      const inBlock3 = entries.find((e) => compareBytes(e.key, block.firstKey) >= 0 && compareBytes(e.key, block.lastKey) <= 0)!;
      await expectCorruption(damaged.get(inBlock3.key), name, 'block 3 CRC32C mismatch (expected 0x');
      await expectCorruption(damaged.get(block.lastKey), name, 'block 3');
      // Other blocks are still readable.
      sameEntry(await damaged.get(entries[0]!.key), entries[0]!);
      sameEntry(await damaged.get(entries[entries.length - 1]!.key), entries[entries.length - 1]!);
      await collect(damaged.scan({ start: reader.blocks[4]!.firstKey }));
      // A scan yields the good blocks before failing at the bad one.
      const seen: SstEntry[] = [];
      const err = await rejection(
        (async () => {
          for await (const e of damaged.scan({})) seen.push(e);
        })(),
      );
      expect(err.code).to.equal(ErrorCode.Corruption);
      expect(err.message).to.contain(name).and.contain('block 3');
      expect(compareBytes(seen[seen.length - 1]!.key, reader.blocks[2]!.lastKey)).to.equal(0);
    });

    it('a structurally broken block with a valid CRC is reported as malformed', async () => {
      const reader = await open(bytes);
      const block = reader.blocks[2]!;
      const bad = bytes.slice();
      bad[block.offset] = 5; // the first entry claims to share 5 bytes with a previous key
      new DataView(bad.buffer).setUint32(block.offset + block.length, crc32c(bad.subarray(block.offset, block.offset + block.length)));
      const damaged = await open(bad);
      await expectCorruption(damaged.get(block.lastKey), name, 'block 2', 'malformed', 'entry 0');
      await expectCorruption(collect(damaged.scan({ start: block.firstKey })), name, 'block 2', 'malformed');
    });

    it('an abandoned read-ahead of a corrupt block does not surface as an unhandled rejection', async () => {
      const reader = await open(bytes);
      const bad = bytes.slice();
      bad[reader.blocks[1]!.offset + 3]! ^= 0xff;
      const damaged = await open(bad);
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown): void => {
        unhandled.push(reason);
      };
      process.on('unhandledRejection', onUnhandled);
      try {
        for await (const _ of damaged.scan({})) break; // block 1 is being read ahead
        // The source is in memory: the read-ahead settles in microtasks, and Node reports an
        // unhandled rejection when the microtask queue drains, before the next macrotask.
        await new Promise((ok) => setImmediate(ok));
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
      expect(unhandled).to.deep.equal([]);
    });

    it('a flipped byte in a block CRC is detected', async () => {
      const reader = await open(bytes);
      const block = reader.blocks[1]!;
      const bad = bytes.slice();
      bad[block.offset + block.length]! ^= 0x01;
      await expectCorruption((await open(bad)).get(block.firstKey), name, 'block 1 CRC32C mismatch');
    });

    it('bad magic', async () => {
      const bad = bytes.slice();
      bad[bad.length - 1]! ^= 0xff;
      await expectCorruption(open(bad), name, 'bad magic');
    });

    it('truncated files', async () => {
      await expectCorruption(open(bytes.subarray(0, bytes.length - 100)), name, 'bad magic');
      await expectCorruption(open(bytes.subarray(0, 20)), name, 'truncated');
      await expectCorruption(open(new Uint8Array(0)), name, 'truncated');
      // A source claiming more bytes than it returns.
      const short: SstSource = { name, size: bytes.length, read: async (o, l) => bytes.subarray(o, Math.min(o + l, bytes.length - 10)) };
      await expectCorruption(SstReader.open(short), name, 'short read');
    });

    /** Rewrites footer fields and re-signs the footer so only the intended check fails. */
    function withFooter(edit: (dv: DataView) => void): Uint8Array {
      const out = bytes.slice();
      const footer = out.subarray(out.length - SST_FOOTER_BYTES);
      const dv = new DataView(footer.buffer, footer.byteOffset, SST_FOOTER_BYTES);
      edit(dv);
      dv.setUint32(36, crc32c(footer.subarray(0, 36)));
      return out;
    }

    it('unsupported format version', async () => {
      await expectCorruption(open(withFooter((dv) => dv.setUint32(32, 7))), name, 'unsupported format version 7');
    });

    it('footer CRC mismatch', async () => {
      const bad = bytes.slice();
      bad[bad.length - SST_FOOTER_BYTES + 3]! ^= 0x04;
      await expectCorruption(open(bad), name, 'footer CRC32C mismatch');
    });

    it('index extending past the footer', async () => {
      await expectCorruption(open(withFooter((dv) => dv.setBigUint64(8, 10n ** 9n))), name, 'index truncated');
    });

    it('index and properties CRC mismatches', async () => {
      const dv = new DataView(bytes.buffer, bytes.byteOffset + bytes.length - SST_FOOTER_BYTES, SST_FOOTER_BYTES);
      const indexOffset = Number(dv.getBigUint64(0));
      const propsOffset = Number(dv.getBigUint64(16));
      const badIndex = bytes.slice();
      badIndex[indexOffset + 5]! ^= 0x20;
      await expectCorruption(open(badIndex), name, 'index CRC32C mismatch');
      const badProps = bytes.slice();
      badProps[propsOffset + 5]! ^= 0x20;
      await expectCorruption(open(badProps), name, 'properties CRC32C mismatch');
    });
  });

  describe('building', () => {
    const e = (host: number, ts: number, version = 1): SstEntry => ({ key: keyOf(host, ts), version, value: Uint8Array.of(1) });

    it('rejects unsorted, duplicate, empty and malformed input', () => {
      const code = (f: () => unknown): string | undefined => {
        try {
          f();
        } catch (err) {
          return isRegionDbError(err) ? err.code : 'other';
        }
        return undefined;
      };
      expect(code(() => buildSst([e(1, 2), e(1, 1)]))).to.equal(ErrorCode.InvalidArgument);
      expect(code(() => buildSst([e(1, 1), e(1, 1, 2)]))).to.equal(ErrorCode.InvalidArgument);
      expect(code(() => buildSst([e(2, 1), e(1, 5)]))).to.equal(ErrorCode.InvalidArgument);
      expect(code(() => buildSst([]))).to.equal(ErrorCode.InvalidArgument);
      expect(code(() => buildSst([{ key: Uint8Array.of(1, 2), version: 1, value: null }]))).to.equal(ErrorCode.InvalidArgument);
      expect(code(() => buildSst([{ key: keyOf(1, 1), version: -1, value: null }]))).to.equal(ErrorCode.InvalidArgument);
      expect(code(() => buildSst([{ key: keyOf(1, 1), version: 1.5, value: null }]))).to.equal(ErrorCode.InvalidArgument);
      // A timestamp outside ±2^53 cannot come from a valid row.
      expect(code(() => buildSst([{ key: new Uint8Array(8), version: 1, value: null }]))).to.equal(ErrorCode.InvalidArgument);
    });

    it('handles values larger than a block, a single entry, and negative timestamps', async () => {
      const big = new Uint8Array(100_000).map((_, i) => i & 0xff);
      const input: SstEntry[] = [
        { key: keyOf(0, -5_000), version: 9, value: null },
        { key: keyOf(0, 0), version: 2 ** 40, value: big },
        { key: keyOf(0, 1), version: 0, value: new Uint8Array(0) },
      ];
      const { bytes: b, properties } = buildSst(input);
      expect(properties.minTimestamp).to.equal(-5_000);
      expect(properties.maxVersion).to.equal(2 ** 40);
      const reader = await SstReader.open(sstSourceFromBytes('big', b));
      for (const x of input) sameEntry(await reader.get(x.key), x);
      const one = buildSst([input[0]!]);
      expect(one.properties.blockCount).to.equal(1);
      sameEntry(await (await SstReader.open(sstSourceFromBytes('one', one.bytes))).get(input[0]!.key), input[0]!);
    });

    it('accepts a one-shot iterator (e.g. a memtable scan)', async () => {
      function* gen(): Generator<SstEntry> {
        for (let i = 0; i < 500; i++) yield e(i, 1, i);
      }
      const { properties } = buildSst(gen());
      expect(properties.entryCount).to.equal(500);
    });

    it('works over an object store', async () => {
      const root = await mkdtemp(join(tmpdir(), 'regiondb-sst-'));
      try {
        const store = new FsObjectStore(root);
        await store.put('regions/1/sst/1.sst', bytes);
        const reader = await SstReader.open(await sstSourceFromObjectStore(store, 'regions/1/sst/1.sst'));
        sameEntry(await reader.get(entries[1234]!.key), entries[1234]!);
        expect(reader.name).to.contain('regions/1/sst/1.sst');
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  });

  describe('property: random sorted entry sets round-trip', () => {
    const seed = Number(process.env.SST_FC_SEED ?? 20_251_125);
    before(() => {
      console.log(`      fast-check seed ${seed} (set SST_FC_SEED to reproduce another)`);
    });

    /** A timestamp's 8 key bytes, encoded as src/engine/key.ts does. */
    const tsBytes = (ts: number): Uint8Array => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, BigInt(ts));
      b[0]! ^= 0x80;
      return b;
    };

    it('get and scan return exactly what was written', async () => {
      // Keys: arbitrary tag bytes, then a timestamp encoded like src/engine/key.ts does.
      const keyArb = fc
        .tuple(fc.uint8Array({ maxLength: 16 }), fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger()))
        .map(([tags, ts]) => Uint8Array.from([...tags, ...tsBytes(ts)]));
      const entryArb = fc.record({
        key: keyArb,
        version: fc.maxSafeNat(),
        value: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 200 }), fc.integer({ min: 1, max: 2048 }), async (raw, blockTargetBytes) => {
          const sorted = raw.slice().sort((a, b) => compareBytes(a.key, b.key));
          const unique = sorted.filter((x, i) => i === 0 || compareBytes(sorted[i - 1]!.key, x.key) !== 0);
          const { bytes: b, properties } = buildSst(unique, { blockTargetBytes });
          const stamps = unique.map((x) => timestampOfKey(x.key));
          expect(properties.minTimestamp).to.equal(Math.min(...stamps));
          expect(properties.maxTimestamp).to.equal(Math.max(...stamps));
          const reader = await SstReader.open(sstSourceFromBytes('prop', b));
          const all = await collect(reader.scan());
          expect(all.length).to.equal(unique.length);
          for (const [i, x] of unique.entries()) sameEntry(all[i], x);
          for (const x of unique.slice(0, 20)) sameEntry(await reader.get(x.key), x);
          const mid = unique[Math.floor(unique.length / 2)]!.key;
          expect((await collect(reader.scan({ start: mid }))).length).to.equal(unique.length - Math.floor(unique.length / 2));
        }),
        { seed, numRuns: 150 },
      );
    });

    it('keys given as byte strings (addKeyString, as a flush passes a memtable\'s keys) build the same bytes as the same keys given as bytes, mixed or not', () => {
      // Long shared prefixes and keys past the builder's first 256-byte key buffer included.
      const keyArb = fc
        .tuple(fc.constantFrom(0, 3, 40, 300), fc.uint8Array({ maxLength: 12 }), fc.integer({ min: -1000, max: 1000 }))
        .map(([prefix, tags, ts]) => Uint8Array.from([...new Uint8Array(prefix).fill(0xfe), ...tags, ...tsBytes(ts)]));
      const entryArb = fc.record({ key: keyArb, version: fc.maxSafeNat(), value: fc.option(fc.uint8Array({ maxLength: 100 }), { nil: null }) });
      fc.assert(
        fc.property(fc.array(entryArb, { minLength: 1, maxLength: 150 }), fc.integer({ min: 1, max: 1024 }), fc.array(fc.boolean(), { minLength: 150, maxLength: 150 }), (raw, blockTargetBytes, asString) => {
          const sorted = raw.slice().sort((a, b) => compareBytes(a.key, b.key));
          const unique = sorted.filter((x, i) => i === 0 || compareBytes(sorted[i - 1]!.key, x.key) !== 0);
          const want = buildSst(unique, { blockTargetBytes });
          for (const mixed of [true, false]) {
            const b = sstBuilder({ blockTargetBytes });
            for (const [i, x] of unique.entries()) {
              if (mixed && !asString[i]) b.add(x);
              else b.addKeyString(keyStringOfBytes(x.key), x.version, x.value);
            }
            const got = b.finish();
            expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), mixed ? 'mixed' : 'all strings').to.equal(true);
            expect(got.properties).to.deep.equal(want.properties);
          }
        }),
        { seed, numRuns: 150 },
      );
      const code = (f: () => unknown): string | undefined => {
        try {
          f();
        } catch (err) {
          return (err as RegionDbError).code;
        }
        return undefined;
      };
      const b = sstBuilder();
      b.addKeyString(keyStringOfBytes(keyOf(1, 1)), 1, null);
      expect(code(() => b.addKeyString(`${keyStringOfBytes(keyOf(1, 2))}\u0100`, 2, null)), 'a char above 255').to.equal(ErrorCode.InvalidArgument);
      expect(code(() => b.addKeyString(keyStringOfBytes(keyOf(1, 1)), 2, null)), 'the same key again').to.equal(ErrorCode.InvalidArgument);
      expect(code(() => b.addKeyString(keyStringOfBytes(keyOf(0, 9)), 2, null)), 'an earlier key').to.equal(ErrorCode.InvalidArgument);
      expect(code(() => b.addKeyString('short', 2, null)), 'shorter than a timestamp').to.equal(ErrorCode.InvalidArgument);
      b.addKeyString(keyStringOfBytes(keyOf(1, 2)), 2, Uint8Array.of(7)); // the refusals left the builder as it was
      const { bytes } = b.finish();
      expect(Buffer.from(bytes).equals(Buffer.from(buildSst([{ key: keyOf(1, 1), version: 1, value: null }, { key: keyOf(1, 2), version: 2, value: Uint8Array.of(7) }]).bytes))).to.equal(true);
    });
  });
});
