/**
 * Ring AllGather: p-1 steps; at step s rank r forwards block (r-s) mod p to r+1 and receives block
 * (r-s-1) mod p from r-1. Step 0 sends straight from the input, so the out-of-place local copy of
 * the own block (in -> out[r*c]) overlaps the first transfer.
 *
 * Cost (every block is c elements, m = 4c bytes; all ranks are symmetric, so each step is one
 * message latency plus one block on the wire):
 *   T = max(m D [out-of-place only], a + m B) + (p-2)(a + m B)
 *     = (p-1) a + (p-1)/p n B   (n = p m, the textbook form, when m D <= a + m B)
 *   p = 1: m D out-of-place, 0 in-place.
 * Multi-node and pods (hops differ): the ring estimate of collectives/ringtime.ts (slowest port,
 * chain of mean hops); measured against the simulator in test/protocols.test.ts.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, type Algorithm, type CollSpec } from '../types.js';
import { ringHops, ringTimeEstimate } from '../ringtime.js';
import { by, copy, mod, out, recv, send } from './common.js';

export const ringAllgather: Algorithm = {
  coll: 'allgather',
  name: 'ring',
  summary: 'p-1 steps around a ring, one block per step; bandwidth-optimal',
  formula: 'max(mD [oop], a + mB) + (p-2)(a + mB) = (p-1) a + (p-1)/p n B, m = n/p',
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace } = spec;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(I, out(0, c)));
        progs.push(ops);
        continue;
      }
      const next = mod(r + 1, p), prev = mod(r - 1, p);
      for (let s = 0; s < p - 1; s++) {
        ops.push(send(next, s === 0 ? I : out(mod(r - s, p) * c, c)));
        if (s === 0 && !inPlace) ops.push(copy(I, out(r * c, c)));
        ops.push(recv(prev, out(mod(r - s - 1, p) * c, c)));
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const m = by(c);
    const cp = inPlace ? 0 : m * topo.data.delta;
    if (p === 1) return cp;
    // the recurrence of collectives/ringtime.ts with K = 1: on flat exactly the formula above;
    // with unlike hops (multi-node, pods) its three-path estimate
    return ringTimeEstimate(ringHops(topo, p, (l) => m / l.bw), p - 1, 1, () => 0, 0, cp);
  },
};
