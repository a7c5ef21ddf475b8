// The metasrv keeps tables and regions in plain objects keyed by name and id. A client-given
// name that is a member every object inherits ("constructor", "toString", "__proto__") names no
// table and no region: NOT_FOUND, as any unknown name (finding I2) — not INTERNAL, and never a
// DropTable that answers success for a table that never existed. CreateTable refuses such names
// for tables and columns (finding I1): rows are plain objects too, so the table could never be written.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { metasrvConfigSchema } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { Metasrv } from '../../src/metasrv/metasrv.js';
import { call, makeClient } from '../../src/rpc/server.js';

const CLUSTER = 'names-cluster';
const INHERITED = ['constructor', 'toString', 'hasOwnProperty', '__proto__'];

async function statusOf(p: Promise<unknown>): Promise<{ code: number | undefined; details: string }> {
  try {
    await p;
    return { code: grpc.status.OK, details: 'answered' };
  } catch (err) {
    const e = err as Partial<grpc.ServiceError>;
    return { code: e.code, details: String(e.details) };
  }
}

describe('metasrv: names every object inherits are unknown names (finding I2)', function () {
  this.timeout(30_000);
  let dir: string;
  let metasrv: Metasrv;
  let meta: grpc.Client;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-names-'));
    metasrv = new Metasrv(
      metasrvConfigSchema.parse({ cluster_id: CLUSTER, node: { data_dir: join(dir, 'metasrv') }, grpc: { port: 0 }, http: { port: 0 }, balance_leaders_interval_ms: 0 }),
      silentLogger,
      1,
    );
    await metasrv.start();
    meta = makeClient('Meta', `127.0.0.1:${metasrv.grpcPort}`);
    await call(meta, 'RegisterNode', { cluster_id: CLUSTER, node_id: '1', addr: '127.0.0.1:1', http_addr: '127.0.0.1:1', store_id: 'store-1' }, 3000);
  });

  after(async () => {
    meta.close();
    await metasrv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const name of INHERITED) {
    it(`CreateTable of a table or a column named ${JSON.stringify(name)}: INVALID_ARGUMENT (finding I1)`, async () => {
      const columns = [
        { name: 'host', type: 'STRING', semantic: 'TAG' },
        { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
      ];
      const table = await statusOf(call(meta, 'CreateTable', { name, columns, region_count: 1 }, 5000));
      expect(table.code, table.details).to.equal(grpc.status.INVALID_ARGUMENT);
      expect(table.details).to.include(`table name ${JSON.stringify(name)}`);
      const column = await statusOf(call(meta, 'CreateTable', { name: 'ok_name', columns: [...columns, { name, type: 'STRING', semantic: 'FIELD' }], region_count: 1 }, 5000));
      expect(column.code, column.details).to.equal(grpc.status.INVALID_ARGUMENT);
      expect(column.details).to.include(`column name ${JSON.stringify(name)}`);
    });

    it(`GetRoutes and DropTable of table ${JSON.stringify(name)}: NOT_FOUND`, async () => {
      const routes = await statusOf(call(meta, 'GetRoutes', { table: name }, 5000));
      expect(routes, 'GetRoutes').to.deep.equal({ code: grpc.status.NOT_FOUND, details: `table ${name} does not exist` });
      const dropped = await statusOf(call(meta, 'DropTable', { name }, 5000));
      expect(dropped, 'DropTable').to.deep.equal({ code: grpc.status.NOT_FOUND, details: `table ${name} does not exist` });
    });

    it(`transfer-leader of region ${JSON.stringify(name)}: NOT_FOUND`, async () => {
      const started = await statusOf(call(meta, 'StartProcedure', { kind: 'transfer-leader', node_id: '1', region_id: name }, 5000));
      expect(started).to.deep.equal({ code: grpc.status.NOT_FOUND, details: `region ${name} does not exist` });
    });
  }
});
