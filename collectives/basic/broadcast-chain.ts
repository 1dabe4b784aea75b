/**
 * Pipelined chain Broadcast: ranks root, root+1, ..., root+p-1 (mod p) form a chain; the data is cut
 * into K chunks (blocks(count, K)); the root sends all chunks back to back, every other rank
 * receives chunk i and forwards it at once (recv i, send i, recv i+1, ...). The root's
 * out-of-place copy in -> out overlaps the pipeline.
 *
 * Chunk count: the textbook optimum of the pipelined chain when each chunk pays a latency,
 *   T(K) = (p + K - 2)(a + n B / K)  =>  K* = sqrt((p-2) n B / a),
 * rounded, clamped to 1 <= K <= min(count, 1024) (K = 1 for p <= 2 or count 0).
 *
 * Cost. In the timing model a chunk's latency overlaps the next chunk's transmission (sends are
 * asynchronous; only the port serializes), so with chunk sizes s_0 >= s_1 >= ... (s_0 = 4 ceil(c/K)
 * bytes) the critical path is the first chunk going down p-2 hops and then all K chunks through the
 * last hop:
 *   T = (p-1) a + (n + (p-2) s_0) B    [max with n D for the out-of-place root copy]
 *   p = 1: n D out-of-place, 0 in-place.
 * Unlike hops (multi-node, pods): each hop its own a_i and B_i, T = max(n D, sum_i (a_i + s0 B_i) +
 * (n - s0) max_i B_i), the exit time of a tandem pipeline; the chunk count uses the chain's slowest
 * link. Measured against the simulator in test/protocols.test.ts.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { by, copy, costParams, mod, recv, send, traffic } from './common.js';

/** Number of pipeline chunks (see the header). */
export function chainChunks(p: number, count: number, topo: Topology, root = 0): number {
  if (p <= 2 || count <= 1) return 1;
  const { a, B } = costParams(topo, traffic.chain(p, root));
  const kStar = a > 0 ? Math.sqrt(((p - 2) * by(count) * B) / a) : Infinity;
  return Math.max(1, Math.min(count, 1024, Math.round(kStar)));
}

export const chainBroadcast: Algorithm = {
  coll: 'broadcast',
  name: 'chain',
  summary: 'pipelined chain from the root, K = sqrt((p-2) n B / a) chunks',
  formula: '(p-1) a + (n + (p-2) 4 ceil(c/K)) B [max nD oop], K = round(sqrt((p-2) n B / a)) in [1, min(c, 1024)]',
  build(spec: CollSpec, topo: Topology): Program[] {
    const { p, count: c, inPlace, root } = spec;
    const ch = blocks(c, chainChunks(p, c, topo, root));
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      const d = mod(r - root, p);
      const next = mod(r + 1, p), prev = mod(r - 1, p);
      if (d === 0) {
        if (p > 1) for (const b of ch) ops.push(send(next, sub(I, b.off, b.len)));
        if (!inPlace && c > 0) ops.push(copy(I, O));
      } else {
        for (const b of ch) {
          ops.push(recv(prev, sub(O, b.off, b.len)));
          if (d < p - 1) ops.push(send(next, sub(O, b.off, b.len)));
        }
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c, inPlace } = spec;
    const n = by(c);
    const cp = inPlace ? 0 : n * topo.data.delta;
    if (p === 1) return cp;
    const s0 = by(Math.ceil(c / chainChunks(p, c, topo, spec.root)));
    // a tandem pipeline: the first chunk down every hop, the rest through the slowest one:
    // sum_hops (a_i + s0 B_i) + (n - s0) max B_i  (= (p-1) a + (n + (p-2) s0) B on flat)
    let first = 0, Bmax = 0;
    for (let d = 0; d + 1 < p; d++) {
      const l = topo.link(mod(spec.root + d, p), mod(spec.root + d + 1, p));
      first += l.alpha + s0 / l.bw;
      Bmax = Math.max(Bmax, 1 / l.bw);
    }
    return Math.max(cp, first + (n - s0) * Bmax);
  },
};
