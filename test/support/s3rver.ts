// A real S3-compatible server for tests: s3rver as a child process on 127.0.0.1 (port chosen by
// the OS and reported back), stopped by PID. Shared by the object-store conformance suite and the
// real-process engine tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const LAUNCHER = resolve(import.meta.dirname, '..', 'support', 's3rver-launcher.mjs');
export const BUCKET = 'regiondb-test';
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

export interface S3Server {
  child: ChildProcess;
  endpoint: string;
  dir: string;
}

export async function startS3rver(): Promise<S3Server> {
  const dir = await mkdtemp(join(tmpdir(), 'regiondb-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', LAUNCHER, '0', dir, BUCKET], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  try {
    const port = await new Promise<number>((ok, fail) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error(`s3rver not ready after ${START_TIMEOUT_MS} ms; stderr: ${stderr}`)), START_TIMEOUT_MS);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /S3RVER_READY (\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          ok(Number(m[1]));
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`s3rver exited early (code ${code}, signal ${signal}); stderr: ${stderr}`));
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        fail(err);
      });
    });
    return { child, endpoint: `http://127.0.0.1:${port}`, dir };
  } catch (err) {
    await stopS3rver({ child, endpoint: '', dir });
    throw err;
  }
}

export async function stopS3rver(server: S3Server): Promise<void> {
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((ok) => {
        timer = setTimeout(() => ok(true), STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      child.kill('SIGKILL');
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, STOP_TIMEOUT_MS))]);
    }
  }
  await rm(server.dir, { recursive: true, force: true });
}

