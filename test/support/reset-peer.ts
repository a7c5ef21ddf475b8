// A peer that breaks every gRPC call at the HTTP/2 level: a plain node:http2 server (no gRPC
// stack) that answers a call's headers, waits for the first request message to arrive — so the
// request did reach the peer and could have run — and then resets the stream with `rstCode`.
// grpc-js reports that as INTERNAL "Received RST_STREAM with code N" with no regiondb status:
// the transport failure a forwarding datanode or a client sees when a connection is reset mid-call.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

export interface ResetPeer {
  readonly addr: string;
  /** Request messages received per gRPC path (e.g. `/regiondb.v1.Database/Batch`). */
  readonly received: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * `delay`: how long the peer holds each call after its request arrived before resetting it (a
 * slow attempt): real ms, or a function handed each call's reset, which the test runs when it
 * chooses (an attempt as slow as the test's own clock says).
 */
export async function startResetPeer(rstCode: number = http2.constants.NGHTTP2_INTERNAL_ERROR, delay: number | ((reset: () => void) => void) = 0): Promise<ResetPeer> {
  const received = new Map<string, number>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' });
    stream.on('error', () => {});
    stream.once('data', () => {
      received.set(path, (received.get(path) ?? 0) + 1);
      const reset = () => stream.destroyed || stream.close(rstCode);
      if (typeof delay === 'function') delay(reset);
      else if (delay > 0) setTimeout(reset, delay);
      else reset();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    addr: `127.0.0.1:${port}`,
    received,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}
