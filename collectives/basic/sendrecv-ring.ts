/**
 * Ring SendRecv (as nccl-tests sendrecv): rank r sends its buffer to r+1 and receives from r-1.
 * In-place the buffer is both sent and overwritten, which the zero-copy send rule forbids until
 * the receiver has consumed it (and around a ring everyone would wait on everyone): the buffer is
 * first copied to tmp and sent from there.
 *
 * Cost (m = 4c bytes): out-of-place T = a + m B; in-place T = m D + a + m B.
 *   p = 1: the rank sends to itself: a local copy, m D out-of-place, 0 in-place.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { by, copy, costParams, mod, recv, send, tmp, traffic } from './common.js';

export const ringSendrecv: Algorithm = {
  coll: 'sendrecv',
  name: 'ring',
  summary: 'each rank sends to r+1 and receives from r-1 (in-place through tmp)',
  formula: 'a + mB [+ mD in-place]',
  tmpElems(spec: CollSpec): number {
    return spec.inPlace && spec.p > 1 ? spec.count : 0;
  },
  build(spec: CollSpec): Program[] {
    const { p, count: c, inPlace } = spec;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      if (p === 1) {
        if (!inPlace && c > 0) ops.push(copy(I, O));
      } else if (!inPlace) {
        ops.push(send(mod(r + 1, p), I), recv(mod(r - 1, p), O));
      } else {
        ops.push(copy(O, tmp(0, c)), send(mod(r + 1, p), tmp(0, c)), recv(mod(r - 1, p), O));
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const { a, B, D } = costParams(topo, traffic.ring(p));
    const m = by(c);
    if (p === 1) return inPlace ? 0 : m * D;
    return (inPlace ? m * D : 0) + a + m * B;
  },
};
