// The clock of LocalCluster's start-up bounds (flake c, docs/correctness.md "Flaky tests"): a
// process must become healthy, and the metasrv count the datanodes alive, within 30 s — of the
// time those processes could run, not of wall time. On a loaded 2-core machine (load 20-40, or a
// test run under `nice` beside busy processes) a process spends most of its wall time runnable
// but waiting for a CPU: measured here, a nice-10 busy loop beside two nice-0 ones ran 218 ms of
// CPU in 5.07 s of wall time and waited 4.76 s in the run queue. A start that needs a few seconds
// of CPU then overran 30 s of wall time with its log still empty. The bound is about a start that
// hangs or crashes, not about how fast the machine is, so the time a process was kept off the
// CPU is not counted.
//
// Linux keeps, per thread, the time it waited in the run queue (/proc/<pid>/schedstat, second
// field, nanoseconds; for <pid> the main thread, where a Node process's start-up work runs). The
// timer counts wall time minus the largest such wait among the processes it watches, this test
// process included (a starved harness polls late too). A process that sleeps, blocks on I/O or is
// stopped (SIGSTOP) is not in the run queue: that time counts, so a start that hangs still fails
// within 30 s of its own time. Where schedstat cannot be read, nothing is subtracted (wall time,
// as before). A wall-time backstop (WALL_BACKSTOP_MS) keeps the wait bounded whatever the load.
import { readFileSync } from 'node:fs';
import type { StartTimer } from '../../src/cmd/process-cluster.js';

/** Beyond this much wall time a start is over whatever its processes waited for a CPU. */
export const WALL_BACKSTOP_MS = 300_000;

/** Milliseconds the main thread of `pid` has waited runnable for a CPU; undefined where unreadable. */
export function runQueueWaitMs(pid: number): number | undefined {
  try {
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/)[1]);
    return Number.isFinite(ns) ? ns / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

/** Wall time since construction minus the longest run-queue wait since then of the watched processes. */
export class UnstarvedTimer implements StartTimer {
  private readonly startedMs: number;
  /** Each process's run-queue wait when first seen: at construction, or 0 for one started later. */
  private readonly base = new Map<number, number>();
  private starvedMs = 0;

  constructor(
    private readonly pids: () => readonly (number | undefined)[],
    private readonly wallBackstopMs = WALL_BACKSTOP_MS,
    private readonly readWaitMs: (pid: number) => number | undefined = runQueueWaitMs,
    private readonly now: () => number = Date.now,
  ) {
    this.startedMs = this.now();
    for (const pid of this.watched()) {
      const waited = this.readWaitMs(pid);
      if (waited !== undefined) this.base.set(pid, waited);
    }
  }

  elapsedMs(): number {
    const wallMs = this.now() - this.startedMs;
    if (wallMs >= this.wallBackstopMs) return Number.POSITIVE_INFINITY;
    for (const pid of this.watched()) {
      const waited = this.readWaitMs(pid);
      if (waited === undefined) continue; // exited: its last reading stands
      if (!this.base.has(pid)) this.base.set(pid, 0); // started after the timer: all its wait is since
      this.starvedMs = Math.max(this.starvedMs, waited - this.base.get(pid)!);
    }
    return Math.max(0, wallMs - this.starvedMs);
  }

  describe(): string {
    const wallMs = this.now() - this.startedMs;
    return ` of its own time (${wallMs} ms wall time, of which the processes waited up to ${Math.round(this.starvedMs)} ms for a CPU)`;
  }

  private watched(): number[] {
    return [process.pid, ...this.pids()].filter((pid): pid is number => pid !== undefined);
  }
}
