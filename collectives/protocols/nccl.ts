/**
 * NCCL's three protocols (LL, LL128, Simple) as facts the IR-level variants in ring.ts use: how
 * many bytes a chunk of data puts on the wire, how large a pipeline chunk is, and the latencies of
 * NCCL's own cost model. Sources: NCCL src/include/device.h (line formats, thread counts),
 * src/init.cc (buffer sizes), src/graph/tuning.cc (latencies, bandwidth factors), src/graph/topo.h
 * (per-link NVLink bandwidth); the NCCL maintainer's comments in nccl-tests #212 and nccl #1083.
 * Only figures and facts are taken from NCCL; the code is collemu's.
 *
 * WIRE ENCODING
 *  - LL ("low latency"): 8-byte lines of 4 data bytes + a 4-byte flag, written with one 8-byte
 *    store, so the receiver can poll for data without a separate flag: 50% of the wire is payload.
 *  - LL128: 128-byte lines of 120 data bytes + an 8-byte flag (NVLink guarantees 128-byte write
 *    atomicity): 120/128 = 93.75%. (NCCL's tuner uses 0.92.)
 *  - Simple: plain data, then a separate flag write per step (a memory fence): 100% payload, but
 *    the highest per-step latency.
 * On top of that, every byte pays the link's payload efficiency (LinkClass.efficiency): NVLink 4
 * carries 20.6 of its 25 GB/s per link as payload for NCCL (topo.h SM90_NVLINK_BW; "protocol
 * overhead (~20%)", nccl-tests #212), so 370.8 of 450 GB/s per GPU. So a chunk of c float32
 * elements costs wireElems(c) = ceil((c + flagElems(c)) / efficiency) elements on the wire.
 *
 * HOW THE IR CARRIES THE EXTRA BYTES. A chunk travels as two messages on the same pair: first an
 * overhead message of wireElems(c) - c elements (the flags, and the link's packet overhead; sent
 * from a scratch region in 'tmp' and received with `pad: true`, so it is timed but writes no data),
 * then the data message itself. The port serializes them, so the data arrives
 * exactly when one message of wireElems(c) elements would: the receiver waits for both (an LL line
 * is usable only with its flag), then reduces. No overhead message is sent when it would be empty
 * (Simple on a link without an efficiency figure, e.g. flat).
 *
 * LATENCY (NCCL tuning.cc, Ring; microseconds): base LL 6.6, LL128 14.0, Simple 8.4 (kernel launch
 * and setup: once per collective); per hop on NVLink LL 0.6, LL128 1.9, Simple 3.4, on the network
 * LL 2.7, LL128 4.0, Simple 14.0. In the IR: the base latency is a `compute` op at the start of
 * every rank's program (bytes chosen so its roofline time is the latency), and a hop costs
 * max(alpha, NCCL's hop latency): the link's alpha is already paid by every message, so the
 * protocol adds max(0, hop - alpha) as a `compute` op after the first chunk of every step arrives
 * (the receiver noticing the step: flag polling, fences), before it forwards that chunk. Links of
 * no NVLink/network kind (flat's generic link, TPU ICI) get no extra hop latency.
 * The IR cannot delay a message beyond its link's alpha without occupying a clock, so this extra
 * latency is a per-step cost of the receiving GPU's clock, not a pure latency. On one NVSwitch node
 * every hop is alike and the two agree (T = base + 2(p-1) x hop latency for small messages, NCCL's
 * own model). On a multi-node ring the GPU behind a network hop pays the network figure on every
 * step while NCCL's model charges it on the 2(nodes-1) steps a chunk crosses nodes: small Simple
 * messages across nodes (where Simple adds 14 - 5 = 9 us per network hop) come out slower than NCCL
 * predicts; LL and LL128 (network hop latency below the 5 us alpha) and large messages (the delay
 * hides behind the pipeline once a chunk's wire time exceeds it) are not affected.
 *
 * CHUNKS (pipelining). NCCL moves each step of the ring in slices through a FIFO of NCCL_STEPS = 8
 * buffers per connection, so the reduction of one slice overlaps the transfer of the next and the
 * link never waits for the GPU. The IR variants cut every ring block into K chunks of about the
 * protocol's step size (NCCL's per-step buffer: LL 64 KiB of lines = 32 KiB of data, LL128
 * 614,400 B of lines = 576,000 B of data, Simple 4 MiB / 8 = 512 KiB), at most MAX_CHUNKS, and
 * order the program step-major (all chunks of step s, then of step s+1), so the rank forwards chunk
 * j of step s+1 as soon as chunk j of step s is reduced. (NCCL also splits the data over many
 * channels, parallel rings; in this single-port model they would only interleave on the port, so
 * one ring stands for all of them.)
 */
import { ELEM_BYTES } from '../../runtime/ir.js';
import type { LinkClass, Topology } from '../../runtime/topology.js';

export type ProtocolName = 'LL' | 'LL128' | 'Simple';

export interface Protocol {
  name: ProtocolName;
  /** suffix of the algorithm names: ring-ll, ring-ll128, ring-simple */
  id: 'll' | 'll128' | 'simple';
  /** data bytes per line and line bytes (Simple: no lines) */
  lineData: number;
  lineBytes: number;
  /** data bytes per pipeline chunk (NCCL's per-step buffer, see the header) */
  chunkBytes: number;
  /** NCCL base latency (Ring), seconds */
  baseLatency: number;
  /** NCCL per-hop latency (Ring) on NVLink and on the network, seconds */
  hopLatency: { nvlink: number; net: number };
  /** one line for `collemu algos` */
  about: string;
}

const US = 1e-6;

export const PROTOCOLS: Record<ProtocolName, Protocol> = {
  LL: {
    name: 'LL', id: 'll', lineData: 4, lineBytes: 8,
    chunkBytes: 32 * 1024,
    baseLatency: 6.6 * US, hopLatency: { nvlink: 0.6 * US, net: 2.7 * US },
    about: 'LL: 8-byte lines of 4 data bytes + flag (50% of the wire), lowest latency',
  },
  LL128: {
    name: 'LL128', id: 'll128', lineData: 120, lineBytes: 128,
    chunkBytes: 576_000,
    baseLatency: 14.0 * US, hopLatency: { nvlink: 1.9 * US, net: 4.0 * US },
    about: 'LL128: 128-byte lines of 120 data bytes + flag (93.75%)',
  },
  Simple: {
    name: 'Simple', id: 'simple', lineData: Infinity, lineBytes: Infinity,
    chunkBytes: 512 * 1024,
    baseLatency: 8.4 * US, hopLatency: { nvlink: 3.4 * US, net: 14.0 * US },
    about: 'Simple: plain data + a flag per step (full payload), highest per-step latency',
  },
};

/** At most this many pipeline chunks per ring block (bounds the op count; see the header). */
export const MAX_CHUNKS = 8;

/** Flag elements (4 bytes each) that travel with c data elements. */
export function flagElems(proto: Protocol, c: number): number {
  if (proto.name === 'LL') return c; // a 4-byte flag per 4-byte datum
  if (proto.name === 'LL128') return 2 * Math.ceil((c * ELEM_BYTES) / proto.lineData); // 8 bytes per 120-byte line
  return 0;
}

/** Elements on the wire for c data elements over `link` (protocol lines, then link efficiency). */
export function wireElems(proto: Protocol, link: LinkClass, c: number): number {
  const e = c + flagElems(proto, c);
  const eff = link.efficiency ?? 1;
  return eff < 1 ? Math.ceil(e / eff) : e;
}

/** Elements of the overhead message that precedes a data message of c elements (0: none). */
export function overheadElems(proto: Protocol, link: LinkClass, c: number): number {
  return wireElems(proto, link, c) - c;
}

/** Extra latency the protocol adds to a hop over `link`, seconds: max(0, NCCL's hop latency - alpha). */
export function hopDelay(proto: Protocol, link: LinkClass): number {
  const h = link.kind === 'nvlink' ? proto.hopLatency.nvlink : link.kind === 'net' ? proto.hopLatency.net : 0;
  return Math.max(0, h - link.alpha);
}

/**
 * A pure delay as a `compute` op: bytes chosen so the roofline time bytes / HBM bandwidth is `t`.
 * delayTime() is the time the executors charge for it (the same expression).
 */
export const delayBytes = (t: number, topo: Topology): number => t * topo.hw.hbmBandwidth;
export const delayTime = (t: number, topo: Topology): number => delayBytes(t, topo) / topo.hw.hbmBandwidth;

/**
 * Pipeline chunks per ring block of `blockElems` elements: ceil(block bytes / protocol chunk),
 * clamped to [1, min(MAX_CHUNKS, blockElems)]. Under a scale-down by k the block stands for one k
 * times larger, so the threshold uses the full size (the schedule is the same).
 */
export function chunksPerBlock(proto: Protocol, blockElems: number, scale = 1): number {
  if (blockElems <= 1) return 1;
  const k = Math.ceil((blockElems * ELEM_BYTES * scale) / proto.chunkBytes);
  return Math.max(1, Math.min(MAX_CHUNKS, blockElems, k));
}
