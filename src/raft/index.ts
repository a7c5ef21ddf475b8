export * from './confchange.js';
export { maySendBeforePersist } from './host-rules.js';
export { RaftLog } from './log.js';
export { ProgressState } from './progress.js';
export {
  CONF_CHANGE_PENDING,
  Raft,
  type RaftConfig,
  type RaftStatus,
  type ReadOnlyOption,
  type Ready,
  Role,
  roleName,
  type SoftState,
} from './raft.js';
export type { ReadState } from './read-only.js';
export type { ResultOf, StateMachine } from './state-machine.js';
export * from './storage.js';
export * from './types.js';
