// Children that die with their supervisor. `regiondb cluster`, the drill's scratch clusters and
// the test harness start servers as child processes; if the supervisor is killed (kill -9, a
// crashed test run), plain children would run on as orphans holding ports and data. Each child
// instead gets a pipe as stdin and this variable: the server stops when the pipe closes, which
// the kernel does when the supervisor exits, however it exits.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { createWriteStream } from 'node:fs';

export const STOP_ON_STDIN_EOF_ENV = 'REGIONDB_STOP_ON_STDIN_EOF';

/** Spawn options for a supervised server: stdin a pipe held by the supervisor, stdout/stderr as given. */
export function supervisedSpawnOptions(output: 'pipe' | 'ignore' = 'pipe', extra: SpawnOptions = {}): SpawnOptions {
  return { ...extra, stdio: ['pipe', output, 'pipe'], env: { ...(extra.env ?? process.env), [STOP_ON_STDIN_EOF_ENV]: '1' } };
}

/** The first line a supervisor writes to a log for each process it starts (logs are appended to across restarts). */
export const PROCESS_START_MARKER = '=== regiondb supervisor: process started';

/**
 * Appends a child's stdout and stderr to `logFile` after a start marker, and closes the file
 * when the child's output is done (both pipes feed one stream, so neither may end it alone).
 *
 * Resolves once the file holds all of the child's output and is closed (also if writing it
 * failed). The child's own 'close' is earlier than that: the stream's last writes are still on
 * their way to the file then (libuv's thread pool), so a reader that goes by the child's 'close'
 * can miss the child's last lines.
 */
export function logChildOutput(child: ChildProcess, logFile: string, name: string): Promise<void> {
  const log = createWriteStream(logFile, { flags: 'a' });
  const written = new Promise<void>((ok) => {
    log.once('close', ok);
    log.once('error', () => ok());
  });
  log.write(`${PROCESS_START_MARKER}: ${name} pid ${child.pid} at ${new Date().toISOString()} ===\n`);
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  child.once('close', () => log.end());
  return written;
}

/** The lines of `text` written since the last start marker: the current process's output only. */
export function sinceLastStart(text: string): string {
  const at = text.lastIndexOf(PROCESS_START_MARKER);
  if (at < 0) return text;
  const lineEnd = text.indexOf('\n', at);
  return lineEnd < 0 ? '' : text.slice(lineEnd + 1);
}
