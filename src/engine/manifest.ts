// A region's manifest: what is durable in the object store at its flushed index — the SSTs,
// the client dedup table at that index, and the raft position (index, term, membership) — so
// a region can be rebuilt from the object store alone, and so a raft snapshot can be this small
// record instead of the data (followers fetch the SSTs themselves).
//
// Encoding: [format u8][crc32c u32 of the JSON][JSON]. Object key:
//   regions/<regionId>/manifest/<flushedIndex as 16 hex digits>.manifest
// Each flush writes a full manifest (a checkpoint; they are small), older ones are pruned.
// Write-once like every object: a leader that finds a manifest already at its flushed index
// (a previous leader wrote it) adopts it if it is the same recovery point (manifestDivergence)
// and otherwise refuses to write; it never overwrites one (src/datanode/flusher.ts).
// Replicas also publish their own raft snapshot (the same encoding) under
//   regions/<regionId>/replica-snapshot/<peerId as 16 hex>-<snapshot index as 16 hex>.manifest
// for the leader's SST GC; recovery never reads those.
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { ObjectStore } from '../object-store/object-store.js';
import type { SstMeta } from './command.js';
import type { TableSchema } from './schema.js';

const FORMAT_VERSION = 1;
/**
 * A manifest of a region fenced by a table drop (dropFence set) is written as version 2, so a
 * build that predates the fence refuses it instead of loading a region that would take writes.
 */
const FORMAT_VERSION_FENCED = 2;

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
  /** The drop fence (command.ts DropFenceCommand) at or below flushedIndex; absent for a region not fenced. */
  readonly dropFence?: { readonly index: number; readonly tableId: number };
}

/** Every region's objects are under `regions/<region id>/`: the folders the metasrv lists for its table id floor. */
export const REGIONS_PREFIX = 'regions/';
export const regionPrefix = (regionId: string) => `${REGIONS_PREFIX}${regionId}/`;
export const manifestPrefix = (regionId: string) => `${regionPrefix(regionId)}manifest/`;
export const sstPrefix = (regionId: string) => `${regionPrefix(regionId)}sst/`;
/**
 * Put by `regiondb br restore` in a region's SST folder before it copies the region's SSTs there,
 * and deleted once the manifest naming them is in the store: while a GC pass lists it, the pass
 * deletes nothing (docs/engine.md, "Restore copies and a live leader's GC"). Not an `.sst` name,
 * so nothing else reads it as an SST.
 */
export const restoreMarkerKey = (regionId: string) => `${sstPrefix(regionId)}restore-in-progress`;
export const manifestKey = (regionId: string, flushedIndex: number) => `${manifestPrefix(regionId)}${flushedIndex.toString(16).padStart(16, '0')}.manifest`;
/** The flushed index a manifestKey names, or undefined for any other key. */
export function parseManifestKey(regionId: string, key: string): number | undefined {
  const prefix = manifestPrefix(regionId);
  const m = key.startsWith(prefix) ? /^([0-9a-f]{16})\.manifest$/.exec(key.slice(prefix.length)) : null;
  return m ? Number.parseInt(m[1]!, 16) : undefined;
}
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
  out[0] = m.dropFence !== undefined ? FORMAT_VERSION_FENCED : FORMAT_VERSION;
  new DataView(out.buffer).setUint32(1, crc32c(body));
  out.set(body, 5);
  return out;
}

export function decodeManifest(bytes: Uint8Array, name: string): RegionManifest {
  const bad = (why: string) => new RegionDbError(ErrorCode.Corruption, `manifest ${name} is damaged: ${why}`);
  if (bytes.byteLength < 5) throw bad(`${bytes.byteLength} bytes is shorter than the header`);
  if (bytes[0] !== FORMAT_VERSION && bytes[0] !== FORMAT_VERSION_FENCED) throw bad(`unsupported format version ${bytes[0]}`);
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
  const fence = m.dropFence as { index?: unknown; tableId?: unknown } | undefined;
  const fenceOk = fence !== undefined && typeof fence === 'object' && fence !== null && Number.isSafeInteger(fence.index) && Number.isSafeInteger(fence.tableId);
  if ((bytes[0] === FORMAT_VERSION_FENCED) !== fenceOk) throw bad(bytes[0] === FORMAT_VERSION_FENCED ? 'a version-2 manifest without a valid drop fence' : 'a drop fence in a version-1 manifest');
  if (!ints.every((v) => Number.isSafeInteger(v) && v >= 0) || !sstsOk || typeof m.dedup !== 'string' || !peerIds(m.voters) || !peerIds(m.learners)) {
    throw bad('missing or mistyped fields');
  }
  return m;
}

/** JSON with object keys sorted, so that two equal values compare equal whatever order their keys were built in. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The same peer ids, in whatever order. */
function samePeers(a: readonly number[], b: readonly number[]): boolean {
  const sorted = (ids: readonly number[]) => [...ids].sort((x, y) => x - y);
  const [sa, sb] = [sorted(a), sorted(b)];
  return sa.length === sb.length && sa.every((id, i) => id === sb[i]);
}

/**
 * Why `stored` (the manifest object already at a key) is not the same recovery point as
 * `ours` (what this node would write there), or undefined if it is. The same flushed index of
 * one raft group means the same committed log prefix, so everything taken at the flush — the
 * raft position (index, term, membership), the dedup table, a standby's stream record — and the
 * schema must be equal. Two fields may differ legitimately:
 *   - `writtenAtMs`, the writer's wall clock;
 *   - `ssts`: a manifest names the SST list of the writer's version when it wrote it, and a
 *     compaction-edit applied after the flush replaces a run of SSTs with their merge without
 *     moving flushedIndex. Both lists hold the same rows at that index (a merge keeps every row
 *     of its inputs; tombstones are dropped only where nothing older remains to hide).
 * Anything else differing means two histories wrote the same index (e.g. `regiondb recover
 * --force` while the old group was still alive): divergence, which the caller refuses.
 */
export function manifestDivergence(stored: RegionManifest, ours: RegionManifest): string | undefined {
  const checks: [string, unknown, unknown][] = [
    ['regionId', stored.regionId, ours.regionId],
    ['flushedIndex', stored.flushedIndex, ours.flushedIndex],
    ['flushedTerm', stored.flushedTerm, ours.flushedTerm],
    ['formatVersion', stored.formatVersion, ours.formatVersion],
  ];
  for (const [field, a, b] of checks) if (a !== b) return `${field} is ${JSON.stringify(a)} there, ${JSON.stringify(b)} here`;
  if (!samePeers(stored.voters, ours.voters)) return `voters are [${stored.voters.join(', ')}] there, [${ours.voters.join(', ')}] here`;
  if (!samePeers(stored.learners, ours.learners)) return `learners are [${stored.learners.join(', ')}] there, [${ours.learners.join(', ')}] here`;
  if (stored.dedup !== ours.dedup) return `the client dedup tables differ (${stored.dedup.length} and ${ours.dedup.length} characters)`;
  if (stored.standby !== ours.standby) return 'the standby stream records differ';
  if (canonicalJson(stored.dropFence) !== canonicalJson(ours.dropFence)) return 'the drop fences differ';
  if (canonicalJson(stored.schema) !== canonicalJson(ours.schema)) return 'the schemas differ';
  return undefined;
}

/** The newest manifest of a region (the highest key); undefined if it has none; throws CORRUPTION if it does not decode. */
export async function loadLatestManifest(store: ObjectStore, regionId: string): Promise<{ key: string; manifest: RegionManifest } | undefined> {
  const latest = await readLatestManifest(store, regionId);
  if (latest && 'damage' in latest) throw latest.damage;
  return latest;
}

/**
 * The newest manifest of a region, as loadLatestManifest, except that one that does not decode
 * is answered with its key and the decode error (`damage`) instead of throwing: for SST GC,
 * which holds rather than fails on it (docs/engine.md, "A damaged latest manifest"). A failure
 * to list or read still throws.
 */
export async function readLatestManifest(
  store: ObjectStore,
  regionId: string,
): Promise<{ key: string; manifest: RegionManifest } | { key: string; damage: RegionDbError } | undefined> {
  const list = await store.list(manifestPrefix(regionId));
  const latest = list.filter((o) => o.key.endsWith('.manifest')).at(-1);
  if (!latest) return undefined;
  const bytes = await store.get(latest.key);
  try {
    return { key: latest.key, manifest: decodeManifest(bytes, `${store.description}/${latest.key}`) };
  } catch (err) {
    if (err instanceof RegionDbError && err.code === ErrorCode.Corruption) return { key: latest.key, damage: err };
    throw err;
  }
}
