// Planted bug of finding 8e in docs/correctness.md (interleaved close(destroy) and open of one
// region on a datanode): a test-only DatanodeCore subclass that brings back the heartbeat and
// instruction handling of src/datanode/datanode.ts before f648aa2 (and before acce941, which
// added O2 and O3). Nothing under src/ names it (test/raft/purity.test.ts keeps planted bugs out
// of src/); it goes through protected seams of the core: `heartbeat`, `takeInstructions`,
// `execute` and `peerOnDisk`, and the public `serialized`.
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { DatanodeCore, type MetasrvCaller, type NodeEndpoint } from '../../src/datanode/datanode-core.js';
import { ConfChangeType, type StateMachine } from '../../src/raft/index.js';
import type { Instruction__Output } from '../../src/rpc/generated/index.js';
import type { MetaCallOptions } from '../../src/rpc/meta-channel.js';
import { u64 } from '../../src/rpc/proto.js';

export const OVERLAP_DATANODE_BUGS = ['overlapping-heartbeats'] as const;
export type OverlapDatanodeBug = (typeof OVERLAP_DATANODE_BUGS)[number];

/**
 * Before f648aa2 the heartbeat timer started a beat every interval whether or not the last one
 * had finished (no O1); each beat ran its answer's instructions itself, one after the other,
 * awaiting each — an open or close until done, a conf change until it committed (no queue across
 * beats, O2); and opens and closes of replicas ran as they were asked for, side by side (no O3).
 * So two beats in flight could run their answers' instructions interleaved, and an older
 * answer's close_region(destroy) could run after, or in the middle of, a newer answer's
 * open_region of the same region. close_region named no peer id then: whatever replica of the
 * region was open was deleted. (Since finding M16 a close names its peer and the datanode refuses
 * it for another replica. The interleaving this bug re-creates needs no wrong close: an open
 * slips in while a close naming the right peer is still deleting the region's data.)
 */
export class OverlappingHeartbeats<S extends StateMachine<R>, R> extends DatanodeCore<S, R> {
  /**
   * The old beat took itself for registered as soon as the RegisterNode answer came, before the
   * opens it listed ran (today the flag is set after them, for /health's `registered`; with one
   * beat in flight nothing else can look at it meanwhile). With beats overlapping, keeping
   * today's order would make every beat during those opens register again, which the old code
   * did not do: the answer sets the (private) flag at once, as it did.
   */
  override startHeartbeats(metasrv: MetasrvCaller, endpoint: NodeEndpoint): void {
    const registeredOnAnswer: MetasrvCaller = {
      call: async <Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown, timeoutMs: number, options: MetaCallOptions): Promise<Res> => {
        const res = await metasrv.call<Res>(method, request, timeoutMs, options);
        if (method === 'RegisterNode') (this as unknown as { registeredFlag: boolean }).registeredFlag = true;
        return res;
      },
    };
    super.startHeartbeats(registeredOnAnswer, endpoint);
  }

  /** A beat every tick, in flight or not (the old `setInterval(() => void this.heartbeat())`). */
  override heartbeatOnce(): Promise<void> {
    return this.heartbeat();
  }

  /**
   * No open was refused for region data on disk under another peer id then (finding M24, added
   * later): an open arriving while a close(destroy) deletes the region's data went ahead. Kept
   * here so that this bug's interleaving still shows, as it did before M24 guarded it too.
   */
  protected override peerOnDisk(_regionId: string): number | 'unreadable' | undefined {
    return undefined;
  }

  /** Opens and closes run at once, whoever else is opening or closing a replica (no O3). */
  override serialized<T>(op: () => Promise<T>): Promise<T> {
    return op();
  }

  /** The answer's instructions run in the beat, each awaited (`for (const ins of res.instructions) await this.execute(ins)`). */
  protected override takeInstructions(instructions: readonly Instruction__Output[]): Promise<void> {
    return (async () => {
      for (const ins of instructions) await (ins.change_peer ? this.awaitConfChange(ins) : this.execute(ins));
    })();
  }

  /** The old execute's change_peer: proposed and awaited until it commits or is refused. */
  private async awaitConfChange(ins: Instruction__Output): Promise<void> {
    try {
      const cp = ins.change_peer!;
      if (!cp.peer) throw new RegionDbError(ErrorCode.InvalidArgument, `change_peer of region ${cp.region_id} names no peer`);
      const peerId = u64(cp.peer.peer_id, 'peer_id');
      const nodeId = u64(cp.peer.node_id, 'node_id');
      if (cp.peer.addr) this.addresses.set(nodeId, cp.peer.addr);
      const type = cp.change === 'add-learner' ? ConfChangeType.AddLearner : cp.change === 'promote' ? ConfChangeType.AddVoter : ConfChangeType.RemoveNode;
      await this.regionServer.proposeConfChange(cp.region_id, { type, nodeId: peerId, context: JSON.stringify({ nodeId }) });
    } catch {
      // Refused (not the leader, a change pending) or lost with the leadership: the old code
      // logged it (but NOT_LEADER); the metasrv re-sends.
    }
  }
}

export function isOverlapDatanodeBug(bug: string | undefined): bug is OverlapDatanodeBug {
  return (OVERLAP_DATANODE_BUGS as readonly (string | undefined)[]).includes(bug);
}
