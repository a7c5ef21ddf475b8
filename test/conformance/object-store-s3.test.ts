// Runs the ObjectStore conformance suite on S3ObjectStore against a real S3-compatible server:
// s3rver started as a child process on 127.0.0.1 (port chosen by the OS and reported back),
// stopped by PID in after(). Also checks prefix isolation and error mapping for a dead endpoint.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { S3ObjectStore, type S3ObjectStoreOptions } from '../../src/object-store/s3-store.js';
import { BUCKET, type S3Server, startS3rver, stopS3rver } from '../support/s3rver.js';
import { objectStoreConformance } from './object-store-suite.js';

function options(endpoint: string, prefix: string): S3ObjectStoreOptions {
  return { endpoint, bucket: BUCKET, prefix, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
}

describe('S3ObjectStore against s3rver', function () {
  this.timeout(60_000);
  let server: S3Server | undefined;
  const stores: S3ObjectStore[] = [];

  before(async () => {
    server = await startS3rver();
  });
  after(async () => {
    for (const s of stores) s.close();
    if (server) await stopS3rver(server);
  });

  const make = (prefix: string): S3ObjectStore => {
    if (!server) throw new Error('s3rver not started');
    const store = new S3ObjectStore(options(server.endpoint, prefix));
    stores.push(store);
    return store;
  };

  // s3rver streams a PUT body straight into the destination file, so concurrent PUTs of one key
  // can interleave there (real S3 is atomic per PUT); that one case is skipped.
  objectStoreConformance('s3 (s3rver, prefixed)', async () => ({ store: make('cluster-a/objects'), cleanup: async () => undefined }), {
    skip: ['concurrent-puts'],
  });

  describe('S3ObjectStore specifics', () => {
    // The full suite runs once (with a prefix, the harder case) to keep the run short.
    it('works without a prefix', async () => {
      const store = make('');
      await store.put('noprefix/a', Uint8Array.of(1, 2, 3));
      expect(Array.from(await store.get('noprefix/a'))).to.deep.equal([1, 2, 3]);
      expect(Array.from(await store.getRange('noprefix/a', 1, 2))).to.deep.equal([2, 3]);
      expect(await store.list('noprefix/')).to.deep.equal([{ key: 'noprefix/a', size: 3 }]);
      await store.delete('noprefix/a');
      expect(await store.head('noprefix/a')).to.equal(undefined);
    });

    it('rejects keys that exceed 1024 bytes once prefixed', async () => {
      const store = make('some/long/prefix');
      const key = Array.from({ length: 5 }, () => 'k'.repeat(203)).join('/'); // 1019 bytes; 1036 with the prefix
      const err = await store.put(key, Uint8Array.of(1)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRegionDbError(err, ErrorCode.InvalidArgument), String(err)).to.equal(true);
    });

    it('keeps prefixes isolated and strips them from list results', async () => {
      const a = make('tenant-a');
      const b = make('tenant-b/');
      await a.put('x/1', Uint8Array.of(1));
      await b.put('x/1', Uint8Array.of(2, 2));
      expect(await a.list('x/')).to.deep.equal([{ key: 'x/1', size: 1 }]);
      expect(await b.list('x/')).to.deep.equal([{ key: 'x/1', size: 2 }]);
      expect(a.description).to.contain('s3://regiondb-test/tenant-a/');
    });

    it('maps a missing bucket to STORAGE_UNAVAILABLE, not NOT_FOUND', async () => {
      if (!server) throw new Error('s3rver not started');
      const store = new S3ObjectStore({ ...options(server.endpoint, ''), bucket: 'no-such-bucket' });
      stores.push(store);
      const err = await store.get('k').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isRegionDbError(err, ErrorCode.StorageUnavailable), String(err)).to.equal(true);
    });
  });
});

describe('S3ObjectStore with an unreachable endpoint', () => {
  it('fails with STORAGE_UNAVAILABLE naming the endpoint', async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const store = new S3ObjectStore({ ...options('http://127.0.0.1:1', ''), maxAttempts: 1, connectionTimeoutMs: 1_000 });
    try {
      for (const op of [() => store.get('k'), () => store.put('k', Uint8Array.of(1)), () => store.list(''), () => store.head('k')]) {
        const err = await op().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isRegionDbError(err, ErrorCode.StorageUnavailable), String(err)).to.equal(true);
        expect((err as Error).message).to.contain('http://127.0.0.1:1');
      }
    } finally {
      store.close();
    }
  });
});
