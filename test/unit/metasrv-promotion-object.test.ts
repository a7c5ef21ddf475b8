// The standby promotion record kept in the object store too (docs/replication.md, "The promotion
// record"; D11 in docs/correctness.md): a metasrv started on an empty data dir, or from a catalog
// copy older than the promotion, takes the record up from the store before it answers
// GetStandbyPromotion, never lowers it, and answers UNAVAILABLE — not "no promotion" — while it
// cannot read the store. Before, the record lived only in the catalog: such a metasrv answered
// epoch 0, and a standby node that missed the promotion answered a returning old primary "standby".
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { systemClock, wallClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { CatalogState } from '../../src/metasrv/catalog.js';
import { decodeCatalog } from '../../src/metasrv/catalog-store.js';
import { MetaGroup } from '../../src/metasrv/meta-group.js';
import { MetasrvCore, PROMOTION_REREAD_MS } from '../../src/metasrv/metasrv-core.js';
import { PROMOTION_OBJECT_PREFIX, encodePromotionObject, promotionObjectKey } from '../../src/metasrv/promotion-object.js';
import { DelegatingObjectStore, FsObjectStore, type ObjectMeta } from '../../src/object-store/index.js';
import { HandClock } from '../fixtures/hand-clock.js';
import { MemoryCatalog, startMetasrvCore, testMetasrvConfig } from '../fixtures/metasrv-core.js';
import { waitUntil } from '../support/local-cluster.js';

const admin = { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never };
const record = (epoch: number, cutMs: number) => ({ epoch: String(epoch), cut_ms: String(cutMs) });
const outcomeOf = (call: Promise<unknown>) => call.then(() => 'answered', (err: unknown) => err as RegionDbError);

/** The object store, whose listing of the promotion records fails while `unreadable` is set (other listings pass). */
class PromotionStore extends DelegatingObjectStore {
  unreadable = false;
  promotionLists = 0;
  override list(prefix: string): Promise<ObjectMeta[]> {
    if (prefix.startsWith(PROMOTION_OBJECT_PREFIX)) this.promotionLists++;
    if (this.unreadable && prefix.startsWith(PROMOTION_OBJECT_PREFIX)) return Promise.reject(new RegionDbError(ErrorCode.Unavailable, 'the object store cannot be reached (test)'));
    return super.list(prefix);
  }
}

describe('the standby promotion record in the object store (D11)', () => {
  let dir: string;
  let store: PromotionStore;
  const started: MetasrvCore[] = [];
  const start = async (clusterId: string, catalog: MemoryCatalog) => {
    const core = await startMetasrvCore(clusterId, admin, catalog, undefined, systemClock, { storage: { type: 'fs', root: dir } }, store);
    started.push(core);
    return core;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-promotion-object-'));
    store = new PromotionStore(new FsObjectStore(dir));
  });
  afterEach(() => {
    for (const core of started.splice(0)) core.halt();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a metasrv started on an empty data dir over the same object store answers the recorded promotion, and saves it', async () => {
    const first = await start('promo-dr', new MemoryCatalog('promo-dr'));
    await first.recordStandbyPromotion(3, 1500);
    expect((await store.list(PROMOTION_OBJECT_PREFIX)).map((o) => o.key), 'the object, written before the answer').to.deep.equal([promotionObjectKey({ epoch: 3, cutMs: 1500 })]);
    first.halt();
    const emptyCatalog = new MemoryCatalog('promo-dr');
    const fresh = await start('promo-dr', emptyCatalog);
    expect((await fresh.getStandbyPromotion()).record, 'the fresh metasrv').to.deep.equal(record(3, 1500));
    expect(emptyCatalog.state.standbyPromotion, 'saved in its catalog').to.deep.equal({ epoch: 3, cutMs: 1500 });
    const lower = await outcomeOf(fresh.recordStandbyPromotion(2, 100));
    expect((lower as RegionDbError).code, 'still monotonic').to.equal(ErrorCode.ConditionFailed);
  });

  it('a record whose catalog write failed after its object was written is taken up by the next metasrv, not passed over', async () => {
    const catalog = new MemoryCatalog('promo-crash');
    const first = await start('promo-crash', catalog);
    catalog.holdFrom = (state) => state.standbyPromotion !== undefined;
    const recording = outcomeOf(first.recordStandbyPromotion(2, 700));
    while (!catalog.held?.length) await new Promise((ok) => setImmediate(ok));
    catalog.release(new Error('disk full (test)'));
    expect(await recording, 'the promoter: failed, outcome unknown to it').to.be.instanceOf(RegionDbError);
    expect(catalog.state.standbyPromotion, 'not in the catalog').to.equal(undefined);
    first.halt();
    const next = await start('promo-crash', new MemoryCatalog('promo-crash'));
    expect((await next.getStandbyPromotion()).record).to.deep.equal(record(2, 700));
  });

  it('restored from a catalog copy older than the promotion: the newer record in the store wins; a lower one never lowers the catalog', async () => {
    const catalog = new MemoryCatalog('promo-restore');
    const first = await start('promo-restore', catalog);
    await first.recordStandbyPromotion(2, 100);
    const olderCopy: CatalogState = structuredClone(catalog.state);
    await first.recordStandbyPromotion(3, 200);
    first.halt();
    const restored = new MemoryCatalog('promo-restore');
    restored.state = olderCopy;
    const fromCopy = await start('promo-restore', restored);
    expect((await fromCopy.getStandbyPromotion()).record, 'restored from the copy at epoch 2').to.deep.equal(record(3, 200));
    fromCopy.halt();
    // A catalog ahead of the store (recorded by a build without the objects): kept, and its object written.
    const ahead = new MemoryCatalog('promo-restore');
    ahead.state = { ...structuredClone(olderCopy), standbyPromotion: { epoch: 5, cutMs: 50 } };
    const aheadCore = await start('promo-restore', ahead);
    expect((await aheadCore.getStandbyPromotion()).record, 'a catalog above the store').to.deep.equal(record(5, 50));
    expect(ahead.state.standbyPromotion).to.deep.equal({ epoch: 5, cutMs: 50 });
    expect((await store.list(PROMOTION_OBJECT_PREFIX)).map((o) => o.key).at(-1), 'copied to the store').to.equal(promotionObjectKey({ epoch: 5, cutMs: 50 }));
  });

  it('the store cannot be read at start: GetStandbyPromotion and RecordStandbyPromotion answer UNAVAILABLE, not "no promotion", until it can (read again at most once a second)', async () => {
    const first = await start('promo-unreadable', new MemoryCatalog('promo-unreadable'));
    await first.recordStandbyPromotion(4, 900);
    first.halt();
    store.unreadable = true;
    const clock = new HandClock();
    const fresh = await startMetasrvCore('promo-unreadable', admin, new MemoryCatalog('promo-unreadable'), undefined, clock, { storage: { type: 'fs', root: dir } }, store);
    started.push(fresh);
    for (const [what, call] of [['GetStandbyPromotion', () => fresh.getStandbyPromotion()], ['RecordStandbyPromotion', () => fresh.recordStandbyPromotion(5, 1000)]] as const) {
      const outcome = await outcomeOf(call());
      expect(outcome, what).to.be.instanceOf(RegionDbError);
      expect((outcome as RegionDbError).code, what).to.equal(ErrorCode.Unavailable);
      expect((outcome as RegionDbError).message, what).to.include('promotion record').and.to.include('cannot be reached (test)');
    }
    store.unreadable = false;
    const listed = store.promotionLists;
    expect((await outcomeOf(fresh.getStandbyPromotion())) as RegionDbError, 'within a second of the failed read: not read again').to.have.property('code', ErrorCode.Unavailable);
    expect(store.promotionLists, 'no listing in between').to.equal(listed);
    clock.advance(PROMOTION_REREAD_MS);
    expect((await fresh.getStandbyPromotion()).record, 'once the store answers').to.deep.equal(record(4, 900));
  });

  it('a record object of another cluster is refused with a clear log: UNAVAILABLE naming it, never taken up or passed over', async () => {
    await store.put(promotionObjectKey({ epoch: 4, cutMs: 10 }), encodePromotionObject('other-cluster', { epoch: 4, cutMs: 10 }));
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const core = new MetasrvCore(testMetasrvConfig('promo-mine', { storage: { type: 'fs', root: dir } }), log, 3, { admin, procedureClock: wallClock, clock: systemClock });
    await core.startAlone(new MemoryCatalog('promo-mine'), store);
    started.push(core);
    const outcome = await outcomeOf(core.getStandbyPromotion());
    expect(outcome).to.be.instanceOf(RegionDbError);
    expect((outcome as RegionDbError).code).to.equal(ErrorCode.Unavailable);
    expect((outcome as RegionDbError).message).to.include('belongs to cluster "other-cluster", not "promo-mine"');
    expect(core.catalog.standbyPromotion, 'not taken up').to.equal(undefined);
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; err?: string });
    expect(logged.some((l) => l.msg.includes('cannot read the standby promotion record') && l.err?.includes('other-cluster')), lines.join('\n')).to.equal(true);
  });

  it('the leader of a metasrv group started on empty data dirs takes the record up at its takeover and commits it', async function () {
    this.timeout(20_000);
    const first = await start('promo-group', new MemoryCatalog('promo-group'));
    await first.recordStandbyPromotion(6, 4242);
    first.halt();
    const core = new MetasrvCore(testMetasrvConfig('promo-group', { storage: { type: 'fs', root: dir } }), silentLogger, 3, { admin, procedureClock: wallClock, clock: systemClock });
    const groupDir = mkdtempSync(join(tmpdir(), 'regiondb-promotion-object-group-'));
    const group = new MetaGroup({
      clusterId: 'promo-group',
      memberId: 1,
      members: new Map([[1, '127.0.0.1:1']]),
      join: false,
      dataDir: groupDir,
      tickMs: 10,
      electionTicks: 5,
      credentials: grpc.credentials.createInsecure(),
      clock: systemClock,
      log: silentLogger,
      onRoleChange: (leader, term) => (leader ? void core.takeover(term) : core.demote(term)),
      onFatal: (err) => core.groupFailed(err),
    });
    core.joinGroup(group, store);
    await group.start();
    try {
      const answered = await waitUntil('the leader answers GetStandbyPromotion', 10_000, () => core.getStandbyPromotion().then((res) => res.record, () => undefined));
      expect(answered).to.deep.equal(record(6, 4242));
      await core.whenSaved();
      const committed = group.appliedCatalog();
      expect(committed && decodeCatalog(committed, 'the group log').standbyPromotion, 'committed in the group').to.deep.equal({ epoch: 6, cutMs: 4242 });
    } finally {
      core.halt();
      await group.stop();
      rmSync(groupDir, { recursive: true, force: true });
    }
  });

  it('without [storage] the record is the catalog\'s alone, as before: answered at once, nothing read', async () => {
    const core = await startMetasrvCore('promo-nostorage', admin, new MemoryCatalog('promo-nostorage'));
    started.push(core);
    expect((await core.getStandbyPromotion()).record).to.deep.equal(record(0, 0));
    await core.recordStandbyPromotion(1, 5);
    expect((await core.getStandbyPromotion()).record).to.deep.equal(record(1, 5));
  });
});
