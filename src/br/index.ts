// Backup and restore (docs/backup.md): full and incremental backups of tables into a directory
// or S3, verification, restore into another cluster, listing and retention.
export { type BackupClusterClient, type BackupOptions, type BackupResult, listClusterTables, runBackup } from './backup.js';
export { ByteRateLimiter, sha256Hex } from './copy.js';
export * from './format.js';
export { isS3Location, openLocation, type S3Settings, splitBackupLocation } from './location.js';
export { consoleProgress, mib, type ProgressReporter, silentProgress } from './progress.js';
export { type BackupListing, deleteBackup, latestBackup, listBackups, loadBackupManifest, type PrunePlan, planPrune } from './repository.js';
export { type RestoreClusterClient, type RestoredRegion, type RestoreOptions, type RestoreResult, runRestore } from './restore.js';
export { type VerifyOptions, type VerifyReport, verifyBackup } from './verify.js';
