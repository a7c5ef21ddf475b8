// TLS, mTLS, peer identity, client authentication and reload (issue 10), in process: real gRPC
// servers on 127.0.0.1 built by startGrpcServer with a Security, and clients from makeClient.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { generateCerts } from '../../src/cmd/certs.js';
import { silentLogger } from '../../src/common/logger.js';
import { FORWARDED_BY_KEY, UserStore, authorizationHeader, hashPassword, newToken } from '../../src/rpc/auth.js';
import { Security } from '../../src/rpc/security.js';
import { type RunningGrpcServer, call, makeClient, startGrpcServer } from '../../src/rpc/server.js';
import { unary } from '../../src/rpc/status.js';
import { CertificateFiles, channelCredentials } from '../../src/rpc/tls.js';

const log = silentLogger;

interface Party {
  caFile: string;
  certFile?: string;
  keyFile?: string;
}

async function expectStatus(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    expect(e.code, `${e.code} ${e.details}`).to.equal(code);
    return e;
  }
  throw new Error(`expected gRPC status ${grpc.status[code]}, the call succeeded`);
}

async function expectRejects(p: Promise<unknown>): Promise<void> {
  const failed = await p.then(
    () => false,
    () => true,
  );
  expect(failed, 'expected a rejection').to.equal(true);
}

describe('security: TLS, mTLS, peer identity, users (issue 10)', function () {
  this.timeout(30_000);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-sec-'));
  const certs = join(dir, 'certs');
  const rogue = join(dir, 'rogue');
  const usersFile = join(dir, 'users.toml');
  const servers: RunningGrpcServer[] = [];
  const securities: Security[] = [];
  const clients: grpc.Client[] = [];
  const token = newToken();
  const seen: { user?: string | undefined }[] = [];

  const node = (name: string, base = certs): Party => ({ caFile: join(base, 'ca.crt'), certFile: join(base, `${name}.crt`), keyFile: join(base, `${name}.key`) });

  function client(addr: string, party: Party | null, credentials?: { user?: string; password?: string; token?: string }): grpc.Client {
    const c = makeClient('Meta', addr, {
      credentials: party ? channelCredentials(new CertificateFiles(party)) : grpc.credentials.createInsecure(),
      authorization: credentials ? authorizationHeader(credentials) : undefined,
    });
    clients.push(c);
    return c;
  }

  /** A Meta server: ListNodes (read), CreateTable (ddl), RegisterNode (peer), GetRoutes forwards to `forwardTo`. */
  async function metaServer(clientAuth: 'none' | 'require', options: { auth?: boolean; forwardTo?: () => string } = {}): Promise<string> {
    const security = new Security(
      {
        tls: { ca_file: join(certs, 'ca.crt'), cert_file: join(certs, 'metasrv.crt'), key_file: join(certs, 'metasrv.key'), client_auth: clientAuth, reload_check_ms: 0 },
        ...(options.auth ? { auth: { users_file: usersFile } } : {}),
      },
      log,
    );
    securities.push(security);
    const impl = {
      ListNodes: unary(async (_req: unknown, c: grpc.ServerUnaryCall<unknown, unknown>) => {
        seen.push({ user: c.metadata.get('authorization')[0]?.toString() });
        return { nodes: [] };
      }, log),
      CreateTable: unary(async () => ({}), log),
      RegisterNode: unary(async () => ({ regions: [] }), log),
      GetRoutes: unary(async () => {
        // A node serving a client calls a peer: TLS with its node certificate, the client's user forwarded.
        const peer = makeClient('Meta', options.forwardTo!(), { credentials: security.channelCredentials() });
        try {
          await call(peer, 'ListNodes', {}, 5000);
        } finally {
          peer.close();
        }
        return {};
      }, log),
    };
    const server = await startGrpcServer('127.0.0.1', 0, [{ name: 'Meta', impl }], log, security);
    servers.push(server);
    return `127.0.0.1:${server.port}`;
  }

  before(async () => {
    generateCerts({ outDir: certs, datanodes: 1, days: 2 });
    generateCerts({ outDir: rogue, datanodes: 1, days: 2, organization: 'rogue' });
    writeFileSync(
      usersFile,
      [
        `[[users]]\nname = "alice"\nrole = "read-write"\npassword_hash = "${await hashPassword('wonderland')}"`,
        `[[users]]\nname = "reader"\nrole = "read-only"\npassword_hash = "${await hashPassword('only-reads')}"`,
        `[[tokens]]\nname = "ci"\nrole = "read-only"\ntoken_sha256 = "${token.sha256}"`,
      ].join('\n\n'),
    );
  });

  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
    for (const s of securities) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('client_auth = "require" (mTLS for everyone)', () => {
    let addr: string;
    before(async () => {
      addr = await metaServer('require');
    });

    it('serves a client that presents a certificate signed by the cluster CA', async () => {
      await call(client(addr, node('client')), 'ListNodes', {}, 5000);
    });

    it('refuses a plaintext client', async () => {
      await expectStatus(call(client(addr, null), 'ListNodes', {}, 5000), grpc.status.UNAVAILABLE);
    });

    it('refuses a TLS client without a certificate', async () => {
      await expectStatus(call(client(addr, { caFile: join(certs, 'ca.crt') }), 'ListNodes', {}, 5000), grpc.status.UNAVAILABLE);
    });

    it('refuses a certificate signed by another CA', async () => {
      const stranger = { ...node('datanode1', rogue), caFile: join(certs, 'ca.crt') };
      await expectStatus(call(client(addr, stranger), 'RegisterNode', {}, 5000), grpc.status.UNAVAILABLE);
    });

    it('a client certificate is not a node certificate: peer methods answer UNAUTHENTICATED', async () => {
      const e = await expectStatus(call(client(addr, node('client')), 'RegisterNode', {}, 5000), grpc.status.UNAUTHENTICATED);
      expect(e.details).to.match(/peer service/);
      await call(client(addr, node('datanode1')), 'RegisterNode', {}, 5000);
    });
  });

  describe('client_auth = "none" (TLS clients without certificates; peers still prove they are nodes)', () => {
    let addr: string;
    before(async () => {
      addr = await metaServer('none');
    });

    it('serves a TLS client without a certificate, and refuses it peer methods', async () => {
      const anonymous = client(addr, { caFile: join(certs, 'ca.crt') });
      await call(anonymous, 'ListNodes', {}, 5000);
      await expectStatus(call(anonymous, 'RegisterNode', {}, 5000), grpc.status.UNAUTHENTICATED);
    });

    it('a node certificate signed by another CA does not make its holder a peer', async () => {
      const stranger = { ...node('datanode1', rogue), caFile: join(certs, 'ca.crt') };
      await expectStatus(call(client(addr, stranger), 'RegisterNode', {}, 5000), grpc.status.UNAUTHENTICATED);
    });

    it('refuses a plaintext client', async () => {
      await expectStatus(call(client(addr, null), 'ListNodes', {}, 5000), grpc.status.UNAVAILABLE);
    });
  });

  describe('users and tokens', () => {
    let addr: string;
    let forwarder: string;
    const tls = { caFile: join(certs, 'ca.crt') };
    before(async () => {
      addr = await metaServer('none', { auth: true });
      forwarder = await metaServer('none', { auth: true, forwardTo: () => addr });
    });

    it('no credentials → UNAUTHENTICATED', async () => {
      await expectStatus(call(client(addr, tls), 'ListNodes', {}, 5000), grpc.status.UNAUTHENTICATED);
    });

    it('wrong password, unknown user, bad token → UNAUTHENTICATED', async () => {
      await expectStatus(call(client(addr, tls, { user: 'alice', password: 'guess' }), 'ListNodes', {}, 5000), grpc.status.UNAUTHENTICATED);
      await expectStatus(call(client(addr, tls, { user: 'mallory', password: 'x' }), 'ListNodes', {}, 5000), grpc.status.UNAUTHENTICATED);
      await expectStatus(call(client(addr, tls, { token: `${token.token}x` }), 'ListNodes', {}, 5000), grpc.status.UNAUTHENTICATED);
    });

    it('a read-only user reads, and gets PERMISSION_DENIED on DDL', async () => {
      const reader = client(addr, tls, { user: 'reader', password: 'only-reads' });
      await call(reader, 'ListNodes', {}, 5000);
      await expectStatus(call(reader, 'CreateTable', {}, 5000), grpc.status.PERMISSION_DENIED);
      const bearer = client(addr, tls, { token: token.token });
      await call(bearer, 'ListNodes', {}, 5000);
      await expectStatus(call(bearer, 'CreateTable', {}, 5000), grpc.status.PERMISSION_DENIED);
    });

    it('a read-write user may do everything a user may', async () => {
      const alice = client(addr, tls, { user: 'alice', password: 'wonderland' });
      await call(alice, 'ListNodes', {}, 5000);
      await call(alice, 'CreateTable', {}, 5000);
    });

    it("a node forwarding a client's call forwards the client's credentials, not more", async () => {
      seen.length = 0;
      await call(client(forwarder, tls, { user: 'reader', password: 'only-reads' }), 'GetRoutes', {}, 5000);
      expect(seen.map((s) => s.user)).to.deep.equal([authorizationHeader({ user: 'reader', password: 'only-reads' })]);
    });

    it('a call a node forwards for a client (regiondb-forwarded-by) is authorized as that client: the node certificate grants nothing', async () => {
      const forwarded = () => {
        const m = new grpc.Metadata();
        m.set(FORWARDED_BY_KEY, '1');
        return m;
      };
      const nodeCert = node('datanode1');
      // Without the mark a node certificate is a peer (as before), with it the user decides.
      await call(client(addr, nodeCert), 'CreateTable', {}, 5000);
      await expectStatus(call(client(addr, nodeCert), 'CreateTable', {}, 5000, forwarded()), grpc.status.UNAUTHENTICATED);
      await expectStatus(call(client(addr, nodeCert, { user: 'reader', password: 'only-reads' }), 'CreateTable', {}, 5000, forwarded()), grpc.status.PERMISSION_DENIED);
      await expectStatus(call(client(addr, nodeCert, { user: 'alice', password: 'guess' }), 'CreateTable', {}, 5000, forwarded()), grpc.status.UNAUTHENTICATED);
      await call(client(addr, nodeCert, { user: 'reader', password: 'only-reads' }), 'ListNodes', {}, 5000, forwarded());
      await call(client(addr, nodeCert, { user: 'alice', password: 'wonderland' }), 'CreateTable', {}, 5000, forwarded());
    });

    it('reloads the users file: a new user can log in, a removed one cannot', async () => {
      const before = await import('node:fs').then((fs) => fs.readFileSync(usersFile, 'utf8'));
      writeFileSync(usersFile, `[[users]]\nname = "bob"\nrole = "read-only"\npassword_hash = "${await hashPassword('builder')}"\n`);
      try {
        for (const s of securities) s.reload();
        await call(client(addr, tls, { user: 'bob', password: 'builder' }), 'ListNodes', {}, 5000);
        await expectStatus(call(client(addr, tls, { user: 'alice', password: 'wonderland' }), 'ListNodes', {}, 5000), grpc.status.UNAUTHENTICATED);
      } finally {
        writeFileSync(usersFile, before);
        for (const s of securities) s.reload();
      }
    });

    it('notices a changed users file without a signal (file poll)', async () => {
      const file = join(dir, 'polled-users.toml');
      writeFileSync(file, '');
      const store = new UserStore(file);
      store.watch(20);
      try {
        await expectRejects(store.authenticate(authorizationHeader({ user: 'carol', password: 'c' })));
        writeFileSync(file, `[[users]]\nname = "carol"\nrole = "read-only"\npassword_hash = "${await hashPassword('c')}"\n`);
        const deadline = Date.now() + 5000;
        for (;;) {
          const ok = await store.authenticate(authorizationHeader({ user: 'carol', password: 'c' })).then(
            () => true,
            () => false,
          );
          if (ok) break;
          if (Date.now() > deadline) throw new Error('the users file change was not picked up within 5 s');
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        store.close();
      }
    });

    it('a verification in flight across a reload does not put the old answer back in the cache (finding A1)', async () => {
      const file = join(dir, 'race-users.toml');
      writeFileSync(file, `[[users]]\nname = "dave"\nrole = "read-write"\npassword_hash = "${await hashPassword('d')}"\n`);
      const store = new UserStore(file);
      const header = authorizationHeader({ user: 'dave', password: 'd' });
      // The check reads the users and starts scrypt synchronously; the reload lands while it runs.
      const inFlight = store.authenticate(header);
      writeFileSync(file, '');
      expect(store.reload()).to.equal(true);
      const principal = await inFlight; // checked against the file it started with
      expect(principal.name).to.equal('dave');
      // The next call is checked against the reloaded file, where dave no longer exists.
      await expectRejects(store.authenticate(header));
    });

    it('a broken users file on reload keeps the previous users', async () => {
      const before = await import('node:fs').then((fs) => fs.readFileSync(usersFile, 'utf8'));
      writeFileSync(usersFile, '[[users]]\nname = "x"\n');
      try {
        for (const s of securities) s.reload();
        await call(client(addr, tls, { user: 'alice', password: 'wonderland' }), 'ListNodes', {}, 5000);
      } finally {
        writeFileSync(usersFile, before);
      }
    });
  });

  describe('certificate reload without a restart', () => {
    it('new connections get the new certificate after reload(); broken files are not taken', async () => {
      const live = join(dir, 'live');
      const next = join(dir, 'next');
      generateCerts({ outDir: next, datanodes: 1, days: 2, organization: 'next' });
      generateCerts({ outDir: live, datanodes: 1, days: 2 });
      const files = { ca_file: join(live, 'ca.crt'), cert_file: join(live, 'datanode1.crt'), key_file: join(live, 'datanode1.key') };
      const security = new Security({ tls: { ...files, client_auth: 'none', reload_check_ms: 0 } }, log);
      securities.push(security);
      const server = await startGrpcServer('127.0.0.1', 0, [{ name: 'Meta', impl: { ListNodes: unary(async () => ({ nodes: [] }), log) } }], log, security);
      servers.push(server);
      const addr = `127.0.0.1:${server.port}`;
      await call(client(addr, { caFile: join(live, 'ca.crt') }), 'ListNodes', {}, 5000);
      await expectStatus(call(client(addr, { caFile: join(next, 'ca.crt') }), 'ListNodes', {}, 3000), grpc.status.UNAVAILABLE);

      writeFileSync(files.cert_file, 'not a certificate');
      expect(security.tls!.reload(), 'a broken certificate is not taken').to.equal(false);
      await call(client(addr, { caFile: join(live, 'ca.crt') }), 'ListNodes', {}, 5000);

      for (const f of ['ca.crt', 'datanode1.crt', 'datanode1.key']) copyFileSync(join(next, f), join(live, f));
      expect(security.tls!.reload()).to.equal(true);
      await call(client(addr, { caFile: join(next, 'ca.crt') }), 'ListNodes', {}, 5000);
    });
  });
});
