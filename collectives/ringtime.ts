/**
 * Virtual time of ring-shaped schedules, shared by the ring algorithms' cost formulas
 * (protocols/ring.ts, basic/allgather-ring.ts, basic/reducescatter-ring.ts, basic/reduce-ring.ts).
 *
 * A ring of p ranks runs N steps; in each step every rank sends K chunks to its successor, and
 * receives K chunks from its predecessor (step-major: chunk j of step s+1 leaves as soon as chunk j
 * of step s has been received and processed). With all hops alike (w: a chunk's time on the
 * sender's port, a: latency, d: a delay on the receiver's clock after the first chunk of a step,
 * g(s): the receiver's clock time per chunk on step s), the send and receive times S(s,j), R(s,j)
 * follow
 *   S(0,j)   = t0 + j w
 *   R(s,j)   = max(R(s,j-1), S(s,j) + w + a) + g(s) + [j = 0] d,   R(s,-1) = R(s-1,K-1), R(0,-1) = r0
 *   S(s+1,j) = max(R(s,j), S(s+1,j-1) + w),                         S(s+1,-1) = S(s,K-1)
 * and the schedule ends at T = R(N-1,K-1). pipelinedRingTime() evaluates this exactly in O(N):
 * within a step, S(s,.) and R(s,.) are maxima of affine functions of j (unroll the max-plus
 * recurrences: a piece's slope is w, g(s) or an older slope, so a step has at most 3 pieces, one per
 * slope). K = 1 with d = 0 is the plain (unpipelined) ring: T = max(r0, t0 + w + a) + ... .
 *
 * When the hops differ (multi-node, pods) the ranks are not alike; ringTimeEstimate() then takes the
 * largest of three evaluations, one per kind of critical path: the slowest port never idling
 * (w = largest, a = d = 0: the recurrence would charge a on every step; this misses one latency at
 * the end), the chain of hops (w, a, d averaged over the ring: a chain of
 * N steps passes each hop about N/p times) and the clock behind the largest hop delay (d = largest,
 * w and a = smallest). Exact when the hops are alike; each caller's tests measure the error otherwise.
 */
import type { LinkClass, Topology } from '../runtime/topology.js';

/** An affine function of the chunk index j: intercept + slope * j. */
type Piece = [number, number];
const evalAt = (ps: readonly Piece[], j: number): number => {
  let m = -Infinity;
  for (const [c, s] of ps) { const v = c + s * j; if (v > m) m = v; }
  return m;
};
/** Add a piece, keeping one piece per slope (the larger intercept). */
const addPiece = (ps: Piece[], c: number, s: number): void => {
  for (const q of ps) if (q[1] === s) { if (c > q[0]) q[0] = c; return; }
  ps.push([c, s]);
};

/** T of the header's recurrence, exactly, in O(N). */
export function pipelinedRingTime(N: number, K: number, w: number, a: number, d: number, g: (s: number) => number, t0: number, r0: number): number {
  let S: Piece[] = [[t0, w]];
  let rEnd = r0;
  for (let s = 0; s < N; s++) {
    const gs = g(s);
    const R: Piece[] = [];
    addPiece(R, Math.max(rEnd, evalAt(S, 0) + w + a) + d + gs, gs);
    for (const [c, m] of S) {
      const ca = c + w + a;
      if (m >= gs) addPiece(R, ca + gs, m);
      else addPiece(R, ca + m, gs);
    }
    if (s < N - 1) {
      const Sn: Piece[] = [];
      addPiece(Sn, evalAt(S, K - 1) + w, w);
      for (const [e, n] of R) addPiece(Sn, e, Math.max(n, w));
      S = Sn;
    }
    rEnd = evalAt(R, K - 1);
  }
  return rEnd;
}

export interface Stat { min: number; mean: number; max: number }
export interface HopStats { same: boolean; w: Stat; a: Stat; d: Stat }

/** Per-hop w (port time), a (latency) and d (receiver delay) over the ring 0 -> 1 -> ... -> p-1 -> 0. */
export function ringHops(topo: Topology, p: number, w: (l: LinkClass) => number, d: (l: LinkClass) => number = () => 0): HopStats {
  const l0 = topo.link(0, 1 % p);
  let same = true;
  const st = (): Stat => ({ min: Infinity, mean: 0, max: -Infinity });
  const W = st(), A = st(), D = st();
  const add = (s: Stat, x: number) => { if (x < s.min) s.min = x; if (x > s.max) s.max = x; s.mean += x / p; };
  for (let r = 0; r < p; r++) {
    const l = topo.link(r, (r + 1) % p);
    if (l !== l0) same = false;
    add(W, w(l));
    add(A, l.alpha);
    add(D, d(l));
  }
  return { same, w: W, a: A, d: D };
}

/** The ring's time: exact when its hops are alike, else the three-path estimate of the header. */
export function ringTimeEstimate(h: HopStats, N: number, K: number, g: (s: number) => number, t0: number, r0: number): number {
  if (h.same) return pipelinedRingTime(N, K, h.w.max, h.a.max, h.d.max, g, t0, r0);
  return Math.max(
    pipelinedRingTime(N, K, h.w.max, 0, 0, g, t0, r0), // the slowest port never idles (its final latency left out)
    pipelinedRingTime(N, K, h.w.mean, h.a.mean, h.d.mean, g, t0, r0), // the chain of hops
    pipelinedRingTime(N, K, h.w.min, h.a.min, h.d.max, g, t0, r0), // the clock behind the largest hop delay
  );
}
