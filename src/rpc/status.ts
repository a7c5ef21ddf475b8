// The ONLY place where regiondb errors become gRPC statuses and back (docs/style.md S13).
import * as grpc from '@grpc/grpc-js';
import type { Scheduler, TimerHandle } from '../common/clock.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import type { BatchError__Output } from './generated/index.js';

export const LEADER_ADDR_KEY = 'regiondb-leader-addr';
export const LEADER_ID_KEY = 'regiondb-leader-id';
export const ERROR_CODE_KEY = 'regiondb-error-code';
export const CURRENT_VERSION_KEY = 'regiondb-current-version';
export const OLDEST_KNOWN_REQUEST_ID_KEY = 'regiondb-oldest-known-request-id';
/** JSON array of RegionOutcome (database.proto, field names as in the proto) of a partly failed routed write. */
export const REGION_OUTCOMES_KEY = 'regiondb-region-outcomes';
/**
 * With REGION_OUTCOMES_KEY, when the list was too long for a trailer (finding Z4): JSON
 * `{"applied": a, "not_applied": n, "unknown": u}`, the parts of each outcome left out of it.
 */
export const REGION_OUTCOMES_OMITTED_KEY = 'regiondb-region-outcomes-omitted';
/** The id of a dropped table whose region refused the operation (a drop fence, docs/ddl.md): not applied. */
export const DROPPED_TABLE_ID_KEY = 'regiondb-dropped-table-id';
/** With DROPPED_TABLE_ID_KEY: "true" when the request may be sent again as it is, the table name resolved afresh (not a write with expect_version). */
export const RESEND_ALLOWED_KEY = 'regiondb-resend-allowed';

/** RegionDbError details that travel with an error (unary: as metadata; Batch: in BatchError.details). */
const DETAIL_METADATA_KEYS: Readonly<Record<string, string>> = {
  leaderAddr: LEADER_ADDR_KEY,
  leaderNodeId: LEADER_ID_KEY,
  currentVersion: CURRENT_VERSION_KEY,
  oldestKnownRequestId: OLDEST_KNOWN_REQUEST_ID_KEY,
  regionOutcomes: REGION_OUTCOMES_KEY,
  regionOutcomesOmitted: REGION_OUTCOMES_OMITTED_KEY,
  droppedTableId: DROPPED_TABLE_ID_KEY,
  resendAllowed: RESEND_ALLOWED_KEY,
};

const toGrpc: Record<ErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  NOT_LEADER: grpc.status.UNAVAILABLE,
  PROPOSAL_DROPPED: grpc.status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  CONDITION_FAILED: grpc.status.FAILED_PRECONDITION,
  // gRPC's "sequencer check failure": not retriable as is; the caller reads and decides.
  REQUEST_TOO_OLD: grpc.status.ABORTED,
  CORRUPTION: grpc.status.DATA_LOSS,
  STORAGE_COMPACTED: grpc.status.INTERNAL,
  STORAGE_UNAVAILABLE: grpc.status.UNAVAILABLE,
  CONFIG: grpc.status.FAILED_PRECONDITION,
  INTERNAL: grpc.status.INTERNAL,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
};

/**
 * What a status means when it carries no regiondb error code (docs/clients.md, "A status without
 * regiondb's code"). Every status a regiondb handler sends carries its code (toServiceError,
 * toBatchError), so such a status was made by a gRPC stack — grpc-js on either end, an HTTP/2
 * reset, a proxy — or by a peer that is not regiondb. Three kinds:
 * - `refused`: the call was refused as it opened, before any handler could run it: nothing done.
 * - `unknown`: the call may have reached a handler and run (a reset stream, a broken or cancelled
 *   call, a timeout, an answer that could not be read): the outcome is unknown, never "failed".
 * - `peer`: codes no gRPC stack makes on its own (only an application chooses them): taken at their
 *   usual meaning, as a peer that is not regiondb (the health service) means them.
 */
interface TransportMeaning {
  readonly code: ErrorCode;
  readonly kind: 'refused' | 'unknown' | 'peer';
  /** An unknown outcome under a code that would not say so by itself: the error says it (message, `details.outcome`). */
  readonly relabelled?: true;
}
const TRANSPORT_STATUS: Readonly<Partial<Record<grpc.status, TransportMeaning>>> = {
  [grpc.status.UNAUTHENTICATED]: { code: ErrorCode.Unauthenticated, kind: 'refused' }, // HTTP 401, call credentials
  [grpc.status.PERMISSION_DENIED]: { code: ErrorCode.PermissionDenied, kind: 'refused' }, // HTTP 403, INADEQUATE_SECURITY
  [grpc.status.UNIMPLEMENTED]: { code: ErrorCode.Internal, kind: 'refused' }, // HTTP 404, no such method (no regiondb code of its own)
  [grpc.status.DEADLINE_EXCEEDED]: { code: ErrorCode.DeadlineExceeded, kind: 'unknown' },
  // Connection lost or refused (a caller that knows the request never left may treat it as not sent: meta-channel.ts).
  [grpc.status.UNAVAILABLE]: { code: ErrorCode.Unavailable, kind: 'unknown' },
  [grpc.status.CANCELLED]: { code: ErrorCode.Unavailable, kind: 'unknown' },
  // "Received RST_STREAM with code N", a protocol error, an answer that could not be decoded.
  [grpc.status.INTERNAL]: { code: ErrorCode.Unavailable, kind: 'unknown', relabelled: true },
  [grpc.status.UNKNOWN]: { code: ErrorCode.Unavailable, kind: 'unknown', relabelled: true },
  // ENHANCE_YOUR_CALM, or a message over a size limit — perhaps the answer, after the call ran.
  [grpc.status.RESOURCE_EXHAUSTED]: { code: ErrorCode.Unavailable, kind: 'unknown', relabelled: true },
  [grpc.status.INVALID_ARGUMENT]: { code: ErrorCode.InvalidArgument, kind: 'peer' },
  [grpc.status.NOT_FOUND]: { code: ErrorCode.NotFound, kind: 'peer' },
  [grpc.status.ALREADY_EXISTS]: { code: ErrorCode.AlreadyExists, kind: 'peer' },
  [grpc.status.FAILED_PRECONDITION]: { code: ErrorCode.ConditionFailed, kind: 'peer' },
};

/**
 * The regiondb error for a status without regiondb's code (the one place that decides, see
 * TRANSPORT_STATUS). A status that leaves the outcome unknown and whose code would not say so
 * (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED) becomes UNAVAILABLE with `details.outcome = 'unknown'`:
 * retried under the same request id, reported as unknown, never as a refusal or a server bug.
 * Any other code (ABORTED, OUT_OF_RANGE, DATA_LOSS: never made by a gRPC stack) stays INTERNAL.
 */
export function fromTransportStatus(grpcCode: grpc.status | undefined, message: string, details: Record<string, string>, cause: unknown): RegionDbError {
  const mapped = TRANSPORT_STATUS[grpcCode as grpc.status];
  const marked = { ...details, [TRANSPORT_DETAIL]: 'true' };
  if (!mapped) return new RegionDbError(ErrorCode.Internal, message, { cause, details: marked });
  if (!mapped.relabelled) return new RegionDbError(mapped.code, message, { cause, details: marked });
  return new RegionDbError(mapped.code, `${message} (${grpc.status[grpcCode as grpc.status]} without a regiondb status: a transport failure, the outcome is unknown — it may have been applied)`, {
    cause,
    details: { ...marked, outcome: 'unknown' },
  });
}

/**
 * The detail that marks an error read from a status without regiondb's code (fromTransportStatus),
 * or from a Batch stream that ended with operations unanswered: no regiondb handler answered the
 * call; it failed on its way (connection refused or lost, a reset, a proxy). Local to the process
 * that made the call: toServiceError and toBatchError never send it on, so an error a node
 * answers — even one that says that node's own forward failed in transit — arrives without it.
 */
export const TRANSPORT_DETAIL = 'transport';

/**
 * Whether `e` is the failure of the caller's own call in transit (TRANSPORT_DETAIL), as opposed
 * to an error a regiondb node answered. Only the first says anything about whether the node
 * called can be reached (the client library avoids it for a while: docs/clients.md).
 */
export function failedInTransit(e: RegionDbError): boolean {
  return e.details[TRANSPORT_DETAIL] === 'true';
}

/** A status that refuses a call as it opens (TRANSPORT_STATUS's `refused`), with or without regiondb's code: nothing ran. */
export function refusedAsOpened(grpcCode: grpc.status | undefined): boolean {
  return TRANSPORT_STATUS[grpcCode as grpc.status]?.kind === 'refused';
}

export function grpcStatusOf(code: ErrorCode): grpc.status {
  return toGrpc[code];
}

/** Turns any thrown value into a ServiceError. Unknown errors become INTERNAL (logged, no stack sent). */
export function toServiceError(err: unknown, log?: Logger): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (isRegionDbError(err)) {
    metadata.set(ERROR_CODE_KEY, err.code);
    for (const [detail, key] of Object.entries(DETAIL_METADATA_KEYS)) if (err.details[detail]) metadata.set(key, metadataValue(err.details[detail]));
    return { code: toGrpc[err.code], details: statusMessage(err.message), metadata };
  }
  log?.error({ err }, 'internal error in a service handler');
  metadata.set(ERROR_CODE_KEY, ErrorCode.Internal);
  return { code: grpc.status.INTERNAL, details: 'internal error (logged on the server)', metadata };
}

/**
 * The most bytes a status message takes as sent (grpc-js percent-encodes it into `grpc-message`).
 * gRPC core (Python, C++, ...) and grpc-java refuse a response whose metadata passes 8 KiB by
 * default, and report RESOURCE_EXHAUSTED ("received initial metadata size exceeds limit") instead
 * of the status — which a client retries as backpressure. A message can quote what the request
 * carried (an unknown column's name has no length limit of its own): finding Z5.
 */
export const STATUS_MESSAGE_BYTES_MAX = 2048;

/** `message` cut (with " …") so that its `grpc-message` form stays within STATUS_MESSAGE_BYTES_MAX. */
export function statusMessage(message: string): string {
  if (message.length <= STATUS_MESSAGE_BYTES_MAX / 9 || encodeURI(message).length <= STATUS_MESSAGE_BYTES_MAX) return message;
  // At most 9 bytes per UTF-16 unit once percent-encoded (a 3-byte character), so this many units always fit.
  let units = Math.floor((STATUS_MESSAGE_BYTES_MAX - 8) / 9);
  // Longer cuts while they fit (messages are mostly ASCII: a unit each), never splitting a surrogate pair.
  for (let step = STATUS_MESSAGE_BYTES_MAX; step >= 1; step >>= 1) {
    const longer = units + step;
    if (longer < message.length && encodeURI(cut(message, longer)).length <= STATUS_MESSAGE_BYTES_MAX) units = longer;
  }
  return cut(message, units);
}

function cut(message: string, units: number): string {
  const end = /[\ud800-\udbff]/.test(message[units - 1] ?? '') ? units - 1 : units;
  return `${message.slice(0, end)} …`;
}

/**
 * A detail as a metadata value. grpc-js takes only printable ASCII there and throws from
 * Metadata.set otherwise, which left the call unanswered and the rejection unhandled (a datanode
 * exits on one). Every other character becomes a JSON \uXXXX escape: lossless for the JSON
 * detail (regionOutcomes: a character outside ASCII can only be inside one of its strings, and
 * JSON.parse gives it back), and the ASCII details (addresses, ids, versions) are unchanged.
 */
export function metadataValue(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The client side: a gRPC error back into a RegionDbError with its details. */
export function fromGrpcError(err: unknown): RegionDbError {
  if (isRegionDbError(err)) return err;
  const e = err as Partial<grpc.ServiceError>;
  const md = e.metadata;
  const get = (key: string): string | undefined => {
    const v = md?.get(key)[0];
    return v === undefined ? undefined : String(v);
  };
  const details: Record<string, string> = {};
  for (const [detail, key] of Object.entries(DETAIL_METADATA_KEYS)) {
    const v = get(key);
    if (v) details[detail] = v;
  }
  const ours = get(ERROR_CODE_KEY) as ErrorCode | undefined;
  const message = e.details || e.message || 'gRPC call failed';
  if (ours && ours in toGrpc) return new RegionDbError(ours, message, { cause: err, details });
  return fromTransportStatus(e.code, message, details, err);
}

/** A failed operation of a Database.Batch stream (proto BatchError). */
export type ProtoBatchError = BatchError__Output;

/** The status a unary call would have returned, as a Batch stream item (the same mapping as toServiceError). */
export function toBatchError(err: unknown, log?: Logger): ProtoBatchError {
  if (isRegionDbError(err)) {
    const details: Record<string, string> = {};
    for (const key of Object.keys(DETAIL_METADATA_KEYS)) if (err.details[key]) details[key] = err.details[key]!;
    return { grpc_code: toGrpc[err.code], code: err.code, message: err.message, details };
  }
  log?.error({ err }, 'internal error in a service handler');
  return { grpc_code: grpc.status.INTERNAL, code: ErrorCode.Internal, message: 'internal error (logged on the server)', details: {} };
}

/** The client side of toBatchError. */
export function fromBatchError(e: ProtoBatchError): RegionDbError {
  const details: Record<string, string> = {};
  for (const key of Object.keys(DETAIL_METADATA_KEYS)) {
    const v = e.details?.[key];
    if (typeof v === 'string' && v) details[key] = v;
  }
  if (e.code in toGrpc) return new RegionDbError(e.code as ErrorCode, e.message || 'operation failed', { details });
  return fromTransportStatus(e.grpc_code, e.message || 'operation failed', details, undefined);
}

/**
 * A request whose bytes are not a valid protobuf message. grpc-js would answer INTERNAL for a
 * deserializer that throws; `tolerantService` turns it into this marker instead, and the
 * handler wrappers answer INVALID_ARGUMENT with the decoder's message.
 */
export const MALFORMED = Symbol('regiondb.malformed-request');
interface MalformedRequest {
  [MALFORMED]: string;
}

function malformedError(request: unknown): RegionDbError | undefined {
  if (request && typeof request === 'object' && MALFORMED in request) {
    return new RegionDbError(ErrorCode.InvalidArgument, `malformed request: ${(request as MalformedRequest)[MALFORMED]}`);
  }
  return undefined;
}

/** Wraps every method's request deserializer so undecodable bytes reach the handler as a marker. */
export function tolerantService(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return { [MALFORMED]: (err as Error).message } satisfies MalformedRequest;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

/** For streaming handlers: throws INVALID_ARGUMENT if a received message was malformed. */
export function assertWellFormed(request: unknown): void {
  const err = malformedError(request);
  if (err) throw err;
}

type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>;

/** One finished unary or server-streaming call, as seen by the wrappers below. */
export interface RpcObservation {
  /** e.g. `regiondb.v1.Database` */
  readonly service: string;
  /** e.g. `Write` */
  readonly method: string;
  readonly code: grpc.status;
  readonly seconds: number;
}

export type RpcObserver = (observation: RpcObservation) => void;

const rpcObservers = new Set<RpcObserver>();

/**
 * Registers an observer of every call served through `unary` and `serverStream` in this process
 * (metrics); returns its removal. Calls refused earlier (authentication) are not seen here.
 */
export function addRpcObserver(observer: RpcObserver): () => void {
  rpcObservers.add(observer);
  return () => rpcObservers.delete(observer);
}

/** A stopwatch for one call that reports to the observers once, when the call ends. */
function observeCall(call: { getPath(): string }): (code: grpc.status) => void {
  if (rpcObservers.size === 0) return () => {};
  const path = call.getPath(); // "/regiondb.v1.Database/Write"
  const slash = path.lastIndexOf('/');
  return observeOperation(path.slice(1, slash), path.slice(slash + 1));
}

/**
 * The same stopwatch for one operation of a multiplexing stream (Database.Batch): observers
 * see it as a call of the method it stands for, so per-method metrics cover both paths.
 */
export function observeOperation(service: string, method: string): (code: grpc.status) => void {
  if (rpcObservers.size === 0) return () => {};
  const startedNs = process.hrtime.bigint();
  return (code) => {
    const observation = { service, method, code, seconds: Number(process.hrtime.bigint() - startedNs) / 1e9 };
    for (const observer of rpcObservers) observer(observation);
  };
}

/** Every unary method goes through this: errors are mapped, nothing thrown escapes. */
export function unary<Req, Res>(handler: UnaryHandler<Req, Res>, log: Logger): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const finished = observeCall(call);
    const fail = (err: unknown) => {
      const error = toServiceError(err, log);
      finished(error.code ?? grpc.status.UNKNOWN);
      callback(error as grpc.ServiceError);
    };
    const malformed = malformedError(call.request);
    if (malformed) return fail(malformed);
    void underServerDeadline(() => handler(call.request, call), {
      ok: (res) => {
        finished(grpc.status.OK);
        callback(null, res);
      },
      fail,
    });
  };
}

/**
 * Runs one operation under the server's own deadline: `settle` hears exactly once, with the
 * result, the error, or DEADLINE_EXCEEDED after limits.serverCallMsMax (a later result is
 * dropped), whatever deadline the client sent. Resolves when the operation itself has ended.
 *
 * `timeoutMs`: an operation of a Database.Batch stream that carries its own deadline
 * (BatchRequest.timeout_ms, see batchOperationTimeoutMs) is answered DEADLINE_EXCEEDED when that
 * passes instead — the answer its caller's unary deadline would have given. `scheduler`: what
 * times that (the Database service's clock when a test gives it one; else the real loop).
 */
export function underServerDeadline<T>(
  operation: () => Promise<T>,
  settle: { ok(result: T): void; fail(err: unknown): void },
  timeoutMs: number = limits.serverCallMsMax,
  scheduler?: Scheduler,
): Promise<void> {
  let timedOut = false;
  const own = timeoutMs >= limits.serverCallMsMax;
  const limitMs = Math.min(timeoutMs, limits.serverCallMsMax);
  const expire = () => {
    timedOut = true;
    settle.fail(
      new RegionDbError(
        ErrorCode.DeadlineExceeded,
        own ? `the server gave up after ${limitMs} ms; the outcome is unknown` : `the operation's deadline (timeout_ms ${limitMs}) passed; for a write the outcome is unknown`,
      ),
    );
  };
  // The real loop's timer, unref'd (it never keeps a process alive), unless the caller runs on its own scheduler (a test's hand clock).
  let timer: TimerHandle;
  if (scheduler) timer = scheduler.setTimeout(expire, limitMs);
  else {
    const t = setTimeout(expire, limitMs);
    t.unref();
    timer = { cancel: () => clearTimeout(t) };
  }
  return operation()
    .then(
      (result) => {
        if (!timedOut) settle.ok(result);
      },
      (err: unknown) => {
        if (!timedOut) settle.fail(err);
      },
    )
    .finally(() => timer.cancel());
}

/**
 * How long one Database.Batch operation may run, from when the server read it: the caller's
 * BatchRequest.timeout_ms capped by limits.serverCallMsMax; 0 (not sent, an older client) is the
 * server's limit alone, as for a unary call without a deadline.
 */
export function batchOperationTimeoutMs(timeoutMs: number | undefined): number {
  return timeoutMs !== undefined && timeoutMs > 0 ? Math.min(timeoutMs, limits.serverCallMsMax) : limits.serverCallMsMax;
}

/**
 * Ends a server stream with an error status. grpc-js sends the status from the stream's
 * 'error' event; `destroy(err)` would skip it and leave the client waiting for its deadline.
 */
export function failStream(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, error: Partial<grpc.ServiceError>): void {
  call.emit('error', Object.assign(new Error(error.details ?? 'error'), error));
}

/**
 * What `write` of a server-streaming call rejects with once the caller has cancelled the call
 * (or its deadline passed): the handler stops reading at its next message instead of producing
 * the rest for nobody. Nothing of it reaches the caller, who has gone.
 */
export function callCancelled(): RegionDbError {
  return new RegionDbError(ErrorCode.Unavailable, 'the caller cancelled the call');
}

/**
 * Server-streaming methods: write chunks, end, or emit a mapped error. The handler gets a
 * signal aborted when the caller cancels (for the waits that write does not cover: a forwarded
 * call upstream, a long stretch of filtered-out rows), and `write` rejects with callCancelled()
 * on a cancelled call (grpc-js accepts writes to a cancelled call and drops them).
 */
export function serverStream<Req, Res>(
  handler: (request: Req, write: (chunk: Res) => Promise<void>, call: grpc.ServerWritableStream<Req, Res>, cancelled: AbortSignal) => Promise<void>,
  log: Logger,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const abort = new AbortController();
    if (call.cancelled) abort.abort();
    else call.once('cancelled', () => abort.abort());
    // Backpressure with a bound: a reader that stops taking messages (or goes away) must not
    // hold the handler, and what it iterates over, forever.
    const write = (chunk: Res): Promise<void> =>
      new Promise((resolve, reject) => {
        if (call.cancelled) return reject(callCancelled());
        if (call.write(chunk)) return resolve();
        const done = () => {
          clearTimeout(timer);
          call.off('drain', done);
          call.off('cancelled', done);
          if (call.cancelled) reject(callCancelled());
          else resolve();
        };
        const timer = setTimeout(() => {
          call.off('drain', done);
          call.off('cancelled', done);
          reject(new RegionDbError(ErrorCode.DeadlineExceeded, `the reader took no message for ${limits.streamStallMsMax} ms; stream closed`));
        }, limits.streamStallMsMax);
        call.once('drain', done);
        call.once('cancelled', done);
      });
    const finished = observeCall(call);
    const fail = (err: unknown) => {
      if (call.cancelled) return finished(grpc.status.CANCELLED); // nobody to answer
      const error = toServiceError(err, log);
      finished(error.code ?? grpc.status.UNKNOWN);
      failStream(call, error);
    };
    const malformed = malformedError(call.request);
    if (malformed) return fail(malformed);
    handler(call.request, write, call, abort.signal).then(() => {
      finished(call.cancelled ? grpc.status.CANCELLED : grpc.status.OK);
      call.end();
    }, fail);
  };
}

export { RegionDbError };

/** Whether a call failed because the server has no such method (gRPC UNIMPLEMENTED, 12), as thrown or as a cause. */
export function isUnimplemented(err: unknown): boolean {
  const UNIMPLEMENTED = 12;
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === UNIMPLEMENTED) return true;
  }
  return false;
}
