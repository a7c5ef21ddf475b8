import { expect } from 'chai';
// @ts-expect-error: a plain .mjs script without type declarations
import { findPurityViolations } from '../../scripts/check-raft-purity.mjs';

describe('src/raft is a pure core', () => {
  it('imports nothing from node:*, reads no Date, no Math.random, no timers', () => {
    const violations: string[] = findPurityViolations('src/raft');
    expect(violations, violations.join('\n')).to.deep.equal([]);
  });
});
