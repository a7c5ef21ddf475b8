// Runs the ObjectStore conformance suite on CachedObjectStore, which wraps every production store
// (src/datanode/sst-readers.ts): a cache big enough to keep every object the suite reads, and one
// so small that most objects pass through uncached and the rest evict each other.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CachedObjectStore } from '../../src/object-store/cached-store.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { objectStoreConformance } from './object-store-suite.js';

for (const [label, maxBytes] of [
  ['cached fs (8 MiB cache)', 8 * 1024 * 1024],
  ['cached fs (64-byte cache)', 64],
] as const) {
  objectStoreConformance(label, async () => {
    const root = await mkdtemp(join(tmpdir(), 'regiondb-objstore-cached-'));
    return { store: new CachedObjectStore(new FsObjectStore(join(root, 'objects')), maxBytes), cleanup: () => rm(root, { recursive: true, force: true }) };
  });
}
