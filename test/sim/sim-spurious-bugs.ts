// Planted bugs of the "healthy node treated as failed" findings of docs/correctness.md (M3; see
// sim-spurious.ts): test-only subclasses that bring back the behaviour before a fix. Nothing
// under src/ names them (test/raft/purity.test.ts keeps planted bugs out of src/).
import { silentLogger } from '../../src/common/logger.js';
import { MetasrvCore } from '../../src/metasrv/metasrv-core.js';
import type { MetasrvCoreFactory } from './sim-metasrv.js';

export const SPURIOUS_METASRV_BUGS = ['late-tick-judges'] as const;
export type SpuriousMetasrvBug = (typeof SPURIOUS_METASRV_BUGS)[number];

/**
 * Finding M3: every tick judged failures, also one that fired late because the metasrv's own
 * process had stalled — Node runs the due timers before it reads the sockets, so the tick saw
 * every node silent for the length of the stall (the heartbeats were queued, unread). The fix
 * remembers when the last tick fired (`lastTickTimerMs`, private) and skips a late one; this
 * subclass forgets it before every tick, so no tick is ever late.
 */
class LateTickJudges extends MetasrvCore {
  override onTickTimer(): void {
    (this as unknown as { lastTickTimerMs: number | undefined }).lastTickTimerMs = undefined;
    super.onTickTimer();
  }
}

export function isSpuriousMetasrvBug(bug: string): bug is SpuriousMetasrvBug {
  return (SPURIOUS_METASRV_BUGS as readonly string[]).includes(bug);
}

export function spuriousMetasrvCore(bug: SpuriousMetasrvBug): MetasrvCoreFactory {
  const Core = { 'late-tick-judges': LateTickJudges }[bug];
  return (config, env) => new Core(config, silentLogger, 3, env);
}
