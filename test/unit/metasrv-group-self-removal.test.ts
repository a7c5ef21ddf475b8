// docs/raft-rules.md R16, "The removed replica", on the metasrv's own group (src/metasrv/meta-group.ts):
// `regiondb meta remove-member` of the acting member of a two-member group. The group runs the
// region server's host loop, but its raft traffic arrives through its own gRPC admission
// (raftStreamHandler), which must let a member that applied its own removal keep answering.
// Two in-process members over real gRPC on loopback (test/support/lossy-meta-group.ts); the test
// loses, from the removed leader, every append and heartbeat that would tell the survivor that the
// removal committed (the transport seam MetaGroup.createTransport). Without the rule the survivor
// still counts the removed member, needs its vote and never gets it: no leader, forever.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { waitUntil } from '../support/local-cluster.js';
import { type LossyPair, startLossyPair } from '../support/lossy-meta-group.js';

describe('metasrv group: remove-member of the acting member of a two-member group (R16 at the host)', function () {
  this.timeout(60_000);
  let pair: LossyPair | undefined;

  beforeEach(async () => {
    // Both members know both from the start (a group created with two members).
    pair = await startLossyPair('removal', (_id, addr) => ({ members: new Map([1, 2].map((id) => [id, addr(id)])), join: false }));
  });

  afterEach(async () => {
    await pair?.stop();
    pair = undefined;
  });

  it('the survivor is elected and leads without the removed member when the commit message is lost; the removed member serves nothing', async () => {
    const groups = pair!.groups;
    const [leaderId, leader] = await waitUntil('a leader', 10_000, async () => [...groups].find(([, g]) => g.isLeader()));
    const [survivorId, survivor] = [...groups].find(([id]) => id !== leaderId)!;
    await leader.put(new Uint8Array([1, 2, 3])); // a catalog both members have
    pair!.loseCommit = { from: leaderId, index: leader.status().commitIndex + 1 };
    // The proposer's replica is fenced as it applies its removal: the proposal's promise fails.
    await leader.removeMember(leaderId).catch(() => undefined);
    await waitUntil('the removed member to apply its removal', 5000, async () => (leader.status().role === 'stopped' ? true : undefined));
    const led = await waitUntil(`member ${survivorId} to lead without ${leaderId}`, 10_000, async () => {
      const st = survivor.status();
      return survivor.isLeader() && st.members.every((m) => m.id !== leaderId) ? st : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; survivor ${JSON.stringify(survivor.status())}`);
    });
    expect(led.members.map((m) => m.id)).to.deep.equal([survivorId]);
    await survivor.put(new Uint8Array([4])); // commits alone now
    // The removed member answered raft but serves no client: no leadership, no write, no read.
    expect(leader.isLeader()).to.equal(false);
    for (const attempt of [() => leader.put(new Uint8Array([5])), () => leader.barrier()]) {
      let refused: unknown;
      try {
        await attempt();
      } catch (err) {
        refused = err;
      }
      expect(isRegionDbError(refused, ErrorCode.NotFound), String(refused)).to.equal(true);
    }
  });
});
