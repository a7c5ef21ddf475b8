// Metasrv procedure metrics (docs/observability.md), derived from the catalog's procedure
// records each time the catalog is saved: every start and finish of a procedure is saved (steps
// and their catalog changes are durable together), so nothing is missed and the procedures
// themselves stay free of metrics code.
import { Counter, Gauge, type Registry } from 'prom-client';
import { PROCEDURE_KINDS, type ProcedureRecord } from './procedures/record.js';

export class ProcedureMetrics {
  /** Status of every procedure record seen, by id. */
  private readonly seen = new Map<string, ProcedureRecord['status']>();
  private readonly started: Counter;
  private readonly finished: Counter;
  private readonly failovers: Counter;
  private readonly running: Gauge;

  constructor(registry: Registry) {
    const r = [registry];
    this.started = new Counter({ name: 'regiondb_metasrv_procedures_started_total', help: 'Procedures started by this metasrv, by kind', labelNames: ['kind'], registers: r });
    this.finished = new Counter({
      name: 'regiondb_metasrv_procedures_finished_total',
      help: 'Procedures finished, by kind and outcome (done or failed)',
      labelNames: ['kind', 'outcome'],
      registers: r,
    });
    this.failovers = new Counter({
      name: 'regiondb_metasrv_failovers_total',
      help: 'Region failovers started (a datanode hosting replicas was suspected failed)',
      registers: r,
    });
    this.running = new Gauge({ name: 'regiondb_metasrv_procedures_running', help: 'Procedures running now, by kind', labelNames: ['kind'], registers: r });
    for (const kind of PROCEDURE_KINDS) {
      this.started.inc({ kind }, 0);
      this.running.set({ kind }, 0);
    }
    this.failovers.inc(0);
  }

  /** Takes in the procedures already in the catalog (resumed after a restart) without counting them. */
  baseline(procedures: Readonly<Record<string, ProcedureRecord>>): void {
    for (const p of Object.values(procedures)) this.seen.set(p.id, p.status);
    this.updateRunning(procedures);
  }

  /** Counts the procedures started and finished since the last call. */
  observe(procedures: Readonly<Record<string, ProcedureRecord>>): void {
    for (const p of Object.values(procedures)) {
      const before = this.seen.get(p.id);
      if (before === p.status) continue;
      if (before === undefined) {
        this.started.inc({ kind: p.kind });
        if (p.kind === 'region-failover') this.failovers.inc();
      }
      if (p.status !== 'running') this.finished.inc({ kind: p.kind, outcome: p.status });
      this.seen.set(p.id, p.status);
    }
    // Finished records are pruned from the catalog after a while; forget them too.
    for (const id of this.seen.keys()) if (!(id in procedures)) this.seen.delete(id);
    this.updateRunning(procedures);
  }

  private updateRunning(procedures: Readonly<Record<string, ProcedureRecord>>): void {
    const counts = new Map<string, number>(PROCEDURE_KINDS.map((k) => [k, 0]));
    for (const p of Object.values(procedures)) if (p.status === 'running') counts.set(p.kind, (counts.get(p.kind) ?? 0) + 1);
    for (const [kind, n] of counts) this.running.set({ kind }, n);
  }
}
