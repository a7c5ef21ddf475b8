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
import type { Logger } from '../common/logger.js';

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

interface ParsedHash {
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

async function verifyPassword(parsed: ParsedHash, password: string): Promise<boolean> {
  const candidate = await scryptAsync(password, parsed.salt, parsed.hash.length, parsed.params);
  return timingSafeEqual(candidate, parsed.hash);
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

  constructor(
    readonly file: string,
    private readonly log?: Logger,
  ) {
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

  /** The principal behind a header, or UNAUTHENTICATED (no header, bad scheme, wrong secret). */
  async authenticate(header: string | undefined): Promise<Principal> {
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
    const principal = await this.check(header);
    // Checked against the users before a reload that came meanwhile: answer this call, cache nothing.
    if (generation === this.generation) {
      this.cache.delete(key);
      this.cache.set(key, { principal, expiresAtMs: now + authLimits.cacheTtlMs });
      if (this.cache.size > authLimits.cacheEntriesMax) this.cache.delete(this.cache.keys().next().value!);
    }
    if (!principal) throw unauthenticated('invalid credentials');
    return principal;
  }

  private async check(header: string): Promise<Principal | null> {
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
    const ok = await verifyPassword(entry?.hash ?? (await this.decoy), decoded.slice(colon + 1));
    return ok && entry ? { name: user, role: entry.role, via: 'password' } : null;
  }
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
 * A client interceptor adding `authorization`: the fixed one given (a client's own
 * credentials), or else the one of the call being served (a node forwarding for a client).
 */
export function authorizationInterceptor(fixed?: string): grpc.Interceptor {
  return (options, nextCall) => {
    // Read at call creation, which grpc-js does synchronously in the caller's async context.
    const authorization = fixed ?? callContext.getStore()?.authorization;
    if (!authorization) return new grpc.InterceptingCall(nextCall(options));
    return new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get(AUTHORIZATION_KEY).length === 0) metadata.set(AUTHORIZATION_KEY, authorization);
        next(metadata, listener);
      },
    });
  };
}
