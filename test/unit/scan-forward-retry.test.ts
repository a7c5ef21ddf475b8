// A scan a datanode forwards to a node whose own routes are stale is refused by that node with
// NOT_LEADER (finding R3: a forwarded scan is never forwarded again). The forwarding node used to
// pass that refusal to its client; now it sends the scan once more — to the leader fresh routes
// name, else to the refusal's hint — as long as it has passed nothing of the region on (leftover
// 2). Once rows were sent, a failure is the client's: a second node would send them again.
// Leftover L11: the same once-more when the node forwarded to cannot be reached (UNAVAILABLE
// before anything came), to the leader fresh routes name and never to that node.
//
// Real gRPC servers on loopback (test/support/scan-nodes.ts): A is the node the client calls, it
// hosts nothing; C and D host nothing and have stale routes; B hosts the region.
import { type Server, type Socket, createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { limits } from '../../src/common/limits.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row } from '../../src/engine/schema.js';
import { startResetPeer } from '../support/reset-peer.js';
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

const leader = (node: { addr: string }, nodeId: number) => ({ region_id: REGION, leader: { node_id: nodeId, addr: node.addr } });

/** An address that accepts TCP connections and closes each at once (a node that died): gRPC calls to it fail UNAVAILABLE. Counts the connections. */
async function deadNode(): Promise<{ addr: string; connections: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const dead = { addr: '', connections: 0, stop: async () => {} };
  const server: Server = createServer((socket) => {
    dead.connections++;
    sockets.add(socket);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  dead.addr = `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  dead.stop = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return dead;
}

describe('datanode: a forwarded Scan refused for stale routes is sent once more (leftover 2)', function () {
  this.timeout(30_000);
  const nodes: ScanNode[] = [];
  const stops: { stop(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop();
    for (const s of stops.splice(0)) await s.stop();
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

  // Leftover L11: the node the routes name cannot be reached (UNAVAILABLE before anything came).
  it('a target that cannot be reached: sent once more to the leader fresh routes name (leftover L11)', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const dead = await deadNode();
    stops.push(dead);
    // The metasrv names the dead node until A has tried it, then B (the leadership moved).
    const a = await start(1, table, () => new Map(), () => [dead.connections === 0 ? leader(dead, 3) : leader(b, 2)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(error?.details, 'the client got an error').to.equal(undefined);
    expect(hosts).to.deep.equal(['b', 'b', 'b']);
    expect(dead.connections, 'connections to the dead node').to.be.above(0);
    expect(b.calls, 'B: served it').to.deep.equal({ scans: 1, forwarded: 1 });
  });

  // Leftover item 1: a reset stream (grpc-js: INTERNAL without regiondb's code) is a transport
  // failure like an unreachable node, not the target's answer; before, the client got INTERNAL.
  it('a target whose stream is reset before anything came: sent once more to the leader fresh routes name (leftover item 1)', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const reset = await startResetPeer();
    stops.push(reset);
    const resets = () => reset.received.get('/regiondb.v1.Database/Scan') ?? 0;
    const a = await start(1, table, () => new Map(), () => [resets() === 0 ? leader(reset, 3) : leader(b, 2)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(error?.details, 'the client got an error').to.equal(undefined);
    expect(hosts).to.deep.equal(['b', 'b', 'b']);
    expect(resets(), 'scans the resetting node received').to.equal(1);
    expect(b.calls, 'B: served it').to.deep.equal({ scans: 1, forwarded: 1 });
  });

  it('a target that cannot be reached and fresh routes still name it: UNAVAILABLE to the client, not sent elsewhere (leftover L11)', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const dead = await deadNode();
    stops.push(dead);
    const a = await start(1, table, () => new Map(), () => [leader(dead, 3)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(hosts).to.deep.equal([]);
    expect(error?.code, String(error)).to.equal(grpc.status.UNAVAILABLE);
    expect(b.calls.scans, 'B asked').to.equal(0);
  });

  it('UNAVAILABLE after rows of the region were passed on goes to the client, never sent again (leftover L11)', async () => {
    const b = await start(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    const broke = new RegionDbError(ErrorCode.Unavailable, 'the region lost its quorum mid-scan');
    const c = await start(3, table, () => new Map([[REGION, rows('c', limits.scanRowsPerMessageMax, broke)]]), () => [leader(b, 2)]);
    const a = await start(1, table, () => new Map(), () => [c.calls.scans === 0 ? leader(c, 3) : leader(b, 2)]);
    const { hosts, error } = await scanAll(a.addr);
    expect(hosts.length, 'rows the client received').to.equal(limits.scanRowsPerMessageMax);
    expect(new Set(hosts)).to.deep.equal(new Set(['c']));
    expect(error?.code, String(error)).to.equal(grpc.status.UNAVAILABLE);
    expect(b.calls.scans, 'B asked').to.equal(0);
  });
});
