// A controllable TCP proxy for fault injection without root: every datanode-to-datanode link
// goes through one of these (one per direction), and the nemesis cuts or slows it.
//   cut():   existing connections are reset and new ones are refused (a partition);
//   delay(): every chunk is held for `ms` before it is forwarded, order preserved (a slow link);
//   heal():  back to plain forwarding.
import { type Server, type Socket, createConnection, createServer } from 'node:net';

export class LinkProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private cutNow = false;
  private delayMs = 0;
  port = 0;

  constructor(
    readonly name: string,
    private readonly targetPort: number,
    private readonly host = '127.0.0.1',
  ) {}

  async start(port = 0): Promise<void> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(port, this.host, () => ok());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  get addr(): string {
    return `${this.host}:${this.port}`;
  }

  get state(): string {
    return this.cutNow ? 'cut' : this.delayMs > 0 ? `delay ${this.delayMs}ms` : 'ok';
  }

  cut(): void {
    this.cutNow = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  delay(ms: number): void {
    this.delayMs = ms;
  }

  heal(): void {
    this.cutNow = false;
    this.delayMs = 0;
  }

  private accept(client: Socket): void {
    if (this.cutNow) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: this.host, port: this.targetPort });
    // No Nagle: raft batches are small writes answered by small writes, and Nagle's algorithm
    // against delayed ACKs adds ~40 ms per round trip that a real network does not.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  /** Forwards bytes, holding each chunk for the current delay; a chain keeps the order. */
  private pipe(from: Socket, to: Socket): void {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (this.cutNow) return;
      const ms = this.delayMs;
      if (ms === 0) {
        chain = chain.then(() => void (to.destroyed || to.write(chunk)));
        return;
      }
      const deliverAt = Date.now() + ms; // latency, not serialization: each chunk waits ms from arrival
      chain = chain.then(
        () =>
          new Promise<void>((ok) =>
            setTimeout(
              () => {
                if (!to.destroyed && !this.cutNow) to.write(chunk);
                ok();
              },
              Math.max(0, deliverAt - Date.now()),
            ),
          ),
      );
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
  }
}
