// A hosted replica as a datanode reports it to the metasrv (meta.proto ReplicaStat): the raft
// side, shared by the datanode and by the simulator's datanodes (test/sim), which report the same
// thing from the same region server. What the state machine adds (flushed index, memtable bytes,
// SSTs) is the caller's.
import { Role, roleName } from '../raft/index.js';
import type { ReplicaStat__Output } from '../rpc/generated/index.js';
import type { Replica, ReplicaFailure } from './region-server.js';

/** What the state machine reports of itself in a ReplicaStat. */
export interface StateMachineStat {
  readonly flushedIndex: number;
  readonly memtableBytes: number;
  readonly ssts: number;
}

/** The parts of a replica a stat reads (none depends on its state machine's type). */
type ReplicaView = Pick<Replica<never, never>, 'regionId' | 'selfPeerId' | 'raft' | 'leaderNodeId' | 'appliedIndex' | 'snapshotInstalledIndex' | 'confIndex' | 'peers'>;

export function runningReplicaStat(r: ReplicaView, sm: StateMachineStat): ReplicaStat__Output {
  // The core's fields, not raft.status(): that also copies a leader's progress map, which a
  // heartbeat of every replica on the node (thousands) does not need.
  const raft = r.raft;
  const conf = raft.confState();
  return {
    region_id: r.regionId,
    peer_id: String(r.selfPeerId),
    role: roleName[raft.role],
    term: String(raft.term),
    leader_node_id: String(r.leaderNodeId() ?? 0),
    applied_index: String(r.appliedIndex),
    commit_index: String(raft.log.committed),
    flushed_index: String(sm.flushedIndex),
    memtable_bytes: String(sm.memtableBytes),
    voters: conf.voters.map(String),
    learners: conf.learners.map(String),
    snapshot_installed_index: String(r.snapshotInstalledIndex),
    ssts: sm.ssts,
    health: 'ok',
    failure: '',
    conf_index: String(r.confIndex),
    members: r.raft.role === Role.Leader ? membersOf(r, conf.voters, conf.learners) : [],
  };
}

/**
 * A leader's members with their nodes, from its peer list (meta.proto ReplicaStat.members; `addr`
 * left empty). A member whose node the replica does not know is left out.
 */
function membersOf(r: ReplicaView, voters: readonly number[], learners: readonly number[]): ReplicaStat__Output['members'] {
  const out: { peer_id: string; node_id: string; addr: string }[] = [];
  for (const list of [voters, learners]) {
    for (const peerId of list) {
      const nodeId = r.peers.get(peerId)?.nodeId;
      if (nodeId !== undefined && nodeId > 0) out.push({ peer_id: String(peerId), node_id: String(nodeId), addr: '' });
    }
  }
  return out;
}

/** A replica that failed (docs/replica-health.md): its last raft state and why. */
export function failedReplicaStat(f: ReplicaFailure): ReplicaStat__Output {
  return {
    region_id: f.regionId,
    peer_id: String(f.selfPeerId),
    role: 'follower',
    term: String(f.term),
    leader_node_id: '0',
    applied_index: String(f.appliedIndex),
    commit_index: String(f.commitIndex),
    flushed_index: '0',
    memtable_bytes: '0',
    voters: f.voters.map(String),
    learners: f.learners.map(String),
    snapshot_installed_index: '0',
    ssts: 0,
    health: 'failed',
    failure: f.reason,
    conf_index: String(f.confIndex),
    members: [],
  };
}
