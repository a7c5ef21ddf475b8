// An SST taken apart into its sections (data blocks, block index, properties, footer; the layout
// is documented at the top of src/engine/sst/format.ts) and put back together with every
// CRC32C recomputed, so a structural mutation (a block's entry fields, an index handle, a
// property, a footer offset) reaches the reader's parsers instead of stopping at a checksum.
// Written independently of the reader on purpose: it must not share the bugs it looks for.
import fc from 'fast-check';
import { crc32c } from '../../src/common/crc32c.js';
import { type JsonMutation, type Mutation, applyMutation, jsonMutationArb, mutateJson, mutationArb, utf8 } from './mutations.js';

const FOOTER_BYTES = 48;

interface Handle {
  offset: number;
  length: number;
  firstKey: Uint8Array;
  lastKey: Uint8Array;
}

export interface SstLayout {
  /** Data blocks (payloads without their CRC) with their index handles. */
  blocks: { payload: Uint8Array; handle: Handle }[];
  /** The block count written in the index (normally blocks.length). */
  indexCount: number;
  props: Uint8Array;
  /** indexOffset, indexLength, propsOffset, propsLength, version (undefined: computed). */
  footer: (number | bigint | undefined)[];
  magic: Uint8Array;
}

class VarintReader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.byteLength) throw new Error('sst-layout: varint past the end');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 0x80;
    }
  }
  bytes(n: number): Uint8Array {
    if (this.pos + n > this.buf.byteLength) throw new Error('sst-layout: bytes past the end');
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function varint(v: number): Uint8Array {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0);
  return b;
}

const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/** A data block's payload (no prefix compression: every key whole), for hand-made blocks. */
export function encodeBlock(entries: readonly { key: Uint8Array; version: number; value: Uint8Array | null }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    parts.push(varint(0), varint(e.key.byteLength), e.key, varint(e.version));
    parts.push(e.value === null ? varint(0) : concat([varint(e.value.byteLength + 1), e.value]));
  }
  return concat(parts);
}

/** Splits a valid SST (built by buildSst). */
export function splitSst(bytes: Uint8Array): SstLayout {
  const footer = bytes.subarray(bytes.byteLength - FOOTER_BYTES);
  const dv = new DataView(footer.buffer, footer.byteOffset, FOOTER_BYTES);
  const [indexOffset, indexLength, propsOffset, propsLength] = [0, 8, 16, 24].map((at) => Number(dv.getBigUint64(at))) as [number, number, number, number];
  const r = new VarintReader(bytes.subarray(indexOffset, indexOffset + indexLength));
  const count = r.varint();
  const blocks: SstLayout['blocks'] = [];
  for (let i = 0; i < count; i++) {
    const offset = r.varint();
    const length = r.varint();
    const firstKey = r.bytes(r.varint());
    const lastKey = r.bytes(r.varint());
    blocks.push({ payload: bytes.slice(offset, offset + length), handle: { offset, length, firstKey, lastKey } });
  }
  return { blocks, indexCount: count, props: bytes.slice(propsOffset, propsOffset + propsLength), footer: [], magic: footer.slice(40) };
}

/** The SST's bytes with every CRC32C recomputed; `retile` recomputes block offsets and lengths first. */
export function assembleSst(layout: SstLayout, retile: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const b of layout.blocks) {
    if (retile) {
      b.handle.offset = at;
      b.handle.length = b.payload.byteLength;
    }
    parts.push(b.payload, u32(crc32c(b.payload)));
    at += b.payload.byteLength + 4;
  }
  const indexParts = [varint(layout.indexCount)];
  for (const { handle: h } of layout.blocks) {
    indexParts.push(varint(h.offset), varint(h.length), varint(h.firstKey.byteLength), h.firstKey, varint(h.lastKey.byteLength), h.lastKey);
  }
  const index = concat(indexParts);
  const indexOffset = at;
  parts.push(index, u32(crc32c(index)));
  at += index.byteLength + 4;
  const propsOffset = at;
  parts.push(layout.props, u32(crc32c(layout.props)));
  const footer = new Uint8Array(FOOTER_BYTES);
  const dv = new DataView(footer.buffer);
  const fields = [indexOffset, index.byteLength, propsOffset, layout.props.byteLength];
  for (let i = 0; i < 4; i++) dv.setBigUint64(i * 8, BigInt.asUintN(64, BigInt(layout.footer[i] ?? fields[i]!)));
  dv.setUint32(32, Number(layout.footer[4] ?? 1) >>> 0);
  dv.setUint32(36, crc32c(footer.subarray(0, 36)));
  footer.set(layout.magic.subarray(0, 8), 40);
  parts.push(footer);
  return concat(parts);
}

interface VarintSpan {
  start: number;
  end: number;
  value: number;
  /** A length (shared prefix, key suffix, value tag), not the version. */
  isLength: boolean;
}

/** The varint fields of a block (shared length, key length, version, value tag), up to the first malformed entry. */
function blockVarints(payload: Uint8Array): VarintSpan[] {
  const r = new VarintReader(payload);
  const spans: VarintSpan[] = [];
  const field = (isLength: boolean): number => {
    const start = r.pos;
    const value = r.varint();
    spans.push({ start, end: r.pos, value, isLength });
    return value;
  };
  try {
    while (r.pos < payload.byteLength) {
      field(true); // shared
      r.bytes(field(true)); // key suffix
      field(false); // version
      const tag = field(true);
      if (tag > 0) r.bytes(tag - 1);
    }
  } catch {
    // a mutated block: the spans found so far are enough to mutate
  }
  return spans;
}

/** Numbers at the edges of what each field may hold. */
const boundaryArb = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 47, 48, 127, 128, 255, 256, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 56),
  fc.integer({ min: 0, max: 4096 }),
);

export type SstMutation =
  | { kind: 'block-bytes'; block: number; m: Mutation }
  | { kind: 'block-field'; block: number; field: number; value: number }
  | { kind: 'block-length'; block: number; field: number; fromEnd: boolean; delta: number }
  | { kind: 'index-field'; block: number; field: 'offset' | 'length'; value: number; delta: boolean }
  | { kind: 'index-key'; block: number; which: 'firstKey' | 'lastKey'; m: Mutation }
  | { kind: 'index-count'; value: number }
  | { kind: 'props'; m: JsonMutation }
  | { kind: 'footer-field'; field: number; value: number; delta: boolean }
  | { kind: 'drop-block' | 'duplicate-block'; block: number }
  | { kind: 'swap-blocks'; block: number; other: number };

export const sstMutationArb: fc.Arbitrary<SstMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('block-bytes' as const), block: fc.nat(), m: mutationArb }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('block-field' as const), block: fc.nat(), field: fc.nat(), value: boundaryArb }) },
  // A length off by a little, often in a block's last entry (where running past the end is not caught by the next entry).
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('block-length' as const), block: fc.nat(), field: fc.nat({ max: 3 }), fromEnd: fc.boolean(), delta: fc.integer({ min: -2, max: 8 }) }) },
  fc.record({ kind: fc.constant('index-field' as const), block: fc.nat(), field: fc.constantFrom('offset' as const, 'length' as const), value: boundaryArb, delta: fc.boolean() }),
  fc.record({ kind: fc.constant('index-key' as const), block: fc.nat(), which: fc.constantFrom('firstKey' as const, 'lastKey' as const), m: mutationArb }),
  fc.record({ kind: fc.constant('index-count' as const), value: boundaryArb }),
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('props' as const), m: jsonMutationArb }) },
  fc.record({ kind: fc.constant('footer-field' as const), field: fc.integer({ min: 0, max: 4 }), value: boundaryArb, delta: fc.boolean() }),
  fc.record({ kind: fc.constantFrom('drop-block' as const, 'duplicate-block' as const), block: fc.nat() }),
  fc.record({ kind: fc.constant('swap-blocks' as const), block: fc.nat(), other: fc.nat() }),
);

/** Applies one mutation to a layout in place; returns whether blocks must be retiled (offsets and lengths recomputed). */
export function mutateSst(layout: SstLayout, original: Uint8Array, m: SstMutation): boolean {
  const n = layout.blocks.length;
  const pick = (i: number) => layout.blocks[i % n]!;
  switch (m.kind) {
    case 'block-bytes': {
      const b = pick(m.block);
      b.payload = applyMutation(b.payload, m.m);
      return true;
    }
    case 'block-field': {
      const b = pick(m.block);
      const spans = blockVarints(b.payload);
      if (spans.length === 0) return true;
      const { start, end } = spans[m.field % spans.length]!;
      b.payload = concat([b.payload.subarray(0, start), varint(m.value), b.payload.subarray(end)]);
      return true;
    }
    case 'block-length': {
      const b = pick(m.block);
      const lengths = blockVarints(b.payload).filter((s) => s.isLength);
      if (lengths.length === 0) return true;
      const i = m.field % lengths.length;
      const { start, end, value } = lengths[m.fromEnd ? lengths.length - 1 - i : i]!;
      b.payload = concat([b.payload.subarray(0, start), varint(Math.max(0, value + m.delta)), b.payload.subarray(end)]);
      return true;
    }
    case 'index-field': {
      const h = pick(m.block).handle;
      h[m.field] = m.delta ? Math.max(0, h[m.field] + (m.value % 9) - 4) : m.value;
      return false;
    }
    case 'index-key': {
      const h = pick(m.block).handle;
      h[m.which] = applyMutation(h[m.which], m.m);
      return false;
    }
    case 'index-count':
      layout.indexCount = m.value;
      return false;
    case 'props':
      layout.props = utf8(JSON.stringify(mutateJson(JSON.parse(Buffer.from(layout.props).toString('utf8')), m.m)));
      return false;
    case 'footer-field': {
      const dv = new DataView(original.buffer, original.byteOffset + original.byteLength - FOOTER_BYTES, FOOTER_BYTES);
      const current = m.field < 4 ? Number(dv.getBigUint64(m.field * 8)) : dv.getUint32(32);
      layout.footer[m.field] = m.delta ? Math.max(0, current + (m.value % 9) - 4) : m.value;
      return false;
    }
    case 'drop-block':
      if (n > 1) layout.blocks.splice(m.block % n, 1);
      layout.indexCount = layout.blocks.length;
      return true;
    case 'duplicate-block': {
      const b = pick(m.block);
      layout.blocks.splice((m.block % n) + 1, 0, { payload: b.payload.slice(), handle: { ...b.handle } });
      layout.indexCount = layout.blocks.length;
      return true;
    }
    case 'swap-blocks': {
      const i = m.block % n;
      const j = m.other % n;
      [layout.blocks[i], layout.blocks[j]] = [layout.blocks[j]!, layout.blocks[i]!];
      return true;
    }
  }
}

/** A valid SST with 1–3 structural mutations, every checksum valid. */
export function structurallyMutatedSst(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.array(sstMutationArb, { minLength: 1, maxLength: 3 }).map((ms) => {
    const layout = splitSst(valid);
    let retile = false;
    for (const m of ms) retile = mutateSst(layout, valid, m) || retile;
    return assembleSst(layout, retile);
  });
}
