// A separate process that keeps fake datanodes' heartbeats flowing to a metasrv while the test's
// own process (which hosts the metasrv) is deliberately blocked: the beats must come from
// somewhere the block cannot stop. Usage: node --import tsx heartbeat-pulse.ts '<json>' where
// json = { addr, intervalMs, requests: [Heartbeat request, ...] }. Prints "beating" once the
// first round was answered; exits when its stdin closes (the test ended or died).
import { call, makeClient } from '../../src/rpc/server.js';

const { addr, intervalMs, requests } = JSON.parse(process.argv[2] ?? '{}') as { addr: string; intervalMs: number; requests: unknown[] };
const meta = makeClient('Meta', addr);
let announced = false;
const beat = async (): Promise<void> => {
  await Promise.all(requests.map((r) => call(meta, 'Heartbeat', r, 5000).catch(() => undefined)));
  if (!announced) {
    announced = true;
    process.stdout.write('beating\n');
  }
};
const timer = setInterval(() => void beat(), intervalMs);
void beat();
process.stdin.resume();
process.stdin.on('end', () => {
  clearInterval(timer);
  meta.close();
  process.exit(0);
});
