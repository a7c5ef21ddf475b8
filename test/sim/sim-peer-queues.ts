// The `queues` fault of the whole-datanode simulator (cluster-sim.ts, docs/simulation.md): a
// model of what the production raft transport (src/replication/grpc-transport.ts) does with
// messages for a peer whose process went away, in place of the plain network's "a message to a
// down node is lost".
//
// What the transport does (read from grpc-transport.ts): one stream per peer node and a queue in
// front of it. When the peer's process dies its connection closes and the stream breaks; the
// sender drops the stream and waits a backoff (50 ms, doubled after every failed attempt up to
// 2 s, back to 0 once the peer answers) before it connects again. Messages sent meanwhile wait
// in the queue (20,000 envelopes, the oldest dropped beyond that). An attempt while the peer is
// still down writes the queue into a stream that then fails (those messages are lost) and
// doubles the backoff. An attempt after the peer restarted reaches the NEW process: everything
// queued since the last failed attempt — answers and heartbeats built for the previous process
// among it — is delivered to it, in order, cut into batches (batchLength: 4,096 envelopes or
// 8 MiB), each a gRPC message of its own that the receiver steps on its own.
//
// Scaled as the simulator scales other limits (the dedup tables of `evict`): the simulator's
// nodes share 2 regions, not thousands, so a queue held for a backoff holds tens of envelopes,
// not the thousands that make production cut it; the batch limit here is BATCH_ENVELOPES. While
// the stream is connected, messages go over the simulated network as before (its loss,
// duplication and reordering stand for the stream breaks and queue overflows not modelled here).
import type { Rand } from '../../src/common/rand.js';
import type { RaftEnvelope, RaftTransport } from '../../src/replication/transport.js';
import type { Incarnation, SimNetwork, SimScheduler } from './sim-world.js';

/** grpc-transport.ts transportLimits (reconnect backoff, queue bound). */
export const QUEUE_BACKOFF_MIN_MS = 50;
export const QUEUE_BACKOFF_MAX_MS = 2000;
const QUEUE_ENVELOPES_MAX = 20_000;
/** The batch cut, scaled down from 4,096 (see the top of this file). */
export const BATCH_ENVELOPES = 4;

interface Link {
  readonly owner: Incarnation;
  readonly to: number;
  /** The receiver's process the stream reaches; undefined while disconnected. */
  stream: Incarnation | undefined;
  queue: RaftEnvelope[];
  backoffMs: number;
  reconnectAt: number;
  timerSet: boolean;
}

export interface PeerQueueStats {
  /** Streams broken by a receiver's crash. */
  breaks: number;
  /** Reconnect attempts that found the receiver down (their queue lost). */
  failedAttempts: number;
  /** Envelopes delivered to a process that started after the stream broke. */
  heldDelivered: number;
  /** Envelopes lost in failed attempts. */
  lost: number;
}

export class SimPeerQueues {
  private readonly links = new Map<Incarnation, Map<number, Link>>();
  /** Batches of held envelopes scheduled for delivery to a reconnected process, not yet delivered. */
  private readonly batchesInFlight = new Set<{ readonly to: number; readonly envelopes: readonly RaftEnvelope[] }>();
  readonly stats: PeerQueueStats = { breaks: 0, failedAttempts: 0, heldDelivered: 0, lost: 0 };

  constructor(
    private readonly sched: SimScheduler,
    private readonly rand: Rand,
    private readonly net: SimNetwork,
    /** The process running under a node id now (undefined while the node is down). */
    private readonly running: (nodeId: number) => Incarnation | undefined,
    /** Delivers one envelope to the process `to` if it still runs. */
    private readonly deliver: (from: number, to: Incarnation, envelope: RaftEnvelope) => void,
    private readonly record: (event: string) => void,
  ) {}

  transportFor(owner: Incarnation): RaftTransport {
    return {
      send: (to: number, envelopes: RaftEnvelope[]) => {
        if (owner.dead) return;
        const link = this.link(owner, to);
        for (const e of envelopes) link.queue.push(e);
        if (link.queue.length > QUEUE_ENVELOPES_MAX) link.queue.splice(0, link.queue.length - QUEUE_ENVELOPES_MAX);
        this.flush(link);
      },
      close: async () => {},
    };
  }

  /**
   * Envelopes for node `to` that a running sender's queue holds or a reconnected stream has yet to
   * deliver (the checkers' view of what a replica may still receive; the plain network's packets
   * on the wire are SimNetwork.inFlight).
   */
  *pendingTo(to: number): Iterable<RaftEnvelope> {
    for (const byTo of this.links.values()) {
      const link = byTo.get(to);
      if (link && !link.owner.dead) yield* link.queue;
    }
    for (const batch of this.batchesInFlight) if (batch.to === to) yield* batch.envelopes;
  }

  /** A node's process died: every stream to it breaks now (its connections close). */
  onCrash(nodeId: number): void {
    for (const byTo of this.links.values()) {
      const link = byTo.get(nodeId);
      if (link?.stream && !link.owner.dead) this.broken(link);
    }
  }

  private link(owner: Incarnation, to: number): Link {
    let byTo = this.links.get(owner);
    if (!byTo) this.links.set(owner, (byTo = new Map()));
    let link = byTo.get(to);
    if (!link) {
      // A new process connects to its peers at its first send (as the transport does).
      link = { owner, to, stream: this.running(to), queue: [], backoffMs: 0, reconnectAt: 0, timerSet: false };
      byTo.set(to, link);
    }
    return link;
  }

  private broken(link: Link): void {
    link.stream = undefined;
    this.stats.breaks++;
    this.backOff(link);
  }

  private backOff(link: Link): void {
    link.backoffMs = Math.min(QUEUE_BACKOFF_MAX_MS, Math.max(QUEUE_BACKOFF_MIN_MS, link.backoffMs * 2));
    link.reconnectAt = this.sched.now + link.backoffMs;
    if (link.timerSet) return;
    link.timerSet = true;
    this.sched.at(
      link.reconnectAt,
      () => {
        link.timerSet = false;
        this.flush(link);
      },
      link.owner,
    );
  }

  private flush(link: Link): void {
    if (link.owner.dead || link.queue.length === 0) return;
    const { owner, to } = link;
    if (link.stream) {
      if (!link.stream.dead) {
        // Connected: what was queued goes out now, over the network as any message does.
        for (const e of link.queue.splice(0)) this.net.sendFrom(owner.nodeId, to, e);
        return;
      }
      this.broken(link); // the receiver died since; this send finds the stream broken
      return;
    }
    if (this.sched.now < link.reconnectAt) return; // waiting out the backoff; the timer flushes
    const receiver = this.running(to);
    if (!receiver) {
      // The attempt fails (connection refused): what it wrote is lost.
      this.stats.failedAttempts++;
      this.stats.lost += link.queue.length;
      link.queue = [];
      this.backOff(link);
      return;
    }
    // Connected to the process running now, possibly a newer one than the queue was built for.
    // The backoff starts again from 0 (production: at the peer's first ack, sent at once).
    link.stream = receiver;
    link.backoffMs = 0;
    const held = link.queue.splice(0);
    this.stats.heldDelivered += held.length;
    this.record(`stream n${owner.nodeId}->n${to} reconnected: ${held.length} queued envelopes`);
    // In order, a batch per gRPC message: one network delay, then a batch per millisecond.
    const delay = 1 + this.rand.int(12);
    for (let b = 0; b * BATCH_ENVELOPES < held.length; b++) {
      const batch = held.slice(b * BATCH_ENVELOPES, (b + 1) * BATCH_ENVELOPES);
      const pending = { to, envelopes: batch };
      this.batchesInFlight.add(pending);
      this.sched.at(this.sched.now + delay + b, () => {
        this.batchesInFlight.delete(pending);
        if (this.net.cut.has(`${owner.nodeId}->${to}`)) return;
        for (const e of batch) this.deliver(owner.nodeId, receiver, e);
      });
    }
  }
}
