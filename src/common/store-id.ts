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
/** At most this many starts since the last answered registration are remembered (the oldest go first). */
export const UNCONFIRMED_STARTS_MAX = 100;

/** One start of a datanode on its data dir: the dir's start count and the start's random id. */
export interface StartId {
  readonly count: number;
  readonly id: string;
}

/**
 * This start, and what the data dir vouches for: the last start whose registration the metasrv
 * answered (`confirmed`), and every start since (`unconfirmed`, this one last). The metasrv
 * records the newest start it registered per node; a dir that does not know that start — not
 * its confirmed one, not one of those since — while its own confirmed start is not newer, is a
 * restored copy of the dir (a volume snapshot, a backup of the dir, a stale disk put back): its
 * replicas have forgotten votes they cast and entries they acknowledged since the copy, and must
 * never answer raft (docs/failover.md, "A data dir restored from a copy").
 */
export interface StartRecord extends StartId {
  readonly confirmed: StartId | undefined;
  readonly unconfirmed: readonly StartId[];
}

/**
 * Reads the data dir's starts and records the next one (count + 1, a new random id), durably,
 * before returning it. A dir without the file (first start, or a build before start counts)
 * starts at 1 with nothing confirmed. A damaged file refuses the start: a guess could hide a copy.
 */
export function recordStart(dataDir: string): StartRecord {
  const record = nextStart(readStarts(dataDir), randomUUID());
  writeStarts(dataDir, record);
  return record;
}

/** The metasrv answered this start's registration: it is the dir's confirmed start from now on (durably). */
export function confirmStart(dataDir: string, start: StartId): StartRecord {
  const record = confirmedStart(start);
  writeStarts(dataDir, record);
  return record;
}

/** The start after `previous` (undefined: none recorded), with the id `id`: what recordStart writes. */
export function nextStart(previous: StartRecord | undefined, id: string): StartRecord {
  const next: StartId = { count: (previous?.count ?? 0) + 1, id };
  return { ...next, confirmed: previous?.confirmed, unconfirmed: [...(previous?.unconfirmed ?? []), next].slice(-UNCONFIRMED_STARTS_MAX) };
}

/** `start` confirmed: what confirmStart writes. */
export function confirmedStart(start: StartId): StartRecord {
  return { count: start.count, id: start.id, confirmed: { count: start.count, id: start.id }, unconfirmed: [] };
}

function writeStarts(dataDir: string, record: StartRecord): void {
  writeFileDurably(join(dataDir, STARTS_FILE), `${JSON.stringify({ count: record.count, id: record.id, confirmed: record.confirmed ?? null, unconfirmed: record.unconfirmed })}\n`);
}

function readStarts(dataDir: string): StartRecord | undefined {
  const file = join(dataDir, STARTS_FILE);
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8');
  const damaged = () =>
    new RegionDbError(ErrorCode.Corruption, `${file} is damaged (${JSON.stringify(text.slice(0, 64))}); it records this data dir's starts for the metasrv and must not be edited`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw damaged();
  }
  const isStart = (v: unknown): v is StartId =>
    typeof v === 'object' && v !== null && Number.isSafeInteger((v as StartId).count) && (v as StartId).count > 0 && typeof (v as StartId).id === 'string' && /^[A-Za-z0-9-]{1,64}$/.test((v as StartId).id);
  const r = parsed as { confirmed?: unknown; unconfirmed?: unknown };
  if (!isStart(parsed) || !(r.confirmed === null || isStart(r.confirmed)) || !Array.isArray(r.unconfirmed) || !r.unconfirmed.every(isStart)) throw damaged();
  return { count: parsed.count, id: parsed.id, confirmed: (r.confirmed as StartId | null) ?? undefined, unconfirmed: r.unconfirmed as StartId[] };
}

/** A start some witness outside the data dir saw answered (the object store's `start-witness.ts`). */
export interface WitnessedStart extends StartId {
  readonly storeId: string;
}

/**
 * K2 (docs/failover.md, "A data dir restored from a copy"): K1's rule with a witness that a
 * catalog restore does not roll back. Why this dir, starting as `start` with store `storeId`, is
 * a restored copy — a start of its store the witness saw answered that the dir does not vouch
 * for (not its confirmed start, not one since), at or past the dir's confirmed count (at the same
 * count another id: the dir and another copy of it diverged) — or undefined. A start is recorded
 * only after the dir confirmed it durably, so the real dir vouches for every recorded start at or
 * past its confirmed one. Another store's starts are not compared (a wiped node is a new store).
 * Pure.
 */
export function copyByWitness(start: StartRecord, storeId: string, witnessed: readonly WitnessedStart[]): string | undefined {
  const vouched = new Set([...(start.confirmed ? [start.confirmed.id] : []), ...start.unconfirmed.map((s) => s.id), start.id]);
  const confirmedCount = start.confirmed?.count ?? 0;
  let unknown: WitnessedStart | undefined;
  for (const w of witnessed) {
    if (w.storeId !== storeId || vouched.has(w.id) || w.count < confirmedCount) continue;
    if (unknown === undefined || w.count > unknown.count || (w.count === unknown.count && w.id < unknown.id)) unknown = w;
  }
  if (unknown === undefined) return undefined;
  return `the object store records start ${unknown.count} (${unknown.id}) of store ${storeId} as registered, which this data dir does not know (it is at start ${start.count}, its last registered start ${confirmedCount})`;
}
