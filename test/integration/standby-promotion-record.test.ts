// A standby datanode that missed the promotion answers a returning old primary's fence check
// (docs/replication.md, "The promotion record"; finding D9 in docs/correctness.md), with real processes on
// loopback. The old primary's [standby] addrs name one standby datanode only, and that node is
// down while `standby promote` runs. After the promotion the other standby datanodes stop, so the
// node restarts alone: its replicas have no quorum and cannot replay the cut. Then the old
// primary returns and asks that node first (and only). Before the record the node answered
// "standby" and the old primary took writes; now the node reads the promotion from its metasrv,
// adopts it, answers "promoted", and the old primary is fenced without taking a write. The second
// case restarts the standby's metasrv on an empty data dir first (finding D11): before the record
// was also kept in the object store, that metasrv answered "no promotion" and the node "standby".
// Run by `make test-standby-lifecycle` (STANDBY_LIFECYCLE=1); skipped by `make test`.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { isRegionDbError } from '../../src/common/errors.js';
import { promoteStandby, standbySnapshot } from '../../src/standby/promote.js';
import { primaryRoleToml, standbyRoleToml } from '../../src/standby/role-toml.js';
import { LocalCluster, sleep, waitUntil } from '../support/local-cluster.js';
import { STANDBY_COLUMNS, standbyRows } from '../support/standby-table.js';

const TABLE = 'missed';
const REGIONS = 2;
const row = standbyRows(41);
/** The standby datanode that misses the promotion, and the only one the old primary asks. */
const MISSED = 2;

describe('dual active-standby: a standby datanode that missed the promotion, asked by the returning old primary', function () {
  this.timeout(150_000);
  before(function () {
    if (process.env['STANDBY_LIFECYCLE'] !== '1') this.skip(); // two clusters: make test-standby-lifecycle
  });
  let standby: LocalCluster | undefined;
  let primary: LocalCluster | undefined;
  afterEach(async function () {
    const keep = this.currentTest?.state === 'failed';
    if (keep) console.log(`      kept for the post-mortem: ${primary?.dir} ${standby?.dir}`);
    await primary?.stop({ keepData: keep });
    await standby?.stop({ keepData: keep });
  });

  /**
   * The scenario; `metasrvRestartedEmpty`: before the missed node restarts, the standby's metasrv
   * is restarted on an empty data dir (its catalog lost: finding D11), so the record it answers
   * can come only from the object store (`[storage]`, which LocalCluster's metasrv has).
   */
  const missedNodeAsked = async ({ metasrvRestartedEmpty }: { metasrvRestartedEmpty: boolean }) => {
    const startedMs = Date.now();
    standby = new LocalCluster({ clusterId: 'it-standby-record', datanodeToml: standbyRoleToml() });
    await standby.start();
    primary = new LocalCluster({ clusterId: 'it-primary-record', datanodeToml: primaryRoleToml([standby.datanodeAddr(MISSED)]) });
    await primary.start();
    const pc = primary.client({ deadlineMs: 3000 });
    const sc = standby.client({ deadlineMs: 3000 });
    await pc.createTable(TABLE, STANDBY_COLUMNS, REGIONS);
    let n = 0;
    await waitUntil('rows written and every standby region releasing', 40_000, async () => {
      await pc.write(TABLE, [row(++n)]).catch(() => undefined);
      const regions = (await standbySnapshot(sc)).nodes.flatMap((x) => x.status.regions);
      return regions.length === REGIONS && regions.every((r) => Number(r.released_ms) > 0) ? true : undefined;
    });

    // The disaster, and a standby datanode down while the promotion runs.
    await primary.killAll();
    await standby.killDatanode(MISSED);
    const report = await promoteStandby(sc, { timeoutMs: 60_000, nowMs: () => Date.now() });
    expect(report.epoch).to.equal(1);
    expect(await sc.getStandbyPromotion(), 'recorded in the standby\'s metasrv').to.deep.equal({ epoch: 1, cutMs: report.cutMs });
    const fenceFile = join(standby.datanodeDataDir(MISSED), 'standby-fence.json');
    expect(existsSync(fenceFile), 'the missed node has no fence record').to.equal(false);

    // It restarts alone (the others stop): its replicas cannot replay the cut (no quorum).
    await Promise.all([0, 1].map((i) => standby!.stopDatanode(i)));
    if (metasrvRestartedEmpty) {
      await standby.stopMetasrv();
      rmSync(join(standby.dir, 'metasrv'), { recursive: true, force: true });
      await standby.startMetasrv();
      expect(await waitUntil('the emptied metasrv answering', 20_000, () => sc.getStandbyPromotion()), 'taken up from the object store').to.deep.equal({ epoch: 1, cutMs: report.cutMs });
    }
    await standby.startDatanode(MISSED);

    // The old primary returns and asks that node only.
    await primary.startMetasrv();
    await Promise.all(primary.datanodes.map((_, i) => primary!.startDatanode(i)));
    const pc2 = primary.client({ deadlineMs: 4000 });
    let accepted = 0;
    const fenced = await waitUntil('the returning primary refusing a write as fenced', 40_000, async () => {
      const err = await pc2.write(TABLE, [row(1_000_000 + ++n)]).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (err === undefined) return ++accepted; // fails below: the missed node answered "standby"
      return isRegionDbError(err) && /failed over/.test(err.message) ? err : undefined;
    });
    expect(accepted, 'writes the old primary accepted after the promotion (the missed node answered "standby")').to.equal(0);
    expect(String(fenced)).to.match(/promoted at epoch 1/);
    // The node adopted the promotion from the record (durably), and the cut is not in its regions.
    expect(JSON.parse(readFileSync(fenceFile, 'utf8'))).to.include({ state: 'promoted-adopted', epoch: 1, atMs: report.cutMs });
    const status = await sc.standbyStatus(standby.datanodeAddr(MISSED));
    expect(status.role).to.equal('promoted');
    // Still no write taken a while later (every primary datanode has done its fence check).
    await sleep(1000);
    for (let k = 0; k < 3; k++) {
      const err = await pc2.write(TABLE, [row(2_000_000 + k)]).then(() => undefined, (e: unknown) => e);
      expect(String(err), 'a write to the old primary').to.match(/failed over|fence check|retry/);
    }
    console.log(`      promote ${report.elapsedMs} ms (cut epoch ${report.epoch}); the whole test ${Date.now() - startedMs} ms`);
  };

  it('the node, restarted before it replays the cut, answers from its metasrv\'s record: the old primary takes no write and is fenced', () => missedNodeAsked({ metasrvRestartedEmpty: false }));

  it('…and so it does when its metasrv was restarted on an empty data dir after the promotion: the record comes back from the object store (D11)', () => missedNodeAsked({ metasrvRestartedEmpty: true }));
});
