/**
 * The timing rules of virtual time, in one place, used by every executor (emulate and simulate),
 * so their virtual times are identical by construction.
 *
 *  - A send of b bytes from rank s to rank d, issued when s's clock reads t, occupies s's egress
 *    port for that link class from max(t, portFree) for b/B seconds, and arrives alpha later:
 *        arrival = max(t, portFree) + b/B + alpha,   portFree := max(t, portFree) + b/B.
 *    Only the sender updates its ports, in its own program order. Sends do not advance the sender's
 *    clock (they are asynchronous, like a DMA engine).
 *  - A receive completes at max(own clock, arrival); with a reduction it then costs b * gamma.
 *  - A local copy costs b * delta; a local reduce b * gamma; a scale b * delta;
 *    a compute op max(flops / peak, bytes / HBM bandwidth) (roofline).
 *  - Streams: a rank has two clocks, compute (stream 0) and communication (stream 1). An op runs on
 *    its stream's clock (executors call enterStream/leaveStream around it, which swap the clocks so
 *    the rules above always read `t`); `wait` raises a stream's clock to the other's. Ports are per
 *    rank, shared by both streams. A rank's time is the later of its two clocks.
 *  - Switch operations (runtime/ir.ts): a multicast copy (send with `mc`) is the same transmission
 *    as the send before it: multicastTimes() returns that send's [start, arrival] and charges no
 *    port. A recv of a `net` message with `op` is reduced by the switch: no gamma (gpuReduces()).
 *  - Ingress contention (opt-in: TopologyData.ingress). Each rank also has one ingress port per
 *    egress port index (a link class's port; a torus: the direction the last hop comes from,
 *    Topology.ingressPort). A message whose last byte arrives at A and whose transfer takes
 *    w = bytes/B on that class has crossed the receiver's ingress at
 *        E = max(A, ingressFree + w),   ingressFree := E,
 *    and the receive completes at max(own clock, E) (then the reduction, if any). Only the receiver
 *    updates its ingress ports, in the program order of its receives, not in arrival order (a
 *    message received later in program order queues behind earlier-posted ones even if it arrived
 *    first), so virtual time stays a function of program order. An uncontended message has
 *    E = A (its wire time already spans [A - w, A]). A `net` recv with `op` has w = 0: its
 *    contribution is folded into the switch's one result stream, whose bytes the group's first
 *    (op-less) `net` recv carries. No backpressure: the sender's port and send-buffer rule are
 *    unaffected (the switch buffers).
 * Nothing depends on wall-clock order, so the same programs give bit-identical times.
 */
import type { Op, RecvOp } from './ir.js';
import { ELEM_BYTES } from './ir.js';
import type { LinkClass, Topology } from './topology.js';

export class VClock {
  /** current virtual time of the running stream, seconds */
  t = 0;
  /** the other stream's clock (stream 1 while stream 0 runs, and the reverse inside enterStream) */
  t1 = 0;
  readonly portFree: Float64Array;
  /** ingress ports' free times (used only when the topology models ingress contention) */
  readonly ingressFree: Float64Array;
  /** start and arrival of the last charged send (a multicast copy repeats them) */
  lastStart = 0;
  lastArrival = 0;
  constructor(nPorts: number) {
    this.portFree = new Float64Array(nPorts);
    this.ingressFree = new Float64Array(nPorts);
  }
  reset(t0 = 0): void {
    this.t = t0;
    this.t1 = t0;
    this.portFree.fill(t0);
    this.ingressFree.fill(t0);
    this.lastStart = t0;
    this.lastArrival = t0;
  }
  /** the rank's time: the later stream */
  get end(): number {
    return this.t > this.t1 ? this.t : this.t1;
  }
}

/** Before an op on stream 1, make its clock current (swap); call leaveStream after the op. */
export function enterStream(c: VClock, o: Op): void {
  if (o.s === 1) { const x = c.t; c.t = c.t1; c.t1 = x; }
}
export const leaveStream = enterStream;

/** Issue a send from self to peer; returns [start of transmission, arrival time]. */
export function sendTimes(c: VClock, topo: Topology, self: number, peer: number, bytes: number): [number, number] {
  return sendOnLink(c, topo.data.links[topo.classOf(self, peer)]!, topo.port(self, peer), bytes);
}

/** The same rule for a sender that already knows the pair's link class and egress port. */
export function sendOnLink(c: VClock, link: LinkClass, port: number, bytes: number): [number, number] {
  const start = Math.max(c.t, c.portFree[port]!);
  const wireEnd = start + bytes / link.bw;
  c.portFree[port] = wireEnd;
  const arrival = wireEnd + link.alpha;
  c.lastStart = start;
  c.lastArrival = arrival;
  return [start, arrival];
}

/**
 * A multicast copy (send with `mc`): the same transmission as the last charged send, whose
 * [start, arrival] it returns; no port is charged. (The caller checks that the previous op was a
 * send of the same region over the same port.)
 */
export function multicastTimes(c: VClock): [number, number] {
  return [c.lastStart, c.lastArrival];
}

/** Whether a receive costs a GPU reduction (gamma): it reduces, and not in the switch. */
export function gpuReduces(o: RecvOp): boolean {
  return o.op !== undefined && o.net !== true;
}

/**
 * Ingress contention (TopologyData.ingress): the time a message arriving at `arrival` (last byte)
 * over `link` has crossed the receiver's ingress port `port`, E = max(arrival, free + w) with
 * w = bytes / bw (0 for a `net` recv with `op`: folded into the switch's result stream); updates
 * the port. Call it in the receiver's program order, then recvTimes with E.
 */
export function ingressArrival(c: VClock, link: LinkClass, port: number, arrival: number, bytes: number, fold: boolean): number {
  const f = fold ? c.ingressFree[port]! : c.ingressFree[port]! + bytes / link.bw;
  const e = arrival > f ? arrival : f;
  c.ingressFree[port] = e;
  return e;
}

/** Whether a receive's bytes fold into a switch result stream (no ingress wire time of its own). */
export function ingressFolds(o: RecvOp): boolean {
  return o.net === true && o.op !== undefined;
}

/** Complete a receive of a message that arrives at `arrival`; returns [start, end]. */
export function recvTimes(c: VClock, topo: Topology, arrival: number, bytes: number, reduces: boolean): [number, number] {
  const start = c.t;
  c.t = Math.max(c.t, arrival);
  if (reduces) c.t += bytes * topo.data.gamma;
  return [start, c.t];
}

/** Modeled cost of a local (non-communication) op, in seconds. */
export function localCost(o: Op, topo: Topology, peakFlops: number): number {
  switch (o.k) {
    case 'copy': return o.src.len * ELEM_BYTES * topo.data.delta;
    case 'reduce': return o.dst.len * ELEM_BYTES * topo.data.gamma;
    case 'scale': return o.dst.len * ELEM_BYTES * topo.data.delta;
    case 'compute': return Math.max(o.flops / peakFlops, o.bytes / topo.hw.hbmBandwidth);
    default: return 0;
  }
}

/** Advance the clock by a local op (or a stream wait); returns [start, end]. */
export function localTimes(c: VClock, o: Op, topo: Topology, peakFlops: number): [number, number] {
  const start = c.t;
  if (o.k === 'wait') {
    // inside enterStream, t1 is the other stream's clock
    if (o.on !== (o.s ?? 0) && c.t1 > c.t) c.t = c.t1;
    return [start, c.t];
  }
  c.t += localCost(o, topo, peakFlops);
  return [start, c.t];
}
