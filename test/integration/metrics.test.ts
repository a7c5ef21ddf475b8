// Issue 9 acceptance: the metrics documented in docs/observability.md exist on the processes of
// a real cluster (metasrv + 3 datanodes from dist/), and the write path's counters move when
// rows are written. The documented names are read from the doc's tables, so the doc and the
// processes cannot drift apart.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { LocalCluster } from '../support/local-cluster.js';

const DOC = join(import.meta.dirname, '..', '..', 'docs', 'observability.md');
const TABLE = 'metrics_probe';
const BASE_TS = 1_700_000_000_000;

interface DocumentedMetric {
  readonly name: string;
  readonly type: string;
  readonly process: 'datanode' | 'metasrv' | 'all';
}

/** Rows `| \`name\` | type | process | ...` of the doc's tables. */
function documentedMetrics(): DocumentedMetric[] {
  const out: DocumentedMetric[] = [];
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const m = /^\| `(regiondb_[a-z0-9_]+)` \| (counter|gauge|histogram) \| (datanode|metasrv|all) \|/.exec(line);
    if (m) out.push({ name: m[1]!, type: m[2]!, process: m[3] as DocumentedMetric['process'] });
  }
  return out;
}

/** The Prometheus text of one process, parsed into declared types and summed samples. */
interface Scrape {
  readonly types: Map<string, string>;
  /** Sum over every label set of each sample name (`x_total`, `x_count`, ...). */
  readonly sums: Map<string, number>;
}

async function scrape(httpPort: number): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).to.equal(200);
  const types = new Map<string, string>();
  const sums = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (s) sums.set(s[1]!, (sums.get(s[1]!) ?? 0) + Number(s[3]));
  }
  return { types, sums };
}

const total = (scrapes: readonly Scrape[], sample: string) => scrapes.reduce((n, s) => n + (s.sums.get(sample) ?? 0), 0);

describe('integration: metrics of a real cluster (issue 9)', function () {
  this.timeout(60_000);
  const cluster = new LocalCluster();
  let client: RegionDbClient;
  const documented = documentedMetrics();

  before(async () => {
    await cluster.start();
    client = cluster.client({ deadlineMs: 20_000 });
    await client.createTable(
      TABLE,
      [
        { name: 'host', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
        { name: 'v', type: 'float64', semantic: 'field' },
      ],
      3,
    );
  });

  after(async () => {
    await cluster.stop();
  });

  const datanodeScrapes = () => Promise.all(cluster.datanodes.map((d) => scrape(d.httpPort)));

  it('the doc lists the metrics of every part (raft, WAL, gRPC, metasrv)', () => {
    const names = documented.map((m) => m.name);
    for (const prefix of ['regiondb_raft_', 'regiondb_wal_', 'regiondb_grpc_server_', 'regiondb_metasrv_']) {
      expect(names.some((n) => n.startsWith(prefix)), `${prefix}* in docs/observability.md`).to.equal(true);
    }
  });

  it('every documented datanode metric exists, with its documented type, on every datanode', async () => {
    for (const [i, s] of (await datanodeScrapes()).entries()) {
      for (const m of documented.filter((d) => d.process !== 'metasrv')) {
        expect(s.types.get(m.name), `datanode${i + 1}: ${m.name}`).to.equal(m.type);
      }
    }
  });

  it('every documented metasrv metric exists, with its documented type, on the metasrv', async () => {
    const s = await scrape(cluster.metasrv.httpPort);
    for (const m of documented.filter((d) => d.process !== 'datanode')) {
      expect(s.types.get(m.name), `metasrv: ${m.name}`).to.equal(m.type);
    }
  });

  it('writes move the raft, WAL, gRPC and request counters; reads move the read counters', async () => {
    const before = await datanodeScrapes();
    const rows = 60;
    for (let i = 0; i < rows; i += 10) {
      await client.write(
        TABLE,
        Array.from({ length: 10 }, (_, j) => ({ host: `h${(i + j) % 7}`, ts: BASE_TS + i + j, v: i + j })),
      );
    }
    const found = await client.get(TABLE, { host: 'h0', ts: BASE_TS }, 'linearizable');
    expect(found?.row['v']).to.equal(0);
    const after = await datanodeScrapes();
    const moved = (sample: string) => total(after, sample) - total(before, sample);
    expect(moved('regiondb_rows_written_total')).to.equal(rows);
    expect(moved('regiondb_writes_total')).to.be.at.least(rows / 10);
    expect(moved('regiondb_raft_proposals_total')).to.be.at.least(rows / 10);
    expect(moved('regiondb_raft_commit_duration_seconds_count')).to.be.at.least(rows / 10);
    expect(moved('regiondb_raft_commit_duration_seconds_sum')).to.be.greaterThan(0);
    expect(moved('regiondb_wal_syncs_total')).to.be.at.least(1);
    expect(moved('regiondb_wal_sync_duration_seconds_count')).to.be.at.least(1);
    expect(moved('regiondb_wal_batch_operations_count')).to.be.at.least(1);
    expect(moved('regiondb_wal_written_bytes_total')).to.be.greaterThan(0);
    expect(moved('regiondb_raft_messages_sent_total')).to.be.greaterThan(0);
    expect(moved('regiondb_grpc_server_handled_total')).to.be.at.least(rows / 10 + 1);
    expect(moved('regiondb_grpc_server_handling_seconds_count')).to.be.at.least(rows / 10 + 1);
    expect(moved('regiondb_reads_total')).to.be.at.least(1);
    // Every region has had a leader: elections and leader changes were counted on some node.
    expect(total(after, 'regiondb_raft_elections_total')).to.be.at.least(1);
    expect(total(after, 'regiondb_raft_leader_changes_total')).to.be.at.least(1);
    expect(total(after, 'regiondb_raft_term_max')).to.be.at.least(1);
  });

  it('the metasrv counts heartbeats, its gRPC calls and the phi of every datanode', async () => {
    const s = await scrape(cluster.metasrv.httpPort);
    expect(s.sums.get('regiondb_metasrv_heartbeats_total') ?? 0).to.be.greaterThan(0);
    expect(s.sums.get('regiondb_grpc_server_handled_total') ?? 0).to.be.greaterThan(0);
    const text = await (await fetch(`http://127.0.0.1:${cluster.metasrv.httpPort}/metrics`)).text();
    for (let id = 1; id <= cluster.datanodes.length; id++) expect(text).to.match(new RegExp(`regiondb_metasrv_node_phi\\{node_id="${id}"\\}`));
  });

  it('the memtable gauge (the node-wide total backpressure reads, kept by the memtables) equals the sum of the replicas\' memtable bytes, also after a table\'s replicas are destroyed', async () => {
    const dropped = 'metrics_memtable_probe';
    await client.createTable(
      dropped,
      [
        { name: 'host', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
        { name: 'v', type: 'float64', semantic: 'field' },
      ],
      2,
    );
    for (let i = 0; i < 40; i += 10) await client.write(dropped, Array.from({ length: 10 }, (_, j) => ({ host: `p${(i + j) % 5}`, ts: BASE_TS + i + j, v: i + j })));
    const { routes } = await client.describe(dropped);
    const droppedRegions = new Set([...routes.values()].map((r) => r.regionId));
    /** Per datanode: gauge and the sum over Admin.Status, read until two status reads agree around the scrape (a flush may land in between). */
    const compare = async (i: number) => {
      let last = '';
      for (let attempt = 0; attempt < 50; attempt++) {
        const sum = async () => (await cluster.status(i)).replicas.reduce((n, r) => n + Number((r as { memtable_bytes?: string }).memtable_bytes ?? 0), 0);
        const before = await sum();
        const gauge = await cluster.metric(i, 'regiondb_engine_memtable_bytes');
        const after = await sum();
        if (before === after) return { gauge, sum: after };
        last = `${before} then ${after}`;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`datanode ${i + 1}: memtables never still (${last})`);
    };
    const hosted = async (i: number) => (await cluster.status(i)).replicas.filter((r) => droppedRegions.has(r.region_id)).length;
    let withTable = 0;
    for (let i = 0; i < cluster.datanodes.length; i++) {
      const { gauge, sum } = await compare(i);
      expect(gauge, `datanode ${i + 1} while the table exists`).to.equal(sum);
      withTable += sum;
    }
    expect(withTable, 'the probe rows are in memtables somewhere').to.be.greaterThan(0);
    await client.dropTable(dropped);
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < cluster.datanodes.length; i++) {
      while ((await hosted(i)) > 0) {
        if (Date.now() > deadline) throw new Error(`datanode ${i + 1} still hosts replicas of the dropped table`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const { gauge, sum } = await compare(i);
      expect(gauge, `datanode ${i + 1} after its replicas of the dropped table were destroyed`).to.equal(sum);
    }
  });
});
