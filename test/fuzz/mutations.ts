// Mutators for the fuzz suite (test/fuzz/fuzz.test.ts):
//   - byte mutations (flip, set, truncate, insert, delete, duplicate) of valid encodings, which
//     mostly test framing and checksums;
//   - JSON structural mutations (replace, delete, nudge or duplicate one node of a document),
//     which keep the document parseable so the field validation behind the parser is reached;
//   - CRC32C reframing, so a mutated payload still passes its checksum and reaches the parser
//     proper (the formats are documented in src/wal/record.ts, src/engine/manifest.ts,
//     src/metasrv/catalog-store.ts; SSTs in ./sst-layout.ts).
import fc from 'fast-check';
import { crc32c } from '../../src/common/crc32c.js';

// ─── Bytes ────────────────────────────────────────────────────────────────────────────────────

export type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; length: number }
  | { op: 'duplicate'; at: number; length: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x22, 0x7b) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
);

export function applyMutation(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.byteLength;
  const at = n === 0 ? 0 : m.at % n;
  const b = Buffer.from(bytes);
  switch (m.op) {
    case 'flip':
      if (n > 0) b[at]! ^= 1 << m.bit;
      return b;
    case 'set':
      if (n > 0) b[at] = m.value;
      return b;
    case 'truncate':
      return b.subarray(0, at);
    case 'insert':
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
    case 'duplicate':
      return Buffer.concat([b.subarray(0, at + m.length), b.subarray(at)]);
  }
}

/** Valid bytes mutated 1–4 times. */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(valid, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
    .map(([bytes, ms]) => ms.reduce((acc, m) => applyMutation(acc, m), bytes));
}

/** Valid bytes, mutated 1–4 times; or (one case in five) random bytes. */
export function hostile(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.oneof({ weight: 4, arbitrary: mutated(valid) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) });
}

// ─── JSON structure ───────────────────────────────────────────────────────────────────────────

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = readonly (string | number)[];

/** Values that break assumptions: wrong types, boundaries of safe integers and u32, empty and odd strings. */
export const hostileJsonArb: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1, 0.5, -7.25, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 64, 1e308, -1e308),
  fc.constantFrom<Json>('', '0', '-1', '1e3', 'x', 'zz', 'ffff', '00', '\u0000', '\ud800', 'a'.repeat(300)),
  fc.constantFrom<Json>([], {}, [0], [null], [[]], [''], { a: 1 }, { __proto__: 1 } as unknown as Json),
  fc.integer(),
  fc.string({ maxLength: 8 }),
);

export interface JsonMutation {
  /** Which node (every node of the document, the root included, by pre-order index modulo the count). */
  readonly pick: number;
  readonly op: 'replace' | 'delete' | 'nudge' | 'duplicate';
  readonly value: Json;
  readonly delta: number;
}

export const jsonMutationArb: fc.Arbitrary<JsonMutation> = fc.record({
  pick: fc.nat(),
  op: fc.constantFrom('replace' as const, 'replace' as const, 'delete' as const, 'nudge' as const, 'duplicate' as const),
  value: hostileJsonArb,
  delta: fc.constantFrom(1, -1, 2 ** 32, 0.5),
});

function paths(value: Json, prefix: Path, out: Path[]): Path[] {
  out.push(prefix);
  if (Array.isArray(value)) for (const [i, v] of value.entries()) paths(v, [...prefix, i], out);
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  return out;
}

/** A mutated deep copy of `doc` (one node changed); the root replaced or cleared when picked. */
export function mutateJson(doc: Json, m: JsonMutation): Json {
  const root = structuredClone(doc);
  const all = paths(root, [], []);
  const path = all[m.pick % all.length]!;
  if (path.length === 0) return m.op === 'delete' ? {} : m.value;
  let parent = root as Record<string | number, Json>;
  for (const step of path.slice(0, -1)) parent = parent[step] as Record<string | number, Json>;
  const last = path[path.length - 1]!;
  const node = parent[last]!;
  switch (m.op) {
    case 'replace':
      parent[last] = m.value;
      break;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete parent[last];
      break;
    case 'nudge':
      parent[last] = typeof node === 'number' ? node + m.delta : typeof node === 'string' ? `${node}${m.delta}` : m.value;
      break;
    case 'duplicate':
      if (Array.isArray(node)) node.push(structuredClone(node[0] ?? m.value));
      else if (node !== null && typeof node === 'object') node[`x${m.delta}`] = m.value;
      else if (Array.isArray(parent)) parent.push(structuredClone(node));
      else parent[last] = [node, node];
      break;
  }
  return root;
}

/** A document mutated 1–3 times at the structure level (still valid JSON). */
export function mutatedJson(doc: fc.Arbitrary<Json>): fc.Arbitrary<Json> {
  return fc.tuple(doc, fc.array(jsonMutationArb, { minLength: 1, maxLength: 3 })).map(([d, ms]) => ms.reduce(mutateJson, d));
}

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

// ─── Checksums ────────────────────────────────────────────────────────────────────────────────

/**
 * `[version u8][crc32c(body) u32][length u32 if lengthField][body]`: the framing of WAL records
 * and catalogs (with length) and manifests (without), with the CRC recomputed over `body`.
 */
export function reframe(version: number, body: Uint8Array, lengthField: boolean): Uint8Array {
  const header = lengthField ? 9 : 5;
  const out = new Uint8Array(header + body.byteLength);
  const view = new DataView(out.buffer);
  out[0] = version;
  view.setUint32(1, crc32c(body));
  if (lengthField) view.setUint32(5, body.byteLength);
  out.set(body, header);
  return out;
}
