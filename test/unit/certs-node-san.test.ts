// `regiondb certs generate --node-san / --no-loopback` (issue 21): certificates for separate
// hosts name each host's own address, and nothing else.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { generateCerts } from '../../src/cmd/certs.js';

describe('certs generate: per-host SANs', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-certs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const san = (name: string) => new X509Certificate(readFileSync(join(dir, 'hosts', `${name}.crt`))).subjectAltName;

  it('each node certificate names its own host address only; without --no-loopback the loopback names stay', () => {
    generateCerts({ outDir: join(dir, 'hosts'), datanodes: 2, days: 1, loopbackSans: false, nodeSans: { metasrv: ['IP:10.0.0.11'], datanode1: ['IP:10.0.0.11'], datanode2: ['IP:10.0.0.12', 'DNS:db2.internal'] } });
    expect(san('metasrv')).to.equal('IP Address:10.0.0.11');
    expect(san('datanode1')).to.equal('IP Address:10.0.0.11');
    expect(san('datanode2')).to.equal('IP Address:10.0.0.12, DNS:db2.internal');
    generateCerts({ outDir: join(dir, 'local'), datanodes: 1, days: 1, nodeSans: { datanode1: ['IP:10.0.0.11'] } });
    expect(new X509Certificate(readFileSync(join(dir, 'local', 'datanode1.crt'))).subjectAltName).to.equal('IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost, IP Address:10.0.0.11');
  });

  it('refuses an unknown node name, a malformed SAN, and a certificate that would name no address, before writing anything', () => {
    const out = join(dir, 'refused');
    expect(() => generateCerts({ outDir: out, datanodes: 2, days: 1, nodeSans: { datanode3: ['IP:10.0.0.13'] } })).to.throw(/datanode3: no such node certificate/);
    expect(() => generateCerts({ outDir: out, datanodes: 1, days: 1, nodeSans: { datanode1: ['10.0.0.11'] } })).to.throw(/must look like IP:/);
    expect(() => generateCerts({ outDir: out, datanodes: 1, days: 1, loopbackSans: false, nodeSans: { metasrv: ['IP:10.0.0.11'] } })).to.throw(/datanode1 certificate would name no address/);
    expect(existsSync(out), 'nothing written').to.equal(false);
  });
});
