// Failed logins are rate limited per (user, peer address) (leftover 6; docs/security.md, "Failed
// logins"). Each password check is an scrypt run (~50 ms, 16 MiB) on libuv's thread pool, which
// file I/O shares: without a limit, a client guessing passwords kept that pool busy at will. Now
// a pair gets authLimits.loginFailuresFree failures, then a lockout that doubles with each further
// failure; while locked out, the pair is refused at once, without scrypt.
//
// The store's password check is counted through its seam (UserStore.verifyPassword, protected),
// and time is a ManualClock: nothing here sleeps.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, isRegionDbError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { type ParsedHash, type Principal, UserStore, authLimits, authorizationHeader, hashPassword } from '../../src/rpc/auth.js';
import { Security } from '../../src/rpc/security.js';

/** A store whose password checks are counted; `fast`: every check fails at once, no scrypt (for many attempts). */
class CountingStore extends UserStore {
  scrypts = 0;
  fast = false;
  protected override verifyPassword(parsed: ParsedHash, password: string): Promise<boolean> {
    this.scrypts++;
    return this.fast ? Promise.resolve(false) : super.verifyPassword(parsed, password);
  }
}

const basic = (user: string, password: string) => authorizationHeader({ user, password });
const FREE = authLimits.loginFailuresFree;

/** The outcome of one login: the user's name, 'invalid' (checked, wrong), or 'locked' (refused unchecked). */
async function login(store: UserStore, user: string, password: string, peer: string): Promise<string> {
  try {
    return (await store.authenticate(basic(user, password), peer)).name;
  } catch (err) {
    if (!isRegionDbError(err, ErrorCode.Unauthenticated)) throw err;
    if (err.message === 'invalid credentials') return 'invalid';
    expect(err.message).to.match(new RegExp(`^too many failed logins of user "${user}" from ${peer.replace(/:\d+$/, '').replace(/\./g, '\\.')}: `));
    return 'locked';
  }
}

describe('failed logins: a budget per user and peer address, then lockouts that double (leftover 6)', function () {
  this.timeout(30_000);
  let dir: string;
  let file: string;
  let clock: ManualClock;
  let store: CountingStore;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regiondb-login-limit-'));
    file = join(dir, 'users.toml');
    writeFileSync(
      file,
      `[[users]]\nname = "alice"\nrole = "read-write"\npassword_hash = "${await hashPassword('right')}"\n` +
        `[[users]]\nname = "bob"\nrole = "read-only"\npassword_hash = "${await hashPassword('bobs')}"\n`,
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(() => {
    clock = new ManualClock(1_000_000);
    store = new CountingStore(file, undefined, { clock });
  });

  it(`${FREE} wrong passwords from one address, then even the right one is refused at once (no scrypt) until the lockout ends; other addresses and users are not`, async () => {
    // Each attempt on a new connection (port): the address counts, not the connection.
    for (let i = 0; i < FREE; i++) expect(await login(store, 'alice', `wrong-${i}`, `10.0.0.1:${5000 + i}`)).to.equal('invalid');
    expect(store.scrypts).to.equal(FREE);
    expect(await login(store, 'alice', 'right', '10.0.0.1:6000')).to.equal('locked');
    expect(await login(store, 'alice', 'wrong-again', '10.0.0.1:6001')).to.equal('locked');
    expect(store.scrypts, 'scrypt runs while locked out').to.equal(FREE);
    // Another user from the same address: checked as usual.
    expect(await login(store, 'bob', 'bobs', '10.0.0.1:7001')).to.equal('bob');
    expect(store.scrypts).to.equal(FREE + 1);
    // The first lockout is loginLockoutMsBase.
    clock.advance(authLimits.loginLockoutMsBase - 1);
    expect(await login(store, 'alice', 'right', '10.0.0.1:6002')).to.equal('locked');
    clock.advance(1);
    expect(await login(store, 'alice', 'right', '10.0.0.1:6003')).to.equal('alice');
    // The success forgot the failures: a full budget again.
    for (let i = 0; i < FREE; i++) expect(await login(store, 'alice', `again-${i}`, '10.0.0.1:6004')).to.equal('invalid');
    expect(await login(store, 'alice', 'another', '10.0.0.1:6005')).to.equal('locked');
    // The same user from another address is checked as usual meanwhile.
    expect(await login(store, 'alice', 'from-elsewhere', '10.0.0.2:7000')).to.equal('invalid');
    expect(store.scrypts).to.equal(FREE + 1 + 1 + FREE + 1);
  });

  it('each failure after the budget doubles the lockout, up to loginLockoutMsMax', async () => {
    store.fast = true;
    for (let i = 0; i < FREE; i++) expect(await login(store, 'alice', `w${i}`, '10.0.0.1:1')).to.equal('invalid');
    const seen: number[] = [];
    for (let over = 0; over < 10; over++) {
      const lockMs = Math.min(authLimits.loginLockoutMsBase * 2 ** over, authLimits.loginLockoutMsMax);
      clock.advance(lockMs - 1);
      expect(await login(store, 'alice', `x${over}`, '10.0.0.1:1'), `${lockMs - 1} ms into lockout ${over}`).to.equal('locked');
      clock.advance(1);
      expect(await login(store, 'alice', `y${over}`, '10.0.0.1:1'), `${lockMs} ms into lockout ${over}`).to.equal('invalid');
      seen.push(lockMs);
    }
    expect(seen.at(-1)).to.equal(authLimits.loginLockoutMsMax);
    expect(store.scrypts, 'one check per lockout served').to.equal(FREE + 10);
  });

  it('concurrent logins: other passwords beyond the budget are refused unchecked; one header sent many times at once is checked once', async () => {
    const guesses = await Promise.all(Array.from({ length: 20 }, (_, i) => login(store, 'alice', `guess-${i}`, '10.0.0.1:1')));
    expect(guesses.filter((g) => g === 'invalid').length).to.equal(FREE);
    expect(guesses.filter((g) => g === 'locked').length).to.equal(20 - FREE);
    expect(store.scrypts).to.equal(FREE);
    const fresh = new CountingStore(file, undefined, { clock });
    const logins = await Promise.all(Array.from({ length: 20 }, () => login(fresh, 'alice', 'right', '10.0.0.3:1')));
    expect(new Set(logins)).to.deep.equal(new Set(['alice']));
    expect(fresh.scrypts).to.equal(1);
  });

  it('a verified header still answers from the cache during a lockout; failures are forgotten after loginFailureMemoryMs', async () => {
    expect(await login(store, 'alice', 'right', '10.0.0.1:1')).to.equal('alice');
    for (let i = 0; i < FREE; i++) await login(store, 'alice', `w${i}`, '10.0.0.1:1');
    expect(await login(store, 'alice', 'other', '10.0.0.1:1')).to.equal('locked');
    expect(await login(store, 'alice', 'right', '10.0.0.1:1'), 'the cached verification').to.equal('alice');
    expect(store.scrypts).to.equal(1 + FREE);
    // bob: budget - 1 failures, then quiet for the memory window: a full budget again.
    store.fast = true;
    for (let i = 0; i < FREE - 1; i++) expect(await login(store, 'bob', `b${i}`, '10.0.0.1:1')).to.equal('invalid');
    clock.advance(authLimits.loginFailureMemoryMs);
    for (let i = 0; i < FREE; i++) expect(await login(store, 'bob', `c${i}`, '10.0.0.1:1'), `attempt ${i} after the window`).to.equal('invalid');
    expect(await login(store, 'bob', 'd', '10.0.0.1:1')).to.equal('locked');
  });

  it('the pairs remembered stay within loginPairsMax', async () => {
    store.fast = true;
    for (let i = 0; i < authLimits.loginPairsMax + 100; i++) await login(store, `user${i}`, 'x', '10.0.0.1:1');
    expect(store.loginPairsTracked).to.equal(authLimits.loginPairsMax);
  });

  it("through the server's guard: the caller's peer address is the one limited", async () => {
    const security = new Security({ auth: { users_file: file } }, silentLogger);
    try {
      const call = (peer: string, password: string) => ({
        metadata: { get: (key: string) => (key === 'authorization' ? [basic('alice', password)] : []) },
        getPeer: () => peer,
      });
      const authorize = (peer: string, password: string): Promise<Principal | string> =>
        security.authorize('Database', 'Get', 'read', call(peer, password) as never).then(
          () => 'admitted',
          (err: Error) => err.message,
        );
      for (let i = 0; i < FREE; i++) expect(await authorize(`192.0.2.7:${40_000 + i}`, `nope-${i}`)).to.equal('invalid credentials');
      expect(await authorize('192.0.2.7:41000', 'right')).to.match(/^too many failed logins of user "alice" from 192\.0\.2\.7: /);
      expect(await authorize('192.0.2.8:41000', 'right')).to.equal('admitted');
    } finally {
      security.close();
    }
  });
});
