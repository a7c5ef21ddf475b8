// A datanode whose WAL write failed (a full or dying disk) stops serving for good (docs/raft-rules.md
// R3). It must then also stop heartbeating: beats that go on carry the frozen state of its replicas
// (a leader that is no longer one, every replica "healthy"), so the metasrv keeps counting the node
// alive, never rebuilds its replicas elsewhere, and `regiondb status` shows nothing wrong while
// /health says "failed". Silent, the node is taken as down by the failure detector like a crashed
// one: its regions fail over and are repaired. Real DatanodeCore and RegionServer over the
// in-memory log engine, one of whose batches fails as a full disk's write does.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { DatanodeCore, type MetasrvCaller } from '../../src/datanode/datanode-core.js';
import { makeRegionId } from '../../src/metasrv/catalog.js';
import type { LogBatch } from '../../src/wal/log-engine.js';
import type { Counter } from '../fixtures/counter-machine.js';
import { MemoryLogEngine, counterRegionServerDeps } from '../fixtures/memory-log-engine.js';

const NODE = 1;
const REGION = makeRegionId(2049, 0);

/** A log engine whose batches fail, from `failing` on, as writes to a full disk do. */
class FullDiskLogEngine extends MemoryLogEngine {
  failing = false;
  override batch(): LogBatch {
    const inner = super.batch();
    return {
      ...inner,
      commit: async () => {
        if (this.failing) throw Object.assign(new Error('IO error: No space left on device'), { code: 'ENOSPC' });
        await inner.commit();
      },
    };
  }
}

/** A metasrv that answers every call at once, and records them. */
class AnsweringMetasrv implements MetasrvCaller {
  readonly calls: string[] = [];
  async call<Res>(method: 'RegisterNode' | 'Heartbeat'): Promise<Res> {
    this.calls.push(method);
    return (method === 'RegisterNode' ? { regions: [], metasrv_epoch: '0' } : { instructions: [], metasrv_epoch: '0' }) as Res;
  }
}

const waitFor = async (what: string, done: () => boolean): Promise<void> => {
  for (let i = 0; i < 400 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(done(), what).to.equal(true);
};

describe('datanode: a failed WAL write stops its heartbeats (the metasrv must see it down)', function () {
  this.timeout(20_000);

  it('beats before the failure; none after it (failed before: the beats went on, reporting the frozen replicas)', async () => {
    const engine = new FullDiskLogEngine();
    const core = new DatanodeCore<Counter, number>({
      nodeId: NODE,
      clusterId: 'fatal-heartbeat',
      storeId: 'store-1',
      heartbeatIntervalMs: 60_000, // the test calls heartbeatOnce itself
      logEngine: engine,
      clock: systemClock,
      log: silentLogger,
      ...counterRegionServerDeps(NODE, engine),
    });
    const metasrv = new AnsweringMetasrv();
    try {
      core.regionServer.start();
      await core.regionServer.open({ regionId: REGION, selfPeerId: 7, peers: [{ peerId: 7, nodeId: NODE }], bootstrap: true });
      core.regionServer.campaign(REGION);
      const replica = () => core.regionServer.hostedReplica(REGION)!;
      await waitFor('the single replica leads', () => replica().isLeader());
      await core.regionServer.propose(REGION, new Uint8Array([1]));
      core.startHeartbeats(metasrv, { addr: 'n1', httpAddr: '' });
      await waitFor('registered and beating', () => metasrv.calls.includes('Heartbeat'));
      await core.heartbeatOnce();
      const beatsBefore = metasrv.calls.length;

      engine.failing = true;
      await core.regionServer.propose(REGION, new Uint8Array([1])).then(
        () => expect.fail('a write acknowledged although its WAL write failed'),
        () => {},
      );
      await waitFor('the node stopped serving', () => core.regionServer.fatalError() !== undefined);
      expect(replica().isLeader(), 'its frozen state still says leader: what a beat would report').to.equal(true);
      for (let i = 0; i < 3; i++) await core.heartbeatOnce();
      expect(metasrv.calls.slice(beatsBefore), 'beats after the WAL failed').to.deep.equal([]);
    } finally {
      core.halt();
      await core.regionServer.stop();
    }
  });
});
