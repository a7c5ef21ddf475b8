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

export const STARTS_FILE = 'starts';

/**
 * One start of a datanode on its data dir: the dir's start count (1 at the first start that
 * recorded one) and a random id of this start. Both are made durable in the dir before the node
 * does anything else, and sent to the metasrv, which records the newest start it saw per node. A
 * dir that comes back with a start the metasrv has already seen passed — a lower count, or the
 * same count under another id — is a restored copy of the dir (a volume snapshot, a backup of the
 * dir, a stale disk put back): its replicas have forgotten votes they cast and entries they
 * acknowledged since the copy, and must never answer raft (docs/failover.md, "A data dir restored
 * from a copy").
 */
export interface StartRecord {
  readonly count: number;
  readonly id: string;
}

/**
 * Reads the data dir's last start and records the next one (count + 1, a new id), durably,
 * before returning it. A dir without the file (first start, or written by a build before start
 * counts) starts at 1. A damaged file refuses the start: guessing a count could hide a copy.
 */
export function recordStart(dataDir: string): StartRecord {
  const file = join(dataDir, STARTS_FILE);
  let previous = 0;
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8').trim();
    const match = /^(\d{1,15}) [A-Za-z0-9-]{1,64}$/.exec(text);
    if (!match) {
      throw new RegionDbError(ErrorCode.Corruption, `${file} is damaged (${JSON.stringify(text.slice(0, 64))}); it counts this data dir's starts for the metasrv and must not be edited`);
    }
    previous = Number(match[1]);
  }
  const start: StartRecord = { count: previous + 1, id: randomUUID() };
  writeFileDurably(file, `${start.count} ${start.id}\n`);
  return start;
}
