/**
 * A rank worker: one worker thread = one simulated GPU. It runs one long-lived task (started by the
 * cluster through piscina) that waits for jobs on its MessagePort, executes its IR program over
 * real Float32 data in shared memory, keeps its virtual clock with runtime/timing.ts, and reports.
 *
 * Data plane: every rank maps every rank's memory. A send posts a descriptor (offset, length,
 * virtual arrival) into the (src, dst) ring and returns; the receiver copies or reduces straight
 * from the sender's memory, then bumps `consumed` and rings the sender's doorbell. With the native
 * kernels (native/kernels.c, runtime/native.ts) it reduces and copies in place with C loops and
 * streaming stores for large messages, and a run of receives that reduce into one region from
 * messages already posted is done in one pass (fuse()); without them it uses the WebAssembly SIMD
 * kernels, staging the peer's data through its own memory. Waiting spins briefly (only when
 * ranks <= cores), then, while fewer ranks than cores are busy, polls with sched_yield() between
 * polls for up to YIELD_BUDGET_NS (native/yieldwait.c, when built: a runnable rank gets the core
 * at once, where a futex wake costs tens of microseconds), and then blocks in Atomics.wait on the
 * rank's doorbell.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { checkPattern, fillInput } from '../collectives/pattern.js';
import { inputRegion, outputRegion } from '../collectives/types.js';
import {
  ControlLayout, DESC_F64, H_ABORT, H_AWAKE, H_BUSY, H_BAR_COUNT, H_BAR_GEN, H_BAR_T0_F64, R_BELL, R_ITER, R_JOB_BELL, R_PC, R_PROGRESS, R_STATE,
  R_WAIT_PEER, R_WAIT_SEQ, ST_BARRIER, ST_CONSUME, ST_IDLE, ST_RECV, ST_RUNNING, ST_SLEEP, ST_SLOT,
} from './control.js';
import { ELEM_BYTES, partlyOverlaps, type BufName, type Op, type Program, type Region } from './ir.js';
import type { InitMessage, Job, RankResult, RunJob } from './job.js';
import { createKernels, REDUCE_OPCODE, type Kernels } from './kernels.js';
import { runComputeKernel } from './compute.js';
import {
  enterStream, gpuReduces, ingressArrival, ingressFolds, leaveStream, localTimes, multicastTimes, recvTimes, sendTimes, VClock,
} from './timing.js';
import { Topology } from './topology.js';
import { KIND_CODES, TraceRecorder } from './trace.js';
import { NATIVE, YIELD, type NativeKernels } from './native.js';

class AbortError extends Error {
  constructor() {
    super('aborted');
    this.name = 'AbortError';
  }
}

const nowMs = () => performance.timeOrigin + performance.now();
/** fused receive runs (fuse()); COLLEMU_NO_FUSE=1 turns them off (to measure what they save) */
const FUSE = !process.env.COLLEMU_NO_FUSE;

/**
 * How long a waiting rank yield-polls before it blocks, and per native call (a worker can only be
 * terminated between calls). Measured on 2 vCPUs (README, Performance): 20 us is too short for 8
 * ranks, 200 us takes the 8-rank 1 KB AllReduce hand-offs; a longer budget burns CPU on long waits.
 */
const YIELD_BUDGET_NS = 200_000;
const YIELD_CALL_NS = 20_000;
/**
 * Yield-polling pays while the runnable yielders per core are few: measured on 2 vCPUs, it helps
 * from 8 to 32 ranks (1 KB AllReduce 8 ranks: ~50 vs ~200 us; 32 ranks, 1 MB: 11.6 vs 18.5 ms) and
 * hurts at 64 (a productive rank waits behind dozens of yielders per core: the 64-rank timing-only
 * agreement test takes 33 s instead of 21 s). Above this many ranks per core, ranks block at once.
 */
const YIELD_MAX_RANKS_PER_CORE = 16;

interface Outstanding { peer: number; seq: number; buf: BufName; off: number; end: number }

class RankRuntime {
  readonly rank: number;
  readonly p: number;
  readonly L: ControlLayout;
  readonly ctl: Int32Array;
  readonly f64: Float64Array;
  readonly port: MessagePort;
  mems: WebAssembly.Memory[] = [];
  f32: Float32Array[] = [];
  kern: Kernels | undefined;
  /** the native kernels, when built and allowed for this job */
  native: NativeKernels | undefined;
  topo: Topology | undefined;
  clock: VClock | undefined;
  bell: number;
  // per-job state
  sendSeq: Int32Array;
  recvSeq: Int32Array;
  outstanding: Outstanding[] = [];
  spin = 0;
  cores = 2;
  job!: RunJob;
  tracer: TraceRecorder | undefined;
  traceIter = -1;
  iter = 0;
  t0 = 0; // pacing origin (ms since epoch)
  peak = 1;
  /** ops up to this index of the current program had their data done by a fused run (fuse()) */
  fusedTo = -1;
  /** receives (data messages) done by fused runs in this job */
  fused = 0;
  fuseCount: Int32Array;
  /** a fused run's sources (memories and element offsets), reused from run to run */
  private fuseSrcs: Float32Array[] = [];
  private fuseIdx: number[] = [];
  descIx: Int32Array<ArrayBufferLike> = new Int32Array(0);
  desc: Float64Array<ArrayBufferLike> = new Float64Array(0);

  constructor(init: InitMessage) {
    this.rank = init.rank;
    this.p = init.p;
    this.L = new ControlLayout(init.p);
    this.ctl = new Int32Array(init.control);
    this.f64 = new Float64Array(init.control);
    this.port = init.port;
    this.bell = this.L.rank(this.rank, R_BELL);
    this.sendSeq = new Int32Array(this.p);
    this.recvSeq = new Int32Array(this.p);
    this.fuseCount = new Int32Array(this.p);
  }

  // ---------------------------------------------------------------- waiting
  private setState(s: number, peer = -1, seq = -1): void {
    const base = this.L.rank(this.rank, 0);
    Atomics.store(this.ctl, base + R_WAIT_PEER, peer);
    Atomics.store(this.ctl, base + R_WAIT_SEQ, seq);
    Atomics.store(this.ctl, base + R_STATE, s);
  }

  private checkAbort(): void {
    if (Atomics.load(this.ctl, H_ABORT) !== 0) throw new AbortError();
  }

  /**
   * Spin on ctl[idx] >= target while spinning cannot steal a core from a rank that has work: at
   * most `spin` iterations, and only while no more ranks are awake than the host has cores.
   */
  private spinGE(idx: number, target: number): boolean {
    const ctl = this.ctl;
    for (let s = this.spin; s > 0; s--) {
      if (Atomics.load(ctl, idx) >= target) return true;
      if ((s & 63) === 0 && Atomics.load(ctl, H_AWAKE) > this.cores) return false;
    }
    return false;
  }

  /** block in Atomics.wait on word `w` while it still reads `v`, counted as asleep */
  private sleep(w: number, v: number): void {
    Atomics.sub(this.ctl, H_AWAKE, 1);
    // a notifier counts the threads it wakes as awake at once (they are runnable, maybe waiting
    // for a core); a timeout or a changed value means we count ourselves
    if (Atomics.wait(this.ctl, w, v, 100) !== 'ok') Atomics.add(this.ctl, H_AWAKE, 1);
  }

  /**
   * yield-poll ctl[idx] >= target for up to YIELD_BUDGET_NS (false: not reached, no helper, or
   * every core already has a busy rank: H_BUSY >= cores)
   */
  private yieldGE(idx: number, target: number): boolean {
    const y = YIELD;
    if (!y || this.p > YIELD_MAX_RANKS_PER_CORE * this.cores) return false;
    const ctl = this.ctl;
    const cores = this.cores;
    for (let spent = 0; spent < YIELD_BUDGET_NS; spent += YIELD_CALL_NS) {
      if (y.pollYieldGE(ctl, idx, target, YIELD_CALL_NS, H_BUSY, cores) >= target) return true;
      // every core has a rank with work: yielding would only take turns with them, so block
      if (Atomics.load(ctl, H_BUSY) >= cores) return false;
      if (Atomics.load(ctl, H_ABORT) !== 0) return false;
    }
    return false;
  }

  /** wait until ctl[idx] >= target: spinning (adaptively), yield-polling, then blocking on our doorbell */
  private waitGE(idx: number, target: number, state: number, peer: number, seq: number): void {
    const ctl = this.ctl;
    if (Atomics.load(ctl, idx) >= target) return;
    Atomics.sub(ctl, H_BUSY, 1);
    try {
      this.waitSlow(idx, target, state, peer, seq);
    } finally {
      Atomics.add(ctl, H_BUSY, 1);
    }
  }

  private waitSlow(idx: number, target: number, state: number, peer: number, seq: number): void {
    const ctl = this.ctl;
    if (this.spin > 0 && this.spinGE(idx, target)) return;
    if (this.yieldGE(idx, target)) return;
    this.setState(state, peer, seq);
    for (;;) {
      const v = Atomics.load(ctl, this.bell);
      if (Atomics.load(ctl, idx) >= target) break;
      this.checkAbort();
      this.sleep(this.bell, v);
    }
    Atomics.store(ctl, this.L.rank(this.rank, R_STATE), ST_RUNNING);
  }

  private ring(rank: number): void {
    const b = this.L.rank(rank, R_BELL);
    Atomics.add(this.ctl, b, 1);
    const n = Atomics.notify(this.ctl, b);
    if (n > 0) Atomics.add(this.ctl, H_AWAKE, n);
  }

  /**
   * Wake `rank` only if it declared that it waits for us. Both sides use sequentially consistent
   * atomics (waiter: declare, then re-check the counter; notifier: update the counter, then read
   * the declaration), so a wake-up cannot be lost, and ranks waiting on someone else sleep on.
   */
  private notifyIfWaiting(rank: number): void {
    const base = this.L.rank(rank, 0);
    const s = Atomics.load(this.ctl, base + R_STATE);
    if ((s === ST_RECV || s === ST_CONSUME || s === ST_SLOT) && Atomics.load(this.ctl, base + R_WAIT_PEER) === this.rank) this.ring(rank);
  }

  /** wall-clock barrier of all ranks; returns the release time (ms since epoch) */
  barrier(): number {
    const ctl = this.ctl;
    const gen = Atomics.load(ctl, H_BAR_GEN);
    const n = Atomics.add(ctl, H_BAR_COUNT, 1);
    if (n === this.p - 1) {
      Atomics.store(ctl, H_BAR_COUNT, 0);
      this.f64[H_BAR_T0_F64] = nowMs();
      Atomics.add(ctl, H_BAR_GEN, 1);
      const n = Atomics.notify(ctl, H_BAR_GEN);
      if (n > 0) Atomics.add(ctl, H_AWAKE, n);
    } else {
      Atomics.sub(ctl, H_BUSY, 1);
      try {
        this.barrierWait(gen);
      } finally {
        Atomics.add(ctl, H_BUSY, 1);
      }
    }
    return this.f64[H_BAR_T0_F64]!;
  }

  /** wait until the barrier generation moves on from `gen` */
  private barrierWait(gen: number): void {
    const ctl = this.ctl;
    for (let s = this.spin; s > 0; s--) {
      if (Atomics.load(ctl, H_BAR_GEN) !== gen) return;
      if ((s & 63) === 0 && Atomics.load(ctl, H_AWAKE) > this.cores) break;
    }
    if (this.yieldGE(H_BAR_GEN, gen + 1)) return;
    this.setState(ST_BARRIER);
    while (Atomics.load(ctl, H_BAR_GEN) === gen) {
      this.checkAbort();
      this.sleep(H_BAR_GEN, gen);
    }
    Atomics.store(ctl, this.L.rank(this.rank, R_STATE), ST_RUNNING);
  }

  private sleepUntil(targetMs: number): void {
    let rem = targetMs - nowMs();
    if (rem <= 0) return;
    this.setState(ST_SLEEP);
    const ctl = this.ctl;
    const dummy = this.L.rank(this.rank, R_WAIT_SEQ + 1);
    while (rem > 0) {
      this.checkAbort();
      if (rem > 0.2) Atomics.wait(ctl, dummy, Atomics.load(ctl, dummy), Math.min(rem - 0.1, 100));
      rem = targetMs - nowMs();
    }
    Atomics.store(ctl, this.L.rank(this.rank, R_STATE), ST_RUNNING);
  }

  // ---------------------------------------------------------------- data
  private byteOff(r: Region): number { return this.job.layout[r.buf] + r.off * ELEM_BYTES; }
  private view(rank: number, byteOff: number, len: number): Float32Array {
    const s = byteOff >> 2;
    return this.f32[rank]!.subarray(s, s + len);
  }

  /** dst := acc op src, where src lives in another rank's memory */
  private reduceFromPeer(dstB: number, accB: number, peer: number, srcB: number, len: number, op: NonNullable<Op & { k: 'recv' }>['op']): void {
    const me = this.f32[this.rank]!;
    const src = this.f32[peer]!;
    const nk = this.native;
    if (nk && ((dstB | accB | srcB) & 3) === 0) {
      // straight from the peer's memory (native/kernels.c)
      nk.reduce(me, dstB >> 2, me, accB >> 2, src, srcB >> 2, len, REDUCE_OPCODE[op!]);
      return;
    }
    // the WASM kernels address this rank's memory only: stage the peer's data through it
    const kern = this.kern!;
    const stage = this.job.layout.stage;
    const SL = 32768; // elements per slice: 128 KiB stays in cache
    for (let i = 0; i < len; i += SL) {
      const n = Math.min(SL, len - i);
      const s = (srcB >> 2) + i;
      me.set(src.subarray(s, s + n), stage >> 2);
      kern.reduce(dstB + i * 4, accB + i * 4, stage, n, op!);
    }
  }

  /** dst (this rank's memory) := src (rank `from`'s memory), len elements */
  private copyFrom(dstB: number, from: number, srcB: number, len: number): void {
    const nk = this.native;
    if (nk && ((dstB | srcB) & 3) === 0) nk.copy(this.f32[this.rank]!, dstB >> 2, this.f32[from]!, srcB >> 2, len);
    else this.view(this.rank, dstB, len).set(this.view(from, srcB, len));
  }

  /**
   * Fused receive-reduce (native kernels only): the receive prog[i] (its message from `peer` at
   * srcB is here) and the receives right after it that reduce into the same region (acc = dst, the
   * same op), and whose messages are ALREADY posted, are reduced in one pass over the region
   * (native reduceMany: the region is read and written once instead of once per message; the same
   * rounding, element by element, as the receives one by one). Padding receives (`pad`) in between
   * join the run (they carry no data). It never waits for anything the receives would not wait for
   * one by one: it only looks at messages already posted and regions with no send in flight. The
   * receives still complete one by one in program order (virtual times, consumption, trace); their
   * data is done (this.fusedTo). Returns false (nothing done) when no later receive joins.
   */
  private fuse(prog: Program, i: number, peer: number, srcB: number): boolean {
    const head = prog[i] as Op & { k: 'recv' };
    const next = prog[i + 1];
    if (!next || next.k !== 'recv') return false;
    const D = head.dst;
    const op = head.op;
    const me = this.rank, L = this.L, ctl = this.ctl;
    const dB = this.byteOff(D);
    if (((dB | srcB) & 3) !== 0) return false;
    // the head's own message (through the switch) must not overlap the region either
    if (peer === me && srcB < dB + 4 * D.len && dB < srcB + 4 * D.len) return false;
    // an accumulator other than the region itself must not partly overlap it (validatePrograms
    // rejects that, but Cluster.run does not require validated programs)
    if (head.acc && partlyOverlaps(head.acc, D)) return false;
    const srcs = this.fuseSrcs, idx = this.fuseIdx;
    srcs.length = 0;
    idx.length = 0;
    // a plain head (no op) is the run's first operand, not a source
    if (op) {
      srcs.push(this.f32[peer]!);
      idx.push(srcB >> 2);
    }
    // messages of the run per peer so far (the next one from q is message recvSeq[q] + cnt[q])
    const cnt = this.fuseCount;
    cnt.fill(0);
    cnt[peer] = 1;
    let last = i, fop = op;
    for (let j = i + 1; j < prog.length && srcs.length < 64; j++) {
      const m = prog[j]!;
      if (m.k !== 'recv') break;
      const q = m.peer;
      const seq = this.recvSeq[q]! + cnt[q]!;
      // its message must be posted already: the run adds no waits
      if (Atomics.load(ctl, L.posted(q, me)) < seq + 1) break;
      if (m.pad === true) {
        if (!this.hazardFree(m.dst)) break;
        cnt[q]!++;
        last = j;
        continue;
      }
      const a = m.acc;
      if (!m.op || (fop !== undefined && m.op !== fop) || m.dst.buf !== D.buf || m.dst.off !== D.off || m.dst.len !== D.len) break;
      if (a && (a.buf !== D.buf || a.off !== D.off || a.len !== D.len)) break;
      const d = this.descAt(q, seq);
      const sB = this.desc[d]!, len = this.desc[d + 1]!;
      if (len !== D.len || (sB & 3) !== 0) break;
      // a message from oneself (through the switch) must not overlap the region it reduces into
      if (q === me && sB < dB + 4 * D.len && dB < sB + 4 * len) break;
      fop = m.op;
      cnt[q]!++;
      srcs.push(this.f32[q]!);
      idx.push(sB >> 2);
      last = j;
    }
    if (srcs.length < (op ? 2 : 1)) return false;
    const mine = this.f32[me]!;
    const dstE = dB >> 2;
    if (op) {
      const accB = head.acc ? this.byteOff(head.acc) : this.byteOff(D);
      this.native!.reduceMany(mine, dstE, mine, accB >> 2, srcs, idx, D.len, REDUCE_OPCODE[fop!]);
    } else {
      // the head is a plain receive: dst = s0, then reduce the others into it
      this.native!.reduceMany(mine, dstE, this.f32[peer]!, srcB >> 2, srcs, idx, D.len, REDUCE_OPCODE[fop!]);
    }
    this.fusedTo = last;
    this.fused += op ? srcs.length : srcs.length + 1;
    return true;
  }

  /** index in this.desc of the descriptor of message #seq from rank `from` to this rank */
  private descAt(from: number, seq: number): number {
    const pair = from * this.p + this.rank;
    return (this.descIx[pair]! + (seq % this.descIx[this.p * this.p + pair]!)) * DESC_F64;
  }

  /** no send in flight from a region overlapping r (a write to r would not wait) */
  private hazardFree(r: Region): boolean {
    if (r.len === 0) return true;
    const end = r.off + r.len;
    for (const o of this.outstanding) {
      if (o.buf === r.buf && o.off < end && r.off < o.end && Atomics.load(this.ctl, this.L.consumed(this.rank, o.peer)) <= o.seq) return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- ops
  private hazard(w: Region): void {
    const outs = this.outstanding;
    if (outs.length === 0) return;
    const off = w.off, end = w.off + w.len;
    if (w.len === 0) return;
    for (let j = 0; j < outs.length; j++) {
      const o = outs[j]!;
      if (o.buf === w.buf && o.off < end && off < o.end) {
        const idx = this.L.consumed(this.rank, o.peer);
        this.waitGE(idx, o.seq + 1, ST_CONSUME, o.peer, o.seq);
      }
    }
    this.prune();
  }

  private prune(): void {
    const outs = this.outstanding;
    let k = 0;
    for (let j = 0; j < outs.length; j++) {
      const o = outs[j]!;
      if (Atomics.load(this.ctl, this.L.consumed(this.rank, o.peer)) <= o.seq) outs[k++] = o;
    }
    outs.length = k;
  }

  private drain(): void {
    for (const o of this.outstanding) this.waitGE(this.L.consumed(this.rank, o.peer), o.seq + 1, ST_CONSUME, o.peer, o.seq);
    this.outstanding.length = 0;
  }

  private hnow(): number { return this.tracer ? nowMs() - this.job.epoch : 0; }

  runProgram(): void {
    const prog = this.job.program;
    const topo = this.topo!;
    const c = this.clock!;
    const me = this.rank;
    const ctl = this.ctl;
    const L = this.L;
    const pcIdx = L.rank(me, R_PC);
    const progIdx = L.rank(me, R_PROGRESS);
    const pace = this.job.pace;
    const tr = this.iter === this.traceIter ? this.tracer : undefined;
    this.fusedTo = -1;
    const ingress = topo.data.ingress === true;
    // the last send (op index, port, region): a multicast copy must follow a send of the same
    // region over the same port (the simulator checks the same)
    let lastSendIdx = -2, lastSendPort = -1;
    let lastSrc: Region | undefined;
    for (let i = 0; i < prog.length; i++) {
      ctl[pcIdx] = i;
      const o = prog[i]!;
      const h0 = tr ? this.hnow() : 0;
      enterStream(c, o);
      switch (o.k) {
        case 'send': {
          const peer = o.peer;
          const seq = this.sendSeq[peer]!;
          const pair = me * this.p + peer;
          const nslot = this.descIx[this.p * this.p + pair]!;
          if (seq >= nslot) this.waitGE(L.consumed(me, peer), seq - nslot + 1, ST_SLOT, peer, seq);
          const bytes = o.src.len * ELEM_BYTES;
          const port = topo.port(me, peer);
          if (o.mc === true) {
            const a = lastSrc;
            if (lastSendIdx !== i - 1 || lastSendPort !== port || !a || a.buf !== o.src.buf || a.off !== o.src.off || a.len !== o.src.len) {
              throw new Error(`rank ${me} op ${i}: multicast copy (mc) to rank ${peer} does not follow a send of the same region over the same egress port`);
            }
          }
          const [vs, arrival] = o.mc === true ? multicastTimes(c) : sendTimes(c, topo, me, peer, bytes);
          lastSendIdx = i; lastSendPort = port; lastSrc = o.src;
          const d = (this.descIx[pair]! + (seq % nslot)) * DESC_F64;
          const f = this.desc;
          f[d] = this.byteOff(o.src);
          f[d + 1] = o.src.len;
          f[d + 2] = arrival;
          f[d + 3] = seq;
          this.sendSeq[peer] = seq + 1;
          Atomics.store(ctl, L.posted(me, peer), seq + 1);
          this.notifyIfWaiting(peer);
          if (o.src.len > 0) this.outstanding.push({ peer, seq, buf: o.src.buf, off: o.src.off, end: o.src.off + o.src.len });
          else this.outstanding.push({ peer, seq, buf: o.src.buf, off: 0, end: 0 });
          // (a multicast copy is traced with 0 wire bytes: the group's first send carried them)
          if (tr) tr.add(me, 0, peer, o.mc === true ? 0 : bytes, topo.classOf(me, peer), vs, arrival, h0, this.hnow(), seq, this.iter, o.s ?? 0);
          break;
        }
        case 'recv': {
          const peer = o.peer;
          this.hazard(o.dst);
          const seq = this.recvSeq[peer]!;
          this.waitGE(L.posted(peer, me), seq + 1, ST_RECV, peer, seq);
          const d = this.descAt(peer, seq);
          const f = this.desc;
          const srcB = f[d]!, len = f[d + 1]!, arrival = f[d + 2]!;
          if (len !== o.dst.len) throw new Error(`rank ${me} op ${i}: message #${seq} from rank ${peer} has ${len} elements, recv expects ${o.dst.len}`);
          const dstB = this.byteOff(o.dst);
          if (len > 0 && !this.job.timingOnly && o.pad !== true && i > this.fusedTo) {
            if (!(this.native && pace === 0 && FUSE && this.fuse(prog, i, peer, srcB))) {
              if (o.op) this.reduceFromPeer(dstB, o.acc ? this.byteOff(o.acc) : dstB, peer, srcB, len, o.op);
              else this.copyFrom(dstB, peer, srcB, len);
            }
          }
          const bytes = len * ELEM_BYTES;
          const t = ingress ? ingressArrival(c, topo.link(peer, me), topo.ingressPort(peer, me), arrival, bytes, ingressFolds(o)) : arrival;
          const [vs, ve] = recvTimes(c, topo, t, bytes, gpuReduces(o));
          if (pace > 0) this.sleepUntil(this.t0 + ve * 1000 * pace);
          this.recvSeq[peer] = seq + 1;
          Atomics.store(ctl, L.consumed(peer, me), seq + 1);
          this.notifyIfWaiting(peer);
          if (tr) tr.add(me, 1, peer, bytes, topo.classOf(peer, me), vs, ve, h0, this.hnow(), seq, this.iter, o.s ?? 0);
          break;
        }
        case 'copy': {
          this.hazard(o.dst);
          if (o.src.len > 0 && !this.job.timingOnly) this.copyFrom(this.byteOff(o.dst), me, this.byteOff(o.src), o.src.len);
          this.local(o, tr, h0, i);
          break;
        }
        case 'reduce': {
          this.hazard(o.dst);
          if (o.dst.len > 0 && !this.job.timingOnly) this.kern!.reduce(this.byteOff(o.dst), this.byteOff(o.a), this.byteOff(o.b), o.dst.len, o.op);
          this.local(o, tr, h0, i);
          break;
        }
        case 'scale': {
          this.hazard(o.dst);
          if (o.dst.len > 0 && !this.job.timingOnly) this.kern!.scale(this.byteOff(o.dst), o.dst.len, o.factor);
          this.local(o, tr, h0, i);
          break;
        }
        case 'compute':
          if (o.kernel !== undefined) {
            const args = o.args!;
            if (o.writes) for (const w of o.writes) this.hazard(args[w]!);
            if (!this.job.timingOnly) runComputeKernel(o, (r) => this.view(me, this.byteOff(r), r.len));
          }
          this.local(o, tr, h0, i);
          break;
        case 'wait':
          localTimes(c, o, topo, this.peak);
          break;
      }
      leaveStream(c, o);
      ctl[progIdx]!++;
    }
    ctl[pcIdx] = prog.length;
    // Sends still in flight stay outstanding: the next write to their regions (hazard()) or the
    // end of the job (drain()) waits for them, so iterations can overlap as on a GPU stream.
    this.prune();
  }

  private local(o: Op, tr: TraceRecorder | undefined, h0: number, i: number): void {
    const [vs, ve] = localTimes(this.clock!, o, this.topo!, this.peak);
    if (this.job.pace > 0) this.sleepUntil(this.t0 + ve * 1000 * this.job.pace);
    if (tr) {
      const bytes = o.k === 'compute' ? o.bytes : o.k === 'copy' ? o.src.len * ELEM_BYTES : o.k === 'reduce' || o.k === 'scale' ? o.dst.len * ELEM_BYTES : 0;
      tr.add(this.rank, KIND_CODES.indexOf(o.k), -1, bytes, -1, vs, ve, h0, this.hnow(), i, this.iter, o.s ?? 0);
    }
  }

  // ---------------------------------------------------------------- jobs
  private iteration(): number {
    const ctl = this.ctl;
    ctl[this.L.rank(this.rank, R_ITER)] = this.iter;
    if (this.job.pace > 0) this.t0 = this.barrier();
    this.clock!.reset(0);
    this.runProgram();
    this.iter++;
    return this.clock!.end;
  }

  runJob(job: RunJob): RankResult {
    this.job = job;
    if (job.mems) {
      this.mems = job.mems;
      this.f32 = job.mems.map((m) => new Float32Array(m.buffer));
      this.kern = createKernels(job.mems[this.rank]!, { impl: job.simd ? 'auto' : 'js' });
    } else if (this.kern && this.kern.simd !== job.simd) {
      this.kern = createKernels(this.mems[this.rank]!, { impl: job.simd ? 'auto' : 'js' });
    }
    if (job.topo) {
      this.topo = new Topology(job.topo);
      this.clock = new VClock(this.topo.nPorts);
      this.peak = this.topo.hw.peakFlops.bf16;
    }
    if (!this.topo || !this.kern) throw new Error('job without topology or memory');
    this.spin = job.spin;
    this.native = job.native ? NATIVE : undefined;
    this.descIx = new Int32Array(job.desc.index);
    this.desc = new Float64Array(job.desc.slots);
    this.cores = job.cores;
    this.sendSeq.fill(0);
    this.recvSeq.fill(0);
    this.outstanding.length = 0;
    this.iter = 0;
    this.fused = 0;
    this.tracer = job.trace ? new TraceRecorder() : undefined;
    this.traceIter = job.trace ? job.warmup : -1;
    const spec = job.pattern;
    const me = this.rank;
    const inputView = () => {
      const I = inputRegion(spec!, me);
      return this.view(me, this.byteOff(I), I.len);
    };
    const hasInput = spec && spec.coll !== 'barrier' && (spec.coll !== 'broadcast' || me === spec.root);
    if (spec && hasInput) fillInput(spec, me, inputView());
    let vtime = -1;
    for (let w = 0; w < job.warmup; w++) this.checkTime(this.iteration(), (vtime = vtime < 0 ? this.clock!.end : vtime));
    this.barrier();
    const h0 = nowMs();
    for (let it = 0; it < job.iters; it++) {
      const t = this.iteration();
      if (vtime < 0) vtime = t;
      this.checkTime(t, vtime);
    }
    const hostMs = job.iters > 0 ? (nowMs() - h0) / job.iters : 0;
    let wrong = 0, maxErr = 0;
    this.drain();
    if (job.check && spec) {
      const O = outputRegion(spec, me);
      this.view(me, this.byteOff(O), O.len).fill(NaN);
      if (hasInput) fillInput(spec, me, inputView());
      this.barrier();
      const t = this.iteration();
      if (vtime < 0) vtime = t;
      this.checkTime(t, vtime);
      const res = checkPattern(spec, me, this.view(me, this.byteOff(O), O.len));
      wrong = res.wrong;
      maxErr = res.maxErr;
      this.drain();
    }
    return { rank: me, id: job.id, vtime: Math.max(0, vtime), hostMs, wrong, maxErr, fused: this.fused, trace: this.tracer?.packed() };
  }

  private checkTime(t: number, ref: number): void {
    if (t !== ref) throw new Error(`rank ${this.rank}: virtual time differs between iterations (${ref} vs ${t}): nondeterminism bug`);
  }

  loop(): void {
    const ctl = this.ctl;
    const jb = this.L.rank(this.rank, R_JOB_BELL);
    for (;;) {
      Atomics.store(ctl, this.L.rank(this.rank, R_STATE), ST_IDLE);
      const v = Atomics.load(ctl, jb);
      const m = receiveMessageOnPort(this.port);
      if (!m) {
        Atomics.wait(ctl, jb, v, 1000);
        continue;
      }
      const job = m.message as Job;
      if (job.kind === 'shutdown') return;
      Atomics.store(ctl, this.L.rank(this.rank, R_STATE), ST_RUNNING);
      let res: RankResult;
      Atomics.add(ctl, H_BUSY, 1);
      try {
        res = this.runJob(job);
      } catch (e) {
        if (e instanceof AbortError) {
          res = { rank: this.rank, id: job.id, vtime: 0, hostMs: 0, wrong: 0, maxErr: 0, aborted: true };
        } else {
          // tell every other rank to stop, then report
          Atomics.store(ctl, H_ABORT, 1);
          for (let r = 0; r < this.p; r++) this.ring(r);
          Atomics.add(ctl, H_BAR_GEN, 0);
          Atomics.notify(ctl, H_BAR_GEN);
          const err = e as Error;
          res = { rank: this.rank, id: job.id, vtime: 0, hostMs: 0, wrong: 0, maxErr: 0, error: err.stack ?? String(err) };
        }
      }
      Atomics.store(ctl, this.L.rank(this.rank, R_STATE), ST_IDLE);
      Atomics.sub(ctl, H_AWAKE, 1);
      Atomics.sub(ctl, H_BUSY, 1);
      this.port.postMessage(res);
    }
  }
}

/** piscina task: the whole life of one rank. */
export default function rankTask(init: InitMessage): { rank: number } {
  const rt = new RankRuntime(init);
  rt.loop();
  init.port.close();
  return { rank: init.rank };
}
