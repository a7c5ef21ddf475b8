// The client library's retry loop while a region's leader has just died (issue 19 item 4,
// docs/performance.md "Failover at 1,000 regions: the client's part"): what a retry waits for.
//
// Real gRPC on loopback: a fake metasrv whose routes name a dead node (a port nobody listens on)
// as the region's leader and a live node as its other replica — as the metasrv does after a kill
// until the survivors' heartbeats report the new leader — and that can hold route lookups after
// the first (a metasrv busy with the failover); the live node answers every write.
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { type ClientTraceEvent, RegionDbClient } from '../../src/client/client.js';
import { freePort } from '../../src/cmd/process-cluster.js';
import { FAKE_TABLE as TABLE, closedAfterEach, startFakeDatanode, startFakeMetasrv } from '../support/grpc-fakes.js';

const REGION = String(1n << 32n);

interface Fake {
  /** GetRoutes calls received. */
  lookups: number;
  /** Writes the live node answered. */
  writes: number;
  /** Route lookups after the first wait until this resolves. */
  release: () => void;
}

/** The fake metasrv and the live node; `dead` is an address nothing listens on. */
async function start(servers: grpc.Server[]): Promise<{ fake: Fake; meta: string }> {
  const dead = `127.0.0.1:${await freePort()}`;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const fake: Fake = { lookups: 0, writes: 0, release };
  const liveAddr = await startFakeDatanode(servers, () => {
    fake.writes++;
    return undefined;
  });
  const routes = [{ regionId: REGION, peers: [{ nodeId: '1', addr: dead }, { nodeId: '2', addr: liveAddr }], leaderNodeId: '1' }];
  const meta = await startFakeMetasrv(servers, routes, (n, answer) => {
    fake.lookups = n;
    if (n === 1) answer();
    else void held.then(answer);
  });
  return { fake, meta };
}

describe('client: retries while a leader has just died', function () {
  this.timeout(30_000);
  const { servers, clients } = closedAfterEach();

  it('a retry does not wait for the route lookup it starts: the write reaches the live replica while the metasrv has not answered', async () => {
    const { fake, meta } = await start(servers);
    const events: ClientTraceEvent[] = [];
    // A long attempt timeout: a lookup the retry waited for would be waited for until released
    // (with 1 s, as the bench's client has, the wait is that second: the lookup times out).
    const client = new RegionDbClient({ metasrv: meta, attemptTimeoutMs: 10_000, deadlineMs: 20_000, trace: (e) => events.push(e) });
    clients.push(client);
    await client.describe(TABLE); // routes cached, naming the dead node as the leader
    expect(fake.lookups).to.equal(1);
    const write = client.write(TABLE, [{ host: 'a', ts: 1 }]).then(() => 'acknowledged' as const);
    // The metasrv holds every later lookup until released; the write must not wait for one.
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([write, new Promise<'held'>((resolve) => (timer = setTimeout(() => resolve('held'), 3000)))]);
    clearTimeout(timer);
    fake.release();
    const attempts = events.flatMap((e) => (e.kind === 'attempt' ? [e.code ?? 'OK'] : []));
    expect(outcome, `attempts: ${attempts.join(', ')}; lookups ${fake.lookups}`).to.equal('acknowledged');
    expect(fake.writes, 'the live replica answered the write').to.equal(1);
    expect(attempts[0], 'the first attempt went to the dead leader and was refused').to.equal('UNAVAILABLE');
    expect(fake.lookups, 'the failed attempt asked for newer routes, once (one lookup in flight at a time)').to.equal(2);
    await write;
  });
});
