// In-process metasrv group members over real gRPC on loopback whose outgoing raft traffic can lose
// the messages that would tell a peer a commit index: the R16 tests of the metasrv's own group
// (test/unit/metasrv-group-self-removal.test.ts, test/unit/metasrv-group-removed-member-addr.test.ts)
// start their two members here.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { MetaGroup, type MetaGroupOptions } from '../../src/metasrv/meta-group.js';
import { MessageType } from '../../src/raft/index.js';
import { raftTransportService } from '../../src/replication/grpc-transport.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/rpc/server.js';
import { freePort } from './local-cluster.js';

/** Appends and heartbeats of member `from` telling a commit index ≥ `index` are lost. */
export interface LoseCommit {
  readonly from: number;
  readonly index: number;
}

/** A member whose transport (the seam MetaGroup.createTransport) drops what `lose()` names. */
export class LossyMetaGroup extends MetaGroup {
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

/** Two members (ids 1 and 2), each behind its own gRPC server, started; `loseCommit` is read at every send. */
export interface LossyPair {
  readonly dir: string;
  readonly groups: ReadonlyMap<number, LossyMetaGroup>;
  /** The address of member `id`. */
  addr(id: number): string;
  /** Set to lose commit messages from then on; undefined sends everything. */
  loseCommit: LoseCommit | undefined;
  /** Restarts member `id`: stops it and its gRPC server (its streams break), then starts both again on its data directory and port. */
  restart(id: number): Promise<LossyMetaGroup>;
  /** Stops both members and their servers and removes the data. */
  stop(): Promise<void>;
}

/**
 * Starts two members on fresh ports and a fresh temp directory. `options(id, addr)` gives what
 * differs per member (its member map, whether it joins); the rest is the same for both: 20 ms
 * ticks, an election timeout of 10 ticks, no TLS, silent logs. `beforeStart` runs once both
 * exist and before either starts (e.g. to seed member 1's data directory).
 */
export async function startLossyPair(
  clusterId: string,
  options: (id: number, addr: (id: number) => string) => Pick<MetaGroupOptions, 'members' | 'join'>,
  beforeStart?: (dir: string, addr: (id: number) => string) => Promise<void>,
): Promise<LossyPair> {
  const dir = mkdtempSync(join(tmpdir(), `regiondb-${clusterId}-`));
  const ports = [await freePort(), await freePort()];
  const addr = (id: number) => `127.0.0.1:${ports[id - 1]}`;
  const groups = new Map<number, LossyMetaGroup>();
  const servers = new Map<number, RunningGrpcServer>();
  const member = async (id: number): Promise<LossyMetaGroup> => {
    const group = new LossyMetaGroup(
      {
        clusterId,
        memberId: id,
        ...options(id, addr),
        dataDir: join(dir, `m${id}`),
        tickMs: 20,
        electionTicks: 10,
        credentials: grpc.credentials.createInsecure(),
        clock: systemClock,
        log: silentLogger,
        onRoleChange: () => {},
        onFatal: () => {},
      },
      () => pair.loseCommit,
    );
    groups.set(id, group);
    servers.set(id, await startGrpcServer('127.0.0.1', ports[id - 1]!, [{ name: 'RaftTransport', definition: raftTransportService(), impl: { Stream: group.raftStreamHandler() } }], silentLogger));
    return group;
  };
  const pair: LossyPair = {
    dir,
    groups,
    addr,
    loseCommit: undefined,
    async restart(id: number) {
      await groups.get(id)!.stop();
      await servers.get(id)!.stop();
      const group = await member(id);
      await group.start();
      return group;
    },
    async stop() {
      for (const group of groups.values()) await group.stop();
      for (const server of servers.values()) await server.stop();
      servers.clear();
      groups.clear();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    if (beforeStart) await beforeStart(dir, addr);
    for (const id of [1, 2]) await member(id);
    for (const group of groups.values()) await group.start();
  } catch (err) {
    await pair.stop();
    throw err;
  }
  return pair;
}
