// The LevelDB WAL through the log-engine conformance suite. A crash is a copy of the WAL
// directory taken while the WAL is open (its LOCK file dropped), opened as a restart would.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import type { LogEngine } from '../../src/wal/log-engine.js';
import { Wal } from '../../src/wal/index.js';
import { describeLogEngineConformance } from './log-engine-suite.js';

const opened = new Map<LogEngine, { wal: Wal; closed: boolean }>();
let copies = 0;

async function openAt(dir: string): Promise<Wal> {
  const wal = await Wal.open(dir, silentLogger);
  opened.set(wal, { wal, closed: false });
  return wal;
}

describeLogEngineConformance('LevelDB WAL (src/wal)', {
  open: () => openAt(mkdtempSync(join(tmpdir(), 'regiondb-wal-conf-'))),
  restart: async (engine, how) => {
    const wal = engine as Wal;
    if (how === 'crash') {
      const copy = `${wal.dir}-crash-${copies++}`;
      cpSync(wal.dir, copy, { recursive: true });
      rmSync(join(copy, 'LOCK'), { force: true });
      return openAt(copy);
    }
    await wal.close();
    opened.get(wal)!.closed = true;
    return openAt(wal.dir);
  },
  close: async (engine) => {
    const state = opened.get(engine);
    if (!state) return;
    opened.delete(engine);
    if (!state.closed) await state.wal.close();
    if (![...opened.values()].some((o) => o.wal.dir === state.wal.dir)) rmSync(state.wal.dir, { recursive: true, force: true });
  },
});
