// Finding 4a brought back (test-only, docs/simulation.md "The bugs it re-finds"): the SST GC
// rule before issue 14 item 4 (d12c122). GC deleted an SST the leader's version did not name
// once the wall-clock time in its key was older than the grace by this node's wall clock: no
// protection of SSTs named by pending edits or of this node's uploads in flight (G2), no
// first-seen grace on the monotonic clock (G4). The rest of the production rule stays — what
// snapshots and the latest manifest name, the wait for every replica's snapshot (G3), G1, G5,
// open scans' leases — so that a finding is the key-age rule's and not finding 4b's
// (gc-ignores-snapshots: without G3 the first engine seed already fails, by 4b's path).
import type { RegionState } from '../../src/engine/region-state.js';
import { Flusher } from '../../src/datanode/flusher.js';
import type { SstGcDecision, SstGcInput } from '../../src/datanode/sst-gc.js';
import type { Replica } from '../../src/replication/region-server.js';

/** The index in an SST key (the freeze index of a flush, the highest version among a merge's inputs). */
function indexOf(key: string): number | undefined {
  const m = /\/([0-9a-f]{16})-\d+-[0-9a-f]+\.sst$/.exec(key);
  return m ? Number.parseInt(m[1]!, 16) : undefined;
}

/** The wall-clock ms in `regions/<id>/sst/<index hex>-<created ms>-<random>.sst` (src/engine/flush.ts newSstKey). */
function createdMsOf(key: string): number | undefined {
  const m = /-(\d{13,})-[0-9a-f]+\.sst$/.exec(key);
  return m ? Number(m[1]) : undefined;
}

export class GcByKeyAgeFlusher extends Flusher {
  /** This node's wall clock (with the `clock` fault's steps); the simulator sets it. */
  wallMs: () => number = () => {
    throw new Error('GcByKeyAgeFlusher.wallMs not set');
  };

  /** The leader's flushed index at the pass (set by inUse, which the pass calls just before decideSstGc). */
  private flushedIndex = 0;

  /** Only the version and open scans: pending edits and uploads in flight are not looked at. */
  protected override inUse(replica: Replica<RegionState>): Set<string> {
    this.flushedIndex = replica.stateMachine.flushedIndex;
    const keys = new Set(replica.stateMachine.ssts.map((s) => s.key));
    for (const k of this.leases.keys()) keys.add(k);
    return keys;
  }

  protected override decideSstGc(input: SstGcInput): SstGcDecision {
    // An SST whose index is above the leader's flushed index is the upload of a flush this
    // leader has not applied (pending, in flight or orphaned): it has never been in its version,
    // so what G3 protects (versions between snapshots) cannot name it. The old rule: deleted
    // once its key is older than the grace by this node's wall clock.
    const now = this.wallMs();
    const fresh = (key: string) => (indexOf(key) ?? 0) > this.flushedIndex;
    const deletable = input.listed.filter((key) => {
      if (!fresh(key) || input.referenced.has(key) || input.namedBySnapshots.has(key)) return false;
      const created = createdMsOf(key);
      return created !== undefined && now - created >= input.graceMs;
    });
    // Every other SST: the production rule (G2 as left by inUse above, G3, G4).
    const rule = super.decideSstGc({ ...input, listed: input.listed.filter((key) => !fresh(key)) });
    return { ...rule, deletable: [...rule.deletable, ...deletable] };
  }
}
