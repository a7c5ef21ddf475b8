// uint64 / int64 fields (src/rpc/proto.ts u64, i64, safeU64, safeI64): canonical decimal only, as
// proto-loader and the Batch codec write them, or safe-integer numbers (leftover item 3). Before,
// Number() read "1e3" as 1000, " 7" as 7, "0x10" as 16 and "" as 0: a write whose expect_version
// was "1e3" was proposed as a compare-and-set against version 1000.
import { expect } from 'chai';
import { ErrorCode, RegionDbError, isRegionDbError } from '../../src/common/errors.js';
import type { DatabaseHost } from '../../src/datanode/database-host.js';
import { DatabaseService } from '../../src/datanode/database-service.js';
import { decodeCommand } from '../../src/engine/index.js';
import { makeRegionId } from '../../src/engine/key.js';
import { i64, safeI64, safeU64, u64 } from '../../src/rpc/proto.js';
import { type ProtoValue, toProtoRow, toProtoSchema } from '../../src/rpc/values.js';
import { cpuSchema } from '../fixtures/schemas.js';

const MAX = Number.MAX_SAFE_INTEGER; // 2^53 - 1

describe('rpc: uint64 / int64 fields are canonical decimal or safe integers (u64, i64)', () => {
  // [value, as uint64, as int64]: undefined = refused.
  const cases: [unknown, number | undefined, number | undefined][] = [
    ['0', 0, 0],
    ['7', 7, 7],
    ['1000', 1000, 1000],
    [String(MAX), MAX, MAX],
    ['9007199254740992', undefined, undefined], // 2^53: not exact in a JS number
    ['18446744073709551615', undefined, undefined], // uint64 max
    ['-1', undefined, -1],
    [`-${MAX}`, undefined, -MAX],
    ['-9007199254740992', undefined, undefined],
    ['', undefined, undefined], // Number('') is 0
    [' 7', undefined, undefined],
    ['7 ', undefined, undefined],
    ['+7', undefined, undefined],
    ['1e3', undefined, undefined],
    ['1.0', undefined, undefined],
    ['0x10', undefined, undefined],
    ['0b1', undefined, undefined],
    ['007', undefined, undefined], // a leading zero: no decoder writes it
    ['-0', undefined, undefined], // no decoder writes it either
    ['-007', undefined, undefined],
    ['Infinity', undefined, undefined],
    ['abc', undefined, undefined],
    [7, 7, 7],
    [0, 0, 0],
    [-0, 0, 0], // a number: read as 0
    [-1, undefined, -1],
    [1.5, undefined, undefined],
    [2 ** 53, undefined, undefined],
    [Number.NaN, undefined, undefined],
    [null, undefined, undefined],
    [undefined, undefined, undefined],
    [7n, undefined, undefined],
    [{}, undefined, undefined],
  ];
  for (const [value, asU64, asI64] of cases) {
    const label = typeof value === 'string' ? JSON.stringify(value) : typeof value === 'bigint' ? `${value}n` : Object.is(value, -0) ? '-0 (number)' : String(value);
    it(`${label}: uint64 ${asU64 ?? 'refused'}, int64 ${asI64 ?? 'refused'}`, () => {
      expect(safeU64(value), 'safeU64').to.equal(asU64);
      expect(safeI64(value), 'safeI64').to.equal(asI64);
      if (asU64 === undefined) {
        expect(() => u64(value, 'f')).to.throw(RegionDbError, /^f: expected an unsigned integer below 2\^53 in decimal/);
        try {
          u64(value, 'f');
        } catch (err) {
          expect(isRegionDbError(err, ErrorCode.InvalidArgument)).to.equal(true);
        }
      } else {
        expect(Object.is(u64(value, 'f'), asU64), 'u64 (and -0 is 0)').to.equal(true);
      }
      if (asI64 === undefined) expect(() => i64(value, 'f')).to.throw(RegionDbError, /^f: expected an integer within ±2\^53 in decimal/);
      else expect(Object.is(i64(value, 'f'), asI64)).to.equal(true);
    });
  }
});

describe('datanode: a write or scan with a non-canonical number is refused INVALID_ARGUMENT (leftover item 3)', () => {
  const schema = cpuSchema({ name: 't', tableId: 1030 });
  const region = makeRegionId(schema.tableId, 0);
  const proposed: Uint8Array[] = [];
  const service = () => {
    const host = {
      nodeId: 1,
      metas: new Map(),
      config: { engine: { region_memtable_limit_bytes: 1 << 30, node_memtable_limit_bytes: 1 << 30 } },
      memtableBytes: () => 0,
      nodeMetrics: { countRowsWritten: () => {} },
      regionServer: {
        replica: (id: string) => (id === region ? { stateMachine: { memtableBytes: () => 0 } } : undefined),
        failure: () => undefined,
        propose: async (_id: string, command: Uint8Array) => {
          proposed.push(command);
          return { status: 'ok', version: 1 };
        },
      },
      metaCall: async () => ({ table: toProtoSchema(schema), routes: [] }),
    } as unknown as DatabaseHost;
    return new DatabaseService(host) as unknown as { write(req: unknown): Promise<unknown>; scan(req: unknown, write: (c: unknown) => Promise<void>): Promise<void> };
  };
  const row = (ts: unknown = '1') => {
    const p = toProtoRow(schema, { host: 'h', ts: 1, usage: 0.5 });
    for (const v of Object.values(p.values)) v.kind = Object.keys(v)[0] as ProtoValue['kind'];
    (p.values['ts'] as { timestamp_ms_value: unknown }).timestamp_ms_value = ts;
    return p;
  };
  async function refusal(p: Promise<unknown>): Promise<RegionDbError> {
    try {
      await p;
    } catch (err) {
      if (isRegionDbError(err)) return err;
      throw err;
    }
    throw new Error('expected a refusal');
  }

  it('expect_version "1e3" is refused, not proposed as a compare-and-set against version 1000; "1000" is proposed', async () => {
    proposed.length = 0;
    const s = service();
    const err = await refusal(s.write({ table: 't', rows: [row()], _expect_version: 'expect_version', expect_version: '1e3' }));
    expect(err.code, err.message).to.equal(ErrorCode.InvalidArgument);
    expect(err.message).to.match(/expect_version/);
    expect(proposed, 'nothing proposed').to.have.length(0);
    await s.write({ table: 't', rows: [row()], _expect_version: 'expect_version', expect_version: '1000' });
    expect(decodeCommand(proposed[0]!)).to.include({ kind: 'write', expectVersion: 1000 });
  });

  for (const [field, request] of [
    ['request_id " 7"', { client_id: 'c', request_id: ' 7' }],
    ['request_id "0x10"', { client_id: 'c', request_id: '0x10' }],
    ['a timestamp "1e3"', { rows: [row('1e3')] }],
    ['a timestamp "007"', { rows: [row('007')] }],
  ] as const) {
    it(`a write with ${field} is refused`, async () => {
      proposed.length = 0;
      const err = await refusal(service().write({ table: 't', rows: [row()], ...request }));
      expect(err.code, err.message).to.equal(ErrorCode.InvalidArgument);
      expect(proposed).to.have.length(0);
    });
  }

  it('a scan with start_ms "1e3" is refused (it was read as 1000)', async () => {
    const err = await refusal(service().scan({ table: 't', consistency: 'LINEARIZABLE', _start_ms: 'start_ms', start_ms: '1e3' }, async () => {}));
    expect(err.code, err.message).to.equal(ErrorCode.InvalidArgument);
    expect(err.message).to.match(/start_ms/);
  });
});
