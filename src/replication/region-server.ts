// RegionServer: hosts many region replicas (multi-raft) on one datanode and runs the ready loop.
//
// The ready loop, one cycle for ALL replicas with work (group commit, docs/architecture.md §4):
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
//
// Replica health (docs/replica-health.md). A replica that cannot start (its WAL records are
// damaged, its snapshot does not load) or cannot apply a committed entry never takes the node
// down: only a failed WAL write (the node's disk, docs/raft-rules.md R3) is fatal to the whole
// node. An exception out of a replica's raft core (a broken invariant it asserts) fails that one
// replica (coreFailed), unless the host chose otherwise (RegionServerHooks `coreFailure`: the
// metasrv group's server stops whole). An apply that fails on the object store stalls its
// replica: the entries stay in the log, are applied in order once a retry succeeds, and meanwhile
// the replica refuses proposals and linearizable reads; its log is sound, so it keeps taking part
// in raft. When the apply cannot succeed (the object is gone or damaged, or the retry window ran
// out) the replica FAILS: it is fenced and leaves the ready loop for good (no ticks, no messages,
// no votes, no acks), its WAL is kept untouched, and it is reported (region, index, reason) until
// the metasrv replaces it under a fresh peer id.
//
// An apply that waits (docs/replica-health.md, "An apply that waits for the object store"). A
// state machine returns a promise only when its apply needs I/O (a conditional write reading SSTs,
// a standby release). Such an apply goes out off the ready loop (applyOffLoop) — the loop never
// awaits one, so one slow read never silences the node's other replicas — and the replica's
// committed entries behind it wait in its log until the first cycle after it settles applies them
// in order (finishApply). Meanwhile its applied index stays below the entry (no read released, no
// snapshot taken on the state before it), it answers raft and takes proposals, it starts no
// campaign if a membership change waits behind the apply (R16), and it proposes no membership
// change. A snapshot installed, a close or a failure drops the late outcome.
//
// Quiescence (docs/quiescence.md). Only *awake* replicas are ticked, and a cycle visits only
// the replicas touched since the last one (a message, a request, a tick, leftover ready work),
// so the cost of a tick or a cycle follows the busy regions, not the hosted ones. A leader idle
// for quiesceIdleTicks asks its core to quiesce (raft.ts Q1); its followers follow. Every
// beatEveryTicks ticks each peer datanode gets one liveness beat (region NODE_BEAT_REGION_ID); a
// peer silent for nodeDownAfterTicks is taken as down, and the followers of leaders on it are told
// (raft.leaderUnreachable), since a quiesced follower counts no election timeout of its own.
import { assert } from '../common/assert.js';
import type { TimedClock, TimerHandle } from '../common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { limits } from '../common/limits.js';
import { SeededRand } from '../common/rand.js';
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  messageTypeName,
  NO_NODE,
  Raft,
  type RaftConfig,
  type RaftLogStore,
  type ReadOnlyOption,
  type Ready,
  Role,
  type Snapshot,
  type ResultOf,
  type StateMachine,
  bootstrapEntries,
  decodeConfChange,
  maySendBeforePersist,
  roleName,
} from '../raft/index.js';
import type { LogEngine } from '../wal/log-engine.js';
import type { PeerInfo, RaftEnvelope, RaftTransport } from './transport.js';

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
  /** Retries of an apply that failed on the object store (defaults: limits.applyRetry*). */
  readonly applyRetry?: ApplyRetryPolicy;
  /** A leader with no proposal, read or apply for this many ticks quiesces its region (docs/quiescence.md); 0: never. */
  readonly quiesceIdleTicks: number;
  /**
   * A peer datanode silent (no message, no beat) for this many ticks is taken as down; a tick
   * that ran late (this process's own event loop stalled) judges no one (see `tick`).
   */
  readonly nodeDownAfterTicks: number;
  /**
   * A liveness beat goes to every peer datanode every this many ticks, and on a tick that ran late
   * (docs/quiescence.md, "Noticing a dead leader while quiesced"). At least two beats must fit in
   * nodeDownAfterTicks. Optional: default DEFAULT_BEAT_EVERY_TICKS.
   */
  readonly beatEveryTicks?: number;
  /**
   * First campaigns spread (docs/quiescence.md, "Calm first elections"): a node starts counting
   * election ticks for at most this many newly opened replicas a tick, beyond a burst allowance of
   * one election timeout's worth; later ones wait their turn, so a burst's campaigns take about
   * burst size / this ticks. 0: no spreading. Optional: default DEFAULT_FIRST_CAMPAIGNS_PER_TICK.
   */
  readonly firstCampaignsPerTick?: number;
  /** raft.pre_vote_priority: RaftConfig.preVotePriority (docs/quiescence.md, "Elections under a stalled loop"). Default false. */
  readonly preVotePriority?: boolean;
  /** raft.late_votes: RaftConfig.countLateVotes (same section). Default false. */
  readonly countLateVotes?: boolean;
}

/** Ticks between two liveness beats to a peer datanode: every tick (docs/quiescence.md, "Beats every two ticks": 2 awaits a paired failover A/B). */
export const DEFAULT_BEAT_EVERY_TICKS = 1;

/** First campaigns a node starts per tick in a burst of opens, beyond which they are spread (80 a second at 50 ms ticks). */
export const DEFAULT_FIRST_CAMPAIGNS_PER_TICK = 4;

/**
 * Region id of a node liveness beat (docs/quiescence.md, raft.proto): not decimal, so it is no
 * table's region and not the metasrv group's ('0', src/metasrv/meta-group.ts). It was '0' once,
 * which made every region server drop the metasrv group's raft traffic as beats.
 */
export const NODE_BEAT_REGION_ID = 'beat';
const NODE_BEAT: Message = { type: MessageType.Heartbeat, from: NO_NODE, to: NO_NODE, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: new Uint8Array(0) };
/**
 * Messages that only the leader of their term sends, and only to the peers its configuration
 * counts (a progress entry): stepping one in its own term is leader contact (Replica.leaderContact).
 */
const LEADER_CONTACT: ReadonlySet<MessageType> = new Set([MessageType.Append, MessageType.Heartbeat, MessageType.Snapshot, MessageType.Quiesce]);

/**
 * The stale-read gate's bound, in election timeouts (electionTicks ticks each): 2, the longest a
 * follower's randomized timeout runs before it campaigns — past it a follower still hearing
 * nothing is cut off, or its group has moved on without it (staleReadRefusal).
 */
const STALE_READ_BOUND_ELECTION_TIMEOUTS = 2;

/** The set of peer datanodes to beat is recomputed from the replicas' peers this often. */
const PEER_NODES_REFRESH_TICKS = 20;

export interface ApplyRetryPolicy {
  readonly backoffMsMin: number;
  readonly backoffMsMax: number;
  /** Retrying longer than this (since the first failure) fails the replica. */
  readonly windowMs: number;
}

const defaultApplyRetry: ApplyRetryPolicy = {
  backoffMsMin: limits.applyRetryBackoffMsMin,
  backoffMsMax: limits.applyRetryBackoffMsMax,
  windowMs: limits.applyRetryWindowMs,
};

/** A request for leader contact in flight: the stale reads waiting for the answer, and the timer that gives up on it. */
interface ContactRequest {
  readonly waiters: (() => void)[];
  timer: TimerHandle | undefined;
}

/** A replica that stopped for good: fenced, out of the ready loop, reported until it is replaced. */
export interface ReplicaFailure {
  readonly regionId: string;
  readonly selfPeerId: number;
  /** The log index it could not load or apply. */
  readonly index: number;
  /** Human-readable, naming the region and the index. */
  readonly reason: string;
  readonly sinceMs: number;
  /** Raft state when it stopped (for status; 0 / empty for a replica that never started). */
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly confIndex: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
}

/** An apply waiting for the object store: entries (index, upTo] wait in the log, applied in order by the retry. */
export interface ApplyStall {
  /** The entry that failed (appliedIndex + 1). */
  readonly index: number;
  /** The last committed entry handed out by raft so far (all of them wait behind `index`). */
  upTo: number;
  /** When the current retrying began (reset when a wait on the replica's removal ends in a retry). */
  sinceMs: number;
  attempts: number;
  retryAtMs: number;
  lastError: string;
  /**
   * Set when the apply failed for good (a missing or damaged object) while the replica's log held
   * its own removal above the failed entry, at this index, not known to be committed: the replica
   * waits to learn whether it was (onApplyFailure), instead of failing.
   */
  awaitingRemoval?: number;
}

/**
 * An apply waiting for the object store, off the node's ready loop (see the top of this file,
 * "An apply that waits"). The entries committed behind it wait in the log and are applied in
 * order once it settles.
 */
export interface ApplyInFlight {
  /** The entry whose apply is out (the replica's appliedIndex + 1). */
  readonly index: number;
  /** When it went out (the region server's clock, ms): reported by the node's health. */
  readonly sinceMs: number;
  /** The last committed entry handed out by raft so far (all of them wait behind `index`). */
  upTo: number;
  /**
   * Set when a membership change is among the committed entries behind it: until it is applied the
   * replica starts no campaign and, as leader, takes no proposal (R16: its own removal may be there).
   */
  membershipBehind: boolean;
  /** The stall whose retry sent it out, if any (the replica stays stalled meanwhile). */
  readonly stall: ApplyStall | undefined;
  /** Set when the apply settled: undefined error means applied. Picked up by the next cycle. */
  outcome: { failure: RegionDbError | undefined } | undefined;
  /** Settles (never rejects) when the apply does; stop() waits for it. */
  readonly settled: Promise<void>;
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
  quiesceIdleTicks: 20,
  nodeDownAfterTicks: 8,
};

export interface ReplicaSpec {
  readonly regionId: string;
  readonly selfPeerId: number;
  readonly peers: readonly PeerInfo[];
  /** True for the replicas created with the region: the initial voters go into the log. */
  readonly bootstrap: boolean;
}

export interface StateMachineFactory<S> {
  /** A fresh state machine, or one restored from a raft snapshot's data. */
  create(regionId: string, snapshotData: Uint8Array | null): S;
  /**
   * A state machine create() returned is no longer a live replica's: the replica was closed or
   * failed, or a snapshot's state machine replaced it. Called once per state machine that became
   * a replica's; the host lets go of what it counts for it (the datanode's memtable account).
   */
  release?(regionId: string, stateMachine: S): void;
}

export interface RegionServerHooks {
  /** Membership of a region changed (applied). The host persists its region meta. */
  onConfChange?(regionId: string, confState: ConfState, peers: readonly PeerInfo[]): void;
  onRoleChange?(regionId: string, role: string, leaderPeerId: number, term: number): void;
  /** A proposal of this leader finished: applied (`committed`) or failed; seconds since propose. */
  onProposalDone?(regionId: string, seconds: number, committed: boolean): void;
  /** A replica installed a raft snapshot (its state machine was replaced) at `index`. */
  onSnapshotInstalled?(regionId: string, index: number): void;
  /**
   * What an exception out of a replica's raft core (stepping a message, a tick, a campaign, a
   * leadership transfer) does. `replica` (the default; the datanode): that replica fails
   * (failReplica) and the others go on. `fatal` (the metasrv group, whose one replica is the
   * process's reason to be): the server stops serving as after a failed WAL write (onFatal), its
   * WAL untouched, so that a restart reopens the replica from it.
   */
  readonly coreFailure?: 'replica' | 'fatal';
  /**
   * A replica reopened with its own removal committed in its durable log. `membership` (the
   * default; datanodes): it applies the membership changes up to its removal and no command
   * (reopenRemoved; a command's re-apply may read an SST GC collected). `everything`: it re-applies
   * every entry up to its removal as any reopened replica (the metasrv group: a removed member
   * still looks members' addresses up in its state machine, meta-group.ts addressOf, and its
   * applies read nothing that can be collected).
   */
  readonly removedReplay?: 'membership' | 'everything';
  /** The server stopped serving for good (a failed WAL write, or a core exception under `coreFailure: 'fatal'`). */
  onFatal?(err: Error): void;
  /**
   * The lowest log index someone outside the group still needs (a standby cluster's stream,
   * docs/replication.md): the log is kept from it when the state machine's snapshot point moves.
   */
  logRetainFrom?(regionId: string): number | undefined;
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

/**
 * Most entries a leader's log may hold past what it applied while an apply is out to the object
 * store; beyond it the leader refuses proposals (UNAVAILABLE) until the apply is back. A stalled
 * leader refuses every proposal; one waiting on a slow read takes them, but not without bound.
 */
const APPLY_BEHIND_ENTRIES_MAX = 8192;

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

/** One hosted replica: its raft core, its log and its state machine `S` (whose apply results are `R`). */
export class Replica<S extends StateMachine<R>, R = ResultOf<S>> {
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
  /**
   * When (the region server's clock, ms) this replica last stepped a message that only the leader
   * of the message's term sends, and only to the peers its configuration counts: an append, a
   * heartbeat, a snapshot or a quiesce (LEADER_CONTACT); with that term. Undefined until the first
   * since this process opened the replica. The stale-read gate reads it (`staleReadRefusal`): a
   * replica its group removed — while its node was down, or without the replica learning it
   * (finding E1) — is never sent another, so it stops serving stale reads once the bound passes.
   */
  leaderContact: { readonly atMs: number; readonly term: number } | undefined = undefined;
  /**
   * A request for leader contact in flight (RegionServer.staleReadGate, Raft.requestLeaderContact):
   * the stale reads waiting for the leader's answer, and the timer that gives up on it.
   */
  contactRequest: ContactRequest | undefined = undefined;
  /** When the last request for leader contact went unanswered: the gate asks again only a bound later. */
  contactRequestFailedAtMs: number | undefined = undefined;
  /** Log index of the last membership change applied (at least the snapshot's index): the group's membership version. */
  confIndex: number;
  /** Set when a region is closed or the replica was removed: it must not serve (fencing). */
  closed = false;
  /**
   * Set (with `closed`) when this replica applied its own removal: it serves no client and never
   * campaigns or proposes, but keeps stepping raft messages — answering (pre-)votes and appends —
   * until the host deletes it (close()), so that a remaining voter not yet told that the removal
   * committed can still be elected with its vote (docs/raft-rules.md R16, "The removed replica").
   */
  removed = false;
  /** Whether it still steps raft messages, ticks and runs ready cycles: running, or removed and not deleted yet. */
  get answersRaft(): boolean {
    return (!this.closed || this.removed) && this.failure === undefined;
  }
  /** Set while an apply that failed on the object store waits for its retry (see the top of this file). */
  stall: ApplyStall | undefined;
  /** Set while an apply is out to the object store, off the ready loop (see the top of this file). */
  applying: ApplyInFlight | undefined;
  /** Set when the replica failed; it is then no longer in the region server's replicas. */
  failure: ReplicaFailure | undefined;
  /** The region server's tick count when this replica last proposed, read or applied (quiescence). */
  lastBusyTick = 0;
  /** First campaigns spread: the replica counts no election ticks before this tick (0: none held), unless it hears from a leader first. */
  tickHoldUntil = 0;

  constructor(
    readonly regionId: string,
    readonly selfPeerId: number,
    readonly raft: Raft,
    readonly store: RaftLogStore,
    public stateMachine: S,
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

/** Hosts the replicas of one datanode, every one running a state machine of type `S`. */
export class RegionServer<S extends StateMachine<R>, R = ResultOf<S>> {
  private readonly replicas = new Map<string, Replica<S, R>>();
  /** Replicas that failed (see the top of this file), until they are closed or replaced. */
  private readonly failed = new Map<string, ReplicaFailure>();
  private readonly applyRetry: ApplyRetryPolicy;
  private driving = false;
  private rerun = false;
  private currentCycle: Promise<void> = Promise.resolve();
  /** Applies out to the object store (ApplyInFlight.settled); stop() waits for them. */
  private readonly appliesOut = new Set<Promise<void>>();
  /**
   * The replicas with an apply out, until a cycle takes its outcome up (or it is dropped): their
   * state machine changes outside any cycle (when the apply lands), so they count as changed as
   * the replicas of a running cycle do (takeChangedReplicas, changeFeed).
   */
  private readonly replicasApplying = new Set<Replica<S, R>>();
  /** Set by stop(): an apply settling later starts no cycle. */
  private stopped = false;
  private ticker: TimerHandle | undefined;
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
  /** Replicas that count ticks: not quiesced, or waiting on a read or a stalled apply (see the top of this file). */
  private readonly awake = new Set<Replica<S, R>>();
  /** Replicas the next cycle looks at: touched since the last one, or with ready work left. */
  private readonly touched = new Set<Replica<S, R>>();
  /** Peer datanode → liveness tick count (`livenessTicks`) when anything last arrived from it. */
  private readonly nodeHeardTick = new Map<number, number>();
  /** Ticks that ran (see `tick`): what a peer's silence is counted in. */
  private livenessTicks = 0;
  /** When the last tick ran (this.clock), to tell a late tick. */
  private lastTickAtMs: number | undefined;
  /** When the last late tick ran (this.clock): a stall of this process ended then (stalledRecently). */
  private stallSeenAtMs = Number.NEGATIVE_INFINITY;
  /** The last tick was late and judged no peer (the next one does). */
  private judgementSkipped = false;
  /** The tick (`ticks`) of the last liveness beats sent. */
  private lastBeatTick = Number.NEGATIVE_INFINITY;
  /** When (this.clock) the last liveness beat went out: the beats' gap is bounded in wall time too (see watchPeerNodes). */
  private lastBeatAtMs = Number.NEGATIVE_INFINITY;
  private readonly beatEveryTicks: number;
  /** First campaigns spread: the bucket's tokens (negative: debt) as of a tick. */
  private readonly campaignTokens = { tokens: Number.POSITIVE_INFINITY, atTick: 0 };
  /** Ticks that ran late (the event loop stalled for more than a tick) and campaigns held, for status and tests. */
  readonly timing = { lateTicks: 0, campaignsHeld: 0 };
  private readonly nodesDown = new Set<number>();
  /**
   * Replicas whose reported state (what a heartbeat's ReplicaStat reads: raft role, term, leader,
   * commit and membership; the applied, conf and snapshot indexes; the state machine) may have
   * changed since the last takeChangedReplicas(): marked after every input that can change it —
   * touch() (a message, a request, a campaign, an open, a dead leader's node), a tick, the end of
   * a ready cycle. A cycle changes its replicas across awaits (the WAL write, applies that read
   * the object store, snapshots), so the replicas of the cycle running now count as changed too.
   */
  private changedReplicas = new Set<Replica<S, R>>();
  /**
   * Further consumers of what changed (changeFeed: the flusher), each its own set, marked at the
   * same points as changedReplicas but never through the protected seams below.
   */
  private readonly changeFeeds: { changed: Set<Replica<S, R>> }[] = [];
  /** The replicas of the ready cycle running now (see changedReplicas). */
  private readonly cycleReplicas = new Set<Replica<S, R>>();
  private peerNodes: number[] = [];
  private peerNodesRefreshTick = 0;
  /** Counts changes of any replica's `peers` (see watchPeerNodes); a change of the hosted replicas counts through membershipChanges. */
  private peersChanges = 0;
  /** peersChanges and membershipChanges when `peerNodes` was last computed. */
  private peerNodesFrom = { peers: -1, membership: -1 };
  /** Counters for metrics and the simulator's coverage report. */
  readonly quiescence = { quiesced: 0, nodesDown: 0, leaderUnreachable: 0 };

  constructor(
    readonly nodeId: number,
    private readonly logEngine: LogEngine,
    private readonly transport: RaftTransport,
    private readonly stateMachines: StateMachineFactory<S>,
    private readonly tuning: RaftTuning,
    private readonly log: Logger,
    /** Time and timers (the ticker, the ready loop's scheduling): systemClock in production. */
    private readonly clock: TimedClock,
    private readonly hooks: RegionServerHooks = {},
  ) {
    // Election timeouts only need to differ between nodes; seed from the node id and time.
    this.rand = new SeededRand((nodeId * 2654435761 + Math.floor(clock.nowMs())) >>> 0);
    this.incarnation = `${Math.floor(clock.nowMs()).toString(36)}.${this.rand.int(2 ** 30).toString(36)}`;
    this.applyRetry = tuning.applyRetry ?? defaultApplyRetry;
    assert(this.applyRetry.backoffMsMin > 0 && this.applyRetry.backoffMsMin <= this.applyRetry.backoffMsMax, 'apply retry backoff: 0 < min <= max');
    this.beatEveryTicks = tuning.beatEveryTicks ?? DEFAULT_BEAT_EVERY_TICKS;
    assert(
      Number.isInteger(this.beatEveryTicks) && this.beatEveryTicks >= 1 && (tuning.quiesceIdleTicks === 0 || tuning.nodeDownAfterTicks >= 2 * this.beatEveryTicks),
      `liveness beats every ${this.beatEveryTicks} ticks: a positive integer, at most half of nodeDownAfterTicks (${tuning.nodeDownAfterTicks})`,
    );
    transport.onRefused?.((peerNodeId) => this.peerRefused(peerNodeId));
  }

  start(): void {
    assert(this.ticker === undefined, 'region server already started');
    this.stopped = false;
    this.ticker = this.clock.setInterval(() => this.tick(), this.tuning.tickMs);
  }

  async stop(): Promise<void> {
    this.ticker?.cancel();
    this.ticker = undefined;
    this.stopped = true;
    for (const replica of this.replicas.values()) this.failPending(replica, this.unavailable('datanode is shutting down'));
    await this.currentCycle.catch(() => {}); // a failed cycle was already reported by onFatal
    // Applies out to the object store finish before the caller closes what they use; their outcome starts no cycle.
    await Promise.all([...this.appliesOut]);
  }

  /** The replica of a region hosted here, unless it was closed or removed (fenced). */
  replica(regionId: string): Replica<S, R> | undefined {
    const replica = this.replicas.get(regionId);
    return replica && !replica.closed ? replica : undefined;
  }

  /**
   * The replica that takes the region's raft messages: a running one, or one removed from its
   * group that still answers raft until it is deleted (R16). The host's admission of raft traffic
   * asks this, not replica() (which hides a removed replica from clients).
   */
  raftReplica(regionId: string): Replica<S, R> | undefined {
    const replica = this.replicas.get(regionId);
    return replica?.answersRaft ? replica : undefined;
  }

  /**
   * The region's replica in this server, also when it is fenced (removed from its group and not
   * yet closed), which replica() hides: the one an open or close of the region meets here.
   */
  hostedReplica(regionId: string): Replica<S, R> | undefined {
    return this.replicas.get(regionId);
  }

  allReplicas(): Replica<S, R>[] {
    return [...this.replicas.values()];
  }

  /** Why the replica of a region failed, if it did (it is then not among the replicas). */
  failure(regionId: string): ReplicaFailure | undefined {
    return this.failed.get(regionId);
  }

  failedReplicas(): ReplicaFailure[] {
    return [...this.failed.values()];
  }

  /** The apply a replica is waiting for the object store to retry, if any. */
  applyStall(regionId: string): ApplyStall | undefined {
    return this.replicas.get(regionId)?.stall;
  }

  /**
   * Opens (or creates) a local replica. Idempotent. Resolves undefined when the replica cannot
   * start (its log is damaged, its snapshot does not load) or failed before: it is then reported
   * by failure() and stays failed until closed (a replacement comes under a fresh peer id).
   */
  async open(spec: ReplicaSpec): Promise<Replica<S, R> | undefined> {
    if (spec.regionId === NODE_BEAT_REGION_ID) throw new RegionDbError(ErrorCode.InvalidArgument, `region id ${JSON.stringify(spec.regionId)} is reserved for node liveness beats`);
    const existing = this.replicas.get(spec.regionId);
    if (existing) return existing;
    if (this.failed.has(spec.regionId)) return undefined;
    const damage = this.logEngine.damage?.(spec.regionId);
    if (damage) {
      this.recordFailure(spec.regionId, spec.selfPeerId, damage.index, damage.reason, undefined);
      return undefined;
    }
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
    let stateMachine: S;
    try {
      stateMachine = this.stateMachines.create(spec.regionId, snapshotData);
    } catch (err) {
      const reason = `region ${spec.regionId}: cannot load the snapshot at index ${snapshot.metadata.index}: ${(err as Error).message}`;
      this.recordFailure(spec.regionId, spec.selfPeerId, snapshot.metadata.index, reason, undefined);
      return undefined;
    }
    const raft = this.createRaft({
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
      preVotePriority: this.tuning.preVotePriority ?? false,
      countLateVotes: this.tuning.countLateVotes ?? false,
    });
    const replica = new Replica<S, R>(spec.regionId, spec.selfPeerId, raft, store, stateMachine, snapshot.metadata.index);
    // The snapshot carries the membership as of its index: at least that new (the exact index of
    // the change is not in it); conf changes replayed from the log set it exactly.
    replica.confIndex = snapshot.metadata.index;
    const conf = raft.confState();
    stateMachine.onMembership?.(conf.voters, conf.learners);
    for (const peer of spec.peers) replica.peers.set(peer.peerId, peer);
    const displaced = this.replicas.get(spec.regionId); // a concurrent open() of the same region
    if (displaced) this.stateMachines.release?.(spec.regionId, displaced.stateMachine);
    this.replicas.set(spec.regionId, replica);
    this.membershipChanges++;
    replica.lastBusyTick = this.ticks;
    const hold = this.firstCampaignDelay();
    if (hold > 0) {
      replica.tickHoldUntil = this.ticks + hold;
      this.timing.campaignsHeld++;
    }
    this.log.info({ regionId: spec.regionId, peerId: spec.selfPeerId, term: raft.term, commit: raft.log.committed }, 'opened replica');
    if (this.hooks.removedReplay !== 'everything') {
      const removalIndex = committedOwnRemoval(store, spec.selfPeerId, snapshot.metadata.index);
      if (removalIndex > 0) {
        try {
          this.reopenRemoved(replica, removalIndex);
        } catch (err) {
          // A membership entry it cannot apply (a damaged context): the replica fails, as one
          // whose replay met that entry in the ready loop would — never a registered replica
          // left half-opened, which a later open() would return as it is.
          this.failReplica(replica, replica.appliedIndex + 1, `region ${spec.regionId}: cannot reach its own removal at ${removalIndex} on reopening: ${(err as Error).message}`);
          return undefined;
        }
      }
    }
    this.touch(replica);
    this.schedule();
    return replica;
  }

  /**
   * A replica reopened with its own removal committed in its durable log, at `removalIndex`
   * (docs/raft-rules.md R16, "Across a restart"; finding E9 in docs/correctness.md):
   * it reaches at once the state that re-applying its log up to its removal reaches — the
   * membership changes up to the removal applied to its core, its peers and its host in log
   * order, applied index and conf index at the removal, fenced (`removed`) — without handing its
   * state machine a single command. Re-applying them could only cost it: a conditional write
   * whose key is not in the memtable reads SSTs, and GC, which counts the leader's membership
   * (G3), may have collected one its old snapshot names; the replica then failed (leaving raft,
   * R16's vote with it) instead of reaching its removal. It serves no one, and nothing reads its
   * state machine but the reports (flushed index, memtable, SSTs: its snapshot's, not what a
   * replay would have left). The core still hands the entries out in the first ready, and
   * applyCommitted applies none of them, as after any removal.
   */
  private reopenRemoved(replica: Replica<S, R>, removalIndex: number): void {
    this.skipToRemoval(replica, removalIndex, 'reopened a replica whose log commits its own removal: membership changes applied up to it, no command re-applied');
  }

  /** reopenRemoved's step, also taken by a replica stalled on its removal (onApplyFailure) once it learns the removal committed. */
  private skipToRemoval(replica: Replica<S, R>, removalIndex: number, what: string): void {
    const from = replica.appliedIndex + 1;
    assert(from <= removalIndex && removalIndex <= replica.raft.log.committed, `region ${replica.regionId}: removal at ${removalIndex} outside (${from - 1}, ${replica.raft.log.committed}]`);
    let commandsSkipped = 0;
    for (const entry of replica.store.entries(from, removalIndex + 1, Number.MAX_SAFE_INTEGER)) {
      assert(entry.index === replica.appliedIndex + 1, () => `region ${replica.regionId}: entry ${entry.index} after ${replica.appliedIndex}`);
      replica.appliedIndex = entry.index;
      if (entry.type === EntryType.ConfChange) this.applyMembershipChange(replica, entry);
      else if (entry.data.byteLength > 0) commandsSkipped++;
    }
    assert(replica.removed && replica.appliedIndex === removalIndex, `region ${replica.regionId}: reopened past its removal at ${removalIndex} but not removed (applied ${replica.appliedIndex})`);
    this.log.info({ regionId: replica.regionId, peerId: replica.selfPeerId, removalIndex, from, commandsSkipped }, what);
  }

  /** Closes a replica; with `destroy` its log is deleted too (it was removed from the region). */
  async close(regionId: string, destroy: boolean): Promise<void> {
    this.failed.delete(regionId);
    this.membershipChanges++;
    const replica = this.replicas.get(regionId);
    if (replica) {
      // A leader whose data stays hands off first (Raft.handOffOnClose): its followers may be
      // asleep, and this node's liveness beats would keep them trusting it (register seeds 3488,
      // 4608). Not on a destroy: the metasrv deletes only a replica its group no longer counts, a
      // failed or given-up one, or every replica of a dropped table — no group waits on it.
      const handOff = !destroy && replica.answersRaft && !this.stopped ? replica.raft.handOffOnClose() : undefined;
      if (handOff) this.sendMessages(replica, [handOff]);
      replica.closed = true; // an apply out stays set (see failReplica); its late outcome is ignored
      this.replicas.delete(regionId);
      this.stateMachines.release?.(regionId, replica.stateMachine);
      this.awake.delete(replica);
      this.touched.delete(replica);
      this.changedReplicas.delete(replica); // gone from allReplicas(); membershipVersion moved
      for (const feed of this.changeFeeds) feed.changed.delete(replica);
      this.failPending(replica, new RegionDbError(ErrorCode.NotFound, `region ${regionId} is no longer hosted on node ${this.nodeId}`), 'the region was closed on this node');
    }
    // The cycle running now may still hold the replica; let it finish before deleting its log.
    await this.currentCycle.catch(() => {});
    if (destroy) await this.logEngine.dropRegion(regionId);
  }

  /** A raft message from another datanode. Unknown regions are dropped (and logged at debug). */
  step(fromNodeId: number, regionId: string, message: Message): void {
    this.heardFrom(fromNodeId);
    if (regionId === NODE_BEAT_REGION_ID) return;
    const replica = this.raftReplica(regionId);
    if (!replica) {
      this.log.debug({ regionId, fromNodeId }, 'raft message for a region not hosted here');
      return;
    }
    if (message.to !== replica.selfPeerId) return; // for an older incarnation of this replica
    // A removed replica steps every raft message like any follower (R16, "The removed replica"):
    // it is never a (pre-)candidate when it applies its removal (a stalled replica starts no
    // campaign: raft.ts `campaignsHeld`), and a snapshot reaching it is below its commit index,
    // which covers its removal, so its core refuses it (P8).
    // A forwarded request (ReadIndex, TransferLeader) names the peer that asked, not the node that sent it.
    const relayed = message.type === MessageType.ReadIndex || message.type === MessageType.TransferLeader;
    if (!relayed && !replica.peers.has(message.from)) {
      replica.peers.set(message.from, { peerId: message.from, nodeId: fromNodeId });
      this.peersChanges++;
    }
    if (message.type === MessageType.ReadIndex) this.voidLeasesIfOverdue(); // a follower's read, forwarded here
    try {
      replica.raft.step(message);
    } catch (err) {
      this.coreFailed(replica, `a ${messageTypeName[message.type] ?? message.type} message from peer ${message.from}`, err);
      return;
    }
    // Stepped after the core: a message of an older term (a deposed leader's) is not contact.
    if (LEADER_CONTACT.has(message.type) && message.term === replica.raft.term && message.from === replica.raft.leader) {
      replica.leaderContact = { atMs: this.clock.nowMs(), term: message.term };
      replica.contactRequestFailedAtMs = undefined;
      this.answerContactRequest(replica);
    }
    // A replica held back from its first campaign that hears from a leader counts ticks again
    // (it has a leader to lose, and no reason left to wait).
    if (replica.tickHoldUntil !== 0 && replica.raft.leader !== NO_NODE) replica.tickHoldUntil = 0;
    this.touch(replica);
    this.schedule();
  }

  /**
   * First campaigns spread: the ticks a replica opened now waits before it counts election ticks.
   * Opens come in bursts (a CreateTable of a thousand regions, a restart reopening every replica);
   * all of them would time out and campaign within one election timeout of each other, each
   * campaign a round of (pre-)votes and fsyncs on every node. A token bucket of first campaigns:
   * `rate` a tick, holding at most `rate × electionTicks` (what one election timeout carries at
   * that rate). An open that finds a token starts counting at once; one that finds the bucket in
   * debt waits until its turn, debt / rate ticks — so a burst of n opens campaigns over about
   * n / rate ticks, each at a random point of its own election timeout after its turn. Holding a
   * follower's ticks only delays when it campaigns: timers never decide safety
   * (docs/quiescence.md). No randomness is drawn.
   */
  private firstCampaignDelay(): number {
    const rate = this.tuning.firstCampaignsPerTick ?? DEFAULT_FIRST_CAMPAIGNS_PER_TICK;
    if (!(rate > 0)) return 0;
    const capacity = rate * this.tuning.electionTicks;
    const bucket = this.campaignTokens;
    bucket.tokens = Math.min(capacity, bucket.tokens + (this.ticks - bucket.atTick) * rate);
    bucket.atTick = this.ticks;
    bucket.tokens -= 1;
    return bucket.tokens >= 0 ? 0 : Math.ceil(-bucket.tokens / rate);
  }

  /**
   * One tick. A tick that runs more than two periods after the last one ran late: this process's
   * event loop was stalled (or too busy to run its timers), and messages that arrived meanwhile
   * wait unread in its sockets — the timers run before the I/O in Node's loop. Such a tick judges
   * no peer down: the next tick does, after the loop has read what queued (a busy receiver is
   * not a silent peer; the metasrv's late-tick rule, finding M3, for the node liveness beats).
   * It still counts as one tick of silence: Node's setInterval does not run the ticks a stall
   * skipped, so a stall adds one tick, not one per period, and a receiver whose every tick is late
   * (an overloaded process) still judges every other tick — it must still notice a dead peer.
   */
  tick(): void {
    this.ticks++;
    const now = this.clock.nowMs();
    const late = this.lastTickAtMs !== undefined && now - this.lastTickAtMs > 2 * this.tuning.tickMs;
    this.lastTickAtMs = now;
    if (late) {
      this.timing.lateTicks++;
      this.stallSeenAtMs = now;
      this.voidLeases();
    }
    this.livenessTicks++;
    // A late tick judges no one, unless the tick before was late and did not judge either.
    const judge = !late || this.judgementSkipped;
    this.judgementSkipped = !judge;
    const quiescence = this.tuning.quiesceIdleTicks > 0;
    if (quiescence) this.watchPeerNodes(judge, late, now);
    for (const replica of this.awake) {
      if (!replica.answersRaft) {
        this.awake.delete(replica);
        continue;
      }
      if (replica.tickHoldUntil === 0 || this.ticks >= replica.tickHoldUntil) {
        replica.tickHoldUntil = 0;
        try {
          replica.raft.tick();
        } catch (err) {
          this.coreFailed(replica, 'a tick', err);
          this.awake.delete(replica);
          continue;
        }
      }
      this.expireReads(replica);
      if (quiescence) this.maybeQuiesce(replica);
      this.touched.add(replica);
      this.changedReplicas.add(replica);
      for (const feed of this.changeFeeds) feed.changed.add(replica);
      // A quiesced replica still waiting on a read (its expiry) or a stalled apply (the retry) stays.
      if (replica.raft.quiesced && replica.reads.size === 0 && !replica.stall) this.awake.delete(replica);
    }
    if (this.touched.size > 0) this.schedule();
  }

  /**
   * Lease reads (raft.read_only = "lease", docs/raft-rules.md R10): the lease is counted in ticks,
   * and ticks stop while this process is stalled (SIGSTOP, a long GC, a descheduled VM) while the
   * other voters' time goes on — they may have elected another leader and committed writes by
   * the time this one runs again and answers a read from its lease (the simulator's `pause` fault:
   * register seed 70 with lease reads). So a stall voids every replica's lease (Raft.suspendLease:
   * its next ReadIndex takes a heartbeat round, and a quorum's answer brings the lease back): seen
   * by a late tick, or before a read is registered while the next tick is overdue (a read handled
   * before the late tick ran). A no-op with "safe" reads.
   */
  protected voidLeases(): void {
    if (this.tuning.readOnly !== 'lease') return;
    for (const replica of this.replicas.values()) if (replica.answersRaft) replica.raft.suspendLease();
  }

  private voidLeasesIfOverdue(): void {
    if (this.tuning.readOnly === 'lease' && this.tickOverdue()) this.voidLeases();
  }

  /** The next tick is overdue: this process is (or was just) stalled and the ticker has not run since. */
  private tickOverdue(): boolean {
    return this.lastTickAtMs !== undefined && this.clock.nowMs() - this.lastTickAtMs > 2 * this.tuning.tickMs;
  }

  /**
   * A stall of this process seen within the stale-read bound (a late tick then, or an overdue
   * one now): a leader may have been deposed meanwhile without hearing so yet (finding E15).
   */
  private stalledRecently(): boolean {
    if (this.tickOverdue()) return true;
    return this.clock.nowMs() - this.stallSeenAtMs <= this.staleReadBoundMs;
  }

  /**
   * Why this node's replica of `regionId` must not serve a stale read (its applied state, without
   * ReadIndex) now; undefined when it may (docs/architecture.md §2, "Reads"; docs/correctness.md
   * 8g). It may while it leads (it counts itself; a leader cut off from its quorum steps down
   * within an election timeout, R9), or while its last leader contact (`leaderContact`: an
   * append, heartbeat, snapshot or quiesce from the leader of its term, which a leader sends only
   * to the peers its configuration counts) is within staleReadBoundMs. So a replica removed
   * without learning it (finding E1), or cut off, refuses once the bound passes, and a replica
   * opened by this process refuses until its first contact. A quiesced follower hears nothing
   * while its region is quiet: the read path asks its leader first (staleReadGate). Pure: the
   * simulator's checker asks it too.
   */
  staleReadRefusal(regionId: string): string | undefined {
    const replica = this.replicas.get(regionId);
    if (!replica) return `region ${regionId} is not hosted on node ${this.nodeId}`;
    if (replica.isLeader()) return undefined;
    const contact = replica.leaderContact;
    if (!contact) return `the replica of region ${regionId} on node ${this.nodeId} has heard from no leader since it was opened (it may have been removed from its group meanwhile)`;
    const sinceMs = this.clock.nowMs() - contact.atMs;
    assert(sinceMs >= 0, () => `region ${regionId}: leader contact ${sinceMs} ms in the future (the clock is monotonic)`);
    const boundMs = this.staleReadBoundMs;
    if (sinceMs <= boundMs) return undefined;
    assert(contact.term <= replica.raft.term, `region ${regionId}: leader contact in term ${contact.term}, above the replica's term ${replica.raft.term}`);
    return (
      `the replica of region ${regionId} on node ${this.nodeId} last heard from a leader counting it ${Math.round(sinceMs)} ms ago ` +
      `(more than ${boundMs} ms, and its leader did not answer within ${this.contactWaitMs} ms when asked): it may have been removed from its group or cut off; read from another replica`
    );
  }

  /**
   * The stale-read gate as the read path asks it (docs/quiescence.md, "Stale reads on a quiesced
   * follower"): undefined when the replica may serve a stale read now, else why not. A follower
   * whose last leader contact is past the bound — a quiesced one whose region has been quiet that
   * long, or one cut off or removed — asks its leader to show it still counts it
   * (Raft.requestLeaderContact: wakes a quiesced leader, whose heartbeats reach only the peers it
   * counts) and waits up to contactWaitMs for that contact; reads arriving meanwhile wait for the
   * same request. A request that went unanswered is not repeated for a bound: until then the gate
   * refuses at once, as it does while the leader's node is taken as down (silent, or refusing).
   * Only the leader's own message in its term is contact, so a replica its group removed — even
   * one that lost every message of its removal while quiesced — never serves past the bound.
   */
  async staleReadGate(regionId: string): Promise<string | undefined> {
    const refusal = this.staleReadRefusal(regionId);
    if (refusal === undefined) return this.leaderAfterStall(regionId);
    const replica = this.replicas.get(regionId);
    if (!replica?.answersRaft || replica.closed || replica.raft.role !== Role.Follower || replica.raft.leader === NO_NODE) return refusal;
    const leaderNode = replica.leaderNodeId();
    if (leaderNode !== undefined && !this.isNodeUp(leaderNode)) return refusal; // its node is taken as down: nobody to ask
    const failedAt = replica.contactRequestFailedAtMs;
    if (failedAt !== undefined && this.clock.nowMs() - failedAt < this.staleReadBoundMs) return refusal;
    const request = replica.contactRequest ?? this.requestLeaderContact(replica);
    await new Promise<void>((resolve) => request.waiters.push(resolve));
    return this.staleReadRefusal(regionId);
  }

  /**
   * Finding E15: a leader vouches for itself (staleReadRefusal) because a leader cut off from its
   * quorum steps down within an election timeout of its ticks — but a stalled process does not
   * tick (SIGSTOP, a long GC, a descheduled VM), and its peers may have elected another leader and
   * written for as long as the stall lasted. Within the stale-read bound after a stall, a leader's
   * stale read first confirms it still leads (a ReadIndex: a heartbeat round a quorum answers),
   * or is refused (sent on to the leader the routes know).
   */
  private async leaderAfterStall(regionId: string): Promise<string | undefined> {
    if (!this.leaderMustConfirm(regionId)) return undefined;
    try {
      await this.readBarrier(regionId);
      return undefined;
    } catch (err) {
      return `the replica of region ${regionId} on node ${this.nodeId} led when this process stalled and could not confirm that it still leads: ${(err as Error).message}`;
    }
  }

  /**
   * Whether this node's replica of `regionId` leads but must confirm so (a ReadIndex) before it
   * serves a stale read: within the bound after a stall of this process (E15). Pure: the
   * simulator's checker asks it too (a replica that cannot confirm serves nothing from its version).
   */
  leaderMustConfirm(regionId: string): boolean {
    return this.replicas.get(regionId)?.isLeader() === true && this.stalledRecently();
  }

  /** Sends the follower's request for leader contact (Raft.requestLeaderContact), given up on after contactWaitMs. */
  private requestLeaderContact(replica: Replica<S, R>): ContactRequest {
    const request: ContactRequest = { waiters: [], timer: undefined };
    replica.contactRequest = request;
    request.timer = this.clock.setTimeout(() => {
      if (replica.contactRequest !== request) return;
      replica.contactRequestFailedAtMs = this.clock.nowMs();
      this.answerContactRequest(replica);
    }, this.contactWaitMs);
    replica.raft.requestLeaderContact();
    this.touch(replica);
    this.schedule();
    return request;
  }

  /** Ends a request for leader contact (answered, given up, or the replica closed): its reads ask the gate again. */
  private answerContactRequest(replica: Replica<S, R>): void {
    const request = replica.contactRequest;
    if (!request) return;
    replica.contactRequest = undefined;
    request.timer?.cancel();
    for (const resolve of request.waiters) resolve();
  }

  /** How long a stale read waits for its leader's answer to a request for contact: one election timeout. */
  get contactWaitMs(): number {
    return this.tuning.electionTicks * this.tuning.tickMs;
  }

  /** The stale-read gate's bound: the longest randomized election timeout (2 × electionTicks ticks; raft.ts), in ms. */
  get staleReadBoundMs(): number {
    return STALE_READ_BOUND_ELECTION_TIMEOUTS * this.tuning.electionTicks * this.tuning.tickMs;
  }

  /** Whether a region is quiesced here (status, tests). */
  isQuiesced(regionId: string): boolean {
    return this.replicas.get(regionId)?.raft.quiesced ?? false;
  }

  /** A replica the next cycle must look at, and that counts ticks again (it may have been woken). */
  private touch(replica: Replica<S, R>): void {
    this.touched.add(replica);
    this.awake.add(replica);
    this.changedReplicas.add(replica);
    for (const feed of this.changeFeeds) feed.changed.add(replica);
  }

  /**
   * A feed of the replicas whose state may have changed (what changedReplicas covers: role, term,
   * leader, indexes, the snapshot, the state machine), for a consumer other than the heartbeat:
   * each call of the returned function gives the replicas marked since its previous call, the
   * ones of the cycle running now included, and starts afresh. The flusher visits only these
   * and the ones it has its own reasons for (src/datanode/flusher.ts).
   */
  changeFeed(): () => Set<Replica<S, R>> {
    const feed = { changed: new Set<Replica<S, R>>() };
    this.changeFeeds.push(feed);
    return () => {
      const changed = feed.changed;
      feed.changed = new Set();
      for (const replica of this.cycleReplicas) changed.add(replica);
      for (const replica of this.replicasApplying) changed.add(replica);
      return changed;
    };
  }

  /**
   * The replicas whose reported state may have changed since the last call (the datanode builds
   * its heartbeat's stats again for these only; docs/quiescence.md, "Heartbeats that carry what
   * changed"), the ones of the cycle running now included; the set starts afresh. Replicas opened,
   * closed or failed since are among them or gone from allReplicas(): the caller also watches
   * `membershipVersion`.
   */
  takeChangedReplicas(): Set<Replica<S, R>> {
    const changed = this.changedReplicas;
    this.changedReplicas = new Set();
    for (const replica of this.replicasInCycle()) changed.add(replica);
    return changed;
  }

  /**
   * The replicas of the cycle running now, and those with an apply out (see changedReplicas). Protected, like
   * markCycleChanged, for the simulator's planted bug `stats-miss-cycle` (test/sim/cluster-sim.ts:
   * a server that marks its inputs but not what its cycles change); nothing in src/ overrides it.
   */
  protected replicasInCycle(): Iterable<Replica<S, R>> {
    return this.replicasApplying.size === 0 ? this.cycleReplicas : [...this.cycleReplicas, ...this.replicasApplying];
  }

  /** What a cycle changed is reported from its end on (see changedReplicas; protected as replicasInCycle). */
  protected markCycleChanged(candidates: readonly Replica<S, R>[]): void {
    for (const replica of candidates) this.changedReplicas.add(replica);
  }

  /** Counts every change of the hosted or failed replicas (open, close, failure): a cache of per-replica state starts over when it moves. */
  get membershipVersion(): number {
    return this.membershipChanges;
  }

  private membershipChanges = 0;

  private heardFrom(nodeId: number): void {
    this.nodeHeardTick.set(nodeId, this.livenessTicks);
    if (this.nodesDown.delete(nodeId)) this.log.info({ nodeId }, 'peer datanode is heard from again');
  }

  private isNodeUp(nodeId: number): boolean {
    const heard = this.nodeHeardTick.get(nodeId);
    return heard !== undefined && this.livenessTicks - heard < this.tuning.nodeDownAfterTicks && !this.nodesDown.has(nodeId);
  }

  /**
   * The transport's connection to `nodeId` was refused: nothing listens at its address, so its
   * process is gone (killed, crashed, restarting). Taken as down at once, as nodeDownAfterTicks
   * of silence would take it (onNodeDown: the followers of its leaders campaign soon), instead of
   * after that silence — most of a failover's detection time when a process dies (docs/quiescence.md,
   * "A refused connection"). A partition does not refuse (its packets are lost, not answered), so
   * the silence count still decides there. Anything heard from the node takes it as up again
   * (heardFrom), as after a silence.
   */
  peerRefused(nodeId: number): void {
    if (nodeId === this.nodeId || this.nodesDown.has(nodeId) || this.fatal) return;
    this.onNodeDown(nodeId, true);
    if (this.touched.size > 0) this.schedule();
  }

  /**
   * One liveness beat to every peer datanode every beatEveryTicks ticks, and at once on a late
   * tick (this process just came back from a stall: its peers have been waiting for a beat that
   * long already); a peer silent too long is taken as down (once; only when `judge`: see `tick`).
   * The silence is still counted per tick: a beat period shorter than the threshold only moves
   * when the last beat of a node that died was sent (docs/quiescence.md).
   *
   * The beats' gap is also bounded in wall time: a beat goes out once (beatEveryTicks - 0.5)
   * tick periods have passed since the last one. A loaded sender whose ticks come every 1.9
   * periods is never late (that takes more than 2), and counting ticks alone it would beat every
   * 3.8 periods, using up most of the receiver's silence threshold on a single lost beat.
   */
  private watchPeerNodes(judge: boolean, late: boolean, now: number): void {
    if (this.ticks >= this.peerNodesRefreshTick) {
      // Computed again only when a replica's peers or the hosted replicas changed since the last
      // time (the same set from the same inputs): at thousands of idle replicas this walk was
      // most of an idle node's tick work.
      const from = this.peerNodesFrom;
      if (from.peers !== this.peersChanges || from.membership !== this.membershipChanges) {
        const nodes = new Set<number>();
        for (const replica of this.replicas.values()) for (const peer of replica.peers.values()) if (peer.nodeId !== this.nodeId) nodes.add(peer.nodeId);
        this.peerNodes = [...nodes];
        this.peerNodesFrom = { peers: this.peersChanges, membership: this.membershipChanges };
      }
      this.peerNodesRefreshTick = this.ticks + PEER_NODES_REFRESH_TICKS;
    }
    const beat = late || this.ticks - this.lastBeatTick >= this.beatEveryTicks || now - this.lastBeatAtMs >= (this.beatEveryTicks - 0.5) * this.tuning.tickMs;
    if (beat) {
      this.lastBeatTick = this.ticks;
      this.lastBeatAtMs = now;
    }
    for (const nodeId of this.peerNodes) {
      if (beat) this.transport.send(nodeId, [{ regionId: NODE_BEAT_REGION_ID, message: NODE_BEAT }]);
      const heard = this.nodeHeardTick.get(nodeId);
      if (heard === undefined) {
        this.nodeHeardTick.set(nodeId, this.livenessTicks); // its silence counts from when we first looked
        continue;
      }
      if (judge && !this.nodesDown.has(nodeId) && this.livenessTicks - heard >= this.tuning.nodeDownAfterTicks) this.onNodeDown(nodeId);
    }
  }

  /** Wakes every follower whose leader lives on `nodeId` and lets it campaign soon (raft.leaderUnreachable). */
  protected onNodeDown(nodeId: number, refused = false): void {
    this.nodesDown.add(nodeId);
    this.quiescence.nodesDown++;
    let woken = 0;
    for (const replica of this.replicas.values()) {
      if (replica.closed || replica.isLeader() || replica.leaderNodeId() !== nodeId) continue;
      replica.raft.leaderUnreachable();
      this.touch(replica);
      woken++;
    }
    this.quiescence.leaderUnreachable += woken;
    const silentTicks = this.livenessTicks - (this.nodeHeardTick.get(nodeId) ?? this.livenessTicks);
    this.log.info({ nodeId, silentTicks, followersWoken: woken }, refused ? 'peer datanode refused a connection: taken as down' : 'peer datanode is silent: taken as down');
  }

  /** A leader idle long enough, with nothing waiting and every follower's node up, asks its core to quiesce (Q1). */
  private maybeQuiesce(replica: Replica<S, R>): void {
    if (!replica.isLeader() || replica.raft.quiesced || this.ticks - replica.lastBusyTick < this.tuning.quiesceIdleTicks) return;
    if (replica.queuedCommands.length > 0 || replica.queuedReads.length > 0 || replica.proposals.size > 0 || replica.reads.size > 0) return;
    if (replica.stall || replica.appliedIndex !== replica.raft.log.committed) return;
    for (const peer of replica.peers.values()) if (peer.nodeId !== this.nodeId && !this.isNodeUp(peer.nodeId)) return;
    if (replica.raft.quiesce()) this.quiescence.quiesced++;
  }

  /** Proposes a command; resolves with the state machine's result once applied locally. */
  propose(regionId: string, command: Uint8Array): Promise<R> {
    const replica = this.leaderReplica(regionId);
    const done = new Promise<R>((resolve, reject) => replica.queuedCommands.push({ command, resolve, reject }));
    this.touch(replica);
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
    if (!replica || replica.closed) throw this.failedError(regionId) ?? this.notFound(regionId);
    if (replica.stall) throw this.stalledError(replica, replica.stall);
    const done = new Promise<void>((resolve, reject) => replica.queuedReads.push({ resolve, reject }));
    this.touch(replica);
    this.schedule();
    return done;
  }

  /**
   * One ReadIndex request for every read queued since the last cycle (as etcd's server does):
   * its index is taken after all of them were requested, so it is a valid read index for each
   * (§6.4 thesis), and N concurrent reads cost one heartbeat round instead of N.
   */
  private requestReadIndex(replica: Replica<S, R>): void {
    this.voidLeasesIfOverdue();
    const group = replica.queuedReads.splice(0);
    const ctx = this.readContext(++this.readSeq);
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
   * The context of this process's `seq`-th ReadIndex request: unique across this node's
   * processes (the incarnation), since a peer may answer a request of an earlier one (finding
   * 8b). Protected so that the simulator can watch the contexts (test/sim/cluster-sim.ts, its
   * read path's counters); nothing overrides what it returns.
   */
  protected readContext(seq: number): string {
    return `${this.nodeId}:${this.incarnation}:${seq}`;
  }

  /**
   * A ReadIndex request forwarded to a leader can be lost with no answer (the leader died, or
   * the message was dropped while a stream reconnected). Such reads fail as PROPOSAL_DROPPED
   * after two election timeouts so the client retries, instead of hanging to its deadline.
   */
  private expireReads(replica: Replica<S, R>): void {
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
    // Its core counts the entries behind an apply out to the store as applied, a membership change
    // among them included, which its configuration does not hold yet: no second change meanwhile.
    const applying = replica.applying;
    if (applying) throw this.unavailable(`region ${regionId} on node ${this.nodeId} is applying index ${applying.index} (waiting for the object store); retry the membership change`);
    const { index, term } = replica.raft.proposeConfChange(cc);
    const done = new Promise<R | undefined>((resolve, reject) =>
      replica.proposals.set(index, { term, resolve: resolve as (r: R) => void, reject }),
    );
    this.touch(replica);
    this.schedule();
    return done;
  }

  transferLeader(regionId: string, toPeerId: number): void {
    const replica = this.replicas.get(regionId);
    if (!replica) throw this.notFound(regionId);
    try {
      replica.raft.transferLeader(toPeerId);
    } catch (err) {
      throw this.coreFailed(replica, 'a leadership transfer', err);
    }
    this.touch(replica);
    this.schedule();
  }

  /**
   * Campaigns now (the metasrv's failover nudge). A replica whose apply is stalled starts no
   * campaign (raft.ts `campaignsHeld`, R16): it is refused as UNAVAILABLE, which the caller may
   * retry or take elsewhere, instead of doing nothing and saying nothing.
   */
  campaign(regionId: string): void {
    const replica = this.replicas.get(regionId);
    if (!replica) throw this.notFound(regionId);
    if (replica.stall) throw this.stalledError(replica, replica.stall);
    if (replica.applying?.membershipBehind) throw this.unavailable(`region ${regionId} on node ${this.nodeId} starts no campaign before a membership change waiting behind its apply of index ${replica.applying.index} (the object store) is applied`);
    replica.tickHoldUntil = 0; // asked to campaign now: no longer held back
    try {
      replica.raft.campaign();
    } catch (err) {
      throw this.coreFailed(replica, 'a campaign', err);
    }
    this.touch(replica);
    this.schedule();
  }

  /**
   * A call into a replica's raft core from outside the ready loop (a message, a tick, a campaign
   * or a transfer asked for) threw. The core asserts its invariants (`becomeLeader`: a leader is in
   * its own configuration, which R16 argues a removed replica never breaks); a failed assertion
   * thrown on through a raft stream's handler or the tick timer would end the process and every
   * region on it. What happens instead is the host's choice (RegionServerHooks.coreFailure): by
   * default this replica fails (failReplica: fenced, out of raft, reported failed and replaced by
   * the metasrv under a fresh peer id), its core's state no longer trusted; under `fatal` the whole
   * server stops (onFatal). The core's checks are unchanged. Returns the error for a caller that
   * asked (UNAVAILABLE).
   */
  private coreFailed(replica: Replica<S, R>, what: string, err: unknown): RegionDbError {
    const reason = `region ${replica.regionId}: the raft core failed during ${what}: ${err instanceof Error ? err.message : String(err)}`;
    if (this.hooks.coreFailure === 'fatal') {
      if (!this.fatal) this.onFatal(new Error(reason, { cause: err }));
      return this.unavailable(reason);
    }
    this.failReplica(replica, replica.appliedIndex, reason);
    return this.failedError(replica.regionId) ?? new RegionDbError(ErrorCode.Unavailable, reason);
  }

  leaderReplica(regionId: string): Replica<S, R> {
    if (this.fatal) throw this.unavailable(`datanode stopped serving after a fatal storage error: ${this.fatal.message}`);
    const replica = this.replicas.get(regionId);
    if (!replica || replica.closed) throw this.failedError(regionId) ?? this.notFound(regionId);
    // A stalled leader would commit what it cannot apply (and, with its membership not applied,
    // must not start a second change): it takes nothing new until it catches up.
    if (replica.stall) throw this.stalledError(replica, replica.stall);
    const applying = replica.applying;
    if (applying && replica.isLeader()) {
      const refusal = this.applyingRefusal(replica, applying);
      if (refusal) throw refusal;
    }
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
    this.clock.setImmediate(() => {
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
    for (const replica of this.touched) if (replica.raft.hasReady() || replica.queuedCommands.length > 0 || replica.queuedReads.length > 0) return true;
    return false;
  }

  private async cycle(): Promise<void> {
    if (this.fatal) return;
    const candidates = [...this.touched].filter((replica) => this.replicas.get(replica.regionId) === replica);
    this.touched.clear();
    for (const replica of candidates) this.cycleReplicas.add(replica);
    // Inline (no nested call: the cycle's awaits, and so every simulator trace, stay as they were).
    try {
      for (const replica of candidates) {
        const applying = replica.applying;
        if (applying?.outcome) this.finishApply(replica, applying);
        if (replica.stall && !replica.applying && this.clock.nowMs() >= replica.stall.retryAtMs) await this.retryStalledApply(replica, replica.stall);
      }
      const work: [Replica<S, R>, Ready][] = [];
      for (const replica of candidates) {
        if (!replica.answersRaft) continue;
        if (replica.queuedCommands.length > 0 || replica.queuedReads.length > 0) replica.lastBusyTick = this.ticks;
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
      // (those must be durable before anyone hears of them) and no snapshot (maySendBeforePersist
      // in src/raft/host-rules.ts, the one copy of the rule).
      const early = work.filter(([replica, rd]) => this.maySendBeforePersist(replica, rd));
      this.send(early);
      if (needsWrite) await batch.commit(); // throws a fatal error if the sync failed
      if (this.fatal) return; // a core exception meanwhile under `coreFailure: 'fatal'`: the server stopped

      // 3. Everything else is sent only now, after the write is durable (P1). A replica that failed
      // while the batch was written (a core exception stepping or ticking it meanwhile, coreFailed)
      // is driven no further: nothing sent, no soft state, nothing applied to the state machine its
      // failure released. Its entries are in the WAL, kept as a failed replica's are.
      this.send((early.length === 0 ? work : work.filter((w) => !early.includes(w))).filter(([replica]) => replica.failure === undefined));

      // 4–5. Apply and advance. A replica that fails here leaves the loop at once (no advance); so
      // does one that failed meanwhile (a core exception while an earlier replica's apply awaited).
      for (const [replica, rd] of work) {
        if (replica.failure) continue;
        if (rd.softState) this.onSoftState(replica, rd);
        if (rd.snapshot && !this.installSnapshot(replica, rd.snapshot)) continue;
        // A removed replica applies nothing after its removal (applyCommitted): its state machine
        // only waits to be deleted, and it serves no one (R16, "The removed replica").
        await this.applyCommitted(replica, rd.committedEntries);
        if (replica.failure) continue;
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
        if (rd.entries.length > 0 || rd.committedEntries.length > 0 || rd.snapshot || rd.readStates.length > 0) replica.lastBusyTick = this.ticks;
        replica.raft.advance(rd);
        this.releaseReads(replica);
        if (replica.raft.hasReady()) this.touched.add(replica); // advance() can leave work (a commit, more entries to apply)
      }
      for (const [replica] of work) await this.maybeSnapshot(replica);
    } finally {
      this.cycleReplicas.clear();
      this.markCycleChanged(candidates);
      for (const feed of this.changeFeeds) for (const replica of candidates) feed.changed.add(replica);
    }
  }

  /** Replaces the state machine with a snapshot's (§7); false when it does not load (the replica failed). */
  private installSnapshot(replica: Replica<S, R>, snapshot: Snapshot): boolean {
    const { index, confState } = snapshot.metadata;
    let stateMachine: S;
    try {
      stateMachine = this.stateMachines.create(replica.regionId, snapshot.data);
    } catch (err) {
      this.failReplica(replica, index, `region ${replica.regionId}: cannot load the raft snapshot at index ${index}: ${(err as Error).message}`);
      return false;
    }
    // Released: the one replaced, or this one if the replica was closed meanwhile (the cycle
    // awaited the log write; close() released the replica's state machine then).
    const live = this.replicas.get(replica.regionId) === replica;
    this.stateMachines.release?.(replica.regionId, live ? replica.stateMachine : stateMachine);
    replica.stateMachine = stateMachine;
    stateMachine.onMembership?.(confState.voters, confState.learners);
    replica.appliedIndex = index;
    replica.confIndex = index;
    this.resetPeersFromConf(replica, confState);
    replica.snapshotInstalledIndex = index;
    this.hooks.onSnapshotInstalled?.(replica.regionId, index);
    this.log.info({ regionId: replica.regionId, index }, 'installed raft snapshot');
    const applying = replica.applying;
    if (applying) {
      // The apply out to the store was on the state machine just replaced: its outcome is dropped
      // (its proposal, if it settles, was answered from the state before the entry, as any
      // replica's apply answers). The core takes a snapshot only above its commit index, so it
      // covers every entry that waited behind the apply.
      replica.applying = undefined;
      this.replicasApplying.delete(replica);
      this.holdCampaigns(replica);
      assert(index >= applying.upTo, () => `region ${replica.regionId}: snapshot at ${index} below the entries waiting up to ${applying.upTo}`);
    }
    const stall = replica.stall;
    if (stall) {
      // The snapshot may carry the state the replica could not compute (the leader's newer SSTs).
      if (index >= stall.upTo) {
        this.endStall(replica);
        this.log.info({ regionId: replica.regionId, index }, 'a snapshot replaced the stalled apply; the replica caught up');
      } else {
        stall.retryAtMs = this.clock.nowMs();
      }
    }
    return true;
  }

  /**
   * Applies committed entries in order; a stalled replica, or one with an apply out to the object
   * store, only notes them (they are applied from the log once it catches up). Async only so that
   * the cycle's awaits stay where they were (the simulator's traces): nothing here waits.
   */
  private async applyCommitted(replica: Replica<S, R>, entries: readonly Entry[]): Promise<void> {
    if (entries.length === 0) return;
    const last = entries[entries.length - 1]!.index;
    const applying = replica.applying;
    if (applying) {
      applying.upTo = Math.max(applying.upTo, last);
      if (!applying.membershipBehind && entries.some((e) => e.type === EntryType.ConfChange)) {
        applying.membershipBehind = true;
        this.holdCampaigns(replica);
      }
      return;
    }
    if (replica.stall) {
      replica.stall.upTo = Math.max(replica.stall.upTo, last);
      return;
    }
    this.applyInOrder(replica, entries, last, undefined);
  }

  /**
   * Applies `entries` (committed, in order, the first at appliedIndex + 1 or below it) up to the
   * first whose apply must wait for the object store, which goes out off the ready loop
   * (applyOffLoop; the rest wait behind it, up to `upTo`). True when every entry was applied.
   */
  private applyInOrder(replica: Replica<S, R>, entries: readonly Entry[], upTo: number, stall: ApplyStall | undefined): boolean {
    for (let i = 0; i < entries.length; i++) {
      if (replica.removed) return true; // nothing after its own removal (R16, "The removed replica")
      const entry = entries[i]!;
      const pending = this.applyEntry(replica, entry);
      if (!pending) continue;
      let membershipBehind = false;
      for (let j = i + 1; j < entries.length && !membershipBehind; j++) membershipBehind = entries[j]!.type === EntryType.ConfChange;
      // A slice of the log (applyFromLog) may end before `upTo`: what waits past it is in the log.
      const sliceEnd = entries[entries.length - 1]!.index;
      if (!membershipBehind && sliceEnd < upTo) membershipBehind = replica.store.entries(sliceEnd + 1, upTo + 1, Number.MAX_SAFE_INTEGER).some((e) => e.type === EntryType.ConfChange);
      this.applyOffLoop(replica, entry.index, upTo, membershipBehind, stall, pending);
      return false;
    }
    return true;
  }

  /**
   * An apply that waits for the object store (a conditional write reading SSTs, a standby
   * release) goes out off the ready loop: the cycle goes on for every replica of the node, this
   * one included — it appends, acknowledges, votes and sends as before — while its committed
   * entries wait behind the apply (applyCommitted notes them). The outcome is picked up by the
   * first cycle after it settles (finishApply), never here: the replica is only changed inside a
   * cycle. The late outcome of a replica closed or failed meanwhile (it keeps `applying`, so that a
   * cycle still holding its entries finds them waiting), or given a snapshot (which drops
   * `applying`), is ignored.
   */
  private applyOffLoop(replica: Replica<S, R>, index: number, upTo: number, membershipBehind: boolean, stall: ApplyStall | undefined, pending: Promise<RegionDbError | undefined>): void {
    let applying: ApplyInFlight | undefined;
    /** Sets the outcome; true when nothing takes it up any more (dropped, closed, stopped). */
    const landedLate = (failure: RegionDbError | undefined): boolean => {
      applying!.outcome = { failure };
      if (replica.applying === applying && !replica.closed && !this.stopped) return false;
      this.replicasApplying.delete(replica);
      return true;
    };
    const settled = pending.then(
      (failure) => {
        if (landedLate(failure)) return;
        this.touch(replica);
        this.schedule();
      },
      (err: unknown) => {
        // applyEntry's handlers do not throw; if one did, the replica cannot know what it applied.
        if (landedLate(undefined)) return;
        this.failReplica(replica, index, `region ${replica.regionId}: the apply of index ${index} threw: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
    applying = { index, sinceMs: this.clock.nowMs(), upTo, membershipBehind, stall, outcome: undefined, settled };
    replica.applying = applying;
    this.replicasApplying.add(replica);
    this.appliesOut.add(settled);
    settled.then(() => this.appliesOut.delete(settled));
    this.holdCampaigns(replica);
  }

  /** The apply out to the object store settled: apply what waited behind it, or stall on its failure. */
  private finishApply(replica: Replica<S, R>, applying: ApplyInFlight): void {
    const failure = applying.outcome!.failure;
    replica.applying = undefined;
    this.replicasApplying.delete(replica); // in this cycle's candidates: still reported as changed
    this.holdCampaigns(replica);
    const stall = applying.stall;
    if (failure) {
      // Nothing was applied (applyEntry left appliedIndex below the entry).
      this.onApplyFailure(replica, applying.index, applying.upTo, failure, stall && applying.index === stall.index ? stall : undefined);
      if (stall && replica.stall && replica.stall !== stall) this.log.warn({ regionId: replica.regionId, index: applying.index }, 'apply progressed, then stalled again');
      return;
    }
    replica.appliedIndex = applying.index;
    if (this.applyFromLog(replica, applying.upTo, stall) && stall) this.stallCaughtUp(replica, stall);
    this.releaseReads(replica); // also when the next apply went out: the reads below it are served
  }

  /** Applies the committed entries from appliedIndex + 1 to `upTo`, read from the log; true when all were applied. */
  private applyFromLog(replica: Replica<S, R>, upTo: number, stall: ApplyStall | undefined): boolean {
    while (replica.appliedIndex < upTo && !replica.removed) {
      // In slices of about a raft message's bytes (at least one entry each): a long wait can leave many behind.
      const entries = replica.store.entries(replica.appliedIndex + 1, upTo + 1, limits.raftMaxSizePerMsgBytes);
      if (!this.applyInOrder(replica, entries, upTo, stall)) return false;
    }
    return true;
  }

  /**
   * A replica starts no campaign while its core counted committed entries applied that its state
   * machine has not applied, if they may hold a membership change: a stalled one (any entry), one
   * with an apply out and a membership change behind it (R16: its own removal may be there).
   */
  private holdCampaigns(replica: Replica<S, R>): void {
    replica.raft.campaignsHeld = replica.stall !== undefined || replica.applying?.membershipBehind === true;
  }

  /**
   * Why a leader with an apply out takes no proposal now (UNAVAILABLE, not proposed: retry), or
   * undefined. (1) A membership change waits behind the apply: its core counts it applied, so it
   * would append past its own removal (R16) — the refusal a stalled leader makes. (2) Its log runs
   * APPLY_BEHIND_ENTRIES_MAX past what it applied: the wait is long, and the entries behind it are
   * neither applied nor compacted (no snapshot is taken meanwhile).
   */
  private applyingRefusal(replica: Replica<S, R>, applying: ApplyInFlight): RegionDbError | undefined {
    if (applying.membershipBehind) {
      return this.unavailable(`region ${replica.regionId} on node ${this.nodeId} takes no proposal before a membership change waiting behind its apply of index ${applying.index} (the object store) is applied; retry`);
    }
    if (replica.raft.log.lastIndex() - replica.appliedIndex >= APPLY_BEHIND_ENTRIES_MAX) {
      return this.unavailable(`region ${replica.regionId} on node ${this.nodeId} has ${APPLY_BEHIND_ENTRIES_MAX} entries waiting behind its apply of index ${applying.index} (the object store, for ${Math.round(this.clock.nowMs() - applying.sinceMs)} ms); retry`);
    }
    return undefined;
  }

  /**
   * An apply failed on the object store. Entries stay in the log (raft has handed them out, the
   * region server applies them itself from the log, in order). A missing or damaged object
   * cannot come back: the replica fails at once; an unreachable store is retried with backoff.
   */
  private onApplyFailure(replica: Replica<S, R>, index: number, upTo: number, err: RegionDbError, stall: ApplyStall | undefined): void {
    const nowMs = this.clock.nowMs();
    // A missing or damaged object will not come back, but a replica whose log holds its own
    // removal above this entry may only be replaying what it never needed to: see ownRemovalAhead.
    const removal = isTransient(err) ? 0 : this.ownRemovalAhead(replica, index);
    if (!isTransient(err) && removal === 0) {
      this.failReplica(replica, index, `region ${replica.regionId} cannot apply index ${index}: ${err.message}`);
      return;
    }
    if (removal === 0 && stall && nowMs - stall.sinceMs >= this.applyRetry.windowMs) {
      const reason = `region ${replica.regionId} cannot apply index ${index}: ${err.message} (retried for ${Math.round(nowMs - stall.sinceMs)} ms, ${stall.attempts} attempts)`;
      this.failReplica(replica, index, reason);
      return;
    }
    const attempts = (stall?.attempts ?? 0) + 1;
    // Waiting on its removal, the replica only looks at its commit index again: no backoff to grow.
    const backoffMs = removal > 0 ? this.applyRetry.backoffMsMax : Math.min(this.applyRetry.backoffMsMax, this.applyRetry.backoffMsMin * 2 ** Math.min(attempts - 1, 30));
    const awaitingRemoval = removal > 0 ? removal : undefined;
    if (stall) {
      stall.attempts = attempts;
      stall.retryAtMs = nowMs + backoffMs;
      stall.lastError = err.message;
      stall.upTo = Math.max(stall.upTo, upTo);
      stall.awaitingRemoval = awaitingRemoval;
    } else {
      replica.stall = { index, upTo, sinceMs: nowMs, attempts, retryAtMs: nowMs + backoffMs, lastError: err.message, awaitingRemoval };
      // Its core counted the stalled entries applied: it must not campaign until they are (R16,
      // "The removed replica": a committed removal of this replica may be among them).
      replica.raft.campaignsHeld = true;
      // Reads waiting for this replica to apply would hang until it catches up: fail them now
      // (retriable); proposals stay, their entries are committed and will apply.
      const refusal = this.stalledError(replica, replica.stall);
      for (const queued of replica.queuedReads.splice(0)) queued.reject(refusal);
      for (const read of replica.reads.values()) read.reject(refusal);
      replica.reads.clear();
      if (removal > 0) {
        this.log.warn(
          { regionId: replica.regionId, index, err: err.message, removalIndex: removal },
          'apply failed for good, but the log holds this replica\'s own removal above it: the replica stalls (still voting) until it learns whether its removal committed',
        );
      } else {
        this.log.warn({ regionId: replica.regionId, index, err: err.message, retryInMs: backoffMs }, 'apply failed on the object store; the replica stalls and retries');
      }
    }
  }

  /**
   * The index of an entry above `index` in the replica's log that removes this replica, not known
   * to be committed (above its durable commit index); 0 if none (docs/correctness.md, E10). A
   * replica that appended and acknowledged its own removal, then restarted before it learnt the
   * removal committed, re-applies its log up to its commit index; a command there may read an SST
   * that GC collected once the leader applied the removal (G3 counts the leader's membership), so
   * the apply fails for good. Failing the replica would take it out of raft, and in the 4 → 3
   * window its vote is one the remaining voters may need (R16, "Across a restart"). It cannot
   * skip the commands either: unknown to it, the removal may not have committed, and a new leader
   * may cut it off its log. So it stalls — answering raft, starting no campaign — until it learns
   * more: a commit index covering the removal (it then reaches its removal as a reopened replica
   * does, reopenRemoved), a snapshot (installSnapshot), or a log in which the removal is gone (the
   * retry applies again and fails, this time for good).
   */
  private ownRemovalAhead(replica: Replica<S, R>, index: number): number {
    if (this.hooks.removedReplay === 'everything') return 0;
    // The core's log, stable and unstable: an append stepped since the last ready holds entries the
    // log engine has not written yet (reading those from the engine throws, and would stop the node).
    const last = replica.raft.log.lastIndex();
    if (last <= index) return 0;
    // A snapshot stepped but not installed yet replaces the log below it: what it holds is not
    // readable here (the next ready installs it, and installSnapshot ends the stall).
    if (replica.raft.log.unstable.snapshot !== null || index + 1 < replica.raft.log.firstIndex()) return 0;
    return firstOwnRemoval(replica.raft.log.slice(index + 1, last + 1, Number.MAX_SAFE_INTEGER), replica.selfPeerId); // a damaged entry: 0, the replica fails as before
  }

  /** The stalled apply caught up: the replica may campaign again. */
  private endStall(replica: Replica<S, R>): void {
    replica.stall = undefined;
    this.holdCampaigns(replica);
  }

  /** A stall's retry applied every entry it waited for (directly, or through an apply that went out). */
  private stallCaughtUp(replica: Replica<S, R>, stall: ApplyStall): void {
    this.endStall(replica);
    this.log.info({ regionId: replica.regionId, from: stall.index, to: replica.appliedIndex, attempts: stall.attempts }, 'stalled apply succeeded; the replica caught up');
  }

  /** Applies the entries a stalled replica left in its log, in order, from where it stopped. */
  private async retryStalledApply(replica: Replica<S, R>, stall: ApplyStall): Promise<void> {
    const removal = stall.awaitingRemoval;
    if (removal !== undefined && replica.raft.log.unstable.snapshot !== null) {
      stall.retryAtMs = this.clock.nowMs() + this.applyRetry.backoffMsMax; // this cycle's ready installs it (ending the stall if it reaches upTo)
      return;
    }
    if (removal !== undefined) {
      // The store's hard state: the ready whose committed entries reach a membership change makes
      // its commit durable before they are applied (requireDurableCommit), and this retry runs in
      // a later cycle, so a commit read here covering the removal is on disk.
      if (committedOwnRemoval(replica.store, replica.selfPeerId, replica.appliedIndex) === removal) {
        // Its removal committed (durably): reach it as a reopened replica does, without the commands.
        this.endStall(replica);
        this.skipToRemoval(replica, removal, 'a stalled replica learnt that its own removal committed: membership changes applied up to it, no command re-applied');
        return;
      }
      if (this.ownRemovalAhead(replica, stall.index - 1) === removal) {
        stall.retryAtMs = this.clock.nowMs() + this.applyRetry.backoffMsMax; // not known yet: keep waiting
        return;
      }
      // The removal is gone from its log (a new leader cut it off): apply again. A missing object
      // fails it for good; an unreachable store gets its own retry window, counted from now.
      stall.awaitingRemoval = undefined;
      stall.sinceMs = this.clock.nowMs();
      stall.attempts = 0;
    }
    assert(replica.appliedIndex + 1 >= stall.index, `region ${replica.regionId}: stalled at ${stall.index} but applied only ${replica.appliedIndex}`);
    // The retry's apply, if it must wait for the store, goes out off the loop as any apply does;
    // finishApply then goes on from it (or stalls again), the replica stalled meanwhile.
    if (!this.applyFromLog(replica, stall.upTo, stall)) return;
    this.stallCaughtUp(replica, stall);
    this.releaseReads(replica);
  }

  /**
   * The replica stops for good (see the top of this file): fenced, out of the ready loop, its
   * WAL untouched, reported by failure() until the region is closed or replaced.
   */
  private failReplica(replica: Replica<S, R>, index: number, reason: string): void {
    const live = this.replicas.get(replica.regionId) === replica; // not released by close() yet
    this.membershipChanges++;
    replica.closed = true;
    replica.stall = undefined;
    // `applying` stays: a cycle awaiting its write may still hold this replica's committed entries,
    // and must find them waiting behind the apply (applyCommitted), not apply them past a gap.
    if (live) {
      this.replicas.delete(replica.regionId);
      this.stateMachines.release?.(replica.regionId, replica.stateMachine);
      replica.failure = this.recordFailure(replica.regionId, replica.selfPeerId, index, reason, replica);
      // A failed replica makes no more readies, so no soft state will say it stopped leading (or
      // campaigning): its host hears it here, once (the datanode's leader gauge).
      if (replica.raft.role !== Role.Follower) this.hooks.onRoleChange?.(replica.regionId, roleName[Role.Follower], NO_NODE, replica.raft.term);
    } else {
      // Closed while the cycle that failed it was in flight: the region's entry and its failure
      // record may be a newer replica's by now (opened after the close), neither of them this
      // one's to touch (finding M18 in docs/correctness.md). The close released its state
      // machine; the failure stays on the replica object (the cycle stops driving it).
      replica.failure = this.describeFailure(replica.regionId, replica.selfPeerId, index, reason, replica);
      this.log.warn({ regionId: replica.regionId, peerId: replica.selfPeerId, index, reason }, 'a replica closed meanwhile failed; not recorded against the region (no longer this replica)');
    }
    // Proposals waiting here may still commit under another leader: their outcome is unknown.
    this.failPending(replica, this.outcomeUnknown(replica, `the replica on node ${this.nodeId} failed (${reason})`));
  }

  private recordFailure(regionId: string, selfPeerId: number, index: number, reason: string, replica: Replica<S, R> | undefined): ReplicaFailure {
    const failure = this.describeFailure(regionId, selfPeerId, index, reason, replica);
    this.failed.set(regionId, failure);
    this.membershipChanges++;
    this.log.error({ regionId, peerId: selfPeerId, index, reason }, 'replica failed: it stops (fenced, out of raft) until the metasrv replaces it; the node keeps serving its other regions');
    return failure;
  }

  private describeFailure(regionId: string, selfPeerId: number, index: number, reason: string, replica: Replica<S, R> | undefined): ReplicaFailure {
    const st = replica?.raft.status();
    return {
      regionId,
      selfPeerId,
      index,
      reason,
      sinceMs: this.clock.nowMs(),
      term: st?.term ?? 0,
      commitIndex: st?.commit ?? 0,
      appliedIndex: replica?.appliedIndex ?? 0,
      confIndex: replica?.confIndex ?? 0,
      voters: st ? [...st.confState.voters] : [],
      learners: st ? [...st.confState.learners] : [],
    };
  }

  /**
   * The raft core of a replica. Protected so that the whole-datanode simulator can run the core
   * with a test-only planted bug in a subclass (test/sim/cluster-sim.ts); nothing in src/ overrides it.
   */
  protected createRaft(config: RaftConfig): Raft {
    return new Raft(config);
  }

  /**
   * The one rule (src/raft/host-rules.ts), shared with the raft-core simulator. Protected so that
   * the whole-datanode simulator can replace it in a test-only subclass with a broken rule and
   * show it finds the bug (test/sim/cluster-sim.ts); nothing in src/ overrides it.
   */
  protected maySendBeforePersist(replica: Replica<S, R>, rd: Ready): boolean {
    if (rd.messages.length === 0) return false;
    return maySendBeforePersist(replica.isLeader(), rd, replica.store.initialState().hardState);
  }

  /** Hands the messages of these readies to the transport, grouped per destination datanode. */
  private send(work: readonly [Replica<S, R>, Ready][]): void {
    const outgoing = new Map<number, RaftEnvelope[]>();
    for (const [replica, rd] of work) this.addressed(replica, rd.messages, outgoing);
    for (const [nodeId, envelopes] of outgoing) this.transport.send(nodeId, envelopes);
  }

  /** One replica's messages outside a cycle (a closing leader's hand-off), to the transport at once. */
  private sendMessages(replica: Replica<S, R>, messages: readonly Message[]): void {
    const outgoing = new Map<number, RaftEnvelope[]>();
    this.addressed(replica, messages, outgoing);
    for (const [nodeId, envelopes] of outgoing) this.transport.send(nodeId, envelopes);
  }

  /** Adds `messages` of `replica` to `outgoing`, per destination datanode (dropped, with a warning, for a peer without an address). */
  private addressed(replica: Replica<S, R>, messages: readonly Message[], outgoing: Map<number, RaftEnvelope[]>): void {
    for (const message of messages) {
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

  /**
   * Applies one committed entry; returns a promise only when the state machine needed I/O. The
   * promise resolves to the error when the apply failed on the object store: nothing was applied
   * (the entry is to be applied again), which is not a property of the command.
   */
  private applyEntry(replica: Replica<S, R>, entry: Entry): Promise<RegionDbError | undefined> | undefined {
    if (entry.index <= replica.appliedIndex) return undefined;
    assert(entry.index === replica.appliedIndex + 1, () => `region ${replica.regionId}: apply ${entry.index} after ${replica.appliedIndex}`);
    replica.appliedIndex = entry.index;
    if (entry.type === EntryType.ConfChange) {
      this.applyMembershipChange(replica, entry);
      this.settle(replica, entry, undefined, undefined);
      return undefined;
    }
    if (entry.data.byteLength === 0) {
      this.settle(replica, entry, undefined, undefined);
      return undefined;
    }
    let out: R | Promise<R>;
    try {
      out = replica.stateMachine.apply(entry.index, entry.data, entry.term);
    } catch (err) {
      // A command that fails validation at apply time fails the same way on every replica.
      this.settle(replica, entry, undefined, err instanceof Error ? err : new Error(String(err)));
      return undefined;
    }
    if (!(out instanceof Promise)) {
      this.settle(replica, entry, out, undefined);
      return undefined;
    }
    // Not applied until it settles (finishApply raises appliedIndex then, inside a cycle): no read
    // is released, and no snapshot taken, on the state before it.
    replica.appliedIndex = entry.index - 1;
    return out.then(
      (result) => {
        this.settle(replica, entry, result, undefined);
        return undefined;
      },
      (err: unknown) => {
        // Object storage failing is not a property of the command: applying it as a failure
        // would diverge from the replicas that could read. Nothing was applied; try again later.
        if (isRegionDbError(err, ErrorCode.StorageUnavailable)) return err;
        this.settle(replica, entry, undefined, err instanceof Error ? err : new Error(String(err)));
        return undefined;
      },
    );
  }

  /** Applies a committed membership change (a ConfChange entry at replica.appliedIndex) to the core, the peers and the host. */
  private applyMembershipChange(replica: Replica<S, R>, entry: Entry): void {
    assert(entry.type === EntryType.ConfChange && entry.index === replica.appliedIndex, `region ${replica.regionId}: membership change ${entry.index} applied at ${replica.appliedIndex}`);
    const cc = decodeConfChange(entry.data);
    if (cc.context) {
      const info = JSON.parse(cc.context) as { nodeId?: number };
      if (typeof info.nodeId === 'number') {
        replica.peers.set(cc.nodeId, { peerId: cc.nodeId, nodeId: info.nodeId });
        this.peersChanges++;
      }
    }
    const confState = replica.raft.applyConfChange(cc);
    replica.confIndex = entry.index;
    replica.stateMachine.onMembership?.(confState.voters, confState.learners);
    this.log.info({ regionId: replica.regionId, index: entry.index, confState }, 'applied membership change');
    if (removesPeer(cc, replica.selfPeerId)) {
      // Removed from the region: fenced at once (no reads, no writes), but it still answers
      // raft until the host deletes it (`removed`; docs/raft-rules.md R16, "The removed replica").
      replica.closed = true;
      replica.removed = true;
      this.failPending(replica, new RegionDbError(ErrorCode.NotFound, `replica ${replica.selfPeerId} was removed from region ${replica.regionId}`), 'this replica was removed from the region');
      this.log.warn({ regionId: replica.regionId, peerId: replica.selfPeerId }, 'this replica was removed from the region; fenced');
    }
    // Only the region's replica here tells the host: one closed meanwhile (its cycle was in
    // flight) is not the region any more, and the host acts by region id — it would delete the
    // region, or write this replica's peers into the meta of the one opened since (finding
    // M19 in docs/correctness.md). A reopened replica applies the change again from its log.
    if (this.replicas.get(replica.regionId) === replica) this.hooks.onConfChange?.(replica.regionId, confState, [...replica.peers.values()]);
  }

  /** Resolves or rejects the proposal waiting for this entry, if any. */
  private settle(replica: Replica<S, R>, entry: Entry, result: R | undefined, error: Error | undefined): void {
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

  private releaseReads(replica: Replica<S, R>): void {
    for (const [ctx, read] of replica.reads) {
      if (read.index < 0 || replica.appliedIndex < read.index) continue;
      replica.reads.delete(ctx);
      read.resolve();
    }
  }

  private onSoftState(replica: Replica<S, R>, rd: Ready): void {
    const soft = rd.softState!;
    this.log.info({ regionId: replica.regionId, role: roleName[soft.role], leader: soft.leader, term: replica.raft.term }, 'raft role changed');
    this.hooks.onRoleChange?.(replica.regionId, roleName[soft.role], soft.leader, replica.raft.term);
    if (soft.role !== Role.Leader) {
      // Proposals in flight may still commit under the next leader (docs/raft-rules.md R21): their
      // outcome is unknown; clients retry with the same request id and dedup makes it safe.
      for (const [index, proposal] of replica.proposals) {
        replica.proposals.delete(index);
        proposal.reject(this.outcomeUnknown(replica, 'leadership lost'));
      }
    }
  }

  private resetPeersFromConf(replica: Replica<S, R>, confState: ConfState): void {
    const members = new Set([...confState.voters, ...confState.learners]);
    for (const peerId of replica.peers.keys()) {
      if (members.has(peerId)) continue;
      replica.peers.delete(peerId);
      this.peersChanges++;
    }
  }

  private async maybeSnapshot(replica: Replica<S, R>): Promise<void> {
    const store = replica.store;
    // An apply out to the store: the state machine is mid-entry and the log behind it is still needed.
    if (replica.closed || replica.applying) return;
    const sm = replica.stateMachine;
    if (sm.snapshotPoint) {
      // The state machine's own point (the engine's flushed index): the log below it is only
      // needed by followers so far behind that they will take the snapshot anyway.
      const point = sm.snapshotPoint();
      if (!point || point.index <= store.snapshot().metadata.index || point.index < store.firstIndex() - 1 || point.index > store.lastIndex()) return;
      await store.createSnapshot(point.index, { voters: [...point.voters], learners: [...point.learners] }, point.data);
      const retainFrom = this.hooks.logRetainFrom?.(replica.regionId);
      await store.compact(retainFrom === undefined ? point.index : Math.min(point.index, Math.max(store.firstIndex() - 1, retainFrom - 1)));
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
  private proposeQueued(replica: Replica<S, R>): void {
    // Commands queued before an apply went out with a membership change behind it (or before it fell too far behind).
    const refusal = replica.applying && this.applyingRefusal(replica, replica.applying);
    if (refusal) {
      for (const queued of replica.queuedCommands.splice(0)) queued.reject(refusal);
      return;
    }
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
   * Protected only as a seam for the simulator's planted finding 8a (test/sim/cluster-sim.ts);
   * nothing in src/ overrides it.
   */
  protected failPending(replica: Replica<S, R>, err: Error, proposedWhy?: string): void {
    this.answerContactRequest(replica); // the waiting stale reads ask the gate again (and are refused)
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
    this.log.fatal({ err: this.fatal }, 'ready loop failed; this datanode stops serving (docs/raft-rules.md R3)');
    for (const replica of this.replicas.values()) this.failPending(replica, this.unavailable(this.fatal.message));
    this.ticker?.cancel();
    this.hooks.onFatal?.(this.fatal);
  }

  fatalError(): Error | undefined {
    return this.fatal;
  }

  /** UNAVAILABLE with the reason a replica failed (and a leader hint when it knew one), or undefined. */
  private failedError(regionId: string): RegionDbError | undefined {
    const failure = this.failed.get(regionId);
    if (!failure) return undefined;
    return new RegionDbError(
      ErrorCode.Unavailable,
      `the replica of region ${regionId} on node ${this.nodeId} failed and is to be rebuilt from its peers: ${failure.reason}`,
    );
  }

  private stalledError(replica: Replica<S, R>, stall: ApplyStall): RegionDbError {
    const leaderNodeId = replica.isLeader() ? undefined : replica.leaderNodeId();
    return new RegionDbError(
      ErrorCode.Unavailable,
      `region ${replica.regionId} on node ${this.nodeId} cannot apply index ${stall.index} yet (object store: ${stall.lastError}); retrying — try another replica`,
      { details: leaderNodeId === undefined ? {} : { leaderNodeId: String(leaderNodeId) } },
    );
  }

  private notFound(regionId: string): RegionDbError {
    return new RegionDbError(ErrorCode.NotFound, `region ${regionId} is not hosted on node ${this.nodeId}`);
  }

  private notLeader(replica: Replica<S, R>): RegionDbError {
    const leaderNodeId = replica.leaderNodeId();
    return new RegionDbError(ErrorCode.NotLeader, `node ${this.nodeId} cannot serve region ${replica.regionId} now (no leadership)`, {
      details: leaderNodeId === undefined ? {} : { leaderNodeId: String(leaderNodeId) },
    });
  }

  private outcomeUnknown(replica: Replica<S, R>, why: string): RegionDbError {
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

/** Whether a membership change removes peer `peerId` (voter or learner: RemoveNode is the one change that takes a peer out; src/raft/confchange.ts). */
function removesPeer(cc: ConfChange, peerId: number): boolean {
  return cc.type === ConfChangeType.RemoveNode && cc.nodeId === peerId;
}

/**
 * The index of the first entry after `appliedIndex` and at or below the durable commit index
 * (the hard state: requireDurableCommit makes the commit covering a membership change durable
 * before it is applied) that removes peer `selfPeerId`; 0 if none. Only this peer id counts: a
 * re-added replica is a new peer id, and peer ids are never reused.
 */
function committedOwnRemoval(store: RaftLogStore, selfPeerId: number, appliedIndex: number): number {
  const commit = store.initialState().hardState.commit;
  if (commit <= appliedIndex) return 0;
  // A damaged entry (0) is left to the replay, which meets it where it always did (applyEntry):
  // nothing changes for a log this cannot read.
  return firstOwnRemoval(store.entries(appliedIndex + 1, commit + 1, Number.MAX_SAFE_INTEGER), selfPeerId);
}

/** The index of the first of `entries` that removes peer `selfPeerId`; 0 if none, or if a membership entry before it does not decode. */
export function firstOwnRemoval(entries: readonly Entry[], selfPeerId: number): number {
  for (const entry of entries) {
    if (entry.type !== EntryType.ConfChange) continue;
    let cc: ConfChange;
    try {
      cc = decodeConfChange(entry.data);
    } catch {
      return 0;
    }
    if (removesPeer(cc, selfPeerId)) return entry.index;
  }
  return 0;
}

/**
 * An object-store error worth retrying: the store did not answer. A missing object (garbage-
 * collected under a replica whose state still names it) or a damaged one will not come back.
 */
function isTransient(err: RegionDbError): boolean {
  let cause: unknown = err;
  while (isRegionDbError(cause)) {
    if (cause.code === ErrorCode.NotFound || cause.code === ErrorCode.Corruption) return false;
    cause = cause.cause;
  }
  return true;
}
