// A region's manifest: what is durable in the object store at its flushed index — the SSTs,
// the client dedup table at that index, and the raft position (index, term, membership) — so
// a region can be rebuilt from the object store alone, and so a raft snapshot can be this small
// record instead of the data (followers fetch the SSTs themselves).
//
// Encoding: [format u8][crc32c u32 of the JSON][JSON]. Object key:
//   regions/<regionId>/manifest/<flushedIndex as 16 hex digits>.manifest
// Each flush writes a full manifest (a checkpoint; they are small), older ones are pruned.
// Replicas also publish their own raft snapshot (the same encoding) under
//   regions/<regionId>/replica-snapshot/<peerId as 16 hex>-<snapshot index as 16 hex>.manifest
// for the leader's SST GC; recovery never reads those.
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { ObjectStore } from '../object-store/object-store.js';
import type { SstMeta } from './command.js';
import type { TableSchema } from './schema.js';

const FORMAT_VERSION = 1;

export interface RegionManifest {
  readonly formatVersion: number;
  readonly regionId: string;
  readonly schema: TableSchema;
  /** Everything at or below this raft index is in `ssts` (and `dedup`). */
  readonly flushedIndex: number;
  /** Term of the raft entry at flushedIndex. */
  readonly flushedTerm: number;
  /** Raft voters/learners (peer ids) as of flushedIndex. */
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  /** Newest first. */
  readonly ssts: readonly SstMeta[];
  /** The client dedup table at flushedIndex (RegionState's own encoding). */
  readonly dedup: string;
  readonly writtenAtMs: number;
  /** A standby region's stream record at flushedIndex (standby-state.ts); absent for every other region. */
  readonly standby?: string;
}

export const regionPrefix = (regionId: string) => `regions/${regionId}/`;
export const manifestPrefix = (regionId: string) => `${regionPrefix(regionId)}manifest/`;
export const sstPrefix = (regionId: string) => `${regionPrefix(regionId)}sst/`;
export const manifestKey = (regionId: string, flushedIndex: number) => `${manifestPrefix(regionId)}${flushedIndex.toString(16).padStart(16, '0')}.manifest`;
/**
 * Each replica publishes its current raft snapshot (a manifest) here, so the region leader's
 * SST GC knows what every replica may still read (docs/engine.md). Write-once like every
 * object (caches assume it): a newer snapshot is a new key, the replica then deletes its older ones.
 */
export const replicaSnapshotPrefix = (regionId: string) => `${regionPrefix(regionId)}replica-snapshot/`;
export const replicaSnapshotKey = (regionId: string, peerId: number, index: number) =>
  `${replicaSnapshotPrefix(regionId)}${peerId.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}.manifest`;
/** The peer id and snapshot index a replicaSnapshotKey names, or undefined for any other key. */
export function parseReplicaSnapshotKey(regionId: string, key: string): { peerId: number; index: number } | undefined {
  const prefix = replicaSnapshotPrefix(regionId);
  const m = key.startsWith(prefix) ? /^([0-9a-f]{16})-([0-9a-f]{16})\.manifest$/.exec(key.slice(prefix.length)) : null;
  return m ? { peerId: Number.parseInt(m[1]!, 16), index: Number.parseInt(m[2]!, 16) } : undefined;
}

export function encodeManifest(m: RegionManifest): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(m));
  const out = new Uint8Array(5 + body.byteLength);
  out[0] = FORMAT_VERSION;
  new DataView(out.buffer).setUint32(1, crc32c(body));
  out.set(body, 5);
  return out;
}

export function decodeManifest(bytes: Uint8Array, name: string): RegionManifest {
  const bad = (why: string) => new RegionDbError(ErrorCode.Corruption, `manifest ${name} is damaged: ${why}`);
  if (bytes.byteLength < 5) throw bad(`${bytes.byteLength} bytes is shorter than the header`);
  if (bytes[0] !== FORMAT_VERSION) throw bad(`unsupported format version ${bytes[0]}`);
  const body = bytes.subarray(5);
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1);
  const computed = crc32c(body);
  if (stored !== computed) throw bad(`crc32c mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
  let m: RegionManifest;
  try {
    m = JSON.parse(new TextDecoder().decode(body)) as RegionManifest;
  } catch (err) {
    throw bad(`invalid JSON: ${(err as Error).message}`);
  }
  if (typeof m !== 'object' || m === null) throw bad('not a JSON object');
  const ints = [m.flushedIndex, m.flushedTerm, m.writtenAtMs];
  const peerIds = (ids: unknown) => Array.isArray(ids) && ids.every((id) => Number.isSafeInteger(id));
  const sstsOk = Array.isArray(m.ssts) && m.ssts.every((s) => typeof s === 'object' && s !== null && typeof s.key === 'string');
  if (m.standby !== undefined && typeof m.standby !== 'string') throw bad('standby state is not a string');
  if (!ints.every((v) => Number.isSafeInteger(v) && v >= 0) || !sstsOk || typeof m.dedup !== 'string' || !peerIds(m.voters) || !peerIds(m.learners)) {
    throw bad('missing or mistyped fields');
  }
  return m;
}

/** The newest readable manifest of a region, or undefined if it has none. */
export async function loadLatestManifest(store: ObjectStore, regionId: string): Promise<{ key: string; manifest: RegionManifest } | undefined> {
  const list = await store.list(manifestPrefix(regionId));
  const latest = list.filter((o) => o.key.endsWith('.manifest')).at(-1);
  if (!latest) return undefined;
  return { key: latest.key, manifest: decodeManifest(await store.get(latest.key), `${store.description}/${latest.key}`) };
}
