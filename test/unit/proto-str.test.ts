// str() (src/rpc/proto.ts): a string field within its byte limit. Its fast path skips counting
// UTF-8 bytes for strings short enough in code units; the answer must be Buffer.byteLength's.
// Seeded: PROTO_STR_SEED=n replays a run.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { str } from '../../src/rpc/proto.js';

const SEED = process.env['PROTO_STR_SEED'] ? Number(process.env['PROTO_STR_SEED']) : 20_261_205;

/** Code units of 1, 2 and 3 UTF-8 bytes, a surrogate pair (4 bytes for 2 units) and lone surrogates (3 bytes each, as U+FFFD). */
const PIECES = ['a', '7', '\u0000', 'é', 'ß', '\u07ff', '✓', '中', '\uffff', '\u{1F600}', '\u{10FFFF}', '\ud800', '\udfff'];

function accepts(value: string, maxBytes: number): boolean {
  try {
    str(value, 'f', maxBytes);
    return true;
  } catch (err) {
    if (!isRegionDbError(err, ErrorCode.InvalidArgument)) throw err;
    return false;
  }
}

describe(`rpc: str() accepts a string exactly when its UTF-8 bytes fit (seed ${SEED})`, () => {
  it('random strings of every width, at limits around their byte length', () => {
    const rand = new SeededRand(SEED);
    for (let i = 0; i < 5000; i++) {
      const value = Array.from({ length: rand.int(40) }, () => rand.pick(PIECES)).join('');
      const bytes = Buffer.byteLength(value);
      for (const maxBytes of [bytes - 1, bytes, bytes + 1, value.length, 3 * value.length - 1, 3 * value.length]) {
        if (maxBytes < 0) continue;
        expect(accepts(value, maxBytes), `seed ${SEED}, case ${i}: ${JSON.stringify(value)} (${bytes} bytes, ${value.length} units) against ${maxBytes}`).to.equal(bytes <= maxBytes);
      }
    }
  });

  it('the edges: three-byte units at exactly a third of the limit, one unit over, and a non-string', () => {
    expect(accepts('中'.repeat(10), 30)).to.equal(true);
    expect(accepts('中'.repeat(11), 30)).to.equal(false);
    expect(accepts('\ud800'.repeat(10), 29)).to.equal(false); // lone surrogates: 3 bytes each
    expect(accepts('a'.repeat(30), 30)).to.equal(true);
    expect(accepts('a'.repeat(31), 30)).to.equal(false);
    expect(() => str(7, 'f', 30)).to.throw(/f: expected a string/);
  });
});
