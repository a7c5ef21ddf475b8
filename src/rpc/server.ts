// gRPC and HTTP servers for every regiondb process: gRPC with health checking and server
// reflection (any gRPC tool or language can discover the API); HTTP with /metrics
// (prom-client) and /health (JSON).
import { type Server as HttpServer, createServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Registry } from 'prom-client';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/logger.js';
import { authorizationInterceptors } from './auth.js';
import { loadProtos, reflectionDefinition } from './proto.js';
import { Security, type ServiceName } from './security.js';
import { tolerantService } from './status.js';

export interface ServiceBinding {
  readonly name: ServiceName;
  readonly impl: grpc.UntypedServiceImplementation;
  /** The service's methods with their own serializers (same wire format); default: proto-loader's. */
  readonly definition?: grpc.ServiceDefinition;
}

export interface RunningGrpcServer {
  readonly port: number;
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  stop(): Promise<void>;
}

/**
 * Serves `bindings` on host:port. `security` supplies the credentials (TLS or plaintext) and
 * guards every method of every service (src/rpc/security.ts); health and reflection stay open.
 */
export async function startGrpcServer(
  host: string,
  port: number,
  bindings: readonly ServiceBinding[],
  log: Logger,
  security: Security = Security.none(log),
): Promise<RunningGrpcServer> {
  const { definition, services } = loadProtos();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': limits.grpcMessageBytesMax,
    'grpc.max_send_message_length': limits.grpcMessageBytesMax,
    'grpc.max_concurrent_streams': limits.grpcConcurrentStreamsPerConnectionMax,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const status: Record<string, 'SERVING'> = { '': 'SERVING' };
  for (const b of bindings) {
    const service = tolerantService(b.definition ?? services[b.name].service);
    server.addService(service, security.guard(b.name, service, b.impl));
    status[`regiondb.v1.${b.name}`] = 'SERVING';
  }
  const health = new HealthImplementation(status);
  health.addToServer(server);
  new ReflectionService(reflectionDefinition(definition)).addToServer(server);
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, security.serverCredentials(), (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((err: Error) => {
    throw new RegionDbError(ErrorCode.Config, `cannot listen for gRPC on ${host}:${port}: ${err.message}`, { cause: err });
  });
  log.info({ addr: `${host}:${boundPort}`, services: bindings.map((b) => b.name), ...security.describe() }, 'gRPC server listening');
  return {
    port: boundPort,
    server,
    health,
    stop: () =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

export interface RunningHttpServer {
  readonly port: number;
  stop(): Promise<void>;
}

export async function startHttpServer(
  host: string,
  port: number,
  registry: Registry,
  health: () => Record<string, unknown>,
): Promise<RunningHttpServer> {
  const server: HttpServer = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        },
      );
    } else if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(health()));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /metrics or /health\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new RegionDbError(ErrorCode.Config, `cannot listen for HTTP on ${host}:${port}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface ClientSecurity {
  /** TLS (src/rpc/tls.ts channelCredentials) or plaintext (the default). */
  readonly credentials?: grpc.ChannelCredentials | undefined;
  /**
   * `authorization` header for every call (a client's user or token). Without it, a call made
   * while serving another call carries that call's header (src/rpc/auth.ts).
   */
  readonly authorization?: string | undefined;
}

/** Client classes of service definitions with their own serializers (ServiceBinding.definition). */
const clientConstructors = new WeakMap<grpc.ServiceDefinition, grpc.ServiceClientConstructor>();

/**
 * A gRPC client for a regiondb service at `addr`; `definition` gives methods their own
 * serializers (same wire format, e.g. databaseService()), default: proto-loader's.
 */
/** Reconnect backoff of every channel we open (limits.grpcReconnectBackoffMsMax says why). */
export const reconnectOptions = {
  'grpc.initial_reconnect_backoff_ms': Math.min(250, limits.grpcReconnectBackoffMsMax),
  'grpc.max_reconnect_backoff_ms': limits.grpcReconnectBackoffMsMax,
} as const;

export function makeClient(name: ServiceBinding['name'], addr: string, security: ClientSecurity = {}, definition?: grpc.ServiceDefinition): grpc.Client {
  let Client = loadProtos().services[name];
  if (definition) {
    let own = clientConstructors.get(definition);
    if (!own) clientConstructors.set(definition, (own = grpc.makeGenericClientConstructor(definition, name)));
    Client = own;
  }
  return new Client(addr, security.credentials ?? grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': limits.grpcMessageBytesMax,
    'grpc.max_send_message_length': limits.grpcMessageBytesMax,
    ...reconnectOptions,
    interceptor_providers: [authorizationInterceptors(security.authorization)],
  });
}

/**
 * The metadata of a call that sends none of its own, shared by all such calls: grpc-js copies a
 * call's metadata before it adds to it (ResolvingCall.start), and so does our interceptor
 * (auth.ts), so nothing writes to this one.
 */
const NO_METADATA = new grpc.Metadata();

/** Promise wrapper for a unary call with a deadline. */
export function call<Res>(client: grpc.Client, method: string, request: unknown, timeoutMs: number, metadata = NO_METADATA): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method];
    if (typeof fn !== 'function') {
      reject(new RegionDbError(ErrorCode.Internal, `no gRPC method ${method}`));
      return;
    }
    fn.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Res) =>
      err ? reject(err) : resolve(res),
    );
  });
}
