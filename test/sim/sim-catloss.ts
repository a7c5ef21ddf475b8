// The metasrv's catalog lost or restored, in the whole-datanode simulator (docs/simulation.md,
// "A lost or restored catalog"): the faults `metaloss` (the metasrv restarts on an empty data
// dir) and `metarestore` (it restarts from an earlier durable copy of its catalog, a restored
// backup), and what a correct metasrv must have rebuilt after them (`catalogLossUnsettled`).
//
// When the nemesis may inject them: only while the metasrv is up and every region is whole in
// its catalog (acting, nothing lost, no procedure on it, every placed peer running with exactly
// the placed voters: the rule `corrupt` and `wipe` wait for). So no repair is cut off half way
// and every region has its three replicas: a correct system must lose nothing. After a loss the
// catalog knows no region any more, so no destructive fault (`corrupt`, `wipe`, another loss) is
// injected again in that run (nothing could repair it); crashes, partitions and the metasrv's own
// crashes go on. A restored copy is one the metasrv saved while its catalog was quiet (no
// procedure running, no replica lost) with another placement than the current one (from before
// a repair since): a backup taken, or restored, mid-repair is another fault model (it leaves a
// repair stuck: docs/simulation.md). Repairs mostly end after the fault period, so `metarestore`
// also restores once after healing, when the metasrv has settled (`restoreAfterHealing`).
import { type CatalogState, REPLICATION_FACTOR } from '../../src/metasrv/catalog.js';
import { decodeCatalog } from '../../src/metasrv/catalog-store.js';
import { tableIdOfRegion } from '../../src/metasrv/reconcile.js';
import type { Rand } from '../../src/common/rand.js';
import { type SimMetasrv, placementOf } from './sim-metasrv.js';
import type { SimScheduler } from './sim-world.js';

export type CatalogLossFault = 'metaloss' | 'metarestore';
export const CATALOG_LOSS_FAULTS: readonly CatalogLossFault[] = ['metaloss', 'metarestore'];

/** What one node runs, as the checkers see it: its replicas' peer ids and memberships, by region. */
export interface HostedReplica {
  readonly regionId: string;
  readonly peerId: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  /** The log index of the membership it applied (a snapshot's index after a restart: never below). */
  readonly confIndex: number;
}

export class CatalogLossNemesis {
  losses = 0;
  restores = 0;
  /** Set at the first loss or restore: from then on a region may be unknown to the catalog. */
  happened = false;

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
    private readonly meta: SimMetasrv,
    private readonly kinds: ReadonlySet<CatalogLossFault>,
    /** Every region whole in the metasrv's catalog (the harness's `regionWhole` for each). */
    private readonly whole: () => boolean,
    private readonly record: (event: string) => void,
    /**
     * The metasrv's catalog was lost or restored from an older copy: the table ids that catalog
     * knows (none when lost). A table created after the copy is forgotten by it (its regions stay,
     * "(not in catalog)"): what the DDL client may then be answered NOT_FOUND for.
     */
    private readonly rolledBack: (knownTableIds: ReadonlySet<number>) => void = () => {},
  ) {
    if (kinds.has('metarestore')) meta.storage.past = [];
  }

  /** One nemesis step, from this fault's own stream: true when a loss or a restore was done. */
  step(): boolean {
    const roll = this.rand.int(100);
    const loss = roll < 5 && this.kinds.has('metaloss');
    const restore = roll >= 5 && roll < 25 && this.kinds.has('metarestore');
    if ((!loss && !restore) || !this.meta.up || !this.whole()) return false;
    const storage = this.meta.storage;
    if (loss) {
      this.meta.crash('its disk is lost');
      storage.lose();
      this.losses++;
      this.record('metasrv catalog lost (restarts on an empty data dir)');
      this.rolledBack(new Set());
    } else if (!this.restoreOlder()) {
      return false;
    }
    this.happened = true;
    const downMs = 50 + this.rand.int(1500);
    this.meta.restartAt = this.sched.now + downMs;
    this.sched.at(this.meta.restartAt, () => {
      if (!this.meta.up) this.meta.start();
    });
    return true;
  }

  /**
   * With `metarestore`, once the run has healed and the metasrv settled: the operator restores a
   * backup from before a later repair (most repairs end after the fault period, so the nemesis
   * rarely finds the cluster whole with an older placement to go back to). The metasrv restarts
   * at once on it; the harness waits for it to settle again. False when there is no such copy.
   */
  restoreAfterHealing(): boolean {
    if (!this.kinds.has('metarestore') || !this.meta.up || !this.restoreOlder()) return false;
    this.happened = true;
    this.meta.start();
    return true;
  }

  /** Crashes the metasrv and restores a copy from before a later change of the placement, if there is one. */
  private restoreOlder(): boolean {
    // The catalog it restores places replaced peers, and its allocators are behind.
    const now = this.meta.core?.catalog;
    const storage = this.meta.storage;
    const older = now ? (storage.past ?? []).filter((c) => c.placement !== placementOf(now)) : [];
    if (older.length === 0) return false;
    const index = this.rand.int(older.length);
    this.meta.crash('its catalog is restored from a backup');
    storage.restore(older[index]!.bytes);
    this.restores++;
    this.record(`metasrv catalog restored from the copy placing ${older[index]!.placement} (${index + 1} of ${older.length} older placements)`);
    this.rolledBack(new Set(Object.values(decodeCatalog(older[index]!.bytes, 'the restored copy').tables).map((t) => t.tableId)));
    return true;
  }
}

/**
 * After healing, with a lost or restored catalog: what the metasrv can rebuild, it must have
 * rebuilt — every running datanode registered again and heard from, the id allocators above every
 * id in use (a peer id a replica runs as or its group counts, a table id of a hosted region) —
 * and a region the catalog no longer knows is left as its group has it: every voter of one
 * membership of three voters still runs on some node, and every replica of it is one of those
 * voters and agrees on that membership (nothing destroyed, nothing half-changed). A node may host
 * none (with `drain` or `spare`, four nodes share three voters). Undefined when settled, else the checker and the detail.
 */
export function catalogLossUnsettled(
  catalog: CatalogState,
  nodeState: (nodeId: number) => string | undefined,
  hosted: ReadonlyMap<number, readonly HostedReplica[]>,
  regionIds: readonly string[],
  drained?: { readonly nodeId: number | undefined; heardFrom(nodeId: number): boolean },
): { invariant: string; detail: string } | undefined {
  for (const nodeId of hosted.keys()) {
    const state = nodeState(nodeId);
    if (state === 'draining' && drained !== undefined && nodeId === drained.nodeId) {
      // The node the `drain` fault's operator asked to drain (sim-drain.ts): a finished drain
      // leaves it draining — what the operator asked for, not a node the metasrv lost. It must
      // still be registered and heard from, and (no procedure runs: checked before) the catalog
      // must place nothing on it: a draining node that hosts placed replicas with no drain
      // running would stay half drained for good (finding Q1).
      if (!drained.heardFrom(nodeId)) return { invariant: 'liveness', detail: `n${nodeId} runs but the metasrv has not heard from it (draining)` };
      const placed = Object.values(catalog.regions).flatMap((r) => r.replicas.filter((p) => p.nodeId === nodeId).map((p) => `${r.regionId} peer ${p.peerId}`));
      if (placed.length > 0) return { invariant: 'liveness', detail: `n${nodeId} is draining and no drain runs, yet the catalog places ${placed.join(', ')} on it: a drain that never ends` };
      continue;
    }
    if (state !== 'alive') return { invariant: 'liveness', detail: `n${nodeId} runs but the metasrv has it ${state === undefined ? 'unregistered' : state} (a datanode re-registers with a metasrv that lost it)` };
  }
  let peer = 0;
  let table = -1;
  for (const replicas of hosted.values()) {
    for (const r of replicas) {
      peer = Math.max(peer, r.peerId, ...r.voters, ...r.learners);
      table = Math.max(table, tableIdOfRegion(r.regionId));
    }
  }
  if (catalog.nextPeerId <= peer || catalog.nextTableId <= table) {
    return {
      invariant: 'catalog ids',
      detail: `the allocators (next peer id ${catalog.nextPeerId}, next table id ${catalog.nextTableId}) are not above the ids in use (peer ${peer}, table ${table}): a new peer or table would reuse one`,
    };
  }
  for (const regionId of regionIds) {
    if (catalog.regions[regionId]) continue;
    const unknown = (detail: string) => ({ invariant: 'catalog placement', detail: `${regionId} (unknown to the lost or restored catalog): ${detail}` });
    const members = new Set<string>();
    /** Peer → the node running it. */
    const running = new Map<number, number>();
    // A replica the group's newest membership (that of the highest conf index) does not name is no
    // member: nothing deletes it, the region being unknown (reconcile.ts R1) — a removed peer cut
    // off before it learned its removal (engine seed 2221 of the wide mix: n2's peer 2 still with
    // voters 1,2,3,10 while the group had 1,3,10), or a repair's new peer never added.
    let newest: HostedReplica | undefined;
    for (const replicas of hosted.values()) {
      const r = replicas.find((x) => x.regionId === regionId);
      if (r && (newest === undefined || r.confIndex > newest.confIndex)) newest = r;
    }
    const newestMembers = new Set([...(newest?.voters ?? []), ...(newest?.learners ?? [])]);
    for (const [nodeId, replicas] of hosted) {
      const r = replicas.find((x) => x.regionId === regionId);
      // Not every node hosts every region: with `drain` (or `spare`) four nodes share three
      // voters, and a drained node hosts none. Every voter running somewhere is checked below.
      if (!r || !newestMembers.has(r.peerId)) continue;
      const voters = [...r.voters].sort((a, b) => a - b);
      if (!voters.includes(r.peerId) || voters.length !== REPLICATION_FACTOR || r.learners.length > 0) {
        return unknown(`n${nodeId}'s peer ${r.peerId} has voters ${voters.join(',')} learners ${r.learners.join(',') || 'none'}`);
      }
      members.add(voters.join());
      running.set(r.peerId, nodeId);
    }
    if (members.size > 1) return { invariant: 'catalog placement', detail: `${regionId} (unknown to the catalog): its replicas disagree on the membership (${[...members].join(' / ')})` };
    const [membership] = members;
    if (membership === undefined) return unknown('no node runs a replica of it (destroyed?)');
    const gone = membership.split(',').map(Number).filter((peerId) => !running.has(peerId));
    if (gone.length > 0) return unknown(`peer(s) ${gone.join(',')} of its membership ${membership} run on no node (destroyed?)`);
  }
  return undefined;
}
