// TLS material for gRPC servers and channels, reloadable without a restart (docs/security.md).
//
// grpc-js (1.14) builds server and channel credentials from a CertificateProvider and re-reads
// it on every update: a server swaps its secure context in place (`setSecureContext`), a channel
// uses the new context for its next handshake. `CertificateFiles` is that provider over three
// PEM files; `reload()` (SIGHUP, or the file poller) validates the new files first and keeps the
// old ones if they are broken, so a half-copied certificate never takes a node off the network.
// Established connections keep the session they negotiated; new connections use the new files.
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/** Subject OU of every node certificate (metasrv and datanodes); peer services require it. */
export const NODE_CERT_OU = 'regiondb-node';
/** Subject CN of datanode N's certificate: binds raft traffic to the node id it claims. */
export const DATANODE_CN_PREFIX = 'datanode-';

export interface TlsFiles {
  readonly caFile: string;
  /** Optional for a client that only verifies servers (client_auth = "none"). */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

interface LoadedFiles {
  readonly ca: Buffer;
  readonly identity: { certificate: Buffer; privateKey: Buffer } | null;
  /** The node certificate's subject and expiry, for logs. */
  readonly subject: string;
  readonly validTo: string;
  /** sha256 over every file's bytes: a reload that changes nothing is a no-op. */
  readonly fingerprint: string;
}

function fingerprintOf(...parts: Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `cannot read TLS ${what} ${file}: ${(err as Error).message}`);
  }
}

/** Reads and cross-checks the files: parsable PEM, the key matches the certificate, not expired. */
function loadFiles(files: TlsFiles): LoadedFiles {
  const ca = readPem(files.caFile, 'CA certificate');
  try {
    new X509Certificate(ca);
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `TLS CA certificate ${files.caFile} is not a PEM certificate: ${(err as Error).message}`);
  }
  if (!files.certFile && !files.keyFile) return { ca, identity: null, subject: '', validTo: '', fingerprint: fingerprintOf(ca) };
  if (!files.certFile || !files.keyFile) throw new RegionDbError(ErrorCode.Config, 'TLS: a certificate needs its key (give both cert and key files, or neither)');
  const certificate = readPem(files.certFile, 'certificate');
  const privateKey = readPem(files.keyFile, 'private key');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certificate);
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `TLS certificate ${files.certFile} is not a PEM certificate: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(privateKey));
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `TLS private key ${files.keyFile} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!matches) throw new RegionDbError(ErrorCode.Config, `TLS private key ${files.keyFile} does not belong to certificate ${files.certFile}`);
  if (Date.parse(cert.validTo) < Date.now()) throw new RegionDbError(ErrorCode.Config, `TLS certificate ${files.certFile} expired on ${cert.validTo}`);
  return {
    ca,
    identity: { certificate, privateKey },
    subject: cert.subject.replace(/\n/g, ', '),
    validTo: cert.validTo,
    fingerprint: fingerprintOf(ca, certificate, privateKey),
  };
}

/** A grpc-js CertificateProvider over PEM files: the CA and (optionally) this node's identity. */
export class CertificateFiles implements CertificateProvider {
  private current: LoadedFiles;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  /** The file poller's listener, while watching (removed by close(), and only ours). */
  private onChange: (() => void) | undefined;

  /** Loads the files now: a broken file is a startup error naming it. */
  constructor(
    readonly files: TlsFiles,
    private readonly log?: Logger,
  ) {
    this.current = loadFiles(files);
  }

  get hasIdentity(): boolean {
    return this.current.identity !== null;
  }

  /**
   * Re-reads the files. Returns true if they changed and were taken; a broken set is logged and
   * the previous certificates stay in use.
   */
  reload(): boolean {
    let next: LoadedFiles;
    try {
      next = loadFiles(this.files);
    } catch (err) {
      this.log?.error({ err: (err as Error).message }, 'TLS reload failed; keeping the current certificates');
      return false;
    }
    if (next.fingerprint === this.current.fingerprint) return false;
    this.current = next;
    for (const l of this.caListeners) l({ caCertificate: next.ca });
    if (next.identity) for (const l of this.identityListeners) l(next.identity);
    this.log?.info({ subject: next.subject, validTo: next.validTo }, 'TLS certificates reloaded');
    return true;
  }

  /** Polls the files every `intervalMs` and reloads on change (fs.watchFile: works across renames). */
  watch(intervalMs: number): void {
    if (intervalMs <= 0 || this.onChange) return;
    const onChange = () => void this.reload();
    this.onChange = onChange;
    for (const f of this.paths()) watchFile(f, { interval: intervalMs, persistent: false }, onChange);
  }

  close(): void {
    const onChange = this.onChange;
    this.onChange = undefined;
    if (onChange) for (const f of this.paths()) unwatchFile(f, onChange);
  }

  private paths(): string[] {
    return [this.files.caFile, this.files.certFile, this.files.keyFile].filter((f): f is string => !!f);
  }

  // grpc-js calls these when a server binds or a channel connects. The first update is sent on
  // the next tick, as grpc-js's own FileWatcherCertificateProvider does: a server registers its
  // context watcher only after adding the listener, and would miss a synchronous update.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const ca = this.current.ca;
    process.nextTick(() => this.caListeners.has(listener) && listener({ caCertificate: ca }));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    const identity = this.current.identity;
    process.nextTick(() => this.identityListeners.has(listener) && listener(identity));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}

/**
 * Server credentials: the node's certificate, and the CA to verify client certificates with.
 * "require" refuses handshakes without a CA-signed certificate; "none" still asks for one, so
 * peers can prove they are nodes (see `peerCertificate`), but lets plain TLS clients in.
 */
export function serverCredentials(files: CertificateFiles, clientAuth: 'none' | 'require'): grpc.ServerCredentials {
  if (!files.hasIdentity) throw new RegionDbError(ErrorCode.Config, 'TLS: a server needs cert_file and key_file');
  // One provider serves both roles, so the (ca, identity) argument order does not matter.
  return grpc.experimental.createCertificateProviderServerCredentials(files, files, clientAuth === 'require');
}

/** Channel credentials: verify the server against the CA; present our certificate if we have one. */
export function channelCredentials(files: CertificateFiles): grpc.ChannelCredentials {
  return grpc.experimental.createCertificateProviderChannelCredentials(files, files.hasIdentity ? files : null);
}

interface HasAuthContext {
  getAuthContext?(): { sslPeerCertificate?: PeerCertificate } | null;
}

/** The peer's certificate if the TLS handshake verified it against our CA; else undefined. */
export function peerCertificate(call: unknown): PeerCertificate | undefined {
  const getter = (call as HasAuthContext).getAuthContext;
  if (typeof getter !== 'function') return undefined;
  // grpc-js reports a certificate only for an authorized (CA-verified) TLS socket.
  return getter.call(call)?.sslPeerCertificate ?? undefined;
}

function subjectField(cert: PeerCertificate, field: 'OU' | 'CN'): string[] {
  const v = (cert.subject as unknown as Record<string, string | string[] | undefined>)[field];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** A certificate of a cluster node (metasrv or datanode), as opposed to a client's. */
export function isNodeCertificate(cert: PeerCertificate): boolean {
  return subjectField(cert, 'OU').includes(NODE_CERT_OU);
}

/** The datanode id a certificate was issued to (CN "datanode-<id>"), if it names one. */
export function certificateNodeId(cert: PeerCertificate): number | undefined {
  for (const cn of subjectField(cert, 'CN')) {
    const m = new RegExp(`^${DATANODE_CN_PREFIX}([1-9]\\d*)$`).exec(cn);
    if (m) return Number(m[1]);
  }
  return undefined;
}
