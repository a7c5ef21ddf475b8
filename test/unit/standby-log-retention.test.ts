// Dual active-standby: a primary region keeps the log a lagging standby still needs
// (RegionServerHooks.logRetainFrom, docs/replication.md): when the state machine's snapshot point
// (the flushed index) moves, the log is truncated only up to what the hook allows.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { StateMachine } from '../../src/raft/state-machine.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

/** Snapshots itself at its applied index (as the engine does at its flushed index). */
class Flushing implements StateMachine<number> {
  applied = 0;
  apply(index: number): number {
    this.applied = index;
    return index;
  }
  serialize(): Uint8Array {
    return new Uint8Array([1]);
  }
  snapshotPoint() {
    return this.applied > 1 ? { index: this.applied, data: new Uint8Array([1]), voters: [1], learners: [] } : undefined;
  }
}

async function run(retainFrom: number | undefined): Promise<number> {
  const engine = new MemoryLogEngine();
  const server = new RegionServer<Flushing>(
    1,
    engine,
    new LoopbackTransport(1, () => undefined),
    { create: () => new Flushing() },
    { ...defaultRaftTuning, tickMs: 5 },
    silentLogger,
    systemClock,
    retainFrom === undefined ? {} : { logRetainFrom: () => retainFrom },
  );
  await server.open({ regionId: 'r', selfPeerId: 1, peers: [{ peerId: 1, nodeId: 1 }], bootstrap: true });
  server.start();
  try {
    const deadline = Date.now() + 5000;
    while (!server.replica('r')?.isLeader()) {
      if (Date.now() > deadline) throw new Error('no leader');
      await new Promise((ok) => setTimeout(ok, 5));
    }
    for (let i = 0; i < 30; i++) await server.propose('r', new Uint8Array([i]));
    return engine.region('r').firstIndex();
  } finally {
    await server.stop();
  }
}

describe('dual active-standby: log retention for a lagging standby', () => {
  it('without a standby the log is truncated at the snapshot point', async () => {
    expect(await run(undefined)).to.be.greaterThan(25);
  });

  it('with one, the log is kept from the index the standby still needs', async () => {
    expect(await run(5)).to.equal(5);
  });
});
