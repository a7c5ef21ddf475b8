// The raft, WAL, transport and request metrics of a datanode (docs/observability.md), fed by
// hooks so the WAL and the region server never import prom-client. Every metric is a per-node
// aggregate: nothing is labelled by region (thousands of regions would mean thousands of series).
import { Counter, Gauge, type Registry } from 'prom-client';
import { NO_NODE, type StateMachine } from '../raft/index.js';
import { BufferedCounter, BufferedHistogram, BufferedLabelledCounter } from '../rpc/buffered-metrics.js';
import { RPC_SECONDS_BUCKETS, grpcCodeName, registerRpcMetrics } from '../rpc/rpc-metrics.js';
import type { WalObserver } from '../wal/wal.js';
import type { Replica } from '../replication/region-server.js';

export interface DatanodeMetricsSources {
  replicas(): readonly Replica<StateMachine<unknown>>[];
  /** The raft transport's running totals (absent before start). */
  transport(): { readonly sentEnvelopes: number; readonly droppedEnvelopes: number } | undefined;
}

/** WAL write sizes, in operations (records put or deleted) per LevelDB batch. */
const WAL_BATCH_OPERATIONS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
const WAL_SYNC_SECONDS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** A counter that mirrors a running total kept elsewhere (read at scrape time). */
function mirroredCounter(registry: Registry, name: string, help: string, total: () => number | undefined): Counter {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers: [registry],
    collect(this: Counter) {
      const now = total() ?? seen;
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

export class DatanodeMetrics {
  private readonly removeRpcObserver: () => void;
  /** Last leader peer id seen per region, to count leader changes (not exported as a label). */
  private readonly leaderOf = new Map<string, number>();

  // The ones fed per write or per WAL batch are buffered (src/rpc/buffered-metrics.ts): the same
  // metrics at every scrape, without prom-client's per-call label hashing.
  private readonly proposals: BufferedLabelledCounter<'committed' | 'failed'>;
  private readonly commitSeconds: BufferedHistogram;
  private readonly elections: Counter;
  private readonly leaderChanges: Counter;
  private readonly roleChanges: Counter;
  private readonly walDeferred: BufferedCounter;
  private readonly walSyncs: BufferedCounter;
  private readonly walSyncSeconds: BufferedHistogram;
  private readonly walBatchOperations: BufferedHistogram;
  private readonly walBytes: BufferedCounter;
  private readonly writes: BufferedLabelledCounter<string>;
  private readonly rowsWritten: BufferedCounter;
  private readonly reads: Counter;
  private readonly snapshotsInstalled: Counter;

  constructor(registry: Registry, sources: DatanodeMetricsSources) {
    const r = [registry];
    this.proposals = new BufferedLabelledCounter(registry, 'regiondb_raft_proposals_total', 'Raft proposals by leaders on this node, by outcome (committed: applied; failed: dropped, leadership lost, rejected)', 'outcome');
    this.commitSeconds = new BufferedHistogram(
      registry,
      'regiondb_raft_commit_duration_seconds',
      'Time from proposing an entry to applying it on the leader: quorum replication + fsync (seconds)',
      RPC_SECONDS_BUCKETS,
    );
    this.elections = new Counter({ name: 'regiondb_raft_elections_total', help: 'Elections started by replicas on this node (became candidate)', registers: r });
    this.leaderChanges = new Counter({ name: 'regiondb_raft_leader_changes_total', help: 'Leader changes observed by replicas on this node (a new known leader of a region)', registers: r });
    this.snapshotsInstalled = new Counter({ name: 'regiondb_raft_snapshots_installed_total', help: 'Raft snapshots installed by replicas on this node (a follower too far behind the leader\'s log catching up from a manifest)', registers: r });
    this.roleChanges = new Counter({ name: 'regiondb_raft_role_changes_total', help: 'Raft role transitions of replicas on this node, by the role entered', labelNames: ['role'], registers: r });
    // The replicas and leaders of the node, counted at scrape: a heartbeat used to set them,
    // walking every replica twice a second for a value read every scrape interval at most
    // (docs/performance.md, "Eighth pass").
    new Gauge({
      name: 'regiondb_raft_leaders',
      help: 'Regions led by this node',
      registers: r,
      collect(this: Gauge) {
        let leaders = 0;
        for (const rep of sources.replicas()) if (rep.isLeader()) leaders++;
        this.set(leaders);
      },
    });
    new Gauge({
      name: 'regiondb_replicas',
      help: 'Replicas hosted by this node',
      registers: r,
      collect(this: Gauge) {
        this.set(sources.replicas().length);
      },
    });
    new Gauge({
      name: 'regiondb_raft_term_max',
      help: 'Highest raft term among the replicas on this node (a fast-growing value means elections)',
      registers: r,
      collect(this: Gauge) {
        this.set(sources.replicas().reduce((max, rep) => Math.max(max, rep.raft.term), 0));
      },
    });
    new Gauge({
      name: 'regiondb_raft_proposals_inflight',
      help: 'Proposals waiting to be applied on the leaders of this node',
      registers: r,
      collect(this: Gauge) {
        this.set(sources.replicas().reduce((n, rep) => n + rep.proposals.size, 0));
      },
    });
    new Gauge({
      name: 'regiondb_raft_reads_inflight',
      help: 'Linearizable reads waiting for their read index on this node',
      registers: r,
      collect(this: Gauge) {
        this.set(sources.replicas().reduce((n, rep) => n + rep.reads.size, 0));
      },
    });
    new Gauge({
      name: 'regiondb_raft_replicas_quiesced',
      help: 'Replicas on this node that are quiesced: idle, not ticking until a message or request wakes them (docs/quiescence.md)',
      registers: r,
      collect(this: Gauge) {
        this.set(sources.replicas().reduce((n, rep) => n + (rep.raft.quiesced ? 1 : 0), 0));
      },
    });
    mirroredCounter(registry, 'regiondb_raft_messages_sent_total', 'Raft messages handed to peer streams', () => sources.transport()?.sentEnvelopes);
    mirroredCounter(registry, 'regiondb_raft_messages_dropped_total', 'Raft messages dropped by a full per-peer queue (raft retransmits)', () => sources.transport()?.droppedEnvelopes);

    this.walDeferred = new BufferedCounter(registry, 'regiondb_wal_deferred_commit_batches_total', 'Ready cycles whose WAL batch only moved commit indexes: not written then, carried by the next batch');
    this.walSyncs = new BufferedCounter(registry, 'regiondb_wal_syncs_total', 'WAL batches written with fsync (group commits)');
    this.walSyncSeconds = new BufferedHistogram(registry, 'regiondb_wal_sync_duration_seconds', 'Duration of fsynced WAL batch writes (seconds)', WAL_SYNC_SECONDS_BUCKETS);
    this.walBatchOperations = new BufferedHistogram(registry, 'regiondb_wal_batch_operations', 'Operations (records put or deleted) per WAL batch', WAL_BATCH_OPERATIONS_BUCKETS);
    this.walBytes = new BufferedCounter(registry, 'regiondb_wal_written_bytes_total', 'Bytes of keys and records put into the WAL');

    this.writes = new BufferedLabelledCounter(registry, 'regiondb_writes_total', 'Database.Write calls served by this node, by outcome (the gRPC status code: OK, UNAVAILABLE, ...)', 'outcome');
    this.rowsWritten = new BufferedCounter(registry, 'regiondb_rows_written_total', 'Rows in acknowledged writes served by this node');
    this.reads = new Counter({ name: 'regiondb_reads_total', help: 'Database.Get and Database.Scan calls served by this node, by kind', labelNames: ['kind'], registers: r });

    this.removeRpcObserver = registerRpcMetrics(registry, ['Database', 'Admin'], (o) => {
      if (o.service !== 'regiondb.v1.Database') return;
      if (o.method === 'Write') this.writes.inc(grpcCodeName(o.code));
      else if (o.method === 'Get' || o.method === 'Scan') this.reads.inc({ kind: o.method.toLowerCase() });
    });
  }

  readonly wal: WalObserver = {
    written: (w) => {
      this.walBatchOperations.observe(w.ops);
      this.walBytes.inc(w.bytes);
      this.walSyncs.inc();
      this.walSyncSeconds.observe(w.seconds);
    },
    deferred: () => this.walDeferred.inc(),
  };

  onRoleChange(regionId: string, role: string, leaderPeerId: number): void {
    this.roleChanges.inc({ role });
    if (role === 'candidate') this.elections.inc();
    const previous = this.leaderOf.get(regionId);
    // Like etcd_server_leader_changes_seen_total, the first leader a replica learns of counts.
    if (leaderPeerId !== NO_NODE && leaderPeerId !== previous) {
      this.leaderChanges.inc();
      this.leaderOf.set(regionId, leaderPeerId);
    }
  }

  onSnapshotInstalled(): void {
    this.snapshotsInstalled.inc();
  }

  onProposalDone(seconds: number, committed: boolean): void {
    this.proposals.inc(committed ? 'committed' : 'failed');
    if (committed) this.commitSeconds.observe(seconds);
  }

  countRowsWritten(rows: number): void {
    this.rowsWritten.inc(rows);
  }

  forgetRegion(regionId: string): void {
    this.leaderOf.delete(regionId);
  }

  close(): void {
    this.removeRpcObserver();
  }
}
