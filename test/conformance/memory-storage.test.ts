import { MemoryStorage } from '../../src/raft/storage.js';
import { describeRaftStorageConformance } from './raft-storage-suite.js';

describeRaftStorageConformance('MemoryStorage', {
  open: async () => new MemoryStorage(),
  close: async () => {},
});
