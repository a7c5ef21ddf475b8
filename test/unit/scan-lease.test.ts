// A scan on a datanode leases the SSTs it reads and ends by its server deadline (half the GC
// grace), on the flusher's injected clock (issue 14 item 5, scan part; docs/engine.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { Flusher } from '../../src/datanode/flusher.js';
import type { RegionServer } from '../../src/replication/region-server.js';
import type { RegionState } from '../../src/engine/region-state.js';
import { REGION, regionWithFlushedSsts, schema } from '../fixtures/one-region-table.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';

const GRACE_MS = 2000;

/** A region whose `rows` rows are all in one SST named `key`. */
const regionInOneSst = (rows: number, key: string): RegionState =>
  regionWithFlushedSsts([Array.from({ length: rows }, (_, i) => [`h${i % 7}`, i, i])], () => key);

describe('Database.Scan: reader leases and the server deadline (issue 14 item 5)', () => {
  let dir: string;
  let clock: ManualClock;
  let flusher: Flusher;

  const scanOf = (state: RegionState, write: (chunk: { rows: unknown[] }) => Promise<void>): Promise<unknown> => {
    const dn = { flusher, regionServer: { replica: () => ({}), failure: () => undefined } } as unknown as DatabaseHost;
    const service = new DatabaseService(dn);
    // The service's catalog and ReadIndex paths are not under test: the region is local and readable.
    Object.assign(service, { schemaOf: async () => schema, readable: async () => state });
    const scan = (service as unknown as { scan(req: unknown, write: (chunk: unknown) => Promise<void>): Promise<void> }).scan;
    return scan.call(service, { table: 't', region_id: REGION, tag_equals: {}, limit: '0', consistency: 'STALE' }, write as (chunk: unknown) => Promise<void>).then(
      () => undefined,
      (err: unknown) => err,
    );
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-scan-'));
    clock = new ManualClock(0);
    const settings = { flushBytes: 1 << 30, flushAgeMs: 3_600_000, compactAtSsts: 100, gcGraceMs: GRACE_MS, checkIntervalMs: 250, manifestsKept: 5 };
    flusher = new Flusher({} as RegionServer<RegionState>, new FsObjectStore(dir), settings, silentLogger, { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} }, clock);
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('holds a lease on the SSTs it reads while it runs, and returns it when it ends', async () => {
    const state = regionInOneSst(3000, 'sst-a');
    const leasedDuring: boolean[] = [];
    let rows = 0;
    const err = await scanOf(state, async (chunk) => {
      leasedDuring.push(flusher.leases.has('sst-a'));
      rows += chunk.rows.length;
    });
    expect(err, String(err)).to.equal(undefined);
    expect(rows).to.equal(3000);
    // Messages sent mid-read hold it; the last one goes out after the SSTs were read to the end.
    expect(leasedDuring).to.deep.equal([true, true, false]);
    expect(flusher.leases.has('sst-a'), 'released').to.equal(false);
  });

  it('fails DEADLINE_EXCEEDED once it has run half the GC grace, reading nothing more, and returns its lease', async () => {
    expect(flusher.scanDeadlineMs).to.equal(GRACE_MS / 2);
    const state = regionInOneSst(5000, 'sst-b');
    let chunks = 0;
    const err = await scanOf(state, async () => {
      chunks++;
      clock.advance(400); // a slow reader: 400 ms per message of 1024 rows
    });
    expect(isRegionDbError(err, ErrorCode.DeadlineExceeded), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/scan ran longer than 1000 ms/);
    expect(chunks, 'messages sent before the deadline passed (at 1200 ms)').to.equal(3);
    expect(flusher.leases.has('sst-b'), 'released on failure too').to.equal(false);
  });
});
