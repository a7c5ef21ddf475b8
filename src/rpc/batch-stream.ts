// The client end of a Database.Batch stream, shared by the client library (src/client) and by
// datanodes forwarding rows to region leaders (src/datanode/router.ts).
import * as grpc from '@grpc/grpc-js';
import { type Scheduler, type TimerHandle, systemScheduler } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { BatchResponse__Output } from './generated/index.js';
import { TRANSPORT_DETAIL, failedInTransit, fromBatchError, fromGrpcError, refusedAsOpened } from './status.js';

export type BatchKind = 'write' | 'delete' | 'get';

/** BatchRequest.timeout_ms for a wait of `timeoutMs`: whole ms, at least 1 (0 would mean the server's limit), at most uint32's range. */
export function wireTimeoutMs(timeoutMs: number): number {
  if (!Number.isFinite(timeoutMs)) return 0;
  return Math.min(0xffff_ffff, Math.max(1, Math.ceil(timeoutMs)));
}

/** Codes that already leave an operation's outcome unknown. */
const OUTCOME_UNKNOWN: ReadonlySet<string> = new Set([ErrorCode.Unavailable, ErrorCode.DeadlineExceeded, ErrorCode.Internal]);

interface PendingOperation {
  readonly kind: BatchKind;
  readonly resolve: (response: unknown) => void;
  readonly reject: (err: RegionDbError) => void;
  readonly timer: TimerHandle;
}

/**
 * The client end of one Database.Batch stream (see database.proto): operations multiplexed by
 * id over a stream opened on first use and reopened after it breaks. A broken stream fails its
 * operations in flight with its status (UNAVAILABLE when the connection went), which the retry
 * loop treats like a failed unary call (writes keep their request ids, so a retry is applied at
 * most once).
 */
export class BatchStream {
  private stream: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  private readonly pending = new Map<string, PendingOperation>();
  private nextId = 1;
  /** The server refused the stream itself (no Batch method, or no write access): use unary calls. */
  refused = false;

  /**
   * `metadata`: sent when the stream opens (a forwarding datanode marks its streams).
   * `scheduler`: what times an operation's wait for its answer (the Router passes its clock).
   */
  constructor(
    private readonly client: grpc.Client,
    private readonly metadata?: () => grpc.Metadata,
    private readonly scheduler: Scheduler = systemScheduler,
  ) {}

  /** Operations waiting for their answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * `timeoutMs`: how long this end waits for the answer; sent with the operation
   * (BatchRequest.timeout_ms), so that the server gives up when this end does, as it would at a
   * unary call's deadline, instead of running on under its own limit.
   */
  request<T>(kind: BatchKind, body: unknown, timeoutMs: number): Promise<T> {
    const stream = this.open();
    const id = String(this.nextId++);
    return new Promise<T>((resolve, reject) => {
      const timer = this.scheduler.setTimeout(() => {
        this.pending.delete(id);
        reject(new RegionDbError(ErrorCode.DeadlineExceeded, `no answer within ${timeoutMs} ms; for a write the outcome is unknown`));
      }, timeoutMs);
      this.pending.set(id, { kind, resolve: resolve as (r: unknown) => void, reject, timer });
      stream.write({ id, [kind]: body, timeout_ms: wireTimeoutMs(timeoutMs) });
    });
  }

  private open(): grpc.ClientDuplexStream<unknown, unknown> {
    if (this.stream) return this.stream;
    const stream = (this.client as unknown as { Batch(m?: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown> }).Batch(this.metadata?.());
    stream.on('data', (res: BatchResponse__Output) => {
      const op = this.pending.get(res.id);
      if (!op) return; // timed out already
      this.pending.delete(res.id);
      op.timer.cancel();
      if (res.response === 'error' && res.error) op.reject(fromBatchError(res.error));
      else op.resolve(res[op.kind]);
    });
    const broken = (err?: unknown) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      const code = (err as Partial<grpc.ServiceError> | undefined)?.code;
      if (code === grpc.status.UNIMPLEMENTED || code === grpc.status.PERMISSION_DENIED) this.refused = true;
      // Operations in flight fail as a unary call would have with the stream's status — when that
      // status says nothing ran (the stream refused as it opened) or the outcome is unknown. Any
      // other status is the stream's, not theirs (a message over the size limit, one malformed,
      // perhaps another request's on this shared stream): they may be applying, so it is unknown.
      // Closed without a status while operations were in flight: none of them was answered, a
      // failure of the call as a lost connection is (TRANSPORT_DETAIL). A status keeps the mark
      // it has: set when no regiondb handler made it, absent when one did (the server failed the
      // stream itself).
      const status = err
        ? fromGrpcError(err)
        : new RegionDbError(ErrorCode.Unavailable, 'the Batch stream was closed by the server', { details: { [TRANSPORT_DETAIL]: 'true' } });
      const failure =
        refusedAsOpened(code) || OUTCOME_UNKNOWN.has(status.code)
          ? status
          : new RegionDbError(ErrorCode.Unavailable, `the Batch stream failed (${status.code}: ${status.message}); an operation in flight on it may have been applied`, {
              cause: err,
              details: failedInTransit(status) ? { [TRANSPORT_DETAIL]: 'true' } : {},
            });
      for (const op of this.pending.values()) {
        op.timer.cancel();
        op.reject(failure);
      }
      this.pending.clear();
    };
    stream.on('error', broken);
    stream.on('end', () => broken());
    this.stream = stream;
    return stream;
  }

  close(): void {
    const stream = this.stream;
    this.stream = undefined;
    if (!stream) return;
    stream.on('error', () => {}); // the cancellation itself
    stream.cancel();
  }
}
