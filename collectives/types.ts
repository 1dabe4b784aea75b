/**
 * Collective specs, buffer conventions and the Algorithm interface.
 *
 * Conventions follow nccl-tests. `count` is the per-rank element count (float32):
 *  - allreduce:     in[count] -> out[count]
 *  - allgather:     in[count] -> out[p*count], rank r's block at out[r*count]
 *  - reducescatter: in[p*count] -> out[count], rank r gets block r of the reduction
 *  - broadcast:     root's in[count] -> every out[count]
 *  - reduce:        in[count] -> root's out[count]
 *  - alltoall:      in[p*count] -> out[p*count]: block j of rank i's in lands in block i of rank j's out
 *  - sendrecv:      in[count] of rank r -> out[count] of rank (r+1) mod p
 *  - barrier:       no data
 * In-place (as nccl-tests): the input already sits in 'out' — allgather: out[r*count..]; reducescatter:
 * out holds p*count inputs and the result lands at out[r*count..]; others: out[0..count). The 'in'
 * buffer is then empty. Algorithms may use a 'tmp' buffer of the size they declare.
 */
import { IRError, type BufferSizes, type Op, type Program, type ReduceOp, type Region } from '../runtime/ir.js';
import type { Topology } from '../runtime/topology.js';

export type Collective = 'allreduce' | 'allgather' | 'reducescatter' | 'broadcast' | 'reduce' | 'alltoall' | 'sendrecv' | 'barrier';
export const COLLECTIVES: readonly Collective[] = ['allreduce', 'allgather', 'reducescatter', 'broadcast', 'reduce', 'alltoall', 'sendrecv', 'barrier'];

export interface CollSpec {
  coll: Collective;
  /** number of ranks */
  p: number;
  /** per-rank element count (nccl-tests "count") */
  count: number;
  op: ReduceOp;
  inPlace: boolean;
  root: number;
}

export interface Algorithm {
  coll: Collective;
  name: string;
  /** one line: what it is */
  summary: string;
  /** the cost formula in words/symbols, shown by `collemu algos` */
  formula: string;
  /** Why this spec/topology is unsupported, or undefined when it is supported. */
  unsupported?(spec: CollSpec, topo: Topology): string | undefined;
  /** Extra scratch ('tmp') elements per rank. */
  tmpElems?(spec: CollSpec, topo: Topology): number;
  /** Per-rank programs. */
  build(spec: CollSpec, topo: Topology): Program[];
  /**
   * Optional lazy form of build(): rank `rank`'s ops, generated as they are consumed; exactly the
   * sequence of build(spec, topo)[rank] (test/simulate-scale.test.ts checks this), and every
   * iteration starts over. It lets `simulate` run 10^4-10^5 ranks without materializing every
   * program: `simulate({ topo, programs: (r) => algo.rankProgram!(spec, topo, r) })`.
   * Yielded Op and Region objects must not be mutated afterwards (executors keep references);
   * Regions may be shared between ops and ranks. Exception: an iterator that also has `nextOp()`
   * (runtime/simulate.ts OpCursor) may reuse the op object it returns from nextOp() (simulate
   * reads it only until it pulls the next op); its next() must still yield fresh ops.
   */
  rankProgram?(spec: CollSpec, topo: Topology, rank: number): Iterable<Op>;
  /** Closed-form virtual time in seconds (alpha-beta-gamma on the topology's link classes). */
  cost(spec: CollSpec, topo: Topology): number;
}

/** Whether the collective carries a reduction. */
export const isReducing = (c: Collective) => c === 'allreduce' || c === 'reducescatter' || c === 'reduce';
/** Whether the collective has a root. */
export const isRooted = (c: Collective) => c === 'broadcast' || c === 'reduce';

/** Elements of 'in' and 'out' per rank for a spec (before the algorithm's tmp). */
export function ioSizes(s: CollSpec): { in: number; out: number } {
  const c = s.count, p = s.p;
  switch (s.coll) {
    case 'allreduce':
    case 'broadcast':
    case 'reduce':
    case 'sendrecv':
      return { in: s.inPlace ? 0 : c, out: c };
    case 'allgather':
      return { in: s.inPlace ? 0 : c, out: p * c };
    case 'reducescatter':
      return s.inPlace ? { in: 0, out: p * c } : { in: p * c, out: c };
    case 'alltoall':
      return { in: s.inPlace ? 0 : p * c, out: p * c };
    case 'barrier':
      return { in: 0, out: 0 };
  }
}

export function bufferSizes(s: CollSpec, algo: Algorithm, topo: Topology): BufferSizes {
  const io = ioSizes(s);
  const tmp = algo.tmpElems ? algo.tmpElems(s, topo) : 0;
  if (!Number.isSafeInteger(tmp) || tmp < 0) {
    throw new IRError(`algorithm '${algo.name}': tmpElems() must return the 'tmp' buffer's size in elements, an integer >= 0 (got ${typeof tmp === 'string' ? JSON.stringify(tmp) : String(tmp)})`);
  }
  return { in: io.in, out: io.out, tmp };
}

/** Where rank r's input lives (whole input: count elements, or p*count for reducescatter/alltoall). */
export function inputRegion(s: CollSpec, r: number): Region {
  const c = s.count, p = s.p;
  switch (s.coll) {
    case 'allgather':
      return s.inPlace ? { buf: 'out', off: r * c, len: c } : { buf: 'in', off: 0, len: c };
    case 'reducescatter':
    case 'alltoall':
      return { buf: s.inPlace ? 'out' : 'in', off: 0, len: p * c };
    default:
      return { buf: s.inPlace ? 'out' : 'in', off: 0, len: c };
  }
}

/** Where rank r's result lives. */
export function outputRegion(s: CollSpec, r: number): Region {
  const c = s.count, p = s.p;
  switch (s.coll) {
    case 'allgather':
    case 'alltoall':
      return { buf: 'out', off: 0, len: p * c };
    case 'reducescatter':
      return s.inPlace ? { buf: 'out', off: r * c, len: c } : { buf: 'out', off: 0, len: c };
    case 'barrier':
      return { buf: 'out', off: 0, len: 0 };
    default:
      return { buf: 'out', off: 0, len: c };
  }
}

/** Sub-region helper: elements [off, off+len) of region r. */
export const sub = (r: Region, off: number, len: number): Region => ({ buf: r.buf, off: r.off + off, len });

/**
 * Split n elements into k nearly equal blocks (the first n mod k get one extra), as
 * (offset, length) pairs. Lets every algorithm handle counts not divisible by p.
 */
export function blocks(n: number, k: number): { off: number; len: number }[] {
  const base = Math.floor(n / k), extra = n % k;
  const out: { off: number; len: number }[] = [];
  let off = 0;
  for (let i = 0; i < k; i++) {
    const len = base + (i < extra ? 1 : 0);
    out.push({ off, len });
    off += len;
  }
  return out;
}

/** nccl-tests "size" in bytes for a spec (allgather/reducescatter/alltoall: the full p-rank buffer). */
export function ncclSize(coll: Collective, p: number, count: number): number {
  switch (coll) {
    case 'allgather':
    case 'reducescatter':
    case 'alltoall':
      return p * count * 4;
    case 'barrier':
      return 0;
    default:
      return count * 4;
  }
}

/** Per-rank count for an nccl-tests size (bytes). */
export function countForSize(coll: Collective, p: number, bytes: number): number {
  switch (coll) {
    case 'allgather':
    case 'reducescatter':
    case 'alltoall':
      return Math.floor(bytes / 4 / p);
    case 'barrier':
      return 0;
    default:
      return Math.floor(bytes / 4);
  }
}

/** nccl-tests bus bandwidth factor (doc/PERFORMANCE.md). */
export function busBwFactor(coll: Collective, p: number): number {
  switch (coll) {
    case 'allreduce': return p > 1 ? (2 * (p - 1)) / p : 0;
    case 'allgather':
    case 'reducescatter':
    case 'alltoall': return p > 1 ? (p - 1) / p : 0;
    default: return 1;
  }
}

