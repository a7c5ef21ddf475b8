// What `regiondb drill` measures with: a writer that remembers every acknowledged row, a probe
// that detects when the service is back (a write to every region and a read of earlier data from
// every region both succeed), and the count of acknowledged rows missing afterwards.
//   RTO = time from the fault to the first successful probe.
//   RPO = acknowledged rows that are gone after recovery (and how long before the fault the
//         earliest of them was acknowledged).
import { assert } from '../common/assert.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { RegionDbClient } from '../client/client.js';
import { regionNumberOf } from '../engine/key.js';
import type { ColumnSchema, Row, TableSchema } from '../engine/schema.js';

export const DRILL_TABLE = 'drill';
export const DRILL_COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
const COLUMN_SCHEMAS: ColumnSchema[] = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
const TS_BASE_MS = 1_700_000_000_000;
/** Probe rows live far above the writer's ids, so they never collide. */
const PROBE_ID_BASE = 1_000_000_000;
const HOSTS = 97;

const PROBE_INTERVAL_MS = 100;
const PROBES_IN_FLIGHT_MAX = 8;
const WRITERS = 4;
const ROWS_PER_WRITE = 20;

export function drillRow(id: number): Row {
  return { host: `host-${id % HOSTS}`, ts: TS_BASE_MS + id, v: id };
}

const idOf = (row: Row) => (row['ts'] as number) - TS_BASE_MS;

/** Which region a row of the drill table lands in (the same for every table id). */
export function drillRegionOf(row: Row, regionCount: number): number {
  const schema: TableSchema = { name: DRILL_TABLE, tableId: 0, columns: COLUMN_SCHEMAS, regionCount };
  return regionNumberOf(schema, row);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes batches of new rows with a few concurrent loops until stopped; remembers what was acknowledged. */
export class AckedWriter {
  /** Acknowledged row ids and when (ms since the epoch), in acknowledgement order. */
  readonly ackedIds: number[] = [];
  readonly ackedAtMs: number[] = [];
  failedWrites = 0;
  private nextId = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly client: RegionDbClient,
    private readonly table: string,
  ) {}

  start(): void {
    assert(this.loops.length === 0, 'the writer starts once');
    this.loops = Array.from({ length: WRITERS }, () => this.loop());
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const ids = Array.from({ length: ROWS_PER_WRITE }, () => this.nextId++);
      try {
        await this.client.write(this.table, ids.map(drillRow));
        const now = Date.now();
        for (const id of ids) {
          this.ackedIds.push(id);
          this.ackedAtMs.push(now);
        }
      } catch {
        // Not acknowledged (unavailable, or an unknown outcome after a deadline): not counted.
        this.failedWrites++;
        await sleep(50);
      }
    }
  }

  /** No new writes from now on; writes in flight may still be acknowledged. */
  stop(): void {
    this.stopped = true;
  }

  /** Resolves when every write in flight has its outcome. */
  async settled(): Promise<void> {
    await Promise.all(this.loops);
  }

  /** One acknowledged row per region among those acknowledged before `beforeMs` (for probe reads). */
  samplesPerRegion(regionCount: number, beforeMs: number): Row[] {
    const out = new Map<number, Row>();
    for (let i = 0; i < this.ackedIds.length && out.size < regionCount; i++) {
      if (this.ackedAtMs[i]! >= beforeMs) break;
      const row = drillRow(this.ackedIds[i]!);
      const region = drillRegionOf(row, regionCount);
      if (!out.has(region)) out.set(region, row);
    }
    if (out.size < regionCount) throw new RegionDbError(ErrorCode.Internal, `drill: only ${out.size} of ${regionCount} regions got an acknowledged write before the checkpoint`);
    return [...out.values()];
  }
}

/** Rows that reach every region (a probe write that succeeds proves every region takes writes). */
function probeRows(regionCount: number, round: number): Row[] {
  const out = new Map<number, Row>();
  for (let id = PROBE_ID_BASE + round * 10_000; out.size < regionCount; id++) {
    const row = drillRow(id);
    const region = drillRegionOf(row, regionCount);
    if (!out.has(region)) out.set(region, row);
  }
  return [...out.values()];
}

export interface ProbeOptions {
  readonly faultAtMs: number;
  readonly client: RegionDbClient;
  readonly table: string;
  readonly regionCount: number;
  /** Earlier acknowledged rows that must read back (one per region). */
  readonly samples: Row[];
  readonly timeoutMs: number;
}

/**
 * Starts a probe every PROBE_INTERVAL_MS (at most PROBES_IN_FLIGHT_MAX at once) until one
 * succeeds; returns the time from the fault to that success.
 */
export async function measureRecoveryMs(opts: ProbeOptions): Promise<number> {
  const deadline = Date.now() + opts.timeoutMs;
  let inFlight = 0;
  let round = 0;
  let recoveredAtMs: number | undefined;
  let lastError = '';
  const probe = async (r: number) => {
    inFlight++;
    try {
      const reads = opts.samples.map(async (s) => {
        const found = await opts.client.get(opts.table, { host: s['host']!, ts: s['ts']! });
        if (found?.row['v'] !== s['v']) throw new RegionDbError(ErrorCode.NotFound, `row ${idOf(s)} read back as ${JSON.stringify(found?.row ?? null)}`);
      });
      await Promise.all([opts.client.write(opts.table, probeRows(opts.regionCount, r)), ...reads]);
      recoveredAtMs ??= Date.now();
    } catch (err) {
      lastError = (err as Error).message;
    } finally {
      inFlight--;
    }
  };
  while (recoveredAtMs === undefined) {
    if (Date.now() > deadline) throw new RegionDbError(ErrorCode.DeadlineExceeded, `drill: the service did not come back within ${opts.timeoutMs} ms (last probe error: ${lastError})`);
    if (inFlight < PROBES_IN_FLIGHT_MAX) void probe(round++);
    await sleep(PROBE_INTERVAL_MS);
  }
  return recoveredAtMs - opts.faultAtMs;
}

export interface Loss {
  readonly ackedRows: number;
  readonly lostRows: number;
  /** How long before the fault the earliest lost row was acknowledged (0 when nothing was lost). */
  readonly lostWindowMs: number;
}

/** Acknowledged rows of `writer` that the table no longer has. */
export async function measureLoss(client: RegionDbClient, table: string, writer: AckedWriter, faultAtMs: number): Promise<Loss> {
  const present = new Set((await client.scan(table, { consistency: 'linearizable' })).map((r) => idOf(r.row)));
  let lostRows = 0;
  let earliestLostMs = Number.POSITIVE_INFINITY;
  writer.ackedIds.forEach((id, i) => {
    if (present.has(id)) return;
    lostRows++;
    earliestLostMs = Math.min(earliestLostMs, writer.ackedAtMs[i]!);
  });
  return { ackedRows: writer.ackedIds.length, lostRows, lostWindowMs: lostRows === 0 ? 0 : Math.max(0, faultAtMs - earliestLostMs) };
}
