/**
 * Binomial-tree Reduce to spec.root. With relative rank v = (r - root) mod p, rank v receives (and
 * reduces, fused) from its children v + 2^k for k = 0, 1, ... below the lowest set bit of v (all k
 * with 2^k < p for the root), nearest first, then sends its partial to its parent v - lowbit(v).
 * Partials accumulate in 'out' (every rank has one; in-place it already holds the input); leaves
 * send straight from their input. 'avg' scales once at the root.
 *
 * Cost (X = a + n B, g = n G). A complete subtree of height h finishes at h (X + g). The root's
 * children 1, 2, ..., 2^(L-2) head complete subtrees; the last, 2^(L-1), heads the first
 * q - 2^(L-1) ranks of the same shape, so with L_q = ceil(lg q):
 *   R(1) = 0,   R(q) = max( (L_q - 1)(X + g),  R(q - 2^(L_q - 1)) + X ) + g
 *   T = R(p) [+ n D for avg]      (a max over the <= lg p binary digits of p; = lg p (a + nB + nG)
 *                                  for p = 2^L, the textbook form)
 *   p = 1: n D (out-of-place copy) [+ n D for avg].
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { by, ceilLog2, copy, costParams, lsb, mod, recvReduce, scale, send, traffic } from './common.js';

/** R(q) of the header: finishing time of a binomial reduce over q ranks. */
export function binomialReduceTime(q: number, X: number, g: number): number {
  if (q <= 1) return 0;
  const L = ceilLog2(q);
  return Math.max((L - 1) * (X + g), binomialReduceTime(q - 2 ** (L - 1), X, g) + X) + g;
}

export const binomialReduce: Algorithm = {
  coll: 'reduce',
  name: 'binomial',
  summary: 'binomial tree to the root, ceil(lg p) levels, fused recv-reduce',
  formula: 'R(p) [+ nD avg], R(1)=0, R(q) = max((L_q-1)(X+g), R(q-2^(L_q-1)) + X) + g, X = a + nB, g = nG, L_q = ceil(lg q); = lg p (a + nB + nG) for p = 2^L',
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace, root, op } = spec;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      const v = mod(r - root, p);
      const rank = (w: number) => mod(w + root, p);
      const lim = v === 0 ? p : 2 ** lsb(v); // children v + d for d < lim
      let have = false; // partial in O yet?
      for (let d = 1; d < lim && v + d < p; d *= 2) {
        ops.push(recvReduce(rank(v + d), O, op, have ? O : I));
        have = true;
      }
      if (v !== 0) ops.push(send(rank(v - lim), have ? O : I));
      else {
        if (!have && !inPlace && c > 0) ops.push(copy(I, O));
        if (op === 'avg') ops.push(scale(O, 1 / p));
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace, op } = spec;
    const { a, B, G, D } = costParams(topo, traffic.binomial(p, spec.root));
    const n = by(c);
    const sc = op === 'avg' ? n * D : 0;
    if (p === 1) return (inPlace ? 0 : n * D) + sc;
    return binomialReduceTime(p, a + n * B, n * G) + sc;
  },
};
