// Review of r16w, S2: an exception out of the metasrv group's raft core. A datanode's region server
// fails the one replica (coreFailed); but a failed replica makes no more readies, so no soft state
// would tell the metasrv that its member stopped leading, and it went on acting (answering
// heartbeats, deleting replicas, running procedures) while the other members elected a leader.
// The metasrv group's server is built with `coreFailure: 'fatal'`: the whole server stops (its WAL
// untouched, so a restart reopens it), the member leads no more and the metasrv stops acting.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { META_GROUP_ID, MetaGroup } from '../../src/metasrv/meta-group.js';
import type { RegionServer } from '../../src/replication/region-server.js';
import { MemoryCatalog, startMetasrvCore } from '../fixtures/metasrv-core.js';
import { waitUntil } from '../support/local-cluster.js';

describe('metasrv group: an exception out of its raft core stops the member (review S2)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-meta-core-failure-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a single-member group whose core throws on a tick: fatal, no longer leading, no address hint, not a failed replica', async () => {
    const roles: boolean[] = [];
    const fatals: Error[] = [];
    const group = new MetaGroup({
      clusterId: 'core-failure',
      memberId: 1,
      members: new Map([[1, '127.0.0.1:1']]),
      join: false,
      dataDir: dir,
      tickMs: 10,
      electionTicks: 5,
      credentials: grpc.credentials.createInsecure(),
      clock: systemClock,
      log: silentLogger,
      onRoleChange: (leader) => roles.push(leader),
      onFatal: (err) => fatals.push(err),
    });
    await group.start();
    try {
      await waitUntil('member 1 leads', 10_000, async () => (group.isLeader() ? true : undefined));
      // The test reaches into the group's server (private) to plant the core's failure.
      const server = (group as unknown as { server: RegionServer<never> }).server;
      server.hostedReplica(META_GROUP_ID)!.raft.tick = () => {
        throw new Error('planted core assertion');
      };
      await waitUntil('the group server stopped', 5_000, async () => (fatals.length > 0 ? true : undefined));
      // Before: the replica failed alone, the member still isLeader() and nothing told its host.
      expect(fatals.map((e) => e.message)).to.deep.equal([`region ${META_GROUP_ID}: the raft core failed during a tick: planted core assertion`]);
      expect(group.fatalError()?.message).to.match(/raft core failed during a tick/);
      expect(server.failure(META_GROUP_ID), 'not failed as a datanode replica is: the WAL reopens on restart').to.equal(undefined);
      expect(group.isLeader()).to.equal(false);
      expect(group.leaderAddr()).to.equal(undefined);
      expect(roles).to.deep.equal([true]);
    } finally {
      await group.stop();
    }
  });

  it('the metasrv stops acting when its group fails (groupFailed): Meta calls are refused', async () => {
    const core = await startMetasrvCore('core-failure', { openRegion: async () => ({}) as never, fenceRegion: async () => ({}) as never }, new MemoryCatalog('core-failure'));
    try {
      expect(() => core.requireActing()).not.to.throw();
      core.groupFailed(new Error('planted'));
      let refused: unknown;
      try {
        core.requireActing();
      } catch (err) {
        refused = err;
      }
      expect(isRegionDbError(refused, ErrorCode.Unavailable) || isRegionDbError(refused, ErrorCode.NotLeader), `refused, got ${String(refused)}`).to.equal(true);
    } finally {
      core.halt();
    }
  });
});
