// The datanode's node-wide memtable total (MemtableAccount) against the sum it replaces: every
// replica's memtableBytes(), summed for each client write before (database-service.ts
// checkMemory). The account must equal that sum after any sequence of applies, and after the
// region server lets go of a state machine (closed, failed, replaced by a snapshot's).
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { MemtableAccount, RegionState, encodeCommand } from '../../src/engine/index.js';
import { decodeManifest } from '../../src/engine/manifest.js';
import { cpuSchema } from '../fixtures/schemas.js';

const schema = cpuSchema();
const SEED = Number(process.env['MEMTABLE_ACCOUNT_SEED'] ?? 19);
const STEPS = 3000;

describe('MemtableAccount: the node total kept by the memtables (issue 19 item 4)', () => {
  it(`equals the sum of memtableBytes() over the attached states through writes, overwrites, deletes, freezes, flush edits, seeds and detaches (seed ${SEED}; replay: MEMTABLE_ACCOUNT_SEED=${SEED})`, () => {
    const rand = new SeededRand(SEED);
    const account = new MemtableAccount();
    interface Live {
      state: RegionState;
      index: number;
      requestId: number;
      /** Freeze indexes not flushed yet, oldest first. */
      frozen: number[];
    }
    const live: Live[] = [];
    const fresh = (): Live => {
      const state = new RegionState(schema, `r${rand.int(1_000_000)}`);
      state.attachAccount(account);
      return { state, index: 0, requestId: 0, frozen: [] };
    };
    const emptyDedup = decodeManifest(new RegionState(schema, 'empty').serialize(), 'empty').dedup;
    const kinds = new Map<string, number>();
    for (let step = 0; step < STEPS; step++) {
      const roll = rand.int(100);
      let kind: string;
      if (live.length === 0 || roll < 5) {
        kind = 'attach';
        live.push(fresh());
      } else {
        const r = live[rand.int(live.length)]!;
        const next = ++r.index;
        if (roll < 55) {
          kind = 'write';
          // Few distinct keys: many writes replace an entry (the size moves by the difference:
          // a null field is smaller than a number).
          const rows = Array.from({ length: 1 + rand.int(4) }, () => [`h${rand.int(8)}`, rand.int(50), rand.int(3) === 0 ? null : rand.int(1000) / 7]);
          r.state.apply(next, encodeCommand({ kind: 'write', clientId: 'c', requestId: ++r.requestId, rows }));
        } else if (roll < 65) {
          kind = 'delete';
          r.state.apply(next, encodeCommand({ kind: 'delete', clientId: 'c', requestId: ++r.requestId, keys: [[`h${rand.int(8)}`, rand.int(50)]] }));
        } else if (roll < 72) {
          kind = 'freeze';
          r.state.apply(next, encodeCommand({ kind: 'freeze' }));
          r.frozen.push(next);
        } else if (roll < 82) {
          kind = 'flush-edit';
          // Usually the oldest frozen memtable; sometimes a duplicate or an edit out of order (ignored).
          const freezeIndex = r.frozen.length > 0 && rand.int(4) > 0 ? r.frozen.shift()! : next + 1000;
          r.state.apply(next, encodeCommand({ kind: 'flush-edit', freezeIndex, sst: null }));
        } else if (roll < 85) {
          kind = 'standby-seed';
          r.state.apply(next, encodeCommand({ kind: 'standby-seed', primaryIndex: next * 10, seededThroughMs: step, versionOffset: 0, ssts: [], dedup: emptyDedup }));
          r.frozen = [];
        } else if (roll < 90) {
          kind = 'detach';
          r.state.detachAccount();
          if (rand.int(2) === 0) r.state.detachAccount(); // idempotent: the bytes leave once
          live.splice(live.indexOf(r), 1);
        } else {
          kind = 'conditional write';
          r.state.apply(next, encodeCommand({ kind: 'write', clientId: 'c', requestId: ++r.requestId, rows: [[`h${rand.int(8)}`, rand.int(50), 1]], expectAbsent: true }));
        }
      }
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      const sum = live.reduce((n, l) => n + l.state.memtableBytes(), 0);
      expect(account.bytes, `step ${step} (${kind}; seed ${SEED})`).to.equal(sum);
    }
    // The run did exercise what it claims to, with memtables that held bytes.
    for (const k of ['attach', 'write', 'delete', 'freeze', 'flush-edit', 'standby-seed', 'detach', 'conditional write']) expect(kinds.get(k) ?? 0, k).to.be.greaterThan(10);
    expect(account.bytes).to.be.greaterThan(0);
    for (const l of live) l.state.detachAccount();
    expect(account.bytes, 'every state detached: nothing left counted').to.equal(0);
  });

  it('a state restored with rows already in its memtables counts them when attached; attaching twice is refused', () => {
    const account = new MemtableAccount();
    const s = new RegionState(schema, 'r1');
    s.apply(1, encodeCommand({ kind: 'write', clientId: 'c', requestId: 1, rows: [['a', 1, 2]] }));
    expect(s.memtableBytes()).to.be.greaterThan(0);
    s.attachAccount(account);
    expect(account.bytes).to.equal(s.memtableBytes());
    expect(() => s.attachAccount(account)).to.throw(/twice/);
  });

  it('follows a write or delete whose insertion stops half-way (a row whose key does not encode: the rows before it stay in the memtable)', () => {
    const account = new MemtableAccount();
    const s = new RegionState(schema, 'r1');
    s.attachAccount(account);
    // A timestamp that is not an integer does not encode as a key (key.ts): the first row is in, the second throws.
    expect(() => s.apply(1, encodeCommand({ kind: 'write', clientId: 'c', requestId: 1, rows: [['a', 1, 2], ['b', 1.5, 3]] }))).to.throw();
    expect(s.memtableBytes(), 'the first row stayed').to.be.greaterThan(0);
    expect(account.bytes, 'after a write stopped half-way').to.equal(s.memtableBytes());
    expect(() => s.apply(2, encodeCommand({ kind: 'delete', clientId: 'c', requestId: 2, keys: [['c', 4], ['d', 4.5]] }))).to.throw();
    expect(account.bytes, 'after a delete stopped half-way').to.equal(s.memtableBytes());
    s.detachAccount();
    expect(account.bytes).to.equal(0);
  });
});
