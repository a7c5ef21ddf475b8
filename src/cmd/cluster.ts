// `regiondb cluster`: starts the metasrv (metasrv.toml, or the members of a metasrv group:
// metasrv1.toml, metasrv2.toml, …) and every datanode of a config directory as child
// processes, waits until each answers /health, prints endpoints and a ready-to-paste example,
// and stops them all (SIGTERM, by PID) on Ctrl-C.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { datanodeConfigSchema, loadConfig, metasrvConfigSchema } from '../common/config.js';
import { logChildOutput, supervisedSpawnOptions } from './supervision.js';

interface Child {
  name: string;
  process: ChildProcess;
  healthUrl: string;
}

async function waitHealthy(url: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export async function runLocalCluster(configDir: string): Promise<void> {
  const metasrvFiles = readdirSync(configDir)
    .filter((f) => /^metasrv\d*\.toml$/.test(f))
    .sort()
    .map((f) => join(configDir, f));
  if (metasrvFiles.length === 0) throw new Error(`no metasrv.toml (or metasrv1.toml, …) in ${configDir}`);
  const metasrvs = metasrvFiles.map((f) => ({ file: f, name: basename(f, '.toml'), config: loadConfig(metasrvConfigSchema, f) }));
  const metasrv = metasrvs[0]!.config;
  const datanodeFiles = readdirSync(configDir)
    .filter((f) => /^datanode\d+\.toml$/.test(f))
    .sort()
    .map((f) => join(configDir, f));
  const datanodes = datanodeFiles.map((f) => ({ file: f, config: loadConfig(datanodeConfigSchema, f) }));
  const logDir = join(metasrv.node.data_dir, '..', 'logs');
  mkdirSync(logDir, { recursive: true });

  const script = process.argv[1]!;
  const children: Child[] = [];
  const launch = (name: string, args: string[], healthUrl: string) => {
    const child = spawn(process.execPath, [...process.execArgv, script, ...args], supervisedSpawnOptions());
    logChildOutput(child, join(logDir, `${name}.log`), name);
    child.on('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`${name} (pid ${child.pid}) exited (code ${code}, signal ${signal}); see ${join(logDir, `${name}.log`)}\n`);
    });
    children.push({ name, process: child, healthUrl });
  };

  let stopping = false;
  const stopAll = async () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write('\nstopping the cluster...\n');
    for (const c of children) if (c.process.exitCode === null) c.process.kill('SIGTERM');
    const deadline = Date.now() + 5000;
    while (children.some((c) => c.process.exitCode === null && c.process.signalCode === null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
    process.exit(0);
  };
  process.on('SIGINT', () => void stopAll());
  process.on('SIGTERM', () => void stopAll());
  // Certificate or users-file rotation: every child reloads (docs/security.md).
  process.on('SIGHUP', () => {
    for (const c of children) if (c.process.exitCode === null) c.process.kill('SIGHUP');
  });

  for (const m of metasrvs) launch(m.name, ['metasrv', '-c', m.file], `http://${m.config.http.host}:${m.config.http.port}/health`);
  for (const c of children.slice(0, metasrvs.length)) {
    if (!(await waitHealthy(c.healthUrl, 20_000))) {
      process.stderr.write(`${c.name} did not become healthy; see ${join(logDir, `${c.name}.log`)}\n`);
      await stopAll();
    }
  }
  for (const d of datanodes) {
    launch(`datanode${d.config.node.id}`, ['datanode', '-c', d.file], `http://${d.config.http.host}:${d.config.http.port}/health`);
  }
  for (const c of children.slice(metasrvs.length)) {
    if (!(await waitHealthy(c.healthUrl, 20_000))) {
      process.stderr.write(`${c.name} did not become healthy; see ${join(logDir, `${c.name}.log`)}\n`);
      await stopAll();
    }
  }
  const metasrvAddr = metasrvs.map((m) => `${m.config.grpc.host}:${m.config.grpc.port}`).join(',');
  const group = metasrvs.length > 1;
  const lines = [
    '',
    `regiondb local cluster is up (logs in ${logDir}):`,
    ...metasrvs.map(
      (m, i) =>
        `  ${m.name.padEnd(11)} grpc ${m.config.grpc.host}:${m.config.grpc.port}   http http://${m.config.http.host}:${m.config.http.port}/metrics (pid ${children[i]!.process.pid})`,
    ),
    ...datanodes.map(
      (d, i) =>
        `  datanode${d.config.node.id}   grpc ${d.config.grpc.host}:${d.config.grpc.port}   http http://${d.config.http.host}:${d.config.http.port}/metrics (pid ${children[metasrvs.length + i]!.process.pid})`,
    ),
    ...(group ? ['', `A group of ${metasrvs.length} metasrvs on raft (docs/metasrv-ha.md): one leader acts, the others redirect to it.`] : []),
    '',
    'Try it from another terminal (Ctrl-C here stops the cluster):',
    ...(metasrv.tls
      ? [`  export REGIONDB_METASRV=${metasrvAddr} REGIONDB_CA=${metasrv.tls.ca_file} REGIONDB_CERT=${join(dirname(metasrv.tls.ca_file), 'client.crt')} REGIONDB_KEY=${join(dirname(metasrv.tls.ca_file), 'client.key')}`]
      : group
        ? [`  export REGIONDB_METASRV=${metasrvAddr}`]
        : []),
    `  ./regiondb create-table cpu --columns host:string:tag,ts:timestamp:timestamp,usage:float64:field --regions 4`,
    `  ./regiondb put cpu '[{"host":"a","ts":1700000000000,"usage":0.5},{"host":"b","ts":1700000000000,"usage":0.9}]'`,
    `  ./regiondb get cpu '{"host":"a","ts":1700000000000}'`,
    `  ./regiondb scan cpu --start 1600000000000 --tag host=a`,
    `  ./regiondb status`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}
