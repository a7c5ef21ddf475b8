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
//   - StandbyFreeze: the first phase of a promotion; every region led here stops releasing and
//     seeding (`standby-freeze`, S8 in standby-state.ts), so the cut is chosen from final positions.
//   - StandbyUnfreeze: the abort of that first phase (`standby-unfreeze`, S11), refused once this
//     node knows of a promotion. It and StandbyPromote run one at a time here, each deciding from
//     the regions' applied state after the other's proposals applied.
//   - the write gate: client writes are refused until the node is promoted and the region cut.
// Epochs (docs/replication.md, "One writable site"): a promotion is current only while no later
// one is known. This node's own record (`standby-fence.json`) or a hosted region's replicated
// promotion (a node that missed `standby promote` learns it from the regions it replays) makes it
// promoted; a primary's request carrying a higher epoch, or a hosted region that follows a primary
// of a higher epoch, makes that promotion history (the record becomes `fenced` at that epoch).
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
  GetStandbyPromotionResponse__Output,
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
import { fromGrpcError, isUnimplemented } from '../rpc/status.js';
import { fromProtoSchema } from '../rpc/values.js';
import type { ClientWriteGate } from '../datanode/database-host.js';
import type { Datanode } from '../datanode/datanode.js';
import { type RegionDropReport, type RegionPosition, followedPrimaryEpoch, promotionUnderWay, safeTimeMs, tablesToDrop } from './cut.js';
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

/** How long promotion() trusts its last look (region evidence reaches it at most this late; record changes at once). */
const PROMOTION_RECHECK_MS = 100;

const SST_NAME = /^([0-9a-f]{16})-\d+-[0-9a-f]+\.sst$/;

interface TableRoutes {
  readonly tableId: number;
  readonly regionCount: number;
}

export class Receiver {
  /** This node's fence record, any state (fence.ts); what it means here is promotion(). */
  private record: FenceRecord | undefined;
  private promotionCache: { atMs: number; promotion: FenceRecord | undefined; known: number } | undefined;
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
  /** promote() and unfreeze() run one at a time (S11): the tail of the queue. */
  private promotionStep: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dn: Datanode,
    private readonly cfg: ReceiverConfig,
    private readonly log: Logger,
    private readonly clock: TimedClock,
    private readonly wall: Clock,
    registry: Registry,
  ) {
    this.record = readFence(cfg.dataDir);
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
      if (mode === 'standby' || !this.promotedForWrites()) {
        throw new RegionDbError(ErrorCode.ConditionFailed, 'this cluster is a read-only standby (dual active-standby): writes are refused until `regiondb standby promote` (docs/replication.md)');
      }
      return command;
    },
    acknowledge: () => Promise.resolve(),
  };

  /** Client writes need a promotion this node was told of (StandbyPromote), not one adopted from a region (fence.ts). */
  private promotedForWrites(): boolean {
    const p = this.promotion();
    return p !== undefined && !p.adopted;
  }

  role(): 'standby' | 'promoted' {
    return this.promotion() ? 'promoted' : 'standby';
  }

  /** Promoted: the promotion's epoch. A standby: the highest epoch it knows of (a promotion must pick a higher one). */
  fenceEpoch(): number {
    return this.promotion()?.epoch ?? this.knownEpoch();
  }

  /** The highest epoch this node knows of: its record's, and every promotion or primary epoch of a region hosted here. */
  private knownEpoch(): number {
    this.promotion();
    return this.promotionCache?.known ?? this.lookupKnownEpoch();
  }

  private lookupKnownEpoch(): number {
    const hosted = this.dn.regionServer.allReplicas().map((r) => Math.max(r.stateMachine.standby?.promotedEpoch ?? 0, r.stateMachine.standby?.primaryEpoch ?? 0));
    return Math.max(this.record?.epoch ?? 0, ...hosted);
  }

  /**
   * The current promotion of this node's cluster, if any (E1–E3 in docs/replication.md, "One
   * writable site"): this node's `promoted` record, unless a hosted region follows a primary of a
   * higher epoch (then the record becomes `fenced` at that epoch); otherwise a hosted region
   * promoted at an epoch above every epoch this node knows to be later (its record's, and the
   * primary epochs its regions follow) — a node that missed `standby promote` takes the fence
   * then, durably, before it answers anything (finding D1), marked adopted: it answers as
   * promoted but admits no client write until StandbyPromote (D5). A region promoted without an epoch
   * (an older build) is not adopted.
   */
  private promotion(): FenceRecord | undefined {
    // Looked up again at most every PROMOTION_RECHECK_MS (it scans every replica, and the write
    // gate and every stream request ask), and at once after this node's record changes.
    const now = this.clock.nowMs();
    if (this.promotionCache === undefined || now - this.promotionCache.atMs >= PROMOTION_RECHECK_MS) {
      const promotion = this.lookupPromotion();
      this.promotionCache = { atMs: now, promotion, known: this.lookupKnownEpoch() };
    }
    return this.promotionCache.promotion;
  }

  private lookupPromotion(): FenceRecord | undefined {
    const replicas = this.dn.regionServer.allReplicas();
    const followed = Math.max(0, ...replicas.map((r) => r.stateMachine.standby?.primaryEpoch ?? 0));
    if (this.record?.state === 'promoted') {
      if (this.record.epoch > followed) return this.record;
      // History now; a later promotion a region here replayed may still be adopted below.
      this.superseded(followed, 'a region here follows a primary of that epoch');
    }
    // A `fenced` or `primary` record's epoch is known to be history here (fence.ts).
    const floor = Math.max(followed, this.record?.epoch ?? 0);
    for (const r of replicas) {
      const s = r.stateMachine.standby;
      if (s?.mode !== 'promoted' || s.promotedEpoch <= floor) continue;
      const adopted: FenceRecord = { state: 'promoted', epoch: s.promotedEpoch, atMs: s.cutMs, adopted: true };
      writeFence(this.cfg.dataDir, adopted);
      this.record = adopted;
      this.promotionCache = undefined;
      this.log.warn({ regionId: r.regionId, epoch: s.promotedEpoch, cutMs: s.cutMs }, 'this standby node missed its promotion (down or unreachable while it ran): promoted from the epoch its region replayed; the stream is refused from now on, client writes until `regiondb standby promote` is run again');
      return adopted;
    }
    return undefined;
  }

  /** A promotion of a higher epoch than this node's is known: its own promotion, if any, is history (finding D4). */
  private superseded(epoch: number, why: string): void {
    if (this.record && this.record.epoch >= epoch && this.record.state === 'fenced') return;
    const rec = this.record;
    const record: FenceRecord = { state: 'fenced', epoch, atMs: Math.floor(this.wall.nowMs()) };
    writeFence(this.cfg.dataDir, record);
    this.record = record;
    this.promotionCache = undefined;
    if (rec?.state === 'promoted') this.log.warn({ promotedEpoch: rec.epoch, epoch, why }, 'this node\'s promotion was superseded by a later one: it is a standby of that primary now');
  }

  /**
   * What a request of a primary at `primaryEpoch` may do here: undefined if it may go on (a
   * promotion of a lower epoch here is superseded by it first), or the answer that fences it
   * (this cluster was promoted at an epoch at or above it). A standby that is not promoted fences
   * nobody: with two sites it follows the other one, and a primary node naming an epoch below
   * one known here is a node of that site that does not know its own yet (its answers carry the
   * epoch known here, and it learns it).
   */
  private admitPrimary(primaryEpoch: number): StandbyShipResponse | undefined {
    const p = this.promotion();
    if (p && primaryEpoch <= p.epoch) return { promoted: true, fence_epoch: String(p.epoch) };
    if (p) this.superseded(primaryEpoch, 'a primary of a higher epoch ships to it');
    return undefined;
  }

  /** S9: before a region takes anything from a primary of a higher epoch than it follows, it records the epoch. */
  private async follow(replica: Replica<RegionState>, primaryEpoch: number): Promise<void> {
    if (primaryEpoch > (replica.stateMachine.standby?.primaryEpoch ?? 0)) {
      await this.dn.regionServer.propose(replica.regionId, encodeCommand({ kind: 'standby-epoch', primaryEpoch }));
    }
  }

  // ─── StandbyShip ──────────────────────────────────────────────────────────────────────────

  async ship(req: StandbyShipRequest__Output): Promise<StandbyShipResponse> {
    const primaryEpoch = u64(req.primary_epoch, 'primary_epoch');
    const refused = this.admitPrimary(primaryEpoch);
    if (refused) return refused;
    if (!req.table) throw new RegionDbError(ErrorCode.InvalidArgument, 'table is required');
    const regionId = await this.standbyRegion(req.table, req.region_number);
    const replica = this.ledReplica(regionId);
    await this.follow(replica, primaryEpoch);
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
    return { region: streamStatus(replica, this.dn, primaryEpoch), promoted: false, fence_epoch: String(this.knownEpoch()) };
  }

  // ─── Seeding (docs/replication.md, "Seeding") ─────────────────────────────────────────────

  /** One piece of an SST of the primary's latest manifest, into this cluster's object store. */
  async seedObject(req: StandbySeedObjectRequest__Output): Promise<StandbySeedObjectResponse> {
    const p = this.promotion();
    if (p) throw new RegionDbError(ErrorCode.ConditionFailed, `this standby was promoted at epoch ${p.epoch}: it takes no seed`);
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
    const primaryEpoch = u64(req.primary_epoch, 'primary_epoch');
    const refused = this.admitPrimary(primaryEpoch);
    if (refused) return refused;
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
    const seed = {
      primaryIndex: manifest.flushedIndex,
      seededThroughMs: u64(req.seeded_through_ms, 'seeded_through_ms'),
      versionOffset: u64(req.version_offset, 'version_offset'),
      ssts,
      dedup: manifest.dedup,
    };
    // S10: only the epoch kind can re-open a region promoted earlier; a primary of epoch 0 (never
    // promoted) sends the kind every build knows.
    await this.follow(replica, primaryEpoch);
    const command = encodeCommand(primaryEpoch > 0 ? { kind: 'standby-seed-epoch', ...seed, primaryEpoch } : { kind: 'standby-seed', ...seed });
    await this.dn.regionServer.propose(regionId, command);
    this.log.info({ regionId, primaryIndex: manifest.flushedIndex, ssts: ssts.length, primaryEpoch }, 'standby region seeded from the primary\'s manifest');
    return { region: streamStatus(replica, this.dn, primaryEpoch), promoted: false, fence_epoch: String(this.knownEpoch()) };
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
    if (this.releasing || this.stopped || this.promotion()) return;
    this.releasing = true;
    try {
      const { safe, dropped, frozen } = await this.computeSafeTime();
      for (const name of dropped) {
        // S7: every region of the table has applied its drop marker; the metasrv answers a drop of
        // a table already gone with an error, which is safe to ignore (another node dropped it).
        await this.dn.metaCall('DropTable', { name }, { timeoutMs: 10_000, idempotent: true }).then(
          () => this.log.info({ table: name }, 'standby: table dropped on the primary, dropped here'),
          (err: unknown) => this.log.debug({ table: name, err: (err as Error).message }, 'standby: drop of a table dropped on the primary failed; next round'),
        );
      }
      if (safe === undefined || frozen) return; // S8: a promotion has begun somewhere: nothing more is released
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
  private async computeSafeTime(): Promise<{ safe: number | undefined; dropped: string[]; frozen: boolean }> {
    const nodes = await this.dn.metaCall<ListNodesResponse__Output>('ListNodes', {}, { timeoutMs: 2000, idempotent: true });
    const regionIds = nodes.region_infos.map((r) => r.route?.region_id ?? '').filter((id) => id !== '');
    const reported = new Map<string, RegionPosition>();
    const drops = new Map<string, RegionDropReport>();
    let frozen = false;
    const statuses: StandbyStatusResponse__Output[] = [];
    await Promise.all(
      nodes.nodes
        .filter((n) => n.state === 'alive')
        .map(async (n) => {
          const res = Number(n.node_id) === this.dn.nodeId ? this.statusResponse() : await call<StandbyStatusResponse__Output>(this.client(n.addr), 'StandbyStatus', {}, 2000).catch(() => undefined);
          // A frozen standby region: a promotion is under way (a region promoted in an earlier
          // failover and not yet re-seeded reports frozen too, but in mode promoted).
          if (res?.regions.some((r) => r.frozen && r.mode === 'standby')) frozen = true;
          if (res) statuses.push(res);
          for (const r of res?.regions ?? []) reported.set(r.region_id, { regionId: r.region_id, receivedThroughMs: Number(r.received_through_ms), releasedMs: Number(r.released_ms), droppedAtMs: Number(r.dropped_at_ms) });
          for (const r of res?.regions ?? []) {
            if (r.mode === 'standby') drops.set(r.region_id, { table: r.table, droppedAtMs: Number(r.dropped_at_ms), appliedPrimaryIndex: Number(r.applied_primary_index), receivedIndex: Number(r.received_index) });
          }
        }),
    );
    // S11: a promotion another node has begun to take effect (promoted, or a region cut) is
    // finished at its cut, never aborted: nothing is released past it meanwhile, even in a region
    // an abort unfroze before that node's cut.
    if (promotionUnderWay(statuses)) frozen = true;
    // S12: nor past a promotion recorded in this site's metasrv (docs/replication.md, "Aborting a
    // promotion"). The promoter writes the record before it tells any node, so from then on no
    // round releases, even in regions an abort raced into unfreezing; a node told later (one that
    // leads no region, say) can then never leave a region released past the cut while others are
    // cut at it. Read after the statuses: a round that saw every region unfrozen before the record
    // was written is seen by the promoter's next look (unfrozen regions, nothing promoted), which
    // then tells no node.
    if (!frozen) {
      if ((await this.recordedPromotionEpoch()) > followedPrimaryEpoch(statuses.flatMap((st) => st.regions))) frozen = true;
    }
    return { safe: safeTimeMs(regionIds, reported), dropped: tablesToDrop(regionIds, drops), frozen };
  }

  /**
   * The epoch of the promotion recorded in this site's metasrv (0: none). A metasrv that predates
   * the record answers UNIMPLEMENTED: it holds none, and no promoter of this build promotes
   * through it (the record is written first, and that write fails there). Any other failure is
   * thrown: the round releases nothing.
   */
  private async recordedPromotionEpoch(): Promise<number> {
    try {
      const res = await this.dn.metaCall<GetStandbyPromotionResponse__Output>('GetStandbyPromotion', {}, { timeoutMs: 2000, idempotent: true });
      return Number(res.record?.epoch ?? 0);
    } catch (err) {
      if (isUnimplemented(err)) return 0;
      throw err;
    }
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
      fence_at_ms: String(this.promotion()?.atMs ?? 0),
    };
  }

  /**
   * StandbyStatus asked by a primary's fence check (docs/replication.md, "The promotion record").
   * A node that knows no promotion of its own may have missed one (down during `standby promote`,
   * its replicas not yet replayed the cut, or hosting none): before it answers "standby" it reads
   * the promotion recorded in its metasrv, which the promoter writes before it tells any node. A
   * recorded promotion above every epoch this node knows to be later (E5's rule) is adopted as
   * one learned from a region is — written first, `promoted-adopted` — and answered "promoted";
   * one at or below them is history here. No answer from the metasrv (down, unreachable, a build
   * without the record) fails the call with UNAVAILABLE: the primary keeps refusing writes and
   * asks again (or asks another standby node).
   */
  async fenceCheckResponse(): Promise<StandbyStatusResponse__Output> {
    this.promotionCache = undefined;
    if (!this.promotion()) await this.adoptRecordedPromotion();
    return this.statusResponse();
  }

  private async adoptRecordedPromotion(): Promise<void> {
    let res: GetStandbyPromotionResponse__Output;
    try {
      res = await this.dn.metaCall<GetStandbyPromotionResponse__Output>('GetStandbyPromotion', {}, { timeoutMs: 1500, idempotent: true, singlePass: true });
    } catch (err) {
      const why = fromGrpcError(err).message;
      this.log.warn({ err: why }, 'fence check: this site\'s promotion record could not be read; answered UNAVAILABLE');
      throw new RegionDbError(
        ErrorCode.Unavailable,
        `standby node ${this.dn.nodeId} knows no promotion of its own and cannot read this site's promotion record from its metasrv (${why}): it does not answer "standby" until it can (a metasrv without GetStandbyPromotion must be upgraded); retry`,
      );
    }
    const epoch = Number(res.record?.epoch ?? 0);
    const cutMs = Number(res.record?.cut_ms ?? 0);
    this.promotionCache = undefined;
    if (epoch === 0 || this.promotion()) return;
    const replicas = this.dn.regionServer.allReplicas();
    const floor = Math.max(this.record?.epoch ?? 0, ...replicas.map((r) => r.stateMachine.standby?.primaryEpoch ?? 0));
    if (epoch <= floor) return; // history here: this node knows a later primary (or fence) than that promotion
    const adopted: FenceRecord = { state: 'promoted', epoch, atMs: cutMs, adopted: true };
    writeFence(this.cfg.dataDir, adopted);
    this.record = adopted;
    this.promotionCache = undefined;
    this.log.warn({ epoch, cutMs }, 'this standby node missed its promotion: promoted from the record in this site\'s metasrv (a fence check asked); the stream is refused from now on, client writes until `regiondb standby promote` is run again');
  }

  /**
   * The first phase of a promotion (S8): every region led here (with a stream or not yet) applies
   * a freeze after every release already in its log; from then on it releases nothing and takes
   * no seed. Idempotent; the answer is what the regions have applied, final. With `regionIds`,
   * only those among the regions led here (a promotion past its first phase freezes only regions it
   * has not seen frozen: one an abort unfroze stays unfrozen).
   */
  async freeze(regionIds: readonly string[] = []): Promise<StandbyRegionStatus[]> {
    const command = encodeCommand({ kind: 'standby-freeze' });
    const only = new Set(regionIds);
    await Promise.all(
      this.dn.regionServer
        .allReplicas()
        .filter((r) => only.size === 0 || only.has(r.regionId))
        .filter((r) => r.isLeader() && (r.stateMachine.standby === undefined || (r.stateMachine.standby.mode === 'standby' && !r.stateMachine.standby.frozen)))
        .map((r) => this.dn.regionServer.propose(r.regionId, command)),
    );
    return this.regionStatuses();
  }

  /**
   * Marks this node promoted at `epoch` (durably, first), then cuts every standby region led here
   * at `cut_ms`. Every such region must be frozen (StandbyFreeze, the first phase) and must not
   * have applied past the cut: with both phases the cut is at or above every release (S8), so a
   * refusal here means a promoter that skipped the first phase — nothing is cut below a release.
   */
  promote(req: StandbyPromoteRequest__Output): Promise<StandbyRegionStatus[]> {
    return this.oneAtATime(() => this.promoteNow(req));
  }

  /**
   * The abort of a promotion's first phase (S11, `regiondb standby promote --abort`): every frozen
   * standby region led here applies a replicated unfreeze; releases and seeds resume at the next
   * round. Refused while this node knows of a promotion of its cluster (its record, or one it
   * adopted from a region cut at a current epoch): that promotion has begun to take effect (the
   * old primary may be fenced by it) and is finished, not aborted. Idempotent.
   */
  unfreeze(): Promise<StandbyRegionStatus[]> {
    return this.oneAtATime(async () => {
      this.promotionCache = undefined;
      const p = this.promotion();
      if (p) {
        throw new RegionDbError(ErrorCode.ConditionFailed, `node ${this.dn.nodeId} is promoted at epoch ${p.epoch} (cut ${p.atMs}${p.adopted ? ', learned from a region cut at that epoch' : ''}): a promotion that has begun to take effect is not aborted; finish it with \`regiondb standby promote\``);
      }
      const command = encodeCommand({ kind: 'standby-unfreeze' });
      const frozen = this.dn.regionServer.allReplicas().filter((r) => r.isLeader() && r.stateMachine.standby?.mode === 'standby' && r.stateMachine.standby.frozen);
      await Promise.all(frozen.map((r) => this.dn.regionServer.propose(r.regionId, command)));
      if (frozen.length > 0) this.log.warn({ regions: frozen.map((r) => r.regionId) }, 'standby promotion aborted here: frozen regions unfrozen, releases resume');
      return this.regionStatuses();
    });
  }

  /**
   * promote() and unfreeze() one at a time on this node: each reads the regions' applied state
   * after the other's proposals here have applied (a promotion told after an unfreeze finds the
   * regions unfrozen and refuses; an unfreeze after a promotion finds the record and refuses).
   */
  private oneAtATime<T>(step: () => Promise<T>): Promise<T> {
    const run = this.promotionStep.then(step, step);
    this.promotionStep = run.catch(() => undefined); // the caller gets the error; the queue goes on
    return run;
  }

  private async promoteNow(req: StandbyPromoteRequest__Output): Promise<StandbyRegionStatus[]> {
    const cutMs = u64(req.cut_ms, 'cut_ms');
    const epoch = u64(req.epoch, 'epoch');
    if (epoch === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'epoch must be positive');
    this.promotionCache = undefined;
    let current = this.promotion();
    if (current && (epoch < current.epoch || (epoch === current.epoch && current.atMs !== cutMs))) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `already promoted at epoch ${current.epoch} with cut ${current.atMs}; a promotion at epoch ${epoch} with cut ${cutMs} is refused`);
    }
    if (current && epoch > current.epoch) current = undefined; // a later promotion: this node's record is history
    const known = this.knownEpoch();
    if (!current && epoch <= known) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `epoch ${epoch} is not above ${known}, an epoch this node knows of (a promotion's epoch is above every earlier one)`);
    }
    const led = this.dn.regionServer.allReplicas().filter((r) => r.isLeader() && r.stateMachine.standby?.mode === 'standby');
    const unfit = led.flatMap((r) => {
      const s = r.stateMachine.standby!;
      if (!s.frozen) return [`${r.regionId} (not frozen: the promotion's first phase, StandbyFreeze, has not reached it)`];
      return s.releasedMs > cutMs ? [`${r.regionId} (applied up to ${s.releasedMs})`] : [];
    });
    if (unfit.length > 0) {
      throw new RegionDbError(ErrorCode.ConditionFailed, `regions ${unfit.join(', ')} cannot be cut at ${cutMs} (nothing applied is undone); freeze every region, then choose the cut`);
    }
    // A promotion adopted from a region (fence.ts) becomes one this node was told of: writes open.
    if (!current || current.adopted) {
      const record: FenceRecord = { state: 'promoted', epoch, atMs: cutMs };
      writeFence(this.cfg.dataDir, record);
      this.record = record;
      this.promotionCache = undefined;
      this.log.warn({ epoch, cutMs }, 'standby promoted: the stream is refused from now on; regions are cut and opened for writes');
    }
    const command = encodeCommand({ kind: 'standby-promote-epoch', cutMs, epoch });
    for (const replica of led) await this.dn.regionServer.propose(replica.regionId, command);
    return this.regionStatuses();
  }
}

/**
 * The position a primary of `primaryEpoch` resumes from: a region still promoted from an earlier
 * failover (S10) has nothing of this primary's stream (its indexes are another era's), so it says
 * 0 and the primary seeds it.
 */
function streamStatus(replica: Replica<RegionState>, dn: Datanode, primaryEpoch: number): StandbyRegionStatus {
  const status = regionStatus(replica, dn);
  const s = replica.stateMachine.standby;
  if (s?.mode === 'promoted' && s.promotedEpoch > 0 && primaryEpoch > s.promotedEpoch) return { ...status, received_index: '0', applied_primary_index: '0', last_stamp_ms: '0' };
  return status;
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
    frozen: s?.frozen ?? false,
    promoted_epoch: String(s?.promotedEpoch ?? 0),
    primary_epoch: String(s?.primaryEpoch ?? 0),
  };
}

