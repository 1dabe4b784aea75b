/**
 * Recursive halving-doubling AllReduce (Rabenseifner; Thakur, Rabenseifner & Gropp 2005): a
 * reduce-scatter by recursive halving, then an all-gather by recursive doubling, for any rank count.
 *
 * Non-powers of two (the MPICH fold): let p' = 2^floor(lg p), rem = p - p'. Among the first
 * 2 rem ranks, each even rank sends its whole input to the next (odd) rank, which reduces it and
 * takes part in the power-of-two phase as new rank (r-1)/2; ranks r >= 2 rem take part as r - rem.
 * At the end each odd rank < 2 rem sends the whole result back to its even partner (the unfold).
 *
 * Power-of-two phase on p' ranks, the vector cut into p' blocks (types.blocks, so any count works):
 *  - reduce-scatter: for mask = p'/2, p'/4, ..., 1 the rank keeps the lower half of its current
 *    block range if (newrank & mask) = 0, else the upper half, sends the other half to
 *    newrank ^ mask, and receive-reduces the kept half from it. Afterwards new rank i owns block i.
 *  - avg: the owner scales its block by 1/p (exactly once per element).
 *  - all-gather: for mask = 1, 2, ..., p'/2 it exchanges its whole range with newrank ^ mask.
 * In-place needs no scratch: a rank only writes the half it keeps and never the half it sent.
 * Reduction order: fixed by the rank bits (deterministic).
 *
 * Cost (flat; n = count*4 bytes; b = ceil(count/p')*4 the block; F = [rem > 0]):
 *   T = F (alpha + n beta + n gamma)                      fold (the odd ranks start late ...
 *     + lg p' alpha + (p'-1) b (beta + gamma)             ... and every halving step waits for them)
 *     + [avg] b delta
 *     + lg p' alpha + (p'-1) b beta                        recursive doubling
 *     + F (alpha + n beta)                                 unfold
 * Why the fold adds in full: at each step the latest rank's partner receives from it, so the
 * latest time grows by alpha + s beta + s gamma per step whatever the others do. With rem = 0 and
 * p' | count this is the textbook 2 lg p alpha + 2 (p-1)/p n beta + (p-1)/p n gamma.
 * Other topologies: each step (and the fold) is charged the slowest link among its pairs, as
 * sum over steps of 2 (alpha_k + s_k beta_k) + s_k gamma. This is the same formula when every pair
 * of a step uses one link class (multi-node presets with p a power of two), an estimate otherwise.
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { log2floor, singleRankCost, singleRankProgram } from './common.js';

export const rhdAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'rhd',
  summary: 'recursive halving reduce-scatter + recursive doubling all-gather (Rabenseifner), any p via fold/unfold',
  formula: "F(2a + 2n B + n G) + 2 lg p' a + (p'-1) b (2B + G) [+ b D avg]; p' = 2^floor(lg p), b = n/p', F = [p != p']",
  build(spec: CollSpec): Program[] {
    const { p, count: c, op } = spec;
    if (p === 1) return singleRankProgram(spec);
    const pp = 1 << log2floor(p);
    const rem = p - pp;
    const bl = blocks(c, pp);
    const real = (nr: number) => (nr < rem ? 2 * nr + 1 : nr + rem);
    /** elements of blocks [lo, hi) of a region */
    const range = (reg: Region, lo: number, hi: number): Region => {
      const off = bl[lo]!.off;
      const end = hi < pp ? bl[hi]!.off : c;
      return { buf: reg.buf, off: reg.off + off, len: end - off };
    };
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      progs.push(ops);
      if (r < 2 * rem && r % 2 === 0) {
        // folded out: hand the input to r+1, get the result back at the end
        ops.push({ k: 'send', peer: r + 1, src: I });
        ops.push({ k: 'recv', peer: r + 1, dst: O });
        continue;
      }
      let cur = I;
      if (r < 2 * rem) {
        ops.push({ k: 'recv', peer: r - 1, dst: O, op, acc: I });
        cur = O;
      }
      const nr = r < 2 * rem ? (r - 1) / 2 : r - rem;
      let lo = 0, hi = pp;
      for (let mask = pp >> 1; mask >= 1; mask >>= 1) {
        const peer = real(nr ^ mask);
        const mid = lo + ((hi - lo) >> 1);
        const [klo, khi, slo, shi] = nr & mask ? [mid, hi, lo, mid] : [lo, mid, mid, hi];
        ops.push({ k: 'send', peer, src: range(cur, slo, shi) });
        ops.push({ k: 'recv', peer, dst: range(O, klo, khi), op, acc: range(cur, klo, khi) });
        cur = O;
        lo = klo; hi = khi;
      }
      if (op === 'avg') ops.push({ k: 'scale', dst: range(O, lo, hi), factor: 1 / p });
      for (let mask = 1; mask < pp; mask <<= 1) {
        const peer = real(nr ^ mask);
        const size = hi - lo;
        const [plo, phi] = nr & mask ? [lo - size, lo] : [hi, hi + size];
        ops.push({ k: 'send', peer, src: range(O, lo, hi) });
        ops.push({ k: 'recv', peer, dst: range(O, plo, phi) });
        lo = Math.min(lo, plo); hi = Math.max(hi, phi);
      }
      if (r < 2 * rem) ops.push({ k: 'send', peer: r - 1, src: O });
    }
    return progs;
  },
  rankProgram(spec: CollSpec, _topo: Topology, r: number): Iterable<Op> {
    return { [Symbol.iterator]: () => rhdRankOps(spec, r) };
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    if (p === 1) return singleRankCost(spec, topo);
    const { gamma, delta } = topo.data;
    const pp = 1 << log2floor(p);
    const rem = p - pp;
    const n = c * 4;
    const real = (nr: number) => (nr < rem ? 2 * nr + 1 : nr + rem);
    // the link of a step: the slowest over its pairs (one class per step on flat, and on multi-node
    // presets whenever p and the GPUs per node are powers of two)
    const uniform = !topo.isTorus && (topo.data.intra === topo.data.inter || p <= topo.data.gpusPerNode);
    const slowest = (m: number, pair: (i: number) => [number, number]) => {
      if (uniform) return topo.data.links[topo.data.intra]!;
      let w = topo.link(...pair(0));
      for (let i = 1; i < m; i++) {
        const l = topo.link(...pair(i));
        if (l.bw < w.bw || (l.bw === w.bw && l.alpha > w.alpha)) w = l;
      }
      return w;
    };
    let t = 0;
    if (rem > 0) {
      const l = slowest(rem, (i) => [2 * i, 2 * i + 1]);
      t += 2 * l.alpha + 2 * n / l.bw + n * gamma;
    }
    let blocksInHalf = pp;
    for (let mask = pp >> 1; mask >= 1; mask >>= 1) {
      blocksInHalf >>= 1;
      const l = slowest(pp, (i) => [real(i), real(i ^ mask)]);
      const sz = blocksInHalf * Math.ceil(c / pp) * 4;
      t += 2 * l.alpha + 2 * sz / l.bw + sz * gamma;
    }
    return t + (spec.op === 'avg' ? Math.ceil(c / pp) * 4 * delta : 0);
  },
};

/** Rank r's ops of build(spec)[r], generated lazily (the body of rhd's rankProgram). */
function* rhdRankOps(spec: CollSpec, r: number): Generator<Op> {
  const { p, count: c, op } = spec;
  if (p === 1) {
    yield* singleRankProgram(spec)[0]!;
    return;
  }
  const pp = 1 << log2floor(p);
  const rem = p - pp;
  // offset of block j of blocks(c, pp), without the array
  const base = Math.floor(c / pp), extra = c % pp;
  const boff = (j: number) => j * base + (j < extra ? j : extra);
  const real = (nr: number) => (nr < rem ? 2 * nr + 1 : nr + rem);
  const range = (reg: Region, lo: number, hi: number): Region => {
    const off = boff(lo);
    const end = hi < pp ? boff(hi) : c;
    return { buf: reg.buf, off: reg.off + off, len: end - off };
  };
  const I = inputRegion(spec, r), O = outputRegion(spec, r);
  if (r < 2 * rem && r % 2 === 0) {
    yield { k: 'send', peer: r + 1, src: I };
    yield { k: 'recv', peer: r + 1, dst: O };
    return;
  }
  let cur = I;
  if (r < 2 * rem) {
    yield { k: 'recv', peer: r - 1, dst: O, op, acc: I };
    cur = O;
  }
  const nr = r < 2 * rem ? (r - 1) / 2 : r - rem;
  let lo = 0, hi = pp;
  for (let mask = pp >> 1; mask >= 1; mask >>= 1) {
    const peer = real(nr ^ mask);
    const mid = lo + ((hi - lo) >> 1);
    const up = (nr & mask) !== 0;
    const klo = up ? mid : lo, khi = up ? hi : mid, slo = up ? lo : mid, shi = up ? mid : hi;
    yield { k: 'send', peer, src: range(cur, slo, shi) };
    yield { k: 'recv', peer, dst: range(O, klo, khi), op, acc: range(cur, klo, khi) };
    cur = O;
    lo = klo; hi = khi;
  }
  if (op === 'avg') yield { k: 'scale', dst: range(O, lo, hi), factor: 1 / p };
  for (let mask = 1; mask < pp; mask <<= 1) {
    const peer = real(nr ^ mask);
    const size = hi - lo;
    const up = (nr & mask) !== 0;
    const plo = up ? lo - size : hi, phi = up ? lo : hi + size;
    yield { k: 'send', peer, src: range(O, lo, hi) };
    yield { k: 'recv', peer, dst: range(O, plo, phi) };
    lo = Math.min(lo, plo); hi = Math.max(hi, phi);
  }
  if (r < 2 * rem) yield { k: 'send', peer: r - 1, src: O };
}
