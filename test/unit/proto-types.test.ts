import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
// @ts-expect-error: a plain .mjs script without type declarations
import { compareTrees, FLAGS, generate, OUT_DIR, PROTO_FILES } from '../../scripts/proto-types.mjs';
import { loaderOptions, PROTO_FILES as LOADED_FILES } from '../../src/rpc/proto.js';

describe('generated proto types (scripts/proto-types.mjs)', () => {
  it('are generated with the options the runtime loader uses, from the files it loads', () => {
    // Each loader option, as the generator flag that asks for the same object shape.
    const asFlags: string[] = [];
    for (const [name, value] of Object.entries(loaderOptions)) {
      if (value === true) asFlags.push(`--${name}`);
      else if (value === String) asFlags.push(`--${name}=String`);
      else if (value === Number) asFlags.push(`--${name}=Number`);
      else expect.fail(`loader option ${name}=${String(value)} has no generator flag in scripts/proto-types.mjs`);
    }
    const shapeFlags = (FLAGS as string[]).filter((f) => !f.startsWith('--grpcLib') && !f.startsWith('--importFileExtension'));
    expect([...shapeFlags].sort()).to.deep.equal([...asFlags].sort());
    expect(PROTO_FILES).to.deep.equal(LOADED_FILES);
  });

  it('are checked in as generated (what make lint checks), and an edit is caught', function () {
    this.timeout(30_000);
    const tmp = mkdtempSync(join(tmpdir(), 'regiondb-proto-types-test-'));
    try {
      generate(tmp);
      expect(compareTrees(tmp, OUT_DIR)).to.deep.equal([]);
      writeFileSync(join(tmp, 'regiondb/v1/Value.ts'), '// edited\n');
      rmSync(join(tmp, 'regiondb/v1/Row.ts'));
      expect(compareTrees(tmp, OUT_DIR)).to.deep.equal(['differs: regiondb/v1/Value.ts', 'not generated any more: regiondb/v1/Row.ts']);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
