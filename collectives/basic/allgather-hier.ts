/**
 * Hierarchical (rail-optimized) AllGather for multi-node topologies, the mirror of
 * reducescatter-hier.ts: G = topo.data.gpusPerNode GPUs per node, N = p / G nodes, rank
 * r = n G + l; rank r's block (c = spec.count elements) lands at out[r c] on every rank.
 * "Superblock" l' is the N blocks {n' G + l' : n'} (strided by G blocks); its chunk j is block j G + l'.
 *  1. Inter-node ring all-gather among the N rail peers {n' G + l} (each GPU's own NIC): at step s
 *     (0..N-2) node n forwards block ((n-s) mod N) G + l to node n+1 and receives block
 *     ((n-s-1) mod N) G + l from node n-1. Step 0 sends straight from the input, so the
 *     out-of-place copy of the own block (in -> out[r c]) overlaps the first transfer (as ring).
 *     Afterwards rank n G + l holds superblock l.
 *  2. Intra-node ring all-gather over superblocks among the G GPUs of a node: at step s (0..G-2)
 *     GPU l forwards superblock (l-s) mod G to l+1 and receives superblock (l-s-1) mod G from l-1,
 *     as N messages, one per block (no packing), pipelined step-major: chunk j of step s+1 leaves as
 *     soon as chunk j of step s has arrived.
 * No scratch; in-place and out-of-place differ only in the copy of the own block.
 *
 * Shape: as reducescatter-hier.ts (torus, G = 1 and p not a multiple of G unsupported; a single
 * node, p <= G, runs the basic ring with its cost).
 *
 * Cost (m = 4c bytes; intra link a1, B1; inter link a2, B2; D = delta), every rank alike:
 *  - phase 1, the plain ring: T1 = max(m D [out-of-place], a2 + m B2) + (N-2)(a2 + m B2)
 *  - phase 2, the pipelined ring of G-1 steps of K = N chunks with no receiver work
 *    (reducescatter-hier.ts pipelinedRing with g = 0), starting at T1 on every rank:
 *      T2 = max(a1 + (G-1) N m B1, (G-1)(a1 + m B1) + (N-1) m B1)
 *  T = T1 + T2: the textbook (N-1)/N (n/G) B2 + (G-1)/G n B1 + latencies, where the flat ring pays
 *  (p-1)/p n B2 at the node boundaries.
 * With pods (llama3), phase 1 is the three-path ring estimate over the rail ring's hops
 * (collectives/ringtime.ts; exact when the hops are alike).
 */
import type { Op, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { ringTimeEstimate } from '../ringtime.js';
import { inputRegion, type Algorithm, type CollSpec } from '../types.js';
import { ringAllgather } from './allgather-ring.js';
import { by, mod } from './common.js';
import { hierPrograms, hierShape, pipelinedRing, railHops } from './reducescatter-hier.js';

/** Rank r's ops (build() collects them; rankProgram streams them). */
function* rankOps(spec: CollSpec, G: number, N: number, r: number): Generator<Op> {
  const { count: c, inPlace } = spec;
  const I = inputRegion(spec, r);
  const n = Math.floor(r / G), l = r % G, base = n * G;
  const blk = (b: number): Region => ({ buf: 'out', off: b * c, len: c });
  // 1. inter-node ring all-gather among the rail peers
  const gnext = mod(n + 1, N) * G + l, gprev = mod(n - 1, N) * G + l;
  for (let s = 0; s < N - 1; s++) {
    yield { k: 'send', peer: gnext, src: s === 0 ? I : blk(mod(n - s, N) * G + l) };
    if (s === 0 && !inPlace) yield { k: 'copy', src: I, dst: blk(r) };
    yield { k: 'recv', peer: gprev, dst: blk(mod(n - s - 1, N) * G + l) };
  }
  // 2. intra-node ring all-gather over superblocks, K = N chunks per step, pipelined
  const next = base + mod(l + 1, G), prev = base + mod(l - 1, G);
  const chunk = (k: number, j: number): Region => blk(j * G + mod(k, G));
  for (let j = 0; j < N; j++) yield { k: 'send', peer: next, src: chunk(l, j) };
  for (let s = 0; s < G - 1; s++) {
    for (let j = 0; j < N; j++) {
      yield { k: 'recv', peer: prev, dst: chunk(l - s - 1, j) };
      if (s < G - 2) yield { k: 'send', peer: next, src: chunk(l - s - 1, j) };
    }
  }
}

export const hierarchicalAllgather: Algorithm = {
  coll: 'allgather',
  name: 'hierarchical',
  summary: 'rail-optimized: inter-node ring all-gather among the GPUs of one rail, then an intra-node ring all-gather of what each gathered',
  formula: 'max(mD [oop], a2 + mB2) + (N-2)(a2 + mB2) + max(a1 + (g-1)N mB1, (g-1)(a1 + mB1) + (N-1) mB1), ' +
    'm = n/p, g GPUs/node, N nodes; one node: ring',
  unsupported(spec: CollSpec, topo: Topology): string | undefined {
    const sh = hierShape(spec, topo);
    return typeof sh === 'string' ? sh : undefined;
  },
  ...hierPrograms('allgather', ringAllgather, rankOps),
  cost(spec: CollSpec, topo: Topology): number {
    const sh = hierShape(spec, topo);
    if (typeof sh === 'string') return Infinity;
    if (sh.N === 1) return ringAllgather.cost(spec, topo);
    const { G, N } = sh;
    const m = by(spec.count);
    const cp = spec.inPlace ? 0 : m * topo.data.delta;
    const l1 = topo.data.links[topo.data.intra]!;
    const h = railHops(topo, G, N, (l) => m / l.bw);
    const t1 = h.same
      ? Math.max(cp, h.a.max + h.w.max) + (N - 2) * (h.a.max + h.w.max)
      : ringTimeEstimate(h, N - 1, 1, () => 0, 0, cp);
    return t1 + pipelinedRing(G - 1, N, m / l1.bw, l1.alpha, 0);
  },
};
