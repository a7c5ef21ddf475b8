// Issue 17 (dual active-standby) with real processes on loopback: a primary cluster and an
// independent standby cluster (own cluster id, metasrv, datanodes, object store). Under a steady
// write load on the primary, every primary process is killed -9; the standby is promoted; then
// the cut is checked against the writer's own record (src/standby/cut-check.ts: C1 acknowledged
// before the cut → present, C2 sent after it → absent, C3 no half region part), the lost tail is
// reported, the standby takes writes, and the old primary, restarted, refuses them (fenced).
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { isRegionDbError } from '../../src/common/errors.js';
import { regionNumberOf } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { promoteStandby, standbySnapshot } from '../../src/standby/promote.js';
import { type ClientWrite, checkCut } from '../../src/standby/cut-check.js';
import { LocalCluster, sleep, waitUntil } from '../support/local-cluster.js';

const TABLE = 'drill';
const COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
const REGIONS = 3;
const TS_BASE_MS = 1_700_000_000_000;
const row = (id: number): Row => ({ host: `host-${id % 31}`, ts: TS_BASE_MS + id, v: id });
const idOf = (r: Row) => (r['ts'] as number) - TS_BASE_MS;

/** Writes of 6 rows (spread over the regions) from `loops` concurrent loops, each remembered with its send and ack times. */
function startWriter(client: RegionDbClient, schema: TableSchema, loops = 3) {
  const writes: ClientWrite[] = [];
  let next = 0;
  let stopped = false;
  const deadline = Date.now() + 120_000; // hard bound, whatever happens
  const running = Array.from({ length: loops }, async () => {
    while (!stopped && Date.now() < deadline) {
      const ids = Array.from({ length: 6 }, () => next++);
      const rows = ids.map(row);
      const sentMs = Date.now();
      let ackedMs: number | undefined;
      try {
        await client.write(TABLE, rows);
        ackedMs = Date.now();
      } catch {
        await sleep(20); // not acknowledged: failed or unknown
      }
      writes.push({ rowIds: ids, regionOf: rows.map((r) => regionNumberOf(schema, r)), sentMs, ackedMs });
    }
  });
  return {
    writes,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}

describe('dual active-standby: two clusters on loopback (issue 17)', function () {
  this.timeout(180_000);
  let standby: LocalCluster;
  let primary: LocalCluster;

  before(async () => {
    standby = new LocalCluster({ clusterId: 'it-standby', datanodeToml: '[standby]\nrole = "standby"\nrelease_interval_ms = 300' });
    await standby.start();
    const addrs = standby.datanodes.map((_, i) => `"${standby.datanodeAddr(i)}"`).join(', ');
    primary = new LocalCluster({ clusterId: 'it-primary', datanodeToml: `[standby]\nrole = "primary"\naddrs = [${addrs}]\nship_interval_ms = 50` });
    await primary.start();
  });

  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });

  after(async () => {
    if (failed) console.log(`      kept for the post-mortem: ${primary?.dir} ${standby?.dir}`);
    await primary?.stop({ keepData: failed });
    await standby?.stop({ keepData: failed });
  });

  it('async: kill -9 of every primary process, promote: the standby holds one consistent cut, takes writes, and the old primary is fenced', async () => {
    const pc = primary.client({ deadlineMs: 3000 });
    const sc = standby.client({ deadlineMs: 3000 });
    const schema = await pc.createTable(TABLE, COLUMNS, REGIONS);
    const writer = startWriter(pc, schema);

    // The stream runs: the standby created the table on first sight and every region reports a position.
    await waitUntil('every standby region reporting a stream position', 30_000, async () => {
      const snap = await standbySnapshot(sc);
      const regions = snap.nodes.flatMap((n) => n.status.regions);
      return snap.regionIds.length === REGIONS && regions.length === REGIONS && regions.every((r) => Number(r.received_through_ms) > 0) ? true : undefined;
    });
    // Read-only until promoted: a clear refusal, not a crash.
    const refused = await sc.write(TABLE, [row(1_000_000)]).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(String(refused)).to.match(/read-only standby/);

    await sleep(6000); // steady load
    const lag = await standbySnapshot(sc);
    const lagMs = Math.max(...lag.nodes.flatMap((n) => n.status.regions).map((r) => Date.now() - Number(r.received_through_ms)));
    const faultMs = Date.now();
    await primary.killAll();
    await writer.stop();
    const acked = writer.writes.filter((w) => w.ackedMs !== undefined).length;
    expect(acked, 'the load ran').to.be.greaterThan(50);

    const report = await promoteStandby(sc, { timeoutMs: 30_000, nowMs: () => Date.now() });
    const rtoPromoteMs = Date.now() - faultMs;
    const present = new Set((await sc.scan(TABLE, { consistency: 'linearizable' })).map((r) => idOf(r.row)));
    const verdict = checkCut(writer.writes, present, report.cutMs, faultMs);
    console.log(
      `      async: ${verdict.ackedWrites} writes (${verdict.ackedRows} rows) acknowledged; lag before the fault ≤ ${lagMs} ms; cut ${faultMs - report.cutMs} ms before the fault; ` +
        `lost tail ${verdict.lostWrites} writes (${verdict.lostRows} rows, earliest acknowledged ${verdict.lostWindowMs} ms before the fault); ` +
        `dropped after the cut ${report.droppedEntries} entries (${report.droppedRows} rows); ${verdict.partialInFlight} in-flight writes partly present; promote took ${report.elapsedMs} ms (${rtoPromoteMs} ms after the fault)`,
    );
    expect(verdict.violations).to.deep.equal([]);
    expect(present.size, 'the standby holds the data').to.be.greaterThan(0);
    expect(faultMs - report.cutMs, 'the cut is recent (async RPO < 1 s at this load)').to.be.lessThan(1000);

    // Opened for writes: a write and a read back.
    await sc.write(TABLE, [row(2_000_000)]);
    expect((await sc.get(TABLE, { host: row(2_000_000)['host']!, ts: row(2_000_000)['ts']! }))?.row['v']).to.equal(2_000_000);

    // The old primary returns: it learns of the promotion and refuses writes, for good.
    await primary.startMetasrv();
    await Promise.all(primary.datanodes.map((_, i) => primary.startDatanode(i)));
    const pc2 = primary.client({ deadlineMs: 8000 });
    const fenced = await waitUntil('the returning primary refusing a write as fenced', 30_000, async () => {
      const err = await pc2.write(TABLE, [row(3_000_000)]).then(
        () => new Error('accepted'),
        (e: unknown) => e,
      );
      if (err instanceof Error && err.message === 'accepted') throw new Error('the old primary accepted a write after the standby was promoted');
      return isRegionDbError(err) && /failed over|fenced/.test(err.message) ? err : undefined;
    });
    expect(fenced.message).to.match(/promoted at epoch/);
  });
});
