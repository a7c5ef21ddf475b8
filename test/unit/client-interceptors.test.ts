// The authorization header a client made by makeClient sends (src/rpc/auth.ts
// authorizationInterceptors, src/rpc/server.ts call): its own fixed header, or else the header of
// the call being served, or none. Calls without metadata of their own share one empty Metadata
// (round 7, docs/performance.md): a header added for one call must not reach the next call of
// another client.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { callContext } from '../../src/rpc/auth.js';
import { loadProtos } from '../../src/rpc/proto.js';
import { call, makeClient } from '../../src/rpc/server.js';

describe('client interceptors: the authorization header of each call', () => {
  let server: grpc.Server;
  let addr = '';
  const seen: (string | undefined)[] = [];

  before(async () => {
    server = new grpc.Server();
    server.addService(loadProtos().services.Admin.service, {
      Status: (c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        seen.push(c.metadata.get('authorization')[0]?.toString());
        cb(null, {});
      },
    });
    const port = await new Promise<number>((ok, fail) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))),
    );
    addr = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());

  it('sends its own header, the served call’s header, or none — never another call’s', async () => {
    const own = makeClient('Admin', addr, { authorization: 'Bearer own' });
    const plain = makeClient('Admin', addr);
    const empty = makeClient('Admin', addr, { authorization: '' });
    try {
      seen.length = 0;
      await call(own, 'Status', {}, 5_000);
      await call(plain, 'Status', {}, 5_000);
      await callContext.run({ authorization: 'Bearer served' }, () => call(plain, 'Status', {}, 5_000));
      await callContext.run({ authorization: 'Bearer served' }, () => call(own, 'Status', {}, 5_000));
      await callContext.run({ authorization: 'Bearer served' }, () => call(empty, 'Status', {}, 5_000));
      await call(plain, 'Status', {}, 5_000);
      const mine = new grpc.Metadata();
      mine.set('authorization', 'Bearer mine');
      await call(own, 'Status', {}, 5_000, mine);
      await call(plain, 'Status', {}, 5_000);
      expect(seen).to.deep.equal(['Bearer own', undefined, 'Bearer served', 'Bearer own', undefined, undefined, 'Bearer mine', undefined]);
    } finally {
      own.close();
      plain.close();
      empty.close();
    }
  });
});
