// The table `make bench-ingest` writes (bench/ingest-bench.ts creates it through the client),
// as the engine sees it: a host tag, a timestamp, a float and a 32-char string field. The
// micro-benchmarks of the ingest path (bench/apply-bench.ts, bench/memtable-bench.ts) build their
// rows on it.
import type { TableSchema } from '../src/engine/schema.js';

export const INGEST_SCHEMA = {
  name: 'ingest',
  tableId: 1024,
  regionCount: 4,
  columns: [
    { name: 'host', type: 'string', semantic: 'tag' },
    { name: 'ts', type: 'timestamp_ms', semantic: 'timestamp' },
    { name: 'usage', type: 'float64', semantic: 'field' },
    { name: 'note', type: 'string', semantic: 'field' },
  ],
} as const satisfies TableSchema;
