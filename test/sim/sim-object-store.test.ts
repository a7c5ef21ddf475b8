// The simulated object store (sim-object-store.ts) does what docs/simulation.md says: a request
// takes effect after a seeded delay and is answered after another; reads and listings see every
// write that took effect before them; an outage fails every request; a failed write may still
// take effect; a crashed sender never gets its answer, but its request still takes effect; bad
// keys are refused at once, as the production stores refuse them.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { SimObjectStore } from './sim-object-store.js';
import { Incarnation, SimScheduler } from './sim-world.js';

const bytes = (s: string) => new TextEncoder().encode(s);

async function settle<T>(sched: SimScheduler, p: Promise<T>, untilMs: number): Promise<{ value?: T; err?: unknown; done: boolean }> {
  const out: { value?: T; err?: unknown; done: boolean } = { done: false };
  p.then(
    (value) => Object.assign(out, { value, done: true }),
    (err: unknown) => Object.assign(out, { err, done: true }),
  );
  await sched.runUntil(untilMs);
  return out;
}

describe('whole-datanode simulator object store', () => {
  it('a put takes effect after one delay and is answered after another; a later get and list see it', async () => {
    const sched = new SimScheduler();
    const store = new SimObjectStore(sched, new SeededRand(1), { latencyMsMin: 5, latencyMsMax: 5, failChance: 0 });
    const view = store.viewFor(new Incarnation(1, 1));
    const put = settle(sched, view.put('regions/r/sst/a.sst', bytes('hello')), 4);
    expect((await put).done).to.equal(false);
    expect(store.has('regions/r/sst/a.sst'), 'not there before the request arrives').to.equal(false);
    await sched.runUntil(5);
    expect(store.has('regions/r/sst/a.sst'), 'there once it arrived, before the answer').to.equal(true);
    await sched.runUntil(10);
    expect((await put).done).to.equal(true);
    const listed = await settle(sched, view.list('regions/r/'), 20);
    expect(listed.value).to.deep.equal([{ key: 'regions/r/sst/a.sst', size: 5 }]);
    const range = await settle(sched, view.getRange('regions/r/sst/a.sst', 1, 3), 30);
    expect(new TextDecoder().decode(range.value as Uint8Array)).to.equal('ell');
    const missing = await settle(sched, view.get('regions/r/sst/b.sst'), 40);
    expect(isRegionDbError(missing.err, ErrorCode.NotFound)).to.equal(true);
    const outside = await settle(sched, view.getRange('regions/r/sst/a.sst', 3, 10), 50);
    expect(isRegionDbError(outside.err, ErrorCode.InvalidArgument)).to.equal(true);
  });

  it('listPrefixes names the folders one segment down, as one request drawing what a list draws (a caller moving to it keeps its trace)', async () => {
    const answers: { what: string; atMs: number; value: unknown }[] = [];
    for (const what of ['list', 'listPrefixes'] as const) {
      const sched = new SimScheduler();
      const store = new SimObjectStore(sched, new SeededRand(9), { latencyMsMin: 1, latencyMsMax: 40, failChance: 0.3 });
      const view = store.viewFor(new Incarnation(1, 1));
      for (const key of ['regions/2/sst/a', 'regions/1/manifest/m', 'regions/1/sst/b', 'regions/x', 'promotion/p/1']) await settle(sched, view.put(key, bytes('v')), sched.now + 100);
      let answeredAtMs = -1;
      const listing = (what === 'list' ? view.list('regions/') : view.listPrefixes('regions/')) as Promise<unknown>;
      const answered = () => {
        answeredAtMs = sched.now;
      };
      listing.then(answered, answered);
      const out = await settle(sched, listing, sched.now + 100);
      const listed = what === 'list' ? (out.value as { key: string }[] | undefined)?.map((o) => o.key) : out.value;
      answers.push({ what, atMs: answeredAtMs, value: out.err === undefined ? listed : String(out.err) });
    }
    // The same seed: the same puts failed (or took effect anyway) in both runs.
    const keys = answers[0]!.value as string[];
    const folders = [...new Set(keys.filter((k) => k.indexOf('/', 8) >= 0).map((k) => k.slice(0, k.indexOf('/', 8) + 1)))];
    expect(folders.length, `keys listed: ${keys.join(' ')}`).to.be.above(0);
    expect(answers[1]!.value).to.deep.equal(folders);
    expect(answers[0]!.atMs, 'answered').to.be.above(0);
    expect(answers[1]!.atMs, 'answered at the same virtual time').to.equal(answers[0]!.atMs);
  });

  it('a crashed sender never gets its answer, but its delete still takes effect (and is reported)', async () => {
    const sched = new SimScheduler();
    const store = new SimObjectStore(sched, new SeededRand(2), { latencyMsMin: 3, latencyMsMax: 3, failChance: 0 });
    const life = new Incarnation(1, 1);
    const view = store.viewFor(life);
    await settle(sched, view.put('k/a', bytes('x')), 10);
    const deleted: string[] = [];
    store.onDelete = (key) => deleted.push(key);
    const del = settle(sched, view.delete('k/a'), 1 + sched.now);
    life.dead = true;
    const out = await del;
    await sched.runUntil(100);
    expect(out.done).to.equal(false);
    expect(store.has('k/a')).to.equal(false);
    expect(deleted).to.deep.equal(['k/a']);
  });

  it('an outage fails every request with STORAGE_UNAVAILABLE; after it, requests succeed', async () => {
    const sched = new SimScheduler();
    const store = new SimObjectStore(sched, new SeededRand(3), { latencyMsMin: 1, latencyMsMax: 4, failChance: 0 });
    const view = store.viewFor(new Incarnation(1, 1));
    store.outageUntil = 50;
    for (let i = 0; i < 4; i++) {
      const r = await settle(sched, view.head(`k/${i}`), sched.now + 10);
      expect(isRegionDbError(r.err, ErrorCode.StorageUnavailable), `request ${i}`).to.equal(true);
    }
    await sched.runUntil(60);
    const r = await settle(sched, view.put('k/after', bytes('y')), sched.now + 10);
    expect(r.done && r.err === undefined).to.equal(true);
  });

  it('a failed write took effect some of the time (the answer was lost); the same seed fails the same requests', async () => {
    const run = async (seed: number) => {
      const sched = new SimScheduler();
      const store = new SimObjectStore(sched, new SeededRand(seed), { latencyMsMin: 1, latencyMsMax: 9, failChance: 0.5 });
      const view = store.viewFor(new Incarnation(1, 1));
      const trace: string[] = [];
      for (let i = 0; i < 40; i++) {
        const r = await settle(sched, view.put(`k/${i}`, bytes('z')), sched.now + 20);
        trace.push(`${i}:${r.err ? 'failed' : 'ok'}:${store.has(`k/${i}`) ? 'stored' : 'absent'}@${sched.now}`);
      }
      return trace;
    };
    const a = await run(4);
    expect(a.some((t) => t.includes('failed:stored')), 'a failed put that took effect').to.equal(true);
    expect(a.some((t) => t.includes('failed:absent')), 'a failed put that did not').to.equal(true);
    expect(a.some((t) => t.includes('ok:stored'))).to.equal(true);
    expect(await run(4)).to.deep.equal(a);
    expect(await run(5)).to.not.deep.equal(a);
  });

  it('refuses bad keys and bad settings at once, with the reason', () => {
    const sched = new SimScheduler();
    const store = new SimObjectStore(sched, new SeededRand(1), { latencyMsMin: 1, latencyMsMax: 2, failChance: 0 });
    const view = store.viewFor(new Incarnation(1, 1));
    expect(() => view.put('/abs', bytes('x'))).to.throw(/must not start with '\/'/);
    expect(() => view.get('a/../b')).to.throw(/'\.\.' segments/);
    expect(() => new SimObjectStore(sched, new SeededRand(1), { latencyMsMin: 5, latencyMsMax: 1, failChance: 0 })).to.throw(/0 <= min <= max/);
    expect(() => new SimObjectStore(sched, new SeededRand(1), { latencyMsMin: 1, latencyMsMax: 2, failChance: 1 })).to.throw(/failChance/);
  });
});
