// A Scan that names a region (region_id) serves that region only if it is a region of the named
// table (finding R2). The table's schema decides how the rows are read and sent; a region of
// another table — a mistake, or a client's cached region id of a table since dropped and
// re-created under the same name while this node still holds the old replica — must be
// refused, not answered with the other table's rows under this table's name.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import type { ScanChunk, ScanRequest } from '../../src/datanode/router.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';

const columns = (field: string): TableSchema['columns'] => [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
  { name: field, type: 'string', semantic: 'field' },
];
const mine: TableSchema = { name: 'mine', tableId: 2000, regionCount: 2, columns: columns('note') };
const theirs: TableSchema = { name: 'theirs', tableId: 2001, regionCount: 1, columns: columns('secret') };
const THEIR_REGION = makeRegionId(theirs.tableId, 0);

/** A node holding one leader replica: the region of `theirs`, with one row. */
function service(): DatabaseService {
  const replica = {
    isLeader: () => true,
    stateMachine: {
      ssts: [],
      async *scan(): AsyncGenerator<{ row: Row; version: number }> {
        yield { row: { host: 'h', ts: 1, secret: 'their row' }, version: 3 };
      },
    },
  };
  const host = {
    nodeId: 1,
    metas: new Map([[THEIR_REGION, { schema: theirs }], ['mine-meta', { schema: mine }]]),
    regionServer: { replica: (id: string) => (id === THEIR_REGION ? replica : undefined), failure: () => undefined, readBarrier: async () => {}, staleReadRefusal: () => undefined, staleReadGate: async () => undefined },
    flusher: { scanDeadline: () => () => false, scanDeadlineMs: 60_000, leases: { acquire: () => () => {} } },
    metaCall: async () => {
      throw Object.assign(new Error('no metasrv in this test'), { code: 14 });
    },
  } as unknown as DatabaseHost;
  return new DatabaseService(host);
}

describe('datanode: a Scan of one region checks the region belongs to the table (finding R2)', () => {
  it("a region id of another table is INVALID_ARGUMENT; nothing of that table's rows is sent", async () => {
    const svc = service();
    const sent: ScanChunk[] = [];
    const scan = (req: ScanRequest) => (svc as unknown as { scan(r: ScanRequest, w: (c: ScanChunk) => Promise<void>): Promise<void> }).scan(req, async (c) => void sent.push(c));
    let error: unknown;
    try {
      await scan({ table: 'mine', region_id: THEIR_REGION, consistency: 'LINEARIZABLE' });
    } catch (err) {
      error = err;
    }
    expect(sent, 'rows sent').to.deep.equal([]);
    expect(isRegionDbError(error, ErrorCode.InvalidArgument), String(error)).to.equal(true);
    expect(String((error as Error).message)).to.include(`region_id ${THEIR_REGION} is not a region of table mine`);
    // The region under its own table is served.
    await scan({ table: 'theirs', region_id: THEIR_REGION, consistency: 'LINEARIZABLE' });
    expect(sent.flatMap((c) => c.rows.map((r) => r.values['secret']?.string_value))).to.deep.equal(['their row']);
    svc.close();
  });
});

describe('datanode: a forwarded Scan is never forwarded again (one hop)', () => {
  type Scan = (r: ScanRequest, w: (c: ScanChunk) => Promise<void>, info?: { forwarded: boolean; deadlineMs: number }) => Promise<void>;
  /** The service with its forwardScan replaced by a recorder: which calls would have gone to another node, by which deadline. */
  function recording(): { svc: DatabaseService; scan: Scan; forwards: { regionId: string; deadlineMs: number | undefined }[] } {
    const svc = service();
    const forwards: { regionId: string; deadlineMs: number | undefined }[] = [];
    const inner = svc as unknown as { scan: Scan; forwardScan: (...a: unknown[]) => Promise<number> };
    inner.forwardScan = async (_table, regionId, _req, _limit, _write, deadlineMs) => {
      forwards.push({ regionId: regionId as string, deadlineMs: deadlineMs as number | undefined });
      return 0;
    };
    return { svc, scan: inner.scan.bind(svc), forwards };
  }
  const MY_REGION = makeRegionId(mine.tableId, 0); // not hosted here

  it('a region this node does not host is refused when the call was forwarded to it, and forwarded (by the caller\'s deadline) when not', async () => {
    const { svc, scan, forwards } = recording();
    let error: unknown;
    try {
      await scan({ table: 'mine', region_id: MY_REGION, consistency: 'LINEARIZABLE' }, async () => {}, { forwarded: true, deadlineMs: Date.now() + 5000 });
    } catch (err) {
      error = err;
    }
    expect(forwards, 'forwarded again').to.deep.equal([]);
    expect(isRegionDbError(error), String(error)).to.equal(true);
    // A call from a client (not forwarded) goes to a node that hosts the region, by the caller's deadline.
    const deadlineMs = Date.now() + 5000;
    await scan({ table: 'mine', region_id: MY_REGION, consistency: 'LINEARIZABLE' }, async () => {}, { forwarded: false, deadlineMs });
    expect(forwards).to.deep.equal([{ regionId: MY_REGION, deadlineMs }]);
    svc.close();
  });
});
