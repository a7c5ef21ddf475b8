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
import { type RegionState, type ShippedEntry, encodeCommand, newSstKey, validateDedupTable } from '../engine/index.js';
import { decodeManifest } from '../engine/manifest.js';
import { limits } from '../common/limits.js';
import type { ObjectUpload } from '../object-store/object-store.js';
import { uploadStillProposable } from '../datanode/sst-gc.js';
import type { Replica } from '../replication/region-server.js';
import type {
  GetRoutesResponse__Output,
  ListNodesResponse__Output,
  StandbyPromoteRequest__Output,
  StandbyRegionStatus,
  StandbySeedObjectRequest__Output,
  StandbySeedObjectResponse,
  StandbySeedRequest__Output,
  StandbySeedResponse,
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
import { type RegionDropReport, type RegionPosition, safeTimeMs, tablesToDrop } from './cut.js';
import { type FenceRecord, readFence, writeFence } from './fence.js';

export interface ReceiverConfig {
  readonly releaseIntervalMs: number;
  readonly dataDir: string;
}

/** An SST being copied in for a seed (StandbySeedObject): pieces arrive in order. */
interface SeedUpload {
  readonly upload: ObjectUpload;
  readonly regionId: string;
  /** Monotonic ms: when the upload began (the GC grace counts from about then). */
  readonly startedMs: number;
  sizeBytes: number;
  lastPieceMs: number;
  busy: boolean;
}

const SST_NAME = /^([0-9a-f]{16})-\d+-[0-9a-f]+\.sst$/;

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
  private readonly uploads = new Map<string, SeedUpload>();
  private uploadSeq = 0;
  /** Copied SSTs (standby keys) and when their upload began (monotonic ms), for StandbySeed. */
  private readonly seededObjects = new Map<string, number>();

  constructor(
    private readonly dn: Datanode,
    private readonly cfg: ReceiverConfig,
    private readonly log: Logger,
    private readonly clock: TimedClock,
    private readonly wall: Clock,
    registry: Registry,
  ) {
    this.fence = promotedFence(readFence(cfg.dataDir));
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
    for (const u of this.uploads.values()) await u.upload.abort();
    this.uploads.clear();
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
      const versionOffset = u64(req.version_offset, 'version_offset');
      const command = encodeCommand({ kind: 'standby-append', fromIndex, entries, watermarkMs: u64(req.watermark_ms, 'watermark_ms'), ...(req.sync ? { sync: true } : {}), ...(versionOffset ? { versionOffset } : {}) });
      // Bypasses the client write gate: this is the stream, not a client.
      await this.dn.regionServer.propose(regionId, command);
    }
    return { region: regionStatus(replica, this.dn), promoted: false, fence_epoch: '0' };
  }

  // ─── Seeding (docs/replication.md, "Seeding") ─────────────────────────────────────────────

  /** One piece of an SST of the primary's latest manifest, into this cluster's object store. */
  async seedObject(req: StandbySeedObjectRequest__Output): Promise<StandbySeedObjectResponse> {
    if (this.fence) throw new RegionDbError(ErrorCode.ConditionFailed, `this standby was promoted at epoch ${this.fence.epoch}: it takes no seed`);
    if (!req.table) throw new RegionDbError(ErrorCode.InvalidArgument, 'table is required');
    if (req.data.byteLength > limits.standbySeedChunkBytesMax) throw new RegionDbError(ErrorCode.InvalidArgument, `a piece holds at most ${limits.standbySeedChunkBytesMax} bytes, got ${req.data.byteLength}`);
    const regionId = await this.standbyRegion(req.table, req.region_number);
    this.ledReplica(regionId);
    const nowMs = this.clock.nowMs();
    const offset = u64(req.offset, 'offset');
    let id = req.upload_id;
    let u: SeedUpload | undefined;
    if (id === '') {
      if (offset !== 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'the first piece of an object starts at offset 0');
      const indexHex = SST_NAME.exec(req.source_key.split('/').at(-1) ?? '')?.[1];
      if (indexHex === undefined) throw new RegionDbError(ErrorCode.InvalidArgument, `source_key ${JSON.stringify(req.source_key)} is not an SST name`);
      await this.abortIdleUploads(nowMs);
      if (this.uploads.size >= limits.standbySeedUploadsMax) throw new RegionDbError(ErrorCode.Unavailable, `${this.uploads.size} seed uploads are open on this node (at most ${limits.standbySeedUploadsMax}); retry`);
      id = `${this.dn.nodeId}-${++this.uploadSeq}`;
      u = { upload: this.dn.objectStore.upload(newSstKey(regionId, Number.parseInt(indexHex, 16))), regionId, startedMs: nowMs, sizeBytes: 0, lastPieceMs: nowMs, busy: false };
      this.uploads.set(id, u);
    } else {
      u = this.uploads.get(id);
      if (!u) throw new RegionDbError(ErrorCode.NotFound, `seed upload ${id} is unknown here (aborted after ${limits.standbySeedUploadIdleMs} ms idle, or this node restarted): copy the object again`);
    }
    if (u.regionId !== regionId) throw new RegionDbError(ErrorCode.InvalidArgument, `seed upload ${id} is for region ${u.regionId}, not ${regionId}`);
    if (u.busy || offset !== u.sizeBytes) throw new RegionDbError(ErrorCode.InvalidArgument, `seed upload ${id}: piece at offset ${offset}, expected ${u.sizeBytes} (pieces are sent one at a time, in order)`);
    u.busy = true;
    try {
      await u.upload.write(new Uint8Array(req.data));
      u.sizeBytes += req.data.byteLength;
      u.lastPieceMs = this.clock.nowMs();
      if (!req.last) return { upload_id: id, key: '', size: String(u.sizeBytes) };
      const meta = await u.upload.complete();
      this.uploads.delete(id);
      this.rememberSeeded(meta.key, u.startedMs);
      return { upload_id: id, key: meta.key, size: String(meta.size) };
    } catch (err) {
      this.uploads.delete(id);
      await u.upload.abort();
      throw err;
    } finally {
      u.busy = false;
    }
  }

  private async abortIdleUploads(nowMs: number): Promise<void> {
    for (const [id, u] of this.uploads) {
      if (u.busy || nowMs - u.lastPieceMs < limits.standbySeedUploadIdleMs) continue;
      this.uploads.delete(id);
      await u.upload.abort();
    }
  }

  private rememberSeeded(key: string, startedMs: number): void {
    this.seededObjects.set(key, startedMs);
    // Oldest first (insertion order): the ones forgotten are copied again if still wanted.
    for (const old of this.seededObjects.keys()) {
      if (this.seededObjects.size <= limits.standbySeededObjectsMax) break;
      this.seededObjects.delete(old);
    }
  }

  /**
   * The region becomes the primary's state as of the manifest (S5 in standby-state.ts): every
   * SST it names must have been copied here (StandbySeedObject) recently enough that no GC pass
   * can have deleted it as unreferenced (the same rule as the flusher's uploads, sst-gc.ts).
   */
  async seed(req: StandbySeedRequest__Output): Promise<StandbySeedResponse> {
    if (this.fence) return { promoted: true, fence_epoch: String(this.fence.epoch) };
    if (!req.table) throw new RegionDbError(ErrorCode.InvalidArgument, 'table is required');
    const regionId = await this.standbyRegion(req.table, req.region_number);
    const replica = this.ledReplica(regionId);
    const where = `seed of ${req.table.name} region ${req.region_number} from ${req.primary_cluster_id || 'the primary'}`;
    const manifest = decodeManifest(new Uint8Array(req.manifest), where); // checksummed: damage is CORRUPTION
    validateDedupTable(manifest.dedup, where);
    if (manifest.flushedIndex < 1) throw new RegionDbError(ErrorCode.InvalidArgument, `${where}: the manifest has flushed nothing (index 0); there is nothing to seed`);
    const copied = new Map(req.objects.map((o) => [o.source_key, o.key]));
    const nowMs = this.clock.nowMs();
    const graceMs = this.dn.config.engine.sst_gc_grace_ms;
    const ssts = [];
    for (const s of manifest.ssts) {
      const key = copied.get(s.key);
      if (key === undefined) throw new RegionDbError(ErrorCode.InvalidArgument, `${where}: SST ${s.key} of the manifest was not copied`);
      const startedMs = this.seededObjects.get(key);
      if (startedMs === undefined || !uploadStillProposable(startedMs, nowMs, graceMs)) {
        throw new RegionDbError(ErrorCode.ConditionFailed, `${where}: ${key} was not copied through this node within half the SST GC grace (${graceMs / 2} ms): copy it again`);
      }
      const head = await this.dn.objectStore.head(key);
      if (head?.size !== s.size) throw new RegionDbError(ErrorCode.ConditionFailed, `${where}: ${key} holds ${head?.size ?? 'no'} bytes, the manifest says ${s.size}: copy it again`);
      ssts.push({ ...s, key });
    }
    const command = encodeCommand({
      kind: 'standby-seed',
      primaryIndex: manifest.flushedIndex,
      seededThroughMs: u64(req.seeded_through_ms, 'seeded_through_ms'),
      versionOffset: u64(req.version_offset, 'version_offset'),
      ssts,
      dedup: manifest.dedup,
    });
    await this.dn.regionServer.propose(regionId, command);
    this.log.info({ regionId, primaryIndex: manifest.flushedIndex, ssts: ssts.length }, 'standby region seeded from the primary\'s manifest');
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
      const { safe, dropped } = await this.computeSafeTime();
      for (const name of dropped) {
        // S7: every region of the table has applied its drop marker; the metasrv answers a drop of
        // a table already gone with an error, which is safe to ignore (another node dropped it).
        await this.dn.metaCall('DropTable', { name }, { timeoutMs: 10_000, idempotent: true }).then(
          () => this.log.info({ table: name }, 'standby: table dropped on the primary, dropped here'),
          (err: unknown) => this.log.debug({ table: name, err: (err as Error).message }, 'standby: drop of a table dropped on the primary failed; next round'),
        );
      }
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
  private async computeSafeTime(): Promise<{ safe: number | undefined; dropped: string[] }> {
    const nodes = await this.dn.metaCall<ListNodesResponse__Output>('ListNodes', {}, { timeoutMs: 2000, idempotent: true });
    const regionIds = nodes.region_infos.map((r) => r.route?.region_id ?? '').filter((id) => id !== '');
    const reported = new Map<string, RegionPosition>();
    const drops = new Map<string, RegionDropReport>();
    await Promise.all(
      nodes.nodes
        .filter((n) => n.state === 'alive')
        .map(async (n) => {
          const res = Number(n.node_id) === this.dn.nodeId ? this.statusResponse() : await call<StandbyStatusResponse__Output>(this.client(n.addr), 'StandbyStatus', {}, 2000).catch(() => undefined);
          for (const r of res?.regions ?? []) reported.set(r.region_id, { regionId: r.region_id, receivedThroughMs: Number(r.received_through_ms), releasedMs: Number(r.released_ms), droppedAtMs: Number(r.dropped_at_ms) });
          for (const r of res?.regions ?? []) {
            if (r.mode === 'standby') drops.set(r.region_id, { table: r.table, droppedAtMs: Number(r.dropped_at_ms), appliedPrimaryIndex: Number(r.applied_primary_index), receivedIndex: Number(r.received_index) });
          }
        }),
    );
    return { safe: safeTimeMs(regionIds, reported), dropped: tablesToDrop(regionIds, drops) };
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
    seeded_index: String(s?.seededIndex ?? 0),
    dropped_at_ms: String(s?.droppedAtMs ?? 0),
  };
}

/**
 * A standby honours only its own promotion: a "fenced" record is an old primary's, and an old
 * primary restarted as a standby is being re-seeded (docs/replication.md, "The way back").
 */
function promotedFence(record: FenceRecord | undefined): FenceRecord | undefined {
  return record?.state === 'promoted' ? record : undefined;
}
