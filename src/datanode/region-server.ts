// RegionServer: hosts many region replicas (multi-raft) on one datanode and runs the ready loop.
//
// The ready loop, one cycle for ALL replicas with work (group commit, ARCHITECTURE §4):
//   1. give raft the commands queued since the last cycle (one entry batch per region) and one
//      ReadIndex request for the reads queued meanwhile, then collect ready() of every replica;
//   2. write all their entries / hard states / snapshots in ONE durable LogBatch (fsync);
//   3. send their messages (raft.ts P1/P2: nothing leaves before it is durable), except that a
//      leader's appends/heartbeats go out before its own write (P3, thesis §10.2.1) when the
//      ready carries no new term/vote and no snapshot;
//   4. apply committed entries to the state machines, resolve waiting proposals and reads;
//   5. advance() each replica.
// Proposals and messages that arrive while a cycle is persisting are picked up by the next
// cycle, which is how many client writes share one fsync.
import { assert } from '../common/assert.js';
import type { Clock } from '../common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SeededRand } from '../common/rand.js';
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  NO_NODE,
  Raft,
  type RaftLogStore,
  type ReadOnlyOption,
  type Ready,
  Role,
  bootstrapEntries,
  decodeConfChange,
  roleName,
} from '../raft/index.js';
import type { LogEngine, PeerInfo, RaftEnvelope, RaftTransport, StateMachine } from './types.js';

export interface RaftTuning {
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readOnly: ReadOnlyOption;
  /** Followers learn a moved commit index from the next append or heartbeat (raft-rs skip_bcast_commit). */
  readonly skipBcastCommit: boolean;
  /** Take a state-machine snapshot and compact the log after this many applied entries. */
  readonly snapshotEveryEntries: number;
}

export const defaultRaftTuning: RaftTuning = {
  tickMs: 50,
  electionTicks: 10,
  heartbeatTicks: 2,
  preVote: true,
  checkQuorum: true,
  readOnly: 'safe',
  skipBcastCommit: true,
  snapshotEveryEntries: 20_000,
};

export interface ReplicaSpec {
  readonly regionId: string;
  readonly selfPeerId: number;
  readonly peers: readonly PeerInfo[];
  /** True for the replicas created with the region: the initial voters go into the log. */
  readonly bootstrap: boolean;
}

export interface StateMachineFactory<R> {
  /** A fresh state machine, or one restored from a raft snapshot's data. */
  create(regionId: string, snapshotData: Uint8Array | null): StateMachine<R>;
}

export interface RegionServerHooks {
  /** Membership of a region changed (applied). The host persists its region meta. */
  onConfChange?(regionId: string, confState: ConfState, peers: readonly PeerInfo[]): void;
  onRoleChange?(regionId: string, role: string, leaderPeerId: number, term: number): void;
  /** A proposal of this leader finished: applied (`committed`) or failed; seconds since propose. */
  onProposalDone?(regionId: string, seconds: number, committed: boolean): void;
  /** A replica installed a raft snapshot (its state machine was replaced) at `index`. */
  onSnapshotInstalled?(regionId: string, index: number): void;
}

interface PendingProposal<R> {
  readonly term: number;
  resolve(result: R): void;
  reject(err: Error): void;
}

const READ_TIMEOUT_ELECTIONS = 2;

/**
 * Most commands proposed to raft as one batch of entries. Commands that arrive while a cycle
 * persists are proposed together at the start of the next one, so the followers get one
 * append (not one per command) and the transport, codec and raft core work once per batch.
 */
const PROPOSAL_BATCH_COMMANDS_MAX = 512;

interface QueuedCommand<R> {
  readonly command: Uint8Array;
  resolve(result: R): void;
  reject(err: Error): void;
}

/** A linearizable read waiting for the next cycle's ReadIndex request (shared by all of them). */
interface QueuedRead {
  resolve(): void;
  reject(err: Error): void;
}

interface PendingRead {
  index: number;
  /** Tick count when requested: a read still without an index after READ_TIMEOUT_ELECTIONS election timeouts is dropped. */
  readonly sinceTick: number;
  resolve(): void;
  reject(err: Error): void;
}

export class Replica<R> {
  readonly peers = new Map<number, PeerInfo>();
  readonly proposals = new Map<number, PendingProposal<R>>();
  /** Commands accepted by propose() and not yet given to raft (see PROPOSAL_BATCH_COMMANDS_MAX). */
  readonly queuedCommands: QueuedCommand<R>[] = [];
  /** Reads waiting for a ReadIndex request: one request per cycle serves all of them. */
  readonly queuedReads: QueuedRead[] = [];
  readonly reads = new Map<string, PendingRead>();
  appliedIndex: number;
  /** Index of the last raft snapshot installed by this process (0: none yet). */
  snapshotInstalledIndex = 0;
  /** Log index of the last membership change applied (at least the snapshot's index): the group's membership version. */
  confIndex: number;
  /** Set when a region is closed or the replica was removed: it must not serve (fencing). */
  closed = false;

  constructor(
    readonly regionId: string,
    readonly selfPeerId: number,
    readonly raft: Raft,
    readonly store: RaftLogStore,
    public stateMachine: StateMachine<R>,
    appliedIndex: number,
  ) {
    this.appliedIndex = appliedIndex;
    this.confIndex = appliedIndex;
  }

  isLeader(): boolean {
    return this.raft.role === Role.Leader;
  }

  leaderNodeId(): number | undefined {
    const leader = this.raft.leader;
    return leader === NO_NODE ? undefined : this.peers.get(leader)?.nodeId;
  }
}

export class RegionServer<R> {
  private readonly replicas = new Map<string, Replica<R>>();
  private driving = false;
  private rerun = false;
  private currentCycle: Promise<void> = Promise.resolve();
  private ticker: NodeJS.Timeout | undefined;
  private fatal: Error | undefined;
  private readSeq = 0;
  /**
   * Distinguishes this process's ReadIndex contexts from an earlier run's: a peer may still
   * answer a request the previous process sent (its queues outlive our restart), and a context
   * that restarted at `${nodeId}:1` would match that stale answer to a new read (a stale read).
   */
  private readonly incarnation: string;
  private ticks = 0;
  private readonly rand: SeededRand;

  constructor(
    readonly nodeId: number,
    private readonly logEngine: LogEngine,
    private readonly transport: RaftTransport,
    private readonly stateMachines: StateMachineFactory<R>,
    private readonly tuning: RaftTuning,
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly hooks: RegionServerHooks = {},
  ) {
    // Election timeouts only need to differ between nodes; seed from the node id and time.
    this.rand = new SeededRand((nodeId * 2654435761 + Math.floor(clock.nowMs())) >>> 0);
    this.incarnation = `${Math.floor(clock.nowMs()).toString(36)}.${this.rand.int(2 ** 30).toString(36)}`;
  }

  start(): void {
    assert(this.ticker === undefined, 'region server already started');
    this.ticker = setInterval(() => this.tick(), this.tuning.tickMs);
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    for (const replica of this.replicas.values()) this.failPending(replica, this.unavailable('datanode is shutting down'));
    await this.currentCycle.catch(() => {}); // a failed cycle was already reported by onFatal
  }

  /** The replica of a region hosted here, unless it was closed or removed (fenced). */
  replica(regionId: string): Replica<R> | undefined {
    const replica = this.replicas.get(regionId);
    return replica && !replica.closed ? replica : undefined;
  }

  allReplicas(): Replica<R>[] {
    return [...this.replicas.values()];
  }

  /** Opens (or creates) a local replica. Idempotent. */
  async open(spec: ReplicaSpec): Promise<Replica<R>> {
    const existing = this.replicas.get(spec.regionId);
    if (existing) return existing;
    const store = this.logEngine.region(spec.regionId);
    if (spec.bootstrap && store.lastIndex() === 0 && store.snapshot().metadata.index === 0) {
      const boot = bootstrapEntries(spec.peers.map((p) => p.peerId));
      const batch = this.logEngine.batch();
      batch.append(spec.regionId, boot.entries);
      batch.setHardState(spec.regionId, boot.hardState);
      await batch.commit();
    }
    const snapshot = store.snapshot();
    const snapshotData = snapshot.metadata.index > 0 ? snapshot.data : null;
    const stateMachine = this.stateMachines.create(spec.regionId, snapshotData);
    const raft = new Raft({
      id: spec.selfPeerId,
      storage: store,
      rand: this.rand.fork(),
      applied: snapshot.metadata.index,
      electionTicks: this.tuning.electionTicks,
      heartbeatTicks: this.tuning.heartbeatTicks,
      preVote: this.tuning.preVote,
      checkQuorum: this.tuning.checkQuorum,
      readOnly: this.tuning.readOnly,
      skipBcastCommit: this.tuning.skipBcastCommit,
    });
    const replica = new Replica(spec.regionId, spec.selfPeerId, raft, store, stateMachine, snapshot.metadata.index);
    const conf = raft.confState();
    stateMachine.onMembership?.(conf.voters, conf.learners);
    for (const peer of spec.peers) replica.peers.set(peer.peerId, peer);
    this.replicas.set(spec.regionId, replica);
    this.log.info({ regionId: spec.regionId, peerId: spec.selfPeerId, term: raft.term, commit: raft.log.committed }, 'opened replica');
    this.schedule();
    return replica;
  }

  /** Closes a replica; with `destroy` its log is deleted too (it was removed from the region). */
  async close(regionId: string, destroy: boolean): Promise<void> {
    const replica = this.replicas.get(regionId);
    if (replica) {
      replica.closed = true;
      this.replicas.delete(regionId);
      this.failPending(replica, new RegionDbError(ErrorCode.NotFound, `region ${regionId} is no longer hosted on node ${this.nodeId}`), 'the region was closed on this node');
    }
    // The cycle running now may still hold the replica; let it finish before deleting its log.
    await this.currentCycle.catch(() => {});
    if (destroy) await this.logEngine.dropRegion(regionId);
  }

  /** A raft message from another datanode. Unknown regions are dropped (and logged at debug). */
  step(fromNodeId: number, regionId: string, message: Message): void {
    const replica = this.replicas.get(regionId);
    if (!replica || replica.closed) {
      this.log.debug({ regionId, fromNodeId }, 'raft message for a region not hosted here');
      return;
    }
    if (message.to !== replica.selfPeerId) return; // for an older incarnation of this replica
    if (!replica.peers.has(message.from)) replica.peers.set(message.from, { peerId: message.from, nodeId: fromNodeId });
    replica.raft.step(message);
    this.schedule();
  }

  tick(): void {
    this.ticks++;
    for (const replica of this.replicas.values()) {
      replica.raft.tick();
      this.expireReads(replica);
    }
    this.schedule();
  }

  /** Proposes a command; resolves with the state machine's result once applied locally. */
  propose(regionId: string, command: Uint8Array): Promise<R> {
    const replica = this.leaderReplica(regionId);
    const done = new Promise<R>((resolve, reject) => replica.queuedCommands.push({ command, resolve, reject }));
    const onDone = this.hooks.onProposalDone;
    if (onDone) {
      const startedMs = this.clock.nowMs();
      const report = (committed: boolean) => onDone(regionId, (this.clock.nowMs() - startedMs) / 1000, committed);
      done.then(() => report(true), () => report(false)); // the caller handles `done` itself
    }
    this.schedule();
    return done;
  }

  /** Resolves once a linearizable read of the region may be served (ReadIndex, §6.4 thesis). */
  readBarrier(regionId: string): Promise<void> {
    const replica = this.replicas.get(regionId);
    if (!replica || replica.closed) throw this.notFound(regionId);
    const done = new Promise<void>((resolve, reject) => replica.queuedReads.push({ resolve, reject }));
    this.schedule();
    return done;
  }

  /**
   * One ReadIndex request for every read queued since the last cycle (as etcd's server does):
   * its index is taken after all of them were requested, so it is a valid read index for each
   * (§6.4 thesis), and N concurrent reads cost one heartbeat round instead of N.
   */
  private requestReadIndex(replica: Replica<R>): void {
    const group = replica.queuedReads.splice(0);
    const ctx = `${this.nodeId}:${this.incarnation}:${++this.readSeq}`;
    replica.reads.set(ctx, {
      index: -1,
      sinceTick: this.ticks,
      resolve: () => {
        for (const read of group) read.resolve();
      },
      reject: (err) => {
        for (const read of group) read.reject(err);
      },
    });
    replica.raft.readIndex(new TextEncoder().encode(ctx));
  }

  /**
   * A ReadIndex request forwarded to a leader can be lost with no answer (the leader died, or
   * the message was dropped while a stream reconnected). Such reads fail as PROPOSAL_DROPPED
   * after two election timeouts so the client retries, instead of hanging to its deadline.
   */
  private expireReads(replica: Replica<R>): void {
    const maxTicks = READ_TIMEOUT_ELECTIONS * this.tuning.electionTicks;
    for (const [ctx, read] of replica.reads) {
      if (read.index >= 0 || this.ticks - read.sinceTick < maxTicks) continue;
      replica.reads.delete(ctx);
      read.reject(
        new RegionDbError(ErrorCode.ProposalDropped, `read of region ${replica.regionId} got no read index within ${maxTicks * this.tuning.tickMs} ms; retry`),
      );
    }
  }

  proposeConfChange(regionId: string, cc: ConfChange): Promise<R | undefined> {
    const replica = this.leaderReplica(regionId);
    const { index, term } = replica.raft.proposeConfChange(cc);
    const done = new Promise<R | undefined>((resolve, reject) =>
      replica.proposals.set(index, { term, resolve: resolve as (r: R) => void, reject }),
    );
    this.schedule();
    return done;
  }

  transferLeader(regionId: string, toPeerId: number): void {
    const replica = this.replicas.get(regionId);
    if (!replica) throw this.notFound(regionId);
    replica.raft.transferLeader(toPeerId);
    this.schedule();
  }

  campaign(regionId: string): void {
    const replica = this.replicas.get(regionId);
    if (!replica) throw this.notFound(regionId);
    replica.raft.campaign();
    this.schedule();
  }

  leaderReplica(regionId: string): Replica<R> {
    if (this.fatal) throw this.unavailable(`datanode stopped serving after a fatal storage error: ${this.fatal.message}`);
    const replica = this.replicas.get(regionId);
    if (!replica || replica.closed) throw this.notFound(regionId);
    if (!replica.isLeader()) {
      const leaderNodeId = replica.leaderNodeId();
      throw new RegionDbError(ErrorCode.NotLeader, `node ${this.nodeId} is not the leader of region ${regionId}`, {
        details: leaderNodeId === undefined ? {} : { leaderNodeId: String(leaderNodeId) },
      });
    }
    return replica;
  }

  // ─── The ready loop ────────────────────────────────────────────────────────────────────────

  private schedule(): void {
    if (this.driving) {
      this.rerun = true;
      return;
    }
    this.driving = true;
    setImmediate(() => {
      this.drive().catch((err: unknown) => this.onFatal(err));
    });
  }

  private async drive(): Promise<void> {
    try {
      do {
        this.rerun = false;
        this.currentCycle = this.cycle();
        await this.currentCycle;
      } while (this.rerun || this.anyReady());
    } finally {
      this.driving = false;
    }
  }

  private anyReady(): boolean {
    if (this.fatal) return false;
    for (const replica of this.replicas.values()) if (replica.raft.hasReady()) return true;
    return false;
  }

  private async cycle(): Promise<void> {
    if (this.fatal) return;
    const work: [Replica<R>, Ready][] = [];
    for (const replica of this.replicas.values()) {
      if (replica.queuedCommands.length > 0) this.proposeQueued(replica);
      if (replica.queuedReads.length > 0) this.requestReadIndex(replica);
      if (replica.raft.hasReady()) work.push([replica, replica.raft.ready()]);
    }
    if (work.length === 0) return;

    // 1–2. One durable batch for every replica (group commit).
    const batch = this.logEngine.batch();
    let needsWrite = false;
    for (const [replica, rd] of work) {
      if (rd.snapshot) {
        batch.applySnapshot(replica.regionId, rd.snapshot);
        needsWrite = true;
      }
      if (rd.entries.length > 0) {
        batch.append(replica.regionId, rd.entries);
        needsWrite = true;
      }
      if (rd.hardState) {
        batch.setHardState(replica.regionId, rd.hardState);
        needsWrite = true;
      }
      if (rd.committedEntries.some((e) => e.type === EntryType.ConfChange)) {
        // The commit index covering a membership change is made durable before the change is
        // applied (a deferred one could roll back below it in a crash; see LogBatch).
        batch.requireDurableCommit();
        needsWrite = true;
      }
    }
    // 2a. A leader may replicate entries while it writes them itself (thesis §10.2.1): it
    // counts its own copy toward the quorum only after this write (advance() below), so an
    // early send changes latency, not safety. Only when the ready carries no new term or vote
    // (those must be durable before anyone hears of them) and no snapshot.
    const early = work.filter(([replica, rd]) => this.maySendBeforePersist(replica, rd));
    this.send(early);
    if (needsWrite) await batch.commit(); // throws a fatal error if the sync failed

    // 3. Everything else is sent only now, after the write is durable (P1).
    this.send(early.length === 0 ? work : work.filter((w) => !early.includes(w)));

    // 4–5. Apply and advance.
    for (const [replica, rd] of work) {
      if (rd.softState) this.onSoftState(replica, rd);
      if (rd.snapshot) {
        replica.stateMachine = this.stateMachines.create(replica.regionId, rd.snapshot.data);
        replica.stateMachine.onMembership?.(rd.snapshot.metadata.confState.voters, rd.snapshot.metadata.confState.learners);
        replica.appliedIndex = rd.snapshot.metadata.index;
        replica.confIndex = rd.snapshot.metadata.index;
        this.resetPeersFromConf(replica, rd.snapshot.metadata.confState);
        replica.snapshotInstalledIndex = replica.appliedIndex;
        this.hooks.onSnapshotInstalled?.(replica.regionId, replica.appliedIndex);
        this.log.info({ regionId: replica.regionId, index: replica.appliedIndex }, 'installed raft snapshot');
      }
      for (const entry of rd.committedEntries) {
        const pending = this.applyEntry(replica, entry);
        if (pending) await pending;
      }
      for (const rs of rd.readStates) {
        const ctx = new TextDecoder().decode(rs.context);
        const read = replica.reads.get(ctx);
        if (!read) continue;
        if (rs.index === 0) {
          replica.reads.delete(ctx);
          read.reject(this.notLeader(replica));
        } else {
          read.index = rs.index;
        }
      }
      replica.raft.advance(rd);
      this.releaseReads(replica);
    }
    for (const [replica] of work) await this.maybeSnapshot(replica);
  }

  private maySendBeforePersist(replica: Replica<R>, rd: Ready): boolean {
    if (!replica.isLeader() || rd.snapshot || rd.messages.length === 0) return false;
    if (!rd.hardState) return true;
    const persisted = replica.store.initialState().hardState;
    return rd.hardState.term === persisted.term && rd.hardState.vote === persisted.vote;
  }

  /** Hands the messages of these readies to the transport, grouped per destination datanode. */
  private send(work: readonly [Replica<R>, Ready][]): void {
    const outgoing = new Map<number, RaftEnvelope[]>();
    for (const [replica, rd] of work) {
      for (const message of rd.messages) {
        const peer = replica.peers.get(message.to);
        if (!peer) {
          this.log.warn({ regionId: replica.regionId, to: message.to }, 'no address for raft peer; message dropped');
          continue;
        }
        let list = outgoing.get(peer.nodeId);
        if (!list) outgoing.set(peer.nodeId, (list = []));
        list.push({ regionId: replica.regionId, message });
      }
    }
    for (const [nodeId, envelopes] of outgoing) this.transport.send(nodeId, envelopes);
  }

  /** Applies one committed entry; returns a promise only when the state machine needed I/O. */
  private applyEntry(replica: Replica<R>, entry: Entry): void | Promise<void> {
    if (entry.index <= replica.appliedIndex) return;
    assert(entry.index === replica.appliedIndex + 1, `region ${replica.regionId}: apply ${entry.index} after ${replica.appliedIndex}`);
    replica.appliedIndex = entry.index;
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data);
      if (cc.context) {
        const info = JSON.parse(cc.context) as { nodeId?: number };
        if (typeof info.nodeId === 'number') replica.peers.set(cc.nodeId, { peerId: cc.nodeId, nodeId: info.nodeId });
      }
      const confState = replica.raft.applyConfChange(cc);
      replica.confIndex = entry.index;
      replica.stateMachine.onMembership?.(confState.voters, confState.learners);
      this.log.info({ regionId: replica.regionId, index: entry.index, confState }, 'applied membership change');
      if (cc.type === ConfChangeType.RemoveNode && cc.nodeId === replica.selfPeerId) {
        // Removed from the region: fenced at once (no reads, no writes); the host deletes it.
        replica.closed = true;
        this.failPending(replica, new RegionDbError(ErrorCode.NotFound, `replica ${replica.selfPeerId} was removed from region ${replica.regionId}`), 'this replica was removed from the region');
        this.log.warn({ regionId: replica.regionId, peerId: replica.selfPeerId }, 'this replica was removed from the region; fenced');
      }
      this.hooks.onConfChange?.(replica.regionId, confState, [...replica.peers.values()]);
      return this.settle(replica, entry, undefined, undefined);
    }
    if (entry.data.byteLength === 0) return this.settle(replica, entry, undefined, undefined);
    let out: R | Promise<R>;
    try {
      out = replica.stateMachine.apply(entry.index, entry.data, entry.term);
    } catch (err) {
      // A command that fails validation at apply time fails the same way on every replica.
      return this.settle(replica, entry, undefined, err instanceof Error ? err : new Error(String(err)));
    }
    if (!(out instanceof Promise)) return this.settle(replica, entry, out, undefined);
    return out.then(
      (result) => this.settle(replica, entry, result, undefined),
      (err: unknown) => {
        // Object storage unreachable is not a property of the command: stop rather than diverge.
        if (isRegionDbError(err, ErrorCode.StorageUnavailable)) throw err;
        this.settle(replica, entry, undefined, err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  /** Resolves or rejects the proposal waiting for this entry, if any. */
  private settle(replica: Replica<R>, entry: Entry, result: R | undefined, error: Error | undefined): void {
    const proposal = replica.proposals.get(entry.index);
    if (!proposal) return;
    replica.proposals.delete(entry.index);
    if (proposal.term !== entry.term) {
      proposal.reject(this.outcomeUnknown(replica, 'another leader overwrote the proposal'));
    } else if (error) {
      proposal.reject(error);
    } else {
      proposal.resolve(result as R);
    }
  }

  private releaseReads(replica: Replica<R>): void {
    for (const [ctx, read] of replica.reads) {
      if (read.index < 0 || replica.appliedIndex < read.index) continue;
      replica.reads.delete(ctx);
      read.resolve();
    }
  }

  private onSoftState(replica: Replica<R>, rd: Ready): void {
    const soft = rd.softState!;
    this.log.info({ regionId: replica.regionId, role: roleName[soft.role], leader: soft.leader, term: replica.raft.term }, 'raft role changed');
    this.hooks.onRoleChange?.(replica.regionId, roleName[soft.role], soft.leader, replica.raft.term);
    if (soft.role !== Role.Leader) {
      // Proposals in flight may still commit under the next leader (RAFT-NOTES 21): their
      // outcome is unknown; clients retry with the same request id and dedup makes it safe.
      for (const [index, proposal] of replica.proposals) {
        replica.proposals.delete(index);
        proposal.reject(this.outcomeUnknown(replica, 'leadership lost'));
      }
    }
  }

  private resetPeersFromConf(replica: Replica<R>, confState: ConfState): void {
    const members = new Set([...confState.voters, ...confState.learners]);
    for (const peerId of replica.peers.keys()) if (!members.has(peerId)) replica.peers.delete(peerId);
  }

  private async maybeSnapshot(replica: Replica<R>): Promise<void> {
    const store = replica.store;
    if (replica.closed) return;
    const sm = replica.stateMachine;
    if (sm.snapshotPoint) {
      // The state machine's own point (the engine's flushed index): the log below it is only
      // needed by followers so far behind that they will take the snapshot anyway.
      const point = sm.snapshotPoint();
      if (!point || point.index <= store.snapshot().metadata.index || point.index < store.firstIndex() - 1 || point.index > store.lastIndex()) return;
      await store.createSnapshot(point.index, { voters: [...point.voters], learners: [...point.learners] }, point.data);
      await store.compact(point.index);
      this.log.info({ regionId: replica.regionId, index: point.index }, 'log truncated at the flushed index (snapshot = manifest)');
      return;
    }
    const applied = replica.appliedIndex;
    if (applied - store.firstIndex() < this.tuning.snapshotEveryEntries || applied > store.lastIndex()) return;
    await store.createSnapshot(applied, replica.raft.confState(), sm.serialize());
    // Keep a tail so slightly lagging followers catch up from the log, not a snapshot.
    const keep = Math.min(1000, Math.floor(this.tuning.snapshotEveryEntries / 4));
    await store.compact(Math.max(store.firstIndex() - 1, applied - keep));
    this.log.info({ regionId: replica.regionId, index: applied }, 'raft snapshot taken, log compacted');
  }


  /** Gives the queued commands to raft, in order, as few entry batches as the bound allows. */
  private proposeQueued(replica: Replica<R>): void {
    while (replica.queuedCommands.length > 0) {
      const batch = replica.queuedCommands.splice(0, PROPOSAL_BATCH_COMMANDS_MAX);
      let first: { index: number; term: number };
      try {
        first = replica.raft.propose(batch.map((q) => q.command));
      } catch (err) {
        // Leadership lost or being transferred since propose(): nothing was appended.
        const error = isRegionDbError(err, ErrorCode.NotLeader) ? this.notLeader(replica) : (err as Error);
        for (const q of batch) q.reject(error);
        continue;
      }
      for (const [k, q] of batch.entries()) replica.proposals.set(first.index + k, { term: first.term, resolve: q.resolve, reject: q.reject });
    }
  }

  /**
   * Fails everything waiting on a replica with `err`. Proposals already handed to raft may still
   * commit (through the new leader, or a membership that no longer holds this replica): with
   * `proposedWhy` they fail as outcome unknown instead, so that the client retries with the same
   * request id (dedup makes that safe) and never reports a write that may exist as failed.
   */
  private failPending(replica: Replica<R>, err: Error, proposedWhy?: string): void {
    for (const queued of replica.queuedCommands.splice(0)) queued.reject(err);
    for (const queued of replica.queuedReads.splice(0)) queued.reject(err);
    const proposedErr = proposedWhy === undefined ? err : this.outcomeUnknown(replica, proposedWhy);
    for (const proposal of replica.proposals.values()) proposal.reject(proposedErr);
    replica.proposals.clear();
    for (const read of replica.reads.values()) read.reject(err);
    replica.reads.clear();
  }

  private onFatal(err: unknown): void {
    this.fatal = err instanceof Error ? err : new Error(String(err));
    this.log.fatal({ err: this.fatal }, 'ready loop failed; this datanode stops serving (RAFT-NOTES 3)');
    for (const replica of this.replicas.values()) this.failPending(replica, this.unavailable(this.fatal.message));
    if (this.ticker) clearInterval(this.ticker);
  }

  fatalError(): Error | undefined {
    return this.fatal;
  }

  private notFound(regionId: string): RegionDbError {
    return new RegionDbError(ErrorCode.NotFound, `region ${regionId} is not hosted on node ${this.nodeId}`);
  }

  private notLeader(replica: Replica<R>): RegionDbError {
    const leaderNodeId = replica.leaderNodeId();
    return new RegionDbError(ErrorCode.NotLeader, `node ${this.nodeId} cannot serve region ${replica.regionId} now (no leadership)`, {
      details: leaderNodeId === undefined ? {} : { leaderNodeId: String(leaderNodeId) },
    });
  }

  private outcomeUnknown(replica: Replica<R>, why: string): RegionDbError {
    const leaderNodeId = replica.leaderNodeId();
    return new RegionDbError(
      ErrorCode.Unavailable,
      `region ${replica.regionId}: ${why}; the write may or may not have been applied — retry with the same request id`,
      { details: leaderNodeId === undefined ? {} : { leaderNodeId: String(leaderNodeId) } },
    );
  }

  private unavailable(message: string): RegionDbError {
    return new RegionDbError(ErrorCode.Unavailable, message);
  }
}
