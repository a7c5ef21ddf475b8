// The table the dual active-standby tests write: one tag (`host`), the timestamp and one field.
// A row's id is its offset from TS_BASE_MS, so a scan's rows map back to the ids written; the
// number of hosts (and their prefix) spreads ids over the table's regions.
import type { Row } from '../../src/engine/schema.js';

export const STANDBY_COLUMNS: { name: string; type: string; semantic: string }[] = [
  { name: 'host', type: 'string', semantic: 'tag' },
  { name: 'ts', type: 'timestamp', semantic: 'timestamp' },
  { name: 'v', type: 'float64', semantic: 'field' },
];

export const TS_BASE_MS = 1_700_000_000_000;

/**
 * Rows of `STANDBY_COLUMNS` over `hosts` hosts: row `id` has `v` = id. One argument only, so
 * that `ids.map(row)` does not take the array index for anything.
 */
export function standbyRows(hosts: number, prefix = 'host-'): (id: number) => Row {
  return (id) => ({ host: `${prefix}${id % hosts}`, ts: TS_BASE_MS + id, v: id });
}

/** The id a row of `standbyRows` was written under. */
export const idOf = (r: Row): number => (r['ts'] as number) - TS_BASE_MS;
