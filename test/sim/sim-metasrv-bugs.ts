// Planted metasrv bugs for the whole-datanode simulator (docs/simulation.md, "The bugs it
// re-finds"): test-only subclasses of MetasrvCore that bring back the behaviour before a fix of
// docs/correctness.md, through the core's protected seams. Nothing under src/ names them
// (test/raft/purity.test.ts keeps planted bugs out of src/).
import { silentLogger } from '../../src/common/logger.js';
import { type NodeDef, regionWithId } from '../../src/metasrv/catalog.js';
import { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { ProcedureContext } from '../../src/metasrv/procedures/procedure.js';
import { advance } from '../../src/metasrv/procedures/runner.js';
import { type NodeAction, type Reports, groupOf } from '../../src/metasrv/reconcile.js';
import type { MetasrvCoreFactory } from './sim-metasrv.js';
import { SPURIOUS_METASRV_BUGS, isSpuriousMetasrvBug, spuriousMetasrvCore } from './sim-spurious-bugs.js';

export const METASRV_BUGS = ['store-ids-ignored', 'failover-elsewhere', 'saves-poisoned', 'table-ids-from-reports-only', 'drop-tombstones-forgotten', 'drop-without-fence', 'drop-records-ignored', 'removal-hold-ignored', 'balance-placement-dropped', ...SPURIOUS_METASRV_BUGS] as const;
export type MetasrvBug = (typeof METASRV_BUGS)[number];

/**
 * Finding 1: before store ids, the metasrv could not tell a node back on an empty data dir from
 * a restart; it kept its replicas and, at registration, sent their old peer ids to open — empty,
 * with no memory of their votes.
 */
class StoreIdsIgnored extends MetasrvCore {
  protected override noteStore(node: NodeDef, storeId: string): boolean {
    if (storeId === '' || node.storeId === storeId) return false;
    node.storeId = storeId;
    return true;
  }
}

/**
 * Finding M8: region-failover waited for a live leader on a node other than the failed one, so a
 * failed node back in time that led the region again was never accepted.
 */
class FailoverElsewhere extends MetasrvCore {
  protected override runProcedurePass(ctx: ProcedureContext): boolean {
    let changed = false;
    // The runner's pass without its trimming of old finished records (a run keeps few of them).
    for (const record of Object.values(ctx.catalog.procedures)) {
      if (record.kind !== 'region-failover') {
        changed = advance(ctx, record, silentLogger) || changed;
        continue;
      }
      const failed = record.data.nodeId;
      const elsewhere: ProcedureContext = {
        ...ctx,
        leaderOf: (region) => {
          const leader = ctx.leaderOf(region);
          return leader && leader.nodeId !== failed ? leader : undefined;
        },
      };
      changed = advance(elsewhere, record, silentLogger) || changed;
    }
    return changed;
  }
}

/**
 * Finding M5 (its save chain): saves were chained on one promise, so after one failed every
 * later one failed with the same error, forever — the metasrv could not write (and so, since
 * M5's fix, not act) until it was restarted, even with its disk fine again.
 */
class SavesPoisoned extends MetasrvCore {
  private poisoned: unknown;
  protected override async writeCatalog(): Promise<void> {
    if (this.poisoned !== undefined) throw this.poisoned;
    try {
      await super.writeCatalog();
    } catch (err) {
      this.poisoned = err;
      throw err;
    }
  }
}

/**
 * Finding DT1 (docs/correctness.md): DropTable answered as soon as the catalog forgot the table,
 * fencing nothing; the dropped table's replicas kept acknowledging writes until a heartbeat
 * closed them (and then lost them with the table).
 */
class DropWithoutFence extends MetasrvCore {
  protected override async fenceRegions(): Promise<string[]> {
    return [];
  }
}

/**
 * Finding DT2 (docs/correctness.md): a catalog restored from a copy older than a DropTable kept
 * the table — the drop records in the object store are read (the table id floor, the gate on
 * bootstraps) but no table is dropped from them — so its regions are opened again, and one the
 * copy has not `bootstrapped` is started afresh as a new, empty raft group.
 */
class DropRecordsIgnored extends MetasrvCore {
  protected override dropRecordedTables(): boolean {
    return false;
  }
}

/**
 * Finding 2c (its table-id half): before dded366 an empty (lost) catalog's table id allocator
 * was raised only above the tables the datanodes report, not above those with objects in the
 * object store: a table re-created after the loss could get a dropped table's id, so its
 * regions' ids named that table's SSTs and manifests.
 */
class TableIdsFromReportsOnly extends MetasrvCore {
  protected override async raiseTableIdAboveObjectStore(): Promise<void> {}
}

/**
 * Not a historical bug, a weakening of R1 (src/metasrv/reconcile.ts) for the DDL checkers: the
 * catalog keeps no tombstones of dropped tables, so their replicas are regions it does not know
 * and are left alone — a dropped table's replicas keep running and accepting writes.
 */
class DropTombstonesForgotten extends MetasrvCore {
  protected override async writeCatalog(): Promise<void> {
    delete this.catalog.droppedRegions;
    await super.writeCatalog();
  }
}

/**
 * The 4 → 3 window left open (docs/raft-rules.md R16; before r16w): heartbeat reconciliation
 * deletes a replica the catalog no longer places as soon as the leader's membership, at a
 * configuration at least as new as the replica's own, lacks it — `removalHold` always false, so a
 * remaining voter that has not applied the removal yet may lose the vote it still needs.
 * (repair-replica's own cleanup still holds; reconciliation then deletes at the old node's next
 * heartbeat.)
 */
class RemovalHoldIgnored extends MetasrvCore {
  protected override nodeActionsOf(nodeId: number, reports: Reports): NodeAction[] {
    const actions = super.nodeActionsOf(nodeId, reports);
    for (const seen of reports.get(nodeId)?.values() ?? []) {
      if (actions.some((a) => 'destroy' in a && a.destroy.regionId === seen.regionId)) continue;
      const region = regionWithId(this.catalog, seen.regionId);
      if (!region || region.replicas.some((p) => p.peerId === seen.peerId && p.nodeId === nodeId)) continue;
      const group = groupOf(seen.regionId, reports);
      if (!group || group.voters.includes(seen.peerId) || group.learners.includes(seen.peerId) || group.confIndex < seen.confIndex) continue;
      actions.push({ destroy: { regionId: seen.regionId, peerId: seen.peerId, why: `planted removal-hold-ignored: the leader on node ${group.leaderNodeId} no longer counts peer ${seen.peerId}` } });
    }
    return actions;
  }
}

/**
 * Not a historical bug, a balancer that stops short of the placement for the `leader placement`
 * checker (FAULTS=balance): balance-leaders records run without their placement — as a record
 * decoder that drops the fields a later version added would leave them — so a procedure the
 * periodic check started for placement "table" evens the leader counts instead ("spread") and
 * ends "balanced" with a table's leaders on several nodes; the next check starts another.
 */
class BalancePlacementDropped extends MetasrvCore {
  protected override runProcedurePass(ctx: ProcedureContext): boolean {
    for (const record of Object.values(ctx.catalog.procedures)) {
      if (record.kind !== 'balance-leaders' || record.status !== 'running') continue;
      delete record.data.placement;
      delete record.data.packRegions;
    }
    return super.runProcedurePass(ctx);
  }
}

export function plantedMetasrvCore(bug: MetasrvBug): MetasrvCoreFactory {
  if (isSpuriousMetasrvBug(bug)) return spuriousMetasrvCore(bug);
  const Core = {
    'store-ids-ignored': StoreIdsIgnored,
    'failover-elsewhere': FailoverElsewhere,
    'saves-poisoned': SavesPoisoned,
    'table-ids-from-reports-only': TableIdsFromReportsOnly,
    'drop-tombstones-forgotten': DropTombstonesForgotten,
    'drop-without-fence': DropWithoutFence,
    'drop-records-ignored': DropRecordsIgnored,
    'removal-hold-ignored': RemovalHoldIgnored,
    'balance-placement-dropped': BalancePlacementDropped,
  }[bug];
  return (config, env) => new Core(config, silentLogger, 3, env);
}
