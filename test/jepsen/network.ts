// How the nemesis breaks links between datanodes (and, with a metasrv group, to its members:
// MetasrvLinks below), in either of the harness's two modes:
//   proxy (default, no root needed): every raft link passes through a harness-owned TCP proxy
//          (proxy.ts) that the nemesis cuts or slows;
//   netns (root): every process runs in its own network namespace (test/support/netns.ts) and
//          a cut is a blackhole route in the sender's namespace, at the IP layer.
// Datanodes are numbered from 0 here.
import type { NetnsCluster } from '../support/netns-cluster.js';
import { LinkProxy } from './proxy.js';

export type NetMode = 'proxy' | 'netns';
export const NET_MODES: readonly NetMode[] = ['proxy', 'netns'];

export interface Network {
  readonly mode: NetMode;
  /** Traffic from datanode `from` to datanode `to` is dropped (one direction). */
  cut(from: number, to: number): void;
  /** Every link of datanode `node`, both ways, gets `ms` of added latency. */
  slow(node: number, ms: number): void;
  /** Every cut and delay removed. */
  healAll(): void;
}

/** proxies[i][j]: the proxy carrying raft traffic from datanode i to datanode j. */
export class ProxyNetwork implements Network {
  readonly mode = 'proxy';
  constructor(private readonly proxies: (LinkProxy | undefined)[][]) {}

  cut(from: number, to: number): void {
    this.proxies[from]?.[to]?.cut();
  }

  slow(node: number, ms: number): void {
    for (const [i, row] of this.proxies.entries()) {
      for (const [j, p] of row.entries()) if (i === node || j === node) p?.delay(ms);
    }
  }

  healAll(): void {
    for (const row of this.proxies) for (const p of row) p?.heal();
  }
}

/**
 * Cuts are blackhole routes inside the namespaces. Added latency needs the kernel's netem qdisc,
 * which the machines this was built on lack (`tc qdisc add … netem` → "Specified qdisc kind is
 * unknown"), so `slow` refuses here rather than pretend.
 */
export class NetnsNetwork implements Network {
  readonly mode = 'netns';
  constructor(private readonly cluster: NetnsCluster) {}

  cut(from: number, to: number): void {
    this.cluster.lab.cut(this.cluster.datanodeHost(from), this.cluster.datanodeHost(to));
  }

  slow(): void {
    throw new Error('the slow nemesis is not available with NET=netns (it needs tc netem, which this kernel lacks); use the proxy mode for it');
  }

  healAll(): void {
    this.cluster.lab.healAll();
  }
}

/** Faults NET=netns cannot inject, with why. */
export const NETNS_UNSUPPORTED: Readonly<Record<string, string>> = {
  slow: 'needs tc netem (not in this kernel)',
  'object-store-outage': 'its object store proxy listens on 127.0.0.1, which the namespaces cannot reach',
  'metasrv-kill-leader': 'the netns cluster has one metasrv host, not a metasrv group',
  'metasrv-partition': 'the netns cluster has one metasrv host, not a metasrv group',
};

/**
 * Proxy mode with a metasrv group: every path to a member passes a harness proxy, so the
 * acting metasrv can be isolated from the other members and from everyone who calls it.
 *   members[i][j]: member i's traffic to member j (raft, both its messages and its responses'
 *                  direction: each member sends on its own connection), written into member i's
 *                  `[meta_group.members]`;
 *   callers[j]:    the datanodes' heartbeats and the clients' calls to member j (their
 *                  `[metasrv] addr` list).
 * A member's NOT_LEADER hint names the leader as that member reaches it (a members[i][j]
 * address), so a caller following a hint goes through that proxy: it is cut whenever j is the
 * isolated member, which is what an isolation of j must cut anyway.
 */
export class MetasrvLinks {
  private constructor(
    private readonly members: (LinkProxy | undefined)[][],
    private readonly callers: LinkProxy[],
  ) {}

  /** Starts a proxy for every member pair (both directions) and one per member for callers; `grpcPorts[j]` is member j's port. */
  static async start(grpcPorts: readonly number[]): Promise<MetasrvLinks> {
    const members: (LinkProxy | undefined)[][] = [];
    const callers: LinkProxy[] = [];
    for (const [i] of grpcPorts.entries()) {
      members.push([]);
      for (const [j, port] of grpcPorts.entries()) {
        if (i === j) continue;
        const p = new LinkProxy(`metasrv${i + 1}->metasrv${j + 1}`, port);
        await p.start();
        members[i]![j] = p;
      }
    }
    for (const [j, port] of grpcPorts.entries()) {
      const p = new LinkProxy(`callers->metasrv${j + 1}`, port);
      await p.start();
      callers.push(p);
    }
    return new MetasrvLinks(members, callers);
  }

  get size(): number {
    return this.callers.length;
  }

  /** The address member `from` (or the callers) reaches member `to` at. */
  addrFor(from: number | 'callers', to: number): string {
    const p = from === 'callers' ? this.callers[to] : this.members[from]?.[to];
    if (!p) throw new Error(`no metasrv link from ${from} to ${to} (${this.size} members)`);
    return p.addr;
  }

  /** Member m can neither reach nor be reached by the other members, the datanodes or the clients. */
  isolate(m: number): void {
    if (m < 0 || m >= this.size) throw new Error(`no metasrv member ${m} (${this.size} members)`);
    for (const [i, row] of this.members.entries()) {
      for (const [j, p] of row.entries()) if (i === m || j === m) p?.cut();
    }
    this.callers[m]!.cut();
  }

  /** Which links are cut now, by name (for tests and reports). */
  cutLinks(): string[] {
    return [...this.members.flat(), ...this.callers].filter((p): p is LinkProxy => p !== undefined && p.state === 'cut').map((p) => p.name);
  }

  healAll(): void {
    for (const row of this.members) for (const p of row) p?.heal();
    for (const p of this.callers) p.heal();
  }

  async stop(): Promise<void> {
    for (const row of this.members) for (const p of row) await p?.stop();
    for (const p of this.callers) await p.stop();
  }
}
