// Issue 14 item 5, the engine's side: a conditional write whose SST read fails on the object store
// applies nothing, so the region server can apply the same entry again once the store answers
// (docs/replica-health.md). Before, the failed apply had already moved the engine's applied
// index, and the retry tripped "apply N after N".
import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { RegionState, type TableSchema, encodeCommand } from '../../src/engine/index.js';
import type { SstMeta } from '../../src/engine/command.js';
import type { SstOpener } from '../../src/engine/region-state.js';
import type { SstReader } from '../../src/engine/sst/format.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema: TableSchema = cpuSchema({ name: 'kv', tableId: 2048 });

/** An object store that is down until `up` is set; when up, the SST holds no version of the key. */
class FlakyOpener implements SstOpener {
  up = false;
  async open(meta: SstMeta): Promise<SstReader> {
    if (!this.up) throw new RegionDbError(ErrorCode.StorageUnavailable, `object store: get ${meta.key}: connect ECONNREFUSED`);
    return { get: async () => undefined } as unknown as SstReader;
  }
}

const sst: SstMeta = { key: 'regions/1/sst/1.sst', size: 100, entries: 1, maxVersion: 3, minTimestampMs: 0, maxTimestampMs: 0 };
const conditional = (requestId: number) =>
  encodeCommand({ kind: 'write', clientId: 'c1', requestId, rows: [['h1', 1000, 0.5]], expectAbsent: true });

describe('engine: a conditional write whose SST read fails applies nothing and can be applied again', () => {
  it('STORAGE_UNAVAILABLE leaves the applied index, the memtable and the dedup table as they were; the same index then applies', async () => {
    const opener = new FlakyOpener();
    const state = new RegionState(schema, '1', opener);
    state.ssts = [sst];
    expect(await state.apply(4, encodeCommand({ kind: 'write', clientId: 'c0', requestId: 1, rows: [['h0', 1000, 0.1]] }))).to.include({ status: 'ok' });
    const failed = await Promise.resolve(state.apply(5, conditional(1))).then(
      () => expect.fail('the store is down'),
      (err: unknown) => err,
    );
    expect(isRegionDbError(failed, ErrorCode.StorageUnavailable), String(failed)).to.equal(true);
    expect(state.appliedIndex).to.equal(4);
    expect(state.memtable.count).to.equal(1);
    opener.up = true;
    expect(await state.apply(5, conditional(1))).to.deep.equal({ status: 'ok', version: 5, rows: 1 });
    expect(state.appliedIndex).to.equal(5);
    expect(state.memtable.count).to.equal(2);
    // Applied once: the dedup table answers a retry of the request with the first result.
    expect(await state.apply(6, conditional(1))).to.deep.equal({ status: 'ok', version: 5, rows: 1 });
  });
});
