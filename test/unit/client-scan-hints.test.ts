// The client library's `scan(table, options, addr)` (src/client/client.ts): each region's scan is
// sent to the node the caller chose. A NOT_LEADER that names the leader's address is followed at
// once, as the unary calls follow one (leftover L10; before, the chosen node was asked again and
// again until the deadline and the scan failed UNAVAILABLE), at most a bounded number of times.
//
// Real gRPC on loopback: a fake metasrv answering GetRoutes, B a datanode Database service that
// leads the region (test/support/scan-nodes.ts), and "refusing" nodes whose Scan answers
// NOT_LEADER with a hint the test sets (optionally after streaming some rows first).
import { expect } from 'chai';
import { RegionDbClient } from '../../src/client/client.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row } from '../../src/engine/schema.js';
import { databaseService } from '../../src/rpc/batch-wire.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { serverStream, unary } from '../../src/rpc/status.js';
import { toProtoRow, toProtoSchema } from '../../src/rpc/values.js';
import { type ScanNode, type ScanSource, scanTable, startScanNode } from '../support/scan-nodes.js';

const table = scanTable('hints', 4100, 1);
const REGION = makeRegionId(table.tableId, 0);

function rows(host: string, count: number): ScanSource {
  return {
    async *scan(): AsyncGenerator<{ row: Row; version: number }> {
      for (let i = 0; i < count; i++) yield { row: { host, ts: i, v: 'x' }, version: 1 };
    },
  };
}

interface Server {
  readonly addr: string;
  stop(): Promise<void>;
}

/** A metasrv whose routes name `leader` as the region's only peer. */
async function fakeMeta(leader: () => string): Promise<Server> {
  const running: RunningGrpcServer = await startGrpcServer(
    '127.0.0.1',
    0,
    [
      {
        name: 'Meta',
        impl: {
          GetRoutes: unary(async () => ({
            table: toProtoSchema(table),
            routes: [{ region_id: REGION, table: table.name, region_number: 0, peers: [{ node_id: '2', addr: leader() }], leader_node_id: '2', conf_version: '1' }],
          }), silentLogger),
        },
      },
    ],
    silentLogger,
  );
  return { addr: `127.0.0.1:${running.port}`, stop: () => running.stop() };
}

/** A node whose Scan streams `before` rows of host `host`, then refuses NOT_LEADER naming `hint()` (if any); `onScan(n)` first sees the n-th Scan (from 1). */
async function refusingNode(host: string, hint: () => string | undefined, before = 0, onScan: (n: number) => void = () => {}): Promise<Server & { scans: number }> {
  const node = { scans: 0 } as Server & { scans: number };
  const running = await startGrpcServer(
    '127.0.0.1',
    0,
    [
      {
        name: 'Database',
        definition: databaseService(),
        impl: {
          Scan: serverStream(async (_req, write) => {
            onScan(++node.scans);
            for (let i = 0; i < before; i++) await write({ rows: [toProtoRow(table, { host, ts: 1000 + i, v: 'x' })], versions: ['1'] });
            const to = hint();
            throw new RegionDbError(ErrorCode.NotLeader, `region ${REGION}: not the leader here`, { details: to ? { leaderAddr: to, leaderNodeId: '9' } : {} });
          }, silentLogger),
        } as never,
      },
    ],
    silentLogger,
  );
  return Object.assign(node, { addr: `127.0.0.1:${running.port}`, stop: () => running.stop() });
}

describe('client: scan(table, options, addr) follows leader hints (leftover L10)', function () {
  this.timeout(30_000);
  const servers: Server[] = [];
  const clients: RegionDbClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.stop();
  });
  async function leaderB(): Promise<ScanNode> {
    const b = await startScanNode(2, table, () => new Map([[REGION, rows('b', 3)]]), () => []);
    servers.push(b);
    return b;
  }
  async function client(deadlineMs: number, leader: () => string, now?: () => number): Promise<RegionDbClient> {
    const meta = await fakeMeta(leader);
    servers.push(meta);
    const c = new RegionDbClient({ metasrv: meta.addr, deadlineMs, attemptTimeoutMs: 1000, ...(now ? { now } : {}) });
    clients.push(c);
    return c;
  }

  it("a chosen node that answers NOT_LEADER with the leader's address: the scan goes there and returns its rows", async () => {
    const b = await leaderB();
    const c = await refusingNode('c', () => b.addr);
    servers.push(c);
    const cl = await client(5000, () => b.addr);
    const got = await cl.scan(table.name, {}, c.addr);
    expect(got.map((r) => r.row['host'])).to.deep.equal(['b', 'b', 'b']);
    expect(c.scans, 'scans C received').to.equal(1);
    expect(b.calls.scans, 'scans B received').to.equal(1);
  });

  it('rows the refusing node streamed before its NOT_LEADER are dropped, not merged with the leader\'s', async () => {
    const b = await leaderB();
    const c = await refusingNode('c', () => b.addr, 2);
    servers.push(c);
    const cl = await client(5000, () => b.addr);
    const got = await cl.scan(table.name, {}, c.addr);
    expect(got.map((r) => `${r.row['host']}:${r.row['ts']}`)).to.deep.equal(['b:0', 'b:1', 'b:2']);
  });

  it('two nodes naming each other: at most 3 hints followed, then the chosen node is retried until the deadline, UNAVAILABLE', async () => {
    // The client's deadline clock is moved by hand (its backoffs and gRPC deadlines stay real):
    // it stands still, so every attempt is sent with the whole 1,500 ms, until C's fourth Scan
    // (its second retry with backoff) moves it to 10 ms before the deadline, as a slow machine
    // would find it. Before, the deadline ran on real time: under load the last attempt went out
    // with a sliver of it and ended DEADLINE_EXCEEDED in gRPC's channel (LB pick: 153 ms), or no
    // retry after the hints fit in the 1,500 ms at all.
    const DEADLINE_MS = 1500;
    let nowMs = 0;
    let dAddr = '';
    const c = await refusingNode('c', () => dAddr, 0, (n) => {
      if (n === 4) nowMs = DEADLINE_MS - 10;
    });
    servers.push(c);
    const d = await refusingNode('d', () => c.addr);
    servers.push(d);
    dAddr = d.addr;
    const cl = await client(DEADLINE_MS, () => c.addr, () => nowMs);
    const err = await cl.scan(table.name, {}, c.addr).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
    expect((err as Error).message).to.include(`scan via ${c.addr} (and 3 leader hints followed)`);
    expect(d.scans, 'scans D received (hints 1 and 3)').to.equal(2);
    expect(c.scans, 'C: the first call, hint 2, then two retries with backoff, the second one at the deadline').to.equal(4);
  });
});
