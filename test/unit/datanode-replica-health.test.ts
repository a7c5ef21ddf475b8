// Issue 14 item 3, the datanode's side of repair: a replica whose WAL records are damaged does not
// start, the node does (it reports the replica failed, naming region and index); the same peer id
// never reopens it; a fresh peer id for the region (what the metasrv's repair sends) replaces it.
// An in-process datanode on a temp dir; a fake metasrv answers its registration (a datanode
// reopens the replicas in its log only then) and every heartbeat with nothing to do.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { datanodeConfigSchema } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { Datanode, type ProtoOpenRegion } from '../../src/datanode/datanode.js';
import { type TableSchema, encodeCommand } from '../../src/engine/index.js';
import { makeRegionId } from '../../src/engine/key.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { unary } from '../../src/rpc/status.js';
import { toProtoSchema } from '../../src/rpc/values.js';
import { entryIndexes, flipByte } from '../fixtures/wal-corrupt.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 4096, regionCount: 2, field: 'v' });
const damagedRegion = makeRegionId(schema.tableId, 0);
const healthyRegion = makeRegionId(schema.tableId, 1);

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('datanode: a replica with damaged WAL records fails alone and is replaced under a fresh peer id (issue 14 item 3)', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-dn-health-'));
  let datanode: Datanode | undefined;
  let fakeMeta: RunningGrpcServer | undefined;

  before(async () => {
    fakeMeta = await startGrpcServer(
      '127.0.0.1',
      0,
      [
        {
          name: 'Meta',
          impl: {
            RegisterNode: unary(async () => ({ regions: [], metasrv_epoch: '0' }), silentLogger),
            Heartbeat: unary(async () => ({ instructions: [], metasrv_epoch: '0' }), silentLogger),
          } as never,
        },
      ],
      silentLogger,
    );
  });

  const start = async () => {
    datanode = new Datanode(
      datanodeConfigSchema.parse({
        cluster_id: 'health',
        node: { id: 1, data_dir: join(dir, 'datanode1') },
        grpc: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        metasrv: { addr: `127.0.0.1:${fakeMeta!.port}` },
        heartbeat: { interval_ms: 60_000 },
        storage: { type: 'fs', root: join(dir, 'objects') },
      }),
      silentLogger,
    );
    await datanode.start();
    const dn = datanode;
    await waitFor(() => (dn.health() as { registered: boolean }).registered, 'the registration (the log\'s replicas reopen then)');
    return dn;
  };
  const open = (regionId: string, peerId: number, bootstrap: boolean): ProtoOpenRegion => ({
    metasrv_epoch: '0',
    region_id: regionId,
    table: toProtoSchema(schema),
    peers: [{ peer_id: String(peerId), node_id: '1', addr: '' }],
    self_peer_id: String(peerId),
    bootstrap,
    recover_from_object_store: false,
  });
  const write = async (dn: Datanode, regionId: string, requestId: number) => {
    await waitFor(() => dn.regionServer.replica(regionId)?.isLeader() === true, `a leader for ${regionId}`);
    return dn.regionServer.propose(regionId, encodeCommand({ kind: 'write', clientId: 't', requestId, rows: [['h', 1000 + requestId, requestId]] }));
  };

  after(async () => {
    await datanode?.stop();
    await fakeMeta?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts with the damaged replica failed (region + index in replica stats and /health) and serves the others', async () => {
    let dn = await start();
    await dn.openRegion(open(damagedRegion, 7, true));
    await dn.openRegion(open(healthyRegion, 8, true));
    for (let i = 1; i <= 3; i++) await write(dn, damagedRegion, i);
    await write(dn, healthyRegion, 1);
    await dn.stop();
    const walDir = join(dir, 'datanode1', 'wal');
    const last = (await entryIndexes(walDir, damagedRegion)).at(-1)!;
    await flipByte(walDir, damagedRegion, last);

    dn = await start();
    const running = dn.regionServer.replica(damagedRegion);
    expect(running?.appliedIndex, 'the damaged replica must not run (it would run without entry ' + last + ')').to.equal(undefined);
    // The other region serves (and has replayed its log, membership included).
    expect(await write(dn, healthyRegion, 2)).to.include({ status: 'ok' });
    const failure = dn.regionServer.failure(damagedRegion);
    expect(failure?.index).to.equal(last);
    expect(failure?.selfPeerId).to.equal(7);
    const stats = dn.replicaStats() as { region_id: string; health: string; failure: string; conf_index: string }[];
    const failed = stats.find((s) => s.region_id === damagedRegion)!;
    expect(failed.health).to.equal('failed');
    expect(failed.failure).to.include(`region ${damagedRegion} at index ${last}`);
    const healthy = stats.find((s) => s.region_id === healthyRegion)!;
    expect(healthy).to.include({ health: 'ok', failure: '', conf_index: '1' });
    const health = dn.health() as { status: string; failedReplicas: { regionId: string; index: number }[] };
    expect(health.status).to.equal('ok');
    expect(health.failedReplicas.map((f) => [f.regionId, f.index])).to.deep.equal([[damagedRegion, last]]);
  });

  it('an open_region under the same peer id leaves it failed; under a fresh peer id it replaces the failed replica', async () => {
    const dn = datanode!;
    const { index } = dn.regionServer.failure(damagedRegion)!;
    await dn.openRegion(open(damagedRegion, 7, false));
    expect(dn.regionServer.failure(damagedRegion)?.index, 'never reopened under its own peer id').to.equal(index);
    expect(dn.regionServer.replica(damagedRegion)).to.equal(undefined);

    await dn.openRegion(open(damagedRegion, 9, true));
    expect(dn.regionServer.failure(damagedRegion)).to.equal(undefined);
    expect(dn.regionServer.replica(damagedRegion)?.selfPeerId).to.equal(9);
    expect(await write(dn, damagedRegion, 1)).to.include({ status: 'ok' });

    // The replacement survives a restart; the damaged records went with the failed replica.
    await dn.stop();
    const restarted = await start();
    expect(restarted.regionServer.failedReplicas()).to.deep.equal([]);
    expect(restarted.regionServer.replica(damagedRegion)?.selfPeerId).to.equal(9);
    expect(await write(restarted, damagedRegion, 2)).to.include({ status: 'ok' });
  });
});
