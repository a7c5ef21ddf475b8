// A consistent backup's write barrier, the coordinator (docs/backup.md, "Consistency point"; the
// datanode half is src/datanode/write-barrier.ts and barrier-admin.ts).
//
// One attempt:
//   1. hold new client writes in every region (BarrierHold at each leader, all at once);
//   2. once EVERY hold is in place (the moment `heldAtMs`), freeze every region (BarrierFreeze):
//      each leader queues a freeze, releases its hold, and answers with the region manifest at
//      exactly the freeze's index once it is flushed.
// Each region's point is its freeze index. Every freeze is proposed after every hold began, and
// a region's hold covers its writes from the hold to its freeze, so a write acknowledged before
// another was sent is in the backup whenever the later one is (the proof: docs/backup.md).
// Any failure (a hold refused, a leader moved, a hold expired before its freeze) abandons the
// attempt: the holds still in place are released (they also end by themselves after holdMs) and
// a new attempt starts, at most limits.brBarrierAttemptsMax times.
import { randomBytes } from 'node:crypto';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';

export interface BarrierRegion {
  readonly table: string;
  readonly regionId: string;
  readonly regionNumber: number;
}

/** What the barrier needs from the cluster (RegionDbClient has it). */
export interface BarrierClient {
  barrierHold(table: string, regionId: string, barrierId: string, holdMs: number): Promise<number>;
  barrierFreeze(
    table: string,
    regionId: string,
    barrierId: string,
    term: number,
    sstLeaseMs: number,
  ): Promise<{ freeze_index: string; freeze_term: string; held_ms: number; writes_held: number; manifest: Uint8Array }>;
  barrierRelease(table: string, regionId: string, barrierId: string): Promise<boolean>;
}

export interface BarrierOptions {
  /** Each region's hold ends by itself after this long (ms). */
  readonly holdMs: number;
  /** How long the leaders keep the manifests' SSTs from their GC (ms): the copy's time budget. */
  readonly sstLeaseMs: number;
  readonly attemptsMax?: number;
  /** Wall clock (ms since the epoch) for `heldAtMs`; injected for tests. */
  readonly wallMs?: () => number;
  /** Wait between attempts. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly note?: (line: string) => void;
}

export interface BarrierPoint {
  readonly region: BarrierRegion;
  readonly freezeIndex: number;
  readonly freezeTerm: number;
  /** How long the region's client writes were held (ms). */
  readonly heldMs: number;
  readonly writesHeld: number;
  /** The region manifest at exactly freezeIndex (engine encoding). */
  readonly manifest: Uint8Array;
}

export interface BarrierResult {
  readonly barrierId: string;
  /** Wall ms by which every region was held: the cut lies between the holds and the freezes. */
  readonly heldAtMs: number;
  readonly attempts: number;
  /** The longest pause of any region's client writes (ms). */
  readonly pauseMsMax: number;
  readonly writesHeld: number;
  readonly points: readonly BarrierPoint[];
}

const ATTEMPT_BACKOFF_MS = 200;

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Takes one cluster-consistent cut of `regions`; throws UNAVAILABLE after the last failed attempt. */
export async function runBarrier(client: BarrierClient, regions: readonly BarrierRegion[], opts: BarrierOptions): Promise<BarrierResult> {
  if (regions.length === 0) throw new RegionDbError(ErrorCode.InvalidArgument, 'a barrier needs at least one region');
  if (!Number.isInteger(opts.holdMs) || opts.holdMs <= 0 || opts.holdMs > limits.brBarrierHoldMsMax) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `the barrier's hold must be 1…${limits.brBarrierHoldMsMax} ms, got ${opts.holdMs}`);
  }
  const attemptsMax = opts.attemptsMax ?? limits.brBarrierAttemptsMax;
  const wallMs = opts.wallMs ?? (() => Date.now());
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((ok) => setTimeout(ok, ms)));
  const failures: string[] = [];
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    const barrierId = `barrier-${randomBytes(6).toString('hex')}-${attempt}`;
    const outcome = await attemptBarrier(client, regions, barrierId, opts.holdMs, opts.sstLeaseMs, wallMs);
    if (outcome.ok) {
      const points = outcome.points;
      return {
        barrierId,
        heldAtMs: outcome.heldAtMs,
        attempts: attempt,
        pauseMsMax: Math.max(...points.map((p) => p.heldMs)),
        writesHeld: points.reduce((n, p) => n + p.writesHeld, 0),
        points,
      };
    }
    failures.push(`attempt ${attempt}: ${outcome.why}`);
    opts.note?.(`barrier attempt ${attempt} abandoned: ${outcome.why}`);
    if (attempt < attemptsMax) await sleep(ATTEMPT_BACKOFF_MS * attempt);
  }
  throw new RegionDbError(ErrorCode.Unavailable, `no cluster-consistent point after ${attemptsMax} barrier attempts (writes were never held longer than ${opts.holdMs} ms):\n  ${failures.join('\n  ')}`);
}

type AttemptOutcome = { ok: true; heldAtMs: number; points: BarrierPoint[] } | { ok: false; why: string };

async function attemptBarrier(
  client: BarrierClient,
  regions: readonly BarrierRegion[],
  barrierId: string,
  holdMs: number,
  sstLeaseMs: number,
  wallMs: () => number,
): Promise<AttemptOutcome> {
  const releaseAll = async () => {
    // Best effort: a hold not released ends by itself after holdMs (write-barrier.ts B3).
    await Promise.allSettled(regions.map((r) => client.barrierRelease(r.table, r.regionId, barrierId)));
  };
  const holds = await Promise.allSettled(regions.map((r) => client.barrierHold(r.table, r.regionId, barrierId, holdMs)));
  const refused = holds.findIndex((h) => h.status === 'rejected');
  if (refused >= 0) {
    await releaseAll();
    return { ok: false, why: `hold of region ${regions[refused]!.regionId}: ${errorText((holds[refused] as PromiseRejectedResult).reason)}` };
  }
  const heldAtMs = wallMs();
  const terms = holds.map((h) => (h as PromiseFulfilledResult<number>).value);
  const freezes = await Promise.allSettled(regions.map((r, i) => client.barrierFreeze(r.table, r.regionId, barrierId, terms[i]!, sstLeaseMs)));
  const failed = freezes.findIndex((f) => f.status === 'rejected');
  if (failed >= 0) {
    await releaseAll();
    return { ok: false, why: `freeze of region ${regions[failed]!.regionId}: ${errorText((freezes[failed] as PromiseRejectedResult).reason)}` };
  }
  const points = regions.map((region, i): BarrierPoint => {
    const res = (freezes[i] as PromiseFulfilledResult<Awaited<ReturnType<BarrierClient['barrierFreeze']>>>).value;
    const freezeTerm = Number(res.freeze_term);
    if (freezeTerm !== terms[i]) {
      throw new RegionDbError(ErrorCode.Internal, `region ${region.regionId}: the barrier's freeze is of term ${freezeTerm}, its hold of term ${terms[i]}`);
    }
    return { region, freezeIndex: Number(res.freeze_index), freezeTerm, heldMs: res.held_ms, writesHeld: res.writes_held, manifest: new Uint8Array(res.manifest) };
  });
  return { ok: true, heldAtMs, points };
}
