// Which node the client library avoids after an UNAVAILABLE (docs/clients.md, "Which node is
// avoided"): only one its own call could not reach — a status no regiondb handler made — never a
// live node that answered UNAVAILABLE because its forward to a dead leader failed.
//
// Real gRPC on loopback: a fake metasrv whose routes name a live "survivor" as the leader of two
// regions, with a second live replica beside it. The survivor answers the first write to region
// A as a datanode's router does when its forward to the region's old leader failed in transit:
// Router.part's error (UNAVAILABLE, no leader hint) through the same functions a DatabaseService
// answers with (toBatchError on the Batch stream, toServiceError on a unary call). Every later
// write it answers. The other replica answers every write too and counts them.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegionDbClient } from '../../src/client/client.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { freePort } from '../../src/cmd/process-cluster.js';
import { makeRegionId, regionNumberOf, validateRow } from '../../src/engine/index.js';
import { BatchStream } from '../../src/rpc/batch-stream.js';
import { databaseService } from '../../src/rpc/batch-wire.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { makeClient } from '../../src/rpc/server.js';
import { failedInTransit, fromGrpcError, toBatchError, toServiceError } from '../../src/rpc/status.js';
import { FAKE_TABLE as TABLE, closedAfterEach, bindLoopback, startFakeDatanode, startFakeMetasrv } from '../support/grpc-fakes.js';

type BatchCall = grpc.ServerDuplexStream<{ id: string; request: string; write?: { region_id: string } }, unknown>;

const REGION_A = String(1n << 32n);
const REGION_B = String((1n << 32n) + 1n);

/** What a survivor's router answers when its forward to the dead leader failed (single region: the part's own error). */
const forwardFailed = () =>
  new RegionDbError(ErrorCode.Unavailable, `region ${REGION_A}: No connection established. Last error: connect ECONNREFUSED (forwarding to the leader)`);

interface Node {
  addr: string;
  /** Writes answered, by region. */
  writes: Map<string, number>;
}

/** A datanode that answers writes; region `failing` gets forwardFailed() on its first write (`always`: on every one). */
async function startNode(servers: grpc.Server[], failing?: string, always = false): Promise<Node> {
  const node: Node = { addr: '', writes: new Map() };
  let failed = false;
  node.addr = await startFakeDatanode(servers, (regionId) => {
    if (regionId === failing && (always || !failed)) {
      failed = true;
      return forwardFailed();
    }
    node.writes.set(regionId, (node.writes.get(regionId) ?? 0) + 1);
    return undefined;
  });
  return node;
}

/** The fake metasrv: both regions led by `leader`, `other` the second replica of each. */
function startMeta(servers: grpc.Server[], leader: string, other: string): Promise<string> {
  const peers = [
    { nodeId: '1', addr: leader },
    { nodeId: '2', addr: other },
  ];
  return startFakeMetasrv(
    servers,
    [REGION_A, REGION_B].map((regionId) => ({ regionId, peers, leaderNodeId: '1' })),
  );
}

/** A row of each region (the table's regions: FNV-1a of the tag, modulo 2). */
async function rowsOf(client: RegionDbClient): Promise<Map<string, { host: string; ts: number }>> {
  const { schema } = await client.describe(TABLE);
  const rows = new Map<string, { host: string; ts: number }>();
  for (let i = 0; rows.size < 2; i++) {
    const row = { host: `h${i}`, ts: 1 };
    const regionId = makeRegionId(schema.tableId, regionNumberOf(schema, validateRow(schema, row)));
    if (!rows.has(regionId)) rows.set(regionId, row);
  }
  return rows;
}

const avoided = (client: RegionDbClient) => [...(client as unknown as { downUntil: Map<string, number> }).downUntil.keys()];

describe('client: which node is avoided after UNAVAILABLE', function () {
  this.timeout(30_000);
  const { servers, clients } = closedAfterEach();

  for (const batchStream of [true, false]) {
    it(`a live node that answered UNAVAILABLE because its forward failed is not avoided (${batchStream ? 'Batch stream' : 'unary calls'})`, async () => {
      const survivor = await startNode(servers, REGION_A);
      const other = await startNode(servers);
      const meta = await startMeta(servers, survivor.addr, other.addr);
      const client = new RegionDbClient({ metasrv: meta, batchStream, attemptTimeoutMs: 2000, deadlineMs: 10_000 });
      clients.push(client);
      const rows = await rowsOf(client);
      await client.write(TABLE, [rows.get(REGION_A)!]); // refused once by the survivor, then retried
      await client.write(TABLE, [rows.get(REGION_B)!]);
      expect(avoided(client), 'nodes the client avoids').to.deep.equal([]);
      expect(other.writes.size, 'writes the other replica got (the survivor was avoided)').to.equal(0);
      expect(Object.fromEntries(survivor.writes)).to.deep.equal({ [REGION_A]: 1, [REGION_B]: 1 });
    });
  }

  it('a write every node answered UNAVAILABLE after forwarding stays "outcome unknown" (not "not applied"), and no node is avoided', async () => {
    const survivor = await startNode(servers, REGION_A, true);
    const other = await startNode(servers, REGION_A, true);
    const meta = await startMeta(servers, survivor.addr, other.addr);
    const client = new RegionDbClient({ metasrv: meta, attemptTimeoutMs: 500, deadlineMs: 1000 });
    clients.push(client);
    const rows = await rowsOf(client);
    const err = await client.write(TABLE, [rows.get(REGION_A)!]).then(
      () => expect.fail('applied'),
      (e: unknown) => e,
    );
    expect(isRegionDbError(err, ErrorCode.DeadlineExceeded), String(err)).to.equal(true);
    expect((err as RegionDbError).details['notApplied']).to.equal(undefined);
    expect(avoided(client)).to.deep.equal([]);
  });

  it('a node the call could not reach (nothing listens) is still avoided: the next region goes to the live replica at once', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const live = await startNode(servers);
    const meta = await startMeta(servers, dead, live.addr);
    const client = new RegionDbClient({ metasrv: meta, attemptTimeoutMs: 2000, deadlineMs: 10_000 });
    clients.push(client);
    const rows = await rowsOf(client);
    await client.write(TABLE, [rows.get(REGION_A)!]);
    expect(avoided(client)).to.deep.equal([dead]);
    await client.write(TABLE, [rows.get(REGION_B)!]);
    expect(Object.fromEntries(live.writes)).to.deep.equal({ [REGION_A]: 1, [REGION_B]: 1 });
  });
});

describe('rpc: an error answered by a node, or a call failed in transit (failedInTransit)', function () {
  this.timeout(30_000);
  const { servers } = closedAfterEach();

  it("regiondb's own UNAVAILABLE (unary or Batch) is an answer; the same gRPC code without regiondb's code is a failure in transit", () => {
    const answered = toServiceError(forwardFailed());
    expect(failedInTransit(fromGrpcError(answered))).to.equal(false);
    expect(failedInTransit(fromGrpcError({ code: grpc.status.UNAVAILABLE, details: 'connect ECONNREFUSED', metadata: new grpc.Metadata() }))).to.equal(true);
    expect(failedInTransit(fromGrpcError({ code: grpc.status.INTERNAL, details: 'Received RST_STREAM with code 2', metadata: new grpc.Metadata() }))).to.equal(true);
    // Never sent on: a node answering its own forward's transit failure answers without the mark.
    const forwarded = fromGrpcError({ code: grpc.status.UNAVAILABLE, details: 'connect ECONNREFUSED', metadata: new grpc.Metadata() });
    expect(failedInTransit(fromGrpcError(toServiceError(forwarded)))).to.equal(false);
    expect(toBatchError(forwarded).details).to.deep.equal({});
  });

  it('operations in flight on a Batch stream whose connection breaks fail in transit; a stream the server ends with its own status does not', async () => {
    const { services } = loadProtos();
    for (const [how, transit] of [
      ['a status without regiondb code', true],
      ["regiondb's own status", false],
      ['an end without a status', true],
    ] as const) {
      const server = new grpc.Server();
      server.addService(services.Database.service, {
        Batch: (call: BatchCall) => {
          call.once('data', () => {
            if (how === 'an end without a status') return call.end();
            const status = how === "regiondb's own status" ? toServiceError(new RegionDbError(ErrorCode.InvalidArgument, 'a malformed message')) : { code: grpc.status.UNAVAILABLE, details: 'going away' };
            call.emit('error', Object.assign(new Error('stream failed'), status));
          });
        },
      });
      const addr = await bindLoopback(server);
      servers.push(server);
      const client = makeClient('Database', addr, {}, databaseService());
      const stream = new BatchStream(client);
      try {
        const err = await stream.request('write', { table: TABLE, region_id: REGION_A, rows: [] }, 5000).then(
          () => expect.fail('answered'),
          (e: unknown) => e,
        );
        expect(isRegionDbError(err, ErrorCode.Unavailable), `${how}: ${String(err)}`).to.equal(true);
        expect(failedInTransit(err as RegionDbError), how).to.equal(transit);
      } finally {
        stream.close();
        client.close();
      }
    }
  });
});
