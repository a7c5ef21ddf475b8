// The nemesis: seeded, bounded fault schedules against a real cluster. Every fault is logged
// with its start and heal times (monotonic ms, the history's clock) and always healed: the
// schedule ends by restarting what was killed, resuming what was paused and healing every link.
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { SeededRand } from '../../src/common/rand.js';
import { appendTornRecord, entryIndexes, flipByte, regionIdsIn } from '../fixtures/wal-corrupt.js';
import type { LocalCluster } from '../support/local-cluster.js';
import type { ClusterHandle } from '../support/netns-cluster.js';
import type { MetasrvLinks, Network } from './network.js';
import type { LinkProxy } from './proxy.js';

export const FAULTS = [
  'kill',
  'kill-leader',
  'kill-majority',
  'kill-torn-wal',
  'corrupt-committed-entry',
  'pause',
  'pause-isolated',
  'partition',
  'partition-one-way',
  'bridge',
  'slow',
  'metasrv-kill',
  'metasrv-kill-leader',
  'metasrv-partition',
  'object-store-outage',
  'clock-skew',
  'wipe-disk',
  'restore-disk',
] as const;
export type Fault = (typeof FAULTS)[number];

/** `pause-isolated`: how long the paused leader runs again, still cut off from its peers, before the links heal. */
export const PAUSE_ISOLATED_RESUMED_MS = 2_000;

/** Faults that need a metasrv group (docs/metasrv-ha.md): a run with any of them starts 3 metasrvs. */
export const METASRV_GROUP_FAULTS: readonly Fault[] = ['metasrv-kill-leader', 'metasrv-partition'];

/** What the metasrv-group faults act on: the group's members (0-based) and, in proxy mode, the links to them. */
export interface MetasrvGroupTarget {
  readonly cluster: Pick<LocalCluster, 'metasrvs' | 'actingMetasrv' | 'killMetasrvMember' | 'startMetasrvMember' | 'isMetasrvMemberRunning'>;
  /** Absent: metasrv-partition cannot be injected. */
  readonly links?: Pick<MetasrvLinks, 'isolate' | 'healAll'>;
}

export interface FaultRecord {
  fault: Fault;
  /** Datanode numbers (1-based) or 'metasrv' the fault hit. */
  targets: string[];
  startMs: number;
  healMs: number;
  /** Filled by the report: time from injection to the first acknowledged write in every region. */
  rtoMs?: number | null;
  /** Filled by the report: time from injection until every region acknowledged a write issued after the heal. */
  recoveryMs?: number | null;
  /** Metasrv-group faults: time from injection until a CreateTable was acknowledged (null: not before the heal). */
  ddlMs?: number | null;
}

export interface NemesisOptions {
  readonly faults: readonly Fault[];
  /** Quiet time before the first fault and between faults. */
  readonly gapMs: number;
  /** How long a fault lasts (uniform in [min, max]). */
  readonly durationMs: readonly [number, number];
  readonly maxFaults: number;
  /**
   * The first faults are a seeded permutation of `faults`, so a run with at least that many
   * faults exercises every listed kind (a short run in `make test` must not test only one of
   * the kinds its title names); random picks follow.
   */
  readonly coverEachFirst?: boolean;
}

export class Nemesis {
  readonly log: FaultRecord[] = [];
  private stopped = false;

  constructor(
    private readonly cluster: ClusterHandle,
    /** The links between datanodes: proxies or namespaces (network.ts). */
    private readonly network: Network,
    private readonly rand: SeededRand,
    private readonly now: () => number,
    private readonly options: NemesisOptions,
    private readonly onEvent: (line: string) => void,
    /** The link from every datanode to the object store (s3rver), for 'object-store-outage'. */
    private readonly objectStoreLink?: LinkProxy,
    /** Sets datanode i's wall-clock offset in seconds (libfaketime control file), for 'clock-skew'. */
    private readonly setClockOffset?: (i: number, seconds: number) => void,
    /** The metasrv group and the links to its members, for 'metasrv-kill-leader' and 'metasrv-partition'. */
    private readonly metasrvGroup?: MetasrvGroupTarget,
  ) {}

  stop(): void {
    this.stopped = true;
  }

  private async sleep(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!this.stopped && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(100, until - Date.now())));
  }

  /** Runs faults until stop() or maxFaults, then heals everything. */
  async run(): Promise<void> {
    try {
      await this.sleep(this.options.gapMs);
      const firstRound = this.options.coverEachFirst ? this.rand.shuffle([...this.options.faults]) : [];
      while (!this.stopped && this.log.length < this.options.maxFaults && this.options.faults.length > 0) {
        const fault = firstRound[this.log.length] ?? this.rand.pick(this.options.faults);
        const [lo, hi] = this.options.durationMs;
        const duration = lo + this.rand.int(hi - lo + 1);
        const record: FaultRecord = { fault, targets: [], startMs: this.now(), healMs: 0 };
        this.log.push(record);
        const heal = await this.inject(fault, record);
        this.onEvent(`${record.startMs.toFixed(0)} ms: ${fault} ${record.targets.join(',')} for ${duration} ms`);
        await this.sleep(duration);
        await heal();
        record.healMs = this.now();
        this.onEvent(`${record.healMs.toFixed(0)} ms: healed ${fault} ${record.targets.join(',')}`);
        await this.sleep(this.options.gapMs);
      }
    } finally {
      await this.healAll();
    }
  }

  /**
   * A destructive fault (one that costs a replica its data: wipe-disk, kill-torn-wal,
   * corrupt-committed-entry) not injected: three replicas tolerate one lost replica, not a
   * second one before the first is repaired, and a region that lost two has nothing to say
   * about safety, only that it cannot elect.
   */
  private skipped(record: FaultRecord): () => Promise<void> {
    record.targets = ['skipped: a region is still under-replicated from an earlier fault'];
    return async () => undefined;
  }

  /** True once the metasrv reports every region healthy (all replicas live) and no procedure running; false after `timeoutMs`. */
  private async fullyReplicated(timeoutMs: number): Promise<boolean> {
    const client = this.cluster.client({ deadlineMs: 2000 });
    try {
      const deadline = Date.now() + timeoutMs;
      while (!this.stopped && Date.now() < deadline) {
        const status = (await client.listNodes().catch(() => undefined)) as
          | { region_infos: { health: string }[]; procedures: { status: string }[] }
          | undefined;
        if (status?.region_infos.every((r) => r.health === 'healthy') && !status.procedures.some((p) => p.status === 'running')) return true;
        await new Promise((r) => setTimeout(r, 250));
      }
      return false;
    } finally {
      client.close();
    }
  }

  private n(): number {
    return this.cluster.datanodes.length;
  }

  /** Whether the metasrv lists datanode `i` (0-based) as refused (a restored copy of its data dir), within 10 s. */
  private async startRefused(i: number): Promise<boolean> {
    const client = this.cluster.client({ deadlineMs: 2000 });
    try {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const status = (await client.listNodes().catch(() => undefined)) as { nodes: { node_id: string; refused?: string }[] } | undefined;
        if (status?.nodes.some((node) => node.node_id === String(i + 1) && (node.refused ?? '') !== '')) return true;
        await new Promise((r) => setTimeout(r, 250));
      }
      return false;
    } finally {
      client.close();
    }
  }

  private async leaderOfSomeRegion(): Promise<number> {
    const counts = await Promise.all(
      this.cluster.datanodes.map(async (_, i) => {
        if (!this.cluster.isRunning(i)) return -1;
        const st = await this.cluster.status(i).catch(() => ({ replicas: [] as { role: string }[] }));
        return st.replicas.filter((r) => r.role === 'leader').length;
      }),
    );
    const leaders = counts.map((c, i) => [c, i] as const).filter(([c]) => c > 0);
    return leaders.length > 0 ? this.rand.pick(leaders)[1] : this.rand.int(this.n());
  }

  /** Cuts every link from i to j (i ≠ j) that `fn` selects. */
  private cutLinks(fn: (from: number, to: number) => boolean): void {
    for (let i = 0; i < this.n(); i++) {
      for (let j = 0; j < this.n(); j++) if (i !== j && fn(i, j)) this.network.cut(i, j);
    }
  }

  private async healLinks(): Promise<void> {
    this.network.healAll();
  }

  /** Injects a fault; returns its heal action. */
  private async inject(fault: Fault, record: FaultRecord): Promise<() => Promise<void>> {
    const n = this.n();
    const name = (i: number) => `datanode${i + 1}`;
    switch (fault) {
      case 'kill':
      case 'kill-leader': {
        const victim = fault === 'kill' ? this.rand.int(n) : await this.leaderOfSomeRegion();
        record.targets = [name(victim)];
        await this.cluster.stopDatanode(victim, 'SIGKILL');
        return () => this.cluster.startDatanode(victim);
      }
      case 'kill-torn-wal': {
        // kill -9, then leave a record that fails its check after the last entry of one region.
        // LevelDB never leaves such a record (batches are atomic), so the WAL treats it as
        // corruption: that replica fails and is rebuilt by repair (docs/replica-health.md).
        // It destroys a replica, so, like wipe-disk, only within the fault model.
        const victim = this.rand.int(n);
        if (!(await this.fullyReplicated(30_000))) return this.skipped(record);
        record.targets = [name(victim)];
        await this.cluster.stopDatanode(victim, 'SIGKILL');
        const walDir = join(this.cluster.datanodes[victim]!.dataDir, 'wal');
        const regions = await regionIdsIn(walDir);
        if (regions.length > 0) {
          const region = this.rand.pick(regions);
          const index = await appendTornRecord(walDir, region);
          record.targets.push(`torn record region ${region} index ${index}`);
        }
        return () => this.cluster.startDatanode(victim);
      }
      case 'wipe-disk': {
        // A new disk under an old name: kill -9, the data dir deleted, the same node id started
        // on it. The metasrv must see a new incarnation (a new store id) and replace its
        // replicas under fresh peer ids; reopened under the old ones at term 0 they could vote
        // in a leader that lacks committed writes.
        // Within the fault model only: three replicas tolerate one lost disk, not a second one
        // before the first is repaired. Wait (bounded) until every region is healthy again.
        const victim = this.rand.int(n);
        if (!(await this.fullyReplicated(30_000))) return this.skipped(record);
        record.targets = [`${name(victim)} (data dir wiped)`];
        await this.cluster.stopDatanode(victim, 'SIGKILL');
        rmSync(this.cluster.datanodes[victim]!.dataDir, { recursive: true, force: true });
        return () => this.cluster.startDatanode(victim);
      }
      case 'restore-disk': {
        // A disk put back from a copy (a volume snapshot or a backup of the data dir restored):
        // a cold copy of a datanode's data dir is taken (stopped, copied, started again), writes
        // go on for up to 3 s, then the node is killed and the copy put back in its place. Its
        // replicas' votes and logs are rolled back to the copy: the metasrv must refuse its start
        // (finding K1, docs/failover.md "A data dir restored from a copy"), so that none of them
        // answers raft. The heal is the refusal's way out: the operator moves the dir aside and
        // the node starts as a new store, its replicas rebuilt. Within the fault model only, as
        // wipe-disk (a disk put back is a lost disk).
        const victim = this.rand.int(n);
        if (!(await this.fullyReplicated(30_000))) return this.skipped(record);
        const dataDir = this.cluster.datanodes[victim]!.dataDir;
        const copy = `${dataDir}.nemesis-copy`;
        record.targets = [`${name(victim)} (data dir put back from a copy)`];
        await this.cluster.stopDatanode(victim, 'SIGTERM');
        rmSync(copy, { recursive: true, force: true });
        cpSync(dataDir, copy, { recursive: true });
        await this.cluster.startDatanode(victim);
        await this.sleep(1_000 + this.rand.int(2_000));
        await this.cluster.stopDatanode(victim, 'SIGKILL');
        rmSync(dataDir, { recursive: true, force: true });
        cpSync(copy, dataDir, { recursive: true });
        rmSync(copy, { recursive: true, force: true });
        await this.cluster.startDatanode(victim);
        return async () => {
          record.targets.push((await this.startRefused(victim)) ? 'start refused' : 'START NOT REFUSED');
          await this.cluster.stopDatanode(victim, 'SIGKILL');
          rmSync(dataDir, { recursive: true, force: true });
          await this.cluster.startDatanode(victim);
        };
      }
      case 'corrupt-committed-entry':
        // Destroys a replica (it fails and is rebuilt): only within the fault model.
        if (!(await this.fullyReplicated(30_000))) return this.skipped(record);
        return this.corruptCommittedEntry(record);
      case 'kill-majority': {
        const victims = this.rand.shuffle([...Array(n).keys()]).slice(0, Math.floor(n / 2) + 1);
        record.targets = victims.map(name);
        await Promise.all(victims.map((v) => this.cluster.stopDatanode(v, 'SIGKILL')));
        return async () => void (await Promise.all(victims.map((v) => this.cluster.startDatanode(v))));
      }
      case 'pause': {
        const victim = await this.leaderOfSomeRegion();
        record.targets = [name(victim)];
        this.cluster.pauseDatanode(victim, true);
        return async () => this.cluster.pauseDatanode(victim, false);
      }
      case 'pause-isolated': {
        // A leader cut off from its peers (not from the clients) and paused: they elect another
        // leader and write. It then runs again, still cut off, leading in its own view — its ticks
        // stopped while their time went on — and the clients' reads queued meanwhile reach it:
        // with lease reads (LEASE_READS=1) none may be answered from its lease (finding E14).
        // Resumed PAUSE_ISOLATED_RESUMED_MS before the links heal.
        const victim = await this.leaderOfSomeRegion();
        record.targets = [name(victim)];
        this.cutLinks((i, j) => i === victim || j === victim);
        this.cluster.pauseDatanode(victim, true);
        return async () => {
          this.cluster.pauseDatanode(victim, false);
          await this.sleep(PAUSE_ISOLATED_RESUMED_MS);
          await this.healLinks();
        };
      }
      case 'partition': {
        // Isolate one node (in a 3-node cluster that is the minority/majority split).
        const victim = await this.leaderOfSomeRegion();
        record.targets = [name(victim)];
        this.cutLinks((i, j) => i === victim || j === victim);
        return () => this.healLinks();
      }
      case 'partition-one-way': {
        // The victim can send but not receive (or the reverse): asymmetric links.
        const victim = await this.leaderOfSomeRegion();
        const inbound = this.rand.chance(0.5);
        record.targets = [`${name(victim)} ${inbound ? 'cannot receive' : 'cannot send'}`];
        this.cutLinks((i, j) => (inbound ? j === victim : i === victim));
        return () => this.healLinks();
      }
      case 'bridge': {
        // Two halves that only the bridge node connects (needs ≥ 3 nodes).
        const order = this.rand.shuffle([...Array(n).keys()]);
        const bridge = order[0]!;
        const half = new Set(order.slice(1, 1 + Math.floor((n - 1) / 2)));
        record.targets = [`bridge ${name(bridge)}`, ...[...half].map(name)];
        this.cutLinks((i, j) => i !== bridge && j !== bridge && half.has(i) !== half.has(j));
        return () => this.healLinks();
      }
      case 'slow': {
        const victim = this.rand.int(n);
        const ms = 50 + this.rand.int(150);
        record.targets = [`${name(victim)} +${ms}ms`];
        this.network.slow(victim, ms);
        return () => this.healLinks();
      }
      case 'object-store-outage': {
        // The shared object store fails (every connection refused) or stalls (every byte held
        // for seconds, so requests time out) for the whole cluster.
        const link = this.objectStoreLink;
        if (!link) throw new Error('object-store-outage needs the cluster on s3rver behind a proxy (runJepsen sets this up)');
        if (this.rand.chance(0.5)) {
          record.targets = ['object store refuses'];
          link.cut();
        } else {
          const ms = 2000 + this.rand.int(3000);
          record.targets = [`object store stalls ${ms} ms`];
          link.delay(ms);
        }
        return async () => link.heal();
      }
      case 'clock-skew': {
        // One datanode's wall clock jumps minutes ahead or behind (its monotonic clock and
        // timers do not move): whatever it judges by wall time — ages, deadlines, timestamps in
        // object names — is off by that much, and nothing may be lost for it.
        const set = this.setClockOffset;
        if (!set) throw new Error('clock-skew needs the datanodes started under libfaketime (runJepsen sets this up)');
        const victim = this.rand.int(n);
        const seconds = (this.rand.chance(0.5) ? 1 : -1) * (60 + this.rand.int(540));
        record.targets = [`${name(victim)} ${seconds > 0 ? '+' : ''}${seconds} s`];
        set(victim, seconds);
        return async () => set(victim, 0);
      }
      case 'metasrv-kill': {
        record.targets = ['metasrv'];
        await this.cluster.stopMetasrv('SIGKILL');
        return () => this.cluster.startMetasrv();
      }
      case 'metasrv-kill-leader': {
        // kill -9 of the acting metasrv: the group elects another member, which rebuilds
        // liveness from fresh heartbeats and resumes the procedures; the victim restarts as a
        // follower and catches up from the log. Meanwhile a datanode may die too (below).
        const group = this.requireGroup(fault);
        const victim = await this.actingMetasrv(group);
        record.targets = [`metasrv${victim + 1} (acting)`];
        await group.cluster.killMetasrvMember(victim);
        const ddl = this.ddlProbe();
        const healDatanode = await this.maybeKillDatanodeDuringFailover(record);
        return async () => {
          await this.noteFailover(group, record, ddl);
          await group.cluster.startMetasrvMember(victim);
          await healDatanode();
        };
      }
      case 'metasrv-partition': {
        // The acting metasrv cut off from the other members, the datanodes and the clients: with
        // check-quorum it steps down within an election timeout, the majority elects another
        // leader, and the old one (its epoch now stale) must not act on anything. Heal: links back.
        const group = this.requireGroup(fault);
        const links = group.links;
        if (!links) throw new Error('metasrv-partition needs proxies in front of the metasrv members (runJepsen sets them up in NET=proxy)');
        const victim = await this.actingMetasrv(group);
        record.targets = [`metasrv${victim + 1} (acting) isolated`];
        links.isolate(victim);
        const ddl = this.ddlProbe();
        const healDatanode = await this.maybeKillDatanodeDuringFailover(record);
        return async () => {
          await this.noteFailover(group, record, ddl);
          links.healAll();
          await healDatanode();
        };
      }
    }
  }

  private requireGroup(fault: Fault): MetasrvGroupTarget {
    const group = this.metasrvGroup;
    if (!group || group.cluster.metasrvs.length < 3) throw new Error(`${fault} needs a metasrv group of at least 3 members (METASRVS=3)`);
    return group;
  }

  /** The acting metasrv's index, waiting (bounded) for one during an election; a random running member if none acts in time. */
  private async actingMetasrv(group: MetasrvGroupTarget): Promise<number> {
    const deadline = Date.now() + 10_000;
    while (!this.stopped && Date.now() < deadline) {
      const acting = await group.cluster.actingMetasrv();
      if (acting !== undefined) return acting;
      await new Promise((r) => setTimeout(r, 100));
    }
    const running = group.cluster.metasrvs.map((_, i) => i).filter((i) => group.cluster.isMetasrvMemberRunning(i));
    return running.length > 0 ? this.rand.pick(running) : this.rand.int(group.cluster.metasrvs.length);
  }

  /**
   * Creates a new table (one region) until the metasrv group serves DDL again or `stop()` is
   * called; resolves with the ms from the fault to the acknowledgement, or null. A CreateTable of
   * unknown outcome is tried again under the same name: ALREADY_EXISTS then means it was served.
   */
  private ddlProbe(): { stop(): void; served: Promise<number | null>; lastError(): string } {
    const t0 = Date.now();
    let stopped = false;
    let lastError = '';
    const name = `jepsen_ddl_${this.log.length}`;
    const client = this.cluster.client({ deadlineMs: 2000, attemptTimeoutMs: 1000 });
    const served = (async () => {
      try {
        while (!stopped && !this.stopped) {
          try {
            await client.createTable(name, [{ name: 'k', type: 'string', semantic: 'tag' }, { name: 'ts', type: 'timestamp', semantic: 'timestamp' }], 1);
            return Date.now() - t0;
          } catch (err) {
            if ((err as { code?: string }).code === 'ALREADY_EXISTS') return Date.now() - t0;
            lastError = (err as Error).message;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        return null;
      } finally {
        client.close();
      }
    })();
    return { stop: () => void (stopped = true), served, lastError: () => lastError };
  }

  /** Before a metasrv fault heals: which member acts now, and when DDL was served again (the report's evidence that the group failed over). */
  private async noteFailover(group: MetasrvGroupTarget, record: FaultRecord, ddl: ReturnType<Nemesis['ddlProbe']>): Promise<void> {
    ddl.stop();
    const servedMs = await ddl.served;
    record.ddlMs = servedMs;
    const acting = await group.cluster.actingMetasrv();
    record.targets.push(`→ ${acting === undefined ? 'no metasrv acting' : `metasrv${acting + 1} acting`}, DDL ${servedMs === null ? `not served before the heal (last error: ${ddl.lastError().slice(0, 160)})` : `served after ${servedMs} ms`}`);
  }

  /**
   * When the run's faults include 'kill', half of the metasrv faults also kill -9 a datanode
   * that leads regions shortly after (inside the metasrv's failover): region leaders must be
   * re-elected and clients re-routed while no metasrv acts. Returns the datanode's heal. (With
   * 3 datanodes a CreateTable then cannot place its 3 replicas until the datanode is back: the
   * DDL probe notes that error instead of a time.)
   */
  private async maybeKillDatanodeDuringFailover(record: FaultRecord): Promise<() => Promise<void>> {
    if (!this.options.faults.includes('kill') || !this.rand.chance(0.5)) return async () => undefined;
    await this.sleep(100 + this.rand.int(400));
    const victim = await this.leaderOfSomeRegion();
    record.targets.push(`+ datanode${victim + 1} killed during the failover`);
    await this.cluster.stopDatanode(victim, 'SIGKILL');
    return () => this.cluster.startDatanode(victim);
  }

  /**
   * Issue 14 item 3: flip a byte in a follower's last COMMITTED entry of a region, restart the
   * follower, then kill the region's leader. A node that "repaired" the damage by cutting the
   * entry would lower its commit index and could vote for a candidate missing an acknowledged
   * write once the leader is gone; the damaged replica must instead fail (and be repaired).
   * Heal: the leader restarts.
   */
  private async corruptCommittedEntry(record: FaultRecord): Promise<() => Promise<void>> {
    const name = (i: number) => `datanode${i + 1}`;
    type Stat = { region_id: string; role: string; commit_index: string; health?: string };
    const stats = await Promise.all(
      this.cluster.datanodes.map(async (_, i) => (this.cluster.isRunning(i) ? ((await this.cluster.status(i).catch(() => ({ replicas: [] }))).replicas as unknown as Stat[]) : [])),
    );
    // (region, leader, follower) triples of regions whose replicas are all healthy (a region
    // with a failed replica waits for its repair before it is hit again).
    const damaged = new Set(stats.flat().filter((r) => r.health === 'failed').map((r) => r.region_id));
    const candidates: { region: string; leader: number; follower: number; commit: number }[] = [];
    for (const [leader, replicas] of stats.entries()) {
      for (const r of replicas) {
        if (r.role !== 'leader' || damaged.has(r.region_id)) continue;
        for (const [follower, others] of stats.entries()) {
          const f = others.find((o) => o.region_id === r.region_id && o.role === 'follower');
          if (follower !== leader && f) candidates.push({ region: r.region_id, leader, follower, commit: Number(f.commit_index) });
        }
      }
    }
    if (candidates.length === 0) {
      record.targets = ['no region with a leader and only healthy replicas: nothing corrupted'];
      return async () => {};
    }
    const { region, leader, follower, commit } = this.rand.pick(candidates);
    record.targets = [name(follower)];
    await this.cluster.stopDatanode(follower, 'SIGKILL');
    const walDir = join(this.cluster.datanodes[follower]!.dataDir, 'wal');
    // The follower reported `commit` before the kill: the newest entry at or below it that is
    // still in its WAL (not yet truncated by a flush) is committed.
    const committed = (await entryIndexes(walDir, region)).filter((i) => i <= commit);
    if (committed.length > 0) {
      const index = committed[committed.length - 1]!;
      await flipByte(walDir, region, index);
      record.targets.push(`flipped committed entry region ${region} index ${index}`);
    } else {
      record.targets.push(`region ${region}: no committed entry left in the WAL (flushed); restart only`);
    }
    await this.cluster.startDatanode(follower);
    record.targets.push(name(leader));
    await this.cluster.stopDatanode(leader, 'SIGKILL');
    return () => this.cluster.startDatanode(leader);
  }

  /** Whatever happened, leave a whole cluster: links healed, nodes resumed and running. */
  async healAll(): Promise<void> {
    this.network.healAll();
    this.objectStoreLink?.heal();
    for (let i = 0; i < this.n() && this.setClockOffset; i++) this.setClockOffset(i, 0);
    for (let i = 0; i < this.n(); i++) {
      this.cluster.pauseDatanode(i, false);
      if (!this.cluster.isRunning(i)) await this.cluster.startDatanode(i);
    }
    const group = this.metasrvGroup;
    if (group) {
      group.links?.healAll();
      for (let i = 0; i < group.cluster.metasrvs.length; i++) if (!group.cluster.isMetasrvMemberRunning(i)) await group.cluster.startMetasrvMember(i);
    } else if (!this.cluster.metasrv.process || this.cluster.metasrv.process.exitCode !== null || this.cluster.metasrv.process.signalCode !== null) {
      await this.cluster.startMetasrv();
    }
  }
}
