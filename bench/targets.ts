// The two systems make bench compares, behind one interface so every workload is the same code
// for both: a regiondb cluster (metasrv + 3 datanode processes, client library) and a 3-member
// etcd 3.4 cluster (npm etcd3 client). Keys and values are of similar size on both sides:
//   single-key write  regiondb: upsert row {host: h<n>, ts: T0, v}   etcd: put h<n> = v
//   linearizable read regiondb: get(key, 'linearizable') (ReadIndex)  etcd: range, serializable=false
//   100-row batch     regiondb: one write of 100 rows of one region (one raft entry, atomic)
//                     etcd: one txn of 100 puts (one raft entry, atomic)
// The key space of each workload is bounded (KEYS_MAX), so both systems overwrite keys.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import type { RegionDbClient } from '../src/client/client.js';
import { LocalCluster } from '../test/support/local-cluster.js';
import { EtcdCluster } from './etcd-cluster.js';
import { placeLeaders } from './leaders.js';

/**
 * `regiondb`: the bench table in REGIONS regions (default 4), leaders spread over the three
 * datanodes; `regiondb-1r`: the same table in one region — one raft group, as etcd's whole
 * keyspace is (docs/performance.md, "Round 8").
 */
export type SystemName = 'regiondb' | 'regiondb-1r' | 'regiondb-spread' | 'regiondb-lease' | 'etcd';

export interface BenchClient {
  write(key: number): Promise<void>;
  read(key: number): Promise<void>;
  /** One atomic write of `rows` keys owned by this client (`clientIndex`). */
  writeBatch(clientIndex: number, base: number, rows: number): Promise<void>;
  close(): void;
}

export interface BenchTarget {
  readonly system: SystemName;
  start(): Promise<void>;
  /** An independent client (its own library instance). */
  newClient(): BenchClient;
  /** Cumulative CPU seconds (user + system) of the system's server processes. */
  serverCpuSeconds(): number;
  /** Writes the keys 0..count-1 that read workloads read. */
  prepareReads(count: number): Promise<void>;
  /** Where the processes' data and logs are (for the operator, on failure). */
  describe(): string;
  stop(): Promise<void>;
}

export const KEYS_MAX = 10_000;

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of live processes, from /proc (Linux); a process that exited counts 0. */
export function cpuSecondsOf(pids: readonly (number | undefined)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    if (pid === undefined) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
      ticks += Number(fields[11]) + Number(fields[12]); // utime (14), stime (15)
    } catch {
      // The process exited: it no longer uses CPU, and its past use is not needed here.
    }
  }
  return ticks / CLOCK_TICKS_PER_SECOND;
}
const T0_MS = 1_700_000_000_000;
const TABLE = 'bench';
/** BENCH_REGIONDB_REGIONS: the `regiondb` system's table regions (default 4: every datanode leads one or two). */
export const REGIONS = Number(process.env['BENCH_REGIONDB_REGIONS'] ?? 4);
if (!Number.isInteger(REGIONS) || REGIONS < 1) throw new Error(`BENCH_REGIONDB_REGIONS: not a positive integer: ${process.env['BENCH_REGIONDB_REGIONS']}`);

export class RegionDbTarget implements BenchTarget {
  readonly system: SystemName;
  private readonly cluster: LocalCluster;

  /**
   * `placement`: the metasrv's `leader_placement` — "table" (the default: every leader of the
   * table on one datanode, so that each follower hears from one leader and its ready cycles carry
   * every group's appends at once) or "spread" (leaders evened per node). docs/leader-placement.md.
   */
  constructor(
    datanodeToml = '',
    private readonly regions = REGIONS,
    system: SystemName = 'regiondb',
    placement: 'table' | 'spread' = 'table',
  ) {
    this.system = system;
    // BENCH_REGIONDB_NODE_ARGS: flags for `node` in every regiondb process (e.g. a GC setting
    // under study), space-separated.
    const nodeArgs = (process.env['BENCH_REGIONDB_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    this.cluster = new LocalCluster({ datanodeToml, nodeArgs, metasrvToml: `leader_placement = "${placement}"` });
  }

  describe(): string {
    return `regiondb cluster in ${this.cluster.dir}, table in ${this.regions} region(s)`;
  }

  serverCpuSeconds(): number {
    return cpuSecondsOf([this.cluster.metasrv?.process?.pid, ...this.cluster.datanodes.map((d) => d.process?.pid)]);
  }

  async start(): Promise<void> {
    await this.cluster.start();
    const admin = this.cluster.client({ deadlineMs: 30_000 });
    await admin.createTable(
      TABLE,
      [
        { name: 'host', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
        { name: 'v', type: 'float64', semantic: 'field' },
      ],
      this.regions,
    );
    // The first write to every region waits for its leader election.
    await admin.write(
      TABLE,
      Array.from({ length: 64 }, (_, i) => ({ host: `warm${i}`, ts: T0_MS, v: 0 })),
    );
    // Steady state before measuring: leaders where the placement puts them (bench/leaders.ts).
    const counts = await placeLeaders(admin, this.regions, 30_000);
    if (!counts) throw new Error('the leaders were not placed within 30 s (balance-leaders)');
    process.stdout.write(`  ${this.system}: leaders per datanode ${counts.join(' / ')}\n`);
  }

  newClient(): BenchClient {
    // BENCH_REGIONDB_UNARY=1: one unary call per operation, as etcd's client makes them,
    // instead of the client library's default Database.Batch stream (docs/performance.md).
    const c: RegionDbClient = this.cluster.client({ deadlineMs: 30_000, batchStream: process.env['BENCH_REGIONDB_UNARY'] !== '1' });
    return {
      write: async (key) => {
        await c.write(TABLE, [{ host: `h${key % KEYS_MAX}`, ts: T0_MS, v: key }]);
      },
      read: async (key) => {
        await c.get(TABLE, { host: `r${key}`, ts: T0_MS }, 'linearizable');
      },
      writeBatch: async (clientIndex, base, rows) => {
        // One tag value per batch: every row hashes to the same region (one atomic entry).
        await c.write(
          TABLE,
          Array.from({ length: rows }, (_, j) => ({ host: `b${clientIndex}`, ts: T0_MS + ((base + j) % KEYS_MAX), v: j })),
        );
      },
      close: () => c.close(),
    };
  }

  async prepareReads(count: number): Promise<void> {
    const c = this.cluster.client({ deadlineMs: 30_000 });
    for (let i = 0; i < count; i += 100) {
      await c.write(
        TABLE,
        Array.from({ length: Math.min(100, count - i) }, (_, j) => ({ host: `r${i + j}`, ts: T0_MS, v: i + j })),
      );
    }
    c.close();
  }

  stop(): Promise<void> {
    return this.cluster.stop();
  }
}

export class EtcdTarget implements BenchTarget {
  readonly system = 'etcd';
  private readonly cluster = new EtcdCluster();
  /** Clients talk to the leader, as regiondb's client talks to region leaders (no forwarding hop). */
  private leaderEndpoint = '';

  describe(): string {
    return `etcd cluster in ${this.cluster.dir}`;
  }

  serverCpuSeconds(): number {
    return cpuSecondsOf(this.cluster.members.map((m) => m.process?.pid));
  }

  async start(): Promise<void> {
    await this.cluster.start();
    for (const endpoint of this.cluster.endpoints) {
      const probe = new Etcd3({ hosts: [endpoint] });
      try {
        const status = await probe.maintenance.status();
        if (status.leader === status.header.member_id) this.leaderEndpoint = endpoint;
      } finally {
        probe.close();
      }
    }
    if (!this.leaderEndpoint) throw new Error('etcd: no member reports itself as the leader');
  }

  newClient(): BenchClient {
    const c = new Etcd3({ hosts: [this.leaderEndpoint] });
    return {
      write: async (key) => {
        await c.put(`h${key % KEYS_MAX}`).value(String(key));
      },
      read: async (key) => {
        await c.get(`r${key}`).serializable(false);
      },
      writeBatch: async (clientIndex, base, rows) => {
        await c.kv.txn({
          success: Array.from({ length: rows }, (_, j) => ({
            request_put: { key: Buffer.from(`b${clientIndex}/${(base + j) % KEYS_MAX}`), value: Buffer.from(String(j)) },
          })),
        });
      },
      close: () => c.close(),
    };
  }

  async prepareReads(count: number): Promise<void> {
    const c = new Etcd3({ hosts: [this.leaderEndpoint] });
    try {
      for (let i = 0; i < count; i += 100) {
        await c.kv.txn({
          success: Array.from({ length: Math.min(100, count - i) }, (_, j) => ({
            request_put: { key: Buffer.from(`r${i + j}`), value: Buffer.from(String(i + j)) },
          })),
        });
      }
    } finally {
      c.close();
    }
  }

  stop(): Promise<void> {
    return this.cluster.stop();
  }
}
