// K2: the object store as a witness of a datanode's answered starts (docs/failover.md, "A data
// dir restored from a copy"). K1 compares a registering start with the newest start the metasrv's
// catalog recorded for the node; a catalog put back from an older copy (or lost) cannot tell a
// restored data dir from a good one, and a data dir put back from a copy then reopens its replicas
// with their votes and logs rolled back (wide-mix engine seed 2405: two leaders' entries at one
// index). The object store is shared and is not rolled back with either copy, as the drop
// records (DT2) and the table-id listing (Y1) already use it against a restored catalog.
//
// A datanode whose registration was answered puts one empty object per start, before it reopens
// anything:
//   nodes/<node id as 16 hex>/starts/<count as 16 hex>/<store id>/<start id>
// and a starting datanode lists its node's objects before it registers: a start of its store the
// dir does not vouch for (store-id.ts `copyByWitness`) makes it refuse itself as a copy. Store
// and start ids are [A-Za-z0-9-] (store-id.ts), so the key parses by its slashes. The newest
// WITNESS_KEPT starts per node and store are kept, older ones deleted.
import type { ObjectStore } from '../object-store/object-store.js';
import type { StartId, WitnessedStart } from '../common/store-id.js';

/**
 * What DatanodeCore asks of the witness (DatanodeCoreDeps.startWitness). A witness may answer at
 * once (the simulator's); the core awaits only a promise.
 */
export interface StartWitness {
  /** The starts of this node the witness holds (any store). Throws (or rejects) when it cannot be read. */
  starts(): WitnessedStart[] | Promise<WitnessedStart[]>;
  /** Records an answered start of `storeId` (and prunes the oldest). Throws (or rejects) when it cannot be written. */
  record(storeId: string, start: StartId): void | Promise<void>;
}

/** Starts kept per node: the newest one is the one compared; a few more cost nothing. */
export const WITNESS_KEPT = 8;

const hex16 = (n: number) => n.toString(16).padStart(16, '0');
const ID = /^[A-Za-z0-9-]{1,128}$/;

export function startWitnessPrefix(nodeId: number): string {
  return `nodes/${hex16(nodeId)}/starts/`;
}

export function startWitnessKey(nodeId: number, storeId: string, start: StartId): string {
  return `${startWitnessPrefix(nodeId)}${hex16(start.count)}/${storeId}/${start.id}`;
}

/** The start a key names, or undefined for a key that is not one (left alone). */
export function parseStartWitnessKey(nodeId: number, key: string): WitnessedStart | undefined {
  const prefix = startWitnessPrefix(nodeId);
  if (!key.startsWith(prefix)) return undefined;
  const parts = key.slice(prefix.length).split('/');
  if (parts.length !== 3 || !/^[0-9a-f]{16}$/.test(parts[0]!) || !ID.test(parts[1]!) || !ID.test(parts[2]!)) return undefined;
  const count = Number.parseInt(parts[0]!, 16);
  if (!Number.isSafeInteger(count) || count <= 0) return undefined;
  return { count, storeId: parts[1]!, id: parts[2]! };
}

export function objectStoreStartWitness(store: ObjectStore, nodeId: number): StartWitness {
  const starts = async (): Promise<WitnessedStart[]> => {
    const out: WitnessedStart[] = [];
    for (const o of await store.list(startWitnessPrefix(nodeId))) {
      const s = parseStartWitnessKey(nodeId, o.key);
      if (s) out.push(s);
    }
    return out;
  };
  return {
    starts,
    async record(storeId, start) {
      await store.put(startWitnessKey(nodeId, storeId, start), new Uint8Array());
      // Pruned within the store only: a new store (a wiped dir) counts from 1 again.
      const mine = (await starts()).filter((s) => s.storeId === storeId).sort((a, b) => b.count - a.count);
      for (const old of mine.slice(WITNESS_KEPT)) await store.delete(startWitnessKey(nodeId, old.storeId, old));
    },
  };
}
