// A real regiondb cluster for integration and fault tests: one metasrv and N datanode processes
// on 127.0.0.1 with free ports, data under a fresh temporary directory. Every process is started
// from the built CLI (dist/, `make build`) and stopped by its PID; nothing is left running.
import { type ChildProcess, spawn } from 'node:child_process';
import { type Dirent, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ClientOptions, RegionDbClient } from '../../src/client/client.js';
import { freePort } from '../../src/cmd/scratch-cluster.js';
import { logChildOutput, sinceLastStart, supervisedSpawnOptions } from '../../src/cmd/supervision.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { CertificateFiles, channelCredentials } from '../../src/rpc/tls.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cmd', 'main.js');

export { freePort };

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

export interface NodeProcess {
  readonly name: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly configFile: string;
  readonly dataDir: string;
  readonly logFile: string;
  process: ChildProcess | undefined;
}

export interface ClusterOptions {
  readonly datanodes?: number;
  readonly replicationFactor?: number;
  /** Extra TOML appended to every datanode config (e.g. a smaller snapshot interval). */
  readonly datanodeToml?: string;
  /** Extra `node` flags for every process (e.g. `--max-old-space-size=384`). */
  readonly nodeArgs?: readonly string[];
  /** Replaces the default `[storage]` section (a shared local directory) of every datanode. */
  readonly storageToml?: string;
  /** Extra top-level TOML keys for the metasrv (e.g. replica_repair_after_ms = 3000). */
  readonly metasrvToml?: string;
  /** How many datanodes start() starts (default all); a test starts the others with startDatanode(i). */
  readonly startDatanodes?: number;
  /** TLS files of the harness: its Admin calls present this (node) certificate; its clients only trust the CA. */
  readonly harnessTls?: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /** Extra TOML for datanode i (0-based), after the ports are known (e.g. raft proxies). */
  readonly datanodeTomlFor?: (i: number, cluster: LocalCluster) => string;
  /** Extra environment of a process by its name ('metasrv', 'datanode1', …), e.g. a faked clock. */
  readonly envFor?: (name: string) => Record<string, string>;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

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

/** Bytes of every file below `dir` (0 if it does not exist yet). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) total += e.isDirectory() ? dirBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size;
  return total;
}

async function healthy(httpPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/health`, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

export class LocalCluster {
  readonly dir: string;
  metasrv!: NodeProcess;
  readonly datanodes: NodeProcess[] = [];
  private readonly clients: RegionDbClient[] = [];

  constructor(private readonly options: ClusterOptions = {}) {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`make build\` first (make test does)`);
    this.dir = mkdtempSync(join(tmpdir(), 'regiondb-it-'));
  }

  get metasrvAddr(): string {
    return `127.0.0.1:${this.metasrv.grpcPort}`;
  }

  datanodeAddr(i: number): string {
    return `127.0.0.1:${this.datanodes[i]!.grpcPort}`;
  }

  /** Reserves the ports of every process (before start, so proxies can be set up in front). */
  async allocatePorts(): Promise<{ metasrv: [number, number]; datanodes: [number, number][] }> {
    if (!this.ports) {
      const metasrv: [number, number] = [await freePort(), await freePort()];
      const datanodes: [number, number][] = [];
      for (let i = 0; i < (this.options.datanodes ?? 3); i++) datanodes.push([await freePort(), await freePort()]);
      this.ports = { metasrv, datanodes };
    }
    return this.ports;
  }
  private ports: { metasrv: [number, number]; datanodes: [number, number][] } | undefined;

  /** Writes configs and starts the metasrv and every datanode; resolves when all are healthy. */
  async start(): Promise<void> {
    const clusterId = `it-${process.pid}`;
    const ports = await this.allocatePorts();
    const [mg, mh] = ports.metasrv;
    const metaDir = join(this.dir, 'metasrv');
    this.metasrv = this.describeNode('metasrv', mg, mh, metaDir, [
      `cluster_id = "${clusterId}"\n${this.options.metasrvToml ?? ''}`,
      `[node]\ndata_dir = "${metaDir}"`,
      `[grpc]\nhost = "127.0.0.1"\nport = ${mg}`,
      `[http]\nhost = "127.0.0.1"\nport = ${mh}`,
      `[failure_detector]\nheartbeat_interval_ms = 500\nacceptable_pause_ms = 500`,
      this.options.storageToml ?? `[storage]\ntype = "fs"\nroot = "${join(this.dir, 'object-store')}"`,
      `[log]\nlevel = "info"`,
    ]);
    ports.datanodes.forEach(([g, h], index) => {
      const i = index + 1;
      const dataDir = join(this.dir, `datanode${i}`);
      this.datanodes.push(
        this.describeNode(`datanode${i}`, g, h, dataDir, [
          `cluster_id = "${clusterId}"`,
          `[node]\nid = ${i}\ndata_dir = "${dataDir}"`,
          `[grpc]\nhost = "127.0.0.1"\nport = ${g}`,
          `[http]\nhost = "127.0.0.1"\nport = ${h}`,
          `[metasrv]\naddr = "127.0.0.1:${mg}"`,
          `[heartbeat]\ninterval_ms = 500`,
          this.options.storageToml ?? `[storage]\ntype = "fs"\nroot = "${join(this.dir, 'object-store')}"`,
          `[log]\nlevel = "info"`,
          this.options.datanodeToml ?? '',
          this.options.datanodeTomlFor?.(index, this) ?? '',
        ]),
      );
    });
    await this.startMetasrv();
    await Promise.all(this.datanodes.slice(0, this.options.startDatanodes).map((_, i) => this.startDatanode(i)));
    await this.waitNodesAlive(this.options.startDatanodes ?? this.datanodes.length);
  }

  /**
   * Waits (≤ 30 s) until the metasrv counts `count` datanodes alive: placement of a new table
   * needs them, and a loaded machine can delay the first heartbeats.
   */
  private async waitNodesAlive(count: number): Promise<void> {
    const client = this.client();
    const deadline = Date.now() + 30_000;
    let seen = 'no answer from the metasrv';
    try {
      while (Date.now() < deadline) {
        try {
          const res = (await client.listNodes()) as { nodes: { node_id: string; state: string }[] };
          if (res.nodes.filter((n) => n.state === 'alive').length >= count) return;
          seen = res.nodes.map((n) => `node ${n.node_id} ${n.state}`).join(', ') || 'no datanode registered';
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'UNAUTHENTICATED' || code === 'PERMISSION_DENIED') return; // a secured cluster: the test handles it
          seen = String(err);
        }
        await sleep(100);
      }
      throw new Error(`the metasrv did not count ${count} datanodes alive within 30 s (last seen: ${seen}); logs in ${this.dir}`);
    } finally {
      client.close();
    }
  }

  startMetasrv(): Promise<void> {
    return this.startNode(this.metasrv, ['metasrv', '--replication-factor', String(this.options.replicationFactor ?? 3)]);
  }

  async stopMetasrv(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.stopProcess(this.metasrv, signal);
  }

  /** SIGSTOP / SIGCONT a datanode (a GC pause, a VM migration). */
  pauseDatanode(i: number, paused: boolean): void {
    this.datanodes[i]!.process?.kill(paused ? 'SIGSTOP' : 'SIGCONT');
  }

  isRunning(i: number): boolean {
    const p = this.datanodes[i]!.process;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  private describeNode(name: string, grpcPort: number, httpPort: number, dataDir: string, toml: string[]): NodeProcess {
    const configFile = join(this.dir, `${name}.toml`);
    writeFileSync(configFile, `${toml.join('\n\n')}\n`);
    return { name, grpcPort, httpPort, configFile, dataDir, logFile: join(this.dir, `${name}.log`), process: undefined };
  }

  private async startNode(node: NodeProcess, args: string[]): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const env = { ...process.env, ...(this.options.envFor?.(node.name) ?? {}) };
    const child = spawn(process.execPath, [...(this.options.nodeArgs ?? []), CLI, ...args, '-c', node.configFile], supervisedSpawnOptions('pipe', { cwd: ROOT, env }));
    logChildOutput(child, node.logFile, node.name);
    node.process = child;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${node.name} exited during startup (code ${child.exitCode}); log:\n${this.tail(node)}`);
      }
      if (await healthy(node.httpPort)) return;
      await sleep(100);
    }
    throw new Error(`${node.name} did not become healthy within 30 s; log:\n${this.tail(node)}`);
  }

  startDatanode(i: number): Promise<void> {
    return this.startNode(this.datanodes[i]!, ['datanode']);
  }

  /**
   * Starts a datanode expecting it to refuse to start; resolves with its exit code and the
   * stderr text it printed.
   */
  async startDatanodeExpectingFailure(i: number, timeoutMs = 20_000): Promise<{ code: number | null; stderr: string }> {
    const node = this.datanodes[i]!;
    const child = spawn(process.execPath, [...(this.options.nodeArgs ?? []), CLI, 'datanode', '-c', node.configFile], supervisedSpawnOptions('ignore', { cwd: ROOT }));
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

  /** The last lines the current process of `node` logged (not an earlier run's: the log is appended to). */
  tail(node: NodeProcess, lines = 30): string {
    try {
      return sinceLastStart(readFileSync(node.logFile, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Sends `signal` to a datanode by PID and waits for it to exit. */
  async stopDatanode(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.stopProcess(this.datanodes[i]!, signal);
  }

  private async stopProcess(node: NodeProcess, signal: NodeJS.Signals): Promise<void> {
    const child = node.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill(signal);
    if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused process cannot act on SIGTERM
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    node.process = undefined;
  }

  /** A client; in a TLS cluster it trusts the cluster CA but presents no certificate (a user, not a node). */
  client(options: Partial<ClientOptions> = {}): RegionDbClient {
    const tls = this.options.harnessTls;
    const c = new RegionDbClient({ metasrv: this.metasrvAddr, ...(tls ? { tls: { caFile: tls.caFile } } : {}), ...options });
    this.clients.push(c);
    return c;
  }

  /** The value of a metric on datanode i's /metrics: its first sample (labelled or not), 0 if absent. */
  async metric(i: number, name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.datanodes[i]!.httpPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  /** Admin.Status of one datanode. */
  async status(i: number): Promise<{ replicas: ReplicaStatus[] }> {
    const tls = this.options.harnessTls;
    const admin = makeClient('Admin', this.datanodeAddr(i), { credentials: tls ? channelCredentials(new CertificateFiles(tls)) : undefined });
    try {
      return await call(admin, 'Status', {}, 3000);
    } finally {
      admin.close();
    }
  }

  /**
   * Stops every process (SIGTERM, then SIGKILL after 10 s) and removes the data unless KEEP_DATA
   * is set or `keepData` (a failed test's post-mortem).
   */
  async stop(options: { keepData?: boolean } = {}): Promise<void> {
    for (const c of this.clients) c.close();
    await Promise.all(this.datanodes.map((d) => this.stopProcess(d, 'SIGTERM')));
    if (this.metasrv) await this.stopProcess(this.metasrv, 'SIGTERM');
    if (process.env['KEEP_DATA'] || options.keepData) process.stderr.write(`cluster data kept in ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
