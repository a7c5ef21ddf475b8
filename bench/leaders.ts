// The benches' steady state before measuring: region leaders where the metasrv's leader placement
// puts them (docs/leader-placement.md) — every leader of a small table on one datanode with the
// default "table", within ±1 per node with "spread" — rather than moved by the metasrv's periodic
// check in the middle of a run (a leadership transfer is a write pause of a few hundred ms that a
// static etcd cluster never takes).
import type { RegionDbClient } from '../src/client/client.js';
import { sleep } from '../test/support/local-cluster.js';

/**
 * Starts a balance-leaders and waits until one ends done with every one of the `regions` regions
 * led (a table created a moment ago may still be electing: the procedure then ends with regions
 * it could not place, and another is started). Returns the leaders per datanode, or undefined
 * once `timeoutMs` has passed.
 */
export async function placeLeaders(client: RegionDbClient, regions: number, timeoutMs: number): Promise<number[] | undefined> {
  const deadline = Date.now() + timeoutMs;
  let id: string | undefined;
  while (Date.now() < deadline) {
    const view = await client.listNodes();
    const counts = view.nodes.map((n) => Number(n.leaders));
    const mine = id === undefined ? undefined : view.procedures.find((p) => p.id === id);
    if (mine?.status === 'done' && counts.reduce((a, b) => a + b, 0) === regions) return counts;
    const running = view.procedures.some((p) => p.kind === 'balance-leaders' && p.status === 'running');
    // One may have been started by the periodic check meanwhile: the next look sees it end.
    if (!running && (mine === undefined || mine.status !== 'running')) id = await client.startProcedure('balance-leaders').catch(() => undefined);
    await sleep(500);
  }
  return undefined;
}
