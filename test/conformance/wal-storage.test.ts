import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import type { RaftLogStore } from '../../src/raft/storage.js';
import { type RegionLog, Wal } from '../../src/wal/index.js';
import { describeRaftStorageConformance } from './raft-storage-suite.js';

const REGION = '4294967297';
const open = new Map<RaftLogStore, { wal: Wal; dir: string }>();

describeRaftStorageConformance('LevelDB WAL', {
  open: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-wal-'));
    const wal = await Wal.open(dir, silentLogger);
    const store: RegionLog = wal.region(REGION);
    open.set(store, { wal, dir });
    return store;
  },
  reopen: async (store) => {
    const { wal, dir } = open.get(store)!;
    open.delete(store);
    await wal.close();
    const reopened = await Wal.open(dir, silentLogger);
    const fresh = reopened.region(REGION);
    open.set(fresh, { wal: reopened, dir });
    return fresh;
  },
  close: async (store) => {
    const entry = open.get(store);
    if (!entry) return;
    open.delete(store);
    await entry.wal.close();
    rmSync(entry.dir, { recursive: true, force: true });
  },
});
