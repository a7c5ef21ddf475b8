// The entry of a seed-pool worker thread (test/sim/seed-pool.ts): Node 20 does not run the test
// process's --import=tsx in a worker, so the worker registers tsx itself and then loads the
// TypeScript worker module.
import { register } from 'tsx/esm/api';

register();
await import('./seed-pool-worker.ts');
