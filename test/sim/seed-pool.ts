// The simulators' seed loops on every core. A simulator seed (the whole-datanode simulator's or
// the raft core's) is pure CPU in one thread and independent of every other seed (each builds its
// own simulation from its seed), so a
// loop over seeds can hand them to worker threads and take the results back in seed order: the
// same runs, the same checks, the same trace hashes, in less wall time on a machine with an idle
// core (`make test` runs one test at a time, so the second core of a 2-core CI machine sits idle
// through the simulator's minute and a half). Nothing about a seed changes: the worker calls
// runClusterSim(seed, options) exactly as the loop did, and seed-pool.test.ts checks that
// results and violations come back identical to a run in the test's own thread.
//
// SIM_WORKERS=n sets the number of workers (default: the machine's parallelism, at most 4);
// SIM_WORKERS=1 runs every seed in the calling thread, as before. Only structured-cloneable
// options travel (plain data: modes, faults, planted-bug names); a caller with anything else
// (a planted core class, a callback) keeps its own loop.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type ClusterSimOptions, type ClusterSimResult, ClusterSimViolation, runClusterSim } from './cluster-sim.js';
import type { SeedAnswer, SeedTask, ViolationFields } from './seed-pool-worker.js';
import { type SimOptions, type SimResult, SimulationViolation, runSeed } from './simulator.js';

/** A task before the pool numbers it. */
type Task = SeedTask extends infer T ? (T extends SeedTask ? Omit<T, 'id'> : never) : never;

const WORKERS_MAX = 4;

/** Workers for the seed loops: SIM_WORKERS, else the machine's parallelism (at most WORKERS_MAX). */
export function seedWorkers(): number {
  const given = process.env['SIM_WORKERS'];
  if (given !== undefined && given !== '') {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 1) throw new Error(`SIM_WORKERS must be a positive integer, got ${given}`);
    return n;
  }
  return Math.min(WORKERS_MAX, availableParallelism());
}

interface Pending {
  resolve(answer: SeedAnswer): void;
}

/**
 * A few worker threads, started on first use and kept for the rest of the file's tests (loading
 * the simulator's modules costs each worker about a second). They hold the process open only
 * while a seed runs: idle workers are unref'd, so mocha exits when the tests are done.
 */
class SeedPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: SeedTask[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly busy = new Map<Worker, number>();
  private nextId = 1;

  constructor(private readonly size: number) {}

  run(t: Task): Promise<SeedAnswer> {
    const task = { ...t, id: this.nextId++ } as SeedTask;
    return new Promise<SeedAnswer>((resolve) => {
      this.pending.set(task.id, { resolve });
      this.queue.push(task);
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.idle.pop() ?? this.spawn();
      if (!worker) return;
      const task = this.queue.shift()!;
      this.busy.set(worker, task.id);
      worker.ref();
      worker.postMessage(task);
    }
  }

  private spawn(): Worker | undefined {
    if (this.workers.length >= this.size) return undefined;
    // seed-pool-worker.mjs registers tsx and loads seed-pool-worker.ts.
    const worker = new Worker(new URL('./seed-pool-worker.mjs', import.meta.url), { execArgv: [] });
    this.workers.push(worker);
    worker.on('message', (answer: SeedAnswer) => {
      this.busy.delete(worker);
      worker.unref();
      this.idle.push(worker);
      const p = this.pending.get(answer.id);
      this.pending.delete(answer.id);
      p?.resolve(answer);
      this.dispatch();
    });
    worker.on('error', (err) => this.lose(worker, err.stack ?? String(err)));
    worker.on('exit', (code) => this.lose(worker, `seed-pool worker exited (code ${code})`));
    return worker;
  }

  /** A worker that died fails the seed it was running; the pool starts another for the rest. */
  private lose(worker: Worker, why: string): void {
    const i = this.workers.indexOf(worker);
    if (i < 0) return;
    this.workers.splice(i, 1);
    const j = this.idle.indexOf(worker);
    if (j >= 0) this.idle.splice(j, 1);
    const id = this.busy.get(worker);
    this.busy.delete(worker);
    if (id !== undefined) {
      const p = this.pending.get(id);
      this.pending.delete(id);
      p?.resolve({ id, error: why });
    }
    this.dispatch();
  }
}

const pools = new Map<number, SeedPool>();
/** Seeds a worker thread has run (seed-pool.test.ts checks the workers did the work). */
export let seedsRunInWorkers = 0;

/** The violation a worker reported, as the ClusterSimViolation or SimulationViolation a run in this thread throws (same message). */
function violationOf(kind: Task['kind'], v: ViolationFields): Error {
  const err = kind === 'cluster' ? new ClusterSimViolation(v.seed, v.invariant, '', v.traceTail) : new SimulationViolation(v.seed, v.invariant, '');
  err.message = v.message;
  err.stack = `${err.name}: ${v.message}\n    (found by a seed-pool worker thread: test/sim/seed-pool.ts; the replay above runs it in one thread)`;
  return err;
}

/**
 * runClusterSim for each of `seeds` with `options`, spread over the pool's workers; the results in
 * the order of `seeds`, each handed to `each` in that order as soon as it and every earlier seed
 * are in. A seed that fails makes this throw what the loop in one thread threw for the first
 * failing seed (a ClusterSimViolation with the same message, seed and replay command), once the
 * seeds already started have ended; no seed after it is started.
 */
export function runSeeds(
  seeds: readonly number[],
  options: Partial<ClusterSimOptions> = {},
  each: (r: ClusterSimResult) => void = () => {},
  workers = seedWorkers(),
): Promise<ClusterSimResult[]> {
  return runTasks(
    seeds.map((seed) => ({ seed, options })),
    each,
    workers,
  );
}

/** As runSeeds, for runs that differ in their options too (a seed and its replay with a switch). */
export function runTasks(
  tasks: readonly { seed: number; options: Partial<ClusterSimOptions> }[],
  each: (r: ClusterSimResult) => void = () => {},
  workers = seedWorkers(),
): Promise<ClusterSimResult[]> {
  return runInOrder(
    tasks.map((t) => ({ kind: 'cluster', ...t })),
    each,
    workers,
  );
}

/**
 * The raft-core simulator's runSeed for each of `runs` (full SimOptions, seed included), as
 * runSeeds does for the whole-datanode simulator: results in order, the first failing run's
 * SimulationViolation (same message and replay) thrown, none started after it.
 */
export function runRaftSeeds(runs: readonly SimOptions[], each: (r: SimResult) => void = () => {}, workers = seedWorkers()): Promise<SimResult[]> {
  return runInOrder(
    runs.map((options) => ({ kind: 'raft', seed: options.seed, options })),
    each,
    workers,
  );
}

/** A seed whose run threw something other than a violation (a simulator crash), in a worker or not. */
export class SeedCrash extends Error {
  override name = 'SeedCrash';
  constructor(
    readonly seed: number,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`seed ${seed} crashed the simulator: ${detail}`, options);
  }
}

async function runInOrder<R>(tasks: readonly Task[], each: (r: R) => void, workers: number): Promise<R[]> {
  const out: R[] = [];
  if (workers <= 1) {
    for (const t of tasks) {
      let r: R;
      try {
        r = (t.kind === 'cluster' ? await runClusterSim(t.seed, t.options) : runSeed(t.options)) as R;
      } catch (err) {
        if (err instanceof ClusterSimViolation || err instanceof SimulationViolation) throw err;
        throw new SeedCrash(t.seed, String(err), { cause: err });
      }
      each(r);
      out.push(r);
    }
    return out;
  }
  const p = pools.get(workers) ?? new SeedPool(workers);
  pools.set(workers, p);
  const answers: (SeedAnswer | undefined)[] = new Array(tasks.length).fill(undefined);
  let failedAt = Number.POSITIVE_INFINITY;
  let next = 0;
  let delivered = 0;
  const deliver = (): void => {
    while (delivered < tasks.length && answers[delivered] !== undefined && delivered < failedAt) {
      const a = answers[delivered]!;
      if ('result' in a) {
        each(a.result as R);
        out.push(a.result as R);
      }
      delivered++;
    }
  };
  // At most `workers` runs in flight, started in order; none after a failed one.
  const lane = async (): Promise<void> => {
    while (next < tasks.length && next < failedAt) {
      const i = next++;
      const a = await p.run(tasks[i]!);
      seedsRunInWorkers++;
      answers[i] = a;
      if (!('result' in a)) failedAt = Math.min(failedAt, i);
      deliver();
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, tasks.length) }, lane));
  if (failedAt < tasks.length) {
    const a = answers[failedAt]!;
    if ('violation' in a) throw violationOf(tasks[failedAt]!.kind, a.violation);
    if ('error' in a) throw new SeedCrash(tasks[failedAt]!.seed, `(in a seed-pool worker) ${a.error}`);
  }
  return out;
}

/** Seeds from..to (inclusive). */
export const seedRange = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
