// The security of one regiondb process (docs/security.md): its TLS material, its users, and the
// guard that EVERY gRPC method of its server goes through (startGrpcServer applies it to each
// service), so access rules live in one table here and services stay free of auth code.
//
//   read   any authenticated user                      Database reads, routes, status
//   write  a read-write user                           Database writes
//   ddl    a read-write user                           create/drop table, operator actions
//   ship   a replicator user                           the standby stream from a primary site
//   peer   a cluster node only                         raft, registration, heartbeats, open region
//
// A cluster node is, with TLS, a caller whose certificate the handshake verified against the
// cluster CA and whose subject OU is `regiondb-node`; nodes pass every rule (they hold the data
// anyway). Without TLS nobody can prove to be a node, and peer methods are open (plaintext
// clusters trust their network). Without [auth], user rules pass (`make cluster` is unchanged).
// A method missing from the table gets its service's default. Health checking and reflection
// are not guarded (not regiondb services).
import * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import type { AuthConfig, TlsConfig } from '../common/config.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { LogLimiter } from '../common/log-limiter.js';
import type { Logger } from '../common/logger.js';
import { type Access, AUTHORIZATION_KEY, type CallContext, FORWARDED_BY_KEY, type Principal, UserStore, callContext, roleAllows } from './auth.js';
import { failStream, toServiceError } from './status.js';
import { CertificateFiles, channelCredentials, isNodeCertificate, peerCertificate, serverCredentials } from './tls.js';

export type ServiceName = 'Database' | 'RaftTransport' | 'Meta' | 'Admin';

/** Who may call what. `default` covers methods added later without an entry. */
export const METHOD_ACCESS: Record<ServiceName, { readonly default: Access; readonly [method: string]: Access }> = {
  Database: { default: 'write', DescribeTable: 'read', Get: 'read', Scan: 'read', Write: 'write', Delete: 'write', Batch: 'write', CreateTable: 'ddl', DropTable: 'ddl' },
  Meta: {
    default: 'ddl',
    GetRoutes: 'read',
    ListNodes: 'read',
    CreateTable: 'ddl',
    DropTable: 'ddl',
    StartProcedure: 'ddl',
    RecordStandbyPromotion: 'ddl',
    GetStandbyPromotion: 'read',
    RegisterNode: 'peer',
    Heartbeat: 'peer',
  },
  Admin: { default: 'ddl', Status: 'read', OpenRegion: 'peer', FenceRegion: 'peer', StandbyShip: 'ship', StandbySeed: 'ship', StandbySeedObject: 'ship', StandbyStatus: 'read' },
  RaftTransport: { default: 'peer' },
};

export function accessOf(service: ServiceName, method: string): Access {
  return METHOD_ACCESS[service][method] ?? METHOD_ACCESS[service].default;
}

const REJECTION_LOG_INTERVAL_MS = 10_000;

interface GuardedCall {
  readonly metadata: grpc.Metadata;
  getPeer(): string;
}

export class Security {
  readonly tls: CertificateFiles | undefined;
  readonly users: UserStore | undefined;
  readonly clientAuth: 'none' | 'require';
  private rejected: Counter<'service' | 'reason'> | undefined;
  private readonly logLimiter = new LogLimiter(REJECTION_LOG_INTERVAL_MS);

  /** Loads the certificate and users files now (a broken file is a startup error naming it) and watches them. */
  constructor(
    config: { tls?: TlsConfig | undefined; auth?: AuthConfig | undefined },
    private readonly log: Logger,
  ) {
    const tls = config.tls;
    this.clientAuth = tls?.client_auth ?? 'none';
    this.tls = tls ? new CertificateFiles({ caFile: tls.ca_file, certFile: tls.cert_file, keyFile: tls.key_file }, log) : undefined;
    this.users = config.auth ? new UserStore(config.auth.users_file, log) : undefined;
    const checkMs = tls?.reload_check_ms ?? 5000;
    this.tls?.watch(checkMs);
    this.users?.watch(checkMs);
    if (this.users && !this.tls) {
      log.warn('client authentication is on without TLS: passwords and tokens cross the network in clear text, and peer services are open');
    }
  }

  /** No TLS, no users: the plaintext default. */
  static none(log: Logger): Security {
    return new Security({}, log);
  }

  /** Counts rejected calls in a process's registry (`regiondb_security_rejected_total`). */
  registerMetrics(registry: Registry): void {
    this.rejected = new Counter({
      name: 'regiondb_security_rejected_total',
      help: 'Calls refused by authentication or authorization, by service and reason',
      labelNames: ['service', 'reason'],
      registers: [registry],
    });
  }

  get enabled(): boolean {
    return this.tls !== undefined || this.users !== undefined;
  }

  describe(): Record<string, unknown> {
    return { tls: this.tls ? this.clientAuth : 'off', auth: this.users ? this.users.file : 'off' };
  }

  serverCredentials(): grpc.ServerCredentials {
    return this.tls ? serverCredentials(this.tls, this.clientAuth) : grpc.ServerCredentials.createInsecure();
  }

  /** Credentials for this node's calls to its peers (mTLS with the node certificate under TLS). */
  channelCredentials(): grpc.ChannelCredentials {
    return this.tls ? channelCredentials(this.tls) : grpc.credentials.createInsecure();
  }

  /** SIGHUP: re-read certificates and users now (they are also polled for changes). */
  reload(): void {
    this.tls?.reload();
    this.users?.reload();
  }

  close(): void {
    this.tls?.close();
    this.users?.close();
  }

  /** Wraps every handler of a service with the access check of its method. */
  guard(service: ServiceName, definition: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): grpc.UntypedServiceImplementation {
    if (!this.enabled) return impl;
    const out: grpc.UntypedServiceImplementation = {};
    for (const [method, def] of Object.entries(definition)) {
      const handler = impl[method];
      if (!handler) continue;
      const access = accessOf(service, method);
      const admit = (call: GuardedCall) => this.authorize(service, method, access, call);
      if (def.requestStream || def.responseStream) {
        const h = handler as (call: grpc.ServerWritableStream<unknown, unknown>) => void;
        out[method] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
          admit(call).then(
            (ctx) => {
              const reauthorize = (needs: Access) => this.authorize(service, method, needs, call).then(() => undefined);
              callContext.run({ ...ctx, reauthorize }, () => h(call));
            },
            (err: unknown) => failStream(call, toServiceError(err, this.log)),
          );
        }) as grpc.UntypedHandleCall;
      } else {
        const h = handler as grpc.handleUnaryCall<unknown, unknown>;
        out[method] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          admit(call).then(
            (ctx) => callContext.run(ctx, () => h(call, callback)),
            (err: unknown) => callback(toServiceError(err, this.log) as grpc.ServiceError),
          );
        }) as grpc.UntypedHandleCall;
      }
    }
    return out;
  }

  /** Resolves with the context to run the handler in, or rejects UNAUTHENTICATED / PERMISSION_DENIED. */
  async authorize(service: ServiceName, method: string, access: Access, call: GuardedCall): Promise<CallContext> {
    const header = call.metadata.get(AUTHORIZATION_KEY)[0];
    const authorization = header === undefined ? undefined : String(header);
    const context = authorization ? { authorization } : {};
    // A node forwarding a client's request (FORWARDED_BY_KEY) is checked as that client: the
    // node certificate proves which cluster the hop comes from, not what the client may do.
    const forwarded = call.metadata.get(FORWARDED_BY_KEY).length > 0;
    if (this.tls && !forwarded) {
      const cert = peerCertificate(call);
      if (cert && isNodeCertificate(cert)) return context;
    }
    if (access === 'peer') {
      if (!this.tls) return context;
      throw this.reject(service, method, call, 'no-node-certificate', new RegionDbError(ErrorCode.Unauthenticated, `${service}.${method} is a peer service: it needs a node certificate signed by the cluster CA`));
    }
    if (!this.users) return context;
    let principal: Principal;
    try {
      principal = await this.users.authenticate(authorization, call.getPeer());
    } catch (err) {
      if (!isRegionDbError(err)) throw err;
      const reason = err.details['loginLockedOut'] ? 'login-locked-out' : authorization ? 'invalid-credentials' : 'no-credentials';
      throw this.reject(service, method, call, reason, err);
    }
    if (!roleAllows(principal.role, access)) {
      throw this.reject(service, method, call, 'permission-denied', new RegionDbError(ErrorCode.PermissionDenied, `user ${principal.name} (${principal.role}) may not call ${service}.${method} (${access}${access === 'ship' ? ': only a replicator user may' : ''})`));
    }
    return context;
  }

  private reject(service: ServiceName, method: string, call: GuardedCall, reason: string, err: RegionDbError): RegionDbError {
    this.rejected?.inc({ service, reason });
    const suppressed = this.logLimiter.admit(`${service}.${method}:${reason}`, Date.now());
    if (suppressed !== undefined) this.log.warn({ service, method, reason, peer: call.getPeer(), suppressed, err: err.message }, 'rejected a call');
    return err;
  }
}
