// W3: the single metasrv's catalog store is LevelDB too. Its newest saves live in LevelDB's own
// log, which LevelDB replays with paranoid checks off: a damaged newest save was dropped without
// a word and the catalog opened as the save before it. The check of src/wal/leveldb-log.ts now
// runs before it opens, with the WAL's refusal (X4) and its tear rule (W1).
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ManualClock } from '../../src/common/clock.js';
import { metasrvConfigSchema } from '../../src/common/config.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { emptyCatalog } from '../../src/metasrv/catalog.js';
import { CatalogStore } from '../../src/metasrv/catalog-store.js';
import { Metasrv } from '../../src/metasrv/metasrv.js';
import { damageFile, logRecords, newestLog, sectorInside } from '../fixtures/leveldb-log-damage.js';

// Long enough that every save crosses a 512-byte boundary (a tear needs one inside the record).
const CLUSTER = `catalog-log-${'c'.repeat(600)}`;

describe("the metasrv's catalog store: LevelDB's own log is checked before it opens (W3)", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** Three synced saves (nextProcedureId 1, 2, 3), the store closed: all three in LevelDB's log. */
  const threeSaves = async (): Promise<string> => {
    const dir = mkdtempSync(join(tmpdir(), 'regiondb-catalog-log-'));
    dirs.push(dir);
    const store = await CatalogStore.open(dir, silentLogger);
    for (const id of [1, 2, 3]) await store.save({ ...emptyCatalog(CLUSTER), nextProcedureId: id });
    await store.close();
    return dir;
  };
  const savedId = async (dir: string, log = silentLogger): Promise<number> => {
    const store = await CatalogStore.open(dir, log);
    try {
      return (await store.load(CLUSTER)).nextProcedureId;
    } finally {
      await store.close();
    }
  };
  const expectRefused = async (dir: string, mentions: string) => {
    let opened: number | undefined;
    try {
      opened = await savedId(dir);
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
      expect((err as Error).message).to.include('metasrv catalog corruption').and.include(mentions);
      return;
    }
    expect.fail(`the catalog opened (the save with nextProcedureId ${opened})`);
  };

  /** Damages the newest save's record in the newest log with `damage`; the log file and the record's offset. */
  const damageNewestSave = (dir: string, damage: (bytes: Buffer, last: ReturnType<typeof logRecords>[number]) => void): { file: string; offset: number } => {
    const file = newestLog(dir);
    let offset = 0;
    damageFile(file, (bytes) => {
      const last = logRecords(bytes).at(-1)!;
      offset = last.offset;
      damage(bytes, last);
    });
    return { file, offset };
  };

  it('three saves reopen at the newest', async () => {
    expect(await savedId(await threeSaves())).to.equal(3);
  });

  it('a flipped byte in the newest save is refused, naming the log file and the offset (failed before: the catalog opened at the save before it)', async () => {
    const dir = await threeSaves();
    const { file, offset } = damageNewestSave(dir, (bytes, last) => bytes.writeUInt8(bytes.readUInt8(last.offset + 100) ^ 0x01, last.offset + 100));
    await expectRefused(dir, `${file} at offset ${offset}: checksum mismatch`);
    await expectRefused(dir, 'checksum mismatch'); // refused again: nothing was dropped or deleted
  });

  it("a flipped byte in an earlier save is refused (failed before: the catalog opened at the first save, the rest of the record's 32 KiB block dropped with it)", async () => {
    const dir = await threeSaves();
    damageFile(newestLog(dir), (bytes) => {
      const at = logRecords(bytes)[0]!.offset + 50;
      bytes.writeUInt8(bytes.readUInt8(at) ^ 0x20, at);
    });
    await expectRefused(dir, 'checksum mismatch');
  });

  it('a save torn by a power loss (zeros from a 512-byte boundary to the end) opens at the save before it, with a warning (failed before: opened silently)', async () => {
    const dir = await threeSaves();
    const { file, offset } = damageNewestSave(dir, (bytes, last) => bytes.fill(0, sectorInside(last)));
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'warn', base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    expect(await savedId(dir, log)).to.equal(2); // never synced, so never acknowledged
    expect(lines).to.have.length(1);
    expect(lines[0]).to.include({ file, offset });
  });

  it("a single metasrv's start is refused with that message, before it serves (failed before: it started on the save before the damaged one)", async () => {
    const dir = await threeSaves();
    damageFile(newestLog(dir), (bytes) => {
      const at = logRecords(bytes).at(-1)!.offset + 100;
      bytes.writeUInt8(bytes.readUInt8(at) ^ 0x01, at);
    });
    const metasrv = new Metasrv(
      metasrvConfigSchema.parse({ cluster_id: CLUSTER, node: { data_dir: dir }, grpc: { port: 0 }, http: { port: 0 }, balance_leaders_interval_ms: 0 }),
      silentLogger,
      3,
      new ManualClock(1_700_000_000_000),
    );
    let started = false;
    try {
      await metasrv.start();
      started = true;
    } catch (err) {
      expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
      expect((err as Error).message).to.match(/^metasrv catalog corruption in LevelDB's log .*\.log at offset \d+: checksum mismatch/);
      expect(metasrv.grpcPort).to.equal(0); // nothing served
    } finally {
      await metasrv.stop();
    }
    expect(started, 'the metasrv started').to.equal(false);
  });
});
