export { RegionLog, Wal, WalBatch, WalFatalError, type WalStats } from './wal.js';
