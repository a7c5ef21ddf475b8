// The CPU cost of the object-store side of one idle region's SST GC pass (docs/performance.md,
// seventh pass): what flusher.ts's collectGarbage reads for a region with nothing to collect —
// the SST listing, the latest manifest, the replica-snapshot listing, the two peers' published
// snapshots — on the fs store, for GC_REGIONS regions (one SST, one manifest, three published
// snapshots each), GC_ROUNDS times over. Prints CPU ms per pass (user + system of this process),
// so a pass rate (passes/s) turns into a share of one core without a cluster.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeManifest, encodeManifest, loadLatestManifest, manifestKey, parseReplicaSnapshotKey, replicaSnapshotKey, replicaSnapshotPrefix, sstPrefix } from '../src/engine/manifest.js';
import { FsObjectStore } from '../src/object-store/fs-store.js';
import { REGION, schema } from '../test/fixtures/one-region-table.js';

const regions = Number(process.env['GC_REGIONS'] || 1667);
const rounds = Number(process.env['GC_ROUNDS'] || 3);
const dir = mkdtempSync(join(tmpdir(), 'regiondb-gc-pass-'));
const store = new FsObjectStore(dir);
const base = BigInt(REGION);
const ids = Array.from({ length: regions }, (_, i) => String(base + BigInt(i)));
try {
  for (const id of ids) {
    const sst = `${sstPrefix(id)}0000000000000009-1-aaaa.sst`;
    const manifest = { formatVersion: 1, regionId: id, schema, flushedIndex: 9, flushedTerm: 1, voters: [1, 2, 3], learners: [], ssts: [{ key: sst, size: 10, entries: 1, maxVersion: 1, minTimestampMs: 0, maxTimestampMs: 0 }], dedup: '[]', writtenAtMs: 0 } as const;
    await store.put(sst, new Uint8Array(10));
    await store.put(manifestKey(id, 9), encodeManifest(manifest));
    for (const peer of [1, 2, 3]) await store.put(replicaSnapshotKey(id, peer, 9), encodeManifest(manifest));
  }
  let passes = 0;
  const started = process.cpuUsage();
  const wallStarted = performance.now();
  for (let r = 0; r < rounds; r++) {
    for (const id of ids) {
      await store.list(sstPrefix(id));
      await loadLatestManifest(store, id);
      for (const o of await store.list(replicaSnapshotPrefix(id))) {
        const p = parseReplicaSnapshotKey(id, o.key);
        if (p && p.peerId !== 1) decodeManifest(await store.get(o.key), o.key);
      }
      passes++;
    }
  }
  const cpu = process.cpuUsage(started);
  const cpuMsPerPass = (cpu.user + cpu.system) / 1000 / passes;
  process.stdout.write(
    `${passes} passes over ${regions} regions: ${cpuMsPerPass.toFixed(3)} ms CPU per pass (wall ${((performance.now() - wallStarted) / passes).toFixed(3)} ms); at 1,667 led regions a pass a minute is ${((1667 / 60) * cpuMsPerPass / 10).toFixed(2)}% of a core, a pass per 10 min ${((1667 / 600) * cpuMsPerPass / 10).toFixed(2)}%\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
