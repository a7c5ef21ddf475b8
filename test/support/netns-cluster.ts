// A regiondb cluster on stand-in hosts (issue 21): the metasrv and every datanode each in its own
// network namespace with its own address on a bridge (test/support/netns.ts), every process on
// the same ports (4000/4001 metasrv, 4100/4200 datanodes) as on separate machines, configs that
// advertise the host's address, and with `tls` certificates whose SANs name only that address.
// The same surface as LocalCluster (test/support/local-cluster.ts) where the Jepsen harness and
// the tests use it: start, kill/pause/restart by PID, clients, Admin.Status, stop.
// Root only: NetnsLab.create() says why not otherwise.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ClientOptions, RegionDbClient } from '../../src/client/client.js';
import { generateCerts } from '../../src/cmd/certs.js';
import { type DatanodeHealth, datanodeStarted } from '../../src/cmd/process-cluster.js';
import { logChildOutput, sinceLastStart, supervisedSpawnOptions } from '../../src/cmd/supervision.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { CertificateFiles, channelCredentials } from '../../src/rpc/tls.js';
import { CLI, type LocalCluster, type NodeProcess, type ReplicaStatus, sleep } from './local-cluster.js';
import { NetnsLab } from './netns.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

export const METASRV_PORTS = { grpc: 4000, http: 4001 } as const;
export const DATANODE_PORTS = { grpc: 4100, http: 4200 } as const;

/** What the Jepsen harness and the nemesis need of a cluster: LocalCluster and NetnsCluster both. */
export type ClusterHandle = Pick<
  LocalCluster,
  'dir' | 'metasrv' | 'datanodes' | 'datanodeAddr' | 'start' | 'startMetasrv' | 'stopMetasrv' | 'startDatanode' | 'stopDatanode' | 'pauseDatanode' | 'isRunning' | 'client' | 'status' | 'stop'
>;

export interface NetnsClusterOptions {
  readonly datanodes?: number;
  readonly replicationFactor?: number;
  /** Extra TOML appended to every datanode config. */
  readonly datanodeToml?: string;
  /** Extra top-level TOML keys for the metasrv. */
  readonly metasrvToml?: string;
  /** Extra environment of a process by its name ('metasrv', 'datanode1', …). */
  readonly envFor?: (name: string) => Record<string, string>;
  /** TLS with certificates naming each host's address only (no loopback SANs). */
  readonly tls?: boolean;
  /** Directory for configs, data and logs (default: a fresh one under the OS temp dir). */
  readonly dir?: string;
  /** Seeds the run id and subnet choice. */
  readonly seed?: number;
}

/** Host numbers on the bridge: .1 is the harness, .10 the metasrv, .10+i datanode i. */
const METASRV_HOST = 10;

export class NetnsCluster {
  readonly dir: string;
  readonly lab: NetnsLab;
  metasrv!: NodeProcess;
  readonly datanodes: NodeProcess[] = [];
  private readonly clients: RegionDbClient[] = [];
  private readonly n: number;
  private readonly hostOf = new Map<string, string>();
  private tlsFiles: { caFile: string; certFile: string; keyFile: string } | undefined;
  private certsDir: string | undefined;

  constructor(private readonly options: NetnsClusterOptions = {}) {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`make build\` first`);
    this.n = options.datanodes ?? 3;
    this.lab = NetnsLab.create(options.seed); // throws NetnsUnavailable with the reason
    this.dir = options.dir ?? mkdtempSync(join(tmpdir(), 'regiondb-netns-'));
    mkdirSync(this.dir, { recursive: true });
  }

  /** Address of a process's host on the bridge. */
  hostAddr(name: string): string {
    return this.lab.host(this.hostOf.get(name) ?? name).addr;
  }

  get metasrvAddr(): string {
    return `${this.hostAddr('metasrv')}:${METASRV_PORTS.grpc}`;
  }

  datanodeAddr(i: number): string {
    return `${this.hostAddr(`datanode${i + 1}`)}:${DATANODE_PORTS.grpc}`;
  }

  /** Host name in the lab of datanode i (0-based). */
  datanodeHost(i: number): string {
    return `datanode${i + 1}`;
  }

  /** TLS files of the harness's Admin calls (the metasrv's node certificate), and the directory of every certificate. */
  get harnessTls(): { caFile: string; certFile: string; keyFile: string; certsDir: string } | undefined {
    return this.tlsFiles && this.certsDir ? { ...this.tlsFiles, certsDir: this.certsDir } : undefined;
  }

  /** Makes the hosts, writes certificates and configs, starts everything; resolves when the metasrv counts every datanode alive. */
  async start(): Promise<void> {
    const names = ['metasrv', ...Array.from({ length: this.n }, (_, i) => `datanode${i + 1}`)];
    names.forEach((name, k) => {
      this.lab.addHost(name, METASRV_HOST + k);
      this.hostOf.set(name, name);
    });
    if (this.options.tls) {
      this.certsDir = join(this.dir, 'certs');
      const nodeSans: Record<string, string[]> = {};
      for (const name of names) nodeSans[name] = [`IP:${this.hostAddr(name)}`];
      generateCerts({ outDir: this.certsDir, datanodes: this.n, days: 2, nodeSans, loopbackSans: false });
      this.tlsFiles = { caFile: join(this.certsDir, 'ca.crt'), certFile: join(this.certsDir, 'metasrv.crt'), keyFile: join(this.certsDir, 'metasrv.key') };
    }
    const tlsToml = (name: string) =>
      this.certsDir ? `[tls]\nca_file = "${join(this.certsDir, 'ca.crt')}"\ncert_file = "${join(this.certsDir, `${name}.crt`)}"\nkey_file = "${join(this.certsDir, `${name}.key`)}"\nreload_check_ms = 0` : '';
    const clusterId = `netns-${this.lab.run}`;
    const store = `[storage]\ntype = "fs"\nroot = "${join(this.dir, 'object-store')}"`;
    const maddr = this.hostAddr('metasrv');
    const metaDir = join(this.dir, 'metasrv');
    this.metasrv = this.describe('metasrv', METASRV_PORTS.grpc, METASRV_PORTS.http, metaDir, [
      `cluster_id = "${clusterId}"\n${this.options.metasrvToml ?? ''}`,
      `[node]\ndata_dir = "${metaDir}"`,
      `[grpc]\nhost = "${maddr}"\nport = ${METASRV_PORTS.grpc}`,
      `[http]\nhost = "${maddr}"\nport = ${METASRV_PORTS.http}`,
      `[failure_detector]\nheartbeat_interval_ms = 500\nacceptable_pause_ms = 500`,
      store,
      tlsToml('metasrv'),
      `[log]\nlevel = "info"`,
    ]);
    for (let i = 0; i < this.n; i++) {
      const name = `datanode${i + 1}`;
      const addr = this.hostAddr(name);
      const dataDir = join(this.dir, name);
      this.datanodes.push(
        this.describe(name, DATANODE_PORTS.grpc, DATANODE_PORTS.http, dataDir, [
          `cluster_id = "${clusterId}"`,
          `[node]\nid = ${i + 1}\ndata_dir = "${dataDir}"`,
          `[grpc]\nhost = "${addr}"\nport = ${DATANODE_PORTS.grpc}\nadvertise_addr = "${addr}:${DATANODE_PORTS.grpc}"`,
          `[http]\nhost = "${addr}"\nport = ${DATANODE_PORTS.http}`,
          `[metasrv]\naddr = "${maddr}:${METASRV_PORTS.grpc}"`,
          `[heartbeat]\ninterval_ms = 500`,
          store,
          tlsToml(name),
          `[log]\nlevel = "info"`,
          this.options.datanodeToml ?? '',
        ]),
      );
    }
    await this.startMetasrv();
    await Promise.all(this.datanodes.map((_, i) => this.startDatanode(i)));
    await this.waitNodesAlive(this.n);
  }

  private describe(name: string, grpcPort: number, httpPort: number, dataDir: string, toml: string[]): NodeProcess {
    const configFile = join(this.dir, `${name}.toml`);
    writeFileSync(configFile, `${toml.filter(Boolean).join('\n\n')}\n`);
    const args = name === 'metasrv' ? ['metasrv', '--replication-factor', String(this.options.replicationFactor ?? 3)] : ['datanode'];
    return { name, args, grpcPort, httpPort, configFile, dataDir, logFile: join(this.dir, `${name}.log`), process: undefined };
  }

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
          seen = String(err);
        }
        await sleep(100);
      }
      throw new Error(`the metasrv did not count ${count} datanodes alive within 30 s (last seen: ${seen}); logs in ${this.dir}`);
    } finally {
      client.close();
    }
  }

  private async healthy(node: NodeProcess): Promise<boolean> {
    try {
      const res = await fetch(`http://${this.hostAddr(node.name)}:${node.httpPort}/health`, { signal: AbortSignal.timeout(1000) });
      if (!res.ok) return false;
      if (node === this.metasrv) return true;
      const metasrvUp = this.metasrv.process !== undefined && this.metasrv.process.exitCode === null && this.metasrv.process.signalCode === null;
      return datanodeStarted((await res.json()) as DatanodeHealth, metasrvUp);
    } catch {
      return false;
    }
  }

  private async startNode(node: NodeProcess, args: string[]): Promise<void> {
    const env = { ...process.env, ...(this.options.envFor?.(node.name) ?? {}) };
    // `ip netns exec` switches namespace and execs node: the child's PID is the server's own,
    // so SIGKILL/SIGSTOP by PID reach the server, as in LocalCluster.
    const [cmd, ...prefix] = this.lab.execPrefix(this.hostOf.get(node.name)!);
    const child = spawn(cmd!, [...prefix, process.execPath, CLI, ...args, '-c', node.configFile], supervisedSpawnOptions('pipe', { cwd: ROOT, env }));
    logChildOutput(child, node.logFile, node.name);
    node.process = child;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${node.name} exited during startup (code ${child.exitCode}); log:\n${this.tail(node)}`);
      if (await this.healthy(node)) return;
      await sleep(100);
    }
    throw new Error(`${node.name} did not become healthy within 30 s; log:\n${this.tail(node)}`);
  }

  startMetasrv(): Promise<void> {
    return this.startNode(this.metasrv, [...this.metasrv.args]);
  }

  startDatanode(i: number): Promise<void> {
    return this.startNode(this.datanodes[i]!, [...this.datanodes[i]!.args]);
  }

  async stopMetasrv(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.stopProcess(this.metasrv, signal);
  }

  async stopDatanode(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.stopProcess(this.datanodes[i]!, signal);
  }

  pauseDatanode(i: number, paused: boolean): void {
    this.datanodes[i]!.process?.kill(paused ? 'SIGSTOP' : 'SIGCONT');
  }

  isRunning(i: number): boolean {
    const p = this.datanodes[i]!.process;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  private async stopProcess(node: NodeProcess, signal: NodeJS.Signals): Promise<void> {
    const child: ChildProcess | undefined = node.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill(signal);
    if (signal !== 'SIGKILL') child.kill('SIGCONT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    node.process = undefined;
  }

  tail(node: NodeProcess, lines = 30): string {
    try {
      return sinceLastStart(readFileSync(node.logFile, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** A client of the cluster; with TLS it trusts the CA and presents the client certificate (a user, not a node). */
  client(options: Partial<ClientOptions> = {}): RegionDbClient {
    const certs = this.certsDir;
    const tls = certs ? { tls: { caFile: join(certs, 'ca.crt'), certFile: join(certs, 'client.crt'), keyFile: join(certs, 'client.key') } } : {};
    const c = new RegionDbClient({ metasrv: this.metasrvAddr, ...tls, ...options });
    this.clients.push(c);
    return c;
  }

  /** Admin.Status of datanode i, dialled at its host's address (with TLS: the address its certificate must name). */
  async status(i: number, timeoutMs = 3000): Promise<{ replicas: ReplicaStatus[] }> {
    const tls = this.tlsFiles;
    const admin = makeClient('Admin', this.datanodeAddr(i), { credentials: tls ? channelCredentials(new CertificateFiles(tls)) : undefined });
    try {
      return await call(admin, 'Status', {}, timeoutMs);
    } finally {
      admin.close();
    }
  }

  /** Stops every process by PID, removes every namespace and link, and the data unless KEEP_DATA or keepData. */
  async stop(options: { keepData?: boolean } = {}): Promise<void> {
    try {
      for (const c of this.clients) c.close();
      await Promise.all(this.datanodes.map((d) => this.stopProcess(d, 'SIGTERM')));
      if (this.metasrv) await this.stopProcess(this.metasrv, 'SIGTERM');
    } finally {
      this.lab.destroy();
    }
    if (process.env['KEEP_DATA'] || options.keepData) process.stderr.write(`cluster data kept in ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
