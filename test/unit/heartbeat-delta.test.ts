// Delta heartbeats (docs/quiescence.md, "Heartbeats that carry what changed"): the datanode's
// ReportTracker (src/datanode/report-delta.ts) against the metasrv's useReport
// (src/metasrv/report-view.ts), over seeded sequences of replica changes and a channel that loses
// requests and answers, delivers requests twice and late (out of order), restarts the metasrv
// (its views forgotten) and the datanode (a new incarnation, registered again). The oracle:
//   V1 every view the metasrv takes equals, region by region, the full report the datanode made
//      under the number the view carries (what a full heartbeat would have given it);
//   V2 within an incarnation the metasrv's view never goes back to an older report;
//   V3 reconciliation's decisions (reconcileCatalog, nodeActions, idFloors) on the view equal those
//      on that full report (compared as sets: a delta-built view may list the same replicas in
//      another order, and so the destroy instructions of different regions), checked at every
//      fourth step;
//   and at the end, over a clean channel, the view catches up with the datanode's stats.
// The sequences must exercise the protocol: deltas applied, reports refused, fulls asked for.
// Planted deviations (a metasrv applying a delta to whatever view it holds, one taking a late
// full report over a newer view, a datanode diffing against the last report it sent instead of
// the acknowledged one) each fail it. A failure names its seed: HEARTBEAT_DELTA_SEED=<seed> replays it.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { ReportTracker, type SentReport, sameStat } from '../../src/datanode/report-delta.js';
import { type CatalogState, emptyCatalog, makeRegionId } from '../../src/metasrv/catalog.js';
import type { ObservedReplica } from '../../src/metasrv/procedures/procedure.js';
import { type AwaitingReport, type Reports, idFloors, nodeActions, reconcileCatalog } from '../../src/metasrv/reconcile.js';
import { type NodeReport, type ReportUse, observedOf, useReport } from '../../src/metasrv/report-view.js';
import type { HeartbeatRequest__Output, ReplicaStat__Output } from '../../src/rpc/generated/index.js';

/** No node's first report awaited (a metasrv past its startup pause). */
const NONE: AwaitingReport = () => false;

const FIRST_SEED = Number(process.env['HEARTBEAT_DELTA_SEED'] ?? 1);
const SEEDS = process.env['HEARTBEAT_DELTA_SEED'] ? 1 : Number(process.env['HEARTBEAT_DELTA_SEEDS'] ?? 40);
const STEPS = 400;
const NODE = 1;

type UseReport = (current: NodeReport | undefined, req: HeartbeatRequest__Output) => ReportUse;
interface Variant {
  readonly useReport: UseReport;
  /** The datanode's tracker (a planted one may differ). */
  readonly tracker: (incarnation: number) => Pick<ReportTracker, 'incarnation' | 'next' | 'answered' | 'forgetBase'>;
}

const correct: Variant = { useReport, tracker: (inc) => new ReportTracker(inc, 25) };

function stat(regionId: string, peerId: number, rand: SeededRand): ReplicaStat__Output {
  const applied = rand.int(50);
  return {
    region_id: regionId,
    peer_id: String(peerId),
    role: rand.pick(['leader', 'follower', 'follower']),
    term: String(1 + rand.int(3)),
    leader_node_id: String(rand.int(4)),
    applied_index: String(applied),
    commit_index: String(applied + rand.int(2)),
    flushed_index: '0',
    memtable_bytes: String(rand.int(1000)),
    voters: [String(peerId), String(peerId + 1), String(peerId + 2)],
    learners: [],
    snapshot_installed_index: '0',
    ssts: 0,
    health: 'ok',
    failure: '',
    conf_index: String(rand.int(3)),
    members: rand.chance(0.3) ? [0, 1, 2].map((k) => ({ peer_id: String(peerId + k), node_id: String(1 + rand.int(4)), addr: '' })) : [],
  };
}

/** One random change of the node's replicas: a few stats move, a region comes or goes, a replica fails. */
function mutate(stats: Map<string, ReplicaStat__Output>, rand: SeededRand, nextPeer: () => number): void {
  const ids = [...stats.keys()];
  const moves = rand.int(4);
  for (let i = 0; i < moves && ids.length > 0; i++) {
    const id = rand.pick(ids);
    const s = stats.get(id)!;
    const field = rand.int(6);
    if (field === 0) stats.set(id, { ...s, applied_index: String(Number(s.applied_index) + 1), commit_index: String(Number(s.commit_index) + 1) });
    else if (field === 1) stats.set(id, { ...s, role: s.role === 'leader' ? 'follower' : 'leader', term: String(Number(s.term) + 1) });
    else if (field === 2) stats.set(id, { ...s, memtable_bytes: String(rand.int(1000)) });
    else if (field === 3) stats.set(id, { ...s, voters: [...s.voters, String(nextPeer())], conf_index: String(Number(s.conf_index) + 1) });
    else if (field === 4) stats.set(id, { ...s, health: 'failed', failure: 'planted damage', role: 'follower' });
    // A leader learns another node of a member (only this field moves).
    else stats.set(id, { ...s, members: [...s.members, { peer_id: String(nextPeer()), node_id: String(1 + rand.int(4)), addr: '' }] });
  }
  if (rand.chance(0.1)) {
    const id = makeRegionId(1024 + rand.int(4), rand.int(30));
    if (!stats.has(id)) stats.set(id, stat(id, nextPeer(), rand));
  }
  if (rand.chance(0.08) && ids.length > 0) stats.delete(rand.pick(ids));
}

/** A catalog placing some of the regions on this node and others, and two other nodes' reports. */
function world(rand: SeededRand): { catalog: CatalogState; others: [number, Map<string, ObservedReplica>][] } {
  const catalog = emptyCatalog('c');
  const others: [number, Map<string, ObservedReplica>][] = [
    [2, new Map()],
    [3, new Map()],
  ];
  for (let t = 0; t < 4; t++) {
    for (let n = 0; n < 30; n++) {
      const regionId = makeRegionId(1024 + t, n);
      if (rand.chance(0.7)) {
        const base = 1 + rand.int(20);
        catalog.regions[regionId] = {
          regionId,
          tableName: `t${t}`,
          regionNumber: n,
          replicas: [
            { peerId: base, nodeId: NODE },
            { peerId: base + 1, nodeId: 2 },
            { peerId: base + 2, nodeId: 3 },
          ],
          leaderNodeId: 0,
          confVersion: 1,
          confIndex: rand.int(3),
        };
      } else if (rand.chance(0.3)) {
        catalog.droppedRegions = { ...(catalog.droppedRegions ?? {}), [regionId]: 1 };
      }
      for (const [nodeId, map] of others) {
        if (rand.chance(0.5)) map.set(regionId, observedOf(stat(regionId, 1 + rand.int(20) + nodeId - 1, rand)));
      }
    }
  }
  return { catalog, others };
}

function viewOf(stats: Iterable<ReplicaStat__Output>): Map<string, ObservedReplica> {
  const out = new Map<string, ObservedReplica>();
  for (const s of stats) out.set(s.region_id, observedOf(s));
  return out;
}

function sortedEntries<V>(m: ReadonlyMap<string, V>): [string, V][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function decisions(catalog: CatalogState, others: [number, Map<string, ObservedReplica>][], mine: ReadonlyMap<string, ObservedReplica>) {
  const reports: Reports = new Map([[NODE, mine], ...others]);
  const rec = reconcileCatalog(catalog, reports, new Set());
  const actions = nodeActions(catalog, NODE, reports, NONE).map((a) => JSON.stringify(a));
  return {
    adopt: [...rec.adopt].sort((a, b) => (a.regionId < b.regionId ? -1 : 1)),
    matched: [...rec.matched].sort((a, b) => (a.regionId < b.regionId ? -1 : 1)),
    problems: sortedEntries(rec.problems).map(([k, v]) => [k, [...v].sort()]),
    actions: actions.sort(),
    floors: idFloors(reports),
  };
}

interface Counts {
  deltasApplied: number;
  fullsApplied: number;
  unusable: number;
  lateDeliveries: number;
  metasrvRestarts: number;
  datanodeRestarts: number;
}

/** One seeded sequence; throws (naming the seed and step) when an oracle check fails. */
function runSequence(seed: number, variant: Variant): Counts {
  const rand = new SeededRand(seed);
  const { catalog, others } = world(rand);
  let peer = 100;
  const nextPeer = () => ++peer;
  const stats = new Map<string, ReplicaStat__Output>();
  for (let i = 0; i < 20; i++) {
    const id = makeRegionId(1024 + rand.int(4), rand.int(30));
    stats.set(id, stat(id, nextPeer(), rand));
  }
  let incarnations = 0;
  let tracker = variant.tracker(++incarnations);
  /** What the datanode reported under each (incarnation, seq): the oracle's full reports. */
  const madeReports = new Map<string, ReplicaStat__Output[]>();
  let view: NodeReport | undefined;
  /** Requests held back to be delivered again later (a duplicate, out of order). */
  const late: HeartbeatRequest__Output[] = [];
  const counts: Counts = { deltasApplied: 0, fullsApplied: 0, unusable: 0, lateDeliveries: 0, metasrvRestarts: 0, datanodeRestarts: 0 };
  const where = (step: number) => `seed ${seed}, step ${step} (replay: HEARTBEAT_DELTA_SEED=${seed})`;

  // What the tracker is handed each beat, from a stream of its own (the sequence's is not
  // disturbed): a fresh array; one array refilled in place (never frozen: the tracker must look
  // inside it every time); or, as DatanodeCore.reportStats does, a frozen array that is the same
  // object for as long as no stat changed.
  const inputRand = new SeededRand(seed * 7919 + 13);
  const refilled: ReplicaStat__Output[] = [];
  let frozen: readonly ReplicaStat__Output[] = Object.freeze([]);
  const input = (): readonly ReplicaStat__Output[] => {
    const now = [...stats.values()];
    const how = inputRand.int(3);
    if (how === 0) return now;
    if (how === 1) {
      refilled.length = 0;
      refilled.push(...now);
      return refilled;
    }
    if (frozen.length !== now.length || now.some((st, i) => st !== frozen[i])) frozen = Object.freeze(now);
    return frozen;
  };

  const request = (sent: SentReport): HeartbeatRequest__Output => ({ cluster_id: 'c', node_id: String(NODE), addr: 'a', store_id: 's', start_count: '0', start_id: '', held_replicas: [], ...sent.fields });

  /** The metasrv takes a request in; returns its answer. */
  const deliver = (req: HeartbeatRequest__Output, step: number): { report_seq_applied: string; full_report_needed: boolean } => {
    const use = variant.useReport(view, req);
    if (use.kind === 'unusable') {
      counts.unusable++;
      return { report_seq_applied: '0', full_report_needed: true };
    }
    const label = `${use.report.incarnation}/${use.report.seq}`;
    const made = madeReports.get(label);
    expect(made, `${where(step)}: a view labelled ${label}, which the datanode never reported`).to.not.equal(undefined);
    // V1: the view is the full report it stands for.
    expect(sortedEntries(use.report.replicas), `${where(step)}: the view labelled ${label} differs from that full report`).to.deep.equal(sortedEntries(viewOf(made!)));
    // V2: never back to an older report of the same process.
    if (view && view.incarnation === use.report.incarnation) {
      expect(use.report.seq, `${where(step)}: the view went back from report ${view.seq} to ${use.report.seq}`).to.be.at.least(view.seq);
    }
    // V3: the decisions on the view are those on the full report (every fourth view: reconciling
    // is the slow part of this test, and V1 already makes the inputs equal).
    if (step % 4 === 0) expect(decisions(catalog, others, use.report.replicas), `${where(step)}: decisions on the view labelled ${label}`).to.deep.equal(decisions(catalog, others, viewOf(made!)));
    if (use.how === 'delta') counts.deltasApplied++;
    if (use.how === 'full') counts.fullsApplied++;
    view = use.report;
    return { report_seq_applied: String(use.applied), full_report_needed: false };
  };

  /** One heartbeat of the datanode (with its immediate full report when asked), over the faulty channel. */
  const beat = (step: number, faulty: boolean): void => {
    for (let call = 0; call < 2; call++) {
      const sent = tracker.next(input());
      madeReports.set(`${tracker.incarnation}/${sent.seq}`, [...stats.values()]);
      const req = request(sent);
      if (faulty && rand.chance(0.1)) late.push(req);
      if (faulty && rand.chance(0.1)) return; // the request is lost: the call fails
      const answer = deliver(req, step);
      if (faulty && rand.chance(0.1)) return; // the answer is lost
      if (!tracker.answered(sent, answer)) return;
    }
  };

  for (let step = 0; step < STEPS; step++) {
    mutate(stats, rand, nextPeer);
    if (rand.chance(0.03)) {
      view = undefined; // a metasrv restart, or another metasrv took over: no views
      counts.metasrvRestarts++;
    }
    if (rand.chance(0.02)) {
      tracker = variant.tracker(++incarnations); // a datanode restart: a new process
      tracker.forgetBase(); // it registers; the metasrv forgets its view (registerNode)
      view = undefined;
      counts.datanodeRestarts++;
    }
    if (late.length > 0 && rand.chance(0.15)) {
      const req = late.splice(rand.int(late.length), 1)[0]!;
      counts.lateDeliveries++;
      deliver(req, step); // its answer reaches nobody: that call has ended
    }
    beat(step, true);
  }
  // A clean channel: the view catches up with the datanode's stats within two heartbeats.
  beat(STEPS, false);
  beat(STEPS + 1, false);
  expect(view, `${where(STEPS)}: no view after clean heartbeats`).to.not.equal(undefined);
  expect(sortedEntries(view!.replicas), `${where(STEPS)}: the view after clean heartbeats is not the datanode's stats`).to.deep.equal(sortedEntries(viewOf(stats.values())));
  return counts;
}

function runAll(variant: Variant): Counts {
  const total: Counts = { deltasApplied: 0, fullsApplied: 0, unusable: 0, lateDeliveries: 0, metasrvRestarts: 0, datanodeRestarts: 0 };
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    const c = runSequence(seed, variant);
    for (const k of Object.keys(total) as (keyof Counts)[]) total[k] += c[k];
  }
  return total;
}

// ─── Planted deviations ────────────────────────────────────────────────────────────────────────

/** A datanode whose tracker trusts any array it has seen before, even one refilled in place since. */
class TrustsAnyArray extends ReportTracker {
  protected override keptByReference(): boolean {
    return true;
  }
}

/** A metasrv that applies a delta to whatever view it holds, whatever its base. */
const anyBase: UseReport = (current, req) => {
  const use = useReport(current, req);
  if (use.kind !== 'unusable' || current === undefined || req.report_base_seq === '0' || req.report_incarnation !== current.incarnation) return use;
  if (Number(req.report_seq) < current.seq) return use;
  const replicas = new Map(current.replicas);
  for (const id of req.removed_region_ids) replicas.delete(id);
  for (const s of req.replicas) replicas.set(s.region_id, observedOf(s));
  return { kind: 'view', how: 'delta', report: { incarnation: current.incarnation, seq: Number(req.report_seq), replicas, held: current.held }, applied: Number(req.report_seq) };
};

/** A metasrv that takes a full report even when it holds a later one (a late duplicate replaces the view). */
const lateFullWins: UseReport = (current, req) => {
  const use = useReport(current, req);
  if (use.kind === 'unusable' && req.report_base_seq === '0') {
    return { kind: 'view', how: 'full', report: { incarnation: req.report_incarnation, seq: Number(req.report_seq), replicas: viewOf(req.replicas), held: new Map() }, applied: Number(req.report_seq) };
  }
  return use;
};

/**
 * A datanode that diffs against the last report it sent, while naming the last acknowledged one
 * as the base (a lost request's changes are then in neither).
 */
class LastSentDiffTracker {
  private seq = 0;
  private ackedSeq = 0;
  private lastSent = new Map<string, ReplicaStat__Output>();
  constructor(readonly incarnation: number) {}
  forgetBase(): void {
    this.ackedSeq = 0;
  }
  next(stats: readonly ReplicaStat__Output[]): SentReport {
    const seq = ++this.seq;
    const byRegion = new Map(stats.map((st) => [st.region_id, st] as const));
    const full = this.ackedSeq === 0;
    const replicas = full ? [...stats] : stats.filter((st) => !this.lastSent.has(st.region_id) || !sameStat(this.lastSent.get(st.region_id)!, st));
    const removed = full ? [] : [...this.lastSent.keys()].filter((id) => !byRegion.has(id));
    this.lastSent = byRegion;
    const fields = { replicas, report_incarnation: String(this.incarnation), report_seq: String(seq), report_base_seq: String(full ? 0 : this.ackedSeq), removed_region_ids: removed };
    return { seq, full, stats: byRegion, fields };
  }
  answered(sent: SentReport, answer: { report_seq_applied?: string; full_report_needed?: boolean }): boolean {
    if (Number(answer.report_seq_applied ?? 0) === sent.seq) this.ackedSeq = sent.seq;
    if (answer.full_report_needed) this.ackedSeq = 0;
    return answer.full_report_needed === true;
  }
}

describe('delta heartbeats: the view a metasrv builds from deltas is the full report it stands for', function () {
  this.timeout(120_000);

  it(`${SEEDS} seeded sequences of ${STEPS} heartbeats with losses, duplicates, late deliveries and restarts (from seed ${FIRST_SEED})`, () => {
    const c = runAll(correct);
    // The sequences exercise what the protocol is for, not only full reports.
    expect(c.deltasApplied, 'deltas applied').to.be.greaterThan(c.fullsApplied);
    expect(c.unusable, 'reports refused (a full report asked for)').to.be.greaterThan(SEEDS);
    expect(c.lateDeliveries, 'late deliveries').to.be.greaterThan(SEEDS);
    expect(c.metasrvRestarts, 'metasrv restarts').to.be.greaterThan(SEEDS / 2);
    expect(c.datanodeRestarts, 'datanode restarts').to.be.greaterThan(SEEDS / 2);
  });

  it('a datanode sends only what changed, and full reports when asked and every fullEvery reports', () => {
    const rand = new SeededRand(3);
    const tracker = new ReportTracker(7, 4);
    const stats = [stat(makeRegionId(1024, 0), 1, rand), stat(makeRegionId(1024, 1), 4, rand)];
    const first = tracker.next(stats);
    expect(first.full).to.equal(true);
    expect(first.fields).to.deep.include({ report_incarnation: '7', report_seq: '1', report_base_seq: '0' });
    expect(tracker.answered(first, { report_seq_applied: '1' })).to.equal(false);
    const moved = { ...stats[0]!, applied_index: String(Number(stats[0]!.applied_index) + 1) };
    const second = tracker.next([moved]);
    expect(second.fields).to.deep.include({ report_seq: '2', report_base_seq: '1', removed_region_ids: [stats[1]!.region_id] });
    expect(second.fields.replicas).to.deep.equal([moved]);
    // Not acknowledged (the answer was lost): the next delta is still on report 1.
    const third = tracker.next([moved]);
    expect(third.fields).to.deep.include({ report_seq: '3', report_base_seq: '1' });
    expect(third.fields.replicas).to.deep.equal([moved]);
    // The same stats as the last report (here the same object): its region map is reused, not built again.
    expect(third.stats).to.equal(second.stats);
    expect(tracker.answered(third, { report_seq_applied: '3' })).to.equal(false);
    // An equal stat in a new object counts as the same too; the base is that map: nothing to send.
    const fourth = tracker.next([{ ...moved, voters: [...moved.voters] }]);
    expect(fourth.stats).to.equal(third.stats);
    expect(fourth.fields).to.deep.include({ report_base_seq: '3', replicas: [], removed_region_ids: [] });
    // A changed stat: a new map, and the change sent.
    const changedAgain = { ...moved, memtable_bytes: String(Number(moved.memtable_bytes) + 1) };
    const probe = new ReportTracker(8, 100);
    const p1 = probe.next([moved]);
    probe.answered(p1, { report_seq_applied: String(p1.seq) });
    const p2 = probe.next([changedAgain]);
    expect(p2.stats).to.not.equal(p1.stats);
    expect(p2.fields.replicas).to.deep.equal([changedAgain]);
    // Asked for a full report: the next one is full.
    expect(tracker.answered(fourth, { full_report_needed: true })).to.equal(true);
    const fifth = tracker.next([moved]);
    expect(fifth.full).to.equal(true);
    tracker.answered(fifth, { report_seq_applied: '5' });
    // fullEvery = 4: three deltas, then a full one.
    const kinds: boolean[] = [];
    for (let i = 0; i < 4; i++) {
      const r = tracker.next([moved]);
      kinds.push(r.full);
      tracker.answered(r, { report_seq_applied: String(r.seq) });
    }
    expect(kinds).to.deep.equal([false, false, false, true]);
    // A metasrv before delta reports never acknowledges: every report stays full.
    const legacy = new ReportTracker(9, 60);
    for (let i = 0; i < 3; i++) {
      const r = legacy.next(stats);
      expect(r.full).to.equal(true);
      legacy.answered(r, { report_seq_applied: '0', full_report_needed: false });
    }
    // Acknowledged once, then answered by a metasrv that holds no report (one before delta
    // reports after a rollback, or a group member not upgraded yet, which would take a delta's
    // replicas as the whole report): full reports from then on, not deltas on the old base.
    const rolledBack = new ReportTracker(11, 60);
    const acked = rolledBack.next(stats);
    rolledBack.answered(acked, { report_seq_applied: String(acked.seq) });
    for (let i = 0; i < 3; i++) {
      const r = rolledBack.next([moved, stats[1]!]);
      expect(r.full, `report ${r.seq} after an answer that held no report`).to.equal(i > 0);
      rolledBack.answered(r, { report_seq_applied: '0', full_report_needed: false });
    }
    // The same frozen array again (an idle datanode's beat): the map is reused without a look at
    // a single stat — every element read is counted, and none is.
    const idle = new ReportTracker(12, 60);
    let reads = 0;
    const watched: ReplicaStat__Output[] = [];
    for (const [i, st] of stats.entries()) {
      Object.defineProperty(watched, i, {
        enumerable: true,
        get: () => {
          reads++;
          return st;
        },
      });
    }
    Object.freeze(watched);
    const i1 = idle.next(watched);
    idle.answered(i1, { report_seq_applied: String(i1.seq) });
    const readsBefore = reads;
    expect(readsBefore, 'the first report reads every stat').to.be.greaterThan(0);
    const i2 = idle.next(watched);
    expect(reads, 'stats read for the same frozen array').to.equal(readsBefore);
    expect(i2.stats).to.equal(i1.stats);
    expect(i2.fields).to.deep.include({ replicas: [], removed_region_ids: [] });
    // An array that is not frozen is looked at every time (it may have been refilled).
    const open = [...stats];
    const o1 = idle.next(open);
    open[0] = moved;
    const o2 = idle.next(open);
    expect(o2.stats).to.not.equal(o1.stats);
    expect(o2.fields.replicas).to.deep.equal([moved]);
    expect(sameStat(stats[0]!, { ...stats[0]! })).to.equal(true);
    expect(sameStat(stats[0]!, { ...stats[0]!, voters: [...stats[0]!.voters, '99'] })).to.equal(false);
    const members = [{ peer_id: '1', node_id: '2', addr: '' }];
    expect(sameStat({ ...stats[0]!, members }, { ...stats[0]!, members: [{ ...members[0]! }] })).to.equal(true);
    expect(sameStat({ ...stats[0]!, members }, { ...stats[0]!, members: [{ ...members[0]!, node_id: '3' }] }), 'a member moved to another node').to.equal(false);
  });

  it('the metasrv: a report without an incarnation is full; a delta needs the view of its base; a late report is refused', () => {
    const s = (id: number, applied: number) => ({ ...stat(makeRegionId(1024, id), 1, new SeededRand(id)), applied_index: String(applied) });
    const req = (fields: Partial<HeartbeatRequest__Output>): HeartbeatRequest__Output => ({
      cluster_id: 'c',
      node_id: '1',
      addr: 'a',
      store_id: 's',
      replicas: [],
      report_incarnation: '5',
      report_seq: '0',
      report_base_seq: '0',
      removed_region_ids: [],
      start_count: '0',
      start_id: '',
      held_replicas: [],
      ...fields,
    });
    const legacy = useReport(undefined, req({ report_incarnation: '0', replicas: [s(1, 3)] }));
    expect(legacy).to.deep.include({ kind: 'view', how: 'full', applied: 0 });
    expect(useReport(undefined, req({ report_seq: '4', report_base_seq: '3', replicas: [s(1, 4)] })).kind).to.equal('unusable');
    const full = useReport(undefined, req({ report_seq: '3', replicas: [s(1, 3), s(2, 1)] }));
    expect(full).to.deep.include({ kind: 'view', how: 'full', applied: 3 });
    const held = (full as { report: NodeReport }).report;
    const delta = useReport(held, req({ report_seq: '4', report_base_seq: '3', replicas: [s(1, 4)], removed_region_ids: [makeRegionId(1024, 2)] }));
    expect(delta).to.deep.include({ kind: 'view', how: 'delta', applied: 4 });
    expect([...(delta as { report: NodeReport }).report.replicas.values()].map((r) => [r.regionId, r.appliedIndex])).to.deep.equal([[makeRegionId(1024, 1), 4]]);
    expect(held.replicas.size, 'the held view is not changed').to.equal(2);
    const now = (delta as { report: NodeReport }).report;
    // An empty delta (an idle node): a new report number over the same map, not a copy of it.
    const idle = useReport(now, req({ report_seq: '5', report_base_seq: '4' }));
    expect(idle).to.deep.include({ kind: 'view', how: 'delta', applied: 5 });
    expect((idle as { report: NodeReport }).report.replicas, 'the held map itself').to.equal(now.replicas);
    expect((idle as { report: NodeReport }).report.seq).to.equal(5);
    expect(useReport(now, req({ report_seq: '5', report_base_seq: '3' })).kind, 'a delta on an older base').to.equal('unusable');
    expect(useReport(now, req({ report_seq: '3', replicas: [s(1, 3)] })).kind, 'a late full report').to.equal('unusable');
    expect(useReport(now, req({ report_seq: '4', report_base_seq: '3' })), 'the same report again').to.deep.include({ kind: 'view', how: 'same', applied: 4 });
    expect(useReport(now, req({ report_incarnation: '6', report_seq: '1', report_base_seq: '0' })), 'a new process').to.deep.include({ kind: 'view', how: 'full', applied: 1 });
    expect(useReport(now, req({ report_incarnation: '6', report_seq: '5', report_base_seq: '4' })).kind, 'a delta of another process').to.equal('unusable');
  });

  for (const [name, variant] of [
    ['a metasrv applying a delta to whatever view it holds', { ...correct, useReport: anyBase }],
    ['a metasrv taking a late full report over a newer view', { ...correct, useReport: lateFullWins }],
    ['a datanode diffing against the last report sent, not the acknowledged one', { ...correct, tracker: (inc: number) => new LastSentDiffTracker(inc) }],
    ['a datanode whose tracker takes an array refilled in place for the one it saw', { ...correct, tracker: (inc: number) => new TrustsAnyArray(inc, 25) }],
  ] as const) {
    it(`planted: ${name} fails the oracle`, () => {
      expect(() => runAll(variant)).to.throw(/seed \d+, step \d+/);
    });
  }
});
