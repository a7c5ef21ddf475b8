// The primary side of a dual active-standby pair (docs/replication.md): every region led on this
// datanode ships its committed entries, in index order, to the leader of the same region (table
// name + region number) in the standby cluster.
//
// The loop, per region led here, every ship_interval_ms (one round in flight per region):
//   1. t0 = wall time; a ReadIndex barrier confirms this node still leads the region after t0
//      (a newer leader's entries are all stamped after the barrier's quorum round, so after t0).
//   2. Entries from the standby's received index + 1 up to the applied index are read from the
//      raft log: committed by construction — nothing is shipped before it commits (RPO is
//      never "negative": a standby never holds a write the primary may still lose).
//   3. If the batch reaches the applied index, the watermark is min(t0, the smallest stamp of any
//      entry not yet applied or still queued) − 1: every entry stamped at or before it is in the
//      batch or before it (the write gate stamps a command in the same step that queues it).
//   4. The standby answers with its durable position; the next round resumes from there (after
//      a restart or a leader change on either side, the first round is a probe for it).
// Seeding (docs/replication.md, "Seeding"): when the standby needs entries the log no longer has
// (truncated by a flush before the stream reached them), or entries that carry no rows a stream
// can ship (up to this region's own promotion, when this primary was a standby), the round seeds
// the standby region instead: the region's latest manifest in this cluster's object store (at or
// past what is needed; a flush is asked for if not), its SSTs copied piece by piece
// (StandbySeedObject), then StandbySeed; the stream resumes from the manifest's index + 1.
// Fencing: a node learns that the standby was promoted from any answer (or from its check at
// start) and writes the fence file before refusing writes — for good, across restarts. Only a
// promotion at an epoch at or above this primary's own counts (docs/replication.md, "One writable
// site"): this primary's own epoch is that of the promotion that made its cluster a primary (its
// `promoted` record, or a hosted region's replicated promotion; 0 for the original primary), and
// every request carries it, so a standby still holding an older, superseded promotion neither
// fences it nor keeps its stream out.
import type * as grpc from '@grpc/grpc-js';
import { Gauge, type Registry } from 'prom-client';
import type { Clock, TimedClock, TimerHandle } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { LogLimiter } from '../common/log-limiter.js';
import type { Logger } from '../common/logger.js';
import { type RegionState, stampCommand, unstampCommand } from '../engine/index.js';
import { loadLatestManifest } from '../engine/manifest.js';
import { CommandKind, encodeTableDroppedMarker, isTableDroppedMarker, tableDroppedMarkerMs } from '../engine/command.js';
import { EntryType } from '../raft/index.js';
import type { Replica } from '../replication/region-server.js';
import type {
  GetStandbyPromotionResponse__Output,
  ShippedEntry as ProtoShippedEntry,
  ShipperRegionStatus,
  StandbySeedObjectResponse__Output,
  StandbyShipResponse__Output,
  StandbyStatusResponse__Output,
} from '../rpc/generated/index.js';
import { call, makeClient } from '../rpc/server.js';
import { fromGrpcError } from '../rpc/status.js';
import type { ClientWriteGate } from '../datanode/database-host.js';
import type { Datanode } from '../datanode/datanode.js';
import { type FenceRecord, readFence, writeFence } from './fence.js';
import { type SiteCredentials, explainStandbyError } from './site-credentials.js';
import { limits } from '../common/limits.js';

export interface ShipperConfig {
  readonly addrs: readonly string[];
  /** A standby datanode's advertised address → where this site reaches it. */
  readonly addrOverrides: Readonly<Record<string, string>>;
  readonly mode: 'async' | 'sync';
  readonly shipIntervalMs: number;
  readonly dataDir: string;
  readonly clusterId: string;
  /** How this node authenticates to the standby site (site-credentials.ts). */
  readonly site: SiteCredentials;
}

interface RegionShip {
  /** The standby's durable received index (undefined until the first answer since this node leads). */
  receivedIndex: number | undefined;
  /** Stamp of the last entry shipped (carried onto entries that are not stamped client commands). */
  lastStampMs: number;
  /** Which standby datanode to call (the standby region's leader as last learned). */
  target: number;
  targetAddr: string | undefined;
  inFlight: boolean;
  error: string;
  /** Sync mode: writes waiting until the standby has their index. */
  waiters: { index: number; resolve: () => void; reject: (err: Error) => void }[];
}

export class Shipper {
  private readonly regions = new Map<string, RegionShip>();
  private readonly clients = new Map<string, grpc.Client>();
  /** This node's fence record, any state; fenced() is what it means here. */
  private record: FenceRecord | undefined;
  /** Whether the standby has been asked, since this process started, whether it was promoted. */
  private fenceChecked = false;
  /** Why the last fence check failed (shown in the status until one succeeds). */
  private fenceCheckError = '';
  /** Whether this cluster's promotion record (its metasrv) has been read since this process started. */
  private ownRecordRead = false;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private lastStampMs = 0;
  private lastPositionProbeMs = 0;
  /** The standby's received index per region, as last heard (by the leader's stream or a follower's probe). */
  private readonly positions = new Map<string, number>();
  private readonly authLog = new LogLimiter(60_000);

  constructor(
    private readonly dn: Datanode,
    private readonly cfg: ShipperConfig,
    private readonly log: Logger,
    private readonly clock: TimedClock,
    /** Wall time: the stamps and watermarks (they compare across processes; docs/replication.md on clocks). */
    private readonly wall: Clock,
    registry: Registry,
  ) {
    this.record = readFence(cfg.dataDir);
    const self = this;
    // Registered with the node's registry, read at scrape time (/metrics).
    new Gauge({
      name: 'regiondb_standby_ship_lag_entries',
      help: 'Primary: committed entries of a region led here not yet durable in the standby',
      labelNames: ['region'],
      registers: [registry],
      collect(this: Gauge) {
        this.reset();
        for (const s of self.status()) this.set({ region: s.region_id }, Number(s.lag_entries));
      },
    });
    new Gauge({
      name: 'regiondb_standby_ship_lag_ms',
      help: 'Primary: age of the oldest committed entry of a region led here not yet durable in the standby (0 when none)',
      labelNames: ['region'],
      registers: [registry],
      collect(this: Gauge) {
        this.reset();
        for (const s of self.status()) this.set({ region: s.region_id }, Number(s.lag_ms));
      },
    });
  }

  /**
   * The epoch of the promotion that made this cluster a primary: this node's `promoted` record,
   * or the highest promotion epoch of a region hosted here (a node that missed the promotion
   * replays it); 0 for a cluster never promoted.
   */
  ownEpoch(): number {
    const own = this.record?.state === 'promoted' || this.record?.state === 'primary' ? this.record.epoch : 0;
    return Math.max(own, this.learnedEpoch, ...this.dn.regionServer.allReplicas().map((r) => r.stateMachine.standby?.promotedEpoch ?? 0));
  }

  /**
   * The highest epoch a standby that is not promoted told this node it knows. With two sites, a
   * standby that is not promoted follows this node's cluster, so every epoch it knows is at most
   * this cluster's own: a lower bound this node may take (a node added after the promotion, or
   * one that missed it and hosts no region of it, knows no epoch of its own otherwise).
   */
  private learnedEpoch = 0;

  /** ownEpoch() as of the last round (the write gate and every request read it; it only grows). */
  private epoch = 0;

  /** This node's fence: a `fenced` record of an epoch at or above its own (an older one was superseded by this cluster's own later promotion). */
  private get fence(): FenceRecord | undefined {
    const r = this.record;
    return r?.state === 'fenced' && r.epoch >= this.epoch ? r : undefined;
  }

  start(): void {
    this.epoch = this.ownEpoch();
    if (this.fence) this.log.warn({ epoch: this.fence.epoch }, 'this node is fenced: its standby was promoted; client writes are refused (docs/replication.md)');
    this.timer = this.clock.setInterval(() => void this.round(), this.cfg.shipIntervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    // Committed here, not confirmed by the standby: unknown, never "failed" (the client retries with its request id).
    const stopping = new RegionDbError(ErrorCode.DeadlineExceeded, 'datanode stopping before the standby confirmed the write (sync mode): outcome unknown');
    for (const r of this.regions.values()) for (const w of r.waiters.splice(0)) w.reject(stopping);
    for (const c of this.clients.values()) c.close();
    this.cfg.site.close();
  }

  readonly writeGate: ClientWriteGate = {
    admit: (_regionId, command) => {
      if (this.fence) {
        throw new RegionDbError(
          ErrorCode.ConditionFailed,
          `this cluster was failed over: its standby was promoted at epoch ${this.fence.epoch}; this old primary refuses writes (re-seed it as the new standby; docs/replication.md)`,
        );
      }
      if (!this.fenceChecked) {
        const why = this.fenceCheckError ? ` (${this.fenceCheckError})` : '';
        throw new RegionDbError(ErrorCode.Unavailable, `the primary has not yet confirmed that its standby is not promoted (fence check at start)${why}; retry`);
      }
      if (command[1] !== CommandKind.Write && command[1] !== CommandKind.Delete) return command;
      // Monotonic per node: a stamp never goes below one given before (a wall-clock step back).
      this.lastStampMs = Math.max(this.lastStampMs, Math.floor(this.wall.nowMs()));
      return stampCommand(command, this.lastStampMs);
    },
    acknowledge: (regionId, index) => {
      if (this.cfg.mode === 'async') return Promise.resolve();
      return this.waitShipped(regionId, index);
    },
  };

  /** Sync mode: resolves when the standby has `index` of the region durably; otherwise the write's outcome is unknown. */
  private waitShipped(regionId: string, index: number): Promise<void> {
    const r = this.regionShip(regionId);
    if (r.receivedIndex !== undefined && r.receivedIndex >= index) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        r.waiters = r.waiters.filter((w) => w.resolve !== done);
        reject(new RegionDbError(ErrorCode.DeadlineExceeded, `committed in the primary but not confirmed by the standby within ${limits.standbySyncAckTimeoutMs} ms (sync mode): outcome unknown`));
      }, limits.standbySyncAckTimeoutMs);
      const done = () => {
        timer.cancel();
        resolve();
      };
      const fail = (err: Error) => {
        timer.cancel();
        reject(err);
      };
      r.waiters.push({ index, resolve: done, reject: fail });
      // Ship now rather than at the next interval: this is the write's latency.
      this.clock.setImmediate(() => {
        const replica = this.dn.regionServer.replica(regionId);
        if (replica) void this.shipRegion(replica, false);
      });
    });
  }

  private regionShip(regionId: string): RegionShip {
    let r = this.regions.get(regionId);
    if (!r) this.regions.set(regionId, (r = { receivedIndex: undefined, lastStampMs: 0, target: 0, targetAddr: undefined, inFlight: false, error: '', waiters: [] }));
    return r;
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    this.epoch = Math.max(this.epoch, this.ownEpoch());
    if (!this.fenceChecked || this.fence) await this.checkFence();
    if (this.fence) return;
    const replicas = this.dn.regionServer.allReplicas();
    const led = replicas.filter((r) => r.isLeader());
    const ledIds = new Set(led.map((r) => r.regionId));
    // Followers learn the standby's position too: after a leader change, the new leader's log
    // must still hold what the standby needs (logRetainFrom).
    const nowMs = this.clock.nowMs();
    if (nowMs - this.lastPositionProbeMs >= limits.standbyPositionProbeMs) {
      this.lastPositionProbeMs = nowMs;
      for (const r of replicas) if (!r.isLeader()) void this.probePosition(r).catch(() => undefined);
    }
    for (const [id, r] of this.regions) {
      if (ledIds.has(id) || id.startsWith('probe:')) continue;
      // No longer led here: the next leader ships; waiting writes learn their outcome from it.
      for (const w of r.waiters.splice(0)) w.reject(new RegionDbError(ErrorCode.DeadlineExceeded, `leadership of region ${id} moved before the standby confirmed the write (sync mode): outcome unknown`));
      this.regions.delete(id);
    }
    await Promise.all(led.map((r) => this.shipRegion(r)));
  }

  /**
   * S7 (standby-state.ts): the region's table was dropped and this replica is about to be
   * destroyed. If this node leads the region, it appends a table-dropped marker stamped after
   * every stamp it gave (the write gate's monotonic stamp) and waits until the standby has
   * received it, so the standby's region stops bounding the safe time. Bounded
   * (limits.standbyDropSealMs); on failure (no quorum left, the standby unreachable) the
   * replica is destroyed anyway and the standby's region stays frozen (docs/replication.md).
   */
  async sealForDrop(regionId: string): Promise<void> {
    const replica = this.dn.regionServer.replica(regionId);
    if (!replica || this.fence || this.stopped) return;
    const deadlineMs = this.clock.nowMs() + limits.standbyDropSealMs;
    if (!replica.isLeader()) {
      // A follower stays (bounded) until it has applied the marker: destroyed first, it would
      // take the leader's quorum and the marker with it.
      for (let i = 0; i < limits.standbyDropSealPollsMax && this.clock.nowMs() < deadlineMs && replica.stateMachine.dropMarkerIndex === 0; i++) {
        if (replica.isLeader()) return this.sealForDrop(regionId); // it became the leader: it seals
        await new Promise<void>((ok) => this.clock.setTimeout(ok, 50));
      }
      return;
    }
    this.lastStampMs = Math.max(this.lastStampMs, Math.floor(this.wall.nowMs()));
    const droppedAtMs = this.lastStampMs;
    try {
      let markerIndex = replica.stateMachine.dropMarkerIndex; // an earlier leader's marker: one is enough
      if (markerIndex === 0) {
        const applied = await this.dn.regionServer.propose(regionId, encodeTableDroppedMarker(droppedAtMs));
        if (applied.status !== 'ok') throw new RegionDbError(ErrorCode.Internal, `drop marker answered ${applied.status}`);
        markerIndex = applied.version;
      }
      const r = this.regionShip(regionId);
      for (let i = 0; i < limits.standbyDropSealPollsMax && this.clock.nowMs() < deadlineMs; i++) {
        if (r.receivedIndex !== undefined && r.receivedIndex >= markerIndex) {
          this.log.info({ regionId, markerIndex, droppedAtMs }, 'dropped region sealed: the standby has its drop marker');
          return;
        }
        // Without the barrier: the followers may be gone already (no quorum for a ReadIndex, and
        // this node may have stepped down), but every entry up to the applied marker is
        // committed, and the marker needs no watermark.
        await this.shipRegion(replica, false);
        await new Promise<void>((ok) => this.clock.setTimeout(ok, 50));
      }
      this.log.warn({ regionId, markerIndex }, 'dropped region: the standby did not confirm its drop marker in time; destroyed anyway (its standby region stays frozen)');
    } catch (err) {
      this.log.warn({ regionId, err: (err as Error).message }, 'dropped region: could not append its drop marker; destroyed anyway (its standby region stays frozen)');
    }
  }

  /** Asks the standby whether it was promoted; until one answer says no, writes are refused. */
  private async checkFence(): Promise<void> {
    if (!this.ownRecordRead) await this.readOwnRecord();
    for (const addr of this.cfg.addrs) {
      try {
        // fence_check: a standby node that knows no promotion asks its metasrv before it says "standby".
        const res = await call<StandbyStatusResponse__Output>(this.client(addr), 'StandbyStatus', { fence_check: true }, 2000);
        this.fenceAnswer(res.role, Number(res.fence_epoch), addr);
        return;
      } catch (err) {
        const e = fromGrpcError(err);
        this.fenceCheckError = explainStandbyError(e.code, e.message, this.cfg.site.describe);
        this.log.debug({ addr, err: this.fenceCheckError }, 'standby fence check failed');
      }
    }
  }

  /**
   * This cluster's own promotion as recorded in its metasrv (docs/replication.md, "The promotion
   * record"): a lower bound of this node's epoch, read before its first fence check, so that a
   * node that missed its cluster's promotion and hosts no region of it (or joined since) is not
   * fenced by a standby node still holding a superseded promotion. Best effort: without an answer
   * (metasrv down, an older build) the fence check goes on as before and this is tried again at
   * the next check.
   */
  private async readOwnRecord(): Promise<void> {
    try {
      const res = await this.dn.metaCall<GetStandbyPromotionResponse__Output>('GetStandbyPromotion', {}, { timeoutMs: 1500, idempotent: true, singlePass: true });
      this.learn(Number(res.record?.epoch ?? 0));
      this.ownRecordRead = true;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'this cluster\'s promotion record could not be read from its metasrv; the fence check goes on without it');
    }
  }

  /**
   * What a standby's StandbyStatus answer means here. A promotion below this primary's own epoch
   * is one this cluster's promotion superseded: that standby is not promoted now (this primary's
   * requests will tell it), so it does not fence. A standby that is not promoted follows this
   * cluster: the epoch it knows is a lower bound of this cluster's own (learn()), never a fence.
   */
  private fenceAnswer(role: string, epoch: number, addr: string): void {
    if (role === 'promoted' && epoch >= this.ownEpoch()) {
      this.fenced(epoch);
      return;
    }
    if (role === 'standby') this.learn(epoch);
    if ((role === 'standby' || role === 'promoted') && !this.fenceChecked) {
      if (role === 'standby') this.confirmedAsPrimary();
      this.fenceChecked = true;
      this.fenceCheckError = '';
      this.log.info({ addr }, 'standby confirmed not promoted: this primary takes writes');
    }
  }

  /**
   * The other site answers as this primary's standby: this node's own promotion (its `promoted`
   * record) is served as a primary now, and becomes `primary` at the same epoch — history if this
   * node is made a standby later (finding D4). Not before: a node started as a primary by mistake
   * while its cluster is the live promoted one (the other site lost, or not yet a standby) keeps
   * its promotion.
   */
  private confirmedAsPrimary(): void {
    const r = this.record;
    if (r?.state !== 'promoted') return;
    const record: FenceRecord = { state: 'primary', epoch: r.epoch, atMs: r.atMs };
    writeFence(this.cfg.dataDir, record);
    this.record = record;
    this.log.info({ epoch: r.epoch }, 'the other site follows this cluster: this node\'s promotion is now served as a primary');
  }

  private fenced(epoch: number): void {
    if (this.fence) return;
    const record: FenceRecord = { state: 'fenced', epoch, atMs: Math.floor(this.wall.nowMs()) };
    writeFence(this.cfg.dataDir, record); // durable before the refusal is relied on
    this.record = record;
    this.log.error({ epoch }, 'the standby was promoted: this old primary is fenced and refuses writes from now on');
    // Committed on this (now old) primary; whether the promoted standby has it is not known here.
    const err = new RegionDbError(ErrorCode.DeadlineExceeded, `the standby was promoted at epoch ${epoch} before it confirmed the write (sync mode): outcome unknown`);
    for (const r of this.regions.values()) for (const w of r.waiters.splice(0)) w.reject(err);
  }

  private async shipRegion(replica: Replica<RegionState>, withWatermark = true): Promise<void> {
    const r = this.regionShip(replica.regionId);
    if (r.inFlight || this.stopped || this.fence) return;
    r.inFlight = true;
    try {
      await this.shipOnce(replica, r, withWatermark);
      r.error = '';
    } catch (err) {
      const e = fromGrpcError(err);
      r.error = explainStandbyError(e.code, e.message, this.cfg.site.describe);
      const hint = e.details['leaderAddr'];
      if (typeof hint === 'string' && hint) r.targetAddr = this.cfg.addrOverrides[hint] ?? hint;
      else {
        r.targetAddr = undefined;
        r.target++;
      }
      if (e.code === ErrorCode.Unauthenticated || e.code === ErrorCode.PermissionDenied || r.error !== e.message) {
        // Credentials do not fix themselves: say so at warn, once a minute per region and kind.
        const suppressed = this.authLog.admit(`${replica.regionId}:${e.code}`, this.clock.nowMs());
        if (suppressed !== undefined) this.log.warn({ regionId: replica.regionId, err: r.error, suppressed }, 'the standby site refused the stream');
      } else if (e.code !== ErrorCode.NotLeader) this.log.debug({ regionId: replica.regionId, err: e.message }, 'shipping to the standby failed; retrying');
    } finally {
      r.inFlight = false;
    }
    // Sync waiters are served as soon as the position moves; keep going while there is more.
    if (r.waiters.length > 0 && !this.stopped && r.error === '' && replica.isLeader() && (r.receivedIndex ?? 0) < replica.appliedIndex) {
      this.clock.setImmediate(() => void this.shipRegion(replica, false));
    }
  }

  private async shipOnce(replica: Replica<RegionState>, r: RegionShip, withWatermark: boolean): Promise<void> {
    const meta = this.dn.metas.get(replica.regionId);
    if (!meta) return;
    const table = this.dn.schemaProto(meta.schema);
    const regionNumber = Number(BigInt(replica.regionId) & 0xffffffffn);
    const standby = replica.stateMachine.standby;
    // A promoted standby's writes version above what it applied (S6 in standby-state.ts).
    const versionOffset = standby?.mode === 'promoted' ? standby.versionOffset : 0;
    const base = { primary_cluster_id: this.cfg.clusterId, table, region_number: regionNumber, sync: this.cfg.mode === 'sync', version_offset: String(versionOffset), primary_epoch: String(this.epoch) };
    if (r.receivedIndex === undefined) {
      this.answered(r, await this.send(r, { ...base, from_index: '0', entries: [], watermark_ms: '0' }), replica.regionId);
      return;
    }
    // A round for sync waiters skips the barrier and claims no watermark: it only has to move
    // committed entries (a write's latency); the interval's rounds keep the watermark moving.
    const t0 = Math.floor(this.wall.nowMs());
    if (withWatermark) await this.dn.regionServer.readBarrier(replica.regionId); // (1) still the leader after t0
    const applied = replica.appliedIndex;
    const lo = r.receivedIndex + 1;
    const log = replica.raft.log;
    const promotedAt = standby?.mode === 'promoted' ? standby.promotedAtIndex : 0;
    if (lo <= applied && (lo < log.firstIndex() || lo <= promotedAt)) {
      await this.seed(replica, r, base, Math.max(log.firstIndex() - 1, promotedAt));
      return;
    }
    const hi = Math.min(applied, lo + limits.standbyShipEntriesMax - 1);
    const raw = lo <= hi ? log.slice(lo, hi + 1, limits.standbyShipBytesMax) : [];
    let stamp = r.lastStampMs;
    // The region's drop fence, if applied (docs/ddl.md, "Interactions"): every write and delete
    // above it applied nothing here — refused, or a retry answered its earlier result — so it is
    // shipped without its data, or the standby (which has no fence) would apply it. Everything
    // shipped is applied (hi <= applied), so a fence below it is known.
    const fenceIndex = replica.stateMachine.dropFence?.index ?? Number.POSITIVE_INFINITY;
    const entries: ProtoShippedEntry[] = raw.map((e) => {
      let data: Uint8Array = new Uint8Array(0);
      if (e.type === EntryType.Normal && e.data.byteLength > 1 && (e.data[1] === CommandKind.Write || e.data[1] === CommandKind.Delete)) {
        const { stampMs } = unstampCommand(e.data);
        if (stampMs !== undefined) stamp = Math.max(stamp, stampMs);
        if (e.index < fenceIndex) data = e.data;
      } else if (e.type === EntryType.Normal && isTableDroppedMarker(e.data)) {
        stamp = Math.max(stamp, tableDroppedMarkerMs(e.data)); // S7: the region's last entry
        data = e.data;
      }
      return { index: String(e.index), stamp_ms: String(stamp), data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
    });
    const lastShipped = raw.length > 0 ? raw[raw.length - 1]!.index : lo - 1;
    const watermark = withWatermark && lastShipped >= applied ? this.watermark(replica, applied, t0) : 0; // (3)
    const res = await this.send(r, { ...base, from_index: String(lo), entries, watermark_ms: String(watermark) });
    this.answered(r, res, replica.regionId);
    if (r.receivedIndex !== undefined && r.receivedIndex >= lastShipped) r.lastStampMs = stamp;
  }

  /**
   * Seeds the standby region from this region's latest manifest, which must be at or past
   * `minIndex` (the stream continues from its index + 1, which the log must still hold); if it
   * is older, a flush is asked for and the next round tries again.
   */
  private async seed(replica: Replica<RegionState>, r: RegionShip, base: { primary_cluster_id: string; table: unknown; region_number: number; version_offset: string; primary_epoch: string }, minIndex: number): Promise<void> {
    const store = this.dn.objectStore;
    const latest = await loadLatestManifest(store, replica.regionId);
    if (!latest || latest.manifest.flushedIndex < minIndex) {
      this.dn.flusher.requestManifest(replica.regionId);
      this.dn.flusher.check();
      throw new RegionDbError(ErrorCode.Unavailable, `region ${replica.regionId}: seeding the standby waits for a flush at or past index ${minIndex} (latest manifest: ${latest?.manifest.flushedIndex ?? 'none'})`);
    }
    // Read after the manifest: every entry it holds was stamped (if at all) before now (S5).
    const seededThroughMs = Math.floor(this.wall.nowMs());
    const startedMs = this.clock.nowMs();
    const manifestBytes = await store.get(latest.key);
    const objects: { source_key: string; key: string }[] = [];
    let bytes = 0;
    for (const sst of latest.manifest.ssts) {
      let uploadId = '';
      let key = '';
      for (let offset = 0; ; ) {
        if (this.stopped || this.fence) throw new RegionDbError(ErrorCode.Unavailable, 'shipper stopping');
        const length = Math.min(limits.standbySeedChunkBytesMax, sst.size - offset);
        const data = length > 0 ? await store.getRange(sst.key, offset, length) : new Uint8Array(0);
        const last = offset + length >= sst.size;
        const res = await this.callStandby<StandbySeedObjectResponse__Output>(r, 'StandbySeedObject', {
          primary_cluster_id: base.primary_cluster_id,
          table: base.table,
          region_number: base.region_number,
          upload_id: uploadId,
          offset: String(offset),
          data: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
          last,
          source_key: sst.key,
        });
        uploadId = res.upload_id;
        offset += length;
        if (last) {
          key = res.key;
          break;
        }
      }
      objects.push({ source_key: sst.key, key });
      bytes += sst.size;
    }
    const res = await this.callStandby<StandbyShipResponse__Output>(r, 'StandbySeed', {
      primary_cluster_id: base.primary_cluster_id,
      table: base.table,
      region_number: base.region_number,
      version_offset: base.version_offset,
      primary_epoch: base.primary_epoch,
      manifest: Buffer.from(manifestBytes.buffer, manifestBytes.byteOffset, manifestBytes.byteLength),
      objects,
      seeded_through_ms: String(seededThroughMs),
    });
    this.answered(r, res, replica.regionId);
    r.lastStampMs = Math.max(r.lastStampMs, seededThroughMs);
    this.log.info(
      { regionId: replica.regionId, primaryIndex: latest.manifest.flushedIndex, ssts: objects.length, bytes, ms: Math.round(this.clock.nowMs() - startedMs) },
      'seeded the standby region from the latest manifest; the stream continues from its index',
    );
  }

  /** (3): min(t0, the smallest stamp not yet applied or still queued) − 1. */
  private watermark(replica: Replica<RegionState>, applied: number, t0: number): number {
    let min = t0 + 1;
    const log = replica.raft.log;
    const last = log.lastIndex();
    if (last > applied) {
      for (const e of log.slice(applied + 1, last + 1, Number.MAX_SAFE_INTEGER)) {
        if (e.type !== EntryType.Normal || e.data.byteLength < 2) continue;
        const { stampMs } = unstampCommand(e.data);
        if (stampMs !== undefined) min = Math.min(min, stampMs);
      }
    }
    for (const q of replica.queuedCommands) {
      const { stampMs } = unstampCommand(q.command);
      if (stampMs !== undefined) min = Math.min(min, stampMs);
    }
    return Math.max(0, min - 1);
  }

  /** A follower's question: where does the standby stand for this region? */
  private async probePosition(replica: Replica<RegionState>): Promise<void> {
    const meta = this.dn.metas.get(replica.regionId);
    if (!meta || this.fence) return;
    const r = this.regionShip(`probe:${replica.regionId}`);
    const req = { primary_cluster_id: this.cfg.clusterId, table: this.dn.schemaProto(meta.schema), region_number: Number(BigInt(replica.regionId) & 0xffffffffn), from_index: '0', entries: [], watermark_ms: '0', primary_epoch: String(this.epoch) };
    try {
      const res = await this.send(r, req);
      if (res.promoted) this.promotedAnswer(Number(res.fence_epoch));
      else this.positions.set(replica.regionId, Number(res.region?.received_index ?? 0));
    } catch (err) {
      const hint = fromGrpcError(err).details['leaderAddr'];
      r.targetAddr = typeof hint === 'string' && hint ? (this.cfg.addrOverrides[hint] ?? hint) : undefined;
      if (!r.targetAddr) r.target++;
    }
  }

  /**
   * The first log index the standby still needs from a region: its received index + 1, as last
   * heard; unknown (never heard): everything. Bounded: at most standbyLogRetainEntriesMax entries
   * behind the applied index are kept for it.
   */
  logRetainFrom(regionId: string): number | undefined {
    if (this.fence) return undefined;
    const replica = this.dn.regionServer.replica(regionId);
    if (!replica) return undefined;
    const floor = replica.appliedIndex - limits.standbyLogRetainEntriesMax;
    return Math.max(floor, (this.positions.get(regionId) ?? 0) + 1);
  }

  /** See learnedEpoch. */
  private learn(epoch: number): void {
    if (!Number.isSafeInteger(epoch) || epoch <= this.learnedEpoch) return;
    this.learnedEpoch = epoch;
    this.epoch = Math.max(this.epoch, epoch);
  }

  /** A standby's answer "promoted at `epoch`": a fence if the epoch is at or above this primary's own. */
  private promotedAnswer(epoch: number): void {
    if (epoch >= this.ownEpoch()) {
      this.fenced(epoch);
      return;
    }
    // The standby keeps a request of a higher epoch out only if it is promoted above it; below
    // ours it should have taken it: say so and retry (never a fence on an older promotion).
    throw new RegionDbError(ErrorCode.Unavailable, `the standby answered promoted at epoch ${epoch}, below this primary's ${this.ownEpoch()}; retrying`);
  }

  private answered(r: RegionShip, res: StandbyShipResponse__Output, regionId: string): void {
    if (res.promoted) {
      this.promotedAnswer(Number(res.fence_epoch));
      return;
    }
    this.learn(Number(res.fence_epoch));
    const received = Number(res.region?.received_index ?? 0);
    r.receivedIndex = received;
    this.positions.set(regionId, received);
    if (r.lastStampMs === 0) r.lastStampMs = Number(res.region?.last_stamp_ms ?? 0);
    const ready = r.waiters.filter((w) => w.index <= received);
    r.waiters = r.waiters.filter((w) => w.index > received);
    for (const w of ready) w.resolve();
  }

  private send(r: RegionShip, request: unknown): Promise<StandbyShipResponse__Output> {
    return this.callStandby<StandbyShipResponse__Output>(r, 'StandbyShip', request);
  }

  private callStandby<Res>(r: RegionShip, method: string, request: unknown): Promise<Res> {
    const addr = r.targetAddr ?? this.cfg.addrs[r.target % this.cfg.addrs.length]!;
    return call<Res>(this.client(addr), method, request, limits.standbyShipTimeoutMs);
  }

  private client(addr: string): grpc.Client {
    let c = this.clients.get(addr);
    if (!c) this.clients.set(addr, (c = makeClient('Admin', addr, { credentials: this.cfg.site.credentials, authorization: this.cfg.site.authorization })));
    return c;
  }

  role(): 'primary' | 'fenced' {
    return this.fence ? 'fenced' : 'primary';
  }

  fenceEpoch(): number {
    return this.fence?.epoch ?? 0;
  }

  /** Per region led here: what the standby has, and the lag in entries and ms. */
  status(): ShipperRegionStatus[] {
    const now = this.wall.nowMs();
    const out: ShipperRegionStatus[] = [];
    for (const replica of this.dn.regionServer.allReplicas()) {
      if (!replica.isLeader()) continue;
      const r = this.regions.get(replica.regionId);
      const shipped = r?.receivedIndex ?? 0;
      const applied = replica.appliedIndex;
      let lagMs = 0;
      if (r?.receivedIndex !== undefined && applied > shipped) {
        // The oldest unshipped entry's stamp (the first stamped one found).
        const log = replica.raft.log;
        const lo = Math.max(shipped + 1, log.firstIndex());
        for (const e of log.slice(lo, Math.min(applied, lo + 64) + 1, Number.MAX_SAFE_INTEGER)) {
          const { stampMs } = e.type === EntryType.Normal && e.data.byteLength > 1 ? unstampCommand(e.data) : { stampMs: undefined };
          if (stampMs !== undefined) {
            lagMs = Math.max(0, now - stampMs);
            break;
          }
        }
      }
      out.push({
        region_id: replica.regionId,
        table: this.dn.metas.get(replica.regionId)?.schema.name ?? '',
        shipped_index: String(shipped),
        applied_index: String(applied),
        error: r?.error || (!this.fenceChecked && this.fenceCheckError) || (r ? '' : 'not shipped yet'),
        lag_entries: String(Math.max(0, applied - shipped)),
        lag_ms: String(Math.round(lagMs)),
      });
    }
    return out;
  }
}
