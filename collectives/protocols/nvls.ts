/**
 * NVLS (NVLink SHARP) AllReduce on one NVSwitch node, built from the IR's switch operations
 * (runtime/ir.ts: multicast sends `mc`, in-network reductions `net`).
 *
 * WHAT NVLS DOES (NCCL 2.17+, Hopper NVSwitch 3). The buffer is split into p slices; GPU r owns
 * slice r. (1) multimem.ld_reduce on the multicast address of slice r: the switch reads slice r
 * from all p GPUs, reduces it in the switch and returns the sum to GPU r ("it would pull data from
 * all GPUs and give us the final result", NCCL maintainer, nccl #828). (2) multimem.st of the sum to
 * the multicast address: the switch replicates it to all p GPUs. Per GPU, for S bytes (NCCL
 * maintainer, nccl #1083: "NVLS: Send S, Receive S/N" for ReduceScatter, "Send S/N, Receive S" for
 * AllGather):
 *     sent     S + S/p   (its p slices read by the switch, then its own sum multicast)
 *     received S/p + S   (its own sum from the switch, then every slice's multicast)
 * against 2(p-1)/p S each way for the ring; no reduction on the GPU (the switch's ALUs do it).
 *
 * THE PROGRAM (rank r, p >= 2; slice j = blocks(count, p)[j], cut into K chunks; T = tmp[0..slice)):
 *   compute(lat)                                              NCCL's NVLS latency (below)
 *   for step k = 0 .. K+1:
 *     k < K:       REDUCE-SENDS of chunk k: for d = 1..p, j = (r+d) mod p (itself last):
 *                  send chunk k of slice j of the input to rank j, `net` (into the switch; the
 *                  switch reads every contributor's data, so the bytes are charged on the
 *                  contributor's egress port; j = r: the switch reads r's own slice)
 *     1 <= k <= K: STAGE k-1: recv chunk k-1 of slice r from ranks 0, 1, ..., p-1 (canonical order,
 *                  itself included) into T, `net`: the first a copy, the rest with `op` (the switch
 *                  reduces: no gamma); [avg: scale by 1/p]; then MULTICAST it: send T's chunk to
 *                  r+1, `mc` copies to r+2, ..., r+p-1 and to itself (multimem.st writes the
 *                  result back to every GPU, its own included): one transmission on the port
 *     2 <= k:      BROADCAST-RECVS of chunk k-2: recv chunk k-2 of slice j from rank j into the
 *                  output, for j = r-1, r-2, ..., r+1 and itself last
 * So per GPU the egress port carries S (reduce-sends) + S/p (multicasts) and the receives total
 * S/p (net copies; the folded contributions are the switch's) + S: NVLS's traffic exactly. All
 * ranks hold the same bits (each slice is reduced once, in canonical rank order, and multicast).
 * The result passes through T so that no receive writes a region whose switch message to itself
 * is still unread (in-place, slice r of the output is also what r contributes).
 * PIPELINE: NCCL moves NVLS data in chunks of NCCL_NVLS_CHUNKSIZE = 128 KiB (src/transport/nvls.cc,
 * its default), so the multicast of chunk k overlaps the reduction of chunk k+1; here K =
 * ceil(slice bytes / 128 KiB) clamped to [1, MAX_CHUNKS = 8] (nccl.ts: bounds the op count), at
 * full size under a scale-down. With one egress port per GPU the overlap does not shorten the
 * egress-bound time; it matters for the ingress ports (TopologyData.ingress), where an unpipelined
 * program would receive all multicasts after the reduction instead of during it.
 *
 * EFFICIENCY (as the protocol rings do, nccl.ts): every message travels as an overhead message of
 * wire(c) - c elements then the data message, wire(c) = ceil(c / (e_link e_nvls)), with
 * e_link = 20.6/25 (NCCL's NVLink 4 payload efficiency, LinkClass.efficiency, topo.h SM90_NVLINK_BW;
 * nccl-tests #212) and e_nvls = 0.85 (NCCL's NVLS efficiency factor for Hopper, src/graph/tuning.cc
 * nvlsEfficiency; Blackwell 0.74). These are NVIDIA's measured factors, not derived here. The
 * overhead messages follow their data: `net` into the switch, multicast with `mc`, and every one is
 * received with `pad: true` (timed, no data written).
 * LATENCY: NCCL's NVLS latency on NVLink is 25 us (tuning.cc hwLat NVLINK NVLS Simple; NVLS has no
 * base latency there); the program starts with a compute op of max(0, 25 us - 2 alpha), so that a
 * small AllReduce (K = 1: two message latencies, reduce then multicast) takes 25 us + wire time.
 *
 * COST (exact): cost() evaluates the program's max-plus recurrence step by step over all ranks,
 * with the executors' arithmetic (runtime/timing.ts), so it equals the simulator's time (tested to
 * the last bit on hgx-h100). In words, with w = 1 / (B e_link e_nvls) per byte:
 *     K = 1 (small):  T = lat + 2a + (p+1)/p n w           (+ n/p D for avg)
 *     K > 1 (large):  T = lat + a + (p+1)/p n w  (+ at most one chunk),  the port never idles
 * For 8 x H100: B e_link e_nvls = 450 x 0.824 x 0.85 = 315.2 GB/s per direction, algbw -> 280 GB/s,
 * busbw (x 2(p-1)/p) ~487 GB/s at 1-8 GB; measured ~480 busbw, algbw ~275 (nccl-tests #212). Over
 * p it follows p/(p+1): nccl #1455 reports algbw ~258, 265, 270, 273 GB/s for p = 5..8 (model:
 * 263, 270, 276, 280).
 * The closed form is uncontended: with ingress contention on, NVLS's receives (the multicasts of p
 * slices arriving together) queue on the ingress port; test/contention.test.ts measures it.
 * Multi-node NVLS (NVLS + a ring or tree across nodes, "NVLS-tree") is not modeled: unsupported.
 */
import { ELEM_BYTES, type Op, type Program, type ReduceOp, type Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { delayBytes, delayTime, MAX_CHUNKS } from './nccl.js';

/** NCCL's NVLS efficiency factor by GPU generation (tuning.cc nvlsEfficiency); undefined: no NVLS. */
export const NVLS_EFFICIENCY: Record<string, number> = { h100: 0.85, h200: 0.85, b200: 0.74 };
/** NCCL's NVLS latency on NVLink (tuning.cc hwLat NVLINK NVLS Simple), seconds. */
export const NVLS_LATENCY = 25e-6;
/** NCCL's NVLS chunk (NCCL_NVLS_CHUNKSIZE default, src/transport/nvls.cc), bytes. */
export const NVLS_CHUNK_BYTES = 128 * 1024;

function nvlsCapable(spec: CollSpec, topo: Topology): boolean {
  if (topo.isTorus) return false;
  const l = topo.data.links[topo.data.intra]!;
  return spec.p >= 2 && spec.p <= topo.data.gpusPerNode && l.kind === 'nvlink' && NVLS_EFFICIENCY[topo.data.gpu] !== undefined;
}

function why(spec: CollSpec, topo: Topology): string | undefined {
  if (nvlsCapable(spec, topo)) return undefined;
  return `NVLS needs one NVSwitch node (an NVLink link class) of Hopper/Blackwell GPUs and 2 <= p <= GPUs per node `
    + `(${topo.name} with ${spec.p} ranks is not); multi-node NVLS is not modeled`;
}

/** Payload share of the wire: NVLink payload efficiency x NCCL's NVLS efficiency. */
export function nvlsWireEfficiency(topo: Topology): number {
  const l = topo.data.links[topo.data.intra]!;
  return (l.efficiency ?? 1) * NVLS_EFFICIENCY[topo.data.gpu]!;
}

/** Elements on the wire for c data elements, and of the overhead message before them. */
const wireOf = (c: number, e: number): number => (c > 0 && e < 1 ? Math.ceil(c / e) : c);
const overheadOf = (c: number, e: number): number => wireOf(c, e) - c;

/** The program's geometry: slices, chunk count, latency delay, scratch layout. */
interface Plan {
  p: number;
  slices: { off: number; len: number }[];
  /** chunks per slice, and each slice's chunks */
  K: number;
  chunks: { off: number; len: number }[][];
  e: number;
  /** the latency compute op's bytes (0: none) */
  delay: number;
  /** tmp layout: [T: maxSlice | overhead send area | overhead receive area] */
  maxSlice: number;
  maxOv: number;
}

function plan(spec: CollSpec, topo: Topology): Plan {
  const p = spec.p;
  const slices = blocks(spec.count, p);
  const maxSlice = Math.ceil(spec.count / p);
  const K = Math.max(1, Math.min(MAX_CHUNKS, maxSlice, Math.ceil((maxSlice * ELEM_BYTES * (topo.data.scale ?? 1)) / NVLS_CHUNK_BYTES)));
  const chunks = slices.map((s) => blocks(s.len, K));
  const e = nvlsWireEfficiency(topo);
  const alpha = topo.data.links[topo.data.intra]!.alpha;
  const lat = NVLS_LATENCY - 2 * alpha;
  return { p, slices, K, chunks, e, delay: lat > 0 ? delayBytes(lat, topo) : 0, maxSlice, maxOv: overheadOf(Math.ceil(maxSlice / K), e) };
}

/** Rank r's program (see the header), generated lazily. */
function* rankOps(spec: CollSpec, topo: Topology, r: number): Generator<Op> {
  const pl = plan(spec, topo);
  const { p, K, e } = pl;
  const op = spec.op as ReduceOp;
  const I = inputRegion(spec, r), O = outputRegion(spec, r);
  const T: Region = { buf: 'tmp', off: 0, len: pl.maxSlice };
  const ovS = (n: number): Region => ({ buf: 'tmp', off: pl.maxSlice, len: n });
  const ovR = (n: number): Region => ({ buf: 'tmp', off: pl.maxSlice + pl.maxOv, len: n });
  /** chunk k of slice j inside a region laid out like the vector (input, output) */
  const inVec = (reg: Region, j: number, k: number): Region => {
    const c = pl.chunks[j]![k]!;
    return sub(reg, pl.slices[j]!.off + c.off, c.len);
  };
  const inT = (k: number): Region => { const c = pl.chunks[r]![k]!; return sub(T, c.off, c.len); };

  if (pl.delay > 0) yield { k: 'compute', flops: 0, bytes: pl.delay, label: 'NVLS latency' };
  for (let k = 0; k <= K + 1; k++) {
    if (k < K) {
      // reduce-sends: chunk k of every slice into the switch, its own slice last
      for (let d = 1; d <= p; d++) {
        const j = (r + d) % p;
        const src = inVec(I, j, k);
        const ov = overheadOf(src.len, e);
        if (ov > 0) yield { k: 'send', peer: j, src: ovS(ov), net: true };
        yield { k: 'send', peer: j, src, net: true };
      }
    }
    if (k >= 1 && k <= K) {
      // stage k-1: the switch reduces chunk k-1 of slice r (canonical order), then multicasts it
      const dst = inT(k - 1);
      const ov = overheadOf(dst.len, e);
      for (let i = 0; i < p; i++) {
        if (ov > 0) yield i === 0 ? { k: 'recv', peer: i, dst: ovR(ov), net: true, pad: true } : { k: 'recv', peer: i, dst: ovR(ov), net: true, op, pad: true };
        yield i === 0 ? { k: 'recv', peer: i, dst, net: true } : { k: 'recv', peer: i, dst, net: true, op };
      }
      if (op === 'avg') yield { k: 'scale', dst, factor: 1 / p };
      if (ov > 0) {
        yield { k: 'send', peer: (r + 1) % p, src: ovS(ov) };
        for (let d = 2; d <= p; d++) yield { k: 'send', peer: (r + d) % p, src: ovS(ov), mc: true };
      }
      yield { k: 'send', peer: (r + 1) % p, src: dst };
      for (let d = 2; d <= p; d++) yield { k: 'send', peer: (r + d) % p, src: dst, mc: true };
    }
    if (k >= 2) {
      // broadcast-recvs: chunk k-2 of every slice, from its owner's multicast (its own last)
      for (let d = 1; d <= p; d++) {
        const j = (r - d + p) % p;
        const dst = inVec(O, j, k - 2);
        const ov = overheadOf(dst.len, e);
        if (ov > 0) yield { k: 'recv', peer: j, dst: ovR(ov), pad: true };
        yield { k: 'recv', peer: j, dst };
      }
    }
  }
}

/**
 * The program's exact time (header): its max-plus recurrence, step by step over all ranks, with
 * the executors' arithmetic (runtime/timing.ts: a send starts at max(clock, port free) and arrives
 * bytes / B + alpha later; a receive raises the clock to the arrival; no gamma for `net` receives).
 * An overhead message always arrives before the data message behind it on the same port, so only
 * data arrivals enter the maxima. O(K p^2).
 */
export function nvlsTime(spec: CollSpec, topo: Topology): number {
  if (!nvlsCapable(spec, topo)) return Infinity;
  const pl = plan(spec, topo);
  const { p, K, e, chunks } = pl;
  const link = topo.data.links[topo.data.intra]!;
  const bw = link.bw, alpha = link.alpha, delta = topo.data.delta;
  const avg = spec.op === 'avg';
  const t0 = pl.delay > 0 ? delayTime(NVLS_LATENCY - 2 * alpha, topo) : 0;
  const t = new Float64Array(p).fill(0 + t0);
  const pf = new Float64Array(p);
  let aPrev = new Float64Array(p * p), aCur = new Float64Array(p * p); // arrival at j of chunk from i: [i * p + j]
  let mPrev = new Float64Array(p), mCur = new Float64Array(p); // multicast arrival of rank r's chunk
  /** one send of len elements (with its overhead message) from rank r; returns the data arrival */
  const send = (r: number, len: number): number => {
    const ov = overheadOf(len, e);
    if (ov > 0) { const s = Math.max(t[r]!, pf[r]!); pf[r] = s + (ov * ELEM_BYTES) / bw; }
    const s = Math.max(t[r]!, pf[r]!);
    const end = s + (len * ELEM_BYTES) / bw;
    pf[r] = end;
    return end + alpha;
  };
  for (let k = 0; k <= K + 1; k++) {
    for (let r = 0; r < p; r++) {
      if (k < K) for (let d = 1; d <= p; d++) { const j = (r + d) % p; aCur[r * p + j] = send(r, chunks[j]![k]!.len); }
      if (k >= 1 && k <= K) {
        let x = t[r]!;
        for (let i = 0; i < p; i++) { const a = aPrev[i * p + r]!; if (a > x) x = a; }
        const len = chunks[r]![k - 1]!.len;
        if (avg) x += len * ELEM_BYTES * delta;
        t[r] = x;
        mCur[r] = send(r, len);
      }
      if (k >= 2) {
        let x = t[r]!;
        for (let j = 0; j < p; j++) { const a = mPrev[j]!; if (a > x) x = a; }
        t[r] = x;
      }
    }
    [aPrev, aCur] = [aCur, aPrev];
    [mPrev, mCur] = [mCur, mPrev];
  }
  let T = 0;
  for (let r = 0; r < p; r++) if (t[r]! > T) T = t[r]!;
  return T;
}

export const nvlsAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'nvls',
  summary: 'NVLink SHARP: the switch reduces each slice (in-network reduction) and multicasts the result; per GPU n + n/p each way, no GPU reduction',
  formula: 'exact max-plus recurrence of the program (protocols/nvls.ts); K = 1: lat + 2a + (p+1)/p n w; large: lat + a + (p+1)/p n w; '
    + 'w = 1 / (B e_link e_nvls), e_nvls 0.85 (Hopper, NCCL tuning.cc), lat = 25 us - 2a (NCCL\'s NVLS latency); one NVSwitch node',
  unsupported: (spec, topo) => why(spec, topo),
  tmpElems: (spec, topo) => {
    if (!nvlsCapable(spec, topo)) return 0;
    const pl = plan(spec, topo);
    return pl.maxSlice + 2 * pl.maxOv;
  },
  build(spec: CollSpec, topo: Topology): Program[] {
    const w = why(spec, topo);
    if (w) throw new Error(`allreduce nvls: ${w}`);
    return Array.from({ length: spec.p }, (_, r) => [...rankOps(spec, topo, r)]);
  },
  rankProgram: (spec, topo, r) => ({ [Symbol.iterator]: () => rankOps(spec, topo, r) }),
  cost: nvlsTime,
};
