// Everything the repository cites must be in the repository (docs/style.md S7). Checks every
// text file under src/, test/, docs/, bench/, scripts/, proto/, cluster-configs/ and README.md and
// the Makefile, and fails on
//   - a cited `docs/...` path that does not exist;
//   - a cited rule or section that the cited file does not have: "docs/raft-rules.md R4",
//     "docs/style.md S6" (a bold "**R4.**" in that file), "docs/architecture.md §5" (a heading
//     "## 5.");
//   - a relative Markdown link in README.md or docs/ whose target does not exist;
//   - a citation of team notes kept outside the repository (the raft notes, the style notes,
//     the setup notes, the shared architecture draft, anything in the team's shared folder).
// Run by `make lint` and by test/unit/check-citations.test.ts.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';

export const SCANNED = ['src', 'test', 'docs', 'bench', 'scripts', 'proto', 'cluster-configs', 'README.md', 'Makefile'];
const TEXT_FILE = /\.(ts|mts|mjs|js|md|toml|proto|json|txt|sh|py)$|(^|\/)Makefile$/;

// Spelled in pieces so that this file does not cite them itself.
const OUTSIDE_NOTES = [
  [new RegExp(['RAFT', 'NOTES'].join('-')), 'cites the raft notes kept outside the repository: cite docs/raft-rules.md'],
  [new RegExp(['SETUP', 'NOTES'].join('-')), 'cites the setup notes kept outside the repository: cite docs/setup.md'],
  [new RegExp(`(?<![A-Za-z])${'STY'}LE(?![a-z])`), 'cites the style notes kept outside the repository: cite docs/style.md'],
  [new RegExp(`(?<![A-Za-z])${'ARCHI'}TECTURE(?![a-z])`), 'cites the shared architecture draft: cite docs/architecture.md'],
  [new RegExp(`\\.\\./${'sha'}red\\b|/work/${'sha'}red\\b`), 'cites a file in the team folder outside the repository'],
];

/**
 * Citations left in files another branch is rewriting, to be fixed when it lands: file → how many
 * outside-note citations it may still hold. An entry that is no longer needed is reported, so
 * the list only shrinks.
 */
export const PENDING_ELSEWHERE = {};

const DOCS_PATH = /(?<![\w./-])docs\/[\w./-]*[\w-]/g;
const RULE_CITATION = /(?<![\w./-])(docs\/[\w./-]*\.md)\s+(?:([A-Z])(\d+)|§\s?(\d+))/g;
const MARKDOWN_LINK = /\]\(([^)\s]+)\)/g;

function listFiles(root, entry) {
  const path = join(root, entry);
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [entry];
  return readdirSync(path, { recursive: true })
    .map((name) => join(entry, String(name)))
    .filter((f) => !f.split(sep).includes('node_modules') && TEXT_FILE.test(f.split(sep).join('/')) && statSync(join(root, f)).isFile());
}

/** Whether `file` (under root) has the anchor a citation names. */
function hasAnchor(root, file, letter, number, section) {
  const text = readFileSync(join(root, file), 'utf8');
  if (section !== undefined) return new RegExp(`^#+\\s*${section}\\.\\s`, 'm').test(text);
  return new RegExp(`\\*\\*${letter}${number}\\.`).test(text);
}

/** The violations in the tree under `root` (default: the current directory), one line each. */
export function checkCitations(root = '.', scanned = SCANNED, pending = PENDING_ELSEWHERE) {
  const violations = [];
  const outsideCount = new Map();
  const files = scanned.flatMap((entry) => listFiles(root, entry)).sort();
  for (const file of files) {
    const posix = file.split(sep).join('/');
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const where = `${posix}:${i + 1}`;
      for (const [pattern, why] of OUTSIDE_NOTES) {
        if (!pattern.test(line)) continue;
        const seen = (outsideCount.get(posix) ?? 0) + 1;
        outsideCount.set(posix, seen);
        if (seen > (pending[posix] ?? 0)) violations.push(`${where}: ${why}: ${line.trim()}`);
      }
      for (const m of line.matchAll(DOCS_PATH)) {
        const cited = m[0].replace(/\.+$/, '');
        if (!existsSync(join(root, cited))) violations.push(`${where}: cites ${cited}, which does not exist`);
      }
      for (const m of line.matchAll(RULE_CITATION)) {
        const [, cited, letter, number, section] = m;
        if (!existsSync(join(root, cited))) continue; // reported above
        if (!hasAnchor(root, cited, letter, number, section)) {
          violations.push(`${where}: cites ${cited} ${section !== undefined ? `§${section}` : `${letter}${number}`}, which ${cited} does not have`);
        }
      }
      if (posix.endsWith('.md')) {
        for (const m of line.matchAll(MARKDOWN_LINK)) {
          const target = m[1].replace(/#.*$/, '');
          if (target === '' || /^[a-z]+:/i.test(target)) continue;
          const resolved = normalize(join(dirname(file), target));
          if (resolved.startsWith('..') || !existsSync(join(root, resolved))) {
            violations.push(`${where}: links to ${target}, which is not a file of the repository`);
          }
        }
      }
    });
  }
  for (const [file, allowed] of Object.entries(pending)) {
    if ((outsideCount.get(file) ?? 0) < allowed) violations.push(`${file}: no longer cites notes outside the repository: remove it from PENDING_ELSEWHERE (scripts/check-citations.mjs)`);
  }
  return violations;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = process.argv[2] ?? '.';
  const violations = checkCitations(root);
  for (const v of violations) console.error(v);
  if (violations.length > 0) {
    console.error(`${violations.length} citation(s) that do not resolve to a file of this repository (docs/style.md S7)`);
    process.exit(1);
  }
  console.log(`every citation in ${SCANNED.join(', ')} resolves inside the repository`);
}
