// The promotion record objects after the review of D11 (D12 in docs/correctness.md; docs/replication.md,
// "The record in the object store"): every record the metasrv answers is in the store, two cuts at
// one epoch are answered only when the catalog holds one of them, keys stay ordered (epoch and cut
// at most 15 digits), a record whose put failed is read back before the next answer, and the read
// neither blocks the start nor runs on every call while the store cannot be read.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { systemClock, wallClock } from '../../src/common/clock.js';
import { crc32c } from '../../src/common/crc32c.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { MetasrvCore, PROMOTION_REREAD_MS } from '../../src/metasrv/metasrv-core.js';
import { PROMOTION_OBJECT_PREFIX, encodePromotionObject, promotionObjectKey } from '../../src/metasrv/promotion-object.js';
import { DelegatingObjectStore, FsObjectStore, type ObjectMeta } from '../../src/object-store/index.js';
import { HandClock } from '../fixtures/hand-clock.js';
import { MemoryCatalog, startMetasrvCore, testMetasrvConfig } from '../fixtures/metasrv-core.js';

const admin = { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never };
const record = (epoch: number, cutMs: number) => ({ epoch: String(epoch), cut_ms: String(cutMs) });
const outcomeOf = (call: Promise<unknown>) => call.then((v) => v, (err: unknown) => err as RegionDbError);

/** The object store: a put that stores the object and then fails (`failPutAfterStoring`), a promotion listing that never answers (`hangPromotionList`). */
class Store extends DelegatingObjectStore {
  failPutAfterStoring = false;
  hangPromotionList = false;
  override async put(key: string, bytes: Uint8Array): Promise<void> {
    await super.put(key, bytes);
    if (this.failPutAfterStoring) throw new RegionDbError(ErrorCode.Unavailable, 'S3 timeout after the object was stored (test)');
  }
  override list(prefix: string): Promise<ObjectMeta[]> {
    if (this.hangPromotionList && prefix.startsWith(PROMOTION_OBJECT_PREFIX)) return new Promise(() => {});
    return super.list(prefix);
  }
}

describe('the promotion record objects after the review of D11 (D12)', () => {
  let dir: string;
  let store: Store;
  const started: MetasrvCore[] = [];
  const start = async (clusterId: string, catalog: MemoryCatalog) => {
    const core = await startMetasrvCore(clusterId, admin, catalog, undefined, systemClock, { storage: { type: 'fs', root: dir } }, store);
    started.push(core);
    return core;
  };
  const keys = async () => (await store.list(PROMOTION_OBJECT_PREFIX)).map((o) => o.key).sort();
  const put = (clusterId: string, epoch: number, cutMs: number) => store.put(promotionObjectKey({ epoch, cutMs }), encodePromotionObject(clusterId, { epoch, cutMs }));
  const catalogHolding = (clusterId: string, epoch: number, cutMs: number) => {
    const catalog = new MemoryCatalog(clusterId);
    catalog.state = { ...catalog.state, standbyPromotion: { epoch, cutMs } };
    return catalog;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-promotion-review-'));
    store = new Store(new FsObjectStore(dir));
  });
  afterEach(() => {
    for (const core of started.splice(0)) core.halt();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a put that stored the object but failed: the same process reads the store again and answers it; a rerun with another cut is refused', async () => {
    const catalog = new MemoryCatalog('rv-a');
    const m = await start('rv-a', catalog);
    store.failPutAfterStoring = true;
    expect(await outcomeOf(m.recordStandbyPromotion(1, 100))).to.be.instanceOf(RegionDbError);
    store.failPutAfterStoring = false;
    expect((await m.getStandbyPromotion()).record, 'the object the failed call stored').to.deep.equal(record(1, 100));
    const rerun = await outcomeOf(m.recordStandbyPromotion(1, 200));
    expect(rerun, 'a promoter rerun with a new --to-time').to.have.property('code', ErrorCode.ConditionFailed);
    expect(await keys()).to.deep.equal([promotionObjectKey({ epoch: 1, cutMs: 100 })]);
    m.halt();
    const again = await start('rv-a', catalog);
    expect((await again.getStandbyPromotion()).record).to.deep.equal(record(1, 100));
  });

  it('epoch and cut above 15 digits are refused INVALID_ARGUMENT (never an assertion), nothing written; 15 digits are recorded', async () => {
    const m = await start('rv-b', new MemoryCatalog('rv-b'));
    for (const [epoch, cutMs] of [
      [1_000_000_000_000_000, 1],
      [1, 1_000_000_000_000_000],
    ] as const) {
      const out = await outcomeOf(m.recordStandbyPromotion(epoch, cutMs));
      expect(out, `${epoch}/${cutMs}`).to.be.instanceOf(RegionDbError);
      expect((out as RegionDbError).code).to.equal(ErrorCode.InvalidArgument);
      expect((out as RegionDbError).message).to.include('15 digits');
    }
    expect(await keys(), 'nothing written').to.deep.equal([]);
    await m.recordStandbyPromotion(999_999_999_999_999, 999_999_999_999_999);
    expect(() => encodePromotionObject('rv-b', { epoch: 1_000_000_000_000_000, cutMs: 1 })).to.throw('fits its key');
  });

  it('keys are ordered by their numbers: an object with a 16-digit epoch (written by the build before) is above the 15-digit ones', async () => {
    await put('rv-k', 999_999_999_999_999, 1);
    const record16 = { clusterId: 'rv-k', epoch: 1_000_000_000_000_000, cutMs: 2 };
    const payload = new TextEncoder().encode(JSON.stringify(record16));
    const bytes = new Uint8Array(9 + payload.byteLength);
    bytes[0] = 1;
    new DataView(bytes.buffer).setUint32(1, crc32c(payload));
    new DataView(bytes.buffer).setUint32(5, payload.byteLength);
    bytes.set(payload, 9);
    await store.put(`${PROMOTION_OBJECT_PREFIX}1000000000000000-000000000000002`, bytes);
    const fresh = await start('rv-k', new MemoryCatalog('rv-k'));
    expect((await fresh.getStandbyPromotion()).record).to.deep.equal(record(1_000_000_000_000_000, 2));
  });

  it('the catalog holds (2, 200), the store only (2, 100): the catalog\'s object is written; a metasrv on an empty data dir then refuses to choose, never answers the other cut', async () => {
    await put('rv-e', 2, 100);
    const m = await start('rv-e', catalogHolding('rv-e', 2, 200));
    expect((await m.getStandbyPromotion()).record).to.deep.equal(record(2, 200));
    expect(await keys(), 'the answered record is in the store').to.include(promotionObjectKey({ epoch: 2, cutMs: 200 }));
    m.halt();
    const fresh = await start('rv-e', new MemoryCatalog('rv-e'));
    const out = await outcomeOf(fresh.getStandbyPromotion());
    expect(out, 'not (2, 100)').to.be.instanceOf(RegionDbError);
    expect((out as RegionDbError).code).to.equal(ErrorCode.Unavailable);
    expect((out as RegionDbError).message).to.include(promotionObjectKey({ epoch: 2, cutMs: 100 })).and.to.include(promotionObjectKey({ epoch: 2, cutMs: 200 }));
  });

  it('two cuts at the catalog\'s epoch, the catalog\'s among them: the catalog\'s is answered, the other named in a warning as removable', async () => {
    await put('rv-f', 2, 100);
    await put('rv-f', 2, 200);
    const lines: string[] = [];
    const core = new MetasrvCore(testMetasrvConfig('rv-f', { storage: { type: 'fs', root: dir } }), pino({ level: 'warn' }, { write: (line: string) => lines.push(line) }), 3, { admin, procedureClock: wallClock, clock: systemClock });
    await core.startAlone(catalogHolding('rv-f', 2, 200), store);
    started.push(core);
    expect((await core.getStandbyPromotion()).record).to.deep.equal(record(2, 200));
    const warned = lines.map((l) => JSON.parse(l) as { msg: string; others?: string[] }).find((l) => l.msg.includes('another cut'));
    expect(warned?.others, lines.join('\n')).to.deep.equal([promotionObjectKey({ epoch: 2, cutMs: 100 })]);
  });

  it('two cuts at an epoch above the catalog\'s (neither held): UNAVAILABLE naming both keys and how to tell which one nodes hold; nothing taken up', async () => {
    await put('rv-g', 3, 100);
    await put('rv-g', 3, 200);
    const m = await start('rv-g', catalogHolding('rv-g', 2, 50));
    const out = await outcomeOf(m.getStandbyPromotion());
    expect(out).to.be.instanceOf(RegionDbError);
    expect((out as RegionDbError).code).to.equal(ErrorCode.Unavailable);
    expect((out as RegionDbError).message)
      .to.include(promotionObjectKey({ epoch: 3, cutMs: 100 }))
      .and.to.include(promotionObjectKey({ epoch: 3, cutMs: 200 }))
      .and.to.include('fence record');
    expect(m.catalog.standbyPromotion).to.deep.equal({ epoch: 2, cutMs: 50 });
  });

  it('two record calls at once at one epoch with different cuts: one is recorded, the other refused; one object', async () => {
    const m = await start('rv-h', new MemoryCatalog('rv-h'));
    const [a, b] = await Promise.all([outcomeOf(m.recordStandbyPromotion(3, 100)), outcomeOf(m.recordStandbyPromotion(3, 200))]);
    expect(a).to.deep.equal({ record: record(3, 100) });
    expect(b).to.have.property('code', ErrorCode.ConditionFailed);
    expect(await keys()).to.deep.equal([promotionObjectKey({ epoch: 3, cutMs: 100 })]);
  });

  it('a record call that passed the gate before a takeover, run after it (no read yet in the new epoch), is refused UNAVAILABLE and puts nothing', async () => {
    const catalog = new MemoryCatalog('rv-i');
    const m = await start('rv-i', catalog);
    catalog.holdFrom = (state) => state.standbyPromotion !== undefined;
    const first = outcomeOf(m.recordStandbyPromotion(3, 100));
    for (let i = 0; i < 1000 && !catalog.held; i++) await new Promise((ok) => setTimeout(ok, 5)); // its object put, its save held
    expect(catalog.held, 'the first call\'s save is held').to.not.equal(undefined);
    const second = outcomeOf(m.recordStandbyPromotion(4, 100)); // passes the gate (read in this epoch); waits behind the first
    await new Promise((ok) => setImmediate(ok));
    // As a takeover in a later term does (metasrv-core's takeover: a new epoch, its read not yet done).
    (m as unknown as { epoch: number }).epoch = 7;
    catalog.release();
    await first;
    const out = await second;
    expect(out).to.be.instanceOf(RegionDbError);
    expect((out as RegionDbError).code).to.equal(ErrorCode.Unavailable);
    expect(await keys(), 'no put before the new epoch\'s read').to.deep.equal([promotionObjectKey({ epoch: 3, cutMs: 100 })]);
  });

  it('a promotion listing that never answers holds neither the start nor a GetStandbyPromotion call (UNAVAILABLE after a second)', async () => {
    store.hangPromotionList = true;
    const clock = new HandClock();
    const starting = startMetasrvCore('rv-d', admin, new MemoryCatalog('rv-d'), undefined, clock, { storage: { type: 'fs', root: dir } }, store);
    const outcome = await Promise.race([starting.then(() => 'started'), new Promise((ok) => setTimeout(() => ok('blocked'), 2000))]);
    expect(outcome).to.equal('started');
    const m = await starting;
    started.push(m);
    const call = outcomeOf(m.getStandbyPromotion());
    await new Promise((ok) => setImmediate(ok));
    clock.advance(PROMOTION_REREAD_MS);
    const out = await call;
    expect(out).to.be.instanceOf(RegionDbError);
    expect((out as RegionDbError).code).to.equal(ErrorCode.Unavailable);
    expect((out as RegionDbError).message).to.include('its read has not ended yet');
  });
});
