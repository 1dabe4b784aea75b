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
import type { Topology } from '../../runtime/topology.js';
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

export function costParams(topo: Topology): CostParams {
  const l = topo.slowestLink();
  return { a: l.alpha, B: 1 / l.bw, G: topo.data.gamma, D: topo.data.delta };
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
