// The buffered metrics (src/rpc/buffered-metrics.ts) against prom-client's own: fed the same
// seeded observations, with scrapes in between, the exposition text is the same byte for byte.
// Replay a failure with the seed printed in its message (the seeds are fixed below).
import { expect } from 'chai';
import { Counter, Histogram, Registry } from 'prom-client';
import { SeededRand } from '../../src/common/rand.js';
import * as grpc from '@grpc/grpc-js';
import { BufferedCounter, BufferedHistogram, BufferedLabelledCounter, BufferedLabelledHistogram, BufferedMultiLabelCounter } from '../../src/rpc/buffered-metrics.js';
import { RPC_SECONDS_BUCKETS, grpcCodeName, registerRpcMetrics } from '../../src/rpc/rpc-metrics.js';
import { type RpcObservation, addRpcObserver, observeOperation } from '../../src/rpc/status.js';

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A value that lands on a bound, between bounds, below the first or above the last. */
function value(rand: SeededRand): number {
  switch (rand.int(4)) {
    case 0:
      return rand.pick(BUCKETS);
    case 1:
      return rand.next() * 12;
    case 2:
      return rand.next() * 0.0002;
    default:
      return 10 + rand.next() * 100;
  }
}

describe('buffered metrics', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: the same exposition as prom-client's counters and histogram, scrape after scrape`, async () => {
      const rand = new SeededRand(seed);
      const plain = new Registry();
      const buffered = new Registry();
      const c = new Counter({ name: 't_total', help: 'h', registers: [plain] });
      const l = new Counter({ name: 't_labelled_total', help: 'h', labelNames: ['outcome'], registers: [plain] });
      const h = new Histogram({ name: 't_seconds', help: 'h', buckets: BUCKETS, registers: [plain] });
      const bc = new BufferedCounter(buffered, 't_total', 'h');
      const bl = new BufferedLabelledCounter<string>(buffered, 't_labelled_total', 'h', 'outcome');
      const bh = new BufferedHistogram(buffered, 't_seconds', 'h', BUCKETS);
      for (let round = 0; round < 20; round++) {
        const n = rand.int(50);
        for (let i = 0; i < n; i++) {
          const v = value(rand);
          h.observe(v);
          bh.observe(v);
          const by = rand.int(3) + 1;
          c.inc(by);
          bc.inc(by);
          const outcome = rand.pick(['OK', 'UNAVAILABLE', 'INVALID_ARGUMENT']);
          l.inc({ outcome });
          bl.inc(outcome);
        }
        expect(await buffered.metrics(), `seed ${seed} round ${round}`).to.equal(await plain.metrics());
      }
      // After a reset (registry.resetMetrics), both start again from zero.
      plain.resetMetrics();
      buffered.resetMetrics();
      for (let i = 0; i < 5; i++) {
        const v = value(rand);
        h.observe(v);
        bh.observe(v);
      }
      expect(await buffered.metrics(), `seed ${seed} after reset`).to.equal(await plain.metrics());
    });
  }

  for (const seed of [4, 5]) {
    it(`seed ${seed}: labelled histogram and multi-label counter, label sets appearing as they come: the same exposition as prom-client's`, async () => {
      const rand = new SeededRand(seed);
      const plain = new Registry();
      const buffered = new Registry();
      const h = new Histogram({ name: 't_seconds', help: 'h', labelNames: ['service', 'method'], buckets: BUCKETS, registers: [plain] });
      const c = new Counter({ name: 't_total', help: 'h', labelNames: ['service', 'method', 'code'], registers: [plain] });
      const bh = new BufferedLabelledHistogram(buffered, 't_seconds', 'h', ['service', 'method'], BUCKETS);
      const bc = new BufferedMultiLabelCounter(buffered, 't_total', 'h', ['service', 'method', 'code']);
      const methods = ['Write', 'Get', 'Delete', 'Scan', 'Status'];
      for (let round = 0; round < 20; round++) {
        const n = rand.int(40);
        for (let i = 0; i < n; i++) {
          // Later rounds reach further down the list: new label sets keep appearing.
          const method = methods[rand.int(Math.min(methods.length, 1 + (round >> 2)))]!;
          const service = rand.chance(0.8) ? 'Database' : 'Admin';
          const code = rand.pick(['OK', 'UNAVAILABLE', 'DEADLINE_EXCEEDED']);
          const v = value(rand);
          h.observe({ service, method }, v);
          bh.observe(`${service}/${method}`, { service, method }, v);
          c.inc({ service, method, code });
          bc.inc(`${service}/${method}/${code}`, { service, method, code });
        }
        expect(await buffered.metrics(), `seed ${seed} round ${round}`).to.equal(await plain.metrics());
      }
    });
  }

  it("registerRpcMetrics: the calls observed give the exposition prom-client's own metrics give", async () => {
    const registry = new Registry();
    const remove = registerRpcMetrics(registry, ['Database', 'Admin']);
    const reference = new Registry();
    const handled = new Counter({ name: 'regiondb_grpc_server_handled_total', help: 'gRPC calls completed by this process, by service, method and status code', labelNames: ['service', 'method', 'code'], registers: [reference] });
    const seconds = new Histogram({
      name: 'regiondb_grpc_server_handling_seconds',
      help: 'Time from receiving a gRPC call to sending its status, by service and method (seconds)',
      labelNames: ['service', 'method'],
      buckets: RPC_SECONDS_BUCKETS,
      registers: [reference],
    });
    const removeReference = addRpcObserver((o: RpcObservation) => {
      if (o.service !== 'regiondb.v1.Database' && o.service !== 'regiondb.v1.Admin') return;
      const service = o.service.slice('regiondb.v1.'.length);
      handled.inc({ service, method: o.method, code: grpcCodeName(o.code) });
      seconds.observe({ service, method: o.method }, o.seconds);
    });
    try {
      const rand = new SeededRand(6);
      for (let round = 0; round < 10; round++) {
        for (let i = rand.int(30); i > 0; i--) {
          const [service, method] = rand.pick([
            ['regiondb.v1.Database', 'Write'],
            ['regiondb.v1.Database', 'Get'],
            ['regiondb.v1.Admin', 'Status'],
            ['regiondb.v1.Meta', 'GetRoutes'], // not this registry's: left out of both
          ] as const);
          observeOperation(service, method)(rand.pick([grpc.status.OK, grpc.status.UNAVAILABLE, grpc.status.INVALID_ARGUMENT]));
        }
        expect(await registry.metrics(), `seed 6 round ${round}`).to.equal(await reference.metrics());
      }
    } finally {
      remove();
      removeReference();
    }
  });

  it('refuses a value prom-client refuses', () => {
    const bh = new BufferedHistogram(new Registry(), 't_seconds', 'h', BUCKETS);
    expect(() => bh.observe(Number.NaN)).to.throw(TypeError);
  });
});
