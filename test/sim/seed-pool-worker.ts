// The worker side of test/sim/seed-pool.ts: runs one simulator seed per message — a
// whole-datanode simulator seed (`cluster`) or a raft-core simulator seed (`raft`) — and answers
// with its result, or with the violation it found (fields only: an Error's class does not cross
// threads). Each seed builds its own simulation, so a seed traces the same here as in the test's
// own thread (seed-pool.test.ts compares the two).
import { parentPort } from 'node:worker_threads';
import { type ClusterSimOptions, type ClusterSimResult, ClusterSimViolation, runClusterSim } from './cluster-sim.js';
import { type SimOptions, type SimResult, SimulationViolation, runSeed } from './simulator.js';

export type SeedTask =
  | { readonly id: number; readonly kind: 'cluster'; readonly seed: number; readonly options: Partial<ClusterSimOptions> }
  | { readonly id: number; readonly kind: 'raft'; readonly seed: number; readonly options: SimOptions };

export interface ViolationFields {
  readonly seed: number;
  readonly invariant: string;
  readonly message: string;
  readonly traceTail: readonly string[];
}

export type SeedAnswer =
  | { readonly id: number; readonly result: ClusterSimResult | SimResult }
  | { readonly id: number; readonly violation: ViolationFields }
  | { readonly id: number; readonly error: string };

async function run(task: SeedTask): Promise<ClusterSimResult | SimResult> {
  return task.kind === 'cluster' ? runClusterSim(task.seed, task.options) : runSeed(task.options);
}

const port = parentPort;
if (!port) throw new Error('seed-pool-worker.ts runs only as a worker thread (test/sim/seed-pool.ts)');
port.on('message', (task: SeedTask) => {
  run(task).then(
    (result) => port.postMessage({ id: task.id, result } satisfies SeedAnswer),
    (err: unknown) => {
      const answer: SeedAnswer =
        err instanceof ClusterSimViolation || err instanceof SimulationViolation
          ? { id: task.id, violation: { seed: err.seed, invariant: err.invariant, message: err.message, traceTail: err instanceof ClusterSimViolation ? err.traceTail : [] } }
          : { id: task.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
      port.postMessage(answer);
    },
  );
});
