// Children that die with their supervisor. `regiondb cluster`, the drill's scratch clusters and
// the test harness start servers as child processes; if the supervisor is killed (kill -9, a
// crashed test run), plain children would run on as orphans holding ports and data. Each child
// instead gets a pipe as stdin and this variable: the server stops when the pipe closes, which
// the kernel does when the supervisor exits, however it exits.
import type { SpawnOptions } from 'node:child_process';

export const STOP_ON_STDIN_EOF_ENV = 'REGIONDB_STOP_ON_STDIN_EOF';

/** Spawn options for a supervised server: stdin a pipe held by the supervisor, stdout/stderr as given. */
export function supervisedSpawnOptions(output: 'pipe' | 'ignore' = 'pipe', extra: SpawnOptions = {}): SpawnOptions {
  return { ...extra, stdio: ['pipe', output, 'pipe'], env: { ...(extra.env ?? process.env), [STOP_ON_STDIN_EOF_ENV]: '1' } };
}
