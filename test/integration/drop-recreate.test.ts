// Finding DT1 (docs/correctness.md; docs/ddl.md, "The drop fence"): a request that starts after
// DropTable answered is never acknowledged into the dropped table and never reads its rows. Real
// processes on loopback (three datanodes, every one hosting a replica of every region, heartbeats
// every 500 ms): the dropped table's replicas are still open on every node right after the
// answer, until a heartbeat closes them. Writes and reads go through every datanode by table
// name with no region id, so each node resolves the table itself (its local replicas first):
//   - a table dropped and not re-created: every write sent after the answer is refused NOT_FOUND;
//   - a table dropped and re-created under the same name at once: every write acknowledged after
//     the drop answered is read back from the new table once the old replicas are gone, and no
//     read returns a row of the old table.
import { expect } from 'chai';
import type { RegionDbClient, VersionedRow } from '../../src/client/client.js';
import { isRegionDbError } from '../../src/common/errors.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import type { ProtoRow } from '../../src/rpc/values.js';
import { LocalCluster } from '../support/local-cluster.js';
import type * as grpc from '@grpc/grpc-js';

const COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'int64', semantic: 'field' },
];
const BASE_TS = 1_700_000_000_000;
/** Writes each datanode sends after the drop answered (10 ms apart: past the next heartbeat). */
const WRITES_PER_NODE = 60;
/** Refusals of a read that say "nothing was read, try again": a leader change, no read index yet. */
const RETRY_READ: readonly string[] = ['UNAVAILABLE', 'PROPOSAL_DROPPED', 'NOT_LEADER', 'DEADLINE_EXCEEDED'];
/** Gets each node is sent at once when the acknowledged rows are read back. */
const READ_BATCH = 20;

interface Row {
  host: string;
  ts: number;
  v: number;
}
const protoRow = (r: Row): ProtoRow => ({ values: { host: { string_value: r.host }, ts: { timestamp_ms_value: String(r.ts) }, v: { int64_value: String(r.v) } } }) as unknown as ProtoRow;
const protoKey = (r: Row): ProtoRow => ({ values: { host: { string_value: r.host }, ts: { timestamp_ms_value: String(r.ts) } } }) as unknown as ProtoRow;
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

describe('integration: a dropped table never acknowledges a write after DropTable answered (finding DT1)', function () {
  this.timeout(120_000);
  const cluster = new LocalCluster();
  let client: RegionDbClient;
  let nodes: grpc.Client[] = [];

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 20_000 });
    nodes = cluster.datanodes.map((_, i) => makeClient('Database', cluster.datanodeAddr(i)));
  });

  after(async () => {
    for (const n of nodes) n.close();
    await cluster.stop();
  });

  let fillRequestId = 0;

  /**
   * Old rows through every node (each resolves the table and caches it; its replicas are opened).
   * Set-up, not under test: a write refused or of unknown outcome (a new table's regions still
   * electing on a loaded machine) is sent again with its request id, at most 25 times.
   */
  async function fillThroughEveryNode(table: string, tag: string): Promise<Row[]> {
    const rows: Row[] = [];
    for (let n = 0; n < nodes.length; n++) {
      for (let i = 0; i < 5; i++) {
        const row = { host: `${tag}-n${n}-${i}`, ts: BASE_TS + i, v: -1 };
        const request = { table, rows: [protoRow(row)], client_id: 'drop-recreate-fill', request_id: String(++fillRequestId) };
        for (let attempt = 1; ; attempt++) {
          try {
            await call(nodes[n]!, 'Write', request, 10_000);
            break;
          } catch (err) {
            if (attempt >= 25) throw err;
            await sleep(200);
          }
        }
        rows.push(row);
      }
    }
    return rows;
  }

  /**
   * From every node at once, WRITES_PER_NODE one-row writes by table name, 10 ms apart; the rows
   * acknowledged, and the codes of those refused.
   */
  async function writeThroughEveryNode(table: string, tag: string): Promise<{ acked: Row[]; refused: Map<string, number>; maybe: Row[] }> {
    const acked: Row[] = [];
    /** Rows whose write failed with an outcome it does not settle (anything but NOT_FOUND): they may be in the table. */
    const maybe: Row[] = [];
    const refused = new Map<string, number>();
    const firstMessage = new Map<string, string>();
    await Promise.all(
      nodes.map(async (node, n) => {
        for (let i = 0; i < WRITES_PER_NODE; i++) {
          const row = { host: `${tag}-n${n}`, ts: BASE_TS + i, v: i };
          try {
            await call(node, 'Write', { table, rows: [protoRow(row)] }, 5_000);
            acked.push(row);
          } catch (err) {
            const e = fromGrpcError(err);
            refused.set(e.code, (refused.get(e.code) ?? 0) + 1);
            if (e.code !== 'NOT_FOUND') maybe.push(row);
            if (!firstMessage.has(e.code)) firstMessage.set(e.code, `node ${n} write ${i}: ${e.message}`);
          }
          await sleep(10);
        }
      }),
    );
    // The first refusal of each code, for a failure's post-mortem.
    for (const [code, message] of firstMessage) console.log(`      first ${code}: ${message}`);
    return { acked, refused, maybe };
  }

  /**
   * A linearizable Get of `row` through `node`, sent again while it is refused as retriable
   * (RETRY_READ; at most 20 times, 200 ms apart). A refused read returned nothing, so sending it
   * again can only give more chances to see an old row, never fewer: under load a node answered
   * PROPOSAL_DROPPED "got no read index within 1000 ms; retry" and the read-back failed although
   * the row was there. Any other answer or error is the caller's.
   */
  async function getSettled(node: grpc.Client, table: string, row: Row): Promise<{ found: boolean }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call<{ found: boolean }>(node, 'Get', { table, key: protoKey(row), consistency: 'LINEARIZABLE' }, 10_000);
      } catch (err) {
        if (!RETRY_READ.includes(fromGrpcError(err).code) || attempt >= 20) throw err;
        await sleep(200);
      }
    }
  }

  /**
   * DropTable until it answers OK. An attempt that could not fence every region within its 5 s
   * (a region's leader slow to commit on a loaded machine) answers UNAVAILABLE and the table
   * stays, being dropped; docs/ddl.md says to send DropTable again to wait for it. The guarantee
   * under test starts when DropTable answered OK, so that is the event waited for (at most 10
   * attempts; each refusal printed).
   */
  async function dropUntilDone(table: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await client.dropTable(table);
        return;
      } catch (err) {
        if (!isRegionDbError(err) || err.code !== 'UNAVAILABLE' || attempt >= 10) throw err;
        console.log(`      DropTable attempt ${attempt}: ${err.message}`);
      }
    }
  }

  it('a table dropped (not re-created): every write sent through any node after the answer is refused NOT_FOUND', async () => {
    const table = 'dropfence_gone';
    await client.createTable(table, COLUMNS, 2);
    await fillThroughEveryNode(table, 'old');
    await dropUntilDone(table);
    const { acked, refused } = await writeThroughEveryNode(table, 'after');
    expect(acked, `writes acknowledged after the drop answered (refused: ${JSON.stringify([...refused])})`).to.deep.equal([]);
    // Refused as a table that does not exist; an attempt caught by a leader change of the old
    // region before the fence refused it may be reported outcome-unknown (it was not applied);
    // a node whose routes named no leader for an old region did not send the part at all:
    // NOT_LEADER, not applied (row Z6 of docs/correctness.md; seen once in 180 writes).
    expect(refused.get('NOT_FOUND') ?? 0, JSON.stringify([...refused])).to.be.greaterThan(0);
    for (const code of refused.keys()) expect(['NOT_FOUND', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'NOT_LEADER'], JSON.stringify([...refused])).to.include(code);
  });

  it('a table dropped and re-created at once: every write acknowledged after the drop is in the new table, no read returns the old rows', async () => {
    const table = 'dropfence_t';
    await client.createTable(table, COLUMNS, 2);
    const old = await fillThroughEveryNode(table, 'old');
    await dropUntilDone(table);
    // Reads of the old rows through every node right after the answer: never found.
    for (const node of nodes) {
      for (const row of old.slice(0, 3)) {
        const got = await getSettled(node, table, row).catch((err: unknown) => fromGrpcError(err));
        if (isRegionDbError(got)) expect(got.code, `Get of an old row: ${got.message}`).to.equal('NOT_FOUND');
        else expect(got.found, `an old row of the dropped table read back: ${JSON.stringify(row)}`).to.equal(false);
      }
    }
    // The re-create runs beside the writes: those before it is in the catalog are refused.
    const [, { acked, refused, maybe }] = await Promise.all([client.createTable(table, COLUMNS, 3), writeThroughEveryNode(table, 'new')]);
    console.log(`      after the drop: ${acked.length} writes acknowledged, refused ${JSON.stringify([...refused])}`);
    expect(acked.length, 'some writes reached the re-created table (else this test checks nothing)').to.be.greaterThan(0);
    // Past a few heartbeats: the old replicas are closed and destroyed everywhere.
    await sleep(2_000);
    // Every acknowledged row read back through every node: up to 540 linearizable Gets. One at a
    // time they took most of the test's 120 s under load (a run at load ≈ 34 timed out in this
    // loop after all of its writes had been acknowledged), so each node reads READ_BATCH at once.
    await Promise.all(
      nodes.map(async (node) => {
        for (let from = 0; from < acked.length; from += READ_BATCH) {
          await Promise.all(
            acked.slice(from, from + READ_BATCH).map(async (row) => {
              const got = await getSettled(node, table, row);
              expect(got.found, `acknowledged write ${JSON.stringify(row)} is not in the re-created table`).to.equal(true);
            }),
          );
        }
      }),
    );
    const all = await client.scan(table);
    const stale = all.filter((r) => String(r.row['host']).startsWith('old-'));
    expect(stale, 'rows of the dropped table read from the re-created one').to.deep.equal([]);
    // Nothing but what was written after the drop: each row acknowledged (read back above by
    // every node), or one whose write failed without settling its outcome (a 5 s deadline passed,
    // UNAVAILABLE "outcome unknown"): under load such a write may still have been applied, and
    // this assertion, once "exactly the acknowledged rows", would then fail on a correct table.
    const key = (r: Row | VersionedRow['row']) => `${String(r['host'])}/${Number(r['ts'])}`;
    const written = new Set([...acked, ...maybe].map(key));
    const unexpected = all.map((r) => key(r.row)).filter((k) => !written.has(k));
    expect(unexpected, 'rows in the re-created table that no write after the drop sent').to.deep.equal([]);
    const ackedKeys = new Set(acked.map(key));
    const appliedUnknown = all.filter((r) => !ackedKeys.has(key(r.row))).length;
    if (appliedUnknown > 0) console.log(`      ${appliedUnknown} of the ${maybe.length} writes of unknown outcome were applied`);
    expect(all.length, 'the re-created table holds the acknowledged rows, each once, and applied writes of unknown outcome').to.equal(ackedKeys.size + appliedUnknown);
  });
});
