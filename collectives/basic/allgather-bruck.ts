/**
 * Bruck AllGather (Bruck et al. 1997), any p: rank r keeps a rotated buffer tmp where tmp block i
 * holds the block of rank (r+i) mod p. The own block goes to tmp[0]; at step k (k = 0..ceil(lg p)-1)
 * rank r sends its first min(2^k, p-2^k) blocks to rank r-2^k and receives as many into tmp block
 * 2^k from rank r+2^k. A final local rotation (two copies) puts tmp block i at out block (r+i) mod p.
 * Step 0 sends straight from the input, so the copy into tmp[0] overlaps it.
 *
 * Cost (L = ceil(lg p), m = 4c bytes; steps move 1, 2, 4, ..., and p - 2^(L-1) blocks, p-1 in all):
 *   T = max(m D, a + m B) + (L-1) a + (p-2) m B + R D,   R = p m (out-of-place), (p-1) m (in-place)
 *     = ceil(lg p) a + (p-1)/p n B + (rotation copies)  when m D <= a + m B
 *   p = 1: m D out-of-place, 0 in-place.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, type Algorithm, type CollSpec } from '../types.js';
import { by, ceilLog2, copy, costParams, mod, out, recv, send, tmp, traffic } from './common.js';

export const bruckAllgather: Algorithm = {
  coll: 'allgather',
  name: 'bruck',
  summary: 'Bruck: ceil(lg p) steps for any p, then a local rotation (copies through tmp)',
  formula: 'max(mD, a + mB) + (L-1) a + (p-2) mB + (p or p-1 in-place) mD, L = ceil(lg p); = L a + (p-1)/p n B + rotation',
  tmpElems(spec: CollSpec): number {
    return spec.p > 1 ? spec.p * spec.count : 0;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace } = spec;
    const L = ceilLog2(p);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(I, out(0, c)));
        progs.push(ops);
        continue;
      }
      for (let k = 0; k < L; k++) {
        const d = 2 ** k, nb = Math.min(d, p - d);
        ops.push(send(mod(r - d, p), k === 0 ? I : tmp(0, nb * c)));
        if (k === 0) ops.push(copy(I, tmp(0, c)));
        ops.push(recv(mod(r + d, p), tmp(d * c, nb * c)));
      }
      // rotation: tmp block i -> out block (r+i) mod p (in-place: the own block is already there)
      const skip = inPlace ? 1 : 0;
      if (p - r - skip > 0) ops.push(copy(tmp(skip * c, (p - r - skip) * c), out((r + skip) * c, (p - r - skip) * c)));
      if (r > 0) ops.push(copy(tmp((p - r) * c, r * c), out(0, r * c)));
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const { a, B, D } = costParams(topo, traffic.powersOfTwo(p));
    const m = by(c);
    if (p === 1) return inPlace ? 0 : m * D;
    const L = ceilLog2(p);
    return Math.max(m * D, a + m * B) + (L - 1) * a + (p - 2) * m * B + (inPlace ? p - 1 : p) * m * D;
  },
};
