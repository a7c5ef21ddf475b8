// How the nemesis breaks links between datanodes, in either of the harness's two modes:
//   proxy (default, no root needed): every raft link passes through a harness-owned TCP proxy
//          (proxy.ts) that the nemesis cuts or slows;
//   netns (root): every process runs in its own network namespace (test/support/netns.ts) and
//          a cut is a blackhole route in the sender's namespace, at the IP layer.
// Datanodes are numbered from 0 here.
import type { NetnsCluster } from '../support/netns-cluster.js';
import type { LinkProxy } from './proxy.js';

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
};
