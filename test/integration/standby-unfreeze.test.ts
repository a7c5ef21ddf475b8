// A promotion begun and abandoned after its first phase (docs/replication.md, "Aborting a
// promotion"), with real processes on loopback: a primary cluster streaming to a standby under a
// light write load. The standby is frozen (StandbyFreeze on every node, as `standby promote` does
// first) and left so: its releases stop and its pending entries grow. `standby promote --abort`
// (abortPromotion) unfreezes it: releases resume, stale reads advance, pending entries drain. Then
// a promotion that told one node before it stopped: the abort is refused, naming that node, and
// `standby promote` run again completes it; the standby takes writes. Run by
// `make test-standby-lifecycle` (STANDBY_LIFECYCLE=1); skipped by `make test`.
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { abortPromotion, promoteStandby, standbySnapshot } from '../../src/standby/promote.js';
import { primaryRoleToml, standbyRoleToml } from '../../src/standby/role-toml.js';
import { startCutWriter } from '../support/cut-writer.js';
import { LocalCluster, sleep, waitUntil } from '../support/local-cluster.js';
import { STANDBY_COLUMNS, idOf, standbyRows } from '../support/standby-table.js';

const TABLE = 'abandoned';
const REGIONS = 2;
const row = standbyRows(37);

/** Per region: mode, frozen, what it has applied (released_ms, applied index) and what waits. */
async function regionsOf(sc: RegionDbClient) {
  const snap = await standbySnapshot(sc);
  return snap.nodes.flatMap((n) => n.status.regions).map((r) => ({ id: r.region_id, mode: r.mode, frozen: r.frozen, releasedMs: Number(r.released_ms), applied: Number(r.applied_primary_index), pending: r.pending_entries }));
}

describe('dual active-standby: aborting a promotion abandoned after its first phase', function () {
  this.timeout(120_000);
  before(function () {
    if (process.env['STANDBY_LIFECYCLE'] !== '1') this.skip(); // two clusters, ~40 s: make test-standby-lifecycle
  });
  let standby: LocalCluster | undefined;
  let primary: LocalCluster | undefined;
  afterEach(async function () {
    const keep = this.currentTest?.state === 'failed';
    if (keep) console.log(`      kept for the post-mortem: ${primary?.dir} ${standby?.dir}`);
    await primary?.stop({ keepData: keep });
    await standby?.stop({ keepData: keep });
  });

  it('frozen: releases stop; --abort: releases resume and pending drains; a promotion under way: --abort refused, promote completes', async () => {
    standby = new LocalCluster({ clusterId: 'it-standby-unfreeze', datanodeToml: standbyRoleToml() });
    await standby.start();
    primary = new LocalCluster({ clusterId: 'it-primary-unfreeze', datanodeToml: primaryRoleToml(standby.datanodes.map((_, i) => standby!.datanodeAddr(i))) });
    await primary.start();
    const pc = primary.client({ deadlineMs: 3000 });
    const sc = standby.client({ deadlineMs: 3000 });
    const schema = await pc.createTable(TABLE, STANDBY_COLUMNS, REGIONS);
    const writer = startCutWriter(pc, TABLE, schema, row, { loops: 1, rowsPerWrite: 4, failPauseMs: 20, pauseMs: 20, boundMs: 90_000 });
    try {
      await waitUntil('every standby region releasing', 30_000, async () => {
        const regions = await regionsOf(sc);
        return regions.length === REGIONS && regions.every((r) => r.releasedMs > 0 && r.applied > 0) ? true : undefined;
      });

      // The first phase of a promotion, and nothing after it (the CLI was stopped).
      const nodes = (await sc.listNodes()).nodes.filter((n) => n.state === 'alive').map((n) => n.addr);
      await waitUntil('every region frozen', 15_000, async () => {
        await Promise.all(nodes.map((a) => sc.standbyFreeze(a).catch(() => undefined)));
        const regions = await regionsOf(sc);
        return regions.length === REGIONS && regions.every((r) => r.frozen) ? true : undefined;
      });
      const frozenAt = await regionsOf(sc);
      const rowsFrozen = (await sc.scan(TABLE, { consistency: 'stale' })).length;
      await sleep(2500); // five release intervals, under load
      const still = await regionsOf(sc);
      for (const r of still) {
        const was = frozenAt.find((f) => f.id === r.id)!;
        expect([r.releasedMs, r.applied], `region ${r.id}: nothing released while frozen`).to.deep.equal([was.releasedMs, was.applied]);
      }
      const pendingFrozen = still.reduce((n, r) => n + r.pending, 0);
      expect(pendingFrozen, 'the stream is still taken: pending entries grow').to.be.greaterThan(frozenAt.reduce((n, r) => n + r.pending, 0));
      expect((await sc.scan(TABLE, { consistency: 'stale' })).length, 'stale reads do not advance').to.equal(rowsFrozen);

      // The abort.
      const aborted = await abortPromotion(sc, { timeoutMs: 15_000, nowMs: () => Date.now() });
      expect([...aborted.unfrozen].sort()).to.deep.equal(still.map((r) => r.id).sort());
      await waitUntil('releases resumed and pending drained', 15_000, async () => {
        const regions = await regionsOf(sc);
        const resumed = regions.every((r) => !r.frozen && r.releasedMs > frozenAt.find((f) => f.id === r.id)!.releasedMs);
        return resumed && regions.reduce((n, r) => n + r.pending, 0) < pendingFrozen / 2 ? true : undefined;
      });
      expect((await sc.scan(TABLE, { consistency: 'stale' })).length, 'stale reads advance').to.be.greaterThan(rowsFrozen);
      await writer.stop();
      const acked = writer.writes.filter((w) => w.ackedMs !== undefined).flatMap((w) => w.rowIds);
      await waitUntil('every acknowledged row visible on the standby', 15_000, async () => {
        const present = new Set((await sc.scan(TABLE, { consistency: 'stale' })).map((r) => idOf(r.row)));
        return acked.every((id) => present.has(id)) ? true : undefined;
      });

      // A promotion that told one node before it stopped: it has begun to take effect.
      let told = 0;
      const interrupted = Object.assign(Object.create(sc) as RegionDbClient, {
        standbyPromote: (addr: string, cutMs: number, epoch: number) => (told++ === 0 ? sc.standbyPromote(addr, cutMs, epoch) : Promise.reject(new Error('the CLI was stopped'))),
      });
      const stopped = await promoteStandby(interrupted, { timeoutMs: 8000, nowMs: () => Date.now() }).then(
        () => 'promoted',
        (err: unknown) => (err as Error).message,
      );
      expect(stopped, 'the interrupted promotion').to.match(/incomplete|refused/);
      const refused = await abortPromotion(sc, { timeoutMs: 10_000, nowMs: () => Date.now() }).then(
        () => 'aborted',
        (err: unknown) => (err as Error).message,
      );
      console.log(`      the abort refused: ${refused}`);
      expect(refused).to.match(/cannot abort: .*reports promoted at epoch 1.*regiondb standby promote/);
      const report = await promoteStandby(sc, { timeoutMs: 20_000, nowMs: () => Date.now() });
      expect(report.epoch).to.equal(1);
      expect((await regionsOf(sc)).every((r) => r.mode === 'promoted')).to.equal(true);
      await sc.write(TABLE, [row(5_000_000)]);
      expect((await sc.get(TABLE, { host: row(5_000_000)['host']!, ts: row(5_000_000)['ts']! }))?.row['v']).to.equal(5_000_000);
    } finally {
      await writer.stop();
    }
  });
});
