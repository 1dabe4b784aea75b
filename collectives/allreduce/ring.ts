/**
 * Ring AllReduce (Patarasuk & Yuan 2009; NCCL's ring): a reduce-scatter around the ring in p-1
 * steps, then an all-gather in p-1 steps. Block b of the vector is reduced as it travels; rank r
 * ends the reduce-scatter owning block (r+1) mod p, fully reduced.
 *
 * Cost (flat, block bytes b = ceil(n/p) elements * 4):
 *   T = 2(p-1) alpha + 2(p-1) b beta + (p-1) b gamma  [+ b delta for avg's scale]
 * which is the textbook 2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma when p divides n.
 *
 * Multi-node (N = p/G nodes of G GPUs, ring 0..p-1, p a multiple of G): the hop G-1 -> G of
 * every node is the slow inter-node link (a2, B2), the other G-1 hops are fast (a1, B1); each rank
 * sends on one port. The flat formula with the slow link charges every hop at IB speed (about 2x
 * too high for large messages). Derivation: the finish time is the longest path through the
 * 2(p-1) steps of the dependency graph, and each step of a path is spent either
 *   - as a hop to the next rank: a + b B of that hop [+ b G in the reduce-scatter], or
 *   - waiting on a busy egress port: b B of that port (worth most at a slow port: b B2),
 * (plus b D once if the path enters the all-gather through a rank's clock: avg's scale). Waiting
 * at a slow port, crossing u nodes with single hops and waiting again at the last slow port is a
 * path with V = (u-1) G + 1 hops whose value is piecewise linear in u, so the maximum is at u = 1,
 * 2 (where the scale joins), N, N+1 (where the hops leave the reduce-scatter) or uMax =
 * 1 + floor((2p-3)/G); the other candidate is the pure latency chain of 2p-2 hops:
 *   Tu    = (2p-2-V) b B2 + u (a2 + b B2) + (V-u)(a1 + b B1) + min(V-1, p-1) b G + [u >= 2] b D
 *           (u = 1: Tbw = 2(p-1) b B2 + a2: one slow port serializes all 2(p-1) blocks while the
 *           latencies overlap: the large-message regime)
 *   Thops = s (a2 + b B2) + (2p-2-s)(a1 + b B1) + (p-1) b G + b D, s = slow hops in the best window
 *           of 2p-2 consecutive hops (2N if G >= 3, 2N-1 if G = 2): the small-message regime
 *   T     = max(Thops, Tu for u in {1, 2, N, N+1, uMax}).
 * (Assumes the inter-node link is the slower one; [b D] only for avg.) Matches the simulator to
 * < 0.01% on hgx-h100 / dgx-a100 with 2-8 nodes, all sizes, gamma from 0 to 1/(30 GB/s).
 * With pods (llama3 across pods) the slow link is the ring's slowest hop (cross-pod) and every
 * node boundary is charged as one: exact in the bandwidth-bound regime (the cross-pod port
 * serializes), an overestimate of the latency chain below it (test/protocols.test.ts measures it).
 */
import type { Op, Program, ReduceOp, Region } from '../../runtime/ir.js';
import type { OpCursor } from '../../runtime/simulate.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';

export const ringAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'ring',
  summary: 'reduce-scatter then all-gather around a ring; bandwidth-optimal',
  formula: '2(p-1) a + 2(p-1)/p n B + (p-1)/p n G; multi-node: max(2(p-1) b B_inter + a_inter, latency chain, mixed paths)',
  build(spec: CollSpec): Program[] {
    const { p, count: c, op } = spec;
    const bl = blocks(c, p);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      const next = (r + 1) % p, prev = (r - 1 + p) % p;
      const blk = (reg: typeof I, i: number) => { const b = bl[((i % p) + p) % p]!; return sub(reg, b.off, b.len); };
      if (p === 1) {
        if (!spec.inPlace && c > 0) ops.push({ k: 'copy', src: I, dst: O });
        progs.push(ops);
        continue;
      }
      // reduce-scatter
      for (let s = 0; s < p - 1; s++) {
        ops.push({ k: 'send', peer: next, src: blk(s === 0 ? I : O, r - s) });
        ops.push({ k: 'recv', peer: prev, dst: blk(O, r - s - 1), op, acc: blk(I, r - s - 1) });
      }
      if (op === 'avg') ops.push({ k: 'scale', dst: blk(O, r + 1), factor: 1 / p });
      // all-gather
      for (let s = 0; s < p - 1; s++) {
        ops.push({ k: 'send', peer: next, src: blk(O, r + 1 - s) });
        ops.push({ k: 'recv', peer: prev, dst: blk(O, r - s) });
      }
      progs.push(ops);
    }
    return progs;
  },
  rankProgram(spec: CollSpec, _topo: Topology, r: number): Iterable<Op> {
    const { p, count: c, op } = spec;
    if (p === 1) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      return !spec.inPlace && c > 0 ? [{ k: 'copy', src: I, dst: O }] : [];
    }
    // the block regions are the same for every rank (all ranks' I and O are the same regions)
    const { inB, outB } = ringBlocks(spec);
    const next = r + 1 === p ? 0 : r + 1, prev = r === 0 ? p - 1 : r - 1;
    const phases: RingPhase[] = [{ kind: 'rs', n: p, a: r, next, prev, first: inB, src: outB, dst: outB, acc: inB, op }];
    if (op === 'avg') phases.push({ kind: 'op', op: { k: 'scale', dst: outB[(r + 1) % p]!, factor: 1 / p } });
    phases.push({ kind: 'ag', n: p, a: r, next, prev, tab: outB });
    return ringPhaseStream(phases);
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    const { gamma, delta } = topo.data;
    if (p === 1) return spec.inPlace ? 0 : c * 4 * delta;
    const b = Math.ceil(c / p) * 4;
    const scale = spec.op === 'avg' ? b * delta : 0;
    const G = topo.data.gpusPerNode;
    if (p > G && G > 1 && p % G === 0 && topo.data.intra !== topo.data.inter) {
      // slow: the slowest hop of the ring (the inter-node link; across pods, the cross-pod link)
      const f = topo.data.links[topo.data.intra]!, sl = topo.slowestLink();
      const N = p / G;
      const fast = f.alpha + b / f.bw, slow = sl.alpha + b / sl.bw, wait = b / sl.bw, g = b * gamma;
      // all hops: s slow hops in the best window of 2p-2 consecutive hops
      const s = G >= 3 ? 2 * N : 2 * N - 1;
      let t = s * slow + (2 * p - 2 - s) * fast + (p - 1) * g + scale;
      // hop across u nodes (V = (u-1)G + 1 visits, the last one a slow port), wait there to the end
      const uMax = 1 + Math.floor((2 * p - 3) / G);
      for (const u of [1, 2, N, N + 1, uMax]) {
        if (u < 1 || u > uMax) continue;
        const V = (u - 1) * G + 1;
        const tu = (2 * p - 2 - V) * wait + u * slow + (V - u) * fast + Math.min(V - 1, p - 1) * g + (u >= 2 ? scale : 0);
        t = Math.max(t, tu);
      }
      return t;
    }
    const l = topo.slowestLink();
    return 2 * (p - 1) * (l.alpha + b / l.bw) + (p - 1) * b * gamma + scale;
  },
};

/** Block j of the input and output regions (types.blocks(count, p)), for rankProgram; the last spec's are kept. */
let ringBlockCache: { p: number; count: number; inPlace: boolean; inB: Region[]; outB: Region[] } | undefined;
function ringBlocks(spec: CollSpec): { inB: Region[]; outB: Region[] } {
  const q = ringBlockCache;
  if (q && q.p === spec.p && q.count === spec.count && q.inPlace === spec.inPlace) return q;
  const I = inputRegion(spec, 0), O = outputRegion(spec, 0);
  const bl = blocks(spec.count, spec.p);
  const inB = bl.map((b) => sub(I, b.off, b.len)), outB = bl.map((b) => sub(O, b.off, b.len));
  ringBlockCache = { p: spec.p, count: spec.count, inPlace: spec.inPlace, inB, outB };
  return ringBlockCache;
}

/**
 * One phase of a rank's program in a ring of n members (for lazy op streams):
 *  - 'rs', reduce-scatter: n-1 steps s of send (s = 0 ? first : src)[a-s] to next, then
 *    recv-reduce from prev into dst[a-s-1] with acc[a-s-1];
 *  - 'ag', all-gather: n-1 steps of send tab[a+1-s] to next, then recv from prev into tab[a-s];
 *  - 'op': one op.
 * Table indices are taken mod n; a is the rank's position in the ring.
 */
export type RingPhase =
  | { kind: 'rs'; n: number; a: number; next: number; prev: number; first: Region[]; src: Region[]; dst: Region[]; acc: Region[]; op: ReduceOp }
  | { kind: 'ag'; n: number; a: number; next: number; prev: number; tab: Region[] }
  | { kind: 'op'; op: Op };

/**
 * The ops of a sequence of ring phases, generated as they are pulled: exactly the sends and
 * receives ring.ts's build() writes for the same phases. The iterator is a small state machine:
 * next() reuses its result object and allocates only the op objects (a generator costs about twice
 * as much per op in V8, which matters when a simulation pulls 10^8 ops). It is also an OpCursor
 * (runtime/simulate.ts): nextOp() gives the same ops in two op objects of its own (a send and a
 * receive, of one class), rewritten as it goes, so simulate() allocates nothing per op and reads
 * ops of one shape.
 */
export function ringPhaseStream(phases: readonly RingPhase[]): Iterable<Op> {
  return { [Symbol.iterator]: () => new RingPhaseIterator(phases) };
}

/**
 * nextOp()'s op: a send ({ k, peer, src }) or a receive ({ k, peer, dst, op?, acc? }), one class for
 * both (the fields an op kind lacks are undefined), so that its readers see a single object shape.
 */
class RingOp {
  constructor(readonly k: 'send' | 'recv') {}
  peer = 0;
  src: Region | undefined = undefined;
  dst: Region | undefined = undefined;
  op: ReduceOp | undefined = undefined;
  acc: Region | undefined = undefined;
}

const NO_REGIONS: Region[] = [];

class RingPhaseIterator implements Iterator<Op>, OpCursor {
  private ph = 0;
  // the ring phase being run: `at` counts its ops, a send then a receive per step s = at >> 1, up
  // to `end` = 2(n-1) (0 between phases); 'ag' runs as 'rs' with tables tab, index shift 1 and no
  // reduction (red undefined)
  private at = 0;
  private end = 0;
  private n = 0;
  /** the ring position plus the index shift */
  private pos = 0;
  private to = 0;
  private from = 0;
  private first: Region[] = NO_REGIONS;
  private srcT: Region[] = NO_REGIONS;
  private dstT: Region[] = NO_REGIONS;
  private accT: Region[] = NO_REGIONS;
  private red: ReduceOp | undefined = undefined;
  private readonly res: { done: boolean; value: Op | undefined } = { done: false, value: undefined };
  // nextOp()'s send and receive (k, and per phase peer and op, are set once)
  private readonly sendOp = new RingOp('send');
  private readonly recvOp = new RingOp('recv');
  constructor(private readonly phases: readonly RingPhase[]) {}

  next(): IteratorResult<Op> {
    const res = this.res;
    if (this.at >= this.end) {
      const o = this.advance();
      if (o !== null) {
        res.value = o;
        res.done = o === undefined;
        return res as IteratorResult<Op>;
      }
    }
    const at = this.at++, s = at >> 1, n = this.n;
    let j = this.pos - s;
    if ((at & 1) === 0) {
      if (j < 0) j += n; else if (j >= n) j -= n;
      res.value = { k: 'send', peer: this.to, src: (s === 0 ? this.first : this.srcT)[j]! };
    } else {
      j -= 1;
      if (j < 0) j += n; else if (j >= n) j -= n;
      res.value = this.red !== undefined
        ? { k: 'recv', peer: this.from, dst: this.dstT[j]!, op: this.red, acc: this.accT[j]! }
        : { k: 'recv', peer: this.from, dst: this.dstT[j]! };
    }
    return res as IteratorResult<Op>;
  }

  nextOp(): Op | undefined {
    if (this.at >= this.end) {
      const o = this.advance();
      if (o !== null) return o;
    }
    const at = this.at++, s = at >> 1, n = this.n;
    // the table index mod n, without branches (j is in [-n, 2n)): every operation runs on every
    // call, so V8's type feedback covers them all (an operation that has never run, once inlined
    // into simulate(), deoptimizes it when it first does)
    let j = this.pos - s - (at & 1);
    j += n & (j >> 31);
    j -= n & ((n - 1 - j) >> 31);
    if ((at & 1) === 0) {
      const c = this.sendOp;
      c.src = (s === 0 ? this.first : this.srcT)[j]!;
      return c as Op;
    }
    const c = this.recvOp;
    c.dst = this.dstT[j]!;
    if (this.red !== undefined) c.acc = this.accT[j]!;
    return c as Op;
  }

  /**
   * Start the next phase: a single op (returned), or a ring phase (set up: null, the caller then
   * takes its first step); undefined at the end.
   */
  private advance(): Op | null | undefined {
    this.at = 0;
    this.end = 0;
    while (this.ph < this.phases.length) {
      const f = this.phases[this.ph++]!;
      if (f.kind === 'op') return f.op;
      if (f.n < 2) continue;
      this.n = f.n; this.to = f.next; this.from = f.prev; this.end = 2 * (f.n - 1);
      if (f.kind === 'rs') {
        this.pos = f.a; this.first = f.first; this.srcT = f.src; this.dstT = f.dst; this.accT = f.acc; this.red = f.op;
      } else {
        this.pos = f.a + 1; this.first = f.tab; this.srcT = f.tab; this.dstT = f.tab; this.accT = f.tab; this.red = undefined;
      }
      this.sendOp.peer = f.next;
      const rv = this.recvOp;
      rv.peer = f.prev; rv.op = this.red; rv.acc = undefined;
      return null;
    }
    return undefined;
  }
}
