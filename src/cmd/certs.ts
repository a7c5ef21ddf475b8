// `regiondb certs generate`: a development CA and the certificates a local cluster needs, made
// with the openssl CLI (no npm dependency). Keys are P-256 ECDSA (fast to make, small).
//
//   ca.crt / ca.key                 the cluster CA (reused if already in the directory)
//   metasrv.crt / .key              OU=regiondb-node, CN=metasrv
//   datanode<N>.crt / .key          OU=regiondb-node, CN=datanode-<N>  (binds raft traffic to node N)
//   client.crt / .key               OU=regiondb-client, CN=client       (client certificate, no peer rights)
//
// Node certificates are valid as servers and as clients (mTLS between peers) for 127.0.0.1,
// ::1 and localhost (unless --no-loopback), plus any --san given, plus --node-san entries for
// that node alone (its host's address, for clusters on separate hosts). See docs/security.md
// and docs/deploy.md.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { DATANODE_CN_PREFIX, NODE_CERT_OU } from '../rpc/tls.js';

export interface GenerateCertsOptions {
  readonly outDir: string;
  /** Datanode certificates datanode1..datanodeN. */
  readonly datanodes: number;
  readonly days: number;
  /** Extra subjectAltNames for node certificates, e.g. ["IP:10.0.0.5", "DNS:db1.internal"]. */
  readonly extraSans?: readonly string[];
  /**
   * SANs for one node certificate only, by name ("metasrv", "datanode2"), after the shared ones:
   * a host's own address (issue 21), e.g. { datanode2: ["IP:10.0.0.12"] }.
   */
  readonly nodeSans?: Readonly<Record<string, readonly string[]>>;
  /** Include 127.0.0.1, ::1 and localhost in node certificates (default true; false for multi-host clusters). */
  readonly loopbackSans?: boolean;
  /** Subject O of every certificate (distinguishes two development CAs in tests). */
  readonly organization?: string;
}

export interface GeneratedCert {
  readonly name: string;
  readonly certFile: string;
  readonly keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer; message: string };
    if (e.code === 'ENOENT') throw new RegionDbError(ErrorCode.Config, 'certs generate needs the openssl command-line tool on PATH');
    throw new RegionDbError(ErrorCode.Internal, `openssl ${args[0]} failed: ${e.stderr?.toString().trim() || e.message}`);
  }
}

function validSan(san: string): string {
  if (!/^(IP|DNS):[A-Za-z0-9.:*-]+$/.test(san)) throw new RegionDbError(ErrorCode.InvalidArgument, `--san ${JSON.stringify(san)} must look like IP:10.0.0.5 or DNS:db1.example`);
  return san;
}

/** Creates (or reuses) the CA in `outDir` and writes every node and client certificate. */
export function generateCerts(options: GenerateCertsOptions): { ca: string; certs: GeneratedCert[] } {
  const { days } = options;
  const outDir = resolve(options.outDir); // openssl runs in it: relative paths would resolve twice
  if (!Number.isInteger(options.datanodes) || options.datanodes < 1 || options.datanodes > 1000) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `--datanodes must be 1..1000, got ${options.datanodes}`);
  }
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new RegionDbError(ErrorCode.InvalidArgument, `--days must be 1..3650, got ${days}`);
  const org = options.organization ?? 'regiondb';
  if (!/^[A-Za-z0-9 ._-]{1,64}$/.test(org)) throw new RegionDbError(ErrorCode.InvalidArgument, `organization ${JSON.stringify(org)}: letters, digits, space . _ - only`);
  const sans = [...(options.loopbackSans === false ? [] : ['IP:127.0.0.1', 'IP:::1', 'DNS:localhost']), ...(options.extraSans ?? []).map(validSan)];
  const nodeNames = ['metasrv', ...Array.from({ length: options.datanodes }, (_, i) => `datanode${i + 1}`)];
  for (const name of Object.keys(options.nodeSans ?? {})) {
    if (!nodeNames.includes(name)) throw new RegionDbError(ErrorCode.InvalidArgument, `--node-san ${name}: no such node certificate (${nodeNames.join(', ')})`);
  }
  const sansOf = (name: string) => {
    const all = [...sans, ...(options.nodeSans?.[name] ?? []).map(validSan)];
    if (all.length === 0) throw new RegionDbError(ErrorCode.InvalidArgument, `the ${name} certificate would name no address: give --san or --node-san ${name}=IP:…`);
    return all;
  };
  for (const name of nodeNames) sansOf(name); // every problem before anything is written
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(outDir, '.certs-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    const caCrt = join(outDir, 'ca.crt');
    const caKey = join(outDir, 'ca.key');
    if (!existsSync(caCrt) || !existsSync(caKey)) {
      openssl(
        ['req', '-x509', ...ec, '-keyout', caKey, '-out', caCrt, '-days', String(days), '-subj', `/O=${org}/CN=${org} development CA`,
          '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
        outDir,
      );
      chmodSync(caKey, 0o600);
    }
    const leaf = (name: string, subject: string, extensions: string[]): GeneratedCert => {
      const keyFile = join(outDir, `${name}.key`);
      const certFile = join(outDir, `${name}.crt`);
      const csr = join(work, `${name}.csr`);
      const ext = join(work, `${name}.ext`);
      writeFileSync(ext, `${['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', ...extensions].join('\n')}\n`);
      openssl(['req', '-new', ...ec, '-keyout', keyFile, '-out', csr, '-subj', subject], outDir);
      chmodSync(keyFile, 0o600);
      openssl(['x509', '-req', '-in', csr, '-CA', caCrt, '-CAkey', caKey, '-CAcreateserial', '-CAserial', join(work, 'ca.srl'), '-days', String(days), '-extfile', ext, '-out', certFile], outDir);
      return { name, certFile, keyFile };
    };
    const nodeExtensions = (name: string) => [`subjectAltName=${sansOf(name).join(',')}`, 'extendedKeyUsage=serverAuth,clientAuth'];
    const certs = [leaf('metasrv', `/O=${org}/OU=${NODE_CERT_OU}/CN=metasrv`, nodeExtensions('metasrv'))];
    for (let n = 1; n <= options.datanodes; n++) certs.push(leaf(`datanode${n}`, `/O=${org}/OU=${NODE_CERT_OU}/CN=${DATANODE_CN_PREFIX}${n}`, nodeExtensions(`datanode${n}`)));
    certs.push(leaf('client', `/O=${org}/OU=regiondb-client/CN=client`, ['extendedKeyUsage=clientAuth']));
    return { ca: caCrt, certs };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `regiondb certs generate --out DIR`. */
export function registerCertsCommand(program: Command): void {
  const certs = program.command('certs').description('TLS certificates for development clusters (docs/security.md)');
  certs
    .command('generate')
    .description('create a CA (or reuse DIR/ca.crt + ca.key) and certificates for the metasrv, datanode1..N and a client, with the openssl CLI')
    .requiredOption('--out <dir>', 'directory to write into (e.g. data/local-3node-tls/certs)')
    .option('--datanodes <n>', 'datanode certificates to make', (v) => Number(v), 3)
    .option('--days <n>', 'validity in days', (v) => Number(v), 365)
    .option('--san <entry...>', 'extra subjectAltName for every node certificate, e.g. IP:10.0.0.5 DNS:db1.internal')
    .option('--node-san <name=entry...>', 'subjectAltName for one node certificate: its host\'s address, e.g. datanode2=IP:10.0.0.12 (docs/deploy.md)')
    .option('--no-loopback', 'leave 127.0.0.1, ::1 and localhost out of node certificates (separate hosts)')
    .action((opts: { out: string; datanodes: number; days: number; san?: string[]; nodeSan?: string[]; loopback: boolean }) => {
      const nodeSans: Record<string, string[]> = {};
      for (const entry of opts.nodeSan ?? []) {
        const m = /^([a-z0-9]+)=(.+)$/.exec(entry);
        if (!m) throw new RegionDbError(ErrorCode.InvalidArgument, `--node-san ${JSON.stringify(entry)} must look like datanode2=IP:10.0.0.12`);
        (nodeSans[m[1]!] ??= []).push(m[2]!);
      }
      const { ca, certs: made } = generateCerts({ outDir: opts.out, datanodes: opts.datanodes, days: opts.days, extraSans: opts.san ?? [], nodeSans, loopbackSans: opts.loopback });
      process.stdout.write(`CA: ${ca}\n${made.map((c) => `${c.name.padEnd(10)} ${c.certFile}  ${c.keyFile}`).join('\n')}\n`);
      process.stdout.write(`\nKeep ${join(opts.out, 'ca.key')} private: whoever holds it can mint node certificates.\n`);
    });
}
