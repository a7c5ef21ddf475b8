// The simulated object store of the whole-datanode simulator (cluster-sim.ts): the cluster's one
// shared bucket, in memory, on the simulator's scheduler. It implements the production
// ObjectStore contract (src/object-store/object-store.ts) and behaves as S3 does today:
//   - every request takes seeded time: it reaches the store after a delay, takes effect there
//     at one instant (so it is atomic, and strongly consistent: a get, head or list that takes
//     effect after a put or delete took effect sees it — S3's read-after-write and
//     list-after-write), and its answer comes back after another delay;
//   - a request may fail (STORAGE_UNAVAILABLE) at a seeded rate, and every request fails during
//     an outage window. A failed put or delete may still have taken effect (the answer was
//     lost, not the request), as with a timeout against S3;
//   - the answer of a request goes to the process that sent it: if that process crashed
//     meanwhile, the answer is never delivered, but the request still takes effect.
// Nothing here reads real time or randomness.
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import type { Rand } from '../../src/common/rand.js';
import { type ObjectMeta, type ObjectStore, bufferedUpload, checkRange, notFound, prefixesOfKeys, sortByKey, validateKey, validatePrefix } from '../../src/object-store/object-store.js';
import type { Incarnation, SimScheduler } from './sim-world.js';

export interface SimObjectStoreOptions {
  /** One way (request, then answer): each takes a seeded delay in [min, max] ms. */
  latencyMsMin: number;
  latencyMsMax: number;
  /** Chance that one request fails (while `faulty`). */
  failChance: number;
  /**
   * The slow tail (while `faulty`; 0: none, and no randomness drawn for it): the chance that a
   * request is slow, and the extra delay it then gets in [slowMsMin, slowMsMax] — on its answer
   * (it took effect in time, the caller hears of it late) or, a third of the time, on its arrival.
   */
  slowChance?: number;
  slowMsMin?: number;
  slowMsMax?: number;
}

export class SimObjectStore {
  readonly description = 'sim-object-store';
  private readonly objects = new Map<string, Uint8Array>();
  /** Failures happen only while true (the simulator clears it when it heals everything). */
  faulty = true;
  /** Every request taking effect before this virtual time fails (an outage). */
  outageUntil = 0;
  /** Called when a delete took effect on an object that existed (the simulator checks references). */
  onDelete: ((key: string) => void) | undefined;
  /** Called when a put took effect; `previous`: what the key held before (undefined: nothing). */
  onPut: ((key: string, previous: Uint8Array | undefined) => void) | undefined;
  readonly stats = { puts: 0, gets: 0, lists: 0, deletes: 0, failures: 0, slow: 0 };

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
    private readonly options: SimObjectStoreOptions,
  ) {
    if (!(options.latencyMsMin >= 0 && options.latencyMsMin <= options.latencyMsMax)) {
      throw new RangeError(`sim object store: latency needs 0 <= min <= max, got ${options.latencyMsMin}..${options.latencyMsMax}`);
    }
    if (!(options.failChance >= 0 && options.failChance < 1)) throw new RangeError(`sim object store: failChance must be in [0, 1), got ${options.failChance}`);
    const slow = options.slowChance ?? 0;
    if (!(slow >= 0 && slow < 1)) throw new RangeError(`sim object store: slowChance must be in [0, 1), got ${slow}`);
    if (slow > 0 && !((options.slowMsMin ?? -1) >= 0 && (options.slowMsMin ?? 0) <= (options.slowMsMax ?? -1))) {
      throw new RangeError(`sim object store: a slow tail needs 0 <= slowMsMin <= slowMsMax, got ${options.slowMsMin}..${options.slowMsMax}`);
    }
  }

  /** What is stored now (for the simulator's checkers; no latency, no failures). */
  peek(key: string): Uint8Array | undefined {
    return this.objects.get(key);
  }

  has(key: string): boolean {
    return this.objects.has(key);
  }

  /** Every key stored now with this prefix, sorted. */
  keys(prefix = ''): string[] {
    return sortByKey([...this.objects.keys()].filter((k) => k.startsWith(prefix)).map((key) => ({ key, size: 0 }))).map((o) => o.key);
  }

  /** The store as one process sees it: the answers go to `owner` and die with it. */
  viewFor(owner: Incarnation): ObjectStore {
    const view: ObjectStore = {
      description: `${this.description} (n${owner.nodeId})`,
      put: (key, data) => {
        validateKey(key);
        const copy = new Uint8Array(data); // the caller may reuse its buffer
        return this.request(owner, 'put', true, () => {
          const previous = this.objects.get(key);
          this.objects.set(key, copy);
          this.stats.puts++;
          this.onPut?.(key, previous);
        });
      },
      get: (key) => {
        validateKey(key);
        return this.request(owner, 'get', false, () => {
          this.stats.gets++;
          const data = this.objects.get(key);
          if (!data) throw notFound(view, key);
          return new Uint8Array(data);
        });
      },
      getRange: (key, offset, length) => {
        validateKey(key);
        checkRange(view, key, offset, length);
        return this.request(owner, 'getRange', false, () => {
          this.stats.gets++;
          const data = this.objects.get(key);
          if (!data) throw notFound(view, key);
          checkRange(view, key, offset, length, data.byteLength);
          return data.slice(offset, offset + length);
        });
      },
      head: (key) => {
        validateKey(key);
        return this.request(owner, 'head', false, (): ObjectMeta | undefined => {
          const data = this.objects.get(key);
          return data ? { key, size: data.byteLength } : undefined;
        });
      },
      list: (prefix) => {
        validatePrefix(prefix);
        return this.request(owner, 'list', false, () => {
          this.stats.lists++;
          const out: ObjectMeta[] = [];
          for (const [key, data] of this.objects) if (key.startsWith(prefix)) out.push({ key, size: data.byteLength });
          return sortByKey(out);
        });
      },
      // One request, as list: a listing takes effect at one instant, whatever its size (its
      // randomness is drawn as a list's, so a caller moving from one to the other keeps its traces).
      listPrefixes: (prefix) => {
        validatePrefix(prefix);
        return this.request(owner, 'list', false, () => {
          this.stats.lists++;
          return prefixesOfKeys(this.objects.keys(), prefix);
        });
      },
      delete: (key) => {
        validateKey(key);
        return this.request(owner, 'delete', true, () => {
          if (!this.objects.delete(key)) return;
          this.stats.deletes++;
          this.onDelete?.(key);
        });
      },
      // One put when complete: an upload takes effect at one instant, as S3's CompleteMultipartUpload.
      upload: (key) => bufferedUpload(view, key),
    };
    return view;
  }

  private delay(): number {
    return this.options.latencyMsMin + this.rand.int(this.options.latencyMsMax - this.options.latencyMsMin + 1);
  }

  /**
   * One request: it takes effect `delay` ms from now (whatever happens to the sender), and its
   * answer reaches the sender another `delay` later unless the sender died. A failed write may
   * still take effect (the answer was lost).
   */
  private request<T>(owner: Incarnation, what: string, mutates: boolean, effect: () => T): Promise<T> {
    let arriveMs = this.sched.now + this.delay();
    let answerMs = arriveMs + this.delay();
    const slowChance = this.options.slowChance ?? 0;
    if (slowChance > 0 && this.faulty && this.rand.chance(slowChance)) {
      const min = this.options.slowMsMin ?? 0;
      const extraMs = min + this.rand.int((this.options.slowMsMax ?? min) - min + 1);
      this.stats.slow++;
      if (this.rand.chance(1 / 3)) arriveMs += extraMs;
      answerMs += extraMs;
    }
    const failed = this.sched.now < this.outageUntil || arriveMs < this.outageUntil || (this.faulty && this.rand.chance(this.options.failChance));
    const appliedAnyway = failed && mutates && this.rand.chance(0.5);
    return new Promise<T>((resolve, reject) => {
      this.sched.at(arriveMs, () => {
        let outcome: { ok: true; value: T } | { ok: false; err: unknown };
        if (failed) {
          this.stats.failures++;
          if (appliedAnyway) {
            try {
              effect();
            } catch {
              // a write's effect does not throw
            }
          }
          outcome = { ok: false, err: new RegionDbError(ErrorCode.StorageUnavailable, `${this.description}: ${what} failed (simulated ${this.sched.now < this.outageUntil ? 'outage' : 'error'})`) };
        } else {
          try {
            outcome = { ok: true, value: effect() };
          } catch (err) {
            outcome = { ok: false, err };
          }
        }
        this.sched.at(
          answerMs,
          () => {
            if (outcome.ok) resolve(outcome.value);
            else reject(outcome.err);
          },
          owner,
        );
      });
    });
  }
}
