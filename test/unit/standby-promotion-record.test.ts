// The promotion record (docs/replication.md, "The promotion record"; finding D9 in docs/correctness.md): a
// promotion of the standby site is written to that site's metasrv — replicated, monotonic in
// epoch — before any datanode is told to promote, and a standby datanode that knows no promotion
// of its own reads it before it answers a primary's fence check "standby". Before it, a node that
// missed the promotion (down while it ran, its replicas not yet caught up) answered a returning
// old primary "standby", and the old primary took writes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { systemClock, wallClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { Datanode } from '../../src/datanode/datanode.js';
import { RegionState, type ShippedEntry, type TableSchema, encodeCommand, stampCommand } from '../../src/engine/index.js';
import { CatalogStore, decodeCatalog, encodeCatalog } from '../../src/metasrv/catalog-store.js';
import { CatalogMachine, catalogPutCommand } from '../../src/metasrv/meta-group.js';
import { FsObjectStore } from '../../src/object-store/index.js';
import { readFence } from '../../src/standby/fence.js';
import { abortPromotion, promoteStandby } from '../../src/standby/promote.js';
import { Receiver } from '../../src/standby/receiver.js';
import { Shipper } from '../../src/standby/shipper.js';
import type { SiteCredentials } from '../../src/standby/site-credentials.js';
import { MemoryCatalog, startMetasrvCore } from '../fixtures/metasrv-core.js';
import { fakePromotionRecord } from '../fixtures/promotion-record.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });
const regionId = ((7n << 32n) | 0n).toString();
const put = (requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId: 'primary-client', requestId, rows: [[key, 1, v]] });
const shipped = (index: number, stampMs: number, key: string, v: number): ShippedEntry => ({ index, stampMs, data: stampCommand(put(index, key, v), stampMs) });

/** A standby datanode hosting one region replica (not cut: it missed the promotion), whose metasrv answers GetStandbyPromotion with `metasrv()`. */
function standbyNode(state: RegionState, metasrv: () => Promise<unknown>) {
  const replica = { regionId, isLeader: () => false, stateMachine: state };
  const asked: string[] = [];
  const dn = {
    nodeId: 3,
    metas: new Map([[regionId, { schema }]]),
    regionServer: { allReplicas: () => [replica], replica: (id: string) => (id === regionId ? replica : undefined) },
    metaCall: (method: string) => {
      asked.push(method);
      return method === 'GetStandbyPromotion' ? metasrv() : Promise.reject(new Error(`unexpected ${method}`));
    },
  } as unknown as Datanode;
  return { dn, asked };
}

async function receivedOnly(): Promise<RegionState> {
  const state = new RegionState(schema);
  await state.apply(1, encodeCommand({ kind: 'standby-append', fromIndex: 1, entries: [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2)], watermarkMs: 200 }));
  return state;
}

describe('the fence check of a standby datanode that knows no promotion (the promotion record)', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'regiondb-promotion-record-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('its metasrv records a promotion at epoch 1: it answers "promoted" at 1 (never "standby"), adopted durably, and takes no client write', async () => {
    const { dn, asked } = standbyNode(await receivedOnly(), async () => ({ record: { epoch: '1', cut_ms: '150' } }));
    const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    const res = await receiver.fenceCheckResponse();
    expect(asked, 'the node asked its metasrv').to.deep.equal(['GetStandbyPromotion']);
    expect(res.role, 'what a returning old primary hears').to.equal('promoted');
    expect(res.fence_epoch).to.equal('1');
    expect(readFence(dataDir), 'the fence file, written before the answer').to.deep.equal({ state: 'promoted', epoch: 1, atMs: 150, adopted: true });
    expect(() => receiver.writeGate.admit(regionId, put(9, 'c', 3)), 'a client write').to.throw(/read-only standby/);
    // Once adopted, the stream of a primary at or below the epoch is refused (the old primary fences itself).
    expect((await receiver.ship({ primary_epoch: '0' } as Parameters<Receiver['ship']>[0])).promoted, 'a ship of the old primary').to.equal(true);
  });

  it('its metasrv cannot be reached (or is older, UNIMPLEMENTED): the call fails UNAVAILABLE, nothing written', async () => {
    for (const failure of [new RegionDbError(ErrorCode.Unavailable, 'connect ECONNREFUSED 127.0.0.1:1'), Object.assign(new Error('12 UNIMPLEMENTED: unknown method GetStandbyPromotion'), { code: 12 })]) {
      const { dn } = standbyNode(await receivedOnly(), () => Promise.reject(failure));
      const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
      const outcome = await receiver.fenceCheckResponse().then(
        (res) => `answered ${res.role}`,
        (err: unknown) => err,
      );
      expect(outcome, `with ${failure.message}`).to.be.instanceOf(RegionDbError);
      expect((outcome as RegionDbError).code).to.equal(ErrorCode.Unavailable);
      expect((outcome as RegionDbError).message).to.include('promotion record').and.to.include(failure.message);
      expect(readFence(dataDir), 'no fence file').to.equal(undefined);
    }
  });

  it('its metasrv, restarted on an empty data dir after recording the promotion, gives it back from the object store: "promoted", not "standby" (D11)', async () => {
    const objects = mkdtempSync(join(tmpdir(), 'regiondb-promotion-record-objects-'));
    const admin = { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never };
    const withStorage = { storage: { type: 'fs', root: objects } };
    try {
      const before = await startMetasrvCore('promo-site', admin, new MemoryCatalog('promo-site'), undefined, systemClock, withStorage, new FsObjectStore(objects));
      await before.recordStandbyPromotion(1, 150);
      before.halt();
      const restarted = await startMetasrvCore('promo-site', admin, new MemoryCatalog('promo-site'), undefined, systemClock, withStorage, new FsObjectStore(objects));
      try {
        const { dn } = standbyNode(await receivedOnly(), () => restarted.getStandbyPromotion());
        const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
        const res = await receiver.fenceCheckResponse();
        expect(res.role, 'what a returning old primary hears').to.equal('promoted');
        expect(readFence(dataDir)).to.deep.equal({ state: 'promoted', epoch: 1, atMs: 150, adopted: true });
      } finally {
        restarted.halt();
      }
    } finally {
      rmSync(objects, { recursive: true, force: true });
    }
  });

  it('its metasrv records nothing: "standby"; a status that is not a fence check does not ask the metasrv', async () => {
    const { dn, asked } = standbyNode(await receivedOnly(), async () => ({ record: { epoch: '0', cut_ms: '0' } }));
    const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    expect(receiver.statusResponse().role).to.equal('standby');
    expect(asked, 'a plain status').to.deep.equal([]);
    expect((await receiver.fenceCheckResponse()).role).to.equal('standby');
    expect(readFence(dataDir), 'no fence file').to.equal(undefined);
  });

  it('a recorded promotion this node knows to be history (its region follows a later primary: the fail-back) is not adopted: "standby"', async () => {
    const state = await receivedOnly();
    await state.apply(2, encodeCommand({ kind: 'standby-epoch', primaryEpoch: 2 }));
    const { dn } = standbyNode(state, async () => ({ record: { epoch: '1', cut_ms: '150' } }));
    const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir }, silentLogger, systemClock, wallClock, new Registry());
    const res = await receiver.fenceCheckResponse();
    expect(res.role).to.equal('standby');
    expect(res.fence_epoch, 'the epoch it knows, for the primary to learn').to.equal('2');
    expect(readFence(dataDir)).to.equal(undefined);
  });
});

describe('the promotion record in the metasrv (RecordStandbyPromotion / GetStandbyPromotion)', () => {
  const admin = { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never };

  it('only grows in epoch: a lower epoch, or the same epoch with another cut, is refused; the same again is answered', async () => {
    const core = await startMetasrvCore('promo-record', admin, new MemoryCatalog('promo-record'));
    try {
      expect((await core.getStandbyPromotion()).record).to.deep.equal({ epoch: '0', cut_ms: '0' });
      await core.recordStandbyPromotion(2, 500);
      await core.recordStandbyPromotion(2, 500); // a retry
      for (const [e, cut] of [[1, 900], [2, 501]] as const) {
        const outcome = await core.recordStandbyPromotion(e, cut).then(() => 'recorded', (err: unknown) => (err as RegionDbError).code);
        expect(outcome, `epoch ${e} cut ${cut} after epoch 2 cut 500`).to.equal(ErrorCode.ConditionFailed);
      }
      expect((await core.getStandbyPromotion()).record).to.deep.equal({ epoch: '2', cut_ms: '500' });
      await core.recordStandbyPromotion(3, 400); // a later promotion (after a fail-back): its cut may be anything
      expect((await core.getStandbyPromotion()).record).to.deep.equal({ epoch: '3', cut_ms: '400' });
    } finally {
      core.halt();
    }
  });

  it('is durable before the answer: a metasrv restarted on the same store has it; and the group replicates it (the catalog put)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-promotion-record-meta-'));
    try {
      const store = await CatalogStore.open(dir, silentLogger);
      const core = await startMetasrvCore('promo-durable', admin, store as unknown as MemoryCatalog);
      await core.recordStandbyPromotion(4, 1234);
      core.halt();
      await store.close();
      const again = await CatalogStore.open(dir, silentLogger);
      const restarted = await startMetasrvCore('promo-durable', admin, again as unknown as MemoryCatalog);
      try {
        expect((await restarted.getStandbyPromotion()).record, 'after the restart').to.deep.equal({ epoch: '4', cut_ms: '1234' });
        const lower = await restarted.recordStandbyPromotion(3, 1).then(() => 'recorded', (err: unknown) => (err as RegionDbError).code);
        expect(lower, 'still monotonic after the restart').to.equal(ErrorCode.ConditionFailed);
        // In a group the catalog is what the group commits (meta-group.ts): every member applies the same bytes.
        const member = CatalogMachine.restore(null);
        member.apply(1, catalogPutCommand(encodeCatalog(restarted.catalog)));
        expect(decodeCatalog(member.catalog!, 'a member').standbyPromotion).to.deep.equal({ epoch: 4, cutMs: 1234 });
      } finally {
        restarted.halt();
        await again.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A standby of one node leading one frozen region, as promoteStandby sees it through its client; `events` in call order. */
function frozenStandby(record: ReturnType<typeof fakePromotionRecord>) {
  const events: string[] = [];
  let region = {
    region_id: 'r1', table: 't', region_number: 0, mode: 'standby', received_index: '9', applied_primary_index: '5', received_through_ms: '400', last_stamp_ms: '400',
    released_ms: '300', pending_entries: 4, cut_ms: '0', dropped_entries: '0', dropped_rows: '0', sync: false, seeded_index: '0', frozen: true, promoted_epoch: '0', primary_epoch: '0',
  };
  let role = 'standby';
  const client = {
    ...record,
    recordStandbyPromotion: async (epoch: number, cutMs: number) => {
      events.push(`record ${epoch}@${cutMs}`);
      return record.recordStandbyPromotion(epoch, cutMs);
    },
    listNodes: async () => ({ nodes: [{ node_id: '1', addr: 'n1', state: 'alive' }], region_infos: [{ route: { region_id: 'r1' } }] }),
    standbyStatus: async (addr: string) => ({ node_id: addr, role, regions: [region], shipping: [], fence_epoch: role === 'promoted' ? '1' : '0', mode: '', fence_at_ms: role === 'promoted' ? region.cut_ms : '0' }),
    standbyFreeze: async () => ({ regions: [region] }),
    standbyUnfreeze: async () => {
      events.push('unfreeze');
      region = { ...region, frozen: false };
      return { regions: [region] };
    },
    standbyPromote: async (_addr: string, cutMs: number, epoch: number) => {
      events.push(`promote ${epoch}@${cutMs}`);
      role = 'promoted';
      region = { ...region, mode: 'promoted', cut_ms: String(cutMs), promoted_epoch: String(epoch) };
      return { regions: [region] };
    },
    dropTable: async () => undefined,
  };
  return { events, client: client as unknown as Parameters<typeof promoteStandby>[0] };
}

describe('the promoter writes the record before it tells any node (src/standby/promote.ts)', () => {
  it('the record (epoch, cut) comes before the first StandbyPromote', async () => {
    const record = fakePromotionRecord();
    const { events, client } = frozenStandby(record);
    const report = await promoteStandby(client, { timeoutMs: 2000, nowMs: () => Date.now() });
    expect(events[0], 'the first thing done after the cut').to.equal(`record ${report.epoch}@${report.cutMs}`);
    expect(events.slice(1).every((e) => e.startsWith('promote ')), 'then only StandbyPromote calls').to.equal(true);
    expect(record.state).to.include({ epoch: report.epoch, cutMs: report.cutMs });
  });

  it('a failure to write it stops the promotion before any node is told; only a refusal suggests the abort', async () => {
    // A refusal: certainly not recorded. An unknown outcome (no leader, a timeout): it may be
    // recorded after all, so the message says to run the promotion again, never the abort.
    for (const [err, says, never] of [
      [new RegionDbError(ErrorCode.ConditionFailed, 'epoch 3 recorded'), 'not recorded', undefined],
      [new RegionDbError(ErrorCode.Unavailable, 'no metasrv leader'), 'may have been recorded', 'undo the first phase'],
    ] as const) {
      const record = fakePromotionRecord();
      record.recordStandbyPromotion = () => Promise.reject(err);
      const { events, client } = frozenStandby(record);
      const outcome = await promoteStandby(client, { timeoutMs: 2000, nowMs: () => Date.now() }).then(() => undefined, (e: unknown) => e as RegionDbError);
      expect(outcome?.code).to.equal(err.code);
      expect(outcome?.message).to.include(says).and.to.include('told no node');
      if (never) expect(outcome?.message).not.to.include(never);
      expect(events.filter((e) => e.startsWith('promote ')), 'StandbyPromote calls').to.deep.equal([]);
    }
  });

  it('an interrupted run (recorded, no node told yet) is finished at the recorded cut and epoch; `--abort` refuses once it is recorded', async () => {
    const record = fakePromotionRecord();
    await record.recordStandbyPromotion(1, 350);
    const { events, client } = frozenStandby(record);
    const aborted = await abortPromotion(client, { timeoutMs: 500, nowMs: () => Date.now() }).then(() => undefined, (err: unknown) => err as RegionDbError);
    expect(aborted?.code, 'the abort').to.equal(ErrorCode.ConditionFailed);
    expect(aborted?.message).to.include("metasrv records the promotion at epoch 1");
    expect(events, 'nothing unfrozen').to.not.include('unfreeze');
    const report = await promoteStandby(client, { timeoutMs: 2000, nowMs: () => Date.now() });
    expect({ epoch: report.epoch, cutMs: report.cutMs }, 'the recorded promotion').to.deep.equal({ epoch: 1, cutMs: 350 });
  });
});

describe('a primary datanode that does not know its cluster\'s epoch reads it from its metasrv\'s record', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'regiondb-promotion-record-primary-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('a node added after its cluster\'s promotion at epoch 2 (no record, no region of it) is not fenced by a standby node still holding the superseded promotion at 1', async () => {
    const asked: string[] = [];
    const dn = {
      nodeId: 5,
      metas: new Map(),
      regionServer: { allReplicas: () => [], replica: () => undefined },
      metaCall: (method: string) => {
        asked.push(method);
        return method === 'GetStandbyPromotion' ? Promise.resolve({ record: { epoch: '2', cut_ms: '900' } }) : Promise.reject(new Error(`unexpected ${method}`));
      },
    } as unknown as Datanode;
    const cfg = { addrs: [], addrOverrides: {}, mode: 'async' as const, shipIntervalMs: 100, dataDir, clusterId: 'site-a', site: { close: () => undefined } as unknown as SiteCredentials };
    const shipper = new Shipper(dn, cfg, silentLogger, systemClock, wallClock, new Registry());
    const inside = shipper as unknown as { checkFence(): Promise<void>; fenceAnswer(role: string, epoch: number, addr: string): void };
    await inside.checkFence(); // no standby address here: only the record is read
    expect(asked, 'read before the first fence check').to.deep.equal(['GetStandbyPromotion']);
    expect(shipper.ownEpoch(), 'its cluster\'s epoch').to.equal(2);
    inside.fenceAnswer('promoted', 1, 'site-b:1'); // a standby node of the other site that missed the fail-back
    expect(shipper.role(), 'not fenced by a promotion below its own epoch').to.equal('primary');
    expect(readFence(dataDir), 'no fence file').to.equal(undefined);
  });
});
