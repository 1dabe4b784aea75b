/**
 * Ring Reduce = ring reduce-scatter + direct gather to the root. The vector is cut into p nearly
 * equal blocks (blocks(count, p)); p-1 ring steps leave rank r with block r fully reduced (as in
 * ring reduce-scatter, partials accumulate in 'out'); 'avg' scales each block once, on its owner;
 * then every rank but the root sends its block straight to the root (receiver ingress is not
 * modeled, so the gather costs one message time).
 *
 * Cost (b = 4 ceil(c/p) bytes, the largest block; uneven blocks differ by one element):
 *   T = (p-1)(a + b B + b G) [+ b D for avg] + a + b B
 *     = p a + (p-1)/p n (B + G) + n/p B  when p divides c
 *   p = 1: n D (out-of-place copy) [+ n D for avg].
 * Multi-node and pods: the reduce-scatter by the ring estimate of collectives/ringtime.ts, the gather
 * at the slowest pair to the root; measured in test/protocols.test.ts.
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { ringHops, ringTimeEstimate } from '../ringtime.js';
import { by, copy, mod, recv, recvReduce, scale, send } from './common.js';

export const ringReduce: Algorithm = {
  coll: 'reduce',
  name: 'ring',
  summary: 'ring reduce-scatter, then every block straight to the root',
  formula: '(p-1)(a + bB + bG) [+ bD avg] + a + bB, b = 4 ceil(c/p); = p a + (p-1)/p n (B+G) + n/p B',
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace, root, op } = spec;
    const bl = blocks(c, p);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(I, O));
        if (op === 'avg') ops.push(scale(O, 1 / p));
        progs.push(ops);
        continue;
      }
      const blk = (reg: Region, j: number) => { const b = bl[mod(j, p)]!; return sub(reg, b.off, b.len); };
      const next = mod(r + 1, p), prev = mod(r - 1, p);
      for (let s = 0; s < p - 1; s++) {
        ops.push(send(next, blk(s === 0 ? I : O, r - s - 1)));
        ops.push(recvReduce(prev, blk(O, r - s - 2), op, blk(I, r - s - 2)));
      }
      if (op === 'avg') ops.push(scale(blk(O, r), 1 / p));
      if (r !== root) ops.push(send(root, blk(O, r)));
      else for (let j = 1; j < p; j++) ops.push(recv(mod(r + j, p), blk(O, r + j)));
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace, op } = spec;
    const { gamma: G, delta: D } = topo.data;
    if (p === 1) return (inPlace ? 0 : by(c) * D) + (op === 'avg' ? by(c) * D : 0);
    const b = by(Math.ceil(c / p));
    const sc = op === 'avg' ? b * D : 0;
    // reduce-scatter: collectives/ringtime.ts (exact on flat, an estimate with unlike hops); gather:
    // the slowest pair to the root
    const rs = ringTimeEstimate(ringHops(topo, p, (l) => b / l.bw), p - 1, 1, (s) => b * G + (s === p - 2 ? sc : 0), 0, 0);
    let gather = 0;
    for (let r = 0; r < p; r++) if (r !== spec.root) { const l = topo.link(r, spec.root); gather = Math.max(gather, l.alpha + b / l.bw); }
    return rs + gather;
  },
};
