import { expect } from 'chai';
import { type Case, type Codec, agree, cases, raftCase } from '../../bench/codec-bench.js';

// The codec benchmark (bench/codec-bench.ts) compares our hand-written codecs with proto-loader's
// runtime codec and ts-proto's generated one: it must time the same work for each, so every
// codec's bytes must decode, by every codec, to the same message.
describe('codec benchmark: the codecs compared do the same work', () => {
  for (const c of cases()) {
    it(`${c.name}: every codec decodes every codec's bytes to the same message`, () => {
      const identical = agree(c);
      // The hand-written and the generated static codec write exactly the same bytes.
      expect(identical.some((group) => group.includes('hand') && group.includes('ts-proto'))).to.equal(true);
    });
  }

  const tampered = (c: Case, name: string, change: (codec: Codec) => Partial<Codec>): Case => ({
    name: c.name,
    codecs: c.codecs.map((codec) => (codec.name === name ? { ...codec, ...change(codec) } : codec)),
  });

  it('fails when one encoder writes less (an entry dropped)', () => {
    const c = raftCase(4);
    const bad = tampered(c, 'ts-proto', (codec) => ({
      encode: (o) => {
        const object = o as { envelopes: { message: { entries: unknown[] } }[] };
        const fewer = { ...object, envelopes: object.envelopes.map((e) => ({ ...e, message: { ...e.message, entries: e.message.entries.slice(1) } })) };
        return codec.encode(fewer);
      },
    }));
    expect(() => agree(bad)).to.throw(/decodes ts-proto's bytes to a different message/);
  });

  it('fails when one decoder reads differently (a row lost)', () => {
    const c = cases().find((x) => x.name === 'Batch WriteRequest, 100 rows')!;
    const bad = tampered(c, 'runtime', (codec) => ({
      decode: (b) => {
        const d = codec.decode(b) as { write: { rows: unknown[] } };
        d.write.rows.pop();
        return d;
      },
    }));
    expect(() => agree(bad)).to.throw(/runtime decodes hand's bytes to a different message/);
  });
});
