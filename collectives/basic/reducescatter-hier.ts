/**
 * Hierarchical (rail-optimized) ReduceScatter for multi-node topologies: G = topo.data.gpusPerNode
 * GPUs per node, N = p / G nodes, rank r = n G + l (node n, local index l). Rank r gets block r of
 * the p blocks (c = spec.count elements each).
 *
 * Block b = n' G + l' belongs to the rank with local index l' on node n'. "Superblock" l' is the N
 * blocks {n' G + l' : n' = 0..N-1} (strided by G blocks in the buffer); its chunk j is block j G + l'.
 *  1. Intra-node ring reduce-scatter over superblocks, among the G GPUs of a node: at step s
 *     (0..G-2) local GPU l sends its partial of superblock (l-s-1) mod G to l+1 and receives the
 *     partial of superblock (l-s-2) mod G from l-1, reducing it with its own input (fused
 *     recv-reduce). Each superblock travels as N messages, one per block (no packing: exact data,
 *     no copies), pipelined step-major: chunk j of step s+1 is sent as soon as chunk j of step s has
 *     been received and reduced. After G-1 steps GPU l holds its node's partial sums of superblock l.
 *  2. Inter-node ring reduce-scatter among the N rail peers {n' G + l} (the same local index on
 *     every node: each GPU's own NIC, rail-optimized) on the N blocks of superblock l: at step s
 *     (0..N-2) node n sends its partial of block ((n-s-1) mod N) G + l and receives that of block
 *     ((n-s-2) mod N) G + l. After N-1 steps rank n G + l holds block r fully reduced, in its
 *     output. 'avg' scales it once at the end.
 * Buffers: in-place, every partial accumulates at its own block of 'out' (the input). Out-of-place
 * ('in' stays untouched) the phase-1 partials alternate between two halves of tmp (N c elements
 * each; one half when G = 2), phase 2 accumulates in the last half and its last step lands in 'out'.
 *
 * Shape: a torus is unsupported, and so are p > G ranks that are not a multiple of G, and one GPU
 * per node (G = 1: no intra-node level; the flat ring already uses every NIC). On a single node
 * (p <= G, e.g. flat) there is no inter-node phase and phase 1 is exactly the ring (basic ring,
 * which this algorithm then runs, with its cost), as the hierarchical AllReduce degenerates too.
 *
 * Cost (m = 4c bytes; intra link a1, B1 = 1/bw1; inter link a2, B2; G = gamma, D = delta;
 * M1 = max(B1, G)). Every rank runs the same schedule, intra and inter sends use different ports:
 *  - phase 1, the pipelined ring of collectives/ringtime.ts with G-1 steps of K = N chunks,
 *    w = m B1, g = m G: the longest of its two critical paths (a lattice path through the
 *    step x chunk grid: every step transition costs w + a1 + g, every chunk move max(w, g); the
 *    path's cost is linear in its number of step transitions, so it is 1 or G-1):
 *      T1 = max( a1 + m(B1 + G) + ((G-1)N - 1) m M1,            the port (or the reducer) never idles
 *                (G-1)(a1 + m(B1 + G)) + (N-1) m M1 )           the chain of hops
 *  - phase 2, the plain ring over the rail (starts at T1 on every rank):
 *      T2 = (N-1)(a2 + m B2 + m G) [+ m D avg]
 *  T = T1 + T2. Compare the flat ring, (p-1)(a + m B2 + m G): the whole (p-1)/p n crosses the one
 *  NIC of the GPU at each node boundary, while here each NIC carries (N-1)/N of its 1/G share.
 * With pods (llama3) the rail ring's hops differ (cross-pod ones are slower); phase 2 then takes
 * the three-path ring estimate of collectives/ringtime.ts over the rail ring's hops (exact when the
 * hops are alike); test/hierarchical-rsag.test.ts measures the error.
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { LinkClass, Topology } from '../../runtime/topology.js';
import { ringTimeEstimate, type HopStats } from '../ringtime.js';
import { inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { by, mod } from './common.js';
import { ringReducescatter } from './reducescatter-ring.js';

/** G GPUs per node and N nodes of a supported spec, or the reason it is unsupported. */
export function hierShape(spec: CollSpec, topo: Topology): { G: number; N: number } | string {
  const gpn = topo.data.gpusPerNode;
  if (topo.isTorus) return `${topo.name} is a torus of chips with no node level to aggregate over (use ring)`;
  if (spec.p <= gpn) return { G: spec.p, N: 1 };
  if (gpn === 1) return `one GPU per node: there is no intra-node level, and the flat ring already uses every NIC (use ring)`;
  if (spec.p % gpn !== 0) return `${spec.p} ranks is not a multiple of the ${gpn} GPUs per node`;
  return { G: gpn, N: spec.p / gpn };
}

/**
 * build() and rankProgram() of a hierarchical algorithm: `ops(spec, G, N, r)` on several nodes,
 * the basic ring's programs on one.
 */
export function hierPrograms(coll: string, ring: Algorithm, ops: (spec: CollSpec, G: number, N: number, r: number) => Iterator<Op>): Pick<Algorithm, 'build' | 'rankProgram'> {
  const shape = (spec: CollSpec, topo: Topology) => {
    const sh = hierShape(spec, topo);
    if (typeof sh === 'string') throw new Error(`${coll} hierarchical: ${sh}`);
    return sh;
  };
  return {
    build(spec: CollSpec, topo: Topology): Program[] {
      const { G, N } = shape(spec, topo);
      if (N === 1) return ring.build(spec, topo);
      return Array.from({ length: spec.p }, (_, r) => [...{ [Symbol.iterator]: () => ops(spec, G, N, r) }]);
    },
    rankProgram(spec: CollSpec, topo: Topology, r: number): Iterable<Op> {
      const { G, N } = shape(spec, topo);
      if (N === 1) return ring.build(spec, topo)[r]!;
      return { [Symbol.iterator]: () => ops(spec, G, N, r) };
    },
  };
}

/**
 * Hops of the rail ring 0 -> G -> 2G -> ... -> (N-1)G -> 0 (every local index sees the same link
 * classes: nodes and pods are blocks of whole nodes), as collectives/ringtime.ts's ringHops.
 */
export function railHops(topo: Topology, G: number, N: number, w: (l: LinkClass) => number): HopStats {
  const st = () => ({ min: Infinity, mean: 0, max: -Infinity });
  const W = st(), A = st(), D = st();
  const add = (s: { min: number; mean: number; max: number }, x: number) => { s.min = Math.min(s.min, x); s.max = Math.max(s.max, x); s.mean += x / N; };
  const l0 = topo.link(0, G);
  let same = true;
  for (let n = 0; n < N; n++) {
    const l = topo.link(n * G, ((n + 1) % N) * G);
    if (l !== l0) same = false;
    add(W, w(l)); add(A, l.alpha); add(D, 0);
  }
  return { same, w: W, a: A, d: D };
}

/**
 * The pipelined intra-node ring (S steps of K chunks, chunk port time w, latency a, per-chunk
 * receiver time g, all ranks starting together): max of the port / reducer path and the chain
 * (header). Equal to ringtime.ts pipelinedRingTime(S, K, w, a, 0, () => g, 0, 0).
 */
export function pipelinedRing(S: number, K: number, w: number, a: number, g: number): number {
  const M = Math.max(w, g);
  return Math.max(w + a + g + (S * K - 1) * M, S * (w + a + g) + (K - 1) * M);
}

/** Rank r's ops (build() collects them; rankProgram streams them). */
function* rankOps(spec: CollSpec, G: number, N: number, r: number): Generator<Op> {
  const { count: c, op, inPlace, p } = spec;
  const I = inputRegion(spec, r), O = outputRegion(spec, r);
  const n = Math.floor(r / G), l = r % G, base = n * G;
  const next = base + mod(l + 1, G), prev = base + mod(l - 1, G);
  /** block b of the input (in-place: of 'out', where the partials accumulate) */
  const inBlk = (b: number): Region => ({ buf: I.buf, off: I.off + b * c, len: c });
  /** chunk j of superblock k */
  const chunk = (k: number, j: number): Region => inBlk(j * G + mod(k, G));
  /** where the partial of chunk j received at phase-1 step s lives */
  const part = (s: number, j: number): Region => (inPlace ? chunk(l - s - 2, j) : { buf: 'tmp', off: ((s % 2) * N + j) * c, len: c });
  // 1. intra-node ring reduce-scatter over superblocks, K = N chunks per step, pipelined
  for (let j = 0; j < N; j++) yield { k: 'send', peer: next, src: chunk(l - 1, j) };
  for (let s = 0; s < G - 1; s++) {
    for (let j = 0; j < N; j++) {
      yield { k: 'recv', peer: prev, dst: part(s, j), op, acc: chunk(l - s - 2, j) };
      if (s < G - 2) yield { k: 'send', peer: next, src: part(s, j) };
    }
  }
  // 2. inter-node ring reduce-scatter among the rail peers on the N blocks of superblock l
  const X = (k: number): Region => part(G - 2, mod(k, N)); // node partial of block k G + l
  const gnext = mod(n + 1, N) * G + l, gprev = mod(n - 1, N) * G + l;
  for (let s = 0; s < N - 1; s++) {
    yield { k: 'send', peer: gnext, src: X(n - s - 1) };
    const acc = X(n - s - 2);
    yield { k: 'recv', peer: gprev, dst: s === N - 2 ? O : acc, op, acc };
  }
  if (op === 'avg') yield { k: 'scale', dst: O, factor: 1 / p };
}

export const hierarchicalReducescatter: Algorithm = {
  coll: 'reducescatter',
  name: 'hierarchical',
  summary: 'rail-optimized: intra-node ring reduce-scatter of the blocks each local GPU owns on every node, then an inter-node ring among the GPUs of one rail',
  formula: 'max(a1 + m(B1+G) + ((g-1)N-1) m M1, (g-1)(a1 + m(B1+G)) + (N-1) m M1) + (N-1)(a2 + m(B2+G)) [+ mD avg], ' +
    'M1 = max(B1, G), m = n/p, g GPUs/node, N nodes; one node: ring',
  unsupported(spec: CollSpec, topo: Topology): string | undefined {
    const sh = hierShape(spec, topo);
    return typeof sh === 'string' ? sh : undefined;
  },
  tmpElems(spec: CollSpec, topo: Topology): number {
    const sh = hierShape(spec, topo);
    if (typeof sh === 'string') return 0;
    if (sh.N === 1) return ringReducescatter.tmpElems!(spec, topo);
    return spec.inPlace ? 0 : (sh.G > 2 ? 2 : 1) * sh.N * spec.count;
  },
  ...hierPrograms('reducescatter', ringReducescatter, rankOps),
  cost(spec: CollSpec, topo: Topology): number {
    const sh = hierShape(spec, topo);
    if (typeof sh === 'string') return Infinity;
    if (sh.N === 1) return ringReducescatter.cost(spec, topo);
    const { G, N } = sh;
    const { gamma, delta } = topo.data;
    const m = by(spec.count);
    const l1 = topo.data.links[topo.data.intra]!;
    const t1 = pipelinedRing(G - 1, N, m / l1.bw, l1.alpha, m * gamma);
    const sc = spec.op === 'avg' ? m * delta : 0;
    const h = railHops(topo, G, N, (l) => m / l.bw);
    if (h.same) return t1 + (N - 1) * (h.a.max + h.w.max + m * gamma) + sc;
    return ringTimeEstimate(h, N - 1, 1, (s) => m * gamma + (s === N - 2 ? sc : 0), t1, t1);
  },
};
