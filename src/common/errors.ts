// Stable error codes. Codes are API: clients and tests match on them, never on messages.
// src/rpc/status.ts is the only place that maps these to gRPC status codes.

export const ErrorCode = {
  InvalidArgument: 'INVALID_ARGUMENT',
  NotFound: 'NOT_FOUND',
  AlreadyExists: 'ALREADY_EXISTS',
  NotLeader: 'NOT_LEADER',
  ProposalDropped: 'PROPOSAL_DROPPED',
  ResourceExhausted: 'RESOURCE_EXHAUSTED',
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  Unavailable: 'UNAVAILABLE',
  ConditionFailed: 'CONDITION_FAILED',
  /**
   * A retried write whose (client, request id) the region no longer remembers: it may or may not
   * have been applied, and it was not applied again. Not retriable; read to learn the outcome.
   */
  RequestTooOld: 'REQUEST_TOO_OLD',
  Corruption: 'CORRUPTION',
  StorageCompacted: 'STORAGE_COMPACTED',
  StorageUnavailable: 'STORAGE_UNAVAILABLE',
  Config: 'CONFIG',
  Internal: 'INTERNAL',
  /** No credentials, unknown user, wrong password or token, or no valid peer certificate. */
  Unauthenticated: 'UNAUTHENTICATED',
  /** Authenticated, but the role does not allow this call (e.g. a read-only user writing). */
  PermissionDenied: 'PERMISSION_DENIED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class RegionDbError extends Error {
  override name = 'RegionDbError';
  readonly code: ErrorCode;
  /** Optional structured details (e.g. leader hint for NOT_LEADER). */
  readonly details: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, string> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }
}

export function isRegionDbError(err: unknown, code?: ErrorCode): err is RegionDbError {
  return err instanceof RegionDbError && (code === undefined || err.code === code);
}
