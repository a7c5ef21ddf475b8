// Splits V8 .cpuprofile files (bench/cpu-profile.cjs writes them) by what is on the stack: for
// each group of frames below, the share of the process's busy time whose samples have one of the
// group's frames on their stack (groups nest and overlap: WAL and apply are inside the ready loop).
// One column per file, so the three datanodes of a bench run sit side by side (docs/performance.md,
// round 6). Samples under the profiler's own start call, and idle samples, are left out.
//   node bench/profile-groups.mjs /tmp/prof/datanode-*.cpuprofile
import { readFileSync } from 'node:fs';

/** [title, frames as "functionName file.js"]: a frame matches when its "function file" label contains one of them. */
const GROUPS = [
  ['new HTTP/2 stream, grpc-js call set-up (unary)', ['sessionOnStream']],
  ['request decode (Batch: batch-wire; unary: proto-loader before round 6)', ['decodeBatchRequest', 'decodeUnary', 'deserialize index.js']],
  ['our handler: router, service, propose', ['writeOnce router.js', 'batch database-service.js', 'run database-service.js']],
  ['response send: grpc-js headers, message, trailers', ['sendMetadata', 'sendStatus', 'encodeBatchResponse', 'sendMessage server-interceptors.js']],
  ['gRPC server metrics', ['rpc-metrics.js']],
  ['ready loop (cycle)', ['cycle region-server.js']],
  ['  … WAL batch (classic-level, records)', ['commit wal.js']],
  ['  … apply (memtable, dedup)', ['applyCommitted']],
  ['raft receive (decode, step)', ['raft-stream.js', 'decodeRaftBatch']],
  ['GC', ['(garbage collector)']],
  ['native, no JS frame (nghttp2, libuv, syscalls)', ['(program)']],
];

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node bench/profile-groups.mjs <file.cpuprofile>...\n');
  process.exit(2);
}
const basename = (url) => (url || '').split('/').pop();
const columns = files.map((file) => {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let busy = 0;
  const shares = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(profile.samples[i]);
    if (node.callFrame.functionName === '(idle)') continue;
    const labels = [];
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id).callFrame;
      labels.push(`${frame.functionName} ${basename(frame.url)}`);
    }
    if (labels.some((l) => l.endsWith('cpu-profile.cjs'))) continue;
    busy += dt;
    for (const [title, frames] of GROUPS) {
      if (labels.some((l) => frames.some((f) => l.includes(f)))) shares.set(title, (shares.get(title) ?? 0) + dt);
    }
  }
  return { name: basename(file).replace(/\.cpuprofile$/, ''), busy, shares };
});
process.stdout.write(`| on the stack | ${columns.map((c) => `${c.name} (busy ${(c.busy / 1e6).toFixed(2)} s)`).join(' | ')} |\n`);
process.stdout.write(`|---|${columns.map(() => '---').join('|')}|\n`);
for (const [title] of GROUPS) {
  process.stdout.write(`| ${title} | ${columns.map((c) => `${((100 * (c.shares.get(title) ?? 0)) / c.busy).toFixed(1)}%`).join(' | ')} |\n`);
}
