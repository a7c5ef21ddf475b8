// Deferred rows on followers (region-state.ts, "Deferred rows"; docs/engine.md): a seeded
// differential test. The same random command sequence is applied to an eager RegionState (a
// leader's) and to one told it does not lead, switched between leader and follower at random
// points; after every step everything a reader can observe of the two must be identical — apply
// results and errors, reads (get, scan, merged cells, scans stepped one row at a time across
// later applies), frozen memtables, manifests, memtable sizes (equal whenever nothing is
// deferred, and always once materialized), and each one's memory account.
//
// Shown failing on planted bugs (each reverted; docs/performance.md, fourth pass): the deferred
// list materialized newest first; a freeze that dropped the deferred commands of the memtable it
// froze; a scan that did not materialize between its steps; becoming leader without
// materializing; deferring a row whose key values were not checked against their columns' types.
import { expect } from 'chai';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, failsReplica, isRegionDbError } from '../../src/common/errors.js';
import { SeededRand } from '../../src/common/rand.js';
import { type Command, type SstMeta, type WriteCommand, encodeCommand, encodeCommandV1, stampCommand } from '../../src/engine/command.js';
import type { MemEntry, Memtable } from '../../src/engine/memtable.js';
import { MemtableAccount, RegionState, type SstOpener, memEntryToSst } from '../../src/engine/region-state.js';
import type { Row, TableSchema, Value } from '../../src/engine/schema.js';
import { SstReader, buildSst, sstSourceFromBytes } from '../../src/engine/sst/format.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ extraTags: [{ name: 'core', type: 'int64', semantic: 'tag' }] }); // host, core, ts, usage
const SEEDS = Number(process.env['DEFERRED_TEST_SEEDS'] ?? 20);
const STEPS = Number(process.env['DEFERRED_TEST_STEPS'] ?? 700);

class MemorySsts implements SstOpener {
  readonly objects = new Map<string, Uint8Array>();
  async open(meta: SstMeta): Promise<SstReader> {
    const bytes = this.objects.get(meta.key);
    if (!bytes) throw new Error(`no SST ${meta.key}`);
    return SstReader.open(sstSourceFromBytes(meta.key, bytes));
  }
}

/** What a reader sees of a memtable entry. */
function entryText(e: MemEntry): string {
  return `${Buffer.from(e.key).toString('hex')}@${e.version}${e.op === 'delete' ? ' x' : ''} ${JSON.stringify(e.tags)} ${e.timestampMs} ${JSON.stringify(e.op === 'delete' ? [] : e.fields)}`;
}

function memtableText(m: Memtable): string {
  return `${m.count} keys, ${m.sizeBytes} bytes: ${[...m.scan()].map(entryText).join(' | ')}`;
}

async function outcome(f: () => unknown): Promise<string> {
  try {
    return `ok ${JSON.stringify(await f())}`;
  } catch (err) {
    return `threw ${(err as Error).name} ${isRegionDbError(err) ? err.code : ''}: ${(err as Error).message}`;
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

function deferredCount(s: RegionState): number {
  return s.memtable.deferredCount + s.frozen.reduce((n, f) => n + f.memtable.deferredCount, 0);
}

/** One seed: returns how many applies the follower deferred (the test checks that it did). */
async function runSeed(seed: number): Promise<{ deferredApplies: number; steps: number }> {
  const rand = new SeededRand(seed);
  const clock = new ManualClock(1_000);
  const ssts = new MemorySsts();
  const dedupLimits = { dedupClientsMax: 3, dedupRequestsPerClientMax: 6 };
  const eager = new RegionState(schema, 'r', ssts, clock, dedupLimits);
  const lazy = new RegionState(schema, 'r', ssts, clock, dedupLimits);
  const eagerAccount = new MemtableAccount();
  const lazyAccount = new MemtableAccount();
  eager.attachAccount(eagerAccount);
  lazy.attachAccount(lazyAccount);
  let leading = false;
  lazy.onLeading(false);
  eager.onLeading(true);

  const pick = <T>(xs: readonly T[]): T => xs[rand.int(xs.length)]!;
  const hosts: Value[] = ['a', 'b', 'c', 'dé', '', null];
  const cores: Value[] = [-1, 0, 1, 2, null];
  const times = [-5, 1, 2, 3, 4, 5];
  const keyValues = (): Value[] => [pick(hosts), pick(cores), pick(times)];
  const row = (): Value[] => [...keyValues(), rand.chance(0.1) ? null : rand.chance(0.2) ? rand.int(100) : rand.next()];
  const clients = ['c1', 'c2', 'c3', 'c4'];
  const nextId = new Map<string, number>(clients.map((c) => [c, 1]));
  const sent: Uint8Array[] = [];
  const sentCmds: WriteCommand[] = [];
  let index = 0;
  let deferredApplies = 0;
  let fenced = false;
  let sstSerial = 0;
  const open: { eager: AsyncGenerator<unknown>; lazy: AsyncGenerator<unknown> }[] = [];
  const where = (step: number, what: string) => `seed ${seed} step ${step} (${what}); replay: DEFERRED_TEST_SEED=${seed}`;

  const identity = (client: string): { clientId: string; requestId: number } => {
    if (rand.chance(0.05)) return { clientId: client, requestId: 0 };
    const id = nextId.get(client)!;
    // Ids mostly in order, sometimes out of order (a client has several in flight), sometimes far behind (too old).
    nextId.set(client, id + 1 + rand.int(2));
    return { clientId: client, requestId: rand.chance(0.05) ? Math.max(1, id - 5 - rand.int(5)) : id };
  };
  const bytesOf = (cmd: Command): Uint8Array => (rand.chance(0.2) ? stampCommand(encodeCommand(cmd), 1_000 + rand.int(1_000)) : encodeCommand(cmd));

  const applyBoth = async (step: number, what: string, data: Uint8Array): Promise<void> => {
    index++;
    const before = deferredCount(lazy);
    const a = await outcome(() => eager.apply(index, data, 1));
    const b = await outcome(() => lazy.apply(index, data, 1));
    expect(b, where(step, `apply ${what} at ${index}`)).to.equal(a);
    if (deferredCount(lazy) > before) deferredApplies++;
  };

  const compare = async (step: number, what: string): Promise<void> => {
    const w = where(step, what);
    expect(lazy.appliedIndex, w).to.equal(eager.appliedIndex);
    expect(JSON.stringify(lazy.manifest()), `${w}: manifest`).to.equal(JSON.stringify(eager.manifest()));
    expect(lazy.frozen.map((f) => [f.index, f.term, f.dedup, f.membership, f.standby]), `${w}: frozen positions`).to.deep.equal(eager.frozen.map((f) => [f.index, f.term, f.dedup, f.membership, f.standby]));
    expect(eagerAccount.bytes, `${w}: the eager account`).to.equal(eager.memtableBytes());
    expect(lazyAccount.bytes, `${w}: the deferring account follows materializations`).to.equal(lazy.memtableBytes());
    if (deferredCount(lazy) === 0) expect(lazy.memtableBytes(), `${w}: memtable bytes with nothing deferred`).to.equal(eager.memtableBytes());
    if (leading) expect(deferredCount(lazy), `${w}: a leader defers nothing`).to.equal(0);
  };

  for (let step = 0; step < STEPS; step++) {
    const p = rand.next();
    let what = '';
    if (p < 0.3) {
      what = 'write';
      const cmd: WriteCommand = { kind: 'write', ...identity(pick(clients)), rows: Array.from({ length: 1 + rand.int(4) }, row) };
      const data = bytesOf(cmd);
      sent.push(data);
      sentCmds.push(cmd);
      await applyBoth(step, what, data);
    } else if (p < 0.4) {
      what = 'delete';
      const data = bytesOf({ kind: 'delete', ...identity(pick(clients)), keys: Array.from({ length: 1 + rand.int(3) }, keyValues) });
      sent.push(data);
      await applyBoth(step, what, data);
    } else if (p < 0.48) {
      what = 'conditional write';
      const values = row();
      const current = await eager.get({ host: values[0]!, core: values[1]!, ts: values[2]! } as Row);
      const version = current?.version ?? 0;
      const condition = rand.chance(0.3) ? { expectAbsent: true } : { expectVersion: rand.chance(0.6) ? version : version + 1 };
      const data = bytesOf({ kind: 'write', ...identity(pick(clients)), rows: [values], ...condition });
      sent.push(data);
      await applyBoth(step, what, data);
    } else if (p < 0.54 && sent.length > 0) {
      what = 'retry';
      const data = sent[Math.max(0, sent.length - 1 - rand.int(12))]!;
      // A retry may be stamped again, later: still the same command to dedup.
      await applyBoth(step, what, rand.chance(0.3) && data[0] === 2 ? stampCommand(data, 5_000) : data);
    } else if (p < 0.57 && sentCmds.length > 0) {
      what = 'reused id';
      const earlier = sentCmds[Math.max(0, sentCmds.length - 1 - rand.int(6))]!;
      await applyBoth(step, what, encodeCommand({ ...earlier, rows: [row()] }));
    } else if (p < 0.62) {
      what = 'eagerly applied oddity';
      const id = identity(pick(clients));
      const kind = rand.int(7);
      let data: Uint8Array;
      if (kind === 0) data = encodeCommand({ kind: 'write', ...id, rows: [row(), ['a', 1.5, 3, 0.25]] }); // a float in the int64 tag: key encoding throws after the first row
      else if (kind === 1) data = encodeCommand({ kind: 'write', ...id, rows: [row(), ['a', 1, 3]] }); // a row too narrow: CORRUPTION, nothing applied
      else if (kind === 2) data = encodeCommand({ kind: 'delete', ...id, keys: [keyValues(), ['a', 1]] }); // a key without its timestamp
      else if (kind === 3) data = encodeCommandV1({ kind: 'write', ...id, rows: [row()] }); // version 1 (JSON): decoded whole
      else if (kind === 4) data = encodeCommand({ kind: 'write', ...id, rows: [row(), row()] }).subarray(0, 12 + rand.int(20)); // truncated
      else if (kind === 5) {
        data = encodeCommand({ kind: 'write', ...id, rows: [row()] });
        data[data.byteLength - 9] = 0x7e; // the float's tag: unknown
      } else data = encodeCommand({ kind: 'write', ...id, rows: [['a', 1, 2 ** 40 + 0.5, 0.5]] }); // a float timestamp
      sent.push(data);
      await applyBoth(step, `${what} ${kind}`, data);
    } else if (p < 0.66) {
      what = 'freeze';
      await applyBoth(step, what, encodeCommand({ kind: 'freeze' }));
    } else if (p < 0.7 && eager.frozen.length > 0) {
      what = 'flush-edit';
      // The leader's flush: the oldest frozen memtable of the eager state becomes the SST.
      const frozen = eager.frozen[0]!;
      const entries = [...frozen.memtable.scan()].map(memEntryToSst);
      let sst: SstMeta | null = null;
      if (entries.length > 0) {
        const { bytes, properties } = buildSst(entries);
        const key = `sst-${seed}-${++sstSerial}`;
        ssts.objects.set(key, bytes);
        sst = { key, size: bytes.byteLength, entries: properties.entryCount, maxVersion: properties.maxVersion, minTimestampMs: properties.minTimestamp, maxTimestampMs: properties.maxTimestamp };
      }
      await applyBoth(step, what, encodeCommand({ kind: 'flush-edit', freezeIndex: frozen.index, sst }));
      if (rand.chance(0.2)) await applyBoth(step, 'duplicate flush-edit', encodeCommand({ kind: 'flush-edit', freezeIndex: frozen.index, sst }));
    } else if (p < 0.75) {
      what = 'role switch';
      leading = !leading;
      lazy.onLeading(leading);
      if (leading) expect(lazy.memtableBytes(), where(step, 'memtable bytes on becoming leader')).to.equal(eager.memtableBytes());
    } else if (p < 0.8) {
      what = 'get';
      const key = { host: pick(hosts), core: pick(cores), ts: pick(times) } as Row;
      expect(await outcome(() => lazy.get(key)), where(step, what)).to.equal(await outcome(() => eager.get(key)));
    } else if (p < 0.84) {
      what = 'scan';
      const options = {
        ...(rand.chance(0.3) ? { startMs: pick(times) } : {}),
        ...(rand.chance(0.3) ? { endMs: pick(times) } : {}),
        ...(rand.chance(0.3) ? { tagEquals: { host: pick(hosts) } } : {}),
        ...(rand.chance(0.3) ? { limit: 1 + rand.int(5) } : {}),
      };
      expect(await outcome(() => collect(lazy.scan(options))), where(step, what)).to.equal(await outcome(() => collect(eager.scan(options))));
    } else if (p < 0.87) {
      what = 'memtables read';
      expect(memtableText(lazy.memtable), where(step, 'active memtable')).to.equal(memtableText(eager.memtable));
      for (const [i, f] of lazy.frozen.entries()) expect(memtableText(f.memtable), where(step, `frozen memtable ${i}`)).to.equal(memtableText(eager.frozen[i]!.memtable));
      expect(lazy.memtableBytes(), where(step, 'memtable bytes once read')).to.equal(eager.memtableBytes());
    } else if (p < 0.92) {
      what = 'scan opened';
      if (open.length < 3) open.push({ eager: eager.mergedCells(), lazy: lazy.mergedCells() });
    } else if (p < 0.921 && !fenced && step > STEPS / 2) {
      what = 'drop fence';
      fenced = true;
      await applyBoth(step, what, encodeCommand({ kind: 'drop-fence', tableId: schema.tableId }));
    } else {
      what = 'no-op';
    }
    // Open scans go on, a step now and then, across the applies in between.
    for (const s of open) {
      if (!rand.chance(0.3)) continue;
      const [a, b] = [await outcome(() => s.eager.next()), await outcome(() => s.lazy.next())];
      expect(b, where(step, 'a merged-cells scan stepped across applies')).to.equal(a);
    }
    for (let i = open.length - 1; i >= 0; i--) if (rand.chance(0.02)) open.splice(i, 1);
    clock.advance(1);
    await compare(step, what);
  }
  // In the end, everything read back is the same.
  expect(await collect(lazy.mergedCells()), where(STEPS, 'final merged cells')).to.deep.equal(await collect(eager.mergedCells()));
  return { deferredApplies, steps: STEPS };
}

describe('engine: deferred rows on followers (a seeded differential test against eager apply)', () => {
  const only = process.env['DEFERRED_TEST_SEED'];
  const seeds = only ? [Number(only)] : Array.from({ length: SEEDS }, (_, i) => i + 1);
  for (const seed of seeds) {
    it(`seed ${seed}: every read, result, error, manifest and size is eager apply's`, async () => {
      const { deferredApplies } = await runSeed(seed);
      expect(deferredApplies, 'the follower deferred commands (else this test shows nothing)').to.be.greaterThan(STEPS / 20);
    });
  }
});

describe('engine: a deferred command that cannot be expanded fails the replica', () => {
  it('is found when read; every later read, apply and leadership fails alike (the replica is lost, nothing is skipped)', async () => {
    const s = new RegionState(schema, 'r');
    s.onLeading(false);
    const good = encodeCommand({ kind: 'write', clientId: 'c', requestId: 1, rows: [['a', 1, 1, 0.5]] });
    const bad = encodeCommand({ kind: 'write', clientId: 'c', requestId: 2, rows: [['b', 1, 1, 0.5]] });
    expect(s.apply(1, good, 1)).to.deep.equal({ status: 'ok', version: 1, rows: 1 });
    expect(s.apply(2, bad, 1)).to.deep.equal({ status: 'ok', version: 2, rows: 1 });
    expect(s.memtable.deferredCount, 'both deferred').to.equal(2);
    // Damage in memory after apply (what only a bug could do: apply checked every byte).
    bad[bad.byteLength - 9] = 0x7e;
    let caught: unknown;
    try {
      await s.get({ host: 'a', core: 1, ts: 1 });
    } catch (err) {
      caught = err;
    }
    expect(failsReplica(caught), String(caught)).to.equal(true);
    expect((caught as Error).message).to.match(/region r: the deferred command of version 2 cannot be expanded; this replica's state is lost: .*unknown value tag 126/);
    expect(s.memtable.deferredCount, 'the damaged command stays at the head: nothing skipped').to.equal(1);
    for (const read of [() => s.get({ host: 'a', core: 1, ts: 1 }), () => collect(s.scan())]) {
      let again: unknown;
      try {
        await read();
      } catch (err) {
        again = err;
      }
      expect(failsReplica(again), 'every later read fails alike').to.equal(true);
    }
    expect(() => s.apply(3, encodeCommand({ kind: 'freeze' }), 1), 'the next apply fails (its host fails the replica)').to.throw(/this replica's state is lost/);
    expect(() => s.onLeading(true), 'it never leads').to.throw(/this replica's state is lost/);
    expect(isRegionDbError(caught, ErrorCode.Corruption)).to.equal(true);
  });
});
