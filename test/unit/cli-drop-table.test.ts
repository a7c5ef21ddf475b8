// `regiondb drop-table` (src/cmd/main.ts): the real CLI, run as a child process (tsx) against a
// small Meta server on loopback that answers DropTable the ways the metasrv does: dropped, and
// "being dropped" (a region not fenced yet, docs/ddl.md). Checks the exit code, what is printed,
// and that nothing is sent without --yes.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { unary } from '../../src/rpc/status.js';

const CLI = join(import.meta.dirname, '../../src/cmd/main.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args` (a 30 s bound; a hang is a failure, the child is killed by its pid). */
function runCli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.REGIONDB_METASRV;
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`regiondb ${args.join(' ')} did not finish in 30 s; stdout ${stdout} stderr ${stderr}`));
    }, 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A Meta server whose DropTable answers with `answer` (the table name it was asked for is recorded). */
class FakeMeta {
  readonly asked: string[] = [];
  answer: (name: string) => unknown = () => ({ regions_dropped: 0 });
  private running: RunningGrpcServer | undefined;

  static async start(): Promise<FakeMeta> {
    const fake = new FakeMeta();
    fake.running = await startGrpcServer(
      '127.0.0.1',
      0,
      [
        {
          name: 'Meta',
          impl: {
            DropTable: unary(async (req: { name: string }) => {
              fake.asked.push(req.name);
              return fake.answer(req.name);
            }, silentLogger),
          },
        },
      ],
      silentLogger,
    );
    return fake;
  }

  get addr(): string {
    return `127.0.0.1:${this.running?.port ?? 0}`;
  }

  async stop(): Promise<void> {
    await this.running?.stop();
  }
}

describe('cli: regiondb drop-table', function () {
  this.timeout(120_000);
  let meta: FakeMeta;
  beforeEach(async () => {
    meta = await FakeMeta.start();
  });
  afterEach(async () => {
    await meta.stop();
  });

  it('drops the table and says how many regions went (exit 0)', async () => {
    meta.answer = () => ({ regions_dropped: 4 });
    const run = await runCli(['--metasrv', meta.addr, 'drop-table', 'cpu', '--yes']);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout.trim()).to.equal('dropped table cpu (4 regions fenced and dropped)');
    expect(meta.asked).to.deep.equal(['cpu']);
  });

  it('without --yes asks nothing of the metasrv and exits 2 with what to do', async () => {
    const run = await runCli(['--metasrv', meta.addr, 'drop-table', 'cpu']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.contain('run again with --yes to confirm');
    expect(meta.asked).to.deep.equal([]);
  });

  it('a drop not finished (a region not fenced yet): exit 1, pointing at regiondb status and a re-run', async () => {
    meta.answer = (name) => {
      throw new RegionDbError(ErrorCode.Unavailable, `table ${name} (id 7) is being dropped but 1 of its 4 regions could not be fenced yet, so it is not dropped`);
    };
    const run = await runCli(['--metasrv', meta.addr, 'drop-table', 'cpu', '--yes']);
    expect(run.code).to.equal(1); // any error the metasrv answers exits 1 (src/cmd/main.ts withClient)
    expect(run.stdout).to.equal('');
    expect(run.stderr).to.match(/^error \(UNAVAILABLE\): table cpu \(id 7\) is being dropped/);
    expect(run.stderr).to.contain('regiondb status lists cpu under tables being dropped; run regiondb drop-table cpu --yes again');
  });
});
