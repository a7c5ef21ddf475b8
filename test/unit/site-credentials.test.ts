// Issue 17, between the sites (docs/replication.md, "Between the sites"): who may feed a standby
// (the replicator role, a dedicated permission), how a primary's [standby.tls] / [standby.auth]
// are validated and read, and the errors its status shows when the standby site refuses it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { datanodeConfigSchema } from '../../src/common/config.js';
import { ErrorCode } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { authorizationHeader, roleAllows } from '../../src/rpc/auth.js';
import { accessOf } from '../../src/rpc/security.js';
import { explainStandbyError, siteCredentials } from '../../src/standby/site-credentials.js';

const base = { node: { id: 1, data_dir: '/tmp/x' }, grpc: { port: 1 }, http: { port: 2 }, metasrv: { addr: '127.0.0.1:3' } };
const primary = (extra: Record<string, unknown>) => ({ ...base, standby: { role: 'primary', addrs: ['127.0.0.1:9'], ...extra } });

describe('standby between the sites: the replicator role and the primary\'s site credentials (issue 17)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-site-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the standby stream (StandbyShip, StandbySeed, StandbySeedObject) needs the ship permission; StandbyStatus stays read', () => {
    for (const m of ['StandbyShip', 'StandbySeed', 'StandbySeedObject']) expect(accessOf('Admin', m), m).to.equal('ship');
    expect(accessOf('Admin', 'StandbyStatus')).to.equal('read');
    expect(accessOf('Admin', 'StandbyPromote')).to.equal('ddl');
  });

  it('only a replicator ships; a replicator reads but neither writes nor changes tables', () => {
    expect(roleAllows('replicator', 'ship')).to.equal(true);
    expect(roleAllows('read-write', 'ship')).to.equal(false);
    expect(roleAllows('read-only', 'ship')).to.equal(false);
    expect(roleAllows('replicator', 'read')).to.equal(true);
    expect(roleAllows('replicator', 'write')).to.equal(false);
    expect(roleAllows('replicator', 'ddl')).to.equal(false);
    expect(roleAllows('read-write', 'write')).to.equal(true);
  });

  it('config: [standby.tls] / [standby.auth] are a primary\'s, complete, and one kind of secret', () => {
    expect(datanodeConfigSchema.safeParse(primary({ tls: { ca_file: 'ca' }, auth: { user: 'u', password_file: 'p' } })).success).to.equal(true);
    expect(datanodeConfigSchema.safeParse(primary({ auth: { token_file: 't' } })).success).to.equal(true);
    const bad = [
      { ...base, standby: { role: 'standby', auth: { token_file: 't' } } },
      primary({ tls: { ca_file: 'ca', cert_file: 'c' } }),
      primary({ auth: { user: 'u' } }),
      primary({ auth: { user: 'u', password_file: 'p', token_file: 't' } }),
      primary({ auth: {} }),
    ];
    for (const c of bad) expect(datanodeConfigSchema.safeParse(c).success, JSON.stringify(c.standby)).to.equal(false);
  });

  it('reads the secret from its file; a missing or empty file is a startup error naming it', () => {
    const node = grpc.credentials.createInsecure();
    const pw = join(dir, 'pw');
    writeFileSync(pw, 'sekret\n');
    const site = siteCredentials({ role: 'primary', addrs: [], addr_overrides: {}, mode: 'async', ship_interval_ms: 1, release_interval_ms: 1, auth: { user: 'ship', password_file: pw } }, () => node, silentLogger);
    expect(site.authorization).to.equal(authorizationHeader({ user: 'ship', password: 'sekret' }));
    expect(site.credentials).to.equal(node); // no [standby.tls]: the node's own
    expect(site.describe).to.match(/user ship/);
    expect(site.describe).not.to.match(/sekret/);
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    const cfg = (token_file: string) => ({ role: 'primary' as const, addrs: [], addr_overrides: {}, mode: 'async' as const, ship_interval_ms: 1, release_interval_ms: 1, auth: { token_file } });
    expect(() => siteCredentials(cfg(join(dir, 'none')), () => node, silentLogger)).to.throw(/token_file .*none/);
    expect(() => siteCredentials(cfg(empty), () => node, silentLogger)).to.throw(/empty/);
  });

  it('a refusal names the config section that fixes it; other errors pass through', () => {
    expect(explainStandbyError(ErrorCode.Unauthenticated, 'no credentials', 'no user')).to.match(/refused the shipper's credentials.*\[standby\.auth\]/);
    expect(explainStandbyError(ErrorCode.PermissionDenied, 'user w (read-write) may not', 'user w')).to.match(/replicator role/);
    expect(explainStandbyError(ErrorCode.Unavailable, 'No connection established. Last error: self-signed certificate in certificate chain', 'x')).to.match(/\[standby\.tls\] ca_file/);
    expect(explainStandbyError(ErrorCode.Unavailable, 'connection refused', 'x')).to.equal('connection refused');
  });
});
