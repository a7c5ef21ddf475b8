// R16, "Its lease" (docs/raft-rules.md): a removed FOLLOWER that learned its removal committed, in
// a 3 -> 2 shrink; the leader crashes before the other remaining voter learns the commit. That
// voter still counts {A,B,C} and needs C's vote; C heard from A recently (R8 lease) and only its
// own ticks let the lease run out. Fails when the host stops ticking a removed replica.
import { expect } from 'chai';
import { silentLogger } from '../../src/common/logger.js';
import { ConfChangeType, MessageType } from '../../src/raft/index.js';
import { RegionServer, defaultRaftTuning } from '../../src/replication/region-server.js';
import { Counter } from '../fixtures/counter-machine.js';
import { HandClock, handWaits } from '../fixtures/hand-clock.js';
import { LoopbackTransport, MemoryLogEngine } from '../fixtures/memory-log-engine.js';

// The servers run on a hand-moved clock (test/fixtures/hand-clock.ts): their tickers fire as the
// test advances it, and every wait is a bounded number of ticks, not of wall milliseconds.
const TICK_MS = 5;
/** At most 40 election timeouts for anything waited on. */
const WAIT_TICKS_MAX = 40 * defaultRaftTuning.electionTicks;

describe('RegionServer R16: a removed follower still needed for a vote (3 -> 2, leader crashes)', () => {
  const servers = new Map<number, RegionServer<Counter>>();
  const all: RegionServer<Counter>[] = [];
  let lose: { from: number; to: number; index: number } | undefined;
  const peers = [1, 2, 3].map((n) => ({ peerId: 10 + n, nodeId: n }));
  const clock = new HandClock();
  const waits = handWaits(clock, TICK_MS, WAIT_TICKS_MAX);
  const waitFor = (cond: () => boolean, what: string, maxTicks?: number) => waits.until(cond, what, maxTicks);
  afterEach(async () => {
    for (const s of all) await s.stop();
  });
  it('the remaining voter is elected with the removed follower\'s vote', async () => {
    for (const nodeId of [1, 2, 3]) {
      const transport = new LoopbackTransport(nodeId, (from, to, envelopes) => {
        for (const e of envelopes) {
          const m = e.message;
          if (lose && from === lose.from && to === lose.to && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= lose.index) continue;
          servers.get(to)?.step(from, e.regionId, m);
        }
      });
      const s = new RegionServer<Counter>(nodeId, new MemoryLogEngine(), transport, { create: () => new Counter() }, { ...defaultRaftTuning, tickMs: TICK_MS, nodeDownAfterTicks: 40, skipBcastCommit: false }, silentLogger, clock);
      servers.set(nodeId, s);
      all.push(s);
    }
    for (const [nodeId, s] of servers) {
      await s.open({ regionId: 'r', selfPeerId: 10 + nodeId, peers, bootstrap: true });
      s.start();
    }
    await waitFor(() => [...servers.values()].some((s) => s.replica('r')?.isLeader()), 'a leader');
    const [a, leader] = [...servers].find(([, s]) => s.replica('r')?.isLeader())!;
    const [b, c] = [1, 2, 3].filter((n) => n !== a) as [number, number];
    await waits.settled(leader.propose('r', new Uint8Array([1])), 'a write');
    lose = { from: a, to: b, index: leader.replica('r')!.raft.status().lastIndex + 1 };
    await waits.settled(leader.proposeConfChange('r', { type: ConfChangeType.RemoveNode, nodeId: 10 + c, context: '' }), 'the removal of C');
    await waitFor(() => servers.get(c)!.hostedReplica('r')?.removed === true, 'C applied its removal');
    // crash A: its messages and the ones to it are lost from now on
    servers.delete(a);
    await leader.stop();
    const sb = servers.get(b)!;
    expect(sb.replica('r')!.raft.confState().voters, 'B has not applied the removal').to.include(10 + c);
    await waitFor(() => sb.replica('r')?.isLeader() === true, `B (node ${b}) elected`, 1000).catch( // the 5 s this waited on the wall clock, in ticks
     (err: Error) => {
      const st = sb.replica('r')!.raft.status();
      throw new Error(`${err.message}; B role ${st.role} term ${st.term} commit ${st.commit}`);
    });
  });
});
