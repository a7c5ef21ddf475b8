// One Jepsen-style run against real processes: a metasrv and N datanodes whose raft links all
// pass through harness-owned TCP proxies (net 'proxy', the default) or each in its own network
// namespace with faults at the IP layer (net 'netns', root only: network.ts), concurrent
// clients recording a history, a seeded nemesis, then final reads, the checkers, and a report
// in store/<run>/.
//
// Workloads run side by side in every run:
//   register — per key read / write / compare-and-set (expect_version), checked for
//              linearizability;
//   set      — unique inserts plus final reads from every node; a missing acknowledged insert
//              is lost data (RPO > 0).
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { RegionDbClient } from '../../src/client/client.js';
import { isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { makeRegionId, regionNumberOf } from '../../src/engine/key.js';
import type { TableSchema } from '../../src/engine/schema.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { LocalCluster } from '../support/local-cluster.js';
import { type ClusterHandle, NetnsCluster } from '../support/netns-cluster.js';
import { BUCKET, type S3Server, startS3rver, stopS3rver } from '../support/s3rver.js';
import { type LinearizabilityResult, checkRegister } from '../../src/check/linearizability.js';
import { type SetResult, checkSet } from '../../src/check/set.js';
import { toJepsenEdn } from '../../src/check/edn.js';
import type { HistoryEvent } from '../../src/check/history.js';
import { type Fault, type FaultRecord, METASRV_GROUP_FAULTS, Nemesis } from './nemesis.js';
import { MetasrvLinks, NETNS_UNSUPPORTED, type NetMode, NetnsNetwork, type Network, ProxyNetwork } from './network.js';
import { LinkProxy } from './proxy.js';
import { renderTimeline } from './timeline.js';

export interface RunOptions {
  readonly seed: number;
  /** Seconds of load (the nemesis acts during it). */
  readonly timeSec: number;
  readonly datanodes?: number;
  readonly faults: readonly Fault[];
  readonly registerClients?: number;
  readonly setClients?: number;
  readonly keys?: number;
  /** Where store/<run>/ goes (default: <repo>/store). */
  readonly storeDir?: string;
  /**
   * A deliberately broken client (harness fault, never a server flag): register reads go to a
   * random replica with STALE consistency, i.e. its local state without ReadIndex. The checker
   * must catch it.
   */
  readonly brokenStaleReads?: boolean;
  /** Start with one fault of each listed kind, in a seeded order (see NemesisOptions.coverEachFirst). */
  readonly coverEachFault?: boolean;
  /** How links are broken: harness TCP proxies (default) or network namespaces (root). */
  readonly net?: NetMode;
  /**
   * NET=proxy: the metasrv's periodic leader-placement check every this many ms (default: the
   * metasrv's 30 s), so that balance-leaders moves leaders while the nemesis acts.
   */
  readonly balanceEveryMs?: number;
  /** NET=netns only: TLS between every process, certificates naming each host's address only. */
  readonly tls?: boolean;
  /** Every datanode with `raft.read_only = "lease"` (docs/raft.md, "Lease reads are off by default"). */
  readonly leaseReads?: boolean;
  /**
   * Metasrv processes: 1 (default) or a group of 3 or 5 (docs/metasrv-ha.md), NET=proxy only,
   * every path to a member through a harness proxy (network.ts MetasrvLinks). The metasrv-group
   * faults need ≥ 3 (and imply 3 when this is not given).
   */
  readonly metasrvs?: number;
  readonly log?: (line: string) => void;
}

export interface RunReport {
  readonly run: string;
  readonly dir: string;
  readonly seed: number;
  /** The network mode that produced these numbers. */
  readonly net: NetMode;
  /** Metasrv processes (more than one: a metasrv group). */
  readonly metasrvs: number;
  readonly valid: boolean | 'unknown';
  readonly register: Pick<LinearizabilityResult, 'valid' | 'invalidKeys' | 'unknownKeys'> & { details: unknown[] };
  readonly set: SetResult;
  /** Acknowledged writes lost (set workload): must be 0. */
  readonly rpo: number;
  readonly ops: Record<string, Record<string, number>>;
  readonly faults: FaultRecord[];
  /** Why the cluster did not converge after healing (every replica of every region at its leader's applied index), or null if it did. */
  readonly notConverged: string | null;
  /** Final reads that failed (register keys and set reads per node): each one hides data from the checkers, so the run is at best 'unknown'. */
  readonly failedFinalReads: string[];
  readonly durationMs: number;
}

const REGISTER = 'jepsen_register';
const SET = 'jepsen_set';
const REGIONS = 4;

class Recorder {
  readonly events: HistoryEvent[] = [];
  private readonly t0 = process.hrtime.bigint();
  private readonly out;

  constructor(file: string) {
    this.out = createWriteStream(file);
  }

  now(): number {
    return Number(process.hrtime.bigint() - this.t0) / 1e6;
  }

  record(e: Omit<HistoryEvent, 'time' | 'index'>): void {
    const event = { ...e, time: this.now(), index: this.events.length } as HistoryEvent;
    this.events.push(event);
    this.out.write(`${JSON.stringify(event)}\n`);
  }

  async close(): Promise<void> {
    await new Promise<void>((ok) => this.out.end(() => ok()));
  }
}

/** Definite failures: the operation certainly had no effect. Everything else is indeterminate. */
function isDefiniteFailure(err: unknown): boolean {
  if (!isRegionDbError(err)) return false;
  if (err.code === 'INVALID_ARGUMENT') return !/outcome is unknown/.test(err.message);
  return err.code === 'CONDITION_FAILED' || err.code === 'NOT_FOUND';
}

function errorText(err: unknown): string {
  return isRegionDbError(err) ? `${err.code}: ${err.message}` : String(err);
}

export async function runJepsen(options: RunOptions): Promise<RunReport> {
  const log = options.log ?? (() => {});
  const n = options.datanodes ?? 3;
  const net = options.net ?? 'proxy';
  if (options.tls && net !== 'netns') throw new Error('TLS=1 needs NET=netns (the proxy mode runs plaintext)');
  if (options.brokenStaleReads && options.tls) throw new Error('the broken stale-read client speaks plaintext: not with TLS');
  if (net === 'netns') {
    const refused = options.faults.filter((f) => NETNS_UNSUPPORTED[f]);
    if (refused.length > 0) throw new Error(`NET=netns cannot inject ${refused.map((f) => `${f} (${NETNS_UNSUPPORTED[f]})`).join(', ')}`);
  }
  const metasrvs = options.metasrvs ?? (options.faults.some((f) => METASRV_GROUP_FAULTS.includes(f)) ? 3 : 1);
  if (![1, 3, 5].includes(metasrvs)) throw new Error(`metasrvs must be 1, 3 or 5, got ${metasrvs}`);
  const groupFaults = options.faults.filter((f) => METASRV_GROUP_FAULTS.includes(f));
  if (groupFaults.length > 0 && metasrvs < 3) throw new Error(`${groupFaults.join(', ')} ${groupFaults.length === 1 ? 'needs' : 'need'} a metasrv group: metasrvs ≥ 3, got ${metasrvs}`);
  if (metasrvs > 1 && net === 'netns') throw new Error('a metasrv group runs in NET=proxy only (the netns cluster has one metasrv host)');
  const run = `${new Date().toISOString().replace(/[:.]/g, '-')}-seed${options.seed}${net === 'netns' ? '-netns' : ''}`;
  const dir = resolve(options.storeDir ?? join(import.meta.dirname, '..', '..', 'store'), run);
  mkdirSync(dir, { recursive: true });
  const rand = new SeededRand(options.seed);
  const recorder = new Recorder(join(dir, 'history.jsonl'));
  const nemesisLog: string[] = [];
  const started = Date.now();

  // Proxies: proxies[i][j] carries raft traffic from datanode i to datanode j.
  const proxies: (LinkProxy | undefined)[][] = [];
  // With a metasrv group: proxies in front of every member (set up once the ports are known).
  let metasrvLinks: MetasrvLinks | undefined;
  let ports: { datanodes: [number, number][]; metasrvs: [number, number][] } | undefined;
  // With the object-store nemesis the cluster keeps its SSTs in s3rver, reached through a proxy
  // the nemesis can cut or stall (the fs store has no network to break).
  let s3: S3Server | undefined;
  let objectStoreLink: LinkProxy | undefined;
  if (options.faults.includes('object-store-outage')) {
    s3 = await startS3rver();
    objectStoreLink = new LinkProxy('object-store', Number(new URL(s3.endpoint).port));
    await objectStoreLink.start();
  }
  // With the clock-skew nemesis every datanode runs under libfaketime, its wall clock offset read
  // from a control file the nemesis rewrites (monotonic clocks are left alone).
  const clockFiles = options.faults.includes('clock-skew') ? clockSkewSetup(dir, n) : undefined;
  // A tiny flush threshold and age, compaction at 3 SSTs and a 10 s GC grace: the small
  // Jepsen rows then flush, compact and garbage-collect many times a run, so those paths
  // (and the object store) are under the same faults as the log.
  const datanodeToml = `[raft]\ntick_ms = 50\nelection_ticks = 10\nheartbeat_ticks = 2\n${options.leaseReads ? 'read_only = "lease"\n' : ''}[engine]\nflush_bytes = 16384\nflush_age_ms = 2000\ncompact_at_ssts = 3\nsst_gc_grace_ms = 10000`;
  const netnsCluster =
    net === 'netns'
      ? new NetnsCluster({ datanodes: n, seed: options.seed, dir: join(dir, 'cluster'), datanodeToml, tls: options.tls ?? false, ...(clockFiles ? { envFor: clockFiles.envFor } : {}) })
      : undefined;
  const cluster: ClusterHandle & { start(): Promise<void> } =
    netnsCluster ??
    new LocalCluster({
    datanodes: n,
    metasrvs,
    ...(options.balanceEveryMs !== undefined ? { metasrvToml: `balance_leaders_interval_ms = ${options.balanceEveryMs}` } : {}),
    ...(metasrvs > 1 ? { metasrvAddrFor: (from: number | 'callers', to: number) => metasrvLinks!.addrFor(from, to) } : {}),
    ...(clockFiles ? { envFor: clockFiles.envFor } : {}),
    ...(objectStoreLink
      ? { storageToml: `[storage]\ntype = "s3"\nendpoint = "http://${objectStoreLink.addr}"\nbucket = "${BUCKET}"\nprefix = "jepsen"\naccess_key_id = "S3RVER"\nsecret_access_key = "S3RVER"` }
      : {}),
    datanodeToml,
    datanodeTomlFor: (i) => {
      const overrides = proxies[i]!.map((p, j) => (p ? `"${j + 1}" = "${p.addr}"` : undefined)).filter(Boolean);
      return `[raft.peer_addr_overrides]\n${overrides.join('\n')}`;
    },
  });
  const clients: RegionDbClient[] = [];
  let nemesis: Nemesis | undefined;
  let nemesisDone: Promise<void> | undefined;
  let nemesisError: unknown;
  let completed = false;
  let network: Network;
  try {
    if (cluster instanceof LocalCluster) {
      ports = await cluster.allocatePorts();
      for (let i = 0; i < n; i++) {
        proxies.push([]);
        for (let j = 0; j < n; j++) {
          if (i === j) continue;
          const p = new LinkProxy(`${i + 1}->${j + 1}`, ports.datanodes[j]![0]);
          await p.start();
          proxies[i]![j] = p;
        }
      }
      network = new ProxyNetwork(proxies);
      if (metasrvs > 1) metasrvLinks = await MetasrvLinks.start(ports.metasrvs.map(([grpc]) => grpc));
    } else {
      network = new NetnsNetwork(netnsCluster!);
    }
    log(`run ${run}: starting ${metasrvs > 1 ? `${metasrvs} metasrvs (a group)` : 'metasrv'} + ${n} datanodes, net ${net}${options.tls ? ' with TLS' : ''}${netnsCluster ? ` (namespaces rdb-${netnsCluster.lab.run}-*, ${netnsCluster.lab.subnet}.0/24)` : ''} (data in ${cluster.dir})`);
    await cluster.start();
    const admin = cluster.client();
    const registerSchema = await admin.createTable(
      REGISTER,
      [
        { name: 'k', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
        { name: 'v', type: 'int64', semantic: 'field' },
      ],
      REGIONS,
    );
    const setSchema = await admin.createTable(
      SET,
      [
        { name: 'e', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
      ],
      REGIONS,
    );

    const stopAt = Date.now() + options.timeSec * 1000;
    const keys = Array.from({ length: options.keys ?? 8 }, (_, i) => `k${i}`);
    const newClient = () => {
      const c = cluster.client({ deadlineMs: 4000, attemptTimeoutMs: 1000 });
      clients.push(c);
      return c;
    };

    // ─── Register workload ───────────────────────────────────────────────────────────────────
    // A worker whose op ended `info` (outcome unknown) goes on as a new process, `process +
    // concurrency` (Jepsen's rule: that process crashed and never invokes again; its checkers
    // pair ops by process). `crashed` renumbers the worker after such an op.
    const registerCount = options.registerClients ?? 6;
    const setCount = options.setClients ?? 2;
    const concurrency = registerCount + setCount;
    let highestProcess = concurrency - 1;
    const crashed = (process: number): number => {
      const next = process + concurrency;
      highestProcess = Math.max(highestProcess, next);
      return next;
    };
    const registerWorker = async (first: number) => {
      let process = first;
      const r = new SeededRand(options.seed * 1000 + first);
      const c = newClient();
      let counter = 0;
      const read = async (key: string): Promise<{ value: number | null; version: number } | undefined> => {
        recorder.record({ type: 'invoke', process, f: 'read', key });
        try {
          const got = options.brokenStaleReads ? await staleReadAnywhere(cluster, r, key) : await c.get(REGISTER, { k: key, ts: 0 });
          const value = got ? (got.row['v'] as number) : null;
          recorder.record({ type: 'ok', process, f: 'read', key, value });
          return { value, version: got?.version ?? 0 };
        } catch (err) {
          recorder.record({ type: 'fail', process, f: 'read', key, error: errorText(err) });
          return undefined;
        }
      };
      while (Date.now() < stopAt) {
        const key = r.pick(keys);
        const dice = r.next();
        if (dice < 0.45) {
          await read(key);
        } else if (dice < 0.8) {
          const value = process * 1_000_000 + ++counter;
          recorder.record({ type: 'invoke', process, f: 'write', key, value });
          try {
            await c.write(REGISTER, [{ k: key, ts: 0, v: value }]);
            recorder.record({ type: 'ok', process, f: 'write', key, value });
          } catch (err) {
            const definite = isDefiniteFailure(err);
            recorder.record({ type: definite ? 'fail' : 'info', process, f: 'write', key, value, error: errorText(err) });
            if (!definite) process = crashed(process);
          }
        } else {
          const seen = await read(key);
          if (!seen || Date.now() >= stopAt) continue;
          const value = process * 1_000_000 + ++counter;
          const cas = [seen.value, value];
          recorder.record({ type: 'invoke', process, f: 'cas', key, value: cas });
          try {
            await c.write(REGISTER, [{ k: key, ts: 0, v: value }], seen.value === null ? { expectAbsent: true } : { expectVersion: seen.version });
            recorder.record({ type: 'ok', process, f: 'cas', key, value: cas });
          } catch (err) {
            const definite = isDefiniteFailure(err);
            recorder.record({ type: definite ? 'fail' : 'info', process, f: 'cas', key, value: cas, error: errorText(err) });
            if (!definite) process = crashed(process);
          }
        }
      }
    };

    // ─── Set workload ────────────────────────────────────────────────────────────────────────
    const setWorker = async (first: number) => {
      let process = first;
      const c = newClient();
      let counter = 0;
      while (Date.now() < stopAt) {
        const element = `${process}-${++counter}`;
        recorder.record({ type: 'invoke', process, f: 'add', value: element });
        try {
          await c.write(SET, [{ e: element, ts: 0 }]);
          recorder.record({ type: 'ok', process, f: 'add', value: element });
        } catch (err) {
          const definite = isDefiniteFailure(err);
          recorder.record({ type: definite ? 'fail' : 'info', process, f: 'add', value: element, error: errorText(err) });
          if (!definite) process = crashed(process);
        }
      }
    };

    nemesis = new Nemesis(
      cluster,
      network,
      rand.fork() as SeededRand,
      () => recorder.now(),
      { faults: options.faults, gapMs: 3000, durationMs: [2000, 5000], maxFaults: 100, coverEachFirst: options.coverEachFault ?? false },
      (line) => {
        nemesisLog.push(line);
        log(`  nemesis ${line}`);
      },
      objectStoreLink,
      clockFiles?.setOffset,
      metasrvs > 1 && cluster instanceof LocalCluster ? { cluster, ...(metasrvLinks ? { links: metasrvLinks } : {}) } : undefined,
    );
    const workers = [
      ...Array.from({ length: registerCount }, (_, p) => registerWorker(p)),
      ...Array.from({ length: setCount }, (_, p) => setWorker(registerCount + p)),
    ];
    // Awaited on every path (below, and in `finally` when the run throws): a heal still running
    // while the cluster is torn down fails, and that rejection must not end the whole campaign
    // (it did once, and hid what threw first).
    nemesisDone = nemesis.run().catch((err: unknown) => {
      nemesisError = err;
    });
    await new Promise((r) => setTimeout(r, Math.max(0, stopAt - Date.now() - 4000)));
    nemesis.stop(); // the last few seconds are fault-free so every region is seen to recover
    await nemesisDone;
    if (nemesisError) throw new Error(`the nemesis failed: ${(nemesisError as Error).stack ?? String(nemesisError)}`);
    await Promise.all(workers);
    log(`  load done: ${recorder.events.length} events; healing and reading back`);

    // ─── Final reads (after healing): register keys, and the whole set from every node ──────
    const notConverged = await waitConverged(cluster, 30_000);
    if (notConverged) log(`  NOT CONVERGED after healing: ${notConverged}`);
    const failedFinalReads: string[] = [];
    const finalProcess = highestProcess + 1; // never a process the workers used, crashed or not
    const finalClient = newClient();
    for (const key of keys) {
      recorder.record({ type: 'invoke', process: finalProcess, f: 'read', key });
      try {
        const got = await finalClient.get(REGISTER, { k: key, ts: 0 });
        recorder.record({ type: 'ok', process: finalProcess, f: 'read', key, value: got ? (got.row['v'] as number) : null });
      } catch (err) {
        recorder.record({ type: 'fail', process: finalProcess, f: 'read', key, error: errorText(err) });
        failedFinalReads.push(`register key ${key}: ${errorText(err)}`);
      }
    }
    for (let i = 0; i < n; i++) {
      const p = finalProcess + 1 + i;
      recorder.record({ type: 'invoke', process: p, f: 'final-read' });
      try {
        const rows = await finalClient.scan(SET, {}, cluster.datanodeAddr(i));
        recorder.record({ type: 'ok', process: p, f: 'final-read', value: rows.map((r) => r.row['e']) });
      } catch (err) {
        recorder.record({ type: 'fail', process: p, f: 'final-read', error: errorText(err) });
        failedFinalReads.push(`set via datanode${i + 1}: ${errorText(err)}`);
      }
    }
    await recorder.close();
    // The same history for Jepsen's own checkers (Knossos, the set checker): src/check/edn.ts.
    for (const model of ['register', 'set'] as const) writeFileSync(join(dir, `history.${model}.edn`), toJepsenEdn(recorder.events, model));

    // ─── Check and report ───────────────────────────────────────────────────────────────────
    const events = recorder.events;
    const registerEvents = events.filter((e) => e.f === 'read' || e.f === 'write' || e.f === 'cas');
    const setEvents = events.filter((e) => e.f === 'add' || e.f === 'final-read');
    const lin = checkRegister(registerEvents);
    const set = checkSet(setEvents);
    const faults = nemesis.log;
    measureRto(faults, events, registerSchema, setSchema);
    const ops: Record<string, Record<string, number>> = {};
    for (const e of events) {
      if (e.type === 'invoke') continue;
      ops[e.f] ??= {};
      ops[e.f]![e.type] = (ops[e.f]![e.type] ?? 0) + 1;
    }
    // A run whose final reads did not all succeed, or whose replicas never converged, cannot vouch
    // for what it did not read: at best 'unknown' (a violation found is still a violation).
    const complete = notConverged === null && failedFinalReads.length === 0;
    const valid: boolean | 'unknown' = lin.valid === false || !set.valid ? false : lin.valid === 'unknown' || !complete ? 'unknown' : true;
    const report: RunReport = {
      run,
      dir,
      seed: options.seed,
      net,
      metasrvs,
      valid,
      register: {
        valid: lin.valid,
        invalidKeys: lin.invalidKeys,
        unknownKeys: lin.unknownKeys,
        details: lin.keys.filter((k) => k.valid !== true),
      },
      set,
      rpo: set.lost.length,
      ops,
      faults,
      notConverged,
      failedFinalReads,
      durationMs: Date.now() - started,
    };
    writeFileSync(join(dir, 'results.json'), JSON.stringify(report, null, 2));
    writeFileSync(join(dir, 'nemesis.log'), `${nemesisLog.join('\n')}\n`);
    writeFileSync(join(dir, 'timeline.svg'), renderTimeline(events, faults, `regiondb jepsen ${run} — net ${net} — valid: ${valid}`));
    log(`  ${valid === true ? 'VALID' : valid === false ? 'INVALID' : 'UNKNOWN'}: register ${lin.valid}, set lost ${set.lost.length}, unexpected ${set.unexpected.length}; report in ${dir}`);
    completed = true;
    return report;
  } finally {
    nemesis?.stop();
    await nemesisDone;
    for (const c of clients) c.close();
    // A run that threw keeps the processes' logs and data for the post-mortem (the path is printed).
    await cluster.stop({ keepData: !completed }).catch(() => undefined);
    for (const row of proxies) for (const p of row) await p?.stop();
    await metasrvLinks?.stop();
    await objectStoreLink?.stop();
    if (s3) await stopS3rver(s3);
  }
}

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** Per-datanode libfaketime control files (offset "+Ns"), and the environment that uses them. */
function clockSkewSetup(dir: string, n: number): { envFor(name: string): Record<string, string>; setOffset(i: number, seconds: number): void } {
  if (!existsSync(LIBFAKETIME)) throw new Error(`the clock-skew nemesis needs libfaketime (${LIBFAKETIME}): apt-get install faketime (make jepsen does)`);
  const file = (i: number) => join(dir, `clock-datanode${i + 1}`);
  const setOffset = (i: number, seconds: number) => writeFileSync(file(i), `${seconds >= 0 ? '+' : ''}${seconds}s\n`);
  for (let i = 0; i < n; i++) setOffset(i, 0);
  return {
    envFor(name: string): Record<string, string> {
      const m = /^datanode(\d+)$/.exec(name);
      if (!m) return {};
      // Re-read the control file at most once a second; only the wall clock moves.
      return { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: file(Number(m[1]) - 1), FAKETIME_CACHE_DURATION: '1', DONT_FAKE_MONOTONIC: '1' };
    },
    setOffset,
  };
}

/** A broken read for the harness self-test: any replica's local state, no ReadIndex. */
async function staleReadAnywhere(cluster: ClusterHandle, r: SeededRand, key: string): Promise<{ row: Record<string, unknown>; version: number } | null> {
  const db = makeClient('Database', cluster.datanodeAddr(r.int(cluster.datanodes.length)));
  try {
    const res = await call<{ found: boolean; row: { values: Record<string, { int64_value?: string }> }; version: string }>(
      db,
      'Get',
      { table: REGISTER, key: { values: { k: { string_value: key }, ts: { timestamp_ms_value: '0' } } }, consistency: 'STALE' },
      1000,
    );
    return res.found ? { row: { v: Number(res.row.values['v']?.int64_value) }, version: Number(res.version) } : null;
  } finally {
    db.close();
  }
}

/**
 * Waits until every datanode answers and every replica of every region is at one applied index
 * with a leader among them. Returns null once converged, or what was still not converged at
 * the deadline (the caller reports it; it never passes silently).
 */
async function waitConverged(cluster: ClusterHandle, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let why = 'no status yet';
  while (Date.now() < deadline) {
    const statuses = await Promise.all(cluster.datanodes.map((_, i) => cluster.status(i).catch((err: unknown) => `datanode${i + 1}: ${String(err)}`)));
    const unreachable = statuses.filter((s): s is string => typeof s === 'string');
    if (unreachable.length > 0) {
      why = `no status from ${unreachable.join('; ')}`;
    } else {
      const byRegion = new Map<string, { role: string; applied: number }[]>();
      for (const s of statuses) {
        if (typeof s === 'string') continue;
        for (const r of s.replicas) {
          const list = byRegion.get(r.region_id) ?? [];
          list.push({ role: r.role, applied: Number(r.applied_index) });
          byRegion.set(r.region_id, list);
        }
      }
      const lagging = [...byRegion].filter(([, reps]) => !reps.some((r) => r.role === 'leader') || new Set(reps.map((r) => r.applied)).size !== 1);
      if (lagging.length === 0) return null;
      why = lagging.map(([region, reps]) => `region ${region}: ${reps.map((r) => `${r.role}@${r.applied}`).join(' ')}`).join('; ');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return `after ${timeoutMs} ms: ${why}`;
}

/**
 * RTO per fault: from injection to the moment every region had acknowledged a write invoked
 * after the injection (null if some region never did before the next fault); recovery: from
 * injection until every region acknowledged a write invoked after the heal.
 */
function measureRto(faults: FaultRecord[], events: HistoryEvent[], registerSchema: TableSchema, setSchema: TableSchema): void {
  const invokes = new Map<number, HistoryEvent>();
  const acks: { region: string; invokedAt: number; ackedAt: number }[] = [];
  for (const e of events) {
    if (e.type === 'invoke') invokes.set(e.process, e);
    else if (e.type === 'ok' && (e.f === 'write' || e.f === 'cas' || e.f === 'add')) {
      const inv = invokes.get(e.process)!;
      const region =
        e.f === 'add'
          ? makeRegionId(setSchema.tableId, regionNumberOf(setSchema, { e: e.value as string, ts: 0 }))
          : makeRegionId(registerSchema.tableId, regionNumberOf(registerSchema, { k: e.key!, ts: 0 }));
      acks.push({ region, invokedAt: inv.time, ackedAt: e.time });
    }
  }
  const regions = [...new Set(acks.map((a) => a.region))];
  const firstAckAfter = (t: number): number | null => {
    let worst = 0;
    for (const region of regions) {
      const first = acks.filter((a) => a.region === region && a.invokedAt >= t).reduce((m, a) => Math.min(m, a.ackedAt), Number.POSITIVE_INFINITY);
      if (first === Number.POSITIVE_INFINITY) return null;
      worst = Math.max(worst, first);
    }
    return worst;
  };
  for (const f of faults) {
    const served = firstAckAfter(f.startMs);
    f.rtoMs = served === null ? null : Math.round(served - f.startMs);
    const recovered = f.healMs > 0 ? firstAckAfter(f.healMs) : null;
    f.recoveryMs = recovered === null ? null : Math.round(recovered - f.startMs);
  }
}
