// add-member right after a leader change (test/unit/metasrv-group-removed-member-addr.test.ts
// failed once on CI this way, 2026-12-07): a new leader holds membership changes until it has
// applied its log (raft.ts becomeLeader's pendingConfIndex), and a proposal is answered once its
// entry is applied, a moment before the core hears of the apply — so the AddLearner that follows
// add-member's address command could be refused, "a membership change is already in progress",
// for a change that was already done. MetaGroup now waits that refusal out within the call's
// timeout (`proposeMembership`). The refusal's window is too short to hit on demand, so the
// leader's region server refuses the first AddLearner as the core did in that run.
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrorCode, RegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { seedGroup } from '../../src/metasrv/meta-group.js';
import { CONF_CHANGE_PENDING } from '../../src/raft/index.js';
import { waitUntil } from '../support/local-cluster.js';
import { type LossyPair, startLossyPair } from '../support/lossy-meta-group.js';

describe('metasrv group: add-member while the new leader still applies its log', function () {
  this.timeout(60_000);
  let pair: LossyPair | undefined;
  afterEach(async () => {
    await pair?.stop();
    pair = undefined;
  });

  it('a refusal for a change not yet applied is waited out: member 2 joins and is promoted', async () => {
    pair = await startLossyPair(
      'pending',
      (id, addr) => ({ members: id === 1 ? new Map([[1, addr(1)]]) : new Map([[1, addr(1)], [2, addr(2)]]), join: id === 2 }),
      (dir, addr) => seedGroup(join(dir, 'm1'), 1, addr(1), new Uint8Array([9]), silentLogger),
    );
    const one = pair.groups.get(1)!;
    await waitUntil('member 1 leads', 10_000, async () => (one.isLeader() ? true : undefined));
    const server = (one as unknown as { server: { proposeConfChange: (...args: unknown[]) => Promise<unknown> } }).server;
    const real = server.proposeConfChange.bind(server);
    let refused = 0;
    server.proposeConfChange = (...args: unknown[]) => {
      if (refused++ === 0) throw new RegionDbError(ErrorCode.ProposalDropped, 'a membership change is already in progress (index 2, applied 1)', { details: { [CONF_CHANGE_PENDING]: '2' } });
      return real(...args);
    };
    await one.addMember(2, pair.addr(2), 20_000);
    expect(refused, 'proposals of a membership change').to.be.greaterThan(2);
    await waitUntil('member 2 a voter', 10_000, async () => (one.status().members.some((m) => m.id === 2 && m.voter) ? true : undefined));
  });
});
