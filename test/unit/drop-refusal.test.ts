// The drop fence's refusal as a datanode words it (tableDroppedError; leftover item 5): the
// structured `resendAllowed` detail, not the message, says whether the request may be sent again
// as it is — never for a write with expect_version (review note F8) — and it travels both wires.
// And the router's fast path hands the schema it resolved to the write (schemaOfNamedRegion once).
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, type RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService, tableDroppedError } from '../../src/datanode/database-service.js';
import { makeRegionId } from '../../src/engine/key.js';
import { fromBatchError, fromGrpcError, toBatchError, toServiceError } from '../../src/rpc/status.js';
import { type ProtoValue, toProtoRow, toProtoSchema } from '../../src/rpc/values.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema = cpuSchema({ name: 't', tableId: 1031 });
const region = makeRegionId(schema.tableId, 0);
const row = () => {
  const p = toProtoRow(schema, { host: 'h', ts: 1, usage: 0.5 });
  for (const v of Object.values(p.values)) v.kind = Object.keys(v)[0] as ProtoValue['kind'];
  return p;
};

/** A datanode hosting `region`, whose proposals the fence refuses; counts table-name resolutions. */
function fencedNode() {
  const counts = { resolutions: 0 };
  const host = {
    nodeId: 1,
    // schemaOf walks the hosted replicas' metas first: each walk is one resolution of a name.
    metas: {
      [Symbol.iterator]: () => {
        counts.resolutions++;
        return new Map()[Symbol.iterator]();
      },
      get: () => undefined,
    },
    config: { engine: { region_memtable_limit_bytes: 1 << 30, node_memtable_limit_bytes: 1 << 30 } },
    memtableBytes: () => 0,
    nodeMetrics: { countRowsWritten: () => {} },
    regionServer: {
      replica: (id: string) => (id === region ? { stateMachine: { memtableBytes: () => 0 } } : undefined),
      failure: () => undefined,
      propose: async () => ({ status: 'table-dropped', tableId: schema.tableId, fenceIndex: 4 }),
    },
    metaCall: async () => ({ table: toProtoSchema(schema), routes: [] }),
  } as unknown as DatabaseHost;
  const service = new DatabaseService(host) as unknown as {
    write(req: unknown): Promise<unknown>;
    delete(req: unknown): Promise<unknown>;
    router: { write(req: unknown, info: unknown): Promise<unknown> };
  };
  return { service, counts };
}

async function refusal(p: Promise<unknown>): Promise<RegionDbError> {
  try {
    await p;
  } catch (err) {
    if (isRegionDbError(err)) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('drop fence: the refusal says whether the request may be sent again (leftover item 5)', () => {
  it('a write or delete: resendAllowed; a write with expect_version: not, and its message says to read the row again', async () => {
    const { service } = fencedNode();
    const plain = await refusal(service.write({ table: 't', rows: [row()], region_id: region }));
    expect(plain.code).to.equal(ErrorCode.NotFound);
    expect(plain.details).to.deep.equal({ droppedTableId: '1031', resendAllowed: 'true' });
    const del = await refusal(service.delete({ table: 't', keys: [{ values: { host: row().values['host'], ts: row().values['ts'] } }], region_id: region }));
    expect(del.details).to.deep.equal({ droppedTableId: '1031', resendAllowed: 'true' });
    const cas = await refusal(service.write({ table: 't', rows: [row()], region_id: region, _expect_version: 'expect_version', expect_version: '3' }));
    expect(cas.code).to.equal(ErrorCode.NotFound);
    expect(cas.details).to.deep.equal({ droppedTableId: '1031' });
    expect(cas.message).to.contain('read the row again').and.not.contain('send it again');
  });

  it('the detail travels as metadata (unary) and in BatchError.details (Batch)', () => {
    for (const what of ['write', 'conditional-write', 'read'] as const) {
      const err = tableDroppedError('t', 9, makeRegionId(9, 0), what);
      for (const back of [fromGrpcError(toServiceError(err)), fromBatchError(toBatchError(err))]) {
        expect(back.details['droppedTableId'], what).to.equal('9');
        expect(back.details['resendAllowed'], what).to.equal(what === 'conditional-write' ? undefined : 'true');
      }
    }
    const md = toServiceError(tableDroppedError('t', 9, makeRegionId(9, 0), 'write')).metadata as grpc.Metadata;
    expect(md.get('regiondb-resend-allowed')).to.deep.equal(['true']);
  });

  it("the router's fast path resolves the table name once: the write takes the schema the router split by", async () => {
    const { service, counts } = fencedNode();
    // leads() is the region server's: the fake hosts the region but says nothing of leadership, so make it lead.
    const router = service.router as unknown as { local: { leads(id: string): boolean } };
    router.local.leads = () => true;
    await refusal(service.router.write({ table: 't', rows: [row()], region_id: region }, { forwarded: true, deadlineMs: Date.now() + 30_000 }));
    counts.resolutions = 0;
    await refusal(service.router.write({ table: 't', rows: [row()] }, { forwarded: false, deadlineMs: Date.now() + 30_000 }));
    // The fence refuses, afterDrop resolves afresh and sends it once more: two attempts, one resolution each.
    expect(counts.resolutions, 'resolutions of the name for two attempts').to.equal(2);
  });
});
