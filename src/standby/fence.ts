// The durable marker of a node's place after a promotion (docs/replication.md, "Fencing"):
//   - on a standby datanode: promoted, at epoch E (it refuses the stream from then on and takes
//     writes once its regions are cut);
//   - on an old primary's datanode: fenced by the standby's promotion at epoch E (it refuses
//     client writes for good, across restarts, until its data dir is re-seeded);
//   - on a promoted standby's datanode that runs as a primary since (the way back): 'primary' at
//     its promotion's epoch E, written only once the other site confirmed that it follows (a fence
//     check answered "standby"): E is history, not a promotion this node may take up again if it
//     is made a standby later (finding D4). Until that confirmation the record stays 'promoted'.
// Epochs, not times, decide between records (docs/replication.md, "One writable site").
// A `promoted` record a node wrote for itself from a hosted region's replicated cut (it missed its
// StandbyPromote call, E5) is `adopted`: the node answers as promoted (it fences an older primary)
// but takes no client write until a StandbyPromote call writes the record again (the promotion it
// adopted may have been superseded by one this node cannot see yet). On disk it is the state
// 'promoted-adopted': a build that does not know the flag refuses the file as malformed
// (CORRUPTION, loudly) instead of reading a plain `promoted` record and admitting writes.
// Written atomically (temp file, fsync, rename, fsync of the directory) before the node acts on it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileDurably } from '../common/durable-file.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';

export interface FenceRecord {
  readonly state: 'promoted' | 'fenced' | 'primary';
  readonly epoch: number;
  /** The cut (promoted, primary) or when the fence was learned (fenced), ms since the epoch; for logs and the cut only, never compared across sites. */
  readonly atMs: number;
  /** Only with 'promoted': learned from a hosted region, not from StandbyPromote; no client writes on it. */
  readonly adopted?: true;
}

const ADOPTED = 'promoted-adopted';

const FILE = 'standby-fence.json';

export function readFence(dataDir: string): FenceRecord | undefined {
  const file = join(dataDir, FILE);
  if (!existsSync(file)) return undefined;
  let r: { state: string; epoch: number; atMs: number };
  try {
    r = JSON.parse(readFileSync(file, 'utf8')) as typeof r;
  } catch (err) {
    throw new RegionDbError(ErrorCode.Corruption, `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if ((r.state !== 'promoted' && r.state !== ADOPTED && r.state !== 'fenced' && r.state !== 'primary') || !Number.isSafeInteger(r.epoch) || !Number.isSafeInteger(r.atMs)) {
    throw new RegionDbError(ErrorCode.Corruption, `${file} is malformed`);
  }
  if (r.state === ADOPTED) return { state: 'promoted', epoch: r.epoch, atMs: r.atMs, adopted: true };
  return { state: r.state, epoch: r.epoch, atMs: r.atMs };
}

export function writeFence(dataDir: string, record: FenceRecord): void {
  const state = record.state === 'promoted' && record.adopted ? ADOPTED : record.state;
  writeFileDurably(join(dataDir, FILE), JSON.stringify({ state, epoch: record.epoch, atMs: record.atMs }));
}
