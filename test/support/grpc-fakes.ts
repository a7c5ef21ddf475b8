// Scripted gRPC peers on loopback for the client and router tests: a fake metasrv answering
// GetRoutes, a fake datanode answering writes, a peer whose Database.Batch stream a test scripts,
// and the table they serve. Real grpc-js servers on 127.0.0.1, bound to a free port.
import * as grpc from '@grpc/grpc-js';
import type { RegionDbError } from '../../src/common/errors.js';
import type { TableSchema } from '../../src/engine/schema.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { toBatchError, toServiceError } from '../../src/rpc/status.js';

/** Binds `server` to a free port on 127.0.0.1; its address. */
export async function bindLoopback(server: grpc.Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return `127.0.0.1:${port}`;
}

/**
 * The servers and clients a describe's tests start, to be filled by them: after each test every
 * client is closed and every server shut down (mocha's afterEach, registered here).
 */
export function closedAfterEach(): { servers: grpc.Server[]; clients: { close(): void }[] } {
  const servers: grpc.Server[] = [];
  const clients: { close(): void }[] = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) s.forceShutdown();
  });
  return { servers, clients };
}

// ---- the client's side: a fake metasrv and fake datanodes ----

/** The table the fake metasrv describes: a tag and the timestamp. */
export const FAKE_TABLE = 't';

/** One region's route as the fake metasrv gives it: its peers (node id, address) and the node it names leader. */
export interface FakeRoute {
  readonly regionId: string;
  readonly peers: readonly { readonly nodeId: string; readonly addr: string }[];
  readonly leaderNodeId: string;
}

/**
 * A fake metasrv: GetRoutes describes FAKE_TABLE (id 1, one region per route) with `routes`.
 * `onLookup(n, answer)`: called for the n-th lookup (from 1), which it answers by calling `answer`
 * (at once by default; later, to hold it).
 */
export async function startFakeMetasrv(
  servers: grpc.Server[],
  routes: readonly FakeRoute[],
  onLookup: (n: number, answer: () => void) => void = (_n, answer) => answer(),
): Promise<string> {
  let lookups = 0;
  const server = new grpc.Server();
  server.addService(loadProtos().services.Meta.service, {
    GetRoutes: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      onLookup(++lookups, () =>
        cb(null, {
          table: {
            name: FAKE_TABLE,
            table_id: 1,
            region_count: routes.length,
            columns: [
              { name: 'host', type: 'STRING', semantic: 'TAG' },
              { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
            ],
          },
          routes: routes.map((r) => ({ region_id: r.regionId, peers: r.peers.map((p) => ({ node_id: p.nodeId, addr: p.addr })), leader_node_id: r.leaderNodeId })),
        }),
      );
    },
  });
  const addr = await bindLoopback(server);
  servers.push(server);
  return addr;
}

type BatchCall = grpc.ServerDuplexStream<{ id: string; write?: { region_id: string } }, unknown>;

/**
 * A fake datanode: every write, unary or on the Batch stream, is answered by `answer(regionId)` —
 * an error (as a DatabaseService answers it: toServiceError, toBatchError), or undefined for
 * applied (version 1, one row). Its address.
 */
export async function startFakeDatanode(servers: grpc.Server[], answer: (regionId: string) => RegionDbError | undefined): Promise<string> {
  const server = new grpc.Server();
  server.addService(loadProtos().services.Database.service, {
    Write: (call: grpc.ServerUnaryCall<{ region_id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const err = answer(call.request.region_id);
      if (err) cb(toServiceError(err) as grpc.ServiceError);
      else cb(null, { version: '1', rows_written: 1 });
    },
    Batch: (call: BatchCall) => {
      call.on('data', (req) => {
        const err = answer(req.write?.region_id ?? '');
        call.write(err ? { id: req.id, error: toBatchError(err) } : { id: req.id, write: { version: '1', rows_written: 1 } });
      });
      call.on('end', () => call.end());
    },
  });
  const addr = await bindLoopback(server);
  servers.push(server);
  return addr;
}

// ---- the router's side: a peer whose Batch stream the test scripts ----

/** The table the router tests forward: a tag, the timestamp and a string field `v`. */
export const forwardSchema: TableSchema = {
  name: 't',
  tableId: 7,
  regionCount: 1,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'v', type: 'string', semantic: 'field' },
  ],
};

/** A row of forwardSchema as the wire carries it (host a, ts 1, v `v`). */
export const forwardRow = (v: string) => ({
  values: {
    host: { kind: 'string_value' as const, string_value: 'a' },
    ts: { kind: 'timestamp_ms_value' as const, timestamp_ms_value: '1' },
    v: { kind: 'string_value' as const, string_value: v },
  },
});

/**
 * A peer on loopback whose Database.Batch stream hands each request to `onRequest` (which answers
 * on `call`, or not); the stream ends when the caller ends it, and its errors are ignored.
 */
export async function startBatchPeer<Req extends { id: string }>(
  onRequest: (req: Req, call: grpc.ServerDuplexStream<Req, unknown>) => void,
  options?: grpc.ServerOptions,
): Promise<{ server: grpc.Server; addr: string }> {
  const server = new grpc.Server(options);
  server.addService(loadProtos().services.Database.service, {
    Batch: (call: grpc.ServerDuplexStream<Req, unknown>) => {
      call.on('data', (req: Req) => onRequest(req, call));
      call.on('error', () => {});
      call.on('end', () => call.end());
    },
  });
  return { server, addr: await bindLoopback(server) };
}
