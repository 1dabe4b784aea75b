/**
 * Binomial-tree Broadcast from spec.root. With relative rank v = (r - root) mod p, rank v > 0
 * receives from v - 2^msb(v) and then sends to v + 2^k for k = msb(v)+1, msb(v)+2, ... while
 * v + 2^k < p (the root sends to 1, 2, 4, ...), nearest child first. The root sends straight from
 * its input, so its out-of-place copy in -> out overlaps the tree.
 *
 * Cost. Sends are asynchronous and serialize on the sender's port, so a parent's j-th send arrives
 * j n B + a after the parent received; along the path to v this sums to
 *   T(v) = popcount(v) a + (msb(v) + 1) n B.
 * Maximizing over 1 <= v <= p-1 (L = ceil(lg p); the best v below 2^(L-1) is 2^(L-1) - 1):
 *   T = max( (L-1)(a + n B),  P a + L n B ),   P = 1 + max(popcount(q), msb(q)), q = p-1-2^(L-1)
 *   (max(popcount(q), msb(q)) is the largest popcount of 0..q; 0 for q = 0), and out-of-place
 *   T = max(T, n D) for the root's copy. For p = 2^L this is the textbook lg p (a + n B); otherwise
 *   it is below ceil(lg p)(a + n B) because a parent's later sends overlap the earlier latencies.
 *   p = 1: n D out-of-place, 0 in-place.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { by, ceilLog2, copy, costParams, maxPopLE, mod, msb, recv, send, traffic } from './common.js';

export const binomialBroadcast: Algorithm = {
  coll: 'broadcast',
  name: 'binomial',
  summary: 'binomial tree from the root, ceil(lg p) levels',
  formula: 'max((L-1)(a + nB), P a + L nB) [, nD oop root copy], L = ceil(lg p), P = 1 + maxpopcount(0..p-1-2^(L-1)); = lg p (a + nB) for p = 2^L',
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace, root } = spec;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      const v = mod(r - root, p);
      const rank = (w: number) => mod(w + root, p);
      if (v === 0) {
        for (let d = 1; d < p; d *= 2) ops.push(send(rank(d), I));
        if (!inPlace && c > 0) ops.push(copy(I, O));
      } else {
        const h = msb(v);
        ops.push(recv(rank(v - 2 ** h), O));
        for (let d = 2 ** (h + 1); v + d < p; d *= 2) ops.push(send(rank(v + d), O));
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const { a, B, D } = costParams(topo, traffic.binomial(p, spec.root));
    const n = by(c);
    const cp = inPlace ? 0 : n * D;
    if (p === 1) return cp;
    const L = ceilLog2(p);
    const P = 1 + maxPopLE(p - 1 - 2 ** (L - 1));
    return Math.max(cp, (L - 1) * (a + n * B), P * a + L * n * B);
  },
};
