import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
// @ts-expect-error: a plain .mjs script without type declarations
import { checkCitations } from '../../scripts/check-citations.mjs';

// The names of the outside notes, spelled in pieces so this file does not cite them itself.
const raftNotes = ['RAFT', 'NOTES'].join('-');
const setupNotes = ['SETUP', 'NOTES'].join('-');
const styleNotes = ['STY', 'LE'].join('');
const sharedDir = ['..', 'shared'].join('/');
const archDraft = ['ARCHI', 'TECTURE'].join('');
// The fixtures' docs folder, spelled so that the check of this repository does not read these
// fixture paths as citations.
const D = ['do', 'cs'].join('');

describe('the citation check (scripts/check-citations.mjs)', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'regiondb-citations-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function tree(files: Record<string, string>): void {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
  }
  const check = (pending: Record<string, number> = {}) => checkCitations(root, undefined, pending) as string[];
  const docs = {
    [`${D}/rules.md`]: '# Rules\n\n**R1.** Persist first.\n\n**R2.** Then send.\n',
    [`${D}/design.md`]: '# Design\n\n## 1. Intro\n\n## 2. Parts\n',
  };

  it('passes citations of files, rules and sections that exist', () => {
    tree({
      ...docs,
      'src/a.ts': `// Persist first (${D}/rules.md R1, ${D}/design.md §2).\nexport const a = 1;\n`,
      'README.md': `See [the rules](${D}/rules.md) and ${D}/design.md.\n`,
      [`${D}/more.md`]: `As in [design](design.md#parts), ${D}/rules.md R2.\n`,
    });
    expect(check()).to.deep.equal([]);
  });

  it('catches a cited file of the docs folder that does not exist', () => {
    tree({ ...docs, 'test/t.ts': `// see ${D}/missing.md.\n` });
    expect(check()).to.deep.equal([`test/t.ts:1: cites ${D}/missing.md, which does not exist`]);
  });

  it('catches a rule or a section the cited file does not have', () => {
    tree({ ...docs, 'src/a.ts': `// ${D}/rules.md R3\n// ${D}/design.md §7\n` });
    expect(check()).to.deep.equal([
      `src/a.ts:1: cites ${D}/rules.md R3, which ${D}/rules.md does not have`,
      `src/a.ts:2: cites ${D}/design.md §7, which ${D}/design.md does not have`,
    ]);
  });

  it('catches a Markdown link out of the repository or to nothing', () => {
    tree({ ...docs, [`${D}/x.md`]: `[a](${sharedDir}/X.md) [b](nothing.md) [c](https://example.org/)\n` });
    const violations = check();
    expect(violations.filter((v) => v.includes('is not a file of the repository'))).to.have.length(2);
  });

  it('catches every citation of notes kept outside the repository', () => {
    tree({
      ...docs,
      'src/a.ts': `// (${raftNotes} 3)\n// (${styleNotes} rule 6)\n// (TIGER_${styleNotes})\n`,
      [`${D}/y.md`]: `see ${setupNotes}; the draft in ${sharedDir}/${archDraft}.md\n`,
      Makefile: `# ${raftNotes} 1\n`,
    });
    const violations = check();
    expect(violations.map((v) => v.split(':').slice(0, 2).join(':'))).to.deep.equal(['Makefile:1', `${D}/y.md:1`, `${D}/y.md:1`, `${D}/y.md:1`, 'src/a.ts:1', 'src/a.ts:2', 'src/a.ts:3']);
  });

  it('lets a pending file keep its citations, and reports the entry once it is no longer needed', () => {
    tree({ ...docs, 'src/p.ts': `// (${raftNotes} 22)\n`, 'src/q.ts': '// clean\n' });
    expect(check({ 'src/p.ts': 1 })).to.deep.equal([]);
    expect(check({ 'src/q.ts': 1 })).to.have.length(2);
  });

  it('every citation in this repository resolves to a file of it', () => {
    const violations = checkCitations('.') as string[];
    expect(violations, violations.join('\n')).to.deep.equal([]);
  });
});
