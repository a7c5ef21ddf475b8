// The two records a backup writes into its repository, and where every object of a backup lives.
//
// Repository layout (a directory or an S3 prefix; both are an ObjectStore):
//   <backupId>/backup.json       the backup manifest; written last, so its presence = complete
//   <backupId>/progress.json     the resume journal while the backup runs; deleted when complete
//   <backupId>/data/<objectKey>  a copied cluster object (region manifest or SST), under the same
//                                key it has in the cluster's object store
//
// Both records are JSON envelopes {format, formatVersion, crc32c, body}: the CRC32C covers the
// compact JSON of `body`, and decoding checks the envelope, the checksum and every field (zod)
// before anything is trusted. Invariants of a decoded BackupManifest:
//   - each table is listed once, and lists each of its regions 0..regionCount-1 exactly once,
//     under the id its table id and region number make (a region missing from the list would be
//     restored empty, one listed twice restored from either record);
//   - every region manifest and SST a region names is in `files` exactly once;
//   - a file's `backupId` is this backup or one of its bases (incremental chain);
//   - `baseId` is null exactly when `kind` is 'full'.
import { z } from 'zod';
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { makeRegionId } from '../engine/key.js';

export const BACKUP_FORMAT_VERSION = 1;
const MANIFEST_FORMAT = 'regiondb-backup';
const JOURNAL_FORMAT = 'regiondb-backup-progress';

/** Backup ids are one path segment, portable to every object store and file system. */
export const BACKUP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const backupManifestKey = (backupId: string) => `${backupId}/backup.json`;
export const backupJournalKey = (backupId: string) => `${backupId}/progress.json`;
export const backupDataKey = (backupId: string, objectKey: string) => `${backupId}/data/${objectKey}`;

export function validateBackupId(backupId: string): void {
  if (!BACKUP_ID.test(backupId)) {
    throw new RegionDbError(ErrorCode.InvalidArgument, `invalid backup id ${JSON.stringify(backupId)}: must match ${BACKUP_ID.source}`);
  }
}

const safeInt = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

const fileSchema = z
  .object({
    /** The object's key in the cluster's object store (and below `<backupId>/data/`). */
    key: z.string().min(1),
    sizeBytes: safeInt,
    sha256: sha256Hex,
    /** The backup whose data/ holds the bytes: this one, or a base in the chain. */
    backupId: z.string().regex(BACKUP_ID),
  })
  .strict();

const regionSchema = z
  .object({
    regionNumber: safeInt,
    regionId: z.string().regex(/^\d{1,20}$/),
    /** The consistent point of the region: everything at or below this raft index is in the backup. */
    flushedIndex: safeInt,
    flushedTerm: safeInt,
    /** Key of the region manifest copied (null: the region was never flushed, it is empty). */
    manifestKey: z.string().min(1).nullable(),
    manifestBytes: safeInt,
    sstKeys: z.array(z.string().min(1)),
    sstBytes: safeInt,
    /** Entries in the SSTs (versions, including deletions): a size hint, not a row count. */
    sstEntries: safeInt,
  })
  .strict();

const tableSchema = z
  .object({
    name: z.string().min(1),
    tableId: safeInt,
    columns: z.array(
      z
        .object({
          name: z.string().min(1),
          type: z.enum(['string', 'int64', 'float64', 'bool', 'timestamp_ms']),
          semantic: z.enum(['tag', 'field', 'timestamp']),
        })
        .strict(),
    ),
    regionCount: z.number().int().positive(),
    regions: z.array(regionSchema),
  })
  .strict();

const sourceSchema = z
  .object({
    /** Metasrv address the catalog was read from (a metasrv group: its addresses, comma-separated). */
    metasrv: z.string(),
    /** The cluster's object store (description). */
    objectStore: z.string(),
    /** Cluster id when the operator gave it (`--cluster-id`); the metasrv does not publish it. */
    clusterId: z.string().nullable(),
  })
  .strict();

/** A consistent backup's point (docs/backup.md): one barrier cut every region at its freeze. */
const pointSchema = z
  .object({
    /** The barrier whose freezes are the regions' points (each region's flushedIndex). */
    barrierId: z.string().min(1),
    /** Wall ms by which every region's client writes were held: the cut lies between it and the freezes. */
    heldAtMs: safeInt,
    /** The longest any region's client writes were paused by the barrier (ms). */
    pauseMsMax: safeInt,
    /** Client writes that waited for the barrier, all regions. */
    writesHeld: safeInt,
    /** Barrier attempts it took (a moved leader or an expired hold abandons one). */
    attempts: z.number().int().positive(),
  })
  .strict();

const manifestBodySchema = z
  .object({
    id: z.string().regex(BACKUP_ID),
    kind: z.enum(['full', 'incremental']),
    baseId: z.string().regex(BACKUP_ID).nullable(),
    source: sourceSchema,
    createdAtMs: safeInt,
    completedAtMs: safeInt,
    tables: z.array(tableSchema),
    files: z.array(fileSchema),
    /** What this backup itself stored (files whose backupId is this one). */
    storedFiles: safeInt,
    storedBytes: safeInt,
    /** Set for a consistent backup (--consistent): every region at one cluster-consistent point. */
    point: pointSchema.nullable().optional(),
  })
  .strict();

const journalBodySchema = z
  .object({
    id: z.string().regex(BACKUP_ID),
    baseId: z.string().regex(BACKUP_ID).nullable(),
    source: sourceSchema,
    createdAtMs: safeInt,
    /** The plan: per region, the manifest chosen as its consistent point. */
    tables: z.array(tableSchema),
    /** Objects already copied into this backup, with what they hashed to. */
    done: z.record(z.string(), z.object({ sizeBytes: safeInt, sha256: sha256Hex }).strict()),
    /** A consistent backup's point: its plan must not be re-planned region by region. */
    point: pointSchema.nullable().optional(),
  })
  .strict();

export type BackupFile = z.infer<typeof fileSchema>;
export type BackupRegion = z.infer<typeof regionSchema>;
export type BackupTable = z.infer<typeof tableSchema>;
export type BackupSource = z.infer<typeof sourceSchema>;
export type BackupManifest = z.infer<typeof manifestBodySchema>;
export type BackupJournal = z.infer<typeof journalBodySchema>;
export type BackupPoint = z.infer<typeof pointSchema>;

function encodeEnvelope(format: string, body: unknown): Uint8Array {
  const bodyJson = JSON.stringify(body);
  const envelope = { format, formatVersion: BACKUP_FORMAT_VERSION, crc32c: crc32c(new TextEncoder().encode(bodyJson)), body };
  return new TextEncoder().encode(`${JSON.stringify(envelope, null, 1)}\n`);
}

function decodeEnvelope<T>(format: string, schema: z.ZodType<T>, bytes: Uint8Array, name: string): T {
  const bad = (why: string) => new RegionDbError(ErrorCode.Corruption, `${name} is damaged: ${why}`);
  let envelope: unknown;
  try {
    envelope = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw bad(`not valid JSON (${(err as Error).message})`);
  }
  const head = z.object({ format: z.literal(format), formatVersion: z.number(), crc32c: z.number(), body: z.unknown() }).safeParse(envelope);
  if (!head.success) throw bad(`not a ${format} record`);
  if (head.data.formatVersion !== BACKUP_FORMAT_VERSION) throw bad(`unsupported format version ${head.data.formatVersion} (this build reads ${BACKUP_FORMAT_VERSION})`);
  const computed = crc32c(new TextEncoder().encode(JSON.stringify(head.data.body)));
  if (computed !== head.data.crc32c) throw bad(`crc32c mismatch (stored 0x${head.data.crc32c.toString(16)}, computed 0x${computed.toString(16)})`);
  const body = schema.safeParse(head.data.body);
  if (!body.success) throw bad(`invalid field ${body.error.issues[0]?.path.join('.') ?? '?'}: ${body.error.issues[0]?.message ?? ''}`);
  return body.data;
}

export function encodeBackupManifest(m: BackupManifest): Uint8Array {
  checkManifestInvariants(m, `backup ${m.id}`);
  return encodeEnvelope(MANIFEST_FORMAT, m);
}

export function decodeBackupManifest(bytes: Uint8Array, name: string): BackupManifest {
  const m = decodeEnvelope(MANIFEST_FORMAT, manifestBodySchema, bytes, name);
  checkManifestInvariants(m, name);
  return m;
}

export function encodeBackupJournal(j: BackupJournal): Uint8Array {
  return encodeEnvelope(JOURNAL_FORMAT, j);
}

export function decodeBackupJournal(bytes: Uint8Array, name: string): BackupJournal {
  return decodeEnvelope(JOURNAL_FORMAT, journalBodySchema, bytes, name);
}

/** The invariants in the header comment; a violation is a damaged (or hand-edited) manifest. */
function checkManifestInvariants(m: BackupManifest, name: string): void {
  const bad = (why: string) => new RegionDbError(ErrorCode.Corruption, `${name} is inconsistent: ${why}`);
  if ((m.kind === 'full') !== (m.baseId === null)) throw bad(`kind ${m.kind} with base ${m.baseId ?? 'none'}`);
  if (m.baseId === m.id) throw bad('a backup cannot be its own base');
  const files = new Map<string, BackupFile>();
  for (const f of m.files) {
    if (files.has(f.key)) throw bad(`file ${f.key} is listed twice`);
    if (m.kind === 'full' && f.backupId !== m.id) throw bad(`full backup lists ${f.key} in another backup (${f.backupId})`);
    files.set(f.key, f);
  }
  const tableNames = new Set<string>();
  for (const t of m.tables) {
    if (tableNames.has(t.name)) throw bad(`table ${t.name} is listed twice`);
    tableNames.add(t.name);
    const listed = new Set<number>();
    for (const r of t.regions) {
      if (r.regionNumber >= t.regionCount) throw bad(`table ${t.name} has ${t.regionCount} regions but lists region ${r.regionNumber} (id ${r.regionId})`);
      if (listed.has(r.regionNumber)) throw bad(`table ${t.name} lists region ${r.regionNumber} twice`);
      listed.add(r.regionNumber);
      const id = makeRegionId(t.tableId, r.regionNumber);
      if (r.regionId !== id) throw bad(`table ${t.name} lists region ${r.regionNumber} with id ${r.regionId}, but region ${r.regionNumber} of table id ${t.tableId} is ${id}`);
    }
    if (listed.size !== t.regionCount) {
      const missing = Array.from({ length: t.regionCount }, (_, n) => n).filter((n) => !listed.has(n));
      throw bad(`table ${t.name} has ${t.regionCount} regions but does not list region${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (a restore would start ${missing.length > 1 ? 'them' : 'it'} empty)`);
    }
    for (const r of t.regions) {
      for (const key of [...(r.manifestKey ? [r.manifestKey] : []), ...r.sstKeys]) {
        if (!files.has(key)) throw bad(`region ${r.regionId} of table ${t.name} names ${key}, which is not in the file list`);
      }
    }
  }
}
