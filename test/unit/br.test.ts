// Backup and restore without processes: the backup manifest format, retention planning,
// backup locations, and backup/verify/resume against fabricated region manifests on local
// directories — including SSTs compacted away in the middle of a backup.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { type BackupClusterClient, runBackup } from '../../src/br/backup.js';
import { type BackupManifest, decodeBackupManifest, encodeBackupJournal, encodeBackupManifest } from '../../src/br/format.js';
import { splitBackupLocation } from '../../src/br/location.js';
import { type BackupListing, planPrune } from '../../src/br/repository.js';
import { silentProgress } from '../../src/br/progress.js';
import { type RestoreClusterClient, restoreToken, runRestore } from '../../src/br/restore.js';
import { verifyBackup } from '../../src/br/verify.js';
import { crc32c } from '../../src/common/crc32c.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import { makeRegionId } from '../../src/engine/key.js';
import { decodeManifest, encodeManifest, loadLatestManifest, manifestKey, manifestPrefix, restoreMarkerKey, sstPrefix } from '../../src/engine/manifest.js';
import type { TableSchema } from '../../src/engine/schema.js';
import { DelegatingObjectStore } from '../../src/object-store/delegating-store.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { startMetasrvCore } from '../fixtures/metasrv-core.js';
import { cpuSchema } from '../fixtures/schemas.js';

const SCHEMA: TableSchema = cpuSchema({ name: 't', tableId: 7, regionCount: 2 });

function manifestOf(id: string, kind: 'full' | 'incremental', baseId: string | null, createdAtMs: number): BackupManifest {
  return {
    id,
    kind,
    baseId,
    source: { metasrv: 'm', objectStore: 's', clusterId: null },
    createdAtMs,
    completedAtMs: createdAtMs + 1,
    tables: [],
    files: [],
    storedFiles: 0,
    storedBytes: 0,
  };
}

const listing = (m: BackupManifest): BackupListing => ({ id: m.id, status: 'complete', manifest: m, storedBytes: 0 });

describe('br: backup manifest format', () => {
  it('round-trips, and a changed byte in the body fails the crc32c check', () => {
    const m = manifestOf('b1', 'full', null, 1000);
    const bytes = encodeBackupManifest(m);
    expect(decodeBackupManifest(bytes, 'b1')).to.deep.equal(m);
    const text = new TextDecoder().decode(bytes).replace('"createdAtMs": 1000', '"createdAtMs": 1001');
    expect(() => decodeBackupManifest(new TextEncoder().encode(text), 'b1/backup.json')).to.throw(/b1\/backup.json is damaged: crc32c mismatch/);
  });

  it('rejects a region naming an object that is not in the file list', () => {
    const m: BackupManifest = {
      ...manifestOf('b1', 'full', null, 1000),
      tables: [
        {
          name: 't',
          tableId: 7,
          columns: [...SCHEMA.columns],
          regionCount: 1,
          regions: [{ regionNumber: 0, regionId: '30064771072', flushedIndex: 5, flushedTerm: 1, manifestKey: 'regions/30064771072/manifest/x.manifest', manifestBytes: 10, sstKeys: [], sstBytes: 0, sstEntries: 0 }],
        },
      ],
    };
    expect(() => encodeBackupManifest(m)).to.throw(/names regions\/30064771072\/manifest\/x.manifest, which is not in the file list/);
  });

  it('a full backup cannot have a base, an incremental must', () => {
    expect(() => encodeBackupManifest(manifestOf('b1', 'full', 'b0', 1))).to.throw(/kind full with base b0/);
    expect(() => encodeBackupManifest(manifestOf('b1', 'incremental', null, 1))).to.throw(/kind incremental with base none/);
  });
});

describe('br: locations', () => {
  it('a backup is <repository>/<id>, for directories and s3:// URLs', () => {
    expect(splitBackupLocation('/backups/b1/')).to.deep.equal({ repository: '/backups', backupId: 'b1' });
    expect(splitBackupLocation('s3://bucket/prefix/b1')).to.deep.equal({ repository: 's3://bucket/prefix', backupId: 'b1' });
    expect(splitBackupLocation('s3://bucket/b1')).to.deep.equal({ repository: 's3://bucket', backupId: 'b1' });
    expect(() => splitBackupLocation('s3://bucket')).to.throw(/<repository>\/<backup id>/);
  });
});

describe('br: prune --keep N', () => {
  // f1 <- i1 <- i2, then f2 <- i3 (creation order).
  const f1 = manifestOf('f1', 'full', null, 1);
  const i1 = manifestOf('i1', 'incremental', 'f1', 2);
  const i2 = manifestOf('i2', 'incremental', 'i1', 3);
  const f2 = manifestOf('f2', 'full', null, 4);
  const i3 = manifestOf('i3', 'incremental', 'f2', 5);
  const all = [f1, i1, i2, f2, i3].map(listing);

  it('keeps the newest N and every base they need', () => {
    expect(planPrune(all, 1)).to.deep.equal({ kept: ['i3'], keptAsBase: ['f2'], deleted: ['f1', 'i1', 'i2'], untouched: [] });
    expect(planPrune(all, 3)).to.deep.equal({ kept: ['i2', 'f2', 'i3'], keptAsBase: ['i1', 'f1'], deleted: [], untouched: [] });
  });

  it('never deletes the base of an incremental backup still running, nor an incomplete backup', () => {
    const running: BackupListing = { id: 'i4', status: 'incomplete', pendingBaseId: 'i2', storedBytes: 0 };
    expect(planPrune([...all, running], 1)).to.deep.equal({ kept: ['i3'], keptAsBase: ['f2', 'i2', 'i1', 'f1'], deleted: [], untouched: ['i4'] });
  });

  it('refuses --keep 0', () => {
    expect(() => planPrune(all, 0)).to.throw(/--keep must be a positive integer/);
  });
});

/** The cluster's object store, where get() of one key can first run a "compaction". */
class HookedStore extends DelegatingObjectStore {
  onGet: ((key: string) => Promise<void>) | undefined;
  override async get(key: string): Promise<Uint8Array> {
    const hook = this.onGet;
    if (hook) await hook(key);
    return this.inner.get(key);
  }
}

/** A process kill, injected: the operation it stops never happens, and neither does any after it. */
class Killed extends Error {}

/**
 * The target cluster of a restore: its object store (a directory) and a metasrv as far as
 * restore uses one — CreateTable keeping each table's request token (a call with the token that
 * created the table is answered with it, any other token ALREADY_EXISTS), DropTable, and
 * RecoverTable reporting each region's newest manifest in the store. `killBefore` = k stops the
 * "process" before its k-th change to the cluster (a table created or dropped, a recovery, an
 * object put or deleted): from then on every call, read or write, fails as if the process died.
 */
class FakeTarget {
  readonly tables = new Map<string, { schema: TableSchema; token: string }>();
  /** Tables marked being dropped (a DropTable not finished): CreateTable refuses them, any token, as MetasrvCore does. */
  readonly dropping = new Set<string>();
  /** Per region id, the flushed index its last recovery restarted it from. */
  readonly recovered = new Map<string, number>();
  changes = 0;
  killBefore = Number.POSITIVE_INFINITY;
  /** A put this returns true for fails (STORAGE_UNAVAILABLE) and changes nothing; the process lives on. */
  failPut: ((key: string) => boolean) | undefined;
  /** A put this returns true for is where the process is killed (as killBefore, by key). */
  killAtPut: ((key: string) => boolean) | undefined;
  killed = false;
  private nextTableId = 100;
  readonly store: ObjectStore;

  constructor(dir: string) {
    const target = this;
    this.store = new (class extends DelegatingObjectStore {
      override async put(key: string, data: Uint8Array) {
        target.alive();
        if (target.failPut?.(key)) throw new RegionDbError(ErrorCode.StorageUnavailable, `put ${key}: refused (injected)`);
        if (target.killAtPut?.(key)) {
          target.killed = true;
          throw new Killed(`killed before putting ${key}`);
        }
        target.change();
        return this.inner.put(key, data);
      }
      override async delete(key: string) {
        target.change();
        return this.inner.delete(key);
      }
      override async get(key: string) {
        target.alive();
        return this.inner.get(key);
      }
      override async head(key: string) {
        target.alive();
        return this.inner.head(key);
      }
      override async list(prefix: string) {
        target.alive();
        return this.inner.list(prefix);
      }
    })(new FsObjectStore(dir));
  }

  alive(): void {
    if (this.killed) throw new Killed('the restore process was killed');
  }

  change(): void {
    this.alive();
    if (++this.changes >= this.killBefore) {
      this.killed = true;
      throw new Killed(`killed before change ${this.changes}`);
    }
  }

  /** The same target after the killed process is gone: a new process, nothing killed. */
  revive(): void {
    this.killed = false;
    this.killBefore = Number.POSITIVE_INFINITY;
    this.killAtPut = undefined;
  }

  readonly client = {
    describe: async (name: string) => {
      this.alive();
      const t = this.tables.get(name);
      if (!t) throw new RegionDbError(ErrorCode.NotFound, `table ${name} not found`);
      return { schema: t.schema, routes: new Map() };
    },
    createTable: async (name: string, columns: { name: string; type: string; semantic: string }[], regionCount: number, token?: string) => {
      this.alive();
      const t = this.tables.get(name);
      if (t && this.dropping.has(name)) throw new RegionDbError(ErrorCode.AlreadyExists, `table ${name} is being dropped (its DropTable has not completed); create it again once DropTable answers`);
      if (t) {
        if (token !== undefined && token === t.token) return t.schema;
        throw new RegionDbError(ErrorCode.AlreadyExists, `table ${name} already exists`);
      }
      this.change();
      const schema = { name, tableId: this.nextTableId++, regionCount, columns: columns.map((c) => ({ ...c })) } as TableSchema;
      this.tables.set(name, { schema, token: token ?? `random-${this.nextTableId}` });
      return schema;
    },
    dropTable: async (name: string) => {
      this.alive();
      const t = this.tables.get(name);
      if (!t) throw new RegionDbError(ErrorCode.NotFound, `table ${name} not found`);
      this.change();
      this.tables.delete(name);
      return t.schema.regionCount;
    },
    recoverTable: async (name: string) => {
      this.alive();
      const t = this.tables.get(name);
      if (!t) throw new RegionDbError(ErrorCode.NotFound, `table ${name} not found`);
      this.change();
      const out = [];
      for (let n = 0; n < t.schema.regionCount; n++) {
        const regionId = makeRegionId(t.schema.tableId, n);
        const latest = await loadLatestManifest((this.store as DelegatingObjectStore).inner, regionId);
        const index = latest?.manifest.flushedIndex ?? 0;
        this.recovered.set(regionId, index);
        out.push({ region_id: regionId, flushed_index: String(index), manifest_written_ms: '0', ssts: latest?.manifest.ssts.length ?? 0, replicas: 3 });
      }
      return out;
    },
  } as unknown as RestoreClusterClient;
}

describe('br: backup and verify against a fabricated cluster object store', () => {
  let dir: string;
  let cluster: HookedStore;
  let repo: FsObjectStore;
  const flushed: string[] = [];
  const client = {
    flush: async (table?: string) => {
      flushed.push(table ?? '*');
      return SCHEMA.regionCount;
    },
    describe: async () => ({ schema: SCHEMA, routes: new Map() }),
    listNodes: async () => ({ regions: [{ table: 't' }, { table: 't' }] }),
  } as unknown as BackupClusterClient;
  const region = (n: number) => makeRegionId(SCHEMA.tableId, n);
  let sstSeq = 0;

  /** Writes SSTs of `bytes` each and a manifest at `index` naming them (plus `keep`, newest first). */
  async function flush(n: number, index: number, newSsts: number[], keep: string[] = []): Promise<string[]> {
    const keys: string[] = [];
    for (const size of newSsts) {
      const key = `${sstPrefix(region(n))}${(index).toString(16).padStart(16, '0')}-${1_700_000_000_000 + sstSeq++}-00.sst`;
      await cluster.put(key, randomBytes(size));
      keys.push(key);
    }
    const ssts = [...keys, ...keep].map((key) => ({ key, size: 0, entries: 1, maxVersion: index, minTimestampMs: 0, maxTimestampMs: 0 }));
    await cluster.put(
      manifestKey(region(n), index),
      encodeManifest({ formatVersion: 1, regionId: region(n), schema: SCHEMA, flushedIndex: index, flushedTerm: 1, voters: [1], learners: [], ssts, dedup: '', writtenAtMs: 0 }),
    );
    return [...keys, ...keep];
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-br-unit-'));
    cluster = new HookedStore(new FsObjectStore(join(dir, 'cluster')));
    repo = new FsObjectStore(join(dir, 'repo'));
    flushed.length = 0;
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const backup = (backupId: string, baseId?: string) => runBackup({ repository: repo, backupId, baseId, client, clusterStore: cluster, metasrv: 'm' });

  it('flushes every table, then an incremental stores only SSTs the base does not have', async () => {
    const r0 = await flush(0, 10, [1000, 2000]);
    await flush(1, 12, [3000]);
    const full = await backup('f1');
    expect(flushed).to.deep.equal(['t']);
    expect(full.copiedSstBytes).to.equal(6000);
    expect(full.manifest.tables[0]!.regions.map((r) => r.flushedIndex)).to.deep.equal([10, 12]);
    await flush(0, 20, [500], r0);
    const incr = await backup('i1', 'f1');
    expect(incr.copiedSstBytes).to.equal(500);
    expect(incr.baseFiles).to.equal(3); // 2 + 1 SSTs; region 1's unchanged manifest is copied again (manifests always are)
    expect((await verifyBackup(repo, 'i1')).problems).to.deep.equal([]);
  });

  it('refuses an id that is already a complete backup', async () => {
    await flush(0, 10, [100]);
    await flush(1, 10, [100]);
    await backup('f1');
    const err = await backup('f1').catch((e: unknown) => e);
    expect(isRegionDbError(err, ErrorCode.AlreadyExists), String(err)).to.equal(true);
  });

  /** A client whose barrier answers, per region, the manifest at `points[n]` naming `ssts[n]` (consistent backup). */
  function barrierClient(points: number[], ssts: string[][]): BackupClusterClient {
    return {
      ...client,
      barrierHold: async () => 5,
      barrierRelease: async () => true,
      barrierFreeze: async (_t: string, regionId: string) => {
        const n = [region(0), region(1)].indexOf(regionId);
        const metas = ssts[n]!.map((key) => ({ key, size: 0, entries: 1, maxVersion: points[n]!, minTimestampMs: 0, maxTimestampMs: 0 }));
        const manifest = encodeManifest({ formatVersion: 1, regionId, schema: SCHEMA, flushedIndex: points[n]!, flushedTerm: 5, voters: [1], learners: [], ssts: metas, dedup: '', writtenAtMs: 0 });
        return { freeze_index: String(points[n]), freeze_term: '5', held_ms: 3, writes_held: 2, manifest };
      },
    } as BackupClusterClient;
  }

  it('consistent: each region at its barrier point (not its newest manifest), stored with the point, nothing flushed per table', async () => {
    const r0 = await flush(0, 10, [100, 200]);
    const r1 = await flush(1, 12, [300]);
    await flush(0, 30, [50], r0); // flushed after the barrier: must not be in the backup
    const res = await runBackup({ repository: repo, backupId: 'c1', client: barrierClient([10, 12], [r0, r1]), clusterStore: cluster, metasrv: 'm', consistent: true });
    expect(flushed, 'no per-table flush').to.deep.equal([]);
    const regions = res.manifest.tables[0]!.regions;
    expect(regions.map((r) => [r.flushedIndex, r.flushedTerm])).to.deep.equal([[10, 5], [12, 5]]);
    expect(regions[0]!.sstKeys).to.deep.equal(r0);
    expect(res.manifest.point).to.include({ pauseMsMax: 3, writesHeld: 4, attempts: 1 });
    expect((await verifyBackup(repo, 'c1')).problems).to.deep.equal([]);
    const reread = decodeBackupManifest(await repo.get('c1/backup.json'), 'c1');
    expect(reread.point?.barrierId).to.match(/^barrier-/);
  });

  it('consistent: an SST of the point gone before it is copied fails the backup instead of moving one region', async () => {
    const r0 = await flush(0, 10, [100, 200]);
    const r1 = await flush(1, 12, [300]);
    await cluster.delete(r0[1]!);
    const err = await runBackup({ repository: repo, backupId: 'c1', client: barrierClient([10, 12], [r0, r1]), clusterStore: cluster, metasrv: 'm', consistent: true }).catch((e: unknown) => e);
    expect(isRegionDbError(err, ErrorCode.Unavailable), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/garbage-collected before they were copied; take the backup again/);
  });

  it('consistent: a barrier manifest of another index than the freeze is refused as corrupt', async () => {
    const r0 = await flush(0, 10, [100]);
    const r1 = await flush(1, 12, [300]);
    const lying = barrierClient([10, 12], [r0, r1]);
    const freeze = lying.barrierFreeze!;
    lying.barrierFreeze = async (...args) => ({ ...(await freeze(...args)), freeze_index: '11' });
    const err = await runBackup({ repository: repo, backupId: 'c1', client: lying, clusterStore: cluster, metasrv: 'm', consistent: true }).catch((e: unknown) => e);
    expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
  });

  it('a region whose SSTs are compacted away mid-backup is planned again from its newest manifest', async () => {
    const old = await flush(0, 10, [100, 200]);
    await flush(1, 10, [300]);
    cluster.onGet = async (key) => {
      if (key !== old[0]) return;
      cluster.onGet = undefined;
      // Compaction: one SST replaces both, and the inputs are garbage-collected.
      await flush(0, 11, [250]);
      for (const k of old) await cluster.delete(k);
    };
    const res = await runBackup({ repository: repo, backupId: 'f1', client, clusterStore: cluster, metasrv: 'm', concurrency: 1 });
    expect(res.manifest.tables[0]!.regions[0]!.flushedIndex).to.equal(11);
    expect(res.manifest.tables[0]!.regions[0]!.sstBytes).to.equal(0); // fabricated SstMeta sizes
    const stored = (await repo.list('f1/data/')).map((o) => o.key);
    expect(stored.some((k) => old.some((o) => k.endsWith(o))), 'copies of compacted-away SSTs are removed').to.equal(false);
    expect((await verifyBackup(repo, 'f1')).problems).to.deep.equal([]);
  });

  it('resume: objects already in the repository are checked and not copied again; a damaged one is', async () => {
    await flush(0, 10, [100, 200, 300]);
    await flush(1, 10, [400]);
    // A run that stopped after copying: interrupt it by failing the last SST read.
    let reads = 0;
    cluster.onGet = async (key) => {
      if (key.endsWith('.sst') && ++reads === 4) throw new Error('killed');
    };
    await runBackup({ repository: repo, backupId: 'f1', client, clusterStore: cluster, metasrv: 'm', concurrency: 1 }).catch(() => undefined);
    cluster.onGet = undefined;
    const copied = (await repo.list('f1/data/')).filter((o) => o.key.endsWith('.sst'));
    expect(copied.length).to.equal(3);
    // Damage one of them.
    await repo.put(copied[0]!.key, randomBytes(copied[0]!.size));
    const res = await backup('f1');
    expect(res.resumed).to.equal(true);
    expect(res.copiedFiles, 'the missing SST and the damaged one').to.equal(2);
    expect(res.presentFiles, 'two SSTs and two manifests').to.equal(4);
    expect((await verifyBackup(repo, 'f1')).problems).to.deep.equal([]);
  });

  /** The region manifest `backupId`'s chain holds for its table's region `n`, decoded, and the SSTs the backup lists for it. */
  async function heldManifest(backupId: string, n: number): Promise<{ named: string[]; listed: string[] }> {
    const m = decodeBackupManifest(await repo.get(`${backupId}/backup.json`), backupId);
    const r = m.tables[0]!.regions[n]!;
    const f = m.files.find((x) => x.key === r.manifestKey)!;
    const held = decodeManifest(await repo.get(`${f.backupId}/data/${f.key}`), f.key);
    return { named: held.ssts.map((s) => s.key), listed: r.sstKeys };
  }

  it('incremental: a region manifest whose key is in the base (another cluster restored from it: same region ids and flushed indexes) is copied, not referred to', async () => {
    await flush(0, 10, [100]);
    await flush(1, 12, [300]);
    await backup('f1');
    // The cluster restored from f1 into a fresh cluster: its table got the same id, each region
    // manifest is at the backup's flushed index (same key), naming the SSTs under fresh names.
    cluster = new HookedStore(new FsObjectStore(join(dir, 'restored')));
    sstSeq = 1000;
    await flush(0, 10, [100]);
    await flush(1, 12, [300]);
    await flush(0, 15, [50]); // region 0 written since; region 1 idle
    await backup('i1', 'f1');
    const held = await heldManifest('i1', 1);
    expect(held.named, 'the manifest restore would read for region 1 names the SSTs the backup lists').to.deep.equal(held.listed);
    expect((await verifyBackup(repo, 'i1')).problems).to.deep.equal([]);
  });

  it('verify: a region whose manifest, held by a base, names other SSTs than the region lists is a problem', async () => {
    await flush(0, 10, [100]);
    await flush(1, 12, [300]);
    await backup('f1');
    await flush(0, 15, [50]);
    await backup('i1', 'f1');
    // i1's region 1 made to list another SST while its manifest is still f1's (a backup taken before
    // manifests were always copied, of a cluster restored from f1): restore would fail on it.
    const m = decodeBackupManifest(await repo.get('i1/backup.json'), 'i1');
    const r1 = m.tables[0]!.regions[1]!;
    const f1Manifest = decodeBackupManifest(await repo.get('f1/backup.json'), 'f1').files.find((f) => f.key === r1.manifestKey)!;
    const other = `${sstPrefix(region(1))}${(12).toString(16).padStart(16, '0')}-1800000000000-00.sst`;
    await repo.put(`i1/data/${other}`, new Uint8Array([1, 2, 3]));
    const forged: BackupManifest = {
      ...m,
      tables: [{ ...m.tables[0]!, regions: [m.tables[0]!.regions[0]!, { ...r1, sstKeys: [other] }] }],
      files: [...m.files.filter((f) => f.key !== r1.manifestKey && !r1.sstKeys.includes(f.key)), f1Manifest, { key: other, sizeBytes: 3, sha256: createHash('sha256').update(new Uint8Array([1, 2, 3])).digest('hex'), backupId: 'i1' }],
    };
    await repo.put('i1/backup.json', encodeBackupManifest(forged));
    const report = await verifyBackup(repo, 'i1');
    expect(report.ok, 'verify must check what restore reads').to.equal(false);
    expect(report.problems.join('\n')).to.match(/backup i1: region \d+ .*disagrees/);
  });

  /**
   * Writes `body` as `<id>/backup.json` the way a hand edit that kept the checksum valid would:
   * the envelope with a correct crc32c, without encodeBackupManifest's checks.
   */
  async function handEdited(body: BackupManifest): Promise<void> {
    const envelope = { format: 'regiondb-backup', formatVersion: 1, crc32c: crc32c(new TextEncoder().encode(JSON.stringify(body))), body };
    await repo.put(`${body.id}/backup.json`, new TextEncoder().encode(`${JSON.stringify(envelope, null, 1)}\n`));
  }

  describe('a table whose regions are not each listed exactly once (leftover 5): verify and restore refuse it', () => {
    const cases: { what: string; edit: (regions: BackupManifest['tables'][number]['regions']) => BackupManifest['tables'][number]['regions']; problem: string }[] = [
      { what: 'a region left out', edit: (rs) => [rs[0]!], problem: 'table t has 2 regions but does not list region 1 (a restore would start it empty)' },
      { what: 'a region listed twice', edit: (rs) => [rs[0]!, rs[0]!], problem: 'table t lists region 0 twice' },
      { what: 'a region outside the table', edit: (rs) => [rs[0]!, { ...rs[1]!, regionNumber: 5 }], problem: 'table t has 2 regions but lists region 5' },
      { what: "a region under another region's id", edit: (rs) => [rs[0]!, { ...rs[1]!, regionId: rs[0]!.regionId }], problem: `table t lists region 1 with id ${makeRegionId(7, 0)}, but region 1 of table id 7 is ${makeRegionId(7, 1)}` },
    ];
    for (const c of cases) {
      it(c.what, async () => {
        await flush(0, 10, [100]);
        await flush(1, 12, [300]);
        await backup('f1');
        const m = decodeBackupManifest(await repo.get('f1/backup.json'), 'f1');
        await handEdited({ ...m, tables: [{ ...m.tables[0]!, regions: c.edit(m.tables[0]!.regions) }] });
        const report = await verifyBackup(repo, 'f1');
        expect(report.ok, 'verify ok').to.equal(false);
        expect(report.problems.join('\n')).to.include('f1/backup.json is inconsistent').and.include(c.problem);
        // Restore verifies first and touches nothing of the target cluster.
        const touched: string[] = [];
        const target = {
          describe: async () => void touched.push('describe'),
          createTable: async () => void touched.push('createTable'),
          dropTable: async () => void touched.push('dropTable'),
          recoverTable: async () => void touched.push('recoverTable'),
        } as unknown as RestoreClusterClient;
        const err = await runRestore({ repository: repo, backupId: 'f1', client: target, targetStore: cluster }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isRegionDbError(err, ErrorCode.ConditionFailed), String(err)).to.equal(true);
        expect((err as Error).message).to.include('nothing was restored').and.include(c.problem);
        expect(touched, 'calls to the target cluster').to.deep.equal([]);
      });
    }
  });

  describe('a restore stopped part way (leftover L8): the same restore run again finishes it', () => {
    /** The target's table `t` as restored: each region's recovered point and the bytes of the SSTs its newest manifest names. */
    async function restoredState(target: FakeTarget): Promise<{ points: number[]; ssts: string[][] }> {
      const t = target.tables.get('t');
      expect(t, 'table t exists in the target').to.not.equal(undefined);
      const points: number[] = [];
      const ssts: string[][] = [];
      for (let n = 0; n < 2; n++) {
        const regionId = makeRegionId(t!.schema.tableId, n);
        points.push(target.recovered.get(regionId) ?? -1);
        // A killed run's marker would hold the region's GC: the run that finishes the table removes it.
        expect(await (target.store as DelegatingObjectStore).inner.head(restoreMarkerKey(regionId)), `region ${n}: no restore marker left`).to.equal(undefined);
        const latest = await loadLatestManifest((target.store as DelegatingObjectStore).inner, regionId);
        const bytes = [];
        for (const s of latest?.manifest.ssts ?? []) bytes.push(createHash('sha256').update(await target.store.get(s.key)).digest('hex'));
        ssts.push(bytes.sort());
      }
      return { points, ssts };
    }

    /** The source's region SSTs, as sha256s per region (what a finished restore must hold). */
    async function sourceSsts(keys: string[][]): Promise<string[][]> {
      const out = [];
      for (const ks of keys) out.push((await Promise.all(ks.map(async (k) => createHash('sha256').update(await cluster.get(k)).digest('hex')))).sort());
      return out;
    }

    const restore = (target: FakeTarget, forceRerestore?: boolean) =>
      runRestore({ repository: repo, backupId: 'f1', client: target.client, targetStore: target.store, concurrency: 1, forceRerestore });
    const recordKey = `br-restore/${restoreToken('f1', 't')}.json`;
    const recordState = async (target: FakeTarget) => {
      const inner = (target.store as DelegatingObjectStore).inner;
      return (await inner.head(recordKey)) === undefined ? undefined : (JSON.parse(new TextDecoder().decode(await inner.get(recordKey))) as { state: string }).state;
    };
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => e,
      );

    it('a kill before each change to the target cluster, then the same restore: the table finishes with every region at the backup point (a kill after the recovery began: only with --force-rerestore); a third run leaves it alone', async () => {
      const r0 = await flush(0, 10, [100, 200]);
      const r1 = await flush(1, 12, [300]);
      await backup('f1');
      const expected = { points: [10, 12], ssts: await sourceSsts([r0, r1]) };
      // A run with no kill counts the changes a restore makes (the table; per region its GC marker,
      // its SSTs (2 and 1), its manifest and the marker's deletion; the record saying the recovery
      // begins, the recovery, the record saying the table is restored).
      const clean = new FakeTarget(join(dir, 'clean'));
      await restore(clean);
      expect(await restoredState(clean)).to.deep.equal(expected);
      const changes = clean.changes;
      expect(changes).to.equal(13);
      for (let k = 1; k <= changes; k++) {
        const target = new FakeTarget(join(dir, `kill-${k}`));
        target.killBefore = k;
        const err = await failure(restore(target));
        expect(err instanceof Killed || (err as Error).cause instanceof Killed, `kill before change ${k}: the run fails: ${String(err)}`).to.equal(true);
        target.revive();
        const created = target.tables.has('t');
        const recovering = (await recordState(target)) === 'recovering';
        expect(recovering, `kill before change ${k}: the record says recovering`).to.equal(k >= 12);
        if (recovering) {
          const before = target.changes;
          const refused = await failure(restore(target));
          expect(isRegionDbError(refused, ErrorCode.ConditionFailed), `kill before change ${k}: ${String(refused)}`).to.equal(true);
          expect(target.changes - before, `kill before change ${k}: changes made by the refused run`).to.equal(0);
        }
        const again = await restore(target, recovering);
        expect(again.resumed, `kill before change ${k}: resumed`).to.deep.equal(created ? ['t'] : []);
        expect(again.tables.map((t) => t.name), `kill before change ${k}`).to.deep.equal(['t']);
        expect(again.tables[0]!.regions.map((r) => r.restoredFlushedIndex)).to.deep.equal([10, 12]);
        expect(await restoredState(target), `kill before change ${k}: the target after the second run`).to.deep.equal(expected);
        // Finished: run once more and nothing of the target changes.
        const before = target.changes;
        const third = await restore(target);
        expect(third.alreadyRestored, `kill before change ${k}: third run`).to.deep.equal([{ name: 't', tableId: target.tables.get('t')!.schema.tableId }]);
        expect(third.tables).to.deep.equal([]);
        expect(target.changes - before, `kill before change ${k}: changes made by the third run`).to.equal(0);
      }
    });

    it("each region's SSTs are copied under a marker that its live GC honours: put before the first copy, deleted once the manifest naming them is in (a failed run deletes it too)", async () => {
      await flush(0, 10, [100, 200]);
      await flush(1, 12, [300]);
      await backup('f1');
      const target = new FakeTarget(join(dir, 'marker'));
      const ops: string[] = [];
      const inner = target.store as DelegatingObjectStore;
      const put = inner.put.bind(inner);
      const del = inner.delete.bind(inner);
      inner.put = async (key: string, data: Uint8Array) => {
        await put(key, data);
        ops.push(`put ${key}`);
      };
      inner.delete = async (key: string) => {
        await del(key);
        ops.push(`delete ${key}`);
      };
      await restore(target);
      const tableId = target.tables.get('t')!.schema.tableId;
      for (const n of [0, 1]) {
        const regionId = makeRegionId(tableId, n);
        const marker = restoreMarkerKey(regionId);
        const putAt = ops.indexOf(`put ${marker}`);
        const deletedAt = ops.indexOf(`delete ${marker}`);
        const copies = ops.flatMap((op, i) => (op.startsWith(`put ${sstPrefix(regionId)}`) && op.endsWith('.sst') ? [i] : []));
        const manifestAt = ops.findIndex((op) => op.startsWith(`put ${manifestPrefix(regionId)}`));
        expect(copies.length, `region ${n}: its SSTs copied`).to.equal(n === 0 ? 2 : 1);
        expect(putAt, `region ${n}: the marker is put`).to.be.greaterThan(-1);
        expect(putAt, `region ${n}: before the first copy`).to.be.lessThan(Math.min(...copies));
        expect(deletedAt, `region ${n}: deleted after the manifest naming the copies`).to.be.greaterThan(manifestAt);
        expect(manifestAt).to.be.greaterThan(Math.max(...copies));
        expect(await inner.head(marker), `region ${n}: no marker left`).to.equal(undefined);
      }
      // A run that fails copying (a table an earlier run created, so it is left in place) leaves no marker.
      const failing = new FakeTarget(join(dir, 'marker-fail'));
      failing.killBefore = 2;
      await failure(restore(failing));
      failing.revive();
      failing.failPut = (key) => key.endsWith('.sst');
      expect(isRegionDbError(await failure(restore(failing)), ErrorCode.StorageUnavailable)).to.equal(true);
      const failedId = failing.tables.get('t')!.schema.tableId;
      for (const n of [0, 1]) expect(await failing.store.head(restoreMarkerKey(makeRegionId(failedId, n))), `region ${n}: no marker left by the failed run`).to.equal(undefined);
    });

    it('a run stopped after the recovery began: the next run refuses the table (writes made to it since would be lost), changing nothing; --force-rerestore restores it again', async () => {
      await flush(0, 10, [100]);
      await flush(1, 12, [300]);
      await backup('f1');
      const target = new FakeTarget(join(dir, 'recovered-killed'));
      target.killAtPut = (key) => key === recordKey && target.recovered.size > 0; // recovered and checked; killed before the record saying restored
      expect(await failure(restore(target))).to.be.instanceOf(Error);
      target.revive();
      // The table is live: a write to it is flushed (a newer manifest of region 0).
      const inner = (target.store as DelegatingObjectStore).inner;
      const regionId = makeRegionId(target.tables.get('t')!.schema.tableId, 0);
      const latest = (await loadLatestManifest(inner, regionId))!;
      await inner.put(manifestKey(regionId, 20), encodeManifest({ ...latest.manifest, flushedIndex: 20 }));
      const before = target.changes;
      const err = await failure(restore(target));
      expect(isRegionDbError(err, ErrorCode.ConditionFailed), String(err)).to.equal(true);
      expect((err as Error).message)
        .to.include('began recovering table t')
        .and.include('would discard every write made to it since')
        .and.include('nothing was changed')
        .and.include('--force-rerestore')
        .and.include('--tables');
      expect(target.changes - before, 'changes to the target').to.equal(0);
      expect((await loadLatestManifest(inner, regionId))?.manifest.flushedIndex, "the write's manifest is kept").to.equal(20);
      // Asked for explicitly: restored again, the write discarded.
      const forced = await restore(target, true);
      expect(forced.resumed).to.deep.equal(['t']);
      expect(forced.rerestored).to.deep.equal(['t']);
      expect(forced.tables[0]!.regions.map((r) => r.restoredFlushedIndex)).to.deep.equal([10, 12]);
      expect(await recordState(target)).to.equal('restored');
    });

    it("the record saying restored cannot be written: the error says the table is restored and left, and what the next run does; the next run refuses it", async () => {
      await flush(0, 10, [100]);
      await flush(1, 12, [300]);
      await backup('f1');
      const target = new FakeTarget(join(dir, 'record-put-fails'));
      let recordPuts = 0;
      target.failPut = (key) => key === recordKey && ++recordPuts === 2;
      const err = await failure(restore(target));
      expect(isRegionDbError(err, ErrorCode.StorageUnavailable), String(err)).to.equal(true);
      expect((err as Error).message)
        .to.include(`table t (id ${target.tables.get('t')?.schema.tableId}) is restored`)
        .and.include(`its record ${recordKey} could not be written`)
        .and.include('refused (injected)')
        .and.include('--force-rerestore')
        .and.include('No other table of this restore is left to restore');
      expect(target.tables.has('t'), 'the restored table is not dropped').to.equal(true);
      target.failPut = undefined;
      const again = await failure(restore(target));
      expect(isRegionDbError(again, ErrorCode.ConditionFailed), String(again)).to.equal(true);
    });

    it('a run that fails on a table an earlier run created leaves the table in place (it may hold writes) and says so; a table it created itself is dropped', async () => {
      await flush(0, 10, [100]);
      await flush(1, 12, [300]);
      await backup('f1');
      const notes: string[] = [];
      const run = (target: FakeTarget) =>
        runRestore({ repository: repo, backupId: 'f1', client: target.client, targetStore: target.store, concurrency: 1, progress: { ...silentProgress, note: (l) => notes.push(l) } });
      const failSst = (key: string) => key.includes('/sst/');
      // Created by this run: the failure's cleanup drops it, as before.
      const fresh = new FakeTarget(join(dir, 'fail-fresh'));
      fresh.failPut = failSst;
      const err1 = await failure(run(fresh));
      expect(isRegionDbError(err1, ErrorCode.StorageUnavailable), String(err1)).to.equal(true);
      expect(fresh.tables.has('t'), 'a table this run created is dropped').to.equal(false);
      // Created by an earlier run (killed after CreateTable): this run fails copying, and leaves it.
      const target = new FakeTarget(join(dir, 'fail-resumed'));
      target.killBefore = 2;
      await run(target).then(() => expect.fail('the first run is killed'), (e: unknown) => expect(e).to.be.instanceOf(Killed));
      target.revive();
      const tableId = target.tables.get('t')!.schema.tableId;
      target.failPut = failSst;
      notes.length = 0;
      const err2 = await failure(run(target));
      expect(isRegionDbError(err2, ErrorCode.StorageUnavailable), String(err2)).to.equal(true);
      expect(target.tables.get('t')?.schema.tableId, 'the resumed table is still there').to.equal(tableId);
      expect(notes.join('\n')).to.include(`table t (id ${tableId}) is left as it is`).and.include('run the same restore again to finish it');
      // And the next run finishes it.
      target.failPut = undefined;
      const again = await run(target);
      expect(again.resumed).to.deep.equal(['t']);
      expect(again.tables[0]!.regions.map((r) => r.restoredFlushedIndex)).to.deep.equal([10, 12]);
      // A table an earlier run began recovering, restored again on request, and that run fails: left too.
      const recovered = new FakeTarget(join(dir, 'fail-forced'));
      recovered.killAtPut = (key) => key === recordKey && recovered.recovered.size > 0;
      expect(((await failure(run(recovered))) as Error).cause).to.be.instanceOf(Killed);
      recovered.revive();
      const recoveredId = recovered.tables.get('t')!.schema.tableId;
      recovered.failPut = failSst;
      notes.length = 0;
      const err3 = await failure(runRestore({ repository: repo, backupId: 'f1', client: recovered.client, targetStore: recovered.store, concurrency: 1, forceRerestore: true, progress: { ...silentProgress, note: (l) => notes.push(l) } }));
      expect(isRegionDbError(err3, ErrorCode.StorageUnavailable), String(err3)).to.equal(true);
      expect(recovered.tables.get('t')?.schema.tableId, 'the re-restored table is still there').to.equal(recoveredId);
      expect(notes.join('\n')).to.include(`table t (id ${recoveredId}) is left as it is`).and.include('refuses it unless --force-rerestore');
    });

    it('a table of that name the restore did not create is still refused, untouched', async () => {
      await flush(0, 10, [100]);
      await flush(1, 12, [300]);
      await backup('f1');
      const target = new FakeTarget(join(dir, 'live'));
      await target.client.createTable('t', [...SCHEMA.columns], 2); // someone else's table (another token)
      const before = target.changes;
      const err = await restore(target).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRegionDbError(err, ErrorCode.AlreadyExists), String(err)).to.equal(true);
      expect((err as Error).message).to.include('already has table t, not created by a restore of backup f1');
      expect(target.changes - before, 'changes to the target').to.equal(0);
    });
    it('an unreadable restored record: refused, untouched, and the message says deleting it re-restores the table over its writes', async () => {
      await flush(0, 10, [100]);
      await flush(1, 12, [300]);
      await backup('f1');
      const target = new FakeTarget(join(dir, 'bad-record'));
      await restore(target);
      const key = `br-restore/${restoreToken('f1', 't')}.json`;
      for (const bad of ['not json', JSON.stringify({ backupId: 'other', table: 't', tableId: 1 })]) {
        await (target.store as DelegatingObjectStore).inner.put(key, new TextEncoder().encode(bad));
        const before = target.changes;
        const err = await restore(target).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isRegionDbError(err, ErrorCode.Corruption), String(err)).to.equal(true);
        expect((err as Error).message, bad).to.include('nothing was changed').and.include('discarding every write made to it since');
        expect(target.changes - before, 'changes to the target').to.equal(0);
      }
    });

    it('a table of the restore that is being dropped (its cleanup drop not finished) is refused, saying so, untouched', async () => {
      await flush(0, 10, [100]);
      await flush(1, 12, [300]);
      await backup('f1');
      const target = new FakeTarget(join(dir, 'dropping'));
      await target.client.createTable('t', [...SCHEMA.columns], 2, restoreToken('f1', 't'));
      target.dropping.add('t');
      const before = target.changes;
      const err = await restore(target).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRegionDbError(err, ErrorCode.AlreadyExists), String(err)).to.equal(true);
      expect((err as Error).message).to.include('still dropping table t').and.include('run the restore again once it is gone');
      expect(target.changes - before, 'changes to the target').to.equal(0);
    });
  });

  it("the metasrv's rule a resumed restore relies on (MetasrvCore): CreateTable with the token that created a table answers it, any other token ALREADY_EXISTS", async () => {
    const core = await startMetasrvCore('br-token', { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never });
    try {
      for (const n of [1, 2, 3]) {
        const addr = `127.0.0.1:${21_300 + n}`;
        await core.registerNode({ cluster_id: 'br-token', node_id: String(n), addr, http_addr: addr, store_id: `store-${n}` } as never, () => {});
        await core.heartbeat({ cluster_id: 'br-token', node_id: String(n), addr, replicas: [], store_id: `store-${n}` } as never, () => {});
      }
      const columns = [
        { name: 'host', type: 'STRING', semantic: 'TAG' },
        { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
      ];
      const create = (token: string) => core.createTable({ name: 't', columns, region_count: 2, request_token: token } as never);
      const token = restoreToken('f1', 't');
      const first = await create(token);
      const again = await create(token);
      expect(again.table?.table_id, 'the same token: the same table').to.equal(first.table?.table_id);
      for (const other of [restoreToken('f2', 't'), '', 'someone-else']) {
        const err = await create(other).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isRegionDbError(err, ErrorCode.AlreadyExists), `token ${JSON.stringify(other)}: ${String(err)}`).to.equal(true);
      }
    } finally {
      core.halt();
    }
  });

  it("the metasrv's rule, while the table is being dropped: not even the creating token gets it back (a resumed restore must not restore into a table the metasrv is dropping)", async () => {
    // A restore whose cleanup DropTable could not fence every region (UNAVAILABLE) leaves the
    // table marked being dropped, and the metasrv finishes that drop on its own. Handed back to
    // the restore's token, a second run would restore into it, write its record and report it
    // done - and the table would then disappear.
    let fenceRefused = false;
    const core = await startMetasrvCore('br-token-drop', {
      openRegion: async () => ({}) as never,
      fenceRegion: async () => {
        fenceRefused = true;
        throw new RegionDbError(ErrorCode.Unavailable, 'node down (test)');
      },
    });
    try {
      for (const n of [1, 2, 3]) {
        const addr = `127.0.0.1:${21_310 + n}`;
        await core.registerNode({ cluster_id: 'br-token-drop', node_id: String(n), addr, http_addr: addr, store_id: `store-${n}` } as never, () => {});
        await core.heartbeat({ cluster_id: 'br-token-drop', node_id: String(n), addr, replicas: [], store_id: `store-${n}` } as never, () => {});
      }
      const columns = [
        { name: 'host', type: 'STRING', semantic: 'TAG' },
        { name: 'ts', type: 'TIMESTAMP_MS', semantic: 'TIMESTAMP' },
      ];
      const token = restoreToken('f1', 't');
      const create = () => core.createTable({ name: 't', columns, region_count: 1, request_token: token } as never);
      await create();
      const dropErr = await core.dropTable({ name: 't' } as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(fenceRefused, 'FenceRegion was asked').to.equal(true);
      expect(isRegionDbError(dropErr, ErrorCode.Unavailable), `the drop is not done: ${String(dropErr)}`).to.equal(true);
      const err = await create().then(
        (res) => new Error(`answered with table ${res.table?.table_id} although it is being dropped`),
        (e: unknown) => e,
      );
      expect(isRegionDbError(err, ErrorCode.AlreadyExists), String(err)).to.equal(true);
      expect((err as Error).message).to.include('is being dropped');
    } finally {
      core.halt();
    }
  });

  it('verify reports an incomplete backup, and an incremental whose base is gone', async () => {
    await flush(0, 10, [100]);
    await flush(1, 10, [100]);
    await repo.put('p1/progress.json', encodeBackupJournal({ id: 'p1', baseId: null, source: { metasrv: 'm', objectStore: 's', clusterId: null }, createdAtMs: 1, tables: [], done: {} }));
    expect((await verifyBackup(repo, 'p1')).problems).to.deep.equal(['backup p1 is incomplete (interrupted or still running): resume it with `regiondb br backup --id p1` to the same repository']);
    await backup('f1');
    await backup('i1', 'f1');
    await repo.delete('f1/backup.json');
    const report = await verifyBackup(repo, 'i1');
    expect(report.ok).to.equal(false);
    expect(report.problems).to.deep.equal([`broken chain: backup i1 is incremental from f1, but backup f1 is missing from ${repo.description}`]);
  });
});
