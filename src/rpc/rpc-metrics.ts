// gRPC server metrics of one process (docs/observability.md): every call served through the
// `unary` / `serverStream` wrappers of status.ts, by service, method and status code.
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { BufferedLabelledHistogram, BufferedMultiLabelCounter } from './buffered-metrics.js';
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
  // Buffered (buffered-metrics.ts): every write and read of a datanode lands here, and prom-client's
  // own inc/observe hash the label object on each call; the scrape sees the same values.
  const handled = new BufferedMultiLabelCounter(registry, 'regiondb_grpc_server_handled_total', 'gRPC calls completed by this process, by service, method and status code', [
    'service',
    'method',
    'code',
  ]);
  const seconds = new BufferedLabelledHistogram(
    registry,
    'regiondb_grpc_server_handling_seconds',
    'Time from receiving a gRPC call to sending its status, by service and method (seconds)',
    ['service', 'method'],
    RPC_SECONDS_BUCKETS,
  );
  const prefix = 'regiondb.v1.';
  const wanted = new Set(services.map((s) => `${prefix}${s}`));
  return addRpcObserver((o) => {
    if (!wanted.has(o.service)) return; // another server in this process (standalone mode)
    const service = o.service.slice(prefix.length);
    const key = `${service}/${o.method}`;
    handled.inc(`${key}/${o.code}`, { service, method: o.method, code: grpcCodeName(o.code) });
    seconds.observe(key, { service, method: o.method }, o.seconds);
    extra?.(o);
  });
}
