/**
 * Ring AllReduce (Patarasuk & Yuan 2009; NCCL's ring): a reduce-scatter around the ring in p-1
 * steps, then an all-gather in p-1 steps. Block b of the vector is reduced as it travels; rank r
 * ends the reduce-scatter owning block (r+1) mod p, fully reduced.
 *
 * Cost (flat, block bytes b = ceil(n/p) elements * 4):
 *   T = 2(p-1) alpha + 2(p-1) b beta + (p-1) b gamma  [+ b delta for avg's scale]
 * which is the textbook 2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma when p divides n.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';

export const ringAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'ring',
  summary: 'reduce-scatter then all-gather around a ring; bandwidth-optimal',
  formula: '2(p-1) a + 2(p-1)/p n B + (p-1)/p n G',
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
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    const { gamma, delta } = topo.data;
    if (p === 1) return spec.inPlace ? 0 : c * 4 * delta;
    const b = Math.ceil(c / p) * 4;
    const l = topo.slowestLink();
    const scale = spec.op === 'avg' ? b * delta : 0;
    return 2 * (p - 1) * (l.alpha + b / l.bw) + (p - 1) * b * gamma + scale;
  },
};
