import { expect } from 'chai';
import { Role } from '../../src/raft/raft.js';
import { MessageType, makeMessage } from '../../src/raft/types.js';
import { Network, bytes } from './harness.js';

/** Compacts the leader's log behind a snapshot whose data lists the applied values. */
function snapshotAndCompact(net: Network, id: number): number {
  const node = net.node(id);
  const applied = node.appliedIndex;
  node.storage.createSnapshot(applied, node.raft.confState(), bytes(JSON.stringify(net.values(id))));
  node.storage.compact(applied);
  return applied;
}

describe('§7 log compaction and snapshots', () => {
  it('a follower whose next entry was compacted receives and installs a snapshot', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    for (let i = 0; i < 10; i++) net.propose(1, `v${i}`);
    net.tick(1);
    const snapIndex = snapshotAndCompact(net, 1);
    net.heal();
    net.tick(1, 3);
    const snaps = net.delivered.filter((m) => m.type === MessageType.Snapshot && m.to === 3);
    expect(snaps).to.have.length(1);
    expect(net.node(3).storage.firstIndex()).to.equal(snapIndex + 1);
    expect(net.raft(3).log.committed).to.be.at.least(snapIndex);
    // It keeps replicating normally afterwards.
    net.propose(1, 'after');
    net.tick(1);
    expect(net.values(3)).to.deep.equal(['after']);
  });

  it('ignores a snapshot at or below its commit index (P8)', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, 'a');
    net.tick(1);
    const committed = net.raft(2).log.committed;
    net.raft(2).step(
      makeMessage({
        type: MessageType.Snapshot,
        from: 1,
        to: 2,
        term: net.raft(1).term,
        snapshot: { metadata: { index: committed - 1, term: 1, confState: { voters: [1, 2, 3], learners: [] } }, data: bytes('old') },
      }),
    );
    const rd = net.raft(2).ready();
    expect(rd.snapshot).to.equal(null);
    net.raft(2).advance(rd);
    expect(net.raft(2).log.committed).to.equal(committed);
  });

  it('a restarted node recovers from snapshot + log and rejoins', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
    net.tick(1);
    snapshotAndCompact(net, 2);
    net.propose(1, 'tail');
    net.tick(1);
    const node = net.restart(2);
    expect(node.raft.log.firstIndex()).to.be.greaterThan(1);
    net.tick(1, 3);
    expect(node.raft.log.committed).to.equal(net.raft(1).log.committed);
    expect(node.raft.role).to.equal(Role.Follower);
  });

  it('a lost snapshot is retried after two election timeouts', () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
    net.tick(1);
    snapshotAndCompact(net, 1);
    net.heal();
    net.dropType(MessageType.Snapshot);
    net.tick(1, 5);
    net.heal();
    net.tick(1, 25);
    expect(net.raft(3).log.committed).to.equal(net.raft(1).log.committed);
  });
});
