export type { LogBatch, LogEngine } from './log-engine.js';
export { type RegionDamage, RegionLog, Wal, WalBatch, WalFatalError, type WalStats } from './wal.js';
