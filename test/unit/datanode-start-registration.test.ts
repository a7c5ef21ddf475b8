// A datanode reopens the replicas in its log only once the metasrv has answered this start's
// registration (docs/failover.md, "A data dir restored from a copy"): a data dir put back from a
// copy is refused there (CORRUPTION), and none of its replicas — their votes and logs rolled back
// to the copy — may answer raft before that answer. Real DatanodeCore and RegionServer over the
// in-memory log engine; the metasrv is a caller the test answers by hand.
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { type StartId, type StartRecord, confirmedStart } from '../../src/common/store-id.js';
import { DatanodeCore, type MetasrvCaller } from '../../src/datanode/datanode-core.js';
import type { RegionMeta } from '../../src/datanode/types.js';
import { makeRegionId } from '../../src/metasrv/catalog.js';
import type { Counter } from '../fixtures/counter-machine.js';
import { MemoryLogEngine, counterRegionServerDeps } from '../fixtures/memory-log-engine.js';
import { cpuSchema } from '../fixtures/schemas.js';

const NODE = 1;
const REGION = makeRegionId(2048, 0);
// The fifth start of the dir; the third was the last whose registration was answered.
const START: StartRecord = { count: 5, id: 'start-5', confirmed: { count: 3, id: 'start-3' }, unconfirmed: [{ count: 4, id: 'start-4' }, { count: 5, id: 'start-5' }] };

/** A metasrv whose answers the test gives: each call waits for `answer` or `refuse`. */
class HandMetasrv implements MetasrvCaller {
  readonly calls: { method: string; request: Record<string, unknown> }[] = [];
  private waiting: { ok: (v: unknown) => void; fail: (e: unknown) => void } | undefined;

  call<Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown): Promise<Res> {
    this.calls.push({ method, request: request as Record<string, unknown> });
    return new Promise<Res>((ok, fail) => {
      this.waiting = { ok: ok as (v: unknown) => void, fail };
    });
  }

  answer(value: unknown): void {
    const w = this.waiting!;
    this.waiting = undefined;
    w.ok(value);
  }

  refuse(err: unknown): void {
    const w = this.waiting!;
    this.waiting = undefined;
    w.fail(err);
  }
}

describe('datanode start: the log\'s replicas reopen only after this start is registered', function () {
  this.timeout(20_000);
  let engine: MemoryLogEngine;
  let core: DatanodeCore<Counter, number>;
  let metasrv: HandMetasrv;
  /** What the core made the dir's confirmed start, and whether a replica was open then. */
  let confirmed: { start: StartId; hostedThen: boolean }[];

  beforeEach(async () => {
    engine = new MemoryLogEngine();
    // A replica this node hosted before the restart: its meta, a log entry, a vote.
    const meta: RegionMeta = { regionId: REGION, schema: cpuSchema(), selfPeerId: 7, peers: [{ peerId: 7, nodeId: NODE, addr: '' }] };
    const batch = engine.batch();
    batch.setRegionMeta(REGION, new TextEncoder().encode(JSON.stringify(meta)));
    batch.append(REGION, [{ term: 3, index: 1, type: 0, data: new Uint8Array() }]);
    batch.setHardState(REGION, { term: 3, vote: 7, commit: 1 });
    await batch.commit();
    core = new DatanodeCore<Counter, number>({
      nodeId: NODE,
      clusterId: 'start-registration',
      storeId: 'store-1',
      start: START,
      confirmStart: (start) => {
        confirmed.push({ start, hostedThen: hosted() });
        return confirmedStart(start);
      },
      heartbeatIntervalMs: 60_000, // one beat per test step: the test calls heartbeatOnce itself
      logEngine: engine,
      clock: systemClock,
      log: silentLogger,
      ...counterRegionServerDeps(NODE, engine),
    });
    metasrv = new HandMetasrv();
    confirmed = [];
  });

  afterEach(async () => {
    core.halt();
    await core.regionServer.stop();
  });

  const hosted = () => core.regionServer.hostedReplica(REGION) !== undefined || core.regionServer.replica(REGION) !== undefined;
  const settle = () => new Promise((r) => setTimeout(r, 20));

  it('nothing is reopened while the registration is unanswered; the answer reopens the replica, and the registration carries this start', async () => {
    core.startHeartbeats(metasrv, { addr: 'n1', httpAddr: '' }, { reopenOnRegistration: true });
    await settle();
    expect(metasrv.calls.map((c) => c.method)).to.deep.equal(['RegisterNode']);
    expect(metasrv.calls[0]!.request).to.include({ start_count: '5', start_id: 'start-5', store_id: 'store-1', confirmed_start_count: '3' });
    expect(metasrv.calls[0]!.request['known_start_ids'], 'the starts the dir vouches for').to.deep.equal(['start-3', 'start-4', 'start-5']);
    expect(hosted(), 'a replica of the log answered raft before the metasrv answered the registration').to.equal(false);
    expect(core.awaitingRegistration).to.equal(true);
    metasrv.answer({ regions: [], metasrv_epoch: '0' });
    await settle();
    expect(hosted(), 'the replica reopened after the registration').to.equal(true);
    expect(core.regionServer.hostedReplica(REGION)?.selfPeerId).to.equal(7);
    expect(core.awaitingRegistration).to.equal(false);
    expect(confirmed, 'this start confirmed in the dir once, before anything was reopened').to.deep.equal([{ start: START, hostedThen: false }]);
    // The heartbeat that follows carries the start too.
    expect(metasrv.calls.at(-1)).to.deep.include({ method: 'Heartbeat' });
    expect(metasrv.calls.at(-1)!.request).to.include({ start_count: '5', start_id: 'start-5' });
    metasrv.answer({ instructions: [], metasrv_epoch: '0' });
  });

  it('a registration refused as a restored copy reopens nothing and says why; a later accepted one reopens', async () => {
    core.startHeartbeats(metasrv, { addr: 'n1', httpAddr: '' }, { reopenOnRegistration: true });
    await settle();
    metasrv.refuse(new RegionDbError(ErrorCode.Corruption, "node 1's data dir (store store-1) is a restored copy of an earlier state"));
    await settle();
    expect(hosted(), 'a replica of a refused data dir reopened').to.equal(false);
    expect(core.startRefusal).to.match(/restored copy/);
    expect(core.registered).to.equal(false);
    expect(confirmed, 'a refused start is not confirmed').to.deep.equal([]);
    // An operator fixed the metasrv's record instead: the next beat registers and reopens.
    void core.heartbeatOnce();
    await settle();
    expect(metasrv.calls.map((c) => c.method)).to.deep.equal(['RegisterNode', 'RegisterNode']);
    metasrv.answer({ regions: [], metasrv_epoch: '0' });
    await settle();
    expect(hosted()).to.equal(true);
    expect(core.startRefusal).to.equal(undefined);
    metasrv.answer({ instructions: [], metasrv_epoch: '0' });
  });

  it('a transient failure (the metasrv unreachable) reopens nothing either, and is not a refusal', async () => {
    core.startHeartbeats(metasrv, { addr: 'n1', httpAddr: '' }, { reopenOnRegistration: true });
    await settle();
    metasrv.refuse(new RegionDbError(ErrorCode.Unavailable, 'no metasrv reachable'));
    await settle();
    expect(hosted()).to.equal(false);
    expect(core.startRefusal).to.equal(undefined);
  });

  it('a registration refused for another reason for good (another cluster) is reported as a refusal too, and reopens nothing', async () => {
    core.startHeartbeats(metasrv, { addr: 'n1', httpAddr: '' }, { reopenOnRegistration: true });
    await settle();
    metasrv.refuse(new RegionDbError(ErrorCode.InvalidArgument, 'cluster id "other" does not match this cluster'));
    await settle();
    expect(hosted()).to.equal(false);
    expect(core.startRefusal).to.equal('INVALID_ARGUMENT: cluster id "other" does not match this cluster');
  });
});
