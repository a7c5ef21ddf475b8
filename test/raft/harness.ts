// A synchronous in-process network of raft cores for the paper-section tests and the
// table-driven interaction scenarios. Each node has MemoryStorage; a "crash" drops the core
// (and with it everything not persisted) and rebuilds it from storage.
import { SeededRand } from '../../src/common/rand.js';
import { ConfChangeType, decodeConfChange } from '../../src/raft/confchange.js';
import { Raft, type RaftConfig, type Ready } from '../../src/raft/raft.js';
import type { ReadState } from '../../src/raft/read-only.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { type Entry, EntryType, type Message, type MessageType, type NodeId } from '../../src/raft/types.js';

export type RaftOptions = Partial<Omit<RaftConfig, 'id' | 'storage' | 'rand'>>;

export interface TestNode {
  id: NodeId;
  raft: Raft;
  storage: MemoryStorage;
  /** Normal entries with data, in apply order. */
  applied: Entry[];
  readStates: ReadState[];
  /** Highest index applied (including empty and conf entries). */
  appliedIndex: number;
}

const decoder = new TextDecoder();
export const text = (e: Entry): string => decoder.decode(e.data);
export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Persists, then returns the messages, then applies: the host contract from raft.ts. */
export function processReady(node: TestNode, rd: Ready): Message[] {
  if (rd.snapshot) node.storage.applySnapshot(rd.snapshot);
  if (rd.entries.length > 0) node.storage.append(rd.entries);
  if (rd.hardState) node.storage.setHardState(rd.hardState);
  if (rd.snapshot) node.appliedIndex = rd.snapshot.metadata.index;
  for (const entry of rd.committedEntries) {
    if (entry.type === EntryType.ConfChange) {
      node.raft.applyConfChange(decodeConfChange(entry.data));
    } else if (entry.data.byteLength > 0) {
      node.applied.push(entry);
    }
    node.appliedIndex = entry.index;
  }
  node.readStates.push(...rd.readStates);
  return [...rd.messages];
}

export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Directed links that drop everything: "from->to". */
  private readonly cut = new Set<string>();
  /** Message types dropped everywhere. */
  private readonly dropTypes = new Set<MessageType>();
  /** Every delivered message, for assertions. */
  readonly delivered: Message[] = [];
  private readonly options: RaftOptions;
  private seed: number;

  constructor(ids: NodeId[], options: RaftOptions = {}, seed = 1, learners: NodeId[] = []) {
    this.options = options;
    this.seed = seed;
    for (const id of [...ids, ...learners]) {
      const storage = new MemoryStorage({ voters: ids, learners });
      this.nodes.set(id, this.makeNode(id, storage));
    }
  }

  private makeNode(id: NodeId, storage: MemoryStorage, applied?: number): TestNode {
    const raft = new Raft({
      electionTicks: 10,
      heartbeatTicks: 1,
      ...this.options,
      id,
      storage,
      rand: new SeededRand(this.seed * 1000 + id),
      applied,
    });
    return { id, raft, storage, applied: [], readStates: [], appliedIndex: applied ?? 0 };
  }

  /** Adds a brand-new node with an empty log (to be added by a conf change). */
  addNode(id: NodeId, voters: NodeId[], learners: NodeId[]): TestNode {
    const node = this.makeNode(id, new MemoryStorage({ voters, learners }));
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** Crash: unpersisted state is lost; the core restarts from storage, state machine replayed. */
  restart(id: NodeId): TestNode {
    const old = this.node(id);
    const node = this.makeNode(id, old.storage);
    this.nodes.set(id, node);
    return node;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}->${to}`);
  }

  dropType(type: MessageType): void {
    this.dropTypes.add(type);
  }

  heal(): void {
    this.cut.clear();
    this.dropTypes.clear();
  }

  /** Delivers messages (and everything they cause) until the network is quiet. */
  send(messages: Message[]): void {
    const queue = [...messages];
    let steps = 0;
    for (;;) {
      while (queue.length > 0) {
        if (++steps > 1_000_000) throw new Error('network did not quiesce');
        const m = queue.shift()!;
        if (this.cut.has(`${m.from}->${m.to}`) || this.dropTypes.has(m.type)) continue;
        const target = this.nodes.get(m.to);
        if (!target) continue;
        this.delivered.push(m);
        target.raft.step(m);
      }
      let produced = false;
      for (const node of this.nodes.values()) {
        if (!node.raft.hasReady()) continue;
        const rd = node.raft.ready();
        queue.push(...processReady(node, rd));
        node.raft.advance(rd);
        produced = true;
      }
      if (!produced && queue.length === 0) return;
    }
  }

  /** Drains pending readies without new input. */
  settle(): void {
    this.send([]);
  }

  campaign(id: NodeId): void {
    this.raft(id).campaign();
    this.settle();
  }

  propose(id: NodeId, value: string): { index: number; term: number } {
    const r = this.raft(id).propose([bytes(value)]);
    this.settle();
    return r;
  }

  tick(id: NodeId, count = 1): void {
    for (let i = 0; i < count; i++) {
      this.raft(id).tick();
      this.settle();
    }
  }

  tickAll(count = 1): void {
    for (let i = 0; i < count; i++) {
      for (const id of this.nodes.keys()) this.raft(id).tick();
      this.settle();
    }
  }

  leaders(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.raft.role === 3).map((n) => n.id);
  }

  values(id: NodeId): string[] {
    return this.node(id).applied.map(text);
  }
}

export const AddVoter = ConfChangeType.AddVoter;
export const AddLearner = ConfChangeType.AddLearner;
export const RemoveNode = ConfChangeType.RemoveNode;
