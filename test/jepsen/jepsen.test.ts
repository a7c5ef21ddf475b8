// The short Jepsen runs inside `make test`: real processes, real faults, the real checker.
// Longer campaigns: `make jepsen RUNS=20 TIME=60`. Seeds are printed; a failing run replays
// with SEED=<seed> RUNS=1 make jepsen.
import { expect } from 'chai';
import { type RunReport, runJepsen } from './run.js';

// A fixed seed in `make test` (deterministic fault schedule; `make jepsen` draws random seeds).
const seed = Number(process.env['JEPSEN_SEED'] ?? 20_261_203);
const log = (line: string) => process.stdout.write(`      ${line}\n`);

function describeRun(r: RunReport): string {
  return `seed ${r.seed}, report ${r.dir}/results.json; replay: SEED=${r.seed} RUNS=1 TIME=25 NEMESIS=kill,partition make jepsen`;
}

describe('jepsen (short runs against real processes)', function () {
  this.timeout(240_000);

  it('kill -9 and partitions: every history is linearizable and no acknowledged write is lost', async () => {
    log(`seed ${seed}`);
    const r = await runJepsen({ seed, timeSec: 25, faults: ['kill', 'partition'], coverEachFault: true, storeDir: process.env['JEPSEN_STORE'], log });
    for (const f of r.faults) log(`${f.fault} ${f.targets.join(',')}: RTO ${f.rtoMs ?? 'none'} ms, recovered after ${f.recoveryMs ?? 'n/a'} ms`);
    expect(new Set(r.faults.map((f) => f.fault)), 'fault kinds the nemesis injected').to.deep.equal(new Set(['kill', 'partition']));
    expect(r.notConverged, 'replicas converged after healing').to.equal(null);
    expect(r.failedFinalReads, 'final reads (every register key, the set from every node)').to.deep.equal([]);
    expect(r.set.finalReads, 'set final reads: one per datanode').to.equal(3);
    expect(r.ops['write']?.['ok'] ?? 0, 'writes were acknowledged').to.be.greaterThan(50);
    expect(r.ops['read']?.['ok'] ?? 0, 'reads completed').to.be.greaterThan(50);
    expect(r.set.acknowledged, 'set inserts were acknowledged').to.be.greaterThan(50);
    expect(r.rpo, `lost acknowledged writes (${describeRun(r)})`).to.equal(0);
    expect(r.register.valid, `register linearizability (${describeRun(r)}): ${JSON.stringify(r.register.details).slice(0, 2000)}`).to.equal(true);
    expect(r.valid, describeRun(r)).to.equal(true);
  });

  it('the harness catches a real bug: reads from any replica without ReadIndex are reported non-linearizable', async () => {
    // Harness fault, not a server flag: the test client reads a random replica's local state.
    // Partitions leave an isolated replica behind, so its reads go stale.
    const r = await runJepsen({ seed: seed + 1, timeSec: 20, faults: ['partition'], brokenStaleReads: true, storeDir: process.env['JEPSEN_STORE'], log });
    expect(r.faults.length, 'partitions injected').to.be.greaterThan(0);
    expect(r.register.valid, describeRun(r)).to.equal(false);
    expect(r.register.invalidKeys.length).to.be.greaterThan(0);
    const detail = r.register.details[0] as { message?: string };
    log(`checker says: ${detail.message?.slice(0, 300)}`);
    expect(detail.message).to.be.a('string').and.match(/read/);
  });
});
