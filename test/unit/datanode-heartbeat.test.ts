// The datanode's side of the metasrv protocol: one heartbeat in flight at a time (issue 14.8:
// overlapping handlers could apply an older reply's close(destroy) after a newer reply's open
// of the same region), and the store identity it reports (issue 14.1).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { datanodeConfigSchema } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { STORE_ID_FILE, isFreshStoreId } from '../../src/common/store-id.js';
import { Datanode } from '../../src/datanode/datanode.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { unary } from '../../src/rpc/status.js';
import { waitUntil } from '../support/local-cluster.js';

describe('datanode heartbeats (issue 14.8)', function () {
  this.timeout(30_000);
  let dir: string;
  let fakeMeta: RunningGrpcServer;
  let datanode: Datanode | undefined;
  const seen = { inFlight: 0, maxInFlight: 0, done: 0, storeIds: new Set<string>() };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-heartbeat-'));
    // A metasrv slower to answer a heartbeat (400 ms) than the heartbeat interval (100 ms).
    fakeMeta = await startGrpcServer(
      '127.0.0.1',
      0,
      [
        {
          name: 'Meta',
          impl: {
            RegisterNode: unary(async (req: { store_id: string }) => {
              seen.storeIds.add(req.store_id);
              return { regions: [] };
            }, silentLogger),
            Heartbeat: unary(async (req: { store_id: string }) => {
              seen.storeIds.add(req.store_id);
              seen.inFlight++;
              seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
              await new Promise((ok) => setTimeout(ok, 400)); // the fake's service time, not a synchronization
              seen.inFlight--;
              seen.done++;
              return { instructions: [] };
            }, silentLogger),
          },
        },
      ],
      silentLogger,
    );
    datanode = new Datanode(
      datanodeConfigSchema.parse({
        cluster_id: 'hb-cluster',
        node: { id: 1, data_dir: join(dir, 'datanode1') },
        grpc: { port: 0 },
        http: { port: 0 },
        metasrv: { addr: `127.0.0.1:${fakeMeta.port}` },
        heartbeat: { interval_ms: 100 },
        storage: { type: 'fs', root: join(dir, 'objects') },
      }),
      silentLogger,
    );
    await datanode.start();
  });

  after(async () => {
    await datanode?.stop();
    await fakeMeta?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never has two heartbeats in flight, however slow the metasrv answers', async () => {
    await waitUntil('3 heartbeats answered', 20_000, async () => (seen.done >= 3 ? true : undefined));
    expect(seen.maxInFlight).to.equal(1);
  });

  it('reports the store id of its data dir at registration and in every heartbeat', () => {
    const stored = readFileSync(join(dir, 'datanode1', STORE_ID_FILE), 'utf8').trim();
    expect([...seen.storeIds]).to.deep.equal([stored]);
    expect(isFreshStoreId(stored), 'created on an empty data dir').to.equal(true);
  });
});
