// `--log-format pretty`: pino's JSON lines rendered for a human at a terminal, one line per
// record (plus an error's stack), with the region/term context kept as key=value pairs:
//   19:50:06.123 INFO  datanode-1 region-server: raft role changed regionId=4294967296 role=leader term=3
// Built in because pino-pretty is not a dependency; JSON stays the default for machines.

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLORS: Record<number, string> = { 10: '\x1b[90m', 20: '\x1b[36m', 30: '\x1b[32m', 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[35m' };
const RESET = '\x1b[0m';
/** Fields shown in the fixed part of the line, not as key=value. */
const FIXED = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'component', 'err']);

function renderValue(v: unknown): string {
  if (typeof v === 'string') return /^[\w.:/@-]*$/.test(v) && v !== '' ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** One pino JSON line as a human-readable line; input that is not JSON is returned unchanged. */
export function prettyLine(json: string, color: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = typeof rec['level'] === 'number' ? rec['level'] : 30;
  const time = typeof rec['time'] === 'number' ? new Date(rec['time']).toISOString().slice(11, 23) : '';
  const levelText = (LEVELS[level] ?? String(level)).padEnd(5);
  const where = [rec['name'], rec['component']].filter((x) => typeof x === 'string' && x).join(' ');
  const context = Object.entries(rec)
    .filter(([k]) => !FIXED.has(k))
    .map(([k, v]) => `${k}=${renderValue(v)}`)
    .join(' ');
  let line = `${time} ${color ? `${COLORS[level] ?? ''}${levelText}${RESET}` : levelText} ${where}: ${String(rec['msg'] ?? '')}${context ? ` ${context}` : ''}\n`;
  const err = rec['err'] as { message?: string; stack?: string } | undefined;
  if (err && typeof err === 'object') line += `${(err.stack ?? err.message ?? JSON.stringify(err)).replace(/^/gm, '    ')}\n`;
  return line;
}

/** A pino destination writing pretty lines to `out` (stdout by default). */
export function prettyDestination(out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): { write(chunk: string): void } {
  const color = out.isTTY === true && !process.env['NO_COLOR'];
  return { write: (chunk: string) => void out.write(prettyLine(chunk, color)) };
}
