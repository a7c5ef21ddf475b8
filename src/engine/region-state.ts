// The replicated state of one region: memtable + client dedup table. apply() is deterministic:
// every replica applying the same commands at the same indexes ends in the same state.
//
// Dedup (Raft thesis §6.3, RAFT-NOTES 19): per client, the results of its recent request ids.
// A retry of an applied request returns the recorded result without applying again; requests
// may apply out of order (a client has several in flight). The table is part of the snapshot
// and bounded: per client the lowest ids are evicted (a retry older than the window is refused,
// never re-applied), and the client applied least recently is dropped first — both computed
// identically on every replica.
import { assert } from '../common/assert.js';
import { crc32c } from '../common/crc32c.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { StateMachine } from '../datanode/types.js';
import { type Command, decodeCommand } from './command.js';
import { encodePrimaryKey, valueEquals } from './key.js';
import { type MemEntry, Memtable } from './memtable.js';
import { type Row, type TableSchema, type Value, fieldColumns, tagColumns, timestampColumn } from './schema.js';

export type ApplyResult =
  | { readonly status: 'ok'; readonly version: number; readonly rows: number }
  | { readonly status: 'condition-failed'; readonly currentVersion: number }
  | { readonly status: 'request-too-old'; readonly oldestKnown: number };

interface DedupRecord {
  /** Recent request ids of this client and their results (at most dedupRequestsPerClientMax). */
  results: Map<number, ApplyResult>;
  /** Request ids below this were evicted: their outcome is no longer known. */
  evictedBelow: number;
}

export interface ScanOptions {
  /** Inclusive lower bound. */
  readonly startMs?: number;
  /** Exclusive upper bound. */
  readonly endMs?: number;
  readonly tagEquals?: Readonly<Record<string, Value>>;
  readonly limit?: number;
}

export interface VersionedRow {
  readonly row: Row;
  readonly version: number;
}

const SNAPSHOT_VERSION = 1;

export class RegionState implements StateMachine<ApplyResult> {
  memtable = new Memtable();
  private readonly dedup = new Map<string, DedupRecord>();
  appliedIndex = 0;
  private readonly tags;
  private readonly fields;
  private readonly ts;

  constructor(readonly schema: TableSchema) {
    this.tags = tagColumns(schema);
    this.fields = fieldColumns(schema);
    this.ts = timestampColumn(schema);
  }

  apply(index: number, data: Uint8Array): ApplyResult {
    assert(index > this.appliedIndex, `apply ${index} after ${this.appliedIndex}`);
    this.appliedIndex = index;
    const cmd = decodeCommand(data);
    const record = this.dedup.get(cmd.clientId);
    const previous = record?.results.get(cmd.requestId);
    if (previous) return previous; // a retry: applied once already (RAFT-NOTES 19)
    if (record && cmd.requestId < record.evictedBelow) {
      // Too old to know whether it was applied; applying again could undo a later write.
      return { status: 'request-too-old', oldestKnown: record.evictedBelow };
    }
    const result = this.execute(index, cmd);
    this.remember(cmd.clientId, cmd.requestId, result);
    return result;
  }

  private execute(index: number, cmd: Command): ApplyResult {
    if (cmd.kind === 'write') {
      const rows = cmd.rows.map((values) => this.rowFromValues(values));
      if (cmd.expectAbsent || cmd.expectVersion !== undefined) {
        assert(rows.length === 1, 'conditional writes carry exactly one row (checked by the service)');
        const current = this.memtable.get(encodePrimaryKey(this.schema, rows[0]!));
        const currentVersion = current && current.op === 'put' ? current.version : 0;
        if (cmd.expectAbsent && currentVersion !== 0) return { status: 'condition-failed', currentVersion };
        if (cmd.expectVersion !== undefined && cmd.expectVersion !== currentVersion) {
          return { status: 'condition-failed', currentVersion };
        }
      }
      for (const row of rows) this.memtable.put(this.entryOf(row, index, 'put'));
      return { status: 'ok', version: index, rows: rows.length };
    }
    for (const values of cmd.keys) {
      const row: Row = {};
      this.tags.forEach((c, i) => {
        row[c.name] = values[i] ?? null;
      });
      row[this.ts.name] = values[this.tags.length] ?? null;
      this.memtable.put(this.entryOf(row, index, 'delete'));
    }
    return { status: 'ok', version: index, rows: cmd.keys.length };
  }

  private rowFromValues(values: readonly Value[]): Row {
    if (values.length !== this.schema.columns.length) {
      throw new RegionDbError(ErrorCode.Corruption, `row has ${values.length} values, schema has ${this.schema.columns.length} columns`);
    }
    const row: Row = {};
    this.schema.columns.forEach((c, i) => {
      row[c.name] = values[i]!;
    });
    return row;
  }

  private entryOf(row: Row, version: number, op: 'put' | 'delete'): MemEntry {
    return {
      key: encodePrimaryKey(this.schema, row),
      timestampMs: row[this.ts.name] as number,
      version,
      op,
      tags: this.tags.map((c) => row[c.name] ?? null),
      fields: op === 'put' ? this.fields.map((c) => row[c.name] ?? null) : [],
    };
  }

  private remember(clientId: string, requestId: number, result: ApplyResult): void {
    let record = this.dedup.get(clientId);
    if (record) this.dedup.delete(clientId); // re-insert: Map order = least recently applied first
    else record = { results: new Map(), evictedBelow: 0 };
    this.dedup.set(clientId, record);
    record.results.set(requestId, result);
    if (record.results.size > limits.dedupRequestsPerClientMax) {
      let lowest = Number.POSITIVE_INFINITY;
      for (const id of record.results.keys()) lowest = Math.min(lowest, id);
      record.results.delete(lowest);
      record.evictedBelow = Math.max(record.evictedBelow, lowest + 1);
    }
    while (this.dedup.size > limits.dedupClientsMax) {
      const oldest = this.dedup.keys().next().value as string;
      this.dedup.delete(oldest);
    }
  }

  private toRow(e: MemEntry): Row {
    const row: Row = {};
    this.tags.forEach((c, i) => {
      row[c.name] = e.tags[i] ?? null;
    });
    row[this.ts.name] = e.timestampMs;
    this.fields.forEach((c, i) => {
      row[c.name] = e.fields[i] ?? null;
    });
    return row;
  }

  get(key: Row): VersionedRow | null {
    const e = this.memtable.get(encodePrimaryKey(this.schema, key));
    if (!e || e.op === 'delete') return null;
    return { row: this.toRow(e), version: e.version };
  }

  *scan(options: ScanOptions = {}): Generator<VersionedRow> {
    let emitted = 0;
    const filters = Object.entries(options.tagEquals ?? {}).map(([name, value]) => ({
      index: this.tags.findIndex((c) => c.name === name),
      value,
    }));
    for (const e of this.memtable.scan()) {
      if (e.op === 'delete') continue;
      if (options.startMs !== undefined && e.timestampMs < options.startMs) continue;
      if (options.endMs !== undefined && e.timestampMs >= options.endMs) continue;
      if (!filters.every((f) => valueEquals(e.tags[f.index], f.value))) continue;
      yield { row: this.toRow(e), version: e.version };
      if (options.limit && ++emitted >= options.limit) return;
    }
  }

  /** Whole state for a raft snapshot: [version u8][crc32c u32][JSON]. */
  serialize(): Uint8Array {
    const entries: unknown[] = [];
    for (const e of this.memtable.scan()) {
      entries.push([Buffer.from(e.key).toString('base64'), e.timestampMs, e.version, e.op === 'put' ? 1 : 0, e.tags, e.fields]);
    }
    const body = new TextEncoder().encode(
      JSON.stringify({
        appliedIndex: this.appliedIndex,
        entries,
        dedup: [...this.dedup.entries()].map(([client, r]) => [client, r.evictedBelow, [...r.results.entries()]]),
      }),
    );
    const out = new Uint8Array(5 + body.byteLength);
    out[0] = SNAPSHOT_VERSION;
    new DataView(out.buffer).setUint32(1, crc32c(body));
    out.set(body, 5);
    return out;
  }

  static deserialize(schema: TableSchema, bytes: Uint8Array): RegionState {
    const corrupt = (why: string) => new RegionDbError(ErrorCode.Corruption, `region snapshot is damaged: ${why}`);
    if (bytes.byteLength < 5 || bytes[0] !== SNAPSHOT_VERSION) throw corrupt('bad header');
    const body = bytes.subarray(5);
    if (new DataView(bytes.buffer, bytes.byteOffset).getUint32(1) !== crc32c(body)) throw corrupt('crc32c mismatch');
    const parsed = JSON.parse(new TextDecoder().decode(body)) as {
      appliedIndex: number;
      entries: [string, number, number, number, Value[], Value[]][];
      dedup: [string, number, [number, ApplyResult][]][];
    };
    const state = new RegionState(schema);
    state.appliedIndex = parsed.appliedIndex;
    for (const [key, ts, version, put, tags, fields] of parsed.entries) {
      state.memtable.put({
        key: Uint8Array.from(Buffer.from(key, 'base64')),
        timestampMs: ts,
        version,
        op: put ? 'put' : 'delete',
        tags,
        fields,
      });
    }
    for (const [client, evictedBelow, results] of parsed.dedup) state.dedup.set(client, { evictedBelow, results: new Map(results) });
    return state;
  }
}
