// Planted bugs of a lost or restored metasrv catalog for the whole-datanode simulator
// (docs/simulation.md, "The bugs it re-finds"; the faults are test/sim/sim-catloss.ts): test-only
// subclasses of MetasrvCore and DatanodeCore that bring back the behaviour before the fixes of
// docs/correctness.md findings 2a, 2b, 2c (its peer-id half) and 2d, through protected seams of
// the cores. Nothing under src/ names them (test/raft/purity.test.ts keeps planted bugs out of src/).
import { silentLogger } from '../../src/common/logger.js';
import { DatanodeCore } from '../../src/datanode/datanode-core.js';
import { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { StateMachine } from '../../src/raft/state-machine.js';
import type { CatalogReconciliation, NodeAction, Reports } from '../../src/metasrv/reconcile.js';
import type { MetasrvCoreFactory } from './sim-metasrv.js';

export const CATLOSS_BUGS = ['destroy-unplaced', 'catalog-ignores-group', 'peer-ids-not-raised', 'no-reregister', 'drain-not-resumed'] as const;
export type CatlossBug = (typeof CATLOSS_BUGS)[number];

/**
 * Finding 2a (reconciliation before dded366): every replica a node reports that the catalog does
 * not place there (its region unknown, or another peer placed) is destroyed. A metasrv on an
 * empty catalog deletes every replica of every node that heartbeats.
 */
class DestroyUnplaced extends MetasrvCore {
  protected override nodeActionsOf(nodeId: number, reports: Reports): NodeAction[] {
    const opens = super.nodeActionsOf(nodeId, reports).filter((a) => 'open' in a);
    const destroys: NodeAction[] = [];
    for (const seen of reports.get(nodeId)?.values() ?? []) {
      const region = this.catalog.regions[seen.regionId];
      if (region?.replicas.some((p) => p.peerId === seen.peerId && p.nodeId === nodeId)) continue;
      destroys.push({ destroy: { regionId: seen.regionId, peerId: seen.peerId, why: 'not placed by the catalog' } });
    }
    return [...opens, ...destroys];
  }
}

/**
 * Finding 2b: the catalog never follows the group's membership, however much newer the group's
 * configuration (reconcile.ts R2 off): a catalog restored from before a repair keeps placing the
 * replaced peer and not its replacement.
 */
class CatalogIgnoresGroup extends MetasrvCore {
  protected override reconcileWithGroups(reports: Reports, busy: ReadonlySet<string>): CatalogReconciliation {
    return { ...super.reconcileWithGroups(reports, busy), adopt: [] };
  }
}

/**
 * Finding 2c, its peer-id half (before 89fd1cb/20da641's floors): the peer-id allocator is not
 * raised above the peer ids the datanodes report, so a lost or older catalog hands out ids that
 * are in use (a reused peer id is a member the group already counts, with a vote it forgot).
 */
class PeerIdsNotRaised extends MetasrvCore {
  protected override idFloorsOf(reports: Reports): { nextPeerId: number; nextTableId: number } {
    return { nextPeerId: 0, nextTableId: super.idFloorsOf(reports).nextTableId };
  }
}

/**
 * Finding Q1: a draining node the catalog places replicas on, with no drain-node running for it
 * (a catalog restored from a copy taken after its drain finished), is never drained again: it
 * stays half drained for good (metasrv-core.ts `resumeDrains` off).
 */
class DrainNotResumed extends MetasrvCore {
  protected override resumeDrains(): boolean {
    return false;
  }
}

/**
 * The datanode core of a node: finding 2d's (before dded366's re-registration, tested by
 * f4dfb79) with `no-reregister` — a datanode whose heartbeat is answered NOT_FOUND never
 * registers again — else the real one.
 */
export function catlossDatanodeCore<S extends StateMachine<R>, R>(bug: CatlossBug | undefined): typeof DatanodeCore<S, R> {
  if (bug !== 'no-reregister') return DatanodeCore;
  return class NeverReregisters extends DatanodeCore<S, R> {
    protected override noteHeartbeatRefusal(): void {}
  };
}

/** The metasrv core of a planted catalog-loss bug (undefined: the bug is the datanode's). */
export function catlossMetasrvCore(bug: CatlossBug): MetasrvCoreFactory | undefined {
  if (bug === 'no-reregister') return undefined;
  const Core = { 'destroy-unplaced': DestroyUnplaced, 'catalog-ignores-group': CatalogIgnoresGroup, 'peer-ids-not-raised': PeerIdsNotRaised, 'drain-not-resumed': DrainNotResumed }[bug];
  return (config, env) => new Core(config, silentLogger, 3, env);
}
