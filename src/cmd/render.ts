// Aligned text tables for CLI output.

/** Renders rows as columns separated by two spaces, each as wide as its widest cell. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** A table being dropped, as ListNodesResponse.dropping_tables carries it. */
export interface DroppingTableView {
  readonly name: string;
  readonly table_id: string;
  readonly since_ms: string;
  readonly fenced_region_ids: readonly string[];
  readonly unfenced_region_ids: readonly string[];
  readonly recovering_region_ids: readonly string[];
}

/**
 * `regiondb status`'s section on drops in progress (docs/ddl.md, "A drop that does not finish"):
 * each table being dropped, and which of its regions the drop still waits for; '' when none.
 */
export function renderDroppingTables(tables: readonly DroppingTableView[], nowMs: number): string {
  if (tables.length === 0) return '';
  const list = (ids: readonly string[]) => (ids.length === 0 ? '-' : ids.join(','));
  return [
    'TABLES BEING DROPPED (the drop answers once every region is fenced; a region without a quorum blocks it: docs/ddl.md):',
    renderTable(
      ['TABLE', 'ID', 'SINCE', 'FENCED', 'NOT FENCED (the drop waits for these)', 'RECOVERING'],
      tables.map((t) => [
        t.name,
        t.table_id,
        `${Math.max(0, Math.round((nowMs - Number(t.since_ms)) / 1000))} s ago`,
        list(t.fenced_region_ids),
        list(t.unfenced_region_ids),
        list(t.recovering_region_ids),
      ]),
    ),
  ].join('\n');
}
