// Datanode Database services on loopback with fake hosts (src/datanode/database-host.ts), for
// tests of the Scan path across real gRPC calls: each node leads the regions it is given (their
// scans are the test's own generators), and answers GetRoutes lookups with the routes the test
// gives it (what the metasrv would say, stale or not).
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../src/common/logger.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { FORWARDED_BY_KEY } from '../../src/rpc/auth.js';
import { databaseService } from '../../src/rpc/batch-wire.js';
import { type RunningGrpcServer, makeClient, startGrpcServer } from '../../src/rpc/server.js';
import { toProtoSchema } from '../../src/rpc/values.js';

/** A table of one tag, the timestamp and one string field. */
export function scanTable(name: string, tableId: number, regionCount: number): TableSchema {
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

export function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A region replica's scan, as the node's state machine runs it. */
export interface ScanSource {
  scan(): AsyncGenerator<{ row: Row; version: number }>;
}

/** A route as the metasrv would give it: the region's leader, or no peer at all. */
export interface RouteSpec {
  readonly region_id: string;
  readonly leader?: { readonly node_id: number; readonly addr: string };
}

export interface ScanNode {
  readonly server: RunningGrpcServer;
  readonly svc: DatabaseService;
  readonly addr: string;
  /** Resolves when a Scan call served here sees its caller cancel. */
  readonly cancelSeen: Promise<void>;
  /** Scan calls this node received, and how many of them another datanode forwarded. */
  readonly calls: { scans: number; forwarded: number };
  stop(): Promise<void>;
}

/**
 * Starts node `nodeId`: `regions` are the replicas it leads (given the promise of the first
 * cancellation a Scan served here sees), `routes` what its GetRoutes lookups answer, asked at
 * each lookup.
 */
export async function startScanNode(
  nodeId: number,
  table: TableSchema,
  regions: (cancelSeen: Promise<void>) => Map<string, ScanSource>,
  routes: () => RouteSpec[],
): Promise<ScanNode> {
  const cancel = deferred();
  const sources = regions(cancel.promise);
  const replica = (source: ScanSource) => ({ isLeader: () => true, stateMachine: { ssts: [], scan: () => source.scan() } });
  const host = {
    nodeId,
    log: silentLogger,
    metas: new Map([...sources.keys()].map((id) => [id, { schema: table }])),
    regionServer: {
      replica: (id: string) => (sources.has(id) ? replica(sources.get(id)!) : undefined),
      failure: () => undefined,
      readBarrier: async () => {},
      staleReadRefusal: () => undefined,
      staleReadGate: async () => undefined,
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
          peers: r.leader ? [{ node_id: String(r.leader.node_id), addr: r.leader.addr }] : [],
          leader_node_id: String(r.leader?.node_id ?? 0),
          conf_version: '1',
        })),
      };
    },
  } as unknown as DatabaseHost;
  const svc = new DatabaseService(host);
  const calls = { scans: 0, forwarded: 0 };
  const impl = svc.implementation() as unknown as Record<string, (call: grpc.ServerWritableStream<unknown, unknown>) => void>;
  const serveScan = impl['Scan']!;
  impl['Scan'] = (call) => {
    calls.scans++;
    if (call.metadata.get(FORWARDED_BY_KEY).length > 0) calls.forwarded++;
    call.once('cancelled', () => cancel.resolve());
    serveScan(call);
  };
  const server = await startGrpcServer('127.0.0.1', 0, [{ name: 'Database', definition: databaseService(), impl: impl as never }], silentLogger);
  return {
    server,
    svc,
    addr: `127.0.0.1:${server.port}`,
    cancelSeen: cancel.promise,
    calls,
    stop: async () => {
      svc.close();
      await server.stop();
    },
  };
}

/** A client's Scan call (proto-loader's codec, as any gRPC client) of `table` at `addr`. */
export function clientScan(addr: string, request: Record<string, unknown>): { call: grpc.ClientReadableStream<{ rows: { values: Record<string, { string_value?: string }> }[] }>; close(): void } {
  const client = makeClient('Database', addr);
  const call = (client as unknown as { Scan(r: unknown, m: grpc.Metadata, o: unknown): grpc.ClientReadableStream<{ rows: { values: Record<string, { string_value?: string }> }[] }> }).Scan(
    { consistency: 'LINEARIZABLE', ...request },
    new grpc.Metadata(),
    { deadline: Date.now() + 60_000 },
  );
  return { call, close: () => client.close() };
}
