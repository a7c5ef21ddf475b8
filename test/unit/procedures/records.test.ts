// The procedure record format: every step of every kind is typed (a misspelt step does not
// compile), a step that throws fails its procedure once, records saved before procedure data
// was typed still load and resume, and a stored record this version cannot run is set aside
// with a clear error instead of failing every pass.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../src/common/logger.js';
import type { CatalogState } from '../../../src/metasrv/catalog.js';
import { CatalogStore, decodeCatalog, encodeCatalog, upgradeCatalog } from '../../../src/metasrv/catalog-store.js';
import type { ProcedureDefinition } from '../../../src/metasrv/procedures/procedure.js';
import { type DataOf, PROCEDURE_KINDS, PROCEDURE_STEPS, type ProcedureKind, readProcedureRecord } from '../../../src/metasrv/procedures/record.js';
import { definitions, runProcedures } from '../../../src/metasrv/procedures/runner.js';
import { FakeCluster, REGION } from '../../support/fake-procedure-context.js';

const FIXTURE = 'test/fixtures/procedure-records-v1.json';
const fixture = (): CatalogState => (JSON.parse(readFileSync(FIXTURE, 'utf8')) as { catalog: CatalogState }).catalog;

/** Valid data for each kind, enough for any of its steps to run. */
const SAMPLE: { [K in ProcedureKind]: DataOf<K> } = {
  'region-failover': { nodeId: 2 },
  'repair-replica': { regionId: REGION, oldPeerId: 3, oldNodeId: 3, newPeerId: 4, newNodeId: 4 },
  'balance-leaders': { regionId: REGION, target: 1, targetPeer: 1, moves: 1 },
  'drain-node': { nodeId: 2 },
  'transfer-leader': { regionId: REGION, nodeId: 1 },
};

describe('procedure records', () => {
  it('the runner has a definition for every kind, whose steps are exactly the kind\'s step names', () => {
    for (const kind of PROCEDURE_KINDS) {
      expect(Object.keys(definitions[kind].steps).sort(), kind).to.deep.equal([...PROCEDURE_STEPS[kind]].sort());
      expect(definitions[kind].firstStep).to.equal(PROCEDURE_STEPS[kind][0]);
    }
  });

  it('a misspelt step name, a missing step or data of another kind do not compile', () => {
    const check = (_def: ProcedureDefinition<'transfer-leader'>) => {};
    check({
      kind: 'transfer-leader',
      firstStep: 'transfer',
      describe: () => '',
      steps: {
        // @ts-expect-error: 'transfr' is not a step of transfer-leader
        transfer: () => ({ next: 'transfr' }),
      },
    });
    // @ts-expect-error: the step 'transfer' is missing
    check({ kind: 'transfer-leader', firstStep: 'transfer', describe: () => '', steps: {} });
    const f = new FakeCluster();
    // @ts-expect-error: drain-node data has no regionId
    f.start('drain-node', { regionId: REGION });
    // @ts-expect-error: 'move-leader' is not a step of drain-node
    f.start('drain-node', { nodeId: 2 }).step = 'move-leader';
  });

  for (const kind of PROCEDURE_KINDS) {
    for (const step of PROCEDURE_STEPS[kind]) {
      it(`fatal: ${kind} / ${step} that throws fails its procedure, with the step named, and is not run again`, () => {
        const f = new FakeCluster();
        const record = f.start(kind, structuredClone(SAMPLE[kind]) as never);
        (record as { step: string }).step = step;
        f.broken = new Error('the detector is gone');
        expect(f.step(record.id)).to.equal(true);
        f.broken = undefined;
        f.crash();
        const saved = f.catalog.procedures[record.id]!;
        expect(saved).to.include({ status: 'failed', step, error: `step ${step} threw: the detector is gone` });
        expect(f.step(record.id)).to.equal(false);
      });
    }
  }

  it('records written before the data was typed load: the re-send time moves out of the data, nothing else changes', () => {
    const old = fixture();
    const state = upgradeCatalog(decodeCatalog(encodeCatalog(structuredClone(old)), 'fixture'));
    expect(state.unreadableProcedures).to.equal(undefined);
    expect(Object.keys(state.procedures)).to.deep.equal(Object.keys(old.procedures));
    for (const [id, before] of Object.entries(old.procedures) as unknown as [string, { data: Record<string, unknown> }][]) {
      const after = state.procedures[id]!;
      const { lastSentMs, ...data } = before.data;
      expect(after.data, id).to.deep.equal(data);
      expect(after.lastSentMs, id).to.equal(lastSentMs ?? 0);
      expect({ ...after, data: before.data, lastSentMs: undefined }, id).to.deep.equal({ ...before, lastSentMs: undefined });
    }
    const repair = state.procedures['repair-replica-2']!;
    expect(repair).to.include({ kind: 'repair-replica', step: 'add-learner', lastSentMs: 1_700_000_003_500 });
  });

  it('an old record resumes under the new runner, from its saved step', () => {
    const f = new FakeCluster();
    const state = upgradeCatalog(fixture());
    f.catalog.procedures = { 'transfer-leader-3': state.procedures['transfer-leader-3']! };
    f.catalog.procedures['transfer-leader-3']!.data = { regionId: REGION, nodeId: 1 };
    // Its saved re-send time (data.lastSentMs = start + 3.5 s) is honoured: due again 3 s later.
    f.clock.advance(3_500 + 3_000 - 1);
    f.step('transfer-leader-3');
    expect(f.sent).to.deep.equal([]);
    f.clock.advance(1);
    f.step('transfer-leader-3');
    expect(f.sentKinds()).to.deep.equal(['transfer_leader@2']);
  });

  it('an unknown kind, an unknown step or malformed data is set aside with a clear error and never run', () => {
    const state = fixture();
    const procs = state.procedures as unknown as Record<string, Record<string, unknown>>;
    procs['repair-replica-2']!['step'] = 'add-lerner';
    procs['transfer-leader-3']!['kind'] = 'split-region';
    (procs['drain-node-4']!['data'] as Record<string, unknown>)['nodeId'] = 'four';
    const upgraded = upgradeCatalog(decodeCatalog(encodeCatalog(state), 'fixture'));
    expect(Object.keys(upgraded.procedures).sort()).to.deep.equal(['balance-leaders-5', 'region-failover-1']);
    const errors = Object.fromEntries(Object.entries(upgraded.unreadableProcedures ?? {}).map(([id, u]) => [id, u.error]));
    expect(errors).to.deep.equal({
      'repair-replica-2': 'procedure record "repair-replica-2" (repair-replica) is at unknown step "add-lerner" (repair-replica has allocate, clear-old, add-learner, catch-up, promote, remove-old, cleanup)',
      'transfer-leader-3': 'procedure record "transfer-leader-3" has unknown kind "split-region" (this version knows region-failover, repair-replica, balance-leaders, drain-node, transfer-leader)',
      'drain-node-4': 'procedure record "drain-node-4" (drain-node): data.nodeId is "four", expected number',
    });
    // Kept as stored (a newer version may read them again), and a pass runs only the readable ones.
    expect(upgraded.unreadableProcedures!['transfer-leader-3']!.record).to.deep.include({ kind: 'split-region' });
    const f = new FakeCluster();
    f.catalog = upgraded;
    expect(() => runProcedures(f.ctx, { info: () => {}, warn: () => {} })).not.to.throw();
    const again = upgradeCatalog(decodeCatalog(encodeCatalog(f.catalog), 'saved'));
    expect(Object.keys(again.unreadableProcedures ?? {}).sort()).to.deep.equal(['drain-node-4', 'repair-replica-2', 'transfer-leader-3']);
  });

  it('a balance-leaders batch is saved and read back; a malformed one is set aside, named', () => {
    const f = new FakeCluster();
    const record = f.start('balance-leaders', { moves: 2, confirmed: 1, batch: [{ regionId: REGION, target: 1, targetPeer: 1 }] });
    f.crash();
    expect(f.catalog.procedures[record.id]!.data).to.deep.equal({ moves: 2, confirmed: 1, batch: [{ regionId: REGION, target: 1, targetPeer: 1 }] });
    const raw = JSON.parse(JSON.stringify(f.catalog.procedures[record.id])) as { data: { batch: unknown[] } };
    raw.data.batch.push({ regionId: REGION, target: '2' });
    expect(readProcedureRecord(record.id, raw)).to.deep.equal({
      error: `procedure record "${record.id}" (balance-leaders): data.batch is ${JSON.stringify(raw.data.batch)}, expected leader-moves (optional)`,
    });
  });

  it('readProcedureRecord names what is wrong', () => {
    expect(readProcedureRecord('x', 7)).to.deep.equal({ error: 'procedure record "x" is not an object' });
    expect(readProcedureRecord('x', { kind: 'drain-node', step: 'mark', status: 'paused' })).to.deep.equal({ error: 'procedure record "x" has unknown status "paused"' });
  });

  it('a catalog store holding old records opens, and saves them in the new layout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-procs-'));
    try {
      let store = await CatalogStore.open(dir, silentLogger);
      await store.save(fixture());
      await store.close();
      store = await CatalogStore.open(dir, silentLogger);
      const state = await store.load('fixture');
      expect(state.procedures['repair-replica-2']!.data).not.to.have.property('lastSentMs');
      await store.save(state);
      await store.close();
      store = await CatalogStore.open(dir, silentLogger);
      expect((await store.load('fixture')).procedures['repair-replica-2']).to.include({ lastSentMs: 1_700_000_003_500 });
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
