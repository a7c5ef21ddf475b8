// Leftovers of R16's reviews at the region server's edge (docs/raft-rules.md R16, "Never a
// leader, never serving"):
//   - `campaign()` on a replica whose apply is stalled did nothing and said nothing (the core's
//     `campaignsHeld` makes hup() return): it is refused as UNAVAILABLE, retriable.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { waitFor } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

const peers = [
  { peerId: 11, nodeId: 1 },
  { peerId: 12, nodeId: 2 },
];

describe('region server: the raft core at its edge (R16 leftovers)', () => {
  const servers: RegionServer<never, never>[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
  });

  it('campaign() on a replica whose apply is stalled is refused as UNAVAILABLE, not ignored', async () => {
    let stalling = false;
    class Stallable {
      total = 0;
      apply(_index: number, command: Uint8Array): number | Promise<number> {
        if (stalling) return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'object store down (planted)'));
        this.total += command[0]!;
        return this.total;
      }
      serialize(): Uint8Array {
        return new TextEncoder().encode(String(this.total));
      }
    }
    const s = new RegionServer<Stallable, number>(
      1,
      new MemoryLogEngine(),
      new LoopbackTransport(1, () => {}),
      { create: () => new Stallable() },
      { ...defaultRaftTuning, tickMs: 5, applyRetry: { backoffMsMin: 60_000, backoffMsMax: 60_000, windowMs: 600_000 } },
      silentLogger,
      systemClock,
    );
    servers.push(s as unknown as RegionServer<never, never>);
    // A single voter: it elects itself, then stalls applying a write.
    await s.open({ regionId: 'r', selfPeerId: 11, peers: [peers[0]!], bootstrap: true });
    s.start();
    await waitFor(() => s.replica('r')?.isLeader() === true, 'leader');
    stalling = true;
    void s.propose('r', new Uint8Array([1])).catch(() => undefined);
    await waitFor(() => s.applyStall('r') !== undefined, 'apply stalled');
    const replica = s.hostedReplica('r')!;
    expect(replica.raft.campaignsHeld).to.equal(true);
    // Before: returned, having done nothing (hup() returns for a held replica).
    let refused: unknown;
    try {
      s.campaign('r');
    } catch (err) {
      refused = err;
    }
    expect(isRegionDbError(refused, ErrorCode.Unavailable), `refused UNAVAILABLE, got ${String(refused)}`).to.equal(true);
    expect((refused as Error).message).to.match(/cannot apply index \d+ yet .*retrying/);
    stalling = false;
  });
});
