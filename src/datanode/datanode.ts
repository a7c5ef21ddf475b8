// A datanode process: WAL + region server + gRPC services (Database, RaftTransport, Admin) +
// heartbeats to the metasrv + /metrics and /health. Its logic (reopening regions, registration,
// heartbeats, instructions) is DatanodeCore (datanode-core.ts), which the simulator also runs.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type TimedClock, systemClock } from '../common/clock.js';
import type { DatanodeConfig } from '../common/config.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { MemtableAccount, RegionState, type TableSchema, encodeCommand } from '../engine/index.js';
import { str, u64 } from '../rpc/proto.js';
import { databaseService } from '../rpc/batch-wire.js';
import { MetaChannel, type MetaCallOptions } from '../rpc/meta-channel.js';
import { type RunningGrpcServer, type RunningHttpServer, startGrpcServer, startHttpServer } from '../rpc/server.js';
import { unary } from '../rpc/status.js';
import type { AdminHandlers, OpenRegionResponse, ReplicaStat__Output } from '../rpc/generated/index.js';
import { type ProtoTableSchema, toProtoSchema } from '../rpc/values.js';
import { Wal } from '../wal/index.js';
import { LogLimiter } from '../common/log-limiter.js';
import { confirmStart, loadOrCreateStoreId, recordStart } from '../common/store-id.js';
import { type Message, NO_NODE } from '../raft/index.js';
import { Security } from '../rpc/security.js';
import { certificateNodeId, peerCertificate } from '../rpc/tls.js';
import { CachedObjectStore, type ObjectStore, createObjectStore } from '../object-store/index.js';
import { Flusher, systemFlusherEnv } from './flusher.js';
import { barrierAdmin } from './barrier-admin.js';
import { WriteBarrier } from './write-barrier.js';
import { SstLeases } from './sst-gc.js';
import { encodeManifest, loadLatestManifest } from '../engine/manifest.js';
import { SstReaders } from './sst-readers.js';
import type { ClientWriteGate, DatabaseHost } from './database-host.js';
import { DatabaseService } from './database-service.js';
import { GrpcRaftTransport, raftTransportService } from '../replication/grpc-transport.js';
import { membershipAdmission, serveRaftStream } from '../replication/raft-stream.js';
import { DatanodeMetrics } from './node-metrics.js';
import { NODE_BEAT_REGION_ID, RegionServer, type RaftTuning } from '../replication/region-server.js';
import type { RegionMeta } from './types.js';
import { DatanodeCore, type ProtoOpenRegion } from './datanode-core.js';
import { objectStoreStartWitness } from './start-witness.js';

/** An apply out to the object store this long is listed in the node's health (`applyingReplicas`): a slow read, not yet a failure. */
const APPLYING_REPORTED_AFTER_MS = 1000;

export type { ProtoOpenRegion };

export class Datanode implements DatabaseHost {
  readonly nodeId: number;
  readonly clusterId: string;
  /** raft.peer_addr_overrides: where raft traffic to a node goes instead (proxies). */
  private readonly raftAddrOverrides = new Map<number, string>();
  /** The memtable bytes of every live replica here (memtableBytes()). */
  private readonly memtableAccount = new MemtableAccount();
  /** The datanode's logic (regions, registration, heartbeats, instructions); set by start(). */
  private core: DatanodeCore<RegionState> | undefined;
  /** Dual active-standby (src/standby attaches it before start(); docs/replication.md). */
  standby: StandbyAttachment | undefined;
  get clientWriteGate(): ClientWriteGate | undefined {
    return this.standby?.writeGate;
  }
  private wal!: Wal;
  private transport!: GrpcRaftTransport;
  /** SSTs and manifests (docs/architecture.md §5); the shared durable copy of flushed data. */
  objectStore!: ObjectStore;
  /**
   * The same store without this node's cache in front: what `recover` reads a manifest from, so
   * that it judges the object as it is in the store, not a copy this node read earlier (its GC
   * and a new leader's manifest check read manifests through the cache).
   */
  private objectStoreUncached!: ObjectStore;
  flusher!: Flusher;
  /** Client writes held for a consistent backup's barrier (write-barrier.ts, docs/backup.md). */
  readonly writeBarrier: WriteBarrier;
  private grpcServer: RunningGrpcServer | undefined;
  private httpServer: RunningHttpServer | undefined;
  /** The metasrv group (metasrv.addr or metasrv.addrs): follows its leader (src/rpc/meta-channel.ts). */
  private metaChannel: MetaChannel | undefined;
  /** The identity of this data dir, reported at registration and in heartbeats (common/store-id.ts). */
  storeId = '';
  private stopping = false;
  advertiseAddr = '';
  readonly registry = new Registry();
  /** TLS, users and the call guard (docs/security.md); loaded first in start(). */
  security!: Security;
  /** Credentials of this node's calls to peers: mTLS with the node certificate, or plaintext. */
  peerCredentials!: grpc.ChannelCredentials;
  private database: DatabaseService | undefined;
  /** Raft messages refused by the admission check (cluster identity, docs/security.md). */
  private readonly raftRejected = new Counter({
    name: 'regiondb_raft_messages_rejected_total',
    help: 'Raft messages dropped before stepping: another cluster, a node id not matching its certificate, not a member of the region, region not hosted',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly raftRejectionLog = new LogLimiter(10_000);
  /** Instructions refused for naming another replica of a region than the one hosted (datanode-core.ts, replica identity). */
  private readonly instructionsRefused = new Counter({
    name: 'regiondb_datanode_instructions_refused_total',
    help: 'open_region and close_region instructions refused because they name another peer id than the replica of the region this node hosts',
    labelNames: ['instruction'],
    registers: [this.registry],
  });
  private readonly metrics;
  /** Raft, WAL, transport and request metrics (docs/observability.md). */
  readonly nodeMetrics: DatanodeMetrics;

  constructor(
    readonly config: DatanodeConfig,
    readonly log: Logger,
    /**
     * Monotonic time and timers of everything this node measures or schedules itself (the
     * heartbeat, the region server's ticks, the flusher's checks, ack intervals): systemClock in
     * production, a simulation's on its virtual time.
     */
    private readonly clock: TimedClock = systemClock,
  ) {
    this.nodeId = config.node.id;
    this.writeBarrier = new WriteBarrier(clock);
    this.clusterId = config.cluster_id;
    for (const [id, addr] of Object.entries(config.raft.peer_addr_overrides)) this.raftAddrOverrides.set(Number(id), addr);
    collectDefaultMetrics({ register: this.registry });
    this.nodeMetrics = new DatanodeMetrics(this.registry, {
      replicas: () => this.regionServer?.allReplicas() ?? [],
      transport: () => this.transport,
    });
    const self = this;
    this.metrics = {
      raftPayloadReceived: new Counter({
        name: 'regiondb_raft_received_payload_bytes_total',
        help: 'Bytes of log entries and snapshots received over the raft transport (data a lagging replica had to be sent)',
        registers: [this.registry],
      }),
      flushes: new Counter({ name: 'regiondb_engine_flushes_total', help: 'Memtables flushed to SSTs by this node (as leader)', registers: [this.registry] }),
      flushBytes: new Counter({ name: 'regiondb_engine_flush_bytes_total', help: 'SST bytes uploaded by flushes', registers: [this.registry] }),
      flushSeconds: new Histogram({ name: 'regiondb_engine_flush_duration_seconds', help: 'Flush duration (build + upload + edit commit)', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] }),
      compactions: new Counter({ name: 'regiondb_engine_compactions_total', help: 'SST compactions by this node (as leader)', registers: [this.registry] }),
      sstsDeleted: new Counter({ name: 'regiondb_engine_ssts_deleted_total', help: 'Unreferenced SSTs garbage-collected', registers: [this.registry] }),
      manifestsRefused: new Counter({
        name: 'regiondb_engine_manifests_refused_total',
        help: 'Manifest writes refused because a different manifest was already stored at the same flushed index (divergence or damage; never overwritten)',
        registers: [this.registry],
      }),
      memtableBytes: new Gauge({
        name: 'regiondb_engine_memtable_bytes',
        help: 'Bytes in memtables (active + frozen) of all replicas on this node',
        registers: [this.registry],
        collect(this: Gauge) {
          this.set(self.memtableBytes());
        },
      }),
      sstCount: new Gauge({
        name: 'regiondb_engine_ssts',
        help: 'SSTs referenced by the replicas on this node',
        registers: [this.registry],
        collect(this: Gauge) {
          this.set(self.regionServer?.allReplicas().reduce((n, r) => n + r.stateMachine.ssts.length, 0) ?? 0);
        },
      }),
    };
  }

  private requireCore(): DatanodeCore<RegionState> {
    if (!this.core) throw new RegionDbError(ErrorCode.Unavailable, `datanode ${this.nodeId} is not started`);
    return this.core;
  }

  /** The node's region server (undefined before start()). */
  get regionServer(): RegionServer<RegionState> {
    return this.core?.regionServer as RegionServer<RegionState>;
  }

  /** Where each node's datanode is reached, as the region metas and instructions named it. */
  get addresses(): ReadonlyMap<number, string> {
    return this.core?.addresses ?? new Map();
  }

  /** What this node remembers about each hosted region (schema, peers). */
  get metas(): ReadonlyMap<string, RegionMeta> {
    return this.core?.metas ?? new Map();
  }

  async start(): Promise<void> {
    const dataDir = this.config.node.data_dir;
    mkdirSync(dataDir, { recursive: true });
    this.security = new Security(this.config, this.log.child({ component: 'security' }));
    this.security.registerMetrics(this.registry);
    this.peerCredentials = this.security.channelCredentials();
    const store = loadOrCreateStoreId(dataDir, join(dataDir, 'wal'));
    this.storeId = store.storeId;
    if (store.origin !== 'existing') this.log.warn({ storeId: store.storeId, origin: store.origin }, store.origin === 'fresh' ? 'new store: empty data dir' : 'data dir from before store ids: adopted a store id');
    // Counted before anything else reads the dir: the metasrv refuses a start it has seen passed.
    const start = recordStart(dataDir);
    this.wal = await Wal.open(join(dataDir, 'wal'), this.log.child({ component: 'wal' }), this.nodeMetrics.wal);
    const engine = this.config.engine;
    this.objectStoreUncached = createObjectStore(this.config.storage ?? { type: 'fs', root: join(dataDir, 'objects') });
    this.objectStore = new CachedObjectStore(this.objectStoreUncached, engine.sst_cache_bytes);
    const sstReaders = new SstReaders(this.objectStore, this.clock);
    this.transport = new GrpcRaftTransport(this.clusterId, this.nodeId, (id) => this.raftAddrOverrides.get(id) ?? this.core?.addresses.get(id), this.log.child({ component: 'transport' }), this.peerCredentials);
    const raft = this.config.raft;
    const tuning: RaftTuning = {
      tickMs: raft.tick_ms,
      electionTicks: raft.election_ticks,
      heartbeatTicks: raft.heartbeat_ticks,
      preVote: raft.pre_vote,
      checkQuorum: raft.check_quorum,
      readOnly: raft.read_only,
      skipBcastCommit: raft.skip_bcast_commit,
      snapshotEveryEntries: raft.snapshot_every_entries,
      quiesceIdleTicks: raft.quiesce_idle_ticks,
      nodeDownAfterTicks: raft.node_down_after_ticks,
      beatEveryTicks: raft.beat_every_ticks,
      firstCampaignsPerTick: raft.first_campaigns_per_tick,
      preVotePriority: raft.pre_vote_priority,
      countLateVotes: raft.late_votes,
    };
    if (raft.read_only === 'lease') {
      this.log.warn('raft.read_only = "lease": linearizable reads are served from the leader\'s lease, which assumes the nodes\' clocks run at rates within a fifth of each other over an election timeout (nothing checks it; stalls of this process and leader transfers void the lease); a read can be stale if they do not (docs/raft.md, "Lease reads are off by default")');
    }
    const core: DatanodeCore<RegionState> = new DatanodeCore<RegionState>({
      nodeId: this.nodeId,
      clusterId: this.clusterId,
      storeId: this.storeId,
      start,
      confirmStart: (confirmed) => confirmStart(dataDir, confirmed),
      // K2: only a shared object store witnesses starts; the default one lives in the data dir
      // and would be put back with a copy of it.
      ...(this.config.storage ? { startWitness: objectStoreStartWitness(this.objectStoreUncached, this.nodeId) } : {}),
      heartbeatIntervalMs: this.config.heartbeat.interval_ms,
      logEngine: this.wal,
      clock: this.clock,
      log: this.log,
      createRegionServer: (hooks) =>
        new RegionServer<RegionState>(
          this.nodeId,
          this.wal,
          this.transport,
          {
            create: (regionId, data) => {
              const meta = core.metas.get(regionId);
              if (!meta) throw new RegionDbError(ErrorCode.Internal, `no schema for region ${regionId}`);
              const state = data ? RegionState.deserialize(meta.schema, data, regionId, sstReaders) : new RegionState(meta.schema, regionId, sstReaders);
              state.attachAccount(this.memtableAccount);
              return state;
            },
            release: (_regionId, state) => state.detachAccount(),
          },
          tuning,
          this.log.child({ component: 'region-server' }),
          this.clock,
          {
            ...hooks,
            onRoleChange: (regionId, role, leaderPeerId) => {
              this.nodeMetrics.onRoleChange(regionId, role, leaderPeerId);
              // A leader known again (elected, or learned by a follower): forwarded writes waiting for one go now.
              if (leaderPeerId !== NO_NODE) this.database?.noteLeaderChange(regionId);
            },
            onProposalDone: (_regionId, seconds, committed) => this.nodeMetrics.onProposalDone(seconds, committed),
            onSnapshotInstalled: () => this.nodeMetrics.onSnapshotInstalled(),
            logRetainFrom: (regionId) => this.standby?.logRetainFrom?.(regionId),
          },
        ),
      stateMachineStat: (state) => ({ flushedIndex: state.flushedIndex, memtableBytes: state.memtableBytes(), ssts: state.ssts.length }),
      dropFence: { encode: (tableId) => encodeCommand({ kind: 'drop-fence', tableId }), of: (state) => state.dropFence },
      hooks: {
        onRegionClosed: (regionId) => this.nodeMetrics.forgetRegion(regionId),
        beforeDestroy: async (regionId) => this.standby?.beforeDestroy?.(regionId),
        onInstructionRefused: (instruction) => this.instructionsRefused.inc({ instruction }),
      },
    });
    this.core = core;
    // The replicas this node hosted before the restart are reopened once the metasrv has answered
    // this start's registration (startHeartbeats below): a data dir restored from a copy is refused
    // there before any replica of it answers raft (docs/failover.md, "A data dir restored from a copy").

    this.flusher = new Flusher(
      this.regionServer,
      this.objectStore,
      {
        flushBytes: engine.flush_bytes,
        flushAgeMs: engine.flush_age_ms,
        compactAtSsts: engine.compact_at_ssts,
        gcGraceMs: engine.sst_gc_grace_ms,
        checkIntervalMs: 250,
        manifestsKept: 5,
        // A quiet region's GC pass once a grace, at most 10 min (docs/engine.md, "Quiet regions").
        gcQuietIntervalMs: Math.min(engine.sst_gc_grace_ms, 600_000),
      },
      this.log.child({ component: 'flusher' }),
      {
        flushed: (_regionId, bytes, seconds) => {
          this.metrics.flushes.inc();
          this.metrics.flushBytes.inc(bytes);
          this.metrics.flushSeconds.observe(seconds);
        },
        compacted: () => this.metrics.compactions.inc(),
        sstsDeleted: (count) => this.metrics.sstsDeleted.inc(count),
        manifestRefused: () => this.metrics.manifestsRefused.inc(),
      },
      this.clock,
      new SstLeases(),
      { ...systemFlusherEnv, scheduler: this.clock },
    );
    this.flusher.start();

    const database = new DatabaseService(this);
    this.database = database;
    this.grpcServer = await startGrpcServer(
      this.config.grpc.host,
      this.config.grpc.port,
      [
        { name: 'Database', definition: databaseService(), impl: database.implementation() },
        { name: 'RaftTransport', definition: raftTransportService(), impl: { Stream: (s: grpc.ServerDuplexStream<unknown, unknown>) => this.onRaftStream(s) } },
        { name: 'Admin', impl: this.adminImplementation() },
      ],
      this.log,
      this.security,
    );
    this.advertiseAddr = this.config.grpc.advertise_addr ?? `${this.config.grpc.host}:${this.grpcServer.port}`;
    core.addresses.set(this.nodeId, this.advertiseAddr);
    this.httpServer = await startHttpServer(this.config.http.host, this.config.http.port, this.registry, () => this.health());
    this.regionServer.start();
    this.standby?.start();
    // A heartbeat's attempt at one metasrv gets half its budget, so an unreachable (black-holed)
    // former leader leaves time to find the new one within the same beat.
    this.metaChannel = new MetaChannel(this.config.metasrv.addrs, { credentials: this.peerCredentials }, {
      clock: this.clock,
      attemptTimeoutMs: Math.max(1, Math.floor(core.heartbeatTimeoutMs() / 2)),
    });
    core.startHeartbeats(this.metaChannel, { addr: this.advertiseAddr, httpAddr: `${this.config.http.host}:${this.httpPort}` }, { reopenOnRegistration: true });
    this.log.info(
      { nodeId: this.nodeId, addr: this.advertiseAddr, http: `${this.config.http.host}:${this.httpServer.port}`, start: start.count, regionsInLog: this.wal.regionIds().length },
      'datanode started; its replicas reopen once the metasrv answers its registration',
    );
  }

  get grpcPort(): number {
    return this.grpcServer?.port ?? 0;
  }

  get httpPort(): number {
    return this.httpServer?.port ?? 0;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.core?.halt();
    this.writeBarrier.releaseAll();
    await this.standby?.stop();
    // Closed first: a beat still looking for a metasrv leader gives up now instead of retrying
    // until its deadline (heartbeat.interval_ms), which stop() would otherwise wait out.
    this.metaChannel?.close();
    await this.core?.stop(); // the beat and instructions in flight: they must not run against a closed WAL
    this.flusher?.stop();
    await this.regionServer?.stop();
    await this.transport?.close();
    await this.grpcServer?.stop();
    this.database?.close();
    await this.httpServer?.stop();
    await this.wal?.close();
    this.security?.close();
    this.nodeMetrics.close();
    this.log.info({ nodeId: this.nodeId }, 'datanode stopped');
  }

  /**
   * The node's health: `failed` only when the node itself cannot go on (a WAL write failed).
   * Failed replicas leave it `ok` (the node serves its other regions) and are listed; replicas
   * waiting for the object store to apply are listed as stalled (docs/replica-health.md).
   */
  health(): Record<string, unknown> {
    const fatal = this.regionServer?.fatalError();
    const failed = this.regionServer?.failedReplicas() ?? [];
    const stalled = (this.regionServer?.allReplicas() ?? []).filter((r) => r.stall);
    // Applies out to the object store for a while (a slow read): listed, the node is still ok.
    const nowMs = this.clock.nowMs();
    const applying = (this.regionServer?.allReplicas() ?? []).filter((r) => r.applying && nowMs - r.applying.sinceMs >= APPLYING_REPORTED_AFTER_MS);
    const refused = this.core?.startRefusal;
    return {
      status: fatal ? 'failed' : refused !== undefined ? 'refused' : 'ok',
      nodeId: this.nodeId,
      addr: this.advertiseAddr,
      registered: this.core?.registered ?? false,
      replicas: (this.regionServer?.allReplicas().length ?? 0) + failed.length,
      leaders: this.regionServer?.allReplicas().filter((r) => r.isLeader()).length ?? 0,
      ...(fatal ? { error: fatal.message } : refused !== undefined ? { error: refused } : {}),
      ...(failed.length > 0 ? { failedReplicas: failed.map((f) => ({ regionId: f.regionId, peerId: f.selfPeerId, index: f.index, reason: f.reason })) } : {}),
      ...(stalled.length > 0
        ? { stalledReplicas: stalled.map((r) => ({ regionId: r.regionId, index: r.stall!.index, attempts: r.stall!.attempts, error: r.stall!.lastError })) }
        : {}),
      ...(applying.length > 0
        ? { applyingReplicas: applying.map((r) => ({ regionId: r.regionId, index: r.applying!.index, waitingMs: Math.round(nowMs - r.applying!.sinceMs), behind: r.applying!.upTo - r.applying!.index })) }
        : {}),
    };
  }

  /** The address of a datanode, for NOT_LEADER redirects. */
  addressOf(nodeId: number | undefined): string | undefined {
    return nodeId === undefined ? undefined : this.addresses.get(nodeId);
  }

  // ─── Regions ────────────────────────────────────────────────────────────────────────────────

  /** Opens a replica as an open_region instruction says (serialized with every other open and close). */
  openRegion(open: ProtoOpenRegion): Promise<void> {
    return this.requireCore().openRegion(open);
  }

  recoverRegion(open: ProtoOpenRegion): Promise<OpenRegionResponse> {
    const core = this.requireCore();
    return core.serialized(() => this.recoverRegionNow(core, open));
  }

  closeRegion(regionId: string, destroy: boolean): Promise<void> {
    return this.requireCore().closeRegion(regionId, destroy);
  }

  /**
   * Disaster recovery of one replica: whatever this node holds for the region is dropped and the
   * region restarts from the latest manifest in the object store, as a raft snapshot at the
   * flushed index with the catalog's current peers as voters. Every replica of the region is
   * recovered from the same manifest, so they agree on the log from there on.
   */
  private async recoverRegionNow(core: DatanodeCore<RegionState>, open: ProtoOpenRegion): Promise<OpenRegionResponse> {
    const regionId = open.region_id;
    // Validate the instruction and read (and verify) the manifest first: neither a malformed
    // instruction nor a damaged manifest may cost the local replica.
    const meta = core.regionMetaOf(open);
    const { selfPeerId, peers } = meta;
    const latest = await loadLatestManifest(this.objectStoreUncached, regionId);
    if (this.regionServer.replica(regionId) || this.wal.regionIds().includes(regionId)) await core.closeRegionNow(regionId, true);
    for (const p of peers) if (p.addr) core.addresses.set(p.nodeId, p.addr);
    core.metas.set(regionId, meta);
    await core.writeRegionMeta(meta);
    if (!latest) {
      // Never flushed: nothing in the object store to recover; the region restarts empty.
      this.log.warn({ regionId }, 'recover: the region has no manifest in the object store; it restarts empty');
      await this.regionServer.open({ regionId, selfPeerId, peers, bootstrap: true });
      return { flushed_index: '0', manifest_written_ms: '0', ssts: 0, manifest: '' };
    }
    const m = latest.manifest;
    const batch = this.wal.batch();
    batch.applySnapshot(regionId, {
      metadata: { index: m.flushedIndex, term: m.flushedTerm, confState: { voters: peers.map((p) => p.peerId), learners: [] } },
      data: encodeManifest(m),
    });
    batch.setHardState(regionId, { term: m.flushedTerm, vote: 0, commit: m.flushedIndex });
    await batch.commit();
    await this.regionServer.open({ regionId, selfPeerId, peers, bootstrap: false });
    this.log.warn({ regionId, flushedIndex: m.flushedIndex, manifest: latest.key }, 'recovered the region from the object store');
    return { flushed_index: String(m.flushedIndex), manifest_written_ms: String(m.writtenAtMs), ssts: m.ssts.length, manifest: latest.key };
  }

  // ─── Raft transport (server side) ─────────────────────────────────────────────────────────────

  private onRaftStream(stream: grpc.ServerDuplexStream<unknown, unknown>): void {
    serveRaftStream(stream, {
      clusterId: this.clusterId,
      log: this.log,
      clock: this.clock,
      // Under TLS the guard admitted only node certificates; a datanode's names its id.
      certNodeId: (s) => {
        const cert = peerCertificate(s);
        return cert ? certificateNodeId(cert) : undefined;
      },
      admit: (fromNodeId, regionId, message) => this.raftAdmission(fromNodeId, regionId, message),
      step: (fromNodeId, regionId, message) => this.regionServer.step(fromNodeId, regionId, message),
      reject: (reason, context) => this.countRaftRejection(reason, context),
      onPayload: (bytes) => this.metrics.raftPayloadReceived.inc(bytes),
    });
  }

  /**
   * Why a raft message must not reach its region (docs/security.md, cluster identity), or
   * undefined. Dropping is always safe in raft (the network may lose any message); what is
   * refused: regions not hosted here, a peer id claimed from another node than the one it lives
   * on, and senders that are not (or no longer) members of the region. A replica that has not
   * learned its configuration yet (a new learner before its snapshot) trusts its peer list.
   */
  private raftAdmission(fromNodeId: number, regionId: string, message: Message): string | undefined {
    // A liveness beat names no region; the stream has already admitted its sender (docs/quiescence.md).
    if (regionId === NODE_BEAT_REGION_ID) return undefined;
    // A replica removed from its group still answers raft until it is deleted (R16).
    const replica = this.regionServer.raftReplica(regionId);
    if (!replica) return 'region-not-hosted';
    return membershipAdmission(replica.peers.get(message.from), fromNodeId, message.from, replica.raft);
  }

  private countRaftRejection(reason: string, context: Record<string, unknown>): void {
    this.raftRejected.inc({ reason });
    const suppressed = this.raftRejectionLog.admit(reason, this.clock.nowMs());
    if (suppressed !== undefined) this.log.warn({ reason, suppressed, ...context }, 'rejected raft traffic');
  }

  /** SIGHUP: re-read TLS certificates and the users file. */
  reload(): void {
    this.security?.reload();
  }

  // ─── Admin service ──────────────────────────────────────────────────────────────────────────

  /** Every replica hosted here, the failed ones included (health, failure: meta.proto ReplicaStat). */
  replicaStats(): ReplicaStat__Output[] {
    return this.requireCore().replicaStats();
  }

  /**
   * Memtable bytes (active + frozen) across all replicas: the node-level backpressure input, read
   * for every client write. Kept by the replicas' state machines as their memtables change
   * (MemtableAccount), so a write does not sum over every region hosted here.
   */
  memtableBytes(): number {
    return this.memtableAccount.bytes;
  }

  private ledReplicas(regionId: string | undefined) {
    const led = this.regionServer.allReplicas().filter((r) => r.isLeader() && (!regionId || r.regionId === regionId));
    if (regionId && led.length === 0) this.regionServer.leaderReplica(regionId); // throws NOT_LEADER / NOT_FOUND
    return led;
  }

  /** Flushes the regions led here (or one) and waits until what they held is in SSTs. */
  private async flushLedRegions(regionId: string | undefined): Promise<number> {
    const led = this.ledReplicas(regionId);
    const targets = led.map((r) => ({ r, upTo: r.appliedIndex }));
    for (const { r } of targets) this.flusher.request(r.regionId);
    this.flusher.check();
    const deadline = this.clock.nowMs() + 60_000;
    for (const { r, upTo } of targets) {
      for (;;) {
        const state = r.stateMachine;
        // Done when what the region held is in SSTs *and* a manifest naming them is in the
        // object store: only then does it survive the loss of every disk (`regiondb recover`).
        const inSsts = (state.memtable.count === 0 && state.frozen.length === 0) || state.flushedIndex >= upTo;
        if (inSsts && this.flusher.manifestIndex(r.regionId) >= state.flushedIndex) break;
        // Leadership moved mid-flush: this node's flusher no longer drives the region. NOT_LEADER
        // (with the new leader's address) lets the client retry the flush there.
        if (!r.isLeader()) this.regionServer.leaderReplica(r.regionId);
        if (this.clock.nowMs() > deadline) throw new RegionDbError(ErrorCode.DeadlineExceeded, `region ${r.regionId} did not finish flushing within 60 s`);
        await new Promise<void>((ok) => this.clock.setTimeout(ok, 50));
      }
    }
    return targets.length;
  }

  private compactLedRegions(regionId: string | undefined): number {
    const led = this.ledReplicas(regionId);
    for (const r of led) this.flusher.requestCompaction(r.regionId);
    this.flusher.check();
    return led.length;
  }

  private adminImplementation(): AdminHandlers {
    return {
      Status: unary(async () => ({ node_id: String(this.nodeId), addr: this.advertiseAddr, replicas: this.replicaStats() }), this.log),
      TransferLeader: unary(async (req) => {
        const replica = this.regionServer.leaderReplica(req.region_id);
        const toNode = u64(req.to_node_id, 'to_node_id');
        const peer = [...replica.peers.values()].find((p) => p.nodeId === toNode);
        if (!peer) throw new RegionDbError(ErrorCode.InvalidArgument, `node ${toNode} has no replica of region ${req.region_id}`);
        this.regionServer.transferLeader(req.region_id, peer.peerId);
        return {};
      }, this.log),
      OpenRegion: unary(async (req) => {
        if (!this.admitEpoch(req.metasrv_epoch)) {
          throw new RegionDbError(
            ErrorCode.ConditionFailed,
            `OpenRegion from a metasrv at epoch ${req.metasrv_epoch} refused: this datanode has seen epoch ${this.requireCore().seenMetasrvEpoch} (an old metasrv leader; docs/metasrv-ha.md)`,
          );
        }
        // Before this start is registered, the log's replicas are not reopened yet: an open (or a
        // recovery) now would act on a data dir the metasrv may still refuse as a stale copy.
        const refusal = this.requireCore().adminOpenRefusal();
        if (refusal) throw refusal;
        if (req.recover_from_object_store) return this.recoverRegion(req);
        await this.openRegion(req);
        return {};
      }, this.log),
      FenceRegion: unary(async (req) => {
        if (!this.admitEpoch(req.metasrv_epoch)) {
          throw new RegionDbError(
            ErrorCode.ConditionFailed,
            `FenceRegion from a metasrv at epoch ${req.metasrv_epoch} refused: this datanode has seen epoch ${this.requireCore().seenMetasrvEpoch} (an old metasrv leader; docs/metasrv-ha.md)`,
          );
        }
        const fenceIndex = await this.requireCore().fenceRegion(str(req.region_id, 'region_id', 32), u64(req.table_id, 'table_id'));
        return { fence_index: String(fenceIndex) };
      }, this.log),
      Flush: unary(async (req) => ({ regions: await this.flushLedRegions(req.region_id || undefined) }), this.log),
      Compact: unary(async (req) => ({ regions: this.compactLedRegions(req.region_id || undefined) }), this.log),
      ...(this.standby?.admin ?? standbyNotConfigured(this.log)),
      ...barrierAdmin({ regionServer: this.regionServer, flusher: this.flusher, writeBarrier: this.writeBarrier, clock: this.clock, log: this.log }),
    };
  }

  // ─── Heartbeats ─────────────────────────────────────────────────────────────────────────────

  /** Whether instructions of a metasrv at `epoch` may run here (DatanodeCore.admitEpoch). */
  private admitEpoch(epochField: string | number | undefined): boolean {
    return this.requireCore().admitEpoch(epochField);
  }

  /** One heartbeat now, unless one is in flight (DatanodeCore.heartbeatOnce). */
  heartbeatOnce(): Promise<void> {
    return this.requireCore().heartbeatOnce();
  }

  /** A call to the metasrv's leader (DDL and routes live there); see MetaCallOptions for `idempotent`. */
  async metaCall<Res>(method: string, request: unknown, options: MetaCallOptions & { readonly timeoutMs?: number }): Promise<Res> {
    if (!this.metaChannel) throw new RegionDbError(ErrorCode.Unavailable, 'metasrv client not started');
    return this.metaChannel.call<Res>(method, request, options.timeoutMs ?? 10_000, options);
  }

  schemaProto(schema: TableSchema): ProtoTableSchema {
    return toProtoSchema(schema);
  }
}

/** What src/standby plugs into a datanode: its Admin methods, the client write gate, its loops. */
type StandbyAdminMethods = 'StandbyShip' | 'StandbyStatus' | 'StandbyPromote' | 'StandbyFreeze' | 'StandbyUnfreeze' | 'StandbySeedObject' | 'StandbySeed';

export interface StandbyAttachment {
  readonly admin: Pick<AdminHandlers, StandbyAdminMethods>;
  readonly writeGate: ClientWriteGate;
  /** Primary: the log index the standby still needs from a region (RegionServerHooks.logRetainFrom). */
  logRetainFrom?(regionId: string): number | undefined;
  /** Primary: a replica of a dropped table is about to be destroyed here (S7 in standby-state.ts). */
  beforeDestroy?(regionId: string): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

function standbyNotConfigured(log: Logger): Pick<AdminHandlers, StandbyAdminMethods> {
  const refuse = async (): Promise<never> => {
    throw new RegionDbError(ErrorCode.Config, 'this datanode has no [standby] section: it is not part of a dual active-standby pair (docs/replication.md)');
  };
  return {
    StandbyShip: unary(refuse, log),
    StandbyStatus: unary(async () => ({ node_id: '0', role: 'none', regions: [], shipping: [], fence_epoch: '0', mode: '' }), log),
    StandbyPromote: unary(refuse, log),
    StandbyFreeze: unary(refuse, log),
    StandbyUnfreeze: unary(refuse, log),
    StandbySeedObject: unary(refuse, log),
    StandbySeed: unary(refuse, log),
  };
}
