// Whole-datanode deterministic simulation (issue 15, first slice): N real RegionServer instances
// — the production host loop: group commit, persist/send/apply order, proposal batching,
// ReadIndex batching, snapshots and log compaction, restart from the log — each hosting two
// regions, over a simulated network and simulated disks, all on ONE seeded scheduler (sim-world.ts).
//
// Two modes (docs/simulation.md). `register`: the state machine is a small deterministic one
// (registers with CAS and a grow-only set). `engine` (issue 15, second slice): the state machine
// is the real RegionState (memtables, SSTs, manifests, dedup), every node runs the real Flusher
// (replicated flush, compaction, manifest writes, replica snapshots, SST GC) with tiny thresholds
// against a simulated object store (sim-object-store.ts), and the workload is row writes,
// conditional writes and linearizable Gets. The engine mode adds two checkers: every object a
// replica's version, its durable snapshot, the latest manifest or a published replica snapshot
// names exists (after every delete and at the end), and every acknowledged row is readable.
//
// Faults: crash + restart (unsynced writes lost; a crash can hit a node in the middle of an
// fsync), symmetric and one-way partitions, isolating a leader, message loss / duplication /
// delay / reordering, leader transfers. Workload: per-key registers (write, CAS, linearizable
// read) checked by the WGL checker of src/check, and a set (no acknowledged add lost). Also
// checked on every apply: every replica applies the same command at the same index.
//
// The same seed replays the same run: the trace hash covers every delivery, crash, restart,
// role change and client operation.
import { writeFileSync } from 'node:fs';
import { AssertionError } from '../../src/common/assert.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { type DedupLimits, limits } from '../../src/common/limits.js';
import { type Rand, SeededRand } from '../../src/common/rand.js';
import type { HistoryEvent } from '../../src/check/history.js';
import { checkRegister, describeOp } from '../../src/check/linearizability.js';
import { checkSet } from '../../src/check/set.js';
import { NODE_BEAT_REGION_ID, type Replica, RegionServer, type RegionServerHooks, type RaftTuning, defaultRaftTuning, firstOwnRemoval } from '../../src/replication/region-server.js';
import type { StateMachineStat } from '../../src/replication/replica-stats.js';
import { DatanodeCore, type DatanodeCoreDeps } from '../../src/datanode/datanode-core.js';
import { tableDroppedError } from '../../src/datanode/database-service.js';
import type { StartWitness } from '../../src/datanode/start-witness.js';
import type { WitnessedStart } from '../../src/common/store-id.js';
import { Flusher, type FlusherSettings } from '../../src/datanode/flusher.js';
import { SstLeases, type SstGcDecision, type SstGcInput } from '../../src/datanode/sst-gc.js';
import { SstReaders } from '../../src/datanode/sst-readers.js';
import { GcByKeyAgeFlusher } from './sim-gc-key-age.js';
import type { Clock } from '../../src/common/clock.js';
import { CommandKind, decodeCommand, encodeCommand } from '../../src/engine/command.js';
import type { RegionDamage } from '../../src/wal/log-engine.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { decodeManifest, manifestPrefix, parseReplicaSnapshotKey, replicaSnapshotPrefix } from '../../src/engine/manifest.js';
import { type ApplyResult, RegionState } from '../../src/engine/region-state.js';
import type { TableSchema } from '../../src/engine/schema.js';
import { ConfChangeType } from '../../src/raft/confchange.js';
import { type PlantedBugs, Raft, type RaftConfig, type Ready } from '../../src/raft/raft.js';
import { MessageType, messageTypeName } from '../../src/raft/types.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import type { StateMachine } from '../../src/raft/state-machine.js';
import { type DiskCopy, Incarnation, SimDisk, SimNetwork, SimScheduler, firstLiveIndex, traceLogger } from './sim-world.js';
import { SimObjectStore } from './sim-object-store.js';
import { type PeerQueueStats, SimPeerQueues } from './sim-peer-queues.js';
import { CatalogLossNemesis, type CatalogLossFault, type HostedReplica, catalogLossUnsettled } from './sim-catloss.js';
import { type CatlossBug, catlossDatanodeCore, catlossMetasrvCore } from './sim-catloss-bugs.js';
import { type MetasrvCoreFactory, SIM_CLUSTER_ID, SimCatalogStorage, SimMetasrv, realMetasrvCore, simMetasrvConfig } from './sim-metasrv.js';
import { HealthyNodeChecker, SPARE_REPAIR_AFTER_MS, SPURIOUS_FAULTS, STALL_MS_MAX, STALL_MS_MIN, type SpuriousFault } from './sim-spurious.js';
import { type OverlapDatanodeBug, OverlappingHeartbeats } from './sim-overlap-bugs.js';
import { DeltaOnLastSent, type ReportDatanodeBug } from './sim-report-bugs.js';
import { ReportViewChecker } from './sim-report-view.js';
import { HeartbeatAwaitsInstructions, type SpuriousDatanodeBug } from './sim-spurious-bugs.js';
import { type DdlHost, SimDdlClient, simDatanodeAdmin } from './sim-ddl.js';
import { DRAIN_FAULTS, DRAIN_FAULT_MS, type DrainFault, DrainNemesis, type DrainStats } from './sim-drain.js';
import { type CatalogState, emptyCatalog } from '../../src/metasrv/catalog.js';
import { encodeCatalog } from '../../src/metasrv/catalog-store.js';
import type { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import { runningProcedures } from '../../src/metasrv/procedures/runner.js';
import type { HeartbeatResponse__Output, RegisterNodeResponse__Output } from '../../src/rpc/generated/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

// ─── The state machine ──────────────────────────────────────────────────────────────────────

type Command = { op: 'write'; key: string; value: number } | { op: 'cas'; key: string; from: number | null; to: number } | { op: 'add'; element: number };
/** What the register machine applies: the clients' commands and DropTable's fence. */
type MachineCommand = Command | { op: 'fence'; tableId: number };

/**
 * Registers (write, compare-and-set) and a grow-only set. Deterministic; whole-state snapshots.
 * A DropTable's fence (`fence`, as RegionState's drop-fence) makes every later command answer
 * false (not applied); it is in the snapshot only once set (a run without DDL snapshots as before).
 */
export class RegisterMachine implements StateMachine<boolean> {
  registers = new Map<string, number>();
  set: number[] = [];
  dropFence: { index: number; tableId: number } | undefined;

  constructor(
    private readonly onApply: ((index: number, command: string) => void) | undefined,
    data: Uint8Array | null,
  ) {
    if (data) {
      const state = JSON.parse(dec.decode(data)) as { registers: [string, number][]; set: number[]; dropFence?: { index: number; tableId: number } };
      this.registers = new Map(state.registers);
      this.set = state.set;
      this.dropFence = state.dropFence;
    }
  }

  apply(index: number, command: Uint8Array): boolean {
    const text = dec.decode(command);
    this.onApply?.(index, text);
    const c = JSON.parse(text) as MachineCommand;
    if (c.op === 'fence') {
      this.dropFence ??= { index, tableId: c.tableId };
      return true;
    }
    if (this.dropFence) return false;
    if (c.op === 'write') {
      this.registers.set(c.key, c.value);
      return true;
    }
    if (c.op === 'cas') {
      if ((this.registers.get(c.key) ?? null) !== c.from) return false;
      this.registers.set(c.key, c.to);
      return true;
    }
    this.set.push(c.element);
    return true;
  }

  serialize(): Uint8Array {
    return enc.encode(JSON.stringify({ registers: [...this.registers], set: this.set, ...(this.dropFence ? { dropFence: this.dropFence } : {}) }));
  }
}

// ─── Options and results ────────────────────────────────────────────────────────────────────

export interface ClusterSimOptions {
  seed: number;
  nodes: number;
  /** Virtual ms with faults and client load; then everything heals. */
  faultMs: number;
  /** Virtual ms allowed after healing for the final reads to succeed (liveness). */
  livenessMs: number;
  clients: number;
  /**
   * Test-only switch that reintroduces a real host bug in every RegionServer (a subclass
   * overriding the persist-before-send rule, src/raft/host-rules.ts): 'send-before-persist'
   * lets every replica send before its write is durable, so a follower acknowledges entries and
   * a voter grants its vote before either is on disk (breaks P1). 'no-wake-on-leader-down': a
   * region server that takes a silent peer datanode as down tells none of the followers of its
   * leaders (docs/quiescence.md), so quiesced followers of a dead leader sleep on.
   * 'close-fails-proposed' (finding 8a, the rule before cdc2fc8): a replica closed or removed
   * fails the proposals it already handed to raft as NOT_FOUND, a definite failure, though they
   * may still commit under the next leader (found with the `close` fault). 'stats-miss-cycle':
   * a region server that does not count what its ready cycles change among the replicas whose
   * reported state changed, so the datanode core's heartbeat reuses stale stats (the `report
   * stats` checker, with the metasrv; docs/quiescence.md). 'stale-reads-ungated': the stale-read
   * gate as it was before docs/correctness.md 8g — a replica that has heard from a leader since
   * it opened serves stale reads however long ago that was — so a replica removed without
   * learning it (finding E1) is held to its frozen version again. 'lease-survives-stalls' (with
   * `leaseReads`): a region server that does not void its leader leases after a stall of its
   * process, as before finding E14 — a leader paused through its group's next election answers
   * reads from its lease when it runs again (the `pause` fault).
   */
  hostBug?: 'send-before-persist' | 'no-wake-on-leader-down' | 'close-fails-proposed' | 'stats-miss-cycle' | 'stale-reads-ungated' | 'lease-survives-stalls';
  /** Test-only raft core bugs (src/raft/raft.ts PlantedBugs) in every replica, through a RegionServer subclass. */
  coreBugs?: PlantedBugs;
  /**
   * `register` (the default): RegisterMachine, no object store. `engine`: the real RegionState
   * and Flusher on every node, against the simulated object store.
   */
  mode?: 'register' | 'engine';
  /**
   * Engine mode only, test-only: an SST GC rule fixed in issue 14, brought back through a
   * Flusher subclass (docs/simulation.md, "The bugs it re-finds"). `gc-ignores-snapshots`: GC
   * neither waits for every replica's snapshot to pass the point where an SST left the version
   * (G3) nor keeps what snapshots and the latest manifest name (the rule before finding 4b).
   * `gc-by-key-age`: GC judges an SST's age by the wall-clock time in its key, ignoring pending
   * edits and uploads in flight (the rule before finding 4a; test/sim/sim-gc-key-age.ts).
   */
  gcBug?: 'gc-ignores-snapshots' | 'gc-by-key-age';
  /**
   * Engine mode only, test-only: how the flusher picks the replicas a check visits (src/datanode/
   * flusher.ts; production: the region server's change feed, its own marks and due times).
   * `every-replica`: every check visits every replica, as before the sixth performance pass —
   * the same trace hash is what shows the selection leaves nothing out. Planted:
   * `forgets-marks` (the end of a check's work, a request, GC's flush request do not bring the
   * region back) and `ignores-changes` (the region server's change feed is not read).
   */
  flusherCheck?: 'every-replica' | 'forgets-marks' | 'ignores-changes';
  /**
   * Engine mode, opt-in (SIM_CLUSTER_GC_QUIET_MS): the flusher's gcQuietIntervalMs, the GC pass
   * interval of a region whose last pass was clean and that has not changed since (production
   * sets it; the default here leaves it unset, so the default traces are those before it). A
   * campaign with it set is the check that the longer interval deletes nothing still named.
   */
  gcQuietIntervalMs?: number;
  /**
   * Engine mode: check after every delete that nothing that must exist names the object (on by
   * default). Off, only the end-to-end checkers (rows readable, histories, replica health) are
   * left: the planted-bug tests use it to show what the deleted object costs.
   */
  checkEveryDelete?: boolean;
  /**
   * Engine mode only, test-only: the simulator's client reports the last attempt's definite
   * refusal (NOT_LEADER) as the write's outcome even when an earlier attempt's outcome was
   * unknown (docs/correctness.md 8c, the rule src/client/client.ts fixed). This switches the
   * simulator's model of that rule, not client.ts itself: it shows the checkers see the bug.
   */
  clientBug?: 'refusal-after-unknown' | 'ids-restart-at-one' | 'create-token-per-attempt';
  /**
   * Faults of the third slice (docs/simulation.md), none by default so that the seeds quoted
   * there replay as before. `corrupt`: a byte flipped in a durable WAL entry of one replica (its
   * node down; found when it restarts); `wipe`: a node restarts on an empty disk with its node
   * id. Both leave the region one replica short until the harness replaces it under a fresh
   * peer id, as the metasrv's repair-replica does; a new one is injected only while every
   * region is whole. `clock` (engine mode): a node's wall clock steps forward or back.
   * `catalog` (with `metasrv`): 10 % of the metasrv's catalog saves fail while faults run
   * (half of them on disk anyway). `clients` (engine mode): writes with no request id, and client processes that restart with
   * their client id. `evict` (engine mode): dedup tables of 2 clients and 4 ids per client
   * (SIM_DEDUP_LIMITS), so client records are evicted all the time; a write refused as
   * request-too-old is then what the client library does with it (a new id when nothing was
   * sent before, else unknown). `metaloss`, `metarestore` (with `metasrv`, not in `all`): the
   * metasrv restarts on an empty data dir, or from an older copy of its catalog
   * (test/sim/sim-catloss.ts).
   * sent before, else unknown). `ddl` (with `metasrv`): a simulated client creates and drops
   * tables through the real metasrv during the run and writes to them (test/sim/sim-ddl.ts); in
   * engine mode, half of the seeds lose the metasrv's disk after the drop (finding 2c).
   * `close` (not in `all`): a running replica — most often a region's leader with writes in
   * flight — is closed without deleting its data, as a datanode executes the metasrv's
   * close_region instruction with destroy off, and opened again from its log 30–300 ms later
   * (by the harness; with `metasrv`, by the metasrv's reconciliation of the node's next
   * heartbeat). The planted 8a (hostBug 'close-fails-proposed') needs it.
   * `refuse` (not in `all`): a crashed node's address refuses connections — each running node's
   * region server hears so (RegionServer.peerRefused, as from its gRPC transport) 1–60 ms after
   * the crash, while the node is still down — and now and then a running node is told that a
   * live one refused (a wrong verdict: liveness may suffer, safety may not). docs/quiescence.md,
   * "A refused connection".
   * `balance` (with `metasrv`, not in `all`): the metasrv's periodic leader check runs every
   * BALANCE_INTERVAL_MS, so balance-leaders moves leaders while the other faults run, with a
   * leader placement chosen by the seed (`balancePlacementOf`); after healing, the leaders must
   * reach that placement (the `leader placement` checker). docs/simulation.md, "Leader placement".
   */
  faults?: readonly ExtraFault[];
  /**
   * Opt-in (SIM_CLUSTER_CALM_ELECTIONS=1): every region server runs with raft.pre_vote_priority
   * and raft.late_votes on (docs/quiescence.md, "Elections under a stalled loop"). Off by default:
   * the default traces are those of the production defaults.
   */
  calmElections?: boolean;
  /**
   * Opt-in (SIM_CLUSTER_LEASE_READS=1): every region server serves linearizable reads from its
   * leader lease (raft.read_only = "lease", docs/raft-rules.md R10) instead of a heartbeat round.
   */
  leaseReads?: boolean;
  /**
   * Test-only, with `corrupt`: the WAL's open before findings 3a/3b (src/wal/wal.ts before
   * 7ec6b49), in a SimDisk subclass. `cut-damaged-tail` (3a): a damaged last record is taken
   * for a torn write, cut, and the commit index lowered to match; the region opens without it.
   * `refuse-node` (3b): a damaged record in any region refuses the whole node's start.
   */
  walBug?: 'cut-damaged-tail' | 'refuse-node';
  /**
   * Test-only, with `wipe`: the node on an empty disk is opened under its old peer ids, as
   * before finding 1's fix (a datanode on a wiped data dir reopened its regions at term 0).
   */
  wipeBug?: 'reopen-as-old-peer';
  /**
   * Test-only, with `metasrv` and `restore`: a datanode reopens the replicas in its log at its
   * start, before its registration is answered, as before finding K1's fix (a data dir put back
   * from a copy answered raft with its rolled-back votes and logs until the metasrv refused it).
   */
  restoreBug?: 'reopen-before-registration';
  /**
   * Test-only, with `ddl` and the metasrv: the destructive faults' guard as it was before engine
   * seed 2867 of the wide mix and marks (`faultableRegions`: the workload's and the catalog's
   * regions only), so a region of a DDL table no catalog knows may lose a second replica of
   * three. It keeps the DDL checker's answer to such a region (`quorumHosted` in sim-ddl.ts: no
   * read owed) exercised: with the full guard, no seed searched reaches it (docs/simulation.md).
   */
  guardBug?: 'forgotten-regions-unguarded';
  /**
   * Test-only, engine mode: dedup before 0090f8f, as a wrapper of RegionState.apply.
   * `id-zero-deduplicated` (7a): request id 0 is remembered like any id, so every later write
   * of the client without an id gets the first one's answer and is never applied.
   * `id-trusted-without-command` (7b): a (client, request id) seen before answers with its first
   * result whatever the command. `evicted-client-forgotten` (7d, with `evict`): a client record
   * evicted from the table leaves nothing behind (no horizon), so a late retry of that client's
   * write applies a second time.
   */
  dedupBug?: 'id-zero-deduplicated' | 'id-trusted-without-command' | 'evicted-client-forgotten' | 'mark-forgets-without-refusing';
  /**
   * Run the real metasrv core (docs/simulation.md, "The metasrv"): datanodes register and beat,
   * execute its instructions, and lost replicas are replaced by its repair-replica procedure
   * instead of the harness's stand-in. Adds its faults (crash and restart mid-procedure, clock
   * steps) and the checkers that lost replicas are replaced and the catalog matches the groups.
   */
  metasrv?: boolean;
  /**
   * Test-only, with `metasrv`: builds the metasrv core of each incarnation (a subclass with a
   * planted bug; test/sim/sim-metasrv-bugs.ts). Default: the real MetasrvCore.
   */
  metasrvCore?: MetasrvCoreFactory;
  /** The name of the planted metasrv bug `metasrvCore` builds, for the replay command. */
  metasrvBug?: string;
  /**
   * Test-only, with `metasrv`: every datanode runs a DatanodeCore subclass with a planted bug
   * (test/sim/sim-spurious-bugs.ts). `heartbeat-awaits-instructions` (finding M2): a heartbeat
   * waits for its instructions, a conf change for its commit. `overlapping-heartbeats` (finding
   * 8e, test/sim/sim-overlap-bugs.ts): a beat every interval even with one in flight, each
   * answer's instructions run in its beat, opens and closes not serialized.
   */
  datanodeBug?: SpuriousDatanodeBug | OverlapDatanodeBug | ReportDatanodeBug;
  /**
   * Test-only, with `metasrv`: a planted bug of a lost or restored catalog (findings 2a, 2b, the
   * peer-id half of 2c, 2d; test/sim/sim-catloss-bugs.ts), in the metasrv's core or the datanodes'.
   */
  catlossBug?: CatlossBug;
  /** Events of the trace kept for the failure report. */
  traceTail: number;
  /**
   * Where to write the run's whole trace (every event, one a line, as hashed), at its end, passed
   * or failed; `{seed}` in it is replaced by the seed. Default: `SIM_TRACE_FILE` from the
   * environment (docs/simulation.md, "Replaying a failure"); unset, nothing is written.
   */
  traceFile?: string;
}

export type ExtraFault = 'corrupt' | 'wipe' | 'restore' | 'clock' | 'clients' | 'marks' | 'evict' | 'slow' | 'catalog' | 'ddl' | 'dropwrite' | 'close' | 'slowdrop' | 'refuse' | 'balance' | 'pause' | SpuriousFault | CatalogLossFault | ReadPathFault | DrainFault;
/**
 * The read path's faults (docs/simulation.md, "Follower reads, held queues, crash loops"), not in `all`:
 * `followers`, clients that read through the client library's route cache, so that reads land
 * on followers (and on restarted nodes) as they do in production; `queues`, the raft
 * transport's per-peer queues and reconnect backoff (test/sim/sim-peer-queues.ts), which hold
 * a restarted node's traffic and hand it to its new process; `flap`, crash loops: a node restarted
 * after a crash dies again soon after its start, now and then (a process killed while it catches
 * up, restarted by its supervisor).
 */
export type ReadPathFault = 'followers' | 'queues' | 'flap';
export const READ_PATH_FAULTS: readonly ReadPathFault[] = ['followers', 'queues', 'flap'];
export const EXTRA_FAULTS: readonly ExtraFault[] = ['corrupt', 'wipe', 'restore', 'clock', 'clients', 'marks', 'evict', 'slow', 'catalog', 'ddl', 'dropwrite', 'close', 'slowdrop', 'refuse', 'balance', 'pause', ...SPURIOUS_FAULTS, ...READ_PATH_FAULTS, ...DRAIN_FAULTS];
/**
 * What `FAULTS=all` switches on: the faults `all` meant before `stall`, `twin`, `spare` (sim-spurious.ts), `ddl` (sim-ddl.ts),
 * `close`, `slowdrop` and the read path's were added, so its campaigns replay; those and the catalog's loss and restore
 * (CATALOG_LOSS_FAULTS, test/sim/sim-catloss.ts) are asked for by name.
 */
export const ALL_FAULTS: readonly ExtraFault[] = EXTRA_FAULTS.filter(
  (f) =>
    f !== 'ddl' &&
    f !== 'dropwrite' &&
    f !== 'marks' &&
    f !== 'close' &&
    f !== 'slowdrop' &&
    f !== 'refuse' &&
    f !== 'balance' &&
    f !== 'pause' &&
    f !== 'restore' &&
    !(SPURIOUS_FAULTS as readonly string[]).includes(f) &&
    !(READ_PATH_FAULTS as readonly string[]).includes(f) &&
    !(DRAIN_FAULTS as readonly string[]).includes(f),
);

/** With `restore`: a disk copy is put back at least this long (virtual ms) after it was taken. */
export const RESTORE_COPY_AGE_MS = 600;
/** With `restore`: how long (virtual ms) after a start refused as a restored copy the operator moves the disk aside. */
export const OPERATOR_MOVES_COPY_MS = 1_000;

/** With `marks`: the share of client write attempts copied once more, later (lateCopy), and how much later (virtual ms). */
export const LATE_COPY_CHANCE = 0.1;
export const LATE_COPY_MS_MIN = 20;
export const LATE_COPY_MS_MAX = 400;

/**
 * With `pause`: a datanode process pauses (SIGSTOP and SIGCONT, a long GC, a VM descheduled) for
 * this long (virtual ms): from shorter than a raft election timeout (100–200 ms here) and the
 * node-down rule (60 ms) to longer than the metasrv's acceptable pause (200 ms) — its leaders are
 * deposed, the metasrv may start failovers — and back, with its clock moved on and its ticks not.
 */
export const PAUSE_MS_MIN = 20;
export const PAUSE_MS_MAX = 1_500;
/** With `pause`: the chance that a nemesis step (every 100–300 virtual ms) pauses a running datanode. */
export const PAUSE_CHANCE = 0.2;

/** With `balance`: the metasrv's periodic leader-placement check runs this often (virtual ms; production's default is 30 s). */
export const BALANCE_INTERVAL_MS = 500;

/**
 * With `balance`: the leader placement a seed runs with — by the seed, so that a campaign covers
 * each: "spread", "table" with the production chunk of 16 regions (a table's regions all on one
 * node), and "table" one region a chunk (each region its own home, homes spread by count).
 */
export function balancePlacementOf(seed: number): { leader_placement: 'spread' | 'table'; leader_pack_regions: number } {
  const k = ((seed % 3) + 3) % 3;
  return k === 0 ? { leader_placement: 'spread', leader_pack_regions: 16 } : { leader_placement: 'table', leader_pack_regions: k === 1 ? 16 : 1 };
}

/** With `refuse`: a wrong refusal verdict about every this many virtual ms (0.5–1.5×). */
export const REFUSE_FALSE_EVERY_MS = 400;

/** With `slowdrop` (and the metasrv): deleting a replica's data on a datanode's disk takes this long (virtual ms), every time. */
export const SLOW_DROP_MS_MIN = 20;
export const SLOW_DROP_MS_MAX = 300;

export const defaultClusterSimOptions: Omit<ClusterSimOptions, 'seed'> = {
  nodes: 3,
  faultMs: 4_000,
  livenessMs: 6_000,
  clients: 5,
  traceTail: 40,
  ...(process.env['SIM_TRACE_FILE'] ? { traceFile: process.env['SIM_TRACE_FILE'] } : {}),
};

export interface ClusterSimResult {
  seed: number;
  traceHash: string;
  events: number;
  ops: { ok: number; fail: number; info: number };
  acknowledgedAdds: number;
  crashes: number;
  elections: number;
  leaderTransfers: number;
  endMs: number;
  reasons: [string, number][];
  /** Quiescence seen by the probe: replicas that went to sleep, woke, woke after their leader's node crashed; replicas asleep on a node that crashed. */
  quiescence: { quiesced: number; woken: number; wokenAfterLeaderDown: number; quiescedCrashed: number };
  /** Engine mode: what the flushers did in the object store. */
  engine?: { sstsPut: number; sstsDeleted: number; deletesNamedByCutOff: number; deletesNamedByFreshContact: number; deletesNamedWithEntriesLeft: number; deletesNamedByRefusedCopy: number; manifestsPut: number; manifestsRewritten: number; storeFailures: number; slowRequests: number; uploadsNotProposed: number; flushEdits: number; compactionEdits: number; retries: number };
  /** The third slice's faults that took effect, and the replicas replaced after them. */
  storage: { corruptions: number; wipes: number; restores: number; restoresRefused: number; repairs: number; clockSteps: number; rawWrites: number; clientRestarts: number; tooOld: number };
  /** With `close`: replicas closed, of them leaders, proposals in flight at those closes, and reopens. */
  closes?: { closes: number; leaders: number; proposalsInFlight: number; reopens: number };
  /** With `pause`: the datanode pauses made. */
  pauses?: number;
  /** With `metasrv`: its crashes and clock steps, catalog saves that landed, and the instructions the datanodes executed, by kind. */
  metasrv?: {
    crashes: number;
    crashesMidProcedure: number;
    clockSteps: number;
    saves: number;
    saveFailures: number;
    instructions: Record<string, number>;
    proceduresDone: Record<string, number>;
    /** The `stall` fault's pauses, and the procedures the `healthy node` checker looked at (failovers, moves, in-place repairs). */
    stalls: number;
    twins: number;
    checked: { failovers: number; moves: number; inPlace: number; twinRegistrations: number };
    /** Delta heartbeats: the reports the datanodes made, full and delta, and the views the `report view` checker compared. */
    reports: { fullReports: number; deltaReports: number; viewsChecked: number; statsCompared: number };
    catalogLosses?: number;
    catalogRestores?: number;
    /** With `drain` (sim-drain.ts): the drain asked and started, replicas removed while live, holds and deletions of them. */
    removals?: DrainStats & { drainMoves: number };
  };
  /** With `ddl`: what the DDL client did. */
  ddl?: SimDdlClient['stats'];
  /**
   * With the read path's faults: the readers' attempts (and those sent to a node that did not
   * lead the region then), ReadIndex answers delivered to followers, those answering a request of
   * an earlier process of the receiving node, those of them that met a pending read of the new
   * process with the same sequence number (what finding 8b's contexts confused) or arrived below
   * the leader's commit index, and each one's sequence number minus the new process's last; with
   * `queues`, what the per-peer queues did. Exact with the production contexts.
   */
  readPath?: {
    readerReads: number;
    readerReadsOnFollowers: number;
    answersToFollowers: number;
    answersCrossingRestart: number;
    answersMeetingSameSeq: number;
    answersCrossingBehindCommit: number;
    crossingSeqGaps: number[];
    queues?: PeerQueueStats;
  };
}

export class ClusterSimViolation extends Error {
  override name = 'ClusterSimViolation';
  constructor(
    readonly seed: number,
    readonly invariant: string,
    detail: string,
    readonly traceTail: readonly string[],
    /** The environment that switches the run's mode and planted bugs on again (empty without any). */
    plantedEnv = '',
  ) {
    const replay = `${plantedEnv}SIM_CLUSTER_SEED=${seed} make test-sim-cluster`;
    super(`seed ${seed}: ${invariant}: ${detail}\n  replay: ${replay}\n  last events (every event: SIM_TRACE_FILE=<path> with the replay):\n${traceTail.map((e) => `    ${e}`).join('\n')}`);
  }
}

// ─── The simulation ─────────────────────────────────────────────────────────────────────────

/** The regions' ids without the metasrv; with it, the ids of table 1024's two regions (the metasrv parses region ids). */
const REGIONS = ['r-reg', 'r-set'] as const;
const METASRV_REGIONS = [String(1024n << 32n), String((1024n << 32n) | 1n)] as const;
/** With `metasrv`: how often a datanode beats (virtual ms); a call may take the core's budget, max(500 ms, the interval). */
const HEARTBEAT_MS = 50;
/** With `metasrv`: lost replicas are replaced and the catalog matches the groups within this after healing (the procedures re-send lost instructions every 3 s). */
const METASRV_LIVENESS_MS = 20_000;
const KEYS = ['a', 'b', 'c'];
const OP_TIMEOUT_MS = 500;
const TUNING: RaftTuning = {
  ...defaultRaftTuning,
  tickMs: 10,
  electionTicks: 10,
  heartbeatTicks: 2,
  snapshotEveryEntries: 40,
  // Quiescence on (docs/quiescence.md), sooner than in production so the lulls below see it.
  quiesceIdleTicks: 10,
  nodeDownAfterTicks: 6,
};
/**
 * quiesce-orphan: a follower may sleep this long after its leader's node went down (down after
 * nodeDownAfterTicks ticks without a message, plus a message delayed from before the crash that
 * quiesced it again, plus two ticks of slack).
 */
const QUIESCE_ORPHAN_BOUND_MS = (TUNING.nodeDownAfterTicks + 2) * TUNING.tickMs * 2 + 12;
/** How often the quiescence checkers look at every replica (virtual ms). */
const QUIESCE_PROBE_MS = 5;

type Server = RegionServer<RegisterMachine, boolean>;
type EngineServer = RegionServer<RegionState, ApplyResult>;

// ─── Engine mode: the table, the flush settings, the planted GC rule ────────────────────────

/** One table for both regions: a register per key `k` (value `v`); the set adds one key per element. */
const ENGINE_SCHEMA: TableSchema = {
  name: 'sim',
  tableId: 1024,
  regionCount: 1,
  columns: [
    { name: 'k', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'v', type: 'float64', semantic: 'field' },
  ],
};
/**
 * Tiny thresholds, so that every seed flushes, writes manifests, compacts, publishes replica
 * snapshots and collects SSTs many times: a memtable of a few rows is due, three SSTs compact,
 * and an unreferenced SST is deleted 200 ms after every replica's snapshot passed it.
 */
const FLUSHER_SETTINGS: FlusherSettings = { flushBytes: 400, flushAgeMs: 120, compactAtSsts: 3, gcGraceMs: 200, checkIntervalMs: 20, manifestsKept: 2 };
/** Wall-clock time of virtual 0 (only SST key names and manifests' writtenAtMs show it). */
const SIM_EPOCH_MS = 1_700_000_000_000;
/** calmElections: the two opt-in election rules on. */
const CALM_ELECTIONS = { preVotePriority: true, countLateVotes: true } as const;
const ENGINE_TUNING: RaftTuning = { ...TUNING, applyRetry: { backoffMsMin: 20, backoffMsMax: 200, windowMs: 5_000 } };
/** Attempts of one write in engine mode (the first and its retries, all within the op timeout). */
const ENGINE_ATTEMPTS_MAX = 4;
/** With `evict`: dedup tables small enough that the 5 clients' records are evicted all the time (production: src/common/limits.ts). */
const SIM_DEDUP_LIMITS: DedupLimits = { dedupClientsMax: 2, dedupRequestsPerClientMax: 4 };
/** With `slow`: the object store's slow tail, beyond the GC grace (FLUSHER_SETTINGS.gcGraceMs, 200 ms). */
const SIM_SLOW_TAIL = { slowChance: 0.03, slowMsMin: 150, slowMsMax: 1500 };
const ENGINE_RETRY_PAUSE_MS = 20;
/** The harness's repair: how often it looks, how long a proposed membership change is given, how far behind a learner may be promoted (the metasrv's CATCH_UP_SLACK). */
const REPAIR_CHECK_MS = 25;
const REPAIR_PROPOSAL_PAUSE_MS = 100;
const REPAIR_CATCH_UP_SLACK = 16;
/** Request ids per millisecond of the client library's rule (src/client/client.ts: ids start from the wall clock). */
const CLIENT_REQUEST_IDS_PER_MS = 1000;
const noFlusherMetrics = { flushed: () => {}, compacted: () => {}, sstsDeleted: () => {}, manifestRefused: () => {} };

/** GC without G3 and without what snapshots name (test-only; see ClusterSimOptions.gcBug). */
class GcIgnoresSnapshotsFlusher extends Flusher {
  protected override decideSstGc(input: SstGcInput): SstGcDecision {
    return super.decideSstGc({ ...input, replicasSnapshotIndex: Number.POSITIVE_INFINITY, manifestIndex: Number.POSITIVE_INFINITY, namedBySnapshots: new Set() });
  }
}

/** The production flusher, counting the uploads it left as orphans because their put took half the grace or more (G4). */
class CountingFlusher extends Flusher {
  onRefused: (() => void) | undefined;
  protected override uploadProposable(startedMs: number, nowMs: number): boolean {
    const proposable = super.uploadProposable(startedMs, nowMs);
    if (!proposable) this.onRefused?.();
    return proposable;
  }
}

/** A flusher whose every check visits every replica (ClusterSimOptions.flusherCheck). */
class EveryReplicaFlusher extends CountingFlusher {
  protected override changedReplicas(): undefined {
    return undefined;
  }
}

/** Planted: the end of a check's work and requests do not bring a region back to the next check. */
class ForgetsMarksFlusher extends CountingFlusher {
  protected override markRegion(): void {}
}

/** Planted: the region server's change feed is not read (only marks and due times select). */
class IgnoresChangesFlusher extends CountingFlusher {
  protected override changedReplicas(): ReadonlySet<never> {
    super.changedReplicas(); // taken and dropped
    return new Set();
  }
}

/**
 * The WAL's open before finding 3a's fix (test-only; ClusterSimOptions.walBug): a damaged record
 * at the end of a region's log was taken for a torn write and cut, and the commit index was
 * lowered to the new last entry; the region then opened as if nothing had happened. A damaged
 * record before the end is reported as today.
 */
class CutDamagedTailDisk extends SimDisk {
  override recover(): RegionDamage[] {
    for (const [regionId, index] of [...this.flipped]) {
      const store = this.stores.get(regionId)!;
      if (index !== store.lastIndex()) continue;
      const first = firstLiveIndex(store);
      const hardState = store.initialState().hardState;
      const cut = { ...hardState, commit: Math.min(hardState.commit, index - 1) };
      this.stores.set(
        regionId,
        MemoryStorage.restore({
          snapshot: store.snapshot(),
          truncated: { index: first - 1, term: store.term(first - 1) },
          entries: index > first ? store.entries(first, index, Number.POSITIVE_INFINITY) : [],
          hardState: cut,
        }),
      );
      this.durable.set(regionId, cut);
      this.flipped.delete(regionId);
    }
    return super.recover();
  }
}

/** The WAL's open before finding 3b's fix (test-only): damage in any region refuses the node. */
class RefuseNodeDisk extends SimDisk {
  override recover(): RegionDamage[] {
    const damage = super.recover();
    if (damage.length > 0) throw new Error(`WAL corruption: ${damage[0]!.reason}; the datanode refuses to start`);
    return damage;
  }
}

/** The request id a client without ids was remembered under by the planted 7a (any id > 0 it never uses). */
const RAW_REQUEST_ID = 1;

/**
 * Dedup before 0090f8f (test-only; ClusterSimOptions.dedupBug), wrapped around apply: the
 * answer recorded for a (client, request id) is returned without looking at the command
 * (7b), or request id 0 is remembered like any other id (7a). The entries live in RegionState's
 * own table (read through a cast: the table is private), so they travel in manifests and
 * snapshots exactly as the old code's did.
 */
function plantDedupBug(state: RegionState, bug: NonNullable<ClusterSimOptions['dedupBug']>): RegionState {
  const apply = state.apply.bind(state);
  /** Wraps apply so that `after` runs once each apply has ended, synchronously or not. */
  const afterEachApply = (before: (data: Uint8Array) => () => void) => {
    state.apply = (index: number, data: Uint8Array, term?: number) => {
      const after = before(data);
      const result = apply(index, data, term);
      if (!(result instanceof Promise)) {
        after();
        return result;
      }
      return result.finally(after);
    };
    return state;
  };
  if (bug === 'mark-forgets-without-refusing') {
    // D3 half done: a session mark forgets the client's answers below it but leaves its
    // `evictedBelow` where it was, so a late copy of a forgotten request is not refused.
    const records = (state as unknown as { dedup: Map<string, { evictedBelow: number }> }).dedup;
    return afterEachApply((data) => {
      const cmd = decodeCommand(data);
      if ((cmd.kind !== 'write' && cmd.kind !== 'delete') || cmd.completedBelow === undefined) return () => {};
      const record = records.get(cmd.clientId);
      if (!record) return () => {};
      const before = record.evictedBelow;
      return () => {
        if (records.get(cmd.clientId) === record) record.evictedBelow = Math.min(record.evictedBelow, before);
      };
    });
  }
  if (bug === 'evicted-client-forgotten') {
    // 7d: before the horizon, an evicted record left no trace: a client without a record could
    // use any id. Keeping RegionState's horizon at 0 (read through a cast: it is private) is
    // exactly that; manifests then carry horizon 0, as the old table carried none.
    const forget = () => {
      (state as unknown as { dedupHorizon: number }).dedupHorizon = 0;
    };
    forget();
    return afterEachApply(() => forget);
  }
  const table = (state as unknown as { dedup: Map<string, { results: Map<number, { result: ApplyResult }> }> }).dedup;
  state.apply = (index: number, data: Uint8Array, term?: number) => {
    const cmd = decodeCommand(data);
    if (cmd.kind !== 'write' && cmd.kind !== 'delete') return apply(index, data, term);
    const zero = cmd.requestId === 0;
    if (zero && bug !== 'id-zero-deduplicated') return apply(index, data, term);
    const id = zero ? RAW_REQUEST_ID : cmd.requestId;
    const previous = table.get(cmd.clientId)?.results.get(id);
    if (previous) {
      state.appliedIndex = index;
      return previous.result;
    }
    return apply(index, zero ? encodeCommand({ ...cmd, requestId: id }) : data, term);
  };
  return state;
}

/**
 * The region server with planted bugs (tests only): hostBug 'send-before-persist' lets everyone's
 * messages leave before the write is durable; 'no-wake-on-leader-down' keeps the followers of a
 * silent node's leaders asleep; 'close-fails-proposed' brings back finding 8a through the
 * failPending seam; 'stale-reads-ungated' the stale-read gate before 8g; coreBugs run every raft core with PlantedBugs.
 * With the read path's faults it also reports every ReadIndex context it issues (the counters
 * of ClusterSimResult.readPath), without changing them.
 */
function plantedServer<S extends StateMachine<R>, R>(
  hostBug: ClusterSimOptions['hostBug'],
  coreBugs: PlantedBugs | undefined,
  onReadContext?: (nodeId: number, ctx: string) => void,
): typeof RegionServer<S, R> {
  return class PlantedRegionServer extends RegionServer<S, R> {
    /** Only watched (the read path's counters), never changed. */
    protected override readContext(seq: number): string {
      const ctx = super.readContext(seq);
      onReadContext?.(this.nodeId, ctx);
      return ctx;
    }

    protected override maySendBeforePersist(replica: Replica<S, R>, rd: Ready): boolean {
      return hostBug === 'send-before-persist' ? rd.messages.length > 0 : super.maySendBeforePersist(replica, rd);
    }

    protected override createRaft(config: RaftConfig): Raft {
      return new Raft(coreBugs ? { ...config, plantedBugs: coreBugs } : config);
    }

    protected override onNodeDown(nodeId: number, refused = false): void {
      if (hostBug !== 'no-wake-on-leader-down') super.onNodeDown(nodeId, refused);
    }

    // A server that marks its inputs (messages, requests, ticks) as changing its replicas'
    // reported state, but not what its ready cycles change (applies, commits, snapshots): the
    // datanode's heartbeat then reports stale stats (the `report stats` checker, with the metasrv).
    protected override replicasInCycle(): Iterable<Replica<S, R>> {
      return hostBug === 'stats-miss-cycle' ? [] : super.replicasInCycle();
    }

    protected override markCycleChanged(candidates: readonly Replica<S, R>[]): void {
      if (hostBug !== 'stats-miss-cycle') super.markCycleChanged(candidates);
    }

    // Before 8g: any leader contact since the replica opened let it serve stale reads for good.
    override staleReadRefusal(regionId: string): string | undefined {
      if (hostBug === 'stale-reads-ungated' && this.replica(regionId)?.leaderContact !== undefined) return undefined;
      return super.staleReadRefusal(regionId);
    }

    // Before E14: a stall leaves the lease as the ticks count it.
    protected override voidLeases(): void {
      if (hostBug !== 'lease-survives-stalls') super.voidLeases();
    }

    // 8a: without `proposedWhy` every waiting proposal gets the close's or removal's NOT_FOUND.
    protected override failPending(replica: Replica<S, R>, err: Error, proposedWhy?: string): void {
      super.failPending(replica, err, hostBug === 'close-fails-proposed' ? undefined : proposedWhy);
    }
  };
}

interface SimNode {
  readonly id: number;
  readonly disk: SimDisk;
  incarnation: Incarnation;
  server: Server | EngineServer | undefined;
  /** Engine mode: the node's flusher (it dies with the incarnation's timers). */
  flusher: Flusher | undefined;
  /** When a crashed node restarts (set while down). */
  restartAt: number;
  /** Its wall clock's step from virtual time (the `clock` fault); 0 unless stepped. */
  wallOffsetMs: number;
  /** Faults done to its disk while it was down, found when it starts: regions with a flipped byte, or the whole disk wiped. */
  pendingDamage: Set<string>;
  pendingWipe: boolean;
  /** With `restore`: a copy of its disk (a volume snapshot) taken at `takenAt`, to be put back later. */
  diskCopy: { readonly copy: DiskCopy; readonly takenAt: number } | undefined;
  /**
   * With `metasrv`: the incarnation's datanode core (src/datanode/datanode-core.ts: reopening
   * from the region metas on its disk, registration, heartbeats, instructions); it dies with it.
   */
  core: Pick<DatanodeCore<RegisterMachine>, 'halt' | 'reopenRegions' | 'startHeartbeats' | 'startRefusal' | 'admitEpoch' | 'adminOpenRefusal' | 'openRegion' | 'closeRegion' | 'fenceRegion' | 'replicaStats' | 'reportedStats'> | undefined;
}

/** Which peer of a region a node hosts, on which store (a wiped disk has a new one), and whether it bootstraps the group. */
interface Placement {
  readonly peerId: number;
  readonly storeId: number;
  readonly bootstrap: boolean;
}

/**
 * A replica lost to a storage fault (its log damaged, or its disk wiped) being replaced on its
 * own node under a fresh peer id — what the metasrv's repair-replica does (src/metasrv/procedures/
 * repair-replica.ts: clear-old, add-learner, catch-up, promote, remove-old), driven by the
 * harness from the leader's applied membership, so a crash or a lost proposal only delays it.
 */
interface Repair {
  readonly regionId: string;
  readonly nodeId: number;
  readonly oldPeerId: number;
  readonly cause: 'damaged' | 'wiped';
  newPeerId: number | undefined;
  /** Virtual ms of the last membership change proposed (one at a time, retried after a pause). */
  proposedAtMs: number;
  /** The incarnation deleting the old replica's data, while it does (a crash ends it). */
  clearingBy: Incarnation | undefined;
}

interface Client {
  readonly id: number;
  process: number;
  /** The node this client sends to, per region (a leader hint moves it). */
  readonly target: Map<string, number>;
  busy: boolean;
  /** The DDL client's writer: called when an operation ended (instead of the workload's next step). */
  onDone?: () => void;
  /** What a fresh process id adds after an unknown outcome (default: the number of clients). */
  processStride?: number;
  /** With `followers`: a reader's route cache (it only reads, choosing its node as the client library does). */
  route?: ReaderRoute;
}

/**
 * A reader's cached route of the register region, as src/client/client.ts keeps one: the leader
 * the metasrv named when the routes were fetched (or a hint since), refreshed after
 * ROUTES_REFRESH_MS (LEADERLESS_ROUTES_REFRESH_MS when it names none), and the nodes it could
 * not reach, avoided for DOWN_AVOID_MS.
 */
interface ReaderRoute {
  leader: number | undefined;
  fetchedAt: number;
  readonly downUntil: Map<number, number>;
}

/** src/client/client.ts's ROUTES_REFRESH_MS, LEADERLESS_ROUTES_REFRESH_MS and DOWN_AVOID_MS. */
const ROUTES_REFRESH_MS = 5000;
const LEADERLESS_ROUTES_REFRESH_MS = 1000;
const DOWN_AVOID_MS = 3000;
/** With `followers`: read-only clients beside the workload's, and their process ids (far above any client's). */
const FOLLOWER_READERS = 4;
const READER_PROCESS_BASE = 2_000_000;
/** A reader's retries (src/client/client.ts BACKOFF_MIN_MS, BACKOFF_MAX_MS) within a deadline below the simulator's operation timeout. */
const READER_BACKOFF_MS_MIN = 20;
const READER_BACKOFF_MS_MAX = 200;
const READER_DEADLINE_MS = 400;
/** With `flap`: the share of restarts that die again, and how long such a process lives. */
const FLAP_CHANCE = 0.3;
const FLAP_UP_MS_MIN = 20;
const FLAP_UP_MS_MAX = 150;

type Outcome = 'ok' | 'fail' | 'info';

/**
 * What names SSTs for the `referenced object deleted` check (ClusterSim.namers): who, the SSTs,
 * and why it is not held (exempt: a cut-off peer; refusedCopy: a restored copy's snapshot) with
 * what the counters split out of an exemption (freshContact, entriesLeft).
 */
interface SstNamer {
  readonly who: string;
  readonly ssts: readonly string[];
  readonly exempt?: true;
  readonly refusedCopy?: true;
  readonly freshContact?: true;
  readonly entriesLeft?: true;
}

export class ClusterSim {
  private readonly rand: SeededRand;
  private readonly sched = new SimScheduler();
  private readonly net: SimNetwork;
  private readonly nodes = new Map<number, SimNode>();
  private readonly clients: Client[] = [];
  private readonly history: HistoryEvent[] = [];
  private readonly setHistory: HistoryEvent[] = [];
  private hash = 0x811c9dc5;
  private readonly tail: string[] = [];
  /** The whole trace of this run (for the events a history violation names). */
  private readonly trace: string[] = [];
  private faults = true;
  private violation: ClusterSimViolation | undefined;
  /** `region/index` → the command applied there (every replica must apply the same). */
  private readonly appliedAt = new Map<string, string>();
  private nextValue = 1;
  private readonly written = new Map<string, number[]>();
  private incarnations = 0;
  private crashes = 0;
  /** Quiescence: the client lull in progress (clients wait until then), and what the probe saw. */
  private lullUntil = 0;
  private readonly lullRand: Rand;
  private readonly quiescedSeen = new Set<string>();
  private readonly nodeDownSince = new Map<number, number>();
  private readonly quiesceCounts = { quiesced: 0, woken: 0, wokenAfterLeaderDown: 0, quiescedCrashed: 0 };
  private elections = 0;
  private transfers = 0;
  private opCounts = { ok: 0, fail: 0, info: 0 };
  /** Why operations failed or ended unknown (digits folded), for the run summary. */
  private readonly reasons = new Map<string, number>();
  /** Engine mode: the cluster's object store (undefined in register mode). */
  private readonly objectStore: SimObjectStore | undefined;
  /** Engine mode: the version (raft index) of the write that set each acknowledged value (CAS expects it). */
  private readonly versions = new Map<number, number>();
  /** Engine mode: the last request id of each client (dedup ids grow, as the client library's do). */
  private readonly requestIds = new Map<number, number>();
  /** Engine mode: SST keys named by a manifest object, decoded once per put of it (objects are write-once, but a put racing another can still land on a key). */
  private readonly manifestSsts = new Map<string, readonly string[]>();
  private flushEdits = 0;
  /** Uploads the flushers left as orphans because their put took half the grace or more (G4). */
  private uploadsNotProposed = 0;
  private compactionEdits = 0;
  private sstsPut = 0;
  private sstsDeleted = 0;
  /** SST deletes that a peer cut off by its removal named (exempt from the check: cutOffByRemoval). */
  private deletesNamedByCutOff = 0;
  /** Of those, deletes named by a cut-off replica's version exempt only by leader contact received within the stale-read bound (seed 7492). */
  private deletesNamedByFreshContact = 0;
  /** Of those, deletes named by a cut-off replica's version with committed entries left to apply (it never learned its removal: seed 7283). */
  private deletesNamedWithEntriesLeft = 0;
  /** Deletes of SSTs only a refused copy's durable snapshot named (not held: "A refused copy holds nothing", docs/simulation.md). */
  private deletesNamedByRefusedCopy = 0;
  private manifestsPut = 0;
  /**
   * Manifest puts that landed on a key already holding one (objects are write-once; the flusher
   * adopts a manifest already at its flushed index, so only a put racing another writer's — a
   * deposed leader's in flight, or a failed put of its own that landed late — still does this).
   */
  private manifestsRewritten = 0;
  /** Engine mode: writes sent again with the same request id. */
  private retries = 0;
  /** The third slice's faults (ClusterSimOptions.faults), and their own random stream (forked only when any is on). */
  private readonly extra: ReadonlySet<ExtraFault>;
  private readonly faultRand: Rand | undefined;
  /** With `refuse`: its own random stream (forked last, only when on). */
  private refuseRand: Rand | undefined;
  /** With `balance`: the metasrv's leader placement this seed runs with (balancePlacementOf). */
  private placement: ReturnType<typeof balancePlacementOf> | undefined;
  /** With `marks`: late copies of client writes (its own stream, forked after `refuse`'s, only when on). */
  private lateRand: Rand | undefined;
  /** With `pause`: its own stream, and the pauses it made. */
  private pauseRand: Rand | undefined;
  private pauses = 0;
  /** region → node → the peer it hosts there (the harness's catalog; replaced peers get fresh ids). */
  private readonly placements = new Map<string, Map<number, Placement>>();
  private nextPeerId: number;
  /** Lost replicas being replaced, by region (at most one per region: faults wait until every region is whole). */
  private readonly repairs = new Map<string, Repair>();
  /** Replica failures a fault caused (`node/region/peer`): expected, not violations. */
  private readonly expectedFailures = new Set<string>();
  /**
   * Nodes whose disk was put back from a copy (`restore`) and not wiped since. When the metasrv
   * cannot refuse the start (its catalog restored from a copy older still: docs/failover.md, "A
   * data dir restored from a copy"), a replica there may meet a leader committing past its
   * rolled-back log and fail (R3, "this log lost entries it acknowledged"): the safety net,
   * expected (`failureExpected`; engine seed 2114 of the wide mix).
   */
  private readonly restoredDisks = new Set<number>();
  /** Engine mode: `region/client/request id` → the log index where that write took effect. */
  private readonly tookEffectAt = new Map<string, number>();
  /** Incarnations whose start the metasrv refused as a restored copy (the `restore` fault). */
  private readonly refusedStarts = new Set<Incarnation>();
  /**
   * Store ids of the disks those starts ran on: the metasrv's record of a store's starts only grows,
   * so a copy it refused is refused at every later start too, and reopens no replica until the
   * operator moves it aside (a wipe: a new store id).
   */
  private readonly refusedStores = new Set<number>();
  private readonly storageStats = { corruptions: 0, wipes: 0, restores: 0, restoresRefused: 0, repairs: 0, clockSteps: 0, rawWrites: 0, clientRestarts: 0, tooOld: 0 };
  /** With `close`: what the fault did (ClusterSimResult.closes). */
  private readonly closeStats = { closes: 0, leaders: 0, proposalsInFlight: 0, reopens: 0 };
  /** The regions (ids depend on `metasrv`): the register region and the set region. */
  private readonly regionIds: readonly string[];
  private readonly regReg: string;
  private readonly regSet: string;
  /** With `metasrv`: the simulated metasrv process, its random stream, and what it did. */
  private readonly meta: SimMetasrv | undefined;
  private readonly metaRand: Rand | undefined;
  private readonly metaStats = { clockSteps: 0, crashesMidProcedure: 0, instructions: {} as Record<string, number> };
  /** With `metasrv`: the `healthy node` and `heartbeat cadence` checkers (sim-spurious.ts). */
  private readonly healthy: HealthyNodeChecker | undefined;
  /** With `drain` (sim-drain.ts). */
  private drain: DrainNemesis | undefined;
  /** With `metasrv`: the `report view` checker (sim-report-view.ts: delta heartbeats). */
  private readonly reportView: ReportViewChecker | undefined;
  /** With `metasrv` and `stall` or `twin`: their own stream (forked last, only then). */
  private readonly spuriousRand: Rand | undefined;
  /** The store id the metasrv's catalog was last seen to name for each node (H3: a change is a wipe or a second process). */
  private readonly catalogStores = new Map<number, string>();
  /** With `twin`: the second process running with a node's id, if any. */
  private twin: { inc: Incarnation; nodeId: number; storeId: string; addr: string; core: DatanodeCore<RegisterMachine, boolean> } | undefined;
  private twins = 0;
  private readonly spuriousStats = { stalls: 0, twins: 0 };
  /** With `metasrv` and `metaloss` or `metarestore`: the catalog's loss and restore (test/sim/sim-catloss.ts). */
  private readonly catloss: CatalogLossNemesis | undefined;
  /** With `ddl` (and `metasrv`): the DDL client, its writer, and what changes with it. */
  private readonly ddl: SimDdlClient | undefined;
  private readonly ddlWriter: Client = { id: 100, process: 100, target: new Map(), busy: false };
  /** Region id → its group's generation (a region id re-used by a new table after a catalog loss is a new group). */
  private readonly regionGeneration = new Map<string, number>();
  private catalogWasLost = false;
  /** With `followers`, `queues` or `flap` (the read path's faults): their own random stream. */
  private readonly readRand: Rand | undefined;
  /** With `queues`: the raft transport's per-peer queues (test/sim/sim-peer-queues.ts). */
  private readonly peerQueues: SimPeerQueues | undefined;
  /** With `followers`: read-only clients that choose their node by the client library's route cache. */
  private readonly readers: Client[] = [];
  /**
   * With the read path's faults: ReadIndex context → the processes (incarnation numbers) that
   * issued it, and what the answers crossing a restart met (docs/simulation.md, finding 8b).
   */
  private readonly readContexts = new Map<string, number[]>();
  /** Process (incarnation number) → the sequence number of its last ReadIndex request. */
  private readonly issuedBy = new Map<number, number>();
  private readonly readPathStats = {
    readerReads: 0,
    readerReadsOnFollowers: 0,
    answersToFollowers: 0,
    answersCrossingRestart: 0,
    answersMeetingSameSeq: 0,
    /** Answers crossing a restart whose index is below the region leader's commit index when they arrive. */
    answersCrossingBehindCommit: 0,
    /** For each answer crossing a restart: its sequence number minus the last one the receiving process issued. */
    crossingSeqGaps: [] as number[],
  };

  constructor(private readonly options: ClusterSimOptions) {
    this.regionIds = options.metasrv ? METASRV_REGIONS : REGIONS;
    this.regReg = this.regionIds[0]!;
    this.regSet = this.regionIds[1]!;
    this.rand = new SeededRand(options.seed);
    this.net = new SimNetwork(this.sched, this.rand.fork(), { delayMsMin: 1, delayMsMax: 12, dropChance: 0.03, dupChance: 0.02 }, (from, to, envelope) =>
      this.deliver(from, to, envelope),
    );
    const Disk = { 'cut-damaged-tail': CutDamagedTailDisk, 'refuse-node': RefuseNodeDisk, none: SimDisk }[options.walBug ?? 'none'];
    // With `spare`, one more datanode that the catalog places nothing on at first (sim-spurious.ts).
    const spare = options.faults?.includes('spare') ?? false;
    if (spare && !options.metasrv) throw new Error('the spare datanode needs the metasrv (METASRV=1): only its repairs move replicas');
    // With `drain`, the same fourth datanode: where the drained node's replicas go (sim-drain.ts).
    const drain = options.faults?.includes('drain') ?? false;
    if (drain && !options.metasrv) throw new Error('drain needs the metasrv (METASRV=1): its drain-node procedure moves the replicas');
    for (let id = 1; id <= options.nodes + (spare || drain ? 1 : 0); id++) {
      const disk = new Disk(this.sched, this.rand.fork(), { fsyncMsMin: 1, fsyncMsMax: 8 });
      const node: SimNode = {
        id,
        disk,
        incarnation: new Incarnation(id, 0),
        server: undefined,
        flusher: undefined,
        restartAt: 0,
        wallOffsetMs: 0,
        pendingDamage: new Set(),
        pendingWipe: false,
        diskCopy: undefined,
        core: undefined,
      };
      disk.onSyncStart = () => this.maybeCrashDuringSync(node);
      this.nodes.set(id, node);
    }
    for (let c = 0; c < options.clients; c++) this.clients.push({ id: c, process: c, target: new Map(this.regionIds.map((r) => [r, 1 + this.rand.int(options.nodes)])), busy: false });
    // Forked last, and only in engine mode: the register mode's random stream (and so its
    // trace hashes) stay what they were.
    if (this.engine) {
      // With `slow`, a slow tail of 150 ms–1.5 s (the GC grace is 200 ms) on 3 % of requests.
      const slow = options.faults?.includes('slow') ? SIM_SLOW_TAIL : {};
      this.objectStore = new SimObjectStore(this.sched, this.rand.fork(), { latencyMsMin: 1, latencyMsMax: 10, failChance: 0.01, ...slow });
      this.objectStore.onDelete = (key) => this.checkDeleted(key);
      this.objectStore.onPut = (key, previous) => {
        this.manifestSsts.delete(key); // the checker's decoded copy must not outlive an overwrite
        if (key.endsWith('.sst')) {
          this.sstsPut++;
          this.record(`put ${shortKey(key)}`);
        } else if (key.startsWith(manifestPrefix(key.split('/')[1] ?? ''))) {
          this.manifestsPut++;
          if (previous) this.manifestsRewritten++;
          this.ddl?.onManifestPut(key.split('/')[1] ?? '');
        }
      };
    }
    this.extra = new Set(options.faults ?? []);
    // Forked after everything else, and only with a fault of the third slice on: without one,
    // every earlier stream (and so every trace hash) stays what it was.
    // `dropwrite` only adds the DDL client's probes (no randomness): `ddl,dropwrite` runs as `ddl` does until a drop is answered.
    // `balance` only changes the metasrv's settings (no randomness of its own).
    this.faultRand = [...this.extra].some((f) => f !== 'ddl' && f !== 'dropwrite' && f !== 'balance') ? this.rand.fork() : undefined;
    for (const regionId of this.regionIds) this.placements.set(regionId, new Map(this.replicaNodeIds().map((id) => [id, { peerId: id, storeId: 1, bootstrap: true }])));
    this.nextPeerId = options.nodes + 1;
    this.lullRand = this.rand.fork();
    // Forked after every other stream, and only with the metasrv on: without it every trace
    // hash stays what it was.
    if (options.metasrv) {
      this.metaRand = this.rand.fork();
      const storage = new SimCatalogStorage(this.sched, this.metaRand.fork());
      storage.durable = encodeCatalog(this.initialCatalog());
      // With `catalog`, 10 % of catalog saves fail while faults run (the metasrv stops acting until one succeeds).
      if (options.faults?.includes('catalog')) storage.failChance = 0.1;
      // The disks start empty: the catalog places a replica of both regions on each node, not
      // yet bootstrapped, so each node's registration answer opens them (bootstrapping).
      // With `ddl`, its own stream (forked after the metasrv's), the Admin service the metasrv's
      // CreateTable calls, and (engine mode) the object store the metasrv lists at start.
      const ddlRand = this.extra.has('ddl') ? this.rand.fork() : undefined;
      const adminRand = ddlRand?.fork();
      const objectStore = this.objectStore;
      const reach = adminRand
        ? {
            admin: (inc: Incarnation) =>
              simDatanodeAdmin(this.sched, adminRand, inc, (addr) => {
                const node = [...this.nodes.values()].find((n) => `n${n.id}` === addr);
                return node?.core ? { core: node.core, inc: node.incarnation } : undefined;
              }, () => this.faults),
            ...(objectStore ? { objectStore: (inc: Incarnation) => objectStore.viewFor(inc) } : {}),
          }
        : undefined;
      // With the catalog's loss or restore on (and only then: every other trace stays), a start
      // in engine mode lists the object store for its table id floor, as a metasrv with [storage] does.
      const catlossKinds = new Set(options.faults?.filter((f): f is CatalogLossFault => f === 'metaloss' || f === 'metarestore'));
      const withStorage = this.engine && catlossKinds.size > 0;
      const factory = options.metasrvCore ?? (options.catlossBug && catlossMetasrvCore(options.catlossBug)) ?? realMetasrvCore;
      const baseConfig = simMetasrvConfig(HEARTBEAT_MS, withStorage || (reach !== undefined && objectStore !== undefined));
      const spareConfig = spare ? { ...baseConfig, replica_repair_after_ms: SPARE_REPAIR_AFTER_MS } : baseConfig;
      // With `balance`: the periodic leader check on, with the seed's placement (no randomness drawn).
      this.placement = this.extra.has('balance') ? balancePlacementOf(options.seed) : undefined;
      const config = this.placement ? { ...spareConfig, balance_leaders_interval_ms: BALANCE_INTERVAL_MS, ...this.placement } : spareConfig;
      this.meta = new SimMetasrv(this.sched, this.metaRand.fork(), storage, config, factory, SIM_EPOCH_MS, (e) => this.record(e), reach);
      this.ddl = ddlRand ? new SimDdlClient(this.ddlHost(this.meta), ddlRand, options.clientBug === 'create-token-per-attempt') : undefined;
      const store = this.objectStore;
      if (withStorage && store) this.meta.objectStoreFor = (inc) => store.viewFor(inc);
      // Forked last, only with one of them on.
      if (catlossKinds.size > 0) this.catloss = new CatalogLossNemesis(this.sched, this.metaRand.fork(), this.meta, catlossKinds, () => this.regionIds.every((r) => this.regionWhole(r)), (e) => this.record(e), (known) => this.ddl?.catalogRolledBack(known));
      // No events and no randomness: the checkers only look (traces stay what they were).
      const healthy = new HealthyNodeChecker(
        {
          acceptablePauseMs: config.failure_detector.acceptable_pause_ms,
          replicaRepairAfterMs: config.replica_repair_after_ms,
          heartbeatIntervalMs: HEARTBEAT_MS,
        },
        this.sched,
        (invariant, detail) => this.flag(invariant, `${detail} (${this.status()})`),
      );
      this.healthy = healthy;
      this.reportView = new ReportViewChecker((invariant, detail) => this.flag(invariant, `${detail} (${this.status()})`));
      this.meta.onArrival = (caller, method) => {
        if (method === 'Heartbeat') healthy.heartbeatArrived(caller.nodeId);
      };
      const meta = this.meta;
      this.meta.onHandled = (caller, method, core) => {
        if (method === 'Heartbeat') this.drain?.afterHeartbeat(core);
        this.noteHandled(meta, caller, method, core);
      };
      this.meta.afterTick = (core) => {
        this.drain?.afterTick(core);
        this.noteCatalogStores(core.catalog);
        healthy.checkProcedures(
          core.catalog,
          (nodeId, regionId, peerId) => this.lostPeerFact(nodeId, regionId, peerId),
          (regionId, peerId) => [...this.nodes.values()].some((n) => n.server?.replica(regionId)?.raft.confState().learners.includes(peerId) === true),
        );
      };
      if (this.extra.has('stall')) this.meta.stallable = true;
      if (this.extra.has('stall') || this.extra.has('twin') || spare) this.spuriousRand = this.rand.fork();
      // With `slowdrop`, its own stream, forked after the metasrv's and only when on (without it, every stream stays).
      if (this.extra.has('slowdrop')) {
        const dropRand = this.rand.fork();
        for (const node of this.nodes.values()) node.disk.dropDelayMs = () => SLOW_DROP_MS_MIN + dropRand.int(SLOW_DROP_MS_MAX - SLOW_DROP_MS_MIN + 1);
      }
    } else if (this.extra.has('balance')) {
      throw new Error('balance needs the metasrv (METASRV=1): its balance-leaders procedure moves the leaders');
    } else if (this.extra.has('slowdrop')) {
      throw new Error('slowdrop needs the metasrv (METASRV=1): the harness\'s stand-in repair reopens a replica right after deleting it');
    }
    // The read path's faults: their own stream, forked after every other one and only with one
    // of them on (every other trace stays what it was).
    if (this.extra.has('followers') || this.extra.has('queues') || this.extra.has('flap')) {
      const readRand = this.rand.fork();
      this.readRand = readRand;
      if (this.extra.has('queues')) {
        this.peerQueues = new SimPeerQueues(
          this.sched,
          readRand.fork(),
          this.net,
          (nodeId) => {
            const node = this.nodes.get(nodeId);
            return node?.server ? node.incarnation : undefined;
          },
          (from, to, envelope) => {
            const node = this.nodes.get(to.nodeId);
            if (node?.incarnation === to && node.server) this.deliver(from, to.nodeId, envelope);
          },
          (e) => this.record(e),
        );
      }
      if (this.extra.has('followers')) {
        for (let r = 0; r < FOLLOWER_READERS; r++) {
          this.readers.push({
            id: 200 + r,
            process: READER_PROCESS_BASE + r,
            processStride: FOLLOWER_READERS,
            target: new Map(),
            busy: false,
            route: { leader: undefined, fetchedAt: Number.NEGATIVE_INFINITY, downUntil: new Map() },
          });
        }
      }
    }
    // The `drain` fault: its own stream, forked after every other one and only when on.
    this.startDrain();
    // The `refuse` fault: its own stream, forked after `drain`'s, only when on.
    if (this.extra.has('refuse')) {
      this.refuseRand = this.rand.fork();
      this.sched.at(REFUSE_FALSE_EVERY_MS, () => this.falseRefusal());
    }
    // The `marks` fault: its own stream, forked after `refuse`'s, only when on.
    if (this.extra.has('marks')) this.lateRand = this.rand.fork();
    // The `pause` fault: its own stream, forked after `marks`'s, only when on.
    if (this.extra.has('pause')) this.pauseRand = this.rand.fork();
  }

  /**
   * With `marks`: now and then an attempt of a client write is proposed once more, later, to the
   * region's leader of that moment — a copy nobody waits for, as a datanode router's forwarded part
   * that outlived the client's attempt (docs/performance.md, "Failover at 1,000 regions: the
   * client's part") arrives after the client moved on. Only a copy of an attempt whose outcome is
   * not "failed" for the client (answered from or into the dedup table, or unknown), so that a
   * write the client was told failed never takes effect. Dedup must answer it from the table, or
   * refuse it as too old once a later request's session mark passed it: never apply it twice.
   */
  private lateCopy(regionId: string, bytes: Uint8Array, requestId: number, clientId: number): void {
    const rand = this.lateRand;
    if (!rand?.chance(LATE_COPY_CHANCE)) return;
    this.sched.at(this.sched.now + LATE_COPY_MS_MIN + rand.int(LATE_COPY_MS_MAX - LATE_COPY_MS_MIN), () => {
      const leader = this.leaderOf(regionId);
      const server = leader === undefined ? undefined : this.nodes.get(leader)?.server;
      if (!server) return;
      this.record(`late copy of request ${requestId} of client ${clientId} to n${leader}`);
      try {
        server.propose(regionId, bytes).then(
          () => {},
          () => {},
        );
      } catch {
        // refused before raft saw it: the copy is lost, as the network may lose it
      }
    });
  }

  /** With `refuse`: now and then a running node is told that a live node refused a connection. */
  private falseRefusal(): void {
    const rand = this.refuseRand!;
    if (this.faults) {
      const up = [...this.nodes.values()].filter((n) => n.server);
      if (up.length >= 2) {
        const at = rand.pick(up);
        const live = rand.pick(up.filter((n) => n !== at));
        this.record(`refused: n${live.id} (up) at n${at.id}`);
        at.server!.peerRefused(live.id);
      }
    }
    this.sched.at(this.sched.now + REFUSE_FALSE_EVERY_MS / 2 + rand.int(REFUSE_FALSE_EVERY_MS), () => this.falseRefusal());
  }

  /** With `refuse`: the nodes running when `node` crashed hear, 1–60 ms later, that its address refuses (if it is still down). */
  private refuseAfterCrash(node: SimNode): void {
    const rand = this.refuseRand!;
    for (const other of this.nodes.values()) {
      if (other === node || !other.server) continue;
      const inc = other.incarnation;
      this.sched.at(this.sched.now + 1 + rand.int(60), () => {
        if (node.server || other.incarnation !== inc || !other.server) return;
        this.record(`refused: n${node.id} (down) at n${other.id}`);
        other.server.peerRefused(node.id);
      });
    }
  }

  /** The `drain` fault (sim-drain.ts): built last, with its own stream, only when on. */
  private startDrain(): void {
    const meta = this.meta;
    if (!this.extra.has('drain') || !meta) return;
    const drain = new DrainNemesis(
      {
        sched: this.sched,
        meta,
        drainable: () => this.replicaNodeIds(),
        server: (nodeId) => this.nodes.get(nodeId)?.server,
        leaderOf: (regionId) => this.leaderOf(regionId),
        record: (e) => this.record(e),
        faultsOn: () => this.faults,
        connected: () => this.net.cut.size === 0,
        lastLossAt: (regionId) => this.net.lastLossAt(regionId),
        allUp: () => [...this.nodes.values()].every((n) => n.server !== undefined),
        isolate: (nodeId) => {
          const added: string[] = [];
          for (const other of this.nodes.keys()) {
            if (other === nodeId) continue;
            for (const link of [`${nodeId}->${other}`, `${other}->${nodeId}`]) {
              if (this.net.cut.has(link)) continue;
              this.net.cut.add(link);
              added.push(link);
            }
          }
          return () => {
            for (const link of added) this.net.cut.delete(link);
          };
        },
        crash: (nodeId, why, downMs) => {
          const node = this.nodes.get(nodeId);
          if (node) this.crash(node, why, downMs);
        },
        flag: (invariant, detail) => this.flag(invariant, `${detail} (${this.status()})`),
      },
      this.rand.fork(),
    );
    this.drain = drain;
    if (this.healthy) this.healthy.drained = () => drain.drained;
  }

  /** The nodes the initial placement puts a replica of each region on: all but the `spare` one. */
  private replicaNodeIds(): number[] {
    return [...this.nodes.keys()].filter((id) => id <= this.options.nodes);
  }

  /**
   * Whether the end-of-run checks expect a replica of `regionId` on `nodeId`: always, except
   * with `spare` or `drain`, where a region has a replica only where the metasrv's catalog places
   * one (replicas move) — or, once a lost or restored catalog forgot the region, where one runs.
   */
  private hosts(nodeId: number, regionId: string): boolean {
    if (!this.extra.has('spare') && !this.extra.has('drain')) return true;
    const catalog = this.meta?.core?.catalog;
    if (!catalog) return true;
    const region = catalog.regions[regionId];
    if (region) return region.replicas.some((p) => p.nodeId === nodeId);
    // A catalog lost or restored from a copy without the region places it nowhere: its group
    // keeps it where it runs (the catalog-loss checker sees every voter still running), or, while
    // it runs nowhere (nodes waiting for their registration), anywhere. Where it runs outside its
    // group's newest membership (a removed peer cut off before it learned it: engine seed 2221 of
    // the wide mix), nothing deletes it and nothing is owed there (`newestMembership`).
    const runs = (id: number) => this.nodes.get(id)?.server?.replica(regionId) !== undefined;
    if (!runs(nodeId)) return ![...this.nodes.keys()].some(runs);
    const members = this.newestMembership(regionId);
    return members === undefined || members.has(this.nodes.get(nodeId)!.server!.replica(regionId)!.selfPeerId);
  }

  /** The catalog the table's creation left: one table, two regions with a replica (peer id = node id) on each node; no node registered yet. */
  private initialCatalog(): CatalogState {
    const catalog = emptyCatalog(SIM_CLUSTER_ID);
    catalog.tables['sim'] = { name: 'sim', tableId: 1024, columns: ENGINE_SCHEMA.columns, regionCount: this.regionIds.length };
    this.regionIds.forEach((regionId, regionNumber) => {
      catalog.regions[regionId] = {
        regionId,
        tableName: 'sim',
        regionNumber,
        replicas: this.replicaNodeIds().map((nodeId) => ({ peerId: nodeId, nodeId })),
        leaderNodeId: 0,
        confVersion: 1,
        confIndex: 0,
        bootstrapped: false,
      };
    });
    catalog.nextTableId = 1025;
    catalog.nextPeerId = this.options.nodes + 1;
    return catalog;
  }

  /** How long after healing the liveness checkers wait (longer with the metasrv: its procedures re-send every 3 s). */
  private get livenessBoundMs(): number {
    return this.meta ? Math.max(this.options.livenessMs, METASRV_LIVENESS_MS) : this.options.livenessMs;
  }

  private get engine(): boolean {
    return this.options.mode === 'engine';
  }

  async run(): Promise<ClusterSimResult> {
    let passed = false;
    try {
      const result = await this.runUnchecked();
      passed = true;
      return result;
    } catch (err) {
      if (err instanceof ClusterSimViolation) throw err;
      if (err instanceof AssertionError) this.fail('host or core assertion', err.message);
      throw err;
    } finally {
      this.writeTraceFile(passed ? 'passed' : (this.violation?.invariant ?? 'stopped by an error'));
    }
  }

  /** With `traceFile` (SIM_TRACE_FILE): the whole trace, after a header line naming the run. Only reads the run. */
  private writeTraceFile(outcome: string): void {
    const path = this.options.traceFile?.replaceAll('{seed}', String(this.options.seed));
    if (!path) return;
    const header = `# seed ${this.options.seed}: trace ${this.hash.toString(16).padStart(8, '0')}, ${this.trace.length} events, ${outcome}; replay: ${this.plantedEnv()}SIM_CLUSTER_SEED=${this.options.seed}`;
    writeFileSync(path, `${header}\n${this.trace.join('\n')}\n`);
  }

  private async runUnchecked(): Promise<ClusterSimResult> {
    // With `drain`, the faults run longer: a drain takes seconds, and its removals should meet them.
    const faultMs = this.extra.has('drain') ? Math.max(this.options.faultMs, DRAIN_FAULT_MS) : this.options.faultMs;
    this.meta?.start();
    for (const node of this.nodes.values()) this.startNode(node);
    this.ddl?.start();
    // Client load and the nemesis, as events on the one scheduler.
    for (const client of this.clients) this.sched.at(this.rand.int(50), () => this.clientStep(client));
    for (const reader of this.readers) this.sched.at(this.readRand!.int(50), () => this.readerStep(reader));
    this.scheduleNemesis(100);
    this.scheduleLull(200);
    this.probeQuiescence();
    if (!this.meta && (this.extra.has('corrupt') || this.extra.has('wipe'))) this.scheduleRepairs();
    await this.sched.runUntil(faultMs, () => this.violation !== undefined);
    this.throwIfViolated();

    // Heal: no more faults; down nodes come back; clients stop issuing new operations.
    this.faults = false;
    this.net.faulty = false;
    this.net.cut.clear();
    if (this.objectStore) {
      this.objectStore.faulty = false;
      this.objectStore.outageUntil = Math.min(this.objectStore.outageUntil, this.sched.now);
    }
    this.record('heal');
    this.stopTwin();
    if (this.meta) {
      this.meta.faulty = false;
      this.meta.storage.faulty = false;
      if (!this.meta.up) this.meta.start();
    }
    for (const node of this.nodes.values()) if (!node.server) this.startNode(node);
    // `pause`: a pause under way ends before the liveness bounds start (a pause is not cut short).
    const pausesEnd = Math.max(...[...this.nodes.values()].map((n) => (n.server ? n.incarnation.pausedUntil : 0)));
    if (pausesEnd > this.sched.now) await this.sched.runUntil(pausesEnd, () => this.violation !== undefined);
    let deadline = this.sched.now + this.livenessBoundMs;
    // Let outstanding client operations finish or time out, then read everything.
    await this.sched.runUntil(this.sched.now + OP_TIMEOUT_MS + 10, () => this.violation !== undefined);
    this.throwIfViolated();
    if (this.ddl) await this.waitForDdl(this.ddl, deadline);
    if (this.meta) await this.waitForMetasrv(deadline);
    else await this.waitForRepairs(deadline);
    // With `metarestore`: a backup from before a repair restored now, and the metasrv settled again.
    if (this.catloss?.restoreAfterHealing()) {
      deadline = this.sched.now + this.livenessBoundMs;
      await this.waitForMetasrv(deadline);
    }
    if (this.placement) await this.waitForPlacement(this.placement);
    await this.finalReads(deadline);
    this.throwIfViolated();
    await this.checkConvergence(deadline);
    this.checkHistories();
    if (this.ddl) await this.checkDdl(this.ddl, deadline);
    if (this.engine) {
      await this.checkAcknowledgedRowsReadable();
      this.checkObjectsExist();
    }
    this.throwIfViolated(); // the quiescence probe flags from a scheduler event
    const store = this.objectStore;
    return {
      seed: this.options.seed,
      traceHash: this.hash.toString(16).padStart(8, '0'),
      events: this.sched.fired,
      ops: this.opCounts,
      acknowledgedAdds: this.setHistory.filter((e) => e.type === 'ok' && e.f === 'add').length,
      crashes: this.crashes,
      elections: this.elections,
      leaderTransfers: this.transfers,
      endMs: this.sched.now,
      reasons: [...this.reasons].sort((a, b) => b[1] - a[1]).slice(0, 6),
      quiescence: { ...this.quiesceCounts },
      storage: { ...this.storageStats },
      ...(this.meta ? { metasrv: this.metasrvSummary(this.meta) } : {}),
      ...(this.ddl ? { ddl: { ...this.ddl.stats } } : {}),
      ...(this.extra.has('close') ? { closes: { ...this.closeStats } } : {}),
      ...(this.pauseRand ? { pauses: this.pauses } : {}),
      ...(this.readRand ? { readPath: { ...this.readPathStats, crossingSeqGaps: [...this.readPathStats.crossingSeqGaps], ...(this.peerQueues ? { queues: { ...this.peerQueues.stats } } : {}) } } : {}),
      ...(store
        ? {
            engine: {
              sstsPut: this.sstsPut,
              sstsDeleted: this.sstsDeleted,
              deletesNamedByCutOff: this.deletesNamedByCutOff,
              deletesNamedByFreshContact: this.deletesNamedByFreshContact,
              deletesNamedWithEntriesLeft: this.deletesNamedWithEntriesLeft,
              deletesNamedByRefusedCopy: this.deletesNamedByRefusedCopy,
              manifestsPut: this.manifestsPut,
              manifestsRewritten: this.manifestsRewritten,
              storeFailures: store.stats.failures,
              slowRequests: store.stats.slow,
              uploadsNotProposed: this.uploadsNotProposed,
              flushEdits: this.flushEdits,
              compactionEdits: this.compactionEdits,
              retries: this.retries,
            },
          }
        : {}),
    };
  }

  // ─── Trace and failures ─────────────────────────────────────────────────────────────────────

  private record(event: string): void {
    const line = `${this.sched.now} ${event}`;
    for (let i = 0; i < line.length; i++) {
      this.hash ^= line.charCodeAt(i);
      this.hash = Math.imul(this.hash, 0x01000193) >>> 0;
    }
    this.tail.push(line);
    this.trace.push(line);
    if (this.tail.length > this.options.traceTail) this.tail.shift();
  }

  private fail(invariant: string, detail: string): never {
    const v = new ClusterSimViolation(this.options.seed, invariant, detail, [...this.tail], this.plantedEnv());
    this.violation ??= v;
    throw this.violation;
  }

  /** For violations found inside callbacks of the production code (which would swallow a throw). */
  private flag(invariant: string, detail: string): void {
    this.violation ??= new ClusterSimViolation(this.options.seed, invariant, detail, [...this.tail], this.plantedEnv());
  }

  private throwIfViolated(): void {
    // The simulated disk never fails, so a node whose ready loop stopped (fatal) hit a bug.
    for (const node of this.nodes.values()) {
      const fatal = node.server?.fatalError();
      if (fatal) this.flag('node fatal', `n${node.id}'s ready loop stopped: ${fatal.message}`);
      // Only the `corrupt` fault damages a log (its failure is expected, and replaced by the
      // harness), nothing loses an object: any other replica that failed (it could not load or
      // apply) hit a bug.
      const failed = node.server?.failedReplicas().find((f) => !this.failureExpected(node, f));
      if (failed) this.flag('replica failed', `n${node.id}'s replica of ${failed.regionId} failed at index ${failed.index}: ${failed.reason}`);
    }
    if (this.violation) throw this.violation;
  }

  /**
   * Whether a replica failure on `node` is one the faults explain: its log was damaged (`corrupt`),
   * or R3 on a disk put back from a copy (`restoredDisks`). An R3 failure is remembered with the
   * damaged logs, for H3's facts (`lostPeerFact`) once the node is down again.
   */
  private failureExpected(node: SimNode, f: { readonly regionId: string; readonly selfPeerId: number; readonly reason: string }): boolean {
    const key = `${node.id}/${f.regionId}/${f.selfPeerId}`;
    if (this.expectedFailures.has(key)) return true;
    if (this.cutOffReplayFailure(node, f)) {
      this.expectedFailures.add(key);
      this.record(`n${node.id} ${f.regionId}: peer ${f.selfPeerId}, cut off by its removal, failed on an object GC owed it nothing (expected): ${f.reason.slice(0, 120)}`);
      return true;
    }
    if (!this.restoredDisks.has(node.id) || !f.reason.includes('this log lost entries it acknowledged')) return false;
    this.expectedFailures.add(key);
    return true;
  }

  /**
   * A peer cut off for good by its removal (`cutOffByRemoval`: it never learned it, and no replica
   * will send it anything or grant it a vote again) whose replay of its own committed log failed on
   * an object GC collected: GC owes such a peer nothing (the GC checker exempts it, E11), so the
   * failure is expected — reported failed, it is deleted as a removed replica (R1), and no group
   * needs its vote. Engine seed 5418 of `corrupt,wipe,restore,close,flap,drain,metarestore,catalog`
   * with the metasrv: n2's peer 2, closed by the `close` fault, restarted from its log (which
   * ends before its removal at ~226) and failed on a conditional write's SST at 206.
   */
  private cutOffReplayFailure(node: SimNode, f: { readonly regionId: string; readonly selfPeerId: number; readonly reason: string }): boolean {
    if (!this.engine || !/ not found/.test(f.reason) || node.disk.damage(f.regionId)) return false;
    const disk = node.disk.stores.get(f.regionId);
    return disk !== undefined && this.cutOffByRemoval(node, f.regionId, f.selfPeerId, disk, undefined);
  }

  private plantedEnv(): string {
    const { hostBug, coreBugs, gcBug, clientBug, walBug, wipeBug, dedupBug, metasrvBug, datanodeBug, catlossBug } = this.options;
    const core = coreBugs ? Object.keys(coreBugs).filter((k) => coreBugs[k as keyof PlantedBugs]) : [];
    const env = (name: string, value: string | undefined) => (value ? `SIM_CLUSTER_${name}=${value} ` : '');
    return `${this.engine ? 'SIM_CLUSTER_MODE=engine ' : ''}${env('FAULTS', [...this.extra].join(','))}${this.options.checkEveryDelete === false ? 'SIM_CLUSTER_CHECK_EVERY_DELETE=0 ' : ''}${this.options.leaseReads ? 'SIM_CLUSTER_LEASE_READS=1 ' : ''}${this.options.calmElections ? 'SIM_CLUSTER_CALM_ELECTIONS=1 ' : ''}${env('HOST_BUG', hostBug)}${env('CORE_BUG', core.join(','))}${env('GC_BUG', gcBug)}${env('FLUSHER_CHECK', this.options.flusherCheck)}${env('GC_QUIET_MS', this.options.gcQuietIntervalMs?.toString())}${env('CLIENT_BUG', clientBug)}${env('WAL_BUG', walBug)}${env('WIPE_BUG', wipeBug)}${env('RESTORE_BUG', this.options.restoreBug)}${env('GUARD_BUG', this.options.guardBug)}${env('DEDUP_BUG', dedupBug)}${this.meta ? 'SIM_CLUSTER_METASRV=1 ' : ''}${env('METASRV_BUG', metasrvBug)}${env('DATANODE_BUG', datanodeBug)}${env('CATLOSS_BUG', catlossBug)}`;
  }

  // ─── Nodes ──────────────────────────────────────────────────────────────────────────────────

  private startNode(node: SimNode): void {
    // What the WAL's open finds on the disk (damaged regions; a planted old rule may refuse the node).
    let damage: RegionDamage[];
    try {
      damage = node.disk.recover();
    } catch (err) {
      this.record(`start n${node.id} refused: ${String(err).slice(0, 120)}`);
      return;
    }
    const inc = new Incarnation(node.id, ++this.incarnations);
    const restarted = node.incarnation.number > 0;
    node.incarnation = inc;
    // With `flap`: a restarted process dies again soon, now and then (a crash loop).
    if (restarted && this.faults && this.extra.has('flap') && this.readRand!.chance(FLAP_CHANCE)) {
      const upMs = FLAP_UP_MS_MIN + this.readRand!.int(FLAP_UP_MS_MAX - FLAP_UP_MS_MIN + 1);
      this.sched.at(this.sched.now + upMs, () => {
        if (node.incarnation === inc && node.server && this.faults) this.crash(node, `flap after ${upMs}ms`);
      });
    }
    node.disk.owner = inc;
    // With the read path's faults every server is the subclass too, to see its ReadIndex contexts.
    const planted = this.options.hostBug !== undefined || this.options.coreBugs !== undefined || this.readRand !== undefined;
    const onReadContext = this.readRand ? (nodeId: number, ctx: string) => this.noteReadContext(nodeId, ctx) : undefined;
    // With the metasrv, the datanode core adds its own hooks (src/datanode/datanode-core.ts: a
    // membership change updates the region's meta; a replica removed from its group is kept,
    // answering raft, until the metasrv destroys it — R16).
    const simHooks: RegionServerHooks = {
      onRoleChange: (regionId: string, role: string, leader: number, term: number) => {
        if (role === 'leader') this.elections++;
        this.record(`role n${node.id} ${regionId} ${role} leader=${leader} t${term}`);
      },
    };
    const clock = this.sched.clockFor(inc);
    let server: Server | EngineServer;
    node.core = undefined;
    if (!this.engine) {
      const Host = planted ? plantedServer<RegisterMachine, boolean>(this.options.hostBug, this.options.coreBugs, onReadContext) : RegionServer<RegisterMachine, boolean>;
      const build = (hooks: RegionServerHooks): Server =>
        new Host(
          node.id,
          node.disk,
          this.transportFor(inc),
          { create: (regionId, data) => new RegisterMachine((index, command) => this.onApply(node.id, regionId, index, command), data) },
          this.tuning(TUNING),
          silentLogger,
          clock,
          { ...simHooks, ...hooks },
        );
      const fence = { encode: (tableId: number) => enc.encode(JSON.stringify({ op: 'fence', tableId })), of: (state: RegisterMachine) => state.dropFence };
      server = this.meta ? this.datanodeCore(node, inc, build, () => ({ flushedIndex: 0, memtableBytes: 0, ssts: 0 }), fence).regionServer : build({});
      node.flusher = undefined;
    } else {
      // What a datanode builds at start (src/datanode/datanode.ts), on simulated storage and time.
      const store = this.objectStore!.viewFor(inc);
      const readers = new SstReaders(store, clock);
      // The node's wall clock: virtual time, plus the steps of the `clock` fault.
      const wall: Clock = { nowMs: () => SIM_EPOCH_MS + this.sched.now + node.wallOffsetMs };
      const Host = planted ? plantedServer<RegionState, ApplyResult>(this.options.hostBug, this.options.coreBugs, onReadContext) : RegionServer<RegionState, ApplyResult>;
      const build = (hooks: RegionServerHooks): EngineServer =>
        new Host(
          node.id,
          node.disk,
          this.transportFor(inc),
          {
            create: (regionId, data) => {
              const dedupLimits = this.extra.has('evict') ? SIM_DEDUP_LIMITS : limits;
              const state = data ? RegionState.deserialize(ENGINE_SCHEMA, data, regionId, readers, wall, dedupLimits) : new RegionState(ENGINE_SCHEMA, regionId, readers, wall, dedupLimits);
              const dedupBug = this.options.dedupBug;
              return this.watchApplies(dedupBug ? plantDedupBug(state, dedupBug) : state, node.id, regionId);
            },
          },
          this.tuning(ENGINE_TUNING),
          silentLogger,
          clock,
          { ...simHooks, ...hooks },
        );
      // As the datanode reports its replicas (src/datanode/datanode.ts).
      const stat = (state: RegionState) => ({ flushedIndex: state.flushedIndex, memtableBytes: state.memtableBytes(), ssts: state.ssts.length });
      const fence = { encode: (tableId: number) => encodeCommand({ kind: 'drop-fence', tableId }), of: (state: RegionState) => state.dropFence };
      const engineServer = this.meta ? this.datanodeCore(node, inc, build, stat, fence).regionServer : build({});
      server = engineServer;
      const F = this.options.gcBug
        ? { 'gc-ignores-snapshots': GcIgnoresSnapshotsFlusher, 'gc-by-key-age': GcByKeyAgeFlusher }[this.options.gcBug]
        : { 'every-replica': EveryReplicaFlusher, 'forgets-marks': ForgetsMarksFlusher, 'ignores-changes': IgnoresChangesFlusher, none: CountingFlusher }[this.options.flusherCheck ?? 'none'];
      // A refused manifest write means the flusher found a different manifest at its flushed
      // index: divergence, or its equivalence test is wrong (a false refusal stalls recovery points).
      const metrics = { ...noFlusherMetrics, manifestRefused: (regionId: string) => this.flag('manifest refused', `n${node.id} found a different manifest of ${regionId} at its flushed index`) };
      const flusherSettings = this.options.gcQuietIntervalMs === undefined ? FLUSHER_SETTINGS : { ...FLUSHER_SETTINGS, gcQuietIntervalMs: this.options.gcQuietIntervalMs };
      node.flusher = new F(engineServer, store, flusherSettings, silentLogger, metrics, clock, new SstLeases(), {
        scheduler: clock,
        // Seeded: a seed replays to the same SST keys.
        sstKeys: { wallMs: () => wall.nowMs(), randomTag: () => this.rand.int(2 ** 32).toString(16).padStart(8, '0') },
      });
      if (node.flusher instanceof GcByKeyAgeFlusher) node.flusher.wallMs = () => wall.nowMs();
      if (node.flusher instanceof CountingFlusher) {
        node.flusher.onRefused = () => {
          this.uploadsNotProposed++;
          this.record(`n${node.id} an upload took half the GC grace or more: not proposed`);
        };
      }
    }
    node.server = server;
    this.record(`start n${node.id} #${inc.number}`);
    server.start();
    node.flusher?.start();
    const wiped = node.pendingWipe;
    node.pendingWipe = false;
    node.pendingDamage.clear();
    if (this.meta) {
      this.startDatanodeCore(node, inc, damage);
      return;
    }
    for (const regionId of this.regionIds) {
      const placement = this.placements.get(regionId)!.get(node.id);
      const repair = this.repairs.get(regionId);
      // A replica being replaced here is not opened under its old peer: the repair opens the new one.
      if (!placement || (repair?.nodeId === node.id && repair.newPeerId === undefined)) continue;
      if (placement.storeId !== node.disk.storeId && this.options.wipeBug === undefined) {
        // A new store under a known node id (the datanode's store id, finding 1): its replicas
        // are lost, never reopened under their old peer ids; the repair replaces them.
        this.replicaLost(regionId, node.id, placement.peerId, 'wiped');
        continue;
      }
      if (wiped) this.record(`n${node.id} ${regionId}: reopened as peer ${placement.peerId} on the wiped disk (planted ${this.options.wipeBug})`);
      server.open({ regionId, selfPeerId: placement.peerId, peers: this.peersOf(regionId), bootstrap: placement.bootstrap }).catch((err: unknown) => this.flag('open failed', `n${node.id} ${regionId}: ${String(err)}`));
      // The damage check runs before open's first await: a damaged region has failed by now.
      const failure = server.failure(regionId);
      if (failure && damage.some((d) => d.regionId === regionId) && failure.selfPeerId === placement.peerId) {
        this.expectedFailures.add(`${node.id}/${regionId}/${placement.peerId}`);
        this.replicaLost(regionId, node.id, placement.peerId, 'damaged');
      }
    }
  }

  /** The members of a region as the harness's catalog has them (what a replica is opened with). */
  private peersOf(regionId: string): { peerId: number; nodeId: number }[] {
    return [...this.placements.get(regionId)!].map(([nodeId, p]) => ({ peerId: p.peerId, nodeId }));
  }

  // ─── Repair: lost replicas replaced under fresh peer ids (the metasrv's repair-replica) ─────

  private replicaLost(regionId: string, nodeId: number, peerId: number, cause: Repair['cause']): void {
    this.record(`lost n${nodeId} ${regionId} peer ${peerId} (${cause})`);
    if (this.repairs.has(regionId)) return;
    this.repairs.set(regionId, { regionId, nodeId, oldPeerId: peerId, cause, newPeerId: undefined, proposedAtMs: Number.NEGATIVE_INFINITY, clearingBy: undefined });
  }

  private scheduleRepairs(): void {
    this.sched.at(this.sched.now + REPAIR_CHECK_MS, () => {
      for (const repair of [...this.repairs.values()]) this.repairStep(repair);
      this.scheduleRepairs();
    });
  }

  /**
   * One step of a repair, decided from what is true now (so a crash, a leader change or a lost
   * proposal only delays it): clear the old replica's data, allocate a fresh peer on the same
   * node and open it, then on the region's leader add it as a learner, promote it once it has
   * caught up, and remove the old peer.
   */
  private repairStep(r: Repair): void {
    const node = this.nodes.get(r.nodeId)!;
    const server = node.server;
    if (!server || (r.clearingBy && !r.clearingBy.dead)) return;
    if (r.newPeerId === undefined) {
      if (node.disk.stores.has(r.regionId) || node.disk.damage(r.regionId)) {
        const by = node.incarnation;
        r.clearingBy = by;
        this.record(`repair ${r.regionId} n${r.nodeId}: delete peer ${r.oldPeerId}'s data`);
        server.close(r.regionId, true).then(
          () => {
            if (r.clearingBy === by) r.clearingBy = undefined;
          },
          (err: unknown) => this.flag('repair', `closing ${r.regionId} on n${r.nodeId} failed: ${String(err)}`),
        );
        return;
      }
      r.newPeerId = this.nextPeerId++;
      this.placements.get(r.regionId)!.set(r.nodeId, { peerId: r.newPeerId, storeId: node.disk.storeId, bootstrap: false });
      this.record(`repair ${r.regionId} n${r.nodeId}: peer ${r.newPeerId} replaces ${r.oldPeerId} (${r.cause})`);
    }
    const newPeerId = r.newPeerId;
    if (!server.replica(r.regionId) && !server.failure(r.regionId)) {
      server
        .open({ regionId: r.regionId, selfPeerId: newPeerId, peers: this.peersOf(r.regionId), bootstrap: false })
        .catch((err: unknown) => this.flag('open failed', `n${r.nodeId} ${r.regionId} peer ${newPeerId}: ${String(err)}`));
    }
    const leaderId = this.leaderOf(r.regionId);
    const leaderServer = leaderId === undefined ? undefined : this.nodes.get(leaderId)!.server;
    const leader = leaderServer?.replica(r.regionId);
    if (!leaderServer || !leader || this.sched.now - r.proposedAtMs < REPAIR_PROPOSAL_PAUSE_MS) return;
    const { voters, learners } = leader.raft.confState();
    let change: { type: ConfChangeType; peerId: number; what: string };
    if (!voters.includes(newPeerId) && !learners.includes(newPeerId)) {
      change = { type: ConfChangeType.AddLearner, peerId: newPeerId, what: 'add learner' };
    } else if (learners.includes(newPeerId)) {
      const mine = server.replica(r.regionId);
      if (!mine || mine.appliedIndex + REPAIR_CATCH_UP_SLACK < leader.raft.status().commit) return;
      change = { type: ConfChangeType.AddVoter, peerId: newPeerId, what: 'promote' };
    } else if (voters.includes(r.oldPeerId) || learners.includes(r.oldPeerId)) {
      change = { type: ConfChangeType.RemoveNode, peerId: r.oldPeerId, what: 'remove' };
    } else {
      this.repairs.delete(r.regionId);
      this.storageStats.repairs++;
      this.record(`repair ${r.regionId} n${r.nodeId}: done, peer ${newPeerId} is a voter, ${r.oldPeerId} removed`);
      return;
    }
    r.proposedAtMs = this.sched.now;
    this.record(`repair ${r.regionId}: ${change.what} peer ${change.peerId} on n${leaderId}`);
    try {
      const context = change.type === ConfChangeType.RemoveNode ? '' : JSON.stringify({ nodeId: r.nodeId });
      leaderServer.proposeConfChange(r.regionId, { type: change.type, nodeId: change.peerId, context }).catch(() => {
        // Lost with its leader, or refused: the next step looks at the membership again.
      });
    } catch {
      // Not the leader any more, or a membership change still pending: tried again later.
    }
  }

  // ─── The metasrv: registration, heartbeats, instructions (as src/datanode/datanode.ts) ──────

  /**
   * With the metasrv, a node runs the datanode's own core (src/datanode/datanode-core.ts) on its
   * simulated disk, clock and region server: the region metas it keeps are on the disk (lost
   * with a wipe), it registers and beats through `SimMetasrv.callerFor` (protobuf-encoded, with
   * the simulated latency and losses), and executes the instructions as the datanode does.
   */
  private datanodeCore<S extends StateMachine<R>, R>(
    node: SimNode,
    inc: Incarnation,
    build: (hooks: RegionServerHooks) => RegionServer<S, R>,
    stat: (state: S) => StateMachineStat,
    dropFence: NonNullable<DatanodeCoreDeps<S, R>['dropFence']>,
  ): DatanodeCore<S, R> {
    const bug = this.options.datanodeBug;
    const Core =
      bug === 'heartbeat-awaits-instructions'
        ? HeartbeatAwaitsInstructions<S, R>
        : bug === 'overlapping-heartbeats'
          ? OverlappingHeartbeats<S, R>
          : bug === 'delta-on-last-sent'
            ? DeltaOnLastSent<S, R>
            : catlossDatanodeCore<S, R>(this.options.catlossBug);
    const core = new Core({
      nodeId: node.id,
      clusterId: SIM_CLUSTER_ID,
      storeId: `store-${node.id}-${node.disk.storeId}`,
      // Counted on the disk before anything else, as Datanode.start does (recordStart).
      start: node.disk.recordStart(`n${node.id}-inc${inc.number}`),
      confirmStart: (start) => node.disk.confirmStart(start),
      // K2 (src/datanode/start-witness.ts): the shared object store's record of the node's
      // answered starts, which no fault rolls back (in engine mode, as a datanode has one only
      // with [storage]). Kept beside the simulated object store, without its latency or
      // failures: reading and writing it draws nothing and takes no virtual time. It answers at
      // once (no promise), so the core awaits nothing: a run without a copy to refuse is the run
      // it was without a witness (answered as promises, its awaits moved the microtask order of
      // every registration, and with it many runs).
      ...(this.engine ? { startWitness: this.startWitnessOf(node.id) } : {}),
      heartbeatIntervalMs: HEARTBEAT_MS,
      logEngine: node.disk,
      clock: this.sched.clockFor(inc),
      log: traceLogger((line) => this.record(`n${node.id} ${line}`)),
      createRegionServer: build,
      stateMachineStat: stat,
      dropFence,
      // Delta heartbeats' process number (report-delta.ts): the incarnation's, unique in a run
      // (drawn from the OS in production; equality is all the metasrv reads of it).
      reportIncarnation: inc.number,
      hooks: { onStartRefused: () => this.copyRefused(node, inc, 'refuses itself as a restored copy of its disk (the start witness, K2)') },
    });
    node.core = core;
    this.watchDestroys(node, inc, core.regionServer);
    return core;
  }

  /**
   * The `member destroyed` checker (finding 8e): no open of a workload region starts on a node
   * while a close(destroy) of that region is under way there — from the close's call until it
   * settles, the deletion of the region's log and meta included (O3 in
   * src/datanode/datanode-core.ts). An open that slips in opens on the data being deleted: it
   * loads the old replica's log (a failed replica's damaged one: the replacement fails too), and
   * the deletion that lands next takes the log and meta from under the running replacement (a
   * restart finds nothing to reopen). A correct datanode never lets it happen, whatever the
   * metasrv sends: its opens and closes run one at a time. It wraps the incarnation's `open` and
   * `close` and hands back the very promises the core awaits (the bookkeeping runs before the
   * caller's continuation); it draws no randomness and records nothing unless it fails, so
   * traces are unchanged. With `drain` it also tells the fault which replicas a close deleted
   * (a close without destroy, the `close` fault's, is no deletion).
   */
  private watchDestroys(node: SimNode, inc: Incarnation, server: RegionServer<StateMachine<unknown>, unknown>): void {
    /** Region → the peers whose close(destroy) is under way (0: no replica of it was open or failed). */
    const destroying = new Map<string, number[]>();
    const open = server.open.bind(server);
    server.open = (spec) => {
      const peers = destroying.get(spec.regionId);
      if (peers) {
        this.flag('member destroyed', `n${node.id} opens peer ${spec.selfPeerId} of ${spec.regionId} while a close(destroy) of the region (peer ${peers.join(', ')}) is deleting its data there: the new replica opens on data being deleted (an open interleaved with a destroy, O3)`);
      }
      return open(spec);
    };
    const close = server.close.bind(server);
    server.close = (regionId, destroy) => {
      if (!destroy || !this.regionIds.includes(regionId)) return close(regionId, destroy);
      const destroyed = server.replica(regionId)?.selfPeerId ?? server.failure(regionId)?.selfPeerId ?? 0;
      // The replica this close deletes, also a removed one that still answers raft (replica() hides it).
      this.drain?.noteDestroy(inc.number, regionId, server.hostedReplica(regionId)?.selfPeerId ?? destroyed);
      const peers = destroying.get(regionId) ?? [];
      peers.push(destroyed);
      destroying.set(regionId, peers);
      const done = close(regionId, destroy);
      const over = () => {
        peers.splice(peers.indexOf(destroyed), 1);
        if (peers.length === 0 && destroying.get(regionId) === peers) destroying.delete(regionId);
      };
      done.then(over, over);
      return done;
    };
  }

  /** The datanode's start after its region server: reopen what the disk holds, then register and beat (as Datanode.start). */
  private startDatanodeCore(node: SimNode, inc: Incarnation, damage: RegionDamage[]): void {
    const core = node.core!;
    // A replica whose log the `corrupt` fault damaged fails when it reopens: expected (it is
    // reported failed and replaced by the metasrv's repair).
    for (const d of damage) {
      const raw = node.disk.getRegionMeta(d.regionId);
      if (!raw) continue;
      const peerId = (JSON.parse(new TextDecoder().decode(raw)) as { selfPeerId: number }).selfPeerId;
      this.expectedFailures.add(`${node.id}/${d.regionId}/${peerId}`);
      this.record(`n${node.id} ${d.regionId}: peer ${peerId} fails on its damaged log`);
    }
    const metasrvCaller = this.meta!.callerFor(inc, (method, answer) => this.noteMetasrvAnswer(node, method, answer));
    // A registration refused as a restored copy of the data dir (K1): the operator moves the dir
    // aside a while later (wiped: the node starts as a new store), as the refusal tells them to.
    const answered: typeof metasrvCaller = {
      call: <Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown, timeoutMs: number, callOptions: Parameters<typeof metasrvCaller.call>[3]) => {
        const answer = metasrvCaller.call<Res>(method, request, timeoutMs, callOptions);
        if (method === 'RegisterNode') answer.catch((err: unknown) => this.noteStartRefused(node, inc, err));
        return answer;
      },
    };
    const healthy = this.healthy!;
    // The cadence checker sees each call start and end. The datanode awaits the very promise the
    // caller returned (the checker's reaction is a branch of it), so nothing it does moves.
    const caller: typeof answered = {
      call: <Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown, timeoutMs: number, callOptions: Parameters<typeof answered.call>[3]) => {
        healthy.callStarted(inc);
        if (method === 'Heartbeat') this.reportView?.sent(request, core.replicaStats(), core.reportedStats);
        const answer = answered.call<Res>(method, request, timeoutMs, callOptions);
        answer.then(
          () => healthy.callEnded(inc, method === 'RegisterNode'),
          () => healthy.callEnded(inc, false),
        );
        return answer;
      },
    };
    if (this.options.restoreBug === 'reopen-before-registration') {
      core.reopenRegions().then(
        () => {
          if (!inc.dead) core.startHeartbeats(caller, { addr: `n${node.id}`, httpAddr: '' });
        },
        (err: unknown) => this.flag('open failed', `n${node.id} reopening its regions: ${String(err)}`),
      );
      return;
    }
    // As Datanode.start: the log's replicas reopen once the registration is answered.
    core.startHeartbeats(caller, { addr: `n${node.id}`, httpAddr: '' }, { reopenOnRegistration: true });
  }

  /**
   * A registration of `inc` refused: if as a restored copy of its data dir (CORRUPTION, K1), the
   * operator moves the dir aside OPERATOR_MOVES_COPY_MS later — the node down, its disk wiped, so
   * it starts as a new store (its replicas were never reopened; the metasrv rebuilds them).
   */
  private noteStartRefused(node: SimNode, inc: Incarnation, err: unknown): void {
    if (!isRegionDbError(err, ErrorCode.Corruption)) return;
    this.copyRefused(node, inc, 'its start is refused as a restored copy of its disk');
  }

  /** The starts of each node the shared object store records (K2), whatever its disk went through. */
  private readonly witnessedStarts = new Map<number, WitnessedStart[]>();

  private startWitnessOf(nodeId: number): StartWitness {
    return {
      starts: () => [...(this.witnessedStarts.get(nodeId) ?? [])],
      record: (storeId, start) => {
        this.witnessedStarts.set(nodeId, [...(this.witnessedStarts.get(nodeId) ?? []), { storeId, count: start.count, id: start.id }]);
      },
    };
  }

  /** A start refused as a restored copy, by the metasrv (K1) or by itself (K2): the operator moves the disk aside. */
  private copyRefused(node: SimNode, inc: Incarnation, what: string): void {
    if (this.refusedStarts.has(inc)) return;
    this.refusedStarts.add(inc);
    this.refusedStores.add(node.disk.storeId);
    this.storageStats.restoresRefused++;
    this.record(`n${node.id} #${inc.number}: ${what}`);
    this.sched.at(this.sched.now + OPERATOR_MOVES_COPY_MS, () => {
      if (node.incarnation !== inc || inc.dead) return;
      this.crash(node, 'the operator moves the restored disk aside');
      node.disk.wipe();
      this.restoredDisks.delete(node.id);
      node.pendingWipe = true;
      this.storageStats.wipes++;
      this.record(`wipe n${node.id} (new store ${node.disk.storeId}) after its refused start`);
    });
  }

  /** Records what the metasrv answered a node (the registration's opens, the instructions) and counts the instructions by kind. */
  private noteMetasrvAnswer(node: SimNode, method: string, answer: unknown): void {
    if (method === 'RegisterNode') {
      const regions = (answer as RegisterNodeResponse__Output).regions;
      this.record(`n${node.id} registered: open ${regions.map((r) => `${r.region_id}/${r.self_peer_id}${r.bootstrap ? ' (bootstrap)' : ''}`).join(',') || 'nothing'}`);
      return;
    }
    this.drain?.noteAnswer(node.id, answer as HeartbeatResponse__Output);
    for (const ins of (answer as HeartbeatResponse__Output).instructions) {
      const kind = ins.kind ?? 'unknown';
      this.metaStats.instructions[kind] = (this.metaStats.instructions[kind] ?? 0) + 1;
      const body = ins[kind as keyof typeof ins] as { region_id?: string } | undefined;
      this.record(`n${node.id} ${body?.region_id ?? '?'}: ${kind} ${JSON.stringify(body).slice(0, 160)} (metasrv)`);
    }
  }

  /**
   * H3's facts (sim-spurious.ts): why the replica `peerId` of `regionId` on `nodeId` is lost, if
   * it is — its log was damaged, it failed on its node, its node's disk was wiped after it was
   * created, or its node runs without it (closed: a catalog that did not know it placed it from
   * the leader's membership, finding M25).
   */
  private lostPeerFact(nodeId: number, regionId: string, peerId: number): string | undefined {
    if (this.expectedFailures.has(`${nodeId}/${regionId}/${peerId}`)) return 'its log was damaged';
    const server = this.nodes.get(nodeId)?.server;
    if (server?.failure(regionId)?.selfPeerId === peerId) return 'it failed';
    if (this.healthy?.wipedBefore(nodeId, peerId)) return 'its disk was wiped after it was created';
    if (server && server.replica(regionId)?.selfPeerId !== peerId) return 'its node runs without it';
    // The same when the node went down without it: reconciliation judged it lost on a heartbeat
    // while the node ran without it (closed by the `close` fault, a catalog that did not place
    // it), and the repair started at a tick after the node crashed (seed 2264 of
    // corrupt,wipe,restore,close,flap,drain,metarestore,catalog with the metasrv).
    if (!server && this.runningAtCrash.get(nodeId)?.has(`${regionId}/${peerId}`) === false) return 'its node went down without it';
    return undefined;
  }

  /** Per node, the `region/peer` of every replica it ran when it last crashed (lostPeerFact). */
  private readonly runningAtCrash = new Map<number, ReadonlySet<string>>();

  /**
   * A node's store changed in the metasrv's catalog (a wiped disk, or a second process accepted
   * as a replaced host): every peer id allocated until then may have been placed on the node
   * before the metasrv knew, and is lost to it (H3). Looked at after every call the core took in
   * and every tick, so no change is missed.
   */
  private noteCatalogStores(catalog: CatalogState): void {
    for (const node of Object.values(catalog.nodes)) {
      const store = node.storeId;
      if (store === undefined) continue;
      const before = this.catalogStores.get(node.nodeId);
      this.catalogStores.set(node.nodeId, store);
      if (before !== undefined && before !== store) this.healthy?.diskWiped(node.nodeId, catalog.nextPeerId);
    }
  }

  /** A call the metasrv core took in (H1's detector feed, H5's registrations of a second process). */
  private noteHandled(meta: SimMetasrv, caller: Incarnation, method: string, core: MetasrvCore): void {
    if (!core.catalog) return; // still loading: it refuses every call
    const healthy = this.healthy!;
    const twin = this.twin?.inc === caller ? this.twin : undefined;
    if (method === 'Heartbeat') {
      let acting = true;
      try {
        core.requireActing();
      } catch {
        acting = false; // refused before the detector (the metasrv is starting)
      }
      if (acting && core.catalog.nodes[caller.nodeId]) healthy.heartbeatTaken(caller.nodeId, meta.incarnationNumber);
      if (acting) this.reportView?.check(caller.nodeId, meta.incarnationNumber, core.reportOf(caller.nodeId));
    } else if (method === 'RegisterNode' && twin) {
      const node = core.catalog.nodes[twin.nodeId];
      healthy.secondProcessRegistered(twin.nodeId, meta.incarnationNumber, node?.storeId === twin.storeId && node.addr === twin.addr, twin.addr);
    }
    this.noteCatalogStores(core.catalog);
  }

  /**
   * The `twin` fault (finding M6): a second datanode process configured with a live node's id —
   * a copied config — on a fresh disk and another address, for 0.3–1.5 s. It runs the real
   * datanode core (registration, heartbeats, instructions) over a region server whose raft
   * messages reach nobody (its address is not the node's: the peers answer the node they know).
   */
  private twinStep(rand: Rand): boolean {
    const meta = this.meta!;
    if (this.twin || !meta.up || !rand.chance(0.04)) return false;
    const up = [...this.nodes.values()].filter((n) => n.server);
    if (up.length === 0) return false;
    const node = rand.pick(up);
    const inc = new Incarnation(node.id, ++this.incarnations);
    const disk = new SimDisk(this.sched, rand.fork(), { fsyncMsMin: 1, fsyncMsMax: 8 });
    disk.owner = inc;
    const clock = this.sched.clockFor(inc);
    const storeId = `store-${node.id}-twin${++this.twins}`;
    const addr = `n${node.id}-twin${this.twins}`;
    const nowhere = { send: () => {}, close: async () => {} };
    const core = new DatanodeCore<RegisterMachine, boolean>({
      nodeId: node.id,
      clusterId: SIM_CLUSTER_ID,
      storeId,
      heartbeatIntervalMs: HEARTBEAT_MS,
      logEngine: disk,
      clock,
      log: traceLogger((line) => this.record(`${addr} ${line}`)),
      createRegionServer: (hooks) =>
        new RegionServer<RegisterMachine, boolean>(node.id, disk, nowhere, { create: (_regionId, data) => new RegisterMachine(() => {}, data) }, TUNING, silentLogger, clock, hooks),
      stateMachineStat: () => ({ flushedIndex: 0, memtableBytes: 0, ssts: 0 }),
      reportIncarnation: inc.number,
    });
    this.twin = { inc, nodeId: node.id, storeId, addr, core };
    this.spuriousStats.twins++;
    const lifeMs = 300 + rand.int(1_201);
    this.record(`start ${addr}: a second process with n${node.id}'s id (store ${storeId}) for ${lifeMs} ms`);
    const answered = meta.callerFor(inc, (method, answer) => {
      if (method === 'RegisterNode') this.record(`${addr} registered: open ${(answer as RegisterNodeResponse__Output).regions.map((r) => `${r.region_id}/${r.self_peer_id}`).join(',') || 'nothing'}`);
    });
    const caller: typeof answered = {
      call: (method, request, timeoutMs, callOptions) => {
        if (method === 'Heartbeat') this.reportView?.sent(request, core.replicaStats(), core.reportedStats);
        return answered.call(method, request, timeoutMs, callOptions);
      },
    };
    core.startHeartbeats(caller, { addr, httpAddr: '' }, { reopenOnRegistration: true });
    this.sched.at(this.sched.now + lifeMs, () => this.stopTwin(), inc);
    return true;
  }

  /**
   * With `spare`: more steps of the metasrv's wall clock (10 % of nemesis steps, ±1 s–10 min, on
   * top of the metasrv's own 3 %), so that some land while a node is suspected — where a down
   * time measured on the wall clock (finding M7) would move its replicas at once.
   */
  private spareClockStep(rand: Rand): boolean {
    const meta = this.meta!;
    if (!rand.chance(0.1)) return false;
    const stepMs = (rand.chance(0.5) ? 1 : -1) * (1_000 + rand.int(600_000));
    meta.wallOffsetMs += stepMs;
    this.metaStats.clockSteps++;
    this.record(`metasrv clock ${stepMs > 0 ? '+' : ''}${stepMs}ms (spare)`);
    return true;
  }

  /**
   * With `spare`: a node down for 2.5–4 s (4 % of nemesis steps, while every node is up), longer
   * than replica_repair_after_ms, so that the metasrv moves its replicas to the spare node —
   * legitimately (H2's soundness, and the end checks with moved replicas).
   */
  private spareOutageStep(rand: Rand): boolean {
    const up = [...this.nodes.values()].filter((n) => n.server);
    if (up.length < this.nodes.size || !rand.chance(0.04)) return false;
    this.crash(rand.pick(up), 'long outage', 2_500 + rand.int(1_501));
    return true;
  }

  private stopTwin(): void {
    const twin = this.twin;
    if (!twin) return;
    this.twin = undefined;
    twin.inc.dead = true;
    twin.core.halt();
    this.record(`stop ${twin.addr}`);
  }

  /** The `stall` fault, from its own stream: the metasrv process pauses for 1–3 s (sim-spurious.ts, `ProcessStall`). */
  private stallStep(rand: Rand): boolean {
    const stall = this.meta?.up ? this.meta.stall : undefined;
    if (!stall || stall.stalled || !rand.chance(0.05)) return false;
    const ms = STALL_MS_MIN + rand.int(STALL_MS_MAX - STALL_MS_MIN + 1);
    stall.stall(ms);
    this.spuriousStats.stalls++;
    this.record(`metasrv stalls for ${ms} ms`);
    return true;
  }

  /** The metasrv's faults, from its own stream: a crash (often mid-procedure) and restart, or a step of its wall clock. */
  private metasrvFaultStep(rand: Rand): boolean {
    const meta = this.meta!;
    const catalog = meta.core?.catalog;
    const running = catalog ? runningProcedures(catalog).map((p) => `${p.id}@${p.step}`) : [];
    const roll = rand.int(100);
    // A crash is likelier while a procedure runs: the crash mid-procedure of issue 15.
    if (roll < (running.length > 0 || this.ddl?.inFlight ? 20 : 5) && meta.up) {
      if (running.length > 0) this.metaStats.crashesMidProcedure++;
      meta.crash(running.length > 0 ? `during ${running.join(',')}` : 'idle');
      const downMs = 50 + rand.int(1500);
      meta.restartAt = this.sched.now + downMs;
      this.sched.at(meta.restartAt, () => {
        if (!meta.up) meta.start();
      });
      return true;
    }
    if (roll >= 20 && roll < 23) {
      const stepMs = (rand.chance(0.5) ? 1 : -1) * (1_000 + rand.int(600_000));
      meta.wallOffsetMs += stepMs;
      this.metaStats.clockSteps++;
      this.record(`metasrv clock ${stepMs > 0 ? '+' : ''}${stepMs}ms`);
      return true;
    }
    return false;
  }

  /**
   * After healing, with the metasrv: within the bound, it acts, no replica is lost, no procedure
   * runs (liveness: every lost replica was replaced), and the catalog's placement of every region
   * is what its groups report: each placed peer runs on its node, healthy, with exactly the
   * placed peers as voters and no learner, and no node hosts a replica the catalog does not place
   * (convergence of the catalog and the groups).
   */
  private async waitForMetasrv(deadline: number): Promise<void> {
    for (;;) {
      const problem = this.metasrvUnsettled();
      if (problem === undefined) break;
      if (this.sched.now > deadline) this.fail(problem.invariant, `${problem.detail} (${this.status()})`);
      await this.sched.runUntil(this.sched.now + 10, () => this.violation !== undefined);
      this.throwIfViolated();
    }
    this.record('metasrv settled');
  }

  private metasrvUnsettled(): { invariant: string; detail: string } | undefined {
    const meta = this.meta!;
    const liveness = (detail: string) => ({ invariant: 'liveness', detail: `the metasrv did not replace every lost replica and finish its procedures within ${this.livenessBoundMs} ms after healing: ${detail}` });
    if (meta.startError) return liveness(`the metasrv cannot start: ${meta.startError}`);
    const core = meta.core;
    if (!core?.catalog) return liveness('the metasrv is not up');
    const catalog = core.catalog;
    const running = runningProcedures(catalog);
    if (running.length > 0) return liveness(`procedures still running: ${running.map((p) => `${p.id}@${p.step} (${p.notes.at(-1) ?? ''})`).join('; ')}`);
    if (this.catloss) {
      const problem = catalogLossUnsettled(catalog, (id) => (catalog.nodes[id] ? core.nodeState(catalog.nodes[id]) : undefined), this.hostedReplicas(), this.regionIds, this.drain && {
        nodeId: this.drain.drained,
        heardFrom: (id) => core.isAlive(id),
      });
      if (problem) return problem;
    }
    for (const regionId of this.ddl ? [...this.regionIds, ...this.ddl.liveRegions()] : this.regionIds) {
      const region = catalog.regions[regionId];
      if (!region) {
        // A workload region a lost or restored catalog does not know: catalogLossUnsettled judged it;
        // after the DDL scenario's loss the workload's table went with the catalog: left alone (finding 2a).
        if (this.regionIds.includes(regionId) && (this.catloss?.happened || this.catalogWasLost)) continue;
        // A DDL table a restored (or lost) catalog forgot: its replicas stay, unplaced (engine seeds
        // 2001, 2002, 2007 and 2011 of the wide mix with metarestore and ddl).
        if (this.ddl?.forgottenRegions().includes(regionId)) continue;
        return { invariant: 'catalog placement', detail: `${regionId} is not in the catalog` };
      }
      const lost = region.replicas.filter((p) => p.lost !== undefined);
      if (lost.length > 0) return liveness(`${regionId}: ${lost.map((p) => `peer ${p.peerId} on n${p.nodeId} lost (${p.lost})`).join(', ')}`);
      const placed = region.replicas.map((p) => p.peerId).sort((a, b) => a - b);
      const convergence = (detail: string) => ({ invariant: 'catalog placement', detail: `${regionId}: the catalog places ${region.replicas.map((p) => `${p.peerId}@n${p.nodeId}`).join(',')}; ${detail}` });
      for (const node of this.nodes.values()) {
        const mine = region.replicas.find((p) => p.nodeId === node.id);
        const replica = node.server?.replica(regionId);
        if (!mine) {
          if (replica || node.server?.failure(regionId)) return convergence(`n${node.id} still hosts peer ${replica?.selfPeerId ?? node.server?.failure(regionId)?.selfPeerId}`);
          continue;
        }
        if (!replica || replica.selfPeerId !== mine.peerId) return convergence(`n${node.id} runs ${replica ? `peer ${replica.selfPeerId}` : 'no replica'}`);
        const conf = replica.raft.confState();
        const voters = [...conf.voters].sort((a, b) => a - b);
        if (voters.join() !== placed.join() || conf.learners.length > 0) return convergence(`n${node.id}'s peer ${mine.peerId} has voters ${voters.join(',')} learners ${conf.learners.join(',') || 'none'}`);
      }
    }
    // A dropped table's replicas are destroyed everywhere (unless a new table re-uses the region id).
    for (const regionId of this.ddl?.droppedRegions() ?? []) {
      if (catalog.regions[regionId]) continue;
      // Brought back by a catalog copy from before the drop (opened again, empty), then forgotten by
      // an older copy still: kept, as a catalog keeps what it does not know (engine seed 14 with
      // ddl,metarestore); D3's probe checks that they acknowledge nothing.
      if (this.ddl?.restoredAfterDropRegions().includes(regionId)) continue;
      // Forgotten after the drop by a copy older than the table, before every destroy landed: what
      // is left is a region no catalog knows, kept (R1; engine seed 2231 of the wide mix with marks:
      // n2's peer 12 of d1 1026, its destroy not sent before the metasrv crashed and a copy from
      // before d1 1026 was put back; the drop record is read only for tables a catalog holds).
      if (this.ddl?.forgottenAfterDropRegions().includes(regionId)) continue;
      for (const node of this.nodes.values()) {
        const peer = node.server?.replica(regionId)?.selfPeerId ?? node.server?.failure(regionId)?.selfPeerId;
        if (peer !== undefined) return { invariant: 'catalog placement', detail: `${regionId} of a dropped table: n${node.id} still hosts peer ${peer}` };
      }
    }
    return undefined;
  }

  /**
   * With `balance`, once the metasrv settled: within the liveness bound, the leaders are where
   * the placement puts them. Judged from the groups themselves (which node's replica leads, which
   * replicas are voters), not from the metasrv's reports, and by rules weaker than
   * balance-leaders' own plan (src/metasrv/procedures/balance-leaders.ts), so that a plan that
   * stops short fails them: with "table", every chunk of a table's regions (by region number,
   * `leader_pack_regions` at a time) that some live, non-draining node holds a voter of each
   * region of is led from one node (any node: which one is the plan's choice); with "spread", no
   * region is led from a node leading at least two more than a live, non-draining node holding a
   * voter of it (a move that would lower the spread). Leaderless regions are left to the other
   * checkers.
   */
  private async waitForPlacement(placement: ReturnType<typeof balancePlacementOf>): Promise<void> {
    const deadline = this.sched.now + this.livenessBoundMs;
    for (;;) {
      const problem = this.placementProblem(placement);
      if (problem === undefined) break;
      if (this.sched.now > deadline) this.fail('leader placement', `${problem}, ${this.livenessBoundMs} ms after the metasrv settled (placement ${JSON.stringify(placement)}; ${this.status()})`);
      await this.sched.runUntil(this.sched.now + 10, () => this.violation !== undefined);
      this.throwIfViolated();
    }
    this.record('leaders placed');
  }

  private placementProblem(placement: ReturnType<typeof balancePlacementOf>): string | undefined {
    const catalog = this.meta?.core?.catalog;
    if (!catalog) return 'the metasrv is not up';
    const nodes = Object.values(catalog.nodes)
      .filter((n) => n.state !== 'draining' && this.nodes.get(n.nodeId)?.server !== undefined)
      .map((n) => n.nodeId);
    const voterOn = (regionId: string, nodeId: number): boolean => {
      const replica = this.nodes.get(nodeId)?.server?.replica(regionId);
      return replica?.raft.confState().voters.includes(replica.selfPeerId) === true;
    };
    const regions = Object.values(catalog.regions);
    if (placement.leader_placement === 'table') {
      const byTable = new Map<string, typeof regions>();
      for (const region of regions) {
        const list = byTable.get(region.tableName);
        if (list) list.push(region);
        else byTable.set(region.tableName, [region]);
      }
      for (const [table, list] of byTable) {
        list.sort((a, b) => a.regionNumber - b.regionNumber);
        for (let i = 0; i < list.length; i += placement.leader_pack_regions) {
          const chunk = list.slice(i, i + placement.leader_pack_regions);
          if (!nodes.some((n) => chunk.every((r) => voterOn(r.regionId, n)))) continue;
          const leaders = new Set<number>();
          for (const r of chunk) {
            const leader = this.leaderOf(r.regionId);
            if (leader !== undefined) leaders.add(leader);
          }
          if (leaders.size > 1) return `table ${table}: its regions ${chunk.map((r) => r.regionId).join(', ')} (one chunk of ${placement.leader_pack_regions}) are led from ${[...leaders].map((n) => `n${n}`).join(', ')}, not from one node`;
        }
      }
      return undefined;
    }
    const counts = new Map<number, number>(nodes.map((n) => [n, 0]));
    const leaderOf = new Map<string, number>();
    for (const region of regions) {
      const leader = this.leaderOf(region.regionId);
      if (leader === undefined || !counts.has(leader)) continue;
      leaderOf.set(region.regionId, leader);
      counts.set(leader, counts.get(leader)! + 1);
    }
    for (const [regionId, from] of leaderOf) {
      for (const [to, led] of counts) {
        if (counts.get(from)! - led >= 2 && voterOn(regionId, to)) return `${regionId} is led from n${from} (leading ${counts.get(from)}) while n${to} (leading ${led}) holds a voter of it`;
      }
    }
    return undefined;
  }

  /** What every running node hosts, as the catalog-loss checker reads it. */
  private hostedReplicas(): Map<number, HostedReplica[]> {
    const out = new Map<number, HostedReplica[]>();
    for (const node of this.nodes.values()) {
      if (!node.server) continue;
      const replicas: HostedReplica[] = [];
      for (const regionId of this.regionIds) {
        const replica = node.server.replica(regionId);
        if (!replica) continue;
        const conf = replica.raft.confState();
        replicas.push({ regionId, peerId: replica.selfPeerId, voters: [...conf.voters], learners: [...conf.learners], confIndex: replica.confIndex });
      }
      out.set(node.id, replicas);
    }
    return out;
  }

  private metasrvSummary(meta: SimMetasrv): NonNullable<ClusterSimResult['metasrv']> {
    const proceduresDone: Record<string, number> = {};
    for (const p of Object.values(meta.core?.catalog?.procedures ?? {})) if (p.status === 'done') proceduresDone[p.kind] = (proceduresDone[p.kind] ?? 0) + 1;
    return {
      crashes: meta.crashes,
      crashesMidProcedure: this.metaStats.crashesMidProcedure,
      clockSteps: this.metaStats.clockSteps,
      saves: meta.storage.saves,
      saveFailures: meta.storage.failures,
      instructions: { ...this.metaStats.instructions },
      proceduresDone,
      stalls: this.spuriousStats.stalls,
      twins: this.spuriousStats.twins,
      checked: { ...(this.healthy?.counts ?? { failovers: 0, moves: 0, inPlace: 0, twinRegistrations: 0 }) },
      reports: { ...(this.reportView?.counts ?? { fullReports: 0, deltaReports: 0, viewsChecked: 0, statsCompared: 0 }) },
      ...(this.catloss ? { catalogLosses: this.catloss.losses, catalogRestores: this.catloss.restores } : {}),
      ...(this.drain ? { removals: { ...this.drain.stats, drainMoves: this.healthy?.drainMoves ?? 0 } } : {}),
    };
  }

  /** After healing: every lost replica is replaced within the liveness bound. */
  private async waitForRepairs(deadline: number): Promise<void> {
    while (this.repairs.size > 0) {
      if (this.sched.now > deadline) {
        const pending = [...this.repairs.values()].map((r) => `${r.regionId} n${r.nodeId} peer ${r.oldPeerId}->${r.newPeerId ?? '?'} (${r.cause})`);
        this.fail('liveness', `lost replicas not replaced within ${this.options.livenessMs} ms after healing: ${pending.join(', ')} (${this.status()})`);
      }
      await this.sched.runUntil(this.sched.now + 10, () => this.violation !== undefined);
      this.throwIfViolated();
    }
  }

  /** The transport of a node's process: the network, or with `queues` the per-peer queues in front of it. */
  private transportFor(inc: Incarnation): RaftTransport {
    return this.peerQueues ? this.peerQueues.transportFor(inc) : this.net.transportFor(inc);
  }

  private crash(node: SimNode, why: string, downMsAtLeast = 0): void {
    if (!node.server) return;
    // A restart would hide that this incarnation's ready loop had stopped.
    const fatal = node.server.fatalError();
    if (fatal) this.flag('node fatal', `n${node.id}'s ready loop stopped: ${fatal.message}`);
    // Nor may a crash hide a replica that failed since the last look (throwIfViolated).
    const failed = node.server.failedReplicas().find((f) => !this.failureExpected(node, f));
    if (failed) this.flag('replica failed', `n${node.id}'s replica of ${failed.regionId} failed at index ${failed.index}: ${failed.reason}`);
    this.crashes++;
    // H3's "its node runs without it", kept for the time the node is down (lostPeerFact).
    const running = new Set<string>();
    for (const regionId of node.disk.regionIds()) {
      const peerId = node.server.replica(regionId)?.selfPeerId;
      if (peerId !== undefined) running.add(`${regionId}/${peerId}`);
    }
    this.runningAtCrash.set(node.id, running);
    node.incarnation.dead = true; // its timers, pending fsyncs and sends die with it
    node.server = undefined;
    node.core?.halt(); // its timers die with the incarnation too; nothing queued runs any more
    node.core = undefined;
    node.flusher = undefined; // its timers and object-store answers die with the incarnation
    node.disk.crash();
    this.peerQueues?.onCrash(node.id);
    const downMs = Math.max(downMsAtLeast, 20 + this.rand.int(400));
    node.restartAt = this.sched.now + downMs;
    this.record(`crash n${node.id} (${why}) down ${downMs}ms`);
    if (this.refuseRand) this.refuseAfterCrash(node);
    this.sched.at(node.restartAt, () => {
      if (!node.server) this.startNode(node);
    });
  }

  /** A crash in the middle of an fsync: the batch never lands (the durability window). */
  private maybeCrashDuringSync(node: SimNode): void {
    if (!this.faults || !this.rand.chance(0.004)) return;
    const at = this.sched.now; // before the sync completes (it takes at least 1 ms)
    this.sched.at(at, () => this.crash(node, 'during fsync'));
  }

  private deliver(from: number, to: number, envelope: RaftEnvelope): void {
    const node = this.nodes.get(to);
    const server = node?.server;
    if (!node || !server) return;
    if (this.sched.heldWhilePaused(node.incarnation, () => this.deliver(from, to, envelope))) return; // `pause`
    if (this.drain?.intercept(from, to, envelope)) return; // the `drain` fault's cut (sim-drain.ts)
    const m = envelope.message;
    // Liveness beats (one per node pair every beatEveryTicks ticks) stay out of the trace: they carry no state.
    if (envelope.regionId !== NODE_BEAT_REGION_ID) this.record(`msg ${from}->${to} ${envelope.regionId} ${messageTypeName[m.type]} t${m.term} i${m.index} n${m.entries.length} c${m.commit}${m.reject ? ' R' : ''}`);
    if (this.readRand && m.type === MessageType.ReadIndexResponse) this.noteReadAnswer(to, envelope.regionId, m.context, m.index);
    server.step(from, envelope.regionId, m);
  }

  private onApply(nodeId: number, regionId: string, index: number, command: string): boolean {
    const generation = this.regionGeneration.get(regionId);
    const key = generation === undefined ? `${regionId}/${index}` : `${regionId}#${generation}/${index}`;
    const seen = this.appliedAt.get(key);
    if (seen === undefined) this.appliedAt.set(key, command);
    else if (seen !== command) this.flag('state machine safety', `n${nodeId} applied ${command} at ${key}, another replica applied ${seen}`);
    return seen === undefined;
  }

  /**
   * Engine mode: every apply of this RegionState goes through the state machine safety check
   * (the command's bytes), and the first replica to apply a flush or compaction edit records it
   * in the trace.
   */
  private watchApplies(state: RegionState, nodeId: number, regionId: string): RegionState {
    const apply = state.apply.bind(state);
    state.apply = (index: number, data: Uint8Array, term?: number) => {
      const first = this.onApply(nodeId, regionId, index, Buffer.from(data).toString('base64'));
      if (first && data.byteLength > 1 && (data[1] === CommandKind.FlushEdit || data[1] === CommandKind.CompactionEdit || data[1] === CommandKind.Freeze)) {
        const cmd = decodeCommand(data);
        if (cmd.kind === 'flush-edit') {
          this.flushEdits++;
          this.record(`edit ${regionId}@${index} flush-edit freeze=${cmd.freezeIndex} sst=${cmd.sst ? shortKey(cmd.sst.key) : 'none'}`);
        } else if (cmd.kind === 'compaction-edit') {
          this.compactionEdits++;
          this.record(`edit ${regionId}@${index} compaction-edit ${cmd.inputs.map(shortKey).join(',')} -> ${cmd.output ? shortKey(cmd.output.key) : 'none'}`);
        } else {
          this.record(`edit ${regionId}@${index} freeze`);
        }
      }
      const result = apply(index, data, term);
      if (result instanceof Promise) return result.then((r) => this.checkAtMostOnce(regionId, index, data, r));
      return this.checkAtMostOnce(regionId, index, data, result);
    };
    return state;
  }

  /**
   * At most once (docs/raft-rules.md R19): a write with a request id takes effect at one log
   * index of its region; a retry that commits at another index must be answered from the dedup
   * table (or refused), never applied again. A write took effect at `index` when its answer's
   * version is `index` (an answer from the dedup table carries the version of the first
   * application). Every replica applies the same index, so only another index is a second
   * application.
   */
  private checkAtMostOnce(regionId: string, index: number, data: Uint8Array, result: ApplyResult): ApplyResult {
    if (result.status !== 'ok' || result.version !== index || data.byteLength < 2 || data[1] !== CommandKind.Write) return result;
    const cmd = decodeCommand(data);
    if (cmd.kind !== 'write' || cmd.requestId === 0) return result;
    const key = `${regionId}/${cmd.clientId}/${cmd.requestId}`;
    const at = this.tookEffectAt.get(key);
    if (at !== undefined && at !== index) this.flag('at most once', `request ${cmd.requestId} of client ${cmd.clientId} took effect twice in ${regionId}: at index ${at} and again at ${index}`);
    this.tookEffectAt.set(key, index);
    return result;
  }

  // ─── Engine mode: objects named by versions, snapshots and manifests exist ────────────────

  /** SST keys a manifest object (the latest manifest, a published snapshot) names; undefined if absent. */
  private sstsOfObject(key: string): readonly string[] | undefined {
    const cached = this.manifestSsts.get(key);
    if (cached) return cached;
    const bytes = this.objectStore!.peek(key);
    if (!bytes) return undefined;
    const ssts = decodeManifest(bytes, key).ssts.map((s) => s.key);
    this.manifestSsts.set(key, ssts);
    return ssts;
  }

  /**
   * Who names SSTs that must exist: every running replica's version, every node's durable raft
   * snapshot (what it restarts from), each region's latest manifest (what recovery loads) and
   * each replica's newest published snapshot (what GC keeps for it). Older manifests and older
   * published snapshots are on their way out and may name collected SSTs.
   */
  private namers(): SstNamer[] {
    const out: SstNamer[] = [];
    const store = this.objectStore!;
    /** `region/peer` → the durable snapshot index of that peer's running replica. */
    const durableOfRunning = new Map<string, number>(); // or of the replica a down node restarts
    /** `region/peer` of the peers cut off for good by their removal (cutOffByRemoval). */
    const cutOff = new Set<string>();
    /** `region/peer` of every peer whose log is on some disk (running, fenced, closed or down). */
    const onDisk = new Set<string>();
    const regionIds = this.ddl ? [...this.regionIds, ...this.ddl.allRegions()] : this.regionIds;
    for (const node of this.nodes.values()) {
      const server = node.server as EngineServer | undefined;
      for (const regionId of regionIds) {
        const replica = server?.replica(regionId);
        // A damaged region's log is never loaded again (its data is deleted by the repair).
        const disk = node.disk.damage(regionId) ? undefined : node.disk.stores.get(regionId);
        const snap = disk?.snapshot();
        const hosted = server?.hostedReplica(regionId);
        // The peer this disk restarts as: the running replica's, or, for a node that is down or
        // runs without hosting the region (K1: a start reopens the log's replicas only once its
        // registration is answered), the one its restart or reopen would load (this durable
        // snapshot, not an older publication). A fenced replica's is `hosted`'s, below.
        const peerId = replica?.selfPeerId ?? (hosted ? undefined : this.peerOnDisk(node, regionId));
        if (peerId !== undefined && snap) durableOfRunning.set(`${regionId}/${peerId}`, snap.metadata.index);
        // A peer cut off for good by its removal names nothing GC must keep, neither its version
        // nor the durable snapshot it would restart from (cutOffByRemoval): listed as exempt,
        // never checked. Also a fenced replica (replica() hides it), a down node's peer and one
        // waiting for its node's registration (engine seed 34 with drain,metarestore,corrupt,wipe).
        const exemptPeer = hosted?.selfPeerId ?? peerId;
        const diskPeer = disk === undefined ? undefined : (exemptPeer ?? this.peerOnDisk(node, regionId));
        if (diskPeer !== undefined) onDisk.add(`${regionId}/${diskPeer}`);
        const isCutOff = disk !== undefined && exemptPeer !== undefined && this.cutOffByRemoval(node, regionId, exemptPeer, disk, hosted);
        if (isCutOff) cutOff.add(`${regionId}/${exemptPeer}`);
        const exempt = isCutOff ? ({ exempt: true } as const) : {};
        // Its running version only while it has no committed entry left to apply — a replica still
        // applying its log (a restart re-applying up to its removal, before E3's fix) reads SSTs
        // for a conditional write whose key is not in its memtable (finding E3,
        // docs/simulation.md); what lies past its commit index it never applies (no leader feeds
        // it, it is never elected) — and once its stale-read gate refuses (docs/correctness.md
        // 8g): until then a stale read there may still read its version. A leader in its own view
        // (paused through its removal, the `pause` fault) serves no stale read before a ReadIndex
        // confirms it still leads (E15), which a cut-off replica never gets.
        // Or while its last leader contact is within the stale-read bound of its *receipt*: the gate
        // measures from receipt, and an append the leader sent before applying the removal, held
        // while the node was paused (longer than the GC grace), opens it for a bound after the
        // resume — a stale read then may fail NOT_FOUND on an SST GC collected meanwhile, never
        // answer wrongly (engine seed 7492 of the wide mix with balance: n3 paused 1.1 s through
        // its removal, its version at 202). Computed here from the contact, not the gate, so a gate
        // that serves past the bound (planted stale-reads-ungated) is still caught.
        const contactFresh = replica?.leaderContact !== undefined && server !== undefined && this.sched.now - replica.leaderContact.atMs <= server.staleReadBoundMs;
        const gated = server !== undefined && (server.staleReadRefusal(regionId) !== undefined || server.leaderMustConfirm(regionId));
        // Committed entries left to apply hold it only when its log holds its own removal (E2, and
        // E3's rule: it reaches its removal without applying a command, so it reads nothing; this
        // would catch it re-applying them again). A cut-off replica that never learned its removal
        // (E1) applies its committed entries when it runs again, and a conditional write among
        // them may read an SST GC collected: it then fails on the missing object, which
        // `replica failed` expects of a cut-off peer (cutOffReplayFailure; engine seed 7283 of the
        // wide mix with balance: n3 paused 1,389 ms through its removal, applied to 213, more committed).
        // Only a removal within what it knows committed counts: one above its commit index is E10's
        // case (docs/correctness.md), where it applies the commands before it like any replica that
        // never learned its removal, and an apply reading a collected SST stalls it by design
        // (region-server.ts ownRemovalAhead). Engine seed 1242 of the wide mix with balance (session
        // 34): n3's peer 3 of …104 applied to 91, commit 97, its removal at 98–99, held before.
        const committed = replica?.raft.log.committed ?? 0;
        const settled = replica !== undefined && (committed <= replica.appliedIndex || firstOwnRemoval(replica.raft.log.slice(replica.appliedIndex + 1, committed + 1, Number.MAX_SAFE_INTEGER), replica.selfPeerId) === 0);
        const versionExempt = isCutOff && settled && (gated || contactFresh) ? exempt : {};
        const freshOnly = 'exempt' in versionExempt && !gated ? ({ freshContact: true } as const) : {};
        const withEntriesLeft = 'exempt' in versionExempt && replica !== undefined && committed > replica.appliedIndex ? ({ entriesLeft: true } as const) : {};
        if (replica) out.push({ who: `n${node.id} ${regionId} version at ${replica.appliedIndex}`, ssts: replica.stateMachine.ssts.map((s) => s.key), ...versionExempt, ...freshOnly, ...withEntriesLeft });
        // A disk the metasrv refused as a restored copy (K1) reopens none of its replicas, now or at
        // any later start (refusedStores): its durable snapshot is never restarted from. Nor is a
        // disk put back from a copy and not yet registered (restoredDisks; engine seed 2320 of the
        // wide mix: n2's copy, down, its snapshot at 11 naming an SST GC collected before the
        // metasrv refused its start): a copy is a lost disk, owed nothing; refused, it reopens
        // nothing, and not refused (a catalog older than the copy) it is held again once its
        // replicas reopen. Held as any other while a replica runs or is hosted on it (a start
        // reopening before its registration is answered, the planted `reopen-before-registration`,
        // is still caught on it).
        const copy = this.refusedStores.has(node.disk.storeId) || this.restoredDisks.has(node.id);
        const refusedCopy = copy && replica === undefined && hosted === undefined;
        if (snap && snap.metadata.index > 0 && refusedCopy) {
          out.push({ who: `n${node.id} ${regionId} durable raft snapshot at ${snap.metadata.index} (a restored copy, refused or not registered)`, ssts: decodeManifest(snap.data, `n${node.id} ${regionId} snapshot`).ssts.map((s) => s.key), refusedCopy: true });
        } else if (snap && snap.metadata.index > 0) {
          // Which match held it, said in the message: a running node that hosts no replica of the
          // region is matched to the peer its reopen loads (E11), like a down node.
          const how = server !== undefined && replica === undefined && hosted === undefined ? ' (node running, replica not hosted)' : '';
          out.push({ who: `n${node.id} ${regionId} durable raft snapshot at ${snap.metadata.index}${how}`, ssts: decodeManifest(snap.data, `n${node.id} ${regionId} snapshot`).ssts.map((s) => s.key), ...exempt });
        }
      }
    }
    for (const regionId of regionIds) {
      const latest = store.keys(manifestPrefix(regionId)).filter((k) => k.endsWith('.manifest')).at(-1);
      if (latest) out.push({ who: `latest manifest ${shortKey(latest)}`, ssts: this.sstsOfObject(latest) ?? [] });
      const newest = new Map<number, { index: number; key: string }>();
      for (const key of store.keys(replicaSnapshotPrefix(regionId))) {
        const p = parseReplicaSnapshotKey(regionId, key);
        if (p && (newest.get(p.peerId)?.index ?? -1) < p.index) newest.set(p.peerId, { index: p.index, key });
      }
      for (const [peerId, { index, key }] of newest) {
        // A publication older than the durable snapshot its running replica would restart from
        // is a lagging report (its next publication supersedes it; its put may be slow): that
        // replica is covered by its durable snapshot above. The region's leader reads its own
        // snapshot locally and ignores its own publications (src/datanode/flusher.ts), so
        // holding it to a lagging one of them would be stricter than G2.
        if ((durableOfRunning.get(`${regionId}/${peerId}`) ?? -1) > index) continue;
        // A cut-off peer's publications name nothing GC must keep either (GC deletes them as a
        // former peer's: G3 counts the leader's membership, which does not name it). Nor do those
        // of a peer whose log is on no disk any more (deleted by the metasrv, or its disk wiped or
        // damaged): a publication only reports a durable snapshot, and nothing restarts from one
        // that is gone (engine, `drain`, seed 243: the SST went 30 ms after the removed peer was
        // deleted, before GC removed its publication as a former peer's).
        const exemptPublication = cutOff.has(`${regionId}/${peerId}`) || !onDisk.has(`${regionId}/${peerId}`);
        out.push({ who: `${regionId} peer ${peerId}'s published snapshot at ${index}`, ssts: this.sstsOfObject(key) ?? [], ...(exemptPublication ? ({ exempt: true } as const) : {}) });
      }
    }
    return out;
  }

  /**
   * Whether peer `peerId`, whose log is on `node`'s disk (`disk`; `hosted`: its replica if the
   * node runs, fenced or not), was cut off from its region for good by its removal, so that
   * nothing it names must be kept (docs/simulation.md, findings E1 and E2). It is when every other
   * replica of the region on any disk has a durable raft snapshot whose membership does not name
   * it and that is past everything this peer has or may still receive, by raft's comparison of
   * logs: at a term above the last term of its log (on disk, in memory, and in any envelope on its
   * way to it), or at that term and above its last index; and the membership it restarts from has
   * another voter.
   *
   * Why that is for good. Memberships only move forward from a durable snapshot and peer ids are
   * never reused, so no replica on any disk counts this peer again: none sends it an entry or a
   * snapshot (what is already on its way was counted above), and a replica created later starts
   * from one of theirs. Every one of them refuses its (pre-)votes: its log ends at or past the
   * snapshot, which is past this peer's last entry by that comparison (raft's vote rule,
   * §5.4.1); its own vote is not a majority of a membership with another voter. So it is never
   * elected and its log never grows: it applies nothing a leader counts. It may apply what its own log commits — its removal, if the log holds it (then it is
   * fenced, E2); a replica that never learned it stays frozen (E1) — and a restart reopens it from
   * its durable snapshot (no SST is read to open) with no leader heard from, so no stale read.
   * What it still costs: a stale read before a restart (E1's open part) and, if re-applying a
   * conditional write reads a collected SST, the replica's failure, which `replica failed` sees
   * (finding E3; so the caller exempts a running version only with nothing committed left to apply:
   * since E3's fix a replica whose log commits its removal re-applies no command, and this is
   * what would catch it doing so again).
   * A replica any leader still counts is named by that leader's membership, so it is never exempt.
   */
  private cutOffByRemoval(node: SimNode, regionId: string, peerId: number, disk: MemoryStorage, hosted: Replica<RegionState, ApplyResult> | undefined): boolean {
    const own = disk.snapshot().metadata.confState;
    if (!own.voters.some((v) => v !== peerId)) return false;
    let lastIndex = disk.lastIndex();
    let lastTerm = disk.term(lastIndex);
    if (hosted) {
      lastIndex = Math.max(lastIndex, hosted.raft.log.lastIndex());
      lastTerm = Math.max(lastTerm, hosted.raft.log.lastTerm());
    }
    const pending = this.peerQueues ? [...this.peerQueues.pendingTo(node.id)] : [];
    for (const packet of this.net.inFlight) if (packet.to === node.id) pending.push(packet.envelope);
    for (const { regionId: r, message: m } of pending) {
      if (r !== regionId || m.to !== peerId) continue;
      const last = m.entries.at(-1);
      if (last) {
        lastIndex = Math.max(lastIndex, last.index);
        lastTerm = Math.max(lastTerm, last.term);
      }
      if (m.snapshot) {
        lastIndex = Math.max(lastIndex, m.snapshot.metadata.index);
        lastTerm = Math.max(lastTerm, m.snapshot.metadata.term);
      }
    }
    let others = 0;
    for (const other of this.nodes.values()) {
      if (other === node || other.disk.damage(regionId)) continue;
      const store = other.disk.stores.get(regionId);
      if (!store) continue;
      const { index, term, confState } = store.snapshot().metadata;
      // Past it by raft's own comparison of logs (a higher last term, or the same term and a
      // higher index): no replica holding this snapshot votes for the peer, and the peer holds
      // nothing committed it lacks. Wide-mix engine seed 595 (session 34): n3's log at 188 of term
      // 11, n1's durable snapshot at 188 of term 12 — past it, which the index alone did not see.
      if (term < lastTerm || (term === lastTerm && index <= lastIndex)) return false;
      if ((confState.voters.includes(peerId) || confState.learners.includes(peerId)) && !removalCommittedPast(store, peerId)) return false;
      others++;
    }
    return others > 0;
  }

  /** The peer a down node's disk reopens for a region at its restart (as restart() and the datanode core decide), if any. */
  private peerOnDisk(node: SimNode, regionId: string): number | undefined {
    if (this.meta) {
      const raw = node.disk.getRegionMeta(regionId);
      return raw ? (JSON.parse(new TextDecoder().decode(raw)) as { selfPeerId: number }).selfPeerId : undefined;
    }
    const placement = this.placements.get(regionId)?.get(node.id);
    return placement && placement.storeId === node.disk.storeId ? placement.peerId : undefined;
  }

  /** After each delete that took effect: nothing that must exist named it. */
  private checkDeleted(key: string): void {
    this.record(`deleted ${shortKey(key)}`);
    if (!key.endsWith('.sst')) return;
    this.sstsDeleted++;
    if (this.options.checkEveryDelete === false) return;
    let exemptNamed = false;
    let refusedNamed = false;
    let freshNamed = false;
    let entriesLeftNamed = false;
    for (const { who, ssts, exempt, refusedCopy, freshContact, entriesLeft } of this.namers()) {
      if (!ssts.includes(key)) continue;
      if (refusedCopy) refusedNamed = true;
      else if (exempt) {
        exemptNamed = true;
        if (freshContact) freshNamed = true;
        if (entriesLeft) entriesLeftNamed = true;
      } else this.flag('referenced object deleted', `${key} was deleted while ${who} names it`);
    }
    if (exemptNamed) this.deletesNamedByCutOff++;
    if (freshNamed) this.deletesNamedByFreshContact++;
    if (entriesLeftNamed) this.deletesNamedWithEntriesLeft++;
    if (refusedNamed) this.deletesNamedByRefusedCopy++;
  }

  /**
   * At the end: every SST named by a version, a durable snapshot, the latest manifest or a newest
   * published snapshot exists — the namers each delete is checked against (checkDeleted), with
   * the same two kinds owed nothing: a cut-off peer's (exempt) and a restored copy's durable
   * snapshot, refused or not registered (refusedCopy; engine seed 2765 of the wide mix flagged
   * a refused copy's snapshot here that its delete had rightly passed).
   */
  private checkObjectsExist(): void {
    for (const { who, ssts, exempt, refusedCopy } of this.namers()) {
      if (exempt || refusedCopy) continue;
      const missing = ssts.filter((k) => !this.objectStore!.has(k));
      if (missing.length > 0) this.fail('referenced object missing', `${who} names ${missing.join(', ')}, not in the object store`);
    }
  }

  // ─── Nemesis ────────────────────────────────────────────────────────────────────────────────

  private scheduleNemesis(afterMs: number): void {
    this.sched.at(this.sched.now + afterMs, () => {
      if (!this.faults) return;
      this.nemesisStep();
      this.scheduleNemesis(50 + this.rand.int(250));
    });
  }

  // ─── Quiescence: client lulls and the two checkers (docs/quiescence.md) ───────────────────────

  /** Now and then every client pauses, long enough for the regions to quiesce; the nemesis does not. */
  private scheduleLull(afterMs: number): void {
    this.sched.at(this.sched.now + afterMs, () => {
      if (!this.faults) return;
      if (this.lullRand.chance(0.6)) {
        this.lullUntil = this.sched.now + 150 + this.lullRand.int(450);
        this.record(`lull until ${this.lullUntil}`);
      }
      this.scheduleLull(300 + this.lullRand.int(700));
    });
  }

  /**
   * Every QUIESCE_PROBE_MS, over every replica of every live node:
   * - quiesce-in-step: a follower asleep under a leader asleep (same term) holds exactly the
   *   leader's log end and commit index (Q1: a follower quiesces only in step with its leader);
   * - quiesce-orphan: no follower sleeps longer than QUIESCE_ORPHAN_BOUND_MS after the node of
   *   its leader crashed (the region server must tell it: raft.leaderUnreachable()).
   */
  private probeQuiescence(): void {
    const now = this.sched.now;
    this.drain?.probe(this.nodes.values(), this.regionIds);
    for (const node of this.nodes.values()) {
      if (node.server) this.nodeDownSince.delete(node.id);
      else if (!this.nodeDownSince.has(node.id)) this.nodeDownSince.set(node.id, now);
    }
    for (const regionId of this.regionIds) {
      const leaders = new Map<number, { nodeId: number; lastIndex: number; commit: number; term: number }>();
      const asleep: { nodeId: number; replica: Replica<StateMachine<unknown>, unknown> }[] = [];
      for (const node of this.nodes.values()) {
        const replica = node.server?.replica(regionId) as Replica<StateMachine<unknown>, unknown> | undefined;
        const key = `${node.incarnation.number}/${regionId}`;
        if (!replica) continue;
        const st = replica.raft.status();
        if (!st.quiesced) {
          if (this.quiescedSeen.delete(key)) {
            this.quiesceCounts.woken++;
            const leaderNode = replica.leaderNodeId();
            if (leaderNode !== undefined && this.nodeDownSince.has(leaderNode)) this.quiesceCounts.wokenAfterLeaderDown++;
          }
          continue;
        }
        if (!this.quiescedSeen.has(key)) {
          this.quiescedSeen.add(key);
          this.quiesceCounts.quiesced++;
        }
        if (replica.isLeader()) leaders.set(st.id, { nodeId: node.id, lastIndex: st.lastIndex, commit: st.commit, term: st.term });
        else asleep.push({ nodeId: node.id, replica });
      }
      for (const { nodeId, replica } of asleep) {
        const st = replica.raft.status();
        const leader = leaders.get(st.leader);
        if (leader && leader.term === st.term && (leader.lastIndex !== st.lastIndex || leader.commit !== st.commit)) {
          this.flag('quiesce-in-step', `${regionId}: n${nodeId} sleeps at last index ${st.lastIndex} commit ${st.commit}, its leader n${leader.nodeId} (t${st.term}) sleeps at last index ${leader.lastIndex} commit ${leader.commit} (${this.status()})`);
        }
        const leaderNode = replica.leaderNodeId();
        const crashedAt = leaderNode === undefined ? undefined : this.nodeDownSince.get(leaderNode);
        // `pause`: a paused follower counts no ticks; its bound runs from when it runs again.
        const downSince = crashedAt === undefined ? undefined : Math.max(crashedAt, this.nodes.get(nodeId)!.incarnation.pausedUntil);
        if (downSince !== undefined && now - downSince > QUIESCE_ORPHAN_BOUND_MS) {
          const paused = downSince > crashedAt! ? `, counted from the end of n${nodeId}'s pause at ${downSince}` : '';
          this.flag('quiesce-orphan', `${regionId}: n${nodeId} still sleeps ${now - downSince} ms after its leader's node n${leaderNode} crashed${paused} (bound ${QUIESCE_ORPHAN_BOUND_MS} ms; ${this.status()})`);
        }
      }
    }
    for (const node of this.nodes.values()) {
      if (node.server || this.nodeDownSince.get(node.id) !== now) continue;
      // Crashed this very probe interval: was it leading a sleeping region? (coverage)
      this.quiesceCounts.quiescedCrashed += [...this.quiescedSeen].filter((k) => k.startsWith(`${node.incarnation.number}/`)).length;
    }
    if (this.violation === undefined) this.sched.at(now + QUIESCE_PROBE_MS, () => this.probeQuiescence());
  }

  private nemesisStep(): void {
    if (this.catloss?.step()) return;
    if (this.drain?.step()) return;
    if (this.spuriousRand) {
      if (this.extra.has('stall') && this.stallStep(this.spuriousRand)) return;
      if (this.extra.has('twin') && this.twinStep(this.spuriousRand)) return;
      if (this.extra.has('spare') && (this.spareClockStep(this.spuriousRand) || this.spareOutageStep(this.spuriousRand))) return;
    }
    if (this.pauseRand && this.pauseStep(this.pauseRand)) return;
    if (this.metaRand && this.metasrvFaultStep(this.metaRand)) return;
    if (this.faultRand && this.extraFaultStep(this.faultRand)) return;
    const ids = [...this.nodes.keys()];
    const up = [...this.nodes.values()].filter((n) => n.server);
    const roll = this.rand.int(100);
    if (roll < 25) {
      // Crash one node, keeping a majority up most of the time.
      const keepUp = this.rand.chance(0.2) ? 1 : Math.floor(ids.length / 2) + 1;
      if (up.length - 1 >= keepUp) this.crash(this.rand.pick(up), 'nemesis');
    } else if (roll < 40) {
      const isolated = this.rand.pick(ids);
      for (const other of ids) if (other !== isolated) this.cutBoth(isolated, other);
      this.record(`partition isolate n${isolated}`);
    } else if (roll < 50) {
      const from = this.rand.pick(ids);
      const to = this.rand.pick(ids.filter((i) => i !== from));
      this.net.cut.add(`${from}->${to}`);
      this.record(`partition one-way n${from}->n${to}`);
    } else if (roll < 60) {
      // Isolate the current leader of a region.
      const leader = this.leaderOf(this.rand.pick(this.regionIds));
      if (leader !== undefined) {
        for (const other of ids) if (other !== leader) this.cutBoth(leader, other);
        this.record(`partition isolate-leader n${leader}`);
      }
    } else if (roll < 75) {
      if (this.net.cut.size > 0) {
        this.net.cut.clear();
        this.record('partition heal');
      }
    } else if (roll < 90) {
      const regionId = this.rand.pick(this.regionIds);
      const leader = this.leaderOf(regionId);
      if (leader !== undefined) {
        const to = this.rand.pick(ids.filter((i) => i !== leader));
        this.transfers++;
        this.record(`transfer-leader ${regionId} n${leader}->n${to}`);
        try {
          // Without the metasrv a node's peer id is its node id; with it, repairs give fresh ones.
          const toPeer = this.meta ? (this.nodes.get(to)!.server?.replica(regionId)?.selfPeerId ?? to) : to;
          this.nodes.get(leader)!.server!.transferLeader(regionId, toPeer);
        } catch {
          // the replica is not open yet
        }
      }
    } else if (this.engine && roll >= 95 && this.objectStore) {
      // The object store refuses every request for a while (S3 down or unreachable).
      const ms = 20 + this.rand.int(300);
      this.objectStore.outageUntil = Math.max(this.objectStore.outageUntil, this.sched.now + ms);
      this.record(`object-store outage ${ms}ms`);
    }
    // else: quiet
  }

  /** The region servers' tuning: the mode's, with the opt-in election rules and lease reads. */
  private tuning(base: RaftTuning): RaftTuning {
    return { ...base, ...(this.options.calmElections ? CALM_ELECTIONS : {}), ...(this.options.leaseReads ? { readOnly: 'lease' as const } : {}) };
  }

  /**
   * The `pause` fault, from its own stream: a running datanode process pauses (PAUSE_MS_MIN–MAX).
   * Nothing of it runs meanwhile — timers, its disk's and the object store's answers, its calls'
   * answers, raft messages and the metasrv's calls reaching it — and all of it runs when it
   * resumes, in the order it was due (sim-world.ts `Incarnation.pausedUntil`); its wall clock
   * moves on. A crash during a pause drops what it held, as a kill of a stopped process does.
   */
  private pauseStep(rand: Rand): boolean {
    if (!rand.chance(PAUSE_CHANCE)) return false;
    const now = this.sched.now;
    const running = [...this.nodes.values()].filter((n) => n.server && n.incarnation.pausedUntil <= now);
    if (running.length === 0) return false;
    const node = rand.pick(running);
    const ms = PAUSE_MS_MIN + rand.int(PAUSE_MS_MAX - PAUSE_MS_MIN + 1);
    node.incarnation.pausedUntil = now + ms;
    this.pauses++;
    this.record(`pause n${node.id} for ${ms}ms`);
    return true;
  }

  /** The third slice's faults (ClusterSimOptions.faults), drawn from their own stream; false when none was done. */
  private extraFaultStep(rand: Rand): boolean {
    const roll = rand.int(100);
    if (roll < 6 && this.extra.has('corrupt')) return this.corruptRecord(rand);
    if (roll >= 6 && roll < 10 && this.extra.has('wipe')) return this.wipeDisk(rand);
    if (roll >= 10 && roll < 16 && this.extra.has('clock') && this.engine) {
      const node = rand.pick([...this.nodes.values()]);
      const stepMs = (rand.chance(0.5) ? 1 : -1) * (1_000 + rand.int(600_000));
      node.wallOffsetMs += stepMs;
      this.storageStats.clockSteps++;
      this.record(`clock n${node.id} ${stepMs > 0 ? '+' : ''}${stepMs}ms`);
      return true;
    }
    if (roll >= 16 && roll < 26 && this.extra.has('close')) return this.closeReplica(rand);
    if (roll >= 26 && roll < 56 && this.extra.has('restore') && this.meta) return this.restoreDisk(rand);
    return false;
  }

  /**
   * The `restore` fault (with the metasrv; finding K1): a copy of a node's disk is taken while the
   * node is down (a cold backup; a running node is crashed for it), and later, the node down
   * again, put back — its replicas' votes and logs rolled back to the copy, its store id and start
   * count as they were. The datanode must reopen none of them: the metasrv refuses the start, and
   * the operator then moves the disk aside (noteStartRefused). Both halves only while every region
   * is whole (a disk put back is a lost disk: three replicas tolerate one).
   */
  private restoreDisk(rand: Rand): boolean {
    if (!this.faultableRegions().every((r) => this.regionWhole(r))) return false;
    const now = this.sched.now;
    const clean = (n: SimNode) => !n.pendingWipe && n.pendingDamage.size === 0;
    const due = [...this.nodes.values()].filter((n) => n.diskCopy !== undefined && now - n.diskCopy.takenAt >= RESTORE_COPY_AGE_MS && clean(n));
    if (due.length > 0) {
      const node = rand.pick(due);
      const { copy, takenAt } = node.diskCopy!;
      node.diskCopy = undefined;
      if (node.server) this.crash(node, 'its disk is put back from a copy');
      node.disk.restoreFrom(copy);
      this.restoredDisks.add(node.id);
      this.storageStats.restores++;
      this.record(`restore n${node.id}'s disk from the copy of ${now - takenAt} ms ago (store ${copy.storeId}, start ${copy.starts?.count ?? 0})`);
      return true;
    }
    const candidates = [...this.nodes.values()].filter((n) => n.diskCopy === undefined && clean(n));
    if (candidates.length === 0 || [...this.nodes.values()].some((n) => n.diskCopy !== undefined)) return false;
    const node = rand.pick(candidates);
    if (node.server) this.crash(node, 'a copy of its disk is taken');
    node.diskCopy = { copy: node.disk.copy(), takenAt: now };
    this.record(`copy n${node.id}'s disk (store ${node.disk.storeId}, start ${node.disk.starts?.count ?? 0})`);
    return true;
  }

  /**
   * The `close` fault: a running replica is closed without deleting its data (what a datanode
   * does with the metasrv's close_region instruction when destroy is off) and opened again from
   * its log 30–300 ms later. Most often the replica closed is a region's leader with proposals
   * in flight: those may still commit under the next leader (the followers may hold them), the
   * path of finding 8a. Without the metasrv the harness reopens it under its placed peer; with
   * it, the datanode core closes it (its instruction path) and the metasrv's reconciliation
   * opens it again when the next heartbeat no longer reports it.
   */
  private closeReplica(rand: Rand): boolean {
    const candidates: { node: SimNode; regionId: string; replica: Replica<StateMachine<unknown>, unknown> }[] = [];
    for (const node of this.nodes.values()) {
      if (!node.server || (this.meta && !node.core)) continue;
      for (const regionId of this.regionIds) {
        const replica = node.server.replica(regionId) as Replica<StateMachine<unknown>, unknown> | undefined;
        // A replica being replaced (the harness's repair) is left to it. After a catalog loss or
        // restore, neither is a region the metasrv does not place: it sends no close for a region
        // it does not know, and would never reopen one.
        const forgotten = this.meta !== undefined && (this.catloss?.happened === true || this.catalogWasLost) && !this.meta.core?.catalog?.regions[regionId];
        if (replica && !forgotten && this.repairs.get(regionId)?.nodeId !== node.id) candidates.push({ node, regionId, replica });
      }
    }
    if (candidates.length === 0) return false;
    const busyLeaders = candidates.filter((c) => c.replica.isLeader() && c.replica.proposals.size > 0);
    const { node, regionId, replica } = busyLeaders.length > 0 && rand.chance(0.8) ? rand.pick(busyLeaders) : rand.pick(candidates);
    const server = node.server!;
    const inc = node.incarnation;
    const reopenAfterMs = 30 + rand.int(271);
    const inFlight = replica.proposals.size;
    this.closeStats.closes++;
    if (replica.isLeader()) this.closeStats.leaders++;
    this.closeStats.proposalsInFlight += inFlight;
    this.record(`close n${node.id} ${regionId} peer ${replica.selfPeerId} (${replica.isLeader() ? 'leader' : 'follower'}, ${inFlight} proposals in flight), reopen after ${reopenAfterMs} ms`);
    if (this.meta) {
      // The instruction's path (serialized with the node's other opens and closes); the metasrv reopens it.
      // Not a deletion for the `drain` fault's checker: only a close with destroy is (noteDestroy).
      node.core!.closeRegion(regionId, false).catch((err: unknown) => this.flag('close', `closing ${regionId} on n${node.id} failed: ${String(err)}`));
      return true;
    }
    server.close(regionId, false).then(
      () => this.sched.at(this.sched.now + reopenAfterMs, () => this.reopen(node, server, regionId), inc),
      (err: unknown) => this.flag('close', `closing ${regionId} on n${node.id} failed: ${String(err)}`),
    );
    return true;
  }

  /** Without the metasrv: a replica the `close` fault closed opens again under its placed peer (unless its node restarted, which reopened it). */
  private reopen(node: SimNode, server: Server | EngineServer, regionId: string): void {
    const placement = this.placements.get(regionId)?.get(node.id);
    if (node.server !== server || server.replica(regionId) || server.failure(regionId) || !placement || placement.storeId !== node.disk.storeId) return;
    if (this.repairs.get(regionId)?.nodeId === node.id) return;
    this.closeStats.reopens++;
    this.record(`reopen n${node.id} ${regionId} peer ${placement.peerId}`);
    server.open({ regionId, selfPeerId: placement.peerId, peers: this.peersOf(regionId), bootstrap: placement.bootstrap }).catch((err: unknown) => this.flag('open failed', `n${node.id} ${regionId}: ${String(err)}`));
  }

  /**
   * A new destructive fault may hit the region: no replica is lost or about to be found lost,
   * and every replica runs and has applied the membership the harness placed. The last part
   * matters right after a repair: the leader applies the removal of the old peer before the
   * followers learn that it committed, and if the leader's replica is lost then, the two left
   * still count four voters, two of them gone, and can never elect (docs/simulation.md).
   */
  private regionWhole(regionId: string): boolean {
    if (this.repairs.has(regionId)) return false;
    let placed = [...(this.placements.get(regionId)?.values() ?? [])].map((p) => p.peerId).sort((a, b) => a - b);
    if (this.meta) {
      // With the metasrv, "placed" is its catalog: acting, nothing lost, no procedure on the region.
      const catalog = this.meta.core?.catalog;
      const region = catalog?.regions[regionId];
      // A DDL table's region the catalog forgot (a lost catalog, or a copy from before the table
      // put back) is placed by no one and repaired by no one: only its group says whether it can
      // lose a replica (`groupWhole`).
      // So is one no one knows (`orphan`).
      if (catalog && !region && (this.ddl?.forgottenRegions().includes(regionId) || this.orphan(regionId))) return this.groupWhole(regionId);
      if (!catalog || !region || region.replicas.some((p) => p.lost !== undefined)) return false;
      if (runningProcedures(catalog).some((p) => 'regionId' in p.data && p.data.regionId === regionId)) return false;
      placed = region.replicas.map((p) => p.peerId).sort((a, b) => a - b);
    }
    return [...this.nodes.values()].every((n) => {
      if (!this.hosts(n.id, regionId)) return !n.server?.replica(regionId);
      const conf = n.server?.replica(regionId)?.raft.confState();
      const voters = conf ? [...conf.voters].sort((a, b) => a - b) : [];
      return !n.pendingWipe && !n.pendingDamage.has(regionId) && conf !== undefined && conf.learners.length === 0 && voters.join() === placed.join();
    });
  }

  /**
   * `regionWhole` for a region no catalog places (a DDL table a lost or restored catalog forgot):
   * every replica its group's newest membership names runs, no wipe or damage is pending on its
   * node, the running members agree on the voters and count no learner, and every voter is one of
   * them. Nothing repairs such a region (reconcile.ts R1), so a loss is for good: after one (a
   * wiped, refused or failed replica) the group stays not whole and no destructive fault hits
   * it again. A region hosted nowhere (its replicas destroyed by a drop a restored copy's mark
   * finished) has nothing left to lose; one hosted only on a down node's disk is not whole.
   */
  private groupWhole(regionId: string): boolean {
    if (this.newestMembership(regionId) === undefined) return ![...this.nodes.values()].some((n) => this.hostsAnyhow(n, regionId));
    let voters: readonly number[] | undefined;
    const running = new Set<number>();
    for (const node of this.nodes.values()) {
      if (!this.hostsAsMember(node, regionId)) continue;
      const replica = node.server?.replica(regionId);
      if (!replica || node.pendingWipe || node.pendingDamage.has(regionId)) return false;
      const conf = replica.raft.confState();
      const sorted = [...conf.voters].sort((a, b) => a - b);
      if (conf.learners.length > 0 || (voters !== undefined && sorted.join() !== voters.join())) return false;
      voters = sorted;
      running.add(replica.selfPeerId);
    }
    return voters?.every((v) => running.has(v)) === true;
  }

  /**
   * A byte flipped in a durable entry record of one replica: its node is crashed (if up) and
   * finds the damage when it restarts. Usually the last entry (often committed, acknowledged by
   * this node): the record the old WAL took for a torn write. Half of the time the region's
   * leader is crashed too, so that the damaged node's vote counts (as Jepsen's
   * corrupt-committed-entry does).
   */
  private corruptRecord(rand: Rand): boolean {
    const candidates: [SimNode, string][] = [];
    for (const node of this.nodes.values()) {
      for (const regionId of this.faultableRegions()) {
        const placement = this.placements.get(regionId)?.get(node.id);
        const store = node.disk.stores.get(regionId);
        const hosted = this.meta ? node.disk.getRegionMeta(regionId) !== undefined : placement !== undefined && placement.storeId === node.disk.storeId;
        if (!this.regionWhole(regionId) || !hosted || !store || node.disk.damage(regionId)) continue;
        if (store.lastIndex() >= firstLiveIndex(store)) candidates.push([node, regionId]);
      }
    }
    if (candidates.length === 0) return false;
    const [node, regionId] = rand.pick(candidates);
    const leader = this.leaderOf(regionId);
    this.crash(node, 'corrupt');
    const store = node.disk.stores.get(regionId)!;
    const first = firstLiveIndex(store);
    const last = store.lastIndex();
    if (last < first) return true; // the crash left no live entry
    const index = rand.chance(0.7) ? last : first + rand.int(last - first + 1);
    node.disk.flipByte(regionId, index);
    node.pendingDamage.add(regionId);
    this.storageStats.corruptions++;
    this.record(`corrupt n${node.id} ${regionId} entry ${index} (last ${last}, commit ${store.initialState().hardState.commit})`);
    if (leader !== undefined && leader !== node.id && rand.chance(0.5)) this.crash(this.nodes.get(leader)!, `leader of ${regionId}, after the corruption`);
    return true;
  }

  /**
   * The regions a destructive fault must find whole: the workload's, and with `ddl` every region
   * of the metasrv's catalog (a table being created or dropped included; none is whole while the
   * metasrv is down) and every region of the DDL client's live and forgotten tables. The last
   * because the catalog is not the whole truth: a copy from before a table, put back, forgets its
   * regions while their replicas stay, and a later copy that knows the table brings them back.
   * Left out meanwhile, a region could lose a second replica of three (engine seed 2867 of the
   * wide mix and marks: d1's peer 13 lost with n4's refused disk, then, while the restored
   * catalog did not know d1, peer 14 with n3's — one replica left, no leader ever, and the repair
   * a later copy started waited at add-learner for good).
   */
  private faultableRegions(): string[] {
    if (!this.ddl) return [...this.regionIds];
    const catalog = this.meta?.core?.catalog;
    const client = this.options.guardBug === 'forgotten-regions-unguarded' ? [] : [...this.ddl.liveRegions(), ...this.ddl.forgottenRegions(), ...this.orphanRegions()];
    return [...new Set([...this.regionIds, ...Object.keys(catalog?.regions ?? {}), ...client])];
  }

  /**
   * Regions on some node's disk that neither the workload nor the DDL client nor the current
   * catalog knows: a table created by a CreateTable attempt whose answer was lost (the client then
   * created the name again under another id), forgotten by a catalog copy from before it. Its group
   * runs, unplaced and unrepaired, like a forgotten table's (engine seed 4381 of the wide mix with
   * marks, pause and balance: table 1025 created at 0.4 s by an attempt answered UNAVAILABLE,
   * forgotten by the copy put back at 1.2 s; its peer 5 failed on a damaged log at 13.6 s, and n4's
   * disk, holding peer 4, was put back from a copy at 16.8 s — the second loss of three; a later
   * copy knowing 1025 started a repair that waited for a leader for good).
   */
  private orphanRegions(): string[] {
    const onDisk = new Set<string>();
    for (const node of this.nodes.values()) for (const regionId of node.disk.regionIds()) onDisk.add(regionId);
    return [...onDisk].filter((r) => this.orphan(r));
  }

  /** A region neither the workload, the DDL client nor the current catalog knows (`orphanRegions`). */
  private orphan(regionId: string): boolean {
    if (!this.ddl || this.regionIds.includes(regionId) || this.ddl.allRegions().includes(regionId)) return false;
    return this.meta?.core?.catalog?.regions[regionId] === undefined;
  }

  /** A node restarts on an empty disk with its node id; only while every region is whole. */
  private wipeDisk(rand: Rand): boolean {
    if (!this.faultableRegions().every((r) => this.regionWhole(r))) return false;
    const node = rand.pick([...this.nodes.values()]);
    this.crash(node, 'wipe');
    node.disk.wipe();
    this.restoredDisks.delete(node.id);
    node.pendingWipe = true;
    this.storageStats.wipes++;
    this.record(`wipe n${node.id} (new store ${node.disk.storeId})`);
    return true;
  }

  private cutBoth(a: number, b: number): void {
    this.net.cut.add(`${a}->${b}`);
    this.net.cut.add(`${b}->${a}`);
  }

  private leaderOf(regionId: string): number | undefined {
    for (const node of this.nodes.values()) if (node.server?.replica(regionId)?.isLeader()) return node.id;
    return undefined;
  }

  // ─── Clients ────────────────────────────────────────────────────────────────────────────────

  private clientStep(client: Client): void {
    if (!this.faults || client.busy) return;
    if (this.sched.now < this.lullUntil) {
      this.sched.at(this.lullUntil + this.lullRand.int(30), () => this.clientStep(client));
      return;
    }
    const roll = this.rand.int(100);
    if (roll < 35) {
      const key = this.rand.pick(KEYS);
      const value = this.nextValue++;
      this.mutate(client, this.regReg, { op: 'write', key, value }, { f: 'write', key, value }, this.history);
    } else if (roll < 55) {
      const key = this.rand.pick(KEYS);
      const seen = this.written.get(key) ?? [];
      const from = seen.length > 0 && this.rand.chance(0.8) ? seen[seen.length - 1 - this.rand.int(Math.min(3, seen.length))]! : null;
      const to = this.nextValue++;
      this.mutate(client, this.regReg, { op: 'cas', key, from, to }, { f: 'cas', key, value: [from, to] }, this.history);
    } else if (roll < 80) {
      this.read(client, this.rand.pick(KEYS));
    } else {
      const element = this.nextValue++;
      this.mutate(client, this.regSet, { op: 'add', element }, { f: 'add', value: element }, this.setHistory);
    }
  }

  private nextStep(client: Client): void {
    client.busy = false;
    if (client.onDone) {
      client.onDone();
      return;
    }
    if (client.route) {
      this.sched.at(this.sched.now + this.readRand!.int(30), () => this.readerStep(client));
      return;
    }
    this.sched.at(this.sched.now + this.rand.int(30), () => this.clientStep(client));
  }

  /**
   * With `followers`: one linearizable read of a register, at the node the reader's route cache
   * names, as src/client/client.ts chooses it: the leader the routes (or a hint since) name
   * unless it was unreachable in the last DOWN_AVOID_MS, else the first replica not avoided.
   * Production serves a linearizable read on any replica (database-service.ts readable(): a
   * follower asks its leader for a read index), and a client's writes to a follower are
   * forwarded without an error to learn from, so its routes stay stale until they are fetched
   * again: reads land on followers, and on a node that restarted, for seconds.
   */
  private readerStep(reader: Client): void {
    if (!this.faults || reader.busy) return;
    const rand = this.readRand!;
    if (this.sched.now < this.lullUntil) {
      this.sched.at(this.lullUntil + rand.int(30), () => this.readerStep(reader));
      return;
    }
    const route = reader.route!;
    // The first lookup is awaited; later ones run in the background (see readerTarget).
    if (route.fetchedAt === Number.NEGATIVE_INFINITY) this.fetchRoute(route);
    const key = rand.pick(KEYS);
    const invokedAt = this.sched.now;
    let target = this.readerTarget(route, 0);
    reader.target.set(this.regReg, target);
    const complete = this.invoke(reader, this.regReg, this.history, { f: 'read', key });
    let cursor = 0;
    let backoffMs = READER_BACKOFF_MS_MIN;
    // One read, retried as the library's withRegion does: a hint at once, else the next replica
    // after a backoff (20 ms doubling to 200 ms), within the read's deadline.
    const attempt = () => {
      this.readPathStats.readerReads++;
      if (this.leaderOf(this.regReg) !== target) this.readPathStats.readerReadsOnFollowers++;
      this.readRegister(target, key).then(
        (value) => complete('ok', value),
        (err: unknown) => {
          const now = this.sched.now;
          const isDown = (nodeId: number) => (route.downUntil.get(nodeId) ?? Number.NEGATIVE_INFINITY) > now;
          let retryAt: number;
          if (String(err).includes('connection refused')) {
            // UNAVAILABLE without a leader hint: avoided for a while, and the route forgets it.
            route.downUntil.set(target, now + DOWN_AVOID_MS);
            route.leader = undefined;
          } else {
            const hint = isRegionDbError(err) ? Number(err.details['leaderNodeId']) : Number.NaN;
            route.leader = Number.isInteger(hint) && hint !== target && this.nodes.has(hint) && !isDown(hint) ? hint : undefined;
          }
          if (route.leader !== undefined) {
            retryAt = now;
            backoffMs = READER_BACKOFF_MS_MIN;
          } else {
            cursor++;
            retryAt = now + backoffMs;
            backoffMs = Math.min(READER_BACKOFF_MS_MAX, backoffMs * 2);
          }
          if (!this.faults || retryAt >= invokedAt + READER_DEADLINE_MS) {
            complete('fail', undefined, String(err));
            return;
          }
          this.sched.at(retryAt, () => {
            target = this.readerTarget(route, cursor);
            attempt();
          });
        },
      );
    };
    attempt();
  }

  /**
   * Where a reader's attempt goes (src/client/client.ts withRegion): the route's leader unless
   * avoided, else the replica at `cursor` (or the next one not avoided). Routes older than
   * ROUTES_REFRESH_MS (LEADERLESS_ROUTES_REFRESH_MS without a leader) are fetched again for the
   * next attempt; this one goes where the cached ones send it.
   */
  private readerTarget(route: ReaderRoute, cursor: number): number {
    const now = this.sched.now;
    const isDown = (nodeId: number) => (route.downUntil.get(nodeId) ?? Number.NEGATIVE_INFINITY) > now;
    const peers = [...this.nodes.keys()].filter((id) => this.hosts(id, this.regReg));
    let target = route.leader;
    if (target === undefined || isDown(target)) {
      target = peers[cursor % peers.length]!;
      for (let i = 0; i < peers.length; i++) {
        const id = peers[(cursor + i) % peers.length]!;
        if (!isDown(id)) {
          target = id;
          break;
        }
      }
    }
    if (now - route.fetchedAt >= (route.leader === undefined ? LEADERLESS_ROUTES_REFRESH_MS : ROUTES_REFRESH_MS)) this.fetchRoute(route);
    return target;
  }

  private fetchRoute(route: ReaderRoute): void {
    route.leader = this.leaderOf(this.regReg);
    route.fetchedAt = this.sched.now;
  }

  /** With the read path's faults: a process of `nodeId` issued a ReadIndex request with context `ctx`. */
  private noteReadContext(nodeId: number, ctx: string): void {
    const process = this.nodes.get(nodeId)!.incarnation.number;
    this.issuedBy.set(process, Number(ctx.slice(ctx.lastIndexOf(':') + 1)));
    const issuers = this.readContexts.get(ctx);
    if (issuers) issuers.push(process);
    else this.readContexts.set(ctx, [process]);
  }

  /**
   * With the read path's faults: a ReadIndex answer arrives at a follower. Counted: those
   * answering a request that an earlier process of the node issued, and those of them that find
   * a read of the running process pending under the same sequence number (with the old
   * contexts, `${nodeId}:${seq}`, the same context: the answer would release that read).
   */
  private noteReadAnswer(to: number, regionId: string, context: Uint8Array, index: number): void {
    const ctx = dec.decode(context);
    const issuers = this.readContexts.get(ctx);
    const node = this.nodes.get(to);
    // A request a follower forwarded for another node (it took itself for the leader) is answered to the forwarder: not counted.
    if (!issuers || !node?.server || !ctx.startsWith(`${to}:`)) return;
    this.readPathStats.answersToFollowers++;
    const process = node.incarnation.number;
    if (!issuers.some((p) => p < process)) return;
    this.readPathStats.answersCrossingRestart++;
    const seq = Number(ctx.slice(ctx.lastIndexOf(':') + 1));
    const seqOf = (c: string) => Number(c.slice(c.lastIndexOf(':') + 1));
    const pending = [...(node.server.replica(regionId)?.reads ?? [])].filter(([c, read]) => read.index < 0 && this.readContexts.get(c)?.includes(process)).map(([c]) => seqOf(c));
    const issued = this.issuedBy.get(process) ?? 0;
    const met = pending.includes(seq);
    if (met) this.readPathStats.answersMeetingSameSeq++;
    this.readPathStats.crossingSeqGaps.push(seq - issued);
    // A read released at this index could miss only what committed after it: is anything newer committed?
    const leader = this.leaderOf(regionId);
    const commit = leader === undefined ? 0 : (this.nodes.get(leader)!.server!.replica(regionId)?.raft.status().commit ?? 0);
    if (index < commit) this.readPathStats.answersCrossingBehindCommit++;
    this.record(`read answer ${ctx} (index ${index}, leader's commit ${commit}) to n${to} ${regionId}: from an earlier process; this one issued ${issued}, pending [${pending.join(',')}]${met ? ': MET' : ''}`);
  }

  private invoke(client: Client, regionId: string, log: HistoryEvent[], op: Pick<HistoryEvent, 'f' | 'key' | 'value'>): (outcome: Outcome, value?: unknown, error?: string) => void {
    client.busy = true;
    const process = client.process;
    log.push({ type: 'invoke', process, ...op, time: this.sched.now });
    this.record(`invoke p${process} ${op.f} ${op.key ?? ''} ${JSON.stringify(op.value)} -> n${client.target.get(regionId)}`);
    let done = false;
    const timer = this.sched.at(this.sched.now + OP_TIMEOUT_MS, () => complete('info', undefined, 'timeout'));
    const complete = (outcome: Outcome, value?: unknown, error?: string) => {
      if (done) return;
      done = true;
      timer.cancelled = true;
      this.opCounts[outcome]++;
      if (error) {
        const reason = error.replace(/\d+/g, 'N').slice(0, 70);
        this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
      }
      const event: HistoryEvent = { type: outcome, process, f: op.f, time: this.sched.now };
      if (op.key !== undefined) event.key = op.key;
      if (outcome === 'ok' && op.f === 'read') event.value = value;
      else if (op.value !== undefined) event.value = op.value;
      if (error) event.error = error;
      log.push(event);
      this.record(`${outcome} p${process} ${op.f} ${op.key ?? ''} ${JSON.stringify(event.value)}${error ? ` (${error.slice(0, 60)})` : ''}`);
      // After an indeterminate outcome the op may still take effect: a fresh process continues.
      if (outcome === 'info') {
        client.process += client.processStride ?? this.options.clients;
        // With `clients`, half of the time the new process is a new client library instance with
        // the same client id: its request ids start again by the library's rule.
        if (this.engine && this.extra.has('clients') && this.faultRand!.chance(0.5)) {
          this.requestIds.delete(client.id);
          this.storageStats.clientRestarts++;
          this.record(`client ${client.id} restarts with its client id`);
        }
      }
      this.nextStep(client);
    };
    return complete;
  }

  private serverFor(client: Client, regionId: string): Server | EngineServer | undefined {
    return this.nodes.get(client.target.get(regionId)!)?.server;
  }

  /** Follows a leader hint or tries another node. */
  private retarget(client: Client, regionId: string, err: unknown): void {
    const hint = isRegionDbError(err) ? Number(err.details['leaderNodeId']) : Number.NaN;
    client.target.set(regionId, Number.isInteger(hint) && this.nodes.has(hint) ? hint : 1 + this.rand.int(this.options.nodes));
  }

  private mutate(client: Client, regionId: string, command: Command, op: Pick<HistoryEvent, 'f' | 'key' | 'value'>, log: HistoryEvent[]): void {
    const complete = this.invoke(client, regionId, log, op);
    const invokedAt = this.sched.now;
    const server = this.serverFor(client, regionId);
    if (!server) {
      this.retarget(client, regionId, undefined);
      complete('fail', undefined, 'connection refused');
      return;
    }
    // With `clients`, some writes carry no request id (a raw gRPC client): not deduplicated, so never retried.
    const raw = this.engine && this.extra.has('clients') && this.faultRand!.chance(0.15);
    let bytes = this.engine ? this.engineCommand(client, command, raw) : enc.encode(JSON.stringify(command));
    let round = 1;
    // Engine mode retries as the client library does: an attempt that failed is sent again, to
    // the leader it hinted, with the same request id (dedup answers a retry of a write that did
    // apply with its first result). Once an attempt's outcome was unknown, a later definite
    // refusal does not make the write failed (docs/correctness.md 8c): it stays unknown.
    const maxAttempts = this.engine && !raw ? ENGINE_ATTEMPTS_MAX : 1;
    let attempts = 0;
    let uncertain = false;
    const onResult = (result: boolean | ApplyResult) => {
      let applied: boolean;
      if (typeof result === 'boolean') {
        applied = result;
      } else if (result.status === 'ok' || result.status === 'condition-failed') {
        applied = result.status === 'ok';
        if (result.status === 'ok' && command.op !== 'add') this.versions.set(command.op === 'write' ? command.value : command.to, result.version);
      } else if (result.status === 'request-too-old' && this.extra.has('evict')) {
        // Evicted records (tiny tables): the region's horizon passed this client's ids. As the
        // client library does (src/client/client.ts, deduplicated): later ids start above the
        // floor; if this id's only attempt was refused nothing applied, so it runs once more
        // under a new id; otherwise whether it applied is unknown.
        this.storageStats.tooOld++;
        this.requestIds.set(client.id, Math.max(this.requestIds.get(client.id) ?? 0, result.oldestKnown));
        if (attempts === 1 && round === 1 && !uncertain) {
          round++;
          attempts = 0;
          bytes = this.engineCommand(client, command, raw);
          this.record(`p${client.process} request too old (below ${result.oldestKnown}): again under a new id`);
          attempt(this.serverFor(client, regionId));
          return;
        }
        complete('info', undefined, result.status);
        return;
      } else {
        // Request ids only grow and a client has one write in flight: dedup must never answer these here.
        this.flag('dedup', `${JSON.stringify(command)} from client ${client.id} was answered ${JSON.stringify(result)}`);
        complete('info', undefined, result.status);
        return;
      }
      // Only values that took effect, with their version, may be CAS'd from (a plain write answered
      // 'condition-failed' is a dedup answer of another command: planted 7b).
      if (applied && command.op !== 'add') {
        const key = command.key;
        const list = this.written.get(key) ?? [];
        list.push(command.op === 'write' ? command.value : command.to);
        this.written.set(key, list);
      }
      complete(applied ? 'ok' : 'fail', undefined, applied ? undefined : 'cas mismatch');
    };
    const onError = (err: unknown, definite: boolean) => {
      this.retarget(client, regionId, err);
      if (!definite) uncertain = true;
      if (attempts < maxAttempts && this.sched.now + ENGINE_RETRY_PAUSE_MS < invokedAt + OP_TIMEOUT_MS) {
        this.retries++;
        this.sched.at(this.sched.now + ENGINE_RETRY_PAUSE_MS, () => attempt(this.serverFor(client, regionId)));
        return;
      }
      const forgetUnknown = this.options.clientBug === 'refusal-after-unknown';
      complete(definite && (!uncertain || forgetUnknown) ? 'fail' : 'info', undefined, String(err));
    };
    // NOT_FOUND from a proposal: its replica was closed or removed before raft took the command
    // (RegionServer.close and the removal fail only those as NOT_FOUND; what raft already had
    // fails as outcome unknown). The client library does not retry NOT_FOUND: the write failed,
    // unless an earlier attempt's outcome was unknown (src/client/client.ts, withRegion).
    const onNotFound = (err: unknown) => {
      this.retarget(client, regionId, err);
      const forgetUnknown = this.options.clientBug === 'refusal-after-unknown';
      complete(!uncertain || forgetUnknown ? 'fail' : 'info', undefined, String(err));
    };
    // With `marks`, a later copy of this attempt (lateCopy): deduplicated writes only — a raw
    // write's copy would rightly apply again.
    const lateCopyOf = (sent: Uint8Array) => {
      if (raw || !this.engine || !this.lateRand) return;
      const cmd = decodeCommand(sent);
      if (cmd.kind === 'write' && cmd.requestId > 0) this.lateCopy(regionId, sent, cmd.requestId, client.id);
    };
    const attempt = (target: Server | EngineServer | undefined) => {
      attempts++;
      if (!target) {
        onError(new Error('connection refused'), true);
        return;
      }
      let done: Promise<boolean | ApplyResult>;
      try {
        done = target.propose(regionId, bytes);
      } catch (err) {
        // Refused before raft saw it: this attempt never happens (an earlier one still may).
        onError(err, true);
        return;
      }
      // NOT_LEADER from the queue: raft refused the batch, nothing was appended.
      const sent = bytes;
      done.then(
        (result) => {
          if (typeof result !== 'boolean' && (result.status === 'ok' || result.status === 'condition-failed')) lateCopyOf(sent);
          onResult(result);
        },
        (err: unknown) => {
          const notFound = isRegionDbError(err, ErrorCode.NotFound);
          const definite = isRegionDbError(err, ErrorCode.NotLeader);
          if (!notFound && !definite) lateCopyOf(sent); // outcome unknown: the copy may take effect, as the attempt may have
          if (notFound) onNotFound(err);
          else onError(err, definite);
        },
      );
    };
    attempt(server);
  }

  /**
   * Engine mode: the register workload as row writes. A write puts row (k, 0, v); a CAS from a
   * value expects the version of the acknowledged write that set it (values are unique, so the
   * row has that version exactly when it holds that value), from null expects the row absent;
   * a set add puts a new row per element. Every command carries the client's next request id.
   */
  private engineCommand(client: Client, command: Command, raw: boolean): Uint8Array {
    let requestId = 0;
    let clientId = `sim-raw-${client.id}`;
    if (raw) {
      this.storageStats.rawWrites++;
    } else {
      // The client library's rule (src/client/client.ts, finding 7c): ids start from the wall
      // clock, so a restarted instance with the same client id never reuses one. Without
      // `clients` no instance restarts and ids simply count from 1 (the traces quoted in
      // docs/simulation.md); the planted ids-restart-at-one counts from 1 in every instance.
      const last = this.requestIds.get(client.id) ?? 0;
      const fromClock = this.extra.has('clients') && this.options.clientBug !== 'ids-restart-at-one';
      requestId = fromClock ? Math.max(last + 1, (SIM_EPOCH_MS + this.sched.now) * CLIENT_REQUEST_IDS_PER_MS) : last + 1;
      this.requestIds.set(client.id, requestId);
      clientId = `sim-client-${client.id}`;
    }
    // With `marks`, writes carry the client library's session mark (R19 D3): a simulated client
    // has one operation at a time, so the lowest id it may still send is this one's — every
    // earlier request of the client is forgotten, and a late copy of one is refused as too old.
    const mark = !raw && this.extra.has('marks') ? { completedBelow: requestId } : {};
    // keepRows, as the database service proposes: the replica that applies these bytes first
    // (the leader, in production) takes the rows as they are (decodeCommandForApply).
    const keep = { keepRows: true };
    if (command.op === 'add') return encodeCommand({ kind: 'write', clientId, requestId, ...mark, rows: [[`e${command.element}`, 0, command.element]] }, keep);
    if (command.op === 'write') return encodeCommand({ kind: 'write', clientId, requestId, ...mark, rows: [[command.key, 0, command.value]] }, keep);
    const rows = [[command.key, 0, command.to]];
    if (command.from === null) return encodeCommand({ kind: 'write', clientId, requestId, ...mark, rows, expectAbsent: true }, keep);
    const version = this.versions.get(command.from);
    if (version === undefined) throw new Error(`the simulator has no version for value ${command.from} (only acknowledged values are CAS'd from)`);
    return encodeCommand({ kind: 'write', clientId, requestId, ...mark, rows, expectVersion: version }, keep);
  }

  private read(client: Client, key: string): void {
    const complete = this.invoke(client, this.regReg, this.history, { f: 'read', key });
    this.readRegister(client.target.get(this.regReg)!, key).then(
      (value) => complete('ok', value),
      (err: unknown) => {
        this.retarget(client, this.regReg, err);
        complete('fail', undefined, String(err));
      },
    );
  }

  /** A linearizable read (ReadIndex) on one node. */
  private async readRegister(nodeId: number, key: string): Promise<number | null> {
    const server = this.nodes.get(nodeId)?.server;
    if (!server) throw new Error('connection refused');
    await server.readBarrier(this.regReg);
    const replica = server.replica(this.regReg);
    if (!replica) throw new Error('replica closed');
    if (replica.stateMachine instanceof RegionState) {
      const row = await replica.stateMachine.get({ k: key, ts: 0 });
      return row ? (row.row['v'] as number) : null;
    }
    return replica.stateMachine.registers.get(key) ?? null;
  }

  private async readSet(nodeId: number, regionId = this.regSet): Promise<number[]> {
    const server = this.nodes.get(nodeId)?.server;
    if (!server) throw new Error('connection refused');
    await server.readBarrier(regionId);
    const replica = server.replica(regionId);
    if (!replica) throw new Error('replica closed');
    if (replica.stateMachine instanceof RegionState) {
      const out: number[] = [];
      for await (const { row } of replica.stateMachine.scan()) out.push(row['v'] as number);
      return out;
    }
    return [...replica.stateMachine.set];
  }

  // ─── DDL (test/sim/sim-ddl.ts) ─────────────────────────────────────────────────────────────

  private ddlHost(meta: SimMetasrv): DdlHost {
    return {
      sched: this.sched,
      meta,
      objectStore: this.objectStore,
      schema: ENGINE_SCHEMA,
      nodeIds: [...this.nodes.keys()],
      faultsOn: () => this.faults,
      record: (e) => this.record(e),
      flag: (invariant, detail) => this.flag(invariant, detail),
      nextElement: () => this.nextValue++,
      add: (regionId, element, log, done) => {
        this.ddlWriter.onDone = done;
        this.mutate(this.ddlWriter, regionId, { op: 'add', element }, { f: 'add', value: element }, log);
      },
      hosts: (nodeId, regionId) => this.hostsAnyhow(this.nodes.get(nodeId)!, regionId),
      hostsAsMember: (nodeId, regionId) => this.hostsAsMember(this.nodes.get(nodeId)!, regionId),
      failed: (nodeId, regionId) => this.replicaFailed(this.nodes.get(nodeId)!, regionId),
      quorumHosted: (regionId) => {
        const able = new Set<number>();
        const configs: (readonly number[])[] = [];
        for (const node of this.nodes.values()) {
          const replica = node.server?.replica(regionId);
          if (replica) {
            able.add(replica.selfPeerId);
            configs.push(replica.raft.confState().voters);
          } else if (!node.server && !node.disk.damage(regionId)) {
            const peer = this.peerOnDisk(node, regionId);
            const store = node.disk.stores.get(regionId);
            if (peer === undefined || !store) continue;
            able.add(peer);
            configs.push(store.snapshot().metadata.confState.voters);
          }
        }
        return configs.some((voters) => voters.filter((v) => able.has(v)).length > voters.length / 2);
      },
      newGeneration: (regionId) => this.regionGeneration.set(regionId, (this.regionGeneration.get(regionId) ?? 0) + 1),
      catalogLost: () => {
        this.catalogWasLost = true;
      },
      workloadWhole: () => this.regionIds.every((r) => this.regionWhole(r)),
      ...(this.extra.has('dropwrite')
        ? {
            // A write proposed straight to a node's replica, as a datanode whose schema cache
            // still names the dropped table routes one there: 'acknowledged', or why not.
            probeAfterDrop: async (nodeId: number, regionId: string) => {
              const server = this.nodes.get(nodeId)?.server;
              if (!server?.replica(regionId)) return 'not hosted';
              const bytes = this.engine ? encodeCommand({ kind: 'write', clientId: 'sim-ddl-probe', requestId: 0, rows: [['probe', 0, 0]] }) : enc.encode(JSON.stringify({ op: 'add', element: 0 }));
              const got = await this.settleInSim(Promise.resolve().then((): Promise<unknown> => server.propose(regionId, bytes)), OP_TIMEOUT_MS);
              if (got === undefined) return 'no answer';
              if (!got.ok) return `refused (${String(got.err).slice(0, 60)})`;
              const acknowledged = got.value === true || (typeof got.value === 'object' && got.value !== null && (got.value as { status?: string }).status === 'ok');
              return acknowledged ? 'acknowledged' : `not applied (${JSON.stringify(got.value)})`;
            },
          }
        : {}),
    };
  }

  /** After healing: the DDL client finishes what it started (a create or drop in flight) within the liveness bound. */
  private async waitForDdl(ddl: SimDdlClient, deadline: number): Promise<void> {
    while (!ddl.settled()) {
      if (this.sched.now > deadline) this.fail('liveness', `DDL not finished ${this.livenessBoundMs} ms after healing: ${ddl.pending()} (${this.status()})`);
      await this.sched.runUntil(this.sched.now + 10, () => this.violation !== undefined);
      this.throwIfViolated();
    }
  }

  /** The DDL client's checkers (sim-ddl.ts D2–D4), after the final reads. */
  private async checkDdl(ddl: SimDdlClient, deadline: number): Promise<void> {
    await ddl.check({
      deadline,
      readAll: async (nodeId, regionId) => {
        const got = await this.settleInSim(this.readSet(nodeId, regionId), OP_TIMEOUT_MS);
        if (got?.ok) return got.value;
        await this.sched.runUntil(this.sched.now + 20);
        return undefined;
      },
      probeWrite: async (nodeId, regionId) => {
        const server = this.nodes.get(nodeId)?.server;
        if (!server) throw new Error(`n${nodeId} is down`);
        const bytes = this.engine ? encodeCommand({ kind: 'write', clientId: 'sim-ddl-probe', requestId: 0, rows: [['probe', 0, 0]] }) : enc.encode(JSON.stringify({ op: 'add', element: 0 }));
        const got = await this.settleInSim(Promise.resolve().then((): Promise<unknown> => server.propose(regionId, bytes)), OP_TIMEOUT_MS);
        if (got === undefined) throw new Error('no answer');
        if (!got.ok) throw got.err;
        // A write the region's drop fence refused: what the database service answers a client for
        // it (NOT_FOUND, database-service.ts checkResult), not an acknowledgement. The probe took
        // it for one (engine seed 6148 of the wide mix with balance: a replica a restored catalog
        // forgot after the drop, fenced, answered 'table-dropped').
        const value = got.value as { status?: string; tableId?: number } | boolean | undefined;
        if (typeof value === 'object' && value.status === 'table-dropped') {
          ddl.stats.fenceRefusedProbes++;
          throw tableDroppedError('(the dropped table)', value.tableId ?? 0, regionId, 'write');
        }
        // Only an applied write is an acknowledgement (as D5's probe counts them).
        if (typeof value === 'object' && value.status !== 'ok') throw new Error(`not applied (${JSON.stringify(value)})`);
        return got.value;
      },
    });
    this.throwIfViolated();
    this.record('ddl checked');
  }

  // ─── The end: final reads and the checkers ──────────────────────────────────────────────────

  /** After healing: every key and the set read linearizably, from every node (liveness within the bound). */
  private async finalReads(deadline: number): Promise<void> {
    const process = 1_000_000;
    for (const nodeId of this.nodes.keys()) {
      for (const key of [...KEYS, 'set']) {
        if (!this.hosts(nodeId, key === 'set' ? this.regSet : this.regReg)) continue;
        for (;;) {
          if (this.sched.now > deadline) this.fail('liveness', `no linearizable read of ${key} on n${nodeId} within ${this.livenessBoundMs} ms after healing (${this.status()})`);
          let result: { value: unknown } | undefined;
          const invokedAt = this.sched.now;
          const p = key === 'set' ? this.readSet(nodeId) : this.readRegister(nodeId, key);
          p.then(
            (value) => (result = { value }),
            (err: unknown) => {
              // A read that finds an object of its version gone is lost data, not slowness.
              if (this.engine && /sim-object-store.*not found/.test(String(err))) this.flag('acknowledged row readable', `the final read of ${key} on n${nodeId} failed: ${String(err)}`);
              result = { value: undefined };
            },
          );
          // Run the world until the read completes (bounded by the op timeout).
          await this.sched.runUntil(this.sched.now, () => result !== undefined);
          const stopAt = this.sched.now + OP_TIMEOUT_MS;
          while (result === undefined && this.sched.now < stopAt) await this.sched.runUntil(this.sched.now + 10, () => result !== undefined);
          this.throwIfViolated();
          if (result?.value !== undefined) {
            const log = key === 'set' ? this.setHistory : this.history;
            const f = key === 'set' ? 'final-read' : 'read';
            const invoke: HistoryEvent = { type: 'invoke', process: process + nodeId, f, time: invokedAt };
            const ok: HistoryEvent = { type: 'ok', process: process + nodeId, f, time: this.sched.now, value: result.value };
            if (key !== 'set') {
              invoke.key = key;
              ok.key = key;
            }
            log.push(invoke, ok);
            this.record(`final-read n${nodeId} ${key} ${JSON.stringify(result.value).slice(0, 80)}`);
            break;
          }
          await this.sched.runUntil(this.sched.now + 20);
        }
      }
    }
  }

  /** Runs the world until `p` settles (at most `limitMs` of virtual time); undefined if it did not. */
  private async settleInSim<T>(p: Promise<T>, limitMs: number): Promise<{ ok: true; value: T } | { ok: false; err: unknown } | undefined> {
    let out: { ok: true; value: T } | { ok: false; err: unknown } | undefined;
    p.then(
      (value) => (out = { ok: true, value }),
      (err: unknown) => (out = { ok: false, err }),
    );
    await this.sched.runUntil(this.sched.now, () => out !== undefined);
    const stopAt = this.sched.now + limitMs;
    while (out === undefined && this.sched.now < stopAt) await this.sched.runUntil(this.sched.now + 5, () => out !== undefined);
    return out;
  }

  /**
   * Engine mode, at the end: on every node, every acknowledged add is found by a point Get (not
   * only by the scan the set checker used) and every register key reads without error: an SST
   * of the version that is gone shows here as an unreadable row.
   */
  private async checkAcknowledgedRowsReadable(): Promise<void> {
    const acked = this.setHistory.filter((e) => e.type === 'ok' && e.f === 'add').map((e) => e.value as number);
    for (const node of this.nodes.values()) {
      const server = node.server as EngineServer | undefined;
      if (!server) continue;
      for (const [regionId, keys] of [
        [this.regSet, acked.map((el) => ({ key: `e${el}`, expect: el as number | undefined }))],
        [this.regReg, KEYS.map((key) => ({ key, expect: undefined }))],
      ] as const) {
        if (!this.hosts(node.id, regionId)) continue;
        for (const { key, expect } of keys) {
          const replica = server.replica(regionId);
          if (!replica) this.fail('acknowledged row readable', `n${node.id} has no open replica of ${regionId} at the end`);
          const got = await this.settleInSim(replica.stateMachine.get({ k: key, ts: 0 }), OP_TIMEOUT_MS);
          if (got === undefined) this.fail('acknowledged row readable', `n${node.id} ${regionId}: Get(${key}) did not finish within ${OP_TIMEOUT_MS} ms`);
          if (!got.ok) this.fail('acknowledged row readable', `n${node.id} ${regionId}: Get(${key}) failed: ${String(got.err)}`);
          if (expect !== undefined && got.value?.row['v'] !== expect) {
            this.fail('acknowledged row readable', `n${node.id} ${regionId}: the acknowledged row ${key} reads ${JSON.stringify(got.value?.row ?? null)}`);
          }
        }
      }
    }
    this.record('acknowledged rows readable');
  }

  /** Whether a node hosts a replica of the region: running, failed, or on its disk (a down node's restart reopens it). */
  private hostsAnyhow(node: SimNode, regionId: string): boolean {
    return node.server?.replica(regionId) !== undefined || node.server?.failure(regionId) !== undefined || node.disk.getRegionMeta(regionId) !== undefined;
  }

  /**
   * The newest membership of a region among its running replicas (voters and learners of the one
   * with the highest conf index), or undefined when none runs. For a region no catalog knows,
   * where nothing deletes a replica its group does not count (reconcile.ts R1), a peer outside it
   * is no member of the group: a repair's new peer opened before its add-learner reached a leader
   * (engine seed 2199 of the wide mix), or a removed peer cut off before it learned its removal
   * (seed 2221). A replica's conf index may over-state its change's (a snapshot's index), never
   * under-state it, so the highest names a membership at least as new as every other — within one
   * log history: a recovery from the object store (not a fault of this simulator) rewinds the
   * group, and a replica from before it could outrank the recovered ones.
   */
  private newestMembership(regionId: string): ReadonlySet<number> | undefined {
    let newest: Replica<StateMachine<unknown>, unknown> | undefined;
    for (const node of this.nodes.values()) {
      const replica = node.server?.replica(regionId) as Replica<StateMachine<unknown>, unknown> | undefined;
      if (replica && (newest === undefined || replica.confIndex > newest.confIndex)) newest = replica;
    }
    if (newest === undefined) return undefined;
    const conf = newest.raft.confState();
    return new Set([...conf.voters, ...conf.learners]);
  }

  /** `hostsAnyhow`, for a region no catalog knows: only a replica of its group's newest membership (`newestMembership`). */
  private hostsAsMember(node: SimNode, regionId: string): boolean {
    if (!this.hostsAnyhow(node, regionId)) return false;
    const members = this.newestMembership(regionId);
    const peerId = node.server?.replica(regionId)?.selfPeerId ?? node.server?.failure(regionId)?.selfPeerId ?? this.peerOnDisk(node, regionId);
    return members === undefined || peerId === undefined || members.has(peerId);
  }

  /** Whether the node's replica of the region failed (a damaged log, R3): on the running node, or in the damaged disk of a down one. */
  private replicaFailed(node: SimNode, regionId: string): boolean {
    return node.server ? node.server.failure(regionId) !== undefined : node.disk.damage(regionId) !== undefined;
  }

  /** After healing, every replica of a region reaches the same applied index with the same state. */
  private async checkConvergence(deadline: number): Promise<void> {
    const forgotten = new Set(this.ddl?.forgottenRegions() ?? []);
    const diverged = (): string | undefined => {
      for (const regionId of this.ddl ? [...this.regionIds, ...this.ddl.liveRegions()] : this.regionIds) {
        // A DDL table a restored (or lost) catalog forgot: its replicas are where they were left,
        // unplaced (engine seed 2001 of the wide mix: the nodes without one counted as 'closed').
        const unplaced = forgotten.has(regionId) && this.meta?.core?.catalog?.regions[regionId] === undefined;
        // Nor is a failed replica of such a region compared: nothing repairs it (engine seed 2757).
        const hosting = [...this.nodes.values()].filter((n) => (unplaced ? this.hostsAsMember(n, regionId) && !this.replicaFailed(n, regionId) : this.hosts(n.id, regionId)));
        const states = hosting.map((n) => {
          const replica = n.server?.replica(regionId);
          if (!replica) return 'closed';
          const sm = replica.stateMachine;
          return `${replica.appliedIndex}:${sm instanceof RegionState ? engineDigest(sm) : dec.decode(sm.serialize())}`;
        });
        if (states.some((st) => st !== states[0])) return `${regionId}: ${states.map((st, i) => `n${hosting[i]!.id} ${st.slice(0, 60)}`).join(' | ')}`;
      }
      return undefined;
    };
    while (diverged() !== undefined) {
      if (this.sched.now > deadline) this.fail('convergence', `replicas differ ${this.livenessBoundMs} ms after healing: ${diverged()}`);
      await this.sched.runUntil(this.sched.now + 10);
      this.throwIfViolated();
    }
    this.record('converged');
  }

  private status(): string {
    return [...this.nodes.values()]
      .map((n) => {
        if (!n.server) return `n${n.id}:down`;
        return `n${n.id}:${this.regionIds.map((r) => {
          const rep = n.server!.replica(r);
          const st = rep?.raft.status();
          return st ? `${r}/${rep!.isLeader() ? 'L' : 'F'}t${st.term}c${st.commit}a${rep!.appliedIndex}${st.quiesced ? 'z' : ''}` : `${r}/closed`;
        }).join(',')}`;
      })
      .join(' ');
  }

  /** The trace's client events that name one of `needles` (what happened to the ops at fault). */
  private eventsNaming(needles: readonly string[]): string {
    if (needles.length === 0) return '';
    const lines = this.trace.filter((l) => needles.some((n) => l.includes(n)) && /^\d+ (invoke|ok|fail|info) /.test(l)).slice(-15);
    return `\n  the trace's events for these ops:\n${lines.map((l) => `    ${l}`).join('\n')}`;
  }

  private checkHistories(): void {
    const lin = checkRegister(sortedByTime(this.history));
    if (lin.valid === false) {
      const bad = lin.keys.find((k) => k.valid === false)!;
      const ops = (bad.failingOps ?? []).slice(0, 12).map(describeOp).join('\n    ');
      // A value as a write or read names it, and as the new value of a CAS (`cas b [40,47]`).
      const values = (bad.failingOps ?? []).slice(0, 6).flatMap((op) => [` ${JSON.stringify(op.value)}`, `,${JSON.stringify(op.value)}]`]);
      this.fail('linearizability', `${bad.message}\n  failing ops:\n    ${ops}${this.eventsNaming(values)}`);
    }
    if (lin.valid === 'unknown') this.fail('linearizability', `checker gave up: ${lin.unknownKeys.join(', ')}`);
    const set = checkSet(sortedByTime(this.setHistory));
    if (!set.valid) {
      const lost = set.lost.slice(0, 3).map((v) => ` add  ${JSON.stringify(v)}`);
      this.fail('set (no acknowledged add lost)', `${set.message}${this.eventsNaming(lost)}`);
    }
  }
}

/**
 * What must be identical on replicas at the same applied index, read without I/O: the SSTs of
 * the version, the flushed index, and every memtable entry (key and version). The rows in the
 * SSTs are compared by the final reads and checkAcknowledgedRowsReadable.
 */
function engineDigest(state: RegionState): string {
  const entries = (m: RegionState['memtable']) => [...m.scan()].map((e) => `${Buffer.from(e.key).toString('hex')}@${e.version}${e.op === 'delete' ? 'x' : ''}`).join(',');
  const frozen = state.frozen.map((f) => `${f.index}[${entries(f.memtable)}]`).join(' ');
  return `flushed ${state.flushedIndex} ssts ${state.ssts.map((s) => shortKey(s.key)).join(',')} frozen ${frozen} active [${entries(state.memtable)}]`;
}

/** An SST or manifest key without its region prefix and padding, for the trace. */
function shortKey(key: string): string {
  return key.replace(/^regions\/[^/]+\//, '').replace(/\b0{8,}/g, '');
}

/** The history is appended in virtual-time order already; a stable sort keeps it so. */
function sortedByTime(events: readonly HistoryEvent[]): HistoryEvent[] {
  return events.map((e, i) => ({ ...e, index: i })).sort((a, b) => a.time - b.time || a.index - b.index);
}

export async function runClusterSim(seed: number, overrides: Partial<ClusterSimOptions> = {}): Promise<ClusterSimResult> {
  return new ClusterSim({ ...defaultClusterSimOptions, ...overrides, seed }).run();
}

/**
 * Whether a durable log commits, past its durable snapshot and at or below its durable commit
 * index, the removal of `peerId` (`cutOffByRemoval`). A replica restarting from it re-applies the
 * removal before it may campaign (raft.ts: no campaign with a committed membership change left to
 * apply), so it never leads counting the peer again, as with a snapshot past the removal; peer
 * ids are never reused. Engine seed 3205 of the wide mix with marks: the region idle after a
 * repair removed n4's closed peer 8, every other durable snapshot (at 416) still named it, the
 * removal only in their logs (at ~419), when GC collected an SST of peer 8's snapshot at 381.
 */
function removalCommittedPast(store: MemoryStorage, peerId: number): boolean {
  const from = store.snapshot().metadata.index + 1;
  const commit = Math.min(store.initialState().hardState.commit, store.lastIndex());
  return commit >= from && firstOwnRemoval(store.entries(from, commit + 1, Number.MAX_SAFE_INTEGER), peerId) > 0;
}
