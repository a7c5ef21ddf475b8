// The SST GC decision (src/datanode/sst-gc.ts) as a pure function: inputs → the keys to delete.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { SstLeases, type SstGcInput, type UnreferencedSst, decideSstGc, leaderMayCollect, scanDeadlineMs, sstsNamedByEntries, uploadStillProposable } from '../../src/datanode/sst-gc.js';
import { type SstMeta, encodeCommand } from '../../src/engine/command.js';
import { type Entry, EntryType } from '../../src/raft/index.js';

const GRACE_MS = 1000;
const meta = (key: string): SstMeta => ({ key, size: 1, entries: 1, maxVersion: 1, minTimestampMs: 0, maxTimestampMs: 0 });
const entry = (index: number, data: Uint8Array, type: EntryType = EntryType.Normal): Entry => ({ index, term: 1, type, data });

/** Runs decisions pass after pass, carrying `unreferenced` along as the flusher does. */
class Passes {
  unreferenced: ReadonlyMap<string, UnreferencedSst> = new Map();
  /** Unless given, the newest manifest in the store is at the replicas' lowest snapshot (the leader's manifest of its flush has landed). */
  run(input: Omit<SstGcInput, 'unreferenced' | 'graceMs' | 'namedBySnapshots' | 'manifestIndex'> & { namedBySnapshots?: ReadonlySet<string>; manifestIndex?: number }): readonly string[] {
    const d = decideSstGc({ namedBySnapshots: new Set(), manifestIndex: input.replicasSnapshotIndex, ...input, graceMs: GRACE_MS, unreferenced: this.unreferenced });
    this.unreferenced = d.unreferenced;
    return d.deletable;
  }
}

describe('SST GC decision (pure; issue 14 item 4)', () => {
  it('G1: only a leader that has applied an entry of its own term collects', () => {
    expect(leaderMayCollect(true, 5, 5)).to.equal(true);
    expect(leaderMayCollect(true, 5, 4), 'its no-op is not applied yet').to.equal(false);
    expect(leaderMayCollect(true, 5, undefined), 'applied entry compacted away: unknown term').to.equal(false);
    expect(leaderMayCollect(false, 5, 5), 'a follower').to.equal(false);
    expect(leaderMayCollect(true, 0, 0)).to.equal(false);
  });

  it('G2: a referenced SST is never deletable, and being referenced again restarts its grace', () => {
    const p = new Passes();
    const base = { listed: ['a'], appliedIndex: 10, replicasSnapshotIndex: 10 };
    expect(p.run({ ...base, referenced: new Set(), nowMs: 0 })).to.deep.equal([]);
    expect(p.run({ ...base, referenced: new Set(['a']), nowMs: 900 })).to.deep.equal([]);
    expect(p.unreferenced.has('a'), 'forgotten while referenced').to.equal(false);
    expect(p.run({ ...base, referenced: new Set(), nowMs: 1000 }), 'the grace starts over at 1000').to.deep.equal([]);
    expect(p.run({ ...base, referenced: new Set(), nowMs: 1999 })).to.deep.equal([]);
    expect(p.run({ ...base, referenced: new Set(), nowMs: 2000 })).to.deep.equal(['a']);
  });

  it('G3: waits until every replica has a snapshot at or above the applied index when it was first seen unreferenced, and asks for one', () => {
    const p = new Passes();
    const d0 = decideSstGc({ listed: ['a'], referenced: new Set(), namedBySnapshots: new Set(), appliedIndex: 30, replicasSnapshotIndex: 20, manifestIndex: 20, nowMs: 0, graceMs: GRACE_MS, unreferenced: new Map() });
    expect(d0.deletable).to.deep.equal([]);
    expect(d0.snapshotNeededAt).to.equal(30);
    expect(d0.waitingForSnapshots).to.equal(1);
    p.unreferenced = d0.unreferenced;
    // Much later, the leader has applied more; what counts is the index when first seen (30).
    expect(p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 90, replicasSnapshotIndex: 29, nowMs: 50_000 })).to.deep.equal([]);
    // G4's grace starts only now that G3 holds: a scan on a replica that just moved past the SST has its grace.
    expect(p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 90, replicasSnapshotIndex: 30, nowMs: 60_000 })).to.deep.equal([]);
    expect(p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 90, replicasSnapshotIndex: 30, nowMs: 60_999 })).to.deep.equal([]);
    expect(p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 90, replicasSnapshotIndex: 30, nowMs: 61_000 })).to.deep.equal(['a']);
  });

  it('G3: waits until the newest manifest in the store is at or above that index too (a late manifest put lands below it)', () => {
    const p = new Passes();
    const base = { listed: ['a'], referenced: new Set<string>(), appliedIndex: 30, replicasSnapshotIndex: 30 };
    // Every replica is past 30, but the latest manifest is at 10: a put of a manifest at 10..29
    // still on its way (a deposed leader's) could land as the latest and name `a`.
    const d = decideSstGc({ ...base, namedBySnapshots: new Set(), manifestIndex: 10, nowMs: 0, graceMs: GRACE_MS, unreferenced: new Map() });
    expect(d.deletable).to.deep.equal([]);
    expect(d.waitingForSnapshots).to.equal(1);
    expect(d.snapshotNeededAt, 'the flush that moves the manifest on').to.equal(30);
    p.unreferenced = d.unreferenced;
    expect(p.run({ ...base, manifestIndex: 29, nowMs: 50_000 }), 'long after: still below').to.deep.equal([]);
    expect(p.run({ ...base, manifestIndex: 0, nowMs: 60_000 }), 'no manifest at all').to.deep.equal([]);
    expect(p.run({ ...base, manifestIndex: 30, nowMs: 70_000 }), 'the grace starts only now').to.deep.equal([]);
    expect(p.run({ ...base, manifestIndex: 30, nowMs: 70_999 })).to.deep.equal([]);
    expect(p.run({ ...base, manifestIndex: 31, nowMs: 71_000 })).to.deep.equal(['a']);
  });

  it('G2/G3: an SST only a snapshot or manifest still names waits, and asks for a flush that supersedes them', () => {
    const d = decideSstGc({ listed: ['a'], referenced: new Set(), namedBySnapshots: new Set(['a']), appliedIndex: 12, replicasSnapshotIndex: 40, manifestIndex: 40, nowMs: 0, graceMs: GRACE_MS, unreferenced: new Map() });
    expect(d.deletable).to.deep.equal([]);
    expect(d.snapshotNeededAt).to.equal(12);
    const p = new Passes();
    p.unreferenced = d.unreferenced;
    expect(p.run({ listed: ['a'], referenced: new Set(), namedBySnapshots: new Set(['a']), appliedIndex: 50, replicasSnapshotIndex: 40, nowMs: 5000 })).to.deep.equal([]);
    expect(p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 50, replicasSnapshotIndex: 40, nowMs: 6000 }), 'its grace starts now').to.deep.equal([]);
    expect(p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 50, replicasSnapshotIndex: 40, nowMs: 7000 })).to.deep.equal(['a']);
  });

  it('G4: the grace is measured on the monotonic clock given, from the first pass that saw the SST deletable', () => {
    const p = new Passes();
    const base = { listed: ['old-key-time', 'b'], referenced: new Set<string>(), appliedIndex: 5, replicasSnapshotIndex: 5 };
    expect(p.run({ ...base, nowMs: 7 })).to.deep.equal([]);
    expect(p.run({ ...base, nowMs: 1006 })).to.deep.equal([]);
    expect([...p.run({ ...base, nowMs: 1007 })].sort()).to.deep.equal(['b', 'old-key-time']);
  });

  it('forgets SSTs that are no longer listed', () => {
    const p = new Passes();
    p.run({ listed: ['a'], referenced: new Set(), appliedIndex: 1, replicasSnapshotIndex: 0, nowMs: 0 });
    p.run({ listed: [], referenced: new Set(), appliedIndex: 1, replicasSnapshotIndex: 0, nowMs: 1 });
    expect(p.unreferenced.size).to.equal(0);
  });

  it('property (seeded): an SST is deleted only after G2 and G3 held on every pass for a whole grace', () => {
    const seed = 0x5eed_0c;
    const rand = new SeededRand(seed);
    for (let run = 0; run < 200; run++) {
      const keys = ['a', 'b', 'c', 'd'];
      const p = new Passes();
      /** Per key: the time since which G2 and G3 held on every pass, or undefined. */
      const heldSince = new Map<string, number>();
      const firstUnreferencedAt = new Map<string, number>();
      let now = 0;
      let applied = 1;
      let snapshots = 0;
      for (let pass = 0; pass < 60 && keys.length > 0; pass++) {
        now += rand.int(600);
        applied += rand.int(3);
        snapshots = Math.min(applied, snapshots + rand.int(4));
        const referenced = new Set(keys.filter(() => rand.chance(0.3)));
        for (const k of keys) {
          if (referenced.has(k)) {
            firstUnreferencedAt.delete(k);
            heldSince.delete(k);
            continue;
          }
          if (!firstUnreferencedAt.has(k)) firstUnreferencedAt.set(k, applied);
          if (snapshots >= firstUnreferencedAt.get(k)!) {
            if (!heldSince.has(k)) heldSince.set(k, now);
          } else heldSince.delete(k);
        }
        const deleted = p.run({ listed: [...keys], referenced, appliedIndex: applied, replicasSnapshotIndex: snapshots, nowMs: now });
        for (const k of deleted) {
          expect(heldSince.has(k), `seed ${seed} run ${run} pass ${pass}: ${k} deleted although G2/G3 did not hold`).to.equal(true);
          expect(now - heldSince.get(k)!, `seed ${seed} run ${run} pass ${pass}: ${k} deleted within the grace`).to.be.at.least(GRACE_MS);
          keys.splice(keys.indexOf(k), 1);
        }
        for (const k of keys) {
          if (heldSince.has(k)) expect(now - heldSince.get(k)! < GRACE_MS, `seed ${seed} run ${run}: ${k} kept past its grace`).to.equal(true);
        }
      }
    }
  });

  it('names the SSTs of pending flush- and compaction-edits, without decoding writes', () => {
    const writeBytes = encodeCommand({ kind: 'write', clientId: 'c', requestId: 1, rows: [['x', 1, 2]] });
    const keys = sstsNamedByEntries([
      entry(1, writeBytes),
      entry(2, encodeCommand({ kind: 'freeze' })),
      entry(3, encodeCommand({ kind: 'flush-edit', freezeIndex: 2, sst: meta('f') })),
      entry(4, encodeCommand({ kind: 'flush-edit', freezeIndex: 2, sst: null })),
      entry(5, encodeCommand({ kind: 'compaction-edit', inputs: ['i1', 'i2'], output: meta('o') })),
      entry(6, new Uint8Array(0)),
      entry(7, new Uint8Array([1, 4, 0xff]), EntryType.ConfChange),
    ]);
    expect([...keys].sort()).to.deep.equal(['f', 'i1', 'i2', 'o']);
  });

  it('a scan runs at most half the grace; an upload is proposed only within half the grace', () => {
    expect(scanDeadlineMs(2000)).to.equal(1000);
    expect(scanDeadlineMs(600_000)).to.equal(300_000);
    expect(scanDeadlineMs(10_000_000)).to.equal(300_000);
    expect(uploadStillProposable(0, 999, 2000)).to.equal(true);
    expect(uploadStillProposable(0, 1000, 2000)).to.equal(false);
  });

  it('reader leases count: an SST stays leased until every scan on it has released, and a release counts once', () => {
    const leases = new SstLeases();
    const r1 = leases.acquire(['a', 'b']);
    const r2 = leases.acquire(['a']);
    r1();
    r1();
    expect(leases.has('a')).to.equal(true);
    expect(leases.has('b')).to.equal(false);
    r2();
    expect(leases.has('a')).to.equal(false);
  });
});
