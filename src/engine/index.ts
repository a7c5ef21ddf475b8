export * from './command.js';
export * from './key.js';
export { type MemEntry, Memtable } from './memtable.js';
export * from './region-state.js';
export * from './schema.js';
