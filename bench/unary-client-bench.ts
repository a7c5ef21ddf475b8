// The client library's CPU per unary call (docs/performance.md, round 7), against a trivial
// server in a child process (Admin.Status answered at once), so the client's process CPU is what
// is measured. Variants, alternating each round in an order flipped every round:
//   round 6  — the channel interceptor every makeClient client had (a pass-through layer when there
//              is no header to add) and a fresh Metadata per call, as before round 7;
//   round 7  — makeClient and call() as they are now (no interceptor layer, one shared Metadata);
//   +no retries — round 7 plus 'grpc.enable_retries': 0 (measured, not kept: it also turns off
//              grpc-js's transparent retries of calls that never reached the server).
// IN_FLIGHT calls at a time, CALLS per round; µs of client CPU per call, medians and ranges over
// UNARY_BENCH_ROUNDS (default 9).
//   node --import tsx bench/unary-client-bench.ts
import { fork } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { limits } from '../src/common/limits.js';
import { callContext } from '../src/rpc/auth.js';
import { loadProtos } from '../src/rpc/proto.js';
import { call, makeClient, reconnectOptions } from '../src/rpc/server.js';

const ROUNDS = Number(process.env['UNARY_BENCH_ROUNDS'] ?? 9);
const CALLS = 4_000;
const IN_FLIGHT = 16;

if (process.argv[2] === 'serve') {
  const server = new grpc.Server();
  server.addService(loadProtos().services.Admin.service, {
    Status: (_c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, {}),
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.send?.(port);
  });
} else {
  const child = fork(process.argv[1]!, ['serve'], { execArgv: process.execArgv });
  const port = await new Promise<number>((ok) => child.once('message', (p) => ok(Number(p))));
  const addr = `127.0.0.1:${port}`;
  const options = { 'grpc.max_receive_message_length': limits.grpcMessageBytesMax, 'grpc.max_send_message_length': limits.grpcMessageBytesMax, ...reconnectOptions };
  const Admin = loadProtos().services.Admin;
  // The interceptor of round 6 (auth.ts before round 7), with no header to add.
  const passThrough: grpc.Interceptor = (o, nextCall) => {
    const authorization = callContext.getStore()?.authorization;
    if (!authorization) return new grpc.InterceptingCall(nextCall(o));
    throw new Error('no header expected in this bench');
  };
  const variants: Record<string, { client: grpc.Client; metadata: () => grpc.Metadata | undefined }> = {
    'round 6': { client: new Admin(addr, grpc.credentials.createInsecure(), { ...options, interceptors: [passThrough] }), metadata: () => new grpc.Metadata() },
    'round 7': { client: makeClient('Admin', addr), metadata: () => undefined },
    '+no retries': {
      client: new Admin(addr, grpc.credentials.createInsecure(), { ...options, 'grpc.enable_retries': 0, interceptor_providers: [() => undefined as unknown as grpc.Interceptor] }),
      metadata: () => undefined,
    },
  };
  async function run(v: (typeof variants)[string], n: number): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        const md = v.metadata();
        await (md ? call(v.client, 'Status', {}, 10_000, md) : call(v.client, 'Status', {}, 10_000));
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  }
  const names = Object.keys(variants);
  for (const name of names) await run(variants[name]!, CALLS); // connect and warm every variant
  const samples = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) {
      const before = process.cpuUsage();
      await run(variants[name]!, CALLS);
      const used = process.cpuUsage(before);
      samples.get(name)!.push((used.user + used.system) / CALLS);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  console.log(`client CPU µs per unary call (median, min–max over ${ROUNDS} rounds of ${CALLS}, ${IN_FLIGHT} in flight)`);
  for (const name of names) {
    const xs = samples.get(name)!;
    console.log(`  ${name.padEnd(12)} ${median(xs).toFixed(2).padStart(6)}   ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`);
  }
  for (const v of Object.values(variants)) v.client.close();
  child.kill();
}
