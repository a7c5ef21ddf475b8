// Issue 17, between the sites (docs/replication.md, "Between the sites"), with real processes on
// loopback: a primary and a standby cluster, each with TLS and users of its own and its own CA
// (certificates made here by generateCerts). The primary's shipper must authenticate to the
// standby site with what [standby.tls] / [standby.auth] give it:
//   1. its own node credentials (site A's CA): the TLS handshake fails; the shipper status and
//      the primary's write refusal say so and name [standby.tls];
//   2. site B's CA and a client certificate B signed, no user: UNAUTHENTICATED, shown likewise;
//   3. a read-write user of site B: PERMISSION_DENIED (only a replicator ships); the primary
//      takes writes (its fence check is a read) but nothing reaches the standby; lag grows;
//   4. a replicator token: the stream catches up, every row is in the standby, lag shown.
// Each step restarts the primary's datanodes with the new config. Slow (about 2 minutes on a
// busy 2-core machine): runs only with SITES_TLS=1 (`make test-standby-sites-tls`).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RegionDbClient } from '../../src/client/client.js';
import { generateCerts } from '../../src/cmd/certs.js';
import { standbyStatusText } from '../../src/cmd/standby.js';
import { hashPassword, newToken } from '../../src/rpc/auth.js';
import { standbySnapshot } from '../../src/standby/promote.js';
import { LocalCluster, waitUntil } from '../support/local-cluster.js';
import { STANDBY_COLUMNS, standbyRows } from '../support/standby-table.js';

const TABLE = 'across';
const REGIONS = 2;
const row = standbyRows(7);

describe('integration: dual active-standby between two sites with their own CAs and users (issue 17)', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-it-sites-'));
  const siteA = join(dir, 'site-a');
  const siteB = join(dir, 'site-b');
  const files = (site: string, name: string) => ({ caFile: join(site, 'ca.crt'), certFile: join(site, `${name}.crt`), keyFile: join(site, `${name}.key`) });
  // Datanodes require client certificates (the shipper's calls need one its CA signed); the
  // metasrv does not, so the harness reaches it with a user alone.
  const tlsToml = (site: string, name: string) => {
    const f = files(site, name);
    return `[tls]\nca_file = "${f.caFile}"\ncert_file = "${f.certFile}"\nkey_file = "${f.keyFile}"\nclient_auth = "${name === 'metasrv' ? 'none' : 'require'}"\nreload_check_ms = 0`;
  };
  const usersA = join(dir, 'users-a.toml');
  const usersB = join(dir, 'users-b.toml');
  const writerPassword = join(dir, 'writer.password');
  const shipToken = join(dir, 'ship.token');
  const token = newToken();
  const standby = new LocalCluster({
    clusterId: 'it-site-b',
    harnessTls: files(siteB, 'metasrv'),
    metasrvToml: `${tlsToml(siteB, 'metasrv')}\n\n[auth]\nusers_file = "${usersB}"`,
    datanodeTomlFor: (i) => `${tlsToml(siteB, `datanode${i + 1}`)}\n\n[auth]\nusers_file = "${usersB}"\n\n[standby]\nrole = "standby"\nrelease_interval_ms = 300`,
  });
  let primary: LocalCluster | undefined;
  let pc: RegionDbClient;
  let sc: RegionDbClient;
  /** Each primary datanode's config as first written (the [standby] section last, without site credentials). */
  const baseConfigs: string[] = [];

  before(async function () {
    if (process.env['SITES_TLS'] !== '1') this.skip(); // slow: make test-standby-sites-tls
    generateCerts({ outDir: siteA, datanodes: 3, days: 2, organization: 'site-a' });
    generateCerts({ outDir: siteB, datanodes: 3, days: 2, organization: 'site-b' });
    const admin = `[[users]]\nname = "admin"\nrole = "read-write"\npassword_hash = "${await hashPassword('admin-pw')}"\n`;
    writeFileSync(usersA, admin);
    writeFileSync(usersB, `${admin}\n[[users]]\nname = "writer"\nrole = "read-write"\npassword_hash = "${await hashPassword('writer-pw')}"\n\n[[tokens]]\nname = "site-a-shipper"\nrole = "replicator"\ntoken_sha256 = "${token.sha256}"\n`);
    writeFileSync(writerPassword, 'writer-pw\n');
    writeFileSync(shipToken, `${token.token}\n`);
    await standby.start();
    const addrs = standby.datanodes.map((_, i) => `"${standby.datanodeAddr(i)}"`).join(', ');
    primary = new LocalCluster({
      clusterId: 'it-site-a',
      harnessTls: files(siteA, 'metasrv'),
      metasrvToml: `${tlsToml(siteA, 'metasrv')}\n\n[auth]\nusers_file = "${usersA}"`,
      datanodeTomlFor: (i) => `${tlsToml(siteA, `datanode${i + 1}`)}\n\n[auth]\nusers_file = "${usersA}"\n\n[standby]\nrole = "primary"\naddrs = [${addrs}]\nship_interval_ms = 50`,
    });
    await primary.start();
    for (let i = 0; i < 3; i++) baseConfigs.push(readFileSync(primary.datanodeConfigFile(i), 'utf8'));
    pc = primary.client({ tls: files(siteA, 'client'), user: 'admin', password: 'admin-pw', deadlineMs: 5000 });
    sc = standby.client({ tls: files(siteB, 'client'), user: 'admin', password: 'admin-pw', deadlineMs: 5000 });
  });

  after(async () => {
    await primary?.stop();
    await standby.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Restarts every primary datanode with `siteToml` appended to its [standby] section. */
  async function restartPrimary(siteToml: string): Promise<void> {
    const p = primary!;
    await Promise.all(baseConfigs.map((_, i) => p.stopDatanode(i)));
    for (const [i, base] of baseConfigs.entries()) writeFileSync(p.datanodeConfigFile(i), `${base}\n${siteToml}\n`);
    await Promise.all(baseConfigs.map((_, i) => p.startDatanode(i)));
  }

  /** The primary's `regiondb standby status` text once every region led somewhere shows an error matching `pattern`. */
  async function statusShows(pattern: RegExp): Promise<string> {
    return waitUntil(`the primary's standby status showing ${pattern}`, 30_000, async () => {
      const snap = await standbySnapshot(pc);
      const shipping = snap.nodes.flatMap((n) => n.status.shipping);
      if (shipping.length < REGIONS || !shipping.every((s) => pattern.test(s.error))) return undefined;
      return standbyStatusText(pc, Date.now());
    });
  }

  /**
   * A write is not acknowledged while the fence check fails (the gate's refusal names the reason;
   * the client reports the last attempt, which may be a timeout after its retries).
   */
  async function writeRefused(): Promise<void> {
    const err = await pc.write(TABLE, [row(999_999)]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, 'a write while the standby site refuses the fence check').to.be.instanceOf(Error);
  }

  async function standbyRegions(): Promise<number> {
    return (await standbySnapshot(sc)).nodes.flatMap((n) => n.status.regions).length;
  }

  it('1. with its own node credentials (another CA) the handshake fails, and the status and the write refusal say which section fixes it', async () => {
    // Placement needs the 3 datanodes counted alive: on a loaded machine a heartbeat can be late.
    await waitUntil('the table created on the primary', 30_000, () =>
      pc.createTable(TABLE, STANDBY_COLUMNS, REGIONS).then(
        () => true,
        (err: unknown) => {
          if (/already exists/.test(String(err))) return true; // an earlier attempt took
          throw err;
        },
      ),
    );
    const text = await statusShows(/TLS with the standby site failed.*\[standby\.tls\] ca_file/);
    expect(text).to.match(/cluster-wide lag \d+ entries/);
    await writeRefused();
    expect(await standbyRegions()).to.equal(0);
  });

  it('2. with the standby CA and a client certificate but no user: UNAUTHENTICATED, shown likewise', async () => {
    await restartPrimary(`[standby.tls]\nca_file = "${join(siteB, 'ca.crt')}"\ncert_file = "${join(siteB, 'client.crt')}"\nkey_file = "${join(siteB, 'client.key')}"`);
    await statusShows(/refused the shipper's credentials.*\[standby\.auth\]/);
    await writeRefused();
    expect(await standbyRegions()).to.equal(0);
  });

  it('3. with a read-write user: PERMISSION_DENIED (the stream needs a replicator); writes are taken but not delivered, and the lag shows it', async () => {
    await restartPrimary(
      `[standby.tls]\nca_file = "${join(siteB, 'ca.crt')}"\ncert_file = "${join(siteB, 'client.crt')}"\nkey_file = "${join(siteB, 'client.key')}"\n\n[standby.auth]\nuser = "writer"\npassword_file = "${writerPassword}"`,
    );
    await waitUntil('the primary taking writes (fence check passed)', 30_000, async () => (await pc.write(TABLE, [row(0)]).then(() => true)) || undefined);
    for (let id = 1; id < 60; id += 6) await pc.write(TABLE, [id, id + 1, id + 2, id + 3, id + 4, id + 5].map(row));
    const text = await statusShows(/denied the shipper.*replicator role/);
    const lag = /cluster-wide lag (\d+) entries/.exec(text);
    expect(Number(lag?.[1]), text).to.be.greaterThan(0);
    expect(await standbyRegions()).to.equal(0);
  });

  it('4. with a replicator token the stream catches up: every row reaches the standby, lag visible', async () => {
    await restartPrimary(`[standby.tls]\nca_file = "${join(siteB, 'ca.crt')}"\ncert_file = "${join(siteB, 'client.crt')}"\nkey_file = "${join(siteB, 'client.key')}"\n\n[standby.auth]\ntoken_file = "${shipToken}"`);
    await pc.write(TABLE, [row(100)]);
    const rows = await waitUntil('every row in the standby', 30_000, async () => {
      const got = await sc.scan(TABLE);
      return got.length === 62 ? got : undefined;
    }).catch(async (err: unknown) => {
      const show = async (c: RegionDbClient) => standbyStatusText(c, Date.now()).catch((e: unknown) => String(e));
      throw new Error(`${String(err)}\nprimary:\n${await show(pc)}\nstandby:\n${await show(sc)}`);
    });
    expect(rows.map((r) => r.row['v']).sort((a, b) => Number(a) - Number(b))).to.deep.equal([...Array.from({ length: 61 }, (_, i) => i), 100]);
    const text = await statusShows(/^$/);
    expect(text).to.match(/cluster-wide lag \d+ entries, \d+ ms/);
    const standbyText = await standbyStatusText(sc, Date.now());
    expect(standbyText).to.match(/RECEIVED-THROUGH LAG MS/);
    expect(await standbyRegions()).to.equal(REGIONS);
    const refused = row(999_999);
    expect(await sc.get(TABLE, { host: refused['host']!, ts: refused['ts']! }), 'a write refused while the fence check failed').to.equal(null);
  });
});
