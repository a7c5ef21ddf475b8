// tableIdOfRegion (src/metasrv/reconcile.ts) takes a short decimal region id's table id by a
// division instead of a BigInt shift (the metasrv computes it for every replica of every report
// it builds a view of). The oracle is the shift itself, over seeded random ids of every length
// and the edges: region numbers 0 and 2^32 - 1, 15 and 16 digits, the largest u64, and strings
// only BigInt reads (hex, blanks), which must still be read as before.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { tableIdOfRegion } from '../../src/metasrv/reconcile.js';

const SEED = Number(process.env['TABLE_ID_SEED'] ?? 1);
const byShift = (regionId: string) => Number(BigInt(regionId) >> 32n);

describe('tableIdOfRegion', () => {
  it(`equals the BigInt shift on edge cases and 20,000 seeded random ids (seed ${SEED})`, () => {
    const edges = ['0', '1', '4294967295', '4294967296', '4294967297', '999999999999999', '1000000000000000', '9007199254740991', '9007199254740993', '18446744073709551615', '0x100000000', ' 4294967296', '00004294967296'];
    for (const id of edges) expect(tableIdOfRegion(id), id).to.equal(byShift(id));
    const rand = new SeededRand(SEED);
    for (let i = 0; i < 20_000; i++) {
      // Half with tables below 2^21 (ids below 2^53: the division), half far above (the shift).
      const table = rand.chance(0.5) ? BigInt(rand.int(2 ** 21)) : BigInt(rand.int(2 ** 30)) * BigInt(1 + rand.int(2 ** 20));
      const id = String((table << 32n) | BigInt(rand.int(2 ** 32)));
      expect(tableIdOfRegion(id), `seed ${SEED}: ${id}`).to.equal(byShift(id));
    }
  });

  it('still refuses what the shift refuses', () => {
    for (const bad of ['abc', '1.5', '-']) expect(() => tableIdOfRegion(bad), bad).to.throw();
  });
});
