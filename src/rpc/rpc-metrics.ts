// gRPC server metrics of one process (docs/observability.md): every call served through the
// `unary` / `serverStream` wrappers of status.ts, by service, method and status code.
import * as grpc from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';
import { type RpcObservation, addRpcObserver } from './status.js';

/** Seconds; from sub-millisecond reads to calls that hit their deadline. */
export const RPC_SECONDS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const codeNames: Record<number, string> = Object.fromEntries(
  Object.entries(grpc.status)
    .filter(([, v]) => typeof v === 'number')
    .map(([name, v]) => [v as number, name]),
);

/** OK, UNAVAILABLE, … (the label value of a gRPC status code). */
export function grpcCodeName(code: grpc.status): string {
  return codeNames[code] ?? String(code);
}

/**
 * Registers regiondb_grpc_server_handled_total and regiondb_grpc_server_handling_seconds in
 * `registry` for calls to `services` (short names, e.g. "Database"); `extra` sees each of them
 * too. Returns the removal of the observer (on process stop).
 */
export function registerRpcMetrics(registry: Registry, services: readonly string[], extra?: (o: RpcObservation) => void): () => void {
  const handled = new Counter({
    name: 'regiondb_grpc_server_handled_total',
    help: 'gRPC calls completed by this process, by service, method and status code',
    labelNames: ['service', 'method', 'code'],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: 'regiondb_grpc_server_handling_seconds',
    help: 'Time from receiving a gRPC call to sending its status, by service and method (seconds)',
    labelNames: ['service', 'method'],
    buckets: RPC_SECONDS_BUCKETS,
    registers: [registry],
  });
  const wanted = new Set(services.map((s) => `regiondb.v1.${s}`));
  return addRpcObserver((o) => {
    if (!wanted.has(o.service)) return; // another server in this process (standalone mode)
    const service = o.service.slice('regiondb.v1.'.length);
    handled.inc({ service, method: o.method, code: grpcCodeName(o.code) });
    seconds.observe({ service, method: o.method }, o.seconds);
    extra?.(o);
  });
}
