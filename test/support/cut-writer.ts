// A writer for the dual active-standby tests: rows in batches from concurrent loops, each write
// remembered with its row ids, their regions, its send time and (if acknowledged) its
// acknowledgement time — what the cut checker (src/standby/cut-check.ts) judges a promotion by.
import type { RegionDbClient } from '../../src/client/client.js';
import { regionNumberOf } from '../../src/engine/key.js';
import type { Row, TableSchema } from '../../src/engine/schema.js';
import type { ClientWrite } from '../../src/standby/cut-check.js';
import { sleep } from './local-cluster.js';

export interface CutWriterOptions {
  /** The first row id (ids then grow by one per row). */
  readonly firstId?: number;
  /** Concurrent write loops. */
  readonly loops: number;
  readonly rowsPerWrite: number;
  /** Pause after a write that was not acknowledged (failed or unknown). */
  readonly failPauseMs: number;
  /** Pause after every write (0: none). */
  readonly pauseMs?: number;
  /** Hard bound on the writer's life, whatever happens. */
  readonly boundMs: number;
}

export function startCutWriter(client: RegionDbClient, table: string, schema: TableSchema, row: (id: number) => Row, o: CutWriterOptions) {
  const writes: ClientWrite[] = [];
  let next = o.firstId ?? 0;
  let stopped = false;
  const deadline = Date.now() + o.boundMs;
  const running = Array.from({ length: o.loops }, async () => {
    while (!stopped && Date.now() < deadline) {
      const ids = Array.from({ length: o.rowsPerWrite }, () => next++);
      const rows = ids.map((id) => row(id));
      const sentMs = Date.now();
      let ackedMs: number | undefined;
      try {
        await client.write(table, rows);
        ackedMs = Date.now();
      } catch {
        await sleep(o.failPauseMs); // not acknowledged: failed or unknown
      }
      writes.push({ rowIds: ids, regionOf: rows.map((r) => regionNumberOf(schema, r)), sentMs, ackedMs });
      if (o.pauseMs) await sleep(o.pauseMs);
    }
  });
  return {
    writes,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}
