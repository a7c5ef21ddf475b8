// Region command formats (src/engine/command.ts, command-binary.ts; docs/performance.md round 3):
// version 2 (binary) carries every value of every column type exactly; version-1 (JSON) entries
// written by the previous encoder still decode and replay to the same state; damaged version-2
// bytes are CORRUPTION, never a crash or a wrong value.
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import fc from 'fast-check';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import {
  type ApplyResult,
  type Command,
  RegionState,
  type TableSchema,
  type Value,
  decodeCommand,
  encodeCommand,
  encodeCommandV1,
} from '../../src/engine/index.js';
import { decodeCommandForApply, dedupIdentity } from '../../src/engine/command.js';

const FIXTURE = JSON.parse(readFileSync(new URL('../fixtures/commands-v1.json', import.meta.url), 'utf8')) as {
  schema: TableSchema;
  writtenAtMs: number;
  entries: string[];
  results: ApplyResult[];
  rows: unknown[];
  manifest: unknown;
  frozenDedup: string[];
};
const fixtureClock = { nowMs: () => FIXTURE.writtenAtMs };
const fromHex = (hex: string) => new Uint8Array(Buffer.from(hex, 'hex'));

/** Every value a row can hold, weighted towards the edges. */
const valueArb: fc.Arbitrary<Value> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 100 }).filter((s) => s === Buffer.from(s, 'utf8').toString('utf8')), // well-formed UTF-16
  fc.constantFrom('', '\u0000', 'ü', '😀', '\uFFFF', 'x'.repeat(70), 'ß'.repeat(64 << 10)),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(),
  fc.constantFrom(
    0,
    -0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    2 ** 53,
    -(2 ** 53),
    2 ** 63,
    -(2 ** 63),
    2 ** 64,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.MIN_VALUE,
    -Number.MIN_VALUE,
    0.1,
    127,
    128,
    -128,
    2 ** 32,
    -(2 ** 31),
  ),
);
const rowsArb = fc.array(fc.array(valueArb, { maxLength: 9 }), { minLength: 0, maxLength: 6 });
const idArb = fc.oneof(fc.constantFrom(0, 1, 127, 128, Number.MAX_SAFE_INTEGER), fc.maxSafeNat());
/** A session mark as the encoder writes one: 1 and up (0 is no mark). */
const markArb = fc.oneof(fc.constantFrom(1, 127, 128, Number.MAX_SAFE_INTEGER), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const clientArb = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 70 }));
const writeArb: fc.Arbitrary<Command> = fc
  .record({
    clientId: clientArb,
    requestId: idArb,
    rows: rowsArb,
    expectVersion: fc.option(idArb, { nil: undefined }),
    expectAbsent: fc.option(fc.constant(true as const), { nil: undefined }),
    completedBelow: fc.option(markArb, { nil: undefined }),
  })
  .map(({ expectVersion, expectAbsent, completedBelow, ...w }) => ({
    kind: 'write' as const,
    ...w,
    ...(expectVersion === undefined ? {} : { expectVersion }),
    ...(expectAbsent === undefined ? {} : { expectAbsent }),
    ...(completedBelow === undefined ? {} : { completedBelow }),
  }));
const deleteArb: fc.Arbitrary<Command> = fc
  .record({ clientId: clientArb, requestId: idArb, keys: rowsArb, completedBelow: fc.option(markArb, { nil: undefined }) })
  .map(({ completedBelow, ...d }) => ({ kind: 'delete' as const, ...d, ...(completedBelow === undefined ? {} : { completedBelow }) }));

/** Deep equality where -0 ≠ 0 and NaN = NaN (Object.is on every leaf). */
function sameExactly(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameExactly(x, b[i]));
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => k in b && sameExactly((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return Object.is(a, b);
}

function expectCorruption(bytes: Uint8Array, what: string, message?: RegExp): void {
  let decoded: Command;
  try {
    decoded = decodeCommand(bytes);
  } catch (err) {
    expect(isRegionDbError(err, ErrorCode.Corruption), `${what}: ${(err as Error).message}`).to.equal(true);
    if (message) expect((err as Error).message, what).to.match(message);
    return;
  }
  expect.fail(`${what}: decoded as ${JSON.stringify(decoded)}`);
}

/** Replays the fixture's log into a fresh state; returns the results. */
async function replay(state: RegionState, entries: readonly Uint8Array[]): Promise<ApplyResult[]> {
  const results: ApplyResult[] = [];
  for (let i = 0; i < entries.length; i++) results.push(await state.apply(i + 1, entries[i]!, 1));
  return results;
}

async function rowsOf(state: RegionState): Promise<unknown[]> {
  const rows: unknown[] = [];
  for await (const r of state.scan()) rows.push(r);
  return rows;
}

describe('engine: command format version 2 (binary)', () => {
  it('writes and deletes round-trip exactly: every value type, nulls, unicode, large strings, -0, NaN, ±Infinity, int64 and float edges', () => {
    fc.assert(
      fc.property(fc.oneof(writeArb, deleteArb), (cmd) => {
        const bytes = encodeCommand(cmd);
        expect(bytes[0], 'leaders write version 2').to.equal(2);
        const decoded = decodeCommand(bytes);
        expect(sameExactly(decoded, cmd), `decoded ${JSON.stringify(decoded)}`).to.equal(true);
        expect(Buffer.from(encodeCommand(decoded)).equals(Buffer.from(bytes)), 'one encoding per command').to.equal(true);
      }),
      { numRuns: 1000, seed: 20261204 },
    );
  });

  it('a write encoded with keepRows is applied from its own rows, once, and they are exactly what decoding the bytes gives (a leader applies its proposal as its followers do)', () => {
    fc.assert(
      fc.property(fc.oneof(writeArb, deleteArb), (cmd) => {
        const bytes = encodeCommand(cmd, { keepRows: true });
        expect(Buffer.from(bytes).equals(Buffer.from(encodeCommand(cmd))), 'the same bytes').to.equal(true);
        const decoded = decodeCommand(bytes); // what a follower applies
        const applied = decodeCommandForApply(bytes); // what the leader applies
        expect(sameExactly(applied, decoded), `applied ${JSON.stringify(applied)}`).to.equal(true);
        if (cmd.kind === 'write') {
          expect((applied as typeof cmd).rows, 'the encoder\'s own rows').to.equal(cmd.rows);
          const again = decodeCommandForApply(bytes);
          expect((again as typeof cmd).rows, 'taken once: decoded the second time').to.not.equal(cmd.rows);
          expect(sameExactly(again, decoded)).to.equal(true);
          // Without keepRows, and for bytes not made here (a copy), apply decodes.
          expect((decodeCommandForApply(encodeCommand(cmd)) as typeof cmd).rows).to.not.equal(cmd.rows);
          const copy = encodeCommand(cmd, { keepRows: true }).slice();
          expect((decodeCommandForApply(copy) as typeof cmd).rows).to.not.equal(cmd.rows);
        }
      }),
      { numRuns: 500, seed: 20261207 },
    );
  });

  it('short strings decode exactly whether ASCII or not, from bytes at any offset of a larger buffer (the native Latin-1 path)', () => {
    // Every length around the short-string bound, ASCII with 0x00 and 0x7f, and one non-ASCII
    // char at each position (which must leave the Latin-1 path: é is two UTF-8 bytes, not two chars).
    const strings: string[] = [];
    for (let n = 0; n <= 66; n++) {
      const ascii = Array.from({ length: n }, (_, i) => String.fromCharCode([0, 0x7f, 0x41, 0x20][i % 4]!)).join('');
      strings.push(ascii);
      for (const at of [0, n >> 1, n - 1]) if (n > 0) strings.push(`${ascii.slice(0, at)}é${ascii.slice(at + 1)}`);
    }
    const cmd: Command = { kind: 'write', clientId: 'client-é', requestId: 7, rows: strings.map((s) => [s, 1, s]) };
    const bytes = encodeCommand(cmd);
    for (const offset of [0, 1, 13]) {
      // A raft entry's data is often a view into a larger buffer (a WAL read, a message).
      const larger = new Uint8Array(offset + bytes.byteLength + 5).fill(0xee);
      larger.set(bytes, offset);
      const decoded = decodeCommand(larger.subarray(offset, offset + bytes.byteLength));
      expect(sameExactly(decoded, cmd), `offset ${offset}`).to.equal(true);
    }
  });

  it('the exactness check can fail: JSON (version 1) turns -0 into 0 and NaN into null', () => {
    const cmd: Command = { kind: 'write', clientId: 'c', requestId: 1, rows: [[-0, Number.NaN]] };
    expect(sameExactly(decodeCommand(encodeCommandV1(cmd)), cmd)).to.equal(false);
    expect(sameExactly(decodeCommand(encodeCommand(cmd)), cmd)).to.equal(true);
  });

  it('system commands stay version 1 (JSON) and round-trip', () => {
    const sst = { key: 'k', size: 1, entries: 2, maxVersion: 3, minTimestampMs: -4, maxTimestampMs: 5 };
    for (const cmd of [{ kind: 'freeze' }, { kind: 'flush-edit', freezeIndex: 9, sst }, { kind: 'compaction-edit', inputs: ['a', 'b'], output: null }] as Command[]) {
      const bytes = encodeCommand(cmd);
      expect(bytes[0]).to.equal(1);
      expect(decodeCommand(bytes)).to.deep.equal(cmd);
    }
  });

  it('is smaller than version 1 for a typical one-row write', () => {
    const cmd: Command = { kind: 'write', clientId: 'bench-3f2a9c1e-6d0b-4c43-9a51-0d5e0c7b8e11', requestId: 1_733_280_000_123, rows: [['h1234', 1_733_280_000_000, 0.123456789]] };
    expect(encodeCommand(cmd).byteLength).to.be.lessThan(encodeCommandV1(cmd).byteLength / 1.5);
  });

  it('every truncation and every trailing byte of a version-2 entry is CORRUPTION', () => {
    fc.assert(
      fc.property(fc.oneof(writeArb, deleteArb), (cmd) => {
        const bytes = encodeCommand(cmd);
        // Every cut of a small entry; of a large one (a 128 KiB string) the cuts around each of 512 points.
        const step = Math.max(1, Math.floor(bytes.byteLength / 512));
        for (let n = 0; n < bytes.byteLength; n += n % step === 0 ? 1 : step - 1) expectCorruption(bytes.subarray(0, n), `cut to ${n} of ${bytes.byteLength} bytes`);
        expectCorruption(Uint8Array.from([...bytes, 0]), 'a trailing byte', /trailing/);
      }),
      { numRuns: 60, seed: 7 },
    );
  });

  it('damaged fields are CORRUPTION naming the damage', () => {
    const write = (body: number[]) => Uint8Array.from([2, 1, ...body]);
    // flags, clientId "c", requestId 5, rows: 1 row of 1 value
    expectCorruption(write([0, 1, 99, 5, 1, 1, 9]), 'value tag 9', /unknown value tag 9/);
    expectCorruption(write([8, 1, 99, 5, 1, 1, 0]), 'flag bit 3', /unknown flags 8/);
    expectCorruption(write([4, 1, 99, 5, 0, 1, 1, 0]), 'flag bit 2 with a mark of 0', /completed-below mark of 0/);
    expectCorruption(write([4, 1, 99, 5]), 'flag bit 2 with no mark', /truncated completed-below mark/);
    expect(decodeCommand(write([4, 1, 99, 5, 3, 1, 1, 4, 7]))).to.deep.equal({ kind: 'write', clientId: 'c', requestId: 5, completedBelow: 3, rows: [[-7]] });
    expect(decodeCommand(Uint8Array.from([2, 2, 4, 1, 99, 5, 3, 0]))).to.deep.equal({ kind: 'delete', clientId: 'c', requestId: 5, completedBelow: 3, keys: [] });
    expectCorruption(Uint8Array.from([2, 2, 1, 1, 99, 5, 0]), 'a delete with the expectVersion flag', /unknown flags 1/);
    expectCorruption(Uint8Array.from([2, 3, 0]), 'a freeze in version 2', /no version-2 encoding/);
    expectCorruption(Uint8Array.from([3, 1, 0]), 'a truncated format-3 (stamped) command', /stamped command of 3 bytes/);
    expectCorruption(Uint8Array.from([4, 1, 0]), 'format version 4', /unknown format version 4/);
    expectCorruption(write([0, 1, 99, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0]), 'a 9-byte varint', /longer than 8 bytes/);
    expectCorruption(write([0, 1, 99, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0]), 'request id 2^56 − 1', /exceeds 2\^53/);
    expectCorruption(write([0, 1, 99, 5, 100, 1, 0]), 'a row count beyond the bytes', /100 rows in 2 bytes/);
    expectCorruption(write([0, 1, 99, 5, 1, 50, 0]), 'a value count beyond the bytes', /50 values/);
    expectCorruption(write([0, 1, 99, 5, 1, 1, 4, 0]), 'a negative integer zero', /negative integer zero/);
    expectCorruption(write([0, 2, 0xc3, 0x28, 5, 0]), 'a client id that is not UTF-8', /client id is not valid UTF-8/);
    expectCorruption(write([0, 1, 99, 5, 1, 1, 6, 1, 0xff]), 'a string value that is not UTF-8', /string value is not valid UTF-8/);
    expectCorruption(write([0, 1, 99, 5, 1, 1, 5, 0, 0, 0]), 'a float64 cut short', /truncated float64/);
    expect(decodeCommand(write([0, 1, 99, 5, 1, 1, 4, 7]))).to.deep.equal({ kind: 'write', clientId: 'c', requestId: 5, rows: [[-7]] });
  });

  it('a session mark (completed_below) is left out of a request\'s dedup identity: marked and unmarked encodings of one request have the same identity, other requests do not', () => {
    fc.assert(
      fc.property(fc.oneof(writeArb, deleteArb), markArb, (cmd, mark) => {
        if (cmd.kind !== 'write' && cmd.kind !== 'delete') return;
        const { completedBelow: _, ...unmarked } = cmd;
        const plain = encodeCommand(unmarked as Command);
        expect(Buffer.from(dedupIdentity(plain)).equals(Buffer.from(plain)), 'an unmarked command is its own identity').to.equal(true);
        expect(Buffer.from(dedupIdentity(encodeCommand({ ...unmarked, completedBelow: mark } as Command))).equals(Buffer.from(plain)), 'the marked one has the unmarked bytes as identity').to.equal(true);
        const other = encodeCommand({ ...unmarked, requestId: cmd.requestId === 0 ? 1 : cmd.requestId - 1, completedBelow: mark } as Command);
        expect(Buffer.from(dedupIdentity(other)).equals(Buffer.from(plain)), 'another request id is another identity').to.equal(false);
      }),
      { numRuns: 300, seed: 24 },
    );
  });

  it('random damage to version-2 bytes is CORRUPTION or a command that encodes back to the same bytes', () => {
    let decoded = 0;
    fc.assert(
      fc.property(fc.oneof(writeArb, deleteArb), fc.nat(), fc.integer({ min: 1, max: 255 }), (cmd, at, xor) => {
        const bytes = encodeCommand(cmd).slice();
        bytes[at % bytes.byteLength]! ^= xor;
        let result: Command;
        try {
          result = decodeCommand(bytes);
        } catch (err) {
          expect(isRegionDbError(err, ErrorCode.Corruption), (err as Error).message).to.equal(true);
          return;
        }
        decoded++;
        // Whatever decodes is exactly what those bytes say (-0 stays a float64, so every value has one encoding).
        expect(sameExactly(decodeCommand(encodeCommand(result)), result)).to.equal(true);
      }),
      { numRuns: 3000, seed: 11 },
    );
    expect(decoded, 'some damage lands in a value and still decodes (a bit flip in a value is the WAL checksum\'s to catch)').to.be.greaterThan(0);
  });
});

describe('engine: command format version 1 (JSON) still replays', () => {
  const entries = FIXTURE.entries.map(fromHex);

  it('every entry of the fixture log (written by the version-1 encoder) decodes, and encodeCommandV1 writes its bytes back exactly', () => {
    for (const [i, bytes] of entries.entries()) {
      expect(bytes[0], `entry ${i + 1} is version 1`).to.equal(1);
      const cmd = decodeCommand(bytes);
      expect(Buffer.from(encodeCommandV1(cmd)).toString('hex'), `entry ${i + 1}`).to.equal(FIXTURE.entries[i]);
    }
  });

  it('a replica applying the version-1 log reaches the state the version-1 code reached: answers, rows, manifest, dedup hashes', async () => {
    const state = new RegionState(FIXTURE.schema, 'r77', undefined, fixtureClock);
    expect(await replay(state, entries)).to.deep.equal(FIXTURE.results);
    expect(await rowsOf(state)).to.deep.equal(FIXTURE.rows);
    expect(state.manifest()).to.deep.equal(FIXTURE.manifest);
    expect(state.frozen.map((f) => f.dedup)).to.deep.equal(FIXTURE.frozenDedup);
  });

  it('the same commands encoded as version 2 give the same answers and rows (only the dedup hashes differ: they are of the bytes)', async () => {
    const state = new RegionState(FIXTURE.schema, 'r77', undefined, fixtureClock);
    expect(await replay(state, entries.map((b) => encodeCommand(decodeCommand(b))))).to.deep.equal(FIXTURE.results);
    expect(await rowsOf(state)).to.deep.equal(FIXTURE.rows);
  });

  it('a retry sent again across the upgrade (recorded from version-1 bytes, proposed as version 2) is answered as a retry; another command under its id is still refused', async () => {
    const state = new RegionState(FIXTURE.schema, 'r77', undefined, fixtureClock);
    await replay(state, entries);
    let index = entries.length;
    const original = decodeCommand(entries[0]!); // c1/1, recorded with the hash of its version-1 bytes
    expect(original).to.include({ clientId: 'c1', requestId: 1 });
    expect(await state.apply(++index, encodeCommand(original), 1), 'the same write, as version 2').to.deep.equal(FIXTURE.results[0]);
    const changed: Command = { ...(original as Command & { kind: 'write' }), rows: [['a', 1, true, 1000, 0.75, 7, 'x', false]] };
    expect(await state.apply(++index, encodeCommand(changed), 1), 'another write under c1/1').to.deep.equal({ status: 'request-id-reused' });
    const conditional = decodeCommand(entries[6]!); // c2/11, expectVersion
    expect(conditional).to.include({ clientId: 'c2', requestId: 11, expectVersion: 6 });
    expect(await state.apply(++index, encodeCommand(conditional), 1)).to.deep.equal(FIXTURE.results[6]);
    expect(await rowsOf(state), 'nothing applied twice').to.deep.equal(FIXTURE.rows);
  });
});
