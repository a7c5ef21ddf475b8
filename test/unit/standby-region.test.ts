// Dual active-standby in the region state machine (docs/replication.md; invariants S1–S4 in
// src/engine/standby-state.ts): a standby region logs what the primary ships, applies it only up
// to the cluster-wide safe time, and at promotion cuts at one time and drops what follows.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { type Command, RegionState, type ShippedEntry, type TableSchema, decodeCommand, encodeCommand, stampCommand, unstampCommand } from '../../src/engine/index.js';
import { decodeManifest, encodeManifest } from '../../src/engine/manifest.js';
import { promotionCutMs, safeTimeMs } from '../../src/standby/cut.js';
import { type ClientWrite, checkCut } from '../../src/standby/cut-check.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });

const put = (requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId: 'primary-client', requestId, rows: [[key, 1, v]] });
/** A primary entry: the write stamped as the primary's write gate stamps it. */
const shipped = (index: number, stampMs: number, key: string, v: number): ShippedEntry => ({ index, stampMs, data: stampCommand(put(index, key, v), stampMs) });
const append = (fromIndex: number, entries: ShippedEntry[], watermarkMs: number) => encodeCommand({ kind: 'standby-append', fromIndex, entries, watermarkMs });
const release = (upToMs: number) => encodeCommand({ kind: 'standby-release', upToMs });
const promote = (cutMs: number) => encodeCommand({ kind: 'standby-promote', cutMs });

async function readRow(s: RegionState, key: string): Promise<{ v: unknown; version: number } | null> {
  const found = await s.get({ k: key, ts: 1 });
  return found ? { v: found.row['v'], version: found.version } : null;
}

describe('dual active-standby: stamped commands (format 3)', () => {
  it('round-trips the stamp and decodes to the same write; the kind stays at offset 1', () => {
    const inner = put(9, 'a', 1.5);
    const stamped = stampCommand(inner, 1_700_000_000_123);
    expect(stamped[1]).to.equal(inner[1]);
    const { stampMs, inner: back } = unstampCommand(stamped);
    expect(stampMs).to.equal(1_700_000_000_123);
    expect([...back]).to.deep.equal([...inner]);
    expect(decodeCommand(stamped)).to.deep.equal(decodeCommand(inner));
  });

  it('refuses to stamp a system command, and a damaged stamped command is CORRUPTION, not a crash', () => {
    expect(() => stampCommand(encodeCommand({ kind: 'freeze' }), 1)).to.throw(/version-2/);
    const stamped = stampCommand(put(1, 'a', 1), 5);
    const wrongKind = stamped.slice();
    wrongKind[1] = 2; // says delete, wraps a write
    for (const bad of [stamped.subarray(0, 6), wrongKind]) {
      let err: unknown;
      try {
        decodeCommand(bad);
      } catch (e) {
        err = e;
      }
      expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
    }
  });

  it('a retry stamped again (later) is still the same request to dedup: it answers the first result', () => {
    const s = new RegionState(schema);
    const first = s.apply(1, stampCommand(put(4, 'a', 1), 100));
    const retry = s.apply(2, stampCommand(put(4, 'a', 1), 900));
    expect(retry).to.deep.equal(first);
    expect(first).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
  });

  it('standby commands round-trip', () => {
    const cmds: Command[] = [
      { kind: 'standby-append', fromIndex: 3, entries: [shipped(3, 10, 'a', 1), { index: 4, stampMs: 10, data: new Uint8Array(0) }], watermarkMs: 9 },
      { kind: 'standby-release', upToMs: 77 },
      { kind: 'standby-promote', cutMs: 78 },
    ];
    const plain = (c: Command) => JSON.parse(JSON.stringify(c, (_k, v) => (v instanceof Uint8Array ? [...v] : v))) as unknown;
    for (const c of cmds) expect(plain(decodeCommand(encodeCommand(c)))).to.deep.equal(plain(c));
  });
});

describe('dual active-standby: a standby region (S1–S4)', () => {
  it('S3: received entries apply only up to the release time, at their primary index as version', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2), shipped(3, 300, 'c', 3)], 300));
    expect(await readRow(s, 'a'), 'nothing applies before a release').to.equal(null);
    expect(s.standby?.receivedIndex).to.equal(3);
    expect(s.standby?.receivedThroughMs).to.equal(300);
    expect(s.standby?.sync).to.equal(false);
    await s.apply(2, release(250));
    expect(await readRow(s, 'a')).to.deep.equal({ v: 1, version: 1 });
    expect(await readRow(s, 'b')).to.deep.equal({ v: 2, version: 2 });
    expect(await readRow(s, 'c'), 'stamped after the release').to.equal(null);
    expect(s.standby?.pending.map((e) => e.index)).to.deep.equal([3]);
  });

  it('entries that change no rows (shipped empty to keep the indexes contiguous) release and cut like the others', async () => {
    const s = new RegionState(schema);
    const empty = (index: number, stampMs: number): ShippedEntry => ({ index, stampMs, data: new Uint8Array(0) });
    await s.apply(1, append(1, [empty(1, 0), empty(2, 0), shipped(3, 100, 'a', 1), empty(4, 100), shipped(5, 200, 'b', 2), empty(6, 200)], 200));
    await s.apply(2, release(100));
    expect(s.standby?.appliedPrimaryIndex).to.equal(4);
    await s.apply(3, promote(150));
    expect(s.standby?.droppedEntries).to.equal(2);
    expect(s.standby?.droppedRows).to.equal(1);
    expect((await readRow(s, 'a'))?.version).to.equal(3);
  });

  it('S1: a batch leaving a gap is ignored whole; an overlapping one (two primary leaders) takes only what is new', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1)], 100));
    await s.apply(2, append(3, [shipped(3, 300, 'c', 3)], 300));
    expect(s.standby?.receivedIndex, 'gap refused').to.equal(1);
    expect(s.standby?.receivedThroughMs, 'its watermark too').to.equal(100);
    await s.apply(3, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2)], 200));
    expect(s.standby?.receivedIndex).to.equal(2);
    expect(s.standby?.pending.map((e) => e.index)).to.deep.equal([1, 2]);
    expect(s.standby?.receivedThroughMs).to.equal(200);
  });

  it('a watermark speaks only for a batch that reaches the received end', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2)], 200));
    await s.apply(2, append(1, [shipped(1, 100, 'a', 1)], 999)); // an old leader's late batch
    expect(s.standby?.receivedThroughMs).to.equal(200);
  });

  it('promotion cuts at one time: applies up to it, drops the rest with their row count, then versions new writes above every primary version', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2), shipped(3, 300, 'c', 3)], 300));
    await s.apply(2, release(100));
    await s.apply(3, promote(200));
    expect(s.standby?.mode).to.equal('promoted');
    expect(s.standby?.droppedEntries).to.equal(1);
    expect(s.standby?.droppedRows).to.equal(1);
    expect(await readRow(s, 'b')).to.deep.equal({ v: 2, version: 2 });
    expect(await readRow(s, 'c')).to.equal(null);
    // S4: the stream is ignored from now on.
    await s.apply(4, append(4, [shipped(4, 400, 'd', 4)], 400));
    expect(await readRow(s, 'd')).to.equal(null);
    expect(s.standby?.receivedIndex).to.equal(3);
    // A client write after promotion outranks the primary's versions (last write wins by version).
    const r = await s.apply(5, encodeCommand({ kind: 'write', clientId: 'new', requestId: 1, rows: [['b', 1, 20]] }));
    expect(r.status).to.equal('ok');
    expect((await readRow(s, 'b'))?.v).to.equal(20);
  });

  it('a promoted region whose standby index is below the primary versions still versions new writes above them', async () => {
    const s = new RegionState(schema);
    // Primary indexes far above the standby's own log (the primary's log is long, the standby's is not).
    await s.apply(1, append(1000, [], 0)); // a gap: ignored
    await s.apply(2, append(1, [shipped(1, 100, 'x', 1)], 100));
    const many: ShippedEntry[] = [];
    for (let i = 2; i <= 50; i++) many.push(shipped(i, 100 + i, 'b', i));
    await s.apply(3, append(2, many, 200));
    await s.apply(4, promote(200));
    const before = await readRow(s, 'b');
    expect(before?.version).to.equal(50);
    const r = await s.apply(5, encodeCommand({ kind: 'write', clientId: 'new', requestId: 1, rows: [['b', 1, -1]] }));
    expect(r.status === 'ok' && r.version).to.be.greaterThan(50);
    // The conditional write a client makes with the version it read must see the same version.
    const cas = await s.apply(6, encodeCommand({ kind: 'write', clientId: 'new', requestId: 2, rows: [['b', 1, -2]], expectVersion: r.status === 'ok' ? r.version : 0 }));
    expect(cas.status).to.equal('ok');
  });

  it('received, unapplied entries survive a flush that truncates the log: they are in the manifest', async () => {
    const s = new RegionState(schema);
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 200, 'b', 2)], 200));
    await s.apply(2, release(100));
    await s.apply(3, encodeCommand({ kind: 'freeze' }));
    await s.apply(4, encodeCommand({ kind: 'flush-edit', freezeIndex: 3, sst: null }));
    // The raft log up to 3 may now be deleted; a replica restarts (or installs a snapshot) from the manifest.
    const manifest = decodeManifest(encodeManifest(s.manifest()), 'test');
    const rebuilt = RegionState.fromManifest(schema, '', undefined, manifest);
    expect(rebuilt.standby?.pending.map((e) => e.index)).to.deep.equal([2]);
    expect(rebuilt.standby?.receivedIndex).to.equal(2);
    await rebuilt.apply(5, release(200));
    expect(await readRow(rebuilt, 'b')).to.deep.equal({ v: 2, version: 2 });
  });
});

describe('dual active-standby: the consistent point (src/standby/cut.ts)', () => {
  const at = (entries: [string, number][]) => new Map(entries.map(([regionId, receivedThroughMs]) => [regionId, { regionId, receivedThroughMs }]));

  it('is the minimum over every region, and there is none while a region has not reported', () => {
    expect(safeTimeMs(['r1', 'r2'], at([['r1', 500], ['r2', 300]]))).to.equal(300);
    expect(safeTimeMs(['r1', 'r2', 'r3'], at([['r1', 500], ['r2', 300]]))).to.equal(undefined);
    expect(() => promotionCutMs(['r1', 'r3'], at([['r1', 500]]))).to.throw(/r3/);
  });

  it('when every stream is sync, the cut keeps everything received (RPO 0); one async region keeps the watermark minimum', () => {
    const sync = new Map([
      ['r1', { regionId: 'r1', receivedThroughMs: 300, lastStampMs: 450, sync: true }],
      ['r2', { regionId: 'r2', receivedThroughMs: 280, lastStampMs: 500, sync: true }],
    ]);
    expect(promotionCutMs(['r1', 'r2'], sync)).to.equal(500);
    const mixed = new Map([...sync, ['r2', { regionId: 'r2', receivedThroughMs: 280, lastStampMs: 500, sync: false }]]);
    expect(promotionCutMs(['r1', 'r2'], mixed)).to.equal(280);
  });

  it('--to-time is refused before what a region has already applied (stale reads showed it; there is no undo)', () => {
    const released = new Map([
      ['r1', { regionId: 'r1', receivedThroughMs: 500, releasedMs: 200 }],
      ['r2', { regionId: 'r2', receivedThroughMs: 300, releasedMs: 250 }],
    ]);
    expect(promotionCutMs(['r1', 'r2'], released, 260)).to.equal(260);
    expect(() => promotionCutMs(['r1', 'r2'], released, 240)).to.throw(/already applied up to/);
  });

  it('--to-time may move the cut earlier, never later than what every region has', () => {
    expect(promotionCutMs(['r1', 'r2'], at([['r1', 500], ['r2', 300]]), 250)).to.equal(250);
    expect(() => promotionCutMs(['r1', 'r2'], at([['r1', 500], ['r2', 300]]), 400)).to.throw(/after the latest consistent point/);
  });

  it('two regions cut at the safe time hold exactly the writes stamped at or before it (no half-present write)', async () => {
    // One client write split over two regions is stamped once per region part; both parts share
    // the stamp 150 here. Region 2 lags: it has received only up to 160.
    const r1 = new RegionState(schema);
    const r2 = new RegionState(schema);
    await r1.apply(1, append(1, [shipped(1, 150, 'x1', 1), shipped(2, 170, 'y1', 2)], 180));
    await r2.apply(1, append(1, [shipped(1, 150, 'x2', 1)], 160));
    const cut = promotionCutMs(['r1', 'r2'], at([['r1', r1.standby!.receivedThroughMs], ['r2', r2.standby!.receivedThroughMs]]));
    expect(cut).to.equal(160);
    await r1.apply(2, promote(cut));
    await r2.apply(2, promote(cut));
    expect((await readRow(r1, 'x1'))?.v).to.equal(1);
    expect((await readRow(r2, 'x2'))?.v).to.equal(1);
    expect(await readRow(r1, 'y1'), 'stamped after the cut: dropped in its region').to.equal(null);
  });
});

describe('dual active-standby: the cut checker can fail (src/standby/cut-check.ts)', () => {
  const w = (ids: number[], regions: number[], sentMs: number, ackedMs?: number): ClientWrite => ({ rowIds: ids, regionOf: regions, sentMs, ackedMs });
  const writes = [w([1, 2], [0, 1], 100, 110), w([3, 4], [0, 1], 150, 210), w([5, 6], [0, 1], 220, 230)];

  it('a state that is the cut passes, with the lost tail counted', () => {
    const v = checkCut(writes, new Set([1, 2, 3]), 200, 300);
    expect(v.violations).to.deep.equal([]);
    expect(v.lostWrites).to.equal(2);
    expect(v.lostRows).to.equal(3);
    expect(v.lostWindowMs).to.equal(90);
    expect(v.partialInFlight).to.equal(1);
  });

  it('catches C1 (an acknowledged write before the cut missing), C2 (a write sent after it present), C3 (half a region part)', () => {
    expect(checkCut(writes, new Set([1]), 200, 300).violations.join()).to.match(/C1/);
    expect(checkCut(writes, new Set([1, 2, 5]), 200, 300).violations.join()).to.match(/C2/);
    expect(checkCut([w([1, 2], [0, 0], 100, 110)], new Set([1]), 200, 300).violations.join()).to.match(/C3/);
  });
});
