/**
 * Direct (one-shot) AllReduce: every rank sends its whole input to every other rank and reduces the
 * p inputs locally. One message latency, but p-1 full-size messages through each rank's port: the
 * algorithm for tiny messages.
 *
 * Schedule (rank r): sends to r+1, r+2, ..., r+p-1 (mod p), all issued at time 0 and serialized on
 * r's egress port; then receives from r-1, r-2, ..., r-(p-1) in that order, reducing each into the
 * accumulator. The k-th receive of rank r is the k-th send of rank r-k, so it arrives at
 * k n beta + alpha. The reduction order is r, r-1, ..., r-p+1: deterministic, but rank-dependent,
 * so float sums/products may differ in the last bits between ranks (within the reference
 * tolerance); the other algorithms reduce each element once and copy it, so all ranks agree bit
 * for bit.
 *  - out-of-place: acc = in, first receive writes out = in (+) x, the rest out = out (+) x.
 *  - in-place: 'out' holds the input, which is being sent (zero-copy) and must not be overwritten
 *    before all p-1 peers have read it. The partial sums go to tmp[0..n) and a final copy moves
 *    them to 'out'. (Writing 'out' in the last receive instead deadlocks: every rank would wait
 *    for a peer that is itself waiting at its last receive.)
 *  - avg: one scale of 'out' by 1/p at the end.
 *
 * Cost (flat, n bytes, E_k = max(E_{k-1}, k n beta + alpha) + n gamma, linear in k so the max sits
 * at an end):
 *   T = alpha + max(n beta + (p-1) n gamma, (p-1) n beta + n gamma)  [+ n delta in-place]  [+ n delta avg]
 * Multi-node: intra- and inter-node sends queue on separate ports, so the arrival of each message
 * is (its place in the sender's queue of that class) x n beta_c + alpha_c, and
 *   T = max over receivers r and k of (arrival of r's k-th receive + (p-k) n gamma) [+ n D ...]
 * (the same recurrence, solved per message instead of in the two-term form).
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { singleRankCost, singleRankProgram } from './common.js';

export const directAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'direct',
  summary: 'one-shot: every rank sends its whole input to all others and reduces locally; for tiny messages',
  formula: 'a + max(n B + (p-1) n G, (p-1) n B + n G) [+ n D in-place] [+ n D avg]',
  tmpElems(spec: CollSpec): number {
    return spec.inPlace && spec.p > 1 ? spec.count : 0;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, op } = spec;
    if (p === 1) return singleRankProgram(spec);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const acc = spec.inPlace ? { buf: 'tmp' as const, off: 0, len: c } : O;
      const ops: Op[] = [];
      for (let k = 1; k < p; k++) ops.push({ k: 'send', peer: (r + k) % p, src: I });
      for (let k = 1; k < p; k++) {
        ops.push({ k: 'recv', peer: (r - k + p) % p, dst: acc, op, acc: k === 1 ? I : acc });
      }
      if (spec.inPlace) ops.push({ k: 'copy', src: acc, dst: O });
      if (op === 'avg') ops.push({ k: 'scale', dst: O, factor: 1 / p });
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    if (p === 1) return singleRankCost(spec, topo);
    const { gamma, delta } = topo.data;
    const n = c * 4;
    const local = (spec.inPlace ? n * delta : 0) + (spec.op === 'avg' ? n * delta : 0);
    const G = topo.data.gpusPerNode;
    if (p <= G || topo.data.intra === topo.data.inter) {
      const l = topo.data.links[p <= G ? topo.data.intra : topo.data.inter]!;
      const beta = 1 / l.bw;
      return l.alpha + Math.max(n * beta + (p - 1) * n * gamma, (p - 1) * n * beta + n * gamma) + local;
    }
    // Multi-node: intra and inter sends queue on separate ports. Rank q (local index lq) sends to
    // q+1..q+p-1; its same-node peers are the offsets j in [1, G-1-lq] and [p-lq, p-1]. The k-th
    // receive of rank r (from q = r-k) arrives at pos * n beta_c + alpha_c, pos = its place in q's
    // queue of class c, and E = max_k (arrival_k + (p-k) n gamma). By symmetry one rank per local
    // index suffices; the terms are closed-form, so this is a max over (G x (p-1)) values.
    const li = topo.data.links[topo.data.intra]!, le = topo.data.links[topo.data.inter]!;
    let worst = 0;
    for (let r = 0; r < G; r++) {
      for (let k = 1; k < p; k++) {
        const q = (r - k + p) % p, lq = q % G;
        const intraUpTo = Math.min(k, G - 1 - lq) + Math.max(0, k - (p - lq) + 1);
        const sameNode = Math.floor(q / G) === Math.floor(r / G);
        const arr = sameNode ? intraUpTo * n / li.bw + li.alpha : (k - intraUpTo) * n / le.bw + le.alpha;
        worst = Math.max(worst, arr + (p - k) * n * gamma);
      }
    }
    return worst + local;
  },
};
