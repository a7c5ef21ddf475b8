// Persists the metasrv catalog in its own LevelDB: one record, rewritten with sync after every
// change (the catalog is small: tables, regions, nodes). The record is versioned and
// CRC32C-checked; a damaged record stops the metasrv with a precise message. LevelDB's own log is
// checked before LevelDB replays it (src/wal/leveldb-log.ts): the newest saves live there, and
// LevelDB would drop a damaged one without a word, opening the catalog as the save before it.
import { Level } from 'level';
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { refuseDamagedLevelDbLogs } from '../wal/leveldb-log.js';
import { type CatalogState, emptyCatalog, ownMap, withOwnMaps } from './catalog.js';
import { readProcedureRecords } from './procedures/record.js';

const CATALOG_KEY = 'catalog';
const FORMAT_VERSION = 1;

export function encodeCatalog(state: CatalogState): Uint8Array {
  const payload = new TextEncoder().encode(JSON.stringify(state));
  const out = new Uint8Array(9 + payload.byteLength);
  const view = new DataView(out.buffer);
  out[0] = FORMAT_VERSION;
  view.setUint32(1, crc32c(payload));
  view.setUint32(5, payload.byteLength);
  out.set(payload, 9);
  return out;
}

export function decodeCatalog(bytes: Uint8Array, where: string): CatalogState {
  if (bytes.byteLength < 9) throw corrupt(where, `record is ${bytes.byteLength} bytes, shorter than its header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== FORMAT_VERSION) throw corrupt(where, `unsupported format version ${bytes[0]}`);
  const length = view.getUint32(5);
  if (length !== bytes.byteLength - 9) throw corrupt(where, `length ${length} does not match record size ${bytes.byteLength - 9}`);
  const payload = bytes.subarray(9);
  const stored = view.getUint32(1);
  const computed = crc32c(payload);
  if (stored !== computed) {
    throw corrupt(where, `crc32c mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
  }
  let state: unknown;
  try {
    state = JSON.parse(new TextDecoder().decode(payload));
  } catch (err) {
    throw corrupt(where, `invalid JSON (${(err as Error).message})`);
  }
  const isMap = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  const s = state as Record<string, unknown>;
  if (!isMap(s) || typeof s['clusterId'] !== 'string' || !isMap(s['tables']) || !isMap(s['regions']) || !isMap(s['nodes'])) {
    throw corrupt(where, 'not a catalog (clusterId, tables, regions, nodes)');
  }
  return withOwnMaps(state as CatalogState);
}

/**
 * Brings a decoded catalog to the current layout: fields added since it was written get their
 * defaults, and procedure records are read into their typed form (procedures/record.ts: the
 * re-send time moves out of the kind's data). A record this version cannot run is set aside in
 * `unreadableProcedures` with the reason, so one bad record neither stops the metasrv nor is
 * retried on every tick.
 */
export function upgradeCatalog(state: CatalogState): CatalogState {
  const { procedures, unreadable } = readProcedureRecords(state.procedures as unknown); // catalogs written before procedures existed: none
  state.procedures = ownMap(procedures);
  if (Object.keys(unreadable).length > 0) state.unreadableProcedures = ownMap({ ...state.unreadableProcedures, ...unreadable });
  state.nextProcedureId ??= 1;
  for (const region of Object.values(state.regions)) region.bootstrapped ??= true; // written before the flag: long opened
  return state;
}

function corrupt(where: string, why: string): RegionDbError {
  return new RegionDbError(ErrorCode.Corruption, `metasrv catalog ${where} is damaged: ${why}`);
}

/** The catalog of a single metasrv, in its own LevelDB (the `CatalogStorage` of metasrv-core.ts). */
export class CatalogStore {
  private constructor(
    private db: Level<string, Uint8Array>,
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  static async open(dir: string, log: Logger): Promise<CatalogStore> {
    refuseDamagedLevelDbLogs(
      dir,
      {
        what: 'metasrv catalog',
        dropped: 'LevelDB would drop that record (a synced catalog save) without a word and open the catalog as it was before it, so the metasrv does not start',
        action: 'Move the data directory aside and start from the newest catalog copy in the object store (regiondb meta seed, docs/metasrv-ha.md), or from a backup of the directory',
      },
      log,
    );
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.open();
    return new CatalogStore(db, dir, log);
  }

  async load(clusterId: string): Promise<CatalogState> {
    const bytes = await this.db.get(CATALOG_KEY);
    if (bytes === undefined) return emptyCatalog(clusterId);
    const state = decodeCatalog(bytes, `in ${this.dir}`);
    if (state.clusterId !== clusterId) {
      throw new RegionDbError(
        ErrorCode.Config,
        `metasrv data in ${this.dir} belongs to cluster "${state.clusterId}", but the config says "${clusterId}"`,
      );
    }
    return upgradeCatalog(state);
  }

  async save(state: CatalogState): Promise<void> {
    await this.db.put(CATALOG_KEY, encodeCatalog(state), { sync: true });
  }

  /** After a failed write: LevelDB refuses every write after one failed, so the database is closed and opened again. */
  async reopen(): Promise<void> {
    await this.db.close().catch(() => {}); // a database whose write failed may not close cleanly; it is replaced either way
    this.db = (await CatalogStore.open(this.dir, this.log)).db;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
