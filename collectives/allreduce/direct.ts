/**
 * Direct (one-shot) AllReduce: every rank sends its whole input to every other rank and reduces the
 * p inputs locally. One message latency, but p-1 full-size messages through each rank's port: the
 * algorithm for tiny messages.
 *
 * Reduction order: every rank computes the same chain (((x0 (+) x1) (+) x2) (+) ...) (+) x_{p-1} in
 * canonical rank order, so all ranks hold the same bits (as the other algorithms). IEEE +, *, max,
 * min are commutative, so acc (+) incoming equals incoming (+) acc bit for bit, and the step that
 * brings in x_r may be a fused recv-reduce on one rank and a local reduce on another.
 *
 * Schedule (rank r, A = the accumulator: 'out', or tmp[0..n) in-place):
 *  - sends its input to 0, 1, ..., p-1 (skipping itself), in increasing rank order, all issued at
 *    time 0 (the queue of each egress port follows this order);
 *  - receives from 0, 1, ..., p-1 (skipping itself) in that order:
 *      r = 0: A = x0 (+) x1 (fused recv-reduce with acc = its input), then A (+)= x2, ...;
 *      r = 1: A = x1 (+) x0 (fused, = x0 (+) x1), then A (+)= x2, ...;
 *      r >= 2: plain recv A = x0, A (+)= x1, ..., x_{r-1}, then a local reduce A = A (+) x_r, then
 *              A (+)= x_{r+1}, ..., x_{p-1}.
 *    Every rank does p-1 reductions of n bytes.
 *  - in-place: 'out' holds the input, which is being sent (zero-copy) and must not be overwritten
 *    before all p-1 peers have read it, so the partials go to tmp[0..n) and a final copy moves them
 *    to 'out'.
 *  - avg: one scale of 'out' by 1/p at the end.
 *
 * Cost. Rank q's message to r is the pos-th in q's queue for that link class c, so it arrives at
 * pos n beta_c + alpha_c. After x_j arrives, rank r still has c_j = p - max(j, 1) reductions to do
 * (x0 and x1 both enter the first one; the local x_r is there at time 0), so
 *   E_r = max(max_{j != r} (arr_j(r) + c_j n gamma), (p-1) n gamma).
 * With increasing-rank send order, pos = (r's place among q's peers of that class), and all terms
 * are linear in r, so the maximum sits at an end: x0 reaching the last rank of rank 0's queue of
 * each port. Flat (one port):
 *   T = alpha + (p-1) n beta + (p-1) n gamma                                  [+ n delta in-place] [+ n delta avg]
 * Multi-node (g GPUs per node, separate intra- and inter-node egress ports; rank g-1 gets x0 as
 * the (g-1)-th NVLink message of rank 0, rank p-1 as its (p-g)-th network message):
 *   T = max(alpha_1 + (g-1) n beta_1, alpha_2 + (p-g) n beta_2) + (p-1) n gamma  [+ n delta ...]
 * (the intra term only for g >= 2). With a partial last node (p not a multiple of g), also
 * alpha_2 + max(g n beta_2 + (p-g) n gamma, M n beta_2 + (p-M) n gamma), M = g (ceil(p/g) - 1):
 * the first input of a later node reaching the last rank before it (dominated when nodes are full).
 * This is also a lower bound for any schedule that reduces whole
 * messages in this fixed order: every rank needs x0 before its first reduction, rank 0 sends x0
 * through each port serially, and the rank that gets it last still has p-1 reductions to do. So the
 * price of bit-identical results is the max(...) of the rank-dependent order becoming a sum:
 * alpha + max(n beta + (p-1) n gamma, (p-1) n beta + n gamma) before, for a flat topology.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { singleRankCost, singleRankProgram } from './common.js';

export const directAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'direct',
  summary: 'one-shot: every rank sends its whole input to all others and reduces locally; for tiny messages',
  formula: 'max(a1 + (g-1) n B1, a2 + (p-g) n B2) + (p-1) n G [+ n D in-place] [+ n D avg]; flat: a + (p-1) n (B + G); g GPUs/node, 1 = intra, 2 = inter',
  tmpElems(spec: CollSpec): number {
    return spec.inPlace && spec.p > 1 ? spec.count : 0;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, op } = spec;
    if (p === 1) return singleRankProgram(spec);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const A = spec.inPlace ? { buf: 'tmp' as const, off: 0, len: c } : O;
      const ops: Op[] = [];
      for (let q = 0; q < p; q++) if (q !== r) ops.push({ k: 'send', peer: q, src: I });
      // canonical order x0, x1, ..., x_{p-1}; the first two enter one reduction
      if (r <= 1) ops.push({ k: 'recv', peer: 1 - r, dst: A, op, acc: I });
      else {
        ops.push({ k: 'recv', peer: 0, dst: A });
        for (let q = 1; q < r; q++) ops.push({ k: 'recv', peer: q, dst: A, op, acc: A });
        ops.push({ k: 'reduce', a: A, b: I, dst: A, op });
      }
      for (let q = Math.max(r, 1) + 1; q < p; q++) ops.push({ k: 'recv', peer: q, dst: A, op, acc: A });
      if (spec.inPlace) ops.push({ k: 'copy', src: A, dst: O });
      if (op === 'avg') ops.push({ k: 'scale', dst: O, factor: 1 / p });
      progs.push(ops);
    }
    return progs;
  },
  rankProgram(spec: CollSpec, _topo: Topology, r: number): Iterable<Op> {
    return { [Symbol.iterator]: () => directRankOps(spec, r) };
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    if (p === 1) return singleRankCost(spec, topo);
    const { gamma, delta } = topo.data;
    const n = c * 4;
    const local = (spec.inPlace ? n * delta : 0) + (spec.op === 'avg' ? n * delta : 0);
    const reductions = (p - 1) * n * gamma;
    const G = topo.data.gpusPerNode;
    if (p <= G || topo.data.intra === topo.data.inter) {
      // one port: rank p-1 gets x0 as rank 0's (p-1)-th message
      const l = topo.data.links[p <= G ? topo.data.intra : topo.data.inter]!;
      return l.alpha + (p - 1) * n / l.bw + reductions + local;
    }
    // Two ports: x0 reaches rank G-1 as rank 0's (G-1)-th NVLink message and rank p-1 as its
    // (p-G)-th network message, and each then has p-1 reductions to do. The other terms of
    // max_r E_r: x_m (m = first rank of a later node) reaching rank m-1 as the m-th network message,
    // p-m reductions before the end, linear in m in [G, M], M = first rank of the last node; with
    // full nodes (M = p-G) they are dominated, a partial last node makes them count.
    const li = topo.data.links[topo.data.intra]!, le = topo.data.links[topo.data.inter]!;
    const bi = n / li.bw, be = n / le.bw;
    const M = (Math.ceil(p / G) - 1) * G;
    const intra = G >= 2 ? li.alpha + (G - 1) * bi + reductions : 0;
    let inter = le.alpha + Math.max((p - G) * be + reductions, G * be + (p - G) * n * gamma, M * be + (p - M) * n * gamma);
    const pod = topo.data.pod;
    if (pod && p > pod.gpus) {
      // pods (llama3): rank 0's network messages go first to the other nodes of its pod, then across
      // pods (on the same NIC port when the classes share it); x0 reaches the last rank of the pod
      // and the last rank overall at the ends of those queues. The later-node terms above are kept
      // with the cross-pod link (an estimate; measured in test/protocols.test.ts).
      const lx = topo.data.links[pod.link]!, bx = n / lx.bw;
      const nPod = pod.gpus - G, nX = p - pod.gpus;
      const shared = topo.port(0, G) === topo.port(0, pod.gpus);
      inter = Math.max(
        le.alpha + nPod * be + reductions,
        lx.alpha + (shared ? nPod * be : 0) + nX * bx + reductions,
        lx.alpha + Math.max(G * bx + (p - G) * n * gamma, M * bx + (p - M) * n * gamma),
      );
    }
    return Math.max(intra, inter) + local;
  },
};

/** Rank r's ops of build(spec)[r], generated lazily (the body of direct's rankProgram). */
function* directRankOps(spec: CollSpec, r: number): Generator<Op> {
  const { p, count: c, op } = spec;
  if (p === 1) {
    yield* singleRankProgram(spec)[0]!;
    return;
  }
  const I = inputRegion(spec, r), O = outputRegion(spec, r);
  const A = spec.inPlace ? { buf: 'tmp' as const, off: 0, len: c } : O;
  for (let q = 0; q < p; q++) if (q !== r) yield { k: 'send', peer: q, src: I };
  if (r <= 1) yield { k: 'recv', peer: 1 - r, dst: A, op, acc: I };
  else {
    yield { k: 'recv', peer: 0, dst: A };
    for (let q = 1; q < r; q++) yield { k: 'recv', peer: q, dst: A, op, acc: A };
    yield { k: 'reduce', a: A, b: I, dst: A, op };
  }
  for (let q = Math.max(r, 1) + 1; q < p; q++) yield { k: 'recv', peer: q, dst: A, op, acc: A };
  if (spec.inPlace) yield { k: 'copy', src: A, dst: O };
  if (op === 'avg') yield { k: 'scale', dst: O, factor: 1 / p };
}
