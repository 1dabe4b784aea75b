/**
 * The collemu IR: a collective (or, later, a training step) compiles to one program per rank.
 * A program is a list of ops over buffer regions. Every executor runs the same programs:
 *  - `emulate` (runtime/cluster.ts + runtime/worker.ts): worker threads, real Float32 data;
 *  - `simulate` (runtime/simulate.ts): one thread, optional data, discrete events;
 *  - closed-form cost formulas (next to each algorithm in collectives/) as the third opinion.
 *
 * Semantics (shared by all executors):
 *  - Buffers are named per rank ('in', 'out', 'tmp'); a Region is [off, off+len) in float32 elements.
 *  - `send` is non-blocking and zero-copy: the receiver reads the sender's region directly. The sender
 *    must not overwrite that region until the receiver has consumed it; executors enforce this by
 *    waiting (like MPI_Isend + MPI_Wait before buffer reuse). Messages between a pair are matched in
 *    FIFO order; a `recv` always names its source (no wildcards), which keeps virtual time a function
 *    of program order only.
 *  - `recv` writes the incoming data to `dst`; with `op` it writes `acc ⊕ incoming` (acc defaults to
 *    dst), the fused recv-reduce-copy of NCCL's primitives. Length of dst must equal the send's length.
 *  - A `recv` with `pad: true` is wire padding (protocol overhead): timed like any message of its
 *    length, no data written.
 *  - `copy` and `reduce` are local data movement; `scale` multiplies in place (used by `avg`);
 *    `compute` advances the clock by modeled work (flops, bytes) and may run a named kernel on data.
 *  - Ops run on one of two streams (compute, communication) with their own clocks; see StreamTag.
 * Op 'avg' reduces as 'sum'; algorithms append a `scale` by 1/p where the final values are produced.
 *
 * Switch operations (NVLink SHARP, "NVLS"; two flags, see SendOp.mc and RecvOp.net):
 *  - MULTICAST: a `send` with `mc: true` is another delivery of the same wire transmission as the
 *    previous op, which must be a send of the same region on the same stream (a run of sends: the
 *    first one plain, the rest `mc`, all to distinct peers over the same egress port; the switch
 *    replicates the data). The transmission is charged once, on the sender's egress port, by the
 *    group's first send; every `mc` send has exactly its start and arrival times. Every peer
 *    receives its copy with an ordinary `recv`, and the sender's region stays unwritable until
 *    every copy has been consumed (the send-buffer rule, per message as always).
 *  - IN-NETWORK REDUCTION: a message whose send and recv both carry `net: true` goes into the switch
 *    to be reduced there. The sender's bytes are charged on its egress port like any send (the
 *    switch must read every contributor's data); a `net` recv with `op` reduces with no GPU cost
 *    (no gamma: the switch's ALUs do it). The data result is the same as a GPU reduction.
 *  - A message to oneself (peer = own rank) exists only through the switch: a `net` send (the
 *    switch reads the rank's own contribution) or an `mc` copy (the switch writes the multicast back
 *    to its sender too, as multimem.st does); it is received with a `recv` from oneself, as usual.
 * (collectives/protocols/nvls.ts builds NVLS AllReduce from these.)
 */

import type { Topology } from './topology.js';

export type BufName = 'in' | 'out' | 'tmp';
export const BUF_NAMES: readonly BufName[] = ['in', 'out', 'tmp'];

export type ReduceOp = 'sum' | 'prod' | 'max' | 'min' | 'avg';
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'prod', 'max', 'min', 'avg'];

export interface Region {
  buf: BufName;
  /** offset in float32 elements */
  off: number;
  /** length in float32 elements */
  len: number;
}

/**
 * Streams (as on a GPU): every op runs on stream `s` (0 = compute, the default; 1 = communication).
 * Each stream has its own virtual clock; ops of one stream are ordered, ops of different streams
 * overlap in virtual time. Data still follows program order (executors run ops one after another),
 * so a program must order its ops consistently with their data dependencies, and make the virtual
 * dependencies explicit with `wait` (CUDA's event record + stream wait at one program point).
 */
export interface StreamTag {
  /** stream index, 0 (compute, default) or 1 (communication) */
  s?: 0 | 1;
}
export const N_STREAMS = 2;

export interface SendOp extends StreamTag {
  k: 'send'; peer: number; src: Region;
  /**
   * Multicast copy: the same wire transmission as the previous op (a send of the same region on the
   * same stream and egress port, to another peer): not charged again, same start and arrival.
   */
  mc?: boolean;
  /** Into the switch for an in-network reduction (the matching recv carries `net` too). */
  net?: boolean;
}
export interface RecvOp extends StreamTag {
  k: 'recv'; peer: number; dst: Region; op?: ReduceOp; acc?: Region;
  /** The message was sent with `net`: with `op`, the switch reduces it (no GPU reduction cost). */
  net?: boolean;
  /**
   * Padding: the message stands for wire overhead (protocol flags, packet headers: see
   * collectives/protocols/nccl.ts) and carries no data. It is timed exactly like any message of its
   * length, but the executors do not write `dst` (it is left as it was), whatever `op` says.
   */
  pad?: boolean;
}
export interface CopyOp extends StreamTag { k: 'copy'; src: Region; dst: Region }
export interface ReduceLocalOp extends StreamTag { k: 'reduce'; a: Region; b: Region; dst: Region; op: ReduceOp }
export interface ScaleOp extends StreamTag { k: 'scale'; dst: Region; factor: number }
/**
 * Modeled work (flops and HBM bytes; roofline cost). With `kernel`, executors that carry data also
 * run that kernel (runtime/compute.ts registry) on views of `args` with numeric `params`; `writes`
 * lists the indices of the args it writes (the send-buffer rule applies to them).
 */
export interface ComputeOp extends StreamTag {
  k: 'compute'; flops: number; bytes: number; label?: string;
  kernel?: string; args?: Region[]; params?: number[]; writes?: number[];
}
/** Stream `s` waits until stream `on` has reached this point (no data, no cost). */
export interface WaitOp extends StreamTag { k: 'wait'; on: 0 | 1 }

export type Op = SendOp | RecvOp | CopyOp | ReduceLocalOp | ScaleOp | ComputeOp | WaitOp;
export type OpKind = Op['k'];
export type Program = Op[];

/** Buffer sizes (elements) a rank needs to run its program. */
export interface BufferSizes { in: number; out: number; tmp: number }

/** Bytes per element: collemu's data plane is Float32. */
export const ELEM_BYTES = 4;

export const region = (buf: BufName, off: number, len: number): Region => ({ buf, off, len });

/** The reduction actually applied element-wise ('avg' reduces as 'sum', then scales). */
export function baseOp(op: ReduceOp): 'sum' | 'prod' | 'max' | 'min' {
  return op === 'avg' ? 'sum' : op;
}

export class IRError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IRError';
  }
}

/** a and b share elements but are not the same region (empty regions overlap nothing) */
export function partlyOverlaps(a: Region, b: Region): boolean {
  if (a.buf !== b.buf || a.len === 0 || b.len === 0) return false;
  if (a.off === b.off && a.len === b.len) return false;
  return a.off < b.off + b.len && b.off < a.off + a.len;
}

function fmtRegion(r: Region): string {
  return `${r.buf}[${r.off}..${r.off + r.len})`;
}

function checkRegion(r: Region, sizes: BufferSizes, rank: number, i: number, what: string): void {
  if (!r || !BUF_NAMES.includes(r.buf)) throw new IRError(`rank ${rank} op ${i}: ${what} names an unknown buffer ${JSON.stringify(r?.buf)}`);
  if (!Number.isInteger(r.off) || !Number.isInteger(r.len) || r.off < 0 || r.len < 0) {
    throw new IRError(`rank ${rank} op ${i}: ${what} has a bad offset/length (${r.off}, ${r.len})`);
  }
  if (r.off + r.len > sizes[r.buf]) {
    throw new IRError(`rank ${rank} op ${i}: ${what} ${r.buf}[${r.off}..${r.off + r.len}) exceeds buffer '${r.buf}' of ${sizes[r.buf]} elements`);
  }
}

/**
 * Static validation of a set of per-rank programs: regions in bounds, peers valid, and every
 * send matched by a recv of the same length (FIFO per directed pair), with the same `net` flag.
 * Switch operations: an `mc` send follows a send of the same region on the same stream, to a peer
 * not yet in its multicast group (and, given `topo`, over the same egress port); a rank sends to
 * itself only with `net` or as an `mc` copy. It does not prove deadlock freedom; executors detect
 * deadlocks at run time (and check the multicast rule again as they run).
 */
export function validatePrograms(programs: Program[], sizes: BufferSizes[] | BufferSizes, topo?: Pick<Topology, 'port'>): void {
  const p = programs.length;
  const sizeOf = (r: number): BufferSizes => (Array.isArray(sizes) ? sizes[r]! : sizes);
  // per directed pair, the messages in FIFO order: 2 x length + (net ? 1 : 0)
  const sendLens = new Map<number, number[]>();
  const recvLens = new Map<number, number[]>();
  const group = new Set<number>();
  for (let r = 0; r < p; r++) {
    const prog = programs[r]!;
    const sz = sizeOf(r);
    for (let i = 0; i < prog.length; i++) {
      const o = prog[i]!;
      if (typeof o !== 'object' || o === null) throw new IRError(`rank ${r} op ${i}: not an op object (got ${JSON.stringify(o) ?? String(o)})`);
      if (o.s !== undefined && o.s !== 0 && o.s !== 1) throw new IRError(`rank ${r} op ${i}: unknown stream ${JSON.stringify(o.s)}`);
      switch (o.k) {
        case 'send':
        case 'recv': {
          if (!Number.isInteger(o.peer) || o.peer < 0 || o.peer >= p) {
            throw new IRError(`rank ${r} op ${i}: ${o.k} peer ${o.peer} is not a rank in 0..${p - 1}`);
          }
          if (o.net !== undefined && typeof o.net !== 'boolean') throw new IRError(`rank ${r} op ${i}: net must be a boolean`);
          if (o.k === 'recv' && o.pad !== undefined && typeof o.pad !== 'boolean') throw new IRError(`rank ${r} op ${i}: pad must be a boolean`);
          if (o.k === 'recv' && o.op !== undefined && !REDUCE_OPS.includes(o.op)) throw new IRError(`rank ${r} op ${i}: unknown reduction op ${JSON.stringify(o.op)} (known: ${REDUCE_OPS.join(', ')})`);
          const reg = o.k === 'send' ? o.src : o.dst;
          checkRegion(reg, sz, r, i, o.k === 'send' ? 'src' : 'dst');
          if (o.k === 'recv' && o.acc) {
            checkRegion(o.acc, sz, r, i, 'acc');
            if (o.acc.len !== o.dst.len) throw new IRError(`rank ${r} op ${i}: acc length ${o.acc.len} != dst length ${o.dst.len}`);
            if (partlyOverlaps(o.acc, o.dst)) throw new IRError(`rank ${r} op ${i}: acc ${fmtRegion(o.acc)} overlaps dst ${fmtRegion(o.dst)} without being it (an element-wise reduction reads either its output region itself or a disjoint one)`);
          }
          if (o.k === 'send') {
            if (o.mc !== undefined && typeof o.mc !== 'boolean') throw new IRError(`rank ${r} op ${i}: mc must be a boolean`);
            if (o.mc) {
              const prev = prog[i - 1];
              if (o.net) throw new IRError(`rank ${r} op ${i}: a send is either a multicast copy (mc) or a contribution to an in-network reduction (net), not both`);
              if (!prev || prev.k !== 'send') throw new IRError(`rank ${r} op ${i}: multicast copy (mc) to rank ${o.peer} does not follow a send`);
              const a = prev.src, b = o.src;
              if (a.buf !== b.buf || a.off !== b.off || a.len !== b.len) {
                throw new IRError(`rank ${r} op ${i}: multicast copy (mc) sends ${b.buf}[${b.off}..${b.off + b.len}), the previous send ${a.buf}[${a.off}..${a.off + a.len})`);
              }
              if ((prev.s ?? 0) !== (o.s ?? 0)) throw new IRError(`rank ${r} op ${i}: multicast copy (mc) on another stream than the send it copies`);
              if (group.has(o.peer)) throw new IRError(`rank ${r} op ${i}: multicast group sends to rank ${o.peer} twice`);
              if (topo && topo.port(r, o.peer) !== topo.port(r, prev.peer)) {
                throw new IRError(`rank ${r} op ${i}: multicast copy (mc) to rank ${o.peer} leaves through another egress port than the send it copies (to rank ${prev.peer})`);
              }
            } else group.clear();
            group.add(o.peer);
            if (o.peer === r && !o.net && !o.mc) throw new IRError(`rank ${r} op ${i}: send to itself (a rank sends to itself only through the switch: net or mc)`);
          }
          const key = o.k === 'send' ? r * p + o.peer : o.peer * p + r;
          const m = o.k === 'send' ? sendLens : recvLens;
          let arr = m.get(key);
          if (!arr) m.set(key, (arr = []));
          arr.push(2 * reg.len + (o.net ? 1 : 0));
          break;
        }
        case 'copy':
          checkRegion(o.src, sz, r, i, 'src');
          checkRegion(o.dst, sz, r, i, 'dst');
          if (o.src.len !== o.dst.len) throw new IRError(`rank ${r} op ${i}: copy length mismatch ${o.src.len} vs ${o.dst.len}`);
          break;
        case 'reduce':
          checkRegion(o.a, sz, r, i, 'a');
          checkRegion(o.b, sz, r, i, 'b');
          checkRegion(o.dst, sz, r, i, 'dst');
          if (o.a.len !== o.dst.len || o.b.len !== o.dst.len) throw new IRError(`rank ${r} op ${i}: reduce length mismatch`);
          if (!REDUCE_OPS.includes(o.op)) throw new IRError(`rank ${r} op ${i}: unknown reduction op ${JSON.stringify(o.op)} (known: ${REDUCE_OPS.join(', ')})`);
          for (const [name, x] of [['a', o.a], ['b', o.b]] as const) {
            if (partlyOverlaps(x, o.dst)) throw new IRError(`rank ${r} op ${i}: reduce ${name} ${fmtRegion(x)} overlaps dst ${fmtRegion(o.dst)} without being it (an element-wise reduction reads either its output region itself or a disjoint one)`);
          }
          break;
        case 'scale':
          checkRegion(o.dst, sz, r, i, 'dst');
          if (typeof o.factor !== 'number' || !Number.isFinite(o.factor)) throw new IRError(`rank ${r} op ${i}: scale factor must be a finite number`);
          break;
        case 'compute':
          if (!(o.flops >= 0) || !(o.bytes >= 0) || !Number.isFinite(o.flops) || !Number.isFinite(o.bytes)) throw new IRError(`rank ${r} op ${i}: compute needs finite flops >= 0 and bytes >= 0`);
          if (o.kernel !== undefined) {
            const args = o.args ?? [];
            args.forEach((a, j) => checkRegion(a, sz, r, i, `arg ${j}`));
            for (const w of o.writes ?? []) if (!Number.isInteger(w) || w < 0 || w >= args.length) throw new IRError(`rank ${r} op ${i}: writes names arg ${w} of ${args.length}`);
          }
          break;
        case 'wait':
          if (o.on !== 0 && o.on !== 1) throw new IRError(`rank ${r} op ${i}: wait on unknown stream ${JSON.stringify(o.on)}`);
          break;
        default:
          throw new IRError(`rank ${r} op ${i}: unknown op kind ${JSON.stringify((o as { k: unknown }).k)}`);
      }
    }
  }
  for (const [key, sends] of sendLens) {
    const src = Math.floor(key / p), dst = key % p;
    const recvs = recvLens.get(key) ?? [];
    if (recvs.length !== sends.length) {
      throw new IRError(`rank ${src} sends ${sends.length} message(s) to rank ${dst}, which receives ${recvs.length} from it`);
    }
    for (let j = 0; j < sends.length; j++) {
      const a = sends[j]!, b = recvs[j]!;
      if (Math.floor(a / 2) !== Math.floor(b / 2)) {
        throw new IRError(`message #${j} from rank ${src} to rank ${dst}: send length ${Math.floor(a / 2)} != recv length ${Math.floor(b / 2)}`);
      }
      if (a % 2 !== b % 2) {
        throw new IRError(`message #${j} from rank ${src} to rank ${dst}: ${a % 2 ? 'sent with' : 'sent without'} net, received ${b % 2 ? 'with' : 'without'} net (an in-network reduction flags both sides)`);
      }
    }
  }
  for (const [key, recvs] of recvLens) {
    if (!sendLens.has(key)) {
      throw new IRError(`rank ${key % p} receives ${recvs.length} message(s) from rank ${Math.floor(key / p)}, which sends none`);
    }
  }
}
