// Client authentication (docs/security.md): static users with salted scrypt password hashes and
// bearer tokens (stored as sha256), read from a TOML or JSON file that is reloaded on change.
//
// Credentials travel in the `authorization` gRPC metadata: `Basic base64(user:password)` or
// `Bearer <token>`. A node that forwards a request on a client's behalf (DDL to the metasrv,
// route lookups, scans of regions hosted elsewhere) forwards the same header: the handler runs
// inside `callContext`, and every client made by `makeClient` adds the header of the call it is
// serving. So each hop checks the same user, with no trusted "internal" bypass.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { type Clock, systemClock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { SingleFlight } from '../common/single-flight.js';

export const AUTHORIZATION_KEY = 'authorization';

/**
 * Set by a datanode on the calls it makes to forward a client's Write/Delete/Get (src/datanode/
 * router.ts), value its node id. The receiving node then authorizes the forwarded
 * `authorization` header as it would the client's own call, node certificate or not, and does
 * not forward again (one hop: a stale route ends in NOT_LEADER, which the forwarder retries).
 */
export const FORWARDED_BY_KEY = 'regiondb-forwarded-by';

/**
 * read-write: reads, writes, DDL. read-only: reads. replicator: reads and the standby stream
 * (StandbyShip / StandbySeed / StandbySeedObject), nothing else: the user a primary site's
 * shipper presents to its standby site (docs/replication.md, "Between the sites").
 */
export const ROLES = ['read-write', 'read-only', 'replicator'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a call needs: any user (read), a user allowed to write (write, ddl), a replicator (ship:
 * a primary site's shipper), or a cluster node (peer).
 */
export type Access = 'read' | 'write' | 'ddl' | 'ship' | 'peer';

export interface Principal {
  readonly name: string;
  readonly role: Role;
  readonly via: 'password' | 'token';
}

export function roleAllows(role: Role, access: Exclude<Access, 'peer'>): boolean {
  if (access === 'read') return true;
  // A dedicated permission: a client's write user cannot inject raft entries into a standby, and
  // the shipper's user cannot write rows or change tables.
  if (access === 'ship') return role === 'replicator';
  return role === 'read-write';
}

export const authLimits = {
  /** Longer authorization headers are rejected before any parsing. */
  headerBytesMax: 4096,
  /** Verified credentials remembered (scrypt is deliberately slow: ~50 ms). */
  cacheEntriesMax: 10_000,
  cacheTtlMs: 60_000,
  saltBytes: 16,
  hashBytes: 32,
  /**
   * Failed password logins (scrypt runs that did not match) allowed per user name and peer
   * address before that pair is locked out; verifications in flight count against it.
   */
  loginFailuresFree: 5,
  /** The first lockout; each further failure doubles it, up to loginLockoutMsMax. */
  loginLockoutMsBase: 1000,
  loginLockoutMsMax: 60_000,
  /** A pair's failures are forgotten this long after its last one (and at its next success). */
  loginFailureMemoryMs: 15 * 60_000,
  /** (user, peer address) pairs remembered; beyond it the one that failed least recently goes. */
  loginPairsMax: 10_000,
} as const;

/**
 * scrypt cost of new hashes: the scrypt paper's interactive-login parameters (~50 ms, 16 MiB).
 * A verified header is cached (authLimits), so a client pays this once, not on every call.
 */
const SCRYPT = { N: 16_384, r: 8, p: 1 } as const;

// ─── Password hashes ──────────────────────────────────────────────────────────────────────────

function scryptAsync(password: string, salt: Buffer, keyLength: number, params: { N: number; r: number; p: number }): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, keyLength, { ...params, maxmem: 256 * params.N * params.r }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** `scrypt$N$r$p$<salt base64>$<hash base64>` for a new random salt. */
export async function hashPassword(password: string): Promise<string> {
  if (password.length === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'the password is empty');
  const salt = randomBytes(authLimits.saltBytes);
  const hash = await scryptAsync(password, salt, authLimits.hashBytes, SCRYPT);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

export interface ParsedHash {
  readonly params: { N: number; r: number; p: number };
  readonly salt: Buffer;
  readonly hash: Buffer;
}

const HASH_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

function parseHash(text: string, where: string): ParsedHash {
  const m = HASH_FORMAT.exec(text);
  if (!m) throw new RegionDbError(ErrorCode.Config, `${where}: password_hash must look like scrypt$N$r$p$salt$hash (see regiondb users hash-password)`);
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Bounds keep a hostile users file from making every login allocate gigabytes.
  if (!(N >= 1024 && N <= 1 << 20 && (N & (N - 1)) === 0 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) {
    throw new RegionDbError(ErrorCode.Config, `${where}: scrypt parameters N=${N} r=${r} p=${p} are out of range`);
  }
  const hash = Buffer.from(m[5]!, 'base64');
  if (hash.length < 16 || hash.length > 64) throw new RegionDbError(ErrorCode.Config, `${where}: hash of ${hash.length} bytes`);
  return { params: { N, r, p }, salt: Buffer.from(m[4]!, 'base64'), hash };
}

async function verifyScrypt(parsed: ParsedHash, password: string): Promise<boolean> {
  const candidate = await scryptAsync(password, parsed.salt, parsed.hash.length, parsed.params);
  return timingSafeEqual(candidate, parsed.hash);
}

/** The address of a gRPC peer (`host:port`, as grpc-js getPeer gives it) without its port: one client machine, whatever connection. */
export function peerAddress(peer: string | undefined): string {
  if (peer === undefined) return '';
  const port = /:\d+$/.exec(peer);
  return port && port.index > 0 ? peer.slice(0, port.index) : peer;
}

/** Failed logins of one (user, peer address) pair. */
interface LoginFailures {
  failures: number;
  /** Verifications of this pair running now (distinct headers: identical ones share one). */
  inFlight: number;
  lockedUntilMs: number;
  lastFailureMs: number;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A new random bearer token (shown once) and the sha256 the users file stores. */
export function newToken(): { token: string; sha256: string } {
  const token = `rdb_${randomBytes(32).toString('base64url')}`;
  return { token, sha256: sha256Hex(token) };
}

// ─── The users file ───────────────────────────────────────────────────────────────────────────

const name = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^:\s]+$/, 'no colons or spaces');
const role = z.enum(ROLES);
const usersFileSchema = z
  .object({
    users: z.array(z.object({ name, role, password_hash: z.string() }).strict()).default([]),
    tokens: z.array(z.object({ name, role, token_sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 hex digits') }).strict()).default([]),
  })
  .strict();

interface UserEntry {
  readonly role: Role;
  readonly hash: ParsedHash;
}

interface LoadedUsers {
  readonly users: Map<string, UserEntry>;
  readonly tokens: { name: string; role: Role; sha256: Buffer }[];
}

function loadUsersFile(file: string): LoadedUsers {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `cannot read users file ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseToml(text);
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `users file ${file}: ${(err as Error).message}`);
  }
  const parsed = usersFileSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new RegionDbError(ErrorCode.Config, `users file ${file}: ${problems.join('; ')}`);
  }
  const users = new Map<string, UserEntry>();
  parsed.data.users.forEach((u, i) => {
    if (users.has(u.name)) throw new RegionDbError(ErrorCode.Config, `users file ${file}: user ${u.name} appears twice`);
    users.set(u.name, { role: u.role, hash: parseHash(u.password_hash, `users file ${file}: users[${i}] (${u.name})`) });
  });
  const tokens = parsed.data.tokens.map((t) => ({ name: t.name, role: t.role, sha256: Buffer.from(t.token_sha256, 'hex') }));
  return { users, tokens };
}

/** Checks `authorization` headers against the users file. */
export class UserStore {
  private loaded: LoadedUsers;
  /** sha256(header) → outcome, bounded and short-lived; cleared when the file changes. */
  private readonly cache = new Map<string, { principal: Principal | null; expiresAtMs: number }>();
  /** The file poller's listener, while watching. */
  private onChange: (() => void) | undefined;
  /** Verified against when a user is unknown, so the answer takes as long as for a known one. */
  private readonly decoy: Promise<ParsedHash>;
  /** Bumped by every reload taken: a verification that began before one is not cached. */
  private generation = 0;
  /** Verifications running, by generation and header: concurrent calls with one header share one scrypt. */
  private readonly verifying = new SingleFlight<string, Principal | null>();
  /** Failed logins by (user, peer address), least recently failed first; bounded by loginPairsMax. */
  private readonly loginFailures = new Map<string, LoginFailures>();
  private readonly clock: Clock;

  constructor(
    readonly file: string,
    private readonly log?: Logger,
    /** `clock`: monotonic time of the login lockouts (default the process's). */
    options: { readonly clock?: Clock } = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.loaded = loadUsersFile(file);
    this.decoy = hashPassword(randomBytes(16).toString('hex')).then((h) => parseHash(h, 'decoy'));
  }

  get userCount(): number {
    return this.loaded.users.size + this.loaded.tokens.length;
  }

  /** Re-reads the file; a broken file is logged and the previous users stay in force. */
  reload(): boolean {
    try {
      this.loaded = loadUsersFile(this.file);
    } catch (err) {
      this.log?.error({ err: (err as Error).message }, 'users file reload failed; keeping the current users');
      return false;
    }
    this.generation++;
    this.cache.clear();
    this.log?.info({ file: this.file, users: this.loaded.users.size, tokens: this.loaded.tokens.length }, 'users file reloaded');
    return true;
  }

  watch(intervalMs: number): void {
    if (intervalMs <= 0 || this.onChange) return;
    const onChange = () => void this.reload();
    this.onChange = onChange;
    watchFile(this.file, { interval: intervalMs, persistent: false }, onChange);
  }

  close(): void {
    if (this.onChange) unwatchFile(this.file, this.onChange);
    this.onChange = undefined;
  }

  /** (user, peer address) pairs with failed logins remembered now (bounded by authLimits.loginPairsMax). */
  get loginPairsTracked(): number {
    return this.loginFailures.size;
  }

  /**
   * The principal behind a header, or UNAUTHENTICATED (no header, bad scheme, wrong secret, or
   * too many failed logins of this user from `peer`, the caller's `host:port`).
   */
  async authenticate(header: string | undefined, peer?: string): Promise<Principal> {
    if (!header) throw unauthenticated('credentials required: send `authorization: Basic base64(user:password)` or `Bearer <token>`');
    if (header.length > authLimits.headerBytesMax) throw unauthenticated('authorization header too long');
    const key = sha256Hex(header);
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && cached.expiresAtMs > now) {
      if (!cached.principal) throw unauthenticated('invalid credentials');
      return cached.principal;
    }
    const generation = this.generation;
    const principal = await this.verifying.run(`${generation} ${key}`, () => this.check(header, peer));
    // Checked against the users before a reload that came meanwhile: answer this call, cache nothing.
    if (generation === this.generation) {
      this.cache.delete(key);
      this.cache.set(key, { principal, expiresAtMs: now + authLimits.cacheTtlMs });
      if (this.cache.size > authLimits.cacheEntriesMax) this.cache.delete(this.cache.keys().next().value!);
    }
    if (!principal) throw unauthenticated('invalid credentials');
    return principal;
  }

  private async check(header: string, peer: string | undefined): Promise<Principal | null> {
    const space = header.indexOf(' ');
    const scheme = header.slice(0, space).toLowerCase();
    const value = header.slice(space + 1).trim();
    if (space < 0 || !value) throw unauthenticated('malformed authorization header');
    if (scheme === 'bearer') {
      const digest = createHash('sha256').update(value).digest();
      let found: Principal | null = null;
      for (const t of this.loaded.tokens) if (timingSafeEqual(t.sha256, digest)) found = { name: t.name, role: t.role, via: 'token' };
      return found;
    }
    if (scheme !== 'basic') throw unauthenticated(`unsupported authorization scheme ${JSON.stringify(scheme)}; use Basic or Bearer`);
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw unauthenticated('malformed Basic credentials (expected base64 of user:password)');
    const user = decoded.slice(0, colon);
    const entry = this.loaded.users.get(user);
    const hash = entry?.hash ?? (await this.decoy);
    const pair = this.admitLogin(user, peerAddress(peer));
    let ok = false;
    try {
      ok = await this.verifyPassword(hash, decoded.slice(colon + 1));
    } finally {
      pair.inFlight--;
      this.loginDone(user, peerAddress(peer), pair, ok && entry !== undefined);
    }
    return ok && entry ? { name: user, role: entry.role, via: 'password' } : null;
  }

  /** One scrypt verification (~50 ms on libuv's pool). A seam for tests that count them. */
  protected verifyPassword(parsed: ParsedHash, password: string): Promise<boolean> {
    return verifyScrypt(parsed, password);
  }

  /**
   * Before a password verification of `user` from `address`: refuses (UNAUTHENTICATED, no
   * scrypt run) while the pair is locked out, or when its failures and the verifications it has
   * in flight already fill its budget; else counts this one in flight.
   */
  private admitLogin(user: string, address: string): LoginFailures {
    const key = JSON.stringify([user, address]);
    const now = this.clock.nowMs();
    let pair = this.loginFailures.get(key);
    if (pair && pair.inFlight === 0 && pair.failures > 0 && now - pair.lastFailureMs >= authLimits.loginFailureMemoryMs) {
      this.loginFailures.delete(key);
      pair = undefined;
    }
    if (pair && now < pair.lockedUntilMs) {
      throw lockedOut(user, address, `no password of this user from there is checked for the next ${Math.ceil((pair.lockedUntilMs - now) / 1000)} s`);
    }
    // In flight at once: what is left of the budget, and one at a time once it is spent (each
    // failure then locks the pair out again, for longer).
    if (pair && pair.inFlight >= Math.max(1, authLimits.loginFailuresFree - pair.failures)) {
      throw lockedOut(user, address, `${pair.inFlight} other password${pair.inFlight > 1 ? 's' : ''} of this user from there being checked; retry when they are`);
    }
    if (!pair) {
      pair = { failures: 0, inFlight: 0, lockedUntilMs: 0, lastFailureMs: now };
      this.loginFailures.set(key, pair);
      if (this.loginFailures.size > authLimits.loginPairsMax) this.loginFailures.delete(this.loginFailures.keys().next().value!);
    }
    pair.inFlight++;
    return pair;
  }

  /** After a verification: a success forgets the pair's failures; a failure counts, and from the budget on locks the pair out, doubling. */
  private loginDone(user: string, address: string, pair: LoginFailures, ok: boolean): void {
    const key = JSON.stringify([user, address]);
    if (this.loginFailures.get(key) !== pair) return; // dropped meanwhile (evicted, forgotten): nothing to update
    if (ok) {
      if (pair.inFlight === 0) this.loginFailures.delete(key);
      else Object.assign(pair, { failures: 0, lockedUntilMs: 0 });
      return;
    }
    const now = this.clock.nowMs();
    pair.failures++;
    pair.lastFailureMs = now;
    this.loginFailures.delete(key); // re-inserted last: the map stays ordered by last failure
    this.loginFailures.set(key, pair);
    const over = pair.failures - authLimits.loginFailuresFree;
    if (over >= 0) {
      const lockMs = Math.min(authLimits.loginLockoutMsBase * 2 ** Math.min(over, 30), authLimits.loginLockoutMsMax);
      pair.lockedUntilMs = now + lockMs;
      this.log?.warn({ user, peer: address, failures: pair.failures, lockMs }, 'failed logins: user locked out from this address');
    }
  }
}

/** What a locked-out (user, address) pair is answered, at once. */
function lockedOut(user: string, address: string, why: string): RegionDbError {
  return new RegionDbError(
    ErrorCode.Unauthenticated,
    `too many failed logins of user ${JSON.stringify(user)} from ${address || 'this client'}: ${why}`,
    { details: { loginLockedOut: 'true' } },
  );
}

function unauthenticated(message: string): RegionDbError {
  return new RegionDbError(ErrorCode.Unauthenticated, message);
}

/** The header a client sends for a user or a token. */
export function authorizationHeader(credentials: { user?: string | undefined; password?: string | undefined; token?: string | undefined }): string | undefined {
  if (credentials.token) return `Bearer ${credentials.token}`;
  if (credentials.user !== undefined) return `Basic ${Buffer.from(`${credentials.user}:${credentials.password ?? ''}`).toString('base64')}`;
  return undefined;
}

// ─── Propagation to the calls a handler makes ─────────────────────────────────────────────────

export interface CallContext {
  /** The authorization header of the call being served, forwarded on calls made for it. */
  readonly authorization?: string;
  /**
   * Streams that carry many operations (Database.Batch) call this before each one with the
   * access that operation needs: the stream's access check, run again, so a user demoted or
   * removed by a users-file reload loses access at the next operation, not when the stream
   * happens to reopen. Absent when the process runs without security.
   */
  readonly reauthorize?: (access: Access) => Promise<void>;
}

export const callContext = new AsyncLocalStorage<CallContext>();

/**
 * The interceptors of a client made by `makeClient`, as a grpc-js interceptor provider (asked as
 * each call is created, synchronously in the caller's async context): the fixed header given (a
 * client's own credentials), or else the one of the call being served (a node forwarding for a
 * client). When there is no header to add, which is every call of a process without security, it
 * gives no interceptor, and grpc-js then builds no interceptor layer for the call (grpc-js drops
 * what a provider returns when it is falsy; docs/performance.md, round 7).
 */
export function authorizationInterceptors(fixed?: string): grpc.InterceptorProvider {
  if (fixed !== undefined) {
    const interceptor = fixed ? addAuthorization(fixed) : undefined;
    return (() => interceptor) as grpc.InterceptorProvider;
  }
  return (() => {
    const authorization = callContext.getStore()?.authorization;
    return authorization ? addAuthorization(authorization) : undefined;
  }) as grpc.InterceptorProvider;
}

/**
 * Adds `authorization` unless the call's metadata has one. The metadata is copied first: callers
 * share one empty Metadata between calls (src/rpc/server.ts `call`), which must stay empty.
 */
function addAuthorization(authorization: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get(AUTHORIZATION_KEY).length > 0) {
          next(metadata, listener);
          return;
        }
        const withAuthorization = metadata.clone();
        withAuthorization.set(AUTHORIZATION_KEY, authorization);
        next(withAuthorization, listener);
      },
    });
}
