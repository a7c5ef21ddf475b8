// The table most integration tests write (host tag, timestamp, one float field), its rows and
// keys, and the shape of the metasrv's ListNodes answer the tests read.
import type { Row } from '../../src/engine/schema.js';

export const TABLE = 'metrics';
export const COLUMNS = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];
export const row = (i: number): Row => ({ host: `h${i % 40}`, ts: 1_000 + i, v: i });
export const keyOf = (r: Row) => `${r['host']}@${r['ts']}`;

/** Metasrv ListNodes, as proto-loader returns it (the fields the tests read). */
export interface StatusView {
  nodes: { node_id: string; state: string; regions: number; leaders: number }[];
  region_infos: {
    route: { region_id: string; table: string; peers: { node_id: string; peer_id: string }[]; leader_node_id: string };
    health: string;
    applied_index: string[];
    problems?: string[];
  }[];
  procedures: { id: string; kind: string; status: string; step: string; description: string; notes: string[]; error: string }[];
}
