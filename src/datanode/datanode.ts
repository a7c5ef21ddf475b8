// A datanode process: WAL + region server + gRPC services (Database, RaftTransport, Admin) +
// heartbeats to the metasrv + /metrics and /health.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type TimedClock, type TimerHandle, systemClock } from '../common/clock.js';
import type { DatanodeConfig } from '../common/config.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import { RegionState, type TableSchema } from '../engine/index.js';
import { ConfChangeType } from '../raft/index.js';
import { u64 } from '../rpc/proto.js';
import { databaseService } from '../rpc/batch-wire.js';
import { MetaChannel, type MetaCallOptions } from '../rpc/meta-channel.js';
import { type RunningGrpcServer, type RunningHttpServer, startGrpcServer, startHttpServer } from '../rpc/server.js';
import { fromGrpcError, unary } from '../rpc/status.js';
import type {
  AdminHandlers,
  HeartbeatResponse__Output,
  Instruction__Output,
  OpenRegionRequest__Output,
  OpenRegionResponse,
  RegisterNodeResponse__Output,
  ReplicaStat,
} from '../rpc/generated/index.js';
import { type ProtoTableSchema, fromProtoSchema, toProtoSchema } from '../rpc/values.js';
import { Wal } from '../wal/index.js';
import { LogLimiter } from '../common/log-limiter.js';
import { loadOrCreateStoreId } from '../common/store-id.js';
import type { Message } from '../raft/index.js';
import { Security } from '../rpc/security.js';
import { certificateNodeId, peerCertificate } from '../rpc/tls.js';
import { CachedObjectStore, type ObjectStore, createObjectStore } from '../object-store/index.js';
import { Flusher, systemFlusherEnv } from './flusher.js';
import { SstLeases } from './sst-gc.js';
import { encodeManifest, loadLatestManifest } from '../engine/manifest.js';
import { SstReaders } from './sst-readers.js';
import type { ClientWriteGate, DatabaseHost } from './database-host.js';
import { DatabaseService } from './database-service.js';
import { GrpcRaftTransport, raftTransportService } from '../replication/grpc-transport.js';
import { membershipAdmission, serveRaftStream } from '../replication/raft-stream.js';
import { failedReplicaStat, runningReplicaStat } from '../replication/replica-stats.js';
import { DatanodeMetrics } from './node-metrics.js';
import { RegionServer, type RaftTuning } from '../replication/region-server.js';
import type { RegionMeta } from './types.js';

/** An OpenRegion request or instruction as it arrives (decoded by proto-loader). */
export type ProtoOpenRegion = OpenRegionRequest__Output;
type ProtoInstruction = Instruction__Output;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Datanode implements DatabaseHost {
  readonly nodeId: number;
  readonly clusterId: string;
  readonly addresses = new Map<number, string>();
  /** raft.peer_addr_overrides: where raft traffic to a node goes instead (proxies). */
  private readonly raftAddrOverrides = new Map<number, string>();
  readonly metas = new Map<string, RegionMeta>();
  regionServer!: RegionServer<RegionState>;
  /** Dual active-standby (src/standby attaches it before start(); docs/replication.md). */
  standby: StandbyAttachment | undefined;
  get clientWriteGate(): ClientWriteGate | undefined {
    return this.standby?.writeGate;
  }
  private wal!: Wal;
  private transport!: GrpcRaftTransport;
  /** SSTs and manifests (docs/architecture.md §5); the shared durable copy of flushed data. */
  objectStore!: ObjectStore;
  flusher!: Flusher;
  private grpcServer: RunningGrpcServer | undefined;
  private httpServer: RunningHttpServer | undefined;
  private heartbeatTimer: TimerHandle | undefined;
  /** The metasrv group (metasrv.addr or metasrv.addrs): follows its leader (src/rpc/meta-channel.ts). */
  private metaChannel: MetaChannel | undefined;
  private registered = false;
  /**
   * The highest metasrv epoch seen (docs/metasrv-ha.md, fencing): instructions of a metasrv with
   * a lower one — an old group leader that has not noticed its demotion — are ignored. 0 is a
   * single metasrv's (no group, nothing to fence).
   */
  private metasrvEpoch = 0;
  private readonly epochLogs = new LogLimiter(10_000);
  /** The identity of this data dir, reported at registration and in heartbeats (common/store-id.ts). */
  storeId = '';
  /** The heartbeat in flight: one at a time, so its instructions apply in order (issue 14.8). */
  private heartbeating: Promise<void> | undefined;
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
    this.clusterId = config.cluster_id;
    for (const [id, addr] of Object.entries(config.raft.peer_addr_overrides)) this.raftAddrOverrides.set(Number(id), addr);
    collectDefaultMetrics({ register: this.registry });
    this.nodeMetrics = new DatanodeMetrics(this.registry, {
      replicas: () => this.regionServer?.allReplicas() ?? [],
      transport: () => this.transport,
    });
    const self = this;
    this.metrics = {
      leaders: new Gauge({ name: 'regiondb_raft_leaders', help: 'Regions led by this node', registers: [this.registry] }),
      replicas: new Gauge({ name: 'regiondb_replicas', help: 'Replicas hosted by this node', registers: [this.registry] }),
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

  async start(): Promise<void> {
    const dataDir = this.config.node.data_dir;
    mkdirSync(dataDir, { recursive: true });
    this.security = new Security(this.config, this.log.child({ component: 'security' }));
    this.security.registerMetrics(this.registry);
    this.peerCredentials = this.security.channelCredentials();
    const store = loadOrCreateStoreId(dataDir, join(dataDir, 'wal'));
    this.storeId = store.storeId;
    if (store.origin !== 'existing') this.log.warn({ storeId: store.storeId, origin: store.origin }, store.origin === 'fresh' ? 'new store: empty data dir' : 'data dir from before store ids: adopted a store id');
    this.wal = await Wal.open(join(dataDir, 'wal'), this.log.child({ component: 'wal' }), this.nodeMetrics.wal);
    const engine = this.config.engine;
    this.objectStore = new CachedObjectStore(createObjectStore(this.config.storage ?? { type: 'fs', root: join(dataDir, 'objects') }), engine.sst_cache_bytes);
    const sstReaders = new SstReaders(this.objectStore, this.clock);
    this.transport = new GrpcRaftTransport(this.clusterId, this.nodeId, (id) => this.raftAddrOverrides.get(id) ?? this.addresses.get(id), this.log.child({ component: 'transport' }), this.peerCredentials);
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
    };
    if (raft.read_only === 'lease') {
      this.log.warn('raft.read_only = "lease": linearizable reads are served from the leader\'s tick-based lease and can be stale after an event-loop stall or a leader transfer (docs/raft.md, "Lease reads"); use "safe" outside benchmarks');
    }
    this.regionServer = new RegionServer<RegionState>(
      this.nodeId,
      this.wal,
      this.transport,
      {
        create: (regionId, data) => {
          const meta = this.metas.get(regionId);
          if (!meta) throw new RegionDbError(ErrorCode.Internal, `no schema for region ${regionId}`);
          return data ? RegionState.deserialize(meta.schema, data, regionId, sstReaders) : new RegionState(meta.schema, regionId, sstReaders);
        },
      },
      tuning,
      this.log.child({ component: 'region-server' }),
      this.clock,
      {
        onConfChange: (regionId, _cs, peers) => {
          if (!this.regionServer.replica(regionId)) {
            // This replica was removed from the region (fenced by the region server): delete it.
            this.clock.setImmediate(() => void this.closeRegion(regionId, true).catch((err: unknown) => this.log.error({ err, regionId }, 'closing a removed replica failed')));
            return;
          }
          this.persistPeers(regionId, peers);
        },
        onRoleChange: (regionId, role, leaderPeerId) => this.nodeMetrics.onRoleChange(regionId, role, leaderPeerId),
        onProposalDone: (_regionId, seconds, committed) => this.nodeMetrics.onProposalDone(seconds, committed),
        onSnapshotInstalled: () => this.nodeMetrics.onSnapshotInstalled(),
        logRetainFrom: (regionId) => this.standby?.logRetainFrom?.(regionId),
      },
    );

    // Reopen every region this node hosted before the restart.
    for (const regionId of this.wal.regionIds()) {
      const raw = this.wal.getRegionMeta(regionId);
      if (!raw) continue;
      const meta = JSON.parse(decoder.decode(raw)) as RegionMeta;
      this.metas.set(regionId, meta);
      for (const p of meta.peers) if (p.addr) this.addresses.set(p.nodeId, p.addr);
      await this.regionServer.open({ regionId, selfPeerId: meta.selfPeerId, peers: meta.peers, bootstrap: false });
    }

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
    this.addresses.set(this.nodeId, this.advertiseAddr);
    this.httpServer = await startHttpServer(this.config.http.host, this.config.http.port, this.registry, () => this.health());
    this.regionServer.start();
    this.standby?.start();
    // A heartbeat's attempt at one metasrv gets half its budget, so an unreachable (black-holed)
    // former leader leaves time to find the new one within the same beat.
    this.metaChannel = new MetaChannel(this.config.metasrv.addrs, { credentials: this.peerCredentials }, {
      clock: this.clock,
      attemptTimeoutMs: Math.max(1, Math.floor(this.heartbeatTimeoutMs() / 2)),
    });
    this.heartbeatTimer = this.clock.setInterval(() => void this.heartbeatOnce(), this.config.heartbeat.interval_ms);
    void this.heartbeatOnce();
    this.log.info({ nodeId: this.nodeId, addr: this.advertiseAddr, http: `${this.config.http.host}:${this.httpServer.port}`, regions: this.metas.size }, 'datanode started');
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
    this.heartbeatTimer?.cancel();
    await this.standby?.stop();
    // Closed first: a beat still looking for a metasrv leader gives up now instead of retrying
    // until its deadline (heartbeat.interval_ms), which stop() would otherwise wait out.
    this.metaChannel?.close();
    await this.heartbeating;
    await this.instructionQueue; // instructions must not run against a closed WAL (later ones see `stopping`)
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
    return {
      status: fatal ? 'failed' : 'ok',
      nodeId: this.nodeId,
      addr: this.advertiseAddr,
      registered: this.registered,
      replicas: (this.regionServer?.allReplicas().length ?? 0) + failed.length,
      leaders: this.regionServer?.allReplicas().filter((r) => r.isLeader()).length ?? 0,
      ...(fatal ? { error: fatal.message } : {}),
      ...(failed.length > 0 ? { failedReplicas: failed.map((f) => ({ regionId: f.regionId, peerId: f.selfPeerId, index: f.index, reason: f.reason })) } : {}),
      ...(stalled.length > 0
        ? { stalledReplicas: stalled.map((r) => ({ regionId: r.regionId, index: r.stall!.index, attempts: r.stall!.attempts, error: r.stall!.lastError })) }
        : {}),
    };
  }

  /** The address of a datanode, for NOT_LEADER redirects. */
  addressOf(nodeId: number | undefined): string | undefined {
    return nodeId === undefined ? undefined : this.addresses.get(nodeId);
  }

  // ─── Regions ────────────────────────────────────────────────────────────────────────────────

  /** Validates an open/recover instruction: peer ids are positive and this node hosts self_peer_id. */
  private regionMetaOf(open: ProtoOpenRegion): RegionMeta {
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
   * Opens, recoveries and closes of replicas run one at a time on a node. They come from
   * heartbeat instructions and from Admin calls (the metasrv's `recover`); interleaved, a
   * heartbeat's open could slip between a recovery's close and its reopen and leave the empty
   * replica in place of the recovered one.
   */
  private regionOps: Promise<unknown> = Promise.resolve();

  private serialized<T>(op: () => Promise<T>): Promise<T> {
    const run = this.regionOps.then(op, op);
    this.regionOps = run.catch(() => undefined);
    return run;
  }

  openRegion(open: ProtoOpenRegion): Promise<void> {
    return this.serialized(() => this.openRegionNow(open));
  }

  recoverRegion(open: ProtoOpenRegion): Promise<OpenRegionResponse> {
    return this.serialized(() => this.recoverRegionNow(open));
  }

  closeRegion(regionId: string, destroy: boolean): Promise<void> {
    return this.serialized(() => this.closeRegionNow(regionId, destroy));
  }

  private async openRegionNow(open: ProtoOpenRegion): Promise<void> {
    const regionId = open.region_id;
    if (this.regionServer.replica(regionId)) return;
    const meta = this.regionMetaOf(open);
    const failure = this.regionServer.failure(regionId);
    if (failure) {
      // A failed replica is never reopened under its own peer id (its log cannot be trusted, or
      // it cannot apply): it stays failed and reported. A fresh peer id is its replacement,
      // placed here by repair: the failed replica's state goes first.
      if (failure.selfPeerId === meta.selfPeerId) return;
      this.log.warn({ regionId, failedPeerId: failure.selfPeerId, peerId: meta.selfPeerId }, 'replacing a failed replica with a fresh peer');
      await this.closeRegionNow(regionId, true);
    }
    for (const p of meta.peers) if (p.addr) this.addresses.set(p.nodeId, p.addr);
    this.metas.set(regionId, meta);
    await this.wal.setRegionMeta(regionId, encoder.encode(JSON.stringify(meta)));
    await this.regionServer.open({ regionId, selfPeerId: meta.selfPeerId, peers: meta.peers, bootstrap: open.bootstrap });
  }

  /**
   * Disaster recovery of one replica: whatever this node holds for the region is dropped and the
   * region restarts from the latest manifest in the object store, as a raft snapshot at the
   * flushed index with the catalog's current peers as voters. Every replica of the region is
   * recovered from the same manifest, so they agree on the log from there on.
   */
  private async recoverRegionNow(open: ProtoOpenRegion): Promise<OpenRegionResponse> {
    const regionId = open.region_id;
    // Validate the instruction and read (and verify) the manifest first: neither a malformed
    // instruction nor a damaged manifest may cost the local replica.
    const meta = this.regionMetaOf(open);
    const { selfPeerId, peers } = meta;
    const latest = await loadLatestManifest(this.objectStore, regionId);
    if (this.regionServer.replica(regionId) || this.wal.regionIds().includes(regionId)) await this.closeRegionNow(regionId, true);
    for (const p of peers) if (p.addr) this.addresses.set(p.nodeId, p.addr);
    this.metas.set(regionId, meta);
    await this.wal.setRegionMeta(regionId, encoder.encode(JSON.stringify(meta)));
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

  private persistPeers(regionId: string, peers: readonly { peerId: number; nodeId: number }[]): void {
    const meta = this.metas.get(regionId);
    if (!meta) return;
    const updated: RegionMeta = {
      ...meta,
      peers: peers.map((p) => ({ ...p, addr: this.addresses.get(p.nodeId) ?? meta.peers.find((q) => q.peerId === p.peerId)?.addr ?? '' })),
    };
    this.metas.set(regionId, updated);
    this.wal.setRegionMeta(regionId, encoder.encode(JSON.stringify(updated))).catch((err: unknown) => this.log.error({ err, regionId }, 'persisting region meta failed'));
  }

  private async closeRegionNow(regionId: string, destroy: boolean): Promise<void> {
    await this.regionServer.close(regionId, destroy);
    this.metas.delete(regionId);
    this.nodeMetrics.forgetRegion(regionId);
    this.log.info({ regionId, destroy }, 'closed region');
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
    const replica = this.regionServer.replica(regionId);
    if (!replica) return 'region-not-hosted';
    return membershipAdmission(replica.peers.get(message.from), fromNodeId, message.from, replica.raft.confState());
  }

  private countRaftRejection(reason: string, context: Record<string, unknown>): void {
    this.raftRejected.inc({ reason });
    const suppressed = this.raftRejectionLog.admit(reason, Date.now());
    if (suppressed !== undefined) this.log.warn({ reason, suppressed, ...context }, 'rejected raft traffic');
  }

  /** SIGHUP: re-read TLS certificates and the users file. */
  reload(): void {
    this.security?.reload();
  }

  // ─── Admin service ──────────────────────────────────────────────────────────────────────────

  /** Every replica hosted here, the failed ones included (health, failure: meta.proto ReplicaStat). */
  replicaStats(): ReplicaStat[] {
    const healthy = this.regionServer.allReplicas().map((r) =>
      runningReplicaStat(r, { flushedIndex: r.stateMachine.flushedIndex, memtableBytes: r.stateMachine.memtableBytes(), ssts: r.stateMachine.ssts.length }),
    );
    return [...healthy, ...this.regionServer.failedReplicas().map(failedReplicaStat)];
  }

  /** Memtable bytes (active + frozen) across all replicas: the node-level backpressure input. */
  memtableBytes(): number {
    return this.regionServer?.allReplicas().reduce((n, r) => n + r.stateMachine.memtableBytes(), 0) ?? 0;
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
            `OpenRegion from a metasrv at epoch ${req.metasrv_epoch} refused: this datanode has seen epoch ${this.metasrvEpoch} (an old metasrv leader; docs/metasrv-ha.md)`,
          );
        }
        if (req.recover_from_object_store) return this.recoverRegion(req);
        await this.openRegion(req);
        return {};
      }, this.log),
      Flush: unary(async (req) => ({ regions: await this.flushLedRegions(req.region_id || undefined) }), this.log),
      Compact: unary(async (req) => ({ regions: this.compactLedRegions(req.region_id || undefined) }), this.log),
      ...(this.standby?.admin ?? standbyNotConfigured(this.log)),
    };
  }

  // ─── Heartbeats ─────────────────────────────────────────────────────────────────────────────

  /** Whether instructions of a metasrv at `epoch` may run here; remembers the highest epoch seen. */
  private admitEpoch(epochField: string | number | undefined): boolean {
    const epoch = Number(epochField ?? 0);
    if (epoch === 0) return true;
    if (epoch < this.metasrvEpoch) {
      const suppressed = this.epochLogs.admit('stale-epoch', this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ epoch, seen: this.metasrvEpoch, suppressed }, 'ignored instructions of a metasrv with an older epoch (a deposed leader)');
      return false;
    }
    this.metasrvEpoch = epoch;
    return true;
  }

  /**
   * One heartbeat at a time: a beat whose reply (or whose instructions) take longer than the
   * interval must not overlap the next, which could apply an older reply's close(destroy) after
   * a newer reply's open of the same region. A tick that finds a beat in flight is skipped.
   */
  heartbeatOnce(): Promise<void> {
    const now = this.clock.nowMs();
    if (this.heartbeating) {
      // A beat outliving two intervals is what makes the metasrv suspect a live node: say so.
      const inFlightMs = now - this.heartbeatStartedMs;
      if (inFlightMs > 2 * this.config.heartbeat.interval_ms && this.heartbeatLogs.admit('slow', now) !== undefined) {
        this.log.warn({ inFlightMs: Math.round(inFlightMs), phase: this.heartbeatPhase }, 'heartbeat still in flight; the metasrv may suspect this node');
      }
      return this.heartbeating;
    }
    // The timer itself late (the event loop was busy): also a gap the metasrv sees.
    const sinceLastMs = now - this.heartbeatStartedMs;
    if (this.heartbeatStartedMs > 0 && sinceLastMs > 2 * this.config.heartbeat.interval_ms && this.heartbeatLogs.admit('late', now) !== undefined) {
      this.log.warn({ sinceLastMs: Math.round(sinceLastMs) }, 'heartbeat late (event loop busy?); the metasrv may suspect this node');
    }
    this.heartbeatStartedMs = now;
    this.heartbeating = this.heartbeat().finally(() => {
      this.heartbeating = undefined;
    });
    return this.heartbeating;
  }

  private heartbeatStartedMs = 0;
  private heartbeatPhase = 'idle';
  private readonly heartbeatLogs = new LogLimiter(10_000);

  /** The budget of one registration or heartbeat call, every metasrv address tried included. */
  private heartbeatTimeoutMs(): number {
    return Math.max(500, this.config.heartbeat.interval_ms);
  }

  private async heartbeat(): Promise<void> {
    if (this.stopping || !this.metaChannel) return;
    const timeoutMs = this.heartbeatTimeoutMs();
    try {
      if (!this.registered) {
        this.heartbeatPhase = 'register';
        const res = await this.metaChannel.call<RegisterNodeResponse__Output>(
          'RegisterNode',
          { cluster_id: this.clusterId, node_id: String(this.nodeId), addr: this.advertiseAddr, http_addr: `${this.config.http.host}:${this.httpPort}`, store_id: this.storeId },
          timeoutMs,
          { idempotent: true },
        );
        // A deposed metasrv leader's answer: nothing of it is done; register again next beat.
        if (!this.admitEpoch(res.metasrv_epoch)) return;
        this.log.info({ regions: res.regions.length }, 'registered with metasrv');
        this.heartbeatPhase = 'opening regions after registration';
        for (const open of res.regions) await this.openRegion(open).catch((err: unknown) => this.log.error({ err, regionId: open.region_id }, 'open failed'));
        this.registered = true; // after the opens: /health's `registered` means "did what the metasrv said at registration"
      }
      this.heartbeatPhase = 'heartbeat call';
      const res = await this.metaChannel.call<HeartbeatResponse__Output>(
        'Heartbeat',
        { cluster_id: this.clusterId, node_id: String(this.nodeId), addr: this.advertiseAddr, replicas: this.replicaStats(), store_id: this.storeId },
        timeoutMs,
        { idempotent: true },
      );
      if (this.admitEpoch(res.metasrv_epoch)) for (const ins of res.instructions) this.enqueueInstruction(ins);
      const replicas = this.regionServer.allReplicas();
      this.metrics.replicas.set(replicas.length);
      this.metrics.leaders.set(replicas.filter((r) => r.isLeader()).length);
    } catch (err) {
      if (this.stopping) return; // the channel was closed by stop(): not the metasrv's failure
      // A metasrv that does not know this node (its catalog was lost or restored from an older
      // copy) gets a registration on the next beat.
      if (fromGrpcError(err).code === ErrorCode.NotFound) this.registered = false;
      // The metasrv may be down: reads and writes continue (docs/architecture.md §7); retry next beat.
      const now = this.clock.nowMs();
      const suppressed = this.heartbeatLogs.admit('failed', now);
      if (suppressed !== undefined) this.log.warn({ err: (err as Error).message, phase: this.heartbeatPhase, suppressed }, 'heartbeat to metasrv failed');
    } finally {
      this.heartbeatPhase = 'idle';
    }
  }

  /**
   * Instructions run one at a time in the order they came (a close(destroy) never overtakes an
   * open of the same region), but off the heartbeat: a slow one must not stop the heartbeats,
   * or the metasrv takes a live node for dead. Bounded: the metasrv re-sends what is not done.
   */
  private instructionQueue: Promise<void> = Promise.resolve();
  private queuedInstructions = 0;

  private enqueueInstruction(ins: ProtoInstruction): void {
    if (this.queuedInstructions >= limits.datanodeInstructionsQueuedMax) {
      this.log.warn({ instruction: ins.kind, queued: this.queuedInstructions }, 'instruction queue full; dropped (the metasrv re-sends)');
      return;
    }
    this.queuedInstructions++;
    this.instructionQueue = this.instructionQueue.then(() => this.execute(ins)).finally(() => this.queuedInstructions--);
  }

  private async execute(ins: ProtoInstruction): Promise<void> {
    if (this.stopping) return;
    try {
      if (ins.open_region) await this.openRegion(ins.open_region);
      else if (ins.close_region) await this.closeRegion(ins.close_region.region_id, ins.close_region.destroy);
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
      if (!isRegionDbError(err, ErrorCode.NotLeader)) this.log.warn({ err: (err as Error).message, instruction: ins.kind }, 'instruction failed');
    }
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
export interface StandbyAttachment {
  readonly admin: Pick<AdminHandlers, 'StandbyShip' | 'StandbyStatus' | 'StandbyPromote'>;
  readonly writeGate: ClientWriteGate;
  /** Primary: the log index the standby still needs from a region (RegionServerHooks.logRetainFrom). */
  logRetainFrom?(regionId: string): number | undefined;
  start(): void;
  stop(): Promise<void>;
}

function standbyNotConfigured(log: Logger): Pick<AdminHandlers, 'StandbyShip' | 'StandbyStatus' | 'StandbyPromote'> {
  const refuse = async (): Promise<never> => {
    throw new RegionDbError(ErrorCode.Config, 'this datanode has no [standby] section: it is not part of a dual active-standby pair (docs/replication.md)');
  };
  return { StandbyShip: unary(refuse, log), StandbyStatus: unary(async () => ({ node_id: '0', role: 'none', regions: [], shipping: [], fence_epoch: '0', mode: '' }), log), StandbyPromote: unary(refuse, log) };
}
