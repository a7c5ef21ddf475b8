// The datanode's logic without its process plumbing (issue 15): which regions it reopens at
// start, registration with the metasrv and the opens its answer lists, heartbeats (one in flight
// at a time) and the replica reports they carry (full, or what changed since the report the
// metasrv acknowledged: report-delta.ts), the instructions of the answers (open_region —
// a failed replica is replaced under another peer id —, close_region with destroy, campaign,
// transfer_leader, change_peer), the metasrv epoch that fences a deposed metasrv leader, and the
// deletion of a replica removed from its group. `Datanode` (datanode.ts) is its gRPC/HTTP/process
// shell; the whole-datanode simulator (docs/simulation.md) runs this core on simulated time.
//
// What it touches outside itself goes through seams, each with its production implementation:
//   - the durable log and region metas: a `LogEngine` (the WAL);
//   - the region server: built by `createRegionServer` with the hooks this core needs (the
//     shell adds its metrics hooks and the state machine factory);
//   - time and timers: a `TimedClock` (systemClock);
//   - the metasrv: a `MetasrvCaller` (MetaChannel, which follows the metasrv group's leader);
//   - metrics: `DatanodeCoreHooks`.
//
// Replica identity: a node hosts at most one replica of a region, named by its peer id, and a
// region may come back to the node under a fresh one (a repair in place). An open_region naming
// another peer id than the replica hosted here is refused (an error to its caller, a warning, a
// count), never ignored; a close_region naming a peer id closes only a replica hosted under it —
// running, fenced, failed, or only its data on disk — so a stale or duplicated close cannot take
// the replica that replaced the one it meant (findings M16, M17 in docs/correctness.md).
//
// Ordering rules it keeps:
//   O1 one heartbeat in flight at a time, so a reply's instructions are queued in order (an older
//      reply's close(destroy) never runs after a newer reply's open of the same region);
//   O2 instructions run one at a time in arrival order, off the heartbeat (a slow one must not
//      stop the beats, or the metasrv takes a live node for dead); the queue is bounded;
//   O3 opens and closes of replicas run one at a time (`serialized`), whoever asks;
//   O4 a region's meta is durable before its replica opens (a restart reopens what has a meta).
import { randomBytes } from 'node:crypto';
import type { TimedClock, TimerHandle } from '../common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { LogLimiter } from '../common/log-limiter.js';
import type { Logger } from '../common/logger.js';
import { ConfChangeType, EntryType, type RaftLogStore, type ResultOf, type StateMachine, decodeConfChange } from '../raft/index.js';
import type { MetaCallOptions } from '../rpc/meta-channel.js';
import { u64 } from '../rpc/proto.js';
import { fromGrpcError } from '../rpc/status.js';
import type { HeartbeatResponse__Output, Instruction__Output, OpenRegionRequest__Output, RegisterNodeRequest, RegisterNodeResponse__Output, ReplicaStat__Output } from '../rpc/generated/index.js';
import { fromProtoSchema } from '../rpc/values.js';
import type { RegionServer, RegionServerHooks, Replica } from '../replication/region-server.js';
import { type StateMachineStat, failedReplicaStat, runningReplicaStat } from '../replication/replica-stats.js';
import { type StartId, type StartRecord, type WitnessedStart, copyByWitness } from '../common/store-id.js';
import type { StartWitness } from './start-witness.js';
import type { LogEngine } from '../wal/log-engine.js';
import { ReportTracker } from './report-delta.js';
import type { RegionMeta } from './types.js';

/** An OpenRegion request or instruction as it arrives (decoded by proto-loader). */
export type ProtoOpenRegion = OpenRegionRequest__Output;
type ProtoInstruction = Instruction__Output;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How the datanode reaches the metasrv (its leader): MetaChannel in production. */
export interface MetasrvCaller {
  call<Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown, timeoutMs: number, options: MetaCallOptions): Promise<Res>;
  /** The last answer was refused by its epoch: ask another metasrv address next (MetaChannel.passOver). */
  passOver?(): void;
}

/** Where this node is reached, as it reports itself at registration and in heartbeats. */
export interface NodeEndpoint {
  readonly addr: string;
  readonly httpAddr: string;
}

export interface DatanodeCoreHooks {
  /** A heartbeat was answered (the shell sets its replica and leader gauges). */
  onHeartbeat?(): void;
  /** A replica was closed here (the shell forgets its per-region metrics). */
  onRegionClosed?(regionId: string): void;
  /** The metasrv asked to destroy a replica here (a dropped table's, or one removed from its group); awaited first, bounded by the hook. */
  beforeDestroy?(regionId: string): Promise<void>;
  /**
   * An open_region or close_region was refused: it named another replica (peer id) of the region
   * than the one this node hosts (the shell counts them).
   */
  onInstructionRefused?(instruction: 'open_region' | 'close_region', regionId: string): void;
  /** This start refused itself as a restored copy of the data dir (K2, `startWitness`): it does not register. */
  onStartRefused?(reason: string): void;
}

export interface DatanodeCoreDeps<S extends StateMachine<R>, R = ResultOf<S>> {
  readonly nodeId: number;
  readonly clusterId: string;
  /** The identity of this data dir (common/store-id.ts), reported at registration and in heartbeats. */
  readonly storeId: string;
  /**
   * This start on the data dir and the starts the dir vouches for (common/store-id.ts
   * `recordStart`), reported at registration (and the start in heartbeats): the metasrv refuses a
   * dir that does not know the newest start it registered (a restored copy of the dir). Absent:
   * reported as 0 (not counted; nothing refused).
   */
  readonly start?: StartRecord;
  /**
   * Makes this start the data dir's confirmed one, durably (common/store-id.ts `confirmStart`):
   * called once the metasrv has answered its registration, before any replica is reopened.
   */
  confirmStart?(start: StartId): StartRecord;
  /**
   * K2 (start-witness.ts): a record of this node's answered starts outside the data dir (the
   * shared object store), read before this start registers — a start of this store the dir does
   * not vouch for makes it refuse itself as a restored copy, even when the metasrv's catalog is a
   * copy too — and written once a registration is answered, before any replica is reopened.
   * Absent: K1 alone (the metasrv's record).
   */
  readonly startWitness?: StartWitness;
  readonly heartbeatIntervalMs: number;
  readonly logEngine: LogEngine;
  /** Monotonic time and timers (the heartbeat, deferred closes, log rate limits). */
  readonly clock: TimedClock;
  readonly log: Logger;
  /** Builds the node's region server; it must pass `hooks` on (it may add its own beside them). */
  createRegionServer(hooks: RegionServerHooks): RegionServer<S, R>;
  /** What a running replica's state machine adds to its report (flushed index, memtable, SSTs). */
  stateMachineStat(state: S): StateMachineStat;
  readonly hooks?: DatanodeCoreHooks;
  /**
   * This process's report incarnation (report-delta.ts): a positive safe integer no other process
   * of this node ever used. Default: drawn at random (53 bits).
   */
  readonly reportIncarnation?: number;
  /** A full report at least every this many heartbeats (default FULL_REPORT_EVERY; 1: deltas off). */
  readonly fullReportEvery?: number;
  /**
   * The state machine's drop fence (DropTable, docs/ddl.md): the command that fences a region of
   * table `tableId`, and the fence a state has applied. Without it FenceRegion is refused (and a
   * drop of a table with regions here never completes).
   */
  readonly dropFence?: {
    encode(tableId: number): Uint8Array;
    of(state: S): { readonly index: number; readonly tableId: number } | undefined;
  };
}

/** RegisterNode answers that refuse this start for good (DatanodeCore.startRefusal). */
const REGISTRATION_REFUSALS: ReadonlySet<string> = new Set([ErrorCode.Corruption, ErrorCode.InvalidArgument, ErrorCode.Unauthenticated, ErrorCode.PermissionDenied, ErrorCode.AlreadyExists]);

/** Heartbeats between two full reports when nothing asks for one sooner (a minute at the default 1 s interval). */
export const FULL_REPORT_EVERY = 60;

/** A report incarnation for a new process: 53 random bits (the OS's), never 0. */
export function randomReportIncarnation(): number {
  const bits = randomBytes(8).readBigUInt64BE() & BigInt(Number.MAX_SAFE_INTEGER);
  return Number(bits) || 1;
}

export class DatanodeCore<S extends StateMachine<R>, R = ResultOf<S>> {
  readonly nodeId: number;
  readonly clusterId: string;
  readonly storeId: string;
  readonly addresses = new Map<number, string>();
  readonly metas = new Map<string, RegionMeta>();
  /**
   * Replicas this process closed without deleting their data (region id → the peer id the data
   * belongs to): reported whole in every heartbeat (HeartbeatRequest.held_replicas), so that the
   * metasrv reopens one its group still counts instead of judging it lost, and deletes one its
   * group went past (docs/failover.md, "Replicas held closed"). An open or a destroy of the region
   * takes it out; a restart reopens every replica of the log (reopenRegions), so it lives and dies
   * with the process.
   */
  private readonly heldClosed = new Map<string, number>();
  readonly regionServer: RegionServer<S, R>;
  private readonly logEngine: LogEngine;
  private readonly clock: TimedClock;
  private readonly log: Logger;
  private readonly hooks: DatanodeCoreHooks;
  private heartbeatTimer: TimerHandle | undefined;
  /** The metasrv (group leader) this node beats to; set by startHeartbeats. */
  private metasrv: MetasrvCaller | undefined;
  private endpoint: NodeEndpoint = { addr: '', httpAddr: '' };
  private registeredFlag = false;
  /**
   * Replicas in the log not reopened yet: startHeartbeats with `reopenOnRegistration` leaves them
   * closed until the metasrv has answered a registration of this start (a restored copy of the
   * data dir must not answer raft with its rolled-back votes and logs, docs/failover.md).
   */
  private reopenPending = false;
  /** Why the metasrv refused to register this start (a stale copy of the data dir); /health shows it. */
  private refusedStart: string | undefined;
  /** This start as the data dir records it (confirmed once a registration was answered). */
  private start: StartRecord | undefined;
  /**
   * The highest metasrv epoch seen (docs/metasrv-ha.md, fencing): instructions of a metasrv with
   * a lower one — an old group leader that has not noticed its demotion — are ignored. 0 is a
   * single metasrv's (no group, nothing to fence).
   */
  private metasrvEpoch = 0;
  /** The highest epoch in the registration and heartbeat answers of the metasrv this node talks to (> 0: it is a group; Y3). In memory: a restart forgets it. */
  private groupAnswerEpoch = 0;
  private readonly epochLogs = new LogLimiter(10_000);
  /** The heartbeat in flight: one at a time, so its instructions apply in order (issue 14.8). */
  private heartbeating: Promise<void> | undefined;
  private stopping = false;
  /** Which replica stats each heartbeat carries (full, or what changed since the acknowledged report). */
  private readonly reports: ReportTracker;

  constructor(private readonly deps: DatanodeCoreDeps<S, R>) {
    this.nodeId = deps.nodeId;
    this.clusterId = deps.clusterId;
    this.storeId = deps.storeId;
    this.logEngine = deps.logEngine;
    this.clock = deps.clock;
    this.log = deps.log;
    this.hooks = deps.hooks ?? {};
    this.start = deps.start;
    this.reports = new ReportTracker(deps.reportIncarnation ?? randomReportIncarnation(), deps.fullReportEvery ?? FULL_REPORT_EVERY);
    this.regionServer = deps.createRegionServer({
      onConfChange: (regionId, _cs, peers) => {
        if (!this.regionServer.replica(regionId)) {
          // This replica was removed from the region: fenced to clients by the region server,
          // it still answers raft (docs/raft-rules.md R16, "The removed replica") until the
          // metasrv destroys it — once the region's leader reports a configuration at or past
          // the removal (reconcile.ts destroyReason), or the region is closed. Its meta stays:
          // reopened after a restart, it reaches its removal again (region-server.ts reopenRemoved)
          // and answers as before.
          this.log.info({ regionId, peerId: this.regionServer.hostedReplica(regionId)?.selfPeerId }, 'this replica was removed from its region; it answers raft until the metasrv destroys it');
          return;
        }
        this.persistPeers(regionId, peers);
      },
    });
  }

  /** Whether this process did what the metasrv said at registration (/health's `registered`). */
  get registered(): boolean {
    return this.registeredFlag;
  }

  /** Reopens every region this node hosted before the restart (those with a meta in the log). */
  async reopenRegions(): Promise<void> {
    for (const regionId of this.logEngine.regionIds()) {
      const raw = this.logEngine.getRegionMeta(regionId);
      if (!raw) continue;
      const meta = JSON.parse(decoder.decode(raw)) as RegionMeta;
      this.metas.set(regionId, meta);
      for (const p of meta.peers) if (p.addr) this.addresses.set(p.nodeId, p.addr);
      await this.regionServer.open({ regionId, selfPeerId: meta.selfPeerId, peers: meta.peers, bootstrap: false });
      this.heldClosed.delete(regionId);
    }
  }

  /**
   * Why the metasrv refused this start's registration for good, if it did (`CODE: message`): the
   * data dir is a restored copy of an earlier state (CORRUPTION, docs/failover.md "A data dir
   * restored from a copy"), the node belongs to another cluster or has a malformed identity
   * (INVALID_ARGUMENT), its credentials are refused (UNAUTHENTICATED, PERMISSION_DENIED), or its
   * node id belongs to another live datanode (ALREADY_EXISTS). /health reports the node
   * `refused` with it; nothing of the dir is reopened. A transient failure (the metasrv
   * unreachable, no leader) is not a refusal.
   */
  get startRefusal(): string | undefined {
    return this.refusedStart;
  }

  /** The log's replicas wait for this start's registration (startHeartbeats' `reopenOnRegistration`). */
  get awaitingRegistration(): boolean {
    return this.reopenPending;
  }

  /**
   * Why an Admin OpenRegion (a CreateTable's open, a recovery) must not run now, if it must not:
   * this start is not registered yet, so the log's replicas are not reopened and the data dir may
   * still be refused as a stale copy — or it was refused (K1/K2) and the operator is to move it
   * aside, taking whatever an open put there with it. Checked after the epoch (the shell's
   * handler and the simulator's Admin alike); the metasrv's heartbeat path opens the region once
   * the node has registered (the registration's answer names it).
   */
  adminOpenRefusal(): RegionDbError | undefined {
    if (!this.reopenPending) return undefined;
    if (this.refusedStart !== undefined) {
      return new RegionDbError(ErrorCode.Unavailable, `datanode ${this.nodeId} opens no region: its start was refused (${this.refusedStart}); its data dir is to be moved aside`);
    }
    return new RegionDbError(ErrorCode.Unavailable, `datanode ${this.nodeId} has not registered this start with the metasrv yet; retry`);
  }

  /**
   * Registers and beats every heartbeat interval from now on. With `reopenOnRegistration`, the
   * replicas in the log are reopened (reopenRegions) only once the metasrv has answered this
   * start's registration, before the opens it names: a datanode never answers raft from a data
   * dir the metasrv may refuse as a stale copy.
   */
  startHeartbeats(metasrv: MetasrvCaller, endpoint: NodeEndpoint, options: { reopenOnRegistration?: boolean } = {}): void {
    this.metasrv = metasrv;
    this.endpoint = endpoint;
    if (options.reopenOnRegistration) this.reopenPending = true;
    this.heartbeatTimer = this.clock.setInterval(() => void this.heartbeatOnce(), this.deps.heartbeatIntervalMs);
    void this.heartbeatOnce();
  }

  /**
   * No more beats or instructions; waits for the beat and the instructions in flight (they must
   * not run against a closed WAL; later ones see `stopping`). The caller closes the metasrv
   * channel first, so a beat still looking for a metasrv leader gives up at once.
   */
  async stop(): Promise<void> {
    this.halt();
    await this.heartbeating;
    await this.instructionQueue;
  }

  /** Stops beating and executing at once, waiting for nothing (a process that dies). */
  halt(): void {
    this.stopping = true;
    this.heartbeatTimer?.cancel();
  }

  // ─── Regions ────────────────────────────────────────────────────────────────────────────────

  /** Validates an open/recover instruction: peer ids are positive and this node hosts self_peer_id. */
  regionMetaOf(open: ProtoOpenRegion): RegionMeta {
    const meta: RegionMeta = {
      regionId: open.region_id,
      schema: fromProtoSchema(open.table),
      selfPeerId: u64(open.self_peer_id, 'self_peer_id'),
      peers: open.peers.map((p) => ({ peerId: u64(p.peer_id, 'peer_id'), nodeId: u64(p.node_id, 'node_id'), addr: p.addr })),
    };
    if (meta.peers.some((p) => p.peerId === 0)) throw new RegionDbError(ErrorCode.InvalidArgument, `region ${meta.regionId}: peer ids must be positive`);
    if (!meta.peers.some((p) => p.peerId === meta.selfPeerId && p.nodeId === this.nodeId)) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `region ${meta.regionId}: peer ${meta.selfPeerId} is not on node ${this.nodeId}`);
    }
    return meta;
  }

  /**
   * Opens, recoveries and closes of replicas run one at a time on a node (O3). They come from
   * heartbeat instructions and from Admin calls (the metasrv's `recover`); interleaved, a
   * heartbeat's open could slip between a recovery's close and its reopen and leave the empty
   * replica in place of the recovered one.
   */
  private regionOps: Promise<unknown> = Promise.resolve();

  serialized<T>(op: () => Promise<T>): Promise<T> {
    const run = this.regionOps.then(op, op);
    this.regionOps = run.catch(() => undefined);
    return run;
  }

  openRegion(open: ProtoOpenRegion): Promise<void> {
    return this.serialized(() => this.openRegionNow(open));
  }

  /** Closes the region's replica; with `peerId` (not 0) only if the one hosted here is that peer (see closeRegionNow). */
  closeRegion(regionId: string, destroy: boolean, peerId = 0): Promise<void> {
    return this.serialized(() => this.closeRegionNow(regionId, destroy, peerId));
  }

  private async openRegionNow(open: ProtoOpenRegion): Promise<void> {
    const regionId = open.region_id;
    // Another replica of the region here (running, or removed from its group and not deleted
    // yet): a node hosts one replica per region, and the open must not pass for done. A failed
    // one is different: a fresh peer id replaces it (below).
    const present = this.regionServer.hostedReplica(regionId);
    if (present && String(present.selfPeerId) !== String(open.self_peer_id)) {
      const asked = Number(open.self_peer_id);
      this.refuse('open_region', regionId, asked, present.selfPeerId);
      throw new RegionDbError(
        ErrorCode.ConditionFailed,
        `region ${regionId}: open of peer ${open.self_peer_id} refused: node ${this.nodeId} hosts the region under peer ${present.selfPeerId}${present.closed ? ' (removed from its group; it answers raft until the metasrv destroys it)' : ''}; one replica per region on a node`,
        { details: { refused: 'open_region', hostedPeerId: String(present.selfPeerId) } },
      );
    }
    if (this.regionServer.replica(regionId)) return;
    const opened = this.regionMetaOf(open);
    const failure = this.regionServer.failure(regionId);
    // Only its data on disk (closed without destroy, or not reopened yet): that is a replica of
    // the region here too. Opened under another peer id it would take over the old peer's log and
    // vote, and a later destroy of the new peer would delete the old one's data while its group
    // may still count it (finding M24, docs/correctness.md). Data whose meta does not read names
    // no peer: refused too (a close_region of any peer id deletes it).
    const onDisk = present || failure ? undefined : this.peerOnDisk(regionId);
    if (onDisk !== undefined && onDisk !== opened.selfPeerId) {
      const held = onDisk === 'unreadable' ? 'data of the region whose meta does not read (its peer unknown)' : `the data of the region's peer ${onDisk} (not open)`;
      this.refuse('open_region', regionId, opened.selfPeerId, onDisk === 'unreadable' ? 0 : onDisk, { onDisk: true });
      throw new RegionDbError(ErrorCode.ConditionFailed, `region ${regionId}: open of peer ${opened.selfPeerId} refused: node ${this.nodeId} holds ${held}; one replica per region on a node`, {
        details: { refused: 'open_region', hostedPeerId: onDisk === 'unreadable' ? '0' : String(onDisk) },
      });
    }
    // This peer's own data (closed without destroy): the open's peer list is the catalog's, which
    // may be older than the group (a catalog restored from a copy) and miss a member whose node
    // only the data's meta records — learned from a membership change now compacted into the
    // snapshot, which carries no nodes. Such a member is kept (a peer id lives on one node for
    // good). Without it a leader reopened here names no node for it (ReplicaStat.members), and R2
    // can neither adopt the group's membership nor place the member for repair (M25): the catalog
    // and the group disagree for good (finding M27, docs/correctness.md).
    const meta = onDisk === opened.selfPeerId ? withMembersOnDisk(opened, this.logEngine.getRegionMeta(regionId), () => membersOnDisk(this.logEngine.region(regionId))) : opened;
    if (failure) {
      // A failed replica is never reopened under its own peer id (its log cannot be trusted, or
      // it cannot apply): it stays failed and reported. A fresh peer id is its replacement,
      // placed here by repair: the failed replica's state goes first.
      if (failure.selfPeerId === meta.selfPeerId) return;
      this.log.warn({ regionId, failedPeerId: failure.selfPeerId, peerId: meta.selfPeerId }, 'replacing a failed replica with a fresh peer');
      await this.closeRegionNow(regionId, true, failure.selfPeerId);
    }
    for (const p of meta.peers) if (p.addr) this.addresses.set(p.nodeId, p.addr);
    this.metas.set(regionId, meta);
    await this.writeRegionMeta(meta);
    await this.regionServer.open({ regionId, selfPeerId: meta.selfPeerId, peers: meta.peers, bootstrap: open.bootstrap });
    this.heldClosed.delete(regionId);
  }

  /**
   * The peer id of the region's data on disk (not open): M24's check in openRegionNow. Protected
   * for the simulator's planted bug of 8e (test/sim/sim-overlap-bugs.ts), which re-creates the
   * datanode from before it; nothing in src/ overrides it.
   */
  protected peerOnDisk(regionId: string): number | 'unreadable' | undefined {
    const peerId = this.hostedPeerId(regionId);
    if (peerId !== undefined) return peerId;
    return this.logEngine.getRegionMeta(regionId) ? 'unreadable' : undefined;
  }

  /** Makes a region's meta durable (O4): what a restart reopens the replica from. */
  async writeRegionMeta(meta: RegionMeta): Promise<void> {
    const batch = this.logEngine.batch();
    batch.setRegionMeta(meta.regionId, encoder.encode(JSON.stringify(meta)));
    await batch.commit();
  }

  private persistPeers(regionId: string, peers: readonly { peerId: number; nodeId: number }[]): void {
    const meta = this.metas.get(regionId);
    if (!meta) return;
    const updated: RegionMeta = {
      ...meta,
      peers: peers.map((p) => ({ ...p, addr: this.addresses.get(p.nodeId) ?? meta.peers.find((q) => q.peerId === p.peerId)?.addr ?? '' })),
    };
    this.metas.set(regionId, updated);
    this.writeRegionMeta(updated).catch((err: unknown) => this.log.error({ err, regionId }, 'persisting region meta failed'));
  }

  /**
   * Closes (with `destroy`, deletes) a replica now; only inside `serialized` (O3). With `peerId`
   * (not 0) only the replica of that peer: if this node hosts the region under another one
   * (hostedPeerId) the close is refused — logged, counted, nothing done. 0 closes whatever is
   * there (a close_region of a metasrv that names no peer; a recovery, which replaces any).
   */
  async closeRegionNow(regionId: string, destroy: boolean, peerId = 0): Promise<void> {
    if (peerId !== 0) {
      const hosted = this.hostedPeerId(regionId);
      if (hosted !== undefined && hosted !== peerId) {
        this.refuse('close_region', regionId, peerId, hosted, { destroy });
        return;
      }
    }
    // The peer whose data a close without destroy leaves here (undefined: nothing of the region
    // is here, or its meta does not read). A failed replica is not listed: reopened under its
    // own peer id it would break R4 (a failed replica is replaced, never reopened), and unlisted
    // the metasrv judges it lost as before. Recorded before the close, which drops the replica at
    // once and then waits for the running cycle: a heartbeat built meanwhile must show the data
    // (as held) rather than nowhere, or the metasrv could place the peer lost (the review of M38).
    // A destroy takes the entry out first, and a destroy that fails does not put it back: its
    // data may be half gone, and a reopen under the old peer id would start it empty.
    const kept = destroy || this.regionServer.failure(regionId) !== undefined ? undefined : this.hostedPeerId(regionId);
    if (kept !== undefined) this.heldClosed.set(regionId, kept);
    else this.heldClosed.delete(regionId);
    await this.regionServer.close(regionId, destroy);
    this.metas.delete(regionId);
    this.hooks.onRegionClosed?.(regionId);
    this.log.info({ regionId, destroy }, 'closed region');
  }

  /** The replicas whose data this node holds closed (`heldClosed`), as HeartbeatRequest.held_replicas. */
  heldReplicas(): { region_id: string; peer_id: string }[] {
    const out: { region_id: string; peer_id: string }[] = [];
    for (const [regionId, peerId] of this.heldClosed) out.push({ region_id: regionId, peer_id: String(peerId) });
    return out;
  }

  /**
   * The peer id under which this node hosts a replica of the region, whatever its state: running,
   * removed from its group and not deleted yet, failed, or only its data on disk (the peer id its
   * meta records: a replica not open). Undefined when nothing of the region is here, or its data
   * has no readable meta (no peer to name: a close of any peer id deletes it, as before).
   */
  hostedPeerId(regionId: string): number | undefined {
    const inServer = this.regionServer.hostedReplica(regionId)?.selfPeerId ?? this.regionServer.failure(regionId)?.selfPeerId;
    if (inServer !== undefined) return inServer;
    const known = this.metas.get(regionId)?.selfPeerId;
    if (known !== undefined) return known;
    const raw = this.logEngine.getRegionMeta(regionId);
    if (!raw) return undefined;
    try {
      const peerId = (JSON.parse(decoder.decode(raw)) as Partial<RegionMeta>).selfPeerId;
      return typeof peerId === 'number' ? peerId : undefined;
    } catch {
      return undefined;
    }
  }

  private readonly refusalLogs = new LogLimiter(10_000);

  /** An instruction naming another replica of the region than the one hosted: a warning (rate-limited per region) and a count. */
  private refuse(instruction: 'open_region' | 'close_region', regionId: string, askedPeerId: number, hostedPeerId: number, extra: Record<string, unknown> = {}): void {
    this.hooks.onInstructionRefused?.(instruction, regionId);
    const suppressed = this.refusalLogs.admit(`${instruction}:${regionId}`, this.clock.nowMs());
    if (suppressed === undefined) return;
    this.log.warn(
      { instruction, regionId, askedPeerId, hostedPeerId, ...extra, suppressed },
      `refused ${instruction}: it names peer ${askedPeerId}, this node hosts the region under peer ${hostedPeerId}`,
    );
  }

  /** Every replica hosted here, the failed ones included (health, failure: meta.proto ReplicaStat). */
  replicaStats(): ReplicaStat__Output[] {
    const healthy = this.regionServer.allReplicas().map((r) => runningReplicaStat(r, this.deps.stateMachineStat(r.stateMachine)));
    return [...healthy, ...this.regionServer.failedReplicas().map(failedReplicaStat)];
  }

  /**
   * The stats of the last report (see reportStats), frozen: an idle node's next report is this
   * same array, which the report tracker recognizes without looking inside. Empty until the first.
   */
  private lastReportStats: readonly ReplicaStat__Output[] = Object.freeze([]);
  /** Each running replica's index in lastReportStats; rebuilt with it (see reportStats). */
  private statPositions = new Map<Replica<S, R>, number>();
  /** membershipVersion when lastReportStats was last built from every replica (-1: never). */
  private statCacheMembership = -1;
  private statCacheReports = 0;

  /**
   * What replicaStats() returns, in the same order, with each running replica's stat built again
   * only when the region server says its state may have changed since the last heartbeat
   * (RegionServer.takeChangedReplicas). At thousands of quiesced regions a heartbeat then builds
   * the few stats that moved and reuses the others (the same objects, which the report's diff
   * sees as unchanged at once); when none moved it is the last report's array itself, so an idle
   * beat does nothing per replica (docs/performance.md, "Eighth pass"). Every stat is built
   * afresh when the hosted or failed replicas change (membershipVersion: allReplicas() keeps its
   * order otherwise, so a replica keeps its index) and every `fullReportEvery` reports, so a
   * change the region server did not mark could not outlive that.
   */
  reportStats(): readonly ReplicaStat__Output[] {
    const server = this.regionServer;
    const changed = server.takeChangedReplicas();
    const everyFull = this.deps.fullReportEvery ?? FULL_REPORT_EVERY;
    if (server.membershipVersion !== this.statCacheMembership || ++this.statCacheReports >= everyFull) return this.rebuildReportStats();
    if (changed.size === 0) return this.lastReportStats;
    let stats: ReplicaStat__Output[] | undefined;
    for (const r of changed) {
      const at = this.statPositions.get(r);
      // Every replica the server marks is hosted while its membershipVersion stands; anything
      // else (a replica closed mid-cycle) takes the slow path, which is always right.
      if (at === undefined) return this.rebuildReportStats();
      stats ??= this.lastReportStats.slice();
      stats[at] = runningReplicaStat(r, this.deps.stateMachineStat(r.stateMachine));
    }
    this.lastReportStats = Object.freeze(stats!);
    return this.lastReportStats;
  }

  /** Every stat built afresh, in replicaStats()'s order (see reportStats). */
  private rebuildReportStats(): readonly ReplicaStat__Output[] {
    const server = this.regionServer;
    this.statCacheMembership = server.membershipVersion;
    this.statCacheReports = 0;
    const stats: ReplicaStat__Output[] = [];
    const positions = new Map<Replica<S, R>, number>();
    for (const r of server.allReplicas()) {
      positions.set(r, stats.length);
      stats.push(runningReplicaStat(r, this.deps.stateMachineStat(r.stateMachine)));
    }
    for (const f of server.failedReplicas()) stats.push(failedReplicaStat(f));
    this.statPositions = positions;
    this.lastReportStats = Object.freeze(stats);
    return this.lastReportStats;
  }

  /** The stats the last heartbeat's report was built from (reportStats; the simulator's checker). */
  get reportedStats(): readonly ReplicaStat__Output[] {
    return this.lastReportStats;
  }

  // ─── Heartbeats ─────────────────────────────────────────────────────────────────────────────

  /** Whether instructions of a metasrv at `epoch` may run here; remembers the highest epoch seen. */
  admitEpoch(epochField: string | number | undefined, from: 'answer' | 'request' = 'request'): boolean {
    const epoch = Number(epochField ?? 0);
    if (epoch === 0) {
      // A single metasrv's (unfenced). Refused once the metasrv this node registers with has
      // answered as a group (finding Y3): a single metasrv answering beside a group — a member
      // started without [meta_group], the metasrv a group replaced started again at a listed
      // address — acts on a catalog of its own. Only answers count (`from: 'answer'`): an Admin
      // request's epoch is whatever its caller wrote, and one large value must not deafen the
      // node to its own single metasrv.
      if (this.groupAnswerEpoch === 0) return true;
      const suppressed = this.epochLogs.admit('single-after-group', this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ seenInAnswers: this.groupAnswerEpoch, suppressed }, 'ignored a single metasrv (epoch 0): this datanode follows a metasrv group (docs/metasrv-ha.md)');
      return false;
    }
    if (epoch < this.metasrvEpoch) {
      const suppressed = this.epochLogs.admit('stale-epoch', this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ epoch, seen: this.metasrvEpoch, suppressed }, 'ignored instructions of a metasrv with an older epoch (a deposed leader)');
      return false;
    }
    this.metasrvEpoch = epoch;
    if (from === 'answer') this.groupAnswerEpoch = Math.max(this.groupAnswerEpoch, epoch);
    return true;
  }

  /**
   * FenceRegion (DropTable, docs/ddl.md): a replica here that has applied the drop fence answers
   * its index (leader or not: applied means committed); else this node's replica of the region,
   * its leader, proposes the fence and answers its index once applied here. NOT_LEADER (with the leader, if known) on a follower; NOT_FOUND if the region is
   * not hosted here; INVALID_ARGUMENT if it is another table's.
   */
  async fenceRegion(regionId: string, tableId: number): Promise<number> {
    const fence = this.deps.dropFence;
    if (!fence) throw new RegionDbError(ErrorCode.Unavailable, `node ${this.nodeId} cannot fence regions (no drop fence in its state machine)`);
    const meta = this.metas.get(regionId);
    if (!meta || !this.regionServer.replica(regionId)) throw new RegionDbError(ErrorCode.NotFound, `region ${regionId} has no running replica on node ${this.nodeId}`);
    if (meta.schema.tableId !== tableId) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `region ${regionId} on node ${this.nodeId} is table ${meta.schema.tableId}'s, not table ${tableId}'s: not fenced`);
    }
    // Any replica applies only committed entries: a fence applied here, leader or not, is
    // committed and answers at once. Without this a region whose fence committed but which has
    // since lost its quorum would fail every later drop attempt (review finding F2).
    const local = fence.of(this.regionServer.replica(regionId)!.stateMachine);
    if (local) return local.index;
    const replica = this.regionServer.leaderReplica(regionId); // NOT_LEADER with the leader's node id
    const applied = fence.of(replica.stateMachine); // applied by the leader: committed
    if (applied) return applied.index;
    await this.regionServer.propose(regionId, fence.encode(tableId));
    const now = fence.of(replica.stateMachine);
    if (!now) throw new RegionDbError(ErrorCode.Internal, `region ${regionId}: the drop fence was applied but the state has none`);
    this.log.info({ regionId, tableId, fenceIndex: now.index }, 'region fenced: its table is being dropped');
    return now.index;
  }

  /** The highest metasrv epoch seen (for the shell's refusal messages). */
  get seenMetasrvEpoch(): number {
    return this.metasrvEpoch;
  }

  /**
   * One heartbeat at a time (O1): a beat whose reply (or whose instructions) take longer than
   * the interval must not overlap the next, which could apply an older reply's close(destroy)
   * after a newer reply's open of the same region. A tick that finds a beat in flight is skipped.
   */
  heartbeatOnce(): Promise<void> {
    const now = this.clock.nowMs();
    if (this.heartbeating) {
      // A beat outliving two intervals is what makes the metasrv suspect a live node: say so.
      const inFlightMs = now - this.heartbeatStartedMs;
      if (inFlightMs > 2 * this.deps.heartbeatIntervalMs && this.heartbeatLogs.admit('slow', now) !== undefined) {
        this.log.warn({ inFlightMs: Math.round(inFlightMs), phase: this.heartbeatPhase }, 'heartbeat still in flight; the metasrv may suspect this node');
      }
      return this.heartbeating;
    }
    // The timer itself late (the event loop was busy): also a gap the metasrv sees.
    const sinceLastMs = now - this.heartbeatStartedMs;
    if (this.heartbeatStartedMs > 0 && sinceLastMs > 2 * this.deps.heartbeatIntervalMs && this.heartbeatLogs.admit('late', now) !== undefined) {
      this.log.warn({ sinceLastMs: Math.round(sinceLastMs) }, 'heartbeat late (event loop busy?); the metasrv may suspect this node');
    }
    this.heartbeatStartedMs = now;
    this.heartbeating = this.heartbeat().finally(() => {
      this.heartbeating = undefined;
    });
    return this.heartbeating;
  }

  private heartbeatStartedMs = 0;
  /** Whether the beats stopped for a fatal storage error (logged once). */
  private fatalBeatsStopped = false;
  private heartbeatPhase = 'idle';
  private readonly heartbeatLogs = new LogLimiter(10_000);

  /** The budget of one registration or heartbeat call, every metasrv address tried included. */
  heartbeatTimeoutMs(): number {
    return Math.max(500, this.deps.heartbeatIntervalMs);
  }

  /**
   * One beat: a registration if needed, the heartbeat call, its instructions handed over.
   * Protected for the simulator's planted bug of finding 8e (test/sim/sim-overlap-bugs.ts), which
   * starts one every interval; nothing in src/ overrides or calls it but heartbeatOnce.
   */
  protected async heartbeat(): Promise<void> {
    if (this.stopping || !this.metasrv) return;
    const fatal = this.regionServer.fatalError();
    if (fatal !== undefined) {
      // The node stopped serving for good (a failed WAL write: docs/raft-rules.md R3). A beat
      // would report its replicas' frozen state — a leader that is no longer one, every replica
      // healthy — and keep the metasrv counting the node alive, its replicas never rebuilt
      // elsewhere. Silent, it is taken as down like a crashed node (docs/failover.md).
      if (!this.fatalBeatsStopped) {
        this.fatalBeatsStopped = true;
        this.log.error({ err: fatal }, 'no more heartbeats: this datanode stopped serving after a fatal storage error; the metasrv will take it as down and rebuild its replicas elsewhere (restart it once its disk is fixed)');
      }
      return;
    }
    const timeoutMs = this.heartbeatTimeoutMs();
    try {
      if (!this.registeredFlag) {
        // Refused once, refused for the process's life: a later read that fails (an object-store
        // blip) must not let the copy register and reopen (leaving it takes a restart anyway).
        const witnessed = this.reopenPending && !this.witnessRefused ? this.readStartWitness() : undefined;
        const seen = witnessed instanceof Promise ? await witnessed : witnessed;
        if (this.stopping) return;
        if (this.witnessRefused || this.refusedByWitness(seen)) {
          // Told to the metasrv, so that `regiondb status` names the refusal (it answers CORRUPTION).
          this.heartbeatPhase = 'telling the metasrv this start refuses itself';
          await this.metasrv.call('RegisterNode', { ...this.registration(), refused_as_copy: this.refusedStart }, timeoutMs, { idempotent: true }).catch(() => undefined);
          return;
        }
        this.heartbeatPhase = 'register';
        const res = await this.metasrv.call<RegisterNodeResponse__Output>(
          'RegisterNode',
          this.registration(),
          timeoutMs,
          { idempotent: true },
        ).catch((err: unknown) => {
          this.noteRegistrationRefusal(err);
          throw err;
        });
        // A deposed metasrv leader's answer: nothing of it is done; register again next beat.
        if (!this.admitEpoch(res.metasrv_epoch, 'answer')) {
          this.metasrv.passOver?.(); // a deposed leader or a single metasrv beside the group: ask another
          return;
        }
        this.refusedStart = undefined;
        // Durable before anything is reopened: the next start vouches for this one.
        if (this.start && this.start.confirmed?.id !== this.start.id) this.start = this.deps.confirmStart?.(this.start) ?? this.start;
        if (this.reopenPending) {
          const recording = this.recordStartWitnessed();
          if (recording) await recording;
        }
        if (this.reopenPending) {
          this.heartbeatPhase = 'reopening regions after registration';
          await this.reopenRegions(); // a failure: registered again next beat, and reopened again (opens are idempotent)
          this.reopenPending = false;
        }
        this.log.info({ regions: res.regions.length }, 'registered with metasrv');
        this.heartbeatPhase = 'opening regions after registration';
        for (const open of res.regions) await this.openRegion(open).catch((err: unknown) => this.log.error({ err, regionId: open.region_id }, 'open failed'));
        this.registeredFlag = true; // after the opens: /health's `registered` means "did what the metasrv said at registration"
        this.reports.forgetBase(); // a registration drops the metasrv's view of this node: a full report next
      }
      this.heartbeatPhase = 'heartbeat call';
      let res = await this.reportCall(timeoutMs);
      // A delta the metasrv could not apply (it holds no view of this node, or another one) was
      // taken for liveness only: the full report goes at once, not an interval later.
      if (res.fullNeeded && !this.stopping) {
        this.heartbeatPhase = 'full report call';
        res = await this.reportCall(timeoutMs);
      }
      if (this.admitEpoch(res.answer.metasrv_epoch, 'answer')) {
        const running = this.takeInstructions(res.answer.instructions);
        if (running) await running; // never in production: the instructions are queued (O2)
      } else {
        this.metasrv.passOver?.();
      }
      this.hooks.onHeartbeat?.();
    } catch (err) {
      if (this.stopping) return; // the channel was closed by stop(): not the metasrv's failure
      this.noteHeartbeatRefusal(err);
      // The metasrv may be down: reads and writes continue (docs/architecture.md §7); retry next beat.
      const now = this.clock.nowMs();
      const suppressed = this.heartbeatLogs.admit('failed', now);
      if (suppressed !== undefined) this.log.warn({ err: (err as Error).message, phase: this.heartbeatPhase, suppressed }, 'heartbeat to metasrv failed');
    } finally {
      this.heartbeatPhase = 'idle';
    }
  }

  /** One Heartbeat call with the next report (report-delta.ts); whether the metasrv asked for a full one. */
  private async reportCall(timeoutMs: number): Promise<{ answer: HeartbeatResponse__Output; fullNeeded: boolean }> {
    const report = this.reports.next(this.reportStats());
    const answer = await this.metasrv!.call<HeartbeatResponse__Output>(
      'Heartbeat',
      { cluster_id: this.clusterId, node_id: String(this.nodeId), addr: this.endpoint.addr, store_id: this.storeId, ...this.startFields(), ...report.fields, held_replicas: this.heldReplicas() },
      timeoutMs,
      { idempotent: true },
    );
    return { answer, fullNeeded: this.reports.answered(report, answer) };
  }

  private readonly witnessLogs = new LogLimiter(10_000);
  /** This start refused itself by the start witness (K2): for good, whatever later reads say. */
  private witnessRefused = false;

  /**
   * K2: the start witness's record of this node's starts (deps.startWitness), or undefined when
   * there is none or it cannot be read — logged and passed over: K1 (the metasrv's record) still
   * holds. A witness that answers at once is not awaited (the simulator's: its runs stay as they
   * were without a witness).
   */
  private readStartWitness(): WitnessedStart[] | Promise<WitnessedStart[] | undefined> | undefined {
    const witness = this.deps.startWitness;
    if (!witness || !this.start) return undefined;
    const unreadable = (err: unknown): undefined => {
      const suppressed = this.witnessLogs.admit('read', this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ err: (err as Error).message, suppressed }, "the object store's record of this node's starts cannot be read; registering without it (the metasrv's record still refuses a restored copy it can tell)");
      return undefined;
    };
    this.heartbeatPhase = 'reading the start witness';
    try {
      const seen = witness.starts();
      return seen instanceof Promise ? seen.catch(unreadable) : seen;
    } catch (err) {
      return unreadable(err);
    }
  }

  /**
   * K2: whether the witnessed starts make this start a restored copy of the data dir (a start of
   * this store the dir does not vouch for). If so `refusedStart` says why (/health "refused"),
   * the node stays unregistered — counted down by the metasrv, its replicas rebuilt elsewhere —
   * and asks again every beat.
   */
  private refusedByWitness(seen: readonly WitnessedStart[] | undefined): boolean {
    if (seen === undefined || !this.start) return false;
    const copy = copyByWitness(this.start, this.storeId, seen);
    if (copy === undefined) return false;
    this.witnessRefused = true;
    this.refusedStart = `${ErrorCode.Corruption}: this data dir is a restored copy of an earlier state: ${copy}. Its replicas may have forgotten votes and acknowledged entries, so the node does not register and reopens none of them. Move the data dir aside (keep it) and start the node on an empty one: it joins as a new store and its replicas are rebuilt from the others (docs/failover.md, "A data dir restored from a copy")`;
    const suppressed = this.witnessLogs.admit('copy', this.clock.nowMs());
    if (suppressed !== undefined) this.log.error({ storeId: this.storeId, start: this.start.count, suppressed }, this.refusedStart);
    this.hooks.onStartRefused?.(this.refusedStart);
    return true;
  }

  /**
   * K2: this start's registration was answered: recorded by the witness before anything is
   * reopened (a failure is logged; K1 still holds). A promise only when the witness's is.
   */
  private recordStartWitnessed(): Promise<void> | undefined {
    const witness = this.deps.startWitness;
    const start = this.start;
    if (!witness || !start) return undefined;
    const failed = (err: unknown) => {
      const suppressed = this.witnessLogs.admit('record', this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ err: (err as Error).message, start: start.count, suppressed }, "this start could not be recorded in the object store's record of the node's starts; reopening without it");
    };
    this.heartbeatPhase = 'recording this start with the start witness';
    try {
      const done = witness.record(this.storeId, { count: start.count, id: start.id });
      return done instanceof Promise ? done.catch(failed) : undefined;
    } catch (err) {
      failed(err);
      return undefined;
    }
  }

  /** This start's fields of RegisterNode and Heartbeat (0 and '' when starts are not counted). */
  private startFields(): { start_count: string; start_id: string } {
    return { start_count: String(this.start?.count ?? 0), start_id: this.start?.id ?? '' };
  }

  /** This start's RegisterNode request: the node, its store and the starts its data dir vouches for. */
  private registration(): RegisterNodeRequest {
    return { cluster_id: this.clusterId, node_id: String(this.nodeId), addr: this.endpoint.addr, http_addr: this.endpoint.httpAddr, store_id: this.storeId, ...this.startFields(), ...this.vouchedStarts() };
  }

  /** RegisterNode's starts the data dir vouches for: its last confirmed start and every start since. */
  private vouchedStarts(): { known_start_ids: string[]; confirmed_start_count: string } {
    const start = this.start;
    if (!start) return { known_start_ids: [], confirmed_start_count: '0' };
    const known = [...(start.confirmed ? [start.confirmed.id] : []), ...start.unconfirmed.map((s) => s.id)];
    return { known_start_ids: [...new Set([...known, start.id])], confirmed_start_count: String(start.confirmed?.count ?? 0) };
  }

  /**
   * A registration refused for good (startRefusal's codes) is kept for /health; the node asks
   * again every beat (an operator may fix the metasrv's side instead). CORRUPTION is the
   * metasrv's "this data dir is a restored copy" (the only CORRUPTION RegisterNode answers):
   * logged at error, once every 10 s at most (the others are logged as failed heartbeats).
   */
  private noteRegistrationRefusal(err: unknown): void {
    const e = fromGrpcError(err);
    if (!REGISTRATION_REFUSALS.has(e.code)) return;
    this.refusedStart = `${e.code}: ${e.message}`;
    if (e.code !== ErrorCode.Corruption) return;
    const suppressed = this.heartbeatLogs.admit('stale-start', this.clock.nowMs());
    if (suppressed !== undefined) {
      this.log.error({ err: e.message, suppressed, start: this.start?.count }, 'the metasrv refused this start: the data dir is a restored copy of an earlier state; no replica of it is reopened (move the data dir aside to start this node afresh)');
    }
  }

  /**
   * A metasrv that does not know this node (NOT_FOUND: its catalog was lost or restored from an
   * older copy) gets a registration on the next beat. Protected for the simulator's planted bug
   * (test/sim/sim-catloss-bugs.ts); nothing in src/ overrides it.
   */
  protected noteHeartbeatRefusal(err: unknown): void {
    if (fromGrpcError(err).code === ErrorCode.NotFound) this.registeredFlag = false;
  }

  /**
   * Instructions run one at a time in the order they came (O2: a close(destroy) never overtakes
   * an open of the same region), but off the heartbeat: a slow one must not stop the heartbeats,
   * or the metasrv takes a live node for dead. Bounded: the metasrv re-sends what is not done.
   */
  private instructionQueue: Promise<void> = Promise.resolve();
  private queuedInstructions = 0;

  /**
   * A heartbeat answer's instructions, handed over in order: queued (O2), nothing returned to
   * wait for. Protected for the simulator's planted bug of finding 8e, which runs them in the
   * beat instead (the beat then awaits the promise it returns); nothing in src/ overrides it.
   */
  protected takeInstructions(instructions: readonly ProtoInstruction[]): Promise<void> | undefined {
    for (const ins of instructions) this.enqueueInstruction(ins);
    return undefined;
  }

  private enqueueInstruction(ins: ProtoInstruction): void {
    if (this.queuedInstructions >= limits.datanodeInstructionsQueuedMax) {
      this.log.warn({ instruction: ins.kind, queued: this.queuedInstructions }, 'instruction queue full; dropped (the metasrv re-sends)');
      return;
    }
    this.queuedInstructions++;
    this.instructionQueue = this.instructionQueue.then(() => this.execute(ins)).finally(() => this.queuedInstructions--);
  }

  /** Runs one instruction (from the queue; protected for the planted bug of 8e, which runs them in the beat). */
  protected async execute(ins: ProtoInstruction): Promise<void> {
    if (this.stopping) return;
    try {
      if (ins.open_region) await this.openRegion(ins.open_region);
      else if (ins.close_region) {
        const { region_id: regionId, destroy } = ins.close_region;
        const peerId = u64(ins.close_region.peer_id ?? 0, 'peer_id');
        // Not for a close that will be refused (closeRegionNow checks again, in turn with the node's other opens and closes).
        const hosted = peerId === 0 ? undefined : this.hostedPeerId(regionId);
        if (destroy && (hosted === undefined || hosted === peerId)) await this.hooks.beforeDestroy?.(regionId);
        await this.closeRegion(regionId, destroy, peerId);
      }
      else if (ins.campaign) this.regionServer.campaign(ins.campaign.region_id);
      else if (ins.transfer_leader) this.regionServer.transferLeader(ins.transfer_leader.region_id, u64(ins.transfer_leader.to_peer_id, 'to_peer_id'));
      else if (ins.change_peer) {
        const cp = ins.change_peer;
        if (!cp.peer) throw new RegionDbError(ErrorCode.InvalidArgument, `change_peer of region ${cp.region_id} names no peer`);
        const peerId = u64(cp.peer.peer_id, 'peer_id');
        const nodeId = u64(cp.peer.node_id, 'node_id');
        if (cp.peer.addr) this.addresses.set(nodeId, cp.peer.addr);
        const type = cp.change === 'add-learner' ? ConfChangeType.AddLearner : cp.change === 'promote' ? ConfChangeType.AddVoter : ConfChangeType.RemoveNode;
        // Not awaited: a conf change commits when it commits (the metasrv watches the reports and
        // re-sends); waiting here would hold every later instruction behind it.
        this.regionServer.proposeConfChange(cp.region_id, { type, nodeId: peerId, context: JSON.stringify({ nodeId }) }).catch((err: unknown) => {
          if (!isRegionDbError(err, ErrorCode.NotLeader)) this.log.warn({ err: (err as Error).message, instruction: ins.kind }, 'instruction failed');
        });
      }
    } catch (err) {
      // A refusal was logged where it was made (refuse()).
      if (isRegionDbError(err) && err.details.refused !== undefined) return;
      if (!isRegionDbError(err, ErrorCode.NotLeader)) this.log.warn({ err: (err as Error).message, instruction: ins.kind }, 'instruction failed');
    }
  }
}

/**
 * The members of a region's log on disk: its snapshot's membership with the membership changes
 * of the log after it (committed or not; an entry that does not decode ends the scan). A peer the
 * log removes is not one; withMembersOnDisk keeps only these.
 */
function membersOnDisk(store: RaftLogStore): Set<number> {
  const { index, confState } = store.snapshot().metadata;
  const members = new Set([...confState.voters, ...confState.learners]);
  const last = store.lastIndex();
  if (last <= index) return members;
  for (const entry of store.entries(index + 1, last + 1, Number.MAX_SAFE_INTEGER)) {
    if (entry.type !== EntryType.ConfChange) continue;
    let cc: ReturnType<typeof decodeConfChange>;
    try {
      cc = decodeConfChange(entry.data);
    } catch {
      break;
    }
    if (cc.type === ConfChangeType.RemoveNode) members.delete(cc.nodeId);
    else members.add(cc.nodeId);
  }
  return members;
}

/**
 * An open's meta with the region's members (`members`, membersOnDisk) that the open does not
 * name and the region's meta on disk places (openRegionNow: a reopen of this peer's own data).
 * Peers the membership does not count are left out; the open's entries stay as they are. The
 * log is read for its members only when the meta places a peer the open does not name.
 */
function withMembersOnDisk(opened: RegionMeta, raw: Uint8Array | undefined, members: () => ReadonlySet<number>): RegionMeta {
  if (!raw) return opened;
  let onDisk: Partial<RegionMeta>;
  try {
    onDisk = JSON.parse(decoder.decode(raw)) as Partial<RegionMeta>;
  } catch {
    return opened;
  }
  if (onDisk.selfPeerId !== opened.selfPeerId || !Array.isArray(onDisk.peers)) return opened;
  const placedOnDisk = onDisk.peers;
  if (!placedOnDisk.some((q) => typeof q?.peerId === 'number' && !opened.peers.some((p) => p.peerId === q.peerId))) return opened;
  const kept: RegionMeta['peers'] = [];
  for (const peerId of members()) {
    if (opened.peers.some((p) => p.peerId === peerId)) continue;
    const p = placedOnDisk.find((q) => q?.peerId === peerId);
    if (p && typeof p.nodeId === 'number' && p.nodeId > 0) kept.push({ peerId, nodeId: p.nodeId, addr: typeof p.addr === 'string' ? p.addr : '' });
  }
  return kept.length === 0 ? opened : { ...opened, peers: [...opened.peers, ...kept] };
}
