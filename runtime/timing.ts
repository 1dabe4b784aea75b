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
 * Nothing depends on wall-clock order, so the same programs give bit-identical times.
 */
import type { Op } from './ir.js';
import { ELEM_BYTES } from './ir.js';
import type { LinkClass, Topology } from './topology.js';

export class VClock {
  /** current virtual time of the running stream, seconds */
  t = 0;
  /** the other stream's clock (stream 1 while stream 0 runs, and the reverse inside enterStream) */
  t1 = 0;
  readonly portFree: Float64Array;
  constructor(nPorts: number) {
    this.portFree = new Float64Array(nPorts);
  }
  reset(t0 = 0): void {
    this.t = t0;
    this.t1 = t0;
    this.portFree.fill(t0);
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
  return [start, wireEnd + link.alpha];
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
