// The standby side of a dual active-standby pair (docs/replication.md), on each standby datanode:
//   - StandbyShip: a primary region leader's entries go into the standby region's own raft log as
//     one `standby-append` command (durable on the standby's quorum before the answer; the answer
//     is the position the primary resumes from). The table is created on first sight, with the
//     primary's columns and region count, so region n maps to region n.
//   - the release loop: every release_interval_ms the cluster-wide safe time (src/standby/cut.ts)
//     is computed from every region's position, and each region led here applies what it holds
//     up to it (`standby-release`): stale reads see one consistent point of the primary.
//   - StandbyPromote: the durable "promoted" marker first (no entry is taken from the stream
//     after it), then every region led here is cut at the given time (`standby-promote`).
//   - the write gate: client writes are refused until the node is promoted and the region cut.
import type * as grpc from '@grpc/grpc-js';
import { Gauge, type Registry } from 'prom-client';
import type { Clock, TimedClock, TimerHandle } from '../common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type RegionState, type ShippedEntry, encodeCommand } from '../engine/index.js';
import type { Replica } from '../replication/region-server.js';
import type {
  GetRoutesResponse__Output,
  ListNodesResponse__Output,
  StandbyPromoteRequest__Output,
  StandbyRegionStatus,
  StandbyShipRequest__Output,
  StandbyShipResponse,
  StandbyStatusResponse__Output,
} from '../rpc/generated/index.js';
import { u64 } from '../rpc/proto.js';
import { call, makeClient } from '../rpc/server.js';
import { fromGrpcError } from '../rpc/status.js';
import { fromProtoSchema } from '../rpc/values.js';
import type { ClientWriteGate } from '../datanode/database-host.js';
import type { Datanode } from '../datanode/datanode.js';
import { type RegionPosition, safeTimeMs } from './cut.js';
import { type FenceRecord, readFence, writeFence } from './fence.js';

export interface ReceiverConfig {
  readonly releaseIntervalMs: number;
  readonly dataDir: string;
}

interface TableRoutes {
  readonly tableId: number;
  readonly regionCount: number;
}

export class Receiver {
  private fence: FenceRecord | undefined;
  private readonly tables = new Map<string, TableRoutes>();
  private readonly clients = new Map<string, grpc.Client>();
  private timer: TimerHandle | undefined;
  private releasing = false;
  private stopped = false;
  /** The last cluster-wide safe time computed here (0 before any). */
  private safeTimeMs = 0;

  constructor(
    private readonly dn: Datanode,
    private readonly cfg: ReceiverConfig,
    private readonly log: Logger,
    private readonly clock: TimedClock,
    private readonly wall: Clock,
    registry: Registry,
  ) {
    this.fence = readFence(cfg.dataDir);
    const self = this;
    new Gauge({
      name: 'regiondb_standby_lag_ms',
      help: 'Standby: per region led here, now minus the time up to which it has received every primary entry',
      labelNames: ['region'],
      registers: [registry],
      collect(this: Gauge) {
        this.reset();
        const now = self.wall.nowMs();
        for (const s of self.regionStatuses()) if (s.mode === 'standby') this.set({ region: s.region_id }, Math.max(0, now - Number(s.received_through_ms)));
      },
    });
    new Gauge({
      name: 'regiondb_standby_pending_entries',
      help: 'Standby: per region led here, primary entries received but not yet applied (waiting for the safe time)',
      labelNames: ['region'],
      registers: [registry],
      collect(this: Gauge) {
        this.reset();
        for (const s of self.regionStatuses()) this.set({ region: s.region_id }, s.pending_entries ?? 0);
      },
    });
    new Gauge({
      name: 'regiondb_standby_safe_time_lag_ms',
      help: 'Standby, cluster-wide: now minus the safe time (every region has received everything up to it; no region applies past it)',
      registers: [registry],
      collect(this: Gauge) {
        this.set(self.safeTimeMs > 0 ? Math.max(0, self.wall.nowMs() - self.safeTimeMs) : 0);
      },
    });
  }

  start(): void {
    this.timer = this.clock.setInterval(() => void this.releaseRound(), this.cfg.releaseIntervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    for (const c of this.clients.values()) c.close();
  }

  readonly writeGate: ClientWriteGate = {
    admit: (regionId, command) => {
      const mode = this.dn.regionServer.replica(regionId)?.stateMachine.standby?.mode;
      if (!this.fence || mode === 'standby') {
        throw new RegionDbError(ErrorCode.ConditionFailed, 'this cluster is a read-only standby (dual active-standby): writes are refused until `regiondb standby promote` (docs/replication.md)');
      }
      return command;
    },
    acknowledge: () => Promise.resolve(),
  };

  role(): 'standby' | 'promoted' {
    return this.fence ? 'promoted' : 'standby';
  }

  fenceEpoch(): number {
    return this.fence?.epoch ?? 0;
  }

  // ─── StandbyShip ──────────────────────────────────────────────────────────────────────────

  async ship(req: StandbyShipRequest__Output): Promise<StandbyShipResponse> {
    if (this.fence) return { promoted: true, fence_epoch: String(this.fence.epoch) };
    if (!req.table) throw new RegionDbError(ErrorCode.InvalidArgument, 'table is required');
    const regionId = await this.standbyRegion(req.table, req.region_number);
    const replica = this.ledReplica(regionId);
    const fromIndex = u64(req.from_index, 'from_index');
    if (fromIndex > 0) {
      const entries: ShippedEntry[] = req.entries.map((e) => ({ index: u64(e.index, 'index'), stampMs: u64(e.stamp_ms, 'stamp_ms'), data: new Uint8Array(e.data) }));
      entries.forEach((e, k) => {
        if (e.index !== fromIndex + k) throw new RegionDbError(ErrorCode.InvalidArgument, `entries must be contiguous from ${fromIndex}; entry ${k} is ${e.index}`);
      });
      const command = encodeCommand({ kind: 'standby-append', fromIndex, entries, watermarkMs: u64(req.watermark_ms, 'watermark_ms'), ...(req.sync ? { sync: true } : {}) });
      // Bypasses the client write gate: this is the stream, not a client.
      await this.dn.regionServer.propose(regionId, command);
    }
    return { region: regionStatus(replica, this.dn), promoted: false, fence_epoch: '0' };
  }

  private ledReplica(regionId: string): Replica<RegionState> {
    try {
      return this.dn.regionServer.leaderReplica(regionId);
    } catch (err) {
      if (!isRegionDbError(err, ErrorCode.NotLeader) && !isRegionDbError(err, ErrorCode.NotFound)) throw err;
      const leaderNodeId = err.details['leaderNodeId'];
      const addr = this.dn.addressOf(leaderNodeId === undefined ? undefined : Number(leaderNodeId));
      throw new RegionDbError(ErrorCode.NotLeader, `standby region ${regionId} is not led by node ${this.dn.nodeId}`, { details: addr ? { leaderAddr: addr } : {} });
    }
  }

  /** The standby's region for the primary's table and region number; the table is created on first sight. */
  private async standbyRegion(table: NonNullable<StandbyShipRequest__Output['table']>, regionNumber: number): Promise<string> {
    let routes = this.tables.get(table.name);
    if (!routes) {
      routes = await this.lookupOrCreate(table);
      this.tables.set(table.name, routes);
    }
    if (routes.regionCount !== table.region_count) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `table ${table.name} has ${routes.regionCount} regions in the standby but ${table.region_count} in the primary: they cannot be mapped region to region`);
    }
    if (regionNumber >= routes.regionCount) throw new RegionDbError(ErrorCode.InvalidArgument, `region number ${regionNumber} out of range`);
    return ((BigInt(routes.tableId) << 32n) | BigInt(regionNumber)).toString();
  }

  private async lookupOrCreate(table: NonNullable<StandbyShipRequest__Output['table']>): Promise<TableRoutes> {
    try {
      const res = await this.dn.metaCall<GetRoutesResponse__Output>('GetRoutes', { table: table.name }, { timeoutMs: 5000, idempotent: true });
      return { tableId: res.table!.table_id, regionCount: res.table!.region_count };
    } catch (err) {
      if (fromGrpcError(err).code !== ErrorCode.NotFound) throw fromGrpcError(err);
    }
    const schema = fromProtoSchema(table);
    this.log.info({ table: schema.name, regions: schema.regionCount }, 'standby: creating a table first seen in the stream');
    await this.dn.metaCall('CreateTable', { name: table.name, columns: table.columns, region_count: table.region_count, request_token: `standby-mirror:${table.name}` }, { timeoutMs: 10_000, idempotent: true });
    const res = await this.dn.metaCall<GetRoutesResponse__Output>('GetRoutes', { table: table.name }, { timeoutMs: 5000, idempotent: true });
    return { tableId: res.table!.table_id, regionCount: res.table!.region_count };
  }

  // ─── Release (the safe time) ──────────────────────────────────────────────────────────────

  private async releaseRound(): Promise<void> {
    if (this.releasing || this.stopped || this.fence) return;
    this.releasing = true;
    try {
      const safe = await this.computeSafeTime();
      if (safe === undefined) return;
      this.safeTimeMs = Math.max(this.safeTimeMs, safe);
      for (const replica of this.dn.regionServer.allReplicas()) {
        const standby = replica.stateMachine.standby;
        if (!replica.isLeader() || !standby || standby.mode !== 'standby' || standby.releasedMs >= this.safeTimeMs) continue;
        if (standby.pending.length === 0 && standby.releasedMs > 0) continue; // nothing to apply; no entry for nothing
        await this.dn.regionServer.propose(replica.regionId, encodeCommand({ kind: 'standby-release', upToMs: this.safeTimeMs })).catch((err: unknown) => {
          this.log.debug({ regionId: replica.regionId, err: (err as Error).message }, 'standby release failed; next round');
        });
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'standby safe time not computed this round');
    } finally {
      this.releasing = false;
    }
  }

  /** Every region of the standby (the metasrv's list) and where each stands (its leader's report). */
  private async computeSafeTime(): Promise<number | undefined> {
    const nodes = await this.dn.metaCall<ListNodesResponse__Output>('ListNodes', {}, { timeoutMs: 2000, idempotent: true });
    const regionIds = nodes.region_infos.map((r) => r.route?.region_id ?? '').filter((id) => id !== '');
    const reported = new Map<string, RegionPosition>();
    await Promise.all(
      nodes.nodes
        .filter((n) => n.state === 'alive')
        .map(async (n) => {
          const res = Number(n.node_id) === this.dn.nodeId ? this.statusResponse() : await call<StandbyStatusResponse__Output>(this.client(n.addr), 'StandbyStatus', {}, 2000).catch(() => undefined);
          for (const r of res?.regions ?? []) reported.set(r.region_id, { regionId: r.region_id, receivedThroughMs: Number(r.received_through_ms) });
        }),
    );
    return safeTimeMs(regionIds, reported);
  }

  private client(addr: string): grpc.Client {
    let c = this.clients.get(addr);
    if (!c) this.clients.set(addr, (c = makeClient('Admin', addr, { credentials: this.dn.peerCredentials })));
    return c;
  }

  // ─── Status and promotion ─────────────────────────────────────────────────────────────────

  regionStatuses(): StandbyRegionStatus[] {
    return this.dn.regionServer
      .allReplicas()
      .filter((r) => r.isLeader() && r.stateMachine.standby)
      .map((r) => regionStatus(r, this.dn));
  }

  statusResponse(): StandbyStatusResponse__Output {
    return {
      node_id: String(this.dn.nodeId),
      role: this.role(),
      regions: this.regionStatuses() as StandbyStatusResponse__Output['regions'],
      shipping: [],
      fence_epoch: String(this.fenceEpoch()),
      mode: '',
    };
  }

  /** Marks this node promoted (durably, first), then cuts every standby region led here at `cut_ms`. */
  async promote(req: StandbyPromoteRequest__Output): Promise<StandbyRegionStatus[]> {
    const cutMs = u64(req.cut_ms, 'cut_ms');
    const epoch = u64(req.epoch, 'epoch');
    if (epoch === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'epoch must be positive');
    if (this.fence && this.fence.atMs !== cutMs) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `already promoted at epoch ${this.fence.epoch} with cut ${this.fence.atMs}; a second promotion with another cut (${cutMs}) is refused`);
    }
    const applied = Math.max(0, ...this.dn.regionServer.allReplicas().map((r) => (r.stateMachine.standby?.mode === 'standby' ? r.stateMachine.standby.releasedMs : 0)));
    if (!this.fence && cutMs < applied) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `cut ${cutMs} is before ${applied}, up to which a region here has already applied (nothing is undone)`);
    }
    if (!this.fence) {
      const record: FenceRecord = { state: 'promoted', epoch, atMs: cutMs };
      writeFence(this.cfg.dataDir, record);
      this.fence = record;
      this.log.warn({ epoch, cutMs }, 'standby promoted: the stream is refused from now on; regions are cut and opened for writes');
    }
    const command = encodeCommand({ kind: 'standby-promote', cutMs });
    for (const replica of this.dn.regionServer.allReplicas()) {
      const standby = replica.stateMachine.standby;
      if (!replica.isLeader() || !standby || standby.mode !== 'standby') continue;
      await this.dn.regionServer.propose(replica.regionId, command);
    }
    return this.regionStatuses();
  }
}

function regionStatus(replica: Replica<RegionState>, dn: Datanode): StandbyRegionStatus {
  const s = replica.stateMachine.standby;
  const schema = dn.metas.get(replica.regionId)?.schema;
  return {
    region_id: replica.regionId,
    table: schema?.name ?? '',
    region_number: Number(BigInt(replica.regionId) & 0xffffffffn),
    mode: s?.mode ?? 'standby',
    received_index: String(s?.receivedIndex ?? 0),
    applied_primary_index: String(s?.appliedPrimaryIndex ?? 0),
    received_through_ms: String(s?.receivedThroughMs ?? 0),
    last_stamp_ms: String(s?.lastStampMs ?? 0),
    released_ms: String(s?.releasedMs ?? 0),
    pending_entries: s?.pending.length ?? 0,
    cut_ms: String(s?.cutMs ?? 0),
    dropped_entries: String(s?.droppedEntries ?? 0),
    dropped_rows: String(s?.droppedRows ?? 0),
    sync: s?.sync ?? false,
  };
}
