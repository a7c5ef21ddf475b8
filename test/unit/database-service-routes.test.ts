// The datanode's route lookups (src/datanode/database-service.ts routes()): requests for regions
// this node does not serve are redirected with the leader's address from the table's routes,
// which come from the metasrv. When a node leading hundreds of regions dies, all of them ask at
// once; they must share one GetRoutes of the table, not send one each (bench-scale's storm).
import { expect } from 'chai';
import { ErrorCode, type RegionDbError } from '../../src/common/errors.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import { toProtoSchema } from '../../src/rpc/values.js';
import { REGION, schema } from '../fixtures/one-region-table.js';

type Redirecting = { redirect(table: string, regionId: string): Promise<RegionDbError> };

function serviceWithMetasrv(answer: () => Promise<unknown>): { service: DatabaseService; calls: string[] } {
  const calls: string[] = [];
  const host = {
    nodeId: 1,
    metas: new Map(),
    regionServer: { replica: () => undefined, failure: () => undefined },
    metaCall: (method: string) => {
      calls.push(method);
      return answer();
    },
  } as unknown as DatabaseHost;
  return { service: new DatabaseService(host), calls };
}

const routesOf = (leader = '2', peers: readonly string[] = ['2']) => ({
  table: toProtoSchema(schema),
  routes: [{ region_id: REGION, leader_node_id: leader, peers: peers.map((n) => ({ node_id: n, addr: `127.0.0.1:400${n}`, peer_id: `${Number(n) + 3}` })) }],
});

describe('datanode route lookups (database-service.ts)', () => {
  it('concurrent redirects of one table share one GetRoutes', async () => {
    let release!: () => void;
    const { service, calls } = serviceWithMetasrv(() => new Promise((resolve) => (release = () => resolve(routesOf()))));
    const redirects = Array.from({ length: 50 }, () => (service as unknown as Redirecting).redirect(schema.name, REGION));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).to.deep.equal(['GetRoutes']);
    release();
    for (const err of await Promise.all(redirects)) {
      expect(err.code).to.equal(ErrorCode.NotLeader);
      expect(err.details['leaderAddr']).to.equal('127.0.0.1:4002');
    }
    service.close();
  });

  it('a failed shared lookup fails every waiter alike, and is not kept', async () => {
    let attempt = 0;
    const { service, calls } = serviceWithMetasrv(async () => {
      attempt++;
      if (attempt === 1) throw Object.assign(new Error('no such table'), { code: 5 });
      return routesOf();
    });
    const first = await Promise.allSettled(Array.from({ length: 5 }, () => (service as unknown as Redirecting).redirect(schema.name, REGION)));
    expect(first.every((r) => r.status === 'fulfilled' && r.value.code === ErrorCode.NotFound)).to.equal(true);
    const again = await (service as unknown as Redirecting).redirect(schema.name, REGION);
    expect(again.code).to.equal(ErrorCode.NotLeader);
    expect(calls).to.deep.equal(['GetRoutes', 'GetRoutes']);
    service.close();
  });

  it('never points a client back at this node (node 1), even when the routes name it as leader', async () => {
    const cases: { leader: string; peers: string[]; hint: string | undefined }[] = [
      { leader: '1', peers: ['1', '2', '3'], hint: '2' }, // a stale catalog names this node leader
      { leader: '0', peers: ['1', '3'], hint: '3' }, // no leader known; this node listed first
      { leader: '3', peers: ['1', '2', '3'], hint: '3' }, // the leader, when it is another node
      { leader: '1', peers: ['1'], hint: undefined }, // nobody else to name: no hint at all
    ];
    for (const c of cases) {
      const { service } = serviceWithMetasrv(async () => routesOf(c.leader, c.peers));
      const err = await (service as unknown as Redirecting).redirect(schema.name, REGION);
      expect(err.code, JSON.stringify(c)).to.equal(ErrorCode.NotLeader);
      expect(err.details['leaderNodeId'], JSON.stringify(c)).to.equal(c.hint);
      expect(err.details['leaderAddr'], JSON.stringify(c)).to.equal(c.hint === undefined ? undefined : `127.0.0.1:400${c.hint}`);
      service.close();
    }
  });
});
