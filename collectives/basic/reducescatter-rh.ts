/**
 * Recursive-halving ReduceScatter, any p.
 *
 * p = 2^L: at step k (k = 0..L-1, distance d = p/2^(k+1)) rank r holds partial sums of a window of
 * 2d blocks containing block r; it sends the half not containing r to partner r XOR d and
 * recv-reduces the partner's partials of its own half. After L steps it holds block r.
 *
 * Other p = p' + e (p' = 2^floor(lg p), 0 < e < p'): the dual of rd allgather's balanced fold.
 *  1. fold: extra rank p'+j sends its whole input (p*c elements) to core rank j, which reduces it
 *     into its own;
 *  2. recursive halving among the p' core ranks over a virtual vector of p' segments: segment v =
 *     block v plus piece v of the extra blocks' region (blocks p'..p-1, cut into p' nearly equal
 *     pieces, FoldMap in common.ts); each step sends two messages (core blocks, extra pieces) so
 *     every pair moves ~d (c + e c / p') elements;
 *  3. unfold: core rank v sends its fully reduced piece to the extra rank(s) the piece belongs to.
 * Folded core ranks start at a + p m (B + G); the core ranks they reach through every butterfly step
 * (v XOR (p'-1)) finish last and send their pieces, ~e c / p' elements, to the extras.
 * A step's two messages (core part m1 bytes, then extra part m2 ~ (e/p') m1) pipeline on the port,
 * so the reduction of the first overlaps the transmission of the second: the step takes
 * a + m1 B + max(m1 G, m2 B) + m2 G. m1 and m2 halve together each step, so the max factors out.
 * Out-of-place partials live in tmp (p*c elements when folding, else the half window, p/2*c).
 *
 * Cost (m = 4c bytes; 'avg' adds one scale of the own block, m D, at the end):
 *   p = 2^L:  T = L a + (p-1) m (B + G)  = lg p a + (p-1)/p n (B + G)   (textbook)
 *   else:     T = [a + p m (B+G)]                                           fold
 *               + L' a + (p'-1) m (B + max(G, f B) + f G),  f = e/p', L' = lg p'   halving
 *               + a + 4 ceil(e c/p') B                                          unfold
 *             (= (lg p' + 2) a + (p + (p'-1) p/p') m (B + G) + ..., less the overlapped G)
 *   p = 1: m D (out-of-place copy).
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { by, copy, costParams, floorPow2, FoldMap, msb, out, recv, recvReduce, scale, send, tmp, traffic } from './common.js';

export const rhReducescatter: Algorithm = {
  coll: 'reducescatter',
  name: 'rh',
  summary: 'recursive halving; non-powers of two fold the extra ranks in, balanced pieces out',
  formula: "p=2^L: L a + (p-1) m (B+G) = lg p a + (p-1)/p n (B+G); else (lg p' + 2) a + p m (B+G) + (p'-1) m (B + max(G, fB) + fG) + 4 ceil(ec/p') B, p' = 2^floor(lg p), e = p-p', f = e/p' [+ mD avg]",
  tmpElems(spec: CollSpec): number {
    const { p, count: c, inPlace } = spec;
    if (inPlace || p <= 2) return 0;
    return floorPow2(p) === p ? (p / 2) * c : p * c;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace, op } = spec;
    const pc = floorPow2(p), e = p - pc, L = msb(pc);
    const fm = new FoldMap(pc, e, c);
    const X = pc * c;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(I, O));
      } else if (r >= pc) {
        const j = r - pc;
        ops.push(send(j, I));
        for (let v = 0; v < pc; v++) for (const pm of fm.msgs[v]!) if (pm.extra === j) ops.push(recv(v, sub(O, pm.off - j * c, pm.len)));
      } else {
        const folded = r < e;
        const base = inPlace || e > 0 || r < pc / 2 ? 0 : (pc / 2) * c;
        const W = (g: number, len: number): Region => (inPlace ? out(g, len) : tmp(g - base, len));
        if (folded) ops.push(recvReduce(pc + r, W(0, p * c), op, I));
        for (let k = 0; k < L; k++) {
          const d = pc / 2 ** (k + 1), u = r ^ d;
          const mine = r & ~(d - 1), other = u & ~(d - 1);
          const first = k === 0 && !folded, last = k === L - 1;
          const src = (g: number, len: number) => (first ? sub(I, g, len) : W(g, len));
          const ex = (lo: number) => { const s = fm.span(lo, lo + d); return { g: X + s.off, len: s.len }; };
          ops.push(send(u, src(other * c, d * c)));
          if (e > 0) { const x = ex(other); ops.push(send(u, src(x.g, x.len))); }
          ops.push(recvReduce(u, last ? O : W(mine * c, d * c), op, src(mine * c, d * c)));
          if (e > 0) { const x = ex(mine); ops.push(recvReduce(u, W(x.g, x.len), op, src(x.g, x.len))); }
        }
        for (const pm of e > 0 ? fm.msgs[r]! : []) ops.push(send(pc + pm.extra, W(X + pm.off, pm.len)));
      }
      if (op === 'avg') ops.push(scale(O, 1 / p));
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace, op } = spec;
    const { a, B, G, D } = costParams(topo, traffic.butterfly(p, c));
    const m = by(c);
    const sc = op === 'avg' ? m * D : 0;
    if (p === 1) return (inPlace ? 0 : m * D) + sc;
    const pc = floorPow2(p), e = p - pc, L = msb(pc);
    if (e === 0) return L * a + (p - 1) * m * (B + G) + sc;
    const fold = a + p * m * (B + G);
    const f = e / pc;
    const halving = L * a + (pc - 1) * m * (B + Math.max(G, f * B) + f * G);
    const unfold = a + by(Math.ceil((e * c) / pc)) * B;
    return fold + halving + unfold + sc;
  },
};
