// A real regiondb cluster for integration and fault tests: the project's process launcher
// (src/cmd/process-cluster.ts) started from the built CLI (dist/, `make build`) in a fresh
// temporary directory, plus what only tests need: Admin.Status and /metrics probes, a start that
// is expected to fail, polling helpers, and data kept for a failed test's post-mortem. Every
// process is stopped by its PID; nothing is left running.
import { spawn } from 'node:child_process';
import { type Dirent, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type NodeProcess, ProcessCluster, type ProcessClusterOptions, type StartTimer, freePort, sleep } from '../../src/cmd/process-cluster.js';
import { supervisedSpawnOptions } from '../../src/cmd/supervision.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { CertificateFiles, channelCredentials } from '../../src/rpc/tls.js';
import { UnstarvedTimer } from './start-timer.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cmd', 'main.js');

export { freePort, type NodeProcess, sleep };

/** One replica in a datanode's Admin.Status (uint64s as strings, as proto-loader gives them). */
export interface ReplicaStatus {
  readonly region_id: string;
  readonly peer_id: string;
  readonly role: string;
  readonly leader_node_id: string;
  readonly term: string;
  readonly applied_index: string;
  readonly flushed_index: string;
  readonly snapshot_installed_index: string;
  readonly ssts: number;
}

/** The launcher's options but where the processes and their data go: the harness picks those. */
export type ClusterOptions = Omit<ProcessClusterOptions, 'dir' | 'cliScript' | 'cwd' | 'clusterId' | 'datanodeTomlFor'> & {
  /** Default `it-<pid>`; two clusters of one test (a primary and its standby) give their own. */
  readonly clusterId?: string;
  /** Extra TOML for datanode i (0-based), after the ports are known (e.g. raft proxies). */
  readonly datanodeTomlFor?: (i: number, cluster: LocalCluster) => string;
};

/**
 * Polls `probe` until it returns a value (a thrown error counts as "not yet"); fails after
 * `timeoutMs` naming what it waited for and the last error seen.
 */
export async function waitUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}

/**
 * Asks every running datanode to compact the regions it leads (Admin `Compact`), and asks again
 * every 2 s until `done` returns a value (as waitUntil). A node compacts only what it leads when
 * asked, and an explicit request stays with the node it was made to (docs/correctness.md, row
 * E1): a leadership that moves between the calls — frequent on a loaded machine — leaves the
 * region unasked at its new leader. Asking twice is harmless (a region already merged to one
 * SST has nothing to merge).
 */
export async function compactUntil<T>(cluster: LocalCluster, what: string, timeoutMs: number, done: () => Promise<T | undefined>): Promise<T> {
  const ask = async () => {
    for (let n = 0; n < cluster.datanodes.length; n++) {
      if (!cluster.isRunning(n)) continue;
      const admin = makeClient('Admin', cluster.datanodeAddr(n));
      try {
        await call(admin, 'Compact', { region_id: '' }, 10_000);
      } finally {
        admin.close();
      }
    }
  };
  await ask();
  let askedMs = Date.now();
  return waitUntil(what, timeoutMs, async () => {
    const value = await done();
    if (value !== undefined) return value;
    if (Date.now() - askedMs > 2000) {
      await ask();
      askedMs = Date.now();
    }
    return undefined;
  });
}

/**
 * Bytes of every file below `dir` (0 if it does not exist yet). The processes write while it
 * walks: a file listed and gone before its stat (the object store's temporary file renamed into
 * place, a WAL file compacted away) counts nothing — CI saw `ENOENT … manifest/.rdb-tmp-…` fail
 * test/integration/engine.test.ts here.
 */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) total += e.isDirectory() ? dirBytes(join(dir, e.name)) : fileBytes(join(dir, e.name));
  return total;
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

function freshDir(): string {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`make build\` first (make test does)`);
  return mkdtempSync(join(tmpdir(), 'regiondb-it-'));
}

export class LocalCluster extends ProcessCluster {
  constructor(options: ClusterOptions = {}) {
    const { datanodeTomlFor, clusterId, ...rest } = options;
    super({
      ...rest,
      dir: freshDir(),
      cliScript: CLI,
      cwd: ROOT,
      clusterId: clusterId ?? `it-${process.pid}`,
      ...(datanodeTomlFor ? { datanodeTomlFor: (i: number, cluster: ProcessCluster) => datanodeTomlFor(i, cluster as LocalCluster) } : {}),
    });
  }

  /**
   * ProcessCluster.start(), but a start that fails (a process not healthy within its bound, the
   * datanodes not counted alive) kills the processes it launched before it throws; the directory
   * stays for the post-mortem (the error names the log), and a later stop() removes it as usual.
   * Without this, a caller that loses the cluster with the error leaves them running, and since
   * `make test` runs without `--exit`, mocha then never exits: a full run here at load average
   * ≈ 30 printed its summary and hung on the standby pair's clusters (test/integration/
   * standby.test.ts startPair: a primary whose start timed out, and the standby it had started).
   */
  override async start(): Promise<void> {
    try {
      await super.start();
    } catch (err) {
      await this.killAll();
      throw err;
    }
  }

  /**
   * The start-up bounds count the time the processes could run, not the time a loaded machine
   * kept them waiting for a CPU (test/support/start-timer.ts; flake c in docs/correctness.md).
   */
  protected override startTimer(pids: () => readonly (number | undefined)[]): StartTimer {
    return new UnstarvedTimer(pids);
  }

  /**
   * Starts a datanode expecting it to refuse to start; resolves with its exit code and the
   * stderr text it printed.
   */
  async startDatanodeExpectingFailure(i: number, timeoutMs = 20_000): Promise<{ code: number | null; stderr: string }> {
    const node = this.datanode(i);
    const child = spawn(process.execPath, this.commandLine(node), supervisedSpawnOptions('ignore', { cwd: ROOT, env: this.environment(node) }));
    node.process = child;
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((ok) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        ok(null);
      }, timeoutMs);
      child.once('exit', (c) => {
        clearTimeout(timer);
        ok(c);
      });
    });
    node.process = undefined;
    return { code, stderr };
  }

  /** Datanode i's config file (written at start(); a test may change it before restarting the node). */
  datanodeConfigFile(i: number): string {
    return this.datanode(i).configFile;
  }

  /** The value of a metric on datanode i's /metrics: its first sample (labelled or not), 0 if absent. */
  async metric(i: number, name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.datanode(i).httpPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  /**
   * Admin.Status of one datanode; in a TLS cluster the harness presents its node certificate.
   * UNAVAILABLE is tried again within the call's 3 s: right after a datanode restarts, this
   * process's gRPC connection to its address (shared by every client of the address) may still be
   * waiting out the reconnect backoff it entered when the previous process went away, and a call
   * then fails at once with "No connection established" although the new process is listening
   * (a fresh-clone CI run: replica-health's status call 35 ms after the restarted node had
   * registered).
   */
  async status(i: number): Promise<{ replicas: ReplicaStatus[] }> {
    const tls = this.options.harnessTls;
    const deadline = Date.now() + 3000;
    for (;;) {
      const admin = makeClient('Admin', this.datanodeAddr(i), { credentials: tls ? channelCredentials(new CertificateFiles(tls)) : undefined });
      try {
        return await call(admin, 'Status', {}, Math.max(1, deadline - Date.now()));
      } catch (err) {
        if ((err as { code?: number }).code !== grpc.status.UNAVAILABLE || Date.now() > deadline - 200) throw err;
      } finally {
        admin.close();
      }
      await sleep(100);
    }
  }

  /**
   * Stops every process and removes the data, unless KEEP_DATA is set or `keepData` (a failed
   * test's post-mortem): then the processes stop as an operator stops them (SIGTERM, SIGKILL after
   * 10 s) and their logs end with their shutdown.
   *
   * When the data goes, the processes are killed (-9): nothing can look at a cluster whose
   * directory is removed, and no test asserts anything about this teardown (tests that are about
   * a graceful stop send SIGTERM themselves: stopDatanode, stopMetasrv). A SIGTERM here cost
   * about 2 s per cluster: a datanode's gRPC server waits up to 2 s for the calls still open on it
   * to end before it forces them closed (src/rpc/server.ts), and at a teardown some always were
   * (measured: 2.07-2.12 s for two of three datanodes), so every describe paid it.
   */
  override async stop(options: { keepData?: boolean } = {}): Promise<void> {
    const keep = Boolean(process.env['KEEP_DATA'] || options.keepData);
    if (!keep) await this.killAll();
    await super.stop(); // closes the clients; stops (SIGTERM) whatever still runs
    if (keep) process.stderr.write(`cluster data kept in ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
