/**
 * Recursive-doubling AllGather, any p.
 *
 * p = 2^L: at step k (k = 0..L-1) rank r exchanges everything its aligned group of 2^k ranks holds
 * (out blocks [g, g+2^k), contiguous) with partner r XOR 2^k. Step 0 sends from the input so the
 * out-of-place own-block copy overlaps it.
 *
 * Other p = p' + e (p' = 2^floor(lg p), 0 < e < p'): a balanced fold (see FoldMap in common.ts).
 *  1. fold: the e extra ranks' blocks, out[p'c..pc) seen as one region of e*c elements, are cut
 *     into p' nearly equal pieces; extra rank p'+j sends the parts of its block to the core ranks
 *     owning them (its sends serialize on its port: the last part arrives at a + m B);
 *  2. recursive doubling among the p' core ranks, each step carrying the group's core blocks and the
 *     group's extra pieces (two messages, pipelined on the port), so every pair moves the same
 *     ~2^k (c + e c / p') elements;
 *  3. unfold: core rank j < e sends everything but the extra rank's own block (two messages) to
 *     extra rank p'+j.
 * The fold's last piece lands on core p'-1 at a + m B; along the butterfly it reaches core 0 (which
 * unfolds to extra p') through every step, which is the critical path.
 *
 * Cost (m = 4c bytes):
 *   p = 2^L:  T = max(m D [oop], a + m B) + (L-1) a + (p-2) m B  = lg p a + (p-1)/p n B (textbook)
 *   else:     T = max(m D [oop], a + m B) + L' a + (p'-1)(p/p') m B + a + (p-1) m B,  L' = lg p'
 *             = (floor(lg p) + 2) a + (1 + (p'-1) p/p' + (p-1)) m B
 *   p = 1: m D out-of-place, 0 in-place.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { by, copy, costParams, floorPow2, FoldMap, msb, out, recv, send, traffic } from './common.js';

export const rdAllgather: Algorithm = {
  coll: 'allgather',
  name: 'rd',
  summary: 'recursive doubling; non-powers of two fold the extra ranks in balanced pieces',
  formula: "p=2^L: max(mD, a+mB) + (L-1) a + (p-2) mB = lg p a + (p-1)/p n B; else max(mD, a+mB) + (lg p' + 1) a + ((p'-1)p/p' + p-1) mB, p' = 2^floor(lg p)",
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace } = spec;
    const pc = floorPow2(p), e = p - pc, L = msb(pc);
    const fm = new FoldMap(pc, e, c);
    const X = pc * c; // start of the extra region in out
    const coreReg = (g: number, size: number) => out(g * c, size * c);
    const extraReg = (g: number, size: number) => { const s = fm.span(g, g + size); return out(X + s.off, s.len); };
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(I, out(0, c)));
      } else if (r >= pc) {
        // extra rank: fold its block into the core, then wait for the result
        const j = r - pc;
        for (let v = 0; v < pc; v++) for (const pm of fm.msgs[v]!) if (pm.extra === j) ops.push(send(v, sub(I, pm.off - j * c, pm.len)));
        if (!inPlace) ops.push(copy(I, out(r * c, c)));
        ops.push(recv(j, out(0, r * c)));
        ops.push(recv(j, out((r + 1) * c, (p - 1 - r) * c)));
      } else if (e === 0) {
        for (let k = 0; k < L; k++) {
          const size = 2 ** k, u = r ^ size;
          const g = r & ~(size - 1), gu = u & ~(size - 1);
          ops.push(send(u, k === 0 ? I : coreReg(g, size)));
          if (k === 0 && !inPlace) ops.push(copy(I, out(r * c, c)));
          ops.push(recv(u, coreReg(gu, size)));
        }
      } else {
        if (!inPlace) ops.push(copy(I, out(r * c, c)));
        for (const pm of fm.msgs[r]!) ops.push(recv(pc + pm.extra, out(X + pm.off, pm.len)));
        for (let k = 0; k < L; k++) {
          const size = 2 ** k, u = r ^ size;
          const g = r & ~(size - 1), gu = u & ~(size - 1);
          ops.push(send(u, coreReg(g, size)), send(u, extraReg(g, size)));
          ops.push(recv(u, coreReg(gu, size)), recv(u, extraReg(gu, size)));
        }
        if (r < e) {
          const x = pc + r;
          ops.push(send(x, out(0, x * c)), send(x, out((x + 1) * c, (p - 1 - x) * c)));
        }
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const { a, B, D } = costParams(topo, traffic.butterfly(p, c));
    const m = by(c);
    const cp = inPlace ? 0 : m * D;
    if (p === 1) return cp;
    const pc = floorPow2(p), e = p - pc, L = msb(pc);
    const first = Math.max(cp, a + m * B);
    if (e === 0) return first + (L - 1) * a + (p - 2) * m * B;
    return first + L * a + ((pc - 1) * p / pc) * m * B + a + (p - 1) * m * B;
  },
};
