// TOML configuration, validated strictly (zod): unknown keys and bad values are errors that
// name the file and the key path. CLI flags override file values. Relative paths are taken
// relative to the current working directory (make cluster runs from the repository root).
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { ErrorCode, RegionDbError } from './errors.js';

const port = z.number().int().min(0).max(65535);
const host = z.string().min(1);
const positiveInt = z.number().int().positive();

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

export const datanodeConfigSchema = z
  .object({
    cluster_id: z.string().min(1).default('regiondb-local'),
    node: z.object({ id: positiveInt, data_dir: z.string().min(1) }).strict(),
    grpc: z.object({ host: host.default('127.0.0.1'), port, advertise_addr: z.string().optional() }).strict(),
    http: z.object({ host: host.default('127.0.0.1'), port }).strict(),
    metasrv: z.object({ addr: z.string().min(1) }).strict(),
    raft: z
      .object({
        tick_ms: positiveInt.default(50),
        election_ticks: positiveInt.default(10),
        heartbeat_ticks: positiveInt.default(2),
        pre_vote: z.boolean().default(true),
        check_quorum: z.boolean().default(true),
        read_only: z.enum(['safe', 'lease']).default('safe'),
        snapshot_every_entries: positiveInt.default(20_000),
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
        snapshot_every_entries: 20_000,
        peer_addr_overrides: {},
      }),
    heartbeat: z.object({ interval_ms: positiveInt.default(1000) }).strict().default({ interval_ms: 1000 }),
    storage: storageSchema.optional(),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'), format: z.enum(['json', 'pretty']).default('json') })
      .strict()
      .default({ level: 'info', format: 'json' }),
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
    /** How often leader balance is checked (a balance-leaders procedure starts if off by > 1); 0 disables. */
    balance_leaders_interval_ms: z.number().int().nonnegative().default(30_000),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'), format: z.enum(['json', 'pretty']).default('json') })
      .strict()
      .default({ level: 'info', format: 'json' }),
  })
  .strict();

export type DatanodeConfig = z.infer<typeof datanodeConfigSchema>;
export type MetasrvConfig = z.infer<typeof metasrvConfigSchema>;

/** Deep-merges overrides (from flags) into the parsed file. */
function merge(base: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    const existing = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && existing && typeof existing === 'object'
        ? merge(existing as Record<string, unknown>, v as Record<string, unknown>)
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
