// R16 with an apply stall (docs/raft-rules.md R16, "The removed replica", the stall paragraph). A
// leader whose apply stalls on the object store with its own removal committed but not applied:
// its core counted the removal applied when it handed it out, so before the fix, after losing
// leadership it campaigned again (hup's hasUnappliedConfChanges and R16's selfRemovalIndex read
// the core's applied index), won in the old configuration, appended its no-op, and when the stall
// ended applied its removal and stepped down holding that no-op. With the append carrying it lost,
// the survivor's log was behind the removed node's: it refused every (pre-)vote of the survivor
// and never campaigned itself — no leader, healed network or not. Now a stalled replica starts no
// campaign (raft.ts `campaignsHeld`, set by the host while `stall` is set).
//
// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): each wait is a bounded
// number of ticks, and "does not campaign" is watched over 12 election timeouts of ticks.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfChangeType, type Message, MessageType } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

let stalling = false;
class Stallable {
  total = 0;
  constructor(private readonly canStall: boolean) {}
  apply(_index: number, command: Uint8Array): number | Promise<number> {
    if (this.canStall && command[0] === 99 && stalling) return Promise.reject(new RegionDbError(ErrorCode.StorageUnavailable, 'object store down (planted)'));
    this.total += command[0]!;
    return this.total;
  }
  serialize(): Uint8Array {
    return new TextEncoder().encode(String(this.total));
  }
}

describe('R16 with an apply stall: a leader that commits its own removal while its apply is stalled', () => {
  const servers = new Map<number, RegionServer<Stallable, number>>();
  let drop: (from: number, to: number, m: Message) => boolean = () => false;
  const clock = new HandClock();
  const waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const waitFor = (cond: () => boolean, what: string, maxTicks?: number) => waits.until(cond, what, maxTicks);
  afterEach(async () => {
    for (const s of servers.values()) await s.stop();
    servers.clear();
    stalling = false;
  });
  it('does not campaign while stalled, and the survivor is elected once it applied its removal', async () => {
    const peers = [1, 2].map((n) => ({ peerId: 10 + n, nodeId: n }));
    for (const nodeId of [1, 2]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) if (!drop(from, to, e.message)) servers.get(to)?.step(from, e.regionId, e.message);
      });
      const s = new RegionServer<Stallable, number>(nodeId, new MemoryLogEngine(), transport, { create: () => new Stallable(nodeId === 1) }, { ...defaultRaftTuning, tickMs: TICK_MS, nodeDownAfterTicks: 40, skipBcastCommit: true, applyRetry: { backoffMsMin: 10, backoffMsMax: 20, windowMs: 600_000 } }, silentLogger, clock);
      servers.set(nodeId, s);
    }
    for (const [nodeId, s] of servers) {
      await s.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
      s.start();
    }
    const r = servers.get(1)!; // R: the one that stalls and removes itself
    const s = servers.get(2)!; // S: the survivor
    // R leads (S's campaigns are lost until then).
    drop = (from, _to, m) => from === 2 && (m.type === MessageType.PreVote || m.type === MessageType.Vote);
    await waitFor(() => r.replica('r')?.isLeader() === true && r.replica('r')!.appliedIndex === r.replica('r')!.raft.status().lastIndex, 'R leads');
    drop = () => false;
    stalling = true;
    const removalAt = r.replica('r')!.raft.status().lastIndex + 2;
    // R -> S: appends and heartbeats telling a commit at or past the removal are lost (as in R16's test).
    const loseCommit = (from: number, m: Message) => from === 1 && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= removalAt;
    // Neither commits before both are in R's log (S's acknowledgements held back meanwhile).
    drop = (from, _to, m) => loseCommit(from, m) || (from === 2 && m.type === MessageType.AppendResponse);
    void r.propose('r', new Uint8Array([99])).catch(() => undefined); // stalls on R
    await waitFor(() => r.hostedReplica('r')!.raft.status().lastIndex === removalAt - 1, 'X in R\'s log');
    void r.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: 11, context: '' }).catch(() => undefined); // settles when R applies it (or fails as R leaves)
    await waitFor(() => r.hostedReplica('r')!.raft.status().lastIndex === removalAt, 'removal in R\'s log');
    drop = (from, _to, m) => loseCommit(from, m);
    await waitFor(() => (r.hostedReplica('r')!.raft.status().commit >= removalAt && r.applyStall('r') !== undefined), 'R: removal committed, apply stalled').catch((err: Error) => {
      const st = r.hostedReplica('r')!.raft.status();
      throw new Error(`${err.message}: removalAt ${removalAt} role ${st.role} last ${st.lastIndex} commit ${st.commit} stall ${JSON.stringify(r.applyStall('r'))} applied ${r.hostedReplica('r')!.appliedIndex}`);
    });
    expect(r.hostedReplica('r')!.removed).to.equal(false);
    // S's acknowledgements are lost for a while: R steps down (checkQuorum); S's own campaigns are lost too.
    drop = (from, _to, m) => loseCommit(from, m) || from === 2;
    await waitFor(() => !r.hostedReplica('r')!.isLeader(), 'R stepped down');
    const term0 = r.hostedReplica('r')!.raft.term;
    // S answers again, but its own campaigns stay lost: R, stalled, must not campaign (its core
    // counts the removal applied). Before the fix it was re-elected here within a few timeouts.
    drop = (from, _to, m) => loseCommit(from, m) || (from === 2 && (m.type === MessageType.PreVote || m.type === MessageType.Vote));
    let campaigned = false;
    const sentCampaign = drop;
    drop = (from, to, m) => {
      if (from === 1 && (m.type === MessageType.PreVote || m.type === MessageType.Vote)) campaigned = true;
      return sentCampaign(from, to, m);
    };
    await waits.tick(12 * defaultRaftTuning.electionTicks); // 12 election timeouts
    expect(r.applyStall('r'), 'R still stalled').to.not.equal(undefined);
    expect(campaigned, 'R campaigned while its apply was stalled').to.equal(false);
    expect(r.hostedReplica('r')!.raft.term, 'R\'s term').to.equal(term0);
    // The stall ends: R applies its removal and steps down, holding its new no-op that S never got.
    stalling = false;
    await waitFor(() => r.hostedReplica('r')!.removed === true, 'R applied its removal');
    drop = () => false; // healed
    const rs = r.hostedReplica('r')!.raft.status();
    let elected = true;
    await waitFor(() => s.replica('r')?.isLeader() === true, 'S elected', 2000).catch(() => { // the 10 s this waited on the wall clock, in ticks
      elected = false;
    });
    const ss = s.replica('r')!.raft.status();
    expect(elected, `the survivor was never elected (R: role ${rs.role} term ${rs.term} last ${rs.lastIndex} commit ${rs.commit}; S: role ${ss.role} term ${ss.term} last ${ss.lastIndex} commit ${ss.commit})`).to.equal(true);
  });
});
