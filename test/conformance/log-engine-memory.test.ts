import { MemoryLogEngine } from '../fixtures/memory-log-engine.js';
import { describeLogEngineConformance } from './log-engine-suite.js';

describeLogEngineConformance('in-memory (test/fixtures/memory-log-engine.ts)', {
  open: async () => new MemoryLogEngine(),
  close: async () => {},
});
