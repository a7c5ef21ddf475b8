// Table schemas and row validation (docs/architecture.md §2). Values are JS-safe: int64 and
// timestamp_ms columns hold integers with |v| < 2^53 (larger values are rejected, not rounded).
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';

export type ColumnType = 'string' | 'int64' | 'float64' | 'bool' | 'timestamp_ms';
export type Semantic = 'tag' | 'field' | 'timestamp';
export type Value = string | number | boolean | null;
export type Row = Record<string, Value>;

export interface ColumnSchema {
  readonly name: string;
  readonly type: ColumnType;
  readonly semantic: Semantic;
}

export interface TableSchema {
  readonly name: string;
  readonly tableId: number;
  readonly columns: readonly ColumnSchema[];
  readonly regionCount: number;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const COLUMN_TYPES: readonly ColumnType[] = ['string', 'int64', 'float64', 'bool', 'timestamp_ms'];
const SEMANTICS: readonly Semantic[] = ['tag', 'field', 'timestamp'];

/**
 * Names every JavaScript object inherits (constructor, __proto__, toString, ...): rows and the
 * catalog are plain objects, so a column of such a name reads the inherited member where the
 * value is absent (every write that omits it is refused; `__proto__` can never be set), and a
 * table of such a name is not an own catalog entry. They are refused as names.
 */
function inheritedName(name: string): boolean {
  return name in Object.prototype;
}

function invalid(message: string): RegionDbError {
  return new RegionDbError(ErrorCode.InvalidArgument, message);
}

export function validateSchema(schema: Omit<TableSchema, 'tableId'>): void {
  if (!NAME.test(schema.name)) throw invalid(`table name ${JSON.stringify(schema.name)} must match ${NAME.source}`);
  if (inheritedName(schema.name)) throw invalid(`table name ${JSON.stringify(schema.name)} is a name every JavaScript object has; choose another`);
  if (!Number.isInteger(schema.regionCount) || schema.regionCount < 1 || schema.regionCount > limits.regionsPerTableMax) {
    throw invalid(`table ${schema.name}: region count must be 1..${limits.regionsPerTableMax}, got ${schema.regionCount}`);
  }
  if (schema.columns.length === 0 || schema.columns.length > limits.columnsPerTableMax) {
    throw invalid(`table ${schema.name}: needs 1..${limits.columnsPerTableMax} columns, got ${schema.columns.length}`);
  }
  const seen = new Set<string>();
  let timestamps = 0;
  for (const c of schema.columns) {
    if (!NAME.test(c.name)) throw invalid(`table ${schema.name}: column name ${JSON.stringify(c.name)} must match ${NAME.source}`);
    if (inheritedName(c.name)) throw invalid(`table ${schema.name}: column name ${JSON.stringify(c.name)} is a name every JavaScript object has; choose another`);
    if (seen.has(c.name)) throw invalid(`table ${schema.name}: duplicate column ${c.name}`);
    seen.add(c.name);
    if (!COLUMN_TYPES.includes(c.type)) throw invalid(`table ${schema.name}: column ${c.name} has unknown type ${JSON.stringify(c.type)}`);
    if (!SEMANTICS.includes(c.semantic)) throw invalid(`table ${schema.name}: column ${c.name} has unknown semantic ${JSON.stringify(c.semantic)}`);
    if (c.semantic === 'timestamp') {
      timestamps++;
      if (c.type !== 'timestamp_ms') throw invalid(`table ${schema.name}: TIMESTAMP column ${c.name} must have type timestamp_ms`);
    }
    if (c.semantic === 'tag' && c.type === 'float64') throw invalid(`table ${schema.name}: TAG column ${c.name} cannot be float64`);
  }
  if (timestamps !== 1) throw invalid(`table ${schema.name}: needs exactly one TIMESTAMP column, has ${timestamps}`);
}

export function tagColumns(schema: TableSchema): ColumnSchema[] {
  return schema.columns.filter((c) => c.semantic === 'tag');
}

export function fieldColumns(schema: TableSchema): ColumnSchema[] {
  return schema.columns.filter((c) => c.semantic === 'field');
}

export function timestampColumn(schema: TableSchema): ColumnSchema {
  return schema.columns.find((c) => c.semantic === 'timestamp')!;
}

function refuse(schema: TableSchema, column: ColumnSchema, why: string): RegionDbError {
  return invalid(`table ${schema.name}, column ${column.name} (${column.type}): ${why}`);
}

/** Checks one value against its column; returns it normalized. */
export function checkValue(schema: TableSchema, column: ColumnSchema, value: unknown): Value {
  // The message's subject is built only for an error, and no closure is made for it: this runs
  // for every value of every row (with checkKeyBytes' one per row, a quarter of a writing client's CPU
  // under tsx, whose keepNames names each one as it is made).
  if (value === null || value === undefined) {
    if (column.semantic === 'timestamp') throw refuse(schema, column, 'the timestamp is required');
    return null;
  }
  switch (column.type) {
    case 'string':
      if (typeof value !== 'string') throw refuse(schema, column, `expected a string, got ${typeof value}`);
      // A code unit is at most 3 UTF-8 bytes: a string of at most a third of the limit in units fits.
      if (value.length * 3 > limits.stringValueBytesMax && Buffer.byteLength(value) > limits.stringValueBytesMax) {
        throw refuse(schema, column, `string of ${Buffer.byteLength(value)} bytes exceeds ${limits.stringValueBytesMax}`);
      }
      return value;
    case 'int64':
    case 'timestamp_ms':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        throw refuse(schema, column, `expected an integer within ±2^53, got ${JSON.stringify(value)}`);
      }
      return value === 0 ? 0 : value; // -0 → 0, as the JSON commands of format version 1 stored it
    case 'float64':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw refuse(schema, column, `expected a finite number, got ${JSON.stringify(value)}`);
      return value === 0 ? 0 : value;
    case 'bool':
      if (typeof value !== 'boolean') throw refuse(schema, column, `expected a boolean, got ${JSON.stringify(value)}`);
      return value;
  }
}

/** Validates a full row (write): unknown columns rejected, timestamp required, tags/fields optional (NULL). */
export function validateRow(schema: TableSchema, row: Row): Row {
  const out: Row = {};
  const columns = schema.columns;
  for (const name in row) {
    if (!Object.hasOwn(row, name)) continue;
    let known = false;
    for (let i = 0; i < columns.length && !known; i++) known = columns[i]!.name === name;
    if (!known) throw invalid(`table ${schema.name}: unknown column ${name}`);
  }
  for (const c of columns) out[c.name] = checkValue(schema, c, row[c.name]);
  checkKeyBytes(schema, out);
  return out;
}

/** Validates a primary key (get/delete): tags and timestamp only. */
export function validateKey(schema: TableSchema, key: Row): Row {
  const out: Row = {};
  for (const name of Object.keys(key)) {
    const c = schema.columns.find((col) => col.name === name);
    if (!c) throw invalid(`table ${schema.name}: unknown column ${name}`);
    if (c.semantic === 'field') throw invalid(`table ${schema.name}: column ${name} is a FIELD, not part of the primary key`);
  }
  for (const c of schema.columns) if (c.semantic !== 'field') out[c.name] = checkValue(schema, c, key[c.name]);
  checkKeyBytes(schema, out);
  return out;
}

/** The encoded primary key's length (tags + timestamp, key.ts), exact or as a bound from above. */
function keyBytes(schema: TableSchema, row: Row, exact: boolean): number {
  let bytes = 8;
  for (const c of schema.columns) {
    if (c.semantic !== 'tag') continue;
    const v = row[c.name];
    bytes += v === null || v === undefined ? 1 : typeof v === 'string' ? (exact ? Buffer.byteLength(v) : v.length * 3) + 3 : 9;
  }
  return bytes;
}

/** The encoded primary key (tags + timestamp, key.ts) stays within limits.keyBytesMax. */
function checkKeyBytes(schema: TableSchema, row: Row): void {
  // First a bound (a code unit is at most 3 UTF-8 bytes); the exact count only when it could exceed.
  if (keyBytes(schema, row, false) <= limits.keyBytesMax) return;
  const bytes = keyBytes(schema, row, true);
  if (bytes > limits.keyBytesMax) throw invalid(`table ${schema.name}: primary key of ${bytes} bytes exceeds ${limits.keyBytesMax} (tags + timestamp)`);
}
