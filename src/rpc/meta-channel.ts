// The caller's side of a metasrv group (docs/metasrv-ha.md, "Clients and datanodes";
// docs/clients.md, "Metasrv address lists"): datanodes, the client library and the CLI call the
// metasrv through one MetaChannel over a list of addresses. One member leads and serves; the
// others answer every Meta call NOT_LEADER, with the leader's address when they know it.
//
// One call has one deadline, measured on the injected monotonic clock, and runs attempts:
//   1. The first attempt goes to the address that last answered as leader (at first, the first).
//   2. NOT_LEADER with a leader hint: the next attempt goes at once to the hinted address (added
//      to the list if new). NOT_LEADER without one (an election): the next address.
//   3. UNAVAILABLE from the transport before the request left (connection refused, no
//      connection): the next address. Nothing ran, so this is safe for every call.
//   4. An attempt whose outcome is unknown (DEADLINE_EXCEEDED; a connection broken after the
//      request was sent): an idempotent call goes on to the next address; any other call fails
//      at once, saying that the outcome is unknown (never that it failed: it may have run).
//   5. Anything else is the metasrv's answer (NOT_FOUND, ALREADY_EXISTS, its own UNAVAILABLE...)
//      and is thrown as it came.
//   6. After as many failed attempts in a row as there are addresses (a full cycle, or hints
//      going round), the call backs off, doubling from limits.metaChannelBackoffMsMin to ...Max.
//      No attempt starts past the deadline; the call then fails with the last error, naming the
//      addresses it tried. A `singlePass` call fails there instead of backing off.
// An idempotent attempt waits at most attemptTimeoutMs (a black-holed address must not eat the
// whole budget); any other attempt, and every attempt when there is one address, gets all the
// time left. With one address the channel behaves as one client and `call` did before, except
// that NOT_LEADER and refused connections are retried until the deadline.
import type * as grpc from '@grpc/grpc-js';
import { assert } from '../common/assert.js';
import { type Clock, systemClock } from '../common/clock.js';
import { isHostPort, parseMetasrvAddrs } from '../common/config.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { metaService } from './meta-wire.js';
import { type ClientSecurity, call, makeClient } from './server.js';
import { ERROR_CODE_KEY, fromGrpcError } from './status.js';

export { parseMetasrvAddrs };

/** Per-attempt timeout of idempotent calls when the caller gives none. */
const DEFAULT_ATTEMPT_TIMEOUT_MS = 3000;

/**
 * Transport statuses (no regiondb error code) of calls that never left this process: grpc-js's
 * pick failures (refused, unresolvable, closed channel) and a stream the server refused before
 * reading it. Any other transport failure may come after the request was sent.
 */
const NOT_SENT_DETAILS = [/No connection established/, /^Channel closed before call started/, /^Stream refused by server/, /^Name resolution failed/];
/** Below this much budget no further attempt is started after only refusals (see call()). */
const MIN_LAST_ATTEMPT_MS = 100;

export interface MetaChannelOptions {
  /** Monotonic time for the deadline of each call (default: the process's). */
  readonly clock?: Clock;
  /** Longest attempt of an idempotent call while other addresses remain to try. */
  readonly attemptTimeoutMs?: number;
}

export interface MetaCallOptions {
  /**
   * True when running the call twice is the same as running it once (reads, registration,
   * heartbeats): it may then be sent to another address after an attempt of unknown outcome.
   */
  readonly idempotent: boolean;
  /**
   * At most one attempt per address (hints followed), then fail instead of backing off and
   * going round again: for a caller with a fallback (cached routes) or a retry loop of its own,
   * which must not wait for the metasrv longer than one try.
   */
  readonly singlePass?: boolean;
}

/** What one failed attempt means for the call. */
type Verdict =
  | { readonly kind: 'answer' }
  | { readonly kind: 'leader-hint'; readonly addr: string }
  | { readonly kind: 'next' }
  | { readonly kind: 'outcome-unknown' };

export class MetaChannel {
  private readonly list: string[];
  /** Index in `list` of the address believed to lead: the last that answered, or was named by a hint. */
  private current = 0;
  private readonly clients = new Map<string, grpc.Client>();
  private readonly clock: Clock;
  private readonly attemptTimeoutMs: number;
  private closed = false;

  constructor(
    addrs: string | readonly string[],
    private readonly security: ClientSecurity = {},
    options: MetaChannelOptions = {},
  ) {
    this.list = parseMetasrvAddrs(addrs);
    this.clock = options.clock ?? systemClock;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    assert(this.attemptTimeoutMs > 0, `attemptTimeoutMs must be positive, got ${this.attemptTimeoutMs}`);
  }

  /** The address currently believed to lead the metasrv group. */
  get leaderAddr(): string {
    return this.list[this.current]!;
  }

  /** Every address known: the configured ones, then leaders learned from hints. */
  get addrs(): readonly string[] {
    return [...this.list];
  }

  /** Calls Meta.`method`, following the leader; see the rules at the top of this file. */
  async call<Res>(method: string, request: unknown, timeoutMs: number, options: MetaCallOptions): Promise<Res> {
    assert(Number.isFinite(timeoutMs), `a metasrv call needs a finite deadline, got ${timeoutMs}`);
    const deadlineMs = this.clock.nowMs() + timeoutMs;
    const tried: string[] = [];
    let index = this.current;
    let failedInRow = 0;
    let backoffMs: number = limits.metaChannelBackoffMsMin;
    /** The previous attempt's error, and whether every attempt so far surely did not run (refused before it was sent, or NOT_LEADER). */
    let previous: RegionDbError | undefined;
    let nothingRan = true;
    for (;;) {
      if (this.closed) throw new RegionDbError(ErrorCode.Unavailable, `the metasrv channel to ${this.list.join(', ')} is closed`);
      // An attempt with only a sliver of the budget left would time out connecting, and a timeout
      // reads as "outcome unknown": after only refusals, say what they said (nothing was applied).
      if (previous && nothingRan && deadlineMs - this.clock.nowMs() < MIN_LAST_ATTEMPT_MS) throw this.expired(method, `within ${timeoutMs} ms`, tried, previous);
      assert(index >= 0 && index < this.list.length && this.list.length <= limits.metasrvAddrsMax, `address index ${index} of ${this.list.length}`);
      const addr = this.list[index]!;
      if (!tried.includes(addr)) tried.push(addr);
      // At least 1 ms: the first attempt always goes out, as a single call did before.
      const remainingMs = Math.max(1, deadlineMs - this.clock.nowMs());
      const attemptMs = options.idempotent && this.list.length > 1 ? Math.min(remainingMs, this.attemptTimeoutMs) : remainingMs;
      let last: RegionDbError;
      try {
        const res = await call<Res>(this.clientFor(addr), method, request, attemptMs);
        this.current = index;
        return res;
      } catch (err) {
        last = fromGrpcError(err);
        previous = last;
        const verdict = this.verdictOf(err, last);
        if (verdict.kind !== 'next' && verdict.kind !== 'leader-hint') nothingRan = false;
        switch (verdict.kind) {
          case 'answer':
            throw last;
          case 'outcome-unknown':
            // One address and a timeout: the whole budget went to that one attempt, as before.
            if (!options.idempotent || (this.list.length === 1 && last.code === ErrorCode.DeadlineExceeded)) throw this.outcomeUnknown(method, addr, last);
            index = (index + 1) % this.list.length;
            break;
          case 'leader-hint': {
            const hinted = this.learn(verdict.addr);
            if (hinted === undefined) {
              index = (index + 1) % this.list.length; // no room to remember it: as if no hint
            } else {
              this.current = hinted;
              index = hinted;
            }
            break;
          }
          case 'next':
            index = (index + 1) % this.list.length;
            break;
        }
      }
      failedInRow++;
      const nowMs = this.clock.nowMs();
      if (nowMs >= deadlineMs) throw this.expired(method, `within ${timeoutMs} ms`, tried, last);
      if (failedInRow >= this.list.length) {
        if (options.singlePass) throw this.expired(method, 'in one pass', tried, last);
        if (nowMs + backoffMs >= deadlineMs) throw this.expired(method, `within ${timeoutMs} ms`, tried, last);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(limits.metaChannelBackoffMsMax, backoffMs * 2);
        failedInRow = 0;
      }
    }
  }

  /**
   * The caller refused the answer of the address it took for the leader (an older epoch than it
   * has seen, a single metasrv beside a group): the next call starts at the next address, instead
   * of asking the same one again and again.
   */
  passOver(): void {
    if (this.list.length > 1) this.current = (this.current + 1) % this.list.length;
  }

  /** Closes every connection this channel opened; later calls fail UNAVAILABLE. */
  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private clientFor(addr: string): grpc.Client {
    let client = this.clients.get(addr);
    // Heartbeat with the hand-written codec (src/rpc/meta-wire.ts): the same bytes, a fraction of the CPU.
    if (!client) this.clients.set(addr, (client = makeClient('Meta', addr, this.security, metaService())));
    return client;
  }

  private verdictOf(thrown: unknown, e: RegionDbError): Verdict {
    const fromServer = ((thrown as Partial<grpc.ServiceError>).metadata?.get(ERROR_CODE_KEY).length ?? 0) > 0;
    if (e.code === ErrorCode.NotLeader) {
      const hint = e.details['leaderAddr'];
      return hint && isHostPort(hint) ? { kind: 'leader-hint', addr: hint } : { kind: 'next' };
    }
    if (e.code === ErrorCode.DeadlineExceeded) return { kind: 'outcome-unknown' };
    if (fromServer) return { kind: 'answer' }; // the leader's own refusal, UNAVAILABLE included
    if (e.code === ErrorCode.Unavailable) {
      const details = (thrown as Partial<grpc.ServiceError>).details ?? '';
      return NOT_SENT_DETAILS.some((pattern) => pattern.test(details)) ? { kind: 'next' } : { kind: 'outcome-unknown' };
    }
    return { kind: 'answer' };
  }

  /** The index of `addr` in the list, added if new and there is room; undefined when full. */
  private learn(addr: string): number | undefined {
    const known = this.list.indexOf(addr);
    if (known >= 0) return known;
    if (this.list.length >= limits.metasrvAddrsMax) return undefined;
    this.list.push(addr);
    return this.list.length - 1;
  }

  private outcomeUnknown(method: string, addr: string, last: RegionDbError): RegionDbError {
    return new RegionDbError(last.code, `${method} at metasrv ${addr}: ${last.message}; the outcome is unknown (it may have been applied)`, {
      cause: last,
      details: { ...withoutLeader(last.details), outcome: 'unknown' },
    });
  }

  /**
   * The budget ran out. A NOT_LEADER becomes UNAVAILABLE without its hint: the hint names a
   * metasrv, and a caller (or a datanode passing the error on) would take it for a region leader.
   */
  private expired(method: string, when: string, tried: readonly string[], last: RegionDbError): RegionDbError {
    const code = last.code === ErrorCode.NotLeader ? ErrorCode.Unavailable : last.code;
    return new RegionDbError(code, `${method}: no metasrv leader answered ${when} (tried ${tried.join(', ')}); last error: ${last.message}`, {
      cause: last,
      details: withoutLeader(last.details),
    });
  }
}

function withoutLeader(details: Readonly<Record<string, string>>): Record<string, string> {
  const { leaderAddr: _addr, leaderNodeId: _id, ...rest } = details;
  return rest;
}
