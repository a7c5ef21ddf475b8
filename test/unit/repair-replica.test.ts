// repair-replica's steps with a fake context: a lost replica (new store on its node, or a failed
// replica) is replaced under a fresh peer id, on its own node when no other can take it, and the
// new replica is never deleted by the procedure that created it (issue 14.1).
import { expect } from 'chai';
import { type CatalogState, emptyCatalog, makeRegionId } from '../../src/metasrv/catalog.js';
import { ManualClock } from '../../src/common/clock.js';
import type { Instruction, ObservedReplica, ProcedureContext, StepRun } from '../../src/metasrv/procedures/procedure.js';
import type { RepairReplicaData } from '../../src/metasrv/procedures/record.js';
import { repairReplica } from '../../src/metasrv/procedures/repair-replica.js';
import { replica } from '../support/fake-procedure-context.js';

const REGION = makeRegionId(1024, 0);

interface Fake {
  ctx: ProcedureContext;
  sent: { nodeId: number; instruction: Instruction }[];
  observed: Map<number, ObservedReplica>;
  catalog: CatalogState;
}


/** Three alive nodes, region on peers 1@1, 2@2 (leader), 3@3. */
function fake(): Fake {
  const catalog = emptyCatalog('c');
  catalog.nextPeerId = 4;
  for (const nodeId of [1, 2, 3]) catalog.nodes[nodeId] = { nodeId, addr: `n${nodeId}`, httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
  catalog.regions[REGION] = {
    regionId: REGION,
    tableName: 't',
    regionNumber: 0,
    replicas: [
      { peerId: 1, nodeId: 1, lost: 'new store' },
      { peerId: 2, nodeId: 2 },
      { peerId: 3, nodeId: 3 },
    ],
    leaderNodeId: 2,
    confVersion: 1,
    bootstrapped: true,
  };
  const sent: Fake['sent'] = [];
  const observed = new Map<number, ObservedReplica>([
    [2, replica(2, { role: 'leader' })],
    [3, replica(3)],
  ]);
  const ctx: ProcedureContext = {
    catalog,
    clock: new ManualClock(1_000_000),
    isAlive: (nodeId) => catalog.nodes[nodeId] !== undefined,
    observed: (nodeId) => observed.get(nodeId),
    firstReportAwaited: () => false,
    removalAwaits: () => false,
    downTooLong: () => false,
    leaderOf: () => {
      for (const [nodeId, replica] of observed) if (replica.role === 'leader') return { nodeId, replica };
      return undefined;
    },
    send: (nodeId, instruction) => sent.push({ nodeId, instruction }),
    openInstruction: (_region, peerId) => ({ self_peer_id: String(peerId) }),
    pickNode: (exclude) => Object.values(catalog.nodes).filter((n) => !exclude.has(n.nodeId))[0],
    start: () => {
      throw new Error('not used');
    },
    running: () => [],
  };
  return { ctx, sent, observed, catalog };
}

/** A step run whose re-send is always due. */
const run: StepRun = { stepSinceMs: 0, resend: () => true };

describe('repair-replica of a lost replica (issue 14.1)', () => {
  it('with no other node free, the replacement goes on the same node under a fresh peer id', () => {
    const f = fake();
    const d: RepairReplicaData = ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1, inPlace: true, reason: 'new store' });
    const result = repairReplica.steps['allocate'](f.ctx, d, run);
    expect(result).to.deep.include({ next: 'clear-old' });
    expect(d).to.include({ newPeerId: 4, newNodeId: 1 });
    expect(f.catalog.regions[REGION]!.replicas.map((p) => p.peerId)).to.deep.equal([1, 2, 3, 4]);
  });

  it('allocate places no new peer before the region is bootstrapped (its first report): until then an open of it would bootstrap it with the new peer as an initial voter (sim engine seed 2635)', () => {
    const f = fake();
    f.catalog.nodes[4] = { nodeId: 4, addr: 'n4', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
    f.catalog.regions[REGION]!.bootstrapped = false;
    const d: RepairReplicaData = { regionId: REGION, oldPeerId: 1, oldNodeId: 1, reason: 'new store' };
    const result = repairReplica.steps['allocate'](f.ctx, d, run);
    expect(result, 'allocate on an unbootstrapped region').to.have.property('retry');
    expect(d.newPeerId, 'no new peer allocated').to.equal(undefined);
    expect(f.catalog.regions[REGION]!.replicas.map((p) => p.peerId), 'the placements (the initial voters a bootstrap open writes)').to.deep.equal([1, 2, 3]);
    expect(f.catalog.nextPeerId).to.equal(4);
    // The region's first report flips `bootstrapped`: opens are joins from then on, and the repair goes on.
    f.catalog.regions[REGION]!.bootstrapped = true;
    expect(repairReplica.steps['allocate'](f.ctx, d, run)).to.deep.include({ next: 'add-learner' });
    expect(d).to.include({ newPeerId: 4, newNodeId: 4 });
  });

  it('allocate hands out no peer id while a node the catalog knows has not reported since this metasrv began acting: a restored catalog is behind the ids its group uses (register seed 7037)', () => {
    const f = fake();
    // A catalog copy places 1@1, 2@2, 3@3 (next peer id 4); the group went on meanwhile and node 3
    // now holds peer 4, its leader, but has not reported to this metasrv yet.
    f.observed.delete(3);
    f.observed.set(2, replica(2));
    let awaited = new Set([3]);
    f.ctx.firstReportAwaited = (nodeId) => awaited.has(nodeId);
    const d: RepairReplicaData = { regionId: REGION, oldPeerId: 1, oldNodeId: 1, inPlace: true, reason: 'new store' };
    const result = repairReplica.steps['allocate'](f.ctx, d, run);
    // Failed before: { next: 'clear-old' } with peer 4 — the leader's own id — given to node 1.
    expect(result, 'allocate before node 3 reported').to.have.property('retry').that.matches(/first report of node\(s\) 3/);
    expect(d.newPeerId).to.equal(undefined);
    expect(f.catalog.nextPeerId).to.equal(4);
    // Past the startup pause node 3 counts as down, no longer awaited: still no peer id while no
    // leader of the region has reported its membership (failed before: peer 4 again).
    awaited = new Set();
    expect(repairReplica.steps['allocate'](f.ctx, d, run), 'allocate with no leader report').to.have.property('retry').that.matches(/a leader of the region/);
    expect(d.newPeerId).to.equal(undefined);
    // Node 3 reports: peer 4 leads voters 1, 2, 4 (peer 1 still counted: the repair goes on). Its ids raise the allocator.
    f.observed.set(3, replica(4, { role: 'leader', voters: [1, 2, 4] }));
    expect(repairReplica.steps['allocate'](f.ctx, d, run)).to.deep.include({ next: 'clear-old' });
    expect(d).to.include({ newPeerId: 5, newNodeId: 1 });
  });

  it('a replica lost only because its node is away is not replaced on that node', () => {
    const f = fake();
    const d: RepairReplicaData = ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1 });
    expect(repairReplica.steps['allocate'](f.ctx, d, run)).to.have.property('retry');
  });

  it('clear-old deletes a failed replica still hosted under the old peer id, then moves on once it is gone', () => {
    const f = fake();
    const d: RepairReplicaData = ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1, newPeerId: 4, newNodeId: 1, inPlace: true });
    f.observed.set(1, replica(1, { health: 'failed' }));
    expect(repairReplica.steps['clear-old'](f.ctx, d, run)).to.have.property('wait', true);
    expect(f.sent).to.deep.equal([{ nodeId: 1, instruction: { close_region: { region_id: REGION, destroy: true, peer_id: '1' } } }]);
    f.observed.delete(1);
    expect(repairReplica.steps['clear-old'](f.ctx, d, run)).to.deep.include({ next: 'add-learner' });
  });

  it('remove-old does not move leadership off the new replica that shares the old node', () => {
    const f = fake();
    f.observed.set(2, replica(2, { voters: [1, 2, 3, 4] }));
    f.observed.set(1, replica(4, { role: 'leader', voters: [1, 2, 3, 4] }));
    const d: RepairReplicaData = ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1, newPeerId: 4, newNodeId: 1, inPlace: true });
    expect(repairReplica.steps['remove-old'](f.ctx, d, run)).to.have.property('wait', true);
    expect(f.sent).to.have.length(1);
    expect(f.sent[0]!.instruction).to.have.property('change_peer').that.deep.includes({ change: 'remove' });
  });

  it('catch-up does not take another replica of the region on the new node (a removed one awaiting deletion) for the new one', () => {
    const f = fake();
    f.catalog.nodes[4] = { nodeId: 4, addr: 'n4', httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
    f.observed.set(2, replica(2, { role: 'leader', learners: [4], commitIndex: 100 }));
    f.observed.set(4, replica(9, { appliedIndex: 100 })); // peer 9, removed from the region earlier
    const d: RepairReplicaData = { regionId: REGION, oldPeerId: 1, oldNodeId: 1, newPeerId: 4, newNodeId: 4 };
    // A step that has just begun (a live node not opening the new peer for NEW_REPLICA_OPEN_WAIT_MS gives it up: M37).
    const justBegun: StepRun = { stepSinceMs: f.ctx.clock.nowMs(), resend: () => true };
    expect(repairReplica.steps['catch-up'](f.ctx, d, justBegun)).to.deep.include({ wait: true, note: 'waiting for the new replica to open' });
    f.observed.set(4, replica(4, { appliedIndex: 100 }));
    expect(repairReplica.steps['catch-up'](f.ctx, d, justBegun)).to.deep.include({ next: 'promote' });
  });

  it('cleanup never deletes the region on the node that now hosts the new replica', () => {
    const f = fake();
    const d: RepairReplicaData = ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1, newPeerId: 4, newNodeId: 1, inPlace: true });
    expect(repairReplica.steps['cleanup'](f.ctx, d, run)).to.have.property('done', true);
    expect(f.sent).to.deep.equal([]);
  });

  it('status says why the replica is replaced', () => {
    const d: RepairReplicaData = ({ regionId: REGION, oldPeerId: 1, oldNodeId: 1, reason: 'new store abc (was def)' });
    expect(repairReplica.describe(d)).to.match(/replace peer 1 \(node 1\).*new store abc/);
  });
});
