// The metasrv catalog: tables, their regions, where each region's replicas live, and the
// datanodes. The decisions (placement, id allocation) are pure functions of the catalog; the
// metasrv persists the whole catalog after every change (catalog-store.ts).
//
// Raft stays the source of truth for who leads a region (docs/raft-rules.md R22): `leaderNodeId` here
// is only the last leader a datanode reported, used as a routing hint.
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { TableSchema } from '../engine/schema.js';
import type { ProcedureRecord, UnreadableProcedure } from './procedures/record.js';

/** A table in the catalog is exactly the engine's schema (one definition, src/engine/schema.ts). */
export type TableDef = TableSchema;

export interface ReplicaPlacement {
  /** Raft peer id: unique across the cluster and never reused (docs/raft.md). */
  readonly peerId: number;
  readonly nodeId: number;
  /**
   * Why this replica's local state is gone or untrusted (its datanode came back on a new store,
   * or it reported itself failed). A lost replica is never opened again under its peer id (a
   * wiped replica would have forgotten its votes, docs/raft.md); repair-replica replaces it.
   */
  lost?: string;
}

export interface RegionDef {
  readonly regionId: string;
  readonly tableName: string;
  readonly regionNumber: number;
  replicas: ReplicaPlacement[];
  /** Routing hint only. */
  leaderNodeId: number;
  /** Bumped on every membership change of the region (fencing of stale replicas). */
  confVersion: number;
  /**
   * The raft group's membership version (log index of its applied configuration, reported by
   * its leader) at which the catalog last matched the group. A group reporting a different
   * membership at a higher index is newer than the catalog, which then follows the group
   * (reconcile.ts R2). Absent in catalogs written before it existed: 0.
   */
  confIndex?: number;
  /**
   * Set once any replica reported applied state. Before that, opening a replica writes the
   * initial membership into its log (bootstrap); after it, never — a replica with no data must
   * catch up from the others or be recovered from the object store (`regiondb recover`).
   */
  bootstrapped?: boolean;
}

export interface NodeDef {
  readonly nodeId: number;
  addr: string;
  httpAddr: string;
  lastHeartbeatMs: number;
  state: 'alive' | 'suspect' | 'dead' | 'draining';
  /** The identity of the node's data dir (store) last registered; a different one is a new incarnation. */
  storeId?: string;
  /**
   * The newest start of that store registered (its data dir's start count and the start's random
   * id, common/store-id.ts `recordStart`); a registration of the same store at a start seen passed
   * is a restored copy of the dir, refused. Absent: none counted yet (a datanode or a catalog
   * from before start counts).
   */
  startCount?: number;
  startId?: string;
}

export interface CatalogState {
  version: number;
  clusterId: string;
  nextTableId: number;
  nextPeerId: number;
  tables: Record<string, TableDef>;
  regions: Record<string, RegionDef>;
  nodes: Record<string, NodeDef>;
  /** Procedures (running and recent), saved with the catalog so a step and its catalog change are atomic. */
  procedures: Record<string, ProcedureRecord>;
  nextProcedureId: number;
  /**
   * Stored procedure records this version cannot run (unknown kind or step, malformed data),
   * set aside when the catalog was loaded: kept as they were, shown in status, never run.
   */
  unreadableProcedures?: Record<string, UnreadableProcedure>;
  /**
   * Regions of dropped tables (region id → drop time, ms): their replicas are deleted wherever
   * they are reported. A region this catalog never knew is left alone (reconcile.ts R1).
   */
  droppedRegions?: Record<string, number>;
  /**
   * Tables being dropped (name → when the drop started, ms): DropTable marked them and has not yet
   * fenced every region (docs/ddl.md). They stay in `tables` until it has; the tick resumes them.
   */
  droppingTables?: Record<string, number>;
  /**
   * Regions of tables being dropped whose drop fence a FenceRegion answered (region id → the
   * fence's index): a resumed drop does not fence them again (review finding F2). A recovery
   * from the object store forgets its regions' entries (the recovered group may lack the fence);
   * dropping the table removes them. A field of its own, not inside `droppingTables`, so that a
   * catalog of either build decodes in the other (an older build leaves it alone).
   */
  fencedRegions?: Record<string, number>;
  /** The request token each table was created with (MetaCreateTableRequest.request_token), if any: a retry with it is answered with the table. */
  createTokens?: Record<string, string>;
  /**
   * DropTable request tokens (MetaDropTableRequest.request_token → the drop it asked for), the
   * newest DROP_TOKENS_MAX: a retry with one is answered from that drop — joining it while the
   * table of that id is being dropped, success once it is gone — and never drops another table
   * (docs/ddl.md, "A DropTable sent again"). Kept after the drop: that is when a retry needs them.
   */
  dropTokens?: Record<string, DropToken>;
  /**
   * Dual active-standby: the highest promotion of this (standby) cluster, written by `regiondb
   * standby promote` before it tells any datanode to promote (docs/replication.md, "The promotion
   * record"). Only grows in epoch. A standby datanode that knows no promotion of its own reads it
   * before it answers a primary's fence check "standby". Absent until the first promotion (the
   * catalog's bytes are unchanged without one); an older build leaves the field alone.
   */
  standbyPromotion?: StandbyPromotion;
}

/** A promotion recorded in the catalog (epoch, cut): see `CatalogState.standbyPromotion`. */
export interface StandbyPromotion {
  readonly epoch: number;
  readonly cutMs: number;
}

/** What a DropTable request token asked for: the table of that name and id, and its region count. */
export interface DropToken {
  readonly name: string;
  readonly tableId: number;
  readonly regions: number;
  /** When the drop was asked for (ms, the procedure clock): for status and debugging. */
  readonly atMs: number;
}

/** DropTable tokens remembered (the oldest forgotten first): far more drops than any retry window holds. */
export const DROP_TOKENS_MAX = 1000;

export const REPLICATION_FACTOR = 3;

/**
 * A keyed map of the catalog (`tables`, `regions`, `nodes`, `procedures`, `droppedRegions`,
 * `createTokens`, `unreadableProcedures`): an object without a prototype, holding `entries` in
 * their order. Its keys come from outside — table names from clients, region and node ids from
 * heartbeats — and with no prototype, no key (`constructor`, `toString`, `__proto__`) reads an
 * inherited member, whatever lookup a caller writes. JSON.stringify writes it exactly as it
 * writes a plain object with the same entries, so the stored catalog's bytes are unchanged.
 */
export function ownMap<V>(entries?: Readonly<Record<string, V>>): Record<string, V> {
  const map = Object.create(null) as Record<string, V>;
  if (entries) for (const key of Object.keys(entries)) map[key] = entries[key]!;
  return map;
}

const isPlainMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Gives every keyed map of `state` no prototype (ownMap), in place, keeping each map's entries
 * and order and the catalog's field order: decoded catalogs (catalog-store.ts) pass through it.
 * A field that is absent stays absent; one that is not an object is left for the decoder's checks.
 */
export function withOwnMaps(state: CatalogState): CatalogState {
  const s = state as unknown as Record<string, unknown>;
  for (const field of ['tables', 'regions', 'nodes', 'procedures', 'droppedRegions', 'createTokens', 'unreadableProcedures', 'droppingTables', 'fencedRegions', 'dropTokens']) {
    const value = s[field];
    if (isPlainMap(value)) s[field] = ownMap(value);
  }
  return state;
}

export function emptyCatalog(clusterId: string): CatalogState {
  return { version: 0, clusterId, nextTableId: 1024, nextPeerId: 1, tables: ownMap(), regions: ownMap(), nodes: ownMap(), procedures: ownMap(), nextProcedureId: 1 };
}

/**
 * The table of that name, if the catalog has one. The catalog's maps have no prototype (ownMap);
 * the own-entry check stays for catalogs built by hand (tests) with plain objects.
 */
export function tableNamed(catalog: CatalogState, name: string): TableDef | undefined {
  return Object.hasOwn(catalog.tables, name) ? catalog.tables[name] : undefined;
}

/** The region of that id, if the catalog has one (own entries only, as tableNamed). */
export function regionWithId(catalog: CatalogState, regionId: string): RegionDef | undefined {
  return Object.hasOwn(catalog.regions, regionId) ? catalog.regions[regionId] : undefined;
}

/** When the region of that id was dropped, if the catalog remembers it (own entries only, as tableNamed). */
export function droppedAt(catalog: CatalogState, regionId: string): number | undefined {
  const dropped = catalog.droppedRegions;
  return dropped !== undefined && Object.hasOwn(dropped, regionId) ? dropped[regionId] : undefined;
}

/** When the drop of the table of that name started, if it is being dropped (own entries only, as tableNamed). */
export function droppingSince(catalog: CatalogState, name: string): number | undefined {
  const dropping = catalog.droppingTables;
  return dropping !== undefined && Object.hasOwn(dropping, name) ? dropping[name] : undefined;
}

/** The recorded drop fence index of the region of that id, if a FenceRegion answered it (own entries only, as tableNamed). */
export function fencedIndexOf(catalog: CatalogState, regionId: string): number | undefined {
  const fenced = catalog.fencedRegions;
  return fenced !== undefined && Object.hasOwn(fenced, regionId) ? fenced[regionId] : undefined;
}

/**
 * The drop a DropTable request token asked for, if the catalog remembers it (own entries only, as
 * tableNamed). An entry not of the written shape (a hand-edited catalog) reads as remembered for no
 * table: refused, never taken for a fresh drop of whatever table has the name now.
 */
export function dropTokenOf(catalog: CatalogState, token: string): DropToken | 'malformed' | undefined {
  const tokens = catalog.dropTokens;
  if (tokens === undefined || !Object.hasOwn(tokens, token)) return undefined;
  const t = tokens[token] as Partial<DropToken> | undefined;
  const ok = typeof t === 'object' && t !== null && typeof t.name === 'string' && Number.isSafeInteger(t.tableId) && Number.isSafeInteger(t.regions);
  return ok ? (t as DropToken) : 'malformed';
}

/** Records a DropTable request token (a copy of the map, as the other fields), forgetting the oldest past DROP_TOKENS_MAX. */
export function rememberDropToken(catalog: CatalogState, token: string, drop: DropToken): void {
  const tokens = ownMap(catalog.dropTokens);
  delete tokens[token];
  tokens[token] = drop;
  const keys = Object.keys(tokens);
  for (let i = 0; i < keys.length - DROP_TOKENS_MAX; i++) delete tokens[keys[i]!];
  catalog.dropTokens = tokens;
}

/** Forgets the recorded drop fences of `regionIds`; whether there were any. */
export function forgetFences(catalog: CatalogState, regionIds: readonly string[]): boolean {
  const fenced = catalog.fencedRegions;
  if (!fenced || !regionIds.some((id) => Object.hasOwn(fenced, id))) return false;
  const kept = ownMap(fenced);
  for (const id of regionIds) delete kept[id];
  catalog.fencedRegions = kept;
  return true;
}

/** GreptimeDB-style region id: table_id << 32 | region_number, as a decimal string (uint64). */
export function makeRegionId(tableId: number, regionNumber: number): string {
  return ((BigInt(tableId) << 32n) | BigInt(regionNumber)).toString();
}

/** Decimal digits of a uint64, without a leading zero; at most 20 digits (2^64 - 1 has 20). */
const REGION_ID = /^(?:0|[1-9][0-9]{0,19})$/;
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * True when `regionId` is a region id as makeRegionId writes it: a uint64 in canonical decimal.
 * Anything else (`abc`, `1.5`, `0x10`, ` 12`, `012`, an empty string, 2^64) names no region and
 * must not reach BigInt or Number, which throw on some and read others as another number.
 */
export function isRegionId(regionId: string): boolean {
  return REGION_ID.test(regionId) && (regionId.length < 20 || BigInt(regionId) <= UINT64_MAX);
}

/**
 * Every region of the catalog, in the order regionList(catalog) gives. `regions` is an
 * object with thousands of keys, and V8's Object.values over such a dictionary costs 3–5× what
 * listing its keys and looking each up does (at 5,000 regions 8.8 against 2.2 ms per call on the
 * 2-core test machine; the metasrv enumerates the regions on every heartbeat and tick).
 */
export function regionList(catalog: CatalogState): RegionDef[] {
  const regions = catalog.regions;
  const keys = Object.keys(regions);
  const out = new Array<RegionDef>(keys.length);
  for (let i = 0; i < keys.length; i++) out[i] = regions[keys[i]!]!;
  return out;
}

export function regionsOfTable(catalog: CatalogState, tableName: string): RegionDef[] {
  return regionList(catalog)
    .filter((r) => r.tableName === tableName)
    .sort((a, b) => a.regionNumber - b.regionNumber);
}

export function replicaCountByNode(catalog: CatalogState): Map<number, number> {
  const counts = new Map<number, number>();
  for (const node of Object.values(catalog.nodes)) counts.set(node.nodeId, 0);
  for (const region of regionList(catalog)) {
    for (const r of region.replicas) counts.set(r.nodeId, (counts.get(r.nodeId) ?? 0) + 1);
  }
  return counts;
}

/**
 * Picks `count` distinct healthy nodes with the fewest replicas (ties by node id, so placement
 * is deterministic), excluding `exclude`.
 */
export function pickNodes(catalog: CatalogState, count: number, exclude: ReadonlySet<number>, load: Map<number, number>): number[] {
  const candidates = Object.values(catalog.nodes)
    .filter((n) => n.state === 'alive' && !exclude.has(n.nodeId))
    .map((n) => n.nodeId)
    .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b);
  if (candidates.length < count) {
    throw new RegionDbError(
      ErrorCode.Unavailable,
      `need ${count} healthy datanodes for placement, only ${candidates.length} available`,
    );
  }
  return candidates.slice(0, count);
}

/** ALREADY_EXISTS if the catalog has a table named `name`. */
export function refuseExistingTable(catalog: CatalogState, name: string): void {
  if (tableNamed(catalog, name)) throw new RegionDbError(ErrorCode.AlreadyExists, `table ${name} already exists`);
}

/** Adds a table and places each region's replicas on distinct nodes. Mutates `catalog`. */
export function addTable(
  catalog: CatalogState,
  table: Omit<TableDef, 'tableId'>,
  replicationFactor: number,
  reservedTableId?: number,
): { table: TableDef; regions: RegionDef[] } {
  refuseExistingTable(catalog, table.name);
  assert(table.regionCount > 0, 'regionCount must be positive');
  // A reserved id (taken from the allocator before, metasrv-core's createTable) or the next one.
  assert(reservedTableId === undefined || reservedTableId < catalog.nextTableId, 'a reserved table id was taken from the allocator');
  const tableId = reservedTableId ?? catalog.nextTableId++;
  const def: TableDef = { ...table, tableId };
  const load = replicaCountByNode(catalog);
  const regions: RegionDef[] = [];
  for (let regionNumber = 0; regionNumber < table.regionCount; regionNumber++) {
    const nodes = pickNodes(catalog, replicationFactor, new Set(), load);
    const replicas = nodes.map((nodeId) => {
      load.set(nodeId, (load.get(nodeId) ?? 0) + 1);
      return { peerId: catalog.nextPeerId++, nodeId };
    });
    const region: RegionDef = {
      regionId: makeRegionId(tableId, regionNumber),
      tableName: table.name,
      regionNumber,
      replicas,
      leaderNodeId: 0,
      confVersion: 1,
      bootstrapped: false,
    };
    catalog.regions[region.regionId] = region;
    regions.push(region);
  }
  catalog.tables[table.name] = def;
  catalog.version++;
  return { table: def, regions };
}

export function dropTable(catalog: CatalogState, tableName: string, nowMs: number): RegionDef[] {
  if (!tableNamed(catalog, tableName)) throw new RegionDbError(ErrorCode.NotFound, `table ${tableName} does not exist`);
  const regions = regionsOfTable(catalog, tableName);
  catalog.droppedRegions ??= ownMap();
  for (const r of regions) {
    delete catalog.regions[r.regionId];
    catalog.droppedRegions[r.regionId] = nowMs;
  }
  delete catalog.tables[tableName];
  if (catalog.createTokens) delete catalog.createTokens[tableName];
  if (catalog.droppingTables) delete catalog.droppingTables[tableName];
  forgetFences(catalog, regions.map((r) => r.regionId));
  if (catalog.fencedRegions && Object.keys(catalog.fencedRegions).length === 0) delete catalog.fencedRegions;
  catalog.version++;
  return regions;
}
