// RegionServer.failReplica acts only on the replica it hosts (finding M18 in docs/correctness.md):
// a replica closed while the cycle applying its entries was in flight may fail after the region
// was opened again under a fresh peer id; its failure must not unmap or fail the new replica.
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { makeRegionId } from '../../src/metasrv/catalog.js';
import type { StateMachine } from '../../src/raft/state-machine.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const NODE = 1;
const REGION = makeRegionId(2049, 0);
const enc = new TextEncoder();

/**
 * Command byte 0, in the first state machine created: an apply whose object is gone (a permanent
 * failure), held until the test releases it. Anywhere else a command adds its byte (so the
 * replica opened later on the same log applies that entry and carries on).
 */
class Gated implements StateMachine<number> {
  static created = 0;
  static gate: { reached: boolean; fail: () => void } | undefined;
  total = 0;
  private readonly holds = Gated.created++ === 0;
  apply(index: number, command: Uint8Array): number | Promise<number> {
    if (command[0] === 0 && this.holds) {
      return new Promise<number>((_ok, reject) => {
        Gated.gate = {
          reached: true,
          fail: () => reject(new RegionDbError(ErrorCode.StorageUnavailable, `cannot read an SST at index ${index}`, { cause: new RegionDbError(ErrorCode.NotFound, 'SST not found') })),
        };
      });
    }
    this.total += command[0]!;
    return this.total;
  }
  serialize(): Uint8Array {
    return enc.encode(String(this.total));
  }
}

// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): their tickers fire as the
// test advances it, and every wait is a bounded number of ticks, not of wall milliseconds.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('replica identity: RegionServer.failReplica acts only on the replica it hosts', function () {
  this.timeout(20_000);

  it('an old replica failing after its close (and a new replica of the region opened) leaves the new one running and unfailed', async () => {
    Gated.gate = undefined;
    Gated.created = 0;
    const engine = new MemoryLogEngine();
    const clock = new HandClock();
    const waitFor = handWaits(clock, TICK_MS, WAIT_TICKS_MAX).until;
    const server = new RegionServer<Gated, number>(NODE, engine, new LoopbackTransport(NODE, () => {}), { create: () => new Gated() }, { ...defaultRaftTuning, tickMs: TICK_MS }, silentLogger, clock);
    server.start();
    try {
      await server.open({ regionId: REGION, selfPeerId: 41, peers: [{ peerId: 41, nodeId: NODE }], bootstrap: true });
      await waitFor(() => server.replica(REGION)?.isLeader() === true, 'the one-peer replica leads');
      void server.propose(REGION, new Uint8Array([0])).catch(() => undefined); // its outcome is not the point
      await waitFor(() => Gated.gate?.reached === true, 'the apply waiting on the object store');
      // The old replica is closed while its apply is in flight, and the region opened again on
      // the node under a fresh peer id before that apply settles.
      const closing = server.close(REGION, false);
      const fresh = await server.open({ regionId: REGION, selfPeerId: 42, peers: [{ peerId: 42, nodeId: NODE }], bootstrap: false });
      expect(fresh?.selfPeerId).to.equal(42);
      Gated.gate!.fail(); // the old replica's apply fails for good: the old replica fails
      await closing;
      expect(server.replica(REGION), 'the new replica (peer 42) is still the hosted one').to.equal(fresh);
      expect(fresh!.closed, 'the new replica is not fenced').to.equal(false);
      expect(server.failure(REGION), "the old replica's failure is not recorded against the region").to.equal(undefined);
    } finally {
      await server.stop();
    }
  });
});
