// make jepsen RUNS=N TIME=S NEMESIS=kill,pause,... SEED=n NODES=3 NET=proxy|netns METASRVS=1|3|5
// BALANCE_MS=n (NET=proxy: the metasrv checks leader placement every n ms, moving leaders while the nemesis acts)
// LEASE_READS=1: every datanode serves linearizable reads from its leader lease (raft.read_only = "lease")
// Runs N independent Jepsen-style runs (seeds SEED, SEED+1, ...), prints one line per run and a
// summary: validity, lost acknowledged writes (RPO), RTO p50/p99/max over every injected fault.
// Exit status 1 if any run is invalid, 2 on bad arguments.
import { netnsUnavailableReason } from '../support/netns.js';
import { NETNS_UNSUPPORTED, NET_MODES, type NetMode } from './network.js';
import { FAULTS, type Fault, METASRV_GROUP_FAULTS } from './nemesis.js';
import { type RunReport, runJepsen } from './run.js';

function fail(message: string): never {
  process.stderr.write(`make jepsen: ${message}\n`);
  process.exit(2);
}

function intEnv(name: string, dflt: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) fail(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
  return v;
}

const runs = intEnv('RUNS', 1, 1);
const timeSec = intEnv('TIME', 60, 10);
const nodes = intEnv('NODES', 3, 3);
const seed0 = intEnv('SEED', Math.floor(Math.random() * 1_000_000), 0);
const net = (process.env['NET'] || 'proxy') as NetMode;
const tls = process.env['TLS'] === '1';
const leaseReads = process.env['LEASE_READS'] === '1';
const balanceEveryMs = process.env['BALANCE_MS'] ? intEnv('BALANCE_MS', 0, 1) : undefined;
/** What a replay line repeats besides the seed and the nemesis. */
const replayEnv = `${leaseReads ? 'LEASE_READS=1 ' : ''}${balanceEveryMs !== undefined ? `BALANCE_MS=${balanceEveryMs} ` : ''}`;
if (balanceEveryMs !== undefined && net !== 'proxy') fail('BALANCE_MS needs NET=proxy');
if (tls && net !== 'netns') fail('TLS=1 needs NET=netns');
if (!NET_MODES.includes(net)) fail(`NET must be one of ${NET_MODES.join(', ')}, got ${JSON.stringify(process.env['NET'])}`);
if (net === 'netns') {
  const why = netnsUnavailableReason();
  if (why) fail(`NET=netns: ${why}; NET=proxy (the default) needs no root`);
  // Ctrl-C or kill: exit through process.exit so the namespaces are removed now (a kill -9 leaves
  // them to the next run, which reaps runs whose creator is gone).
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
}
// METASRVS=3 (or 5): a metasrv group (docs/metasrv-ha.md), NET=proxy only. The metasrv-group
// nemeses imply METASRVS=3 and refuse METASRVS=1; with a group, the default nemesis adds them.
const metasrvsRaw = process.env['METASRVS'];
const metasrvsGiven = metasrvsRaw !== undefined && metasrvsRaw !== '';
const requestedFaults = (process.env['NEMESIS'] || '').split(',').map((f) => f.trim()).filter((f) => f !== '');
const metasrvs = intEnv('METASRVS', requestedFaults.some((f) => METASRV_GROUP_FAULTS.includes(f as Fault)) ? 3 : 1, 1);
if (![1, 3, 5].includes(metasrvs)) fail(`METASRVS must be 1, 3 or 5, got ${metasrvs}`);
if (metasrvs > 1 && net === 'netns') fail('METASRVS > 1 needs NET=proxy (the netns cluster has one metasrv host)');
const defaultNemesis = [
  ...['kill', 'kill-leader', 'pause', 'partition', 'partition-one-way', 'bridge', 'slow'].filter((f) => net !== 'netns' || !NETNS_UNSUPPORTED[f]),
  ...(metasrvs > 1 ? METASRV_GROUP_FAULTS : []),
];
const nemesisArg = requestedFaults.length > 0 ? requestedFaults.join(',') : defaultNemesis.join(',');
const faults = nemesisArg.split(',') as Fault[];
for (const f of faults) if (!FAULTS.includes(f)) fail(`unknown nemesis ${JSON.stringify(f)}; choose from ${FAULTS.join(', ')}`);
const needGroup = faults.filter((f) => METASRV_GROUP_FAULTS.includes(f));
if (needGroup.length > 0 && metasrvs < 3) fail(`${needGroup.join(', ')} ${needGroup.length === 1 ? 'needs' : 'need'} a metasrv group: METASRVS=3 (or leave METASRVS unset), not ${metasrvsRaw}`);
if (metasrvsGiven && metasrvs > 1 && needGroup.length === 0 && requestedFaults.length > 0) {
  process.stdout.write(`METASRVS=${metasrvs}: a metasrv group under ${nemesisArg} (add metasrv-kill-leader,metasrv-partition to fault it)\n`);
}
if (net === 'netns') {
  for (const f of faults) if (NETNS_UNSUPPORTED[f]) fail(`NET=netns cannot inject ${f}: ${NETNS_UNSUPPORTED[f]}`);
  if (!process.env['NEMESIS']) process.stdout.write(`NET=netns: slow left out of the default nemesis (${NETNS_UNSUPPORTED['slow']})\n`);
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);

process.stdout.write(`jepsen (net ${net}${tls ? ', TLS' : ''}): ${runs} run(s) × ${timeSec} s, ${metasrvs > 1 ? `${metasrvs} metasrvs (group), ` : ''}${nodes} datanodes, nemesis ${faults.join(',')}, seeds ${seed0}..${seed0 + runs - 1}\n`);
const reports: RunReport[] = [];
for (let i = 0; i < runs; i++) {
  const seed = seed0 + i;
  try {
    const r = await runJepsen({ seed, timeSec, datanodes: nodes, metasrvs, faults, net, tls, ...(balanceEveryMs !== undefined ? { balanceEveryMs } : {}), ...(leaseReads ? { leaseReads } : {}), log: (l) => process.stdout.write(`${l}\n`) });
    reports.push(r);
    const rtos = r.faults.map((f) => (f.rtoMs == null ? 'none' : `${f.rtoMs}`)).join(' ');
    process.stdout.write(
      `run ${i + 1}/${runs} seed ${seed}: ${r.valid === true ? 'valid' : r.valid === false ? 'INVALID' : 'unknown'}, lost ${r.rpo}, ${r.faults.length} faults, RTO ms [${rtos}] → ${r.dir}\n`,
    );
    if (r.notConverged) process.stdout.write(`  not converged after healing: ${r.notConverged}\n`);
    for (const failed of r.failedFinalReads) process.stdout.write(`  final read failed: ${failed}\n`);
  } catch (err) {
    process.stdout.write(`run ${i + 1}/${runs} seed ${seed}: harness error: ${(err as Error).stack}\n  replay: ${replayEnv}SEED=${seed} RUNS=1 TIME=${timeSec} NEMESIS=${nemesisArg} NET=${net} METASRVS=${metasrvs} make jepsen\n`);
    process.exitCode = 1;
  }
}
const allRto = reports
  .flatMap((r) => r.faults.map((f) => f.rtoMs))
  .filter((v): v is number => typeof v === 'number')
  .sort((a, b) => a - b);
const ddl = reports.flatMap((r) => r.faults.filter((f) => f.ddlMs !== undefined).map((f) => f.ddlMs));
const ddlServed = ddl.filter((v): v is number => typeof v === 'number').sort((a, b) => a - b);
const unrecovered = reports.flatMap((r) => r.faults).filter((f) => f.rtoMs == null).length;
const invalid = reports.filter((r) => r.valid === false);
const unknown = reports.filter((r) => r.valid === 'unknown');
process.stdout.write(
  [
    '',
    `summary (net ${net}${tls ? ", TLS" : ""})`,
    `  runs: ${reports.length} completed, ${invalid.length} invalid, ${unknown.length} unknown`,
    `  lost acknowledged writes (RPO): ${reports.reduce((s, r) => s + r.rpo, 0)}`,
    `  faults: ${allRto.length + unrecovered} (${unrecovered} without a full write recovery inside the run)`,
    `  RTO ms: p50 ${percentile(allRto, 50)}  p99 ${percentile(allRto, 99)}  max ${allRto.at(-1) ?? 'n/a'}`,
    ...(ddl.length > 0
      ? [`  metasrv faults: ${ddl.length}, DDL served again after ms: p50 ${percentile(ddlServed, 50)}  p99 ${percentile(ddlServed, 99)}  max ${ddlServed.at(-1) ?? 'n/a'} (${ddl.length - ddlServed.length} not before the heal)`]
      : []),
    ...invalid.map((r) => `  INVALID seed ${r.seed}: ${r.dir}/results.json — replay: ${replayEnv}SEED=${r.seed} RUNS=1 TIME=${timeSec} NEMESIS=${nemesisArg} NET=${net} METASRVS=${metasrvs} make jepsen`),
    '',
  ].join('\n'),
);
if (invalid.length > 0) process.exitCode = 1;
