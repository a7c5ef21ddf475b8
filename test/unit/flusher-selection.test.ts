// The flusher's selection of replicas (docs/performance.md, sixth pass) against a fake region
// server that HAS a change feed, always empty here: a check visits a replica only when it marked
// the region itself (a request, the end of work it started), when the region's due time (its
// next GC pass, its memtable's flush age) has come, or at every 40th check. The other flusher
// unit tests use fakes without a change feed, where every check visits every replica, so they
// cannot see a visit left out. Time is a ManualClock; checks are called by hand, 250 ms apart.
import { expect } from 'chai';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { Flusher, type FlusherSettings } from '../../src/datanode/flusher.js';
import { decodeCommand } from '../../src/engine/command.js';
import type { RegionState } from '../../src/engine/region-state.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import type { RegionServer } from '../../src/replication/region-server.js';

const CHECK_MS = 250;
// GC passes every gcGraceMs / 4 = 1,500 ms; a memtable flushes once 1,000 ms old; no size or SST-count trigger.
const settings: FlusherSettings = { flushBytes: 1 << 30, flushAgeMs: 1000, compactAtSsts: 100, gcGraceMs: 6000, checkIntervalMs: CHECK_MS, manifestsKept: 5 };
const TERM = 2;

/** What a visit reads of a replica; `visits` counts the visits (each reads the local snapshot first). */
class FakeReplica {
  readonly selfPeerId = 1;
  closed = false;
  visits = 0;
  readonly raft = {
    term: TERM,
    log: { committed: 5, lastIndex: () => 5, term: () => TERM, slice: () => [] },
    confState: () => ({ voters: [1, 2, 3], learners: [] }),
  };
  readonly appliedIndex = 5;
  readonly store = {
    snapshot: () => {
      this.visits++;
      return { metadata: { index: 0, term: 0, confState: { voters: [1, 2, 3], learners: [] } }, data: new Uint8Array(0) };
    },
  };
  readonly stateMachine;

  constructor(
    readonly regionId: string,
    readonly leader: boolean,
    state: { dirty?: boolean; ssts?: number } = {},
  ) {
    const sst = (n: number) => ({ key: `regions/${regionId}/sst/${n}.sst`, size: 10, entries: 1, maxVersion: n, minTimestampMs: 0, maxTimestampMs: 0 });
    this.stateMachine = {
      frozen: [],
      memtable: { count: state.dirty ? 1 : 0, sizeBytes: state.dirty ? 10 : 0 },
      flushedIndex: 0,
      ssts: Array.from({ length: state.ssts ?? 0 }, (_, i) => sst(i + 1)),
    } as unknown as RegionState;
  }

  isLeader(): boolean {
    return this.leader;
  }
}

function setup(replicas: FakeReplica[]) {
  const clock = new ManualClock(0);
  /** Proposals by region and kind; each stays pending until the test settles it (`fail`). */
  const proposed: string[] = [];
  const pending: (() => void)[] = [];
  const server = {
    allReplicas: () => replicas,
    replica: (regionId: string) => replicas.find((r) => r.regionId === regionId),
    propose: (regionId: string, data: Uint8Array) => {
      proposed.push(`${regionId} ${decodeCommand(data).kind}`);
      return new Promise((_, reject) => pending.push(() => reject(new RegionDbError(ErrorCode.Unavailable, 'not committed'))));
    },
    // A change feed that never names a replica: only the flusher's own marks and due times select.
    changeFeed: () => () => new Set(),
  } as unknown as RegionServer<RegionState>;
  /** Listings (a GC pass starts with one of the region's SSTs) and uploads (a compaction's output) by key. */
  const listed: string[] = [];
  const uploads: string[] = [];
  const store = {
    description: 'fake',
    list: async (prefix: string) => {
      listed.push(prefix);
      return [];
    },
    get: async (key: string) => {
      throw new RegionDbError(ErrorCode.NotFound, key);
    },
    put: async () => {},
    delete: async () => {},
    upload: (key: string) => {
      uploads.push(key);
      return {
        write: async () => {
          throw new Error('the fake store takes no bytes');
        },
        complete: async () => ({ size: 0 }),
        abort: async () => {},
      };
    },
  } as unknown as ObjectStore;
  const flusher = new Flusher(server, store, settings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
  let checks = 0;
  /** One check, CHECK_MS after the last (the first at 0); its work runs before this returns. */
  const check = async () => {
    if (checks > 0) clock.advance(CHECK_MS);
    checks++;
    flusher.check();
    for (let i = 0; i < 5; i++) await new Promise<void>((ok) => setImmediate(ok));
  };
  const fail = async () => {
    for (const reject of pending.splice(0)) reject();
    await flusher.settled();
  };
  return { clock, flusher, check, fail, proposed, listed, uploads, checks: () => checks };
}

describe('flusher: with a change feed, a check visits only marked and due replicas (and all at every 40th)', () => {
  it('a GC pass runs at the first check at or after its due time, and not before', async () => {
    const leader = new FakeReplica('11', true);
    const { check, listed, clock } = setup([leader]);
    const gcPasses = () => listed.filter((p) => p === 'regions/11/sst/').length;
    await check(); // the first check visits everything: a GC pass at 0
    expect(gcPasses()).to.equal(1);
    while (clock.nowMs() < 1250) await check();
    expect(gcPasses(), 'no pass before 1,500 ms').to.equal(1);
    await check(); // 1,500 ms
    expect(gcPasses(), 'the pass due at 1,500 ms').to.equal(2);
  });

  it('a memtable reaching its flush age is frozen at that check', async () => {
    const leader = new FakeReplica('12', true, { dirty: true });
    const { check, proposed, clock } = setup([leader]);
    await check(); // dirty from 0
    while (clock.nowMs() < 750) await check();
    expect(proposed).to.deep.equal([]);
    await check(); // 1,000 ms: the flush age
    expect(proposed).to.deep.equal(['12 freeze']);
  });

  it('request() and requestCompaction() take effect at the next check; the end of the work started brings the region back', async () => {
    const flushed = new FakeReplica('13', true, { dirty: true }); // young: no freeze by itself before 1,000 ms
    const compacted = new FakeReplica('14', true, { ssts: 2 }); // below compactAtSsts: only on request
    const { flusher, check, fail, proposed, uploads } = setup([flushed, compacted]);
    await check();
    await check();
    expect(proposed).to.deep.equal([]);
    expect(uploads).to.deep.equal([]);
    flusher.request('13');
    flusher.requestCompaction('14');
    await check(); // 500 ms
    expect(proposed).to.deep.equal(['13 freeze']);
    expect(uploads.filter((k) => k.startsWith('regions/14/sst/'))).to.have.length(1);
    // The freeze is not committed: its end marks the region, and the next check (750 ms, no due
    // time yet) proposes it again, since the explicit request still stands.
    await fail();
    const visits = flushed.visits;
    await check();
    expect(flushed.visits, 'visited at the check after its work ended').to.equal(visits + 1);
    expect(proposed).to.deep.equal(['13 freeze', '13 freeze']);
  });

  it('what a check selects it visits in the region server\'s order, not in the order of the marks or due times', async () => {
    // Dirty leaders, young: nothing of their own until the flush age (1,000 ms) or a request.
    const replicas = ['31', '32', '33', '34'].map((id) => new FakeReplica(id, true, { dirty: true }));
    const { flusher, check, proposed } = setup(replicas);
    await check(); // 0: every replica (the first check); GC passes due at 1,500
    flusher.request('34');
    flusher.request('32');
    flusher.request('31');
    await check(); // 250
    expect(proposed).to.deep.equal(['31 freeze', '32 freeze', '34 freeze']);
    // A replica opened later (a new one at the end of the order) and one marked earlier in it.
    const late = new FakeReplica('30', true, { dirty: true });
    replicas.push(late);
    flusher.request('30');
    flusher.request('33');
    await check(); // 500
    expect(proposed.slice(3)).to.deep.equal(['33 freeze', '30 freeze']);
  });

  it('a replica with nothing marked or due is visited only at every 40th check', async () => {
    const follower = new FakeReplica('15', false);
    const { check, checks } = setup([follower]);
    const visitedAt: number[] = [];
    for (let i = 0; i < 100; i++) {
      const before = follower.visits;
      await check();
      if (follower.visits > before) visitedAt.push(checks());
    }
    expect(visitedAt).to.deep.equal([1, 41, 81]);
  });
});
