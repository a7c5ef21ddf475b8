// A seeded model test of one region's LSM (src/engine/region-state.ts with the real SST format,
// the flush SST writer and the compaction picker and merge): random writes, deletes, conditional
// writes and request-id retries, freezes, flushes, compactions planned at one moment and applied
// later, and replicas rebuilt from the manifest (the raft snapshot) at random points and replaying
// the log after it. After every step each live state must answer every key as a plain map does
// (get and scan), and every replica must answer as the original. A failure prints its seed.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import type { SstMeta } from '../../src/engine/command.js';
import { RegionState, type TableSchema, encodeCommand, mergeSsts, planCompaction } from '../../src/engine/index.js';
import { type SstOpener, memEntryToSst } from '../../src/engine/region-state.js';
import { SstReader, buildSst, sstSourceFromBytes } from '../../src/engine/sst/format.js';

import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ regionCount: 4, extraTags: [{ name: 'core', type: 'int64', semantic: 'tag' }] });

class MemorySsts implements SstOpener {
  readonly objects = new Map<string, Uint8Array>();
  async open(meta: SstMeta): Promise<SstReader> {
    const bytes = this.objects.get(meta.key);
    if (!bytes) throw new Error(`no SST ${meta.key}`);
    return SstReader.open(sstSourceFromBytes(meta.key, bytes));
  }
}

const HOSTS = ['h0', 'h1', 'h2', 'h3'];
const TIMES = [10, 20, 30];
const keyName = (host: string, ts: number) => `${host}@${ts}`;

interface ModelRow {
  usage: number;
  version: number;
}

async function checkAgainst(label: string, s: RegionState, model: Map<string, ModelRow>): Promise<void> {
  for (const host of HOSTS) {
    for (const ts of TIMES) {
      const got = await s.get({ host, core: 1, ts });
      const want = model.get(keyName(host, ts));
      expect(got === null ? null : { usage: got.row['usage'], version: got.version }, `${label}: get ${keyName(host, ts)}`).to.deep.equal(want ?? null);
    }
  }
  const scanned: Record<string, ModelRow> = {};
  for await (const { row, version } of s.scan()) scanned[keyName(row['host'] as string, row['ts'] as number)] = { usage: row['usage'] as number, version };
  expect(scanned, `${label}: scan`).to.deep.equal(Object.fromEntries([...model].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

async function runSeed(seed: number): Promise<void> {
  const rand = new SeededRand(seed);
  const ssts = new MemorySsts();
  const s = new RegionState(schema, 'r1', ssts);
  s.onMembership([1, 2, 3], []);
  const log: { index: number; data: Uint8Array }[] = [];
  const model = new Map<string, ModelRow>();
  let index = 0;
  let requestId = 0;
  let sstSeq = 0;
  /** Results of client commands by request id (a retry must get the first one, and change nothing). */
  const sent = new Map<number, { data: Uint8Array; result: unknown }>();
  /** A compaction planned (and merged) earlier, applied later: its edit may or may not still apply. */
  let pendingCompaction: { inputs: string[]; output: SstMeta | null } | undefined;

  const apply = async (data: Uint8Array) => {
    index++;
    log.push({ index, data });
    return await s.apply(index, data, 1);
  };
  const writeCmd = (rows: (string | number)[][], extra: object = {}) => encodeCommand({ kind: 'write', clientId: 'c', requestId: ++requestId, rows, ...extra });

  for (let step = 0; step < 300; step++) {
    const what = rand.int(100);
    if (what < 30) {
      const n = 1 + rand.int(3);
      const rows: (string | number)[][] = [];
      for (let i = 0; i < n; i++) rows.push([HOSTS[rand.int(HOSTS.length)]!, 1, TIMES[rand.int(TIMES.length)]!, rand.int(1000)]);
      const data = writeCmd(rows);
      const result = await apply(data);
      sent.set(requestId, { data, result });
      for (const r of rows) model.set(keyName(r[0] as string, r[2] as number), { usage: r[3] as number, version: index });
    } else if (what < 42) {
      const host = HOSTS[rand.int(HOSTS.length)]!;
      const ts = TIMES[rand.int(TIMES.length)]!;
      const data = encodeCommand({ kind: 'delete', clientId: 'c', requestId: ++requestId, keys: [[host, 1, ts]] });
      const result = await apply(data);
      sent.set(requestId, { data, result });
      model.delete(keyName(host, ts));
    } else if (what < 52) {
      const host = HOSTS[rand.int(HOSTS.length)]!;
      const ts = TIMES[rand.int(TIMES.length)]!;
      const current = model.get(keyName(host, ts));
      const currentVersion = current?.version ?? 0;
      const usage = rand.int(1000);
      const absent = rand.int(2) === 0;
      const expected = rand.int(3) === 0 ? currentVersion + 1 : currentVersion; // sometimes wrong on purpose
      const data = writeCmd([[host, 1, ts, usage]], absent ? { expectAbsent: true } : { expectVersion: expected });
      const result = await apply(data);
      sent.set(requestId, { data, result });
      const passes = absent ? currentVersion === 0 : expected === currentVersion;
      expect(result, `seed ${seed} step ${step}: conditional write at ${index}`).to.deep.equal(
        passes ? { status: 'ok', version: index, rows: 1 } : { status: 'condition-failed', currentVersion },
      );
      if (passes) model.set(keyName(host, ts), { usage, version: index });
    } else if (what < 57 && sent.size > 0) {
      // A retry of an earlier request: the first answer, nothing applied again.
      const ids = [...sent.keys()];
      const id = ids[rand.int(ids.length)]!;
      const earlier = sent.get(id)!;
      if (id <= requestId - 1000) continue;
      expect(await apply(earlier.data), `seed ${seed} step ${step}: retry of request ${id}`).to.deep.equal(earlier.result);
    } else if (what < 67) {
      if (s.frozen.length < 3) await apply(encodeCommand({ kind: 'freeze' }));
    } else if (what < 80) {
      const frozen = s.frozen[0];
      if (!frozen) continue;
      const entries = [...frozen.memtable.scan()].map(memEntryToSst);
      let sst: SstMeta | null = null;
      if (entries.length > 0) {
        const { bytes, properties } = buildSst(entries);
        const key = `sst-${++sstSeq}`;
        ssts.objects.set(key, bytes);
        sst = { key, size: bytes.byteLength, entries: properties.entryCount, maxVersion: properties.maxVersion, minTimestampMs: properties.minTimestamp, maxTimestampMs: properties.maxTimestamp };
      }
      await apply(encodeCommand({ kind: 'flush-edit', freezeIndex: frozen.index, sst }));
    } else if (what < 90) {
      if (pendingCompaction) {
        await apply(encodeCommand({ kind: 'compaction-edit', ...pendingCompaction }));
        pendingCompaction = undefined;
        continue;
      }
      // The picker's run (tiny SSTs are one size tier, so it takes them all), or any contiguous
      // run, as an older picker or an explicit request may have chosen: replicas accept any.
      let plan = planCompaction(s.ssts, 2 + rand.int(2), rand.int(4) === 0);
      if (s.ssts.length >= 2 && rand.int(2) === 0) {
        const start = rand.int(s.ssts.length - 1);
        const end = start + 2 + rand.int(s.ssts.length - start - 1);
        plan = { inputs: s.ssts.slice(start, end), dropTombstones: end === s.ssts.length };
      }
      if (!plan) continue;
      const chunks: Uint8Array[] = [];
      const written = await mergeSsts(s, plan.inputs, plan.dropTombstones, { write: async (c) => void chunks.push(c) });
      let output: SstMeta | null = null;
      if (written) {
        const key = `sst-${++sstSeq}`;
        ssts.objects.set(key, new Uint8Array(Buffer.concat(chunks)));
        output = { key, size: written.size, entries: written.properties.entryCount, maxVersion: written.properties.maxVersion, minTimestampMs: written.properties.minTimestamp, maxTimestampMs: written.properties.maxTimestamp };
      }
      const edit = { inputs: plan.inputs.map((x) => x.key), output };
      if (rand.int(2) === 0) await apply(encodeCommand({ kind: 'compaction-edit', ...edit }));
      else pendingCompaction = edit; // applied after whatever comes next (a flush, another compaction…)
    } else {
      // A replica rebuilt from the raft snapshot (the manifest, taken now) replays the log after it.
      if (s.flushedIndex === 0) continue;
      const replica = RegionState.deserialize(schema, s.serialize(), 'r1', ssts);
      for (const e of log) if (e.index > replica.flushedIndex) await replica.apply(e.index, e.data, 1);
      expect(replica.ssts.map((x) => x.key), `seed ${seed} step ${step}: the rebuilt replica's SSTs`).to.deep.equal(s.ssts.map((x) => x.key));
      expect(replica.frozen.map((f) => f.index), `seed ${seed} step ${step}: the rebuilt replica's frozen memtables`).to.deep.equal(s.frozen.map((f) => f.index));
      await checkAgainst(`seed ${seed} step ${step}: replica rebuilt at ${replica.flushedIndex}`, replica, model);
    }
    await checkAgainst(`seed ${seed} step ${step} (index ${index})`, s, model);
  }
}

describe('engine: a seeded model of one region (flushes, compactions, rebuilt replicas)', () => {
  const first = Number(process.env['ENGINE_MODEL_SEED'] ?? 1);
  const count = Number(process.env['ENGINE_MODEL_SEEDS'] ?? 25);
  it(`answers every key as a map does, on the state and on replicas rebuilt from its manifest (seeds ${first}–${first + count - 1})`, async () => {
    for (let seed = first; seed < first + count; seed++) await runSeed(seed);
  });
});


