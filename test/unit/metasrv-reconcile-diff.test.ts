// Heartbeat reconciliation, rewritten for speed (issue 19 item 4), against the straightforward
// version it replaced (test/fixtures/reconcile-reference.ts, unchanged): the same adoptions,
// matches and problems, in the same order, and the same id floors (with and without the
// metasrv's per-report cache), over seeded random catalogs and reports that mix every case R1–R4
// distinguish — leaderless regions, several leaders of different terms, failed leaders, learners,
// memberships equal / older / newer than the catalog, busy regions, regions the catalog does not
// know or dropped. A failure names its seed and case: RECONCILE_DIFF_SEED=<seed> replays it.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { type CatalogState, type RegionDef, emptyCatalog, makeRegionId, regionList } from '../../src/metasrv/catalog.js';
import type { ObservedReplica } from '../../src/metasrv/procedures/procedure.js';
import { type CatalogReconciliation, type ReportFloors, type Reports, idFloors, reconcileCatalog } from '../../src/metasrv/reconcile.js';
import * as reference from '../fixtures/reconcile-reference.js';

const SEED = Number(process.env['RECONCILE_DIFF_SEED'] ?? 4);
const CASES = 400;

function pick<T>(rand: SeededRand, from: readonly T[]): T {
  return from[rand.int(from.length)]!;
}

/** A few distinct peers out of a small pool (so the catalog's and the group's often coincide). */
function peers(rand: SeededRand, pool: number, most: number): number[] {
  const out = new Set<number>();
  const n = rand.int(most + 1);
  for (let i = 0; i < n; i++) out.add(1 + rand.int(pool));
  return [...out];
}

function scenario(rand: SeededRand): { catalog: CatalogState; reports: Reports; busy: Set<string>; downLong: Set<number> } {
  const catalog = emptyCatalog('c');
  const nodeIds = [1, 2, 3, 4].slice(0, 1 + rand.int(4));
  // Nodes the catalog knows (M25 places only on those), and some down for replica_repair_after_ms.
  for (const nodeId of [1, 2, 3, 4, 5]) if (rand.chance(0.8)) catalog.nodes[nodeId] = { nodeId, addr: `n${nodeId}`, httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
  const downLong = new Set([1, 2, 3, 4, 5].filter(() => rand.chance(0.3)));
  const regionIds = Array.from({ length: 1 + rand.int(12) }, (_, i) => makeRegionId(1024 + rand.int(3), i));
  const byNode = new Map<number, Map<string, ObservedReplica>>(nodeIds.map((n) => [n, new Map()]));
  const busy = new Set<string>();
  for (const regionId of regionIds) {
    const where = rand.int(10);
    if (where < 7) {
      // In the catalog: placed peers on random nodes (a duplicate peer id now and then).
      const placed = peers(rand, 6, 4).map((peerId) => ({ peerId, nodeId: pick(rand, nodeIds) }));
      if (placed.length > 0 && rand.chance(0.05)) placed.push({ ...placed[0]! });
      const region: RegionDef = {
        regionId,
        tableName: 't',
        regionNumber: 0,
        replicas: placed,
        leaderNodeId: 0,
        confVersion: 1,
        ...(rand.chance(0.8) ? { confIndex: rand.int(8) } : {}),
      };
      catalog.regions[regionId] = region;
      if (rand.chance(0.15)) busy.add(regionId);
    } else if (where < 8) {
      catalog.droppedRegions = { ...(catalog.droppedRegions ?? {}), [regionId]: 1 };
    }
    // Reports: a random subset of nodes host a replica, some of them leaders.
    const catalogPeers = catalog.regions[regionId]?.replicas.map((p) => p.peerId) ?? [];
    for (const nodeId of nodeIds) {
      if (rand.chance(0.3)) continue;
      // The group's membership: usually the catalog's, else another small set.
      const voters = rand.chance(0.6) ? [...new Set(catalogPeers)] : peers(rand, 6, 4);
      const learners = rand.chance(0.2) ? peers(rand, 8, 2).filter((l) => !voters.includes(l)) : [];
      if (rand.chance(0.1) && voters.length > 0) voters.reverse();
      // A leader names its members' nodes (M25), not always all of them, on nodes 1–5.
      const members = rand.chance(0.5) ? [...voters, ...learners].filter(() => rand.chance(0.85)).map((peerId) => ({ peerId, nodeId: 1 + rand.int(5) })) : undefined;
      byNode.get(nodeId)!.set(regionId, {
        ...(members ? { members } : {}),
        regionId,
        peerId: 1 + rand.int(8),
        role: pick(rand, ['leader', 'leader', 'follower', 'candidate']),
        term: 1 + rand.int(4),
        leaderNodeId: 0,
        appliedIndex: rand.int(100),
        commitIndex: rand.int(100),
        flushedIndex: 0,
        voters,
        learners,
        health: rand.chance(0.1) ? 'failed' : 'ok',
        failure: '',
        confIndex: rand.int(10),
      });
    }
  }
  const reports: Reports = new Map([...byNode].filter(() => rand.chance(0.95)));
  return { catalog, reports, busy, downLong };
}

/** Everything observable, in order (a Map's deep equality in chai ignores its order). */
const observable = (r: CatalogReconciliation) => ({ adopt: r.adopt, matched: r.matched, problems: [...r.problems] });

describe('metasrv reconciliation: the rewritten reconcileCatalog and idFloors decide as the reference did', () => {
  it(`${CASES} seeded random catalogs and reports (seed ${SEED}; replay: RECONCILE_DIFF_SEED=${SEED})`, () => {
    const rand = new SeededRand(SEED);
    const cache = new WeakMap<ReadonlyMap<string, ObservedReplica>, ReportFloors>();
    const seen = { adopt: 0, matched: 0, problems: 0, leaderless: 0, placedLost: 0 };
    for (let c = 0; c < CASES; c++) {
      const { catalog, reports, busy, downLong } = scenario(rand);
      const down = (n: number) => downLong.has(n);
      const expected = reference.reconcileCatalog(catalog, reports, busy, down);
      const actual = reconcileCatalog(catalog, reports, busy, down);
      expect(observable(actual), `case ${c} (seed ${SEED})`).to.deep.equal(observable(expected));
      const floors = reference.idFloors(reports);
      expect(idFloors(reports), `floors, case ${c}`).to.deep.equal(floors);
      expect(idFloors(reports, cache), `floors through the cache, case ${c}`).to.deep.equal(floors);
      expect(idFloors(reports, cache), `floors from the cache, case ${c}`).to.deep.equal(floors);
      seen.adopt += expected.adopt.length;
      seen.placedLost += expected.adopt.filter((a) => a.note.includes('placed lost')).length;
      seen.matched += expected.matched.length;
      seen.problems += [...expected.problems.values()].flat().length;
      seen.leaderless += [...expected.problems.values()].flat().filter((p) => p.includes('no leader')).length;
    }
    // The scenarios reach every kind of outcome (else the comparison proves little).
    for (const [what, n] of Object.entries(seen)) expect(n, what).to.be.greaterThan(20);
  });

  it('a heartbeat replaces one report: the cache serves the others, the new one is computed', () => {
    const leader = (regionId: string, peerId: number, voters: number[]): ObservedReplica => ({
      regionId,
      peerId,
      role: 'leader',
      term: 1,
      leaderNodeId: 0,
      appliedIndex: 1,
      commitIndex: 1,
      flushedIndex: 0,
      voters,
      learners: [],
      health: 'ok',
      failure: '',
      confIndex: 1,
    });
    const cache = new WeakMap<ReadonlyMap<string, ObservedReplica>, ReportFloors>();
    const one = new Map([[makeRegionId(7, 0), leader(makeRegionId(7, 0), 3, [1, 2, 3])]]);
    const two = new Map([[makeRegionId(9, 1), leader(makeRegionId(9, 1), 5, [4, 5])]]);
    expect(idFloors(new Map([[1, one], [2, two]]), cache)).to.deep.equal({ nextPeerId: 6, nextTableId: 10 });
    const twoAgain = new Map([[makeRegionId(12, 1), leader(makeRegionId(12, 1), 40, [40])]]);
    expect(idFloors(new Map([[1, one], [2, twoAgain]]), cache)).to.deep.equal({ nextPeerId: 41, nextTableId: 13 });
  });

  it('regionList gives what Object.values(catalog.regions) gives, in the same order (also after deletes and a JSON round trip)', () => {
    const rand = new SeededRand(SEED);
    const catalog = emptyCatalog('c');
    for (let i = 0; i < 3000; i++) {
      const regionId = makeRegionId(1024 + rand.int(5), rand.int(1000));
      if (rand.chance(0.1)) delete catalog.regions[regionId];
      else catalog.regions[regionId] = { regionId, tableName: 't', regionNumber: i, replicas: [], leaderNodeId: 0, confVersion: 1 };
    }
    expect(Object.keys(catalog.regions).length).to.be.greaterThan(1000);
    const values = Object.values(catalog.regions);
    expect(regionList(catalog)).to.deep.equal(values);
    expect(regionList(catalog).every((r, i) => r === values[i]), 'the same objects').to.equal(true);
    const parsed = JSON.parse(JSON.stringify(catalog)) as CatalogState;
    expect(regionList(parsed)).to.deep.equal(Object.values(parsed.regions));
    expect(regionList(emptyCatalog('c'))).to.deep.equal([]);
  });
});
