// The flusher's SST garbage collection against a fake leader (issue 14 item 4): what it must
// never delete, and that it does delete real garbage once the rule allows. Time is injected: a
// ManualClock drives the flusher's monotonic clock, and Date.now (the wall clock SST keys are
// named with) is pinned by the test, so a wall-clock jump is one assignment.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { Flusher, type FlusherSettings, gcIntervalMs, gcQuietOf } from '../../src/datanode/flusher.js';
import type { RegionServer } from '../../src/replication/region-server.js';
import { type SstMeta, decodeCommand, encodeCommand } from '../../src/engine/command.js';
import type { ApplyResult } from '../../src/engine/index.js';
import { type RegionManifest, encodeManifest, loadLatestManifest, manifestKey, manifestPrefix, replicaSnapshotKey, restoreMarkerKey, sstPrefix } from '../../src/engine/manifest.js';
import { RegionState } from '../../src/engine/region-state.js';
import { REGION, regionWithFlushedSsts, schema } from '../fixtures/one-region-table.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { type Entry, EntryType } from '../../src/raft/index.js';

const GRACE_MS = 2000;
const settings: FlusherSettings = { flushBytes: 1 << 30, flushAgeMs: 3_600_000, compactAtSsts: 100, gcGraceMs: GRACE_MS, checkIntervalMs: 250, manifestsKept: 5 };

/** An SST key as the flusher names them, with the wall-clock time `createdMs` in it. */
const sstKeyAt = (freezeIndex: number, createdMs: number, tag: string) => `regions/${REGION}/sst/${freezeIndex.toString(16).padStart(16, '0')}-${createdMs}-${tag}.sst`;
const meta = (key: string): SstMeta => ({ key, size: 10, entries: 1, maxVersion: 1, minTimestampMs: 0, maxTimestampMs: 0 });

function manifestOf(flushedIndex: number, ssts: readonly string[]): RegionManifest {
  return { formatVersion: 1, regionId: REGION, schema, flushedIndex, flushedTerm: 1, voters: [1, 2, 3], learners: [], ssts: ssts.map(meta), dedup: '[]', writtenAtMs: 0 };
}

/** What the flusher reads of a replica: role, term, the raft log above the applied index, the local snapshot. */
class FakeReplica {
  readonly regionId = REGION;
  readonly selfPeerId = 1;
  closed = false;
  leader = true;
  state = new RegionState(schema, REGION);
  /** Raft log: index → entry (only what the tests need). */
  readonly entries = new Map<number, Entry>();
  snapshotIndex = 0;
  snapshotSsts: string[] = [];
  voters = [1, 2, 3];
  readonly raft;
  readonly store;

  constructor(
    public term: number,
    public appliedIndex: number,
  ) {
    const self = this;
    for (let i = 1; i <= appliedIndex; i++) this.entries.set(i, { index: i, term, type: EntryType.Normal, data: new Uint8Array(0) });
    this.raft = {
      get term() {
        return self.term;
      },
      log: {
        get committed() {
          return self.appliedIndex;
        },
        lastIndex: () => Math.max(0, ...self.entries.keys()),
        term: (i: number) => self.entries.get(i)?.term ?? (i === 0 ? 0 : undefined),
        slice: (lo: number, hi: number) => [...self.entries.values()].filter((e) => e.index >= lo && e.index < hi).sort((a, b) => a.index - b.index),
      },
      confState: () => ({ voters: [...self.voters], learners: [] }),
    };
    this.store = {
      snapshot: () => ({
        metadata: { index: this.snapshotIndex, term: 1, confState: { voters: this.voters, learners: [] } },
        data: this.snapshotIndex > 0 ? encodeManifest(manifestOf(this.snapshotIndex, this.snapshotSsts)) : new Uint8Array(0),
      }),
    };
  }

  get stateMachine(): RegionState {
    return this.state;
  }

  isLeader(): boolean {
    return this.leader && !this.closed;
  }

  /** A proposed, not yet applied, entry at the end of the log. */
  appendPending(data: Uint8Array): void {
    const index = this.raft.log.lastIndex() + 1;
    this.entries.set(index, { index, term: this.term, type: EntryType.Normal, data });
  }
}

class FakeRegionServer {
  readonly replicas: FakeReplica[] = [];
  /** false: a ReadIndex round would find that another leader took over (a stale leader). */
  quorumConfirms = true;
  readBarriers = 0;
  allReplicas(): FakeReplica[] {
    return this.replicas;
  }
  replica(regionId: string): FakeReplica | undefined {
    return this.replicas.find((r) => r.regionId === regionId && !r.closed);
  }
  proposals = 0;
  /** The kind of every command proposed, in order. */
  readonly proposed: string[] = [];
  /** Nothing commits here: a proposal's outcome is unknown (as when the quorum is gone). */
  async propose(_regionId: string, data: Uint8Array): Promise<ApplyResult> {
    this.proposals++;
    this.proposed.push(decodeCommand(data).kind);
    throw new RegionDbError(ErrorCode.Unavailable, 'no quorum; the outcome is unknown');
  }
  async readBarrier(regionId: string): Promise<void> {
    this.readBarriers++;
    if (!this.quorumConfirms) throw new RegionDbError(ErrorCode.NotLeader, `node 1 cannot serve region ${regionId} now (no leadership)`);
  }
}

describe('flusher: SST garbage collection never deletes what may still be read (issue 14 item 4)', () => {
  let dir: string;
  let store: FsObjectStore;
  let clock: ManualClock;
  let server: FakeRegionServer;
  let flusher: Flusher;
  let wallMs: number;
  const realDateNow = Date.now;
  const deleted: string[] = [];

  const exists = async (key: string) => (await store.head(key)) !== undefined;
  /** Lets time pass on both clocks (the flusher's monotonic one and the wall clock). */
  const advance = (ms: number) => {
    clock.advance(ms);
    wallMs += ms;
  };
  /** One flusher pass, then waits for the background work it started. */
  const pass = async () => {
    flusher.check();
    await flusher.settled();
  };
  /** Passes every 250 ms for `ms`. */
  const passesFor = async (ms: number) => {
    for (let t = 0; t < ms; t += 250) {
      advance(250);
      await pass();
    }
  };
  const putSst = async (key: string) => store.put(key, new Uint8Array([1, 2, 3]));
  const leaderAt = (term: number, applied: number) => {
    const r = new FakeReplica(term, applied);
    server.replicas.push(r);
    return r;
  };
  /** Every peer has published a snapshot at `index` (what lets GC of anything unreferenced before it proceed). */
  const replicasCheckpointedAt = async (replica: FakeReplica, index: number, ssts: string[] = []) => {
    replica.snapshotIndex = index;
    replica.snapshotSsts = ssts;
    replica.state.flushedIndex = index;
    for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, index), encodeManifest(manifestOf(index, ssts)));
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-'));
    store = new FsObjectStore(dir);
    clock = new ManualClock(1_000_000);
    wallMs = realDateNow();
    Date.now = () => wallMs;
    server = new FakeRegionServer();
    deleted.length = 0;
    flusher = new Flusher(
      server as unknown as RegionServer<RegionState>,
      store,
      settings,
      silentLogger,
      { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} },
      clock,
    );
    const original = store.delete.bind(store);
    store.delete = async (key: string) => {
      deleted.push(key);
      return original(key);
    };
  });

  afterEach(() => {
    flusher.stop();
    Date.now = realDateNow;
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps an SST named by a proposed, not yet applied flush-edit, however long the edit waits for a quorum', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    const key = sstKeyAt(9, wallMs, 'aaaa');
    await putSst(key);
    leader.appendPending(encodeCommand({ kind: 'flush-edit', freezeIndex: 9, sst: meta(key) }));
    await passesFor(5 * GRACE_MS); // quorum lost for far longer than the grace
    expect(await exists(key), `deleted: ${deleted.join(', ')}`).to.equal(true);
  });

  it('keeps an SST named by a proposed compaction-edit output', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    const key = sstKeyAt(5, wallMs, 'bbbb');
    await putSst(key);
    leader.appendPending(encodeCommand({ kind: 'compaction-edit', inputs: [], output: meta(key) }));
    await passesFor(5 * GRACE_MS);
    expect(await exists(key)).to.equal(true);
  });

  it('measures the grace from when this leader first saw the SST unreferenced (monotonic), not from the wall-clock time in its key', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    await passesFor(2 * GRACE_MS); // the flusher has been running for a while
    // Uploaded just now by a node whose wall clock is an hour behind (or after a clock jump).
    const key = sstKeyAt(9, wallMs - 3_600_000, 'cccc');
    await putSst(key);
    await passesFor(GRACE_MS - 500);
    expect(await exists(key), 'deleted before the grace had passed since it was first seen').to.equal(true);
    // A real orphan is collected once the grace has passed (the rule is not "never delete").
    await passesFor(1000);
    expect(await exists(key), 'an orphan past the grace is collected').to.equal(false);
  });

  it('a wall-clock jump forward does not age a freshly uploaded SST', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    await passesFor(2 * GRACE_MS);
    const key = sstKeyAt(9, wallMs, 'dddd');
    await putSst(key); // its flush-edit is about to be proposed
    wallMs += 3_600_000; // NTP steps the wall clock an hour forward; the monotonic clock does not move
    await passesFor(GRACE_MS - 500);
    expect(await exists(key), 'deleted within the grace of its upload').to.equal(true);
  });

  it('a leader whose applied index does not yet cover an entry of its own term deletes nothing', async () => {
    // Re-elected in term 3 with entries 1..10 of term 2 applied; its no-op (term 3) is not applied yet.
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    leader.term = 3;
    leader.appendPending(new Uint8Array(0));
    const key = sstKeyAt(9, wallMs - 3_600_000, 'eeee');
    await putSst(key);
    await passesFor(5 * GRACE_MS);
    expect(await exists(key), `deleted: ${deleted.join(', ')}`).to.equal(true);
  });

  it('keeps what the latest manifest in the object store names (what `regiondb recover` loads)', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    const key = sstKeyAt(3, wallMs - 3_600_000, 'ffff');
    await putSst(key);
    // Written by an earlier leader of the region, at a flushed index above this leader's own.
    await store.put(manifestKey(REGION, 12), encodeManifest(manifestOf(12, [key])));
    await passesFor(5 * GRACE_MS);
    expect(await exists(key)).to.equal(true);
  });

  it("keeps what another replica's current snapshot names, and what a replica replaying from an older snapshot may read, until every replica has checkpointed past it", async () => {
    const leader = leaderAt(2, 30);
    leader.snapshotIndex = 20;
    leader.state.flushedIndex = 20;
    const key = sstKeyAt(3, wallMs - 3_600_000, '1111'); // compacted away on the leader before index 30
    await putSst(key);
    // Follower 2 is stopped with its snapshot at 8 naming `key`; follower 3 checkpointed at 20.
    await store.put(replicaSnapshotKey(REGION, 2, 8), encodeManifest(manifestOf(8, [key])));
    await store.put(replicaSnapshotKey(REGION, 3, 20), encodeManifest(manifestOf(20, [])));
    await passesFor(5 * GRACE_MS);
    expect(await exists(key), "named by follower 2's snapshot").to.equal(true);
    // Follower 2 comes back, replays, and checkpoints at 25 (< 30, when the leader first saw `key` unreferenced).
    await store.put(replicaSnapshotKey(REGION, 2, 25), encodeManifest(manifestOf(25, [])));
    await passesFor(5 * GRACE_MS);
    expect(await exists(key), 'a replica replaying from index 25 may still reach a version naming it').to.equal(true);
    expect(server.proposals, 'the leader asks for a flush (a freeze) so that replicas snapshot past index 30').to.be.greaterThan(0);
    // Every replica checkpoints past 30: nobody can reach a version naming it again; after the grace it goes.
    leader.appliedIndex = 40;
    for (let i = 31; i <= 40; i++) leader.entries.set(i, { index: i, term: 2, type: EntryType.Normal, data: new Uint8Array(0) });
    // The leader's flush at 35 applies and its manifest lands (G3 waits for the latest manifest
    // to be past 30 as well), then the replicas' snapshots at 35 are published.
    leader.state.flushedIndex = 35;
    await pass();
    await replicasCheckpointedAt(leader, 35);
    await passesFor(GRACE_MS + 500);
    expect(await exists(key), 'garbage once every replica and the latest manifest are past it').to.equal(false);
  });

  it('keeps an SST an open scan on this node is reading (reader lease)', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    const key = sstKeyAt(9, wallMs - 3_600_000, '2222');
    await putSst(key);
    const release = flusher.leases.acquire([key]);
    await passesFor(5 * GRACE_MS);
    expect(await exists(key), 'deleted under an open scan').to.equal(true);
    release();
    await passesFor(GRACE_MS + 500);
    expect(await exists(key)).to.equal(false);
  });

  it('an SST whose upload took half the grace or more is not proposed (a later leader may already count it an orphan)', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    leader.state.apply(11, encodeCommand({ kind: 'write', clientId: 'c', requestId: 1, rows: [['h', 1, 1]] }));
    leader.state.apply(12, encodeCommand({ kind: 'freeze' }));
    const upload = store.upload.bind(store);
    store.upload = (key: string) => {
      const u = upload(key);
      return {
        key,
        write: (chunk) => u.write(chunk),
        complete: async () => {
          const meta = await u.complete();
          if (key.endsWith('.sst')) advance(GRACE_MS / 2); // the object store stalled once the object was there
          return meta;
        },
        abort: () => u.abort(),
      };
    };
    await pass();
    expect(server.proposals, 'no flush-edit proposed').to.equal(0);
    store.upload = upload;
    await pass();
    expect(server.proposals, 'the retry, with a prompt upload, is proposed').to.equal(1);
  });

  it('a slow build before the upload completes does not count against the grace: nothing is visible until then', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    leader.state.apply(11, encodeCommand({ kind: 'write', clientId: 'c', requestId: 1, rows: [['h', 1, 1]] }));
    leader.state.apply(12, encodeCommand({ kind: 'freeze' }));
    const upload = store.upload.bind(store);
    let listedBeforeComplete: string[] | undefined;
    store.upload = (key: string) => {
      const u = upload(key);
      return {
        key,
        write: async (chunk) => {
          await u.write(chunk);
          advance(GRACE_MS); // the writer (a long merge) is slow
        },
        complete: async () => {
          listedBeforeComplete = (await store.list(`regions/${REGION}/sst/`)).map((o) => o.key);
          return u.complete();
        },
        abort: () => u.abort(),
      };
    };
    await pass();
    expect(listedBeforeComplete, "a listing (another leader's GC) sees nothing of the upload before complete()").to.deep.equal([]);
    expect(server.proposed, 'the flush-edit is proposed').to.deep.equal(['flush-edit']);
  });

  it('a leader that cannot confirm its leadership with a quorum (another leader took over) deletes nothing', async () => {
    const leader = leaderAt(2, 10);
    await replicasCheckpointedAt(leader, 10);
    server.quorumConfirms = false;
    const key = sstKeyAt(9, wallMs - 3_600_000, '3333');
    await putSst(key);
    await passesFor(5 * GRACE_MS);
    expect(await exists(key), `deleted: ${deleted.join(', ')}`).to.equal(true);
    expect(server.readBarriers, 'asked the quorum before deleting').to.be.greaterThan(0);
  });
});

/** A region with `count` SSTs of one row each, flushed through the replicated edits. */
const regionWithSsts = (count: number): RegionState =>
  regionWithFlushedSsts(
    Array.from({ length: count }, (_, n) => [[`h${n}`, n, n]]),
    (freezeIndex, n) => sstKeyAt(freezeIndex, 1, `s${n}`),
  );

describe('flusher: an explicit compaction', () => {
  it('whose edit did not commit (leader lost its quorum) is tried again at the next check, not dropped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-compact-'));
    const clock = new ManualClock(1_000_000);
    const server = new FakeRegionServer();
    const replica = new FakeReplica(2, 6);
    replica.state = regionWithSsts(2);
    replica.snapshotIndex = 6;
    server.replicas.push(replica);
    const flusher = new Flusher(server as unknown as RegionServer<RegionState>, new FsObjectStore(dir), settings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    try {
      expect(replica.state.ssts.length).to.equal(2);
      flusher.requestCompaction(REGION);
      flusher.check();
      await flusher.settled();
      expect(server.proposed.filter((k) => k === 'compaction-edit'), 'the requested compaction was proposed').to.have.length(1);
      // Its outcome is unknown (no quorum) and the region still has both SSTs: the request stands.
      for (let i = 0; i < 3; i++) {
        clock.advance(settings.checkIntervalMs);
        flusher.check();
        await flusher.settled();
      }
      expect(server.proposed.filter((k) => k === 'compaction-edit'), 'proposed again while the SSTs are still there').to.have.length.greaterThan(1);
    } finally {
      flusher.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('flusher: a quiet region gets its GC pass once per gcQuietIntervalMs (docs/engine.md, "Quiet regions")', () => {
  // The usual interval here: grace / 4 = 500 ms; the quiet one: a grace.
  const USUAL_MS = GRACE_MS / 4;
  const QUIET_MS = GRACE_MS;
  const quietSettings: FlusherSettings = { ...settings, gcQuietIntervalMs: QUIET_MS };
  let dir: string;
  let store: FsObjectStore;
  let clock: ManualClock;
  let server: FakeRegionServer;
  let flusher: Flusher;
  /** Monotonic ms of every listing of the region's SSTs (one per GC pass). */
  let passesAt: number[];
  const wallMs = 1_700_000_000_000;
  const inVersion = sstKeyAt(9, wallMs, 'v000');

  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += settings.checkIntervalMs) {
      clock.advance(settings.checkIntervalMs);
      flusher.check();
      await flusher.settled();
    }
  };
  const start = async (s: FlusherSettings) => {
    flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, s, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    const leader = new FakeReplica(2, 10);
    server.replicas.push(leader);
    leader.snapshotIndex = 10;
    leader.snapshotSsts = [inVersion];
    leader.state.flushedIndex = 10;
    leader.state.ssts = [meta(inVersion)];
    await store.put(inVersion, new Uint8Array([1]));
    for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 10), encodeManifest(manifestOf(10, [inVersion])));
    return leader;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-quiet-'));
    store = new FsObjectStore(dir);
    clock = new ManualClock(1_000_000);
    server = new FakeRegionServer();
    passesAt = [];
    const list = store.list.bind(store);
    store.list = async (prefix: string) => {
      if (prefix === sstPrefix(REGION)) passesAt.push(clock.nowMs() - 1_000_000);
      return list(prefix);
    };
  });

  afterEach(() => {
    flusher.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('without gcQuietIntervalMs every leader passes every usual interval (the default elsewhere, unchanged)', async () => {
    await start(settings);
    await run(5000);
    expect(passesAt).to.deep.equal([250, 750, 1250, 1750, 2250, 2750, 3250, 3750, 4250, 4750]);
  });

  it('a region whose last pass was clean and that has not changed passes once per quiet interval', async () => {
    await start(quietSettings);
    await run(5000);
    expect(passesAt).to.deep.equal([250, 250 + QUIET_MS, 250 + 2 * QUIET_MS]);
  });

  it('a new SST list (a flush or compaction applied), a new term or a new membership puts it back on the usual interval, from the same last pass', async () => {
    const leader = await start(quietSettings);
    await run(500); // the clean first pass at 250
    // A flush applies: a new SST in the version (the flusher's own upload would be in it too).
    const flushed = sstKeyAt(11, wallMs, 'v001');
    await store.put(flushed, new Uint8Array([1]));
    leader.state.ssts = [meta(flushed), ...leader.state.ssts];
    leader.state.flushedIndex = 11;
    await run(500);
    expect(passesAt, 'the pass after the flush came a usual interval after the last').to.deep.equal([250, 750]);
    await run(QUIET_MS); // clean again at 750: the next at 750 + QUIET_MS
    expect(passesAt).to.deep.equal([250, 750, 750 + QUIET_MS]);
    // Re-elected in a new term (its own entry applied: G1 holds at once).
    leader.term = 3;
    leader.entries.set(10, { index: 10, term: 3, type: EntryType.Normal, data: new Uint8Array(0) });
    await run(USUAL_MS);
    expect(passesAt.at(-1), 'a new term').to.equal(750 + QUIET_MS + USUAL_MS);
    await run(USUAL_MS);
    expect(passesAt.length, 'quiet again').to.equal(4);
    leader.voters = [1, 2, 4];
    await store.put(replicaSnapshotKey(REGION, 4, 10), encodeManifest(manifestOf(10, [inVersion])));
    await run(USUAL_MS);
    // Its usual due time (3,250 + 500) has passed: the first check after the change passes.
    expect(passesAt.at(-1), `a new membership (passes at ${passesAt.join(', ')})`).to.equal(750 + QUIET_MS + 3 * USUAL_MS);
    expect(await store.head(replicaSnapshotKey(REGION, 3, 10)), "the removed member's published snapshot is deleted at that pass").to.equal(undefined);
  });

  it('a compaction applied (a new SST list, the same flushed index) puts it back on the usual interval', async () => {
    const leader = await start(quietSettings);
    await run(500); // the clean first pass at 250: the next at 250 + QUIET_MS while nothing changes
    const merged = sstKeyAt(10, wallMs, 'm000');
    await store.put(merged, new Uint8Array([1]));
    leader.state.ssts = [meta(merged)];
    await run(USUAL_MS);
    expect(passesAt, 'the pass after the compaction came a usual interval after the last').to.deep.equal([250, 250 + USUAL_MS]);
  });

  it('an orphan landing in a quiet region (a late upload of another node) is found within a quiet interval, kept a grace, then deleted', async () => {
    await start(quietSettings);
    await run(500); // clean at 250: the next pass at 250 + QUIET_MS
    const orphan = sstKeyAt(12, wallMs, 'orph');
    await store.put(orphan, new Uint8Array([1]));
    const landedAt = clock.nowMs() - 1_000_000;
    await run(QUIET_MS + GRACE_MS - 500);
    const seenAt = 250 + QUIET_MS;
    expect(passesAt.filter((t) => t >= landedAt)[0], 'first seen at the quiet pass').to.equal(seenAt);
    // A pass that saw something unreferenced is not clean: the usual interval while it waits.
    expect(passesAt, 'on the usual interval while it waits').to.deep.equal([250, seenAt, seenAt + USUAL_MS, seenAt + 2 * USUAL_MS, seenAt + 3 * USUAL_MS]);
    expect(await store.head(orphan), 'kept for a grace from when it was first seen').to.not.equal(undefined);
    await run(1000);
    expect(await store.head(orphan), 'deleted once the grace passed').to.equal(undefined);
    expect(await store.head(inVersion), 'what the version names stays').to.not.equal(undefined);
  });
});

describe("flusher: an orphan of this node's own upload in a quiet region (docs/engine.md, \"Quiet regions\")", () => {
  // A compaction whose edit commits but changes nothing (every replica ignores it: its inputs are
  // no longer a run of the version, or a duplicate) leaves its output as an orphan while the
  // version, term, flushed index and membership stay as they were. Before the fix the region
  // stayed quiet: the orphan was first listed a whole quiet interval after the last pass.
  const USUAL_MS = GRACE_MS / 4;
  const QUIET_MS = 4 * GRACE_MS;
  const quietSettings: FlusherSettings = { ...settings, gcQuietIntervalMs: QUIET_MS };
  let dir: string;
  let store: FsObjectStore;
  let clock: ManualClock;
  let server: FakeRegionServer;
  let flusher: Flusher;
  let passesAt: number[];
  /** Held after its answer while set: the next GC listing of the region's SSTs. */
  let holdListing: { listed: () => void; gate: Promise<void> } | undefined;

  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += settings.checkIntervalMs) {
      clock.advance(settings.checkIntervalMs);
      flusher.check();
      await flusher.settled();
    }
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-own-orphan-'));
    store = new FsObjectStore(dir);
    clock = new ManualClock(1_000_000);
    server = new FakeRegionServer();
    // Every edit commits; none changes this fake's version (the compaction-edit is ignored).
    server.propose = async (_regionId: string, data: Uint8Array) => {
      server.proposed.push(decodeCommand(data).kind);
      return {} as ApplyResult;
    };
    passesAt = [];
    holdListing = undefined;
    const list = store.list.bind(store);
    store.list = async (prefix: string) => {
      if (prefix !== sstPrefix(REGION)) return list(prefix);
      passesAt.push(clock.nowMs() - 1_000_000);
      const answer = await list(prefix);
      const hold = holdListing;
      holdListing = undefined;
      if (hold) {
        hold.listed();
        await hold.gate;
      }
      return answer;
    };
    flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, quietSettings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    const leader = new FakeReplica(2, 10);
    leader.state = regionWithSsts(2); // readable SSTs (in memory), flushed at 5
    const keys = leader.state.ssts.map((s) => s.key);
    for (const k of keys) await store.put(k, new Uint8Array([1]));
    leader.snapshotIndex = 5;
    leader.snapshotSsts = keys;
    for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 5), encodeManifest(manifestOf(5, keys)));
    server.replicas.push(leader);
  });

  afterEach(() => {
    flusher.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const sstsInStore = async () => (await store.list(sstPrefix(REGION))).length;

  it('an own upload that ends after a clean pass puts the region back on the usual interval', async () => {
    await run(500);
    expect(passesAt, 'clean at 250: quiet').to.deep.equal([250]);
    flusher.requestCompaction(REGION);
    await run(settings.checkIntervalMs); // at 750 the compaction uploads its output; its edit changes nothing
    expect(server.proposed).to.include('compaction-edit');
    const orphanAt = passesAt.length;
    expect(await sstsInStore(), 'the orphan is there').to.equal(3);
    passesAt.length = orphanAt; // the count above listed too
    await run(2 * USUAL_MS);
    expect(passesAt, 'the next pass comes at the usual interval (due at 750), at the first check after the upload ended').to.deep.equal([250, 1000, 1500]);
  });

  it('an own upload that ends while a pass runs (after its listing) keeps that pass from recording the region quiet', async () => {
    await run(500);
    await run(QUIET_MS - 500); // to QUIET_MS: the quiet pass is due at 250 + QUIET_MS
    expect(passesAt).to.deep.equal([250]);
    let listed!: () => void;
    const wasListed = new Promise<void>((resolve) => {
      listed = resolve;
    });
    let release!: () => void;
    holdListing = { listed, gate: new Promise<void>((resolve) => (release = resolve)) };
    clock.advance(settings.checkIntervalMs);
    flusher.check(); // 250 + QUIET_MS: the quiet pass lists (nothing unreferenced) and is held
    await wasListed;
    flusher.requestCompaction(REGION);
    clock.advance(settings.checkIntervalMs);
    flusher.check(); // a check later: the compaction runs to its end while the pass is held
    const running = (flusher as unknown as { running: Set<Promise<void>> }).running;
    for (let i = 0; i < 2000 && running.size > 1; i++) await new Promise((r) => setTimeout(r, 1));
    expect(running.size, 'only the held pass is left').to.equal(1);
    expect(server.proposed).to.include('compaction-edit');
    release();
    await flusher.settled(); // the pass ends, having listed no orphan
    await run(USUAL_MS);
    expect(passesAt.slice(0, 3), 'the pass after the held one comes at the usual interval').to.deep.equal([250, 250 + QUIET_MS, 250 + QUIET_MS + USUAL_MS]);
  });
});

describe("flusher: GC's memory of a region is forgotten when this node stops leading or hosting it", () => {
  const quietSettings: FlusherSettings = { ...settings, gcQuietIntervalMs: 4 * GRACE_MS };
  let dir: string;
  let store: FsObjectStore;
  let clock: ManualClock;
  let server: FakeRegionServer;
  let flusher: Flusher;
  /** The flusher's per-region state (private), read to see what it still remembers. */
  let work: Map<string, { unreferenced: ReadonlyMap<string, unknown>; gcQuiet: unknown }>;
  const wallMs = 1_700_000_000_000;
  const orphan = sstKeyAt(9, wallMs, 'orph');
  const region2 = `${REGION}0`;

  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += settings.checkIntervalMs) {
      clock.advance(settings.checkIntervalMs);
      flusher.check();
      await flusher.settled();
    }
  };
  /** A leader at applied index 10 whose replicas have all snapshotted at 10 (G3 holds for anything seen from now on). */
  const leaderOf = async (regionId: string, term: number) => {
    const leader = new FakeReplica(term, 10);
    (leader as { regionId: string }).regionId = regionId;
    leader.snapshotIndex = 10;
    leader.state.flushedIndex = 10;
    for (const peer of [2, 3]) await store.put(replicaSnapshotKey(regionId, peer, 10), encodeManifest({ ...manifestOf(10, []), regionId }));
    server.replicas.push(leader);
    return leader;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-forget-'));
    store = new FsObjectStore(dir);
    clock = new ManualClock(1_000_000);
    server = new FakeRegionServer();
    flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, quietSettings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    work = (flusher as unknown as { work: typeof work }).work;
  });

  afterEach(() => {
    flusher.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('losing the leadership forgets the first sightings and the quiet record; leading again (a higher term) measures the grace afresh', async () => {
    const leader = await leaderOf(REGION, 2);
    const quiet = await leaderOf(region2, 2);
    await store.put(orphan, new Uint8Array([1]));
    await run(GRACE_MS / 2);
    expect([...work.get(REGION)!.unreferenced.keys()], 'the orphan is in its grace').to.deep.equal([orphan]);
    expect(work.get(region2)!.gcQuiet, 'the other region is quiet').to.not.equal(undefined);
    leader.leader = false;
    quiet.leader = false;
    await run(settings.checkIntervalMs);
    expect(work.get(REGION)!.unreferenced.size, 'first sightings of a region this node no longer leads').to.equal(0);
    expect(work.get(region2)!.gcQuiet, 'quiet record of a region this node no longer leads').to.equal(undefined);
    // Elected again, in a higher term: the orphan's grace starts at the first pass of this term.
    leader.term = 3;
    leader.entries.set(10, { index: 10, term: 3, type: EntryType.Normal, data: new Uint8Array(0) });
    leader.leader = true;
    const againAtMs = clock.nowMs();
    await run(GRACE_MS - settings.checkIntervalMs);
    expect(await store.head(orphan), 'kept for a whole grace from its first sighting in the new term').to.not.equal(undefined);
    await run(GRACE_MS);
    expect(await store.head(orphan), `collected once that grace passed (leading again at ${againAtMs})`).to.equal(undefined);
  });

  it('a region closed here is forgotten at the next full check, and opened again it starts afresh', async () => {
    const leader = await leaderOf(REGION, 2);
    await store.put(orphan, new Uint8Array([1]));
    await run(GRACE_MS / 2);
    expect(work.get(REGION)?.unreferenced.size).to.equal(1);
    leader.closed = true; // closed (moved away, removed): no longer in replica(), skipped by checks
    await run(settings.checkIntervalMs);
    expect(work.has(REGION), 'the closed region is forgotten').to.equal(false);
    // Opened again (a new replica object of the same region, leading in a higher term).
    server.replicas.splice(server.replicas.indexOf(leader), 1);
    await leaderOf(REGION, 3);
    await run(GRACE_MS - settings.checkIntervalMs);
    expect(await store.head(orphan), 'kept for a whole grace from its first sighting after the reopen').to.not.equal(undefined);
    expect(work.get(REGION)?.unreferenced.size, 'seen again by the reopened leader').to.equal(1);
    await run(GRACE_MS);
    expect(await store.head(orphan)).to.equal(undefined);
  });

  it('with a change feed (the region server), a closed region is forgotten at the next full check, not before', async () => {
    /** A region server whose change feed reports nothing changed: every check but each FULL_CHECK_EVERY-th visits only marked or due regions. */
    class FeedServer extends FakeRegionServer {
      feeds = 0;
      changeFeed(): () => Set<FakeReplica> {
        return () => {
          this.feeds++;
          return new Set();
        };
      }
    }
    const feedServer = new FeedServer();
    server = feedServer;
    flusher.stop();
    flusher = new Flusher(feedServer as unknown as RegionServer<RegionState>, store, quietSettings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    work = (flusher as unknown as { work: typeof work }).work;
    const leader = await leaderOf(REGION, 2);
    await run(settings.checkIntervalMs); // the first check is a full one
    expect(feedServer.feeds, 'the flusher reads the change feed').to.equal(1);
    expect(work.has(REGION)).to.equal(true);
    leader.closed = true;
    // FULL_CHECK_EVERY (40) checks from the full one, the next full check comes.
    for (let i = 2; i <= 40; i++) {
      await run(settings.checkIntervalMs);
      expect(work.has(REGION), `check ${i} is not a full one: the state is kept`).to.equal(true);
    }
    await run(settings.checkIntervalMs);
    expect(work.has(REGION), 'check 41 is the next full check: forgotten').to.equal(false);
  });
  it('a closed region whose failed manifest put may still land is forgotten too (the late-manifest rule covers that put)', async () => {
    const put = store.put.bind(store);
    let failed = 0;
    store.put = async (key: string, data: Uint8Array) => {
      if (key.startsWith(manifestPrefix(REGION))) {
        failed++;
        throw new RegionDbError(ErrorCode.Unavailable, 'the put timed out (it may still take effect)');
      }
      return put(key, data);
    };
    const leader = await leaderOf(REGION, 2);
    await run(settings.checkIntervalMs);
    expect(failed, 'the manifest put at 10 was tried and failed').to.be.greaterThan(0);
    const landing = (work.get(REGION) as unknown as { manifestsLanding: Map<number, unknown>; manifestWritten: number } | undefined)!;
    expect([...landing.manifestsLanding.keys()], 'its SST list is kept while the region is hosted (G2)').to.deep.equal([10]);
    expect(landing.manifestWritten).to.equal(0);
    leader.closed = true;
    await run(settings.checkIntervalMs);
    expect(work.has(REGION), 'the closed region is forgotten, landing put or not').to.equal(false);
  });
});

describe('gcIntervalMs (the GC schedule)', () => {
  const s = { checkIntervalMs: 250, gcGraceMs: 600_000, gcQuietIntervalMs: 600_000 };
  const ssts: SstMeta[] = [meta('a')];
  const q = gcQuietOf(2, 10, ssts, { voters: [1, 2, 3], learners: [] });
  it('is the usual interval (a quarter grace, at most 60 s) unless the recorded quiet state still holds', () => {
    expect(gcIntervalMs({ ...s, gcQuietIntervalMs: undefined }, q, q)).to.equal(60_000);
    expect(gcIntervalMs(s, undefined, q)).to.equal(60_000);
    expect(gcIntervalMs(s, q, undefined)).to.equal(60_000);
    expect(gcIntervalMs(s, q, gcQuietOf(2, 10, ssts, { voters: [1, 2, 3], learners: [] }))).to.equal(600_000);
    expect(gcIntervalMs(s, q, gcQuietOf(3, 10, ssts, { voters: [1, 2, 3], learners: [] })), 'term').to.equal(60_000);
    expect(gcIntervalMs(s, q, gcQuietOf(2, 11, ssts, { voters: [1, 2, 3], learners: [] })), 'flushed index').to.equal(60_000);
    expect(gcIntervalMs(s, q, gcQuietOf(2, 10, [...ssts], { voters: [1, 2, 3], learners: [] })), 'another SST list').to.equal(60_000);
    expect(gcIntervalMs(s, q, gcQuietOf(2, 10, ssts, { voters: [1, 2], learners: [3] })), 'membership').to.equal(60_000);
  });
  it('never shortens the usual interval', () => {
    const short = { checkIntervalMs: 20, gcGraceMs: 200, gcQuietIntervalMs: 10 };
    expect(gcIntervalMs(short, q, q)).to.equal(50);
  });
});

describe('flusher: a manifest write whose listing is slow (G2: "any manifest this node is writing")', () => {
  // Found by the engine simulator (FAULTS=all, SIM_CLUSTER_GC_QUIET_MS=100, seed 25): the manifest
  // at a flushed index is computed (naming the SST list of that moment) before the listing that
  // precedes its put, but was registered as landing only after the listing. A slow listing left a
  // window in which a compaction moved the SST out of the version and GC, not knowing the manifest
  // was on its way, deleted it; the manifest then landed as the latest, naming a deleted SST.
  it('keeps what a manifest still waiting for its listing names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-landing-'));
    const store = new FsObjectStore(dir);
    const clock = new ManualClock(1_000_000);
    const server = new FakeRegionServer();
    const flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, settings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const list = store.list.bind(store);
    let manifestListings = 0;
    store.list = async (prefix: string) => {
      // The first listing of the manifests is the manifest write's (the visit starts it before the
      // GC pass): it takes its time. GC's own listings of them answer at once.
      if (prefix === manifestPrefix(REGION) && manifestListings++ === 0) await gate;
      return list(prefix);
    };
    /** Lets the work a check started run, except the manifest write held at its listing. */
    const running = (flusher as unknown as { running: Set<Promise<void>> }).running;
    const step = async () => {
      clock.advance(settings.checkIntervalMs);
      flusher.check();
      for (let i = 0; i < 2000 && running.size > 1; i++) await new Promise((r) => setTimeout(r, 1));
    };
    try {
      const wallMs = 1_700_000_000_000;
      const flushed = sstKeyAt(10, wallMs, 'flsh');
      const merged = sstKeyAt(10, wallMs, 'merg');
      const leader = new FakeReplica(2, 10);
      server.replicas.push(leader);
      leader.state.flushedIndex = 10;
      leader.state.ssts = [meta(flushed)];
      await store.put(flushed, new Uint8Array([1]));
      await step(); // the manifest at 10 (naming `flushed`) waits for its listing
      expect(running.size, 'the manifest write is under way').to.equal(1);
      // A compaction replaces `flushed` with `merged` at 12; every replica snapshots past it.
      await store.put(merged, new Uint8Array([1]));
      leader.state.ssts = [meta(merged)];
      for (const i of [11, 12]) leader.entries.set(i, { index: i, term: 2, type: EntryType.Normal, data: new Uint8Array(0) });
      leader.appliedIndex = 12;
      leader.snapshotIndex = 12;
      leader.snapshotSsts = [merged];
      for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 12), encodeManifest(manifestOf(12, [merged])));
      for (let t = 0; t < 2 * GRACE_MS; t += settings.checkIntervalMs) await step();
      release();
      await flusher.settled();
      const latest = await loadLatestManifest(store, REGION);
      expect(latest?.key, 'the manifest landed').to.equal(manifestKey(REGION, 10));
      expect(latest?.manifest.ssts.map((s) => s.key)).to.deep.equal([flushed]);
      expect(await store.head(flushed), 'the SST the latest manifest names').to.not.equal(undefined);
    } finally {
      flusher.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("flusher: a deposed leader's manifest put that lands late (docs/engine.md, G3's recovery point)", () => {
  // Leader 1 (term 1) computes the manifest at flushed index 10, naming the SSTs a and b of its
  // version, and starts its put; the put takes its time. Leader 1 is deposed. Leader 2 (term 2)
  // merges a and b into c and flushes at 14; every replica snapshots at 14, but leader 2's own
  // manifest at 14 does not land yet (its puts fail for a while). Before the fix, leader 2's GC
  // saw a and b named by nothing (no manifest in the store, every replica past them) and deleted
  // them after the grace; then leader 1's put landed and was the latest manifest — what
  // `regiondb recover`, backups and standby seeds load — naming two deleted SSTs.
  it('GC keeps what it deletes until the latest manifest in the store is at or above the index it left the version at', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-deposed-'));
    const clock = new ManualClock(1_000_000);
    const noMetrics = { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} };
    // One object store (a directory), seen through one client per node.
    const store = new FsObjectStore(dir);
    const store1 = new FsObjectStore(dir);
    const store2 = new FsObjectStore(dir);
    const wallMs = 1_700_000_000_000;
    const [a, b, c] = ['aaaa', 'bbbb', 'cccc'].map((tag) => sstKeyAt(tag === 'cccc' ? 12 : 9, wallMs, tag)) as [string, string, string];
    for (const k of [a, b, c]) await store.put(k, new Uint8Array([1]));

    // Leader 1's manifest put is held until the test lets it land.
    let release!: () => void;
    const landing = new Promise<void>((resolve) => {
      release = resolve;
    });
    let putStarted!: () => void;
    const started = new Promise<void>((resolve) => {
      putStarted = resolve;
    });
    const put1 = store1.put.bind(store1);
    store1.put = async (key: string, data: Uint8Array) => {
      if (key.startsWith(manifestPrefix(REGION))) {
        putStarted();
        await landing;
      }
      return put1(key, data);
    };
    const server1 = new FakeRegionServer();
    const leader1 = new FakeReplica(1, 10);
    leader1.state.flushedIndex = 10;
    leader1.state.ssts = [meta(a), meta(b)];
    server1.replicas.push(leader1);
    const flusher1 = new Flusher(server1 as unknown as RegionServer<RegionState>, store1, settings, silentLogger, noMetrics, clock);

    // Leader 2's manifest puts fail until `manifestsFail` is cleared.
    let manifestsFail = true;
    const put2 = store2.put.bind(store2);
    store2.put = async (key: string, data: Uint8Array) => {
      if (manifestsFail && key.startsWith(manifestPrefix(REGION))) throw new RegionDbError(ErrorCode.Unavailable, 'the object store refused the put');
      return put2(key, data);
    };
    const server2 = new FakeRegionServer();
    const leader2 = new FakeReplica(2, 14);
    leader2.state.flushedIndex = 14;
    leader2.state.ssts = [meta(c)];
    leader2.snapshotIndex = 14;
    leader2.snapshotSsts = [c];
    server2.replicas.push(leader2);
    const flusher2 = new Flusher(server2 as unknown as RegionServer<RegionState>, store2, settings, silentLogger, noMetrics, clock);
    const passes2 = async (ms: number) => {
      for (let t = 0; t < ms; t += settings.checkIntervalMs) {
        clock.advance(settings.checkIntervalMs);
        flusher2.check();
        await flusher2.settled();
      }
    };
    /** Every SST the latest manifest names, and whether it is in the store. */
    const latestNames = async () => {
      const latest = await loadLatestManifest(store, REGION);
      const named = latest?.manifest.ssts.map((s) => s.key) ?? [];
      return { key: latest?.key, missing: (await Promise.all(named.map(async (k) => ((await store.head(k)) === undefined ? [k] : [])))).flat() };
    };
    try {
      flusher1.check();
      await started; // leader 1's manifest at 10 (naming a and b) is on its way
      leader1.leader = false; // deposed
      for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 14), encodeManifest(manifestOf(14, [c])));
      await passes2(4 * GRACE_MS);
      release();
      await flusher1.settled();
      const late = await latestNames();
      expect(late.key, "leader 1's late manifest is the latest").to.equal(manifestKey(REGION, 10));
      expect(late.missing, 'SSTs the latest manifest names that GC deleted').to.deep.equal([]);
      expect(flusher2.manifestIndex(REGION), 'the recovery point node 2 reports').to.equal(0);

      // Leader 2's manifest lands: from then on a and b are garbage, and they are collected.
      manifestsFail = false;
      await passes2(4 * GRACE_MS);
      const now = await latestNames();
      expect(now.key).to.equal(manifestKey(REGION, 14));
      expect(now.missing).to.deep.equal([]);
      expect(await store.head(a), 'garbage once the latest manifest is past it').to.equal(undefined);
      expect(await store.head(b)).to.equal(undefined);
      expect(await store.head(c)).to.not.equal(undefined);
    } finally {
      release();
      flusher1.stop();
      flusher2.stop();
      await flusher1.settled();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('flusher: a region restarted from an older manifest on the same node (br restore run again, then recover)', () => {
  // Node 2 leads the region and writes its manifest at 900. A re-restore deletes every manifest of
  // the region and puts the backup's at 500, and recovers the region there: the replica is closed
  // and opened again at 500 on the same node, with no full check in between (recoverRegionNow).
  // Before the fix the flusher's work state (manifestWritten = 900) survived. In the new history
  // leader 1 computes the manifest at 550 naming r and y and is deposed with the put in flight;
  // node 2 leads again, y is merged into z at 600, node 2 flushes at 650 and every replica
  // snapshots at 650, but node 2's manifest puts fail (G3's case: no manifest >= 600 in the store).
  it('GC does not count a manifest the store no longer holds (manifestWritten of the earlier history)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-rerestore-'));
    const clock = new ManualClock(1_000_000);
    const noMetrics = { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} };
    const store = new FsObjectStore(dir);
    const store1 = new FsObjectStore(dir);
    const store2 = new FsObjectStore(dir);
    let failManifestPuts2 = false;
    const put2 = store2.put.bind(store2);
    store2.put = async (key: string, data: Uint8Array) => {
      if (failManifestPuts2 && key.startsWith(manifestPrefix(REGION))) throw new Error('injected: manifest put failed');
      return put2(key, data);
    };
    const wallMs = 1_700_000_000_000;
    const [old, r, y, z] = ['0000', 'rrrr', 'yyyy', 'zzzz'].map((tag, i) => sstKeyAt(100 + i, wallMs, tag)) as [string, string, string, string];
    for (const k of [old, r, y, z]) await store.put(k, new Uint8Array([1]));
    const server2 = new FakeRegionServer();
    const before = new FakeReplica(2, 900);
    before.state.flushedIndex = 900;
    before.state.ssts = [meta(old)];
    server2.replicas.push(before);
    const flusher2 = new Flusher(server2 as unknown as RegionServer<RegionState>, store2, settings, silentLogger, noMetrics, clock);
    const passes2 = async (ms: number) => {
      for (let t = 0; t < ms; t += settings.checkIntervalMs) {
        clock.advance(settings.checkIntervalMs);
        flusher2.check();
        await flusher2.settled();
      }
    };
    let release!: () => void;
    const landing = new Promise<void>((resolve) => {
      release = resolve;
    });
    let putStarted!: () => void;
    const started = new Promise<void>((resolve) => {
      putStarted = resolve;
    });
    const put1 = store1.put.bind(store1);
    store1.put = async (key: string, data: Uint8Array) => {
      if (key.startsWith(manifestPrefix(REGION))) {
        putStarted();
        await landing;
      }
      return put1(key, data);
    };
    const server1 = new FakeRegionServer();
    const leader1 = new FakeReplica(3, 550);
    leader1.state.flushedIndex = 550;
    leader1.state.ssts = [meta(r), meta(y)];
    server1.replicas.push(leader1);
    const flusher1 = new Flusher(server1 as unknown as RegionServer<RegionState>, store1, settings, silentLogger, noMetrics, clock);
    const latestNames = async () => {
      const latest = await loadLatestManifest(store, REGION);
      const named = latest?.manifest.ssts.map((s) => s.key) ?? [];
      return { key: latest?.key, missing: (await Promise.all(named.map(async (k) => ((await store.head(k)) === undefined ? [k] : [])))).flat() };
    };
    try {
      flusher2.check();
      await flusher2.settled();
      expect(await store.head(manifestKey(REGION, 900)), 'node 2 wrote its manifest at 900').to.not.equal(undefined);
      // The re-restore: every manifest deleted, the backup's put at 500; the region recovered there.
      for (const o of await store.list(manifestPrefix(REGION))) await store.delete(o.key);
      await store.put(manifestKey(REGION, 500), encodeManifest(manifestOf(500, [r])));
      before.closed = true;
      server2.replicas.splice(0, 1);
      failManifestPuts2 = true;
      flusher1.check();
      await started; // leader 1 (new history) puts its manifest at 550 naming r, y; deposed
      leader1.leader = false;
      // Node 2 leads the new history at applied 620: y was merged into z at 600; every replica's
      // snapshot is at 550 (naming r, y). Its first pass sees y unreferenced at 620.
      const after = new FakeReplica(4, 620);
      after.state.flushedIndex = 550;
      after.state.ssts = [meta(r), meta(z)];
      after.snapshotIndex = 550;
      after.snapshotSsts = [r, y];
      server2.replicas.push(after);
      for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 550), encodeManifest(manifestOf(550, [r, y])));
      await passes2(GRACE_MS / 2); // at least one GC pass (every grace/4)
      // It flushes at 650 and every replica snapshots there; its manifest at 650 is not written.
      for (let i = 621; i <= 660; i++) after.entries.set(i, { index: i, term: 4, type: EntryType.Normal, data: new Uint8Array(0) });
      after.appliedIndex = 660;
      after.state.flushedIndex = 650;
      after.snapshotIndex = 650;
      after.snapshotSsts = [r, z];
      for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 650), encodeManifest(manifestOf(650, [r, z])));
      await passes2(4 * GRACE_MS);
      expect(await store.head(manifestKey(REGION, 650)), "node 2's manifest puts fail").to.equal(undefined);
      release();
      await flusher1.settled();
      const late = await latestNames();
      expect(late.key).to.equal(manifestKey(REGION, 550));
      expect(late.missing, 'SSTs the latest manifest names that GC deleted').to.deep.equal([]);
    } finally {
      release();
      flusher1.stop();
      flusher2.stop();
      await flusher1.settled();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the leader writes the manifest of its flushed index after the region restarted below the one it had written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-rerestore2-'));
    const clock = new ManualClock(1_000_000);
    const noMetrics = { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} };
    const store = new FsObjectStore(dir);
    const server = new FakeRegionServer();
    const before = new FakeReplica(2, 900);
    before.state.flushedIndex = 900;
    server.replicas.push(before);
    const flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, settings, silentLogger, noMetrics, clock);
    try {
      flusher.check();
      await flusher.settled();
      for (const o of await store.list(manifestPrefix(REGION))) await store.delete(o.key);
      await store.put(manifestKey(REGION, 500), encodeManifest(manifestOf(500, [])));
      before.closed = true;
      server.replicas.splice(0, 1);
      const after = new FakeReplica(3, 660);
      after.state.flushedIndex = 650;
      server.replicas.push(after);
      for (let i = 0; i < 8; i++) {
        clock.advance(settings.checkIntervalMs);
        flusher.check();
        await flusher.settled();
      }
      expect(flusher.manifestIndex(REGION), 'what `regiondb flush` waits for').to.equal(650);
      expect(await store.head(manifestKey(REGION, 650)), 'the manifest at the flushed index').to.not.equal(undefined);
    } finally {
      flusher.stop();
      await flusher.settled();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('flusher: a damaged latest manifest (docs/engine.md, "A damaged latest manifest")', () => {
  /** A leader at applied and flushed index 10, every replica's snapshot at 10, an orphan SST, and `damagedAt`'s manifest damaged. */
  async function setup(damagedAt: number) {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-damaged-'));
    const clock = new ManualClock(1_000_000);
    const store = new FsObjectStore(dir);
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const server = new FakeRegionServer();
    const leader = new FakeReplica(2, 10);
    leader.snapshotIndex = 10;
    leader.state.flushedIndex = 10;
    server.replicas.push(leader);
    for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 10), encodeManifest(manifestOf(10, [])));
    const orphan = sstKeyAt(9, 1_700_000_000_000, 'dmgd');
    await store.put(orphan, new Uint8Array([1]));
    const damagedKey = manifestKey(REGION, damagedAt);
    await store.put(damagedKey, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
    const flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, settings, log, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    const run = async (ms: number) => {
      for (let t = 0; t < ms; t += settings.checkIntervalMs) {
        clock.advance(settings.checkIntervalMs);
        flusher.check();
        await flusher.settled();
      }
    };
    const warnings = () => lines.map((l) => JSON.parse(l) as { msg: string; manifest?: string; err?: string });
    const freezes = () => server.proposed.filter((k) => k === 'freeze').length;
    const cleanup = async () => {
      flusher.stop();
      await flusher.settled();
      rmSync(dir, { recursive: true, force: true });
    };
    return { store, server, leader, orphan, damagedKey, run, warnings, freezes, cleanup };
  }

  it('GC deletes nothing while it is the latest, and asks for a flush whose manifest supersedes it; once that is in, GC resumes and the requests stop', async () => {
    const t = await setup(10); // the manifest of the leader's own flushed index (its write refused: damaged object at the key)
    try {
      await t.run(4 * GRACE_MS);
      expect(await t.store.head(t.orphan), 'kept: what the damaged recovery point names is unknown').to.not.equal(undefined);
      const held = t.warnings().filter((l) => /latest manifest is damaged/.test(l.msg));
      expect(held.length, 'one warning per pass').to.be.greaterThan(1);
      expect(held[0]!.manifest).to.equal(t.damagedKey);
      expect(held[0]!.err).to.include('is damaged');
      // Before: no pass asked for anything (the warning was "SST garbage collection failed"), so an
      // idle region kept the damaged recovery point, and its garbage, for good.
      expect(t.freezes(), 'a flush asked for (its freeze proposed; nothing commits in this fake)').to.be.greaterThan(0);
      // The flush commits: applied and flushed at 12, every replica's snapshot at 12. The leader
      // writes the manifest at 12, which is the latest from then on.
      for (const i of [11, 12]) t.leader.entries.set(i, { index: i, term: 2, type: EntryType.Normal, data: new Uint8Array(0) });
      t.leader.appliedIndex = 12;
      t.leader.state.flushedIndex = 12;
      t.leader.snapshotIndex = 12;
      for (const peer of [2, 3]) await t.store.put(replicaSnapshotKey(REGION, peer, 12), encodeManifest(manifestOf(12, [])));
      await t.run(GRACE_MS / 2);
      expect(await loadLatestManifest(t.store, REGION), 'the new manifest is the latest').to.include({ key: manifestKey(REGION, 12) });
      const asked = t.freezes();
      await t.run(2 * GRACE_MS);
      expect(t.freezes(), 'no flush asked for once the flushed index is past the damaged key').to.equal(asked);
      expect(await t.store.head(t.orphan), 'collected: the usual rule again').to.equal(undefined);
    } finally {
      await t.cleanup();
    }
  });

  it('a damaged key above the applied index (another history, a stray object) asks for no flush, which could never supersede it: GC holds and the warning asks for an operator', async () => {
    const t = await setup(500);
    try {
      await t.run(4 * GRACE_MS);
      expect(await t.store.head(t.orphan), 'kept').to.not.equal(undefined);
      expect(t.freezes(), 'no flush: bounded, not one per pass').to.equal(0);
      const held = t.warnings().filter((l) => /latest manifest is damaged/.test(l.msg));
      expect(held.length).to.be.greaterThan(1);
      expect(held[0]!.msg).to.match(/until an operator replaces or removes it/);
      expect(held[0]!.manifest).to.equal(t.damagedKey);
    } finally {
      await t.cleanup();
    }
  });
});

describe('flusher: SSTs a restore copies into a live region (docs/engine.md, "Restore copies and a live leader\'s GC")', () => {
  it('while the restore marker is in the SST folder no pass deletes anything or starts a grace; once it goes, the usual rule applies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-restore-'));
    const clock = new ManualClock(1_000_000);
    const store = new FsObjectStore(dir);
    const server = new FakeRegionServer();
    const leader = new FakeReplica(2, 10);
    leader.snapshotIndex = 10;
    leader.state.flushedIndex = 10;
    server.replicas.push(leader);
    for (const peer of [2, 3]) await store.put(replicaSnapshotKey(REGION, peer, 10), encodeManifest(manifestOf(10, [])));
    await store.put(manifestKey(REGION, 10), encodeManifest(manifestOf(10, [])));
    const copy = sstKeyAt(500, 1_700_000_000_000, 'rstr');
    await store.put(restoreMarkerKey(REGION), new Uint8Array([1]));
    await store.put(copy, new Uint8Array([1]));
    const flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, settings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    const work = (flusher as unknown as { work: Map<string, { unreferenced: ReadonlyMap<string, unknown> }> }).work;
    const run = async (ms: number) => {
      for (let t = 0; t < ms; t += settings.checkIntervalMs) {
        clock.advance(settings.checkIntervalMs);
        flusher.check();
        await flusher.settled();
      }
    };
    try {
      await run(4 * GRACE_MS);
      expect(await store.head(copy), 'the copy is kept while the marker is there').to.not.equal(undefined);
      expect(work.get(REGION)?.unreferenced.size, 'no grace started').to.equal(0);
      // The restore failed and deleted its marker (had it put its manifest, that would name the copy).
      await store.delete(restoreMarkerKey(REGION));
      await run(GRACE_MS - settings.checkIntervalMs);
      expect(await store.head(copy), 'a whole grace from the first pass without the marker').to.not.equal(undefined);
      await run(2 * GRACE_MS);
      expect(await store.head(copy), 'then collected as any orphan').to.equal(undefined);
    } finally {
      flusher.stop();
      await flusher.settled();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a marker older than the grace (a killed restore) is named in a warning with its backup, table and age; a young one only at info', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-restore-old-'));
    const clock = new ManualClock(1_000_000);
    const store = new FsObjectStore(dir);
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const server = new FakeRegionServer();
    const leader = new FakeReplica(2, 10);
    leader.snapshotIndex = 10;
    leader.state.flushedIndex = 10;
    server.replicas.push(leader);
    await store.put(manifestKey(REGION, 10), encodeManifest(manifestOf(10, [])));
    const marker = (startedAtMs: number) => new TextEncoder().encode(`${JSON.stringify({ backupId: 'b-7', table: 't', startedAtMs })}\n`);
    await store.put(restoreMarkerKey(REGION), marker(Date.now()));
    const flusher = new Flusher(server as unknown as RegionServer<RegionState>, store, settings, log, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
    const held = () => lines.map((l) => JSON.parse(l) as { level: number; msg: string; backupId?: string; table?: string; markerAgeMs?: number }).filter((l) => l.backupId !== undefined);
    const run = async (ms: number) => {
      for (let t = 0; t < ms; t += settings.checkIntervalMs) {
        clock.advance(settings.checkIntervalMs);
        flusher.check();
        await flusher.settled();
      }
    };
    try {
      await run(GRACE_MS);
      expect(held().length, 'each held pass says which restore holds it').to.be.greaterThan(0);
      expect(held().every((l) => l.level === 30 && l.backupId === 'b-7' && l.table === 't'), 'info while the marker is young').to.equal(true);
      lines.length = 0;
      await store.put(restoreMarkerKey(REGION), marker(Date.now() - 3_600_000)); // put an hour ago: the restore was killed
      await run(GRACE_MS);
      const warned = held().filter((l) => l.level === 40);
      expect(warned.length, 'warned').to.be.greaterThan(0);
      expect(warned[0]!.markerAgeMs).to.be.at.least(3_600_000);
      expect(warned[0]!.msg).to.match(/held by a restore marker put 60 min ago: if that restore is no longer running, run the same br restore again/);
    } finally {
      flusher.stop();
      await flusher.settled();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
