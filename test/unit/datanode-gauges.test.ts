// The datanode's replica and leader gauges (regiondb_replicas, regiondb_raft_leaders) are counted
// when scraped (src/datanode/node-metrics.ts), not by every heartbeat: a scrape reads the node as
// it is, and nothing else walks the replicas for them (docs/performance.md, "Eighth pass").
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { DatanodeMetrics } from '../../src/datanode/node-metrics.js';
import type { StateMachine } from '../../src/raft/index.js';
import type { Replica } from '../../src/replication/region-server.js';

function fakeReplica(leader: { value: boolean }) {
  return { isLeader: () => leader.value, raft: { term: 1, quiesced: true }, proposals: new Map(), reads: new Map() } as unknown as Replica<StateMachine<unknown>>;
}

async function gauge(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  expect(metric, name).to.not.equal(undefined);
  const { values } = await metric!.get();
  return values[0]!.value;
}

describe('datanode gauges: replicas and leaders counted at scrape', () => {
  it('reflect the replicas as they are at each scrape, and read them only when scraped', async () => {
    const registry = new Registry();
    const roles = [{ value: true }, { value: false }, { value: false }];
    let replicas = roles.map(fakeReplica);
    let reads = 0;
    const metrics = new DatanodeMetrics(registry, {
      replicas: () => {
        reads++;
        return replicas;
      },
      transport: () => undefined,
    });
    try {
      expect(reads, 'nothing read before a scrape').to.equal(0);
      expect(await gauge(registry, 'regiondb_replicas')).to.equal(3);
      expect(await gauge(registry, 'regiondb_raft_leaders')).to.equal(1);
      // A leadership gained and a replica opened, no heartbeat in between: the next scrape says so.
      roles[2]!.value = true;
      replicas = [...replicas, fakeReplica({ value: false })];
      expect(await gauge(registry, 'regiondb_replicas')).to.equal(4);
      expect(await gauge(registry, 'regiondb_raft_leaders')).to.equal(2);
      const before = reads;
      metrics.onRoleChange('r1', 'leader', 1); // the hooks a node feeds per event read no replica
      expect(reads).to.equal(before);
    } finally {
      metrics.close();
    }
  });
});
