// make cluster-netns [TLS=1]: metasrv + 3 datanodes, each in its own network namespace with its
// own address (test/support/netns-cluster.ts), until Ctrl-C; then every process is stopped by PID
// and every namespace, veth and the bridge removed. Data stays in data/netns-3node until the next
// start. Root only.
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NetnsCluster } from './netns-cluster.js';
import { NetnsUnavailable, netnsUnavailableReason } from './netns.js';

const why = netnsUnavailableReason();
if (why) {
  process.stderr.write(`make cluster-netns: ${why}; \`make cluster\` runs the same cluster on 127.0.0.1 without root\n`);
  process.exit(2);
}
const dir = resolve(import.meta.dirname, '..', '..', 'data', 'netns-3node');
rmSync(dir, { recursive: true, force: true });
let cluster: NetnsCluster;
try {
  cluster = new NetnsCluster({ dir, tls: process.env['TLS'] === '1' });
} catch (err) {
  process.stderr.write(`make cluster-netns: ${err instanceof NetnsUnavailable ? err.message : (err as Error).stack}\n`);
  process.exit(2);
}
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  process.stderr.write('\nstopping the cluster and removing its namespaces...\n');
  await cluster.stop({ keepData: true }).catch((err: unknown) => process.stderr.write(`${String(err)}\n`));
  process.exit(code);
};
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
try {
  await cluster.start();
} catch (err) {
  process.stderr.write(`make cluster-netns: ${(err as Error).message}\n`);
  await stop(1);
}
const lab = cluster.lab;
const certs = join(dir, 'certs');
const tls = process.env['TLS'] === '1';
process.stdout.write(
  [
    '',
    `regiondb on stand-in hosts (run ${lab.run}, bridge ${lab.bridge} ${lab.subnet}.0/24, this shell is ${lab.gateway}; data and logs in ${dir}):`,
    `  metasrv     ns ${lab.host('metasrv').ns.padEnd(18)} grpc ${cluster.metasrvAddr}  http http://${cluster.hostAddr('metasrv')}:4001/metrics  (pid ${cluster.metasrv.process?.pid})`,
    ...cluster.datanodes.map(
      (d, i) =>
        `  ${d.name.padEnd(11)} ns ${lab.host(d.name).ns.padEnd(18)} grpc ${cluster.datanodeAddr(i)}  http http://${cluster.hostAddr(d.name)}:4200/metrics  (pid ${d.process?.pid})`,
    ),
    '',
    'Try it from another terminal (Ctrl-C here stops everything and removes the namespaces):',
    `  export REGIONDB_METASRV=${cluster.metasrvAddr}${tls ? ` REGIONDB_CA=${certs}/ca.crt REGIONDB_CERT=${certs}/client.crt REGIONDB_KEY=${certs}/client.key` : ''}`,
    `  ./regiondb status`,
    `  ip netns exec ${lab.host('datanode1').ns} ip route add blackhole ${cluster.hostAddr('datanode2')}/32   # cut datanode1 -> datanode2`,
    '',
  ].join('\n'),
);
