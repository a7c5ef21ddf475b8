// A real 3-member etcd cluster on 127.0.0.1 for side-by-side benchmarks (make bench): the
// reference point for a Raft + gRPC + fsync'd WAL store on this same machine. Free ports, data
// under a fresh temporary directory, every member stopped by its PID and the data removed in
// stop(), which is safe to call at any point (also after a failed start).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep } from '../test/support/local-cluster.js';

export const ETCD_BIN = process.env['ETCD_BIN'] ?? '/usr/bin/etcd';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

interface EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  readonly logFile: string;
  process: ChildProcess | undefined;
}

/** The etcd version string, or undefined when the binary is missing or does not run. */
export function etcdVersion(bin = ETCD_BIN): string | undefined {
  const res = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (res.status !== 0) return undefined;
  return /etcd Version:\s*(\S+)/.exec(res.stdout)?.[1];
}

export class EtcdCluster {
  readonly dir: string;
  readonly members: EtcdMember[] = [];

  constructor(
    private readonly size = 3,
    private readonly bin = ETCD_BIN,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'regiondb-bench-etcd-'));
  }

  /** Client endpoints (http://127.0.0.1:port), one per member. */
  get endpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  async start(): Promise<void> {
    for (let i = 1; i <= this.size; i++) {
      this.members.push({
        name: `etcd${i}`,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: join(this.dir, `etcd${i}`),
        logFile: join(this.dir, `etcd${i}.log`),
        process: undefined,
      });
    }
    const initialCluster = this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
    for (const m of this.members) {
      const log = createWriteStream(m.logFile, { flags: 'a' });
      const child = spawn(
        this.bin,
        [
          '--name', m.name,
          '--data-dir', m.dataDir,
          '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
          '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
          '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
          '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
          '--initial-cluster', initialCluster,
          '--initial-cluster-token', `bench-${process.pid}`,
          '--initial-cluster-state', 'new',
          '--logger', 'zap',
          '--log-outputs', 'stderr',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
      m.process = child;
    }
    await this.waitHealthy();
  }

  /** Every member answers /health with {"health":"true"} (a leader exists and it is in the quorum). */
  private async waitHealthy(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const dead = this.members.find((m) => m.process && (m.process.exitCode !== null || m.process.signalCode !== null));
      if (dead) throw new Error(`${dead.name} exited during startup; log:\n${this.tail(dead)}`);
      const ok = await Promise.all(this.members.map((m) => this.memberHealthy(m)));
      if (ok.every(Boolean)) return;
      await sleep(100);
    }
    throw new Error(`etcd did not become healthy within ${START_TIMEOUT_MS} ms; log of etcd1:\n${this.tail(this.members[0]!)}`);
  }

  private async memberHealthy(m: EtcdMember): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${m.clientPort}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await res.json()) as { health?: string };
      return res.ok && body.health === 'true';
    } catch {
      return false;
    }
  }

  tail(m: EtcdMember, lines = 20): string {
    try {
      return readFileSync(m.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM every member by PID (SIGKILL after 10 s), then remove the data unless KEEP_DATA is set. */
  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        const child = m.process;
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
        m.process = undefined;
      }),
    );
    if (process.env['KEEP_DATA']) process.stderr.write(`etcd data kept in ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
