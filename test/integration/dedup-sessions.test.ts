// Client sessions on real processes (docs/raft-rules.md R19 D3, docs/engine.md "Client dedup"):
// the client library sends its session mark (completed_below) with every write, so a region's
// dedup table — which every manifest and raft snapshot carries — holds about what the client has
// in flight, not its last 1,024 answers. Before the marks, one client's 1,200 writes left 1,024
// results in the region's manifest; a full `make bench` left ~117,000 (8 MB of JSON encoded on
// every replica at every flush; docs/performance.md, Round 8).
import { expect } from 'chai';
import { ErrorCode } from '../../src/common/errors.js';
import { makeRegionId } from '../../src/engine/key.js';
import { loadLatestManifest } from '../../src/engine/manifest.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { LocalCluster } from '../support/local-cluster.js';

const WRITES = 1_200;

/** The dedup table's clients as a manifest carries it: [client, evictedBelow, [[id, hash, result]]]. */
type DedupClients = [string, number, unknown[]][];

describe('integration: client sessions keep the dedup table to what is in flight (R19 D3)', function () {
  this.timeout(180_000);
  let cluster: LocalCluster;

  before(async () => {
    cluster = new LocalCluster();
    await cluster.start();
  });
  after(async () => {
    await cluster?.stop();
  });

  it(`one client's ${WRITES.toLocaleString('en-US')} writes, four at a time, leave a handful of answers in the flushed manifest, and a late copy of an earlier request is refused, not applied`, async () => {
    const client = cluster.client({ deadlineMs: 20_000 });
    const schema = await client.createTable(
      'sessions',
      [
        { name: 'host', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
        { name: 'v', type: 'float64', semantic: 'field' },
      ],
      1,
    );
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < WRITES) {
          const i = next++;
          await client.write('sessions', [{ host: `h${i % 10}`, ts: 1_000 + i, v: i }]);
        }
      }),
    );
    expect(await client.flush('sessions'), 'the region flushed').to.equal(1);
    const regionId = makeRegionId(schema.tableId, 0);
    const latest = await loadLatestManifest(new FsObjectStore(cluster.objectStoreDir), regionId);
    expect(latest, 'a manifest in the object store').to.not.equal(undefined);
    const clients = (JSON.parse(latest!.manifest.dedup) as { clients: DedupClients }).clients;
    const ours = clients.filter(([id]) => id.startsWith(client.clientId));
    expect(ours.length, "the client's record").to.equal(1);
    const [, evictedBelow, results] = ours[0]!;
    // Four writers: at most four requests unfinished when the last write was made.
    expect(results.length, `answers remembered for ${WRITES} writes (1,024 without marks)`).to.be.at.most(4);
    expect(evictedBelow, 'the mark moved the client window up').to.be.greaterThan(0);

    // A late copy of a request below the mark (a raw call under the client's identity) is refused
    // as too old and changes nothing.
    const db = makeClient('Database', cluster.datanodeAddr(0));
    try {
      const late = { table: 'sessions', region_id: regionId, client_id: client.clientId, request_id: String(evictedBelow - 1), completed_below: String(evictedBelow - 1) };
      const rows = [{ values: { host: { string_value: 'h0' }, ts: { timestamp_ms_value: '1000' }, v: { float64_value: -1 } } }];
      const err = await call(db, 'Write', { ...late, rows }, 10_000).then(
        () => undefined,
        (e: unknown) => fromGrpcError(e),
      );
      expect(err?.code, 'a request id below the mark').to.equal(ErrorCode.RequestTooOld);
    } finally {
      db.close();
    }
    const row = await client.get('sessions', { host: 'h0', ts: 1_000 });
    expect(row?.row['v'], 'the row the first write made').to.equal(0);
  });
});
