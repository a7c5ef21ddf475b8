// Decomposes a scale-bench kill -9 (bench/scale-bench.ts) into its parts, per region the victim
// led: detection (the kill → the survivor hosting the region's next leader logs the victim as
// down), the first campaign (its first pre-candidate/candidate role change), the election
// (→ the "leader" role change; how many pre-vote and vote rounds it took on either survivor) and
// the client's part (the bench's acknowledged write − the new leader). Reads the results file the
// bench wrote and the datanodes' logs it left in the cluster's directory (JSON lines, pino).
//
//   node --import tsx bench/failover-timeline.ts bench/results/scale-<date>.json [slowest-n]
//
// Times are the loggers' clocks (same machine as the bench's), from the bench's kill time, which
// it takes when it has seen the victim exit: on a loaded machine the signal went out earlier, and
// a survivor can take the victim as down at a slightly negative time. A region whose gap is missing had
// no acknowledged write within the bench's 30 s.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Kill {
  killedAtMs: number;
  victim: string;
  victimGapsMs: Record<string, number | null>;
  /** SCALE_TRACE=1: the prober's trace (bench/scale-bench.ts ClientTrace). */
  traceFile?: string;
}

const [file, slowestArg] = process.argv.slice(2);
if (!file) throw new Error('usage: failover-timeline.ts <scale results json> [slowest-n]');
const slowestN = Number(slowestArg ?? 10);
const results = JSON.parse(readFileSync(file, 'utf8')).results as { kill?: Kill; clusterDir?: string }[];
const run = results.find((r) => r.kill && r.clusterDir);
if (!run?.kill || !run.clusterDir) throw new Error(`${file}: no kill with a cluster directory (bench from before failover-timeline?)`);
const { killedAtMs, victim, victimGapsMs } = run.kill;
const dir = run.clusterDir;

interface Event {
  t: number; // ms after the kill
  node: string;
  role: string;
  term: number;
}
const byRegion = new Map<string, Event[]>();
const downAt = new Map<string, number>(); // survivor → first "taken as down" after the kill
const lateHeartbeats = new Map<string, number[]>();
const victimIds = new Set(Object.keys(victimGapsMs));
for (const name of readdirSync(dir).filter((n) => /^datanode\d+\.log$/.test(n))) {
  const node = name.replace(/\.log$/, '');
  if (node === victim) continue;
  for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
    if (line === '' || line[0] !== '{') continue;
    type LogLine = { time: number; msg: string; regionId?: string; role?: string; term?: number; sinceLastMs?: number };
    let e: LogLine;
    try {
      e = JSON.parse(line) as LogLine;
    } catch {
      continue; // a line another write cut into (a process's last words on stderr)
    }
    const t = e.time - killedAtMs;
    // The bench takes the kill's time once it saw the victim exit (up to hundreds of ms after the
    // signal on a loaded machine): a survivor may take the victim as down a little "before" it.
    if (t < -5_000 || t > 60_000) continue;
    if ((e.msg === 'peer datanode is silent: taken as down' || e.msg === 'peer datanode refused a connection: taken as down') && !downAt.has(node)) downAt.set(node, t);
    else if (e.msg === 'heartbeat late (event loop busy?); the metasrv may suspect this node') {
      lateHeartbeats.set(node, [...(lateHeartbeats.get(node) ?? []), e.sinceLastMs ?? 0]);
    } else if (e.msg === 'raft role changed' && e.regionId && victimIds.has(e.regionId)) {
      const list = byRegion.get(e.regionId) ?? [];
      list.push({ t, node, role: e.role ?? '?', term: e.term ?? 0 });
      byRegion.set(e.regionId, list);
    }
  }
}

interface Row {
  region: string;
  gap: number;
  detect: number;
  firstCampaign: number;
  leader: number;
  leaderNode: string;
  preCampaigns: number;
  campaigns: number;
  campaignNodes: number;
}
const rows: Row[] = [];
for (const [region, gap] of Object.entries(victimGapsMs)) {
  const events = (byRegion.get(region) ?? []).sort((a, b) => a.t - b.t);
  const leaderEvent = events.find((e) => e.role === 'leader');
  const campaigns = events.filter((e) => e.role === 'candidate' || e.role === 'pre-candidate');
  const leaderNode = leaderEvent?.node ?? '?';
  rows.push({
    region,
    gap: gap ?? Number.POSITIVE_INFINITY,
    detect: downAt.get(leaderNode) ?? Number.NaN,
    firstCampaign: campaigns[0]?.t ?? Number.NaN,
    leader: leaderEvent?.t ?? Number.POSITIVE_INFINITY,
    leaderNode,
    preCampaigns: events.filter((e) => e.role === 'pre-candidate').length,
    campaigns: events.filter((e) => e.role === 'candidate').length,
    campaignNodes: new Set(campaigns.map((e) => e.node)).size,
  });
}
rows.sort((a, b) => a.gap - b.gap);
const pct = (values: number[], p: number) => {
  const s = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
};
const ms = (v: number) => (Number.isFinite(v) ? `${Math.round(v)}` : String(v));
const summary = (label: string, part: Row[]) => {
  const col = (f: (r: Row) => number) => `${ms(pct(part.map(f), 50))} / ${ms(pct(part.map(f), 100))}`;
  process.stdout.write(
    `${label} (${part.length} regions), p50 / max ms: gap ${col((r) => r.gap)}; detect ${col((r) => r.detect)}; ` +
      `detect→first campaign ${col((r) => r.firstCampaign - r.detect)}; first campaign→leader ${col((r) => r.leader - r.firstCampaign)}; ` +
      `leader→write ack ${col((r) => r.gap - r.leader)}; pre-vote rounds ${col((r) => r.preCampaigns)}; vote rounds ${col((r) => r.campaigns)}; ` +
      `regions where both survivors campaigned: ${part.filter((r) => r.campaignNodes > 1).length}\n`,
  );
};
process.stdout.write(`kill -9 ${victim} at ${new Date(killedAtMs).toISOString()} (${dir}); survivors took it as down after ${[...downAt].map(([n, t]) => `${n} ${t} ms`).join(', ')}\n`);
for (const [node, late] of lateHeartbeats) process.stdout.write(`  ${node}: ${late.length} late heartbeats to the metasrv within 60 s, up to ${Math.max(...late)} ms apart\n`);
const led = rows.filter((r) => Number.isFinite(r.leader));
const acked = rows.filter((r) => Number.isFinite(r.gap));
process.stdout.write(
  `regions with a new leader: ${led.length} of ${rows.length} (kill → leader p50 ${ms(pct(led.map((r) => r.leader), 50))} ms, p90 ${ms(pct(led.map((r) => r.leader), 90))} ms, max ${ms(pct(led.map((r) => r.leader), 100))} ms); ` +
    `with an acknowledged write: ${acked.length}; role changes on the survivors for them: ${[...byRegion.values()].reduce((n, l) => n + l.length, 0)}\n`,
);
summary('all of the victim\'s regions', rows);
summary(`slowest 10%`, rows.slice(Math.floor(rows.length * 0.9)));
process.stdout.write(`slowest ${slowestN}:\n`);
for (const r of rows.slice(rows.length - slowestN)) {
  const events = (byRegion.get(r.region) ?? []).map((e) => `${e.t}:${e.node.replace('datanode', 'd')}:${e.role}@${e.term}`).join(' ');
  process.stdout.write(`  ${r.region} gap ${ms(r.gap)} leader ${ms(r.leader)} on ${r.leaderNode}: ${events}\n`);
}

// ─── The client's part, from the prober's trace (SCALE_TRACE=1) ─────────────────────────────────
// From a region's new leader to its acknowledged write, what the bench's client was doing, as
// intervals cut to [leader, ack]: waiting in the bench's queue for a writer (before its first
// write() call, and between calls), attempts by target (the dead node, the new leader, the other
// survivor) and how they ended, backoff sleeps, route lookups an attempt waited for, and the rest
// (time inside write() covered by none of these: the client's own loop, describe()).
interface TraceEvent {
  kind: 'attempt' | 'backoff' | 'routes' | 'write';
  regionId?: string;
  startMs: number;
  durationMs?: number;
  ms?: number;
  addr?: string;
  code?: string;
  message?: string;
  hint?: string;
}
if (run.kill.traceFile) {
  const trace = JSON.parse(readFileSync(run.kill.traceFile, 'utf8')) as { addrs: Record<string, string>; eventLoopDelayMs: Record<string, number>; events: TraceEvent[] };
  const nodeOf = new Map(Object.entries(trace.addrs).map(([node, addr]) => [addr, node]));
  const perRegion = new Map<string, TraceEvent[]>();
  let backgroundLookups = 0;
  for (const e of trace.events) {
    if (!e.regionId) {
      backgroundLookups++;
      continue;
    }
    const list = perRegion.get(e.regionId) ?? [];
    list.push(e);
    perRegion.set(e.regionId, list);
  }
  const parts = new Map<string, number[]>(); // part → per-region ms within [leader, ack]
  const outcomes = new Map<string, number>(); // "target code" → attempts (whole window)
  const add = (part: string, region: number, v: number) => {
    const list = parts.get(part) ?? [];
    list[region] = (list[region] ?? 0) + v;
    parts.set(part, list);
  };
  const traced = rows.filter((r) => Number.isFinite(r.gap) && Number.isFinite(r.leader));
  traced.forEach((r, i) => {
    const events = perRegion.get(r.region) ?? [];
    const from = r.leader;
    const to = r.gap;
    const cut = (start: number, end: number) => Math.max(0, Math.min(end, to) - Math.max(start, from));
    const writes = events.filter((e) => e.kind === 'write').sort((a, b) => a.startMs - b.startMs);
    let inWrites = 0;
    let queued = cut(Number.NEGATIVE_INFINITY, writes[0]?.startMs ?? to);
    writes.forEach((w, j) => {
      inWrites += cut(w.startMs, w.startMs + (w.durationMs ?? 0));
      const next = writes[j + 1];
      if (next) queued += cut(w.startMs + (w.durationMs ?? 0), next.startMs);
    });
    add('queue', i, queued);
    let covered = 0;
    for (const e of events) {
      if (e.kind === 'attempt') {
        const node = nodeOf.get(e.addr ?? '') ?? e.addr ?? '?';
        const target = node === victim ? 'dead node' : node === r.leaderNode ? 'new leader' : 'other survivor';
        outcomes.set(`${target} ${e.code ?? 'OK'}`, (outcomes.get(`${target} ${e.code ?? 'OK'}`) ?? 0) + 1);
        const v = cut(e.startMs, e.startMs + (e.durationMs ?? 0));
        add(`attempt → ${target}: ${e.code ?? 'OK'}`, i, v);
        covered += v;
      } else if (e.kind === 'backoff') {
        const v = cut(e.startMs, e.startMs + (e.ms ?? 0));
        add('backoff', i, v);
        covered += v;
      } else if (e.kind === 'routes') {
        const v = cut(e.startMs, e.startMs + (e.durationMs ?? 0));
        add('route lookup (inline)', i, v);
        covered += v;
      }
    }
    add('other (in write(), none of the above)', i, Math.max(0, inWrites - covered));
  });
  process.stdout.write(
    `\nthe client's part (leader → write ack), ${traced.length} regions traced; bench process event-loop delay p50 ${trace.eventLoopDelayMs['p50']} ms, p99 ${trace.eventLoopDelayMs['p99']} ms, max ${trace.eventLoopDelayMs['max']} ms; background route lookups ${backgroundLookups}\n`,
  );
  process.stdout.write(`  leader → ack p50 / max ms: ${ms(pct(traced.map((r) => r.gap - r.leader), 50))} / ${ms(pct(traced.map((r) => r.gap - r.leader), 100))}\n`);
  process.stdout.write('  part: regions with any, mean ms per region, p50 / max ms over those regions\n');
  for (const [part, values] of [...parts].sort((a, b) => b[1].reduce((x, y) => x + (y ?? 0), 0) - a[1].reduce((x, y) => x + (y ?? 0), 0))) {
    const some = values.filter((v) => v !== undefined && v > 0) as number[];
    const total = some.reduce((x, y) => x + y, 0);
    process.stdout.write(`  ${part}: ${some.length}, mean ${ms(total / traced.length)}, ${ms(pct(some, 50))} / ${ms(pct(some, 100))}\n`);
  }
  process.stdout.write(`  attempts after the kill by target and result (whole window): ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join('; ')}\n`);
  const messages = new Map<string, number>();
  for (const e of trace.events) if (e.kind === 'attempt' && e.code) messages.set(`${e.code}: ${(e.message ?? '').replace(/\d+/g, 'N').slice(0, 120)}`, (messages.get(`${e.code}: ${(e.message ?? '').replace(/\d+/g, 'N').slice(0, 120)}`) ?? 0) + 1);
  process.stdout.write(`  error messages:\n${[...messages].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([m, n]) => `    ${n} × ${m}`).join('\n')}\n`);
  const slow = traced.slice(-Math.min(3, traced.length));
  for (const r of slow) {
    const events = (perRegion.get(r.region) ?? []).sort((a, b) => a.startMs - b.startMs);
    process.stdout.write(`  ${r.region} (leader ${ms(r.leader)} on ${r.leaderNode}, ack ${ms(r.gap)}):\n`);
    for (const e of events) {
      const node = e.addr ? (nodeOf.get(e.addr) ?? e.addr) : '';
      process.stdout.write(`    ${ms(e.startMs)} +${ms(e.durationMs ?? e.ms ?? 0)} ${e.kind}${node ? ` → ${node}` : ''}${e.code ? ` ${e.code}` : e.kind === 'attempt' ? ' OK' : ''}${e.hint ? ` (hint ${nodeOf.get(e.hint) ?? e.hint})` : ''}\n`);
    }
  }
}
