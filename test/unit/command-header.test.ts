// What a deferring follower reads of a write at apply (docs/engine.md, "Deferred rows on
// followers"): the header (decodeClientHeader) and the rows stepped over (BinaryReader.skipValue)
// must refuse exactly what the full decode refuses, with the same message, or a follower would
// answer (and remember) a command its leader refused. Seeded: a failure names its seed and case.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { BinaryReader, BinaryWriter } from '../../src/engine/command-binary.js';
import { type Command, decodeClientHeader, decodeCommand, encodeCommand, stampCommand } from '../../src/engine/command.js';
import type { Value } from '../../src/engine/schema.js';

function outcome<T>(f: () => T): { ok: T } | { err: string } {
  try {
    return { ok: f() };
  } catch (err) {
    return { err: (err as Error).message };
  }
}

function randomValue(rand: SeededRand): Value {
  switch (rand.int(8)) {
    case 0:
      return null;
    case 1:
      return rand.chance(0.5);
    case 2:
      return rand.int(1_000_000);
    case 3:
      return -1 - rand.int(1_000);
    case 4:
      return rand.next() * 1e6;
    case 5:
      return 'x'.repeat(rand.int(80));
    case 6:
      return `é${'y'.repeat(rand.int(70))}☃`;
    default:
      return 2 ** 52 + rand.int(1_000);
  }
}

/** Damage: a cut, a changed byte, or an inserted one, somewhere after the first `from` bytes. */
function damage(rand: SeededRand, bytes: Uint8Array, from: number): Uint8Array {
  const at = from + rand.int(Math.max(1, bytes.byteLength - from));
  const kind = rand.int(3);
  if (kind === 0) return bytes.slice(0, at);
  const out = new Uint8Array(bytes.byteLength + (kind === 2 ? 1 : 0));
  out.set(bytes.subarray(0, at));
  out[at] = rand.chance(0.5) ? rand.int(256) : [0x7f, 0x80, 0xff, 0xc0, 0xed, 7][rand.int(6)]!;
  out.set(bytes.subarray(kind === 2 ? at : at + 1), at + 1);
  return out;
}

describe('engine: a follower reads of a command what the full decode reads, and refuses what it refuses', () => {
  it('skipValue steps over exactly the bytes value() reads, and throws the same for every damage (3,000 seeded lists)', () => {
    for (let seed = 1; seed <= 3_000; seed++) {
      const rand = new SeededRand(seed);
      const w = new BinaryWriter();
      w.reset();
      w.valueList(Array.from({ length: 1 + rand.int(6) }, () => randomValue(rand)));
      const clean = w.finish();
      const bytes = rand.chance(0.8) ? damage(rand, clean, 0) : clean;
      const full = outcome(() => {
        const r = new BinaryReader(bytes, 0);
        r.valueList('values');
        r.end();
        return true;
      });
      const stepped = outcome(() => {
        const r = new BinaryReader(bytes, 0);
        const n = r.uint('values count');
        if (n > r.remaining()) return false; // valueList refuses this count; the follower applies eagerly
        for (let i = 0; i < n; i++) r.skipValue();
        r.end();
        return true;
      });
      const where = `seed ${seed}: ${Buffer.from(bytes).toString('hex')}`;
      if ('ok' in stepped && stepped.ok === false) {
        expect('err' in full, `${where}: a count past the bytes left`).to.equal(true);
        continue;
      }
      expect(stepped, where).to.deep.equal(full);
    }
  });

  it('decodeClientHeader refuses exactly the header damage decodeCommand refuses, with its message (3,000 seeded commands)', () => {
    for (let seed = 1; seed <= 3_000; seed++) {
      const rand = new SeededRand(seed);
      const id = { clientId: rand.chance(0.2) ? 'ü-client' : `client-${rand.int(100)}`, requestId: rand.int(2 ** 40) };
      const values = () => Array.from({ length: 1 + rand.int(4) }, () => randomValue(rand));
      const cmd: Command = rand.chance(0.3)
        ? { kind: 'delete', ...id, keys: [values()] }
        : { kind: 'write', ...id, rows: [values()], ...(rand.chance(0.3) ? { expectVersion: rand.int(1000) } : {}), ...(rand.chance(0.2) ? { expectAbsent: true } : {}) };
      let bytes = encodeCommand(cmd);
      if (rand.chance(0.2)) bytes = stampCommand(bytes, rand.int(2 ** 40));
      // Damage mostly the header (its first ~30 bytes), sometimes anywhere.
      const damaged = rand.chance(0.9) ? damage(rand, bytes.subarray(0, Math.min(bytes.byteLength, 40)).slice(), 0) : damage(rand, bytes, 0);
      const where = `seed ${seed}: ${Buffer.from(damaged).toString('hex')}`;
      const head = outcome(() => decodeClientHeader(damaged));
      const full = outcome(() => decodeCommand(damaged));
      if ('err' in head) {
        expect(full, `${where}: the header refused, so must the full decode`).to.deep.equal(head);
      } else if (head.ok !== undefined && 'ok' in full) {
        const f = full.ok as { clientId: string; requestId: number };
        expect([head.ok.clientId, head.ok.requestId], where).to.deep.equal([f.clientId, f.requestId]);
      }
    }
    // And an intact command's header is what the full decode reads.
    const bytes = encodeCommand({ kind: 'write', clientId: 'c', requestId: 9, rows: [['a', 1]], expectVersion: 4 });
    const head = decodeClientHeader(bytes)!;
    expect([head.kind, head.clientId, head.requestId, head.conditional]).to.deep.equal(['write', 'c', 9, true]);
    expect(decodeClientHeader(stampCommand(bytes, 5))!.requestId).to.equal(9);
  });
});
