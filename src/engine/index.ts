export * from './command.js';
export * from './compaction.js';
export * from './flush.js';
export * from './key.js';
export { type MemEntry, Memtable } from './memtable.js';
export * from './region-state.js';
export * from './schema.js';
export { ROWS_PER_YIELD } from './yield.js';
