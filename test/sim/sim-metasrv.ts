// The real metasrv core (src/metasrv/metasrv-core.ts) as one simulated process of the
// whole-datanode simulator (docs/simulation.md, "The metasrv"): its catalog storage is in
// memory, a save lands after a seeded latency and is lost if the process crashes first; its
// monotonic clock and timers are the scheduler's (they die with the incarnation); its wall clock
// is virtual time plus an offset the nemesis steps. Datanodes reach it through `call`: a request
// and its answer each take a seeded latency, may be lost while faults run, and a call to a
// process that is down (or that dies before answering) fails or times out, as gRPC would. A
// datanode core's calls (`callerFor`) cross the same protobuf encoding as over gRPC: the request
// and the answer are serialized and decoded with the loader options of src/rpc/proto.ts, so each
// side sees what it would see from the other over the wire (strings for uint64, defaults filled).
import type { Clock, TimerHandle } from '../../src/common/clock.js';
import { type MetasrvConfig, metasrvConfigSchema } from '../../src/common/config.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { Rand } from '../../src/common/rand.js';
import type { MetasrvCaller } from '../../src/datanode/datanode-core.js';
import { type CatalogState, emptyCatalog } from '../../src/metasrv/catalog.js';
import { decodeCatalog, encodeCatalog, upgradeCatalog } from '../../src/metasrv/catalog-store.js';
import { type CatalogStorage, type DatanodeAdmin, MetasrvCore, type MetasrvCoreEnv, PROCEDURE_TICK_MS } from '../../src/metasrv/metasrv-core.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { ProcessStall } from './sim-spurious.js';
import { Incarnation, type SimScheduler } from './sim-world.js';

/** The incarnation number space of the metasrv (datanodes use 1..): its node id is 0. */
const METASRV_NODE_ID = 0;

export const SIM_CLUSTER_ID = 'sim';

/** A metasrv config for the simulator: fast heartbeats, repairs of down nodes never (3 nodes: nowhere else to go), no balancing. */
export function simMetasrvConfig(heartbeatIntervalMs: number, withStorage = false): MetasrvConfig {
  return metasrvConfigSchema.parse({
    cluster_id: SIM_CLUSTER_ID,
    node: { data_dir: '/sim/metasrv' },
    // With `storage` (`metaloss`/`metarestore` or `ddl`, engine mode), a start lists the datanodes' object store
    // (`SimMetasrv.objectStoreFor` or the DDL scenario's reach) for its table id floor (finding 2c); the root is never read.
    ...(withStorage ? { storage: { type: 'fs', root: '/sim/objects' } } : {}),
    grpc: { port: 0 },
    http: { port: 0 },
    failure_detector: { heartbeat_interval_ms: heartbeatIntervalMs, acceptable_pause_ms: 200, min_std_dev_ms: 50 },
    balance_leaders_interval_ms: 0,
    catalog_backup_interval_ms: 0,
  });
}

/** How many earlier durable copies SimCatalogStorage keeps for `metarestore`. */
const PAST_COPIES_MAX = 24;

/** Where a catalog places every region's replicas (peer@node), as one comparable string. */
export function placementOf(state: CatalogState): string {
  return Object.values(state.regions)
    .map((r) => `${r.regionId}:${r.replicas.map((p) => `${p.peerId}@${p.nodeId}`).join(',')}`)
    .sort()
    .join(' ');
}

/**
 * The catalog's durable copy: what the last save that landed wrote. A save takes 1–8 ms and
 * lands only if its process is still alive then (a crash loses the save in flight, and its
 * promise never settles: the process is gone). With `failChance` (the `catalog` fault), a save
 * fails that often while `faulty` — a write or sync error of the metasrv's disk: the caller gets
 * STORAGE_UNAVAILABLE, and the write may be on disk or not (half of the time it is).
 */
export class SimCatalogStorage implements CatalogStorage {
  durable: Uint8Array | undefined;
  saves = 0;
  failures = 0;
  /** Chance that a save fails while `faulty` (0: never, and no randomness drawn for it). */
  failChance = 0;
  faulty = true;
  /** Set by the simulated process at each start: the incarnation whose saves these are. */
  owner: Incarnation | undefined;
  /**
   * With `metarestore` (test/sim/sim-catloss.ts): earlier durable copies a backup could hold,
   * oldest first, at most PAST_COPIES_MAX: the newest copy of each placement of the regions the
   * catalog went through, saved while the catalog was quiet (no procedure running, no replica
   * lost). Undefined: none kept.
   */
  past: { bytes: Uint8Array; placement: string }[] | undefined;

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
  ) {}

  /** An empty data dir loads an empty catalog, as the LevelDB CatalogStore does. */
  async load(clusterId: string): Promise<CatalogState> {
    // An empty data dir (never written, or `lose`): a fresh catalog, as the LevelDB store's load gives.
    if (!this.durable) return emptyCatalog(clusterId);
    return upgradeCatalog(decodeCatalog(this.durable, 'in the simulated catalog storage'));
  }

  /** The metasrv's disk is lost: its next start finds an empty data dir (call while it is down). */
  lose(): void {
    this.durable = undefined;
  }

  /** A backup restored over the metasrv's data dir: `copy` is durable from now on (call while it is down). */
  restore(copy: Uint8Array): void {
    this.durable = copy;
  }

  save(state: CatalogState): Promise<void> {
    const bytes = encodeCatalog(state);
    const delayMs = 1 + this.rand.int(8);
    const failed = this.failChance > 0 && this.faulty && this.rand.chance(this.failChance);
    const landed = !failed || this.rand.chance(0.5);
    const quiet = this.past !== undefined && Object.values(state.procedures).every((p) => p.status !== 'running') && Object.values(state.regions).every((r) => r.replicas.every((p) => p.lost === undefined));
    return new Promise<void>((resolve, reject) => {
      this.sched.at(
        this.sched.now + delayMs,
        () => {
          if (landed) {
            this.durable = bytes;
            this.saves++;
            if (this.past && quiet) {
              const placement = placementOf(state);
              if (this.past.at(-1)?.placement === placement) this.past.pop();
              this.past.push({ bytes, placement });
              if (this.past.length > PAST_COPIES_MAX) this.past.shift();
            }
          }
          if (!failed) {
            resolve();
            return;
          }
          this.failures++;
          reject(new RegionDbError(ErrorCode.StorageUnavailable, 'simulated catalog write failure (the write may or may not be on disk)'));
        },
        this.owner,
      );
    });
  }

  async reopen(): Promise<void> {}
}

/** What a metasrv incarnation reaches besides its catalog (the DDL scenario): datanodes' Admin service and the object store. */
export interface SimMetasrvReach {
  admin(inc: Incarnation): DatanodeAdmin;
  objectStore?(inc: Incarnation): ObjectStore;
}

/** Builds the core of one metasrv incarnation (a test may pass a subclass with a planted bug). */
export type MetasrvCoreFactory = (config: MetasrvConfig, env: MetasrvCoreEnv) => MetasrvCore;

export const realMetasrvCore: MetasrvCoreFactory = (config, env) => new MetasrvCore(config, silentLogger, 3, env);

/** Without the DDL scenario (test/sim/sim-ddl.ts) nothing calls a datanode's Admin service directly. */
const noAdmin: DatanodeAdmin = {
  openRegion: async () => {
    throw new RegionDbError(ErrorCode.Unavailable, 'the simulator has no Admin service (no DDL is simulated)');
  },
  fenceRegion: async () => {
    throw new RegionDbError(ErrorCode.Unavailable, 'the simulator has no Admin service (no DDL is simulated)');
  },
};

export class SimMetasrv {
  core: MetasrvCore | undefined;
  private incarnation: Incarnation | undefined;
  private ticker: TimerHandle | undefined;
  private incarnations = 0;
  /** Its wall clock's step from virtual time (the metasrv clock fault). */
  wallOffsetMs = 0;
  /** When a crashed metasrv restarts (set while down). */
  restartAt = 0;
  /** Requests and answers may be lost (only while faults run). */
  faulty = true;
  crashes = 0;
  /** Why the last start failed (the harness reports it), if it did. */
  startError: string | undefined;
  /** With the `stall` fault: each incarnation runs behind a `ProcessStall` (sim-spurious.ts). */
  stallable = false;
  /** The running incarnation's stall, with `stallable`. */
  stall: ProcessStall | undefined;
  /** A call reached the process (before a stall may hold it): the `healthy node` checker's arrivals. */
  onArrival: ((caller: Incarnation, method: string) => void) | undefined;
  /** Right after the core took a call in (its synchronous part ran: a heartbeat fed the detector, a registration was accepted or refused). */
  onHandled: ((caller: Incarnation, method: string, core: MetasrvCore) => void) | undefined;
  /** Right after each tick timer's callback (where failures are judged and procedures start). */
  afterTick: ((core: MetasrvCore) => void) | undefined;
  /** The datanodes' object store as this process sees it (engine mode, with a config that has `storage`): listed at start. */
  objectStoreFor: ((inc: Incarnation) => ObjectStore) | undefined;

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
    readonly storage: SimCatalogStorage,
    private readonly config: MetasrvConfig,
    private readonly factory: MetasrvCoreFactory,
    private readonly epochMs: number,
    private readonly record: (event: string) => void,
    /** Without it (the default), no Admin calls and no object store, as before the DDL scenario. */
    private readonly reach?: SimMetasrvReach,
  ) {}

  get up(): boolean {
    return this.core !== undefined;
  }

  /** The running (or last) incarnation's number: 1 for the first start. */
  get incarnationNumber(): number {
    return this.incarnations;
  }

  /** A new process: loads the last durable catalog, acts after its startup quiet period. */
  start(): void {
    this.startError = undefined;
    const inc = new Incarnation(METASRV_NODE_ID, ++this.incarnations);
    this.incarnation = inc;
    this.storage.owner = inc;
    this.stall = this.stallable ? new ProcessStall(this.sched, inc) : undefined;
    const clock = this.stall ? this.stall.wrap(this.sched.clockFor(inc)) : this.sched.clockFor(inc);
    const wall: Clock = { nowMs: () => this.epochMs + this.sched.now + this.wallOffsetMs };
    const core = this.factory(this.config, { admin: this.reach?.admin(inc) ?? noAdmin, procedureClock: wall, clock });
    this.core = core;
    this.record(`metasrv start #${inc.number}`);
    core.startAlone(this.storage, this.objectStoreFor?.(inc) ?? this.reach?.objectStore?.(inc)).then(
      () => {
        if (inc.dead) return;
        this.ticker = clock.setInterval(() => {
          core.onTickTimer();
          this.afterTick?.(core);
        }, PROCEDURE_TICK_MS);
      },
      (err: unknown) => {
        this.startError = String(err);
        this.record(`metasrv start failed: ${this.startError}`);
        if (!this.reach || inc.dead) return;
        // With the DDL scenario (the only runs whose start can fail: its table-id raise saves
        // the catalog, and with `catalog` that save may fail): the process exits (the CLI exits
        // 2 when the start throws) and its supervisor starts it again.
        inc.dead = true;
        core.halt();
        this.core = undefined;
        this.restartAt = this.sched.now + 200 + this.rand.int(800);
        this.sched.at(this.restartAt, () => {
          if (!this.core) this.start();
        });
      },
    );
  }

  crash(why: string): void {
    if (!this.core || !this.incarnation) return;
    this.crashes++;
    this.incarnation.dead = true; // its timers, saves in flight and answers die with it
    this.stall = undefined;
    this.ticker?.cancel();
    this.core.halt();
    this.core = undefined;
    this.record(`metasrv crash (${why})`);
  }

  /**
   * What a datanode core of incarnation `caller` calls the metasrv through: RegisterNode and
   * Heartbeat over `call`, encoded and decoded as gRPC would. `onAnswer` sees each decoded answer
   * (the harness records and counts the instructions).
   */
  callerFor(caller: Incarnation, onAnswer: (method: string, answer: unknown) => void): MetasrvCaller {
    return {
      call: <Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown, timeoutMs: number) =>
        this.call(caller, timeoutMs, async (core) => {
          const wire = metaMethod(method);
          const req = wire.requestDeserialize(wire.requestSerialize(request));
          const res = method === 'RegisterNode' ? await core.registerNode(req as never, () => {}) : await core.heartbeat(req as never, () => {});
          return wire.responseDeserialize(wire.responseSerialize(res)) as Res;
        }, method).then((answer) => {
          onAnswer(method, answer);
          return answer;
        }),
    };
  }

  /** A Meta call of a client (DDL, routes), encoded and decoded as gRPC would, over `call`. */
  callMeta<Res>(caller: Incarnation, method: 'CreateTable' | 'DropTable' | 'GetRoutes', request: unknown, timeoutMs: number): Promise<Res> {
    return this.call(caller, timeoutMs, async (core) => {
      const wire = metaMethod(method);
      const req = wire.requestDeserialize(wire.requestSerialize(request)) as never;
      const res = method === 'CreateTable' ? await core.createTable(req) : method === 'DropTable' ? await core.dropTable(req) : await core.getRoutes(req);
      return wire.responseDeserialize(wire.responseSerialize(res)) as Res;
    });
  }

  /**
   * A call from a datanode incarnation: the request arrives after 1–5 ms, the answer 1–5 ms after
   * the core settled it. Lost (2 % each way while faulty), sent to a process that is down, or
   * unanswered because the process died: the caller's timeout ends it.
   */
  call<T>(caller: Incarnation, timeoutMs: number, fn: (core: MetasrvCore) => Promise<T>, method?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (f: () => void) => {
        if (settled || caller.dead) return;
        settled = true;
        f();
      };
      this.sched.at(this.sched.now + timeoutMs, () => settle(() => reject(new RegionDbError(ErrorCode.Unavailable, 'metasrv call timed out'))), caller);
      if (this.faulty && this.rand.chance(0.02)) return;
      this.sched.at(this.sched.now + 1 + this.rand.int(5), () => {
        const core = this.core;
        const inc = this.incarnation;
        if (!core || !inc) {
          this.sched.at(this.sched.now + 1, () => settle(() => reject(new RegionDbError(ErrorCode.Unavailable, 'metasrv: connection refused'))), caller);
          return;
        }
        if (method) this.onArrival?.(caller, method);
        const answer = (f: () => void) => {
          if (inc.dead || (this.faulty && this.rand.chance(0.02))) return;
          this.sched.at(this.sched.now + 1 + this.rand.int(5), () => settle(f), caller);
        };
        const handle = () => {
          let result: Promise<T>;
          try {
            result = fn(core);
          } catch (err) {
            result = Promise.reject(err);
          }
          if (method) this.onHandled?.(caller, method, core);
          result.then(
            (value) => answer(() => resolve(value)),
            (err: unknown) => answer(() => reject(err)),
          );
        };
        // A stalled process reads its sockets only when it resumes, after its due timers.
        if (this.stall) this.stall.io(handle);
        else handle();
      });
    });
  }
}

interface WireMethod {
  requestSerialize(value: unknown): Buffer;
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

/** A service method's protobuf (de)serializers, as the gRPC server and client use them. */
export function wireMethod(service: 'Meta' | 'Admin', method: string): WireMethod {
  const definition = loadProtos().definition[`regiondb.v1.${service}`] as unknown as Record<string, WireMethod>;
  const wire = definition[method];
  if (!wire) throw new Error(`the ${service} service has no method ${method}`);
  return wire;
}

function metaMethod(method: string): WireMethod {
  return wireMethod('Meta', method);
}
