/**
 * Hierarchical (2D) AllReduce: intra-node ring ReduceScatter, inter-node ring AllReduce among the
 * ranks with the same local index (on the 1/G shard each owns), intra-node ring AllGather.
 * A node is G = topo.data.gpusPerNode consecutive ranks; N = p / G nodes.
 *  - N = 1 (a single node, e.g. flat where G = p): only the intra phases run: it is the ring.
 *  - G = 1: only the inter-node ring runs: again the ring, over nodes.
 *  - p > G and p not a multiple of G: unsupported.
 *
 * Data: the vector is cut into G blocks (types.blocks). Intra reduce-scatter as ring.ts: local rank
 * l ends owning block (l+1) mod G reduced over its node. The inter ring cuts that block into N
 * sub-blocks and runs reduce-scatter + all-gather over the N ranks {m G + l}; 'avg' scales the owned
 * sub-block once, between the two. Then the intra ring all-gathers the G blocks.
 *
 * Cost, with b = ceil(count/G)*4 bytes, b2 = ceil(ceil(count/G)/N)*4, intra link (a1, B1), inter
 * link (a2, B2); every phase is a ring whose hops are all one link class, the ranks run their
 * phases in lockstep, and intra and inter sends use different ports:
 *   T = (G-1)(a1 + b B1 + b G)              intra reduce-scatter
 *     + 2(N-1)(a2 + b2 B2) + (N-1) b2 G     inter ring AllReduce on the shard
 *     + [avg] (N > 1 ? b2 : b) D
 *     + (G-1)(a1 + b B1)                    intra all-gather
 * which is the formula sheet's 2(p1-1) a1 + 2(p1-1)/p1 n B1 + 2(p2-1) a2 + 2(p2-1)/p2 (n/p1) B2 + ...
 * With pods (llama3), (a2, B2) is the inter-node ring's slowest hop (cross-pod) for every hop: exact
 * when the bandwidth bound of that port dominates, otherwise an overestimate (measured in
 * test/protocols.test.ts).
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { singleRankCost, singleRankProgram } from './common.js';
import { ringPhaseStream, type RingPhase } from './ring.js';

/** G (ranks per node actually used) and N (nodes) for this spec, or undefined if unsupported. */
function shape(spec: CollSpec, topo: Topology): { G: number; N: number } | undefined {
  const gpn = topo.data.gpusPerNode;
  if (spec.p <= gpn) return { G: spec.p, N: 1 };
  if (spec.p % gpn !== 0) return undefined;
  return { G: gpn, N: spec.p / gpn };
}

export const hierarchicalAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'hierarchical',
  summary: 'intra-node ring reduce-scatter, inter-node ring allreduce on the shard, intra-node ring all-gather',
  formula: '(G-1)(2 a1 + 2 b B1 + b G) + 2(N-1)(a2 + b/N B2) + (N-1) b/N G [+ b/N D avg]; b = n/G, G GPUs/node, N nodes',
  unsupported(spec: CollSpec, topo: Topology): string | undefined {
    if (!shape(spec, topo)) {
      return `${spec.p} ranks is not a multiple of ${topo.data.gpusPerNode} GPUs per node`;
    }
    return undefined;
  },
  build(spec: CollSpec, topo: Topology): Program[] {
    const { p, count: c, op } = spec;
    if (p === 1) return singleRankProgram(spec);
    const sh = shape(spec, topo);
    if (!sh) throw new Error(`hierarchical: ${p} ranks is not a multiple of ${topo.data.gpusPerNode} GPUs per node`);
    const { G, N } = sh;
    const bl = blocks(c, G);
    const mod = (x: number, m: number) => ((x % m) + m) % m;
    const blk = (reg: Region, i: number): Region => {
      const b = bl[mod(i, G)]!;
      return { buf: reg.buf, off: reg.off + b.off, len: b.len };
    };
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      progs.push(ops);
      const node = Math.floor(r / G), l = r % G;
      const lnext = node * G + mod(l + 1, G), lprev = node * G + mod(l - 1, G);
      // 1. intra-node ring reduce-scatter: l ends with block l+1
      for (let s = 0; s < G - 1; s++) {
        ops.push({ k: 'send', peer: lnext, src: blk(s === 0 ? I : O, l - s) });
        ops.push({ k: 'recv', peer: lprev, dst: blk(O, l - s - 1), op, acc: blk(I, l - s - 1) });
      }
      const own = l + 1;
      // where the own block's partial sum lives now
      let cur = G > 1 ? blk(O, own) : blk(I, own);
      const dst = blk(O, own);
      // 2. inter-node ring allreduce on the own block
      if (N > 1) {
        const sb = blocks(dst.len, N);
        const sub = (reg: Region, i: number): Region => {
          const b = sb[mod(i, N)]!;
          return { buf: reg.buf, off: reg.off + b.off, len: b.len };
        };
        const gnext = mod(node + 1, N) * G + l, gprev = mod(node - 1, N) * G + l;
        for (let s = 0; s < N - 1; s++) {
          ops.push({ k: 'send', peer: gnext, src: sub(s === 0 ? cur : dst, node - s) });
          ops.push({ k: 'recv', peer: gprev, dst: sub(dst, node - s - 1), op, acc: sub(cur, node - s - 1) });
        }
        cur = dst;
        if (op === 'avg') ops.push({ k: 'scale', dst: sub(dst, node + 1), factor: 1 / p });
        for (let s = 0; s < N - 1; s++) {
          ops.push({ k: 'send', peer: gnext, src: sub(dst, node + 1 - s) });
          ops.push({ k: 'recv', peer: gprev, dst: sub(dst, node - s) });
        }
      } else if (op === 'avg') {
        ops.push({ k: 'scale', dst, factor: 1 / p });
      }
      // 3. intra-node ring all-gather
      for (let s = 0; s < G - 1; s++) {
        ops.push({ k: 'send', peer: lnext, src: blk(O, own - s) });
        ops.push({ k: 'recv', peer: lprev, dst: blk(O, l - s) });
      }
    }
    return progs;
  },
  rankProgram(spec: CollSpec, topo: Topology, r: number): Iterable<Op> {
    const { p, op } = spec;
    if (p === 1) return singleRankProgram(spec)[0]!;
    // regions shared by all ranks (their I and O are the same)
    const t = hierBlocks(spec, topo);
    const { G, N, inB, outB } = t;
    const node = Math.floor(r / G), l = r % G;
    const base = node * G;
    const lnext = base + (l + 1 === G ? 0 : l + 1), lprev = base + (l === 0 ? G - 1 : l - 1);
    const own = l + 1 === G ? 0 : l + 1;
    const phases: RingPhase[] = [];
    // 1. intra-node ring reduce-scatter: l ends with block l+1
    phases.push({ kind: 'rs', n: G, a: l, next: lnext, prev: lprev, first: inB, src: outB, dst: outB, acc: inB, op });
    // 2. inter-node ring allreduce on the own block's sub-blocks (the partial sum is in 'in' when G = 1)
    if (N > 1) {
      const dstS = t.subO[own]!, curS = G > 1 ? dstS : t.subI[own]!;
      const gnext = (node + 1 === N ? 0 : node + 1) * G + l, gprev = (node === 0 ? N - 1 : node - 1) * G + l;
      phases.push({ kind: 'rs', n: N, a: node, next: gnext, prev: gprev, first: curS, src: dstS, dst: dstS, acc: curS, op });
      if (op === 'avg') phases.push({ kind: 'op', op: { k: 'scale', dst: dstS[(node + 1) % N]!, factor: 1 / p } });
      phases.push({ kind: 'ag', n: N, a: node, next: gnext, prev: gprev, tab: dstS });
    } else if (op === 'avg') {
      phases.push({ kind: 'op', op: { k: 'scale', dst: outB[own]!, factor: 1 / p } });
    }
    // 3. intra-node ring all-gather
    phases.push({ kind: 'ag', n: G, a: l, next: lnext, prev: lprev, tab: outB });
    return ringPhaseStream(phases);
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    if (p === 1) return singleRankCost(spec, topo);
    const sh = shape(spec, topo);
    if (!sh) return Infinity;
    const { G, N } = sh;
    const { gamma, delta } = topo.data;
    // the inter-node ring: its slowest hop (across pods: the cross-pod link; every local index alike)
    const l1 = topo.data.links[topo.data.intra]!;
    const l2 = N > 1 ? topo.slowestLink(Array.from({ length: N }, (_, m) => m * G)) : l1;
    const eb = Math.ceil(c / G);
    const b = eb * 4;
    const b2 = Math.ceil(eb / N) * 4;
    const intra = (G - 1) * (2 * l1.alpha + 2 * b / l1.bw + b * gamma);
    const inter = N > 1 ? 2 * (N - 1) * (l2.alpha + b2 / l2.bw) + (N - 1) * b2 * gamma : 0;
    const scale = spec.op === 'avg' ? (N > 1 ? b2 : b) * delta : 0;
    return intra + inter + scale;
  },
};

interface HierBlocks {
  p: number; count: number; inPlace: boolean; G: number; N: number;
  /** block j of blocks(count, G) of the input / output region */
  inB: Region[]; outB: Region[];
  /** sub-block i of blocks(len, N) of input / output block j: subI[j][i], subO[j][i] (N > 1) */
  subI: Region[][]; subO: Region[][];
}
/** The regions rankProgram uses, shared by all ranks (their I and O are the same); the last spec's are kept. */
let hierCache: HierBlocks | undefined;
function hierBlocks(spec: CollSpec, topo: Topology): HierBlocks {
  const sh = shape(spec, topo);
  if (!sh) throw new Error(`hierarchical: ${spec.p} ranks is not a multiple of ${topo.data.gpusPerNode} GPUs per node`);
  const { G, N } = sh;
  const q = hierCache;
  if (q && q.p === spec.p && q.count === spec.count && q.inPlace === spec.inPlace && q.G === G && q.N === N) return q;
  const I = inputRegion(spec, 0), O = outputRegion(spec, 0);
  const bl = blocks(spec.count, G);
  const cut = (reg: Region, b: { off: number; len: number }): Region => ({ buf: reg.buf, off: reg.off + b.off, len: b.len });
  const inB = bl.map((b) => cut(I, b)), outB = bl.map((b) => cut(O, b));
  const subs = (B: Region[]) => (N > 1 ? B.map((reg) => blocks(reg.len, N).map((b) => cut(reg, b))) : []);
  hierCache = { p: spec.p, count: spec.count, inPlace: spec.inPlace, G, N, inB, outB, subI: G > 1 ? [] : subs(inB), subO: subs(outB) };
  return hierCache;
}
