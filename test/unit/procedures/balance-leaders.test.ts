// balance-leaders' steps against the fake metasrv: success, retryable failure, fatal failure,
// and resume after a crash mid-step; batches of moves (their limits, confirmation, time-outs),
// a record written before batches, and how many steps and saves balancing takes.
// (A step that throws fails its procedure: records.test.ts.)
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import type { CatalogState } from '../../../src/metasrv/catalog.js';
import { makeRegionId } from '../../../src/metasrv/catalog.js';
import { upgradeCatalog } from '../../../src/metasrv/catalog-store.js';
import { BATCH_MOVES, ELECTION_WAIT_MS, FIRST_BATCH_MOVES, MIN_MOVE_BOUND, MOVE_TIMEOUT_MS, moveBound, regionsOffHome } from '../../../src/metasrv/procedures/balance-leaders.js';
import { FakeCluster, REGION, replica } from '../../support/fake-procedure-context.js';

const R2 = makeRegionId(1024, 1);

/**
 * Nodes 1..3 alive (4 down) and `n` regions (REGION the first) with a voter on each of them,
 * peers 10i+1..10i+3 on nodes 1..3; node 1 leads every region.
 */
function crowded(n: number) {
  const f = new FakeCluster();
  f.kill(4);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const regionId = makeRegionId(1024, i);
    const peers = [1, 2, 3].map((node) => 10 * i + node);
    f.catalog.regions[regionId] = { ...f.region(), regionId, regionNumber: i, replicas: peers.map((peerId, k) => ({ peerId, nodeId: k + 1 })), leaderNodeId: 1 };
    for (const [k, peerId] of peers.entries()) f.report(k + 1, replica(peerId, { regionId, role: k === 0 ? 'leader' : 'follower', leaderNodeId: 1, voters: peers }));
    ids.push(regionId);
  }
  f.save();
  const { id } = f.start('balance-leaders', {});
  return { f, id, ids, record: () => f.procedure(id, 'balance-leaders') };
}

/**
 * The datanodes carry out the transfer_leader instructions sent so far (those of the regions
 * `only` accepts): the target's replica leads at a term above every replica's, the others follow.
 */
function transfer(f: FakeCluster, only: (regionId: string) => boolean = () => true): void {
  const left: FakeCluster['sent'] = [];
  for (const sent of f.sent) {
    const t = 'transfer_leader' in sent.instruction ? sent.instruction.transfer_leader : undefined;
    if (!t || !only(t.region_id)) {
      left.push(sent);
      continue;
    }
    const region = f.region(t.region_id);
    const target = region.replicas.find((p) => String(p.peerId) === t.to_peer_id)!;
    const seen = region.replicas.map((p) => f.reports.get(p.nodeId)!.get(t.region_id)!);
    const term = Math.max(...seen.map((r) => r.term)) + 1;
    for (const [k, p] of region.replicas.entries()) f.report(p.nodeId, { ...seen[k]!, term, role: p === target ? 'leader' : 'follower', leaderNodeId: target.nodeId });
  }
  f.sent = left;
}

/** Leaders per node 1..3 as the nodes report them. */
function reportedLeaders(f: FakeCluster): number[] {
  return [1, 2, 3].map((node) => [...f.reports.get(node)!.values()].filter((r) => r.role === 'leader').length);
}

/** Nodes 1..3 (4 is down); node 2 leads both regions, so one leadership should move (to node 3). */
function unbalanced() {
  const f = new FakeCluster();
  f.kill(4);
  f.catalog.regions[R2] = { ...f.region(), regionId: R2, regionNumber: 1, replicas: [{ peerId: 11, nodeId: 1 }, { peerId: 12, nodeId: 2 }, { peerId: 13, nodeId: 3 }] };
  f.report(1, replica(11, { regionId: R2, voters: [11, 12, 13] }));
  f.report(2, replica(12, { regionId: R2, role: 'leader', voters: [11, 12, 13] }));
  f.report(3, replica(13, { regionId: R2, voters: [11, 12, 13] }));
  const { id } = f.start('balance-leaders', {});
  return { f, id, record: () => f.procedure(id, 'balance-leaders') };
}

describe('balance-leaders / plan', () => {
  it('success: plans one transfer from the most to the least loaded node; next move', () => {
    const { f, id, record } = unbalanced();
    f.step(id);
    expect(record().step).to.equal('move');
    expect(record().data).to.deep.equal({ batch: [{ regionId: REGION, target: 3, targetPeer: 3 }], moves: 1 });
    expect(f.sent).to.deep.equal([]);
  });

  it('retryable: none; balanced (or too few live nodes) it is done', () => {
    const { f, id, record } = unbalanced();
    f.report(3, replica(13, { regionId: R2, role: 'leader', term: 3, voters: [11, 12, 13] }));
    f.step(id);
    expect(record().status).to.equal('done');
    expect(record().notes.at(-1)).to.match(/^balanced: /);
  });

  it('retryable: a region still electing (no leader reported) is waited for, not counted as led by nobody', () => {
    const { f, id, record } = unbalanced();
    // Right after a table is created nobody leads yet: 0/0/0 must not read as "balanced".
    f.report(2, replica(2));
    f.report(2, replica(12, { regionId: R2, voters: [11, 12, 13] }));
    f.step(id);
    expect(record()).to.include({ status: 'running', step: 'plan' });
    f.clock.advance(ELECTION_WAIT_MS / 2);
    f.report(2, replica(2, { role: 'leader', term: 3 }));
    f.report(2, replica(12, { regionId: R2, role: 'leader', term: 3, voters: [11, 12, 13] }));
    f.step(id);
    expect(record().step, 'both led by node 2 now: a move is planned').to.equal('move');
  });

  it('retryable: a region that finds no leader within the election wait is named, and the rest are balanced', () => {
    const { f, id, record } = unbalanced();
    f.report(2, replica(12, { regionId: R2, voters: [11, 12, 13] }));
    f.step(id);
    expect(record().status).to.equal('running');
    f.clock.advance(ELECTION_WAIT_MS + 1);
    f.step(id);
    expect(record().status).to.equal('done');
    expect(record().notes.at(-1)).to.match(new RegExp(`^balanced: .*1 region\\(s\\) without a known leader.*${R2}`));
  });

  it('fatal: still unbalanced after the move bound', () => {
    const { f, id, record } = unbalanced();
    record().data.moves = MIN_MOVE_BOUND;
    f.step(id);
    expect(record()).to.include({ status: 'failed', error: `still unbalanced after ${MIN_MOVE_BOUND} moves (the bound for 2 regions): node 1=0, node 2=2, node 3=0` });
  });

  it('the move bound scales with the regions (twice their number, at least 200), and a batch never passes it', () => {
    expect([moveBound(2), moveBound(100), moveBound(300), moveBound(5000)]).to.deep.equal([200, 200, 600, 10_000]);
    const { f, id, record } = crowded(300);
    record().data.moves = moveBound(300) - 3;
    f.step(id);
    expect(record().data.batch).to.have.length(3);
    expect(record().data.moves).to.equal(moveBound(300));
  });

  it('resume: a crash before the save plans the same move again, counted once', () => {
    const { f, id, record } = unbalanced();
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'plan' });
    expect(record().data).to.deep.equal({});
    f.step(id);
    expect(record().data).to.deep.equal({ batch: [{ regionId: REGION, target: 3, targetPeer: 3 }], moves: 1 });
  });
});

describe('balance-leaders / move', () => {
  function moving() {
    const u = unbalanced();
    u.f.step(u.id);
    return u;
  }

  it('success: asks the leader to transfer; back to plan once the target leads', () => {
    const { f, id, record } = moving();
    f.step(id);
    expect(f.sent).to.deep.equal([{ nodeId: 2, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '3' } } }]);
    f.report(3, replica(3, { role: 'leader', term: 3 }));
    f.report(2, replica(2, { term: 3 }));
    f.step(id);
    expect(record().step).to.equal('plan');
    expect(f.region().leaderNodeId).to.equal(3);
    f.step(id);
    expect(record().status, 'one leader each now').to.equal('done');
  });

  it('retryable: with no leader it sends nothing; after the move timeout it plans again', () => {
    const { f, id, record } = moving();
    f.kill(2);
    f.step(id);
    expect(f.sent).to.deep.equal([]);
    expect(record().step).to.equal('move');
    f.clock.advance(MOVE_TIMEOUT_MS + 1);
    f.step(id);
    expect(record().step).to.equal('plan');
    expect(record().notes.at(-1)).to.match(/timed out/);
  });

  it('retryable: a move waiting when the metasrv wall clock steps back 10 minutes still times out after the move timeout, not once the clock caught up (finding M33)', () => {
    const { f, id, record } = moving();
    f.kill(2);
    f.stepAcrossClockStepBack(id, MOVE_TIMEOUT_MS + 1);
    expect(record().step, 'timed out').to.equal('plan');
    expect(record().notes.at(-1)).to.match(/timed out/);
  });

  it('retryable: a region still electing when the wall clock steps back is waited for the election wait, not until the clock caught up (finding M33)', () => {
    const { f, id, record } = unbalanced();
    f.report(2, replica(2, { role: 'follower', leaderNodeId: 0 }));
    f.step(id);
    expect(record().step).to.equal('plan');
    f.clockStepsBackThenWaits(id, ELECTION_WAIT_MS + 1);
    expect(record().status, 'planned without the leaderless region').to.equal('done');
    expect(record().notes.at(-1)).to.match(/without a known leader/);
  });

  it('resume: a crash before the save re-sends the transfer', () => {
    const { f, id, record } = moving();
    f.stepThenCrash(id);
    expect(record()).to.include({ step: 'move', lastSentMs: 0 });
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@2']);
  });
});

describe('balance-leaders / batches', () => {
  it('a batch: distinct regions from the most-leading node to the least-leading voters; the first FIRST_BATCH_MOVES, each fully confirmed one doubles the next, up to BATCH_MOVES', () => {
    const { f, id, ids, record } = crowded(300);
    const sizes: number[] = [];
    for (let i = 0; i < 20 && record().status === 'running'; i++) {
      f.step(id); // plan
      if (record().step !== 'move') continue;
      const batch = record().data.batch!;
      sizes.push(batch.length);
      expect(new Set(batch.map((m) => m.regionId)).size, 'distinct regions').to.equal(batch.length);
      for (const m of batch) {
        expect(ids).to.include(m.regionId);
        expect(f.region(m.regionId).replicas, m.regionId).to.deep.include({ peerId: m.targetPeer, nodeId: m.target });
      }
      // From 300/0/0 on, the moves alternate between the two nodes that lead less.
      expect(batch.filter((m) => m.target === 2).length - batch.filter((m) => m.target === 3).length).to.be.within(-1, 1);
      if (i === 0) expect(record().notes.at(-1)).to.equal(`${FIRST_BATCH_MOVES} moves: ${FIRST_BATCH_MOVES / 2} to node 3, ${FIRST_BATCH_MOVES / 2} to node 2`);
      f.step(id); // move: sends
      transfer(f);
      f.step(id); // move: confirmed
    }
    // 200 moves: 8, 16, 32, 64, 64, then the 16 left.
    expect(sizes).to.deep.equal([FIRST_BATCH_MOVES, 16, 32, BATCH_MOVES, BATCH_MOVES, 16]);
    expect(record().status).to.equal('done');
  });

  it('a batch that times out halves the next (down to one move); a fully confirmed one doubles it (up to BATCH_MOVES)', () => {
    const { f, id, record } = crowded(300);
    record().data.window = 1;
    f.step(id);
    expect(record().data.batch).to.have.length(1);
    f.step(id);
    f.clock.advance(MOVE_TIMEOUT_MS + 1);
    f.step(id);
    expect(record().data.window, 'timed out at one move: one').to.equal(1);
    record().data.window = BATCH_MOVES;
    f.step(id);
    expect(record().data.batch).to.have.length(BATCH_MOVES);
    f.step(id);
    transfer(f);
    f.step(id);
    expect(record().data.window, 'confirmed at the largest: the largest').to.equal(BATCH_MOVES);
    f.step(id);
    f.step(id);
    f.clock.advance(MOVE_TIMEOUT_MS + 1);
    f.step(id);
    expect(record().data.window, 'timed out: halved').to.equal(BATCH_MOVES / 2);
  });

  it('a batch moves a leadership only to a replica that is a voter by its own report and by the leader\'s, and not lost', () => {
    const { f, id, ids, record } = crowded(6);
    const [r0, r1, r2, r3] = ids as [string, string, string, string];
    // r0: node 3's replica reports itself a learner; r1: node 3 reports nothing of it;
    // r2: the leader does not count node 3's peer a voter; r3: node 3's replica is lost.
    f.report(3, replica(3, { regionId: r0, voters: [1, 2], learners: [3] }));
    f.unreport(3, r1);
    f.report(1, replica(21, { regionId: r2, role: 'leader', leaderNodeId: 1, voters: [21, 22], learners: [23] }));
    f.region(r3).replicas[2]!.lost = 'replica failed: test';
    f.step(id);
    const batch = record().data.batch!;
    for (const m of batch.filter((b) => [r0, r1, r2, r3].includes(b.regionId))) expect(m.target, m.regionId).to.equal(2);
    const after = [6, 0, 0];
    for (const m of batch) {
      after[0]!--;
      after[m.target - 1]!++;
    }
    expect(after, 'what the batch leaves: 2 each').to.deep.equal([2, 2, 2]);
    expect(batch).to.have.length(4);
  });

  it('a draining node takes no leadership', () => {
    const { f, id, record } = crowded(6);
    f.catalog.nodes[3]!.state = 'draining';
    f.step(id);
    expect(record().data.batch!.map((m) => m.target)).to.deep.equal([2, 2, 2]);
  });

  it('a spread no move can lower ends the procedure, named: a node holding no voter keeps leading none', () => {
    const { f, id, record } = crowded(6);
    f.alive.add(4); // alive, but hosts no replica
    for (let i = 0; i < 20 && record().status === 'running'; i++) {
      f.step(id);
      transfer(f);
    }
    expect(record()).to.include({ status: 'done' });
    expect(record().notes.at(-1)).to.equal('no leadership can move to a less-leading voter: node 1=2, node 2=2, node 3=2, node 4=0');
  });

  it('a region another procedure is changing gets no move', () => {
    const { f, id, ids, record } = crowded(3);
    f.start('transfer-leader', { regionId: ids[0]!, nodeId: 2 });
    f.start('repair-replica', { regionId: ids[1]!, oldPeerId: 23, oldNodeId: 3 });
    f.step(id);
    expect(record().data.batch!.map((m) => m.regionId)).to.deep.equal([ids[2]]);
  });

  it('confirmed moves are counted; the unconfirmed are re-sent together, and one that times out is planned again', () => {
    const { f, id, ids, record } = crowded(6);
    f.step(id);
    const batch = record().data.batch!;
    expect(batch).to.have.length(4);
    f.step(id);
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@1', 'transfer_leader@1', 'transfer_leader@1', 'transfer_leader@1']);
    const slow = batch[1]!.regionId;
    transfer(f, (r) => r !== slow);
    f.sent = [];
    f.step(id);
    expect(record().step, 'one move unconfirmed: still waiting').to.equal('move');
    f.clock.advance(3000);
    f.step(id);
    expect(f.sent.map((s) => ('transfer_leader' in s.instruction ? s.instruction.transfer_leader.region_id : '')), 'only the unconfirmed move is re-sent').to.deep.equal([slow]);
    f.clock.advance(MOVE_TIMEOUT_MS - 3000 + 1);
    f.step(id);
    expect(record()).to.include({ step: 'plan' });
    expect(record().data).to.deep.equal({ moves: 4, confirmed: 3, window: FIRST_BATCH_MOVES / 2 });
    expect(record().notes.at(-1)).to.equal(`3 of 4 move(s) confirmed; 1 timed out (region ${slow})`);
    expect(ids.filter((r) => r !== slow).map((r) => f.region(r).leaderNodeId)).to.include.members([2, 3]);
    f.step(id);
    expect(record().data.batch, 'the timed-out move, planned again').to.deep.equal([batch[1]]);
    expect(record().data.moves).to.equal(5);
  });

  it('a record written before batches (one move, step move) is finished by this version', () => {
    const fixture = JSON.parse(readFileSync('test/fixtures/procedure-records-v1.json', 'utf8')) as { catalog: CatalogState };
    const old = upgradeCatalog(fixture.catalog).procedures['balance-leaders-5']!;
    expect(old).to.deep.include({ step: 'move', data: { regionId: REGION, target: 1, targetPeer: 1, moves: 1 } });
    const f = new FakeCluster();
    f.catalog.procedures = { [old.id]: old };
    f.save();
    const record = () => f.procedure(old.id, 'balance-leaders');
    f.step(old.id);
    expect(f.sent).to.deep.equal([{ nodeId: 2, instruction: { transfer_leader: { region_id: REGION, to_peer_id: '1' } } }]);
    transfer(f);
    f.step(old.id);
    expect(record()).to.include({ step: 'plan' });
    expect(record().data).to.deep.equal({ moves: 1, confirmed: 1, window: 2 * FIRST_BATCH_MOVES });
    expect(f.region().leaderNodeId).to.equal(1);
    f.step(old.id);
    expect(record()).to.include({ status: 'done' });
    expect(record().notes.at(-1)).to.equal('balanced: node 1=1, node 2=0, node 3=0, node 4=0');
  });

  it('balancing 300 regions led by one node takes a handful of steps and catalog saves, not hundreds', () => {
    const { f, id, record } = crowded(300);
    let steps = 0;
    let saves = 0;
    while (record().status === 'running' && steps < 2000) {
      const changed = f.step(id);
      steps++;
      // As the metasrv's tick: a pass that changed a record, or staged an instruction, is saved.
      if (changed || f.sent.length > 0) saves++;
      transfer(f);
      f.clock.advance(200);
    }
    expect(record().status).to.equal('done');
    expect(reportedLeaders(f)).to.deep.equal([100, 100, 100]);
    // 200 moves: 6 batches (8, 16, 32, 64, 64, 16) of plan, send, confirm, then "balanced". One
    // move per step took 601 steps and 601 saves.
    expect({ steps, saves }).to.deep.equal({ steps: 19, saves: 19 });
  });
});

/**
 * Leader placement "table" (docs/leader-placement.md). Nodes 1..3 alive (4 down); per table, its
 * regions with a voter on each node (peers 100t+10i+1..3 on nodes 1..3), region i led by the
 * node `leaders[i]`; a balance-leaders with placement "table", `packRegions` a node.
 */
function tables(layout: Record<string, number[]>, packRegions = 16) {
  const f = new FakeCluster();
  f.kill(4);
  const template = f.region();
  delete f.catalog.regions[REGION];
  for (const node of [1, 2, 3]) f.reports.get(node)?.delete(REGION);
  const ids: Record<string, string[]> = {};
  for (const [t, [table, leaders]] of Object.entries(layout).entries()) {
    ids[table] = [];
    for (const [i, leader] of leaders.entries()) {
      const regionId = makeRegionId(2000 + t, i);
      const peers = [1, 2, 3].map((node) => 1000 * t + 10 * i + node);
      f.catalog.regions[regionId] = { ...template, regionId, tableName: table, regionNumber: i, replicas: peers.map((peerId, k) => ({ peerId, nodeId: k + 1 })), leaderNodeId: leader };
      for (const [k, peerId] of peers.entries()) f.report(k + 1, replica(peerId, { regionId, role: k + 1 === leader ? 'leader' : 'follower', leaderNodeId: leader, voters: peers }));
      ids[table].push(regionId);
    }
  }
  f.save();
  const { id } = f.start('balance-leaders', { placement: 'table', packRegions });
  return { f, id, ids, record: () => f.procedure(id, 'balance-leaders') };
}

/** Runs the procedure to its end, the datanodes carrying out every transfer; the node leading each region after, by table. */
function runToEnd(f: FakeCluster, id: string, ids: Record<string, string[]>): Record<string, number[]> {
  for (let i = 0; i < 50 && f.procedure(id, 'balance-leaders').status === 'running'; i++) {
    f.step(id);
    transfer(f);
  }
  const out: Record<string, number[]> = {};
  for (const [table, regions] of Object.entries(ids)) out[table] = regions.map((r) => [1, 2, 3].find((n) => f.reports.get(n)!.get(r)?.role === 'leader') ?? 0);
  return out;
}

describe('balance-leaders / placement "table"', () => {
  it("a table's leaders spread over the nodes move to the node leading most of them; a table already on one node is done with no move", () => {
    const spread = tables({ t: [1, 2, 3, 1] });
    expect(runToEnd(spread.f, spread.id, spread.ids)).to.deep.equal({ t: [1, 1, 1, 1] });
    expect(spread.record().status).to.equal('done');
    expect(spread.record().data.moves).to.equal(2);
    const packed = tables({ t: [2, 2, 2, 2] });
    packed.f.step(packed.id);
    expect(packed.record().status).to.equal('done');
    expect(packed.record().notes.at(-1)).to.match(/^placed by table \(16 regions a node\)/);
    expect(packed.f.sent).to.deep.equal([]);
  });

  it('tables get different nodes while one would pass its even share: two 4-region tables led by node 1 end on nodes 1 and 2', () => {
    const { f, id, ids, record } = tables({ t: [1, 1, 1, 1], u: [1, 1, 1, 1] });
    expect(runToEnd(f, id, ids)).to.deep.equal({ t: [1, 1, 1, 1], u: [2, 2, 2, 2] });
    expect(record().data.moves).to.equal(4);
  });

  it('a table larger than packRegions is led in chunks by region number, each chunk on one node, the chunks spread', () => {
    const { f, id, ids } = tables({ big: Array.from({ length: 20 }, () => 1) }, 8);
    // Chunks of 8, 8, 4: 20 leaders over 3 nodes, an even share of 7 — each chunk (8 > 7) on its own node.
    const after = runToEnd(f, id, ids)['big']!;
    const chunks = [after.slice(0, 8), after.slice(8, 16), after.slice(16)];
    for (const chunk of chunks) expect(new Set(chunk).size, `one node a chunk: ${after.join(',')}`).to.equal(1);
    expect(new Set(chunks.map((c) => c[0])).size, `chunks on distinct nodes: ${after.join(',')}`).to.equal(3);
    expect(chunks[0]![0], 'the first chunk stays where it is').to.equal(1);
  });

  it('a second plan over the placed leaders moves nothing (homes follow the current leaders), and a home with no voter of a region is not chosen', () => {
    const { f, id, ids, record } = tables({ t: [3, 3, 1, 2] });
    expect(runToEnd(f, id, ids)).to.deep.equal({ t: [3, 3, 3, 3] });
    const again = f.start('balance-leaders', { placement: 'table', packRegions: 16 });
    f.step(again.id);
    expect(f.procedure(again.id, 'balance-leaders').status).to.equal('done');
    expect(record().status).to.equal('done');
    // Node 3 loses its replica of region 0: the table's only candidates are nodes 1 and 2.
    const lostOn3 = tables({ t: [3, 3, 3, 3] });
    const r0 = lostOn3.f.region(lostOn3.ids['t']![0]!);
    r0.replicas = r0.replicas.map((p) => (p.nodeId === 3 ? { ...p, lost: 'test' } : p));
    const placed = runToEnd(lostOn3.f, lostOn3.id, lostOn3.ids)['t']!;
    expect(new Set(placed).size, placed.join(',')).to.equal(1);
    expect(placed[0]).to.not.equal(3);
  });

  it("the periodic check's count (regionsOffHome) is what a plan would move: not a region whose home holds no voter of it", () => {
    const spread = tables({ t: [1, 2, 3, 1] });
    expect(regionsOffHome(spread.f.ctx, 16)).to.equal(2);
    const packed = tables({ t: [2, 2, 2, 2] });
    expect(regionsOffHome(packed.f.ctx, 16)).to.equal(0);
    // Region 1's replica on node 1 (the home) is a learner by its own report: not movable there.
    const learner = tables({ t: [1, 2, 1, 1] });
    const r1 = learner.ids['t']![1]!;
    const seen = learner.f.reports.get(1)!.get(r1)!;
    learner.f.report(1, { ...seen, voters: seen.voters.filter((p) => p !== seen.peerId), learners: [seen.peerId] });
    expect(regionsOffHome(learner.f.ctx, 16)).to.equal(0);
  });

  it('a record with a placement this version does not know fails, naming it', () => {
    const { f, id, record } = tables({ t: [1, 2, 3, 1] });
    (record().data as { placement?: string }).placement = 'zone';
    f.step(id);
    expect(record().status).to.equal('failed');
    expect(record().error).to.contain('unknown leader placement "zone"');
  });
});
