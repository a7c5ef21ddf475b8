// The fault-injection proxy adds no latency of its own (issue 21): with Nagle's algorithm on its
// sockets, a request sent as two small writes waits for the delayed ACK of the first (~40 ms on
// Linux) on every exchange, a latency band a real network does not have.
import { expect } from 'chai';
import { type Socket, createConnection, createServer } from 'node:net';
import { LinkProxy } from './proxy.js';

describe('jepsen LinkProxy', () => {
  it('small request/response exchanges through the proxy take no ~40 ms Nagle/delayed-ACK round trips', async function () {
    this.timeout(30_000);
    // Echo server: answers once a whole 2-part request (2 × 100 bytes) has arrived.
    const server = createServer((s) => {
      let got = 0;
      s.setNoDelay(true);
      s.on('data', (b: Buffer) => {
        got += b.length;
        while (got >= 200) {
          got -= 200;
          s.write(Buffer.alloc(10));
        }
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
    const proxy = new LinkProxy('test', (server.address() as { port: number }).port);
    await proxy.start();
    const client: Socket = createConnection({ host: '127.0.0.1', port: proxy.port });
    client.setNoDelay(true);
    await new Promise<void>((ok) => client.once('connect', () => ok()));
    const exchange = () =>
      new Promise<number>((ok) => {
        const t0 = process.hrtime.bigint();
        client.once('data', () => ok(Number(process.hrtime.bigint() - t0) / 1e6));
        client.write(Buffer.alloc(100));
        setTimeout(() => client.write(Buffer.alloc(100)), 2); // a separate segment, after the proxy forwarded the first
      });
    try {
      const times: number[] = [];
      for (let i = 0; i < 60; i++) times.push(await exchange()); // the first ones run in TCP quick-ACK mode
      const steady = times.slice(30).sort((a, b) => a - b);
      const median = steady[Math.floor(steady.length / 2)]!;
      const slow = steady.filter((t) => t >= 35).length;
      process.stdout.write(`      through the proxy: median ${median.toFixed(2)} ms, ${slow} of ${steady.length} exchanges ≥ 35 ms\n`);
      expect(slow, `exchanges of ≥ 35 ms (median ${median.toFixed(2)} ms)`).to.be.below(steady.length / 4);
    } finally {
      client.destroy();
      await proxy.stop();
      await new Promise<void>((ok) => server.close(() => ok()));
    }
  });
});
