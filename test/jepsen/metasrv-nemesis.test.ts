// The metasrv-group nemeses (issue 16), without a cluster: the links to the members cut exactly
// what an isolation must cut, and each nemesis hits the acting member, lets the group fail over,
// records what it saw, and heals everything. A nemesis is trusted only once it is seen acting on
// its target (docs/style.md S9); the runs against real processes are
// `make jepsen NEMESIS=metasrv-kill-leader,metasrv-partition,kill`.
import { expect } from 'chai';
import { type Server, createConnection, createServer } from 'node:net';
import { SeededRand } from '../../src/common/rand.js';
import type { ClusterHandle } from '../support/netns-cluster.js';
import { type FaultRecord, type MetasrvGroupTarget, Nemesis } from './nemesis.js';
import { MetasrvLinks, type Network } from './network.js';

/** Resolves true if a TCP connection to `addr` is accepted and stays open for a moment (a cut proxy accepts, then resets). */
async function reachable(addr: string): Promise<boolean> {
  const [host, port] = addr.split(':');
  return new Promise((ok) => {
    const s = createConnection({ host: host!, port: Number(port) });
    s.once('connect', () => s.write('ping'));
    s.once('data', () => {
      s.destroy();
      ok(true);
    });
    s.once('error', () => ok(false));
    s.once('close', () => ok(false));
    setTimeout(() => {
      s.destroy();
      ok(false);
    }, 1000);
  });
}

describe('jepsen: metasrv links (proxies in front of every member)', () => {
  const servers: Server[] = [];
  let links: MetasrvLinks;

  before(async () => {
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      const server = createServer((s) => s.on('data', (b) => s.write(b)));
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
      servers.push(server);
      ports.push((server.address() as { port: number }).port);
    }
    links = await MetasrvLinks.start(ports);
  });

  after(async () => {
    await links.stop();
    for (const s of servers) await new Promise<void>((ok) => s.close(() => ok()));
  });

  it('isolate(m) cuts every member link to and from m and the callers\' link to m, and nothing else; healAll restores them', async () => {
    links.isolate(1);
    expect(links.cutLinks().sort()).to.deep.equal(['callers->metasrv2', 'metasrv1->metasrv2', 'metasrv2->metasrv1', 'metasrv2->metasrv3', 'metasrv3->metasrv2']);
    expect(await reachable(links.addrFor('callers', 1)), 'callers → the isolated member').to.equal(false);
    expect(await reachable(links.addrFor(0, 1)), 'member 1 → the isolated member').to.equal(false);
    expect(await reachable(links.addrFor(1, 2)), 'the isolated member → member 3').to.equal(false);
    expect(await reachable(links.addrFor('callers', 0)), 'callers → a member of the majority').to.equal(true);
    expect(await reachable(links.addrFor(0, 2)), 'inside the majority').to.equal(true);
    links.healAll();
    expect(links.cutLinks()).to.deep.equal([]);
    expect(await reachable(links.addrFor('callers', 1))).to.equal(true);
    expect(await reachable(links.addrFor(1, 2))).to.equal(true);
  });

  it('a member reaches itself directly: it has no link to itself', () => {
    expect(() => links.addrFor(1, 1)).to.throw(/no metasrv link/);
  });
});

/** A metasrv group and datanodes that only record what was done to them. */
function fakeCluster(acting: number) {
  const events: string[] = [];
  const running = [true, true, true];
  const datanodesRunning = [true, true, true];
  let currentActing: number | undefined = acting;
  const group: MetasrvGroupTarget['cluster'] = {
    metasrvs: [0, 1, 2].map((i) => ({ name: `metasrv${i + 1}` })) as unknown as MetasrvGroupTarget['cluster']['metasrvs'],
    actingMetasrv: async () => currentActing,
    killMetasrvMember: async (i) => {
      events.push(`kill metasrv${i + 1}`);
      running[i] = false;
      currentActing = (i + 1) % 3; // the group elects another member
    },
    startMetasrvMember: async (i) => {
      events.push(`start metasrv${i + 1}`);
      running[i] = true;
    },
    isMetasrvMemberRunning: (i) => running[i]!,
  };
  const cluster = {
    datanodes: [0, 1, 2].map(() => ({})),
    isRunning: (i: number) => datanodesRunning[i]!,
    status: async () => ({ replicas: [{ role: 'leader' }] }),
    stopDatanode: async (i: number, signal: string) => {
      events.push(`${signal} datanode${i + 1}`);
      datanodesRunning[i] = false;
    },
    startDatanode: async (i: number) => {
      events.push(`start datanode${i + 1}`);
      datanodesRunning[i] = true;
    },
    pauseDatanode: () => undefined,
    metasrv: { process: { exitCode: null, signalCode: null } },
    client: () => ({ createTable: async () => ({}), close: () => undefined }),
  } as unknown as ClusterHandle;
  const isolated: number[] = [];
  const links = {
    isolate: (m: number) => {
      events.push(`isolate metasrv${m + 1}`);
      isolated.push(m);
      currentActing = (m + 1) % 3;
    },
    healAll: () => void events.push('heal links'),
  };
  const network: Network = { mode: 'proxy', cut: () => undefined, slow: () => undefined, healAll: () => undefined };
  return { events, running, datanodesRunning, cluster, group: { cluster: group, links }, network };
}

async function runOne(fault: 'metasrv-kill-leader' | 'metasrv-partition', seed: number, withKill: boolean) {
  const fake = fakeCluster(2);
  const t0 = Date.now();
  const nemesis = new Nemesis(
    fake.cluster,
    fake.network,
    new SeededRand(seed),
    () => Date.now() - t0,
    { faults: withKill ? [fault, 'kill'] : [fault], gapMs: 10, durationMs: [50, 50], maxFaults: 1, coverEachFirst: true },
    () => undefined,
    undefined,
    undefined,
    fake.group,
  );
  // coverEachFirst shuffles the list: with 'kill' in it, the first fault may be a plain kill.
  await nemesis.run();
  return { ...fake, log: nemesis.log as FaultRecord[] };
}

describe('jepsen: metasrv-group nemeses', () => {
  it('metasrv-kill-leader: kill -9 of the acting member, the new acting member and the DDL time noted, the victim restarted', async () => {
    const r = await runOne('metasrv-kill-leader', 1, false);
    expect(r.log).to.have.length(1);
    expect(r.log[0]!.fault).to.equal('metasrv-kill-leader');
    expect(r.events.slice(0, 2)).to.deep.equal(['kill metasrv3', 'start metasrv3']);
    expect(r.log[0]!.targets[0]).to.equal('metasrv3 (acting)');
    expect(r.log[0]!.targets.at(-1)).to.match(/→ metasrv1 acting, DDL served after \d+ ms/);
    expect(r.log[0]!.ddlMs).to.be.a('number');
    expect(r.running).to.deep.equal([true, true, true]);
  });

  it('metasrv-partition: the acting member isolated, then the links healed', async () => {
    const r = await runOne('metasrv-partition', 1, false);
    expect(r.events[0]).to.equal('isolate metasrv3');
    expect(r.events).to.include('heal links');
    expect(r.log[0]!.targets[0]).to.equal('metasrv3 (acting) isolated');
  });

  it('combined with kill: some seeds kill -9 a datanode during the metasrv failover, and it is restarted at the heal', async () => {
    let combined: Awaited<ReturnType<typeof runOne>> | undefined;
    for (let seed = 1; seed < 40 && !combined; seed++) {
      const r = await runOne('metasrv-kill-leader', seed, true);
      if (r.log[0]!.fault === 'metasrv-kill-leader' && r.log[0]!.targets.some((t) => /killed during the failover/.test(t))) combined = r;
    }
    expect(combined, 'a seed below 40 that combines the faults').to.not.equal(undefined);
    const e = combined!.events;
    expect(e.indexOf('kill metasrv3')).to.be.below(e.findIndex((x) => /^SIGKILL datanode/.test(x)));
    expect(combined!.datanodesRunning).to.deep.equal([true, true, true]);
  });

  it('refuses to run without a metasrv group', async () => {
    const fake = fakeCluster(0);
    const nemesis = new Nemesis(fake.cluster, fake.network, new SeededRand(1), () => 0, { faults: ['metasrv-kill-leader'], gapMs: 0, durationMs: [1, 1], maxFaults: 1 }, () => undefined);
    let error: unknown;
    await nemesis.run().catch((err: unknown) => (error = err));
    expect(String(error)).to.match(/needs a metasrv group/);
  });
});
