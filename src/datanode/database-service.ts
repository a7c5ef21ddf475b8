// The client-facing Database service of a datanode. Writes go to the region leader's raft
// group; reads use ReadIndex (linearizable) on any replica, or the local state (stale). A
// Write/Delete/Get/Scan go through the Router (router.ts), which splits rows by region and
// forwards what this node does not lead; the methods here serve one region on this node: a
// region it cannot serve fails with NOT_LEADER + the leader's address (UNAVAILABLE +
// `regiondb-leader-addr`), and scans of regions hosted elsewhere are forwarded.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { SingleFlight } from '../common/single-flight.js';
import { limits } from '../common/limits.js';
import {
  type ApplyResult,
  type RegionState,
  type Row,
  type TableSchema,
  checkValue,
  encodeCommand,
  makeRegionId,
  parseRegionId,
  regionNumberOf,
  validateKey,
  validateRow,
} from '../engine/index.js';
import { i64, str, u64 } from '../rpc/proto.js';
import { makeClient } from '../rpc/server.js';
import { FORWARDED_BY_KEY, callContext } from '../rpc/auth.js';
import { MALFORMED, batchOperationTimeoutMs, callCancelled, failStream, fromGrpcError, observeOperation, serverStream, toBatchError, toServiceError, unary, underServerDeadline } from '../rpc/status.js';
import type { BatchRequestObject } from '../rpc/batch-wire.js';
import type {
  CreateTableResponse__Output,
  DatabaseHandlers,
  DeleteResponse,
  DropTableResponse__Output, GetResponse, GetRoutesResponse__Output, RegionRoute__Output, WriteResponse } from '../rpc/generated/index.js';
import { type ProtoRow, fromProtoRow, fromProtoSchema, fromProtoValue, toProtoRow } from '../rpc/values.js';
import type { DatabaseHost } from './database-host.js';
import { type CallInfo, type CheckedRows, type DeleteRequest, type GetRequest, Router, type ScanChunk, type ScanRequest, type WriteRequest, SCAN_NARROWER, routerWallClock } from './router.js';
import type { TimedClock } from '../common/clock.js';

interface RouteInfo {
  schema: TableSchema;
  routes: RegionRoute__Output[];
  fetchedAtMs: number;
}

const ROUTE_CACHE_MS = 2000;
/** Dropped table ids a node remembers (schemaOf); older ones are forgotten (their replicas are long closed). */
const DROPPED_IDS_MAX = 1024;
/** Longest a forwarded DDL call waits for the metasrv (a leader change in a metasrv group takes about a second). */
const DDL_FORWARD_TIMEOUT_MS = 10_000;
/** Time kept, before the caller's deadline, to send the caller this node's answer. */
const DDL_FORWARD_ANSWER_MARGIN_MS = 250;

/** The longest a forwarded scan of one region may run (the caller's deadline may cut it shorter). */
const FORWARDED_SCAN_MS = 30_000;

export class DatabaseService {
  private readonly routeCache = new Map<string, RouteInfo>();
  /** Route lookups in flight, by table (routes() shares them). */
  private readonly routeLookups = new SingleFlight<string, RouteInfo>();

  private readonly router: Router;

  /**
   * `clock`: for tests, a clock the Batch operations' deadlines (read time + timeout_ms, and the
   * answer when it passes) and the Router run on; its time line must be the Router's (ms since
   * the epoch in production, routerWallClock). Without it, wall time and the real loop's timers.
   */
  constructor(
    private readonly dn: DatabaseHost,
    private readonly clock?: TimedClock,
  ) {
    this.router = new Router({
      nodeId: dn.nodeId,
      credentials: dn.peerCredentials,
      schemaOf: async (table, regionId) => this.schemaOfNamedRegion(await this.schemaOf(table), table, regionId),
      tableDropped: (tableId) => this.tableDropped(tableId),
      droppedRegionError: (table, regionId) => this.droppedRegionError(table, regionId, 'write'),
      leads: (regionId) => dn.regionServer.replica(regionId)?.isLeader() === true && !dn.regionServer.failure(regionId),
      leaderAddr: async (table, regionId, fresh) => {
        // This node's replica knows its group's leader as soon as it hears from it; the routes
        // learn it from that leader's next heartbeat to the metasrv (up to an interval later).
        const known = dn.regionServer.replica(regionId)?.leaderNodeId();
        const addr = known === undefined || known === dn.nodeId ? undefined : dn.addressOf(known);
        if (addr) return addr;
        if (fresh) await this.routes(table, true).catch(() => undefined); // refreshes the cache redirect() reads
        return (await this.redirect(table, regionId)).details['leaderAddr'];
      },
      leaderChange: (regionId) => this.leaderChange(regionId),
      write: (req, checked) => this.write(req, checked),
      delete: (req, checked) => this.delete(req, checked),
      get: (req) => this.get(req),
      scanRegion: (req, write, info) => this.scan(req, write, info),
      internalError: (err, regionId) => dn.log.error({ err, regionId }, 'internal error in a routed part (answered INTERNAL)'),
    }, clock ?? routerWallClock);
  }

  close(): void {
    this.router.close();
    this.noteLeaderChange();
  }

  /** Router parts waiting out a backoff, by region: woken when the region's replica here learns of a leader. */
  private readonly leaderWaiters = new Map<string, Set<() => void>>();

  private leaderChange(regionId: string): { readonly changed: Promise<void>; cancel(): void } {
    let wake!: () => void;
    const changed = new Promise<void>((resolve) => (wake = resolve));
    let waiters = this.leaderWaiters.get(regionId);
    if (!waiters) this.leaderWaiters.set(regionId, (waiters = new Set()));
    waiters.add(wake);
    return {
      changed,
      cancel: () => {
        const set = this.leaderWaiters.get(regionId);
        if (!set) return;
        set.delete(wake);
        if (set.size === 0) this.leaderWaiters.delete(regionId);
      },
    };
  }

  /** The replica of `regionId` here learned of a leader (the datanode's role hook); no region: every waiter (closing). */
  noteLeaderChange(regionId?: string): void {
    const regions = regionId === undefined ? [...this.leaderWaiters.keys()] : [regionId];
    for (const id of regions) {
      const waiters = this.leaderWaiters.get(id);
      if (!waiters) continue;
      this.leaderWaiters.delete(id);
      for (const wake of waiters) wake();
    }
  }

  implementation(): DatabaseHandlers {
    const log = this.dn.log;
    return {
      CreateTable: unary((req, call) => this.forwardDdl<CreateTableResponse__Output>('CreateTable', req, call.getDeadline()), log),
      DropTable: unary((req, call) => this.forwardDdl<DropTableResponse__Output>('DropTable', req, call.getDeadline()), log),
      DescribeTable: unary(async (req) => {
        // Its own lookup, never one in flight: a describe right after CreateTable sees the table.
        const name = str(req.name, 'name', limits.tableNameBytesMax);
        const info = await this.lookUpRoutes(name, this.routeCache.get(name));
        return { table: this.dn.schemaProto(info.schema), routes: info.routes };
      }, log),
      Write: unary((req, call) => this.router.write(req, callInfo(call)), log),
      Delete: unary((req, call) => this.router.delete(req, callInfo(call)), log),
      Get: unary((req, call) => this.router.get(req, callInfo(call)), log),
      Scan: serverStream((req, write, call, cancelled) => this.router.scan(req, write, { ...callInfo(call), cancelled }), log),
      Batch: (call: grpc.ServerDuplexStream<unknown, unknown>) => this.batch(call),
    };
  }

  /**
   * Database.Batch: Write/Delete/Get multiplexed over one stream (proto: BatchRequest). Each
   * operation runs exactly as its unary method does, concurrently with the others; answers go
   * out as they complete, matched by id. Per-operation server deadline and metrics as for
   * unary calls; at most limits.batchStreamInFlightMax operations in flight per stream.
   *
   * Deadline: an operation carrying timeout_ms runs, from the moment it is read here, as a unary
   * call with that deadline does: the router sees it as the caller's deadline (a part forwarded
   * for a region without a leader stops retrying by it), and when it passes the operation is
   * answered DEADLINE_EXCEEDED (outcome unknown) — never left unanswered. Without timeout_ms,
   * the server's limit alone, as before.
   */
  private batch(call: grpc.ServerDuplexStream<unknown, unknown>): void {
    const log = this.dn.log;
    const context = callContext.getStore(); // the guard's (forwarded authorization); 'data' events run outside it
    const forwarded = call.metadata.get(FORWARDED_BY_KEY).length > 0;
    let inFlight = 0;
    let ended = false;
    let broken = false;
    const respond = (message: unknown) => {
      if (!broken && !call.cancelled) call.write(message);
    };
    const endIfDone = () => {
      if (ended && inFlight === 0 && !broken) call.end();
    };
    call.on('data', (raw: unknown) => {
      if (broken) return;
      if (raw && typeof raw === 'object' && MALFORMED in raw) {
        broken = true;
        // As every status: with its regiondb-error-code (database.proto, docs/clients.md).
        failStream(call, toServiceError(new RegionDbError(ErrorCode.InvalidArgument, `malformed request: ${(raw as Record<symbol, string>)[MALFORMED]}`)));
        return;
      }
      const req = raw as BatchRequestObject;
      const timeoutMs = batchOperationTimeoutMs(req.timeout_ms);
      const deadlineMs = (this.clock ?? routerWallClock).nowMs() + timeoutMs; // from when it was read (timeout_ms is relative: no clock skew)
      const id = req.id;
      const kind = req.request;
      const method = kind === 'write' ? 'Write' : kind === 'delete' ? 'Delete' : kind === 'get' ? 'Get' : 'Batch';
      const finished = observeOperation('regiondb.v1.Database', method);
      const fail = (err: unknown) => {
        const error = toBatchError(err, log);
        finished(error.grpc_code);
        respond({ id, error });
      };
      if (inFlight >= limits.batchStreamInFlightMax) {
        fail(new RegionDbError(ErrorCode.ResourceExhausted, `more than ${limits.batchStreamInFlightMax} operations in flight on one Batch stream; retry`));
        return;
      }
      const run = async (): Promise<unknown> => {
        await context?.reauthorize?.(kind === 'get' ? 'read' : 'write'); // a users-file reload applies to open streams too
        const info = { forwarded, deadlineMs };
        if (kind === 'write') return this.router.write(req.write!, info);
        if (kind === 'delete') return this.router.delete(req.delete!, info);
        if (kind === 'get') return this.router.get(req.get!, info);
        throw new RegionDbError(ErrorCode.InvalidArgument, 'BatchRequest carries no operation (write, delete or get)');
      };
      inFlight++;
      void underServerDeadline(() => (context ? callContext.run(context, run) : run()), {
        ok: (res) => {
          finished(grpc.status.OK);
          respond({ id, [kind!]: res });
        },
        fail,
      }, timeoutMs, this.clock).finally(() => {
        inFlight--;
        endIfDone();
      });
    });
    call.on('end', () => {
      ended = true;
      endIfDone();
    });
    call.on('error', () => {
      broken = true; // the client went away; operations still running complete unanswered
    });
  }

  private async forwardDdl<Res>(method: 'CreateTable' | 'DropTable', req: unknown, callerDeadline: grpc.Deadline): Promise<Res> {
    // A CreateTable or DropTable with a request token is safe to send again (to another metasrv,
    // after a dropped connection): the metasrv answers a retry of one that did create (drop) the
    // table from what that one did.
    const token = (req as { request_token?: string }).request_token;
    // The forward ends before the caller's deadline (gRPC deadlines are wall times), so the caller
    // hears this node's answer — "the metasrv is unreachable" — not its own timeout.
    const deadlineMs = callerDeadline instanceof Date ? callerDeadline.getTime() : callerDeadline;
    const timeoutMs = Math.max(1, Math.min(DDL_FORWARD_TIMEOUT_MS, deadlineMs - Date.now() - DDL_FORWARD_ANSWER_MARGIN_MS));
    try {
      return await this.dn.metaCall<Res>(method, req, { idempotent: token !== undefined && token !== '', timeoutMs });
    } catch (err) {
      const e = fromGrpcError(err);
      // An attempt that may have run keeps its code and says so (never "unreachable": that reads as "not done").
      if (e.details['outcome'] === 'unknown') throw e;
      if (e.code === ErrorCode.Unavailable) {
        throw new RegionDbError(ErrorCode.Unavailable, `DDL needs the metasrv, which is unreachable (${e.message}); reads and writes still work`, { cause: e });
      }
      throw e;
    }
  }

  /** Schema and routes of a table: from a local replica if any, else from the metasrv. */
  private async routes(table: string, fresh = false): Promise<RouteInfo> {
    const cached = this.routeCache.get(table);
    if (cached && !fresh && performance.now() - cached.fetchedAtMs < ROUTE_CACHE_MS) return cached;
    // One lookup per table at a time (as the client library's describe()): when a node leading
    // hundreds of regions dies, every request redirected or forwarded for them asks at once, and
    // each GetRoutes answer holds the whole table; they share one (bench-scale's storm profile).
    return this.routeLookups.run(table, () => this.lookUpRoutes(table, cached));
  }

  private async lookUpRoutes(table: string, cached: RouteInfo | undefined): Promise<RouteInfo> {
    try {
      // One pass over the metasrv addresses, as one attempt before: the fallbacks below serve while it is down.
      const res = await this.dn.metaCall<GetRoutesResponse__Output>('GetRoutes', { table }, { timeoutMs: 5000, idempotent: true, singlePass: true });
      const info = { schema: fromProtoSchema(res.table), routes: res.routes, fetchedAtMs: performance.now() }; // monotonic: an age
      this.routeCache.set(table, info);
      return info;
    } catch (err) {
      const e = fromGrpcError(err);
      if (e.code === ErrorCode.NotFound) throw new RegionDbError(ErrorCode.NotFound, `table ${table} does not exist`);
      // Metasrv down: the schema is also in every local replica of the table.
      for (const [regionId, meta] of this.dn.metas) {
        if (meta.schema.name === table && this.usable({ schema: meta.schema, regionId })) {
          return { schema: meta.schema, routes: cached?.routes ?? [], fetchedAtMs: cached?.fetchedAtMs ?? 0 };
        }
      }
      if (cached && !this.droppedTableIds.has(cached.schema.tableId)) return cached;
      throw new RegionDbError(ErrorCode.Unavailable, `cannot resolve table ${table}: metasrv unreachable (${e.message})`);
    }
  }

  /**
   * Table ids this node has seen refused by a drop fence (most recent last, at most
   * DROPPED_IDS_MAX): their local replicas and cached routes no longer resolve the table's name.
   */
  private readonly droppedTableIds = new Set<number>();

  private noteDropped(tableId: number): void {
    if (this.droppedTableIds.has(tableId)) return;
    this.droppedTableIds.add(tableId);
    if (this.droppedTableIds.size > DROPPED_IDS_MAX) this.droppedTableIds.delete(this.droppedTableIds.values().next().value as number);
    for (const [name, info] of this.routeCache) if (info.schema.tableId === tableId) this.routeCache.delete(name);
  }

  /** Whether a local replica's schema may resolve its table's name: not once the table is known dropped here. */
  private usable(meta: { schema: TableSchema; regionId: string }): boolean {
    if (this.droppedTableIds.has(meta.schema.tableId)) return false;
    if (this.dn.regionServer.replica(meta.regionId)?.stateMachine.dropFence === undefined) return true;
    this.noteDropped(meta.schema.tableId); // its cached routes go too: the name is looked up afresh
    return false;
  }

  /**
   * The schema a request is split and read by: a local replica's (no metasrv call), else the
   * routes'. A replica of a table known dropped here is skipped; one whose fence this node has
   * not seen yet may still be chosen, and its region's leader then refuses the operation
   * (tableDroppedError), which the Router answers by resolving the table again (router.ts).
   */
  private async schemaOf(table: string): Promise<TableSchema> {
    for (const [regionId, meta] of this.dn.metas) if (meta.schema.name === table && this.usable({ schema: meta.schema, regionId })) return meta.schema;
    return (await this.routes(table)).schema;
  }

  /** The Router's note that `tableId` refused an operation as dropped (tableDroppedError from another node). */
  tableDropped(tableId: number): void {
    this.noteDropped(tableId);
  }

  /**
   * For a request naming `regionId` that is not a region of the table its name resolves to: the
   * dropped-table refusal (nothing applied) when the region's table is known dropped here or this
   * node's replica of it is fenced — a client whose cached description is stale then forgets it
   * (review finding F5) — else undefined (the caller's INVALID_ARGUMENT).
   */
  droppedRegionError(table: string, regionId: string, what: 'write' | 'read'): RegionDbError | undefined {
    let tableId: number;
    try {
      tableId = parseRegionId(regionId).tableId;
    } catch {
      return undefined; // names no region: the caller's INVALID_ARGUMENT
    }
    const fence = this.dn.regionServer.replica(regionId)?.stateMachine.dropFence;
    if (fence) this.noteDropped(fence.tableId);
    if (fence?.tableId !== tableId && !this.droppedTableIds.has(tableId)) return undefined;
    return tableDroppedError(table, tableId, regionId, what);
  }

  /**
   * The schema to split and encode a request by when it names a region: that region's own
   * table's, when this node hosts a usable replica of it under the same name but resolves the name
   * to another table id — a re-created table's region while this node's other replicas still hold
   * the dropped one (its fence not seen here yet), so the name resolves to the old table and every
   * row looked foreign (INVALID_ARGUMENT, though nothing was wrong with the request). Else `schema`.
   */
  private schemaOfNamedRegion(schema: TableSchema, table: string, regionId: unknown): TableSchema {
    if (typeof regionId !== 'string' || regionId === '') return schema;
    const meta = this.dn.metas.get(regionId);
    if (!meta || meta.schema.name !== table || meta.schema.tableId === schema.tableId) return schema;
    return this.usable({ schema: meta.schema, regionId }) ? meta.schema : schema;
  }

  private regionFor(schema: TableSchema, rows: Row[], given: string, table: string): string {
    if (given) {
      if (!rows.every((r) => makeRegionId(schema.tableId, regionNumberOf(schema, r)) === given)) {
        throw this.droppedRegionError(table, given, 'write') ?? new RegionDbError(ErrorCode.InvalidArgument, `some rows do not belong to region ${given}`);
      }
      return given;
    }
    const ids = new Set(rows.map((r) => makeRegionId(schema.tableId, regionNumberOf(schema, r))));
    if (ids.size !== 1) {
      throw new RegionDbError(
        ErrorCode.InvalidArgument,
        `rows span ${ids.size} regions; send one request per region (the regiondb client library splits writes per region)`,
      );
    }
    return [...ids][0]!;
  }

  /**
   * NOT_LEADER pointing at the leader (or another replica) of a region this node does not serve.
   * Never at this node: its routes may still name it (a replica just moved away, or not opened
   * yet, or a leader the catalog has not seen step down), and a hint back here would only send
   * the client round again; with no other replica the error carries no hint.
   */
  private async redirect(table: string, regionId: string): Promise<RegionDbError> {
    const info = await this.routes(table).catch(() => undefined);
    const route = info?.routes.find((r) => r.region_id === regionId);
    if (!route) return new RegionDbError(ErrorCode.NotFound, `region ${regionId} of table ${table} is unknown`);
    const self = String(this.dn.nodeId);
    const others = route.peers.filter((p) => p.node_id !== self);
    const leader = others.find((p) => p.node_id === route.leader_node_id) ?? others[0];
    return new RegionDbError(ErrorCode.NotLeader, `region ${regionId} is not served by node ${this.dn.nodeId}`, {
      details: leader ? { leaderAddr: leader.addr, leaderNodeId: leader.node_id } : {},
    });
  }

  /**
   * Requests for a region whose replica here failed (docs/replica-health.md) get UNAVAILABLE
   * with the reason, and the leader's address when the routes know it (clients follow it).
   */
  private async refuseIfFailed(table: string, regionId: string): Promise<void> {
    const failure = this.dn.regionServer.failure(regionId);
    if (!failure) return;
    const redirect = await this.redirect(table, regionId);
    throw new RegionDbError(
      ErrorCode.Unavailable,
      `the replica of region ${regionId} on node ${this.dn.nodeId} failed and is to be rebuilt from its peers: ${failure.reason}`,
      { details: redirect.code === ErrorCode.NotLeader ? redirect.details : {} },
    );
  }

  /** Adds the leader's address to NOT_LEADER/UNAVAILABLE errors that name a leader node. */
  private withLeaderAddr(err: unknown): unknown {
    if (!isRegionDbError(err) || !err.details['leaderNodeId'] || err.details['leaderAddr']) return err;
    const addr = this.dn.addressOf(Number(err.details['leaderNodeId']));
    if (!addr) return err;
    return new RegionDbError(err.code, err.message, { cause: err.cause, details: { ...err.details, leaderAddr: addr } });
  }

  private async propose(table: string, regionId: string, command: Uint8Array): Promise<ApplyResult> {
    await this.refuseIfFailed(table, regionId);
    if (!this.dn.regionServer.replica(regionId)) throw await this.redirect(table, regionId);
    // A consistent backup's barrier (write-barrier.ts B1): wait out a hold; no await between
    // this check and the proposal below when there is none.
    const held = this.dn.writeBarrier?.wait(regionId);
    if (held) await held;
    const gate = this.dn.clientWriteGate;
    let result: ApplyResult;
    try {
      // Admitted and proposed in one step: the stamp a primary gives is taken as the entry is queued.
      result = await this.dn.regionServer.propose(regionId, gate ? gate.admit(regionId, command) : command);
    } catch (err) {
      throw this.withLeaderAddr(err);
    }
    if (gate && result.status === 'ok') await gate.acknowledge(regionId, result.version);
    return result;
  }

  /** Backpressure: writes wait (RESOURCE_EXHAUSTED, retried by clients) while memtables are over their limits. */
  private checkMemory(regionId: string): void {
    const replica = this.dn.regionServer.replica(regionId);
    if (!replica) return;
    const limits = this.dn.config.engine;
    const regionBytes = replica.stateMachine.memtableBytes();
    if (regionBytes > limits.region_memtable_limit_bytes) {
      this.dn.flusher.request(regionId);
      throw new RegionDbError(
        ErrorCode.ResourceExhausted,
        `region ${regionId} holds ${regionBytes} bytes in memtables (limit ${limits.region_memtable_limit_bytes}); writes resume when its flush completes — retry`,
      );
    }
    const nodeBytes = this.dn.memtableBytes();
    if (nodeBytes > limits.node_memtable_limit_bytes) {
      this.dn.flusher.request(regionId);
      throw new RegionDbError(
        ErrorCode.ResourceExhausted,
        `node ${this.dn.nodeId} holds ${nodeBytes} bytes in memtables (limit ${limits.node_memtable_limit_bytes}); writes resume as flushes complete — retry`,
      );
    }
  }

  private checkResult(result: ApplyResult, identity: { clientId: string; requestId: number }, table: string, regionId: string, conditional = false): { version: string } {
    if (result.status === 'table-dropped') {
      this.noteDropped(result.tableId);
      throw tableDroppedError(table, result.tableId, regionId, conditional ? 'conditional-write' : 'write');
    }
    if (result.status === 'condition-failed') {
      throw new RegionDbError(ErrorCode.ConditionFailed, `condition failed: the row's current version is ${result.currentVersion}`, {
        details: { currentVersion: String(result.currentVersion) },
      });
    }
    const request = `request id ${identity.requestId} of client ${identity.clientId}`;
    if (result.status === 'request-too-old') {
      throw new RegionDbError(
        ErrorCode.RequestTooOld,
        `${request} is older than the region remembers (lowest id it still knows: ${result.oldestKnown}); whether it was applied is unknown — read to find out, send new writes with new ids`,
        { details: { oldestKnownRequestId: String(result.oldestKnown) } },
      );
    }
    if (result.status === 'request-id-reused') {
      throw new RegionDbError(
        ErrorCode.InvalidArgument,
        `${request} already answered a different command; request ids must be unique per client (not applied)`,
      );
    }
    return { version: String(result.version) };
  }

  /**
   * Dedup identity of a write or delete. request_id 0 (or absent) = not deduplicated: every copy
   * applies. A request id without a client id is refused: it asks for a dedup the server could
   * not give it. `completedBelow`: the client's session mark (completed_below, R19 D3), present
   * only for a deduplicated request that sets one; above the request id it counts as the id.
   */
  private clientIdentity(req: { client_id?: string; request_id?: string; completed_below?: string }): { clientId: string; requestId: number; completedBelow?: number } {
    const clientId = str(req.client_id ?? '', 'client_id', 128);
    const requestId = u64(req.request_id ?? '0', 'request_id');
    if (requestId !== 0 && !clientId) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `request_id ${requestId} without a client_id: retries can only be deduplicated per client`);
    }
    if (requestId === 0) return { clientId: '', requestId };
    const completedBelow = Math.min(u64(req.completed_below ?? '0', 'completed_below'), requestId);
    return completedBelow > 0 ? { clientId, requestId, completedBelow } : { clientId, requestId };
  }

  private async write(req: WriteRequest, checked?: CheckedRows): Promise<WriteResponse> {
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    if (!Array.isArray(req.rows) || req.rows.length === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'rows: at least one row is required');
    if (req.rows.length > limits.rowsPerWriteMax) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `rows: ${req.rows.length} rows exceed the limit of ${limits.rowsPerWriteMax} per write`);
    }
    const schema = checked?.schema ?? this.schemaOfNamedRegion(await this.schemaOf(table), table, req.region_id);
    const rows = validatedOnce(schema, req.rows, checked) ?? req.rows.map((r, i) => validateRow(schema, fromProtoRow(r, `rows[${i}]`)));
    const regionId = this.regionFor(schema, rows, str(req.region_id ?? '', 'region_id', 32), table);
    const hasExpectVersion = req._expect_version === 'expect_version';
    if ((hasExpectVersion || req.expect_absent) && rows.length !== 1) {
      throw new RegionDbError(ErrorCode.InvalidArgument, 'expect_version / expect_absent apply to single-row writes only');
    }
    const { clientId, requestId, completedBelow } = this.clientIdentity(req);
    const command = encodeCommand(
      {
        kind: 'write',
        clientId,
        requestId,
        ...(completedBelow !== undefined ? { completedBelow } : {}),
        rows: rows.map((r) => schema.columns.map((c) => r[c.name] ?? null)),
        ...(hasExpectVersion ? { expectVersion: u64(req.expect_version, 'expect_version') } : {}),
        ...(req.expect_absent ? { expectAbsent: true } : {}),
      },
      { keepRows: true }, // the row arrays are this call's own: applied here as they are (decodeCommandForApply)
    );
    if (command.byteLength > limits.writeRequestBytesMax) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `write of ${command.byteLength} bytes exceeds ${limits.writeRequestBytesMax}`);
    }
    this.checkMemory(regionId);
    const { version } = this.checkResult(await this.propose(table, regionId, command), { clientId, requestId }, table, regionId, hasExpectVersion);
    this.dn.nodeMetrics.countRowsWritten(rows.length);
    return { version, rows_written: rows.length };
  }

  private async delete(req: DeleteRequest, checked?: CheckedRows): Promise<DeleteResponse> {
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    if (!Array.isArray(req.keys) || req.keys.length === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'keys: at least one key is required');
    if (req.keys.length > limits.rowsPerWriteMax) throw new RegionDbError(ErrorCode.InvalidArgument, `keys: more than ${limits.rowsPerWriteMax}`);
    const schema = checked?.schema ?? this.schemaOfNamedRegion(await this.schemaOf(table), table, req.region_id);
    const keys = validatedOnce(schema, req.keys, checked) ?? req.keys.map((k, i) => validateKey(schema, fromProtoRow(k, `keys[${i}]`)));
    const regionId = this.regionFor(schema, keys, str(req.region_id ?? '', 'region_id', 32), table);
    const { clientId, requestId, completedBelow } = this.clientIdentity(req);
    const keyColumns = schema.columns.filter((c) => c.semantic !== 'field');
    const command = encodeCommand({
      kind: 'delete',
      clientId,
      requestId,
      ...(completedBelow !== undefined ? { completedBelow } : {}),
      keys: keys.map((k) => keyColumns.map((c) => k[c.name] ?? null)),
    });
    return this.checkResult(await this.propose(table, regionId, command), { clientId, requestId }, table, regionId);
  }

  /** Waits until a read of the region is allowed (ReadIndex unless stale), returns its state. */
  private async readable(table: string, regionId: string, consistency: string | number): Promise<RegionState> {
    await this.refuseIfFailed(table, regionId);
    const replica = this.dn.regionServer.replica(regionId);
    if (!replica) throw await this.redirect(table, regionId);
    // A stale read only from a replica a leader still counts (RegionServer.staleReadGate; a
    // follower quiet past the bound asks its leader first): one removed from its group without
    // learning it — while this node was down, at a restart just before its removal (finding E1),
    // or quiesced through the loss of every message of its removal — would serve arbitrarily old
    // data. Sent on as any read this
    // node cannot serve: NOT_LEADER with the leader's address when the routes know it, which the
    // router forwards there at once and the client library follows (without one, the client tries
    // the region's next replica).
    if (consistency === 'STALE') {
      const refusal = await this.dn.regionServer.staleReadGate(regionId);
      if (refusal !== undefined) {
        const redirect = await this.redirect(table, regionId);
        throw new RegionDbError(ErrorCode.NotLeader, `stale read refused: ${refusal}`, { details: redirect.code === ErrorCode.NotLeader ? redirect.details : {} });
      }
    }
    if (consistency !== 'STALE') {
      try {
        await this.dn.regionServer.readBarrier(regionId);
      } catch (err) {
        throw this.withLeaderAddr(err);
      }
    }
    // The replica may have failed (or been closed) while the read waited.
    const current = this.dn.regionServer.replica(regionId);
    if (!current) {
      await this.refuseIfFailed(table, regionId);
      throw await this.redirect(table, regionId);
    }
    // After the barrier a linearizable read has applied every entry committed before it started,
    // so a fence that committed before DropTable answered is seen here (a stale read sees it
    // once this replica has applied it).
    const fence = current.stateMachine.dropFence;
    if (fence) {
      this.noteDropped(fence.tableId);
      throw tableDroppedError(table, fence.tableId, regionId, 'read');
    }
    return current.stateMachine;
  }

  private async get(req: GetRequest): Promise<GetResponse> {
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    const schema = await this.schemaOf(table);
    const key = validateKey(schema, fromProtoRow(req.key, 'key'));
    const regionId = makeRegionId(schema.tableId, regionNumberOf(schema, key));
    const state = await this.readable(table, regionId, req.consistency);
    const found = await state.get(key);
    return found ? { found: true, row: toProtoRow(schema, found.row), version: String(found.version) } : { found: false, version: '0' };
  }

  private async scan(req: ScanRequest, write: (chunk: ScanChunk) => Promise<void>, info?: CallInfo): Promise<void> {
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    const schema = await this.schemaOf(table);
    const tagEquals: Record<string, string | number | boolean | null> = {};
    for (const [name, v] of Object.entries(req.tag_equals ?? {})) {
      const c = schema.columns.find((col) => col.name === name);
      if (c?.semantic !== 'tag') throw new RegionDbError(ErrorCode.InvalidArgument, `tag_equals: ${name} is not a TAG column of ${table}`);
      // Checked as a written value is (finding Z2): a value of another type (int64_value 5 for a
      // STRING tag "5") equals no stored tag, and answered an empty scan instead of the error.
      tagEquals[name] = checkValue(schema, c, fromProtoValue(v, `tag_equals.${name}`));
    }
    const options = {
      ...(req._start_ms === 'start_ms' ? { startMs: i64(req.start_ms, 'start_ms') } : {}),
      ...(req._end_ms === 'end_ms' ? { endMs: i64(req.end_ms, 'end_ms') } : {}),
      tagEquals,
    };
    const limit = u64(req.limit ?? '0', 'limit');
    const regionsOfTable = Array.from({ length: schema.regionCount }, (_, n) => makeRegionId(schema.tableId, n));
    const given = req.region_id ? str(req.region_id, 'region_id', 32) : '';
    // The table's schema reads the rows: a region of another table (or of a table of this name
    // since dropped) is refused, never served under this table's name.
    if (given && !regionsOfTable.includes(given)) {
      throw this.droppedRegionError(table, given, 'read') ?? new RegionDbError(ErrorCode.InvalidArgument, `region_id ${given} is not a region of table ${table} (table id ${schema.tableId}, ${schema.regionCount} regions); describe the table again`);
    }
    const regionIds = given ? [given] : regionsOfTable;
    let emitted = 0;
    for (const regionId of regionIds) {
      const remaining = limit > 0 ? limit - emitted : 0;
      if (limit > 0 && remaining <= 0) return;
      await this.refuseIfFailed(table, regionId);
      if (!this.dn.regionServer.replica(regionId)) {
        // One hop: a scan a datanode forwarded here for a region this node does not host (its
        // routes were stale) is refused with the leader as this node knows it, never forwarded
        // again — two nodes whose routes name each other would otherwise pass it back and forth.
        if (info?.forwarded) throw await this.redirect(table, regionId);
        emitted += await this.forwardScan(table, regionId, req, remaining, write, info?.deadlineMs, info?.cancelled);
        if (emitted > limits.scanRowsPerRequestMax) throw scanTooLarge();
        continue;
      }
      let state: RegionState;
      try {
        state = await this.readable(table, regionId, req.consistency);
      } catch (err) {
        // A replica here that may not serve the read (a STALE read refused by the gate, a
        // ReadIndex with no leader) sends the scan to the leader, as a Get is sent (router.ts)
        // and as database.proto's Consistency promises (finding Z3: the whole scan failed
        // NOT_LEADER instead). Nothing of this region was written yet; one hop only.
        if (info?.forwarded || !isRegionDbError(err, ErrorCode.NotLeader) || !err.details['leaderAddr']) throw err;
        // To the refusal's own leader first: the routes may name none (never fetched while the
        // metasrv is away), and a lookup's NOT_FOUND would then stand for a NOT_LEADER.
        emitted += await this.forwardScan(table, regionId, req, remaining, write, info?.deadlineMs, info?.cancelled, String(err.details['leaderAddr']));
        if (emitted > limits.scanRowsPerRequestMax) throw scanTooLarge();
        continue;
      }
      let rows: ProtoRow[] = [];
      let versions: string[] = [];
      let messageBytes = 0;
      // The SSTs of the version the scan starts on (it reads that list to the end) stay leased
      // until it ends, and no SST read starts after the deadline: the leader's GC grace is
      // longer than it (sst-gc.ts G2, G4), which is what protects scans on other replicas.
      const expired = this.dn.flusher.scanDeadline();
      const release = this.dn.flusher.leases.acquire(state.ssts.map((s) => s.key));
      try {
        for await (const r of state.scan({ ...options, ...(remaining > 0 ? { limit: remaining } : {}) })) {
          // write() stops a cancelled scan at its next message; this, one that filters out every row.
          if (info?.cancelled?.aborted) throw callCancelled();
          if (emitted >= limits.scanRowsPerRequestMax) throw scanTooLarge();
          rows.push(toProtoRow(schema, r.row));
          versions.push(String(r.version));
          emitted++;
          messageBytes += rowBytes(r.row);
          if (rows.length >= limits.scanRowsPerMessageMax || messageBytes >= limits.scanMessageBytesMax) {
            await write({ rows, versions });
            rows = [];
            versions = [];
            messageBytes = 0;
          }
          if (expired()) throw scanTooLong(this.dn.flusher.scanDeadlineMs);
        }
      } finally {
        release();
      }
      if (rows.length > 0) await write({ rows, versions });
    }
  }

  /**
   * Streams a region hosted elsewhere from a node that hosts it, by the caller's deadline (at most
   * FORWARDED_SCAN_MS from now). Returns rows forwarded.
   *
   * A node with stale routes of its own refuses the forwarded scan with NOT_LEADER rather than
   * forwarding it again (R3). That refusal comes before the node sends anything, so while nothing
   * of this region has been passed on, the scan is sent once more: to the leader fresh routes
   * from the metasrv name, else to the one the refusal names — never to the node that refused.
   * The same for UNAVAILABLE (leftover L11): the node the routes named could not be reached (it
   * died, the leadership moved with it) or could not serve; a scan is a read, so sending it once
   * more elsewhere is safe, and fresh routes name the new leader once the metasrv has it.
   * Once a message has been passed on, a failure is the caller's (a second node would send the
   * region again from its start).
   */
  private async forwardScan(
    table: string,
    regionId: string,
    req: ScanRequest,
    limit: number,
    write: (chunk: ScanChunk) => Promise<void>,
    deadlineMs?: number,
    cancelled?: AbortSignal,
    leaderHint?: string,
  ): Promise<number> {
    let first = leaderHint;
    if (!first) {
      const redirect = await this.redirect(table, regionId);
      first = redirect.details['leaderAddr'];
      if (!first) throw redirect;
    }
    let passedOn = false;
    const passOn = (chunk: ScanChunk) => {
      passedOn = true;
      return write(chunk);
    };
    try {
      return await this.scanFrom(first, regionId, req, limit, passOn, deadlineMs, cancelled);
    } catch (err) {
      if (passedOn || cancelled?.aborted || !(isRegionDbError(err, ErrorCode.NotLeader) || isRegionDbError(err, ErrorCode.Unavailable))) throw err;
      const next = await this.otherScanAddr(table, regionId, first, err);
      if (!next) throw err;
      return await this.scanFrom(next, regionId, req, limit, write, deadlineMs, cancelled);
    }
  }

  /** Where to send again a forwarded scan the node at `refusedBy` refused (or that could not be reached): fresh routes' leader, else the refusal's hint; never `refusedBy`. */
  private async otherScanAddr(table: string, regionId: string, refusedBy: string, refusal: RegionDbError): Promise<string | undefined> {
    await this.routes(table, true).catch(() => undefined); // refreshes the cache redirect() reads
    const fresh = (await this.redirect(table, regionId)).details['leaderAddr'];
    return [fresh, refusal.details['leaderAddr']].find((a) => a !== undefined && a !== '' && a !== refusedBy);
  }

  /**
   * One forwarded scan call to the node at `addr`. The call is cancelled when this one ends for
   * any reason — the caller cancelled (`cancelled`), a write failed — so that node stops too.
   */
  private async scanFrom(
    addr: string,
    regionId: string,
    req: ScanRequest,
    limit: number,
    write: (chunk: ScanChunk) => Promise<void>,
    deadlineMs?: number,
    cancelled?: AbortSignal,
  ): Promise<number> {
    if (cancelled?.aborted) throw callCancelled();
    const client = makeClient('Database', addr, { credentials: this.dn.peerCredentials });
    let forwarded = 0;
    let stream: grpc.ClientReadableStream<ScanChunk> | undefined;
    const cancelUpstream = () => stream?.cancel();
    cancelled?.addEventListener('abort', cancelUpstream);
    try {
      const metadata = new grpc.Metadata();
      metadata.set(FORWARDED_BY_KEY, String(this.dn.nodeId)); // the receiving node checks the caller, not this node
      stream = (client as unknown as { Scan(r: unknown, m: grpc.Metadata, o: unknown): grpc.ClientReadableStream<ScanChunk> }).Scan(
        { ...req, region_id: regionId, limit: String(limit) },
        metadata,
        { deadline: Math.min(deadlineMs ?? Number.POSITIVE_INFINITY, Date.now() + FORWARDED_SCAN_MS) },
      );
      for await (const chunk of stream as AsyncIterable<ScanChunk>) {
        forwarded += chunk.rows.length;
        await write(chunk);
      }
    } catch (err) {
      if (cancelled?.aborted) throw callCancelled();
      throw fromGrpcError(err);
    } finally {
      cancelled?.removeEventListener('abort', cancelUpstream);
      stream?.cancel(); // a no-op once the call has ended; otherwise (a write failed) the other node stops too
      client.close();
    }
    return forwarded;
  }
}

/**
 * NOT_FOUND for an operation on a region whose table was dropped (its drop fence applied):
 * never applied, so a caller may send it again to the table's current incarnation (the Router
 * does once, after resolving the table afresh). The table id travels as a detail.
 */
/**
 * The refusal of an operation by a dropped table's region (its drop fence, docs/ddl.md): NOT_FOUND,
 * not applied, with the table id (`droppedTableId`). `resendAllowed` says whether the request may
 * be sent again as it is, to whatever table the name resolves to afresh — which the router does
 * (Router.afterDrop) and a client may: true for a read and for a write or delete, not for a write
 * carrying expect_version (`conditional-write`, review note F8): the version it names is the
 * dropped table's. The message says the same for humans; no one parses it.
 */
export function tableDroppedError(table: string, tableId: number, regionId: string, what: 'write' | 'conditional-write' | 'read'): RegionDbError {
  const tail =
    what === 'write'
      ? 'this write was not applied; send it again to resolve the table afresh (it may have been re-created under a new id)'
      : what === 'conditional-write'
        ? 'this write was not applied and is not sent to a table re-created under the name: its expect_version is a version of the dropped table, so read the row again and decide'
        : 'read the table again to resolve it afresh';
  return new RegionDbError(ErrorCode.NotFound, `table ${table} (id ${tableId}) was dropped: region ${regionId} refuses it; ${tail}`, {
    details: { droppedTableId: String(tableId), ...(what === 'conditional-write' ? {} : { resendAllowed: 'true' }) },
  });
}

/** The caller's deadline (capped by the server's own) and whether a datanode forwarded the call. */
function callInfo(call: { metadata: grpc.Metadata; getDeadline(): grpc.Deadline }): CallInfo {
  const now = Date.now();
  const given = call.getDeadline();
  const deadline = given instanceof Date ? given.getTime() : Number(given);
  return {
    forwarded: call.metadata.get(FORWARDED_BY_KEY).length > 0,
    deadlineMs: Math.min(Number.isFinite(deadline) ? deadline : Number.POSITIVE_INFINITY, now + limits.serverCallMsMax),
  };
}

/** Value bytes of a row: what a scan message grows by (bounded by limits.scanMessageBytesMax). */
function rowBytes(row: Row): number {
  let n = 0;
  for (const v of Object.values(row)) n += typeof v === 'string' ? Buffer.byteLength(v) + 2 : 9;
  return n;
}

/**
 * The rows sent so far are valid, but they come in primary-key order (tags, then time): a scan
 * continued with start_ms past the last row's time would skip later series' earlier rows and
 * repeat earlier series' later ones (docs/clients.md), so the advice is a narrower scan. Within one
 * series (tag_equals on every tag) the order is time order and start_ms continues it.
 */
function scanTooLong(deadlineMs: number): RegionDbError {
  return new RegionDbError(
    ErrorCode.DeadlineExceeded,
    `scan ran longer than ${deadlineMs} ms (half of engine.sst_gc_grace_ms, at most ${limits.scanMsMax} ms); ${SCAN_NARROWER}`,
  );
}

/** INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: clients retry the latter, and a retry cannot help. */
function scanTooLarge(): RegionDbError {
  return new RegionDbError(
    ErrorCode.InvalidArgument,
    `scan exceeds ${limits.scanRowsPerRequestMax} rows; ${SCAN_NARROWER}`,
  );
}

/**
 * The router's validation of these rows (or keys), when it was against the schema this call
 * resolved (the same object: a table re-created in between resolves to another; nothing mutates
 * a schema in place) and covers every row; else undefined, and the caller validates them itself.
 */
export function validatedOnce(schema: TableSchema, rows: readonly unknown[], checked: CheckedRows | undefined): Row[] | undefined {
  if (!checked || checked.schema !== schema || checked.rows.length !== rows.length) return undefined;
  return checked.rows as Row[];
}
