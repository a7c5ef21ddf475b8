// The identity of a datanode's data dir (src/common/store-id.ts, issue 14.1): created once,
// atomically, on an empty data dir; adopted (same incarnation) for a data dir from before store ids.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ADOPTED_STORE_PREFIX, STARTS_FILE, STORE_ID_FILE, UNCONFIRMED_STARTS_MAX, confirmStart, isFreshStoreId, loadOrCreateStoreId, recordStart } from '../../src/common/store-id.js';

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

describe('starts of a data dir (a restored copy of the dir, docs/failover.md)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-starts-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('counts every start durably in the dir, each with its own id, and vouches for the starts since the last confirmed one', () => {
    const first = recordStart(dir);
    const second = recordStart(dir);
    expect(first).to.include({ count: 1, confirmed: undefined });
    expect(second.count).to.equal(2);
    expect(second.id).to.not.equal(first.id);
    expect(second.unconfirmed.map((s) => s.id)).to.deep.equal([first.id, second.id]);
    // The metasrv answered the second start's registration: the next start vouches for it alone.
    confirmStart(dir, second);
    const third = recordStart(dir);
    expect(third.confirmed).to.deep.equal({ count: 2, id: second.id });
    expect(third.unconfirmed.map((s) => s.id)).to.deep.equal([third.id]);
    expect(JSON.parse(readFileSync(join(dir, STARTS_FILE), 'utf8'))).to.deep.include({ count: 3, id: third.id });
  });

  it("a copy of the dir vouches only for the starts it saw: the real dir's later starts are not among them", () => {
    const copy = mkdtempSync(join(tmpdir(), 'regiondb-starts-copy-'));
    try {
      confirmStart(dir, recordStart(dir));
      cpSync(dir, copy, { recursive: true });
      const later = recordStart(dir);
      confirmStart(dir, later);
      const fromCopy = recordStart(copy);
      expect(fromCopy.count, 'the copy counts from where it was copied').to.equal(later.count);
      expect([fromCopy.confirmed!.id, ...fromCopy.unconfirmed.map((s) => s.id)]).to.not.include(later.id);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('remembers at most UNCONFIRMED_STARTS_MAX starts since the last confirmed one', () => {
    let last = recordStart(dir);
    for (let i = 0; i < UNCONFIRMED_STARTS_MAX + 5; i++) last = recordStart(dir);
    expect(last.unconfirmed.length).to.equal(UNCONFIRMED_STARTS_MAX);
    expect(last.unconfirmed.at(-1)!.id).to.equal(last.id);
  });

  it('a damaged starts file stops the start with a message naming it (a guess could hide a copy)', () => {
    for (const text of ['7\n', '{"count":1,"id":"a","confirmed":null}\n', '{"count":0,"id":"a","confirmed":null,"unconfirmed":[]}\n', '{"count":1,"id":"a b","confirmed":null,"unconfirmed":[]}\n']) {
      writeFileSync(join(dir, STARTS_FILE), text);
      expect(() => recordStart(dir), text).to.throw(/starts is damaged/);
    }
  });
});
