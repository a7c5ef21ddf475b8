// Runs the ObjectStore conformance suite on S3ObjectStore against a real S3-compatible server:
// s3rver started as a child process on 127.0.0.1 (port chosen by the OS and reported back),
// stopped by PID in after(). Also checks prefix isolation and error mapping for a dead endpoint.
import { expect } from 'chai';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { putChunks } from '../../src/object-store/object-store.js';
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

    it('a part that fails mid-upload aborts the multipart upload and leaves nothing under the key', async () => {
      const store = make('multipart-failure');
      const client = await store.sdkClient();
      const sent: { command: string; uploadId?: string }[] = [];
      let uploadParts = 0;
      // Watches every request the real client sends to the real server, and fails the second part
      // before it is sent (the store failing mid-upload).
      client.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as { UploadId?: string };
          sent.push({ command: String(context.commandName), ...(input.UploadId ? { uploadId: input.UploadId } : {}) });
          if (context.commandName === 'UploadPartCommand' && ++uploadParts === 2) throw new Error('injected: connection reset during part 2');
          return next(args);
        },
        { step: 'initialize', name: 'failSecondPart' },
      );
      try {
        const MiB = 1024 * 1024;
        const upload = store.upload('mp/failed.sst');
        await upload.write(new Uint8Array(9 * MiB).fill(1)); // part 1 (8 MiB) goes out now
        let code: string | undefined;
        await upload
          .write(new Uint8Array(8 * MiB).fill(2)) // part 2 fails
          .catch((err: { code?: string }) => {
            code = err.code;
          });
        expect(code).to.equal('STORAGE_UNAVAILABLE');
        const created = sent.find((s) => s.command === 'CreateMultipartUploadCommand');
        const uploadId = sent.find((s) => s.command === 'UploadPartCommand')?.uploadId;
        expect(created, 'a multipart upload was started').to.not.equal(undefined);
        expect(uploadId).to.be.a('string');
        expect(sent.filter((s) => s.command === 'AbortMultipartUploadCommand'), 'the upload was aborted').to.deep.equal([{ command: 'AbortMultipartUploadCommand', uploadId }]);
        expect(sent.some((s) => s.command === 'CompleteMultipartUploadCommand'), 'never completed').to.equal(false);
        expect(await store.head('mp/failed.sst')).to.equal(undefined);
        expect(await store.list('mp/')).to.deep.equal([]);
      } finally {
        client.middlewareStack.remove('failSecondPart');
      }
    });

    it('an upload smaller than a part is one PutObject; a larger one a multipart upload of parts of partBytes', async () => {
      const store = make('multipart-shape');
      const client = await store.sdkClient();
      const sent: { command: string; bytes?: number }[] = [];
      client.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as { Body?: Uint8Array };
          sent.push({ command: String(context.commandName), ...(input.Body instanceof Uint8Array ? { bytes: input.Body.byteLength } : {}) });
          return next(args);
        },
        { step: 'initialize', name: 'watchShape' },
      );
      try {
        const MiB = 1024 * 1024;
        await putChunks(store, 'shape/small', [new Uint8Array(MiB), new Uint8Array(MiB)]);
        expect(sent).to.deep.equal([{ command: 'PutObjectCommand', bytes: 2 * MiB }]);
        sent.length = 0;
        const chunks = Array.from({ length: 6 }, (_, i) => new Uint8Array(3 * MiB).fill(i));
        await putChunks(store, 'shape/large', chunks);
        expect(sent).to.deep.equal([
          { command: 'CreateMultipartUploadCommand' },
          { command: 'UploadPartCommand', bytes: 8 * MiB },
          { command: 'UploadPartCommand', bytes: 8 * MiB },
          { command: 'UploadPartCommand', bytes: 2 * MiB },
          { command: 'CompleteMultipartUploadCommand' },
        ]);
        expect(Buffer.from(await store.get('shape/large')).equals(Buffer.concat(chunks))).to.equal(true);
      } finally {
        client.middlewareStack.remove('watchShape');
      }
    });

    // s3rver answers a Delimiter listing in one page whatever MaxKeys says (it counts only
    // objects toward a page), so S3's paging of CommonPrefixes is played by a stand-in here: the
    // real client's ListObjectsV2 requests are answered from a key set, as S3 pages them —
    // folders and objects in key order, `pageEntries` of them a page, continued by a token.
    function fakeListing(keys: string[], pageEntries: number, failPage?: number) {
      const sorted = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const requests: { prefix?: string; delimiter?: string; token?: string }[] = [];
      const middleware = (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: { input: unknown }) => {
        if (context.commandName !== 'ListObjectsV2Command') return next(args);
        const input = args.input as { Prefix?: string; Delimiter?: string; ContinuationToken?: string };
        requests.push({ prefix: input.Prefix, delimiter: input.Delimiter, token: input.ContinuationToken });
        if (requests.length === failPage) throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError' });
        const prefix = input.Prefix ?? '';
        const entries: { key: string; folder: boolean }[] = [];
        for (const key of sorted) {
          if (!key.startsWith(prefix)) continue;
          const slash = input.Delimiter ? key.indexOf(input.Delimiter, prefix.length) : -1;
          const entry = slash < 0 ? { key, folder: false } : { key: key.slice(0, slash + 1), folder: true };
          if (entries.at(-1)?.key !== entry.key) entries.push(entry);
        }
        const after = input.ContinuationToken === undefined ? '' : Buffer.from(input.ContinuationToken, 'base64').toString();
        const rest = entries.filter((e) => Buffer.compare(Buffer.from(e.key), Buffer.from(after)) > 0);
        const page = rest.slice(0, pageEntries);
        const truncated = rest.length > page.length;
        return {
          response: {},
          output: {
            $metadata: { httpStatusCode: 200 },
            Contents: page.filter((e) => !e.folder).map((e) => ({ Key: e.key, Size: 1 })),
            CommonPrefixes: page.filter((e) => e.folder).map((e) => ({ Prefix: e.key })),
            IsTruncated: truncated,
            NextContinuationToken: truncated ? Buffer.from(page.at(-1)!.key).toString('base64') : undefined,
          },
        };
      };
      return { requests, middleware };
    }

    it('listPrefixes follows S3\'s pages of folders, asking one page per 1,000 folders, not per 1,000 objects', async () => {
      const store = make('paged');
      const keys: string[] = ['paged/regions/top-level-object'];
      const expected: string[] = [];
      for (let r = 0; r < 2_500; r++) {
        const folder = `regions/${String(r).padStart(6, '0')}/`;
        expected.push(folder);
        for (const object of ['manifest/1.manifest', 'sst/1.sst', 'sst/2.sst']) keys.push(`paged/${folder}${object}`);
      }
      keys.push('other-tenant/regions/999999/sst/x.sst');
      const fake = fakeListing(keys, 1_000);
      const client = await store.sdkClient();
      client.middlewareStack.add(fake.middleware as never, { step: 'initialize', name: 'fakeListing' });
      try {
        expect(await store.listPrefixes('regions/')).to.deep.equal(expected);
        expect(fake.requests.length, 'requests for 2,500 folders of 3 objects').to.equal(3);
        expect(fake.requests.every((r) => r.prefix === 'paged/regions/' && r.delimiter === '/')).to.equal(true);
        fake.requests.length = 0;
        expect((await store.list('regions/')).length).to.equal(7_501);
        expect(fake.requests.length, 'requests to list the 7,501 objects themselves').to.equal(8);
      } finally {
        client.middlewareStack.remove('fakeListing');
      }
    });

    it('listPrefixes fails, with no partial answer, when a page after the first fails', async () => {
      const store = make('paged-failing');
      const keys = Array.from({ length: 30 }, (_, r) => `paged-failing/regions/${r}/sst/x.sst`);
      const fake = fakeListing(keys, 10, 2);
      const client = await store.sdkClient();
      client.middlewareStack.add(fake.middleware as never, { step: 'initialize', name: 'fakeListing' });
      try {
        const err = await store.listPrefixes('regions/').then(
          (answer) => answer,
          (e: unknown) => e,
        );
        expect(isRegionDbError(err, ErrorCode.StorageUnavailable), `answer: ${String(err)}`).to.equal(true);
        expect(fake.requests.length).to.equal(2);
      } finally {
        client.middlewareStack.remove('fakeListing');
      }
    });

    it('refuses a part size S3 would not take', () => {
      expect(() => new S3ObjectStore({ ...options('http://127.0.0.1:1', ''), partBytes: 1 << 20 })).to.throw(/partBytes/);
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
