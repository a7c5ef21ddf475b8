// The start-up clock of the integration harness (test/support/start-timer.ts, flake c in
// docs/correctness.md): time a process spends waiting for a CPU is not counted against its
// 30 s start bound; time it runs, sleeps or is stopped is.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect } from 'chai';
import { UnstarvedTimer, runQueueWaitMs } from '../support/start-timer.js';

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
const BUSY = 'const e = Date.now() + 20000; while (Date.now() < e) {}';

describe('test harness: the start-up clock leaves out time spent waiting for a CPU', function () {
  this.timeout(30_000);
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it('a process kept off the CPU (niced 19, pinned beside a busy one): most of the wall time is not counted', async function () {
    if (runQueueWaitMs(process.pid) === undefined || !existsSync('/usr/bin/taskset')) this.skip(); // no schedstat: the timer is wall time
    const competitor = spawn('taskset', ['-c', '0', process.execPath, '-e', BUSY], { stdio: 'ignore' });
    children.push(competitor);
    await sleep(200); // the competitor is running before the starved process starts
    const starved = spawn('taskset', ['-c', '0', 'nice', '-n', '19', process.execPath, '-e', BUSY], { stdio: 'ignore' });
    children.push(starved);
    // The timer watches the starved process only (and this test process, which it always does).
    const timer = new UnstarvedTimer(() => [starved.pid]);
    const startedMs = Date.now();
    await sleep(2000);
    const wallMs = Date.now() - startedMs;
    const counted = timer.elapsedMs();
    // Nice 19 beside nice 0 on one CPU gets about 1.5 % of it; the rest is run-queue wait.
    expect(counted, `${timer.describe()}`).to.be.below(wallMs / 2);
    expect(counted).to.be.at.least(0);
  });

  it('a stopped process, or one that sleeps, is not waiting for a CPU: its time counts in full', () => {
    // Readings and the wall clock injected: a process whose run-queue wait does not grow (stopped, asleep, blocked).
    let now = 0;
    const clock = () => now;
    const waits = new Map<number, number>([[process.pid, 5], [101, 7]]);
    const timer = new UnstarvedTimer(() => [101], 60_000, (pid) => waits.get(pid), clock);
    now = 10_000;
    expect(timer.elapsedMs()).to.equal(10_000 - 0); // nothing waited since construction
    waits.set(101, 7 + 4_000); // 4 s runnable, waiting
    now = 20_000;
    expect(timer.elapsedMs()).to.equal(16_000);
    waits.set(process.pid, 5 + 6_000); // the harness itself starved longer: the largest wait counts
    expect(timer.elapsedMs()).to.equal(14_000);
    waits.delete(101); // the process exited: its last reading stands
    now = 25_000;
    expect(timer.elapsedMs()).to.equal(19_000);
    waits.set(202, 3_000); // a process first seen after the timer started: all its wait is since
    const later = new UnstarvedTimer(() => [202], 60_000, (pid) => (pid === 202 && now > 25_000 ? waits.get(pid) : pid === process.pid ? 0 : undefined), clock);
    now = 30_000;
    expect(later.elapsedMs()).to.equal(5_000 - 3_000);
    now = 60_000 + 25_000;
    expect(later.elapsedMs(), 'the wall-time backstop').to.equal(Number.POSITIVE_INFINITY);
    expect(timer.elapsedMs()).to.equal(Number.POSITIVE_INFINITY);
  });
});
