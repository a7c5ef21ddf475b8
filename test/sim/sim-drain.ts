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
import { ConfChangeType, decodeConfChange } from '../../src/raft/confchange.js';
import { EntryType } from '../../src/raft/types.js';
import type { RaftEnvelope } from '../../src/replication/transport.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { HeartbeatResponse__Output } from '../../src/rpc/generated/index.js';
import type { SimMetasrv } from './sim-metasrv.js';
import { Incarnation, type SimScheduler } from './sim-world.js';

export const DRAIN_FAULTS = ['drain'] as const;
export type DrainFault = (typeof DRAIN_FAULTS)[number];

/** With `drain`, the faults run this long (virtual ms; 4 s otherwise): a drain takes seconds, its removals should meet them. */
export const DRAIN_FAULT_MS = 20_000;

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
  /** Of those, the ones seen removed again by a later process of their node (restarted before their deletion: finding E3). */
  removedReopened: number;
  /** Removed replicas whose deletion heartbeat reconciliation held at least once (`removalHold`: "kept while"), and the heartbeats that reported a hold. */
  removalHolds: number;
  holdBeats: number;
  /** repair-replica cleanups that left the old replica to reconciliation (a voter might still need its vote). */
  cleanupHolds: number;
  /** Deletions (close_region with destroy) delivered to a node for a replica that had applied its own removal, and for one that had not. */
  removedDeleted: number;
  deletedUnaware: number;
  /** Leaders cut off right after applying a live replica's removal, then crashed (the 4 → 3 window's trigger). */
  crashesAfterRemoval: number;
  /** Replicas answering raft seen gone from their running node (deleted), and the probes where the `removal availability` checker's premise held. */
  deletionsSeen: number;
  availabilityProbes: number;
}

/** What the fault reads of a datanode's region server, and the one thing it does (a leadership transfer). */
export interface DrainedServer {
  hostedReplica(regionId: string): DrainedReplica | undefined;
  /** The replica taking the region's raft messages (running, or removed and not deleted yet), unless it failed. */
  raftReplica(regionId: string): DrainedReplica | undefined;
  transferLeader(regionId: string, toPeerId: number): void;
}

export interface DrainedReplica {
  readonly selfPeerId: number;
  readonly removed: boolean;
  isLeader(): boolean;
  readonly raft: { confState(): { voters: readonly number[]; learners: readonly number[] }; status(): { lastIndex: number }; readonly log: { lastTerm(): number } };
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
  /** Whether the nemesis still runs (before healing). */
  faultsOn(): boolean;
  /** Whether the raft network has no cut link now. */
  connected(): boolean;
  /** When the network last lost a message of the region at random (undefined: never). */
  lastLossAt(regionId: string): number | undefined;
  /** Whether every datanode is up. */
  allUp(): boolean;
  /** Cuts `nodeId` off from every other datanode; the function given back heals those cuts (if still there). */
  isolate(nodeId: number): () => void;
  /** Crashes a datanode, down at least `downMs`. */
  crash(nodeId: number, why: string, downMs: number): void;
  flag(invariant: string, detail: string): void;
}

/** At the removal's commit: chance that its leader is cut off before telling the others, and crashed soon after (the 4 → 3 window). */
const CRASH_AFTER_REMOVAL_CHANCE = 0.7;
/** That crash comes this long after the cut (virtual ms): after the leader's next metasrv heartbeat (50 ms) reported the removal. */
const CRASH_AFTER_MS_MIN = 60;
const CRASH_AFTER_MS_MAX = 100;
/** And the leader stays down this long: longer than the checker's bound. */
const CRASH_DOWN_MS_MIN = 1_500;
const CRASH_DOWN_MS_MAX = 2_500;
/**
 * The `removal availability` bound (virtual ms): 5–10 election timeouts of the simulator's raft
 * tuning (10 ms ticks, 10–20 ticks), several times the quiescence orphan bound.
 */
export const REMOVAL_AVAILABILITY_MS = 1_000;

export class DrainNemesis {
  readonly stats: DrainStats = {
    drainsAsked: 0,
    drainsStarted: 0,
    leadOldTransfers: 0,
    removedSeen: 0,
    removedWhileLeader: 0,
    removedReopened: 0,
    removalHolds: 0,
    holdBeats: 0,
    cleanupHolds: 0,
    removedDeleted: 0,
    deletedUnaware: 0,
    crashesAfterRemoval: 0,
    deletionsSeen: 0,
    availabilityProbes: 0,
  };
  /** Region → peers whose replica was deleted while it answered raft. */
  private readonly deletedPeers = new Map<string, Set<number>>();
  /** `incarnation/region/peer` of every replica a process began to close with destroy (a deletion; the `close` fault's closes are not). */
  private readonly destroyCalls = new Set<string>();
  /** Node → region → (incarnation, peer) of the replica answering raft there at the last probe. */
  private readonly lastHosted = new Map<number, Map<string, { inc: number; peerId: number }>>();
  /** Region/old peer → the index of its removal (from the leader's appends). */
  private readonly removalIndex = new Map<string, number>();
  /** Region/old peer pairs whose removal's commit was seen sent (the crash is decided once per pair). */
  private readonly removalCommits = new Set<string>();
  /** Region → since when the `removal availability` premise has held without a leader. */
  private readonly leaderlessSince = new Map<string, number>();
  /**
   * The node the operator drains: chosen at the first ask and never another (a call that timed
   * out may still have started the drain; a second drained node would leave the moves no target).
   */
  drained: number | undefined;
  private asking = false;
  private started = false;
  private readonly operator = new Incarnation(OPERATOR_NODE_ID, 1);
  /** Replicas (node incarnation/region/peer) seen removed, and those seen leading at the last probe. */
  private readonly removedKeys = new Set<string>();
  /** `node/region/peer` of every replica seen removed, by any process of its node. */
  private readonly removedPeers = new Set<string>();
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
    if (this.started || this.asking || !core || !this.rand.chance(DRAIN_CHANCE)) return false;
    if (core.catalog?.nodes[this.drained ?? -1]?.state === 'draining') {
      this.started = true; // an earlier call's answer was lost, but it started the drain
      return false;
    }
    const candidates = this.drained !== undefined ? [this.drained] : this.host.drainable().filter((id) => this.host.server(id) !== undefined);
    if (candidates.length === 0) return false;
    this.ask(this.rand.pick(candidates));
    return true;
  }

  /** The operator's `regiondb drain` (StartProcedure kind drain-node) to the metasrv. */
  private ask(nodeId: number): void {
    this.asking = true;
    this.drained = nodeId;
    this.stats.drainsAsked++;
    this.host.record(`drain n${nodeId} asked`);
    this.host.meta
      .call(this.operator, OPERATOR_TIMEOUT_MS, (core) => core.startProcedureCall({ kind: 'drain-node', node_id: String(nodeId) } as never))
      .then(
        (answer) => {
          this.asking = false;
          this.started = true;
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
  probe(nodeList: Iterable<{ id: number; incarnation: Incarnation }>, regionIds: readonly string[]): void {
    const nodes = [...nodeList];
    this.noteDeletions(nodes, regionIds);
    this.checkAvailability(nodes, regionIds);
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
            const peerKey = `${node.id}/${regionId}/${replica.selfPeerId}`;
            if (this.removedPeers.has(peerKey)) this.stats.removedReopened++;
            this.removedPeers.add(peerKey);
            if (this.leadingKeys.has(key) || replica.isLeader()) this.stats.removedWhileLeader++;
            this.host.record(`n${node.id} ${regionId}: peer ${replica.selfPeerId} applied its own removal${this.leadingKeys.has(key) ? ' (leading)' : ''}`);
          }
        } else if (replica.isLeader()) leading.add(key);
      }
    }
    this.leadingKeys = leading;
  }

  /**
   * A process (incarnation number) began to close `regionId`'s replica `peerId` with destroy
   * (the harness's wrapper of RegionServer.close): the only close that deletes it.
   */
  noteDestroy(incarnation: number, regionId: string, peerId: number): void {
    this.destroyCalls.add(`${incarnation}/${regionId}/${peerId}`);
  }

  /**
   * Replicas answering raft at the last probe that are gone from the same process now, closed
   * with destroy: deleted. One closed without destroy (the `close` fault) keeps its log and
   * votes again once reopened: while closed it just does not answer raft, like a down node's.
   */
  private noteDeletions(nodes: { id: number; incarnation: Incarnation }[], regionIds: readonly string[]): void {
    for (const node of nodes) {
      const server = this.host.server(node.id);
      const last = this.lastHosted.get(node.id) ?? new Map<string, { inc: number; peerId: number }>();
      const now = new Map<string, { inc: number; peerId: number }>();
      for (const regionId of regionIds) {
        const replica = server?.raftReplica(regionId);
        if (replica) now.set(regionId, { inc: node.incarnation.number, peerId: replica.selfPeerId });
        const before = last.get(regionId);
        if (!server || !before || before.inc !== node.incarnation.number) continue;
        if (server.hostedReplica(regionId)?.selfPeerId === before.peerId) continue; // still there (maybe failed: not a deletion)
        if (!this.destroyCalls.has(`${before.inc}/${regionId}/${before.peerId}`)) continue; // closed, not deleted
        const peers = this.deletedPeers.get(regionId) ?? new Set<number>();
        peers.add(before.peerId);
        this.deletedPeers.set(regionId, peers);
        this.stats.deletionsSeen++;
        this.host.record(`n${node.id} ${regionId}: peer ${before.peerId} deleted`);
      }
      this.lastHosted.set(node.id, now);
    }
  }

  /**
   * The 4 → 3 window's trigger, on every raft message the network delivers (true: drop it). It
   * learns the index of the removal of the drained node's replica from the leader's appends; at
   * the first message of that leader telling a remaining voter (not the removed one) that the
   * removal committed, with CRASH_AFTER_REMOVAL_CHANCE and while the faults run, the leader is cut
   * off from every node at once (that message is lost with the rest), so no remaining voter
   * learns of the commit from it, and it is crashed 60–100 ms later — after its next heartbeat
   * reported the removal to the metasrv — for 1.5–2.5 s; its cuts heal at the crash.
   */
  intercept(from: number, to: number, envelope: RaftEnvelope): boolean {
    const drained = this.drained;
    if (drained === undefined) return false;
    const regionId = envelope.regionId;
    const m = envelope.message;
    const oldPeerId = this.host.server(drained)?.hostedReplica(regionId)?.selfPeerId;
    if (oldPeerId === undefined || from === drained) return false;
    const key = `${regionId}/${oldPeerId}`;
    for (const e of m.entries) {
      if (e.type !== EntryType.ConfChange) continue;
      const cc = decodeConfChange(e.data);
      if (cc.type === ConfChangeType.RemoveNode && cc.nodeId === oldPeerId) this.removalIndex.set(key, e.index);
    }
    const index = this.removalIndex.get(key);
    if (index === undefined || to === drained || m.commit < index || this.removalCommits.has(key)) return false;
    this.removalCommits.add(key);
    if (!this.host.faultsOn() || !this.rand.chance(CRASH_AFTER_REMOVAL_CHANCE)) return false;
    this.stats.crashesAfterRemoval++;
    const heal = this.host.isolate(from);
    const leaderProcess = this.host.server(from);
    const afterMs = CRASH_AFTER_MS_MIN + this.rand.int(CRASH_AFTER_MS_MAX - CRASH_AFTER_MS_MIN + 1);
    const downMs = CRASH_DOWN_MS_MIN + this.rand.int(CRASH_DOWN_MS_MAX - CRASH_DOWN_MS_MIN + 1);
    this.host.record(`drain: n${from} commits the removal of peer ${oldPeerId} of ${regionId} (index ${index}): cut off, crash in ${afterMs} ms for ${downMs} ms`);
    this.host.sched.at(this.host.sched.now + afterMs, () => {
      heal();
      // The same process, and not after healing (nothing crashes then).
      if (this.host.faultsOn() && this.host.server(from) === leaderProcess) this.host.crash(from, `drain: leader of ${regionId} after the removal of peer ${oldPeerId}`, downMs);
    });
    return true;
  }

  /**
   * The `removal availability` checker: a region must not stay without a leader for
   * REMOVAL_AVAILABILITY_MS while the network is whole and some replica M could win an election
   * but for the votes of replicas deleted meanwhile: M answers raft on a running node (not paused), is a voter
   * of its own configuration and not removed, and a majority of its voters are replicas answering
   * raft on running nodes whose logs are not ahead of M's (raft's vote rule; a removed replica
   * votes too, R16) or peers whose replica was deleted while it answered raft. Without the
   * deleted peers that is raft's own liveness (an electable candidate is elected within a few
   * election timeouts); with them it says that deleting a replica never cost its region the
   * vote that would elect a leader — what `removalHold` exists for (docs/raft-rules.md R16, "The
   * 4 → 3 window").
   */
  private checkAvailability(nodes: { id: number; incarnation: Incarnation }[], regionIds: readonly string[]): void {
    const now = this.host.sched.now;
    for (const regionId of regionIds) {
      const live: { nodeId: number; peerId: number; replica: DrainedReplica; last: [number, number] }[] = [];
      let led = false;
      for (const node of nodes) {
        // A paused process (the `pause` fault) neither campaigns nor votes until it runs again.
        if (node.incarnation.pausedUntil > now) continue;
        const replica = this.host.server(node.id)?.raftReplica(regionId);
        if (!replica) continue;
        if (replica.isLeader() && !replica.removed) led = true;
        live.push({ nodeId: node.id, peerId: replica.selfPeerId, replica, last: [replica.raft.log.lastTerm(), replica.raft.status().lastIndex] });
      }
      const deleted = this.deletedPeers.get(regionId) ?? new Set<number>();
      const notAhead = (a: [number, number], b: [number, number]) => a[0] < b[0] || (a[0] === b[0] && a[1] <= b[1]);
      const electable = live.find((m) => {
        if (m.replica.removed) return false;
        const voters = m.replica.raft.confState().voters;
        if (!voters.includes(m.peerId)) return false;
        const votes = voters.filter((v) => deleted.has(v) || live.some((r) => r.peerId === v && notAhead(r.last, m.last))).length;
        return votes * 2 > voters.length;
      });
      if (led || !electable || !this.host.connected()) {
        this.leaderlessSince.delete(regionId);
        continue;
      }
      this.stats.availabilityProbes++;
      // The bound runs from the later of the region's last leader and the network's last random
      // loss of one of its messages: an election whose (pre-)votes the 3 % loss kept taking is the
      // network's doing, not a missing vote (engine seed 143 with drain,pause: n1's grants to n3's
      // pre-votes lost three rounds running, 1,005 ms leaderless with nothing else wrong). A bug
      // that keeps a region leaderless still shows: it lasts through a loss-free second.
      const lost = this.host.lastLossAt(regionId);
      const since = Math.max(this.leaderlessSince.get(regionId) ?? now, lost ?? Number.NEGATIVE_INFINITY);
      this.leaderlessSince.set(regionId, since);
      if (now - since > REMOVAL_AVAILABILITY_MS) {
        const voters = electable.replica.raft.confState().voters;
        const gone = voters.filter((v) => deleted.has(v));
        this.host.flag(
          'removal availability',
          `${regionId} has had no leader for ${now - since} ms with the network whole (none of its messages lost meanwhile), though peer ${electable.peerId} on n${electable.nodeId} (log ${electable.last.join('/')}) could be elected by a majority of its voters ${voters.join(',')}${gone.length > 0 ? ` counting peer(s) ${gone.join(',')}, deleted meanwhile` : ''}`,
        );
        this.leaderlessSince.delete(regionId);
      }
    }
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
