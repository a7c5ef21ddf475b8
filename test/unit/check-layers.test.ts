import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
// @ts-expect-error: a plain .mjs script without type declarations
import { checkLayers, parseImports } from '../../scripts/check-layers.mjs';

// A small tree with three layers: low < mid < high.
const layers = [['low'], ['mid', 'side'], ['high']];

describe('the layer check (scripts/check-layers.mjs)', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'regiondb-layers-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function tree(files: Record<string, string>): void {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
  }
  const check = (knownCycles: string[][] = []) => checkLayers(root, { layers, knownCycles }) as { violations: string[]; cycles: string[][] };

  it('passes a tree whose imports only go down', () => {
    tree({
      'low/a.ts': 'export const a = 1;\n',
      'mid/b.ts': "import { a } from '../low/a.js';\nexport const b = a;\n",
      'high/c.ts': "import { b } from '../mid/b.js';\nimport type { a } from '../low/a.js';\nexport const c = b;\n",
    });
    expect(check().violations).to.deep.equal([]);
  });

  it('catches an upward import, naming file, line and layers', () => {
    tree({
      'low/a.ts': "// a comment\nimport type { B } from '../mid/b.js';\nexport const a = 1;\n",
      'mid/b.ts': 'export type B = number;\n',
    });
    const { violations } = check();
    expect(violations).to.have.length(1);
    expect(violations[0]).to.contain(`${join(root, 'low/a.ts')}:2`).and.contain('upward').and.contain("'../mid/b.js'");
  });

  it('catches a sideways import between two modules of one layer', () => {
    tree({ 'mid/b.ts': "export { s } from '../side/s.js';\n", 'side/s.ts': 'export const s = 1;\n' });
    expect(check().violations.join('\n')).to.contain('sideways');
  });

  it('catches a module that has no layer', () => {
    tree({ 'new/x.ts': "import { a } from '../low/a.js';\n", 'low/a.ts': 'export const a = 1;\n' });
    expect(check().violations.join('\n')).to.contain("module 'new' has no layer");
  });

  it('catches an import cycle inside one module and reports it as a path', () => {
    tree({
      'mid/one.ts': "import type { Two } from './two.js';\nexport type One = Two;\n",
      'mid/two.ts': "import { three } from './three.js';\nexport type Two = number;\n",
      'mid/three.ts': "import type { One } from './one.js';\nexport const three: One = 3;\n",
    });
    const { violations } = check();
    expect(violations).to.have.length(1);
    const paths = ['one', 'two', 'three', 'one'].map((f) => join(root, 'mid', `${f}.ts`));
    expect(violations[0]).to.equal(`import cycle: ${paths.join(' -> ')}`);
  });

  it('lets through only the cycles named as known', () => {
    tree({ 'mid/x.ts': "import './y.js';\n", 'mid/y.ts': "import './x.js';\n" });
    expect(check()).to.have.property('violations').with.length(1);
    expect(check([['mid/y.ts', 'mid/x.ts']]).violations).to.deep.equal([]);
  });

  it('reports a known cycle that is gone, so the list only shrinks', () => {
    tree({ 'mid/x.ts': "import './y.js';\n", 'mid/y.ts': 'export {};\n' });
    expect(check([['mid/x.ts', 'mid/y.ts']]).violations).to.deep.equal(['known cycle mid/x.ts <-> mid/y.ts is gone: remove it from KNOWN_CYCLES (scripts/check-layers.mjs)']);
  });

  it('ignores imports in comments and non-relative imports', () => {
    expect(parseImports("import x from 'node:fs';\n// import { y } from '../y.js';\n/* import '../z.js' */\nexport * from './w.js';\n")).to.deep.equal([
      { specifier: './w.js', line: 4 },
    ]);
  });

  it('src/ follows the layering of docs/architecture.md §13, with no import cycles', () => {
    const { violations } = checkLayers('src') as { violations: string[] };
    expect(violations, violations.join('\n')).to.deep.equal([]);
  });
});
