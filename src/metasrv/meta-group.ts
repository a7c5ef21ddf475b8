// The metasrv's own raft group (docs/metasrv-ha.md): three or five metasrv processes replicate
// the catalog with the same code that replicates a region — the region server's host loop
// (src/replication/region-server.ts), the LevelDB WAL (src/wal) and the gRPC raft transport
// (src/replication). The replicated state machine holds one value, the encoded catalog: every
// committed `catalog-put` replaces it. The leader is the only member that acts (metasrv.ts).
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { TimedClock } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { CONF_CHANGE_PENDING, type ConfChange, ConfChangeType, Role, type StateMachine, roleName } from '../raft/index.js';
import { GrpcRaftTransport } from '../replication/grpc-transport.js';
import { membershipAdmission, serveRaftStream } from '../replication/raft-stream.js';
import { RegionServer, type Replica, defaultRaftTuning } from '../replication/region-server.js';
import type { RaftTransport } from '../replication/transport.js';
import { Wal } from '../wal/index.js';

/**
 * The group's id in the WAL and on the wire. Region ids are decimal (table id << 32 | number)
 * and table ids start at 1024, so region 0 is never a table's.
 */
export const META_GROUP_ID = '0';

/** First byte of a command: what it is. Unknown kinds fail the apply (a newer version wrote them). */
const CATALOG_PUT = 1;
/** A member's gRPC address ({ id, addr } JSON), committed before the member is added (every member then knows where it is). */
const MEMBER_ADDR = 2;
/** First byte of the group's snapshot data (members, then the catalog). */
const SNAPSHOT_FORMAT = 0xc1;

/** The log is compacted to a snapshot (the catalog) every this many entries: each entry is a whole catalog. */
const SNAPSHOT_EVERY_ENTRIES = 64;
/** How long remove-member waits for an earlier membership change to be applied before it proposes its own (`proposeMembership`). */
const MEMBERSHIP_PENDING_WAIT_MS = 5_000;

export function catalogPutCommand(encodedCatalog: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + encodedCatalog.byteLength);
  out[0] = CATALOG_PUT;
  out.set(encodedCatalog, 1);
  return out;
}

export function memberAddrCommand(id: number, addr: string): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify({ id, addr }));
  const out = new Uint8Array(1 + body.byteLength);
  out[0] = MEMBER_ADDR;
  out.set(body, 1);
  return out;
}

/**
 * The replicated state machine: the latest committed encoded catalog (catalog-store.ts format)
 * and the members' addresses announced through the log. Its snapshot is both.
 */
export class CatalogMachine implements StateMachine<void> {
  catalog: Uint8Array | null = null;
  readonly members = new Map<number, string>();

  /** From a snapshot's data (empty: a new group). */
  static restore(data: Uint8Array | null): CatalogMachine {
    const m = new CatalogMachine();
    if (!data || data.byteLength === 0) return m;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data[0] !== SNAPSHOT_FORMAT || data.byteLength < 5) throw new RegionDbError(ErrorCode.Corruption, `metasrv group snapshot: unknown format ${data[0]}`);
    const membersLength = view.getUint32(1);
    if (5 + membersLength > data.byteLength) throw new RegionDbError(ErrorCode.Corruption, 'metasrv group snapshot: truncated member list');
    const members = JSON.parse(new TextDecoder().decode(data.subarray(5, 5 + membersLength))) as Record<string, string>;
    for (const [id, addr] of Object.entries(members)) m.members.set(Number(id), addr);
    const catalog = data.subarray(5 + membersLength);
    m.catalog = catalog.byteLength > 0 ? catalog.slice() : null;
    return m;
  }

  apply(index: number, command: Uint8Array): void {
    if (command.byteLength === 0) return; // a leader's empty entry of its term
    if (command[0] === CATALOG_PUT) {
      this.catalog = command.slice(1);
      return;
    }
    if (command[0] === MEMBER_ADDR) {
      const { id, addr } = JSON.parse(new TextDecoder().decode(command.subarray(1))) as { id: number; addr: string };
      this.members.set(id, addr);
      return;
    }
    throw new RegionDbError(ErrorCode.Corruption, `metasrv group entry ${index}: unknown command kind ${command[0]} (written by a newer version?)`);
  }

  serialize(): Uint8Array {
    const members = new TextEncoder().encode(JSON.stringify(Object.fromEntries(this.members)));
    const catalog = this.catalog ?? new Uint8Array(0);
    const out = new Uint8Array(5 + members.byteLength + catalog.byteLength);
    out[0] = SNAPSHOT_FORMAT;
    new DataView(out.buffer).setUint32(1, members.byteLength);
    out.set(members, 5);
    out.set(catalog, 5 + members.byteLength);
    return out;
  }
}

/**
 * Seeds an empty data dir with a one-member group holding `encodedCatalog` (a catalog copy from
 * the object store): the way back from losing a majority of the group (docs/metasrv-ha.md). The
 * member then elects itself and acts; the others are added with add-member.
 *
 * The new group starts at term `wallMs` (the wall clock at seeding, in ms), not 1: its term is
 * the epoch that fences old leaders, and running datanodes ignore instructions below the highest
 * epoch they have seen — which the lost group raised by one per election and which the copy
 * does not record. A group's term grows by one per election, far slower than one per ms, so the
 * wall clock is above every term a group seeded earlier (or bootstrapped at 1) has reached.
 */
export async function seedGroup(dataDir: string, memberId: number, addr: string, encodedCatalog: Uint8Array, log: Logger, wallMs: number = Date.now()): Promise<void> {
  const term = Math.floor(wallMs);
  if (!Number.isSafeInteger(term) || term < 1) throw new RegionDbError(ErrorCode.InvalidArgument, `seedGroup: the wall clock ${wallMs} ms is not a usable term`);
  const dir = join(dataDir, 'meta-raft');
  const wal = await Wal.open(dir, log.child({ component: 'meta-wal' }));
  try {
    if (wal.regionIds().includes(META_GROUP_ID)) {
      const store = wal.region(META_GROUP_ID);
      if (store.lastIndex() > 0 || store.snapshot().metadata.index > 0) {
        throw new RegionDbError(ErrorCode.AlreadyExists, `${dir} already holds a metasrv group log; seed only an empty data dir`);
      }
    }
    const machine = new CatalogMachine();
    machine.catalog = encodedCatalog;
    machine.members.set(memberId, addr);
    const batch = wal.batch();
    batch.applySnapshot(META_GROUP_ID, { metadata: { index: 1, term: 1, confState: { voters: [memberId], learners: [] } }, data: machine.serialize() });
    batch.setHardState(META_GROUP_ID, { term, vote: 0, commit: 1 });
    await batch.commit();
  } finally {
    await wal.close();
  }
}

export interface MetaGroupOptions {
  readonly clusterId: string;
  /** This member's id (≥ 1), unique in the group and never reused. */
  readonly memberId: number;
  /** The initial members: id → gRPC address (where the Meta and RaftTransport services listen). */
  readonly members: ReadonlyMap<number, string>;
  /** A member added to a running group (add-member): it never writes the initial configuration. */
  readonly join: boolean;
  /** Where the group's WAL lives. */
  readonly dataDir: string;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly credentials: grpc.ChannelCredentials;
  readonly clock: TimedClock;
  readonly log: Logger;
  /** Leadership changed: `leader` is true when this member became leader at `term`. */
  onRoleChange(leader: boolean, term: number): void;
  /**
   * The group's server stopped serving for good: its WAL failed, or its raft core threw (a core
   * exception is fatal here, RegionServerHooks.coreFailure: this member's one replica is its reason
   * to serve, and a restart reopens it from the intact WAL).
   */
  onFatal(err: Error): void;
}

export interface MetaGroupStatus {
  readonly memberId: number;
  readonly role: string;
  readonly term: number;
  readonly leaderId: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly members: { id: number; addr: string; voter: boolean; matchIndex: number | undefined }[];
}

export class MetaGroup {
  private wal!: Wal;
  private transport!: RaftTransport;
  private server!: RegionServer<CatalogMachine>;
  private readonly addresses = new Map<number, string>();

  constructor(private readonly options: MetaGroupOptions) {
    for (const [id, addr] of options.members) this.addresses.set(id, addr);
    if (!options.members.has(options.memberId)) {
      throw new RegionDbError(ErrorCode.Config, `meta_group.id ${options.memberId} is not among meta_group.members (${[...options.members.keys()].join(', ')})`);
    }
  }

  async start(): Promise<void> {
    const o = this.options;
    this.wal = await Wal.open(join(o.dataDir, 'meta-raft'), o.log.child({ component: 'meta-wal' }));
    this.transport = this.createTransport();
    this.server = new RegionServer<CatalogMachine>(
      o.memberId,
      this.wal,
      this.transport,
      { create: (_groupId, data) => CatalogMachine.restore(data) },
      // One group: nothing to gain from quiescence (docs/quiescence.md), so it keeps ticking.
      { ...defaultRaftTuning, tickMs: o.tickMs, electionTicks: o.electionTicks, snapshotEveryEntries: SNAPSHOT_EVERY_ENTRIES, quiesceIdleTicks: 0 },
      o.log.child({ component: 'meta-raft' }),
      o.clock,
      {
        onRoleChange: (_groupId, role, _leader, term) => o.onRoleChange(role === roleName[Role.Leader], term),
        coreFailure: 'fatal',
        // A removed member answers raft to members whose address only its group state holds
        // (addressOf): its restart re-applies the log up to its removal (no apply reads storage).
        removedReplay: 'everything',
        onFatal: (err) => o.onFatal(err),
      },
    );
    const peers = [...o.members.keys()].sort((a, b) => a - b).map((id) => ({ peerId: id, nodeId: id }));
    // Every initial member writes the same initial configuration into an empty log (as a new
    // region's replicas do); a member that has a log or a snapshot never does.
    const replica = await this.server.open({ regionId: META_GROUP_ID, selfPeerId: o.memberId, peers, bootstrap: !o.join });
    if (!replica) {
      const failure = this.server.failure(META_GROUP_ID);
      throw new RegionDbError(ErrorCode.Corruption, `the metasrv group's log in ${join(o.dataDir, 'meta-raft')} cannot be opened: ${failure?.reason ?? 'unknown reason'}`);
    }
    this.server.start();
  }

  /**
   * The group's raft transport: gRPC to the members' addresses. Protected so that a test can lose
   * chosen messages (test/unit/metasrv-group-self-removal.test.ts); nothing in src/ overrides it.
   */
  protected createTransport(): RaftTransport {
    const o = this.options;
    return new GrpcRaftTransport(o.clusterId, o.memberId, (id) => this.addressOf(id), o.log.child({ component: 'meta-transport' }), o.credentials);
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    await this.transport?.close();
    await this.wal?.close();
  }

  /** The RaftTransport service implementation for this process's gRPC server. */
  raftStreamHandler(): (stream: grpc.ServerDuplexStream<unknown, unknown>) => void {
    return (stream) =>
      serveRaftStream(stream, {
        clusterId: this.options.clusterId,
        log: this.options.log,
        clock: this.options.clock,
        certNodeId: () => undefined, // metasrv certificates do not name a member id
        admit: (fromNodeId, groupId, message) => {
          if (groupId !== META_GROUP_ID) return 'region-not-hosted';
          // A member removed from the group still answers raft until its process stops (R16).
          const replica = this.server?.raftReplica(META_GROUP_ID);
          if (!replica) return 'region-not-hosted';
          return membershipAdmission(replica.peers.get(message.from), fromNodeId, message.from, replica.raft);
        },
        step: (fromNodeId, groupId, message) => this.server.step(fromNodeId, groupId, message),
        reject: (reason, context) => this.options.log.debug({ reason, ...context }, 'rejected metasrv group raft traffic'),
      });
  }

  private replica(): Replica<CatalogMachine> | undefined {
    return this.server?.replica(META_GROUP_ID);
  }

  /** Leading, and serving: a member whose server stopped (fatalError) leads no more, whatever its core last said. */
  isLeader(): boolean {
    return !this.fatalError() && (this.replica()?.isLeader() ?? false);
  }

  get term(): number {
    return this.replica()?.raft.term ?? 0;
  }

  /** The leader's gRPC address as this member knows it, if any. */
  leaderAddr(): string | undefined {
    if (this.fatalError()) return undefined; // what its stopped core last knew (itself, perhaps) is no hint
    const leader = this.replica()?.leaderNodeId();
    return leader === undefined ? undefined : this.addressOf(leader);
  }

  /**
   * A member's address: as announced through the group's log, else as configured. Read also when
   * this member was removed from the group (raftReplica, not replica()): a removed member still
   * answers raft (R16), and its answers must reach a member whose address only the log holds.
   */
  addressOf(memberId: number): string | undefined {
    return this.server?.raftReplica(META_GROUP_ID)?.stateMachine.members.get(memberId) ?? this.addresses.get(memberId);
  }

  /**
   * Adds a member (leader only): its address is committed first (so every member can reach it),
   * then it joins as a learner, catches up with the log (or a snapshot), and is promoted to voter
   * — one single-server change at a time, as the regions' repairs do (src/raft/confchange.ts).
   */
  async addMember(id: number, addr: string, timeoutMs: number): Promise<void> {
    const replica = this.server.leaderReplica(META_GROUP_ID);
    const conf = replica.raft.confState();
    if (conf.voters.includes(id)) {
      if (this.addressOf(id) === addr) return;
      throw new RegionDbError(ErrorCode.AlreadyExists, `metasrv member ${id} is already a voter at ${this.addressOf(id)}`);
    }
    await this.server.propose(META_GROUP_ID, memberAddrCommand(id, addr));
    const until = this.options.clock.nowMs() + timeoutMs;
    if (!conf.learners.includes(id)) {
      await this.proposeMembership({ type: ConfChangeType.AddLearner, nodeId: id, context: JSON.stringify({ nodeId: id }) }, until);
    }
    for (;;) {
      const leader = this.server.leaderReplica(META_GROUP_ID);
      const st = leader.raft.status();
      if ((st.progress.get(id)?.match ?? 0) >= st.commit) break;
      if (this.options.clock.nowMs() >= until) {
        throw new RegionDbError(ErrorCode.DeadlineExceeded, `metasrv member ${id} at ${addr} joined as a learner but did not catch up within ${timeoutMs} ms (is it running, with meta_group.join = true?); it stays a learner: run add-member again to promote it`);
      }
      await new Promise<void>((ok) => this.options.clock.setTimeout(ok, 100));
    }
    await this.proposeMembership({ type: ConfChangeType.AddVoter, nodeId: id, context: JSON.stringify({ nodeId: id }) }, until);
  }

  /**
   * Proposes a membership change, waiting (until `untilMs`) while the leader's core refuses it
   * because an earlier change is not applied yet: right after an election the leader holds changes
   * until it has applied its whole log (raft.ts becomeLeader's pendingConfIndex), and a proposal
   * is answered once its entry is applied, a moment before the core hears of that apply — so an
   * add-member right after a leader change, or its AddVoter right after its AddLearner, could be
   * refused for a change that was in fact done (a CI run on a loaded machine:
   * test/unit/metasrv-group-removed-member-addr.test.ts).
   */
  private async proposeMembership(cc: ConfChange, untilMs: number): Promise<void> {
    for (;;) {
      try {
        await this.server.proposeConfChange(META_GROUP_ID, cc);
        return;
      } catch (err) {
        const pending = err instanceof RegionDbError && err.details[CONF_CHANGE_PENDING] !== undefined;
        if (!pending || this.options.clock.nowMs() >= untilMs) throw err;
      }
      await new Promise<void>((ok) => this.options.clock.setTimeout(ok, 20));
    }
  }

  /** Removes a member (leader only). A removed member stops taking part; stop its process. */
  async removeMember(id: number): Promise<void> {
    const replica = this.server.leaderReplica(META_GROUP_ID);
    const conf = replica.raft.confState();
    if (!conf.voters.includes(id) && !conf.learners.includes(id)) throw new RegionDbError(ErrorCode.NotFound, `metasrv member ${id} is not in the group (voters ${conf.voters.join(', ')})`);
    if (conf.voters.length === 1 && conf.voters[0] === id) throw new RegionDbError(ErrorCode.InvalidArgument, `metasrv member ${id} is the group's last voter`);
    await this.proposeMembership({ type: ConfChangeType.RemoveNode, nodeId: id, context: JSON.stringify({ nodeId: id }) }, this.options.clock.nowMs() + MEMBERSHIP_PENDING_WAIT_MS);
  }

  /** The latest applied catalog (encoded), or null before the first catalog-put. */
  appliedCatalog(): Uint8Array | null {
    return this.replica()?.stateMachine.catalog ?? null;
  }

  /**
   * Resolves once this member has applied everything committed before now (a ReadIndex round):
   * a new leader reads the catalog only after it, so it starts from every committed change.
   */
  barrier(): Promise<void> {
    return this.server.readBarrier(META_GROUP_ID);
  }

  /** Replicates a new catalog; resolves once it is committed on a quorum and applied here. */
  async put(encodedCatalog: Uint8Array): Promise<void> {
    await this.server.propose(META_GROUP_ID, catalogPutCommand(encodedCatalog));
  }

  /** A fatal storage error of the group's WAL, if one happened (the member then cannot serve). */
  fatalError(): Error | undefined {
    return this.server?.fatalError();
  }

  status(): MetaGroupStatus {
    const o = this.options;
    const replica = this.replica();
    if (!replica) return { memberId: o.memberId, role: 'stopped', term: 0, leaderId: 0, commitIndex: 0, appliedIndex: 0, members: [] };
    const st = replica.raft.status();
    const ids = [...st.confState.voters, ...st.confState.learners];
    return {
      memberId: o.memberId,
      role: roleName[st.role],
      term: st.term,
      leaderId: st.leader,
      commitIndex: st.commit,
      appliedIndex: replica.appliedIndex,
      members: ids.map((id) => ({
        id,
        addr: this.addressOf(id) ?? '',
        voter: st.confState.voters.includes(id),
        matchIndex: st.progress.get(id)?.match,
      })),
    };
  }
}
