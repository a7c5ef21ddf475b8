// Any datanode accepts any Write, Delete, Get or Scan (docs/clients.md, "Any node"): rows are
// split by region and each part goes to its region's leader — applied here when this node leads
// the region, otherwise forwarded over a Database.Batch stream to the leader. The forwarded call
// carries the caller's `authorization` header and FORWARDED_BY_KEY, so the leader authorizes the
// caller itself (a node certificate grants nothing on a forwarded call) and never forwards again
// (scans included).
// Deadlines: each forwarded operation waits at most until the caller's deadline (and the
// server's own limits.serverCallMsMax) — a unary call's gRPC deadline, or a Batch operation's
// timeout_ms counted from when it was read (DatabaseService.batch) — and carries what is left of
// it to the leader as its own timeout_ms (BatchStream.request). The Router reads the time, and
// times its backoffs, on an injected clock on the deadlines' time line (routerWallClock in
// production; a hand-moved clock in tests).
//
// Idempotency: every region's part carries the caller's (client_id, request_id) unchanged, and
// its rows in request order: the part is a deterministic function of the request and the
// region, and dedup records are per region (region-state.ts), so a retried request applies each
// part at most once. Across regions a request is NOT atomic; each part's outcome is reported
// (RegionOutcome): APPLIED, NOT_APPLIED (refused before it was proposed) or UNKNOWN — an
// attempt that may have been proposed makes the part UNKNOWN even if a later attempt is refused.
import * as grpc from '@grpc/grpc-js';
import { type TimedClock, type TimerHandle, systemScheduler, wallClock } from '../common/clock.js';
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { type Row, type TableSchema, compareBytes, encodePrimaryKey, makeRegionId, regionNumberOf, validateKey, validateRow } from '../engine/index.js';
import { FORWARDED_BY_KEY, callContext } from '../rpc/auth.js';
import { BatchStream } from '../rpc/batch-stream.js';
import { type EnumOutput, type GetRequestObject, databaseService } from '../rpc/batch-wire.js';
import type {
  DeleteRequest__Output,
  DeleteResponse,
  GetResponse,
  GetResponse__Output,
  Outcome__Output,
  RegionOutcome__Output,
  ScanRequest__Output,
  ScanResponse__Output,
  WriteRequest__Output,
  WriteResponse,
} from '../rpc/generated/index.js';
import { str } from '../rpc/proto.js';
import { call, makeClient } from '../rpc/server.js';
import { fromGrpcError, grpcStatusOf, metadataValue } from '../rpc/status.js';
import { type ProtoRow, type ProtoValue, fromProtoRow } from '../rpc/values.js';

/** How the request reached this node. */
export interface CallInfo {
  /** Forwarded by another datanode (FORWARDED_BY_KEY): serve locally, never forward again. */
  readonly forwarded: boolean;
  /** The caller's deadline, capped by the server's own: ms on the Router's clock (ms since the epoch in production, as gRPC deadlines are). */
  readonly deadlineMs: number;
  /** Aborted when the caller cancels the call (scans: stop reading, cancel what was forwarded). */
  readonly cancelled?: AbortSignal;
}

/**
 * A request as the Database service decodes it: the generated `__Output` types (enums widened
 * as the Batch codec decodes them, batch-wire.ts); fields other than the table and its rows may
 * be absent in requests built in-process (a region's part, the tests).
 */
export type WriteRequest = Pick<WriteRequest__Output, 'table' | 'rows'> & Partial<WriteRequest__Output>;
export type DeleteRequest = Pick<DeleteRequest__Output, 'table' | 'keys'> & Partial<DeleteRequest__Output>;
export type GetRequest = GetRequestObject;
export type ScanRequest = Pick<ScanRequest__Output, 'table'> & Partial<Omit<ScanRequest__Output, 'consistency'>> & { consistency: EnumOutput<ScanRequest__Output['consistency']> };
export type ScanChunk = ScanResponse__Output;

/** Rows (or keys) of a request, validated against `schema` by the router (see LocalDatabase.write). */
export interface CheckedRows {
  readonly schema: TableSchema;
  readonly rows: readonly Row[];
}

/** The single-region handlers of the Database service that the router composes. */
export interface LocalDatabase {
  readonly nodeId: number;
  readonly credentials: grpc.ChannelCredentials;
  /**
   * The schema a request on `table` is split by; with `regionId` (the request names a region), that
   * region's own table's when this node hosts it under the name but resolves the name to another
   * table id (a re-created table while an old replica here is not yet known fenced).
   */
  schemaOf(table: string, regionId?: unknown): Promise<TableSchema>;
  /**
   * A region of table id `tableId` refused an operation as dropped (its drop fence, docs/ddl.md):
   * schemaOf must no longer resolve the table's name to it (optional: without it, no retry).
   */
  tableDropped?(tableId: number): void;
  /**
   * For a request naming `regionId`, not a region of the table its name resolves to: the
   * dropped-table refusal if that region's table is known dropped here, else undefined
   * (optional).
   */
  droppedRegionError?(table: string, regionId: string): RegionDbError | undefined;
  /** True when this node's replica of the region is its leader now. */
  leads(regionId: string): boolean;
  /**
   * The region's leader address, if known: as this node's replica of the region knows it (raft's
   * leader, known as soon as it is elected), else as the routes know it; `fresh`: ask the metasrv
   * for the routes, not the cache.
   */
  leaderAddr(table: string, regionId: string, fresh: boolean): Promise<string | undefined>;
  /**
   * Resolves when this node's replica of the region learns of a leader (elected here, or heard
   * from); `cancel` lets go of it. A part waiting out its backoff retries at once then (optional:
   * without it the backoff runs its course).
   */
  leaderChange?(regionId: string): { readonly changed: Promise<void>; cancel(): void };
  /**
   * `checked`, when given: the request's rows (keys) as this node already validated them against
   * `schema` (validateRow / validateKey of each, in request order), `schema` being what
   * schemaOf(table, regionId) answered the router just before: used as is, neither the name
   * resolved nor the rows validated again. Should the table have been dropped in between, the
   * region's drop fence refuses the write (nothing applied) and afterDrop resolves afresh.
   */
  write(req: WriteRequest, checked?: CheckedRows): Promise<WriteResponse>;
  delete(req: DeleteRequest, checked?: CheckedRows): Promise<DeleteResponse>;
  get(req: GetRequest): Promise<GetResponse>;
  /**
   * One region's scan (req.region_id set), here or from a node that hosts it; `info`: the
   * caller's deadline, and whether a datanode forwarded this call (then it is never forwarded
   * again: one hop, as for writes and gets).
   */
  scanRegion(req: ScanRequest, write: (chunk: ScanChunk) => Promise<void>, info?: CallInfo): Promise<void>;
  /**
   * A part's attempt threw something that is not a RegionDbError (a bug here: everything a part
   * calls fails with one). The part reports it as INTERNAL, a RegionDbError, which the status
   * mapping does not log; this is where it is logged, with its stack (optional).
   */
  internalError?(err: unknown, regionId: string): void;
}

interface PartResult {
  readonly outcome: RegionOutcome;
  /** The last attempt's error, when not applied. */
  readonly error?: RegionDbError;
}

/** A part's outcome: never OUTCOME_UNSPECIFIED. */
export type Outcome = Exclude<Outcome__Output, 'OUTCOME_UNSPECIFIED'>;

export type RegionOutcome = Omit<RegionOutcome__Output, 'outcome'> & { outcome: Outcome };

/**
 * Errors that say the attempt certainly did not apply: raised before its command was proposed, or
 * (CORRUPTION, gRPC DATA_LOSS) its command refused by apply, as every replica's apply refuses it
 * alike (a malformed command, a damaged object a conditional write had to read). An attempt
 * answered so is not sent again (a resend gets the same answer) unless listed in RETRIABLE; after
 * an earlier attempt that may have applied, the part is UNKNOWN and `merge` reports UNAVAILABLE,
 * never one of these codes (a client reads them as "not applied" and sends the write again under
 * a new id — applying it twice).
 */
const NOT_APPLIED: ReadonlySet<string> = new Set([
  ErrorCode.Corruption,
  ErrorCode.InvalidArgument,
  ErrorCode.NotFound,
  ErrorCode.NotLeader,
  ErrorCode.ProposalDropped,
  ErrorCode.ResourceExhausted,
  ErrorCode.ConditionFailed,
  ErrorCode.Unauthenticated,
  ErrorCode.PermissionDenied,
  ErrorCode.Config,
]);
/** NOT_APPLIED errors worth another attempt (a new leader, memory freed by a flush). */
const RETRIABLE: ReadonlySet<string> = new Set([ErrorCode.NotLeader, ErrorCode.ProposalDropped, ErrorCode.ResourceExhausted]);

/** Attempts per region part (bounded by the caller's deadline too): enough to ride out an election. */
const ATTEMPTS_MAX = 10;
const BACKOFF_MS = 50;
const BACKOFF_MAX_MS = 500;
/**
 * A part is sent again only if at least this much of the caller's deadline is left when the
 * resend would go out — and at least as long as its last attempt took (Router.part, "too little
 * left"): an attempt the deadline cuts short only adds a DEADLINE_EXCEEDED, or an unknown outcome
 * to a part that had only been refused.
 */
const RESEND_BUDGET_MIN_MS = 50;
/** Forwarding Batch streams kept open (one per leader address and caller identity). */
const STREAMS_MAX = 64;

/**
 * The Router's default clock: wall ms since the epoch — the time line of CallInfo.deadlineMs,
 * which the Database service takes from gRPC deadlines (wall times) — and the real event loop's
 * timers. Not the datanode's monotonic clock (systemClock): its ms are not on the deadlines' line.
 */
export const routerWallClock: TimedClock = { ...wallClock, ...systemScheduler };

export class Router {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly streams = new Map<string, BatchStream>();

  /**
   * `clock`: what the Router reads the time on (deadlines, an attempt's duration) and times its
   * backoffs with; its `nowMs()` must be on the time line of the CallInfo.deadlineMs it is given.
   * Tests move a hand clock (docs/testing.md, "Time in unit tests").
   */
  constructor(
    private readonly local: LocalDatabase,
    private readonly clock: TimedClock = routerWallClock,
  ) {}

  close(): void {
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  // ─── Write / Delete ─────────────────────────────────────────────────────────────────────────

  /**
   * Runs a routed operation; when it was refused because the table it resolved was dropped (a
   * drop fence: nothing applied, tableDroppedError), resolves the table afresh and runs it once
   * more — on the re-created table of that name, or to the NOT_FOUND of a table that is gone.
   * Not for a request that names its region (that region is the dropped table's: the caller must
   * describe the table again) nor for a forwarded one (its sender retries). Nor for a write
   * carrying `expect_version` (`conditional`, review note F8 in docs/ddl.md): the version it names
   * is the dropped table's, and a row of the re-created table can carry the same number by
   * coincidence, so the refusal is answered (not applied) and the client reads the row again.
   * The refusal itself says so (no `resendAllowed`, its message worded for that case) when the
   * region that refused it saw the write's expect_version, as every region of this build does.
   */
  private async afterDrop<T>(given: string | undefined, info: CallInfo, operation: () => Promise<T>, conditional = false): Promise<T> {
    if (info.forwarded || given) return operation();
    try {
      return await operation();
    } catch (err) {
      const dropped = isRegionDbError(err) ? err.details['droppedTableId'] : undefined;
      if (dropped === undefined || !this.local.tableDropped) throw err;
      this.local.tableDropped(Number(dropped));
      if (conditional) throw notToResend(err as RegionDbError);
      return operation();
    }
  }

  async write(req: WriteRequest, info: CallInfo): Promise<WriteResponse> {
    // As DatabaseService.write tells a conditional write (a proto3 optional field's presence).
    const conditional = req._expect_version === 'expect_version';
    return this.afterDrop(req.region_id, info, () => this.writeOnce(req, info), conditional);
  }

  async delete(req: DeleteRequest, info: CallInfo): Promise<DeleteResponse> {
    return this.afterDrop(req.region_id, info, () => this.deleteOnce(req, info));
  }

  private async writeOnce(req: WriteRequest, info: CallInfo): Promise<WriteResponse> {
    if (info.forwarded) return this.local.write(req);
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    if (!Array.isArray(req.rows) || req.rows.length === 0) return this.local.write(req); // its error
    // A conditional write is one row (database.proto): refused before the split, which would
    // otherwise make rows of several regions one-row parts, each checked and applied on its own
    // (finding Z1) — accepted or half applied depending on how the rows hash.
    if ((req._expect_version === 'expect_version' || req.expect_absent) && req.rows.length !== 1) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `expect_version / expect_absent apply to single-row writes only (${req.rows.length} rows; not applied)`);
    }
    const schema = await this.local.schemaOf(table, req.region_id);
    const checked: Row[] = [];
    const parts = this.split(schema, req.rows, (r, i) => pushed(checked, validateRow(schema, fromProtoRow(r, `rows[${i}]`))), req.region_id);
    if (parts.size === 1) {
      const [regionId] = parts.keys();
      // The fast path (the client library sends each region's rows to its leader): no outcomes
      // list, and the rows just validated go along (one region: all of them, in request order).
      if (this.local.leads(regionId!)) {
        const res = await unlessRefused(() => this.local.write({ ...req, region_id: regionId! }, { schema, rows: checked }));
        if (res !== REFUSED) return res; // refused before proposing (leadership just moved): routed below
      }
    }
    const outcomes = await Promise.all(
      [...parts].map(([regionId, rows]) => this.part(table, regionId, rows.length, 'write', { ...req, region_id: regionId, rows }, info)),
    ); // never rejects: every part settles as an outcome
    return { ...merge(outcomes, 'write'), rows_written: req.rows.length };
  }

  private async deleteOnce(req: DeleteRequest, info: CallInfo): Promise<DeleteResponse> {
    if (info.forwarded) return this.local.delete(req);
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    if (!Array.isArray(req.keys) || req.keys.length === 0) return this.local.delete(req);
    const schema = await this.local.schemaOf(table, req.region_id);
    const checked: Row[] = [];
    const parts = this.split(schema, req.keys, (k, i) => pushed(checked, validateKey(schema, fromProtoRow(k, `keys[${i}]`))), req.region_id);
    if (parts.size === 1) {
      const [regionId] = parts.keys();
      if (this.local.leads(regionId!)) {
        const res = await unlessRefused(() => this.local.delete({ ...req, region_id: regionId! }, { schema, rows: checked }));
        if (res !== REFUSED) return res;
      }
    }
    const outcomes = await Promise.all(
      [...parts].map(([regionId, keys]) => this.part(table, regionId, keys.length, 'delete', { ...req, region_id: regionId, keys }, info)),
    );
    return merge(outcomes, 'delete');
  }

  /** Rows per region id, in request order, regions in region-number order; checks a given region id. */
  private split(schema: TableSchema, rows: ProtoRow[], parse: (r: ProtoRow, i: number) => Parameters<typeof regionNumberOf>[1], given?: string): Map<string, ProtoRow[]> {
    if (rows.length > limits.rowsPerWriteMax) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `${rows.length} rows exceed the limit of ${limits.rowsPerWriteMax} per request`);
    }
    const byNumber = new Map<number, ProtoRow[]>();
    rows.forEach((r, i) => {
      const n = regionNumberOf(schema, parse(r, i));
      let list = byNumber.get(n);
      if (!list) byNumber.set(n, (list = []));
      list.push(r);
    });
    const parts = new Map<string, ProtoRow[]>();
    for (const n of [...byNumber.keys()].sort((a, b) => a - b)) parts.set(makeRegionId(schema.tableId, n), byNumber.get(n)!);
    const regionId = given ? str(given, 'region_id', 32) : '';
    if (regionId && (parts.size !== 1 || !parts.has(regionId))) {
      throw this.local.droppedRegionError?.(schema.name, regionId) ?? new RegionDbError(ErrorCode.InvalidArgument, `some rows do not belong to region ${regionId} (leave region_id empty and the node splits them)`);
    }
    return parts;
  }

  /**
   * The backoff between two attempts of a part, cut short when this node's replica of the region
   * learns of a leader: after a leader's node dies, the parts waiting for its regions go as soon
   * as the election here ends, not up to a backoff later (and not on the election's own role
   * changes, which would spend the part's attempts before there is a leader to reach).
   */
  private async pause(regionId: string, ms: number, ledBefore: boolean): Promise<void> {
    // Elected here while the last attempt, made as a follower, was out (a route lookup, a forward
    // to the dead leader): the change was signalled before anyone watched. The next attempt
    // applies here, so it goes at once. (Not after a refusal by this node as the leader, e.g. a
    // transfer under way: that backs off as before.)
    if (!ledBefore && this.local.leads(regionId)) return;
    const watch = this.local.leaderChange?.(regionId);
    let timer: TimerHandle | undefined;
    try {
      const backoff = new Promise<void>((r) => (timer = this.clock.setTimeout(r, ms)));
      await (watch ? Promise.race([backoff, watch.changed]) : backoff);
    } finally {
      timer?.cancel();
      watch?.cancel();
    }
  }

  /**
   * One region's part: applied here if this node leads the region, else forwarded; retried while
   * that is safe and while enough of the deadline is left for another attempt to complete.
   *
   * Too little left: a resend goes out only with at least `resendBudgetMs` of the deadline ahead
   * of it — the longer of the last attempt's duration and RESEND_BUDGET_MIN_MS — and the backoff
   * before it is shortened so that it leaves that much, but never to nothing (an attempt at the
   * deadline's very end was cut short by it, not answered; resends with no backoff between them
   * are a burst). Otherwise the part ends with the last attempt's own error: a
   * transport failure stays UNAVAILABLE, outcome unknown, where the resend would only have turned
   * it into the deadline's DEADLINE_EXCEEDED (also unknown, but depending on where the deadline
   * fell), and a part only ever refused (NOT_LEADER) stays NOT_APPLIED where a forwarded attempt
   * cut short by the deadline would have made it UNKNOWN. The first attempt always goes out.
   */
  private async part(table: string, regionId: string, rows: number, kind: 'write' | 'delete', body: WriteRequest | DeleteRequest, info: CallInfo): Promise<PartResult> {
    const deduplicated = Number(body.request_id ?? 0) > 0;
    let hint: string | undefined;
    let freshRoutes = false;
    let maybeApplied = false;
    let last: RegionDbError | undefined;
    let resendBudgetMs = RESEND_BUDGET_MIN_MS;
    /** Whether the last attempt was made as the region's leader here (applied locally). */
    let ledBefore = false;
    for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt++) {
      const remaining = info.deadlineMs - this.clock.nowMs();
      if (remaining <= 0) {
        last ??= new RegionDbError(ErrorCode.DeadlineExceeded, `the deadline passed before region ${regionId} was reached`);
        break;
      }
      if (last && remaining < resendBudgetMs) break; // the pause ran late: too little left for a resend
      const startedMs = this.clock.nowMs();
      try {
        let res: { version: string };
        if ((ledBefore = this.local.leads(regionId))) {
          res = (kind === 'write' ? await this.local.write(body as WriteRequest) : await this.local.delete(body as DeleteRequest)) as { version: string };
        } else {
          const addr = hint ?? (await this.local.leaderAddr(table, regionId, freshRoutes));
          // Nothing was sent: a refusal (NOT_APPLIED, retried with fresh routes), not an unknown
          // outcome — which ended a part without a request id at once (finding Z6).
          if (!addr) throw new RegionDbError(ErrorCode.NotLeader, `no known leader for region ${regionId} (no route names one); not sent`);
          res = await this.stream(addr).request<{ version: string }>(kind, body, remaining);
          if (!res || res.version === undefined) throw new RegionDbError(ErrorCode.Internal, `empty ${kind} answer for region ${regionId}`);
        }
        return { outcome: { region_id: regionId, outcome: 'OUTCOME_APPLIED', version: String(res.version), rows, grpc_code: 0, code: '', message: '' } };
      } catch (err) {
        if (!isRegionDbError(err)) this.local.internalError?.(err, regionId);
        last = isRegionDbError(err) ? err : fromGrpcError(err);
        // The region no longer remembers this request id: a resend gets the same answer, so none
        // goes. The part is UNKNOWN (an attempt of the caller's may have applied), and when an
        // earlier attempt of this node's may have (maybeApplied), its error is not REQUEST_TOO_OLD:
        // a client reads that as "my only attempt was refused" and sends the write again under a
        // new id — applying it twice (review of session 16).
        if (last.code === ErrorCode.RequestTooOld) {
          if (maybeApplied) last = this.unknownAfterEarlierAttempt(last);
          maybeApplied = true;
          break;
        }
        const refused = NOT_APPLIED.has(last.code);
        if (!refused) maybeApplied = true;
        // A refused attempt may be retried; one that may have applied only under a request id.
        if (refused ? !RETRIABLE.has(last.code) : !deduplicated) break;
        hint = last.details['leaderAddr'];
        freshRoutes = hint === undefined; // no hint (e.g. an election): the cached route may be stale
        resendBudgetMs = Math.max(RESEND_BUDGET_MIN_MS, this.clock.nowMs() - startedMs);
        const spareMs = info.deadlineMs - this.clock.nowMs() - resendBudgetMs;
        // Too little left for a resend after a backoff (none left: a backoff cut to 0 ms would send
        // it at once, again and again while each attempt takes no time), or no attempt left to make.
        if (spareMs <= 0 || attempt + 1 >= ATTEMPTS_MAX) break;
        await this.pause(regionId, Math.min(BACKOFF_MS * 2 ** attempt, BACKOFF_MAX_MS, spareMs), ledBefore);
      }
    }
    const error = last ?? new RegionDbError(ErrorCode.Unavailable, `region ${regionId}: no attempt made`);
    return {
      outcome: {
        region_id: regionId,
        outcome: maybeApplied ? 'OUTCOME_UNKNOWN' : 'OUTCOME_NOT_APPLIED',
        version: '0',
        rows,
        grpc_code: grpcStatusOf(error.code),
        code: error.code,
        message: error.message,
      },
      error,
    };
  }

  /**
   * `err`, the answer of an attempt made after an earlier one that may have applied, as what the
   * part's outcome is: unknown (UNAVAILABLE), never a code a client reads as "not applied" and
   * answers by sending the write again under a new id — applying it twice.
   */
  private unknownAfterEarlierAttempt(err: RegionDbError): RegionDbError {
    return new RegionDbError(ErrorCode.Unavailable, `${err.message}; an earlier attempt through node ${this.local.nodeId} may have been applied: the outcome is unknown`, {
      cause: err,
      details: { ...err.details, outcome: 'unknown' },
    });
  }

  /** The Batch stream to `addr` for the identity of the call being served. */
  private stream(addr: string): BatchStream {
    const authorization = callContext.getStore()?.authorization ?? '';
    const key = `${addr}\n${authorization}`;
    let stream = this.streams.get(key);
    if (stream) return stream;
    if (this.streams.size >= STREAMS_MAX) {
      for (const [k, s] of this.streams) {
        if (s.inFlight > 0) continue;
        s.close();
        this.streams.delete(k);
        if (this.streams.size < STREAMS_MAX / 2) break;
      }
    }
    const nodeId = String(this.local.nodeId);
    stream = new BatchStream(
      this.client(addr, true),
      () => {
        const metadata = new grpc.Metadata();
        metadata.set(FORWARDED_BY_KEY, nodeId);
        return metadata;
      },
      this.clock,
    );
    this.streams.set(key, stream);
    return stream;
  }

  private client(addr: string, batch: boolean): grpc.Client {
    const key = `${batch ? 'batch' : 'unary'} ${addr}`;
    let client = this.clients.get(key);
    // The Batch client uses the hand-written codec (batch-wire.ts), as the client library does.
    if (!client) this.clients.set(key, (client = makeClient('Database', addr, { credentials: this.local.credentials }, batch ? databaseService() : undefined)));
    return client;
  }

  // ─── Get ────────────────────────────────────────────────────────────────────────────────────

  /** Served here when a local replica can (ReadIndex works on followers), else by the leader. */
  async get(req: GetRequest, info: CallInfo): Promise<GetResponse> {
    return this.afterDrop(undefined, info, () => this.getOnce(req, info));
  }

  private async getOnce(req: GetRequest, info: CallInfo): Promise<GetResponse> {
    try {
      return await this.local.get(req);
    } catch (err) {
      const addr = isRegionDbError(err, ErrorCode.NotLeader) ? err.details['leaderAddr'] : undefined;
      if (info.forwarded || !addr) throw err;
      const remaining = info.deadlineMs - this.clock.nowMs();
      if (remaining <= 0) throw err;
      const metadata = new grpc.Metadata();
      metadata.set(FORWARDED_BY_KEY, String(this.local.nodeId));
      try {
        return await call<GetResponse__Output>(this.client(addr, false), 'Get', req, remaining, metadata);
      } catch (forwardErr) {
        throw fromGrpcError(forwardErr);
      }
    }
  }

  // ─── Scan ───────────────────────────────────────────────────────────────────────────────────

  /**
   * A whole-table scan: every region's scan (here or forwarded) runs concurrently behind a
   * one-chunk handoff, and the rows are merged in primary-key order (each region's rows already
   * are), at most `limit` of them. One region's scan alone passes through unchanged.
   */
  async scan(req: ScanRequest, write: (chunk: ScanChunk) => Promise<void>, info?: CallInfo): Promise<void> {
    // Sent again after a drop refusal only if nothing was streamed yet (afterDrop).
    let streamed = false;
    const counted = (chunk: ScanChunk) => {
      streamed = true;
      return write(chunk);
    };
    const once = () => this.scanOnce(req, counted, info);
    if (!info) return once();
    return this.afterDrop(req.region_id, info, () => {
      if (streamed) throw new RegionDbError(ErrorCode.NotFound, `table ${req.table} was dropped while it was scanned; scan it again`);
      return once();
    });
  }

  private async scanOnce(req: ScanRequest, write: (chunk: ScanChunk) => Promise<void>, info?: CallInfo): Promise<void> {
    if (req.region_id) return this.local.scanRegion(req, write, info);
    const table = str(req.table, 'table', limits.tableNameBytesMax);
    const schema = await this.local.schemaOf(table);
    if (schema.regionCount === 1) return this.local.scanRegion({ ...req, region_id: makeRegionId(schema.tableId, 0) }, write, info);
    const limit = Number(req.limit ?? 0);
    const sources = Array.from({ length: schema.regionCount }, (_, n) => {
      const handoff = new Handoff<ScanChunk>();
      void this.local.scanRegion({ ...req, region_id: makeRegionId(schema.tableId, n) }, (chunk) => handoff.push(chunk), info).then(
        () => handoff.finish(),
        (err: unknown) => handoff.finish(err),
      );
      return handoff;
    });
    try {
      await mergeSorted(schema, sources, limit, write);
    } finally {
      for (const s of sources) s.cancel();
    }
  }
}

/** The response of a routed write or delete, or the error when a part did not apply. */
function merge(parts: PartResult[], kind: 'write' | 'delete'): { version: string; regions: RegionOutcome[] } {
  const outcomes = parts.map((p) => p.outcome);
  const failed = parts.filter((p) => p.outcome.outcome !== 'OUTCOME_APPLIED');
  if (failed.length === 0) {
    const version = outcomes.reduce((max, o) => (BigInt(o.version) > max ? BigInt(o.version) : max), 0n);
    return { version: version.toString(), regions: outcomes };
  }
  const first = failed.find((p) => p.outcome.outcome === 'OUTCOME_UNKNOWN') ?? failed[0]!;
  const cause = first.error!;
  // An outcome that is unknown is never reported with a code that says "not applied".
  const code = first.outcome.outcome === 'OUTCOME_UNKNOWN' && NOT_APPLIED.has(cause.code) ? ErrorCode.Unavailable : cause.code;
  // Every part that failed was refused by the same dropped table's fence (nothing unknown):
  // the request may be sent again as a whole (Router.afterDrop).
  const dropped = failed.every((p) => p.outcome.outcome === 'OUTCOME_NOT_APPLIED' && p.error?.details['droppedTableId'] !== undefined && p.error.details['droppedTableId'] === cause.details['droppedTableId']);
  const resendAllowed = dropped && failed.every((p) => p.error?.details['resendAllowed'] === 'true');
  const details = {
    ...outcomesDetails(outcomes),
    ...(dropped ? { droppedTableId: cause.details['droppedTableId']! } : {}),
    ...(resendAllowed ? { resendAllowed: 'true' } : {}),
  };
  if (parts.length === 1) {
    // One region: its own error, unchanged (CONDITION_FAILED keeps its current version, ...),
    // unless an earlier attempt may have applied. Then the cause's dropped-table detail goes
    // (it says "not applied", which the new code contradicts, and afterDrop would send the
    // request to a re-created table although it may have applied to the old one).
    if (code === cause.code) throw cause;
    const { droppedTableId: _notApplied, resendAllowed: _resend, ...kept } = cause.details;
    throw new RegionDbError(code, `region ${first.outcome.region_id}: ${cause.message}; an earlier attempt may have been applied — retry with the same request id`, {
      details: { ...kept, ...details },
    });
  }
  const unknown = failed.filter((p) => p.outcome.outcome === 'OUTCOME_UNKNOWN').length;
  throw new RegionDbError(
    code,
    `${kind} across ${parts.length} regions: ${parts.length - failed.length} applied, ${unknown} unknown, ${failed.length - unknown} not applied ` +
      `(not atomic across regions: retry the whole request with the same request id to complete it; per-region outcomes in regiondb-region-outcomes). ` +
      `First: region ${first.outcome.region_id}: ${cause.message}`,
    { details },
  );
}

/**
 * The most bytes the outcomes take in a trailer (as sent: metadataValue's escapes counted). gRPC
 * core (Python, C++, Ruby, ...) and grpc-java refuse a response whose metadata passes 8 KiB by
 * default, and the caller then gets RESOURCE_EXHAUSTED ("received initial metadata size exceeds
 * limit") instead of the status and the outcomes (finding Z4: a write across ~70 regions or
 * more). Half of that leaves room for the status message and the other details.
 */
export const REGION_OUTCOMES_TRAILER_BYTES_MAX = 4096;
/** A failed part's message is cut to this many characters when the full list does not fit. */
const OUTCOME_MESSAGE_CHARS_MAX = 120;

/**
 * The `regionOutcomes` detail, within REGION_OUTCOMES_TRAILER_BYTES_MAX: every part when they
 * fit; else the parts that did not apply (their messages cut), UNKNOWN ones kept longest, and
 * `regionOutcomesOmitted` counting, per outcome, the parts left out — so a part that is not
 * listed is one of those counted, and with nothing but `applied` counted, every part left out
 * applied.
 */
export function outcomesDetails(outcomes: readonly RegionOutcome[]): { regionOutcomes: string; regionOutcomesOmitted?: string } {
  const fits = (json: string) => metadataValue(json).length <= REGION_OUTCOMES_TRAILER_BYTES_MAX;
  const full = JSON.stringify(outcomes);
  if (fits(full)) return { regionOutcomes: full };
  const omitted = { applied: 0, not_applied: 0, unknown: 0 };
  const listed: RegionOutcome[] = [];
  for (const o of outcomes) {
    if (o.outcome === 'OUTCOME_APPLIED') omitted.applied++;
    else listed.push(o.message.length > OUTCOME_MESSAGE_CHARS_MAX ? { ...o, message: `${o.message.slice(0, OUTCOME_MESSAGE_CHARS_MAX)}…` } : o);
  }
  // Left out last to first, NOT_APPLIED before UNKNOWN (an unknown part is the one a caller must act on).
  listed.sort((a, b) => Number(a.outcome === 'OUTCOME_NOT_APPLIED') - Number(b.outcome === 'OUTCOME_NOT_APPLIED'));
  // The array's bytes as sent: its entries, the commas between them and the brackets.
  const entries = listed.map((o) => JSON.stringify(o));
  let bytes = entries.reduce((n, e) => n + metadataValue(e).length + 1, 1);
  while (bytes > REGION_OUTCOMES_TRAILER_BYTES_MAX && entries.length > 0) {
    bytes -= metadataValue(entries.pop()!).length + 1;
    if (listed.pop()!.outcome === 'OUTCOME_NOT_APPLIED') omitted.not_applied++;
    else omitted.unknown++;
  }
  const json = `[${entries.join(',')}]`;
  assert(fits(json), 'the listed outcomes fit the trailer');
  return { regionOutcomes: json, regionOutcomesOmitted: JSON.stringify(omitted) };
}

/**
 * A conditional write's drop-fence refusal as this node answers it: not to be sent again. One
 * that says otherwise (`resendAllowed`: from a region that did not see the expect_version) loses
 * that detail, and its message gets a sentence saying why (appended; the message is not parsed).
 */
function notToResend(err: RegionDbError): RegionDbError {
  if (err.details['resendAllowed'] === undefined) return err;
  const { resendAllowed: _allowed, ...details } = err.details;
  return new RegionDbError(
    err.code,
    `${err.message} — but not this one: it carries expect_version, a version of the dropped table, so it is not sent to a table re-created under the name; read the row again and decide`,
    { cause: err, details },
  );
}

const REFUSED: unique symbol = Symbol('refused before it was proposed');

/** The operation's result, or REFUSED when it failed with NOT_LEADER / PROPOSAL_DROPPED (nothing applied). */
async function unlessRefused<T>(operation: () => Promise<T>): Promise<T | typeof REFUSED> {
  try {
    return await operation();
  } catch (err) {
    if (isRegionDbError(err) && (err.code === ErrorCode.NotLeader || err.code === ErrorCode.ProposalDropped)) return REFUSED;
    throw err;
  }
}

const CANCELLED = new RegionDbError(ErrorCode.Unavailable, 'scan cancelled: the merged scan ended');

/** A one-chunk handoff from a pushing producer (a region's scan) to a pulling consumer. */
class Handoff<T> {
  private item: T | undefined;
  private done = false;
  private error: unknown;
  private cancelled = false;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  async push(item: T): Promise<void> {
    if (this.cancelled) throw CANCELLED;
    this.item = item;
    this.wake('consumer');
    while (this.item !== undefined && !this.cancelled) await new Promise<void>((r) => (this.wakeProducer = r));
    if (this.cancelled) throw CANCELLED;
  }

  finish(err?: unknown): void {
    this.done = true;
    this.error = err;
    this.wake('consumer');
  }

  async next(): Promise<T | undefined> {
    while (this.item === undefined && !this.done) await new Promise<void>((r) => (this.wakeConsumer = r));
    if (this.item !== undefined) {
      const item = this.item;
      this.item = undefined;
      this.wake('producer');
      return item;
    }
    if (this.error !== undefined && this.error !== CANCELLED) throw this.error;
    return undefined;
  }

  cancel(): void {
    this.cancelled = true;
    this.wake('producer');
  }

  private wake(who: 'consumer' | 'producer'): void {
    const f = who === 'consumer' ? this.wakeConsumer : this.wakeProducer;
    if (who === 'consumer') this.wakeConsumer = undefined;
    else this.wakeProducer = undefined;
    f?.();
  }
}

/**
 * A scanned row as the engine's Row: chunks from this node's scans are built by toProtoRow (the
 * value's field set, no `kind`), forwarded ones come decoded by proto-loader (with `kind`).
 */
function keyRow(row: ProtoRow): Row {
  const values: Record<string, ProtoValue> = {};
  for (const [name, v] of Object.entries(row.values)) {
    values[name] = v.kind ? v : { ...v, kind: VALUE_KINDS.find((k) => v[k] !== undefined && v[k] !== null) ?? 'null_value' };
  }
  return fromProtoRow({ values }, 'row');
}

const VALUE_KINDS = ['string_value', 'int64_value', 'float64_value', 'bool_value', 'timestamp_ms_value', 'null_value'] as const;

interface Head {
  key: Uint8Array;
  chunk: ScanChunk;
  index: number;
  source: Handoff<ScanChunk>;
}

/** k-way merge of sorted sources by encoded primary key (a binary min-heap of their heads). */
async function mergeSorted(schema: TableSchema, sources: Handoff<ScanChunk>[], limit: number, write: (chunk: ScanChunk) => Promise<void>): Promise<void> {
  const heap: Head[] = [];
  const less = (a: Head, b: Head) => compareBytes(a.key, b.key) < 0;
  const keyOf = (chunk: ScanChunk, index: number) => encodePrimaryKey(schema, keyRow(chunk.rows[index]!));
  const pushHeap = (h: Head) => {
    heap.push(h);
    for (let i = heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  };
  const popHeap = (): Head => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  /** The next non-empty chunk of a source as a heap entry, or nothing when it is exhausted. */
  const advance = async (source: Handoff<ScanChunk>): Promise<void> => {
    for (;;) {
      const chunk = await source.next();
      if (!chunk) return;
      if (chunk.rows.length > 0) return pushHeap({ key: keyOf(chunk, 0), chunk, index: 0, source });
    }
  };
  await Promise.all(sources.map(advance));
  let out: ScanChunk = { rows: [], versions: [] };
  let emitted = 0;
  while (heap.length > 0 && (limit === 0 || emitted < limit)) {
    const head = popHeap();
    out.rows.push(head.chunk.rows[head.index]!);
    out.versions.push(head.chunk.versions[head.index]!);
    emitted++;
    if (emitted > limits.scanRowsPerRequestMax) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `scan exceeds ${limits.scanRowsPerRequestMax} rows; ${SCAN_NARROWER}`);
    }
    if (out.rows.length >= limits.scanRowsPerMessageMax) {
      await write(out);
      out = { rows: [], versions: [] };
    }
    if (head.index + 1 < head.chunk.rows.length) {
      head.index++;
      head.key = keyOf(head.chunk, head.index);
      pushHeap(head);
    } else {
      await advance(head.source);
    }
  }
  if (out.rows.length > 0) await write(out);
}

/**
 * How to get what a refused scan would have returned: rows come in primary-key order, so there
 * is no continuation by time across series (docs/clients.md, "Scans come in primary-key order").
 */
export const SCAN_NARROWER =
  'scan less at a time: a shorter time range (start_ms/end_ms, for every series) or tag filters; rows come in primary-key order (tags, then time), so continuing with start_ms past the last row is right only within one series (tag_equals on every tag)';

/** Appends `row` to `list` and returns it (split's parse callback keeps what it validated). */
function pushed(list: Row[], row: Row): Row {
  list.push(row);
  return row;
}
