// A throwaway local cluster for `regiondb drill`: one metasrv and N datanodes as child processes
// of this CLI on 127.0.0.1 (ports chosen by the OS), data under one directory, every process
// started and stopped by its PID. The same shape as the test harness (test/support/local-cluster.ts),
// reduced to what the drill needs and usable from dist/ (no test code).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { RegionDbClient } from '../client/client.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { logChildOutput, sinceLastStart, supervisedSpawnOptions } from './supervision.js';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/**
 * Ports this process handed out. The probe below closes its socket before the server that will
 * use the port binds it, so the OS may hand the same port to the next probe: two clusters set up
 * at once in one process (the drill's, or a test's two clusters) could then collide. Never
 * handing out a port twice per process closes that window for everything started from here.
 */
const handedOut = new Set<number>();
const FREE_PORT_ATTEMPTS_MAX = 100;

/** A port nobody listens on right now (the OS picks it), never one this process handed out before. Also used by the test harness. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < FREE_PORT_ATTEMPTS_MAX; attempt++) {
    const port = await new Promise<number>((ok, fail) => {
      const s = createServer();
      s.once('error', fail);
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => ok(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no port this process has not used already after ${FREE_PORT_ATTEMPTS_MAX} attempts`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ScratchNode {
  readonly name: string;
  readonly args: string[];
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly configFile: string;
  readonly dataDir: string;
  readonly logFile: string;
  process: ChildProcess | undefined;
}

export interface ScratchClusterOptions {
  /** Directory for configs, data, logs and the object store; created, and removed by destroy(). */
  readonly dir: string;
  readonly datanodes: number;
  readonly replicationFactor: number;
  /** Extra TOML appended to every datanode config. */
  readonly datanodeToml?: string;
  /** Extra top-level TOML keys for the metasrv. */
  readonly metasrvToml?: string;
  /** The regiondb CLI entry point to spawn (default: the running one). */
  readonly cliScript?: string;
}

export class ScratchCluster {
  readonly dir: string;
  readonly objectStoreDir: string;
  private metasrv: ScratchNode | undefined;
  private readonly datanodes: ScratchNode[] = [];
  private readonly clients: RegionDbClient[] = [];

  constructor(private readonly options: ScratchClusterOptions) {
    this.dir = options.dir;
    this.objectStoreDir = join(this.dir, 'object-store');
  }

  get metasrvAddr(): string {
    if (!this.metasrv) throw new RegionDbError(ErrorCode.Internal, 'scratch cluster not started');
    return `127.0.0.1:${this.metasrv.grpcPort}`;
  }

  get datanodeCount(): number {
    return this.datanodes.length;
  }

  datanodeDataDir(i: number): string {
    return this.datanodes[i]!.dataDir;
  }

  /** Writes the configs and starts every process; resolves when all answer /health. */
  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const clusterId = `drill-${process.pid}`;
    const [mg, mh] = [await freePort(), await freePort()];
    const metaDir = join(this.dir, 'metasrv');
    this.metasrv = this.describe('metasrv', ['metasrv', '--replication-factor', String(this.options.replicationFactor)], mg, mh, metaDir, [
      `cluster_id = "${clusterId}"\n${this.options.metasrvToml ?? ''}`,
      `[node]\ndata_dir = "${metaDir}"`,
      `[grpc]\nhost = "127.0.0.1"\nport = ${mg}`,
      `[http]\nhost = "127.0.0.1"\nport = ${mh}`,
      `[failure_detector]\nheartbeat_interval_ms = 500\nacceptable_pause_ms = 500`,
      `[log]\nlevel = "info"`,
    ]);
    for (let i = 1; i <= this.options.datanodes; i++) {
      const [g, h] = [await freePort(), await freePort()];
      const dataDir = join(this.dir, `datanode${i}`);
      this.datanodes.push(
        this.describe(`datanode${i}`, ['datanode'], g, h, dataDir, [
          `cluster_id = "${clusterId}"`,
          `[node]\nid = ${i}\ndata_dir = "${dataDir}"`,
          `[grpc]\nhost = "127.0.0.1"\nport = ${g}`,
          `[http]\nhost = "127.0.0.1"\nport = ${h}`,
          `[metasrv]\naddr = "127.0.0.1:${mg}"`,
          `[heartbeat]\ninterval_ms = 500`,
          `[storage]\ntype = "fs"\nroot = "${this.objectStoreDir}"`,
          `[log]\nlevel = "info"`,
          this.options.datanodeToml ?? '',
        ]),
      );
    }
    await this.launch(this.metasrv);
    await Promise.all(this.datanodes.map((d) => this.launch(d)));
    await this.waitForDatanodes();
  }

  /** Healthy is not yet registered: tables can be placed only once the metasrv sees every datanode alive. */
  private async waitForDatanodes(): Promise<void> {
    const client = new RegionDbClient({ metasrv: this.metasrvAddr, deadlineMs: 2000, attemptTimeoutMs: 1000 });
    try {
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        const res = (await client.listNodes().catch(() => ({ nodes: [] }))) as { nodes: { state: string }[] };
        const alive = res.nodes.filter((n) => n.state === 'alive').length;
        if (alive >= this.datanodes.length) return;
        if (Date.now() > deadline) throw new RegionDbError(ErrorCode.Unavailable, `only ${alive} of ${this.datanodes.length} datanodes registered with the metasrv within ${START_TIMEOUT_MS} ms`);
        await sleep(50);
      }
    } finally {
      client.close();
    }
  }

  private describe(name: string, args: string[], grpcPort: number, httpPort: number, dataDir: string, toml: string[]): ScratchNode {
    const configFile = join(this.dir, `${name}.toml`);
    writeFileSync(configFile, `${toml.join('\n\n')}\n`);
    return { name, args, grpcPort, httpPort, configFile, dataDir, logFile: join(this.dir, `${name}.log`), process: undefined };
  }

  private async launch(node: ScratchNode): Promise<void> {
    const script = this.options.cliScript ?? process.argv[1]!;
    const child = spawn(process.execPath, [...process.execArgv, script, ...node.args, '-c', node.configFile], supervisedSpawnOptions());
    logChildOutput(child, node.logFile, node.name);
    node.process = child;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new RegionDbError(ErrorCode.Unavailable, `${node.name} exited during startup (code ${child.exitCode}); see ${node.logFile}:\n${this.tail(node)}`);
      }
      try {
        if ((await fetch(`http://127.0.0.1:${node.httpPort}/health`, { signal: AbortSignal.timeout(1000) })).ok) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new RegionDbError(ErrorCode.Unavailable, `${node.name} did not become healthy within ${START_TIMEOUT_MS} ms; see ${node.logFile}`);
  }

  private tail(node: ScratchNode): string {
    try {
      return sinceLastStart(readFileSync(node.logFile, 'utf8')).trimEnd().split('\n').slice(-20).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Sends `signal` by PID and waits for the exit (SIGKILL after STOP_TIMEOUT_MS). */
  private async signal(node: ScratchNode | undefined, signal: NodeJS.Signals): Promise<void> {
    const child = node?.process;
    if (!node || !child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    node.process = undefined;
  }

  killDatanode(i: number): Promise<void> {
    return this.signal(this.datanodes[i], 'SIGKILL');
  }

  startDatanode(i: number): Promise<void> {
    return this.launch(this.datanodes[i]!);
  }

  killMetasrv(): Promise<void> {
    return this.signal(this.metasrv, 'SIGKILL');
  }

  startMetasrv(): Promise<void> {
    return this.launch(this.metasrv!);
  }

  /** The datanode's local disk is gone (WAL, raft state, cache); the object store stays. */
  wipeDatanode(i: number): void {
    rmSync(this.datanodes[i]!.dataDir, { recursive: true, force: true });
  }

  client(options: { deadlineMs?: number; attemptTimeoutMs?: number } = {}): RegionDbClient {
    const c = new RegionDbClient({ metasrv: this.metasrvAddr, ...options });
    this.clients.push(c);
    return c;
  }

  /** Kill -9 of every process: the disaster, not a shutdown. */
  async killAll(): Promise<void> {
    await Promise.all([...this.datanodes.map((d) => this.signal(d, 'SIGKILL')), this.signal(this.metasrv, 'SIGKILL')]);
  }

  /** Stops every process (SIGTERM) and closes clients; data stays until destroy(). */
  async stop(): Promise<void> {
    for (const c of this.clients.splice(0)) c.close();
    await Promise.all(this.datanodes.map((d) => this.signal(d, 'SIGTERM')));
    await this.signal(this.metasrv, 'SIGTERM');
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** PIDs of running processes (for an emergency stop on Ctrl-C). */
  pids(): number[] {
    return [this.metasrv, ...this.datanodes].flatMap((n) => (n?.process?.pid !== undefined && n.process.exitCode === null ? [n.process.pid] : []));
  }
}
