// The memtable (src/engine/memtable.ts: a hash map plus keys sorted when a scan asks) against a
// reference model that is obviously right: a plain Map of the latest entry per key, its keys kept
// in compareBytes order by binary insertion. Seeded random puts (new keys, overwrites with higher versions,
// tombstones, keys sharing long prefixes, keys with 0x00, 0x80–0xff bytes, keys that are
// prefixes of each other; RowEntry, KeyedEntry and plain MemEntry inserts mixed), gets, counts, sizeBytes,
// range scans, and scans advanced one step at a time while puts continue — what
// RegionState.mergedCells does to the active memtable across awaits. The guarantee checked for
// those: a scan yields exactly the keys in its range when its first entry was asked for, in key
// order, each once, each with the entry current when it is yielded.
// Replay one seed: MEMTABLE_SEED=n node_modules/.bin/mocha test/unit/memtable.test.ts
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { compareBytes, keyStringOfBytes } from '../../src/engine/key.js';
import { KeyedEntry, type MemEntry, Memtable, RowEntry, type RowLayout } from '../../src/engine/memtable.js';

/** A row of values [field 1, tag, timestamp, field 0]: cells out of schema order, as a layout may have them. */
const ROW_LAYOUT: RowLayout = { tagIndex: [1], fieldIndex: [3, 0] };

const SEEDS = process.env['MEMTABLE_SEED'] !== undefined ? [Number(process.env['MEMTABLE_SEED'])] : Array.from({ length: 8 }, (_, i) => i + 1);
const OPS_PER_SEED = 4000;

const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');

/** The size formula the flush thresholds depend on, written out: key bytes + 64 + 8 per value, + 2 per string char. */
function modelSizeBytes(e: MemEntry): number {
  let size = e.key.byteLength + 64;
  for (const v of [...e.fields, ...e.tags]) size += typeof v === 'string' ? v.length * 2 + 8 : 8;
  return size;
}

class Model {
  readonly entries = new Map<string, MemEntry>();
  /** Every key, kept in compareBytes order by binary insertion. */
  private readonly keys: Uint8Array[] = [];

  put(e: MemEntry): void {
    if (!this.entries.has(hex(e.key))) this.keys.splice(this.lowerBound(e.key), 0, e.key);
    this.entries.set(hex(e.key), e);
  }

  /** The latest entries of the keys in [lo, hi), in byte order. */
  scan(lo?: Uint8Array, hi?: Uint8Array): MemEntry[] {
    const out: MemEntry[] = [];
    for (let i = lo ? this.lowerBound(lo) : 0; i < this.keys.length && (!hi || compareBytes(this.keys[i]!, hi) < 0); i++) out.push(this.entries.get(hex(this.keys[i]!))!);
    return out;
  }

  sizeBytes(): number {
    let total = 0;
    for (const e of this.entries.values()) total += modelSizeBytes(e);
    return total;
  }

  private lowerBound(key: Uint8Array): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareBytes(this.keys[mid]!, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Keys drawn to collide in the places byte order is easy to get wrong. */
function keyMaker(rand: SeededRand): () => Uint8Array {
  const alphabet = [0x00, 0x01, 0x7f, 0x80, 0x81, 0xc3, 0xfe, 0xff];
  const byte = () => (rand.chance(0.6) ? alphabet[rand.int(alphabet.length)]! : rand.int(256));
  // A long shared prefix (an encoded tag value, say), with 0x00 and 0xff inside it.
  const prefix = Uint8Array.from({ length: 40 }, (_, i) => (i % 7 === 0 ? 0x00 : i % 5 === 0 ? 0xff : 0x61 + (i % 26)));
  return () => {
    const tail = Uint8Array.from({ length: rand.int(5) }, byte);
    if (rand.chance(0.5)) return Uint8Array.from([...prefix.subarray(0, rand.int(prefix.length + 1)), ...tail]);
    return tail.byteLength === 0 ? Uint8Array.of(byte()) : tail;
  };
}

interface LiveScan {
  readonly lo: Uint8Array | undefined;
  readonly hi: Uint8Array | undefined;
  readonly it: Generator<MemEntry>;
  /** The model's keys in range when the first entry was asked for; undefined before that. */
  expected: string[] | undefined;
  /** The memtable's key count when the first entry was asked for. */
  countAtStart: number;
  yielded: number;
}

/** Runs one seed; returns how many scan steps came after new keys were put behind the scan's back. */
function runSeed(seed: number): number {
  let stepsAfterNewKeys = 0;
  const rand = new SeededRand(seed);
  const randomKey = keyMaker(rand);
  const mem = new Memtable();
  const model = new Model();
  const known: Uint8Array[] = [];
  const live: LiveScan[] = [];
  let version = 0;
  const where = (what: string) => `${what}; seed ${seed} (replay: MEMTABLE_SEED=${seed})`;
  const bounds = (): [Uint8Array | undefined, Uint8Array | undefined] => {
    const pick = () => (rand.chance(0.3) ? undefined : known.length > 0 && rand.chance(0.5) ? known[rand.int(known.length)]! : randomKey());
    const [a, b] = [pick(), pick()];
    return a && b && compareBytes(a, b) > 0 ? [b, a] : [a, b];
  };

  for (let op = 0; op < OPS_PER_SEED; op++) {
    const roll = rand.int(100);
    if (roll < 60) {
      // A put: an overwrite of a known key a third of the time; a tombstone one time in eight.
      const key = known.length > 0 && rand.chance(0.35) ? known[rand.int(known.length)]! : randomKey();
      if (!model.entries.has(hex(key))) known.push(key);
      version += 1 + rand.int(3);
      const kind = rand.chance(0.125) ? 'delete' : 'put';
      const tags = [rand.chance(0.5) ? 'h'.repeat(rand.int(6)) : null];
      const fields = kind === 'delete' ? [] : [rand.int(1000), 'n'.repeat(rand.int(12))];
      // Keyed by its byte string half of the time: a put as apply makes it (RowEntry: the row's
      // values with the cells picked out by a layout) every other version, else a KeyedEntry.
      const entry: MemEntry = rand.chance(0.5)
        ? kind === 'put' && version % 2 === 1
          ? new RowEntry(keyStringOfBytes(key), version, version, [fields[1]!, tags[0]!, version, fields[0]!], ROW_LAYOUT)
          : new KeyedEntry(keyStringOfBytes(key), version, version, kind, tags, fields)
        : { key, timestampMs: version, version, op: kind, tags, fields };
      mem.put(entry);
      model.put(entry);
    } else if (roll < 70) {
      const key = known.length > 0 && rand.chance(0.7) ? known[rand.int(known.length)]! : randomKey();
      const got = mem.get(key);
      const want = model.entries.get(hex(key));
      expect(got, where(`get ${hex(key)}`)).to.equal(want);
    } else if (roll < 73) {
      const [lo, hi] = bounds();
      const got = [...mem.scan(lo, hi)];
      const want = model.scan(lo, hi);
      expect(got.map((e) => hex(e.key)), where(`scan [${lo ? hex(lo) : '-'}, ${hi ? hex(hi) : '-'})`)).to.deep.equal(want.map((e) => hex(e.key)));
      for (let i = 0; i < got.length; i++) expect(got[i], where(`scan entry ${hex(want[i]!.key)}`)).to.equal(want[i]);
    } else if (roll < 76 && live.length < 4) {
      const [lo, hi] = bounds();
      live.push({ lo, hi, it: mem.scan(lo, hi), expected: undefined, countAtStart: 0, yielded: 0 });
    } else if (live.length > 0) {
      // One step of a scan in flight, with puts (and other scans' orderings) between its steps.
      const i = rand.int(live.length);
      const s = live[i]!;
      if (s.expected === undefined) {
        s.expected = model.scan(s.lo, s.hi).map((e) => hex(e.key));
        s.countAtStart = mem.count;
      } else if (mem.count > s.countAtStart) stepsAfterNewKeys++;
      const r = s.it.next();
      const what = `step ${s.yielded} of a scan over [${s.lo ? hex(s.lo) : '-'}, ${s.hi ? hex(s.hi) : '-'}) interleaved with puts`;
      if (r.done) {
        expect(s.yielded, where(`${what}: ended early, skipping ${s.expected[s.yielded]}`)).to.equal(s.expected.length);
        live.splice(i, 1);
      } else {
        const k = hex(r.value.key);
        expect(k, where(what)).to.equal(s.expected[s.yielded]);
        expect(r.value, where(`${what}: the entry current when yielded`)).to.equal(model.entries.get(k));
        s.yielded++;
      }
    }
    expect(mem.count, where(`count after op ${op}`)).to.equal(model.entries.size);
    if (op % 16 === 0) expect(mem.sizeBytes, where(`sizeBytes after op ${op}`)).to.equal(model.sizeBytes());
  }
  expect(mem.sizeBytes, where('sizeBytes at the end')).to.equal(model.sizeBytes());
  // Drain the scans still open: no key skipped or repeated at the end either.
  for (const s of live) {
    if (s.expected === undefined) s.expected = model.scan(s.lo, s.hi).map((e) => hex(e.key));
    const rest = [...s.it].map((e) => hex(e.key));
    expect(rest, where('the rest of a scan in flight')).to.deep.equal(s.expected.slice(s.yielded));
  }
  return stepsAfterNewKeys;
}

describe('memtable: against a reference model ordered by compareBytes (seeded)', () => {
  it(`puts, overwrites, tombstones, gets, counts, sizeBytes and range scans agree, also for scans advanced step by step while puts continue (${SEEDS.length} seeds × ${OPS_PER_SEED} ops)`, () => {
    let stepsAfterNewKeys = 0;
    for (const seed of SEEDS) stepsAfterNewKeys += runSeed(seed);
    // The interleaving is exercised, not just possible: scans stepped after keys were added.
    expect(stepsAfterNewKeys).to.be.greaterThan(SEEDS.length * 100);
  });

  it('refuses a version that moves backwards for a key', () => {
    const mem = new Memtable();
    const key = Uint8Array.of(1, 2, 3);
    mem.put({ key, timestampMs: 0, version: 5, op: 'put', tags: [], fields: [] });
    expect(() => mem.put(new KeyedEntry(keyStringOfBytes(key), 0, 4, 'put', [], []))).to.throw('memtable versions only move forward');
    expect(mem.get(key)?.version).to.equal(5);
  });
});
