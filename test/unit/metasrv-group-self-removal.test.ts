// docs/raft-rules.md R16, "The removed replica", on the metasrv's own group (src/metasrv/meta-group.ts):
// `regiondb meta remove-member` of the acting member of a two-member group. The group runs the
// region server's host loop, but its raft traffic arrives through its own gRPC admission
// (raftStreamHandler), which must let a member that applied its own removal keep answering.
// Two in-process members over real gRPC on loopback; the test loses, from the removed leader,
// every append and heartbeat that would tell the survivor that the removal committed (the
// transport seam MetaGroup.createTransport). Without the rule the survivor still counts the
// removed member, needs its vote and never gets it: no leader, forever.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { systemClock } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { MetaGroup, type MetaGroupOptions } from '../../src/metasrv/meta-group.js';
import { MessageType } from '../../src/raft/index.js';
import { raftTransportService } from '../../src/replication/grpc-transport.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { freePort, waitUntil } from '../support/local-cluster.js';

/** Appends and heartbeats of member `from` telling a commit index ≥ `index` are lost. */
interface LoseCommit {
  readonly from: number;
  readonly index: number;
}

class LossyMetaGroup extends MetaGroup {
  constructor(
    options: MetaGroupOptions,
    private readonly lose: () => LoseCommit | undefined,
  ) {
    super(options);
  }

  protected override createTransport(): RaftTransport {
    const inner = super.createTransport();
    const self = this.status().memberId;
    return {
      send: (nodeId: number, envelopes: RaftEnvelope[]) => {
        const lose = this.lose();
        const kept = envelopes.filter(({ message: m }) => {
          if (!lose || lose.from !== self) return true;
          return !((m.type === MessageType.Append || m.type === MessageType.Heartbeat) && m.commit >= lose.index);
        });
        if (kept.length > 0) inner.send(nodeId, kept);
      },
      close: () => inner.close(),
    };
  }
}

describe('metasrv group: remove-member of the acting member of a two-member group (R16 at the host)', function () {
  this.timeout(60_000);
  let dir: string;
  const groups = new Map<number, LossyMetaGroup>();
  const servers: RunningGrpcServer[] = [];
  let loseCommit: LoseCommit | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-meta-removal-'));
    loseCommit = undefined;
    const ports = [await freePort(), await freePort()];
    const members = new Map(ports.map((p, i) => [i + 1, `127.0.0.1:${p}`]));
    for (const id of [1, 2]) {
      const group = new LossyMetaGroup(
        {
          clusterId: 'removal',
          memberId: id,
          members,
          join: false,
          dataDir: join(dir, `m${id}`),
          tickMs: 20,
          electionTicks: 10,
          credentials: grpc.credentials.createInsecure(),
          clock: systemClock,
          log: silentLogger,
          onRoleChange: () => {},
          onFatal: () => {},
        },
        () => loseCommit,
      );
      groups.set(id, group);
      servers.push(await startGrpcServer('127.0.0.1', ports[id - 1]!, [{ name: 'RaftTransport', definition: raftTransportService(), impl: { Stream: group.raftStreamHandler() } }], silentLogger));
    }
    for (const group of groups.values()) await group.start();
  });

  afterEach(async () => {
    for (const group of groups.values()) await group.stop();
    for (const server of servers.splice(0)) await server.stop();
    groups.clear();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the survivor is elected and leads without the removed member when the commit message is lost; the removed member serves nothing', async () => {
    const [leaderId, leader] = await waitUntil('a leader', 10_000, async () => [...groups].find(([, g]) => g.isLeader()));
    const [survivorId, survivor] = [...groups].find(([id]) => id !== leaderId)!;
    await leader.put(new Uint8Array([1, 2, 3])); // a catalog both members have
    loseCommit = { from: leaderId, index: leader.status().commitIndex + 1 };
    // The proposer's replica is fenced as it applies its removal: the proposal's promise fails.
    await leader.removeMember(leaderId).catch(() => undefined);
    await waitUntil('the removed member to apply its removal', 5000, async () => (leader.status().role === 'stopped' ? true : undefined));
    const led = await waitUntil(`member ${survivorId} to lead without ${leaderId}`, 10_000, async () => {
      const st = survivor.status();
      return survivor.isLeader() && st.members.every((m) => m.id !== leaderId) ? st : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; survivor ${JSON.stringify(survivor.status())}`);
    });
    expect(led.members.map((m) => m.id)).to.deep.equal([survivorId]);
    await survivor.put(new Uint8Array([4])); // commits alone now
    // The removed member answered raft but serves no client: no leadership, no write, no read.
    expect(leader.isLeader()).to.equal(false);
    for (const attempt of [() => leader.put(new Uint8Array([5])), () => leader.barrier()]) {
      let refused: unknown;
      try {
        await attempt();
      } catch (err) {
        refused = err;
      }
      expect(isRegionDbError(refused, ErrorCode.NotFound), String(refused)).to.equal(true);
    }
  });
});
