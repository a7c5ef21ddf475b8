// The import layering of src/ (docs/architecture.md §13), checked: every relative import of
// every file under the source root is parsed, and the check fails on
//   - an import of a module (top-level folder of src/) that the importing module's layer may
//     not use: each module may import only modules of strictly lower layers (no upward and no
//     sideways imports), and a file may import other files of its own module;
//   - an import of a top-level folder the table does not know (a new module must be placed);
//   - an import cycle between files (type-only imports count: a cycle of types is still two
//     files that cannot be understood, moved or tested one without the other).
// Run by `make lint` and by test/unit/check-layers.test.ts (which also proves, on a small
// fixture tree, that the check catches an upward import and a cycle).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';

/**
 * The layers, lowest first. A module may import modules of lower layers only. Keep in step with
 * the table in docs/architecture.md §13.
 */
export const LAYERS = [
  ['common'],
  ['raft', 'object-store'],
  ['wal', 'engine'],
  ['rpc'],
  ['replication'],
  ['datanode', 'metasrv', 'client', 'check'],
  ['br', 'standby'],
  ['cmd'],
];

/**
 * Import cycles that are known and being removed. Each entry lists the files of the cycle
 * (relative to the source root). Nothing else may be added here; an entry whose cycle is gone is
 * reported, so the list only shrinks.
 */
export const KNOWN_CYCLES = [];

const IMPORT_PATTERN = /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[\w*\s{},$]*?\s+from\s+)?['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Strips comments (keeping line numbers) so commented-out or documented imports are not counted. */
function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`])\/\/[^\n]*/g, '$1');
}

/** The relative imports of one file: [{ specifier, line }]. */
export function parseImports(text) {
  const code = stripComments(text);
  const found = [];
  for (const m of code.matchAll(IMPORT_PATTERN)) {
    const specifier = m[1] ?? m[2];
    if (!specifier.startsWith('.')) continue;
    const line = code.slice(0, m.index).split('\n').length + (m[0].startsWith('\n') ? 1 : 0);
    found.push({ specifier, line });
  }
  return found;
}

/** Resolves an import written with a `.js` extension (NodeNext) to the .ts file under root. */
function resolveImport(root, fromFile, specifier) {
  const base = normalize(join(dirname(fromFile), specifier));
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')];
  for (const c of candidates) if (c.endsWith('.ts') && existsSync(join(root, c))) return c;
  return undefined;
}

const moduleOf = (file) => file.split(sep)[0];
const toPosix = (file) => file.split(sep).join('/');

/**
 * Checks the tree under `root` (default: src). Returns { violations: string[], cycles: string[][] }
 * where violations include one line per cycle not in `knownCycles`.
 */
export function checkLayers(root = 'src', { layers = LAYERS, knownCycles = KNOWN_CYCLES } = {}) {
  const layerOf = new Map();
  layers.forEach((modules, i) => {
    for (const m of modules) layerOf.set(m, i);
  });
  const files = readdirSync(root, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const violations = [];
  const graph = new Map();
  for (const file of files) {
    const edges = new Set();
    graph.set(file, edges);
    const from = moduleOf(file);
    const fromLayer = layerOf.get(from);
    if (file.includes(sep) && fromLayer === undefined) {
      violations.push(`${toPosix(join(root, file))}: module '${from}' has no layer in the table (scripts/check-layers.mjs LAYERS, docs/architecture.md §13)`);
    }
    for (const { specifier, line } of parseImports(readFileSync(join(root, file), 'utf8'))) {
      const where = `${toPosix(join(root, file))}:${line}`;
      const target = resolveImport(root, file, specifier);
      if (target === undefined) {
        const outside = normalize(join(dirname(file), specifier)).startsWith('..');
        violations.push(`${where}: import '${specifier}' ${outside ? `leaves ${root}/` : 'does not resolve to a .ts file'}`);
        continue;
      }
      edges.add(target);
      const to = moduleOf(target);
      if (to === from || fromLayer === undefined) continue;
      const toLayer = layerOf.get(to);
      if (toLayer === undefined) {
        violations.push(`${where}: imports module '${to}', which has no layer in the table`);
      } else if (toLayer >= fromLayer) {
        const how = toLayer > fromLayer ? 'upward' : 'sideways';
        violations.push(`${where}: ${from} (layer ${fromLayer}) imports ${to} (layer ${toLayer}), ${how}: '${specifier}'`);
      }
    }
  }
  const known = new Set(knownCycles.map((c) => [...c].sort().join(' ')));
  const cycles = findCycles(graph);
  const seen = new Set();
  for (const cycle of cycles) {
    const key = [...new Set(cycle)].map(toPosix).sort().join(' ');
    seen.add(key);
    if (known.has(key)) continue;
    violations.push(`import cycle: ${cycle.map((f) => toPosix(join(root, f))).join(' -> ')}`);
  }
  for (const key of known) {
    if (!seen.has(key)) violations.push(`known cycle ${key.split(' ').join(' <-> ')} is gone: remove it from KNOWN_CYCLES (scripts/check-layers.mjs)`);
  }
  return { violations, cycles: cycles.map((c) => c.map(toPosix)) };
}

/**
 * One cycle per strongly connected component of more than one file (or a file importing
 * itself), found with Tarjan's algorithm (iterative, so deep trees cannot overflow the stack);
 * each reported as a path a -> b -> ... -> a through the component.
 */
export function findCycles(graph) {
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const components = [];
  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work = [[start, [...(graph.get(start) ?? [])], 0]];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const [node, next] = frame;
      if (frame[2] < next.length) {
        const child = next[frame[2]++];
        if (!index.has(child)) {
          index.set(child, counter);
          low.set(child, counter++);
          stack.push(child);
          onStack.add(child);
          work.push([child, [...(graph.get(child) ?? [])], 0]);
        } else if (onStack.has(child)) {
          low.set(node, Math.min(low.get(node), index.get(child)));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(node)));
      }
      if (low.get(node) === index.get(node)) {
        const component = [];
        let member;
        do {
          member = stack.pop();
          onStack.delete(member);
          component.push(member);
        } while (member !== node);
        if (component.length > 1 || graph.get(node)?.has(node)) components.push(component);
      }
    }
  }
  return components.map((component) => cycleThrough(graph, new Set(component)));
}

/** A shortest cycle through the component's first (sorted) file, by breadth-first search. */
function cycleThrough(graph, members) {
  const start = [...members].sort()[0];
  const previous = new Map([[start, undefined]]);
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head];
    for (const next of graph.get(node) ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let at = node; at !== start; at = previous.get(at)) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = process.argv[2] ?? 'src';
  const { violations } = checkLayers(root);
  for (const v of violations) console.error(v);
  if (violations.length > 0) {
    console.error(`${violations.length} layering violation(s) in ${root}/ (the layers: docs/architecture.md §13)`);
    process.exit(1);
  }
  console.log(`${root}/ follows the layering of docs/architecture.md §13, no import cycles`);
}
