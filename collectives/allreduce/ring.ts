/**
 * Ring AllReduce (Patarasuk & Yuan 2009; NCCL's ring): a reduce-scatter around the ring in p-1
 * steps, then an all-gather in p-1 steps. Block b of the vector is reduced as it travels; rank r
 * ends the reduce-scatter owning block (r+1) mod p, fully reduced.
 *
 * Cost (flat, block bytes b = ceil(n/p) elements * 4):
 *   T = 2(p-1) alpha + 2(p-1) b beta + (p-1) b gamma  [+ b delta for avg's scale]
 * which is the textbook 2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma when p divides n.
 *
 * Multi-node (N = p/G nodes of G GPUs, ring 0..p-1, p a multiple of G): the hop G-1 -> G of
 * every node is the slow inter-node link (a2, B2), the other G-1 hops are fast (a1, B1); each rank
 * sends on one port. The flat formula with the slow link charges every hop at IB speed (about 2x
 * too high for large messages). Derivation: the finish time is the longest path through the
 * 2(p-1) steps of the dependency graph, and each step of a path is spent either
 *   - as a hop to the next rank: a + b B of that hop [+ b G in the reduce-scatter], or
 *   - waiting on a busy egress port: b B of that port (worth most at a slow port: b B2),
 * (plus b D once if the path enters the all-gather through a rank's clock: avg's scale). Waiting
 * at a slow port, crossing u nodes with single hops and waiting again at the last slow port is a
 * path with V = (u-1) G + 1 hops whose value is piecewise linear in u, so the maximum is at u = 1,
 * 2 (where the scale joins), N, N+1 (where the hops leave the reduce-scatter) or uMax =
 * 1 + floor((2p-3)/G); the other candidate is the pure latency chain of 2p-2 hops:
 *   Tu    = (2p-2-V) b B2 + u (a2 + b B2) + (V-u)(a1 + b B1) + min(V-1, p-1) b G + [u >= 2] b D
 *           (u = 1: Tbw = 2(p-1) b B2 + a2: one slow port serializes all 2(p-1) blocks while the
 *           latencies overlap: the large-message regime)
 *   Thops = s (a2 + b B2) + (2p-2-s)(a1 + b B1) + (p-1) b G + b D, s = slow hops in the best window
 *           of 2p-2 consecutive hops (2N if G >= 3, 2N-1 if G = 2): the small-message regime
 *   T     = max(Thops, Tu for u in {1, 2, N, N+1, uMax}).
 * (Assumes the inter-node link is the slower one; [b D] only for avg.) Matches the simulator to
 * < 0.01% on hgx-h100 / dgx-a100 with 2-8 nodes, all sizes, gamma from 0 to 1/(30 GB/s).
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';

export const ringAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'ring',
  summary: 'reduce-scatter then all-gather around a ring; bandwidth-optimal',
  formula: '2(p-1) a + 2(p-1)/p n B + (p-1)/p n G; multi-node: max(2(p-1) b B_inter + a_inter, latency chain, mixed paths)',
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
    const scale = spec.op === 'avg' ? b * delta : 0;
    const G = topo.data.gpusPerNode;
    if (p > G && G > 1 && p % G === 0 && topo.data.intra !== topo.data.inter) {
      const f = topo.data.links[topo.data.intra]!, sl = topo.data.links[topo.data.inter]!;
      const N = p / G;
      const fast = f.alpha + b / f.bw, slow = sl.alpha + b / sl.bw, wait = b / sl.bw, g = b * gamma;
      // all hops: s slow hops in the best window of 2p-2 consecutive hops
      const s = G >= 3 ? 2 * N : 2 * N - 1;
      let t = s * slow + (2 * p - 2 - s) * fast + (p - 1) * g + scale;
      // hop across u nodes (V = (u-1)G + 1 visits, the last one a slow port), wait there to the end
      const uMax = 1 + Math.floor((2 * p - 3) / G);
      for (const u of [1, 2, N, N + 1, uMax]) {
        if (u < 1 || u > uMax) continue;
        const V = (u - 1) * G + 1;
        const tu = (2 * p - 2 - V) * wait + u * slow + (V - u) * fast + Math.min(V - 1, p - 1) * g + (u >= 2 ? scale : 0);
        t = Math.max(t, tu);
      }
      return t;
    }
    const l = topo.slowestLink();
    return 2 * (p - 1) * (l.alpha + b / l.bw) + (p - 1) * b * gamma + scale;
  },
};
