// A fake metasrv for procedure unit tests: the catalog in memory, saved and reloaded through the
// real catalog encoding (so a "crash" loses exactly what the metasrv would lose), datanode
// reports set by the test, instructions recorded instead of sent, and a hand-driven wall clock.
// No datanode, no network, no timer.
import { ManualClock } from '../../src/common/clock.js';
import { type CatalogState, type RegionDef, emptyCatalog, makeRegionId, replicaCountByNode } from '../../src/metasrv/catalog.js';
import { decodeCatalog, encodeCatalog, upgradeCatalog } from '../../src/metasrv/catalog-store.js';
import type { Instruction, ObservedReplica, ProcedureContext } from '../../src/metasrv/procedures/procedure.js';
import type { DataOf, ProcedureKind, ProcedureRecordOf } from '../../src/metasrv/procedures/record.js';
import { advance, newProcedure, runProcedures, runningProcedures } from '../../src/metasrv/procedures/runner.js';

export const REGION = makeRegionId(1024, 0);
export const START_MS = 1_700_000_000_000;

const silent = { info: () => {}, warn: () => {} };

export function replica(peerId: number, over: Partial<ObservedReplica> = {}): ObservedReplica {
  return {
    regionId: REGION,
    peerId,
    role: 'follower',
    term: 2,
    leaderNodeId: 2,
    appliedIndex: 50,
    commitIndex: 50,
    flushedIndex: 0,
    voters: [1, 2, 3],
    learners: [],
    health: 'ok',
    failure: '',
    confIndex: 3,
    ...over,
  };
}

export class FakeCluster {
  catalog: CatalogState;
  readonly clock = new ManualClock(START_MS);
  readonly alive = new Set<number>();
  /** When each node not alive was killed (the fake's "judged down since"); `repairAfterMs`: the metasrv's replica_repair_after_ms. */
  readonly killedAtMs = new Map<number, number>();
  repairAfterMs = 60_000;
  /** What each datanode last reported, per region. */
  readonly reports = new Map<number, Map<string, ObservedReplica>>();
  /** Instructions queued since the last crash, in order. */
  sent: { nodeId: number; instruction: Instruction }[] = [];
  /** The catalog as last saved (the bytes the metasrv's store would hold). */
  private saved: Uint8Array;
  /** Set to make every context call throw (an unexpected error inside a step). */
  broken: Error | undefined;
  readonly ctx: ProcedureContext;

  /**
   * Nodes 1..4 alive; region REGION with peers 1@1, 2@2 (leader, term 2), 3@3, each reporting;
   * node 4 alive, reporting nothing yet, free for a new replica.
   */
  constructor() {
    const catalog = emptyCatalog('fake');
    catalog.nextPeerId = 4;
    for (const nodeId of [1, 2, 3, 4]) {
      catalog.nodes[nodeId] = { nodeId, addr: `127.0.0.1:${7000 + nodeId}`, httpAddr: '', lastHeartbeatMs: 0, state: 'alive' };
      this.alive.add(nodeId);
      this.reports.set(nodeId, new Map());
    }
    catalog.regions[REGION] = {
      regionId: REGION,
      tableName: 't',
      regionNumber: 0,
      replicas: [
        { peerId: 1, nodeId: 1 },
        { peerId: 2, nodeId: 2 },
        { peerId: 3, nodeId: 3 },
      ],
      leaderNodeId: 2,
      confVersion: 1,
      bootstrapped: true,
    };
    this.catalog = catalog;
    this.report(1, replica(1));
    this.report(2, replica(2, { role: 'leader' }));
    this.report(3, replica(3));
    this.saved = encodeCatalog(catalog);
    this.ctx = this.context();
  }

  report(nodeId: number, seen: ObservedReplica): void {
    this.reports.get(nodeId)!.set(seen.regionId, seen);
  }

  unreport(nodeId: number, regionId = REGION): void {
    this.reports.get(nodeId)!.delete(regionId);
  }

  /** The node stops heartbeating: down, and its reports no longer count. */
  /**
   * The metasrv host's wall clock steps back `ms` (NTP): every later reading is `ms` lower, and
   * `clock.advance` still moves it on from there.
   */
  stepClockBack(ms: number): void {
    const read = this.clock.nowMs.bind(this.clock);
    this.clock.nowMs = () => read() - ms;
  }

  /**
   * Finding M33's scenario: procedure `id` steps, the wall clock steps back 10 minutes, it steps
   * again, then `afterMs` pass and it steps once more.
   */
  stepAcrossClockStepBack(id: string, afterMs: number): void {
    this.step(id);
    this.clockStepsBackThenWaits(id, afterMs);
  }

  /** The rest of M33's scenario after the first step: the clock steps back 10 minutes, a step, `afterMs`, a step. */
  clockStepsBackThenWaits(id: string, afterMs: number): void {
    this.stepClockBack(600_000);
    this.step(id);
    this.clock.advance(afterMs);
    this.step(id);
  }

  kill(nodeId: number): void {
    if (this.alive.has(nodeId)) this.killedAtMs.set(nodeId, this.clock.nowMs());
    this.alive.delete(nodeId);
  }

  region(regionId = REGION): RegionDef {
    return this.catalog.regions[regionId]!;
  }

  start<K extends ProcedureKind>(kind: K, data: DataOf<K>): ProcedureRecordOf<K> {
    const record = newProcedure(this.ctx, kind, data);
    this.save();
    return record;
  }

  /** The current (in-memory) record of a procedure. */
  procedure<K extends ProcedureKind>(id: string, kind: K): ProcedureRecordOf<K> {
    const p = this.catalog.procedures[id];
    if (!p || p.kind !== kind) throw new Error(`no ${kind} procedure ${id}`);
    return p as ProcedureRecordOf<K>;
  }

  /** Runs the procedure's current step once, as the metasrv's pass does, and saves if it changed anything. */
  step(id: string): boolean {
    const changed = advance(this.ctx, this.catalog.procedures[id]!, silent);
    if (changed) this.save();
    return changed;
  }

  /** Runs the step once but dies before saving: what the step changed in memory is lost. */
  stepThenCrash(id: string): void {
    advance(this.ctx, this.catalog.procedures[id]!, silent);
    this.crash();
  }

  /** One pass over every procedure (runner.ts), saved if anything changed. */
  pass(): boolean {
    const changed = runProcedures(this.ctx, silent);
    if (changed) this.save();
    return changed;
  }

  /** One pass without saving (the caller saves, or crashes). */
  passUnsaved(): void {
    runProcedures(this.ctx, silent);
  }

  save(): void {
    this.saved = encodeCatalog(this.catalog);
  }

  /** The metasrv restarts: the catalog is reloaded from its last save; queued instructions are gone. */
  crash(): void {
    this.catalog = upgradeCatalog(decodeCatalog(this.saved, 'in the fake store'));
    this.sent = [];
  }

  /** Instructions sent, without the node (for compact expectations). */
  sentKinds(): string[] {
    return this.sent.map((s) => `${Object.keys(s.instruction)[0]}@${s.nodeId}`);
  }

  private guard(): void {
    if (this.broken) throw this.broken;
  }

  private context(): ProcedureContext {
    const self = this;
    const isAlive = (nodeId: number) => {
      self.guard();
      return self.alive.has(nodeId);
    };
    const observed = (nodeId: number, regionId: string) => (isAlive(nodeId) ? self.reports.get(nodeId)?.get(regionId) : undefined);
    return {
      get catalog() {
        self.guard();
        return self.catalog;
      },
      clock: self.clock,
      isAlive,
      observed,
      // Past the metasrv's startup pause, every node heard from or judged down.
      firstReportAwaited: () => false,
      // As the metasrv (M39): a node down for less than replica_repair_after_ms holds a removal.
      removalAwaits: (nodeId) => self.catalog.nodes[nodeId] !== undefined && !self.alive.has(nodeId) && self.clock.nowMs() - (self.killedAtMs.get(nodeId) ?? Number.NEGATIVE_INFINITY) < self.repairAfterMs,
      downTooLong: (nodeId) => !self.alive.has(nodeId) && self.clock.nowMs() - (self.killedAtMs.get(nodeId) ?? Number.POSITIVE_INFINITY) >= self.repairAfterMs,
      // As the metasrv: the highest-term live replica reporting itself leader under its catalog peer id.
      leaderOf: (region) => {
        let best: { nodeId: number; replica: ObservedReplica } | undefined;
        for (const p of region.replicas) {
          const seen = observed(p.nodeId, region.regionId);
          if (seen?.role === 'leader' && seen.peerId === p.peerId && (!best || seen.term > best.replica.term)) best = { nodeId: p.nodeId, replica: seen };
        }
        return best;
      },
      send: (nodeId, instruction) => {
        self.guard();
        self.sent.push({ nodeId, instruction });
      },
      openInstruction: (region, peerId, bootstrap) => ({ region_id: region.regionId, self_peer_id: String(peerId), bootstrap }),
      pickNode: (exclude) => {
        self.guard();
        const load = replicaCountByNode(self.catalog);
        return Object.values(self.catalog.nodes)
          .filter((n) => n.state !== 'draining' && self.alive.has(n.nodeId) && !exclude.has(n.nodeId))
          .sort((a, b) => (load.get(a.nodeId) ?? 0) - (load.get(b.nodeId) ?? 0) || a.nodeId - b.nodeId)[0];
      },
      start: (kind, data) => newProcedure(self.ctx, kind, data),
      running: ((kind?: ProcedureKind) => runningProcedures(self.catalog, kind)) as ProcedureContext['running'],
    };
  }
}
