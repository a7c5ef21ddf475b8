// Manifests are written once (docs/engine.md, "Manifests"): a new leader finds the manifest of its
// flushed index already in the object store — its predecessor wrote it — and adopts it instead
// of putting it again; a different manifest (another recovery point) or a damaged object at that
// key is refused loudly and never overwritten. Before this, every new leader put the manifest
// of its flushed index again, differing only in `writtenAtMs` (or in an SST list a compaction
// had changed since), so the first two tests failed: two puts to the key, different bytes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ManualClock } from '../../src/common/clock.js';
import type { Logger } from '../../src/common/logger.js';
import { Flusher, type FlusherSettings } from '../../src/datanode/flusher.js';
import { decodeCommand, encodeCommand } from '../../src/engine/command.js';
import { type RegionManifest, decodeManifest, encodeManifest, manifestDivergence, manifestKey } from '../../src/engine/manifest.js';
import type { RegionState } from '../../src/engine/region-state.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import type { RegionServer } from '../../src/replication/region-server.js';
import { REGION, regionWithFlushedSsts } from '../fixtures/one-region-table.js';

// No flush or compaction is due (huge thresholds); GC never runs (the fake leader has not applied an entry of its term: G1).
const settings: FlusherSettings = { flushBytes: 1 << 30, flushAgeMs: 3_600_000, compactAtSsts: 100, gcGraceMs: 2000, checkIntervalMs: 250, manifestsKept: 5 };
const sstKey = (freezeIndex: number, n: number) => `regions/${REGION}/sst/${freezeIndex.toString(16).padStart(16, '0')}-0-${n}.sst`;
/** Rows of the one-region table: [host, ts, v]. */
const rowsOf = (n: number) => [[`h${n}`, 1000 + n, n]];

/** Kinds of the commands the flushers proposed (the fake region server commits nothing). */
let proposed: string[] = [];

/** One replica of the region on one node, leading it: what the flusher reads of it for flushes and manifests. */
function leaderServer(state: RegionState) {
  const replica = {
    regionId: REGION,
    selfPeerId: 1,
    closed: false,
    isLeader: () => true,
    stateMachine: state,
    appliedIndex: state.appliedIndex,
    raft: { term: 2, log: { term: () => 1, lastIndex: () => state.appliedIndex } },
    store: { snapshot: () => ({ metadata: { index: 0, term: 0 }, data: new Uint8Array(0) }) },
  };
  const propose = async (_regionId: string, command: Uint8Array) => {
    proposed.push(decodeCommand(command).kind);
  };
  return { allReplicas: () => [replica], replica: () => replica, propose } as unknown as RegionServer<RegionState>;
}

describe('flusher: a region manifest is written once; a new leader adopts the one at its flushed index', () => {
  let dir: string;
  let store: FsObjectStore;
  const realDateNow = Date.now;
  /** Puts to each key, by any flusher. */
  let puts: Map<string, number>;
  let refused: string[];
  let errors: { why: string; msg: string }[];
  const flushers: Flusher[] = [];

  /** A flusher of its own (a node of its own: it has written nothing yet) leading `state`. */
  const newLeader = (state: RegionState) => {
    const quiet = () => {};
    const log = { info: quiet, warn: quiet, debug: quiet, error: (obj: { why: string }, msg: string) => errors.push({ why: obj.why, msg }) } as unknown as Logger;
    const f = new Flusher(leaderServer(state), store, settings, log, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: (r) => refused.push(r) }, new ManualClock(0));
    flushers.push(f);
    return f;
  };
  const pass = async (f: Flusher) => {
    f.check();
    await f.settled();
  };
  const bytesAt = async (key: string) => Buffer.from(await store.get(key)).toString('hex');

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-manifest-'));
    store = new FsObjectStore(dir);
    puts = new Map();
    refused = [];
    errors = [];
    proposed = [];
    const put = store.put.bind(store);
    store.put = async (key, data) => {
      puts.set(key, (puts.get(key) ?? 0) + 1);
      return put(key, data);
    };
  });

  afterEach(() => {
    for (const f of flushers.splice(0)) f.stop();
    Date.now = realDateNow;
    rmSync(dir, { recursive: true, force: true });
  });

  it('the next leader puts nothing at the flushed index its predecessor wrote, and takes that manifest as its recovery point', async () => {
    Date.now = () => 1_000;
    const first = newLeader(regionWithFlushedSsts([rowsOf(1)], sstKey)); // write, freeze at 2, flush-edit
    await pass(first);
    const key = manifestKey(REGION, 2);
    expect(puts.get(key)).to.equal(1);
    const before = await bytesAt(key);

    // Leadership moves to another node whose replica applied the same log; its clock reads later.
    Date.now = () => 9_000;
    const state = regionWithFlushedSsts([rowsOf(1)], sstKey);
    const second = newLeader(state);
    await pass(second);
    expect(puts.get(key), 'puts to the manifest key').to.equal(1);
    expect(await bytesAt(key)).to.equal(before);
    expect(decodeManifest(await store.get(key), key).writtenAtMs).to.equal(1_000);
    expect(second.manifestIndex(REGION), 'the adopted manifest is the new leader recovery point').to.equal(2);
    expect(refused).to.deep.equal([]);

    // Its own next flush is a new key, written as before.
    state.apply(4, encodeCommand({ kind: 'freeze' }));
    state.apply(5, encodeCommand({ kind: 'flush-edit', freezeIndex: 4, sst: null }));
    await pass(second);
    expect(puts.get(manifestKey(REGION, 4))).to.equal(1);
    expect(second.manifestIndex(REGION)).to.equal(4);
  });

  it('adopts the stored manifest when only its SST list differs, by a compaction applied after the flush, and keeps its bytes', async () => {
    Date.now = () => 1_000;
    await pass(newLeader(regionWithFlushedSsts([rowsOf(1), rowsOf(2)], sstKey))); // flushes at 2 and 5
    const key = manifestKey(REGION, 5);
    const before = await bytesAt(key);

    // The new leader applied a compaction-edit after the flush: same flushed index, one SST for two.
    Date.now = () => 9_000;
    const state = regionWithFlushedSsts([rowsOf(1), rowsOf(2)], sstKey);
    const merged = { ...state.ssts[0]!, key: `regions/${REGION}/sst/0000000000000005-0-merged.sst`, entries: 2 };
    state.apply(7, encodeCommand({ kind: 'compaction-edit', inputs: state.ssts.map((s) => s.key), output: merged }));
    expect(state.flushedIndex).to.equal(5);
    expect(state.ssts.map((s) => s.key)).to.deep.equal([merged.key]);
    const second = newLeader(state);
    await pass(second);
    expect(puts.get(key)).to.equal(1);
    expect(await bytesAt(key)).to.equal(before);
    expect(decodeManifest(await store.get(key), key).ssts.map((s) => s.key)).to.deep.equal([sstKey(5, 1), sstKey(2, 0)]);
    expect(second.manifestIndex(REGION)).to.equal(5);
    expect(refused).to.deep.equal([]);
  });

  it('refuses, loudly and once, a manifest at its flushed index that is another recovery point, and never overwrites it', async () => {
    const ours = regionWithFlushedSsts([rowsOf(1)], sstKey);
    const key = manifestKey(REGION, 2);
    // Same index, another term: another history wrote this key (e.g. a forced recover while the old group lived).
    const theirs: RegionManifest = { ...ours.manifest(), flushedTerm: 7 };
    await store.put(key, encodeManifest(theirs));
    const before = await bytesAt(key);

    const leader = newLeader(ours);
    await pass(leader);
    await pass(leader); // not tried again: one error, one count
    expect(puts.get(key), 'only the test put it').to.equal(1);
    expect(await bytesAt(key)).to.equal(before);
    expect(leader.manifestIndex(REGION)).to.equal(0);
    expect(refused).to.deep.equal([REGION]);
    expect(errors).to.have.length(1);
    expect(errors[0]!.why).to.equal('flushedTerm is 7 there, 0 here');
    expect(errors[0]!.msg).to.match(/refusing to overwrite/);

    // An explicit flush of the idle region (`regiondb flush` waits for a manifest at the flushed
    // index) freezes even the empty memtable, so that a new flushed index gets a manifest.
    expect(proposed, 'nothing proposed before the request').to.deep.equal([]);
    leader.request(REGION);
    await pass(leader);
    expect(proposed, 'the request freezes although the memtable is empty').to.deep.equal(['freeze']);

    // A later flush is a new key: written.
    ours.apply(4, encodeCommand({ kind: 'freeze' }));
    ours.apply(5, encodeCommand({ kind: 'flush-edit', freezeIndex: 4, sst: null }));
    await pass(leader);
    expect(puts.get(manifestKey(REGION, 4))).to.equal(1);
    expect(leader.manifestIndex(REGION)).to.equal(4);
  });

  it('refuses a damaged object at the manifest key with the decoder error, and leaves it as it is', async () => {
    const key = manifestKey(REGION, 2);
    const damaged = encodeManifest(regionWithFlushedSsts([rowsOf(1)], sstKey).manifest());
    damaged[damaged.byteLength - 2]! ^= 0xff;
    await store.put(key, damaged);
    const leader = newLeader(regionWithFlushedSsts([rowsOf(1)], sstKey));
    await pass(leader);
    expect(puts.get(key)).to.equal(1);
    expect(Buffer.from(await store.get(key)).equals(Buffer.from(damaged))).to.equal(true);
    expect(refused).to.deep.equal([REGION]);
    expect(errors[0]!.why).to.match(/is damaged: crc32c mismatch/);
  });
});

describe('manifestDivergence: what may differ between two manifests at one flushed index', () => {
  const base = regionWithFlushedSsts([rowsOf(1), rowsOf(2)], sstKey).manifest();

  it('the writer clock, the SST list (a later compaction) and the order of the peer lists may differ', () => {
    expect(manifestDivergence(base, { ...base, writtenAtMs: base.writtenAtMs + 5 })).to.equal(undefined);
    expect(manifestDivergence(base, { ...base, ssts: base.ssts.slice(1) })).to.equal(undefined);
    const withPeers = { ...base, voters: [1, 2, 3], learners: [4, 5] };
    expect(manifestDivergence(withPeers, { ...withPeers, voters: [3, 1, 2], learners: [5, 4] })).to.equal(undefined);
    const reordered = { ...base, schema: Object.fromEntries(Object.entries(base.schema).reverse()) as unknown as typeof base.schema };
    expect(manifestDivergence(base, reordered)).to.equal(undefined);
  });

  it('the raft position, the dedup table, a standby record or the schema may not', () => {
    const cases: [Partial<RegionManifest>, RegExp][] = [
      [{ regionId: 'other' }, /^regionId/],
      [{ flushedIndex: base.flushedIndex + 1 }, /^flushedIndex/],
      [{ flushedTerm: base.flushedTerm + 1 }, /^flushedTerm/],
      [{ voters: [9] }, /^voters/],
      [{ learners: [9] }, /^learners/],
      [{ dedup: `${base.dedup} ` }, /dedup/],
      [{ standby: '{}' }, /standby/],
      [{ schema: { ...base.schema, name: 'u' } }, /schemas/],
    ];
    for (const [change, why] of cases) expect(manifestDivergence(base, { ...base, ...change }), JSON.stringify(change)).to.match(why);
  });
});
