// The flusher's due times (src/datanode/due-schedule.ts) against the plain map they replace: over
// seeded random sequences of sets, moves, deletes, retains and takes, `takeDue(t)` must return
// exactly the regions whose due time in the map is at most t (each once, earliest first), and
// leave the others. A failure names its seed: DUE_SCHEDULE_SEED=<seed> replays it. Two planted
// schedules (one that skips pushing a time it held before, one whose retain loses live entries)
// fail the same comparison.
import { expect } from 'chai';
import { SeededRand } from '../../src/common/rand.js';
import { DueSchedule } from '../../src/datanode/due-schedule.js';

const FIRST_SEED = Number(process.env['DUE_SCHEDULE_SEED'] ?? 1);
const SEEDS = process.env['DUE_SCHEDULE_SEED'] ? 1 : 100;

type Schedule = Pick<DueSchedule, 'get' | 'set' | 'delete' | 'takeDue' | 'retain' | 'size' | 'entries'>;

/** Pushes only times it never held for the region (a moved-back time is then never found). */
class RemembersTimes extends DueSchedule {
  private readonly seen = new Set<string>();
  override set(regionId: string, dueMs: number): void {
    const key = `${regionId}@${dueMs}`;
    if (this.seen.has(key) && this.get(regionId) !== dueMs) {
      // Records the time without an entry of its own (as if the old, stale one still counted).
      (this as unknown as { at: Map<string, number> }).at.set(regionId, dueMs);
      return;
    }
    this.seen.add(key);
    super.set(regionId, dueMs);
  }
}

/** A retain that rebuilds the heap from the entries it had, dropping the region it looks at last. */
class LossyRetain extends DueSchedule {
  override retain(keep: (regionId: string) => boolean): void {
    let last: string | undefined;
    super.retain((regionId) => {
      last = regionId;
      return keep(regionId);
    });
    if (last !== undefined) {
      const at = (this as unknown as { at: Map<string, number> }).at;
      const due = at.get(last);
      super.retain((regionId) => regionId !== last);
      if (due !== undefined) at.set(last, due); // still in the map, no entry in the heap
    }
  }
}

function run(seed: number, make: () => Schedule): void {
  const rand = new SeededRand(seed);
  const schedule = make();
  const oracle = new Map<string, number>();
  const regions = Array.from({ length: 1 + rand.int(40) }, (_, i) => `r${i}`);
  let now = 0;
  const where = (step: number) => `seed ${seed}, step ${step} (replay: DUE_SCHEDULE_SEED=${seed})`;
  for (let step = 0; step < 400; step++) {
    const action = rand.int(100);
    const regionId = rand.pick(regions);
    if (action < 45) {
      // A due time a little ahead, or one it had before (a visit that found the same time again).
      const due = rand.chance(0.3) && oracle.has(regionId) ? oracle.get(regionId)! : now + rand.int(50);
      schedule.set(regionId, due);
      oracle.set(regionId, due);
    } else if (action < 60) {
      schedule.delete(regionId);
      oracle.delete(regionId);
    } else if (action < 63) {
      const gone = new Set(regions.filter(() => rand.chance(0.2)));
      schedule.retain((id) => !gone.has(id));
      for (const id of gone) oracle.delete(id);
      expect(schedule.entries, `${where(step)}: entries after retain`).to.equal(oracle.size);
    } else {
      now += rand.int(20);
      const until = now + 1;
      const expected = [...oracle].filter(([, due]) => due <= until).sort((a, b) => a[1] - b[1]);
      const taken = schedule.takeDue(until);
      expect(new Set(taken), `${where(step)}: due at ${until}`).to.deep.equal(new Set(expected.map(([id]) => id)));
      expect(taken.length, `${where(step)}: each region once`).to.equal(expected.length);
      const times = taken.map((id) => expected.find(([e]) => e === id)![1]);
      expect(times, `${where(step)}: earliest first`).to.deep.equal([...times].sort((a, b) => a - b));
      for (const id of taken) oracle.delete(id);
    }
    if (schedule.size !== oracle.size) expect.fail(`${where(step)}: size ${schedule.size}, expected ${oracle.size}`);
    for (const id of regions) if (schedule.get(id) !== oracle.get(id)) expect.fail(`${where(step)}: ${id} due at ${schedule.get(id)}, expected ${oracle.get(id)}`);
  }
}

function runAll(make: () => Schedule): void {
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) run(seed, make);
}

describe('the flusher due schedule (a heap of due times) returns what a map of due times would', () => {
  it(`${SEEDS} seeded sequences of sets, moves, deletes, retains and takes (from seed ${FIRST_SEED})`, () => {
    runAll(() => new DueSchedule());
  });

  it('stale entries are dropped: a region moved many times leaves one live entry after retain', () => {
    const s = new DueSchedule();
    for (let t = 0; t < 100; t++) s.set('r', 1000 - t);
    expect(s.entries).to.equal(100);
    expect(s.takeDue(900), 'its time is 901').to.deep.equal([]);
    expect(s.takeDue(2000), 'once, whatever stale entries are left').to.deep.equal(['r']);
    expect(s.takeDue(2000)).to.deep.equal([]);
    expect(s.entries, 'the stale entries went as they reached the top').to.equal(0);
    s.set('r', 5);
    s.set('q', 7);
    s.retain(() => true);
    expect(s.entries).to.equal(2);
  });

  for (const [name, make] of [
    ['a schedule that does not push a time the region held before', () => new RemembersTimes()],
    ['a retain that loses a live entry', () => new LossyRetain()],
  ] as const) {
    it(`planted: ${name} fails the comparison`, () => {
      expect(() => runAll(make)).to.throw(/seed \d+, step \d+/);
    });
  }
});
