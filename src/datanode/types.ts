// What a datanode remembers about each hosted region. The raft transport seams (envelopes,
// transport, peers) are the replication module's: src/replication/transport.ts.
import type { TableSchema } from '../engine/index.js';

/** What a datanode remembers about each hosted region (persisted in the WAL as region meta). */
export interface RegionMeta {
  readonly regionId: string;
  readonly schema: TableSchema;
  readonly selfPeerId: number;
  readonly peers: { peerId: number; nodeId: number; addr: string }[];
}
