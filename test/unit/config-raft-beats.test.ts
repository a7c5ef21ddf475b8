// [raft] beat_every_ticks (docs/quiescence.md, "Beats every two ticks"): at least two liveness
// beats must fit in node_down_after_ticks, or a live peer is taken as down after one lost beat.
// The rule was only an assert in the RegionServer constructor (a datanode that failed at start
// with an assertion message); it is now a config error naming the key.
import { expect } from 'chai';
import { datanodeConfigSchema, parseConfig } from '../../src/common/config.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';

const base = { node: { id: 1, data_dir: '/tmp/x' }, grpc: { port: 1 }, http: { port: 2 }, metasrv: { addr: '127.0.0.1:3' } };
const withRaft = (raft: Record<string, unknown>) => datanodeConfigSchema.safeParse({ ...base, raft });

describe('config: [raft] beat_every_ticks is at most half of node_down_after_ticks', () => {
  it('defaults to a beat every tick', () => {
    const parsed = datanodeConfigSchema.parse(base);
    expect(parsed.raft.beat_every_ticks).to.equal(1);
    expect(withRaft({}).success).to.equal(true);
  });

  it('takes 2 with the default threshold of 8, and 4 (exactly half)', () => {
    expect(withRaft({ beat_every_ticks: 2 }).success).to.equal(true);
    expect(withRaft({ beat_every_ticks: 4 }).success).to.equal(true);
    expect(withRaft({ beat_every_ticks: 3, node_down_after_ticks: 6 }).success).to.equal(true);
  });

  it('refuses more than half, naming the key and the rule', () => {
    for (const raft of [{ beat_every_ticks: 5 }, { beat_every_ticks: 2, node_down_after_ticks: 3 }]) {
      const result = withRaft(raft);
      expect(result.success, JSON.stringify(raft)).to.equal(false);
      expect(result.error!.issues.map((i) => i.path.join('.'))).to.deep.equal(['raft.beat_every_ticks']);
    }
    let err: unknown;
    try {
      parseConfig(datanodeConfigSchema, '[node]\nid = 1\ndata_dir = "/tmp/x"\n[grpc]\nport = 1\n[http]\nport = 2\n[metasrv]\naddr = "127.0.0.1:3"\n[raft]\nbeat_every_ticks = 5\n', 'datanode.toml');
    } catch (e) {
      err = e;
    }
    expect(isRegionDbError(err) && err.code).to.equal(ErrorCode.Config);
    expect((err as Error).message).to.contain('datanode.toml: raft.beat_every_ticks: at most half of raft.node_down_after_ticks');
  });

  it('takes any period with quiescence off (no node is ever taken as down then)', () => {
    expect(withRaft({ beat_every_ticks: 5, quiesce_idle_ticks: 0 }).success).to.equal(true);
  });
});

describe('config: [raft] pre_vote_priority and late_votes (docs/quiescence.md, "Elections under a stalled loop")', () => {
  it('are off unless set, and take booleans only', () => {
    const parsed = datanodeConfigSchema.parse(base);
    expect([parsed.raft.pre_vote_priority, parsed.raft.late_votes]).to.deep.equal([false, false]);
    const on = withRaft({ pre_vote_priority: true, late_votes: true });
    expect(on.success && [on.data.raft.pre_vote_priority, on.data.raft.late_votes]).to.deep.equal([true, true]);
    expect(withRaft({ late_votes: 'yes' }).success).to.equal(false);
  });
});
