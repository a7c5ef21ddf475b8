// Client dedup in the replicated state machine (Raft thesis §6.3; issue 14 item 7): a request id
// is trusted only together with the command it was first applied with, request id 0 means "not
// deduplicated", and a retry whose outcome the region no longer knows is refused, never applied
// again — identically on every replica, including one rebuilt from a manifest.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import { SeededRand } from '../../src/common/rand.js';
import { type ApplyResult, RegionState, type TableSchema, decodeCommand, encodeCommand } from '../../src/engine/index.js';
import { IdHeap } from '../../src/engine/id-heap.js';
import { decodeManifest, encodeManifest } from '../../src/engine/manifest.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v' });

const put = (clientId: string, requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId, requestId, rows: [[key, 1, v]] });
const del = (clientId: string, requestId: number, key: string) => encodeCommand({ kind: 'delete', clientId, requestId, keys: [[key, 1]] });
const freeze = () => encodeCommand({ kind: 'freeze' });
const flushEdit = (freezeIndex: number) => encodeCommand({ kind: 'flush-edit', freezeIndex, sst: null });

async function usageOf(s: RegionState, key: string): Promise<number | null> {
  const found = await s.get({ k: key, ts: 1 });
  return found ? (found.row['v'] as number) : null;
}

/** Runs `body` with the dedup bounds lowered (restored afterwards, whatever happens). */
async function withDedupBounds(clientsMax: number, requestsPerClientMax: number, body: () => Promise<void>): Promise<void> {
  const mutable = limits as { dedupClientsMax: number; dedupRequestsPerClientMax: number };
  const saved = { clients: limits.dedupClientsMax, requests: limits.dedupRequestsPerClientMax };
  mutable.dedupClientsMax = clientsMax;
  mutable.dedupRequestsPerClientMax = requestsPerClientMax;
  try {
    await body();
  } finally {
    mutable.dedupClientsMax = saved.clients;
    mutable.dedupRequestsPerClientMax = saved.requests;
  }
}

describe('engine: client dedup (issue 14 item 7)', () => {
  it('request id 0 is not deduplicated: three writes of one client all apply, the row holds the last', async () => {
    const s = new RegionState(schema);
    const results = [1, 2, 3].map((i) => s.apply(i, put('raw-client', 0, 'k', i * 1.5)));
    expect(results, 'each write applies at its own index').to.deep.equal([1, 2, 3].map((i) => ({ status: 'ok', version: i, rows: 1 })));
    expect(await usageOf(s, 'k')).to.equal(4.5);
  });

  it('a (client, request id) reused with a different command is refused and changes nothing; the same command is still a retry', async () => {
    const s = new RegionState(schema);
    const first = s.apply(1, put('c', 5, 'k', 1));
    expect(first).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, put('c', 5, 'k', 2)), 'another value under the same id').to.deep.equal({ status: 'request-id-reused' });
    expect(s.apply(3, put('c', 5, 'other', 1)), 'another key under the same id').to.deep.equal({ status: 'request-id-reused' });
    expect(s.apply(4, del('c', 5, 'k')), 'a delete under the id of a write').to.deep.equal({ status: 'request-id-reused' });
    expect(s.apply(5, put('c', 5, 'k', 1)), 'the same command: a retry, answered with the first result').to.deep.equal(first);
    expect(await usageOf(s, 'k')).to.equal(1);
    expect(await usageOf(s, 'other')).to.equal(null);
  });

  it('a retry from a client whose record was evicted is refused as request-too-old, never applied again', async () => {
    await withDedupBounds(2, 1024, async () => {
      const s = new RegionState(schema);
      s.apply(1, put('a', 1001, 'k', 1));
      s.apply(2, put('a', 1002, 'k', 2)); // a later write of a: a replay of 1001 would undo it
      s.apply(3, put('b', 2001, 'x', 1));
      s.apply(4, put('c', 3001, 'y', 1)); // third client: a (least recently applied) is evicted
      const retry = s.apply(5, put('a', 1001, 'k', 1));
      expect(retry).to.have.property('status', 'request-too-old');
      expect(await usageOf(s, 'k'), 'the retried write was not applied a second time').to.equal(2);
    });
  });

  it('bounds passed to the state (the simulator\'s seam) evict as the global limits do, on a rebuilt replica too, leaving the global limits alone', async () => {
    const bounds = { dedupClientsMax: 2, dedupRequestsPerClientMax: 2 };
    const s = new RegionState(schema, 'r1', undefined, undefined, bounds);
    s.apply(1, put('a', 1001, 'k', 1));
    s.apply(2, put('a', 1002, 'k', 2));
    s.apply(3, put('a', 1003, 'k', 3)); // a third id of a: 1001 leaves a's window
    expect(s.apply(4, put('a', 1001, 'k', 1)), 'below the client window').to.have.property('status', 'request-too-old');
    expect(await usageOf(s, 'k'), 'the refused retry changed nothing').to.equal(3);
    s.apply(5, put('b', 2001, 'x', 1));
    s.apply(6, put('c', 3001, 'y', 1)); // third client: a is evicted
    s.apply(7, freeze());
    s.apply(8, flushEdit(7));
    const rebuilt = RegionState.deserialize(schema, s.snapshotPoint()!.data, 'r1', undefined, undefined, bounds);
    for (const replica of [s, rebuilt]) {
      expect(replica.apply(9, put('a', 1003, 'k', 3)), 'a retry of the evicted client').to.have.property('status', 'request-too-old');
      expect(replica.apply(10, put('d', 4001, 'z', 1))).to.deep.equal({ status: 'ok', version: 10, rows: 1 });
    }
    const unbounded = new RegionState(schema);
    for (const [i, client] of ['a', 'b', 'c', 'd'].entries()) unbounded.apply(i + 1, put(client, 1, client, 1));
    expect(unbounded.apply(5, put('a', 1, 'a', 1)), 'the default limits remember all four clients').to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(limits.dedupClientsMax).to.equal(100_000);
  });

  it("after its record was evicted, a client's new requests apply and its old ids stay refused", async () => {
    await withDedupBounds(2, 1024, async () => {
      const s = new RegionState(schema);
      s.apply(1, put('a', 1001, 'k', 1));
      s.apply(2, put('b', 2001, 'x', 1));
      s.apply(3, put('c', 3001, 'y', 1)); // evicts a
      expect(s.apply(4, put('a', 4001, 'k', 4)), 'a new request of a, above the horizon').to.deep.equal({ status: 'ok', version: 4, rows: 1 });
      // a is known again, with a fresh record: its pre-eviction id must still be refused.
      expect(s.apply(5, put('a', 1001, 'k', 1))).to.have.property('status', 'request-too-old');
      expect(s.apply(6, put('d', 5001, 'z', 1)), 'a new client above the horizon').to.deep.equal({ status: 'ok', version: 6, rows: 1 });
      expect(await usageOf(s, 'k')).to.equal(4);
    });
  });

  it('the eviction horizon survives the manifest: a replica rebuilt from the snapshot refuses the same retry', async () => {
    await withDedupBounds(2, 1024, async () => {
      const s = new RegionState(schema, 'r1');
      s.apply(1, put('a', 1001, 'k', 1));
      s.apply(2, put('a', 1002, 'k', 2));
      s.apply(3, put('b', 2001, 'x', 1));
      s.apply(4, put('c', 3001, 'y', 1)); // evicts a
      s.apply(5, freeze());
      s.apply(6, flushEdit(5));
      const rebuilt = RegionState.deserialize(schema, s.snapshotPoint()!.data, 'r1');
      expect(rebuilt.appliedIndex).to.equal(5);
      for (const replica of [s, rebuilt]) {
        expect(replica.apply(7, put('a', 1001, 'k', 1))).to.have.property('status', 'request-too-old');
        expect(replica.apply(8, put('c', 3001, 'y', 1)), 'a retry of a remembered id').to.deep.equal({ status: 'ok', version: 4, rows: 1 });
        expect(replica.apply(9, put('c', 3001, 'y', 9)), 'a reuse of a remembered id').to.deep.equal({ status: 'request-id-reused' });
      }
    });
  });

  it('seeded: replicas (one rebuilt from a manifest midway) decide every command identically, and no (client, request id) is applied twice', async () => {
    const seed = 14_7;
    const rand = new SeededRand(seed);
    await withDedupBounds(3, 4, async () => {
      const a = new RegionState(schema, 'r1');
      let b = new RegionState(schema, 'r1');
      const clients = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'];
      /** What each client sent under each id: a retry resends exactly this. */
      const sent = new Map<string, Uint8Array>();
      const nextId = new Map(clients.map((c, i) => [c, 1000 + i]));
      /** (client, id) → the index it was applied at. */
      const applied = new Map<string, number>();
      let clock = 0; // ids grow with "time" across clients, as the client library's do
      let index = 0;
      const statuses = new Map<string, number>();
      for (let step = 0; step < 3000; step++) {
        const client = rand.pick(clients);
        clock += rand.range(0, 3);
        let requestId: number;
        let cmd: Uint8Array;
        const previous = [...sent.keys()].filter((k) => k.startsWith(`${client}/`));
        if (previous.length > 0 && rand.chance(0.3)) {
          const key = rand.pick(previous);
          requestId = Number(key.split('/')[1]);
          cmd = sent.get(key)!; // a retry
        } else if (previous.length > 0 && rand.chance(0.05)) {
          requestId = Number(rand.pick(previous).split('/')[1]);
          cmd = put(client, requestId, 'reused', step); // a buggy client: an old id for a new command
        } else {
          requestId = Math.max(nextId.get(client)! + 1, 1000 + clock);
          nextId.set(client, requestId);
          cmd = rand.chance(0.2) ? del(client, requestId, `k${rand.int(5)}`) : put(client, requestId, `k${rand.int(5)}`, step);
          sent.set(`${client}/${requestId}`, cmd);
        }
        index++;
        const ra = (await a.apply(index, cmd, 1)) as ApplyResult;
        const rb = (await b.apply(index, cmd, 1)) as ApplyResult;
        expect(rb, `seed ${seed} step ${step}: replicas disagree`).to.deep.equal(ra);
        statuses.set(ra.status, (statuses.get(ra.status) ?? 0) + 1);
        const key = `${client}/${requestId}`;
        if (ra.status === 'ok' && ra.version === index) {
          expect(applied.has(key), `seed ${seed} step ${step}: ${key} applied at ${applied.get(key)} and again at ${index}`).to.equal(false);
          applied.set(key, index);
        }
        if (step === 1500) {
          index++;
          await a.apply(index, freeze(), 1);
          await b.apply(index, freeze(), 1);
          index++;
          await a.apply(index, flushEdit(index - 1), 1);
          await b.apply(index, flushEdit(index - 1), 1);
          b = RegionState.deserialize(schema, b.snapshotPoint()!.data, 'r1');
          // The log above the flushed index replays onto the rebuilt replica, as after a restart.
          await b.apply(index, flushEdit(index - 1), 1);
        }
      }
      expect(applied.size, 'the run applied writes').to.be.greaterThan(100);
      for (const status of ['request-too-old', 'request-id-reused']) expect(statuses.get(status) ?? 0, `seed ${seed}: runs into ${status}`).to.be.greaterThan(0);
      expect(await usageOf(a, 'reused'), 'no reused id ever applied').to.equal(null);
      for (const k of ['k0', 'k1', 'k2', 'k3', 'k4']) expect(await usageOf(b, k), k).to.equal(await usageOf(a, k));
    });
  });

  it('a dedup table in the first encoding (no command hashes, no horizon) still loads: its ids are retries', () => {
    const v1Dedup = JSON.stringify([['old-client', 0, [[9, { status: 'ok', version: 3, rows: 1 }]]]]);
    const manifest = {
      formatVersion: 1,
      regionId: 'r1',
      schema,
      flushedIndex: 3,
      flushedTerm: 1,
      voters: [1],
      learners: [],
      ssts: [],
      dedup: v1Dedup,
      writtenAtMs: 0,
    };
    const s = RegionState.deserialize(schema, encodeManifest(manifest), 'r1');
    expect(s.apply(4, put('old-client', 9, 'k', 1)), 'a retry of an id recorded before hashes existed').to.deep.equal({ status: 'ok', version: 3, rows: 1 });
    expect(s.apply(5, put('old-client', 10, 'k', 2))).to.deep.equal({ status: 'ok', version: 5, rows: 1 });
  });

  it('a damaged dedup table is CORRUPTION naming the region, never a crash', () => {
    const manifestWith = (dedup: string) =>
      encodeManifest({ formatVersion: 1, regionId: 'r1', schema, flushedIndex: 3, flushedTerm: 1, voters: [1], learners: [], ssts: [], dedup, writtenAtMs: 0 });
    const damaged = [
      '{"version":3,"horizon":0,"clients":[]}',
      '{"version":2,"horizon":-1,"clients":[]}',
      '{"version":2,"horizon":0,"clients":[["c",1,[[5,7,{"status":"ok","version":3,"rows":1}]]]]}',
      '{"version":2,"horizon":0,"clients":[["c",1,[[5,"ab",{"status":"request-too-old","oldestKnown":1}]]]]}',
      '[["c",0,[[5,{"status":"ok"}]]]]',
      '"dedup"',
      '',
    ];
    for (const dedup of damaged) {
      try {
        RegionState.deserialize(schema, manifestWith(dedup), 'r1');
        expect.fail(`accepted ${dedup}`);
      } catch (err) {
        expect(isRegionDbError(err, ErrorCode.Corruption), `${dedup}: ${String(err)}`).to.equal(true);
        expect((err as Error).message).to.match(/region r1: dedup table/);
      }
    }
  });
});

/** A write or delete carrying its client's session mark (completed_below, D3). */
const putMarked = (clientId: string, requestId: number, completedBelow: number, key: string, v: number) =>
  encodeCommand({ kind: 'write', clientId, requestId, completedBelow, rows: [[key, 1, v]] });
const delMarked = (clientId: string, requestId: number, completedBelow: number, key: string) => encodeCommand({ kind: 'delete', clientId, requestId, completedBelow, keys: [[key, 1]] });

/** The mark a command carries, as every replica decodes it. */
function markOf(cmd: Uint8Array): number | undefined {
  const decoded = decodeCommand(cmd);
  return decoded.kind === 'write' || decoded.kind === 'delete' ? decoded.completedBelow : undefined;
}

/** How many results the region remembers for `clientId`, read from its manifest's dedup table. */
function rememberedFor(s: RegionState, clientId: string): number {
  const table = JSON.parse(decodeManifest(s.snapshotPoint()!.data, 'snapshot').dedup) as { clients: [string, number, unknown[]][] };
  return table.clients.find(([client]) => client === clientId)?.[2].length ?? 0;
}

describe('engine: client sessions (R19 D3, completed_below)', () => {
  it('a mark forgets the answers below it: a retry of such an id is too old, never applied again; ids at or above it are still retries', async () => {
    const s = new RegionState(schema);
    expect(s.apply(1, putMarked('c', 10, 10, 'a', 1))).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, putMarked('c', 11, 10, 'b', 1))).to.deep.equal({ status: 'ok', version: 2, rows: 1 });
    expect(s.apply(3, putMarked('c', 12, 11, 'a', 2)), 'the mark passes 10').to.deep.equal({ status: 'ok', version: 3, rows: 1 });
    expect(s.apply(4, putMarked('c', 10, 10, 'a', 1)), 'a late copy of 10').to.deep.equal({ status: 'request-too-old', oldestKnown: 11 });
    expect(await usageOf(s, 'a'), 'request 10 did not undo request 12').to.equal(2);
    expect(s.apply(5, putMarked('c', 11, 10, 'b', 1)), 'a retry of 11, at the mark').to.deep.equal({ status: 'ok', version: 2, rows: 1 });
    expect(s.apply(6, delMarked('c', 13, 13, 'b'))).to.deep.equal({ status: 'ok', version: 6, rows: 1 });
    expect(s.apply(7, putMarked('c', 11, 10, 'b', 1)), '11 is below the delete\'s mark now').to.have.property('status', 'request-too-old');
    expect(await usageOf(s, 'b')).to.equal(null);
  });

  it('the mark is not part of the request: a retry with a later mark is the same request, answered with the first answer', () => {
    const s = new RegionState(schema);
    const first = s.apply(1, putMarked('c', 20, 20, 'k', 1));
    s.apply(2, putMarked('c', 21, 20, 'j', 1));
    expect(s.apply(3, putMarked('c', 21, 21, 'j', 1)), 'a retry of 21 carrying a later mark').to.deep.equal({ status: 'ok', version: 2, rows: 1 });
    expect(s.apply(4, put('c', 21, 'j', 1)), 'and without any mark').to.deep.equal({ status: 'ok', version: 2, rows: 1 });
    expect(s.apply(5, putMarked('c', 21, 21, 'j', 2)), 'another command under 21 is still refused').to.deep.equal({ status: 'request-id-reused' });
    expect(first).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
  });

  it("a client's first request in a region applies its mark too: below it refused, at or above it still accepted", async () => {
    const s = new RegionState(schema);
    expect(s.apply(1, putMarked('c', 50, 40, 'k', 1))).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, putMarked('c', 39, 39, 'k', 2)), 'an id below the first mark').to.deep.equal({ status: 'request-too-old', oldestKnown: 40 });
    expect(s.apply(3, putMarked('c', 45, 40, 'j', 3)), 'an unfinished id at or above the mark').to.deep.equal({ status: 'ok', version: 3, rows: 1 });
    expect(await usageOf(s, 'k')).to.equal(1);
  });

  it('a mark above its own request id counts as the id: the request applies, and is remembered', () => {
    const s = new RegionState(schema);
    expect(s.apply(1, putMarked('c', 30, 1_000, 'k', 1))).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, putMarked('c', 30, 1_000, 'k', 1)), 'its retry').to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(3, putMarked('c', 29, 29, 'k', 9)), 'an id below it').to.have.property('status', 'request-too-old');
  });

  it('with marks a client keeps about its requests in flight in the table, not its last 1,024 answers (the manifest shrinks with it)', () => {
    const unmarked = new RegionState(schema);
    const marked = new RegionState(schema);
    for (let i = 1; i <= 3000; i++) {
      unmarked.apply(i, put('c', 5000 + i, `k${i % 50}`, i));
      // Four in flight at a time: the mark trails the new id by three.
      marked.apply(i, putMarked('c', 5000 + i, 5000 + Math.max(1, i - 3), `k${i % 50}`, i));
    }
    for (const s of [unmarked, marked]) {
      s.apply(3001, freeze());
      s.apply(3002, flushEdit(3001));
    }
    expect(rememberedFor(unmarked, 'c'), 'without marks: the per-client bound').to.equal(limits.dedupRequestsPerClientMax);
    expect(rememberedFor(marked, 'c'), 'with marks: the ids at or above the last mark').to.equal(4);
    const rebuilt = RegionState.deserialize(schema, marked.snapshotPoint()!.data);
    for (const replica of [marked, rebuilt]) {
      expect(replica.apply(3003, putMarked('c', 5000 + 2990, 5000 + 2990, 'k0', 1)), 'an id the mark passed, on a replica rebuilt from the manifest too').to.have.property('status', 'request-too-old');
      expect(replica.apply(3004, putMarked('c', 5000 + 2999, 5000 + 2997, 'k49', 2999)), 'a retry of one still in flight').to.deep.equal({ status: 'ok', version: 2999, rows: 1 });
    }
  });

  it('seeded: clients sending marks as the client library does never get a request applied twice, and replicas agree', async () => {
    const seed = 19_24;
    const rand = new SeededRand(seed);
    const a = new RegionState(schema, 'r1');
    let b = new RegionState(schema, 'r1');
    const clients = ['c0', 'c1', 'c2'];
    /** Per client: its unfinished requests (id → command), ascending. */
    const unfinished = new Map(clients.map((c) => [c, new Map<number, Uint8Array>()]));
    /** Every request ever sent, for late copies after the client finished it. */
    const everSent: [string, number, Uint8Array][] = [];
    const nextId = new Map(clients.map((c, i) => [c, 100 * (i + 1)]));
    const applied = new Map<string, number>();
    /** Per client: the highest mark applied (capped at its request's id, as the region caps it). */
    const lastMark = new Map<string, number>();
    let index = 0;
    let tooOld = 0;
    for (let step = 0; step < 4000; step++) {
      const client = rand.pick(clients);
      const open = unfinished.get(client)!;
      let cmd: Uint8Array;
      let requestId: number;
      const roll = rand.int(10);
      if (roll < 3 || open.size === 0) {
        requestId = nextId.get(client)! + 1 + rand.int(3);
        nextId.set(client, requestId);
        // The mark is taken when the request is made (this one included) and kept for its retries.
        const mark = Math.min(requestId, ...open.keys());
        cmd = rand.chance(0.2) ? delMarked(client, requestId, mark, `k${rand.int(5)}`) : putMarked(client, requestId, mark, `k${rand.int(5)}`, step);
        open.set(requestId, cmd);
        everSent.push([client, requestId, cmd]);
      } else if (roll < 6) {
        [requestId, cmd] = rand.pick([...open]); // a retry of an unfinished request
      } else if (roll < 9) {
        requestId = rand.pick([...open.keys()]);
        open.delete(requestId); // finished (answered, or given up): never sent again by the client
        continue;
      } else {
        let who: string;
        [who, requestId, cmd] = rand.pick(everSent); // a late copy from the network, of any request
        if (who !== client) continue;
      }
      index++;
      const ra = (await a.apply(index, cmd, 1)) as ApplyResult;
      const rb = (await b.apply(index, cmd, 1)) as ApplyResult;
      expect(rb, `seed ${seed} step ${step}: replicas disagree`).to.deep.equal(ra);
      lastMark.set(client, Math.max(lastMark.get(client) ?? 0, Math.min(markOf(cmd) ?? 0, requestId)));
      if (ra.status === 'request-too-old') {
        tooOld++;
        expect(open.has(requestId), `seed ${seed} step ${step}: request ${requestId} of ${client} refused as too old while unfinished`).to.equal(false);
      }
      const key = `${client}/${requestId}`;
      if (ra.status === 'ok' && ra.version === index) {
        expect(applied.has(key), `seed ${seed} step ${step}: ${key} applied at ${applied.get(key)} and again at ${index}`).to.equal(false);
        applied.set(key, index);
      }
      if (step % 1000 === 999) {
        for (const s of [a, b]) await s.apply(index + 1, freeze(), 1);
        for (const s of [a, b]) await s.apply(index + 2, flushEdit(index + 1), 1);
        index += 2;
        b = RegionState.deserialize(schema, b.snapshotPoint()!.data, 'r1');
      }
    }
    expect(applied.size, `seed ${seed}: the run applied writes`).to.be.greaterThan(300);
    expect(tooOld, `seed ${seed}: late copies were refused`).to.be.greaterThan(0);
    for (const c of clients) {
      // What a client's record may hold: the ids it sent at or above the highest mark applied.
      const mark = lastMark.get(c) ?? 0;
      const bound = everSent.filter(([who, id]) => who === c && id >= mark).length;
      expect(rememberedFor(a, c), `seed ${seed}: ${c} remembers only ids at or above its mark`).to.be.at.most(bound);
      expect(bound, `seed ${seed}: ${c}'s mark trails its newest id by its requests in flight, not 1,024 answers`).to.be.lessThan(everSent.filter(([who]) => who === c).length / 2);
    }
  });
});

describe('engine: the id heap behind D1 eviction', () => {
  it('seeded: pops ids in the order a scan for the lowest would evict them, as ids arrive out of order', () => {
    const rand = new SeededRand(19);
    const heap = new IdHeap();
    const reference = new Set<number>();
    for (let step = 0; step < 20_000; step++) {
      if (reference.size > 0 && (reference.size > 50 || rand.int(3) === 0)) {
        const lowest = Math.min(...reference);
        reference.delete(lowest);
        expect(heap.popMin(), `step ${step}`).to.equal(lowest);
      } else {
        let id = 1 + rand.int(1000);
        while (reference.has(id)) id++;
        reference.add(id);
        heap.push(id);
      }
      expect(heap.size).to.equal(reference.size);
    }
  });

  it('a record restored from a manifest evicts its lowest id first, as the replica that wrote it would', async () => {
    await withDedupBounds(100, 3, async () => {
      const a = new RegionState(schema);
      let index = 0;
      for (const id of [30, 10, 20]) a.apply(++index, put('c', id, `k${id}`, id));
      a.apply(++index, freeze());
      a.apply(++index, flushEdit(index - 1));
      const b = RegionState.deserialize(schema, a.serialize());
      for (const s of [a, b]) {
        expect(s.apply(index + 1, put('c', 40, 'k40', 40)), 'a fourth id evicts 10').to.deep.include({ status: 'ok' });
        expect(s.apply(index + 2, put('c', 10, 'k10', 10))).to.deep.equal({ status: 'request-too-old', oldestKnown: 11 });
        expect(s.apply(index + 3, put('c', 20, 'k20', 20)), '20 is still known: a retry').to.deep.equal({ status: 'ok', version: 3, rows: 1 });
      }
    });
  });
});
