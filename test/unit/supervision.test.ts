// How supervisors keep their children's logs: one file per node, appended to across restarts,
// with a start marker so a reader sees only the current process (a grep over the whole file can
// be satisfied by a line an earlier process wrote).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { logChildOutput, sinceLastStart } from '../../src/cmd/supervision.js';

describe('supervision: child logs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'regiondb-supervision-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Runs `script` as a child logging to `file`; resolves once the log file holds all its output
   * and is closed. (It used to resolve a tick after the child's 'close', when the log stream's
   * last write may still be on its way to the file: under load the second run's line was
   * sometimes missing from the file when the test read it.)
   */
  function run(script: string, file: string): Promise<void> {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    return logChildOutput(child, file, 'child');
  }

  it('keeps stderr written after stdout closed (two pipes into one file: neither may end it)', async () => {
    const file = join(dir, 'a.log');
    await run("process.stdout.end('out\\n'); setTimeout(() => process.stderr.write('err after stdout closed\\n'), 50);", file);
    const text = readFileSync(file, 'utf8');
    expect(text).to.include('out\n');
    expect(text).to.include('err after stdout closed');
  });

  it("a restarted process's log view holds only its own lines", async () => {
    const file = join(dir, 'b.log');
    await run("console.log('first run: installed raft snapshot')", file);
    await run("console.log('second run')", file);
    const text = readFileSync(file, 'utf8');
    expect(text, 'the file keeps both runs').to.include('first run');
    expect(sinceLastStart(text)).to.equal('second run\n');
  });
});
