// A Scan whose caller goes away stops reading (closing notes of session 10, leftover 1). grpc-js
// accepts writes to a cancelled server stream and drops them, so a scan loop that only waits on
// its writes never learned the client had cancelled: it read its region to the end (or to its
// row or time bound) for nobody, holding its SST lease, and a datanode that forwarded the scan
// kept the call to the node serving it open too.
//
// Real gRPC servers on loopback, with fake hosts (database-host.ts) whose region scans are the
// instrument: each counts the rows it was asked for, and after the first message's worth waits
// until the serving call has seen the client's cancellation (a gate, not a sleep), then offers
// BATCHES messages more. A handler that stops on cancellation takes at most one more message's
// worth; one that does not takes them all.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { limits } from '../../src/common/limits.js';
import { makeRegionId } from '../../src/engine/key.js';
import type { Row } from '../../src/engine/schema.js';
import { type ScanNode, type ScanSource, clientScan, deferred, scanTable, startScanNode } from '../support/scan-nodes.js';

const PER_MESSAGE = limits.scanRowsPerMessageMax;
/** Messages' worth of rows a region offers after the gate: what a scan that never stops reads. */
const BATCHES = 100;
/** Longest the gate waits for the serving call to see the cancellation: past it the test fails. */
const GATE_MS = 10_000;

/** One region's instrumented scan: rows asked for, whether the gate opened on a cancellation, and when the scan ended. */
class RegionProbe implements ScanSource {
  pulled = 0;
  gate: 'cancelled' | 'timed out' | undefined;
  readonly ended = deferred();
  constructor(
    private readonly host: string,
    private readonly cancelSeen: Promise<void>,
  ) {}

  async *scan(): AsyncGenerator<{ row: Row; version: number }> {
    try {
      for (let i = 0; i < PER_MESSAGE * (BATCHES + 1); i++) {
        if (i === PER_MESSAGE) {
          let timer: NodeJS.Timeout | undefined;
          this.gate = await Promise.race([
            this.cancelSeen.then(() => 'cancelled' as const),
            new Promise<'timed out'>((r) => (timer = setTimeout(() => r('timed out'), GATE_MS))),
          ]);
          clearTimeout(timer);
        }
        this.pulled++;
        yield { row: { host: this.host, ts: i, v: 'x' }, version: 1 };
      }
    } finally {
      this.ended.resolve();
    }
  }
}

/** A client Scan of `table` at `addr`, cancelled as soon as its first message arrives. */
async function scanAndCancelAfterFirstMessage(addr: string, table: string): Promise<number> {
  const { call, close } = clientScan(addr, { table });
  try {
    let messages = 0;
    await new Promise<void>((resolve, reject) => {
      call.on('data', () => {
        if (++messages === 1) call.cancel();
      });
      call.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
      call.on('end', () => reject(new Error('the scan ended before the client cancelled it')));
    });
    return messages;
  } finally {
    close();
  }
}

describe('datanode: a cancelled Scan stops reading (leftover 1)', function () {
  this.timeout(60_000);
  const nodes: ScanNode[] = [];
  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop();
  });

  it('a region scan served here reads at most one message more once the client has cancelled', async () => {
    const table = scanTable('t1', 3000, 1);
    const region = makeRegionId(table.tableId, 0);
    let probe!: RegionProbe;
    const node = await startScanNode(1, table, (cancelSeen) => new Map([[region, (probe = new RegionProbe('a', cancelSeen))]]), () => []);
    nodes.push(node);
    await scanAndCancelAfterFirstMessage(node.addr, table.name);
    await probe.ended.promise;
    expect(probe.gate, 'the serving call saw the cancellation').to.equal('cancelled');
    expect(probe.pulled, `rows read of ${PER_MESSAGE * (BATCHES + 1)} (${PER_MESSAGE} a message)`).to.be.at.most(2 * PER_MESSAGE);
  });

  it('a whole-table scan merged from two regions here: each region stops within a message or two of the cancellation', async () => {
    const table = scanTable('t2', 3001, 2);
    const ids = [makeRegionId(table.tableId, 0), makeRegionId(table.tableId, 1)];
    const probes: RegionProbe[] = [];
    const node = await startScanNode(
      1,
      table,
      (cancelSeen) => new Map(ids.map((id, n) => [id, probes[n] = new RegionProbe(`h${n}`, cancelSeen)] as const)),
      () => [],
    );
    nodes.push(node);
    await scanAndCancelAfterFirstMessage(node.addr, table.name);
    await Promise.all(probes.map((p) => p.ended.promise));
    for (const [n, p] of probes.entries()) {
      // The merge holds one message of each region in its handoff and one being merged.
      expect(p.pulled, `region ${n}: rows read of ${PER_MESSAGE * (BATCHES + 1)}`).to.be.at.most(3 * PER_MESSAGE);
    }
  });

  it('a forwarded scan: the forwarding node cancels its call upstream, and the node serving it stops too', async () => {
    const table = scanTable('t3', 3002, 1);
    const region = makeRegionId(table.tableId, 0);
    let probe!: RegionProbe;
    // Node 2 hosts the region; node 1 hosts nothing and forwards the client's scan to node 2.
    const serving = await startScanNode(2, table, (cancelSeen) => new Map([[region, (probe = new RegionProbe('a', cancelSeen))]]), () => []);
    nodes.push(serving);
    const forwarding = await startScanNode(1, table, () => new Map(), () => [{ region_id: region, leader: { node_id: 2, addr: serving.addr } }]);
    nodes.push(forwarding);
    await scanAndCancelAfterFirstMessage(forwarding.addr, table.name);
    await probe.ended.promise;
    expect(probe.gate, `the serving node's call saw the cancellation (within ${GATE_MS} ms)`).to.equal('cancelled');
    expect(probe.pulled, `rows read on the serving node of ${PER_MESSAGE * (BATCHES + 1)}`).to.be.at.most(2 * PER_MESSAGE);
  });
});
