// Issue 10 acceptance with real processes: a TLS cluster with client authentication, started
// from the built CLI with certificates made by `regiondb certs generate`. Plaintext clients are
// refused; users get UNAUTHENTICATED / PERMISSION_DENIED as their credentials and role say; a
// peer whose certificate another CA signed, or a datanode of another cluster, cannot join or move
// any region's raft state, and each rejection is logged and counted.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { generateCerts } from '../../src/cmd/certs.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { MessageType } from '../../src/raft/index.js';
import { authorizationHeader, hashPassword } from '../../src/rpc/auth.js';
import { call, makeClient } from '../../src/rpc/server.js';
import { fromGrpcError } from '../../src/rpc/status.js';
import { CertificateFiles, channelCredentials } from '../../src/rpc/tls.js';
import { LocalCluster, type NodeProcess, sleep, waitUntil } from '../support/local-cluster.js';

const TABLE = 'secure';
const TS = 1_700_000_000_000;

interface Files {
  caFile: string;
  certFile: string;
  keyFile: string;
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect(isRegionDbError(err) ? err.code : String(err), (err as Error).message).to.equal(code);
    return;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

/** Waits until a node's log has a line matching `pattern` (logs reach the file asynchronously). */
async function logShows(cluster: LocalCluster, node: NodeProcess, pattern: RegExp, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(cluster.tail(node, 500))) {
    if (Date.now() > deadline) throw new Error(`${node.name} did not log ${pattern} within ${timeoutMs} ms; log:\n${cluster.tail(node, 20)}`);
    await sleep(50);
  }
}

describe('integration: TLS, mTLS, authentication and cluster identity (issue 10)', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-it-sec-'));
  const certs = join(dir, 'certs');
  const rogue = join(dir, 'rogue-certs');
  const usersFile = join(dir, 'users.toml');
  const node = (name: string, from = certs): Files => ({ caFile: join(from, 'ca.crt'), certFile: join(from, `${name}.crt`), keyFile: join(from, `${name}.key`) });
  const tlsToml = (f: Files, caFile = f.caFile) =>
    `[tls]\nca_file = "${caFile}"\ncert_file = "${f.certFile}"\nkey_file = "${f.keyFile}"\nclient_auth = "none"\nreload_check_ms = 0`;
  const authToml = `[auth]\nusers_file = "${usersFile}"`;
  // Datanodes 1-3 form the cluster; the tests start 4 (a certificate of another CA, trusting
  // ours) and 5 (a valid certificate, configured for another cluster).
  const cluster = new LocalCluster({
    datanodes: 5,
    startDatanodes: 3,
    harnessTls: node('metasrv'),
    metasrvToml: `${tlsToml(node('metasrv'))}\n\n${authToml}`,
    datanodeTomlFor: (i) => `${i === 3 ? tlsToml(node('datanode4', rogue), join(certs, 'ca.crt')) : tlsToml(node(`datanode${i + 1}`))}\n\n${authToml}`,
  });
  let alice: RegionDbClient;

  before(async () => {
    generateCerts({ outDir: certs, datanodes: 5, days: 2 });
    generateCerts({ outDir: rogue, datanodes: 5, days: 2, organization: 'rogue' });
    writeFileSync(
      usersFile,
      `[[users]]\nname = "alice"\nrole = "read-write"\npassword_hash = "${await hashPassword('wonderland')}"\n\n` +
        `[[users]]\nname = "reader"\nrole = "read-only"\npassword_hash = "${await hashPassword('only-reads')}"\n\n` +
        `[[users]]\nname = "carol"\nrole = "read-write"\npassword_hash = "${await hashPassword('carol-pw')}"\n`,
    );
    await cluster.start();
    alice = cluster.client({ user: 'alice', password: 'wonderland', deadlineMs: 15_000 });
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await alice.createTable(
          TABLE,
          [
            { name: 'host', type: 'string', semantic: 'tag' },
            { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
            { name: 'v', type: 'int64', semantic: 'field' },
          ],
          3,
        );
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err; // datanodes still registering
        await sleep(200);
      }
    }
  });

  // `this.currentTest` in an `after` hook is not the failed test: record failures as they happen,
  // and keep the cluster's data (logs, WAL) for a post-mortem when any test failed.
  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });
  after(async () => {
    await cluster.stop({ keepData: failed });
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * What a forged raft message with a term far ahead would do if it were stepped: some replica
   * on datanodes 1-3 would reach that term. (Equality of every term and leader before and after
   * would also fail on a legitimate election, which a loaded machine may hold at any time.)
   */
  async function expectNoReplicaReached(forgedTerm: number): Promise<void> {
    for (let i = 0; i < 3; i++) {
      const { replicas } = await cluster.status(i);
      for (const r of replicas) expect(Number(r.term), `datanode${i + 1} region ${r.region_id} term`).to.be.lessThan(forgedTerm);
    }
  }

  /** Waits until the metasrv's counter `name` of refused calls reaches `attempts` (a node retrying to join, refused each time). */
  async function metasrvRefused(name: string, attempts: number): Promise<void> {
    await waitUntil(`${name} ≥ ${attempts} on the metasrv`, 30_000, async () => ((await metric(cluster.metasrv.httpPort, name)) >= attempts ? true : undefined));
  }

  async function metric(httpPort: number, name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => l.startsWith(name))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
  }

  /** Opens a raft stream to datanode i with `files` and sends one heartbeat with a far higher term; resolves 'acked' or the error. */
  async function sendRaft(i: number, files: Files, batch: { cluster_id: string; from_node_id: string; region_id: string; from: number; to: number; term: number }): Promise<'acked' | grpc.ServiceError> {
    const client = makeClient('RaftTransport', cluster.datanodeAddr(i), { credentials: channelCredentials(new CertificateFiles(files)) });
    try {
      return await new Promise((resolve) => {
        const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<unknown, unknown> }).Stream();
        stream.on('data', () => resolve('acked'));
        stream.on('error', (err: grpc.ServiceError) => resolve(err));
        // proto-loader's plain object (this client is makeClient's): defaults omitted, uint64s as strings.
        const message = { type: MessageType.Heartbeat, from: String(batch.from), to: String(batch.to), term: String(batch.term) };
        stream.write({ cluster_id: batch.cluster_id, from_node_id: batch.from_node_id, envelopes: [{ region_id: batch.region_id, message }] });
      });
    } finally {
      client.close();
    }
  }

  /** A region replica on datanode 1 and the peer id of its leader (a message from it would be obeyed). */
  async function target(): Promise<{ regionId: string; to: number; leaderPeer: number; term: number }> {
    const { replicas } = await cluster.status(0);
    const r = replicas.find((x) => x.role === 'follower') ?? replicas[0]!;
    const leaderNode = r.leader_node_id;
    const routes = (await alice.listNodes()) as { regions: { region_id: string; peers: { peer_id: string; node_id: string }[] }[] };
    const peers = routes.regions.find((x) => x.region_id === r.region_id)!.peers;
    const leaderPeer = Number(peers.find((p) => p.node_id === leaderNode)?.peer_id ?? peers[0]!.peer_id);
    return { regionId: r.region_id, to: Number(r.peer_id), leaderPeer, term: Number(r.term) };
  }

  const clusterId = `it-${process.pid}`;

  it('works end to end over TLS: DDL, writes, reads, and scans forwarded between nodes over mTLS', async () => {
    const rows = Array.from({ length: 30 }, (_, i) => ({ host: `h${i}`, ts: TS + i, v: i }));
    await alice.write(TABLE, rows);
    expect((await alice.get(TABLE, { host: 'h7', ts: TS + 7 }))?.row['v']).to.equal(7);
    // Every region through datanode 1: regions it does not host are forwarded to their hosts.
    const scanned = await alice.scan(TABLE, {}, cluster.datanodeAddr(0));
    expect(scanned.length).to.equal(30);
    const status = (await alice.listNodes()) as { nodes: { node_id: string; state: string }[] };
    expect(status.nodes.map((n) => n.node_id).sort()).to.deep.equal(['1', '2', '3']);
  });

  // Finding DT1's fence over mTLS with [auth]: Admin.FenceRegion is a peer method (the metasrv's
  // call, with its node certificate). Classified `ddl` by default, a user with DDL rights could
  // fence a live table's region on a datanode directly — every write to it refused for good,
  // the table never dropped.
  it('Admin.FenceRegion is a peer method: a user cannot fence a region; DropTable (the metasrv, with its node certificate) completes and the dropped table refuses writes', async () => {
    const live = await alice.describe(TABLE);
    const regionId = [...live.routes.values()][0]!.regionId;
    const caOnly = channelCredentials(new CertificateFiles({ caFile: join(certs, 'ca.crt') }));
    const admins = cluster.datanodes.slice(0, 3).map((_, i) => makeClient('Admin', cluster.datanodeAddr(i), { credentials: caOnly, authorization: authorizationHeader({ user: 'alice', password: 'wonderland' }) }));
    try {
      for (const admin of admins) {
        const fenced = await call(admin, 'FenceRegion', { region_id: regionId, table_id: String(live.schema.tableId) }, 10_000).then(
          () => 'fenced',
          (err: unknown) => fromGrpcError(err).code,
        );
        expect(fenced, `alice's FenceRegion of ${regionId}`).to.equal(ErrorCode.Unauthenticated);
      }
    } finally {
      for (const admin of admins) admin.close();
    }
    await alice.write(TABLE, [{ host: 'after-fence-attempt', ts: TS, v: 5 }]); // the table still takes writes
    const dropped = 'sec_dropped';
    await alice.createTable(
      dropped,
      [
        { name: 'host', type: 'string', semantic: 'tag' },
        { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
        { name: 'v', type: 'int64', semantic: 'field' },
      ],
      2,
    );
    await alice.write(dropped, [{ host: 'a', ts: TS, v: 1 }]);
    expect(await alice.dropTable(dropped)).to.equal(2);
    await expectCode(alice.write(dropped, [{ host: 'b', ts: TS, v: 2 }]), ErrorCode.NotFound);
  });

  it('refuses plaintext clients', async () => {
    const plain = cluster.client({ tls: undefined, user: 'alice', password: 'wonderland', deadlineMs: 1500, attemptTimeoutMs: 500 });
    await expectCode(plain.listNodes(), ErrorCode.Unavailable);
    const raw = makeClient('Database', cluster.datanodeAddr(0));
    try {
      const failed = await call(raw, 'DescribeTable', { name: TABLE }, 1500).then(
        () => null,
        (err: grpc.ServiceError) => err,
      );
      expect(failed?.code).to.equal(grpc.status.UNAVAILABLE);
    } finally {
      raw.close();
    }
  });

  it('no credentials → UNAUTHENTICATED; wrong password → UNAUTHENTICATED', async () => {
    await expectCode(cluster.client({ deadlineMs: 3000 }).get(TABLE, { host: 'h1', ts: TS + 1 }), ErrorCode.Unauthenticated);
    await expectCode(cluster.client({ user: 'alice', password: 'guess', deadlineMs: 3000 }).get(TABLE, { host: 'h1', ts: TS + 1 }), ErrorCode.Unauthenticated);
    // Straight to a datanode's Database service too (not only the metasrv's routes).
    const db = makeClient('Database', cluster.datanodeAddr(1), { credentials: channelCredentials(new CertificateFiles({ caFile: join(certs, 'ca.crt') })) });
    try {
      const err = await call(db, 'DescribeTable', { name: TABLE }, 3000).then(
        () => null,
        (e: grpc.ServiceError) => e,
      );
      expect(err?.code).to.equal(grpc.status.UNAUTHENTICATED);
    } finally {
      db.close();
    }
  });

  it('a read-only user reads, and gets PERMISSION_DENIED on writes and DDL', async () => {
    const reader = cluster.client({ user: 'reader', password: 'only-reads', deadlineMs: 5000 });
    expect((await reader.get(TABLE, { host: 'h3', ts: TS + 3 }))?.row['v']).to.equal(3);
    await expectCode(reader.write(TABLE, [{ host: 'h3', ts: TS + 3, v: 99 }]), ErrorCode.PermissionDenied);
    await expectCode(reader.createTable('nope', [{ name: 'ts', type: 'timestamp', semantic: 'timestamp' }], 1), ErrorCode.PermissionDenied);
    expect((await alice.get(TABLE, { host: 'h3', ts: TS + 3 }))?.row['v']).to.equal(3);
  });

  it('a correct user → OK (write and read back)', async () => {
    await alice.write(TABLE, [{ host: 'ok', ts: TS, v: 42 }]);
    expect((await alice.get(TABLE, { host: 'ok', ts: TS }))?.row['v']).to.equal(42);
  });

  it('rows of every region sent raw to one datanode are forwarded under the caller\'s identity: alice writes them all; reader and no credentials are refused, nothing applied (issue 18)', async () => {
    const caOnly = channelCredentials(new CertificateFiles({ caFile: join(certs, 'ca.crt') }));
    const raw = (credentials?: { user: string; password: string }) =>
      makeClient('Database', cluster.datanodeAddr(0), { credentials: caOnly, authorization: credentials ? authorizationHeader(credentials) : undefined });
    const rows = Array.from({ length: 30 }, (_, i) => ({
      values: { host: { string_value: `fwd${i}` }, ts: { timestamp_ms_value: String(TS + i) }, v: { int64_value: String(1000 + i) } },
    }));
    const led = (await cluster.status(0)).replicas.filter((r) => r.role === 'leader').length;
    process.stdout.write(`      datanode1 leads ${led} of the table's 3 regions; the others' rows are forwarded\n`);
    const asReader = raw({ user: 'reader', password: 'only-reads' });
    const anonymous = raw();
    const asAlice = raw({ user: 'alice', password: 'wonderland' });
    try {
      for (const [who, client, code] of [['reader', asReader, grpc.status.PERMISSION_DENIED], ['no credentials', anonymous, grpc.status.UNAUTHENTICATED]] as const) {
        const err = await call(client, 'Write', { table: TABLE, rows, client_id: 'sec', request_id: '1' }, 10_000).then(
          () => null,
          (e: grpc.ServiceError) => e,
        );
        expect(err?.code, `${who}: ${err?.details}`).to.equal(code);
      }
      expect(await alice.get(TABLE, { host: 'fwd0', ts: TS }), 'nothing applied for the refused callers').to.equal(null);
      const res = await call<{ regions: { outcome: string }[] }>(asAlice, 'Write', { table: TABLE, rows, client_id: 'sec', request_id: '2' }, 10_000);
      expect(res.regions.map((r) => r.outcome)).to.deep.equal(['OUTCOME_APPLIED', 'OUTCOME_APPLIED', 'OUTCOME_APPLIED']);
      for (const i of [0, 13, 29]) expect((await alice.get(TABLE, { host: `fwd${i}`, ts: TS + i }))?.row['v']).to.equal(1000 + i);
    } finally {
      for (const c of [asReader, anonymous, asAlice]) c.close();
    }
  });

  it('a user demoted by a users-file reload loses write access on a Batch stream that is already open', async () => {
    const carol = cluster.client({ user: 'carol', password: 'carol-pw', deadlineMs: 5000 });
    try {
      await carol.write(TABLE, [{ host: 'carol', ts: TS, v: 1 }]); // opens carol's Batch streams
      const users = readFileSync(usersFile, 'utf8');
      writeFileSync(usersFile, users.replace(/name = "carol"\nrole = "read-write"/, 'name = "carol"\nrole = "read-only"'));
      for (const d of cluster.datanodes) d.process?.kill('SIGHUP');
      let outcome: unknown = 'still writing';
      for (let attempt = 0; attempt < 50 && outcome === 'still writing'; attempt++) {
        await sleep(200);
        outcome = await carol.write(TABLE, [{ host: 'carol', ts: TS + attempt, v: 2 }]).then(
          () => 'still writing',
          (err: unknown) => err,
        );
      }
      expect(isRegionDbError(outcome) && outcome.code, String(outcome)).to.equal(ErrorCode.PermissionDenied);
      expect((await carol.get(TABLE, { host: 'carol', ts: TS }))?.row['v'], 'reads still pass').to.equal(1);
    } finally {
      carol.close();
    }
  });

  it('a peer with a certificate of another CA can neither send raft messages nor join; region state is unchanged', async () => {
    const t = await target();
    const foreign = { ...node('datanode2', rogue), caFile: join(certs, 'ca.crt') };
    const res = await sendRaft(0, foreign, { cluster_id: clusterId, from_node_id: '2', region_id: t.regionId, from: t.leaderPeer, to: t.to, term: t.term + 100 });
    expect(res === 'acked' ? 'acked' : res.code).to.equal(grpc.status.UNAUTHENTICATED);
    expect(await metric(cluster.datanodes[0]!.httpPort, 'regiondb_security_rejected_total{service="RaftTransport",reason="no-node-certificate"}')).to.be.greaterThan(0);

    const noCertificate = 'regiondb_security_rejected_total{service="Meta",reason="no-node-certificate"}';
    const refusedBefore = await metric(cluster.metasrv.httpPort, noCertificate);
    await cluster.startDatanode(3); // datanode 4, certificate signed by the rogue CA
    await metasrvRefused(noCertificate, refusedBefore + 2); // it tried, and tried again
    const nodes = ((await alice.listNodes()) as { nodes: { node_id: string }[] }).nodes.map((n) => n.node_id);
    expect(nodes).to.not.include('4');
    await logShows(cluster, cluster.metasrv, /"service":"Meta","method":"(RegisterNode|Heartbeat)","reason":"no-node-certificate".*"msg":"rejected a call"/);
    await cluster.stopDatanode(3);
    await expectNoReplicaReached(t.term + 100);
  });

  it('a datanode of another cluster is rejected and logged, by the metasrv and by peers', async () => {
    const dn5 = cluster.datanodes[4]!;
    writeFileSync(dn5.configFile, readFileSync(dn5.configFile, 'utf8').replace(/^cluster_id = ".*"$/m, 'cluster_id = "another-cluster"'));
    const otherCluster = 'regiondb_metasrv_rejected_total{reason="other-cluster"}';
    const refusedBefore = await metric(cluster.metasrv.httpPort, otherCluster);
    await cluster.startDatanode(4);
    await metasrvRefused(otherCluster, refusedBefore + 2);
    const nodes = ((await alice.listNodes()) as { nodes: { node_id: string }[] }).nodes.map((n) => n.node_id);
    expect(nodes).to.not.include('5');
    await logShows(cluster, cluster.metasrv, /"reason":"other-cluster".*"clusterId":"another-cluster"/);
    await cluster.stopDatanode(4);

    // Its raft traffic, with its valid node certificate, is refused by the peers too.
    const t = await target();
    const res = await sendRaft(0, node('datanode5'), { cluster_id: 'another-cluster', from_node_id: '5', region_id: t.regionId, from: t.leaderPeer, to: t.to, term: t.term + 100 });
    expect(res === 'acked' ? 'acked' : res.code).to.equal(grpc.status.FAILED_PRECONDITION);
    await logShows(cluster, cluster.datanodes[0]!, /"reason":"other-cluster".*"msg":"rejected raft traffic"/);
    await expectNoReplicaReached(t.term + 100);
  });

  it('raft messages from a node that is not a member, impersonating a member, or for a region not hosted are dropped and counted', async () => {
    const t = await target();
    const dn1 = cluster.datanodes[0]!;
    const rejected = (reason: string) => metric(dn1.httpPort, `regiondb_raft_messages_rejected_total{reason="${reason}"}`);
    const base = { cluster_id: clusterId, region_id: t.regionId, to: t.to, term: t.term + 100 };

    // Node 5 is a node of this cluster (valid certificate) but no member of the region.
    expect(await sendRaft(0, node('datanode5'), { ...base, from_node_id: '5', from: 999_999 })).to.equal('acked');
    // Node 5 claiming the leader's peer id, which lives on another node.
    expect(await sendRaft(0, node('datanode5'), { ...base, from_node_id: '5', from: t.leaderPeer })).to.equal('acked');
    // A region datanode 1 does not host.
    expect(await sendRaft(0, node('datanode5'), { ...base, from_node_id: '5', region_id: '123456789', from: 1 })).to.equal('acked');
    // Node 5's certificate claiming to be node 2.
    const spoof = await sendRaft(0, node('datanode5'), { ...base, from_node_id: '2', from: t.leaderPeer });
    expect(spoof === 'acked' ? 'acked' : spoof.code).to.equal(grpc.status.PERMISSION_DENIED);

    expect(await rejected('not-a-member')).to.be.greaterThan(0);
    expect(await rejected('peer-on-another-node')).to.be.greaterThan(0);
    expect(await rejected('region-not-hosted')).to.be.greaterThan(0);
    expect(await rejected('node-id-mismatch')).to.be.greaterThan(0);
    await logShows(cluster, dn1, /"msg":"rejected raft traffic"/);
    await expectNoReplicaReached(t.term + 100);
  });
});
