// The closed-loop load driver of make bench: N clients each run one operation after another
// for a warm-up period (not recorded) and then a fixed measured window. Latencies go into an
// HDR histogram in microseconds; throughput counts operations that completed inside the window.
import * as hdr from 'hdr-histogram-js';

export interface DriverOptions {
  readonly seconds: number;
  readonly warmupSeconds: number;
  /** Cumulative CPU seconds of the system's server processes (sampled at the window's ends). */
  readonly serverCpuSeconds?: () => number;
}

export interface Measurement {
  readonly ops: number;
  readonly errors: number;
  readonly seconds: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  /**
   * CPU (user + system) per operation of the server processes and of this client process, in
   * microseconds: robust on a shared machine, where throughput depends on who else runs.
   */
  readonly serverCpuUsPerOp: number | null;
  readonly clientCpuUsPerOp: number;
  /** The first error message seen, to explain a non-zero error count. */
  readonly firstError?: string;
}

/** Slowest operation the histogram tracks: longer ones are clamped (and show up as the max). */
const LATENCY_US_MAX = 120_000_000;

export function newLatencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });
}

/** Per-client operation: `seq` counts this client's operations from 0. */
export type Operation = (clientIndex: number, seq: number) => Promise<void>;

export async function runClosedLoop(clients: number, op: Operation, options: DriverOptions): Promise<Measurement> {
  const histogram = newLatencyHistogram();
  const nowNs = () => process.hrtime.bigint();
  const start = nowNs();
  const measureFrom = start + BigInt(Math.round(options.warmupSeconds * 1e9));
  const measureUntil = measureFrom + BigInt(Math.round(options.seconds * 1e9));
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;
  // CPU is sampled by timers at the window's ends (the clients never stop to let them run late).
  const cpu = { server: [0, 0], client: [process.cpuUsage(), process.cpuUsage()] as NodeJS.CpuUsage[], sampled: [false, false] };
  const sampleCpu = (end: 0 | 1) => {
    if (cpu.sampled[end]) return;
    cpu.sampled[end] = true;
    cpu.server[end] = options.serverCpuSeconds?.() ?? 0;
    cpu.client[end] = process.cpuUsage();
  };
  const windowTimers = [
    setTimeout(() => sampleCpu(0), options.warmupSeconds * 1000),
    setTimeout(() => sampleCpu(1), (options.warmupSeconds + options.seconds) * 1000),
  ];
  await Promise.all(
    Array.from({ length: clients }, async (_, clientIndex) => {
      for (let seq = 0; ; seq++) {
        const t0 = nowNs();
        if (t0 >= measureUntil) return;
        try {
          await op(clientIndex, seq);
        } catch (err) {
          if (t0 >= measureFrom) errors++;
          firstError ??= (err as Error).message;
          continue;
        }
        const t1 = nowNs();
        if (t0 >= measureFrom) histogram.recordValue(Math.min(LATENCY_US_MAX, Number((t1 - t0) / 1000n)));
        if (t1 >= measureFrom && t1 <= measureUntil) ops++;
      }
    }),
  );
  for (const t of windowTimers) clearTimeout(t);
  // The last operation may finish before a timer runs: sample now (a few ms late at most).
  sampleCpu(0);
  sampleCpu(1);
  const perOpUs = (seconds: number) => (ops > 0 ? Math.round((seconds * 1e6) / ops) : 0);
  const [c0, c1] = cpu.client as [NodeJS.CpuUsage, NodeJS.CpuUsage];
  const measurement: Measurement = {
    ops,
    errors,
    seconds: options.seconds,
    opsPerSec: Math.round(ops / options.seconds),
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    p999Ms: histogram.getValueAtPercentile(99.9) / 1000,
    maxMs: histogram.maxValue / 1000,
    serverCpuUsPerOp: options.serverCpuSeconds ? perOpUs(cpu.server[1]! - cpu.server[0]!) : null,
    clientCpuUsPerOp: perOpUs((c1.user - c0.user + c1.system - c0.system) / 1e6),
    ...(firstError !== undefined ? { firstError } : {}),
  };
  histogram.destroy();
  return measurement;
}
