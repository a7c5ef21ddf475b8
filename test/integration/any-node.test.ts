// Issue 18: any datanode accepts any rows. Real processes on loopback: every region's leader is
// moved to datanode1, so datanode2 is a follower of every region; 1,000 rows go to datanode2 in
// requests of 100 rows that each span every region, with request ids, one request retried after
// a forced timeout; everything is read back from datanode3, every row exactly once, in
// primary-key order. The same from Python (stubs generated from proto/ by protoc, no regiondb
// library) when Debian's python3-grpcio and protobuf-compiler-grpc are installed, and from Go
// (protoc-gen-go and protoc-gen-go-grpc, gRPC-Go) when Debian's Go toolchain and packages are.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegionDbClient } from '../../src/client/client.js';
import { compareBytes, encodePrimaryKey, makeRegionId, regionNumberOf } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import { BatchStream } from '../../src/rpc/batch-stream.js';
import { databaseService } from '../../src/rpc/batch-wire.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { type ProtoRow, fromProtoRow, fromProtoSchema } from '../../src/rpc/values.js';
import { LocalCluster, waitUntil } from '../support/local-cluster.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const TABLE = 'anynode';
const PY_TABLE = 'anynode_py';
const GO_TABLE = 'anynode_go';
const REGIONS = 4;
const ROWS = 1000;
const PER_REQUEST = 100;
const BASE_TS = 1_700_000_000_000;
const HOSTS = 37;

const rowAt = (i: number): Row => ({ host: `h${i % HOSTS}`, ts: BASE_TS + i, v: i });
const protoKey = (r: Row): ProtoRow => ({ values: { host: { string_value: r['host'] }, ts: { timestamp_ms_value: String(r['ts']) } } }) as unknown as ProtoRow;
const protoRow = (r: Row): ProtoRow =>
  ({ values: { host: { string_value: r['host'] }, ts: { timestamp_ms_value: String(r['ts']) }, v: { int64_value: String(r['v']) } } }) as unknown as ProtoRow;

interface RegionOutcome {
  region_id: string;
  outcome: string;
  version: string;
  rows: number;
}
interface WriteResponse {
  version: string;
  rows_written: number;
  regions: RegionOutcome[];
}

const PYTHON = '/usr/bin/python3';
function pythonToolsMissing(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  if (spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf']).status !== 0) return 'python3-grpcio / python3-protobuf are not installed (apt-get install python3-grpcio python3-protobuf)';
  if (spawnSync('protoc', ['--version']).status !== 0) return 'protoc is missing (apt-get install protobuf-compiler)';
  if (!existsSync('/usr/bin/grpc_python_plugin')) return 'grpc_python_plugin is missing (apt-get install protobuf-compiler-grpc)';
  return undefined;
}

const GO_PACKAGES = 'apt-get install golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev';
/** Go without modules (GOPATH): the generated package and gRPC-Go from Debian's /usr/share/gocode, nothing downloaded. */
const GO_SOURCES = '/usr/share/gocode';
/** How long the Go test waits for the client's build (buildGoClient) once it needs it. */
const GO_BUILD_WAIT_MS = 180_000;
function goToolsMissing(): string | undefined {
  if (spawnSync('go', ['version']).status !== 0) return `go is missing (${GO_PACKAGES})`;
  if (spawnSync('protoc', ['--version']).status !== 0) return `protoc is missing (${GO_PACKAGES})`;
  // protoc-gen-go 1.20+ (the APIv2 generator) knows proto3 optional fields; the old 1.3/1.5 ones do not.
  const gen = spawnSync('protoc-gen-go', ['--version'], { encoding: 'utf8' });
  const version = /protoc-gen-go v1\.(\d+)/.exec(gen.stdout ?? '');
  if (gen.status !== 0 || !version || Number(version[1]) < 20) return `protoc-gen-go v1.20 or later is missing (${GO_PACKAGES})`;
  if (spawnSync('protoc-gen-go-grpc', ['--version']).status !== 0) return `protoc-gen-go-grpc is missing (${GO_PACKAGES})`;
  if (!existsSync(join(GO_SOURCES, 'src', 'google.golang.org', 'grpc'))) return `gRPC-Go sources are missing (${GO_PACKAGES})`;
  // gRPC-Go 1.33 marshals through github.com/golang/protobuf: v1.3 cannot marshal APIv2 messages (v1.4+ can).
  if (existsSync(join(GO_SOURCES, 'src', 'github.com', 'golang', 'protobuf', 'proto', 'table_marshal.go'))) return `github.com/golang/protobuf is v1.3 (${GO_PACKAGES})`;
  return undefined;
}

interface Finished {
  readonly status: number | null;
  readonly stderr: string;
}

/** Runs a command to its end; `kill` stops it (SIGKILL) if it still runs. */
function runToEnd(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { done: Promise<Finished>; kill: () => void } {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<Finished>((ok) => {
    child.once('error', (err) => ok({ status: null, stderr: String(err) }));
    child.once('close', (status) => ok({ status, stderr }));
  });
  return { done, kill: () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL') };
}

/**
 * The Go client built from protoc-generated code in `work`: protoc, then `go build` (gRPC-Go
 * compiled from source into a fresh cache: half a minute of CPU and more). Started with the
 * file's cluster, so that it runs while the cluster starts and the first tests wait on timers;
 * at `nice` 10, so those tests get the CPU first. It has no deadline of its own: the Go test
 * gives it 180 s from when it waits for it (the bound `go build` had when the test ran it
 * itself), then kills it. The Go test checks both steps' exit statuses.
 */
function buildGoClient(work: string): { result: Promise<{ protoc: Finished; build?: Finished; binary: string }>; kill: () => void } {
  let current: { kill: () => void } | undefined;
  let killed = false;
  const binary = join(work, 'any_node_client');
  const result = (async () => {
    // The generated package lands at its go_package import path under GOPATH/src.
    mkdirSync(join(work, 'src', 'anynodeclient'), { recursive: true });
    const gen = runToEnd('protoc', [
      `-I${join(ROOT, 'proto')}`,
      `--go_out=${join(work, 'src')}`,
      `--go-grpc_out=${join(work, 'src')}`,
      ...['common', 'database'].map((f) => join(ROOT, 'proto', 'regiondb', 'v1', `${f}.proto`)),
    ]);
    current = gen;
    const protoc = await gen.done;
    if (protoc.status !== 0 || killed) return { protoc, binary };
    copyFileSync(join(ROOT, 'test', 'clients', 'go', 'any_node_client.go'), join(work, 'src', 'anynodeclient', 'main.go'));
    const env = { ...process.env, GO111MODULE: 'off', GOPATH: `${work}:${GO_SOURCES}`, GOCACHE: join(work, 'cache'), GOFLAGS: '' };
    const go = runToEnd('nice', ['-n', '10', 'go', 'build', '-o', binary, 'anynodeclient'], { cwd: work, env });
    current = go;
    return { protoc, build: await go.done, binary };
  })();
  return {
    result,
    kill: () => {
      killed = true;
      current?.kill();
    },
  };
}

/**
 * Runs a client of another language (test/clients/<language>) to its end (killed after 120 s)
 * and checks the JSON summary it prints last: every row read back once, in key order, the timed
 * out request retried by its id, the repeat answered from the dedup records, the limit a prefix.
 */
async function expectClientChecksHeld(language: string, command: string, args: string[]): Promise<void> {
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
  expect(result.code, `${language} client failed:\n${result.stdout}\n${result.stderr}`).to.equal(0);
  const summary = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  expect(summary).to.include({ read: ROWS, distinct: ROWS, every_row_once: true, ordered: true, timed_out: 1, dedup_same_versions: true, limit_is_prefix: true });
}

describe('integration: any datanode accepts any rows (issue 18)', function () {
  this.timeout(240_000);
  const cluster = new LocalCluster();
  let failed = false;
  const schemas = new Map<string, TableSchema>();
  let nodeIds: number[] = [];
  const WRITER = 1; // datanode2: a follower of every region once the leaders moved
  const READER = 2; // datanode3

  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });
  const goMissing = goToolsMissing();
  let goWork: string | undefined;
  let goClient: ReturnType<typeof buildGoClient> | undefined;
  after(async () => {
    await cluster.stop({ keepData: failed });
    // A build still running (an earlier test failed, or the Go test gave up on it) is stopped
    // before its directory goes.
    goClient?.kill();
    await goClient?.result;
    if (goWork) rmSync(goWork, { recursive: true, force: true });
  });

  before(async () => {
    if (!goMissing) {
      goWork = mkdtempSync(join(tmpdir(), 'regiondb-goclient-'));
      goClient = buildGoClient(goWork);
    }
    await cluster.start();
    const meta = makeClient('Meta', cluster.metasrvAddr);
    try {
      for (const name of [TABLE, PY_TABLE, GO_TABLE]) {
        const res = await call<{ table: Parameters<typeof fromProtoSchema>[0] }>(
          meta,
          'CreateTable',
          {
            name,
            columns: [
              { name: 'host', type: 'STRING', semantic: 'TAG' },
              { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
              { name: 'v', type: 'INT64', semantic: 'FIELD' },
            ],
            region_count: REGIONS,
          },
          20_000,
        );
        schemas.set(name, fromProtoSchema(res.table));
      }
    } finally {
      meta.close();
    }
    nodeIds = await Promise.all([0, 1, 2].map(async (i) => Number((await cluster.status(i) as unknown as { node_id: string }).node_id)));
  });

  /** Moves the leader of every region of `table` to datanode1 (elections under load may move them away again). */
  async function leadersToDatanode1(table: string): Promise<void> {
    const schema = schemas.get(table)!;
    const regionIds = Array.from({ length: REGIONS }, (_, n) => makeRegionId(schema.tableId, n));
    await waitUntil('datanode1 leads every region', 60_000, async () => {
      const statuses = await Promise.all([0, 1, 2].map((i) => cluster.status(i)));
      let all = true;
      for (const regionId of regionIds) {
        const leaderAt = statuses.findIndex((s) => s.replicas.some((r) => r.region_id === regionId && r.role === 'leader'));
        if (leaderAt === 0) continue;
        all = false;
        if (leaderAt > 0) {
          const admin = makeClient('Admin', cluster.datanodeAddr(leaderAt));
          await call(admin, 'TransferLeader', { region_id: regionId, to_node_id: String(nodeIds[0]) }, 3000).catch(() => undefined);
          admin.close();
        }
      }
      return all ? true : undefined;
    });
  }

  /** datanode2 leads no region of `table`: every request sent to it is forwarded. */
  async function expectWriterFollowsEveryRegion(table: string): Promise<void> {
    await leadersToDatanode1(table);
    const schema = schemas.get(table)!;
    const regionIds = new Set(Array.from({ length: REGIONS }, (_, n) => makeRegionId(schema.tableId, n)));
    const status = await cluster.status(WRITER);
    const led = status.replicas.filter((r) => r.role === 'leader' && regionIds.has(r.region_id)).map((r) => r.region_id);
    expect(led, 'datanode2 leads no region of the table (the writes go to a follower)').to.deep.equal([]);
  }

  it('takes 1,000 rows in requests of 100 spanning every region at a follower, retries a timed-out request by its id, and another node reads every row exactly once in key order', async () => {
    const schema = schemas.get(TABLE)!;
    await expectWriterFollowsEveryRegion(TABLE);
    const writer = makeClient('Database', cluster.datanodeAddr(WRITER));
    const reader = makeClient('Database', cluster.datanodeAddr(READER));
    try {
      const clientId = `it-any-node-${process.pid}`;
      const firstId = Date.now() * 1000;
      const requests = Array.from({ length: ROWS / PER_REQUEST }, (_, k) => {
        const rows = Array.from({ length: PER_REQUEST }, (_, j) => rowAt(k * PER_REQUEST + j));
        expect(new Set(rows.map((r) => regionNumberOf(schema, r))).size, `request ${k} spans every region`).to.equal(REGIONS);
        return { table: TABLE, rows: rows.map(protoRow), client_id: clientId, request_id: String(firstId + k) };
      });
      const answers: WriteResponse[] = [];
      const FORCED = 3;
      let timedOut = 0;
      for (const [k, req] of requests.entries()) {
        if (k === FORCED) {
          // Deadlines short enough to expire while the node forwards: outcome unknown, retried below.
          for (const deadlineMs of [20, 10, 5, 2, 1]) {
            try {
              await call(writer, 'Write', req, deadlineMs);
            } catch (err) {
              if ((err as grpc.ServiceError).code !== grpc.status.DEADLINE_EXCEEDED) throw err;
              timedOut++;
              break;
            }
          }
          await new Promise((r) => setTimeout(r, 500));
        }
        const res = await call<WriteResponse>(writer, 'Write', req, 10_000);
        expect(res.rows_written).to.equal(PER_REQUEST);
        expect(res.regions.map((r) => r.outcome)).to.deep.equal(Array(REGIONS).fill('OUTCOME_APPLIED'));
        expect(res.regions.reduce((n, r) => n + r.rows, 0)).to.equal(PER_REQUEST);
        answers.push(res);
      }
      expect(timedOut, 'one request timed out before its retry').to.equal(1);

      // The same request id again: every region answers from its dedup record (same versions).
      const again = await call<WriteResponse>(writer, 'Write', requests[5], 10_000);
      expect(again.regions.map((r) => [r.region_id, r.version])).to.deep.equal(answers[5]!.regions.map((r) => [r.region_id, r.version]));

      // Everything back from datanode3 with one whole-table scan: each row once, in key order.
      const scan = async (limit: number): Promise<{ row: Row; version: string }[]> => {
        const out: { row: Row; version: string }[] = [];
        const stream = (reader as unknown as { Scan(r: unknown, o: unknown): AsyncIterable<{ rows: ProtoRow[]; versions: string[] }> }).Scan(
          { table: TABLE, limit: String(limit) },
          { deadline: Date.now() + 30_000 },
        );
        try {
          for await (const chunk of stream) {
            for (const [i, r] of chunk.rows.entries()) out.push({ row: fromProtoRow(r, 'row'), version: chunk.versions[i]! });
          }
        } catch (err) {
          throw fromGrpcError(err);
        }
        return out;
      };
      const all = await scan(0);
      expect(all.length).to.equal(ROWS);
      const seen = new Map<number, number>();
      for (const { row } of all) seen.set(row['v'] as number, (seen.get(row['v'] as number) ?? 0) + 1);
      const wrong = Array.from({ length: ROWS }, (_, i) => i).filter((i) => seen.get(i) !== 1);
      expect(wrong, 'rows not read exactly once').to.deep.equal([]);
      for (const { row } of all) expect(row).to.deep.equal(rowAt(row['v'] as number));
      for (let i = 1; i < all.length; i++) {
        expect(compareBytes(encodePrimaryKey(schema, all[i - 1]!.row), encodePrimaryKey(schema, all[i]!.row)), `rows ${i - 1} and ${i} in key order`).to.be.lessThan(0);
      }
      // The timed-out request's rows carry the version of the retry's answer (applied once).
      const forcedVersions = new Map(answers[FORCED]!.regions.map((r) => [r.region_id, r.version]));
      for (const { row, version } of all.filter((x) => Math.floor((x.row['v'] as number) / PER_REQUEST) === FORCED)) {
        expect(version).to.equal(forcedVersions.get(makeRegionId(schema.tableId, regionNumberOf(schema, row))));
      }
      const limited = await scan(250);
      expect(limited.map((x) => x.row)).to.deep.equal(all.slice(0, 250).map((x) => x.row));
      // The TypeScript client library routes itself (region by region on the wire) and answers the
      // same: the table in key order, the limit applied to that order.
      const library = new RegionDbClient({ metasrv: cluster.metasrvAddr });
      try {
        expect((await library.scan(TABLE)).map((x) => x.row), 'the client library, whole table').to.deep.equal(all.map((x) => x.row));
        expect((await library.scan(TABLE, { limit: 250 })).map((x) => x.row), 'the client library, limit 250').to.deep.equal(all.slice(0, 250).map((x) => x.row));
      } finally {
        library.close();
      }

      // A write spanning regions on a Database.Batch stream to the follower: the same routing.
      const batchClient = makeClient('Database', cluster.datanodeAddr(WRITER), {}, databaseService());
      try {
        const stream = new BatchStream(batchClient);
        const extra = Array.from({ length: 20 }, (_, j) => rowAt(ROWS + j));
        const res = await stream.request<WriteResponse>('write', { table: TABLE, rows: extra.map(protoRow), client_id: clientId, request_id: String(firstId + 50) }, 10_000);
        expect(res.regions.length).to.equal(REGIONS);
        expect(res.regions.every((r) => r.outcome === 'OUTCOME_APPLIED')).to.equal(true);
        const again = await stream.request<WriteResponse>('write', { table: TABLE, rows: extra.map(protoRow), client_id: clientId, request_id: String(firstId + 50) }, 10_000);
        expect(again.regions.map((r) => r.version)).to.deep.equal(res.regions.map((r) => r.version));
        stream.close();
      } finally {
        batchClient.close();
      }

      // Get and Delete through the follower too.
      const key = protoKey(rowAt(7));
      const got = await call<{ found: boolean; row: ProtoRow }>(writer, 'Get', { table: TABLE, key, consistency: 'LINEARIZABLE' }, 10_000);
      expect(got.found).to.equal(true);
      expect(fromProtoRow(got.row, 'row')).to.deep.equal(rowAt(7));
      const del = await call<{ regions: RegionOutcome[] }>(writer, 'Delete', { table: TABLE, keys: [rowAt(7), rowAt(8), rowAt(9), rowAt(10)].map(protoKey), client_id: clientId, request_id: String(firstId + 100) }, 10_000);
      expect(del.regions.every((r) => r.outcome === 'OUTCOME_APPLIED')).to.equal(true);
      const gone = await call<{ found: boolean }>(reader, 'Get', { table: TABLE, key, consistency: 'LINEARIZABLE' }, 10_000);
      expect(gone.found).to.equal(false);
    } finally {
      writer.close();
      reader.close();
    }
  });

  it('a Python client using only protoc-generated stubs does the same', async function () {
    const missing = pythonToolsMissing();
    if (missing) {
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    await expectWriterFollowsEveryRegion(PY_TABLE);
    const stubs = mkdtempSync(join(tmpdir(), 'regiondb-pystubs-'));
    try {
      const gen = spawnSync(
        'protoc',
        [`-I${join(ROOT, 'proto')}`, `--python_out=${stubs}`, `--grpc_out=${stubs}`, '--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin', ...['common', 'database'].map((f) => join(ROOT, 'proto', 'regiondb', 'v1', `${f}.proto`))],
        { encoding: 'utf8' },
      );
      expect(gen.status, `protoc: ${gen.stderr}`).to.equal(0);
      const script = join(ROOT, 'test', 'clients', 'python', 'any_node_client.py');
      const args = [script, '--stubs', stubs, '--write', cluster.datanodeAddr(WRITER), '--read', cluster.datanodeAddr(READER), '--table', PY_TABLE, '--rows', String(ROWS), '--per-request', String(PER_REQUEST)];
      await expectClientChecksHeld('python', PYTHON, args);
    } finally {
      rmSync(stubs, { recursive: true, force: true });
    }
  });

  it('a Go client using only protoc-generated code does the same', async function () {
    if (goMissing) {
      console.log(`      skipped: ${goMissing}`);
      this.skip();
    }
    await expectWriterFollowsEveryRegion(GO_TABLE);
    let timer: NodeJS.Timeout | undefined;
    const built = await Promise.race([goClient!.result, new Promise<undefined>((ok) => (timer = setTimeout(() => ok(undefined), GO_BUILD_WAIT_MS)))]);
    clearTimeout(timer);
    if (!built) goClient!.kill();
    expect(built, `protoc and go build did not finish within ${GO_BUILD_WAIT_MS} ms of this test waiting for them`).to.not.equal(undefined);
    const { protoc, build, binary } = built!;
    expect(protoc.status, `protoc: ${protoc.stderr}`).to.equal(0);
    expect(build?.status, `go build: ${build?.stderr}`).to.equal(0);
    const args = ['-write', cluster.datanodeAddr(WRITER), '-read', cluster.datanodeAddr(READER), '-table', GO_TABLE, '-rows', String(ROWS), '-per-request', String(PER_REQUEST)];
    await expectClientChecksHeld('go', binary, args);
  });
});
