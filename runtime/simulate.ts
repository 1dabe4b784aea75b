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
import { ELEM_BYTES, type BufName, type Op, type Program, type Region } from './ir.js';
import { reduceJs, scaleJs } from './reduce.js';
import { runComputeKernel } from './compute.js';
import {
  enterStream, gpuReduces, ingressArrival, ingressFolds, leaveStream, localTimes, multicastTimes, recvTimes, sendOnLink, VClock,
} from './timing.js';
import type { Topology } from './topology.js';
import { KIND_CODES, TraceRecorder, type TraceEvent } from './trace.js';

export type RankBuffers = Record<BufName, Float32Array>;

export interface SimulateOptions {
  topo: Topology;
  /**
   * One program per rank, or a function giving rank r's op stream: an array, or any iterable
   * (e.g. `Algorithm.rankProgram`, a generator) that is consumed lazily, one op at a time, as the
   * rank executes, so a run never holds more than the current op of each rank.
   */
  programs: Program[] | ((rank: number) => Iterable<Op>);
  /** per-rank buffers; without them no data moves (timing only) */
  data?: RankBuffers[];
  trace?: boolean;
  /** peak FLOP/s for compute ops (default: the topology GPU's bf16 peak) */
  peakFlops?: number;
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

// Packed per-rank state (Int32Array, RS slots per rank, so one run touches one cache line or two)
const RS = 12;
const R_PC = 0, R_FLAGS = 1, R_BNEXT = 2, R_SEND_PEER = 3, R_SEND_PAIR = 4, R_RECV_PEER = 5, R_RECV_PAIR = 6,
  R_WAIT_RECV = 7, R_WAIT_CONS = 8, R_PAIRS = 9, R_SENT = 10, R_INFLIGHT = 11;
const F_STARTED = 1, F_DONE = 2, F_QUEUED = 4, F_ARRAY = 8;
// Packed per-pair state (Int32Array, PS slots per directed pair)
const PS = 8;
const P_DST = 0, P_POSTED = 1, P_CONSUMED = 2, P_QHEAD = 3, P_QTAIL = 4, P_CLASS = 5, P_PORT = 6, P_SRC_NEXT = 7;
// Message slab: ints (next in the pair's FIFO, buffer code, the sender's send index) and doubles
// (arrival time, offset, length)
const MS = 3;
const M_NEXT = 0, M_BUF = 1, M_SENT = 2;
const M_ARRIVAL = 0, M_OFF = 1, M_LEN = 2;

/**
 * Run the programs to completion and return the virtual times.
 *
 * State is O(p) plus the messages in flight: per rank its position (pc), current op (one-op
 * lookahead: a stream is pulled one op at a time), clock and port times, in packed typed arrays;
 * per directed pair that communicates, counters and a FIFO of its messages in flight (a linked
 * list in a shared slab). The messages in flight are also the sends not yet consumed, which the
 * send-buffer rule checks. The executor itself allocates nothing per op (the timing module
 * returns [start, end] pairs, which V8 elides once sendTimes/recvTimes are inlined).
 *
 * Scheduling: each ready rank runs until it blocks; the least advanced ready rank (smallest pc)
 * runs next, and a rank that sends while a less advanced rank is ready steps aside. Virtual times
 * do not depend on this order (they are a function of program order only), nor does the outcome
 * of a deadlock (blocking conditions only become true, never false again, so every order reaches
 * the same final state); it keeps the ranks in step, so few messages are in flight at a time and
 * the send-buffer checks stay short.
 */
export function simulate(opts: SimulateOptions): SimulateResult {
  const { topo, data } = opts;
  const p = topo.p;
  const nPorts = topo.nPorts;
  const peak = opts.peakFlops ?? topo.hw.peakFlops.bf16;
  const source = opts.programs;
  const fromFn = typeof source === 'function' ? source : undefined;
  const given = fromFn ? undefined : (source as Program[]);
  if (given && given.length !== p) throw new Error(`${given.length} programs for ${p} ranks`);
  const S = new Int32Array(p * RS);
  for (let r = 0; r < p; r++) {
    const b = r * RS;
    S[b + R_SEND_PEER] = -1; S[b + R_RECV_PEER] = -1; S[b + R_WAIT_RECV] = -1; S[b + R_WAIT_CONS] = -1; S[b + R_PAIRS] = -1;
  }
  // obj[2r]: the op at rank r's pc (undefined: end of program) while r is not running;
  // obj[2r+1]: its program, an array read by index or an iterator pulled one op at a time
  const obj: (Op | readonly Op[] | Iterator<Op> | undefined)[] = new Array(2 * p).fill(undefined);
  // virtual clocks: rank r's time at F[r*FS] and its port k's free time at F[r*FS+1+k]; the
  // timing module works on one VClock, loaded from and stored back to F around each run of a rank.
  // Then, at F[r*FS+BB+2b] and F[r*FS+BB+2b+1], bounds [lo, hi) of what the rank's unconsumed sends
  // cover in buffer b (a superset: a write outside them cannot overlap one, and needs no scan)
  // and the other stream's clock (VClock.t1) at F[r*FS+BB+6]; at F[r*FS+LS..LS+3] the rank's last
  // send: its start and arrival (a multicast copy repeats them), op index and egress port (the
  // multicast rule's check); with ingress contention, ingress port k's free time at F[r*FS+IB+k].
  const ingress = topo.data.ingress === true;
  const BB = 1 + nPorts;
  const LS = BB + 7;
  const IB = LS + 4;
  const FS = IB + (ingress ? nPorts : 0);
  const F = new Float64Array(p * FS);
  for (let r = 0; r < p; r++) F[r * FS + LS + 2] = -2;
  const vc = new VClock(nPorts);
  const pf = vc.portFree;
  const ipf = vc.ingressFree;
  const links = topo.data.links;
  // the region of each rank's last send (multicast rule check)
  const lastSrc: (Region | undefined)[] = new Array(p);

  // directed pairs by id (src*p+dst -> id, given on first use): counters and the FIFO of messages
  // in flight; a rank's outgoing pairs are linked from R_PAIRS through P_SRC_NEXT
  const pairIds = new Map<number, number>();
  let nPairs = 0;
  let pairCap = 256;
  let P: I32 = new Int32Array(pairCap * PS);
  // with ingress contention: each pair's ingress port at the receiver
  let PI: I32 = new Int32Array(ingress ? pairCap : 0);
  // messages in flight, in a slab (free slots linked through M_NEXT); msgSrc[m] = the sent region
  // (data mode only). They are also the sends not yet consumed, which the send-buffer rule needs.
  let msgCap = 1024;
  let MI: I32 = new Int32Array(msgCap * MS);
  let MF: F64 = new Float64Array(msgCap * MS);
  const msgSrc: (Region | undefined)[] = [];
  let msgFree = -1, msgUsed = 0;

  const tracer = opts.trace ? new TraceRecorder() : undefined;
  // ready ranks, each at most once (F_QUEUED), in a bucket queue by pc: bucket b is a FIFO of the
  // ready ranks at op b (linked through R_BNEXT; FIFO keeps ranks in order, which keeps memory
  // accesses close to sequential); every nonempty bucket is at minB or above
  let bCap = 64;
  let bHead: I32 = new Int32Array(bCap).fill(-1);
  let bTail: I32 = new Int32Array(bCap).fill(-1);
  let minB = 0;
  let nReady = 0;
  for (let r = 0; r < p; r++) { S[r * RS + R_BNEXT] = r + 1 < p ? r + 1 : -1; S[r * RS + R_FLAGS] = F_QUEUED; }
  if (p > 0) { bHead[0] = 0; bTail[0] = p - 1; nReady = p; }
  let messages = 0;
  let opsDone = 0;
  const view = (r: number, reg: Region): Float32Array => data![r]![reg.buf].subarray(reg.off, reg.off + reg.len);

  while (nReady > 0) {
    while (bHead[minB]! < 0) minB++;
    const r = bHead[minB]!;
    const rb = r * RS;
    const bn = S[rb + R_BNEXT]!;
    bHead[minB] = bn;
    if (bn < 0) bTail[minB] = -1;
    nReady--;
    let flags = S[rb + R_FLAGS]! & ~F_QUEUED;
    if (flags & F_DONE) { S[rb + R_FLAGS] = flags; continue; }
    let arr: readonly Op[] | undefined;
    let it: Iterator<Op> | undefined;
    let o: Op | undefined;
    if (!(flags & F_STARTED)) {
      flags |= F_STARTED;
      const src = fromFn ? fromFn(r) : given![r];
      if (!src) throw new Error(`no program for rank ${r}`);
      if (Array.isArray(src)) {
        arr = src as readonly Op[];
        flags |= F_ARRAY;
        o = arr[0];
      } else {
        it = (src as Iterable<Op>)[Symbol.iterator]();
        const n = it.next();
        o = n.done ? undefined : n.value;
      }
      obj[2 * r + 1] = arr ?? it;
    } else {
      o = obj[2 * r] as Op | undefined;
      if (flags & F_ARRAY) arr = obj[2 * r + 1] as readonly Op[];
      else it = obj[2 * r + 1] as Iterator<Op>;
    }
    let i = S[rb + R_PC]!;
    const fb = r * FS;
    vc.t = F[fb]!;
    vc.t1 = F[fb + BB + 6]!;
    for (let k = 0; k < nPorts; k++) pf[k] = F[fb + 1 + k]!;
    if (ingress) for (let k = 0; k < nPorts; k++) ipf[k] = F[fb + IB + k]!;
    let stepAside = false;
    for (;;) {
      // send-buffer rule: an op that writes (recv, copy, reduce, scale: all into o.dst) waits while
      // an unconsumed send of this rank (a message of its in flight) overlaps what it writes; the
      // end of the program waits until all its sends are consumed. It waits for the earliest such
      // send (the lowest send index). A write outside the bounds skips the scan; a scan that finds
      // nothing recomputes the bounds.
      if (S[rb + R_INFLIGHT]! > 0 && (o === undefined || (o.k !== 'send' && o.k !== 'compute' && o.k !== 'wait'))) {
        let wBuf = -1, wOff = 0, wLen = 0, scan = true;
        if (o !== undefined) {
          const w = o.dst as Region | undefined; // (undefined only for an invalid op kind)
          if (w === undefined) scan = false;
          else {
            wBuf = bufCode(w.buf); wOff = w.off; wLen = w.len;
            const bb = fb + BB + 2 * wBuf;
            scan = wLen > 0 && wOff < F[bb + 1]! && F[bb]! < wOff + wLen;
          }
        }
        if (scan) {
          let hitPair = -1, hitSent = 0;
          let lo0 = Infinity, hi0 = -Infinity, lo1 = Infinity, hi1 = -Infinity, lo2 = Infinity, hi2 = -Infinity;
          for (let q = S[rb + R_PAIRS]!; q >= 0; q = P[q * PS + P_SRC_NEXT]!) {
            // a pair's messages are in send order, so its first match is its earliest
            for (let m = P[q * PS + P_QHEAD]!; m >= 0; m = MI[m * MS + M_NEXT]!) {
              const mb = m * MS;
              const b = MI[mb + M_BUF]!, off = MF[mb + M_OFF]!, len = MF[mb + M_LEN]!;
              if (wBuf < 0 || (b === wBuf && off < wOff + wLen && wOff < off + len && len > 0)) {
                if (hitPair < 0 || MI[mb + M_SENT]! < hitSent) { hitPair = q; hitSent = MI[mb + M_SENT]!; }
                break;
              }
              if (len > 0) {
                if (b === 0) { if (off < lo0) lo0 = off; if (off + len > hi0) hi0 = off + len; }
                else if (b === 1) { if (off < lo1) lo1 = off; if (off + len > hi1) hi1 = off + len; }
                else { if (off < lo2) lo2 = off; if (off + len > hi2) hi2 = off + len; }
              }
            }
          }
          if (hitPair >= 0) { S[rb + R_WAIT_CONS] = P[hitPair * PS + P_DST]!; break; }
          const bb = fb + BB;
          F[bb] = lo0; F[bb + 1] = hi0; F[bb + 2] = lo1; F[bb + 3] = hi1; F[bb + 4] = lo2; F[bb + 5] = hi2;
        }
      }
      if (o !== undefined && o.k === 'compute' && o.writes !== undefined && S[rb + R_INFLIGHT]! > 0) {
        // a kernel's written args: the same rule, region by region (no bounds shortcut)
        let hitPair = -1, hitSent = 0;
        for (const wi of o.writes) {
          const w = o.args![wi]!;
          if (w.len === 0) continue;
          const wBuf = bufCode(w.buf);
          for (let q = S[rb + R_PAIRS]!; q >= 0; q = P[q * PS + P_SRC_NEXT]!) {
            for (let m = P[q * PS + P_QHEAD]!; m >= 0; m = MI[m * MS + M_NEXT]!) {
              const mb = m * MS;
              const off = MF[mb + M_OFF]!, len = MF[mb + M_LEN]!;
              if (MI[mb + M_BUF] === wBuf && len > 0 && off < w.off + w.len && w.off < off + len) {
                if (hitPair < 0 || MI[mb + M_SENT]! < hitSent) { hitPair = q; hitSent = MI[mb + M_SENT]!; }
                break;
              }
            }
          }
        }
        if (hitPair >= 0) { S[rb + R_WAIT_CONS] = P[hitPair * PS + P_DST]!; break; }
      }
      if (o === undefined) {
        flags |= F_DONE;
        obj[2 * r + 1] = undefined;
        break;
      }
      S[rb + R_WAIT_CONS] = -1;
      const swap = o.s === 1;
      if (swap) enterStream(vc, o);
      if (o.k === 'send') {
        const peer = o.peer;
        let pr: number;
        if (S[rb + R_SEND_PEER] === peer) pr = S[rb + R_SEND_PAIR]!;
        else {
          const key = r * p + peer;
          let id = pairIds.get(key);
          if (id === undefined) {
            if (nPairs === pairCap) { pairCap *= 2; P = grow32(P, pairCap * PS); if (ingress) PI = grow32(PI, pairCap); }
            id = nPairs++;
            const qb = id * PS;
            P[qb + P_DST] = peer; P[qb + P_QHEAD] = -1; P[qb + P_QTAIL] = -1;
            P[qb + P_CLASS] = topo.classOf(r, peer); P[qb + P_PORT] = topo.port(r, peer);
            if (ingress) PI[id] = topo.ingressPort(r, peer);
            P[qb + P_SRC_NEXT] = S[rb + R_PAIRS]!;
            S[rb + R_PAIRS] = id;
            pairIds.set(key, id);
          }
          pr = id;
          S[rb + R_SEND_PEER] = peer;
          S[rb + R_SEND_PAIR] = pr;
        }
        const src = o.src;
        const bytes = src.len * ELEM_BYTES;
        const qb = pr * PS;
        const port = P[qb + P_PORT]!;
        const ls = fb + LS;
        let st: [number, number];
        if (o.mc === true) {
          // a multicast copy: the previous op was a send of the same region over the same port
          if (F[ls + 2] !== i - 1 || F[ls + 3] !== port || !sameRegion(lastSrc[r], src)) {
            throw new Error(`rank ${r} op ${i}: multicast copy (mc) to rank ${peer} does not follow a send of the same region over the same egress port`);
          }
          vc.lastStart = F[ls]!; vc.lastArrival = F[ls + 1]!;
          st = multicastTimes(vc);
        } else {
          st = sendOnLink(vc, links[P[qb + P_CLASS]!]!, port, bytes);
          F[ls] = st[0]; F[ls + 1] = st[1];
        }
        F[ls + 2] = i; F[ls + 3] = port;
        lastSrc[r] = src;
        const arrival = st[1];
        const seq = P[qb + P_POSTED]!;
        P[qb + P_POSTED] = seq + 1;
        // the message, at the tail of the pair's FIFO; in flight until consumed
        let m = msgFree;
        if (m >= 0) msgFree = MI[m * MS + M_NEXT]!;
        else {
          if (msgUsed === msgCap) { msgCap *= 2; MI = grow32(MI, msgCap * MS); MF = grow64(MF, msgCap * MS); }
          m = msgUsed++;
        }
        const mb = m * MS;
        const b = bufCode(src.buf);
        const sent = S[rb + R_SENT]!;
        S[rb + R_SENT] = sent + 1;
        MI[mb + M_NEXT] = -1;
        MI[mb + M_BUF] = b;
        MI[mb + M_SENT] = sent;
        MF[mb + M_ARRIVAL] = arrival;
        MF[mb + M_OFF] = src.off;
        MF[mb + M_LEN] = src.len;
        if (data) msgSrc[m] = src;
        const t = P[qb + P_QTAIL]!;
        if (t < 0) P[qb + P_QHEAD] = m; else MI[t * MS + M_NEXT] = m;
        P[qb + P_QTAIL] = m;
        // the bounds of the rank's unconsumed sends (reset when none was in flight)
        const inflight = S[rb + R_INFLIGHT]!;
        S[rb + R_INFLIGHT] = inflight + 1;
        if (inflight === 0) for (let k = 0; k < 6; k += 2) { F[fb + BB + k] = Infinity; F[fb + BB + k + 1] = -Infinity; }
        if (src.len > 0) {
          const bb = fb + BB + 2 * b;
          if (src.off < F[bb]!) F[bb] = src.off;
          if (src.off + src.len > F[bb + 1]!) F[bb + 1] = src.off + src.len;
        }
        // (a multicast copy is traced with 0 wire bytes: the group's first send carried them)
        if (tracer) tracer.add(r, 0, peer, o.mc === true ? 0 : bytes, P[qb + P_CLASS]!, st[0], arrival, 0, 0, seq, 0, o.s ?? 0);
        const pb = peer * RS;
        if (S[pb + R_WAIT_RECV] === r && !(S[pb + R_FLAGS]! & (F_QUEUED | F_DONE))) {
          // wake the receiver (bucket-queue insert, inlined here, below and at step-aside: a ReadyQueue
          // class measured ~13% slower on 16,384-rank hierarchical)
          const q = S[pb + R_PC]!;
          if (q >= bCap) { bCap = Math.max(2 * bCap, q + 1); bHead = grow32(bHead, bCap, -1); bTail = grow32(bTail, bCap, -1); }
          S[pb + R_BNEXT] = -1;
          const bt = bTail[q]!;
          if (bt < 0) bHead[q] = peer; else S[bt * RS + R_BNEXT] = peer;
          bTail[q] = peer;
          if (q < minB) minB = q;
          nReady++;
          S[pb + R_FLAGS] |= F_QUEUED;
        }
        // step aside for a less advanced rank (resume after it)
        if (nReady > 0) {
          while (bHead[minB]! < 0) minB++;
          if (minB <= i) stepAside = true;
        }
      } else if (o.k === 'recv') {
        const peer = o.peer;
        let pr: number;
        if (S[rb + R_RECV_PEER] === peer) pr = S[rb + R_RECV_PAIR]!;
        else {
          const id = pairIds.get(peer * p + r);
          if (id === undefined) { S[rb + R_WAIT_RECV] = peer; if (swap) leaveStream(vc, o); break; } // nothing sent yet
          pr = id;
          S[rb + R_RECV_PEER] = peer;
          S[rb + R_RECV_PAIR] = pr;
        }
        const qb = pr * PS;
        const m = P[qb + P_QHEAD]!;
        if (m < 0) { S[rb + R_WAIT_RECV] = peer; if (swap) leaveStream(vc, o); break; }
        S[rb + R_WAIT_RECV] = -1;
        const mb = m * MS;
        const nx = MI[mb + M_NEXT]!;
        P[qb + P_QHEAD] = nx;
        if (nx < 0) P[qb + P_QTAIL] = -1;
        MI[mb + M_NEXT] = msgFree;
        msgFree = m;
        const dstReg = o.dst;
        const bytes = dstReg.len * ELEM_BYTES;
        let arrival = MF[mb + M_ARRIVAL]!;
        if (ingress) arrival = ingressArrival(vc, links[P[qb + P_CLASS]!]!, PI[pr]!, arrival, bytes, ingressFolds(o));
        const rt = recvTimes(vc, topo, arrival, bytes, gpuReduces(o));
        if (data) {
          const src = view(peer, msgSrc[m]!);
          msgSrc[m] = undefined;
          const dst = view(r, dstReg);
          if (o.op) reduceJs(dst, o.acc ? view(r, o.acc) : dst, src, o.op);
          else dst.set(src);
        }
        const seq = P[qb + P_CONSUMED]!;
        P[qb + P_CONSUMED] = seq + 1;
        messages++;
        if (tracer) tracer.add(r, 1, peer, bytes, P[qb + P_CLASS]!, rt[0], rt[1], 0, 0, seq, 0, o.s ?? 0);
        // consumed: the sender's send is no longer in flight
        const pb = peer * RS;
        S[pb + R_INFLIGHT]--;
        if (S[pb + R_WAIT_CONS] === r && !(S[pb + R_FLAGS]! & (F_QUEUED | F_DONE))) {
          // wake the sender waiting for this consumption
          const q = S[pb + R_PC]!;
          if (q >= bCap) { bCap = Math.max(2 * bCap, q + 1); bHead = grow32(bHead, bCap, -1); bTail = grow32(bTail, bCap, -1); }
          S[pb + R_BNEXT] = -1;
          const bt = bTail[q]!;
          if (bt < 0) bHead[q] = peer; else S[bt * RS + R_BNEXT] = peer;
          bTail[q] = peer;
          if (q < minB) minB = q;
          nReady++;
          S[pb + R_FLAGS] |= F_QUEUED;
        }
      } else {
        const lt = localTimes(vc, o, topo, peak);
        if (data) {
          if (o.k === 'copy') view(r, o.dst).set(view(r, o.src));
          else if (o.k === 'reduce') reduceJs(view(r, o.dst), view(r, o.a), view(r, o.b), o.op);
          else if (o.k === 'scale') scaleJs(view(r, o.dst), o.factor);
          else if (o.k === 'compute' && o.kernel !== undefined) runComputeKernel(o, (reg) => view(r, reg));
        }
        if (tracer && o.k !== 'wait') {
          const bytes = o.k === 'compute' ? o.bytes : o.k === 'copy' ? o.src.len * ELEM_BYTES : o.dst.len * ELEM_BYTES;
          tracer.add(r, KIND_CODES.indexOf(o.k), -1, bytes, -1, lt[0], lt[1], 0, 0, i, 0, o.s ?? 0);
        }
      }
      if (swap) leaveStream(vc, o);
      opsDone++;
      i++;
      if (arr) o = arr[i];
      else {
        const n = it!.next();
        o = n.done ? undefined : n.value;
      }
      if (stepAside) break;
    }
    S[rb + R_PC] = i;
    obj[2 * r] = o;
    F[fb] = vc.t;
    F[fb + BB + 6] = vc.t1;
    for (let k = 0; k < nPorts; k++) F[fb + 1 + k] = pf[k]!;
    if (ingress) for (let k = 0; k < nPorts; k++) F[fb + IB + k] = ipf[k]!;
    if (stepAside) {
      if (i >= bCap) { bCap = Math.max(2 * bCap, i + 1); bHead = grow32(bHead, bCap, -1); bTail = grow32(bTail, bCap, -1); }
      S[rb + R_BNEXT] = -1;
      const bt = bTail[i]!;
      if (bt < 0) bHead[i] = r; else S[bt * RS + R_BNEXT] = r;
      bTail[i] = r;
      if (i < minB) minB = i;
      nReady++;
      flags |= F_QUEUED;
    }
    S[rb + R_FLAGS] = flags;
  }
  const pending: string[] = [];
  const rankTimes = new Float64Array(p);
  let time = 0;
  for (let r = 0; r < p; r++) {
    const rb = r * RS;
    const t = Math.max(F[r * FS]!, F[r * FS + BB + 6]!);
    rankTimes[r] = t;
    if (t > time) time = t;
    if (S[rb + R_FLAGS]! & F_DONE) continue;
    const i = S[rb + R_PC]!;
    const o = obj[2 * r] as Op | undefined;
    if (S[rb + R_WAIT_CONS]! >= 0) {
      pending.push(`rank ${r} at op ${i} (${describeOp(o)}): waits for rank ${S[rb + R_WAIT_CONS]} to receive a message it sent (send buffer reuse)`);
    } else {
      const from = S[rb + R_WAIT_RECV]!;
      pending.push(`rank ${r} at op ${i} (${describeOp(o)}): waits for a message from ${from === r ? 'itself (through the switch)' : `rank ${from}`}`);
    }
  }
  if (pending.length) throw new DeadlockError(pending);
  return { rankTimes, time, events: tracer?.events(), messages, ops: opsDone };
}
