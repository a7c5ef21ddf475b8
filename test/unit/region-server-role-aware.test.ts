// The region server tells a RoleAware state machine whether its replica leads (at open, on every
// role change before that ready's entries apply), and fails the replica — fenced, reported, not
// the command's failure — when the state machine says its own state is lost (replicaStateError:
// the engine's deferred rows that cannot be expanded, docs/engine.md "Deferred rows on followers").
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { replicaStateError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { RegionServer, type RoleAware, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter, waitFor } from '../fixtures/counter-machine.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

class RoleCounter extends Counter implements RoleAware {
  readonly told: boolean[] = [];
  /** Planted: becoming leader finds the state lost. */
  breakOnLead = false;
  /** Planted: the apply of this index finds the state lost. */
  breakAt = 0;
  onLeading(leading: boolean): void {
    this.told.push(leading);
    if (leading && this.breakOnLead) throw replicaStateError('planted: the deferred rows cannot be expanded', undefined);
  }
  override apply(index: number, command: Uint8Array): number {
    if (index === this.breakAt) throw replicaStateError(`planted: the state is lost at ${index}`, undefined);
    return super.apply(index, command);
  }
}

describe('region server: a role-aware state machine', () => {
  const servers: RegionServer<RoleCounter, number>[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
  });

  async function sole(sm: RoleCounter): Promise<RegionServer<RoleCounter, number>> {
    const s = new RegionServer<RoleCounter, number>(1, new MemoryLogEngine(), new LoopbackTransport(1, () => {}), { create: () => sm }, { ...defaultRaftTuning, tickMs: 5 }, silentLogger, systemClock);
    servers.push(s);
    await s.open({ regionId: 'r', selfPeerId: 11, peers: [{ peerId: 11, nodeId: 1 }], bootstrap: true });
    const replica = s.hostedReplica('r')!;
    await waitFor(() => replica.appliedIndex >= replica.raft.log.committed, 'bootstrap applied');
    return s;
  }

  it('is told it follows at open and leads once elected, before it applies as leader', async () => {
    const sm = new RoleCounter();
    const s = await sole(sm);
    expect(sm.told).to.deep.equal([false]);
    s.campaign('r');
    await waitFor(() => s.replica('r')?.isLeader() === true && sm.told.at(-1) === true, 'leader, and its state machine told');
    expect(await s.propose('r', new Uint8Array([5]))).to.equal(5);
    expect(sm.told).to.deep.equal([false, true]);
  });

  it('an apply that says the state is lost fails the replica (not the command: the next entries would apply to a lost state)', async () => {
    const sm = new RoleCounter();
    const s = await sole(sm);
    s.campaign('r');
    await waitFor(() => s.replica('r')?.isLeader() === true, 'leader');
    expect(await s.propose('r', new Uint8Array([5]))).to.equal(5);
    sm.breakAt = s.hostedReplica('r')!.appliedIndex + 1;
    let outcome: unknown;
    try {
      await s.propose('r', new Uint8Array([7]));
    } catch (err) {
      outcome = err;
    }
    // Before: the error answered the proposal and the replica applied on.
    expect(s.failure('r')?.reason, String(outcome)).to.match(/cannot apply index \d+: planted: the state is lost/);
    expect(s.replica('r'), 'fenced').to.equal(undefined);
  });

  it('a state lost on becoming leader fails the replica: it never leads on it', async () => {
    const sm = new RoleCounter();
    sm.breakOnLead = true;
    const s = await sole(sm);
    s.campaign('r');
    await waitFor(() => s.failure('r') !== undefined, 'the replica failed');
    expect(s.failure('r')!.reason).to.match(/planted: the deferred rows cannot be expanded/);
    expect(s.replica('r'), 'fenced').to.equal(undefined);
  });
});
