// The identity of a datanode's data directory (its "store"), created once, at the first start on
// that directory, and kept in it. The metasrv compares it with the one it recorded for the node
// id: a different, freshly created store id means the node came back without its data (new
// disk, wrong data_dir, wiped container) — a new incarnation whose old replicas must never be
// reopened under their old peer ids (they would have forgotten their votes, docs/raft.md).
//
// Upgrade: a data dir that already holds a WAL but no store-id file (written by a version before
// store ids) gets an id prefixed `adopted-`: the data is there, so the metasrv treats it as the
// same incarnation and only records the id.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileDurably } from './durable-file.js';
import { ErrorCode, RegionDbError } from './errors.js';

export const STORE_ID_FILE = 'store-id';
/** Prefix of a store id created for a data dir that already held data (same incarnation). */
export const ADOPTED_STORE_PREFIX = 'adopted-';
const STORE_ID_BYTES_MAX = 128;

export type StoreIdOrigin = 'existing' | 'fresh' | 'adopted';

/** True when a store id was created on an empty data dir (not adopted for existing data). */
export function isFreshStoreId(storeId: string): boolean {
  return storeId !== '' && !storeId.startsWith(ADOPTED_STORE_PREFIX);
}

/**
 * Reads the data dir's store id, or creates it: `fresh` on an empty dir, `adopted` when the dir
 * already holds a WAL (`walDir`, non-empty). Call before anything else writes to the data dir.
 * The file is written atomically: temp file, fsync, rename, fsync of the directory.
 */
export function loadOrCreateStoreId(dataDir: string, walDir: string): { storeId: string; origin: StoreIdOrigin } {
  const file = join(dataDir, STORE_ID_FILE);
  if (existsSync(file)) {
    const storeId = readFileSync(file, 'utf8').trim();
    if (storeId === '' || storeId.length > STORE_ID_BYTES_MAX || !/^[A-Za-z0-9-]+$/.test(storeId)) {
      throw new RegionDbError(ErrorCode.Corruption, `${file} is damaged (${JSON.stringify(storeId.slice(0, 64))}); it names this data dir to the metasrv and must not be edited`);
    }
    return { storeId, origin: 'existing' };
  }
  const hasData = existsSync(walDir) && readdirSync(walDir).length > 0;
  const storeId = `${hasData ? ADOPTED_STORE_PREFIX : ''}${randomUUID()}`;
  writeFileDurably(file, `${storeId}\n`);
  return { storeId, origin: hasData ? 'adopted' : 'fresh' };
}
