import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
// @ts-expect-error: a plain .mjs script without type declarations
import { findPurityViolations } from '../../scripts/check-raft-purity.mjs';

describe('src/raft is a pure core', () => {
  it('imports nothing from node:*, reads no Date, no Math.random, no timers', () => {
    const violations: string[] = findPurityViolations('src/raft');
    expect(violations, violations.join('\n')).to.deep.equal([]);
  });
});

describe('planted bugs stay in tests', () => {
  // PlantedBugs (src/raft/raft.ts) break raft rules on purpose so tests can watch each checker
  // fail. Only the core itself may name them under src/: no production caller can switch one on.
  it('no file under src/ except src/raft/raft.ts names plantedBugs or PlantedBugs', () => {
    const offenders: string[] = [];
    for (const name of readdirSync('src', { recursive: true })) {
      const file = join('src', String(name));
      if (!file.endsWith('.ts') || file === join('src', 'raft', 'raft.ts')) continue;
      if (/plantedBugs|PlantedBugs/.test(readFileSync(file, 'utf8'))) offenders.push(file);
    }
    expect(offenders).to.deep.equal([]);
  });
});
