// The standby promotion record as objects in the site's object store (`[storage]`;
// docs/replication.md, "The promotion record"): the catalog's `standbyPromotion` alone is lost
// with the catalog, and a metasrv started on an empty data dir or from an older copy would answer
// "no promotion" — a standby node that missed the promotion would then answer a returning old
// primary "standby" (finding D9 reopened; D11 in docs/correctness.md).
//
// One object per recorded (epoch, cut): `meta/standby-promotion-<epoch, 15 digits>-<cut ms, 15
// digits>`, never rewritten with other bytes, never deleted by the metasrv. Epoch and cut are at
// most 15 digits (RecordStandbyPromotion refuses more), and keys are read by their numbers; an S3 store needs no conditional write: a retry puts the
// same bytes under the same key, and only the acting metasrv writes. Each object is versioned,
// CRC32C-checked and names its cluster id (as the catalog copies do): an object of another cluster
// is refused, never taken up or passed over.
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { ObjectStore } from '../object-store/index.js';
import { frameJson, unframeJson } from './record-object.js';
import type { StandbyPromotion } from './catalog.js';

export const PROMOTION_OBJECT_PREFIX = 'meta/standby-promotion-';
const KEY_DIGITS = 15;
/** The largest epoch or cut a record may have: its key's 15 digits (RecordStandbyPromotion refuses more). */
export const PROMOTION_NUMBER_MAX = 999_999_999_999_999;

export function promotionObjectKey(record: StandbyPromotion): string {
  const digits = (n: number) => String(n).padStart(KEY_DIGITS, '0');
  return `${PROMOTION_OBJECT_PREFIX}${digits(record.epoch)}-${digits(record.cutMs)}`;
}

export function encodePromotionObject(clusterId: string, record: StandbyPromotion): Uint8Array {
  assert(Number.isSafeInteger(record.epoch) && record.epoch >= 1 && record.epoch <= PROMOTION_NUMBER_MAX, 'a recorded epoch is >= 1 and fits its key');
  assert(Number.isSafeInteger(record.cutMs) && record.cutMs >= 0 && record.cutMs <= PROMOTION_NUMBER_MAX, 'a recorded cut is >= 0 and fits its key');
  return frameJson({ clusterId, epoch: record.epoch, cutMs: record.cutMs });
}

export function decodePromotionObject(bytes: Uint8Array, key: string): { clusterId: string; record: StandbyPromotion } {
  const corrupt = (why: string) => new RegionDbError(ErrorCode.Corruption, `promotion record object ${key}: ${why}`);
  const parsed = unframeJson(bytes, corrupt); // the WAL's record framing: version, crc32c, length (docs/style.md S6)
  const p = parsed as { clusterId?: unknown; epoch?: unknown; cutMs?: unknown };
  if (typeof p.clusterId !== 'string' || !Number.isSafeInteger(p.epoch) || (p.epoch as number) < 1 || !Number.isSafeInteger(p.cutMs) || (p.cutMs as number) < 0) {
    throw corrupt('not a promotion record (clusterId, epoch >= 1, cutMs >= 0)');
  }
  const record = { epoch: p.epoch as number, cutMs: p.cutMs as number };
  if (promotionObjectKey(record) !== key) throw corrupt(`holds epoch ${record.epoch} cut ${record.cutMs}, which its key does not name`);
  return { clusterId: p.clusterId, record };
}

/** Puts the record's object (durable when the store's put resolves: fsync + rename, or S3's answer). */
export async function writePromotionObject(store: ObjectStore, clusterId: string, record: StandbyPromotion): Promise<string> {
  const key = promotionObjectKey(record);
  await store.put(key, encodePromotionObject(clusterId, record));
  return key;
}

/**
 * Every promotion recorded in the store at its highest epoch (empty: none), sorted by cut. Keys
 * are compared by their numbers, not as text. Every object at that epoch is read: one that is
 * damaged, names another cluster, or whose key is not a record's throws — the caller cannot tell
 * what was recorded, so it must not answer as if nothing was. More than one cut at the top epoch
 * is returned as found: the caller decides with its catalog (MetasrvCore.readPromotionObjects,
 * docs/replication.md "The record in the object store").
 */
export async function newestPromotionObjects(store: ObjectStore, clusterId: string): Promise<{ key: string; record: StandbyPromotion }[]> {
  const named: { key: string; epoch: number }[] = [];
  for (const { key } of await store.list(PROMOTION_OBJECT_PREFIX)) {
    const m = /^(\d+)-(\d+)$/.exec(key.slice(PROMOTION_OBJECT_PREFIX.length));
    if (!m) throw new RegionDbError(ErrorCode.Corruption, `${key} is not a promotion record object's key (${PROMOTION_OBJECT_PREFIX}<epoch>-<cut ms>)`);
    named.push({ key, epoch: Number(m[1]) });
  }
  const topEpoch = Math.max(0, ...named.map((n) => n.epoch));
  const found: { key: string; record: StandbyPromotion }[] = [];
  for (const { key } of named.filter((n) => n.epoch === topEpoch)) {
    const { clusterId: owner, record } = decodePromotionObject(await store.get(key), key);
    if (owner !== clusterId) {
      throw new RegionDbError(ErrorCode.Config, `the promotion record object ${key} belongs to cluster "${owner}", not "${clusterId}": wrong [storage]?`);
    }
    found.push({ key, record });
  }
  return found.sort((a, b) => a.record.cutMs - b.record.cutMs);
}
