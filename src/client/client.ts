// The regiondb client library: route cache, per-region splitting of writes, NOT_LEADER
// redirects with the leader hint, retries with backoff and a stable request id (a retried write
// is applied at most once), deadlines. A timed-out write has an UNKNOWN outcome and is
// reported as DEADLINE_EXCEEDED with that said (docs/raft-rules.md R20).
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { type Scheduler, systemScheduler } from '../common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { SingleFlight } from '../common/single-flight.js';
import { type Row, type TableSchema, type Value, compareBytes, encodePrimaryKey, makeRegionId, regionNumberOf, validateKey, validateRow } from '../engine/index.js';
import { authorizationHeader } from '../rpc/auth.js';
import { type WriteRequestInput, databaseService, encodeWriteRows } from '../rpc/batch-wire.js';
import { MetaChannel } from '../rpc/meta-channel.js';
import { type ClientSecurity, call, makeClient } from '../rpc/server.js';
import { type BatchKind, BatchStream } from '../rpc/batch-stream.js';
import { failedInTransit, fromGrpcError } from '../rpc/status.js';
import { CertificateFiles, channelCredentials } from '../rpc/tls.js';
import type {
  DatabaseClient,
  DeleteRequest,
  DeleteResponse__Output,
  FlushResponse__Output,
  GetRequest,
  GetResponse__Output,
  GetRoutesResponse__Output,
  GetStandbyPromotionResponse__Output,
  ListNodesResponse__Output,
  AddMetaMemberResponse__Output,
  MetaCreateTableResponse__Output,
  MetaDropTableResponse__Output,
  MetaGroupInfo__Output,
  RecoverTableResponse__Output,
  RemoveMetaMemberResponse__Output,
  RecoveredRegion__Output,
  ReplicaStat__Output,
  ScanRequest,
  ScanResponse__Output,
  StandbyFreezeResponse__Output,
  StandbyUnfreezeResponse__Output,
  StandbyPromoteResponse__Output,
  StandbyStatusResponse__Output,
  BarrierFreezeResponse__Output,
  BarrierHoldResponse__Output,
  BarrierReleaseResponse__Output,
  StartProcedureResponse__Output,
  StatusResponse__Output,
  WriteResponse__Output,
} from '../rpc/generated/index.js';
import { fromProtoRow, fromProtoSchema, toProtoRow, toProtoValue } from '../rpc/values.js';

/** One replica as a datanode reports it (meta.proto ReplicaStat). */
export type ReplicaStatus = ReplicaStat__Output;

export interface ClientOptions {
  /**
   * The metasrv (routes, DDL): one address, a comma-separated list ("a:4000,b:4000") or an array.
   * With several, the leader is found and followed (src/rpc/meta-channel.ts).
   */
  readonly metasrv: string | readonly string[];
  /**
   * Overall deadline per operation, retries included: it bounds the whole call, every attempt's
   * timeout being cut to what is left of it (docs/clients.md, "Deadlines of the client library").
   */
  readonly deadlineMs?: number;
  /** Per-attempt RPC timeout, at most: an attempt never runs past the operation's deadline. */
  readonly attemptTimeoutMs?: number;
  /**
   * A readable name for this client. The identity sent for retry deduplication is this name plus
   * a random UUID per instance (`<clientId>-<uuid>`): request ids come from an in-memory counter
   * that every instance starts afresh, and retries never cross instances, so two processes (or
   * one process restarted) given the same name must not share an identity — their different
   * writes would carry the same (client, request id).
   */
  readonly clientId?: string;
  /** TLS (docs/security.md): the cluster CA; a client certificate and key when servers require one. */
  readonly tls?: { readonly caFile: string; readonly certFile?: string; readonly keyFile?: string };
  /** Credentials of a user in the cluster's users file... */
  readonly user?: string;
  readonly password?: string;
  /** ...or a bearer token. */
  readonly token?: string;
  /**
   * Send writes, deletes and gets over one Database.Batch stream per datanode (default), or as
   * one unary call each (`false`). Same semantics either way; the stream saves most of gRPC's
   * per-call cost. Servers that refuse the stream (no write access) get unary calls.
   */
  readonly batchStream?: boolean;
  /**
   * A debugging hook (off by default; nothing is recorded or timed without it): called for every
   * attempt of a region operation, every backoff sleep and every route lookup, with wall-clock
   * times (bench/scale-bench.ts SCALE_TRACE=1 uses it to split a failover's write gap).
   */
  readonly trace?: (event: ClientTraceEvent) => void;
  /**
   * The monotonic clock (ms) deadlines, backoffs and route ages are measured on:
   * `performance.now()` by default. Timers are `scheduler`'s; a test moves this clock to put an
   * answer at a chosen point of a deadline without racing the machine's scheduler.
   */
  readonly now?: () => number;
  /**
   * The timers of the Batch stream's attempts and of the backoff sleeps: the real event loop's
   * (systemScheduler) by default. A test passes a hand-moved one together with `now`, so that an
   * attempt times out, and a backoff ends, when it moves that clock (unary calls keep gRPC's own
   * deadlines, on real time).
   */
  readonly scheduler?: Scheduler;
}

/** One step of the client's work on an operation (ClientOptions.trace). Times: Date.now() ms. */
export type ClientTraceEvent =
  | {
      readonly kind: 'attempt';
      readonly what: string;
      readonly regionId: string;
      readonly addr: string;
      readonly startMs: number;
      readonly durationMs: number;
      /** The error's code, absent when the attempt succeeded. */
      readonly code?: string;
      readonly message?: string;
      /** The leader address the error named, if any. */
      readonly hint?: string;
    }
  | { readonly kind: 'backoff'; readonly what: string; readonly regionId: string; readonly startMs: number; readonly ms: number }
  /** A route lookup: `regionId` set when an attempt of that region waited for it (inline), unset when in the background. */
  | { readonly kind: 'routes'; readonly table: string; readonly regionId?: string; readonly startMs: number; readonly durationMs: number; readonly ok: boolean };

interface Route {
  regionId: string;
  peers: { nodeId: string; addr: string }[];
  leaderAddr: string | undefined;
}

interface TableRoutes {
  schema: TableSchema;
  routes: Map<string, Route>;
  /** When these routes were fetched (monotonic ms). */
  fetchedMs: number;
  /** A background lookup of newer routes is in flight. */
  refreshing?: boolean;
}

export interface WriteOptions {
  readonly expectVersion?: number;
  readonly expectAbsent?: boolean;
}

export interface ScanOptions {
  readonly startMs?: number;
  readonly endMs?: number;
  readonly tagEquals?: Record<string, Value>;
  readonly limit?: number;
  readonly consistency?: 'linearizable' | 'stale';
}

export interface VersionedRow {
  readonly row: Row;
  readonly version: number;
}

/**
 * Request ids grow with the wall clock: id = max(previous + 1, now_ms × REQUEST_IDS_PER_MS).
 * A region that dropped a client's dedup record refuses ids at or below the highest id that
 * client used (region-state.ts D2), so a new client's ids must start above the ids of clients
 * that wrote before it; ids of one instance stay increasing whatever the clock does. Below 2^53
 * until the year 2255.
 */
const REQUEST_IDS_PER_MS = 1000;

const BACKOFF_MIN_MS = 20;
const BACKOFF_MAX_MS = 200;
/**
 * A retry goes out only with at least this much of the deadline left (as the datanode router's
 * resends, RESEND_BUDGET_MIN_MS): one sent with a sliver would time out unanswered and turn a write
 * every attempt of which was refused ("not applied") into an unknown outcome.
 */
const RETRY_MIN_MS = 50;
/** Leader hints a call sent to a chosen node follows at once (withNodeFollowingHints); past them it backs off. */
const HINT_HOPS_MAX = 3;
/** How long a replica that refused connections is skipped when choosing where to send. */
const DOWN_AVOID_MS = 3000;
/**
 * Routes in use are looked up again in the background once they are this old, or after
 * LEADERLESS_ROUTES_REFRESH_MS when they name no leader for the region written. Any node forwards
 * a write to the region's leader, so a client with stale routes gets no error to learn from: one
 * that fetched them before the first elections (right after CreateTable), or before leaders moved
 * (balance-leaders, a failover), sent every write through an extra hop for good — the forwarding
 * node decodes, validates and re-encodes it (make bench-ingest, docs/performance.md).
 */
const ROUTES_REFRESH_MS = 5000;
const LEADERLESS_ROUTES_REFRESH_MS = 1000;

export class RegionDbClient {
  /** Dedup identity: unique per instance (see ClientOptions.clientId). */
  readonly clientId: string;
  private lastRequestId = 0;
  /**
   * The request ids this client may still send (a round of deduplicated() under way), in the
   * order they were made — ascending, since ids only grow — so the first is the lowest: the
   * session mark every write and delete carries (completed_below, docs/raft-rules.md R19 D3).
   */
  private readonly unfinishedRequestIds = new Set<number>();
  private readonly tables = new Map<string, TableRoutes>();
  /** Route lookups in flight, by table (describe() shares them). */
  private readonly routeLookups = new SingleFlight<string, TableRoutes>();
  private readonly conns = new Map<string, grpc.Client>();
  private readonly batchStreams = new Map<string, BatchStream>();
  private readonly meta: MetaChannel;
  private readonly deadlineMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly security: ClientSecurity;

  /** ClientOptions.now, or performance.now(). */
  private readonly now: () => number;
  /** ClientOptions.scheduler, or the real event loop's timers. */
  private readonly scheduler: Scheduler;

  constructor(readonly options: ClientOptions) {
    this.now = options.now ?? (() => performance.now());
    this.scheduler = options.scheduler ?? systemScheduler;
    this.clientId = `${options.clientId ?? 'client'}-${randomUUID()}`;
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 3000;
    this.security = {
      credentials: options.tls ? channelCredentials(new CertificateFiles(options.tls)) : undefined,
      authorization: authorizationHeader(options),
    };
    this.meta = new MetaChannel(options.metasrv, this.security, { attemptTimeoutMs: this.attemptTimeoutMs });
  }

  /** The metasrv addresses this client knows (configured, then leaders learned from hints). */
  get metasrvAddrs(): readonly string[] {
    return this.meta.addrs;
  }

  close(): void {
    this.meta.close();
    for (const b of this.batchStreams.values()) b.close();
    this.batchStreams.clear();
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }

  /**
   * The timeout of an attempt started with `remainingMs` of its operation's deadline left (as
   * withBackoff passes it): `limitMs` (the attempt timeout) or what is left, whichever is less,
   * and at least 1 ms (withBackoff starts no attempt once nothing is left). The deadline bounds
   * the whole call: a retry started just before it does not run a full attempt past it.
   */
  private attemptMs(remainingMs: number, limitMs = this.attemptTimeoutMs): number {
    return Math.max(1, Math.min(limitMs, remainingMs));
  }

  /** One write, delete or get attempt at `addr`, waiting at most `timeoutMs`: over its Batch stream, or a unary call. */
  private async operation<T>(addr: string, kind: BatchKind, request: unknown, timeoutMs: number): Promise<T> {
    if (this.options.batchStream !== false) {
      let stream = this.batchStreams.get(addr);
      if (!stream) this.batchStreams.set(addr, (stream = new BatchStream(this.conn(addr), undefined, this.scheduler)));
      if (!stream.refused) {
        try {
          return await stream.request<T>(kind, request, timeoutMs); // timeoutMs travels as BatchRequest.timeout_ms
        } catch (err) {
          if (!stream.refused) throw err; // refused: nothing ran; go unary below
        }
      }
    }
    const method = kind === 'write' ? 'Write' : kind === 'delete' ? 'Delete' : 'Get';
    return call<T>(this.conn(addr), method, request, timeoutMs);
  }

  private conn(addr: string): grpc.Client {
    let c = this.conns.get(addr);
    // Batch with the hand-written codec (src/rpc/batch-wire.ts); the other methods as proto-loader serializes them.
    if (!c) this.conns.set(addr, (c = makeClient('Database', addr, this.security, databaseService())));
    return c;
  }

  // ─── DDL and routes ─────────────────────────────────────────────────────────────────────────

  /**
   * `requestToken`: by default a fresh one per call. A caller that passes its own (br restore)
   * gets, for as long as the table lives, the table that token created back from a later call,
   * and ALREADY_EXISTS for a table created under any other token.
   */
  async createTable(name: string, columns: { name: string; type: string; semantic: string }[], regionCount: number, requestToken?: string): Promise<TableSchema> {
    const protoColumns = columns.map((c) => ({
      name: c.name,
      type: c.type.toUpperCase() === 'TIMESTAMP' ? 'TIMESTAMP_MS' : c.type.toUpperCase(),
      semantic: c.semantic.toUpperCase(),
    }));
    try {
      // The column types and semantics as the caller spelled them: the metasrv validates them.
      // The request token makes the call safe to send again (another metasrv, a dropped
      // connection): a retry of a CreateTable that did create the table is answered with it.
      const request = { name, columns: protoColumns, region_count: regionCount, request_token: requestToken ?? `${this.clientId}:${randomUUID()}` };
      const res = await this.meta.call<MetaCreateTableResponse__Output>('CreateTable', request, this.deadlineMs, { idempotent: true });
      this.tables.delete(name);
      return fromProtoSchema(res.table);
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  /**
   * `requestToken`: by default a fresh one per call, which makes the call safe to send again: a
   * retry of a DropTable that did drop the table is answered with that drop, and never drops a
   * table re-created under the name since (docs/ddl.md, "A DropTable sent again").
   */
  async dropTable(name: string, requestToken?: string): Promise<number> {
    try {
      const request = { name, request_token: requestToken ?? `${this.clientId}:${randomUUID()}` };
      const res = await this.meta.call<MetaDropTableResponse__Output>('DropTable', request, this.deadlineMs, { idempotent: true });
      this.tables.delete(name);
      return res.regions_dropped;
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  async describe(table: string, refresh = false): Promise<TableRoutes> {
    const cached = this.tables.get(table);
    if (cached && !refresh) return cached;
    // One route lookup per table at a time: when a node leading many regions dies, every write
    // to them asks for fresh routes; they share one answer instead of flooding the metasrv.
    return this.routeLookups.run(table, () => this.lookUpRoutes(table, cached));
  }

  private async lookUpRoutes(table: string, cached: TableRoutes | undefined): Promise<TableRoutes> {
    type Routes = GetRoutesResponse__Output;
    let res: Routes;
    try {
      // Without routes nothing can be sent: a metasrv restarting (or the channel to it still in
      // reconnect backoff) is waited for, within the deadline. With routes, one attempt will do.
      // An attempt is one pass over the metasrv addresses (the leader found on the way).
      res = cached
        ? await this.meta.call<Routes>('GetRoutes', { table }, this.attemptTimeoutMs, { idempotent: true, singlePass: true })
        : await this.withNode('the metasrv', `routes of ${table}`, (remainingMs) => this.meta.call<Routes>('GetRoutes', { table }, this.attemptMs(remainingMs), { idempotent: true, singlePass: true }), true);
    } catch (err) {
      const e = fromGrpcError(err);
      if (cached && e.code !== ErrorCode.NotFound) return cached; // metasrv down: keep using what we know
      throw e;
    }
    const routes = new Map<string, Route>();
    for (const r of res.routes) {
      const leader = r.peers.find((p) => p.node_id === r.leader_node_id);
      const previous = cached?.routes.get(r.region_id);
      routes.set(r.region_id, {
        regionId: r.region_id,
        peers: r.peers.map((p) => ({ nodeId: p.node_id, addr: p.addr })),
        leaderAddr: leader?.addr ?? previous?.leaderAddr,
      });
    }
    const info: TableRoutes = { schema: fromProtoSchema(res.table), routes, fetchedMs: this.now() };
    this.tables.set(table, info);
    return info;
  }

  async listNodes(): Promise<ListNodesResponse__Output> {
    try {
      return await this.meta.call<ListNodesResponse__Output>('ListNodes', {}, this.attemptTimeoutMs, { idempotent: true });
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  /**
   * Meta.RecordStandbyPromotion: records a promotion of this (standby) cluster in its metasrv's
   * replicated catalog, durably, before any datanode is told (docs/replication.md, "The promotion
   * record"). The same (epoch, cut) again is accepted, so a retry is safe.
   */
  async recordStandbyPromotion(epoch: number, cutMs: number): Promise<{ epoch: number; cutMs: number }> {
    try {
      const res = await this.meta.call<GetStandbyPromotionResponse__Output>('RecordStandbyPromotion', { epoch: String(epoch), cut_ms: String(cutMs) }, this.attemptTimeoutMs, { idempotent: true });
      return { epoch: Number(res.record?.epoch ?? 0), cutMs: Number(res.record?.cut_ms ?? 0) };
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  /** Meta.GetStandbyPromotion: the promotion recorded in this cluster's metasrv (epoch 0: none). */
  async getStandbyPromotion(): Promise<{ epoch: number; cutMs: number }> {
    try {
      const res = await this.meta.call<GetStandbyPromotionResponse__Output>('GetStandbyPromotion', {}, this.attemptTimeoutMs, { idempotent: true });
      return { epoch: Number(res.record?.epoch ?? 0), cutMs: Number(res.record?.cut_ms ?? 0) };
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  /** Admin.Status of one datanode: its replicas, with their health (meta.proto ReplicaStat). */
  async nodeStatus(addr: string): Promise<StatusResponse__Output> {
    const admin = makeClient('Admin', addr, this.security);
    try {
      return await call<StatusResponse__Output>(admin, 'Status', {}, this.attemptTimeoutMs);
    } catch (err) {
      throw fromGrpcError(err);
    } finally {
      admin.close();
    }
  }

  /** Admin.StandbyStatus of one datanode: its part in a dual active-standby pair (docs/replication.md). */
  async standbyStatus(addr: string): Promise<StandbyStatusResponse__Output> {
    return this.adminCall<StandbyStatusResponse__Output>(addr, 'StandbyStatus', {}, this.attemptTimeoutMs);
  }

  /**
   * Admin.StandbyFreeze of one standby datanode: the regions it leads release nothing more (a
   * promotion's first phase); only `regionIds` among them if given.
   */
  async standbyFreeze(addr: string, regionIds?: readonly string[]): Promise<StandbyFreezeResponse__Output> {
    return this.adminCall<StandbyFreezeResponse__Output>(addr, 'StandbyFreeze', regionIds ? { region_ids: regionIds } : {}, 30_000);
  }

  /** Admin.StandbyUnfreeze of one standby datanode: the frozen regions it leads release again (the abort of a promotion's first phase). */
  async standbyUnfreeze(addr: string): Promise<StandbyUnfreezeResponse__Output> {
    return this.adminCall<StandbyUnfreezeResponse__Output>(addr, 'StandbyUnfreeze', {}, 30_000);
  }

  /** Admin.StandbyPromote of one standby datanode: cut the regions it leads at `cutMs`. */
  async standbyPromote(addr: string, cutMs: number, epoch: number): Promise<StandbyPromoteResponse__Output> {
    return this.adminCall<StandbyPromoteResponse__Output>(addr, 'StandbyPromote', { cut_ms: String(cutMs), epoch: String(epoch) }, 30_000);
  }

  /**
   * A consistent backup's write barrier (docs/backup.md), at the region's leader: hold new
   * client writes for at most `holdMs`; the leader's term is returned for barrierFreeze.
   */
  async barrierHold(table: string, regionId: string, barrierId: string, holdMs: number): Promise<number> {
    const res = await this.withRegion(table, regionId, 'barrier', (addr, remainingMs) =>
      this.adminCall<BarrierHoldResponse__Output>(addr, 'BarrierHold', { barrier_id: barrierId, region_id: regionId, hold_ms: holdMs }, this.attemptMs(remainingMs)),
    );
    return Number(res.term);
  }

  /**
   * Freeze the held region, release its writes, and return the manifest at the freeze once
   * flushed. Its attempt waits up to 70 s whatever the deadline (a flush can take that long):
   * the deadline bounds only when a retry may start.
   */
  async barrierFreeze(table: string, regionId: string, barrierId: string, term: number, sstLeaseMs: number): Promise<BarrierFreezeResponse__Output> {
    return this.withRegion(table, regionId, 'barrier', (addr) =>
      this.adminCall<BarrierFreezeResponse__Output>(addr, 'BarrierFreeze', { barrier_id: barrierId, region_id: regionId, term: String(term), sst_lease_ms: sstLeaseMs }, 70_000),
    );
  }

  /** Release a hold without freezing (an abandoned barrier); false if it was not in place. */
  async barrierRelease(table: string, regionId: string, barrierId: string): Promise<boolean> {
    const res = await this.withRegion(table, regionId, 'barrier', (addr, remainingMs) =>
      this.adminCall<BarrierReleaseResponse__Output>(addr, 'BarrierRelease', { barrier_id: barrierId, region_id: regionId }, this.attemptMs(remainingMs)),
    );
    return res.released;
  }

  private async adminCall<Res>(addr: string, method: string, request: unknown, timeoutMs: number): Promise<Res> {
    const admin = makeClient('Admin', addr, this.security);
    try {
      return await call<Res>(admin, method, request, timeoutMs);
    } catch (err) {
      throw fromGrpcError(err);
    } finally {
      admin.close();
    }
  }

  /**
   * Flushes memtables to SSTs: every region led anywhere, or the regions of one table. Returns
   * regions flushed. Each Flush waits up to 70 s, as barrierFreeze's does, whatever the deadline.
   */
  async flush(table?: string): Promise<number> {
    const viaAdmin = async (addr: string, regionId: string) => {
      const admin = makeClient('Admin', addr, this.security);
      try {
        return (await call<FlushResponse__Output>(admin, 'Flush', { region_id: regionId }, 70_000)).regions;
      } finally {
        admin.close();
      }
    };
    let flushed = 0;
    if (table) {
      const { routes } = await this.describe(table, true);
      for (const regionId of routes.keys()) flushed += await this.withRegion(table, regionId, 'flush', (addr) => viaAdmin(addr, regionId));
      return flushed;
    }
    const nodes = await this.listNodes();
    for (const n of nodes.nodes) {
      if (n.state !== 'alive') continue;
      try {
        flushed += await viaAdmin(n.addr, '');
      } catch (err) {
        throw fromGrpcError(err);
      }
    }
    return flushed;
  }

  /** Disaster recovery of a table from the object store (see `regiondb recover`). */
  async recoverTable(table: string, force = false): Promise<RecoveredRegion__Output[]> {
    try {
      const res = await this.meta.call<RecoverTableResponse__Output>('RecoverTable', { table, force }, 120_000, { idempotent: false });
      this.tables.delete(table);
      return res.regions;
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  /** Starts an operator procedure on the metasrv (transfer-leader, balance-leaders, drain-node). */
  /**
   * Adds a metasrv to the metasrv group (docs/metasrv-ha.md): its address is committed, it joins
   * as a learner, catches up and is promoted. Not idempotent in transit: an unknown outcome is
   * reported as such (call again: adding a voter already present at that address is a no-op).
   */
  async addMetaMember(id: number, addr: string): Promise<MetaGroupInfo__Output> {
    try {
      const res = await this.meta.call<AddMetaMemberResponse__Output>('AddMetaMember', { id: String(id), addr }, Math.max(this.deadlineMs, 40_000), { idempotent: false });
      return res.group!;
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  /** Removes a metasrv from the metasrv group; stop its process afterwards. */
  async removeMetaMember(id: number): Promise<MetaGroupInfo__Output> {
    try {
      const res = await this.meta.call<RemoveMetaMemberResponse__Output>('RemoveMetaMember', { id: String(id) }, this.deadlineMs, { idempotent: false });
      return res.group!;
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  async startProcedure(kind: string, options: { regionId?: string; nodeId?: number } = {}): Promise<string> {
    try {
      const res = await this.meta.call<StartProcedureResponse__Output>(
        'StartProcedure',
        { kind, region_id: options.regionId ?? '', node_id: String(options.nodeId ?? 0) },
        this.attemptTimeoutMs,
        { idempotent: false },
      );
      return res.id;
    } catch (err) {
      throw fromGrpcError(err);
    }
  }

  // ─── Retry core ─────────────────────────────────────────────────────────────────────────────

  /**
   * Runs `attempt` against the region's leader until it succeeds, a non-retriable error occurs,
   * or the deadline passes. NOT_LEADER/UNAVAILABLE move to the hinted leader, or the next peer.
   * `deadline` (monotonic ms): the call's, when it started before this loop (deduplicated()).
   */
  private async withRegion<T>(
    table: string,
    regionId: string,
    what: string,
    attempt: (addr: string, remainingMs: number) => Promise<T>,
    deadline = this.now() + this.deadlineMs,
  ): Promise<T> {
    let peerCursor = 0;
    const mutates = what === 'write' || what === 'delete';
    /** An earlier attempt of this write whose outcome is unknown (it may have been applied). */
    let maybeApplied: RegionDbError | undefined;
    /** The route and address of the current attempt; unset while the route is looked up (its errors are final: nothing was sent). */
    let target: { route: Route; addr: string } | undefined;
    const trace = this.options.trace;
    return this.withBackoff(
      async (remainingMs) => {
        target = undefined;
        const startedMs = this.now();
        const info = await this.describe(table);
        // describe() waits only for a table not cached (its routes dropped meanwhile, or a call
        // that did not describe it first), within the lookup's own deadline: that wait comes out
        // of this call's. With nothing left, nothing is sent (as withBackoff starts no attempt).
        const leftMs = remainingMs - (this.now() - startedMs);
        if (leftMs <= 0) {
          throw new RegionDbError(
            ErrorCode.DeadlineExceeded,
            `${what} on region ${regionId}: the deadline passed while the routes of table ${table} were looked up; nothing was sent by this attempt`,
          );
        }
        // In the background: this attempt goes where it would have gone (a metasrv that does not
        // answer must not delay it); later ones use what the lookup learned.
        this.maybeRefreshRoutes(table, info, info.routes.get(regionId)?.leaderAddr === undefined);
        const route = info.routes.get(regionId);
        if (!route) throw new RegionDbError(ErrorCode.NotFound, `region ${regionId} of table ${table} not found`);
        const addr = route.leaderAddr && !this.isDown(route.leaderAddr) ? route.leaderAddr : this.nextPeer(route, peerCursor++);
        target = { route, addr };
        return trace ? this.traced(trace, what, regionId, addr, () => attempt(addr, leftMs)) : attempt(addr, leftMs);
      },
      async (e, err) => {
        if (!target) {
          // This attempt failed before it sent anything (its route lookup, or a route without the
          // region): final. An earlier attempt of the same write may still have been applied.
          if (mutates && maybeApplied) throw this.outcomeUnknown(what, regionId, maybeApplied, e);
          throw err;
        }
        const { route, addr } = target;
        const retriable =
          e.code === ErrorCode.NotLeader ||
          e.code === ErrorCode.Unavailable ||
          e.code === ErrorCode.ProposalDropped ||
          e.code === ErrorCode.DeadlineExceeded ||
          e.code === ErrorCode.ResourceExhausted; // backpressure: the region is flushing
        if (!retriable) {
          // The table this client described was dropped (a drop fence refused the request, not
          // applied): describe it afresh next time — it may have been re-created under a new id.
          if (e.details['droppedTableId'] !== undefined) this.tables.delete(table);
          // A later attempt's definite refusal (say NOT_FOUND: the replica closed) says nothing
          // about an earlier attempt that may have committed: the outcome stays unknown.
          // (CONDITION_FAILED is the recorded answer of this very request id; REQUEST_TOO_OLD
          // already means unknown, and carries the floor deduplicated() needs.)
          const ownAnswer = e.code === ErrorCode.ConditionFailed || e.code === ErrorCode.RequestTooOld;
          if (mutates && maybeApplied && !ownAnswer) throw this.outcomeUnknown(what, regionId, maybeApplied, e);
          throw e;
        }
        if (mutates && (e.code === ErrorCode.Unavailable || e.code === ErrorCode.DeadlineExceeded)) maybeApplied ??= e;
        // A node we could not reach is avoided for a while, even when other replicas still name
        // it as the leader: they have not noticed yet. Only when this call failed in transit (a
        // status no regiondb handler made): a node that answered UNAVAILABLE is up — its own
        // forward to a dead leader failed, say — and avoiding it would send every region's
        // attempts elsewhere for DOWN_AVOID_MS (docs/clients.md, "Which node is avoided").
        if (e.code === ErrorCode.Unavailable && failedInTransit(e)) this.markDown(addr);
        const hint = e.details['leaderAddr'];
        if (e.code === ErrorCode.ResourceExhausted) route.leaderAddr = addr; // right node, busy: wait and retry it
        else route.leaderAddr = hint && hint !== addr && !this.isDown(hint) ? hint : undefined;
        if (route.leaderAddr && e.code !== ErrorCode.ResourceExhausted) return 'now'; // a fresh hint: follow it at once
        // No usable hint: try the next peer, and once per pass over the peers ask the metasrv for
        // newer routes — in the background, as maybeRefreshRoutes does. Awaited here, the lookup
        // held this retry: after a node leading hundreds of regions died, every writer waited on
        // the one lookup in flight (the metasrv busy with the failover, and still naming the dead
        // leader until the survivors' heartbeats) while the survivors already served the regions
        // (docs/performance.md, "Failover at 1,000 regions: the client's part").
        if (peerCursor % route.peers.length === 0) this.refreshRoutes(table);
        return 'later';
      },
      (last) =>
        mutates && !maybeApplied
          ? // Every attempt was refused before it could be proposed (no leader, backpressure): the
            // write certainly did not apply, and saying so is more useful than "unknown".
            new RegionDbError(
              last.code === ErrorCode.ResourceExhausted ? ErrorCode.ResourceExhausted : ErrorCode.Unavailable,
              `${what} on region ${regionId} was refused by every attempt for ${this.deadlineMs} ms and was not applied (last error: ${last.message})`,
              { cause: last, details: { notApplied: 'true' } },
            )
          : new RegionDbError(
              ErrorCode.DeadlineExceeded,
              `${what} on region ${regionId} did not complete within ${this.deadlineMs} ms; for a write the outcome is unknown (last error: ${last.message})`,
              { cause: last },
            ),
      trace && ((ms) => trace({ kind: 'backoff', what, regionId, startMs: Date.now(), ms })),
      deadline,
    );
  }

  /** One attempt of withRegion, reported to the trace hook (ClientOptions.trace) as it settles. */
  private async traced<T>(trace: (event: ClientTraceEvent) => void, what: string, regionId: string, addr: string, attempt: () => Promise<T>): Promise<T> {
    const startMs = Date.now();
    try {
      const res = await attempt();
      trace({ kind: 'attempt', what, regionId, addr, startMs, durationMs: Date.now() - startMs });
      return res;
    } catch (err) {
      const e = fromGrpcError(err);
      const hint = e.details['leaderAddr'];
      trace({ kind: 'attempt', what, regionId, addr, startMs, durationMs: Date.now() - startMs, code: e.code, message: e.message, ...(hint ? { hint } : {}) });
      throw err;
    }
  }

  /**
   * The client's one retry loop: runs `attempt` until it succeeds or `onError` throws. After a
   * failure `onError` says whether to retry at once (a fresh leader hint: the backoff restarts)
   * or after the backoff, which doubles from BACKOFF_MIN_MS to BACKOFF_MAX_MS; a retry that would
   * start past this client's deadline fails instead with `expired(last error)`. `onError` gets the
   * error as a RegionDbError and as thrown.
   *
   * The deadline bounds the whole call: each attempt gets `remainingMs`, what is left of the
   * deadline as it starts (the first, all of it), and caps its own timeout with it (attemptMs()),
   * so a retry started just before the deadline ends near it, not a full attempt timeout past
   * it. An attempt so cut short fails as any timed-out attempt does: DEADLINE_EXCEEDED, an
   * unknown outcome for a write that was sent. A retry with less than RETRY_MIN_MS left is not
   * started: the call ends with `expired(last error)`.
   */
  private async withBackoff<T>(
    attempt: (remainingMs: number) => Promise<T>,
    onError: (e: RegionDbError, thrown: unknown) => Promise<'now' | 'later'> | 'now' | 'later',
    expired: (last: RegionDbError) => RegionDbError,
    /** Told of every backoff sleep as it starts (ClientOptions.trace). */
    sleeping?: (ms: number) => void,
    /** Monotonic (this.now()): the operation's own budget, from its start. */
    deadline = this.now() + this.deadlineMs,
  ): Promise<T> {
    let backoffMs = BACKOFF_MIN_MS;
    for (let last: RegionDbError | undefined; ; ) {
      const remainingMs = deadline - this.now();
      // Too little left (a refusal that came late, a backoff timer that fired late): no retry is started, so none is sent.
      if (last && remainingMs < RETRY_MIN_MS) throw expired(last);
      try {
        return await attempt(remainingMs);
      } catch (err) {
        const e = fromGrpcError(err);
        last = e;
        if ((await onError(e, err)) === 'now') {
          // Bounded too (the check above): two replicas each naming the other as leader must not loop forever.
          backoffMs = BACKOFF_MIN_MS;
          continue;
        }
        if (this.now() + backoffMs + RETRY_MIN_MS > deadline) throw expired(e);
      }
      sleeping?.(backoffMs);
      await new Promise<void>((r) => this.scheduler.setTimeout(r, backoffMs));
      backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
    }
  }

  private outcomeUnknown(what: string, regionId: string, earlier: RegionDbError, last: RegionDbError): RegionDbError {
    return new RegionDbError(
      ErrorCode.Unavailable,
      `${what} on region ${regionId}: the outcome is unknown — an earlier attempt may have been applied (${earlier.code}: ${earlier.message}); the last attempt was refused (${last.code}: ${last.message})`,
      { cause: last, details: { outcome: 'unknown' } },
    );
  }

  /**
   * Waits for one operation per region. When a multi-region operation fails in some regions,
   * the others may have applied: the error says so region by region (a caller must not read it
   * as "nothing happened"). A single-region operation fails with its own error.
   */
  private async perRegion<T>(what: string, operations: ReadonlyMap<string, Promise<T>>): Promise<T[]> {
    const settled = await Promise.allSettled(operations.values());
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ regionId: [...operations.keys()][i]!, err: s.reason as unknown }] : []));
    if (failures.length === 0) return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
    if (settled.length === 1) throw failures[0]!.err;
    const regionIds = [...operations.keys()];
    const applied = regionIds.filter((_, i) => settled[i]!.status === 'fulfilled');
    const describe = (err: unknown) => (isRegionDbError(err) ? `${err.code}: ${err.message}` : String(err));
    const first = failures[0]!.err;
    return Promise.reject(
      new RegionDbError(
        isRegionDbError(first) ? first.code : ErrorCode.Internal,
        `${what} across ${regionIds.length} regions partly failed: applied in ${applied.length ? applied.join(', ') : 'none'}; ${failures.map((f) => `region ${f.regionId}: ${describe(f.err)}`).join('; ')}`,
        { cause: first, details: { partial: 'true', appliedRegions: applied.join(','), failedRegions: failures.map((f) => f.regionId).join(',') } },
      ),
    );
  }

  private readonly downUntil = new Map<string, number>();

  private markDown(addr: string): void {
    this.downUntil.set(addr, this.now() + DOWN_AVOID_MS);
  }

  private isDown(addr: string): boolean {
    const until = this.downUntil.get(addr);
    if (until === undefined) return false;
    if (this.now() < until) return true;
    this.downUntil.delete(addr);
    return false;
  }

  /** Fetches newer routes in the background when `info` is old (ROUTES_REFRESH_MS), or names no leader for the region at hand. */
  private maybeRefreshRoutes(table: string, info: TableRoutes, leaderless: boolean): void {
    const ageMs = this.now() - info.fetchedMs;
    if (ageMs < (leaderless ? LEADERLESS_ROUTES_REFRESH_MS : ROUTES_REFRESH_MS)) return;
    this.refreshRoutes(table, info);
  }

  /**
   * Looks the table's routes up again in the background, unless a lookup of these routes is in
   * flight already (at most one per table at a time, as when the retry loop awaited it; the
   * lookup itself is shared with describe() callers). Attempts meanwhile go where the routes they
   * have send them; later ones use what the lookup learned.
   */
  private refreshRoutes(table: string, info = this.tables.get(table)): void {
    if (!info || info.refreshing) return;
    info.refreshing = true;
    const trace = this.options.trace;
    const started = trace ? Date.now() : 0;
    // Safe to drop a failure: describe() keeps the routes it has when the metasrv does not answer.
    void this.describe(table, true)
      .then(
        () => trace?.({ kind: 'routes', table, startMs: started, durationMs: Date.now() - started, ok: true }),
        () => trace?.({ kind: 'routes', table, startMs: started, durationMs: Date.now() - started, ok: false }),
      )
      .finally(() => {
        info.refreshing = false;
        info.fetchedMs = this.now(); // a failed lookup waits as long as a successful one
      });
  }

  /** The next replica to try, skipping ones recently unreachable (unless all are). */
  private nextPeer(route: Route, cursor: number): string {
    const n = route.peers.length;
    for (let i = 0; i < n; i++) {
      const addr = route.peers[(cursor + i) % n]!.addr;
      if (!this.isDown(addr)) return addr;
    }
    return route.peers[cursor % n]!.addr;
  }

  /**
   * Runs a read against one given node, retrying while it is unreachable (restarting, or the
   * channel still in reconnect backoff) or its regions have no leader yet, until the deadline.
   */
  private async withNode<T>(addr: string, what: string, attempt: (remainingMs: number) => Promise<T>, idempotent = false): Promise<T> {
    return this.withBackoff(
      attempt,
      (e) => {
        const transient =
          e.code === ErrorCode.Unavailable || e.code === ErrorCode.NotLeader || e.code === ErrorCode.ProposalDropped || (idempotent && e.code === ErrorCode.DeadlineExceeded);
        if (!transient) throw e;
        return 'later';
      },
      (last) => new RegionDbError(ErrorCode.Unavailable, `${what} via ${addr}: node unreachable for ${this.deadlineMs} ms (${last.message})`, { cause: last }),
    );
  }

  /**
   * As withNode, for a call the caller sent to a node it chose (`scan(table, options, addr)`):
   * a NOT_LEADER naming the leader's address is followed at once, as withRegion follows one — at
   * most HINT_HOPS_MAX times per call, so two nodes naming each other cannot bounce it. Any other
   * transient error, or a hint past that bound, retries the chosen node with backoff until the
   * deadline. `attempt` gets the node to call and what is left of the deadline.
   */
  private async withNodeFollowingHints<T>(addr: string, what: string, attempt: (target: string, remainingMs: number) => Promise<T>): Promise<T> {
    let target = addr;
    let hops = 0;
    return this.withBackoff(
      (remainingMs) => attempt(target, remainingMs),
      (e) => {
        const transient = e.code === ErrorCode.Unavailable || e.code === ErrorCode.NotLeader || e.code === ErrorCode.ProposalDropped;
        if (!transient) throw e;
        const hint = e.code === ErrorCode.NotLeader ? e.details['leaderAddr'] : undefined;
        if (hint && hint !== target && hops < HINT_HOPS_MAX) {
          hops++;
          target = hint;
          return 'now';
        }
        target = addr;
        return 'later';
      },
      (last) => new RegionDbError(ErrorCode.Unavailable, `${what} via ${addr}${hops > 0 ? ` (and ${hops} leader hint${hops > 1 ? 's' : ''} followed)` : ''}: not served for ${this.deadlineMs} ms (${last.message})`, { cause: last }),
    );
  }

  // ─── Data ───────────────────────────────────────────────────────────────────────────────────

  private newRequestId(): number {
    this.lastRequestId = Math.max(this.lastRequestId + 1, Date.now() * REQUEST_IDS_PER_MS);
    return this.lastRequestId;
  }

  /**
   * A write or delete under one request id, kept across retries (applied at most once). If the
   * region refuses the id as older than it remembers (REQUEST_TOO_OLD: this client's clock is
   * behind ids the region has forgotten), later ids start above the region's floor; and when the
   * refused attempt was the only one sent, nothing was applied, so the operation runs once more
   * under a new id — within the same deadline as the first. After several attempts the outcome
   * is unknown and the error is the caller's.
   */
  private async deduplicated<T>(table: string, regionId: string, kind: 'write' | 'delete', request: (requestId: string, completedBelow: string) => WriteRequestInput | DeleteRequest): Promise<T> {
    const deadline = this.now() + this.deadlineMs; // one budget for both rounds
    for (let round = 1; ; round++) {
      const id = this.newRequestId();
      const requestId = String(id);
      // Every attempt of this round sends this id, so it stays unfinished until the round ends:
      // whatever the round's outcome, the id is never sent again after (a second round takes a
      // new one), and the regions may forget its answer.
      this.unfinishedRequestIds.add(id);
      const completedBelow = String(this.unfinishedRequestIds.values().next().value ?? id);
      let attempts = 0;
      try {
        return await this.withRegion(table, regionId, kind, (addr, remainingMs) => {
          attempts++;
          return this.operation<T>(addr, kind, request(requestId, completedBelow), this.attemptMs(remainingMs));
        }, deadline);
      } catch (err) {
        if (!isRegionDbError(err, ErrorCode.RequestTooOld)) throw err;
        const floor = Number(err.details['oldestKnownRequestId']);
        if (Number.isSafeInteger(floor)) this.lastRequestId = Math.max(this.lastRequestId, floor);
        if (attempts > 1 || round > 1) throw err;
        // The only attempt was refused: nothing applied. A new id goes out only with time for it (RETRY_MIN_MS).
        if (deadline - this.now() < RETRY_MIN_MS) {
          throw new RegionDbError(ErrorCode.Unavailable, `${kind} on region ${regionId} was refused as too old and not applied; no time was left to send it again under a new id (last error: ${err.message})`, {
            cause: err,
            details: { notApplied: 'true' },
          });
        }
      } finally {
        this.unfinishedRequestIds.delete(id);
      }
    }
  }

  /** Upserts rows (split per region, regions written in parallel). Returns versions per region. */
  async write(table: string, rows: Row[], options: WriteOptions = {}): Promise<{ regionId: string; version: number }[]> {
    const { schema } = await this.describe(table);
    // By region number (a region id string per row was a visible share of a writing client's CPU).
    const byNumber = new Map<number, Row[]>();
    for (const row of rows) {
      const valid = validateRow(schema, row);
      const n = regionNumberOf(schema, valid);
      let list = byNumber.get(n);
      if (!list) byNumber.set(n, (list = []));
      list.push(valid);
    }
    if ((options.expectAbsent || options.expectVersion !== undefined) && rows.length !== 1) {
      throw new RegionDbError(ErrorCode.InvalidArgument, 'conditional writes take exactly one row');
    }
    // Checked here: a version the stream's encoder refused would fail the whole stream, not this write.
    if (options.expectVersion !== undefined && !(Number.isSafeInteger(options.expectVersion) && options.expectVersion >= 0)) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `expectVersion: expected an unsigned integer below 2^53, got ${options.expectVersion}`);
    }
    const operations = new Map(
      [...byNumber].map(([n, regionRows]) => {
        const regionId = makeRegionId(schema.tableId, n);
        // Encoded once, for every attempt, straight from the validated rows (the bytes toProtoRow's objects would make).
        const rows = encodeWriteRows(schema, regionRows);
        const operation = async () => {
          const res = await this.deduplicated<WriteResponse__Output>(table, regionId, 'write', (requestId, completedBelow): WriteRequestInput => ({
            table,
            region_id: regionId,
            rows,
            client_id: this.clientId,
            request_id: requestId,
            completed_below: completedBelow,
            ...(options.expectVersion !== undefined ? { expect_version: String(options.expectVersion) } : {}),
            expect_absent: options.expectAbsent === true,
          }));
          return { regionId, version: Number(res.version) };
        };
        return [regionId, operation()] as const;
      }),
    );
    return this.perRegion('write', operations);
  }

  async delete(table: string, keys: Row[]): Promise<void> {
    const { schema } = await this.describe(table);
    const byRegion = new Map<string, Row[]>();
    for (const key of keys) {
      const valid = validateKey(schema, key);
      const regionId = makeRegionId(schema.tableId, regionNumberOf(schema, valid));
      byRegion.set(regionId, [...(byRegion.get(regionId) ?? []), valid]);
    }
    const operations = new Map(
      [...byRegion].map(([regionId, regionKeys]) => {
        const keys = regionKeys.map((k) => toProtoRow(schema, k));
        const request = (requestId: string, completedBelow: string): DeleteRequest => ({
          table,
          region_id: regionId,
          keys,
          client_id: this.clientId,
          request_id: requestId,
          completed_below: completedBelow,
        });
        return [regionId, this.deduplicated<DeleteResponse__Output>(table, regionId, 'delete', request)];
      }),
    );
    await this.perRegion('delete', operations);
  }

  async get(table: string, key: Row, consistency: 'linearizable' | 'stale' = 'linearizable'): Promise<VersionedRow | null> {
    const { schema } = await this.describe(table);
    const valid = validateKey(schema, key);
    const regionId = makeRegionId(schema.tableId, regionNumberOf(schema, valid));
    const request: GetRequest = { table, key: toProtoRow(schema, valid), consistency: consistency === 'stale' ? 'STALE' : 'LINEARIZABLE' };
    const res = await this.withRegion(table, regionId, 'get', (addr, remainingMs) => this.operation<GetResponse__Output>(addr, 'get', request, this.attemptMs(remainingMs)));
    return res.found ? { row: fromProtoRow(res.row, 'row'), version: Number(res.version) } : null;
  }

  /**
   * Scans a table (every region), or one region. With `addr`, each region's scan is sent to that
   * node, following a NOT_LEADER's leader hint as the other calls do (withNodeFollowingHints);
   * each attempt collects the region's rows afresh, so a retried region is never counted twice.
   */
  async scan(table: string, options: ScanOptions = {}, addr?: string): Promise<VersionedRow[]> {
    const { schema } = await this.describe(table);
    const request = (regionId: string) => ({
      table,
      region_id: regionId,
      ...(options.startMs !== undefined ? { start_ms: String(options.startMs) } : {}),
      ...(options.endMs !== undefined ? { end_ms: String(options.endMs) } : {}),
      tag_equals: Object.fromEntries(
        Object.entries(options.tagEquals ?? {}).map(([k, v]) => [k, toProtoValue(v, schema.columns.find((c) => c.name === k)?.type ?? 'string')]),
      ),
      limit: String(options.limit ?? 0),
      consistency: options.consistency === 'stale' ? ('STALE' as const) : ('LINEARIZABLE' as const),
    });
    // A scan attempt may stream for the whole deadline (no attempt timeout), but never past it.
    const streamScan = async (target: string, req: ScanRequest, remainingMs: number): Promise<VersionedRow[]> => {
      const rows: VersionedRow[] = [];
      const client = this.conn(target) as unknown as DatabaseClient;
      try {
        for await (const chunk of client.Scan(req, { deadline: Date.now() + this.attemptMs(remainingMs, this.deadlineMs) }) as AsyncIterable<ScanResponse__Output>) {
          chunk.rows.forEach((r, i) => {
            rows.push({ row: fromProtoRow(r, 'row'), version: Number(chunk.versions[i]) });
          });
        }
      } catch (err) {
        throw fromGrpcError(err);
      }
      return rows;
    };
    // Every region (each already in key order, each cut to the limit), then one merge in
    // primary-key order, as a whole-table Scan sent to a datanode answers: `limit` applies to the
    // table's key order, not to whichever region comes first.
    const regions = Array.from({ length: schema.regionCount }, (_, n) => makeRegionId(schema.tableId, n));
    const perRegion = await Promise.all(
      regions.map((regionId) =>
        addr
          ? this.withNodeFollowingHints(addr, 'scan', (target, remainingMs) => streamScan(target, request(regionId), remainingMs))
          : this.withRegion(table, regionId, 'scan', (target, remainingMs) => streamScan(target, request(regionId), remainingMs)),
      ),
    );
    const keyed: { key: Uint8Array; row: VersionedRow }[] = [];
    for (const rows of perRegion) for (const row of rows) keyed.push({ key: encodePrimaryKey(schema, row.row), row }); // (a spread of a large region would overflow the stack)
    keyed.sort((a, b) => compareBytes(a.key, b.key));
    const out = keyed.map((k) => k.row);
    return options.limit ? out.slice(0, options.limit) : out;
  }
}

export { isRegionDbError };
