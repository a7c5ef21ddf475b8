// The simulated world of the whole-datanode simulator (cluster-sim.ts): one seeded event
// scheduler (virtual time), per-node clocks on it that die with the node's incarnation, a log
// engine whose synced writes take simulated fsync time and are lost by a crash before they land
// (commit-only writes are not synced at all, as the WAL defers them), and a network with
// seeded loss, duplication, delay/reordering and (one-way) partitions.
//
// Nothing here uses real time, sockets or disk. The only real event-loop call is the drain
// between two simulated events (a setImmediate that lets every promise continuation of the
// event run first): production code awaits promises, and all of them settle in microtasks.
import type { TimedClock, TimerHandle } from '../../src/common/clock.js';
import type { Rand } from '../../src/common/rand.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { Entry, HardState, Snapshot } from '../../src/raft/types.js';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import type { LogBatch, LogEngine, RegionDamage } from '../../src/wal/log-engine.js';
import { pino } from 'pino';
import type { Logger } from '../../src/common/logger.js';
import { type StartId, type StartRecord, confirmedStart, nextStart } from '../../src/common/store-id.js';

interface SimEvent {
  /** When it fires; moved later while its owner is paused (see `runUntil`). */
  at: number;
  seq: number;
  readonly fn: () => void;
  /** The incarnation that set it: events of a crashed incarnation never fire. */
  readonly owner: Incarnation | undefined;
  cancelled: boolean;
}

/** One life of a node, from (re)start to crash. */
export class Incarnation {
  dead = false;
  /**
   * The end of this process's latest pause (the `pause` fault: SIGSTOP, a long GC): while the
   * virtual time is before it, none of its events fire — its timers, its disk's and the object
   * store's answers, its calls' answers — and they fire when it ends, in the order they were due
   * (SimScheduler.runUntil). 0: never paused.
   */
  pausedUntil = 0;
  constructor(
    readonly nodeId: number,
    readonly number: number,
  ) {}
}

/** A binary min-heap of events ordered by (at, seq): ties fire in the order they were set. */
export class SimScheduler {
  private heap: SimEvent[] = [];
  private seq = 0;
  now = 0;
  fired = 0;

  at(atMs: number, fn: () => void, owner?: Incarnation): SimEvent {
    const ev: SimEvent = { at: Math.max(atMs, this.now), seq: this.seq++, fn, owner, cancelled: false };
    this.push(ev);
    return ev;
  }

  /**
   * An input reaching `owner` (a message, a call): while its process is paused it waits in the
   * socket — `retry` runs when the pause ends, as an event of `owner` (it dies with it) — and this
   * returns true; false when the process runs and the input is to be handled now.
   */
  heldWhilePaused(owner: Incarnation, retry: () => void): boolean {
    if (owner.pausedUntil <= this.now) return false;
    this.at(owner.pausedUntil, retry, owner);
    return true;
  }

  /** A clock and timers for one incarnation of a node. */
  clockFor(owner: Incarnation): TimedClock {
    return {
      nowMs: () => this.now,
      setTimeout: (fn, delayMs) => this.handle(this.at(this.now + delayMs, fn, owner)),
      setInterval: (fn, periodMs) => {
        const state = { cancelled: false, ev: undefined as SimEvent | undefined };
        const arm = () => {
          state.ev = this.at(this.now + periodMs, () => {
            if (state.cancelled) return;
            arm();
            fn();
          }, owner);
        };
        arm();
        return {
          cancel: () => {
            state.cancelled = true;
            if (state.ev) state.ev.cancelled = true;
          },
        };
      },
      setImmediate: (fn) => {
        this.at(this.now, fn, owner);
      },
    };
  }

  private handle(ev: SimEvent): TimerHandle {
    return { cancel: () => (ev.cancelled = true) };
  }

  /** Runs events up to `untilMs` (inclusive), draining promise continuations after each. */
  async runUntil(untilMs: number, stop?: () => boolean): Promise<void> {
    while (this.heap.length > 0 && this.heap[0]!.at <= untilMs) {
      const ev = this.pop();
      if (ev.cancelled || ev.owner?.dead) continue;
      if (ev.owner && ev.owner.pausedUntil > ev.at) {
        // Its process is paused: due when the pause ends, after the events due before it (a
        // new sequence number, given in the order they were due: their order is kept).
        ev.at = ev.owner.pausedUntil;
        ev.seq = this.seq++;
        this.push(ev);
        continue;
      }
      this.now = ev.at;
      this.fired++;
      ev.fn();
      await drain();
      if (stop?.()) return;
    }
    this.now = Math.max(this.now, untilMs);
  }

  private push(ev: SimEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): SimEvent {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Lets every promise continuation queued so far run (microtasks drain before a macrotask). */
function drain(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface DiskOptions {
  fsyncMsMin: number;
  fsyncMsMax: number;
}

/**
 * A datanode's disk, holding the raft logs of its regions. The MemoryStorage of a region is
 * what is on disk *and* what the running process reads: a write lands in it when its fsync
 * completes (synced batch) or at once (a batch that only moves commit indexes, which the WAL
 * writes without a sync). A crash drops the batch still syncing and rolls each region's commit
 * index back to the last one a sync covered.
 *
 * Storage faults (issue 15, third slice), applied while the node is down: `flipByte` damages one
 * durable entry record of a region, `wipe` loses the whole disk (a new store id, as a datanode's
 * data dir gets at its first start). `recover`, called when a process starts on the disk, does
 * what the WAL's open does (src/wal/wal.ts `recover`, docs/replica-health.md): a region with a
 * damaged record is reported (`damage`) and never loaded, nothing is cut, the other regions open.
 */
export class SimDisk implements LogEngine {
  readonly stores = new Map<string, MemoryStorage>();
  private readonly metas = new Map<string, Uint8Array>();
  /** Per region, how many drops landed (dropRegion): a batch committed before one does not write the region when it lands after it. */
  private readonly drops = new Map<string, number>();
  /** The hard state of each region as of the last completed sync. */
  protected readonly durable = new Map<string, HardState>();
  /** Entry records with a flipped byte, by region (what the next open will find): the index. */
  protected readonly flipped = new Map<string, number>();
  /** Regions found damaged by the last open: never read or written until dropped. */
  private readonly damaged = new Map<string, RegionDamage>();
  /** Changes when the disk is wiped: the identity of what is on it (a datanode's store id). */
  storeId = 1;
  /** The data dir's `starts` file (src/common/store-id.ts recordStart): the last start counted on it. */
  starts: StartRecord | undefined;
  /** Set by the simulator: the incarnation whose process writes through this engine now. */
  owner: Incarnation | undefined;
  syncs = 0;
  unsyncedBatches = 0;
  /** Called when a synced batch starts (the nemesis may crash the node during its fsync). */
  onSyncStart: (() => void) | undefined;

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
    private readonly options: DiskOptions,
  ) {}

  region(regionId: string): MemoryStorage {
    if (this.damaged.has(regionId)) throw new Error(`region ${regionId} is damaged on this disk; it must not be read or written`);
    let store = this.stores.get(regionId);
    if (!store) this.stores.set(regionId, (store = new MemoryStorage()));
    return store;
  }

  /** As the WAL's: every region with a log, a meta or damage (a meta may be written before the log). */
  regionIds(): string[] {
    return [...new Set([...this.stores.keys(), ...this.metas.keys(), ...this.damaged.keys()])];
  }

  damage(regionId: string): RegionDamage | undefined {
    return this.damaged.get(regionId);
  }

  /**
   * Flips a byte in the durable entry record at `index` of a region (the node is down: the
   * running process never re-reads its log, the next open checks every record).
   */
  flipByte(regionId: string, index: number): void {
    const store = this.stores.get(regionId);
    if (!store || index < firstLiveIndex(store) || index > store.lastIndex()) throw new Error(`region ${regionId} has no live entry ${index} on this disk`);
    this.flipped.set(regionId, index);
  }

  /** The whole disk is lost: the node restarts on an empty data dir with a new store id. */
  wipe(): void {
    this.stores.clear();
    this.metas.clear();
    this.durable.clear();
    this.flipped.clear();
    this.damaged.clear();
    this.storeId++;
    this.starts = undefined;
  }

  /** A process starts on the disk: its start is counted first (as recordStart does in the data dir). */
  recordStart(id: string): StartRecord {
    this.starts = nextStart(this.starts, id);
    return this.starts;
  }

  /** The metasrv answered a start's registration (as confirmStart does in the data dir). */
  confirmStart(start: StartId): StartRecord {
    this.starts = confirmedStart(start);
    return this.starts;
  }

  /**
   * A copy of everything on the disk (the `restore` fault's volume snapshot), taken while its node
   * is down: after `crash`, what is there is what is durable.
   */
  copy(): DiskCopy {
    return {
      stores: new Map([...this.stores].map(([id, store]) => [id, store.clone()])),
      metas: new Map(this.metas),
      durable: new Map(this.durable),
      flipped: new Map(this.flipped),
      damaged: new Map(this.damaged),
      storeId: this.storeId,
      starts: this.starts,
    };
  }

  /** The disk put back from a copy (its node down): every region, the store id and the start count as they were. */
  restoreFrom(copy: DiskCopy): void {
    const fresh = { ...copy, stores: new Map([...copy.stores].map(([id, store]) => [id, store.clone()])) };
    for (const [target, source] of [
      [this.stores, fresh.stores],
      [this.metas, fresh.metas],
      [this.durable, fresh.durable],
      [this.flipped, fresh.flipped],
      [this.damaged, fresh.damaged],
    ] as [Map<string, unknown>, Map<string, unknown>][]) {
      target.clear();
      for (const [k, v] of source) target.set(k, v);
    }
    this.storeId = fresh.storeId;
    this.starts = fresh.starts;
  }

  /**
   * What the WAL's open does with damaged records (src/wal/wal.ts, finding 3a/3b's fix): the
   * region is reported damaged, left as it is and never loaded. Returns the damage found.
   */
  recover(): RegionDamage[] {
    for (const [regionId, index] of this.flipped) {
      this.damaged.set(regionId, { regionId, index, reason: `WAL corruption in region ${regionId} at index ${index}: record checksum mismatch (simulated disk)` });
    }
    this.flipped.clear();
    return [...this.damaged.values()];
  }

  getRegionMeta(regionId: string): Uint8Array | undefined {
    return this.metas.get(regionId);
  }

  /**
   * With the cluster simulator's `slowdrop` fault: how long deleting a region takes (virtual ms),
   * drawn per drop. The WAL's dropRegion deletes the region's records in LevelDB, which takes as
   * long as the region's log is big and the disk is busy. The model lands the deletion at its end,
   * all at once, and a crash before then loses it (the event dies with the process that asked);
   * the real WAL (row X5 of docs/correctness.md) makes the region gone at its first write, a small
   * one, and an open after a crash finishes the rest — so the model keeps the region longer, the
   * conservative side for the checkers.
   * Undefined: instant, as before the fault.
   */
  dropDelayMs: (() => number) | undefined;

  async dropRegion(regionId: string): Promise<void> {
    const delayMs = this.dropDelayMs?.();
    if (delayMs !== undefined) await new Promise<void>((resolve) => this.sched.at(this.sched.now + delayMs, resolve, this.owner));
    this.stores.delete(regionId);
    this.metas.delete(regionId);
    this.durable.delete(regionId);
    this.flipped.delete(regionId);
    this.damaged.delete(regionId);
    this.drops.set(regionId, (this.drops.get(regionId) ?? 0) + 1);
  }

  batch(): LogBatch {
    const ops: { readonly id: string; readonly run: () => void }[] = [];
    let synced = false;
    return {
      append: (id: string, entries: readonly Entry[]) => {
        synced = true;
        ops.push({ id, run: () => this.region(id).append(entries) });
      },
      setHardState: (id: string, hs: HardState) => {
        const current = this.region(id).initialState().hardState;
        if (hs.term !== current.term || hs.vote !== current.vote) synced = true;
        ops.push({ id, run: () => this.region(id).setHardState(hs) });
      },
      applySnapshot: (id: string, snap: Snapshot) => {
        const current = this.region(id).snapshot().metadata.index;
        if (snap.metadata.index <= current) throw new RegionDbError(ErrorCode.StorageCompacted, `region ${id}: snapshot ${snap.metadata.index} is older than ${current}`);
        synced = true;
        ops.push({ id, run: () => this.region(id).applySnapshot(snap) });
      },
      setRegionMeta: (id: string, meta: Uint8Array) => {
        synced = true;
        ops.push({ id, run: () => this.metas.set(id, meta) });
      },
      requireDurableCommit: () => {
        synced = true;
      },
      commit: () => {
        const owner = this.owner;
        // The real WAL writes in commit order and a drop waits for the writes before it
        // (src/wal/wal.ts `dropRegion`): a batch committed before a drop of its region lands
        // first and the drop deletes what it wrote. Here a batch lands after its own sync delay,
        // so its ops for a region dropped since its commit are skipped when it lands.
        const drops = ops.map((op) => this.drops.get(op.id) ?? 0);
        const land = () => {
          for (const [i, op] of ops.entries()) if ((this.drops.get(op.id) ?? 0) === drops[i]) op.run();
        };
        return new Promise<void>((resolve) => {
          if (!synced) {
            // Commit indexes only: written without a sync (lost by a crash until the next sync).
            this.unsyncedBatches++;
            this.sched.at(this.sched.now, () => {
              land();
              resolve();
            }, owner);
            return;
          }
          const delay = this.options.fsyncMsMin + this.rand.int(this.options.fsyncMsMax - this.options.fsyncMsMin + 1);
          this.sched.at(this.sched.now + delay, () => {
            land();
            this.syncs++;
            // A sync makes everything written before it durable (the WAL is one file).
            for (const [id, store] of this.stores) this.durable.set(id, store.initialState().hardState);
            resolve();
          }, owner);
          this.onSyncStart?.();
        });
      },
    };
  }

  /** The process died: what was not synced is gone (a batch in flight never lands: its event dies with its owner). */
  crash(): void {
    for (const [id, store] of this.stores) {
      const hs = store.initialState().hardState;
      const durable = this.durable.get(id);
      const durableCommit = durable && durable.term === hs.term && durable.vote === hs.vote ? durable.commit : 0;
      const floor = store.snapshot().metadata.index;
      const commit = Math.min(hs.commit, Math.max(durableCommit, floor));
      if (commit !== hs.commit) store.setHardState({ ...hs, commit });
    }
  }

  async close(): Promise<void> {}
}

/** What `SimDisk.copy` took: the disk's regions, metas, durable hard states, damage and identity. */
export interface DiskCopy {
  readonly stores: ReadonlyMap<string, MemoryStorage>;
  readonly metas: ReadonlyMap<string, Uint8Array>;
  readonly durable: ReadonlyMap<string, HardState>;
  readonly flipped: ReadonlyMap<string, number>;
  readonly damaged: ReadonlyMap<string, RegionDamage>;
  readonly storeId: number;
  readonly starts: StartRecord | undefined;
}

/**
 * The first entry of a region's log that a WAL open checks: records at or below the snapshot
 * (and the compaction point) are left over from a compaction and ignored (src/wal/wal.ts).
 */
export function firstLiveIndex(store: MemoryStorage): number {
  return Math.max(store.firstIndex(), store.snapshot().metadata.index + 1);
}

export interface NetOptions {
  delayMsMin: number;
  delayMsMax: number;
  dropChance: number;
  dupChance: number;
}

export type Deliver = (from: number, to: number, envelope: RaftEnvelope) => void;

/** The network between datanodes: seeded loss, duplication, delay (and so reordering), cut links. */
export class SimNetwork {
  /** Cut links, `from->to` (a one-way partition cuts one direction only). */
  readonly cut = new Set<string>();
  faulty = true;
  sent = 0;
  dropped = 0;
  /**
   * Packets on the wire: sent, not yet arrived (a link cut meanwhile drops them on arrival). Read
   * by the checkers only (what a replica may still receive: ClusterSim.cutOffByRemoval).
   */
  readonly inFlight = new Set<{ readonly to: number; readonly envelope: RaftEnvelope }>();
  /** Region → when the network last lost one of its messages at random (not a cut link): read by checkers only. */
  private readonly lastLoss = new Map<string, number>();

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
    private readonly options: NetOptions,
    private readonly deliver: Deliver,
  ) {}

  transportFor(owner: Incarnation): RaftTransport {
    return {
      send: (to: number, envelopes: RaftEnvelope[]) => {
        if (owner.dead) return;
        for (const envelope of envelopes) this.sendOne(owner.nodeId, to, envelope);
      },
      close: async () => {},
    };
  }

  /** When the network last lost a message of `regionId` at random (undefined: never). */
  lastLossAt(regionId: string): number | undefined {
    return this.lastLoss.get(regionId);
  }

  /** One message from node `from` over the faulty network (the `queues` fault's connected streams). */
  sendFrom(from: number, to: number, envelope: RaftEnvelope): void {
    this.sendOne(from, to, envelope);
  }

  private sendOne(from: number, to: number, envelope: RaftEnvelope): void {
    this.sent++;
    if (this.cut.has(`${from}->${to}`)) {
      this.dropped++;
      return;
    }
    if (this.faulty && this.rand.chance(this.options.dropChance)) {
      this.lastLoss.set(envelope.regionId, this.sched.now);
      this.dropped++;
      return;
    }
    const copies = this.faulty && this.rand.chance(this.options.dupChance) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const span = this.faulty ? this.options.delayMsMax - this.options.delayMsMin : 1;
      const delay = this.options.delayMsMin + this.rand.int(span + 1);
      // In flight, a packet outlives its sender; a link cut meanwhile drops it on arrival.
      const packet = { to, envelope };
      this.inFlight.add(packet);
      this.sched.at(this.sched.now + delay, () => {
        this.inFlight.delete(packet);
        if (this.cut.has(`${from}->${to}`)) return;
        this.deliver(from, to, envelope);
      });
    }
  }
}

/**
 * A logger whose lines become trace events (the datanode core's logs in the simulator): the
 * message and its primitive fields, no time or pid, so a seed's trace stays the same.
 */
export function traceLogger(record: (line: string) => void): Logger {
  return pino(
    { level: 'info', base: undefined, timestamp: false },
    {
      write(line: string) {
        const { level: _level, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
        const parts = Object.entries(fields).map(([k, v]) => `${k}=${v !== null && typeof v === 'object' ? String((v as { message?: unknown }).message ?? '{…}') : String(v)}`);
        record(`${String(msg)}${parts.length > 0 ? ` (${parts.join(' ')})` : ''}`);
      },
    },
  );
}
