// The identity of a datanode's data dir (src/common/store-id.ts, issue 14.1): created once,
// atomically, on an empty data dir; adopted (same incarnation) for a data dir from before store ids.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ADOPTED_STORE_PREFIX, STORE_ID_FILE, isFreshStoreId, loadOrCreateStoreId } from '../../src/common/store-id.js';

describe('store identity of a data dir (issue 14.1)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-store-id-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is created once on an empty data dir and kept across restarts', () => {
    const first = loadOrCreateStoreId(dir, join(dir, 'wal'));
    expect(first.origin).to.equal('fresh');
    const again = loadOrCreateStoreId(dir, join(dir, 'wal'));
    expect(again).to.deep.equal({ storeId: first.storeId, origin: 'existing' });
  });

  it('a wiped data dir gets a different one', () => {
    const first = loadOrCreateStoreId(dir, join(dir, 'wal')).storeId;
    rmSync(join(dir, STORE_ID_FILE));
    expect(loadOrCreateStoreId(dir, join(dir, 'wal')).storeId).to.not.equal(first);
  });

  it('a data dir with a WAL but no store id (before store ids) adopts one: same incarnation', () => {
    mkdirSync(join(dir, 'wal'));
    writeFileSync(join(dir, 'wal', 'CURRENT'), 'MANIFEST-000001\n');
    const { storeId, origin } = loadOrCreateStoreId(dir, join(dir, 'wal'));
    expect(origin).to.equal('adopted');
    expect(storeId.startsWith(ADOPTED_STORE_PREFIX)).to.equal(true);
    expect(isFreshStoreId(storeId)).to.equal(false);
  });

  it('a damaged store-id file stops the start with a message naming it', () => {
    writeFileSync(join(dir, STORE_ID_FILE), 'not a valid id!\n');
    expect(() => loadOrCreateStoreId(dir, join(dir, 'wal'))).to.throw(/store-id is damaged/);
  });
});
