// A planted bug of delta heartbeats (docs/quiescence.md, "Heartbeats that carry what changed")
// for the whole-datanode simulator's `report view` checker (sim-report-view.ts): a test-only
// DatanodeCore subclass whose deltas hold what changed since the last report it *sent*, while
// still naming the last report the metasrv *acknowledged* as their base. When a request is lost
// the changes it carried are then in no report the metasrv applies, and its view of the node
// differs from what the node reported. Nothing under src/ names it; it rewrites the Heartbeat
// requests on their way out (the harness's caller, which records what the node reported, sees
// the rewritten request and the core's real stats).
import { DatanodeCore, type MetasrvCaller, type NodeEndpoint } from '../../src/datanode/datanode-core.js';
import { sameStat } from '../../src/datanode/report-delta.js';
import type { StateMachine } from '../../src/raft/index.js';
import type { ReplicaStat__Output } from '../../src/rpc/generated/index.js';

export const REPORT_DATANODE_BUGS = ['delta-on-last-sent'] as const;
export type ReportDatanodeBug = (typeof REPORT_DATANODE_BUGS)[number];

export class DeltaOnLastSent<S extends StateMachine<R>, R> extends DatanodeCore<S, R> {
  private lastSent: Map<string, ReplicaStat__Output> | undefined;

  override startHeartbeats(metasrv: MetasrvCaller, endpoint: NodeEndpoint): void {
    const rewriting: MetasrvCaller = {
      call: <Res>(method: 'RegisterNode' | 'Heartbeat', request: unknown, timeoutMs: number, options: Parameters<MetasrvCaller['call']>[3]): Promise<Res> => {
        if (method !== 'Heartbeat') return metasrv.call<Res>(method, request, timeoutMs, options);
        const stats = this.replicaStats();
        const byRegion = new Map(stats.map((s) => [s.region_id, s] as const));
        const req = request as { report_base_seq: string };
        const last = this.lastSent;
        let out = request;
        if (req.report_base_seq !== '0' && last !== undefined) {
          out = {
            ...req,
            replicas: stats.filter((s) => !last.has(s.region_id) || !sameStat(last.get(s.region_id)!, s)),
            removed_region_ids: [...last.keys()].filter((id) => !byRegion.has(id)),
          };
        }
        this.lastSent = byRegion;
        return metasrv.call<Res>(method, out, timeoutMs, options);
      },
    };
    super.startHeartbeats(rewriting, endpoint);
  }
}
