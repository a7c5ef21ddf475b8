// What the Database service (database-service.ts) needs from the datanode that hosts it: its
// identity, its replicas, flush and scan-lease control, and the way to the metasrv and to other
// datanodes. The Datanode implements it; keeping the service on this narrow surface (rather
// than the Datanode class) keeps the two files out of an import cycle and lets tests give the
// service a small fake host.
import type * as grpc from '@grpc/grpc-js';
import type { DatanodeConfig } from '../common/config.js';
import type { Logger } from '../common/logger.js';
import type { RegionState, TableSchema } from '../engine/index.js';
import type { MetaCallOptions } from '../rpc/meta-channel.js';
import type { ProtoTableSchema } from '../rpc/values.js';
import type { Flusher } from './flusher.js';
import type { WriteBarrier } from './write-barrier.js';
import type { DatanodeMetrics } from './node-metrics.js';
import type { RegionServer } from '../replication/region-server.js';
import type { RegionMeta } from './types.js';

/**
 * Dual active-standby (src/standby, docs/replication.md): what every client write or delete on
 * this node passes through before it is proposed, and before it is acknowledged.
 */
export interface ClientWriteGate {
  /** Throws to refuse (a standby before promotion, a fenced old primary); else the command to propose (a primary stamps it). */
  admit(regionId: string, command: Uint8Array): Uint8Array;
  /** Resolves once the write applied at raft index `index` may be acknowledged (sync mode: the standby has it durably). */
  acknowledge(regionId: string, index: number): Promise<void>;
}

export interface DatabaseHost {
  /** Set on a node of a dual active-standby pair. */
  readonly clientWriteGate?: ClientWriteGate | undefined;
  readonly nodeId: number;
  readonly config: Pick<DatanodeConfig, 'engine'>;
  readonly log: Logger;
  /** The regions hosted here, by region id. */
  readonly metas: ReadonlyMap<string, RegionMeta>;
  readonly regionServer: RegionServer<RegionState>;
  readonly flusher: Pick<Flusher, 'request' | 'scanDeadline' | 'scanDeadlineMs' | 'leases'>;
  /** Holds client writes for a consistent backup (write-barrier.ts); absent in tests' fake hosts. */
  readonly writeBarrier?: Pick<WriteBarrier, 'wait'>;
  readonly nodeMetrics: Pick<DatanodeMetrics, 'countRowsWritten'>;
  /** Credentials for calls to other datanodes (forwarded scans). */
  readonly peerCredentials: grpc.ChannelCredentials;
  /** Bytes in the memtables of every replica on this node. */
  memtableBytes(): number;
  /** The client address of a datanode, if known. */
  addressOf(nodeId: number | undefined): string | undefined;
  /** A call to the metasrv's leader; only `idempotent` calls are retried after an attempt of unknown outcome. */
  metaCall<Res>(method: string, request: unknown, options: MetaCallOptions & { readonly timeoutMs?: number }): Promise<Res>;
  schemaProto(schema: TableSchema): ProtoTableSchema;
}
