// The simulator's seed pool (test/sim/seed-pool.ts) changes where a seed runs, not what it does:
// results and violations from worker threads must equal those of runs in this thread.
import { expect } from 'chai';
import { type ClusterSimOptions, type ClusterSimResult, ClusterSimViolation, runClusterSim } from './cluster-sim.js';
import { runSeeds, seedsRunInWorkers } from './seed-pool.js';

async function inThread(seeds: readonly number[], options: Partial<ClusterSimOptions>): Promise<{ results: ClusterSimResult[]; thrown?: unknown }> {
  const results: ClusterSimResult[] = [];
  try {
    for (const seed of seeds) results.push(await runClusterSim(seed, options));
  } catch (thrown) {
    return { results, thrown };
  }
  return { results };
}

async function inWorkers(seeds: readonly number[], options: Partial<ClusterSimOptions>): Promise<{ results: ClusterSimResult[]; thrown?: unknown }> {
  const results: ClusterSimResult[] = [];
  try {
    await runSeeds(seeds, options, (r) => results.push(r), 2);
  } catch (thrown) {
    return { results, thrown };
  }
  return { results };
}

describe('simulator seed pool: seeds run in worker threads trace as in the test thread', function () {
  this.timeout(0);

  for (const [what, seeds, options] of [
    ['register mode, seeds 1–8', [1, 2, 3, 4, 5, 6, 7, 8], {}],
    ['engine mode, seeds 1–3', [1, 2, 3], { mode: 'engine' }],
    ['engine mode with the metasrv, corrupt and wipe, seeds 4 and 6', [4, 6], { mode: 'engine', metasrv: true, faults: ['corrupt', 'wipe'] }],
  ] as const) {
    it(`${what}: every result equal, handed back in seed order`, async () => {
      const before = seedsRunInWorkers;
      const here = await inThread(seeds, options as Partial<ClusterSimOptions>);
      const there = await inWorkers(seeds, options as Partial<ClusterSimOptions>);
      expect(here.thrown, String(here.thrown)).to.equal(undefined);
      expect(there.thrown, String(there.thrown)).to.equal(undefined);
      expect(seedsRunInWorkers - before, 'seeds the workers ran').to.equal(seeds.length);
      expect(there.results.map((r) => r.seed)).to.deep.equal([...seeds]);
      expect(there.results).to.deep.equal(here.results);
    });
  }

  it('a violation comes back as the one the loop in this thread throws first: same seed, message and replay; later results not handed on', async () => {
    // send-before-persist (a planted host bug): seed 35 is its first safety violation (cluster-sim.test.ts).
    const seeds = [33, 34, 35, 36, 37];
    const planted = { hostBug: 'send-before-persist' } as const;
    const here = await inThread(seeds, planted);
    const there = await inWorkers(seeds, planted);
    expect(here.thrown, 'the planted bug is found in this thread').to.be.instanceOf(ClusterSimViolation);
    expect(there.thrown, String(there.thrown)).to.be.instanceOf(ClusterSimViolation);
    const [a, b] = [here.thrown as ClusterSimViolation, there.thrown as ClusterSimViolation];
    expect(b.seed).to.equal(a.seed);
    expect(b.invariant).to.equal(a.invariant);
    expect(b.message).to.equal(a.message);
    expect(b.message).to.contain(`SIM_CLUSTER_SEED=${a.seed} make test-sim-cluster`);
    expect(there.results).to.deep.equal(here.results);
  });
});
