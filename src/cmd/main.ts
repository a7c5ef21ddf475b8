#!/usr/bin/env node
// The regiondb CLI: servers (metasrv, datanode, standalone, cluster) and client commands.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { toJepsenEdn } from '../check/edn.js';
import { parseHistory } from '../check/history.js';
import { RegionDbClient, type ReplicaStatus } from '../client/client.js';
import type { ListNodesResponse__Output, MetaGroupInfo__Output } from '../rpc/generated/index.js';
import { datanodeConfigSchema, loadConfig, metasrvConfigSchema } from '../common/config.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { type LogFormat, createLogger } from '../common/logger.js';
import { Datanode } from '../datanode/datanode.js';
import type { Row, Value } from '../engine/schema.js';
import { newestCatalogBackup } from '../metasrv/catalog-backup.js';
import { seedGroup } from '../metasrv/meta-group.js';
import { Metasrv } from '../metasrv/metasrv.js';
import { createObjectStore } from '../object-store/index.js';
import { coerceValue } from '../rpc/values.js';
import { registerBrCommand } from './br.js';
import { STOP_ON_STDIN_EOF_ENV } from './supervision.js';
import { registerCertsCommand } from './certs.js';
import { runCheck } from './check.js';
import { runLocalCluster } from './cluster.js';
import { registerDrillCommand } from './drill.js';
import { renderDroppingTables, renderTable } from './render.js';
import { registerUsersCommand } from './users.js';
import { attachStandby } from '../standby/attach.js';
import { registerStandbyCommand, standbyStatusText } from './standby.js';

// grpc-js passes the target host as the TLS servername even when it is an IP address (regiondb
// nodes are addressed by IP); Node flags that as DEP0123 on the first TLS connection, while the
// certificate's IP SAN is still verified. Not worth a warning on every CLI call.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((...args: unknown[]) => {
  if (args.slice(1).some((a) => a === 'DEP0123' || (typeof a === 'object' && a !== null && (a as { code?: string }).code === 'DEP0123'))) return;
  emitWarning(...args);
}) as typeof process.emitWarning;

// Output piped into a reader that stops early (`| head`): finish quietly, as Unix tools do.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const program = new Command();
program
  .name('regiondb')
  .description('regiondb: Raft-replicated regions with metasrv failover')
  .showHelpAfterError()
  .addOption(new Option('--metasrv <addrs>', 'metasrv for client commands: host:port, or a comma-separated list; the leader is found').default('127.0.0.1:4000').env('REGIONDB_METASRV'))
  .addOption(new Option('--ca <file>', 'TLS: the cluster CA certificate (PEM); turns TLS on for client commands').env('REGIONDB_CA'))
  .addOption(new Option('--cert <file>', 'TLS: client certificate (PEM), for servers with client_auth = "require"').env('REGIONDB_CERT'))
  .addOption(new Option('--key <file>', 'TLS: the client certificate\'s private key (PEM)').env('REGIONDB_KEY'))
  .addOption(new Option('--user <name>', 'authenticate as this user (users file)').env('REGIONDB_USER'))
  .addOption(new Option('--password <password>', 'the user\'s password (prefer the REGIONDB_PASSWORD variable: flags show in ps)').env('REGIONDB_PASSWORD'))
  .addOption(new Option('--token <token>', 'authenticate with a bearer token').env('REGIONDB_TOKEN'));

/**
 * Runs a server until SIGINT/SIGTERM; startup failures exit with a precise message, no crash
 * loop. SIGHUP reloads its TLS certificates and users file.
 */
async function serve(name: string, start: () => Promise<{ stop(): Promise<void>; reload(): void }>): Promise<void> {
  let server: { stop(): Promise<void>; reload(): void };
  try {
    server = await start();
  } catch (err) {
    process.stderr.write(`regiondb ${name}: cannot start: ${(err as Error).message}\n`);
    process.exit(2);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`regiondb ${name}: ${signal}, stopping\n`);
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // A supervisor (`regiondb cluster`, the drill, a test harness) hands its children a pipe as
  // stdin and sets this: when the supervisor dies, even by kill -9, the pipe closes and the
  // child stops instead of running on as an orphan holding ports and data.
  if (process.env[STOP_ON_STDIN_EOF_ENV] === '1') {
    process.stdin.on('end', () => shutdown('stdin closed (supervisor gone)'));
    process.stdin.on('error', () => shutdown('stdin closed (supervisor gone)'));
    process.stdin.resume();
  }
  process.on('SIGHUP', () => {
    process.stderr.write(`regiondb ${name}: SIGHUP, reloading certificates and users\n`);
    server.reload();
  });
}

/** `--log-format`: JSON lines (default, for log pipelines) or a pretty one-line format for humans. */
function logFormatOption(): Option {
  return new Option('--log-format <format>', 'log output: json (default, for machines) or pretty (for humans); overrides log.format').choices(['json', 'pretty']);
}

const intArg = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, got ${v}`);
  return n;
};

program
  .command('metasrv')
  .description('run the metasrv (catalog, heartbeats, failover, routes)')
  .requiredOption('-c, --config <file>', 'metasrv TOML config (e.g. cluster-configs/local-3node/metasrv.toml)')
  .option('--grpc-port <port>', 'override grpc.port', intArg)
  .option('--http-port <port>', 'override http.port', intArg)
  .option('--data-dir <dir>', 'override node.data_dir')
  .option('--replication-factor <n>', 'replicas per region (3; 1 for standalone)', intArg, 3)
  .addOption(logFormatOption())
  .action(async (opts: { config: string; grpcPort?: number; httpPort?: number; dataDir?: string; replicationFactor: number; logFormat?: LogFormat }) => {
    await serve('metasrv', async () => {
      const config = loadConfig(metasrvConfigSchema, opts.config, {
        grpc: { port: opts.grpcPort },
        http: { port: opts.httpPort },
        node: { data_dir: opts.dataDir },
        log: { format: opts.logFormat },
      });
      const m = new Metasrv(config, createLogger({ name: 'metasrv', level: config.log.level, format: config.log.format }), opts.replicationFactor);
      await m.start();
      return m;
    });
  });

program
  .command('datanode')
  .description('run a datanode (region replicas, WAL, gRPC services)')
  .requiredOption('-c, --config <file>', 'datanode TOML config (e.g. cluster-configs/local-3node/datanode1.toml)')
  .option('--node-id <id>', 'override node.id', intArg)
  .option('--grpc-port <port>', 'override grpc.port', intArg)
  .option('--http-port <port>', 'override http.port', intArg)
  .option('--data-dir <dir>', 'override node.data_dir')
  .option('--metasrv-addr <addrs>', 'override metasrv.addr/addrs: host:port, or a comma-separated list; the leader is found')
  .addOption(logFormatOption())
  .action(async (opts: { config: string; nodeId?: number; grpcPort?: number; httpPort?: number; dataDir?: string; metasrvAddr?: string; logFormat?: LogFormat }) => {
    await serve('datanode', async () => {
      const config = loadConfig(datanodeConfigSchema, opts.config, {
        node: { id: opts.nodeId, data_dir: opts.dataDir },
        grpc: { port: opts.grpcPort },
        http: { port: opts.httpPort },
        // The flag replaces the file's metasrv table, whichever of addr/addrs it used.
        metasrv: opts.metasrvAddr === undefined ? undefined : { addr: opts.metasrvAddr, addrs: null },
        log: { format: opts.logFormat },
      });
      const d = new Datanode(config, createLogger({ name: `datanode-${config.node.id}`, level: config.log.level, format: config.log.format }));
      attachStandby(d); // dual active-standby, if the config has a [standby] section
      await d.start();
      return d;
    });
  });

program
  .command('standalone')
  .description('run one datanode with an in-process metasrv and single-replica regions')
  .option('-c, --config <file>', 'datanode TOML config', 'cluster-configs/standalone.toml')
  .option('--metasrv-port <port>', 'port of the in-process metasrv', intArg, 4000)
  .addOption(logFormatOption())
  .action(async (opts: { config: string; metasrvPort: number; logFormat?: LogFormat }) => {
    await serve('standalone', async () => {
      const dn = loadConfig(datanodeConfigSchema, opts.config, { metasrv: { addr: `127.0.0.1:${opts.metasrvPort}`, addrs: null }, log: { format: opts.logFormat } });
      const meta = metasrvConfigSchema.parse({
        cluster_id: dn.cluster_id,
        node: { data_dir: `${dn.node.data_dir}-metasrv` },
        grpc: { host: '127.0.0.1', port: opts.metasrvPort },
        http: { host: '127.0.0.1', port: 0 },
        storage: dn.storage ?? { type: 'fs', root: join(dn.node.data_dir, 'objects') },
      });
      const m = new Metasrv(meta, createLogger({ name: 'metasrv', level: dn.log.level, format: dn.log.format }), 1);
      await m.start();
      const d = new Datanode(dn, createLogger({ name: 'datanode', level: dn.log.level, format: dn.log.format }));
      await d.start();
      return {
        stop: async () => {
          await d.stop();
          await m.stop();
        },
        reload: () => {
          d.reload();
          m.reload();
        },
      };
    });
  });

program
  .command('cluster')
  .description('start a local cluster (metasrv + datanodes) as child processes; Ctrl-C stops all')
  .option('-d, --config-dir <dir>', 'directory with metasrv.toml and datanode*.toml', 'cluster-configs/local-3node')
  .action(async (opts: { configDir: string }) => {
    await runLocalCluster(opts.configDir);
  });

interface GlobalOptions {
  metasrv: string;
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  password?: string;
  token?: string;
}

function client(metasrv?: string): RegionDbClient {
  const o = program.opts<GlobalOptions>();
  if ((o.cert || o.key) && !o.ca) throw new Error('--cert/--key need --ca (the cluster CA) as well');
  return new RegionDbClient({
    metasrv: metasrv ?? o.metasrv,
    ...(o.ca ? { tls: { caFile: o.ca, ...(o.cert ? { certFile: o.cert } : {}), ...(o.key ? { keyFile: o.key } : {}) } } : {}),
    ...(o.user !== undefined ? { user: o.user, password: o.password ?? '' } : {}),
    ...(o.token ? { token: o.token } : {}),
  });
}

async function withClient<T>(fn: (c: RegionDbClient) => Promise<T>): Promise<void> {
  const c = client();
  try {
    const out = await fn(c);
    if (out !== undefined) process.stdout.write(`${typeof out === 'string' ? out : JSON.stringify(out, null, 2)}\n`);
  } catch (err) {
    const code = isRegionDbError(err) ? err.code : 'ERROR';
    process.stderr.write(`error (${code}): ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    c.close();
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

program
  .command('create-table <name>')
  .description('create a table, e.g. create-table cpu --columns host:string:tag,ts:timestamp:timestamp,usage:float64:field --regions 4')
  .requiredOption('--columns <spec>', 'comma-separated name:type:semantic (types: string int64 float64 bool timestamp; semantics: tag field timestamp)')
  .option('--regions <n>', 'number of regions', intArg, 4)
  .action(async (name: string, opts: { columns: string; regions: number }) => {
    await withClient(async (c) => {
      const columns = opts.columns.split(',').map((spec) => {
        const [colName, type, semantic] = spec.split(':');
        if (!colName || !type || !semantic) throw new Error(`column spec ${JSON.stringify(spec)} must be name:type:semantic`);
        return { name: colName, type, semantic };
      });
      const schema = await c.createTable(name, columns, opts.regions);
      return `created table ${schema.name} (id ${schema.tableId}) with ${schema.regionCount} regions`;
    });
  });

program
  .command('drop-table <name>')
  .description(
    'drop a table and every row in it (irreversible; needs --yes). The metasrv fences every region first (docs/ddl.md): if one cannot be fenced yet the drop is not done, the table shows under "tables being dropped" in regiondb status and the metasrv keeps retrying; run drop-table again to wait for it',
  )
  .option('--yes', 'confirm: the table and its rows are deleted')
  .action(async (name: string, opts: { yes?: boolean }) => {
    if (!opts.yes) {
      process.stderr.write(`regiondb drop-table: dropping ${name} deletes it and every row in it; run again with --yes to confirm\n`);
      process.exitCode = 2;
      return;
    }
    await withClient(async (c) => {
      try {
        const regions = await c.dropTable(name);
        return `dropped table ${name} (${regions} region${regions === 1 ? '' : 's'} fenced and dropped)`;
      } catch (err) {
        // Some regions not fenced yet (or under recovery): the table stays, marked; say what to do.
        if (isRegionDbError(err) && err.code === ErrorCode.Unavailable && /is being dropped/.test(err.message)) {
          throw new RegionDbError(err.code, `${err.message}\nThe drop is not done yet: regiondb status lists ${name} under tables being dropped; run regiondb drop-table ${name} --yes again to wait for it.`);
        }
        throw err;
      }
    });
  });

program
  .command('put <table> <rows>')
  .description(`upsert rows given as JSON: put cpu '{"host":"a","ts":1700000000000,"usage":0.5}' (an object or an array)`)
  .option('--expect-version <v>', 'compare-and-set: only if the current version equals v', intArg)
  .option('--expect-absent', 'insert only if the row does not exist')
  .action(async (table: string, rowsJson: string, opts: { expectVersion?: number; expectAbsent?: boolean }) => {
    await withClient(async (c) => {
      const parsed = parseJson(rowsJson, 'rows');
      const rows = (Array.isArray(parsed) ? parsed : [parsed]) as Record<string, unknown>[];
      const { schema } = await c.describe(table);
      const typed = rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, coerceValue(schema.columns.find((col) => col.name === k) ?? { name: k, type: 'string', semantic: 'field' }, v)])) as Row);
      const res = await c.write(table, typed, {
        ...(opts.expectVersion !== undefined ? { expectVersion: opts.expectVersion } : {}),
        ...(opts.expectAbsent ? { expectAbsent: true } : {}),
      });
      return `wrote ${rows.length} row(s): ${res.map((r) => `region ${r.regionId} @ version ${r.version}`).join(', ')}`;
    });
  });

program
  .command('get <table> <key>')
  .description(`read one row by primary key (tags + timestamp) as JSON: get cpu '{"host":"a","ts":1700000000000}'`)
  .option('--stale', 'allow a stale read from any replica')
  .action(async (table: string, keyJson: string, opts: { stale?: boolean }) => {
    await withClient(async (c) => {
      const key = parseJson(keyJson, 'key') as Record<string, Value>;
      const found = await c.get(table, key, opts.stale ? 'stale' : 'linearizable');
      return found ? { ...found.row, _version: found.version } : 'not found';
    });
  });

program
  .command('scan <table>')
  .description('scan rows with optional time range [start, end) and tag filters')
  .option('--start <ms>', 'inclusive lower bound on the timestamp', intArg)
  .option('--end <ms>', 'exclusive upper bound on the timestamp', intArg)
  .option('--tag <name=value...>', 'tag equality filter (repeatable)')
  .option('--limit <n>', 'maximum rows', intArg)
  .option('--stale', 'allow stale reads')
  .action(async (table: string, opts: { start?: number; end?: number; tag?: string[]; limit?: number; stale?: boolean }) => {
    await withClient(async (c) => {
      const { schema } = await c.describe(table);
      const tagEquals: Record<string, Value> = {};
      for (const t of opts.tag ?? []) {
        const eq = t.indexOf('=');
        if (eq < 0) throw new Error(`--tag ${t} must be name=value`);
        const name = t.slice(0, eq);
        const column = schema.columns.find((col) => col.name === name);
        if (!column) throw new Error(`--tag ${name}: no such column in ${table}`);
        tagEquals[name] = coerceValue(column, t.slice(eq + 1));
      }
      const rows = await c.scan(table, {
        ...(opts.start !== undefined ? { startMs: opts.start } : {}),
        ...(opts.end !== undefined ? { endMs: opts.end } : {}),
        tagEquals,
        ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
        consistency: opts.stale ? 'stale' : 'linearizable',
      });
      return rows.map((r) => JSON.stringify({ ...r.row, _version: r.version })).join('\n') + `\n(${rows.length} rows)`;
    });
  });

/** The replicas that the reachable datanodes report failed (a node that does not answer is shown by its state). */
async function failedReplicasOf(c: RegionDbClient, nodes: StatusResponse['nodes']): Promise<(ReplicaStatus & { node_id: string })[]> {
  const perNode = await Promise.all(
    nodes.map(async (n) => {
      const st = await c.nodeStatus(n.addr).catch(() => ({ replicas: [] as ReplicaStatus[] }));
      return st.replicas.filter((r) => r.health === 'failed').map((r) => ({ ...r, node_id: n.node_id }));
    }),
  );
  return perNode.flat();
}

type StatusResponse = ListNodesResponse__Output;

program
  .command('status')
  .description('show the metasrv group (members, leader, term, applied index), datanodes (state, phi, regions, leaders), regions (peers, leader, term, applied/flushed, health), tables being dropped (regions not fenced yet) and procedures')
  .option('--json', 'print JSON')
  .option('--all-procedures', 'include finished procedures')
  .action(async (opts: { json?: boolean; allProcedures?: boolean }) => {
    await withClient(async (c) => {
      const res: StatusResponse = await c.listNodes();
      const failedReplicas = await failedReplicasOf(c, res.nodes);
      if (opts.json) return { ...res, failed_replicas: failedReplicas };
      const nodes = renderTable(
        ['NODE', 'ADDR', 'STATE', 'PHI', 'REGIONS', 'LEADERS'],
        res.nodes.map((n) => [n.node_id, n.addr, n.state, n.phi.toFixed(2), String(n.regions), String(n.leaders)]),
      );
      const refused = res.nodes.filter((n) => n.refused !== '').map((n) => `node ${n.node_id}: registration refused: ${n.refused} (docs/failover.md, "A data dir restored from a copy")`);
      const regions = renderTable(
        ['REGION', 'TABLE', 'PEERS(node)', 'LEADER', 'TERM', 'APPLIED', 'FLUSHED', 'HEALTH'],
        res.region_infos.map(({ route, ...r }) => [
          route!.region_id, // the metasrv always sets it
          route!.table,
          route!.peers.map((p) => p.node_id).join(','),
          route!.leader_node_id === '0' ? '-' : route!.leader_node_id,
          r.term,
          r.applied_index.join('/'),
          r.flushed_index,
          r.health,
        ]),
      );
      const problems = res.region_infos.flatMap((r) => (r.problems ?? []).map((p) => `region ${r.route!.region_id}: ${p}`));
      // Replicas that failed (a damaged WAL, an apply that cannot succeed): the rest of their
      // node serves; each is rebuilt from its peers under a fresh peer id (docs/replica-health.md).
      const failed = failedReplicas.length
        ? renderTable(
            ['FAILED REPLICA', 'NODE', 'PEER', 'HEALTH', 'FAILURE'],
            failedReplicas.map((f) => [f.region_id, f.node_id, f.peer_id, f.health, f.failure]),
          )
        : '(no failed replicas)';
      const shown = res.procedures.filter((p) => opts.allProcedures || p.status !== 'done');
      const procedures = shown.length
        ? renderTable(
            ['PROCEDURE', 'STATUS', 'STEP', 'WHAT', 'LATEST'],
            shown.map((p) => [p.id, p.status, p.step, p.description, p.error || p.notes.at(-1) || '']),
          )
        : '(no running procedures; --all-procedures shows finished ones)';
      // The metasrv group (docs/metasrv-ha.md): who answered, its term (the fencing epoch) and how far each member has the catalog log.
      const group = res.meta_group
        ? [
            `METASRV GROUP: leader ${res.meta_group.leader_id} (answered), term ${res.meta_group.term}, commit ${res.meta_group.commit_index}, applied ${res.meta_group.applied_index}`,
            renderTable(
              ['MEMBER', 'ADDR', 'ROLE', 'MATCH'],
              res.meta_group.members.map((m) => [m.id, m.addr, m.role, m.match_index]),
            ),
            '',
          ]
        : [];
      const standby = await standbyStatusText(c, Date.now()).catch((err: unknown) => `DUAL ACTIVE-STANDBY: not known (${(err as Error).message})`);
      const dropping = renderDroppingTables(res.dropping_tables ?? [], Date.now());
      return [...group, nodes, ...(refused.length ? ['', 'NODES REFUSED:', ...refused] : []), '', regions, ...(dropping ? ['', dropping] : []), ...(standby ? ['', standby] : []), ...(problems.length ? ['', 'REGION PROBLEMS (reconciliation leaves these alone; a lost replica is replaced by the repair-replica procedure below):', ...problems] : []), '', failed, '', procedures].join('\n');
    });
  });

program
  .command('transfer-leader <region> <node>')
  .description('move the leadership of a region to its replica on a datanode (a metasrv procedure)')
  .action(async (region: string, node: string) => {
    await withClient(async (c) => `started ${await c.startProcedure('transfer-leader', { regionId: region, nodeId: intArg(node) })}; see regiondb status`);
  });

program
  .command('recover <table>')
  .description('disaster recovery: rebuild every region of a table from the object store after its datanodes lost their local data')
  .option('--force', 'also recover regions that still have a live leader (discards their unflushed writes)')
  .action(async (table: string, opts: { force?: boolean }) => {
    await withClient(async (c) => {
      const regions = await c.recoverTable(table, opts.force === true);
      return [
        `recovered table ${table} from the object store; recovery point per region (acknowledged writes above it are lost):`,
        renderTable(
          ['REGION', 'FLUSHED INDEX', 'MANIFEST WRITTEN', 'SSTS', 'REPLICAS'],
          regions.map((r) => [
            r.region_id,
            r.flushed_index,
            r.manifest_written_ms === '0' ? '(never flushed: empty)' : new Date(Number(r.manifest_written_ms)).toISOString(),
            String(r.ssts),
            String(r.replicas),
          ]),
        ),
      ].join('\n');
    });
  });

program
  .command('flush')
  .description('flush the memtables of every region (or one table) to SSTs in the object store')
  .option('--table <name>', 'only this table')
  .action(async (opts: { table?: string }) => {
    await withClient(async (c) => `flushed ${await c.flush(opts.table)} region(s)`);
  });

program
  .command('check <history>')
  .description('check a Jepsen-style history (JSONL, see docs/architecture.md) for linearizability (register) or lost writes (set)')
  .option('--model <model>', 'register | set', 'register')
  .option('--max-steps <n>', 'search effort bound per key before the verdict is "unknown"', intArg)
  .action((history: string, opts: { model: string; maxSteps?: number }) => {
    try {
      process.exitCode = runCheck(opts.model, history, opts.maxSteps);
    } catch (err) {
      process.stderr.write(`regiondb check: ${(err as Error).message}\n`);
      process.exitCode = 2;
    }
  });

program
  .command('export-history <history>')
  .description("write a history (JSONL, see docs/architecture.md) as Jepsen EDN for Jepsen's own checkers: Knossos (register) or the set checker (set)")
  .option('--model <model>', 'register | set', 'register')
  .action((history: string, opts: { model: string }) => {
    try {
      if (opts.model !== 'register' && opts.model !== 'set') throw new Error(`--model must be register or set, got ${JSON.stringify(opts.model)}`);
      process.stdout.write(toJepsenEdn(parseHistory(readFileSync(history, 'utf8')), opts.model));
    } catch (err) {
      process.stderr.write(`regiondb export-history: ${(err as Error).message}\n`);
      process.exitCode = 2;
    }
  });

program
  .command('balance-leaders')
  .description('even out region leaderships across live datanodes (within ±1)')
  .action(async () => {
    await withClient(async (c) => `started ${await c.startProcedure('balance-leaders')}; see regiondb status`);
  });

program
  .command('drain-node <node>')
  .description('move every leadership and replica off a datanode before maintenance')
  .action(async (node: string) => {
    await withClient(async (c) => `started ${await c.startProcedure('drain-node', { nodeId: intArg(node) })}; see regiondb status`);
  });

// ─── The metasrv group (docs/metasrv-ha.md) ───────────────────────────────────────────────────

const meta = program.command('meta').description('the metasrv group: add or remove a member, or start a group again from a catalog copy');

const renderGroup = (g: MetaGroupInfo__Output) =>
  [
    `metasrv group: leader ${g.leader_id}, term ${g.term}, commit ${g.commit_index}, applied ${g.applied_index}`,
    renderTable(
      ['MEMBER', 'ADDR', 'ROLE', 'MATCH'],
      g.members.map((m) => [m.id, m.addr, m.role, m.match_index]),
    ),
  ].join('\n');

meta
  .command('add-member <id> <addr>')
  .description('add a metasrv (started first with [meta_group] id = <id> and join = true): it joins as a learner, catches up and becomes a voter')
  .action(async (id: string, addr: string) => {
    await withClient(async (c) => renderGroup(await c.addMetaMember(intArg(id), addr)));
  });

meta
  .command('remove-member <id>')
  .description('remove a metasrv from the group (then stop its process); one member at a time')
  .action(async (id: string) => {
    await withClient(async (c) => renderGroup(await c.removeMetaMember(intArg(id))));
  });

meta
  .command('seed')
  .description(
    "after a majority of the metasrv group is lost: write the newest catalog copy from the object store ([storage] of the config) into this member's EMPTY data dir as a one-member group; start it, then add the others back with add-member (new ids, empty data dirs, join = true)",
  )
  .requiredOption('-c, --config <file>', "the new member's metasrv TOML config (with [meta_group] and [storage])")
  .action(async (opts: { config: string }) => {
    try {
      const config = loadConfig(metasrvConfigSchema, opts.config);
      if (!config.meta_group) throw new RegionDbError(ErrorCode.Config, `${opts.config} has no [meta_group]: seed is for a member of a metasrv group`);
      if (!config.storage) throw new RegionDbError(ErrorCode.Config, `${opts.config} has no [storage]: the catalog copies are in the object store it names`);
      const self = config.meta_group.members[String(config.meta_group.id)];
      if (!self) throw new RegionDbError(ErrorCode.Config, `meta_group.members of ${opts.config} does not list this member (${config.meta_group.id})`);
      const copy = await newestCatalogBackup(createObjectStore(config.storage), config.cluster_id);
      if (!copy) throw new RegionDbError(ErrorCode.NotFound, `no catalog copy (meta/catalog-*) of cluster ${config.cluster_id} in the object store`);
      await seedGroup(config.node.data_dir, config.meta_group.id, self, copy.bytes, createLogger({ name: 'meta-seed', level: 'warn' }));
      const tables = Object.keys(copy.catalog.tables).length;
      process.stdout.write(
        `seeded ${config.node.data_dir} with ${copy.key} (${tables} tables${copy.skipped.length ? `; skipped damaged copies: ${copy.skipped.join('; ')}` : ''}). Start this metasrv with members = { ${config.meta_group.id} = "${self}" } only; it elects itself; then add the others with regiondb meta add-member.\n`,
      );
    } catch (err) {
      process.stderr.write(`regiondb meta seed: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  });

registerCertsCommand(program);
registerUsersCommand(program);
registerBrCommand(program, client);
registerDrillCommand(program);
registerStandbyCommand(program, withClient);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`regiondb: ${(err as Error).message}\n`);
  process.exit(2);
});
