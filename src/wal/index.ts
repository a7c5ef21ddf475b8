export { type RegionDamage, RegionLog, Wal, WalBatch, WalFatalError, type WalStats } from './wal.js';
