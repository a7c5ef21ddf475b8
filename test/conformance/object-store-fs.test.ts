// Runs the ObjectStore conformance suite on FsObjectStore in a fresh temp dir, plus fs-specific
// checks (no temp files left behind, no escape from the root).
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { DatanodeConfig } from '../../src/common/config.js';
import { FsObjectStore } from '../../src/object-store/fs-store.js';
import { createObjectStore, S3ObjectStore } from '../../src/object-store/index.js';
import { objectStoreConformance } from './object-store-suite.js';

objectStoreConformance('fs', async () => {
  const root = await mkdtemp(join(tmpdir(), 'regiondb-objstore-fs-'));
  return { store: new FsObjectStore(join(root, 'objects')), cleanup: () => rm(root, { recursive: true, force: true }) };
});

describe('FsObjectStore specifics', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'regiondb-objstore-fs-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('leaves no temporary files and prunes empty directories', async () => {
    const store = new FsObjectStore(root);
    await store.put('a/b/c', Uint8Array.of(1, 2, 3));
    await store.put('a/b/c', Uint8Array.of(4));
    expect(await readdir(join(root, 'a', 'b'))).to.deep.equal(['c']);
    await store.delete('a/b/c');
    expect(await readdir(root)).to.deep.equal([]);
  });

  it('an upload leaves no temporary file behind, completed, aborted, or failed at complete()', async () => {
    const store = new FsObjectStore(root);
    const done = store.upload('up/a/done');
    await done.write(Uint8Array.of(1, 2));
    await done.complete();
    const aborted = store.upload('up/a/aborted');
    await aborted.write(Uint8Array.of(3));
    expect((await readdir(join(root, 'up', 'a'))).some((n) => n.startsWith('.rdb-tmp-')), 'staged in a temporary file').to.equal(true);
    await aborted.abort();
    expect(await readdir(join(root, 'up', 'a'))).to.deep.equal(['done']);
    // The store fails under an upload: its directory is removed while it is being written.
    const failing = store.upload('up/b/failed');
    await failing.write(Uint8Array.of(4, 5, 6));
    await rm(join(root, 'up', 'b'), { recursive: true, force: true });
    let code: string | undefined;
    await failing.complete().catch((err: { code?: string }) => {
      code = err.code;
    });
    expect(code).to.equal('STORAGE_UNAVAILABLE');
    expect(await store.head('up/b/failed')).to.equal(undefined);
    expect((await store.list('up/')).map((o) => o.key)).to.deep.equal(['up/a/done']);
    await store.delete('up/a/done');
  });

  it('listPrefixes does not name a directory that holds no object (left empty by a crash, or by an unfinished upload)', async () => {
    const store = new FsObjectStore(join(root, 'husks'));
    await store.put('r/full/manifest/m', Uint8Array.of(1));
    await store.put('r/deep/a/b/c/x', Uint8Array.of(1));
    // A crash between a delete and the pruning of its directories leaves them empty.
    await mkdir(join(root, 'husks', 'r', 'empty', 'sst'), { recursive: true });
    // An upload whose process died before complete(): only its temporary file.
    const unfinished = store.upload('r/staged/sst/s');
    await unfinished.write(Uint8Array.of(1));
    expect(await store.listPrefixes('r/')).to.deep.equal(['r/deep/', 'r/full/']);
    await unfinished.abort();
  });

  it('reports a key that collides with an existing object as INVALID_ARGUMENT', async () => {
    const store = new FsObjectStore(root);
    await store.put('file', Uint8Array.of(1));
    let code: string | undefined;
    await store.put('file/child', Uint8Array.of(1)).catch((err: { code?: string }) => {
      code = err.code;
    });
    expect(code).to.equal('INVALID_ARGUMENT');
  });

  it('lists nothing for a root that does not exist yet', async () => {
    const store = new FsObjectStore(join(root, 'not', 'yet'));
    expect(await store.list('')).to.deep.equal([]);
    expect(await store.head('x')).to.equal(undefined);
  });

  it('createObjectStore builds stores from the datanode storage config', async () => {
    const fsConfig: NonNullable<DatanodeConfig['storage']> = { type: 'fs', root };
    const fsStore = createObjectStore(fsConfig);
    expect(fsStore).to.be.instanceOf(FsObjectStore);
    await fsStore.put('cfg/x', Uint8Array.of(9));
    expect(Array.from(await fsStore.get('cfg/x'))).to.deep.equal([9]);
    const s3Config: NonNullable<DatanodeConfig['storage']> = {
      type: 's3',
      endpoint: 'http://127.0.0.1:1',
      bucket: 'b',
      prefix: 'p',
      region: 'us-east-1',
      access_key_id: 'a',
      secret_access_key: 's',
    };
    const s3Store = createObjectStore(s3Config);
    expect(s3Store).to.be.instanceOf(S3ObjectStore);
    expect(s3Store.description).to.equal('s3://b/p/ (http://127.0.0.1:1)');
    (s3Store as S3ObjectStore).close();
  });
});
