// The physical floor of a replicated write on this machine, measured in the same run as the
// benchmark: one WAL sync (a one-record LevelDB batch with sync: true, exactly what regiondb's
// WAL does per group commit) and one loopback gRPC unary round trip (grpc-js, 1 in flight).
// A quorum write needs at least one sync and two round trips (client → leader → follower), so
// the latency target for one client is 2 × (sync p50 + 2 × round trip p50).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Level } from 'level';
import { newLatencyHistogram } from './driver.js';

export interface Floor {
  readonly walSyncP50Ms: number;
  readonly grpcRoundTripP50Ms: number;
  /** 2 × (WAL sync + 2 loopback round trips), p50s. */
  readonly singleClientWriteTargetMs: number;
}

async function p50Of(seconds: number, op: () => Promise<void>): Promise<number> {
  const h = newLatencyHistogram();
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const t0 = performance.now();
    await op();
    h.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
  }
  const p50 = h.getValueAtPercentile(50) / 1000;
  h.destroy();
  return p50;
}

async function walSyncP50Ms(seconds: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-bench-floor-'));
  const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  try {
    await db.open();
    const value = new Uint8Array(64);
    let i = 0;
    return await p50Of(seconds, () => db.batch([{ type: 'put', key: `k${i++ % 1000}`, value }], { sync: true }));
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function grpcRoundTripP50Ms(seconds: number): Promise<number> {
  const identity = (b: Buffer) => b;
  const service: grpc.ServiceDefinition = {
    Echo: {
      path: '/regiondb.bench.Echo/Echo',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  };
  const server = new grpc.Server();
  server.addService(service, { Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
  const port = await new Promise<number>((ok, fail) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))),
  );
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const payload = Buffer.alloc(64);
  const echo = () =>
    new Promise<void>((ok, fail) =>
      (client as unknown as { Echo(b: Buffer, cb: (err: Error | null) => void): void }).Echo(payload, (err) => (err ? fail(err) : ok())),
    );
  try {
    for (let i = 0; i < 200; i++) await echo(); // connect and warm up
    return await p50Of(seconds, echo);
  } finally {
    client.close();
    server.forceShutdown();
  }
}

export async function measureFloor(seconds = 1): Promise<Floor> {
  const walSync = await walSyncP50Ms(seconds);
  const rtt = await grpcRoundTripP50Ms(seconds);
  return { walSyncP50Ms: walSync, grpcRoundTripP50Ms: rtt, singleClientWriteTargetMs: 2 * (walSync + 2 * rtt) };
}
