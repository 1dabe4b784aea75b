/**
 * The `simulate` executor: runs the per-rank IR programs in one thread as a discrete-event
 * simulation, with or without payload data. It applies the same timing rules (runtime/timing.ts)
 * and the same send-buffer semantics as the worker-thread emulator, so virtual times are identical
 * and a program that deadlocks in one deadlocks in the other.
 *
 * Programs may be arrays or lazy per-rank op streams (Algorithm.rankProgram): a stream is pulled
 * one op at a time as its rank executes, and the executor's own state is a few typed arrays, so
 * 10^4-10^5 ranks run in O(p) memory (bench/simulate.ts measures it).
 *
 * With `data`, it also moves and reduces real Float32 data (plain TypeScript kernels), which makes
 * it a fast single-thread reference for algorithm tests.
 */
import { ELEM_BYTES, type BufName, type ComputeOp, type Op, type Program, type Region } from './ir.js';
import { reduceJs, scaleJs } from './reduce.js';
import { runComputeKernel } from './compute.js';
import {
  enterStream, gpuReduces, ingressArrival, ingressFolds, leaveStream, localTimes, multicastTimes, recvTimes, sendOnLink, VClock,
} from './timing.js';
import type { Topology } from './topology.js';
import { contendedTimes } from './contention.js';
import { KIND_CODES, TraceRecorder, type TraceEvent } from './trace.js';

export type RankBuffers = Record<BufName, Float32Array>;

export interface SimulateOptions {
  topo: Topology;
  /**
   * One program per rank, or a function giving rank r's op stream: an array, or any iterable
   * (e.g. `Algorithm.rankProgram`, a generator) that is consumed lazily, one op at a time, as the
   * rank executes, so a run never holds more than the current op of each rank. An iterator that
   * is also an OpCursor is pulled through nextOp().
   */
  programs: Program[] | ((rank: number) => Iterable<Op>);
  /** per-rank buffers; without them no data moves (timing only) */
  data?: RankBuffers[];
  trace?: boolean;
  /** peak FLOP/s for compute ops (default: the topology GPU's bf16 peak) */
  peakFlops?: number;
}

/**
 * An optional fast protocol of an op stream's iterator (one that has a `nextOp` method): nextOp()
 * returns the stream's next op, or undefined at its end, as next() would, but the object it returns
 * may be reused and rewritten by the following nextOp() call. simulate() then calls nextOp() instead
 * of next() and reads each op only until it pulls the next one of that stream (it keeps the op's
 * Regions, which must not change, as for next()). Generic consumers (spread, for-of) use next() and
 * get fresh ops. collectives/allreduce/ring.ts's ringPhaseStream implements it: no allocation per op.
 */
export interface OpCursor {
  nextOp(): Op | undefined;
}

export interface SimulateResult {
  /** virtual completion time of each rank, seconds */
  rankTimes: Float64Array;
  /** max over ranks */
  time: number;
  events?: TraceEvent[];
  /** number of messages delivered */
  messages: number;
  /** number of ops executed, over all ranks */
  ops: number;
}

export class DeadlockError extends Error {
  readonly pending: string[];
  constructor(pending: string[]) {
    super(`deadlock: every unfinished rank is blocked\n${pending.map((s) => '  ' + s).join('\n')}`);
    this.name = 'DeadlockError';
    this.pending = pending;
  }
}

export function describeOp(o: Op | undefined): string {
  if (!o) return 'end of program';
  const r = (x: Region) => `${x.buf}[${x.off}..${x.off + x.len})`;
  switch (o.k) {
    case 'send': return `send ${r(o.src)} to rank ${o.peer}${o.mc ? ' (multicast copy of the previous send)' : ''}${o.net ? ' into the switch (in-network reduction)' : ''}`;
    case 'recv': return `recv${o.op ? `-${o.op}` : ''} into ${r(o.dst)} from rank ${o.peer}${o.net ? (o.op ? ' (reduced in the switch)' : ' (through the switch)') : ''}`;
    case 'copy': return `copy ${r(o.src)} -> ${r(o.dst)}`;
    case 'reduce': return `reduce-${o.op} ${r(o.a)}, ${r(o.b)} -> ${r(o.dst)}`;
    case 'scale': return `scale ${r(o.dst)} by ${o.factor}`;
    case 'compute': return `compute ${o.label ?? o.kernel ?? ''} ${o.flops} flops`;
    case 'wait': return `stream ${o.s ?? 0} waits for stream ${o.on}`;
  }
}

// Helpers of the executor below: module-level, with explicit arguments (no closures over the
// executor's state, so that state stays in local variables of one function).

type I32 = Int32Array<ArrayBuffer>;
type F64 = Float64Array<ArrayBuffer>;

function grow32(a: I32, n: number, fill = 0): I32 {
  const b = new Int32Array(n);
  b.set(a);
  if (fill !== 0) b.fill(fill, a.length);
  return b;
}

function grow64(a: F64, n: number): F64 {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}

const sameRegion = (a: Region | undefined, b: Region): boolean => a !== undefined && a.buf === b.buf && a.off === b.off && a.len === b.len;

/** 0, 1, 2 for 'in', 'out', 'tmp' */
const bufCode = (b: BufName): number => (b === 'out' ? 1 : b === 'in' ? 0 : 2);

// The executor's layout constants, as a const enum: tsc writes them into the code as literals (a
// module-level const is a context slot load with a TDZ check at every use in optimized code).
// Packed per-rank state (Int32Array, RS slots per rank, so one run touches one cache line or two);
// rank flags; packed per-pair state (Int32Array, PS slots per directed pair); the message slab: ints
// (next in the pair's FIFO, the sender's send index), MS per message, its arrival time (a double,
// in a Float64Array) and its region (in an array).
const enum C {
  RS = 12,
  R_PC = 0, R_FLAGS = 1, R_BNEXT = 2, R_SEND_PEER = 3, R_SEND_PAIR = 4, R_RECV_PEER = 5, R_RECV_PAIR = 6,
  R_WAIT_RECV = 7, R_WAIT_CONS = 8, R_PAIRS = 9, R_SENT = 10, R_INFLIGHT = 11,
  F_STARTED = 1, F_DONE = 2, F_QUEUED = 4, F_ARRAY = 8, F_CURSOR = 16,
  PS = 8,
  P_DST = 0, P_POSTED = 1, P_CONSUMED = 2, P_QHEAD = 3, P_QTAIL = 4, P_CLASS = 5, P_PORT = 6, P_SRC_NEXT = 7,
  MS = 2,
  M_NEXT = 0, M_SENT = 1,
  /**
   * How far (in ops) a rank that sends may run ahead of the least advanced ready rank before it
   * steps aside. Switching ranks costs a few cache misses on the next rank's state (its clocks, its
   * stream and op objects), so long runs are cheaper: 16,384-rank hierarchical took 15.4 s with 0
   * (switching after nearly every send of a ring), 9.1 s with 32, 6.8 s with 512 and 6.1 s with
   * 4096 (one batch, on a loaded machine), like no window at all: a ring's ranks wait for their
   * predecessors anyway. The window still bounds how far ranks drift apart, and so the messages in
   * flight and the send-buffer scans, for programs whose ranks could run far ahead (a long run of
   * sends).
   */
  STEP_WINDOW = 4096,
  /** minB when no rank is ready */
  NO_BUCKET = 0x7fffffff,
}

/**
 * The send-buffer rule's scan over the unconsumed sends of the rank whose state is at S[rb]: the
 * earliest one (lowest send index) that overlaps [wOff, wOff + wLen) of buffer wBuf (any, when
 * wBuf < 0). Returns its receiver, or -1 when there is none, after storing the bounds of the
 * rank's unconsumed sends per buffer at F[bb..bb+11] (see addBound; a pair's messages are in send
 * order, so its first match is its earliest).
 */
function scanSends(S: I32, P: I32, MI: I32, MR: readonly (Region | undefined)[], F: F64, rb: number, bb: number, wBuf: number, wOff: number, wLen: number): number {
  let hitPair = -1, hitSent = 0;
  // (the bounds are rebuilt as the scan goes; a hit returns before they are complete, leaving a
  // subset: then the bounds are reset below, which is again a superset)
  const nb = wBuf < 0 ? 0 : 12;
  for (let k = 0; k < nb; k += 2) { F[bb + k] = Infinity; F[bb + k + 1] = -Infinity; }
  for (let q = S[rb + C.R_PAIRS]!; q >= 0; q = P[q * C.PS + C.P_SRC_NEXT]!) {
    for (let m = P[q * C.PS + C.P_QHEAD]!; m >= 0; m = MI[m * C.MS + C.M_NEXT]!) {
      const mb = m * C.MS;
      const g = MR[m]!, b = bufCode(g.buf), off = g.off, len = g.len;
      if (wBuf < 0 || (b === wBuf && off < wOff + wLen && wOff < off + len && len > 0)) {
        if (hitPair < 0 || MI[mb + C.M_SENT]! < hitSent) { hitPair = q; hitSent = MI[mb + C.M_SENT]!; }
        break;
      }
      if (len > 0 && nb > 0) addBound(F, bb + 4 * b, off, off + len);
    }
  }
  if (hitPair >= 0) {
    // (the bounds may be incomplete: the whole buffer, a superset)
    for (let k = 0; k < nb; k += 4) { F[bb + k] = -Infinity; F[bb + k + 1] = Infinity; F[bb + k + 2] = Infinity; F[bb + k + 3] = -Infinity; }
    return P[hitPair * C.PS + C.P_DST]!;
  }
  return -1;
}

/**
 * The bounds of a rank's unconsumed sends in one buffer: two intervals [F[i], F[i+1]) and
 * [F[i+2], F[i+3]) (empty: lo >= hi) that together cover every unconsumed send's region (a
 * superset, so a write that overlaps neither cannot overlap one, and needs no scan). Two, because
 * a ring's sends walk its blocks in circular order: when they wrap around the end of the buffer,
 * one interval would cover it all. Adds [x, y) (y > x): to the first interval if it is empty or
 * [x, y) touches it, else to the second.
 */
function addBound(F: F64, i: number, x: number, y: number): void {
  // (empty is [Infinity, -Infinity), which min/max turn into [x, y); no branch per case, so that
  // V8's type feedback covers every case)
  const a0 = F[i]!, a1 = F[i + 1]!;
  const j = i + (a0 >= a1 || (x <= a1 && y >= a0) ? 0 : 2);
  const lo = F[j]!, hi = F[j + 1]!;
  F[j] = lo < x ? lo : x;
  F[j + 1] = hi > y ? hi : y;
}

/** Whether [x, y) overlaps the bounds at F[i..i+3] (addBound). */
function inBounds(F: F64, i: number, x: number, y: number): boolean {
  return (x < F[i + 1]! && F[i]! < y) || (x < F[i + 3]! && F[i + 2]! < y);
}

/** The same rule for a compute op's written args, region by region (no bounds shortcut). */
function scanKernelWrites(S: I32, P: I32, MI: I32, MR: readonly (Region | undefined)[], rb: number, o: ComputeOp): number {
  let hitPair = -1, hitSent = 0;
  for (const wi of o.writes!) {
    const w = o.args![wi]!;
    if (w.len === 0) continue;
    const wBuf = bufCode(w.buf);
    for (let q = S[rb + C.R_PAIRS]!; q >= 0; q = P[q * C.PS + C.P_SRC_NEXT]!) {
      for (let m = P[q * C.PS + C.P_QHEAD]!; m >= 0; m = MI[m * C.MS + C.M_NEXT]!) {
        const mb = m * C.MS;
        const g = MR[m]!, off = g.off, len = g.len;
        if (bufCode(g.buf) === wBuf && len > 0 && off < w.off + w.len && w.off < off + len) {
          if (hitPair < 0 || MI[mb + C.M_SENT]! < hitSent) { hitPair = q; hitSent = MI[mb + C.M_SENT]!; }
          break;
        }
      }
    }
  }
  return hitPair >= 0 ? P[hitPair * C.PS + C.P_DST]! : -1;
}

/** Run a compute op's kernel on views of one rank's buffers (data mode). */
function runKernel(o: ComputeOp, bufs: RankBuffers): void {
  runComputeKernel(o, (reg) => bufs[reg.buf].subarray(reg.off, reg.off + reg.len));
}

/** The deadlock report: one line per unfinished rank, what it waits for. */
function pendingReport(S: I32, obj: readonly unknown[], p: number): string[] {
  const pending: string[] = [];
  for (let r = 0; r < p; r++) {
    const rb = r * C.RS;
    if (S[rb + C.R_FLAGS]! & C.F_DONE) continue;
    const i = S[rb + C.R_PC]!;
    const o = obj[2 * r] as Op | undefined;
    if (S[rb + C.R_WAIT_CONS]! >= 0) {
      pending.push(`rank ${r} at op ${i} (${describeOp(o)}): waits for rank ${S[rb + C.R_WAIT_CONS]} to receive a message it sent (send buffer reuse)`);
    } else {
      const from = S[rb + C.R_WAIT_RECV]!;
      pending.push(`rank ${r} at op ${i} (${describeOp(o)}): waits for a message from ${from === r ? 'itself (through the switch)' : `rank ${from}`}`);
    }
  }
  return pending;
}

/**
 * Run the programs to completion and return the virtual times.
 *
 * State is O(p) plus the messages in flight: per rank its position (pc), current op (one-op
 * lookahead: a stream is pulled one op at a time), clock and port times, in packed typed arrays;
 * per directed pair that communicates, counters and a FIFO of its messages in flight (a linked
 * list in a shared slab). The messages in flight are also the sends not yet consumed, which the
 * send-buffer rule checks. The executor itself allocates nothing per op: the timing module's
 * [start, end] results are read back from the clock it updates (VClock.t, lastStart, lastArrival),
 * and a stream that is an OpCursor gives its ops in one reused object.
 *
 * Scheduling: each ready rank runs until it blocks; the least advanced ready rank (smallest pc)
 * runs next, and a rank that sends while a ready rank is STEP_WINDOW ops or more behind it steps
 * aside (with a trace: a ready rank not ahead of it). Virtual times do not depend on this order (they are a function of program order only),
 * nor does the outcome of a deadlock (blocking conditions only become true, never false again, so
 * every order reaches the same final state); it keeps the ranks within a window of each other,
 * so the messages in flight stay bounded.
 */
export function simulate(opts: SimulateOptions): SimulateResult {
  // the timing rules and helpers in locals: in optimized code, a use of an imported binding or of a
  // module-level const is a cell or context load with a TDZ check
  const onLink = sendOnLink, mcTimes = multicastTimes, recvT = recvTimes, localT = localTimes, inArrival = ingressArrival,
    inFolds = ingressFolds, gpuRed = gpuReduces, enter = enterStream, leave = leaveStream, sameReg = sameRegion,
    addB = addBound, inB = inBounds;
  const EB = ELEM_BYTES;
  const { topo, data } = opts;
  const p = topo.p;
  const nPorts = topo.nPorts;
  const peak = opts.peakFlops ?? topo.hw.peakFlops.bf16;
  const source = opts.programs;
  const fromFn = typeof source === 'function' ? source : undefined;
  const given = fromFn ? undefined : (source as Program[]);
  if (given && given.length !== p) throw new Error(`${given.length} programs for ${p} ranks`);
  const S: I32 = new Int32Array(p * C.RS);
  for (let r = 0; r < p; r++) {
    const b = r * C.RS;
    S[b + C.R_SEND_PEER] = -1; S[b + C.R_RECV_PEER] = -1; S[b + C.R_WAIT_RECV] = -1; S[b + C.R_WAIT_CONS] = -1; S[b + C.R_PAIRS] = -1;
  }
  // obj[2r]: the op at rank r's pc (undefined: end of program) while r is not running;
  // obj[2r+1]: its program, an array read by index or an iterator (or OpCursor) pulled one op at a time
  const obj: (Op | readonly Op[] | Iterator<Op> | OpCursor | undefined)[] = new Array(2 * p).fill(undefined);
  // virtual clocks: rank r's time at F[r*FS] and its port k's free time at F[r*FS+1+k]; the
  // timing module works on one VClock, loaded from and stored back to F around each run of a rank.
  // Then, at F[r*FS+BB+4b..BB+4b+3], the bounds of what the rank's unconsumed sends cover in
  // buffer b (addBound: a write outside them cannot overlap one, and needs no scan), and the other
  // stream's clock (VClock.t1) at F[r*FS+BB+12]; at F[r*FS+LS..LS+3] the rank's last
  // send: its start and arrival (VClock.lastStart/lastArrival: a multicast copy repeats them), op
  // index and egress port (the multicast rule's check); with ingress contention, ingress port k's
  // free time at F[r*FS+IB+k].
  const ingress = topo.data.ingress === true;
  const BB = 1 + nPorts;
  const T1 = BB + 12;
  const LS = BB + 13;
  const IB = LS + 4;
  const FS = IB + (ingress ? nPorts : 0);
  const F: F64 = new Float64Array(p * FS);
  for (let r = 0; r < p; r++) F[r * FS + LS + 2] = -2;
  const vc = new VClock(nPorts);
  const pf = vc.portFree;
  const ipf = vc.ingressFree;
  const links = topo.data.links;
  // the region of each rank's last send (multicast rule check)
  const lastSrc: (Region | undefined)[] = new Array(p).fill(undefined);

  // directed pairs by id (src*p+dst -> id, given on first use): counters and the FIFO of messages
  // in flight; a rank's outgoing pairs are linked from R_PAIRS through P_SRC_NEXT
  const pairIds = new Map<number, number>();
  let nPairs = 0;
  let pairCap = Math.max(256, 2 * p); // (ring-like programs: two peers per rank)
  let P: I32 = new Int32Array(pairCap * C.PS);
  // with ingress contention: each pair's ingress port at the receiver
  let PI: I32 = new Int32Array(ingress ? pairCap : 0);
  // messages in flight, in a slab (free slots linked through M_NEXT); msgReg[m] = the sent region.
  // They are also the sends not yet consumed, which the send-buffer rule needs.
  let msgCap = Math.max(1024, p);
  let MI: I32 = new Int32Array(msgCap * C.MS);
  let MF: F64 = new Float64Array(msgCap);
  const msgReg: (Region | undefined)[] = [];
  let msgFree = -1, msgUsed = 0;

  const tracer = opts.trace ? new TraceRecorder() : undefined;
  // a traced run steps aside after every send that a ready rank is not ahead of (window 0): trace
  // events are recorded in execution order, and this order interleaves the ranks finely, as
  // timelines and their readers expect (events of equal virtual time in rank-step order)
  const stepWindow = tracer ? 0 : C.STEP_WINDOW;
  // ready ranks, each at most once (F_QUEUED), in a bucket queue by pc: bucket b is a FIFO of the
  // ready ranks at op b (linked through R_BNEXT; FIFO keeps ranks in order, which keeps memory
  // accesses close to sequential); every nonempty bucket is at minB or above
  let bCap = 64;
  let bHead: I32 = new Int32Array(bCap).fill(-1);
  let bTail: I32 = new Int32Array(bCap).fill(-1);
  let minB = 0;
  let nReady = 0;
  for (let r = 0; r < p; r++) { S[r * C.RS + C.R_BNEXT] = r + 1 < p ? r + 1 : -1; S[r * C.RS + C.R_FLAGS] = C.F_QUEUED; }
  if (p > 0) { bHead[0] = 0; bTail[0] = p - 1; nReady = p; }
  let messages = 0;
  const view = (r: number, reg: Region): Float32Array => data![r]![reg.buf].subarray(reg.off, reg.off + reg.len);

  while (nReady > 0) {
    while (bHead[minB]! < 0) minB++;
    const r = bHead[minB]!;
    const rb = r * C.RS;
    const bn = S[rb + C.R_BNEXT]!;
    bHead[minB] = bn;
    if (bn < 0) bTail[minB] = -1;
    nReady--;
    // minB stays the least nonempty bucket while a rank is ready (a wake below lowers it)
    if (nReady > 0) { while (bHead[minB]! < 0) minB++; } else minB = C.NO_BUCKET;
    let flags = S[rb + C.R_FLAGS]! & ~C.F_QUEUED;
    if (flags & C.F_DONE) { S[rb + C.R_FLAGS] = flags; continue; }
    let arr: readonly Op[] | undefined;
    let it: Iterator<Op> | undefined;
    let cur: OpCursor | undefined;
    let o: Op | undefined;
    if (!(flags & C.F_STARTED)) {
      flags |= C.F_STARTED;
      // (through call(): a direct call would let V8 expect this very closure, and deoptimize at the
      // next simulate() with another one)
      const src = fromFn ? fromFn.call(undefined, r) : given![r];
      if (!src) throw new Error(`no program for rank ${r}`);
      if (Array.isArray(src)) {
        arr = src as readonly Op[];
        flags |= C.F_ARRAY;
        o = arr[0];
      } else {
        it = (src as Iterable<Op>)[Symbol.iterator]();
        if (typeof (it as Partial<OpCursor>).nextOp === 'function') {
          cur = it as Iterator<Op> & OpCursor;
          it = undefined;
          flags |= C.F_CURSOR;
          o = cur.nextOp();
        } else {
          const n = it.next();
          o = n.done ? undefined : n.value;
        }
      }
      obj[2 * r + 1] = arr ?? cur ?? it;
    } else {
      o = obj[2 * r] as Op | undefined;
      if (flags & C.F_CURSOR) cur = obj[2 * r + 1] as OpCursor;
      else if (flags & C.F_ARRAY) arr = obj[2 * r + 1] as readonly Op[];
      else it = obj[2 * r + 1] as Iterator<Op>;
    }
    // running: it waits for nothing (set again when it blocks)
    S[rb + C.R_WAIT_RECV] = -1;
    S[rb + C.R_WAIT_CONS] = -1;
    let i = S[rb + C.R_PC]!;
    const fb = r * FS;
    const ls = fb + LS;
    vc.t = F[fb]!;
    vc.t1 = F[fb + T1]!;
    for (let k = 0; k < nPorts; k++) pf[k] = F[fb + 1 + k]!;
    if (ingress) for (let k = 0; k < nPorts; k++) ipf[k] = F[fb + IB + k]!;
    vc.lastStart = F[ls]!; vc.lastArrival = F[ls + 1]!;
    let lastIdx = F[ls + 2]!, lastPort = F[ls + 3]!;
    let lastReg = lastSrc[r];
    // the rank's own counters and pair caches, in locals while it runs: its send index, and the
    // pair (egress port, link class) of its last send's peer and of its last receive's peer
    let sent = S[rb + C.R_SENT]!;
    let sendPeer = S[rb + C.R_SEND_PEER]!, sendQb = 0, sendPort = 0, sendCls = 0;
    let sendLink = links[0]!;
    if (sendPeer >= 0) {
      sendQb = S[rb + C.R_SEND_PAIR]! * C.PS;
      sendPort = P[sendQb + C.P_PORT]!; sendCls = P[sendQb + C.P_CLASS]!; sendLink = links[sendCls]!;
    }
    let recvPeer = S[rb + C.R_RECV_PEER]!, recvPair = S[rb + C.R_RECV_PAIR]!;
    let stepAside = false;
    let wake = -1;
    for (;;) {
      // send-buffer rule: a receive's write into dst waits while an unconsumed send of this rank
      // overlaps it, for the earliest such send; the end of the program waits until all its sends
      // are consumed. A write outside the bounds of the unconsumed sends skips the scan; a scan
      // that finds nothing recomputes the bounds. (One check for both, so that V8's type feedback
      // from receives covers the ends of programs.)
      if (o === undefined || o.k === 'recv') {
        if (S[rb + C.R_INFLIGHT]! > 0) {
          let wBuf = -1, wOff = 0, wLen = 0;
          if (o !== undefined) {
            const d = o.dst, db = d.buf;
            wBuf = db === 'out' ? 1 : db === 'in' ? 0 : 2; // (bufCode)
            wOff = d.off; wLen = d.len;
          }
          if (wBuf < 0 || (wLen > 0 && inB(F, fb + BB + 4 * wBuf, wOff, wOff + wLen))) {
            const w = scanSends(S, P, MI, msgReg, F, rb, fb + BB, wBuf, wOff, wLen);
            S[rb + C.R_WAIT_CONS] = w; // (-1: none)
            if (w >= 0) break;
          }
        }
        if (o === undefined) {
          flags |= C.F_DONE;
          obj[2 * r + 1] = undefined;
          break;
        }
      }
      const k = o.k;
      const sv = o.s, swap = sv !== undefined && sv === 1; // (a comparison with undefined compiles to a pointer compare)
      if (k === 'send') {
        if (swap) enter(vc, o);
        const peer = o.peer;
        if (peer !== sendPeer) {
          const key = r * p + peer;
          let id = pairIds.get(key);
          if (id === undefined) {
            if (nPairs === pairCap) { pairCap *= 2; P = grow32(P, pairCap * C.PS); if (ingress) PI = grow32(PI, pairCap); }
            id = nPairs++;
            const qb = id * C.PS;
            P[qb + C.P_DST] = peer; P[qb + C.P_QHEAD] = -1; P[qb + C.P_QTAIL] = -1;
            P[qb + C.P_CLASS] = topo.classOf(r, peer); P[qb + C.P_PORT] = topo.port(r, peer);
            if (ingress) PI[id] = topo.ingressPort(r, peer);
            P[qb + C.P_SRC_NEXT] = S[rb + C.R_PAIRS]!;
            S[rb + C.R_PAIRS] = id;
            pairIds.set(key, id);
          }
          sendPeer = peer;
          sendQb = id * C.PS;
          sendPort = P[sendQb + C.P_PORT]!;
          sendCls = P[sendQb + C.P_CLASS]!;
          sendLink = links[sendCls]!;
        }
        const src = o.src;
        const bytes = src.len * EB;
        const qb = sendQb;
        const port = sendPort;
        const mc = o.mc === true;
        if (mc) {
          // a multicast copy: the previous op was a send of the same region over the same port
          if (lastIdx !== i - 1 || lastPort !== port || !sameReg(lastReg, src)) {
            throw new Error(`rank ${r} op ${i}: multicast copy (mc) to rank ${peer} does not follow a send of the same region over the same egress port`);
          }
          mcTimes(vc); // (= the last charged send's [start, arrival], which vc still holds)
        } else {
          onLink(vc, sendLink, port, bytes); // (sets vc.lastStart, lastArrival: its result)
        }
        const start = vc.lastStart, arrival = vc.lastArrival;
        lastIdx = i; lastPort = port; lastReg = src;
        // the message, at the tail of the pair's FIFO; in flight until consumed
        let m = msgFree;
        if (m >= 0) msgFree = MI[m * C.MS + C.M_NEXT]!;
        else {
          if (msgUsed === msgCap) { msgCap *= 2; MI = grow32(MI, msgCap * C.MS); MF = grow64(MF, msgCap); }
          m = msgUsed++;
        }
        const mb = m * C.MS;
        const sb = src.buf, b = sb === 'out' ? 1 : sb === 'in' ? 0 : 2; // (bufCode)
        MI[mb + C.M_NEXT] = -1;
        MI[mb + C.M_SENT] = sent++;
        MF[m] = arrival;
        msgReg[m] = src;
        const t = P[qb + C.P_QTAIL]!;
        if (t < 0) P[qb + C.P_QHEAD] = m; else MI[t * C.MS + C.M_NEXT] = m;
        P[qb + C.P_QTAIL] = m;
        // the bounds of the rank's unconsumed sends (reset when none was in flight)
        const inflight = S[rb + C.R_INFLIGHT]!;
        S[rb + C.R_INFLIGHT] = inflight + 1;
        if (inflight === 0) for (let k = 0; k < 12; k += 2) { F[fb + BB + k] = Infinity; F[fb + BB + k + 1] = -Infinity; }
        if (src.len > 0) addB(F, fb + BB + 4 * b, src.off, src.off + src.len);
        // (a multicast copy is traced with 0 wire bytes: the group's first send carried them)
        if (tracer) {
          const seq = P[qb + C.P_POSTED]!;
          P[qb + C.P_POSTED] = seq + 1;
          tracer.add(r, 0, peer, mc ? 0 : bytes, sendCls, start, arrival, 0, 0, seq, 0, o.s ?? 0);
        }
        if (swap) leave(vc, o);
        // wake the receiver if it waits for this message (below)
        if (S[peer * C.RS + C.R_WAIT_RECV] === r) wake = peer;
      } else if (k === 'recv') {
        const dstReg = o.dst;
        const peer = o.peer;
        if (peer !== recvPeer) {
          const id = pairIds.get(peer * p + r);
          if (id === undefined) { S[rb + C.R_WAIT_RECV] = peer; break; } // nothing sent yet
          recvPeer = peer;
          recvPair = id;
        }
        const pr = recvPair;
        const qb = pr * C.PS;
        const m = P[qb + C.P_QHEAD]!;
        if (m < 0) { S[rb + C.R_WAIT_RECV] = peer; break; }
        const mb = m * C.MS;
        const nx = MI[mb + C.M_NEXT]!;
        P[qb + C.P_QHEAD] = nx;
        if (nx < 0) P[qb + C.P_QTAIL] = -1;
        MI[mb + C.M_NEXT] = msgFree;
        msgFree = m;
        if (swap) enter(vc, o);
        const bytes = dstReg.len * EB;
        let arrival = MF[m]!;
        if (ingress) arrival = inArrival(vc, links[P[qb + C.P_CLASS]!]!, PI[pr]!, arrival, bytes, inFolds(o));
        const rStart = vc.t;
        recvT(vc, topo, arrival, bytes, gpuRed(o)); // (its [start, end] = [rStart, vc.t])
        if (data && o.pad !== true) {
          const src = view(peer, msgReg[m]!);
          const dst = view(r, dstReg);
          if (o.op) reduceJs(dst, o.acc ? view(r, o.acc) : dst, src, o.op);
          else dst.set(src);
        }
        messages++;
        if (tracer) {
          const seq = P[qb + C.P_CONSUMED]!;
          P[qb + C.P_CONSUMED] = seq + 1;
          tracer.add(r, 1, peer, bytes, P[qb + C.P_CLASS]!, rStart, vc.t, 0, 0, seq, 0, o.s ?? 0);
        }
        if (swap) leave(vc, o);
        // consumed: the sender's send is no longer in flight (wake it if it waits for that, below)
        const pb = peer * C.RS;
        S[pb + C.R_INFLIGHT]--;
        if (S[pb + C.R_WAIT_CONS] === r) wake = peer;
      } else {
        // local ops: the send-buffer rule for what they write (copy, reduce, scale: o.dst; a kernel:
        // its written args)
        if (S[rb + C.R_INFLIGHT]! > 0) {
          let w = -1;
          if (k === 'compute') {
            if (o.writes !== undefined) w = scanKernelWrites(S, P, MI, msgReg, rb, o);
          } else if (k !== 'wait') {
            const d = (o as { dst?: Region }).dst; // (undefined only for an invalid op kind: no check)
            if (d !== undefined) {
              const wBuf = bufCode(d.buf), wOff = d.off, wLen = d.len;
              if (wLen > 0 && inB(F, fb + BB + 4 * wBuf, wOff, wOff + wLen)) w = scanSends(S, P, MI, msgReg, F, rb, fb + BB, wBuf, wOff, wLen);
            }
          }
          S[rb + C.R_WAIT_CONS] = w; // (-1: none; set whenever it scans, so that V8 has type feedback for it)
          if (w >= 0) break;
        }
        if (swap) enter(vc, o);
        const lStart = vc.t;
        localT(vc, o, topo, peak); // (its [start, end] = [lStart, vc.t])
        if (data) {
          if (k === 'copy') view(r, o.dst).set(view(r, o.src));
          else if (k === 'reduce') reduceJs(view(r, o.dst), view(r, o.a), view(r, o.b), o.op);
          else if (k === 'scale') scaleJs(view(r, o.dst), o.factor);
          else if (k === 'compute' && o.kernel !== undefined) runKernel(o, data[r]!);
        }
        if (tracer && k !== 'wait') {
          const bytes = o.k === 'compute' ? o.bytes : o.k === 'copy' ? o.src.len * EB : o.dst.len * EB;
          tracer.add(r, KIND_CODES.indexOf(k), -1, bytes, -1, lStart, vc.t, 0, 0, i, 0, o.s ?? 0);
        }
        if (swap) leave(vc, o);
      }
      i++;
      if (cur !== undefined) o = cur.nextOp();
      else if (arr !== undefined) o = arr[i];
      else {
        const n = it!.next();
        o = n.done ? undefined : n.value;
      }
      // bucket-queue inserts, all at this one place (inlined: a ReadyQueue class measured ~13%
      // slower on 16,384-rank hierarchical; one place, so that V8's type feedback from any wake
      // covers all of them): the rank this op woke (a rank waits, R_WAIT_RECV or R_WAIT_CONS >= 0,
      // only while it is blocked: not queued, running or done), at its pc; then, after a send, this
      // rank, at i, if a ready rank is stepWindow ops or more behind the send: it steps aside
      for (;;) {
        if (wake < 0) {
          if (k !== 'send' || nReady === 0 || minB + stepWindow >= i) break;
          wake = r;
          stepAside = true;
        }
        const wb = wake * C.RS;
        S[wb + C.R_WAIT_RECV] = -1;
        S[wb + C.R_WAIT_CONS] = -1;
        const q = wake === r ? i : S[wb + C.R_PC]!;
        if (q >= bCap) { bCap = Math.max(2 * bCap, q + 1); bHead = grow32(bHead, bCap, -1); bTail = grow32(bTail, bCap, -1); }
        S[wb + C.R_BNEXT] = -1;
        const bt = bTail[q]!;
        if (bt < 0) bHead[q] = wake; else S[bt * C.RS + C.R_BNEXT] = wake;
        bTail[q] = wake;
        if (q < minB) minB = q;
        nReady++;
        S[wb + C.R_FLAGS] |= C.F_QUEUED;
        if (wake === r) break;
        wake = -1;
      }
      if (stepAside) break;
    }
    S[rb + C.R_PC] = i;
    obj[2 * r] = o;
    F[fb] = vc.t;
    F[fb + T1] = vc.t1;
    for (let k = 0; k < nPorts; k++) F[fb + 1 + k] = pf[k]!;
    if (ingress) for (let k = 0; k < nPorts; k++) F[fb + IB + k] = ipf[k]!;
    F[ls] = vc.lastStart; F[ls + 1] = vc.lastArrival; F[ls + 2] = lastIdx; F[ls + 3] = lastPort;
    lastSrc[r] = lastReg;
    S[rb + C.R_SENT] = sent;
    S[rb + C.R_SEND_PEER] = sendPeer; S[rb + C.R_SEND_PAIR] = sendQb / C.PS;
    S[rb + C.R_RECV_PEER] = recvPeer; S[rb + C.R_RECV_PAIR] = recvPair;
    S[rb + C.R_FLAGS] = flags | (stepAside ? C.F_QUEUED : 0); // (queued above when it stepped aside)
  }
  const rankTimes = new Float64Array(p);
  let time = 0, ops = 0, done = 0;
  for (let r = 0; r < p; r++) {
    const t = Math.max(F[r * FS]!, F[r * FS + T1]!);
    rankTimes[r] = t;
    if (t > time) time = t;
    // every op executed advanced its rank's pc by one
    ops += S[r * C.RS + C.R_PC]!;
    if (S[r * C.RS + C.R_FLAGS]! & C.F_DONE) done++;
  }
  if (done < p) throw new DeadlockError(pendingReport(S, obj, p));
  if (topo.data.contention) {
    // resources shared by several ranks: their times come from the contention pass over the same
    // programs (runtime/contention.ts); this run moved the data and checked the send-buffer rule
    const ct = contendedTimes(source, topo, { peakFlops: peak, trace: !!opts.trace });
    return { rankTimes: ct.rankTimes, time: ct.time, events: ct.events, messages, ops };
  }
  return { rankTimes, time, events: tracer?.events(), messages, ops };
}
