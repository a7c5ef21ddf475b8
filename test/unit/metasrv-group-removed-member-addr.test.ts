// R16 at the metasrv group when the survivor's address is known only through the group's log
// (member-addr), as after `meta seed` + add-member (docs/metasrv-ha.md "Losing a majority"): the
// removed member's transport asks addressOf(), which must read the removed replica's group state
// (raftReplica), not replica() (hidden once removed) and then the static config only — before the
// fix its vote answers never left and the survivor stayed pre-candidate forever; the second case
// restarts the removed member first. The two members and the lossy transport are
// test/support/lossy-meta-group.ts's.
import { join } from 'node:path';
import { expect } from 'chai';
import { silentLogger } from '../../src/common/logger.js';
import { seedGroup } from '../../src/metasrv/meta-group.js';
import { waitUntil } from '../support/local-cluster.js';
import { type LossyPair, startLossyPair } from '../support/lossy-meta-group.js';

describe('metasrv group R16: removed metasrv member whose survivor was added by add-member (address only in the log)', function () {
  this.timeout(60_000);
  let pair: LossyPair | undefined;
  afterEach(async () => {
    await pair?.stop();
    pair = undefined;
  });

  /** Member 1 adds member 2, then removes itself with the commit message to member 2 lost; `restartRemoved`: member 1 restarts before member 2 is elected. */
  async function removeSeededMember(restartRemoved: boolean): Promise<void> {
    // Member 1 is a seeded one-member group that knows only itself; member 2 joins knowing both.
    pair = await startLossyPair(
      'rev',
      (id, addr) => ({ members: id === 1 ? new Map([[1, addr(1)]]) : new Map([[1, addr(1)], [2, addr(2)]]), join: id === 2 }),
      (dir, addr) => seedGroup(join(dir, 'm1'), 1, addr(1), new Uint8Array([9]), silentLogger),
    );
    const { groups, addr } = pair;
    const one = groups.get(1)!;
    const two = groups.get(2)!;
    await waitUntil('member 1 leads', 10_000, async () => (one.isLeader() ? true : undefined));
    await one.addMember(2, addr(2), 20_000);
    await one.put(new Uint8Array([1, 2, 3]));
    await waitUntil('member 2 voter, caught up', 10_000, async () => (two.status().appliedIndex >= one.status().commitIndex ? true : undefined));
    pair.loseCommit = { from: 1, index: one.status().commitIndex + 1 };
    await one.removeMember(1).catch(() => undefined);
    await waitUntil('member 1 applied its removal', 5000, async () => (one.status().role === 'stopped' ? true : undefined));
    if (restartRemoved) {
      const again = await pair.restart(1);
      await waitUntil('member 1 reopened as removed', 5000, async () => (again.status().role === 'stopped' ? true : undefined));
    }
    const led = await waitUntil('member 2 leads without 1', 15_000, async () => (two.isLeader() && two.status().members.every((m) => m.id !== 1) ? true : undefined)).catch((err: Error) => {
      throw new Error(`${err.message}; survivor ${JSON.stringify(two.status())}`);
    });
    expect(led).to.equal(true);
  }

  it('the survivor is elected when the commit message is lost', async () => {
    await removeSeededMember(false);
  });

  // Its restart re-applies the group log up to its removal (meta-group.ts removedReplay
  // 'everything'): the survivor's address is in a command of that stretch, not in its snapshot.
  // With the datanodes' choice (membership changes only, no command; E9 in docs/correctness.md)
  // its vote answers never left again and the survivor stayed pre-candidate.
  it('… also when the removed member restarts before the survivor is elected (it re-applies the address)', async () => {
    await removeSeededMember(true);
  });
});
