// Jepsen-style history types plus parsing and invoke/completion pairing.
// A history is a JSONL file of events; pairOps folds each invoke with its
// completion into a single Op that the checkers (linearizability.ts, set.ts) consume.

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';
export type OpF = 'read' | 'write' | 'cas' | 'add' | 'final-read';

export interface HistoryEvent {
  type: EventType;
  process: number; // client id; one outstanding op per process at a time
  f: OpF;
  key?: string; // register workload: which register
  value?: unknown; // read: value read on ok (null = absent); write: value written; cas: [expected, new]; add: element; final-read: array on ok
  time: number; // monotonic time, non-decreasing in file order
  error?: string; // for fail/info: why
  index?: number; // position in the history (filled by parseHistory)
}

export interface Op {
  process: number;
  f: OpF;
  key?: string;
  value: unknown;
  invokeTime: number;
  completeTime: number; // Infinity for info/unfinished
  status: 'ok' | 'fail' | 'info';
  invokeIndex: number;
  /** Why it failed or its outcome is unknown, when the completion says (HistoryEvent.error). */
  error?: string;
}

const EVENT_TYPES: ReadonlySet<string> = new Set<EventType>(['invoke', 'ok', 'fail', 'info']);
const OP_FS: ReadonlySet<string> = new Set<OpF>(['read', 'write', 'cas', 'add', 'final-read']);

/** Parses one JSON object per line (blank lines skipped); throws naming the 1-based line number. */
export function parseHistory(jsonl: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const lines = jsonl.split(/\r?\n/);
  let lastTime = -Infinity;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (text === '') continue;
    const lineNo = i + 1;
    const event = parseEventLine(text, lineNo);
    if (event.time < lastTime) {
      throw new Error(`history line ${lineNo}: time ${event.time} is before the previous event's time ${lastTime}`);
    }
    lastTime = event.time;
    event.index = events.length;
    events.push(event);
  }
  return events;
}

function parseEventLine(text: string, lineNo: number): HistoryEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`history line ${lineNo}: invalid JSON: ${(err as Error).message}`);
  }
  const fail = (why: string): never => {
    throw new Error(`history line ${lineNo}: ${why}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('expected a JSON object');
  const o = raw as Record<string, unknown>;
  if (typeof o.type !== 'string' || !EVENT_TYPES.has(o.type)) fail(`bad "type" ${JSON.stringify(o.type)} (want invoke|ok|fail|info)`);
  if (typeof o.process !== 'number' || !Number.isInteger(o.process)) fail(`bad "process" ${JSON.stringify(o.process)} (want an integer)`);
  if (typeof o.f !== 'string' || !OP_FS.has(o.f)) fail(`bad "f" ${JSON.stringify(o.f)} (want read|write|cas|add|final-read)`);
  if (typeof o.time !== 'number' || !Number.isFinite(o.time)) fail(`bad "time" ${JSON.stringify(o.time)} (want a finite number)`);
  if (o.key !== undefined && typeof o.key !== 'string') fail(`bad "key" ${JSON.stringify(o.key)} (want a string)`);
  if (o.error !== undefined && typeof o.error !== 'string') fail(`bad "error" ${JSON.stringify(o.error)} (want a string)`);
  const event: HistoryEvent = { type: o.type as EventType, process: o.process as number, f: o.f as OpF, time: o.time as number };
  if (o.key !== undefined) event.key = o.key as string;
  if ('value' in o) event.value = o.value;
  if (o.error !== undefined) event.error = o.error as string;
  return event;
}

/**
 * Pairs each invoke with the next completion of the same process. An invoke that
 * never completes becomes an 'info' op with completeTime Infinity. Ops are
 * returned in invoke order. Throws on a history Jepsen's own tools would misread: a
 * completion without an invoke, two outstanding invokes of one process, or an invoke by a
 * process after one of its ops ended `info`.
 */
export function pairOps(events: readonly HistoryEvent[]): Op[] {
  const pending = new Map<number, { event: HistoryEvent; position: number }>();
  // Processes whose op ended `info` (outcome unknown), and where: such a process has crashed and
  // never invokes again (Jepsen's rule; its checkers pair ops by process), the next op of that
  // client goes under a new process id.
  const crashed = new Map<number, number>();
  const ops: Op[] = [];
  events.forEach((event, position) => {
    const where = `event ${event.index ?? position}`;
    if (event.type === 'invoke') {
      const open = pending.get(event.process);
      if (open) {
        throw new Error(`${where}: process ${event.process} invoked ${event.f} while its ${open.event.f} (event ${open.event.index ?? open.position}) is still outstanding`);
      }
      const crash = crashed.get(event.process);
      if (crash !== undefined) {
        throw new Error(
          `${where}: process ${event.process} invoked ${event.f} after its op ended info (event ${crash}); a process whose outcome is unknown has crashed and never invokes again — its client's next op takes a new process id`,
        );
      }
      pending.set(event.process, { event, position });
      return;
    }
    if (event.type === 'info') crashed.set(event.process, event.index ?? position);
    const open = pending.get(event.process);
    if (!open) throw new Error(`${where}: ${event.type} ${event.f} by process ${event.process} has no matching invoke`);
    if (open.event.f !== event.f) {
      throw new Error(`${where}: process ${event.process} completed ${event.f} but invoked ${open.event.f} (event ${open.event.index ?? open.position})`);
    }
    pending.delete(event.process);
    ops.push(completedOp(open.event, open.position, event));
  });
  for (const open of pending.values()) ops.push(completedOp(open.event, open.position, undefined));
  return ops.sort((a, b) => a.invokeIndex - b.invokeIndex);
}

function completedOp(invoke: HistoryEvent, position: number, completion: HistoryEvent | undefined): Op {
  const status = completion ? (completion.type as Op['status']) : 'info';
  const op: Op = {
    process: invoke.process,
    f: invoke.f,
    value: opValue(invoke, completion),
    invokeTime: invoke.time,
    completeTime: status === 'info' ? Infinity : completion!.time,
    status,
    invokeIndex: invoke.index ?? position,
  };
  const key = invoke.key ?? completion?.key;
  if (key !== undefined) op.key = key;
  if (completion?.error !== undefined) op.error = completion.error;
  return op;
}

/** Reads learn their value on completion; mutations carry it on the invoke. */
function opValue(invoke: HistoryEvent, completion: HistoryEvent | undefined): unknown {
  const isRead = invoke.f === 'read' || invoke.f === 'final-read';
  if (isRead) return completion?.type === 'ok' ? (completion.value ?? null) : null;
  return invoke.value !== undefined ? invoke.value : (completion?.value ?? null);
}
