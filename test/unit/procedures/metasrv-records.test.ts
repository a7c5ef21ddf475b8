// A real metasrv (in process, no datanodes) started on a catalog written before procedure data
// was typed, with one record this version cannot run: it starts, lists the readable procedures
// at their saved steps, shows the unreadable one as failed with the reason, and keeps running
// its passes (no failing tick on every pass).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ManualClock } from '../../../src/common/clock.js';
import { metasrvConfigSchema } from '../../../src/common/config.js';
import { silentLogger } from '../../../src/common/logger.js';
import type { CatalogState } from '../../../src/metasrv/catalog.js';
import { CatalogStore } from '../../../src/metasrv/catalog-store.js';
import { Metasrv } from '../../../src/metasrv/metasrv.js';
import { call, makeClient } from '../../../src/rpc/server.js';
import { sleep } from '../../support/local-cluster.js';

interface Status {
  procedures: { id: string; kind: string; status: string; step: string; description: string; error: string }[];
}

describe('metasrv: stored procedure records from an older version, and one it cannot run', function () {
  this.timeout(30_000);
  let dir: string;
  let metasrv: Metasrv | undefined;
  let meta: grpc.Client | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-proc-records-'));
    const catalog = (JSON.parse(readFileSync('test/fixtures/procedure-records-v1.json', 'utf8')) as { catalog: CatalogState }).catalog;
    (catalog.procedures['drain-node-4'] as unknown as { kind: string }).kind = 'split-region';
    const store = await CatalogStore.open(join(dir, 'metasrv'), silentLogger);
    await store.save(catalog);
    await store.close();
    metasrv = new Metasrv(
      metasrvConfigSchema.parse({
        cluster_id: 'fixture',
        node: { data_dir: join(dir, 'metasrv') },
        grpc: { port: 0 },
        http: { port: 0 },
        balance_leaders_interval_ms: 0,
        storage: { type: 'fs', root: join(dir, 'objects') },
        failure_detector: { heartbeat_interval_ms: 100 },
      }),
      silentLogger,
      3,
      new ManualClock(1_700_000_010_000),
    );
    await metasrv.start();
    meta = makeClient('Meta', `127.0.0.1:${metasrv.grpcPort}`);
  });

  after(async () => {
    meta?.close();
    await metasrv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts, shows each record, and keeps running its passes', async () => {
    const status = () => call<Status>(meta!, 'ListNodes', {}, 3000);
    const first = await status();
    const byId = Object.fromEntries(first.procedures.map((p) => [p.id, p]));
    expect(byId['repair-replica-2']).to.include({ status: 'running', step: 'add-learner' });
    expect(byId['repair-replica-2']!.description).to.match(/replace peer 3 \(node 3\) with peer 4 on node 4/);
    expect(byId['drain-node-4']).to.include({ kind: 'split-region', status: 'failed', step: 'move-leaders' });
    expect(byId['drain-node-4']!.error).to.match(/unknown kind "split-region"/);
    await sleep(1500); // past the startup quiet period: several passes run
    const later = await status();
    // Every record is still there. The one new drain-node is node 4's (finding Q1): node 4 is
    // draining and hosts replicas, and its drain's record cannot run here, so the metasrv drains
    // it again (with the repair that drain starts).
    const added = later.procedures.filter((p) => !first.procedures.some((f) => f.id === p.id));
    expect(later.procedures.map((p) => p.id)).to.include.members(first.procedures.map((p) => p.id));
    expect(added.filter((p) => p.kind === 'drain-node').map((p) => p.description)).to.deep.equal(['node 4']);
    expect(added.every((p) => p.kind === 'drain-node' || (p.kind === 'repair-replica' && /\(node 4\)/.test(p.description))), JSON.stringify(added)).to.equal(true);
    expect(metasrv!.catalog.unreadableProcedures).to.have.key('drain-node-4');
  });
});
