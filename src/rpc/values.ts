// Cell values between protobuf (regiondb.v1.Value, oneofs as `kind`) and the engine.
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { ColumnSchema, ColumnType, Row, TableSchema, Value } from '../engine/schema.js';
import type { ColumnSchema__Output, ColumnType__Output, Row__Output, Semantic__Output, TableSchema__Output, Value__Output } from './generated/index.js';
import { i64, safeI64 } from './proto.js';

// The wire shapes are the generated types of src/rpc/generated (proto-loader's objects under the
// options of src/rpc/proto.ts); the names below are kept for the code that reads them.
export type ProtoValue = Value__Output;
export type ProtoRow = Row__Output;
export type ProtoColumn = ColumnSchema__Output;
export type ProtoTableSchema = TableSchema__Output;

/**
 * A value from its proto form; a refusal names it `where`, or `where.name` when `name` is given
 * — composed only for a refusal (fromProtoRow reads every value of every row through here).
 */
export function fromProtoValue(v: ProtoValue | undefined, where: string, name?: string): Value {
  if (!v?.kind) return null;
  switch (v.kind) {
    case 'string_value':
      return v.string_value ?? '';
    case 'int64_value':
      return int64(v.int64_value, where, name);
    case 'timestamp_ms_value':
      return int64(v.timestamp_ms_value, where, name);
    case 'float64_value':
      return v.float64_value ?? 0;
    case 'bool_value':
      return v.bool_value === true;
    case 'null_value':
      return null;
    default:
      throw new RegionDbError(ErrorCode.InvalidArgument, `${fieldName(where, name)}: unknown value kind ${JSON.stringify(v.kind)}`);
  }
}

function fieldName(where: string, name: string | undefined): string {
  return name === undefined ? where : `${where}.${name}`;
}

/** i64 with the field's name made only for a refusal. */
function int64(value: unknown, where: string, name: string | undefined): number {
  return safeI64(value) ?? i64(value, fieldName(where, name));
}

export function fromProtoRow(row: ProtoRow | undefined | null, where: string): Row {
  if (!row || typeof row !== 'object' || !row.values || typeof row.values !== 'object') {
    throw new RegionDbError(ErrorCode.InvalidArgument, `${where}: expected a row with values`);
  }
  const out: Row = {};
  const values = row.values;
  for (const name in values) {
    if (!Object.hasOwn(values, name)) continue;
    out[name] = fromProtoValue(values[name], where, name);
  }
  return out;
}

export function toProtoValue(value: Value, type: ColumnType): ProtoValue {
  if (value === null) return { null_value: true };
  switch (type) {
    case 'string':
      return { string_value: String(value) };
    case 'int64':
      return { int64_value: String(value) };
    case 'timestamp_ms':
      return { timestamp_ms_value: String(value) };
    case 'float64':
      return { float64_value: value as number };
    case 'bool':
      return { bool_value: value as boolean };
  }
}

export function toProtoRow(schema: TableSchema, row: Row): ProtoRow {
  const values: Record<string, ProtoValue> = {};
  for (const c of schema.columns) if (c.name in row) values[c.name] = toProtoValue(row[c.name] ?? null, c.type);
  return { values };
}

/** A plain value from the CLI or JSON → the column's type (e.g. "42" for an int64). */
export function coerceValue(column: ColumnSchema, raw: unknown): Value {
  if (raw === null || raw === undefined) return null;
  if (column.type === 'string') return String(raw);
  if (column.type === 'bool') return raw === true || raw === 'true' ? true : raw === false || raw === 'false' ? false : (raw as Value);
  if (typeof raw === 'string' && raw.trim() !== '' && !Number.isNaN(Number(raw))) return Number(raw);
  return raw as Value;
}

const TYPE_TO_PROTO: Record<ColumnType, ColumnType__Output> = {
  string: 'STRING',
  int64: 'INT64',
  float64: 'FLOAT64',
  bool: 'BOOL',
  timestamp_ms: 'TIMESTAMP_MS',
};
const PROTO_TO_TYPE = Object.fromEntries(Object.entries(TYPE_TO_PROTO).map(([k, v]) => [v, k])) as Record<string, ColumnType>;
const SEMANTIC_TO_PROTO: Record<ColumnSchema['semantic'], Semantic__Output> = { tag: 'TAG', field: 'FIELD', timestamp: 'TIMESTAMP' };

export function toProtoSchema(schema: TableSchema): ProtoTableSchema {
  return {
    name: schema.name,
    table_id: schema.tableId,
    columns: schema.columns.map((c) => ({ name: c.name, type: TYPE_TO_PROTO[c.type], semantic: SEMANTIC_TO_PROTO[c.semantic] })),
    region_count: schema.regionCount,
  };
}

export function fromProtoColumns(columns: ProtoColumn[] | undefined): ColumnSchema[] {
  if (!Array.isArray(columns)) throw new RegionDbError(ErrorCode.InvalidArgument, 'columns: expected a list');
  return columns.map((c, i) => {
    const type = PROTO_TO_TYPE[c.type];
    const semantic = String(c.semantic).toLowerCase();
    if (!type) throw new RegionDbError(ErrorCode.InvalidArgument, `columns[${i}] (${c.name}): unknown type ${c.type}`);
    if (semantic !== 'tag' && semantic !== 'field' && semantic !== 'timestamp') {
      throw new RegionDbError(ErrorCode.InvalidArgument, `columns[${i}] (${c.name}): unknown semantic ${c.semantic}`);
    }
    return { name: String(c.name), type, semantic };
  });
}

export function fromProtoSchema(s: ProtoTableSchema | null | undefined): TableSchema {
  if (!s) throw new RegionDbError(ErrorCode.InvalidArgument, 'table: a table schema is required');
  return { name: s.name, tableId: Number(s.table_id), columns: fromProtoColumns(s.columns), regionCount: Number(s.region_count) };
}
