// A datanode that refuses a metasrv answer by its epoch — a deposed group leader's (an older
// epoch than it has seen), a single metasrv's beside the group it follows (epoch 0, finding Y3) —
// asks its channel to try another address next (MetasrvCaller.passOver). Without it the channel
// keeps the address that answered last: a single metasrv listed first, answering every call,
// would be asked for ever, the node never heard by its group, which takes it for down.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { DatanodeCore, type MetasrvCaller } from '../../src/datanode/datanode-core.js';
import type { Counter } from '../fixtures/counter-machine.js';
import { MemoryLogEngine, counterRegionServerDeps } from '../fixtures/memory-log-engine.js';

/** A metasrv whose answers carry `epoch`; counts the calls and the pass-overs. */
class EpochMetasrv implements MetasrvCaller {
  epoch = 5;
  readonly calls: string[] = [];
  passOvers = 0;
  async call<Res>(method: 'RegisterNode' | 'Heartbeat'): Promise<Res> {
    this.calls.push(method);
    return (method === 'RegisterNode' ? { regions: [], metasrv_epoch: String(this.epoch) } : { instructions: [], metasrv_epoch: String(this.epoch) }) as Res;
  }
  passOver(): void {
    this.passOvers++;
  }
}

describe('datanode: an answer refused by its epoch passes over to another metasrv address (Y3)', () => {
  it('none while the answers are admitted; one per refused answer, a single metasrv (epoch 0) after the group or a deposed leader (epoch 3 after 5)', async () => {
    const engine = new MemoryLogEngine();
    const core = new DatanodeCore<Counter, number>({
      nodeId: 1,
      clusterId: 'epoch-passover',
      storeId: 'store-1',
      heartbeatIntervalMs: 60_000, // the test beats by hand
      logEngine: engine,
      clock: systemClock,
      log: silentLogger,
      ...counterRegionServerDeps(1, engine),
    });
    const metasrv = new EpochMetasrv();
    try {
      core.startHeartbeats(metasrv, { addr: 'n1', httpAddr: '' });
      await core.heartbeatOnce();
      await core.heartbeatOnce();
      expect(metasrv.passOvers, 'the group leader at epoch 5 answered').to.equal(0);
      metasrv.epoch = 0;
      await core.heartbeatOnce();
      expect(metasrv.passOvers, 'a single metasrv answered after the group').to.equal(1);
      metasrv.epoch = 3;
      await core.heartbeatOnce();
      expect(metasrv.passOvers, 'a deposed leader answered').to.equal(2);
      metasrv.epoch = 6;
      await core.heartbeatOnce();
      expect(metasrv.passOvers, 'the new leader answered').to.equal(2);
    } finally {
      core.halt();
      await core.regionServer.stop();
    }
  });
});
