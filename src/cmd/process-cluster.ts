// A regiondb cluster of real processes on 127.0.0.1: one metasrv (or a group of them,
// docs/metasrv-ha.md) and N datanodes, children of
// this process, ports chosen by the OS, configs, data and logs under one directory. Every process
// is started and stopped by its PID (and dies with this process: ./supervision.ts). The one
// launcher of the project: `regiondb drill` builds its scratch clusters with it, and the test
// harness (test/support/local-cluster.ts) extends it with test-only probes. It is in src/ so that
// the drill can run from dist/ without test code.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { type ClientOptions, RegionDbClient } from '../client/client.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { logChildOutput, sinceLastStart, supervisedSpawnOptions } from './supervision.js';

const START_TIMEOUT_MS = 30_000;

/**
 * Time spent starting some processes, measured against START_TIMEOUT_MS (see startTimer).
 * `describe` says what was measured, for the error that a start which overran throws.
 */
export interface StartTimer {
  elapsedMs(): number;
  describe(): string;
}
const STOP_TIMEOUT_MS = 10_000;
const HEALTH_POLL_MS = 50;

/**
 * Ports this process handed out. The probe below closes its socket before the server that will
 * use the port binds it, so the OS may hand the same port to the next probe: two clusters set up
 * at once in one process (the drill's, or a test's two clusters) could then collide. Never
 * handing out a port twice per process closes that window for everything started from here.
 */
const handedOut = new Set<number>();
const FREE_PORT_ATTEMPTS_MAX = 100;

/**
 * The lowest port of the OS's ephemeral range (Linux: ip_local_port_range), from which outgoing
 * connections take their local ports; 32768 where it cannot be read.
 */
function ephemeralPortFloor(): number {
  try {
    const floor = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(floor) && floor > 0 ? floor : 32768;
  } catch {
    return 32768;
  }
}
/** The part of a datanode's /health that says whether it has finished starting. */
export interface DatanodeHealth {
  readonly status?: string;
  readonly registered?: boolean;
}

/**
 * Whether a datanode answering /health has finished starting. It reopens its replicas only once
 * the metasrv has answered its registration (docs/failover.md, "A data dir restored from a
 * copy"): while a metasrv of its cluster runs (`metasrvUp`), it has started once registered, or
 * once it says why not (a refused start: /health status other than ok). With no metasrv running,
 * the answer alone (it registers when one starts).
 */
export function datanodeStarted(health: DatanodeHealth, metasrvUp: boolean): boolean {
  return health.registered === true || health.status !== 'ok' || !metasrvUp;
}

/** Ports below the ephemeral range are probed from here up (below: well-known and registered services). */
const PROBE_PORT_MIN = 10_000;

/** Binds `port` on loopback (0: the OS picks one) and releases it; the port, or undefined if it is taken. */
function probePort(port: number): Promise<number | undefined> {
  return new Promise((ok) => {
    const s = createServer();
    s.once('error', () => ok(undefined));
    s.listen(port, '127.0.0.1', () => {
      const bound = (s.address() as { port: number }).port;
      s.close(() => ok(bound));
    });
  });
}

/**
 * A port nobody listens on right now, never one this process handed out before. Picked below the
 * ephemeral range where there is room: a port the OS picks for `listen(0)` comes from that range,
 * where any outgoing connection on the machine may take it between this probe and the server's
 * bind (a metasrv of the Jepsen test once failed to start with EADDRINUSE that way).
 */
export async function freePort(): Promise<number> {
  const floor = ephemeralPortFloor();
  const below = floor - PROBE_PORT_MIN;
  for (let attempt = 0; attempt < FREE_PORT_ATTEMPTS_MAX; attempt++) {
    const candidate = below > 1000 ? PROBE_PORT_MIN + Math.floor(Math.random() * below) : 0;
    if (handedOut.has(candidate)) continue;
    const port = await probePort(candidate);
    if (port !== undefined && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port this process has not used already after ${FREE_PORT_ATTEMPTS_MAX} attempts`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One server process of the cluster (running or not). */
export interface NodeProcess {
  readonly name: string;
  /** The CLI subcommand and its flags (without `-c <config>`). */
  readonly args: readonly string[];
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly configFile: string;
  readonly dataDir: string;
  readonly logFile: string;
  process: ChildProcess | undefined;
}

export interface ProcessClusterOptions {
  /** Directory for configs, data, logs and the shared object store; created by start(). */
  readonly dir: string;
  /** The regiondb CLI script every process runs (dist/src/cmd/main.js, or the running CLI). */
  readonly cliScript: string;
  /** Flags for `node` before the script (e.g. `--max-old-space-size=384`, or process.execArgv). */
  readonly nodeArgs?: readonly string[];
  /** Working directory of the processes (default: this process's). */
  readonly cwd?: string;
  /** Written into every config; also names the cluster in errors. */
  readonly clusterId: string;
  readonly datanodes?: number;
  readonly replicationFactor?: number;
  /** Extra TOML appended to every datanode config (e.g. a smaller snapshot interval). */
  readonly datanodeToml?: string;
  /** Replaces the default `[storage]` section (a shared local directory) of every process. */
  readonly storageToml?: string;
  /** Extra top-level TOML keys for the metasrv (e.g. replica_repair_after_ms = 3000). */
  readonly metasrvToml?: string;
  /** How many datanodes start() starts (default all); the others are started with startDatanode(i). */
  readonly startDatanodes?: number;
  /** TLS files of the launcher: its clients trust this CA (subclasses may present the certificate). */
  readonly harnessTls?: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /**
   * Metasrv processes: 1 (default) is a single metasrv; 3 or 5 form a metasrv group on raft
   * (docs/metasrv-ha.md), members named metasrv1… and every datanode and client given all their
   * addresses.
   */
  readonly metasrvs?: number;
  /** Extra TOML for datanode i (0-based), written once the ports are known (e.g. raft proxies). */
  readonly datanodeTomlFor?: (i: number, cluster: ProcessCluster) => string;
  /** Extra environment of a process by its name ('metasrv', 'datanode1', …), e.g. a faked clock. */
  readonly envFor?: (name: string) => Record<string, string>;
  /**
   * Where metasrv `to` (0-based) is reached from metasrv member `from`, or from the datanodes and
   * clients (`'callers'`); default its own port. Proxies in front of the members go here (the
   * Jepsen metasrv partition cuts member links and caller links apart).
   */
  readonly metasrvAddrFor?: (from: number | 'callers', to: number) => string;
}

export interface ClusterPorts {
  /** The (first) metasrv's gRPC and HTTP ports. */
  metasrv: [number, number];
  /** Every metasrv's (one entry for a single metasrv). */
  metasrvs: [number, number][];
  datanodes: [number, number][];
}

export class ProcessCluster {
  readonly dir: string;
  readonly objectStoreDir: string;
  /** The metasrv processes: one, or the members of a metasrv group (member id = index + 1). */
  readonly metasrvs: NodeProcess[] = [];
  readonly datanodes: NodeProcess[] = [];
  private readonly clients: RegionDbClient[] = [];
  private ports: ClusterPorts | undefined;

  constructor(protected readonly options: ProcessClusterOptions) {
    this.dir = options.dir;
    this.objectStoreDir = join(this.dir, 'object-store');
  }

  /** The single metasrv, or the group's first member (undefined before start()). */
  get metasrv(): NodeProcess {
    return this.metasrvs[0]!;
  }

  metasrvMember(i: number): NodeProcess {
    const m = this.metasrvs[i];
    if (!m) throw new RegionDbError(ErrorCode.InvalidArgument, `cluster ${this.options.clusterId} has no metasrv ${i} (it has ${this.metasrvs.length}, numbered from 0)`);
    return m;
  }

  /** Where clients and datanodes find the metasrv: its address, or every member's, comma-separated. */
  get metasrvAddr(): string {
    if (!this.ports) throw new RegionDbError(ErrorCode.Internal, `cluster ${this.options.clusterId} has no ports yet: call start() or allocatePorts() first`);
    return this.ports.metasrvs.map(([g], to) => this.options.metasrvAddrFor?.('callers', to) ?? `127.0.0.1:${g}`).join(',');
  }

  get datanodeCount(): number {
    return this.datanodes.length;
  }

  datanodeAddr(i: number): string {
    return `127.0.0.1:${this.datanode(i).grpcPort}`;
  }

  datanodeDataDir(i: number): string {
    return this.datanode(i).dataDir;
  }

  protected datanode(i: number): NodeProcess {
    const node = this.datanodes[i];
    if (!node) throw new RegionDbError(ErrorCode.InvalidArgument, `cluster ${this.options.clusterId} has no datanode ${i} (it has ${this.datanodes.length}, numbered from 0)`);
    return node;
  }

  /** Reserves the ports of every process (before start, so proxies can be set up in front). */
  async allocatePorts(): Promise<ClusterPorts> {
    if (!this.ports) {
      const metasrvs: [number, number][] = [];
      for (let i = 0; i < (this.options.metasrvs ?? 1); i++) metasrvs.push([await freePort(), await freePort()]);
      const datanodes: [number, number][] = [];
      for (let i = 0; i < (this.options.datanodes ?? 3); i++) datanodes.push([await freePort(), await freePort()]);
      this.ports = { metasrv: metasrvs[0]!, metasrvs, datanodes };
    }
    return this.ports;
  }

  /** Writes the configs and starts the metasrv and the datanodes; resolves when the metasrv counts them alive. */
  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const { clusterId } = this.options;
    const ports = await this.allocatePorts();
    const storage = this.options.storageToml ?? `[storage]\ntype = "fs"\nroot = "${this.objectStoreDir}"`;
    const group = ports.metasrvs.length > 1;
    // Member `from`'s view of the group: its own address, and the others' as it reaches them.
    const members = (from: number) =>
      ports.metasrvs.map(([g], to) => `"${to + 1}" = "${(to !== from && this.options.metasrvAddrFor?.(from, to)) || `127.0.0.1:${g}`}"`).join('\n');
    ports.metasrvs.forEach(([mg, mh], index) => {
      const name = group ? `metasrv${index + 1}` : 'metasrv';
      const metaDir = join(this.dir, name);
      this.metasrvs.push(
        this.describeNode(name, ['metasrv', '--replication-factor', String(this.options.replicationFactor ?? 3)], mg, mh, metaDir, [
          `cluster_id = "${clusterId}"\n${this.options.metasrvToml ?? ''}`,
          `[node]\ndata_dir = "${metaDir}"`,
          `[grpc]\nhost = "127.0.0.1"\nport = ${mg}`,
          `[http]\nhost = "127.0.0.1"\nport = ${mh}`,
          `[failure_detector]\nheartbeat_interval_ms = 500\nacceptable_pause_ms = 500`,
          storage,
          `[log]\nlevel = "info"`,
          group ? `[meta_group]\nid = ${index + 1}\n\n[meta_group.members]\n${members(index)}` : '',
        ]),
      );
    });
    ports.datanodes.forEach(([g, h], index) => {
      const i = index + 1;
      const dataDir = join(this.dir, `datanode${i}`);
      this.datanodes.push(
        this.describeNode(`datanode${i}`, ['datanode'], g, h, dataDir, [
          `cluster_id = "${clusterId}"`,
          `[node]\nid = ${i}\ndata_dir = "${dataDir}"`,
          `[grpc]\nhost = "127.0.0.1"\nport = ${g}`,
          `[http]\nhost = "127.0.0.1"\nport = ${h}`,
          `[metasrv]\naddr = "${this.metasrvAddr}"`,
          `[heartbeat]\ninterval_ms = 500`,
          storage,
          `[log]\nlevel = "info"`,
          this.options.datanodeToml ?? '',
          this.options.datanodeTomlFor?.(index, this) ?? '',
        ]),
      );
    });
    await this.startMetasrv();
    const starting = this.options.startDatanodes ?? this.datanodes.length;
    await Promise.all(this.datanodes.slice(0, starting).map((_, i) => this.startDatanode(i)));
    await this.waitNodesAlive(starting);
  }

  /**
   * Healthy is not yet registered: a new table can be placed only once the metasrv counts the
   * datanodes alive, and a loaded machine can delay the first heartbeats.
   */
  private async waitNodesAlive(count: number): Promise<void> {
    const client = this.client({ deadlineMs: 2000, attemptTimeoutMs: 1000 });
    const timer = this.startTimer(() => [...this.metasrvs, ...this.datanodes.slice(0, count)].map((n) => n.process?.pid));
    let seen = 'no answer from the metasrv';
    try {
      while (timer.elapsedMs() < START_TIMEOUT_MS) {
        try {
          const res = (await client.listNodes()) as { nodes: { node_id: string; state: string }[] };
          if (res.nodes.filter((n) => n.state === 'alive').length >= count) return;
          seen = res.nodes.map((n) => `node ${n.node_id} ${n.state}`).join(', ') || 'no datanode registered';
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'UNAUTHENTICATED' || code === 'PERMISSION_DENIED') return; // a secured cluster: its user handles it
          seen = String(err);
        }
        await sleep(HEALTH_POLL_MS);
      }
      throw new RegionDbError(
        ErrorCode.Unavailable,
        `the metasrv did not count ${count} datanodes alive within ${START_TIMEOUT_MS} ms${timer.describe()} (last seen: ${seen}); logs in ${this.dir}`,
      );
    } finally {
      this.closeClient(client);
    }
  }

  /**
   * The clock of a start's bound (a process becoming healthy, the datanodes counted alive): wall
   * time from now. A seam: the test harness (test/support/local-cluster.ts) counts only the time
   * the processes it waits for were not kept off the CPU by the rest of a loaded machine.
   */
  protected startTimer(_pids: () => readonly (number | undefined)[]): StartTimer {
    const startedMs = Date.now();
    return { elapsedMs: () => Date.now() - startedMs, describe: () => '' };
  }

  private describeNode(name: string, args: string[], grpcPort: number, httpPort: number, dataDir: string, toml: string[]): NodeProcess {
    const configFile = join(this.dir, `${name}.toml`);
    writeFileSync(configFile, `${toml.join('\n\n')}\n`);
    return { name, args, grpcPort, httpPort, configFile, dataDir, logFile: join(this.dir, `${name}.log`), process: undefined };
  }

  /** The `node` command line of a process: flags, the CLI script, its subcommand and config. */
  protected commandLine(node: NodeProcess): string[] {
    return [...(this.options.nodeArgs ?? []), this.options.cliScript, ...node.args, '-c', node.configFile];
  }

  protected environment(node: NodeProcess): NodeJS.ProcessEnv {
    return { ...process.env, ...(this.options.envFor?.(node.name) ?? {}) };
  }

  /** Starts `node` and resolves once it answers /health; fails naming its log if it exits or stays unhealthy. */
  private async launch(node: NodeProcess): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const child = spawn(process.execPath, this.commandLine(node), supervisedSpawnOptions('pipe', { cwd: this.options.cwd, env: this.environment(node) }));
    logChildOutput(child, node.logFile, node.name);
    node.process = child;
    const timer = this.startTimer(() => [child.pid]);
    while (timer.elapsedMs() < START_TIMEOUT_MS) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new RegionDbError(ErrorCode.Unavailable, `${node.name} exited during startup (code ${child.exitCode}); see ${node.logFile}:\n${this.tail(node)}`);
      }
      try {
        const res = await fetch(`http://127.0.0.1:${node.httpPort}/health`, { signal: AbortSignal.timeout(1000) });
        if (res.ok && this.started(node, (await res.json()) as DatanodeHealth)) return;
      } catch {
        // not listening yet
      }
      await sleep(HEALTH_POLL_MS);
    }
    throw new RegionDbError(ErrorCode.Unavailable, `${node.name} did not become healthy within ${START_TIMEOUT_MS} ms${timer.describe()}; see ${node.logFile}:\n${this.tail(node)}`);
  }

  /** Whether a process answering /health has finished starting (datanodeStarted for a datanode). */
  private started(node: NodeProcess, health: DatanodeHealth): boolean {
    if (!this.datanodes.includes(node)) return true;
    return datanodeStarted(health, this.metasrvs.some((m) => m.process !== undefined && m.process.exitCode === null && m.process.signalCode === null));
  }

  /** The last lines the current process of `node` logged (not an earlier run's: the log is appended to). */
  tail(node: NodeProcess, lines = 30): string {
    try {
      return sinceLastStart(readFileSync(node.logFile, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Sends `signal` by PID and waits for the exit (SIGKILL after STOP_TIMEOUT_MS). */
  private async signal(node: NodeProcess | undefined, signal: NodeJS.Signals): Promise<void> {
    const child = node?.process;
    if (!node || !child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill(signal);
    if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused process cannot act on SIGTERM
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    node.process = undefined;
  }

  /** Starts every metasrv (a group's members together: each waits for the others to elect). */
  async startMetasrv(): Promise<void> {
    await Promise.all(this.metasrvs.map((m) => this.launch(m)));
  }

  stopMetasrv(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    return Promise.all(this.metasrvs.map((m) => this.signal(m, signal))).then(() => {});
  }

  killMetasrv(): Promise<void> {
    return this.stopMetasrv('SIGKILL');
  }

  startMetasrvMember(i: number): Promise<void> {
    return this.launch(this.metasrvMember(i));
  }

  stopMetasrvMember(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    return this.signal(this.metasrvMember(i), signal);
  }

  killMetasrvMember(i: number): Promise<void> {
    return this.stopMetasrvMember(i, 'SIGKILL');
  }

  isMetasrvMemberRunning(i: number): boolean {
    const p = this.metasrvMember(i).process;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** The acting metasrv's index (actingMetasrv), waiting up to `timeoutMs` for one to act. */
  async waitForActingMetasrv(timeoutMs: number = START_TIMEOUT_MS): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const acting = await this.actingMetasrv();
      if (acting !== undefined) return acting;
      if (Date.now() >= deadline) throw new RegionDbError(ErrorCode.Unavailable, `no metasrv of cluster ${this.options.clusterId} acts within ${timeoutMs} ms; logs in ${this.dir}`);
      await sleep(HEALTH_POLL_MS);
    }
  }

  /**
   * The index of the metasrv that acts (the group's leader, once it took over), from the members'
   * /health; undefined while none does. A single metasrv acts whenever it runs.
   */
  async actingMetasrv(): Promise<number | undefined> {
    for (let i = 0; i < this.metasrvs.length; i++) {
      if (!this.isMetasrvMemberRunning(i)) continue;
      try {
        const res = await fetch(`http://127.0.0.1:${this.metasrvs[i]!.httpPort}/health`, { signal: AbortSignal.timeout(1000) });
        const health = (await res.json()) as { metaGroup?: { acting: boolean } };
        if (!health.metaGroup || health.metaGroup.acting) return i;
      } catch {
        // not answering: not the one
      }
    }
    return undefined;
  }

  startDatanode(i: number): Promise<void> {
    return this.launch(this.datanode(i));
  }

  /** Sends `signal` to a datanode by PID and waits for it to exit. */
  stopDatanode(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    return this.signal(this.datanode(i), signal);
  }

  killDatanode(i: number): Promise<void> {
    return this.stopDatanode(i, 'SIGKILL');
  }

  /** SIGSTOP / SIGCONT a datanode (a GC pause, a VM migration). */
  pauseDatanode(i: number, paused: boolean): void {
    this.datanode(i).process?.kill(paused ? 'SIGSTOP' : 'SIGCONT');
  }

  isRunning(i: number): boolean {
    const p = this.datanode(i).process;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** The datanode's local disk is gone (WAL, raft state, cache); the object store stays. */
  wipeDatanode(i: number): void {
    rmSync(this.datanode(i).dataDir, { recursive: true, force: true });
  }

  /** A client of the cluster, closed by stop(); in a TLS cluster it trusts the cluster CA but presents no certificate (a user, not a node). */
  client(options: Partial<ClientOptions> = {}): RegionDbClient {
    const tls = this.options.harnessTls;
    const c = new RegionDbClient({ metasrv: this.metasrvAddr, ...(tls ? { tls: { caFile: tls.caFile } } : {}), ...options });
    this.clients.push(c);
    return c;
  }

  private closeClient(c: RegionDbClient): void {
    c.close();
    const at = this.clients.indexOf(c);
    if (at >= 0) this.clients.splice(at, 1);
  }

  /** Kill -9 of every process: the disaster, not a shutdown. */
  async killAll(): Promise<void> {
    await Promise.all([...this.datanodes.map((d) => this.signal(d, 'SIGKILL')), ...this.metasrvs.map((m) => this.signal(m, 'SIGKILL'))]);
  }

  /** Closes the clients and stops every process (SIGTERM, SIGKILL after 10 s); the data stays. */
  async stop(): Promise<void> {
    for (const c of this.clients.splice(0)) c.close();
    await Promise.all(this.datanodes.map((d) => this.signal(d, 'SIGTERM')));
    await Promise.all(this.metasrvs.map((m) => this.signal(m, 'SIGTERM')));
  }

  /** stop(), then removes the directory. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** PIDs of the running processes (for an emergency stop on Ctrl-C). */
  pids(): number[] {
    return [...this.metasrvs, ...this.datanodes].flatMap((n) => (n?.process?.pid !== undefined && n.process.exitCode === null ? [n.process.pid] : []));
  }
}
