// A Scan whose caller goes away stops reading (closing notes of session 10, leftover 1). grpc-js
// accepts writes to a cancelled server stream and drops them, so a scan loop that only waits on
// its writes never learned the client had cancelled: it read its region to the end (or to its
// row or time bound) for nobody, holding its SST lease, and a datanode that forwarded the scan
// kept the call to the node serving it open too.
//
// Real gRPC servers on loopback, with fake hosts (database-host.ts) whose region scans are the
// instrument: each counts the rows it was asked for, and after the first message's worth waits
// until the serving call has seen the client's cancellation (a gate, not a sleep), then offers
// BATCHES messages more. A handler that stops on cancellation takes at most one more message's
// worth; one that does not takes them all.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { limits } from '../../src/common/limits.js';
import { silentLogger } from '../../src/common/logger.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { databaseService } from '../../src/rpc/batch-wire.js';
import { type RunningGrpcServer, makeClient, startGrpcServer } from '../../src/rpc/server.js';
import { toProtoSchema } from '../../src/rpc/values.js';

const PER_MESSAGE = limits.scanRowsPerMessageMax;
/** Messages' worth of rows a region offers after the gate: what a scan that never stops reads. */
const BATCHES = 100;
/** Longest the gate waits for the serving call to see the cancellation: past it the test fails. */
const GATE_MS = 10_000;

function schema(name: string, tableId: number, regionCount: number): TableSchema {
  return {
    name,
    tableId,
    regionCount,
    columns: [
      { name: 'host', type: 'string', semantic: 'tag' },
      { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
      { name: 'v', type: 'string', semantic: 'field' },
    ],
  };
}

function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** One region's instrumented scan: rows asked for, whether the gate opened on a cancellation, and when the scan ended. */
class RegionProbe {
  pulled = 0;
  gate: 'cancelled' | 'timed out' | undefined;
  readonly ended = deferred();
  constructor(
    private readonly host: string,
    private readonly cancelSeen: Promise<void>,
  ) {}

  async *scan(): AsyncGenerator<{ row: Row; version: number }> {
    try {
      for (let i = 0; i < PER_MESSAGE * (BATCHES + 1); i++) {
        if (i === PER_MESSAGE) {
          let timer: NodeJS.Timeout | undefined;
          this.gate = await Promise.race([
            this.cancelSeen.then(() => 'cancelled' as const),
            new Promise<'timed out'>((r) => (timer = setTimeout(() => r('timed out'), GATE_MS))),
          ]);
          clearTimeout(timer);
        }
        this.pulled++;
        yield { row: { host: this.host, ts: i, v: 'x' }, version: 1 };
      }
    } finally {
      this.ended.resolve();
    }
  }
}

interface Node {
  readonly server: RunningGrpcServer;
  readonly svc: DatabaseService;
  readonly addr: string;
  /** Resolves when a Scan call served here sees its caller cancel. */
  readonly cancelSeen: Promise<void>;
}

/**
 * A datanode's Database service on loopback: `regions` are the replicas it leads (with their
 * probes), `routes` what the metasrv would answer for the table (every region's leader).
 */
async function startNode(
  nodeId: number,
  table: TableSchema,
  regions: (cancelSeen: Promise<void>) => Map<string, RegionProbe>,
  routes: () => { region_id: string; leader: { node_id: number; addr: string } }[],
): Promise<Node> {
  const cancel = deferred();
  const probes = regions(cancel.promise);
  const replica = (probe: RegionProbe) => ({ isLeader: () => true, heardFromLeader: true, stateMachine: { ssts: [], scan: () => probe.scan() } });
  const host = {
    nodeId,
    log: silentLogger,
    metas: new Map([...probes.keys()].map((id) => [id, { schema: table }])),
    regionServer: {
      replica: (id: string) => (probes.has(id) ? replica(probes.get(id)!) : undefined),
      failure: () => undefined,
      readBarrier: async () => {},
    },
    flusher: { scanDeadline: () => () => false, scanDeadlineMs: 60_000, leases: { acquire: () => () => {} } },
    peerCredentials: grpc.credentials.createInsecure(),
    addressOf: () => undefined,
    metaCall: async (method: string) => {
      if (method !== 'GetRoutes') throw new Error(`no ${method} in this test`);
      return {
        table: toProtoSchema(table),
        routes: routes().map((r, n) => ({
          region_id: r.region_id,
          table: table.name,
          region_number: n,
          peers: [{ node_id: String(r.leader.node_id), addr: r.leader.addr }],
          leader_node_id: String(r.leader.node_id),
          conf_version: '1',
        })),
      };
    },
  } as unknown as DatabaseHost;
  const svc = new DatabaseService(host);
  const impl = svc.implementation() as unknown as Record<string, (call: grpc.ServerWritableStream<unknown, unknown>) => void>;
  const serveScan = impl['Scan']!;
  impl['Scan'] = (call) => {
    call.once('cancelled', () => cancel.resolve());
    serveScan(call);
  };
  const server = await startGrpcServer('127.0.0.1', 0, [{ name: 'Database', definition: databaseService(), impl: impl as never }], silentLogger);
  return { server, svc, addr: `127.0.0.1:${server.port}`, cancelSeen: cancel.promise };
}

/** A client Scan of `table` at `addr`, cancelled as soon as its first message arrives. */
async function scanAndCancelAfterFirstMessage(addr: string, table: string): Promise<number> {
  const client = makeClient('Database', addr);
  try {
    const call = (client as unknown as { Scan(r: unknown, m: grpc.Metadata, o: unknown): grpc.ClientReadableStream<{ rows: unknown[] }> }).Scan(
      { table, consistency: 'LINEARIZABLE' },
      new grpc.Metadata(),
      { deadline: Date.now() + 60_000 },
    );
    let messages = 0;
    await new Promise<void>((resolve, reject) => {
      call.on('data', () => {
        if (++messages === 1) call.cancel();
      });
      call.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
      call.on('end', () => reject(new Error('the scan ended before the client cancelled it')));
    });
    return messages;
  } finally {
    client.close();
  }
}

describe('datanode: a cancelled Scan stops reading (leftover 1)', function () {
  this.timeout(60_000);
  const nodes: Node[] = [];
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      n.svc.close();
      await n.server.stop();
    }
  });

  it('a region scan served here reads at most one message more once the client has cancelled', async () => {
    const table = schema('t1', 3000, 1);
    const region = makeRegionId(table.tableId, 0);
    let probe!: RegionProbe;
    const node = await startNode(1, table, (cancelSeen) => new Map([[region, (probe = new RegionProbe('a', cancelSeen))]]), () => []);
    nodes.push(node);
    await scanAndCancelAfterFirstMessage(node.addr, table.name);
    await probe.ended.promise;
    expect(probe.gate, 'the serving call saw the cancellation').to.equal('cancelled');
    expect(probe.pulled, `rows read of ${PER_MESSAGE * (BATCHES + 1)} (${PER_MESSAGE} a message)`).to.be.at.most(2 * PER_MESSAGE);
  });

  it('a whole-table scan merged from two regions here: each region stops within a message or two of the cancellation', async () => {
    const table = schema('t2', 3001, 2);
    const ids = [makeRegionId(table.tableId, 0), makeRegionId(table.tableId, 1)];
    const probes: RegionProbe[] = [];
    const node = await startNode(
      1,
      table,
      (cancelSeen) => new Map(ids.map((id, n) => [id, probes[n] = new RegionProbe(`h${n}`, cancelSeen)] as const)),
      () => [],
    );
    nodes.push(node);
    await scanAndCancelAfterFirstMessage(node.addr, table.name);
    await Promise.all(probes.map((p) => p.ended.promise));
    for (const [n, p] of probes.entries()) {
      // The merge holds one message of each region in its handoff and one being merged.
      expect(p.pulled, `region ${n}: rows read of ${PER_MESSAGE * (BATCHES + 1)}`).to.be.at.most(3 * PER_MESSAGE);
    }
  });

  it('a forwarded scan: the forwarding node cancels its call upstream, and the node serving it stops too', async () => {
    const table = schema('t3', 3002, 1);
    const region = makeRegionId(table.tableId, 0);
    let probe!: RegionProbe;
    // Node 2 hosts the region; node 1 hosts nothing and forwards the client's scan to node 2.
    const serving = await startNode(2, table, (cancelSeen) => new Map([[region, (probe = new RegionProbe('a', cancelSeen))]]), () => []);
    nodes.push(serving);
    const forwarding = await startNode(1, table, () => new Map(), () => [{ region_id: region, leader: { node_id: 2, addr: serving.addr } }]);
    nodes.push(forwarding);
    await scanAndCancelAfterFirstMessage(forwarding.addr, table.name);
    await probe.ended.promise;
    expect(probe.gate, `the serving node's call saw the cancellation (within ${GATE_MS} ms)`).to.equal('cancelled');
    expect(probe.pulled, `rows read on the serving node of ${PER_MESSAGE * (BATCHES + 1)}`).to.be.at.most(2 * PER_MESSAGE);
  });
});
