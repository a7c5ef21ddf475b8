// Structured logs (pino). Core modules never log; hosts (datanode, metasrv, wal) do, with
// region/term context: log.info({regionId, term, leader}, 'became leader').
import { pino, type Logger } from 'pino';
import { prettyDestination } from './pretty-log.js';

export type { Logger };

export type LogFormat = 'json' | 'pretty';

export function createLogger(options: { name: string; level?: string; format?: LogFormat }): Logger {
  const level = options.level ?? process.env['REGIONDB_LOG_LEVEL'] ?? 'info';
  const pinoOptions = { name: options.name, level, base: { pid: process.pid, name: options.name } };
  return options.format === 'pretty' ? pino(pinoOptions, prettyDestination()) : pino(pinoOptions);
}

/** A logger that discards everything; for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
