// The host's ordering rules around a Ready, kept in one place: the datanode's ready loop
// (src/replication/region-server.ts) and the raft-core simulator (test/sim/simulator.ts) both call
// them, so the simulator checks the rule production runs, not a copy of it.
import type { Ready } from './raft.js';
import type { HardState } from './types.js';

/**
 * P1 and P3 (src/raft/raft.ts): may this ready's messages leave before its write is durable?
 * Only a leader's, and only when the ready carries no snapshot and no new term or vote (those
 * must be durable before anyone hears of them). A leader's appends may then go out while it
 * writes them itself (thesis §10.2.1): it counts its own copy toward the quorum only after the
 * write (advance()), so sending early changes latency, not safety. Everyone else persists first.
 *
 * `persisted` is the hard state already durable (the storage's, before this ready's write).
 */
export function maySendBeforePersist(isLeader: boolean, rd: Ready, persisted: HardState): boolean {
  if (!isLeader || rd.snapshot) return false;
  if (!rd.hardState) return true;
  return rd.hardState.term === persisted.term && rd.hardState.vote === persisted.vote;
}
