// Server reflection is usable by grpcurl-like tools (issue 18): `buf curl` (the devDependency)
// resolves a Database method through reflection alone, with no .proto files given, and the
// served descriptor set is the one proto/ compiles to (make proto-check keeps it current).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { DESCRIPTOR_SET_FILE, fileDescriptorProtos, protoRoot } from '../../src/rpc/proto.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { unary } from '../../src/rpc/status.js';

const BUF = resolve(import.meta.dirname, '..', '..', 'node_modules', '.bin', 'buf');

function bufCurl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe('server reflection for grpcurl-like tools (issue 18)', function () {
  this.timeout(60_000);
  let server: RunningGrpcServer;

  before(async function () {
    if (!existsSync(BUF)) this.skip();
    const impl = {
      DescribeTable: unary(async (req: { name: string }) => {
        throw new RegionDbError(ErrorCode.NotFound, `table ${req.name} does not exist`);
      }, silentLogger),
    };
    server = await startGrpcServer('127.0.0.1', 0, [{ name: 'Database', impl }], silentLogger);
  });

  after(async () => server?.stop());

  it('serves the per-file descriptors of proto/ (not one synthetic file per package)', () => {
    const files = fileDescriptorProtos(readFileSync(join(protoRoot(), DESCRIPTOR_SET_FILE)));
    const names = files.map((f) => f.subarray(2, 2 + f[1]!).toString('utf8')); // field 1 (name) comes first
    expect(names.sort()).to.deep.equal(['regiondb/v1/admin.proto', 'regiondb/v1/common.proto', 'regiondb/v1/database.proto', 'regiondb/v1/meta.proto', 'regiondb/v1/raft.proto']);
  });

  it('buf curl lists the services and calls Database.DescribeTable through reflection alone', async () => {
    const list = await bufCurl(['--list-services', `http://127.0.0.1:${server.port}`]);
    expect(list.stdout.split('\n')).to.include.members(['regiondb.v1.Database', 'regiondb.v1.Admin']);
    const res = await bufCurl(['-d', '{"name":"nope"}', `http://127.0.0.1:${server.port}/regiondb.v1.Database/DescribeTable`]);
    expect(res.stderr, res.stderr).to.not.match(/failed to find service/);
    expect(JSON.parse(res.stderr), 'the status, printed by buf curl on stderr').to.deep.equal({ code: 'not_found', message: 'table nope does not exist' });
  });
});
