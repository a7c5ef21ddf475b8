// The metasrv process: catalog (tables, regions, placement), datanode registration and
// heartbeats (phi-accrual failure detection), routes for clients, and DDL. It never decides
// who leads a region (RAFT-NOTES 22): leaders are what datanodes report from raft.
import { mkdirSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { MetasrvConfig } from '../common/config.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import { type TableSchema, validateSchema } from '../engine/schema.js';
import { str, u64 } from '../rpc/proto.js';
import { type RunningGrpcServer, type RunningHttpServer, call, makeClient, startGrpcServer, startHttpServer } from '../rpc/server.js';
import { unary } from '../rpc/status.js';
import { type ProtoColumn, fromProtoColumns, toProtoSchema } from '../rpc/values.js';
import { type CatalogState, type NodeDef, type RegionDef, REPLICATION_FACTOR, addTable, dropTable, regionsOfTable } from './catalog.js';
import { CatalogStore } from './catalog-store.js';
import { PhiAccrualDetector } from './failure-detector.js';

interface ProtoReplicaStat {
  region_id: string;
  peer_id: string;
  role: string;
  term: string;
  leader_node_id: string;
}

export class Metasrv {
  private store!: CatalogStore;
  catalog!: CatalogState;
  private grpcServer: RunningGrpcServer | undefined;
  private httpServer: RunningHttpServer | undefined;
  private readonly detectors = new Map<number, PhiAccrualDetector>();
  /** Per datanode: the regions it reported in its last heartbeat. */
  private readonly reported = new Map<number, Set<string>>();
  private readonly clients = new Map<string, grpc.Client>();
  readonly registry = new Registry();
  private readonly metrics;
  private saving: Promise<void> = Promise.resolve();

  constructor(
    readonly config: MetasrvConfig,
    readonly log: Logger,
    /** Replicas per region: 3 in a cluster, 1 in standalone mode. */
    readonly replicationFactor: number = REPLICATION_FACTOR,
  ) {
    collectDefaultMetrics({ register: this.registry });
    this.metrics = {
      heartbeats: new Counter({ name: 'regiondb_metasrv_heartbeats_total', help: 'Datanode heartbeats received', registers: [this.registry] }),
      phi: new Gauge({
        name: 'regiondb_metasrv_node_phi',
        help: 'Phi-accrual suspicion level per datanode',
        labelNames: ['node_id'],
        registers: [this.registry],
        collect: () => {
          const now = performance.now();
          for (const [id, d] of this.detectors) this.metrics.phi.set({ node_id: String(id) }, d.phi(now));
        },
      }),
    };
  }

  async start(): Promise<void> {
    mkdirSync(this.config.node.data_dir, { recursive: true });
    this.store = await CatalogStore.open(this.config.node.data_dir);
    this.catalog = await this.store.load(this.config.cluster_id);
    this.grpcServer = await startGrpcServer(this.config.grpc.host, this.config.grpc.port, [{ name: 'Meta', impl: this.implementation() }], this.log);
    this.httpServer = await startHttpServer(this.config.http.host, this.config.http.port, this.registry, () => ({
      status: 'ok',
      tables: Object.keys(this.catalog.tables).length,
      nodes: Object.keys(this.catalog.nodes).length,
    }));
    this.log.info(
      { addr: `${this.config.grpc.host}:${this.grpcServer.port}`, tables: Object.keys(this.catalog.tables).length },
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
    await this.grpcServer?.stop();
    await this.httpServer?.stop();
    for (const c of this.clients.values()) c.close();
    await this.saving;
    await this.store?.close();
  }

  private async save(): Promise<void> {
    // Saves are serialized; each writes the whole (small) catalog with sync.
    this.saving = this.saving.then(() => this.store.save(this.catalog));
    await this.saving;
  }

  private detector(nodeId: number): PhiAccrualDetector {
    let d = this.detectors.get(nodeId);
    if (!d) {
      const fd = this.config.failure_detector;
      d = new PhiAccrualDetector({
        threshold: fd.phi_threshold,
        windowSize: 100,
        minStdDevMs: fd.min_std_dev_ms,
        acceptablePauseMs: fd.acceptable_pause_ms,
        firstIntervalMs: fd.heartbeat_interval_ms,
      });
      this.detectors.set(nodeId, d);
    }
    return d;
  }

  nodeState(node: NodeDef): string {
    if (node.state === 'draining') return 'draining';
    const d = this.detectors.get(node.nodeId);
    if (!d) return 'unknown';
    return d.isAvailable(performance.now()) ? 'alive' : 'suspect';
  }

  // ─── Routes ─────────────────────────────────────────────────────────────────────────────────

  private route(region: RegionDef): unknown {
    return {
      region_id: region.regionId,
      table: region.tableName,
      region_number: region.regionNumber,
      peers: region.replicas.map((r) => ({ peer_id: String(r.peerId), node_id: String(r.nodeId), addr: this.catalog.nodes[r.nodeId]?.addr ?? '' })),
      leader_node_id: String(region.leaderNodeId),
      conf_version: String(region.confVersion),
    };
  }

  private schemaOf(tableName: string): TableSchema {
    const t = this.catalog.tables[tableName];
    if (!t) throw new RegionDbError(ErrorCode.NotFound, `table ${tableName} does not exist`);
    return { name: t.name, tableId: t.tableId, columns: t.columns, regionCount: t.regionCount };
  }

  private openInstruction(region: RegionDef, peerId: number, bootstrap: boolean): unknown {
    return {
      region_id: region.regionId,
      table: toProtoSchema(this.schemaOf(region.tableName)),
      peers: (this.route(region) as { peers: unknown[] }).peers,
      self_peer_id: String(peerId),
      bootstrap,
    };
  }

  // ─── DDL ────────────────────────────────────────────────────────────────────────────────────

  private async createTable(req: { name: string; columns: ProtoColumn[]; region_count: number }): Promise<unknown> {
    const name = str(req.name, 'name', limits.tableNameBytesMax);
    const columns = fromProtoColumns(req.columns);
    const regionCount = Number(req.region_count || 1);
    validateSchema({ name, columns, regionCount });
    // Placement needs live datanodes; count only those heard from recently.
    for (const node of Object.values(this.catalog.nodes)) {
      node.state = this.nodeState(node) === 'alive' ? 'alive' : node.state === 'draining' ? 'draining' : 'suspect';
    }
    const { table, regions } = addTable(this.catalog, { name, columns, regionCount }, this.replicationFactor);
    await this.save();
    // Open the replicas now (the heartbeat reconciliation would also do it, within a beat).
    await Promise.all(
      regions.flatMap((region) =>
        region.replicas.map(async (replica) => {
          const node = this.catalog.nodes[replica.nodeId]!;
          try {
            await call(this.client(node.addr), 'OpenRegion', this.openInstruction(region, replica.peerId, true), 5000);
          } catch (err) {
            this.log.warn({ err: (err as Error).message, regionId: region.regionId, nodeId: node.nodeId }, 'open region failed; heartbeat will retry');
          }
        }),
      ),
    );
    this.log.info({ table: name, tableId: table.tableId, regions: regions.length }, 'created table');
    return { table: toProtoSchema(this.schemaOf(name)), routes: regions.map((r) => this.route(r)) };
  }

  private client(addr: string): grpc.Client {
    let c = this.clients.get(addr);
    if (!c) this.clients.set(addr, (c = makeClient('Admin', addr)));
    return c;
  }

  // ─── Service ────────────────────────────────────────────────────────────────────────────────

  private checkCluster(clusterId: string): void {
    if (clusterId !== this.config.cluster_id) {
      this.log.warn({ clusterId }, 'rejected a datanode of another cluster');
      throw new RegionDbError(ErrorCode.InvalidArgument, `cluster id ${JSON.stringify(clusterId)} does not match this cluster (${this.config.cluster_id})`);
    }
  }

  private implementation(): grpc.UntypedServiceImplementation {
    const log = this.log;
    return {
      RegisterNode: unary(async (req: { cluster_id: string; node_id: string; addr: string; http_addr: string }) => {
        this.checkCluster(req.cluster_id);
        const nodeId = u64(req.node_id, 'node_id');
        if (nodeId === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'node_id must be positive');
        const existing = this.catalog.nodes[nodeId];
        this.catalog.nodes[nodeId] = {
          nodeId,
          addr: str(req.addr, 'addr'),
          httpAddr: str(req.http_addr, 'http_addr'),
          lastHeartbeatMs: Date.now(),
          state: existing?.state === 'draining' ? 'draining' : 'alive',
        };
        this.catalog.version++;
        await this.save();
        this.detector(nodeId).heartbeat(performance.now());
        log.info({ nodeId, addr: req.addr }, 'datanode registered');
        const regions = Object.values(this.catalog.regions).flatMap((region) =>
          region.replicas.filter((r) => r.nodeId === nodeId).map((r) => this.openInstruction(region, r.peerId, region.confVersion === 1)),
        );
        return { regions };
      }, log),
      Heartbeat: unary(async (req: { cluster_id: string; node_id: string; addr: string; replicas: ProtoReplicaStat[] }) => {
        this.checkCluster(req.cluster_id);
        const nodeId = u64(req.node_id, 'node_id');
        const node = this.catalog.nodes[nodeId];
        if (!node) throw new RegionDbError(ErrorCode.NotFound, `node ${nodeId} is not registered`);
        this.metrics.heartbeats.inc();
        this.detector(nodeId).heartbeat(performance.now());
        node.lastHeartbeatMs = Date.now();
        const reported = new Set<string>();
        for (const stat of req.replicas ?? []) {
          reported.add(stat.region_id);
          const region = this.catalog.regions[stat.region_id];
          if (region && stat.role === 'leader') region.leaderNodeId = nodeId;
        }
        this.reported.set(nodeId, reported);
        // Reconcile: replicas assigned to this node that it does not host yet.
        const instructions: unknown[] = [];
        for (const region of Object.values(this.catalog.regions)) {
          const replica = region.replicas.find((r) => r.nodeId === nodeId);
          if (replica && !reported.has(region.regionId)) {
            instructions.push({ open_region: this.openInstruction(region, replica.peerId, region.confVersion === 1) });
          }
        }
        return { instructions };
      }, log),
      GetRoutes: unary(async (req: { table: string }) => {
        const name = str(req.table, 'table', limits.tableNameBytesMax);
        const schema = this.schemaOf(name);
        return { table: toProtoSchema(schema), routes: regionsOfTable(this.catalog, name).map((r) => this.route(r)) };
      }, log),
      CreateTable: unary((req: { name: string; columns: ProtoColumn[]; region_count: number }) => this.createTable(req), log),
      DropTable: unary(async (req: { name: string }) => {
        const regions = dropTable(this.catalog, str(req.name, 'name', limits.tableNameBytesMax));
        await this.save();
        return { regions_dropped: regions.length };
      }, log),
      ListNodes: unary(async () => {
        const now = performance.now();
        const counts = new Map<number, { regions: number; leaders: number }>();
        for (const region of Object.values(this.catalog.regions)) {
          for (const r of region.replicas) {
            const c = counts.get(r.nodeId) ?? { regions: 0, leaders: 0 };
            c.regions++;
            if (region.leaderNodeId === r.nodeId) c.leaders++;
            counts.set(r.nodeId, c);
          }
        }
        return {
          nodes: Object.values(this.catalog.nodes).map((n) => ({
            node_id: String(n.nodeId),
            addr: n.addr,
            http_addr: n.httpAddr,
            state: this.nodeState(n),
            phi: this.detectors.get(n.nodeId)?.phi(now) ?? 0,
            regions: counts.get(n.nodeId)?.regions ?? 0,
            leaders: counts.get(n.nodeId)?.leaders ?? 0,
          })),
          regions: Object.values(this.catalog.regions).map((r) => this.route(r)),
        };
      }, log),
    };
  }
}
