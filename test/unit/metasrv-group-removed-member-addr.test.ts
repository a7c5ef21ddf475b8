// R16 at the metasrv group when the survivor's address is known only through the group's log
// (member-addr), as after `meta seed` + add-member (docs/metasrv-ha.md "Losing a majority"): the
// removed member's transport asks addressOf(), which must read the removed replica's group state
// (raftReplica), not replica() (hidden once removed) and then the static config only — before the
// fix its vote answers never left and the survivor stayed pre-candidate forever.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { MetaGroup, type MetaGroupOptions, seedGroup } from '../../src/metasrv/meta-group.js';
import { MessageType } from '../../src/raft/index.js';
import { raftTransportService } from '../../src/replication/grpc-transport.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { freePort, waitUntil } from '../support/local-cluster.js';

interface LoseCommit { readonly from: number; readonly index: number }

class LossyMetaGroup extends MetaGroup {
  constructor(options: MetaGroupOptions, private readonly lose: () => LoseCommit | undefined) { super(options); }
  protected override createTransport(): RaftTransport {
    const inner = super.createTransport();
    const self = this.status().memberId;
    return {
      send: (nodeId: number, envelopes: RaftEnvelope[]) => {
        const lose = this.lose();
        const kept = envelopes.filter(({ message: m }) => !(lose && lose.from === self && (m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= lose.index));
        if (kept.length > 0) inner.send(nodeId, kept);
      },
      close: () => inner.close(),
    };
  }
}

describe('metasrv group R16: removed metasrv member whose survivor was added by add-member (address only in the log)', function () {
  this.timeout(60_000);
  let dir: string;
  const groups = new Map<number, LossyMetaGroup>();
  const servers: RunningGrpcServer[] = [];
  let loseCommit: LoseCommit | undefined;
  afterEach(async () => {
    for (const g of groups.values()) await g.stop();
    for (const s of servers.splice(0)) await s.stop();
    groups.clear();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the survivor is elected when the commit message is lost', async () => {
    dir = mkdtempSync(join(tmpdir(), 'rev-meta-removal-'));
    const ports = [await freePort(), await freePort()];
    const addr = (id: number) => `127.0.0.1:${ports[id - 1]}`;
    await seedGroup(join(dir, 'm1'), 1, addr(1), new Uint8Array([9]), silentLogger);
    for (const id of [1, 2]) {
      const group = new LossyMetaGroup(
        { clusterId: 'rev', memberId: id, members: id === 1 ? new Map([[1, addr(1)]]) : new Map([[1, addr(1)], [2, addr(2)]]), join: id === 2, dataDir: join(dir, `m${id}`), tickMs: 20, electionTicks: 10, credentials: grpc.credentials.createInsecure(), clock: systemClock, log: silentLogger, onRoleChange: () => {}, onFatal: () => {} },
        () => loseCommit,
      );
      groups.set(id, group);
      servers.push(await startGrpcServer('127.0.0.1', ports[id - 1]!, [{ name: 'RaftTransport', definition: raftTransportService(), impl: { Stream: group.raftStreamHandler() } }], silentLogger));
    }
    for (const g of groups.values()) await g.start();
    const one = groups.get(1)!;
    const two = groups.get(2)!;
    await waitUntil('member 1 leads', 10_000, async () => (one.isLeader() ? true : undefined));
    await one.addMember(2, addr(2), 20_000);
    await one.put(new Uint8Array([1, 2, 3]));
    await waitUntil('member 2 voter, caught up', 10_000, async () => (two.status().appliedIndex >= one.status().commitIndex ? true : undefined));
    loseCommit = { from: 1, index: one.status().commitIndex + 1 };
    await one.removeMember(1).catch(() => undefined);
    await waitUntil('member 1 applied its removal', 5000, async () => (one.status().role === 'stopped' ? true : undefined));
    const led = await waitUntil('member 2 leads without 1', 15_000, async () => (two.isLeader() && two.status().members.every((m) => m.id !== 1) ? true : undefined)).catch((err: Error) => {
      throw new Error(`${err.message}; survivor ${JSON.stringify(two.status())}`);
    });
    expect(led).to.equal(true);
  });
});
