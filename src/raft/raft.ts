// The Raft state machine: pure and deterministic (etcd-io/raft style). No clock, no I/O, no
// randomness except the injected seeded Rand. The host drives it with step()/tick()/propose()
// and collects its decisions with ready()/advance().
//
// ─── The ready/advance contract and the rules that keep acknowledged data safe ───────────────
// The host loop is: rd = ready(); persist rd.hardState + rd.entries + rd.snapshot durably
// (fsync / LevelDB sync); THEN send rd.messages; apply rd.committedEntries; advance(rd).
//
// INVARIANT P1 (docs/raft-rules.md R1): {term, vote} in rd.hardState is durable before any
//   message in rd.messages is sent. A vote (VoteResponse granted) is therefore never sent
//   unpersisted, and after a crash a node cannot vote twice in one term. PreVote never changes
//   term or vote.
// INVARIANT P2 (docs/raft-rules.md R2): a follower's AppendResponse acknowledges entries that
//   are in the same ready's `entries`; they are durable before the response leaves (host order).
// INVARIANT P3 (docs/raft-rules.md R2): the leader counts itself toward a commit quorum only for
//   entries it has persisted: its own Progress.match moves in advance(), never in propose().
//   Hence a host may send a leader's Append messages before its own fsync completes without
//   risking safety.
// INVARIANT P4 (§5.4.2, docs/raft-rules.md R6): commit advances by counting only for an entry
//   of the current term; a new leader appends an empty entry so that happens promptly.
// INVARIANT P5 (§5.4.1, docs/raft-rules.md R7): votes are granted only to candidates whose log
//   is at least as up to date as ours.
// INVARIANT P6 (docs/raft-rules.md R12): ReadIndex is served only after the leader committed an
//   entry of its term and a quorum acknowledged a heartbeat sent after the read was registered.
// INVARIANT P7 (docs/raft-rules.md R14): at most one membership change is pending (proposed and
//   not applied); learners never vote and never count toward commit; a peer becomes a voter only
//   from learner (an AddVoter of any other is refused).
// INVARIANT P8 (docs/raft-rules.md R18): a snapshot at or below the commit index is never
//   installed.
// INVARIANT Q1 (docs/quiescence.md): a leader quiesces (stops ticking: no heartbeats, no
//   check-quorum round) only when everything it has is committed, applied and acknowledged by
//   every follower, and it is not transferring leadership, confirming reads or lease-reading. A
//   follower quiesces only on the Quiesce message of its leader in its term, and only when its
//   log ends exactly at the leader's last entry. Any message, proposal, read, transfer or
//   campaign wakes a replica; a woken follower waits a full election timeout before it
//   campaigns, unless the host reports its leader unreachable (leaderUnreachable()). Timers
//   only decide liveness here: quiescence changes no rule P1–P8.
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Rand } from '../common/rand.js';
import { type ConfChange, ConfChangeType, decodeConfChange, encodeConfChange } from './confchange.js';
import { RaftLog } from './log.js';
import {
  Progress,
  ProgressState,
  type TrackerConfig,
  VoteResult,
  configFromConfState,
  confStateFromConfig,
  isQuorum,
  quorumMatchIndex,
  tallyVotes,
} from './progress.js';
import { type ReadState, ReadOnlyQueue } from './read-only.js';
import type { RaftStorage } from './storage.js';
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  NO_NODE,
  type NodeId,
  type Snapshot,
  entriesSizeBytes,
  isHardStateEqual,
  makeMessage,
} from './types.js';

export const Role = { Follower: 0, PreCandidate: 1, Candidate: 2, Leader: 3 } as const;
export type Role = (typeof Role)[keyof typeof Role];
export const roleName: Record<Role, string> = { 0: 'follower', 1: 'pre-candidate', 2: 'candidate', 3: 'leader' };

/**
 * The `details` key of proposeConfChange's refusal while an earlier membership change is not
 * applied yet (its value: that change's index): a caller may wait it out and propose again.
 */
export const CONF_CHANGE_PENDING = 'confChangePending';

export type ReadOnlyOption = 'safe' | 'lease';

/**
 * Test-only planted bugs. Each flag breaks one rule on purpose so that a test can show the
 * checker for that rule catching it (test/sim/simulator.test.ts "the checkers can fail"): a
 * checker is trusted only once it has been seen failing. Production never passes this object
 * (test/raft/purity.test.ts fails if any file under src/ other than this one names it); each
 * flag is read once in the decision it corrupts, never in a loop.
 */
export interface PlantedBugs {
  /** Breaks P6: ReadIndex is served before the leader has committed an entry of its term. */
  readonly readIndexWithoutTermCheck?: boolean;
  /** The old order (issue 14 item 6): a single voter answers ReadIndex before P6's check. */
  readonly singleVoterReadBeforeTermCheck?: boolean;
  /** Breaks §5.3: a follower accepts an append whose previous entry has another term. */
  readonly appendWithoutPrevTermCheck?: boolean;
  /** Breaks apply order: advance() marks every committed entry applied, handed out or not. */
  readonly appliedToCommitted?: boolean;
  /**
   * Breaks Q1: the leader quiesces without every follower having acknowledged its last index,
   * and a follower quiesces on a Quiesce whose last entry it does not hold (read in those two
   * decisions: with only the leader half, the follower's check would refuse and wake it).
   */
  readonly quiesceLaggingFollower?: boolean;
}

const NO_PLANTED_BUGS: PlantedBugs = Object.freeze({});

export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: RaftStorage;
  readonly rand: Rand;
  /** Followers start an election after [electionTicks, 2·electionTicks) ticks without a leader. */
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Index already applied by the host's state machine (restart). */
  readonly applied?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /**
   * 'lease' answers ReadIndex from the leader's lease without a heartbeat round. Only safe with
   * checkQuorum and bounded clock drift (docs/raft-rules.md R10); 'safe' is the default.
   */
  readonly readOnly?: ReadOnlyOption;
  readonly maxSizePerMsgBytes?: number;
  readonly maxInflightMsgs?: number;
  readonly maxUncommittedEntriesBytes?: number;
  readonly maxApplyBytes?: number;
  /**
   * Do not send an empty append to every follower just because the commit index moved
   * (raft-rs's skip_bcast_commit, as TiKV runs it). Followers learn the new commit index from
   * the next append or heartbeat instead, so they apply up to one heartbeat later; the leader's
   * own commit and its answers to clients are unchanged. Saves two messages per follower per
   * commit when proposals are sparse. Default false (the paper's behaviour).
   */
  readonly skipBcastCommit?: boolean;
  /**
   * Pre-vote priority (docs/quiescence.md, "Elections under a stalled loop"): a pre-candidate or
   * candidate refuses the pre-vote of a voter with a higher id whose log is no more up to date
   * than its own, so of two overlapping campaigns with equal logs the lower id goes on alone
   * instead of both winning their pre-votes and splitting the real vote. Liveness only: a
   * pre-vote changes no term, vote or log. Default false.
   */
  readonly preVotePriority?: boolean;
  /**
   * Late votes (same section): a candidate whose election timer fires during its vote round goes
   * back to pre-vote without giving up its term or its own vote; a grant of that term arriving
   * meanwhile still counts, and a quorum of them makes it leader of that term, as it would have
   * as a candidate. Default false (the grant is ignored and the round is lost).
   */
  readonly countLateVotes?: boolean;
  /** Tests only: see PlantedBugs. */
  readonly plantedBugs?: PlantedBugs;
}

export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  /** Entries to persist before sending messages. */
  readonly entries: readonly Entry[];
  /** Snapshot to persist and apply (replaces the state machine). */
  readonly snapshot: Snapshot | null;
  /** Committed entries to apply, in order. */
  readonly committedEntries: readonly Entry[];
  /** To send after persisting. */
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  /** Whether the persist step needs a sync (false when only commit changed). */
  readonly mustSync: boolean;
}

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly leader: NodeId;
  readonly role: Role;
  readonly leadTransferee: NodeId;
  readonly confState: ConfState;
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
  readonly quiesced: boolean;
}

/** Marks a Vote sent because of TimeoutNow: voters skip the leader-lease check (§3.10 thesis). */
const CAMPAIGN_TRANSFER = new Uint8Array([0x74]);

function isTransferCampaign(m: Message): boolean {
  return m.context.byteLength === 1 && m.context[0] === CAMPAIGN_TRANSFER[0];
}

/**
 * Lease reads (R10): a heartbeat renewing the lease carries the leader tick it was sent at, marked
 * by a first byte no host read context has (the region server's are UTF-8 text; 0xFF never
 * appears in UTF-8), so that its acknowledgements are told from a read round's.
 */
const LEASE_CONTEXT_MARK = 0xff;

function encodeLeaseContext(tick: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = LEASE_CONTEXT_MARK;
  new DataView(out.buffer).setUint32(1, tick >>> 0);
  return out;
}

function decodeLeaseContext(context: Uint8Array): number | undefined {
  if (context.byteLength !== 5 || context[0] !== LEASE_CONTEXT_MARK) return undefined;
  return new DataView(context.buffer, context.byteOffset, 5).getUint32(1);
}

/**
 * How much shorter than an election timeout a leader's lease is (R10): a fifth of it, at least a
 * tick — the lease stays safe while no node's ticks run more than that much faster than another's
 * over a timeout, and while a stall of the leader's process longer than two ticks is seen
 * (RegionServer.voidLeases).
 */
export function leaseDriftTicks(electionTicks: number): number {
  return Math.max(1, Math.floor(electionTicks / 5));
}

type CampaignType = 'pre-election' | 'election' | 'transfer';

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NO_NODE;
  leader: NodeId = NO_NODE;
  role: Role = Role.Follower;
  readonly log: RaftLog;

  private readonly rand: Rand;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly preVote: boolean;
  private readonly preVotePriority: boolean;
  private readonly countLateVotes: boolean;
  private readonly skipBcastCommit: boolean;
  private readonly bugs: PlantedBugs;
  private readonly checkQuorum: boolean;
  private readonly readOnlyOption: ReadOnlyOption;
  private readonly maxSizePerMsgBytes: number;
  private readonly maxInflightMsgs: number;
  private readonly maxUncommittedEntriesBytes: number;

  private config: TrackerConfig;
  private progress = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  /**
   * countLateVotes: the tally of the vote round this node ran as candidate in its current term,
   * kept while it is a pre-candidate of that same term; undefined otherwise (cleared by reset()).
   */
  private lateVoteRound: Map<NodeId, boolean> | undefined;
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private readonly readOnly: ReadOnlyQueue;
  /** ReadIndex requests received before this leader committed an entry of its term (P6). */
  private pendingReadIndex: Message[] = [];
  /**
   * Lease reads (R10): how many times the lease was voided (`suspendLease`, a TimeoutNow sent),
   * and the voidings a quorum-confirmed read round registered after: the lease is void while the
   * first is ahead (ReadIndex then takes the heartbeat round even with `readOnly: 'lease'`), and
   * back once a quorum acknowledged a round registered after the latest voiding (the leader was
   * still counted after it).
   */
  private leaseVoidings = 0;
  private leaseConfirmedAfter = 0;
  /**
   * Lease reads (R10): the leader's own tick count in its term, and the tick before which its
   * lease holds — a quorum acknowledged a heartbeat this leader sent at tick T, so each of those
   * voters ignores (pre-)votes for an election timeout of its ticks after it got it, and no other
   * leader can be elected before T + electionTicks; the lease ends LEASE_DRIFT_TICKS earlier, for
   * the tick rates of two nodes differing (leaseExtend).
   */
  private leaderTicks = 0;
  private leaseUntilTick = 0;
  /** Lease heartbeats sent and not yet acknowledged by a quorum: leader tick → voters that answered. */
  private readonly leaseAcks = new Map<number, Set<NodeId>>();
  /** Ticks since this replica started (up to electionTicks): with lease reads a restarted voter honours an unknown leader's lease for its first election timeout (R10). */
  private ticksSinceStart = 0;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Election-timeout rounds a peer has spent in Snapshot state (a lost snapshot is retried). */
  private snapshotWaitRounds = new Map<NodeId, number>();
  private leadTransferee: NodeId = NO_NODE;
  /** Index of the latest conf change proposed by this leader; a new one waits until applied. */
  private pendingConfIndex = 0;
  /**
   * Leader: index of an entry in its log removing this node that it has not applied yet (0: none).
   * Until it applies it (and steps down, R16) the leader takes no proposal (docs/raft-rules.md R16).
   */
  private selfRemovalIndex = 0;
  /**
   * Set by the host while its apply is stalled (region-server.ts `stall`): entries the core counted
   * applied when it handed them out are not applied yet, so the configuration hup() checks may be
   * ahead of the one the host applied — a committed removal of this node among them. While set,
   * this node starts no campaign (ticks, campaign(), TimeoutNow); ticks still count, so a lease it
   * holds runs out (R8), and it answers (pre-)votes and appends as before (docs/raft-rules.md R16).
   */
  campaignsHeld = false;
  private uncommittedSizeBytes = 0;

  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private readyInFlight = false;
  /** Q1: not ticking until woken (docs/quiescence.md). */
  private quiescedNow = false;

  constructor(cfg: RaftConfig) {
    assert(cfg.id > 0, 'raft id must be positive');
    this.id = cfg.id;
    this.rand = cfg.rand;
    this.electionTicks = cfg.electionTicks ?? limits.raftElectionTicks;
    this.heartbeatTicks = cfg.heartbeatTicks ?? limits.raftHeartbeatTicks;
    assert(this.heartbeatTicks > 0 && this.electionTicks > this.heartbeatTicks, 'election ticks must exceed heartbeat ticks');
    this.preVote = cfg.preVote ?? true;
    this.preVotePriority = cfg.preVotePriority ?? false;
    this.countLateVotes = cfg.countLateVotes ?? false;
    this.skipBcastCommit = cfg.skipBcastCommit ?? false;
    this.bugs = cfg.plantedBugs ?? NO_PLANTED_BUGS;
    this.checkQuorum = cfg.checkQuorum ?? true;
    this.readOnlyOption = cfg.readOnly ?? 'safe';
    assert(this.readOnlyOption === 'safe' || this.checkQuorum, 'lease reads require checkQuorum (docs/raft-rules.md R10)');
    this.maxSizePerMsgBytes = cfg.maxSizePerMsgBytes ?? limits.raftMaxSizePerMsgBytes;
    this.maxInflightMsgs = cfg.maxInflightMsgs ?? limits.raftMaxInflightMsgs;
    this.maxUncommittedEntriesBytes = cfg.maxUncommittedEntriesBytes ?? limits.raftMaxUncommittedEntriesBytes;
    this.readOnly = new ReadOnlyQueue(limits.raftMaxReadIndexPending);
    this.log = new RaftLog(cfg.storage, cfg.maxApplyBytes ?? Number.MAX_SAFE_INTEGER);

    const { hardState, confState } = cfg.storage.initialState();
    this.config = configFromConfState(confState);
    assert(
      hardState.commit <= this.log.lastIndex(),
      `hard state commit ${hardState.commit} beyond the last log index ${this.log.lastIndex()}`,
    );
    // A node's term is never behind an entry in its own log: if it is, the hard state lost a
    // write (docs/raft-rules.md R3) and continuing could mean voting twice in one term.
    assert(
      hardState.term >= this.log.lastTerm(),
      `hard state term ${hardState.term} is behind the last log term ${this.log.lastTerm()}: the hard state lost a write`,
    );
    this.term = hardState.term;
    this.vote = hardState.vote;
    // A voter that never had a term never acknowledged a leader: it honours no lease at start.
    if (hardState.term === 0) this.ticksSinceStart = this.electionTicks;
    this.log.commitTo(hardState.commit);
    if (cfg.applied !== undefined && cfg.applied > 0) this.log.appliedTo(Math.min(cfg.applied, this.log.committed));
    this.becomeFollower(this.term, NO_NODE);
    this.prevSoftState = { leader: this.leader, role: this.role };
    this.prevHardState = this.hardState();
  }

  // ─── Public inputs ─────────────────────────────────────────────────────────────────────────

  /** One logical clock tick. A quiesced replica does not count time (Q1). */
  tick(): void {
    if (this.quiescedNow) return;
    if (this.ticksSinceStart < this.electionTicks) this.ticksSinceStart++;
    if (this.role === Role.Leader) this.tickLeader();
    else this.tickElection();
  }

  /** Starts an election now (PreVote first when enabled). */
  campaign(): void {
    this.wake();
    this.hup(this.preVote ? 'pre-election' : 'election');
  }

  /** Whether this replica is quiesced: it ignores ticks until something wakes it (Q1). */
  get quiesced(): boolean {
    return this.quiescedNow;
  }

  /**
   * Leader: stops ticking if nothing is in flight (Q1), telling every follower to do the same
   * with a Quiesce message. Returns whether it quiesced. The host decides when a region is idle
   * enough to try; this decides whether it is safe to stop.
   */
  quiesce(): boolean {
    if (!this.canQuiesce()) return false;
    const last = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.progress.keys()) {
      if (id === this.id) continue;
      this.send(makeMessage({ type: MessageType.Quiesce, to: id, index: last, logTerm: lastTerm, commit: this.log.committed }));
    }
    this.quiescedNow = true;
    return true;
  }

  /**
   * The host's failure detector reports that our leader's node is down (docs/quiescence.md).
   * A follower wakes and stops honouring the leader's lease, so the other followers' (pre-)votes
   * are granted, instead of waiting for ticks it would never count while quiesced. Every
   * follower of the region hears the same news at about the same time: only the voter with the
   * lowest id after the leader campaigns at once (within two ticks), the others give it a
   * normal election timeout before they campaign themselves. One candidate per region, not
   * two: no split vote, half the election traffic when a node leading many regions dies.
   * Lease reads (R10) need the full timeout: ignored then.
   */
  leaderUnreachable(): void {
    if (this.role !== Role.Follower || this.leader === NO_NODE || this.readOnlyOption === 'lease') return;
    this.wake();
    this.electionElapsed = this.electionTicks;
    const first = Math.min(...[...this.config.voters].filter((id) => id !== this.leader));
    this.randomizedElectionTimeout =
      first === this.id ? this.electionTicks + 1 + this.rand.int(2) : 2 * this.electionTicks + this.rand.int(this.electionTicks);
  }

  /**
   * A follower asks its leader to show that it still counts this replica (the host's stale-read
   * gate, docs/quiescence.md "Stale reads on a quiesced follower"): a HeartbeatResponse, which
   * wakes a quiesced leader (Q1); its heartbeat round then reaches every peer its configuration
   * counts, this one only if it is still among them. A leader that removed this peer (its
   * progress has no entry for it) does nothing more than wake. Changes no state here: the
   * replica stays quiesced until that heartbeat wakes it. Nothing when not a follower with a
   * known leader.
   */
  requestLeaderContact(): void {
    if (this.role !== Role.Follower || this.leader === NO_NODE) return;
    this.send(makeMessage({ type: MessageType.HeartbeatResponse, to: this.leader }));
  }

  /**
   * Proposes commands. Returns the index and term of the first; entry k gets index + k. The
   * host learns the outcome by applying: same (index, term) ⇒ committed; another term at that
   * index ⇒ lost (docs/raft-rules.md R21).
   */
  propose(data: readonly Uint8Array[]): { index: number; term: number } {
    this.wake();
    this.ensureCanPropose();
    const entries = data.map((d) => ({ term: 0, index: 0, type: EntryType.Normal, data: d }) as Entry);
    return this.appendAndBroadcast(entries);
  }

  /** Proposes a single-step membership change (P7). */
  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    this.wake();
    this.ensureCanPropose();
    if (this.pendingConfIndex > this.log.applied) {
      throw new RegionDbError(
        ErrorCode.ProposalDropped,
        `a membership change is already in progress (index ${this.pendingConfIndex}, applied ${this.log.applied})`,
        { details: { [CONF_CHANGE_PENDING]: String(this.pendingConfIndex) } },
      );
    }
    this.validateConfChange(cc);
    const entry: Entry = { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) };
    const result = this.appendAndBroadcast([entry]);
    this.pendingConfIndex = result.index;
    if (cc.type === ConfChangeType.RemoveNode && cc.nodeId === this.id) this.selfRemovalIndex = result.index;
    return result;
  }

  /**
   * Applies a committed conf change (the host calls this when it applies the entry). Returns
   * the new configuration. A removed leader steps down (docs/raft-rules.md R16).
   */
  applyConfChange(cc: ConfChange): ConfState {
    const { voters, learners } = this.config;
    switch (cc.type) {
      case ConfChangeType.AddVoter:
        learners.delete(cc.nodeId);
        voters.add(cc.nodeId);
        break;
      case ConfChangeType.AddLearner:
        // Demoting a voter in one step could shrink quorums unsafely; a voter stays a voter.
        if (!voters.has(cc.nodeId)) learners.add(cc.nodeId);
        break;
      case ConfChangeType.RemoveNode:
        voters.delete(cc.nodeId);
        learners.delete(cc.nodeId);
        break;
    }
    this.syncProgressWithConfig();
    if (this.role === Role.Leader) {
      if (!voters.has(this.id)) {
        this.becomeFollower(this.term, NO_NODE);
      } else {
        if (this.leadTransferee !== NO_NODE && !voters.has(this.leadTransferee)) this.abortLeaderTransfer();
        // The quorum changed (entries may now commit) and a new peer needs its first append.
        this.maybeCommit();
        this.broadcastAppend();
      }
    }
    return confStateFromConfig(this.config);
  }

  /**
   * Requests a linearizable read (P6). The answer arrives as a ReadState in a later ready(),
   * carrying `context`; serve the read once applied ≥ its index.
   */
  readIndex(context: Uint8Array): void {
    assert(context.byteLength > 0, 'readIndex needs a non-empty context');
    this.step(makeMessage({ type: MessageType.ReadIndex, from: this.id, to: this.id, context }));
  }

  /** Asks the current leader to hand leadership to `target` (§3.10 thesis, TimeoutNow). */
  transferLeader(target: NodeId): void {
    this.step(makeMessage({ type: MessageType.TransferLeader, from: target, to: this.id }));
  }

  /**
   * The host is closing this replica on a running node (it takes no further part in raft): a
   * leader returns a TimeoutNow for the lowest-id voter that holds its whole log, for the host to
   * send before it drops the replica — §3.10's transfer without waiting for it to finish. Its
   * followers may be quiesced (Q1), and their node's liveness beats from this node go on, so
   * nothing else would tell them the leader is gone (docs/quiescence.md, "A leader closed on a
   * running node"). Undefined when not the leader, or no voter has the whole log (an append would
   * be needed first; the followers' election timers take over as before). Changes nothing but the
   * lease (voided, as every TimeoutNow voids it); the message is not queued in a Ready. Safety
   * does not rest on it: any node may campaign at any time, and the target still needs a
   * majority's votes.
   */
  handOffOnClose(): Message | undefined {
    if (this.role !== Role.Leader) return undefined;
    const last = this.log.lastIndex();
    let target = NO_NODE;
    for (const [id, pr] of this.progress) {
      if (id === this.id || pr.isLearner || !this.config.voters.has(id) || pr.match !== last) continue;
      if (target === NO_NODE || id < target) target = id;
    }
    if (target === NO_NODE) return undefined;
    this.suspendLease();
    return makeMessage({ type: MessageType.TimeoutNow, from: this.id, to: target, term: this.term });
  }

  /** The host reports that a snapshot send to `to` finished or failed. */
  reportSnapshot(to: NodeId, failed: boolean): void {
    const pr = this.progress.get(to);
    if (this.role !== Role.Leader || !pr || pr.state !== ProgressState.Snapshot) return;
    if (failed) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = !failed; // success: wait for the follower's response before probing again
  }

  /** The host could not reach `to`: stop streaming optimistically and probe instead. */
  reportUnreachable(to: NodeId): void {
    const pr = this.progress.get(to);
    if (this.role === Role.Leader && pr && pr.state === ProgressState.Replicate) pr.becomeProbe();
  }

  step(m: Message): void {
    this.wake(); // Q1: any message, even a stale one, wakes a quiesced replica
    if (m.term === 0) {
      // Requests that are not bound to a term: ReadIndex and TransferLeader.
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        // docs/raft-rules.md R8: a node that heard from a leader within the election timeout ignores
        // (pre-)votes, so a partitioned-then-healed node cannot depose a healthy leader.
        // With lease reads, a voter that restarted honours a lease it may have granted before (it
        // acknowledged a heartbeat, then crashed): for its first election timeout, as a follower
        // of an unknown leader (R10).
        const inLease =
          this.checkQuorum &&
          ((this.leader !== NO_NODE && this.electionElapsed < this.electionTicks) || (this.readOnlyOption === 'lease' && this.ticksSinceStart < this.electionTicks));
        if (inLease && !isTransferCampaign(m)) return;
      }
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term (docs/raft-rules.md R1).
      } else if (m.type === MessageType.PreVoteResponse && !m.reject) {
        // Our own pre-vote was granted at term+1; the term moves when we become candidate.
      } else {
        const fromLeader =
          m.type === MessageType.Append ||
          m.type === MessageType.Heartbeat ||
          m.type === MessageType.Snapshot ||
          m.type === MessageType.Quiesce;
        this.becomeFollower(m.term, fromLeader ? m.from : NO_NODE);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === MessageType.Append || m.type === MessageType.Heartbeat || m.type === MessageType.Quiesce)
      ) {
        // A stale leader (e.g. resumed from SIGSTOP) learns our higher term and steps down
        // (docs/raft-rules.md R23); without this, PreVote would let it believe it leads forever.
        this.send(makeMessage({ type: MessageType.AppendResponse, to: m.from }));
      } else if (m.type === MessageType.PreVote) {
        this.send(makeMessage({ type: MessageType.PreVoteResponse, to: m.from, term: this.term, reject: true }));
      }
      return;
    }

    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        break;
      case Role.Candidate:
      case Role.PreCandidate:
        this.stepCandidate(m);
        break;
      case Role.Follower:
        this.stepFollower(m);
        break;
    }
  }

  // ─── ready / advance ───────────────────────────────────────────────────────────────────────

  hasReady(): boolean {
    if (this.msgs.length > 0 || this.readStates.length > 0) return true;
    if (this.log.unstable.entries.length > 0 || this.log.unstable.snapshot !== null) return true;
    if (this.log.hasNextCommittedEntries()) return true;
    if (!isHardStateEqual(this.hardState(), this.prevHardState)) return true;
    return this.leader !== this.prevSoftState.leader || this.role !== this.prevSoftState.role;
  }

  /**
   * Collects everything the host must do. Messages and read states are handed over (the core
   * forgets them); entries and committed entries stay until advance().
   */
  ready(): Ready {
    assert(!this.readyInFlight, 'ready() called again before advance()');
    this.readyInFlight = true;
    const hardState = this.hardState();
    const hardStateChanged = !isHardStateEqual(hardState, this.prevHardState);
    const softChanged = this.leader !== this.prevSoftState.leader || this.role !== this.prevSoftState.role;
    const entries = this.log.unstableEntries();
    const snapshot = this.log.unstable.snapshot;
    const rd: Ready = {
      softState: softChanged ? { leader: this.leader, role: this.role } : null,
      hardState: hardStateChanged ? hardState : null,
      entries,
      snapshot,
      committedEntries: this.log.nextCommittedEntries(),
      messages: this.msgs,
      readStates: this.readStates,
      mustSync:
        entries.length > 0 ||
        snapshot !== null ||
        hardState.term !== this.prevHardState.term ||
        hardState.vote !== this.prevHardState.vote,
    };
    this.msgs = [];
    this.readStates = [];
    if (rd.softState) this.prevSoftState = rd.softState;
    if (rd.hardState) this.prevHardState = rd.hardState;
    return rd;
  }

  /** The host persisted rd's state, sent its messages and applied its committed entries. */
  advance(rd: Ready): void {
    assert(this.readyInFlight, 'advance() without a ready()');
    this.readyInFlight = false;
    if (rd.snapshot) {
      this.log.stableSnapTo(rd.snapshot.metadata.index);
      this.log.appliedTo(rd.snapshot.metadata.index);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      this.log.stableTo(last.index, last.term);
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!;
      this.log.appliedTo(this.bugs.appliedToCommitted ? this.log.committed : last.index);
      if (this.role === Role.Leader) {
        this.uncommittedSizeBytes = Math.max(0, this.uncommittedSizeBytes - entriesSizeBytes(rd.committedEntries));
      }
    }
    if (this.role === Role.Leader) {
      // P3: the leader's own acknowledgement counts only for persisted entries.
      const self = this.progress.get(this.id);
      if (self?.maybeUpdate(this.persistedLastIndex())) {
        if (this.maybeCommit()) this.broadcastCommit();
      }
    }
  }

  // ─── Introspection ─────────────────────────────────────────────────────────────────────────

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  confState(): ConfState {
    return confStateFromConfig(this.config);
  }

  /** Whether `id` is a voter or a learner now: confState()'s answer without building its sorted arrays (hosts ask per message). */
  isMember(id: NodeId): boolean {
    return this.config.voters.has(id) || this.config.learners.has(id);
  }

  /** Whether the configuration has any member yet (a new learner before its snapshot has none). */
  hasMembers(): boolean {
    return this.config.voters.size + this.config.learners.size > 0;
  }

  isLearner(): boolean {
    return this.config.learners.has(this.id);
  }

  status(): RaftStatus {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === Role.Leader) {
      for (const [id, pr] of this.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
        });
      }
    }
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      leader: this.leader,
      role: this.role,
      leadTransferee: this.leadTransferee,
      confState: this.confState(),
      progress,
      quiesced: this.quiescedNow,
    };
  }

  // ─── Roles ─────────────────────────────────────────────────────────────────────────────────

  private reset(term: number): void {
    this.quiescedNow = false; // every role change wakes (Q1)
    if (this.term !== term) {
      this.term = term;
      this.vote = NO_NODE;
    }
    this.leader = NO_NODE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.leaderTicks = 0;
    this.leaseUntilTick = 0;
    this.leaseAcks.clear();
    this.randomizedElectionTimeout = this.electionTicks + this.rand.int(this.electionTicks);
    this.abortLeaderTransfer();
    this.votes.clear();
    this.lateVoteRound = undefined;
    this.progress.clear();
    this.snapshotWaitRounds.clear();
    this.syncProgressWithConfig();
    this.pendingConfIndex = 0;
    this.selfRemovalIndex = 0;
    this.uncommittedSizeBytes = 0;
    // Reads waiting for this leadership can no longer be confirmed: answer local ones with
    // index 0 ("dropped, retry") so the host fails them fast instead of timing out.
    for (const read of this.readOnly.drain()) this.dropRequestFrom(read.from, read.context);
    for (const m of this.pendingReadIndex) this.dropRequestFrom(m.from, m.context);
    this.pendingReadIndex = [];
  }

  private becomeFollower(term: number, leader: NodeId): void {
    this.reset(term);
    this.leader = leader;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, 'leader cannot become pre-candidate');
    // §9.6: no term change, no vote; only the role and the vote tally change.
    if (this.countLateVotes && this.role === Role.Candidate) {
      // Our term and our own vote stay: grants of this term still arriving count (see stepCandidate).
      this.lateVoteRound = this.votes;
      this.votes = new Map();
    }
    this.votes.clear();
    this.leader = NO_NODE;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, 'only a candidate becomes leader');
    this.reset(this.term);
    this.leader = this.id;
    this.role = Role.Leader;
    const self = this.progress.get(this.id);
    assert(self !== undefined, 'leader must be in its own configuration');
    self.maybeUpdate(this.persistedLastIndex());
    self.becomeReplicate();
    // R16: a removal of ourselves that an earlier leader proposed is still to apply.
    this.selfRemovalIndex = this.unappliedSelfRemoval();
    // P4: an entry of this term lets earlier entries commit and enables ReadIndex.
    this.appendEntries([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    // No conf change until this no-op is applied: a conf change possibly pending in our log is
    // then resolved, and we have committed an entry of our term first (the fix to the
    // single-server membership change bug described by Ongaro, raft-dev 2015).
    this.pendingConfIndex = this.log.lastIndex();
  }

  private promotable(): boolean {
    return this.config.voters.has(this.id) && this.log.unstable.snapshot === null;
  }

  // ─── Elections ─────────────────────────────────────────────────────────────────────────────

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.preVote ? 'pre-election' : 'election');
      // hup() refused to campaign (campaignsHeld, R16; a committed conf change not applied): we
      // are still the follower of a leader not heard from for a whole election timeout. Its lease
      // ran out and stays out (R8) — restarting the count would honour it again for electionTicks
      // and ignore the (pre-)votes of the replicas that may campaign, the ones we must answer
      // while held (a held voter whose vote the others need kept its region leaderless).
      if (this.role === Role.Follower) this.electionElapsed = this.electionTicks;
    }
  }

  private hup(type: CampaignType): void {
    if (this.role === Role.Leader || !this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return; // the configuration we would campaign in may be stale
    if (this.campaignsHeld) return; // the host has not applied what we count applied (R16)
    if (type === 'pre-election') this.becomePreCandidate();
    else this.becomeCandidate();
    const voteType = type === 'pre-election' ? MessageType.PreVote : MessageType.Vote;
    const term = type === 'pre-election' ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (this.pollResult() === VoteResult.Won) {
      // Single-voter group: no one to ask.
      if (type === 'pre-election') this.hup('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.config.voters) {
      if (id === this.id) continue;
      this.send(
        makeMessage({
          type: voteType,
          to: id,
          term,
          index: lastIndex,
          logTerm: lastTerm,
          context: type === 'transfer' ? CAMPAIGN_TRANSFER : new Uint8Array(0),
        }),
      );
    }
  }

  /**
   * countLateVotes: a vote response of our current term while we are a pre-candidate of that
   * term, having been its candidate (step() let only responses of exactly this term through). Our
   * own vote of this term is still ours (a pre-candidacy changes no term and no vote), every
   * grant was made durable by its voter before it was sent (P1), and no voter grants two
   * candidates one term: a quorum of grants is the quorum a candidate would have counted, about
   * the log we still hold (only a leader's append changes it, and that makes us a follower).
   * So we become leader of this term, as the candidate would have (P2).
   */
  private countLateVote(m: Message, round: Map<NodeId, boolean>): void {
    if (this.vote !== this.id || m.term !== this.term) return;
    round.set(m.from, !m.reject);
    if (tallyVotes(this.config.voters, round) !== VoteResult.Won) return;
    this.role = Role.Candidate; // as we were; becomeLeader() keeps the term and the vote
    this.becomeLeader();
    this.broadcastAppend();
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    for (const entry of this.log.slice(lo, this.log.committed + 1, Number.MAX_SAFE_INTEGER)) {
      if (entry.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  /** The index of an entry after `applied` that removes this node, or 0 (read once per leadership). */
  private unappliedSelfRemoval(): number {
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    if (lo > this.log.lastIndex()) return 0;
    let found = 0;
    for (const entry of this.log.slice(lo, this.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER)) {
      if (entry.type !== EntryType.ConfChange) continue;
      const cc = decodeConfChange(entry.data);
      if (cc.type === ConfChangeType.RemoveNode && cc.nodeId === this.id) found = entry.index;
    }
    return found;
  }

  private handleVoteRequest(m: Message): void {
    const isPreVote = m.type === MessageType.PreVote;
    const responseType = isPreVote ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    const canVote =
      this.vote === m.from ||
      (this.vote === NO_NODE && this.leader === NO_NODE) ||
      (isPreVote && m.term > this.term);
    // preVotePriority: of two overlapping campaigns with equal logs, the lower id goes on (liveness only).
    const yields =
      isPreVote &&
      this.preVotePriority &&
      (this.role === Role.PreCandidate || this.role === Role.Candidate) &&
      m.from > this.id &&
      !this.log.isMoreUpToDate(m.index, m.logTerm);
    if (yields) {
      this.send(makeMessage({ type: responseType, to: m.from, term: this.term, reject: true }));
      return;
    }
    // P5 / §5.4.1 election restriction.
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // Respond with the request's term: a granted pre-vote is at the candidate's future term.
      this.send(makeMessage({ type: responseType, to: m.from, term: m.term }));
      if (!isPreVote) {
        this.electionElapsed = 0;
        this.vote = m.from; // P1: persisted (ready.hardState) before the response is sent
      }
    } else {
      this.send(makeMessage({ type: responseType, to: m.from, term: this.term, reject: true }));
    }
  }

  private pollResult(): VoteResult {
    return tallyVotes(this.config.voters, this.votes);
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.Quiesce:
        this.becomeFollower(m.term, m.from);
        this.handleQuiesce(m);
        return;
      case MessageType.PreVoteResponse:
      case MessageType.VoteResponse: {
        const expected = this.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
        if (m.type === MessageType.VoteResponse && this.role === Role.PreCandidate && this.lateVoteRound !== undefined) {
          this.countLateVote(m, this.lateVoteRound);
          return;
        }
        if (m.type !== expected) return;
        this.votes.set(m.from, !m.reject);
        const result = this.pollResult();
        if (result === VoteResult.Won) {
          if (this.role === Role.PreCandidate) this.hup('election');
          else {
            this.becomeLeader();
            this.broadcastAppend();
          }
        } else if (result === VoteResult.Lost) {
          this.becomeFollower(this.term, NO_NODE);
        }
        return;
      }
      case MessageType.ReadIndex:
      case MessageType.TransferLeader:
        this.dropRequest(m);
        return;
      default:
        return; // TimeoutNow to a candidate, stale responses: ignore.
    }
  }

  // ─── Follower ──────────────────────────────────────────────────────────────────────────────

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.Quiesce:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleQuiesce(m);
        return;
      case MessageType.TimeoutNow:
        // §3.10 thesis: the leader chose us; campaign now, skipping PreVote and the lease.
        this.hup('transfer');
        return;
      case MessageType.ReadIndex:
      case MessageType.TransferLeader:
        if (this.leader === NO_NODE) {
          this.dropRequest(m);
          return;
        }
        this.send({ ...m, to: this.leader });
        return;
      case MessageType.ReadIndexResponse:
        this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  /** A local request we cannot serve now: a read gets an index-0 answer meaning "retry". */
  private dropRequest(m: Message): void {
    if (m.type === MessageType.ReadIndex) this.dropRequestFrom(m.from, m.context);
  }

  private dropRequestFrom(from: NodeId, context: Uint8Array): void {
    if (from === this.id) this.readStates.push({ index: 0, context });
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(makeMessage({ type: MessageType.AppendResponse, to: m.from, index: this.log.committed }));
      return;
    }
    const prevTerm = this.bugs.appendWithoutPrevTermCheck ? (this.log.term(m.index) ?? m.logTerm) : m.logTerm;
    const lastNewIndex = this.log.maybeAppend(m.index, prevTerm, m.commit, m.entries);
    if (lastNewIndex !== undefined) {
      // P2: these entries are in this ready's `entries`; persisted before this is sent.
      this.send(makeMessage({ type: MessageType.AppendResponse, to: m.from, index: lastNewIndex }));
      return;
    }
    // The leader's entry at our commit index is not ours: our committed log is not the group's —
    // committed entries never change, so one of the two logs was never this group's (a replica
    // bootstrapped into a configuration the group never had, finding M35; a damaged or
    // substituted disk). Rejecting would have the leader probe below our commit index, where we
    // answer "have it" (above), for ever: fail instead (the host fails this replica; it is
    // rebuilt from its peers), as for a heartbeat committing past our log (R3).
    assert(m.index !== this.log.committed, () => `append from ${m.from} at term ${m.term} has term ${m.logTerm} at index ${m.index}, our commit index, where we hold term ${this.log.term(m.index)}: our committed log is not the group's (docs/raft-rules.md R3: the replica fails and is rebuilt from its peers)`);
    // §5.3 with fast backoff: suggest the last index whose term ≤ the leader's term there.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send(
      makeMessage({
        type: MessageType.AppendResponse,
        to: m.from,
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    );
  }

  private handleHeartbeat(m: Message): void {
    // The leader never tells a follower to commit past what the follower acknowledged to it
    // (`commit: min(match, committed)`, broadcastHeartbeat). A commit beyond our log therefore
    // means our log lost entries we acknowledged — a disk that lost synced writes, a log put back
    // from an older copy — and what we hold at those indexes may be entries that never committed
    // (another leader's committed there). Committing what we hold would apply them: refuse, as
    // etcd-io/raft does, and let the host fail this replica (it is rebuilt from its peers).
    assert(m.commit <= this.log.lastIndex(), () => `heartbeat from ${m.from} at term ${m.term} commits ${m.commit}, beyond our last index ${this.log.lastIndex()}: this log lost entries it acknowledged (docs/raft-rules.md R3: the replica fails and is rebuilt from its peers)`);
    this.log.commitTo(m.commit);
    this.send(makeMessage({ type: MessageType.HeartbeatResponse, to: m.from, context: m.context }));
  }

  /**
   * Q1, follower side. Our log ends at the leader's last entry (same index and term, so by Log
   * Matching it equals the leader's log), which is committed: stop ticking, without an answer
   * (an answer would wake the leader). Otherwise answer as to a heartbeat, which wakes the
   * leader; its appends then bring us up to date, and it tries again once idle.
   */
  private handleQuiesce(m: Message): void {
    const inStep = this.log.lastIndex() === m.index && this.log.matchTerm(m.index, m.logTerm) && m.commit === m.index;
    if (!inStep && !this.bugs.quiesceLaggingFollower) {
      this.send(makeMessage({ type: MessageType.HeartbeatResponse, to: m.from }));
      return;
    }
    if (inStep) this.log.commitTo(m.commit);
    this.quiescedNow = true;
  }

  /** Q1, leader side: all committed, applied, persisted and acknowledged by every follower; no request in flight. */
  private canQuiesce(): boolean {
    if (this.role !== Role.Leader || this.quiescedNow || this.readyInFlight) return false;
    // Lease reads trust ticks (R10): a leader that stopped counting could not tell its lease ran out.
    if (this.readOnlyOption === 'lease') return false;
    if (this.leadTransferee !== NO_NODE || this.pendingReadIndex.length > 0 || this.readOnly.size > 0 || this.msgs.length > 0) return false;
    const last = this.log.lastIndex();
    if (this.log.committed !== last || this.log.applied !== last || this.persistedLastIndex() !== last) return false;
    if (!this.committedEntryInCurrentTerm()) return false;
    for (const [id, pr] of this.progress) {
      if (id === this.id || this.bugs.quiesceLaggingFollower) continue;
      if (pr.state !== ProgressState.Replicate || pr.inflights.count > 0 || pr.match !== last) return false;
    }
    return true;
  }

  /** Q1: a quiesced replica takes up counting time again, from zero (a full timeout before it campaigns). */
  private wake(): void {
    if (!this.quiescedNow) return;
    this.quiescedNow = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    if (this.role === Role.Leader) {
      // Check quorum afresh: who answered before we slept says nothing about now.
      for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false;
    }
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    assert(snapshot !== null, 'snapshot message without a snapshot');
    const index = this.restore(snapshot) ? this.log.lastIndex() : this.log.committed;
    this.send(makeMessage({ type: MessageType.AppendResponse, to: m.from, index }));
  }

  /** §7. Returns whether the snapshot replaced our log. */
  private restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (index <= this.log.committed) return false; // P8
    // The snapshot's configuration may predate our own membership (we were added after it
    // was taken): we still install it, because the current leader sent it to us, so we are a
    // member of its newer configuration, and the log after the snapshot carries the changes.
    const cs = configFromConfState(confState);
    if (this.log.matchTerm(index, term)) {
      // We already have the entry: just fast-forward the commit index.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snapshot);
    this.config = cs;
    this.syncProgressWithConfig();
    return true;
  }

  // ─── Leader ────────────────────────────────────────────────────────────────────────────────

  private tickLeader(): void {
    this.leaderTicks++;
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        // docs/raft-rules.md R9: a leader without quorum contact for an election timeout steps down.
        if (!isQuorum(this.config.voters, (id) => id === this.id || this.progress.get(id)!.recentActive)) {
          this.becomeFollower(this.term, NO_NODE);
          return;
        }
        for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false;
      }
      this.retryLostSnapshots();
      // docs/raft-rules.md R11: a transfer that did not finish within an election timeout is aborted.
      if (this.leadTransferee !== NO_NODE) this.abortLeaderTransfer();
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat(this.readOnly.lastPendingContext() ?? this.leaseContext());
    }
  }

  /** With lease reads, the context of a heartbeat that renews the lease (R10): its leader tick, marked apart from the host's read contexts. */
  private leaseContext(): Uint8Array | undefined {
    if (this.readOnlyOption !== 'lease') return undefined;
    const tick = this.leaderTicks;
    this.leaseAcks.set(tick, new Set());
    // Heartbeats a quorum never answered are given up after two election timeouts.
    for (const t of this.leaseAcks.keys()) if (t < tick - 2 * this.electionTicks) this.leaseAcks.delete(t);
    return encodeLeaseContext(tick);
  }

  /** A quorum acknowledged a heartbeat sent at leader tick `sentAt`: the lease holds until LEASE_DRIFT_TICKS before an election timeout after it. */
  private leaseExtend(sentAt: number): void {
    this.leaseUntilTick = Math.max(this.leaseUntilTick, sentAt + this.electionTicks - leaseDriftTicks(this.electionTicks));
  }

  /** A peer stuck in Snapshot state for two election timeouts probably lost the snapshot. */
  private retryLostSnapshots(): void {
    for (const [id, pr] of this.progress) {
      if (pr.state !== ProgressState.Snapshot) {
        this.snapshotWaitRounds.delete(id);
        continue;
      }
      const rounds = (this.snapshotWaitRounds.get(id) ?? 0) + 1;
      if (rounds >= 2) {
        this.snapshotWaitRounds.delete(id);
        pr.becomeProbe();
      } else {
        this.snapshotWaitRounds.set(id, rounds);
      }
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.ReadIndex:
        this.handleReadIndexRequest(m);
        return;
      case MessageType.TransferLeader:
        this.handleTransferLeader(m.from);
        return;
      default:
        break;
    }
    const pr = this.progress.get(m.from);
    if (!pr) return; // a removed peer
    switch (m.type) {
      case MessageType.AppendResponse:
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        return;
      case MessageType.HeartbeatResponse:
        pr.recentActive = true;
        this.handleHeartbeatResponse(m, pr);
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === ProgressState.Probe) {
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Snapshot && pr.match + 1 >= this.log.firstIndex()) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Replicate) {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.broadcastCommit();
    } else if (wasPaused) {
      this.sendAppend(m.from, true);
    }
    // Keep the pipeline full while there is more to send.
    let sends = 0;
    while (sends < this.maxInflightMsgs && this.sendAppend(m.from, false)) sends++;
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(m.from);
    }
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.probeSent = false;
    // A full window with a live follower means appends or their responses were lost: free a
    // slot so the next append can reveal the gap (the follower rejects, we fall back to probe).
    if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    if (m.context.byteLength === 0) return;
    const leaseTick = this.readOnlyOption === 'lease' ? decodeLeaseContext(m.context) : undefined;
    if (leaseTick !== undefined) {
      const leaseAcks = this.leaseAcks.get(leaseTick);
      if (!leaseAcks) return;
      leaseAcks.add(m.from);
      if (!this.quorumAcknowledged(leaseAcks)) return;
      for (const t of this.leaseAcks.keys()) if (t <= leaseTick) this.leaseAcks.delete(t);
      this.leaseExtend(leaseTick);
      return;
    }
    // Rounds exist with `readOnly: 'safe'`, and with 'lease' when the lease does not hold.
    if (this.readOnly.size === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks) return;
    if (!this.quorumAcknowledged(acks)) return;
    const released = this.readOnly.advance(m.context);
    const confirmed = released[released.length - 1];
    if (confirmed && this.readOnlyOption === 'lease') {
      // The round's heartbeats went out at or after it was registered: it renews the lease too.
      this.leaseExtend(confirmed.tick);
      this.leaseConfirmedAfter = Math.max(this.leaseConfirmedAfter, confirmed.epoch);
    }
    for (const read of released) this.answerRead(read.from, read.index, read.context);
  }

  private handleReadIndexRequest(m: Message): void {
    if (this.bugs.singleVoterReadBeforeTermCheck && this.isSingleVoter()) {
      this.answerRead(m.from, this.log.committed, m.context);
      return;
    }
    if (!this.committedEntryInCurrentTerm() && !this.bugs.readIndexWithoutTermCheck) {
      // P6: our commit index may lag the previous leader's until an entry of our term commits.
      // A single voter is no exception: restarted, its commit index may lag its own earlier
      // acknowledgements (the datanode WAL defers commit-only hard states; issue 14 item 6).
      if (this.pendingReadIndex.length < limits.raftMaxReadIndexPending) this.pendingReadIndex.push(m);
      else this.dropRequest(m);
      return;
    }
    this.serveReadIndex(m);
  }

  private serveReadIndex(m: Message): void {
    // A single voter is its own quorum: no heartbeat round can add anything.
    if (this.leaseHolds() || this.isSingleVoter()) {
      this.answerRead(m.from, this.log.committed, m.context);
      return;
    }
    if (!this.readOnly.add(this.log.committed, m.context, m.from, this.leaseVoidings, this.leaderTicks)) {
      this.dropRequest(m);
      return;
    }
    this.broadcastHeartbeat(m.context);
  }

  private answerRead(to: NodeId, index: number, context: Uint8Array): void {
    if (to === this.id || to === NO_NODE) {
      this.readStates.push({ index, context });
    } else {
      this.send(makeMessage({ type: MessageType.ReadIndexResponse, to, index, context }));
    }
  }

  private isSingleVoter(): boolean {
    return this.config.voters.size === 1 && this.config.voters.has(this.id);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private releasePendingReadIndex(): void {
    if (this.pendingReadIndex.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndex;
    this.pendingReadIndex = [];
    for (const m of pending) this.serveReadIndex(m);
  }

  private handleTransferLeader(target: NodeId): void {
    if (target === this.id || !this.config.voters.has(target)) return; // learners cannot lead
    if (this.leadTransferee === target) return;
    if (this.leadTransferee !== NO_NODE) this.abortLeaderTransfer();
    // The transfer must finish within one election timeout (tickLeader aborts it).
    this.electionElapsed = 0;
    this.leadTransferee = target;
    const pr = this.progress.get(target)!;
    if (pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(target);
    } else {
      this.sendAppend(target, true);
    }
  }

  /**
   * Whether a lease read may be answered now (R10): lease reads on, the lease not voided since a
   * quorum last confirmed this leader, and a quorum's acknowledgement of a heartbeat recent enough
   * (leaseUntilTick). Otherwise ReadIndex takes the heartbeat round, whose confirmation renews it.
   */
  private leaseHolds(): boolean {
    return this.readOnlyOption === 'lease' && this.leaseConfirmedAfter === this.leaseVoidings && this.leaderTicks < this.leaseUntilTick;
  }

  /**
   * The target campaigns at once and the voters skip their lease check for it (§3.10 thesis), so
   * it may lead before this leader hears of it: from here on, this leader's lease proves nothing.
   */
  private sendTimeoutNow(target: NodeId): void {
    this.suspendLease();
    this.send(makeMessage({ type: MessageType.TimeoutNow, to: target }));
  }

  /**
   * Voids the leader lease (R10): until a quorum acknowledges a heartbeat round registered after
   * this call, ReadIndex takes the round even with `readOnly: 'lease'`. The lease is counted in
   * ticks, so a host whose ticks stopped while time went on (its process stalled: a late tick, a
   * timer overdue) calls this before it serves another read: the other voters may have elected a
   * leader meanwhile. Also done when this leader sends TimeoutNow. Harmless in any role and mode.
   */
  suspendLease(): void {
    this.leaseVoidings++;
  }

  /** Whether this leader and the voters in `acks` make a quorum of the configuration's voters. */
  private quorumAcknowledged(acks: ReadonlySet<NodeId>): boolean {
    return isQuorum(this.config.voters, (id) => id === this.id || acks.has(id));
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NO_NODE;
  }

  private ensureCanPropose(): void {
    if (this.role !== Role.Leader) {
      throw new RegionDbError(ErrorCode.NotLeader, `node ${this.id} is not the leader`, {
        details: { leader: String(this.leader) },
      });
    }
    if (this.selfRemovalIndex > this.log.applied) {
      // docs/raft-rules.md R16: a leader leaving the group appends nothing after its removal, so
      // that when it steps down every entry it holds is committed (a remaining voter then has a
      // log at least as up to date as ours and gets our vote).
      throw new RegionDbError(
        ErrorCode.ProposalDropped,
        `node ${this.id} is leaving the group (its removal at index ${this.selfRemovalIndex} is not applied yet); retry with the next leader`,
      );
    }
    if (this.leadTransferee !== NO_NODE) {
      // docs/raft-rules.md R11: no new proposals while handing over leadership.
      throw new RegionDbError(ErrorCode.ProposalDropped, `leadership is being transferred to ${this.leadTransferee}`, {
        details: { leader: String(this.leadTransferee) },
      });
    }
  }

  private validateConfChange(cc: ConfChange): void {
    const { voters, learners } = this.config;
    const invalid = (why: string) => new RegionDbError(ErrorCode.InvalidArgument, `conf change for node ${cc.nodeId}: ${why}`);
    if (!(cc.nodeId > 0)) throw invalid('node id must be positive');
    if (cc.type === ConfChangeType.AddLearner && voters.has(cc.nodeId)) throw invalid('already a voter');
    if (cc.type === ConfChangeType.AddVoter && voters.has(cc.nodeId)) throw invalid('already a voter');
    // Learner → voter only (P7): a peer never added, or removed since, has no replica that
    // answers for it (or one reopened empty under an id that voted); made a voter it would count
    // in every quorum. The caller judged on a view that may be stale; this is the leader's own,
    // current (P7: nothing pending). The bootstrap configuration's AddVoter entries are applied,
    // never proposed.
    if (cc.type === ConfChangeType.AddVoter && !learners.has(cc.nodeId)) throw invalid('not a learner (add it as a learner first)');
    if (cc.type === ConfChangeType.RemoveNode) {
      if (!voters.has(cc.nodeId) && !learners.has(cc.nodeId)) throw invalid('not a member');
      if (voters.has(cc.nodeId) && voters.size === 1) throw invalid('cannot remove the last voter');
    }
  }

  private appendAndBroadcast(entries: Entry[]): { index: number; term: number } {
    const first = this.log.lastIndex() + 1;
    if (!this.appendEntries(entries)) {
      throw new RegionDbError(ErrorCode.ProposalDropped, 'too many uncommitted bytes; retry later', {
        details: { leader: String(this.id) },
      });
    }
    this.broadcastAppend();
    return { index: first, term: this.term };
  }

  private appendEntries(entries: Entry[]): boolean {
    const sizeBytes = entriesSizeBytes(entries.filter((e) => e.data.byteLength > 0));
    if (
      this.uncommittedSizeBytes > 0 &&
      sizeBytes > 0 &&
      this.uncommittedSizeBytes + sizeBytes > this.maxUncommittedEntriesBytes
    ) {
      return false;
    }
    this.uncommittedSizeBytes += sizeBytes;
    let index = this.log.lastIndex();
    const stamped = entries.map((e) => ({ ...e, term: this.term, index: ++index }));
    this.log.append(stamped);
    // P3: no self-acknowledgement here; advance() counts it once persisted.
    return true;
  }

  /** P4: commit by counting only for entries of the current term. */
  private maybeCommit(): boolean {
    const quorumIndex = quorumMatchIndex(this.config.voters, (id) => this.progress.get(id)?.match ?? 0);
    if (quorumIndex <= this.log.committed || quorumIndex > this.log.lastIndex()) return false;
    if (this.log.term(quorumIndex) !== this.term) return false;
    this.log.commitTo(quorumIndex);
    this.releasePendingReadIndex();
    return true;
  }

  private broadcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, true);
  }

  /** The commit index moved: tell followers at once, or (skipBcastCommit) with the next append. */
  private broadcastCommit(): void {
    // R16: a leader that committed its own removal steps down as it applies it and sends nothing
    // more; the remaining voters must learn the commit now (with skipBcastCommit, there is no next append).
    const sendIfEmpty = !this.skipBcastCommit || (this.selfRemovalIndex > 0 && this.log.committed >= this.selfRemovalIndex);
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, sendIfEmpty);
  }

  private broadcastHeartbeat(context: Uint8Array | undefined): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      this.send(
        makeMessage({
          type: MessageType.Heartbeat,
          to: id,
          // Never tell a follower to commit beyond what it is known to hold.
          commit: Math.min(pr.match, this.log.committed),
          context: context ?? new Uint8Array(0),
        }),
      );
    }
  }

  /** Sends an append (or a snapshot) to `to` if its progress allows. Returns whether it sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    let entries: Entry[] | undefined;
    if (prevTerm !== undefined) {
      try {
        entries = this.log.slice(pr.next, this.log.lastIndex() + 1, this.maxSizePerMsgBytes);
      } catch (err) {
        if (!isRegionDbError(err, ErrorCode.StorageCompacted)) throw err;
      }
    }
    if (prevTerm === undefined || entries === undefined) return this.sendSnapshot(to, pr);
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(
      makeMessage({
        type: MessageType.Append,
        to,
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.log.committed,
      }),
    );
    pr.sentEntries(entries.length > 0 ? entries[entries.length - 1]!.index : prevIndex, entries.length);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false; // don't ship a snapshot to a peer that may be down
    const snapshot = this.log.snapshot();
    if (snapshot.metadata.index === 0) return false; // storage has none yet; probe again later
    pr.becomeSnapshot(snapshot.metadata.index);
    this.send(makeMessage({ type: MessageType.Snapshot, to, snapshot }));
    return true;
  }

  private send(m: Message): void {
    assert(m.to !== this.id, 'a node never sends to itself');
    let term = m.term;
    if (term === 0 && m.type !== MessageType.ReadIndex && m.type !== MessageType.TransferLeader) term = this.term;
    assert(
      term !== 0 || m.type === MessageType.ReadIndex || m.type === MessageType.TransferLeader,
      'term-bound messages carry a term',
    );
    assert(this.msgs.length < limits.raftMaxMsgsPerReady, 'too many messages queued in one ready');
    // A request forwarded to the leader keeps the node that asked as its sender, so that the
    // answer goes to it (a ReadIndex answered to the forwarding node is dropped there).
    const forwarded = (m.type === MessageType.TransferLeader || m.type === MessageType.ReadIndex) && m.from !== NO_NODE;
    this.msgs.push({ ...m, from: forwarded ? m.from : this.id, term });
  }

  // ─── Helpers ───────────────────────────────────────────────────────────────────────────────

  /** The last index known durable locally; the leader's self-match (P3). */
  private persistedLastIndex(): number {
    return this.log.unstable.snapshot !== null ? 0 : this.log.unstable.offset - 1;
  }

  private syncProgressWithConfig(): void {
    const members = new Set([...this.config.voters, ...this.config.learners]);
    for (const id of this.progress.keys()) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      const existing = this.progress.get(id);
      if (existing) {
        existing.isLearner = this.config.learners.has(id);
        continue;
      }
      const pr = new Progress(this.log.lastIndex() + 1, this.maxInflightMsgs, this.config.learners.has(id));
      if (id === this.id) {
        pr.match = this.persistedLastIndex();
      }
      // A new peer has just been added; treat it as active so it can be sent a snapshot.
      pr.recentActive = true;
      this.progress.set(id, pr);
    }
  }
}


