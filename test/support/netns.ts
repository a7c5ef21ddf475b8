// Network namespaces as stand-in hosts (issue 21). A NetnsLab owns, for one run:
//   - a bridge rdb-<run>-br in the root namespace with 10.77.<k>.1/24 (the harness's address on
//     the "LAN"; <k> is a /24 no existing address or route of this machine uses),
//   - one namespace rdb-<run>-<host> per host, with lo and eth0 = 10.77.<k>.<n>/24, joined to the
//     bridge by a veth pair whose root-side end is rdb-<run>-h<n>.
// Nothing else on the machine is touched: no existing interface, route or firewall rule.
//
// Faults at the network layer, without iptables/nft (not installed here) and without netem
// (this kernel has no sch_netem): a blackhole route in the sender's namespace drops its packets
// to one peer, silently for the peer (one-way at the IP layer; a TCP connection across it stalls
// both ways, as on a real network; the sender's own new connections fail at once with EINVAL).
//
// Cleanup: every name carries the run id, and a marker file /run/regiondb-netns/<run>.json holds
// the creating process's pid and start time. destroy() removes what the lab made; reapStale()
// removes the leftovers of runs whose creator is gone (a crashed or kill -9'd harness): processes
// still running inside those namespaces are killed by PID, then the namespaces and links deleted.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const NAME_PREFIX = 'rdb-';
export const MARKER_DIR = '/run/regiondb-netns';
const SUBNET_PREFIX = '10.77';

export class NetnsUnavailable extends Error {}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

const ip = (...args: string[]) => run('ip', args);

/**
 * Why this machine cannot run namespaces (not root, no `ip`, netns refused), or null if it can.
 * Creates and deletes a throwaway namespace to be sure.
 */
export function netnsUnavailableReason(): string | null {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return `network namespaces need root (running as uid ${process.getuid()})`;
  }
  const probe = `${NAME_PREFIX}probe-${process.pid}`;
  try {
    ip('netns', 'add', probe);
  } catch (err) {
    return `\`ip netns add\` failed: ${(err as Error).message}`;
  } finally {
    try {
      ip('netns', 'del', probe);
    } catch {
      // it was never made
    }
  }
  return null;
}

/** Start time of a process (clock ticks since boot, /proc/<pid>/stat field 22), or null if it is gone. */
function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: fields after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

interface Marker {
  readonly run: string;
  readonly pid: number;
  readonly startTime: string | null;
  readonly subnet: string;
  readonly createdAt: string;
}

export interface Host {
  readonly name: string;
  readonly ns: string;
  readonly addr: string;
  /** Root-side end of the host's veth pair (on the bridge). */
  readonly hostLink: string;
}

function usedSubnets(): Set<number> {
  const used = new Set<number>();
  const text = `${ip('-o', '-4', 'addr', 'show')}\n${ip('-4', 'route', 'show', 'table', 'all')}`;
  for (const m of text.matchAll(/\b10\.77\.(\d+)\./g)) used.add(Number(m[1]));
  return used;
}

export class NetnsLab {
  readonly run: string;
  readonly subnet: string;
  /** The harness's own address on the bridge. */
  readonly gateway: string;
  readonly bridge: string;
  private readonly hosts = new Map<string, Host>();
  private readonly blackholes = new Set<string>();
  private destroyed = false;
  private readonly exitHook = () => this.destroy();

  private constructor(run: string, k: number) {
    this.run = run;
    this.subnet = `${SUBNET_PREFIX}.${k}`;
    this.gateway = `${this.subnet}.1`;
    this.bridge = `${NAME_PREFIX}${run}-br`;
  }

  /** Reaps leftovers of dead runs, then makes the bridge. Throws NetnsUnavailable with the reason if namespaces cannot be used. */
  static create(seed = Date.now() ^ process.pid): NetnsLab {
    const why = netnsUnavailableReason();
    if (why) throw new NetnsUnavailable(why);
    reapStale();
    const taken = new Set([...namespacesByRun().keys(), ...markerRuns()]);
    let run = '';
    for (let i = 0; i < 100 && (run === '' || taken.has(run)); i++) run = ((Math.abs(seed) + i * 7919) % 36 ** 4).toString(36).padStart(4, '0');
    const used = usedSubnets();
    let k = 0;
    for (let i = 0; i < 254 && k === 0; i++) {
      const candidate = 1 + ((Math.abs(seed) + i) % 254);
      if (!used.has(candidate)) k = candidate;
    }
    if (k === 0) throw new NetnsUnavailable(`every 10.77.x.0/24 is in use on this machine`);
    const lab = new NetnsLab(run, k);
    mkdirSync(MARKER_DIR, { recursive: true });
    const marker: Marker = { run, pid: process.pid, startTime: processStartTime(process.pid), subnet: `${lab.subnet}.0/24`, createdAt: new Date().toISOString() };
    writeFileSync(join(MARKER_DIR, `${run}.json`), `${JSON.stringify(marker)}\n`);
    process.once('exit', lab.exitHook);
    try {
      ip('link', 'add', lab.bridge, 'type', 'bridge');
      ip('addr', 'add', `${lab.gateway}/24`, 'dev', lab.bridge);
      ip('link', 'set', lab.bridge, 'up');
    } catch (err) {
      lab.destroy();
      throw err;
    }
    return lab;
  }

  /** Adds host `name` (a namespace with address 10.77.<k>.<n>) to the bridge. */
  addHost(name: string, n: number): Host {
    if (!/^[a-z0-9]{1,12}$/.test(name)) throw new Error(`host name ${JSON.stringify(name)}: 1-12 lowercase letters or digits`);
    if (!Number.isInteger(n) || n < 2 || n > 254) throw new Error(`host number ${n}: 2..254`);
    const ns = `${NAME_PREFIX}${this.run}-${name}`;
    const hostLink = `${NAME_PREFIX}${this.run}-h${n}`;
    const peer = `${hostLink}p`;
    const host: Host = { name, ns, addr: `${this.subnet}.${n}`, hostLink };
    this.hosts.set(name, host);
    ip('netns', 'add', ns);
    ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', peer);
    ip('link', 'set', peer, 'netns', ns);
    ip('link', 'set', hostLink, 'master', this.bridge, 'up');
    ip('-n', ns, 'link', 'set', peer, 'name', 'eth0');
    ip('-n', ns, 'addr', 'add', `${host.addr}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    return host;
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in lab ${this.run}`);
    return h;
  }

  /** argv prefix that runs a command inside host `name` (ip netns exec execs it: the PID is the command's). */
  execPrefix(name: string): string[] {
    return ['ip', 'netns', 'exec', this.host(name).ns];
  }

  /** Packets from `from` to `to` are dropped (a blackhole route in from's namespace). */
  cut(from: string, to: string): void {
    const key = `${from}>${to}`;
    if (this.blackholes.has(key)) return;
    ip('-n', this.host(from).ns, 'route', 'add', 'blackhole', `${this.host(to).addr}/32`);
    this.blackholes.add(key);
  }

  /** Both directions between two hosts. */
  cutBoth(a: string, b: string): void {
    this.cut(a, b);
    this.cut(b, a);
  }

  /** Every cut removed. */
  healAll(): void {
    for (const key of this.blackholes) {
      const [from, to] = key.split('>') as [string, string];
      try {
        ip('-n', this.host(from).ns, 'route', 'del', 'blackhole', `${this.host(to).addr}/32`);
      } catch {
        // already gone
      }
    }
    this.blackholes.clear();
  }

  /** Active cuts, for logs. */
  get cuts(): string[] {
    return [...this.blackholes];
  }

  /** Removes every namespace, link and the bridge of this lab, and its marker. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.exitHook);
    removeRun(this.run);
  }
}

/** Our namespaces (rdb-<run>-…) by run id. */
function namespacesByRun(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let text = '';
  try {
    text = ip('netns', 'list');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    const m = /^rdb-([0-9a-z]{4})-/.exec(ns);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), ns]);
  }
  return out;
}

function linksOfRun(run: string): string[] {
  const prefix = `${NAME_PREFIX}${run}-`;
  return ip('-o', 'link', 'show')
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((name): name is string => name?.startsWith(prefix) === true);
}

/** Kills (SIGKILL, by PID) whatever still runs in the run's namespaces, then deletes them, its links and its marker. */
function removeRun(run: string): void {
  const namespaces = namespacesByRun().get(run) ?? [];
  for (const ns of namespaces) {
    let pids: number[] = [];
    try {
      pids = ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
    } catch {
      // the namespace is already going away
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
  for (const ns of namespaces) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // gone
    }
  }
  // Deleting a namespace deletes its veth end and with it the pair; the bridge is ours to delete.
  for (const link of linksOfRun(run)) {
    try {
      ip('link', 'del', link);
    } catch {
      // gone with its pair
    }
  }
  rmSync(join(MARKER_DIR, `${run}.json`), { force: true });
}

function markerRuns(): string[] {
  try {
    return readdirSync(MARKER_DIR)
      .filter((f) => /^[0-9a-z]{4}\.json$/.test(f))
      .map((f) => f.slice(0, 4));
  } catch {
    return []; // no marker directory yet
  }
}

/** True if the run's creator is still alive (same pid and start time as in its marker). */
function runAlive(run: string): boolean {
  let marker: Marker;
  try {
    marker = JSON.parse(readFileSync(join(MARKER_DIR, `${run}.json`), 'utf8')) as Marker;
  } catch {
    return false; // no marker: nobody claims it
  }
  const start = processStartTime(marker.pid);
  return start !== null && start === marker.startTime;
}

/**
 * Removes the namespaces, links and markers of every run whose creator is gone. Returns the run
 * ids it removed. Runs of live processes (another harness running now) are left alone.
 */
export function reapStale(): string[] {
  const runs = new Set<string>(namespacesByRun().keys());
  for (const r of markerRuns()) runs.add(r);
  try {
    for (const l of ip('-o', 'link', 'show').matchAll(/^\d+:\s+rdb-([0-9a-z]{4})-/gm)) runs.add(l[1]!);
  } catch {
    // no ip
  }
  const removed: string[] = [];
  for (const run of runs) {
    if (runAlive(run)) continue;
    removeRun(run);
    removed.push(run);
  }
  return removed;
}
