// The whole-datanode simulator as a test suite (cluster-sim.ts). SIM_CLUSTER_SEEDS seeds (default
// 200 in the mocha glob, `make test-sim-cluster SEEDS=n` for a campaign); SIM_CLUSTER_SEED=n
// replays one seed twice and checks that both runs hash the same.
import { expect } from 'chai';
import { ClusterSimViolation, runClusterSim } from './cluster-sim.js';

const envSeed = process.env['SIM_CLUSTER_SEED'];
const seedCount = Number(process.env['SIM_CLUSTER_SEEDS'] || 200);
const firstSeed = Number(process.env['SIM_CLUSTER_FIRST_SEED'] || 1);

describe('whole-datanode simulator (real RegionServer, simulated disk, network and time)', function () {
  this.timeout(0);

  if (envSeed !== undefined && envSeed !== '') {
    const seed = Number(envSeed);
    // SIM_CLUSTER_HOST_BUG replays a seed of the planted-bug test with the bug switched on.
    const hostBug = process.env['SIM_CLUSTER_HOST_BUG'] === 'send-before-persist' ? ({ hostBug: 'send-before-persist' } as const) : {};
    it(`replays seed ${seed} to the same trace hash${'hostBug' in hostBug ? ' (planted bug on)' : ''}`, async () => {
      const a = await runClusterSim(seed, hostBug);
      const b = await runClusterSim(seed, hostBug);
      console.log(`    seed ${seed}: trace ${a.traceHash}, ${a.events} events, ops ${JSON.stringify(a.ops)}, ${a.crashes} crashes, ${a.elections} elections`);
      expect(b.traceHash).to.equal(a.traceHash);
    });
    return;
  }

  it('the same seed replays to the same trace hash', async () => {
    const a = await runClusterSim(7);
    const b = await runClusterSim(7);
    expect(b.traceHash).to.equal(a.traceHash);
    expect(b.events).to.equal(a.events);
    const c = await runClusterSim(8);
    expect(c.traceHash).to.not.equal(a.traceHash);
  });

  it(`${seedCount} seeds from ${firstSeed}: linearizable registers, no acknowledged add lost, replicas agree`, async () => {
    const started = Date.now();
    let ok = 0;
    let acked = 0;
    let crashes = 0;
    for (let seed = firstSeed; seed < firstSeed + seedCount; seed++) {
      const r = await runClusterSim(seed);
      ok += r.ops.ok;
      acked += r.acknowledgedAdds;
      crashes += r.crashes;
    }
    const seconds = (Date.now() - started) / 1000;
    console.log(`    ${seedCount} seeds in ${seconds.toFixed(1)} s: ${ok} ok ops, ${acked} acknowledged adds, ${crashes} crashes`);
    // A run that does nothing checks nothing.
    expect(ok).to.be.greaterThan(seedCount * 20);
    expect(crashes).to.be.greaterThan(seedCount);
  });

  // The simulator is evidence only if it can fail: the planted host bug (a test-only subclass of
  // RegionServer overriding the rule of src/raft/host-rules.ts) lets followers acknowledge appends and voters grant votes before their write is durable;
  // a crash in the fsync window then forgets them. It must be found within 2,000 seeds, by a
  // safety checker (not only as lost liveness), and the failing seed must replay identically.
  it('the checkers can fail: followers acking before their write is durable (planted) is found within 2,000 seeds', async () => {
    const planted = { hostBug: 'send-before-persist' } as const;
    let first: ClusterSimViolation | undefined;
    let safety: ClusterSimViolation | undefined;
    for (let seed = 1; seed <= 2000 && !safety; seed++) {
      try {
        await runClusterSim(seed, planted);
      } catch (err) {
        if (!(err instanceof ClusterSimViolation)) throw err;
        first ??= err;
        if (err.invariant !== 'liveness') safety = err;
      }
    }
    expect(first, 'no seed exposed the planted bug').to.not.equal(undefined);
    expect(safety, 'only liveness failures: no safety checker caught the planted bug').to.not.equal(undefined);
    console.log(`    first found by seed ${first!.seed} (${first!.invariant}); first safety violation: seed ${safety!.seed} (${safety!.invariant})`);
    // The failing seed replays to the same violation.
    let again: ClusterSimViolation | undefined;
    try {
      await runClusterSim(safety!.seed, planted);
    } catch (err) {
      again = err as ClusterSimViolation;
    }
    expect(again?.message).to.equal(safety!.message);
  });

  it('a violation carries the seed, the replay command and the last events', () => {
    const v = new ClusterSimViolation(42, 'linearizability', 'detail', ['1 a', '2 b']);
    expect(v.message).to.contain('SIM_CLUSTER_SEED=42 make test-sim-cluster');
    expect(v.message).to.contain('2 b');
  });
});
