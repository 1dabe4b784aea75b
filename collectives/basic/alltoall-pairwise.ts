/**
 * Pairwise AllToAll: p-1 steps; at step s rank r sends its block (r+s) mod p to rank (r+s) mod p
 * and receives block r of rank (r-s) mod p into out block (r-s) mod p. The own block is copied
 * locally (out-of-place), overlapping the first step.
 *
 * In-place the input and output share 'out': out block (r-s) is only free once it has been sent
 * (at step p-s) and consumed. Steps s with s <= p - s (s <= floor(p/2); for s = p/2 the block is
 * sent in the same step, and receiving into it would wait for a peer that waits too) therefore
 * receive into tmp slot s-1, and the slot is copied to out block (r-s) right after the send of step
 * p-s+1 (before that step's receive, so the copy overlaps the transfer); slot 1's copy (block r-1,
 * sent at the last step) comes at the end. Steps with s > p - s receive in place.
 *
 * Cost (m = 4c bytes; all ranks symmetric, one block per step):
 *   out-of-place: T = max(m D, a + m B) + (p-2)(a + m B)
 *   in-place:     T = (p-1-h)(a + m B) + h max(m D, a + m B) + [q >= 1] m D,
 *                 q = floor(p/2) tmp slots, h = max(0, q-1) overlapped copies
 *   both = (p-1)(a + n/p B), the textbook form (n = p m), when m D <= a + m B, plus m D in-place.
 *   p = 1: m D out-of-place, 0 in-place.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { by, copy, costParams, mod, out, recv, send, tmp, traffic } from './common.js';

export const pairwiseAlltoall: Algorithm = {
  coll: 'alltoall',
  name: 'pairwise',
  summary: 'p-1 pairwise exchange steps, own block copied locally',
  formula: 'oop: max(mD, a+mB) + (p-2)(a + mB); in-place: (p-1-h)(a+mB) + h max(mD, a+mB) + mD, h = max(0, floor(p/2)-1); = (p-1)(a + n/p B)',
  tmpElems(spec: CollSpec): number {
    return spec.inPlace ? Math.floor(spec.p / 2) * spec.count : 0;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace } = spec;
    const q = Math.floor(p / 2);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r);
      const ops: Op[] = [];
      const blk = (j: number) => out(mod(j, p) * c, c);
      if (!inPlace) {
        if (p === 1 && c > 0) ops.push(copy(I, out(0, c)));
        for (let s = 1; s < p; s++) {
          ops.push(send(mod(r + s, p), sub(I, mod(r + s, p) * c, c)));
          if (s === 1) ops.push(copy(sub(I, r * c, c), blk(r)));
          ops.push(recv(mod(r - s, p), blk(r - s)));
        }
      } else {
        for (let t = 1; t < p; t++) {
          ops.push(send(mod(r + t, p), blk(r + t)));
          const s = p - t + 1; // tmp slot whose out block was sent at the previous step
          if (s >= 2 && s <= q) ops.push(copy(tmp((s - 1) * c, c), blk(r - s)));
          ops.push(recv(mod(r - t, p), t <= q ? tmp((t - 1) * c, c) : blk(r - t)));
        }
        if (q >= 1) ops.push(copy(tmp(0, c), blk(r - 1)));
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const { a, B, D } = costParams(topo, traffic.allPairs(p));
    const m = by(c);
    const step = a + m * B;
    if (p === 1) return inPlace ? 0 : m * D;
    if (!inPlace) return Math.max(m * D, step) + (p - 2) * step;
    const q = Math.floor(p / 2), h = Math.max(0, q - 1);
    return (p - 1 - h) * step + h * Math.max(m * D, step) + (q >= 1 ? m * D : 0);
  },
};
