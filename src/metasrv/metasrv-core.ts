// The metasrv's logic without its transport: the catalog (tables, regions, placement), datanode
// registration and heartbeats (phi-accrual failure detection), reconciliation, procedures, routes
// and DDL. It never decides who leads a region (docs/raft-rules.md R22): leaders are what
// datanodes report from raft. `Metasrv` (metasrv.ts) is its gRPC/HTTP shell; the whole-datanode
// simulator (docs/simulation.md) drives it on simulated time.
//
// What it touches outside itself goes through seams, each with its production implementation:
//   - the catalog's durable copy: `CatalogStorage` (the LevelDB `CatalogStore` of a single
//     metasrv; `groupCatalogStorage`, the metasrv group's replicated log);
//   - time: a wall `Clock` for what is saved and shown, a monotonic `TimedClock` for durations
//     and timers (the caller sets the tick timer: `onTickTimer` every PROCEDURE_TICK_MS);
//   - the calls it makes to datanodes itself (OpenRegion at CreateTable and RecoverTable):
//     `DatanodeAdmin`; every other instruction travels in heartbeat replies;
//   - metrics: `MetasrvCoreHooks`.
import { assert } from '../common/assert.js';
import type { Clock, TimedClock, TimerHandle } from '../common/clock.js';
import type { MetasrvConfig } from '../common/config.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { LogLimiter } from '../common/log-limiter.js';
import type { Logger } from '../common/logger.js';
import { type TableSchema, validateSchema } from '../engine/schema.js';
import { safeU64, str, u64 } from '../rpc/proto.js';
import { fromGrpcError } from '../rpc/status.js';
import type {
  GetRoutesRequest__Output,
  GetRoutesResponse,
  GetStandbyPromotionResponse,
  HeartbeatRequest__Output,
  HeartbeatResponse,
  DroppingTableInfo,
  ListNodesResponse,
  MetaCreateTableRequest__Output,
  MetaCreateTableResponse,
  MetaDropTableRequest__Output,
  MetaDropTableResponse,
  MetaGroupInfo,
  FenceRegionRequest,
  FenceRegionResponse__Output,
  OpenRegionRequest,
  OpenRegionResponse__Output,
  RecoverTableResponse,
  RecoveredRegion,
  RegionInfo,
  RegionRoute,
  RegisterNodeRequest__Output,
  RegisterNodeResponse,
  StartProcedureRequest__Output,
  StartProcedureResponse,
} from '../rpc/generated/index.js';
import { fromProtoColumns, toProtoSchema } from '../rpc/values.js';
import { isFreshStoreId } from '../common/store-id.js';
import { REGIONS_PREFIX, regionPrefix } from '../engine/manifest.js';
import { SingleFlight } from '../common/single-flight.js';
import { type CatalogState, type NodeDef, type RegionDef, REPLICATION_FACTOR, type TableDef, addTable, dropTable, dropTokenOf, droppingSince, emptyCatalog, fencedIndexOf, forgetFences, isRegionId, ownMap, pickNodes, refuseExistingTable, regionList, regionWithId, regionsOfTable, rememberDropToken, replicaCountByNode, tableNamed } from './catalog.js';
import { decodeCatalog, encodeCatalog, upgradeCatalog } from './catalog-store.js';
import type { MetaGroup } from './meta-group.js';
import { backupCatalog } from './catalog-backup.js';
import { DROP_OBJECT_PREFIX, type DropRecord, dropObjectKey, droppedTableIds, readDropObject, writeDropObject } from './drop-object.js';
import { PROMOTION_NUMBER_MAX, newestPromotionObjects, promotionObjectKey, writePromotionObject } from './promotion-object.js';
import type { ObjectStore } from '../object-store/index.js';
import { type CatalogReconciliation, type HeldReports, type NodeAction, type ReportFloors, type Reports, groupOf, heldIdFloors, heldReplicaProblems, idFloors, nodeActions, reconcileCatalog, removedReplicaProblems, tableIdOfRegion } from './reconcile.js';
import { PhiAccrualDetector } from './failure-detector.js';
import { leadersOffPlacement } from './procedures/balance-leaders.js';
import { TABLE_ID_OBJECT_PREFIX, highestReservedTableId, writeTableIdObject } from './table-id-object.js';
import { type Instruction, type ObservedReplica, type ProcedureContext, removedByGroup } from './procedures/procedure.js';
import { type NodeReport, type ReportUse, useReport } from './report-view.js';
import { type BalanceLeadersData, type DataOf, type ProcedureKind, type ProcedureRecordOf, isProcedureKind } from './procedures/record.js';
import { repairExclusions } from './procedures/repair-replica.js';
import { describeProcedure, newProcedure, runProcedures, runningProcedures } from './procedures/runner.js';

/** How often the shell calls `onTickTimer` (failure judgement and procedure steps). */
export const PROCEDURE_TICK_MS = 200;
/**
 * After a start, nothing allocates ids (procedures, table creation) for this many datanode
 * heartbeat intervals: the live datanodes report what they host first, and the allocators are
 * raised above it (a catalog restored from an older copy is behind the ids in use).
 */
const STARTUP_QUIET_HEARTBEATS = 3;

/**
 * Where the catalog is durable. `save` writes the whole catalog (it resolves once durable: synced
 * to disk, or committed by the group). `load` reads the last saved one (an empty catalog if
 * none). After a failed save, `reopen` makes the next one possible (LevelDB refuses every write
 * after one failed).
 */
export interface CatalogStorage {
  load(clusterId: string): Promise<CatalogState>;
  save(state: CatalogState): Promise<void>;
  reopen(): Promise<void>;
}

/**
 * The metasrv group's log as the catalog's storage: a save is a put committed on a quorum and
 * applied here; a load reads what this member applied (a new leader reads it after a ReadIndex
 * barrier). Nothing to reopen: the group's log fails by itself (fatalError).
 */
export function groupCatalogStorage(group: MetaGroup): CatalogStorage {
  return {
    load: async (clusterId) => appliedGroupCatalog(group, clusterId),
    save: (state) => group.put(encodeCatalog(state)),
    reopen: async () => {},
  };
}

/** The catalog this group member applied (an empty one before the first put). */
function appliedGroupCatalog(group: MetaGroup, clusterId: string): CatalogState {
  const bytes = group.appliedCatalog();
  return bytes ? upgradeCatalog(decodeCatalog(bytes, 'in the metasrv group log')) : emptyCatalog(clusterId);
}

/** The Admin calls the metasrv makes itself (rejecting with a RegionDbError, or an error fromGrpcError reads). */
export interface DatanodeAdmin {
  openRegion(addr: string, request: OpenRegionRequest & { recover_from_object_store?: boolean }, timeoutMs: number): Promise<OpenRegionResponse__Output>;
  /** DropTable's fence of one region, asked of the node believed to lead it (docs/ddl.md). */
  fenceRegion(addr: string, request: FenceRegionRequest, timeoutMs: number): Promise<FenceRegionResponse__Output>;
}

/** How long one DropTable attempt tries to fence its table's regions before it answers "not yet". */
export const DROP_FENCE_MS = 5_000;
/** One FenceRegion call (a raft round on the region's leader). */
const FENCE_CALL_MS = 2_000;
/** Attempts per region within DROP_FENCE_MS (following leader hints, then the other replicas). */
const FENCE_ATTEMPTS_MAX = 8;
/** Pause after a FenceRegion that failed without naming another leader (an election under way). */
const FENCE_RETRY_MS = 100;
/** After a failed read of the promotion record objects, the gate reads again at most this often (calls in between answer UNAVAILABLE). */
export const PROMOTION_REREAD_MS = 1_000;
/** A listing of the object store (table id floor, drop records) that failed is made again by the tick at most this often. */
const TABLE_ID_RELIST_MS = 1_000;
/** How often the listing is made again while a table's drop record cannot be read (relistTableIds). */
const UNREADABLE_DROP_RECORD_RELIST_MS = 10_000;

/** A drop record the listing found for a table of the catalog but could not read (see unreadableDropRecords). */
interface UnreadableDropRecord {
  readonly key: string;
  readonly table: string;
  readonly why: string;
}
/** A table left being dropped (a drop that could not fence every region) is retried by the tick this often. */
const DROP_RESUME_MS = 3_000;

/** What the shell counts (metrics); every hook optional. */
export interface MetasrvCoreHooks {
  heartbeat?(): void;
  /** How a heartbeat's report was taken (report-view.ts): full, delta, the same again, unusable, or refused as malformed. */
  report?(how: 'full' | 'delta' | 'same' | 'unusable' | 'malformed'): void;
  rejected?(reason: string): void;
  /** Procedure records at the start of acting and at every save (procedure-metrics.ts). */
  baselineProcedures?(procedures: CatalogState['procedures']): void;
  observeProcedures?(procedures: CatalogState['procedures']): void;
}

/** The seams a core runs on (see the file's header). */
export interface MetasrvCoreEnv {
  readonly admin: DatanodeAdmin;
  /** Wall clock for what is saved and shown (procedure records, heartbeat times, drops). */
  readonly procedureClock: Clock;
  /** Monotonic clock and timers for everything measured as a duration (liveness, quiet periods, down times). */
  readonly clock: TimedClock;
  readonly hooks?: MetasrvCoreHooks;
}

export class MetasrvCore {
  /** Where the catalog is saved: set by `startAlone` or `joinGroup`. */
  private storage: CatalogStorage | undefined;
  /** The metasrv group (docs/metasrv-ha.md), when `meta_group` is configured. */
  private group: MetaGroup | undefined;
  /**
   * Whether this process acts (judges liveness, runs procedures, answers Meta calls): always for
   * a single metasrv; in a group only the leader, once it has read every committed catalog.
   */
  private acting = false;
  /**
   * The fencing epoch carried by every instruction to datanodes (datanodes refuse a lower one
   * than they have seen): the group's term at which this leader took over; 0 for a single metasrv.
   */
  private epoch = 0;
  /** The term a takeover is in progress for (0: none). */
  private takeoverTerm = 0;
  /**
   * Instructions of procedure steps whose catalog change is not saved yet: they reach `pending`
   * (and the datanodes) only once the save that records their step succeeded — an effect never
   * goes out before its record (a new leader resumes from the record, so it must exist).
   */
  private staged: [number, Instruction, number][] = [];
  /**
   * Registrations per node id since this process started: an instruction staged for a node's
   * earlier process (the number it was staged at) is not released to the one that registered
   * since — a save in flight at the registration would otherwise deliver it (finding M15).
   */
  private readonly registrations = new Map<number, number>();
  /** The datanodes' object store (`[storage]`), if configured: id floors and catalog copies. */
  private objectStore: ObjectStore | undefined;
  private readonly backup = { lastMs: 0, running: false, written: {} as { crc?: number } };
  /**
   * The promotion record objects in the object store (promotion-object.ts), as this process has
   * read them since it began acting: `readAtEpoch` is the acting epoch (group term; 0 alone) of the
   * last read that succeeded — before one in the current epoch, GetStandbyPromotion and
   * RecordStandbyPromotion answer UNAVAILABLE with `error` (D11: never "no record" when unsure).
   * `reading`: the read in flight (one at a time). `recording`: RecordStandbyPromotion calls, one
   * at a time (each writes its object, then the catalog). `invalidated`: counts the record calls
   * that failed after their put began (the store may hold an object the catalog lacks): a read
   * that began before one does not open the gate. `failedAtMs` (this.clock): when the last read
   * failed; the gate reads again at most once per PROMOTION_REREAD_MS meanwhile.
   */
  private readonly promotionStore = {
    readAtEpoch: undefined as number | undefined,
    error: 'not read yet',
    reading: undefined as Promise<void> | undefined,
    recording: Promise.resolve() as Promise<unknown>,
    invalidated: 0,
    failedAtMs: undefined as number | undefined,
  };
  catalog!: CatalogState;
  private readonly detectors = new Map<number, PhiAccrualDetector>();
  /**
   * Per datanode: its replicas as of the last report it made that this process could use
   * (report-view.ts: a full report, or a delta on the view held).
   */
  private readonly observed = new Map<number, NodeReport>();
  /** idFloors of each report in `observed` (a report is never changed: a heartbeat brings a new one). */
  private readonly reportFloors = new WeakMap<ReadonlyMap<string, ObservedReplica>, ReportFloors>();
  /** Instructions waiting for a datanode's next heartbeat. */
  private readonly pending = new Map<number, Instruction[]>();
  /** Nodes seen alive by this metasrv process, and since when others are down. */
  private readonly wasAlive = new Set<number>();
  private readonly downSinceMs = new Map<number, number>();
  private ticking = false;
  /** Monotonic (this.clock): durations only. */
  private lastBalanceCheckMs: number;
  /** Monotonic (this.clock): when this process started acting (its start, or its takeover as group leader), for the quiet period. */
  private actingSinceMs: number;
  private readonly rejectionLog = new LogLimiter(10_000);
  private saving: Promise<void> = Promise.resolve();
  /**
   * The tables (name → table id) marked being dropped in the last catalog this process knows
   * durable: the one it loaded or took over, or the last one a save wrote. No region of a table is
   * fenced before its mark is here (docs/ddl.md, "Fencing only under a durable mark").
   */
  private durableMarks = new Map<string, number>();
  /**
   * The table ids in the last catalog this process knows durable (as durableMarks): a DropTable
   * sent again after its table left the catalog in memory answers OK only once the table is gone
   * from here too (docs/ddl.md, "A DropTable sent again": the removal's save).
   */
  private durableTableIds = new Set<number>();
  /**
   * Set when a catalog write failed (a full disk): the catalog on disk is behind this process's
   * memory, so the metasrv stops acting — no failure judgement, no procedures, no instructions,
   * DDL refused UNAVAILABLE — until a write succeeds again (retried every tick, the store
   * reopened: LevelDB refuses every write after one failed). Reads (routes, status) are served.
   */
  private catalogUnwritable: Error | undefined;
  private resuming = false;
  /** Liveness is not judged before this (a start, or a resume after catalog writes failed). */
  private quietUntilMs = 0;
  /** What the last reconciliation could not settle, per region (reconcile.ts R3), for status. */
  private problems = new Map<string, string[]>();
  private readonly admin: DatanodeAdmin;
  private readonly procedureClock: Clock;
  private readonly clock: TimedClock;
  private readonly hooks: MetasrvCoreHooks;

  constructor(
    readonly config: MetasrvConfig,
    readonly log: Logger,
    /** Replicas per region: 3 in a cluster, 1 in standalone mode. */
    readonly replicationFactor: number = REPLICATION_FACTOR,
    env: MetasrvCoreEnv,
  ) {
    this.admin = env.admin;
    this.procedureClock = env.procedureClock;
    this.clock = env.clock;
    this.hooks = env.hooks ?? {};
    this.actingSinceMs = this.clock.nowMs();
    // The tick timer starts with the acting: a first tick that fires late is a stall too (M3).
    this.lastTickTimerMs = this.actingSinceMs;
    this.lastBalanceCheckMs = this.clock.nowMs();
  }

  /** A single metasrv: the catalog is the one `storage` saved last; it acts at once (after raising the table ids). */
  async startAlone(storage: CatalogStorage, objectStore: ObjectStore | undefined): Promise<void> {
    this.storage = storage;
    this.objectStore = objectStore;
    this.catalog = await storage.load(this.config.cluster_id);
    await this.listTableIds();
    this.startActing();
    // Not awaited (a hung listing must not hold the start: the gRPC server, heartbeats, DDL), as at
    // a takeover: until it has succeeded, GetStandbyPromotion and RecordStandbyPromotion answer
    // UNAVAILABLE (or wait for it) and read again. Logged if it fails.
    if (this.config.storage) void this.readPromotionObjects().catch(() => {});
  }

  /**
   * A member of the metasrv group: the catalog is what the group committed, read by the leader
   * when it takes over (`takeover`, from the group's role changes); until then this process only
   * takes part in raft.
   */
  joinGroup(group: MetaGroup, objectStore: ObjectStore | undefined): void {
    this.group = group;
    this.storage = groupCatalogStorage(group);
    this.objectStore = objectStore;
    this.catalog = emptyCatalog(this.config.cluster_id);
  }

  /** The process is stopping: nothing acts from now on (ticks, takeovers' end, Meta calls). */
  halt(): void {
    this.acting = false;
  }

  /** Resolves once every save started so far has ended. */
  whenSaved(): Promise<void> {
    return this.saving;
  }

  /** Phi per datanode now (the metrics gauge). */
  phis(): [number, number][] {
    const now = this.clock.nowMs();
    return [...this.detectors].map(([id, d]) => [id, d.phi(now)]);
  }


  /** What /health shows of the metasrv. */
  health(): Record<string, unknown> {
    const fatal = this.group?.fatalError();
    const failed = this.catalogUnwritable ?? fatal;
    return {
      status: failed ? 'failed' : 'ok',
      ...(this.catalogUnwritable ? { error: `catalog write failed: ${this.catalogUnwritable.message}` } : fatal ? { error: `metasrv group log failed: ${fatal.message}` } : {}),
      ...(this.group ? { metaGroup: { ...this.group.status(), acting: this.acting } } : {}),
      ...(this.acting ? { tables: Object.keys(this.catalog.tables).length, nodes: Object.keys(this.catalog.nodes).length } : {}),
    };
  }

  /** Begins acting on `this.catalog` (a start, or a takeover as group leader). */
  private startActing(): void {
    this.hooks.baselineProcedures?.(this.catalog.procedures);
    for (const [id, u] of Object.entries(this.catalog.unreadableProcedures ?? {})) {
      this.log.warn({ procedure: id, error: u.error }, 'stored procedure record cannot be run by this version; kept, shown in status, not run');
    }
    const resumed = Object.values(this.catalog.procedures).filter((p) => p.status === 'running');
    this.unbootstrappedAtStart = new Set(regionList(this.catalog).filter((r) => !r.bootstrapped).map((r) => r.regionId));
    this.regionsAtStart = new Set(regionList(this.catalog).map((r) => r.regionId));
    this.nodesAtStart = new Set(Object.values(this.catalog.nodes).map((n) => n.nodeId));
    this.actingSinceMs = this.clock.nowMs();
    // The tick timer starts with the acting: a first tick that fires late is a stall too (M3).
    this.lastTickTimerMs = this.actingSinceMs;
    this.lastBalanceCheckMs = this.actingSinceMs;
    this.durableMarks = this.markedTables(); // loaded or committed: durable
    this.durableTableIds = this.tableIds();
    this.acting = true;
    this.log.info({ epoch: this.epoch, tables: Object.keys(this.catalog.tables).length, resumedProcedures: resumed.map((p) => `${p.id}@${p.step}`) }, 'metasrv acting');
  }

  /**
   * This member became the group's leader at `term`. It acts only after a ReadIndex round has
   * applied every committed catalog (the previous leader's last changes included); liveness is
   * then rebuilt from fresh heartbeats over the quiet period before anyone is judged, and the
   * unfinished procedures resume from their records.
   */
  async takeover(term: number): Promise<void> {
    const group = this.group!;
    this.takeoverTerm = term;
    const current = () => this.takeoverTerm === term && group.isLeader() && group.term === term;
    for (let attempt = 1; current(); attempt++) {
      try {
        await group.barrier();
        break;
      } catch (err) {
        if (!current()) return;
        this.log.warn({ term, attempt, err: (err as Error).message }, 'metasrv leader: reading the committed catalog failed; retrying');
        await new Promise<void>((ok) => this.clock.setTimeout(ok, 100));
      }
    }
    if (!current()) return;
    try {
      const catalog = appliedGroupCatalog(group, this.config.cluster_id);
      if (catalog.clusterId !== this.config.cluster_id) {
        throw new RegionDbError(ErrorCode.Config, `the metasrv group's catalog belongs to cluster "${catalog.clusterId}", but the config says "${this.config.cluster_id}"`);
      }
      this.catalog = catalog;
    } catch (err) {
      // Not acting on a catalog it cannot read; another member may (this one stays a voter).
      this.log.error({ err: (err as Error).message, term }, 'metasrv leader cannot read the committed catalog; not acting');
      return;
    }
    this.forgetVolatileState();
    this.epoch = term;
    this.startActing();
    this.log.warn({ term, epoch: this.epoch, member: this.config.meta_group?.id }, 'metasrv group leader: took over (liveness judged after fresh heartbeats; unfinished procedures resume)');
    await this.listTableIds();
    // Logged if it fails; GetStandbyPromotion and RecordStandbyPromotion then answer UNAVAILABLE and read again.
    if (this.config.storage) await this.readPromotionObjects().catch(() => {});
  }

  /** Leadership lost (or never had): stop acting; what was not committed is forgotten. */
  demote(term: number): void {
    this.takeoverTerm = 0;
    if (!this.acting) return;
    this.acting = false;
    this.forgetVolatileState();
    this.log.warn({ term, leader: this.group?.leaderAddr() }, 'metasrv group: no longer the leader; stopped acting');
  }

  /**
   * The metasrv group's server stopped serving for good (its WAL failed, or its raft core threw:
   * MetaGroup makes both fatal): this member neither leads nor follows any more, and no ready will
   * say so. It stops acting at once (no heartbeat answers, procedures or DDL from here; a takeover
   * in progress gives up) while the other members elect a leader; /health says failed. A restart
   * reopens the group's replica from its WAL, which the failure left untouched.
   */
  groupFailed(err: Error): void {
    this.log.fatal({ err: err.message }, 'metasrv group replica stopped; this member stops acting (restart it to rejoin the group)');
    this.demote(this.group?.term ?? 0);
  }

  /** What only the acting process knows (timing, reports, queued instructions): rebuilt by the next one. */
  private forgetVolatileState(): void {
    this.detectors.clear();
    this.observed.clear();
    this.pending.clear();
    this.staged = [];
    this.wasAlive.clear();
    this.downSinceMs.clear();
    this.problems.clear();
    this.catalogUnwritable = undefined;
    this.promotionStore.error = 'not read yet';
    this.promotionStore.failedAtMs = undefined;
    this.quietUntilMs = 0;
    this.lastTickTimerMs = undefined;
  }

  /**
   * Meta calls are answered by the acting process only. A group member that is not the leader
   * answers NOT_LEADER with the leader's address when it knows one (callers follow it: the
   * datanodes, the client library, the CLI — src/rpc/meta-channel.ts); a leader still reading
   * the committed catalog answers NOT_LEADER without a hint (callers try again shortly).
   */
  requireActing(): void {
    if (this.acting) return;
    const group = this.group;
    const member = this.config.meta_group?.id;
    if (!group) throw new RegionDbError(ErrorCode.Unavailable, 'the metasrv is starting');
    if (group.isLeader()) {
      throw new RegionDbError(ErrorCode.NotLeader, `metasrv ${member} was just elected leader and is reading the committed catalog; retry shortly`);
    }
    const leaderAddr = group.leaderAddr();
    throw new RegionDbError(
      ErrorCode.NotLeader,
      `metasrv ${member} is not the leader of the metasrv group${leaderAddr ? `; the leader is at ${leaderAddr}` : ' (no leader known: an election is in progress)'}`,
      { details: leaderAddr ? { leaderAddr } : {} },
    );
  }

  /**
   * A catalog that was lost or restored from an older copy has a table id allocator that may be
   * behind ids already used: a re-created table would get region ids whose objects (SSTs,
   * manifests) are already in the object store. When the metasrv knows the datanodes' object
   * store (`[storage]`), its `regions/` listing raises the allocator above every table id found;
   * heartbeats do the same for regions the datanodes host (reconcile.ts idFloors).
   */
  protected async raiseTableIdAboveObjectStore(): Promise<void> {
    if (!this.config.storage) {
      this.log.info('no [storage] configured: table ids are kept above those the datanodes report, not those only in the object store');
      return;
    }
    const store = this.objectStore!;
    const epoch = this.epoch;
    // The region folders, not the objects in them: a table id is read off its region ids, and a
    // region has objects exactly when its folder is listed (listPrefixes names a folder only
    // while an object is in it), so one request per 1,000 regions, not per 1,000 SSTs.
    let folders: string[];
    try {
      // A relist in an epoch whose listing succeeded (a table held by a drop record that does not
      // read, relistTableIds) reads the drop records only: the allocator is above the folders
      // already, and one request per 1,000 regions every 10 s would be for nothing.
      folders = this.tableIdsListedAt === epoch ? [] : await store.listPrefixes(REGIONS_PREFIX);
    } catch (err) {
      // Heartbeats raise the allocator above every hosted region, but not above a table dropped
      // (or lost) after the catalog's copy, whose objects stay: CreateTable waits for a listing
      // that succeeds (`tableIdsListed`, finding Y1).
      this.log.error({ err: (err as Error).message, store: store.description }, 'cannot list the object store; no table is created until a listing succeeds');
      throw err;
    }
    // The drop records (drop-object.ts; docs/ddl.md, "A catalog older than the drop"): their ids
    // are table ids too (a table dropped before any flush has no region folder), and a table this
    // catalog still holds whose drop was recorded is dropped here, before any region of it is
    // bootstrapped (`openHeld`). A record that is damaged (or names another table) holds only its
    // table: nothing of it is opened until the record reads (`unreadableDropRecords`), the rest of
    // the cluster goes on. Another cluster's record (wrong `[storage]`?) and a store that cannot be
    // read fail the listing.
    let dropRecords: Map<number, string>;
    let finishing: { table: TableDef; record: DropRecord }[];
    const unreadable = new Map<number, UnreadableDropRecord>();
    try {
      const listed = await droppedTableIds(store);
      dropRecords = listed.ids;
      if (listed.strays.length > 0) {
        this.log.error({ keys: listed.strays.slice(0, 10), count: listed.strays.length }, `objects under ${DROP_OBJECT_PREFIX} that are not drop records (their key names no table id); left alone — remove them`);
      }
      finishing = [];
      for (const table of Object.values(this.catalog.tables)) {
        const key = dropRecords.get(table.tableId);
        if (key === undefined) continue;
        let record: DropRecord;
        try {
          record = await readDropObject(store, key, this.config.cluster_id);
          if (record.name !== table.name) {
            throw new RegionDbError(ErrorCode.Corruption, `the drop record object ${key} names table ${record.name}, but this catalog's table of id ${table.tableId} is ${table.name}: the catalog or the object is damaged`);
          }
        } catch (err) {
          if (!isRegionDbError(err, ErrorCode.Corruption)) throw err;
          unreadable.set(table.tableId, { key, table: table.name, why: err.message });
          this.log.error(
            { table: table.name, tableId: table.tableId, key, err: err.message },
            'the drop record of a table this catalog holds cannot be read: no replica of the table is opened and it is not recovered until it can (drop the table to finish what the record says; delete the object only if the table was never dropped)',
          );
          continue;
        }
        finishing.push({ table, record });
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message, store: store.description }, 'cannot read the drop records in the object store; no table is created and no region bootstrapped until they are read');
      throw err;
    }
    // The reservations (finding M34): the ids of tables created here, flushed or not. Read before
    // the epoch check, like everything this listing awaits: the catalog changes only after it.
    const reserved = await highestReservedTableId(store).catch((err: unknown) => {
      this.log.error({ err: (err as Error).message, store: store.description }, 'cannot list the table id reservations in the object store; no table is created until they are read');
      throw err;
    });
    if (reserved.strays.length > 0) this.log.error({ keys: reserved.strays.slice(0, 10), count: reserved.strays.length }, `objects under ${TABLE_ID_OBJECT_PREFIX} that are not table id reservations; left alone — remove them`);
    if (this.epoch !== epoch) throw new RegionDbError(ErrorCode.Unavailable, 'this metasrv acts at another epoch since the listing began');
    this.unreadableDropRecords = unreadable;
    let changed = this.dropRecordedTables(finishing);
    let highest = reserved.highest;
    for (const id of dropRecords.keys()) highest = Math.max(highest, id); // not a spread: records only grow (a call's arguments do not)
    for (const folder of folders) {
      const regionId = folder.slice(REGIONS_PREFIX.length, -1);
      if (/^[0-9]+$/.test(regionId) && folder === regionPrefix(regionId)) highest = Math.max(highest, tableIdOfRegion(regionId));
    }
    if (highest >= this.catalog.nextTableId) {
      this.log.warn({ nextTableId: this.catalog.nextTableId, highestInObjectStore: highest }, 'table id allocator behind the object store (catalog lost or restored?); raised');
      this.catalog.nextTableId = highest + 1;
      changed = true;
    }
    if (changed) {
      // A failed write stops the metasrv acting until one succeeds (finding M5), as anywhere
      // else; it must not fail the start: the raised allocator is in memory and is written with
      // the catalog when the tick's retry succeeds (M12; test/unit/metasrv-table-ids-listing.test.ts).
      await this.save().catch(() => {});
    }
  }

  /**
   * Drops from the catalog the tables whose drop record the object store holds (every region of
   * each was fenced before its record was written: the drop is finished, not started again).
   * Returns true if the catalog changed. Protected for the simulator's planted bug
   * (test/sim/sim-metasrv-bugs.ts, drop-records-ignored); nothing in src/ overrides it.
   */
  protected dropRecordedTables(recorded: readonly { readonly table: TableDef; readonly record: DropRecord }[]): boolean {
    let changed = false;
    for (const { table, record } of recorded) {
      if (tableNamed(this.catalog, table.name)?.tableId !== table.tableId) continue; // dropped meanwhile
      const regions = dropTable(this.catalog, table.name, this.procedureClock.nowMs());
      this.log.warn({ table: record.name, tableId: record.tableId, regions: regions.length }, 'the catalog holds a table whose drop is recorded in the object store (catalog lost or restored from an older copy?); dropped it again');
      changed = true;
    }
    return changed;
  }

  /**
   * The acting epoch in which `raiseTableIdAboveObjectStore` last succeeded: no table id is
   * allocated in an epoch without one (finding Y1). A listing that failed at the start or
   * takeover (the object store unreachable for a moment) is made again by the next CreateTable;
   * in a group, a CreateTable right after a takeover waits for the takeover's listing, whose
   * catalog may be a copy older than the object store (`meta seed`).
   */
  private tableIdsListedAt: number | undefined;
  /** The listing running now, and the acting epoch it began in. */
  private tableIdListing: { readonly epoch: number; readonly done: Promise<void> } | undefined;

  /** Monotonic (this.clock): when the last listing began (the tick's `relistTableIds` waits TABLE_ID_RELIST_MS after it). */
  private tableIdListingStartedMs = Number.NEGATIVE_INFINITY;

  /**
   * Runs (or joins) the listing that raises the table id allocator; never throws (logged,
   * `tableIdsListedAt` left). Joined only within one acting epoch: a listing begun in an earlier
   * one (the tick's relist, say) fails its epoch check, and a takeover must not take that failure
   * for its own (review of DT3).
   */
  private listTableIds(): Promise<void> {
    const epoch = this.epoch;
    if (this.tableIdListing?.epoch === epoch) return this.tableIdListing.done;
    this.tableIdListingStartedMs = this.clock.nowMs();
    const done: Promise<void> = this.raiseTableIdAboveObjectStore()
      .then(
        () => {
          if (this.epoch !== epoch) return;
          this.tableIdsListedAt = epoch;
          this.lastListingError = undefined;
        },
        (err: unknown) => {
          if (this.epoch !== epoch) return;
          this.lastListingError = (err as Error).message;
          // The listing's own failures are logged where they happen; this names any other cause,
          // since CreateTable and every held bootstrap wait for the listing (retried by the tick).
          this.log.warn({ err: (err as Error).message }, 'the object-store listing (table id floor, drop records) did not complete; CreateTable and region bootstraps wait for it, retried');
        },
      )
      .finally(() => {
        if (this.tableIdListing?.done === done) this.tableIdListing = undefined;
      });
    this.tableIdListing = { epoch, done };
    return done;
  }

  /**
   * The tick: a listing that has not succeeded in this acting epoch is made again (at most every
   * TABLE_ID_RELIST_MS): regions waiting for their bootstrap (`openHeld`) wait for it. One that
   * succeeded is made again every UNREADABLE_DROP_RECORD_RELIST_MS while a table is held by a drop
   * record that does not read (`unreadableDropRecords`).
   */
  private relistTableIds(): void {
    if (!this.config.storage || this.tableIdListing?.epoch === this.epoch) return;
    const sinceMs = this.clock.nowMs() - this.tableIdListingStartedMs;
    if (this.tableIdsListedAt !== this.epoch ? sinceMs >= TABLE_ID_RELIST_MS : this.unreadableDropRecords.size > 0 && sinceMs >= UNREADABLE_DROP_RECORD_RELIST_MS) void this.listTableIds();
  }

  /**
   * The tables this catalog holds whose drop record the last successful listing could not read
   * (damaged, or naming another table), by table id: none of their replicas is opened (`openHeld`)
   * and RecoverTable refuses them; `regiondb status` names the record in each region's problems.
   * The tick lists again every UNREADABLE_DROP_RECORD_RELIST_MS while one is left: a record
   * repaired or removed, or the table dropped, releases its table.
   */
  // Kept across a change of acting epoch until this epoch's listing replaces it: a table held by
  // the last listing stays held (the safe side) while the store cannot be listed again.
  private unreadableDropRecords = new Map<number, UnreadableDropRecord>();

  /** The unreadable drop record holding the table of region `regionId`, if any (no region id parsed while none is held). */
  private unreadableRecordOf(regionId: string): UnreadableDropRecord | undefined {
    return this.unreadableDropRecords.size === 0 ? undefined : this.unreadableDropRecords.get(tableIdOfRegion(regionId));
  }

  /** Before a table id is allocated: the object store listed in this acting epoch, else UNAVAILABLE (retryable, nothing done). */
  private async tableIdsListed(why = 'a table id is allocated only above every table with objects there (a dropped table\'s stay); nothing was created'): Promise<void> {
    if (!this.config.storage || this.tableIdsListedAt === this.epoch) return;
    await this.listTableIds();
    if (this.tableIdsListedAt === this.epoch) return;
    const cause = this.lastListingError === undefined ? '' : ` (last attempt: ${this.lastListingError})`;
    throw new RegionDbError(ErrorCode.Unavailable, `the object store's table folders and drop records could not be read since this metasrv began acting${cause}: ${why}; retry`);
  }

  /** Why the last listing (listTableIds) failed, for the UNAVAILABLE answers that wait for it. */
  private lastListingError: string | undefined;

  /**
   * Raises the catalog's promotion record to the newest one in the object store, never lowers it
   * (docs/replication.md, "The record in the object store", D11, D12): a catalog started empty or
   * restored from a copy older than a promotion takes it up before its first GetStandbyPromotion
   * answer. An object ahead of the catalog is one whose RecordStandbyPromotion wrote the object and
   * then failed or crashed before the catalog: its outcome was unknown to the promoter, and a node
   * may have read it meanwhile from a catalog since lost, so it is taken up, never passed over —
   * if it is the only cut at its epoch; two cuts there, neither in the catalog, are refused (no way
   * to tell which one a node may have read). At the catalog's epoch the catalog's cut is kept (the
   * other was never answered, the doc argues), and written to the store if missing; a catalog
   * ahead of the store gets its object written. Every record the catalog answers is then in the
   * store. One read at a time; a read that fails leaves the gate closed (`promotionStore.error`).
   */
  private readPromotionObjects(): Promise<void> {
    this.promotionStore.reading ??= this.readPromotionObjectsOnce().finally(() => {
      this.promotionStore.reading = undefined;
    });
    return this.promotionStore.reading;
  }

  private async readPromotionObjectsOnce(): Promise<void> {
    const store = this.objectStore!;
    const epoch = this.epoch;
    const invalidated = this.promotionStore.invalidated;
    const stillActing = () => this.acting && this.epoch === epoch;
    try {
      const top = await newestPromotionObjects(store, this.config.cluster_id);
      if (!stillActing()) return; // a takeover since: its own read decides
      const held = this.catalog.standbyPromotion;
      const topEpoch = top[0]?.record.epoch ?? 0;
      const keys = top.map((f) => f.key).join(', ');
      if (topEpoch > (held?.epoch ?? 0)) {
        if (top.length > 1) {
          throw new RegionDbError(
            ErrorCode.Corruption,
            `two promotion records at epoch ${topEpoch} with different cuts (${keys}), above the catalog's (${held ? `epoch ${held.epoch}, cut ${held.cutMs}` : 'none'}): the metasrv cannot tell which one a node may have read, so it answers neither. To repair: \`regiondb standby status\` on the standby site shows each promoted node's fence record (the epoch and cut it adopted or was told); remove the object whose cut no node holds, then retry (docs/replication.md, "The record in the object store")`,
          );
        }
        const newest = top[0]!;
        this.log.warn({ key: newest.key, epoch: newest.record.epoch, cutMs: newest.record.cutMs, catalogEpoch: held?.epoch ?? 0 }, 'standby promotion record behind the object store (catalog lost or restored?); raised');
        this.catalog.standbyPromotion = { ...newest.record };
        this.catalog.version++;
        // As the table id floor: a failed write stops the metasrv acting until one succeeds (M5,
        // M12); the raised record is in memory, and it is in the store already, so it may be answered.
        await this.save().catch(() => {});
      } else if (held) {
        // The store at or below the catalog: the catalog's record is kept, and put in the store if
        // it is not there (recorded by a build before the objects, or its object removed).
        if (topEpoch < held.epoch || !top.some((f) => f.record.cutMs === held.cutMs)) {
          const key = await writePromotionObject(store, this.config.cluster_id, held);
          this.log.info({ key }, 'standby promotion record copied to the object store (the catalog held it, the store did not)');
        }
        const others = topEpoch === held.epoch ? top.filter((f) => f.record.cutMs !== held.cutMs).map((f) => f.key) : [];
        if (others.length > 0) {
          this.log.warn(
            { kept: promotionObjectKey(held), others },
            'the object store also records the catalog\'s epoch with another cut (a deposed metasrv\'s late write, or a record that failed): never answered, the catalog\'s is kept; remove the other object (the one the catalog does not hold), or a metasrv started on an empty data dir refuses to choose',
          );
        }
      }
      if (!stillActing() || this.promotionStore.invalidated !== invalidated) return;
      this.promotionStore.readAtEpoch = epoch;
      this.promotionStore.failedAtMs = undefined;
    } catch (err) {
      const why = (err as Error).message;
      if (stillActing()) {
        this.promotionStore.error = why;
        this.promotionStore.failedAtMs = this.clock.nowMs();
      }
      // Rate limited: the gate reads again on GetStandbyPromotion calls (release rounds, fence checks).
      const suppressed = this.rejectionLog.admit('promotion-read', this.clock.nowMs());
      if (suppressed !== undefined) {
        this.log.error({ err: why, store: store.description, suppressed }, 'cannot read the standby promotion record objects: GetStandbyPromotion answers UNAVAILABLE until they are read');
      }
      throw err;
    }
  }

  /**
   * UNAVAILABLE until this process has read the promotion record objects in its acting epoch: it
   * waits for the read in flight, or starts one — at most one per PROMOTION_REREAD_MS after a
   * failed one (release rounds and fence checks call often while the store cannot be read).
   */
  private async requirePromotionObjectsRead(): Promise<void> {
    if (!this.config.storage || this.promotionStore.readAtEpoch === this.epoch) return;
    const failedAtMs = this.promotionStore.failedAtMs;
    const backingOff = !this.promotionStore.reading && failedAtMs !== undefined && this.clock.nowMs() - failedAtMs < PROMOTION_REREAD_MS;
    if (!backingOff) {
      // Waits PROMOTION_REREAD_MS at most: a listing that hangs answers UNAVAILABLE, never holds the call.
      let timer: TimerHandle | undefined;
      const waited = new Promise<void>((ok) => {
        timer = this.clock.setTimeout(ok, PROMOTION_REREAD_MS);
      });
      await Promise.race([this.readPromotionObjects().catch(() => {}), waited]);
      timer?.cancel();
    }
    this.requireActing();
    if (this.promotionStore.readAtEpoch === this.epoch) return;
    const why = this.promotionStore.reading ? 'its read has not ended yet' : this.promotionStore.error;
    throw new RegionDbError(
      ErrorCode.Unavailable,
      `the metasrv has not read the standby promotion record from the object store (${why}): it does not answer "no promotion" until it has; retry`,
    );
  }

  private async save(): Promise<void> {
    this.refuseIfUnwritable();
    // Saves are serialized; each writes the whole (small) catalog with sync. A failed one must
    // not fail the saves queued behind it (the chain continues past a rejection).
    this.hooks.observeProcedures?.(this.catalog.procedures);
    // The instructions staged so far come from changes in the catalog written now.
    const release = this.staged;
    this.staged = [];
    const write = this.saving.then(() => this.writeNotingMarks());
    this.saving = write.catch(() => {});
    try {
      await write;
    } catch (err) {
      // In a group: a leader that lost its leadership stops acting (demote); the change may
      // still commit under the next leader, so its outcome is unknown either way.
      if (this.group && !this.group.isLeader()) throw this.notLeaderAnyMore(err);
      this.stopActing(err);
      throw this.unwritableError();
    }
    for (const [nodeId, instruction, registration] of release) {
      if ((this.registrations.get(nodeId) ?? 0) !== registration) continue; // for a process that is gone (M11, M15)
      const list = this.pending.get(nodeId) ?? [];
      list.push(instruction);
      this.pending.set(nodeId, list);
    }
  }

  /** One pass of the procedure runner (runner.ts); true if a record changed. */
  protected runProcedurePass(ctx: ProcedureContext): boolean {
    return runProcedures(ctx, this.log);
  }

  /**
   * Writes the catalog: to the local store, or replicated through the group (committed on a
   * quorum, applied here). Protected, like noteStore and runProcedurePass, for the simulator's
   * planted bugs (test/sim/sim-metasrv-bugs.ts); nothing in src/ overrides it.
   */
  protected async writeCatalog(): Promise<void> {
    await this.storage!.save(this.catalog);
  }

  /**
   * writeCatalog, noting which drop marks it made durable. The marks are read just before the
   * write (which encodes the catalog at once): a mark added while the write is under way is not
   * counted until a later write carries it.
   */
  private async writeNotingMarks(): Promise<void> {
    const marks = this.markedTables();
    const tableIds = this.tableIds();
    await this.writeCatalog();
    this.durableMarks = marks;
    this.durableTableIds = tableIds;
  }

  /** The ids of the tables in the catalog in memory. */
  private tableIds(): Set<number> {
    return new Set(Object.values(this.catalog.tables).map((t) => t.tableId));
  }

  /** The tables marked being dropped in the catalog in memory (name → table id). */
  private markedTables(): Map<string, number> {
    const marks = new Map<string, number>();
    for (const name of Object.keys(this.catalog.droppingTables ?? {})) {
      const table = tableNamed(this.catalog, name);
      if (table) marks.set(name, table.tableId);
    }
    return marks;
  }

  private notLeaderAnyMore(err: unknown): RegionDbError {
    const leaderAddr = this.group?.leaderAddr();
    return new RegionDbError(
      ErrorCode.Unavailable,
      `this metasrv lost the leadership of the metasrv group while saving the catalog (${(err as Error).message}); the outcome of this request is unknown${leaderAddr ? `; the leader is now at ${leaderAddr}` : ''}`,
      { details: leaderAddr ? { leaderAddr } : {} },
    );
  }

  /** Requests that change the catalog are refused up front while it cannot be written. */
  private refuseIfUnwritable(): void {
    if (this.catalogUnwritable) throw this.unwritableError();
  }

  private unwritableError(): RegionDbError {
    return new RegionDbError(ErrorCode.Unavailable, `the metasrv cannot write its catalog (${this.catalogUnwritable?.message}); it acts again once a write succeeds. The outcome of this request is unknown`);
  }

  /** A catalog write failed: act on nothing until one succeeds (see catalogUnwritable). */
  private stopActing(err: unknown): void {
    if (this.catalogUnwritable) return;
    this.catalogUnwritable = err instanceof Error ? err : new Error(String(err));
    // Instructions queued by steps whose records may not be on disk: procedures re-send them.
    this.pending.clear();
    this.log.error({ err: this.catalogUnwritable.message, dataDir: this.config.node.data_dir }, 'catalog write failed; the metasrv stops acting (no failover, repair, balancing or DDL) until a write succeeds');
  }

  /** Every tick while catalog writes fail: reopen the store and write the catalog. */
  private async tryResume(): Promise<void> {
    if (this.resuming) return;
    this.resuming = true;
    try {
      await this.saving;
      await this.storage!.reopen();
      await this.writeNotingMarks();
      this.log.warn({ failedWith: this.catalogUnwritable?.message }, 'catalog writes work again; the metasrv acts again (liveness judged after fresh heartbeats)');
      this.catalogUnwritable = undefined;
      this.quietUntilMs = this.clock.nowMs() + STARTUP_QUIET_HEARTBEATS * this.config.failure_detector.heartbeat_interval_ms;
    } catch (err) {
      const suppressed = this.rejectionLog.admit('catalog-write', this.clock.nowMs());
      if (suppressed !== undefined) this.log.error({ err: (err as Error).message, suppressed }, 'catalog write still failing');
    } finally {
      this.resuming = false;
    }
  }

  private detector(nodeId: number): PhiAccrualDetector {
    let d = this.detectors.get(nodeId);
    if (!d) {
      const fd = this.config.failure_detector;
      d = new PhiAccrualDetector({
        threshold: fd.phi_threshold,
        windowSize: 100,
        minStdDevMs: fd.min_std_dev_ms,
        acceptablePauseMs: fd.acceptable_pause_ms,
        firstIntervalMs: fd.heartbeat_interval_ms,
      });
      this.detectors.set(nodeId, d);
    }
    return d;
  }

  nodeState(node: NodeDef): string {
    if (node.state === 'draining') return 'draining';
    const d = this.detectors.get(node.nodeId);
    // Registered but no heartbeat yet: what it hosts is unknown, so nothing is placed on it
    // (the id allocators are raised above what it reports first).
    if (!d || !this.observed.has(node.nodeId)) return 'unknown';
    return d.isAvailable(this.clock.nowMs()) ? 'alive' : 'suspect';
  }

  // ─── Failure handling and procedures ──────────────────────────────────────────────────────

  isAlive(nodeId: number): boolean {
    return this.detectors.get(nodeId)?.isAvailable(this.clock.nowMs()) ?? false;
  }

  /** Judged down for `replica_repair_after_ms` or longer (ProcedureContext.downTooLong). */
  private downTooLong(nodeId: number): boolean {
    const since = this.downSinceMs.get(nodeId);
    return since !== undefined && !this.isAlive(nodeId) && this.durationNowMs() - since >= this.config.replica_repair_after_ms;
  }

  private context(): ProcedureContext {
    return {
      catalog: this.catalog,
      clock: this.procedureClock,
      isAlive: (nodeId) => this.isAlive(nodeId),
      downTooLong: (nodeId) => this.downTooLong(nodeId),
      observed: (nodeId, regionId) => (this.isAlive(nodeId) ? this.observed.get(nodeId)?.replicas.get(regionId) : undefined),
      firstReportAwaited: (nodeId) => this.awaitingReport(nodeId),
      removalAwaits: (nodeId) => this.removalAwaits(nodeId),
      leaderOf: (region) => {
        let best: { nodeId: number; replica: ObservedReplica } | undefined;
        for (const p of region.replicas) {
          const seen = this.observed.get(p.nodeId)?.replicas.get(region.regionId);
          // The report first, liveness (a phi computation) only for a leader's: the tick asks this
          // of every region (startLearnerRemovals), about one leader in three replicas.
          if (seen?.role !== 'leader' || seen.peerId !== p.peerId || !this.isAlive(p.nodeId)) continue;
          if (!best || seen.term > best.replica.term) best = { nodeId: p.nodeId, replica: seen };
        }
        return best;
      },
      send: (nodeId, instruction) => {
        // A procedure's open waits as reconciliation's does (openHeld; DT4): the procedure sends it
        // again (its `resend`) until the replica reports.
        const open = 'open_region' in instruction ? instruction.open_region : undefined;
        if (open && this.openHeld(nodeId, { regionId: open.region_id ?? '', peerId: Number(open.self_peer_id ?? 0) })) return;
        this.staged.push([nodeId, instruction, this.registrations.get(nodeId) ?? 0]);
      },
      openInstruction: (region, peerId, bootstrap) => this.openInstruction(region, peerId, bootstrap),
      pickNode: (exclude) => {
        const load = replicaCountByNode(this.catalog);
        return Object.values(this.catalog.nodes)
          .filter((n) => n.state !== 'draining' && this.isAlive(n.nodeId) && this.observed.has(n.nodeId) && !exclude.has(n.nodeId))
          .sort((a, b) => (load.get(a.nodeId) ?? 0) - (load.get(b.nodeId) ?? 0) || a.nodeId - b.nodeId)[0];
      },
      start: (kind, data) => newProcedure(this.context(), kind, data),
      // runningProcedures' overloads are the context's: one cast from the implementation signature.
      running: ((kind?: ProcedureKind) => runningProcedures(this.catalog, kind)) as ProcedureContext['running'],
    };
  }

  /** Starts a procedure unless an equivalent one is running; saves. */
  async startProcedure<K extends ProcedureKind>(kind: K, data: DataOf<K>): Promise<ProcedureRecordOf<K>> {
    const same = runningProcedures(this.catalog, kind).find(
      (p) => JSON.stringify(Object.entries(data).sort()) === JSON.stringify(Object.entries(p.data).filter(([k]) => k in data).sort()),
    );
    if (same) return same;
    const record = newProcedure(this.context(), kind, data);
    this.log.info({ procedure: record.id, data }, 'procedure started');
    await this.save();
    return record;
  }

  private lastTickTimerMs: number | undefined;
  /** Monotonic: when the last stall of this process's own event loop was noticed (a late tick timer); heartbeats queued meanwhile are read after it. */
  private stallEndedAtMs = Number.NEGATIVE_INFINITY;

  /**
   * After this process's own event loop was blocked, the timer phase runs before the heartbeats
   * that queued up meanwhile are read: every node would look silent for as long as we were
   * stalled. So a tick that fires late (by more than the detector's acceptable pause) does not
   * judge anyone; the next one does, after the queued heartbeats have been counted.
   */
  onTickTimer(): void {
    const now = this.clock.nowMs();
    const last = this.lastTickTimerMs;
    this.lastTickTimerMs = now;
    const lateMs = last === undefined ? 0 : now - last - PROCEDURE_TICK_MS;
    if (lateMs > this.config.failure_detector.acceptable_pause_ms) {
      this.stallEndedAtMs = now;
      this.log.warn({ lateMs: Math.round(lateMs) }, "the metasrv's own event loop stalled; liveness is judged again on the next tick, after the heartbeats that queued meanwhile");
      return;
    }
    if (!this.acting) return;
    this.relistTableIds();
    if (this.catalogUnwritable) void this.tryResume();
    else void this.tick();
  }

  /** The tick's time for durations (how long a node has been down, the balance interval): the monotonic clock (finding M7). */
  protected durationNowMs(): number {
    return this.clock.nowMs();
  }

  /** Detects failures, starts the procedures they call for, advances running procedures. */
  private async tick(): Promise<void> {
    if (this.ticking || this.startupQuietMs() > 0) return;
    this.ticking = true;
    try {
      const now = this.durationNowMs(); // durations (down since, balance interval): monotonic
      const ctx = this.context();
      let changed = false;
      for (const node of Object.values(this.catalog.nodes)) {
        const id = node.nodeId;
        if (this.isAlive(id)) {
          this.wasAlive.add(id);
          this.downSinceMs.delete(id);
          continue;
        }
        // Down (or never heard from since this metasrv started: counted from our start).
        if (!this.downSinceMs.has(id)) {
          this.downSinceMs.set(id, this.wasAlive.has(id) ? now : this.actingSinceMs);
          if (this.wasAlive.has(id) && this.hostsReplicas(id)) {
            const last = this.detectors.get(id)?.lastHeartbeat();
            const silentMs = last === undefined ? undefined : Math.round(this.clock.nowMs() - last);
            this.log.warn({ nodeId: id, silentMs }, 'datanode suspected failed; checking its regions have live leaders');
            newProcedure(ctx, 'region-failover', { nodeId: id });
            changed = true;
          }
        }
        if (now - this.downSinceMs.get(id)! >= this.config.replica_repair_after_ms) changed = this.startRepairs(ctx, id) || changed;
      }
      changed = this.startLostRepairs(ctx) || changed;
      changed = this.startLearnerRemovals(ctx) || changed;
      changed = this.resumeDrains(ctx) || changed;
      const interval = this.config.balance_leaders_interval_ms;
      if (interval > 0 && now - this.lastBalanceCheckMs >= interval) {
        this.lastBalanceCheckMs = now;
        const busy = ctx.running().length > 0 || this.downSinceMs.size > 0;
        const data = this.balanceData();
        if (!busy && leadersOffPlacement(ctx, data)) {
          newProcedure(ctx, 'balance-leaders', data);
          changed = true;
        }
      }
      changed = this.runProcedurePass(ctx) || changed;
      this.resumeDrops();
      // Staged instructions go out only after a save (see `staged`), even if no record changed.
      if (changed || this.staged.length > 0) await this.save();
      this.maybeBackupCatalog();
    } catch (err) {
      this.log.error({ err }, 'metasrv tick failed');
    } finally {
      this.ticking = false;
    }
  }

  /** A copy of the (saved) catalog in the object store, at most every catalog_backup_interval_ms, when it changed. */
  private maybeBackupCatalog(): void {
    const interval = this.config.catalog_backup_interval_ms;
    const store = this.objectStore;
    if (!store || interval === 0 || this.backup.running || this.catalogUnwritable) return;
    const now = this.clock.nowMs();
    if (this.backup.lastMs !== 0 && now - this.backup.lastMs < interval) return;
    this.backup.lastMs = now;
    this.backup.running = true;
    backupCatalog(store, this.catalog, this.procedureClock.nowMs(), this.backup.written)
      .then((key) => key && this.log.debug({ key }, 'catalog copied to the object store'))
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'copying the catalog to the object store failed; next try after the interval'))
      .finally(() => {
        this.backup.running = false;
      });
  }

  /** How long the startup quiet period still lasts (STARTUP_QUIET_HEARTBEATS). */
  private startupQuietMs(): number {
    const now = this.clock.nowMs();
    return Math.max(0, this.actingSinceMs + STARTUP_QUIET_HEARTBEATS * this.config.failure_detector.heartbeat_interval_ms - now, this.quietUntilMs - now);
  }

  private hostsReplicas(nodeId: number): boolean {
    return regionList(this.catalog).some((r) => r.replicas.some((p) => p.nodeId === nodeId));
  }

  /**
   * A node down for replica_repair_after_ms: re-create each of its replicas elsewhere. Not one the
   * group already removed (the catalog is behind): reconciliation's R2 drops it once no procedure
   * holds the region, and a repair started now would only end in `allocate` (drain-node's rule).
   */
  private startRepairs(ctx: ProcedureContext, nodeId: number): boolean {
    const busy = new Set(ctx.running('repair-replica').map((p) => p.data.regionId));
    let started = false;
    for (const region of regionList(this.catalog)) {
      const old = region.replicas.find((p) => p.nodeId === nodeId);
      if (!old || busy.has(region.regionId) || removedByGroup(ctx, region, old.peerId)) continue;
      if (!ctx.pickNode(repairExclusions(ctx, region))) continue; // nowhere to put it yet (repair-replica allocate's rule)
      this.log.warn({ nodeId, regionId: region.regionId }, 'datanode down too long; re-creating its replica elsewhere');
      newProcedure(ctx, 'repair-replica', { regionId: region.regionId, oldPeerId: old.peerId, oldNodeId: nodeId });
      started = true;
    }
    return started;
  }

  /**
   * A node marked draining that the catalog still places a replica on, with no drain-node running
   * for it, has a drain that would never end: nothing else moves a replica off a live node, and
   * no new replica goes to it. A catalog restored from a copy taken after the drain (finding Q1:
   * the node took replicas again under the older catalog in between, or reconciliation followed a
   * group onto it) holds just that. The operator's drain is kept and resumed — a new drain-node
   * for the node, in status like any other — rather than dropped. Not for a peer the group
   * already removed: reconciliation's R2 drops it (drain-node's own rule).
   */
  protected resumeDrains(ctx: ProcedureContext): boolean {
    const draining = new Set(ctx.running('drain-node').map((p) => p.data.nodeId));
    let started = false;
    for (const node of Object.values(this.catalog.nodes)) {
      if (node.state !== 'draining' || draining.has(node.nodeId)) continue;
      const placed = regionList(this.catalog).filter((r) => r.replicas.some((p) => p.nodeId === node.nodeId && !removedByGroup(ctx, r, p.peerId)));
      if (placed.length === 0) continue;
      this.log.warn(
        { nodeId: node.nodeId, regions: placed.map((r) => r.regionId) },
        'datanode is draining but hosts replicas and no drain runs (a restored catalog?); draining it again',
      );
      newProcedure(ctx, 'drain-node', { nodeId: node.nodeId });
      started = true;
    }
    return started;
  }

  /**
   * Replicas marked lost (a new store on their node, or a failed replica): each is replaced
   * under a fresh peer id, on its own node if no other can take it (reconcile.ts R4). Not one the
   * group already removed: as in `startRepairs`, R2 drops it from the catalog.
   */
  private startLostRepairs(ctx: ProcedureContext): boolean {
    const busy = new Set(ctx.running('repair-replica').map((p) => p.data.regionId));
    let started = false;
    for (const region of regionList(this.catalog)) {
      const lost = region.replicas.find((p) => p.lost !== undefined && !removedByGroup(ctx, region, p.peerId));
      if (!lost || busy.has(region.regionId)) continue;
      this.log.warn({ nodeId: lost.nodeId, regionId: region.regionId, peerId: lost.peerId, reason: lost.lost }, 'replica lost; replacing it under a fresh peer id');
      newProcedure(ctx, 'repair-replica', { regionId: region.regionId, oldPeerId: lost.peerId, oldNodeId: lost.nodeId, reason: lost.lost, inPlace: true });
      started = true;
    }
    return started;
  }

  /**
   * A learner the region's leader counts while no repair-replica holds the region (only a repair
   * adds learners): the new peer of a repair whose record was lost with a catalog restored from an
   * older copy, or of one that failed after its add-learner. Nothing would promote or remove it:
   * the group keeps a learner for good and the catalog (R2 adopts it) places one replica too
   * many. A repair-replica of it removes it when the group has its voters (allocate), or
   * replaces it as any lost replica otherwise. Only once the catalog places it (R2 first).
   */
  private startLearnerRemovals(ctx: ProcedureContext): boolean {
    const busy = new Set(ctx.running('repair-replica').map((p) => p.data.regionId));
    let started = false;
    for (const region of regionList(this.catalog)) {
      if (busy.has(region.regionId)) continue;
      const leader = ctx.leaderOf(region);
      // The threshold allocate removes a learner at (it has no view of the configured factor).
      if (!leader || leader.replica.voters.length < Math.max(this.replicationFactor, REPLICATION_FACTOR)) continue;
      const learner = region.replicas.find((p) => leader.replica.learners.includes(p.peerId));
      if (!learner) continue;
      this.log.warn({ nodeId: learner.nodeId, regionId: region.regionId, peerId: learner.peerId }, 'a learner no repair adds (its procedure lost?); removing it');
      newProcedure(ctx, 'repair-replica', { regionId: region.regionId, oldPeerId: learner.peerId, oldNodeId: learner.nodeId, reason: `peer ${learner.peerId} is a learner no repair adds`, learner: true });
      started = true;
    }
    return started;
  }

  /**
   * Compares a node's store id with the one recorded (common/store-id.ts). A different store
   * created on an empty data dir is a new incarnation: every replica the catalog places on the
   * node is lost (never reopened under its old peer id; repaired). An adopted id (a data dir
   * from before store ids, data present) is the same incarnation. Returns true if it changed.
   */
  protected noteStore(node: NodeDef, storeId: string, known: boolean): boolean {
    if (storeId === '' || node.storeId === storeId) return false;
    const previous = node.storeId;
    node.storeId = storeId;
    // The recorded start was the old store's: a new store's starts count from its own first one
    // (kept, it refused the new store's next registration as a copy: found by the simulator,
    // a catalog restored from a copy taken after a wipe, then a heartbeat of the new store).
    delete node.startCount;
    delete node.startId;
    if (!known || !isFreshStoreId(storeId)) {
      if (known) this.log.warn({ nodeId: node.nodeId, storeId, previous }, 'datanode data dir predates store ids; adopted its store id (same incarnation)');
      return true;
    }
    const reason = `new store ${storeId}${previous ? ` (was ${previous})` : ''}: node ${node.nodeId} came back without its data`;
    let lost = 0;
    for (const region of regionList(this.catalog)) {
      for (const p of region.replicas) {
        if (p.nodeId === node.nodeId && p.lost === undefined) {
          p.lost = reason;
          lost++;
        }
      }
    }
    this.log.warn({ nodeId: node.nodeId, storeId, previous, replicasLost: lost }, 'datanode is a new incarnation (empty data dir); its replicas will be replaced under fresh peer ids');
    return true;
  }

  /**
   * reconcile.ts `AwaitingReport`: no report from the node since this process began acting (a
   * start, a takeover: `forgetVolatileState` clears the view) or since it registered, and not
   * judged down yet — its detector takes it for alive (registered, not beaten yet), or it was never
   * heard from and the startup pause, during which the tick judges no one, has not ended. After
   * that pause a node never heard from is down (the tick counts its down time from our start).
   */
  private awaitingReport(nodeId: number): boolean {
    if (this.observed.has(nodeId)) return false;
    return this.isAlive(nodeId) || (!this.detectors.has(nodeId) && this.startupQuietMs() > 0);
  }

  /**
   * reconcile.ts `AwaitingReport` as the removal hold (R16) reads it: a voter no live report shows
   * holds a removed replica's deletion while its node's report is awaited (`awaitingReport`) or
   * while the node is judged down but not yet for `replica_repair_after_ms` (`downTooLong`; a node
   * judged down whose down time the tick has not started counting holds too). Judged down is the
   * failure detector's view of the node's heartbeats, not of its raft replicas: one heartbeat lost
   * or late past the detector's pause and a live voter, still counting the removed peer, is "down"
   * (register seed 6987: n4's heartbeat lost, peer 1 deleted 530 ms after n4's last beat, and n4,
   * whose log held the removal uncommitted, needed peer 1's vote once the leader crashed: no leader
   * until that leader came back). A voter that is really down needs the vote when it returns. The
   * hold costs only the removed replica's space on its node; a node down that long has its
   * replicas replaced, which takes its voters out of the group.
   */
  private removalAwaits(nodeId: number): boolean {
    if (this.awaitingReport(nodeId)) return true;
    if (this.isAlive(nodeId) || this.catalog.nodes[nodeId] === undefined) return false;
    return !this.downTooLong(nodeId);
  }

  /** What live datanodes hold closed (reconcile.ts R8), from their last reports. */
  private liveHeld(): HeldReports {
    const out = new Map<number, ReadonlyMap<string, number>>();
    for (const [nodeId, report] of this.observed) if (report.held.size > 0 && this.isAlive(nodeId)) out.set(nodeId, report.held);
    return out;
  }

  /** Live datanodes' last reports (what reconciliation may trust). */
  private liveReports(): Reports {
    const out = new Map<number, ReadonlyMap<string, ObservedReplica>>();
    for (const [nodeId, report] of this.observed) if (this.isAlive(nodeId)) out.set(nodeId, report.replicas);
    return out;
  }

  /**
   * Heartbeat reconciliation (reconcile.ts): ids above everything reported, the catalog
   * following newer groups, then what this node must open or delete. Returns the instructions
   * and whether the catalog changed.
   */
  private reconcile(nodeId: number): { instructions: Instruction[]; changed: boolean } {
    const reports = this.liveReports();
    let changed = false;
    const held = this.liveHeld();
    const reported = this.idFloorsOf(reports);
    const heldFloors = heldIdFloors(held);
    const floors = { nextPeerId: Math.max(reported.nextPeerId, heldFloors.nextPeerId), nextTableId: Math.max(reported.nextTableId, heldFloors.nextTableId) };
    if (floors.nextPeerId > this.catalog.nextPeerId || floors.nextTableId > this.catalog.nextTableId) {
      this.log.warn({ ...floors, was: { nextPeerId: this.catalog.nextPeerId, nextTableId: this.catalog.nextTableId } }, 'id allocators behind ids in use (catalog lost or restored?); raised');
      this.catalog.nextPeerId = Math.max(this.catalog.nextPeerId, floors.nextPeerId);
      this.catalog.nextTableId = Math.max(this.catalog.nextTableId, floors.nextTableId);
      changed = true;
    }
    const busy = new Set(
      runningProcedures(this.catalog)
        .map((p) => ('regionId' in p.data ? p.data.regionId : undefined))
        .filter((r) => r !== undefined),
    );
    for (const regionId of this.recovering) busy.add(regionId);
    const result = this.reconcileWithGroups(reports, busy);
    for (const m of result.matched) this.catalog.regions[m.regionId]!.confIndex = m.confIndex;
    for (const a of result.adopt) {
      const region = this.catalog.regions[a.regionId]!;
      this.log.warn({ regionId: a.regionId, from: region.replicas, to: a.replicas }, a.note);
      region.replicas = a.replicas;
      region.confIndex = a.confIndex;
      region.confVersion++;
    }
    if (result.matched.length + result.adopt.length > 0) {
      this.catalog.version++;
      changed = true;
    }
    this.problems = result.problems;
    removedReplicaProblems(this.catalog, reports, (n) => this.removalAwaits(n), this.problems);
    heldReplicaProblems(this.catalog, reports, held, (n) => this.removalAwaits(n), this.problems);
    const instructions: Instruction[] = [];
    for (const action of this.nodeActionsOf(nodeId, reports)) {
      // A region being recovered gets its opens from the recovery (and its old replicas are
      // replaced by them): nothing from a heartbeat meanwhile.
      if (this.recovering.has('open' in action ? action.open.regionId : 'skip' in action ? action.skip.regionId : action.destroy.regionId)) continue;
      if ('open' in action) {
        if (this.placementOpenHeld(nodeId, action.open, reports)) continue;
        instructions.push({ open_region: this.openOf(action.open) });
      } else if ('skip' in action) {
        // R5: the placement is left as it is (R2 adopts the group's membership once its conf
        // index passes the catalog's; until then the region is a status problem).
        this.logSkippedOpen(nodeId, action.skip);
      } else {
        this.log.info({ nodeId, ...action.destroy }, 'deleting a replica the group no longer has');
        instructions.push({ close_region: { region_id: action.destroy.regionId, destroy: true, peer_id: String(action.destroy.peerId) } });
      }
    }
    return { instructions, changed };
  }

  /** The view of a datanode's replicas this process holds (report-view.ts), if any: the simulator's `report view` checker reads it. */
  reportOf(nodeId: number): NodeReport | undefined {
    return this.observed.get(nodeId);
  }

  /**
   * What a heartbeat's report makes of the node's view (report-view.ts). Protected for the
   * simulator's planted bug (test/sim/sim-metasrv-bugs.ts); nothing in src/ overrides it.
   */
  protected useReportOf(current: NodeReport | undefined, req: HeartbeatRequest__Output): ReportUse {
    return useReport(current, req);
  }

  // Reconciliation's three decisions (reconcile.ts), protected like noteStore for the simulator's
  // planted bugs (test/sim/sim-catloss-bugs.ts); nothing in src/ overrides them.

  /** The id allocators' floors from what the live datanodes report. */
  protected idFloorsOf(reports: Reports): { nextPeerId: number; nextTableId: number } {
    return idFloors(reports, this.reportFloors);
  }

  /** R2/R3: the catalog against the groups' reported membership. */
  protected reconcileWithGroups(reports: Reports, busy: ReadonlySet<string>): CatalogReconciliation {
    return reconcileCatalog(this.catalog, reports, busy, (n) => this.downTooLong(n), this.liveHeld());
  }

  /** R1/R4: what `nodeId` must open and destroy. */
  /** The open_region of a placement reconciliation opens. */
  private openOf(open: { readonly regionId: string; readonly peerId: number }): OpenRegionRequest {
    const region = this.catalog.regions[open.regionId]!;
    if (region.bootstrapped) return this.openInstruction(region, open.peerId, false);
    // An open of a region not seen reported bootstraps it with the placements as its initial
    // voters. A running repair's new peer is none of them: since M35 `allocate` places no new peer
    // before the region is bootstrapped, but a catalog saved by an earlier build may hold one
    // (M35's left item (b)). Bootstrapped among the voters, it would start a configuration the
    // group never had; it joins empty instead (add-learner adds it), and the others bootstrap
    // without it.
    const newPeers = new Set(
      runningProcedures(this.catalog, 'repair-replica')
        .filter((p) => p.data.regionId === region.regionId && p.data.newPeerId !== undefined)
        .map((p) => p.data.newPeerId!),
    );
    if (newPeers.size === 0) return this.openInstruction(region, open.peerId, true);
    if (newPeers.has(open.peerId)) return this.openInstruction(region, open.peerId, false);
    return this.openInstruction({ ...region, replicas: region.replicas.filter((p) => !newPeers.has(p.peerId)) }, open.peerId, true);
  }

  /**
   * Whether the open of a placement waits, logged once per interval per region. With `[storage]`:
   * (a) no replica is opened before this acting epoch's listing has read the drop records
   * (docs/ddl.md, "A catalog older than the drop") — the catalog may be a copy from before its
   * table's drop: a bootstrap (a region the catalog has not seen reported) would start a new,
   * empty raft group under the dropped region's ids that acknowledges writes, and a join gives an
   * empty voter whose vote can elect a replica that missed the drop's fence (DT4); the tick lists
   * again (`relistTableIds`) while it has not succeeded. A datanode's own replicas reopen from its
   * log without the metasrv's open. (b) No replica at all of a table whose drop record the listing
   * found but could not read (`unreadableDropRecords`): the table may have been dropped.
   */
  private openHeld(nodeId: number, open: { readonly regionId: string; readonly peerId: number }): boolean {
    if (!this.config.storage) return false;
    const unreadable = this.unreadableRecordOf(open.regionId);
    if (unreadable) {
      const suppressed = this.rejectionLog.admit(`open-held-record:${open.regionId}`, this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ nodeId, ...open, record: unreadable.key, why: unreadable.why, suppressed }, 'not opening a replica of a table whose drop record cannot be read');
      return true;
    }
    if (this.tableIdsListedAt === this.epoch) return false;
    const suppressed = this.rejectionLog.admit(`open-held-listing:${open.regionId}`, this.clock.nowMs());
    if (suppressed !== undefined) {
      this.log.warn({ nodeId, ...open, suppressed }, 'not opening a replica before the drop records in the object store are read (its table may have been dropped after this catalog was saved)');
    }
    return true;
  }

  /** Whether reconciliation's open of a placement (a heartbeat's, a registration's) waits: `openHeld`, then R6 (`bootstrapHeld`), then R7 (`unjudgedOpenHeld`). */
  private placementOpenHeld(nodeId: number, open: { readonly regionId: string; readonly peerId: number }, reports: Reports): boolean {
    return this.openHeld(nodeId, open) || this.bootstrapHeld(nodeId, open) || this.unjudgedOpenHeld(nodeId, open, reports);
  }

  /** The other nodes the catalog knows that have not reported since this process began acting or since they registered, and are not judged down. */
  private othersAwaitingReport(nodeId: number): number[] {
    return Object.values(this.catalog.nodes)
      .map((n) => n.nodeId)
      .filter((n) => n !== nodeId && this.awaitingReport(n));
  }

  /**
   * R7: whether the open of a placement that no live replica of its region can judge yet (R5 needs a
   * report of the region: none, or none yet that shows its group went past the peer) waits for the
   * other nodes' first reports. After a start or a takeover the view of reports is empty and fills
   * one heartbeat at a time; a node registering first was told to open every placement of a catalog
   * restored from an older copy — a peer its group had removed since (and GC had deleted the SSTs
   * its own log still needs: it failed replaying it), or one never added — before the node hosting
   * the region's leader had beaten (engine seed 4112). So, while no report of the region names a
   * leader, no open until every other node the catalog knows has reported, or is judged down; then R5
   * judges on whatever they report. A heartbeat or two on a cold start of the whole cluster. Only for
   * a region the catalog held when this process began acting (one created since is this process's
   * own, its placements no older than its group) and has seen reported applied: an open of one not
   * bootstrapped yet would bootstrap it, and R6 (`bootstrapHeld`) decides that.
   */
  private unjudgedOpenHeld(nodeId: number, open: { readonly regionId: string; readonly peerId: number }, reports: Reports): boolean {
    if (this.startupQuietMs() === 0 || !this.regionsAtStart.has(open.regionId) || !this.catalog.regions[open.regionId]?.bootstrapped) return false;
    if (groupOf(open.regionId, reports) !== undefined) return false;
    const waitingFor = this.othersAwaitingReport(nodeId);
    if (waitingFor.length === 0) return false;
    // Logged once per interval per node, not per placement: a cold start of a node placing
    // thousands of regions holds every one of them for a heartbeat or two.
    const suppressed = this.rejectionLog.admit(`open-held-unjudged:${nodeId}`, this.clock.nowMs());
    if (suppressed !== undefined) this.log.info({ nodeId, ...open, waitingFor, suppressed }, 'not opening replicas of regions no leader has reported yet before every live node has reported (this one, and any other such of the node)');
    return true;
  }

  /**
   * R6: whether a placement's open that would bootstrap the region (the catalog has not seen it
   * reported applied: `bootstrapped` false) waits for the other nodes' reports. Such a catalog may
   * be a copy saved before the region's first report, restored after its group moved on: a node
   * that lost its replica (removed from the group and deleted; a wiped disk's are marked lost and
   * not opened at all) would start the region afresh, and two of them a new, empty group under the
   * region's ids that can elect and acknowledge writes beside the real one (finding M32). The
   * reports of the nodes that host the real group flip `bootstrapped` (heartbeat) and name the
   * group R5 judges the open against; so no bootstrap until every other node the catalog knows has
   * reported since this process began acting, or is judged down.
   * Only for a region the catalog held unbootstrapped when this process began acting and a node
   * it knew then (it may have been told to bootstrap the region before and lost it since): a table
   * created by this process opens its replicas itself, and a node first registered now was never
   * placed anything by the catalog's author.
   */
  private bootstrapHeld(nodeId: number, open: { readonly regionId: string; readonly peerId: number }): boolean {
    const region = this.catalog.regions[open.regionId];
    if (!region || region.bootstrapped) return false;
    if (!this.unbootstrappedAtStart.has(open.regionId) || !this.nodesAtStart.has(nodeId)) return false;
    const waitingFor = this.othersAwaitingReport(nodeId);
    if (waitingFor.length === 0) return false;
    const suppressed = this.rejectionLog.admit(`open-held-bootstrap:${open.regionId}`, this.clock.nowMs());
    if (suppressed !== undefined) this.log.warn({ nodeId, ...open, waitingFor, suppressed }, 'not bootstrapping a region before every live node has reported (its group may live on elsewhere)');
    return true;
  }

  /** R5's skipped open, logged once per interval per placement: it comes back on every heartbeat of the node. */
  private logSkippedOpen(nodeId: number, skip: { readonly regionId: string; readonly peerId: number; readonly why: string }): void {
    const suppressed = this.rejectionLog.admit(`open-skipped:${skip.regionId}:${skip.peerId}`, this.clock.nowMs());
    if (suppressed !== undefined) this.log.warn({ nodeId, ...skip, suppressed }, 'not opening a replica the catalog places: its group went on past it');
  }

  protected nodeActionsOf(nodeId: number, reports: Reports): NodeAction[] {
    return nodeActions(this.catalog, nodeId, reports, (n) => this.removalAwaits(n), this.liveHeld());
  }

  // ─── Routes ─────────────────────────────────────────────────────────────────────────────────

  private route(region: RegionDef): RegionRoute {
    return {
      region_id: region.regionId,
      table: region.tableName,
      region_number: region.regionNumber,
      peers: region.replicas.map((r) => ({ peer_id: String(r.peerId), node_id: String(r.nodeId), addr: this.catalog.nodes[r.nodeId]?.addr ?? '' })),
      leader_node_id: String(region.leaderNodeId),
      conf_version: String(region.confVersion),
    };
  }

  private regionInfo(region: RegionDef, ctx: ProcedureContext): RegionInfo {
    const leader = ctx.leaderOf(region);
    const applied = region.replicas.map((p) => this.observed.get(p.nodeId)?.replicas.get(region.regionId)?.appliedIndex ?? 0);
    const live = region.replicas.filter((p) => !p.lost && this.isAlive(p.nodeId) && this.observed.get(p.nodeId)?.replicas.get(region.regionId)?.peerId === p.peerId).length;
    const problems = [...(this.problems.get(region.regionId) ?? []), ...region.replicas.filter((p) => p.lost).map((p) => `peer ${p.peerId} on node ${p.nodeId} lost: ${p.lost}`)];
    const unreadable = this.unreadableRecordOf(region.regionId);
    if (unreadable) problems.push(`the drop record ${unreadable.key} of table ${unreadable.table} cannot be read (${unreadable.why}): no replica is opened and the table is not recovered until it can; drop the table to finish what the record says, or delete the object only if the table was never dropped`);
    return {
      route: this.route(region),
      term: String(leader?.replica.term ?? 0),
      applied_index: applied.map(String),
      flushed_index: String(leader?.replica.flushedIndex ?? 0),
      health: !leader ? 'leaderless' : live < this.replicationFactor || region.replicas.length !== this.replicationFactor ? 'under-replicated' : 'healthy',
      problems,
    };
  }

  /** Regions the datanodes host that the catalog does not know (left alone; reconcile.ts R1). */
  private unknownRegionInfos(): RegionInfo[] {
    const out: RegionInfo[] = [];
    for (const [regionId, problems] of this.problems) {
      if (regionWithId(this.catalog, regionId)) continue;
      const peers: { peer_id: string; node_id: string; addr: string }[] = [];
      for (const [nodeId, replicas] of this.liveReports()) {
        const r = replicas.get(regionId);
        if (r) peers.push({ peer_id: String(r.peerId), node_id: String(nodeId), addr: this.catalog.nodes[nodeId]?.addr ?? '' });
      }
      out.push({
        route: { region_id: regionId, table: '(not in catalog)', region_number: Number(BigInt(regionId) & 0xffffffffn), peers, leader_node_id: '0', conf_version: '0' },
        term: '0',
        applied_index: [],
        flushed_index: '0',
        health: 'unknown',
        problems,
      });
    }
    return out;
  }

  private schemaOf(tableName: string): TableSchema {
    const t = tableNamed(this.catalog, tableName);
    if (!t) throw new RegionDbError(ErrorCode.NotFound, `table ${tableName} does not exist`);
    return { name: t.name, tableId: t.tableId, columns: t.columns, regionCount: t.regionCount };
  }

  private openInstruction(region: RegionDef, peerId: number, bootstrap: boolean): OpenRegionRequest {
    return {
      metasrv_epoch: String(this.epoch),
      region_id: region.regionId,
      table: toProtoSchema(this.schemaOf(region.tableName)),
      peers: this.route(region).peers,
      self_peer_id: String(peerId),
      bootstrap,
    };
  }

  // ─── DDL ────────────────────────────────────────────────────────────────────────────────────

  async createTable(req: MetaCreateTableRequest__Output): Promise<MetaCreateTableResponse> {
    this.requireActing();
    this.refuseIfUnwritable();
    const name = str(req.name, 'name', limits.tableNameBytesMax);
    const columns = fromProtoColumns(req.columns);
    const regionCount = Number(req.region_count || 1);
    validateSchema({ name, columns, regionCount });
    const token = str(req.request_token ?? '', 'request_token', 128);
    // The catalog may be a copy older than a drop (docs/ddl.md, "A catalog older than the drop"):
    // its tables and marks are judged only once this acting epoch's listing has read the drop
    // records (UNAVAILABLE until then), never answered ALREADY_EXISTS from a stale copy.
    if (this.config.storage && this.tableIdsListedAt !== this.epoch) await this.tableIdsListed();
    const created = this.settledBeforeCreate(name, token);
    if (created) return created;
    const quietMs = this.startupQuietMs();
    if (quietMs > 0 && this.group) await this.waitForReports(quietMs);
    else if (quietMs > 0) await new Promise<void>((ok) => this.clock.setTimeout(ok, quietMs)); // not a synchronization: the start's id grace
    await this.tableIdsListed();
    // Placement needs live datanodes; count only those heard from recently.
    for (const node of Object.values(this.catalog.nodes)) {
      node.state = this.nodeState(node) === 'alive' ? 'alive' : node.state === 'draining' ? 'draining' : 'suspect';
    }
    // Checked again: a drop may have started, or an earlier attempt of this call (its caller timed
    // out and retried while it still ran here) may have created the table, during the waits above
    // — the retry's answer is that table, not ALREADY_EXISTS (simulator, wide mix, engine seed 3454).
    const createdMeanwhile = this.settledBeforeCreate(name, token);
    if (createdMeanwhile) return createdMeanwhile;
    refuseExistingTable(this.catalog, name); // before a table id is reserved for nothing
    const reserved = await this.reserveTableId(name);
    if (reserved !== undefined) {
      // And again after the reservation's await (the id is then skipped, never handed out twice).
      const createdWhileReserving = this.settledBeforeCreate(name, token);
      if (createdWhileReserving) return createdWhileReserving;
    }
    const { table, regions } = addTable(this.catalog, { name, columns, regionCount }, this.replicationFactor, reserved);
    if (token !== '') (this.catalog.createTokens ??= ownMap())[name] = token;
    await this.save();
    // Open the replicas now (the heartbeat reconciliation would also do it, within a beat).
    await Promise.all(
      regions.flatMap((region) =>
        region.replicas.map(async (replica) => {
          const node = this.catalog.nodes[replica.nodeId]!;
          try {
            await this.admin.openRegion(node.addr, this.openInstruction(region, replica.peerId, true), 5000);
          } catch (err) {
            this.log.warn({ err: (err as Error).message, regionId: region.regionId, nodeId: node.nodeId }, 'open region failed; heartbeat will retry');
          }
        }),
      ),
    );
    this.log.info({ table: name, tableId: table.tableId, regions: regions.length }, 'created table');
    return { table: toProtoSchema(this.schemaOf(name)), routes: regions.map((r) => this.route(r)) };
  }

  /**
   * What decides a CreateTable of `name` before a table is added, checked again after each await:
   * a table being dropped is going away (the metasrv finishes the drop on its own), so it is not
   * handed back even to the CreateTable that created it — ALREADY_EXISTS (a resumed br restore
   * would otherwise restore into it and report it done); otherwise the answer to a retry of a
   * CreateTable that created it (`createdByToken`), if this is one.
   */
  private settledBeforeCreate(name: string, token: string): Promise<MetaCreateTableResponse> | undefined {
    if (droppingSince(this.catalog, name) !== undefined) {
      throw new RegionDbError(ErrorCode.AlreadyExists, `table ${name} is being dropped (its DropTable has not completed); create it again once DropTable answers`);
    }
    return this.createdByToken(name, token);
  }

  /**
   * With `[storage]`: takes the next table id from the allocator and reserves it in the object
   * store (table-id-object.ts) before anything of the table is saved or opened, so that a start
   * from a lost or older catalog raises its allocator above it even if the table never flushed
   * (finding M34). Fails the CreateTable (the id is skipped) when placement is impossible now or
   * the put fails. Undefined without `[storage]`: the id is taken by `addTable` as before.
   */
  private async reserveTableId(name: string): Promise<number | undefined> {
    if (!this.config.storage || !this.objectStore) return undefined;
    pickNodes(this.catalog, this.replicationFactor, new Set(), new Map()); // only its check: enough healthy datanodes to place a region
    const epoch = this.epoch;
    const tableId = this.catalog.nextTableId++;
    try {
      await writeTableIdObject(this.objectStore, this.config.cluster_id, tableId, name);
    } catch (err) {
      throw new RegionDbError(ErrorCode.Unavailable, `cannot reserve table id ${tableId} in the object store (${(err as Error).message}); the table was not created`);
    }
    this.requireActing();
    this.refuseIfUnwritable();
    if (this.epoch !== epoch) throw new RegionDbError(ErrorCode.Unavailable, 'this metasrv acts at another epoch since the table id was reserved; the table was not created');
    // A catalog reloaded meanwhile (a resume after a failed write) may hold an older allocator.
    if (this.catalog.nextTableId <= tableId) this.catalog.nextTableId = tableId + 1;
    return tableId;
  }

  /**
   * The answer to a retry of a CreateTable that did create the table (its first answer was lost),
   * if this is one; undefined otherwise, decided at once (no await). The creating attempt may
   * still be saving the table: the answer waits for the saves queued so far, which include it, and
   * is given only if they succeeded — never a table that is not durable yet.
   */
  private createdByToken(name: string, token: string): Promise<MetaCreateTableResponse> | undefined {
    if (token === '' || !tableNamed(this.catalog, name) || this.catalog.createTokens?.[name] !== token) return undefined;
    const answer: MetaCreateTableResponse = { table: toProtoSchema(this.schemaOf(name)), routes: regionsOfTable(this.catalog, name).map((r) => this.route(r)) };
    return this.saving.then(() => {
      // A failed save leaves the metasrv unwritable, or no longer acting: the outcome is unknown.
      this.requireActing();
      this.refuseIfUnwritable();
      return answer;
    });
  }

  /**
   * A group leader that just took over places replicas only on datanodes that reported to it: it
   * waits (at most `maxMs`, the quiet period) until enough have, instead of the whole quiet
   * period — its catalog is the committed one, so its peer id allocator is already above every id in
   * use (a single metasrv's catalog may be an older copy: it waits the whole period). Table ids
   * wait for the object store's listing in both (`tableIdsListed`): a group seeded from a copy
   * (`meta seed`) is behind the store too.
   */
  private async waitForReports(maxMs: number): Promise<void> {
    const until = this.clock.nowMs() + maxMs;
    const reported = () => Object.values(this.catalog.nodes).filter((n) => n.state !== 'draining' && this.nodeState(n) === 'alive').length;
    while (this.acting && reported() < this.replicationFactor && this.clock.nowMs() < until) {
      await new Promise<void>((ok) => this.clock.setTimeout(ok, 50));
    }
  }

  /**
   * Records a promotion of this (standby) cluster (docs/replication.md, "The promotion record"):
   * durable — saved, or committed on the group's quorum — before the answer, and monotonic: a
   * lower epoch than the one held, or the same epoch with another cut, is refused. The same
   * (epoch, cut) again is written again and answered (a retry after an unknown outcome).
   */
  async recordStandbyPromotion(epoch: number, cutMs: number): Promise<GetStandbyPromotionResponse> {
    this.requireActing();
    this.refuseIfUnwritable();
    if (!Number.isSafeInteger(epoch) || epoch < 1 || epoch > PROMOTION_NUMBER_MAX) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `epoch must be from 1 to ${PROMOTION_NUMBER_MAX} (the record's object key has 15 digits), not ${epoch}`);
    }
    if (!Number.isSafeInteger(cutMs) || cutMs < 0 || cutMs > PROMOTION_NUMBER_MAX) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `cut_ms must be from 0 to ${PROMOTION_NUMBER_MAX} (the record's object key has 15 digits), not ${cutMs}`);
    }
    await this.requirePromotionObjectsRead();
    const refuseUnlessAbove = () => {
      const held = this.catalog.standbyPromotion;
      if (held && (epoch < held.epoch || (epoch === held.epoch && cutMs !== held.cutMs))) {
        throw new RegionDbError(ErrorCode.ConditionFailed, `a promotion at epoch ${held.epoch} (cut ${held.cutMs}) is recorded; one at epoch ${epoch} with cut ${cutMs} is refused (epochs only grow)`);
      }
    };
    const record = async () => {
      this.requireActing();
      this.refuseIfUnwritable();
      // The gate passed in an earlier acting epoch of this process (a takeover since) is not this
      // epoch's: its read may not have ended, and the put must not precede it (D12).
      if (this.config.storage && this.promotionStore.readAtEpoch !== this.epoch) {
        throw new RegionDbError(ErrorCode.Unavailable, 'the metasrv took over again and has not yet read the standby promotion record from the object store; retry');
      }
      refuseUnlessAbove();
      const actingEpoch = this.epoch;
      let putStarted = false;
      try {
        // The object first, then the catalog (D11): every record a node can read from the catalog
        // is already in the store, so a catalog lost or restored later gets it back. A retry puts it
        // again (same key, same bytes).
        if (this.objectStore && this.config.storage) {
          putStarted = true;
          await writePromotionObject(this.objectStore, this.config.cluster_id, { epoch, cutMs });
        }
        this.requireActing(); // a deposed leader commits nothing (its object is one a new leader may take up)
        if (this.epoch !== actingEpoch) throw new RegionDbError(ErrorCode.Unavailable, 'the metasrv took over again while recording the promotion: outcome unknown; retry');
        refuseUnlessAbove(); // the catalog may have been taken over meanwhile
        const held = this.catalog.standbyPromotion;
        if (!held || epoch > held.epoch) {
          this.catalog.standbyPromotion = { epoch, cutMs };
          this.catalog.version++;
          this.log.warn({ epoch, cutMs }, 'standby promotion recorded');
        }
        assert(this.catalog.standbyPromotion?.epoch === epoch && this.catalog.standbyPromotion.cutMs === cutMs, 'the catalog holds the record just written to the store');
        await this.save();
      } catch (err) {
        // The object may be in the store though the put failed (a lost answer), and the catalog
        // may lack it: the store is read again before the next answer (D12), which takes it up.
        if (putStarted) {
          this.promotionStore.invalidated++;
          this.promotionStore.readAtEpoch = undefined;
          this.promotionStore.failedAtMs = undefined;
          this.promotionStore.error = `a promotion record call failed after its object put began (${(err as Error).message}): read again`;
        }
        throw err;
      }
    };
    // One at a time: the check above and the catalog change must see every earlier record.
    const done = this.promotionStore.recording.then(record);
    this.promotionStore.recording = done.catch(() => {});
    await done;
    return { record: { epoch: String(epoch), cut_ms: String(cutMs) } };
  }

  /**
   * The promotion recorded here (epoch 0: none), read after a ReadIndex round in a group (no record
   * committed before the call is missed) and, with `[storage]`, only once this process has read the
   * record objects (UNAVAILABLE before: an empty or restored catalog does not say "none").
   */
  async getStandbyPromotion(): Promise<GetStandbyPromotionResponse> {
    this.requireActing();
    if (this.group) {
      await this.group.barrier();
      this.requireActing();
    }
    await this.requirePromotionObjectsRead();
    const held = this.catalog.standbyPromotion;
    return { record: { epoch: String(held?.epoch ?? 0), cut_ms: String(held?.cutMs ?? 0) } };
  }

  /**
   * Disaster recovery (all local copies of a table's regions lost): every replica of every
   * region restarts from the region's latest manifest in the object store. Refuses regions that
   * still have a live leader unless forced: their replicas hold writes newer than the manifest.
   */
  async recoverTable(table: string, force: boolean): Promise<RecoverTableResponse> {
    this.requireActing();
    this.refuseIfUnwritable();
    // The catalog may be a copy older than the table's drop (docs/ddl.md, "A catalog older than the
    // drop"): recovering a dropped table would start its regions over as unfenced groups that take
    // writes. Only once this acting epoch's listing has read the drop records (UNAVAILABLE until).
    if (this.config.storage && this.tableIdsListedAt !== this.epoch) {
      await this.tableIdsListed('a table is recovered only once the drop records are read (this catalog may be older than the table\'s drop, and a dropped table must not start over); nothing was recovered');
      this.requireActing();
    }
    // A drop attempt in flight must not see a region of the table start over from its manifest
    // (which may lack the fence the attempt already committed) and answer OK without fencing it
    // again (review finding F1): wait for the attempt to end (it is bounded by DROP_FENCE_MS);
    // from here on finishDrop refuses to start, or to finish, while the regions are recovered.
    const attempt = this.drops.inFlight(table);
    if (attempt) {
      await attempt.catch(() => {});
      this.requireActing();
      if (this.drops.inFlight(table)) {
        throw new RegionDbError(ErrorCode.Unavailable, `table ${table} is being dropped and a drop attempt is in flight; recover it again once the attempt ends (regiondb status shows the drop)`);
      }
    }
    const regions = regionsOfTable(this.catalog, table);
    if (regions.length === 0) throw new RegionDbError(ErrorCode.NotFound, `table ${table} does not exist`);
    await this.refuseRecoveryOfRecordedDrop(table);
    const ctx = this.context();
    if (!force) {
      const serving = regions.filter((r) => ctx.leaderOf(r)).map((r) => `${r.regionId} (leader on node ${ctx.leaderOf(r)!.nodeId})`);
      if (serving.length > 0) {
        throw new RegionDbError(
          ErrorCode.ConditionFailed,
          `regions ${serving.join(', ')} still have a live leader: their replicas may hold writes newer than the object store; recovering would discard them (use --force to do it anyway)`,
        );
      }
    }
    const down = [...new Set(regions.flatMap((r) => r.replicas.map((p) => p.nodeId)))].filter((id) => !this.isAlive(id));
    if (down.length > 0) {
      throw new RegionDbError(ErrorCode.Unavailable, `datanodes ${down.join(', ')} hold replicas of ${table} but are not alive; start them (empty is fine) before recovering`);
    }
    const out: RecoveredRegion[] = [];
    // While a region is recovered its old group may still run and beat with a higher conf index
    // than the new group's 0: reconciliation leaves the region alone until the recovery is done
    // (it would adopt the old membership between two recover-opens; docs/correctness.md, M13).
    for (const region of regions) this.recovering.add(region.regionId);
    try {
      // A recovered region may start over without its drop fence (its manifest may predate it):
      // the drop must fence it again, so its record goes — saved before any region is touched.
      if (forgetFences(this.catalog, regions.map((r) => r.regionId))) {
        this.catalog.version++;
        await this.save();
      }
      return await this.recoverRegions(regions, out);
    } finally {
      for (const region of regions) this.recovering.delete(region.regionId);
    }
  }

  /** Regions `recoverTable` is recovering right now: reconciliation does not touch them. */
  private readonly recovering = new Set<string>();

  /** R6 (`bootstrapHeld`): the regions the catalog held unbootstrapped, and the nodes it knew, when this process began acting. */
  private unbootstrappedAtStart = new Set<string>();
  private nodesAtStart = new Set<number>();
  /** R7 (`unjudgedOpenHeld`): the regions of the catalog this process began acting on (those created since are its own). */
  private regionsAtStart = new Set<string>();

  private async recoverRegions(regions: RegionDef[], out: RecoveredRegion[]): Promise<RecoverTableResponse> {
    for (const region of regions) {
      this.regroupForRecovery(region);
      let point = { flushed_index: '0', manifest_written_ms: '0', ssts: 0 };
      for (const replica of region.replicas) {
        const node = this.catalog.nodes[replica.nodeId]!;
        const res = await this.admin.openRegion(node.addr, { ...this.openInstruction(region, replica.peerId, false), recover_from_object_store: true }, 30_000).catch((err: unknown) => {
          const e = fromGrpcError(err);
          throw new RegionDbError(e.code, `recovering region ${region.regionId} on datanode ${node.nodeId}: ${e.message}`, { cause: e });
        });
        point = res;
      }
      region.bootstrapped = true;
      this.log.warn({ regionId: region.regionId, flushedIndex: point.flushed_index }, 'region recovered from the object store');
      out.push({ region_id: region.regionId, flushed_index: point.flushed_index, manifest_written_ms: point.manifest_written_ms, ssts: point.ssts, replicas: region.replicas.length });
    }
    await this.save();
    return { regions: out };
  }

  /**
   * Recovery starts the region over as a new group from its manifest: whatever procedures were
   * moving its replicas (a repair of replicas lost with their disks, which could not proceed
   * without a leader, has already placed a second peer on a node) are superseded, each node keeps
   * one placement, and every replica gets a fresh peer id (ids are never reused, and nothing
   * from the old group may vote in the new one). Lost marks end here: the replicas are new.
   */
  private regroupForRecovery(region: RegionDef): void {
    for (const p of Object.values(this.catalog.procedures)) {
      if (p.status === 'running' && 'regionId' in p.data && p.data.regionId === region.regionId) {
        p.status = 'failed';
        p.error = 'superseded: the region was recovered from the object store';
        p.updatedMs = this.procedureClock.nowMs();
      }
    }
    const nodes = [...new Set(region.replicas.map((p) => p.nodeId))];
    region.replicas = nodes.map((nodeId) => ({ peerId: this.catalog.nextPeerId++, nodeId }));
    region.confVersion++;
    region.confIndex = 0; // a new group: its conf index restarts at the manifest's index
  }

  requireGroup(): MetaGroup {
    if (!this.group) throw new RegionDbError(ErrorCode.InvalidArgument, 'this metasrv runs alone (no [meta_group] in its config): there is no group to change');
    return this.group;
  }

  groupInfo(group: MetaGroup): MetaGroupInfo {
    const st = group.status();
    return {
      answered_by: String(st.memberId),
      term: String(st.term),
      leader_id: String(st.leaderId),
      commit_index: String(st.commitIndex),
      applied_index: String(st.appliedIndex),
      members: st.members.map((m) => ({
        id: String(m.id),
        addr: m.addr,
        kind: m.voter ? 'voter' : 'learner',
        role: m.id === st.leaderId ? 'leader' : m.voter ? 'follower' : 'learner',
        match_index: String(m.matchIndex ?? 0),
      })),
    };
  }

  /**
   * A registration of a registered node id with another store from another address: a new host
   * taking over the id of one that is gone (accepted), or a second process started with a copied
   * config beside the live one (refused; finding M6: accepting it marks every replica of the live
   * node lost and flaps its address between the two). Refused ALREADY_EXISTS while the registered
   * node is alive; refused UNAVAILABLE (retryable: the datanode registers again on its next beat)
   * until it has been silent for `takeoverSilenceMs` as far as this process can tell — since its
   * last heartbeat, this process's start as the acting metasrv, or the end of a stall of its own
   * event loop, whichever is latest: a metasrv that has just started, or whose loop was blocked
   * with the node's heartbeats queued unread, has not heard from a live node yet (found by the
   * simulator's `twin` fault, docs/simulation.md). A restart on a wiped disk (same address) does
   * not come here.
   */
  protected checkTakeover(existing: NodeDef, storeId: string, addr: string): void {
    const nodeId = existing.nodeId;
    if (this.isAlive(nodeId)) {
      throw new RegionDbError(
        ErrorCode.AlreadyExists,
        `node id ${nodeId} belongs to a live datanode at ${existing.addr} (store ${existing.storeId}); this one at ${addr} (store ${storeId}) is refused: give it another node id, or stop the other first`,
      );
    }
    const now = this.clock.nowMs();
    const heardSince = Math.max(this.detectors.get(nodeId)?.lastHeartbeat() ?? Number.NEGATIVE_INFINITY, this.actingSinceMs, this.stallEndedAtMs);
    const silentMs = now - heardSince;
    const neededMs = this.takeoverSilenceMs();
    if (silentMs < neededMs) {
      throw new RegionDbError(
        ErrorCode.Unavailable,
        `node id ${nodeId} is registered to a datanode at ${existing.addr} (store ${existing.storeId}), silent for only ${Math.round(silentMs)} ms as far as this metasrv can tell; another datanode at ${addr} (store ${storeId}) may take over its id once it has been silent for ${neededMs} ms (retry)`,
      );
    }
  }

  /**
   * A registration of the registered store by a data dir that does not know the newest start
   * this metasrv registered — that start's id is neither the dir's last confirmed start nor one
   * of its starts since — while the dir's confirmed start is not newer than it (which would mean
   * the catalog is the one behind: restored from an older copy), comes from a restored copy of
   * the node's data dir (a volume snapshot, a backup of the dir, a stale disk put back). Its
   * replicas have forgotten votes and acknowledged entries since the copy and must not answer
   * raft under their peer ids. Refused CORRUPTION before anything of the registration is used:
   * the datanode, which reopens its replicas only once registered, reopens none, /health says
   * why, and the node counts as down, so its replicas are rebuilt elsewhere after
   * `replica_repair_after_ms`. However often the copy starts again it stays refused: its starts
   * never include the one registered (docs/failover.md, "A data dir restored from a copy").
   */
  /** Nodes whose newest registration refuseStaleStart refused, and why (`regiondb status`; this process only). */
  private readonly refusedStarts = new Map<number, string>();

  protected refuseStaleStart(existing: NodeDef, start: RegisteringStart): void {
    const recorded = existing.startId;
    if (existing.startCount === undefined || recorded === undefined) return;
    if (start.id === recorded || start.known.includes(recorded)) return;
    if (existing.startCount < start.confirmedCount) return; // this catalog is older than the dir's last answered registration
    this.countRejection('stale-data-dir', { nodeId: existing.nodeId, start: start.count, registeredStart: existing.startCount });
    const reason = `a restored copy of its data dir: this metasrv registered start ${existing.startCount}, which the dir (at start ${start.count}) does not know`;
    this.refusedStarts.set(existing.nodeId, reason);
    throw new RegionDbError(
      ErrorCode.Corruption,
      `node ${existing.nodeId}'s data dir (store ${existing.storeId}) is a restored copy of an earlier state: this metasrv registered its start ${existing.startCount} (${recorded}), which the dir does not know (it is at start ${start.count}, its last registered start ${start.confirmedCount}). Its replicas may have forgotten votes and acknowledged entries, so none is reopened. Move the data dir aside (keep it) and start the node on an empty one: it joins as a new store and its replicas are rebuilt from the others (docs/failover.md, "A data dir restored from a copy")`,
    );
  }

  /**
   * K2 (docs/failover.md, "A data dir restored from a copy"): a datanode refused its own start as
   * a restored copy of its data dir, by the object store's record of its starts (a catalog older
   * than the copy cannot tell). Recorded as refuseStaleStart records its refusals; nothing of the
   * registration is used. Throws CORRUPTION.
   */
  private noteCopyRefusedByNode(nodeId: number, why: string, storeId: string, addr: string): never {
    this.countRejection('stale-data-dir', { nodeId, storeId, addr, by: 'the datanode (start witness)' });
    this.refusedStarts.set(nodeId, `a restored copy of its data dir (store ${storeId} at ${addr} refuses itself: ${why})`);
    throw new RegionDbError(ErrorCode.Corruption, `node ${nodeId} (store ${storeId} at ${addr}) refuses its own start as a restored copy of its data dir: ${why}`);
  }

  /**
   * How long a registered node must have been silent before another store at another address may
   * take over its id: the detector's acceptable pause, plus two heartbeat calls lost in a row (a
   * datanode waits out one call's budget, max(500 ms, the interval), before its next beat).
   */
  private takeoverSilenceMs(): number {
    const fd = this.config.failure_detector;
    return fd.acceptable_pause_ms + 2 * Math.max(500, fd.heartbeat_interval_ms);
  }

  // ─── Meta calls (the shell's handlers delegate here) ──────────────────────────────────────

  private checkCluster(clusterId: string): void {
    if (clusterId !== this.config.cluster_id) {
      this.countRejection('other-cluster', { clusterId });
      throw new RegionDbError(ErrorCode.InvalidArgument, `cluster id ${JSON.stringify(clusterId)} does not match this cluster (${this.config.cluster_id})`);
    }
  }

  countRejection(reason: string, context: Record<string, unknown>): void {
    this.hooks.rejected?.(reason);
    const suppressed = this.rejectionLog.admit(reason, this.clock.nowMs());
    if (suppressed !== undefined) this.log.warn({ reason, suppressed, ...context }, 'rejected a datanode (reason: another cluster, a node id its certificate does not name, or a restored copy of its data dir)');
  }

  /** RegisterNode. `checkIdentity` is the transport's check that the caller may speak for the node id (TLS). */
  async registerNode(req: RegisterNodeRequest__Output, checkIdentity: (nodeId: number) => void): Promise<RegisterNodeResponse> {
    this.requireActing();
    this.refuseIfUnwritable();
    this.checkCluster(req.cluster_id);
    const nodeId = u64(req.node_id, 'node_id');
    checkIdentity(nodeId);
    if (nodeId === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'node_id must be positive');
    if (req.refused_as_copy) this.noteCopyRefusedByNode(nodeId, str(req.refused_as_copy, 'refused_as_copy', 4096), str(req.store_id ?? '', 'store_id', 128), str(req.addr, 'addr'));
    const existing = this.catalog.nodes[nodeId];
    const storeId = str(req.store_id ?? '', 'store_id', 128);
    if (existing && storeId !== '' && existing.storeId !== undefined && existing.storeId !== storeId && existing.addr !== req.addr) this.checkTakeover(existing, storeId, req.addr);
    const start = registeringStart(req);
    if (existing && start && storeId !== '' && existing.storeId === storeId) this.refuseStaleStart(existing, start);
    const node: NodeDef = {
      nodeId,
      addr: str(req.addr, 'addr'),
      httpAddr: str(req.http_addr, 'http_addr'),
      lastHeartbeatMs: this.procedureClock.nowMs(),
      state: existing?.state === 'draining' ? 'draining' : 'alive',
      ...(existing?.storeId ? { storeId: existing.storeId } : {}),
      ...(existing?.startCount !== undefined ? { startCount: existing.startCount, startId: existing.startId ?? '' } : {}),
    };
    this.catalog.nodes[nodeId] = node;
    this.refusedStarts.delete(nodeId);
    this.noteStore(node, storeId, existing !== undefined);
    if (start && storeId !== '') {
      // This store's newest start (a new store's first: its count starts again at 1).
      node.startCount = start.count;
      node.startId = start.id;
    }
    this.observed.delete(nodeId); // what it hosts now is learned from its next heartbeat
    // Instructions queued for the process before this one were decided from its reports (a
    // close_region of a failed replica): this process may already host a replacement there.
    // The procedures re-send what is still needed (finding M11 in docs/correctness.md); so are
    // those staged for it, whose save may still be in flight (M15). A close also names its peer
    // now (M16), so a datanode refuses one that meets the replacement; the drop stays, as the
    // other instructions were decided from the old process's reports too.
    this.pending.delete(nodeId);
    this.registrations.set(nodeId, (this.registrations.get(nodeId) ?? 0) + 1);
    this.catalog.version++;
    await this.save();
    this.detector(nodeId).heartbeat(this.clock.nowMs());
    this.log.info({ nodeId, addr: req.addr }, 'datanode registered');
    // What the catalog places here, by the rules of a heartbeat's opens (reconcile.ts nodeActions:
    // R4, not a lost peer; R5, not one its group's leader has gone past — a catalog older than the
    // groups, restored from a copy, would have the node open it empty under an id that may have
    // voted). This node's report was just forgotten: nothing counts as hosted, nothing is deleted,
    // and a region it led is judged on the others' reports (none: opened as before). The pure
    // function, not nodeActionsOf: the simulator's planted bugs change heartbeats only.
    const regions: OpenRegionRequest[] = [];
    const live = this.liveReports();
    for (const action of nodeActions(this.catalog, nodeId, live, (n) => this.removalAwaits(n))) {
      if ('open' in action) {
        if (!this.placementOpenHeld(nodeId, action.open, live)) regions.push(this.openOf(action.open));
      } else if ('skip' in action) this.logSkippedOpen(nodeId, action.skip);
    }
    return { regions, metasrv_epoch: String(this.epoch) };
  }

  /** Heartbeat. `checkIdentity` as for registerNode. */
  async heartbeat(req: HeartbeatRequest__Output, checkIdentity: (nodeId: number) => void): Promise<HeartbeatResponse> {
    this.requireActing();
    this.checkCluster(req.cluster_id);
    const nodeId = u64(req.node_id, 'node_id');
    checkIdentity(nodeId);
    const node = this.catalog.nodes[nodeId];
    if (!node) throw new RegionDbError(ErrorCode.NotFound, `node ${nodeId} is not registered`);
    // Another store from another address than the registered one (finding Y2): a process whose
    // node id was taken over while it was silent (checkTakeover), beating again. Nothing of it is
    // used, not even for liveness: it registers again, where checkTakeover decides (refused while
    // the node's registered process is alive). Taken as a store changed without a registration
    // (noteStore, below), it flipped the node's store back and marked lost every replica placed
    // there since the takeover, and the new process's next beat flipped it again.
    const reqStore = str(req.store_id ?? '', 'store_id', 128);
    if (reqStore !== '' && node.storeId !== undefined && node.storeId !== reqStore && req.addr !== node.addr) {
      throw new RegionDbError(
        ErrorCode.NotFound,
        `node ${nodeId} is registered to store ${node.storeId} at ${node.addr}, not to store ${reqStore} at ${req.addr}: register again (refused while the registered process is alive)`,
      );
    }
    // A heartbeat from another start of the registered store than the one registered last: a
    // restored copy of its data dir (an older start), or a start the catalog missed (a catalog
    // restored from an older copy). Either registers again, where refuseStaleStart decides.
    const start = startOf(req.start_count, req.start_id);
    if (start && reqStore !== '' && reqStore === node.storeId && node.startId !== undefined && start.id !== node.startId) {
      throw new RegionDbError(
        ErrorCode.NotFound,
        `node ${nodeId}'s store ${reqStore} is registered at start ${node.startCount}, not at start ${start.count} (${start.id}): register again`,
      );
    }
    this.hooks.heartbeat?.();
    this.detector(nodeId).heartbeat(this.clock.nowMs());
    node.lastHeartbeatMs = this.procedureClock.nowMs();
    // A report with a malformed number or region id (leftover item 4): the node that sent it is
    // alive — registered, its identity checked, reaching us on time — so it counts for liveness
    // above: taking it for dead would fail over and rebuild the replicas of a live node for a bug
    // in its reporting. The report itself is refused whole before any of it is read (nothing of it
    // reaches the view, the catalog or reconciliation), logged and counted.
    try {
      refuseMalformedReport(nodeId, req);
    } catch (err) {
      this.hooks.report?.('malformed');
      const suppressed = this.rejectionLog.admit('malformed-report', this.clock.nowMs());
      if (suppressed !== undefined) this.log.warn({ nodeId, suppressed, err: (err as Error).message }, 'refused a heartbeat report with a malformed field (the node counts as alive; its report is not used)');
      throw err;
    }
    // Liveness only while the catalog cannot be written: nothing decided, nothing instructed.
    if (this.catalogUnwritable) return { instructions: [], metasrv_epoch: String(this.epoch) };
    // The node's view from this report (report-view.ts): a delta the view does not match, or a
    // report older than the view, counts for liveness only; the datanode sends a full one at once.
    const use = this.useReportOf(this.observed.get(nodeId), req);
    this.hooks.report?.(use.kind === 'unusable' ? 'unusable' : use.how);
    if (use.kind === 'unusable') {
      return { instructions: [], metasrv_epoch: String(this.epoch), full_report_needed: true };
    }
    // A store that changed without a registration (a catalog restored from an older copy)
    // is judged like one; a first store id on a node known before store ids is recorded.
    let changed = this.noteStore(node, str(req.store_id ?? '', 'store_id', 128), node.storeId !== undefined);
    // Every replica of the view, as a full report would list them (the same decisions whether the
    // view came from a full report or from deltas).
    for (const seen of use.report.replicas.values()) {
      const region = regionWithId(this.catalog, seen.regionId);
      if (region && !region.bootstrapped && seen.appliedIndex > 0) {
        // From now on a replica opened anywhere must get its state from the others (or from
        // `regiondb recover`), never start the region afresh: that would serve it empty.
        region.bootstrapped = true;
        changed = true;
      }
      const placed = region?.replicas.find((p) => p.peerId === seen.peerId && p.nodeId === nodeId);
      if (placed && seen.health === 'failed' && placed.lost === undefined) {
        // A replica that cannot start or apply: replaced under a fresh peer id although its
        // node is alive (the metasrv acts on replica health, not only on node liveness).
        placed.lost = `replica failed: ${seen.failure || 'no reason given'}`;
        this.log.warn({ nodeId, regionId: seen.regionId, peerId: seen.peerId, failure: seen.failure }, 'replica reported failed; it will be replaced');
        changed = true;
      }
      if (region && seen.role === 'leader' && region.replicas.some((p) => p.peerId === seen.peerId)) region.leaderNodeId = nodeId;
    }
    this.observed.set(nodeId, use.report);
    const instructions: Instruction[] = this.pending.get(nodeId) ?? [];
    this.pending.delete(nodeId);
    const reconciled = this.reconcile(nodeId);
    if (changed || reconciled.changed) await this.save();
    instructions.push(...reconciled.instructions);
    return { instructions, metasrv_epoch: String(this.epoch), report_seq_applied: String(use.applied) };
  }

  async getRoutes(req: GetRoutesRequest__Output): Promise<GetRoutesResponse> {
    this.requireActing();
    const name = str(req.table, 'table', limits.tableNameBytesMax);
    const schema = this.schemaOf(name);
    return { table: toProtoSchema(schema), routes: regionsOfTable(this.catalog, name).map((r) => this.route(r)) };
  }

  /**
   * DropTable (docs/ddl.md, "The drop fence"): the table is marked being dropped (saved), every
   * region's leader commits the region's drop fence, and only then is the table removed from the
   * catalog and the drop answered. A region that cannot be fenced now (no leader, its nodes
   * down, a datanode that predates FenceRegion) fails this attempt with UNAVAILABLE and leaves
   * the table in place, marked: never an OK while a region of it could still acknowledge a
   * write. The tick resumes a marked drop (after a failed attempt, a crash or a change of
   * metasrv leader); another DropTable joins it.
   */
  async dropTable(req: MetaDropTableRequest__Output): Promise<MetaDropTableResponse> {
    this.requireActing();
    this.refuseIfUnwritable();
    const name = str(req.name, 'name', limits.tableNameBytesMax);
    const token = str(req.request_token ?? '', 'request_token', 128);
    // A retry of a DropTable whose answer was lost (docs/ddl.md, "A DropTable sent again"): it is
    // answered from the drop its token recorded, by table id, whatever table has the name now.
    const earlier = token === '' ? undefined : dropTokenOf(this.catalog, token);
    if (earlier === 'malformed') throw new RegionDbError(ErrorCode.Internal, `the catalog's record of DropTable request token ${token} is damaged; nothing was dropped`);
    if (earlier !== undefined) {
      if (earlier.name !== name) {
        throw new RegionDbError(ErrorCode.InvalidArgument, `request_token ${token} was used to drop table ${earlier.name}, not ${name}: use a fresh token for each DropTable`);
      }
      // Still being dropped (its first attempt, or the tick, is fencing it): wait for that drop.
      if (tableNamed(this.catalog, name)?.tableId === earlier.tableId) return { regions_dropped: await this.finishDrop(name, earlier.tableId) };
      // Gone from the catalog in memory: done once that is durable. The save removing it may still
      // be in flight (or have failed): wait for every save started so far, then answer OK only if
      // the last catalog written lacks the table.
      if (this.durableTableIds.has(earlier.tableId)) await this.saving;
      if (this.durableTableIds.has(earlier.tableId)) {
        throw new RegionDbError(
          ErrorCode.Unavailable,
          `table ${name} (id ${earlier.tableId}) was dropped, but the catalog save recording its removal did not succeed (yet); the outcome is unknown: send DropTable again with the same request_token`,
          { details: { outcome: 'unknown' } },
        );
      }
      return { regions_dropped: earlier.regions }; // done: the table of that id is gone, durably
    }
    const table = tableNamed(this.catalog, name);
    if (!table) throw new RegionDbError(ErrorCode.NotFound, `table ${name} does not exist`);
    const marking = droppingSince(this.catalog, name) === undefined;
    if (marking) this.catalog.droppingTables = ownMap({ ...this.catalog.droppingTables, [name]: this.procedureClock.nowMs() });
    // Saved with the mark (or alone, for a second caller joining a drop): a retry finds it.
    if (token !== '') rememberDropToken(this.catalog, token, { name, tableId: table.tableId, regions: regionsOfTable(this.catalog, name).length, atMs: this.procedureClock.nowMs() });
    if (marking || token !== '') {
      this.catalog.version++;
      await this.save();
    }
    return { regions_dropped: await this.finishDrop(name, table.tableId) };
  }

  /** Drops in flight, by table name (a retried DropTable and the tick's resume join the one running). */
  private readonly drops = new SingleFlight<string, number>();
  /** When the tick last resumed each marked drop (monotonic ms). */
  private readonly dropResumedMs = new Map<string, number>();

  /** Fences every region of the marked table `name` (id `tableId`), then drops it from the catalog; the regions dropped. */
  private finishDrop(name: string, tableId: number): Promise<number> {
    return this.drops.run(name, async () => {
      // Fences go out only under a durable mark, and only from this acting period (docs/ddl.md,
      // "Fencing only under a durable mark"): a joiner that comes while the mark's save is in
      // flight waits for it here.
      const epoch = this.epoch;
      if (this.durableMarks.get(name) !== tableId) await this.awaitDurableMark(name, tableId, epoch);
      const regions = regionsOfTable(this.catalog, name);
      // A region being recovered (regiondb recover) starts over as a new group from its
      // manifest, which may lack the fence: an attempt that overlaps a recovery fails, at its
      // start or its end, and the next one fences the recovered groups (review finding F1).
      const refuseIfRecovering = () => {
        const busy = regions.filter((r) => this.recovering.has(r.regionId)).map((r) => r.regionId);
        if (busy.length === 0) return;
        throw new RegionDbError(
          ErrorCode.Unavailable,
          `table ${name} (id ${tableId}) is being dropped but its regions ${busy.join(', ')} are being recovered from the object store (regiondb recover): the drop resumes, fencing them again, once the recovery ends`,
        );
      };
      refuseIfRecovering();
      // Regions an earlier attempt fenced are not asked again (review finding F2): their fence is
      // committed, and a region that lost its quorum since could not answer.
      const unfenced = regions.filter((r) => fencedIndexOf(this.catalog, r.regionId) === undefined);
      const fenced = new Map<string, number>();
      // A table held by a drop record that does not read (DT3) was most likely dropped already, its
      // replicas destroyed: a FenceRegion would find none (NOT_FOUND) and the drop could never
      // finish. A region of it that no live datanode hosts, every node the catalog places it on
      // alive and reported, has nothing to fence — no quorum of it runs, and none is opened while
      // the table is held (openHeld) — and counts as fenced at index 0.
      const reports = this.unreadableDropRecords.has(tableId) ? this.liveReports() : undefined;
      const hostedNowhere = reports ? unfenced.filter((r) => this.hostedNowhere(r, reports)) : [];
      for (const r of hostedNowhere) fenced.set(r.regionId, 0);
      if (hostedNowhere.length > 0) this.log.warn({ table: name, tableId, regions: hostedNowhere.map((r) => r.regionId) }, 'regions of a table held by an unreadable drop record are hosted by no live datanode: nothing to fence');
      const failures = await this.fenceRegions(
        unfenced.filter((r) => !fenced.has(r.regionId)),
        tableId,
        epoch,
        (regionId, index) => fenced.set(regionId, index),
      );
      refuseIfRecovering();
      if (failures.length > 0) {
        if (fenced.size > 0 && tableNamed(this.catalog, name)?.tableId === tableId) {
          this.catalog.fencedRegions = ownMap({ ...this.catalog.fencedRegions, ...Object.fromEntries(fenced) });
          this.catalog.version++;
          await this.save().catch((err: unknown) => this.log.warn({ err, table: name }, 'could not save the regions fenced so far; the next attempt fences them again'));
        }
        this.log.warn({ table: name, tableId, unfenced: failures.length, regions: regions.length, first: failures[0] }, 'drop not done: regions not fenced yet; retried');
        throw new RegionDbError(
          ErrorCode.Unavailable,
          `table ${name} (id ${tableId}) is being dropped but ${failures.length} of its ${regions.length} regions could not be fenced yet, so it is not dropped: the table stays (its fenced regions refuse reads and writes, the others still take them) and the metasrv keeps retrying; DropTable again to wait for it. ${failures.slice(0, 3).join('; ')}`,
        );
      }
      this.requireActing();
      this.refuseIfUnwritable();
      if (tableNamed(this.catalog, name)?.tableId !== tableId) return regions.length; // dropped meanwhile (another acting period)
      // Every region is fenced: the drop record goes to the object store before the catalog
      // drops the table and before the answer (docs/ddl.md, "A catalog older than the drop"), so
      // a catalog lost or restored from an older copy is dropped again by the next metasrv.
      await this.writeDropRecord(name, tableId, fenced);
      this.requireActingAt(epoch);
      this.refuseIfUnwritable();
      if (tableNamed(this.catalog, name)?.tableId !== tableId) return regions.length; // dropped meanwhile (its record read by a listing)
      const dropped = dropTable(this.catalog, name, this.procedureClock.nowMs());
      await this.save();
      this.log.info({ table: name, tableId, regions: dropped.length }, 'dropped table: every region fenced');
      return dropped.length;
    });
  }

  /**
   * A table being dropped whose drop record is in the object store (an attempt put it, then failed
   * before the catalog dropped the table) has every region fenced, and the next listing finishes
   * its drop from the record (dropRecordedTables): a recovery would start its regions over
   * unfenced, taking writes until then (review of DT2). Refused; the drop finishes on its own.
   * So is any table whose drop record the listing could not read (DT3, `unreadableDropRecords`):
   * it may have been dropped.
   */
  private async refuseRecoveryOfRecordedDrop(table: string): Promise<void> {
    const store = this.objectStore;
    const def = tableNamed(this.catalog, table);
    if (!this.config.storage || !store || !def) return;
    const unreadable = this.unreadableDropRecords.get(def.tableId);
    if (unreadable) {
      throw new RegionDbError(
        ErrorCode.ConditionFailed,
        `table ${table}'s drop record ${unreadable.key} cannot be read (${unreadable.why}): the table may have been dropped, and recovering it would start its regions over unfenced; drop the table, or delete the object only if it was never dropped; nothing was recovered`,
      );
    }
    if (droppingSince(this.catalog, table) === undefined) return;
    const key = dropObjectKey(def.tableId);
    let recorded: boolean;
    try {
      recorded = (await store.head(key)) !== undefined;
    } catch (err) {
      throw new RegionDbError(ErrorCode.Unavailable, `table ${table} is being dropped and whether its drop is recorded (${key}) cannot be read: ${(err as Error).message}; nothing was recovered, retry`);
    }
    this.requireActing();
    if (recorded) {
      throw new RegionDbError(
        ErrorCode.ConditionFailed,
        `table ${table} is being dropped and its drop is recorded in the object store (${key}): every region is fenced and the drop finishes on its own; it is not recovered`,
      );
    }
  }

  /**
   * With `[storage]`: puts the drop record of table `name` (id `tableId`), every region of which
   * is fenced (drop-object.ts). A failed put fails the attempt UNAVAILABLE (the table stays,
   * marked; the fences this attempt committed, `fenced`, are recorded so the next attempt does
   * not ask them again): the drop is answered only once its record is durable.
   */
  private async writeDropRecord(name: string, tableId: number, fenced: ReadonlyMap<string, number>): Promise<void> {
    const store = this.objectStore;
    if (!this.config.storage || !store) return;
    try {
      await writeDropObject(store, this.config.cluster_id, { tableId, name });
    } catch (err) {
      if (fenced.size > 0 && this.acting && tableNamed(this.catalog, name)?.tableId === tableId) {
        this.catalog.fencedRegions = ownMap({ ...this.catalog.fencedRegions, ...Object.fromEntries(fenced) });
        this.catalog.version++;
        await this.save().catch((e: unknown) => this.log.warn({ err: e, table: name }, 'could not save the regions fenced so far; the next attempt fences them again'));
      }
      this.log.warn({ table: name, tableId, err: (err as Error).message }, 'drop not done: its record could not be written to the object store; retried');
      throw new RegionDbError(
        ErrorCode.Unavailable,
        `table ${name} (id ${tableId}) is being dropped and every region is fenced, but its drop record could not be written to the object store (${(err as Error).message}), so it is not dropped yet: the metasrv keeps retrying; DropTable again to wait for it`,
      );
    }
  }

  /**
   * Waits until the drop mark of table `name` (id `tableId`) is durable. The save that wrote it
   * may be in flight (a DropTable sent again, another DropTable, or the tick joining the drop
   * meanwhile): every save started so far is waited for. If the mark is still not durable — that
   * save failed — the catalog is saved again with the mark, as a new DropTable would, before
   * anything is fenced. Throws (nothing fenced) if this process stopped acting, or acts at
   * another epoch, or the catalog cannot be written, or the table is no longer the one marked.
   */
  private async awaitDurableMark(name: string, tableId: number, epoch: number): Promise<void> {
    await this.saving;
    if (this.durableMarks.get(name) === tableId) return;
    this.requireActingAt(epoch);
    this.refuseIfUnwritable();
    if (tableNamed(this.catalog, name)?.tableId !== tableId) {
      throw new RegionDbError(ErrorCode.Unavailable, `table ${name} (id ${tableId}) is no longer in the catalog as marked being dropped; nothing was fenced`);
    }
    if (droppingSince(this.catalog, name) === undefined) this.catalog.droppingTables = ownMap({ ...this.catalog.droppingTables, [name]: this.procedureClock.nowMs() });
    this.catalog.version++;
    await this.save();
    this.requireActingAt(epoch);
    if (this.durableMarks.get(name) !== tableId) {
      throw new RegionDbError(ErrorCode.Unavailable, `the mark of table ${name} (id ${tableId}) being dropped is not saved yet; nothing was fenced`);
    }
  }

  /** requireActing, and in the acting period of `epoch` (a group leader deposed and elected again acts at another). */
  private requireActingAt(epoch: number): void {
    this.requireActing();
    if (this.epoch !== epoch) {
      throw new RegionDbError(ErrorCode.Unavailable, `this metasrv lost the metasrv group's leadership (epoch ${epoch}) and acts again at epoch ${this.epoch}; the drop resumes from the catalog`);
    }
  }

  /**
   * Fences every region of a table being dropped (concurrently, each within DROP_FENCE_MS), in
   * the acting period of `epoch` only; the regions it could not fence, with why. Protected for
   * the simulator's planted bug (test/sim/sim-metasrv-bugs.ts, drop-without-fence); nothing in
   * src/ overrides it.
   */
  protected async fenceRegions(regions: readonly RegionDef[], tableId: number, epoch: number, fenced?: (regionId: string, fenceIndex: number) => void): Promise<string[]> {
    const deadlineMs = this.clock.nowMs() + DROP_FENCE_MS;
    const failures: string[] = [];
    await Promise.all(
      regions.map((region) =>
        this.fenceRegion(region, tableId, epoch, deadlineMs).then(
          (index) => fenced?.(region.regionId, index),
          (err: unknown) => {
            failures.push(`region ${region.regionId}: ${(err as Error).message}`);
          },
        ),
      ),
    );
    return failures;
  }

  /**
   * One region's drop fence: FenceRegion on the node the catalog names leader, then on the
   * leader a refusal names, else on the region's other replicas in turn, until one answers or
   * `deadlineMs` / FENCE_ATTEMPTS_MAX. Resolves to the fence's index; rejects with the last refusal.
   */
  private async fenceRegion(region: RegionDef, tableId: number, epoch: number, deadlineMs: number): Promise<number> {
    const nodes = [...new Set([region.leaderNodeId, ...region.replicas.map((r) => r.nodeId)].filter((id) => id > 0 && this.catalog.nodes[id] !== undefined))];
    if (nodes.length === 0) throw new Error('no replica on a registered node');
    let last = 'not tried';
    let hint: number | undefined;
    let next = 0;
    for (let attempt = 0; attempt < FENCE_ATTEMPTS_MAX; attempt++) {
      const remaining = deadlineMs - this.clock.nowMs();
      if (remaining <= 0) break;
      // A leader deposed mid-drop stops fencing (the next one resumes from the saved mark).
      if (!this.acting || this.epoch !== epoch) throw new Error(`this metasrv stopped acting at epoch ${epoch} (no longer the metasrv group's leader, or stopping)`);
      const nodeId = hint ?? nodes[next++ % nodes.length]!;
      hint = undefined;
      const addr = this.catalog.nodes[nodeId]?.addr;
      if (!addr) continue;
      try {
        const request = { region_id: region.regionId, table_id: String(tableId), metasrv_epoch: String(epoch) };
        const res = await this.admin.fenceRegion(addr, request, Math.min(FENCE_CALL_MS, remaining));
        return Number(res?.fence_index ?? 0);
      } catch (err) {
        const e = fromGrpcError(err);
        last = `node ${nodeId}: ${e.code}: ${e.message}`;
        const leader = Number(e.details['leaderNodeId'] ?? 0);
        if (e.code === ErrorCode.NotLeader && leader > 0 && leader !== nodeId && this.catalog.nodes[leader]) hint = leader;
        else await new Promise<void>((ok) => this.clock.setTimeout(ok, FENCE_RETRY_MS));
      }
    }
    throw new Error(last);
  }

  /** No live datanode's report (`reports`, liveReports) has a replica of the region, and every node the catalog places one on is alive and has reported (see finishDrop, DT3). */
  private hostedNowhere(region: RegionDef, reports: Reports): boolean {
    for (const p of region.replicas) if (!this.isAlive(p.nodeId) || !this.observed.has(p.nodeId)) return false;
    for (const replicas of reports.values()) if (replicas.has(region.regionId)) return false;
    return true;
  }

  /** The tick: resumes each marked drop not in flight, at most every DROP_RESUME_MS (errors are logged by finishDrop). */
  private resumeDrops(): void {
    const marked = this.catalog.droppingTables;
    for (const name of this.dropResumedMs.keys()) if (!marked || !Object.hasOwn(marked, name)) this.dropResumedMs.delete(name);
    if (!marked) return;
    const now = this.clock.nowMs();
    for (const name of Object.keys(marked)) {
      const table = tableNamed(this.catalog, name);
      if (!table) continue;
      const last = this.dropResumedMs.get(name);
      if (last !== undefined && now - last < DROP_RESUME_MS) continue;
      this.dropResumedMs.set(name, now);
      void this.finishDrop(name, table.tableId).catch(() => {});
    }
  }

  async listNodes(): Promise<ListNodesResponse> {
    this.requireActing();
    const now = this.clock.nowMs();
    const ctx = this.context();
    const counts = new Map<number, { regions: number; leaders: number }>();
    for (const region of regionList(this.catalog)) {
      for (const r of region.replicas) {
        const c = counts.get(r.nodeId) ?? { regions: 0, leaders: 0 };
        c.regions++;
        if (region.leaderNodeId === r.nodeId) c.leaders++;
        counts.set(r.nodeId, c);
      }
    }
    return {
      nodes: Object.values(this.catalog.nodes).map((n) => ({
        node_id: String(n.nodeId),
        addr: n.addr,
        http_addr: n.httpAddr,
        state: this.nodeState(n),
        phi: this.detectors.get(n.nodeId)?.phi(now) ?? 0,
        regions: counts.get(n.nodeId)?.regions ?? 0,
        leaders: counts.get(n.nodeId)?.leaders ?? 0,
        refused: this.refusedStarts.get(n.nodeId) ?? '',
      })),
      regions: regionList(this.catalog).map((r) => this.route(r)),
      region_infos: [...regionList(this.catalog).map((r) => this.regionInfo(r, ctx)), ...this.unknownRegionInfos()],
      procedures: [
        ...Object.values(this.catalog.procedures)
          .sort((a, b) => a.createdMs - b.createdMs)
          .map((p) => ({
            id: p.id,
            kind: p.kind,
            status: p.status,
            step: p.step,
            description: describeProcedure(p),
            notes: p.notes,
            error: p.error ?? '',
            created_ms: String(p.createdMs),
          })),
        ...Object.entries(this.catalog.unreadableProcedures ?? {}).map(([id, u]) => unreadableStatus(id, u.record, u.error)),
      ],
      ...(this.group ? { meta_group: this.groupInfo(this.group) } : {}),
      dropping_tables: this.droppingTableInfos(),
    };
  }

  /** The tables being dropped, each with its regions fenced so far, not yet, and being recovered (`regiondb status`; review finding F3). */
  private droppingTableInfos(): DroppingTableInfo[] {
    return Object.entries(this.catalog.droppingTables ?? {}).flatMap(([name, sinceMs]) => {
      const table = tableNamed(this.catalog, name);
      if (!table) return [];
      const regions = regionsOfTable(this.catalog, name).map((r) => r.regionId);
      const fenced = regions.filter((id) => fencedIndexOf(this.catalog, id) !== undefined);
      return [
        {
          name,
          table_id: String(table.tableId),
          since_ms: String(sinceMs),
          fenced_region_ids: fenced,
          unfenced_region_ids: regions.filter((id) => !fenced.includes(id)),
          recovering_region_ids: regions.filter((id) => this.recovering.has(id)),
        },
      ];
    });
  }

  async startProcedureCall(req: StartProcedureRequest__Output): Promise<StartProcedureResponse> {
    this.requireActing();
    this.refuseIfUnwritable();
    const kind = req.kind;
    const startable = ['transfer-leader', 'balance-leaders', 'drain-node'] as const;
    if (!isProcedureKind(kind) || !startable.some((k) => k === kind)) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `kind must be one of ${startable.join(', ')}; got ${JSON.stringify(req.kind)}`);
    }
    const nodeId = u64(req.node_id ?? '0', 'node_id');
    if (kind !== 'balance-leaders' && !this.catalog.nodes[nodeId]) throw new RegionDbError(ErrorCode.NotFound, `datanode ${nodeId} is not registered`);
    if (kind === 'transfer-leader') {
      const regionId = str(req.region_id, 'region_id', 32);
      const region = regionWithId(this.catalog, regionId);
      if (!region) throw new RegionDbError(ErrorCode.NotFound, `region ${regionId} does not exist`);
      if (!region.replicas.some((p) => p.nodeId === nodeId)) throw new RegionDbError(ErrorCode.InvalidArgument, `node ${nodeId} has no replica of region ${regionId}`);
      return { id: (await this.startProcedure('transfer-leader', { regionId, nodeId })).id };
    }
    if (kind === 'drain-node') return { id: (await this.startProcedure('drain-node', { nodeId })).id };
    return { id: (await this.startProcedure('balance-leaders', this.balanceData())).id };
  }

  /** A balance-leaders record's start: the configured leader placement (docs/leader-placement.md). */
  private balanceData(): BalanceLeadersData {
    return this.config.leader_placement === 'table' ? { placement: 'table', packRegions: this.config.leader_pack_regions } : {};
  }

}

/** A stored procedure record this version cannot run, as `regiondb status` shows it. */
function unreadableStatus(id: string, record: unknown, error: string) {
  const r = typeof record === 'object' && record !== null ? (record as Record<string, unknown>) : {};
  return {
    id,
    kind: String(r['kind'] ?? '?'),
    status: 'failed',
    step: String(r['step'] ?? '?'),
    description: 'unreadable record, not run',
    notes: [],
    error,
    created_ms: String(typeof r['createdMs'] === 'number' ? r['createdMs'] : 0),
  };
}

/**
 * A heartbeat whose report names a region id that is not one (isRegionId) is refused whole,
 * before anything of it is used: its view would replace the node's, and reconciliation reads
 * table ids out of every view's region ids (reconcile.ts idFloors), so one such id would fail
 * every node's heartbeat after it, or be read as another region's number.
 *
 * The same for the report's numbers (leftover L9): observedOf reads peer ids, terms, indexes and
 * the voters and learners with Number(), and idFloors raises the peer-id allocator above every
 * peer id a view names, so one value past 2^53 (a uint64 on the wire; Number rounds it) or not a
 * number at all would become the allocator's floor — saved in the catalog, handing out rounded,
 * colliding peer ids from then on — or NaN, which no comparison matches. Each must be an unsigned
 * integer below 2^53 in decimal (what the datanodes send); the incarnation is only compared, as
 * a string, and is not checked.
 */
function refuseMalformedReport(nodeId: number, req: HeartbeatRequest__Output): void {
  const isU64 = (v: unknown) => safeU64(v) !== undefined; // the rule of every uint64 field (src/rpc/proto.ts)
  const bad =
    (req.replicas ?? []).map((r) => r.region_id).find((id) => !isRegionId(id)) ??
    (req.removed_region_ids ?? []).find((id) => !isRegionId(id)) ??
    (req.held_replicas ?? []).map((h) => h.region_id).find((id) => !isRegionId(id));
  if (bad !== undefined) {
    throw new RegionDbError(
      ErrorCode.InvalidArgument,
      `node ${nodeId} reported a malformed region id ${JSON.stringify(bad)} (a region id is a uint64 in decimal: table id << 32 | region number); the whole report is refused`,
    );
  }
  const refuse = (where: string, field: string, value: unknown) =>
    new RegionDbError(ErrorCode.InvalidArgument, `node ${nodeId} reported ${where}${field} ${JSON.stringify(value) ?? String(value)}, which is not an unsigned integer below 2^53 in decimal; the whole report is refused`);
  for (const field of ['report_seq', 'report_base_seq'] as const) {
    const v = req[field];
    if (v !== undefined && v !== null && !isU64(v)) throw refuse('', field, v);
  }
  for (const h of req.held_replicas ?? []) {
    if (!isU64(h.peer_id)) throw refuse(`for region ${h.region_id} held closed `, 'peer_id', h.peer_id);
    if (Number(h.peer_id) === 0) throw new RegionDbError(ErrorCode.InvalidArgument, `node ${nodeId} reported region ${h.region_id} held closed under peer id 0 (a peer id is positive); the whole report is refused`);
  }
  for (const stat of req.replicas ?? []) {
    const where = `for region ${stat.region_id} `;
    for (const field of ['peer_id', 'term', 'leader_node_id', 'applied_index', 'commit_index'] as const) {
      if (!isU64(stat[field])) throw refuse(where, field, stat[field]);
    }
    for (const field of ['flushed_index', 'conf_index'] as const) {
      const v = stat[field];
      if (v !== undefined && v !== null && !isU64(v)) throw refuse(where, field, v);
    }
    for (const field of ['voters', 'learners'] as const) {
      const list = stat[field] ?? [];
      if (!Array.isArray(list)) throw refuse(where, field, list);
      const wrong = list.find((v) => !isU64(v));
      if (wrong !== undefined) throw refuse(where, `${field} entry`, wrong);
    }
    const members = stat.members ?? [];
    if (!Array.isArray(members)) throw refuse(where, 'members', members);
    for (const m of members) {
      for (const field of ['peer_id', 'node_id'] as const) if (!isU64(m?.[field])) throw refuse(where, `members entry ${field}`, m?.[field]);
    }
    for (const field of ['role', 'health', 'failure'] as const) {
      const v = stat[field];
      if (v !== undefined && v !== null && typeof v !== 'string') {
        throw new RegionDbError(ErrorCode.InvalidArgument, `node ${nodeId} reported ${where}${field} of type ${typeof v}, not a string; the whole report is refused`);
      }
    }
  }
}

/**
 * A registration's or heartbeat's start (common/store-id.ts `recordStart`), or undefined for a
 * datanode that does not count starts (0). A malformed count is INVALID_ARGUMENT (u64).
 */
function startOf(countField: string | number | undefined, idField: string | undefined): { count: number; id: string } | undefined {
  const count = u64(countField ?? '0', 'start_count');
  if (count === 0) return undefined;
  return { count, id: str(idField ?? '', 'start_id', 64) };
}

/** A registration's start with what its data dir vouches for (RegisterNodeRequest.known_start_ids). */
interface RegisteringStart {
  readonly count: number;
  readonly id: string;
  readonly known: readonly string[];
  readonly confirmedCount: number;
}

function registeringStart(req: RegisterNodeRequest__Output): RegisteringStart | undefined {
  const start = startOf(req.start_count, req.start_id);
  if (!start) return undefined;
  const known = req.known_start_ids ?? [];
  if (known.length > 1_000) throw new RegionDbError(ErrorCode.InvalidArgument, `known_start_ids: ${known.length} ids, at most 1000`);
  return { ...start, known: known.map((id, i) => str(id, `known_start_ids[${i}]`, 64)), confirmedCount: u64(req.confirmed_start_count ?? '0', 'confirmed_start_count') };
}
