// Issue 17 (dual active-standby) with real processes on loopback: a primary cluster and an
// independent standby cluster (own cluster id, metasrv, datanodes, object store). Under a steady
// write load on the primary, every primary process is killed -9; the standby is promoted; then
// the cut is checked against the writer's own record (src/standby/cut-check.ts: C1 acknowledged
// before the cut → present, C2 sent after it → absent, C3 no half region part), the lost tail is
// reported, the standby takes writes, and the old primary, restarted, refuses them (fenced).
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { isRegionDbError } from '../../src/common/errors.js';
import type { TableSchema } from '../../src/engine/schema.js';
import { standbyStatusText } from '../../src/cmd/standby.js';
import { promoteStandby, standbySnapshot } from '../../src/standby/promote.js';
import { primaryRoleToml, standbyRoleToml } from '../../src/standby/role-toml.js';
import { type ClientWrite, checkCut } from '../../src/standby/cut-check.js';
import { startCutWriter } from '../support/cut-writer.js';
import { LocalCluster, sleep, waitUntil } from '../support/local-cluster.js';
import { STANDBY_COLUMNS, standbyRows, idOf } from '../support/standby-table.js';

const TABLE = 'drill';
const REGIONS = 3;
const row = standbyRows(31);

/** Writes of 6 rows (spread over the regions) from `loops` concurrent loops, each remembered with its send and ack times. */
const startWriter = (client: RegionDbClient, schema: TableSchema, loops = 3) =>
  startCutWriter(client, TABLE, schema, row, { loops, rowsPerWrite: 6, failPauseMs: 20, boundMs: 120_000 });

/** Median of acknowledged writes' latency (send to acknowledgement), ms. */
function p50Ms(writes: readonly ClientWrite[]): number {
  const l = writes.flatMap((w) => (w.ackedMs === undefined ? [] : [w.ackedMs - w.sentMs])).sort((a, b) => a - b);
  return l[Math.floor(l.length / 2)] ?? 0;
}

interface Pair {
  standby: LocalCluster;
  primary: LocalCluster;
}

/** Starts the standby, then the primary; if either fails to start, both are stopped (data kept) before the error goes up. */
async function startPair(mode: 'async' | 'sync'): Promise<Pair> {
  const standby = new LocalCluster({ clusterId: `it-standby-${mode}`, datanodeToml: standbyRoleToml() });
  let primary: LocalCluster | undefined;
  try {
    await standby.start();
    const addrs = standby.datanodes.map((_, i) => standby.datanodeAddr(i));
    primary = new LocalCluster({ clusterId: `it-primary-${mode}`, datanodeToml: primaryRoleToml(addrs, mode) });
    await primary.start();
    return { standby, primary };
  } catch (err) {
    // The test's afterEach never sees this pair: without this its processes would outlive the run.
    await primary?.stop({ keepData: true });
    await standby.stop({ keepData: true });
    throw err;
  }
}

/**
 * Steady load on the primary, kill -9 of every primary process, promote; checks the cut (C1–C3)
 * and returns what was measured. The standby stays promoted; the primary stays down.
 */
async function killAndPromote({ standby, primary }: Pair, loadMs: number, crashMidway = false) {
  const pc = primary.client({ deadlineMs: 3000 });
  const sc = standby.client({ deadlineMs: 3000 });
  const schema = await pc.createTable(TABLE, STANDBY_COLUMNS, REGIONS);
  const writer = startWriter(pc, schema);
  // The stream runs: the standby created the table on first sight and every region reports a position.
  await waitUntil('every standby region reporting a stream position', 30_000, async () => {
    const snap = await standbySnapshot(sc);
    const regions = snap.nodes.flatMap((n) => n.status.regions);
    return snap.regionIds.length === REGIONS && regions.length === REGIONS && regions.every((r) => Number(r.received_through_ms) > 0) ? true : undefined;
  });
  // Lag is visible: `regiondb status` (its standby section) on both clusters, and /metrics.
  const statusText = await waitUntil('a safe time in the standby status', 10_000, async () => {
    const text = await standbyStatusText(sc, Date.now());
    return text && /consistent point \(safe time\) \d{4}-/.test(text) ? text : undefined;
  });
  expect(statusText).to.match(/RECEIVED-THROUGH LAG MS/);
  expect(await standbyStatusText(pc, Date.now())).to.match(/cluster-wide lag \d+ entries, \d+ ms/);
  expect(await waitUntil('the safe-time lag metric', 10_000, async () => ((await standby.metric(1, 'regiondb_standby_safe_time_lag_ms')) > 0 ? true : undefined))).to.equal(true);
  // Read-only until promoted: a clear refusal, not a crash.
  const refused = await sc.write(TABLE, [row(1_000_000)]).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(String(refused)).to.match(/read-only standby/);
  if (crashMidway) {
    // Leader changes on both sides mid-stream: kill -9 one datanode of each cluster, restart it.
    await sleep(loadMs / 3);
    await Promise.all([primary.killDatanode(0), standby.killDatanode(0)]);
    await sleep(2000);
    await Promise.all([primary.startDatanode(0), standby.startDatanode(0)]);
    await waitUntil('the stream running again after the crash (every region reporting)', 60_000, async () => {
      const regions = (await standbySnapshot(sc)).nodes.flatMap((n) => n.status.regions);
      return regions.length === REGIONS ? true : undefined;
    });
    await sleep((2 * loadMs) / 3);
  } else {
    await sleep(loadMs); // steady load
  }
  const before = await standbySnapshot(sc);
  const lagMs = Math.max(...before.nodes.flatMap((n) => n.status.regions).map((r) => Date.now() - Number(r.received_through_ms)));
  const faultMs = Date.now();
  await primary.killAll();
  await writer.stop();
  const promoteStartMs = Date.now();
  const report = await promoteStandby(sc, { timeoutMs: 30_000, nowMs: () => Date.now() });
  const present = new Set((await sc.scan(TABLE, { consistency: 'linearizable' })).map((r) => idOf(r.row)));
  const verdict = checkCut(writer.writes, present, report.cutMs, faultMs);
  // Opened for writes: a write and a read back.
  await sc.write(TABLE, [row(2_000_000)]);
  const openedMs = Date.now() - promoteStartMs;
  expect((await sc.get(TABLE, { host: row(2_000_000)['host']!, ts: row(2_000_000)['ts']! }))?.row['v']).to.equal(2_000_000);
  return { verdict, report, faultMs, lagMs, openedMs, p50: p50Ms(writer.writes.filter((w) => w.sentMs < faultMs - 500)) };
}

function describeRun(mode: string, r: Awaited<ReturnType<typeof killAndPromote>>): string {
  const v = r.verdict;
  return (
    `      ${mode}: ${v.ackedWrites} writes (${v.ackedRows} rows) acknowledged, write p50 ${r.p50} ms; lag before the fault ≤ ${r.lagMs} ms; cut ${r.faultMs - r.report.cutMs} ms before the fault; ` +
    `lost tail ${v.lostWrites} writes (${v.lostRows} rows, earliest acknowledged ${v.lostWindowMs} ms before the fault); ` +
    `dropped after the cut ${r.report.droppedEntries} entries (${r.report.droppedRows} rows); ${v.partialInFlight} in-flight writes partly present; promote ${r.report.elapsedMs} ms, writable ${r.openedMs} ms after promote started`
  );
}

describe('dual active-standby: two clusters on loopback (issue 17)', function () {
  this.timeout(180_000);
  let pair: Pair | undefined;
  let failed = false;
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      failed = true;
      console.log(`      kept for the post-mortem: ${pair?.primary.dir} ${pair?.standby.dir}`);
    }
    await pair?.primary.stop({ keepData: failed });
    await pair?.standby.stop({ keepData: failed });
    pair = undefined;
  });

  it('async: a datanode of each cluster crashes mid-stream; then kill -9 of every primary process, promote: the standby holds one consistent cut, takes writes, and the old primary is fenced', async () => {
    pair = await startPair('async');
    const r = await killAndPromote(pair, 6000, true);
    console.log(describeRun('async', r));
    expect(r.verdict.violations).to.deep.equal([]);
    expect(r.verdict.ackedWrites, 'the load ran').to.be.greaterThan(10);
    // The goal is < 1 s (measured and reported above, and by `regiondb drill`); asserted here only
    // as "the stream kept up at all", since this machine's load moves the number.
    expect(r.faultMs - r.report.cutMs, 'the cut is recent').to.be.lessThan(10_000);

    // The old primary returns: it learns of the promotion and refuses writes, for good.
    const { primary } = pair;
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

  it('sync: the same kill -9 and promotion lose no acknowledged write', async () => {
    pair = await startPair('sync');
    const r = await killAndPromote(pair, 6000);
    console.log(describeRun('sync', r));
    expect(r.verdict.violations).to.deep.equal([]);
    expect(r.verdict.ackedWrites, 'the load ran').to.be.greaterThan(10);
    expect(r.verdict.lostWrites, 'RPO 0').to.equal(0);
  });
});
