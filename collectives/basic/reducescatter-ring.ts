/**
 * Ring ReduceScatter: p-1 steps; at step s rank r sends its partial sum of block (r-s-1) mod p to
 * r+1 and receives the partial of block (r-s-2) mod p from r-1, reducing it with its own input
 * block (fused recv-reduce). After p-1 steps rank r holds block r fully reduced. In-place the
 * partials accumulate in place in 'out'; out-of-place they alternate between tmp[0..c) and out[0..c),
 * arranged so the last step lands in out. 'avg' scales the final block once.
 *
 * Cost (blocks are c elements, m = 4c bytes; all ranks symmetric):
 *   T = (p-1)(a + m B + m G) [+ m D for avg]
 *     = (p-1) a + (p-1)/p n B + (p-1)/p n G   (n = p m, textbook)
 *   p = 1: m D (out-of-place copy) [+ m D for avg].
 * Multi-node and pods (hops differ): the ring estimate of collectives/ringtime.ts; measured in
 * test/protocols.test.ts.
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { ringHops, ringTimeEstimate } from '../ringtime.js';
import { by, copy, mod, out, recvReduce, scale, send, tmp } from './common.js';

export const ringReducescatter: Algorithm = {
  coll: 'reducescatter',
  name: 'ring',
  summary: 'p-1 steps around a ring, reducing one block per step; bandwidth-optimal',
  formula: '(p-1)(a + mB + mG) [+ mD avg] = (p-1) a + (p-1)/p n (B + G), m = n/p',
  tmpElems(spec: CollSpec): number {
    return !spec.inPlace && spec.p > 2 ? spec.count : 0;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace, op } = spec;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(sub(I, 0, c), O));
        if (op === 'avg') ops.push(scale(O, 1 / p));
        progs.push(ops);
        continue;
      }
      const next = mod(r + 1, p), prev = mod(r - 1, p);
      const inBlk = (j: number) => sub(I, mod(j, p) * c, c);
      // where the partial received at step s lives
      const part = (s: number): Region => (inPlace ? out(mod(r - s - 2, p) * c, c) : (p - 2 - s) % 2 === 0 ? out(0, c) : tmp(0, c));
      for (let s = 0; s < p - 1; s++) {
        ops.push(send(next, s === 0 ? inBlk(r - 1) : part(s - 1)));
        ops.push(recvReduce(prev, part(s), op, inBlk(r - s - 2)));
      }
      if (op === 'avg') ops.push(scale(O, 1 / p));
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace, op } = spec;
    const { gamma: G, delta: D } = topo.data;
    const m = by(c);
    const sc = op === 'avg' ? m * D : 0;
    if (p === 1) return (inPlace ? 0 : m * D) + sc;
    // collectives/ringtime.ts with K = 1: on flat exactly (p-1)(a + mB + mG) + sc; with unlike hops
    // (multi-node, pods) its three-path estimate
    return ringTimeEstimate(ringHops(topo, p, (l) => m / l.bw), p - 1, 1, (s) => m * G + (s === p - 2 ? sc : 0), 0, 0);
  },
};
