// Seeding a standby region (docs/replication.md, "Seeding"; S5 and S6 in
// src/engine/standby-state.ts): the region becomes the primary's state as of a flushed index and
// the stream continues after it; the cut waits for the stream to pass the seed's time; GC keeps
// the SSTs a pending seed names; a primary that was a promoted standby ships its version offset.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { sstsNamedByEntries } from '../../src/datanode/sst-gc.js';
import { type Command, RegionState, type ShippedEntry, type SstMeta, type TableSchema, decodeCommand, encodeCommand, stampCommand } from '../../src/engine/index.js';
import { StandbyState } from '../../src/engine/standby-state.js';
import { type RegionPosition, promotionCutMs, safeTimeMs } from '../../src/standby/cut.js';
import { promoteStandby } from '../../src/standby/promote.js';
import { EntryType } from '../../src/raft/index.js';
import { cpuSchema } from '../fixtures/schemas.js';
import { fakePromotionRecord } from '../fixtures/promotion-record.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });
const put = (requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId: 'primary-client', requestId, rows: [[key, 1, v]] });
const shipped = (index: number, stampMs: number, data: Uint8Array): ShippedEntry => ({ index, stampMs, data: stampCommand(data, stampMs) });
const append = (fromIndex: number, entries: ShippedEntry[], watermarkMs: number, versionOffset = 0) =>
  encodeCommand({ kind: 'standby-append', fromIndex, entries, watermarkMs, ...(versionOffset ? { versionOffset } : {}) });
const release = (upToMs: number) => encodeCommand({ kind: 'standby-release', upToMs });
const sst = (key: string): SstMeta => ({ key, size: 10, entries: 1, maxVersion: 3, minTimestampMs: 1, maxTimestampMs: 1 });

/** The primary region's dedup table as a manifest at `flushAt` carries it, after `writes` applied at 1…n. */
async function primaryDedup(writes: Uint8Array[]): Promise<string> {
  const p = new RegionState(schema);
  let i = 0;
  for (const w of writes) await p.apply(++i, w);
  await p.apply(++i, encodeCommand({ kind: 'freeze' }));
  await p.apply(++i, encodeCommand({ kind: 'flush-edit', freezeIndex: i - 1, sst: null }));
  return p.manifest().dedup;
}

async function readRow(s: RegionState, key: string): Promise<{ v: unknown; version: number } | null> {
  const found = await s.get({ k: key, ts: 1 });
  return found ? { v: found.row['v'], version: found.version } : null;
}

describe('dual active-standby: seeding a region (S5)', () => {
  it('the standby-seed command round-trips; a damaged one is CORRUPTION, not a crash', () => {
    const cmd: Command = { kind: 'standby-seed', primaryIndex: 40, seededThroughMs: 1234, versionOffset: 7, ssts: [sst('a')], dedup: '[]' };
    expect(decodeCommand(encodeCommand(cmd))).to.deep.equal(cmd);
    const bytes = encodeCommand({ ...cmd, primaryIndex: 0 });
    let err: unknown;
    try {
      decodeCommand(bytes);
    } catch (e) {
      err = e;
    }
    expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
  });

  it("makes the region the primary's state at I: its SSTs replace what was held, nothing pending, applied through the seed time", async () => {
    const s = new RegionState(schema);
    // A standby far behind: it held rows (applied and pending) from before the primary's log was truncated.
    await s.apply(1, append(1, [shipped(1, 100, put(1, 'old', 1)), shipped(2, 200, put(2, 'old2', 2))], 200));
    await s.apply(2, release(100));
    expect(await readRow(s, 'old')).to.deep.equal({ v: 1, version: 1 });
    const dedup = await primaryDedup([put(1, 'old', 1), put(2, 'old2', 2), put(3, 'x', 3)]);
    const res = await s.apply(3, encodeCommand({ kind: 'standby-seed', primaryIndex: 40, seededThroughMs: 5000, versionOffset: 0, ssts: [sst('seeded/a.sst')], dedup }));
    expect(res).to.deep.equal({ status: 'ok', version: 40, rows: 0 });
    expect(s.ssts.map((m) => m.key)).to.deep.equal(['seeded/a.sst']);
    expect(s.memtable.count, 'what the region held in memory is replaced by the seed').to.equal(0);
    const st = s.standby!;
    expect([st.receivedIndex, st.appliedPrimaryIndex, st.seededIndex, st.pending.length]).to.deep.equal([40, 40, 40, 0]);
    expect(st.releasedMs, 'applied through the seed time: no cut may be earlier').to.equal(5000);
    expect(st.receivedThroughMs, 'the seed claims no time of the stream').to.equal(200);
  });

  it('after a seed at I the stream continues at I + 1 (a gap is still refused), and a retry of a request the seed holds is recognised', async () => {
    const s = new RegionState(schema); // a new standby region; the seed holds no SST (rows read from memory here)
    const dedup = await primaryDedup([put(1, 'old', 1), put(2, 'old2', 2), put(3, 'x', 3)]);
    await s.apply(3, encodeCommand({ kind: 'standby-seed', primaryIndex: 40, seededThroughMs: 5000, versionOffset: 0, ssts: [], dedup }));
    const st = s.standby!;
    await s.apply(4, append(42, [shipped(42, 6000, put(9, 'gap', 9))], 6000));
    expect(st.receivedIndex).to.equal(40);
    await s.apply(5, append(41, [shipped(41, 6000, put(4, 'new', 4)), shipped(42, 6001, put(3, 'x', 3))], 6001));
    await s.apply(6, release(6001));
    expect(await readRow(s, 'new')).to.deep.equal({ v: 4, version: 41 });
    // Entry 42 retries request 3, applied before the seed on the primary: the seeded dedup table knows it.
    expect(await readRow(s, 'x'), 'a retry of a request the seed already holds is not applied again').to.equal(null);
  });

  it('a seed that would not move the region forward, or comes after promotion, changes nothing (S4)', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, put(1, 'a', 1)), shipped(2, 100, put(2, 'b', 2))], 100));
    const stale = encodeCommand({ kind: 'standby-seed', primaryIndex: 2, seededThroughMs: 900, versionOffset: 0, ssts: [sst('s')], dedup: '[]' });
    await s.apply(2, stale);
    expect([s.standby!.receivedIndex, s.standby!.pending.length, s.ssts.length, s.standby!.releasedMs]).to.deep.equal([2, 2, 0, 0]);
    await s.apply(3, encodeCommand({ kind: 'standby-promote', cutMs: 100 }));
    await s.apply(4, encodeCommand({ kind: 'standby-seed', primaryIndex: 50, seededThroughMs: 900, versionOffset: 0, ssts: [sst('s')], dedup: '[]' }));
    expect([s.standby!.mode, s.standby!.receivedIndex, s.ssts.length]).to.deep.equal(['promoted', 2, 0]);
    expect(await readRow(s, 'b')).to.deep.equal({ v: 2, version: 2 });
  });

  it('the standby record with the new fields survives the manifest; one written before them reads as 0', () => {
    const st = new StandbyState();
    st.seed(40, 5000, 9);
    const back = StandbyState.decode(st.encode(), 'test');
    expect([back.seededIndex, back.primaryVersionOffset, back.releasedMs, back.receivedIndex]).to.deep.equal([40, 9, 5000, 40]);
    const old = JSON.parse(st.encode()) as Record<string, unknown>;
    for (const k of ['seededIndex', 'primaryVersionOffset', 'promotedAtIndex']) delete old[k];
    expect(StandbyState.decode(JSON.stringify(old), 'test').seededIndex).to.equal(0);
  });
});

describe('dual active-standby: a primary that was a promoted standby (S6)', () => {
  it('its entries apply at index + its version offset, and a promotion here versions above them', async () => {
    const s = new RegionState(schema);
    // The primary's writes are at version index + 1000 (its own promotion's offset): an overwrite at
    // index 41 must beat the seeded row at version 1030.
    await s.apply(1, encodeCommand({ kind: 'standby-seed', primaryIndex: 40, seededThroughMs: 50, versionOffset: 1000, ssts: [], dedup: '[]' }));
    await s.apply(2, append(41, [shipped(41, 60, put(1, 'a', 7))], 60, 1000));
    await s.apply(3, release(60));
    expect(await readRow(s, 'a')).to.deep.equal({ v: 7, version: 1041 });
    await s.apply(4, encodeCommand({ kind: 'standby-promote', cutMs: 60 }));
    expect(s.standby!.promotedAtIndex).to.equal(4);
    const w = await s.apply(5, put(2, 'a', 8));
    expect(w.status).to.equal('ok');
    expect((await readRow(s, 'a'))!.version, 'a write after promotion versions above every primary version').to.be.greaterThan(1041);
  });
});

describe('dual active-standby: the cut and a seeded region (src/standby/cut.ts)', () => {
  const at = (regionId: string, receivedThroughMs: number, releasedMs = 0): [string, RegionPosition] => [regionId, { regionId, receivedThroughMs, releasedMs }];

  it('waits until the stream of a seeded region has passed the seed time: a cut before it would keep rows written after the cut', () => {
    // Region b was seeded at time 900 (it holds rows written up to then) and its stream has claimed only 850.
    const reported = new Map([at('a', 1000, 800), at('b', 850, 900)]);
    expect(safeTimeMs(['a', 'b'], reported)).to.equal(undefined);
    let err: unknown;
    try {
      promotionCutMs(['a', 'b'], reported);
    } catch (e) {
      err = e;
    }
    expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
    expect(String(err)).to.match(/applied rows up to 900 \(a seed's time, or a cut\) and regions b have not/);
    // Once it has: the cut is the minimum as usual, and not before the seed.
    const later = new Map([at('a', 1000, 800), at('b', 950, 900)]);
    expect(safeTimeMs(['a', 'b'], later)).to.equal(950);
    expect(promotionCutMs(['a', 'b'], later)).to.equal(950);
  });

  it('waits for every region, not only the seeded one: another region whose stream is behind the seed time blocks the cut too', () => {
    // b was seeded at 900 and its own stream is past it; a has received everything only up to 880.
    const reported = new Map([at('a', 880, 800), at('b', 950, 900)]);
    expect(safeTimeMs(['a', 'b'], reported), 'a cut at 880 would leave b holding rows written up to 900').to.equal(undefined);
    expect(() => promotionCutMs(['a', 'b'], reported)).to.throw(/regions a have not yet received/);
    expect(safeTimeMs(['a', 'b'], new Map([at('a', 905, 800), at('b', 950, 900)]))).to.equal(905);
  });
});

describe('dual active-standby: GC and a pending seed (src/datanode/sst-gc.ts G2)', () => {
  it('names the SSTs of a seed still above the applied index — with and without the primary\'s epoch (kinds 9 and 22)', () => {
    const fields = { primaryIndex: 40, seededThroughMs: 1, versionOffset: 0, ssts: [sst('s1'), sst('s2')], dedup: '[]' };
    // The receiver proposes kind 22 whenever it knows the primary's epoch (receiver.ts seed): GC
    // must keep that seed's SSTs as it keeps kind 9's, or it may delete them before they apply.
    for (const seed of [encodeCommand({ kind: 'standby-seed', ...fields }), encodeCommand({ kind: 'standby-seed-epoch', ...fields, primaryEpoch: 2 })]) {
      const keys = sstsNamedByEntries([{ index: 9, term: 1, type: EntryType.Normal, data: seed }]);
      expect([...keys].sort(), `kind ${seed[1]}`).to.deep.equal(['s1', 's2']);
    }
  });
});

describe('dual active-standby: a promotion after a fail-back, a region not re-seeded yet (src/standby/promote.ts)', () => {
  it('a region still promoted from the earlier failover has no position: nothing is frozen while it waits for its seed', async () => {
    // r1 was cut at epoch 1 in the earlier failover; the current primary (epoch 2) has probed it
    // (standby-epoch: it follows epoch 2 now) but not seeded it yet. r2 follows epoch 2.
    const region = (id: string, mode: string, through: number) => ({
      region_id: id, table: 't', region_number: 0, mode, received_index: '9', applied_primary_index: '9', received_through_ms: String(through), last_stamp_ms: String(through),
      released_ms: mode === 'promoted' ? String(through) : '0', pending_entries: 0, cut_ms: mode === 'promoted' ? String(through) : '0', dropped_entries: '0', dropped_rows: '0', sync: false, seeded_index: '0',
      frozen: false, promoted_epoch: mode === 'promoted' ? '1' : '0', primary_epoch: '2',
    });
    const regions = [region('r1', 'promoted', 400), region('r2', 'standby', 9000)];
    let freezes = 0;
    const client = {
      ...fakePromotionRecord(),
      listNodes: async () => ({ nodes: [{ node_id: '1', addr: 'n1', state: 'alive' }], region_infos: [{ route: { region_id: 'r1' } }, { route: { region_id: 'r2' } }] }),
      standbyStatus: async (addr: string) => ({ node_id: addr, role: 'standby', regions, shipping: [], fence_epoch: '2', mode: '', fence_at_ms: '0' }),
      standbyFreeze: async () => {
        freezes++;
        return { regions: [] };
      },
      standbyPromote: async () => ({ regions: [] }),
    } as unknown as Parameters<typeof promoteStandby>[0];
    const outcome = await promoteStandby(client, { timeoutMs: 300, nowMs: () => Date.now() }).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    expect(outcome).to.match(/no consistent point yet/).and.to.include('r1');
    expect(freezes, 'StandbyFreeze calls').to.equal(0);
  });
});

describe('dual active-standby: finishing an interrupted promotion (src/standby/promote.ts)', () => {
  /** A standby of two datanodes as promoteStandby sees it through its client: node 1 leads nothing, node 2 both regions. */
  function fakeStandby() {
    // The first phase (the freeze) had finished: r2 is frozen; node 2 was promoted at epoch 1, cut 500.
    const region = (id: string, mode: string, cut: number) => ({
      region_id: id, table: 't', region_number: 0, mode, received_index: '9', applied_primary_index: '9', received_through_ms: '400', last_stamp_ms: '500',
      released_ms: String(cut), pending_entries: 0, cut_ms: String(cut), dropped_entries: '0', dropped_rows: '0', sync: true, seeded_index: '0',
      frozen: true, promoted_epoch: mode === 'promoted' ? '1' : '0', primary_epoch: '0',
    });
    const regions = [region('r1', 'promoted', 500), region('r2', 'standby', 300)];
    const promotedAt: number[] = [];
    const client = {
      ...fakePromotionRecord(),
      listNodes: async () => ({ nodes: [{ node_id: '1', addr: 'n1', state: 'alive' }, { node_id: '2', addr: 'n2', state: 'alive' }], region_infos: [{ route: { region_id: 'r1' } }, { route: { region_id: 'r2' } }] }),
      standbyStatus: async (addr: string) => ({ node_id: addr, role: 'promoted', regions: addr === 'n2' ? regions : [], shipping: [], fence_epoch: '1', mode: '', fence_at_ms: '500' }),
      standbyFreeze: async () => ({ regions: [] }),
      standbyPromote: async (addr: string, cutMs: number) => {
        if (addr !== 'n2') return { regions: [] };
        promotedAt.push(cutMs);
        regions[1] = region('r2', 'promoted', cutMs);
        return { regions };
      },
    };
    return { client: client as unknown as Parameters<typeof promoteStandby>[0], promotedAt };
  }

  it('finishes at the cut a promoted region already has, found on any node (a sync cut is above the safe time, so no new cut can be computed)', async () => {
    const { client, promotedAt } = fakeStandby();
    const report = await promoteStandby(client, { timeoutMs: 500, nowMs: () => Date.now() });
    expect(report.cutMs).to.equal(500);
    // Once to cut r2, and once more when every region is cut (step 5: a node reporting the
    // promotion is told again, in case it only adopted it from a region; idempotent).
    expect(promotedAt).to.deep.equal([500, 500]);
  });

  it('a node that refused StandbyPromote earlier and reports no promotion does not fail a promotion every region completed', async () => {
    const { client, promotedAt } = fakeStandby();
    const fake = client as unknown as { standbyStatus(addr: string): Promise<{ role: string }>; standbyPromote(addr: string, cutMs: number): Promise<unknown> };
    const status = fake.standbyStatus.bind(fake);
    const promote = fake.standbyPromote.bind(fake);
    fake.standbyStatus = async (addr) => ({ ...(await status(addr)), ...(addr === 'n1' ? { role: 'standby', fence_epoch: '0', fence_at_ms: '0' } : {}) });
    fake.standbyPromote = async (addr, cutMs) => {
      if (addr === 'n1') throw new Error('n1 is unreachable');
      return promote(addr, cutMs);
    };
    const report = await promoteStandby(client, { timeoutMs: 500, nowMs: () => Date.now() });
    expect(report.cutMs).to.equal(500);
    expect(promotedAt).to.deep.equal([500, 500]);
  });
});
