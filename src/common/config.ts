// TOML configuration, validated strictly (zod): unknown keys and bad values are errors that
// name the file and the key path. CLI flags override file values. Relative paths are taken
// relative to the current working directory (make cluster runs from the repository root).
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { ErrorCode, RegionDbError } from './errors.js';
import { limits } from './limits.js';

const port = z.number().int().min(0).max(65535);
const host = z.string().min(1);
const positiveInt = z.number().int().positive();

/**
 * A list of metasrv addresses (docs/clients.md, "Metasrv address lists"): a comma-separated
 * string ("a:4000,b:4000, c:4000") or an array; each entry trimmed, empty entries skipped,
 * duplicates dropped (first occurrence kept). Every entry must be host:port (an IPv6 host in
 * brackets). Used by the datanode config below, the client library and the CLI (re-exported by
 * src/rpc/meta-channel.ts).
 */
export function parseMetasrvAddrs(spec: string | readonly string[]): string[] {
  const entries = (typeof spec === 'string' ? spec.split(',') : spec.flatMap((s) => s.split(','))).map((s) => s.trim()).filter((s) => s !== '');
  const addrs = [...new Set(entries)];
  const shown = typeof spec === 'string' ? JSON.stringify(spec) : JSON.stringify([...spec]);
  if (addrs.length === 0) throw new RegionDbError(ErrorCode.Config, `metasrv addresses ${shown}: the list is empty; give host:port, or a comma-separated list of them`);
  if (addrs.length > limits.metasrvAddrsMax) {
    throw new RegionDbError(ErrorCode.Config, `metasrv addresses ${shown}: ${addrs.length} addresses, at most ${limits.metasrvAddrsMax}`);
  }
  for (const addr of addrs) {
    if (!isHostPort(addr)) throw new RegionDbError(ErrorCode.Config, `metasrv addresses ${shown}: "${addr}" is not host:port (port 1-65535; an IPv6 host in brackets)`);
  }
  return addrs;
}

/** "host:port", "[v6]:port": what a metasrv address (and a leader hint) must look like. */
export function isHostPort(addr: string): boolean {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(addr);
  if (!m) return false;
  const port = Number(m[2]);
  return port >= 1 && port <= 65_535;
}

const storageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('fs'), root: z.string().min(1) }).strict(),
  z
    .object({
      type: z.literal('s3'),
      endpoint: z.string().url(),
      bucket: z.string().min(1),
      prefix: z.string().default(''),
      region: z.string().default('us-east-1'),
      access_key_id: z.string().min(1),
      secret_access_key: z.string().min(1),
    })
    .strict(),
]);

/**
 * TLS for the gRPC port (docs/security.md). With it, the node's certificate also authenticates
 * this node to its peers (mTLS), and peer services accept only certificates of cluster nodes.
 */
const tlsSchema = z
  .object({
    /** CA that signs every node and client certificate of the cluster (PEM). */
    ca_file: z.string().min(1),
    /** This node's certificate (PEM), used as server and as client towards peers. */
    cert_file: z.string().min(1),
    key_file: z.string().min(1),
    /** "require": every connection presents a certificate signed by the CA; "none": clients need only trust the CA. */
    client_auth: z.enum(['none', 'require']).default('require'),
    /** How often the files are checked for changes (reloaded without a restart; SIGHUP too); 0 = SIGHUP only. */
    reload_check_ms: z.number().int().nonnegative().default(5000),
  })
  .strict();

/** Client authentication (docs/security.md): static users and tokens in a file. */
const authSchema = z.object({ users_file: z.string().min(1) }).strict();

const logSchema = z
  .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'), format: z.enum(['json', 'pretty']).default('json') })
  .strict()
  .default({ level: 'info', format: 'json' });

export const datanodeConfigSchema = z
  .object({
    cluster_id: z.string().min(1).default('regiondb-local'),
    node: z.object({ id: positiveInt, data_dir: z.string().min(1) }).strict(),
    grpc: z.object({ host: host.default('127.0.0.1'), port, advertise_addr: z.string().optional() }).strict(),
    http: z.object({ host: host.default('127.0.0.1'), port }).strict(),
    /**
     * The metasrv group: `addr` (host:port, or a comma-separated list) or `addrs` (an array),
     * exactly one of the two. Parsed to the list the datanode dials (src/rpc/meta-channel.ts).
     */
    metasrv: z
      .object({ addr: z.string().optional(), addrs: z.array(z.string()).optional() })
      .strict()
      .transform((m, ctx) => {
        if ((m.addr === undefined) === (m.addrs === undefined)) {
          ctx.addIssue({
            code: 'custom',
            message: `give exactly one of addr ("host:port", or "a:4000,b:4000") and addrs (["a:4000", "b:4000"]); ${m.addr === undefined ? 'neither is' : 'both are'} set`,
          });
          return z.NEVER;
        }
        try {
          return { addrs: parseMetasrvAddrs(m.addrs ?? m.addr ?? '') };
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
          return z.NEVER;
        }
      }),
    raft: z
      .object({
        tick_ms: positiveInt.default(50),
        election_ticks: positiveInt.default(10),
        heartbeat_ticks: positiveInt.default(2),
        pre_vote: z.boolean().default(true),
        check_quorum: z.boolean().default(true),
        read_only: z.enum(['safe', 'lease']).default('safe'),
        /** Followers learn a new commit index from the next append or heartbeat (docs/performance.md). */
        skip_bcast_commit: z.boolean().default(true),
        snapshot_every_entries: positiveInt.default(20_000),
        /** A leader idle this many ticks quiesces its region (docs/quiescence.md); 0 never quiesces. */
        quiesce_idle_ticks: z.number().int().nonnegative().default(20),
        /** A datanode silent this many ticks is taken as down: followers of its leaders campaign (docs/quiescence.md). */
        node_down_after_ticks: positiveInt.default(8),
        /** A liveness beat to every peer datanode every this many ticks; at most half of node_down_after_ticks (checked below; docs/quiescence.md). 2 awaits a paired failover A/B. */
        beat_every_ticks: positiveInt.default(1),
        /** First campaigns of newly opened replicas a tick beyond a burst allowance (docs/quiescence.md, "Calm first elections"); 0: no spreading. */
        first_campaigns_per_tick: z.number().int().nonnegative().default(4),
        /** Of two overlapping campaigns with equal logs the lower peer id goes on (docs/quiescence.md, "Elections under a stalled loop"). Off until paired failover runs decide. */
        pre_vote_priority: z.boolean().default(false),
        /** A candidate whose timer fired during its vote round still counts that round's grants (same section). Off until paired failover runs decide. */
        late_votes: z.boolean().default(false),
        /**
         * Raft traffic to these datanodes (by node id) goes to the given address instead of the
         * one they advertise: for fault-injection proxies (Jepsen tests) and NAT.
         */
        peer_addr_overrides: z.record(z.string().regex(/^[1-9]\d*$/, 'a datanode id'), z.string().min(1)).default({}),
      })
      .strict()
      .default({
        tick_ms: 50,
        election_ticks: 10,
        heartbeat_ticks: 2,
        pre_vote: true,
        check_quorum: true,
        read_only: 'safe',
        skip_bcast_commit: true,
        snapshot_every_entries: 20_000,
        quiesce_idle_ticks: 20,
        node_down_after_ticks: 8,
        beat_every_ticks: 1,
        first_campaigns_per_tick: 4,
        pre_vote_priority: false,
        late_votes: false,
        peer_addr_overrides: {},
      })
      // The RegionServer asserts this too; here a wrong config is refused with its key named.
      .refine((r) => r.quiesce_idle_ticks === 0 || 2 * r.beat_every_ticks <= r.node_down_after_ticks, {
        path: ['beat_every_ticks'],
        message: 'at most half of raft.node_down_after_ticks (at least two beats must fit in the silence that takes a node as down), unless raft.quiesce_idle_ticks is 0',
      }),
    heartbeat: z.object({ interval_ms: positiveInt.default(1000) }).strict().default({ interval_ms: 1000 }),
    /** Object storage for SSTs and manifests; default: a local directory under node.data_dir. */
    storage: storageSchema.optional(),
    engine: z
      .object({
        /** A region's memtable is flushed to an SST once it holds this many bytes... */
        flush_bytes: positiveInt.default(8 << 20),
        /** ...or once its oldest unflushed write is this old. */
        flush_age_ms: positiveInt.default(300_000),
        /** Writes to a region get RESOURCE_EXHAUSTED while its memtables hold more than this. */
        region_memtable_limit_bytes: positiveInt.default(64 << 20),
        /** ...and to any region while all memtables of the node hold more than this. */
        node_memtable_limit_bytes: positiveInt.default(512 << 20),
        /** Size-tiered compaction (docs/engine.md): a run of this many adjacent SSTs of one size tier is merged into one. */
        compact_at_ssts: z.number().int().min(2).default(6),
        /**
         * Unreferenced SSTs (replaced by compaction, or orphaned by a failed flush) are deleted once
         * nothing may read them, this long after the leader first saw that (docs/engine.md). Scans
         * run at most half of it.
         */
        sst_gc_grace_ms: positiveInt.min(1000).default(600_000),
        /** Bytes of SST data cached in memory. */
        sst_cache_bytes: positiveInt.default(64 << 20),
      })
      .strict()
      .default({
        flush_bytes: 8 << 20,
        flush_age_ms: 300_000,
        region_memtable_limit_bytes: 64 << 20,
        node_memtable_limit_bytes: 512 << 20,
        compact_at_ssts: 6,
        sst_gc_grace_ms: 600_000,
        sst_cache_bytes: 64 << 20,
      }),
    /** Dual active-standby (docs/replication.md): this node's part; absent = no standby stream. */
    standby: z
      .object({
        /** primary: ships to the standby cluster at `addrs`; standby: receives, read-only until promoted. */
        role: z.enum(['primary', 'standby']),
        /** Primary: gRPC addresses of (some of) the standby cluster's datanodes. */
        addrs: z.array(z.string().min(1)).default([]),
        /**
         * Primary: the standby datanodes' advertised addresses (as they name their region leaders)
         * mapped to where this site reaches them (NAT, a proxy between the sites).
         */
        addr_overrides: z.record(z.string().min(1), z.string().min(1)).default({}),
        /** Primary: async (writes acknowledged without waiting for the standby) or sync (only once the standby has them durably). */
        mode: z.enum(['async', 'sync']).default('async'),
        /** Primary: how often each region led here ships (and sends its watermark). */
        ship_interval_ms: positiveInt.default(100),
        /** Standby: how often the cluster-wide safe time is computed and released. */
        release_interval_ms: positiveInt.default(500),
        /**
         * Primary: TLS towards the standby site (docs/replication.md, "Between the sites"): the
         * standby site's CA, and a client certificate that CA signed (needed when the standby
         * requires client certificates). Absent: this node's own [tls] credentials.
         */
        tls: z
          .object({ ca_file: z.string().min(1), cert_file: z.string().min(1).optional(), key_file: z.string().min(1).optional() })
          .strict()
          .optional(),
        /** Primary: the standby site's replicator user: `user` + `password_file`, or `token_file` (files hold the secret). */
        auth: z
          .object({ user: z.string().min(1).optional(), password_file: z.string().min(1).optional(), token_file: z.string().min(1).optional() })
          .strict()
          .optional(),
      })
      .strict()
      .superRefine((s, ctx) => {
        if (s.role === 'primary' && s.addrs.length === 0) ctx.addIssue({ code: 'custom', message: 'a primary needs the standby datanodes\' addrs' });
        if (s.role === 'standby' && (s.tls || s.auth)) ctx.addIssue({ code: 'custom', message: '[standby.tls] and [standby.auth] are a primary\'s credentials towards its standby; a standby uses [tls] and [auth]' });
        if (s.tls && !s.tls.cert_file !== !s.tls.key_file) ctx.addIssue({ code: 'custom', message: '[standby.tls]: give both cert_file and key_file, or neither' });
        if (s.auth && !s.auth.token_file === !s.auth.user) ctx.addIssue({ code: 'custom', message: '[standby.auth]: give either user (with password_file) or token_file' });
        if (s.auth?.user && !s.auth.password_file) ctx.addIssue({ code: 'custom', message: '[standby.auth]: user needs password_file' });
      })
      .optional(),
    tls: tlsSchema.optional(),
    auth: authSchema.optional(),
    log: logSchema,
  })
  .strict();

export const metasrvConfigSchema = z
  .object({
    cluster_id: z.string().min(1).default('regiondb-local'),
    node: z.object({ data_dir: z.string().min(1) }).strict(),
    grpc: z.object({ host: host.default('127.0.0.1'), port }).strict(),
    http: z.object({ host: host.default('127.0.0.1'), port }).strict(),
    failure_detector: z
      .object({
        heartbeat_interval_ms: positiveInt.default(1000),
        phi_threshold: z.number().positive().default(8),
        acceptable_pause_ms: z.number().int().nonnegative().default(500),
        min_std_dev_ms: positiveInt.default(100),
      })
      .strict()
      .default({ heartbeat_interval_ms: 1000, phi_threshold: 8, acceptable_pause_ms: 500, min_std_dev_ms: 100 }),
    /** A datanode unreachable this long gets its replicas re-created on healthy nodes. */
    replica_repair_after_ms: positiveInt.default(60_000),
    /** How often leader balance is checked (a balance-leaders procedure starts if leaders are off their placement); 0 disables. */
    balance_leaders_interval_ms: z.number().int().nonnegative().default(30_000),
    /**
     * Where balance-leaders puts region leaders (docs/leader-placement.md): "table" gives each
     * table's regions, `leader_pack_regions` at a time by region number, one datanode to lead
     * them, the chunks spread over the nodes by leader count; "spread" evens the leaders per node
     * (±1) whatever their table.
     */
    leader_placement: z.enum(['table', 'spread']).default('table'),
    /** With `leader_placement = "table"`: how many of a table's regions share one leading datanode. */
    leader_pack_regions: positiveInt.default(16),
    /**
     * The datanodes' object store, read only at start: table ids are allocated above every table
     * with objects there (a lost or restored catalog must not reuse them). Optional.
     */
    storage: storageSchema.optional(),
    /**
     * How often the acting metasrv writes a copy of its catalog to the object store (`[storage]`,
     * `meta/catalog-<time>`), when it changed: what a metasrv group that lost a majority is
     * recovered from (docs/metasrv-ha.md). 0 disables.
     */
    catalog_backup_interval_ms: z.number().int().nonnegative().default(60_000),
    /**
     * Metasrv high availability (docs/metasrv-ha.md): this metasrv is one member of a raft group
     * of metasrvs replicating the catalog; only the leader acts. Absent: a single metasrv with
     * its catalog in a local LevelDB.
     */
    meta_group: z
      .object({
        /** This member's id: one of `members`, never reused. */
        id: positiveInt,
        /** The initial members: id → gRPC address of each metasrv (this one included). */
        members: z.record(z.string().regex(/^[1-9]\d*$/, 'a member id'), z.string().min(1)),
        tick_ms: positiveInt.default(50),
        /** Election timeout in ticks (randomized up to twice this). */
        election_ticks: positiveInt.min(3).default(10),
        /**
         * This member is being added to a running group (`regiondb meta add-member`): it waits to
         * be contacted instead of writing the initial configuration. Initial members leave it false.
         */
        join: z.boolean().default(false),
      })
      .strict()
      .optional(),
    tls: tlsSchema.optional(),
    auth: authSchema.optional(),
    log: logSchema,
  })
  .strict();

export type DatanodeConfig = z.infer<typeof datanodeConfigSchema>;
export type TlsConfig = z.infer<typeof tlsSchema>;
export type AuthConfig = z.infer<typeof authSchema>;
export type MetasrvConfig = z.infer<typeof metasrvConfigSchema>;

/**
 * Deep-merges overrides (from flags) into the parsed file. An override of `null` removes the
 * key (TOML has no null): a flag that stands for one of two alternative keys clears the other,
 * as `--metasrv-addr` clears a file's `metasrv.addrs`.
 */
function merge(base: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    if (v === null) {
      delete out[k];
      continue;
    }
    const existing = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v)
        ? merge(existing && typeof existing === 'object' && !Array.isArray(existing) ? (existing as Record<string, unknown>) : {}, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export function parseConfig<T>(schema: z.ZodType<T>, text: string, file: string, overrides: Record<string, unknown> = {}): T {
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `${file}: invalid TOML: ${(err as Error).message}`);
  }
  const result = schema.safeParse(merge(raw, overrides));
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = issue.path.join('.') || '(top level)';
      if (issue.code === 'unrecognized_keys') {
        const keys = (issue as { keys: string[] }).keys.map((k) => (issue.path.length ? `${path}.${k}` : k));
        return `unknown key ${keys.join(', ')}`;
      }
      return `${path}: ${issue.message}`;
    });
    throw new RegionDbError(ErrorCode.Config, `${file}: ${problems.join('; ')}`);
  }
  return result.data;
}

export function loadConfig<T>(schema: z.ZodType<T>, file: string, overrides: Record<string, unknown> = {}): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `cannot read config ${file}: ${(err as Error).message}`);
  }
  return parseConfig(schema, text, file, overrides);
}
