// make bench-raft: committed proposals per second for an in-process 3-node raft group with
// in-memory storage and batching (proposals are batched per ready cycle, as the datanode's
// group commit does). Measures the pure core + host loop cost, not I/O.
import { SeededRand } from '../src/common/rand.js';
import { Raft, Role } from '../src/raft/raft.js';
import { MemoryStorage, bootstrapEntries } from '../src/raft/storage.js';
import { decodeConfChange } from '../src/raft/confchange.js';
import { EntryType, type Message } from '../src/raft/types.js';

const durationMs = Number(process.env['BENCH_MS'] ?? 5000);
const batchSize = Number(process.env['BATCH'] ?? 256);
const payload = new Uint8Array(64);

interface Host {
  raft: Raft;
  storage: MemoryStorage;
  applied: number;
}

const ids = [1, 2, 3];
const hosts = new Map<number, Host>();
for (const id of ids) {
  const storage = new MemoryStorage();
  const boot = bootstrapEntries(ids);
  storage.append(boot.entries);
  storage.setHardState(boot.hardState);
  hosts.set(id, { raft: new Raft({ id, storage, rand: new SeededRand(id) }), storage, applied: 0 });
}

function pump(): number {
  let appliedNormal = 0;
  let inbox: Message[] = [];
  for (let round = 0; round < 8; round++) {
    for (const m of inbox) hosts.get(m.to)!.raft.step(m);
    inbox = [];
    for (const host of hosts.values()) {
      if (!host.raft.hasReady()) continue;
      const rd = host.raft.ready();
      if (rd.entries.length > 0) host.storage.append(rd.entries);
      if (rd.hardState) host.storage.setHardState(rd.hardState);
      for (const m of rd.messages) inbox.push(m);
      for (const e of rd.committedEntries) {
        if (e.type === EntryType.ConfChange) host.raft.applyConfChange(decodeConfChange(e.data));
        else if (host.raft.role === Role.Leader && e.data.byteLength > 0) appliedNormal++;
      }
      host.raft.advance(rd);
      // Keep memory bounded: compact what every node has applied.
      if (host.storage.lastIndex() - host.storage.firstIndex() > 200_000) host.storage.compact(host.raft.log.applied - 1000);
    }
    if (inbox.length === 0) break;
  }
  return appliedNormal;
}

const leader = hosts.get(1)!;
pump(); // apply the bootstrap configuration
leader.raft.campaign();
for (let i = 0; i < 20 && leader.raft.role !== Role.Leader; i++) pump();
if (leader.raft.role !== Role.Leader) throw new Error('no leader elected');

const batch = Array.from({ length: batchSize }, () => payload);
let committed = 0;
let proposed = 0;
const started = performance.now();
while (performance.now() - started < durationMs) {
  leader.raft.propose(batch);
  proposed += batchSize;
  committed += pump();
  if (proposed - committed > 50_000) committed += pump();
}
const elapsedS = (performance.now() - started) / 1000;
const rate = Math.round(committed / elapsedS);
console.log(`raft in-process 3-node group, in-memory storage, batch ${batchSize}, ${payload.byteLength}-byte entries`);
console.log(`committed proposals: ${committed} in ${elapsedS.toFixed(2)} s = ${rate.toLocaleString('en-US')} proposals/s`);
