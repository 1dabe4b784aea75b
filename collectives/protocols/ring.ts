/**
 * NCCL-protocol variants of the ring collectives: ring-ll, ring-ll128 and ring-simple for AllReduce,
 * AllGather and ReduceScatter. Same ring as collectives/allreduce/ring.ts and basic/*-ring.ts (rank r
 * sends to r+1, receives from r-1, the same blocks in the same order, so the same reduction order),
 * but with the protocol's wire encoding, latencies and pipelining (protocols/nccl.ts):
 *
 * PROGRAM of rank r (p >= 2; N ring steps: AllReduce 2(p-1) = reduce-scatter then all-gather,
 * AllGather and ReduceScatter p-1; every ring block cut into K chunks, nccl.ts chunksPerBlock):
 *   compute(base latency)
 *   send the K chunks of step 0                            (AllGather out-of-place: then copy own block)
 *   for s = 0 .. N-1, for j = 0 .. K-1:
 *     recv chunk j of step s from r-1 (reduce-scatter steps: fused recv-reduce)
 *     [avg: scale it, on the last reduce-scatter step]
 *     [j = 0: compute(hop delay of the link r-1 -> r)]
 *     send chunk j of step s+1 to r+1                      (s < N-1)
 * where every chunk send is [overhead message] + data message, and every receive [overhead] + data
 * (nccl.ts: the overhead message carries the protocol's flags and the link's packet overhead).
 *
 * COST. On a topology where every hop is the same (flat), all ranks are alike, and with
 *   w = wireElems(chunk) * 4 / B   (one chunk on the wire), a = alpha, d = hop delay,
 *   g_s = chunk * 4 * G on reduce-scatter steps (+ chunk * 4 * D on the step that scales for avg),
 *   0 on all-gather steps, base = the base latency,
 * the times S(s,j) a chunk is sent and R(s,j) it has been received (and reduced) follow
 *   S(0,j)   = base + j w
 *   R(s,j)   = max(R(s,j-1), S(s,j) + w + a) + g_s + [j = 0] d,   R(s,-1) = R(s-1,K-1), R(0,-1) = base (+ m D copy)
 *   S(s+1,j) = max(R(s,j), S(s+1,j-1) + w),                       S(s+1,-1) = S(s,K-1)  (one port)
 *   T        = R(N-1, K-1).
 * cost() evaluates this exactly, in O(N) (collectives/ringtime.ts: within a step, S(s,.) and R(s,.)
 * are maxima of at most 3 affine functions of j). Two regimes come out of it:
 *   small (K = 1):  T = base + N (w + a + d) + sum g_s           the latency-bound ring
 *   large:          T = base + N K w + a                          the port never idles: the
 *                   reduction (g < w) and the per-step latencies hide behind the pipeline
 * so at large sizes the bus bandwidth is B x efficiency x payload fraction (nccl.ts).
 * The chunk sizes are taken equal (the largest, ceil); with uneven blocks the simulator is a hair
 * faster.
 * Other topologies (multi-node, pods), where the hops differ: an estimate, the largest of three
 * evaluations of the same recurrence, one per kind of critical path: the slowest port never idling
 * (w = slowest hop's, a = d = 0), the chain of hops (w, a, d averaged over the ring: a chain of N
 * steps passes each hop about N/p times), and the clock of the rank behind the largest hop delay
 * (d = largest, w and a = smallest: the hop delay is a per-step cost of the receiver's clock).
 * Exact when the hops are alike; test/protocols.test.ts measures the error otherwise.
 *
 * WHY ~370 GB/s FOR 8 x H100 (calibration.md; nccl-tests #212). NCCL picks Simple for large ring
 * AllReduces (its tuner: Simple's bandwidth is the highest, LL 0.5x and LL128 0.92x of it). Simple's
 * payload is the full wire, so the bus bandwidth is the per-GPU NVLink bandwidth NCCL can use:
 * 18 NVLink 4 links x 20.6 GB/s = 370.8 GB/s (NCCL's own figure, src/graph/topo.h SM90_NVLINK_BW,
 * against 25 GB/s line rate per link), which the NCCL maintainer explains as "450GB/s is the line
 * rate. With the protocol overhead (~20%) NCCL can get an effective NVLink bandwidth of 370GB/s"
 * (nccl-tests #212). That ~20% is an efficiency NVIDIA measured, not something collemu derives: it
 * enters as hgx-h100's LinkClass.efficiency. The other factors are second order at 1-8 GB: Simple's
 * 3.4 us per-hop and 8.4 us base latency, and the pipeline fill, cost < 0.5%; the reduction itself
 * overlaps the transfers (slices through the FIFO), so it costs nothing at large sizes.
 * (The plain `ring` algorithm runs at line rate but does not pipeline: it reduces each block after
 * it arrives, which happens to give ~375 GB/s too; that is a coincidence of HBM speed, not why
 * NCCL gets 370.)
 */
import type { Op, Program, ReduceOp, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, sub, type Algorithm, type CollSpec } from '../types.js';
import { ringHops, ringTimeEstimate } from '../ringtime.js';
import { chunksPerBlock, delayBytes, delayTime, hopDelay, overheadElems, PROTOCOLS, wireElems, type Protocol } from './nccl.js';

type RingColl = 'allreduce' | 'allgather' | 'reducescatter';

const mod = (x: number, p: number): number => ((x % p) + p) % p;

/** Elements of one ring block (the largest) for a spec. */
function blockElems(spec: CollSpec): number {
  return spec.coll === 'allreduce' ? Math.ceil(spec.count / spec.p) : spec.count;
}

/** Ring steps: AllReduce 2(p-1), the others p-1. */
const ringSteps = (coll: RingColl, p: number): number => (coll === 'allreduce' ? 2 * (p - 1) : p - 1);

/** Largest overhead message over every link class of the topology (scratch size). */
function maxOverhead(proto: Protocol, topo: Topology, c: number): number {
  let m = 0;
  for (const l of topo.data.links) m = Math.max(m, overheadElems(proto, l, c));
  return m;
}

/** The scratch layout in 'tmp': [overhead send area | overhead receive area | RS partial]. */
function scratch(proto: Protocol, spec: CollSpec, topo: Topology): { ov: number; part: number; total: number } {
  if (spec.p < 2) return { ov: 0, part: 0, total: 0 };
  const be = blockElems(spec);
  const K = chunksPerBlock(proto, be, topo.data.scale ?? 1);
  const ov = maxOverhead(proto, topo, Math.ceil(be / K));
  const part = spec.coll === 'reducescatter' && !spec.inPlace && spec.p > 2 ? spec.count : 0;
  return { ov, part, total: 2 * ov + part };
}

/** One rank's program (see the header), generated lazily (rankProgram streams it; build() collects it). */
function* rankOps(proto: Protocol, spec: CollSpec, topo: Topology, r: number): Generator<Op> {
  const coll = spec.coll as RingColl;
  const { p, count: c, op, inPlace } = spec;
  const I = inputRegion(spec, r), O = outputRegion(spec, r);
  if (p === 1) {
    if (coll === 'allgather') {
      if (!inPlace && c > 0) yield { k: 'copy', src: I, dst: { buf: 'out', off: 0, len: c } };
    } else if (coll === 'reducescatter') {
      if (!inPlace && c > 0) yield { k: 'copy', src: sub(I, 0, c), dst: O };
      if (op === 'avg') yield { k: 'scale', dst: O, factor: 1 };
    } else if (!inPlace && c > 0) yield { k: 'copy', src: I, dst: O };
    return;
  }
  const N = ringSteps(coll, p);
  const be = blockElems(spec);
  const K = chunksPerBlock(proto, be, topo.data.scale ?? 1);
  const sc = scratch(proto, spec, topo);
  const next = mod(r + 1, p), prev = mod(r - 1, p);
  const linkOut = topo.link(r, next), linkIn = topo.link(prev, r);
  const ovSend = (len: number): Region => ({ buf: 'tmp', off: 0, len });
  const ovRecv = (len: number): Region => ({ buf: 'tmp', off: sc.ov, len });

  // block regions of the collective, then chunk j of a block
  const arBlocks = coll === 'allreduce' ? blocks(c, p) : [];
  const arBlk = (reg: Region, i: number): Region => { const b = arBlocks[mod(i, p)]!; return sub(reg, b.off, b.len); };
  const rankBlk = (reg: Region, i: number): Region => sub(reg, mod(i, p) * c, c); // allgather out / reducescatter in
  const chunkCache = new Map<number, { off: number; len: number }[]>();
  const chunk = (reg: Region, j: number): Region => {
    let ch = chunkCache.get(reg.len);
    if (!ch) chunkCache.set(reg.len, (ch = blocks(reg.len, K)));
    const b = ch[j]!;
    return sub(reg, b.off, b.len);
  };
  const outAll: Region = { buf: 'out', off: 0, len: p * c };
  // reduce-scatter: where the partial received at step s lives (as basic/reducescatter-ring.ts)
  const part = (s: number): Region => (inPlace ? rankBlk(outAll, r - s - 2) : (p - 2 - s) % 2 === 0 ? O : { buf: 'tmp', off: 2 * sc.ov, len: c });

  /** what rank r sends at step s (a whole block) */
  const sendBlock = (s: number): Region => {
    if (coll === 'allreduce') return s < p - 1 ? arBlk(s === 0 ? I : O, r - s) : arBlk(O, r + 1 - (s - (p - 1)));
    if (coll === 'allgather') return s === 0 ? I : rankBlk(outAll, r - s);
    return s === 0 ? rankBlk(I, r - 1) : part(s - 1);
  };
  /** where it receives at step s, and the accumulator of a reduction */
  const recvBlock = (s: number): { dst: Region; acc?: Region } => {
    if (coll === 'allreduce') {
      return s < p - 1 ? { dst: arBlk(O, r - s - 1), acc: arBlk(I, r - s - 1) } : { dst: arBlk(O, r - (s - (p - 1))) };
    }
    if (coll === 'allgather') return { dst: rankBlk(outAll, r - s - 1) };
    return { dst: part(s), acc: rankBlk(I, r - s - 2) };
  };
  const scaleStep = op !== 'avg' ? -1 : coll === 'allreduce' ? p - 2 : coll === 'reducescatter' ? N - 1 : -1;
  const scaleBlock = (): Region => (coll === 'allreduce' ? arBlk(O, r + 1) : O);

  const emitSend = function* (s: number, j: number): Generator<Op> {
    const src = chunk(sendBlock(s), j);
    const ov = overheadElems(proto, linkOut, src.len);
    if (ov > 0) yield { k: 'send', peer: next, src: ovSend(ov) };
    yield { k: 'send', peer: next, src };
  };
  const reduces = (s: number): boolean => coll === 'reducescatter' || (coll === 'allreduce' && s < p - 1);
  const emitRecv = function* (s: number, j: number): Generator<Op> {
    const rb = recvBlock(s);
    const dst = chunk(rb.dst, j);
    const ov = overheadElems(proto, linkIn, dst.len);
    if (ov > 0) yield { k: 'recv', peer: prev, dst: ovRecv(ov), pad: true };
    if (reduces(s)) yield { k: 'recv', peer: prev, dst, op: op as ReduceOp, acc: chunk(rb.acc!, j) };
    else yield { k: 'recv', peer: prev, dst };
  };

  const base = proto.baseLatency;
  if (base > 0) yield { k: 'compute', flops: 0, bytes: delayBytes(base, topo), label: `NCCL ${proto.name} base latency` };
  for (let j = 0; j < K; j++) yield* emitSend(0, j);
  if (coll === 'allgather' && !inPlace && c > 0) yield { k: 'copy', src: I, dst: rankBlk(outAll, r) };
  const d = hopDelay(proto, linkIn);
  for (let s = 0; s < N; s++) {
    for (let j = 0; j < K; j++) {
      yield* emitRecv(s, j);
      if (s === scaleStep) yield { k: 'scale', dst: chunk(scaleBlock(), j), factor: 1 / p };
      if (j === 0 && d > 0) yield { k: 'compute', flops: 0, bytes: delayBytes(d, topo), label: `NCCL ${proto.name} hop latency` };
      if (s < N - 1) yield* emitSend(s + 1, j);
    }
  }
}

/** Closed-form time of a protocol ring (see the header). */
function ringCost(proto: Protocol, spec: CollSpec, topo: Topology): number {
  const coll = spec.coll as RingColl;
  const { p, count: c, inPlace, op } = spec;
  const { gamma, delta } = topo.data;
  if (p === 1) {
    const copy = inPlace ? 0 : c * 4 * delta;
    return copy + (coll === 'reducescatter' && op === 'avg' ? c * 4 * delta : 0);
  }
  const N = ringSteps(coll, p);
  const be = blockElems(spec);
  const K = chunksPerBlock(proto, be, topo.data.scale ?? 1);
  const ch = Math.ceil(be / K);
  // the ring's hops (w: a chunk's wire time on the hop's port, a: latency, d: the protocol's hop delay)
  const hops = ringHops(topo, p, (l) => (wireElems(proto, l, ch) * 4) / l.bw, (l) => { const dh = hopDelay(proto, l); return dh > 0 ? delayTime(dh, topo) : 0; });
  const gRS = ch * 4 * gamma, sc = op === 'avg' ? ch * 4 * delta : 0;
  const g = coll === 'allreduce' ? (s: number) => (s < p - 1 ? gRS : 0) + (s === p - 2 ? sc : 0)
    : coll === 'reducescatter' ? (s: number) => gRS + (s === N - 1 ? sc : 0)
      : () => 0;
  const t0 = delayTime(proto.baseLatency, topo);
  const r0 = t0 + (coll === 'allgather' && !inPlace ? c * 4 * delta : 0);
  return ringTimeEstimate(hops, N, K, g, t0, r0);
}

const COLL_TEXT: Record<RingColl, string> = {
  allreduce: 'ring AllReduce (reduce-scatter + all-gather)',
  allgather: 'ring AllGather',
  reducescatter: 'ring ReduceScatter',
};

function protocolRing(coll: RingColl, proto: Protocol): Algorithm {
  const steps = coll === 'allreduce' ? '2(p-1)' : 'p-1';
  return {
    coll,
    name: `ring-${proto.id}`,
    summary: `NCCL ${proto.name} ${COLL_TEXT[coll]}, pipelined in chunks: ${proto.about}`,
    formula: `pipelined ring, N = ${steps} steps of K chunks: exact max-plus recurrence (protocols/ring.ts); K = 1: base + N (w + a + d) + sum g; large: base + N K w + a; `
      + `w = chunk wire bytes / B (protocol lines, link efficiency), d = max(0, NCCL hop latency - a), base = NCCL base latency`,
    tmpElems: (spec, topo) => scratch(proto, spec, topo).total,
    build: (spec, topo): Program[] => Array.from({ length: spec.p }, (_, r) => [...rankOps(proto, spec, topo, r)]),
    rankProgram: (spec, topo, r) => ({ [Symbol.iterator]: () => rankOps(proto, spec, topo, r) }),
    cost: (spec, topo) => ringCost(proto, spec, topo),
  };
}

const RING_COLLS: RingColl[] = ['allreduce', 'allgather', 'reducescatter'];

/** ring-ll, ring-ll128, ring-simple for allreduce, allgather and reducescatter. */
export const PROTOCOL_RING_ALGOS: Algorithm[] = RING_COLLS.flatMap((coll) =>
  [PROTOCOLS.LL, PROTOCOLS.LL128, PROTOCOLS.Simple].map((proto) => protocolRing(coll, proto)));
