// The identity of a datanode's data dir (src/common/store-id.ts, issue 14.1): created once,
// atomically, on an empty data dir; adopted (same incarnation) for a data dir from before store ids.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ADOPTED_STORE_PREFIX, STARTS_FILE, STORE_ID_FILE, isFreshStoreId, loadOrCreateStoreId, recordStart } from '../../src/common/store-id.js';

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

describe('start count of a data dir (a restored copy of the dir, docs/failover.md)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-starts-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('counts every start durably in the dir, each with its own id; a copy of the dir counts from where it was copied', () => {
    const first = recordStart(dir);
    const second = recordStart(dir);
    expect(first.count).to.equal(1);
    expect(second.count).to.equal(2);
    expect(second.id).to.not.equal(first.id);
    expect(readFileSync(join(dir, STARTS_FILE), 'utf8')).to.equal(`2 ${second.id}\n`);
    const copy = mkdtempSync(join(tmpdir(), 'regiondb-starts-copy-'));
    try {
      cpSync(dir, copy, { recursive: true });
      recordStart(dir);
      const fromCopy = recordStart(copy);
      // The same count as the original's third start, under another id: the metasrv tells them apart.
      expect(fromCopy.count).to.equal(3);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('a damaged starts file stops the start with a message naming it (a guessed count could hide a copy)', () => {
    writeFileSync(join(dir, STARTS_FILE), '7\n');
    expect(() => recordStart(dir)).to.throw(/starts is damaged/);
    writeFileSync(join(dir, STARTS_FILE), 'x 0f1e\n');
    expect(() => recordStart(dir)).to.throw(/starts is damaged/);
  });
});
