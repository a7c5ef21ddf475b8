// The `drain` fault of the whole-datanode simulator (docs/simulation.md, "Removing a live
// replica (drain)"): an operator asks the real metasrv to drain a datanode that stays up, so the
// metasrv's own procedures (drain-node, then one repair-replica per region on it) move every
// replica off it to the fourth datanode — add a learner there, promote it, remove the old peer —
// while the old replica keeps running. That is the path on which a live, healthy replica applies
// its own removal (R16, "The removed replica"), and on which the metasrv must hold its deletion
// while a remaining voter may still need its vote (reconcile.ts `removalHold`, "The 4 → 3
// window"). Sometimes, right after the leader was told to remove the old peer, the fault hands
// the region's leadership to that peer, so that a leader applies its own removal.
//
// Nothing here draws randomness or schedules an event unless the fault is on: the harness builds
// a DrainNemesis only then, with its own stream (forked after every other one). The counters
// read the processes without acting on them.
import type { Rand } from '../../src/common/rand.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { HeartbeatResponse__Output } from '../../src/rpc/generated/index.js';
import type { SimMetasrv } from './sim-metasrv.js';
import { Incarnation, type SimScheduler } from './sim-world.js';

export const DRAIN_FAULTS = ['drain'] as const;
export type DrainFault = (typeof DRAIN_FAULTS)[number];

/** The operator's process (its calls to the metasrv die with nothing: it never crashes). */
const OPERATOR_NODE_ID = 2_000;
/** How long the operator waits for StartProcedure's answer (virtual ms) before trying again later. */
const OPERATOR_TIMEOUT_MS = 1_000;
/** Chance per nemesis step that the operator asks for the drain (while none was accepted). */
const DRAIN_CHANCE = 0.2;
/** Chance that, right after the metasrv told a leader to remove a peer of the drained node, the leadership goes to that peer. */
const LEAD_OLD_CHANCE = 0.3;

export interface DrainStats {
  /** StartProcedure(drain-node) calls the operator made, and those the metasrv accepted. */
  drainsAsked: number;
  drainsStarted: number;
  /** Leaderships handed to the old peer right after its removal was proposed. */
  leadOldTransfers: number;
  /** Replicas on a live node seen having applied their own removal (`removed`), and of them those leading at the probe before. */
  removedSeen: number;
  removedWhileLeader: number;
  /** Removed replicas whose deletion heartbeat reconciliation held at least once (`removalHold`: "kept while"), and the heartbeats that reported a hold. */
  removalHolds: number;
  holdBeats: number;
  /** repair-replica cleanups that left the old replica to reconciliation (a voter might still need its vote). */
  cleanupHolds: number;
  /** Deletions (close_region with destroy) delivered to a node for a replica that had applied its own removal, and for one that had not. */
  removedDeleted: number;
  deletedUnaware: number;
}

/** What the fault reads of a datanode's region server, and the one thing it does (a leadership transfer). */
export interface DrainedServer {
  hostedReplica(regionId: string): { readonly selfPeerId: number; readonly removed: boolean; isLeader(): boolean } | undefined;
  transferLeader(regionId: string, toPeerId: number): void;
}

export interface DrainHost {
  readonly sched: SimScheduler;
  readonly meta: SimMetasrv;
  /** The datanodes that may be drained (those the initial placement uses). */
  drainable(): number[];
  /** The running region server of a node, if it is up. */
  server(nodeId: number): DrainedServer | undefined;
  /** The node leading a region now, if any. */
  leaderOf(regionId: string): number | undefined;
  record(event: string): void;
}

export class DrainNemesis {
  readonly stats: DrainStats = {
    drainsAsked: 0,
    drainsStarted: 0,
    leadOldTransfers: 0,
    removedSeen: 0,
    removedWhileLeader: 0,
    removalHolds: 0,
    holdBeats: 0,
    cleanupHolds: 0,
    removedDeleted: 0,
    deletedUnaware: 0,
  };
  /** The node drained (once accepted), or the one asked for while the call is in flight. */
  drained: number | undefined;
  private asking = false;
  private readonly operator = new Incarnation(OPERATOR_NODE_ID, 1);
  /** Replicas (node incarnation/region/peer) seen removed, and those seen leading at the last probe. */
  private readonly removedKeys = new Set<string>();
  private leadingKeys = new Set<string>();
  private readonly heldKeys = new Set<string>();
  private readonly cleanupHoldIds = new Set<string>();

  constructor(
    private readonly host: DrainHost,
    private readonly rand: Rand,
  ) {}

  /** One nemesis step of the fault; true when it did something (the step is used up). */
  step(): boolean {
    const { meta } = this.host;
    const core = meta.core;
    if (this.drained === undefined) {
      if (this.asking || !core || !this.rand.chance(DRAIN_CHANCE)) return false;
      const candidates = this.host.drainable().filter((id) => this.host.server(id) !== undefined);
      if (candidates.length === 0) return false;
      this.ask(this.rand.pick(candidates));
      return true;
    }
    return false;
  }

  /** The operator's `regiondb drain` (StartProcedure kind drain-node) to the metasrv. */
  private ask(nodeId: number): void {
    this.asking = true;
    this.stats.drainsAsked++;
    this.host.record(`drain n${nodeId} asked`);
    this.host.meta
      .call(this.operator, OPERATOR_TIMEOUT_MS, (core) => core.startProcedureCall({ kind: 'drain-node', node_id: String(nodeId) } as never))
      .then(
        (answer) => {
          this.asking = false;
          this.drained = nodeId;
          this.stats.drainsStarted++;
          this.host.record(`drain n${nodeId} started (${answer.id})`);
        },
        (err: unknown) => {
          this.asking = false;
          this.host.record(`drain n${nodeId} refused: ${String(err)}`);
        },
      );
  }

  /**
   * Every probe of the harness (no event, no randomness): replicas that applied their own
   * removal, and whether they led at the probe before.
   */
  probe(nodes: Iterable<{ id: number; incarnation: Incarnation }>, regionIds: readonly string[]): void {
    const leading = new Set<string>();
    for (const node of nodes) {
      const server = this.host.server(node.id);
      if (!server) continue;
      for (const regionId of regionIds) {
        const replica = server.hostedReplica(regionId);
        if (!replica) continue;
        const key = `${node.incarnation.number}/${regionId}/${replica.selfPeerId}`;
        if (replica.removed) {
          if (!this.removedKeys.has(key)) {
            this.removedKeys.add(key);
            this.stats.removedSeen++;
            if (this.leadingKeys.has(key) || replica.isLeader()) this.stats.removedWhileLeader++;
            this.host.record(`n${node.id} ${regionId}: peer ${replica.selfPeerId} applied its own removal${this.leadingKeys.has(key) ? ' (leading)' : ''}`);
          }
        } else if (replica.isLeader()) leading.add(key);
      }
    }
    this.leadingKeys = leading;
  }

  /** After the metasrv took a heartbeat in: the removal holds its reconciliation reported (its status problems). */
  afterHeartbeat(core: MetasrvCore): void {
    void core.listNodes().then((status) => {
      let held = false;
      for (const info of status.region_infos ?? []) {
        for (const problem of info.problems ?? []) {
          const m = /^peer (\d+) on node (\d+) reports a membership without itself.*; kept while /.exec(problem);
          if (!m) continue;
          held = true;
          const key = `${info.route?.region_id}/${m[1]}`;
          if (!this.heldKeys.has(key)) {
            this.heldKeys.add(key);
            this.stats.removalHolds++;
          }
        }
      }
      if (held) this.stats.holdBeats++;
    }, () => {}); // not acting (yet, or any more): no status
  }

  /** After each metasrv tick: repair-replica cleanups that left the old replica to reconciliation. */
  afterTick(core: MetasrvCore): void {
    for (const p of Object.values(core.catalog?.procedures ?? {})) {
      if (p.kind !== 'repair-replica' || p.status !== 'done' || this.cleanupHoldIds.has(p.id)) continue;
      if (p.notes.some((n) => n.includes(' is kept while '))) {
        this.cleanupHoldIds.add(p.id);
        this.stats.cleanupHolds++;
      }
    }
  }

  /**
   * A heartbeat answer delivered to `nodeId`: its deletions of replicas, removed or not; and, for
   * a removal of a peer of the drained node (the move's `remove-old`), sometimes a leadership
   * transfer to that very peer 2–6 ms later — once the leader appended the removal, before it
   * commits — so that the old peer, elected with the removal in its log, commits and applies its
   * own removal as leader.
   */
  noteAnswer(nodeId: number, answer: HeartbeatResponse__Output): void {
    const server = this.host.server(nodeId);
    for (const ins of answer.instructions) {
      const change = ins.change_peer;
      if (change?.change === 'remove' && change.peer && Number(change.peer.node_id) === this.drained && this.rand.chance(LEAD_OLD_CHANCE)) {
        const regionId = change.region_id;
        const oldPeerId = Number(change.peer.peer_id);
        this.host.sched.at(this.host.sched.now + 2 + this.rand.int(5), () => {
          const leader = this.host.leaderOf(regionId);
          if (leader === undefined || leader === this.drained) return;
          this.stats.leadOldTransfers++;
          this.host.record(`drain: transfer-leader ${regionId} n${leader}->peer ${oldPeerId} (its removal was just proposed)`);
          try {
            this.host.server(leader)?.transferLeader(regionId, oldPeerId);
          } catch {
            // not leading any more, or the peer is unknown to it
          }
        });
      }
      const close = ins.close_region;
      if (!close?.destroy) continue;
      const replica = server?.hostedReplica(close.region_id);
      if (!replica || String(replica.selfPeerId) !== close.peer_id) continue;
      if (replica.removed) this.stats.removedDeleted++;
      else this.stats.deletedUnaware++;
    }
  }
}
