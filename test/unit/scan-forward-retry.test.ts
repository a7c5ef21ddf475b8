// A scan a datanode forwards to a node whose own routes are stale is refused by that node with
// NOT_LEADER (finding R3: a forwarded scan is never forwarded again). The forwarding node used to
// pass that refusal to its client; now it sends the scan once more — to the leader fresh routes
// name, else to the refusal's hint — as long as it has passed nothing of the region on (leftover
// 2). Once rows were sent, a failure is the client's: a second node would send them again.
//
// Real gRPC servers on loopback (test/support/scan-nodes.ts): A is the node the client calls, it
// hosts nothing; C and D host nothing and have stale routes; B hosts the region.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row } from '../../src/engine/schema.js';
import { type ScanNode, type ScanSource, clientScan, scanTable, startScanNode } from '../support/scan-nodes.js';

const table = scanTable('fwd', 4000, 1);
const REGION = makeRegionId(table.tableId, 0);

/** A region's rows: `count` rows of host `host`, then, if given, the error. */
function rows(host: string, count: number, thenFail?: RegionDbError): ScanSource {
  return {
    async *scan(): AsyncGenerator<{ row: Row; version: number }> {
      for (let i = 0; i < count; i++) yield { row: { host, ts: i, v: 'x' }, version: 1 };
      if (thenFail) throw thenFail;
    },
  };
}

/** The whole scan as the client sees it: the hosts of the rows it received, and the error it ended with. */
async function scanAll(addr: string): Promise<{ hosts: string[]; error?: grpc.ServiceError }> {
  const { call, close } = clientScan(addr, { table: table.name });
  const hosts: string[] = [];
  try {
    return await new Promise((resolve) => {
      call.on('data', (chunk: { rows: { values: Record<string, { string_value?: string }> }[] }) => {
        for (const r of chunk.rows) hosts.push(r.values['host']?.string_value ?? '?');
      });
      call.on('error', (error: grpc.ServiceError) => resolve({ hosts, error }));
      call.on('end', () => resolve({ hosts }));
    });
  } finally {
    close();
  }
}

const leader = (node: ScanNode, nodeId: number) => ({ region_id: REGION, leader: { node_id: nodeId, addr: node.addr } });

describe('datanode: a forwarded Scan refused for stale routes is sent once more (leftover 2)', function () {
  this.timeout(30_000);
  const nodes: ScanNode[] = [];
  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop();
  });
  async function start(...args: Parameters<typeof startScanNode>): Promise<ScanNode> {
    const node = await startScanNode(...args);
    nodes.push(node);
    return node;
  }

  it("is sent to the refusing node's hint when the forwarding node's routes stay stale", async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const c = await start(3, table, () => new Map(), () => [leader(b, 2)]); // C knows B leads
    const a = await start(1, table, () => new Map(), () => [leader(c, 3)]); // A (and the metasrv it asks) still says C
    const { hosts, error } = await scanAll(a.addr);
    expect(error?.details, 'the client got an error').to.equal(undefined);
    expect(hosts).to.deep.equal(['b', 'b', 'b']);
    expect(c.calls, 'C: refused the forwarded scan').to.deep.equal({ scans: 1, forwarded: 1 });
    expect(b.calls, 'B: served it').to.deep.equal({ scans: 1, forwarded: 1 });
  });

  it('is sent to the leader fresh routes name when the refusal has no hint', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const c = await start(3, table, () => new Map(), () => [{ region_id: REGION }]); // C's route names no peer: no hint
    // The metasrv names C until C has been asked, then B (a leader change A had not heard of).
    const a = await start(1, table, () => new Map(), () => [c.calls.scans === 0 ? leader(c, 3) : leader(b, 2)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(error?.details, 'the client got an error').to.equal(undefined);
    expect(hosts).to.deep.equal(['b', 'b', 'b']);
    expect(c.calls.scans, 'C asked once').to.equal(1);
    expect(b.calls.scans, 'B asked once').to.equal(1);
  });

  it('is sent once more only: a second refusal goes to the client, and the hint it carries is not followed', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const d = await start(4, table, () => new Map(), () => [leader(b, 2)]); // D knows B
    const c = await start(3, table, () => new Map(), () => [leader(d, 4)]); // C thinks D leads
    const a = await start(1, table, () => new Map(), () => [leader(c, 3)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(hosts).to.deep.equal([]);
    expect(error?.code, String(error)).to.equal(grpc.status.UNAVAILABLE);
    expect(error?.metadata.get('regiondb-error-code')).to.deep.equal([ErrorCode.NotLeader]);
    expect([c.calls.scans, d.calls.scans, b.calls.scans], 'scans received by C, D, B').to.deep.equal([1, 1, 0]);
  });

  it('is never sent again once rows of the region were passed on to the client', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    // C serves one full message of the region, then fails NOT_LEADER pointing at B (it lost the leadership mid-scan, say).
    const lost = new RegionDbError(ErrorCode.NotLeader, 'leadership lost mid-scan', { details: { leaderAddr: b.addr, leaderNodeId: '2' } });
    const c = await start(3, table, () => new Map([[REGION, rows('c', limits.scanRowsPerMessageMax, lost)]]), () => [leader(b, 2)]);
    const a = await start(1, table, () => new Map(), () => [leader(c, 3)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(hosts.length, 'rows the client received').to.equal(limits.scanRowsPerMessageMax);
    expect(new Set(hosts)).to.deep.equal(new Set(['c']));
    expect(error?.metadata.get('regiondb-error-code'), String(error)).to.deep.equal([ErrorCode.NotLeader]);
    expect(b.calls.scans, 'B asked').to.equal(0);
  });
});
