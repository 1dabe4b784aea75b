/**
 * Dissemination Barrier (Hensgen, Finkel & Manber 1988): ceil(lg p) rounds; in round k rank r
 * sends a zero-length message to r + 2^k and waits for one from r - 2^k (mod p).
 *
 * Cost: T = ceil(lg p) a (zero bytes; each round waits for the previous one's message).
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import type { Algorithm, CollSpec } from '../types.js';
import { ceilLog2, costParams, mod, out, recv, send, traffic } from './common.js';

export const disseminationBarrier: Algorithm = {
  coll: 'barrier',
  name: 'dissemination',
  summary: 'ceil(lg p) rounds of zero-length messages to r + 2^k',
  formula: 'ceil(lg p) a',
  build(spec: CollSpec): Program[] {
    const { p } = spec;
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const ops: Op[] = [];
      for (let d = 1; d < p; d *= 2) ops.push(send(mod(r + d, p), out(0, 0)), recv(mod(r - d, p), out(0, 0)));
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    return ceilLog2(spec.p) * costParams(topo, traffic.powersOfTwo(spec.p)).a;
  },
};
