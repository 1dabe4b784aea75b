/**
 * Small helpers shared by the algorithms in collectives/basic/: op builders, bit arithmetic for the
 * tree and butterfly schedules, the cost parameters of a topology, and the "balanced fold" piece map
 * used by the non-power-of-two recursive doubling / halving algorithms.
 *
 * Cost notation used in every formula of this directory: a = alpha (latency of one message),
 * B = beta (seconds per byte on the wire), G = gamma (seconds per byte reduced), D = delta (seconds
 * per byte copied or scaled); m = 4c bytes is one rank's block (c = spec.count), n = 4 * (elements
 * of the collective's vector). Formulas use the slowest link of the ring 0..p-1 (on `flat` there
 * is one link class, and the formulas are the exact virtual time of the schedule).
 */
import { ELEM_BYTES, region, type Op, type ReduceOp, type Region } from '../../runtime/ir.js';
import type { LinkClass, Topology } from '../../runtime/topology.js';
import { blocks } from '../types.js';

export interface CostParams {
  /** latency per message, s */
  a: number;
  /** s per byte on the wire */
  B: number;
  /** s per byte reduced */
  G: number;
  /** s per byte copied / scaled */
  D: number;
}

/**
 * Cost parameters of the slowest link class the algorithm's traffic crosses (`traffic`: its
 * directed pairs; without it, the ring 0..p-1 of the whole topology). "Slowest": lowest bandwidth,
 * then highest latency (Topology.slowestLink). On flat every pair is the one link, so the formulas
 * stay exact there; on multi-node topologies charging every message at the slowest class crossed is
 * an upper-bound estimate (test/protocols.test.ts measures it against the simulator and keeps the
 * documented bounds: MULTINODE_BOUNDS). The ring algorithms (allgather-ring, reducescatter-ring,
 * reduce-ring) and the chain broadcast price each hop instead (collectives/ringtime.ts).
 */
export function costParams(topo: Topology, traffic?: Traffic): CostParams {
  const l = traffic ? slowestCrossed(topo, traffic) : topo.slowestLink();
  return { a: l.alpha, B: 1 / l.bw, G: topo.data.gamma, D: topo.data.delta };
}

/** A traffic pattern: the directed pairs an algorithm sends over, and a cache key for them. */
export interface Traffic { key: string; pairs: () => Iterable<[number, number]> }

const slower = (x: LinkClass, y: LinkClass): boolean => x.bw < y.bw || (x.bw === y.bw && x.alpha > y.alpha);

/** The slowest link class among a pattern's pairs (cached per topology and pattern). */
const crossedCache = new WeakMap<Topology, Map<string, LinkClass>>();
export function slowestCrossed(topo: Topology, traffic: Traffic): LinkClass {
  let m = crossedCache.get(topo);
  if (!m) crossedCache.set(topo, (m = new Map()));
  let l = m.get(traffic.key);
  if (l) return l;
  for (const [a, b] of traffic.pairs()) {
    if (a === b) continue;
    const x = topo.link(a, b);
    if (!l || slower(x, l)) l = x;
  }
  l ??= topo.data.links[topo.data.intra]!;
  m.set(traffic.key, l);
  return l;
}

/** Traffic patterns of the algorithms in this directory (ranks 0..p-1; root-relative where rooted). */
export const traffic = {
  /** r -> r+1 mod p */
  ring: (p: number): Traffic => ({
    key: `ring ${p}`,
    *pairs() { if (p >= 2) for (let r = 0; r < p; r++) yield [r, (r + 1) % p]; },
  }),
  /** root+d -> root+d+1 (mod p), d = 0..p-2: a chain from the root */
  chain: (p: number, root: number): Traffic => ({
    key: `chain ${p} ${root}`,
    *pairs() { for (let d = 0; d + 1 < p; d++) yield [mod(root + d, p), mod(root + d + 1, p)]; },
  }),
  /** r <-> r + 2^k and r - 2^k (mod p): dissemination / Bruck */
  powersOfTwo: (p: number): Traffic => ({
    key: `pow2 ${p}`,
    *pairs() { for (let d = 1; d < p; d *= 2) for (let r = 0; r < p; r++) { yield [r, mod(r + d, p)]; yield [r, mod(r - d, p)]; } },
  }),
  /** butterfly among the p' = 2^floor(lg p) core ranks, plus the fold pairs of the extras (FoldMap) */
  butterfly: (p: number, c: number): Traffic => ({
    key: `butterfly ${p} ${floorPow2(p) === p ? 0 : c}`,
    *pairs() {
      const pc = floorPow2(p), e = p - pc;
      for (let d = 1; d < pc; d *= 2) for (let r = 0; r < pc; r++) yield [r, r ^ d];
      if (e === 0) return;
      const fm = new FoldMap(pc, e, c);
      for (let j = 0; j < e; j++) yield [pc + j, j];
      for (let v = 0; v < pc; v++) for (const pm of fm.msgs[v]!) yield [pc + pm.extra, v];
    },
  }),
  /** binomial tree from/to the root: v - 2^msb(v) <-> v (relative ranks) */
  binomial: (p: number, root: number): Traffic => ({
    key: `binomial ${p} ${root}`,
    *pairs() { for (let v = 1; v < p; v++) yield [mod(v - 2 ** msb(v) + root, p), mod(v + root, p)]; },
  }),
  /** every ordered pair, through the witnesses (0, r) below (O(p), not O(p^2)) */
  allPairs: (p: number): Traffic => ({ key: `all ${p}`, pairs: () => allPairsWitnesses(p) }),
};

/**
 * The pairs (0, r): they cross every link class that all p(p-1) pairs cross. The node topologies
 * price a pair by whether its ranks share a node or a pod, and rank 0 has peers on its own node, on
 * other nodes of its pod and in every other pod; a torus prices it by hop count, and chip 0 (a corner
 * of a mesh, any chip of a torus) has peers at every distance up to the diameter.
 */
function* allPairsWitnesses(p: number): Generator<[number, number]> {
  for (let r = 1; r < p; r++) yield [0, r];
}

/** Bytes of `elems` float32 elements. */
export const by = (elems: number): number => elems * ELEM_BYTES;

export const mod = (x: number, p: number): number => ((x % p) + p) % p;
/** ceil(log2 p) for p >= 1 */
export const ceilLog2 = (p: number): number => (p <= 1 ? 0 : 32 - Math.clz32(p - 1));
/** largest power of two <= p (p >= 1) */
export const floorPow2 = (p: number): number => 2 ** (31 - Math.clz32(p));
/** index of the highest set bit (x >= 1) */
export const msb = (x: number): number => 31 - Math.clz32(x);
/** index of the lowest set bit (x >= 1) */
export const lsb = (x: number): number => 31 - Math.clz32(x & -x);
export function popcount(x: number): number {
  let n = 0;
  for (let y = x >>> 0; y; y &= y - 1) n++;
  return n;
}
/** max popcount of the integers 0..N: max(popcount(N), msb(N)) (0 for N = 0). */
export const maxPopLE = (N: number): number => (N <= 0 ? 0 : Math.max(popcount(N), msb(N)));

export const send = (peer: number, src: Region): Op => ({ k: 'send', peer, src });
export const recv = (peer: number, dst: Region): Op => ({ k: 'recv', peer, dst });
export const recvReduce = (peer: number, dst: Region, op: ReduceOp, acc: Region): Op => ({ k: 'recv', peer, dst, op, acc });
export const copy = (src: Region, dst: Region): Op => ({ k: 'copy', src, dst });
export const scale = (dst: Region, factor: number): Op => ({ k: 'scale', dst, factor });
export const out = (off: number, len: number): Region => region('out', off, len);
export const tmp = (off: number, len: number): Region => region('tmp', off, len);

/**
 * Balanced fold for p = p' + e ranks, p' = 2^floor(lg p), 0 < e < p' (recursive doubling allgather
 * and recursive halving reduce-scatter). The e "extra" ranks' blocks form a contiguous region of
 * e*c elements (out[p'c..pc) in the allgather layout); it is cut into p' nearly equal pieces, piece
 * v belonging to core rank v, so the butterfly among the p' core ranks moves equal amounts on
 * every pair at every step. A piece may straddle two extra blocks; `pieceMsgs(v)` lists the
 * (extra index j, offset in the extra region, length) parts of piece v. Every core rank gets at
 * least one message (a zero-length one when its piece is empty, attributed to the extra block the
 * piece sits at), so that the fold / unfold costs one alpha on every core rank, whatever c is.
 */
export interface PieceMsg { extra: number; off: number; len: number }

export class FoldMap {
  readonly pieces: { off: number; len: number }[];
  readonly msgs: PieceMsg[][];
  constructor(readonly pCore: number, readonly e: number, readonly c: number) {
    this.pieces = blocks(e * c, pCore);
    this.msgs = this.pieces.map(({ off, len }) => {
      if (len === 0) return [{ extra: c > 0 ? Math.min(Math.floor(off / c), e - 1) : 0, off, len: 0 }];
      const res: PieceMsg[] = [];
      for (let j = Math.floor(off / c); j <= Math.floor((off + len - 1) / c); j++) {
        const s = Math.max(off, j * c), t = Math.min(off + len, (j + 1) * c);
        res.push({ extra: j, off: s, len: t - s });
      }
      return res;
    });
  }
  /** [start, end) in the extra region of the pieces of core ranks lo..hi-1 */
  span(lo: number, hi: number): { off: number; len: number } {
    const s = this.pieces[lo]!.off;
    const t = hi < this.pCore ? this.pieces[hi]!.off : this.e * this.c;
    return { off: s, len: t - s };
  }
}
