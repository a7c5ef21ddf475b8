// `regiondb br backup|verify|restore|list|prune` (docs/backup.md). Backups live in a repository:
// a directory or s3://bucket/prefix; a backup is addressed as <repository>/<backup id>.
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import type { RegionDbClient } from '../client/client.js';
import { datanodeConfigSchema, loadConfig } from '../common/config.js';
import { ErrorCode, RegionDbError, isRegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import {
  consoleProgress,
  deleteBackup,
  latestBackup,
  listBackups,
  loadBackupManifest,
  mib,
  openLocation,
  planPrune,
  runBackup,
  runRestore,
  type S3Settings,
  splitBackupLocation,
  verifyBackup,
} from '../br/index.js';
import { createObjectStore } from '../object-store/index.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { renderTable } from './render.js';

interface RepositoryS3Options {
  s3Endpoint?: string;
  s3Region?: string;
  s3AccessKeyId?: string;
  s3SecretAccessKey?: string;
}

interface StorageOptions {
  storageRoot?: string;
  datanodeConfig?: string;
  storageS3Endpoint?: string;
  storageS3Region?: string;
  storageS3AccessKeyId?: string;
  storageS3SecretAccessKey?: string;
}

interface CopyOptions {
  concurrency: number;
  maxBytesPerSecond?: number;
  json?: boolean;
}

const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new RegionDbError(ErrorCode.InvalidArgument, `expected a positive integer, got ${v}`);
  return n;
};

/** Flags for an S3 backup repository (env: REGIONDB_BR_S3_*, then the AWS_* variables). */
function addRepositoryS3Options(cmd: Command): Command {
  return cmd
    .addOption(new Option('--s3-endpoint <url>', 'S3 endpoint of an s3:// repository (default: AWS S3 in --s3-region)').env('REGIONDB_BR_S3_ENDPOINT'))
    .addOption(new Option('--s3-region <region>', 'S3 region of an s3:// repository').env('REGIONDB_BR_S3_REGION'))
    .addOption(new Option('--s3-access-key-id <id>', 'S3 access key id (or REGIONDB_BR_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID)').env('REGIONDB_BR_S3_ACCESS_KEY_ID'))
    .addOption(new Option('--s3-secret-access-key <secret>', 'S3 secret (prefer REGIONDB_BR_S3_SECRET_ACCESS_KEY / AWS_SECRET_ACCESS_KEY: flags show in ps)').env('REGIONDB_BR_S3_SECRET_ACCESS_KEY'));
}

/** Flags naming the cluster's object store, which backup reads and restore writes directly. */
function addStorageOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--storage-root <dir|s3://bucket/prefix>', "the cluster's object store (the datanodes' [storage]): a directory or s3://bucket/prefix"))
    .addOption(new Option('--datanode-config <file>', "take the cluster's object store from a datanode TOML config ([storage], or <data_dir>/objects)"))
    .addOption(new Option('--storage-s3-endpoint <url>', 'S3 endpoint of an s3:// cluster object store').env('REGIONDB_STORAGE_S3_ENDPOINT'))
    .addOption(new Option('--storage-s3-region <region>', 'S3 region of the cluster object store').env('REGIONDB_STORAGE_S3_REGION'))
    .addOption(new Option('--storage-s3-access-key-id <id>', 'S3 access key id of the cluster object store').env('REGIONDB_STORAGE_S3_ACCESS_KEY_ID'))
    .addOption(new Option('--storage-s3-secret-access-key <secret>', 'S3 secret of the cluster object store (prefer the environment variable)').env('REGIONDB_STORAGE_S3_SECRET_ACCESS_KEY'));
}

function addCopyOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--concurrency <n>', `objects copied at once (1..${limits.brCopyConcurrencyMax})`).argParser(positiveInt).default(4))
    .addOption(new Option('--max-bytes-per-second <n>', 'throttle copying to this many bytes per second').argParser(positiveInt))
    .option('--json', 'print the result as JSON');
}

function repositoryS3(o: RepositoryS3Options): S3Settings {
  return {
    endpoint: o.s3Endpoint,
    region: o.s3Region,
    accessKeyId: o.s3AccessKeyId ?? process.env['AWS_ACCESS_KEY_ID'],
    secretAccessKey: o.s3SecretAccessKey ?? process.env['AWS_SECRET_ACCESS_KEY'],
  };
}

function clusterStore(o: StorageOptions): ObjectStore {
  if (o.storageRoot && o.datanodeConfig) throw new RegionDbError(ErrorCode.InvalidArgument, 'give --storage-root or --datanode-config, not both');
  if (o.datanodeConfig) {
    const dn = loadConfig(datanodeConfigSchema, o.datanodeConfig);
    return createObjectStore(dn.storage ?? { type: 'fs', root: join(dn.node.data_dir, 'objects') });
  }
  if (!o.storageRoot) throw new RegionDbError(ErrorCode.InvalidArgument, "the cluster's object store is needed: --storage-root <dir|s3://bucket/prefix> or --datanode-config <file>");
  return openLocation(
    o.storageRoot,
    { endpoint: o.storageS3Endpoint, region: o.storageS3Region, accessKeyId: o.storageS3AccessKeyId, secretAccessKey: o.storageS3SecretAccessKey },
    'cluster object store',
  );
}

/** Runs a subcommand: errors print as `error (CODE): message` and exit 1. */
async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const code = isRegionDbError(err) ? err.code : 'ERROR';
    process.stderr.write(`error (${code}): ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

function print(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

const defaultBackupId = () => `backup-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** `makeClient(metasrv?)`: a client with the global TLS/auth options, for the global --metasrv or the given address. */
export function registerBrCommand(program: Command, makeClient: (metasrv?: string) => RegionDbClient): void {
  const br = program.command('br').description('backup and restore: full and incremental backups to a directory or S3 (docs/backup.md)');

  const backup = br
    .command('backup')
    .description('flush and back up tables (all by default) of the cluster at --metasrv into a repository; resumable with the same --id')
    .requiredOption('--to <repository>', 'backup repository: a directory or s3://bucket/prefix')
    .option('--id <id>', 'backup id (default: backup-<UTC time>); rerun with the id of an interrupted backup to resume it')
    .option('--incremental-from <id>', 'store only SSTs that are not in this earlier backup of the repository ("latest": the newest complete one)')
    .option('--tables <names>', 'comma-separated tables (default: every table)')
    .option('--cluster-id <id>', "recorded in the backup as the source cluster's id")
    .option('--consistent', 'every region at one cluster-consistent point: a write barrier holds client writes for a few ms (docs/backup.md)')
    .option('--barrier-hold-ms <ms>', `--consistent: the longest a region's writes may be held (1..${limits.brBarrierHoldMsMax}); a barrier not done by then is retried`, positiveInt, limits.brBarrierHoldMsDefault);
  addStorageOptions(backup);
  addRepositoryS3Options(backup);
  addCopyOptions(backup);
  backup.action(async (o: StorageOptions & RepositoryS3Options & CopyOptions & { to: string; id?: string; incrementalFrom?: string; tables?: string; clusterId?: string; consistent?: boolean; barrierHoldMs: number }) => {
    await run(async () => {
      const repository = openLocation(o.to, repositoryS3(o), 'backup repository');
      const store = clusterStore(o);
      const client = makeClient();
      try {
        let baseId = o.incrementalFrom;
        if (baseId === 'latest') {
          baseId = (await latestBackup(repository))?.id;
          if (!baseId) throw new RegionDbError(ErrorCode.NotFound, `--incremental-from latest: ${repository.description} has no complete backup`);
        }
        const res = await runBackup({
          repository,
          backupId: o.id ?? defaultBackupId(),
          baseId,
          tables: o.tables?.split(',').filter((t) => t !== ''),
          client,
          clusterStore: store,
          metasrv: client.metasrvAddrs.join(','),
          clusterId: o.clusterId,
          consistent: o.consistent === true,
          barrierHoldMs: o.barrierHoldMs,
          concurrency: o.concurrency,
          bytesPerSecond: o.maxBytesPerSecond,
          progress: consoleProgress(),
        });
        const m = res.manifest;
        print(o.json, res, () =>
          [
            `backup ${m.id} complete (${m.kind}${m.baseId ? ` from ${m.baseId}` : ''}${res.resumed ? ', resumed' : ''}) in ${(res.durationMs / 1000).toFixed(1)} s`,
            ...(m.point
              ? [`  consistent point: barrier ${m.point.barrierId}, writes held by ${iso(m.point.heldAtMs)}; client writes paused at most ${m.point.pauseMsMax} ms (${m.point.writesHeld} waited; attempt ${m.point.attempts})`]
              : []),
            `  stored ${m.storedFiles} objects, ${mib(m.storedBytes)} MiB; copied by this run ${res.copiedFiles} objects, ${mib(res.copiedBytes)} MiB; already present ${res.presentFiles}; in base chain ${res.baseFiles} objects, ${mib(res.baseBytes)} MiB`,
            renderTable(
              ['TABLE', 'REGION', 'FLUSHED INDEX', 'SSTS', 'MiB'],
              m.tables.flatMap((t) => t.regions.map((r) => [t.name, r.regionId, String(r.flushedIndex), String(r.sstKeys.length), mib(r.sstBytes)])),
            ),
          ].join('\n'),
        );
      } finally {
        client.close();
      }
    });
  });

  const verify = br
    .command('verify <backup>')
    .description('check every object of a backup (size, sha256) and its chain of base backups; exits 1 if anything is wrong')
    .option('--concurrency <n>', `objects read at once (1..${limits.brCopyConcurrencyMax})`, positiveInt, 4)
    .option('--json', 'print the report as JSON');
  addRepositoryS3Options(verify);
  verify.action(async (location: string, o: RepositoryS3Options & { concurrency: number; json?: boolean }) => {
    await run(async () => {
      const { repository, backupId } = splitBackupLocation(location);
      const report = await verifyBackup(openLocation(repository, repositoryS3(o), 'backup repository'), backupId, { concurrency: o.concurrency, progress: consoleProgress() });
      print(o.json, report, () =>
        report.ok
          ? `backup ${backupId} verifies: chain ${report.chain.join(' <- ')}; ${report.checkedFiles} objects, ${mib(report.checkedBytes)} MiB checked`
          : `backup ${backupId} does NOT verify (${report.problems.length} problem${report.problems.length > 1 ? 's' : ''}):\n${report.problems.map((p) => `  - ${p}`).join('\n')}`,
      );
      if (!report.ok) process.exitCode = 1;
    });
  });

  const restore = br
    .command('restore <backup>')
    .description('restore a backup (with its base chain) into a cluster that does not have its tables; verifies first')
    .requiredOption('--to <metasrv>', "the target cluster's metasrv: host:port, or a comma-separated list; the leader is found")
    .option('--tables <names>', 'comma-separated tables (default: every table in the backup)')
    .option(
      '--force-rerestore',
      'restore again a table an earlier run of this restore began recovering but did not finish (refused without it): the table may have served writes since, and they are discarded',
    );
  addStorageOptions(restore);
  addRepositoryS3Options(restore);
  addCopyOptions(restore);
  restore.action(async (location: string, o: StorageOptions & RepositoryS3Options & CopyOptions & { to: string; tables?: string; forceRerestore?: boolean }) => {
    await run(async () => {
      const { repository, backupId } = splitBackupLocation(location);
      const store = clusterStore(o);
      const client = makeClient(o.to);
      try {
        const res = await runRestore({
          repository: openLocation(repository, repositoryS3(o), 'backup repository'),
          backupId,
          client,
          targetStore: store,
          tables: o.tables?.split(',').filter((t) => t !== ''),
          forceRerestore: o.forceRerestore === true,
          concurrency: o.concurrency,
          bytesPerSecond: o.maxBytesPerSecond,
          progress: consoleProgress(),
        });
        print(o.json, res, () =>
          [
            `restored backup ${res.backupId} (chain ${res.chain.join(' <- ')}) into ${o.to} in ${(res.durationMs / 1000).toFixed(1)} s: ${res.copiedFiles} SSTs, ${mib(res.copiedBytes)} MiB`,
            renderTable(
              ['TABLE', 'TABLE ID', 'REGION', 'FROM REGION', 'RESTORED FLUSHED INDEX', 'SSTS'],
              res.tables.flatMap((t) => t.regions.map((r) => [t.name, String(t.tableId), r.regionId, r.sourceRegionId, String(r.restoredFlushedIndex), String(r.ssts)])),
            ),
            ...(res.resumed.length > 0 ? [`finished what an earlier run of this restore left undone: ${res.resumed.join(', ')}`] : []),
            ...(res.rerestored.length > 0 ? [`restored again (--force-rerestore; writes made to them since the earlier run discarded): ${res.rerestored.join(', ')}`] : []),
            ...(res.alreadyRestored.length > 0 ? [`restored by an earlier run of this restore, left as they are: ${res.alreadyRestored.map((t) => `${t.name} (id ${t.tableId})`).join(', ')}`] : []),
          ].join('\n'),
        );
      } finally {
        client.close();
      }
    });
  });

  const list = br.command('list <repository>').description('list the backups of a repository (id, kind, base, time, tables, size, status)').option('--json', 'print JSON');
  addRepositoryS3Options(list);
  list.action(async (location: string, o: RepositoryS3Options & { json?: boolean }) => {
    await run(async () => {
      const backups = await listBackups(openLocation(location, repositoryS3(o), 'backup repository'));
      print(o.json, backups, () =>
        backups.length === 0
          ? `no backups in ${location}`
          : renderTable(
              ['ID', 'KIND', 'BASE', 'CREATED', 'TABLES', 'OBJECTS', 'STORED MiB', 'STATUS'],
              backups.map((b) => [
                b.id,
                b.manifest?.kind ?? '-',
                b.manifest?.baseId ?? b.pendingBaseId ?? '-',
                b.manifest ? iso(b.manifest.createdAtMs) : '-',
                b.manifest?.tables.map((t) => t.name).join(',') ?? '-',
                b.manifest ? String(b.manifest.files.length) : '-',
                mib(b.storedBytes),
                b.status + (b.error ? `: ${b.error}` : ''),
              ]),
            ),
      );
    });
  });

  const prune = br
    .command('prune <repository>')
    .description('delete all but the newest N complete backups, keeping every base a kept incremental needs')
    .requiredOption('--keep <n>', 'complete backups to keep', positiveInt)
    .option('--dry-run', 'print what would be deleted')
    .option('--json', 'print JSON');
  addRepositoryS3Options(prune);
  prune.action(async (location: string, o: RepositoryS3Options & { keep: number; dryRun?: boolean; json?: boolean }) => {
    await run(async () => {
      const repository = openLocation(location, repositoryS3(o), 'backup repository');
      const plan = planPrune(await listBackups(repository), o.keep);
      if (!o.dryRun) for (const id of plan.deleted) await deleteBackup(repository, id);
      print(o.json, { ...plan, dryRun: o.dryRun === true }, () =>
        [
          `${o.dryRun ? 'would delete' : 'deleted'}: ${plan.deleted.join(', ') || 'nothing'}`,
          `kept: ${plan.kept.join(', ') || 'nothing'}`,
          ...(plan.keptAsBase.length > 0 ? [`kept as bases of kept incrementals: ${plan.keptAsBase.join(', ')}`] : []),
          ...(plan.untouched.length > 0 ? [`left alone (incomplete or damaged; inspect with br list): ${plan.untouched.join(', ')}`] : []),
        ].join('\n'),
      );
    });
  });

  const show = br.command('show <backup>').description("print a backup's manifest (tables, regions and their flushed indexes, files) as JSON");
  addRepositoryS3Options(show);
  show.action(async (location: string, o: RepositoryS3Options) => {
    await run(async () => {
      const { repository, backupId } = splitBackupLocation(location);
      print(true, await loadBackupManifest(openLocation(repository, repositoryS3(o), 'backup repository'), backupId), () => '');
    });
  });
}
