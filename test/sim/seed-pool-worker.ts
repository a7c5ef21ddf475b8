// The worker side of test/sim/seed-pool.ts: runs one whole-datanode simulator seed per message
// and answers with its result, or with the violation it found (fields only: an Error's class does
// not cross threads). Each seed builds its own ClusterSim, so a seed traces the same here as in
// the test's own thread (seed-pool.test.ts compares the two).
import { parentPort } from 'node:worker_threads';
import { type ClusterSimOptions, ClusterSimViolation, runClusterSim } from './cluster-sim.js';

export interface SeedTask {
  readonly id: number;
  readonly seed: number;
  readonly options: Partial<ClusterSimOptions>;
}

export type SeedAnswer =
  | { readonly id: number; readonly result: Awaited<ReturnType<typeof runClusterSim>> }
  | { readonly id: number; readonly violation: { seed: number; invariant: string; message: string; traceTail: readonly string[] } }
  | { readonly id: number; readonly error: string };

const port = parentPort;
if (!port) throw new Error('seed-pool-worker.ts runs only as a worker thread (test/sim/seed-pool.ts)');
port.on('message', (task: SeedTask) => {
  runClusterSim(task.seed, task.options).then(
    (result) => port.postMessage({ id: task.id, result } satisfies SeedAnswer),
    (err: unknown) => {
      const answer: SeedAnswer =
        err instanceof ClusterSimViolation
          ? { id: task.id, violation: { seed: err.seed, invariant: err.invariant, message: err.message, traceTail: err.traceTail } }
          : { id: task.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
      port.postMessage(answer);
    },
  );
});
