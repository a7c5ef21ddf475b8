// Undoing a promotion abandoned after its first phase (docs/replication.md, "Aborting a promotion";
// S11 in src/engine/standby-state.ts): `standby-unfreeze` (command kind 24) in the region state,
// the node's StandbyUnfreeze, and `regiondb standby promote --abort` (abortPromotion) against a
// promotion that was abandoned, that has begun to take effect, or that races it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { Registry } from 'prom-client';
import { systemClock, wallClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { Datanode } from '../../src/datanode/datanode.js';
import { CommandKind, RegionState, type ShippedEntry, type TableSchema, decodeCommand, encodeCommand, stampCommand } from '../../src/engine/index.js';
import { decodeManifest, encodeManifest } from '../../src/engine/manifest.js';
import { StandbyState } from '../../src/engine/standby-state.js';
import { readFence, writeFence } from '../../src/standby/fence.js';
import { abortPromotion, promoteStandby } from '../../src/standby/promote.js';
import { Receiver } from '../../src/standby/receiver.js';
import { cpuSchema } from '../fixtures/schemas.js';
import type { fakePromotionRecord } from '../fixtures/promotion-record.js';
import { twoNodeStandby } from '../fixtures/two-node-standby.js';
import { standbyStatusText } from '../../src/cmd/standby.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 7, tag: 'k', field: 'v', regionCount: 2 });
const ids = [((7n << 32n) | 0n).toString(), ((7n << 32n) | 1n).toString()];
const put = (requestId: number, key: string, v: number) => encodeCommand({ kind: 'write', clientId: 'primary-client', requestId, rows: [[key, 1, v]] });
const shipped = (index: number, stampMs: number, key: string, v: number): ShippedEntry => ({ index, stampMs, data: stampCommand(put(index, key, v), stampMs) });
const append = (fromIndex: number, entries: ShippedEntry[], watermarkMs: number) => encodeCommand({ kind: 'standby-append', fromIndex, entries, watermarkMs });
const release = (upToMs: number) => encodeCommand({ kind: 'standby-release', upToMs });
const freeze = () => encodeCommand({ kind: 'standby-freeze' });
const unfreeze = () => encodeCommand({ kind: 'standby-unfreeze' });
const cut = (cutMs: number, epoch = 1) => encodeCommand({ kind: 'standby-promote-epoch', cutMs, epoch });
const seed = (primaryIndex: number, seededThroughMs: number) => encodeCommand({ kind: 'standby-seed', primaryIndex, seededThroughMs, versionOffset: 0, ssts: [], dedup: '[]' });

async function rowValue(s: RegionState, key: string): Promise<unknown> {
  return (await s.get({ k: key, ts: 1 }))?.row['v'];
}

/** A region that received entries stamped 100 and 250 (everything up to 300), released to 100, then froze. */
async function frozenRegion(): Promise<RegionState> {
  const s = new RegionState(schema);
  await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 250, 'b', 2)], 300));
  await s.apply(2, release(100));
  await s.apply(3, freeze());
  return s;
}

describe('S11: standby-unfreeze in the region state', () => {
  it('clears frozen in a standby region and nothing else; releases and seeds apply again', async () => {
    const s = await frozenRegion();
    await s.apply(4, release(300));
    expect(s.standby!.appliedPrimaryIndex, 'S8: frozen, nothing released').to.equal(1);
    const before = s.standby!.snapshot();
    await s.apply(5, unfreeze());
    expect(s.standby!.snapshot(), 'only frozen changed').to.deep.equal({ ...before, frozen: false });
    await s.apply(6, release(300));
    expect([s.standby!.appliedPrimaryIndex, s.standby!.releasedMs, await rowValue(s, 'b')], 'the release resumes').to.deep.equal([2, 300, 2]);
    await s.apply(7, seed(40, 500));
    expect(s.standby!.seededIndex, 'a seed is taken again').to.equal(40);
  });

  it('a cut region ignores it; a region that never froze or never received anything is unchanged', async () => {
    const s = await frozenRegion();
    await s.apply(4, cut(200));
    const promoted = s.standby!.snapshot();
    expect([promoted.mode, promoted.frozen]).to.deep.equal(['promoted', true]);
    await s.apply(5, unfreeze());
    expect(s.standby!.snapshot(), 'the cut stands').to.deep.equal(promoted);

    const open = new RegionState(schema);
    await open.apply(1, append(1, [shipped(1, 100, 'a', 1)], 100));
    const was = open.standby!.snapshot();
    await open.apply(2, unfreeze());
    expect(open.standby!.snapshot()).to.deep.equal(was);

    const empty = new RegionState(schema);
    await empty.apply(1, unfreeze());
    expect(empty.standby, 'no standby state is made up').to.equal(undefined);
  });

  it('a region released past the cut after an unfreeze is never cut there, frozen again or not', async () => {
    for (const refrozen of [false, true]) {
      const s = await frozenRegion();
      await s.apply(4, unfreeze());
      await s.apply(5, release(300)); // its leader's release round, between the abort and a promotion it raced
      if (refrozen) await s.apply(6, freeze());
      await s.apply(7, cut(200));
      expect([s.standby!.mode, await rowValue(s, 'b')], `not cut at 200 holding the entry stamped 250 (frozen again: ${refrozen})`).to.deep.equal(['standby', 2]);
    }
  });

  it('an unfreeze before the cut with nothing released past it: the cut applies, consistently', async () => {
    const s = await frozenRegion();
    await s.apply(4, unfreeze());
    await s.apply(5, cut(200));
    const st = s.standby!;
    expect([st.mode, st.cutMs, st.releasedMs, st.droppedEntries, await rowValue(s, 'b')]).to.deep.equal(['promoted', 200, 200, 1, undefined]);
  });

  it('a region frozen again with nothing released past the cut is cut as usual', async () => {
    const s = await frozenRegion();
    await s.apply(4, unfreeze());
    await s.apply(5, freeze());
    await s.apply(6, cut(200));
    const st = s.standby!;
    expect([st.mode, st.cutMs, st.releasedMs, st.droppedEntries, await rowValue(s, 'b')]).to.deep.equal(['promoted', 200, 200, 1, undefined]);
  });

  it('survives the manifest, and a replica rebuilt from it mid-log reaches the same state as one replaying every entry', async () => {
    const log = [
      append(1, [shipped(1, 100, 'a', 1), shipped(2, 250, 'b', 2)], 300),
      release(100),
      freeze(),
      release(300), // ignored: frozen
      append(3, [shipped(3, 350, 'c', 3)], 400),
      unfreeze(),
      encodeCommand({ kind: 'freeze' }), // the memtable's flush point: the manifest carries the standby state
      encodeCommand({ kind: 'flush-edit', freezeIndex: 7, sst: null }),
      release(400),
      append(4, [shipped(4, 450, 'd', 4)], 500),
    ];
    const whole = new RegionState(schema);
    for (const [k, e] of log.entries()) await whole.apply(k + 1, e);
    const part = new RegionState(schema);
    for (const [k, e] of log.slice(0, 8).entries()) await part.apply(k + 1, e);
    expect(part.standby!.frozen, 'unfrozen before the flush point').to.equal(false);
    const manifest = decodeManifest(encodeManifest(part.manifest()), 'test');
    const rebuilt = RegionState.fromManifest(schema, '', undefined, manifest);
    expect(rebuilt.standby!.snapshot(), 'the manifest round trip').to.deep.equal(part.standby!.snapshot());
    for (const [k, e] of log.slice(8).entries()) await rebuilt.apply(k + 9, e);
    expect(rebuilt.standby!.encode(), 'replay-deterministic').to.equal(whole.standby!.encode());
    expect(await rowValue(rebuilt, 'c')).to.equal(3);
    expect(StandbyState.decode(whole.standby!.encode(), 'test').snapshot()).to.deep.equal(whole.standby!.snapshot());
  });
});

describe('standby-unfreeze: the command (kind 24)', () => {
  it('round-trips as a version-1 command of kind 24', () => {
    const bytes = unfreeze();
    expect([bytes[0], bytes[1], CommandKind.StandbyUnfreeze]).to.deep.equal([1, 24, 24]);
    expect(decodeCommand(bytes)).to.deep.equal({ kind: 'standby-unfreeze' });
  });

  it('damaged bytes are CORRUPTION, never a TypeError or another command', () => {
    const good = unfreeze();
    const damaged: Uint8Array[] = [
      good.subarray(0, 1), // truncated to the version byte
      new Uint8Array([...good.subarray(0, 2), ...Buffer.from('{')]), // a body cut short
      new Uint8Array([...good.subarray(0, 2), ...Buffer.from('null')]), // not an object
      new Uint8Array([2, ...good.subarray(1)]), // kind 24 has no binary encoding
      new Uint8Array([9, ...good.subarray(1)]), // unknown format version
    ];
    for (const bytes of damaged) {
      let code: string | undefined;
      try {
        decodeCommand(bytes);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      expect(code, `bytes ${[...bytes].join(',')}`).to.equal('CORRUPTION');
    }
  });

  it('the build before it refuses it loudly (CORRUPTION) rather than skip it', async () => {
    const old = await previousDecoder('f8e8597');
    if (!old) {
      console.log('      (no git history here: the previous build\'s decoder cannot be loaded; this case is not checked)');
      return;
    }
    let code: string | undefined;
    try {
      old(unfreeze());
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).to.equal('CORRUPTION');
  });
});

/** decodeCommand of src/engine/command.ts at `commit` (git history), its imports pointed at this tree; undefined without history. */
async function previousDecoder(commit: string): Promise<((bytes: Uint8Array) => unknown) | undefined> {
  const { spawnSync } = await import('node:child_process');
  const { writeFileSync } = await import('node:fs');
  const root = join(import.meta.dirname, '..', '..');
  const shown = spawnSync('git', ['show', `${commit}:src/engine/command.ts`], { cwd: root, encoding: 'utf8' });
  if (shown.status !== 0 || !shown.stdout) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-old-decoder-'));
  try {
    const src = shown.stdout
      .replace("'../common/errors.js'", JSON.stringify(join(root, 'src/common/errors.ts')))
      .replace("'./command-binary.js'", JSON.stringify(join(root, 'src/engine/command-binary.ts')))
      .replace("'./schema.js'", JSON.stringify(join(root, 'src/engine/schema.ts')));
    const file = join(dir, 'command.ts');
    writeFileSync(file, src);
    return ((await import(file)) as { decodeCommand(bytes: Uint8Array): unknown }).decodeCommand;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}


/** Both regions: entries stamped 100 and 250, everything up to 300 received, released to 100. */
async function streamed(states: readonly RegionState[]): Promise<void> {
  for (const s of states) {
    await s.apply(1, append(1, [shipped(1, 100, 'a', 1), shipped(2, 250, 'b', 2)], 300));
    await s.apply(2, release(100));
  }
}

describe('`regiondb standby promote --abort` (abortPromotion)', () => {
  let dirs: string[];
  beforeEach(() => {
    dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'regiondb-unfreeze-')));
  });
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('undoes a promotion abandoned after its first phase: releases resume, and a promotion afterwards still completes', async () => {
    const { states, receivers, releaseRound, client } = twoNodeStandby(dirs);
    await streamed(states);
    for (const r of receivers) await r.freeze(); // the first phase; the promoter stopped there
    await releaseRound(0);
    expect(states[0]!.standby!.releasedMs, 'frozen: nothing released').to.equal(100);

    const report = await abortPromotion(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect(report.unfrozen).to.deep.equal(ids);
    expect(states.map((s) => s.standby!.frozen)).to.deep.equal([false, false]);
    for (const k of [0, 1]) await releaseRound(k);
    expect(states.map((s) => [s.standby!.releasedMs, s.standby!.pending.length]), 'released to the safe time, pending drained').to.deep.equal([
      [300, 0],
      [300, 0],
    ]);
    expect(await abortPromotion(client, { timeoutMs: 3000, nowMs: () => Date.now() }).then((r) => r.unfrozen), 'idempotent: nothing left to abort').to.deep.equal([]);

    const promoted = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect([promoted.cutMs, promoted.epoch]).to.deep.equal([300, 1]);
    expect(states.map((s) => s.standby!.mode)).to.deep.equal(['promoted', 'promoted']);
  });

  it('refuses, naming what it saw, once a node reports the promotion or a region is cut at its epoch; nothing is unfrozen', async () => {
    const { states, receivers, client } = twoNodeStandby(dirs);
    await streamed(states);
    for (const r of receivers) await r.freeze();
    await receivers[1]!.promote({ cut_ms: '200', epoch: '1' } as Parameters<Receiver['promote']>[0]); // the promoter reached node 2 before it stopped
    const refused = await abortPromotion(client, { timeoutMs: 3000, nowMs: () => Date.now() }).then(
      () => 'aborted',
      (err: unknown) => (err as Error).message,
    );
    expect(refused).to.include('cannot abort').and.to.include('node n2 reports promoted at epoch 1').and.to.include(`region ${ids[1]} is cut at epoch 1`).and.to.include('standby promote');
    expect(states[0]!.standby!.frozen, 'region 0 stays frozen: the promotion is finished, not undone').to.equal(true);
    // Run again, the promotion completes at its own cut.
    const done = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect([done.cutMs, done.epoch, states[0]!.standby!.mode]).to.deep.equal([200, 1, 'promoted']);
  });

  it('a node that knows of a promotion refuses StandbyUnfreeze itself (the abort looked before the promotion reached it)', async () => {
    const { states, receivers } = twoNodeStandby(dirs);
    await streamed(states);
    await receivers[0]!.freeze();
    writeFence(dirs[0]!, { state: 'promoted', epoch: 1, atMs: 200 });
    const fresh = new Receiver(
      { nodeId: 1, metas: new Map([[ids[0]!, { schema }]]), regionServer: { allReplicas: () => [{ regionId: ids[0]!, isLeader: () => true, stateMachine: states[0]! }], propose: (_r: string, command: Uint8Array) => states[0]!.apply(20, command) } } as unknown as Datanode,
      { releaseIntervalMs: 500, dataDir: dirs[0]! },
      silentLogger,
      systemClock,
      wallClock,
      new Registry(),
    );
    const refused = await fresh.unfreeze().then(
      () => 'unfrozen',
      (err: unknown) => (err as Error).message,
    );
    expect(refused).to.match(/promoted at epoch 1 .*finish it with `regiondb standby promote`/);
    expect(states[0]!.standby!.frozen).to.equal(true);
  });

  it('on one node, StandbyPromote and StandbyUnfreeze do not interleave: the one that comes second sees what the first did', async () => {
    // Proposals held open (a raft round in flight) until the test applies them.
    const state = await frozenRegion();
    const log: { command: Uint8Array; resolve: (r: unknown) => void }[] = [];
    let index = 10;
    const replica = { regionId: ids[0]!, isLeader: () => true, stateMachine: state };
    const dn = {
      nodeId: 1,
      metas: new Map([[ids[0]!, { schema }]]),
      regionServer: { allReplicas: () => [replica], replica: () => replica, propose: (_r: string, command: Uint8Array) => new Promise((resolve) => log.push({ command, resolve })) },
    } as unknown as Datanode;
    const receiver = new Receiver(dn, { releaseIntervalMs: 500, dataDir: dirs[0]! }, silentLogger, systemClock, wallClock, new Registry());
    const aborted = receiver.unfreeze();
    const promoted = receiver.promote({ cut_ms: '200', epoch: '1' } as Parameters<Receiver['promote']>[0]).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    for (let i = 0; i < 20; i++) {
      for (const e of log.splice(0)) e.resolve(await state.apply(++index, e.command));
      await new Promise((ok) => setImmediate(ok));
    }
    await aborted;
    expect(await promoted, 'told after the abort: the region is not frozen').to.match(/not frozen/);
    expect(readFence(dirs[0]!), 'and this node is not promoted (it would fence the old primary)').to.equal(undefined);
    expect([state.standby!.mode, state.standby!.frozen]).to.deep.equal(['standby', false]);
  });
});

describe('an abort racing a promotion (S11)', () => {
  let dirs: string[];
  beforeEach(() => {
    dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'regiondb-unfreeze-race-')));
  });
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('the promoter does not freeze again a region the abort unfroze before any node was promoted: it stops, nothing cut', async () => {
    const { states, receivers, client } = twoNodeStandby(dirs);
    await streamed(states);
    // The abort lands after the promoter chose its cut and looked at the regions once more (both
    // frozen: its 4th look, the 7th and 8th StandbyStatus calls), before it tells any node.
    const inner = client as unknown as { standbyStatus(addr: string): Promise<unknown> };
    const status = inner.standbyStatus;
    let calls = 0;
    inner.standbyStatus = async (addr) => {
      const res = await status(addr);
      if (++calls === 8) {
        expect((res as { regions: { frozen: boolean }[] }).regions[0]?.frozen, 'the promoter saw it frozen').to.equal(true);
        for (const r of receivers) await r.unfreeze();
      }
      return res;
    };
    const outcome = await promoteStandby(client, { timeoutMs: 2000, nowMs: () => Date.now() }).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    expect(outcome, outcome).to.match(/promotion aborted .*nothing is cut/);
    expect(states.map((s) => [s.standby!.mode, s.standby!.frozen])).to.deep.equal([
      ['standby', false],
      ['standby', false],
    ]);
    expect(dirs.map((d) => readFence(d)), 'no node promoted: the old primary is not fenced').to.deep.equal([undefined, undefined]);
  });

  it('an abort that reached one node before the promotion, and the promotion the other first: the promotion completes in the same run', async () => {
    const { states, receivers, client } = twoNodeStandby(dirs);
    await streamed(states);
    const inner = client as unknown as { standbyPromote(addr: string, cutMs: number, epoch: number): Promise<unknown> };
    const promote = inner.standbyPromote;
    let raced = false;
    inner.standbyPromote = async (addr, cutMs, epoch) => {
      if (addr === 'n1' && !raced) {
        raced = true;
        await receivers[0]!.unfreeze(); // the abort's call to node 1 came first; node 2's came after its promotion (refused)
      }
      return promote(addr, cutMs, epoch);
    };
    const report = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect(raced).to.equal(true);
    expect([report.cutMs, report.epoch]).to.deep.equal([300, 1]);
    expect(states.map((s) => s.standby!.mode)).to.deep.equal(['promoted', 'promoted']);
  });

  it('a promotion recorded in the metasrv stops every release round, even in regions an abort unfroze after the record was written (S12)', async () => {
    const { states, receivers, releaseRound, client } = twoNodeStandby(dirs);
    await streamed(states);
    for (const r of receivers) await r.freeze();
    // The promoter chose cut 200 at epoch 1 and wrote the record; an abort that looked just before
    // the write reaches both nodes (they know no promotion yet: neither was told).
    await (client as unknown as ReturnType<typeof fakePromotionRecord>).recordStandbyPromotion(1, 200);
    for (const r of receivers) await r.unfreeze();
    expect(states.map((s) => s.standby!.frozen)).to.deep.equal([false, false]);
    // Both release rounds see every region unfrozen and no node promoted, with everything up to 300
    // received: only the record keeps them from releasing past the cut a promoted node would take.
    for (const k of [0, 1]) await releaseRound(k);
    expect(states.map((s) => s.standby!.releasedMs), 'nothing released past the recorded cut').to.deep.equal([100, 100]);
    const done = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect([done.cutMs, done.epoch]).to.deep.equal([200, 1]);
    for (const [k, s] of states.entries()) expect([s.standby!.mode, s.standby!.cutMs], `region ${k}`).to.deep.equal(['promoted', 200]);
  });

  it('a region released past the recorded cut (a round that read no record, landing after the write): the promoter tells no node anything, nothing is cut (D10)', async () => {
    const { states, receivers, releaseRound, client } = twoNodeStandby(dirs);
    await streamed(states);
    for (const r of receivers) await r.freeze();
    for (const r of receivers) await r.unfreeze();
    // Node 1's round reads every region unfrozen and no record, then the promoter writes it, and
    // the round's release lands after the write (here: the round runs whole before the write).
    await releaseRound(0);
    expect(states[0]!.standby!.releasedMs).to.equal(300);
    await (client as unknown as ReturnType<typeof fakePromotionRecord>).recordStandbyPromotion(1, 200);
    const refused = await promoteStandby(client, { timeoutMs: 2000, nowMs: () => Date.now() }).then(
      () => 'promoted',
      (err: unknown) => (err as Error).message,
    );
    expect(refused).to.match(/cannot complete: regions .* released past the cut/);
    expect(states.map((s) => s.standby!.mode), 'no region cut while another cannot be').to.deep.equal(['standby', 'standby']);
  });

  it('`standby status` says when a recorded promotion no node reports holds the releases (S12), and stops saying it once promoted', async () => {
    const { states, receivers, client } = twoNodeStandby(dirs);
    await streamed(states);
    const status = () => standbyStatusText(client as unknown as Parameters<typeof standbyStatusText>[0], 1_000);
    expect(await status()).not.to.include('releases are held');
    for (const r of receivers) await r.freeze();
    await (client as unknown as ReturnType<typeof fakePromotionRecord>).recordStandbyPromotion(1, 200);
    expect(await status()).to.include('records a promotion at epoch 1').and.to.include('releases are held');
    await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect(await status()).not.to.include('releases are held');
  });

  it('`standby status` shows why the metasrv cannot answer the promotion record (release rounds held), and says nothing for a metasrv without it (UNIMPLEMENTED)', async () => {
    const { states, client } = twoNodeStandby(dirs);
    await streamed(states);
    const status = () => standbyStatusText(client as unknown as Parameters<typeof standbyStatusText>[0], 1_000);
    const c = client as unknown as { getStandbyPromotion: () => Promise<unknown> };
    c.getStandbyPromotion = async () => {
      throw new RegionDbError(ErrorCode.Unavailable, 'the metasrv has not read the standby promotion record from the object store (store down (test))');
    };
    expect(await status()).to.include('cannot answer this site\'s promotion record').and.to.include('store down (test)');
    const promoted = (client as unknown as { standbyStatus: (addr: string) => Promise<{ role: string; fence_epoch: string; fence_at_ms: string }> }).standbyStatus;
    (client as unknown as { standbyStatus: unknown }).standbyStatus = async (addr: string) => ({ ...(await promoted(addr)), ...(addr === 'n1' ? { role: 'promoted', fence_epoch: '3', fence_at_ms: '200' } : {}) });
    expect(await status(), 'each promoted node\'s fence record: which cut it holds').to.include('node 1 holds the promotion at epoch 3, cut 200');
    (client as unknown as { standbyStatus: unknown }).standbyStatus = promoted;
    c.getStandbyPromotion = async () => {
      throw new RegionDbError(ErrorCode.Internal, 'method not implemented', { cause: Object.assign(new Error('12 UNIMPLEMENTED'), { code: 12 }) });
    };
    expect(await status()).not.to.include('promotion record');
  });

  it('a region unfrozen while another was cut releases nothing past the cut, so the promotion run again completes at it', async () => {
    const { states, receivers, releaseRound, client } = twoNodeStandby(dirs);
    await streamed(states);
    for (const r of receivers) await r.freeze();
    // The abort reached node 1 first; the promotion (cut 200) reached node 2 first.
    await receivers[0]!.unfreeze();
    await receivers[1]!.promote({ cut_ms: '200', epoch: '1' } as Parameters<Receiver['promote']>[0]);
    expect(await receivers[0]!.unfreeze().then(() => 'unfrozen', (err: unknown) => (err as Error).message), 'node 1 does not host region 1: it knows nothing').to.equal('unfrozen');
    // Node 1's release round (safe time 300 from both reports) must not release region 0 past 200.
    await releaseRound(0);
    expect(states[0]!.standby!.releasedMs, 'no release while a promotion is under way elsewhere').to.equal(100);
    const refused = await abortPromotion(client, { timeoutMs: 2000, nowMs: () => Date.now() }).then(
      () => 'aborted',
      (err: unknown) => (err as Error).message,
    );
    expect(refused).to.include('cannot abort');
    const done = await promoteStandby(client, { timeoutMs: 3000, nowMs: () => Date.now() });
    expect([done.cutMs, done.epoch]).to.deep.equal([200, 1]);
    for (const [k, s] of states.entries()) {
      expect([s.standby!.mode, s.standby!.cutMs, s.standby!.releasedMs <= 200], `region ${k}`).to.deep.equal(['promoted', 200, true]);
      expect(await rowValue(s, 'b'), `region ${k} dropped the entry stamped 250`).to.equal(undefined);
    }
  });
});
