// The metasrv process: the gRPC (Meta, and RaftTransport in a group) and HTTP servers, TLS and
// users, metrics, the tick timer, and the Admin client it calls datanodes with — around
// `MetasrvCore` (metasrv-core.ts), which holds the catalog, failure detection, procedures and
// DDL. It never decides who leads a region (docs/raft-rules.md R22): leaders are what datanodes
// report from raft.
import { mkdirSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { type Clock, type TimedClock, type TimerHandle, systemClock, wallClock } from '../common/clock.js';
import type { MetasrvConfig } from '../common/config.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { str, u64 } from '../rpc/proto.js';
import { metaService } from '../rpc/meta-wire.js';
import { type RunningGrpcServer, type RunningHttpServer, type ServiceBinding, call, makeClient, startGrpcServer, startHttpServer } from '../rpc/server.js';
import { raftTransportService } from '../replication/grpc-transport.js';
import { Security } from '../rpc/security.js';
import { registerRpcMetrics } from '../rpc/rpc-metrics.js';
import { unary } from '../rpc/status.js';
import { certificateNodeId, peerCertificate } from '../rpc/tls.js';
import type { FenceRegionResponse__Output, MetaHandlers, OpenRegionResponse__Output } from '../rpc/generated/index.js';
import { limits } from '../common/limits.js';
import { createObjectStore } from '../object-store/index.js';
import { type CatalogState, type NodeDef, REPLICATION_FACTOR } from './catalog.js';
import { CatalogStore } from './catalog-store.js';
import { MetaGroup } from './meta-group.js';
import { MetasrvCore, PROCEDURE_TICK_MS } from './metasrv-core.js';
import { ProcedureMetrics } from './procedure-metrics.js';
import type { DataOf, ProcedureKind, ProcedureRecordOf } from './procedures/record.js';

export class Metasrv {
  /** The local catalog store of a single metasrv; undefined in a group (the group's log is the store). */
  private store: CatalogStore | undefined;
  /** The metasrv group (docs/metasrv-ha.md), when `meta_group` is configured. */
  private group: MetaGroup | undefined;
  private readonly core: MetasrvCore;
  private grpcServer: RunningGrpcServer | undefined;
  private httpServer: RunningHttpServer | undefined;
  private ticker: TimerHandle | undefined;
  private readonly clients = new Map<string, grpc.Client>();
  /** TLS, users and the call guard (docs/security.md); loaded first in start(). */
  private security!: Security;
  private peerCredentials!: grpc.ChannelCredentials;
  readonly registry = new Registry();
  private readonly metrics;
  private readonly procedureMetrics: ProcedureMetrics;
  private readonly removeRpcMetrics: () => void;

  constructor(
    readonly config: MetasrvConfig,
    readonly log: Logger,
    /** Replicas per region: 3 in a cluster, 1 in standalone mode. */
    readonly replicationFactor: number = REPLICATION_FACTOR,
    /** Wall clock for what is saved and shown (procedure records, heartbeat times, drops); tests may inject their own. */
    procedureClock: Clock = wallClock,
    /**
     * Monotonic clock and timers for everything measured as a duration (liveness, quiet periods,
     * down times, the tick): immune to wall-clock steps, and replaceable by a simulation's.
     */
    private readonly clock: TimedClock = systemClock,
  ) {
    collectDefaultMetrics({ register: this.registry });
    this.metrics = {
      heartbeats: new Counter({ name: 'regiondb_metasrv_heartbeats_total', help: 'Datanode heartbeats received', registers: [this.registry] }),
      reports: new Counter({
        name: 'regiondb_metasrv_heartbeat_reports_total',
        help: 'Datanode heartbeat reports by how they were taken: full, delta, same (a retried call), unusable (a delta on a view not held: a full report is asked for), malformed (refused: a number or region id not well formed; the node still counts as alive)',
        labelNames: ['how'],
        registers: [this.registry],
      }),
      rejected: new Counter({
        name: 'regiondb_metasrv_rejected_total',
        help: 'Datanode registrations and heartbeats refused (cluster identity)',
        labelNames: ['reason'],
        registers: [this.registry],
      }),
      phi: new Gauge({
        name: 'regiondb_metasrv_node_phi',
        help: 'Phi-accrual suspicion level per datanode',
        labelNames: ['node_id'],
        registers: [this.registry],
        collect: () => {
          for (const [id, phi] of this.core.phis()) this.metrics.phi.set({ node_id: String(id) }, phi);
        },
      }),
    };
    this.procedureMetrics = new ProcedureMetrics(this.registry);
    this.removeRpcMetrics = registerRpcMetrics(this.registry, ['Meta']);
    this.core = new MetasrvCore(config, log, replicationFactor, {
      procedureClock,
      clock,
      admin: {
        openRegion: (addr, request, timeoutMs) => call<OpenRegionResponse__Output>(this.client(addr), 'OpenRegion', request, timeoutMs),
        fenceRegion: (addr, request, timeoutMs) => call<FenceRegionResponse__Output>(this.client(addr), 'FenceRegion', request, timeoutMs),
      },
      hooks: {
        heartbeat: () => this.metrics.heartbeats.inc(),
        report: (how) => this.metrics.reports.inc({ how }),
        rejected: (reason) => this.metrics.rejected.inc({ reason }),
        baselineProcedures: (procedures) => this.procedureMetrics.baseline(procedures),
        observeProcedures: (procedures) => this.procedureMetrics.observe(procedures),
      },
    });
  }

  /** The catalog this process holds (the committed one, in a group, once it acts). */
  get catalog(): CatalogState {
    return this.core.catalog;
  }

  async start(): Promise<void> {
    mkdirSync(this.config.node.data_dir, { recursive: true });
    this.security = new Security(this.config, this.log.child({ component: 'security' }));
    this.security.registerMetrics(this.registry);
    this.peerCredentials = this.security.channelCredentials();
    const objectStore = this.config.storage ? createObjectStore(this.config.storage) : undefined;
    // Heartbeat requests decoded and GetRoutes answers encoded by hand (src/rpc/meta-wire.ts): the same bytes, a fraction of the CPU.
    const services: ServiceBinding[] = [{ name: 'Meta', impl: this.implementation(), definition: metaService() }];
    const groupConfig = this.config.meta_group;
    if (groupConfig) {
      const group = new MetaGroup({
        clusterId: this.config.cluster_id,
        memberId: groupConfig.id,
        members: new Map(Object.entries(groupConfig.members).map(([id, addr]) => [Number(id), addr])),
        dataDir: this.config.node.data_dir,
        tickMs: groupConfig.tick_ms,
        electionTicks: groupConfig.election_ticks,
        join: groupConfig.join,
        credentials: this.peerCredentials,
        clock: this.clock,
        log: this.log,
        onRoleChange: (leader, term) => (leader ? void this.core.takeover(term) : this.core.demote(term)),
        onFatal: (err) => this.core.groupFailed(err),
      });
      this.group = group;
      this.core.joinGroup(group, objectStore);
      services.push({ name: 'RaftTransport', definition: raftTransportService(), impl: { Stream: group.raftStreamHandler() } });
    } else {
      this.store = await CatalogStore.open(this.config.node.data_dir, this.log.child({ component: 'catalog-store' }));
      await this.core.startAlone(this.store, objectStore);
    }
    this.grpcServer = await startGrpcServer(this.config.grpc.host, this.config.grpc.port, services, this.log, this.security);
    this.httpServer = await startHttpServer(this.config.http.host, this.config.http.port, this.registry, () => this.core.health());
    await this.group?.start();
    this.ticker = this.clock.setInterval(() => this.core.onTickTimer(), PROCEDURE_TICK_MS);
    this.log.info(
      {
        addr: `${this.config.grpc.host}:${this.grpcServer.port}`,
        ...(groupConfig ? { metaGroupMember: groupConfig.id, members: groupConfig.members } : { tables: Object.keys(this.catalog.tables).length }),
      },
      'metasrv started',
    );
  }

  get grpcPort(): number {
    return this.grpcServer?.port ?? 0;
  }

  get httpPort(): number {
    return this.httpServer?.port ?? 0;
  }

  async stop(): Promise<void> {
    this.ticker?.cancel();
    this.core.halt();
    await this.grpcServer?.stop();
    await this.httpServer?.stop();
    for (const c of this.clients.values()) c.close();
    await this.core.whenSaved();
    await this.store?.close();
    await this.group?.stop();
    this.security?.close();
    this.removeRpcMetrics();
  }

  /** SIGHUP: re-read TLS certificates and the users file. */
  reload(): void {
    this.security?.reload();
  }

  /** Starts a procedure unless an equivalent one is running; saves. */
  startProcedure<K extends ProcedureKind>(kind: K, data: DataOf<K>): Promise<ProcedureRecordOf<K>> {
    return this.core.startProcedure(kind, data);
  }

  isAlive(nodeId: number): boolean {
    return this.core.isAlive(nodeId);
  }

  nodeState(node: NodeDef): string {
    return this.core.nodeState(node);
  }

  private client(addr: string): grpc.Client {
    let c = this.clients.get(addr);
    if (!c) this.clients.set(addr, (c = makeClient('Admin', addr, { credentials: this.peerCredentials })));
    return c;
  }

  // ─── Service ────────────────────────────────────────────────────────────────────────────────

  /** Under TLS, a datanode certificate ("datanode-<id>") may only speak for its own node id. */
  private checkNodeIdentity(call: unknown, nodeId: number): void {
    const cert = peerCertificate(call);
    const certNodeId = cert ? certificateNodeId(cert) : undefined;
    if (certNodeId !== undefined && certNodeId !== nodeId) {
      this.core.countRejection('node-id-mismatch', { nodeId, certNodeId });
      throw new RegionDbError(ErrorCode.PermissionDenied, `node_id ${nodeId} does not match the certificate of datanode ${certNodeId}`);
    }
  }

  private implementation(): MetaHandlers {
    const log = this.log;
    const core = this.core;
    return {
      RegisterNode: unary((req, call) => core.registerNode(req, (nodeId) => this.checkNodeIdentity(call, nodeId)), log),
      Heartbeat: unary((req, call) => core.heartbeat(req, (nodeId) => this.checkNodeIdentity(call, nodeId)), log),
      GetRoutes: unary((req) => core.getRoutes(req), log),
      CreateTable: unary((req) => core.createTable(req), log),
      DropTable: unary((req) => core.dropTable(req), log),
      ListNodes: unary(() => core.listNodes(), log),
      AddMetaMember: unary(async (req) => {
        core.requireActing();
        const group = core.requireGroup();
        const id = u64(req.id, 'id');
        if (id === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'id must be positive');
        const addr = str(req.addr, 'addr');
        if (!/^[^:\s]+:\d+$/.test(addr)) throw new RegionDbError(ErrorCode.InvalidArgument, `addr must be host:port, got ${JSON.stringify(addr)}`);
        this.log.warn({ id, addr }, 'adding a metasrv group member');
        await group.addMember(id, addr, 30_000);
        return { group: core.groupInfo(group) };
      }, log),
      RemoveMetaMember: unary(async (req) => {
        core.requireActing();
        const group = core.requireGroup();
        const id = u64(req.id, 'id');
        this.log.warn({ id }, 'removing a metasrv group member');
        await group.removeMember(id);
        return { group: core.groupInfo(group) };
      }, log),
      RecoverTable: unary((req) => core.recoverTable(str(req.table, 'table', limits.tableNameBytesMax), req.force === true), log),
      StartProcedure: unary((req) => core.startProcedureCall(req), log),
      RecordStandbyPromotion: unary((req) => core.recordStandbyPromotion(u64(req.epoch, 'epoch'), u64(req.cut_ms, 'cut_ms')), log),
      GetStandbyPromotion: unary(() => core.getStandbyPromotion(), log),
    };
  }
}
