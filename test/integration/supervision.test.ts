// Servers started by a supervisor (`regiondb cluster`, the drill, the test harness) must not
// outlive it: a harness killed by -9 would otherwise leave datanodes holding ports and data.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { CLI, LocalCluster, freePort, waitUntil } from '../support/local-cluster.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('integration: supervised servers stop with their supervisor', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-it-supervision-'));
  let serverPid = 0;

  after(() => {
    if (serverPid && alive(serverPid)) process.kill(serverPid, 'SIGKILL'); // only if the test failed
    rmSync(dir, { recursive: true, force: true });
  });

  it('kill -9 of the supervisor: the metasrv it started sees its stdin close and stops', async () => {
    const config = join(dir, 'metasrv.toml');
    writeFileSync(
      config,
      [`cluster_id = "supervision-${process.pid}"`, `[node]\ndata_dir = "${join(dir, 'meta')}"`, `[grpc]\nhost = "127.0.0.1"\nport = ${await freePort()}`, `[http]\nhost = "127.0.0.1"\nport = ${await freePort()}`].join('\n'),
    );
    // The supervisor: a node process that starts the server the way every supervisor here does
    // (supervisedSpawnOptions), prints its pid, and then waits to be killed.
    const supervisorScript = [
      `import { spawn } from 'node:child_process';`,
      `import { supervisedSpawnOptions } from ${JSON.stringify(join(import.meta.dirname, '..', '..', 'src', 'cmd', 'supervision.ts'))};`,
      `const child = spawn(process.execPath, [${JSON.stringify(CLI)}, 'metasrv', '-c', ${JSON.stringify(config)}], supervisedSpawnOptions('ignore'));`,
      `child.stderr.resume();`,
      'process.stdout.write(String(child.pid) + "\\n");',
      'setInterval(() => {}, 1000);',
    ].join('\n');
    const supervisor = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', supervisorScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      serverPid = await new Promise<number>((ok, fail) => {
        supervisor.stdout!.once('data', (b: Buffer) => ok(Number(b.toString().trim())));
        supervisor.once('exit', (code) => fail(new Error(`supervisor exited (code ${code}) before starting the server`)));
      });
      expect(serverPid, 'the server pid').to.be.greaterThan(0);
      await waitUntil('the metasrv to be running', 20_000, async () => (alive(serverPid) ? true : undefined));
    } finally {
      supervisor.kill('SIGKILL');
    }
    await waitUntil('the orphaned metasrv to stop by itself', 20_000, async () => (alive(serverPid) ? undefined : true));
  });

  it('a test cluster whose start fails leaves no process running', async () => {
    // A datanode config with a second [heartbeat] table is not valid TOML: the datanode exits
    // during startup, after the metasrv is up. The harness kills what it launched before the
    // error reaches the caller (a caller that loses the cluster with the error would otherwise
    // leave the metasrv running, and mocha, run without --exit, waiting for it).
    const cluster = new LocalCluster({ datanodes: 1, datanodeToml: '[heartbeat]\ninterval_ms = 500' });
    try {
      let error: unknown;
      try {
        await cluster.start();
      } catch (err) {
        error = err;
      }
      expect(String(error)).to.match(/datanode1 exited during startup/);
      expect(cluster.pids(), 'processes of the failed start still running').to.deep.equal([]);
    } finally {
      await cluster.stop();
    }
  });
});
