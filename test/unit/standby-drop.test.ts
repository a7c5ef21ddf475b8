// A table dropped on the primary, on its standby (S7 in src/engine/standby-state.ts;
// docs/replication.md, "Dropped tables"): each region's stream ends with a marker stamped T; the
// region then stops bounding the safe time, keeps its rows for any cut before T, and its table
// may be dropped once the marker is applied.
import { expect } from 'chai';
import { RegionState, type ShippedEntry, type TableSchema, decodeCommand, encodeCommand, encodeTableDroppedMarker, stampCommand, tableDroppedMarkerMs } from '../../src/engine/index.js';
import { StandbyState } from '../../src/engine/standby-state.js';
import { promotionCutMs, safeTimeMs, tablesToDrop } from '../../src/standby/cut.js';
import { cpuSchema } from '../fixtures/schemas.js';
import { Registry } from 'prom-client';
import { systemClock, wallClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { Datanode } from '../../src/datanode/datanode.js';
import { type Entry, EntryType } from '../../src/raft/index.js';
import { Shipper } from '../../src/standby/shipper.js';
import type { SiteCredentials } from '../../src/standby/site-credentials.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });
const put = (requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId: 'primary-client', requestId, rows: [[key, 1, v]] });
const shipped = (index: number, stampMs: number, key: string, v: number): ShippedEntry => ({ index, stampMs, data: stampCommand(put(index, key, v), stampMs) });
const marker = (index: number, stampMs: number): ShippedEntry => ({ index, stampMs, data: encodeTableDroppedMarker(stampMs) });
const append = (fromIndex: number, entries: ShippedEntry[], watermarkMs: number) => encodeCommand({ kind: 'standby-append', fromIndex, entries, watermarkMs });
const release = (upToMs: number) => encodeCommand({ kind: 'standby-release', upToMs });
const promote = (cutMs: number) => encodeCommand({ kind: 'standby-promote', cutMs });

async function readV(s: RegionState, key: string): Promise<unknown> {
  const found = await s.get({ k: key, ts: 1 });
  return found ? found.row['v'] : null;
}

describe('S7: a dropped table in the standby region state', () => {
  it('the marker ends the stream: +∞ for the safe time, nothing taken after it, the drop due once it is released', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2), marker(3, 250)], 200));
    const st = s.standby!;
    expect(st.droppedAtIndex).to.equal(3);
    expect(st.droppedAtMs).to.equal(250);
    expect(st.receivedThroughMs, 'the watermark itself is not changed').to.equal(200);
    expect(st.streamThroughMs()).to.equal(Number.POSITIVE_INFINITY);
    expect(st.dropDue(), 'not yet released').to.equal(false);
    await s.apply(2, append(4, [shipped(4, 300, 'z', 9)], 300));
    expect(st.receivedIndex, 'nothing follows a marker').to.equal(3);
    await s.apply(3, release(220));
    expect(await readV(s, 'b')).to.equal(2);
    expect(st.dropDue(), 'released below T').to.equal(false);
    await s.apply(4, release(260));
    expect(st.dropDue()).to.equal(true);
    expect(st.pending.length).to.equal(0);
  });

  it('a marker after a gap is not taken (the region has not got everything before it)', () => {
    const st = new StandbyState();
    expect(st.receive(1, [shipped(1, 100, 'a', 1)], 100)).to.equal(1);
    expect(st.receive(3, [marker(3, 300)], 300)).to.equal(0);
    expect(st.droppedAtIndex).to.equal(0);
    expect(st.streamThroughMs()).to.equal(100);
  });

  it('T is never below an earlier entry\'s stamp (a new primary leader with a slower clock)', () => {
    const st = new StandbyState();
    st.receive(1, [shipped(1, 500, 'a', 1), marker(2, 400)], 400);
    expect(st.droppedAtMs).to.equal(500);
  });

  it('a cut before T keeps the table with its rows up to the cut; a cut at or past T makes the drop due', async () => {
    const before = new RegionState(schema);
    await before.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2), marker(3, 250)], 200));
    await before.apply(2, promote(150));
    expect(await readV(before, 'a')).to.equal(1);
    expect(await readV(before, 'b')).to.equal(null);
    expect(before.standby!.droppedEntries, 'b and the marker').to.equal(2);
    expect(before.standby!.droppedRows, 'the marker is no row').to.equal(1);
    expect(before.standby!.dropDue()).to.equal(false);
    expect(before.standby!.droppedAtIndex).to.equal(0);

    const after = new RegionState(schema);
    await after.apply(1, append(1, [shipped(1, 100, 'a', 1), marker(2, 250)], 100));
    await after.apply(2, promote(300));
    expect(after.standby!.dropDue()).to.equal(true);
  });

  it('the marker survives a flush (manifest) and an older manifest without it decodes as not dropped', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), marker(2, 250)], 100));
    const back = StandbyState.decode(s.standby!.encode(), 'test');
    expect(back.droppedAtIndex).to.equal(2);
    expect(back.droppedAtMs).to.equal(250);
    expect(back.streamThroughMs()).to.equal(Number.POSITIVE_INFINITY);
    const old = JSON.parse(new StandbyState().encode()) as Record<string, unknown>;
    delete old['droppedAtIndex'];
    delete old['droppedAtMs'];
    expect(StandbyState.decode(JSON.stringify(old), 'old').droppedAtIndex).to.equal(0);
  });
});

describe('S7: the safe time and the cut with a dropped table (src/standby/cut.ts)', () => {
  it('a region whose stream stopped without a marker holds the safe time at its last watermark (why the marker is needed)', () => {
    const frozen = new Map([
      ['a1', { regionId: 'a1', receivedThroughMs: 1_000 }],
      ['b1', { regionId: 'b1', receivedThroughMs: 9_000 }],
    ]);
    expect(safeTimeMs(['a1', 'b1'], frozen)).to.equal(1_000);
  });

  it('a region whose stream ended with a marker does not bound the safe time; the cut follows the live table', () => {
    const ended = new Map([
      ['a1', { regionId: 'a1', receivedThroughMs: 1_000, droppedAtMs: 1_100 }],
      ['b1', { regionId: 'b1', receivedThroughMs: 9_000 }],
    ]);
    expect(safeTimeMs(['a1', 'b1'], ended)).to.equal(9_000);
    expect(promotionCutMs(['a1', 'b1'], ended)).to.equal(9_000);
    expect(promotionCutMs(['a1', 'b1'], ended, 1_050), 'a cut before the drop is still possible').to.equal(1_050);
  });

  it('when every region has ended, the safe time is the last marker (a time, never +∞)', () => {
    const all = new Map([
      ['a1', { regionId: 'a1', receivedThroughMs: 1_000, droppedAtMs: 1_100 }],
      ['a2', { regionId: 'a2', receivedThroughMs: 1_000, droppedAtMs: 1_300 }],
    ]);
    expect(safeTimeMs(['a1', 'a2'], all)).to.equal(1_300);
  });
});

describe('S7: which standby tables go (src/standby/cut.ts tablesToDrop)', () => {
  const id = (tableId: number, n: number) => String((BigInt(tableId) << 32n) | BigInt(n));
  const rep = (table: string, droppedAtMs: number, applied: number, received: number) => ({ table, droppedAtMs, appliedPrimaryIndex: applied, receivedIndex: received });

  it('a table goes only when every one of its regions has applied its marker', () => {
    const ids = [id(1, 0), id(1, 1), id(2, 0)];
    const all = new Map([
      [id(1, 0), rep('a', 100, 7, 7)],
      [id(1, 1), rep('a', 120, 9, 9)],
      [id(2, 0), rep('b', 0, 50, 50)],
    ]);
    expect(tablesToDrop(ids, all)).to.deep.equal(['a']);
    const pending = new Map(all);
    pending.set(id(1, 1), rep('a', 120, 8, 9));
    expect(tablesToDrop(ids, pending), 'one region has not applied its marker yet').to.deep.equal([]);
    const missing = new Map(all);
    missing.delete(id(1, 1));
    expect(tablesToDrop(ids, missing), 'one region not reported').to.deep.equal([]);
  });
});

describe('S7: the marker on the primary', () => {
  it('applies as a no-op that records its index (what a follower waits for before its replica is destroyed)', async () => {
    const s = new RegionState(schema);
    await s.apply(1, stampCommand(put(1, 'a', 1), 100));
    const r = await s.apply(2, encodeTableDroppedMarker(150));
    expect(r).to.deep.equal({ status: 'ok', version: 2, rows: 0 });
    expect(s.dropMarkerIndex).to.equal(2);
    expect(await readV(s, 'a')).to.equal(1);
  });

  it('carries its stamp; it is no client command (decodeCommand refuses it with CORRUPTION, not a crash)', () => {
    const m = encodeTableDroppedMarker(1_234);
    expect(tableDroppedMarkerMs(m)).to.equal(1_234);
    expect(tableDroppedMarkerMs(m.subarray(0, 5)), 'a damaged body').to.equal(0);
    expect(() => decodeCommand(m)).to.throw(/malformed/);
  });
});

describe('the drop fence on the primary: what it refused is not applied on the standby (docs/ddl.md, "Interactions")', () => {
  const regionId = ((7n << 32n) | 0n).toString();
  const stamped = (command: Uint8Array, stampMs: number) => stampCommand(command, stampMs);
  const fence = encodeCommand({ kind: 'drop-fence', tableId: 7 });

  /** The primary region's committed log as the write gate stamps it, applied by the primary's state. */
  async function fencedPrimary() {
    const data: Uint8Array[] = [
      stamped(put(1, 'a', 1), 100), // 1: before the fence: applied
      stamped(put(2, 'c', 3), 110), // 2: before the fence: applied
      fence, // 3: the drop fence
      stamped(put(3, 'b', 2), 120), // 4: proposed before the fence, applied after it: refused
      stamped(encodeCommand({ kind: 'delete', clientId: 'primary-client', requestId: 4, keys: [['a', 1]] }), 130), // 5: refused
      stamped(put(1, 'a', 1), 140), // 6: a retry of entry 1 (same request id): answered its first result
      stamped(encodeCommand({ kind: 'write', clientId: '', requestId: 0, rows: [['c', 1, 99]] }), 150), // 7: not deduplicated: refused
    ];
    const log: Entry[] = data.map((d, i) => ({ term: 2, index: i + 1, type: EntryType.Normal, data: d }));
    const state = new RegionState(schema);
    const results = [];
    for (const e of log) results.push(await state.apply(e.index, e.data));
    return { state, log, results };
  }

  /** One shipping round of the region's leader (Shipper.shipOnce, no watermark), its request captured. */
  async function shipRound(state: RegionState, log: Entry[]) {
    const dn = { nodeId: 1, metas: new Map([[regionId, { schema }]]), schemaProto: () => ({}) } as unknown as Datanode;
    const cfg = { addrs: ['standby:1'], addrOverrides: {}, mode: 'async' as const, shipIntervalMs: 100, dataDir: '/unused', clusterId: 'site-a', site: { close: () => undefined } as unknown as SiteCredentials };
    const shipper = new Shipper(dn, cfg, silentLogger, systemClock, wallClock, new Registry());
    const requests: { from_index: string; entries: { index: string; stamp_ms: string; data: Buffer }[] }[] = [];
    const internals = shipper as unknown as {
      send(r: unknown, request: unknown): Promise<unknown>;
      shipOnce(replica: unknown, r: unknown, withWatermark: boolean): Promise<void>;
    };
    internals.send = async (_r, request) => {
      requests.push(request as (typeof requests)[number]);
      return { promoted: false, fence_epoch: '0', region: { received_index: String(log.length), last_stamp_ms: '0' } };
    };
    const replica = {
      regionId,
      appliedIndex: state.appliedIndex,
      stateMachine: state,
      isLeader: () => true,
      queuedCommands: [],
      raft: { log: { firstIndex: () => 1, lastIndex: () => log.length, slice: (lo: number, hi: number) => log.filter((e) => e.index >= lo && e.index < hi) } },
    };
    await internals.shipOnce(replica, { receivedIndex: 0, lastStampMs: 0, target: 0, targetAddr: undefined, inFlight: false, error: '', waiters: [] }, false);
    expect(requests, 'one StandbyShip request').to.have.length(1);
    return requests[0]!.entries.map((e): ShippedEntry => ({ index: Number(e.index), stampMs: Number(e.stamp_ms), data: new Uint8Array(e.data) }));
  }

  it('the shipper sends the writes and deletes above the region\'s fence without their data (stamps kept, indexes contiguous)', async () => {
    const { state, log, results } = await fencedPrimary();
    expect(state.dropFence).to.deep.equal({ index: 3, tableId: 7 });
    expect(results.map((r) => r.status)).to.deep.equal(['ok', 'ok', 'ok', 'table-dropped', 'table-dropped', 'ok', 'table-dropped']);
    const entries = await shipRound(state, log);
    expect(entries.map((e) => e.index)).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
    expect(entries.map((e) => e.stampMs), 'stamps as before: the standby\'s times are unchanged').to.deep.equal([100, 110, 110, 120, 130, 140, 150]);
    expect(
      entries.map((e) => e.data.byteLength > 0),
      'data only for the writes below the fence',
    ).to.deep.equal([true, true, false, false, false, false, false]);
    expect(entries[0]!.data).to.deep.equal(log[0]!.data);
  });

  it('a standby applying what the shipper sent holds the primary\'s rows as of the fence, not the refused writes (promoted at a cut between the fence and the drop marker)', async () => {
    const { state, log } = await fencedPrimary();
    const entries = await shipRound(state, log);
    const standby = new RegionState(schema);
    await standby.apply(1, append(1, entries, 150));
    await standby.apply(2, release(150));
    expect(standby.standby!.appliedPrimaryIndex, 'everything released').to.equal(7);
    // The standby is promoted at a cut after every one of these entries, before any drop marker.
    await standby.apply(3, promote(160));
    expect(standby.standby!.mode).to.equal('promoted');
    for (const key of ['a', 'b', 'c']) expect(await readV(standby, key), `row ${key}: the standby matches the primary`).to.equal(await readV(state, key));
    expect(await readV(standby, 'a'), 'the delete the fence refused did not apply').to.equal(1);
    expect(await readV(standby, 'b'), 'the write the fence refused (answered NOT_FOUND on the primary) is not on the standby').to.equal(null);
    expect(await readV(standby, 'c'), 'nor the refused write without a request id').to.equal(3);
  });

  it('a region with no fence ships every write with its data (unchanged)', async () => {
    const state = new RegionState(schema);
    const log: Entry[] = [stamped(put(1, 'a', 1), 100), stamped(put(2, 'b', 2), 120)].map((d, i) => ({ term: 2, index: i + 1, type: EntryType.Normal, data: d }));
    for (const e of log) await state.apply(e.index, e.data);
    const entries = await shipRound(state, log);
    expect(entries.map((e) => e.data.byteLength > 0)).to.deep.equal([true, true]);
  });
});
