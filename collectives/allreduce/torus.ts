/**
 * Torus AllReduce: a multi-dimensional reduce-scatter along each axis of the torus in turn, then an
 * all-gather back in reverse axis order, with BIDIRECTIONAL rings: the vector is cut in two halves,
 * half 0 travels the "+" ring of every axis (to coordinate c+1, from c-1) and half 1 the "-" ring
 * (to c-1, from c+1), so each chip drives its +axis and -axis egress ports at the same time.
 * Only on torus topologies (runtime/topology.ts: tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e), on all chips.
 *
 * Data (per half, h = 0 or 1, dir = +1 or -1; axes of length 1 are skipped; axis order: the wrapped
 * axes first, then 2-chip and mesh axes, see axisOrder):
 *  - reduce-scatter on axis a (d chips, this chip at ring position j): the half's current segment is cut
 *    into d blocks (types.blocks, so any count works); a ring reduce-scatter as ring.ts: step s sends
 *    block j - dir s, receive-reduces block j - dir (s+1); the chip ends owning block j + dir,
 *    reduced over the axis. That block is the segment of the next axis. The first axis reads the
 *    input ('in', or 'out' in place), later axes work in 'out'.
 *  - avg: each chip scales its final piece of each half (1/p of it) by 1/p, once.
 *  - all-gather in reverse axis order: a ring all-gather of the axis's d blocks (as ring.ts).
 * Program order interleaves the halves so neither waits for the other's reduction:
 *   send h0[0], send h1[0], then per step k: recv h0[k], send h0[k+1], recv h1[k], send h1[k+1].
 * Halves: h0 = ceil(count/2) elements, h1 = floor(count/2); zero-length blocks are still sent (one
 * latency each), as in ring.ts, so the schedule does not depend on the count.
 *
 * Axes of 2 chips: the + and - neighbours are the same chip, joined by one link, so both halves'
 * blocks go through one port (the topology model has no second link there). Axes without wraparound
 * (a mesh axis, d >= 3): the ring is the folded ring 0, 2, 4, ..., 5, 3, 1 (ring position j =
 * place in that order): 2-hop edges instead of one (d-1)-hop closing edge, every chip sends one
 * half each way, except the two end chips, whose one link carries both halves (so the bandwidth
 * there is half a wrapped axis's; these axes go last, on the smallest segments).
 *
 * Cost (closed form per step, exact for a symmetric torus: every axis of length 1, 2 or wrapped;
 * every chip then runs the same timeline, so one chip's suffices). Steps k = 0..K-1: the d_a - 1
 * reduce-scatter steps of each axis a (in order), then the all-gather steps in reverse order;
 * block bytes of half h on axis a: b_{h,a} = 4 e_{h,a+1}, e_{h,0} = ceil(count/2) | floor(count/2),
 * e_{h,a+1} = ceil(e_{h,a} / d_a) (the largest block: exact when the d_a divide the count).
 * With a = alpha (one ICI hop), B = 1/bandwidth, G = gamma, D = delta:
 *   send of half h at step k issued at S_h[k], leaves its port at max(S_h[k], port free),
 *     arrives A_h[k] = that + b B + a                  (port: +axis for h0, -axis for h1; shared
 *                                                       on 2-chip and mesh axes)
 *   t := max(t, A_h[k]) + [reduce-scatter] b G [+ b D, avg, last reduce-scatter step]
 *   S_h[k+1] := t (after the recv of half h), T = t after the last step.
 * When a + bB exceeds the other half's reduce (the usual case) this sums to
 *   T = sum_RS (a + b B + b G) + sum_AG (a + b B) + b_last G [+ 2 b_last D avg]
 *     = 2 sum_a (d_a - 1) a + (1 - 1/p) n B + (1 - 1/p) n/2 G + ...   (n bytes, d_a | count)
 * since each direction moves (1 - 1/p) n/2 bytes per phase (sum_a (d_a - 1)/(d_1..d_a) = 1 - 1/p).
 * Mesh axes: an estimate, as if every chip were an end chip (one port for both halves) and every
 * step but the first of a phase took 2 hops; within ~10% of the simulator on the meshes tried
 * (1D 3..8 chips, 4x4, 5x5, 4x4x4 without wraparound; exact at count 0 except 3x3).
 *
 * Against the scaling-book (tpus.md / sharding.md) bandwidth-bound figure for an ICI torus,
 * AllReduce ~ 2 V / (W_bidir x n_axes), W_bidir = 2 W (W = one link one way): this schedule takes
 * ~ 2 V / W_bidir (1 - 1/p) = V / W: it runs the axes one after another, so only 2 of the 2 n_axes
 * ports are busy at a time, n_axes times slower than the figure, which assumes all axes busy at once
 * (the data cut into n_axes parts, each visiting the axes in a rotated order). For tpu-v4 4x4x4
 * and 1 GiB: V / W = 23.9 ms here vs 2 V / (90 GB/s x 3) = 7.95 ms.
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { singleRankCost, singleRankProgram } from './common.js';

const mod = (x: number, m: number) => ((x % m) + m) % m;

/**
 * The ring along axis a through rank r: its position j in the ring and its successor (to) and
 * predecessor (from) in direction dir. A wrapped axis (or one of <= 2 chips): the ring is the
 * coordinate order. A mesh axis (no wraparound, d >= 3): the folded ring 0, 2, 4, ..., (evens up),
 * ..., 5, 3, 1 (odds down), whose edges are 2 hops (1 at the two turns) instead of one edge of
 * d-1 hops; each chip sends one half each way, except the two end chips, whose only link carries both.
 */
function ringNeighbours(topo: Topology, r: number, a: number, dir: number): { j: number; to: number; from: number } {
  const { dims, wrap } = topo.torus!;
  const d = dims[a]!, c = topo.coord(r, a);
  if (wrap[a] || d <= 2) return { j: c, to: topo.along(r, a, dir), from: topo.along(r, a, -dir) };
  const evens = Math.ceil(d / 2);
  const pos = c % 2 === 0 ? c / 2 : d - 1 - (c - 1) / 2; // position of coordinate c in the ring
  const at = (q: number) => { const i = mod(q, d); return i < evens ? 2 * i : 2 * (d - 1 - i) + 1; }; // coordinate at position q
  return { j: pos, to: topo.along(r, a, at(pos + dir) - c), from: topo.along(r, a, at(pos - dir) - c) };
}

/**
 * The axes in reduce-scatter order: those longer than 1, wrapped ones first (both halves have their
 * own port there), then 2-chip and mesh axes (whose end chips send both halves through one link),
 * which so get the smaller segments; axis index order otherwise.
 */
function axisOrder(topo: Topology): number[] {
  const { dims, wrap } = topo.torus!;
  const ax = dims.map((_, i) => i).filter((i) => dims[i]! > 1);
  return [...ax.filter((i) => wrap[i]), ...ax.filter((i) => !wrap[i])];
}

interface Step { to: number; from: number; send: Region; recv: Region; acc?: Region }

/** One half's steps on rank r: reduce-scatter steps, then all-gather steps; and its final piece. */
function halfSteps(spec: CollSpec, topo: Topology, r: number, half: 0 | 1): { rs: Step[]; ag: Step[]; piece: Region } {
  const { dims } = topo.torus!;
  const c = spec.count;
  const I = inputRegion(spec, r), O = outputRegion(spec, r);
  const dir = half === 0 ? 1 : -1;
  let seg = half === 0 ? { off: 0, len: Math.ceil(c / 2) } : { off: Math.ceil(c / 2), len: Math.floor(c / 2) };
  let src = I; // where the segment's partial sums live
  const rs: Step[] = [], ag: Step[] = [];
  const levels: { axis: number; seg: { off: number; len: number }; own: number }[] = [];
  const blk = (reg: Region, s: { off: number; len: number }, bl: { off: number; len: number }[], i: number): Region => {
    const b = bl[mod(i, bl.length)]!;
    return { buf: reg.buf, off: reg.off + s.off + b.off, len: b.len };
  };
  for (const a of axisOrder(topo)) {
    const d = dims[a]!;
    const { j, to, from } = ringNeighbours(topo, r, a, dir);
    const bl = blocks(seg.len, d);
    for (let s = 0; s < d - 1; s++) {
      const ri = j - dir * (s + 1);
      rs.push({ to, from, send: blk(s === 0 ? src : O, seg, bl, j - dir * s), recv: blk(O, seg, bl, ri), acc: blk(src, seg, bl, ri) });
    }
    const own = mod(j + dir, d);
    levels.push({ axis: a, seg, own });
    const b = bl[own]!;
    seg = { off: seg.off + b.off, len: b.len };
    src = O;
  }
  for (let li = levels.length - 1; li >= 0; li--) {
    const { axis, seg: sg, own } = levels[li]!;
    const d = dims[axis]!;
    const { to, from } = ringNeighbours(topo, r, axis, dir);
    const bl = blocks(sg.len, d);
    for (let s = 0; s < d - 1; s++) {
      ag.push({ to, from, send: blk(O, sg, bl, own - dir * s), recv: blk(O, sg, bl, own - dir * (s + 1)) });
    }
  }
  return { rs, ag, piece: { buf: O.buf, off: O.off + seg.off, len: seg.len } };
}

function why(spec: CollSpec, topo: Topology): string | undefined {
  if (!topo.isTorus) return `torus needs a torus topology (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e); ${topo.name} is not one`;
  if (spec.p !== topo.p) return `torus runs on all ${topo.p} chips of the ${topo.torus!.dims.join('x')} torus, not on ${spec.p} ranks`;
  return undefined;
}

export const torusAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'torus',
  summary: 'torus: reduce-scatter along each axis in turn, then all-gather back, bidirectional rings (half the data each way)',
  formula: 'sum_RS (a + bB + bG) + sum_AG (a + bB) + b_last G [+ 2 b_last D avg] = 2 sum_axes (d-1) a + (1-1/p) n B + (1-1/p) n/2 G; b = block of a half on that axis (n/2 / (d_1..d_a)); torus topologies only',
  unsupported: why,
  build(spec: CollSpec, topo: Topology): Program[] {
    const w = why(spec, topo);
    if (w) throw new Error(`torus: ${w}`);
    const { p, op } = spec;
    if (p === 1) return singleRankProgram(spec);
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const h = [halfSteps(spec, topo, r, 0), halfSteps(spec, topo, r, 1)] as const;
      const R = h[0].rs.length;
      const steps = [[...h[0].rs, ...h[0].ag], [...h[1].rs, ...h[1].ag]] as const;
      const K = steps[0].length;
      const ops: Op[] = [];
      const send = (hh: 0 | 1, k: number) => { const st = steps[hh][k]!; ops.push({ k: 'send', peer: st.to, src: st.send }); };
      send(0, 0);
      send(1, 0);
      for (let k = 0; k < K; k++) {
        for (const hh of [0, 1] as const) {
          const st = steps[hh][k]!;
          if (k < R) ops.push({ k: 'recv', peer: st.from, dst: st.recv, op, acc: st.acc });
          else ops.push({ k: 'recv', peer: st.from, dst: st.recv });
          if (k === R - 1 && op === 'avg') ops.push({ k: 'scale', dst: h[hh].piece, factor: 1 / p });
          if (k + 1 < K) send(hh, k + 1);
        }
      }
      progs.push(ops);
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    if (p === 1 || !topo.isTorus) return p === 1 ? singleRankCost(spec, topo) : Infinity;
    const { dims, wrap } = topo.torus!;
    const ici = topo.data.links[0]!;
    const a1 = ici.alpha, B = 1 / ici.bw, G = topo.data.gamma, D = topo.data.delta;
    // the steps of one chip: bytes per half, port (per half), latency, whether it reduces
    interface S { bytes: [number, number]; port: [number, number]; alpha: number; rs: boolean }
    const rsSteps: S[] = [];
    const e = [Math.ceil(c / 2), Math.floor(c / 2)];
    for (const a of axisOrder(topo)) {
      const d = dims[a]!;
      e[0] = Math.ceil(e[0]! / d);
      e[1] = Math.ceil(e[1]! / d);
      const shared = d === 2 || !wrap[a];
      for (let s = 0; s < d - 1; s++) {
        // mesh axis (folded ring): 2-hop edges but one per phase, the end chips' one link shared by
        // both halves (an estimate: the chips are not alike)
        const alpha = !wrap[a] && d > 2 && s > 0 ? 2 * a1 : a1;
        rsSteps.push({ bytes: [4 * e[0], 4 * e[1]], port: shared ? [2 * a, 2 * a] : [2 * a, 2 * a + 1], alpha, rs: true });
      }
    }
    const agSteps: S[] = [];
    for (let i = rsSteps.length - 1; i >= 0; i--) agSteps.push({ ...rsSteps[i]!, rs: false });
    // reverse order keeps each axis's steps together; within an axis all steps are alike except a
    // mesh axis's closing step, which stays once per phase
    const steps = [...rsSteps, ...agSteps];
    const R = rsSteps.length, K = steps.length;
    const pf = new Float64Array(2 * dims.length);
    const arr = [0, 0];
    const send = (h: 0 | 1, k: number, at: number) => {
      const st = steps[k]!, port = st.port[h];
      const start = Math.max(at, pf[port]!);
      pf[port] = start + st.bytes[h] * B;
      arr[h] = pf[port]! + st.alpha;
    };
    send(0, 0, 0);
    send(1, 0, 0);
    let t = 0;
    for (let k = 0; k < K; k++) {
      const st = steps[k]!;
      for (const h of [0, 1] as const) {
        t = Math.max(t, arr[h]!) + (st.rs ? st.bytes[h] * G : 0);
        if (k === R - 1 && spec.op === 'avg') t += st.bytes[h] * D;
        if (k + 1 < K) send(h, k + 1, t);
      }
    }
    return t;
  },
};
